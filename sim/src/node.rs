//! One hotpair node in the simulation: the node core
//! ([`NodeCore`]) that `hotpair node` runs, driven through the same calls as
//! the TAP shell makes, with the TAP replaced by the simulated LAN and each
//! replication link by messages the simulation delivers. Which service
//! addresses a node holds, in which role, and who its peers are comes from
//! the run's [`Topology`].

use std::time::{Duration, Instant};

use hotpair_replicator::node::{
    AppCheckConfig, Drive, Handler, Job, LanCheckConfig, LinkAction, NodeConfig, NodeCore, PeerId,
    RoleChange, Route, SiteConfig, SiteTls, TlsJob,
};
use hotpair_replicator::{Msg, Policy};
use hotpair_stack::engine::EngineStats;
use hotpair_stack::smoltcp::wire::{Ipv4Address, Ipv4Cidr};
use hotpair_stack::{Admission, CookieKey, SynCookies};

use crate::addresses::{vip, Who, GATEWAY_IP, PORT, PREFIX_LEN, TLS_PORT};
use crate::app::APP_PREFIX;
use crate::content;
use crate::topology::Topology;

/// The nodes' LAN check with [`NodeOptions::checks`]: a cut LAN is
/// found within 300–400 ms, a healed one within 200 ms.
pub const LAN_CHECK: LanCheckConfig = LanCheckConfig {
    target: GATEWAY_IP,
    interval: Duration::from_millis(100),
    fall: 3,
    rise: 2,
};
/// The nodes' application check with `checks`: a dead application is found
/// within two intervals, or at once by the requests it refuses.
pub const APP_CHECK: AppCheckConfig = AppCheckConfig {
    interval: Duration::from_millis(200),
    timeout: Duration::from_millis(50),
    fall: 2,
    rise: 2,
    fallback: false,
};
/// Rounds of one node at one instant before the simulation calls it a livelock.
const MAX_ITERATIONS: usize = 100_000;

/// Per-node settings derived from the run's seed.
#[derive(Debug, Clone, Copy)]
pub struct NodeSeeds {
    /// The node core's seed: smoltcp's RNG (ISNs) and `generate`'s seeds.
    pub core: u64,
}

/// News from a link, as the node's shell would hand it to the core.
#[derive(Debug)]
pub enum LinkIn {
    /// The link is up.
    Connected,
    /// A message, with its channel (the service address it is about).
    Msg(u32, Msg),
    /// The link failed.
    Lost(String),
}

/// What one round of a node produced.
#[derive(Debug, Default)]
pub struct RoundOut {
    pub frames: Vec<hotpair_stack::Frame>,
    /// Link messages: (to whom, channel, message).
    pub msgs: Vec<(Who, u32, Msg)>,
    /// Addresses whose shadows the node promoted / which it started
    /// claiming in this round.
    pub promoted: Vec<Ipv4Address>,
    pub claimed: Vec<Ipv4Address>,
    /// Requests for the application (`/app/`).
    pub jobs: Vec<Job>,
    /// Application checks asked for.
    pub app_checks: usize,
    /// Links the node dropped (`LinkAction::Drop`, or a message it
    /// refused): the world closes their sessions.
    pub dropped: Vec<Who>,
    /// Links the core asked to set up again (`LinkAction::Reconnect`):
    /// the peer, and the pause before the node's link task starts.
    pub reconnects: Vec<(Who, Duration)>,
    /// Rounds of the node core run.
    pub iterations: usize,
}

pub struct SimNode {
    pub who: Who,
    pub core: NodeCore,
    /// The node at the other end of each link, by [`PeerId`].
    peers: Vec<Who>,
    /// The service address index of each site.
    sites: Vec<usize>,
    /// What the rounds produced so far, handed out by [`SimNode::round`].
    out: RoundOut,
    /// A TLS job ran inline in this round: its result needs another.
    ran_inline: bool,
    /// The policy of the `files` route (kept for a reload).
    files_policy: Policy,
}

/// The routes every node serves: the application, `generate`, and
/// `files` from `files` under `files_policy`.
fn routes(files: hotpair_http::files::Files, files_policy: Policy) -> Vec<Route> {
    vec![
        Route {
            prefix: APP_PREFIX.to_owned(),
            handler: Handler::External,
            policy: Policy::Logged,
        },
        Route {
            prefix: content::GENERATE_PREFIX.to_owned(),
            handler: Handler::Generate {
                max_size: content::GENERATE_MAX,
            },
            policy: Policy::Logged,
        },
        Route {
            prefix: content::FILES_PREFIX.to_owned(),
            handler: Handler::Files(files),
            // The config's default for files is `static`: every file
            // scenario runs under active replication unless it says
            // otherwise.
            policy: files_policy,
        },
    ]
}

