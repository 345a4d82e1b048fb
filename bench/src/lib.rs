//! `hotpair bench`: the paper's evaluation (section IV, Figures 2–6)
//! reproduced on this machine, every configuration side by side in one
//! run, with nginx as the reference; writes `report.md`, plots (SVG, PNG)
//! and `results.json` to `--out`.

mod encryption;
mod fetch;
mod idle;
mod labs;
mod loadgen;
mod markdown;
mod model;
mod nginx;
mod part;
mod plot;
mod proxy;
mod report;
mod run;
mod stats;
mod target;
mod tls;
mod wrk;

use std::path::PathBuf;

use anyhow::Result;

const AFTER_HELP: &str = "\
Duration: the full run takes about 45 minutes on a 2-core machine (26 min
measured before the link-encryption part, the SIGTERM series and the tls
part: 5 s per closed-loop point, peak searches over 1–64 clients for 6
sizes, 20 kills for each of 6 stall series, ~4 s per kill); --quick about 2–3
minutes (a smoke test: 1 s per point, 2 sizes, 1 kill per series, 0 and
500 idle connections; its numbers mean nothing). The idle part alone
(--only idle: up to 100,000 idle keep-alive connections on the simplex and
duplex nodes, nginx to 10,000) takes about 5 minutes; the proxy part alone
(--only proxy) under a minute.

The proxy part: the `upstream` route (/app/) of a simplex lab, with its toy
app replaced by nginx serving 1 KB / 50 KB files on the node namespace's
port 8080, measured side by side with wrk at 32 connections against: the
same lab run by --baseline-bin PATH (another hotpair binary, e.g. one from
before the hyper client; without it that row says: not measured), nginx
proxy_pass (keep-alive upstream pool) at 10.77.0.20 to the same app, and
the app itself (the ceiling). Labs bNNNNNu (this build), bNNNNNv (baseline).

The tls part (HTTPS, issue 18): labs bNNNNNa (unreplicated --tls),
bNNNNNb (duplex --tls, /static/ static), bNNNNNc (duplex --tls, logged),
bNNNNNe / bNNNNNf (the duplex labs over plain HTTP: what TLS costs) and
nginx with TLS 1.3 and the lab's certificate at 10.77.0.20, every HTTPS
server serving TLS_AES_128_GCM_SHA256 only (checked with s_client); wrk
keep-alive at 1, 16, 32, 64 connections, 1 KB and 50 KB; the duplex p50
overhead over HTTPS against HTTP's (1 connection, bNNNNNa and bNNNNNb on
ports 443 and 80, 7 rounds of 2 s); handshakes per second, 16 at once:
full ones (openssl s_time -new) and wrk's new connection per request
(Connection: close; wrk resumes its sessions, the nodes count them); then
the failover stall over HTTPS beside HTTP's (the bench's own client, no
rate limit, every read timestamped; SIGKILL of the primary and of the owner, --kills each per scheme, alternating, /static/ logged
and static; labs bNNNNNg / bNNNNNh); the report ends the part with issue
18's targets and verdicts. About 17 minutes alone (--only tls: 7 of wrk
and s_time, 10 for 160 kills); --quick about 50 s: one keep-alive point
per server, the overhead at 1 KB in 3 rounds of 1 s, handshakes on
duplex and nginx, logged stalls only. Needs openssl (s_time, s_client).

What runs: labs side by side under prefixes bNNNNN<letter> (simplex, duplex,
duplex-mi = --repl-net dedicated, dual-role, duplex-plaintext =
--link-plaintext for the `link` part, static / sync-static when `lab up`
has --static-policy, u / v for the proxy part), nginx in a namespace on the
simplex lab's bridge (10.77.0.20), each server in a CPU cgroup of
--node-cpus. Clients run in the client namespace: wrk (closed loop, one
request outstanding per connection) and `hotpair bench loadgen` (open
loop, HDR histogram). Every lab and namespace is removed at the end, on
errors and on Ctrl-C too. Any socket error or non-2xx reply fails the
run. Needs root, wrk and nginx.

Output in --out: report.md (tables: paper vs ours, targets), fig*.svg/.png,
results.json (every measurement), logs/ (lab up output, nginx).";

