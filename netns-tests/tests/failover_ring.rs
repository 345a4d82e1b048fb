//! Failover in a ring of three (`hotpair lab up --mode ring --nodes 3`):
//! node i owns 10.77.0.(9+i) and node i+1 (mod 3) is its primary, so n1 owns
//! .10 (primary n2), n2 owns .11 (primary n3), n3 owns .12 (primary n1).
//! Killing node i loses the owner of its own address (node i+1 claims it) and
//! the primary of node i-1's address (node i-1 promotes its shadows); the
//! third address is not the victim's business and must not notice.
//!
//! Each test builds a fresh lab, downloads /static/50m.bin from all three
//! addresses at once (15 MB/s each) with a client-side packet capture,
//! SIGKILLs one node once every download is 20% through, and checks (each
//! reported as PASS/FAIL): all three downloads complete, SHA-256 exact; no
//! RST from any address; the roles in the capture (before the kill replies
//! from each address's primary and client frames to its owner; after it,
//! nothing from the victim and each address served by the node DESIGN §4
//! names); no takeover or fencing in the node logs before the kill; only the
//! victim died.
//!
//! The scenario lives in `hotpair_netns_tests::multi`.

use hotpair_netns_tests::multi;

const NODES: u32 = 3;

/// SIGKILL n1: n2 claims .10, n3 promotes its shadows of .12, .11 untouched.
#[test]
fn ring_survives_n1_crash() {
    multi::ring("fo_ring_n1", NODES, "n1");
}

/// SIGKILL n2: n3 claims .11, n1 promotes its shadows of .10, .12 untouched.
#[test]
fn ring_survives_n2_crash() {
    multi::ring("fo_ring_n2", NODES, "n2");
}

/// SIGKILL n3: n1 claims .12, n2 promotes its shadows of .11, .10 untouched.
#[test]
fn ring_survives_n3_crash() {
    multi::ring("fo_ring_n3", NODES, "n3");
}
