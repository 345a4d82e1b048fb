//! Sans-IO TLS 1.3 for hotpair, built so a connection can be replicated
//! and taken over byte-exact (docs/tls.md).
//!
//! - [`TlsServerConfig`]: certificates by SNI, TLS 1.3 only, ALPN
//!   `http/1.1`, 0-RTT refused, tickets under a key both nodes share.
//! - [`ServerHandshake`]: rustls runs the handshake; the driver says when
//!   the server flight is written and hands out the state to log with it.
//! - [`TlsState`]: a connection's replicable state (suite, traffic secrets,
//!   sequence numbers; before the client's Finished, what verifying it
//!   needs), encoded for the replication link.
//! - [`RecordLayer`]: our record layer over a `TlsState`, deterministic so
//!   both nodes compute the same records.
//!
//! Bytes in, bytes out: no sockets, no threads; the one clock read is the
//! ticketer's (which epoch's key seals a session ticket), injectable.

mod config;
mod error;
mod handshake;
mod record;
mod state;
mod suite;
mod ticket;
mod transcript;

pub use config::{CertSpec, TlsServerConfig, TlsSettings, ALPN_HTTP11};
pub use error::{AlertDescription, ConfigError, TlsError};
pub use handshake::{Established, Progress, ServerHandshake};
pub use record::{sealed_len, Deferred, Opened, RecordLayer, TlsEvent, MAX_FRAGMENT};
pub use state::TlsState;
pub use suite::Suite;
pub use ticket::{
    check_rotation, system_clock, Clock, SharedTicketer, TicketKey, DEFAULT_TICKET_ROTATION_SECS,
    MAX_TICKET_ROTATION_SECS, MIN_TICKET_ROTATION_SECS, TICKET_LIFETIME_SECS,
};
