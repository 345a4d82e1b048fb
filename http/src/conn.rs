//! The per-connection HTTP/1.x server state machine (sans-IO).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::target::parse_target;
use crate::{reason_phrase, Error, Limits, Method, Request, Response, Version};

/// Most header fields in one request head (more → 431).
const MAX_HEADERS: usize = 128;
/// Longest method token accepted while the request line is still arriving
/// (every method we implement is shorter; a longer token → 501 at once).
const MAX_METHOD_LEN: usize = 32;
/// Longest chunk extension (per chunk-size line) before the body is rejected (400).
const MAX_CHUNK_EXT: usize = 4096;
/// Bodies up to this size are copied into the head's buffer so that a small
/// reply is one output chunk; larger bodies are queued zero-copy.
const COALESCE_BODY: usize = 4096;
/// First allocation step for a request body buffer.
const BODY_ALLOC_STEP: usize = 16 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// One HTTP/1.x server connection: bytes in, requests out, replies in, bytes out.
///
/// See the crate documentation for the call order. Every method is
/// panic-free on any input. Buffering is bounded by [`Limits`]: the partial
/// head by `max_header_bytes`, a body by `max_body_bytes`, and the number of
/// requests held (received, awaiting a reply, or replied but not flushed) by
/// `max_pipelined` — so at worst `max_pipelined × (max_header_bytes +
/// max_body_bytes)` of request data, plus the replies the application hands in.
///
/// Everything written is a function of the bytes read and the replies given,
/// never of how the input was segmented: e.g. `100 Continue` is sent for every
/// accepted HTTP/1.1 request with `Expect: 100-continue` and a body, even if
/// body bytes already arrived, so replicas stay byte-identical.
#[derive(Debug)]
pub struct ServerConn {
    limits: Limits,
    read: Read,
    head: HeadState,
    next_index: u64,
    /// Requests from the oldest not yet fully queued for output, by index
    /// (consecutive).
    slots: VecDeque<Slot>,
    /// Complete requests not yet returned by `poll_request`.
    ready: VecDeque<Request>,
    /// Output chunks; the flag marks the last chunk of a reply.
    out: VecDeque<(Bytes, bool)>,
    out_off: usize,
    out_len: usize,
    /// Replies queued in `out` whose last byte is not consumed yet.
    out_replies: usize,
    /// Close once everything owed has been flushed; read no more.
    close_after: bool,
    /// Close now (idle timeout).
    aborted: bool,
    /// When the connection became idle, if that is known (see `poll_timeout`).
    idle_since: Option<Instant>,
    /// Latest time passed in.
    last_now: Instant,
}

#[derive(Debug)]
enum Read {
    /// Waiting for / reading a request head (state in `HeadState`).
    Head,
    /// Reading the body of the request in the last slot.
    Body(Box<BodyRead>),
    /// Reading stopped for good (error, close, EOF, timeout).
    Stopped,
}

#[derive(Debug, Default)]
struct HeadState {
    buf: Vec<u8>,
    /// Bytes of this head so far, including skipped empty lines.
    total: usize,
    started: Option<Instant>,
    /// Saw a CR among the empty lines before the request line.
    lead_cr: bool,
    method_len: usize,
    method_done: bool,
}

impl HeadState {
    fn reset(&mut self) {
        self.buf.clear();
        self.total = 0;
        self.started = None;
        self.lead_cr = false;
        self.method_len = 0;
        self.method_done = false;
    }
}

#[derive(Debug)]
struct BodyRead {
    req: Request,
    buf: Vec<u8>,
    framing: Framing,
    last_byte: Instant,
}

#[derive(Debug)]
enum Framing {
    Length { remaining: u64 },
    Chunked(ChunkDecoder),
}

#[derive(Debug)]
struct Slot {
    index: u64,
    is_head: bool,
    version: Version,
    keep_alive: bool,
    /// A `100 Continue` is owed before anything else of this request.
    interim: bool,
    state: SlotState,
}

#[derive(Debug)]
enum SlotState {
    /// Head parsed, body still arriving.
    Receiving,
    /// Complete, waiting in `ready`.
    Ready,
    /// Returned by `poll_request`, waiting for `send_response`.
    Delivered,
    /// Reply serialized (possibly no bytes: an abandoned request).
    Done { chunks: Vec<Bytes>, close: bool },
}

