//! The per-node protocol core: [`Replica`].
//!
//! # Protocol
//!
//! 1. When the link comes up each side sends [`Msg::Hello`] first. A primary
//!    accepts only an owner peer and vice versa; the peer is *up* once its
//!    Hello is in.
//! 2. Owner → primary: [`Msg::Frame`] for every client frame.
//! 3. Primary → owner: [`Msg::Unit`] for every output unit, numbered 0, 1, 2…
//!    per connection. The link is ordered, so the owner node rejects a gap.
//! 4. Owner → primary: [`Msg::UnitAck`], cumulative per connection, once
//!    the caller has taken the unit from [`Replica::poll_event`] (so the
//!    owner node never acknowledges bytes it has not yet handed over, and
//!    the primary's unacknowledged limit bounds the owner node's memory too).
//!    The primary then releases the unit ([`Event::Release`]).
//! 5. Primary → owner: [`Msg::ConnGone`] when the primary's connection ended.
//! 6. Both ways: [`Msg::Heartbeat`] every `heartbeat_interval`. Anything heard
//!    from the peer proves it alive.
//!
//! # Failure decisions
//!
//! The failure model is fail-stop. A node declares its peer dead when nothing
//! was heard for `heartbeat_timeout`, or at once when the caller reports the
//! link lost ([`Replica::handle_link_lost`]): a reset or closed kernel TCP
//! link is fast, direct evidence, and waiting out the timeout would only delay
//! the takeover. It then emits [`Event::PeerDead`] and becomes
//! [`Role::Simplex`]; the caller performs the takeover (owner: promote the
//! shadow connections; primary: claim the service address). At the primary
//! every held unit is released at once, in order.
//!
//! **Split brain.** With a single replication link a partition of the link
//! cannot be told apart from the peer's death here: both nodes take over.
//! What ends it is outside this type: the node core's probes before a claim
//! and its watch for the peer's MAC announcing the address (the configured
//! owner keeps it, the other stands down), and the LAN check, which hands
//! the addresses to the node that still reaches clients
//! (docs/replication-protocol.md, "Split brain").
//!
//! # Rejoin
//!
//! A new link session ([`Replica::handle_connected`]) after a takeover
//! restores the configured role. Connections that existed while the node was
//! simplex stay unreplicated (their units are released at once); connections
//! first seen in the new session are replicated. The owner side starts the
//! new session with an empty table.
//!
//! # Where things live
//!
//! This file holds [`Replica`]'s state, its construction and introspection;
//! `vocab` the types it speaks in ([`ReplicaConfig`], [`Event`], the errors,
//! the stats); `link` sessions, the peer's messages, timers and the failure
//! decisions; `primary` logging units and releasing them on acks; `owner`
//! forwarding frames, mirroring units and handing events to the caller.

mod link;
mod owner;
mod primary;
mod queue;
mod vocab;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::detector::FailureDetector;
use crate::wire::Msg;
use crate::{ConnKey, Role};

pub use vocab::{
    Backpressure, ConfigError, ConnStats, Event, PeerState, ProtocolError, ReplicaConfig,
    ReplicaStats, DEFAULT_COLD_START_WAIT, DEFAULT_MAX_CONNS, DEFAULT_MAX_FORWARD_BYTES,
    DEFAULT_MAX_FORWARD_QUEUE, DEFAULT_MAX_UNACKED_BYTES, UNIT_CHARGE_BYTES,
};

/// Primary side of a connection: units this node produces.
#[derive(Debug)]
struct OutConn {
    next_seq: u64,
    held: VecDeque<Held>,
    /// Units go to the peer (created while a session was up). Cleared on
    /// peer death and never set again.
    replicated: bool,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    seq: u64,
    len: u64,
}

/// Owner side of a connection: units mirrored from the primary.
#[derive(Debug)]
struct MirrorConn {
    expected_seq: u64,
    /// Highest seq an ack was queued for.
    acked: Option<u64>,
    gone_local: bool,
    /// Matches the tag of this connection's queued `Logged` events; changed
    /// when those events stop counting against the window.
    incarnation: u64,
    unpolled_units: u64,
    unpolled_bytes: u64,
}

/// One link session: from `handle_connected` to peer death.
#[derive(Debug)]
struct Session {
    detector: FailureDetector,
    peer: Option<String>,
    /// The `epoch` of the peer's `Hello`: its takeovers so far.
    peer_epoch: u64,
    hello_pending: bool,
    /// Whether this node can serve is owed to the peer (after `Hello`,
    /// and on every change).
    fit_pending: bool,
    /// Whether the peer can serve, once it said (`Msg::Lan`).
    peer_fit: Option<bool>,
    heartbeat_pending: Option<u64>,
    next_heartbeat_seq: u64,
    /// Cumulative acks to send, coalesced per connection.
    acks: BTreeMap<ConnKey, u64>,
    /// `Frame`, `Unit`, `ConnGone`, `Routes` and `Leaving` messages: in
    /// order, but connections' units in turns (`queue.rs`).
    queue: queue::LinkQueue,
    /// `ConnGone` messages in `queue`: exempt from `max_forward_queue`, each
    /// holds a connection-table slot until sent.
    gone_in_queue: usize,
    /// Bytes of the `Frame` messages in `queue` (`max_forward_bytes`).
    frame_bytes: usize,
    /// Owner: charged bytes/units received and not yet taken by the caller.
    unpolled_units: u64,
    unpolled_charge: u64,
}

