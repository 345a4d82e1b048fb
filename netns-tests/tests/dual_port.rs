//! One service address, HTTP on 80 and HTTPS on 443 (issue 18): a duplex
//! `lab up --tls` lab, two curls downloading 50 MB each at once — one over
//! plain HTTP on port 80, one over HTTPS on 443 (`--cacert` the lab CA) —
//! the primary SIGKILLed once both are 20 MB in. Both curls exit 0, both
//! files' SHA-256 match, the client's capture holds no RST from the service
//! address, and the survivor promoted both connections: its shadow of the
//! 443 connection mirrored TLS, of the 80 one plain HTTP.

use std::thread;
use std::time::{Duration, Instant};

use hotpair_netns_tests::failover::{self, Capture, Sampler, Victim};
use hotpair_netns_tests::{describe, report, sha256sum, url, TempDir};

const FILE: &str = "50m.bin";
/// Each download's rate: two at once through a debug-built pair on a
/// small machine.
const RATE: &str = "10M";
const KILL_AT_BYTES: u64 = 20 * 1024 * 1024;

#[test]
fn http_and_https_downloads_on_one_address_survive_primary_crash() {
    let test = "dual_port";
    let victim = Victim::Primary;
    // `logged`: both replies cross the link, and the owner's shadows hold
    // them (the 443 one as TLS records).
    let Some(lab) = failover::duplex_lab_with(test, &["--tls", "--static-policy", "logged"]) else {
        return;
    };
    let ca = lab.tls_ca().expect("lab up --tls writes tls/ca.pem");
    let ca = ca.to_string_lossy().into_owned();
    let tmp = TempDir::new(&format!("{test}-dl"));
    let src = lab.docroot().join(FILE);
    let total = std::fs::metadata(&src).expect("docroot file").len();
    let cap = Capture::start(&lab, tmp.path());

    let http_url = url(&format!("/static/{FILE}"));
    let https_url = lab.service_url(&format!("/static/{FILE}"));
    assert!(
        http_url.starts_with("http://") && https_url.starts_with("https://"),
        "{http_url} {https_url}"
    );
    let start = Instant::now();
    let http_file = tmp.path().join("http.bin");
    let https_file = tmp.path().join("https.bin");
    let mut http = lab.curl_download(&http_url, RATE, &http_file, &[], tmp.path(), "curl-http");
    let mut https = lab.curl_download(
        &https_url,
        RATE,
        &https_file,
        &["--cacert", &ca],
        tmp.path(),
        "curl-https",
    );
    let http_sampler = Sampler::start(http_file.clone(), start, failover::SAMPLE_EVERY);
    let https_sampler = Sampler::start(https_file.clone(), start, failover::SAMPLE_EVERY);
    while http_sampler.latest() < KILL_AT_BYTES || https_sampler.latest() < KILL_AT_BYTES {
        if http.exited() || https.exited() {
            let (h, s) = (
                http.wait(Duration::from_secs(1)),
                https.wait(Duration::from_secs(1)),
            );
            panic!(
                "[{test}] a curl ended before the kill\nHTTP: {}\nHTTPS: {}",
                describe(&h),
                describe(&s)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "[{test}] 20 MB each did not arrive within 20 s (HTTP {}, HTTPS {})",
            http_sampler.latest(),
            https_sampler.latest()
        );
        thread::sleep(Duration::from_millis(2));
    }
    let at_kill = (http_sampler.latest(), https_sampler.latest());
    let kill_epoch = failover::epoch_now();
    let kill = lab.kill(victim.node());
    let http_out = http.wait(Duration::from_secs(50));
    let https_out = https.wait(Duration::from_secs(50));
    let end = Instant::now();
    let mut lines = Vec::new();
    for (name, sampler, file) in [
        ("HTTP :80", http_sampler, &http_file),
        ("HTTPS :443", https_sampler, &https_file),
    ] {
        let samples = sampler.finish();
        let got = std::fs::metadata(file).map_or(0, |m| m.len());
        let s = hotpair::stall::measure(&samples, kill - start, end - start, got == total);
        lines.push(format!(
            "{name}: {got} of {total} bytes, stall {:.0} ms after the kill",
            failover::ms(s.after_kill)
        ));
    }
    let line = format!(
        "[{test}] SIGKILL {} at {:.2} s (HTTP {:.1} MiB, HTTPS {:.1} MiB in): {}",
        victim.node(),
        (kill - start).as_secs_f64(),
        at_kill.0 as f64 / 1048576.0,
        at_kill.1 as f64 / 1048576.0,
        lines.join("; ")
    );
    report(&line);
    for (name, out, file) in [
        ("HTTP", &http_out, &http_file),
        ("HTTPS", &https_out, &https_file),
    ] {
        assert!(
            out.status.success(),
            "[{test}] the {name} curl failed after the kill\n{line}\n{}",
            describe(out)
        );
        assert_eq!(
            sha256sum(file),
            sha256sum(&src),
            "[{test}] the {name} download differs from {}\n{line}",
            src.display()
        );
    }
    failover::assert_survivor(&lab, victim);
    let r = cap.stop();
    failover::assert_no_rst(&lab, &r, "HTTP and HTTPS downloads", kill_epoch);
    // The survivor promoted both shadows (and its TLS counters name 443).
    let st = hotpair::admin::query(&lab.state_dir().join(format!("{}.sock", victim.survivor())))
        .expect("the survivor answers on its admin socket");
    let a = &st.addresses[0];
    assert_eq!(a.port, 80, "[{test}] status: {a:?}");
    assert_eq!(
        a.tls.as_ref().map(|t| t.port),
        Some(443),
        "[{test}] status: {a:?}"
    );
    assert!(
        a.connections.promoted >= 2,
        "[{test}] the survivor promoted {} connection(s), expected both downloads",
        a.connections.promoted
    );
}
