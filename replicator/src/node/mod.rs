//! The node core: every service address a node takes part in, each with its
//! role as data, driven sans-IO (quinn-proto's Endpoint → Connection split).
//!
//! A node holds a *site* per service address: its smoltcp [`Engine`], its
//! HTTP connections, and — when the role is replicated — a [`Replica`] for
//! the link to the peer that shares the address. Roles per address
//! ([`Role`]): `Owner` (owns the address on the LAN: shadows and forwards;
//! the paper's backup), `Primary` (runs the application for an address a
//! peer owns), `Simplex` (alone). Promotion and claim turn a site's role
//! into `Simplex`; fencing silences one site.
//!
//! Where a frame comes from decides its path, as the paper's kernel module
//! decides by port: a frame from the TAP goes to the site of the address it
//! is for (by IPv4 destination, or the ARP target), which shadows it if it
//! owns the address; a frame forwarded over a peer's link reaches the site
//! of the link message's channel, which is primary for it. One link per
//! pair of nodes carries every address they share, both directions: each
//! message names its address ([`crate::wire`]'s channel).
//!
//! Inputs: [`NodeCore::handle_lan_frame`], [`NodeCore::handle_link_up`],
//! [`NodeCore::handle_link_msg`], [`NodeCore::handle_link_lost`],
//! [`NodeCore::handle_job_done`], [`NodeCore::handle_job_unreachable`],
//! [`NodeCore::handle_app_check`]. Then [`NodeCore::round`] (repeat while
//! it returns true). Outputs: [`NodeCore::poll_lan_transmit`],
//! [`NodeCore::poll_link_transmit`], [`NodeCore::poll_job`],
//! [`NodeCore::poll_app_check`], [`NodeCore::poll_link_action`], and
//! [`NodeCore::poll_timeout`] for when to call again. Time is passed in.
//! One round — `round`, then every output but LAN frames — is [`step`]
//! (`drive.rs`), which the TAP shell (appliance) and the simulation both
//! call through their [`Drive`]; each pulls LAN frames itself, one at a
//! time with the clock read then.
//!
//! This file holds the types, construction, frames, links and handlers;
//! `round` the round (one handler per replication event, then the
//! takeover step); `state` a site's phase, its one transition function,
//! and the state status reports ([`SiteState`]); `drive` the one round
//! both shells run and the link decisions; `takeover` its helpers (the pause check, the LAN
//! and application checks' decisions, rejoin); `accessors` the read-only accessors for
//! status and metrics; `conn` a site's HTTP connections.

mod accessors;
pub mod app;
mod conn;
mod drive;
mod fall_rise;
mod handler;
pub mod lan;
mod reload;
mod round;
mod state;
pub mod stats;
mod takeover;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hotpair_http::{Limits, Response};
use hotpair_stack::smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};
use hotpair_stack::{Admission, ConnId, Engine, Frame, StackConfig};
use thiserror::Error;

pub use app::{AppCheck, AppCheckConfig};
pub use conn::{
    decode_tls_unit, encode_tls_unit, Conn, HandshakeDone, HandshakeWork, Served, TlsJob,
    MAX_SERVED, TLS_INDEX,
};
use conn::{Shared, SiteConns};
pub use drive::{send_link_messages, step, Drive, LinkAction};
pub use handler::{Handler, Job, Route, Work};
pub use lan::{LanChange, LanCheck, LanCheckConfig};
pub use reload::Reloaded;
use state::Phase;
pub use state::{SiteState, UnknownSiteState};

use crate::wire::RouteDigest;
use crate::{Msg, Policy, ProtocolError, Replica, ReplicaConfig, Role};

/// A peer of this node, by its index in [`NodeConfig::peers`].
pub type PeerId = usize;

