//! The node core: every service address a node takes part in, each with its
//! role as data, driven sans-IO (quinn-proto's Endpoint → Connection split).
//!
//! A node holds a *site* per service address: its smoltcp [`Engine`], its
//! HTTP connections, and — when the role is replicated — a [`Replica`] for
//! the link to the peer that shares the address. Roles per address
//! ([`Role`]): `Ingress` (owns the address on the LAN: shadows and forwards;
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
//! [`NodeCore::handle_job_done`]. Then [`NodeCore::round`] (repeat while it
//! returns true). Outputs: [`NodeCore::poll_lan_transmit`],
//! [`NodeCore::poll_link_transmit`], [`NodeCore::poll_job`], and
//! [`NodeCore::poll_timeout`] for when to call again. Time is passed in. The
//! TAP shell (appliance) and the simulation make exactly these calls.

mod conn;
mod handler;
pub mod lan;
pub mod stats;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hotpair_http::{Limits, Response};
use hotpair_stack::engine::EngineStats;
use hotpair_stack::smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};
use hotpair_stack::{ConnId, Engine, Frame, StackConfig};
use thiserror::Error;

pub use conn::Conn;
use conn::{Shared, SiteConns, SiteDriver};
pub use handler::{Handler, Job, Route, Work};
pub use lan::{LanChange, LanCheck, LanCheckConfig};

use crate::wire::RouteDigest;
use crate::{Event, Msg, Policy, ProtocolError, Replica, ReplicaConfig, ReplicaStats, Role};

/// A peer of this node, by its index in [`NodeConfig::peers`].
pub type PeerId = usize;

/// One service address as configured.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// The address and its prefix.
    pub address: Ipv4Cidr,
    /// Default gateway for clients off the subnet.
    pub gateway: Option<Ipv4Address>,
    /// TCP port served.
    pub port: u16,
    /// Connections at once (established and half-open).
    pub max_connections: usize,
    /// Half-open connections at once (their own bound: a SYN flood cannot
    /// take the pool); the oldest is dropped for a new SYN.
    pub max_half_open: usize,
    /// A handshake not completed within this is dropped.
    pub half_open_timeout: Duration,
    /// The most connections one client address may hold at once.
    pub max_per_source: usize,
    /// The starting role.
    pub role: Role,
    /// The peer sharing the address (`Ingress`: its primary; `Primary`: its
    /// owner); `None` for `Simplex`.
    pub peer: Option<PeerId>,
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
    /// `static`/`sync-static` on a route whose replies the ingress node
    /// cannot make itself.
    #[error("route {0}: static and sync-static need a files route")]
    StaticNeedsFiles(String),
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
    fenced_reported: bool,
    /// This node was paused past the heartbeat timeout while it was an
    /// ingress node: its peer may have claimed the address meanwhile, so
    /// it probes before it promotes.
    suspect: bool,
    /// An owner probing for its address at start: if nobody answers it
    /// announces the address; if someone does (its peer took the address
    /// over while this node was down) it stands by until the link is up.
    booting: bool,
    /// An owner that rejoined: say the address is ours again once the
    /// primary confirmed its role (its `Routes`, sent after its rejoin).
    reassert: bool,
    /// The peer's `Routes` of this session arrived (it has rejoined).
    routes_seen: bool,
    /// A link session came up while this site probed for its address: it
    /// rejoins once the probes decided who holds the connections (fenced:
    /// the peer does; claimed or promoted: this node does), so that exactly
    /// one node keeps each connection.
    rejoin_pending: bool,
    /// Per route: the peer reported the same policy and content digest in
    /// this link session (the digest guard); until then, and on any
    /// difference, `static` routes are logged.
    static_ok: Vec<bool>,
    /// This node's LAN check failed: the site stands by (its peer serves
    /// it, or nobody can) and takes nothing over until it rejoins.
    yielded: bool,
}

struct Peer {
    name: Option<String>,
    /// Next site to poll for this link's messages (fairness between
    /// addresses on one link).
    next: usize,
}

