//! `--only tls`: HTTPS (issue 18) beside nginx, every server held to
//! `--node-cpus`, in one run:
//!
//! - keep-alive throughput (wrk at 1, 16 and 64 connections, 1 KB and
//!   50 KB files from /static/) on an unreplicated `lab up --tls`, a duplex
//!   `--tls` lab with /static/ `static` (the default) and one with
//!   `logged`, nginx with TLS 1.3 and the lab's certificate, and the two
//!   duplex labs over plain HTTP: what TLS costs;
//! - handshakes per second: full ones (`openssl s_time -new`, a client
//!   that never resumes, one request per connection) and wrk's new
//!   connection per request (`Connection: close`), which resumes each
//!   connection's session with the server's ticket — the nodes' own
//!   counts (full, resumed) are recorded with each run;
//! - the failover stall over HTTPS is the stall series' machinery
//!   (`run.rs`, `StallLab { tls: true }`), run after this.
//!
//! The labs are up at once, the rows interleaved point by point, so every
//! server sees the same conditions; nginx sits on the unreplicated lab's
//! bridge at 10.77.0.20 and is measured from that lab's client namespace.

use std::fmt::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::labs::{self, Lab};
use super::markdown::{kb, table, us};
use super::model::{Point, Results, StallSet, TlsOverheadRun, TlsRow, TlsRun, TlsServer};
use super::nginx::{Nginx, TlsFiles, NGINX_ADDRESS, TLS_NAME, TLS_SUITE};
use super::part::Ctx;
use super::report::Target as Verdict;
use super::stats;
use super::wrk;

const SERVICE: &str = "10.77.0.10";

/// Keep-alive: (sizes, connection counts, servers).
fn keepalive_plan(quick: bool) -> (Vec<u64>, Vec<u32>, Vec<TlsServer>) {
    use TlsServer::*;
    if quick {
        // A smoke test of every server and of the report, not figures.
        (
            vec![1024],
            vec![32],
            vec![Simplex, DuplexStatic, DuplexLogged, Nginx, DuplexStaticHttp],
        )
    } else {
        (
            vec![1024, 50 * 1024],
            // 1 and 32: issue 18's targets; 16 and 64 as before.
            vec![1, 16, 32, 64],
            vec![
                Simplex,
                DuplexStatic,
                DuplexLogged,
                Nginx,
                DuplexStaticHttp,
                DuplexLoggedHttp,
            ],
        )
    }
}

/// The duplex-overhead comparison: (sizes, rounds, seconds per run).
fn overhead_plan(quick: bool) -> (Vec<u64>, u32, f64) {
    if quick {
        (vec![1024], 3, 1.0)
    } else {
        (vec![1024, 50 * 1024], 7, 2.0)
    }
}

/// The four cells of the duplex-overhead comparison, (duplex, https), in
/// the order of round `round`: rotated each round, so no cell always runs
/// first or right after another.
fn overhead_order(round: u32) -> [(bool, bool); 4] {
    let mut cells = [(false, false), (false, true), (true, false), (true, true)];
    cells.rotate_left(round as usize % 4);
    cells
}

/// Issue 18's duplex overhead over HTTPS against HTTP's: wrk at one
/// connection on the unreplicated and the duplex `static` `--tls` labs,
/// each over HTTP (port 80) and HTTPS (443) — the same node processes,
/// only TLS differs — in rounds, every cell once per round.
fn overhead(cx: &Ctx, targets: &[Target], run: &mut TlsRun) -> Result<()> {
    let find = |s: TlsServer| {
        targets
            .iter()
            .find(|t| t.server == s)
            .with_context(|| format!("the overhead comparison needs {}", s.label()))
    };
    let (simplex, duplex) = (find(TlsServer::Simplex)?, find(TlsServer::DuplexStatic)?);
    let (sizes, rounds, secs) = overhead_plan(cx.quick);
    run.overhead_seconds = secs;
    for &size in &sizes {
        for round in 0..rounds {
            for (is_duplex, https) in overhead_order(round) {
                (cx.interrupted)()?;
                let t = if is_duplex { duplex } else { simplex };
                let url = format!(
                    "{}://{}/static/{}k.bin",
                    if https { "https" } else { "http" },
                    t.host,
                    size / 1024
                );
                let p = or_evidence(t.point_at(&url, 1, secs, &[]), t, cx.logs)?;
                (cx.progress)(&format!(
                    "tls overhead {} {} {} round {}/{rounds}: p50 {:.0} µs, {:.0} req/s",
                    if is_duplex { "duplex" } else { "unreplicated" },
                    if https { "HTTPS" } else { "HTTP" },
                    kb(size),
                    round + 1,
                    p.wrk.p50_us,
                    p.wrk.rps
                ));
                run.overhead.push(TlsOverheadRun {
                    size,
                    duplex: is_duplex,
                    https,
                    round,
                    p50_us: p.wrk.p50_us,
                    rps: p.wrk.rps,
                });
            }
        }
    }
    Ok(())
}

/// The duplex-overhead comparison at one size: each cell's median p50 (µs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overhead {
    pub size: u64,
    /// Rounds measured.
    pub rounds: usize,
    pub simplex_http: f64,
    pub duplex_http: f64,
    pub simplex_https: f64,
    pub duplex_https: f64,
}

impl Overhead {
    /// duplex HTTP p50 / unreplicated HTTP p50.
    pub fn http(&self) -> f64 {
        self.duplex_http / self.simplex_http
    }

    /// duplex HTTPS p50 / unreplicated HTTPS p50.
    pub fn https(&self) -> f64 {
        self.duplex_https / self.simplex_https
    }

    /// The target's figure: HTTPS's overhead ÷ HTTP's (≤ 1.1).
    pub fn ratio(&self) -> f64 {
        self.https() / self.http()
    }
}

