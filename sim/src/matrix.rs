//! The kill matrix: per mode (a [`Topology`]), each scenario once without
//! failure (its length S in steps), then again from scratch with each
//! victim (duplex: the primary, then the owner node; dual-role and ring:
//! each node) killed at step k for every k in 0..S (or a stated subset), in
//! each kill variant; over a clean LAN and, for a few seeds, a lossy one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::addresses::Who;
use crate::isolate::{run_isolated, Isolation};
use crate::scenario::Scenario;
use crate::topology::Topology;
use crate::world::{expectations_for, Kill, Net, Outcome, RunSpec, RunStats, TlsPhase, Variant};

// The in-process runner, here too: it is how the matrix runs without
// isolation, and the tests call it by this path.
pub use crate::threads::run_all;

/// Which kill steps to try.
#[derive(Debug, Clone, Copy)]
pub enum Points {
    /// Every step of the scenario.
    All,
    /// Every step below `dense`, then `spaced` steps evenly spread over the
    /// rest.
    Capped { dense: u64, spaced: u64 },
    /// Every `stride`-th step, starting at a different step for each
    /// (victim, variant) pair of the mode (pair `r` starts at `(r + offset)
    /// mod stride`): with `stride` ≤ the number of pairs every step is
    /// tried by some pair. `offset` shifts the assignment, so that seeds
    /// run with offsets 0..stride give every pair every step once between
    /// them.
    Every { stride: u64, offset: u64 },
    /// Every `stride`-th step of `dense` steps from `lead` steps before the
    /// first SYN of the victim's (last) HTTPS connection (see
    /// [`Outcome::focus_syn_steps`]) — its handshake and first records —
    /// then `spaced` steps evenly spread over the rest after it. Inside
    /// the window each (victim, variant) pair starts at a different step,
    /// as in [`Points::Every`] (pair `r` at `r mod stride`): with `stride`
    /// ≤ the number of pairs every step of the window is some pair's kill
    /// point, for `1/stride` of the runs of `stride` 1.
    Window {
        lead: u64,
        dense: u64,
        stride: u64,
        spaced: u64,
    },
}

impl Points {
    /// The kill steps of a scenario `len` steps long, for the `rotation`-th
    /// (victim, variant) pair.
    /// `origin` is where a [`Points::Window`] is counted from.
    pub fn select(self, len: u64, rotation: u64, origin: u64) -> Vec<u64> {
        match self {
            Points::All => (0..len).collect(),
            Points::Every { stride, offset } => {
                let stride = stride.max(1);
                (((rotation + offset) % stride).min(len)..len)
                    .step_by(stride as usize)
                    .collect()
            }
            Points::Window {
                lead,
                dense,
                stride,
                spaced,
            } => {
                let stride = stride.max(1);
                let from = origin.saturating_sub(lead);
                let end = (from + dense).min(len);
                let mut v: Vec<u64> = ((from + rotation % stride).min(end)..end)
                    .step_by(stride as usize)
                    .collect();
                let rest = len - end;
                for i in 0..spaced.min(rest) {
                    let p = end + (i * rest + rest / 2) / spaced.min(rest);
                    if v.last() != Some(&p) {
                        v.push(p);
                    }
                }
                v
            }
            Points::Capped { dense, spaced } => {
                if len <= dense + spaced {
                    return (0..len).collect();
                }
                let mut v: Vec<u64> = (0..dense).collect();
                let rest = len - dense;
                for i in 0..spaced {
                    // Spread over dense..len, the last point near the end.
                    let p = dense + (i * rest + rest / 2) / spaced;
                    if v.last() != Some(&p) {
                        v.push(p);
                    }
                }
                v
            }
        }
    }
}

/// One topology's part of the matrix.
#[derive(Debug, Clone)]
pub struct Mode {
    pub topology: Topology,
    /// (seed, LAN, kill points): each runs the whole matrix.
    pub nets: Vec<(u64, Net, Points)>,
    pub victims: Vec<Who>,
    pub variants: Vec<Variant>,
}

