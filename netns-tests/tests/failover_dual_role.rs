//! Failover in a dual-role lab (`hotpair lab up --mode dual-role`): n1 owns
//! 10.77.0.10 and n2 is its primary; n2 owns 10.77.0.11 and n1 is its
//! primary. So each node is at once the owner/backup of one address and
//! the primary of the other, and killing either node loses the primary of
//! one address and the owner of the other.
//!
//! Each test builds one lab and, on both addresses at once, runs a 50 MB
//! download (/static/50m.bin, curl --limit-rate 10M), a 20 MB upload
//! (/app/upload, 8M) and wrk (-c8) with a client-side packet capture,
//! SIGKILLs the victim once every transfer is 20% through, stops wrk 3 s
//! after the kill, and checks (each reported as PASS/FAIL):
//! - both downloads complete, SHA-256 exact;
//! - both uploads are answered with the SHA-256 of their own body;
//! - both wrk runs: no socket error, no non-2xx;
//! - no RST from either address in the capture;
//! - the roles the capture shows: before the kill, replies for each address
//!   from its primary's MAC and client frames to its owner's MAC; after it,
//!   nothing from the victim, each address served by the survivor;
//! - no takeover or fencing in the node logs before the kill (a false
//!   failure detection would leave nothing for the kill to test);
//! - only the victim died.
//!
//! The scenario lives in `hotpair_netns_tests::multi`.

use hotpair_netns_tests::multi;

/// SIGKILL n1: the owner of 10.77.0.10 (n2 claims it) and the primary for
/// 10.77.0.11 (n2 promotes its shadows).
#[test]
fn dual_role_survives_n1_crash() {
    multi::dual_role("fo_dual_n1", "n1");
}

/// SIGKILL n2: the owner of 10.77.0.11 (n1 claims it) and the primary for
/// 10.77.0.10 (n1 promotes its shadows).
#[test]
fn dual_role_survives_n2_crash() {
    multi::dual_role("fo_dual_n2", "n2");
}
