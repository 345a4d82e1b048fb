//! `hotpair status` and the Prometheus endpoint on a duplex lab (n1
//! primary, n2 owner): the admin sockets report the right roles; metrics
//! scraped before, during and after a failover (n1 SIGKILLed mid-download)
//! show the requests counted, the takeover, the link going down; the
//! download is byte-exact. The lab gives node i the admin socket
//! `/run/hotpair/lab-PREFIX/n<i>.sock` and metrics on `10.77.0.<i>:9464`
//! in its namespace, scraped from the client's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use hotpair_netns_tests::failover::{duplex_lab_with, DuplexLab};
use hotpair_netns_tests::{
    describe, hotpair_bin, report, run_with_timeout, sha256_file, url, Background, Lab, TempDir,
};

const DOWNLOAD_FILE: &str = "50m.bin";

fn socket(lab: &Lab, node: &str) -> PathBuf {
    lab.state_dir().join(format!("{node}.sock"))
}

/// `hotpair status --json --socket …` of `node`, parsed.
fn node_status(lab: &Lab, node: &str) -> serde_json::Value {
    let out = status_cmd(lab, node, true);
    assert!(
        out.status.success(),
        "[{}] hotpair status --json of {node} failed\n{}",
        lab.test,
        describe(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "[{}] status of {node} is not JSON ({e})\n{}",
            lab.test,
            describe(&out)
        )
    })
}

fn status_cmd(lab: &Lab, node: &str, json: bool) -> std::process::Output {
    let mut cmd = Command::new(hotpair_bin());
    cmd.arg("status").arg("--socket").arg(socket(lab, node));
    if json {
        cmd.arg("--json");
    }
    run_with_timeout(&mut cmd, Duration::from_secs(20))
}

/// Scrape node `i`'s metrics from the client namespace.
/// A 50 MB download at 20 MB/s from the client, to be finished across a
/// failover.
struct Download {
    _tmp: TempDir,
    src: PathBuf,
    dl: PathBuf,
    curl: Background,
}

impl Download {
    /// Starts the download and waits until `mib` MiB arrived.
    fn start(lab: &Lab, test: &str, mib: u64) -> Download {
        let tmp = TempDir::new(&format!("{test}-dl"));
        let src = lab.docroot().join(DOWNLOAD_FILE);
        let dl = tmp.path().join("download.bin");
        let curl = lab.curl_download(
            &url(&format!("/static/{DOWNLOAD_FILE}")),
            "20M",
            &dl,
            &[],
            tmp.path(),
            "curl",
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while file_len(&dl) < mib << 20 {
            assert!(
                Instant::now() < deadline,
                "[{test}] the download did not reach {mib} MB within 20 s ({} bytes)",
                file_len(&dl)
            );
            thread::sleep(Duration::from_millis(10));
        }
        Download {
            _tmp: tmp,
            src,
            dl,
            curl,
        }
    }

    /// Waits for the end: curl succeeded and the file is the docroot's to
    /// the byte.
    fn completes(self, test: &str) {
        let out = self.curl.wait(Duration::from_secs(60));
        assert!(
            out.status.success(),
            "[{test}] curl failed across the failover\n{}",
            describe(&out)
        );
        assert_eq!(
            sha256_file(&self.dl),
            sha256_file(&self.src),
            "[{test}] the download is not byte-exact"
        );
    }
}

fn scrape(lab: &Lab, i: u32) -> String {
    lab.scrape_metrics(i)
}

/// The value of the sample `series` (name with labels, exactly as printed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.parse().ok())?
    })
}

#[track_caller]
fn metric(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

const ADDR: &str = "address=\"10.77.0.10\"";

fn requests_static(text: &str) -> f64 {
    metric(
        text,
        &format!("hotpair_requests_total{{{ADDR},route=\"/static/\",policy=\"logged\"}}"),
    )
}

fn address<'a>(st: &'a serde_json::Value, lab: &Lab) -> &'a serde_json::Value {
    let a = &st["addresses"][0];
    assert_eq!(a["address"], "10.77.0.10", "[{}] status: {st}", lab.test);
    a
}

