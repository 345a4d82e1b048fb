//! Hostile clients against the real binary (DESIGN §5, promise 6): a SYN
//! flood from spoofed sources that never answer (hping3), slow request
//! heads taking more connections than the pool holds (slowhttptest), and a
//! pool full of idle keep-alive connections. Legitimate requests are served
//! during and after each, byte-exact, within a bounded delay.
//!
//! Every address used is inside the lab's own LAN (10.77.0.0/24): the
//! spoofed sources 10.77.0.200–203 are held by no namespace (nobody answers
//! the nodes' ARP for them; SYN-ACKs sent to the client's MAC are dropped by
//! its kernel as not its address), and the legitimate client gets a second
//! address, 10.77.0.150, on the client namespace's own interface, so the
//! attackers' per-source limits are measured apart from it.

use std::path::Path;
use std::time::{Duration, Instant};

use hotpair_netns_tests::{
    assert_success, describe, python_json, report, sha256_file, Background, Lab, TempDir, PY_HTTP,
    SERVICE,
};

/// The legitimate client's own address (added to the client namespace).
const LEGIT: &str = "10.77.0.150";
/// Spoofed SYN sources: inside the lab LAN, held by no namespace.
const SPOOFED: [&str; 4] = ["10.77.0.200", "10.77.0.201", "10.77.0.202", "10.77.0.203"];
const FILE: &str = "1k.bin";

/// Gives the client namespace the legitimate client's second address.
fn add_legit_address(lab: &Lab) {
    let out = lab.exec_in(
        "client",
        &["ip", "addr", "add", &format!("{LEGIT}/24"), "dev", "eth0"],
        Duration::from_secs(10),
    );
    assert_success(&out, "ip addr add (legitimate client's address)");
}

/// One legitimate GET from `LEGIT`: (HTTP status, seconds taken by curl,
/// body matches the file).
fn legit_get(lab: &Lab, want_sha: &str) -> (u16, f64, bool) {
    let url = format!("http://{SERVICE}/static/{FILE}");
    let (got, out) = lab.checked_get(&url, 15, &["--interface", LEGIT], want_sha);
    if got.0 != 200 {
        eprintln!("legitimate GET failed: {}", describe(&out));
    }
    got
}

