//! `hotpair_replicator::Replica` operation sequences.
//!
//! Two modes, chosen by the first byte:
//! - **alone**: one replica (any role, small limits) against a hostile
//!   peer: link up/down and progress, arbitrary and near-valid peer messages, local
//!   `log_unit` / `forward_frame` / `conn_gone`, time, `poll_*` in any
//!   order. Checked: never panics; every transmitted message encodes and
//!   decodes back; a session starts with `Hello`; bounded queues stay
//!   bounded (link queue, connection table, unacknowledged window, the
//!   events a peer can cause); releases per connection in `seq` order, each
//!   of a `seq` that `log_unit` returned, at most once.
//! - **pair**: an honest primary and owner over an ordered link (through
//!   the wire codec), with fuzz-chosen delivery, cuts and reconnects, time
//!   and drains. Checked besides the above: no protocol error ever (but the
//!   documented event backlog when events are not drained); the owner
//!   mirrors exactly the units the primary logged; frames reach the
//!   primary in order, unaltered; and once everything is delivered and
//!   drained, every unit logged is released exactly once (unless its
//!   connection was reported gone).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hotpair_replicator::wire::{Decoder, Msg, RouteDigest};
use hotpair_replicator::{
    ConnKey, Event, PeerState, ProtocolError, Replica, ReplicaConfig, Role, UnitKind,
};
use hotpair_stack::smoltcp::wire::Ipv4Address;

use crate::Input;

/// Operations one fuzz input drives at most (each run stays short).
const MAX_OPS: u64 = 500;
const CONNS: usize = 4;

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let cfg = |inp: &mut Input<'_>, role| {
        let interval = Duration::from_millis(1 + inp.below(100) as u64);
        ReplicaConfig {
            role,
            node: format!("n{}", inp.u8()),
            heartbeat_interval: interval,
            heartbeat_timeout: interval * (2 + inp.below(4) as u32),
            max_unacked_bytes: 1 + inp.below(1024) as u64,
            max_forward_queue: 1 + inp.below(8),
            max_conns: 1 + inp.below(4),
            cold_start_wait: interval * 12,
            mac: [2, 0, 0, 0, 0, 1],
            // A few frames: the byte bound is reached as often as the count.
            max_forward_bytes: 200_000,
        }
    };
    if mode & 1 == 0 {
        let role = [Role::Simplex, Role::Primary, Role::Owner][inp.below(3)];
        let c = cfg(&mut inp, role);
        alone(c, inp);
    } else {
        let c = cfg(&mut inp, Role::Primary);
        pair(c, inp);
    }
}

/// Connection keys: a few slots, each with a generation bumped when the
/// connection is reported gone, so a key is never reused.
struct Keys {
    generation: [u32; CONNS],
}

impl Keys {
    fn key(&self, slot: usize) -> ConnKey {
        ConnKey {
            client_ip: Ipv4Address::new(10, 0, 0, 1 + slot as u8),
            client_port: 40000 + slot as u16,
            client_isn: self.generation[slot],
        }
    }
    fn pick(&self, inp: &mut Input<'_>) -> ConnKey {
        self.key(inp.below(CONNS))
    }
}

/// Checks on one replica's outputs.
struct Observer {
    cfg: ReplicaConfig,
    /// Per connection: the next seq `log_unit` will return, and the last
    /// released seq.
    issued: BTreeMap<ConnKey, u64>,
    released: BTreeMap<ConnKey, u64>,
    released_set: BTreeSet<(ConnKey, u64)>,
    /// Last mirrored seq per connection (owner).
    mirrored: BTreeMap<ConnKey, u64>,
    sessions_since_drain: usize,
    /// `conn_gone` calls since the events were last drained: each frees
    /// its connection's share of the window while its events stay queued.
    gones_since_drain: usize,
    hello_due: bool,
    /// `Routes` messages the caller queued with `send_routes` and not yet
    /// transmitted: not bounded by the replica (the node sends its routes
    /// once per session), so not counted against its limits.
    routes_queued: usize,
    /// Keys reused after `conn_gone`: their releases are not checked.
    reused: BTreeSet<ConnKey>,
}

