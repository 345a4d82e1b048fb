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
use super::model::{Point, Results, TlsRow, TlsRun, TlsServer};
use super::nginx::{Nginx, TlsFiles, NGINX_ADDRESS, TLS_NAME};
use super::part::Ctx;
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
            vec![16],
            vec![Simplex, DuplexStatic, DuplexLogged, Nginx, DuplexStaticHttp],
        )
    } else {
        (
            vec![1024, 50 * 1024],
            vec![1, 16, 64],
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
/// common ones); None for nginx.
fn lab_spec(s: TlsServer) -> Option<(char, Vec<&'static str>)> {
    Some(match s {
        TlsServer::Simplex => ('a', vec!["--mode", "simplex", "--tls"]),
        TlsServer::DuplexStatic => ('b', vec!["--mode", "duplex", "--tls"]),
        TlsServer::DuplexLogged => (
            'c',
            vec!["--mode", "duplex", "--tls", "--static-policy", "logged"],
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
        &["--tls", "--static-policy", "--node-cpus", "--docroot"],
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
        let before = self.cpu()?;
        let t0 = Instant::now();
        let res = wrk::run_all(vec![wrk::command_with(
            &self.ns,
            &self.url(size),
            conns,
            secs,
            extra,
        )])
        .with_context(|| format!("tls {} {} {conns} conns", self.server.label(), kb(size)))?;
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
            "--quick: keep-alive at 1 KB and 16 connections only, no `logged` plain-HTTP \
             row, handshakes on duplex `static` and nginx only, stalls under `logged` only"
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
        "### Failover stall over HTTPS\n\nAs the plain stall series: a fresh duplex \
         `lab up --tls` per kill (no CPU quota), curl (OpenSSL, `--cacert` the lab's CA) \
         downloading {} at 20 MB/s, the victim SIGKILLed once {} arrived; every download \
         completes with the right SHA-256. The stall: the longest time the file did not grow \
         from the signal on (sampled every 10 ms). Owner = the ingress node (n2).\n",
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
                if s.set.victim == "ingress" {
                    "owner (ingress)".into()
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
            stalls: vec![TlsStall {
                policy: "logged".into(),
                set: StallSet {
                    victim: "ingress".into(),
                    signal: "SIGKILL".into(),
                    stalls_ms: (1..=10).map(f64::from).map(|x| x * 10.0).collect(),
                    heartbeat_interval_ms: 100,
                    heartbeat_timeout_ms: 500,
                    baseline_ms: vec![],
                },
            }],
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
            o.contains("| logged | owner (ingress) | SIGKILL | 10 | 50 ms | 90 ms | 100 ms | 100 / 500 ms |"),
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
