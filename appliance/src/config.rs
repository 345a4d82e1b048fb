//! Node configuration (TOML). Unknown keys are errors, and every validation
//! error names the offending key, so `hotpair node --check` tells an operator
//! exactly what to fix.
//!
//! This file holds the sections and their defaults; `topology` turns them
//! into the node's [`Topology`] and checks the whole config.

mod checks;
mod host;
mod link;
mod tls;
mod topology;

pub use checks::{AppCheck, AppCheckSection, LanCheckSection};
pub use host::HostCheck;
pub use link::LinkSection;
pub use tls::{parse_cipher_suites, SniSection, TlsSection};

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hotpair_replicator::{Policy, Role};
use serde::Deserialize;

/// A node's config. Two forms: one address in `[service]` (with an optional
/// `[replication]` for a duplex pair), or the general one — any number of
/// `[[address]]` tables, each with its role, the `[[peer]]`s they name, and
/// an optional `[heartbeat]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    #[serde(default)]
    pub service: Option<ServiceSection>,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteSection>,
    /// With `[service]`; absent: the node serves alone (simplex).
    #[serde(default)]
    pub replication: Option<ReplicationSection>,
    /// The general form: one table per service address.
    #[serde(default, rename = "address")]
    pub addresses: Vec<AddressSection>,
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerSection>,
    #[serde(default)]
    pub heartbeat: Option<HeartbeatSection>,
    /// The replication link's key (or its loud opt-out): `config/link.rs`.
    #[serde(default)]
    pub link: Option<LinkSection>,
    /// The admin socket (`hotpair status`) and the Prometheus endpoint.
    #[serde(default)]
    pub admin: AdminSection,
    /// Whether this node still reaches the service LAN (absent: not
    /// checked).
    #[serde(default)]
    pub lan_check: Option<LanCheckSection>,
    /// Whether the application behind the `upstream` routes answers
    /// (absent: not checked).
    #[serde(default)]
    pub app_check: Option<AppCheckSection>,
    /// State-change hooks (keepalived's `notify`): `hooks.rs`.
    #[serde(default)]
    pub hooks: HooksSection,
    /// The access log: `access_log.rs`.
    #[serde(default)]
    pub log: crate::access_log::LogSection,
    /// HTTPS on the addresses listening on its port (absent: plain HTTP).
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// `[tls]` read and checked by [`Config::load`] (certificates, keys,
    /// ticket keys).
    #[serde(skip)]
    pub tls_server: Option<std::sync::Arc<hotpair_tls::TlsServerConfig>>,
    /// Said loudly at start and by `--check`: found by [`Config::load`]
    /// (a key file others can read).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `[admin]`: where a running node answers `hotpair status`, and its
/// Prometheus endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// The Unix socket `hotpair status` asks (default
    /// `/run/hotpair/<node.name>.sock`, see [`Config::admin_socket`]).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Serve Prometheus metrics (plain HTTP, `GET /metrics`) on this
    /// kernel TCP address, e.g. "127.0.0.1:9464". Off when absent.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
}

/// `[hooks]`: a script run on every state change of a service address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksSection {
    /// Run as `SCRIPT ADDRESS OLD_STATE NEW_STATE` (absolute path,
    /// executable). Off when absent.
    #[serde(default)]
    pub on_change: Option<PathBuf>,
    /// Each run's limit; killed past it (with its process group).
    #[serde(default = "default_hook_timeout")]
    pub timeout_ms: u64,
}

impl Default for HooksSection {
    fn default() -> Self {
        HooksSection {
            on_change: None,
            timeout_ms: default_hook_timeout(),
        }
    }
}

/// The longest `rejoin_delay_ms`: ten minutes.
pub const MAX_REJOIN_DELAY_MS: u64 = 600_000;

pub fn default_hook_timeout() -> u64 {
    5000
}

/// Where the admin sockets live by default.
pub const DEFAULT_ADMIN_DIR: &str = "/run/hotpair";

