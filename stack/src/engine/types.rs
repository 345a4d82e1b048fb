//! The engine's vocabulary: its configuration, frames, roles, the names of
//! a connection, the service that runs on top, and the counters.

use std::time::{Duration, Instant as StdInstant};

use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};

use super::cookie::CookieKey;
use super::HEADROOM;

/// Static settings of the stack.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The node's own unicast MAC (not the TAP's).
    pub mac: EthernetAddress,
    /// The service address and its prefix.
    pub address: Ipv4Cidr,
    /// Default gateway for clients off the local subnet.
    pub gateway: Option<Ipv4Address>,
    /// The port the address serves (HTTP; idle listeners wait on it).
    pub port: u16,
    /// A second port the same address serves (HTTPS, when the node core
    /// runs TLS on it), on the same interface, sockets and bounds: one
    /// SYN queue, one pool, one per-source count for both ports. `None`:
    /// `port` only. Must differ from `port`.
    pub alt_port: Option<u16>,
    /// How many connections the address admits, and how.
    pub admission: Admission,
    pub rx_buffer_bytes: usize,
    pub tx_buffer_bytes: usize,
    /// Seed for smoltcp's RNG (ISNs, ephemeral ports).
    pub seed: u64,
}

/// How many connections a service address admits, and how: the bounds
/// its engine holds it to and its SYN cookies. The node core's site
/// configuration holds one and hands it to the engine as it is.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The most connections at once: beyond it, the oldest idle ones are
    /// closed for new ones. Half-open connections and armed listeners have
    /// their own room beyond it (an owner node's engine a second SYN
    /// queue's: see `Engine::pool_limit`).
    pub max_connections: usize,
    /// The most half-open connections (SYN received, handshake not done)
    /// at once; at the bound a new SYN is answered with a SYN cookie (see
    /// `syn_cookies`), or without cookies the oldest is dropped for it.
    pub max_half_open: usize,
    /// A handshake not completed within this is dropped.
    pub half_open_timeout: Duration,
    /// The most connections one client address may hold at once.
    pub max_per_source: usize,
    /// SYN cookies: their key (the same on both nodes of a pair), and
    /// whether this node sends them at the half-open bound. `None`: no
    /// cookies at all (tests, the simulation).
    pub syn_cookies: Option<SynCookies>,
}

/// How a node uses SYN cookies.
#[derive(Debug, Clone)]
pub struct SynCookies {
    /// What cookies are made and checked with.
    pub key: CookieKey,
    /// Answer SYNs with cookies at the half-open bound (else the oldest
    /// handshake is dropped for a new SYN). Cookies are checked either
    /// way: a peer that sends them must find them good here.
    pub send: bool,
    /// The wall clock (since the Unix epoch) at the engine's start
    /// instant: the cookies' counter is wall time, which the engine, given
    /// only monotonic instants, reckons from it.
    pub wall_start: Duration,
}

/// A client TCP 4-tuple as seen from the node: (client address, client port, local port).
pub type Tuple = (Ipv4Address, u16, u16);

/// An Ethernet frame in a buffer with headroom: the frame is `buf[start..]`.
#[derive(Debug, Clone)]
pub struct Frame {
    pub buf: Vec<u8>,
    pub start: usize,
    /// Segment size the device should cut this frame into (TSO), if any.
    pub gso: Option<u16>,
}

impl Frame {
    /// A frame copied from `data`, with headroom.
    pub fn copy_from(data: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(HEADROOM + data.len());
        crate::bytes::extend_zeroed(&mut buf, HEADROOM);
        buf.extend_from_slice(data);
        Frame {
            buf,
            start: HEADROOM,
            gso: None,
        }
    }
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }
}

/// What a node does for one service address: the one role type of the
/// engine, the protocol core and the config. Promotion and claim turn
/// `Owner` and `Primary` into `Simplex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Serve the address alone, unreplicated (no live peer).
    Simplex,
    /// Run the application for the address's connections; a peer owns the
    /// address on the LAN (hears the clients, forwards their frames).
    Primary,
    /// Own the address on the LAN (the paper's backup): shadow every
    /// connection and forward client frames to the peer that is primary.
    Owner,
}

/// Identifies one connection for its whole life: the pool slot plus a
/// generation that changes each time the slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub slot: u32,
    pub generation: u32,
}

/// A connection's name on every node: the client's endpoint and initial
/// sequence number (which tells a reused port apart).
///
/// The server port (an address may serve two: HTTP and HTTPS) is not part
/// of it. Two connections from one client endpoint to the two ports at
/// once are possible, but the ISN tells them apart as it tells a reused
/// port apart: a client picks each connection's ISN afresh (RFC 6528 mixes
/// the whole 4-tuple, so the same endpoint to another port gets another
/// one), and both nodes see the same SYN. Adding the port would change
/// every message on the link for a collision of 2⁻³² per such pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    pub client_ip: Ipv4Address,
    pub client_port: u16,
    pub client_isn: u32,
}

impl std::fmt::Display for ConnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}#{}",
            self.client_ip, self.client_port, self.client_isn
        )
    }
}

/// What the service learns about a new connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub remote: IpEndpoint,
    /// The port the client connected to (the address's `port` or its
    /// `alt_port`): what the service runs on it (HTTP or HTTPS) follows.
    pub local_port: u16,
    pub key: ConnKey,
    /// A shadow of a connection the primary serves (owner mode).
    pub shadow: bool,
}

