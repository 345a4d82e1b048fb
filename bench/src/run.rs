//! The bench's run: labs up, every measurement in turn with progress on
//! stderr, then results.json, the plots and report.md.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hotpair::stall::{measure, Sampler};
use sha2::{Digest, Sha256};

use super::labs::{self, Lab};
use super::loadgen::LatencySummary;
use super::model::*;
use super::nginx::{Nginx, TlsFiles, NGINX_ADDRESS, TLS_SUITE};
use super::{idle, markdown, part, plot, proxy, report, stats, tls, wrk};

pub struct Options {
    pub out: PathBuf,
    pub quick: bool,
    pub node_cpus: f64,
    pub seconds: f64,
    pub kills: u32,
    pub only: Vec<String>,
    /// Another hotpair binary for the proxy part's baseline row.
    pub baseline_bin: Option<PathBuf>,
    /// Stall series to run (`switchover`, `SIGKILL`, …); empty: all.
    pub stall_signals: Vec<String>,
    /// The stall client's `tcp_rmem` maximum in bytes; 0: the kernel's.
    pub stall_client_rmem: u64,
}

const SERVICE: &str = "10.77.0.10";
const SECOND_ADDRESS: &str = "10.77.0.11";
const STALL_FILE: &str = "stall.bin";
/// curl's `--limit-rate` for the stall download: slow enough that the
/// signal lands mid-reply.
const STALL_RATE: &str = "20M";

/// The stall download's size and how much has arrived when the victim is
/// signalled: 50 MB / 20 MiB (--quick: 16 / 8 MiB, lab start-up is faster).
fn stall_sizes(quick: bool) -> (u64, u64) {
    if quick {
        (16 << 20, 8 << 20)
    } else {
        (50 << 20, 20 << 20)
    }
}
/// Peak search: stop when a step adds less than this.
const MIN_GROWTH: f64 = 0.05;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

struct Bench<'a> {
    o: &'a Options,
    exe: PathBuf,
    base: String,
    docroot: PathBuf,
    stall_docroot: PathBuf,
    logs: PathBuf,
    labs: HashMap<Config, Lab>,
    nginx: Option<Nginx>,
    start: Instant,
    r: Results,
}

/// Reply sizes (bytes) of the peak searches (5 KB for Fig. 6, 50 KB for
/// the targets) and of the latency runs (1 KB for the link-floor target).
fn sizes(quick: bool, latency: bool) -> Vec<u64> {
    let k: &[u64] = match (quick, latency) {
        (false, _) => &[1, 5, 10, 20, 50, 100],
        (true, false) => &[5, 50],
        (true, true) => &[1, 50],
    };
    k.iter().map(|k| k * 1024).collect()
}

fn steps(quick: bool) -> &'static [u32] {
    if quick {
        &[1, 8]
    } else {
        &[1, 2, 4, 8, 16, 32, 64]
    }
}

/// The lab a stall run kills a node of: a fresh duplex lab under prefix
/// letter `tag`; `logged`: /static/ replies logged (else the lab's
/// default, `static`); `tls`: HTTPS on 443 too (`lab up --tls`, the
/// bench's one suite); `https`: the download is over HTTPS (else plain
/// HTTP on 80).
#[derive(Clone, Copy, Debug)]
struct StallLab {
    tag: char,
    logged: bool,
    tls: bool,
    https: bool,
}

fn file_name(size: u64) -> String {
    format!("{}k.bin", size / 1024)
}

