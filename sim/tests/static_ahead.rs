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