/// The node core. See the module docs.
pub struct NodeCore {
    name: String,
    sites: Vec<Site>,
    peers: Vec<Peer>,
    shared: Shared,
    changes: VecDeque<RoleChange>,
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
        let mut route_digests = Vec::with_capacity(cfg.routes.len());
        for r in &cfg.routes {
            let digest = match (&r.handler, r.policy) {
                (Handler::Files(files), _) => files.digest(),
                (_, Policy::Logged) => [0; 32],
                _ => return Err(NodeConfigError::StaticNeedsFiles(r.prefix.clone())),
            };
            route_digests.push(RouteDigest {
                prefix: r.prefix.clone(),
                policy: r.policy.code(),
                digest,
            });
        }
        let mut sites = Vec::with_capacity(cfg.sites.len());
        for (i, sc) in cfg.sites.iter().enumerate() {
            let address = sc.address.address();
            if cfg.sites[..i]
                .iter()
                .any(|o| o.address.address() == address)
            {
                return Err(NodeConfigError::DuplicateAddress(address));
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
                    // may hold (an ingress node's bound, the larger), never
                    // fewer than the default: at 65,536 a duplex pair
                    // stopped replying to new connections (issue 9).
                    rc.max_conns = rc.max_conns.max(
                        sc.max_connections
                            .saturating_add(sc.max_half_open.saturating_mul(2))
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
                max_connections: sc.max_connections,
                max_half_open: sc.max_half_open,
                half_open_timeout: sc.half_open_timeout,
                max_per_source: sc.max_per_source,
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
                Role::Ingress => engine.probe_before_promote(),
                // The primary never speaks ARP for an address its peer owns.
                Role::Primary => {}
            }
            sites.push(Site {
                channel: channel_of(address),
                cfg: sc.clone(),
                engine,
                conns: SiteConns::default(),
                replica,
                fenced_reported: false,
                suspect: false,
                booting: sc.role == Role::Ingress,
                reassert: false,
                routes_seen: false,
                rejoin_pending: false,
                static_ok: vec![false; cfg.routes.len()],
                yielded: false,
            });
        }
        Ok(NodeCore {
            name: cfg.name,
            sites,
            peers: cfg
                .peers
                .into_iter()
                .map(|name| Peer { name, next: 0 })
                .collect(),
            shared: Shared {
                routes: cfg.routes,
                limits: cfg.limits,
                jobs: VecDeque::new(),
                inline_generate: false,
                seed: cfg.seed,
                handler_runs: 0,
                local_replies: 0,
                logged: false,
            },
            changes: VecDeque::new(),
            next_tx: 0,
            route_digests,
            heartbeat_timeout: cfg.heartbeat_timeout,
            last_call: None,
            pauses: 0,
            lan: cfg.lan_check.map(|c| LanCheck::new(c, cfg.mac, now)),
        })
    }

    /// Run `generate` inside the round instead of handing it out as a job
    /// (the deterministic simulation; it never uses external routes).
    pub fn set_inline_generate(&mut self, inline: bool) {
        self.shared.inline_generate = inline;
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of service addresses.
    pub fn sites(&self) -> usize {
        self.sites.len()
    }

    /// Site `i`'s address.
    pub fn address(&self, site: usize) -> Ipv4Address {
        self.sites[site].cfg.address.address()
    }

    /// Site `i`'s role now (after any takeover).
    pub fn role(&self, site: usize) -> Role {
        self.sites[site].engine.mode()
    }

    /// Site `i`'s engine counters.
    pub fn engine_stats(&self, site: usize) -> EngineStats {
        self.sites[site].engine.stats()
    }

    /// Site `i`'s replication counters, if it is replicated.
    pub fn replica_stats(&self, site: usize) -> Option<ReplicaStats> {
        self.sites[site].replica.as_ref().map(Replica::stats)
    }

    /// Site `i`'s open connections (live and shadow).
    pub fn connections(&self, site: usize) -> usize {
        self.sites[site].conns.len()
    }

    /// Site `i`'s connections shadowed here for its primary.
    pub fn shadow_connections(&self, site: usize) -> usize {
        self.sites[site].conns.shadows()
    }

    /// Site `i`'s connections answered here that no peer shadows (opened
    /// while alone, or taken over): a planned stop cannot hand them over.
    pub fn unreplicated_connections(&self, site: usize) -> usize {
        self.sites[site].conns.unreplicated()
    }

    /// Whether site `i` was fenced (its peer answered for the address).
    pub fn fenced(&self, site: usize) -> bool {
        self.sites[site].engine.fenced()
    }

    /// Requests handed to a handler so far (a test counts re-executions).
    pub fn handler_runs(&self) -> u64 {
        self.shared.handler_runs
    }

    /// Requests of site `i`'s address handed to a handler so far (a test
    /// counts re-executions per address).
    pub fn site_handler_runs(&self, site: usize) -> u64 {
        self.sites[site].conns.handler_runs
    }

    /// Site `i`'s connections aborted at the send timeout (a client that
    /// stopped reading).
    pub fn send_timeouts(&self, site: usize) -> u64 {
        self.sites[site].conns.send_timeouts
    }

    /// `static` replies this node made itself as an ingress node.
    pub fn local_replies(&self) -> u64 {
        self.shared.local_replies
    }

    /// Whether route `route` is replicated under its `static` policy on
    /// site `site` now (the peer's content matched in this link session).
    pub fn static_in_use(&self, site: usize, route: usize) -> bool {
        self.sites[site].static_ok.get(route) == Some(&true)
    }

    /// Units this node logged to its peers so far.
    pub fn logged_units(&self) -> u64 {
        self.sites
            .iter()
            .filter_map(|s| s.replica.as_ref())
            .map(|r| r.stats().logged_units)
            .sum()
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

    /// Next frame for the LAN.
    #[must_use]
    pub fn poll_lan_transmit(&mut self) -> Option<Frame> {
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
            s.engine.mode() == Role::Ingress
                && s.replica
                    .as_ref()
                    .is_some_and(|r| r.peer_state() == crate::PeerState::Up)
        })
    }

