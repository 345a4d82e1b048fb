//! The admin socket, the client's side: `hotpair status` and `hotpair
//! switchover` asking a node, and the status rendered as a table.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{Status, FORMAT};

/// Ask the node on `path` for its status.
pub fn query(path: &Path) -> Result<Status> {
    let mut sock = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no such socket: is the node running, with this [admin] socket?".to_owned()
            }
            std::io::ErrorKind::ConnectionRefused => {
                "nobody answers on it: the node is not running (a stale socket)".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (run as the node's user or root)".to_owned()
            }
            _ => e.to_string(),
        };
        anyhow::anyhow!("admin socket {}: {why}", path.display())
    })?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.set_write_timeout(Some(Duration::from_secs(5)))?;
    sock.write_all(b"status\n")
        .with_context(|| format!("writing to {}", path.display()))?;
    let mut out = Vec::new();
    sock.read_to_end(&mut out).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => anyhow::anyhow!(
            "admin socket {}: the node did not answer within 5 s (stopped, or overloaded?)",
            path.display()
        ),
        _ => anyhow::anyhow!("admin socket {}: reading: {e}", path.display()),
    })?;
    parse_answer(&out).with_context(|| format!("the node on {} answered", path.display()))
}

/// Ask the node on `path` to switch over (`hotpair switchover`); its name
/// once it accepted.
pub fn switchover(path: &Path, force: bool) -> Result<String> {
    let mut sock = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        anyhow::anyhow!(
            "admin socket {}: {e} (is the node running?)",
            path.display()
        )
    })?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.write_all(if force {
        b"switchover force\n"
    } else {
        b"switchover\n"
    })?;
    let mut out = Vec::new();
    sock.read_to_end(&mut out)
        .with_context(|| format!("reading the answer on {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&out).context("not JSON (is this a hotpair admin socket?)")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("{e}");
    }
    Ok(v["node"].as_str().unwrap_or("?").to_owned())
}

/// The node's answer: a status, or its error.
pub fn parse_answer(bytes: &[u8]) -> Result<Status> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).context("not JSON (is this a hotpair admin socket?)")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("error: {e}");
    }
    if v.get("format").and_then(serde_json::Value::as_u64) != Some(u64::from(FORMAT)) {
        bail!(
            "status format {:?}, this hotpair reads {FORMAT}",
            v.get("format")
        );
    }
    serde_json::from_value(v).context("status document")
}

