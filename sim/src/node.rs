//! One hotpair node in the simulation: the stack's sans-IO [`Engine`] and the
//! appliance's [`NodeService`], built the way `hotpair::node::run` builds
//! them, with the TAP replaced by the simulated LAN and the replication link
//! by channels the simulation plays.

use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hotpair::service::{Conn, Handler, LinkIn, NodeService, Replication, Route};
use hotpair_replicator::{Msg, Replica, ReplicaConfig, Role};
use hotpair_stack::smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};
use hotpair_stack::{Engine, Mode, Service, StackConfig, Waker};

use crate::content;

/// The service address and port every node serves.
pub const VIP: Ipv4Address = Ipv4Address::new(10, 77, 0, 10);
pub const PREFIX_LEN: u8 = 24;
pub const PORT: u16 = 80;
pub const MAC_A: EthernetAddress = EthernetAddress([0x02, 0x68, 0x70, 0, 0, 0x01]);
pub const MAC_B: EthernetAddress = EthernetAddress([0x02, 0x68, 0x70, 0, 0, 0x02]);
/// Capacity of the stack → link channel (as `hotpair::link::LINK_QUEUE`).
pub const LINK_QUEUE: usize = hotpair::link::LINK_QUEUE;
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

/// The tokio runtime `NodeService::new` wants a handle of. The simulation
/// never drives it (handlers run inline); it only has to stay alive.
fn runtime() -> tokio::runtime::Handle {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("building an idle current-thread runtime")
    })
    .handle()
    .clone()
}

/// Per-node settings derived from the run's seed.
#[derive(Debug, Clone, Copy)]
pub struct NodeSeeds {
    /// smoltcp's RNG (ISNs).
    pub stack: u64,
    /// `NodeService`'s first `generate` seed.
    pub service: u64,
}

/// What one round of a node produced.
#[derive(Debug, Default)]
pub struct RoundOut {
    pub frames: Vec<hotpair_stack::Frame>,
    pub msgs: Vec<Msg>,
    /// The service asked for a promotion / a claim in this round.
    pub promoted: bool,
    pub claimed: bool,
    /// Shell-loop iterations run.
    pub iterations: usize,
}

pub struct SimNode {
    pub who: Who,
    pub engine: Engine<Conn>,
    pub service: NodeService,
    to_stack: mpsc::Sender<LinkIn>,
    from_stack: tokio::sync::mpsc::Receiver<Msg>,
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
            },
            Route {
                prefix: content::FILES_PREFIX.to_owned(),
                handler: Handler::Files(c.files.clone()),
            },
        ];
        let scfg = StackConfig {
            mac: who.mac(),
            address: Ipv4Cidr::new(VIP, PREFIX_LEN),
            gateway: None,
            port: PORT,
            max_connections: 64,
            rx_buffer_bytes: 64 * 1024,
            tx_buffer_bytes: 128 * 1024,
            seed: seeds.stack,
        };
        let (mode, role, name) = match who {
            Who::A => (Mode::Primary, Role::Primary, "a"),
            Who::B => (Mode::Ingress, Role::Ingress, "b"),
        };
        let mut rc = ReplicaConfig::new(role, name);
        rc.heartbeat_timeout = heartbeat_timeout;
        let replica = Replica::new(rc, start);
        let (to_stack, from_link) = mpsc::channel();
        let (to_link, from_stack) = tokio::sync::mpsc::channel(LINK_QUEUE);
        let mut engine: Engine<Conn> = Engine::new(scfg, mode, start);
        let waker = Waker::new().expect("creating an eventfd for the node's waker");
        let mut service = NodeService::new(
            routes,
            c.limits,
            runtime(),
            waker,
            seeds.service,
            Some(Replication::new(replica, from_link, to_link)),
        );
        service.set_inline_handlers(true);
        if mode != Mode::Primary {
            // As node.rs: the primary never speaks ARP for the address.
            engine.announce();
        }
        SimNode {
            who,
            engine,
            service,
            to_stack,
            from_stack,
        }
    }

    /// News from the link (the link task's `to_stack.send`).
    pub fn deliver_link(&mut self, m: LinkIn) {
        // The receiver lives in `service`, which lives as long as we do.
        let _ = self.to_stack.send(m);
    }

    /// One turn of `Shell::run`, repeated while anything moved (the shell
    /// `continue`s while busy): exchange with the link, take over if told
    /// to, poll the engine, write its LAN output. Then the link task's part:
    /// everything the service queued for the link.
    pub fn round(&mut self, now: Instant) -> Result<RoundOut, String> {
        let mut out = RoundOut::default();
        loop {
            out.iterations += 1;
            if out.iterations > MAX_ITERATIONS {
                return Err(format!(
                    "node {}: still busy after {MAX_ITERATIONS} shell iterations at one instant (livelock)",
                    self.who.name()
                ));
            }
            let ctl = self.service.exchange(&mut self.engine, now);
            if ctl.promote {
                self.engine.promote(&mut self.service, now);
                out.promoted = true;
            }
            if ctl.claim {
                self.engine.claim();
                out.claimed = true;
            }
            let mut busy = self.engine.poll(&mut self.service, now)
                || ctl.busy
                || self.service.wants_exchange();
            while let Some(f) = self.engine.poll_lan_transmit() {
                out.frames.push(f);
                busy = true;
            }
            if !busy {
                break;
            }
        }
        while let Ok(m) = self.from_stack.try_recv() {
            out.msgs.push(m);
        }
        Ok(out)
    }

    /// When this node next needs a round, as the shell computes its sleep
    /// (without the shell's 100 ms cap and millisecond rounding, which only
    /// add idle wake-ups).
    pub fn next_deadline(&mut self, now: Instant) -> Option<Instant> {
        let mut at = self.engine.poll_delay(now).map(|d| now + d);
        if let Some(t) = self.service.poll_timeout() {
            at = Some(at.map_or(t, |a| a.min(t)));
        }
        at
    }

    /// Units this node logged to its peer so far.
    pub fn logged_units(&self) -> u64 {
        self.service
            .repl
            .as_ref()
            .map_or(0, |r| r.replica.stats().logged_units)
    }
}