/// [`Overhead`] per size measured (a size with a cell missing left out).
pub fn overheads(t: &TlsRun) -> Vec<Overhead> {
    let mut sizes: Vec<u64> = t.overhead.iter().map(|r| r.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .filter_map(|size| {
            let med = |duplex: bool, https: bool| {
                let v: Vec<f64> = t
                    .overhead
                    .iter()
                    .filter(|r| r.size == size && r.duplex == duplex && r.https == https)
                    .map(|r| r.p50_us)
                    .collect();
                stats::median(&v)
            };
            let mut rounds: Vec<u32> = t
                .overhead
                .iter()
                .filter(|r| r.size == size)
                .map(|r| r.round)
                .collect();
            rounds.sort_unstable();
            rounds.dedup();
            Some(Overhead {
                size,
                rounds: rounds.len(),
                simplex_http: med(false, false)?,
                duplex_http: med(true, false)?,
                simplex_https: med(false, true)?,
                duplex_https: med(true, true)?,
            })
        })
        .collect()
}

/// The stall sets side by side: (policy, victim, HTTP's, HTTPS's).
pub fn stall_pairs(t: &TlsRun) -> Vec<(&str, &str, &StallSet, &StallSet)> {
    t.stalls
        .iter()
        .filter(|s| s.https)
        .filter_map(|s| {
            let http = t
                .stalls
                .iter()
                .find(|h| !h.https && h.policy == s.policy && h.set.victim == s.set.victim)?;
            Some((s.policy.as_str(), s.set.victim.as_str(), &http.set, &s.set))
        })
        .collect()
}

fn times(v: f64) -> String {
    format!("{v:.2}×")
}

/// Issue 18's performance targets from a tls run, each with its verdict
/// (None: not measured in this run).
pub fn targets(t: &TlsRun) -> Vec<Verdict> {
    use TlsServer::*;
    let mut out = Vec::new();
    // 1. Unreplicated keep-alive ≥ nginx's req/s, 1 KB and 50 KB, 1 and 32 connections.
    let mut cells = Vec::new();
    for size in [1024, 50 * 1024] {
        for conns in [1, 32] {
            if let (Some(a), Some(n)) = (
                t.keepalive(Simplex, size, conns),
                t.keepalive(Nginx, size, conns),
            ) {
                if n.wrk.rps > 0.0 {
                    cells.push((size, conns, a.wrk.rps / n.wrk.rps));
                }
            }
        }
    }
    let worst = cells.iter().map(|c| c.2).min_by(f64::total_cmp);
    out.push(Verdict {
        what: "HTTPS: unreplicated keep-alive ≥ 1.0× nginx req/s at 1 KB and 50 KB, 1 and 32 \
               connections"
            .into(),
        ours: match worst {
            None => "—".into(),
            Some(w) => {
                let each: Vec<String> = cells
                    .iter()
                    .map(|(s, c, r)| format!("{} ×{c} {}", kb(*s), times(*r)))
                    .collect();
                format!(
                    "worst {}: {}{}",
                    times(w),
                    each.join(", "),
                    if cells.len() < 4 {
                        format!(" (only {} of the 4 cells measured)", cells.len())
                    } else {
                        String::new()
                    }
                )
            }
        },
        met: worst.map(|w| w >= 1.0),
    });
    // 2. Full handshakes ≥ 0.8× nginx's.
    let full = |s| {
        t.full_handshakes
            .iter()
            .find(|r| r.server == s)
            .map(|r| r.point.wrk.rps)
    };
    let hs = match (full(Simplex), full(Nginx)) {
        (Some(a), Some(n)) if n > 0.0 => Some((a, n)),
        _ => None,
    };
    out.push(Verdict {
        what: "HTTPS: unreplicated full handshakes/s ≥ 0.8× nginx".into(),
        ours: hs.map_or("—".into(), |(a, n)| {
            format!(
                "{a:.0} vs {n:.0}/s = {}{}",
                times(a / n),
                full(DuplexStatic).map_or(String::new(), |d| format!(
                    " (duplex static {d:.0}/s = {})",
                    times(d / n)
                ))
            )
        }),
        met: hs.map(|(a, n)| a / n >= 0.8),
    });
    // 3. Duplex p50 overhead over HTTPS ≤ 1.1× HTTP's.
    let ov = overheads(t);
    if ov.is_empty() {
        out.push(Verdict {
            what: "HTTPS: duplex p50 overhead over unreplicated ≤ 1.1× HTTP's".into(),
            ours: "—".into(),
            met: None,
        });
    }
    for o in &ov {
        out.push(Verdict {
            what: format!(
                "HTTPS: duplex p50 overhead over unreplicated ≤ 1.1× HTTP's, {}, 1 connection",
                kb(o.size)
            ),
            ours: format!(
                "HTTPS {} ({:.0} / {:.0} µs) ÷ HTTP {} ({:.0} / {:.0} µs) = {}, medians of {} rounds",
                times(o.https()),
                o.duplex_https,
                o.simplex_https,
                times(o.http()),
                o.duplex_http,
                o.simplex_http,
                times(o.ratio()),
                o.rounds
            ),
            met: Some(o.ratio() <= 1.1),
        });
    }
    // 4. The HTTPS failover stall within 10 % of HTTP's.
    let pairs = stall_pairs(t);
    if pairs.is_empty() {
        out.push(Verdict {
            what: "HTTPS failover stall ≤ 1.1× HTTP's".into(),
            ours: "—".into(),
            met: None,
        });
    }
    for (policy, victim, http, https) in pairs {
        let r = https.median().zip(http.median()).map(|(a, b)| a / b);
        let ms = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0} ms"));
        out.push(Verdict {
            what: format!(
                "HTTPS failover stall ≤ 1.1× HTTP's, {policy}, {} SIGKILLed",
                victim
            ),
            ours: format!(
                "median {} vs {} over {} kills each = {}",
                ms(https.median()),
                ms(http.median()),
                https.stalls_ms.len(),
                r.map_or("—".into(), times)
            ),
            met: r.map(|r| r <= 1.1),
        });
    }
    // 5. `static` ≥ 2× `logged` over HTTPS at 50 KB: each one's best req/s
    // over the concurrencies measured; every concurrency listed.
    let size = 50 * 1024;
    let mut conns: Vec<u32> = t
        .keepalive
        .iter()
        .filter(|r| r.size == size)
        .map(|r| r.point.conns)
        .collect();
    conns.sort_unstable();
    conns.dedup();
    let mut each = Vec::new();
    let (mut best_s, mut best_l) = (0.0f64, 0.0f64);
    for c in conns {
        if let (Some(s), Some(l)) = (
            t.keepalive(DuplexStatic, size, c),
            t.keepalive(DuplexLogged, size, c),
        ) {
            best_s = best_s.max(s.wrk.rps);
            best_l = best_l.max(l.wrk.rps);
            each.push(format!("×{c} {}", times(s.wrk.rps / l.wrk.rps)));
        }
    }
    let peak = (best_l > 0.0).then(|| best_s / best_l);
    out.push(Verdict {
        what: "HTTPS: duplex `static` ≥ 2× `logged` req/s, 50 KB (each one's best over the \
               concurrencies)"
            .into(),
        ours: peak.map_or("—".into(), |p| {
            format!("{}; per concurrency {}", times(p), each.join(", "))
        }),
        met: peak.map(|p| p >= 2.0),
    });
    out
}

/// Connections of the handshake runs.
pub const HANDSHAKE_CONNS: u32 = 16;

fn handshake_servers(quick: bool) -> Vec<TlsServer> {
    use TlsServer::*;
    if quick {
        vec![DuplexStatic, Nginx]
    } else {
        vec![Simplex, DuplexStatic, DuplexLogged, Nginx]
    }
}

/// The lab of a server: (prefix letter, `lab up` arguments before the
/// common ones); None for nginx. HTTPS labs serve [`TLS_SUITE`] only, as
/// nginx does.
fn lab_spec(s: TlsServer) -> Option<(char, Vec<&'static str>)> {
    const TLS: [&str; 3] = ["--tls", "--tls-cipher-suites", TLS_SUITE];
    Some(match s {
        TlsServer::Simplex => ('a', [&["--mode", "simplex"][..], &TLS].concat()),
        TlsServer::DuplexStatic => ('b', [&["--mode", "duplex"][..], &TLS].concat()),
        TlsServer::DuplexLogged => (
            'c',
            [&["--mode", "duplex", "--static-policy", "logged"][..], &TLS].concat(),
        ),
        TlsServer::DuplexStaticHttp => ('e', vec!["--mode", "duplex"]),
        TlsServer::DuplexLoggedHttp => ('f', vec!["--mode", "duplex", "--static-policy", "logged"]),
        TlsServer::Nginx => return None,
    })
}

