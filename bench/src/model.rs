//! What a bench run measured (written to `results.json`; the report and
//! the plots are made from it alone).

use serde::{Deserialize, Serialize};

use super::loadgen::LatencySummary;
use super::stats;
use super::wrk::WrkResult;

/// The configurations compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Config {
    /// One node, no replication (the paper's unreplicated server).
    Simplex,
    /// n1 primary, n2 owner/backup, reply logging (`logged`).
    Duplex,
    /// Duplex with the replication link on a network of its own.
    DuplexMi,
    /// Two nodes, each backup for one address and primary for the other.
    DualRole,
    /// Duplex with `/static/` under the `static` policy.
    Static,
    /// Duplex with `/static/` under the `sync-static` policy.
    SyncStatic,
    /// nginx, kernel TCP, one worker.
    Nginx,
    /// Duplex (`logged`) with the replication link in plaintext
    /// (`--link-plaintext`): what the link's encryption costs.
    DuplexPlaintext,
}

impl Config {
    pub fn label(self) -> &'static str {
        match self {
            Config::Simplex => "unreplicated",
            Config::Duplex => "duplex",
            Config::DuplexMi => "duplex-mi",
            Config::DualRole => "dual-role",
            Config::Static => "static",
            Config::SyncStatic => "sync-static",
            Config::Nginx => "nginx",
            Config::DuplexPlaintext => "duplex-plaintext",
        }
    }

    /// Configurations that need `lab up --static-policy`.
    pub fn needs_static_policy(self) -> bool {
        matches!(self, Config::Static | Config::SyncStatic)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// `/non-deterministic/bench?size=N`: N random bytes, real CPU work.
    Generate,
    /// `/static/<size>.bin`, cached in memory.
    Files,
}

impl Workload {
    pub fn label(self) -> &'static str {
        match self {
            Workload::Generate => "generate",
            Workload::Files => "files",
        }
    }
}

/// One closed-loop measurement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Connections in total (each with one request outstanding).
    pub conns: u32,
    pub wrk: WrkResult,
    /// CPU time each server (node or nginx) used during the run, ns.
    pub cpu_ns: Vec<(String, u64)>,
    /// Wall time of the run, s (what the CPU time is compared with).
    pub wall_s: f64,
    /// The CPU quota per server (None: unlimited).
    pub quota: Option<f64>,
}

impl Point {
    /// CPU µs per request of server `name`.
    pub fn cpu_us_per_request(&self, name: &str) -> Option<f64> {
        let ns = self.cpu_ns.iter().find(|(n, _)| n == name)?.1;
        (self.wrk.requests > 0).then(|| ns as f64 / 1e3 / self.wrk.requests as f64)
    }

    /// The busiest server's CPU use as a share of its quota: near 1, the
    /// servers were the bottleneck (not the client).
    pub fn saturation(&self) -> Option<f64> {
        let q = self.quota?;
        let busiest = self.cpu_ns.iter().map(|(_, ns)| *ns).max()? as f64 / 1e9;
        (self.wall_s > 0.0).then(|| busiest / (q * self.wall_s))
    }
}

/// Raising the number of clients until requests/s stop growing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeakSearch {
    pub config: Config,
    pub workload: Workload,
    /// Reply size, bytes.
    pub size: u64,
    pub points: Vec<Point>,
}

impl PeakSearch {
    pub fn peak(&self) -> Option<&Point> {
        let rates: Vec<f64> = self.points.iter().map(|p| p.wrk.rps).collect();
        stats::peak_index(&rates).map(|i| &self.points[i])
    }
}

/// One measurement of a configuration at a size (latency at one
/// outstanding request; the nginx comparison).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub config: Config,
    pub workload: Workload,
    pub size: u64,
    pub point: Point,
}

/// An open-loop run at a fixed rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenLoop {
    pub config: Config,
    pub size: u64,
    pub rate: f64,
    pub conns: u32,
    pub summary: LatencySummary,
}

/// TCP ping-pong between the node namespaces over the replication network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rtt {
    /// `shared` or `dedicated`.
    pub net: String,
    pub from: String,
    pub to: String,
    pub summary: LatencySummary,
}

/// Failover stalls over many kills of one victim with one signal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StallSet {
    /// `primary` or `owner`.
    pub victim: String,
    /// `SIGKILL` or `SIGSTOP`.
    pub signal: String,
    pub stalls_ms: Vec<f64>,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    /// Switchovers: the worst request in the same run before the stop
    /// (what the lab's jitter alone costs), one per run. Downloads (the
    /// signal series): the longest pause of the same download before the
    /// signal, which is the client's own (curl's `--limit-rate` reads what
    /// the socket holds at once, then sleeps it off).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_ms: Vec<f64>,
}

