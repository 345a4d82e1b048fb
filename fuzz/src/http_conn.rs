//! `hotpair_http::ServerConn`: client bytes split at arbitrary points, time
//! advancing, replies given in any order, output taken whole (`take_unit`)
//! or in arbitrary pieces (`poll_output`/`consume_output`).
//!
//! Input: a mode byte, the limits, then operations. Checked throughout:
//! - `handle_input` never consumes more than offered, `input_consumed`
//!   counts exactly what was consumed, and nothing is consumed after
//!   reading stopped;
//! - requests: indices strictly increasing, paths normalized (absolute, no
//!   `..`/empty segment, NUL or backslash), bodies within `max_body_bytes`,
//!   at most `max_pipelined` requests in flight;
//! - output: every unit is one well-formed HTTP/1.1 response (an interim
//!   unit exactly `100 Continue`; a final unit may be empty — a request
//!   dropped mid-body — and then closes), `Content-Length` matching the body,
//!   `Connection: close` exactly on the unit that says `close_after`, and
//!   nothing after it; the byte stream parses as a sequence of responses;
//! - `send_response` refuses indices that are not awaiting a reply;
//! - differential mode: the same input fed in pieces and in one piece (with
//!   deterministic replies) gives the same requests and the same bytes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hotpair_http::{Limits, Method, OutputUnit, Request, Response, ServerConn, UnitKind};

use crate::Input;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let limits = Limits {
        max_header_bytes: 1 + inp.below(4096),
        max_body_bytes: inp.below(8192) as u64,
        max_pipelined: inp.below(5),
        header_timeout: Duration::from_millis(1 + u64::from(inp.u16())),
        idle_timeout: Duration::from_millis(1 + u64::from(inp.u16())),
        body_timeout: Duration::from_millis(1 + u64::from(inp.u16())),
        // Enforced by the node's driver, not by `ServerConn`.
        ..Limits::default()
    };
    if mode & 1 == 0 {
        chaos(limits, mode & 2 != 0, inp);
    } else {
        differential(limits, mode >> 1, inp.rest());
    }
}

/// Everything the harness knows about one connection.
struct Driver {
    conn: ServerConn,
    limits: Limits,
    now: Instant,
    /// Take output whole (`take_unit`) rather than in pieces.
    units: bool,
    /// Bytes received and not yet consumed.
    pending: Vec<u8>,
    given: u64,
    consumed: u64,
    eof: bool,
    /// Requests returned by `poll_request`, by index, and whether answered.
    delivered: BTreeMap<u64, (Method, bool)>,
    requests: Vec<Request>,
    /// Every output byte, in order.
    out: Vec<u8>,
    last_final: Option<u64>,
    closed_unit: bool,
}

impl Driver {
    fn new(limits: Limits, units: bool, now: Instant) -> Self {
        Driver {
            conn: ServerConn::new(limits, now),
            limits,
            now,
            units,
            pending: Vec::new(),
            given: 0,
            consumed: 0,
            eof: false,
            delivered: BTreeMap::new(),
            requests: Vec::new(),
            out: Vec::new(),
            last_final: None,
            closed_unit: false,
        }
    }

    fn receive(&mut self, bytes: &[u8]) {
        if self.eof {
            return;
        }
        self.given += bytes.len() as u64;
        self.pending.extend_from_slice(bytes);
        self.offer();
    }

    fn offer(&mut self) {
        if self.eof || self.pending.is_empty() {
            return;
        }
        let stopped = self.conn.wants_close();
        let n = self.conn.handle_input(&self.pending, self.now);
        assert!(
            n <= self.pending.len(),
            "consumed {n} of {}",
            self.pending.len()
        );
        if stopped {
            assert_eq!(n, 0, "input consumed after reading stopped");
        }
        self.pending.drain(..n);
        self.consumed += n as u64;
        assert_eq!(self.conn.input_consumed(), self.consumed);
        assert!(self.consumed <= self.given);
        self.collect();
    }

    /// Take new requests and check them.
    fn collect(&mut self) {
        while let Some(req) = self.conn.poll_request() {
            if let Some((&last, _)) = self.delivered.last_key_value() {
                assert!(req.index > last, "request index {} after {last}", req.index);
            }
            check_path(&req.path);
            assert!(
                req.body.len() as u64 <= self.limits.max_body_bytes,
                "body of {} bytes beyond max_body_bytes {}",
                req.body.len(),
                self.limits.max_body_bytes
            );
            assert!(req.headers.len() <= 128);
            self.delivered.insert(req.index, (req.method, false));
            self.requests.push(req);
        }
        let in_flight = self.conn.requests_in_flight();
        assert!(
            in_flight <= self.limits.max_pipelined.max(1),
            "{in_flight} requests in flight, max_pipelined {}",
            self.limits.max_pipelined
        );
    }

