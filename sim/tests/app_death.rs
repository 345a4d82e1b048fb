//! The application behind a node dies (kill variant `app`, issue 19): from
//! the step on, its jobs in flight and new ones fail as unreachable (the
//! shell hands the core a 502) and its application checks fail, while the
//! node lives on. A node that runs requests (some address's primary) must
//! hand its addresses to its peer, whose application answers; the requests
//! the dead application refused are held, not answered, and run again on
//! the peer under the same request id. Every scenario (`app` is the one
//! with application requests; in the others the check alone finds the
//! death), each node of each topology struck at a few steps spread over
//! the run (duplex on a clean and a lossy LAN, dual-role and the ring
//! clean). Every promise holds: each reply byte-exact, once, no RST, no
//! 502 to the client, and the shared database committed each application
//! request exactly once, the client getting the committed reply.
//!
//! Replay a run with the command a failure prints (`SIM_VARIANT=app`).

use hotpair_sim::sampled;
use hotpair_sim::scenario;
use hotpair_sim::topology::Topology;
use hotpair_sim::world::{Kill, Net, Variant};
use hotpair_sim::{matrix, Who};

#[test]
fn every_scenario_survives_a_dead_application() {
    let plan = sampled::standard_plan();
    let r = sampled::run(Variant::App, &plan, &scenario::all(), sampled::threads());
    for p in &r.plan {
        println!("sim: {p}");
    }
    println!("{}", r.summary("application death"));
    let described: Vec<String> = r.failures.iter().map(|f| f.describe(8)).collect();
    assert!(r.failures.is_empty(), "\n{}", described.join("\n"));
    let refused: u64 = r.outs.iter().map(|o| o.stats.app_refused).sum();
    assert!(
        refused > 0,
        "no job ever met the dead application: the variant tested nothing"
    );
}

/// The application scenario on its own, each node's application killed at
/// every step (duplex clean and lossy, dual-role clean; the ring, four
/// times a duplex run's cost, is sampled in the test above):
/// every moment of a request's life — before it reached the application,
/// between its commit and its reply (the peer runs it again and gets the
/// stored reply), after.
#[test]
fn the_application_scenario_at_every_step() {
    let s = scenario::by_name("app").expect("exists");
    // Every step; without `SIM_FULL`, 40 spread over the run.
    let plan = sampled::every_step_plan();
    let r = sampled::run(Variant::App, &plan, &[s], sampled::threads());
    println!(
        "{}",
        r.summary("application death, app scenario, every step")
    );
    let described: Vec<String> = r.failures.iter().map(|f| f.describe(8)).collect();
    assert!(r.failures.is_empty(), "\n{}", described.join("\n"));
    let again: u64 = r.outs.iter().map(|o| o.stats.app_reexecuted).sum();
    assert!(
        again > 0,
        "no request was executed again: the database's insert-or-return went untested"
    );
}

/// One dead-application run twice (dual-role, lossy, A's application
/// killed with requests in flight): the same event trace — the
/// application's delays, commits and checks are a function of the seed.
#[test]
fn a_dead_application_run_is_deterministic() {
    let t = Topology::DualRole;
    let s = std::sync::Arc::new(t.scenario(scenario::by_name("app").expect("exists")));
    let mut spec = matrix::spec(t, &s, 5, Net::LOSSY, None);
    spec.checks = true;
    spec.fingerprint = true;
    spec.kill = Some(Kill {
        victim: Who::A,
        step: 400,
        variant: Variant::App,
    });
    let twice = matrix::run_all(&[spec.clone(), spec.clone()], 2);
    assert!(
        twice[0].violations.is_empty(),
        "{:?}\nreplay: {}",
        twice[0].violations,
        spec.replay_command()
    );
    assert!(twice[0].fingerprint.is_some());
    assert_eq!(
        twice[0].fingerprint, twice[1].fingerprint,
        "the same run twice diverged"
    );
    assert_eq!(twice[0].steps, twice[1].steps);
}
