//! The simulated world: the client, the nodes of a [`Topology`] (duplex:
//! A primary, B owner; dual-role; ring), an Ethernet switch between them
//! that delivers by destination MAC, and a replication link between each
//! pair of nodes that share an address, over virtual time. One *step*
//! delivers one event (a frame or a link message) to its recipient and
//! runs it, or — when nothing is due — advances the clock to the next
//! deadline and runs everyone. A node may be killed before any step.
//!
//! Judging a finished run against the promises is in `judge`; faults a
//! node lives through (its LAN cut, its application dead), the gateway,
//! the application and the links' sessions in `faults`; what a run is a
//! function of in `spec`.

mod faults;
mod judge;
mod phase;
mod spec;
mod trace;

pub use faults::{CONNECT_RETRY, LAN_OUTAGE, SETTLE};
pub use phase::TlsPhase;
pub use spec::{Kill, Net, RunSpec, Variant};
use trace::{link_desc, stats_delta};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotpair_replicator::{ConnKey, Msg, UnitKind};
use hotpair_stack::smoltcp::wire::Ipv4Address;
use sha2::{Digest, Sha256};
use smoltcp::wire::EthernetAddress;

use crate::addresses::{vip, vip_index, Who};
use crate::client::{Client, CLIENT_MAC, FIRST_PORT};
use crate::lan;
use crate::node::{LinkIn, NodeSeeds, SimNode};
use crate::rng::{derive, Rng};
use crate::scenario::{self, Expectations, Scenario};
use crate::topology::{Address, Topology};
use crate::wire::WireCheck;

/// Default heartbeat timeout (as the node's default configuration).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(500);
/// Virtual time a run keeps going after the client is done, watching for
/// late RSTs and stray bytes.
pub const GRACE: Duration = Duration::from_secs(2);
/// A run not done by then is stalled.
pub const MAX_TIME: Duration = Duration::from_secs(300);
pub const MAX_STEPS: u64 = 3_000_000;
/// Deliveries pending at once before the run is called an event storm.
pub const MAX_QUEUE: usize = 200_000;
/// The longest `Shell::run` sleeps between rounds.
pub const SHELL_MAX_SLEEP: Duration = Duration::from_millis(100);
/// Steps in a row that do not advance the clock before it is a livelock.
const MAX_STILL_STEPS: u32 = 10_000;

/// The seeds of a run, derived from its seed.
pub fn node_seeds(seed: u64, who: Who) -> NodeSeeds {
    let salt = who.index() as u64 * 16;
    NodeSeeds {
        core: derive(seed, 1 + salt),
    }
}

/// What happened in a run, for coverage counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunStats {
    pub lan_frames: u64,
    pub lan_lost: u64,
    pub link_msgs: u64,
    pub tso_frames: u64,
    /// Some node promoted shadows / claimed an address.
    pub promoted: bool,
    pub claimed: bool,
    pub promoted_conns: u64,
    pub held: u64,
    pub held_dropped: u64,
    pub not_forwarded: u64,
    pub duplicate_syn: u64,
    pub passed_through: u64,
    /// Shadows given up (diverged) whose connections kept going to their
    /// primary, on every node; of the `static` replies an owner could not
    /// make, those for want of the content generation the primary named.
    pub shadows_detached: u64,
    pub generation_missing: u64,
    /// Detached connections still tracked at the end of the run.
    pub detached_open: u64,
    /// Connections opened by a SYN cookie, on every node.
    pub syn_cookies_validated: u64,
    pub arp_updates: u64,
    pub duplicate_bytes: u64,
    /// Final units of the scenario's requests that the owners of the
    /// victim's primary addresses had received when it died.
    pub logged_before_kill: u64,
    /// RSTs that reached the client after its connection was over.
    pub late_rsts: u64,
    /// Link messages held up by a retransmission (see [`Net`]).
    pub link_stalls: u64,
    /// Requests the application committed; of them, those executed more
    /// than once (re-run on the peer: the database returned the stored
    /// reply); jobs the application could not take (dead).
    pub app_commits: u64,
    pub app_reexecuted: u64,
    pub app_refused: u64,
    /// Links made again after one was dropped.
    pub relinks: u64,
    /// HTTPS handshakes the client completed: full, full with a
    /// HelloRetryRequest, resumed (PSK); ClientHellos that offered a
    /// session ticket.
    pub tls_full: u64,
    pub tls_retried: u64,
    pub tls_resumed: u64,
    pub tls_tickets_offered: u64,
    /// Shadows the owner nodes gave up (their primary's output differed
    /// from what they made or predicted), and `static` replies the owner
    /// nodes made themselves (ahead or for a local unit).
    pub diverged: u64,
    pub local_replies: u64,
    /// Of `local_replies`, those made ahead of the primary's unit.
    pub replies_ahead: u64,
}