#[derive(clap::Args)]
#[command(after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    internal: Option<Internal>,
    /// Directory for report.md, the plots and results.json.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// A smoke test (~2–3 min): 1 s per point, 2 sizes, one kill per stall series.
    #[arg(long)]
    quick: bool,
    /// CPUs each server (node, nginx) may use. 0.5 leaves the client the
    /// rest of a 2-core machine: the report's "was the client the
    /// bottleneck?" table shows each peak's busiest server at its quota.
    #[arg(long, default_value_t = 0.5)]
    node_cpus: f64,
    /// Seconds per closed-loop point [default: 5, --quick 1].
    #[arg(long)]
    seconds: Option<f64>,
    /// Kills per stall series [default: 20, --quick 1].
    #[arg(long)]
    kills: Option<u32>,
    /// Only these parts (comma-separated): generate, files, latency,
    /// openloop, nginx, rtt, link (the link's encryption: duplex with and
    /// without it), proxy (the `upstream` route vs --baseline-bin's and
    /// nginx proxy_pass, to an nginx app), idle (idle keep-alive
    /// connections: throughput and RSS with up to 100,000 held, vs nginx),
    /// tls (HTTPS beside nginx: keep-alive, handshakes, failover stall),
    /// stall [default: all].
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The proxy part's baseline: another hotpair binary (e.g. one built
    /// before the hyper upstream client) whose `lab up` builds the same
    /// simplex lab; without it that row says "not measured".
    #[arg(long, value_name = "PATH")]
    baseline_bin: Option<PathBuf>,
    /// Only these stall series (comma-separated): switchover, SIGKILL,
    /// SIGSTOP, SIGTERM [default: all]. A 30-kill SIGKILL series alone
    /// takes minutes; all four take most of half an hour.
    #[arg(long, value_delimiter = ',')]
    stall_signals: Vec<String>,
    /// The `stall` series' client's largest TCP receive buffer, in bytes
    /// (the client namespace's `net.ipv4.tcp_rmem` maximum); 0 leaves the
    /// kernel's (6 MiB, autotuned). curl's `--limit-rate` reads whatever
    /// the socket holds in one go and then sleeps until it is back under
    /// the rate, so the buffer's size bounds the pauses the client makes
    /// by itself. Not used by the tls part's stalls (their client never
    /// sleeps).
    #[arg(long, default_value_t = 0)]
    stall_client_rmem: u64,
    /// The `stall` series' download client: `curl` (`--limit-rate 20M`,
    /// the file's growth sampled every 10 ms) or `reader` (the bench's own
    /// client, the one the tls part's stalls use: it reads as fast as the
    /// server sends and timestamps every socket read, so the stall is the
    /// server's alone, without curl's own pauses).
    #[arg(long, default_value = "curl", value_parser = ["curl", "reader"])]
    stall_client: String,
}

#[derive(clap::Subcommand)]
enum Internal {
    /// (internal) Open-loop load generator, run in the client namespace.
    #[command(hide = true)]
    Loadgen(loadgen::LoadgenArgs),
    /// (internal) Echo one TCP connection (link round-trip server).
    #[command(hide = true)]
    Echo(loadgen::EchoArgs),
    /// (internal) TCP ping-pong client (link round trip).
    #[command(hide = true)]
    Ping(loadgen::PingArgs),
    /// (internal) Open connections (one request each) and hold them until
    /// stdin closes.
    #[command(hide = true)]
    Hold(idle::HoldArgs),
    /// Render report.md and the plots again from a run's results.json
    /// (into the same directory, or --out).
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct ReportArgs {
    /// A bench run's results.json.
    results: PathBuf,
    /// Where to write report.md and the plots [default: beside results.json].
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match &args.internal {
        Some(Internal::Loadgen(a)) => loadgen::loadgen(a),
        Some(Internal::Echo(a)) => loadgen::echo(a),
        Some(Internal::Ping(a)) => loadgen::ping(a),
        Some(Internal::Hold(a)) => idle::hold(a),
        Some(Internal::Report(a)) => {
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| a.results.parent().map_or_else(|| ".".into(), PathBuf::from));
            run::render(&a.results, &out)
        }
        None => run::bench(&run::Options {
            out: args.out.clone(),
            quick: args.quick,
            node_cpus: args.node_cpus,
            seconds: args.seconds.unwrap_or(if args.quick { 1.0 } else { 5.0 }),
            kills: args.kills.unwrap_or(if args.quick { 1 } else { 20 }),
            only: args.only.clone(),
            baseline_bin: args.baseline_bin.clone(),
            stall_signals: args.stall_signals.clone(),
            stall_client_rmem: args.stall_client_rmem,
            stall_reader: args.stall_client == "reader",
        }),
    }
}
