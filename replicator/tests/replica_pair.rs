//! Scripted tests of two `Replica`s (a primary and an owner node) joined by
//! an in-memory link, with virtual time. Every message really goes through
//! `Msg::encode` → `Decoder` → `handle_peer_msg`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hotpair_replicator::replica::UNIT_CHARGE_BYTES;
use hotpair_replicator::{
    Backpressure, ConnKey, Decoder, Event, Msg, PeerState, ProtocolError, Replica, ReplicaConfig,
    Role, UnitKind,
};

const TIMEOUT: Duration = Duration::from_millis(500);
const NS: Duration = Duration::from_nanos(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The origin of virtual time; everything after is an offset from it.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

fn conn(n: u8) -> ConnKey {
    ConnKey {
        client_ip: hotpair_stack::smoltcp::wire::Ipv4Address::new(192, 0, 2, n),
        client_port: 40_000 + u16::from(n),
        client_isn: 1000 * u32::from(n),
    }
}

fn cfg(role: Role, node: &str) -> ReplicaConfig {
    ReplicaConfig::new(role, node)
}

fn payload(tag: &str) -> Bytes {
    Bytes::from(format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{tag}",
        tag.len()
    ))
}

struct Node {
    r: Replica,
    dec: Decoder,
    /// Events taken so far (when `drain_events`).
    events: Vec<Event>,
    /// Take events after every step. Off: at the owner node, `Logged`
    /// events stay in the replica, so acks are delayed.
    drain_events: bool,
    errors: Vec<ProtocolError>,
}

impl Node {
    fn new(cfg: ReplicaConfig, now: Instant) -> Self {
        Self {
            r: Replica::new(cfg, now),
            dec: Decoder::new(),
            events: Vec::new(),
            drain_events: true,
            errors: Vec::new(),
        }
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Sends everything queued; returns whether anything was.
    fn transmit(&mut self, wire: &mut Vec<u8>, cut: bool) -> bool {
        let mut any = false;
        while let Some(msg) = self.r.poll_transmit() {
            any = true;
            if !cut {
                msg.encode(7, wire).expect("replica emits valid messages");
            }
        }
        any
    }

    fn deliver(&mut self, wire: &mut Vec<u8>, now: Instant) -> bool {
        if wire.is_empty() {
            return false;
        }
        // Feed in two pieces to exercise reassembly.
        let bytes = std::mem::take(wire);
        let (a, b) = bytes.split_at(bytes.len() / 2);
        for piece in [a, b] {
            self.dec.feed(piece);
            while let Some((ch, msg)) = self.dec.next().expect("replica emits valid bytes") {
                assert_eq!(ch, 7, "the channel is carried as sent");
                if let Err(e) = self.r.handle_peer_msg(msg, now) {
                    self.errors.push(e);
                }
            }
        }
        true
    }

    fn drain(&mut self) -> bool {
        if !self.drain_events {
            return false;
        }
        let mut any = false;
        while let Some(e) = self.r.poll_event() {
            any = true;
            self.events.push(e);
        }
        any
    }
}

/// A primary and an owner node on one in-memory link (quinn-proto's `Pair`).
struct Pair {
    t0: Instant,
    now: Instant,
    p: Node,
    i: Node,
    /// Bytes in flight, owner → primary and primary → owner.
    to_p: Vec<u8>,
    to_i: Vec<u8>,
    /// Hold a direction: bytes wait in flight.
    hold_to_p: bool,
    hold_to_i: bool,
    /// The link is cut: everything sent is lost.
    cut: bool,
}

impl Pair {
    fn with(pcfg: ReplicaConfig, icfg: ReplicaConfig) -> Self {
        let t0 = origin();
        Self {
            t0,
            now: t0,
            p: Node::new(pcfg, t0),
            i: Node::new(icfg, t0),
            to_p: Vec::new(),
            to_i: Vec::new(),
            hold_to_p: false,
            hold_to_i: false,
            cut: false,
        }
    }

    fn new() -> Self {
        Self::with(cfg(Role::Primary, "alpha"), cfg(Role::Owner, "beta"))
    }

    /// A pair that has exchanged Hellos, with the `PeerUp` events taken.
    fn connected() -> Self {
        let mut pair = Self::new();
        pair.connect();
        assert!(matches!(pair.p.take_events()[..], [Event::PeerUp { .. }]));
        assert!(matches!(pair.i.take_events()[..], [Event::PeerUp { .. }]));
        pair
    }

    fn at(&self, d: Duration) -> Instant {
        self.t0 + d
    }

    /// A fresh link: both sides `handle_connected`, new decoders.
    fn connect(&mut self) {
        self.to_p.clear();
        self.to_i.clear();
        self.p.dec = Decoder::new();
        self.i.dec = Decoder::new();
        self.cut = false;
        self.p.r.handle_connected(self.now);
        self.i.r.handle_connected(self.now);
        self.drive();
    }

    /// Exchanges messages and takes events until nothing moves.
    fn drive(&mut self) {
        loop {
            let mut progress = false;
            progress |= self.p.transmit(&mut self.to_i, self.cut);
            progress |= self.i.transmit(&mut self.to_p, self.cut);
            if !self.hold_to_p {
                progress |= self.p.deliver(&mut self.to_p, self.now);
            }
            if !self.hold_to_i {
                progress |= self.i.deliver(&mut self.to_i, self.now);
            }
            progress |= self.p.drain();
            progress |= self.i.drain();
            if !progress {
                return;
            }
        }
    }

    /// Runs every timer due up to `t`, in order, then sets the clock to `t`.
    fn advance_to(&mut self, t: Instant) {
        loop {
            let next = [self.p.r.poll_timeout(), self.i.r.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(n) if n <= t => {
                    self.now = self.now.max(n);
                    self.p.r.handle_timeout(self.now);
                    self.i.r.handle_timeout(self.now);
                    self.drive();
                }
                _ => break,
            }
        }
        self.now = t;
        self.drive();
    }

    fn log(&mut self, c: ConnKey, index: u64, tag: &str) -> u64 {
        self.p
            .r
            .log_unit(c, index, UnitKind::Final, 100 * index, false, payload(tag))
            .expect("log_unit")
    }

