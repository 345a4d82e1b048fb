//! The bench's run: labs up, every measurement in turn with progress on
//! stderr, then results.json, the plots and report.md.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::labs::{self, Lab};
use super::loadgen::LatencySummary;
use super::model::*;
use super::nginx::{Nginx, NGINX_ADDRESS};
use super::{idle, markdown, part, plot, proxy, report, stats, tls, wrk};

mod host;
mod stall;

pub use host::sha256;
use host::{machine, make_docroot, now_utc};
use stall::{stall_sizes, STALL_FILE};

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
    /// The stall series' downloads by the bench's own reader, not curl.
    pub stall_reader: bool,
}

const SERVICE: &str = "10.77.0.10";
const SECOND_ADDRESS: &str = "10.77.0.11";
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
        stall_reader: o.stall_reader,
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