/// A request the connection answers itself.
#[derive(Debug, Clone, Copy)]
struct Reject {
    status: u16,
    is_head: bool,
}

impl Reject {
    fn new(status: u16) -> Self {
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

impl ServerConn {
    pub fn new(limits: Limits, now: Instant) -> Self {
        ServerConn {
            limits,
            read: Read::Head,
            head: HeadState::default(),
            next_index: 0,
            slots: VecDeque::new(),
            ready: VecDeque::new(),
            out: VecDeque::new(),
            out_off: 0,
            out_len: 0,
            out_replies: 0,
            close_after: false,
            aborted: false,
            idle_since: Some(now),
            last_now: now,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Feed bytes read from the client. Returns how many were consumed: all,
    /// unless `max_pipelined` requests are in flight (back-pressure: the
    /// next request head is not started) or reading has stopped (an error,
    /// `Connection: close`, EOF, a timeout). The caller keeps the rest and
    /// offers it again later (after answering/flushing); bytes offered after
    /// reading stopped are never consumed.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> usize {
        self.observe(now);
        let mut pos = 0;
        while pos < data.len() {
            let n = match self.read {
                Read::Stopped => break,
                Read::Head => {
                    if self.head.started.is_none()
                        && self.in_flight() >= self.limits.max_pipelined.max(1)
                    {
                        break;
                    }
                    self.read_head(&data[pos..], now)
                }
                Read::Body(_) => self.read_body(&data[pos..], now),
            };
            if n == 0 && !matches!(self.read, Read::Stopped) {
                // Cannot happen (every state consumes a byte of non-empty
                // input); stop rather than spin.
                break;
            }
            pos += n;
        }
        self.pump_output();
        self.refresh_idle(now);
        pos
    }

    /// The client half-closed. Call it only after every received byte was
    /// consumed by `handle_input`. A partial request is dropped silently;
    /// complete requests still get their replies, then the connection closes.
    pub fn handle_eof(&mut self, now: Instant) {
        self.observe(now);
        if self.aborted {
            return;
        }
        self.abandon_current();
        self.stop_reading();
        self.pump_output();
        self.refresh_idle(now);
    }

    /// Apply any deadline that has passed at `now`.
    ///
    /// * header timeout → stop reading; a `408` is queued if nothing else is
    ///   owed, else the connection closes after the replies owed;
    /// * body timeout → the same, the partial request is dropped;
    /// * idle timeout → close now, silently.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        if self.is_closed() {
            return;
        }
        // An idle period that began without a known time (output drained in
        // consume_output) starts now.
        self.refresh_idle(now);
        match &self.read {
            Read::Head => {
                if let Some(started) = self.head.started {
                    if deadline(started, self.limits.header_timeout).is_some_and(|d| now >= d) {
                        tracing::debug!("request head timeout");
                        self.read_timeout();
                    }
                } else if let Some(since) = self.idle_since.filter(|_| self.is_idle()) {
                    if deadline(since, self.limits.idle_timeout).is_some_and(|d| now >= d) {
                        tracing::debug!("idle timeout");
                        self.abort();
                    }
                }
            }
            Read::Body(b) => {
                if deadline(b.last_byte, self.limits.body_timeout).is_some_and(|d| now >= d) {
                    tracing::debug!("request body timeout");
                    self.read_timeout();
                }
            }
            Read::Stopped => {}
        }
        self.pump_output();
        self.refresh_idle(now);
    }

    /// Earliest deadline that applies now, if any. It may be in the past
    /// (e.g. right after the output drained: the idle clock starts at the
    /// next `handle_timeout`); call `handle_timeout` when it is reached.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        match &self.read {
            Read::Stopped => None,
            Read::Body(b) => deadline(b.last_byte, self.limits.body_timeout),
            Read::Head => {
                if let Some(started) = self.head.started {
                    deadline(started, self.limits.header_timeout)
                } else if self.is_idle() {
                    match self.idle_since {
                        Some(since) => deadline(since, self.limits.idle_timeout),
                        None => Some(self.last_now),
                    }
                } else {
                    None
                }
            }
        }
    }

    /// Next complete request, in order; each is returned once.
    pub fn poll_request(&mut self) -> Option<Request> {
        let req = self.ready.pop_front()?;
        if let Some(slot) = self.slot_mut(req.index) {
            slot.state = SlotState::Delivered;
        }
        Some(req)
    }

    /// The reply to request `index` (as returned by `poll_request`). Replies
    /// may come in any order; output is strictly in request order.
    ///
    /// The connection writes `HTTP/1.1 <status> <reason>`, the handler's
    /// fields in order, then `Content-Length` and `Connection`. Handler fields
    /// `Content-Length`, `Transfer-Encoding`, `Connection` and `Keep-Alive`
    /// are not copied (`Connection: close` from the handler closes the
    /// connection after this reply; a handler `Content-Length` is kept only
    /// for a `304`, or for a `HEAD` reply with an empty body). Fields whose
    /// name is not a token or whose value holds CR, LF or NUL are dropped.
    /// `204` and `304` never carry a body; for `HEAD` the body is not written
    /// but `Content-Length` is its length. No `Date` is added.
    pub fn send_response(&mut self, index: u64, resp: Response) -> Result<(), Error> {
        if !(200..=999).contains(&resp.status) {
            return Err(Error::InvalidStatus(resp.status));
        }
        let slot = self
            .slot_mut(index)
            .filter(|s| matches!(s.state, SlotState::Delivered))
            .ok_or(Error::UnknownRequest(index))?;
        let (chunks, close) = serialize(resp, slot.is_head, slot.version, !slot.keep_alive);
        slot.state = SlotState::Done { chunks, close };
        self.pump_output();
        Ok(())
    }

    /// The bytes to write next (part of one chunk: a reply head, or a
    /// zero-copy slice of a large body).
    pub fn poll_output(&self) -> Option<&[u8]> {
        self.out.front().map(|(b, _)| &b[self.out_off..])
    }

    /// `n` bytes of the output were written (more than pending is clamped).
    pub fn consume_output(&mut self, n: usize) {
        let mut n = n.min(self.out_len);
        while n > 0 {
            let Some((front, ends)) = self.out.front() else {
                break;
            };
            let avail = front.len() - self.out_off;
            if n < avail {
                self.out_off += n;
                self.out_len -= n;
                break;
            }
            n -= avail;
            self.out_len -= avail;
            self.out_off = 0;
            if *ends {
                self.out_replies = self.out_replies.saturating_sub(1);
            }
            self.out.pop_front();
        }
        // If this made the connection idle, the idle clock starts at the next
        // handle_* call (poll_timeout asks for one at once).
    }

    /// Output bytes queued.
    pub fn output_pending(&self) -> usize {
        self.out_len
    }

    /// The connection must be closed once everything owed is flushed (and no
    /// more input will be read).
    pub fn wants_close(&self) -> bool {
        self.close_after || self.aborted
    }

    /// The connection must be closed now.
    pub fn is_closed(&self) -> bool {
        self.aborted || (self.close_after && self.slots.is_empty() && self.out.is_empty())
    }

    /// Requests whose head was parsed and whose reply has not been completely
    /// consumed from the output yet (being received, waiting for the handler,
    /// or queued for output). This is what `max_pipelined` bounds.
    pub fn requests_in_flight(&self) -> usize {
        self.in_flight()
    }

    // ---- internals -------------------------------------------------------

    fn in_flight(&self) -> usize {
        self.slots.len() + self.out_replies
    }

    fn observe(&mut self, now: Instant) {
        if now > self.last_now {
            self.last_now = now;
        }
    }

    fn is_idle(&self) -> bool {
        matches!(self.read, Read::Head)
            && self.head.started.is_none()
            && self.slots.is_empty()
            && self.out.is_empty()
            && !self.close_after
            && !self.aborted
    }

    fn refresh_idle(&mut self, now: Instant) {
        if !self.is_idle() {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
    }

    fn slot_mut(&mut self, index: u64) -> Option<&mut Slot> {
        let first = self.slots.front()?.index;
        let pos = usize::try_from(index.checked_sub(first)?).ok()?;
        self.slots.get_mut(pos)
    }

    fn stop_reading(&mut self) {
        self.read = Read::Stopped;
        self.head.reset();
        self.close_after = true;
    }

    fn abort(&mut self) {
        self.stop_reading();
        self.aborted = true;
        self.slots.clear();
        self.ready.clear();
        self.out.clear();
        self.out_off = 0;
        self.out_len = 0;
        self.out_replies = 0;
    }

    /// Drop a request whose body is being received: its slot stays (so an
    /// owed `100 Continue` is still written, deterministically) but has no reply.
    fn abandon_current(&mut self) {
        if matches!(self.read, Read::Body(_)) {
            if let Some(slot) = self.slots.back_mut() {
                slot.state = SlotState::Done {
                    chunks: Vec::new(),
                    close: true,
                };
            }
        }
    }

    /// Reject the request being read (or a new one, if between requests)
    /// with an error reply generated here, then stop reading.
    fn reject(&mut self, rej: Reject) {
        tracing::debug!(status = rej.status, "rejecting request");
        let (chunks, close) = serialize(
            Response::error(rej.status),
            rej.is_head,
            Version::Http11,
            true,
        );
        let state = SlotState::Done { chunks, close };
        match self.read {
            Read::Body(_) => {
                if let Some(slot) = self.slots.back_mut() {
                    slot.state = state;
                }
            }
            _ => {
                let index = self.next_index;
                self.next_index += 1;
                self.slots.push_back(Slot {
                    index,
                    is_head: rej.is_head,
                    version: Version::Http11,
                    keep_alive: false,
                    interim: false,
                    state,
                });
            }
        }
        self.stop_reading();
    }

    fn read_timeout(&mut self) {
        let earlier_owed = !self.out.is_empty()
            || self
                .slots
                .iter()
                .any(|s| !matches!(s.state, SlotState::Receiving));
        if earlier_owed {
            self.abandon_current();
            self.stop_reading();
        } else {
            self.reject(Reject::new(408));
        }
    }

    /// Move every reply that is next in order to the output.
    fn pump_output(&mut self) {
        loop {
            let Some(front) = self.slots.front_mut() else {
                return;
            };
            let interim = std::mem::take(&mut front.interim);
            let done = matches!(front.state, SlotState::Done { .. });
            if interim {
                self.push_out(Bytes::from_static(CONTINUE), false);
            }
            if !done {
                return;
            }
            let Some(slot) = self.slots.pop_front() else {
                return;
            };
            if let SlotState::Done { chunks, close } = slot.state {
                let n = chunks.len();
                for (i, chunk) in chunks.into_iter().enumerate() {
                    self.push_out(chunk, i + 1 == n);
                }
                if close {
                    // Nothing after this reply will be written.
                    self.stop_reading();
                    self.slots.clear();
                    self.ready.clear();
                    return;
                }
            }
        }
    }

    fn push_out(&mut self, chunk: Bytes, ends_reply: bool) {
        if ends_reply {
            self.out_replies += 1;
        }
        self.out_len += chunk.len();
        self.out.push_back((chunk, ends_reply));
    }

    fn read_head(&mut self, data: &[u8], now: Instant) -> usize {
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
            self.head.started = Some(now);
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
            interim: p.expect_continue,
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

    fn complete(&mut self, mut req: Request, body: Vec<u8>) {
        req.body = Bytes::from(body);
        if let Some(slot) = self.slots.back_mut() {
            slot.state = SlotState::Ready;
        }
        let keep_alive = req.keep_alive;
        self.ready.push_back(req);
        if keep_alive {
            self.read = Read::Head;
        } else {
            self.stop_reading();
        }
    }

    fn read_body(&mut self, data: &[u8], now: Instant) -> usize {
        let max_body = self.limits.max_body_bytes;
        let max_trailer = self.limits.max_header_bytes;
        let Read::Body(b) = &mut self.read else {
            return 0;
        };
        b.last_byte = now;
        let (n, result) = match &mut b.framing {
            Framing::Length { remaining } => {
                let n = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let total = b.buf.len() as u64 + *remaining;
                reserve_body(&mut b.buf, n, total);
                b.buf.extend_from_slice(&data[..n]);
                *remaining -= n as u64;
                let res = if *remaining == 0 {
                    ChunkResult::Done
                } else {
                    ChunkResult::More
                };
                (n, res)
            }
            Framing::Chunked(dec) => dec.feed(data, &mut b.buf, max_body, max_trailer),
        };
        match result {
            ChunkResult::More => {}
            ChunkResult::Done => {
                if let Read::Body(b) = std::mem::replace(&mut self.read, Read::Head) {
                    let BodyRead { req, buf, .. } = *b;
                    self.complete(req, buf);
                }
            }
            ChunkResult::Reject(status) => {
                let is_head = self.slots.back().is_some_and(|s| s.is_head);
                self.reject(Reject { status, is_head });
            }
        }
        n
    }
}

fn deadline(start: Instant, after: Duration) -> Option<Instant> {
    start.checked_add(after)
}

fn is_tchar(b: u8) -> bool {
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

/// Grow a body buffer for `add` more bytes without reserving past `limit`
/// total bytes (so a declared length cannot make us allocate ahead of data
/// by more than the data already received, and never beyond the limit).
fn reserve_body(buf: &mut Vec<u8>, add: usize, limit: u64) {
    if buf.capacity() - buf.len() >= add {
        return;
    }
    let want = buf.len().max(BODY_ALLOC_STEP).max(add);
    let cap = usize::try_from(limit.saturating_sub(buf.len() as u64)).unwrap_or(usize::MAX);
    buf.reserve_exact(want.min(cap).max(add));
}

fn trim_ows(v: &[u8]) -> &[u8] {
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
fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty())
}

/// A decimal length: digits only, no sign. `Err(true)` if it overflows u64.
fn parse_decimal(v: &[u8]) -> Result<u64, bool> {
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
        // No request smuggling: TE with CL, TE on HTTP/1.0, chunked not
        // last or applied twice → 400; any other coding → 501.
        if content_lengths > 0 || version == Version::Http10 {
            return Err(bad);
        }
        let chunked = transfer_codings
            .iter()
            .filter(|c| c.as_slice() == b"chunked")
            .count();
        if transfer_codings.last().map(Vec::as_slice) != Some(b"chunked") || chunked > 1 {
            return Err(bad);
        }
        if transfer_codings.len() > 1 {
            return Err(Reject { status: 501, ..bad });
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

fn is_field_value(v: &str) -> bool {
    !v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// Serialize a reply. `close` requests `Connection: close`; a handler
/// `Connection: close` also sets it. Returns the output chunks and whether
/// the connection closes after them.
fn serialize(
    resp: Response,
    is_head: bool,
    version: Version,
    mut close: bool,
) -> (Vec<Bytes>, bool) {
    let status = resp.status;
    let mut head = Vec::with_capacity(128 + resp.headers.len() * 40);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.to_string().as_bytes());
    head.push(b' ');
    head.extend_from_slice(reason_phrase(status).as_bytes());
    head.extend_from_slice(b"\r\n");

    let mut handler_length: Option<u64> = None;
    for (name, value) in &resp.headers {
        if name.is_empty() || !name.bytes().all(is_tchar) || !is_field_value(value) {
            tracing::warn!(name = %name.escape_debug(), "dropping invalid response header field");
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            if handler_length.is_none() {
                handler_length = parse_decimal(trim_ows(value.as_bytes())).ok();
            }
            continue;
        }
        if name.eq_ignore_ascii_case("connection") {
            close |= list_items(value.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close"));
            continue;
        }
        if name.eq_ignore_ascii_case("transfer-encoding") || name.eq_ignore_ascii_case("keep-alive")
        {
            continue;
        }
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.trim_matches([' ', '\t']).as_bytes());
        head.extend_from_slice(b"\r\n");
    }

    let length = match status {
        204 => None,
        304 => handler_length,
        _ if is_head && resp.body.is_empty() => Some(handler_length.unwrap_or(0)),
        _ => Some(resp.body.len() as u64),
    };
    if let Some(n) = length {
        head.extend_from_slice(b"Content-Length: ");
        head.extend_from_slice(n.to_string().as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if close {
        head.extend_from_slice(b"Connection: close\r\n");
    } else if version == Version::Http10 {
        head.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    head.extend_from_slice(b"\r\n");

    let write_body = !is_head && status != 204 && status != 304 && !resp.body.is_empty();
    let chunks = if !write_body {
        vec![Bytes::from(head)]
    } else if resp.body.len() <= COALESCE_BODY {
        head.extend_from_slice(&resp.body);
        vec![Bytes::from(head)]
    } else {
        vec![Bytes::from(head), resp.body]
    };
    (chunks, close)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkResult {
    More,
    Done,
    Reject(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    /// Reading chunk-size hex digits.
    #[default]
    Size,
    /// After the size: optional whitespace before `;` or CR.
    SizeWs,
    /// Inside chunk extensions, until CR.
    Ext,
    /// CR of the chunk-size line seen.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    /// CR of the final empty line seen.
    EndLf,
}

/// Strict chunked decoder (RFC 9112 §7.1): CRLF line ends, ≤ 16 hex digits,
/// extensions skipped (≤ `MAX_CHUNK_EXT` bytes per line), trailer fields
/// skipped (≤ `max_header_bytes` in all).
#[derive(Debug, Default)]
struct ChunkDecoder {
    state: ChunkState,
    size: u64,
    digits: u8,
    ext_len: usize,
    trailer_len: usize,
}

impl ChunkDecoder {
    fn feed(
        &mut self,
        data: &[u8],
        body: &mut Vec<u8>,
        max_body: u64,
        max_trailer: usize,
    ) -> (usize, ChunkResult) {
        use ChunkState as S;
        let mut i = 0;
        while i < data.len() {
            if self.state == S::Data {
                let n = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(data.len() - i);
                reserve_body(body, n, max_body);
                body.extend_from_slice(&data[i..i + n]);
                self.size -= n as u64;
                i += n;
                if self.size == 0 {
                    self.state = S::DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            let reject = |status| (i, ChunkResult::Reject(status));
            match self.state {
                S::Size => {
                    if let Some(d) = hex_digit(b) {
                        self.digits += 1;
                        if self.digits > 16 {
                            return reject(400);
                        }
                        self.size = self.size << 4 | u64::from(d);
                        if self.size > max_body.saturating_sub(body.len() as u64) {
                            return reject(413);
                        }
                    } else if self.digits == 0 {
                        return reject(400);
                    } else {
                        match b {
                            b' ' | b'\t' => self.state = S::SizeWs,
                            b';' => self.state = S::Ext,
                            b'\r' => self.state = S::SizeLf,
                            _ => return reject(400),
                        }
                    }
                }
                S::SizeWs => match b {
                    b' ' | b'\t' => {}
                    b';' => self.state = S::Ext,
                    b'\r' => self.state = S::SizeLf,
                    _ => return reject(400),
                },
                S::Ext => match b {
                    b'\r' => self.state = S::SizeLf,
                    b'\n' | 0 => return reject(400),
                    _ => {
                        self.ext_len += 1;
                        if self.ext_len > MAX_CHUNK_EXT {
                            return reject(400);
                        }
                    }
                },
                S::SizeLf => {
                    if b != b'\n' {
                        return reject(400);
                    }
                    self.digits = 0;
                    self.ext_len = 0;
                    self.state = if self.size == 0 {
                        S::TrailerStart
                    } else {
                        S::Data
                    };
                }
                S::Data => {}
                S::DataCr => {
                    if b != b'\r' {
                        return reject(400);
                    }
                    self.state = S::DataLf;
                }
                S::DataLf => {
                    if b != b'\n' {
                        return reject(400);
                    }
                    self.state = S::Size;
                }
                S::TrailerStart | S::TrailerLine | S::TrailerLf => {
                    self.trailer_len += 1;
                    if self.trailer_len > max_trailer {
                        return reject(431);
                    }
                    self.state = match (self.state, b) {
                        (S::TrailerStart, b'\r') => S::EndLf,
                        (S::TrailerLine, b'\r') => S::TrailerLf,
                        (S::TrailerStart | S::TrailerLine, b'\n' | 0) => return reject(400),
                        (S::TrailerStart | S::TrailerLine, _) => S::TrailerLine,
                        (S::TrailerLf, b'\n') => S::TrailerStart,
                        _ => return reject(400),
                    };
                }
                S::EndLf => {
                    if b != b'\n' {
                        return reject(400);
                    }
                    return (i, ChunkResult::Done);
                }
            }
        }
        (i, ChunkResult::More)
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