    /// The link to `peer` failed or closed: it is dead for every address
    /// shared with it (the next round takes over).
    pub fn handle_link_lost(&mut self, peer: PeerId, now: Instant) {
        self.check_paused(now);
        for s in self.sites.iter_mut().filter(|s| s.cfg.peer == Some(peer)) {
            if let Some(r) = s.replica.as_mut() {
                r.handle_link_lost(now);
            }
        }
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

    /// Whether the link to `peer` still carries a session for some shared
    /// address. After the peer was declared dead (its heartbeats stopped,
    /// or this node was paused) it does not: the shell drops the socket
    /// and tries again, so that the peer can rejoin.
    pub fn link_wanted(&self, peer: PeerId) -> bool {
        if !self.link_allowed(peer) {
            return false;
        }
        self.sites.iter().any(|s| {
            s.cfg.peer == Some(peer)
                && s.replica
                    .as_ref()
                    .is_some_and(|r| r.peer_state() != crate::PeerState::Down)
        })
    }

    /// Whether a link to `peer` may be (re)established now: not while this
    /// node's LAN is down and it stands by for an address it shares with
    /// `peer` — a new session would make it take its role back, and the
    /// peer give the address up, with no node reaching the clients. The
    /// shell holds off connecting until this says yes again.
    pub fn link_allowed(&self, peer: PeerId) -> bool {
        self.lan.as_ref().is_none_or(LanCheck::is_up)
            || !self
                .sites
                .iter()
                .any(|s| s.cfg.peer == Some(peer) && s.yielded)
    }

    /// Whether this node reaches the service LAN (its LAN check; `true`
    /// without one).
    pub fn lan_up(&self) -> bool {
        self.lan.as_ref().is_none_or(LanCheck::is_up)
    }

    /// Site `i` stands by because this node's LAN was down.
    pub fn yielded(&self, site: usize) -> bool {
        self.sites[site].yielded
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

    /// Next request for the shell to answer.
    #[must_use]
    pub fn poll_job(&mut self) -> Option<Job> {
        self.shared.jobs.pop_front()
    }

    /// The reply to a [`Job`]. A reply for a connection that is gone is
    /// dropped.
    pub fn handle_job_done(&mut self, site: usize, conn: ConnId, index: u64, response: Response) {
        if let Some(s) = self.sites.get_mut(site) {
            s.conns.reply(conn, index, response);
        }
    }

    // ---- the round ---------------------------------------------------------

    /// Next role change (takeover) to report.
    #[must_use]
    pub fn poll_role_change(&mut self) -> Option<RoleChange> {
        self.changes.pop_front()
    }

    /// One round at `now`: timers, frames for the primary onto the link,
    /// replication events (takeovers), then every engine. Returns whether
    /// anything moved: call again at once (after moving the outputs).
    pub fn round(&mut self, now: Instant) -> bool {
        self.check_paused(now);
        let mut busy = std::mem::take(&mut self.shared.logged);
        if let Some(change) = self.lan.as_mut().and_then(|l| l.handle_timeout(now)) {
            self.lan_changed(change);
            busy = true;
        }
        let lan_up = self.lan_up();
        for (i, site) in self.sites.iter_mut().enumerate() {
            let mut promote = false;
            let mut claim = false;
            // The peer said it leaves: claim without probing.
            let mut peer_left = false;
            let mut rejoin_now = false;
            if let Some(r) = site.replica.as_mut() {
                if r.poll_timeout().is_some_and(|t| t <= now) {
                    r.handle_timeout(now);
                }
                // Client frames the shadow holds, for the primary.
                while let Some(f) = site.engine.poll_forward() {
                    busy = true;
                    let bytes = Bytes::copy_from_slice(f.data());
                    site.engine.recycle(f);
                    // On back-pressure or no peer the frame is dropped: TCP
                    // retransmits, and the primary never acknowledges it.
                    if let Err(e) = r.forward_frame(bytes) {
                        tracing::debug!(error = %e, "client frame not forwarded");
                    }
                }
                while let Some(ev) = r.poll_event() {
                    busy = true;
                    match ev {
                        Event::Frame { frame } => {
                            site.engine.handle_peer_frame(Frame::copy_from(&frame))
                        }
                        Event::Release { conn, .. }
                        | Event::Logged { conn, .. }
                        | Event::ConnGone { conn } => site.conns.event(conn, ev),
                        Event::PeerUp { node, mac } => {
                            tracing::info!(
                                peer = %node,
                                address = %site.cfg.address.address(),
                                "replication link up"
                            );
                            // Only this MAC may fence us or make us stand
                            // down from now on (not any LAN host).
                            site.engine.set_peer_mac(EthernetAddress(mac));
                            // A primary that took the address over in its
                            // life may serve connections this node never
                            // saw open: only then do their segments pass.
                            site.engine
                                .set_pass_through(r.peer_epoch().is_some_and(|e| e > 0));
                            // A new session: static waits for the peer's
                            // digests again.
                            site.static_ok.iter_mut().for_each(|ok| *ok = false);
                            site.routes_seen = false;
                            // Only connections opened from now on are
                            // replicated.
                            site.conns.new_session();
                            site.rejoin_pending = true;
                            if site.booting && r.peer_epoch() == Some(0) {
                                // An owner starting: its primary never took
                                // the address over, so nobody holds it —
                                // no need to finish the probes.
                                site.engine.cancel_probe();
                            }
                            // At once unless probing: a primary that had
                            // claimed the address stops answering for it in
                            // this round, before its `Routes` (below)
                            // reach the owner.
                            rejoin_now = !site.engine.probing();
                            r.send_routes(self.route_digests.clone());
                        }
                        Event::PeerRoutes { routes } => {
                            site.routes_seen = true;
                            if std::mem::take(&mut site.reassert) {
                                site.engine.reassert();
                            }
                            compare_routes(
                                &self.route_digests,
                                &routes,
                                &mut site.static_ok,
                                site.cfg.address.address(),
                            );
                            // Shadows holding requests for a route now in
                            // use make their replies ahead (their client
                            // ACKs may be waiting for them).
                            site.conns.wake_all();
                        }
                        Event::PeerLeaving => {
                            // The owner leaves (planned): claim its address
                            // now, without probes; it forwards what still
                            // reaches it until it closes the link.
                            site.conns.peer_gone();
                            if site.engine.mode() == Role::Primary && !site.engine.probing() {
                                tracing::warn!(
                                    address = %site.cfg.address.address(),
                                    connections = site.engine.connections(),
                                    "the owner is leaving: claiming the service address at once"
                                );
                                site.engine.claim_now();
                                self.changes.push_back(RoleChange::Claiming {
                                    address: site.cfg.address.address(),
                                });
                            }
                        }
                        Event::PeerAbsent { .. } | Event::PeerDead { .. }
                            if !lan_up || site.yielded =>
                        {
                            // This node reaches no client: it takes
                            // nothing over; it stands by until it rejoins.
                            site.yielded = true;
                            site.engine.yield_address();
                            site.conns.peer_gone();
                            site.booting = false;
                            site.rejoin_pending = false;
                            tracing::warn!(
                                address = %site.cfg.address.address(),
                                "peer gone while this node does not reach the service LAN: \
                                 not taking over, standing by"
                            );
                        }
                        Event::PeerAbsent { waited } => {
                            // A cold start with the peer down: serve alone,
                            // through the same checks as a takeover.
                            match site.engine.mode() {
                                // Someone answered the owner's boot probes:
                                // its peer holds the address; wait for the
                                // link (rejoin).
                                Role::Ingress if site.engine.fenced() => {}
                                // The probes' outcome decides (see below).
                                Role::Ingress if site.engine.probing() => {}
                                Role::Ingress => promote = true,
                                Role::Primary => claim = !site.engine.probing(),
                                Role::Simplex => {}
                            }
                            site.conns.peer_gone();
                            site.rejoin_pending = false;
                            tracing::warn!(
                                address = %site.cfg.address.address(),
                                waited_ms = waited.as_millis() as u64,
                                role = ?site.cfg.role,
                                "no peer since the start: serving the address alone until it joins"
                            );
                        }
                        Event::PeerDead { since_heard, left } => {
                            match site.engine.mode() {
                                // Paused past the timeout: the primary may
                                // hold the address now; ask the LAN first.
                                // Paused past the timeout, or still probing
                                // at start: the primary may hold the
                                // address now; ask the LAN first.
                                Role::Ingress if site.suspect || site.engine.probing() => {
                                    site.engine.probe_before_promote()
                                }
                                Role::Ingress => promote = true,
                                // (Unless a `Leaving` started the claim.)
                                Role::Primary => claim = !site.engine.probing(),
                                Role::Simplex => {}
                            }
                            site.suspect = false;
                            site.conns.peer_gone();
                            // A probe now decides a takeover, not a start.
                            site.booting = false;
                            site.rejoin_pending = false;
                            peer_left = left;
                            tracing::warn!(
                                address = %site.cfg.address.address(),
                                silent_ms = since_heard.as_millis() as u64,
                                connections = site.conns.len(),
                                left,
                                "peer declared dead: taking over"
                            );
                        }
                    }
                }
            } else {
                // Unreplicated: nothing is forwarded.
                while let Some(f) = site.engine.poll_forward() {
                    site.engine.recycle(f);
                }
            }
            if rejoin_now {
                Self::rejoin(site);
            }
            // The lease: a primary speaks to clients only while its peer's
            // last word is younger than the timeout (after it, the peer may
            // have taken its connections over).
            let lease = site.replica.as_ref().is_some_and(|r| {
                r.peer_state() == crate::PeerState::Up
                    && now.saturating_duration_since(r.last_heard()) <= self.heartbeat_timeout
            });
            site.engine.set_lease(lease);
            if site.engine.take_probed() {
                if std::mem::take(&mut site.booting) {
                    // Nobody holds the address: ours.
                    site.engine.reassert();
                    // And no peer came within the cold-start wait either
                    // (`PeerAbsent` while probing): serve alone now.
                    promote = site
                        .replica
                        .as_ref()
                        .is_some_and(|r| r.role() == Role::Simplex);
                } else {
                    promote = true;
                }
            }
            let mut driver = SiteDriver {
                site: i,
                conns: &mut site.conns,
                shared: &mut self.shared,
                replica: site.replica.as_mut(),
                static_ok: &site.static_ok,
            };
            if promote {
                let before = site.engine.stats().promoted;
                site.engine.promote(&mut driver, now);
                let connections = site.engine.stats().promoted - before;
                tracing::warn!(
                    address = %site.cfg.address.address(),
                    connections,
                    "takeover: shadow connections promoted"
                );
                self.changes.push_back(RoleChange::Promoted {
                    address: site.cfg.address.address(),
                    connections,
                });
            }
            if claim {
                tracing::warn!(
                    address = %site.cfg.address.address(),
                    connections = site.engine.connections(),
                    "takeover: claiming the service address"
                );
                if peer_left {
                    site.engine.claim_now();
                } else {
                    site.engine.claim();
                }
                self.changes.push_back(RoleChange::Claiming {
                    address: site.cfg.address.address(),
                });
            }
            busy |= site.engine.poll(&mut driver, now);
            if let Some(mac) = site.engine.take_conflict() {
                // Both nodes serve the address (a probe answer was lost, or
                // the link and the probes failed together): the configured
                // owner keeps it, the primary stands down. Deterministic on
                // both sides, whatever each saw first.
                let address = site.cfg.address.address();
                match site.cfg.role {
                    Role::Ingress => {
                        tracing::warn!(%address, peer_mac = %mac, "split brain: the primary announced this node's address too; the owner keeps it");
                        site.engine.defend();
                    }
                    Role::Primary => {
                        tracing::warn!(%address, peer_mac = %mac, "split brain: the owner serves the address too; standing down");
                        site.engine.stand_down();
                    }
                    Role::Simplex => {}
                }
                busy = true;
            }
            // Probes unanswered: promote at the next round (called at once).
            busy |= site.engine.probed();
            if site.rejoin_pending
                && !site.engine.probing()
                && !site.engine.probed()
                && site
                    .replica
                    .as_ref()
                    .is_some_and(|r| r.peer_state() == crate::PeerState::Up)
            {
                Self::rejoin(site);
                busy = true;
            }
            if site.engine.fenced() && !site.fenced_reported {
                site.fenced_reported = true;
                tracing::warn!(
                    address = %site.cfg.address.address(),
                    "fenced: the peer answered for the address after the link failed; \
                     it serves that address's connections now, this node stays silent for it"
                );
            }
        }
        busy || self.shared.logged
    }

    /// The shell calls this before each frame it sends (frames made in
    /// the round before a pause must not go out after it), and every input
    /// and round calls it too.
    ///
    /// A gap since the last call longer than the heartbeat timeout, or no
    /// heartbeat for that long: this
    /// node was paused (or starved) and every peer may have declared it
    /// dead and taken over. Whatever the links still hold was sent before
    /// that and proves nothing, so every replicated site drops its session
    /// (the shell drops the link at the next message) and goes through the
    /// takeover's checks: a primary probes before it claims, an ingress
    /// node probes before it promotes; either is fenced if the peer
    /// answers. Until then each stays silent on the LAN.
    pub fn check_paused(&mut self, now: Instant) {
        let last = self
            .last_call
            .replace(now.max(self.last_call.unwrap_or(now)));
        let Some(last) = last else { return };
        let gap = now.saturating_duration_since(last);
        let mut affected = 0;
        let mut paused = gap;
        for s in &mut self.sites {
            let Some(r) = s.replica.as_mut() else {
                continue;
            };
            if r.role() == Role::Simplex || s.engine.fenced() {
                continue;
            }
            // The gap alone misses a pause that began up to a heartbeat
            // interval after the last heartbeat (the loop ran on, sending
            // nothing to the peer): the peer times out from that
            // heartbeat, so its age counts too.
            let silence = r.heartbeat_silence(now).unwrap_or_default();
            if gap <= self.heartbeat_timeout && silence < self.heartbeat_timeout {
                continue;
            }
            paused = paused.max(silence);
            affected += 1;
            s.suspect = s.engine.mode() == Role::Ingress;
            s.engine.set_lease(false);
            r.handle_link_lost(now);
        }
        if affected > 0 {
            self.pauses += 1;
            tracing::warn!(
                paused_ms = paused.as_millis() as u64,
                addresses = affected,
                "this node was paused past the heartbeat timeout: its peers may have taken \
                 over; links dropped, probing before serving again"
            );
        }
    }

    /// The LAN check changed its mind. Down: every address whose peer is
    /// linked and reaches the LAN is handed to it at once (`Leaving`: the
    /// owner promotes its shadows, the primary claims without probes) and
    /// this node stands by for it; the link is then dropped and not made
    /// again until the LAN is back (see [`NodeCore::link_allowed`]), when
    /// the node rejoins as a restarted one would. Up: it may link again.
    fn lan_changed(&mut self, change: LanChange) {
        let target = self.lan.as_ref().map(|l| l.config().target);
        match change {
            LanChange::Down => {
                tracing::warn!(
                    target = ?target,
                    "LAN check failed: this node does not reach the service LAN; \
                     handing its addresses to its peers"
                );
                for s in &mut self.sites {
                    s.engine.set_lan_down(true);
                    let Some(r) = s.replica.as_mut() else {
                        continue;
                    };
                    r.set_lan(false);
                    let peer_takes =
                        r.peer_state() == crate::PeerState::Up && r.peer_lan_up() == Some(true);
                    if !peer_takes {
                        tracing::warn!(
                            address = %s.cfg.address.address(),
                            "LAN down, but the peer cannot take this address (its link or \
                             its LAN is down too): keeping it"
                        );
                        continue;
                    }
                    if s.engine.fenced() {
                        continue;
                    }
                    tracing::info!(
                        address = %s.cfg.address.address(),
                        role = ?s.engine.mode(),
                        connections = s.conns.len(),
                        "LAN down: handing the address to the peer"
                    );
                    r.leave();
                    s.engine.yield_address();
                    s.yielded = true;
                    s.fenced_reported = true;
                }
            }
            LanChange::Up => {
                tracing::info!(target = ?target, "LAN check passes again: this node reaches the service LAN");
                for s in &mut self.sites {
                    s.engine.set_lan_down(false);
                    if let Some(r) = s.replica.as_mut() {
                        r.set_lan(true);
                    }
                }
            }
        }
    }

    /// Pauses past the heartbeat timeout detected so far.
    pub fn pauses(&self) -> u64 {
        self.pauses
    }

    /// The configured role comes back for `site` (a link session is up and
    /// no probe is pending); connections served here stay here (see
    /// `Engine::rejoin`). An owner says the address is its own again once
    /// the primary's `Routes` of this session arrived — sent after the
    /// primary's own rejoin, so after it stopped answering for it.
    fn rejoin(site: &mut Site) {
        site.rejoin_pending = false;
        site.yielded = false;
        site.engine.rejoin(site.cfg.role);
        site.suspect = false;
        site.booting = false;
        site.fenced_reported = false;
        if site.cfg.role == Role::Ingress {
            if site.routes_seen {
                site.engine.reassert();
            } else {
                site.reassert = true;
            }
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

    // ---- read-only accessors for status and metrics ------------------------

    /// Site `i`'s role as configured (before any takeover).
    pub fn configured_role(&self, site: usize) -> Role {
        self.sites[site].cfg.role
    }

    /// The peer sharing site `i`'s address, if it is replicated.
    pub fn site_peer(&self, site: usize) -> Option<PeerId> {
        self.sites[site].cfg.peer
    }

    /// Site `i`'s TCP port.
    pub fn port(&self, site: usize) -> u16 {
        self.sites[site].cfg.port
    }

    /// Site `i`'s connection bound.
    pub fn max_connections(&self, site: usize) -> usize {
        self.sites[site].cfg.max_connections
    }

    /// When anything was last heard from site `i`'s peer (the start of the
    /// link session, or of the node, if nothing yet); `None` unreplicated.
    pub fn last_heard(&self, site: usize) -> Option<Instant> {
        self.sites[site].replica.as_ref().map(Replica::last_heard)
    }

    /// Site `i`'s heartbeat interval and timeout; `None` unreplicated.
    pub fn heartbeat(&self, site: usize) -> Option<(Duration, Duration)> {
        self.sites[site]
            .replica
            .as_ref()
            .map(|r| (r.config().heartbeat_interval, r.config().heartbeat_timeout))
    }

    /// Site `i`'s requests by route and their latency.
    pub fn request_stats(&self, site: usize) -> &stats::RequestStats {
        &self.sites[site].conns.requests.stats
    }

    /// Number of routes (indices of [`NodeCore::route_prefix`],
    /// [`NodeCore::route_policy`] and [`stats::RequestStats::routes`]).
    pub fn route_count(&self) -> usize {
        self.shared.routes.len()
    }

    /// Route `i`'s URL prefix.
    pub fn route_prefix(&self, route: usize) -> &str {
        &self.shared.routes[route].prefix
    }

    /// Route `i`'s configured policy.
    pub fn route_policy(&self, route: usize) -> Policy {
        self.shared.routes[route].policy
    }
}
