//! The per-connection HTTP/1.x server state machine (sans-IO).
//!
//! This file holds [`ServerConn`]: its state, the calls of the crate's call
//! order, the reading of bodies and the replies' order. Beside it: `head`
//! (reading and parsing a request head), `chunked` (the chunked body
//! decoder) and `units` (output units: serializing replies and handing them
//! out whole).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{Error, Limits, Request, Response, Version};

mod chunked;
mod head;
mod units;
use chunked::{ChunkDecoder, ChunkResult};
use head::{HeadState, Reject};
use units::{serialize, UnitMeta};

pub use units::{OutputUnit, UnitKind};

/// Bodies up to this size are copied into the head's buffer so that a small
/// reply is one output chunk; larger bodies are queued zero-copy.
const COALESCE_BODY: usize = 4096;
/// First allocation step for a request body buffer.
const BODY_ALLOC_STEP: usize = 16 * 1024;

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
    /// When the connection was accepted, until its first request head
    /// starts: that head's deadline runs from here, not from its first
    /// byte, so a client that connects and then waits (or trickles) gets no
    /// more than `header_timeout` in all — as nginx's `client_header_timeout`.
    /// `None` for a resumed connection (its bytes may have reached the old
    /// node long ago) and after the first head.
    accepted: Option<Instant>,
    /// Latest time passed in.
    last_now: Instant,
    /// Client bytes consumed so far (absolute offset in the input stream).
    input_total: u64,
    /// Unit boundaries in `out`, for callers that log output whole units
    /// at a time (see [`ServerConn::take_unit`]).
    units: VecDeque<UnitMeta>,
    /// Units taken by the caller and not yet reported flushed, in order:
    /// whether each is a final reply. A taken reply is still in flight
    /// until it is flushed — else a client that pipelines requests and
    /// never reads would have every reply made and held by the caller
    /// (`max_pipelined` must bound the node's path too).
    external_units: VecDeque<bool>,
    /// A resumed connection whose `100 Continue` for this index was
    /// already sent by the node it was taken over from.
    continue_sent_for: Option<u64>,
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
    /// Input offset where the request ended (set when complete).
    input_end: u64,
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
            accepted: Some(now),
            last_now: now,
            input_total: 0,
            units: VecDeque::new(),
            external_units: VecDeque::new(),
            continue_sent_for: None,
        }
    }

    /// A connection taken over from another node mid-stream: requests are
    /// numbered from `next_index` (the first not answered there), and if
    /// `continue_sent` its `100 Continue` was already sent and is not
    /// repeated. Feed it the client bytes from that request's start on.
    pub fn resume(limits: Limits, now: Instant, next_index: u64, continue_sent: bool) -> Self {
        let mut c = Self::new(limits, now);
        c.accepted = None;
        c.next_index = next_index;
        if continue_sent {
            c.continue_sent_for = Some(next_index);
        }
        c
    }

    /// Client bytes consumed so far.
    pub fn input_consumed(&self) -> u64 {
        self.input_total
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
            let end = self.input_total + (pos + n) as u64;
            // Requests completed by this step end here.
            for slot in self.slots.iter_mut().rev() {
                if slot.input_end != u64::MAX {
                    break;
                }
                if !matches!(slot.state, SlotState::Receiving) {
                    slot.input_end = end;
                }
            }
            if n == 0 && !matches!(self.read, Read::Stopped) {
                // Cannot happen (every state consumes a byte of non-empty
                // input); stop rather than spin.
                break;
            }
            pos += n;
        }
        self.input_total += pos as u64;
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
                    if self.idle_deadline(since).is_some_and(|d| now >= d) {
                        tracing::debug!(first = self.accepted.is_some(), "idle timeout");
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
    #[must_use]
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
                        Some(since) => self.idle_deadline(since),
                        None => Some(self.last_now),
                    }
                } else {
                    None
                }
            }
        }
    }

    /// Next complete request, in order; each is returned once.
    #[must_use]
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
    #[must_use]
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
            // Keep unit boundaries in step (callers using poll_output).
            if let Some(u) = self.units.front_mut() {
                u.chunks = u.chunks.saturating_sub(1);
                if u.chunks == 0 {
                    self.units.pop_front();
                }
            }
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

    /// Whether every request whose bytes ended at or before input offset
    /// `offset` has had its final reply taken ([`ServerConn::take_unit`]),
    /// with the input read that far: what comes out next answers a request
    /// that ended after `offset`. False while reading has stopped short of
    /// `offset` (the connection is closing).
    pub fn replied_through(&self, offset: u64) -> bool {
        self.input_total >= offset
            && self.slots.iter().all(|s| s.input_end > offset)
            && self.units.iter().all(|u| u.input_end > offset)
    }

    /// Requests whose head was parsed and whose reply has not been completely
    /// consumed from the output yet (being received, waiting for the handler,
    /// or queued for output). This is what `max_pipelined` bounds.
    pub fn requests_in_flight(&self) -> usize {
        self.in_flight()
    }

    // ---- internals -------------------------------------------------------

    fn in_flight(&self) -> usize {
        self.slots.len() + self.out_replies + self.external_replies()
    }

    /// Final replies taken with `take_unit` and not yet reported flushed.
    fn external_replies(&self) -> usize {
        self.external_units.iter().filter(|&&fin| fin).count()
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
            && self.external_units.is_empty()
            && !self.close_after
            && !self.aborted
    }

    /// When a connection idle since `since` is closed: `idle_timeout`
    /// between requests, but a connection that has not sent its first
    /// request yet gets only `header_timeout` from its accept (a client
    /// that connects and sends nothing must not hold a slot for a whole
    /// keep-alive period).
    fn idle_deadline(&self, since: Instant) -> Option<Instant> {
        match self.accepted {
            Some(at) => deadline(at, self.limits.header_timeout.min(self.limits.idle_timeout)),
            None => deadline(since, self.limits.idle_timeout),
        }
    }

    /// Close the connection now if it is idle (between requests, nothing
    /// received, owed or being written): the same silent close as the idle
    /// timeout, used to make room when the connection pool is full.
    /// Returns whether it closed.
    pub fn close_if_idle(&mut self, now: Instant) -> bool {
        self.observe(now);
        if !self.is_idle() {
            return false;
        }
        tracing::debug!("idle connection closed to make room");
        self.abort();
        true
    }

    /// Since when the connection has been idle (between requests, nothing
    /// received, owed or being written), if it is.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.is_idle() {
            Some(self.idle_since.unwrap_or(self.last_now))
        } else {
            None
        }
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
        self.units.clear();
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
                    input_end: self.input_total,
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

#[cfg(test)]
mod tests;
