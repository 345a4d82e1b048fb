//! One hotpair node in the simulation: the node core
//! ([`NodeCore`]) that `hotpair node` runs, driven through the same calls as
//! the TAP shell makes, with the TAP replaced by the simulated LAN and the
//! replication link by messages the simulation delivers.

use std::time::{Duration, Instant};

use hotpair_replicator::node::{
    Handler, NodeConfig, NodeCore, PeerId, RoleChange, Route, SiteConfig,
};
use hotpair_replicator::{Msg, Policy, Role};
use hotpair_stack::engine::EngineStats;
use hotpair_stack::smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};

use crate::content;

/// The service address and port every node serves.
pub const VIP: Ipv4Address = Ipv4Address::new(10, 77, 0, 10);
pub const PREFIX_LEN: u8 = 24;
pub const PORT: u16 = 80;
pub const MAC_A: EthernetAddress = EthernetAddress([0x02, 0x68, 0x70, 0, 0, 0x01]);
pub const MAC_B: EthernetAddress = EthernetAddress([0x02, 0x68, 0x70, 0, 0, 0x02]);
/// Rounds of one node at one instant before the simulation calls it a livelock.
const MAX_ITERATIONS: usize = 100_000;

/// Which node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Who {
    /// Node A: the primary (runs the application).
    A,
    /// Node B: the ingress node (owns the address; the paper's backup).
    B,
}

impl Who {
    pub fn index(self) -> usize {
        match self {
            Who::A => 0,
            Who::B => 1,
        }
    }
    pub fn peer(self) -> Who {
        match self {
            Who::A => Who::B,
            Who::B => Who::A,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Who::A => "A",
            Who::B => "B",
        }
    }
    pub fn mac(self) -> EthernetAddress {
        match self {
            Who::A => MAC_A,
            Who::B => MAC_B,
        }
    }
}

/// Per-node settings derived from the run's seed.
#[derive(Debug, Clone, Copy)]
pub struct NodeSeeds {
    /// The node core's seed: smoltcp's RNG (ISNs) and `generate`'s seeds.
    pub core: u64,
}

/// News from the link, as the node's shell would hand it to the core.
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
    pub msgs: Vec<(u32, Msg)>,
    /// The node promoted its shadows / started claiming in this round.
    pub promoted: bool,
    pub claimed: bool,
    /// Rounds of the node core run.
    pub iterations: usize,
}

/// The peer every simulated node has: the other one.
const PEER: PeerId = 0;

pub struct SimNode {
    pub who: Who,
    pub core: NodeCore,
}

impl SimNode {
    /// Build node `who` (A primary, B ingress) at time `now` (= `start`).
    pub fn new(who: Who, seeds: NodeSeeds, heartbeat_timeout: Duration, start: Instant) -> Self {
        let c = content::get();
        let routes = vec![
            Route {
                prefix: content::GENERATE_PREFIX.to_owned(),
                handler: Handler::Generate {
                    max_size: content::GENERATE_MAX,
                },
                policy: Policy::Logged,
            },
            Route {
                prefix: content::FILES_PREFIX.to_owned(),
                handler: Handler::Files(c.files.clone()),
                // The config's default for files: every file scenario runs
                // under active replication.
                policy: Policy::Static,
            },
        ];
        let (role, name, peer) = match who {
            Who::A => (Role::Primary, "a", "b"),
            Who::B => (Role::Ingress, "b", "a"),
        };
        let cfg = NodeConfig {
            name: name.into(),
            mac: who.mac(),
            sites: vec![SiteConfig {
                address: Ipv4Cidr::new(VIP, PREFIX_LEN),
                gateway: None,
                port: PORT,
                max_connections: 64,
                max_half_open: 32,
                half_open_timeout: Duration::from_secs(20),
                max_per_source: 64,
                role,
                peer: Some(PEER),
            }],
            peers: vec![Some(peer.into())],
            heartbeat_interval: Duration::from_millis(100),
            heartbeat_timeout,
            rx_buffer_bytes: 64 * 1024,
            tx_buffer_bytes: 128 * 1024,
            limits: c.limits,
            routes,
            seed: seeds.core,
        };
        let mut core = NodeCore::new(cfg, start).expect("the simulation's node config is valid");
        core.set_inline_generate(true);
        SimNode { who, core }
    }

    /// News from the link. A refused message drops the link, as the shell
    /// does (a message arriving after the peer was declared dead is refused
    /// as `NotConnected`, and the link is gone by then anyway).
    pub fn deliver_link(&mut self, m: LinkIn, now: Instant) {
        match m {
            LinkIn::Connected => self.core.handle_link_up(PEER, now),
            LinkIn::Msg(channel, msg) => {
                if self.core.handle_link_msg(PEER, channel, msg, now).is_err() {
                    self.core.handle_link_lost(PEER, now);
                }
            }
            LinkIn::Lost(_) => self.core.handle_link_lost(PEER, now),
        }
    }

    /// Rounds of the node core at one instant, repeated while anything
    /// moved (as the TAP shell repeats them), with the LAN and link output
    /// of each.
    pub fn round(&mut self, now: Instant) -> Result<RoundOut, String> {
        let mut out = RoundOut::default();
        loop {
            out.iterations += 1;
            if out.iterations > MAX_ITERATIONS {
                return Err(format!(
                    "node {}: still busy after {MAX_ITERATIONS} rounds at one instant (livelock)",
                    self.who.name()
                ));
            }
            let mut busy = self.core.round(now);
            while let Some(ch) = self.core.poll_role_change() {
                match ch {
                    RoleChange::Promoted { .. } => out.promoted = true,
                    RoleChange::Claiming { .. } => out.claimed = true,
                }
            }
            while let Some(f) = self.core.poll_lan_transmit() {
                out.frames.push(f);
                busy = true;
            }
            while let Some(m) = self.core.poll_link_transmit(PEER) {
                out.msgs.push(m);
            }
            if !busy {
                break;
            }
        }
        Ok(out)
    }

    /// When this node next needs a round.
    pub fn next_deadline(&mut self, now: Instant) -> Option<Instant> {
        self.core.poll_timeout(now)
    }

    /// The engine's counters (the one service address).
    pub fn stats(&self) -> EngineStats {
        self.core.engine_stats(0)
    }

    /// Requests handed to a handler so far.
    pub fn handler_runs(&self) -> u64 {
        self.core.handler_runs()
    }

    /// Units this node logged to its peer so far.
    pub fn logged_units(&self) -> u64 {
        self.core.logged_units()
    }
}