    fn no_errors(&self) {
        assert!(self.p.errors.is_empty(), "primary: {:?}", self.p.errors);
        assert!(self.i.errors.is_empty(), "owner: {:?}", self.i.errors);
    }
}

fn releases(events: &[Event]) -> Vec<(ConnKey, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Release { conn, seq } => Some((*conn, *seq)),
            _ => None,
        })
        .collect()
}

fn logged(events: &[Event]) -> Vec<(ConnKey, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Logged(hotpair_replicator::wire::Unit { conn, seq, .. }) => Some((*conn, *seq)),
            _ => None,
        })
        .collect()
}

fn of(list: &[(ConnKey, u64)], c: ConnKey) -> Vec<u64> {
    list.iter()
        .filter(|(k, _)| *k == c)
        .map(|(_, s)| *s)
        .collect()
}

// ---- handshake -------------------------------------------------------------

#[test]
fn hello_exchange_brings_both_peers_up() {
    let mut pair = Pair::new();
    assert_eq!(pair.p.r.peer_state(), PeerState::Down);
    // With no link session the only timer is the end of the cold-start wait.
    assert_eq!(
        pair.p.r.poll_timeout(),
        Some(pair.at(hotpair_replicator::replica::DEFAULT_COLD_START_WAIT))
    );
    pair.connect();
    assert_eq!(
        pair.p.take_events(),
        [Event::PeerUp {
            node: "beta".into(),
            mac: [0; 6]
        }]
    );
    assert_eq!(
        pair.i.take_events(),
        [Event::PeerUp {
            node: "alpha".into(),
            mac: [0; 6]
        }]
    );
    assert_eq!(pair.p.r.peer_state(), PeerState::Up);
    assert_eq!(pair.i.r.peer_state(), PeerState::Up);
    assert_eq!(pair.p.r.role(), Role::Primary);
    assert_eq!(pair.i.r.role(), Role::Owner);
    assert_eq!(pair.p.r.stats().peer_node.as_deref(), Some("beta"));
    assert_eq!(pair.p.r.poll_timeout(), Some(pair.at(ms(100))));
    pair.no_errors();
}

#[test]
fn hello_is_the_first_message_sent() {
    let t0 = origin();
    let mut r = Replica::new(cfg(Role::Owner, "beta"), t0);
    r.handle_connected(t0);
    r.forward_frame(Bytes::from_static(b"frame")).unwrap();
    r.handle_timeout(t0 + ms(100)); // heartbeat due
    assert!(matches!(
        r.poll_transmit(),
        Some(Msg::Hello {
            role: Role::Owner,
            epoch: 0,
            ..
        })
    ));
    // Then whether it reaches the service LAN.
    assert_eq!(r.poll_transmit(), Some(Msg::Lan { up: true }));
    assert_eq!(r.poll_transmit(), Some(Msg::Heartbeat { seq: 0 }));
    assert!(matches!(r.poll_transmit(), Some(Msg::Frame { .. })));
    assert_eq!(r.poll_transmit(), None);
    assert_eq!(r.peer_state(), PeerState::Handshaking);
}

// ---- reply logging ---------------------------------------------------------

#[test]
fn units_logged_acked_released_in_order() {
    let mut pair = Pair::connected();
    let (a, b) = (conn(1), conn(2));
    for i in 0..3 {
        assert_eq!(pair.log(a, i, &format!("a{i}")), i);
        assert_eq!(pair.log(b, i, &format!("b{i}")), i);
    }
    assert_eq!(pair.p.r.stats().unacked_units, 6);
    pair.drive();
    pair.no_errors();

    let ing = pair.i.take_events();
    assert_eq!(
        logged(&ing),
        [(a, 0), (b, 0), (a, 1), (b, 1), (a, 2), (b, 2)],
        "owner sees units in logging order"
    );
    let Event::Logged(hotpair_replicator::wire::Unit {
        conn: c,
        seq,
        index,
        kind,
        input_end,
        close_after,
        local: false,
        payload: body,
    }) = &ing[2]
    else {
        panic!("not logged: {:?}", ing[2]);
    };
    assert_eq!(
        (*c, *seq, *index, *kind, *input_end, *close_after),
        (a, 1, 1, UnitKind::Final, 100, false)
    );
    assert_eq!(body, &payload("a1"));

    let rel = releases(&pair.p.take_events());
    assert_eq!(rel.len(), 6);
    assert_eq!(of(&rel, a), [0, 1, 2]);
    assert_eq!(of(&rel, b), [0, 1, 2]);
    let st = pair.p.r.stats();
    assert_eq!((st.unacked_units, st.unacked_bytes), (0, 0));
    assert_eq!((st.logged_units, st.released_units), (6, 6));
    assert_eq!(pair.i.r.stats().mirrored_units, 6);
    assert_eq!(
        pair.i
            .r
            .conn_stats(&a)
            .map(|s| (s.next_seq, s.pending_units)),
        Some((3, 0))
    );
}

#[test]
fn units_held_while_acks_delayed() {
    let mut pair = Pair::connected();
    let a = conn(1);
    pair.hold_to_p = true; // acks stay in flight
    for i in 0..3 {
        pair.log(a, i, "x");
    }
    pair.drive();
    assert_eq!(logged(&pair.i.take_events()), [(a, 0), (a, 1), (a, 2)]);
    assert!(releases(&pair.p.take_events()).is_empty());
    let held = pair.p.r.conn_stats(&a).unwrap();
    assert_eq!(held.pending_units, 3);
    assert_eq!(
        pair.p.r.stats().unacked_bytes,
        3 * payload("x").len() as u64
    );

    // Time passes (heartbeats still flow owner-ward, acks are held) but no
    // release happens; within the timeout nobody dies.
    pair.advance_to(pair.at(ms(300)));
    assert!(releases(&pair.p.take_events()).is_empty());

    pair.hold_to_p = false;
    pair.drive();
    assert_eq!(releases(&pair.p.take_events()), [(a, 0), (a, 1), (a, 2)]);
    pair.no_errors();
}