impl StallSet {
    pub fn median(&self) -> Option<f64> {
        stats::median(&self.stalls_ms)
    }
    pub fn max(&self) -> Option<f64> {
        stats::max(&self.stalls_ms)
    }
    pub fn p90(&self) -> Option<f64> {
        stats::percentile(&self.stalls_ms, 90.0)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub started: String,
    pub finished: String,
    pub duration_s: f64,
    pub quick: bool,
    pub node_cpus: f64,
    pub seconds_per_point: f64,
    pub machine: Vec<(String, String)>,
    pub static_policy_available: bool,
    /// The stall client's `tcp_rmem` maximum (bytes; 0: the kernel's).
    #[serde(default)]
    pub stall_client_rmem: u64,
    /// The stall series' downloads were read by the bench's own reader
    /// (not curl): no client pauses of its own.
    #[serde(default)]
    pub stall_reader: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub meta: Meta,
    pub peaks: Vec<PeakSearch>,
    pub latency: Vec<Measured>,
    pub nginx: Vec<Measured>,
    pub open_loop: Vec<OpenLoop>,
    pub rtt: Vec<Rtt>,
    pub stalls: Vec<StallSet>,
    /// Idle keep-alive connections held (`--only idle`).
    #[serde(default)]
    pub idle: Option<IdleRun>,
    /// The `upstream` route against another client and nginx (`--only proxy`).
    #[serde(default)]
    pub proxy: Option<ProxyRun>,
    /// HTTPS beside nginx: keep-alive, handshakes, failover stall (`--only tls`).
    #[serde(default)]
    pub tls: Option<TlsRun>,
    /// What was not measured, and why (printed loudly in the report).
    pub not_measured: Vec<String>,
}

impl Results {
    pub fn peak(&self, c: Config, w: Workload, size: u64) -> Option<&Point> {
        self.peaks
            .iter()
            .find(|p| p.config == c && p.workload == w && p.size == size)
            .and_then(PeakSearch::peak)
    }

    pub fn latency(&self, c: Config, w: Workload, size: u64) -> Option<&Point> {
        self.latency
            .iter()
            .find(|m| m.config == c && m.workload == w && m.size == size)
            .map(|m| &m.point)
    }

    pub fn nginx_row(&self, c: Config, size: u64, conns: u32) -> Option<&Point> {
        self.nginx
            .iter()
            .find(|m| m.config == c && m.size == size && m.point.conns == conns)
            .map(|m| &m.point)
    }

    pub fn open_loop(&self, c: Config) -> Option<&OpenLoop> {
        self.open_loop.iter().find(|o| o.config == c)
    }

    /// Sizes of a workload's peak searches, ascending.
    pub fn peak_sizes(&self, w: Workload) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .peaks
            .iter()
            .filter(|p| p.workload == w)
            .map(|p| p.size)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Sizes of the latency runs (one outstanding request), ascending.
    pub fn latency_sizes(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.latency.iter().map(|m| m.size).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// One idle level of one server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IdleLevel {
    /// Idle connections held during the wrk run.
    pub idle: usize,
    /// Of those, failed to open (or to get their reply).
    pub failed: usize,
    /// Seconds to open the connections added for this level.
    pub open_s: f64,
    pub wrk: WrkResult,
    /// RSS of each server process, bytes: (name, bytes).
    pub rss: Vec<(String, u64)>,
    /// /proc/loadavg's 1-minute load when measured.
    pub load1: f64,
}

/// One server's series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdleTarget {
    pub config: Config,
    /// RSS of each server process before any connection.
    pub rss_fresh: Vec<(String, u64)>,
    /// Connections opened for the timing, seconds (None: not run).
    pub open_n: usize,
    pub open_s: Option<f64>,
    pub open_failed: usize,
    pub levels: Vec<IdleLevel>,
    /// Levels not run, and why.
    pub not_run: Vec<(usize, String)>,
}

impl IdleTarget {
    /// RSS per idle connection of process `name` at `level`, bytes.
    pub fn per_conn(&self, l: &IdleLevel, name: &str) -> Option<f64> {
        let now = l.rss.iter().find(|(n, _)| n == name)?.1 as f64;
        let fresh = self.rss_fresh.iter().find(|(n, _)| n == name)?.1 as f64;
        (l.idle > 0).then(|| (now - fresh) / l.idle as f64)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IdleRun {
    pub targets: Vec<IdleTarget>,
    pub wrk_seconds: f64,
}

/// The rows of the `proxy` part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyConfig {
    /// This build's node, `upstream` route → the app.
    Hotpair,
    /// The same lab run by `--baseline-bin`.
    Baseline,
    /// nginx `proxy_pass` (keep-alive pool) → the same app.
    NginxProxy,
    /// The app itself, from the client namespace: the ceiling.
    Direct,
}

impl ProxyConfig {
    pub fn label(self) -> &'static str {
        match self {
            ProxyConfig::Hotpair => "hotpair (this build)",
            ProxyConfig::Baseline => "hotpair (--baseline-bin)",
            ProxyConfig::NginxProxy => "nginx proxy_pass",
            ProxyConfig::Direct => "application direct",
        }
    }
}

/// One row × size of the `proxy` part: measured, or why not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProxyRow {
    pub config: ProxyConfig,
    pub size: u64,
    /// CPU time as `proxy` (the node or nginx in front) and `app`.
    pub point: Option<Point>,
    pub not_measured: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyRun {
    /// wrk connections of every row.
    pub conns: u32,
    /// The application behind every proxy.
    pub app: String,
    pub baseline_bin: Option<String>,
    /// `--baseline-bin --version`.
    pub baseline_version: Option<String>,
    pub rows: Vec<ProxyRow>,
}

impl Point {
    /// CPU time of `name` as a share of the quota over the run.
    pub fn share_of_quota(&self, name: &str) -> Option<f64> {
        let q = self.quota?;
        let ns = self.cpu_ns.iter().find(|(n, _)| n == name)?.1 as f64;
        (self.wall_s > 0.0).then(|| ns / 1e9 / (q * self.wall_s))
    }
}

/// The servers of the `tls` part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsServer {
    /// `lab up --mode simplex --tls`.
    Simplex,
    /// `lab up --mode duplex --tls` (/static/ `static`, the default).
    DuplexStatic,
    /// `lab up --mode duplex --tls --static-policy logged`.
    DuplexLogged,
    /// nginx, TLS 1.3 only, the lab's certificate, one worker.
    Nginx,
    /// The duplex lab over plain HTTP (`static`): what TLS costs.
    DuplexStaticHttp,
    /// The duplex lab over plain HTTP (`logged`).
    DuplexLoggedHttp,
}

