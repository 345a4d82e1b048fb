//! Cold start with one node: both nodes of a duplex pair go down (a power
//! cut) and only one comes back. After its cold-start wait it serves the
//! address alone — the owner announces and serves, the primary probes and
//! claims — and when its peer returns the pair rejoins and is replicated
//! again: a download started then survives a SIGKILL of the node that came
//! back first, byte-exact, with no RST.

use std::time::{Duration, Instant};

use hotpair_netns_tests::failover::{self, KillAt, Victim};
use hotpair_netns_tests::{assert_success, report};

fn alone_then_rejoin(test: &str, lone: Victim) {
    let Some(lab) = failover::duplex_lab(test) else {
        return;
    };
    let other = lone.survivor();
    // The power cut: both nodes down.
    lab.kill(lone.node());
    lab.kill(other);
    let started = Instant::now();
    let out = lab.lab(&["restart", lone.node()], Duration::from_secs(60));
    assert_success(&out, &format!("[{test}] lab restart {} alone", lone.node()));
    // It serves within its cold-start wait (2 s) plus the takeover's probes.
    let first = loop {
        if lab.timed_get("/static/index.html", 1).0 == 200 {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "[{test}] {} ({}) alone served nothing within 15 s of its start\n{}",
            lone.node(),
            lone.role(),
            lab.node_logs(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Served at once after the claim: the wait, the probes and the node's
    // start, not seconds more (the LAN check once swallowed the client's
    // answers to the stack's ARP requests in the lab, where the client is
    // the check's target: 7.3 s).
    assert!(
        first < Duration::from_secs(6),
        "[{test}] {} ({}) alone served its first request {} ms after its start\n{}",
        lone.node(),
        lone.role(),
        first.as_millis(),
        lab.node_logs(40)
    );
    // And keeps serving: 20 requests, every one answered.
    let served = (0..20)
        .filter(|_| lab.timed_get("/static/index.html", 1).0 == 200)
        .count();
    assert_eq!(served, 20, "[{test}] the lone node failed requests");
    let logs = lab.node_logs(200);
    assert!(
        logs.contains("no peer since the start: serving the address alone"),
        "[{test}] the lone node did not say it serves alone\n{logs}"
    );
    // The peer comes back: `lab restart` returns once the link is up.
    let out = lab.lab(&["restart", other], Duration::from_secs(60));
    assert_success(&out, &format!("[{test}] lab restart {other}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab
        .node_logs(400)
        .contains("rejoined: configured role taken back")
    {
        assert!(
            Instant::now() < deadline,
            "[{test}] no rejoin after {other} came back\n{}",
            lab.node_logs(60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The address was never taken from under the node serving it: still
    // answered, every time. (A new connection whose SYN still reaches the
    // node that served alone, its MAC in the client's ARP cache, waits for
    // the client's SYN retransmission — a second — once the owner took its
    // address back: the slowest is reported.)
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        let (code, took) = lab.timed_get("/static/index.html", 5);
        assert_eq!(code, 200, "[{test}] request {i} after the rejoin failed");
        slowest = slowest.max(Duration::from_secs_f64(took));
    }
    // Replicated again: a download survives the lone node's SIGKILL.
    let o = failover::download_with_kill(
        &lab,
        lone,
        KillAt::Bytes(10 << 20),
        true,
        "a download after the rejoin, the node that started alone killed",
    );
    report(&format!(
        "[{test}] {} ({}) started alone: first request served {} ms after its start; \
         {other} rejoined (slowest new request then {} ms); a download then survived the kill of {} ({} ms stall), 0 RST",
        lone.node(),
        lone.role(),
        first.as_millis(),
        slowest.as_millis(),
        lone.node(),
        o.stall.after_kill.as_millis(),
    ));
}

#[test]
fn a_primary_started_alone_claims_and_serves_then_its_owner_rejoins() {
    alone_then_rejoin("cold_primary", Victim::Primary);
}

#[test]
fn an_owner_started_alone_serves_then_its_primary_rejoins() {
    alone_then_rejoin("cold_owner", Victim::Owner);
}