impl Observer {
    fn new(cfg: ReplicaConfig) -> Self {
        Observer {
            cfg,
            issued: BTreeMap::new(),
            released: BTreeMap::new(),
            released_set: BTreeSet::new(),
            mirrored: BTreeMap::new(),
            sessions_since_drain: 0,
            gones_since_drain: 0,
            hello_due: false,
            routes_queued: 0,
            reused: BTreeSet::new(),
        }
    }

    fn connected(&mut self, r: &mut Replica, now: Instant) {
        r.handle_connected(now);
        if self.cfg.role != Role::Simplex {
            self.hello_due = true;
            self.sessions_since_drain += 1;
        }
    }

    fn send_routes(&mut self, r: &mut Replica, routes: Vec<RouteDigest>) {
        r.send_routes(routes);
        self.routes_queued += 1;
    }

    fn conn_gone(&mut self, r: &mut Replica, conn: ConnKey) {
        r.conn_gone(conn);
        self.gones_since_drain += 1;
    }

    fn logged(&mut self, conn: ConnKey, seq: u64) {
        let next = self.issued.entry(conn).or_insert(0);
        assert_eq!(seq, *next, "log_unit seq for {conn}");
        *next += 1;
    }

    /// Bounds that hold after every call.
    fn check(&self, r: &Replica) {
        let s = r.stats();
        let c = &self.cfg;
        assert!(
            s.queued_msgs <= c.max_forward_queue + c.max_conns + self.routes_queued,
            "link queue {} beyond {} + {} (+ {} routes)",
            s.queued_msgs,
            c.max_forward_queue,
            c.max_conns,
            self.routes_queued
        );
        assert!(
            s.conns <= 2 * c.max_conns,
            "{} connections tracked",
            s.conns
        );
        let charge = s.unacked_bytes + 64 * s.unacked_units;
        assert!(
            s.unacked_units <= 1 || charge <= c.max_unacked_bytes,
            "unacked window: {charge} charged, limit {}",
            c.max_unacked_bytes
        );
        assert!(
            s.unpolled_units <= 1 || 64 * s.unpolled_units <= c.max_unacked_bytes,
            "{} unpolled units, window {}",
            s.unpolled_units,
            c.max_unacked_bytes
        );
        if r.peer_state() == PeerState::Down {
            assert_eq!(s.unacked_units, 0, "units held with no session");
        }
    }

    fn transmit(&mut self, r: &mut Replica) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = r.poll_transmit() {
            if std::mem::take(&mut self.hello_due) {
                assert!(
                    matches!(m, Msg::Hello { .. }),
                    "a session starts with Hello"
                );
            }
            let mut bytes = Vec::new();
            m.encode(7, &mut bytes)
                .expect("transmitted messages encode");
            let back = Msg::decode(Bytes::from(bytes)).expect("and decode");
            assert_eq!(back, (7, m.clone()));
            out.push(m);
            assert!(out.len() < 100_000, "poll_transmit never ends");
        }
        self.routes_queued = 0;
        out
    }

    /// Take up to `n` events, checking order and bounds. Returns them.
    fn events(&mut self, r: &mut Replica, n: usize) -> Vec<Event> {
        let mut out = Vec::new();
        let (mut peer_caused, mut logged) = (0, 0);
        // A window per session and per `conn_gone`, and per `ConnGone` from
        // the peer (each frees a connection's share; at most
        // `max_forward_queue` of those wait).
        let c = &self.cfg;
        let per_window = c.max_unacked_bytes / 64 + 1;
        let windows =
            (self.sessions_since_drain + self.gones_since_drain + c.max_forward_queue + 1) as u64;
        crate::trace!("  {:?} events: {:?}", self.cfg.role, r.stats());
        while out.len() < n {
            let Some(e) = r.poll_event() else {
                self.sessions_since_drain = 0;
                self.gones_since_drain = 0;
                break;
            };
            match &e {
                Event::Release { conn, .. } if self.reused.contains(conn) => {}
                Event::Release { conn, seq } => {
                    assert!(
                        *seq < self.issued.get(conn).copied().unwrap_or(0),
                        "release of {conn} seq {seq}, never logged"
                    );
                    if let Some(last) = self.released.get(conn) {
                        assert!(seq > last, "release of {conn} seq {seq} after {last}");
                    }
                    self.released.insert(*conn, *seq);
                    assert!(self.released_set.insert((*conn, *seq)));
                }
                Event::Logged(hotpair_replicator::wire::Unit { conn, seq, .. }) => {
                    logged += 1;
                    let ok = *seq == 0 || self.mirrored.get(conn) == Some(&(seq - 1));
                    assert!(
                        ok,
                        "mirrored {conn} seq {seq} after {:?}",
                        self.mirrored.get(conn)
                    );
                    self.mirrored.insert(*conn, *seq);
                }
                Event::Frame { .. } | Event::ConnGone { .. } | Event::PeerRoutes { .. } => {
                    peer_caused += 1
                }
                Event::PeerUp { .. }
                | Event::PeerDead { .. }
                | Event::PeerAbsent { .. }
                | Event::PeerLeaving => {}
            }
            out.push(e);
        }
        let c = &self.cfg;
        assert!(
            peer_caused <= c.max_forward_queue,
            "{peer_caused} peer events queued, limit {}",
            c.max_forward_queue
        );
        assert!(
            logged <= per_window * windows,
            "{logged} logged events queued over {windows} sessions"
        );
        out
    }
}

