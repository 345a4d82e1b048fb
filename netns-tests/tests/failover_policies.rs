//! Failover under the content policies `static` and `sync-static` (issue 8,
//! DESIGN §3): for each policy and each victim, one duplex lab and one
//! SIGKILL while a 50 MB static download, a keep-alive connection idle
//! between a static and a logged request, one in the middle of a large
//! static reply, and wrk on /static/ are all in flight; and the digest guard
//! end to end. `logged` is covered by `failover_primary_crash.rs` and
//! `failover_owner_crash.rs`. The bodies live in
//! `hotpair_netns_tests::policies`.

use hotpair_netns_tests::failover::Victim;
use hotpair_netns_tests::policies::{self, StaticPolicy};

/// /static/ `static`, SIGKILL the primary n1: the owner node's own copies
/// of the static replies carry every client on.
#[test]
fn static_policy_survives_primary_crash() {
    policies::scenario("pol_static_primary", StaticPolicy::Static, Victim::Primary);
}

/// /static/ `static`, SIGKILL the owner n2: the primary claims the address
/// and serves on.
#[test]
fn static_policy_survives_owner_crash() {
    policies::scenario("pol_static_owner", StaticPolicy::Static, Victim::Owner);
}

/// /static/ `sync-static`, SIGKILL the primary n1.
#[test]
fn sync_static_policy_survives_primary_crash() {
    policies::scenario(
        "pol_sync_primary",
        StaticPolicy::SyncStatic,
        Victim::Primary,
    );
}

/// /static/ `sync-static`, SIGKILL the owner n2: the replies held for the
/// owner node's ack are released.
#[test]
fn sync_static_policy_survives_owner_crash() {
    policies::scenario("pol_sync_owner", StaticPolicy::SyncStatic, Victim::Owner);
}

/// One byte of n2's copy of 50m.bin differs: both nodes log that /static/
/// falls back to logged, the reply crosses the link, and a download with the
/// primary killed mid-way is the primary's content byte for byte.
#[test]
fn digest_guard_falls_back_to_logged() {
    policies::digest_guard("pol_digest_guard");
}