    fn answer(&mut self, index: u64, resp: Response) {
        let awaiting = self.delivered.get(&index).is_some_and(|(_, done)| !done);
        let valid = (200..=999).contains(&resp.status);
        let r = self.conn.send_response(index, resp);
        if valid && awaiting {
            // Refused only if the connection dropped it (closing).
            if r.is_ok() {
                self.delivered
                    .insert(index, (self.delivered[&index].0, true));
            }
        } else {
            assert!(
                r.is_err(),
                "send_response accepted index {index} / bad status"
            );
        }
        self.collect();
        self.offer();
    }

    /// Write up to `budget` bytes (or one unit).
    fn flush(&mut self, budget: usize) {
        if self.units {
            if let Some(u) = self.conn.take_unit() {
                self.unit(&u);
                self.conn.unit_flushed(self.now);
            }
        } else {
            let mut left = budget;
            while left > 0 {
                let Some(chunk) = self.conn.poll_output() else {
                    break;
                };
                assert!(!chunk.is_empty(), "empty output chunk");
                let n = chunk.len().min(left);
                self.out.extend_from_slice(&chunk[..n]);
                let before = self.conn.output_pending();
                self.conn.consume_output(n);
                assert_eq!(self.conn.output_pending(), before - n);
                left -= n;
            }
        }
        self.collect();
        self.offer();
    }

    fn unit(&mut self, u: &OutputUnit) {
        assert!(!self.closed_unit, "a unit after a close_after unit");
        let bytes: Vec<u8> = u.chunks.concat();
        crate::trace!(
            "unit {:?} index {} input_end {} close {} ({} bytes)",
            u.kind,
            u.index,
            u.input_end,
            u.close_after,
            bytes.len()
        );
        match u.kind {
            UnitKind::Interim => {
                assert_eq!(bytes, CONTINUE, "interim unit");
                assert!(!u.close_after);
                if let Some(last) = self.last_final {
                    assert!(u.index > last, "interim for {} after final {last}", u.index);
                }
            }
            UnitKind::Final => {
                if let Some(last) = self.last_final {
                    assert!(u.index > last, "final for {} after final {last}", u.index);
                }
                self.last_final = Some(u.index);
                assert!(
                    u.input_end <= self.consumed,
                    "input_end beyond the input read"
                );
                if bytes.is_empty() {
                    // A request dropped mid-body (EOF, timeout): no reply,
                    // but its place, and nothing after it.
                    assert!(u.close_after, "an empty final unit that does not close");
                    self.closed_unit = true;
                    return;
                }
                let method = self.delivered.get(&u.index).map(|(m, _)| *m);
                let r = parse_response(&bytes, |_| method.map(|m| m == Method::Head));
                assert_eq!(r.len, bytes.len(), "a unit is exactly one response");
                assert_eq!(r.close, u.close_after, "Connection: close vs close_after");
            }
        }
        if u.close_after {
            self.closed_unit = true;
        }
        self.out.extend_from_slice(&bytes);
    }

