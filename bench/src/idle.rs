//! `--only idle`: what idle keep-alive connections cost (issue 9), side by
//! side with nginx, in one run.
//!
//! For each server — the unreplicated node, the duplex pair (n1 primary,
//! n2 owner) and nginx (7 workers) — on labs of their own with room for
//! the connections (`lab up --max-connections`, a long HTTP idle timeout):
//!
//! 1. with 0 / 10,000 / 50,000 / 100,000 idle keep-alive connections held
//!    (each used for one request, then left open), `wrk -t2 -c32 -d8s` on
//!    `/static/1k.bin`: requests/s and p50, and each server process's RSS.
//!    RSS per idle connection = (RSS with N held − RSS before any
//!    connection) / N, measured a few seconds after the last connection
//!    opened (an idle connection's receive-buffer pages go back after 2 s);
//! 2. then, with those closed, the time to open 15,000 connections (each
//!    used for one request) by four client processes at once.
//!
//! The connections are held by `hotpair bench hold` processes in the
//! client namespace, 10,000 each (a process may hold 20,000 fds here), each
//! from a source address of its own (10.77.0.150…, added to the client
//! namespace) and an explicit port range, so the client kernel never
//! searches for a free port. nginx runs seven workers with `reuseport`
//! listeners, so that 100,000 connections (~14,300 a worker) fit the
//! per-process fd limit; they share one CPU quota as the node's thread does
//! (its per-connection cost is in the kernel anyway, not in its RSS).
//! `--quick`: 0 and 500 idle, 500 opened, 1 s of wrk.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::labs::{self, Lab};
use super::markdown::table;
use super::model::{Config, IdleLevel, IdleRun, IdleTarget};
use super::nginx::{Limits, Nginx, NGINX_ADDRESS};
use super::part::Ctx;
use super::wrk::{self, WrkResult};

const SERVICE: &str = "10.77.0.10";
/// Connections per holder process (fds: at most 20,000 per process).
const PER_HOLDER: usize = 10_000;
/// An nginx worker may hold this many (the process fd limit, 20,000, less
/// its own and the listening socket's).
const NGINX_PER_WORKER: usize = 19_500;
/// nginx workers for the idle series: 100,000 connections spread by
/// `reuseport` put ~14,300 on each (the spread's standard deviation is
/// ~110), well under a worker's fd limit. All of them share the one CPU
/// quota, as the node's one thread does.
const NGINX_WORKERS: usize = 7;
/// What the workers hold together, with room for an uneven spread.
const NGINX_MAX: usize = NGINX_WORKERS * NGINX_PER_WORKER * 3 / 4;
/// Client source addresses: 10.77.0.<FIRST_SOURCE + i>.
const FIRST_SOURCE: u8 = 150;
const SOURCES: u8 = 16;
const PATH: &str = "/static/1k.bin";
/// First source port of the holders.
const PORT_BASE: u16 = 20_000;
/// Holder processes opening the timed connections together.
const OPENERS: usize = 4;

/// (internal) `hotpair bench hold`: open connections, one request each,
/// then hold them until stdin closes.
#[derive(clap::Args, Debug, Clone)]
pub struct HoldArgs {
    /// Server, e.g. 10.77.0.10:80.
    #[arg(long)]
    pub addr: SocketAddr,
    #[arg(long, default_value = PATH)]
    pub path: String,
    /// Source address (one of the client namespace's).
    #[arg(long)]
    pub from: std::net::Ipv4Addr,
    /// First source port; connection i uses port_base + i.
    #[arg(long, default_value_t = 20_000)]
    pub port_base: u16,
    #[arg(long)]
    pub count: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 128)]
    pub window: usize,
    /// Give up opening after this many seconds (the rest count as failed):
    /// a server that stops answering must not hang the bench.
    #[arg(long, default_value_t = 240)]
    pub deadline_s: u64,
}

/// What a holder reports once its connections are open.
#[derive(Debug, Serialize, Deserialize)]
struct Opened {
    opened: usize,
    failed: usize,
    seconds: f64,
    first_error: Option<String>,
}

async fn open_one(
    src: SocketAddr,
    dst: SocketAddr,
    req: std::sync::Arc<Vec<u8>>,
) -> Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = tokio::net::TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(src).with_context(|| format!("bind {src}"))?;
    let mut st = s.connect(dst).await.context("connect")?;
    st.set_nodelay(true)?;
    st.write_all(&req).await?;
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut tmp = [0u8; 4096];
    loop {
        let n = st.read(&mut tmp).await?;
        if n == 0 {
            bail!("closed before the whole reply");
        }
        buf.extend_from_slice(&tmp[..n]);
        let Some(h) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            bail!("reply: {}", head.lines().next().unwrap_or(""));
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no content-length")?;
        if buf.len() >= h + 4 + len {
            return Ok(st);
        }
    }
}

