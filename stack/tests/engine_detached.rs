//! A detached connection (owner mode): its shadow given up by the node
//! core (the reply made here differed from the primary's) while the
//! primary serves on. The engine keeps a forward-only track: every client
//! segment goes to the primary as the client sent it, until the client
//! resets or closes it, the primary's connection is gone, or it is idle;
//! bounded by `max_connections`; at a takeover the client is reset.

use std::time::{Duration, Instant};

use hotpair_stack::engine::{
    ConnId, ConnInfo, ConnKey, Engine, Frame, Role, Service, DETACHED_FIN_LINGER, DETACHED_IDLE,
};
use hotpair_stack::seg::{self, ACK, FIN, RST, SYN};
use hotpair_stack::{Admission, StackConfig};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, Ipv4Address};

mod common;

const NODE_MAC: EthernetAddress = common::NODE_MAC;
const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const VIP: Ipv4Address = common::VIP;
const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const CLIENT_ISN: u32 = 1000;
/// The primary's ISN, as the client's ACKs reveal it.
const PRIMARY_ISN: u32 = 7_000_000;

/// A client segment from `port`, acknowledging `ack` bytes of the
/// primary's beyond its SYN.
fn client_seg(port: u16, seq: u32, acked: u32, flags: u8, payload: &[u8]) -> Frame {
    let ack = if flags & ACK != 0 {
        PRIMARY_ISN + 1 + acked
    } else {
        0
    };
    let f = seg::build(
        CLIENT_MAC, NODE_MAC, CLIENT, VIP, port, 80, seq, ack, flags, 65535,
    );
    let options: &[u8] = if flags & SYN != 0 {
        &[2, 4, 0x05, 0xb4, 4, 2, 1, 1]
    } else {
        &[]
    };
    common::finish(f, options, payload)
}

/// Keeps the id of every connection it accepts; touches no socket.
#[derive(Default)]
struct Ids {
    ids: Vec<(u16, ConnId)>,
    closed: Vec<ConnId>,
}

impl Service for Ids {
    type Conn = ();
    fn accept(&mut self, id: ConnId, info: &ConnInfo, _: Instant) {
        self.ids.push((info.key.client_port, id));
    }
    fn drive(
        &mut self,
        _: ConnId,
        _: &mut (),
        _: &mut tcp::Socket<'_>,
        _: Instant,
    ) -> Option<Instant> {
        None
    }
    fn closed(&mut self, id: ConnId, _: ()) {
        self.closed.push(id);
    }
    fn woken(&mut self, _: &mut Vec<ConnId>) {}
}

struct Owner {
    engine: Engine<()>,
    service: Ids,
    now: Instant,
}

/// What one exchange produced: the frames forwarded to the primary and
/// the TCP segments sent to the LAN.
struct Out {
    forwarded: Vec<Vec<u8>>,
    lan: Vec<seg::Seg>,
}

impl Owner {
    fn new(max_connections: usize) -> Self {
        let now = Instant::now();
        let cfg = StackConfig {
            admission: Admission {
                max_half_open: 8,
                max_per_source: 64,
                ..common::admission(max_connections)
            },
            seed: 7,
            ..common::config(max_connections, 65536, 65536)
        };
        let mut engine = Engine::new(cfg, Role::Owner, now);
        engine.set_lease(true);
        Owner {
            engine,
            service: Ids::default(),
            now,
        }
    }

    fn run(&mut self) -> Out {
        for _ in 0..4 {
            self.engine.poll(&mut self.service, self.now);
            self.now += Duration::from_millis(1);
        }
        let mut out = Out {
            forwarded: Vec::new(),
            lan: Vec::new(),
        };
        while let Some(f) = self.engine.poll_forward() {
            out.forwarded.push(f.data().to_vec());
        }
        while let Some(f) = self.engine.poll_lan_transmit() {
            if let Some(s) = seg::parse(f.data()) {
                out.lan.push(s);
            }
        }
        out
    }

    fn client(&mut self, f: Frame) -> Out {
        self.engine.handle_lan_frame(f);
        self.run()
    }

