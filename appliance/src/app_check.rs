//! The application check's probe: one HTTP/1.1 GET of the configured path,
//! bounded by the timeout. The node core decides when to run it and what
//! the results mean (`hotpair_replicator::node::app`); this only asks.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest status line read: a health answer's first line is short.
const MAX_STATUS_LINE: usize = 1024;

/// Whether the application at `address` (host:port) answers `GET path`
/// with a 2xx or 3xx status within `timeout`. The connection is closed
/// after the status line: the body is not wanted.
pub async fn probe(address: &str, path: &str, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, ask(address, path)).await {
        Ok(Ok(status)) => {
            let ok = (200..400).contains(&status);
            if !ok {
                tracing::debug!(address, path, status, "application check: bad status");
            }
            ok
        }
        Ok(Err(e)) => {
            tracing::debug!(address, path, error = %e, "application check failed");
            false
        }
        Err(_) => {
            tracing::debug!(address, path, "application check timed out");
            false
        }
    }
}

async fn ask(address: &str, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(address).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: hotpair-app-check\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            return parse_status(&buf[..end]);
        }
        if buf.len() >= MAX_STATUS_LINE {
            return Err(bad("status line too long"));
        }
        let mut chunk = [0u8; 256];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(bad("connection closed before a status line"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn bad(what: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// `HTTP/1.x NNN reason` → NNN.
fn parse_status(line: &[u8]) -> std::io::Result<u16> {
    let line = std::str::from_utf8(line).map_err(|_| bad("status line not UTF-8"))?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not an HTTP/1 status line"));
    }
    parts
        .next()
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..600).contains(c))
        .ok_or_else(|| bad("bad status code"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server answering every connection with `reply` (after reading the
    /// request head), or closing at once when `reply` is empty.
    async fn server(reply: &'static [u8]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    assert!(got.starts_with(b"GET /health HTTP/1.1\r\n"));
                    if !reply.is_empty() {
                        let _ = s.write_all(reply).await;
                    }
                });
            }
        });
        addr
    }

    use crate::test_rt as rt;

    #[test]
    fn a_2xx_or_3xx_answer_passes_anything_else_fails() {
        rt().block_on(async {
            let t = Duration::from_secs(2);
            let ok = server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            assert!(probe(&ok, "/health", t).await);
            let moved = server(b"HTTP/1.0 302 Found\r\n\r\n").await;
            assert!(probe(&moved, "/health", t).await);
            let sick = server(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
            assert!(!probe(&sick, "/health", t).await);
            let closes = server(b"").await;
            assert!(!probe(&closes, "/health", t).await);
            let garbage = server(b"SSH-2.0-OpenSSH\r\n").await;
            assert!(!probe(&garbage, "/health", t).await);
        });
    }

    #[test]
    fn a_refused_or_silent_application_fails_within_the_timeout() {
        rt().block_on(async {
            // Bound, then closed: nobody listens there.
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let refused = l.local_addr().unwrap().to_string();
            drop(l);
            assert!(!probe(&refused, "/health", Duration::from_secs(2)).await);
            // Listening but never answering.
            let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = silent.local_addr().unwrap().to_string();
            let start = std::time::Instant::now();
            assert!(!probe(&addr, "/health", Duration::from_millis(200)).await);
            assert!(start.elapsed() < Duration::from_secs(2));
            drop(silent);
        });
    }
}
