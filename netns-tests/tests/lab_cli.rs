//! The `hotpair lab` command line: status, re-up, exec, kill, down.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hotpair_netns_tests::{assert_success, describe, hotpair_bin, run_with_timeout, url, Lab};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn node(status: &Value) -> &Value {
    let nodes = status["nodes"].as_array().expect("nodes list");
    assert_eq!(nodes.len(), 1, "simplex has one node: {status}");
    &nodes[0]
}

fn pid_alive(pid: u64) -> bool {
    // A zombie counts as dead.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn has_address(status: &Value, ns: &str, addr: &str) -> bool {
    hotpair_netns_tests::ns_addresses(status, ns).any(|a| a["address"] == addr)
}

#[test]
fn status_reup_exec_kill_down() {
    let Some(lab) = Lab::up("lab_cli") else {
        return;
    };
    let p = lab.prefix.clone();

    // status --json
    let st = lab.status_json();
    assert_eq!(st["up"], true, "{st}");
    assert_eq!(st["mode"], "simplex", "{st}");
    assert_eq!(st["service"]["address"], "10.77.0.10", "{st}");
    for ns in ["client", "sw", "n1"] {
        let name = format!("{p}-{ns}");
        let entry = st["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} missing from status: {st}"));
        assert_eq!(entry["exists"], true, "{st}");
        assert!(
            Path::new("/run/netns").join(&name).exists(),
            "{name} not in /run/netns"
        );
    }
    assert!(
        has_address(&st, &format!("{p}-client"), "10.77.0.100/24"),
        "{st}"
    );
    assert!(has_address(&st, &format!("{p}-n1"), "10.77.0.1/24"), "{st}");
    let n1 = node(&st);
    assert_eq!(n1["name"], "n1");
    assert_eq!(n1["alive"], true, "{st}");
    assert_eq!(n1["role"], "simplex", "{st}");
    assert_eq!(n1["mac"], "02:68:70:00:00:01", "{st}");
    let pid1 = n1["pid"].as_u64().expect("node pid");
    assert!(pid_alive(pid1), "node pid {pid1} not running");
    assert_eq!(n1["upstream"]["alive"], true, "{st}");

    // human-readable status works too
    let out = lab.lab(&["status"], T);
    assert_success(&out, "lab status");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{p}-n1")));

    // exec: stdio and exit code pass through
    let out = lab.exec_in("client", &["sh", "-c", "echo hi; exit 7"], T);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let out = lab.exec_in(
        "client",
        &["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
        T,
    );
    assert_success(&out, "lab exec client ip addr");
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.77.0.100/24"));
    let out = lab.exec_in("nosuch", &["true"], T);
    assert!(
        !out.status.success(),
        "exec in an unknown namespace must fail"
    );

    // lab up again with the same prefix: cleans the old lab, builds a new one
    let out = lab.lab(&["up"], Duration::from_secs(120));
    assert_success(&out, "second lab up with the same prefix");
    let st = lab.status_json();
    let n1 = node(&st);
    assert_eq!(n1["alive"], true, "{st}");
    let pid2 = n1["pid"].as_u64().expect("node pid");
    assert_ne!(pid1, pid2, "the second lab up must start a new node");
    assert!(
        !pid_alive(pid1),
        "the first node (pid {pid1}) survived the second lab up"
    );
    let body = lab.get("/static/index.html");
    assert!(!body.is_empty());

    // kill n1
    let out = lab.lab(&["kill", "n1"], T);
    assert_success(&out, "lab kill n1");
    let st = lab.status_json();
    let n1 = node(&st);
    assert_eq!(n1["alive"], false, "after lab kill: {st}");
    assert_eq!(n1["killed"], true, "after lab kill: {st}");
    assert!(
        !pid_alive(pid2),
        "node pid {pid2} still running after lab kill"
    );
    let out = lab.exec_client(&[
        "curl",
        "-s",
        "--max-time",
        "2",
        "-o",
        "/dev/null",
        &url("/static/index.html"),
    ]);
    assert!(
        !out.status.success(),
        "the service still answers with its only node dead"
    );

    // down twice
    let out = lab.lab(&["down"], T);
    assert_success(&out, "lab down");
    let out = lab.lab(&["down"], T);
    assert_success(&out, "second lab down");
    for ns in ["client", "sw", "n1"] {
        assert!(
            !Path::new("/run/netns").join(format!("{p}-{ns}")).exists(),
            "{p}-{ns} survived lab down"
        );
    }
    assert!(!Path::new(&format!("/run/hotpair/lab-{p}")).exists());
    let st = lab.status_json();
    assert_eq!(st["up"], false, "{st}");
    assert_eq!(st["namespaces"].as_array().map(Vec::len), Some(0), "{st}");
}