/// `hotpair status` as a compact table.
pub fn render(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "node {}  pid {}  up {}",
        s.node,
        s.pid,
        human_duration(s.uptime_s)
    );
    let check = |c: Option<bool>| match c {
        Some(true) => "up",
        Some(false) => "DOWN",
        None => "not checked",
    };
    if s.lan_up.is_some() || s.app_up.is_some() {
        let _ = writeln!(
            o,
            "lan {}  application {}{}",
            check(s.lan_up),
            check(s.app_up),
            if s.held_replies > 0 {
                format!("  ({} requests wait for its verdict)", s.held_replies)
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        o,
        "{:<18} {:<8} {:<11} {:<20} {:>9} {:>6} {:>6} {:>5} {:>10} {:>8} {:>5} {:>5}",
        "ADDRESS",
        "ROLE",
        "STATE",
        "PEER",
        "HEARD",
        "LIVE",
        "SHADOW",
        "HALF",
        "UNACKED",
        "QUEUED",
        "HELD",
        "TAKE"
    );
    for a in &s.addresses {
        let (peer, heard) = match &a.peer {
            Some(p) => (
                format!("{} {}", p.name, p.link),
                if p.link == "down" {
                    "-".to_owned()
                } else {
                    format!("{}ms", p.last_heard_ms)
                },
            ),
            None => ("-".into(), "-".into()),
        };
        let (unacked, queued) = a.log.as_ref().map_or(("-".into(), "-".into()), |l| {
            (
                format!("{}/{}", l.unacked_units, human_bytes(l.unacked_bytes)),
                l.queued_msgs.to_string(),
            )
        });
        let _ = writeln!(
            o,
            "{:<18} {:<8} {:<11} {:<20} {:>9} {:>6} {:>6} {:>5} {:>10} {:>8} {:>5} {:>5}",
            format!("{}:{}", a.address, a.port),
            a.role,
            a.state,
            peer,
            heard,
            a.connections.live,
            a.connections.shadow,
            a.connections.half_open,
            unacked,
            queued,
            a.held_acks,
            a.takeovers
        );
    }
    for a in &s.addresses {
        if let Some(t) = &a.tls {
            let _ = writeln!(
                o,
                "{:<18} HTTPS (TLS 1.3): {} handshakes ({} resumed), {} TLS errors{}",
                format!("{}:{}", a.address, t.port),
                t.handshakes,
                t.resumed,
                t.errors,
                t.suites
                    .iter()
                    .map(|(s, n)| format!(", {s} {n}"))
                    .collect::<String>()
            );
        }
    }
    // HTTP and HTTPS apart: which one the clients use, and whether one of
    // them stopped serving.
    for a in s.addresses.iter().filter(|a| !a.ports.is_empty()) {
        let ports: Vec<String> = a
            .ports
            .iter()
            .map(|p| {
                format!(
                    "{}/{} {} connections {} requests",
                    p.port, p.scheme, p.connections, p.requests
                )
            })
            .collect();
        let _ = writeln!(o, "{:<18} by port: {}", a.address, ports.join(", "));
    }
    // Why a switchover would be refused: said here, not only in the JSON.
    for a in s
        .addresses
        .iter()
        .filter(|a| a.connections.unreplicated > 0)
    {
        let _ = writeln!(
            o,
            "  {}: {} connection(s) not replicated (opened while serving alone): \
             `hotpair switchover` waits for them (--wait SECS), --force drops them",
            a.address, a.connections.unreplicated
        );
    }
    if !s.peers.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<12} {:<6} {:>10} {:>9} {:>6} {:>6}",
            "PEER", "LINK", "RTT", "SENDBUF", "UPS", "DOWNS"
        );
        for p in &s.peers {
            let rtt = p
                .rtt_us
                .map_or("-".to_owned(), |r| format!("{:.2}ms", r as f64 / 1000.0));
            let _ = writeln!(
                o,
                "{:<12} {:<6} {:>10} {:>9} {:>6} {:>6}",
                p.name,
                if p.link_up { "up" } else { "down" },
                rtt,
                if p.link_up {
                    human_bytes(p.send_buffer_bytes as u64)
                } else {
                    "-".to_owned()
                },
                p.link_ups,
                p.link_downs
            );
        }
    }
    // Routes: requests summed over addresses; static routes' guard per address.
    let mut by_route: BTreeMap<(String, String), (u64, u64, Vec<String>)> = BTreeMap::new();
    for a in &s.addresses {
        for r in &a.routes {
            let e = by_route
                .entry((r.route.clone(), r.policy.clone()))
                .or_default();
            e.0 += r.requests;
            e.1 += r.static_fallbacks;
            if r.policy != "logged" && r.policy != "-" && a.peer.is_some() {
                e.2.push(format!(
                    "{} {}",
                    a.address,
                    if r.static_in_use { "static" } else { "logged" }
                ));
            }
        }
    }
    if !by_route.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<22} {:<12} {:>9} {:>9}  STATIC IN USE",
            "ROUTE", "POLICY", "REQUESTS", "FALLBACK"
        );
        for ((route, policy), (n, fb, guard)) in by_route {
            let _ = writeln!(
                o,
                "{:<22} {:<12} {:>9} {:>9}  {}",
                route,
                policy,
                n,
                fb,
                if guard.is_empty() {
                    "-".to_owned()
                } else {
                    guard.join(", ")
                }
            );
        }
    }
    if !s.events.is_empty() {
        let _ = writeln!(o, "\nEVENTS");
        for e in &s.events {
            let ago = s.taken_at_unix_ms.saturating_sub(e.at_unix_ms) as f64 / 1000.0;
            let _ = writeln!(
                o,
                "  {} ago  {:<8} {}{}{}",
                human_duration(ago),
                e.kind,
                e.address,
                e.peer
                    .as_ref()
                    .map_or(String::new(), |p| format!(" (peer {p})")),
                e.connections
                    .map_or(String::new(), |c| format!(", {c} connections"))
            );
        }
    }
    o
}

fn human_duration(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1}s")
    } else if s < 7200.0 {
        format!("{:.0}m", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}

fn human_bytes(b: u64) -> String {
    if b < 10 * 1024 {
        format!("{b}B")
    } else if b < 10 << 20 {
        format!("{}K", b >> 10)
    } else {
        format!("{}M", b >> 20)
    }
}

/// `hotpair status`: which socket to ask.
pub fn socket_path(socket: Option<PathBuf>, config: Option<&Path>) -> Result<PathBuf> {
    match (socket, config) {
        (Some(s), _) => Ok(s),
        (None, Some(c)) => Ok(crate::config::Config::load(c)?.admin_socket()),
        (None, None) => {
            // The one node on this host, if there is exactly one.
            let dir = Path::new(crate::config::DEFAULT_ADMIN_DIR);
            let socks: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                        .collect()
                })
                .unwrap_or_default();
            match socks.as_slice() {
                [one] => Ok(one.clone()),
                [] => bail!(
                    "no admin socket in {}: is a node running? (or give --socket PATH or --config FILE)",
                    dir.display()
                ),
                many => bail!(
                    "{} admin sockets in {}: pick one with --socket PATH or --config FILE",
                    many.len(),
                    dir.display()
                ),
            }
        }
    }
}
