//! A frozen node (SIGSTOP: a host that hangs, whose kernel neither dies nor
//! resets the replication link) in a duplex lab: its peer takes over after
//! the heartbeat timeout, and when the frozen node resumes it must not
//! speak first — not one stale data segment, ARP answer or RST from the
//! service address — but probe, find that its peer holds the address, and
//! stand down. Each test: a 50 MB download at 20 MB/s, the freeze once
//! 10 MiB arrived, the thaw either after the download ended or while it
//! still runs from the survivor; curl exits 0, SHA-256 exact, the client's
//! capture holds no RST from the address and no segment from the resumed
//! node's MAC after the thaw.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use hotpair_netns_tests::failover::{self, assert_no_rst, epoch_now, Capture, DOWNLOAD_RATE};
use hotpair_netns_tests::{assert_success, describe, report, sha256sum, Lab, TempDir, SERVICE};
use hotpair_netns_tests::{capture, multi};

const FILE: &str = "50m.bin";
const FREEZE_AT: u64 = 10 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Thaw {
    /// After the download ended.
    AfterTheDownload,
    /// While the download still runs from the survivor (after the takeover).
    DuringTheDownload,
}

fn mac_of(node: &str) -> &'static str {
    match node {
        "n1" => "02:68:70:00:00:01",
        _ => "02:68:70:00:00:02",
    }
}

/// Lines of the client's capture (`tcpdump -e -tt`) matching `filter` at
/// or after `since` (seconds since the epoch).
fn captured_since(pcap: &Path, filter: &str, since: f64) -> Vec<String> {
    capture::read(pcap, filter)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|t| t.parse::<f64>().ok())
                .is_some_and(|t| t >= since)
        })
        .collect()
}

fn freeze_and_resume(test: &str, victim: &str, thaw: Thaw) {
    let Some(lab) = failover::duplex_lab(test) else {
        return;
    };
    let tmp = TempDir::new(&format!("{test}-dl"));
    let want = sha256sum(&lab.docroot().join(FILE));
    let cap = Capture::start(&lab, tmp.path());
    // And ARP: a resumed node must not answer for the address either.
    let arp_cap = failover::arp_capture(&lab, tmp.path());
    let arp_pcap = tmp.path().join("arp.pcap");
    let mut d = multi::start_download(&lab, tmp.path(), SERVICE, DOWNLOAD_RATE);
    d.wait_for(FREEZE_AT, test);
    let at_freeze = d.bytes();
    let frozen = Instant::now();
    let out = lab.lab(&["freeze", victim], Duration::from_secs(10));
    assert_success(&out, &format!("[{test}] lab freeze {victim}"));
    let thaw_now = || {
        let t = epoch_now();
        let out = lab.lab(&["thaw", victim], Duration::from_secs(10));
        assert_success(&out, &format!("[{test}] lab thaw {victim}"));
        t
    };
    let mut thawed_at = None;
    if thaw == Thaw::DuringTheDownload {
        // Past the takeover (heartbeat timeout 500 ms, plus 300 ms of
        // probes when the owner froze), with 40 MiB still to come.
        thread::sleep(Duration::from_millis(1500));
        assert!(d.running(), "[{test}] the download ended before the thaw");
        thawed_at = Some(thaw_now());
    }
    let line = d
        .finish(frozen, at_freeze, &want)
        .unwrap_or_else(|e| panic!("[{test}] after the freeze of {victim}: {e}"));
    let thawed_at = thawed_at.unwrap_or_else(thaw_now);
    // Give the resumed node time to do whatever it would do.
    thread::sleep(Duration::from_millis(1500));
    let pcap = tmp.path().join("client.pcap");
    let r = cap.stop();
    assert_no_rst(&lab, &r, "freeze and thaw", thawed_at);
    arp_cap.signal("INT");
    let _ = arp_cap.wait(Duration::from_secs(10));
    // Not one TCP segment from the resumed node: it served nothing since
    // (its stale copies are dropped; an owner that rejoined passes the
    // survivor's connections through).
    let tcp = captured_since(&pcap, &format!("ether src {}", mac_of(victim)), thawed_at);
    assert!(
        tcp.is_empty(),
        "[{test}] the resumed node {victim} sent TCP after the thaw ({} segments):\n{}",
        tcp.len(),
        tcp.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    // ARP: its probes (sender 0.0.0.0) and, once it rejoined as the owner,
    // its announcements; and at no moment two nodes answering for the
    // address: after the resumed node's first word for it, the survivor
    // says nothing more for it.
    let own = captured_since(
        &arp_pcap,
        &format!("ether src {} and not arp[14:4] = 0", mac_of(victim)),
        thawed_at,
    );
    if victim == "n1" {
        assert!(
            own.is_empty(),
            "[{test}] the resumed primary {victim} sent ARP after the thaw:\n{}",
            own.join("\n")
        );
    } else if let Some(first) = own.first() {
        let t: f64 = first.split_whitespace().next().unwrap().parse().unwrap();
        let survivor = captured_since(
            &arp_pcap,
            &format!("ether src {} and arp[14:4] = 0x0a4d000a", mac_of("n1")),
            t,
        );
        assert!(
            survivor.is_empty(),
            "[{test}] two nodes answered for the address: the owner from {t:.3}, the \
             survivor after it:\n{}",
            survivor.join("\n")
        );
    }
    let logs = lab.node_logs(400);
    assert!(
        logs.contains("paused past the heartbeat timeout"),
        "[{test}] the resumed node did not notice its pause\n{logs}"
    );
    report(&format!(
        "[{test}] {victim} frozen, thawed {}: {line}; 0 RST, 0 frames from the resumed node \
         ({} packets captured from the address)",
        match thaw {
            Thaw::AfterTheDownload => "after the download",
            Thaw::DuringTheDownload => "1.5 s later, during the download",
        },
        r.packets
    ));
}

#[test]
fn frozen_primary_resumed_after_the_download_stays_silent() {
    freeze_and_resume("fz_primary_after", "n1", Thaw::AfterTheDownload);
}

#[test]
fn frozen_primary_resumed_during_the_download_stays_silent() {
    freeze_and_resume("fz_primary_during", "n1", Thaw::DuringTheDownload);
}

#[test]
fn frozen_owner_resumed_during_the_download_stays_silent() {
    freeze_and_resume("fz_owner_during", "n2", Thaw::DuringTheDownload);
}

/// `lab freeze`/`lab thaw` refuse what they cannot do.
#[test]
fn freeze_names_a_missing_node() {
    let Some(lab) = Lab::up("fz_cli") else {
        return;
    };
    let out = lab.lab(&["freeze", "n9"], Duration::from_secs(10));
    assert!(!out.status.success(), "[fz_cli] freeze n9 succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no node `n9`"),
        "[fz_cli] {}",
        describe(&out)
    );
}
