//! The per-node protocol core: [`Replica`].
//!
//! # Protocol
//!
//! 1. When the link comes up each side sends [`Msg::Hello`] first. A primary
//!    accepts only an ingress peer and vice versa; the peer is *up* once its
//!    Hello is in.
//! 2. Ingress → primary: [`Msg::Frame`] for every client frame.
//! 3. Primary → ingress: [`Msg::Unit`] for every output unit, numbered 0, 1, 2…
//!    per connection. The link is ordered, so the ingress node rejects a gap.
//! 4. Ingress → primary: [`Msg::UnitAck`], cumulative per connection, once
//!    the caller has taken the unit from [`Replica::poll_event`] (so the
//!    ingress node never acknowledges bytes it has not yet handed over, and
//!    the primary's unacknowledged limit bounds the ingress node's memory too).
//!    The primary then releases the unit ([`Event::Release`]).
//! 5. Primary → ingress: [`Msg::ConnGone`] when the primary's connection ended.
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
//! [`Role::Simplex`]; the caller performs the takeover (ingress: promote the
//! shadow connections; primary: claim the service address). At the primary
//! every held unit is released at once, in order.
//!
//! **Split brain.** With a single replication link a partition of the link
//! cannot be told apart from the peer's death: both nodes take over. The
//! guard is deployment — the link must share fate with the service LAN (same
//! switch), so that a node cut off from its peer is cut off from clients too —
//! plus the fail-stop assumption. This is a known limitation: a second,
//! independent path (a LAN heartbeat or a witness) is needed to survive a
//! link-only partition and belongs in the appliance.
//!
//! # Rejoin
//!
//! A new link session ([`Replica::handle_connected`]) after a takeover
//! restores the configured role. Connections that existed while the node was
//! simplex stay unreplicated (their units are released at once); connections
//! first seen in the new session are replicated. The ingress side starts the
//! new session with an empty table.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;
use tracing::{debug, info, trace, warn};

use crate::detector::{
    DetectorEvent, FailureDetector, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT,
};
use crate::wire::{self, Msg, MAX_FRAME_LEN, MAX_NODE_NAME_LEN, MAX_UNIT_PAYLOAD};
use crate::{ConnKey, Role, UnitKind};

/// Fixed charge added to each unit's payload length when counting against
/// [`ReplicaConfig::max_unacked_bytes`], so empty units are bounded too.
pub const UNIT_CHARGE_BYTES: u64 = 64;
/// Default [`ReplicaConfig::max_unacked_bytes`]: 256 MiB.
pub const DEFAULT_MAX_UNACKED_BYTES: u64 = 256 * 1024 * 1024;
/// Default [`ReplicaConfig::max_forward_queue`].
pub const DEFAULT_MAX_FORWARD_QUEUE: usize = 65_536;
/// Default [`ReplicaConfig::max_conns`].
pub const DEFAULT_MAX_CONNS: usize = 65_536;
/// Default [`ReplicaConfig::max_forward_bytes`]: 64 MiB of client frames
/// queued for the link (65,536 TSO frames of 64 KB would be 4 GB).
pub const DEFAULT_MAX_FORWARD_BYTES: usize = 64 * 1024 * 1024;
/// Default [`ReplicaConfig::cold_start_wait`]: long enough that two nodes
/// booted together (a few hundred milliseconds apart) pair up without one
/// first serving alone, short enough that a node whose peer stays down
/// serves within seconds.
pub const DEFAULT_COLD_START_WAIT: Duration = Duration::from_secs(2);

/// Configuration of a [`Replica`]. Both nodes of a pair should use the same
/// limits: the ingress node enforces the primary's window as a protocol rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// The role this node takes whenever a link session is up.
    pub role: Role,
    /// This node's name, sent in `Hello` (at most 64 bytes).
    pub node: String,
    /// Time between heartbeats (default 100 ms).
    pub heartbeat_interval: Duration,
    /// Silence after which the peer is declared dead (default 500 ms).
    pub heartbeat_timeout: Duration,
    /// Primary: logged-but-unacknowledged bytes across all connections, each
    /// unit counting its payload plus [`UNIT_CHARGE_BYTES`] (default 256 MiB).
    /// A single unit is always admitted when nothing is outstanding.
    pub max_unacked_bytes: u64,
    /// `Frame` and `Unit` messages queued for the link, and peer-caused events
    /// (`Frame`, `ConnGone`) not yet taken by the caller (default 65 536).
    pub max_forward_queue: usize,
    /// Connections tracked per side (default 65 536).
    pub max_conns: usize,
    /// This node's MAC on the service LAN, sent in `Hello` (default all
    /// zero: not given).
    pub mac: [u8; 6],
    /// Ingress: bytes of client frames queued for the link at most (default
    /// 64 MiB); beyond it a frame is refused like at `max_forward_queue`.
    pub max_forward_bytes: usize,
    /// A node that has had no link session this long after it started
    /// serves its addresses alone ([`Event::PeerAbsent`]): after a power cut
    /// only one node may come back (default 2 s; at least the heartbeat
    /// timeout).
    pub cold_start_wait: Duration,
}

impl ReplicaConfig {
    /// A configuration with the default timers and limits.
    pub fn new(role: Role, node: impl Into<String>) -> Self {
        Self {
            role,
            node: node.into(),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            max_unacked_bytes: DEFAULT_MAX_UNACKED_BYTES,
            max_forward_queue: DEFAULT_MAX_FORWARD_QUEUE,
            max_conns: DEFAULT_MAX_CONNS,
            cold_start_wait: DEFAULT_COLD_START_WAIT,
            mac: [0; 6],
            max_forward_bytes: DEFAULT_MAX_FORWARD_BYTES,
        }
    }

