//! `upstream` handler: reverse proxy to the user's application over kernel
//! TCP, with a bounded pool of keep-alive connections.
//!
//! Every proxied request carries `X-Request-Id`, stable for the request, so
//! the application can deduplicate a request re-executed after a takeover.
//! Hop-by-hop headers are not forwarded in either direction; the reply body is
//! read whole (bounded) because hotpair replies are whole messages (they are
//! logged whole to the backup in duplex mode).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hotpair_http::{Method, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

/// Headers that describe one hop, not the message.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
    "host",
    "x-request-id",
];

/// One upstream application.
#[derive(Debug)]
pub struct Upstream {
    addr: SocketAddr,
    idle: Mutex<Vec<TcpStream>>,
    max_idle: usize,
    timeout: Duration,
    max_body: u64,
}

#[derive(Debug)]
enum ProxyError {
    Io(std::io::Error),
    BadReply(&'static str),
    TooLarge,
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Io(e) => write!(f, "upstream I/O: {e}"),
            ProxyError::BadReply(w) => write!(f, "upstream reply malformed: {w}"),
            ProxyError::TooLarge => write!(f, "upstream reply too large"),
        }
    }
}

impl ProxyError {
    /// The application could not take the request at all, or dropped it
    /// before a whole reply: refused, reset, closed. (A malformed or
    /// oversized reply is the application's answer, not its absence.)
    fn unreachable(&self) -> bool {
        match self {
            ProxyError::Io(_) => true,
            ProxyError::BadReply(what) => {
                what.starts_with("connection closed") || *what == "body shorter than Content-Length"
            }
            ProxyError::TooLarge => false,
        }
    }
}

/// What a proxied request came to.
#[derive(Debug)]
pub struct Proxied {
    /// The reply for the client (an error reply when the exchange failed).
    pub response: Response,
    /// The application could not take the request or dropped it before a
    /// whole reply (see `NodeCore::handle_job_unreachable`).
    pub unreachable: bool,
}

impl From<std::io::Error> for ProxyError {
    fn from(e: std::io::Error) -> Self {
        ProxyError::Io(e)
    }
}

impl Upstream {
    pub fn new(addr: SocketAddr, max_idle: usize, timeout: Duration, max_body: u64) -> Self {
        Upstream {
            addr,
            idle: Mutex::new(Vec::new()),
            max_idle,
            timeout,
            max_body,
        }
    }

    fn take_idle(&self) -> Option<TcpStream> {
        self.idle.lock().ok()?.pop()
    }

    fn put_idle(&self, s: TcpStream) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.max_idle {
                idle.push(s);
            }
        }
    }

    /// Proxy `req`; never fails: errors become 502, a timeout 504.
    pub async fn handle(&self, req: &Request, request_id: &str) -> Proxied {
        let wire = encode_request(req, request_id, self.addr);
        let head_only = req.method == Method::Head;
        match tokio::time::timeout(self.timeout, self.exchange(&wire, head_only)).await {
            Ok(Ok(response)) => Proxied {
                response,
                unreachable: false,
            },
            Ok(Err(e)) => {
                tracing::warn!(upstream = %self.addr, error = %e, request_id, "upstream failed");
                Proxied {
                    response: Response::error(502),
                    unreachable: e.unreachable(),
                }
            }
            Err(_) => {
                tracing::warn!(upstream = %self.addr, request_id, "upstream timed out");
                // A slow application is not a dead one: running the request
                // again elsewhere would only double its load.
                Proxied {
                    response: Response::error(504),
                    unreachable: false,
                }
            }
        }
    }

    async fn exchange(&self, wire: &[u8], head_only: bool) -> Result<Response, ProxyError> {
        // A pooled connection may have been closed by the application while
        // idle; if it fails before any reply byte, try once on a fresh one.
        if let Some(mut s) = self.take_idle() {
            match round_trip(&mut s, wire, head_only, self.max_body).await {
                Ok((resp, reusable)) => {
                    if reusable {
                        self.put_idle(s);
                    }
                    return Ok(resp);
                }
                Err(RoundTrip::BeforeReply(_)) => {}
                Err(RoundTrip::Failed(e)) => return Err(e),
            }
        }
        let mut s = TcpStream::connect(self.addr).await?;
        s.set_nodelay(true)?;
        match round_trip(&mut s, wire, head_only, self.max_body).await {
            Ok((resp, reusable)) => {
                if reusable {
                    self.put_idle(s);
                }
                Ok(resp)
            }
            Err(RoundTrip::BeforeReply(e)) | Err(RoundTrip::Failed(e)) => Err(e),
        }
    }
}