#[test]
fn ack_waits_until_the_owner_caller_takes_the_unit() {
    let mut pair = Pair::connected();
    let a = conn(1);
    pair.i.drain_events = false;
    pair.log(a, 0, "x");
    pair.log(a, 1, "y");
    pair.drive();
    assert!(pair.p.take_events().is_empty());
    assert_eq!(pair.i.r.stats().unpolled_units, 2);
    assert_eq!(pair.i.r.stats().acks_sent, 0);

    // Take one event: exactly that unit is acknowledged and released.
    assert!(matches!(
        pair.i.r.poll_event(),
        Some(Event::Logged(hotpair_replicator::wire::Unit { seq: 0, .. }))
    ));
    pair.drive();
    assert_eq!(releases(&pair.p.take_events()), [(a, 0)]);

    pair.i.drain_events = true;
    pair.drive();
    assert_eq!(releases(&pair.p.take_events()), [(a, 1)]);
    pair.no_errors();
}

#[test]
fn frames_reach_the_primary_in_order() {
    let mut pair = Pair::connected();
    for n in 0..5u8 {
        pair.i.r.forward_frame(Bytes::from(vec![n; 60])).unwrap();
    }
    pair.drive();
    let frames: Vec<Bytes> = pair
        .p
        .take_events()
        .into_iter()
        .map(|e| match e {
            Event::Frame { frame } => frame,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        frames,
        (0..5u8)
            .map(|n| Bytes::from(vec![n; 60]))
            .collect::<Vec<_>>()
    );
    assert_eq!(pair.i.r.stats().forwarded_frames, 5);
    assert_eq!(pair.p.r.stats().received_frames, 5);
}

// ---- failure detection -----------------------------------------------------

#[test]
fn heartbeats_keep_an_idle_pair_alive() {
    let mut pair = Pair::connected();
    pair.advance_to(pair.at(ms(10_000)));
    assert!(pair.p.take_events().is_empty());
    assert!(pair.i.take_events().is_empty());
    let (p, i) = (pair.p.r.stats(), pair.i.r.stats());
    assert_eq!(p.heartbeats_sent, 100);
    assert_eq!(i.heartbeats_received, 100);
    assert_eq!(p.peer, PeerState::Up);
    pair.no_errors();
}

#[test]
fn silence_kills_exactly_at_the_timeout_and_primary_releases_held_units() {
    let mut pair = Pair::connected();
    let (a, b) = (conn(1), conn(2));
    pair.i.drain_events = false; // no acks: units stay held
    pair.log(a, 0, "a0");
    pair.log(b, 0, "b0");
    pair.log(a, 1, "a1");
    pair.drive();
    // Last heard at t0 (the Hellos). Now the link goes silent.
    pair.cut = true;
    pair.advance_to(pair.at(TIMEOUT - NS));
    assert!(
        pair.p.take_events().is_empty(),
        "not dead before the timeout"
    );
    assert_eq!(pair.p.r.role(), Role::Primary);
    assert_eq!(pair.i.r.role(), Role::Owner);

    pair.advance_to(pair.at(TIMEOUT));
    assert_eq!(
        pair.p.take_events(),
        [
            Event::PeerDead {
                since_heard: TIMEOUT,
                left: false
            },
            Event::Release { conn: a, seq: 0 },
            Event::Release { conn: a, seq: 1 },
            Event::Release { conn: b, seq: 0 },
        ]
    );
    assert_eq!(pair.p.r.role(), Role::Simplex);
    assert_eq!(pair.p.r.peer_state(), PeerState::Down);
    assert_eq!(pair.p.r.stats().unacked_units, 0);
    assert_eq!(pair.p.r.stats().takeovers, 1);
    assert_eq!(pair.p.r.poll_timeout(), None);

    // The owner node hands over what it logged, then the takeover trigger.
    pair.i.drain_events = true;
    pair.drive();
    let ing = pair.i.take_events();
    assert_eq!(logged(&ing), [(a, 0), (b, 0), (a, 1)]);
    assert_eq!(
        ing.last(),
        Some(&Event::PeerDead {
            since_heard: TIMEOUT,
            left: false
        })
    );
    assert_eq!(pair.i.r.role(), Role::Simplex);
    assert_eq!(
        pair.i.r.forward_frame(Bytes::from_static(b"f")),
        Err(Backpressure::NoPeer)
    );

    // Simplex now: new units are released at once, seq continues.
    assert_eq!(pair.log(a, 2, "a2"), 2);
    assert_eq!(pair.p.take_events(), []);
    pair.drive();
    assert_eq!(releases(&pair.p.take_events()), [(a, 2)]);
    pair.no_errors();
}

#[test]
fn last_heard_counts_from_the_last_message() {
    let mut pair = Pair::connected();
    // Normal traffic up to 1 s (heartbeats at every 100 ms), then silence.
    pair.advance_to(pair.at(ms(1000)));
    pair.cut = true;
    pair.advance_to(pair.at(ms(1500) - NS));
    assert!(pair.p.take_events().is_empty());
    pair.advance_to(pair.at(ms(1500)));
    assert_eq!(
        pair.p.take_events(),
        [Event::PeerDead {
            since_heard: TIMEOUT,
            left: false
        }]
    );
    assert_eq!(
        pair.i.take_events(),
        [Event::PeerDead {
            since_heard: TIMEOUT,
            left: false
        }]
    );
}

#[test]
fn one_way_silence_only_kills_the_deaf_side() {
    let mut pair = Pair::connected();
    pair.hold_to_p = true; // the primary hears nothing, the owner still does
    pair.advance_to(pair.at(TIMEOUT));
    assert!(matches!(pair.p.take_events()[..], [Event::PeerDead { .. }]));
    assert!(pair.i.take_events().is_empty());
}

#[test]
fn link_loss_is_immediate_death() {
    let mut pair = Pair::connected();
    let a = conn(1);
    pair.hold_to_p = true;
    pair.log(a, 0, "a0");
    pair.log(a, 1, "a1");
    pair.drive();
    pair.advance_to(pair.at(ms(120)));
    pair.p.r.handle_link_lost(pair.now);
    pair.i.r.handle_link_lost(pair.now);
    pair.drive();
    assert_eq!(
        pair.p.take_events(),
        [
            Event::PeerDead {
                since_heard: ms(120),
                left: false
            },
            Event::Release { conn: a, seq: 0 },
            Event::Release { conn: a, seq: 1 },
        ]
    );
    let ing = pair.i.take_events();
    assert!(matches!(
        ing.last(),
        Some(Event::PeerDead { since_heard, .. }) if *since_heard == ms(20)
    ));
    // Messages after the link is gone are refused; a second loss is a no-op.
    // (The primary heard nothing since the Hellos; the owner heard the
    // primary's 100 ms heartbeat.)
    assert_eq!(
        pair.p
            .r
            .handle_peer_msg(Msg::Heartbeat { seq: 9 }, pair.now),
        Err(ProtocolError::NotConnected)
    );
    pair.p.r.handle_link_lost(pair.now);
    assert_eq!(pair.p.r.poll_event(), None);
}

#[test]
fn failed_connect_attempt_makes_a_lone_node_simplex() {
    let t0 = origin();
    let mut r = Replica::new(cfg(Role::Owner, "beta"), t0);
    r.handle_link_lost(t0 + ms(50));
    assert_eq!(
        r.poll_event(),
        Some(Event::PeerDead {
            since_heard: ms(50),
            left: false
        })
    );
    assert_eq!(r.role(), Role::Simplex);
}

#[test]
fn handshake_timeout_is_death() {
    let mut pair = Pair::new();
    pair.hold_to_p = true;
    pair.hold_to_i = true;
    pair.connect();
    assert_eq!(pair.p.r.peer_state(), PeerState::Handshaking);
    pair.advance_to(pair.at(TIMEOUT));
    assert!(matches!(pair.p.take_events()[..], [Event::PeerDead { .. }]));
    assert!(matches!(pair.i.take_events()[..], [Event::PeerDead { .. }]));
}

// ---- simplex ---------------------------------------------------------------

#[test]
fn simplex_releases_immediately() {
    let t0 = origin();
    let mut r = Replica::new(cfg(Role::Simplex, "solo"), t0);
    let a = conn(1);
    for i in 0..3 {
        let seq = r
            .log_unit(a, i, UnitKind::Final, 0, i == 2, payload("s"))
            .unwrap();
        assert_eq!(seq, i);
        assert_eq!(r.poll_event(), Some(Event::Release { conn: a, seq }));
    }
    r.handle_connected(t0); // a simplex node ignores links
    assert_eq!(r.poll_transmit(), None);
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(r.role(), Role::Simplex);
    assert_eq!(
        r.forward_frame(Bytes::from_static(b"f")),
        Err(Backpressure::NoPeer)
    );
    let st = r.stats();
    assert_eq!((st.unreplicated_units, st.logged_units), (3, 0));
    assert_eq!(st.refusals, 1);
}

#[test]
fn primary_without_a_link_releases_immediately() {
    let t0 = origin();
    let mut r = Replica::new(cfg(Role::Primary, "alpha"), t0);
    let a = conn(1);
    assert_eq!(
        r.log_unit(a, 0, UnitKind::Interim, 5, false, payload("c")),
        Ok(0)
    );
    assert_eq!(r.poll_event(), Some(Event::Release { conn: a, seq: 0 }));
    assert!(!r.conn_stats(&a).unwrap().replicated);
}

#[test]
fn primary_holds_units_during_the_handshake() {
    let mut pair = Pair::new();
    pair.hold_to_p = true;
    pair.connect();
    let a = conn(1);
    pair.log(a, 0, "early");
    pair.drive();
    assert!(releases(&pair.p.take_events()).is_empty());
    pair.hold_to_p = false;
    pair.drive();
    assert_eq!(releases(&pair.p.take_events()), [(a, 0)]);
    pair.no_errors();
}

// ---- backpressure ----------------------------------------------------------

#[test]
fn backpressure_at_max_unacked_bytes() {
    let len = payload("x").len() as u64;
    let limit = 2 * (len + UNIT_CHARGE_BYTES) + 10;
    let mut pcfg = cfg(Role::Primary, "alpha");
    let mut icfg = cfg(Role::Owner, "beta");
    pcfg.max_unacked_bytes = limit;
    icfg.max_unacked_bytes = limit;
    let mut pair = Pair::with(pcfg, icfg);
    pair.connect();
    pair.i.drain_events = false;
    let a = conn(1);
    pair.log(a, 0, "x");
    pair.log(a, 1, "x");
    assert_eq!(
        pair.p
            .r
            .log_unit(a, 2, UnitKind::Final, 0, false, payload("x")),
        Err(Backpressure::UnackedBytes { limit })
    );
    // Refused for a new connection too, and nothing was created for it.
    assert!(pair
        .p
        .r
        .log_unit(conn(2), 0, UnitKind::Final, 0, false, payload("x"))
        .is_err());
    assert_eq!(pair.p.r.conn_stats(&conn(2)), None);
    assert_eq!(pair.p.r.stats().refusals, 2);
    pair.drive();

    // The owner caller takes the units → acks → room again.
    pair.i.drain_events = true;
    pair.drive();
    assert_eq!(releases(&pair.p.take_events()), [(a, 0), (a, 1)]);
    assert_eq!(pair.log(a, 2, "x"), 2);

    // A unit larger than the whole window goes when nothing is outstanding.
    pair.drive();
    let big = Bytes::from(vec![b'z'; 3 * limit as usize]);
    assert_eq!(
        pair.p
            .r
            .log_unit(a, 3, UnitKind::Final, 0, false, big.clone()),
        Ok(3)
    );
    pair.drive();
    assert_eq!(releases(&pair.p.take_events()), [(a, 2), (a, 3)]);
    pair.no_errors();
}

#[test]
fn backpressure_at_max_forward_queue() {
    let mut pcfg = cfg(Role::Primary, "alpha");
    let mut icfg = cfg(Role::Owner, "beta");
    pcfg.max_forward_queue = 4;
    icfg.max_forward_queue = 4;
    let mut pair = Pair::with(pcfg, icfg);
    pair.connect();

    // Owner: frames.
    for _ in 0..4 {
        pair.i
            .r
            .forward_frame(Bytes::from_static(b"frame"))
            .unwrap();
    }
    assert_eq!(
        pair.i.r.forward_frame(Bytes::from_static(b"frame")),
        Err(Backpressure::QueueFull { limit: 4 })
    );
    assert_eq!(pair.i.r.stats().queued_msgs, 4);
    pair.drive();
    pair.i
        .r
        .forward_frame(Bytes::from_static(b"frame"))
        .unwrap();

    // Primary: units.
    let a = conn(1);
    for i in 0..4 {
        pair.log(a, i, "u");
    }
    assert_eq!(
        pair.p
            .r
            .log_unit(a, 4, UnitKind::Final, 0, false, payload("u")),
        Err(Backpressure::QueueFull { limit: 4 })
    );
    pair.drive();
    assert_eq!(pair.log(a, 4, "u"), 4);
    pair.drive();
    assert_eq!(of(&releases(&pair.p.take_events()), a), [0, 1, 2, 3, 4]);
    pair.no_errors();
}

#[test]
fn frame_events_are_bounded_when_the_primary_caller_does_not_drain() {
    let mut pcfg = cfg(Role::Primary, "alpha");
    pcfg.max_forward_queue = 3;
    let mut pair = Pair::with(pcfg, cfg(Role::Owner, "beta"));
    pair.connect();
    pair.p.drain_events = false;
    for _ in 0..4 {
        pair.i
            .r
            .forward_frame(Bytes::from_static(b"frame"))
            .unwrap();
    }
    pair.drive();
    assert_eq!(pair.p.errors, [ProtocolError::EventBacklog { limit: 3 }]);
}

#[test]
fn too_large_and_connection_limit() {
    let t0 = origin();
    let mut c = cfg(Role::Simplex, "solo");
    c.max_conns = 2;
    let mut r = Replica::new(c, t0);
    r.log_unit(conn(1), 0, UnitKind::Final, 0, false, payload("1"))
        .unwrap();
    r.log_unit(conn(2), 0, UnitKind::Final, 0, false, payload("2"))
        .unwrap();
    assert_eq!(
        r.log_unit(conn(3), 0, UnitKind::Final, 0, false, payload("3")),
        Err(Backpressure::TooManyConns { limit: 2 })
    );
    r.conn_gone(conn(1));
    assert_eq!(
        r.log_unit(conn(3), 0, UnitKind::Final, 0, false, payload("3")),
        Ok(0)
    );
    let huge = Bytes::from(vec![0u8; hotpair_replicator::wire::MAX_UNIT_PAYLOAD + 1]);
    assert!(matches!(
        r.log_unit(conn(3), 1, UnitKind::Final, 0, false, huge),
        Err(Backpressure::TooLarge { .. })
    ));
}

// ---- protocol errors -------------------------------------------------------

fn unit(c: ConnKey, seq: u64, body: &'static [u8]) -> Msg {
    Msg::Unit(hotpair_replicator::wire::Unit {
        conn: c,
        seq,
        index: seq,
        kind: UnitKind::Final,
        input_end: 0,
        close_after: false,
        local: false,
        payload: Bytes::from_static(body),
    })
}

// ---- static content --------------------------------------------------------

#[test]
fn a_local_unit_carries_its_place_and_content_digest_not_its_bytes_and_is_released_by_its_ack() {
    let mut pair = Pair::connected();
    let c = conn(1);
    let logged_seq = pair.log(c, 0, "a logged reply");
    let local_seq = pair
        .p
        .r
        .log_local_unit(c, 1, 250, true, [9; 32])
        .expect("log_local_unit");
    assert_eq!(
        (logged_seq, local_seq),
        (0, 1),
        "one sequence for both kinds"
    );
    pair.drive();
    pair.no_errors();
    let ing = pair.i.take_events();
    assert!(
        matches!(
            &ing[1],
            Event::Logged(hotpair_replicator::wire::Unit { conn, seq: 1, index: 1, kind: UnitKind::Final, input_end: 250, close_after: true, local: true, payload })
                if *conn == c && payload[..] == [9; 32]
        ),
        "{:?}",
        ing[1]
    );
    // The ack that taking the event sent releases it (sync-static waits
    // for exactly this).
    assert_eq!(of(&releases(&pair.p.take_events()), c), vec![0, 1]);
}

#[test]
fn routes_reach_the_peer_as_an_event() {
    let mut pair = Pair::connected();
    let routes = vec![hotpair_replicator::wire::RouteDigest {
        prefix: "/static/".into(),
        policy: 1,
        digest: [9; 32],
    }];
    pair.i.r.send_routes(routes.clone());
    pair.drive();
    pair.no_errors();
    assert_eq!(pair.p.take_events(), vec![Event::PeerRoutes { routes }]);
}

#[test]
fn frame_unit_ack_and_conn_gone_to_the_wrong_role() {
    let mut pair = Pair::connected();
    let now = pair.now;
    let frame = Msg::Frame {
        frame: Bytes::from_static(b"f"),
    };
    assert_eq!(
        pair.i.r.handle_peer_msg(frame, now),
        Err(ProtocolError::UnexpectedMsg {
            msg: "Frame",
            role: Role::Owner
        })
    );
    assert!(matches!(
        pair.i.r.handle_peer_msg(
            Msg::UnitAck {
                conn: conn(1),
                seq: 0
            },
            now
        ),
        Err(ProtocolError::UnexpectedMsg { msg: "UnitAck", .. })
    ));
    assert!(matches!(
        pair.p.r.handle_peer_msg(unit(conn(1), 0, b"x"), now),
        Err(ProtocolError::UnexpectedMsg { msg: "Unit", .. })
    ));
    assert!(matches!(
        pair.p
            .r
            .handle_peer_msg(Msg::ConnGone { conn: conn(1) }, now),
        Err(ProtocolError::UnexpectedMsg {
            msg: "ConnGone",
            ..
        })
    ));
}

#[test]
fn ack_for_unknown_seq_is_an_error() {
    let mut pair = Pair::connected();
    let a = conn(1);
    pair.hold_to_p = true;
    pair.log(a, 0, "x");
    pair.drive();
    let now = pair.now;
    let p = &mut pair.p.r;
    // Never sent.
    assert_eq!(
        p.handle_peer_msg(Msg::UnitAck { conn: a, seq: 1 }, now),
        Err(ProtocolError::UnknownAck { conn: a, seq: 1 })
    );
    // Good, then duplicate.
    p.handle_peer_msg(Msg::UnitAck { conn: a, seq: 0 }, now)
        .unwrap();
    assert_eq!(
        p.handle_peer_msg(Msg::UnitAck { conn: a, seq: 0 }, now),
        Err(ProtocolError::UnknownAck { conn: a, seq: 0 })
    );
    // A connection never seen (or already gone here) is a stale ack: ignored.
    p.handle_peer_msg(
        Msg::UnitAck {
            conn: conn(9),
            seq: 0,
        },
        now,
    )
    .unwrap();
    assert_eq!(p.stats().stale_acks, 1);
}

#[test]
fn ack_for_an_unreplicated_connection_is_an_error() {
    let mut pair = Pair::new();
    let a = conn(1);
    pair.log(a, 0, "before the link"); // released at once, unreplicated
    pair.connect();
    let now = pair.now;
    assert_eq!(
        pair.p
            .r
            .handle_peer_msg(Msg::UnitAck { conn: a, seq: 0 }, now),
        Err(ProtocolError::UnknownAck { conn: a, seq: 0 })
    );
}

#[test]
fn seq_gap_is_an_error() {
    let mut pair = Pair::connected();
    let now = pair.now;
    let i = &mut pair.i.r;
    assert_eq!(
        i.handle_peer_msg(unit(conn(1), 1, b"x"), now),
        Err(ProtocolError::SeqGap {
            conn: conn(1),
            expected: 0,
            got: 1
        })
    );
    i.handle_peer_msg(unit(conn(1), 0, b"x"), now).unwrap();
    assert_eq!(
        i.handle_peer_msg(unit(conn(1), 2, b"x"), now),
        Err(ProtocolError::SeqGap {
            conn: conn(1),
            expected: 1,
            got: 2
        })
    );
    assert!(matches!(
        i.handle_peer_msg(unit(conn(1), 0, b"x"), now),
        Err(ProtocolError::SeqGap { .. })
    ));
}

#[test]
fn bad_hellos_are_errors() {
    let t0 = origin();
    let hello = |version, role| Msg::Hello {
        version,
        node: "peer".into(),
        role,
        epoch: 0,
        mac: [0; 6],
    };
    let fresh = || {
        let mut r = Replica::new(cfg(Role::Primary, "alpha"), t0);
        r.handle_connected(t0);
        r
    };

    let mut r = Replica::new(cfg(Role::Primary, "alpha"), t0);
    assert_eq!(
        r.handle_peer_msg(hello(hotpair_replicator::wire::VERSION, Role::Owner), t0),
        Err(ProtocolError::NotConnected)
    );

    assert_eq!(
        fresh().handle_peer_msg(hello(hotpair_replicator::wire::VERSION, Role::Primary), t0),
        Err(ProtocolError::RoleMismatch {
            ours: Role::Primary,
            theirs: Role::Primary
        })
    );
    assert!(matches!(
        fresh().handle_peer_msg(hello(hotpair_replicator::wire::VERSION, Role::Simplex), t0),
        Err(ProtocolError::RoleMismatch { .. })
    ));
    assert_eq!(
        fresh().handle_peer_msg(hello(1, Role::Owner), t0),
        Err(ProtocolError::BadVersion { got: 1 })
    );
    assert_eq!(
        fresh().handle_peer_msg(Msg::Heartbeat { seq: 0 }, t0),
        Err(ProtocolError::HelloExpected { got: "Heartbeat" })
    );
    let mut r = fresh();
    r.handle_peer_msg(hello(hotpair_replicator::wire::VERSION, Role::Owner), t0)
        .unwrap();
    assert_eq!(
        r.handle_peer_msg(hello(hotpair_replicator::wire::VERSION, Role::Owner), t0),
        Err(ProtocolError::DuplicateHello)
    );
}

#[test]
fn owner_enforces_the_window() {
    let mut icfg = cfg(Role::Owner, "beta");
    icfg.max_unacked_bytes = 2 * UNIT_CHARGE_BYTES + 2;
    let mut pair = Pair::with(cfg(Role::Primary, "alpha"), icfg);
    pair.connect();
    pair.i.drain_events = false;
    let now = pair.now;
    let i = &mut pair.i.r;
    i.handle_peer_msg(unit(conn(1), 0, b"a"), now).unwrap();
    i.handle_peer_msg(unit(conn(2), 0, b"b"), now).unwrap();
    assert!(matches!(
        i.handle_peer_msg(unit(conn(1), 1, b"c"), now),
        Err(ProtocolError::WindowExceeded { .. })
    ));
    // Taking an event frees its share.
    assert!(i.poll_event().is_some());
    i.handle_peer_msg(unit(conn(1), 1, b"c"), now).unwrap();
}

#[test]
fn owner_enforces_the_connection_limit() {
    let mut icfg = cfg(Role::Owner, "beta");
    icfg.max_conns = 1;
    let mut pair = Pair::with(cfg(Role::Primary, "alpha"), icfg);
    pair.connect();
    let now = pair.now;
    let i = &mut pair.i.r;
    i.handle_peer_msg(unit(conn(1), 0, b"a"), now).unwrap();
    assert_eq!(
        i.handle_peer_msg(unit(conn(2), 0, b"b"), now),
        Err(ProtocolError::TooManyConns { limit: 1 })
    );
    i.handle_peer_msg(Msg::ConnGone { conn: conn(1) }, now)
        .unwrap();
    i.handle_peer_msg(unit(conn(2), 0, b"b"), now).unwrap();
}

// ---- connection end --------------------------------------------------------

#[test]
fn conn_gone_at_the_primary_reaches_the_owner() {
    let mut pair = Pair::connected();
    let (a, b) = (conn(1), conn(2));
    pair.hold_to_p = true; // hold the acks
    pair.log(a, 0, "a0");
    pair.log(b, 0, "b0");
    pair.drive();
    assert_eq!(logged(&pair.i.take_events()), [(a, 0), (b, 0)]);
    assert_eq!(pair.p.r.stats().unacked_units, 2);

    pair.p.r.conn_gone(a);
    assert_eq!(pair.p.r.stats().unacked_units, 1, "a's held unit dropped");
    assert_eq!(pair.p.r.conn_stats(&a), None);
    pair.drive();
    assert_eq!(pair.i.take_events(), [Event::ConnGone { conn: a }]);
    assert_eq!(pair.i.r.conn_stats(&a), None);

    // The ack for a0 was already in flight: ignored as stale, b0 released,
    // a0 never released.
    pair.hold_to_p = false;
    pair.drive();
    assert_eq!(releases(&pair.p.take_events()), [(b, 0)]);
    assert_eq!(pair.p.r.stats().stale_acks, 1);
    pair.no_errors();
}

#[test]
fn conn_gone_at_the_owner_acks_and_swallows_later_units() {
    let mut pair = Pair::connected();
    let a = conn(1);
    pair.i.drain_events = false;
    pair.log(a, 0, "a0");
    pair.drive();
    assert!(releases(&pair.p.take_events()).is_empty());

    // The shadow connection ended here: everything received is acked.
    pair.i.r.conn_gone(a);
    assert!(pair.i.r.conn_stats(&a).unwrap().gone_local);
    assert_eq!(pair.i.r.stats().unpolled_units, 0);
    pair.drive();
    assert_eq!(releases(&pair.p.take_events()), [(a, 0)]);

    // Later units are acked without an event.
    pair.log(a, 1, "a1");
    pair.drive();
    assert_eq!(releases(&pair.p.take_events()), [(a, 1)]);

    // The Logged event queued before conn_gone is still handed over, and
    // taking it sends no second (lower) ack.
    pair.i.drain_events = true;
    pair.drive();
    assert_eq!(logged(&pair.i.take_events()), [(a, 0)]);
    pair.p.r.conn_gone(a);
    pair.drive();
    assert_eq!(pair.i.take_events(), [Event::ConnGone { conn: a }]);
    assert_eq!(pair.i.r.stats().conns, 0);
    assert_eq!(pair.p.r.stats().conns, 0);
    pair.no_errors();
}

// ---- rejoin ----------------------------------------------------------------

#[test]
fn rejoin_replicates_new_connections_only() {
    let mut pair = Pair::connected();
    let (old, new) = (conn(1), conn(2));
    pair.i.drain_events = false;
    pair.log(old, 0, "o0"); // held; the owner caller has not taken it
    pair.drive();
    pair.cut = true;
    pair.advance_to(pair.at(TIMEOUT));
    assert_eq!(
        releases(&pair.p.take_events()),
        [(old, 0)],
        "released on death"
    );

    // The link comes back: roles are restored.
    pair.advance_to(pair.at(ms(2000)));
    pair.i.drain_events = true;
    pair.connect();
    assert_eq!(pair.p.r.role(), Role::Primary);
    assert_eq!(pair.i.r.role(), Role::Owner);
    let ing = pair.i.take_events();
    // The stale Logged, then the death, then the new session; taking the
    // stale event must not ack into the new session.
    assert!(matches!(
        ing[..],
        [
            Event::Logged(hotpair_replicator::wire::Unit { .. }),
            Event::PeerDead { .. },
            Event::PeerUp { .. }
        ]
    ));
    assert_eq!(pair.i.r.stats().acks_sent, 0);
    assert!(matches!(pair.p.take_events()[..], [Event::PeerUp { .. }]));

    // The old connection stays unreplicated: released at once.
    assert_eq!(pair.log(old, 1, "o1"), 1);
    assert!(!pair.p.r.conn_stats(&old).unwrap().replicated);
    // A new one is replicated.
    pair.hold_to_p = true;
    assert_eq!(pair.log(new, 0, "n0"), 0);
    pair.drive();
    assert_eq!(releases(&pair.p.take_events()), [(old, 1)]);
    assert_eq!(logged(&pair.i.take_events()), [(new, 0)]);
    pair.hold_to_p = false;
    pair.drive();
    assert_eq!(releases(&pair.p.take_events()), [(new, 0)]);
    assert_eq!(pair.i.r.poll_transmit(), None);
    assert_eq!(pair.p.r.stats().takeovers, 1);
    pair.no_errors();
}

#[test]
fn reconnect_while_up_counts_as_link_loss() {
    let mut pair = Pair::connected();
    pair.p.r.handle_connected(pair.now);
    assert!(matches!(
        pair.p.r.poll_event(),
        Some(Event::PeerDead { .. })
    ));
    assert_eq!(pair.p.r.peer_state(), PeerState::Handshaking);
    assert_eq!(pair.p.r.role(), Role::Primary);
}

// ---- randomized ------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random operations on a live pair with small limits. Checks: no protocol
/// errors; per connection, `Logged` seqs are consecutive and `Release` seqs
/// strictly increase; every unit logged and not dropped by `conn_gone` is
/// released exactly once by the end.
#[test]
fn random_operations_keep_the_invariants() {
    for seed in 1..=40u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut pcfg = cfg(Role::Primary, "alpha");
        let mut icfg = cfg(Role::Owner, "beta");
        pcfg.max_unacked_bytes = 2000;
        icfg.max_unacked_bytes = 2000;
        pcfg.max_forward_queue = 8;
        icfg.max_forward_queue = 8;
        pcfg.max_conns = 4;
        icfg.max_conns = 4;
        let mut pair = Pair::with(pcfg, icfg);
        pair.connect();
        // (conn, seq) logged and still expected to be released.
        let mut expected: Vec<(ConnKey, u64)> = Vec::new();
        let mut released: Vec<(ConnKey, u64)> = Vec::new();
        let mut mirrored: Vec<(ConnKey, u64)> = Vec::new();
        let mut gen = [0u8; 6]; // connection incarnation per slot
        for _ in 0..300 {
            let slot = rng.below(6) as usize;
            let c = ConnKey {
                client_isn: u32::from(gen[slot]),
                ..conn(slot as u8)
            };
            match rng.below(10) {
                0..=3 => {
                    let body = Bytes::from(vec![b'r'; rng.below(300) as usize]);
                    if let Ok(seq) = pair.p.r.log_unit(c, 0, UnitKind::Final, 0, false, body) {
                        expected.push((c, seq));
                    }
                }
                4 => {
                    pair.p.r.conn_gone(c);
                    expected.retain(|(k, _)| *k != c);
                    gen[slot] = gen[slot].wrapping_add(1);
                }
                5 => pair.i.r.conn_gone(c),
                6 => {
                    let _ = pair.i.r.forward_frame(Bytes::from_static(b"frame"));
                }
                7 => pair.i.drain_events = !pair.i.drain_events,
                8 => pair.hold_to_p = !pair.hold_to_p,
                _ => {
                    // Time passes only while the primary hears its peer, so
                    // nobody is declared dead.
                    if !pair.hold_to_p {
                        let t = pair.now + ms(rng.below(250));
                        pair.advance_to(t);
                    }
                }
            }
            pair.drive();
            for e in pair.p.take_events() {
                if let Event::Release { conn, seq } = e {
                    released.push((conn, seq));
                }
            }
            mirrored.extend(logged(&pair.i.take_events()));
        }
        pair.hold_to_p = false;
        pair.i.drain_events = true;
        pair.drive();
        released.extend(releases(&pair.p.take_events()));
        mirrored.extend(logged(&pair.i.take_events()));
        assert!(pair.p.errors.is_empty(), "seed {seed}: {:?}", pair.p.errors);
        assert!(pair.i.errors.is_empty(), "seed {seed}: {:?}", pair.i.errors);
        assert_eq!(pair.p.r.stats().unacked_units, 0, "seed {seed}");

        let mut keys: Vec<ConnKey> = released.iter().map(|(k, _)| *k).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let seqs = of(&released, k);
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "seed {seed}: {seqs:?}"
            );
        }
        for &(k, s) in &expected {
            assert!(
                released.contains(&(k, s)),
                "seed {seed}: {k} {s} not released"
            );
        }
        let mut keys: Vec<ConnKey> = mirrored.iter().map(|(k, _)| *k).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let seqs = of(&mirrored, k);
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "seed {seed}: {seqs:?}"
            );
        }
    }
}

