//! When the pool is full, idle keep-alive connections are closed first,
//! oldest idle first, so a new client gets in (DESIGN §5, promise 6) — with
//! a FIN, never an RST.

use std::time::{Duration, Instant};

use hotpair_stack::engine::{ConnId, ConnInfo, Engine, Frame, Role, Service};
use hotpair_stack::runtime::StackConfig;
use hotpair_stack::seg::{self, ACK, FIN, RST, SYN};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};

const NODE_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 10]);
const VIP: Ipv4Address = Ipv4Address::new(10, 0, 0, 10);
/// Listeners count against the pool: 20 sockets, all connections once full.
const MAX_CONNECTIONS: usize = 20;

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

fn mac_of(ip: Ipv4Address) -> EthernetAddress {
    let o = ip.octets();
    EthernetAddress([2, 1, o[0], o[1], o[2], o[3]])
}

fn client(i: u8) -> Ipv4Address {
    Ipv4Address::new(10, 0, 0, 100 + i)
}

fn hello(src: Ipv4Address) -> Frame {
    Frame::copy_from(&hotpair_stack::arp::request_to(
        mac_of(src),
        src,
        EthernetAddress::BROADCAST,
        VIP,
    ))
}

fn segment(src: Ipv4Address, port: u16, seq: u32, ack: u32, flags: u8) -> Frame {
    let mut f = seg::build(
        mac_of(src),
        NODE_MAC,
        src,
        VIP,
        port,
        80,
        seq,
        ack,
        flags,
        65535,
    );
    seg::set_ipv4_checksum(&mut f);
    Frame::copy_from(&f)
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
            mac: NODE_MAC,
            address: Ipv4Cidr::new(VIP, 24),
            gateway: None,
            port: 80,
            max_connections: MAX_CONNECTIONS,
            max_half_open: 8,
            half_open_timeout: Duration::from_secs(20),
            max_per_source: MAX_CONNECTIONS,
            rx_buffer_bytes: 4096,
            tx_buffer_bytes: 4096,
            seed: 5,
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
        let mut out = Vec::new();
        for _ in 0..6 {
            self.engine.poll(&mut self.service, self.now);
            while let Some(f) = self.engine.poll_lan_transmit() {
                if let Some(s) = seg::parse(f.data()) {
                    out.push((s.dst, s.flags, s.seq, s.ack));
                }
            }
            self.now += Duration::from_millis(1);
        }
        out
    }

    /// A whole handshake from `c`; returns the server's ISN.
    fn connect(&mut self, c: Ipv4Address, isn: u32) -> u32 {
        let out = self.run(vec![hello(c), segment(c, 40_000, isn, 0, SYN)]);
        let &(_, _, server_isn, _) = out
            .iter()
            .find(|(d, fl, _, _)| *d == c && fl & (SYN | ACK) == SYN | ACK)
            .unwrap_or_else(|| panic!("no SYN-ACK to {c}: {out:?}"));
        self.run(vec![segment(
            c,
            40_000,
            isn.wrapping_add(1),
            server_isn.wrapping_add(1),
            ACK,
        )]);
        server_isn
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
    assert_eq!(
        n.engine.stats().idle_evicted,
        0,
        "no eviction below the bound"
    );

    // A new client knocks: the oldest idle connection (client 0) is
    // closed with a FIN, and the SYN waits (held, not refused).
    let newcomer = Ipv4Address::new(10, 0, 0, 200);
    let out = n.run(vec![hello(newcomer), segment(newcomer, 50_000, 99, 0, SYN)]);
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
    let st = n.engine.stats();
    assert_eq!((st.idle_evicted, st.syn_waited_for_eviction), (1, 1));
    assert_eq!(n.service.evicted.len(), 1);

    // The evicted client reads EOF and closes its end: the slot frees
    // (TIME-WAIT is recycled at a full pool).
    let c0 = client(0);
    let (seq, ack) = (isns[0].wrapping_add(2), 7u32.wrapping_add(1));
    assert_eq!(fin.2, isns[0].wrapping_add(1));
    let out = n.run(vec![segment(c0, 40_000, ack, seq, ACK | FIN)]);
    assert!(!out.iter().any(|(_, fl, _, _)| fl & RST != 0), "{out:?}");
    // The held SYN gets its connection at once, not at the client's
    // retransmission a second later.
    assert!(
        out.iter()
            .any(|(d, fl, _, _)| *d == newcomer && fl & (SYN | ACK) == SYN | ACK),
        "{out:?}"
    );
    // Its retransmission, crossing the SYN-ACK, is a duplicate.
    let out = n.run(vec![segment(newcomer, 50_000, 99, 0, SYN)]);
    assert!(!out.iter().any(|(_, fl, _, _)| fl & RST != 0), "{out:?}");
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

#[test]
fn a_full_pool_with_nothing_idle_refuses_as_before() {
    let mut n = Node::new();
    for i in 0..MAX_CONNECTIONS as u8 {
        n.connect(client(i), 1000 * u32::from(i) + 7);
    }
    let newcomer = Ipv4Address::new(10, 0, 0, 200);
    n.engine.handle_lan_frame(hello(newcomer));
    n.engine
        .handle_lan_frame(segment(newcomer, 50_000, 99, 0, SYN));
    let mut svc = Busy(Idle::default());
    let mut out = Vec::new();
    for _ in 0..4 {
        n.engine.poll(&mut svc, n.now);
        while let Some(f) = n.engine.poll_lan_transmit() {
            if let Some(s) = seg::parse(f.data()) {
                out.push((s.dst, s.flags));
            }
        }
    }
    assert!(
        out.iter().any(|(d, fl)| *d == newcomer && fl & RST != 0),
        "refused at once when nothing is idle: {out:?}"
    );
    assert!(!out.iter().any(|(_, fl)| fl & FIN != 0), "{out:?}");
    assert_eq!(n.engine.stats().idle_evicted, 0);
}

/// The evicted client acknowledges the FIN but never closes its end: the
/// slot (FIN-WAIT-2, which smoltcp would keep for good) is released
/// silently for the next SYN, so such clients cannot hold the pool.
#[test]
fn a_client_that_never_closes_does_not_keep_its_slot() {
    let mut n = Node::new();
    let mut isns = Vec::new();
    for i in 0..MAX_CONNECTIONS as u8 {
        isns.push(n.connect(client(i), 1000 * u32::from(i) + 7));
        n.now += Duration::from_secs(1);
    }
    let newcomer = Ipv4Address::new(10, 0, 0, 200);
    let out = n.run(vec![hello(newcomer), segment(newcomer, 50_000, 99, 0, SYN)]);
    assert!(
        out.iter()
            .any(|(d, fl, _, _)| *d == client(0) && fl & FIN != 0),
        "{out:?}"
    );
    // Client 0 acknowledges our FIN, and stays silent.
    let c0 = client(0);
    let out = n.run(vec![segment(c0, 40_000, 8, isns[0].wrapping_add(2), ACK)]);
    assert!(!out.iter().any(|(_, fl, _, _)| fl & RST != 0), "{out:?}");
    assert_eq!(
        n.engine.connections(),
        MAX_CONNECTIONS,
        "FIN-WAIT-2 holds it"
    );
    // The held SYN is given up after a second (the client retransmits).
    n.now += Duration::from_secs(2);
    let out = n.run(Vec::new());
    assert!(!out.iter().any(|(d, _, _, _)| *d == newcomer), "{out:?}");

    let out = n.run(vec![segment(newcomer, 50_000, 99, 0, SYN)]);
    assert!(
        out.iter()
            .any(|(d, fl, _, _)| *d == newcomer && fl & (SYN | ACK) == SYN | ACK),
        "{out:?}"
    );
    assert!(
        !out.iter().any(|(_, fl, _, _)| fl & RST != 0),
        "released silently: {out:?}"
    );
    let st = n.engine.stats();
    assert_eq!((st.idle_evicted, st.fin_wait2_reclaimed), (1, 1));
}
