//! A true split brain, then the loser killed: the client's download must
//! end soon — byte exact, or reset — and never hang.
//!
//! The sequence (n1 primary, n2 owner; heartbeat timeout 500 ms; the
//! client's receive window kept to 64 KiB, see below):
//! 1. n1 freezes past the timeout: n2 declares it dead and promotes.
//! 2. n2 freezes; n1 resumes, probes for the heartbeat timeout (nobody
//!    answers: n2 is stopped) and claims the address; once the client
//!    sends to n1 (its ARP cache took n1's announcement), n1 serves alone
//!    for [`N1_ALONE`].
//! 3. The switch drops every frame between the nodes (they cannot hear
//!    each other's probes or announcements; both still reach the client).
//! 4. n2 resumes: it sees n1's announcement and keeps the address (the
//!    owner wins), while n1, deaf to n2, serves on: both serve the download
//!    at once, each its own bytes.
//! 5. [`BOTH_SERVE`] later n1 is killed.
//!
//! The client then acknowledges bytes n1 sent and n2 never did. Before the
//! engine watched for it, n2 retransmitted old data for ever and the client
//! only acknowledged its own, higher, receive point: the download hung
//! until curl gave up. Now n2 resets such a connection
//! (`stack/src/engine/diverge.rs`): curl must end within [`MAX_END`] of the
//! kill, either with every byte (the nodes' streams happened to agree) or
//! with a connection reset. Which one is printed.

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use hotpair_netns_tests::failover::{self, epoch_now, Capture, DOWNLOAD_RATE};
use hotpair_netns_tests::multi;
use hotpair_netns_tests::node_log::{signal, stall_in_turn, thaw_and_panic};
use hotpair_netns_tests::{report, sha256sum, Lab, TempDir, SERVICE};

const FILE: &str = "50m.bin";
/// The first freeze lands once the client has this much.
const FREEZE_AT: u64 = 8 << 20;
/// How long both nodes serve the download at once before n1 dies.
const BOTH_SERVE: Duration = Duration::from_millis(750);
/// curl must have ended this soon after the kill: the engine's bound
/// (`DIVERGED_AFTER`, 2 s) plus the client's ACKs to reach n2 (its ARP
/// cache may point at n1 for a second or so) and slack for a loaded
/// machine. A hang lasts until curl's `--max-time` (45 s).
const MAX_END: Duration = Duration::from_secs(10);

/// n1's MAC on the LAN (`hotpair lab`'s layout).
const N1_MAC: &str = "02:68:70:00:00:01";
/// How long n1 serves alone, the client sending to it, before n2 resumes:
/// the bytes only n1 sent.
const N1_ALONE: Duration = Duration::from_millis(300);

/// The MAC the client's neighbour entry for the service address holds.
fn client_neighbour(lab: &Lab) -> Option<String> {
    let out = lab.exec_client(&["ip", "neigh", "show", SERVICE]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_owned)
}

