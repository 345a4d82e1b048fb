//! What a monitoring system, a load balancer or a keepalived-style check
//! script sees of a duplex lab (n1 primary, n2 owner) through a kill and a
//! restart: `hotpair status --check`'s exit codes, `/healthz` and
//! `/readyz` on the metrics listener (`10.77.0.<i>:9464` in each node's
//! namespace, reached from the client's), SIGHUP not killing a node, a
//! closed stdout not panicking the CLI, and a metrics address that cannot
//! be bound not stopping a node.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use hotpair_netns_tests::failover::{duplex_lab, DuplexLab};
use hotpair_netns_tests::{
    describe, hotpair_bin, report, run_with_timeout, sha256_file, status_node, url, Lab, TempDir,
};

fn socket(lab: &Lab, node: &str) -> PathBuf {
    lab.state_dir().join(format!("{node}.sock"))
}

/// `hotpair status --check --socket …` of `node`: its exit code and line.
fn check(lab: &Lab, node: &str) -> (i32, String, Output) {
    let mut cmd = Command::new(hotpair_bin());
    cmd.args(["status", "--check", "--socket"])
        .arg(socket(lab, node));
    let out = run_with_timeout(&mut cmd, Duration::from_secs(20));
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("status --check of {node} died\n{}", describe(&out)));
    let line = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
    // One line, always, saying why.
    assert_eq!(
        line.lines().count(),
        1,
        "[{}] status --check of {node} printed not one line\n{}",
        lab.test,
        describe(&out)
    );
    (code, line, out)
}

/// Waits up to `secs` for `node`'s `status --check` to exit `want`.
fn wait_check(lab: &Lab, node: &str, want: i32, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, line, out) = check(lab, node);
        if code == want {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] status --check of {node}: exit {code}, not {want}, after {secs} s\n{}",
            lab.test,
            describe(&out)
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// `GET path` on node `i`'s metrics listener from the client: code, body.
fn http(lab: &Lab, i: u32, path: &str) -> (u16, String) {
    lab.metrics_get(i, path)
}

#[track_caller]
fn assert_http(lab: &Lab, i: u32, path: &str, want: u16, says: &str) {
    let (code, body) = http(lab, i, path);
    assert!(
        code == want && body.contains(says),
        "[{}] n{i}{path}: {code} {body:?}, wanted {want} saying {says:?}",
        lab.test
    );
}

/// Node `name`'s entry in `lab status --json`.
fn node_entry(lab: &Lab, name: &str) -> serde_json::Value {
    status_node(&lab.status_json(), name)
        .cloned()
        .unwrap_or_else(|| panic!("[{}] no node {name} in lab status", lab.test))
}