    /// Open a shadow for client port `port`; its id.
    fn open(&mut self, port: u16) -> ConnId {
        assert_eq!(
            self.client(client_seg(port, CLIENT_ISN, 0, SYN, b""))
                .forwarded
                .len(),
            1
        );
        assert_eq!(
            self.client(client_seg(port, CLIENT_ISN + 1, 0, ACK, b""))
                .forwarded
                .len(),
            1
        );
        self.service
            .ids
            .iter()
            .find(|(p, _)| *p == port)
            .expect("the shadow accepted")
            .1
    }

    /// Open and detach the shadow of client port `port`.
    fn detached(&mut self, port: u16) -> ConnId {
        let id = self.open(port);
        assert!(self.engine.detach_shadow(&mut self.service, id, self.now));
        assert!(self.service.closed.contains(&id), "closed for the service");
        id
    }
}

#[test]
fn a_detached_connections_segments_go_to_the_primary_as_sent() {
    let mut n = Owner::new(16);
    let id = n.open(40000);
    let stale = ConnId {
        generation: id.generation.wrapping_add(1),
        ..id
    };
    assert!(
        !n.engine.detach_shadow(&mut n.service, stale, n.now),
        "another connection's id"
    );
    assert!(n.engine.detach_shadow(&mut n.service, id, n.now));
    let st = n.engine.stats();
    assert_eq!((st.shadows_detached, st.detached, st.active), (1, 1, 0));
    // Data acknowledging reply bytes no shadow ever queued: a shadow would
    // hold it (its ACK is beyond what it has); detached, it goes at once,
    // byte for byte, its ACK in the primary's space as the client wrote it.
    let data = client_seg(40000, CLIENT_ISN + 1, 5000, ACK, &[b'x'; 300]);
    let sent = data.data().to_vec();
    let out = n.client(data);
    assert_eq!(out.forwarded, vec![sent]);
    assert!(out.lan.is_empty(), "nothing to the client (no RST)");
    // A pure ACK, and more data: each goes.
    let out = n.client(client_seg(40000, CLIENT_ISN + 301, 9000, ACK, b""));
    assert_eq!(out.forwarded.len(), 1);
    let out = n.client(client_seg(40000, CLIENT_ISN + 301, 9000, ACK, &[b'y'; 10]));
    assert_eq!(out.forwarded.len(), 1);
    assert!(out.lan.is_empty());
    let st = n.engine.stats();
    assert_eq!(st.detached_forwarded, 3);
    assert_eq!(st.unknown_dropped, 0);
    assert_eq!(st.held, 0);
}

#[test]
fn a_client_reset_ends_it() {
    let mut n = Owner::new(16);
    n.detached(40000);
    let out = n.client(client_seg(40000, CLIENT_ISN + 1, 0, RST, b""));
    assert_eq!(out.forwarded.len(), 1, "the RST goes to the primary");
    assert_eq!(n.engine.stats().detached, 0);
    assert!(n
        .client(client_seg(40000, CLIENT_ISN + 1, 0, ACK, b"late"))
        .forwarded
        .is_empty());
    assert_eq!(n.engine.stats().unknown_dropped, 1);
}

#[test]
fn a_client_fin_ends_it_after_a_linger_and_silence_after_the_idle_limit() {
    let mut n = Owner::new(16);
    n.detached(40000);
    n.detached(40001);
    let out = n.client(client_seg(40000, CLIENT_ISN + 1, 0, ACK | FIN, b""));
    assert_eq!(out.forwarded.len(), 1);
    // The client's last ACK of the primary's FIN, within the linger.
    n.now += DETACHED_FIN_LINGER / 2;
    assert_eq!(
        n.client(client_seg(40000, CLIENT_ISN + 2, 1, ACK, b""))
            .forwarded
            .len(),
        1
    );
    // Nothing more for the linger: the poll that ends it comes when due.
    let wait = n.engine.poll_delay(n.now).expect("a deadline");
    assert!(wait <= DETACHED_FIN_LINGER, "{wait:?}");
    n.now += DETACHED_FIN_LINGER;
    n.run();
    assert_eq!(n.engine.stats().detached, 1, "the other is not idle yet");
    assert!(n
        .client(client_seg(40000, CLIENT_ISN + 2, 1, ACK, b""))
        .forwarded
        .is_empty());
    // The other one heard nothing since it was detached.
    n.now += DETACHED_IDLE;
    n.run();
    assert_eq!(n.engine.stats().detached, 0);
    assert!(n
        .client(client_seg(40001, CLIENT_ISN + 1, 0, ACK, b"x"))
        .forwarded
        .is_empty());
}

