//! The bytes a connection's socket has still to take, in order: bytes
//! ready to send, and HTTPS replies whose records are sealed only as the
//! socket takes them.
//!
//! Sealing a reply when it is queued held its whole ciphertext until the
//! client had read it: a 50 MB `static` file over HTTPS cost 50 MB more on
//! each node per download (the plaintext is the content cache's, shared),
//! where HTTP cost nothing. A reply's records are now reserved when it is
//! queued ([`hotpair_tls::Deferred`]: later records and our KeyUpdates
//! follow them as before) and sealed a few at a time, as room opens in the
//! socket's send buffer: what is held sealed is at most that buffer plus
//! [`MAX_RECORDS_AT_ONCE`] records. The bytes are those of sealing at once.

use std::collections::VecDeque;

use bytes::Bytes;
use hotpair_stack::smoltcp::socket::tcp;
use hotpair_tls::{Deferred, TlsError, MAX_FRAGMENT};

/// Records sealed in one go at most (what a socket with room for more gets
/// per turn of the write loop: it loops).
const MAX_RECORDS_AT_ONCE: usize = 4;

/// One reply's records to seal: their reservation and the plaintext.
pub(crate) struct Sealing {
    deferred: Deferred,
    /// The plaintext not sealed yet (the content cache's bytes, shared).
    plain: VecDeque<Bytes>,
}

impl Sealing {
    pub fn new(deferred: Deferred, plain: impl IntoIterator<Item = Bytes>) -> Self {
        Self {
            deferred,
            plain: plain.into_iter().filter(|b| !b.is_empty()).collect(),
        }
    }

    pub fn wire_left(&self) -> usize {
        self.deferred.wire_left()
    }

    /// Seal everything left (a reply whose ciphertext must cross the link).
    pub fn seal_all(mut self) -> Result<Bytes, TlsError> {
        let parts: Vec<Bytes> = self.plain.drain(..).collect();
        self.deferred.seal(&parts).map(Bytes::from)
    }

    /// The next `records` records (fewer at the end of the reply).
    fn next(&mut self, records: usize) -> Result<Bytes, TlsError> {
        let mut want = (records * MAX_FRAGMENT).min(self.deferred.plain_left());
        let mut parts = Vec::new();
        while want > 0 {
            let Some(front) = self.plain.front_mut() else {
                return Err(TlsError::BadState("a reply shorter than its records"));
            };
            if front.len() <= want {
                want -= front.len();
                parts.push(self.plain.pop_front().expect("front exists"));
            } else {
                parts.push(front.split_to(want));
                want = 0;
            }
        }
        self.deferred.seal(&parts).map(Bytes::from)
    }
}

/// Where an [`OutQueue`] writes: a connection's socket.
pub(crate) trait Sink {
    /// Bytes it would take now (0 when it sends no more).
    fn room(&self) -> usize;
    /// Takes what it can of `data`; returns how much.
    fn send(&mut self, data: &[u8]) -> usize;
}

impl Sink for tcp::Socket<'_> {
    fn room(&self) -> usize {
        if self.may_send() {
            self.send_capacity() - self.send_queue()
        } else {
            0
        }
    }

    fn send(&mut self, data: &[u8]) -> usize {
        self.send_slice(data).unwrap_or(0)
    }
}

enum Piece {
    Ready(Bytes),
    Sealing(Box<Sealing>),
}

/// What a socket still has to take, in order.
#[derive(Default)]
pub(crate) struct OutQueue {
    q: VecDeque<Piece>,
    /// Bytes of the front piece already written.
    offset: usize,
}

