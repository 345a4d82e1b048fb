//! SYN cookies at the half-open bound: a legitimate handshake completes
//! however many spoofed SYNs fill the table, a bad cookie is dropped and
//! counted (never answered), below the bound nothing changes, and on a
//! pair the primary opens the cookie's connection from the ACK its owner
//! forwards — the same connection (name, sequence numbers) on both.

mod common;

use std::time::{Duration, Instant};

use common::{hello, segment_with as segment, Plain, CLIENT};
use hotpair_stack::engine::{ConnKey, CookieKey, Engine, Frame, Role};
use hotpair_stack::seg::{self, Seg, ACK, RST, SYN};
use hotpair_stack::{Admission, StackConfig, SynCookies};
use smoltcp::socket::tcp;
use smoltcp::wire::{Ipv4Address, TcpPacket};

const MAX_HALF_OPEN: usize = 8;
const KEY: CookieKey = CookieKey([0x5a; 32]);

/// A SYN as Linux sends it: MSS 1460, SACK permitted, window scale 7.
fn syn(src: Ipv4Address, port: u16, isn: u32) -> Frame {
    segment(
        src,
        port,
        isn,
        0,
        SYN,
        &[2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7, 1, 1],
        b"",
    )
}

/// Writes back what it reads, upper-cased.
fn echo(s: &mut tcp::Socket<'_>) {
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = s.recv_slice(&mut buf) {
        let _ = s.send_slice(&buf[..n].to_ascii_uppercase());
    }
}

/// What the service was told of each connection it accepted: its name and
/// whether it is a shadow.
fn accepted(n: &Node) -> Vec<(ConnKey, bool)> {
    n.service
        .accepted
        .iter()
        .map(|i| (i.key, i.shadow))
        .collect()
}

struct Node {
    engine: Engine<()>,
    service: Plain,
    now: Instant,
}

impl Node {
    fn new(mode: Role, cookies: bool) -> Self {
        let now = Instant::now();
        let cfg = StackConfig {
            admission: Admission {
                max_half_open: MAX_HALF_OPEN,
                max_per_source: 64,
                // The key either way: a node that sends none still
                // checks its peer's.
                syn_cookies: Some(SynCookies {
                    key: KEY,
                    send: cookies,
                    // The same wall clock on every node of a test.
                    wall_start: Duration::from_secs(1_800_000_000),
                }),
                ..common::admission(64)
            },
            seed: 11,
            ..common::config(64, 128 * 1024, 65536)
        };
        Node {
            engine: Engine::new(cfg, mode, now),
            service: Plain::new(echo),
            now,
        }
    }

    /// Feed LAN frames, run a few rounds; the frames it sent to the LAN.
    fn lan(&mut self, frames: Vec<Frame>) -> Vec<Frame> {
        for f in frames {
            self.engine.handle_lan_frame(f);
        }
        self.rounds()
    }

    /// Feed frames forwarded by an owner (primary mode).
    fn peer(&mut self, frames: Vec<Frame>) -> Vec<Frame> {
        for f in frames {
            self.engine.handle_peer_frame(f);
        }
        self.rounds()
    }

    fn rounds(&mut self) -> Vec<Frame> {
        common::rounds(&mut self.engine, &mut self.service, &mut self.now, 6)
    }

    fn forwarded(&mut self) -> Vec<Frame> {
        std::iter::from_fn(|| self.engine.poll_forward()).collect()
    }

    /// Fill the half-open table with SYNs from sources that never answer.
    fn flood(&mut self, n: u16) -> Vec<Frame> {
        let mut out = Vec::new();
        for i in 0..n {
            // On the LAN: the owner's shadow answers (into the void) and
            // forwards a SYN only if it knows the source's MAC.
            let src = Ipv4Address::new(10, 0, 0, (i % 100) as u8 + 150);
            out.extend(self.lan(vec![syn(src, 20_000 + i, u32::from(i) * 7919)]));
        }
        out
    }

    /// Past the half-open bound, a SYN from CLIENT:`port` (ISN `isn`): the
    /// cookie its SYN-ACK carries.
    fn cookie_at_the_bound(&mut self, port: u16, isn: u32) -> u32 {
        self.flood(MAX_HALF_OPEN as u16 + 1);
        let out = self.lan(vec![hello(CLIENT), syn(CLIENT, port, isn)]);
        tcp_to(&out, CLIENT, port)[0].0.seq
    }
}