/// What runs on top of the engine: the HTTP server and replication glue.
pub trait Service {
    /// Per-connection state.
    type Conn;
    /// A listener completed a handshake (or a shadow did).
    fn accept(&mut self, id: ConnId, info: &ConnInfo, now: StdInstant) -> Self::Conn;
    /// The socket may have changed or the connection was woken: move bytes
    /// between the socket and the connection. Returns its next deadline.
    fn drive(
        &mut self,
        id: ConnId,
        conn: &mut Self::Conn,
        socket: &mut tcp::Socket<'_>,
        now: StdInstant,
    ) -> Option<StdInstant>;
    /// The connection is gone (closed, reset or timed out).
    fn closed(&mut self, id: ConnId, conn: Self::Conn);
    /// Connections with new work since the last call (replies arrived).
    fn woken(&mut self, out: &mut Vec<ConnId>);
    /// A shadow connection became live (takeover): serve it from now on.
    /// `unacked`: the bytes its socket holds that the client has not
    /// acknowledged (what the takeover sends again).
    fn promote(&mut self, _id: ConnId, _conn: &mut Self::Conn, _unacked: usize, _now: StdInstant) {}
    /// Since when the connection has been idle — a keep-alive connection
    /// between requests, nothing received, owed or being written — if it
    /// is and this node decides its close (never a shadow). When new
    /// connections go beyond `max_connections`, the engine closes the
    /// oldest idle ones first.
    fn idle_since(&self, _conn: &Self::Conn) -> Option<StdInstant> {
        None
    }
    /// Close an idle connection to make room for a new client: an orderly
    /// close (a FIN after everything owed; under replication a logged
    /// close, so the shadow closes at the same byte), never a reset. The
    /// engine drives the connection in its next round. Returns whether it
    /// will close.
    fn evict_idle(&mut self, _id: ConnId, _conn: &mut Self::Conn, _now: StdInstant) -> bool {
        false
    }
}

/// Counters for status and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct EngineStats {
    /// Probe rounds a fenced site ran to see whether its peer still holds
    /// the address.
    pub reprobes: u64,
    /// Owner: segments of no known connection dropped (the primary holds
    /// none this node does not know, or the pass-through budget was spent).
    pub unknown_dropped: u64,
    /// Frames whose source MAC differed from a fresh neighbour entry and
    /// that belonged to no connection held here: not learned (spoofing).
    pub neighbor_refused: u64,
    /// Announcements of our address by another node's MAC while serving it
    /// alone (split brains seen).
    pub conflicts: u64,
    pub accepted: u64,
    pub closed: u64,
    pub active: usize,
    pub time_wait_recycled: u64,
    pub duplicate_syn: u64,
    pub forwarded: u64,
    pub not_forwarded: u64,
    pub held: u64,
    pub held_dropped: u64,
    pub passed_through: u64,
    pub promoted: u64,
    /// Half-open connections now (SYN received, handshake not completed).
    pub half_open: usize,
    /// Half-open connections dropped after `half_open_timeout`.
    pub half_open_expired: u64,
    /// Half-open connections dropped, oldest first, to admit a new SYN at
    /// the `max_half_open` bound.
    pub half_open_evicted: u64,
    /// SYNs answered with a SYN cookie (the half-open bound was reached).
    pub syn_cookies_sent: u64,
    /// SYNs beyond the bound from sources with no route (off the LAN, no
    /// gateway): dropped, as no SYN-ACK could reach them.
    pub syn_cookies_unroutable: u64,
    /// Connections opened by a valid cookie in the client's ACK.
    pub syn_cookies_validated: u64,
    /// ACKs of no known connection with a bad or expired cookie, dropped
    /// (counted while this node sends cookies: within their lifetime).
    pub syn_cookies_rejected: u64,
    /// SYNs dropped because their source held `max_per_source` connections.
    pub per_source_refused: u64,
    /// Idle keep-alive connections closed, oldest idle first, because a
    /// new connection went beyond `max_connections`.
    pub idle_evicted: u64,
    /// Connections in FIN-WAIT-2 released for new ones (at
    /// `max_connections`, or when SYNs met a full socket pool).
    pub fin_wait2_reclaimed: u64,
    /// SYNs refused (RST) because no receive buffer could be had: the
    /// slab could map no arena (`engine/slab.rs`).
    pub no_rx_buffer: u64,
    /// Receive buffers of connections with nothing to read whose pages
    /// were given back (see `Engine::release_idle_rx`).
    pub rx_released: u64,
    /// Full-size send buffers lent to connections now (the others hold
    /// none: see `engine/buffers.rs`).
    pub send_buffers_lent: usize,
    /// Slots looked at by rounds so far (each ready slot once per round):
    /// what a round costs, which must follow the active connections.
    pub slots_polled: u64,
    /// Frames for the LAN not sent because this node's role was not
    /// confirmed at the time (no lease from its peer, or probing for the
    /// address): a node that may have been taken over stays silent.
    pub silenced: u64,
    /// Connections reset because their client acknowledged bytes this node
    /// never sent, and nothing else, for `DIVERGED_AFTER`: both nodes
    /// served them in a split brain (see `engine/diverge.rs`).
    pub diverged_reset: u64,
    /// Owner: shadows given up because their reply differed from the
    /// primary's, whose connection kept a forward-only track to the
    /// primary (see `Engine::detach_shadow`).
    pub shadows_detached: u64,
    /// Owner: detached connections now.
    pub detached: usize,
    /// Owner: client segments of detached connections forwarded.
    pub detached_forwarded: u64,
}