/// The verdict of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Step at which the client was done (the scenario's length).
    pub done_step: Option<u64>,
    pub done_time: Option<Duration>,
    pub steps: u64,
    pub time: Duration,
    pub violations: Vec<String>,
    pub stats: RunStats,
    pub fingerprint: Option<[u8; 32]>,
    /// Handler runs of each node at the end (A, B, ...).
    pub handler_runs: Vec<u64>,
    /// Wall time the run took (for reports only; set by whoever ran it).
    pub wall: Duration,
    /// HTTPS: the phase the victim's connection was in at the kill
    /// (see [`TlsPhase`]).
    pub kill_phase: Option<TlsPhase>,
    /// HTTPS, per node (A, B, ...): the step at which the first SYN of
    /// the connection a kill of that node is judged by (the last HTTPS
    /// connection on the first address it is the primary of, else the
    /// owner of) left the client: where its handshake's kill window is
    /// counted from. Outside duplex the addresses' connections open at
    /// different times, so each victim has its own. Empty without HTTPS.
    pub focus_syn_steps: Vec<Option<u64>>,
}

impl Outcome {
    /// [`Outcome::focus_syn_steps`] of `victim`.
    pub fn focus_syn_step(&self, victim: Who) -> Option<u64> {
        self.focus_syn_steps.get(victim.index()).copied().flatten()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Client,
    Node(Who),
    /// The LAN host the nodes' LAN checks ask (with `RunSpec::checks`).
    Gateway,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Client => f.write_str("client"),
            Port::Node(w) => f.write_str(w.name()),
            Port::Gateway => f.write_str("gateway"),
        }
    }
}

impl Port {
    fn mac(self) -> EthernetAddress {
        match self {
            Port::Client => CLIENT_MAC,
            Port::Node(w) => w.mac(),
            Port::Gateway => crate::addresses::GATEWAY_MAC,
        }
    }
}

enum Delivery {
    Lan {
        from: Port,
        to: Port,
        frame: Vec<u8>,
    },
    Link {
        from: Who,
        to: Who,
        msg: LinkIn,
        /// The link session it belongs to (see `faults`; always 0 without
        /// `RunSpec::checks`).
        session: u64,
    },
    /// The simulated application's work (see `faults`).
    App(faults::AppEvent),
    /// A node's link task for a peer starts (see `faults`).
    LinkTask { node: Who, peer: Who },
}

