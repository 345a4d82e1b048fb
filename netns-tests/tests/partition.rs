//! Partitions (`hotpair lab partition|heal`: nftables drops in the node
//! namespaces, so a cut looks like a pulled cable, never a reset).
//!
//! - The replication link cut during downloads on every address of a
//!   dual-role lab: each owner keeps its address and promotes its own
//!   connections, each primary probes, is answered and stands by; every
//!   download finishes byte-exact with no RST, and a client-side capture
//!   of ARP shows each address spoken for by its owner's MAC alone,
//!   throughout. Healed, the link comes back, both nodes rejoin, and the
//!   pair is replicated again: new downloads on both addresses survive a
//!   SIGKILL of n1.
//! - A duplex node's LAN side cut mid-download, its link up (`partition
//!   --lan`): its LAN check fails, it hands the address to its peer over
//!   the link (the owner promotes its shadows, or the primary claims), and
//!   the download finishes byte-exact while the cut lasts, with no RST —
//!   for each node. Healed, the node rejoins and the pair is replicated
//!   again: a new download survives a SIGKILL of the other node.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use hotpair_netns_tests::failover::{self, assert_no_rst, epoch_now, Capture};
use hotpair_netns_tests::{assert_success, report, sha256sum, TempDir, SERVICE};
use hotpair_netns_tests::{capture, multi};

const FILE: &str = "50m.bin";

/// For `ip`: the MACs of every ARP frame that speaks for it (sender
/// address `ip`: announcements, answers, requests from it) in the capture.
fn speakers_for(pcap: &Path, ip: &str) -> Vec<String> {
    let filter = format!("arp and arp[14:4] = {}", ip_hex(ip));
    let lines = capture::read(pcap, &filter).unwrap_or_else(|e| panic!("{e}"));
    let mut macs: Vec<String> = lines
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    macs.sort();
    macs.dedup();
    macs
}

fn ip_hex(ip: &str) -> String {
    let o: Vec<u8> = ip.split('.').map(|x| x.parse().unwrap()).collect();
    format!("0x{:02x}{:02x}{:02x}{:02x}", o[0], o[1], o[2], o[3])
}

#[test]
fn link_cut_during_downloads_on_every_address_then_heal_and_replicated_again() {
    let test = "pt_link";
    let Some(lab) = multi::dual_role_lab(test) else {
        return;
    };
    multi::require_tools(test, &["nft"]);
    let tmp = TempDir::new(&format!("{test}-dl"));
    let arp = failover::arp_capture(&lab, tmp.path());
    let mut failures = multi::downloads_survive(&lab, "across the link cut", || {
        let cut = Instant::now();
        let out = lab.lab(&["partition"], Duration::from_secs(20));
        assert_success(&out, &format!("[{test}] lab partition"));
        thread::sleep(Duration::from_secs(2));
        let out = lab.lab(&["heal"], Duration::from_secs(20));
        assert_success(&out, &format!("[{test}] lab heal"));
        cut
    });
    arp.signal("INT");
    let _ = arp.wait(Duration::from_secs(10));
    for a in &lab.addresses {
        let speakers = speakers_for(&tmp.path().join("arp.pcap"), &a.ip);
        let owner = lab.mac(&a.owner).to_owned();
        if speakers != [owner.clone()] {
            failures.push(format!(
                "ARP for {} spoken by {speakers:?}, not by its owner {} ({owner}) alone",
                a.ip, a.owner
            ));
        }
    }
    // Healed: both nodes back in their configured roles on both addresses.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = lab.status_json();
        let nodes = st["nodes"].as_array().cloned().unwrap_or_default();
        let all = !nodes.is_empty()
            && nodes.iter().all(|n| {
                n["node_status"]["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|a| a["state"] == "replicated")
            });
        if all {
            break;
        }
        if Instant::now() > deadline {
            failures.push(format!("not replicated again 15 s after the heal: {st}"));
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        failures.is_empty(),
        "[{test}] the link cut:\n{}\n{}",
        failures.join("\n"),
        lab.node_logs(60)
    );
    report(&format!(
        "[{test}] ARP: each address spoken for by its owner alone; both nodes rejoined"
    ));
    let failures = multi::downloads_survive_kill(&lab, "n1");
    assert!(
        failures.is_empty(),
        "[{test}] after the heal, n1 killed:\n{}\n{}",
        failures.join("\n"),
        lab.node_logs(60)
    );
}

/// Node `victim`'s LAN side is cut at 10 MiB into a 50 MB download and
/// stays cut until the download is over.
fn lan_cut_mid_download(test: &str, victim: failover::Victim) {
    let Some(lab) = failover::duplex_lab(test) else {
        return;
    };
    multi::require_tools(test, &["nft"]);
    let tmp = TempDir::new(&format!("{test}-dl"));
    let want = sha256sum(&lab.docroot().join(FILE));
    let cap = Capture::start(&lab, tmp.path());
    let mut d = multi::start_download(&lab, tmp.path(), SERVICE, "20M");
    d.wait_for(10 << 20, test);
    let at_cut = d.bytes();
    let cut_epoch = epoch_now();
    let cut = Instant::now();
    let node = victim.node();
    let out = lab.lab(&["partition", "--lan", node], Duration::from_secs(20));
    assert_success(&out, &format!("[{test}] lab partition --lan {node}"));
    let line = d
        .finish(cut, at_cut, &want)
        .unwrap_or_else(|e| panic!("[{test}] the download across {node}'s LAN cut: {e}"));
    let r = cap.stop();
    assert_no_rst(&lab, &r, &format!("LAN cut of {node}"), cut_epoch);
    let logs = lab.node_logs(400);
    assert!(
        logs.contains("handing the address to the peer"),
        "[{test}] {node} did not hand its address over\n{logs}"
    );
    // Healed: the cut node links again and rejoins.
    let out = lab.lab(&["heal"], Duration::from_secs(20));
    assert_success(&out, &format!("[{test}] lab heal"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while lab
        .node_logs(400)
        .matches("rejoined: configured role taken back")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "[{test}] no rejoin after the heal\n{}",
            lab.node_logs(60)
        );
        thread::sleep(Duration::from_millis(100));
    }
    report(&format!(
        "[{test}] {node} ({}) cut off the LAN mid-download, its link up: {line}; 0 RST; \
         healed, rejoined",
        victim.role()
    ));
    // Replicated again: a new download survives the other node's SIGKILL.
    let other = match victim {
        failover::Victim::Primary => failover::Victim::Owner,
        failover::Victim::Owner => failover::Victim::Primary,
    };
    failover::download_with_kill(
        &lab,
        other,
        failover::KillAt::Bytes(10 << 20),
        true,
        "after the LAN cut healed, the other node killed",
    );
}

#[test]
fn a_primary_cut_off_the_lan_hands_its_connections_to_the_owner() {
    lan_cut_mid_download("pt_lan_primary", failover::Victim::Primary);
}

#[test]
fn an_owner_cut_off_the_lan_hands_its_address_to_the_primary() {
    lan_cut_mid_download("pt_lan_owner", failover::Victim::Owner);
}
