//! A shadow given up while its primary lives must not stall the live
//! connection.
//!
//! The fault, as an operator makes it: the owner node reloads its
//! `static` content twice within one link round trip, while the primary
//! has already decided replies from the generation both held before
//! (local units naming it). The owner holds neither that generation nor
//! the bytes, so it cannot make its copy (`generation_missing`): the
//! shadow is given up. The primary serves on from the old content, which
//! is what the client expects.

use std::sync::Arc;
use std::time::Duration;

use hotpair_sim::content;
use hotpair_sim::matrix;
use hotpair_sim::scenario::{Close, ConnScript, Scenario, Sending};
use hotpair_sim::world::{Net, Outcome, RunSpec, World};
use hotpair_sim::Topology;

const SLOW_LINK: Net = Net {
    name: "slow-link",
    link_delay: Duration::from_millis(1),
    ..Net::CLEAN
};

fn get(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hotpair-sim\r\n\r\n",
        hotpair_sim::tls::SERVER_NAME
    )
    .into_bytes()
}

/// 24 pipelined requests: more than the owner makes ahead (16), so the
/// rest wait for the primary's local units; then 6 more, one by one, on
/// the same connection.
fn pipelined(tls: bool) -> Scenario {
    Scenario {
        name: if tls {
            "detach-pipelined-tls"
        } else {
            "detach-pipelined"
        },
        what: "24 GETs of /static/1k.bin in one write, then 6 one by one",
        files_policy: hotpair_replicator::Policy::Static,
        max_half_open: None,
        conns: vec![ConnScript {
            tls,
            ..ConnScript::new(
                (0..30).map(|_| get("/static/1k.bin")).collect(),
                Sending::FirstAtOnce(24),
                Close::AfterReplies,
            )
        }],
    }
}

fn spec(s: Scenario) -> RunSpec {
    let topo = Topology::Duplex;
    matrix::spec(topo, &Arc::new(topo.scenario(s)), 1, SLOW_LINK, None)
}

/// Run `spec`, the owner of the first address reloading twice at `step`.
fn run_with_reloads(spec: RunSpec, step: u64) -> Outcome {
    let owner = spec.topology.addresses()[0].owner;
    let mut w = World::new(spec);
    while w.steps() < step {
        w.step().expect("a step before the reloads");
    }
    assert!(w.reload_files(owner, content::altered(1)));
    assert!(w.reload_files(owner, content::altered(2)));
    w.run()
}

/// Runs of `scenario` with the owner's two reloads at every other step
/// of its run without them: (step, outcome) of each.
fn reload_runs(scenario: fn() -> Scenario) -> Vec<(u64, Outcome)> {
    let base = World::new(spec(scenario())).run();
    assert!(base.violations.is_empty(), "{:?}", base.violations);
    let done = base.done_step.expect("the run without reloads is done");
    (1..done)
        .step_by(2)
        .map(|step| (step, run_with_reloads(spec(scenario()), step)))
        .collect()
}

/// Every run gets every reply from the live primary, byte-exact (the
/// judge compares them), and closes; in the runs where the owner gave its
/// shadow up, the connection went on through its forward-only track.
fn check_primary_serves_on(name: &str, runs: &[(u64, Outcome)]) {
    let mut detached = 0;
    for (step, out) in runs {
        assert!(
            out.violations.is_empty(),
            "{name}, reloads at step {step}: {:?}",
            out.violations
        );
        assert!(
            out.done_step.is_some(),
            "{name}, reloads at step {step}: not done"
        );
        assert_eq!(
            out.stats.shadows_detached, out.stats.generation_missing,
            "{name}, reloads at step {step}: each shadow given up is detached"
        );
        assert_eq!(
            out.stats.detached_open, 0,
            "{name}, reloads at step {step}: the forward-only track outlived its connection (the primary's ConnGone ends it)"
        );
        detached += out.stats.shadows_detached;
    }
    println!(
        "{name}: {} runs, {detached} with the shadow given up",
        runs.len()
    );
    assert!(
        detached > 0,
        "{name}: no reload step made the owner give its shadow up: the test no longer tests it"
    );
}