    /// Checks the configuration; [`Replica::new`] requires it to pass.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.len() > MAX_NODE_NAME_LEN {
            return Err(ConfigError::NodeNameTooLong {
                len: self.node.len(),
            });
        }
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::ZeroHeartbeatInterval);
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            return Err(ConfigError::TimeoutNotAboveInterval);
        }
        if self.max_unacked_bytes == 0 {
            return Err(ConfigError::ZeroLimit("max_unacked_bytes"));
        }
        if self.max_forward_queue == 0 {
            return Err(ConfigError::ZeroLimit("max_forward_queue"));
        }
        if self.max_conns == 0 {
            return Err(ConfigError::ZeroLimit("max_conns"));
        }
        if self.cold_start_wait < self.heartbeat_timeout {
            return Err(ConfigError::ColdStartBelowTimeout);
        }
        Ok(())
    }
}

/// A [`ReplicaConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The node name does not fit in a `Hello`.
    #[error("node name is {len} bytes, at most {MAX_NODE_NAME_LEN} allowed")]
    NodeNameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The heartbeat interval is zero.
    #[error("heartbeat interval must be above zero")]
    ZeroHeartbeatInterval,
    /// The timeout would fire before the first heartbeat could arrive.
    #[error("heartbeat timeout must be longer than the heartbeat interval")]
    TimeoutNotAboveInterval,
    /// A limit is zero.
    #[error("{0} must be above zero")]
    ZeroLimit(&'static str),
    /// The cold-start wait is shorter than the heartbeat timeout: a node
    /// would serve alone before a peer that started with it could be heard.
    #[error("cold-start wait must be at least the heartbeat timeout")]
    ColdStartBelowTimeout,
}

/// The state of the link to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// No link session.
    Down,
    /// Link up, the peer's `Hello` not yet received.
    Handshaking,
    /// The peer's `Hello` arrived; it is alive.
    Up,
}

/// What a [`Replica`] tells its caller. Take them with [`Replica::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Primary: the owner said it leaves (a planned stop). Claim its
    /// address now; it keeps forwarding what reaches it until it closes
    /// the link (then [`Event::PeerDead`] with `left`).
    PeerLeaving,
    /// No link session came up within [`ReplicaConfig::cold_start_wait`]
    /// of the start (a cold start with the peer down). The caller serves
    /// the address alone, as after [`Event::PeerDead`] (ingress: announce
    /// and serve; primary: probe, then claim); the role is now
    /// [`Role::Simplex`] until a link session comes up (rejoin).
    PeerAbsent {
        /// How long this node waited.
        waited: Duration,
    },
    /// The peer's `Hello` arrived.
    PeerUp {
        /// The peer's node name.
        node: String,
        /// The peer's MAC on the service LAN (all zero: not given).
        mac: [u8; 6],
    },
    /// Heartbeat timeout or link lost. The caller performs the takeover
    /// (ingress: promote shadow connections; primary: claim the address). The
    /// role is now [`Role::Simplex`].
    PeerDead {
        /// Time since anything was last heard from the peer.
        since_heard: Duration,
        /// The peer said it was leaving (`Leaving`, a planned stop): it
        /// serves nothing any more, so a claim needs no probes.
        left: bool,
    },
    /// Primary: the unit may go to the client now. Per connection these come
    /// in `seq` order.
    Release {
        /// The connection.
        conn: ConnKey,
        /// The unit's sequence number, as returned by [`Replica::log_unit`].
        seq: u64,
    },
    /// Ingress: a logged unit to mirror into the shadow connection. Per
    /// connection these come in `seq` order without gaps. Taking this event
    /// acknowledges the unit to the primary: from then on the caller owns the
    /// only copy the pair has besides the primary's.
    Logged {
        /// The connection.
        conn: ConnKey,
        /// Per-connection unit sequence.
        seq: u64,
        /// HTTP request index the unit answers.
        index: u64,
        /// Interim or final.
        kind: UnitKind,
        /// Client input offset where that request's bytes end.
        input_end: u64,
        /// The connection closes after this unit.
        close_after: bool,
        /// Make this final reply here, from this node's own copy of the
        /// `static` route's content (`payload` is empty).
        local: bool,
        /// The bytes to send to the client.
        payload: Bytes,
    },
    /// The peer's routes with their policies and content digests
    /// ([`Msg::Routes`]).
    PeerRoutes {
        /// As the peer sent them.
        routes: Vec<crate::wire::RouteDigest>,
    },
    /// Ingress: the primary's connection ended; its state here is forgotten.
    ConnGone {
        /// The connection.
        conn: ConnKey,
    },
    /// Primary: a client frame forwarded by the ingress node.
    Frame {
        /// The frame, starting at the Ethernet header.
        frame: Bytes,
    },
}