/// What a run sets on every node it builds.
#[derive(Debug, Clone, Copy)]
pub struct NodeOptions {
    pub heartbeat_timeout: Duration,
    /// The policy of the `files` route.
    pub files_policy: Policy,
    /// Each address's half-open bound (`None`: the default, 32).
    pub max_half_open: Option<usize>,
    /// Run the LAN check ([`LAN_CHECK`]) and the application check
    /// ([`APP_CHECK`]).
    pub checks: bool,
    /// Serve HTTPS (the scenario's connections speak TLS).
    pub tls: bool,
}

impl SimNode {
    /// Build node `who` of `topo` at time `now` (= `start`).
    pub fn new(
        who: Who,
        topo: Topology,
        seeds: NodeSeeds,
        opts: NodeOptions,
        start: Instant,
    ) -> Self {
        let NodeOptions {
            heartbeat_timeout,
            files_policy,
            max_half_open,
            checks,
            tls,
        } = opts;
        let c = content::get();
        let routes = routes(c.files.clone(), files_policy);
        let peers = topo.peers(who);
        let peer_id = |w: Who| -> PeerId {
            peers
                .iter()
                .position(|&p| p == w)
                .expect("a site's peer is a peer")
        };
        let site_list = topo.sites(who);
        let sites = site_list
            .iter()
            .map(|s| SiteConfig {
                address: Ipv4Cidr::new(vip(s.address), PREFIX_LEN),
                gateway: None,
                port: PORT,
                admission: Admission {
                    max_connections: 64,
                    max_half_open: max_half_open.unwrap_or(32),
                    half_open_timeout: Duration::from_secs(20),
                    max_per_source: 64,
                    // One key for every node (a pair's is derived from its
                    // link keys), and a fixed wall clock: runs stay a
                    // function of their spec.
                    syn_cookies: Some(SynCookies {
                        key: CookieKey([0x5c; 32]),
                        send: true,
                        wall_start: Duration::from_secs(1_800_000_000),
                    }),
                },
                role: s.role,
                peer: Some(peer_id(s.peer)),
                tls: tls.then(|| SiteTls {
                    port: TLS_PORT,
                    config: crate::tls::server_config(),
                }),
            })
            .collect();
        let cfg = NodeConfig {
            name: who.node_name().into(),
            mac: who.mac(),
            sites,
            peers: peers.iter().map(|p| Some(p.node_name().into())).collect(),
            heartbeat_interval: Duration::from_millis(100),
            heartbeat_timeout,
            cold_start_wait: hotpair_replicator::replica::DEFAULT_COLD_START_WAIT,
            lan_check: checks.then_some(LAN_CHECK),
            app_check: checks.then_some(APP_CHECK),
            rx_buffer_bytes: 64 * 1024,
            tx_buffer_bytes: 128 * 1024,
            limits: c.limits,
            routes,
            seed: seeds.core,
        };
        let mut core = NodeCore::new(cfg, start).expect("the simulation's node config is valid");
        core.set_inline_generate(true);
        SimNode {
            who,
            core,
            peers,
            sites: site_list.iter().map(|s| s.address).collect(),
            out: RoundOut::default(),
            ran_inline: false,
            files_policy,
        }
    }

    /// The nodes this one has a link to.
    pub fn peers(&self) -> &[Who] {
        &self.peers
    }

    /// The link id (`PeerId`) of the link to `w`, if this node has one.
    pub fn peer_id(&self, w: Who) -> Option<PeerId> {
        self.peers.iter().position(|&p| p == w)
    }

    /// News from the link to `from`. A refused message drops the link, as
    /// the shell does (a message arriving after the peer was declared dead
    /// is refused as `NotConnected`, and the link is gone by then anyway):
    /// the core hears it lost, the world closes the session after the
    /// next round.
    pub fn deliver_link(&mut self, from: Who, m: LinkIn, now: Instant) {
        let Some(peer) = self.peers.iter().position(|&p| p == from) else {
            return;
        };
        match m {
            // A session the core refuses (it cannot serve) is closed
            // after the next round, as the shell closes the socket.
            LinkIn::Connected => {
                if !self.core.accept_link(peer, now) {
                    self.out.dropped.push(from);
                }
            }
            LinkIn::Msg(channel, msg) => {
                if self.core.handle_link_msg(peer, channel, msg, now).is_err() {
                    self.core.handle_link_lost(peer, now);
                    self.out.dropped.push(from);
                }
            }
            LinkIn::Lost(_) => self.core.handle_link_lost(peer, now),
        }
    }

