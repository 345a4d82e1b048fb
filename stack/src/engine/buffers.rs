//! Send buffers lent to connections while they send, not owned for life.
//!
//! An idle keep-alive connection has nothing to send, yet a transmit buffer
//! of `tx_buffer_bytes` (256 KiB by default) per socket made every idle
//! connection cost that much once its pages had been touched. Here a
//! socket holds an empty (unallocated) send buffer while its send queue is
//! empty, is lent a full-size one just before its service may write, and
//! gives it back once everything it sent has been acknowledged. A bulk
//! transfer keeps its buffer all along, so it reaches the same window as
//! before.
//!
//! Only the send side varies: the receive buffer decides the window the
//! client sees and the window scale negotiated in the handshake, which the
//! primary and the owner node's shadow must agree on (see
//! docs/replication-protocol.md), so it keeps its configured size. The
//! send buffer's size is invisible on the wire.

use smoltcp::socket::tcp;

/// Full-size send buffers kept for reuse; beyond this they are freed
/// (64 × 256 KiB: 16 MiB at most held by no connection).
const MAX_SPARE: usize = 64;

pub(super) struct SendBuffers {
    size: usize,
    spare: Vec<tcp::SocketBuffer<'static>>,
    /// Buffers lent out now (for status and tests).
    lent: usize,
}

/// An empty send buffer: no allocation.
pub(super) fn empty() -> tcp::SocketBuffer<'static> {
    tcp::SocketBuffer::new(Vec::new())
}

impl SendBuffers {
    pub(super) fn new(size: usize) -> Self {
        SendBuffers {
            size,
            spare: Vec::new(),
            lent: 0,
        }
    }

    /// Before the service may write: give `sock` a full-size send buffer
    /// (keeping what its own holds, if anything).
    pub(super) fn lend(&mut self, sock: &mut tcp::Socket<'static>) {
        if sock.send_capacity() >= self.size || self.size == 0 {
            return;
        }
        let buf = self
            .spare
            .pop()
            .unwrap_or_else(|| tcp::SocketBuffer::new(vec![0; self.size]));
        match sock.replace_send_buffer(buf) {
            // The old one was empty (or a smaller one): dropped.
            Ok(_) => self.lent += 1,
            Err(buf) => self.spare.push(buf),
        }
    }

    /// After a round: take the buffer back if everything in it has been
    /// acknowledged.
    pub(super) fn reclaim(&mut self, sock: &mut tcp::Socket<'static>) {
        if sock.send_capacity() == 0 || sock.send_queue() != 0 {
            return;
        }
        if let Ok(buf) = sock.replace_send_buffer(empty()) {
            self.lent = self.lent.saturating_sub(1);
            if self.spare.len() < MAX_SPARE {
                self.spare.push(buf);
            }
        }
    }

    /// A released socket's send buffer: full-size ones were lent (and are
    /// kept as spares within the bound); empty ones were never lent.
    pub(super) fn take_back(&mut self, buf: tcp::SocketBuffer<'static>) {
        if buf.capacity() == 0 {
            return;
        }
        self.lent = self.lent.saturating_sub(1);
        if buf.capacity() == self.size && self.spare.len() < MAX_SPARE {
            self.spare.push(buf);
        }
    }

    pub(super) fn lent(&self) -> usize {
        self.lent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock() -> tcp::Socket<'static> {
        tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 1024]), empty())
    }

    #[test]
    fn lends_and_reclaims() {
        let mut b = SendBuffers::new(4096);
        let mut s = sock();
        assert_eq!(s.send_capacity(), 0);
        b.lend(&mut s);
        assert_eq!(s.send_capacity(), 4096);
        assert_eq!(b.lent(), 1);
        b.lend(&mut s);
        assert_eq!(b.lent(), 1, "lending twice is a no-op");
        b.reclaim(&mut s);
        assert_eq!(s.send_capacity(), 0);
        assert_eq!(b.lent(), 0);
        // The spare is reused, not reallocated.
        let mut t = sock();
        b.lend(&mut t);
        assert_eq!(b.spare.len(), 0);
        assert_eq!(t.send_capacity(), 4096);
    }

    #[test]
    fn spares_are_bounded() {
        let mut b = SendBuffers::new(64);
        let mut socks: Vec<_> = (0..MAX_SPARE + 50).map(|_| sock()).collect();
        for s in &mut socks {
            b.lend(s);
        }
        for s in &mut socks {
            b.reclaim(s);
        }
        assert_eq!(b.spare.len(), MAX_SPARE);
        assert_eq!(b.lent(), 0);
    }
}