impl OutQueue {
    pub fn from_bytes(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let mut q = Self::default();
        q.extend(chunks);
        q
    }

    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.q.push_back(Piece::Ready(b));
        }
    }

    pub fn extend(&mut self, chunks: impl IntoIterator<Item = Bytes>) {
        for b in chunks {
            self.push(b);
        }
    }

    pub fn push_sealing(&mut self, s: Sealing) {
        if s.wire_left() > 0 {
            self.q.push_back(Piece::Sealing(Box::new(s)));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Bytes still to write (sealed or not).
    pub fn wire_len(&self) -> usize {
        self.q
            .iter()
            .map(|p| match p {
                Piece::Ready(b) => b.len(),
                Piece::Sealing(s) => s.wire_left(),
            })
            .sum::<usize>()
            - self.offset
    }

    /// Write as much as the socket takes, sealing records as it makes
    /// room for them. Returns the bytes written.
    pub fn write(&mut self, sock: &mut impl Sink) -> Result<usize, TlsError> {
        let mut sent = 0;
        while let Some(front) = self.q.front_mut() {
            match front {
                Piece::Ready(b) => {
                    let n = sock.send(&b[self.offset..]);
                    sent += n;
                    self.offset += n;
                    if self.offset < b.len() {
                        break;
                    }
                    self.q.pop_front();
                    self.offset = 0;
                }
                Piece::Sealing(s) => {
                    let room = sock.room();
                    if room == 0 {
                        break;
                    }
                    let records = room.div_ceil(MAX_FRAGMENT).min(MAX_RECORDS_AT_ONCE);
                    let bytes = s.next(records)?;
                    if s.wire_left() == 0 {
                        self.q.pop_front();
                    }
                    if !bytes.is_empty() {
                        self.q.push_front(Piece::Ready(bytes));
                    }
                }
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An application state as the link carries it: "HPTS", version 1,
    /// TLS_AES_128_GCM_SHA256, no flags, two 32-byte secrets, the sequence
    /// numbers.
    fn state() -> hotpair_tls::TlsState {
        let mut enc = b"HPTS\x01\x13\x01\x00".to_vec();
        for fill in [1u8, 2] {
            enc.push(32);
            enc.extend([fill; 32]);
        }
        enc.extend([0u8; 16]);
        hotpair_tls::TlsState::decode(&enc).unwrap()
    }

    fn reply(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_sealing_reply_gives_its_plaintext_cut_at_records_from_any_chunks() {
        use hotpair_tls::RecordLayer;
        let state = state();
        let data = reply(3 * MAX_FRAGMENT + 100);
        // Chunks that do not fall on record boundaries.
        let chunks: Vec<Bytes> = data.chunks(7000).map(Bytes::copy_from_slice).collect();
        let mut whole = RecordLayer::new(state.clone()).unwrap();
        let mut want = whole.seal(&data).unwrap();
        whole.close().unwrap();
        want.extend(whole.take_output());
        let mut lazy = RecordLayer::new(state).unwrap();
        let mut s = Sealing::new(lazy.defer(data.len(), true).unwrap(), chunks);
        let mut got = Vec::new();
        while s.wire_left() > 0 {
            got.extend_from_slice(&s.next(1).unwrap());
        }
        assert_eq!(got, want);
    }

    /// A socket that takes `room` bytes per turn and keeps them.
    struct Slow {
        room: usize,
        got: Vec<u8>,
    }

    impl Sink for Slow {
        fn room(&self) -> usize {
            self.room
        }
        fn send(&mut self, data: &[u8]) -> usize {
            let n = data.len().min(self.room);
            self.got.extend_from_slice(&data[..n]);
            n
        }
    }

    /// At the bound: a 4 MB reply written to a socket that takes 20,000
    /// bytes per turn never holds more sealed than `MAX_RECORDS_AT_ONCE`
    /// records, and the client gets every byte of sealing the reply at
    /// once, in order, after what was queued before.
    #[test]
    fn a_slow_socket_holds_at_most_a_few_records_sealed() {
        use hotpair_tls::RecordLayer;
        let data = reply(4 << 20);
        let mut whole = RecordLayer::new(state()).unwrap();
        let mut want = b"before".to_vec();
        want.extend(whole.seal(&data).unwrap());
        let mut lazy = RecordLayer::new(state()).unwrap();
        let mut q = OutQueue::from_bytes([Bytes::from_static(b"before")]);
        let chunks = vec![Bytes::from(data.clone())];
        q.push_sealing(Sealing::new(lazy.defer(data.len(), false).unwrap(), chunks));
        assert_eq!(q.wire_len(), want.len());
        let mut sock = Slow {
            room: 20_000,
            got: Vec::new(),
        };
        let record = MAX_FRAGMENT + 22;
        while !q.is_empty() {
            let before = sock.got.len();
            q.write(&mut sock).unwrap();
            assert!(sock.got.len() > before, "every turn makes progress");
            let sealed_held: usize =
                q.q.iter()
                    .map(|p| match p {
                        Piece::Ready(b) => b.len(),
                        Piece::Sealing(_) => 0,
                    })
                    .sum::<usize>()
                    - q.offset;
            assert!(
                sealed_held <= MAX_RECORDS_AT_ONCE * record,
                "{sealed_held} bytes sealed and waiting"
            );
            assert_eq!(q.wire_len(), want.len() - sock.got.len());
        }
        assert_eq!(sock.got, want);
    }
}
