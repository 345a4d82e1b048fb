//! Preemption control in a duplex lab (n1 primary, n2 owner): n1 SIGKILLed
//! and restarted again and again. The first restarts rejoin at once; the
//! fourth start within a minute without a clean stop (`lab up`'s, then
//! three restarts) counts as a crash loop — n1 logs it at warn and opens its link only after
//! `CRASH_LOOP_DELAY` (20 s), n2 serving alone (`promoted`) meanwhile —
//! and then rejoins.

use std::time::{Duration, Instant};

use hotpair_netns_tests::{assert_success, report, status_node, Lab};

fn n1_log(lab: &Lab) -> String {
    let st = lab.status_json();
    let path = status_node(&st, "n1")
        .and_then(|n| n["log"].as_str().map(str::to_owned))
        .expect("n1's log");
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

#[test]
fn a_crash_looping_node_waits_before_it_rejoins() {
    let test = "crash_loop";
    let Some(lab) = Lab::up_with(test, &["--mode", "duplex"]) else {
        return;
    };
    let mut took = Vec::new();
    for round in 1..=3 {
        lab.kill("n1");
        let t = Instant::now();
        let out = lab.lab(&["restart", "n1"], Duration::from_secs(60));
        assert_success(&out, &format!("[{test}] lab restart n1 (round {round})"));
        took.push(t.elapsed());
        if round < 3 {
            assert!(
                !n1_log(&lab).contains("crash loop"),
                "[{test}] round {round}: a crash loop already\n{}",
                n1_log(&lab)
            );
        }
    }
    let log = n1_log(&lab);
    assert!(
        log.contains("WARN") && log.contains("crash loop: this node started 4 times"),
        "[{test}] no crash-loop warning\n{log}"
    );
    assert!(
        took[..2].iter().all(|d| *d < Duration::from_secs(10)),
        "[{test}] restarts before the loop: {took:?}"
    );
    assert!(
        took[2] >= Duration::from_secs(19),
        "[{test}] the fourth start rejoined after {:?}, not after the 20 s delay",
        took[2]
    );
    // Rejoined: served again, and both replicated.
    assert!(!lab.get("/static/index.html").is_empty());
    report(&format!(
        "[{test}] lab restart n1 took {:?} (the last: the fourth start, a crash loop, link delayed)",
        took.iter()
            .map(|d| format!("{:.1} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
    ));
}
