//! The bounded accept loop the admin socket and the metrics endpoint share:
//! one request per connection, read within a time and a size, answered
//! once, closed. At most [`Bounds::slots`] clients at once; one more is
//! closed at once (a client that connects and says nothing holds a slot for
//! the read timeout, no longer). Neither listener may ever hold the node up.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A listener's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Clients served at once.
    pub slots: usize,
    /// Time for the whole request to arrive.
    pub read_timeout: Duration,
    /// Time for the answer to be taken.
    pub write_timeout: Duration,
    /// Request bytes read at most (the answer is made from what came).
    pub max_request: usize,
}

/// Something that accepts connections (a Unix or a TCP listener).
pub trait Accept {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Accept for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        tokio::net::UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        tokio::net::TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

/// Serve `listener` until the runtime stops. `admit` looks at each new
/// connection first: `Err(line)` refuses it (the line is written, not
/// waited for, and the client holds no slot). `complete` says when the
/// request bytes read so far are a whole request; `respond` makes the
/// answer from them.
pub async fn serve<L, A, R, Fut>(
    listener: L,
    what: &'static str,
    bounds: Bounds,
    mut admit: A,
    complete: fn(&[u8]) -> bool,
    respond: R,
) where
    L: Accept,
    A: FnMut(&L::Stream) -> Result<(), Vec<u8>>,
    R: Fn(Vec<u8>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Vec<u8>> + Send,
{
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(bounds.slots));
    loop {
        let mut sock = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "{what}: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(line) = admit(&sock) {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), sock.write_all(&line)).await;
            });
            continue;
        }
        // A bounded number at once; beyond it a client is closed at once.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(sock);
            continue;
        };
        let respond = respond.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut request = Vec::with_capacity(256);
            let read = async {
                let mut chunk = [0u8; 1024];
                while !complete(&request) && request.len() < bounds.max_request {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
            };
            if tokio::time::timeout(bounds.read_timeout, read)
                .await
                .is_err()
            {
                return;
            }
            request.truncate(bounds.max_request);
            let out = respond(request).await;
            let _ = tokio::time::timeout(bounds.write_timeout, sock.write_all(&out)).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_rt as rt;

    #[test]
    fn one_request_one_answer_and_the_bounds_hold() {
        rt().block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let bounds = Bounds {
                slots: 2,
                read_timeout: Duration::from_millis(300),
                write_timeout: Duration::from_secs(1),
                max_request: 16,
            };
            tokio::spawn(serve(
                l,
                "test",
                bounds,
                |_| Ok(()),
                |r: &[u8]| r.contains(&b'\n'),
                |req: Vec<u8>| async move {
                    let mut out = b"got ".to_vec();
                    out.extend_from_slice(&req);
                    out
                },
            ));
            let ask = |send: &'static [u8]| async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(send).await.unwrap();
                let mut out = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
                out
            };
            assert_eq!(ask(b"status\n").await, b"got status\n");
            // An oversized request is cut at the bound and answered.
            assert_eq!(ask(b"0123456789abcdefXYZ\n").await, b"got 0123456789abcdef");
            // Two silent clients hold both slots: a third is closed at once,
            // answered nothing; once the silent ones time out, service resumes.
            let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(ask(b"third\n").await, b"");
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert_eq!(ask(b"later\n").await, b"got later\n");
        });
    }

    #[test]
    fn a_refused_client_gets_its_line_and_holds_no_slot() {
        rt().block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let bounds = Bounds {
                slots: 1,
                read_timeout: Duration::from_secs(5),
                write_timeout: Duration::from_secs(1),
                max_request: 64,
            };
            let mut n = 0;
            tokio::spawn(serve(
                l,
                "test",
                bounds,
                move |_| {
                    n += 1;
                    if n <= 3 {
                        Err(b"refused\n".to_vec())
                    } else {
                        Ok(())
                    }
                },
                |r: &[u8]| r.contains(&b'\n'),
                |_req: Vec<u8>| async { b"ok\n".to_vec() },
            ));
            for _ in 0..3 {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                let mut out = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
                assert_eq!(out, b"refused\n");
            }
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"x\n").await.unwrap();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
            assert_eq!(out, b"ok\n");
        });
    }
}