fn node_log(lab: &Lab, name: &str) -> String {
    let n = node_entry(lab, name);
    let path = n["log"].as_str().expect("a log path");
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Runs `hotpair ARGS` with stdout a pipe whose reader is already gone,
/// so that its first write fails with EPIPE (deterministically, unlike
/// `| head`, where the reader may still be there).
fn with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let child = Command::new(hotpair_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("running hotpair");
    child.wait_with_output().expect("waiting for hotpair")
}

fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

#[test]
fn check_and_health_endpoints_follow_a_kill_and_a_restart() {
    let test = "ops_health";
    let Some(lab): Option<DuplexLab> = duplex_lab(test) else {
        return;
    };

    // Replicated: 0 on both, and both ready and alive.
    for node in ["n1", "n2"] {
        let line = wait_check(&lab, node, 0, 15);
        assert!(
            line.starts_with("OK: ") && line.contains("10.77.0.10 replicated"),
            "[{test}] {node}: {line}"
        );
    }
    for i in [1, 2] {
        assert_http(&lab, i, "/readyz", 200, "10.77.0.10 replicated");
        assert_http(&lab, i, "/healthz", 200, "alive");
        let (code, m) = http(&lab, i, "/metrics");
        assert!(
            code == 200 && m.contains("hotpair_build_info{version=\""),
            "[{test}] n{i} /metrics has no build_info"
        );
    }

    // A reader that went away: quiet, with the command's own exit status
    // (it was 101, a panic, for `hotpair status --json | head -n 2`).
    let sock = socket(&lab, "n2");
    let sock = sock.to_str().expect("a UTF-8 path");
    for (args, want) in [
        (vec!["status", "--json", "--socket", sock], 0),
        (vec!["status", "--socket", sock], 0),
        (vec!["status", "--check", "--socket", sock], 0),
        (vec!["lab", "status", "--prefix", &lab.prefix], 0),
        (vec!["lab", "status", "--json", "--prefix", &lab.prefix], 0),
    ] {
        let out = with_closed_stdout(&args);
        assert!(
            out.status.code() == Some(want)
                && !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "[{test}] hotpair {args:?} with stdout closed\n{}",
            describe(&out)
        );
    }

    // SIGHUP to both nodes mid-download: nobody dies, nothing is taken
    // over, the download is byte-exact, and each node says it reloaded
    // (the same config: nothing changed; reload.rs changes content).
    let tmp = TempDir::new(&format!("{test}-dl"));
    let src = lab.docroot().join("50m.bin");
    let dl = tmp.path().join("download.bin");
    let curl = lab.curl_download(&url("/static/50m.bin"), "20M", &dl, &[], tmp.path(), "curl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while file_len(&dl) < 10 << 20 {
        assert!(
            Instant::now() < deadline,
            "[{test}] the download did not reach 10 MB within 20 s"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let pids: Vec<(&str, u64)> = ["n1", "n2"]
        .into_iter()
        .map(|n| (n, node_entry(&lab, n)["pid"].as_u64().expect("a pid")))
        .collect();
    for (node, pid) in &pids {
        let out = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .output()
            .expect("running kill");
        assert!(out.status.success(), "[{test}] kill -HUP {node}");
    }
    let out = curl.wait(Duration::from_secs(60));
    assert!(
        out.status.success(),
        "[{test}] curl failed across SIGHUP\n{}",
        describe(&out)
    );
    assert_eq!(
        sha256_file(&dl),
        sha256_file(&src),
        "[{test}] the download across SIGHUP is not byte-exact"
    );
    for (node, pid) in &pids {
        assert!(lab.node_alive(node), "[{test}] {node} died of SIGHUP");
        assert_eq!(
            node_entry(&lab, node)["pid"].as_u64(),
            Some(*pid),
            "[{test}] {node} was restarted"
        );
        let log = node_log(&lab, node);
        assert!(
            log.contains("SIGHUP: reloading") && log.contains("reloaded"),
            "[{test}] {node} did not log the SIGHUP:\n{log}"
        );
        // Still replicated: no takeover, no link loss.
        let line = wait_check(&lab, node, 0, 5);
        assert!(line.contains("replicated"), "[{test}] {node}: {line}");
    }

    // The primary killed: the survivor serves alone (1), the dead node
    // is unreachable (2); the survivor stays ready and alive.
    lab.kill("n1");
    let line = wait_check(&lab, "n2", 1, 15);
    assert!(
        line.starts_with("DEGRADED: ") && line.contains("10.77.0.10 promoted"),
        "[{test}] n2 after the kill: {line}"
    );
    let (code, line, out) = check(&lab, "n1");
    assert!(
        code == 2 && line.starts_with("DOWN: ") && line.contains("unreachable"),
        "[{test}] the killed n1\n{}",
        describe(&out)
    );
    assert_http(&lab, 2, "/readyz", 200, "10.77.0.10 promoted");
    assert_http(&lab, 2, "/healthz", 200, "alive");
    // And it still serves.
    assert!(!lab.get("/static/index.html").is_empty());

    // n1 back, with a metrics address it cannot bind (not on its host):
    // it warns and runs on without metrics, and rejoins; both 0 again.
    let cfg = PathBuf::from(
        node_entry(&lab, "n1")["config"]
            .as_str()
            .expect("a config path"),
    );
    let text = std::fs::read_to_string(&cfg).expect("n1's config");
    let good = "metrics = \"10.77.0.1:9464\"";
    assert!(text.contains(good), "[{test}] n1's config:\n{text}");
    std::fs::write(&cfg, text.replace(good, "metrics = \"192.0.2.1:9464\"")).unwrap();
    let out = lab.lab(&["restart", "n1"], Duration::from_secs(90));
    assert!(
        out.status.success(),
        "[{test}] lab restart n1\n{}",
        describe(&out)
    );
    for node in ["n1", "n2"] {
        let line = wait_check(&lab, node, 0, 20);
        assert!(line.contains("replicated"), "[{test}] {node}: {line}");
    }
    assert!(lab.node_alive("n1"), "[{test}] n1 exited");
    let log = node_log(&lab, "n1");
    assert!(
        log.contains("metrics: cannot listen") && log.contains("192.0.2.1:9464"),
        "[{test}] n1 did not warn about its metrics address:\n{log}"
    );
    assert_http(&lab, 2, "/readyz", 200, "10.77.0.10 replicated");
    assert!(!lab.get("/static/index.html").is_empty());
    report(&format!(
        "[{test}] n2 after n1 rejoined: {}",
        check(&lab, "n2").1
    ));
}