/// One service address and this node's role for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressSection {
    pub ip: Ipv4Addr,
    #[serde(default = "default_prefix_len")]
    pub prefix_len: u8,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Default: a quarter of `max_connections` (at least 16).
    #[serde(default)]
    pub max_half_open: Option<usize>,
    #[serde(default = "default_half_open_timeout")]
    pub half_open_timeout_ms: u64,
    /// The most connections one client address may hold (default: half of
    /// `max_connections`: one source never takes the whole pool).
    #[serde(default)]
    pub max_per_source: Option<usize>,
    /// Answer SYNs with SYN cookies at the half-open bound (default), or
    /// drop the oldest handshake for a new SYN.
    #[serde(default = "default_syn_cookies")]
    pub syn_cookies: bool,
    /// `owner` (this node owns the address on the LAN; `peer` is its
    /// primary), `primary` (`peer` owns it), or `alone`.
    #[serde(deserialize_with = "role")]
    pub role: Role,
    #[serde(default)]
    pub peer: Option<String>,
}

/// A node this one has a replication link with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    pub name: String,
    /// Accept the peer's link here.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Dial the peer here (retrying).
    #[serde(default)]
    pub connect: Option<SocketAddr>,
    /// The peer's link public key, 64 hex digits (`hotpair pair`).
    #[serde(default)]
    pub public_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSection {
    #[serde(default = "default_hb_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_hb_timeout")]
    pub timeout_ms: u64,
    /// How long a starting node waits for its peers before it serves alone.
    #[serde(default = "default_cold_start")]
    pub cold_start_ms: u64,
    /// How long a starting node waits before it opens its links (and so
    /// before it can take a role back from a peer that took over).
    #[serde(default)]
    pub rejoin_delay_ms: u64,
}

/// A role's name in a config: `owner` (or `ingress`, its name before the
/// rename), `primary`, `alone`
/// (or `simplex`).
fn role<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Role, D::Error> {
    let s = String::deserialize(d)?;
    match s.as_str() {
        "owner" | "ingress" => Ok(Role::Owner),
        "primary" => Ok(Role::Primary),
        "alone" | "simplex" => Ok(Role::Simplex),
        other => Err(serde::de::Error::custom(format!(
            "unknown role {other:?}: expected \"owner\", \"primary\" or \"alone\""
        ))),
    }
}

/// A service address as the node core runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSpec {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub port: u16,
    pub max_connections: usize,
    pub max_half_open: usize,
    pub half_open_timeout_ms: u64,
    pub max_per_source: usize,
    pub syn_cookies: bool,
    pub role: Role,
    /// Index into [`Topology::peers`].
    pub peer: Option<usize>,
}

/// How a link to a peer is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEnd {
    Listen(SocketAddr),
    Connect(SocketAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// `None`: the one-address form names no peer.
    pub name: Option<String>,
    pub link: LinkEnd,
}

/// Both config forms, normalised: what the node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub sites: Vec<SiteSpec>,
    pub peers: Vec<PeerSpec>,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    /// How long a starting node waits for its peers before it serves alone.
    pub cold_start_ms: u64,
}

/// The node's part in a replicated pair.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationSection {
    /// `primary` or `owner` (the owner).
    #[serde(deserialize_with = "role")]
    pub role: Role,
    /// Primary: where to accept the link from the owner node.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Owner: the primary's link address.
    #[serde(default)]
    pub peer: Option<SocketAddr>,
    /// The peer's link public key, 64 hex digits (`hotpair pair`).
    #[serde(default)]
    pub peer_public_key: Option<String>,
    #[serde(default = "default_hb_interval")]
    pub heartbeat_interval_ms: u64,
    #[serde(default = "default_hb_timeout")]
    pub heartbeat_timeout_ms: u64,
    /// How long a starting node waits for its peer before it serves alone
    /// (a cold start after a power cut that only this node survived).
    #[serde(default = "default_cold_start")]
    pub cold_start_ms: u64,
    /// How long a starting node waits before it opens its link (and so
    /// before it can take its role back from a peer that took over).
    #[serde(default)]
    pub rejoin_delay_ms: u64,
}

