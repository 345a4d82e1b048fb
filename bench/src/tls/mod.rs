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
//! - the failover stall over HTTPS beside HTTP's runs after this, on the
//!   stall series' labs (`run.rs`, `StallLab { tls: true }`) with a client
//!   of our own that is the same for both schemes ([`stall`]).
//!
//! The labs are up at once, the rows interleaved point by point, so every
//! server sees the same conditions; nginx sits on the unreplicated lab's
//! bridge at 10.77.0.20 and is measured from that lab's client namespace.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::labs::{self, Lab};
use super::markdown::kb;
use super::model::{TlsOverheadRun, TlsRow, TlsRun, TlsServer};
use super::nginx::{Nginx, TlsFiles, NGINX_ADDRESS, TLS_SUITE};
use super::part::Ctx;

mod measure;
mod section;
pub mod stall;
mod targets;
#[cfg(test)]
mod tests;

use measure::{check_suite, counted, handshake_counts, load1, negotiated, or_evidence, Target};
use section::cpu_cell;
pub use section::section;
pub use targets::targets;

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
