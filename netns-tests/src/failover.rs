//! Failover scenarios, shared by `tests/failover_primary_crash.rs` and
//! `tests/failover_ingress_crash.rs`: each body takes the [`Victim`] to
//! SIGKILL. Every scenario builds its own duplex lab (n1 primary, n2 ingress),
//! kills one node while a client is in the middle of something, and checks
//! that the client sees nothing but a pause.
//!
//! Environment knobs:
//! - `HOTPAIR_REPL_NET=dedicated`: run the labs with a dedicated replication
//!   network (default: shared, over the LAN).
//! - `HOTPAIR_FAILOVER_RUNS=N`: runs of the random-moment test (default 5).
//! - `HOTPAIR_FAILOVER_SEED=S`: its seed (default: from the clock; printed).
//! - `HOTPAIR_STALL_RUNS=N`: kills of the (ignored) stall statistics test
//!   (default 20).
//! - `HOTPAIR_LOG_LINES=N`: node log lines shown when a test fails.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::wrk::parse_wrk;
use crate::{
    describe, random_bytes, report, sha256_file, sha256sum, split_head, status_code, url, Lab,
    TempDir, SERVICE,
};

/// curl `--limit-rate` for downloads (the 50 MB file takes ~2.5 s).
pub const DOWNLOAD_RATE: &str = "20M";
/// curl `--limit-rate` for uploads (the 20 MB body takes ~2 s).
pub const UPLOAD_RATE: &str = "10M";
/// The download kill lands once this much has arrived (~1 s in).
pub const KILL_AT_BYTES: u64 = 20 * 1024 * 1024;
/// How often the downloaded file's size is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);
const DOWNLOAD_FILE: &str = "50m.bin";
const UPLOAD_BYTES: usize = 20 * 1024 * 1024;
const GENERATE_BYTES: u64 = 30_000_000;

/// The node a scenario kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Victim {
    /// n1: runs the application and sends the replies.
    Primary,
    /// n2: owns the service address, forwards client frames, keeps shadows.
    Ingress,
}

impl Victim {
    pub fn node(self) -> &'static str {
        match self {
            Victim::Primary => "n1",
            Victim::Ingress => "n2",
        }
    }

    pub fn survivor(self) -> &'static str {
        match self {
            Victim::Primary => "n2",
            Victim::Ingress => "n1",
        }
    }

    pub fn role(self) -> &'static str {
        match self {
            Victim::Primary => "primary",
            Victim::Ingress => "ingress",
        }
    }
}

/// `lab up` arguments for a duplex lab (`HOTPAIR_REPL_NET` picks the link's network).
pub fn duplex_args() -> Vec<String> {
    let net = std::env::var("HOTPAIR_REPL_NET").unwrap_or_else(|_| "shared".to_owned());
    vec![
        "--mode".into(),
        "duplex".into(),
        "--repl-net".into(),
        net,
        "--wait-secs".into(),
        "30".into(),
    ]
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Held while a test runs a duplex lab: such tests run one at a time within
/// a test binary (test binaries run one after the other anyway), because on
/// a small machine two duplex labs at once starve each other's nodes of CPU
/// and the measured stalls say more about the machine than about hotpair.
/// `HOTPAIR_FAILOVER_PARALLEL=1` lets them run in parallel.
pub struct Serial {
    _guard: Option<std::sync::MutexGuard<'static, ()>>,
}

/// Takes the duplex-lab lock (see [`Serial`]).
pub fn serial() -> Serial {
    if std::env::var_os("HOTPAIR_FAILOVER_PARALLEL").is_some_and(|v| !v.is_empty() && v != "0") {
        return Serial { _guard: None };
    }
    Serial {
        _guard: Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner())),
    }
}

/// A duplex lab for test `test`; `None` when skipped (not root). Holds the
/// [`serial`] lock until dropped.
pub fn duplex_lab(test: &str) -> Option<DuplexLab> {
    duplex_lab_with(test, &[])
}

/// As [`duplex_lab`], passing `extra` arguments to `lab up` after
/// [`duplex_args`] (e.g. `--static-policy sync-static`).
pub fn duplex_lab_with(test: &str, extra: &[&str]) -> Option<DuplexLab> {
    let serial = serial();
    let lab = plain_duplex_lab(test, extra)?;
    Some(DuplexLab {
        lab,
        _serial: serial,
    })
}

/// A duplex [`Lab`] plus the [`serial`] lock (the lab goes down first).
pub struct DuplexLab {
    pub lab: Lab,
    _serial: Serial,
}

impl std::ops::Deref for DuplexLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