    /// Rounds of the node core at one instant ([`hotpair_replicator::node::step`],
    /// as the TAP shell runs them), repeated while anything moved, with
    /// the LAN and link output of each.
    pub fn round(&mut self, now: Instant) -> Result<RoundOut, String> {
        let mut iterations = 0;
        loop {
            iterations += 1;
            if iterations > MAX_ITERATIONS {
                return Err(format!(
                    "node {}: still busy after {MAX_ITERATIONS} rounds at one instant (livelock)",
                    self.who.name()
                ));
            }
            self.ran_inline = false;
            let mut busy = hotpair_replicator::node::step(self, now);
            busy |= self.ran_inline;
            while let Some(f) = self.core.poll_lan_transmit(now) {
                self.out.frames.push(f);
                busy = true;
            }
            if !busy {
                break;
            }
        }
        let mut out = std::mem::take(&mut self.out);
        out.iterations = iterations;
        Ok(out)
    }

    /// When this node next needs a round.
    pub fn next_deadline(&mut self, now: Instant) -> Option<Instant> {
        self.core.poll_timeout(now)
    }

    /// The site holding service address `address` (an index), if any.
    pub fn site_of(&self, address: usize) -> Option<usize> {
        self.sites.iter().position(|&a| a == address)
    }

    /// The service address (an index) of each site.
    pub fn addresses(&self) -> &[usize] {
        &self.sites
    }

    /// The engine's counters of each site.
    pub fn stats(&self) -> Vec<EngineStats> {
        (0..self.sites.len())
            .map(|i| self.core.engine_stats(i))
            .collect()
    }

    /// Requests handed to a handler so far (every address).
    pub fn handler_runs(&self) -> u64 {
        self.core.handler_runs()
    }

    /// Requests of service address `address` handed to a handler so far.
    pub fn handler_runs_for(&self, address: usize) -> u64 {
        self.site_of(address)
            .map_or(0, |s| self.core.site_handler_runs(s))
    }

    /// Serve `files` under `/static/` from now on (an operator's reload:
    /// `NodeCore::handle_reload`, as on SIGHUP).
    pub fn reload_files(&mut self, files: hotpair_http::files::Files) -> Result<(), String> {
        self.core
            .handle_reload(routes(files, self.files_policy))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// `static` replies this node could not make: the content generation
    /// the primary named was not held here (its shadow was given up).
    pub fn generation_missing(&self) -> u64 {
        self.core.generation_missing()
    }

    /// Units this node logged to its peers so far.
    pub fn logged_units(&self) -> u64 {
        self.core.logged_units()
    }
}

/// Where a round's output goes in the simulation: into [`RoundOut`] for
/// the world to deliver.
impl Drive for SimNode {
    fn core(&mut self) -> &mut NodeCore {
        &mut self.core
    }

    fn tls_job(&mut self, j: TlsJob) {
        // The node's pool runs handshake steps; here at once (same instant).
        self.core.handle_tls_job_done(j.site, j.conn, j.work.run());
        self.ran_inline = true;
    }

    fn job(&mut self, job: Job) {
        self.out.jobs.push(job);
    }

    fn app_check(&mut self) {
        self.out.app_checks += 1;
    }

    fn link_ready(&mut self, _peer: PeerId) -> bool {
        // The world's links take every message (no back-pressure).
        true
    }

    fn link_message(&mut self, peer: PeerId, channel: u32, msg: Msg) {
        self.out.msgs.push((self.peers[peer], channel, msg));
    }

    fn role_change(&mut self, change: RoleChange) {
        match change {
            RoleChange::Promoted { address, .. } => self.out.promoted.push(address),
            RoleChange::Claiming { address } => self.out.claimed.push(address),
        }
    }

    fn link_action(&mut self, action: LinkAction) {
        match action {
            LinkAction::Drop { peer, .. } => self.out.dropped.push(self.peers[peer]),
            // The world starts the node's link task after `after`, as the
            // TAP shell spawns one (`world::faults`).
            LinkAction::Reconnect { peer, after } => {
                self.out.reconnects.push((self.peers[peer], after))
            }
        }
    }
}