#[test]
fn bytes_of_an_unfinished_message_keep_the_peer_alive() {
    // The primary's messages are stuck behind a large reply: none completes
    // for a whole second, but bytes keep arriving (the shell reports them).
    let mut pair = Pair::connected();
    pair.hold_to_i = true;
    for ms in (100..=1000).step_by(100) {
        let t = pair.at(Duration::from_millis(ms));
        pair.i.r.handle_link_progress(t);
        pair.advance_to(t);
    }
    assert!(
        !pair
            .i
            .take_events()
            .iter()
            .any(|e| matches!(e, Event::PeerDead { .. })),
        "a peer whose bytes keep coming is alive"
    );
    // Without progress, the same silence is a death.
    let mut pair = Pair::connected();
    pair.hold_to_i = true;
    pair.advance_to(pair.at(Duration::from_millis(1000)));
    assert!(pair
        .i
        .take_events()
        .iter()
        .any(|e| matches!(e, Event::PeerDead { .. })));
}

/// Every event the replica has now.
fn events_of(r: &mut Replica) -> Vec<Event> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

#[test]
fn a_node_whose_peer_never_comes_serves_alone_after_the_cold_start_wait() {
    let t0 = origin();
    for role in [Role::Primary, Role::Owner] {
        let mut c = cfg(role, "n");
        c.cold_start_wait = ms(2000);
        let mut r = Replica::new(c, t0);
        // No link session: the only timer is the end of the wait.
        assert_eq!(r.poll_timeout(), Some(t0 + ms(2000)), "{role:?}");
        r.handle_timeout(t0 + ms(2000) - NS);
        assert!(
            events_of(&mut r).is_empty(),
            "{role:?}: serving alone early"
        );
        assert_eq!(r.role(), role);
        r.handle_timeout(t0 + ms(2000));
        assert_eq!(
            events_of(&mut r),
            vec![Event::PeerAbsent { waited: ms(2000) }],
            "{role:?}"
        );
        assert_eq!(r.role(), Role::Simplex);
        assert_eq!(r.poll_timeout(), None, "{role:?}: the wait fires once");
        // The peer comes at last: the configured role is back, and the
        // `Hello` says this node served alone (epoch 1), so a booting owner
        // probes before it announces.
        r.handle_connected(t0 + ms(5000));
        assert_eq!(r.role(), role);
        match r.poll_transmit() {
            Some(Msg::Hello { epoch, .. }) => assert_eq!(epoch, 1, "{role:?}"),
            other => panic!("{role:?}: first message {other:?}"),
        }
    }
}