/// One service address as configured.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// The address and its prefix.
    pub address: Ipv4Cidr,
    /// Default gateway for clients off the subnet.
    pub gateway: Option<Ipv4Address>,
    /// TCP port served with plain HTTP.
    pub port: u16,
    /// How many connections the address admits, and how (its engine
    /// is held to it as it is).
    pub admission: Admission,
    /// The starting role.
    pub role: Role,
    /// The peer sharing the address (`Owner`: its primary; `Primary`: its
    /// owner); `None` for `Simplex`.
    pub peer: Option<PeerId>,
    /// Also serve HTTPS (TLS 1.3) on a second port of the address; `None`:
    /// plain HTTP on `port` only. Both nodes sharing the address must
    /// agree.
    pub tls: Option<SiteTls>,
}

/// HTTPS on a service address: beside its HTTP `port`, the same address
/// serves TLS on `port` here — one engine, one set of sockets; each
/// connection speaks TLS or not by the port it reached.
#[derive(Debug, Clone)]
pub struct SiteTls {
    /// The TCP port served with TLS (not the address's HTTP port).
    pub port: u16,
    /// The server configuration (certificates, ticket keys).
    pub config: std::sync::Arc<hotpair_tls::TlsServerConfig>,
}

/// Everything a node core is built from.
pub struct NodeConfig {
    /// This node's name (sent in `Hello`).
    pub name: String,
    /// The node's own MAC on the LAN.
    pub mac: EthernetAddress,
    /// The service addresses, each with its role.
    pub sites: Vec<SiteConfig>,
    /// The peers, indexed by [`PeerId`]: the name a peer's `Hello` must
    /// carry (`None`: any; the one-address legacy config names no peer).
    pub peers: Vec<Option<String>>,
    /// Heartbeat period on each link.
    pub heartbeat_interval: Duration,
    /// Silence after which a peer is declared dead.
    pub heartbeat_timeout: Duration,
    /// How long after the start a site waits for its peer's link before
    /// it serves alone ([`crate::Event::PeerAbsent`]).
    pub cold_start_wait: Duration,
    /// Check that this node reaches the service LAN (see [`lan`]); `None`:
    /// not checked, taken as reachable.
    pub lan_check: Option<LanCheckConfig>,
    /// Check that the application behind the node answers (see [`app`]);
    /// `None`: not checked, taken as answering.
    pub app_check: Option<AppCheckConfig>,
    /// Per-connection socket buffers.
    pub rx_buffer_bytes: usize,
    /// Per-connection socket buffers.
    pub tx_buffer_bytes: usize,
    /// HTTP limits.
    pub limits: Limits,
    /// Routes (first match wins: give them longest prefix first).
    pub routes: Vec<Route>,
    /// Seeds smoltcp's RNGs (ISNs) and `generate`.
    pub seed: u64,
}

/// A configuration the core cannot run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NodeConfigError {
    /// No service address.
    #[error("no service address")]
    NoSites,
    /// Two sites with one address.
    #[error("service address {0} appears twice")]
    DuplicateAddress(Ipv4Address),
    /// A replicated role without a peer, or a peer index out of range.
    #[error("service address {0}: role {1:?} needs a valid peer")]
    BadPeer(Ipv4Address, Role),
    /// A `Simplex` site with a peer.
    #[error("service address {0}: serves alone but names a peer")]
    PeerForSimplex(Ipv4Address),
    /// `static`/`sync-static` on a route whose replies the owner node
    /// cannot make itself.
    #[error("route {0}: static and sync-static need a files route")]
    StaticNeedsFiles(String),
    /// The HTTPS port is the HTTP port: a connection's port is what says
    /// whether it speaks TLS.
    #[error("service address {0}: TLS port {1} is also its HTTP port")]
    TlsPortIsHttpPort(Ipv4Address, u16),
}

