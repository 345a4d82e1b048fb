//! Receive buffers come from the engine's slab (`engine/slab.rs`): at its
//! bound — no arena can be mapped — a new connection is refused cleanly
//! with an RST (never a panic, never a SYN kept waiting), and a released
//! connection's buffer is reused, read as zeros.

mod common;

use std::time::{Duration, Instant};

use common::{client, finish, hello, mac_of, quiet, rounds, segments, NODE_MAC, VIP};
use hotpair_stack::engine::{Engine, Frame, Role, RxSlab};
use hotpair_stack::seg::{self, ACK, RST, SYN};
use hotpair_stack::{Admission, StackConfig};
use smoltcp::wire::Ipv4Address;
const BUF: usize = 8192;
/// 5 arenas of 4 buffers: 20 sockets in all (16 of them armed listeners
/// at first).
const BLOCKS: usize = 20;

/// A segment from `src`'s port 40000 (one connection per client).
fn segment(src: Ipv4Address, seq: u32, ack: u32, flags: u8) -> Frame {
    common::segment_from(src, 40_000, seq, ack, flags)
}

/// A node on VIP:80 with receive buffers of `BUF` bytes.
fn config(max_connections: usize) -> StackConfig {
    StackConfig {
        admission: Admission {
            max_half_open: 64,
            ..common::admission(max_connections)
        },
        ..common::config(max_connections, BUF, 4096)
    }
}

struct Node {
    engine: Engine<()>,
    now: Instant,
}

impl Node {
    fn run(&mut self, frames: Vec<Frame>) -> Vec<(Ipv4Address, u8, u32, u32)> {
        for f in frames {
            self.engine.handle_lan_frame(f);
        }
        let sent = rounds(&mut self.engine, &mut quiet(), &mut self.now, 4);
        segments(&sent)
            .iter()
            .map(|s| (s.dst, s.flags, s.seq, s.ack))
            .collect()
    }

    /// A handshake from `c`: the server's ISN, or the flags of its refusal.
    fn connect(&mut self, c: Ipv4Address) -> Result<u32, u8> {
        let out = self.run(vec![hello(c), segment(c, 7, 0, SYN)]);
        let Some(&(_, fl, isn, _)) = out.iter().find(|(d, _, _, _)| *d == c) else {
            panic!("no answer to {c}'s SYN (it must not wait): {out:?}");
        };
        if fl & (SYN | ACK) != SYN | ACK {
            return Err(fl);
        }
        self.run(vec![segment(c, 8, isn.wrapping_add(1), ACK)]);
        Ok(isn)
    }
}

#[test]
fn an_exhausted_slab_refuses_new_connections_cleanly() {
    let slab = RxSlab::new(BUF, 4, BLOCKS / 4);
    let now = Instant::now();
    let mut cfg = config(1000);
    cfg.admission.max_per_source = 1000;
    let mut n = Node {
        engine: Engine::with_rx_slab(cfg, Role::Simplex, now, slab),
        now,
    };
    // Every socket's buffer comes from the slab: listeners included.
    let mut isns = Vec::new();
    for i in 0..BLOCKS as u8 {
        isns.push(n.connect(client(i)).expect("room for it"));
    }
    assert_eq!(n.engine.connections(), BLOCKS);
    assert_eq!(slab.stats().in_use, BLOCKS);
    assert_eq!(slab.stats().arenas, BLOCKS / 4);

    // No arena left: the next client gets an RST at once, twice.
    for _ in 0..2 {
        let fl = n.connect(client(50)).expect_err("no buffer for it");
        assert!(fl & RST != 0, "refused with an RST, got flags {fl:#x}");
    }
    assert_eq!(n.engine.stats().no_rx_buffer, 2);
    assert_eq!(n.engine.connections(), BLOCKS, "nobody else disturbed");

    // One client leaves (RST): its buffer goes back to the slab, and the
    // waiting client gets in with it.
    n.run(vec![segment(client(0), 8, isns[0].wrapping_add(1), RST)]);
    assert_eq!(n.engine.connections(), BLOCKS - 1);
    n.connect(client(50)).expect("the freed buffer is reused");
    assert_eq!(n.engine.connections(), BLOCKS);
    assert_eq!(slab.stats().arenas, BLOCKS / 4, "no new arena");

    // Dropping the engine gives every buffer back.
    drop(n);
    assert_eq!(slab.stats().in_use, 0);
}