impl Mode {
    /// Every node a victim, both kill variants.
    pub fn new(topology: Topology, nets: Vec<(u64, Net, Points)>) -> Mode {
        Mode {
            topology,
            nets,
            victims: topology.all_nodes(),
            variants: vec![Variant::Lost, Variant::Silent],
        }
    }
}

#[derive(Debug, Clone)]
pub struct MatrixConfig {
    pub scenarios: Vec<Scenario>,
    pub modes: Vec<Mode>,
    pub threads: usize,
    /// Run in child processes (see [`crate::isolate`]); `None`: in threads.
    pub isolation: Option<Isolation>,
}

/// Run specs the way `cfg` says.
pub fn execute(specs: &[RunSpec], threads: usize, isolation: Option<&Isolation>) -> Vec<Outcome> {
    match isolation {
        Some(iso) => run_isolated(specs, threads, iso),
        None => run_all(specs, threads),
    }
}

/// One failed run.
#[derive(Debug, Clone)]
pub struct Failure {
    pub label: String,
    pub violations: Vec<String>,
    pub replay: String,
}

impl Failure {
    /// The failure of a run, if it broke a promise.
    pub fn of(spec: &RunSpec, out: &Outcome) -> Option<Failure> {
        (!out.violations.is_empty()).then(|| Failure {
            label: spec.label(),
            violations: out.violations.clone(),
            replay: spec.replay_command(),
        })
    }

    /// "FAIL label", up to `max` violations, and the replay command.
    pub fn describe(&self, max: usize) -> String {
        let mut s = format!("FAIL {}\n", self.label);
        for v in self.violations.iter().take(max) {
            s.push_str(&format!("    {v}\n"));
        }
        if self.violations.len() > max {
            s.push_str(&format!("    ... {} more\n", self.violations.len() - max));
        }
        s.push_str(&format!("    replay: {}\n", self.replay));
        s
    }
}

