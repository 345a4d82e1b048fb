//! The replica's vocabulary: its configuration, the events it emits, its
//! errors and its statistics.

use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use crate::detector::{DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT};
use crate::wire::{self, MAX_NODE_NAME_LEN};
use crate::{ConnKey, Role};

// For the doc links.
#[cfg(doc)]
use super::Replica;
#[cfg(doc)]
use crate::wire::Msg;

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
/// limits: the owner node enforces the primary's window as a protocol rule.
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
    /// Owner: bytes of client frames queued for the link at most (default
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
    /// the address alone, as after [`Event::PeerDead`] (owner: announce
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
    /// (owner: promote shadow connections; primary: claim the address). The
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
    /// Owner: a logged unit to mirror into the shadow connection. Per
    /// connection these come in `seq` order without gaps. Taking this event
    /// acknowledges the unit to the primary: from then on the caller owns the
    /// only copy the pair has besides the primary's.
    Logged(wire::Unit),
    /// The peer's routes with their policies and content digests
    /// ([`Msg::Routes`]).
    PeerRoutes {
        /// As the peer sent them.
        routes: Vec<crate::wire::RouteDigest>,
    },
    /// Owner: the primary's connection ended; its state here is forgotten.
    ConnGone {
        /// The connection.
        conn: ConnKey,
    },
    /// Primary: a client frame forwarded by the owner node.
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
    /// A message this role never receives (a `Frame` sent to an owner node,
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
    /// `forward_frame`: this node is not the owner node of a live link
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
    /// Connections tracked (primary side + owner side).
    pub conns: usize,
    /// Primary: units logged and not yet acknowledged.
    pub unacked_units: u64,
    /// Primary: payload bytes of those units.
    pub unacked_bytes: u64,
    /// Owner: units received and not yet taken from `poll_event`.
    pub unpolled_units: u64,
    /// Messages waiting in the link queue (`Frame`, `Unit`, `ConnGone`).
    pub queued_msgs: usize,
    /// Owner: frames queued for the primary.
    pub forwarded_frames: u64,
    /// Primary: frames received from the owner node.
    pub received_frames: u64,
    /// Primary: units sent to the peer for logging.
    pub logged_units: u64,
    /// Primary: units released without replication (simplex or unreplicated
    /// connection).
    pub unreplicated_units: u64,
    /// Primary: release events emitted.
    pub released_units: u64,
    /// Owner: units received from the primary.
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
    /// Primary side: the next unit's seq. Owner side: the next expected seq.
    pub next_seq: u64,
    /// Primary: units held for an ack. Owner: units not yet taken.
    pub pending_units: u64,
    /// Payload bytes of those units.
    pub pending_bytes: u64,
    /// Whether units of this connection go to the peer.
    pub replicated: bool,
    /// Owner: the caller reported the connection gone; later units are
    /// acknowledged without an event until the primary's `ConnGone`.
    pub gone_local: bool,
}