fn tcp_to(frames: &[Frame], dst: Ipv4Address, port: u16) -> Vec<(Seg, Frame)> {
    frames
        .iter()
        .filter_map(|f| seg::parse(f.data()).map(|s| (s, f.clone())))
        .filter(|(s, _)| s.dst == dst && s.dst_port == port)
        .collect()
}

/// The one segment to CLIENT:40000 in `out` that carries data (panics
/// unless there is exactly one).
fn data_reply(out: &[Frame]) -> (Seg, Frame) {
    let replies = tcp_to(out, CLIENT, 40_000);
    let mut data: Vec<_> = replies.iter().filter(|(s, _)| s.payload_len > 0).collect();
    assert_eq!(data.len(), 1, "{replies:?}");
    data.remove(0).clone()
}

/// The options smoltcp reads from a SYN-ACK: (MSS, window scale, SACK).
fn syn_ack_options(f: &Frame) -> (Option<u16>, Option<u8>, bool) {
    let ip = smoltcp::wire::Ipv4Packet::new_checked(&f.data()[14..]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    let repr_opts = tcp.options();
    let (mut mss, mut ws, mut sack) = (None, None, false);
    let mut opts = repr_opts;
    while !opts.is_empty() {
        let (rest, opt) = smoltcp::wire::TcpOption::parse(opts).unwrap();
        match opt {
            smoltcp::wire::TcpOption::MaxSegmentSize(m) => mss = Some(m),
            smoltcp::wire::TcpOption::WindowScale(w) => ws = Some(w),
            smoltcp::wire::TcpOption::SackPermitted => sack = true,
            smoltcp::wire::TcpOption::EndOfList => break,
            _ => {}
        }
        opts = rest;
    }
    (mss, ws, sack)
}

#[test]
fn a_legitimate_handshake_completes_while_spoofed_syns_fill_the_table() {
    let mut n = Node::new(Role::Simplex, true);
    n.flood(MAX_HALF_OPEN as u16 + 200);
    let st = n.engine.stats();
    assert_eq!(st.half_open, MAX_HALF_OPEN);
    assert_eq!(
        st.syn_cookies_sent, 200,
        "every SYN beyond the bound got a cookie"
    );
    assert_eq!(
        st.half_open_evicted, 0,
        "nothing queued is dropped for them"
    );
    // A source off the LAN, with no gateway configured: no route, no answer.
    let far = Ipv4Address::new(192, 0, 2, 1);
    assert!(tcp_to(&n.lan(vec![syn(far, 1234, 5)]), far, 1234).is_empty());
    assert_eq!(n.engine.stats().syn_cookies_unroutable, 1);

    let out = n.lan(vec![hello(CLIENT), syn(CLIENT, 40_000, 77)]);
    let answers = tcp_to(&out, CLIENT, 40_000);
    assert_eq!(answers.len(), 1, "one SYN-ACK");
    let (sa, f) = &answers[0];
    assert!(sa.has(SYN) && sa.has(ACK));
    assert_eq!(sa.ack, 78);
    // A cookie keeps no option but the MSS: no window scaling, no SACK.
    assert_eq!(syn_ack_options(f), (Some(1460), None, false));
    assert_eq!(n.engine.stats().syn_cookies_sent, 201);
    let cookie = sa.seq;

    // The client's ACK opens the connection; its request is answered in
    // the cookie's sequence space.
    let out = n.lan(vec![
        segment(CLIENT, 40_000, 78, cookie.wrapping_add(1), ACK, &[], b""),
        segment(
            CLIENT,
            40_000,
            78,
            cookie.wrapping_add(1),
            ACK,
            &[],
            b"hello",
        ),
    ]);
    let st = n.engine.stats();
    assert_eq!((st.syn_cookies_validated, st.accepted), (1, 1));
    assert_eq!(
        accepted(&n),
        vec![(
            ConnKey {
                client_ip: CLIENT,
                client_port: 40_000,
                client_isn: 77
            },
            false
        )]
    );
    let replies = tcp_to(&out, CLIENT, 40_000);
    let (s, f) = data_reply(&out);
    assert_eq!((s.seq, s.ack), (cookie.wrapping_add(1), 83));
    assert_eq!(&f.data()[s.off.payload..s.off.end], b"HELLO");
    // Without window scaling the window is at most 64 KiB − 1, unscaled.
    assert!(replies.iter().all(|(s, _)| !s.has(RST)));
}

#[test]
fn a_bad_cookie_is_dropped_and_counted_never_answered() {
    let mut n = Node::new(Role::Simplex, true);
    let cookie = n.cookie_at_the_bound(40_001, 500);
    let forged = vec![
        // Off by one.
        segment(CLIENT, 40_001, 501, cookie.wrapping_add(2), ACK, &[], b""),
        // Another client ISN.
        segment(CLIENT, 40_001, 601, cookie.wrapping_add(1), ACK, &[], b""),
        // Another port.
        segment(CLIENT, 40_002, 501, cookie.wrapping_add(1), ACK, &[], b""),
        // A guess, with data.
        segment(CLIENT, 40_003, 9, 12_345, ACK, &[], b"GET / HTTP/1.1\r\n"),
    ];
    let out = n.lan(forged);
    assert!(
        tcp_to(&out, CLIENT, 40_001).is_empty()
            && tcp_to(&out, CLIENT, 40_002).is_empty()
            && tcp_to(&out, CLIENT, 40_003).is_empty(),
        "a forged ACK is never answered"
    );
    let st = n.engine.stats();
    assert_eq!((st.syn_cookies_rejected, st.syn_cookies_validated), (4, 0));
    assert_eq!(st.accepted, 0);
    // The genuine one still opens.
    n.lan(vec![segment(
        CLIENT,
        40_001,
        501,
        cookie.wrapping_add(1),
        ACK,
        &[],
        b"",
    )]);
    assert_eq!(n.engine.stats().syn_cookies_validated, 1);
    assert_eq!(n.engine.stats().accepted, 1);
}

#[test]
fn below_the_bound_nothing_changes() {
    let mut n = Node::new(Role::Simplex, true);
    let out = n.lan(vec![hello(CLIENT), syn(CLIENT, 40_000, 77)]);
    let answers = tcp_to(&out, CLIENT, 40_000);
    assert_eq!(answers.len(), 1);
    // smoltcp's own SYN-ACK: window scaling and SACK as the client asked.
    let (mss, ws, sack) = syn_ack_options(&answers[0].1);
    assert!(
        mss.is_some() && ws.is_some() && sack,
        "{:?}",
        (mss, ws, sack)
    );
    assert_eq!(n.engine.stats().syn_cookies_sent, 0);
    // An ACK of no connection with no cookie out: answered with an RST,
    // as before cookies, and not counted.
    let out = n.lan(vec![segment(CLIENT, 41_000, 5, 6, ACK, &[], b"")]);
    assert!(tcp_to(&out, CLIENT, 41_000).iter().any(|(s, _)| s.has(RST)));
    assert_eq!(n.engine.stats().syn_cookies_rejected, 0);
}

#[test]
fn without_cookies_the_oldest_handshake_is_dropped_as_before() {
    let mut n = Node::new(Role::Simplex, false);
    n.flood(MAX_HALF_OPEN as u16 + 20);
    let st = n.engine.stats();
    assert_eq!((st.syn_cookies_sent, st.half_open_evicted), (0, 20));
    assert_eq!(st.half_open, MAX_HALF_OPEN);
}

#[test]
fn on_a_pair_the_primary_opens_the_owners_cookie_connection_alike() {
    let mut owner = Node::new(Role::Owner, true);
    let mut primary = Node::new(Role::Primary, true);
    // The flood fills the owner's table; what it forwards fills the
    // primary's.
    owner.flood(MAX_HALF_OPEN as u16 + 30);
    let syns = owner.forwarded();
    assert_eq!(
        syns.len(),
        MAX_HALF_OPEN,
        "SYNs answered by cookies are not forwarded"
    );
    primary.peer(syns);
    assert_eq!(owner.engine.stats().syn_cookies_sent, 30);

    // The owner answers the client's SYN with a cookie, on the LAN.
    let out = owner.lan(vec![hello(CLIENT), syn(CLIENT, 40_000, 1000)]);
    assert!(owner.forwarded().is_empty());
    let answers = tcp_to(&out, CLIENT, 40_000);
    assert_eq!(answers.len(), 1);
    let cookie = answers[0].0.seq;
    let ack = cookie.wrapping_add(1);

    // The ACK: the owner's shadow opens, and the ACK goes on to the
    // primary, which opens the same connection from the same cookie.
    let out = owner.lan(vec![segment(CLIENT, 40_000, 1001, ack, ACK, &[], b"")]);
    assert!(
        tcp_to(&out, CLIENT, 40_000).is_empty(),
        "the shadow is silent"
    );
    let fwd = owner.forwarded();
    assert_eq!(fwd.len(), 1);
    primary.peer(fwd);
    let key = ConnKey {
        client_ip: CLIENT,
        client_port: 40_000,
        client_isn: 1000,
    };
    assert_eq!(accepted(&owner), vec![(key, true)]);
    assert_eq!(accepted(&primary), vec![(key, false)]);
    assert_eq!(primary.engine.stats().syn_cookies_validated, 1);

    // A request: the shadow holds it, then the primary gets it and
    // answers in the cookie's sequence space.
    let out = owner.lan(vec![segment(CLIENT, 40_000, 1001, ack, ACK, &[], b"abc")]);
    assert!(tcp_to(&out, CLIENT, 40_000).is_empty());
    let fwd = owner.forwarded();
    assert_eq!(fwd.len(), 1);
    let out = primary.peer(fwd);
    let (s, _) = data_reply(&out);
    assert_eq!((s.seq, s.ack), (ack, 1004));
    // The client acknowledges the reply (the shadow wrote the same bytes:
    // the echo service stands in for the mirror).
    owner.lan(vec![segment(
        CLIENT,
        40_000,
        1004,
        ack.wrapping_add(3),
        ACK,
        &[],
        b"",
    )]);

    // The primary dies: the owner's shadow speaks for the connection at
    // once, in the same sequence space.
    owner.engine.promote(&mut owner.service, owner.now);
    let out = owner.rounds();
    let acks = tcp_to(&out, CLIENT, 40_000);
    assert!(!acks.is_empty());
    for (s, _) in &acks {
        assert!(!s.has(RST));
        assert_eq!((s.seq, s.ack), (ack.wrapping_add(3), 1004), "{s:?}");
    }
    // And serves the next request itself.
    let out = owner.lan(vec![segment(
        CLIENT,
        40_000,
        1004,
        ack.wrapping_add(3),
        ACK,
        &[],
        b"de",
    )]);
    let (s, _) = data_reply(&out);
    assert_eq!((s.seq, s.ack), (ack.wrapping_add(3), 1006));
}

#[test]
fn the_survivor_opens_a_cookie_its_dead_owner_sent_and_the_owner_drops_forgeries() {
    let mut owner = Node::new(Role::Owner, true);
    let cookie = owner.cookie_at_the_bound(40_000, 1000);

    // A forged ACK at the owner: dropped there, counted, never passed on
    // to the primary (even with pass-through on).
    owner.engine.set_pass_through(true);
    owner.forwarded();
    let out = owner.lan(vec![segment(CLIENT, 40_005, 1, 2, ACK, &[], b"")]);
    assert!(tcp_to(&out, CLIENT, 40_005).is_empty());
    assert!(owner.forwarded().is_empty());
    let st = owner.engine.stats();
    assert_eq!((st.syn_cookies_rejected, st.passed_through), (1, 0));

    // The owner dies before the client's ACK; the primary took the address
    // over and serves alone: the ACK reaches it from the LAN, and its key
    // is the owner's.
    let mut survivor = Node::new(Role::Simplex, true);
    let out = survivor.lan(vec![
        hello(CLIENT),
        segment(
            CLIENT,
            40_000,
            1001,
            cookie.wrapping_add(1),
            ACK,
            &[],
            b"xy",
        ),
    ]);
    assert_eq!(survivor.engine.stats().syn_cookies_validated, 1);
    assert_eq!(survivor.service.accepted.len(), 1);
    let (s, _) = data_reply(&out);
    assert_eq!((s.seq, s.ack), (cookie.wrapping_add(1), 1003));
}

#[test]
fn an_expired_cookie_is_dropped_and_counted() {
    let mut n = Node::new(Role::Simplex, true);
    let cookie = n.cookie_at_the_bound(40_000, 10);
    // Good for 2 ticks of 64 s (2 to 3 minutes): at 200 s it is not.
    n.now += Duration::from_secs(200);
    let out = n.lan(vec![segment(
        CLIENT,
        40_000,
        11,
        cookie.wrapping_add(1),
        ACK,
        &[],
        b"",
    )]);
    assert!(tcp_to(&out, CLIENT, 40_000).is_empty(), "not answered");
    let st = n.engine.stats();
    assert_eq!((st.syn_cookies_rejected, st.accepted), (1, 0));
}