/// The peer broke the protocol. The caller drops the link and then calls
/// [`Replica::handle_link_lost`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A message arrived with no link session ([`Replica::handle_connected`]
    /// not called, or the peer was already declared dead).
    #[error("message from the peer with no link session")]
    NotConnected,
    /// The first message was not `Hello`.
    #[error("expected Hello first, got {got}")]
    HelloExpected {
        /// The message that came instead.
        got: &'static str,
    },
    /// A second `Hello` on the same link.
    #[error("duplicate Hello")]
    DuplicateHello,
    /// The peer speaks another protocol version.
    #[error("peer speaks protocol version {got}, we speak {}", wire::VERSION)]
    BadVersion {
        /// The peer's version.
        got: u8,
    },
    /// The peer's role does not complement ours.
    #[error("peer announced role {theirs:?}, incompatible with our role {ours:?}")]
    RoleMismatch {
        /// Our role.
        ours: Role,
        /// The role in the peer's `Hello`.
        theirs: Role,
    },
    /// A message this role never receives (a `Frame` sent to an ingress node,
    /// a `Unit` to a primary, …).
    #[error("{msg} is not valid towards a node with role {role:?}")]
    UnexpectedMsg {
        /// The message type.
        msg: &'static str,
        /// Our role.
        role: Role,
    },
    /// A unit's sequence number is not the next one for its connection.
    #[error("unit seq {got} for {conn}, expected {expected}")]
    SeqGap {
        /// The connection.
        conn: ConnKey,
        /// The next sequence number.
        expected: u64,
        /// The one received.
        got: u64,
    },
    /// An acknowledgement for a unit that is not outstanding (never sent,
    /// already acknowledged, or for an unreplicated connection).
    #[error("ack for {conn} seq {seq}, which is not outstanding")]
    UnknownAck {
        /// The connection.
        conn: ConnKey,
        /// The acknowledged sequence number.
        seq: u64,
    },
    /// The primary sent more unacknowledged bytes than the window allows.
    #[error("peer exceeded the unacked window: {bytes} bytes outstanding, limit {limit}")]
    WindowExceeded {
        /// Charged bytes that would be outstanding.
        bytes: u64,
        /// [`ReplicaConfig::max_unacked_bytes`].
        limit: u64,
    },
    /// The peer opened more connections than [`ReplicaConfig::max_conns`].
    #[error("peer exceeded the connection limit {limit}")]
    TooManyConns {
        /// The limit.
        limit: usize,
    },
    /// Too many `Frame`/`ConnGone` events are waiting in [`Replica::poll_event`]:
    /// the caller is not draining events, so the message cannot be accepted.
    #[error("{limit} peer events are waiting; drain poll_event")]
    EventBacklog {
        /// [`ReplicaConfig::max_forward_queue`].
        limit: usize,
    },
}

/// A local request that cannot be taken now. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Backpressure {
    /// `forward_frame`: this node is not the ingress node of a live link
    /// session. Serve the frame locally or drop it.
    #[error("no link session to a primary")]
    NoPeer,
    /// The link queue holds [`ReplicaConfig::max_forward_queue`] messages:
    /// drain [`Replica::poll_transmit`]. A dropped client frame is
    /// retransmitted by TCP.
    #[error("link queue full ({limit} messages)")]
    QueueFull {
        /// The limit.
        limit: usize,
    },
    /// `forward_frame`: the frames queued for the link reached
    /// [`ReplicaConfig::max_forward_bytes`]; dropped, TCP retransmits.
    #[error("link queue full ({limit} bytes of frames)")]
    ForwardBytes {
        /// The limit.
        limit: usize,
    },
    /// `log_unit`: the unacknowledged window is full; retry after a
    /// [`Event::Release`].
    #[error("unacked window full ({limit} bytes)")]
    UnackedBytes {
        /// The limit.
        limit: u64,
    },
    /// `log_unit`: [`ReplicaConfig::max_conns`] connections are tracked.
    #[error("connection table full ({limit} connections)")]
    TooManyConns {
        /// The limit.
        limit: usize,
    },
    /// The frame or payload can never fit in one message; split it.
    #[error("{len} bytes exceed the largest message body ({max})")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The largest accepted.
        max: usize,
    },
}

/// Counters and gauges for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStats {
    /// Current role.
    pub role: Role,
    /// Link state.
    pub peer: PeerState,
    /// The peer's node name, while up.
    pub peer_node: Option<String>,
    /// Takeovers: how many times this node declared its peer dead.
    pub takeovers: u64,
    /// Connections tracked (primary side + ingress side).
    pub conns: usize,
    /// Primary: units logged and not yet acknowledged.
    pub unacked_units: u64,
    /// Primary: payload bytes of those units.
    pub unacked_bytes: u64,
    /// Ingress: units received and not yet taken from `poll_event`.
    pub unpolled_units: u64,
    /// Messages waiting in the link queue (`Frame`, `Unit`, `ConnGone`).
    pub queued_msgs: usize,
    /// Ingress: frames queued for the primary.
    pub forwarded_frames: u64,
    /// Primary: frames received from the ingress node.
    pub received_frames: u64,
    /// Primary: units sent to the peer for logging.
    pub logged_units: u64,
    /// Primary: units released without replication (simplex or unreplicated
    /// connection).
    pub unreplicated_units: u64,
    /// Primary: release events emitted.
    pub released_units: u64,
    /// Ingress: units received from the primary.
    pub mirrored_units: u64,
    /// Acknowledgements sent.
    pub acks_sent: u64,
    /// Acknowledgements received.
    pub acks_received: u64,
    /// Acknowledgements for connections already gone here (ignored).
    pub stale_acks: u64,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Heartbeats received.
    pub heartbeats_received: u64,
    /// Local requests refused with [`Backpressure`].
    pub refusals: u64,
}

/// Per-connection state, from [`Replica::conn_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnStats {
    /// Primary side: the next unit's seq. Ingress side: the next expected seq.
    pub next_seq: u64,
    /// Primary: units held for an ack. Ingress: units not yet taken.
    pub pending_units: u64,
    /// Payload bytes of those units.
    pub pending_bytes: u64,
    /// Whether units of this connection go to the peer.
    pub replicated: bool,
    /// Ingress: the caller reported the connection gone; later units are
    /// acknowledged without an event until the primary's `ConnGone`.
    pub gone_local: bool,
}

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

