//! Reading a request head: the bytes up to the empty line (with the
//! header timeout and size bound), then the request line and header fields
//! parsed and checked into a request and how its body is framed.

use std::time::Instant;

use bytes::Bytes;

use crate::target::parse_target;
use crate::{Limits, Method, Request, Version};

use super::chunked::ChunkDecoder;
use super::{BodyRead, Framing, Read, ServerConn, Slot, SlotState};

/// Most header fields in one request head (more → 431).
pub(super) const MAX_HEADERS: usize = 128;

/// Longest method token accepted while the request line is still arriving
/// (every method we implement is shorter; a longer token → 501 at once).
const MAX_METHOD_LEN: usize = 32;

#[derive(Debug, Default)]
pub(super) struct HeadState {
    buf: Vec<u8>,
    /// Bytes of this head so far, including skipped empty lines.
    total: usize,
    pub(super) started: Option<Instant>,
    /// Saw a CR among the empty lines before the request line.
    lead_cr: bool,
    method_len: usize,
    method_done: bool,
}

impl HeadState {
    pub(super) fn reset(&mut self) {
        self.buf.clear();
        self.total = 0;
        self.started = None;
        self.lead_cr = false;
        self.method_len = 0;
        self.method_done = false;
    }
}

/// A request the connection answers itself.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reject {
    pub(super) status: u16,
    pub(super) is_head: bool,
}

impl Reject {
    pub(super) fn new(status: u16) -> Self {
        Reject {
            status,
            is_head: false,
        }
    }
}

#[derive(Debug)]
enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug)]
struct ParsedHead {
    req: Request,
    body: BodyKind,
    expect_continue: bool,
}

pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// End (exclusive) of the first empty line (`\n\n` or `\n\r\n`) found at or
/// after `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut j = from;
    while j < buf.len() {
        if buf[j] == b'\n' {
            match (buf.get(j + 1), buf.get(j + 2)) {
                (Some(b'\n'), _) => return Some(j + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(j + 3),
                _ => {}
            }
        }
        j += 1;
    }
    None
}

pub(super) fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// Comma-separated list elements, trimmed, empty ones skipped.
pub(super) fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty())
}

/// A decimal length: digits only, no sign. `Err(true)` if it overflows u64.
pub(super) fn parse_decimal(v: &[u8]) -> Result<u64, bool> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(false);
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|a| a.checked_add(u64::from(d - b'0')))
            .ok_or(true)
    })
}

/// 505 when the request line names an HTTP version we do not speak, 400 when
/// the version is not an HTTP version at all.
fn version_status(head: &[u8]) -> u16 {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = &head[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(&[]);
    match version {
        [b'H', b'T', b'T', b'P', b'/', a, b'.', b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            505
        }
        [b'H', b'T', b'T', b'P', b'/', a] if a.is_ascii_digit() => 505,
        _ => 400,
    }
}

fn parse_head(buf: &[u8], limits: &Limits) -> Result<ParsedHead, Reject> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut storage);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n == buf.len() => {}
        Ok(_) => return Err(Reject::new(400)),
        Err(httparse::Error::TooManyHeaders) => return Err(Reject::new(431)),
        Err(httparse::Error::Version) => return Err(Reject::new(version_status(buf))),
        Err(_) => return Err(Reject::new(400)),
    }
    let version = match parsed.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(Reject::new(505)),
    };
    let method = Method::from_token(parsed.method.unwrap_or("")).ok_or(Reject::new(501))?;
    let bad = Reject {
        status: 400,
        is_head: method == Method::Head,
    };
    let (path, query) = parse_target(method, parsed.path.unwrap_or("")).ok_or(bad)?;

    let mut hosts = 0usize;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut content_length: Option<u64> = None;
    let mut content_lengths = 0usize;
    let mut transfer_codings: Vec<Vec<u8>> = Vec::new();
    let mut has_te = false;
    let mut expect_continue = false;
    for h in parsed.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in list_items(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive_token = true;
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            content_lengths += 1;
            match parse_decimal(trim_ows(h.value)) {
                Ok(n) => content_length = Some(n),
                Err(false) => return Err(bad),
                Err(true) => return Err(Reject { status: 413, ..bad }),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            has_te = true;
            transfer_codings.extend(list_items(h.value).map(|c| c.to_ascii_lowercase()));
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= trim_ows(h.value).eq_ignore_ascii_case(b"100-continue");
        }
    }

    if hosts > 1 || (version == Version::Http11 && hosts == 0) {
        return Err(bad);
    }
    let keep_alive = !close
        && match version {
            Version::Http11 => true,
            Version::Http10 => keep_alive_token,
        };

    let body = if has_te {
        // No request smuggling: TE with CL, TE on HTTP/1.0 → 400; a coding
        // we do not implement (anything but chunked) → 501 (RFC 9112 §6.1);
        // chunked not last or applied twice → 400 (§6.3).
        if content_lengths > 0 || version == Version::Http10 {
            return Err(bad);
        }
        if transfer_codings.iter().any(|c| c.as_slice() != b"chunked") {
            return Err(Reject { status: 501, ..bad });
        }
        if transfer_codings.len() != 1 {
            return Err(bad);
        }
        BodyKind::Chunked
    } else if content_lengths > 1 {
        return Err(bad);
    } else {
        match content_length {
            Some(n) if n > limits.max_body_bytes => return Err(Reject { status: 413, ..bad }),
            Some(0) | None => BodyKind::None,
            Some(n) => BodyKind::Length(n),
        }
    };
    let expect_continue =
        expect_continue && version == Version::Http11 && !matches!(body, BodyKind::None);

    let headers = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect();
    Ok(ParsedHead {
        req: Request {
            index: 0,
            method,
            path,
            query,
            version,
            headers,
            body: Bytes::new(),
            keep_alive,
        },
        body,
        expect_continue,
    })
}

