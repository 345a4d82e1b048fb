//! When the pool is full, idle keep-alive connections are closed first,
//! oldest idle first, so a new client gets in (DESIGN §5, promise 6) — with
//! a FIN, never an RST; and only for a completed handshake, never for a
//! SYN (which a flood could spoof).

mod common;

use std::time::{Duration, Instant};

use common::{client, hello, rounds, segment_from as segment, segments};
use hotpair_stack::engine::{ConnId, ConnInfo, Engine, Frame, Role, Service};
use hotpair_stack::seg::{self, ACK, FIN, RST, SYN};
use hotpair_stack::{Admission, StackConfig};
use smoltcp::socket::tcp;
use smoltcp::wire::Ipv4Address;

const MAX_CONNECTIONS: usize = 20;
const MAX_HALF_OPEN: usize = 8;

/// Every connection is an idle keep-alive one from its accept on; an
/// evicted one closes its socket (an orderly FIN) at its next drive.
#[derive(Default)]
struct Idle {
    evicted: Vec<ConnId>,
}

struct Conn {
    since: Instant,
    evicted: bool,
}

impl Service for Idle {
    type Conn = Conn;
    fn accept(&mut self, _: ConnId, _: &ConnInfo, now: Instant) -> Conn {
        Conn {
            since: now,
            evicted: false,
        }
    }
    fn drive(
        &mut self,
        _: ConnId,
        c: &mut Conn,
        sock: &mut tcp::Socket<'_>,
        _: Instant,
    ) -> Option<Instant> {
        if c.evicted && sock.is_open() {
            sock.close();
        }
        None
    }
    fn closed(&mut self, _: ConnId, _: Conn) {}
    fn woken(&mut self, _: &mut Vec<ConnId>) {}
    fn idle_since(&self, c: &Conn) -> Option<Instant> {
        (!c.evicted).then_some(c.since)
    }
    fn evict_idle(&mut self, id: ConnId, c: &mut Conn, _: Instant) -> bool {
        c.evicted = true;
        self.evicted.push(id);
        true
    }
}

/// What the node sent a client: (client, flags, seq, ack).
type Out = Vec<(Ipv4Address, u8, u32, u32)>;

struct Node {
    engine: Engine<Conn>,
    service: Idle,
    now: Instant,
}

impl Node {
    fn new() -> Self {
        let now = Instant::now();
        let cfg = StackConfig {
            admission: Admission {
                max_half_open: MAX_HALF_OPEN,
                max_per_source: MAX_CONNECTIONS,
                ..common::admission(MAX_CONNECTIONS)
            },
            ..common::config(MAX_CONNECTIONS, 4096, 4096)
        };
        Node {
            engine: Engine::new(cfg, Role::Simplex, now),
            service: Idle::default(),
            now,
        }
    }

    fn run(&mut self, frames: Vec<Frame>) -> Out {
        for f in frames {
            self.engine.handle_lan_frame(f);
        }
        let sent = rounds(&mut self.engine, &mut self.service, &mut self.now, 6);
        segments(&sent)
            .iter()
            .map(|s| (s.dst, s.flags, s.seq, s.ack))
            .collect()
    }

    /// A whole handshake from `c`; returns the server's ISN and what the
    /// node sent once the handshake completed.
    fn connect_out(&mut self, c: Ipv4Address, isn: u32) -> (u32, Out) {
        let out = self.run(vec![hello(c), segment(c, 40_000, isn, 0, SYN)]);
        let &(_, _, server_isn, _) = out
            .iter()
            .find(|(d, fl, _, _)| *d == c && fl & (SYN | ACK) == SYN | ACK)
            .unwrap_or_else(|| panic!("no SYN-ACK to {c}: {out:?}"));
        let out = self.run(vec![segment(
            c,
            40_000,
            isn.wrapping_add(1),
            server_isn.wrapping_add(1),
            ACK,
        )]);
        (server_isn, out)
    }

    fn connect(&mut self, c: Ipv4Address, isn: u32) -> u32 {
        self.connect_out(c, isn).0
    }
}