impl Session {
    fn data_queued(&self) -> usize {
        self.queue.len() - self.gone_in_queue
    }

    /// `msg` left the queue: its share of the bounds is free again.
    fn taken(&mut self, msg: &Msg) {
        match msg {
            Msg::ConnGone { .. } => self.gone_in_queue -= 1,
            Msg::Frame { frame } => self.frame_bytes -= frame.len(),
            _ => {}
        }
    }
}

#[derive(Debug)]
struct Queued {
    event: Event,
    /// For `Logged`: (incarnation, payload length) to settle on take.
    logged: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
struct Counters {
    forwarded_frames: u64,
    received_frames: u64,
    logged_units: u64,
    unreplicated_units: u64,
    released_units: u64,
    mirrored_units: u64,
    acks_sent: u64,
    acks_received: u64,
    stale_acks: u64,
    heartbeats_sent: u64,
    heartbeats_received: u64,
    refusals: u64,
}

/// The replication protocol for one node and one link, sans-IO.
///
/// # Call order
///
/// The caller owns the link socket, the timer and the clock, and relays:
///
/// ```text
/// link connected            ──► handle_connected(now)
/// bytes from link ──► Decoder::feed, loop Decoder::next ──► handle_peer_msg(msg, now)
///                             (Err: drop the link, then handle_link_lost(now))
/// link closed / errored     ──► handle_link_lost(now)
/// timer fired               ──► handle_timeout(now)
/// owner: client frame     ──► forward_frame(frame)        (Err: drop or serve locally)
/// primary: reply ready      ──► log_unit(..) -> seq         (Err: retry after a Release)
/// connection ended          ──► conn_gone(conn)
///
/// then, after any of the above, drain in this order:
///   loop poll_transmit() -> Msg  ──► Msg::encode ──► link
///   loop poll_event()    -> Event ──► act (Release: send unit; Logged: mirror; PeerDead: take over)
///   poll_timeout()       -> Instant ──► re-arm the timer
/// ```
///
/// Draining `poll_event` matters beyond latency: at the owner node, taking
/// a [`Event::Logged`] is what acknowledges the unit to the primary, and
/// events the peer causes are bounded ([`ProtocolError::EventBacklog`]).
///
/// ```
/// use std::time::Instant;
/// use bytes::Bytes;
/// use hotpair_replicator::{ConnKey, Event, Replica, ReplicaConfig, Role, UnitKind};
///
/// # #[allow(clippy::disallowed_methods)]
/// let now = Instant::now(); // the caller's clock
/// let mut r = Replica::new(ReplicaConfig::new(Role::Simplex, "solo"), now);
/// let client_ip = hotpair_stack::smoltcp::wire::Ipv4Address::new(10, 0, 0, 2);
/// let conn = ConnKey { client_ip, client_port: 5555, client_isn: 1 };
/// let seq = r.log_unit(conn, 0, UnitKind::Final, 80, false, Bytes::from_static(b"HTTP/1.1 204 No Content\r\n\r\n"))?;
/// assert_eq!(r.poll_event(), Some(Event::Release { conn, seq }));
/// assert_eq!(r.poll_transmit(), None);
/// # Ok::<(), hotpair_replicator::Backpressure>(())
/// ```
#[derive(Debug)]
pub struct Replica {
    cfg: ReplicaConfig,
    role: Role,
    session: Option<Session>,
    /// Last time anything was heard from the peer (or creation).
    last_heard: Instant,
    takeovers: u64,
    out_conns: BTreeMap<ConnKey, OutConn>,
    mirror_conns: BTreeMap<ConnKey, MirrorConn>,
    next_incarnation: u64,
    /// Primary: outstanding units and their payload / charged bytes.
    unacked_units: u64,
    unacked_bytes: u64,
    unacked_charge: u64,
    events: VecDeque<Queued>,
    /// `Frame` and `ConnGone` events in `events`.
    peer_events: usize,
    counters: Counters,
    /// This node said it leaves, as the primary: nothing more goes out.
    leaving: bool,
    /// The owner said it leaves; its death, when the link closes, is one.
    peer_leaving: bool,
    /// This node can serve: its LAN check and its application check pass
    /// (told to the peer in `Msg::Lan`).
    fit: bool,
    /// When the cold-start wait began (the start), until a link session
    /// first comes up or the wait ran out.
    cold_start: Option<Instant>,
}

impl Replica {
    /// A node with no link session, in its configured role.
    ///
    /// # Panics
    ///
    /// If `cfg` fails [`ReplicaConfig::validate`] (a local configuration
    /// error; check it first to report it nicely).
    pub fn new(cfg: ReplicaConfig, now: Instant) -> Self {
        if let Err(e) = cfg.validate() {
            panic!("invalid ReplicaConfig: {e}");
        }
        let cold_start = (cfg.role != Role::Simplex).then_some(now);
        Self {
            role: cfg.role,
            cfg,
            session: None,
            last_heard: now,
            takeovers: 0,
            out_conns: BTreeMap::new(),
            mirror_conns: BTreeMap::new(),
            next_incarnation: 0,
            unacked_units: 0,
            unacked_bytes: 0,
            unacked_charge: 0,
            events: VecDeque::new(),
            peer_events: 0,
            counters: Counters::default(),
            leaving: false,
            peer_leaving: false,
            fit: true,
            cold_start,
        }
    }

