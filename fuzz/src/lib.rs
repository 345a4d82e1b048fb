//! Fuzz harnesses for hotpair's input-facing state machines.
//!
//! Each module has one `run(data: &[u8])`: it interprets the bytes as a
//! configuration and a sequence of operations, drives the code under test
//! and panics if an invariant breaks. The same function is called by the
//! AFL++ binaries (`src/bin/`, feature `afl`) and by the corpus replay
//! (`tests/corpus.rs`), so every committed input is a regression test.
//!
//! - [`http_conn`]: `hotpair_http::ServerConn` — bytes split at arbitrary
//!   points, time advancing, replies in any order; output well-formed,
//!   consumption never beyond what was offered, and (in the differential
//!   mode) output independent of the input's segmentation.
//! - [`wire`]: the link's `Msg::decode` / `Decoder`: decode→encode gives the
//!   same bytes, encode→decode the same message, and the stream decoder
//!   agrees with one-message decoding however the bytes are fed.
//! - [`engine`]: arbitrary and mostly-valid Ethernet frames into a
//!   `hotpair_stack::Engine` in each role, with takeovers.
//! - [`replica`]: `hotpair_replicator::Replica` operation sequences, alone
//!   against a hostile peer, or as an honest pair over an ordered link.
//! - [`tls_record`]: `hotpair_tls::TlsState::decode` (the state logged
//!   over the link) and `RecordLayer::open` (the client's records): any
//!   bytes, any split; sealed records open back, changed ones never to
//!   other plaintext.
//! - [`tls_unit`]: the node core's TLS unit payload (`decode_tls_unit`, the
//!   state and bytes the primary logs with its own TLS output): what
//!   decodes encodes back to the same payload, what is encoded decodes
//!   back, a payload cut inside its state never decodes.

pub mod engine;
pub mod http_conn;
pub mod replica;
pub mod tls_record;
pub mod tls_unit;
pub mod wire;

/// Whether `FUZZ_TRACE` is set: the harnesses then print what they do
/// (for reading a failing input; see docs/testing.md).
pub fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

/// Print a line when `FUZZ_TRACE` is set.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// A reader of fuzz bytes: every read succeeds (zeros once the input is
/// exhausted), so any input is a valid program.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }

    /// The next operation, a value in `0..kinds`; `None` once the input
    /// is spent.
    pub fn next_op(&mut self, kinds: usize) -> Option<usize> {
        (!self.is_empty()).then(|| self.below(kinds))
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 256 {
            usize::from(self.u8()) % n
        } else {
            usize::from(self.u16()) % n
        }
    }

    /// Up to `max` bytes: a length byte, then that many bytes (fewer at
    /// the end of the input).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1);
        self.take(n)
    }

    /// Exactly `n` bytes, or what is left.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}
