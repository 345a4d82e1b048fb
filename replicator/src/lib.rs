//! The hotpair replication protocol as a pure state machine.
//!
//! Two nodes share one replication link (kernel TCP, owned by the caller).
//! The **owner** node owns the service address: every client frame enters
//! its shadow TCP stack and is then forwarded to the **primary** over the link.
//! The primary runs the application; each *output unit* of an HTTP connection
//! (a whole reply, an interim `100 Continue`, or bytes the HTTP layer itself
//! generated) is sent to the owner node first ("reply logging") and released
//! to the client only once the owner node has acknowledged it. On primary
//! death the owner node promotes its shadow connections; on owner death the
//! primary claims the address and releases every held unit.
//!
//! # Layering
//!
//! * [`wire`]: the link's messages ([`Msg`]) and their byte encoding, with an
//!   incremental [`Decoder`] for a byte stream. Never panics on any input.
//! * [`detector`]: heartbeat scheduling and a timeout failure detector.
//! * [`replica`]: [`Replica`], the per-node protocol core. It owns no socket,
//!   no thread and no clock: inputs arrive through `handle_*` calls with the
//!   current time, outputs leave through `poll_*` calls (quinn-proto style).
//!   The caller (the appliance) moves [`Msg`]s between the link and the core.
//!
//! Time is always passed in; `clippy.toml` bans `Instant::now` and
//! `SystemTime::now` in this crate so runs are reproducible under virtual time.
//! All maps are `BTreeMap`s so output order never depends on hashing.
//!
//! # Limits
//!
//! Every queue is bounded (see [`ReplicaConfig`]): the link queue, the
//! primary's logged-but-unacknowledged bytes, the connection table, the
//! decoder's receive buffer, and the events the peer can cause. Hitting a
//! local limit returns [`Backpressure`]; a peer exceeding one is a
//! [`ProtocolError`].

#![warn(missing_docs)]

pub mod detector;
pub mod layout;
pub mod node;
pub mod replica;
pub mod wire;

pub use detector::{DetectorEvent, FailureDetector};
pub use replica::{
    Backpressure, ConfigError, ConnStats, Event, PeerState, ProtocolError, Replica, ReplicaConfig,
    ReplicaStats,
};
pub use wire::{Decoder, Msg, WireError};

/// The kind of an output unit (the HTTP layer's own type).
pub use hotpair_http::UnitKind;

/// How a route's replies are made safe against a node's death (DESIGN §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// The primary logs each whole reply to the owner node before the
    /// client sees a byte of it.
    Logged,
    /// Active replication: the owner node makes the same reply from its
    /// own copy of the content; only the reply's place in the stream
    /// travels, and the primary does not wait for it.
    Static,
    /// As `Static`, but the primary releases the reply only once the
    /// owner node has made its own (one small message each way).
    SyncStatic,
}

impl Policy {
    /// The byte `Msg::Routes` carries.
    pub fn code(self) -> u8 {
        match self {
            Policy::Logged => 0,
            Policy::Static => 1,
            Policy::SyncStatic => 2,
        }
    }

    /// The config's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Logged => "logged",
            Policy::Static => "static",
            Policy::SyncStatic => "sync-static",
        }
    }
}
/// Identifies one client TCP connection across every node (one type for
/// the engine, the HTTP glue and the wire).
pub use hotpair_stack::ConnKey;
/// What a node does for one service address (one type for the engine, the
/// protocol core and the config).
pub use hotpair_stack::Role;
