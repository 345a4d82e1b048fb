//! (b) upload, (c) generate and (e) wrk with (f) a capture, each across a
//! kill.

use std::thread;
use std::time::{Duration, Instant};

use super::{
    assert_no_rst, assert_survivor, duplex_lab, duplex_lab_with, epoch_now, mib, ms, Capture,
    Victim, UPLOAD_RATE,
};
use crate::wrk::parse_wrk;
use crate::{
    describe, random_bytes, report, sha256sum, split_head, status_code, url, Lab, TempDir, SERVICE,
};

const UPLOAD_BYTES: usize = 20 * 1024 * 1024;
const GENERATE_BYTES: u64 = 30_000_000;

// ---- (b) upload -----------------------------------------------------------------

/// Bytes the client's socket to the service has had acknowledged (`ss -ti`).
fn client_bytes_acked(lab: &Lab) -> u64 {
    let filter = format!("dst {SERVICE}");
    lab.tcp_counter_max("client", &[&filter], "bytes_acked")
        .unwrap_or(0)
}

/// (b): kill mid-upload of a 20 MB POST to /app/upload (curl `--limit-rate
/// 10M`); the reply body is the SHA-256 of the uploaded file.
pub fn upload(test: &str, victim: Victim) {
    let Some(lab) = duplex_lab(test) else {
        return;
    };
    let tmp = TempDir::new(&format!("{test}-up"));
    let file = tmp.path().join("upload.bin");
    std::fs::write(&file, random_bytes(UPLOAD_BYTES)).expect("writing the upload file");
    let want = sha256sum(&file);
    let u = url("/app/upload");
    let start = Instant::now();
    let curl = lab.curl_upload(&u, UPLOAD_RATE, &file, tmp.path(), "curl");
    // Kill when the service has acknowledged ~40% of the body.
    let target = (UPLOAD_BYTES as u64) * 2 / 5;
    let mut acked = 0;
    let mut curl = curl;
    while acked < target {
        assert!(
            !curl.exited(),
            "[{test}] curl ended before the kill ({acked} bytes acknowledged)\n{}",
            describe(&curl.wait(Duration::from_secs(1)))
        );
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "[{test}] the upload did not reach {target} acknowledged bytes within 20 s \
             ({acked} so far)"
        );
        thread::sleep(Duration::from_millis(25));
        acked = client_bytes_acked(&lab);
    }
    let kill = lab.kill(victim.node());
    report(&format!(
        "[{test}] SIGKILL {} ({}) {:.2} s into the upload, {:.1} of {:.1} MiB acknowledged",
        victim.node(),
        victim.role(),
        (kill - start).as_secs_f64(),
        mib(acked),
        mib(UPLOAD_BYTES as u64)
    ));
    let out = curl.wait(Duration::from_secs(50));
    report(&format!(
        "[{test}] upload finished {:.2} s after the kill",
        kill.elapsed().as_secs_f64()
    ));
    assert!(
        out.status.success(),
        "[{test}] curl upload failed after the kill of {}\n{}",
        victim.node(),
        describe(&out)
    );
    let (head, body) = split_head(&out.stdout);
    assert_eq!(status_code(&head), 200, "[{test}] reply head:\n{head}");
    assert_eq!(
        String::from_utf8_lossy(body).trim(),
        want,
        "[{test}] the reply is not the SHA-256 of the uploaded body"
    );
    assert_survivor(&lab, victim);
}

// ---- (c) generate --------------------------------------------------------------

