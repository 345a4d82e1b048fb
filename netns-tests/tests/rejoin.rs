//! Rejoin: a node SIGKILLed mid-download and started again (`lab restart`)
//! rejoins its live peer while the download still runs. The download in
//! flight stays with the node serving it — through the restart and the
//! rejoin, byte-exact, no RST — and the pair is replicated again: a second
//! download, started after the rejoin, survives a SIGKILL of the *other*
//! node. Both victims: a restarted primary (the owner keeps the address and
//! the connections it promoted) and a restarted owner (it takes its address
//! back; the primary that had claimed it keeps serving its connections,
//! whose frames the owner passes through to it).

use std::thread;
use std::time::{Duration, Instant};

use hotpair_netns_tests::failover::{self, assert_no_rst, epoch_now, Capture, KillAt, Victim};
use hotpair_netns_tests::multi;
use hotpair_netns_tests::{
    assert_success, describe, report, sha256sum, status_node, TempDir, SERVICE,
};

const FILE: &str = "50m.bin";
/// Slow enough that the restart and the rejoin happen mid-download.
const RATE: &str = "8M";
const KILL_AT: u64 = 8 << 20;

fn restart_mid_download_then_kill_the_other(test: &str, victim: Victim) {
    let Some(lab) = failover::duplex_lab(test) else {
        return;
    };
    let tmp = TempDir::new(&format!("{test}-dl"));
    let want = sha256sum(&lab.docroot().join(FILE));
    let cap = Capture::start(&lab, tmp.path());
    let mut d = multi::start_download(&lab, tmp.path(), SERVICE, RATE);
    d.wait_for(KILL_AT, test);
    let at_kill = d.bytes();
    let kill_epoch = epoch_now();
    let killed = lab.kill(victim.node());
    // The survivor takes over, then the victim comes back.
    thread::sleep(Duration::from_millis(500));
    let out = lab.lab(&["restart", victim.node()], Duration::from_secs(60));
    assert_success(&out, &format!("[{test}] lab restart {}", victim.node()));
    let rejoined = Instant::now();
    assert!(
        d.running(),
        "[{test}] the download ended before the rejoin: slow it down"
    );
    let at_rejoin = d.bytes();
    let line = d
        .finish(killed, at_kill, &want)
        .unwrap_or_else(|e| panic!("[{test}] across the restart of {}: {e}", victim.node()));
    let r = cap.stop();
    assert_no_rst(&lab, &r, "kill, restart and rejoin", kill_epoch);
    let logs = lab.node_logs(400);
    assert!(
        logs.contains("rejoined: configured role taken back"),
        "[{test}] no node logged its rejoin\n{logs}"
    );
    report(&format!(
        "[{test}] {} ({}) killed and restarted, rejoined {:.1} s after the kill at {:.1} MiB: \
         {line}; 0 RST",
        victim.node(),
        victim.role(),
        (rejoined - killed).as_secs_f64(),
        at_rejoin as f64 / (1 << 20) as f64,
    ));
    // Replicated again: a new download survives the other node's death.
    let other = match victim {
        Victim::Primary => Victim::Owner,
        Victim::Owner => Victim::Primary,
    };
    failover::download_with_kill(
        &lab,
        other,
        KillAt::Bytes(10 << 20),
        true,
        "a new download after the rejoin, the other node killed",
    );
}

#[test]
fn a_restarted_primary_rejoins_and_the_pair_is_replicated_again() {
    restart_mid_download_then_kill_the_other("rj_primary", Victim::Primary);
}

#[test]
fn a_restarted_owner_rejoins_and_takes_its_address_back() {
    restart_mid_download_then_kill_the_other("rj_owner", Victim::Owner);
}

/// Dual-role: n2 (owner of 10.77.0.11, primary for 10.77.0.10) is killed
/// and restarted; once it rejoined, downloads from both addresses survive a
/// SIGKILL of n1 — both addresses are replicated again, each by its
/// configured pair of roles.
#[test]
fn a_restarted_dual_role_node_rejoins_and_both_addresses_are_replicated_again() {
    let test = "rj_dual";
    let Some(lab) = multi::dual_role_lab(test) else {
        return;
    };
    kill_restart_n2_then_kill_n1(&lab);
}