pub struct World {
    spec: RunSpec,
    addrs: Vec<Address>,
    base: Instant,
    t: Duration,
    rng: Rng,
    queue: BTreeMap<(Duration, u64), Delivery>,
    next_seq: u64,
    /// Last link delivery time per direction (sender, receiver), for order.
    link_tail: BTreeMap<(Who, Who), Duration>,
    nodes: Vec<Option<SimNode>>,
    client: Client,
    step: u64,
    killed: bool,
    /// Handler runs per node and address when the victim died.
    runs_at_kill: Vec<Vec<u64>>,
    /// Final units (address, connection, request index) delivered to the
    /// address's owner.
    finals_to_owner: BTreeSet<(usize, ConnKey, u64)>,
    /// Per address: those final units when the victim died.
    finals_at_kill: Vec<u64>,
    /// Takeovers seen: (node, address, promoted (else claimed)).
    takeovers: BTreeSet<(Who, usize, bool)>,
    wire: WireCheck,
    errors: Vec<String>,
    stats: RunStats,
    still_steps: u32,
    hasher: Option<Sha256>,
    done_step: Option<u64>,
    done_time: Option<Duration>,
    /// Where the step count is published for a watchdog.
    pulse: Option<Arc<AtomicU64>>,
    /// The LAN cut, the application, the database, the links' sessions.
    faults: faults::Faults,
    /// HTTPS: what the nodes saw of each connection (by client port).
    tls_seen: BTreeMap<u16, phase::TlsSeen>,
    /// HTTPS: the phase of the victim's connection at the kill.
    kill_phase: Option<TlsPhase>,
    /// The step each client connection's first SYN left the client at.
    syn_steps: Vec<Option<u64>>,
}

impl World {
    pub fn new(spec: RunSpec) -> Self {
        // The origin of virtual time: read once, never again.
        let base = Instant::now();
        let topo = spec.topology;
        let absent = spec
            .kill
            .filter(|k| k.variant == Variant::Absent)
            .map(|k| k.victim);
        let mut nodes: Vec<Option<SimNode>> = topo
            .all_nodes()
            .into_iter()
            .map(|w| {
                (Some(w) != absent).then(|| {
                    SimNode::new(
                        w,
                        topo,
                        node_seeds(spec.seed, w),
                        crate::node::NodeOptions {
                            heartbeat_timeout: HEARTBEAT_TIMEOUT,
                            files_policy: spec.scenario.files_policy,
                            max_half_open: spec.scenario.max_half_open,
                            checks: spec.checks,
                            tls: spec.scenario.tls(),
                        },
                        base,
                    )
                })
            })
            .collect();
        // Every link is up from the start, but those of a node that never
        // starts.
        for n in nodes.iter_mut().flatten() {
            for p in n.peers().to_vec() {
                if Some(p) != absent {
                    n.deliver_link(p, LinkIn::Connected, base);
                }
            }
        }
        let client = Client::new(derive(spec.seed, 3), &spec.scenario.conns, Duration::ZERO);
        let syn_steps = vec![None; client.conns.len()];
        let addrs = topo.addresses();
        World {
            runs_at_kill: vec![vec![0; addrs.len()]; nodes.len()],
            finals_at_kill: vec![0; addrs.len()],
            addrs,
            rng: Rng::new(derive(spec.seed, 4)),
            hasher: spec.fingerprint.then(Sha256::new),
            spec,
            base,
            t: Duration::ZERO,
            queue: BTreeMap::new(),
            next_seq: 0,
            link_tail: BTreeMap::new(),
            nodes,
            client,
            step: 0,
            killed: absent.is_some(),
            finals_to_owner: BTreeSet::new(),
            takeovers: BTreeSet::new(),
            wire: WireCheck::default(),
            errors: Vec::new(),
            stats: RunStats::default(),
            still_steps: 0,
            done_step: None,
            done_time: None,
            pulse: None,
            faults: faults::Faults::new(topo),
            tls_seen: BTreeMap::new(),
            kill_phase: None,
            syn_steps,
        }
    }

    /// Steps run so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Replies the client has received whole so far, on all its
    /// connections.
    pub fn replies_complete(&self) -> usize {
        self.client.conns.iter().map(|c| c.complete).sum()
    }

    /// Node `who` reloads its `/static/` content to `files` now (an
    /// operator's reload on one node). Returns false if it is not running.
    pub fn reload_files(&mut self, who: Who, files: hotpair_http::files::Files) -> bool {
        let Some(n) = self.nodes.get_mut(who.index()).and_then(Option::as_mut) else {
            return false;
        };
        match n.reload_files(files) {
            Ok(()) => true,
            Err(e) => {
                self.errors
                    .push(format!("{}: reload refused: {e}", who.name()));
                false
            }
        }
    }

