//! From the parsed sections to what the node runs: [`Config::topology`]
//! (every address's role and peer) and the checks of the whole config.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};
use hotpair_replicator::{Policy, Role};

use super::{
    default_cold_start, default_hb_interval, default_hb_timeout, default_max_half_open, parse_mac,
    role_name, AddressSection, Config, HandlerKind, LinkEnd, PeerSpec, ServiceSection, SiteSpec,
    Topology, MAX_CONNECTIONS_LIMIT, MAX_REJOIN_DELAY_MS,
};

/// The general form's tables, as [`Config::topology`] reads them.
struct GeneralForm<'a> {
    addresses: Vec<AddressTable<'a>>,
    peers: Vec<PeerSpec>,
    /// The prefix of the heartbeat's keys (`heartbeat.`,
    /// `replication.heartbeat_`), its interval, timeout and cold-start
    /// wait.
    heartbeat: (&'static str, u64, u64, u64),
}

/// One `[[address]]`, or the `[service]` it stands for.
struct AddressTable<'a> {
    /// The table, as errors name it (`service`, `address[1]`).
    key: String,
    /// Its address's key (`service.address`, `address[1].ip`).
    ip_key: String,
    section: Cow<'a, AddressSection>,
    /// Its peer's index in [`GeneralForm::peers`], or why it has none
    /// (said after the address's own checks).
    peer: Result<Option<usize>>,
}

impl AddressTable<'_> {
    /// `[service]` as the `[[address]]` it is sugar for: this node's
    /// `role` for it, and its peer's index.
    fn service(s: &ServiceSection, role: Role, peer: Option<usize>) -> AddressTable<'static> {
        AddressTable {
            key: "service".into(),
            ip_key: "service.address".into(),
            section: Cow::Owned(AddressSection {
                ip: s.address,
                prefix_len: s.prefix_len,
                gateway: s.gateway,
                port: s.port,
                max_connections: s.max_connections,
                max_half_open: s.max_half_open,
                half_open_timeout_ms: s.half_open_timeout_ms,
                max_per_source: s.max_per_source,
                syn_cookies: s.syn_cookies,
                role,
                // Named in `peer`: the one-address form names no peer.
                peer: None,
            }),
            peer: Ok(peer),
        }
    }
}

impl Config {
    pub fn topology(&self) -> Result<Topology> {
        let check_half_open = |key: &str, max: usize, half: Option<usize>, timeout: u64| {
            let half = half.unwrap_or_else(|| default_max_half_open(max));
            if half == 0 || half > max {
                bail!("{key}.max_half_open: {half} must be within 1..=max_connections ({max})");
            }
            if timeout < 1000 {
                bail!("{key}.half_open_timeout_ms: {timeout} must be at least 1000 (a client's SYN-ACK round trip and retransmission)");
            }
            Ok(half)
        };
        let check_per_source = |key: &str, max: usize, per: Option<usize>| {
            let per = per.unwrap_or((max / 2).max(1));
            if per == 0 || per > max {
                bail!("{key}.max_per_source: {per} must be within 1..=max_connections ({max})");
            }
            Ok(per)
        };
        // `key` is the table ("service", "address[1]"), `ip_key` its address.
        let check_site =
            |key: &str, ip_key: &str, a: Ipv4Addr, prefix_len: u8, port: u16, max: usize| {
                if prefix_len == 0 || prefix_len > 32 {
                    bail!("{key}.prefix_len: {prefix_len} must be within 1..=32");
                }
                if a.is_unspecified() || a.is_multicast() || a.is_broadcast() {
                    bail!("{ip_key}: {a} is not a unicast address");
                }
                if port == 0 {
                    bail!("{key}.port: must not be 0");
                }
                if max == 0 || max > MAX_CONNECTIONS_LIMIT {
                    bail!(
                        "{key}.max_connections: {max} must be within 1..={MAX_CONNECTIONS_LIMIT}"
                    );
                }
                Ok(())
            };
        let check_hb = |key: &str, interval: u64, timeout: u64, cold_start: u64| {
            if interval == 0 {
                bail!("{key}interval_ms: must be greater than 0");
            }
            if timeout <= interval {
                bail!("{key}timeout_ms: {timeout} must exceed {key}interval_ms ({interval})");
            }
            if cold_start < timeout {
                bail!(
                    "{}cold_start_ms: {cold_start} must be at least {key}timeout_ms ({timeout})",
                    key.trim_end_matches("heartbeat_")
                );
            }
            Ok(())
        };
        let form = self.general_form()?;
        let mut sites = Vec::new();
        for t in form.addresses {
            let (key, a) = (&t.key, &*t.section);
            check_site(
                key,
                &t.ip_key,
                a.ip,
                a.prefix_len,
                a.port,
                a.max_connections,
            )?;
            if sites.iter().any(|o: &SiteSpec| o.address == a.ip) {
                bail!("{key}.ip: {} is listed twice", a.ip);
            }
            sites.push(SiteSpec {
                address: a.ip,
                prefix_len: a.prefix_len,
                gateway: a.gateway,
                port: a.port,
                max_connections: a.max_connections,
                max_half_open: check_half_open(
                    key,
                    a.max_connections,
                    a.max_half_open,
                    a.half_open_timeout_ms,
                )?,
                half_open_timeout_ms: a.half_open_timeout_ms,
                max_per_source: check_per_source(key, a.max_connections, a.max_per_source)?,
                syn_cookies: a.syn_cookies,
                role: a.role,
                peer: t.peer?,
            });
        }
        for (i, p) in form.peers.iter().enumerate() {
            if !sites.iter().any(|s| s.peer == Some(i)) {
                bail!(
                    "peer[{i}].name: {:?} shares no address with this node",
                    p.name.as_deref().unwrap_or_default()
                );
            }
        }
        let (key, interval, timeout, cold_start) = form.heartbeat;
        check_hb(key, interval, timeout, cold_start)?;
        Ok(Topology {
            sites,
            peers: form.peers,
            heartbeat_interval_ms: interval,
            heartbeat_timeout_ms: timeout,
            cold_start_ms: cold_start,
        })
    }

