//! Keep-alive load with wrk: 32 connections, 2 threads, 10 s per file; no
//! socket errors and only 2xx/3xx replies.

use std::time::Duration;

use hotpair_netns_tests::{describe, url, Lab};

/// What matters in wrk's report.
#[derive(Debug, Default)]
struct WrkReport {
    requests: u64,
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
    non_2xx: u64,
    requests_per_sec: f64,
}

fn parse_wrk(text: &str) -> WrkReport {
    let mut r = WrkReport::default();
    for line in text.lines().map(str::trim) {
        if let Some(n) = line
            .split(" requests in ")
            .next()
            .filter(|_| line.contains(" requests in "))
        {
            r.requests = n.trim().parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in rest.split(',') {
                let mut it = part.split_whitespace();
                let (Some(k), Some(v)) = (it.next(), it.next()) else {
                    continue;
                };
                let v: u64 = v.parse().unwrap_or(u64::MAX);
                match k {
                    "connect" => r.connect = v,
                    "read" => r.read = v,
                    "write" => r.write = v,
                    "timeout" => r.timeout = v,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = rest.trim().parse().unwrap_or(u64::MAX);
        } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
            r.requests_per_sec = rest.trim().parse().unwrap_or(0.0);
        }
    }
    r
}

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

#[test]
fn parses_wrk_output() {
    let sample = "Running 10s test @ http://10.77.0.10/static/5k.bin
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.00ms  200.00us   5.00ms   90.00%
    Req/Sec    10.00k     1.00k   12.00k    70.00%
  199000 requests in 10.00s, 1.00GB read
  Socket errors: connect 0, read 3, write 0, timeout 7
  Non-2xx or 3xx responses: 12
Requests/sec:  19900.00
Transfer/sec:    100.00MB
";
    let r = parse_wrk(sample);
    assert_eq!(r.requests, 199_000);
    assert_eq!((r.connect, r.read, r.write, r.timeout), (0, 3, 0, 7));
    assert_eq!(r.non_2xx, 12);
    assert!((r.requests_per_sec - 19900.0).abs() < 0.1);
}