/// What ran in one mode.
#[derive(Debug, Default, Clone)]
pub struct ModeReport {
    pub name: String,
    pub runs: usize,
    pub kill_points: usize,
    pub failed: usize,
    /// Wall time of its runs, summed (over every thread).
    pub run_time: Duration,
    pub summary: String,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Lines describing what ran (scenario lengths, points chosen).
    pub plan: Vec<String>,
    pub runs: usize,
    pub kill_points: usize,
    pub failures: Vec<Failure>,
    /// Per mode, in the config's order.
    pub modes: Vec<ModeReport>,
    /// Coverage: how often each takeover branch was exercised.
    pub coverage: Coverage,
    /// HTTPS: kill runs per scenario and the phase their victim's
    /// connection was in (see [`TlsPhase`]).
    pub phases: BTreeMap<&'static str, BTreeMap<TlsPhase, u64>>,
    /// HTTPS: the same kill runs by phase per (mode, LAN) — "duplex
    /// lossy" — in the order they first ran.
    pub phases_by_net: Vec<(String, BTreeMap<TlsPhase, u64>)>,
    pub summary: String,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Coverage {
    pub promotions: u64,
    pub claims: u64,
    pub promoted_conns: u64,
    pub held: u64,
    pub held_dropped: u64,
    pub not_forwarded: u64,
    pub duplicate_syn: u64,
    pub passed_through: u64,
    pub arp_updates: u64,
    pub lan_lost: u64,
    pub tso_frames: u64,
    pub retransmitted_bytes: u64,
    pub logged_before_kill: u64,
    pub late_rsts: u64,
    pub link_stalls: u64,
    pub tls_full: u64,
    pub tls_retried: u64,
    pub tls_resumed: u64,
    pub tls_tickets_offered: u64,
}

impl Coverage {
    fn add(&mut self, s: &RunStats) {
        self.promotions += u64::from(s.promoted);
        self.claims += u64::from(s.claimed);
        self.promoted_conns += s.promoted_conns;
        self.held += s.held;
        self.held_dropped += s.held_dropped;
        self.not_forwarded += s.not_forwarded;
        self.duplicate_syn += s.duplicate_syn;
        self.passed_through += s.passed_through;
        self.arp_updates += s.arp_updates;
        self.lan_lost += s.lan_lost;
        self.tso_frames += s.tso_frames;
        self.retransmitted_bytes += s.duplicate_bytes;
        self.logged_before_kill += u64::from(s.logged_before_kill > 0);
        self.late_rsts += s.late_rsts;
        self.link_stalls += s.link_stalls;
        self.tls_full += s.tls_full;
        self.tls_retried += s.tls_retried;
        self.tls_resumed += s.tls_resumed;
        self.tls_tickets_offered += s.tls_tickets_offered;
    }
}

/// `SIM_PROGRESS=1`: print every run as it starts and ends.
/// A spec for one run. `scenario` is already spread over the topology's
/// addresses ([`Topology::scenario`]).
pub fn spec(
    topology: Topology,
    scenario: &Arc<Scenario>,
    seed: u64,
    net: Net,
    kill: Option<Kill>,
) -> RunSpec {
    RunSpec {
        topology,
        expect: expectations_for(scenario, seed, topology),
        scenario: Arc::clone(scenario),
        seed,
        net,
        kill,
        checks: false,
        trace: false,
        fingerprint: false,
    }
}

pub fn run_matrix(cfg: &MatrixConfig) -> Report {
    let mut report = Report::default();
    // Baselines: no failure. (mode, spec, points)
    let mut base_specs = Vec::new();
    let mut base_of = Vec::new();
    for (m, mode) in cfg.modes.iter().enumerate() {
        let scenarios: Vec<Arc<Scenario>> = cfg
            .scenarios
            .iter()
            .map(|s| Arc::new(mode.topology.scenario(s.clone())))
            .collect();
        report.modes.push(ModeReport {
            name: mode.topology.name(),
            ..ModeReport::default()
        });
        for &(seed, net, points) in &mode.nets {
            for s in &scenarios {
                base_specs.push(spec(mode.topology, s, seed, net, None));
                base_of.push((m, points));
            }
        }
    }
    // The expected replies depend on (mode, scenario, seed) only: share them.
    let base = execute(&base_specs, cfg.threads, cfg.isolation.as_ref());
    let mut specs = Vec::new();
    let mut mode_of = Vec::new();
    for ((b, out), &(m, points)) in base_specs.iter().zip(&base).zip(&base_of) {
        report.record(m, b, out);
        let mode = &cfg.modes[m];
        let Some(len) = out.done_step else {
            report.plan.push(format!(
                "{}: baseline did not finish; no kill points",
                b.label()
            ));
            continue;
        };
        let pairs = mode.victims.len() * mode.variants.len();
        // A window is counted from the victim's own connection's SYN.
        let origins: Vec<u64> = mode
            .victims
            .iter()
            .map(|&v| out.focus_syn_step(v).unwrap_or(0))
            .collect();
        let per_pair: Vec<Vec<u64>> = (0..pairs)
            .map(|r| points.select(len, r as u64, origins[r / mode.variants.len()]))
            .collect();
        let runs: usize = per_pair.iter().map(Vec::len).sum();
        let kind = match points {
            Points::Every { stride, .. } => format!(" (every {stride}th step, rotating)"),
            Points::Window {
                lead,
                dense,
                stride,
                ..
            } => {
                let every = match stride {
                    0 | 1 => "every step".to_owned(),
                    n => format!("every {n} steps, rotating,"),
                };
                let windows: Vec<String> = mode
                    .victims
                    .iter()
                    .zip(&origins)
                    .map(|(&v, &o)| {
                        let from = o.saturating_sub(lead);
                        format!(
                            "{} {from}..{} (SYN at {o})",
                            mode.topology.victim_name(v),
                            from + dense
                        )
                    })
                    .collect();
                format!(
                    " ({every} of {dense} from {lead} before the SYN of the victim's last HTTPS connection: {})",
                    windows.join(", ")
                )
            }
            _ => String::new(),
        };
        report.plan.push(format!(
            "{:<9} {:<10} seed={} net={:<5}: {len} steps ({:.3}s virtual), {} kill points{kind} x {} victims x {} variants",
            mode.topology.name(),
            b.scenario.name,
            b.seed,
            b.net.name,
            out.done_time.unwrap_or_default().as_secs_f64(),
            per_pair[0].len(),
            mode.victims.len(),
            mode.variants.len()
        ));
        // A kill point: a (victim, step), in either variant.
        let kp = runs / mode.variants.len().max(1);
        report.kill_points += kp;
        report.modes[m].kill_points += kp;
        for (v, &victim) in mode.victims.iter().enumerate() {
            for (k, &variant) in mode.variants.iter().enumerate() {
                for &step in &per_pair[v * mode.variants.len() + k] {
                    let mut s = b.clone();
                    s.kill = Some(Kill {
                        victim,
                        step,
                        variant,
                    });
                    specs.push(s);
                    mode_of.push(m);
                }
            }
        }
    }
    let outs = execute(&specs, cfg.threads, cfg.isolation.as_ref());
    for ((s, out), &m) in specs.iter().zip(&outs).zip(&mode_of) {
        report.record(m, s, out);
    }
    for (mode, mr) in cfg.modes.iter().zip(report.modes.iter_mut()) {
        let seeds = |lossy: bool| -> Vec<String> {
            mode.nets
                .iter()
                .filter(|(_, n, _)| (n.loss_ppm > 0) == lossy)
                .map(|(s, _, _)| s.to_string())
                .collect()
        };
        let (clean, lossy) = (seeds(false), seeds(true));
        let victims: Vec<&str> = mode
            .victims
            .iter()
            .map(|&w| mode.topology.victim_name(w))
            .collect();
        let variants: Vec<&str> = mode.variants.iter().map(|v| v.name()).collect();
        mr.summary = format!(
            "sim: mode {}: {} scenarios, {} victims ({}), {} kill variants ({}), {} kill points, {} runs ({:.0}s of run time); seeds clean [{}], {} seeds with loss [{}]: {}",
            mr.name,
            cfg.scenarios.len(),
            mode.victims.len(),
            victims.join(", "),
            mode.variants.len(),
            variants.join(", "),
            mr.kill_points,
            mr.runs,
            mr.run_time.as_secs_f64(),
            clean.join(", "),
            lossy.len(),
            lossy.join(", "),
            if mr.failed == 0 {
                "all promises held".to_owned()
            } else {
                format!("{} runs FAILED", mr.failed)
            }
        );
    }
    report.summary = format!(
        "sim: {} modes ({}), {} kill points, {} runs: {}",
        cfg.modes.len(),
        report
            .modes
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        report.kill_points,
        report.runs,
        if report.failures.is_empty() {
            "all promises held".to_owned()
        } else {
            format!("{} runs FAILED", report.failures.len())
        }
    );
    report
}

impl Report {
    /// Everything a person needs: plan, coverage, failures by kind with
    /// replay commands (`max_per_kind` examples each), summary last.
    /// Count a run, its coverage, and its failure if any.
    fn record(&mut self, mode: usize, spec: &RunSpec, out: &Outcome) {
        self.runs += 1;
        self.coverage.add(&out.stats);
        if let (Some(_), Some(p)) = (spec.kill, out.kill_phase) {
            *self
                .phases
                .entry(spec.scenario.name)
                .or_default()
                .entry(p)
                .or_default() += 1;
            let net = format!("{} {}", self.modes[mode].name, spec.net.name);
            let i = match self.phases_by_net.iter().position(|(n, _)| *n == net) {
                Some(i) => i,
                None => {
                    self.phases_by_net.push((net, BTreeMap::new()));
                    self.phases_by_net.len() - 1
                }
            };
            *self.phases_by_net[i].1.entry(p).or_default() += 1;
        }
        let m = &mut self.modes[mode];
        m.runs += 1;
        m.run_time += out.wall;
        if let Some(f) = Failure::of(spec, out) {
            m.failed += 1;
            self.failures.push(f);
        }
    }

