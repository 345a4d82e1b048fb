//! Sans-IO HTTP/1.0 + HTTP/1.1 server connection and deterministic handlers.
//!
//! This crate owns no sockets, no threads and no clock: every input (bytes,
//! end of stream, the current time) is passed in, and every output (parsed
//! requests, bytes to write, deadlines, "close now") is polled out. That makes
//! the state machine deterministic: two nodes fed the same client bytes parse
//! the same requests, assign them the same indices and — given the same
//! replies — produce byte-identical output, however the bytes were segmented.
//!
//! # Call order (one [`ServerConn`] per TCP connection)
//!
//! ```text
//!   bytes from socket ──► handle_input(data, now) -> consumed   (keep the rest, re-offer later)
//!   FIN from client   ──► handle_eof(now)                       (after every byte was consumed)
//!   loop poll_request() -> Request          ──► handler (any thread, any order)
//!   send_response(req.index, Response)      ◄── handler result
//!   loop poll_output() -> &[u8] ──► socket; consume_output(n_written)
//!   poll_timeout() -> deadline ──► timer;  handle_timeout(now) when it fires
//!   is_closed() ──► close the socket (wants_close(): stop offering input,
//!                   close once the output is flushed)
//! ```
//!
//! After any `handle_*`/`send_response`/`consume_output` call, re-check
//! `poll_request`, `poll_output`, `poll_timeout` and `is_closed`. If
//! `handle_input` consumed fewer bytes than offered (back-pressure: too many
//! requests not yet answered and flushed), offer the remainder again after
//! answering requests or flushing output. A deadline returned by
//! `poll_timeout` may already be in the past; then call `handle_timeout` at
//! once.
//!
//! ```
//! use std::time::Instant;
//! use hotpair_http::{Response, ServerConn};
//!
//! /// One turn of an event loop for one connection. `write` returns how
//! /// many bytes the socket accepted.
//! fn turn(
//!     conn: &mut ServerConn,
//!     input: &mut Vec<u8>,
//!     write: &mut impl FnMut(&[u8]) -> usize,
//!     now: Instant,
//! ) -> bool {
//!     let n = conn.handle_input(input, now);
//!     input.drain(..n); // keep the rest for later
//!     while let Some(req) = conn.poll_request() {
//!         // Usually handed to a handler; the reply may come back later.
//!         let _ = conn.send_response(req.index, Response::new(200).body("hi"));
//!     }
//!     while let Some(chunk) = conn.poll_output() {
//!         let n = write(chunk);
//!         if n == 0 {
//!             break;
//!         }
//!         conn.consume_output(n);
//!     }
//!     if conn.poll_timeout().is_some_and(|t| now >= t) {
//!         conn.handle_timeout(now);
//!     }
//!     !conn.is_closed() // false: close the socket
//! }
//! ```
//!
//! Replies are matched to requests by [`Request::index`] (0, 1, 2… per
//! connection, in arrival order) and are written strictly in that order.
//! Protocol errors (malformed head, too-large header/body, unsupported method or
//! transfer coding, path traversal…) are answered by the connection itself, in
//! order after the replies to earlier requests, with `Connection: close`.
//!
//! Handlers: [`files::Files`] (an in-memory document root) and
//! [`generate`] (the WebStone CGI workload: N random bytes made with real CPU work).

mod conn;
pub mod files;
pub mod generate;
mod message;
mod target;

use std::time::Duration;

pub use conn::{OutputUnit, ServerConn, UnitKind};
pub use message::{reason_phrase, Method, Request, Response, Version};

/// Bounds and timeouts for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line + header fields + the empty line,
    /// and any empty lines before the request line). Exceeding it → 431.
    /// The same bound applies to a chunked body's trailer section.
    pub max_header_bytes: usize,
    /// Largest request body (declared `Content-Length` or the running total
    /// of a chunked body). Exceeding it → 413.
    pub max_body_bytes: u64,
    /// Most requests in flight at once: parsed (head seen) and not yet
    /// answered *and flushed* (see [`ServerConn::requests_in_flight`]). At the
    /// limit `handle_input` stops consuming before the next request head.
    pub max_pipelined: usize,
    /// A whole request head must arrive within this, from its first byte
    /// (bytes trickled one at a time do not extend it: slowloris) → `408`
    /// and close. For a connection's first request it runs from the accept
    /// instead, so a client that connects and sends nothing is closed
    /// (silently) after this too, not after `idle_timeout`.
    pub header_timeout: Duration,
    /// No request in progress and no output pending for this long, between
    /// requests of a keep-alive connection → close, silently.
    pub idle_timeout: Duration,
    /// No body byte received for this long while reading a body → close.
    pub body_timeout: Duration,
    /// Most reply bytes one connection holds made but not yet written to
    /// its socket (a client that pipelines requests and does not read):
    /// at this bound no further request goes to a handler until the client
    /// reads. One reply may take it past the bound. Enforced by the caller
    /// that takes output with [`ServerConn::take_unit`].
    pub max_output_bytes: usize,
    /// Output waiting and none of it taken by the client's socket for this
    /// long (a zero window, a client that stopped reading) → the connection
    /// is aborted (nginx's `send_timeout`). Enforced by the caller, as
    /// `max_output_bytes`.
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024 * 1024,
            max_pipelined: 32,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            max_output_bytes: 4 * 1024 * 1024,
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// The only clock read in this crate, for tests: an arbitrary origin from
/// which tests build synthetic instants (`t0 + Duration`).
#[cfg(test)]
pub(crate) fn test_origin() -> std::time::Instant {
    std::time::Instant::now()
}

/// Errors returned to the application (never caused by network input alone).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `send_response` for an index that was never returned by
    /// `poll_request`, was already answered, or was dropped because the
    /// connection is closing.
    #[error("no request with index {0} is awaiting a reply")]
    UnknownRequest(u64),
    /// `send_response` with a status outside 200..=999 (interim 1xx replies
    /// are generated by the connection itself).
    #[error("invalid final status code {0}")]
    InvalidStatus(u16),
}
