//! Failover under the content policies `static` and `sync-static` (DESIGN
//! §3, issue 8), shared by `tests/failover_policies.rs`. (`logged` routes,
//! /non-deterministic/ and /app/, are covered by the duplex failover tests
//! of [`crate::failover`], and mixed in here; note that those tests run the
//! lab's default /static/ policy, which is now `static`.)
//!
//! One duplex lab per policy and victim, and **one kill** in it, while every
//! client of the issue is in the middle of something at that moment:
//!
//! - a 50 MB static download (`/static/50m.bin`, curl at 20 MB/s), mid-way
//!   (at least 4 MiB in; the kill comes 1.5 s after wrk starts, which it
//!   does once the download is 4 MiB in);
//! - keep-alive connection A (python `http.client`), alternating static and
//!   logged requests, idle *between two requests* (it goes on after the kill);
//! - keep-alive connection B, the same mix, *in the middle of* a large static
//!   reply (`/static/50m.bin`, read at 8 MB/s) at the kill;
//! - `wrk` on `/static/` (1k, 5k, 50k, index.html in turn).
//!
//! Then: every client completes with every reply byte-exact (static replies
//! against the docroot, `/app/` against the upstream's deterministic
//! replies, `generate` by length and status), on the same connection; wrk
//! has no socket error and no non-2xx; the client's capture holds no RST
//! from the service address. The policy itself is checked as well: both
//! nodes loaded /static/ with it, the digest guard did not fall back to
//! `logged`, and the replication link carried far fewer bytes than the
//! static replies the client had received (the replies did not cross it).
//!
//! [`digest_guard`] proves the guard end to end: one byte of n2's copy of
//! 50m.bin differs, both nodes log that /static/ falls back to `logged`, the
//! reply crosses the link, and a download with the primary killed mid-way is
//! byte-exact (the primary's content; n2's copy is never spliced in).
//!
//! On failure, the node logs and configs, the capture, and the clients'
//! output are copied to `$HOTPAIR_KEEP_DIR` (default
//! `$TMPDIR/hotpair-netns-kept`), `<test>-<prefix>/`, before the lab goes down.

mod client;
mod guard;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::failover::{
    duplex_lab_with, epoch_now, ms, Capture, CaptureReport, DuplexLab, Sampler, Victim,
    DOWNLOAD_RATE, KILL_AT_BYTES, SAMPLE_EVERY,
};
use crate::wrk::parse_wrk;
use crate::{
    describe, hotpair_bin, report, sha256_file, sha256sum, url, Background, ChildLines, Lab,
    TempDir,
};

use self::client::*;
pub use self::guard::*;

/// The policy a test gives /static/ (`lab up --static-policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaticPolicy {
    Static,
    SyncStatic,
}

impl StaticPolicy {
    pub fn name(self) -> &'static str {
        match self {
            StaticPolicy::Static => "static",
            StaticPolicy::SyncStatic => "sync-static",
        }
    }
}

const BIG_FILE: &str = "50m.bin";
/// Keep-alive connection B reads its large static reply at this rate, so
/// the reply is still in flight at the kill.
const SLOW_READ_RATE: u64 = 8_000_000;
/// Connection B reports it is inside the large reply after this many bytes.
const IN_REPLY_MARK: u64 = 1 << 20;
/// The replication link may carry at most this much from the primary up to
/// the kill under `static`/`sync-static` (the logged requests' replies, a
/// few KB, the local units, heartbeats: some 20-60 KB in practice); under
/// `logged` it would carry every reply byte.
/// At the kill the client has at least 4 MiB of the download and 1 MiB of
/// connection B's large reply: 2.5 times this budget.
const LINK_BUDGET: u64 = 2 << 20;
/// The byte of n2's 50m.bin that [`digest_guard`] changes: beyond the kill
/// (20 MiB), so a reply spliced from n2's copy after the takeover would
/// carry it.
const GUARD_FLIP_AT: u64 = 48 << 20;
/// wrk's duration; the kill comes at least [`WRK_BEFORE_KILL`] into it and
/// leaves it at least [`WRK_AFTER_KILL_MIN`] seconds.
const WRK_SECS: u64 = 8;
const WRK_BEFORE_KILL: Duration = Duration::from_millis(1500);
const WRK_AFTER_KILL_MIN: u64 = 4;
/// The download is at least this far in at the kill.
const DOWNLOAD_MIN_AT_KILL: u64 = 4 << 20;
const FALLBACK_LINE: &str = "static route falls back to logged";