fn payload(inp: &mut Input<'_>, tag: u64) -> Bytes {
    let len = match inp.below(3) {
        0 => 0,
        1 => inp.below(64),
        _ => inp.below(1500),
    };
    let mut p = tag.to_be_bytes().to_vec();
    p.resize(len.max(8), b'u');
    p.truncate(len.max(8));
    Bytes::from(p)
}

fn kind(inp: &mut Input<'_>) -> UnitKind {
    if inp.bool() {
        UnitKind::Final
    } else {
        UnitKind::Interim
    }
}

fn advance(inp: &mut Input<'_>, now: &mut Instant) {
    *now += match inp.below(3) {
        0 => Duration::from_millis(u64::from(inp.u8() % 16)),
        1 => Duration::from_millis(u64::from(inp.u8())),
        _ => Duration::from_millis(u64::from(inp.u16())),
    };
}

fn alone(cfg: ReplicaConfig, mut inp: Input<'_>) {
    let mut now = origin();
    let mut r = Replica::new(cfg.clone(), now);
    let mut obs = Observer::new(cfg);
    let mut keys = Keys {
        generation: [0; CONNS],
    };
    for tag in 1..=MAX_OPS {
        let Some(op) = inp.next_op(12) else { break };
        crate::trace!("op {op}: {:?}", r.stats());
        match op {
            0 => obs.connected(&mut r, now),
            1 => r.handle_link_lost(now),
            2..=4 => {
                let msg = hostile(&mut inp, &keys, &r, &obs, tag);
                if r.handle_peer_msg(msg, now).is_err() {
                    // The caller drops the link.
                    r.handle_link_lost(now);
                }
            }
            5 => {
                let conn = keys.pick(&mut inp);
                let (index, kind, end, close) = (inp.u64(), kind(&mut inp), inp.u64(), inp.bool());
                if let Ok(seq) = r.log_unit(conn, index, kind, end, close, payload(&mut inp, tag)) {
                    obs.logged(conn, seq);
                }
            }
            6 => {
                let conn = keys.pick(&mut inp);
                let (index, end, close) = (inp.u64(), inp.u64(), inp.bool());
                if inp.below(4) == 0 {
                    let routes = vec![RouteDigest {
                        prefix: "/".into(),
                        policy: 1,
                        digest: [7; 32],
                    }];
                    obs.send_routes(&mut r, routes);
                } else if let Ok(seq) = r.log_local_unit(conn, index, end, close, [7; 32]) {
                    obs.logged(conn, seq);
                }
            }
            7 => {
                let _ = r.forward_frame(payload(&mut inp, tag));
            }
            8 => {
                let slot = inp.below(CONNS);
                let conn = keys.key(slot);
                obs.conn_gone(&mut r, conn);
                if inp.bool() {
                    keys.generation[slot] += 1;
                } else {
                    // The key may come back as a new connection whose seqs
                    // restart, while releases of the old one are queued.
                    obs.issued.remove(&conn);
                    obs.released.remove(&conn);
                    obs.reused.insert(conn);
                }
            }
            9 => {
                advance(&mut inp, &mut now);
                match inp.below(4) {
                    // Part of a message arrived.
                    0 => r.handle_link_progress(now),
                    1 => r.handle_timeout(now),
                    _ => {
                        if r.poll_timeout().is_some_and(|t| t <= now) {
                            r.handle_timeout(now);
                        }
                    }
                }
            }
            10 => {
                obs.transmit(&mut r);
            }
            _ => {
                let n = inp.below(8);
                obs.events(&mut r, if n == 0 { usize::MAX } else { n });
            }
        }
        obs.check(&r);
    }
    obs.transmit(&mut r);
    obs.events(&mut r, usize::MAX);
}

