//! One service address, two ports (HTTP and HTTPS, issue 18): one engine
//! accepts a SYN to either port — from its spare listeners, through the
//! half-open bound and through SYN cookies alike — tells the service which
//! port each connection reached, and refuses any other port with an RST
//! as before.

use std::time::{Duration, Instant};

use hotpair_stack::engine::{CookieKey, Engine, Frame, Role};
use hotpair_stack::seg::{self, Seg, ACK, RST, SYN};
use hotpair_stack::{Admission, StackConfig, SynCookies};
use smoltcp::wire::EthernetAddress;

mod common;
use common::{Plain, CLIENT, CLIENT_MAC, NODE_MAC, VIP};
const HTTP: u16 = 80;
const HTTPS: u16 = 443;

/// Per accepted connection: the client port, the port it reached and
/// whether it is a shadow.
fn accepted(n: &Node) -> Vec<(u16, u16, bool)> {
    let mut got: Vec<_> = n
        .service
        .accepted
        .iter()
        .map(|i| (i.remote.port, i.local_port, i.shadow))
        .collect();
    got.sort_unstable();
    got
}

fn config(max_half_open: usize, cookies: bool) -> StackConfig {
    StackConfig {
        port: HTTP,
        alt_port: Some(HTTPS),
        admission: Admission {
            max_half_open,
            max_per_source: 64,
            syn_cookies: cookies.then(|| SynCookies {
                key: CookieKey([0x42; 32]),
                send: true,
                wall_start: Duration::from_secs(1_800_000_000),
            }),
            ..common::admission(64)
        },
        seed: 7,
        ..common::config(64, 4096, 4096)
    }
}

fn segment(src_port: u16, dst_port: u16, seq: u32, ack: u32, flags: u8) -> Frame {
    let f = seg::build(
        CLIENT_MAC, NODE_MAC, CLIENT, VIP, src_port, dst_port, seq, ack, flags, 65535,
    );
    common::finish(f, &[], &[])
}

struct Node {
    engine: Engine<()>,
    service: Plain,
    now: Instant,
}

impl Node {
    fn new(cfg: StackConfig, mode: Role) -> Self {
        #[allow(clippy::disallowed_methods)] // a test's origin of time
        let now = Instant::now();
        let mut n = Node {
            engine: Engine::new(cfg, mode, now),
            service: common::quiet(),
            now,
        };
        // The client asks who has the address: its MAC is known, so the
        // SYN-ACKs can go out at once.
        n.run(vec![Frame::copy_from(&hotpair_stack::arp::request_to(
            CLIENT_MAC,
            CLIENT,
            EthernetAddress::BROADCAST,
            VIP,
        ))]);
        n
    }

    /// Feed frames, run a few rounds, return the TCP segments sent.
    fn run(&mut self, frames: Vec<Frame>) -> Vec<Seg> {
        for f in frames {
            self.engine.handle_lan_frame(f);
        }
        let sent = common::rounds(&mut self.engine, &mut self.service, &mut self.now, 6);
        common::segments(&sent)
    }
}

/// The SYN-ACK sent to client port `port`, if any.
fn syn_ack_to(out: &[Seg], port: u16) -> Option<Seg> {
    out.iter()
        .find(|s| s.dst_port == port && s.has(SYN) && s.has(ACK))
        .copied()
}