    pub fn render(&self, max_per_kind: usize) -> String {
        let mut s = String::new();
        for p in &self.plan {
            s.push_str(&format!("sim: {p}\n"));
        }
        let c = &self.coverage;
        s.push_str(&format!(
            "sim: coverage: {} promotions ({} connections), {} claims, {} runs with replies logged at the owner node before its primary died, {} held / {} dropped held segments, {} segments not forwarded, {} duplicate SYNs, {} passed through, {} gratuitous-ARP updates, {} TSO frames, {} LAN frames lost, {} bytes retransmitted to the client, {} RSTs after a connection was over, {} link messages held up by a retransmission\n",
            c.promotions,
            c.promoted_conns,
            c.claims,
            c.logged_before_kill,
            c.held,
            c.held_dropped,
            c.not_forwarded,
            c.duplicate_syn,
            c.passed_through,
            c.arp_updates,
            c.tso_frames,
            c.lan_lost,
            c.retransmitted_bytes,
            c.late_rsts,
            c.link_stalls
        ));
        if c.tls_full + c.tls_retried + c.tls_resumed > 0 {
            s.push_str(&format!(
                "sim: TLS handshakes at the client: {} full, {} with a HelloRetryRequest, {} resumed; {} ClientHellos offered a session ticket\n",
                c.tls_full, c.tls_retried, c.tls_resumed, c.tls_tickets_offered
            ));
        }
        s.push_str(&self.phase_table());
        // Failures grouped by the kind of their first violation (numbers
        // blanked out), a few examples each.
        let mut kinds: BTreeMap<String, Vec<&Failure>> = BTreeMap::new();
        for f in &self.failures {
            let first = f.violations.first().map_or("", String::as_str);
            kinds.entry(kind_of(first)).or_default().push(f);
        }
        let mut kinds: Vec<_> = kinds.into_iter().collect();
        kinds.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        for (kind, fs) in &kinds {
            s.push_str(&format!(
                "sim: {} failed runs: {kind}
",
                fs.len()
            ));
            for f in fs.iter().take(max_per_kind) {
                s.push_str(&f.describe(5));
            }
        }
        s.push_str(&self.phase_table_by_net());
        for m in &self.modes {
            s.push_str(&m.summary);
            s.push('\n');
        }
        s.push_str(&self.summary);
        s.push('\n');
        s
    }
}

impl Report {
    /// HTTPS: a table of kill runs by the phase the victim's connection
    /// was in (rows) per scenario (columns) and in total; empty without
    /// HTTPS scenarios.
    pub fn phase_table(&self) -> String {
        let columns: Vec<(&str, &BTreeMap<TlsPhase, u64>)> =
            self.phases.iter().map(|(n, p)| (*n, p)).collect();
        phase_table(
            "kill runs by the phase of the victim's HTTPS connection (a resumption's second one) at the kill",
            &columns,
        )
    }

