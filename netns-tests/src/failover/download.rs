//! (a) one download with a kill, (f) its capture, (g) downloads killed at
//! random moments, and the stall statistics.

use std::thread;
use std::time::{Duration, Instant};

use super::KeepaliveClient;
use super::{
    assert_no_rst, assert_survivor, duplex_lab, duplex_lab_with, epoch_now, mib, ms, reup, Capture,
    Sampler, Stall, Victim, DOWNLOAD_RATE, KILL_AT_BYTES, SAMPLE_EVERY,
};
use crate::{describe, report, sha256sum, Lab, TempDir, SERVICE};

const DOWNLOAD_FILE: &str = "50m.bin";

/// When a download's kill lands.
#[derive(Clone, Copy, Debug)]
pub enum KillAt {
    /// Once this many bytes have arrived.
    Bytes(u64),
    /// This long after curl started.
    Delay(Duration),
}

/// What a download with a kill measured.
#[derive(Clone, Copy, Debug)]
pub struct DownloadOutcome {
    pub stall: Stall,
    /// Bytes the client had when the kill was sent.
    pub at_kill: u64,
    /// Time from curl's start to the kill.
    pub kill_after: Duration,
    pub total: Duration,
}

/// Downloads /static/50m.bin with `curl --limit-rate 20M`, SIGKILLs `victim`
/// at `kill_at`, and checks curl's exit code 0 and the SHA-256. With
/// `capture`, also checks that the client saw no RST from the service address.
pub fn download_with_kill(
    lab: &Lab,
    victim: Victim,
    kill_at: KillAt,
    capture: bool,
    what: &str,
) -> DownloadOutcome {
    download_with_kill_then(lab, victim, kill_at, capture, what, |_| {})
}

