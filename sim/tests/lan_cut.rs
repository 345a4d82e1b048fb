//! A node loses the service LAN while its links stay up (kill variant
//! `lan`, issue 17): every LAN frame to or from it is dropped — the
//! client's, the gateway's, the other nodes' — while its process and its
//! links live on. Its LAN check (ARP probes to the simulated gateway) must
//! find out and hand every address over (the owner promotes, the primary
//! claims), the node stands by with its links held down; 1.5 s later the
//! LAN comes back, the node links again and rejoins. Every scenario, each
//! node of each topology struck at a few steps spread over the run (duplex
//! on a clean and a lossy LAN, dual-role and the ring clean). Every promise
//! holds: each reply byte-exact, once, no RST, each request executed once
//! (counted from the handover, where the victim stopped serving), the
//! takeovers DESIGN §4 names, and after the heal every node holds every
//! address in its configured role again, linked.
//!
//! Replay a run with the command a failure prints (`SIM_VARIANT=lan`).

use std::sync::Arc;

use hotpair_sim::sampled;
use hotpair_sim::scenario;
use hotpair_sim::topology::Topology;
use hotpair_sim::world::{Kill, Net, Outcome, RunSpec, Variant};
use hotpair_sim::{matrix, Who};

/// `scenario` in `t` (`seed`, `net`) with the nodes' checks on, `victim`
/// cut off the LAN at `step`.
fn lan_cut(t: Topology, scenario: &str, seed: u64, net: Net, victim: Who, step: u64) -> RunSpec {
    let s = Arc::new(t.scenario(scenario::by_name(scenario).expect("exists")));
    let mut spec = matrix::spec(t, &s, seed, net, None);
    spec.checks = true;
    spec.kill = Some(Kill {
        victim,
        step,
        variant: Variant::Lan,
    });
    spec
}

/// Panics naming `out`'s violations, and how to replay `spec`, if it has
/// any.
fn assert_clean(spec: &RunSpec, out: &Outcome) {
    assert!(
        out.violations.is_empty(),
        "{:?}\nreplay: {}",
        out.violations,
        spec.replay_command()
    );
}

#[test]
fn every_scenario_survives_a_node_cut_off_the_lan_and_its_rejoin() {
    let plan = sampled::standard_plan();
    let r = sampled::run(Variant::Lan, &plan, &scenario::all(), sampled::threads());
    for p in &r.plan {
        println!("sim: {p}");
    }
    println!("{}", r.summary("LAN cut"));
    let described: Vec<String> = r.failures.iter().map(|f| f.describe(8)).collect();
    assert!(r.failures.is_empty(), "\n{}", described.join("\n"));
    // Every struck node found its LAN gone and handed over: a takeover in
    // every run, and every run's victim linked again.
    for (s, o) in r.specs.iter().zip(&r.outs) {
        assert!(
            o.stats.promoted || o.stats.claimed,
            "no takeover after the LAN cut: {}",
            s.replay_command()
        );
        assert!(
            o.stats.relinks > 0,
            "the victim never linked again: {}",
            s.replay_command()
        );
    }
}

/// The application scenario on its own, each node cut off at every step
/// (duplex clean and lossy, dual-role clean): requests in flight on the
/// victim when its LAN goes run on (it still hears the client through the
/// owner's link) until it hands over; the owner re-runs those with no
/// logged reply, and the shared database commits each once.
#[test]
fn the_application_scenario_at_every_step() {
    let s = scenario::by_name("app").expect("exists");
    // Every step; without `SIM_FULL`, 40 spread over the run.
    let plan = sampled::every_step_plan();
    let r = sampled::run(Variant::Lan, &plan, &[s], sampled::threads());
    println!("{}", r.summary("LAN cut, app scenario, every step"));
    let described: Vec<String> = r.failures.iter().map(|f| f.describe(8)).collect();
    assert!(r.failures.is_empty(), "\n{}", described.join("\n"));
}

/// The primary cut off with a connection's FIN unacknowledged: its engine,
/// fenced by the handover, reported the frozen socket's retransmission
/// timer as due at once for ever, and the node spun (a livelock here; 100%
/// CPU in the shell) — `Engine::poll_delay` now waits only for the
/// re-probe while fenced.
#[test]
fn a_primary_cut_off_with_a_fin_in_flight_does_not_spin() {
    let mut spec = lan_cut(Topology::Duplex, "app", 1, Net::CLEAN, Who::A, 250);
    // Twice, for determinism: the same event trace.
    spec.fingerprint = true;
    let twice = matrix::run_all(&[spec.clone(), spec.clone()], 2);
    let out = &twice[0];
    assert_clean(&spec, out);
    assert!(out.stats.promoted && out.stats.promoted_conns > 0);
    assert!(out.fingerprint.is_some());
    assert_eq!(
        out.fingerprint, twice[1].fingerprint,
        "the same run twice diverged"
    );
}

/// The primary cut off during the client's handshake (duplex, lossy):
/// the owner promoted the half-open connection, the LAN came back, the
/// nodes rejoined — the owner keeps the handshake, as it keeps every
/// connection it served — and the client's SYN retransmission reached the
/// owner. It forwarded the SYN to the primary as an owner node does, and
/// the primary opened a second connection on the client's port with
/// another ISN (a sequence-space violation, then an RST). The owner now
/// answers a handshake it serves itself, as in simplex.
#[test]
fn a_handshake_promoted_before_a_rejoin_stays_with_the_owner() {
    for (name, step) in [("handshake", 157), ("mixed-pipe", 161)] {
        let spec = lan_cut(Topology::Duplex, name, 3, Net::LOSSY, Who::A, step);
        let out = matrix::run_all(std::slice::from_ref(&spec), 1).remove(0);
        assert_clean(&spec, &out);
        assert!(out.stats.duplicate_syn > 0 && out.stats.relinks > 0);
    }
}

/// Dual-role, lossy, `reject`: B (owner of 10.77.0.11) is cut off; A
/// claims .11 and serves the client's 100 MiB POST alone — a 413 and its
/// FIN at once, then a lingering close while the client, slowed by the
/// cut and the loss, still sends. The LAN comes back and the nodes link
/// again; B's `Hello` for .11 reaches A 200 ms late (a link
/// retransmission), so B rejoins as .11's owner while A still serves it
/// alone. B answered A's periodic announcement of .11: A saw a split brain,
/// stood down and, rejoining fenced, dropped the connection only it held;
/// B passed the client's next segments through to A, which answered each
/// with an RST. An owner back from a takeover now stays silent on ARP
/// until the primary's `Routes` (`Engine::reassert`), as the rejoin rule
/// says.
#[test]
fn a_lingering_close_served_alone_survives_the_rejoin() {
    for (victim, step) in [(Who::B, 250), (Who::A, 418)] {
        let spec = lan_cut(Topology::DualRole, "reject", 2, Net::LOSSY, victim, step);
        let out = matrix::run_all(std::slice::from_ref(&spec), 1).remove(0);
        assert_clean(&spec, &out);
    }
}