/// Why a link message was refused. The caller drops the link and calls
/// [`NodeCore::handle_link_lost`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LinkError {
    /// The message is about an address this node does not share with that peer.
    #[error("message on channel {channel:#010x}, an address not shared with this peer")]
    UnknownChannel {
        /// The channel the message named.
        channel: u32,
    },
    /// The peer's `Hello` names another node.
    #[error("peer introduced itself as {got:?}, expected {expected:?}")]
    WrongPeer {
        /// The name configured for this link.
        expected: String,
        /// The name in its `Hello`.
        got: String,
    },
    /// The peer broke the replication protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// A takeover or a change of a site's role, for the shell to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange {
    /// The site's primary died: its shadows were promoted.
    Promoted {
        /// The service address.
        address: Ipv4Address,
        /// Connections promoted.
        connections: u64,
    },
    /// The site's owner died: this node started claiming the address.
    Claiming {
        /// The service address.
        address: Ipv4Address,
    },
}

struct Site {
    cfg: SiteConfig,
    channel: u32,
    engine: Engine<Conn>,
    conns: SiteConns,
    replica: Option<Replica>,
    /// What the node core decided for the site beyond its engine and
    /// replica (starting, active, standing by); changed only through
    /// [`Site::transition`].
    phase: Phase,
    /// The fence warning was given (or needs none: a routine start, a
    /// handover) — said once per fence, not every round; a rate limit,
    /// not a state.
    fenced_reported: bool,
    /// This node was paused past the heartbeat timeout while it was an
    /// owner node: its peer may have claimed the address meanwhile, so
    /// it probes before it promotes. A latch on the next `PeerDead`, set
    /// by the pause check in any phase (a booting owner may be paused
    /// too), so it stays beside the phase.
    suspect: bool,
    /// An owner that rejoined: say the address is ours again once the
    /// primary confirmed its role (its `Routes`, sent after its rejoin).
    /// A step owed, kept across link sessions and phases until the
    /// `Routes` come.
    reassert: bool,
    /// The peer's `Routes` of this session arrived (it has rejoined): a
    /// fact of the link session, reset on each `PeerUp`.
    routes_seen: bool,
    /// A link session came up while this site probed for its address: it
    /// rejoins once the probes decided who holds the connections (fenced:
    /// the peer does; claimed or promoted: this node does), so that exactly
    /// one node keeps each connection. A step owed, in any phase (an
    /// owner's boot probes, a takeover's, or standing by).
    rejoin_pending: bool,
    /// Per route: the peer reported the same policy and content digest in
    /// this link session (the digest guard); until then, and on any
    /// difference, `static` routes are logged.
    static_ok: Vec<bool>,
    /// The peer's `Routes` of this link session, kept to compare again
    /// when this node reloads its routes.
    peer_routes: Option<Vec<RouteDigest>>,
}

/// A request the application could not take, waiting for the application
/// check's verdict: if the application is found down the peer takes the
/// connection over and runs the request again (same request id), and this
/// error reply is never sent; otherwise it goes out at `until`.
struct HeldReply {
    site: usize,
    conn: ConnId,
    index: u64,
    response: Response,
    until: Instant,
}

struct Peer {
    name: Option<String>,
    /// Next site to poll for this link's messages (fairness between
    /// addresses on one link).
    next: usize,
    /// The shell has a session on this link (between `handle_link_up`
    /// and `handle_link_lost`).
    up: bool,
    /// No link task is trying this peer: the core held it down while
    /// `link_allowed` said no (see `drive.rs`).
    held: bool,
}

/// The node core. See the module docs.
pub struct NodeCore {
    name: String,
    sites: Vec<Site>,
    peers: Vec<Peer>,
    shared: Shared,
    changes: VecDeque<RoleChange>,
    /// Link set-ups decided for the shell ([`NodeCore::poll_link_action`]).
    link_actions: VecDeque<LinkAction>,
    /// Next site whose LAN output goes first.
    next_tx: usize,
    /// This node's routes as `Msg::Routes` reports them.
    route_digests: Vec<RouteDigest>,
    /// The peers' heartbeat timeout: silence past it lets a peer take over.
    heartbeat_timeout: Duration,
    /// The latest time any input or round was handed in: a longer gap
    /// than the heartbeat timeout means this node was paused (SIGSTOP, a
    /// stalled VM) and its peers may have taken over.
    last_call: Option<Instant>,
    /// Pauses detected so far.
    pauses: u64,
    /// The LAN check, if configured.
    lan: Option<LanCheck>,
    /// The application check, if configured.
    app: Option<AppCheck>,
    /// Error replies held for the application check's verdict.
    held: Vec<HeldReply>,
    /// The application is down and the handover waits for the connections
    /// only this node serves to go (their requests go to the route's
    /// fallback meanwhile; see `NodeCore::app_changed`).
    app_handover_deferred: bool,
}

