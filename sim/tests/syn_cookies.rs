//! SYN cookies under the kill matrix: two downloads at once against a
//! half-open bound of 1 (`scenario::syn_cookies`), so the second handshake
//! is answered with a cookie — on a pair by the owner, whose shadow and the
//! primary each open the connection from the client's ACK — and every
//! promise holds (each reply byte-exact, once, no RST, each request run
//! once) with either node killed at steps across the run, both kill
//! variants, on a clean LAN and a lossy one; and in dual-role, where each
//! node is the owner of one address and the primary of the other.

use std::sync::Arc;

use hotpair_sim::matrix::{self, Failure, Points};
use hotpair_sim::scenario;
use hotpair_sim::world::{Kill, Net, Variant, World};
use hotpair_sim::Topology;

#[test]
fn a_cookie_connection_is_served_and_taken_over_like_any_other() {
    let mut specs = Vec::new();
    for (topology, nets) in [
        (
            Topology::Duplex,
            vec![
                (
                    1,
                    Net::CLEAN,
                    Points::Capped {
                        dense: 20,
                        spaced: 20,
                    },
                ),
                (
                    2,
                    Net::LOSSY,
                    Points::Capped {
                        dense: 5,
                        spaced: 10,
                    },
                ),
            ],
        ),
        (
            Topology::DualRole,
            vec![(
                1,
                Net::CLEAN,
                Points::Capped {
                    dense: 2,
                    spaced: 6,
                },
            )],
        ),
    ] {
        let s = Arc::new(topology.scenario(scenario::syn_cookies()));
        for (seed, net, points) in nets {
            // The run without a failure: done, clean, and through cookies.
            let base = World::new(matrix::spec(topology, &s, seed, net, None)).run();
            assert!(
                base.violations.is_empty(),
                "{} {}: {:?}",
                topology.name(),
                net.name,
                base.violations
            );
            let len = base.done_step.unwrap_or_else(|| {
                panic!(
                    "{} {}: the scenario did not finish",
                    topology.name(),
                    net.name
                )
            });
            // Each address's second connection: opened from its cookie on
            // the owner (its shadow) and on the primary.
            let want = 2 * topology.addresses().len() as u64;
            assert!(
                base.stats.syn_cookies_validated >= want,
                "{} {}: {} connections opened by a cookie, want {want}",
                topology.name(),
                net.name,
                base.stats.syn_cookies_validated
            );
            for (r, victim) in topology.all_nodes().into_iter().enumerate() {
                for (v, variant) in [Variant::Lost, Variant::Silent].into_iter().enumerate() {
                    for step in points.select(len, (2 * r + v) as u64, 0) {
                        specs.push(matrix::spec(
                            topology,
                            &s,
                            seed,
                            net,
                            Some(Kill {
                                victim,
                                step,
                                variant,
                            }),
                        ));
                    }
                }
            }
        }
    }
    let threads = hotpair_sim::sampled::threads();
    let outcomes = matrix::execute(&specs, threads, None);
    let failures: Vec<Failure> = specs
        .iter()
        .zip(&outcomes)
        .filter_map(|(spec, out)| Failure::of(spec, out))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} runs broke a promise:\n{}",
        failures.len(),
        specs.len(),
        failures
            .iter()
            .take(5)
            .map(|f| f.describe(5))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("syn-cookies: {} kill runs, all promises kept", specs.len());
}