fn plain_duplex_lab(test: &str, extra: &[&str]) -> Option<Lab> {
    let args = duplex_args();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    let lab = Lab::up_with(test, &args)?;
    let st = lab.initial_status();
    assert_eq!(st["mode"], "duplex", "[{test}] lab status: {st}");
    for (name, role) in [("n1", "primary"), ("n2", "ingress")] {
        let n = st["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("[{test}] no node {name} in lab status: {st}"));
        assert_eq!(n["role"], role, "[{test}] lab status: {st}");
        assert_eq!(n["alive"], true, "[{test}] lab status: {st}");
    }
    Some(lab)
}

/// Rebuilds the lab in place (same prefix), for tests that kill repeatedly.
pub fn reup(lab: &Lab) {
    let mut args = vec!["up".to_owned()];
    args.extend(duplex_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.lab(&args, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "[{}] lab up again failed\n{}",
        lab.test,
        describe(&out)
    );
}

/// After a kill: the victim is dead and the survivor alive.
#[track_caller]
pub fn assert_survivor(lab: &Lab, victim: Victim) {
    assert!(
        !lab.node_alive(victim.node()),
        "[{}] {} ({}) still alive after lab kill",
        lab.test,
        victim.node(),
        victim.role()
    );
    assert!(
        lab.node_alive(victim.survivor()),
        "[{}] the survivor {} died too (see its log below)",
        lab.test,
        victim.survivor()
    );
}

// ---- size sampling and the stall ------------------------------------------

pub use hotpair::stall::{Sampler, Stall};

/// Seconds since the epoch (tcpdump -tt's clock).
pub fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

// ---- packet capture --------------------------------------------------------

pub use crate::capture::{arp_capture, Capture, CaptureReport};

/// Asserts the capture holds packets and no RST from the service address.
/// `kill` (seconds since the epoch) dates the RSTs relative to the kill.
#[track_caller]
pub fn assert_no_rst(lab: &Lab, cap: &CaptureReport, what: &str, kill: f64) {
    assert!(
        cap.packets > 0,
        "[{}] {what}: the capture in the client namespace holds no packet from {SERVICE}",
        lab.test
    );
    let dated = |l: &String| {
        // `tcpdump -tt`: the first field is the time.
        let t: f64 = l
            .split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(f64::NAN);
        format!("  [{:+.3} s from the kill] {l}", t - kill)
    };
    assert!(
        cap.rsts.is_empty(),
        "[{}] {what}: {} RST segment(s) from {SERVICE} seen by the client (MAC \
         02:68:70:00:00:01 = n1, :02 = n2):\n{}\n{}",
        lab.test,
        cap.rsts.len(),
        cap.rsts
            .iter()
            .take(20)
            .map(dated)
            .collect::<Vec<_>>()
            .join("\n"),
        cap.context.join("\n")
    );
    report(&format!(
        "[{}] {what}: capture: {} packets from {SERVICE}, 0 RST",
        lab.test, cap.packets
    ));
}

// ---- (a) download, (f) capture, (g) random moments ----------------------------

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

// ---- (b) upload -----------------------------------------------------------------

/// Bytes the client's socket to the service has had acknowledged (`ss -ti`).
fn client_bytes_acked(lab: &Lab) -> u64 {
    let filter = format!("dst {SERVICE}");
    let out = lab.exec_in(
        "client",
        &["ss", "-tinH", "state", "established", &filter],
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .filter_map(|w| w.strip_prefix("bytes_acked:"))
        .filter_map(|v| v.parse::<u64>().ok())
        .max()
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

// ---- (d) keep-alive -----------------------------------------------------------

const KEEPALIVE_SCRIPT: &str = r#"
import hashlib, http.client, json, ssl, sys
paths = json.loads(sys.argv[1])
ca = sys.argv[2] if len(sys.argv) > 2 else ""
host = sys.argv[3] if len(sys.argv) > 3 else "10.77.0.10"
if ca:
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(host, 443, timeout=30, context=ctx)
else:
    conn = http.client.HTTPConnection(host, 80, timeout=30)
results = []
def fetch(p):
    entry = {"path": p}
    try:
        conn.request("GET", p)
        r = conn.getresponse()
        body = r.read()
        entry.update(status=r.status, len=len(body),
                     sha256=hashlib.sha256(body).hexdigest(), will_close=r.will_close)
    except Exception as e:
        entry["error"] = "%s: %s" % (type(e).__name__, e)
    s = conn.sock
    entry["sock_id"] = id(s) if s is not None else None
    entry["local"] = list(s.getsockname()) if s is not None else None
    results.append(entry)
for p in paths[:5]:
    fetch(p)
print("READY", flush=True)
sys.stdin.readline()
for p in paths[5:]:
    fetch(p)
print(json.dumps(results), flush=True)
"#;

/// (d): five requests on one http.client connection, kill, five more on the
/// same connection (same socket object, same local port); every body checked.
pub fn keepalive(test: &str, victim: Victim) {
    keepalive_with(test, victim, &[]);
}

/// As [`keepalive`], over HTTPS (`lab up --tls`): Python's `ssl` checking
/// the certificate against the lab's CA, one TLS connection throughout.
pub fn keepalive_tls(test: &str, victim: Victim) {
    keepalive_with(test, victim, &["--tls"]);
}

fn keepalive_with(test: &str, victim: Victim, extra: &[&str]) {
    let Some(lab) = duplex_lab_with(test, extra) else {
        return;
    };
    let mut client = KeepaliveClient::start(&lab, SERVICE);
    let kill = lab.kill(victim.node());
    client.go();
    let elapsed = client.finish(kill);
    report(&format!(
        "[{test}] 5 more requests on the same connection done {:.2} s after SIGKILL {} ({})",
        elapsed.as_secs_f64(),
        victim.node(),
        victim.role()
    ));
    assert_survivor(&lab, victim);
}

/// The files the keep-alive client fetches, in order: five before the
/// kill, five after.
const KEEPALIVE_FILES: [&str; 10] = [
    "index.html",
    "1k.bin",
    "5k.bin",
    "50k.bin",
    "1k.bin",
    "50k.bin",
    "5k.bin",
    "index.html",
    "50k.bin",
    "1k.bin",
];

/// Python `http.client` in the client namespace on one connection to
/// `host` (over `ssl`, checking the lab's CA, when the lab serves HTTPS):
/// five requests, a pause for the kill ([`KeepaliveClient::go`] ends it),
/// five more. Killed if the test panics half way.
pub struct KeepaliveClient {
    test: String,
    host: String,
    docroot: std::path::PathBuf,
    stdin: Option<std::process::ChildStdin>,
    rx: std::sync::mpsc::Receiver<String>,
    err_t: Option<thread::JoinHandle<String>>,
    _child: KillChildOnDrop,
}

/// Kills a client process when dropped (the test is done with it, or
/// panicked).
struct KillChildOnDrop(std::process::Child);

impl Drop for KillChildOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl KeepaliveClient {
    /// Starts the client and waits until its first five requests are done.
    pub fn start(lab: &Lab, host: &str) -> KeepaliveClient {
        let test = &lab.test;
        let ca = lab
            .tls_ca()
            .map_or(String::new(), |p| p.to_string_lossy().into_owned());
        let paths: Vec<String> = KEEPALIVE_FILES
            .iter()
            .map(|f| format!("/static/{f}"))
            .collect();
        let arg = serde_json::to_string(&paths).expect("json");
        let mut child = Command::new(crate::hotpair_bin())
            .args(["lab", "exec", "--prefix", &lab.prefix, "client", "--"])
            .args(["python3", "-c", KEEPALIVE_SCRIPT, &arg, &ca, host])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running python3 in the client namespace");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let child = KillChildOnDrop(child);
        let (rx, err_t) = crate::read_output(stdout, stderr);
        let ready = rx.recv_timeout(Duration::from_secs(30));
        assert_eq!(
            ready.as_deref().ok(),
            Some("READY"),
            "[{test}] the python client of {host} did not finish its first 5 requests: {ready:?}"
        );
        KeepaliveClient {
            test: test.clone(),
            host: host.to_owned(),
            docroot: lab.docroot(),
            stdin: Some(stdin),
            rx,
            err_t: Some(err_t),
            _child: child,
        }
    }

    /// Lets the client go on with its last five requests.
    pub fn go(&mut self) {
        let mut stdin = self.stdin.take().expect("go() once");
        stdin
            .write_all(b"GO\n")
            .expect("telling the client to go on");
        stdin.flush().expect("flush");
    }

    /// Waits for the client's results and checks every request: no error,
    /// 200, the body is the docroot file's, and the same socket (same
    /// local port) as the first request. Returns the time since `kill`.
    pub fn finish(mut self, kill: Instant) -> Duration {
        let (test, host) = (&self.test, &self.host);
        let line = self.rx.recv_timeout(Duration::from_secs(55));
        let elapsed = kill.elapsed();
        let line = line.unwrap_or_else(|e| {
            drop(self._child);
            panic!(
                "[{test}] the python client of {host} printed no result after the kill ({e}); \
                 stderr:\n{}",
                self.err_t
                    .take()
                    .map(|t| t.join().unwrap_or_default())
                    .unwrap_or_default()
            )
        });
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("[{test}] python printed no JSON ({e}): {line}"));
        let results = v.as_array().expect("a list of results");
        assert_eq!(results.len(), 10, "[{test}] {host}: {v}");
        let first = &results[0];
        for (i, r) in results.iter().enumerate() {
            let when = if i < 5 { "before" } else { "after" };
            assert!(
                r.get("error").is_none(),
                "[{test}] {host}: request {i} ({when} the kill) failed: {r}"
            );
            assert_eq!(
                r["status"], 200,
                "[{test}] {host}: request {i} ({when} the kill): {r}"
            );
            assert_eq!(
                r["sha256"],
                sha256_file(&self.docroot.join(KEEPALIVE_FILES[i])),
                "[{test}] {host}: request {i} ({when} the kill, {}): body differs from the \
                 file: {r}",
                KEEPALIVE_FILES[i]
            );
            assert_eq!(
                (&r["sock_id"], &r["local"]),
                (&first["sock_id"], &first["local"]),
                "[{test}] {host}: request {i} ({when} the kill) did not use the first \
                 connection (socket reopened): {r} vs first {first}"
            );
        }
        elapsed
    }
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