/// A rolling upgrade with downloads in flight: `hotpair switchover` on the
/// primary (its connections go to the owner at once) and `lab restart` it
/// (it rejoins); a download started then is replicated again; the owner's
/// switchover is refused while it still serves the first download (opened
/// before its peer rejoined: no peer shadows it), `--wait` switches it
/// over once that one ended — handing the second to the restarted primary
/// — and it is restarted too. Both downloads byte-exact, no RST; each
/// switchover's stall is reported.
#[test]
fn a_rolling_upgrade_by_switchover_keeps_every_download() {
    let test = "rj_rolling";
    let Some(lab) = failover::duplex_lab(test) else {
        return;
    };
    let st = lab.status_json();
    let sock = |name: &str| -> String {
        status_node(&st, name)
            .and_then(|n| n["admin_socket"].as_str())
            .unwrap_or_else(|| panic!("[{test}] no admin socket for {name}: {st}"))
            .to_owned()
    };
    let (s1, s2) = (sock("n1"), sock("n2"));
    let switchover = |s: &str, extra: &[&str]| {
        let mut cmd = std::process::Command::new(hotpair_netns_tests::hotpair_bin());
        cmd.args(["switchover", "--socket", s]).args(extra);
        hotpair_netns_tests::run_with_timeout(&mut cmd, Duration::from_secs(90))
    };
    let tmp = TempDir::new(&format!("{test}-dl"));
    let want = sha256sum(&lab.docroot().join(FILE));
    let total = std::fs::metadata(lab.docroot().join(FILE))
        .expect("docroot file")
        .len();
    let cap = Capture::start(&lab, tmp.path());
    let mut first = multi::start_download(&lab, tmp.path(), SERVICE, "10M");
    first.wait_for(4 << 20, test);
    let (first_at, first_mark) = (first.bytes(), Instant::now());
    let first_epoch = epoch_now();
    let out = switchover(&s1, &[]);
    assert_success(&out, &format!("[{test}] hotpair switchover n1"));
    // n2 serves alone now: a switchover there is refused.
    let out = switchover(&s2, &[]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("not switching over"),
        "[{test}] a switchover with no peer up was not refused\n{}",
        describe(&out)
    );
    let out = lab.lab(&["restart", "n1"], Duration::from_secs(60));
    assert_success(&out, &format!("[{test}] lab restart n1"));
    // (A second download's curl writes to its own file: one per address,
    // so the second goes through a name of its own.)
    let second_dir = TempDir::new(&format!("{test}-dl2"));
    let second = multi::start_download(&lab, second_dir.path(), SERVICE, "4M");
    thread::sleep(Duration::from_millis(500));
    // The first download is n2's alone (opened before n1 rejoined).
    let out = switchover(&s2, &[]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no peer shadows"),
        "[{test}] a switchover cutting an unshadowed download was not refused\n{}",
        describe(&out)
    );
    let out = switchover(&s2, &["--wait", "60"]);
    assert_success(&out, &format!("[{test}] hotpair switchover --wait 60 n2"));
    let (second_at, second_mark) = (second.bytes(), Instant::now());
    assert!(
        first.bytes() == total,
        "[{test}] n2 switched over before the first download ended"
    );
    let out = lab.lab(&["restart", "n2"], Duration::from_secs(60));
    assert_success(&out, &format!("[{test}] lab restart n2"));
    for (tag, d, at, mark) in [
        ("first", first, first_at, first_mark),
        ("second", second, second_at, second_mark),
    ] {
        d.finish(mark, at, &want)
            .unwrap_or_else(|e| panic!("[{test}] the {tag} download: {e}"));
    }
    let r = cap.stop();
    assert_no_rst(&lab, &r, "rolling upgrade", first_epoch);
    // (No stall figure here: at these rates curl's limiter makes the file
    // grow in bursts seconds apart. `hotpair bench` measures the
    // switchover stall with requests, at 1 ms resolution.)
    report(&format!(
        "[{test}] switchover + restart of n1, then (--wait) of n2, downloads in flight: \
         both byte-exact, 0 RST"
    ));
}

/// The ring of three: n2 (owner of 10.77.0.11, primary for 10.77.0.10) is
/// killed and restarted; once it rejoined both its links, downloads on all
/// three addresses survive a SIGKILL of n1 — the ring is fully replicated
/// again.
#[test]
fn a_restarted_ring_node_rejoins_and_the_ring_is_replicated_again() {
    let test = "rj_ring";
    let Some(lab) = multi::ring_lab(test, 3) else {
        return;
    };
    kill_restart_n2_then_kill_n1(&lab);
}

/// A multi-address lab: n2 killed and restarted (it rejoins), every
/// address serves, then downloads on all of them survive n1's SIGKILL.
fn kill_restart_n2_then_kill_n1(lab: &multi::MultiLab) {
    let test = lab.test.clone();
    let _ = lab.kill("n2");
    thread::sleep(Duration::from_millis(1500));
    let out = lab.lab(&["restart", "n2"], Duration::from_secs(60));
    assert_success(&out, &format!("[{test}] lab restart n2"));
    for ip in lab.ips() {
        lab.check_serves(&ip)
            .unwrap_or_else(|e| panic!("[{test}] {ip} after the rejoin: {e}"));
    }
    let failures = multi::downloads_survive_kill(lab, "n1");
    assert!(
        failures.is_empty(),
        "[{test}] after n2's rejoin, n1 killed:\n{}\n{}",
        failures.join("\n"),
        lab.node_logs(60)
    );
}