/// Ingress side of a connection: units mirrored from the primary.
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
    /// This node's LAN state is owed to the peer (after `Hello`, and on
    /// every change).
    lan_pending: bool,
    /// The peer's LAN state, once it said (`Msg::Lan`).
    peer_lan: Option<bool>,
    heartbeat_pending: Option<u64>,
    next_heartbeat_seq: u64,
    /// Cumulative acks to send, coalesced per connection.
    acks: BTreeMap<ConnKey, u64>,
    /// `Frame`, `Unit` and `ConnGone` messages in order.
    queue: VecDeque<Msg>,
    /// `ConnGone` messages in `queue`: exempt from `max_forward_queue`, each
    /// holds a connection-table slot until sent.
    gone_in_queue: usize,
    /// Bytes of the `Frame` messages in `queue` (`max_forward_bytes`).
    frame_bytes: usize,
    /// Ingress: charged bytes/units received and not yet taken by the caller.
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
/// ingress: client frame     ──► forward_frame(frame)        (Err: drop or serve locally)
/// primary: reply ready      ──► log_unit(..) -> seq         (Err: retry after a Release)
/// connection ended          ──► conn_gone(conn)
///
/// then, after any of the above, drain in this order:
///   loop poll_transmit() -> Msg  ──► Msg::encode ──► link
///   loop poll_event()    -> Event ──► act (Release: send unit; Logged: mirror; PeerDead: take over)
///   poll_timeout()       -> Instant ──► re-arm the timer
/// ```
///
/// Draining `poll_event` matters beyond latency: at the ingress node, taking
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
    /// This node's LAN check passes (told to the peer in `Msg::Lan`).
    lan_up: bool,
    /// Start time and deadline of the cold-start wait, until a link session
    /// first comes up (or the wait ran out).
    cold_start: Option<(Instant, Instant)>,
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
        let cold_start = (cfg.role != Role::Simplex).then(|| (now, now + cfg.cold_start_wait));
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
            lan_up: true,
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

    // ---- link ------------------------------------------------------------

    /// The link to the peer is up: queue `Hello`, start the failure detector.
    ///
    /// Restores the configured role after a takeover (rejoin). If a session
    /// was still open, the old link counts as lost first ([`Event::PeerDead`]).
    /// A node configured [`Role::Simplex`] ignores links.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.cfg.role == Role::Simplex {
            debug!("simplex node ignores a replication link");
            return;
        }
        if self.session.is_some() {
            debug!("new link while a session is open; the old one counts as lost");
            self.handle_link_lost(now);
        }
        self.role = self.cfg.role;
        self.last_heard = now;
        self.cold_start = None;
        self.leaving = false;
        self.peer_leaving = false;
        debug!(role = ?self.role, "link up, sending hello");
        self.session = Some(Session {
            detector: FailureDetector::new(
                self.cfg.heartbeat_interval,
                self.cfg.heartbeat_timeout,
                now,
            ),
            peer: None,
            peer_epoch: 0,
            hello_pending: true,
            lan_pending: true,
            peer_lan: None,
            heartbeat_pending: None,
            next_heartbeat_seq: 0,
            acks: BTreeMap::new(),
            queue: VecDeque::new(),
            gone_in_queue: 0,
            frame_bytes: 0,
            unpolled_units: 0,
            unpolled_charge: 0,
        });
    }

    /// The link closed or failed (or a connection attempt the caller gave up
    /// on). The peer is declared dead at once: see the module docs for why.
    /// No-op when already simplex.
    pub fn handle_link_lost(&mut self, now: Instant) {
        if self.role == Role::Simplex {
            return;
        }
        let since_heard = now.saturating_duration_since(self.last_heard);
        self.peer_dead(since_heard, self.peer_leaving);
    }

    /// A message from the peer. On `Err` the caller drops the link and calls
    /// [`Replica::handle_link_lost`]; the message had no effect other than
    /// counting as a sign of life.
    pub fn handle_peer_msg(&mut self, msg: Msg, now: Instant) -> Result<(), ProtocolError> {
        let result = self.on_peer_msg(msg, now);
        if let Err(e) = &result {
            warn!(error = %e, "replication peer broke the protocol");
        }
        result
    }

    fn on_peer_msg(&mut self, msg: Msg, now: Instant) -> Result<(), ProtocolError> {
        let role = self.role;
        let Some(s) = self.session.as_mut() else {
            return Err(ProtocolError::NotConnected);
        };
        s.detector.handle_heard(now);
        if now > self.last_heard {
            self.last_heard = now;
        }
        trace!(msg = msg.name(), "from peer");
        if let Msg::Hello {
            version,
            node,
            role: theirs,
            epoch,
            mac,
        } = msg
        {
            if s.peer.is_some() {
                return Err(ProtocolError::DuplicateHello);
            }
            if version != wire::VERSION {
                return Err(ProtocolError::BadVersion { got: version });
            }
            let wanted = match role {
                Role::Primary => Role::Ingress,
                Role::Ingress => Role::Primary,
                // No session exists while simplex.
                Role::Simplex => return Err(ProtocolError::NotConnected),
            };
            if theirs != wanted {
                return Err(ProtocolError::RoleMismatch { ours: role, theirs });
            }
            info!(peer = %node, peer_epoch = epoch, ?role, "replication peer up");
            s.peer = Some(node.clone());
            s.peer_epoch = epoch;
            self.push_event(Event::PeerUp { node, mac }, None);
            return Ok(());
        }
        if s.peer.is_none() {
            return Err(ProtocolError::HelloExpected { got: msg.name() });
        }
        let unexpected = ProtocolError::UnexpectedMsg {
            msg: msg.name(),
            role,
        };
        match msg {
            Msg::Hello { .. } => Err(ProtocolError::DuplicateHello),
            Msg::Heartbeat { .. } => {
                self.counters.heartbeats_received += 1;
                Ok(())
            }
            Msg::Lan { up } => {
                if s.peer_lan != Some(up) {
                    debug!(up, "peer's LAN state");
                }
                s.peer_lan = Some(up);
                Ok(())
            }
            // The owner leaves: this primary claims the address at once but
            // keeps taking the frames the owner still forwards (those
            // already on their way) until it closes the link. The primary
            // leaves: the owner takes over at once.
            Msg::Leaving if role == Role::Primary => {
                self.peer_leaving = true;
                self.push_event(Event::PeerLeaving, None);
                Ok(())
            }
            Msg::Leaving => {
                self.peer_dead(Duration::ZERO, true);
                Ok(())
            }
            Msg::Frame { frame } => {
                if role != Role::Primary {
                    return Err(unexpected);
                }
                self.check_peer_backlog()?;
                self.counters.received_frames += 1;
                self.peer_events += 1;
                self.push_event(Event::Frame { frame }, None);
                Ok(())
            }
            Msg::Unit {
                conn,
                seq,
                index,
                kind,
                input_end,
                close_after,
                local,
                payload,
            } => {
                if role != Role::Ingress {
                    return Err(unexpected);
                }
                self.on_unit(Event::Logged {
                    conn,
                    seq,
                    index,
                    kind,
                    input_end,
                    close_after,
                    local,
                    payload,
                })
            }
            Msg::Routes { routes } => {
                self.check_peer_backlog()?;
                self.peer_events += 1;
                self.push_event(Event::PeerRoutes { routes }, None);
                Ok(())
            }
            Msg::UnitAck { conn, seq } => {
                if role != Role::Primary {
                    return Err(unexpected);
                }
                self.on_ack(conn, seq)
            }
            Msg::ConnGone { conn } => {
                if role != Role::Ingress {
                    return Err(unexpected);
                }
                self.check_peer_backlog()?;
                if let Some(c) = self.mirror_conns.remove(&conn) {
                    if let Some(s) = self.session.as_mut() {
                        s.unpolled_units -= c.unpolled_units;
                        s.unpolled_charge -= charge_of(c.unpolled_units, c.unpolled_bytes);
                    }
                }
                debug!(%conn, "primary reports connection gone");
                self.peer_events += 1;
                self.push_event(Event::ConnGone { conn }, None);
                Ok(())
            }
        }
    }

    fn check_peer_backlog(&self) -> Result<(), ProtocolError> {
        if self.peer_events >= self.cfg.max_forward_queue {
            return Err(ProtocolError::EventBacklog {
                limit: self.cfg.max_forward_queue,
            });
        }
        Ok(())
    }

    /// Ingress: a unit from the primary. `logged` is the `Event::Logged`.
    fn on_unit(&mut self, logged: Event) -> Result<(), ProtocolError> {
        let Event::Logged {
            conn, seq, payload, ..
        } = &logged
        else {
            return Ok(());
        };
        let (conn, seq, len) = (*conn, *seq, payload.len() as u64);
        let Some(s) = self.session.as_mut() else {
            return Err(ProtocolError::NotConnected);
        };
        let expected = self.mirror_conns.get(&conn).map_or(0, |c| c.expected_seq);
        if seq != expected {
            return Err(ProtocolError::SeqGap {
                conn,
                expected,
                got: seq,
            });
        }
        if !self.mirror_conns.contains_key(&conn) && self.mirror_conns.len() >= self.cfg.max_conns {
            return Err(ProtocolError::TooManyConns {
                limit: self.cfg.max_conns,
            });
        }
        let gone_local = self.mirror_conns.get(&conn).is_some_and(|c| c.gone_local);
        let charge = len + UNIT_CHARGE_BYTES;
        if !gone_local
            && s.unpolled_units > 0
            && s.unpolled_charge.saturating_add(charge) > self.cfg.max_unacked_bytes
        {
            return Err(ProtocolError::WindowExceeded {
                bytes: s.unpolled_charge.saturating_add(charge),
                limit: self.cfg.max_unacked_bytes,
            });
        }
        let next_incarnation = &mut self.next_incarnation;
        let c = self.mirror_conns.entry(conn).or_insert_with(|| {
            *next_incarnation += 1;
            MirrorConn {
                expected_seq: 0,
                acked: None,
                gone_local: false,
                incarnation: *next_incarnation,
                unpolled_units: 0,
                unpolled_bytes: 0,
            }
        });
        c.expected_seq += 1;
        self.counters.mirrored_units += 1;
        if c.gone_local {
            // The caller no longer wants it: acknowledge so the primary
            // does not hold the client's reply.
            trace!(%conn, seq, "unit for a connection gone here, acked");
            queue_ack(s, c, conn, seq);
            return Ok(());
        }
        trace!(%conn, seq, len, "unit logged");
        c.unpolled_units += 1;
        c.unpolled_bytes += len;
        s.unpolled_units += 1;
        s.unpolled_charge += charge;
        let tag = (c.incarnation, len);
        self.push_event(logged, Some(tag));
        Ok(())
    }

    /// Primary: a cumulative ack.
    fn on_ack(&mut self, conn: ConnKey, seq: u64) -> Result<(), ProtocolError> {
        self.counters.acks_received += 1;
        let Some(c) = self.out_conns.get_mut(&conn) else {
            // The connection ended here after the peer sent the ack.
            trace!(%conn, seq, "ack for a connection already gone");
            self.counters.stale_acks += 1;
            return Ok(());
        };
        let outstanding =
            c.replicated && c.held.front().is_some_and(|h| h.seq <= seq) && seq < c.next_seq;
        if !outstanding {
            return Err(ProtocolError::UnknownAck { conn, seq });
        }
        while let Some(h) = c.held.front().copied() {
            if h.seq > seq {
                break;
            }
            c.held.pop_front();
            self.unacked_units -= 1;
            self.unacked_bytes -= h.len;
            self.unacked_charge -= h.len + UNIT_CHARGE_BYTES;
            self.counters.released_units += 1;
            trace!(%conn, seq = h.seq, "unit acked, released");
            self.events.push_back(Queued {
                event: Event::Release { conn, seq: h.seq },
                logged: None,
            });
        }
        Ok(())
    }

    /// Bytes arrived on the link, whether or not they completed a message:
    /// the peer is alive. Liveness must not depend on how much data the
    /// link carries (DESIGN §5): a heartbeat queued behind a large logged
    /// reply reaches the peer only after it, and the peer would otherwise
    /// hear nothing — and declare a live node dead — while the reply's
    /// bytes are streaming in.
    pub fn handle_link_progress(&mut self, now: Instant) {
        if let Some(s) = self.session.as_mut() {
            s.detector.handle_heard(now);
            if now > self.last_heard {
                self.last_heard = now;
            }
        }
    }

    /// Advances timers to `now`: heartbeats and the failure detector.
    pub fn handle_timeout(&mut self, now: Instant) {
        loop {
            let Some(s) = self.session.as_mut() else {
                if let Some((start, deadline)) = self.cold_start {
                    if now >= deadline {
                        self.cold_start = None;
                        self.peer_absent(now.saturating_duration_since(start));
                    }
                }
                return;
            };
            match s.detector.handle_timeout(now) {
                None => return,
                Some(DetectorEvent::SendHeartbeat) => {
                    s.heartbeat_pending = Some(s.next_heartbeat_seq);
                    s.next_heartbeat_seq += 1;
                }
                Some(DetectorEvent::PeerDead { since_heard }) => {
                    self.peer_dead(since_heard, self.peer_leaving);
                }
            }
        }
    }

    /// When [`Replica::handle_timeout`] should next be called. `None` with no
    /// link session. May be in the past: call at once.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.session {
            Some(s) => s.detector.poll_timeout(),
            None => self.cold_start.map(|(_, deadline)| deadline),
        }
    }

    /// The next message for the link: `Hello` first, then heartbeats, acks and
    /// the queued `Frame`/`Unit`/`ConnGone` messages in order.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Msg> {
        let s = self.session.as_mut()?;
        if self.leaving {
            // A leaving primary: what was queued up to its `Leaving`, then
            // nothing (the owner took over at `Leaving`).
            let msg = s.queue.pop_front()?;
            s.taken(&msg);
            if matches!(msg, Msg::Leaving) {
                s.queue.clear();
                s.gone_in_queue = 0;
                s.frame_bytes = 0;
            }
            return Some(msg);
        }
        if s.hello_pending {
            s.hello_pending = false;
            return Some(Msg::Hello {
                version: wire::VERSION,
                node: self.cfg.node.clone(),
                role: self.role,
                epoch: self.takeovers,
                mac: self.cfg.mac,
            });
        }
        if std::mem::take(&mut s.lan_pending) {
            return Some(Msg::Lan { up: self.lan_up });
        }
        if let Some(seq) = s.heartbeat_pending.take() {
            self.counters.heartbeats_sent += 1;
            return Some(Msg::Heartbeat { seq });
        }
        if let Some((conn, seq)) = s.acks.pop_first() {
            self.counters.acks_sent += 1;
            return Some(Msg::UnitAck { conn, seq });
        }
        let msg = s.queue.pop_front()?;
        s.taken(&msg);
        Some(msg)
    }

    /// This node's LAN check passes (`true`) or failed: the peer is told
    /// (`Msg::Lan`) now and after every `Hello`.
    pub fn set_lan(&mut self, up: bool) {
        if self.lan_up != up {
            self.lan_up = up;
            if let Some(s) = self.session.as_mut() {
                s.lan_pending = true;
            }
        }
    }

    /// Whether the peer said it reaches the service LAN (`None`: not said
    /// in this session, or no session).
    pub fn peer_lan_up(&self) -> Option<bool> {
        self.session.as_ref().and_then(|s| s.peer_lan)
    }

    /// This node stops serving (a planned stop): tell the peer, after
    /// everything already queued, so it takes over at once. The caller
    /// must send nothing on the LAN from now on.
    ///
    /// An owner keeps forwarding, acknowledging and beating while the
    /// caller lets it (a grace for frames already on their way to it; the
    /// primary claims the address at `Leaving`). A primary sends nothing
    /// after `Leaving`, and logs nothing more: the owner has taken over.
    pub fn leave(&mut self) {
        if let Some(s) = self.session.as_mut().filter(|s| s.peer.is_some()) {
            s.queue.push_back(Msg::Leaving);
            if self.role == Role::Primary {
                self.leaving = true;
                for c in self.out_conns.values_mut() {
                    c.replicated = false;
                }
            }
        }
    }

    /// The takeovers the peer had made when its `Hello` was sent, in this
    /// session (`None` before it). Zero: it never took this address over
    /// since it started, so it does not hold it.
    pub fn peer_epoch(&self) -> Option<u64> {
        self.session
            .as_ref()
            .filter(|s| s.peer.is_some())
            .map(|s| s.peer_epoch)
    }

    /// The owner said it leaves (see [`Event::PeerLeaving`]).
    pub fn peer_leaving(&self) -> bool {
        self.peer_leaving
    }

    /// The next event for the caller.
    ///
    /// At the ingress node, taking an [`Event::Logged`] queues its ack.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let q = self.events.pop_front()?;
        if matches!(
            q.event,
            Event::Frame { .. } | Event::ConnGone { .. } | Event::PeerRoutes { .. }
        ) {
            self.peer_events -= 1;
        }
        if let (Some((incarnation, len)), Event::Logged { conn, seq, .. }) = (q.logged, &q.event) {
            self.settle_logged(*conn, *seq, incarnation, len);
        }
        Some(q.event)
    }

    /// Ingress: the caller took a `Logged` event; release its window share
    /// and acknowledge it, unless it no longer counts (connection gone or a
    /// newer session).
    fn settle_logged(&mut self, conn: ConnKey, seq: u64, incarnation: u64, len: u64) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(c) = self.mirror_conns.get_mut(&conn) else {
            return;
        };
        if c.incarnation != incarnation {
            return;
        }
        c.unpolled_units -= 1;
        c.unpolled_bytes -= len;
        s.unpolled_units -= 1;
        s.unpolled_charge -= len + UNIT_CHARGE_BYTES;
        queue_ack(s, c, conn, seq);
    }

    // ---- ingress side ----------------------------------------------------

    /// Ingress: queue a client frame for the primary.
    ///
    /// On `Err` nothing was queued: the caller drops the frame (TCP
    /// retransmits) or, for [`Backpressure::NoPeer`], serves it locally.
    pub fn forward_frame(&mut self, frame: Bytes) -> Result<(), Backpressure> {
        let result = self.try_forward_frame(frame);
        if result.is_err() {
            self.counters.refusals += 1;
        }
        result
    }

    fn try_forward_frame(&mut self, frame: Bytes) -> Result<(), Backpressure> {
        if frame.len() > MAX_FRAME_LEN {
            return Err(Backpressure::TooLarge {
                len: frame.len(),
                max: MAX_FRAME_LEN,
            });
        }
        let s = match (&mut self.session, self.role) {
            (Some(s), Role::Ingress) => s,
            _ => return Err(Backpressure::NoPeer),
        };
        if s.data_queued() >= self.cfg.max_forward_queue {
            return Err(Backpressure::QueueFull {
                limit: self.cfg.max_forward_queue,
            });
        }
        if s.frame_bytes + frame.len() > self.cfg.max_forward_bytes {
            return Err(Backpressure::ForwardBytes {
                limit: self.cfg.max_forward_bytes,
            });
        }
        s.frame_bytes += frame.len();
        s.queue.push_back(Msg::Frame { frame });
        self.counters.forwarded_frames += 1;
        Ok(())
    }

    // ---- primary side ----------------------------------------------------

    /// Logs an output unit and returns its per-connection sequence number.
    ///
    /// A primary with a link session queues a `Unit` and holds the unit:
    /// [`Event::Release`] follows the peer's ack (or its death). Any other
    /// node — simplex, peer dead, not yet connected, or a connection that
    /// began while simplex — releases it at once. On `Err` nothing changed.
    pub fn log_unit(
        &mut self,
        conn: ConnKey,
        index: u64,
        kind: UnitKind,
        input_end: u64,
        close_after: bool,
        payload: Bytes,
    ) -> Result<u64, Backpressure> {
        let result = self.try_log_unit(conn, index, kind, input_end, close_after, false, payload);
        if result.is_err() {
            self.counters.refusals += 1;
        }
        result
    }

    /// Logs a *local* final reply: one of a `static` route, which the peer
    /// makes itself from its own copy of the content. Only the unit's place
    /// in the stream travels (index, input end, close), no payload. Held and
    /// released like any unit; a `static` caller writes the reply without
    /// waiting for the release, a `sync-static` one waits.
    pub fn log_local_unit(
        &mut self,
        conn: ConnKey,
        index: u64,
        input_end: u64,
        close_after: bool,
    ) -> Result<u64, Backpressure> {
        let result = self.try_log_unit(
            conn,
            index,
            UnitKind::Final,
            input_end,
            close_after,
            true,
            Bytes::new(),
        );
        if result.is_err() {
            self.counters.refusals += 1;
        }
        result
    }

    /// Sends this node's routes (policies and digests) to the peer, if a
    /// session is up; the peer gets [`Event::PeerRoutes`].
    pub fn send_routes(&mut self, routes: Vec<crate::wire::RouteDigest>) {
        if let Some(s) = self.session.as_mut() {
            s.queue.push_back(Msg::Routes { routes });
        }
    }

    #[allow(clippy::too_many_arguments)] // the unit's fields, as on the wire
    fn try_log_unit(
        &mut self,
        conn: ConnKey,
        index: u64,
        kind: UnitKind,
        input_end: u64,
        close_after: bool,
        local: bool,
        payload: Bytes,
    ) -> Result<u64, Backpressure> {
        let len = payload.len();
        if len > MAX_UNIT_PAYLOAD {
            return Err(Backpressure::TooLarge {
                len,
                max: MAX_UNIT_PAYLOAD,
            });
        }
        let gone_slots = self.session.as_ref().map_or(0, |s| s.gone_in_queue);
        let replicated = match self.out_conns.get(&conn) {
            Some(c) => c.replicated,
            None => {
                if self.out_conns.len() + gone_slots >= self.cfg.max_conns {
                    return Err(Backpressure::TooManyConns {
                        limit: self.cfg.max_conns,
                    });
                }
                self.role == Role::Primary && self.session.is_some() && !self.leaving
            }
        };
        let len = len as u64;
        let charge = len + UNIT_CHARGE_BYTES;
        if replicated {
            if self.unacked_units > 0
                && self.unacked_charge.saturating_add(charge) > self.cfg.max_unacked_bytes
            {
                return Err(Backpressure::UnackedBytes {
                    limit: self.cfg.max_unacked_bytes,
                });
            }
            if self
                .session
                .as_ref()
                .is_some_and(|s| s.data_queued() >= self.cfg.max_forward_queue)
            {
                return Err(Backpressure::QueueFull {
                    limit: self.cfg.max_forward_queue,
                });
            }
        }
        let c = self.out_conns.entry(conn).or_insert(OutConn {
            next_seq: 0,
            held: VecDeque::new(),
            replicated,
        });
        let seq = c.next_seq;
        c.next_seq += 1;
        match (replicated, self.session.as_mut()) {
            (true, Some(s)) => {
                c.held.push_back(Held { seq, len });
                self.unacked_units += 1;
                self.unacked_bytes += len;
                self.unacked_charge += charge;
                self.counters.logged_units += 1;
                trace!(%conn, seq, len, "unit logged, held for ack");
                s.queue.push_back(Msg::Unit {
                    conn,
                    seq,
                    index,
                    kind,
                    input_end,
                    close_after,
                    local,
                    payload,
                });
            }
            _ => {
                self.counters.unreplicated_units += 1;
                self.counters.released_units += 1;
                trace!(%conn, seq, len, "unit released unreplicated");
                self.push_event(Event::Release { conn, seq }, None);
            }
        }
        Ok(seq)
    }

    /// The connection ended here: forget it.
    ///
    /// Primary side: held units are dropped (never released) and, if the
    /// connection was replicated, the peer is told with `ConnGone`. Ingress
    /// side: everything received is acknowledged and later units for it are
    /// acknowledged without an event, until the primary's `ConnGone`.
    pub fn conn_gone(&mut self, conn: ConnKey) {
        if let Some(c) = self.out_conns.remove(&conn) {
            for h in &c.held {
                self.unacked_units -= 1;
                self.unacked_bytes -= h.len;
                self.unacked_charge -= h.len + UNIT_CHARGE_BYTES;
            }
            debug!(%conn, dropped_units = c.held.len(), "connection gone");
            if c.replicated {
                if let Some(s) = self.session.as_mut() {
                    s.queue.push_back(Msg::ConnGone { conn });
                    s.gone_in_queue += 1;
                }
            }
        }
        if let Some(c) = self.mirror_conns.get_mut(&conn) {
            if c.gone_local {
                return;
            }
            debug!(%conn, "mirrored connection gone here");
            c.gone_local = true;
            // Queued `Logged` events of this connection stop counting.
            self.next_incarnation += 1;
            c.incarnation = self.next_incarnation;
            if let Some(s) = self.session.as_mut() {
                s.unpolled_units -= c.unpolled_units;
                s.unpolled_charge -= charge_of(c.unpolled_units, c.unpolled_bytes);
                if let Some(last) = c.expected_seq.checked_sub(1) {
                    queue_ack(s, c, conn, last);
                }
            }
            c.unpolled_units = 0;
            c.unpolled_bytes = 0;
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
    /// units, else the ingress side.
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

    /// No peer came within the cold-start wait: serve alone. Nothing is
    /// held (no session ever carried a unit), but the epoch counts it, so a
    /// peer that boots later learns from `Hello` that this node may hold
    /// the address.
    fn peer_absent(&mut self, waited: Duration) {
        if self.role == Role::Simplex {
            return;
        }
        let old = self.role;
        self.role = Role::Simplex;
        self.takeovers += 1;
        warn!(
            role = ?old,
            waited_ms = waited.as_millis() as u64,
            "no replication peer since the start: serving alone"
        );
        self.push_event(Event::PeerAbsent { waited }, None);
    }

    /// Declares the peer dead: become simplex, release held units.
    fn peer_dead(&mut self, since_heard: Duration, left: bool) {
        if self.role == Role::Simplex {
            return;
        }
        let old = self.role;
        self.role = Role::Simplex;
        self.session = None;
        self.takeovers += 1;
        if left {
            warn!(
                role = ?old,
                held_units = self.unacked_units,
                "replication peer leaving (planned stop), taking over"
            );
        } else {
            info!(
                role = ?old,
                since_heard_ms = since_heard.as_millis() as u64,
                held_units = self.unacked_units,
                "replication peer dead, taking over"
            );
        }
        self.push_event(Event::PeerDead { since_heard, left }, None);
        for (&conn, c) in &mut self.out_conns {
            c.replicated = false;
            for h in c.held.drain(..) {
                self.counters.released_units += 1;
                self.events.push_back(Queued {
                    event: Event::Release { conn, seq: h.seq },
                    logged: None,
                });
            }
        }
        self.unacked_units = 0;
        self.unacked_bytes = 0;
        self.unacked_charge = 0;
        // The caller keeps the `Logged` events still queued (they precede
        // `PeerDead`); their tags no longer match anything.
        self.mirror_conns.clear();
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