/// (c): kill while /non-deterministic/x?size=30000000 is being computed;
/// exactly 30000000 bytes arrive and curl exits 0. The kill moment is a
/// third of the time to first byte measured by an undisturbed request.
pub fn generate(test: &str, victim: Victim) {
    let Some(lab) = duplex_lab(test) else {
        return;
    };
    let tmp = TempDir::new(&format!("{test}-gen"));
    let dl = tmp.path().join("generated.bin");
    let dl_s = dl.to_string_lossy().into_owned();
    let u = url(&format!("/non-deterministic/x?size={GENERATE_BYTES}"));
    let curl_args = [
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        "50",
        "-o",
        &dl_s,
        "-w",
        "%{http_code} %{size_download} %{time_starttransfer}\n",
        &u,
    ];
    // Calibration, undisturbed.
    let out = lab.exec_in("client", &curl_args, Duration::from_secs(55));
    assert!(
        out.status.success(),
        "[{test}] generate before any kill failed\n{}",
        describe(&out)
    );
    let w = String::from_utf8_lossy(&out.stdout).into_owned();
    let f: Vec<&str> = w.split_whitespace().collect();
    assert_eq!(
        f.get(1).copied(),
        Some(GENERATE_BYTES.to_string().as_str()),
        "[{test}] generate before any kill: wrong size: {w}"
    );
    let ttfb: f64 = f.get(2).and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let delay = Duration::from_secs_f64((ttfb / 3.0).max(0.05));
    let _ = std::fs::remove_file(&dl);

    let start = Instant::now();
    let mut curl = lab.spawn_in("client", &curl_args, tmp.path(), "curl");
    while start.elapsed() < delay {
        assert!(
            !curl.exited(),
            "[{test}] curl ended before the kill\n{}",
            describe(&curl.wait(Duration::from_secs(1)))
        );
        thread::sleep(Duration::from_millis(2));
    }
    let at_kill = std::fs::metadata(&dl).map_or(0, |m| m.len());
    let kill = lab.kill(victim.node());
    report(&format!(
        "[{test}] SIGKILL {} ({}) {:.0} ms into the generate request (undisturbed time to \
         first byte {:.0} ms); {at_kill} bytes had arrived{}",
        victim.node(),
        victim.role(),
        ms(kill - start),
        ttfb * 1000.0,
        if at_kill > 0 {
            " -- NOTE: the reply had started, so the kill was after the computation"
        } else {
            ""
        }
    ));
    let out = curl.wait(Duration::from_secs(55));
    assert!(
        out.status.success(),
        "[{test}] generate failed after the kill of {}\n{}",
        victim.node(),
        describe(&out)
    );
    let got = std::fs::metadata(&dl).map_or(0, |m| m.len());
    let w = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        got, GENERATE_BYTES,
        "[{test}] received {got} bytes, expected {GENERATE_BYTES} (curl -w: {w})"
    );
    assert!(w.starts_with("200 "), "[{test}] status after the kill: {w}");
    report(&format!(
        "[{test}] generate completed {:.2} s after the kill",
        kill.elapsed().as_secs_f64()
    ));
    assert_survivor(&lab, victim);
}

// ---- (e) wrk, (f) capture -----------------------------------------------------

/// (e) + (f): `wrk -c16 -d8s` on /static/5k.bin, kill at ~3 s: no socket
/// errors, no non-2xx, no RST from the service address in the capture.
pub fn wrk_load(test: &str, victim: Victim) {
    wrk_load_with(test, victim, &[]);
}

/// As [`wrk_load`], over HTTPS (`lab up --tls`): 16 keep-alive TLS
/// connections (wrk does not check the certificate) across the kill.
pub fn wrk_load_tls(test: &str, victim: Victim) {
    wrk_load_with(test, victim, &["--tls"]);
}

fn wrk_load_with(test: &str, victim: Victim, extra: &[&str]) {
    let Some(lab) = duplex_lab_with(test, extra) else {
        return;
    };
    let tmp = TempDir::new(&format!("{test}-wrk"));
    let cap = Capture::start(&lab, tmp.path());
    let u = lab.service_url("/static/5k.bin");
    let start = Instant::now();
    let wrk = lab.spawn_in(
        "client",
        &["wrk", "-t2", "-c16", "-d8s", "--timeout", "5s", &u],
        tmp.path(),
        "wrk",
    );
    thread::sleep(Duration::from_secs(3));
    let kill_epoch = epoch_now();
    let kill = lab.kill(victim.node());
    let out = wrk.wait(Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let r = parse_wrk(&text);
    report(&format!(
        "[{test}] wrk with SIGKILL {} ({}) at {:.2} s: {} requests, {:.0} req/s, max latency \
         {}, socket errors {}, non-2xx {}",
        victim.node(),
        victim.role(),
        (kill - start).as_secs_f64(),
        r.requests,
        r.requests_per_sec,
        r.latency_max,
        r.socket_errors(),
        r.non_2xx
    ));
    assert!(
        out.status.success(),
        "[{test}] wrk failed\n{}",
        describe(&out)
    );
    assert!(r.requests > 0, "[{test}] wrk completed no request\n{text}");
    assert_eq!(
        (r.connect, r.read, r.write, r.timeout),
        (0, 0, 0, 0),
        "[{test}] wrk socket errors (connect, read, write, timeout) across the kill\n{text}"
    );
    assert_eq!(
        r.non_2xx, 0,
        "[{test}] non-2xx replies across the kill\n{text}"
    );
    assert_survivor(&lab, victim);
    let c = cap.stop();
    assert_no_rst(&lab, &c, "wrk", kill_epoch);
}