#[test]
fn a_shadow_given_up_leaves_its_connection_with_the_primary() {
    check_primary_serves_on("http", &reload_runs(|| pipelined(false)));
}

#[test]
fn a_shadow_given_up_leaves_its_https_connection_with_the_primary() {
    check_primary_serves_on("https", &reload_runs(|| pipelined(true)));
}

/// Replies the client of `spec`'s run (the owner reloading twice at
/// `reload`, if any) has whole when step `at` begins; and the world, to
/// run on.
fn replies_at(spec: RunSpec, reload: Option<u64>, at: u64) -> (usize, World) {
    let owner = spec.topology.addresses()[0].owner;
    let mut w = World::new(spec);
    while w.steps() < at {
        if Some(w.steps()) == reload {
            assert!(w.reload_files(owner, content::altered(1)));
            assert!(w.reload_files(owner, content::altered(2)));
        }
        w.step().expect("a step");
    }
    (w.replies_complete(), w)
}

/// The primary dies after the owner gave the shadow up. Until then the
/// client got its replies as in a run without the fault (the connection
/// did not stall). Then it cannot be taken over, and its client is told
/// with an RST from the survivor — at the takeover, or at its next
/// segment — never left hanging. The judge counts any RST against
/// promise 4 and the replies the client never got against promise 2;
/// nothing else may appear, and the client's socket must end CLOSED.
#[test]
fn after_the_primary_dies_the_client_of_a_dropped_shadow_is_reset() {
    use hotpair_sim::world::{Kill, Variant};
    let runs = reload_runs(|| pipelined(false));
    let step = runs
        .iter()
        .find(|(_, o)| o.stats.generation_missing > 0)
        .expect("a reload step that makes the owner give its shadow up")
        .0;
    let done = World::new(spec(pipelined(false)))
        .run()
        .done_step
        .expect("done");
    let survivor = Topology::Duplex.addresses()[0].owner;
    let reset = "the client received an RST (";
    let from = format!("from {}:", survivor.name());
    let (mut kills, mut progressed) = (0, 0);
    for kill in (step + 4..done).step_by(5) {
        let what = format!("reloads at {step}, kill at {kill}");
        let (expected, _) = replies_at(spec(pipelined(false)), None, kill);
        let mut s = spec(pipelined(false));
        s.kill = Some(Kill {
            victim: s.topology.addresses()[0].primary,
            step: kill,
            variant: Variant::Lost,
        });
        let (got, w) = replies_at(s, Some(step), kill);
        // Past the pipelined 24, each request waits for the reply before
        // it: a stalled connection gets no further. The fault costs one
        // reply's time (the owner's reloads turned the primary's `static`
        // decisions into logged replies).
        if expected > 24 {
            assert!(
                got + 1 >= expected,
                "{what}: {got} replies when the primary died, {expected} without the fault"
            );
            progressed += 1;
        }
        let out = w.run();
        assert_eq!(out.stats.shadows_detached, 1, "{what}");
        assert_eq!(out.stats.promoted_conns, 0, "{what}: nothing to take over");
        assert!(
            out.violations
                .iter()
                .any(|v| v.contains(reset) && v.contains(&from)),
            "{what}: no RST from the survivor: {:?}",
            out.violations
        );
        for v in &out.violations {
            let expected = v.contains(reset)
                || v.contains("socket went ESTABLISHED -> Closed")
                || (v.starts_with("stalled:") && v.contains("state CLOSED "))
                || (v.starts_with("promise 2:")
                    && (v.ends_with(" missing") || v.contains(" incomplete (")));
            assert!(expected, "{what}: {v}");
        }
        kills += 1;
    }
    println!("{kills} kills, {progressed} after the pipelined replies");
    assert!(progressed > 0);
}
