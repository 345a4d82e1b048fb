//! What a run is a function of ([`RunSpec`]): the kill and its variant,
//! the LAN's behaviour, the seed.

use std::sync::Arc;
use std::time::Duration;

use crate::addresses::Who;
use crate::scenario::{Expectations, Scenario};
use crate::topology::Topology;

/// How a killed node goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    /// Its kernel resets the replication link: the survivor is told
    /// (`LinkIn::Lost`) after the messages already on the wire.
    Lost,
    /// Nothing more is heard: the survivor's heartbeat timeout must fire.
    Silent,
    /// The node never starts (a cold start after a power cut, one node
    /// back): no link ever comes up; the others must serve alone once
    /// their cold-start wait is over. Its step is 0.
    Absent,
    /// The node loses the service LAN (every frame to or from it dropped:
    /// client, gateway and the other nodes alike) while its links and its
    /// process live on; its LAN check must find out and hand its addresses
    /// over. The LAN comes back [`LAN_OUTAGE`](crate::world::LAN_OUTAGE) later and the node
    /// rejoins. Needs [`RunSpec::checks`].
    Lan,
    /// The node's application dies: its jobs in flight and new ones fail
    /// as unreachable, its application checks fail; the node lives on and
    /// must hand its addresses over. Needs [`RunSpec::checks`].
    App,
}

impl Variant {
    /// The victim's process lives on (its LAN or its application fails).
    pub fn lives_on(self) -> bool {
        matches!(self, Variant::Lan | Variant::App)
    }
    pub fn name(self) -> &'static str {
        match self {
            Variant::Lost => "lost",
            Variant::Silent => "silent",
            Variant::Absent => "absent",
            Variant::Lan => "lan",
            Variant::App => "app",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "lost" => Some(Variant::Lost),
            "silent" => Some(Variant::Silent),
            "absent" => Some(Variant::Absent),
            "lan" => Some(Variant::Lan),
            "app" => Some(Variant::App),
            _ => None,
        }
    }
}

/// The LAN's behaviour (the replication link is always ordered and lossless,
/// like the kernel TCP connection it stands for). Loss and reordering apply
/// to frames to and from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub name: &'static str,
    pub lan_delay: Duration,
    /// Frames delayed by an extra `1..=reorder_delay`, per million: they
    /// arrive after frames sent later (netem's `reorder`).
    pub reorder_ppm: u32,
    pub reorder_delay: Duration,
    /// Frames lost, per million.
    pub loss_ppm: u32,
    pub link_delay: Duration,
    /// Replication-link messages, per million, that meet a lost segment
    /// of the link's kernel TCP: they (and everything queued behind them,
    /// the link being one ordered stream) arrive `link_stall` late — its
    /// retransmission. TCP turns loss into delay, and never reorders.
    pub link_stall_ppm: u32,
    pub link_stall: Duration,
}

impl Net {
    pub const CLEAN: Net = Net {
        name: "clean",
        lan_delay: Duration::from_micros(50),
        reorder_ppm: 0,
        reorder_delay: Duration::ZERO,
        loss_ppm: 0,
        link_delay: Duration::from_micros(100),
        link_stall_ppm: 0,
        link_stall: Duration::ZERO,
    };
    /// 2% loss; 2% of frames overtaken (delayed by up to 300 µs); 1% of
    /// link messages held up by a 200 ms retransmission (Linux's minimum
    /// RTO).
    pub const LOSSY: Net = Net {
        name: "lossy",
        lan_delay: Duration::from_micros(50),
        reorder_ppm: 20_000,
        reorder_delay: Duration::from_micros(300),
        loss_ppm: 20_000,
        link_delay: Duration::from_micros(100),
        link_stall_ppm: 10_000,
        link_stall: Duration::from_millis(200),
    };
    pub fn parse(s: &str) -> Option<Net> {
        match s {
            "clean" => Some(Net::CLEAN),
            "lossy" => Some(Net::LOSSY),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    pub victim: Who,
    pub step: u64,
    pub variant: Variant,
}

/// One run's parameters: everything a run is a function of.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Which nodes hold which addresses.
    pub topology: Topology,
    /// The client's connections (spread over the topology's addresses:
    /// [`Topology::scenario`]).
    pub scenario: Arc<Scenario>,
    pub expect: Arc<Expectations>,
    pub seed: u64,
    pub net: Net,
    pub kill: Option<Kill>,
    /// The nodes run their LAN check against the world's gateway and their
    /// application check against the world's application (the `lan` and
    /// `app` variants need it, and so do their baselines: it adds steps).
    pub checks: bool,
    /// Print every step.
    pub trace: bool,
    /// Hash every event (determinism checks).
    pub fingerprint: bool,
}

impl RunSpec {
    /// The command that replays this run alone.
    pub fn replay_command(&self) -> String {
        let (victim, step, variant) = match self.kill {
            Some(k) => (
                self.topology.victim_name(k.victim),
                k.step.to_string(),
                k.variant.name(),
            ),
            None => ("none", "none".to_owned(), "lost"),
        };
        format!(
            "SIM_TOPOLOGY={} SIM_SEED={} SIM_SCENARIO={} SIM_VICTIM={victim} SIM_STEP={step} SIM_VARIANT={variant} SIM_NET={}{} SIM_TRACE=1 cargo test -p hotpair-sim --test failover_matrix replay -- --nocapture",
            self.topology.name(),
            self.seed,
            self.scenario.name,
            self.net.name,
            if self.checks { " SIM_CHECKS=1" } else { "" }
        )
    }

    pub fn label(&self) -> String {
        match self.kill {
            Some(k) => format!(
                "mode={} scenario={} victim={} step={} seed={} variant={} net={}",
                self.topology.name(),
                self.scenario.name,
                self.topology.victim_name(k.victim),
                k.step,
                self.seed,
                k.variant.name(),
                self.net.name
            ),
            None => format!(
                "mode={} scenario={} no kill seed={} net={}",
                self.topology.name(),
                self.scenario.name,
                self.seed,
                self.net.name
            ),
        }
    }
}