pub(super) fn is_field_value(v: &str) -> bool {
    !v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

impl ServerConn {
    pub(super) fn read_head(&mut self, data: &[u8], now: Instant) -> usize {
        let max = self.limits.max_header_bytes;
        let mut i = 0;
        if self.head.buf.is_empty() {
            // Empty lines before the request line are ignored (RFC 9112 §2.2;
            // some clients send CRLF after a body). They count against the
            // head limit but neither start the header timeout nor reset the
            // idle clock, so they cannot keep a connection open.
            while i < data.len() {
                match data[i] {
                    b'\n' => self.head.lead_cr = false,
                    b'\r' if !self.head.lead_cr => self.head.lead_cr = true,
                    _ if self.head.lead_cr => {
                        self.reject(Reject::new(400));
                        return i;
                    }
                    _ => break,
                }
                i += 1;
                self.head.total += 1;
                if self.head.total >= max {
                    self.reject(Reject::new(431));
                    return i;
                }
            }
            if i == data.len() {
                return i;
            }
        }
        if self.head.started.is_none() {
            // The first head's deadline runs from the accept (see `accepted`).
            self.head.started = Some(self.accepted.take().unwrap_or(now));
        }
        let h = &mut self.head;
        let room = max.saturating_sub(h.total);
        let take = room.min(data.len() - i);
        let old = h.buf.len();
        h.buf.extend_from_slice(&data[i..i + take]);
        h.total += take;

        // Reject a non-HTTP stream early: the method must be a short token.
        let mut early = None;
        if !h.method_done {
            for &b in &h.buf[old..] {
                if b == b' ' {
                    h.method_done = true;
                    break;
                }
                if !is_tchar(b) {
                    early = Some(400);
                    break;
                }
                h.method_len += 1;
                if h.method_len > MAX_METHOD_LEN {
                    early = Some(501);
                    break;
                }
            }
        }
        if let Some(status) = early {
            self.reject(Reject::new(status));
            return i + take;
        }

        let h = &mut self.head;
        if let Some(end) = find_head_end(&h.buf, old.saturating_sub(2)) {
            // `end > old`: an earlier call would have found an older end.
            let extra = h.buf.len() - end;
            h.buf.truncate(end);
            h.total = h.total.saturating_sub(extra);
            self.finish_head(now);
            return (i + take).saturating_sub(extra);
        }
        if h.total >= max {
            self.reject(Reject::new(431));
        }
        i + take
    }

    fn finish_head(&mut self, now: Instant) {
        let parsed = parse_head(&self.head.buf, &self.limits);
        self.head.reset();
        let mut p = match parsed {
            Ok(p) => p,
            Err(rej) => {
                self.reject(rej);
                return;
            }
        };
        let index = self.next_index;
        self.next_index += 1;
        p.req.index = index;
        self.slots.push_back(Slot {
            index,
            is_head: p.req.method == Method::Head,
            version: p.req.version,
            keep_alive: p.req.keep_alive,
            interim: p.expect_continue && self.continue_sent_for != Some(index),
            input_end: u64::MAX,
            state: SlotState::Receiving,
        });
        let framing = match p.body {
            BodyKind::None => {
                self.complete(p.req, Vec::new());
                return;
            }
            BodyKind::Length(n) => Framing::Length { remaining: n },
            BodyKind::Chunked => Framing::Chunked(ChunkDecoder::default()),
        };
        self.read = Read::Body(Box::new(BodyRead {
            req: p.req,
            buf: Vec::new(),
            framing,
            last_byte: now,
        }));
    }
}