/// As [`download_with_kill`], running `after_kill` (given the kill's
/// moment) as soon as the victim is SIGKILLed, while curl still runs: the
/// place for another client to go on across the same failover.
pub fn download_with_kill_then(
    lab: &Lab,
    victim: Victim,
    kill_at: KillAt,
    capture: bool,
    what: &str,
    after_kill: impl FnOnce(Instant),
) -> DownloadOutcome {
    let test = &lab.test;
    let tmp = TempDir::new(&format!("{test}-dl"));
    let src = lab.docroot().join(DOWNLOAD_FILE);
    let total = std::fs::metadata(&src).expect("docroot file").len();
    let cap = capture.then(|| Capture::start(lab, tmp.path()));
    let dl = tmp.path().join("download.bin");
    let u = lab.service_url(&format!("/static/{DOWNLOAD_FILE}"));
    let ca = lab.tls_ca().map(|p| p.to_string_lossy().into_owned());
    let mut extra = vec!["-w", "%{http_code} %{size_download}\n"];
    if let Some(ca) = &ca {
        // HTTPS (`lab up --tls`): curl checks the certificate against the
        // lab's CA; a TLS alert or a record that does not open fails it.
        extra.extend(["--cacert", ca.as_str()]);
    }
    let start = Instant::now();
    let mut curl = lab.curl_download(&u, DOWNLOAD_RATE, &dl, &extra, tmp.path(), "curl");
    let sampler = Sampler::start(dl.clone(), start, SAMPLE_EVERY);
    // Wait for the kill moment.
    loop {
        let due = match kill_at {
            KillAt::Bytes(b) => sampler.latest() >= b,
            KillAt::Delay(d) => start.elapsed() >= d,
        };
        if due {
            break;
        }
        if curl.exited() {
            let out = curl.wait(Duration::from_secs(1));
            panic!(
                "[{test}] {what}: curl ended before the kill ({} of {total} bytes)\n{}",
                sampler.latest(),
                describe(&out)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "[{test}] {what}: the kill moment {kill_at:?} did not come within 20 s \
             ({} bytes arrived)",
            sampler.latest()
        );
        thread::sleep(Duration::from_millis(2));
    }
    let at_kill = sampler.latest();
    let kill_epoch = epoch_now();
    let kill = lab.kill(victim.node());
    let kill_after = kill - start;
    after_kill(kill);
    let out = curl.wait(Duration::from_secs(50));
    let end = Instant::now();
    let samples = sampler.finish();
    let got = std::fs::metadata(&dl).map_or(0, |m| m.len());
    let s = hotpair::stall::measure(&samples, kill - start, end - start, got == total);
    let outcome = if out.status.success() && got == total {
        format!("STALL {:.0} ms", ms(s.after_kill))
    } else {
        // A stall of a download that broke means nothing.
        format!(
            "BROKEN ({}, {got} of {total} bytes; curl ended {:.0} ms after the kill)",
            out.status,
            ms(end.saturating_duration_since(kill))
        )
    };
    let line = format!(
        "[{test}] {what}: {outcome} after SIGKILL {} ({}) at {:.2} s, {:.1} MiB in \
         (resumed after {}; longest pause before the kill {:.0} ms; total {:.2} s)",
        victim.node(),
        victim.role(),
        kill_after.as_secs_f64(),
        mib(at_kill),
        s.resumed_after
            .map_or("never".to_owned(), |r| format!("{:.0} ms", ms(r))),
        ms(s.before_kill),
        (end - start).as_secs_f64()
    );
    report(&line);
    assert!(
        out.status.success(),
        "[{test}] {what}: curl failed after the kill of {} ({}); {got} of {total} bytes\n{line}\n{}",
        victim.node(),
        victim.role(),
        describe(&out)
    );
    assert_eq!(
        got, total,
        "[{test}] {what}: received {got} bytes, expected {total}"
    );
    let want = sha256sum(&src);
    let have = sha256sum(&dl);
    assert_eq!(
        have,
        want,
        "[{test}] {what}: the downloaded file differs from {} (same length)",
        src.display()
    );
    assert_survivor(lab, victim);
    if let Some(cap) = cap {
        let r = cap.stop();
        assert_no_rst(lab, &r, what, kill_epoch);
    }
    DownloadOutcome {
        stall: s,
        at_kill,
        kill_after,
        total: end - start,
    }
}

/// (a) + (f): kill mid-reply of a 50 MB download; curl exits 0, SHA-256
/// matches, no RST in the client's capture. /static/ runs under `logged`
/// here, so a large *logged* reply is cut by the kill (the lab's default,
/// `static`, is covered by failover_policies.rs).
pub fn download(test: &str, victim: Victim) {
    download_with(test, victim, "logged", &[]);
}

/// As [`download`], over HTTPS (`lab up --tls`) with /static/ under
/// `policy`: the TLS connection survives the kill — curl (OpenSSL) sees no
/// alert and no bad record.
pub fn download_tls(test: &str, victim: Victim, policy: &str) {
    download_with(test, victim, policy, &["--tls"]);
}

fn download_with(test: &str, victim: Victim, policy: &str, extra: &[&str]) {
    let mut args = vec!["--static-policy", policy];
    args.extend_from_slice(extra);
    let Some(lab) = duplex_lab_with(test, &args) else {
        return;
    };
    let o = download_with_kill(&lab, victim, KillAt::Bytes(KILL_AT_BYTES), true, "download");
    let total = std::fs::metadata(lab.docroot().join(DOWNLOAD_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        o.at_kill > 0 && o.at_kill < total,
        "[{test}] the kill did not land mid-reply ({} of {total} bytes)",
        o.at_kill
    );
}

/// Over HTTPS (`lab up --tls`) with /static/ under `static` (each node
/// seals its own copy of every reply): curl downloading the 50 MB file and
/// a keep-alive TLS connection ([`KeepaliveClient`]: five static GETs
/// before the kill, five more started the moment it lands, while the
/// download still runs), `victim` SIGKILLed 20 MiB into the download.
/// Every body's SHA-256 is checked, and the client's capture, which spans
/// both clients from before the keep-alive connection's first request to
/// after both are done, holds no RST from the service address.
pub fn download_and_keepalive_tls(test: &str, victim: Victim) {
    let Some(lab) = duplex_lab_with(test, &["--static-policy", "static", "--tls"]) else {
        return;
    };
    let tmp = TempDir::new(&format!("{test}-cap"));
    let cap = Capture::start(&lab, tmp.path());
    let mut client = KeepaliveClient::start(&lab, SERVICE);
    let mut killed = None;
    let o = download_with_kill_then(
        &lab,
        victim,
        KillAt::Bytes(KILL_AT_BYTES),
        false,
        "download",
        |kill| {
            killed = Some((kill, epoch_now()));
            client.go();
        },
    );
    let (kill, kill_epoch) = killed.expect("the download ran its after-kill step");
    // Reports the keep-alive requests' own times after the kill.
    client.finish(kill);
    report(&format!(
        "[{test}] SIGKILL {} ({}): the download's stall {:.0} ms, done {:.0} ms after the kill",
        victim.node(),
        victim.role(),
        ms(o.stall.after_kill),
        ms(o.total.saturating_sub(o.kill_after))
    ));
    assert_survivor(&lab, victim);
    let r = cap.stop();
    assert_no_rst(&lab, &r, "download and keep-alive", kill_epoch);
}

/// A seeded splitmix64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi] milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next_u64() % (hi - lo + 1))
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// (g): `HOTPAIR_FAILOVER_RUNS` (default 5) downloads, each with the kill at
/// a random delay in [0.2, 2.0] s drawn from a seeded RNG (seed printed;
/// `HOTPAIR_FAILOVER_SEED` replays it). The lab is rebuilt between runs.
pub fn random_moments(test: &str, victim: Victim) {
    let runs = env_u64("HOTPAIR_FAILOVER_RUNS").unwrap_or(5).max(1);
    let seed = env_u64("HOTPAIR_FAILOVER_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id())
    });
    let mut rng = Rng::new(seed);
    let delays: Vec<Duration> = (0..runs).map(|_| rng.millis(200, 2000)).collect();
    report(&format!(
        "[{test}] {runs} kills of {} ({}) at random moments: HOTPAIR_FAILOVER_SEED={seed}, \
         delays {:?} ms",
        victim.node(),
        victim.role(),
        delays.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    ));
    let Some(lab) = duplex_lab(test) else {
        return;
    };
    let labels: Vec<String> = delays
        .iter()
        .enumerate()
        .map(|(i, d)| {
            format!(
                "run {}/{runs} (seed {seed}, kill at {} ms)",
                i + 1,
                d.as_millis()
            )
        })
        .collect();
    let kills: Vec<KillAt> = delays.iter().map(|d| KillAt::Delay(*d)).collect();
    let (stalls, failures) = repeated_kills(&lab, victim, &kills, &labels);
    assert!(
        failures.is_empty(),
        "[{test}] {} of {runs} runs failed (HOTPAIR_FAILOVER_SEED={seed} replays them):\n{}",
        failures.len(),
        failures.join("\n")
    );
    report(&format!(
        "[{test}] all {runs} runs passed (seed {seed}); {}",
        stall_summary(&stalls)
    ));
}

/// Runs one download per entry of `kills` (rebuilding the lab between them),
/// every one even when some fail. Returns the stalls of the runs that passed
/// and a line per failed run.
fn repeated_kills(
    lab: &Lab,
    victim: Victim,
    kills: &[KillAt],
    labels: &[String],
) -> (Vec<Duration>, Vec<String>) {
    let mut stalls = Vec::new();
    let mut failures = Vec::new();
    for (i, (kill, what)) in kills.iter().zip(labels).enumerate() {
        if i > 0 {
            reup(lab);
        }
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            download_with_kill(lab, victim, *kill, false, what)
        }));
        match run {
            Ok(o) => stalls.push(o.stall.after_kill),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                report(&format!(
                    "FAILED: {}",
                    msg.lines().next().unwrap_or("(no message)")
                ));
                eprintln!(
                    "[{}] {what} FAILED; node logs:\n{}",
                    lab.test,
                    lab.node_logs(25)
                );
                failures.push(msg.lines().next().unwrap_or("(no message)").to_owned());
            }
        }
    }
    (stalls, failures)
}