    /// Publish the step count here as the run goes (see `threads::run_all`).
    pub fn with_pulse(mut self, pulse: Arc<AtomicU64>) -> Self {
        self.pulse = Some(pulse);
        self
    }

    fn pulse(&self) {
        if let Some(p) = &self.pulse {
            p.store(self.step, Ordering::Relaxed);
        }
    }

    fn now(&self) -> Instant {
        self.base + self.t
    }

    fn trace(&mut self, what: impl FnOnce() -> String) {
        if self.spec.trace || self.hasher.is_some() {
            let line = what();
            if let Some(h) = self.hasher.as_mut() {
                h.update(line.as_bytes());
                h.update(b"\n");
            }
            if self.spec.trace {
                println!("[{:>7} {:>12.6}s] {line}", self.step, self.t.as_secs_f64());
            }
        }
    }

    /// Run to the end and judge.
    pub fn run(mut self) -> Outcome {
        loop {
            if let Err(e) = self.step() {
                self.errors.push(e);
                break;
            }
            if self.done_step.is_none() && self.client.done() {
                self.done_step = Some(self.step);
                self.done_time = Some(self.t);
                self.trace(|| "client done".into());
            }
            if self.done_time.is_some_and(|d| self.t >= d + GRACE) && self.settled() {
                break;
            }
            if self.t > MAX_TIME || self.step > MAX_STEPS {
                break;
            }
            if self.queue.len() > MAX_QUEUE {
                self.errors.push(format!(
                    "event storm: {} deliveries pending at step {} (t={:.6}s)",
                    self.queue.len(),
                    self.step,
                    self.t.as_secs_f64()
                ));
                break;
            }
        }
        self.finish()
    }