#[test]
fn the_primarys_conn_gone_ends_it() {
    let mut n = Owner::new(16);
    n.detached(40000);
    let other = ConnKey {
        client_ip: CLIENT,
        client_port: 40000,
        client_isn: CLIENT_ISN + 7,
    };
    assert!(!n.engine.end_detached(other), "another connection's");
    assert!(n.engine.end_detached(ConnKey {
        client_isn: CLIENT_ISN,
        ..other
    }));
    assert_eq!(n.engine.stats().detached, 0);
    assert!(n
        .client(client_seg(40000, CLIENT_ISN + 1, 0, ACK, b"x"))
        .forwarded
        .is_empty());
}

#[test]
fn at_most_max_connections_are_kept_least_recent_first() {
    let mut n = Owner::new(2);
    n.detached(40000);
    n.detached(40001);
    // 40000 heard from since: 40001 is the least recent.
    n.now += Duration::from_millis(10);
    assert_eq!(
        n.client(client_seg(40000, CLIENT_ISN + 1, 0, ACK, b""))
            .forwarded
            .len(),
        1
    );
    n.detached(40002);
    assert_eq!(n.engine.stats().detached, 2);
    for (port, goes) in [(40000, true), (40001, false), (40002, true)] {
        let out = n.client(client_seg(port, CLIENT_ISN + 1, 0, ACK, b""));
        assert_eq!(out.forwarded.len() == 1, goes, "port {port}");
    }
}

#[test]
fn a_new_syn_on_its_tuple_opens_a_new_shadow() {
    let mut n = Owner::new(16);
    n.detached(40000);
    assert_eq!(
        n.client(client_seg(40000, CLIENT_ISN + 1, 0, ACK, b""))
            .forwarded
            .len(),
        1
    );
    n.service.ids.clear();
    let id = n.open(40000);
    assert_eq!(n.engine.stats().detached, 0);
    assert_eq!(n.engine.stats().active, 1);
    assert!(n.engine.detach_shadow(&mut n.service, id, n.now));
}

#[test]
fn after_a_takeover_its_client_is_reset() {
    let mut n = Owner::new(16);
    n.detached(40000);
    let other = n.open(40001);
    assert_eq!(
        n.client(client_seg(40000, CLIENT_ISN + 1, 700, ACK, b""))
            .forwarded
            .len(),
        1
    );
    n.engine.promote(&mut n.service, n.now);
    assert!(
        !n.engine.detach_shadow(&mut n.service, other, n.now),
        "a promoted connection is served here: nothing to detach"
    );
    // At once, at the client's last acknowledgement (an idle client, or
    // one waiting for the server's FIN, would otherwise never hear).
    let out = n.run();
    let rsts: Vec<_> = out.lan.iter().filter(|s| s.has(RST)).collect();
    assert_eq!(rsts.len(), 1, "{:?}", out.lan);
    assert_eq!(
        (rsts[0].dst, rsts[0].dst_port, rsts[0].src_port, rsts[0].seq),
        (CLIENT, 40000, 80, PRIMARY_ISN + 1 + 700),
        "at the client's last acknowledgement"
    );
    assert_eq!(rsts[0].dst_mac, CLIENT_MAC);
    assert_eq!(n.engine.stats().detached, 0);
    // And again at its next segment, never silence.
    let out = n.client(client_seg(40000, CLIENT_ISN + 1, 700, ACK, b"GET"));
    assert!(out.forwarded.is_empty());
    assert!(
        out.lan
            .iter()
            .any(|s| s.has(RST) && s.dst == CLIENT && s.dst_port == 40000),
        "an RST to the client: {:?}",
        out.lan
    );
}
