//! A flood of ACKs for connections nobody holds (hping3 from the client,
//! 20,000 a second for 4 s, random source ports): the owner drops them —
//! its primary never took the address over, so it holds no connection the
//! owner does not know — instead of forwarding each over the link to draw
//! an RST there. The client's capture shows no RST from the service
//! address; a legitimate client is served throughout.

use std::time::{Duration, Instant};

use hotpair_netns_tests::failover::{self, Capture};
use hotpair_netns_tests::{report, TempDir, SERVICE};

#[test]
fn a_flood_of_acks_for_unknown_connections_draws_no_rst_and_harms_no_client() {
    let test = "ack_flood";
    let Some(lab) = failover::duplex_lab(test) else {
        return;
    };
    let tmp = TempDir::new(&format!("{test}-cap"));
    let cap = Capture::start(&lab, tmp.path());
    let flood = lab.spawn_in(
        "client",
        &[
            "timeout", "8", "hping3", "-q", "-A", "-p", "80", "-i", "u50", "-c", "80000", SERVICE,
        ],
        tmp.path(),
        "hping-ack",
    );
    let until = Instant::now() + Duration::from_secs(4);
    let mut served = Vec::new();
    while Instant::now() < until {
        let (code, secs) = lab.timed_get("/static/index.html", 5);
        served.push((code, secs));
        std::thread::sleep(Duration::from_millis(200));
    }
    let hp = flood.wait(Duration::from_secs(20));
    let r = cap.stop();
    let slowest = served.iter().map(|s| s.1).fold(0.0, f64::max);
    assert!(
        served.iter().all(|s| s.0 == 200 && s.1 < 2.0),
        "[{test}] a legitimate request failed or was slow during the flood: {served:?}"
    );
    // The legitimate requests' own segments; none of the flood's drew one.
    assert!(
        r.rsts.is_empty(),
        "[{test}] {} RST(s) from {SERVICE} during the ACK flood, e.g. {:?}\nhping3: {}",
        r.rsts.len(),
        r.rsts.iter().take(3).collect::<Vec<_>>(),
        String::from_utf8_lossy(&hp.stderr)
    );
    report(&format!(
        "[{test}] 80,000 ACKs for unknown connections at 20,000/s: 0 RST; {} legitimate \
         requests all 200, slowest {:.0} ms",
        served.len(),
        slowest * 1000.0
    ));
}