fn check_lab_args(exe: &Path) -> Result<()> {
    labs::check_lab_up_args(
        exe,
        "tls",
        &[
            "--tls",
            "--tls-cipher-suites",
            "--static-policy",
            "--node-cpus",
            "--docroot",
        ],
    )
}

/// The labs, up at once.
fn labs_up(cx: &Ctx, servers: &[TlsServer]) -> Result<Vec<(TlsServer, Lab)>> {
    let jobs: Vec<(TlsServer, String, Vec<String>)> = servers
        .iter()
        .filter_map(|&s| {
            let (letter, args) = lab_spec(s)?;
            let mut args: Vec<String> = args.into_iter().map(String::from).collect();
            args.extend([
                "--node-cpus".into(),
                cx.node_cpus.to_string(),
                "--docroot".into(),
                cx.docroot.display().to_string(),
            ]);
            Some((s, format!("{}{letter}", cx.base), args))
        })
        .collect();
    for (s, p, a) in &jobs {
        (cx.progress)(&format!("tls: lab up {p}: {} ({})", s.label(), a.join(" ")));
    }
    // Every lab that came up is kept (and so removed when dropped), even
    // when another failed.
    let (labs, first_err) = labs::up_all(cx.exe, cx.logs, &jobs);
    match first_err {
        Some(e) => Err(e),
        None => Ok(labs),
    }
}

/// The handshakes (full, resumed) counted between two readings of
/// [`handshake_counts`]; none where the server does not count (nginx).
fn counted(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> (Option<u64>, Option<u64>) {
    match (before, after) {
        (Some(b), Some(a)) => (Some(a.0.saturating_sub(b.0)), Some(a.1.saturating_sub(b.1))),
        _ => (None, None),
    }
}

/// Full and resumed handshakes the nodes of `lab` counted on the service
/// address (`hotpair status`, per HTTPS address), summed over its nodes.
fn handshake_counts(lab: &Lab) -> Result<(u64, u64)> {
    let st = lab.status_now()?;
    let mut found = false;
    let (mut full, mut resumed) = (0, 0);
    for n in st["nodes"].as_array().into_iter().flatten() {
        for a in n["node_status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if a["address"].as_str() == Some(SERVICE) {
                if let Some(t) = a.get("tls").filter(|t| !t.is_null()) {
                    found = true;
                    full += t["handshakes"].as_u64().unwrap_or(0);
                    resumed += t["resumed"].as_u64().unwrap_or(0);
                }
            }
        }
    }
    if !found {
        bail!(
            "lab {}: no node reports TLS counters for {SERVICE}",
            lab.prefix
        );
    }
    Ok((full, resumed))
}

/// What OpenSSL's default client (the one wrk links) negotiates with
/// `addr`: "TLSv1.3, SUITE, GROUP", the certificate checked against `ca`.
fn negotiated(ns: &str, addr: &str, ca: &Path) -> String {
    let o = Command::new("sh")
        .args(["-c"])
        .arg(format!(
            "ip netns exec {ns} timeout 10 openssl s_client -connect {addr}:443 \
             -servername {TLS_NAME} -CAfile {} </dev/null 2>&1",
            ca.display()
        ))
        .output();
    let text = match o {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => return format!("openssl s_client failed: {e}"),
    };
    parse_s_client(&text)
}