    /// HTTPS: the same kill runs by phase per mode and LAN (columns), so
    /// the lossy and the other topologies' share of each phase shows.
    pub fn phase_table_by_net(&self) -> String {
        let columns: Vec<(&str, &BTreeMap<TlsPhase, u64>)> = self
            .phases_by_net
            .iter()
            .map(|(n, p)| (n.as_str(), p))
            .collect();
        phase_table(
            "HTTPS takeovers covered: kill runs by the phase of the victim's connection, per mode and LAN",
            &columns,
        )
    }
}

/// Phases (rows, those with a run) by `columns`, with totals; empty
/// without columns.
fn phase_table(title: &str, columns: &[(&str, &BTreeMap<TlsPhase, u64>)]) -> String {
    if columns.is_empty() {
        return String::new();
    }
    let width = |n: &str| n.len().max(6);
    let mut s = format!("sim: {title}\nsim: {:<22}", "phase");
    for (n, _) in columns {
        s.push_str(&format!(" {:>w$}", n, w = width(n)));
    }
    s.push_str(&format!(" {:>7}\n", "total"));
    let mut totals = vec![0u64; columns.len()];
    for p in TlsPhase::ALL {
        let row: Vec<u64> = columns
            .iter()
            .map(|(_, c)| c.get(&p).copied().unwrap_or(0))
            .collect();
        let sum: u64 = row.iter().sum();
        if sum == 0 {
            continue;
        }
        s.push_str(&format!("sim: {:<22}", p.name()));
        for (((n, _), v), t) in columns.iter().zip(&row).zip(totals.iter_mut()) {
            s.push_str(&format!(" {:>w$}", v, w = width(n)));
            *t += v;
        }
        s.push_str(&format!(" {sum:>7}\n"));
    }
    s.push_str(&format!("sim: {:<22}", "total"));
    for ((n, _), t) in columns.iter().zip(&totals) {
        s.push_str(&format!(" {:>w$}", t, w = width(n)));
    }
    s.push_str(&format!(" {:>7}\n", totals.iter().sum::<u64>()));
    s
}

/// A violation with its numbers blanked out: failures of one kind share it.
fn kind_of(v: &str) -> String {
    let mut out = String::new();
    let mut in_num = false;
    // Drop the parenthesised frame/step details.
    let head = v.split(" (").next().unwrap_or(v);
    for ch in head.chars() {
        if ch.is_ascii_digit() {
            if !in_num {
                out.push('N');
            }
            in_num = true;
        } else {
            in_num = false;
            out.push(ch);
        }
    }
    out.replace("promise N", "promise")
}

#[cfg(test)]
mod tests {
    use super::Points;