fn encode_request(req: &Request, request_id: &str, addr: SocketAddr) -> Vec<u8> {
    let mut w = Vec::with_capacity(256 + req.body.len());
    w.extend_from_slice(req.method.as_str().as_bytes());
    w.push(b' ');
    // The re-encoded target: `path` itself is percent-decoded.
    w.extend_from_slice(req.target().as_bytes());
    w.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    match req.header("host") {
        Some(h) => w.extend_from_slice(h),
        None => w.extend_from_slice(addr.to_string().as_bytes()),
    }
    w.extend_from_slice(b"\r\n");
    for (name, value) in &req.headers {
        if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            continue;
        }
        w.extend_from_slice(name.as_bytes());
        w.extend_from_slice(b": ");
        w.extend_from_slice(value);
        w.extend_from_slice(b"\r\n");
    }
    w.extend_from_slice(b"X-Request-Id: ");
    w.extend_from_slice(request_id.as_bytes());
    w.extend_from_slice(b"\r\nContent-Length: ");
    w.extend_from_slice(req.body.len().to_string().as_bytes());
    w.extend_from_slice(b"\r\n\r\n");
    w.extend_from_slice(&req.body);
    w
}

enum RoundTrip {
    /// Nothing of a reply was read: safe to retry on a fresh connection.
    BeforeReply(ProxyError),
    Failed(ProxyError),
}

async fn round_trip(
    s: &mut TcpStream,
    wire: &[u8],
    head_only: bool,
    max_body: u64,
) -> Result<(Response, bool), RoundTrip> {
    s.write_all(wire)
        .await
        .map_err(|e| RoundTrip::BeforeReply(e.into()))?;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    // Read the head (skipping 1xx interim replies).
    loop {
        let n = s.read_buf(&mut buf).await.map_err(|e| {
            if buf.is_empty() {
                RoundTrip::BeforeReply(e.into())
            } else {
                RoundTrip::Failed(e.into())
            }
        })?;
        if n == 0 {
            return Err(if buf.is_empty() {
                RoundTrip::BeforeReply(ProxyError::BadReply("connection closed before reply"))
            } else {
                RoundTrip::Failed(ProxyError::BadReply("connection closed inside reply head"))
            });
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = parsed.code.unwrap_or(502);
                if (100..200).contains(&status) {
                    let _ = buf.split_to(head_len);
                    continue;
                }
                let mut resp = Response::new(status);
                let mut length: Option<u64> = None;
                let mut chunked = false;
                let mut close = parsed.version == Some(0);
                for h in parsed.headers.iter() {
                    let name = h.name;
                    if name.eq_ignore_ascii_case("content-length") {
                        let v = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .ok_or(RoundTrip::Failed(ProxyError::BadReply("Content-Length")))?;
                        if length.is_some_and(|l| l != v) {
                            return Err(RoundTrip::Failed(ProxyError::BadReply(
                                "two Content-Lengths",
                            )));
                        }
                        length = Some(v);
                    } else if name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = h.value.eq_ignore_ascii_case(b"chunked");
                        if !chunked {
                            return Err(RoundTrip::Failed(ProxyError::BadReply("transfer coding")));
                        }
                    } else if name.eq_ignore_ascii_case("connection") {
                        let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                        if v.split(',').any(|t| t.trim() == "close") {
                            close = true;
                        }
                    }
                    // X-Request-Id from the application is passed back to the client.
                    if !name.eq_ignore_ascii_case("x-request-id")
                        && HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop))
                    {
                        continue;
                    }
                    resp.headers.push((
                        name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    ));
                }
                let _ = buf.split_to(head_len);
                let no_body = head_only || status == 204 || status == 304;
                let body = if no_body {
                    Bytes::new()
                } else if chunked {
                    read_chunked(s, &mut buf, max_body)
                        .await
                        .map_err(RoundTrip::Failed)?
                } else if let Some(len) = length {
                    if len > max_body {
                        return Err(RoundTrip::Failed(ProxyError::TooLarge));
                    }
                    read_exact_body(s, &mut buf, len as usize)
                        .await
                        .map_err(RoundTrip::Failed)?
                } else {
                    close = true;
                    read_to_eof(s, &mut buf, max_body)
                        .await
                        .map_err(RoundTrip::Failed)?
                };
                resp.body = body;
                return Ok((resp, !close && buf.is_empty()));
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD_BYTES {
                    return Err(RoundTrip::Failed(ProxyError::BadReply("head too large")));
                }
            }
            Err(_) => return Err(RoundTrip::Failed(ProxyError::BadReply("unparsable head"))),
        }
    }
}