/// "stall median X ms, max Y ms over N kills".
pub fn stall_summary(stalls: &[Duration]) -> String {
    let mut v: Vec<f64> = stalls.iter().map(|d| ms(*d)).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return "no stalls measured".to_owned();
    }
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    format!(
        "stall median {median:.0} ms, max {:.0} ms, min {:.0} ms over {} kills (all: {})",
        v[v.len() - 1],
        v[0],
        v.len(),
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// The stall statistics: `HOTPAIR_STALL_RUNS` (default 20) downloads, each
/// killing `victim` at 20 MiB as the demo does; prints every stall, the
/// median and the maximum.
pub fn stall_statistics(test: &str, victim: Victim) {
    let runs = env_u64("HOTPAIR_STALL_RUNS").unwrap_or(20).max(1);
    let Some(lab) = duplex_lab(test) else {
        return;
    };
    let labels: Vec<String> = (0..runs)
        .map(|i| format!("stall run {}/{runs}", i + 1))
        .collect();
    let kills = vec![KillAt::Bytes(KILL_AT_BYTES); labels.len()];
    let (stalls, failures) = repeated_kills(&lab, victim, &kills, &labels);
    report(&format!(
        "[{test}] STALL SUMMARY, SIGKILL {} ({}) at 20 MiB into a 50 MB download at 20 MB/s: \
         {}; {} of {runs} runs failed",
        victim.node(),
        victim.role(),
        stall_summary(&stalls),
        failures.len()
    ));
    assert!(
        failures.is_empty(),
        "[{test}] {} of {runs} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_seeded_and_in_range() {
        let a: Vec<_> = {
            let mut r = Rng::new(42);
            (0..100).map(|_| r.millis(200, 2000)).collect()
        };
        let mut r = Rng::new(42);
        let b: Vec<_> = (0..100).map(|_| r.millis(200, 2000)).collect();
        assert_eq!(a, b);
        assert!(a
            .iter()
            .all(|d| (200..=2000).contains(&(d.as_millis() as u64))));
        assert!(a.iter().any(|d| d.as_millis() != a[0].as_millis()));
    }

    #[test]
    fn summary() {
        let s = stall_summary(&[300, 100, 200].map(Duration::from_millis));
        assert!(s.starts_with("stall median 200 ms, max 300 ms"), "{s}");
        let s = stall_summary(&[100, 200].map(Duration::from_millis));
        assert!(s.starts_with("stall median 150 ms"), "{s}");
    }
}