/// Drop every frame between the nodes' ports in the lab's switch (a bridge
/// in namespace `PREFIX-sw`). (`fwd` is an nft keyword: not a chain name.)
fn split_nodes(lab: &Lab) -> Result<(), String> {
    let rules = "table bridge hp_split {\n chain split_nodes {\n  type filter hook forward \
                 priority 0;\n  iifname \"n1\" oifname \"n2\" drop\n  iifname \"n2\" oifname \
                 \"n1\" drop\n }\n}\n";
    let ns = format!("{}-sw", lab.prefix);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip netns exec {ns} nft: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(rules.as_bytes())
        .map_err(|e| format!("nft stdin: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft in {ns} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn a_diverged_download_ends_after_the_split_brain_loser_dies() {
    let test = "split_brain_diverged";
    let Some(lab) = failover::duplex_lab(test) else {
        return;
    };
    let nft = Command::new("nft").arg("--version").output();
    assert!(
        nft.is_ok_and(|o| o.status.success()),
        "[{test}] CANNOT RUN: `nft` (nftables) is missing; the switch cannot be split \
         (apt-get install nftables)"
    );
    let tmp = TempDir::new(&format!("{test}-dl"));
    let want = sha256sum(&lab.docroot().join(FILE));
    let (n1, n2) = (lab.node_pid("n1"), lab.node_pid("n2"));
    let (mut log1, mut log2) = (lab.node_log("n1"), lab.node_log("n2"));
    // A small receive window at the client (64 KiB, its namespace only):
    // n2's burst when it promotes must leave the client within n1's send
    // buffer (256 KiB), or n1, resumed, can take none of the client's ACKs
    // and only resends old bytes — nothing would diverge.
    let out = lab.exec_client(&["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 65536 65536"]);
    assert!(
        out.status.success(),
        "[{test}] sysctl tcp_rmem in the client namespace: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cap = Capture::start(&lab, tmp.path());
    let mut d = multi::start_download(&lab, tmp.path(), SERVICE, DOWNLOAD_RATE);
    while d.bytes() < FREEZE_AT {
        assert!(
            d.running() && d.elapsed() < Duration::from_secs(20),
            "[{test}] the download did not reach {FREEZE_AT} bytes"
        );
        thread::sleep(Duration::from_millis(2));
    }
    let fail = |what: &str| -> ! { thaw_and_panic(&lab, [n1, n2], what) };
    // 1. n1 freezes; n2 promotes. 2. n2 freezes; n1 resumes.
    stall_in_turn([n1, n2], [&mut log1, &mut log2], |w| fail(w));
    // n1 probes (for the heartbeat timeout: it was paused), hears nothing
    // and claims.
    if !log1.wait_for("no answer to probes: claiming", Duration::from_secs(5)) {
        fail("the resumed n1 did not claim the address while n2 was stopped");
    }
    // n1 serves alone once the client sends to it: its claim's first
    // announcements fall within the client's ARP `locktime` (1 s) of n2's
    // at the promotion and are ignored, and until the client's ACKs reach
    // n1 it only resends bytes the client has — nothing diverges yet.
    let t = Instant::now();
    while client_neighbour(&lab).as_deref() != Some(N1_MAC) {
        if t.elapsed() > Duration::from_secs(4) {
            fail(&format!(
                "the client never sent to n1 after its claim (neighbour entry: {:?})",
                client_neighbour(&lab)
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(N1_ALONE);
    // 3. The nodes cannot hear each other any more.
    if let Err(e) = split_nodes(&lab) {
        fail(&format!("could not split the switch: {e}"));
    }
    // 4. n2 resumes: it sees n1's announcement and keeps the address.
    log2.mark();
    signal(n2, "CONT");
    if !log2.wait_for("split brain", Duration::from_secs(5)) {
        fail("the resumed n2 did not see the split brain");
    }
    thread::sleep(BOTH_SERVE);
    // 5. The loser dies.
    let at_kill = d.bytes();
    let kill_epoch = epoch_now();
    let kill = lab.kill("n1");
    let ended = loop {
        if !d.running() {
            break Some(kill.elapsed());
        }
        if kill.elapsed() > MAX_END + Duration::from_secs(5) {
            break None;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let after_kill = d.bytes().saturating_sub(at_kill);
    let result = d.finish(kill, at_kill, &want);
    let r = cap.stop();
    // At most 20, dated from the kill.
    let rsts = r.dated_rsts(kill_epoch);
    let n2_reset = log2.since_mark().contains("connection reset");
    let Some(ended) = ended else {
        panic!(
            "[{test}] HANG: curl still ran {:?} after the kill ({after_kill} bytes since); \
             n2 logged a reset: {n2_reset}; RSTs seen by the client:\n{}\n{}",
            MAX_END + Duration::from_secs(5),
            rsts.join("\n"),
            lab.node_logs(40)
        );
    };
    let outcome = match &result {
        Ok(line) => format!("completed byte-exact ({line})"),
        Err(e) if e.contains("Connection reset") || e.contains("exit status: 56") => {
            format!(
                "reset by n2 ({after_kill} bytes after the kill; n2 logged the reset: {n2_reset})"
            )
        }
        Err(e) => panic!(
            "[{test}] curl ended {ended:?} after the kill, neither complete nor reset: {e}\n\
             RSTs seen by the client:\n{}\n{}",
            rsts.join("\n"),
            lab.node_logs(40)
        ),
    };
    report(&format!(
        "[{test}] split brain ({BOTH_SERVE:?} both serving), loser killed: curl ended {:.0} ms \
         after the kill: {outcome}; {} RST(s) from {SERVICE} seen by the client{}{}",
        ended.as_secs_f64() * 1000.0,
        r.rsts.len(),
        if rsts.is_empty() { "" } else { ":\n" },
        rsts.join("\n")
    ));
    assert!(
        ended <= MAX_END,
        "[{test}] curl ended only {ended:?} after the kill ({outcome})\n{}",
        lab.node_logs(40)
    );
}