async fn read_exact_body(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    len: usize,
) -> Result<Bytes, ProxyError> {
    buf.reserve(len.saturating_sub(buf.len()));
    while buf.len() < len {
        if s.read_buf(buf).await? == 0 {
            return Err(ProxyError::BadReply("body shorter than Content-Length"));
        }
    }
    Ok(buf.split_to(len).freeze())
}

async fn read_to_eof(s: &mut TcpStream, buf: &mut BytesMut, max: u64) -> Result<Bytes, ProxyError> {
    while s.read_buf(buf).await? != 0 {
        if buf.len() as u64 > max {
            return Err(ProxyError::TooLarge);
        }
    }
    Ok(std::mem::take(buf).freeze())
}

async fn fill(s: &mut TcpStream, buf: &mut BytesMut) -> Result<(), ProxyError> {
    if s.read_buf(buf).await? == 0 {
        return Err(ProxyError::BadReply(
            "connection closed inside chunked body",
        ));
    }
    Ok(())
}

async fn read_line(s: &mut TcpStream, buf: &mut BytesMut) -> Result<BytesMut, ProxyError> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(i);
            let _ = buf.split_to(2);
            return Ok(line);
        }
        if buf.len() > 8 * 1024 {
            return Err(ProxyError::BadReply("chunk line too long"));
        }
        fill(s, buf).await?;
    }
}

async fn read_chunked(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    max: u64,
) -> Result<Bytes, ProxyError> {
    let mut body = BytesMut::new();
    loop {
        let line = read_line(s, buf).await?;
        let size_hex = line[..].split(|&b| b == b';').next().unwrap_or(&[]);
        let size = std::str::from_utf8(size_hex)
            .ok()
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .ok_or(ProxyError::BadReply("chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                if read_line(s, buf).await?.is_empty() {
                    return Ok(body.freeze());
                }
            }
        }
        // A hostile upstream may announce any u64 (`ffffffffffffffff`):
        // the sum is checked, not wrapped or panicked on.
        if (body.len() as u64)
            .checked_add(size)
            .is_none_or(|total| total > max)
        {
            return Err(ProxyError::TooLarge);
        }
        // Within `max` (a u64 body bound that fits memory), so within usize.
        let size = usize::try_from(size).map_err(|_| ProxyError::TooLarge)?;
        while buf.len() < size + 2 {
            fill(s, buf).await?;
        }
        body.extend_from_slice(&buf[..size]);
        if &buf[size..size + 2] != b"\r\n" {
            return Err(ProxyError::BadReply("chunk not followed by CRLF"));
        }
        let _ = buf.split_to(size + 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotpair_http::Version;

    /// An upstream that answers every connection with `reply` and closes.
    async fn hostile_upstream(reply: &'static [u8]) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req).await;
                let _ = s.write_all(reply).await;
            }
        });
        addr
    }

    #[test]
    fn a_chunk_size_near_u64_max_is_a_502_not_a_panic() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // A first chunk, so the body is not empty when the huge size comes
            // (the sum `body + size` is what overflowed).
            let addr = hostile_upstream(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  2\r\nhi\r\nffffffffffffffff\r\nxx\r\n0\r\n\r\n",
            )
            .await;
            let up = Upstream::new(addr, 1, Duration::from_secs(5), 1 << 20);
            let req = Request {
                index: 0,
                method: Method::Get,
                path: "/".into(),
                query: None,
                version: Version::Http11,
                headers: Vec::new(),
                body: Bytes::new(),
                keep_alive: true,
            };
            let got = up.handle(&req, "test-1").await;
            assert_eq!(got.response.status, 502);
            // A malformed reply is the application's answer: not a reason
            // to run the request again on the peer.
            assert!(!got.unreachable);
        });
    }
}
