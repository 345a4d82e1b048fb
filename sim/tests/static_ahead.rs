//! `static` routes without a wait on the owner node: it makes each reply
//! from the request in its own input log, before the primary's unit for it
//! (one link trip later) arrives, so a client ACK for reply bytes never
//! finds the shadow behind (the engine would hold it: `held`). Under a
//! lossy LAN and with either node killed, the failover matrix checks that
//! replies made ahead keep promises 1-4; this checks they are made ahead.

use std::sync::Arc;
use std::time::Duration;

use hotpair_sim::matrix;
use hotpair_sim::scenario;
use hotpair_sim::world::{Net, World};
use hotpair_sim::Topology;

/// A clean LAN, and a link slower than the client's round trip: the
/// primary's unit for a reply reaches the owner node after the client's
/// first ACK of that reply does.
const SLOW_LINK: Net = Net {
    name: "slow-link",
    link_delay: Duration::from_millis(1),
    ..Net::CLEAN
};

#[test]
fn static_replies_are_made_before_the_client_can_acknowledge_them() {
    for name in [
        "download",
        "keepalive",
        "pipelined",
        "mixed",
        "mixed-pipe",
        "mixed-sync",
    ] {
        for topo in [Topology::Duplex, Topology::DualRole] {
            let s = scenario::by_name(name).expect("scenario exists");
            let spec = matrix::spec(topo, &Arc::new(topo.scenario(s)), 1, SLOW_LINK, None);
            let out = World::new(spec).run();
            assert!(
                out.violations.is_empty(),
                "{name} ({}): {:?}",
                topo.name(),
                out.violations
            );
            assert!(
                out.done_step.is_some(),
                "{name} ({}): not done",
                topo.name()
            );
            assert_eq!(
                out.stats.held,
                0,
                "{name} ({}): client ACKs waited for the owner node's shadow",
                topo.name()
            );
        }
    }
}

/// The same over HTTPS: the owner seals its copy of each `static` reply
/// ahead of the primary's unit, at the record sequence number it predicts
/// (the handshake's tickets logged, no client KeyUpdate unanswered). The
/// first reply on a connection may not be: the state after the tickets
/// is logged just before its unit. Every reply after it is, so the
/// client's ACKs of those never wait for the owner's shadow. The ACKs
/// held for the first exchange are counted in a one-request run and
/// allowed here; without replies ahead over TLS each of the other five
/// replies adds its own (1 and 6 held when this was written).
#[test]
fn static_replies_over_tls_are_made_before_the_client_can_acknowledge_them() {
    use hotpair_sim::scenario::{Close, ConnScript, Scenario, Sending};
    let get = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hotpair-sim\r\n\r\n",
            hotpair_sim::tls::SERVER_NAME
        )
        .into_bytes()
    };
    let keepalive = |n: usize| Scenario {
        name: "tls-static-keepalive",
        what: "HTTPS: GET /static/1k.bin n times, one after another on one connection",
        files_policy: hotpair_replicator::Policy::Static,
        max_half_open: None,
        conns: vec![ConnScript {
            tls: true,
            ..ConnScript::new(
                (0..n).map(|_| get("/static/1k.bin")).collect(),
                Sending::OneByOne,
                Close::AfterReplies,
            )
        }],
    };
    for topo in [Topology::Duplex, Topology::DualRole] {
        let held = |n: usize| {
            let spec = matrix::spec(
                topo,
                &Arc::new(topo.scenario(keepalive(n))),
                1,
                SLOW_LINK,
                None,
            );
            let out = World::new(spec).run();
            assert!(
                out.violations.is_empty(),
                "{n} requests ({}): {:?}",
                topo.name(),
                out.violations
            );
            assert!(
                out.done_step.is_some(),
                "{n} requests ({}): not done",
                topo.name()
            );
            out.stats.held
        };
        let first = held(1);
        let six = held(6);
        println!(
            "{}: held ACKs, 1 request {first}, 6 requests {six}",
            topo.name()
        );
        assert!(
            six <= first,
            "{}: client ACKs waited for the owner node's shadow after the first reply ({six} held for 6 requests, {first} for 1)",
            topo.name()
        );
    }
}