#[test]
fn a_link_session_before_the_cold_start_wait_ends_it() {
    let t0 = origin();
    let mut c = cfg(Role::Primary, "n");
    c.cold_start_wait = ms(2000);
    let mut r = Replica::new(c, t0);
    r.handle_connected(t0 + ms(100));
    // Its loss is a death, as ever; no `PeerAbsent` then or later.
    r.handle_link_lost(t0 + ms(200));
    r.handle_timeout(t0 + ms(10_000));
    let ev = events_of(&mut r);
    assert!(
        matches!(ev.as_slice(), [Event::PeerDead { left: false, .. }]),
        "{ev:?}"
    );
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn a_cold_start_wait_below_the_heartbeat_timeout_is_refused() {
    let mut c = cfg(Role::Primary, "n");
    c.cold_start_wait = c.heartbeat_timeout - NS;
    assert_eq!(
        c.validate(),
        Err(hotpair_replicator::replica::ConfigError::ColdStartBelowTimeout)
    );
}

#[test]
fn frames_queued_for_the_link_are_bounded_in_bytes() {
    let mut c = cfg(Role::Owner, "beta");
    c.max_forward_bytes = 200_000;
    let mut pair = Pair::with(cfg(Role::Primary, "alpha"), c);
    pair.connect();
    let frame = Bytes::from(vec![0u8; 60_000]);
    // Three fit (180,000 bytes), the fourth would pass the bound.
    for _ in 0..3 {
        pair.i.r.forward_frame(frame.clone()).unwrap();
    }
    assert_eq!(
        pair.i.r.forward_frame(frame.clone()),
        Err(Backpressure::ForwardBytes { limit: 200_000 })
    );
    // Sent on the link: room again.
    while pair.i.r.poll_transmit().is_some() {}
    pair.i.r.forward_frame(frame).unwrap();
}