#[test]
fn a_syn_to_either_port_is_accepted_on_that_port_and_another_port_is_refused() {
    let mut n = Node::new(config(8, false), Role::Simplex);
    // One client port to both service ports at once (other ISNs), and a
    // second client port to HTTPS: three connections.
    let out = n.run(vec![
        segment(40_000, HTTP, 1_000, 0, SYN),
        segment(40_000, HTTPS, 9_000, 0, SYN),
        segment(40_001, HTTPS, 5_000, 0, SYN),
        segment(40_002, 8080, 7_000, 0, SYN),
    ]);
    let synacks: Vec<(u16, u16)> = out
        .iter()
        .filter(|s| s.has(SYN) && s.has(ACK))
        .map(|s| (s.src_port, s.dst_port))
        .collect();
    assert_eq!(synacks.len(), 3, "one SYN-ACK per served port: {synacks:?}");
    for want in [(HTTP, 40_000), (HTTPS, 40_000), (HTTPS, 40_001)] {
        assert!(synacks.contains(&want), "no SYN-ACK {want:?}: {synacks:?}");
    }
    // Port 8080 is not served: an RST, as for any port before.
    let rst = out
        .iter()
        .find(|s| s.dst_port == 40_002)
        .expect("an answer to the SYN for port 8080");
    assert!(rst.has(RST), "port 8080 refused with an RST: {rst:?}");
    assert_eq!(rst.src_port, 8080);

    // The handshakes complete; each connection knows its port.
    let acks: Vec<Frame> = [
        (40_000, HTTP, 1_000),
        (40_000, HTTPS, 9_000),
        (40_001, HTTPS, 5_000),
    ]
    .iter()
    .map(|&(cp, sp, isn)| {
        let sa = out
            .iter()
            .find(|s| s.src_port == sp && s.dst_port == cp && s.has(SYN))
            .expect("its SYN-ACK");
        segment(cp, sp, isn + 1, sa.seq.wrapping_add(1), ACK)
    })
    .collect();
    n.run(acks);
    let got = accepted(&n);
    assert_eq!(
        got,
        vec![
            (40_000, HTTP, false),
            (40_000, HTTPS, false),
            (40_001, HTTPS, false)
        ]
    );
    assert_eq!(n.engine.connections(), 3);
}

#[test]
fn the_half_open_bound_is_one_for_both_ports() {
    // Two half-open at most, whichever port: the third SYN drops the
    // oldest handshake (no cookies), as with one port.
    let mut n = Node::new(config(2, false), Role::Simplex);
    n.run(vec![segment(41_000, HTTP, 1, 0, SYN)]);
    n.run(vec![segment(41_001, HTTPS, 2, 0, SYN)]);
    assert_eq!(n.engine.stats().half_open, 2);
    let out = n.run(vec![segment(41_002, HTTPS, 3, 0, SYN)]);
    assert!(syn_ack_to(&out, 41_002).is_some(), "{out:?}");
    let st = n.engine.stats();
    assert_eq!(st.half_open, 2);
    assert_eq!(st.half_open_evicted, 1);
}

#[test]
fn a_syn_cookie_opens_a_connection_on_the_port_it_was_made_for() {
    // One half-open slot: the second SYN is answered with a cookie.
    let mut n = Node::new(config(1, true), Role::Simplex);
    let out = n.run(vec![segment(42_000, HTTP, 100, 0, SYN)]);
    assert!(syn_ack_to(&out, 42_000).is_some());
    let out = n.run(vec![segment(42_001, HTTPS, 500, 0, SYN)]);
    let cookie = syn_ack_to(&out, 42_001).expect("a cookie SYN-ACK");
    assert_eq!(cookie.src_port, HTTPS, "the cookie's SYN-ACK is from 443");
    assert_eq!(n.engine.stats().syn_cookies_sent, 1);
    n.run(vec![segment(
        42_001,
        HTTPS,
        501,
        cookie.seq.wrapping_add(1),
        ACK,
    )]);
    assert_eq!(n.engine.stats().syn_cookies_validated, 1);
    assert_eq!(accepted(&n), vec![(42_001, HTTPS, false)]);
}

#[test]
fn an_owner_node_shadows_a_connection_on_either_port() {
    let mut n = Node::new(config(8, false), Role::Owner);
    // The primary's ISNs are unknown here: the client's ACKs carry them
    // (the shadow learns its offset from them).
    let out = n.run(vec![
        segment(43_000, HTTP, 10, 0, SYN),
        segment(43_001, HTTPS, 20, 0, SYN),
    ]);
    // The shadow's SYN-ACKs are observed, never sent.
    assert!(out.iter().all(|s| !(s.has(SYN) && s.has(ACK))), "{out:?}");
    n.run(vec![
        segment(43_000, HTTP, 11, 777_001, ACK),
        segment(43_001, HTTPS, 21, 888_001, ACK),
    ]);
    let got = accepted(&n);
    assert_eq!(got, vec![(43_000, HTTP, true), (43_001, HTTPS, true)]);
    // Both SYNs and ACKs went on to the primary.
    let mut fwd = Vec::new();
    while let Some(f) = n.engine.poll_forward() {
        fwd.push(seg::parse(f.data()).expect("a forwarded segment"));
    }
    for port in [HTTP, HTTPS] {
        assert!(
            fwd.iter().any(|s| s.dst_port == port && s.has(SYN)),
            "the SYN to {port} forwarded: {fwd:?}"
        );
    }
}