/// Runs `spec` without a failure, then with the primary of its first
/// address (A) killed at `kills` steps spread over the run: every promise
/// kept (the judge checks every reply byte for byte on the decrypted
/// stream; a record under a wrong key fails the client's TLS). Returns
/// the run without a failure.
fn with_primary_killed(
    spec: &hotpair_sim::world::RunSpec,
    kills: u64,
) -> hotpair_sim::world::Outcome {
    use hotpair_sim::matrix::Failure;
    use hotpair_sim::world::{Kill, Variant};
    use hotpair_sim::Who;
    let out = World::new(spec.clone()).run();
    assert!(
        out.violations.is_empty(),
        "{} (shadows given up: {}): {:?}",
        spec.scenario.name,
        out.stats.diverged,
        out.violations
    );
    let done = out.done_step.expect("done");
    let specs: Vec<_> = (1..=kills)
        .flat_map(|i| {
            [Variant::Lost, Variant::Silent].map(|variant| {
                let mut k = spec.clone();
                k.kill = Some(Kill {
                    victim: Who::A,
                    step: done * i / (kills + 1),
                    variant,
                });
                k
            })
        })
        .collect();
    let outs = matrix::execute(&specs, hotpair_sim::sampled::threads(), None);
    let failures: Vec<String> = specs
        .iter()
        .zip(&outs)
        .filter_map(|(s, o)| Failure::of(s, o).map(|f| f.describe(usize::MAX)))
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    let promoted = outs.iter().filter(|o| o.stats.promoted).count();
    println!(
        "{}: {} kill runs of the primary, {promoted} with a takeover, all promises kept",
        spec.scenario.name,
        specs.len()
    );
    assert!(promoted > 0, "no kill led to a takeover");
    out
}

/// HTTPS, pipelined: three `static` 2 MB replies and a 1 KB one asked in
/// one write; the client sends a KeyUpdate (update requested) once the
/// first reply bytes are in. The owner read the four requests long before
/// and made all four replies ahead under the first key; the primary holds
/// the fourth request back (its output bound: 4 MB of replies the client
/// has not taken) and reads the KeyUpdate before it makes that reply. It
/// must still answer the KeyUpdate only after that reply. Before that
/// rule its answer came first, the owner's copy of the fourth reply was
/// under the old key, and the shadow was given up (a divergence: the
/// connection would not have survived its primary).
#[test]
fn a_client_key_update_after_pipelined_requests_keeps_the_shadow() {
    use hotpair_sim::scenario::{Close, ConnScript, Scenario, Sending};
    let get = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hotpair-sim\r\n\r\n",
            hotpair_sim::tls::SERVER_NAME
        )
        .into_bytes()
    };
    let s = Scenario {
        name: "tls-keyupdate-pipelined",
        what: "HTTPS: 3 GET /static/2m.bin and a GET /static/1k.bin in one write, then a KeyUpdate (update requested) once the first reply bytes are in",
        files_policy: hotpair_replicator::Policy::Static,
        max_half_open: None,
        conns: vec![ConnScript {
            tls: true,
            key_update_after: true,
            ..ConnScript::new(
                vec![
                    get("/static/2m.bin"),
                    get("/static/2m.bin"),
                    get("/static/2m.bin"),
                    get("/static/1k.bin"),
                ],
                Sending::AllAtOnce,
                Close::AfterReplies,
            )
        }],
    };
    let topo = Topology::Duplex;
    let spec = matrix::spec(topo, &Arc::new(topo.scenario(s)), 1, Net::CLEAN, None);
    let out = with_primary_killed(&spec, 4);
    let st = &out.stats;
    println!(
        "pipelined: diverged {}, local replies {}, made ahead {}",
        st.diverged, st.local_replies, st.replies_ahead
    );
    assert_eq!(st.diverged, 0, "a shadow was given up");
    assert_eq!(st.replies_ahead, 4, "every reply made ahead");
}
