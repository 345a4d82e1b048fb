//! The link listener under a faster attacker (issue 17, item 7): a host on
//! the LAN opens silent TCP connections to the primary's link port faster
//! than the listener's handshake slots free up (each silent connection
//! would hold a slot for the whole handshake timeout), while the real peer
//! is restarted. The real peer must still pair, and soon: handshake slots
//! are bounded per source address, so one host cannot hold them all. The
//! rejoin time under the flood is reported.

use std::thread;
use std::time::{Duration, Instant};

use hotpair_netns_tests::{assert_success, describe, report, Lab, TempDir};

/// Silent connections per second: 16 slots held 3 s each are all held
/// from ~5.3/s on; this is five times that.
const RATE: u32 = 25;
/// How long the flood lasts, and how long each connection is held (then
/// closed by the attacker). At most RATE × FLOOD_SECS connections in all,
/// RATE × HOLD_SECS open at once.
const FLOOD_SECS: u32 = 20;
const HOLD_SECS: u32 = 5;

/// Non-blocking connects (a full accept queue must not stall the pace),
/// each held silent for `hold` seconds, then closed. Prints `started` once
/// going, and a summary line at the end.
const FLOOD: &str = r#"
import socket, sys, time, errno
host, port, rate, secs, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
open_ = []
made = 0
start = time.monotonic()
print("started", flush=True)
while time.monotonic() - start < secs:
    now = time.monotonic()
    while open_ and now - open_[0][0] >= hold:
        open_.pop(0)[1].close()
    s = socket.socket()
    s.setblocking(False)
    e = s.connect_ex((host, port))
    if e in (0, errno.EINPROGRESS):
        open_.append((now, s))
        made += 1
    else:
        s.close()
    time.sleep(max(0.0, start + made / rate - time.monotonic()) if made else 1.0 / rate)
for _, s in open_:
    s.close()
print("made %d connections in %.1f s" % (made, time.monotonic() - start), flush=True)
"#;

#[test]
fn the_real_peer_rejoins_while_silent_connections_flood_the_link_port() {
    let _serial = hotpair_netns_tests::failover::serial();
    let Some(lab) = Lab::up_with("link_flood", &["--mode", "duplex"]) else {
        return;
    };
    let tmp = TempDir::new("link-flood");
    // n1 (primary) listens for its peer on 10.77.0.1:7700; n2 connects.
    let _ = lab.kill("n2");
    thread::sleep(Duration::from_millis(500));
    let (rate, secs, hold) = (
        RATE.to_string(),
        FLOOD_SECS.to_string(),
        HOLD_SECS.to_string(),
    );
    let flood = lab.spawn_in(
        "client",
        &[
            "python3",
            "-c",
            FLOOD,
            "10.77.0.1",
            "7700",
            &rate,
            &secs,
            &hold,
        ],
        tmp.path(),
        "flood",
    );
    let t = Instant::now();
    while !flood.stdout_text().contains("started") {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the flood did not start: {}",
            flood.stderr_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
    // Long enough for every slot to be held (16 in 0.64 s at this rate)
    // and for the accept queue to fill behind them.
    thread::sleep(Duration::from_secs(3));
    let flood_started = t;
    let restart = Instant::now();
    let out = lab.lab(&["restart", "n2"], Duration::from_secs(60));
    assert_success(&out, "lab restart n2 under the link-port flood");
    // Rejoined: both nodes say their link is up (asked on their admin
    // sockets, as `hotpair status` does).
    let linked = |node: &str| {
        hotpair::admin::query(&lab.state_dir().join(format!("{node}.sock")))
            .is_ok_and(|st| !st.peers.is_empty() && st.peers.iter().all(|p| p.link_up))
    };
    while !(linked("n1") && linked("n2")) {
        assert!(
            restart.elapsed() < Duration::from_secs(40),
            "the real peer did not rejoin within 40 s of its restart under the flood\n{}",
            lab.node_logs(40)
        );
        thread::sleep(Duration::from_millis(20));
    }
    let rejoin = restart.elapsed();
    let flooding = flood_started.elapsed() < Duration::from_secs(u64::from(FLOOD_SECS));
    let said = flood.wait(Duration::from_secs(u64::from(FLOOD_SECS) + 30));
    let said_text = String::from_utf8_lossy(&said.stdout).into_owned();
    report(&format!(
        "link flood: {RATE} silent connections/s from one host on the link port \
         (each held {HOLD_SECS} s): the restarted peer rejoined in {:.2} s \
         ({}); {}",
        rejoin.as_secs_f64(),
        if flooding {
            "while the flood ran"
        } else {
            "after the flood ended"
        },
        said_text.trim().lines().last().unwrap_or("")
    ));
    assert!(
        flooding,
        "the rejoin took {rejoin:?}: the flood had ended, so it says nothing\n{}",
        describe(&said)
    );
    assert!(
        rejoin < Duration::from_secs(3),
        "the real peer took {rejoin:?} to rejoin under the flood"
    );
    // Each connection was accepted and then closed by the primary (refused
    // for its source's bound, or timed out silent): the flood was real.
    let made: u32 = said_text
        .lines()
        .find_map(|l| l.strip_prefix("made "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        made >= RATE * FLOOD_SECS / 2,
        "the flood made only {made} connections\n{}",
        describe(&said)
    );
    assert_eq!(lab.get("/static/1k.bin").len(), 1024);
    assert!(lab.node_alive("n1") && lab.node_alive("n2"));
}
