//! A round costs what the active connections cost (issue 9): with
//! thousands of idle connections open, a frame reaches its own socket (the
//! 4-tuple map, no walk) and a round looks only at the slots with
//! something to do.

use std::time::{Duration, Instant};

use hotpair_stack::engine::{Engine, Frame, Role};
use hotpair_stack::seg::{self, ACK, RST, SYN};
use smoltcp::wire::EthernetAddress;

mod common;
use common::{config, quiet, segment, CLIENT, CLIENT_MAC, VIP};

const N: u16 = 3000;

struct Node {
    engine: Engine<()>,
    now: Instant,
}

impl Node {
    fn new(max: usize) -> Self {
        let now = Instant::now();
        // One client holds them all here.
        let cfg = config(max, 4096, 4096);
        let mut engine = Engine::new(cfg, Role::Simplex, now);
        engine.handle_lan_frame(Frame::copy_from(&hotpair_stack::arp::request_to(
            CLIENT_MAC,
            CLIENT,
            EthernetAddress::BROADCAST,
            VIP,
        )));
        Node { engine, now }
    }

    /// Rounds until nothing moves; every TCP segment sent, as
    /// (client port, seq, ack, flags).
    fn run(&mut self, frames: Vec<Frame>) -> Vec<(u16, u32, u32, u8)> {
        for f in frames {
            self.engine.handle_lan_frame(f);
        }
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let busy = self.engine.poll(&mut quiet(), self.now);
            while let Some(f) = self.engine.poll_lan_transmit() {
                if let Some(s) = seg::parse(f.data()) {
                    out.push((s.dst_port, s.seq, s.ack, s.flags));
                }
            }
            if !busy {
                break;
            }
        }
        out
    }

    /// As `run`, then again past smoltcp's delayed-ACK timer (10 ms).
    fn run_acked(&mut self, frames: Vec<Frame>) -> Vec<(u16, u32, u32, u8)> {
        let mut out = self.run(frames);
        self.now += Duration::from_millis(20);
        out.extend(self.run(Vec::new()));
        out
    }

    /// Open `n` connections from ports 10000.. ; returns each one's server ISN.
    fn open(&mut self, n: u16) -> Vec<u32> {
        self.open_from(10_000, n)
    }

    /// Open `n` connections from ports `base`.. ; returns each one's server ISN.
    fn open_from(&mut self, base: u16, n: u16) -> Vec<u32> {
        let mut isns = vec![0u32; usize::from(n)];
        let mut left: Vec<u16> = (0..n).collect();
        // SYNs beyond the free listeners wait for the next rounds.
        for _ in 0..100 {
            if left.is_empty() {
                break;
            }
            let syns = left.iter().map(|&k| segment(base + k, 1000, 0, SYN, &[]));
            let out = self.run(syns.collect());
            for (port, seq, _, flags) in out {
                if flags & SYN != 0 && flags & ACK != 0 {
                    isns[usize::from(port - base)] = seq;
                }
            }
            left.retain(|&k| isns[usize::from(k)] == 0);
            self.now += Duration::from_millis(1);
        }
        assert!(left.is_empty(), "{} SYNs never answered", left.len());
        let acks = (0..n).map(|k| segment(base + k, 1001, isns[usize::from(k)] + 1, ACK, &[]));
        let out = self.run(acks.collect());
        assert!(out.iter().all(|o| o.3 & RST == 0), "no RST: {out:?}");
        isns
    }
}

#[test]
fn frames_reach_their_own_socket_among_thousands() {
    let mut n = Node::new(usize::from(N) + 100);
    let isns = n.open(N);
    assert_eq!(n.engine.connections(), usize::from(N));
    // Data on a few connections: each is acknowledged by its own socket.
    for k in [0u16, 1, N / 2, N - 1] {
        let out = n.run_acked(vec![segment(
            10_000 + k,
            1001,
            isns[usize::from(k)] + 1,
            ACK,
            b"GET / HTTP/1.1\r\n\r\n",
        )]);
        assert!(
            out.contains(&(10_000 + k, isns[usize::from(k)] + 1, 1001 + 18, ACK)),
            "connection {k}: {out:?}"
        );
        assert!(out.iter().all(|o| o.3 & RST == 0), "{out:?}");
    }
    // A segment for a tuple nobody holds is refused, and only it.
    let out = n.run(vec![segment(9_999, 5, 6, ACK, &[])]);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].3 & RST), (9_999, RST));
}

#[test]
fn an_idle_round_looks_at_nothing_and_a_busy_one_at_its_connection() {
    let mut n = Node::new(usize::from(N) + 100);
    let isns = n.open(N);
    // Every idle connection has no timer: no wake-up is asked for.
    n.now += Duration::from_secs(1);
    n.run(Vec::new());
    assert_eq!(n.engine.poll_delay(n.now), None);
    // And none holds a send buffer (lent only while sending).
    assert_eq!(n.engine.stats().send_buffers_lent, 0);
    let before = n.engine.stats().slots_polled;
    for _ in 0..100 {
        n.now += Duration::from_millis(10);
        n.engine.poll(&mut quiet(), n.now);
    }
    assert_eq!(
        n.engine.stats().slots_polled,
        before,
        "idle rounds polled slots"
    );
    // One segment on one connection: that slot (plus at most a couple of
    // follow-up rounds for it), not the 3000.
    let k = 1234u16;
    n.run_acked(vec![segment(
        10_000 + k,
        1001,
        isns[usize::from(k)] + 1,
        ACK,
        b"x",
    )]);
    let polled = n.engine.stats().slots_polled - before;
    assert!((1..=4).contains(&polled), "{polled} slots looked at");
}

#[test]
fn pool_limit_still_refuses_and_recycles_at_scale() {
    // At the pool's limit a new SYN is refused with a RST, and the
    // bookkeeping (free listeners, half-open set) stays consistent. The
    // pool holds `max_connections + max_half_open + 16` sockets (the SYN
    // queue and the armed listeners have room beyond the connections);
    // with nothing idle to close, connections fill all of it but the
    // spare listeners.
    let max = 500usize;
    let mut n = Node::new(max);
    // In two batches: one batch beyond `max_half_open` (500) SYNs would
    // drop its oldest handshakes.
    n.open_from(10_000, max as u16);
    n.open_from(20_000, max as u16);
    assert_eq!(n.engine.connections(), 2 * max);
    // The remaining 16 listeners take 16 more, then refusals.
    let syns = (0..40u16).map(|k| segment(30_000 + k, 1, 0, SYN, &[]));
    let out = n.run(syns.collect());
    let synacks = out.iter().filter(|o| o.3 & SYN != 0).count();
    let rsts = out.iter().filter(|o| o.3 & RST != 0).count();
    assert_eq!(synacks, 16, "{out:?}");
    assert_eq!(rsts, 24, "{out:?}");
    assert_eq!(n.engine.stats().half_open, 16);
}