    fn eof(&mut self) {
        if !self.eof && (self.pending.is_empty() || self.conn.wants_close()) {
            self.eof = true;
            self.conn.handle_eof(self.now);
            self.collect();
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        if self.conn.poll_timeout().is_some_and(|t| t <= self.now) {
            self.conn.handle_timeout(self.now);
            self.collect();
            self.offer();
        }
    }

    /// Answer everything, write everything, until nothing moves.
    fn settle(&mut self, reply: &dyn Fn(&Request) -> Response) {
        for _ in 0..1000 {
            let before = (self.out.len(), self.consumed, self.delivered.len());
            let todo: Vec<u64> = self
                .delivered
                .iter()
                .filter(|(_, (_, done))| !done)
                .map(|(i, _)| *i)
                .collect();
            for i in todo {
                let req = self.requests.iter().find(|r| r.index == i).cloned();
                if let Some(req) = req {
                    self.answer(i, reply(&req));
                }
            }
            self.flush(usize::MAX);
            if self.units {
                while self.conn.take_unit().map(|u| self.unit(&u)).is_some() {
                    self.conn.unit_flushed(self.now);
                }
            }
            self.offer();
            if before == (self.out.len(), self.consumed, self.delivered.len()) {
                break;
            }
        }
        if !self.units {
            assert_eq!(self.conn.output_pending(), 0);
        }
        parse_stream(&self.out);
    }
}

fn check_path(path: &str) {
    if path == "*" {
        return;
    }
    assert!(path.starts_with('/'), "path {path:?} not absolute");
    assert!(
        !path.contains('\0') && !path.contains('\\'),
        "path {path:?}"
    );
    assert!(
        !path[1..].split('/').any(|s| s == ".." || s == "."),
        "path {path:?} has a dot segment"
    );
    // An empty segment only as the root itself.
    assert!(path == "/" || !path[1..].split('/').any(str::is_empty) || path.ends_with('/'));
    assert!(!path.contains("//"), "path {path:?} has an empty segment");
}

/// What `parse_response` learned about one response.
struct Parsed {
    len: usize,
    close: bool,
}

/// One response at the start of `bytes`. `is_head` says, for the response's
/// status, whether it answers a `HEAD` (`None`: unknown — then a body is
/// taken only if `bytes` has more than the head and the next bytes do not
/// start another response).
fn parse_response(bytes: &[u8], is_head: impl Fn(u16) -> Option<bool>) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut r = httparse::Response::new(&mut headers);
    let head = match r.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "not a response head ({other:?}): {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ),
    };
    assert_eq!(r.version, Some(1), "replies are HTTP/1.1");
    let status = r.code.expect("status");
    if status == 100 {
        assert_eq!(&bytes[..head], CONTINUE);
        return Parsed {
            len: head,
            close: false,
        };
    }
    assert!((200..=999).contains(&status), "status {status}");
    let mut length = None;
    let mut close = false;
    for h in r.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            assert!(length.is_none(), "two Content-Length fields");
            let v = std::str::from_utf8(h.value).expect("Content-Length is ASCII");
            length = Some(v.parse::<usize>().expect("Content-Length is decimal"));
        }
        if h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close") {
            close = true;
        }
        assert!(!h.name.eq_ignore_ascii_case("transfer-encoding"));
    }
    if status == 204 {
        assert_eq!(length, None, "204 with a Content-Length");
    }
    let rest = &bytes[head..];
    let body = match (status, is_head(status)) {
        (204 | 304, _) => 0,
        (_, Some(true)) => 0,
        (_, Some(false)) => length.expect("a reply with a body has a Content-Length"),
        (_, None) => {
            let n = length.expect("Content-Length");
            if rest.is_empty() || rest.starts_with(b"HTTP/1.1 ") {
                0
            } else {
                n
            }
        }
    };
    assert!(
        rest.len() >= body,
        "body cut short: {} of {body} bytes",
        rest.len()
    );
    Parsed {
        len: head + body,
        close,
    }
}

/// The whole output: responses back to back, nothing after a `close`.
fn parse_stream(mut out: &[u8]) {
    while !out.is_empty() {
        let r = parse_response(out, |_| None);
        out = &out[r.len..];
        if r.close {
            assert!(out.is_empty(), "bytes after Connection: close");
        }
    }
}

const STATUSES: [u16; 12] = [200, 201, 204, 206, 301, 304, 404, 500, 599, 999, 100, 1000];
const FIELDS: [(&str, &str); 10] = [
    ("X-A", "1"),
    ("Content-Length", "5"),
    ("Connection", "close"),
    ("Transfer-Encoding", "chunked"),
    ("Bad Name", "x"),
    ("X-B", "a\r\nb"),
    ("Keep-Alive", "timeout=5"),
    ("Content-Length", "abc"),
    ("connection", "keep-alive, close"),
    ("X-C", " spaced\t"),
];

/// A body that never starts like a response (`parse_stream` relies on it).
fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn fuzz_response(inp: &mut Input<'_>) -> Response {
    let mut r = Response::new(STATUSES[inp.below(STATUSES.len())]);
    let fields = inp.u16();
    for (i, (n, v)) in FIELDS.iter().enumerate() {
        if fields & (1 << i) != 0 {
            r = r.header(*n, *v);
        }
    }
    let len = match inp.below(4) {
        0 => 0,
        1 => inp.below(64),
        2 => 4096 + inp.below(3),
        _ => 5000,
    };
    r.body(body(len))
}

