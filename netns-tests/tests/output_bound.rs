//! A client that pipelines requests for large dynamic replies and never
//! reads (a 4 KB receive buffer): each node holds at most the connection's
//! output bound (`[http] max_output_bytes`, 4 MiB) plus a reply for it —
//! `max_pipelined` counts replies made and not yet written, and no request
//! goes to a handler while the bound is reached — so neither node grows
//! (it grew by 1.3 GB in 20 s before), other clients are served meanwhile,
//! and after `send_timeout` with none of its output taken the connection
//! is cut off.

use std::time::{Duration, Instant};

use hotpair_netns_tests::failover::{self, duplex_args};
use hotpair_netns_tests::{assert_success, describe, report, rss, Lab, SERVICE};

/// Pipelines `N` requests for `SIZE`-byte generated replies from a socket
/// with a 4 KB receive buffer, reads nothing for `HOLD` seconds, then says
/// (JSON) how many requests it sent and whether (and when) the server cut
/// the connection off.
const PIPELINER: &str = r#"
import json, socket, sys, time
host, n, size, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((host, 80))
req = ("GET /non-deterministic/?size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % size).encode()
data = req * n
s.setblocking(False)
start = time.time()
sent, reset_after = 0, None
while time.time() - start < hold:
    try:
        if sent < len(data):
            sent += s.send(data[sent:])
    except BlockingIOError:
        pass
    except (ConnectionResetError, BrokenPipeError):
        reset_after = time.time() - start
        break
    # Whether the server cut us off, without reading: the connection's
    # state (TCP_INFO's first byte; 7 is TCP_CLOSE, after an RST).
    if s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 7:
        reset_after = time.time() - start
        break
    time.sleep(0.05)
print(json.dumps({"requests_sent": sent // len(req), "reset_after": reset_after}))
"#;

fn node_pids(lab: &Lab) -> Vec<(String, u64)> {
    let st = lab.status_json();
    st["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("?").to_owned(),
                n["pid"].as_u64().expect("a running node has a pid"),
            )
        })
        .collect()
}

#[test]
fn a_pipelining_client_that_never_reads_is_bounded_and_cut_off_after_the_send_timeout() {
    let test = "out_bound";
    const SEND_TIMEOUT_S: u64 = 15;
    const HOLD_S: u64 = 30;
    let send_timeout = (SEND_TIMEOUT_S * 1000).to_string();
    let mut args = duplex_args();
    args.extend(["--http-send-timeout-ms".into(), send_timeout]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _serial = failover::serial();
    let Some(lab) = Lab::up_with(test, &args) else {
        return;
    };
    let pids = node_pids(&lab);
    let before: Vec<u64> = pids.iter().map(|(_, p)| rss(*p)).collect();
    let client = std::thread::scope(|s| {
        let client = s.spawn(|| {
            lab.python(
                PIPELINER,
                &[SERVICE, "300", "2000000", &HOLD_S.to_string()],
                Duration::from_secs(HOLD_S + 30),
            )
        });
        // Meanwhile: other clients, and the nodes' memory, until just
        // before the send timeout.
        let mut peak = before.clone();
        let mut others = Vec::new();
        let until = Instant::now() + Duration::from_secs(SEND_TIMEOUT_S - 3);
        while Instant::now() < until {
            others.push(lab.timed_get("/static/index.html", 10));
            for (i, (_, pid)) in pids.iter().enumerate() {
                peak[i] = peak[i].max(rss(*pid));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        (client.join().expect("client thread"), peak, others)
    });
    let (out, peak, others) = client;
    assert_success(&out, &format!("[{test}] pipelining client"));
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("[{test}] client printed no JSON ({e})\n{}", describe(&out)));
    let mut growth = Vec::new();
    for (i, (name, _)) in pids.iter().enumerate() {
        let g = peak[i].saturating_sub(before[i]);
        growth.push(format!("{name} +{:.1} MB", g as f64 / 1e6));
        assert!(
            g <= 64 << 20,
            "[{test}] {name} grew by {:.1} MB under a client that does not read (bound 64 MB)",
            g as f64 / 1e6
        );
    }
    let worst = others.iter().map(|o| o.1).fold(0.0, f64::max);
    for (i, (code, secs)) in others.iter().enumerate() {
        assert_eq!(
            *code, 200,
            "[{test}] other client's request {i} failed: {others:?}"
        );
        assert!(
            *secs < 2.0,
            "[{test}] other client's request {i} took {secs} s"
        );
    }
    let reset_after = v["reset_after"].as_f64().unwrap_or_else(|| {
        panic!(
            "[{test}] the connection was not cut off within {HOLD_S} s (send timeout {SEND_TIMEOUT_S} s): {v}\n{}",
            lab.node_logs(30)
        )
    });
    assert!(
        reset_after >= (SEND_TIMEOUT_S as f64) - 1.0,
        "[{test}] cut off after {reset_after:.1} s, before the send timeout ({SEND_TIMEOUT_S} s)"
    );
    report(&format!(
        "[{test}] 300 pipelined 2 MB requests, client reads nothing ({} sent): RSS {}; \
         {} other requests meanwhile, all 200, slowest {:.0} ms; cut off after {reset_after:.1} s \
         (send timeout {SEND_TIMEOUT_S} s)",
        v["requests_sent"],
        growth.join(", "),
        others.len(),
        worst * 1000.0
    ));
}