impl Bench<'_> {
    fn progress(&self, what: &str) {
        let t = self.start.elapsed().as_secs();
        eprintln!("[{:>2}:{:02}] {what}", t / 60, t % 60);
    }

    fn wants(&self, part: &str) -> bool {
        self.o.only.is_empty() || self.o.only.iter().any(|p| p == part)
    }

    fn wants_stall(&self, signal: &str) -> bool {
        self.o.stall_signals.is_empty()
            || self
                .o
                .stall_signals
                .iter()
                .any(|s| s.eq_ignore_ascii_case(signal))
    }

    /// `lab up` arguments for configuration `c`: (prefix, args).
    fn lab_args(&self, c: Config) -> Option<(String, Vec<String>)> {
        let letter = match c {
            Config::Simplex => 's',
            Config::Duplex => 'd',
            Config::DuplexMi => 'm',
            Config::DualRole => 'r',
            Config::Static => 't',
            Config::SyncStatic => 'y',
            Config::DuplexPlaintext => 'p',
            Config::Nginx => return None,
        };
        let prefix = format!("{}{letter}", self.base);
        let mut args: Vec<String> = vec!["--mode".into()];
        args.push(
            match c {
                Config::Simplex => "simplex",
                Config::DualRole => "dual-role",
                _ => "duplex",
            }
            .into(),
        );
        // Where the lab knows content policies, /static/ defaults to `static`:
        // duplex and duplex-mi are the paper's reply-logging scheme, `logged`.
        let policy = match c {
            Config::Duplex | Config::DuplexMi | Config::DuplexPlaintext => Some("logged"),
            Config::Static => Some("static"),
            Config::SyncStatic => Some("sync-static"),
            _ => None,
        };
        if let Some(p) = policy.filter(|_| self.r.meta.static_policy_available) {
            args.extend(["--static-policy".into(), p.into()]);
        }
        if c == Config::DuplexMi {
            args.extend(["--repl-net".into(), "dedicated".into()]);
        }
        if c == Config::DuplexPlaintext {
            args.push("--link-plaintext".into());
        }
        args.extend([
            "--node-cpus".into(),
            self.o.node_cpus.to_string(),
            "--docroot".into(),
            self.docroot.display().to_string(),
        ]);
        Some((prefix, args))
    }

    /// Runs a part that brings up labs of its own (`idle`, `proxy`, `tls`)
    /// with this run's context.
    fn part<T>(&self, run: impl FnOnce(&part::Ctx) -> Result<T>) -> Result<T> {
        let progress = |s: &str| self.progress(s);
        run(&part::Ctx {
            exe: &self.exe,
            base: &self.base,
            logs: &self.logs,
            docroot: &self.docroot,
            quick: self.o.quick,
            node_cpus: self.o.node_cpus,
            seconds: self.o.seconds,
            progress: &progress,
            interrupted: &check_interrupt,
        })
    }

    /// Brings the labs of `configs` up, all at once (each under its own prefix).
    fn labs_up(&mut self, configs: &[Config]) -> Result<()> {
        let jobs: Vec<(Config, String, Vec<String>)> = configs
            .iter()
            .filter_map(|&c| self.lab_args(c).map(|(p, a)| (c, p, a)))
            .collect();
        for (c, p, a) in &jobs {
            self.progress(&format!("lab up {p}: {} ({})", c.label(), a.join(" ")));
        }
        let (labs, first_err) = labs::up_all(&self.exe, &self.logs, &jobs);
        self.labs.extend(labs);
        match first_err {
            Some(e) => Err(e),
            None => {
                self.progress("labs up");
                Ok(())
            }
        }
    }

    fn lab(&self, c: Config) -> Result<&Lab> {
        self.labs
            .get(&c)
            .with_context(|| format!("no lab for {}", c.label()))
    }

    fn cpu(&self, c: Config) -> Result<Vec<(String, u64)>> {
        match c {
            Config::Nginx => self.nginx.as_ref().context("nginx not running")?.cpu_ns(),
            _ => self.lab(c)?.cpu_ns(),
        }
    }

    fn path(w: Workload, size: u64) -> String {
        match w {
            Workload::Generate => format!("/non-deterministic/bench?size={size}"),
            Workload::Files => format!("/static/{}", file_name(size)),
        }
    }

    /// One closed-loop point: wrk with `conns` connections (dual-role: half
    /// on each address), the servers' CPU time around it.
    fn point(&self, c: Config, w: Workload, size: u64, conns: u32) -> Result<Point> {
        check_interrupt()?;
        let (ns, addrs): (String, Vec<&str>) = match c {
            Config::Nginx => (self.lab(Config::Simplex)?.client_ns(), vec![NGINX_ADDRESS]),
            Config::DualRole => (self.lab(c)?.client_ns(), vec![SERVICE, SECOND_ADDRESS]),
            _ => (self.lab(c)?.client_ns(), vec![SERVICE]),
        };
        let per = (conns / addrs.len() as u32).max(1);
        let path = Self::path(w, size);
        let cmds = addrs
            .iter()
            .map(|a| wrk::command(&ns, &format!("http://{a}{path}"), per, self.o.seconds))
            .collect();
        let before = self.cpu(c)?;
        let t0 = Instant::now();
        let res = wrk::run_all(cmds)
            .with_context(|| format!("{} {} {}", c.label(), w.label(), markdown::kb(size)))?;
        let wall_s = t0.elapsed().as_secs_f64();
        let cpu_ns = labs::cpu_delta(&before, &self.cpu(c)?);
        // wrk's own duration is the measured window; CPU covers its start-up too.
        let wrk = wrk::WrkResult::combine(&res);
        Ok(Point {
            conns: per * addrs.len() as u32,
            wall_s: wall_s.max(wrk.seconds),
            wrk,
            cpu_ns,
            quota: Some(self.o.node_cpus),
        })
    }

    fn peak_search(&mut self, c: Config, w: Workload, size: u64) -> Result<()> {
        let mut points: Vec<Point> = Vec::new();
        for &n in steps(self.o.quick) {
            let n = if c == Config::DualRole { n.max(2) } else { n };
            if points.last().is_some_and(|p| p.conns >= n) {
                continue;
            }
            let p = self.point(c, w, size, n)?;
            self.progress(&format!(
                "{} peak {} {}: {} clients → {:.0} req/s (busiest server at {:.0} % of quota)",
                w.label(),
                c.label(),
                markdown::kb(size),
                p.conns,
                p.wrk.rps,
                p.saturation().unwrap_or(0.0) * 100.0
            ));
            points.push(p);
            let rates: Vec<f64> = points.iter().map(|p| p.wrk.rps).collect();
            if !stats::keep_raising(&rates, MIN_GROWTH) {
                break;
            }
        }
        self.r.peaks.push(PeakSearch {
            config: c,
            workload: w,
            size,
            points,
        });
        Ok(())
    }

    fn latency(&mut self, c: Config, w: Workload, size: u64) -> Result<()> {
        let p = self.point(c, w, size, 1)?;
        self.progress(&format!(
            "latency {} {} {}: mean {:.0} µs, p50 {:.0} µs, p99 {:.0} µs",
            w.label(),
            c.label(),
            markdown::kb(size),
            p.wrk.mean_us,
            p.wrk.p50_us,
            p.wrk.p99_us
        ));
        self.r.latency.push(Measured {
            config: c,
            workload: w,
            size,
            point: p,
        });
        Ok(())
    }

    fn open_loop(&mut self, c: Config, size: u64, rate: f64) -> Result<()> {
        check_interrupt()?;
        let lab = self.lab(c)?;
        let secs = if self.o.quick { 3.0 } else { 30.0 };
        let conns = 32;
        let o = labs::in_ns(&lab.client_ns(), &self.exe)
            .args([
                "bench",
                "loadgen",
                "--addr",
                &format!("{SERVICE}:80"),
                "--path",
            ])
            .arg(Self::path(Workload::Files, size))
            .args([
                "--rate",
                &format!("{rate:.0}"),
                "--duration",
                &secs.to_string(),
            ])
            .args(["--conns", &conns.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .context("running hotpair bench loadgen")?;
        let text = String::from_utf8_lossy(&o.stdout);
        if !o.status.success() {
            bail!(
                "loadgen against {} failed ({}): {text}",
                c.label(),
                o.status
            );
        }
        let summary: LatencySummary =
            serde_json::from_str(text.trim()).context("parsing loadgen output")?;
        self.progress(&format!(
            "open loop {} {} at {rate:.0} req/s: p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs",
            c.label(),
            markdown::kb(size),
            summary.p50_us,
            summary.p99_us,
            summary.p999_us,
            summary.max_us
        ));
        self.r.open_loop.push(OpenLoop {
            config: c,
            size,
            rate,
            conns,
            summary,
        });
        Ok(())
    }

    fn rtt(&mut self, c: Config, net: &str) -> Result<()> {
        check_interrupt()?;
        let lab = self.lab(c)?;
        let (n1, n2) = (lab.node("n1")?, lab.node("n2")?);
        let addr = format!(
            "{}:7799",
            n1.link_address.context("n1 has no link address")?
        );
        let mut server = labs::in_ns(&n1.namespace, &self.exe)
            .args(["bench", "echo", "--listen", &addr])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the echo server")?;
        let mut line = String::new();
        BufReader::new(server.stdout.take().context("echo stdout")?).read_line(&mut line)?;
        if !line.starts_with("listening") {
            let _ = server.kill();
            let _ = server.wait();
            bail!("echo server in {} did not start", n1.namespace);
        }
        let count = if self.o.quick { 2_000 } else { 20_000 };
        let o = labs::in_ns(&n2.namespace, &self.exe)
            .args([
                "bench",
                "ping",
                "--connect",
                &addr,
                "--count",
                &count.to_string(),
            ])
            .stderr(Stdio::inherit())
            .output();
        let _ = server.kill();
        let _ = server.wait();
        let o = o.context("running the ping client")?;
        if !o.status.success() {
            bail!("ping {addr} from {} failed", n2.namespace);
        }
        let summary: LatencySummary =
            serde_json::from_slice(&o.stdout).context("parsing ping output")?;
        self.progress(&format!(
            "link RTT ({net}) n2 → n1: p50 {:.0} µs, p99 {:.0} µs",
            summary.p50_us, summary.p99_us
        ));
        self.r.rtt.push(Rtt {
            net: net.into(),
            from: "n2".into(),
            to: "n1".into(),
            summary,
        });
        Ok(())
    }

    /// One kill of a fresh duplex lab (`how`): the stall and the longest
    /// pause before the signal, in ms.
    fn one_stall(
        &self,
        how: StallLab,
        victim: &str,
        signal: i32,
        want_sha: &str,
        i: u32,
    ) -> Result<(f64, f64, (u64, u64))> {
        let (lab, hb, pid) = self.victim_lab(how, victim, i)?;
        if self.o.stall_client_rmem > 0 {
            let max = self.o.stall_client_rmem;
            let st = Command::new("ip")
                .args(["netns", "exec", &lab.client_ns(), "sysctl", "-q", "-w"])
                .arg(format!("net.ipv4.tcp_rmem=4096 {} {max}", max.min(131_072)))
                .status()
                .context("running sysctl in the client namespace")?;
            if !st.success() {
                bail!("setting the client's tcp_rmem failed ({st})");
            }
        }
        let prefix = lab.prefix.clone();
        let file = self.logs.join(format!("stall-{prefix}.bin"));
        let _ = std::fs::remove_file(&file);
        // HTTPS: curl (OpenSSL) checks the lab's certificate, which is for
        // the service address too.
        let (scheme, tls_args) = if how.https {
            let ca = TlsFiles::of(&lab)?.ca;
            (
                "https",
                vec!["--cacert".to_string(), ca.display().to_string()],
            )
        } else {
            ("http", Vec::new())
        };
        let start = Instant::now();
        let mut curl = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.client_ns(),
                "curl",
                "-sS",
                "--fail",
                "--max-time",
                "60",
            ])
            .args(&tls_args)
            .args(["--limit-rate", STALL_RATE, "-o"])
            .arg(&file)
            .arg(format!("{scheme}://{SERVICE}/static/{STALL_FILE}"))
            .stderr(Stdio::piped())
            .spawn()
            .context("starting curl")?;
        let sampler = Sampler::start(file.clone(), start, Duration::from_millis(10));
        let deadline = start + Duration::from_secs(5);
        let kill_at_bytes = stall_sizes(self.o.quick).1;
        while sampler.latest() < kill_at_bytes && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let kill_at = start.elapsed();
        // SAFETY: kill(2) on the node's pid, which the lab started.
        unsafe { libc::kill(pid, signal) };
        let st = curl.wait()?;
        let end = start.elapsed();
        if signal == libc::SIGSTOP {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let samples = sampler.finish();
        let mut err = String::new();
        if let Some(mut e) = curl.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        if !st.success() {
            bail!("download during the {victim} kill failed ({st}): {err}");
        }
        let sha = sha256(&file)?;
        let _ = std::fs::remove_file(&file);
        if sha != want_sha {
            bail!("download during the {victim} kill: wrong SHA-256 {sha}, want {want_sha}");
        }
        drop(lab);
        let s = measure(&samples, kill_at, end, true);
        Ok((
            s.after_kill.as_secs_f64() * 1e3,
            s.before_kill.as_secs_f64() * 1e3,
            hb,
        ))
    }

    /// A fresh duplex lab on the stall docroot (`how`), its heartbeat
    /// settings and the victim's pid.
    fn victim_lab(&self, how: StallLab, victim: &str, i: u32) -> Result<(Lab, (u64, u64), i32)> {
        check_interrupt()?;
        let prefix = format!("{}{}", self.base, how.tag);
        let mut args: Vec<String> = ["--mode", "duplex", "--docroot"]
            .iter()
            .map(|s| s.to_string())
            .chain([self.stall_docroot.display().to_string()])
            .collect();
        if how.logged {
            args.extend(["--static-policy".into(), "logged".into()]);
        }
        if how.tls {
            args.extend([
                "--tls".into(),
                "--tls-cipher-suites".into(),
                TLS_SUITE.into(),
            ]);
        }
        let lab = Lab::up(
            &self.exe,
            &prefix,
            &args,
            &self.logs.join(format!("lab-{prefix}-{i}.log")),
        )?;
        let hb = lab
            .heartbeat_ms()
            .context("no heartbeat settings in lab status")?;
        let node = lab.node(if victim == "primary" { "n1" } else { "n2" })?;
        let pid = node.pid.context("victim has no pid")?;
        Ok((lab, hb, pid))
    }

    /// One planned switchover (SIGTERM, the path `hotpair switchover`
    /// takes) of a fresh duplex lab under open-loop keep-alive requests:
    /// the worst request latency (counted from when each was due, so a
    /// request held up by the switchover counts the whole gap), in ms.
    /// Also the worst request due in the first 1.3 s, before the stop
    /// (at about 1.45 s of the generator's clock): the baseline.
    fn one_switchover(&self, victim: &str, i: u32) -> Result<(f64, f64, (u64, u64))> {
        let how = StallLab {
            tag: 'w',
            logged: false,
            tls: false,
            https: false,
        };
        let (lab, hb, pid) = self.victim_lab(how, victim, i)?;
        let secs = 3.0;
        let child = labs::in_ns(&lab.client_ns(), &self.exe)
            .args(["bench", "loadgen", "--addr", &format!("{SERVICE}:80")])
            .args(["--path", "/static/index.html", "--rate", "2000"])
            .args(["--duration", &secs.to_string(), "--conns", "4"])
            .args(["--split-at", "1.3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting hotpair bench loadgen")?;
        std::thread::sleep(Duration::from_secs_f64(secs / 2.0));
        // SAFETY: kill(2) on the node's pid, which the lab started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let o = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&o.stdout);
        if !o.status.success() {
            bail!(
                "requests across the {victim} switchover failed ({}): {text} {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let summary: LatencySummary =
            serde_json::from_str(text.trim()).context("parsing loadgen output")?;
        if summary.errors > 0 {
            bail!(
                "{} request(s) failed across the {victim} switchover",
                summary.errors
            );
        }
        drop(lab);
        let before = summary
            .max_before_us
            .context("loadgen reported no baseline (--split-at)")?;
        Ok((summary.max_us / 1e3, before / 1e3, hb))
    }

    fn stalls(&mut self) -> Result<()> {
        // Planned switchovers, measured by requests (1 ms resolution, not
        // a download's 10 ms sampling and curl's rate-limit pauses).
        let switchovers: &[&str] = if self.wants_stall("switchover") {
            &["primary", "owner"]
        } else {
            &[]
        };
        for &victim in switchovers {
            let mut set = StallSet {
                victim: victim.into(),
                signal: "switchover".into(),
                stalls_ms: Vec::new(),
                heartbeat_interval_ms: 0,
                heartbeat_timeout_ms: 0,
                baseline_ms: Vec::new(),
            };
            for i in 0..self.o.kills {
                let (ms, before, (hi, ht)) = self.one_switchover(victim, i)?;
                set.heartbeat_interval_ms = hi;
                set.heartbeat_timeout_ms = ht;
                set.stalls_ms.push(ms);
                set.baseline_ms.push(before);
                self.progress(&format!(
                    "switchover {victim} {}/{}: worst request {ms:.1} ms \
                     (before the stop: {before:.1} ms)",
                    i + 1,
                    self.o.kills
                ));
            }
            self.r.stalls.push(set);
        }
        let want = sha256(&self.stall_docroot.join(STALL_FILE))?;
        // The download's reply is logged, as before content policies.
        let how = StallLab {
            tag: 'k',
            logged: self.r.meta.static_policy_available,
            tls: false,
            https: false,
        };
        // SIGTERM: a planned stop — the node exits, its kernel closes the
        // link, and the peer takes over without waiting for the heartbeat.
        for (signal, sname) in [
            (libc::SIGKILL, "SIGKILL"),
            (libc::SIGSTOP, "SIGSTOP"),
            (libc::SIGTERM, "SIGTERM"),
        ] {
            if !self.wants_stall(sname) {
                continue;
            }
            for victim in ["primary", "owner"] {
                let mut set = StallSet {
                    victim: victim.into(),
                    signal: sname.into(),
                    stalls_ms: Vec::new(),
                    heartbeat_interval_ms: 0,
                    heartbeat_timeout_ms: 0,
                    baseline_ms: Vec::new(),
                };
                for i in 0..self.o.kills {
                    let (ms, before, (hi, ht)) = self.one_stall(how, victim, signal, &want, i)?;
                    set.heartbeat_interval_ms = hi;
                    set.heartbeat_timeout_ms = ht;
                    set.stalls_ms.push(ms);
                    set.baseline_ms.push(before);
                    self.progress(&format!(
                        "stall {victim} {sname} {}/{}: {ms:.0} ms (before the signal: \
                         {before:.0} ms; heartbeat {hi}/{ht} ms)",
                        i + 1,
                        self.o.kills
                    ));
                }
                self.r.stalls.push(set);
            }
        }
        Ok(())
    }

    /// The failover stall over HTTPS beside HTTP's: SIGKILL of the
    /// primary and of the owner, /static/ `logged` (as the plain series)
    /// then `static` (the owner seals its own copy; not in --quick). Each
    /// kill's HTTPS run has an HTTP one beside it — the same `--tls` lab
    /// built afresh, the download on port 80 — in alternating order, so
    /// whatever the machine does hits both alike.
    fn tls_stalls(&mut self) -> Result<()> {
        let want = sha256(&self.stall_docroot.join(STALL_FILE))?;
        let policies: &[&str] = if self.o.quick {
            &["logged"]
        } else {
            &["logged", "static"]
        };
        for &policy in policies {
            for victim in ["primary", "owner"] {
                let set = || StallSet {
                    victim: victim.into(),
                    signal: "SIGKILL".into(),
                    stalls_ms: Vec::new(),
                    heartbeat_interval_ms: 0,
                    heartbeat_timeout_ms: 0,
                    baseline_ms: Vec::new(),
                };
                // [HTTP, HTTPS]
                let mut sets = [set(), set()];
                for i in 0..self.o.kills {
                    let order: [usize; 2] = if i % 2 == 0 { [0, 1] } else { [1, 0] };
                    for k in order {
                        let https = k == 1;
                        let how = StallLab {
                            tag: if https { 'g' } else { 'h' },
                            logged: policy == "logged",
                            tls: true,
                            https,
                        };
                        let scheme = if https { "HTTPS" } else { "HTTP" };
                        // Not curl (one_stall): its --limit-rate pauses differ
                        // between the schemes; tls/stall.rs says why.
                        let (lab, (hi, ht), pid) = self.victim_lab(how, victim, i)?;
                        let (ms, before) = tls::stall::one_kill(
                            &lab,
                            pid,
                            https,
                            &format!("/static/{STALL_FILE}"),
                            stall_sizes(self.o.quick).1,
                            &want,
                        )
                        .with_context(|| format!("{scheme} stall, {policy}, {victim} killed"))?;
                        drop(lab);
                        sets[k].heartbeat_interval_ms = hi;
                        sets[k].heartbeat_timeout_ms = ht;
                        sets[k].stalls_ms.push(ms);
                        // The download's own longest pause before the
                        // signal: results.json.
                        sets[k].baseline_ms.push(before);
                        self.progress(&format!(
                            "tls stall {scheme} {policy} {victim} SIGKILL {}/{}: {ms:.0} ms",
                            i + 1,
                            self.o.kills
                        ));
                    }
                }
                if let Some(t) = self.r.tls.as_mut() {
                    let [http, https] = sets;
                    for (set, https) in [(http, false), (https, true)] {
                        t.stalls.push(TlsStall {
                            policy: policy.into(),
                            set,
                            https,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn measure_all(&mut self) -> Result<()> {
        let lat_sizes = sizes(self.o.quick, true);
        let sizes = sizes(self.o.quick, false);
        let static_ok = self.r.meta.static_policy_available;
        let mut configs = vec![
            Config::Simplex,
            Config::Duplex,
            Config::DuplexMi,
            Config::DualRole,
        ];
        if static_ok {
            configs.extend([Config::Static, Config::SyncStatic]);
        }
        if self.wants("link") {
            configs.push(Config::DuplexPlaintext);
        }
        let needs_labs = [
            "generate", "files", "latency", "openloop", "nginx", "rtt", "link",
        ]
        .iter()
        .any(|p| self.wants(p));
        if needs_labs {
            self.labs_up(&configs)?;
        }
        if self.wants("generate") {
            for &s in &sizes {
                for c in [Config::Simplex, Config::Duplex, Config::DualRole] {
                    self.peak_search(c, Workload::Generate, s)?;
                }
            }
        }
        let file_configs: Vec<Config> = configs
            .iter()
            .copied()
            .filter(|&c| c != Config::DualRole)
            .collect();
        if self.wants("files") {
            for &s in &sizes {
                for &c in &file_configs {
                    self.peak_search(c, Workload::Files, s)?;
                }
            }
        }
        if self.wants("latency") {
            for &s in &lat_sizes {
                for c in [Config::Simplex, Config::Duplex] {
                    self.latency(c, Workload::Generate, s)?;
                }
                for &c in &file_configs {
                    if c != Config::DuplexMi {
                        self.latency(c, Workload::Files, s)?;
                    }
                }
            }
        }
        if self.wants("link") {
            // Logged replies cross the link, so this is where its
            // encryption shows: the same duplex with the link in clear,
            // size by size, side by side.
            for &s in &lat_sizes {
                for c in [Config::Duplex, Config::DuplexPlaintext] {
                    if self.r.latency(c, Workload::Files, s).is_none() {
                        self.latency(c, Workload::Files, s)?;
                    }
                }
            }
        }
        if self.wants("openloop") {
            let size = 5 * 1024;
            let ol: Vec<Config> = if static_ok {
                vec![Config::Simplex, Config::Static, Config::SyncStatic]
            } else {
                vec![Config::Simplex, Config::Duplex]
            };
            // 70 % of the slowest shown configuration's peak (measure it if needed).
            let mut slowest = f64::MAX;
            for &c in &ol {
                if self.r.peak(c, Workload::Files, size).is_none() {
                    self.peak_search(c, Workload::Files, size)?;
                }
                slowest = slowest.min(
                    self.r
                        .peak(c, Workload::Files, size)
                        .map_or(f64::MAX, |p| p.wrk.rps),
                );
            }
            let rate = (0.7 * slowest).max(10.0);
            for &c in &ol {
                self.open_loop(c, size, rate)?;
            }
        }
        if self.wants("nginx") {
            let simplex = self.lab(Config::Simplex)?;
            self.progress("starting nginx on the simplex lab's bridge");
            self.nginx = Some(Nginx::start(
                simplex,
                &self.docroot,
                Some(self.o.node_cpus),
                &self.logs.join("nginx"),
            )?);
            let ks: &[u64] = if self.o.quick { &[1, 50] } else { &[1, 5, 50] };
            for &k in ks {
                for conns in [1, 32] {
                    // Interleaved, so all three see the same conditions.
                    for c in [Config::Simplex, Config::Duplex, Config::Nginx] {
                        let p = self.point(c, Workload::Files, k * 1024, conns)?;
                        self.progress(&format!(
                            "vs nginx {} {k} KB {conns} conns: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs",
                            c.label(),
                            p.wrk.rps,
                            p.wrk.p50_us,
                            p.wrk.p99_us
                        ));
                        self.r.nginx.push(Measured {
                            config: c,
                            workload: Workload::Files,
                            size: k * 1024,
                            point: p,
                        });
                    }
                }
            }
            self.nginx = None;
        }
        if self.wants("rtt") {
            self.rtt(Config::Duplex, "shared")?;
            self.rtt(Config::DuplexMi, "dedicated")?;
        }
        // Free the CPUs and memory before the proxy and idle parts and the stall series.
        self.labs.clear();
        if self.wants("proxy") {
            if self.o.baseline_bin.is_none() {
                eprintln!(
                    "\n*** NOT MEASURED: the proxy part's baseline row (no --baseline-bin). ***\n"
                );
                self.r
                    .not_measured
                    .push("proxy: the baseline client (no --baseline-bin)".into());
            }
            let r = self.part(|cx| proxy::run(cx, self.o.baseline_bin.as_deref()))?;
            self.r.proxy = Some(r);
        }
        if self.wants("tls") {
            let r = self.part(tls::run)?;
            self.r.tls = Some(r);
            self.tls_stalls()?;
        }
        if self.wants("idle") {
            let r = self.part(idle::run)?;
            self.r.idle = Some(r);
        }
        if self.wants("stall") {
            self.stalls()?;
        }
        Ok(())
    }
}

pub fn sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A docroot of deterministic files (name, size), and the index.html
/// `lab up` waits for.
fn make_docroot(dir: &Path, all: Vec<(String, u64)>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for (name, size) in all {
        let mut buf = Vec::with_capacity(size as usize);
        while (buf.len() as u64) < size {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            buf.extend_from_slice(&state.to_le_bytes());
        }
        buf.truncate(size as usize);
        std::fs::write(dir.join(&name), &buf).with_context(|| format!("writing {name}"))?;
    }
    // `lab up` waits for /static/index.html to serve.
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>hotpair bench</title>\n",
    )?;
    Ok(())
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.trim().replace('\n', " ")
        })
        .unwrap_or_default()
}

fn machine() -> Vec<(String, String)> {
    [
        ("CPU", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        ("CPUs", "nproc"),
        ("memory", "free -g | awk '/Mem:/{print $2\" GiB\"}'"),
        ("kernel", "uname -r"),
        ("load average at start", "cut -d' ' -f1-3 /proc/loadavg"),
        ("wrk", "wrk -v 2>&1 | head -1"),
        ("nginx", "nginx -v 2>&1"),
        ("commit", "git rev-parse --short HEAD 2>/dev/null && git status --porcelain 2>/dev/null | grep -q . && echo '(dirty)'"),
    ]
    .iter()
    .map(|(k, c)| (k.to_string(), sh(c)))
    .collect()
}

fn now_utc() -> String {
    sh("date -u '+%Y-%m-%d %H:%M:%S UTC'")
}

pub fn bench(o: &Options) -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("hotpair bench needs root (it builds network namespaces and cgroups)");
    }
    for tool in ["wrk", "ip", "curl"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            bail!("{tool} is not installed");
        }
    }
    let handler = on_signal as extern "C" fn(libc::c_int);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let logs = o.out.join("logs");
    std::fs::create_dir_all(&logs)?;
    let exe = std::env::current_exe().context("finding the hotpair binary")?;
    let base = format!("b{}", std::process::id() % 100_000);
    let docroot = PathBuf::from(format!("/run/hotpair/bench-{base}/docroot"));
    let stall_docroot = PathBuf::from(format!("/run/hotpair/bench-{base}/stall"));
    let mut b = Bench {
        o,
        exe: exe.clone(),
        base: base.clone(),
        docroot: docroot.clone(),
        stall_docroot: stall_docroot.clone(),
        logs,
        labs: HashMap::new(),
        nginx: None,
        start: Instant::now(),
        r: Results::default(),
    };
    b.r.meta = Meta {
        started: now_utc(),
        quick: o.quick,
        node_cpus: o.node_cpus,
        seconds_per_point: o.seconds,
        machine: machine(),
        static_policy_available: labs::static_policy_available(&exe),
        stall_client_rmem: o.stall_client_rmem,
        ..Meta::default()
    };
    if !b.r.meta.static_policy_available {
        eprintln!(
            "\n*** NOT MEASURED: content policies not built yet (`hotpair lab up --help` has no \
             --static-policy): the static and sync-static rows stay empty. ***\n"
        );
        b.r.not_measured.push(
            report::NOT_BUILT.to_string()
                + ": Fig. 4/5/6 static and sync-static, the static targets",
        );
    }
    b.progress(&format!(
        "bench {base}: docroot {}, output {}",
        docroot.display(),
        o.out.display()
    ));
    make_docroot(
        &docroot,
        sizes(false, false)
            .into_iter()
            .map(|s| (file_name(s), s))
            .collect(),
    )?;
    make_docroot(
        &stall_docroot,
        vec![(STALL_FILE.into(), stall_sizes(o.quick).0)],
    )?;
    let res = b.measure_all();
    // Everything down, whatever happened.
    b.nginx = None;
    b.labs.clear();
    let _ = std::fs::remove_dir_all(docroot.parent().unwrap_or(&docroot));
    b.r.meta.finished = now_utc();
    b.r.meta.duration_s = b.start.elapsed().as_secs_f64();
    let json = o.out.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(&b.r)?)?;
    if let Err(e) = res {
        return Err(e.context(format!(
            "bench failed (partial results in {})",
            json.display()
        )));
    }
    write_report(&mut b.r, &o.out)?;
    b.progress(&format!("report: {}", o.out.join("report.md").display()));
    let missed: Vec<String> = report::targets(&b.r)
        .into_iter()
        .filter(|t| t.met == Some(false))
        .map(|t| format!("{} ({})", t.what, t.ours))
        .collect();
    for m in &missed {
        eprintln!("target missed: {m}");
    }
    Ok(())
}

/// `hotpair bench report RESULTS`: report.md and the plots again.
pub fn render(results: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(results)
        .with_context(|| format!("reading {}", results.display()))?;
    let mut r: Results =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", results.display()))?;
    std::fs::create_dir_all(out)?;
    write_report(&mut r, out)?;
    eprintln!("{}", out.join("report.md").display());
    Ok(())
}

/// The plots (a failure is noted in the report, loudly) and report.md.
fn write_report(r: &mut Results, out: &Path) -> Result<()> {
    let plots = match plot::all(r, out) {
        Ok(names) => names,
        Err(e) => {
            eprintln!("*** plots not written: {e:#} ***");
            r.not_measured.push(format!("plots not written: {e:#}"));
            Vec::new()
        }
    };
    let md = report::render(r, &plots);
    std::fs::File::create(out.join("report.md"))?.write_all(md.as_bytes())?;
    Ok(())
}
