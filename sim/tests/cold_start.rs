//! Cold start with a node missing (a power cut, one node back): every
//! scenario, each node of each topology absent from the start — no link
//! ever comes up — on a clean LAN and a lossy one. The others serve its
//! addresses alone once their cold-start wait is over (the owner promotes,
//! the primary probes and claims) and every promise holds: each reply
//! byte-exact, once, no RST, each request executed once.

use std::sync::Arc;

use hotpair_sim::matrix::{self, Failure};
use hotpair_sim::scenario;
use hotpair_sim::topology::Topology;
use hotpair_sim::world::{Kill, Net, Variant};

#[test]
fn every_scenario_is_served_by_the_nodes_that_came_back() {
    let mut specs = Vec::new();
    for topology in [Topology::Duplex, Topology::DualRole, Topology::Ring(3)] {
        for s in scenario::all() {
            let s = Arc::new(topology.scenario(s));
            // Duplex: both nets; the others, whose runs cost more, clean.
            let nets: &[(u64, Net)] = if topology == Topology::Duplex {
                &[(1, Net::CLEAN), (2, Net::LOSSY)]
            } else {
                &[(1, Net::CLEAN)]
            };
            for &(seed, net) in nets {
                for victim in topology.all_nodes() {
                    let mut spec = matrix::spec(topology, &s, seed, net, None);
                    spec.kill = Some(Kill {
                        victim,
                        step: 0,
                        variant: Variant::Absent,
                    });
                    specs.push(spec);
                }
            }
        }
    }
    let threads = hotpair_sim::sampled::threads();
    let outs = matrix::run_all(&specs, threads);
    let mut failures = Vec::new();
    let mut alone = 0;
    for (spec, out) in specs.iter().zip(&outs) {
        failures.extend(Failure::of(spec, out));
        alone += u64::from(out.stats.promoted) + u64::from(out.stats.claimed);
    }
    println!(
        "sim: cold start: {} runs (every scenario, each node absent; duplex clean and lossy, \
         dual-role and ring3 clean): {} addresses served alone, {}",
        specs.len(),
        alone,
        if failures.is_empty() {
            "all promises held".to_owned()
        } else {
            format!("{} FAILED", failures.len())
        }
    );
    let described: Vec<String> = failures.iter().map(|f| f.describe(usize::MAX)).collect();
    assert!(failures.is_empty(), "\n{}", described.join("\n"));
}