pub fn hold(a: &HoldArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let req = std::sync::Arc::new(
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hotpair-bench-hold\r\n\r\n",
            a.path,
            a.addr.ip()
        )
        .into_bytes(),
    );
    let (held, report) = rt.block_on(async {
        let t0 = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        let mut held = Vec::with_capacity(a.count);
        let (mut failed, mut first_error) = (0, None);
        let mut next = 0usize;
        let deadline = t0 + Duration::from_secs(a.deadline_s);
        while next < a.count || !set.is_empty() {
            if Instant::now() > deadline {
                failed += set.len() + (a.count - next);
                first_error.get_or_insert_with(|| format!("gave up after {} s", a.deadline_s));
                set.abort_all();
                break;
            }
            while next < a.count && set.len() < a.window.max(1) {
                let port = a.port_base as usize + next;
                let src = SocketAddr::new(a.from.into(), port as u16);
                let (dst, req) = (a.addr, req.clone());
                set.spawn(async move {
                    tokio::time::timeout(Duration::from_secs(60), open_one(src, dst, req))
                        .await
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")))
                });
                next += 1;
            }
            let joined = tokio::time::timeout_at(deadline.into(), set.join_next()).await;
            let Ok(joined) = joined else {
                continue;
            };
            match joined {
                Some(Ok(Ok(st))) => held.push(st),
                Some(Ok(Err(e))) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
                Some(Err(e)) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
                None => {}
            }
        }
        let report = Opened {
            opened: held.len(),
            failed,
            seconds: t0.elapsed().as_secs_f64(),
            first_error,
        };
        (held, report)
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&report)?)?;
    out.flush()?;
    drop(out);
    // Hold until the bench closes our stdin (or goes away).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(held);
    drop(rt);
    Ok(())
}

/// A holder process and its report.
struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Holders started together, once they have opened their connections.
struct Batch {
    holders: Vec<Holder>,
    opened: usize,
    failed: usize,
    secs: f64,
    err: Option<String>,
}

/// Start holders of `counts[i]` connections from source `first_source + i`
/// to `addr`, all at once; wait until each has opened its connections.
fn open_many(
    exe: &Path,
    ns: &str,
    addr: &str,
    first_source: u8,
    port_base: u16,
    counts: &[usize],
) -> Result<Batch> {
    let t0 = Instant::now();
    let mut holders = Vec::new();
    let mut outs = Vec::new();
    for (i, &n) in counts.iter().enumerate() {
        let src = format!("10.77.0.{}", first_source as usize + i);
        let mut child = labs::in_ns(ns, exe)
            .args(["bench", "hold", "--addr", addr, "--from", &src])
            .args(["--count", &n.to_string()])
            .args(["--port-base", &port_base.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting hotpair bench hold")?;
        let stdin = child.stdin.take();
        outs.push(child.stdout.take().context("holder stdout")?);
        holders.push(Holder { child, stdin });
    }
    let (mut opened, mut failed, mut err) = (0, 0, None);
    for o in outs {
        let mut line = String::new();
        BufReader::new(o).read_line(&mut line)?;
        let r: Opened = serde_json::from_str(line.trim())
            .with_context(|| format!("holder's report `{}`", line.trim()))?;
        opened += r.opened;
        failed += r.failed;
        if err.is_none() {
            err = r.first_error;
        }
    }
    Ok(Batch {
        holders,
        opened,
        failed,
        secs: t0.elapsed().as_secs_f64(),
        err,
    })
}

fn rss_of(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A server under test.
enum Server<'a> {
    Lab(&'a Lab),
    Nginx(&'a Nginx),
}

impl Server<'_> {
    /// CPU time of all its processes, ns.
    fn cpu_ns(&self) -> u64 {
        match self {
            Server::Lab(lab) => lab.cpu_ns().map_or(0, |v| v.iter().map(|x| x.1).sum()),
            Server::Nginx(ng) => ng.cpu_ns().map_or(0, |v| v.iter().map(|x| x.1).sum()),
        }
    }

    /// Wait (≤ 60 s) until the server is quiet: under 2 % of a CPU over a
    /// second (closing 100,000 connections takes it a while).
    fn wait_quiet(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut before = self.cpu_ns();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.cpu_ns();
            if now.saturating_sub(before) < 20_000_000 {
                return;
            }
            before = now;
        }
    }

    fn rss(&self) -> Result<Vec<(String, u64)>> {
        Ok(match self {
            Server::Lab(lab) => lab
                .nodes()
                .into_iter()
                .map(|n| Ok((n.name.clone(), rss_of(n.pid.context("node without pid")?))))
                .collect::<Result<_>>()?,
            Server::Nginx(ng) => vec![(
                "nginx".into(),
                ng.pids().into_iter().map(rss_of).sum::<u64>(),
            )],
        })
    }
}

fn levels(quick: bool) -> Vec<usize> {
    if quick {
        vec![0, 500]
    } else {
        vec![0, 10_000, 50_000, 100_000]
    }
}

fn wrk_cmd(ns: &str, url: &str, secs: f64) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "timeout", "-k", "5"])
        .arg(format!("{}", secs.ceil() as u64 + 30))
        .args(["wrk", "-t2", "-c32", "--latency"])
        .arg(format!("-d{}s", secs.ceil().max(1.0) as u64))
        .arg(url);
    c
}