/// A message from the peer: usually near-valid for the current state.
fn hostile(inp: &mut Input<'_>, keys: &Keys, r: &Replica, obs: &Observer, tag: u64) -> Msg {
    let conn = keys.pick(inp);
    match inp.below(8) {
        0 => {
            let role = match r.config().role {
                Role::Primary => Role::Owner,
                _ => Role::Primary,
            };
            Msg::Hello {
                version: if inp.below(8) == 0 {
                    inp.u8()
                } else {
                    hotpair_replicator::wire::VERSION
                },
                node: "peer".into(),
                role: if inp.below(8) == 0 {
                    Role::Simplex
                } else {
                    role
                },
                epoch: inp.u64(),
                mac: [2, 0, 0, 0, 0, inp.u8()],
            }
        }
        1 => Msg::Heartbeat { seq: inp.u64() },
        2 => Msg::Frame {
            frame: payload(inp, tag),
        },
        3 | 4 => {
            let expected = obs.mirrored.get(&conn).map_or(0, |s| s + 1);
            let seq = match inp.below(4) {
                0 => inp.u64(),
                1 => expected.wrapping_sub(1),
                _ => expected,
            };
            Msg::Unit(hotpair_replicator::wire::Unit {
                conn,
                seq,
                index: inp.u64(),
                kind: kind(inp),
                input_end: inp.u64(),
                close_after: inp.bool(),
                local: false,
                payload: payload(inp, tag),
            })
        }
        5 => {
            let next = obs.issued.get(&conn).copied().unwrap_or(0);
            let seq = match inp.below(3) {
                0 => inp.u64(),
                _ => next.saturating_sub(1 + inp.below(3) as u64),
            };
            Msg::UnitAck { conn, seq }
        }
        6 => match inp.below(4) {
            0 => Msg::Routes {
                routes: vec![RouteDigest {
                    prefix: "/static".into(),
                    policy: inp.below(3) as u8,
                    digest: [inp.u8(); 32],
                }],
            },
            1 => Msg::Unit(hotpair_replicator::wire::Unit {
                conn,
                seq: obs.mirrored.get(&conn).map_or(0, |s| s + 1),
                index: inp.u64(),
                kind: UnitKind::Final,
                input_end: inp.u64(),
                close_after: inp.bool(),
                local: true,
                payload: Bytes::from_static(&[7; 32]),
            }),
            2 => Msg::Lan { up: inp.bool() },
            _ => Msg::ConnGone { conn },
        },
        _ => crate::wire::arbitrary_msg(inp),
    }
}

/// One direction of the link: encoded bytes through a `Decoder`.
#[derive(Default)]
struct Pipe {
    msgs: VecDeque<Vec<u8>>,
}

impl Pipe {
    fn send(&mut self, msgs: Vec<Msg>) {
        for m in msgs {
            let mut b = Vec::new();
            m.encode(1, &mut b).expect("encodes");
            self.msgs.push_back(b);
        }
    }

    /// Up to `n` messages, decoded from the bytes fed in pieces.
    fn recv(&mut self, n: usize, dec: &mut Decoder) -> Vec<Msg> {
        let mut out = Vec::new();
        for _ in 0..n {
            let Some(b) = self.msgs.pop_front() else {
                break;
            };
            for piece in b.chunks(7) {
                dec.feed(piece);
            }
            let (_, m) = dec
                .next()
                .expect("our own encoding decodes")
                .expect("a whole message");
            assert_eq!(dec.buffered(), 0);
            out.push(m);
        }
        out
    }
}

struct Side {
    r: Replica,
    obs: Observer,
    dec: Decoder,
}