/// The channel naming a service address on the link.
pub fn channel_of(address: Ipv4Address) -> u32 {
    u32::from_be_bytes(address.octets())
}

/// The IPv4 address a LAN frame is for: an IPv4 packet's destination, an ARP
/// packet's target (or, for an answer to a probe, whose target is 0.0.0.0,
/// its sender).
fn frame_addresses(frame: &[u8]) -> Option<(Ipv4Address, Option<Ipv4Address>)> {
    if frame.len() < 14 {
        return None;
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 if frame.len() >= 34 => Some((
            Ipv4Address::from_octets([frame[30], frame[31], frame[32], frame[33]]),
            None,
        )),
        0x0806 => {
            let a = hotpair_stack::arp::parse(frame)?;
            Some((a.target_ip, Some(a.sender_ip)))
        }
        _ => None,
    }
}

/// Each route as `Msg::Routes` reports it: its prefix, policy and content
/// digest (the generation a `static` reply is made from).
fn digests_of(routes: &[Route]) -> Result<Vec<RouteDigest>, NodeConfigError> {
    let mut out = Vec::with_capacity(routes.len());
    for r in routes {
        let digest = match (&r.handler, r.policy) {
            (Handler::Files(files), _) => files.digest(),
            (_, Policy::Logged) => [0; 32],
            _ => return Err(NodeConfigError::StaticNeedsFiles(r.prefix.clone())),
        };
        out.push(RouteDigest {
            prefix: r.prefix.clone(),
            policy: r.policy.code(),
            digest,
        });
    }
    Ok(out)
}

/// The digest guard: a `static`/`sync-static` route is used as such only if
/// the peer has a route with the same prefix, policy and content digest.
fn compare_routes(
    ours: &[RouteDigest],
    theirs: &[RouteDigest],
    ok: &mut [bool],
    address: Ipv4Address,
) {
    for (i, r) in ours.iter().enumerate() {
        if r.policy == Policy::Logged.code() {
            ok[i] = false;
            continue;
        }
        let peer = theirs.iter().find(|t| t.prefix == r.prefix);
        ok[i] = peer.is_some_and(|t| t.policy == r.policy && t.digest == r.digest);
        if !ok[i] {
            let why = match peer {
                None => "the peer has no such route",
                Some(t) if t.policy != r.policy => "the peer uses another policy for it",
                Some(_) => "the peer's content differs",
            };
            tracing::error!(
                %address,
                route = %r.prefix,
                reason = why,
                "static route falls back to logged: replies would not be byte-identical on both nodes"
            );
        } else {
            tracing::debug!(%address, route = %r.prefix, "static route content matches the peer's");
        }
    }
}

