//! Keep-alive load with wrk: 32 connections, 2 threads, 10 s per file; no
//! socket errors and only 2xx/3xx replies.

use std::time::Duration;

use hotpair_netns_tests::wrk::parse_wrk;
use hotpair_netns_tests::{describe, url, Lab};

fn wrk(lab: &Lab, path: &str) {
    let u = url(path);
    let out = lab.exec_in(
        "client",
        &["wrk", "-c32", "-t2", "-d10s", "--timeout", "5s", &u],
        Duration::from_secs(45),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("[wrk_load] wrk {path}:\n{text}");
    assert!(
        out.status.success(),
        "wrk {path} failed\n{}",
        describe(&out)
    );
    let r = parse_wrk(&text);
    assert!(r.requests > 0, "wrk {path}: no requests completed\n{text}");
    assert_eq!(
        (r.connect, r.read, r.write, r.timeout),
        (0, 0, 0, 0),
        "wrk {path}: socket errors (connect, read, write, timeout)\n{text}"
    );
    assert_eq!(r.non_2xx, 0, "wrk {path}: non-2xx/3xx replies\n{text}");
    eprintln!(
        "[wrk_load] {path}: {} requests, {:.0} req/s",
        r.requests, r.requests_per_sec
    );
}

#[test]
fn wrk_keepalive_load_has_no_errors() {
    let Some(lab) = Lab::up("wrk_load") else {
        return;
    };
    // One after the other: two cores, bounded load.
    wrk(&lab, "/static/5k.bin");
    wrk(&lab, "/static/1k.bin");
    // The node still serves normally afterwards.
    let body = lab.get("/static/index.html");
    assert!(!body.is_empty());
}
