//! Both nodes of a duplex lab starved in turn, the way a loaded CI machine
//! starved them (SIGSTOP/SIGCONT here), then the primary killed: the
//! download must go on from the owner, byte exact, no RST, and the resumed
//! primary must never have claimed the address.
//!
//! The sequence (n1 primary, n2 owner; heartbeat timeout 500 ms):
//! 1. n1 freezes past the timeout: n2 declares it dead and promotes.
//! 2. n2 freezes (the same load); n1 resumes, sees its own pause and
//!    probes for the address before serving again.
//! 3. n2 resumes 300 ms later and answers n1's probes: n1 stands down.
//! 4. n1 is killed.
//!
//! In CI, n1's probes lasted 36 ms, went unanswered, and n1 claimed the
//! address: both nodes served the download, n1 alone sent bytes n2 never
//! knew of, and once n1 died the client acknowledged data n2 had not sent
//! — the download hung for good. A node that knows it was paused now
//! probes for the heartbeat timeout.

use std::thread;
use std::time::Duration;

use hotpair_netns_tests::failover::{self, assert_no_rst, epoch_now, Capture, DOWNLOAD_RATE};
use hotpair_netns_tests::multi;
use hotpair_netns_tests::node_log::{signal, stall_in_turn, thaw_and_panic};
use hotpair_netns_tests::{report, sha256sum, TempDir, SERVICE};

const FILE: &str = "50m.bin";
/// The first freeze lands once the client has this much.
const FREEZE_AT: u64 = 8 << 20;
/// The client must hear from the owner again within this after the kill
/// (the owner serves already: the kill costs it nothing).
const MAX_RESUME: Duration = Duration::from_secs(5);

#[test]
fn a_paused_primary_does_not_claim_while_its_owner_is_stalled_too() {
    let test = "starved_pair";
    let Some(lab) = failover::duplex_lab(test) else {
        return;
    };
    let tmp = TempDir::new(&format!("{test}-dl"));
    let want = sha256sum(&lab.docroot().join(FILE));
    let (n1, n2) = (lab.node_pid("n1"), lab.node_pid("n2"));
    let (mut log1, mut log2) = (lab.node_log("n1"), lab.node_log("n2"));
    let cap = Capture::start(&lab, tmp.path());
    let mut d = multi::start_download(&lab, tmp.path(), SERVICE, DOWNLOAD_RATE);
    d.wait_for(FREEZE_AT, test);
    let fail = |what: &str| -> ! { thaw_and_panic(&lab, [n1, n2], what) };
    // 1. n1 freezes; n2 promotes. 2. n2 freezes; n1 resumes.
    stall_in_turn([n1, n2], [&mut log1, &mut log2], |w| fail(w));
    // n1 probes.
    if !log1.wait_for("paused past the heartbeat timeout", Duration::from_secs(5)) {
        fail("the resumed n1 did not notice its pause");
    }
    // 3. n2 resumes 300 ms later and answers.
    thread::sleep(Duration::from_millis(300));
    signal(n2, "CONT");
    if !log1.wait_for("fenced", Duration::from_secs(5)) {
        fail("n1 did not stand down after n2 resumed");
    }
    let claimed = log1.since_mark().contains("no answer to probes: claiming");
    if claimed {
        fail("n1 claimed the address while n2 was stalled (a split brain)");
    }
    // 4. n1 dies.
    let at_kill = d.bytes();
    let kill_epoch = epoch_now();
    let kill = lab.kill("n1");
    // The owner must be heard again soon: the client's bytes grow.
    let resumed = loop {
        if d.bytes() > at_kill + (256 << 10) || !d.running() {
            break kill.elapsed();
        }
        if kill.elapsed() > Duration::from_secs(40) {
            break kill.elapsed();
        }
        thread::sleep(Duration::from_millis(5));
    };
    let line = d.finish(kill, at_kill, &want).unwrap_or_else(|e| {
        panic!(
            "[{test}] after the pause, the stall and the kill: {e}\n{}",
            lab.node_logs(30)
        )
    });
    report(&format!(
        "[{test}] both starved, primary killed: client resumed {:.0} ms after the kill; {line}",
        resumed.as_secs_f64() * 1000.0
    ));
    assert!(
        resumed < MAX_RESUME,
        "[{test}] the client heard the owner again only {resumed:?} after the kill\n{}",
        lab.node_logs(30)
    );
    let r = cap.stop();
    assert_no_rst(&lab, &r, "starved pair and kill", kill_epoch);
}