/// Legitimate GETs every `every` until `until`: (status, seconds, body ok)
/// of each.
fn legit_loop(lab: &Lab, want_sha: &str, every: Duration, until: Instant) -> Vec<(u16, f64, bool)> {
    let mut results = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        results.push(legit_get(lab, want_sha));
        if let Some(rest) = every.checked_sub(t.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    results
}

/// Every legitimate request succeeded, byte-exact, each within `max_secs`.
/// Returns the slowest.
#[track_caller]
fn assert_all_served(lab: &Lab, what: &str, results: &[(u16, f64, bool)], max_secs: f64) -> f64 {
    assert!(
        !results.is_empty(),
        "[{}] no legitimate request ran",
        lab.test
    );
    for (i, (code, secs, ok)) in results.iter().enumerate() {
        assert_eq!(
            *code, 200,
            "[{}] legitimate request {i} {what} failed: {results:?}",
            lab.test
        );
        assert!(
            ok,
            "[{}] legitimate request {i} {what}: body differs",
            lab.test
        );
        assert!(
            *secs <= max_secs,
            "[{}] legitimate request {i} {what} took {secs} s (bound {max_secs} s): {results:?}",
            lab.test
        );
    }
    results.iter().map(|r| r.1).fold(0.0, f64::max)
}

fn median(results: &[(u16, f64, bool)]) -> f64 {
    let mut v: Vec<f64> = results.iter().map(|r| r.1).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The node logs (whole), for checks on warnings.
fn logs(lab: &Lab) -> String {
    lab.node_logs(100_000)
}

/// Waits up to `within` for `needle` to appear `count` times in the logs.
fn wait_for_log(lab: &Lab, needle: &str, count: usize, within: Duration) -> bool {
    let end = Instant::now() + within;
    loop {
        if logs(lab).matches(needle).count() >= count {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A node took over (a flood must never look like a dead peer).
fn assert_no_takeover(lab: &Lab) {
    let l = logs(lab);
    assert!(
        !l.contains("taking over") && !l.contains("claiming the service address"),
        "[{}] a node took over during the attack:\n{}",
        lab.test,
        lab.node_logs(60)
    );
}

/// hping3 sending SYNs from `source` every `interval_us` for `secs`
/// (then SIGINT: it prints its statistics). Bounded by time, not by `-c`:
/// hping3 stops once it has *received* `-c` replies, and the node's SYN
/// cookies answer the spoofed SYNs (to the client's MAC, where hping3's
/// capture sees them) — a count would end the flood early.
fn hping(lab: &Lab, dir: &Path, source: &str, secs: u32, interval_us: u32) -> Background {
    let secs = secs.to_string();
    let interval = format!("u{interval_us}");
    lab.spawn_in(
        "client",
        &[
            "timeout", "-s", "INT", &secs, "hping3", "-q", "-S", "-p", "80", "-a", source, "-i",
            &interval, "-c", "1000000", SERVICE,
        ],
        dir,
        &format!("hping-{source}"),
    )
}

/// SYN flood: 4 000 SYNs from four spoofed sources in ~4 s (the issue saw
/// ~1 000 lock a node out for minutes), with a legitimate GET every 0.25 s
/// during the flood and for 2 s after; then the half-open connections
/// expire (3 s here) and the node says so.
fn syn_flood(mode: &str) {
    let test = format!("hostile_syn_flood_{mode}");
    let _serial = (mode == "duplex").then(hotpair_netns_tests::failover::serial);
    let Some(lab) = Lab::up_with(
        &test,
        &[
            "--mode",
            mode,
            "--half-open-timeout-ms",
            "3000",
            "--wait-secs",
            "30",
        ],
    ) else {
        return;
    };
    add_legit_address(&lab);
    let want = sha256_file(&lab.docroot().join(FILE));
    let dir = TempDir::new("hostile-flood");
    let base = legit_get(&lab, &want);
    assert_eq!(base.0, 200, "[{test}] no service before the flood");

    let start = Instant::now();
    // 4 × 250 SYNs/s: what the debug build on a shared 2-core machine
    // keeps up with (see docs/testing.md for the rate at which it no longer
    // does).
    let floods: Vec<Background> = SPOOFED
        .iter()
        .map(|s| hping(&lab, dir.path(), s, 4, 4000))
        .collect();
    let during = legit_loop(
        &lab,
        &want,
        Duration::from_millis(250),
        start + Duration::from_secs(4),
    );
    let mut sent = 0;
    for f in floods {
        let out = f.wait(Duration::from_secs(15));
        let n = hotpair_netns_tests::hping_sent(&out);
        // 250 SYN/s for 4 s, give or take hping3's usleep.
        assert!(
            n.is_some_and(|n| n >= 700),
            "[{test}] hping3 did not send its SYNs\n{}",
            describe(&out)
        );
        sent += n.unwrap_or(0);
    }
    let flood_secs = start.elapsed().as_secs_f64();
    let after = legit_loop(
        &lab,
        &want,
        Duration::from_millis(250),
        Instant::now() + Duration::from_secs(2),
    );

    // The node that hears the SYNs first reaches its bound and says so: in
    // duplex the owner, which from then on answers with SYN cookies and
    // forwards nothing more, so the primary's own table need not fill (it
    // did, before cookies; now it does or not by a race).
    let nodes = 1;
    assert!(
        wait_for_log(
            &lab,
            "half-open connections at their bound",
            nodes,
            Duration::from_secs(5)
        ),
        "[{test}] no half-open warning from every node\n{}",
        lab.node_logs(30)
    );
    let worst_during = assert_all_served(&lab, "during the flood", &during, 3.0);
    let worst_after = assert_all_served(&lab, "after the flood", &after, 3.0);
    // The half-open connections expire (3 s) and the node says so.
    assert!(
        wait_for_log(
            &lab,
            "half-open connections drained",
            nodes,
            Duration::from_secs(15)
        ),
        "[{test}] the half-open connections did not drain\n{}",
        lab.node_logs(30)
    );
    assert_no_takeover(&lab);
    report(&format!(
        "[{test}] flood {sent} SYNs in {flood_secs:.1} s; legitimate GETs during: {} ok, \
         median {:.3} s, worst {worst_during:.3} s; after: {} ok, worst {worst_after:.3} s",
        during.len(),
        median(&during),
        after.len()
    ));
}

#[test]
fn syn_flood_simplex() {
    syn_flood("simplex");
}

#[test]
fn syn_flood_duplex() {
    syn_flood("duplex");
}

/// Slow headers: slowhttptest opens 600 connections (the pool holds 256)
/// and trickles their heads for 14 s. Its source holds at most
/// `max_per_source` (128), and each head is cut at the header timeout (4 s
/// here) from its accept; a legitimate client from another address is
/// served throughout.
#[test]
fn slow_headers_duplex() {
    let test = "hostile_slow_headers_duplex";
    let _serial = hotpair_netns_tests::failover::serial();
    let Some(lab) = Lab::up_with(
        test,
        &[
            "--mode",
            "duplex",
            "--max-connections",
            "256",
            "--http-header-timeout-ms",
            "4000",
            "--wait-secs",
            "30",
        ],
    ) else {
        return;
    };
    add_legit_address(&lab);
    let want = sha256_file(&lab.docroot().join(FILE));
    let dir = TempDir::new("hostile-slow");
    let start = Instant::now();
    let attack = lab.spawn_in(
        "client",
        &[
            "timeout",
            "30",
            "slowhttptest",
            "-H",
            "-c",
            "600",
            "-r",
            "200",
            "-i",
            "2",
            "-s",
            "8192",
            "-t",
            "GET",
            "-u",
            &format!("http://{SERVICE}/static/index.html"),
            "-x",
            "24",
            "-p",
            "3",
            "-l",
            "14",
        ],
        dir.path(),
        "slowhttptest",
    );
    // Once its connections are open (200/s), every 0.5 s until it ends.
    std::thread::sleep(Duration::from_secs(3));
    let during = legit_loop(
        &lab,
        &want,
        Duration::from_millis(500),
        start + Duration::from_secs(13),
    );
    let out = attack.wait(Duration::from_secs(40));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // slowhttptest colours its output.
    let plain: String = strip_ansi(&text);
    let worst = assert_all_served(&lab, "during slowhttptest", &during, 2.0);
    // The heads were cut: slowhttptest saw its connections closed.
    let closed = last_count(&plain, "closed:");
    assert!(
        closed > 0,
        "[{test}] no slow connection was closed (header timeout)\n{plain}"
    );
    assert!(
        wait_for_log(
            &lab,
            "a client holds its share of connections",
            1,
            Duration::from_secs(5)
        ),
        "[{test}] no per-source warning\n{}",
        lab.node_logs(30)
    );
    assert_no_takeover(&lab);
    report(&format!(
        "[{test}] slowhttptest 600 connections (pool 256, per source 128): closed {closed}, \
         legitimate GETs {} ok, median {:.3} s, worst {worst:.3} s",
        during.len(),
        median(&during)
    ));
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The numbers slowhttptest printed after `label` in its status blocks.
fn counts(plain: &str, label: &str) -> Vec<u64> {
    plain
        .lines()
        .filter_map(|l| l.trim().strip_prefix(label))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

fn last_count(plain: &str, label: &str) -> u64 {
    counts(plain, label).last().copied().unwrap_or(0)
}

/// The python side of the idle-eviction tests: 48 keep-alive connections,
/// each after one GET (socket 0 the oldest idle), closed like a browser's
/// when the server closes; then a `curl` from the other address; then —
/// once `trigger` exists, if given — a GET on two of the others.
const IDLE_SCRIPT: &str = r#"
import os, selectors, subprocess, threading
n, url, src, ready, trigger = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
req = b"GET /static/1k.bin HTTP/1.1\r\nHost: lab\r\n\r\n"
socks, first = [], []
for i in range(n):
    s = connect()
    s.sendall(req)
    resp = read_response(Reader(s))
    first.append(summary(resp)["sha256"] if resp else None)
    socks.append(s)
    time.sleep(0.02)  # distinct idle-since times: socket 0 is the oldest
events = []
stop = threading.Event()
def watch():
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    while not stop.is_set():
        for key, _ in sel.select(0.05):
            i = key.data
            try:
                d = key.fileobj.recv(4096)
                what = "eof" if d == b"" else "data"
            except OSError as e:
                what = type(e).__name__
            events.append({"conn": i, "what": what, "t": time.time()})
            sel.unregister(key.fileobj)
            if what != "data":
                key.fileobj.close()
w = threading.Thread(target=watch)
w.start()
time.sleep(0.5)
t0 = time.time()
p = subprocess.run(["curl", "-sS", "--max-time", "15", "--interface", src, "-o", "/dev/null",
                    "-w", "%{http_code} %{time_total}", url], capture_output=True, text=True)
took = time.time() - t0
time.sleep(1.0)
if trigger != "-":
    open(ready, "w").close()
    end = time.time() + 40
    while not os.path.exists(trigger) and time.time() < end:
        time.sleep(0.05)
stop.set()
w.join()
closed = {e["conn"] for e in events}
still = []
for i in (1, n - 1):
    if i in closed:
        continue
    socks[i].settimeout(10)
    socks[i].sendall(req)
    resp = read_response(Reader(socks[i]))
    still.append({"conn": i, "status": resp["status"] if resp else None,
                  "sha256": summary(resp)["sha256"] if resp else None})
print(json.dumps({"first": first, "curl": p.stdout, "curl_err": p.stderr, "took": took,
                  "events": events, "still": still}))
"#;

/// Idle keep-alive eviction on a duplex pair: 48 idle keep-alive
/// connections fill a pool of 48; a new client (another address) gets in,
/// and exactly the oldest idle connection is closed — with a FIN (recv
/// returns b''), not a reset. The other connections still serve. With
/// `kill_primary`, the primary is SIGKILLed after the eviction: the owner
/// node promotes exactly the 47 connections left (its shadow of the
/// evicted one closed with the primary's, at the same byte), and the
/// remaining connections are served by it.
fn idle_eviction(kill_primary: bool) {
    let test = if kill_primary {
        "hostile_idle_eviction_then_crash"
    } else {
        "hostile_idle_eviction_duplex"
    };
    let _serial = hotpair_netns_tests::failover::serial();
    let Some(lab) = Lab::up_with(
        test,
        &[
            "--mode",
            "duplex",
            "--max-connections",
            "48",
            "--max-per-source",
            "48",
            "--wait-secs",
            "30",
        ],
    ) else {
        return;
    };
    add_legit_address(&lab);
    let want = sha256_file(&lab.docroot().join(FILE));
    let url = format!("http://{SERVICE}/static/{FILE}");
    let dir = TempDir::new("hostile-idle");
    let ready = dir.path().join("ready");
    let trigger = dir.path().join("trigger");
    let (ready_arg, trigger_arg) = if kill_primary {
        (
            ready.to_string_lossy().into_owned(),
            trigger.to_string_lossy().into_owned(),
        )
    } else {
        ("-".to_owned(), "-".to_owned())
    };
    let args = ["48", &url, LEGIT, &ready_arg, &trigger_arg];
    let v = if kill_primary {
        let full = format!("{PY_HTTP}\n{IDLE_SCRIPT}");
        let mut argv = vec!["python3", "-c", &full];
        argv.extend_from_slice(&args);
        let py = lab.spawn_in("client", &argv, dir.path(), "idle");
        let end = Instant::now() + Duration::from_secs(40);
        while !ready.exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(ready.exists(), "[{test}] the python client never got ready");
        lab.kill("n1");
        // Heartbeat timeout (500 ms) and the promotion.
        assert!(
            wait_for_log(
                &lab,
                "takeover: shadow connections promoted",
                1,
                Duration::from_secs(10)
            ),
            "[{test}] no takeover\n{}",
            lab.node_logs(30)
        );
        std::fs::write(&trigger, b"").expect("trigger file");
        let out = py.wait(Duration::from_secs(60));
        assert_success(&out, &format!("[{test}] python client"));
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("[{test}] no JSON ({e})\n{}", describe(&out)))
    } else {
        python_json(&lab, IDLE_SCRIPT, &args, Duration::from_secs(60))
    };
    let first = v["first"].as_array().expect("first replies");
    assert_eq!(first.len(), 48, "{v}");
    assert!(
        first.iter().all(|s| s == want.as_str()),
        "[{test}] an idle connection's first reply differs: {v}"
    );
    let curl = v["curl"].as_str().unwrap_or("");
    assert!(
        curl.starts_with("200 "),
        "[{test}] the new client was not served: {v}\n{}",
        lab.node_logs(30)
    );
    let events = v["events"].as_array().expect("events");
    assert!(
        !events.is_empty(),
        "[{test}] no idle connection was closed: {v}"
    );
    for e in events {
        assert_eq!(
            e["what"], "eof",
            "[{test}] an idle connection was reset or sent data, not closed with a FIN: {v}"
        );
    }
    assert_eq!(
        events[0]["conn"], 0,
        "[{test}] the first connection closed is not the oldest idle one: {v}"
    );
    assert_eq!(
        events.len(),
        1,
        "[{test}] more idle connections were closed than one new client needs: {v}"
    );
    let still = v["still"].as_array().expect("still");
    assert_eq!(still.len(), 2, "{v}");
    for s in still {
        assert_eq!(
            s["status"],
            200,
            "[{test}] a remaining connection fails: {v}\n{}",
            lab.node_logs(30)
        );
        assert_eq!(s["sha256"], want.as_str(), "{v}");
    }
    assert!(
        wait_for_log(
            &lab,
            "connection pool full: oldest idle keep-alive connections closed",
            1,
            Duration::from_secs(5)
        ),
        "[{test}] no eviction warning\n{}",
        lab.node_logs(30)
    );
    if kill_primary {
        // The owner node's shadows: the 47 left, not the evicted one.
        let l = logs(&lab);
        let line = l
            .lines()
            .find(|l| l.contains("takeover: shadow connections promoted"))
            .unwrap_or("");
        assert!(
            line.contains("connections=47"),
            "[{test}] the owner node did not hold exactly the 47 connections left: {line}"
        );
    } else {
        assert_no_takeover(&lab);
    }
    report(&format!(
        "[{test}] pool of 48 full of idle keep-alive connections: the new client served in \
         {:.3} s (curl: {curl}); {} connection closed (FIN), the oldest",
        v["took"].as_f64().unwrap_or(f64::NAN),
        events.len()
    ));
}

#[test]
fn idle_keepalive_evicted_for_a_new_client_duplex() {
    idle_eviction(false);
}

#[test]
fn idle_keepalive_eviction_then_primary_crash() {
    idle_eviction(true);
}
