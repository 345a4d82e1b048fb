//! Failover when the owner node (n2) is SIGKILLed in a duplex lab (n1 primary,
//! n2 owner): every client in progress carries on from the survivor. The
//! scenario bodies live in `hotpair_netns_tests::failover`; each test builds
//! its own lab and prints the client-visible stall of its kills.

use hotpair_netns_tests::failover::{self, Victim};

const VICTIM: Victim = Victim::Owner;

/// (a) + (f): a 50 MB download at 20 MB/s, kill mid-reply: curl exits 0,
/// SHA-256 matches, and the client's capture holds no RST from the VIP.
#[test]
fn download_survives_owner_crash() {
    failover::download("fo_owner_download", VICTIM);
}

/// (b): a 20 MB POST at 10 MB/s, kill mid-upload: the reply is the body's SHA-256.
#[test]
fn upload_survives_owner_crash() {
    failover::upload("fo_owner_upload", VICTIM);
}

/// (c): a 30 MB `generate` reply, kill during the computation: 30000000 bytes, exit 0.
#[test]
fn generate_survives_owner_crash() {
    failover::generate("fo_owner_generate", VICTIM);
}

/// (d): http.client keep-alive, 5 requests, kill, 5 more on the same socket.
#[test]
fn keepalive_connection_survives_owner_crash() {
    failover::keepalive("fo_owner_keepalive", VICTIM);
}

/// (e) + (f): wrk -c16 -d8s, kill at 3 s: no socket errors, no non-2xx, no RST.
#[test]
fn wrk_load_survives_owner_crash() {
    failover::wrk_load("fo_owner_wrk", VICTIM);
}

/// (g): downloads killed at random moments in [0.2, 2.0] s
/// (HOTPAIR_FAILOVER_RUNS runs, default 5; seed printed, HOTPAIR_FAILOVER_SEED replays).
#[test]
fn download_survives_owner_crash_at_random_moments() {
    failover::random_moments("fo_owner_random", VICTIM);
}

/// As `stall_statistics_primary`, killing the owner node.
#[test]
#[ignore = "about 10 s per kill; run with scripts/failover-stall.sh owner"]
fn stall_statistics_owner() {
    failover::stall_statistics("fo_owner_stall", VICTIM);
}
