//! The access log (`[log] access`): one line per request the node answered,
//! whoever made the reply — a `files` route (answered inside the node core),
//! an `upstream` route (the shell's proxy, with the request id) — as JSON,
//! with the client's address, the route and the status.

use std::time::Duration;

use hotpair_netns_tests::{assert_success, report, url, Lab};
use serde_json::Value;

#[test]
fn every_request_gets_one_line_whoever_answered_it() {
    let Some(lab) = Lab::up_with("access_log", &[]) else {
        return;
    };
    let test = lab.test.clone();
    let log = lab.state_dir().join("access.log");
    let cfg = lab.state_dir().join("n1.toml");
    let mut text = std::fs::read_to_string(&cfg).expect("reading n1.toml");
    text.push_str(&format!(
        "\n[log]\naccess = \"{}\"\naccess_format = \"json\"\n",
        log.display()
    ));
    std::fs::write(&cfg, text).expect("writing n1.toml");
    let out = lab.lab(&["restart", "n1"], Duration::from_secs(60));
    assert_success(&out, "lab restart n1 (with an access log)");

    let asked = [
        ("/static/index.html", 200, "/static/"),
        ("/app/hello", 200, "/app/"),
        ("/static/no-such-file", 404, "/static/"),
    ];
    for (path, want, _) in asked {
        let out = lab.exec_client(&[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "-w",
            "%{http_code}",
            &url(path),
        ]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want.to_string(),
            "[{test}] GET {path}"
        );
    }
    // Written by a thread of its own: give it a moment.
    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("[{test}] not JSON ({e}): {l}"))
            })
            .collect();
        if lines.len() >= asked.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lines.len(), asked.len(), "[{test}] {lines:?}");
    for ((path, want, route), line) in asked.iter().zip(&lines) {
        assert_eq!(line["target"], *path, "[{test}] {line}");
        assert_eq!(line["status"], *want, "[{test}] {line}");
        assert_eq!(line["route"], *route, "[{test}] {line}");
        assert!(
            line["client"]
                .as_str()
                .is_some_and(|c| c.starts_with("10.77.0.100:")),
            "[{test}] {line}"
        );
        // Only the application's requests carry the replication id.
        assert_eq!(
            line["request_id"].is_string(),
            *route == "/app/",
            "[{test}] {line}"
        );
    }
    report(&format!(
        "[{test}] {} requests, {} access-log lines (files answered by the core, /app/ by the proxy)",
        asked.len(),
        lines.len()
    ));
}