    /// One step (see the module docs). Kills first if this is the step.
    pub fn step(&mut self) -> Result<(), String> {
        if let Some(k) = self.spec.kill {
            if !self.killed && k.step == self.step {
                self.kill(k);
            }
        }
        self.heal_if_due();
        self.pulse();
        let due = self
            .queue
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= self.t);
        if due {
            let (_, d) = self.queue.pop_first().expect("checked");
            self.still_steps = 0;
            self.deliver(d)?;
        } else {
            let (nodes, client) = self.deadlines();
            let queue = self.queue.first_key_value().map(|((t, _), _)| *t);
            let heal = self.faults.heal_at;
            let next = nodes
                .iter()
                .copied()
                .chain([client, queue, heal])
                .flatten()
                .min();
            match next {
                Some(at) if at > self.t => {
                    self.t = at;
                    self.still_steps = 0;
                }
                Some(_) => {
                    self.still_steps += 1;
                    if self.still_steps > MAX_STILL_STEPS {
                        return Err(format!(
                            "livelock: {MAX_STILL_STEPS} steps with a deadline due and the clock not moving"
                        ));
                    }
                }
                None => {
                    if self.client.done() {
                        // Quiet for good: skip the rest of the grace period.
                        if let Some(d) = self.done_time {
                            self.t = self.t.max(d + GRACE);
                        }
                        self.step += 1;
                        return Ok(());
                    }
                    return Err("deadlock: nothing scheduled and the client is not done".into());
                }
            }
            // Run whoever is due (a delivery that is due waits for the next step).
            let t = self.t;
            let due_nodes: Vec<Who> = (0..nodes.len())
                .filter(|&i| nodes[i].is_some_and(|d| d <= t))
                .map(|i| Who(i as u8))
                .collect();
            let client_due = client.is_some_and(|d| d <= t);
            if !due_nodes.is_empty() || client_due {
                self.trace(|| {
                    let mut who: Vec<&str> = due_nodes.iter().map(|w| w.name()).collect();
                    if client_due {
                        who.push("client");
                    }
                    format!("timers: {}", who.join(" "))
                });
            }
            for w in due_nodes {
                self.run_node(w)?;
            }
            if client_due {
                self.run_client();
            }
        }
        self.step += 1;
        Ok(())
    }

    /// When each node and the client next want to run, in virtual time
    /// rounded up to whole microseconds (smoltcp's clock has no finer grain).
    /// A node's is what `Shell::run` sleeps for: the engine's `poll_delay`
    /// and the service's `poll_timeout`, at most [`SHELL_MAX_SLEEP`] (the
    /// shell's own cap, so a node wakes at least that often).
    fn deadlines(&mut self) -> (Vec<Option<Duration>>, Option<Duration>) {
        let now = self.now();
        let (base, t) = (self.base, self.t);
        let up = |d: Duration| Duration::from_micros(d.as_nanos().div_ceil(1000) as u64).max(t);
        let mut nodes = vec![None; self.nodes.len()];
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if let Some(n) = n {
                let at = n.next_deadline(now).map_or(t + SHELL_MAX_SLEEP, |i| {
                    i.saturating_duration_since(base).min(t + SHELL_MAX_SLEEP)
                });
                nodes[i] = Some(up(at));
            }
        }
        let client = self.client.poll_delay(t).map(|d| up(t + d));
        (nodes, client)
    }

    fn kill(&mut self, k: Kill) {
        self.killed = true;
        if self.spec.scenario.tls() {
            self.kill_phase = self.tls_phase(k.victim);
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for a in 0..self.addrs.len() {
                self.runs_at_kill[i][a] = n.as_ref().map_or(0, |n| n.handler_runs_for(a));
            }
        }
        for a in 0..self.addrs.len() {
            self.finals_at_kill[a] = self
                .finals_to_owner
                .iter()
                .filter(|(x, _, _)| *x == a)
                .count() as u64;
        }
        self.stats.logged_before_kill = self
            .addrs
            .iter()
            .filter(|a| a.primary == k.victim)
            .map(|a| self.finals_at_kill[a.index])
            .sum();
        if k.variant.lives_on() {
            self.trace(|| format!("FAULT {} ({})", k.victim.name(), k.variant.name()));
            self.strike(k);
            return;
        }
        self.faults.end_link_tasks(k.victim);
        let peers = self.nodes[k.victim.index()]
            .take()
            .map(|n| n.peers().to_vec())
            .unwrap_or_default();
        self.trace(|| format!("KILL {} ({})", k.victim.name(), k.variant.name()));
        if k.variant == Variant::Lost {
            // The dead process's kernel resets its links; each survivor
            // hears of it after whatever was already on the wire.
            for p in peers {
                self.send_link(
                    k.victim,
                    p,
                    LinkIn::Lost("connection reset by peer (simulated crash)".into()),
                );
            }
        }
    }

    fn deliver(&mut self, d: Delivery) -> Result<(), String> {
        match d {
            Delivery::Lan { from, to, frame } => {
                if self.faults.cut_off(from, to) {
                    self.trace(|| format!("CUT {from} -> {to}: {}", lan::describe(&frame)));
                    return Ok(());
                }
                self.trace(|| format!("{from} -> {to}: {}", lan::describe(&frame)));
                match to {
                    Port::Gateway => self.gateway_receive(&frame),
                    Port::Client => {
                        let (step, t) = (self.step, self.t);
                        let conns = &self.client.conns;
                        let finished =
                            |port: u16| conns.iter().any(|c| c.local_port == port && c.done());
                        self.wire
                            .to_client(&frame, &from.to_string(), step, t, finished);
                        self.client.receive(frame, t);
                        self.run_client();
                    }
                    Port::Node(w) => {
                        if from == Port::Client && self.spec.scenario.tls() {
                            self.see_client_frame(w, &frame);
                        }
                        let Some(n) = self.nodes[w.index()].as_mut() else {
                            return Ok(());
                        };
                        n.core
                            .handle_lan_frame(hotpair_stack::Frame::copy_from(&frame));
                        self.run_node(w)?;
                    }
                }
            }
            Delivery::App(ev) => self.app_event(ev)?,
            Delivery::LinkTask { node, peer } => self.start_link_task(node, peer),
            Delivery::Link {
                from,
                to,
                msg,
                session,
            } => {
                if self.nodes[to.index()].is_none() {
                    self.trace(|| {
                        format!("link {} -> {}: {}", from.name(), to.name(), link_desc(&msg))
                    });
                    return Ok(());
                }
                let Some(msg) = self.link_session_filter(from, to, msg, session) else {
                    return Ok(());
                };
                self.trace(|| {
                    format!("link {} -> {}: {}", from.name(), to.name(), link_desc(&msg))
                });
                if let LinkIn::Msg(
                    channel,
                    Msg::Unit(hotpair_replicator::wire::Unit {
                        conn,
                        index,
                        kind: UnitKind::Final,
                        ..
                    }),
                ) = &msg
                {
                    let a = vip_index(Ipv4Address::from(*channel));
                    if let Some(a) = a.filter(|&a| self.addrs.get(a).is_some_and(|x| x.owner == to))
                    {
                        if *index != u64::MAX {
                            self.finals_to_owner.insert((a, *conn, *index));
                        }
                    }
                }
                if self.spec.scenario.tls() {
                    self.see_link_msg(to, &msg);
                }
                let now = self.now();
                if let Some(n) = self.nodes[to.index()].as_mut() {
                    n.deliver_link(from, msg, now);
                }
                self.run_node(to)?;
            }
        }
        Ok(())
    }

    fn run_node(&mut self, w: Who) -> Result<(), String> {
        let now = self.now();
        let Some(n) = self.nodes[w.index()].as_mut() else {
            return Ok(());
        };
        let before = self.spec.trace.then(|| n.stats());
        // A takeover's handler runs count from before the round that made
        // it (the round runs the promoted requests at once).
        if self.spec.checks {
            let runs = n
                .addresses()
                .iter()
                .map(|&a| (a, n.handler_runs_for(a)))
                .collect();
            self.faults.runs_before_round = runs;
        }
        let mut out = n.round(now)?;
        if let Some(before) = before {
            let after = n.stats();
            let addrs = n.addresses().to_vec();
            for ((b, a), addr) in before.iter().zip(&after).zip(addrs) {
                let d = stats_delta(b, a);
                if !d.is_empty() {
                    let line = format!("{} engine {}: {d}", w.name(), vip(addr));
                    self.trace(|| line);
                }
            }
        }
        // `files` and `generate` run inline (`set_inline_generate`): a
        // reply is made in the round its request completed; the
        // application's jobs go to the world's application.
        // Links are sessions only with `checks` (see `world::faults`);
        // without, the world's links never fail, whatever a core drops.
        let dropped = std::mem::take(&mut out.dropped);
        let reconnects = std::mem::take(&mut out.reconnects);
        self.emit(w, out);
        if self.spec.checks {
            self.drop_links(w, &dropped);
            self.reconnect_links(w, &reconnects);
        }
        Ok(())
    }

    /// Put a node's output on the LAN and the link.
    fn emit(&mut self, w: Who, out: crate::node::RoundOut) {
        for ip in out.promoted {
            self.stats.promoted = true;
            if let Some(a) = vip_index(ip) {
                self.takeovers.insert((w, a, true));
                self.snapshot_takeover(a, w);
            }
            self.trace(|| format!("{} promotes its shadow connections of {ip}", w.name()));
        }
        for ip in out.claimed {
            self.stats.claimed = true;
            if let Some(a) = vip_index(ip) {
                self.takeovers.insert((w, a, false));
                self.snapshot_takeover(a, w);
            }
            self.trace(|| format!("{} claims the service address {ip}", w.name()));
        }
        for f in out.frames {
            let segs = match f.gso {
                Some(mss) if f.data().len() > 1514 => {
                    self.stats.tso_frames += 1;
                    lan::segment(f.data(), usize::from(mss))
                }
                _ => vec![f.data().to_vec()],
            };
            if let Some(n) = self.nodes[w.index()].as_mut() {
                n.core.recycle(f);
            }
            for s in segs {
                self.send_lan(Port::Node(w), s);
            }
        }
        for (to, channel, m) in out.msgs {
            self.send_link(w, to, LinkIn::Msg(channel, m));
        }
        for j in out.jobs {
            self.start_job(w, j);
        }
        for _ in 0..out.app_checks {
            self.start_app_check(w);
        }
    }

    fn run_client(&mut self) {
        // A node cut off the LAN does not answer the client's re-confirmation.
        let alive: Vec<_> = self
            .nodes
            .iter()
            .flatten()
            .filter(|n| self.faults.cut != Some(n.who))
            .map(|n| n.who.mac())
            .collect();
        self.client
            .refresh_neighbor(self.t, |mac| alive.contains(&mac));
        let frames = self.client.poll(self.t);
        for f in &frames {
            let syn = hotpair_stack::seg::parse(f)
                .filter(|s| s.has(hotpair_stack::seg::SYN) && s.src_port >= FIRST_PORT);
            if let Some(at) =
                syn.and_then(|s| self.syn_steps.get_mut(usize::from(s.src_port - FIRST_PORT)))
            {
                at.get_or_insert(self.step);
            }
        }
        for f in frames {
            let (step, t) = (self.step, self.t);
            self.wire.from_client(&f, step, t);
            self.send_lan(Port::Client, f);
        }
    }

    fn send_lan(&mut self, from: Port, frame: Vec<u8>) {
        let Some(dst) = lan::dst_mac(&frame) else {
            return;
        };
        // The switch: by destination MAC, a broadcast to every other port.
        let gateway = self.spec.checks.then_some(Port::Gateway);
        let ports = std::iter::once(Port::Client)
            .chain((0..self.nodes.len()).map(|i| Port::Node(Who(i as u8))))
            .chain(gateway);
        let targets: Vec<Port> = ports
            .filter(|p| *p != from && (dst.is_broadcast() || p.mac() == dst))
            .collect();
        let net = self.spec.net;
        for to in targets {
            self.stats.lan_frames += 1;
            let client_path = from == Port::Client || to == Port::Client;
            if client_path && self.rng.chance_ppm(net.loss_ppm) {
                self.stats.lan_lost += 1;
                self.trace(|| format!("LOST {from} -> {to}: {}", lan::describe(&frame)));
                continue;
            }
            let extra = if client_path && self.rng.chance_ppm(net.reorder_ppm) {
                Duration::from_micros(1 + self.rng.below(net.reorder_delay.as_micros() as u64))
            } else {
                Duration::ZERO
            };
            let at = self.t + net.lan_delay + extra;
            let seq = self.next_seq;
            self.next_seq += 1;
            self.queue.insert(
                (at, seq),
                Delivery::Lan {
                    from,
                    to,
                    frame: frame.clone(),
                },
            );
        }
    }

    fn send_link(&mut self, from: Who, to: Who, msg: LinkIn) {
        let session = self.faults.session(from, to);
        self.send_link_in(from, to, msg, session);
    }

    fn send_link_in(&mut self, from: Who, to: Who, msg: LinkIn, session: u64) {
        self.stats.link_msgs += 1;
        let net = self.spec.net;
        let mut at = self.t + net.link_delay;
        if self.rng.chance_ppm(net.link_stall_ppm) {
            self.stats.link_stalls += 1;
            self.trace(|| {
                format!(
                    "LINK STALL from {}: {} ms",
                    from.name(),
                    net.link_stall.as_millis()
                )
            });
            at += net.link_stall;
        }
        let tail = self.link_tail.entry((from, to)).or_default();
        let at = at.max(*tail);
        *tail = at;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.insert(
            (at, seq),
            Delivery::Link {
                from,
                to,
                msg,
                session,
            },
        );
    }
}

/// Expectations for a scenario (spread over `topo`'s addresses) under a
/// seed (the generate candidates depend on the nodes' seeds).
pub fn expectations_for(s: &Scenario, seed: u64, topo: Topology) -> Arc<Expectations> {
    let seeds: Vec<u64> = topo
        .all_nodes()
        .into_iter()
        .map(|w| node_seeds(seed, w).core)
        .collect();
    scenario::expectations(s, &seeds)
}