impl NodeCore {
    /// A node at time `now`. Sites that own their address announce it.
    pub fn new(cfg: NodeConfig, now: Instant) -> Result<Self, NodeConfigError> {
        if cfg.sites.is_empty() {
            return Err(NodeConfigError::NoSites);
        }
        let route_digests = digests_of(&cfg.routes)?;
        let mut sites = Vec::with_capacity(cfg.sites.len());
        for (i, sc) in cfg.sites.iter().enumerate() {
            let address = sc.address.address();
            if cfg.sites[..i]
                .iter()
                .any(|o| o.address.address() == address)
            {
                return Err(NodeConfigError::DuplicateAddress(address));
            }
            if let Some(t) = sc.tls.as_ref().filter(|t| t.port == sc.port) {
                return Err(NodeConfigError::TlsPortIsHttpPort(address, t.port));
            }
            let replica = match (sc.role, sc.peer) {
                (Role::Simplex, None) => None,
                (Role::Simplex, Some(_)) => return Err(NodeConfigError::PeerForSimplex(address)),
                (role, Some(p)) if p < cfg.peers.len() => {
                    let mut rc = ReplicaConfig::new(role, cfg.name.clone());
                    rc.heartbeat_interval = cfg.heartbeat_interval;
                    rc.heartbeat_timeout = cfg.heartbeat_timeout;
                    rc.cold_start_wait = cfg.cold_start_wait;
                    rc.mac = cfg.mac.0;
                    // As many replicated connections as the address's pool
                    // may hold (an owner node's bound, the larger), never
                    // fewer than the default: at 65,536 a duplex pair
                    // stopped replying to new connections (issue 9).
                    rc.max_conns = rc.max_conns.max(
                        sc.admission
                            .max_connections
                            .saturating_add(sc.admission.max_half_open.saturating_mul(2))
                            .saturating_add(16),
                    );
                    Some(Replica::new(rc, now))
                }
                (role, _) => return Err(NodeConfigError::BadPeer(address, role)),
            };
            let scfg = StackConfig {
                mac: cfg.mac,
                address: sc.address,
                gateway: sc.gateway,
                port: sc.port,
                alt_port: sc.tls.as_ref().map(|t| t.port),
                admission: sc.admission.clone(),
                rx_buffer_bytes: cfg.rx_buffer_bytes,
                tx_buffer_bytes: cfg.tx_buffer_bytes,
                // Each address its own ISN sequence.
                seed: cfg.seed ^ (u64::from(channel_of(address)) << 17) ^ 0x6a09_e667_f3bc_c908,
            };
            let mut engine = Engine::new(scfg, sc.role, now);
            match sc.role {
                Role::Simplex => engine.announce(),
                // An owner probes first: its peer may hold the address
                // (it took it over while this node was down).
                Role::Owner => {
                    engine.probe_before_promote();
                    engine.set_starting(true);
                }
                // The primary never speaks ARP for an address its peer owns.
                Role::Primary => {}
            }
            sites.push(Site {
                channel: channel_of(address),
                cfg: sc.clone(),
                engine,
                conns: SiteConns::default(),
                replica,
                phase: if sc.role == Role::Owner {
                    Phase::Booting
                } else {
                    Phase::Active
                },
                fenced_reported: false,
                suspect: false,
                reassert: false,
                routes_seen: false,
                rejoin_pending: false,
                static_ok: vec![false; cfg.routes.len()],
                peer_routes: None,
            });
        }
        Ok(NodeCore {
            name: cfg.name,
            sites,
            peers: cfg
                .peers
                .into_iter()
                .map(|name| Peer {
                    name,
                    next: 0,
                    up: false,
                    held: false,
                })
                .collect(),
            shared: Shared {
                digests: route_digests.iter().map(|r| r.digest).collect(),
                retired: Vec::new(),
                generation_missing: 0,
                diverged: 0,
                replies_ahead: 0,
                routes: cfg.routes,
                limits: cfg.limits,
                jobs: VecDeque::new(),
                inline_generate: false,
                tls_jobs: VecDeque::new(),
                served: None,
                served_dropped: 0,
                seed: cfg.seed,
                handler_runs: 0,
                local_replies: 0,
                logged: false,
            },
            changes: VecDeque::new(),
            link_actions: VecDeque::new(),
            next_tx: 0,
            route_digests,
            heartbeat_timeout: cfg.heartbeat_timeout,
            last_call: None,
            pauses: 0,
            lan: cfg.lan_check.map(|c| LanCheck::new(c, cfg.mac, now)),
            app: cfg.app_check.map(|c| AppCheck::new(c, now)),
            held: Vec::new(),
            app_handover_deferred: false,
        })
    }

