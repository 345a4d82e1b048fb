//! The test applications: tokio TCP servers speaking HTTP/1.1 by hand, so
//! each can misbehave exactly as a test needs and count what it received.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as a server got it.
#[derive(Debug, Clone)]
pub(super) struct Got {
    pub(super) conn: usize,
    pub(super) head: String,
    pub(super) body: Vec<u8>,
}

impl Got {
    pub(super) fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or("")
    }
    /// Every value of a header (name case-insensitive).
    pub(super) fn header(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

/// What the server does with request `nth` (0-based, on connection `conn`).
#[derive(Debug, Clone)]
pub(super) enum Act {
    Reply(&'static [u8]),
    /// Read it, close without a reply (the race of an application closing
    /// an idle keep-alive connection just as a request comes).
    Close,
    /// Reply, then close the connection this long after (an application's
    /// own keep-alive timeout).
    ReplyThenClose(&'static [u8], Duration),
    /// Never answer.
    Hang,
}

#[derive(Default)]
pub(super) struct Log {
    pub(super) got: std::sync::Mutex<Vec<Got>>,
    pub(super) conns: AtomicU64,
    /// Connections the client closed (EOF read while waiting for a request).
    pub(super) closed_by_client: AtomicU64,
    /// Each connection's PROXY header, whole.
    pub(super) proxy_headers: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl Log {
    pub(super) fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

pub(super) const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Read one request (head and a Content-Length body); `None` at EOF.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.trim().parse().unwrap());
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Some((head, body));
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A server on 127.0.0.1 whose acts are chosen by `plan(conn, nth)`.
pub(super) async fn server(
    plan: impl Fn(usize, usize) -> Act + Send + Sync + 'static,
) -> (String, Arc<Log>) {
    server_opts(false, plan).await
}

/// As [`server`]; with `proxy`, each connection must open with a PROXY v2
/// header, recorded in `Log::proxy_headers`.
pub(super) async fn server_opts(
    proxy: bool,
    plan: impl Fn(usize, usize) -> Act + Send + Sync + 'static,
) -> (String, Arc<Log>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let log = Arc::new(Log::default());
    let plan = Arc::new(plan);
    let slog = log.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let conn = slog.conns.fetch_add(1, Ordering::SeqCst) as usize;
            let (log, plan) = (slog.clone(), plan.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if proxy {
                    let mut fixed = [0u8; 16];
                    if s.read_exact(&mut fixed).await.is_err() {
                        return;
                    }
                    let len = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
                    let mut rest = vec![0u8; len];
                    if s.read_exact(&mut rest).await.is_err() {
                        return;
                    }
                    let mut h = fixed.to_vec();
                    h.extend_from_slice(&rest);
                    log.proxy_headers.lock().unwrap().push(h);
                }
                for nth in 0.. {
                    let Some((head, body)) = read_request(&mut s, &mut buf).await else {
                        log.closed_by_client.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    log.got.lock().unwrap().push(Got { conn, head, body });
                    match plan(conn, nth) {
                        Act::Reply(r) => {
                            if s.write_all(r).await.is_err() {
                                return;
                            }
                        }
                        Act::Close => return,
                        Act::ReplyThenClose(r, after) => {
                            let _ = s.write_all(r).await;
                            tokio::time::sleep(after).await;
                            return;
                        }
                        Act::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                    }
                }
            });
        }
    });
    (addr, log)
}