/// Waits until `f` holds for node `node`'s status (snapshots are published
/// every 100 ms), or panics with the last one.
fn wait_status(
    lab: &Lab,
    node: &str,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = node_status(lab, node);
        if f(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] {node}: {what} not seen within 10 s; last status:\n{st:#}",
            lab.test
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

#[test]
fn status_and_metrics_follow_a_failover() {
    let test = "status_metrics";
    let Some(lab): Option<DuplexLab> = duplex_lab_with(test, &["--static-policy", "logged"]) else {
        return;
    };

    // Roles on both admin sockets (the link is up once lab up returns; its
    // Hello may take a round more).
    let n1 = wait_status(&lab, "n1", "replicated", |st| {
        st["addresses"][0]["state"] == "replicated"
    });
    let a = address(&n1, &lab);
    assert_eq!(a["role"], "primary", "[{test}] n1: {n1:#}");
    assert_eq!(a["configured_role"], "primary", "[{test}] n1: {n1:#}");
    assert_eq!(a["peer"]["link"], "up", "[{test}] n1: {n1:#}");
    assert_eq!(n1["node"], "n1");
    let n2 = wait_status(&lab, "n2", "replicated", |st| {
        st["addresses"][0]["state"] == "replicated"
    });
    let a = address(&n2, &lab);
    assert_eq!(a["role"], "owner", "[{test}] n2: {n2:#}");
    assert_eq!(a["peer"]["name"], "n1", "[{test}] n2: {n2:#}");
    assert_eq!(n2["peers"][0]["link_up"], true, "[{test}] n2: {n2:#}");
    assert!(
        n2["peers"][0]["rtt_us"].as_u64().is_some(),
        "[{test}] n2 has no link RTT: {n2:#}"
    );
    // The table names them too.
    let table = status_cmd(&lab, "n2", false);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success() && text.contains("owner") && text.contains("replicated"),
        "[{test}] hotpair status (table) of n2:\n{}",
        describe(&table)
    );

    let before1 = scrape(&lab, 1);
    let before2 = scrape(&lab, 2);
    assert_eq!(metric(&before1, "hotpair_link_up{peer=\"n2\"}"), 1.0);
    assert_eq!(metric(&before2, "hotpair_link_up{peer=\"n1\"}"), 1.0);
    let promoted = format!("hotpair_takeovers_total{{{ADDR},peer=\"n1\",kind=\"promoted\"}}");
    assert_eq!(metric(&before2, &promoted), 0.0);
    let link_down = "hotpair_link_transitions_total{peer=\"n1\",direction=\"down\"}";
    assert_eq!(metric(&before2, link_down), 0.0);
    // Replies by status code: a 404 and a 200, counted on the primary that
    // made them.
    for (path, want) in [
        ("/static/no-such-file", "404"),
        ("/static/index.html", "200"),
    ] {
        let out = lab.get_status(&url(path));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want,
            "[{test}] GET {path}"
        );
    }
    let codes = scrape(&lab, 1);
    for code in ["404", "200"] {
        let series =
            format!("hotpair_responses_total{{{ADDR},route=\"/static/\",code=\"{code}\"}}");
        assert!(
            value(&codes, &series).is_some_and(|v| v >= 1.0),
            "[{test}] n1 did not count its {code} reply ({series})\n{codes}"
        );
    }
    let req_before = requests_static(&codes);

    // A 50 MB download at 20 MB/s; n1 killed once 20 MB arrived.
    let download = Download::start(&lab, test, 20);
    // Mid-download: the primary counted the request and answers it live;
    // the owner node shadows it.
    let mid1 = scrape(&lab, 1);
    assert!(
        requests_static(&mid1) >= req_before + 1.0,
        "[{test}] n1 did not count the download request\n{mid1}"
    );
    assert!(
        metric(
            &mid1,
            &format!("hotpair_connections{{{ADDR},kind=\"live\"}}")
        ) >= 1.0
    );
    let mid2 = node_status(&lab, "n2");
    assert!(
        address(&mid2, &lab)["connections"]["shadow"].as_u64() >= Some(1),
        "[{test}] n2 shadows no connection mid-download: {mid2:#}"
    );

    let kill = lab.kill("n1");
    download.completes(test);

    // The survivor's metrics moved: a takeover, the link down, the
    // address promoted.
    let after2 = scrape(&lab, 2);
    assert_eq!(metric(&after2, &promoted), 1.0, "[{test}]\n{after2}");
    assert_eq!(metric(&after2, link_down), 1.0, "[{test}]\n{after2}");
    assert_eq!(metric(&after2, "hotpair_link_up{peer=\"n1\"}"), 0.0);
    assert_eq!(
        metric(
            &after2,
            &format!("hotpair_address_state{{{ADDR},state=\"promoted\"}}")
        ),
        1.0
    );
    assert!(
        metric(
            &after2,
            &format!("hotpair_connections_promoted_total{{{ADDR}}}")
        ) >= 1.0
    );

    // The download it took over mid-reply is counted on its route, with
    // its code: the only request n2 has answered (it shadowed the others).
    assert_eq!(
        requests_static(&after2),
        1.0,
        "[{test}] n2 did not count the request it took over\n{after2}"
    );
    assert_eq!(
        value(
            &after2,
            &format!("hotpair_responses_total{{{ADDR},route=\"/static/\",code=\"200\"}}")
        ),
        Some(1.0),
        "[{test}] n2 did not count the reply it finished\n{after2}"
    );

    // New requests are served and counted by the survivor, with their latency.
    let small = lab.get("/static/index.html");
    assert!(!small.is_empty());
    let served = scrape(&lab, 2);
    assert!(
        requests_static(&served) >= requests_static(&after2) + 1.0,
        "[{test}] n2 did not count a request after the takeover\n{served}"
    );
    assert!(
        metric(
            &served,
            &format!(
                "hotpair_request_duration_seconds_count{{{ADDR},route=\"/static/\",policy=\"logged\"}}"
            )
        ) >= 1.0
    );

    // hotpair status on the survivor: promoted, the event with its time.
    let st = node_status(&lab, "n2");
    let a = address(&st, &lab);
    assert_eq!(a["state"], "promoted", "[{test}] n2: {st:#}");
    assert_eq!(a["role"], "alone", "[{test}] n2: {st:#}");
    assert_eq!(a["takeovers"], 1, "[{test}] n2: {st:#}");
    assert_eq!(a["peer"]["link"], "down", "[{test}] n2: {st:#}");
    let ev = &st["events"][0];
    assert_eq!(ev["kind"], "promoted", "[{test}] n2: {st:#}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ago = now_ms.saturating_sub(ev["at_unix_ms"].as_u64().unwrap_or(0));
    assert!(
        Duration::from_millis(ago) <= kill.elapsed() + Duration::from_secs(1),
        "[{test}] the takeover's time is off: {ago} ms ago, the kill {:?} ago",
        kill.elapsed()
    );
    let table = status_cmd(&lab, "n2", false);
    report(&format!(
        "[{test}] hotpair status on the survivor after the failover:\n{}",
        String::from_utf8_lossy(&table.stdout)
    ));

    // The dead node's socket: a clear error, not a hang.
    let dead = status_cmd(&lab, "n1", false);
    let err = String::from_utf8_lossy(&dead.stderr);
    assert!(
        !dead.status.success() && err.contains("not running"),
        "[{test}] status of the killed n1\n{}",
        describe(&dead)
    );

    // Garbage on the metrics port and the admin socket: clean refusals,
    // and the node keeps serving both.
    let junk = lab.exec_client(&[
        "python3",
        "-c",
        "import socket\ns=socket.create_connection(('10.77.0.2',9464),5)\n\
         s.sendall(b'\\x00\\xffgarbage\\r\\n\\r\\n')\nprint(s.recv(100).decode('latin1'))",
    ]);
    assert!(
        String::from_utf8_lossy(&junk.stdout).starts_with("HTTP/1.1 400"),
        "[{test}] garbage on the metrics port\n{}",
        describe(&junk)
    );
    let mut garbage = std::os::unix::net::UnixStream::connect(socket(&lab, "n2")).unwrap();
    use std::io::{Read, Write};
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    garbage.write_all(b"\xff\xfe DELETE everything\n").unwrap();
    let mut answer = String::new();
    garbage.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("\"error\""), "[{test}] {answer}");
    assert!(scrape(&lab, 2).contains("hotpair_node_info{node=\"n2\"} 1"));
    assert_eq!(address(&node_status(&lab, "n2"), &lab)["state"], "promoted");
}