    // ---- frames ----------------------------------------------------------

    /// A buffer for a frame about to be read (reuses returned buffers).
    pub fn take_buffer(&mut self) -> Vec<u8> {
        self.sites[0].engine.take_buffer()
    }

    /// Give a frame's buffer back.
    pub fn recycle(&mut self, f: Frame) {
        self.sites[0].engine.recycle(f);
    }

    /// A frame from the LAN (the TAP). Frames for no address of ours are
    /// dropped.
    pub fn handle_lan_frame(&mut self, f: Frame) {
        if self.lan.as_mut().is_some_and(|l| l.handle_frame(f.data())) {
            self.recycle(f);
            return;
        }
        let site = frame_addresses(f.data()).and_then(|(dst, sender)| {
            let by = |ip: Ipv4Address| {
                self.sites
                    .iter()
                    .position(|s| s.cfg.address.address() == ip)
            };
            by(dst).or_else(|| sender.and_then(by))
        });
        match site {
            Some(i) => self.sites[i].engine.handle_lan_frame(f),
            None => self.recycle(f),
        }
    }

    /// Next frame for the LAN, at `now`: the shell asks once per frame it
    /// writes, with the clock read then. A node frozen in the middle of a
    /// burst must not send the rest when it resumes — its addresses may
    /// have been taken over meanwhile — so the pause check runs first and
    /// silences what the lease no longer covers.
    #[must_use]
    pub fn poll_lan_transmit(&mut self, now: Instant) -> Option<Frame> {
        self.check_paused(now);
        if let Some(f) = self.lan.as_mut().and_then(LanCheck::poll_transmit) {
            return Some(f);
        }
        let n = self.sites.len();
        for k in 0..n {
            let i = (self.next_tx + k) % n;
            if let Some(f) = self.sites[i].engine.poll_lan_transmit() {
                self.next_tx = (i + 1) % n;
                return Some(f);
            }
        }
        None
    }

    // ---- links -----------------------------------------------------------

    /// The link to `peer` is up: every address shared with it says `Hello`.
    pub fn handle_link_up(&mut self, peer: PeerId, now: Instant) {
        self.check_paused(now);
        self.peers[peer].up = true;
        self.peers[peer].held = false;
        for s in self.sites.iter_mut().filter(|s| s.cfg.peer == Some(peer)) {
            if let Some(r) = s.replica.as_mut() {
                r.handle_connected(now);
            }
        }
    }

    /// Bytes arrived from `peer` (a message may still be incomplete): it
    /// is alive, for every address shared with it.
    pub fn handle_link_progress(&mut self, peer: PeerId, now: Instant) {
        self.check_paused(now);
        for s in self.sites.iter_mut().filter(|s| s.cfg.peer == Some(peer)) {
            if let Some(r) = s.replica.as_mut() {
                r.handle_link_progress(now);
            }
        }
    }

    /// This node stops (a planned stop): tell every peer, after what is
    /// queued for it, so each takes over its shared addresses at once
    /// instead of after the heartbeat timeout (an owner's primary without
    /// probing). The caller runs no more rounds — the node sends nothing
    /// on the LAN from here — and only flushes the links.
    pub fn leave(&mut self) {
        for s in &mut self.sites {
            // Nothing more on the LAN from this node, for any address.
            s.engine.set_leaving();
            if let Some(r) = s.replica.as_mut() {
                r.leave();
            }
        }
    }

    /// Whether a planned stop should keep running a moment after
    /// [`NodeCore::leave`]: an owner with its peer up keeps forwarding the
    /// client frames already on their way to it until the primary's claim
    /// reached the clients.
    pub fn leave_grace_wanted(&self) -> bool {
        self.sites.iter().any(|s| {
            s.engine.mode() == Role::Owner
                && s.replica
                    .as_ref()
                    .is_some_and(|r| r.peer_state() == crate::PeerState::Up)
        })
    }