#[test]
fn a_full_pool_closes_its_oldest_idle_connection_for_a_new_client() {
    let mut n = Node::new();
    let mut isns = Vec::new();
    for i in 0..MAX_CONNECTIONS as u8 {
        isns.push(n.connect(client(i), 1000 * u32::from(i) + 7));
        n.now += Duration::from_secs(1);
    }
    assert_eq!(n.engine.connections(), MAX_CONNECTIONS);
    assert_eq!(n.engine.stats().idle_evicted, 0, "no eviction at the bound");

    // A flood of SYNs that never complete closes nothing either.
    let flood: Vec<Frame> = (0..50u16)
        .map(|i| segment(Ipv4Address::new(10, 0, 0, 230), 30_000 + i, 5, 0, SYN))
        .collect();
    let out = n.run(flood);
    assert!(!out.iter().any(|(_, fl, _, _)| fl & FIN != 0), "{out:?}");
    assert_eq!(n.engine.stats().idle_evicted, 0);

    // A new client's SYN alone closes nothing (it may be spoofed).
    let newcomer = Ipv4Address::new(10, 0, 0, 200);
    let out = n.run(vec![hello(newcomer), segment(newcomer, 50_000, 99, 0, SYN)]);
    let &(_, _, server_isn, _) = out
        .iter()
        .find(|(d, fl, _, _)| *d == newcomer && fl & (SYN | ACK) == SYN | ACK)
        .unwrap_or_else(|| panic!("the SYN is answered at once: {out:?}"));
    assert!(
        !out.iter().any(|(_, fl, _, _)| fl & (FIN | RST) != 0),
        "nothing closed for a SYN: {out:?}"
    );
    assert_eq!(n.engine.stats().idle_evicted, 0);

    // Its handshake completes: the oldest idle connection (client 0) is
    // closed with a FIN, and only it; no RST to anyone.
    let out = n.run(vec![segment(
        newcomer,
        50_000,
        100,
        server_isn.wrapping_add(1),
        ACK,
    )]);
    assert!(
        !out.iter().any(|(_, fl, _, _)| fl & RST != 0),
        "no RST to anyone: {out:?}"
    );
    let fin = out
        .iter()
        .find(|(d, fl, _, _)| *d == client(0) && fl & FIN != 0)
        .copied()
        .unwrap_or_else(|| panic!("no FIN to the oldest idle client: {out:?}"));
    assert!(
        !out.iter()
            .any(|(d, fl, _, _)| *d != client(0) && fl & FIN != 0),
        "only the oldest idle connection closes: {out:?}"
    );
    assert_eq!(n.engine.stats().idle_evicted, 1);
    assert_eq!(n.service.evicted.len(), 1);
    assert_eq!(n.engine.connections(), MAX_CONNECTIONS + 1, "closing");

    // The evicted client reads EOF and closes its end: back to the bound.
    let c0 = client(0);
    assert_eq!(fin.2, isns[0].wrapping_add(1));
    let out = n.run(vec![segment(
        c0,
        40_000,
        8,
        isns[0].wrapping_add(2),
        ACK | FIN,
    )]);
    assert!(!out.iter().any(|(_, fl, _, _)| fl & RST != 0), "{out:?}");
    assert_eq!(n.engine.connections(), MAX_CONNECTIONS);
    assert_eq!(n.engine.stats().idle_evicted, 1, "one eviction was enough");
}

/// The same service, but no connection is ever idle (each has a request
/// in progress).
struct Busy(Idle);

impl Service for Busy {
    type Conn = Conn;
    fn accept(&mut self, id: ConnId, i: &ConnInfo, now: Instant) -> Conn {
        self.0.accept(id, i, now)
    }
    fn drive(
        &mut self,
        id: ConnId,
        c: &mut Conn,
        s: &mut tcp::Socket<'_>,
        now: Instant,
    ) -> Option<Instant> {
        self.0.drive(id, c, s, now)
    }
    fn closed(&mut self, id: ConnId, c: Conn) {
        self.0.closed(id, c)
    }
    fn woken(&mut self, out: &mut Vec<ConnId>) {
        self.0.woken(out)
    }
}