fn add_sources(lab: &Lab) -> Result<()> {
    for i in 0..SOURCES {
        let a = format!("10.77.0.{}/24", FIRST_SOURCE + i);
        let st = Command::new("ip")
            .args(["-n", &lab.client_ns(), "addr", "add", &a, "dev", "eth0"])
            .status()?;
        if !st.success() {
            bail!("adding {a} to {}", lab.client_ns());
        }
    }
    Ok(())
}

/// The whole part: its labs up, each server's series, everything down.
pub fn run(cx: &Ctx) -> Result<IdleRun> {
    let levels = levels(cx.quick);
    let top = *levels.last().unwrap_or(&0);
    let open_n = if cx.quick { 500 } else { 15_000 };
    let wrk_s = if cx.quick { 1.0 } else { 8.0 };
    let max_conns = (top + open_n).max(2_000) + 10_000;
    let mut out = IdleRun {
        targets: Vec::new(),
        wrk_seconds: wrk_s,
    };
    let lab_args = |mode: &str| -> Vec<String> {
        [
            "--mode",
            mode,
            "--node-cpus",
            &cx.node_cpus.to_string(),
            "--docroot",
            &cx.docroot.display().to_string(),
            "--max-connections",
            &max_conns.to_string(),
            "--max-per-source",
            &max_conns.to_string(),
            "--http-idle-timeout-ms",
            "3600000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    for (config, letter, mode) in [
        (Config::Simplex, 'i', Some("simplex")),
        (Config::Duplex, 'j', Some("duplex")),
        (Config::Nginx, 'i', None),
    ] {
        (cx.interrupted)()?;
        let prefix = format!("{}{letter}", cx.base);
        // nginx sits on a simplex lab's bridge (its node idle meanwhile).
        let args = lab_args(mode.unwrap_or("simplex"));
        (cx.progress)(&format!(
            "idle: lab up {prefix} for {} ({})",
            config.label(),
            args.join(" ")
        ));
        let lab = Lab::up(
            cx.exe,
            &prefix,
            &args,
            &cx.logs.join(format!("lab-{prefix}-{}.log", config.label())),
        )?;
        add_sources(&lab)?;
        let nginx = match config {
            Config::Nginx => Some(Nginx::start_with(
                &lab,
                cx.docroot,
                Some(cx.node_cpus),
                &cx.logs.join("nginx-idle"),
                Limits {
                    workers: NGINX_WORKERS as u32,
                    worker_connections: NGINX_PER_WORKER as u32 + 100,
                    rlimit_nofile: Some(20_000),
                    keepalive_timeout_s: 3600,
                },
            )?),
            _ => None,
        };
        let server = match &nginx {
            Some(ng) => Server::Nginx(ng),
            None => Server::Lab(&lab),
        };
        let addr = match config {
            Config::Nginx => NGINX_ADDRESS,
            _ => SERVICE,
        };
        let t = series(cx, &lab, &server, config, addr, &levels, open_n, wrk_s);
        drop(nginx);
        drop(lab);
        out.targets.push(t?);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn series(
    cx: &Ctx,
    lab: &Lab,
    server: &Server,
    config: Config,
    addr: &str,
    levels: &[usize],
    open_n: usize,
    wrk_s: f64,
) -> Result<IdleTarget> {
    let ns = lab.client_ns();
    let target = format!("{addr}:80");
    let mut t = IdleTarget {
        config,
        rss_fresh: server.rss()?,
        open_n,
        open_s: None,
        open_failed: 0,
        levels: Vec::new(),
        not_run: Vec::new(),
    };
    // 1. The levels, each adding holders to the ones before.
    let mut holders: Vec<Holder> = Vec::new();
    let mut held = 0usize;
    let mut failed_total = 0usize;
    let mut next_source = FIRST_SOURCE;
    for &n in levels {
        (cx.interrupted)()?;
        if config == Config::Nginx && n > NGINX_MAX {
            t.not_run.push((
                n,
                format!(
                    "{NGINX_WORKERS} nginx workers may hold ~{NGINX_MAX} connections \
                     (20,000 fds each on this machine)"
                ),
            ));
            continue;
        }
        let mut open_s = 0.0;
        if n > held {
            let mut counts = Vec::new();
            let mut left = n - held;
            while left > 0 {
                let c = left.min(PER_HOLDER);
                counts.push(c);
                left -= c;
            }
            if next_source as usize + counts.len() > (FIRST_SOURCE + SOURCES) as usize - OPENERS {
                bail!("not enough client source addresses for {n} connections");
            }
            let Batch {
                holders: hs,
                opened,
                failed,
                secs,
                err,
            } = open_many(cx.exe, &ns, &target, next_source, PORT_BASE, &counts)?;
            next_source += counts.len() as u8;
            holders.extend(hs);
            held += opened;
            failed_total += failed;
            open_s = secs;
            (cx.progress)(&format!(
                "idle {}: {} more held in {secs:.1} s ({failed} failed{})",
                config.label(),
                opened,
                err.map(|e| format!(": {e}")).unwrap_or_default()
            ));
            // Idle connections' receive-buffer pages are given back after
            // 2 s with nothing to read, up to ~10,000 a second: measure
            // once that is done, as a long-lived idle connection is.
            std::thread::sleep(Duration::from_secs(3 + (opened / 10_000) as u64));
        }
        let rss = server.rss()?;
        let load = load1();
        let res = wrk::run_all(vec![wrk_cmd(&ns, &format!("http://{addr}{PATH}"), wrk_s)])
            .with_context(|| format!("wrk against {} with {held} idle", config.label()))?;
        let w = WrkResult::combine(&res);
        (cx.progress)(&format!(
            "idle {} {held}: {:.0} req/s, p50 {:.0} µs, RSS {} (load {load:.2})",
            config.label(),
            w.rps,
            w.p50_us,
            rss.iter()
                .map(|(n, b)| format!("{n} {:.1} MB", *b as f64 / 1e6))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        t.levels.push(IdleLevel {
            idle: held,
            failed: failed_total,
            open_s,
            wrk: w,
            rss,
            load1: load,
        });
    }
    // 2. Opening open_n connections (the levels' closed first), by
    // OPENERS holders at once from the last source addresses, so that the
    // server, not one client process, sets the pace. After the levels, so
    // that their RSS is measured from a fresh process.
    drop(holders);
    std::thread::sleep(Duration::from_secs(1));
    server.wait_quiet();
    {
        // One connection from each address first: the node learns their
        // MACs (smoltcp sends one ARP request a second at most, so four
        // unknown sources at once would wait up to 3 s).
        let first = FIRST_SOURCE + SOURCES - OPENERS as u8;
        drop(open_many(
            cx.exe,
            &ns,
            &target,
            first,
            60_000,
            &[1; OPENERS],
        )?);
        let counts: Vec<usize> = (0..OPENERS)
            .map(|k| open_n / OPENERS + usize::from(k < open_n % OPENERS))
            .collect();
        let Batch {
            holders,
            opened,
            failed,
            secs,
            err,
        } = open_many(cx.exe, &ns, &target, first, PORT_BASE, &counts)?;
        (cx.progress)(&format!(
            "idle {}: opened {opened} connections in {secs:.2} s ({failed} failed{})",
            config.label(),
            err.map(|e| format!(": {e}")).unwrap_or_default()
        ));
        t.open_s = Some(secs);
        t.open_failed = failed;
        drop(holders);
    }
    Ok(t)
}

fn name_of(config: Config, node: &str) -> String {
    match (config, node) {
        (Config::Duplex, "n1") => "duplex primary (n1)".into(),
        (Config::Duplex, "n2") => "duplex owner (n2)".into(),
        (_, "nginx") => "nginx".into(),
        _ => format!("{} ({node})", config.label()),
    }
}

/// The report's section.
pub fn render(o: &mut String, r: &IdleRun) {
    use std::fmt::Write as _;
    let _ = writeln!(o, "## Idle keep-alive connections (issue 9)\n");
    let _ = writeln!(
        o,
        "`wrk -t2 -c32 -d{:.0}s` on `{PATH}` while N idle keep-alive connections are held \
         (each used for one request, then left open; `hotpair bench hold` processes, 10,000 \
         connections each, from source addresses of their own). Cells: req/s, p50. RSS per idle \
         connection = (RSS with N held − RSS before any connection) / N. nginx runs 7 workers \
         (`reuseport`: ~14,300 connections each at 100,000, under a process's 20,000 fds) in \
         one cgroup; its per-connection cost is mostly kernel memory, not in its RSS. \
         Load: the machine's 1-minute load average when measured.\n",
        r.wrk_seconds
    );
    let mut all: Vec<usize> = r
        .targets
        .iter()
        .flat_map(|t| {
            t.levels
                .iter()
                .map(|l| l.idle)
                .chain(t.not_run.iter().map(|x| x.0))
        })
        .collect();
    all.sort_unstable();
    all.dedup();
    // Round the held counts to the level they were meant to be (a failed
    // connection or two must not split a row).
    let level_of = |n: usize| -> usize {
        all.iter()
            .copied()
            .min_by_key(|&l| l.abs_diff(n))
            .unwrap_or(n)
    };
    let mut rows_levels: Vec<usize> = all.iter().map(|&n| level_of(n)).collect();
    rows_levels.dedup();
    let mut head: Vec<String> = vec!["idle N".into()];
    head.extend(r.targets.iter().map(|t| t.config.label().to_string()));
    let mut rss_cols: Vec<(usize, String)> = Vec::new();
    for (i, t) in r.targets.iter().enumerate() {
        for (n, _) in &t.rss_fresh {
            rss_cols.push((i, n.clone()));
        }
    }
    head.extend(
        rss_cols
            .iter()
            .map(|(i, n)| format!("RSS/conn {}", name_of(r.targets[*i].config, n))),
    );
    head.push("load".into());
    let mut rows = Vec::new();
    for &lv in &rows_levels {
        let mut row = vec![lv.to_string()];
        let mut load = None;
        for t in &r.targets {
            let cell = match t.levels.iter().find(|l| level_of(l.idle) == lv) {
                Some(l) => {
                    load.get_or_insert(l.load1);
                    let f = if l.failed > 0 {
                        format!(" ({} failed)", l.failed)
                    } else {
                        String::new()
                    };
                    format!("{:.0}, {:.2} ms{f}", l.wrk.rps, l.wrk.p50_us / 1000.0)
                }
                None => "—".into(),
            };
            row.push(cell);
        }
        for (i, n) in &rss_cols {
            let t = &r.targets[*i];
            let cell = t
                .levels
                .iter()
                .find(|l| level_of(l.idle) == lv)
                .map(|l| {
                    let total = l.rss.iter().find(|(m, _)| m == n).map_or(0, |x| x.1);
                    match t.per_conn(l, n) {
                        Some(b) => format!("{:.1} KB ({:.0} MB)", b / 1000.0, total as f64 / 1e6),
                        None => format!("({:.0} MB)", total as f64 / 1e6),
                    }
                })
                .unwrap_or_else(|| "—".into());
            row.push(cell);
        }
        row.push(load.map_or("—".into(), |l| format!("{l:.2}")));
        rows.push(row);
    }
    let head_ref: Vec<&str> = head.iter().map(String::as_str).collect();
    table(o, &head_ref, &rows);
    let opens: Vec<String> = r
        .targets
        .iter()
        .filter_map(|t| {
            t.open_s.map(|s| {
                let f = if t.open_failed > 0 {
                    format!(", {} failed", t.open_failed)
                } else {
                    String::new()
                };
                format!("{} {s:.2} s{f}", t.config.label())
            })
        })
        .collect();
    if let Some(t) = r.targets.first() {
        let _ = writeln!(
            o,
            "Time to open {} connections (each with one request; 4 client processes, 128 at a time each; after the levels, on the same server): {}.\n",
            t.open_n,
            opens.join(", ")
        );
    }
    for t in &r.targets {
        for (n, why) in &t.not_run {
            let _ = writeln!(o, "- {} at {n}: not run ({why}).", t.config.label());
        }
    }
    o.push('\n');
}