    /// The config in its general form, `[service]` (with `[replication]`)
    /// read as the one `[[address]]` (and `[[peer]]`, `[heartbeat]`) it
    /// is sugar for: what [`Config::topology`] checks and builds from,
    /// whichever form was written. Errors name the keys written.
    fn general_form(&self) -> Result<GeneralForm<'_>> {
        match (&self.service, self.addresses.is_empty()) {
            (Some(_), false) => {
                bail!("address: [service] and [[address]] are two forms of one thing; use one")
            }
            (None, true) => bail!("service: missing (or give [[address]] tables)"),
            (Some(s), true) => {
                if !self.peers.is_empty() {
                    bail!("peer: [[peer]] goes with [[address]], not with [service] (use [replication])");
                }
                if self.heartbeat.is_some() {
                    bail!("heartbeat: goes with [[address]]; with [service] the heartbeat is set in [replication]");
                }
                let Some(r) = &self.replication else {
                    return Ok(GeneralForm {
                        addresses: vec![AddressTable::service(s, Role::Simplex, None)],
                        peers: Vec::new(),
                        heartbeat: (
                            "replication.heartbeat_",
                            default_hb_interval(),
                            default_hb_timeout(),
                            default_cold_start(),
                        ),
                    });
                };
                let link = match r.role {
                    Role::Primary => LinkEnd::Listen(
                        r.listen
                            .context("replication.listen: required for role \"primary\"")?,
                    ),
                    Role::Owner => LinkEnd::Connect(
                        r.peer
                            .context("replication.peer: required for role \"owner\"")?,
                    ),
                    Role::Simplex => bail!(
                        "replication.role: \"alone\" means no replication; remove [replication]"
                    ),
                };
                Ok(GeneralForm {
                    addresses: vec![AddressTable::service(s, r.role, Some(0))],
                    // The one-address form names no peer.
                    peers: vec![PeerSpec { name: None, link }],
                    heartbeat: (
                        "replication.heartbeat_",
                        r.heartbeat_interval_ms,
                        r.heartbeat_timeout_ms,
                        r.cold_start_ms,
                    ),
                })
            }
            (None, false) => {
                if self.replication.is_some() {
                    bail!("replication: goes with [service]; with [[address]] use [[peer]] and [heartbeat]");
                }
                let mut peers = Vec::new();
                for (i, p) in self.peers.iter().enumerate() {
                    let key = |k: &str| format!("peer[{i}].{k}");
                    if p.name.is_empty() {
                        bail!("{}: must not be empty", key("name"));
                    }
                    if p.name == self.node.name {
                        bail!("{}: {:?} is this node's own name", key("name"), p.name);
                    }
                    if self.peers[..i].iter().any(|o| o.name == p.name) {
                        bail!("{}: {:?} is used by an earlier peer", key("name"), p.name);
                    }
                    let link = match (p.listen, p.connect) {
                        (Some(a), None) => LinkEnd::Listen(a),
                        (None, Some(a)) => LinkEnd::Connect(a),
                        _ => bail!("{}: give exactly one of listen and connect", key("listen")),
                    };
                    peers.push(PeerSpec {
                        name: Some(p.name.clone()),
                        link,
                    });
                }
                let addresses = self
                    .addresses
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let key = format!("address[{i}]");
                        AddressTable {
                            ip_key: format!("{key}.ip"),
                            peer: self.peer_of(&key, a),
                            key,
                            section: Cow::Borrowed(a),
                        }
                    })
                    .collect();
                let heartbeat = self.heartbeat.as_ref().map_or(
                    (
                        default_hb_interval(),
                        default_hb_timeout(),
                        default_cold_start(),
                    ),
                    |h| (h.interval_ms, h.timeout_ms, h.cold_start_ms),
                );
                Ok(GeneralForm {
                    addresses,
                    peers,
                    heartbeat: ("heartbeat.", heartbeat.0, heartbeat.1, heartbeat.2),
                })
            }
        }
    }

    /// The index of the `[[peer]]` an `[[address]]` (table `key`) names.
    fn peer_of(&self, key: &str, a: &AddressSection) -> Result<Option<usize>> {
        Ok(match (a.role, &a.peer) {
            (Role::Simplex, None) => None,
            (Role::Simplex, Some(_)) => {
                bail!("{key}.peer: an address served alone has no peer")
            }
            (_, None) => bail!("{key}.peer: required for role {:?}", role_name(a.role)),
            (_, Some(name)) => Some(
                self.peers
                    .iter()
                    .position(|p| &p.name == name)
                    .with_context(|| format!("{key}.peer: {name:?} is not a [[peer]]"))?,
            ),
        })
    }

    pub(super) fn validate(&self) -> Result<()> {
        self.lan_check()?;
        self.app_check()?;
        let n = &self.node;
        if n.name.is_empty() {
            bail!("node.name: must not be empty");
        }
        if n.tap.is_empty() || n.tap.len() >= 16 {
            bail!(
                "node.tap: {:?} must be 1 to 15 characters (IFNAMSIZ)",
                n.tap
            );
        }
        parse_mac(&n.mac).context("node.mac")?;
        if n.rx_buffer_bytes < 4096 || n.rx_buffer_bytes > (1 << 30) {
            bail!(
                "node.rx_buffer_bytes: {} must be within 4096..=1 GiB",
                n.rx_buffer_bytes
            );
        }
        if n.tx_buffer_bytes < 4096 || n.tx_buffer_bytes > (1 << 30) {
            bail!(
                "node.tx_buffer_bytes: {} must be within 4096..=1 GiB",
                n.tx_buffer_bytes
            );
        }
        if n.worker_threads == 0 || n.worker_threads > 256 {
            bail!(
                "node.worker_threads: {} must be within 1..=256",
                n.worker_threads
            );
        }
        self.topology()?;
        if let Some(p) = &self.admin.socket {
            // sun_path holds 108 bytes with the terminating NUL.
            if p.as_os_str().is_empty() || p.as_os_str().len() > 107 {
                bail!(
                    "admin.socket: {:?} must be 1 to 107 bytes (a Unix socket path)",
                    p
                );
            }
        }
        if self.node.name.contains('/') || self.node.name == "." || self.node.name == ".." {
            bail!(
                "node.name: {:?} must not contain '/' (it names the default admin socket)",
                self.node.name
            );
        }
        if let Some(m) = self.admin.metrics {
            if m.port() == 0 {
                bail!("admin.metrics: {m} needs a port");
            }
        }
        if let Some(p) = &self.hooks.on_change {
            // Run from the node's working directory (/ under systemd): a
            // relative path would depend on where it was started.
            if !p.is_absolute() {
                bail!("hooks.on_change: {p:?} must be an absolute path");
            }
        }
        if self.rejoin_delay_ms() > MAX_REJOIN_DELAY_MS {
            let key = if self.replication.is_some() {
                "replication"
            } else {
                "heartbeat"
            };
            bail!(
                "{key}.rejoin_delay_ms: {} must be at most {MAX_REJOIN_DELAY_MS}",
                self.rejoin_delay_ms()
            );
        }
        self.log.check()?;
        if self.hooks.timeout_ms == 0 || self.hooks.timeout_ms > 600_000 {
            bail!(
                "hooks.timeout_ms: {} must be within 1..=600000",
                self.hooks.timeout_ms
            );
        }
        let h = &self.http;
        if h.max_header_bytes < 256 || h.max_header_bytes > (1 << 20) {
            bail!(
                "http.max_header_bytes: {} must be within 256..=1 MiB",
                h.max_header_bytes
            );
        }
        if h.max_output_bytes < 64 * 1024 {
            bail!(
                "http.max_output_bytes: {} must be at least 65536 (one reply's head and a socket's worth of body)",
                h.max_output_bytes
            );
        }
        if h.max_pipelined == 0 || h.max_pipelined > 1024 {
            bail!(
                "http.max_pipelined: {} must be within 1..=1024",
                h.max_pipelined
            );
        }
        for (key, v) in [
            ("http.header_timeout_ms", h.header_timeout_ms),
            ("http.idle_timeout_ms", h.idle_timeout_ms),
            ("http.body_timeout_ms", h.body_timeout_ms),
            ("http.send_timeout_ms", h.send_timeout_ms),
        ] {
            if v == 0 {
                bail!("{key}: must be greater than 0");
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let key = |k: &str| format!("route[{i}].{k}");
            if !r.prefix.starts_with('/') {
                bail!("{}: {:?} must start with '/'", key("prefix"), r.prefix);
            }
            if self.routes[..i].iter().any(|o| o.prefix == r.prefix) {
                bail!(
                    "{}: {:?} is used by an earlier route",
                    key("prefix"),
                    r.prefix
                );
            }
            let unexpected = |k: &str, present: bool| -> Result<()> {
                if present {
                    bail!("{}: not valid for handler {:?}", key(k), r.handler);
                }
                Ok(())
            };
            if r.handler != HandlerKind::Upstream {
                for (k, present) in [
                    ("max_idle", r.max_idle.is_some()),
                    ("timeout_ms", r.timeout_ms.is_some()),
                    ("connect_timeout_ms", r.connect_timeout_ms.is_some()),
                    ("idle_timeout_ms", r.idle_timeout_ms.is_some()),
                    ("retry_non_idempotent", r.retry_non_idempotent.is_some()),
                    ("request_id_header", r.request_id_header.is_some()),
                    ("proxy_protocol", r.proxy_protocol.is_some()),
                    ("fallback", r.fallback.is_some()),
                ] {
                    unexpected(k, present)?;
                }
            }
            match r.handler {
                HandlerKind::Files => {
                    let Some(root) = &r.root else {
                        bail!("{}: required for handler \"files\"", key("root"));
                    };
                    if !root.is_dir() {
                        bail!("{}: {} is not a directory", key("root"), root.display());
                    }
                    unexpected("max_size", r.max_size.is_some())?;
                    unexpected("address", r.address.is_some())?;
                }
                HandlerKind::Generate => {
                    unexpected("root", r.root.is_some())?;
                    unexpected("address", r.address.is_some())?;
                    if r.max_size == Some(0) {
                        bail!("{}: must be greater than 0", key("max_size"));
                    }
                    if r.policy() != Policy::Logged {
                        bail!(
                            "{}: {:?} needs replies both nodes make alike; generate makes new random bytes for every request, so its replies can only be logged",
                            key("policy"),
                            r.policy().name()
                        );
                    }
                }
                HandlerKind::Upstream => {
                    let Some(addr) = &r.address else {
                        bail!("{}: required for handler \"upstream\"", key("address"));
                    };
                    crate::upstream::parse_address(addr)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", key("address")))?;
                    for (j, f) in r.fallback.iter().flatten().enumerate() {
                        crate::upstream::parse_address(f)
                            .map_err(|e| anyhow::anyhow!("{}[{j}]: {e}", key("fallback")))?;
                        if f == addr {
                            bail!("{}[{j}]: {f:?} is the route's own address: name the other instances of the application (e.g. the peer node's)", key("fallback"));
                        }
                    }
                    for (k, v, max) in [
                        ("timeout_ms", r.timeout_ms, 3_600_000),
                        ("connect_timeout_ms", r.connect_timeout_ms, 600_000),
                        ("idle_timeout_ms", r.idle_timeout_ms, 3_600_000),
                    ] {
                        if v.is_some_and(|v| v == 0 || v > max) {
                            bail!("{}: {} must be within 1..={max}", key(k), v.unwrap_or(0));
                        }
                    }
                    if r.proxy_protocol.is_some() {
                        for (k, present) in [
                            ("max_idle", r.max_idle.is_some()),
                            ("idle_timeout_ms", r.idle_timeout_ms.is_some()),
                        ] {
                            if present {
                                bail!("{}: with proxy_protocol no connection is kept idle (each carries one client's request)", key(k));
                            }
                        }
                    }
                    if let Some(h) = &r.request_id_header {
                        crate::upstream::check_request_id_header(h)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", key("request_id_header")))?;
                    }
                    unexpected("root", r.root.is_some())?;
                    unexpected("max_size", r.max_size.is_some())?;
                    if r.policy() != Policy::Logged {
                        bail!(
                            "{}: {:?} on an upstream route is not built yet (the owner node would have to ask its own upstream and trust it to answer alike); use \"logged\"",
                            key("policy"),
                            r.policy().name()
                        );
                    }
                }
            }
        }
        Ok(())
    }
}