/// The owner node (n2) killed mid-download: the primary claims the
/// address, and its metrics and status say so.
#[test]
fn status_and_metrics_show_a_claim() {
    let test = "status_metrics_claim";
    let Some(lab): Option<DuplexLab> = duplex_lab_with(test, &["--static-policy", "logged"]) else {
        return;
    };
    wait_status(&lab, "n1", "replicated", |st| {
        st["addresses"][0]["state"] == "replicated"
    });
    let claimed = format!("hotpair_takeovers_total{{{ADDR},peer=\"n2\",kind=\"claimed\"}}");
    assert_eq!(metric(&scrape(&lab, 1), &claimed), 0.0);

    let download = Download::start(&lab, test, 10);
    lab.kill("n2");
    download.completes(test);

    let after = scrape(&lab, 1);
    assert_eq!(metric(&after, &claimed), 1.0, "[{test}]\n{after}");
    assert_eq!(
        metric(
            &after,
            "hotpair_link_transitions_total{peer=\"n2\",direction=\"down\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            &format!("hotpair_address_state{{{ADDR},state=\"claimed\"}}")
        ),
        1.0
    );
    assert!(requests_static(&after) >= 1.0, "[{test}]\n{after}");
    let st = node_status(&lab, "n1");
    let a = address(&st, &lab);
    assert_eq!(a["state"], "claimed", "[{test}] n1: {st:#}");
    assert_eq!(a["configured_role"], "primary", "[{test}] n1: {st:#}");
    assert_eq!(st["events"][0]["kind"], "claimed", "[{test}] n1: {st:#}");
}

/// Dual-role: each node reports two addresses, owner of one and primary
/// for the other, both replicated with the other node as peer.
#[test]
fn status_shows_dual_role() {
    let test = "status_dual_role";
    let _serial = hotpair_netns_tests::failover::serial();
    let Some(lab) = Lab::up_with(test, &["--mode", "dual-role", "--wait-secs", "30"]) else {
        return;
    };
    for (node, peer, owns, serves) in [
        ("n1", "n2", "10.77.0.10", "10.77.0.11"),
        ("n2", "n1", "10.77.0.11", "10.77.0.10"),
    ] {
        // Replicated, and the digest guard cleared the lab's `static`
        // /static/ route on both addresses (identical docroots).
        let st =
            wait_status(
                &lab,
                node,
                "both addresses replicated, /static/ static",
                |st| {
                    st["addresses"].as_array().is_some_and(|a| {
                        a.len() == 2
                            && a.iter().all(|a| {
                                a["state"] == "replicated"
                                    && a["routes"].as_array().into_iter().flatten().any(|r| {
                                        r["route"] == "/static/" && r["static_in_use"] == true
                                    })
                            })
                    })
                },
            );
        for a in st["addresses"].as_array().into_iter().flatten() {
            let want = if a["address"] == owns {
                "owner"
            } else {
                assert_eq!(a["address"], serves, "[{test}] {node}: {st:#}");
                "primary"
            };
            assert_eq!(a["role"], want, "[{test}] {node}: {st:#}");
            assert_eq!(a["peer"]["name"], peer, "[{test}] {node}: {st:#}");
        }
        let m = scrape(&lab, node[1..].parse().unwrap());
        assert_eq!(
            metric(&m, &format!("hotpair_link_up{{peer=\"{peer}\"}}")),
            1.0
        );
        for ip in [owns, serves] {
            assert_eq!(
                metric(
                    &m,
                    &format!(
                        "hotpair_static_route_in_use{{address=\"{ip}\",route=\"/static/\",policy=\"static\"}}"
                    )
                ),
                1.0,
                "[{test}] {node}\n{m}"
            );
        }
    }
}