fn pair(pcfg: ReplicaConfig, mut inp: Input<'_>) {
    let mut now = origin();
    let icfg = ReplicaConfig {
        role: Role::Owner,
        node: "owner".into(),
        ..pcfg.clone()
    };
    let mut p = Side {
        r: Replica::new(pcfg.clone(), now),
        obs: Observer::new(pcfg),
        dec: Decoder::new(),
    };
    let mut i = Side {
        r: Replica::new(icfg.clone(), now),
        obs: Observer::new(icfg),
        dec: Decoder::new(),
    };
    let mut to_i = Pipe::default();
    let mut to_p = Pipe::default();
    let mut link_up = false;
    let mut keys = Keys {
        generation: [0; CONNS],
    };
    // What the primary logged, by (conn, seq); connections reported gone.
    let mut units: BTreeMap<(ConnKey, u64), Event> = BTreeMap::new();
    let mut gone: BTreeSet<ConnKey> = BTreeSet::new();
    // Frames the owner forwarded, and how far the primary got in them.
    let mut frames: Vec<Bytes> = Vec::new();
    let mut frames_seen = 0usize;

    for tag in 1..=MAX_OPS {
        let Some(op) = inp.next_op(12) else { break };
        crate::trace!("pair op {op}: link {link_up}");
        match op {
            0 => {
                if !link_up {
                    link_up = true;
                    p.obs.connected(&mut p.r, now);
                    i.obs.connected(&mut i.r, now);
                    p.dec = Decoder::new();
                    i.dec = Decoder::new();
                }
            }
            1 => {
                cut(&mut link_up, &mut p, &mut i, &mut to_i, &mut to_p, now);
            }
            2 | 3 => {
                let n = 1 + inp.below(8);
                if !receive(&mut to_i, &mut i, n, now) {
                    cut(&mut link_up, &mut p, &mut i, &mut to_i, &mut to_p, now);
                }
            }
            4 | 5 => {
                let n = 1 + inp.below(8);
                if !receive(&mut to_p, &mut p, n, now) {
                    cut(&mut link_up, &mut p, &mut i, &mut to_i, &mut to_p, now);
                }
            }
            6 => {
                let conn = keys.pick(&mut inp);
                let (index, kind, end, close) = (inp.u64(), kind(&mut inp), inp.u64(), inp.bool());
                let local = inp.below(4) == 0;
                let (kind, payload) = if local {
                    (UnitKind::Final, Bytes::from_static(&[7; 32]))
                } else {
                    (kind, payload(&mut inp, tag))
                };
                let logged = if local {
                    p.r.log_local_unit(conn, index, end, close, [7; 32])
                } else {
                    p.r.log_unit(conn, index, kind, end, close, payload.clone())
                };
                if let Ok(seq) = logged {
                    p.obs.logged(conn, seq);
                    let unit = Event::Logged(hotpair_replicator::wire::Unit {
                        conn,
                        seq,
                        index,
                        kind,
                        input_end: end,
                        close_after: close,
                        local,
                        payload,
                    });
                    units.insert((conn, seq), unit);
                }
            }
            7 => {
                if inp.below(8) == 0 {
                    let routes = vec![RouteDigest {
                        prefix: "/static".into(),
                        policy: inp.below(3) as u8,
                        digest: [inp.u8(); 32],
                    }];
                    if inp.bool() {
                        p.obs.send_routes(&mut p.r, routes);
                    } else {
                        i.obs.send_routes(&mut i.r, routes);
                    }
                } else {
                    let f = payload(&mut inp, tag);
                    if i.r.forward_frame(f.clone()).is_ok() {
                        frames.push(f);
                    }
                }
            }
            8 => {
                let slot = inp.below(CONNS);
                let conn = keys.key(slot);
                if inp.bool() {
                    p.obs.conn_gone(&mut p.r, conn);
                    gone.insert(conn);
                    keys.generation[slot] += 1;
                } else {
                    i.obs.conn_gone(&mut i.r, conn);
                }
            }
            9 => {
                advance(&mut inp, &mut now);
                p.r.handle_timeout(now);
                i.r.handle_timeout(now);
            }
            10 => {
                let n = inp.below(8);
                let evs = p.obs.events(&mut p.r, if n == 0 { usize::MAX } else { n });
                primary_events(&evs, &frames, &mut frames_seen);
            }
            _ => {
                let n = inp.below(8);
                let evs = i.obs.events(&mut i.r, if n == 0 { usize::MAX } else { n });
                owner_events(&evs, &units);
            }
        }
        // The caller's loop: transmit after every call; a side that gave
        // up on its peer drops the link.
        if link_up {
            to_i.send(p.obs.transmit(&mut p.r));
            to_p.send(i.obs.transmit(&mut i.r));
        } else {
            p.obs.transmit(&mut p.r);
            i.obs.transmit(&mut i.r);
        }
        if link_up && (p.r.peer_state() == PeerState::Down || i.r.peer_state() == PeerState::Down) {
            cut(&mut link_up, &mut p, &mut i, &mut to_i, &mut to_p, now);
        }
        p.obs.check(&p.r);
        i.obs.check(&i.r);
    }

    // Settle: deliver and drain everything, time standing still.
    for _ in 0..64 {
        let mut moved = false;
        for m in to_i.recv(usize::MAX, &mut i.dec) {
            moved = true;
            if !deliver(&mut i, m, now) {
                cut(&mut link_up, &mut p, &mut i, &mut to_i, &mut to_p, now);
                break;
            }
        }
        for m in to_p.recv(usize::MAX, &mut p.dec) {
            moved = true;
            if !deliver(&mut p, m, now) {
                cut(&mut link_up, &mut p, &mut i, &mut to_i, &mut to_p, now);
                break;
            }
        }
        let evs = p.obs.events(&mut p.r, usize::MAX);
        moved |= !evs.is_empty();
        primary_events(&evs, &frames, &mut frames_seen);
        let evs = i.obs.events(&mut i.r, usize::MAX);
        moved |= !evs.is_empty();
        owner_events(&evs, &units);
        if link_up {
            to_i.send(p.obs.transmit(&mut p.r));
            to_p.send(i.obs.transmit(&mut i.r));
        }
        if !moved && to_i.msgs.is_empty() && to_p.msgs.is_empty() {
            break;
        }
    }
    // Peer up: everything was acknowledged. Down: everything was released.
    for &(conn, seq) in units.keys() {
        if !gone.contains(&conn) {
            assert!(
                p.obs.released_set.contains(&(conn, seq)),
                "unit {conn} seq {seq} never released (link up: {link_up})"
            );
        }
    }
}