#[test]
fn unsupported_mode_is_refused() {
    // Argument checking only: no namespaces are touched.
    let out = run_with_timeout(
        Command::new(hotpair_bin()).args(["lab", "up", "--prefix", "tnever", "--mode", "triplex"]),
        T,
    );
    assert!(!out.status.success(), "an unknown mode must be refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("triplex"), "unclear error: {err}");
    // A ring needs 3..=8 nodes; --nodes is for the ring only.
    for args in [
        &["--mode", "ring", "--nodes", "2"][..],
        &["--mode", "ring", "--nodes", "9"][..],
        &["--mode", "dual-role", "--nodes", "3"][..],
    ] {
        let out = run_with_timeout(
            Command::new(hotpair_bin())
                .args(["lab", "up", "--prefix", "tnever"])
                .args(args),
            T,
        );
        assert!(!out.status.success(), "{args:?} must be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--nodes"), "unclear error for {args:?}: {err}");
    }
    // Duplex-only options are refused in simplex.
    for extra in [
        ["--repl-net", "dedicated"],
        ["--heartbeat-timeout-ms", "800"],
    ] {
        let out = run_with_timeout(
            Command::new(hotpair_bin())
                .args(["lab", "up", "--prefix", "tnever"])
                .args(extra),
            T,
        );
        assert!(
            !out.status.success(),
            "{extra:?} without --mode duplex must be refused"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--mode duplex"), "unclear error: {err}");
    }
    let out = run_with_timeout(
        Command::new(hotpair_bin()).args([
            "lab",
            "up",
            "--prefix",
            "tnever",
            "--mode",
            "duplex",
            "--heartbeat-timeout-ms",
            "100",
        ]),
        T,
    );
    assert!(
        !out.status.success(),
        "a heartbeat timeout not above the interval must be refused"
    );
    assert!(!Path::new("/run/netns/tnever-client").exists());
}

#[test]
fn help_documents_the_defaults() {
    let out = run_with_timeout(Command::new(hotpair_bin()).args(["lab", "up", "--help"]), T);
    assert_success(&out, "lab up --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--prefix",
        "[default: hp]",
        "--mode",
        "[default: simplex]",
        "--docroot",
        "--app",
        "[default: toy]",
    ] {
        assert!(
            help.contains(needle),
            "`{needle}` missing from lab up --help:\n{help}"
        );
    }
}

/// `hotpair demo [--kill owner]`: the failover demo passes, reports the
/// stall, and leaves nothing behind.
fn demo(kill: &str) {
    if !hotpair_netns_tests::require_root("demo") {
        return;
    }
    // One duplex lab at a time (see `failover::serial`).
    let _serial = hotpair_netns_tests::failover::serial();
    let prefix = hotpair_netns_tests::unique_prefix();
    /// Removes the demo's lab should the demo itself fail to.
    struct Down(String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = Command::new(hotpair_bin())
                .args(["lab", "down", "--prefix", &self.0])
                .output();
        }
    }
    let _down = Down(prefix.clone());
    let out = run_with_timeout(
        Command::new(hotpair_bin()).args(["demo", "--prefix", &prefix, "--kill", kill]),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    hotpair_netns_tests::report(&format!(
        "[demo --kill {kill}] {}",
        stdout
            .lines()
            .filter(|l| l.contains("stall") || l.contains("SIGKILL") || l.contains("PASS"))
            .collect::<Vec<_>>()
            .join("\n[demo] ")
    ));
    assert_success(&out, &format!("hotpair demo --kill {kill}"));
    assert!(
        stdout.contains("PASS"),
        "no PASS in the demo output:\n{}",
        describe(&out)
    );
    assert!(
        stdout.contains("client-visible stall:"),
        "no stall in the demo output:\n{}",
        describe(&out)
    );
    for ns in ["client", "sw", "n1", "n2"] {
        assert!(
            !Path::new("/run/netns")
                .join(format!("{prefix}-{ns}"))
                .exists(),
            "the demo left {prefix}-{ns} behind"
        );
    }
    assert!(!Path::new(&format!("/run/hotpair/lab-{prefix}")).exists());
}

#[test]
fn demo_primary_crash_passes_and_cleans_up() {
    demo("primary");
}

#[test]
fn demo_owner_crash_passes_and_cleans_up() {
    demo("owner");
}

/// A user's own document root serves as it is: no `index.html` needed (the
/// readiness check once wanted a 200 from /static/index.html).
#[test]
fn user_docroot_without_index_html() {
    let dir = hotpair_netns_tests::TempDir::new("docroot");
    std::fs::write(dir.path().join("hello.txt"), "hello from my docroot\n").unwrap();
    let root = dir.path().to_string_lossy().into_owned();
    let Some(lab) = Lab::up_with("lab_docroot", &["--docroot", &root]) else {
        return;
    };
    let out = lab.exec_client(&["curl", "-s", "-f", &url("/static/hello.txt")]);
    assert_success(&out, "curl /static/hello.txt");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from my docroot\n"
    );
}