/// An engine gives every socket's buffer back when dropped (tests and the
/// simulation build thousands of engines in one process).
#[test]
fn engines_give_their_buffers_back() {
    let slab = RxSlab::new(BUF, 0, 1);
    let mk = || {
        let now = Instant::now();
        let mut cfg = config(100);
        cfg.admission.max_per_source = 100;
        Engine::<()>::with_rx_slab(cfg, Role::Simplex, now, slab)
    };
    let armed = {
        let _e = mk();
        slab.stats().in_use
    };
    assert!(armed > 0);
    assert_eq!(slab.stats().in_use, 0);
    // Many engines in turn, one arena: nothing leaks.
    for _ in 0..100 {
        let _e = mk();
    }
    assert_eq!(slab.stats().in_use, 0);
    assert_eq!(slab.stats().arenas, 1);
}

/// Reads everything it is sent (an HTTP server between requests); counts
/// the bytes.
struct Drain(usize);

impl hotpair_stack::engine::Service for Drain {
    type Conn = ();
    fn accept(
        &mut self,
        _: hotpair_stack::engine::ConnId,
        _: &hotpair_stack::engine::ConnInfo,
        _: Instant,
    ) {
    }
    fn drive(
        &mut self,
        _: hotpair_stack::engine::ConnId,
        _: &mut (),
        sock: &mut smoltcp::socket::tcp::Socket<'_>,
        _: Instant,
    ) -> Option<Instant> {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = sock.recv_slice(&mut buf) {
            self.0 += n;
        }
        None
    }
    fn closed(&mut self, _: hotpair_stack::engine::ConnId, _: ()) {}
    fn woken(&mut self, _: &mut Vec<hotpair_stack::engine::ConnId>) {}
}

/// A connection whose receive buffer stays empty has its pages released
/// after `RX_RELEASE_AFTER` — once, however long it idles; one with
/// unread data never.
#[test]
fn idle_receive_buffers_are_released() {
    for read in [true, false] {
        idle_release(read);
    }
}

fn idle_release(read: bool) {
    let now = Instant::now();
    let mut cfg = config(100);
    cfg.admission.max_per_source = 100;
    let mut e: Engine<()> = Engine::new(cfg, Role::Simplex, now);
    let mut now = now;
    let c = client(1);
    let mut drain = Drain(0);
    let mut run = |e: &mut Engine<()>, frames: Vec<Frame>, now: Instant| {
        for f in frames {
            e.handle_lan_frame(f);
        }
        let mut out = Vec::new();
        for k in 0..4 {
            let t = now + Duration::from_millis(k);
            if read {
                e.poll(&mut drain, t);
            } else {
                e.poll(&mut quiet(), t);
            }
            while let Some(f) = e.poll_lan_transmit() {
                if let Some(s) = seg::parse(f.data()) {
                    out.push((s.flags, s.seq));
                }
            }
        }
        out
    };
    let out = run(&mut e, vec![hello(c), segment(c, 7, 0, SYN)], now);
    let &(_, isn) = out
        .iter()
        .find(|(fl, _)| fl & (SYN | ACK) == SYN | ACK)
        .expect("SYN-ACK");
    // A request: 40 bytes of payload on the handshake's ACK.
    let f = seg::build(
        mac_of(c),
        NODE_MAC,
        c,
        VIP,
        40_000,
        80,
        8,
        isn.wrapping_add(1),
        ACK,
        65535,
    );
    run(&mut e, vec![finish(f, &[], &[b'g'; 40])], now);
    assert_eq!(e.connections(), 1);
    assert_eq!(e.stats().rx_released, 0, "not at once");
    now += Duration::from_secs(3);
    run(&mut e, vec![], now);
    now += Duration::from_secs(10);
    run(&mut e, vec![], now);
    if read {
        assert_eq!(drain.0, 40, "the request was read");
        assert_eq!(e.stats().rx_released, 1, "released once, while it idles");
    } else {
        assert_eq!(e.stats().rx_released, 0, "unread data keeps its pages");
    }
}