/// Hand a message to a side; false if the link must be dropped.
/// `side` takes up to `n` messages from `pipe`; false: it refused one
/// (the caller drops the link, the rest with it).
fn receive(pipe: &mut Pipe, side: &mut Side, n: usize, now: Instant) -> bool {
    if !pipe.msgs.is_empty() {
        side.r.handle_link_progress(now);
    }
    pipe.recv(n, &mut side.dec)
        .into_iter()
        .all(|m| deliver(side, m, now))
}

fn deliver(side: &mut Side, m: Msg, now: Instant) -> bool {
    match side.r.handle_peer_msg(m, now) {
        Ok(()) => true,
        // Events not drained: the documented refusal; the caller drops
        // the link.
        Err(ProtocolError::EventBacklog { .. }) => false,
        // A side that already declared its peer dead.
        Err(ProtocolError::NotConnected) if side.r.peer_state() == PeerState::Down => false,
        Err(e) => panic!("honest peers, protocol error: {e}"),
    }
}

fn cut(
    link_up: &mut bool,
    p: &mut Side,
    i: &mut Side,
    to_i: &mut Pipe,
    to_p: &mut Pipe,
    now: Instant,
) {
    if *link_up {
        *link_up = false;
        p.r.handle_link_lost(now);
        i.r.handle_link_lost(now);
        to_i.msgs.clear();
        to_p.msgs.clear();
    }
}

fn primary_events(evs: &[Event], frames: &[Bytes], seen: &mut usize) {
    for e in evs {
        crate::trace!("  primary event {e:?}");
        if let Event::Frame { frame } = e {
            // In order, some possibly lost with a cut link, never altered.
            let at = frames[*seen..]
                .iter()
                .position(|f| f == frame)
                .expect("a frame the owner never forwarded, or out of order");
            *seen += at + 1;
        }
    }
}

fn owner_events(evs: &[Event], units: &BTreeMap<(ConnKey, u64), Event>) {
    for e in evs {
        crate::trace!("  owner event {e:?}");
        if let Event::Logged(hotpair_replicator::wire::Unit { conn, seq, .. }) = e {
            let want = units
                .get(&(*conn, *seq))
                .expect("a unit the primary never logged");
            assert_eq!(e, want, "mirrored unit differs from the logged one");
        }
    }
}

/// The only clock read: an origin for synthetic instants.
fn origin() -> Instant {
    Instant::now()
}