/// The protocol, suite, key exchange and verification of `openssl
/// s_client`'s output.
fn parse_s_client(text: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for l in text.lines() {
        let l = l.trim();
        let part = if let Some(rest) = l.strip_prefix("New, ") {
            // "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384"
            rest.replace("Cipher is ", "")
        } else if let Some(k) = l.strip_prefix("Server Temp Key: ") {
            k.to_owned()
        } else if let Some(v) = l.strip_prefix("Verify return code: ") {
            format!("verify {v}")
        } else {
            continue;
        };
        // Each session ticket that arrives repeats the session's lines.
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    if parts.is_empty() {
        "not known (openssl s_client said nothing usable)".into()
    } else {
        parts.join(", ")
    }
}

/// Refuses a server whose negotiated parameters ([`parse_s_client`]) are
/// not [`TLS_SUITE`]: its figures would not be the issue's.
fn check_suite(server: &str, negotiated: &str) -> Result<()> {
    if !negotiated.split(", ").any(|p| p == TLS_SUITE) {
        bail!("{server} negotiated {negotiated}, not {TLS_SUITE}: the figures would not compare");
    }
    Ok(())
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Where a server is measured from and what counts its CPU.
struct Target<'a> {
    server: TlsServer,
    ns: String,
    host: &'static str,
    lab: Option<&'a Lab>,
    nginx: Option<&'a Nginx>,
}

impl Target<'_> {
    fn url(&self, size: u64) -> String {
        let scheme = if self.server.https() { "https" } else { "http" };
        format!("{scheme}://{}/static/{}k.bin", self.host, size / 1024)
    }

    fn cpu(&self) -> Result<Vec<(String, u64)>> {
        match (self.lab, self.nginx) {
            (Some(l), _) => l.cpu_ns(),
            (None, Some(n)) => n.cpu_ns(),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// One wrk run, the servers' CPU time around it.
    fn point(&self, size: u64, conns: u32, secs: f64, extra: &[&str]) -> Result<Point> {
        self.point_at(&self.url(size), conns, secs, extra)
    }

    /// As [`Target::point`], at `url` (e.g. a `--tls` lab's port 80).
    fn point_at(&self, url: &str, conns: u32, secs: f64, extra: &[&str]) -> Result<Point> {
        let before = self.cpu()?;
        let t0 = Instant::now();
        let res = wrk::run_all(vec![wrk::command_with(&self.ns, url, conns, secs, extra)])
            .with_context(|| format!("tls {} {url} {conns} conns", self.server.label()))?;
        let wall_s = t0.elapsed().as_secs_f64();
        let cpu_ns = labs::cpu_delta(&before, &self.cpu()?);
        let wrk = wrk::WrkResult::combine(&res);
        Ok(Point {
            conns,
            wall_s: wall_s.max(wrk.seconds),
            wrk,
            cpu_ns,
            quota: None,
        })
    }
}

/// `openssl s_time`'s count: the connections made and the bytes read per
/// connection (`N connections in T real seconds, B bytes read per connection`).
fn parse_s_time(text: &str) -> Option<(u64, u64)> {
    text.lines().find_map(|l| {
        let t: Vec<&str> = l.split_whitespace().collect();
        match t.as_slice() {
            [n, "connections", "in", _, "real", "seconds,", b, "bytes", "read", "per", "connection"] => {
                Some((n.parse().ok()?, b.parse().ok()?))
            }
            _ => None,
        }
    })
}

impl Target<'_> {
    /// `procs` `openssl s_time -new` processes at once (a full handshake
    /// and one request per connection, never a resumed session) for
    /// `secs` seconds; the connections made, their rate over the wall time
    /// and the servers' CPU time around them.
    fn full_handshakes(&self, ca: &Path, procs: u32, secs: f64) -> Result<Point> {
        // s_time's window is whole seconds of time(2) (it stops at the
        // first tick past the start + `-time`): 2 at least, so that a run
        // is not a fraction of a second; the rate is over the wall time.
        let secs = secs.ceil().max(2.0) as u64;
        let before = self.cpu()?;
        let t0 = Instant::now();
        let mut children = Vec::new();
        for _ in 0..procs {
            let c = Command::new("ip")
                .args(["netns", "exec", &self.ns, "timeout", "-k", "5"])
                .arg((secs + 30).to_string())
                .args(["openssl", "s_time", "-new", "-connect"])
                .arg(format!("{}:443", self.host))
                .args(["-www", "/static/1k.bin", "-CAfile"])
                .arg(ca)
                .args(["-time", &secs.to_string()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .context("starting openssl s_time")?;
            children.push(c);
        }
        let mut total = 0;
        let mut first_err = None;
        for c in children {
            let o = c.wait_with_output().context("waiting for openssl s_time")?;
            let text = String::from_utf8_lossy(&o.stdout);
            match parse_s_time(&text) {
                // Headers and the 1 KB body: a connection that read less
                // was not served.
                Some((n, bytes)) if o.status.success() && n > 0 && bytes >= 1024 => total += n,
                _ => {
                    first_err.get_or_insert_with(|| {
                        anyhow::anyhow!(
                            "openssl s_time against {} ({}): {text}{}",
                            self.server.label(),
                            o.status,
                            String::from_utf8_lossy(&o.stderr)
                        )
                    });
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let wall_s = t0.elapsed().as_secs_f64();
        let cpu_ns = labs::cpu_delta(&before, &self.cpu()?);
        Ok(Point {
            conns: procs,
            wrk: wrk::WrkResult {
                requests: total,
                seconds: wall_s,
                rps: total as f64 / wall_s,
                ..Default::default()
            },
            cpu_ns,
            wall_s,
            quota: None,
        })
    }
}

/// After a failed run on `lab`: its status (what the nodes report: live,
/// shadow and half-open connections, TLS errors) and its nodes' logs,
/// copied into `logs` before the lab goes down with them. Returns where.
fn keep_evidence(lab: &Lab, logs: &Path) -> String {
    let dir = logs.join(format!("failed-{}", lab.prefix));
    if std::fs::create_dir_all(&dir).is_err() {
        return format!("(could not create {})", dir.display());
    }
    if let Ok(st) = lab.status_now() {
        let _ = std::fs::write(
            dir.join("status.json"),
            serde_json::to_string_pretty(&st).unwrap_or_default(),
        );
        for n in st["nodes"].as_array().into_iter().flatten() {
            if let (Some(name), Some(log)) = (n["name"].as_str(), n["log"].as_str()) {
                let _ = std::fs::copy(log, dir.join(format!("{name}.log")));
            }
        }
    }
    dir.display().to_string()
}

/// `r`, and on an error the lab's evidence kept ([`keep_evidence`]).
fn or_evidence<T>(r: Result<T>, t: &Target, logs: &Path) -> Result<T> {
    r.map_err(|e| match t.lab {
        Some(l) => {
            let d = keep_evidence(l, logs);
            e.context(format!(
                "lab {}: status and node logs kept in {d}",
                l.prefix
            ))
        }
        None => e,
    })
}

/// "n1 30.1 + n2 12.0" (a lab's nodes) or "41.0" (one process).
fn cpu_cell(p: &Point) -> String {
    let per: Vec<(String, f64)> = p
        .cpu_ns
        .iter()
        .filter_map(|(n, _)| Some((n.clone(), p.cpu_us_per_request(n)?)))
        .collect();
    match per.as_slice() {
        [] => "—".into(),
        [(_, v)] => format!("{v:.1}"),
        many => many
            .iter()
            .map(|(n, v)| format!("{n} {v:.1}"))
            .collect::<Vec<_>>()
            .join(" + "),
    }
}

pub fn run(cx: &Ctx) -> Result<TlsRun> {
    check_lab_args(cx.exe)?;
    if Command::new("openssl").arg("version").output().is_err() {
        bail!("openssl is not installed (the tls part's s_time and s_client)");
    }
    let mut run = TlsRun {
        load_start: load1(),
        handshake_conns: HANDSHAKE_CONNS,
        ..TlsRun::default()
    };
    let (sizes, conns, ka_servers) = keepalive_plan(cx.quick);
    let hs_servers = handshake_servers(cx.quick);
    let mut all: Vec<TlsServer> = ka_servers.clone();
    all.extend(hs_servers.iter().filter(|s| !ka_servers.contains(s)));
    if cx.quick {
        run.not_run.push(
            "--quick: keep-alive at 1 KB and 32 connections only, no `logged` plain-HTTP \
             row, the duplex overhead at 1 KB in 3 rounds of 1 s, handshakes on duplex \
             `static` and nginx only, stalls under `logged` only (one kill per scheme)"
                .into(),
        );
    }
    let labs = labs_up(cx, &all)?;
    let lab_of = |s: TlsServer| labs.iter().find(|(t, _)| *t == s).map(|(_, l)| l);
    let front = lab_of(TlsServer::Simplex).context("the tls part needs its unreplicated lab")?;
    let files = TlsFiles::of(front)?;
    (cx.progress)("tls: starting nginx (TLS 1.3, the lab's certificate) on the lab's bridge");
    let (ng, conf) = Nginx::start_tls(
        front,
        cx.docroot,
        Some(cx.node_cpus),
        &cx.logs.join("nginx-tls"),
        &files,
    )?;
    run.nginx_tls = conf;
    let targets: Vec<Target> = all
        .iter()
        .map(|&s| match s {
            TlsServer::Nginx => Target {
                server: s,
                ns: front.client_ns(),
                host: NGINX_ADDRESS,
                lab: None,
                nginx: Some(&ng),
            },
            _ => {
                let lab = lab_of(s).expect("every lab is up");
                Target {
                    server: s,
                    ns: lab.client_ns(),
                    host: SERVICE,
                    lab: Some(lab),
                    nginx: None,
                }
            }
        })
        .collect();
    for t in targets.iter().filter(|t| t.server.https()) {
        let ca = match t.lab {
            Some(l) => TlsFiles::of(l)?.ca,
            None => files.ca.clone(),
        };
        let n = negotiated(&t.ns, t.host, &ca);
        (cx.progress)(&format!("tls: {} negotiates {n}", t.server.label()));
        check_suite(t.server.label(), &n)?;
        run.negotiated.push((t.server.label().into(), n));
    }
    let quota = Some(cx.node_cpus);
    if !cx.quick {
        // Page cache, the nodes' file caches, wrk's first handshakes.
        for t in &targets {
            (cx.interrupted)()?;
            (cx.progress)(&format!("tls: warm-up {}", t.server.label()));
            t.point(sizes[0], 16, 1.0, &[])?;
        }
    }
    // Keep-alive, interleaved point by point.
    for &size in &sizes {
        for &c in &conns {
            for t in targets.iter().filter(|t| ka_servers.contains(&t.server)) {
                (cx.interrupted)()?;
                let mut p = or_evidence(t.point(size, c, cx.seconds, &[]), t, cx.logs)?;
                p.quota = quota;
                (cx.progress)(&format!(
                    "tls keep-alive {} {} {c} conns: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, \
                     CPU µs/req {}",
                    t.server.label(),
                    kb(size),
                    p.wrk.rps,
                    p.wrk.p50_us,
                    p.wrk.p99_us,
                    cpu_cell(&p)
                ));
                run.keepalive.push(TlsRow {
                    server: t.server,
                    size,
                    point: p,
                    handshakes: None,
                    resumed: None,
                });
            }
        }
    }
    overhead(cx, &targets, &mut run)?;
    // A new connection (and a full handshake) per request.
    for t in targets.iter().filter(|t| hs_servers.contains(&t.server)) {
        (cx.interrupted)()?;
        let before = t.lab.map(handshake_counts).transpose()?;
        let mut p = or_evidence(
            t.point(
                1024,
                HANDSHAKE_CONNS,
                cx.seconds,
                &["-H", "Connection: close"],
            ),
            t,
            cx.logs,
        )?;
        p.quota = quota;
        let (handshakes, resumed) = counted(before, t.lab.map(handshake_counts).transpose()?);
        (cx.progress)(&format!(
            "tls handshakes {} {HANDSHAKE_CONNS} conns: {:.0} conn/s, p50 {:.0} µs, p99 {:.0} µs, \
             CPU µs/conn {}{}",
            t.server.label(),
            p.wrk.rps,
            p.wrk.p50_us,
            p.wrk.p99_us,
            cpu_cell(&p),
            match (handshakes, resumed) {
                (Some(h), Some(r)) => format!(", the node counted {h} handshakes ({r} resumed)"),
                _ => String::new(),
            }
        ));
        if let Some(h) = handshakes {
            // Each request had a connection of its own: a node that counts
            // far fewer handshakes than requests was not measured as meant.
            if h < p.wrk.requests / 2 {
                bail!(
                    "tls handshakes {}: {} requests but the node counted {h} handshakes",
                    t.server.label(),
                    p.wrk.requests
                );
            }
        }
        run.handshakes.push(TlsRow {
            server: t.server,
            size: 1024,
            point: p,
            handshakes,
            resumed,
        });
    }
    // Full handshakes: a client that never resumes.
    for t in targets.iter().filter(|t| hs_servers.contains(&t.server)) {
        (cx.interrupted)()?;
        let ca = match t.lab {
            Some(l) => TlsFiles::of(l)?.ca,
            None => files.ca.clone(),
        };
        let before = t.lab.map(handshake_counts).transpose()?;
        let mut p = or_evidence(
            t.full_handshakes(&ca, HANDSHAKE_CONNS, cx.seconds),
            t,
            cx.logs,
        )
        .with_context(|| format!("tls full handshakes {}", t.server.label()))?;
        p.quota = quota;
        let (handshakes, resumed) = counted(before, t.lab.map(handshake_counts).transpose()?);
        (cx.progress)(&format!(
            "tls full handshakes {} {HANDSHAKE_CONNS} s_time processes: {:.0} conn/s, \
             CPU µs/conn {}{}",
            t.server.label(),
            p.wrk.rps,
            cpu_cell(&p),
            match (handshakes, resumed) {
                (Some(h), Some(r)) => format!(", the node counted {h} handshakes ({r} resumed)"),
                _ => String::new(),
            }
        ));
        if resumed.is_some_and(|r| r > 0) {
            bail!(
                "tls full handshakes {}: the node counted resumed handshakes from openssl s_time -new",
                t.server.label()
            );
        }
        run.full_handshakes.push(TlsRow {
            server: t.server,
            size: 1024,
            point: p,
            handshakes,
            resumed,
        });
    }
    drop(ng);
    drop(labs);
    run.load_end = load1();
    Ok(run)
}

/// report.md's section: the keep-alive table, the ratios, handshakes, stalls.
pub fn section(o: &mut String, r: &Results) {
    let Some(t) = &r.tls else {
        return;
    };
    let _ = writeln!(o, "## HTTPS (TLS 1.3) beside nginx\n");
    let _ = writeln!(
        o,
        "Every server held to {} CPU; 1-minute load {:.2} when the part started, {:.2} when its \
         wrk runs ended (the stalls follow). HTTPS: `lab up --tls` (ECDSA P-256 certificate \
         from the lab's CA), nginx at {NGINX_ADDRESS} on the unreplicated lab's bridge, one \
         worker, `{}`. wrk does not verify certificates; what OpenSSL's default client (the \
         one wrk uses) negotiates, certificate checked:\n",
        r.meta.node_cpus, t.load_start, t.load_end, t.nginx_tls
    );
    for (s, n) in &t.negotiated {
        let _ = writeln!(o, "- {s}: {n}");
    }
    o.push('\n');
    for n in &t.not_run {
        let _ = writeln!(o, "Not run: {n}.\n");
    }
    let _ = writeln!(
        o,
        "### Keep-alive\n\nwrk (one thread, closed loop), one run per cell, the servers \
         interleaved point by point. CPU µs/req: each server process's cgroup (a lab's \
         nodes n1 primary, n2 owner; nginx's kernel TCP work is partly softirq, counted \
         where it lands, not all in its cgroup).\n"
    );
    let rows: Vec<Vec<String>> = t
        .keepalive
        .iter()
        .map(|row| {
            let p = &row.point;
            vec![
                row.server.label().into(),
                kb(row.size),
                p.conns.to_string(),
                format!("{:.0}", p.wrk.rps),
                us(Some(p.wrk.p50_us)),
                us(Some(p.wrk.p99_us)),
                cpu_cell(p),
                p.saturation()
                    .map_or("—".into(), |s| format!("{:.0} %", s * 100.0)),
            ]
        })
        .collect();
    table(
        o,
        &[
            "server",
            "size",
            "conns",
            "req/s",
            "p50",
            "p99",
            "CPU µs/req",
            "busiest of quota",
        ],
        &rows,
    );
    let _ = writeln!(
        o,
        "### Ratios (req/s)\n\nhotpair/nginx over HTTPS; duplex overhead (duplex HTTPS static \
         / unreplicated HTTPS); what TLS costs (duplex HTTPS / the same duplex over HTTP, \
         per policy).\n"
    );
    let mut keys: Vec<(u64, u32)> = t
        .keepalive
        .iter()
        .map(|r| (r.size, r.point.conns))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let rate = |s, size, c| t.keepalive(s, size, c).map(|p| p.wrk.rps);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    };
    use TlsServer::*;
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|&(size, c)| {
            let g = |s| rate(s, size, c);
            vec![
                kb(size),
                c.to_string(),
                ratio(g(Simplex), g(Nginx)),
                ratio(g(DuplexStatic), g(Nginx)),
                ratio(g(DuplexStatic), g(Simplex)),
                ratio(g(DuplexStatic), g(DuplexStaticHttp)),
                ratio(g(DuplexLogged), g(DuplexLoggedHttp)),
            ]
        })
        .collect();
    table(
        o,
        &[
            "size",
            "conns",
            "unreplicated / nginx",
            "duplex static / nginx",
            "duplex static / unreplicated",
            "static: HTTPS / HTTP",
            "logged: HTTPS / HTTP",
        ],
        &rows,
    );
    let ov = overheads(t);
    if !ov.is_empty() {
        let _ = writeln!(
            o,
            "### Duplex overhead, HTTPS against HTTP\n\nwrk at 1 connection (keep-alive), \
             {:.0} s per run, on the unreplicated and the duplex `static` labs, each over HTTP \
             (port 80) and HTTPS (443) of the same `--tls` lab — the same node processes, only \
             TLS differs; every cell once per round, the order rotated each round; each cell \
             the median of its runs' p50. Overhead = duplex p50 / unreplicated p50; the \
             target: HTTPS's ≤ 1.1× HTTP's.\n",
            t.overhead_seconds
        );
        let rows: Vec<Vec<String>> = ov
            .iter()
            .map(|v| {
                vec![
                    kb(v.size),
                    v.rounds.to_string(),
                    us(Some(v.simplex_http)),
                    us(Some(v.duplex_http)),
                    format!("{:.2}", v.http()),
                    us(Some(v.simplex_https)),
                    us(Some(v.duplex_https)),
                    format!("{:.2}", v.https()),
                    format!("{:.2}", v.ratio()),
                ]
            })
            .collect();
        table(
            o,
            &[
                "size",
                "rounds",
                "unreplicated HTTP",
                "duplex HTTP",
                "HTTP overhead",
                "unreplicated HTTPS",
                "duplex HTTPS",
                "HTTPS overhead",
                "HTTPS ÷ HTTP",
            ],
            &rows,
        );
    }
    let _ = writeln!(
        o,
        "### Handshakes\n\n**Full handshakes** (no resumption): {} `openssl s_time -new` \
         processes at once, each connection a full TLS 1.3 handshake (X25519, ECDSA P-256 \
         signature) and one request for the 1 KB file (HTTP/1.0: the server closes); \
         handshakes/s = connections / the wall time from the first start to the last exit; \
         s_time gives no latency. The nodes' counts show none resumed.\n",
        t.handshake_conns
    );
    let count_cell = |row: &TlsRow| match (row.handshakes, row.resumed) {
        (Some(h), Some(r)) => format!("{h} ({r} resumed) / {} requests", row.point.wrk.requests),
        _ => "— (nginx does not count)".into(),
    };
    let quota_cell = |p: &Point| {
        p.saturation()
            .map_or("—".into(), |s| format!("{:.0} %", s * 100.0))
    };
    let rows: Vec<Vec<String>> = t
        .full_handshakes
        .iter()
        .map(|row| {
            vec![
                row.server.label().into(),
                format!("{:.0}", row.point.wrk.rps),
                cpu_cell(&row.point),
                quota_cell(&row.point),
                count_cell(row),
            ]
        })
        .collect();
    table(
        o,
        &[
            "server",
            "full handshakes/s",
            "CPU µs/handshake",
            "busiest of quota",
            "counted by the node",
        ],
        &rows,
    );
    let _ = writeln!(
        o,
        "**wrk, a new connection per request** (`-H \"Connection: close\"`), 1 KB, {} \
         connections. wrk **does resume**: it clears each connection's `SSL` object between \
         connections (`SSL_clear`), which keeps the session, so after each connection's \
         first handshake every one is resumed with the server's ticket (PSK with X25519, no \
         signature), as the nodes' counts below say; nginx issues tickets by default too.\n",
        t.handshake_conns
    );
    let rows: Vec<Vec<String>> = t
        .handshakes
        .iter()
        .map(|row| {
            let p = &row.point;
            vec![
                row.server.label().into(),
                format!("{:.0}", p.wrk.rps),
                us(Some(p.wrk.p50_us)),
                us(Some(p.wrk.p99_us)),
                cpu_cell(p),
                quota_cell(p),
                count_cell(row),
            ]
        })
        .collect();
    table(
        o,
        &[
            "server",
            "conn/s",
            "p50",
            "p99",
            "CPU µs/conn",
            "busiest of quota",
            "counted by the node",
        ],
        &rows,
    );
    let _ = writeln!(
        o,
        "### Failover stall, HTTPS beside HTTP\n\nAs the plain stall series: a fresh duplex \
         `lab up --tls` per kill (no CPU quota), curl downloading {} at 20 MB/s, the victim \
         SIGKILLed once {} arrived; every download completes with the right SHA-256. Each \
         kill is made twice, in alternating order: the download over HTTPS (OpenSSL, \
         `--cacert` the lab's CA) and over HTTP (port 80 of the same kind of lab). The stall: \
         the longest time the file did not grow from the signal on (sampled every 10 ms). \
         Owner = the owner node (n2).\n",
        if r.meta.quick { "16 MiB" } else { "50 MiB" },
        if r.meta.quick { "8 MiB" } else { "20 MiB" },
    );
    let rows: Vec<Vec<String>> = t
        .stalls
        .iter()
        .map(|s| {
            let v = &s.set.stalls_ms;
            let ms = |x: Option<f64>| x.map_or("—".into(), |x| format!("{x:.0} ms"));
            vec![
                s.policy.clone(),
                if s.https { "HTTPS" } else { "HTTP" }.into(),
                if s.set.victim == "owner" {
                    "owner (owner)".into()
                } else {
                    s.set.victim.clone()
                },
                s.set.signal.clone(),
                v.len().to_string(),
                ms(stats::median(v)),
                ms(stats::percentile(v, 90.0)),
                ms(stats::max(v)),
                format!(
                    "{} / {} ms",
                    s.set.heartbeat_interval_ms, s.set.heartbeat_timeout_ms
                ),
            ]
        })
        .collect();
    table(
        o,
        &[
            "/static/ policy",
            "scheme",
            "victim",
            "signal",
            "kills",
            "p50",
            "p90",
            "max",
            "heartbeat interval / timeout",
        ],
        &rows,
    );
    let _ = writeln!(o, "### Issue 18's targets\n");
    let rows: Vec<Vec<String>> = targets(t)
        .into_iter()
        .map(|v| vec![v.what, v.ours, super::report::verdict(v.met).into()])
        .collect();
    table(o, &["target", "this run", "verdict"], &rows);
}

#[cfg(test)]
mod tests {
    use super::super::model::{StallSet, TlsStall};
    use super::*;

    fn row(server: TlsServer, size: u64, conns: u32, rps: f64, cpu: &[(&str, u64)]) -> TlsRow {
        TlsRow {
            server,
            size,
            point: Point {
                conns,
                wrk: wrk::WrkResult {
                    requests: (rps * 5.0) as u64,
                    seconds: 5.0,
                    rps,
                    p50_us: 900.0,
                    p99_us: 15_000.0,
                    ..Default::default()
                },
                cpu_ns: cpu.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
                wall_s: 5.0,
                quota: Some(0.5),
            },
            handshakes: None,
            resumed: None,
        }
    }

    #[test]
    fn section_has_each_table_and_the_ratios() {
        let mut r = Results::default();
        let mut o = String::new();
        section(&mut o, &r);
        assert!(o.is_empty(), "no tls run, no section");
        // 2,000 req/s × 5 s = 10,000 requests; 1 s of n1 = 100 µs each.
        let mut hs = row(
            TlsServer::DuplexStatic,
            1024,
            16,
            300.0,
            &[("n1", 1_500_000_000), ("n2", 150_000_000)],
        );
        hs.handshakes = Some(1500);
        hs.resumed = Some(0);
        r.tls = Some(TlsRun {
            negotiated: vec![(
                "nginx HTTPS".into(),
                "TLSv1.3, TLS_AES_256_GCM_SHA384".into(),
            )],
            nginx_tls: "ssl_protocols TLSv1.3;".into(),
            keepalive: vec![
                row(
                    TlsServer::Simplex,
                    1024,
                    16,
                    2000.0,
                    &[("n1", 1_000_000_000)],
                ),
                row(
                    TlsServer::DuplexStatic,
                    1024,
                    16,
                    1000.0,
                    &[("n1", 1_000_000_000), ("n2", 500_000_000)],
                ),
                row(
                    TlsServer::Nginx,
                    1024,
                    16,
                    4000.0,
                    &[("nginx", 1_000_000_000)],
                ),
                row(
                    TlsServer::DuplexStaticHttp,
                    1024,
                    16,
                    2500.0,
                    &[("n1", 1_000_000_000), ("n2", 500_000_000)],
                ),
            ],
            full_handshakes: vec![{
                // s_time: counts and rate only.
                let mut f = row(
                    TlsServer::Nginx,
                    1024,
                    16,
                    500.0,
                    &[("nginx", 1_250_000_000)],
                );
                f.point.wrk.p50_us = 0.0;
                f
            }],
            handshakes: vec![hs],
            handshake_conns: 16,
            stalls: vec![
                stall(
                    "logged",
                    "owner",
                    true,
                    (1..=10).map(|x| x as f64 * 10.0).collect(),
                ),
                stall("logged", "owner", false, vec![40.0; 10]),
            ],
            overhead: overhead_runs(1024, 3, [100.0, 200.0, 110.0, 242.0]),
            overhead_seconds: 2.0,
            ..TlsRun::default()
        });
        let mut o = String::new();
        section(&mut o, &r);
        assert!(
            o.contains("| duplex HTTPS static | 1 KB | 16 | 1000 | 900 µs | 15.0 ms | n1 200.0 + n2 100.0 | 40 % |"),
            "{o}"
        );
        assert!(
            o.contains(
                "| unreplicated HTTPS | 1 KB | 16 | 2000 | 900 µs | 15.0 ms | 100.0 | 40 % |"
            ),
            "{o}"
        );
        // unreplicated/nginx 0.5, duplex/nginx 0.25, duplex/unreplicated 0.5, HTTPS/HTTP 0.4, logged: none.
        assert!(
            o.contains("| 1 KB | 16 | 0.50 | 0.25 | 0.50 | 0.40 | — |"),
            "{o}"
        );
        assert!(
            o.contains("| duplex HTTPS static | 300 | 900 µs | 15.0 ms | n1 1000.0 + n2 100.0 | 60 % | 1500 (0 resumed) / 1500 requests |"),
            "{o}"
        );
        assert!(
            o.contains("| logged | HTTPS | owner (owner) | SIGKILL | 10 | 50 ms | 90 ms | 100 ms | 100 / 500 ms |"),
            "{o}"
        );
        assert!(
            o.contains("| logged | HTTP | owner (owner) | SIGKILL | 10 | 40 ms | 40 ms | 40 ms | 100 / 500 ms |"),
            "{o}"
        );
        // Overhead: HTTP 200/100 = 2.00, HTTPS 242/110 = 2.20, 2.20 / 2.00 = 1.10.
        assert!(
            o.contains("| 1 KB | 3 | 100 µs | 200 µs | 2.00 | 110 µs | 242 µs | 2.20 | 1.10 |"),
            "{o}"
        );
        // The targets, with their verdicts: the stall 50 ms vs 40 ms is 1.25×.
        assert!(o.contains("### Issue 18's targets"), "{o}");
        assert!(
            o.contains("| HTTPS failover stall ≤ 1.1× HTTP's, logged, owner SIGKILLed | median 50 ms vs 40 ms over 10 kills each = 1.25× | **missed** |"),
            "{o}"
        );
        assert!(
            o.contains("| HTTPS: unreplicated keep-alive ≥ 1.0× nginx req/s at 1 KB and 50 KB, 1 and 32 connections | — | not measured |"),
            "{o}"
        );
        assert!(
            o.contains("- nginx HTTPS: TLSv1.3, TLS_AES_256_GCM_SHA384"),
            "{o}"
        );
        // 2,500 handshakes, 1.25 s of CPU: 500 µs each; 50 % of 0.5 CPU over 5 s.
        assert!(
            o.contains("| nginx HTTPS | 500 | 500.0 | 50 % | — (nginx does not count) |"),
            "{o}"
        );
    }

    fn stall(policy: &str, victim: &str, https: bool, ms: Vec<f64>) -> TlsStall {
        TlsStall {
            policy: policy.into(),
            set: StallSet {
                victim: victim.into(),
                signal: "SIGKILL".into(),
                stalls_ms: ms,
                heartbeat_interval_ms: 100,
                heartbeat_timeout_ms: 500,
                baseline_ms: vec![],
            },
            https,
        }
    }

    /// `rounds` rounds of the four overhead cells at `size`, p50s
    /// [unreplicated HTTP, duplex HTTP, unreplicated HTTPS, duplex HTTPS]
    /// scaled by 1, 0.5, 1.5, 1, … per round (so the median is the value).
    fn overhead_runs(size: u64, rounds: u32, p50: [f64; 4]) -> Vec<TlsOverheadRun> {
        let scale = [1.0, 0.5, 1.5];
        let mut v = Vec::new();
        for round in 0..rounds {
            for (duplex, https) in overhead_order(round) {
                let i = usize::from(duplex) + 2 * usize::from(https);
                v.push(TlsOverheadRun {
                    size,
                    duplex,
                    https,
                    round,
                    p50_us: p50[i] * scale[round as usize % 3],
                    rps: 1000.0,
                });
            }
        }
        v
    }

    #[test]
    fn overhead_rounds_rotate_the_cells() {
        let all: Vec<[(bool, bool); 4]> = (0..4).map(overhead_order).collect();
        // Each cell comes first in exactly one of four rounds.
        for c in [(false, false), (false, true), (true, false), (true, true)] {
            assert_eq!(all.iter().filter(|r| r[0] == c).count(), 1, "{c:?}");
            assert!(all.iter().all(|r| r.contains(&c)));
        }
        assert_eq!(overhead_order(5), overhead_order(1));
    }

    #[test]
    fn overhead_is_the_median_of_each_cell_and_the_ratio_of_ratios() {
        let mut t = TlsRun {
            overhead: overhead_runs(1024, 3, [100.0, 150.0, 120.0, 240.0]),
            ..TlsRun::default()
        };
        // A size with a cell missing is left out.
        t.overhead.extend(
            overhead_runs(50 * 1024, 3, [1.0; 4])
                .into_iter()
                .filter(|r| !(r.duplex && r.https)),
        );
        let ov = overheads(&t);
        assert_eq!(ov.len(), 1, "{ov:?}");
        let o = ov[0];
        assert_eq!(
            (
                o.size,
                o.rounds,
                o.simplex_http,
                o.duplex_http,
                o.simplex_https,
                o.duplex_https
            ),
            (1024, 3, 100.0, 150.0, 120.0, 240.0)
        );
        assert_eq!((o.http(), o.https()), (1.5, 2.0));
        assert!((o.ratio() - 4.0 / 3.0).abs() < 1e-9);
        let v = targets(&t);
        let over: Vec<&Verdict> = v.iter().filter(|v| v.what.contains("overhead")).collect();
        assert_eq!(over.len(), 1);
        assert_eq!(over[0].met, Some(false));
        assert_eq!(
            over[0].ours,
            "HTTPS 2.00× (240 / 120 µs) ÷ HTTP 1.50× (150 / 100 µs) = 1.33×, medians of 3 rounds"
        );
        // Within 1.1×: met.
        t.overhead = overhead_runs(1024, 3, [100.0, 150.0, 120.0, 198.0]);
        let v = targets(&t);
        assert!(v
            .iter()
            .any(|v| v.what.contains("overhead") && v.met == Some(true)));
    }

    #[test]
    fn every_target_has_its_verdict() {
        use TlsServer::*;
        let t = TlsRun {
            keepalive: vec![
                row(Simplex, 1024, 1, 1100.0, &[]),
                row(Nginx, 1024, 1, 1000.0, &[]),
                row(Simplex, 1024, 32, 1900.0, &[]),
                row(Nginx, 1024, 32, 2000.0, &[]),
                row(Simplex, 51200, 1, 500.0, &[]),
                row(Nginx, 51200, 1, 400.0, &[]),
                // 50 KB: static/logged 2.5× at 1, 2× at 32; best 3000/1500 = 2×.
                row(DuplexStatic, 51200, 1, 2500.0, &[]),
                row(DuplexLogged, 51200, 1, 1000.0, &[]),
                row(DuplexStatic, 51200, 32, 3000.0, &[]),
                row(DuplexLogged, 51200, 32, 1500.0, &[]),
            ],
            full_handshakes: vec![
                row(Simplex, 1024, 16, 820.0, &[]),
                row(DuplexStatic, 1024, 16, 700.0, &[]),
                row(Nginx, 1024, 16, 1000.0, &[]),
            ],
            stalls: vec![
                stall("static", "primary", false, vec![80.0, 78.0, 90.0]),
                stall("static", "primary", true, vec![85.0, 88.0, 84.0]),
            ],
            ..TlsRun::default()
        };
        let v = targets(&t);
        let get = |s: &str| v.iter().find(|v| v.what.contains(s)).unwrap();
        let ka = get("keep-alive");
        assert_eq!(ka.met, Some(false), "1 KB ×32 is 0.95×");
        assert_eq!(
            ka.ours,
            "worst 0.95×: 1 KB ×1 1.10×, 1 KB ×32 0.95×, 50 KB ×1 1.25× (only 3 of the 4 cells measured)"
        );
        let hs = get("handshakes");
        assert_eq!(hs.met, Some(true));
        assert_eq!(
            hs.ours,
            "820 vs 1000/s = 0.82× (duplex static 700/s = 0.70×)"
        );
        // Stall medians 85 vs 80 ms: 1.06×.
        let st = get("stall");
        assert_eq!(st.met, Some(true));
        assert_eq!(
            st.what,
            "HTTPS failover stall ≤ 1.1× HTTP's, static, primary SIGKILLed"
        );
        assert_eq!(st.ours, "median 85 ms vs 80 ms over 3 kills each = 1.06×");
        let sl = get("`static`");
        assert_eq!(sl.met, Some(true));
        assert_eq!(sl.ours, "2.00×; per concurrency ×1 2.50×, ×32 2.00×");
        // Not measured: no overhead runs.
        assert_eq!(get("overhead").met, None);
        // The run's report lists them among its targets too.
        let r = Results {
            tls: Some(t.clone()),
            ..Results::default()
        };
        let all = super::super::report::targets(&r);
        assert!(all.iter().any(|a| a.what == st.what && a.met == Some(true)));
    }

    #[test]
    fn only_the_benchs_suite_is_accepted() {
        assert!(check_suite(
            "nginx HTTPS",
            "X25519, 253 bits, TLSv1.3, TLS_AES_128_GCM_SHA256, verify 0 (ok)"
        )
        .is_ok());
        let e = check_suite(
            "nginx HTTPS",
            "X25519, 253 bits, TLSv1.3, TLS_AES_256_GCM_SHA384, verify 0 (ok)",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not TLS_AES_128_GCM_SHA256"), "{e}");
        assert!(check_suite("x", "not known (openssl s_client said nothing usable)").is_err());
    }

    #[test]
    fn https_labs_serve_the_one_suite() {
        for s in [
            TlsServer::Simplex,
            TlsServer::DuplexStatic,
            TlsServer::DuplexLogged,
        ] {
            let (_, args) = lab_spec(s).unwrap();
            let i = args
                .iter()
                .position(|a| *a == "--tls-cipher-suites")
                .unwrap();
            assert_eq!(args[i + 1], TLS_SUITE);
            assert!(args.contains(&"--tls"));
        }
        for s in [TlsServer::DuplexStaticHttp, TlsServer::DuplexLoggedHttp] {
            let (_, args) = lab_spec(s).unwrap();
            assert!(!args.iter().any(|a| a.starts_with("--tls")));
        }
    }

    #[test]
    fn s_client_output() {
        let out = "CONNECTED(00000003)\n---\nServer Temp Key: X25519, 253 bits\n---\n\
                   New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384\nVerify return code: 0 (ok)\n";
        assert_eq!(
            parse_s_client(out),
            "X25519, 253 bits, TLSv1.3, TLS_AES_256_GCM_SHA384, verify 0 (ok)"
        );
        assert!(parse_s_client("connect: Connection refused").starts_with("not known"));
        // Repeated per session ticket: said once.
        let twice =
            format!("{out}---\nPost-Handshake New Ticket arrived:\nVerify return code: 0 (ok)\n");
        assert_eq!(parse_s_client(&twice), parse_s_client(out));
    }

    #[test]
    fn s_time_output() {
        let out = "Collecting connection statistics for 5 seconds\ntttttttttt\n\n\
                   1771 connections in 1.93s; 917.62 connections/user sec, bytes read 2023482\n\
                   1771 connections in 6 real seconds, 1142 bytes read per connection\n";
        assert_eq!(parse_s_time(out), Some((1771, 1142)));
        assert_eq!(parse_s_time("ERROR\nconnect: Connection refused"), None);
    }
}