    /// A window with a stride gives each (victim, variant) pair its own
    /// steps: with `stride` pairs every step of the window is exactly one
    /// pair's, and each pair gets the same spaced steps after it.
    #[test]
    fn a_strided_window_rotates_over_the_pairs() {
        let w = Points::Window {
            lead: 15,
            dense: 80,
            stride: 2,
            spaced: 10,
        };
        let (len, origin) = (600, 100);
        let pairs: Vec<Vec<u64>> = (0..4).map(|r| w.select(len, r, origin)).collect();
        let window = |p: &Vec<u64>| p.iter().copied().filter(|&s| s < 165).collect::<Vec<_>>();
        let after = |p: &Vec<u64>| p.iter().copied().filter(|&s| s >= 165).collect::<Vec<_>>();
        let mut both: Vec<u64> = window(&pairs[0])
            .into_iter()
            .chain(window(&pairs[1]))
            .collect();
        both.sort_unstable();
        assert_eq!(both, (85..165).collect::<Vec<_>>());
        assert_eq!(window(&pairs[0]).len(), 40);
        assert_eq!(window(&pairs[0]), window(&pairs[2]));
        assert_eq!(window(&pairs[1]), window(&pairs[3]));
        assert_eq!(after(&pairs[0]).len(), 10);
        assert!(pairs.iter().all(|p| after(p) == after(&pairs[0])));
        // Stride 1: every step for every pair, as before strides.
        let all = Points::Window {
            lead: 15,
            dense: 80,
            stride: 1,
            spaced: 0,
        };
        assert_eq!(all.select(len, 3, origin), (85..165).collect::<Vec<_>>());
    }
}