    /// The current role: the configured one, or [`Role::Simplex`] after the
    /// peer was declared dead (until the next link session).
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicaConfig {
        &self.cfg
    }

    /// The state of the link to the peer.
    pub fn peer_state(&self) -> PeerState {
        match &self.session {
            None => PeerState::Down,
            Some(s) if s.peer.is_none() => PeerState::Handshaking,
            Some(_) => PeerState::Up,
        }
    }

    // ---- introspection ---------------------------------------------------

    /// Counters and gauges.
    pub fn stats(&self) -> ReplicaStats {
        let s = self.session.as_ref();
        ReplicaStats {
            role: self.role,
            peer: self.peer_state(),
            peer_node: s.and_then(|s| s.peer.clone()),
            takeovers: self.takeovers,
            conns: self.out_conns.len() + self.mirror_conns.len(),
            unacked_units: self.unacked_units,
            unacked_bytes: self.unacked_bytes,
            unpolled_units: s.map_or(0, |s| s.unpolled_units),
            queued_msgs: s.map_or(0, |s| s.queue.len()),
            forwarded_frames: self.counters.forwarded_frames,
            received_frames: self.counters.received_frames,
            logged_units: self.counters.logged_units,
            unreplicated_units: self.counters.unreplicated_units,
            released_units: self.counters.released_units,
            mirrored_units: self.counters.mirrored_units,
            acks_sent: self.counters.acks_sent,
            acks_received: self.counters.acks_received,
            stale_acks: self.counters.stale_acks,
            heartbeats_sent: self.counters.heartbeats_sent,
            heartbeats_received: self.counters.heartbeats_received,
            refusals: self.counters.refusals,
        }
    }

    /// One connection's state: the primary side if this node produces its
    /// units, else the owner side.
    pub fn conn_stats(&self, conn: &ConnKey) -> Option<ConnStats> {
        if let Some(c) = self.out_conns.get(conn) {
            return Some(ConnStats {
                next_seq: c.next_seq,
                pending_units: c.held.len() as u64,
                pending_bytes: c.held.iter().map(|h| h.len).sum(),
                replicated: c.replicated,
                gone_local: false,
            });
        }
        self.mirror_conns.get(conn).map(|c| ConnStats {
            next_seq: c.expected_seq,
            pending_units: c.unpolled_units,
            pending_bytes: c.unpolled_bytes,
            replicated: true,
            gone_local: c.gone_local,
        })
    }

    // ---- internals -------------------------------------------------------

    fn push_event(&mut self, event: Event, logged: Option<(u64, u64)>) {
        self.events.push_back(Queued { event, logged });
    }
}

fn charge_of(units: u64, bytes: u64) -> u64 {
    bytes + units * UNIT_CHARGE_BYTES
}

/// Queues a cumulative ack for `seq` unless one at least as high was queued.
fn queue_ack(s: &mut Session, c: &mut MirrorConn, conn: ConnKey, seq: u64) {
    if c.acked.is_some_and(|a| a >= seq) {
        return;
    }
    c.acked = Some(seq);
    s.acks.insert(conn, seq);
}

impl Replica {
    /// When anything was last heard from the peer (a message, or bytes of
    /// one): the start of the link session, or creation, if nothing since.
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// How long this side's heartbeats have been silent at `now` (`None`
    /// with no link session). Once it reaches the heartbeat timeout the
    /// peer may have declared this node dead, whatever this node's own
    /// loop did meanwhile.
    pub fn heartbeat_silence(&self, now: Instant) -> Option<Duration> {
        let s = self.session.as_ref()?;
        Some(now.saturating_duration_since(s.detector.last_sent()))
    }
}