/// Default heartbeat interval. 50 ms with a 150 ms timeout held with no
/// takeover through 60 s of 50 MB downloads and `wrk -c64` with both nodes
/// at 0.5 CPU (release build), but a debug build on a loaded test machine
/// once spent 190 ms in one round, which the pause check takes for a
/// pause: the default stays 100/500 ms (docs/replication-protocol.md,
/// "Failure detection"); set 50/150 on dedicated hosts.
pub fn default_hb_interval() -> u64 {
    hotpair_replicator::detector::DEFAULT_HEARTBEAT_INTERVAL.as_millis() as u64
}
/// Default failure-detection time: five heartbeat intervals.
pub fn default_hb_timeout() -> u64 {
    hotpair_replicator::detector::DEFAULT_HEARTBEAT_TIMEOUT.as_millis() as u64
}
/// Default cold-start wait (`hotpair_replicator::DEFAULT_COLD_START_WAIT`).
pub fn default_cold_start() -> u64 {
    hotpair_replicator::replica::DEFAULT_COLD_START_WAIT.as_millis() as u64
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub name: String,
    /// TAP device to attach to (created if absent).
    pub tap: String,
    /// The node's own unicast MAC, e.g. "02:68:70:00:00:01".
    pub mac: String,
    /// Per-connection socket buffers.
    #[serde(default = "default_rx_buffer")]
    pub rx_buffer_bytes: usize,
    #[serde(default = "default_tx_buffer")]
    pub tx_buffer_bytes: usize,
    /// Threads for CPU-bound handlers (`generate`).
    #[serde(default = "default_workers")]
    pub worker_threads: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    pub address: Ipv4Addr,
    #[serde(default = "default_prefix_len")]
    pub prefix_len: u8,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Default: a quarter of `max_connections` (at least 16).
    #[serde(default)]
    pub max_half_open: Option<usize>,
    #[serde(default = "default_half_open_timeout")]
    pub half_open_timeout_ms: u64,
    /// The most connections one client address may hold (default: half of
    /// `max_connections`: one source never takes the whole pool).
    #[serde(default)]
    pub max_per_source: Option<usize>,
    /// Answer SYNs with SYN cookies at the half-open bound (default), or
    /// drop the oldest handshake for a new SYN.
    #[serde(default = "default_syn_cookies")]
    pub syn_cookies: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    #[serde(default = "default_max_header")]
    pub max_header_bytes: usize,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    #[serde(default = "default_max_pipelined")]
    pub max_pipelined: usize,
    #[serde(default = "default_header_timeout")]
    pub header_timeout_ms: u64,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
    #[serde(default = "default_body_timeout")]
    pub body_timeout_ms: u64,
    /// Most reply bytes a connection holds for a client that does not read.
    #[serde(default = "default_max_output")]
    pub max_output_bytes: usize,
    /// A connection whose client took none of its waiting output for this
    /// long is aborted (nginx's `send_timeout`).
    #[serde(default = "default_send_timeout")]
    pub send_timeout_ms: u64,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            max_header_bytes: default_max_header(),
            max_body_bytes: default_max_body(),
            max_pipelined: default_max_pipelined(),
            header_timeout_ms: default_header_timeout(),
            idle_timeout_ms: default_idle_timeout(),
            body_timeout_ms: default_body_timeout(),
            max_output_bytes: default_max_output(),
            send_timeout_ms: default_send_timeout(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// URL path prefix, e.g. "/static/".
    pub prefix: String,
    pub handler: HandlerKind,
    /// `files`: document root.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// `files`: most bytes to load into memory.
    #[serde(default)]
    pub max_total_bytes: Option<u64>,
    /// `generate`: largest `?size=`.
    #[serde(default)]
    pub max_size: Option<usize>,
    /// `upstream`: host:port of the application (kernel TCP); the host an
    /// IP address or a name.
    #[serde(default)]
    pub address: Option<String>,
    /// `upstream`: other instances of the application (the peer node's),
    /// tried in order when `address` refuses or drops a request.
    #[serde(default)]
    pub fallback: Option<Vec<String>>,
    /// `upstream`: most idle keep-alive connections kept.
    #[serde(default)]
    pub max_idle: Option<usize>,
    /// `upstream`: time for the whole exchange.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `upstream`: time to establish a connection.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// `upstream`: how long an idle keep-alive connection is kept.
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    /// `upstream`: re-send a POST/PATCH whose connection failed before a
    /// reply (safe only if the application deduplicates on the request id).
    #[serde(default)]
    pub retry_non_idempotent: Option<bool>,
    /// `upstream`: the header carrying the replication id.
    #[serde(default)]
    pub request_id_header: Option<String>,
    /// `upstream`: open each request's connection with a PROXY protocol
    /// header (connections not pooled then).
    #[serde(default)]
    pub proxy_protocol: Option<crate::upstream::ProxyProtocol>,
    /// How replies are replicated: `logged`, `static` or `sync-static`
    /// (default: `static` for `files`, `logged` otherwise).
    #[serde(default, deserialize_with = "policy")]
    pub policy: Option<Policy>,
}

/// A content policy's name in a config.
fn policy<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Policy>, D::Error> {
    let s = String::deserialize(d)?;
    match s.as_str() {
        "logged" => Ok(Some(Policy::Logged)),
        "static" => Ok(Some(Policy::Static)),
        "sync-static" => Ok(Some(Policy::SyncStatic)),
        other => Err(serde::de::Error::custom(format!(
            "unknown policy {other:?}: expected \"logged\", \"static\" or \"sync-static\""
        ))),
    }
}

impl RouteSection {
    /// The route's policy, its default filled in.
    pub fn policy(&self) -> Policy {
        self.policy.unwrap_or(match self.handler {
            HandlerKind::Files => Policy::Static,
            HandlerKind::Generate | HandlerKind::Upstream => Policy::Logged,
        })
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HandlerKind {
    Files,
    Generate,
    Upstream,
}

fn default_rx_buffer() -> usize {
    128 * 1024
}
fn default_tx_buffer() -> usize {
    256 * 1024
}
fn default_workers() -> usize {
    2
}
fn default_prefix_len() -> u8 {
    24
}
fn default_port() -> u16 {
    80
}
/// Sized for a real site, which holds tens of thousands of idle keep-alive
/// connections from browsers. Nothing is allocated for it up front (the
/// pool, the socket set and the timers grow with the connections), and an
/// idle connection costs a few KiB (its send buffer is lent only while it
/// sends), so the bound is a limit, not a reservation.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Above this a value is a typo rather than a plan: the engine's slot ids
/// are 32-bit and even idle, 4 M connections take tens of GiB.
pub const MAX_CONNECTIONS_LIMIT: usize = 4_000_000;
fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
/// Linux gives up on a handshake after ~63 s of SYN-ACK retransmissions;
/// the bound on half-open connections, not this timeout, is what stands up
/// to a flood, so a shorter wait only reclaims listeners sooner.
fn default_half_open_timeout() -> u64 {
    20_000
}
fn default_syn_cookies() -> bool {
    true
}
/// A SYN queue a quarter of the pool: a flood never holds more than that.
fn default_max_half_open(max_connections: usize) -> usize {
    (max_connections / 4).max(16).min(max_connections)
}
fn default_max_header() -> usize {
    16 * 1024
}
fn default_max_body() -> u64 {
    64 * 1024 * 1024
}
fn default_max_pipelined() -> usize {
    32
}
fn default_max_output() -> usize {
    hotpair_http::Limits::default().max_output_bytes
}
fn default_send_timeout() -> u64 {
    hotpair_http::Limits::default().send_timeout.as_millis() as u64
}
fn default_header_timeout() -> u64 {
    10_000
}
fn default_idle_timeout() -> u64 {
    60_000
}
fn default_body_timeout() -> u64 {
    60_000
}

/// A role as the config spells it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Primary => "primary",
        Role::Simplex => "alone",
    }
}

/// Default ceiling of a `files` root held in memory.
pub const DEFAULT_FILES_MAX_BYTES: u64 = 1 << 30;
/// Default ceiling of `generate`'s `?size=`.
pub const DEFAULT_GENERATE_MAX: usize = 64 * 1024 * 1024;

/// Parse a MAC "aa:bb:cc:dd:ee:ff" that must be unicast.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        bail!("{s:?} is not a MAC address (six hex bytes separated by ':')");
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(&parts) {
        *m = u8::from_str_radix(p, 16).with_context(|| format!("{s:?}: bad hex byte {p:?}"))?;
    }
    if mac[0] & 1 != 0 {
        bail!("{s:?} is a multicast MAC; the node needs a unicast one");
    }
    if mac == [0; 6] {
        bail!("{s:?} is the all-zero MAC");
    }
    Ok(mac)
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut cfg =
            Self::parse(&text).with_context(|| format!("in config {}", path.display()))?;
        // The files that hold the link's private key: refused if others
        // can write them, a warning if others can read them.
        let mut secret_files = cfg.secret_files(path);
        secret_files.extend(cfg.tls_secret_files());
        for (file, what) in secret_files {
            if let Some(w) = crate::secure::check_secret_file(&file, what)
                .with_context(|| format!("in config {}", path.display()))?
            {
                cfg.warnings.push(w);
            }
        }
        cfg.tls_server = cfg
            .load_tls()
            .with_context(|| format!("in config {}", path.display()))?;
        // A hook that cannot run is not worth refusing to serve: said by
        // --check and at start, and at warn on each change it misses.
        if let Some(p) = &cfg.hooks.on_change {
            use std::os::unix::fs::PermissionsExt;
            match std::fs::metadata(p) {
                Err(e) => cfg.warnings.push(format!(
                    "hooks.on_change: {}: {e}: no hook will run",
                    p.display()
                )),
                Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => {
                    cfg.warnings.push(format!(
                        "hooks.on_change: {} is not an executable file: no hook will run",
                        p.display()
                    ))
                }
                Ok(_) => {}
            }
        }
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        cfg.validate()?;
        cfg.link_keys()?;
        Ok(cfg)
    }

    /// `rejoin_delay_ms` of `[replication]` or `[heartbeat]` (0 without).
    pub fn rejoin_delay_ms(&self) -> u64 {
        match (&self.replication, &self.heartbeat) {
            (Some(r), _) => r.rejoin_delay_ms,
            (None, Some(h)) => h.rejoin_delay_ms,
            (None, None) => 0,
        }
    }

    /// The admin socket's path: `[admin] socket`, or
    /// `/run/hotpair/<node.name>.sock`.
    pub fn admin_socket(&self) -> PathBuf {
        self.admin.socket.clone().unwrap_or_else(|| {
            Path::new(DEFAULT_ADMIN_DIR).join(format!("{}.sock", self.node.name))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> String {
        r#"
[node]
name = "n1"
tap = "hptap0"
mac = "02:68:70:00:00:01"
[service]
address = "10.77.0.10"
"#
        .to_string()
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(&base()).unwrap();
        let t = c.topology().unwrap();
        assert_eq!(t.sites[0].port, 80);
        assert_eq!(t.sites[0].max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(t.sites[0].role, Role::Simplex);
        assert!(t.sites[0].syn_cookies, "SYN cookies are on by default");
        assert_eq!(c.http.max_header_bytes, 16384);
        assert!(c.routes.is_empty());
        let off = Config::parse(&(base() + "syn_cookies = false\n")).unwrap();
        assert!(!off.topology().unwrap().sites[0].syn_cookies);
        let e = err(&(base() + "syn_cookies = \"maybe\"\n"));
        assert!(e.contains("syn_cookies"), "{e}");
    }

    #[test]
    fn a_million_connections_are_accepted() {
        let c = Config::parse(&(base() + "max_connections = 1000000\n")).unwrap();
        let t = c.topology().unwrap();
        assert_eq!(t.sites[0].max_connections, 1_000_000);
        assert_eq!(t.sites[0].max_half_open, 250_000);
        let e = err(&(base() + "max_connections = 4000001\n"));
        assert!(e.contains("service.max_connections"), "{e}");
    }

    fn err(text: &str) -> String {
        format!("{:#}", Config::parse(text).unwrap_err())
    }

    #[test]
    fn rejoin_delay_in_either_form() {
        assert_eq!(Config::parse(&base()).unwrap().rejoin_delay_ms(), 0);
        let text = base().replace("[service]", "[link]\ndanger_plaintext = true\n[replication]\nrole = \"primary\"\nlisten = \"10.0.0.1:7700\"\nrejoin_delay_ms = 1500\n[service]");
        let c = Config::parse(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
        assert_eq!(c.rejoin_delay_ms(), 1500);
        let text = text.replace("1500", "600001");
        assert!(
            err(&text).contains("replication.rejoin_delay_ms"),
            "{}",
            err(&text)
        );
    }

    #[test]
    fn hooks_section_defaults_and_checks() {
        let c = Config::parse(&base()).unwrap();
        assert_eq!(
            (c.hooks.on_change.as_ref(), c.hooks.timeout_ms),
            (None, 5000)
        );
        let hooks = |body: &str| base() + "[hooks]\n" + body + "\n";
        let c = Config::parse(&hooks("on_change = \"/x/h.sh\"\ntimeout_ms = 100")).unwrap();
        assert_eq!(c.hooks.on_change.as_deref(), Some(Path::new("/x/h.sh")));
        assert_eq!(c.hooks.timeout_ms, 100);
        assert!(err(&hooks("on_change = \"h.sh\"")).contains("hooks.on_change"));
        assert!(err(&hooks("timeout_ms = 0")).contains("hooks.timeout_ms"));
        assert!(err(&hooks("timeout_ms = 600001")).contains("hooks.timeout_ms"));
        assert!(err(&hooks("on_chnage = \"/x\"")).contains("on_chnage"));
    }

    #[test]
    fn admin_section_defaults_and_checks() {
        let c = Config::parse(&base()).unwrap();
        assert_eq!(c.admin_socket(), Path::new("/run/hotpair/n1.sock"));
        assert_eq!(c.admin.metrics, None);
        let text = base().replace(
            "[service]",
            "[admin]\nsocket = \"/tmp/x/n1.sock\"\nmetrics = \"127.0.0.1:9464\"\n[service]",
        );
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.admin_socket(), Path::new("/tmp/x/n1.sock"));
        assert_eq!(c.admin.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        let admin = |body: &str| base() + "[admin]\n" + body + "\n";
        assert!(err(&admin("metrics = \"nope\"")).contains("metrics"));
        assert!(err(&admin("metrics = \"127.0.0.1:0\"")).contains("admin.metrics"));
        assert!(err(&admin("socket = \"\"")).contains("admin.socket"));
        let long = format!("socket = \"/{}\"", "x".repeat(120));
        assert!(err(&admin(&long)).contains("admin.socket"));
        assert!(err(&admin("sockett = \"/a\"")).contains("sockett"));
        assert!(err(&base().replace("name = \"n1\"", "name = \"a/b\"")).contains("node.name"));
    }

    #[test]
    fn errors_name_the_offending_key() {
        assert!(err(&base().replace("02:68", "03:68")).contains("node.mac"));
        assert!(err(&base().replace("10.77.0.10", "10.77.0")).contains("address"));
        assert!(err(&(base() + "port = 0\n")).contains("service.port"));
        assert!(err(&(base() + "bogus = 1\n")).contains("bogus"));
        let up =
            base() + "[[route]]\nprefix = \"/app/\"\nhandler = \"upstream\"\naddress = \"nope\"\n";
        assert!(err(&up).contains("route[0].address"));
        let files = base() + "[[route]]\nprefix = \"/s/\"\nhandler = \"files\"\n";
        assert!(err(&files).contains("route[0].root"));
        let kind = base() + "[[route]]\nprefix = \"/s/\"\nhandler = \"ftp\"\n";
        assert!(err(&kind).contains("handler"));
        let rel = base() + "[[route]]\nprefix = \"s\"\nhandler = \"generate\"\n";
        assert!(err(&rel).contains("route[0].prefix"));
        let gen =
            base() + "[[route]]\nprefix = \"/g/\"\nhandler = \"generate\"\npolicy = \"static\"\n";
        assert!(err(&gen).contains("route[0].policy"));
        let up = base()
            + "[[route]]\nprefix = \"/a/\"\nhandler = \"upstream\"\naddress = \"127.0.0.1:1\"\npolicy = \"sync-static\"\n";
        assert!(err(&up).contains("route[0].policy"));
        let bad =
            base() + "[[route]]\nprefix = \"/g/\"\nhandler = \"generate\"\npolicy = \"cached\"\n";
        assert!(err(&bad).contains("policy"));
    }

    #[test]
    fn replication_section_is_checked() {
        let p = base() + "[replication]\nrole = \"primary\"\n";
        assert!(err(&p).contains("replication.listen"));
        let i = base() + "[replication]\nrole = \"owner\"\npeer = \"10.0.0.1:7700\"\nheartbeat_timeout_ms = 50\n";
        assert!(err(&i).contains("replication.heartbeat_timeout_ms"));
        let ok = base() + "[replication]\nrole = \"owner\"\npeer = \"10.0.0.1:7700\"\n";
        // A replicated node needs the link's keys, or the loud opt-out.
        assert!(err(&ok).contains("link"));
        let plain = ok.clone() + "[link]\ndanger_plaintext = true\n";
        let c = Config::parse(&plain).unwrap();
        assert_eq!(c.replication.unwrap().heartbeat_timeout_ms, 500);
        let keyed = ok.replace(
            "[replication]\n",
            &format!(
                "[link]\nprivate_key = \"{}\"\n[replication]\n",
                "01".repeat(32)
            ),
        ) + &format!("peer_public_key = \"{}\"\n", peer_public());
        Config::parse(&keyed).unwrap();
    }

    /// A peer's public key for the test configs.
    fn peer_public() -> String {
        crate::secure::hex(&crate::secure::public_of(&[2; 32]))
    }

    #[test]
    fn the_link_keys_are_checked_naming_the_key() {
        let cases = [
            (dual().replace("[link]\n", "[lonk]\n"), "lonk"),
            (
                dual().replacen(&format!("public_key = \"{}\"\n", peer_public()), "", 1),
                "peer[0].public_key",
            ),
            (dual().replace(&peer_public(), "abcd"), "peer[0].public_key"),
            (
                dual().replace(
                    &peer_public(),
                    &crate::secure::hex(&crate::secure::public_of(&[1; 32])),
                ),
                "own public key",
            ),
            (
                dual().replace(&"01".repeat(32), &"0g".repeat(32)),
                "link.private_key",
            ),
            (
                dual().replace("[link]\n", "[link]\ndanger_plaintext = true\n"),
                "link.danger_plaintext",
            ),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert!(e.contains(key), "expected {key:?} in: {e}");
        }
    }

    #[test]
    fn a_config_holding_a_key_is_refused_if_others_can_write_it_and_warned_if_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hotpair-cfgmode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n1.toml");
        std::fs::write(&path, dual()).unwrap();
        let set = |m| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
        set(0o600);
        assert!(Config::load(&path).unwrap().warnings.is_empty());
        set(0o644);
        let w = Config::load(&path).unwrap().warnings;
        assert!(
            w.len() == 1 && w[0].contains("link.private_key") && w[0].contains("readable"),
            "{w:?}"
        );
        set(0o666);
        let e = format!("{:#}", Config::load(&path).unwrap_err());
        assert!(e.contains("writable by others"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn dual() -> String {
        r#"
[node]
name = "n1"
tap = "hptap0"
mac = "02:68:70:00:00:01"
[link]
private_key = "PRIVATE"
[[address]]
ip = "10.77.0.10"
role = "owner"
peer = "n2"
[[address]]
ip = "10.77.0.11"
role = "primary"
peer = "n2"
[[peer]]
name = "n2"
public_key = "PUBLIC"
listen = "10.77.0.1:7702"
"#
        .replace("PRIVATE", &"01".repeat(32))
        .replace("PUBLIC", &peer_public())
    }

    #[test]
    fn the_general_form_gives_every_address_its_role_and_peer() {
        let t = Config::parse(&dual()).unwrap().topology().unwrap();
        assert_eq!(t.sites.len(), 2);
        assert_eq!((t.sites[0].role, t.sites[0].peer), (Role::Owner, Some(0)));
        assert_eq!((t.sites[1].role, t.sites[1].peer), (Role::Primary, Some(0)));
        assert_eq!(t.peers[0].name.as_deref(), Some("n2"));
        assert_eq!(
            t.peers[0].link,
            LinkEnd::Listen("10.77.0.1:7702".parse().unwrap())
        );
        assert_eq!(
            (t.heartbeat_interval_ms, t.heartbeat_timeout_ms),
            (100, 500)
        );
    }

    #[test]
    fn service_is_the_one_address_it_stands_for() {
        // Every key off its default, so a key the sugar dropped or swapped
        // shows.
        let limits = "prefix_len = 16\ngateway = \"10.77.0.1\"\nport = 8080\nmax_connections = 900\nmax_half_open = 70\nhalf_open_timeout_ms = 4000\nmax_per_source = 30\nsyn_cookies = false\n";
        let node = "[node]\nname = \"n1\"\ntap = \"hptap0\"\nmac = \"02:68:70:00:00:01\"\n[link]\ndanger_plaintext = true\n";
        let service = format!(
            "{node}[service]\naddress = \"10.77.0.10\"\n{limits}[replication]\nrole = \"owner\"\npeer = \"10.77.0.1:7700\"\nheartbeat_interval_ms = 40\nheartbeat_timeout_ms = 300\ncold_start_ms = 2000\n"
        );
        let address = format!(
            "{node}[[address]]\nip = \"10.77.0.10\"\n{limits}role = \"owner\"\npeer = \"n2\"\n[[peer]]\nname = \"n2\"\nconnect = \"10.77.0.1:7700\"\n[heartbeat]\ninterval_ms = 40\ntimeout_ms = 300\ncold_start_ms = 2000\n"
        );
        let from_service = Config::parse(&service).unwrap().topology().unwrap();
        let mut from_address = Config::parse(&address).unwrap().topology().unwrap();
        // The one difference: the one-address form names no peer.
        assert_eq!(from_address.peers[0].name.take().as_deref(), Some("n2"));
        assert_eq!(from_service, from_address);
        assert_eq!(from_service.sites[0].max_half_open, 70);
        // Served alone: no peer, the heartbeat defaults.
        let alone = Config::parse(&format!(
            "{node}[service]\naddress = \"10.77.0.10\"\n{limits}"
        ))
        .unwrap()
        .topology()
        .unwrap();
        assert_eq!(
            (alone.sites[0].role, alone.sites[0].peer),
            (Role::Simplex, None)
        );
        assert!(alone.peers.is_empty());
        assert_eq!(
            (alone.heartbeat_interval_ms, alone.heartbeat_timeout_ms),
            (100, 500)
        );
        let mut expected = from_service.sites[0].clone();
        (expected.role, expected.peer) = (Role::Simplex, None);
        assert_eq!(alone.sites[0], expected);
    }

    #[test]
    fn an_inconsistent_set_of_addresses_is_refused_naming_the_key() {
        let cases = [
            (dual().replace("10.77.0.11", "10.77.0.10"), "address[1].ip"),
            (dual().replacen("peer = \"n2\"\n", "", 1), "address[0].peer"),
            (
                dual().replacen("peer = \"n2\"", "peer = \"n9\"", 1),
                "address[0].peer",
            ),
            (
                dual().replace("role = \"primary\"", "role = \"alone\""),
                "address[1].peer",
            ),
            (
                dual().replace("role = \"primary\"", "role = \"boss\""),
                "role",
            ),
            (dual() + "connect = \"10.77.0.2:7702\"\n", "peer[0].listen"),
            (
                dual() + "[[peer]]\nname = \"n3\"\nconnect = \"10.77.0.3:7703\"\n",
                "peer[1].name",
            ),
            (
                dual().replace("name = \"n2\"", "name = \"n1\""),
                "peer[0].name",
            ),
            (dual() + "[service]\naddress = \"10.77.0.12\"\n", "address"),
            (
                dual() + "[heartbeat]\ninterval_ms = 100\ntimeout_ms = 100\n",
                "heartbeat.timeout_ms",
            ),
            (
                dual() + "[replication]\nrole = \"primary\"\nlisten = \"10.0.0.1:1\"\n",
                "replication",
            ),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert!(e.contains(key), "expected {key:?} in: {e}");
        }
        let none = "[node]\nname = \"n1\"\ntap = \"t\"\nmac = \"02:00:00:00:00:01\"\n";
        assert!(err(none).contains("service"));
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("02:68:70:00:00:01").unwrap(),
            [2, 0x68, 0x70, 0, 0, 1]
        );
        assert!(parse_mac("01:00:5e:00:00:01").is_err());
        assert!(parse_mac("02:68:70:00:00").is_err());
        assert!(parse_mac("zz:68:70:00:00:01").is_err());
    }
}