/// Nothing idle: the bound is exceeded by at most the SYN queue's room,
/// and then SYNs are refused; nothing is closed.
#[test]
fn a_full_pool_with_nothing_idle_refuses_once_the_sockets_run_out() {
    let mut n = Node::new();
    let mut svc = Busy(Idle::default());
    let mut refused = false;
    let mut out = Vec::new();
    for i in 0..(MAX_CONNECTIONS + MAX_HALF_OPEN + 30) as u16 {
        let c = client(i as u8);
        n.engine.handle_lan_frame(hello(c));
        n.engine.handle_lan_frame(segment(c, 40_000, 7, 0, SYN));
        let mut synack = None;
        for _ in 0..4 {
            n.engine.poll(&mut svc, n.now);
            while let Some(f) = n.engine.poll_lan_transmit() {
                if let Some(s) = seg::parse(f.data()) {
                    if s.dst == c && s.flags & (SYN | ACK) == SYN | ACK {
                        synack = Some(s.seq);
                    }
                    if s.dst == c && s.flags & RST != 0 {
                        refused = true;
                    }
                    out.push((s.dst, s.flags));
                }
            }
        }
        let Some(isn) = synack else { break };
        n.engine
            .handle_lan_frame(segment(c, 40_000, 8, isn.wrapping_add(1), ACK));
        for _ in 0..4 {
            n.engine.poll(&mut svc, n.now);
            while let Some(f) = n.engine.poll_lan_transmit() {
                if let Some(s) = seg::parse(f.data()) {
                    out.push((s.dst, s.flags));
                }
            }
        }
        n.now += Duration::from_millis(10);
    }
    assert!(refused, "SYNs refused once the sockets ran out");
    assert!(!out.iter().any(|(_, fl)| fl & FIN != 0), "nothing closed");
    let active = n.engine.connections();
    assert!(
        active > MAX_CONNECTIONS && active <= MAX_CONNECTIONS + MAX_HALF_OPEN + 16,
        "{active}"
    );
    assert_eq!(n.engine.stats().idle_evicted, 0);
}

/// The evicted client acknowledges the FIN but never closes its end: its
/// connection (FIN-WAIT-2, which smoltcp would keep for good) is released
/// silently for the next new connection rather than another idle one.
#[test]
fn a_client_that_never_closes_does_not_keep_its_slot() {
    let mut n = Node::new();
    let mut isns = Vec::new();
    for i in 0..MAX_CONNECTIONS as u8 {
        isns.push(n.connect(client(i), 1000 * u32::from(i) + 7));
        n.now += Duration::from_secs(1);
    }
    let (_, out) = n.connect_out(Ipv4Address::new(10, 0, 0, 200), 99);
    assert!(
        out.iter()
            .any(|(d, fl, _, _)| *d == client(0) && fl & FIN != 0),
        "{out:?}"
    );
    // Client 0 acknowledges our FIN, and stays silent.
    let c0 = client(0);
    let out = n.run(vec![segment(c0, 40_000, 8, isns[0].wrapping_add(2), ACK)]);
    assert!(!out.iter().any(|(_, fl, _, _)| fl & RST != 0), "{out:?}");
    assert_eq!(n.engine.connections(), MAX_CONNECTIONS + 1, "FIN-WAIT-2");

    // Another new connection: two to make room for now. Client 0's is
    // released (silently: no RST), and the next oldest idle is closed.
    let (_, out) = n.connect_out(Ipv4Address::new(10, 0, 0, 201), 199);
    assert!(!out.iter().any(|(_, fl, _, _)| fl & RST != 0), "{out:?}");
    assert!(
        out.iter()
            .any(|(d, fl, _, _)| *d == client(1) && fl & FIN != 0),
        "{out:?}"
    );
    let st = n.engine.stats();
    assert_eq!((st.idle_evicted, st.fin_wait2_reclaimed), (2, 1));
    assert_eq!(
        n.engine.connections(),
        MAX_CONNECTIONS + 1,
        "client 1 closing"
    );
}