impl TlsServer {
    pub fn label(self) -> &'static str {
        match self {
            TlsServer::Simplex => "unreplicated HTTPS",
            TlsServer::DuplexStatic => "duplex HTTPS static",
            TlsServer::DuplexLogged => "duplex HTTPS logged",
            TlsServer::Nginx => "nginx HTTPS",
            TlsServer::DuplexStaticHttp => "duplex HTTP static",
            TlsServer::DuplexLoggedHttp => "duplex HTTP logged",
        }
    }

    pub fn https(self) -> bool {
        !matches!(
            self,
            TlsServer::DuplexStaticHttp | TlsServer::DuplexLoggedHttp
        )
    }
}

/// One wrk run of the `tls` part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TlsRow {
    pub server: TlsServer,
    pub size: u64,
    /// CPU time per server process: `n1`, `n2` (a lab's nodes) or `nginx`.
    pub point: Point,
    /// Handshake runs: full and resumed handshakes the primary (n1)
    /// counted on its HTTPS address during the run (None: nginx, which
    /// does not say).
    #[serde(default)]
    pub handshakes: Option<u64>,
    #[serde(default)]
    pub resumed: Option<u64>,
}

/// The failover stalls of a duplex `lab up --tls` lab under one content
/// policy, downloading over HTTPS (443) or, for the comparison, plain
/// HTTP (80) from the same kind of lab.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TlsStall {
    /// /static/'s policy: `logged` or `static`.
    pub policy: String,
    pub set: StallSet,
    /// Over HTTPS (results from before the HTTP comparison: all HTTPS).
    #[serde(default = "yes")]
    pub https: bool,
}

fn yes() -> bool {
    true
}

/// One wrk run (1 connection, keep-alive) of the duplex-overhead
/// comparison: the unreplicated or the duplex `--tls` lab, over HTTP (its
/// port 80) or HTTPS (443) — the same node processes either way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TlsOverheadRun {
    pub size: u64,
    pub duplex: bool,
    pub https: bool,
    /// The round it was measured in (each round runs every cell once).
    pub round: u32,
    pub p50_us: f64,
    pub rps: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsRun {
    /// What each HTTPS server negotiated with OpenSSL's default client
    /// (as wrk's): (server label, "protocol, suite, key exchange").
    pub negotiated: Vec<(String, String)>,
    /// nginx's TLS configuration as written.
    pub nginx_tls: String,
    /// 1-minute load average when the part started and ended.
    pub load_start: f64,
    pub load_end: f64,
    /// Keep-alive runs: server × size × connections.
    pub keepalive: Vec<TlsRow>,
    /// A new connection per request (wrk `Connection: close`). wrk keeps
    /// each connection's TLS session for its next connection (it clears
    /// the `SSL` object, which keeps the session), so these handshakes
    /// are resumed ones, as the node's counts show.
    pub handshakes: Vec<TlsRow>,
    pub handshake_conns: u32,
    /// Full handshakes, no resumption: `openssl s_time -new` processes
    /// (one request per connection), point.wrk holds only the counts
    /// and rate (no latency).
    #[serde(default)]
    pub full_handshakes: Vec<TlsRow>,
    /// Failover stalls over HTTPS, and over HTTP kill by kill beside them.
    pub stalls: Vec<TlsStall>,
    /// The duplex-overhead comparison, HTTP and HTTPS interleaved.
    #[serde(default)]
    pub overhead: Vec<TlsOverheadRun>,
    /// Seconds per run of `overhead`.
    #[serde(default)]
    pub overhead_seconds: f64,
    /// What was left out (e.g. --quick), and why.
    pub not_run: Vec<String>,
}

impl TlsRun {
    pub fn keepalive(&self, s: TlsServer, size: u64, conns: u32) -> Option<&Point> {
        self.keepalive
            .iter()
            .find(|r| r.server == s && r.size == size && r.point.conns == conns)
            .map(|r| &r.point)
    }
}
