//! A sampled kill matrix for the variants whose victim lives on (`lan`,
//! `app`): per topology, scenario and (seed, LAN), a baseline with the
//! nodes' checks on ([`RunSpec::checks`]: the LAN check's probes and the
//! application checks add steps, so the plain matrix's baselines do not
//! fit), then each node struck at a few kill steps evenly spread over the
//! baseline's length — each victim's steps shifted by a fraction of the
//! spacing, so between the victims the steps interleave.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::matrix::{self, Failure};
use crate::scenario::Scenario;
use crate::topology::Topology;
use crate::world::{Kill, Net, Outcome, RunSpec, Variant};

/// One part of the plan: a topology, a seed and LAN, and kill steps per
/// (scenario, victim).
#[derive(Debug, Clone, Copy)]
pub struct Part {
    pub topology: Topology,
    pub seed: u64,
    pub net: Net,
    pub points: u64,
}

/// What ran and what broke.
#[derive(Debug, Default)]
pub struct Sampled {
    pub specs: Vec<RunSpec>,
    pub outs: Vec<Outcome>,
    pub baselines: usize,
    pub failures: Vec<Failure>,
    /// Lines naming each baseline's length and the steps tried.
    pub plan: Vec<String>,
    pub wall: Duration,
}

/// `points` steps of `0..len` evenly spread, shifted by `shift`/`of` of
/// the spacing.
pub fn spread(len: u64, points: u64, shift: u64, of: u64) -> Vec<u64> {
    if len == 0 || points == 0 {
        return Vec::new();
    }
    let stride = (len / points).max(1);
    let start = stride * shift / of.max(1) + stride / (2 * of.max(1));
    (start.min(len - 1)..len)
        .step_by(stride as usize)
        .take(points as usize)
        .collect()
}

/// Run `variant` over `plan` for every scenario in `scenarios`.
pub fn run(variant: Variant, plan: &[Part], scenarios: &[Scenario], threads: usize) -> Sampled {
    let started = Instant::now();
    let mut base = Vec::new();
    for p in plan {
        for s in scenarios {
            let s = Arc::new(p.topology.scenario(s.clone()));
            let mut spec = matrix::spec(p.topology, &s, p.seed, p.net, None);
            spec.checks = true;
            base.push((spec, p.points));
        }
    }
    let base_specs: Vec<RunSpec> = base.iter().map(|(s, _)| s.clone()).collect();
    let base_outs = crate::threads::run_all(&base_specs, threads);
    let mut r = Sampled {
        baselines: base_specs.len(),
        ..Sampled::default()
    };
    let mut specs = Vec::new();
    for ((b, points), out) in base.iter().zip(&base_outs) {
        r.failures.extend(Failure::of(b, out));
        let Some(len) = out.done_step else {
            r.plan.push(format!(
                "{}: baseline did not finish; no kill points",
                b.label()
            ));
            continue;
        };
        let victims = b.topology.all_nodes();
        for (i, &victim) in victims.iter().enumerate() {
            let steps = spread(len, *points, i as u64, victims.len() as u64);
            r.plan.push(format!(
                "{:<9} {:<10} seed={} net={:<5}: {len} steps, victim {} struck at {steps:?}",
                b.topology.name(),
                b.scenario.name,
                b.seed,
                b.net.name,
                b.topology.victim_name(victim)
            ));
            for step in steps {
                let mut s = b.clone();
                s.kill = Some(Kill {
                    victim,
                    step,
                    variant,
                });
                specs.push(s);
            }
        }
    }
    let outs = crate::threads::run_all(&specs, threads);
    for (s, o) in specs.iter().zip(&outs) {
        r.failures.extend(Failure::of(s, o));
    }
    r.specs = specs;
    r.outs = outs;
    r.wall = started.elapsed();
    r
}

impl Sampled {
    /// The runs' totals, one line: runs, takeovers, the application's
    /// commits, re-executions and refusals, links made again.
    pub fn summary(&self, what: &str) -> String {
        let sum = |f: fn(&Outcome) -> u64| -> u64 { self.outs.iter().map(f).sum() };
        format!(
            "sim: {what}: {} baselines and {} runs in {:.1}s: {} with a promotion, {} with a claim; \
             application: {} commits, {} requests executed again (the stored reply returned), \
             {} jobs refused; {} links made again; {}",
            self.baselines,
            self.specs.len(),
            self.wall.as_secs_f64(),
            sum(|o| u64::from(o.stats.promoted)),
            sum(|o| u64::from(o.stats.claimed)),
            sum(|o| o.stats.app_commits),
            sum(|o| o.stats.app_reexecuted),
            sum(|o| o.stats.app_refused),
            sum(|o| o.stats.relinks),
            if self.failures.is_empty() {
                "all promises held".to_owned()
            } else {
                format!("{} runs FAILED", self.failures.len())
            }
        )
    }
}

/// Worker threads for a matrix: `SIM_THREADS`, else one per core.
pub fn threads() -> usize {
    std::env::var("SIM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// `SIM_FULL=1` (as `scripts/test.sh` sets it): the full sampling;
/// otherwise about a tenth of it, for a plain `cargo test` in a debug
/// build.
pub fn full() -> bool {
    std::env::var("SIM_FULL").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The sampling the fault variants share (`lan`, `app`): per scenario and
/// victim, duplex 80 kill steps on the clean LAN and 24 on each of two
/// lossy seeds, dual-role 24 + 8, the ring 12 + 4 — or a tenth of it
/// without [`full`].
pub fn standard_plan() -> Vec<Part> {
    let part = |topology, seed, net, points| Part {
        topology,
        seed,
        net,
        points,
    };
    if full() {
        vec![
            part(Topology::Duplex, 1, Net::CLEAN, 80),
            part(Topology::Duplex, 2, Net::LOSSY, 24),
            part(Topology::Duplex, 3, Net::LOSSY, 24),
            part(Topology::DualRole, 1, Net::CLEAN, 24),
            part(Topology::DualRole, 2, Net::LOSSY, 8),
            part(Topology::Ring(3), 1, Net::CLEAN, 12),
            part(Topology::Ring(3), 2, Net::LOSSY, 4),
        ]
    } else {
        vec![
            part(Topology::Duplex, 1, Net::CLEAN, 8),
            part(Topology::Duplex, 2, Net::LOSSY, 3),
            part(Topology::DualRole, 1, Net::CLEAN, 2),
            part(Topology::Ring(3), 1, Net::CLEAN, 1),
        ]
    }
}

/// The `app` scenario's plan in the fault variants: every step (40 spread
/// over the run without [`full`]) of duplex clean and lossy and
/// dual-role clean.
pub fn every_step_plan() -> Vec<Part> {
    let points = if full() { u64::MAX } else { 40 };
    let every = |topology, seed, net| Part {
        topology,
        seed,
        net,
        points,
    };
    vec![
        every(Topology::Duplex, 3, Net::CLEAN),
        every(Topology::Duplex, 4, Net::LOSSY),
        every(Topology::DualRole, 3, Net::CLEAN),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_points_interleave_between_victims() {
        assert_eq!(spread(100, 4, 0, 2), vec![6, 31, 56, 81]);
        assert_eq!(spread(100, 4, 1, 2), vec![18, 43, 68, 93]);
        assert_eq!(spread(3, 10, 0, 1), vec![0, 1, 2]);
        assert!(spread(0, 4, 0, 2).is_empty());
    }
}