// ---- the download -------------------------------------------------------------

/// curl fetching /static/50m.bin at 20 MB/s into `dir/download.bin`.
struct Download {
    curl: Background,
    sampler: Sampler,
    start: Instant,
    file: PathBuf,
}

impl Download {
    fn start(lab: &Lab, dir: &Path) -> Download {
        let file = dir.join("download.bin");
        let file_s = file.to_string_lossy().into_owned();
        let u = url(&format!("/static/{BIG_FILE}"));
        let start = Instant::now();
        let curl = lab.spawn_in(
            "client",
            &[
                "curl",
                "-sS",
                "--fail",
                "--max-time",
                "60",
                "--limit-rate",
                DOWNLOAD_RATE,
                "-o",
                &file_s,
                "-w",
                "%{http_code} %{size_download}\n",
                &u,
            ],
            dir,
            "curl",
        );
        let sampler = Sampler::start(file.clone(), start, SAMPLE_EVERY);
        Download {
            curl,
            sampler,
            start,
            file,
        }
    }

    /// Waits until `bytes` have arrived (panics if curl ends first or it
    /// takes more than 30 s).
    fn wait_for(&mut self, lab: &Lab, bytes: u64) {
        while self.sampler.latest() < bytes {
            if self.curl.exited() {
                panic!(
                    "[{}] the download ended before the kill ({} bytes)\n{}",
                    lab.test,
                    self.sampler.latest(),
                    std::fs::read_to_string(&self.curl.stderr_path).unwrap_or_default()
                );
            }
            assert!(
                self.start.elapsed() < Duration::from_secs(30),
                "[{}] the download did not reach {bytes} bytes within 30 s ({} arrived)",
                lab.test,
                self.sampler.latest()
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for curl and checks the file against `src` (naming `not_from`
    /// if the download turns out to be that file); returns the failures.
    fn finish(self, lab: &Lab, src: &Path, kill: Instant, not_from: Option<&Path>) -> Vec<String> {
        let out = self.curl.wait(Duration::from_secs(65));
        let end = Instant::now();
        let samples = self.sampler.finish();
        let total = std::fs::metadata(src).expect("docroot file").len();
        let got = std::fs::metadata(&self.file).map_or(0, |m| m.len());
        let stall =
            hotpair::stall::measure(&samples, kill - self.start, end - self.start, got == total);
        report(&format!(
            "[{}] download: {got} of {total} bytes, done {:.2} s after the kill; stall {:.0} ms",
            lab.test,
            (end - kill).as_secs_f64(),
            ms(stall.after_kill)
        ));
        let mut failures = Vec::new();
        if !out.status.success() || got != total {
            failures.push(format!(
                "download of /static/{BIG_FILE}: curl failed or short ({got} of {total} bytes)\n{}",
                describe(&out)
            ));
            return failures;
        }
        let have = sha256sum(&self.file);
        if have != sha256sum(src) {
            let from = not_from
                .filter(|p| sha256sum(p) == have)
                .map_or(String::new(), |p| {
                    format!(" -- it is {}'s content", p.display())
                });
            failures.push(format!(
                "download of /static/{BIG_FILE}: SHA-256 {have} differs from {} (same \
                 length){from}",
                src.display()
            ));
        }
        failures
    }
}

// ---- lab helpers --------------------------------------------------------------

/// Bytes node `node` has sent on the replication link and had acknowledged
/// (`ss -ti` on the link's port in the node's namespace).
fn link_bytes_acked(lab: &Lab, node: &str, port: u16) -> Option<u64> {
    let port = format!(":{port}");
    lab.tcp_counter_max(
        node,
        &["(", "sport", "=", &port, "or", "dport", "=", &port, ")"],
        "bytes_acked",
    )
}

/// The replication link's port (`lab status`: replication.listen).
fn link_port(lab: &Lab) -> u16 {
    lab.initial_status()["replication"]["listen"]
        .as_str()
        .and_then(|l| l.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(7700)
}

fn read_log(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Lines of `log` containing every one of `needles`.
fn log_lines(log: &str, needles: &[&str]) -> Vec<String> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// A duplex lab with /static/ under a policy, and the test's scratch
/// directory. On a panic, copies the lab's logs and configs and the
/// scratch files to `$HOTPAIR_KEEP_DIR/<test>-<prefix>/` before the lab
/// goes down.
struct KeptLab {
    lab: DuplexLab,
    tmp: TempDir,
    /// When the test began (before `lab up`).
    began: Instant,
}

impl KeptLab {
    /// `None` when skipped (not root).
    fn up(test: &str, policy: &str) -> Option<KeptLab> {
        let began = Instant::now();
        let lab = duplex_lab_with(test, &["--static-policy", policy])?;
        Some(KeptLab {
            lab,
            tmp: TempDir::new(test),
            began,
        })
    }
}

impl std::ops::Deref for KeptLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl Drop for KeptLab {
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        let base = std::env::var_os("HOTPAIR_KEEP_DIR").map_or_else(
            || std::env::temp_dir().join("hotpair-netns-kept"),
            PathBuf::from,
        );
        let dest = base.join(format!("{}-{}", self.lab.test, self.lab.prefix));
        if std::fs::create_dir_all(&dest).is_err() {
            return;
        }
        let mut copied = 0;
        for dir in [self.lab.state_dir(), self.tmp.path().to_owned()] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.filter_map(Result::ok) {
                let p = e.path();
                let keep = p.is_file()
                    && p.extension().is_some_and(|x| {
                        ["log", "toml", "json", "pcap", "out", "err"]
                            .iter()
                            .any(|k| x == *k)
                    });
                if keep {
                    if let Some(name) = p.file_name() {
                        if std::fs::copy(&p, dest.join(name)).is_ok() {
                            copied += 1;
                        }
                    }
                }
            }
        }
        report(&format!(
            "[{}] kept {copied} files (node logs, configs, capture, client output) in {}",
            self.lab.test,
            dest.display()
        ));
    }
}

/// A failure line unless the capture holds packets from the service address
/// and no RST from it (`kill`: seconds since the epoch, to date the RSTs).
fn rst_failure(cap: &CaptureReport, kill: f64) -> Option<String> {
    if cap.packets == 0 {
        return Some(format!(
            "the client's capture holds no packet from {}",
            crate::SERVICE
        ));
    }
    if cap.rsts.is_empty() {
        return None;
    }
    let dated = cap.dated_rsts(kill);
    Some(format!(
        "{} RST segment(s) from {} in the client's capture (MAC 02:68:70:00:00:01 = n1, \
         :02 = n2):\n{}\n{}",
        cap.rsts.len(),
        crate::SERVICE,
        dated.join("\n"),
        cap.context.join("\n")
    ))
}

/// Failure lines unless the failover happened once, after the kill: the
/// victim's log (`victim_log`) must not show it declaring its peer dead or
/// being fenced, and the survivor's exactly one "peer declared dead".
fn takeover_failures(
    victim: &str,
    victim_log: &str,
    survivor: &str,
    survivor_log: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    let early: Vec<String> = [&["peer declared dead"][..], &["fenced"][..]]
        .iter()
        .flat_map(|n| log_lines(victim_log, n))
        .collect();
    if !early.is_empty() {
        failures.push(format!(
            "a failover before the kill: the victim {victim} (alive then) declared its peer dead \
             or was fenced -- a false failover, e.g. heartbeats late under load:\n    {}",
            early.join("\n    ")
        ));
    }
    let dead = log_lines(survivor_log, &["peer declared dead"]);
    if dead.len() != 1 {
        failures.push(format!(
            "the survivor {survivor} declared its peer dead {} times (want once, after the \
             kill):\n    {}",
            dead.len(),
            dead.join("\n    ")
        ));
    }
    failures
}

fn fail_if(lab: &Lab, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "[{}] {} check(s) failed:\n- {}",
        lab.test,
        failures.len(),
        failures.join("\n- ")
    );
}

// ---- the scenario -------------------------------------------------------------

/// One duplex lab with /static/ under `policy`, one SIGKILL of `victim`
/// while a download, two keep-alive connections and wrk are in flight (see
/// the module docs); every client checked afterwards.
pub fn scenario(test: &str, policy: StaticPolicy, victim: Victim) {
    let Some(lab) = KeptLab::up(test, policy.name()) else {
        return;
    };
    let (tmp, began) = (&lab.tmp, lab.began);
    let docroot = lab.docroot();
    let state = lab.state_dir();
    let up_secs = began.elapsed().as_secs_f64();

    // Both nodes serve /static/ under the policy.
    for node in ["n1", "n2"] {
        let log = read_log(&state.join(format!("{node}.log")));
        let want = format!("policy=\"{}\"", policy.name());
        assert!(
            !log_lines(&log, &["files loaded", "prefix=/static/", &want]).is_empty(),
            "[{test}] {node} did not load /static/ with {want}; its log:\n{log}"
        );
    }

    let cap = Capture::start(&lab, tmp.path());

    // A: four requests, static and logged in turn; the kill comes before the fifth.
    let plan_a = serde_json::json!([
        req("/static/1k.bin"),
        req("/non-deterministic/x?size=3000"),
        req("/static/5k.bin"),
        req("/app/before-kill"),
        "PAUSE",
        req("/static/5k.bin"),
        req("/non-deterministic/x?size=20000"),
        req("/static/50k.bin"),
        req("/app/blob?size=70000"),
        req("/static/1k.bin"),
        req("/non-deterministic/x?size=100000"),
        req("/static/index.html"),
    ]);
    let mut ka = PyClient::start(&lab, "A (kill between requests)", &plan_a);
    ka.wait_line(&lab, "READY", Duration::from_secs(30));
    let a_ready = began.elapsed();

    // B: static and logged in turn, then a large static reply read slowly:
    // the kill lands inside it.
    let big = format!("/static/{BIG_FILE}");
    let plan_b = serde_json::json!([
        req("/static/1k.bin"),
        req("/non-deterministic/x?size=5000"),
        req("/app/x?size=3000"),
        req("/static/5k.bin"),
        { "path": big, "rate": SLOW_READ_RATE, "mark": IN_REPLY_MARK },
        req("/non-deterministic/x?size=30000"),
        req("/static/1k.bin"),
        req("/app/after-kill"),
        req("/static/5k.bin"),
    ]);
    const B_BIG: usize = 4;
    let mut kb = PyClient::start(&lab, "B (kill during a reply)", &plan_b);
    kb.wait_line(&lab, "INREPLY", Duration::from_secs(30));
    let b_in_reply = began.elapsed();

    // The download, 4 MiB in before wrk starts; the kill once wrk has run
    // 1.5 s (the download is then mid-way: 20 MB/s at most, 52 MB).
    let mut dl = Download::start(&lab, tmp.path());
    dl.wait_for(&lab, DOWNLOAD_MIN_AT_KILL);

    // wrk on /static/, across the kill.
    let script = tmp.path().join("static.lua");
    std::fs::write(
        &script,
        "local paths = {\"/static/1k.bin\", \"/static/5k.bin\", \"/static/50k.bin\", \
         \"/static/index.html\"}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  \
         return wrk.format(\"GET\", paths[(i % #paths) + 1])\nend\n",
    )
    .expect("writing the wrk script");
    let script_s = script.to_string_lossy().into_owned();
    let wrk_url = url("/static/");
    let wrk_secs = format!("-d{WRK_SECS}s");
    let wrk_start = Instant::now();
    let wrk = lab.spawn_in(
        "client",
        &[
            "wrk",
            "-t1",
            "-c8",
            &wrk_secs,
            "--timeout",
            "5s",
            "-s",
            &script_s,
            &wrk_url,
        ],
        tmp.path(),
        "wrk",
    );

    while wrk_start.elapsed() < WRK_BEFORE_KILL {
        thread::sleep(Duration::from_millis(2));
    }
    let at_kill = dl.sampler.latest();
    assert!(
        !dl.curl.exited(),
        "[{test}] the download ended before the kill"
    );
    let port = link_port(&lab);
    let link = link_bytes_acked(&lab, "n1", port);
    let kill_epoch = epoch_now();
    let kill = lab.kill(victim.node());
    ka.go();
    report(&format!(
        "[{test}] /static/ {}: SIGKILL {} ({}) {:.2} s into wrk, {:.1} MiB into the download; \
         link n1->n2 had carried {} (test time: lab up {up_secs:.1} s, A between requests \
         {:.1} s, B in its large reply {:.1} s, kill {:.1} s)",
        policy.name(),
        victim.node(),
        victim.role(),
        (kill - wrk_start).as_secs_f64(),
        at_kill as f64 / (1 << 20) as f64,
        link.map_or("? (ss found no link socket)".to_owned(), |b| format!(
            "{:.2} MiB",
            b as f64 / (1 << 20) as f64
        )),
        a_ready.as_secs_f64(),
        b_in_reply.as_secs_f64(),
        (kill - began).as_secs_f64(),
    ));

    let mut failures = Vec::new();
    failures.extend(dl.finish(&lab, &docroot.join(BIG_FILE), kill, None));
    failures.extend(takeover_failures(
        victim.node(),
        &read_log(&state.join(format!("{}.log", victim.node()))),
        victim.survivor(),
        &read_log(&state.join(format!("{}.log", victim.survivor()))),
    ));
    for (who, client, plan) in [("A", ka, &plan_a), ("B", kb, &plan_b)] {
        match client.results(Duration::from_secs(60)) {
            Ok(results) => {
                failures.extend(check_replies(&docroot, who, plan, &results));
                if who == "A" {
                    // The kill fell between requests 3 and 4.
                    let (end3, start4) = (
                        time_of(&results, 3, "t_end"),
                        time_of(&results, 4, "t_start"),
                    );
                    if !(end3 < kill_epoch && kill_epoch < start4) {
                        failures.push(format!(
                            "A: the kill ({kill_epoch:.3}) did not fall between request 3 \
                             (ended {end3:.3}) and request 4 (started {start4:.3})"
                        ));
                    }
                } else {
                    let (head, end) = (
                        time_of(&results, B_BIG, "t_head"),
                        time_of(&results, B_BIG, "t_end"),
                    );
                    if !(head < kill_epoch && kill_epoch < end) {
                        failures.push(format!(
                            "B: the kill ({kill_epoch:.3}) did not land inside the {big} reply \
                             (head {head:.3}, end {end:.3}) -- a timing problem of the test"
                        ));
                    } else {
                        report(&format!(
                            "[{test}] B: the {big} reply was in flight at the kill and ended \
                             {:.2} s after it; {} requests byte-exact on one connection",
                            end - kill_epoch,
                            results.len()
                        ));
                    }
                }
            }
            Err(e) => failures.push(e),
        }
    }

    let out = wrk.wait(Duration::from_secs(40));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let r = parse_wrk(&text);
    report(&format!(
        "[{test}] wrk: {} requests, {:.0} req/s, max latency {}, socket errors {}, non-2xx {}",
        r.requests,
        r.requests_per_sec,
        r.latency_max,
        r.socket_errors(),
        r.non_2xx
    ));
    let wrk_after = WRK_SECS.saturating_sub((kill - wrk_start).as_secs());
    if wrk_after < WRK_AFTER_KILL_MIN {
        failures.push(format!(
            "wrk ran only ~{wrk_after} s after the kill ({:.2} s into its {WRK_SECS} s), want \
             {WRK_AFTER_KILL_MIN} s -- a timing problem of the test (slow machine?)",
            (kill - wrk_start).as_secs_f64()
        ));
    }
    if !out.status.success() || r.requests == 0 || r.socket_errors() != 0 || r.non_2xx != 0 {
        failures.push(format!(
            "wrk on /static/ across the kill: {} requests, socket errors (connect, read, write, \
             timeout) {:?}, non-2xx {}\n{}",
            r.requests,
            (r.connect, r.read, r.write, r.timeout),
            r.non_2xx,
            describe(&out)
        ));
    }

    // The policy held: no fallback to logged, and the static replies did not
    // cross the link.
    for node in ["n1", "n2"] {
        let fell = log_lines(
            &read_log(&state.join(format!("{node}.log"))),
            &[FALLBACK_LINE],
        );
        if !fell.is_empty() {
            failures.push(format!(
                "{node} logged a digest-guard fallback, so /static/ was not {}: {fell:?}",
                policy.name()
            ));
        }
    }
    match link {
        Some(b) if b < LINK_BUDGET => {}
        Some(b) => failures.push(format!(
            "the link carried {b} bytes from n1 before the kill, {at_kill} bytes of \
             /static/{BIG_FILE} had reached the client: the static replies crossed the link \
             (want < {LINK_BUDGET} under {})",
            policy.name()
        )),
        None => failures.push(format!(
            "no replication link socket on port {port} in n1 before the kill"
        )),
    }

    if lab.node_alive(victim.node()) {
        failures.push(format!(
            "{} ({}) still alive after the kill",
            victim.node(),
            victim.role()
        ));
    }
    if !lab.node_alive(victim.survivor()) {
        failures.push(format!(
            "the survivor {} died too (see its log)",
            victim.survivor()
        ));
    }
    let c = cap.stop();
    failures.extend(rst_failure(&c, kill_epoch));
    fail_if(&lab, &failures);
    report(&format!(
        "[{test}] capture: {} packets from the service address, 0 RST",
        c.packets
    ));
    report(&format!(
        "[{test}] PASS: /static/ {}, SIGKILL {} ({}); {:.1} s",
        policy.name(),
        victim.node(),
        victim.role(),
        began.elapsed().as_secs_f64()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_pattern_matches_the_app() {
        // upstream.py: PATTERN_BLOCK = bytes((k*131+17) % 251 for k in range(251)) * 256
        let p = upstream_pattern(600);
        assert_eq!(&p[..3], &[17, 148, 28]);
        assert_eq!(p[251], p[0]);
        assert_eq!(p[599], p[599 - 502]);
    }

    #[test]
    fn expectations() {
        let d = Path::new("/nonexistent");
        match expect(d, "/non-deterministic/x?size=20000") {
            Expect::Length(n) => assert_eq!(n, 20000),
            Expect::Exact(..) => panic!("generate is checked by length"),
        }
        match expect(d, "/app/after-kill") {
            Expect::Exact(sha, n) => {
                let body = b"hotpair lab upstream: GET /app/after-kill\n";
                assert_eq!((sha, n), (crate::sha256_hex(body), body.len() as u64));
            }
            Expect::Length(_) => panic!("upstream replies are exact"),
        }
    }
}
