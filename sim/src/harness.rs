//! What the kill-matrix tests (`failover_matrix`, `tls_failover`) share:
//! the `SIM_*` settings, the smoke pattern (each scenario once, then again
//! with a node killed half-way) and the report of a matrix run.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::addresses::Who;
use crate::isolate::Isolation;
use crate::matrix::{self, Failure, MatrixConfig, Report};
use crate::scenario::Scenario;
use crate::topology::Topology;
use crate::world::{Kill, Net, Outcome, RunSpec, Variant};

/// The environment variable `name`, if set and not empty.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The scenarios `SIM_ONLY=a,b` names (all if unset).
pub fn only(scenarios: Vec<Scenario>) -> Vec<Scenario> {
    let only: Option<Vec<String>> =
        env("SIM_ONLY").map(|v| v.split(',').map(str::to_owned).collect());
    scenarios
        .into_iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.iter().any(|n| n == s.name)))
        .collect()
}

/// One run of each scenario in each topology: seed 1, a clean LAN, no kill.
pub fn baselines(topologies: &[Topology], scenarios: fn() -> Vec<Scenario>) -> Vec<RunSpec> {
    topologies
        .iter()
        .flat_map(|&t| {
            scenarios()
                .into_iter()
                .map(move |s| matrix::spec(t, &Arc::new(t.scenario(s)), 1, Net::CLEAN, None))
        })
        .collect()
}

/// `spec` again with each of `victims` killed (lost) half-way through
/// `out`, its run without a kill.
pub fn halfway_kills<'a>(
    spec: &'a RunSpec,
    out: &Outcome,
    victims: &'a [Who],
) -> impl Iterator<Item = RunSpec> + 'a {
    let mid = out.done_step.unwrap_or(0) / 2;
    victims.iter().map(move |&victim| {
        let mut k = spec.clone();
        k.kill = Some(Kill {
            victim,
            step: mid,
            variant: Variant::Lost,
        });
        k
    })
}

/// A baseline run in a line: topology, scenario (padded to `width`), the
/// step and virtual time the client was done at.
pub fn baseline_line(spec: &RunSpec, out: &Outcome, width: usize) -> String {
    format!(
        "{:<9} {:<width$} {} steps, {:.3}s virtual",
        spec.topology.name(),
        spec.scenario.name,
        out.done_step.unwrap_or(0),
        out.done_time.unwrap_or_default().as_secs_f64(),
    )
}

/// Runs `specs` (in child processes, `iso`) and returns their failures.
pub fn failures_of(specs: &[RunSpec], iso: &Isolation) -> Vec<Failure> {
    specs
        .iter()
        .zip(matrix::execute(specs, crate::sampled::threads(), Some(iso)))
        .filter_map(|(spec, out)| Failure::of(spec, &out))
        .collect()
}

/// Panics naming every failure, if there is one.
pub fn assert_none(failures: &[Failure]) {
    let described: Vec<String> = failures.iter().map(|f| f.describe(usize::MAX)).collect();
    assert!(failures.is_empty(), "\n{}", described.join("\n"));
}

/// Runs the matrix `cfg`, prints its report (every failure in
/// `CARGO_TARGET_TMPDIR`/`file`, from `tmp`), runs `check` on it and
/// asserts that nothing failed.
pub fn run_and_report(cfg: &MatrixConfig, tmp: &Path, file: &str, check: impl FnOnce(&Report)) {
    let started = Instant::now();
    let report = matrix::run_matrix(cfg);
    print!("{}", report.render(3));
    check(&report);
    let path = tmp.join(file);
    if std::fs::write(&path, report.render(usize::MAX)).is_ok() {
        println!("sim: full report in {}", path.display());
    }
    println!(
        "sim: took {:.1}s of wall time",
        started.elapsed().as_secs_f64()
    );
    assert!(report.failures.is_empty(), "{}", report.summary);
}