    /// The link to `peer` failed or closed: it is dead for every address
    /// shared with it (the next round takes over). The core decides when
    /// to try it again ([`NodeCore::poll_link_action`]).
    pub fn handle_link_lost(&mut self, peer: PeerId, now: Instant) {
        self.check_paused(now);
        self.peers[peer].up = false;
        for s in self.sites.iter_mut().filter(|s| s.cfg.peer == Some(peer)) {
            if let Some(r) = s.replica.as_mut() {
                r.handle_link_lost(now);
            }
        }
        self.relink_after(peer, drive::RELINK_AFTER_LOSS);
    }

    /// A message from `peer` about the address `channel` names.
    pub fn handle_link_msg(
        &mut self,
        peer: PeerId,
        channel: u32,
        msg: Msg,
        now: Instant,
    ) -> Result<(), LinkError> {
        self.check_paused(now);
        let Some(site) = self
            .sites
            .iter_mut()
            .find(|s| s.channel == channel && s.cfg.peer == Some(peer))
        else {
            return Err(LinkError::UnknownChannel { channel });
        };
        if let Msg::Hello { node, .. } = &msg {
            // The link is a trust boundary: whoever connects must be the
            // node configured for it.
            if let Some(expected) = &self.peers[peer].name {
                if node != expected {
                    return Err(LinkError::WrongPeer {
                        expected: expected.clone(),
                        got: node.clone(),
                    });
                }
            }
        }
        let replica = site
            .replica
            .as_mut()
            .expect("a site with a peer has a replica");
        replica.handle_peer_msg(msg, now)?;
        Ok(())
    }

    /// Next message for `peer`'s link, with its channel. The shell stops
    /// asking while its socket buffer is full (back-pressure).
    #[must_use]
    pub fn poll_link_transmit(&mut self, peer: PeerId) -> Option<(u32, Msg)> {
        let n = self.sites.len();
        let start = self.peers[peer].next;
        for k in 0..n {
            let i = (start + k) % n;
            let s = &mut self.sites[i];
            if s.cfg.peer != Some(peer) {
                continue;
            }
            if let Some(m) = s.replica.as_mut().and_then(Replica::poll_transmit) {
                self.peers[peer].next = (i + 1) % n;
                return Some((s.channel, m));
            }
        }
        None
    }

    /// Whether this node reaches the service LAN (its LAN check; `true`
    /// without one).
    pub fn lan_up(&self) -> bool {
        self.lan.as_ref().is_none_or(LanCheck::is_up)
    }

    /// Whether the application behind this node answers (its application
    /// check; `true` without one).
    pub fn app_up(&self) -> bool {
        self.app.as_ref().is_none_or(AppCheck::is_up)
    }

    /// Whether this node can serve clients: it reaches the LAN and its
    /// application answers. Told to every peer; a peer that cannot serve
    /// is handed nothing.
    pub fn fit(&self) -> bool {
        self.lan_up() && self.app_up()
    }

    /// Number of peers.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    /// Peer `p`'s name.
    pub fn peer_name(&self, peer: PeerId) -> &str {
        self.peers[peer].name.as_deref().unwrap_or("peer")
    }

    // ---- handlers --------------------------------------------------------

    /// Report the requests the core answers itself (`files` routes) through
    /// [`NodeCore::poll_served`] (an access log); off by default.
    pub fn set_report_served(&mut self, on: bool) {
        self.shared.served = on.then(VecDeque::new);
    }

    /// Next request the core answered itself, once
    /// [`NodeCore::set_report_served`] asked for them; at most
    /// [`MAX_SERVED`] wait, more are dropped and counted
    /// ([`NodeCore::served_dropped`]).
    #[must_use]
    pub fn poll_served(&mut self) -> Option<Served> {
        self.shared.served.as_mut()?.pop_front()
    }

