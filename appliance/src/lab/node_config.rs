//! The node configurations the lab writes (`hotpair node --config`): the
//! legacy `[service]` + `[replication]` form for simplex and duplex, the
//! general `[[address]]` + `[[peer]]` + `[heartbeat]` form of
//! `notes/config-spec.md` for dual-role and ring.

use std::fs;

use anyhow::{Context, Result};

use super::state::{LabState, NodeState};
use super::{LabOptions, Mode, LAN_PREFIX_LEN, SERVICE_ADDRESS, SERVICE_PORT, UPSTREAM_ADDRESS};

/// `[[address]] max_connections` / `[service] max_connections`.
const MAX_CONNECTIONS: u32 = 1024;

/// The node configuration, in the format `hotpair node --config` reads.
pub fn node_config(state: &LabState, node: &NodeState, opts: &LabOptions) -> String {
    match state.mode {
        Mode::Simplex | Mode::Duplex => legacy_config(state, node, opts),
        Mode::DualRole | Mode::Ring => general_config(state, node, opts),
    }
}

pub fn write_node_config(state: &LabState, node: &NodeState, opts: &LabOptions) -> Result<()> {
    fs::write(&node.config, node_config(state, node, opts))
        .with_context(|| format!("writing {}", node.config.display()))
}

/// Simplex and duplex: one `[service]`, and in duplex a `[replication]`
/// naming the node's role (kept as it was so older nodes and tests agree).
fn legacy_config(state: &LabState, node: &NodeState, opts: &LabOptions) -> String {
    let mut text = node_section(node);
    text.push_str(&format!(
        "\n[service]\naddress = \"{SERVICE_ADDRESS}\"\nprefix_len = {LAN_PREFIX_LEN}\n\
         port = {SERVICE_PORT}\nmax_connections = {MAX_CONNECTIONS}\n"
    ));
    text.push_str(&http_and_routes(state, opts));
    if let Some(r) = &state.replication {
        // The primary (n1) listens on its link address; the ingress connects to it.
        let primary = state
            .nodes
            .iter()
            .find(|n| n.role == "primary")
            .and_then(|n| n.link.as_ref())
            .map_or_else(|| r.net.link_address(1), |l| l.address.clone());
        let endpoint = if node.role == "primary" {
            format!("listen = \"{primary}:{}\"", r.port)
        } else {
            format!("peer = \"{primary}:{}\"", r.port)
        };
        text.push_str(&format!(
            "\n[replication]\nrole = \"{role}\"\n{endpoint}\n\
             heartbeat_interval_ms = {interval}\nheartbeat_timeout_ms = {timeout}\n",
            role = node.role,
            interval = r.heartbeat_interval_ms,
            timeout = r.heartbeat_timeout_ms,
        ));
    }
    text
}

/// Dual-role and ring: one `[[address]]` per service address the node takes
/// part in (as owner or as primary), one `[[peer]]` per replication link it
/// is an end of, and the heartbeat settings.
fn general_config(state: &LabState, node: &NodeState, opts: &LabOptions) -> String {
    let me = node.name.as_str();
    let mut text = node_section(node);
    for a in state.service_addresses() {
        let (role, peer) = if a.owner == me {
            match &a.primary {
                Some(p) => ("owner", Some(p.as_str())),
                None => ("alone", None),
            }
        } else if a.primary.as_deref() == Some(me) {
            ("primary", Some(a.owner.as_str()))
        } else {
            continue;
        };
        text.push_str(&format!(
            "\n[[address]]\nip = \"{ip}\"\nprefix_len = {LAN_PREFIX_LEN}\nport = {SERVICE_PORT}\n\
             max_connections = {MAX_CONNECTIONS}\nrole = \"{role}\"\n",
            ip = a.ip
        ));
        if let Some(peer) = peer {
            text.push_str(&format!("peer = \"{peer}\"\n"));
        }
    }
    text.push_str(&http_and_routes(state, opts));
    for l in &state.links {
        let Some(other) = l.other(me) else { continue };
        let endpoint = if l.listener == me {
            "listen"
        } else {
            "connect"
        };
        text.push_str(&format!(
            "\n[[peer]]\nname = \"{other}\"\n{endpoint} = \"{}\"\n",
            l.endpoint()
        ));
    }
    if let Some(r) = &state.replication {
        text.push_str(&format!(
            "\n[heartbeat]\ninterval_ms = {}\ntimeout_ms = {}\n",
            r.heartbeat_interval_ms, r.heartbeat_timeout_ms
        ));
    }
    text
}

fn node_section(node: &NodeState) -> String {
    format!(
        "[node]\nname = \"{}\"\ntap = \"{}\"\nmac = \"{}\"\n",
        node.name, node.tap, node.mac
    )
}

fn http_and_routes(state: &LabState, opts: &LabOptions) -> String {
    let root = toml::Value::String(state.docroot.to_string_lossy().into_owned());
    format!(
        r#"
[http]
max_header_bytes = 16384
max_body_bytes = 67108864
header_timeout_ms = {header_timeout}
idle_timeout_ms = {idle_timeout}

[[route]]
prefix = "/static/"
handler = "files"
root = {root}

[[route]]
prefix = "/non-deterministic/"
handler = "generate"
max_size = 67108864

[[route]]
prefix = "/app/"
handler = "upstream"
address = "{UPSTREAM_ADDRESS}"
"#,
        header_timeout = opts.http_header_timeout_ms,
        idle_timeout = opts.http_idle_timeout_ms,
    )
}