fn chaos(limits: Limits, units: bool, mut inp: Input<'_>) {
    let mut d = Driver::new(limits, units, origin());
    let mut ops = 0;
    while !inp.is_empty() && ops < 2000 {
        ops += 1;
        match inp.below(10) {
            0..=3 => {
                let b = inp.bytes(96);
                d.receive(b);
            }
            4 => {
                let ms = match inp.below(3) {
                    0 => u64::from(inp.u8()),
                    1 => u64::from(inp.u16()),
                    _ => u64::from(inp.u16()) * 16,
                };
                d.advance(Duration::from_millis(ms));
            }
            5 | 6 => {
                // Answer an awaiting request, or (sometimes) a wrong index.
                let awaiting: Vec<u64> = d
                    .delivered
                    .iter()
                    .filter(|(_, (_, done))| !done)
                    .map(|(i, _)| *i)
                    .collect();
                let pick = inp.below(awaiting.len() + 1);
                let index = awaiting.get(pick).copied().unwrap_or(u64::from(inp.u8()));
                let resp = fuzz_response(&mut inp);
                d.answer(index, resp);
            }
            7 | 8 => {
                let n = 1 + inp.below(3000);
                d.flush(n);
            }
            _ => d.eof(),
        }
        if d.conn.is_closed() {
            break;
        }
    }
    d.eof();
    d.settle(&|req| Response::new(200).body(body(req.body.len() % 100)));
}

/// Deterministic replies: a function of the request alone.
fn echo(req: &Request) -> Response {
    let n = (req.path.len() + req.body.len() + req.headers.len()) % 5000;
    let mut r = Response::new(if req.index % 7 == 6 { 204 } else { 200 });
    // Every fifth reply closes (see `until_close` in `differential`).
    if req.index % 5 == 4 {
        r = r.header("Connection", "close");
    }
    r.header("X-Index", req.index.to_string()).body(body(n))
}

fn differential(limits: Limits, cut: u8, stream: &[u8]) {
    let limits = Limits {
        header_timeout: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(3600),
        body_timeout: Duration::from_secs(3600),
        ..limits
    };
    let now = origin();
    let run = |pieces: &mut dyn Iterator<Item = &[u8]>, units: bool| {
        let mut d = Driver::new(limits, units, now);
        for p in pieces {
            d.receive(p);
            d.settle(&echo);
        }
        d.settle(&echo);
        // Reading stopped (an error, `Connection: close`): the bytes of the
        // read that stopped it count as consumed, so `consumed` depends on
        // the pieces then; it does not matter (nothing more is read).
        let stopped = d.conn.wants_close();
        d.eof();
        d.settle(&echo);
        (d.requests, d.out, (!stopped).then_some(d.consumed))
    };
    let size = 1 + usize::from(cut % 32);
    crate::trace!(
        "limits {limits:?}, pieces of {size}: {:?}",
        String::from_utf8_lossy(stream)
    );
    let a = run(&mut stream.chunks(size), false);
    let b = run(&mut std::iter::once(stream), true);
    crate::trace!(
        "pieces: consumed {:?}, out {:?}",
        a.2,
        String::from_utf8_lossy(&a.1)
    );
    crate::trace!(
        "whole: consumed {:?}, out {:?}",
        b.2,
        String::from_utf8_lossy(&b.1)
    );
    // A reply that closes the connection (`echo`'s every fifth) ends what
    // the client can get: requests pipelined after it may or may not have
    // been parsed (and handed out) before the application's answer came —
    // the whole input at once parses them, in pieces they arrive after the
    // close. Neither gets a reply (the outputs are compared below), so
    // only the requests up to that one must agree.
    let until_close = |reqs: &[Request]| -> Vec<Request> {
        let end = reqs
            .iter()
            .position(|r| r.index % 5 == 4)
            .map_or(reqs.len(), |p| p + 1);
        reqs[..end].to_vec()
    };
    assert_eq!(
        until_close(&a.0),
        until_close(&b.0),
        "requests depend on segmentation"
    );
    if let (Some(x), Some(y)) = (a.2, b.2) {
        assert_eq!(x, y, "bytes consumed depend on segmentation");
    }
    assert!(
        a.1 == b.1,
        "output depends on segmentation:\n{:?}\n{:?}",
        String::from_utf8_lossy(&a.1),
        String::from_utf8_lossy(&b.1)
    );
}

/// The only clock read: an origin for synthetic instants.
fn origin() -> Instant {
    Instant::now()
}