    /// Records [`NodeCore::poll_served`] dropped since the last call
    /// because the shell did not take them in time.
    pub fn take_served_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.shared.served_dropped)
    }

    /// Next request for the shell to answer.
    #[must_use]
    pub fn poll_job(&mut self) -> Option<Job> {
        self.shared.jobs.pop_front()
    }

    /// Next TLS handshake step for the shell to run off the round.
    #[must_use]
    pub fn poll_tls_job(&mut self) -> Option<TlsJob> {
        self.shared.tls_jobs.pop_front()
    }

    /// A [`TlsJob`] run: its result goes back to its connection (dropped
    /// if the connection is gone).
    pub fn handle_tls_job_done(&mut self, site: usize, conn: ConnId, done: HandshakeDone) {
        if let Some(s) = self.sites.get_mut(site) {
            s.conns.tls_job_done(conn, done);
        }
    }

    /// The reply to a [`Job`]. A reply for a connection that is gone is
    /// dropped.
    pub fn handle_job_done(&mut self, site: usize, conn: ConnId, index: u64, response: Response) {
        if let Some(s) = self.sites.get_mut(site) {
            s.conns.reply(conn, index, response);
        }
    }

    /// A [`Job`] the application could not take at all (connection
    /// refused, reset or closed before any reply): `response` is the
    /// error reply for the client. With an application check and a peer
    /// that can serve, the reply is held for the check's verdict (see
    /// [`HeldReply`]) — the request may run again on the peer's
    /// application, so the client sees its reply, not an error.
    /// Otherwise it is sent as [`NodeCore::handle_job_done`] would.
    pub fn handle_job_unreachable(
        &mut self,
        site: usize,
        conn: ConnId,
        index: u64,
        response: Response,
        now: Instant,
    ) {
        let Some(app) = self.app.as_mut() else {
            return self.handle_job_done(site, conn, index, response);
        };
        let change = app.handle_unreachable(now);
        let until = now + app.verdict_wait();
        let peer_can_take = self.sites.get(site).is_some_and(|s| {
            s.phase != Phase::StandingBy
                && !s.engine.fenced()
                && s.replica.as_ref().is_some_and(Replica::peer_can_take_over)
        });
        if peer_can_take {
            self.held.push(HeldReply {
                site,
                conn,
                index,
                response,
                until,
            });
        } else {
            self.handle_job_done(site, conn, index, response);
        }
        if let Some(up) = change {
            self.app_changed(up);
        }
    }

    /// The local application refused or dropped a request that another
    /// instance (the route's fallback) then answered: evidence for the
    /// application check, as in [`NodeCore::handle_job_unreachable`], with
    /// nothing to hold.
    pub fn handle_app_unreachable(&mut self, now: Instant) {
        if let Some(up) = self.app.as_mut().and_then(|a| a.handle_unreachable(now)) {
            self.app_changed(up);
        }
    }

    /// Whether the shell should run an application check now.
    #[must_use]
    pub fn poll_app_check(&mut self) -> bool {
        self.app.as_mut().is_some_and(AppCheck::poll_check)
    }

    /// The result of the application check the shell ran.
    pub fn handle_app_check(&mut self, ok: bool) {
        if let Some(up) = self.app.as_mut().and_then(|a| a.handle_result(ok)) {
            self.app_changed(up);
        }
    }

    /// When the node next needs a round, if nothing arrives before.
    #[must_use]
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut at_most = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        if let Some(l) = &self.lan {
            at_most(l.poll_timeout());
        }
        if let Some(a) = &self.app {
            at_most(a.poll_timeout());
        }
        for h in &self.held {
            at_most(h.until);
        }
        for s in &mut self.sites {
            if let Some(d) = s.engine.poll_delay(now) {
                at_most(now + d);
            }
            if let Some(t) = s.replica.as_ref().and_then(Replica::poll_timeout) {
                at_most(t);
            }
        }
        at
    }

    /// Every site is fenced: the node has nothing left to serve.
    pub fn all_fenced(&self) -> bool {
        self.sites.iter().all(|s| s.engine.fenced())
    }
}
