//! `lab status`: what the lab consists of and what runs, as JSON (`--json`,
//! also what tests parse) or as text.

use anyhow::Result;

use super::state::{AddressState, LabState, Phase};
use super::{existing_namespaces, ip, state_dir, validate_prefix, Mode, LAN_PREFIX_LEN};

/// The lab's status as JSON (also what `lab status --json` prints).
pub fn status_json(prefix: &str) -> Result<serde_json::Value> {
    validate_prefix(prefix)?;
    let dir = state_dir(prefix);
    let state = LabState::load(&dir)?;
    let existing = existing_namespaces(prefix).unwrap_or_default();
    let ns_entry = |name: &str, kind: &str| {
        let exists = existing.iter().any(|e| e == name);
        let addresses: Vec<serde_json::Value> = if exists {
            ip::ipv4_addresses(name)
                .unwrap_or_default()
                .into_iter()
                .filter(|(ifname, _)| ifname != "lo")
                .map(|(ifname, addr)| serde_json::json!({"interface": ifname, "address": addr}))
                .collect()
        } else {
            Vec::new()
        };
        serde_json::json!({"name": name, "kind": kind, "exists": exists, "addresses": addresses})
    };
    let Some(state) = state else {
        let namespaces: Vec<_> = existing.iter().map(|n| ns_entry(n, "leftover")).collect();
        return Ok(serde_json::json!({
            "prefix": prefix,
            "up": false,
            "state_dir": dir,
            "namespaces": namespaces,
            "nodes": [],
        }));
    };
    let mut namespaces = vec![
        ns_entry(&state.client.namespace, "client"),
        ns_entry(&state.switch.namespace, "switch"),
    ];
    namespaces.extend(state.nodes.iter().map(|n| ns_entry(&n.namespace, "node")));
    namespaces.extend(state.db.iter().map(|d| ns_entry(&d.namespace, "db")));
    let addresses = state.service_addresses();
    let alive = |name: &str| {
        state
            .nodes
            .iter()
            .any(|n| n.name == name && n.process.is_some_and(|p| p.alive()))
    };
    let nodes: Vec<_> = state
        .nodes
        .iter()
        .map(|n| {
            let alive = n.process.is_some_and(|p| p.alive());
            let up_alive = n.upstream.process.is_some_and(|p| p.alive());
            let cgroup = n.cgroup.as_ref();
            serde_json::json!({
                "name": n.name,
                "namespace": n.namespace,
                "address": format!("{}/{LAN_PREFIX_LEN}", n.address),
                "mac": n.mac,
                "tap": n.tap,
                "pid": n.process.map(|p| p.pid),
                "alive": alive,
                "killed": n.killed,
                "role": n.role,
                "link": n.link.as_ref().map(|l| serde_json::json!({
                    "interface": l.interface,
                    "address": l.address,
                })),
                "addresses": node_addresses(&addresses, &n.name),
                "peers": state
                    .links
                    .iter()
                    .filter_map(|l| l.other(&n.name).map(|other| serde_json::json!({
                        "name": other,
                        "endpoint": l.endpoint(),
                        "listens": l.listener == n.name,
                    })))
                    .collect::<Vec<_>>(),
                // The directory holding the CPU usage counter (v1 `cpuacct.usage`,
                // v2 `cpu.stat`); null without --node-cpus.
                "cgroup": cgroup.map(|c| c.usage_dir().to_owned()),
                "cgroup_info": cgroup.map(|c| serde_json::json!({
                    "version": c.version,
                    "cpus": c.cpus,
                    "path": c.path,
                    "cpuacct": c.cpuacct,
                    "usage_ns": c.usage_ns(),
                })),
                "config": n.config,
                "admin_socket": super::node_config::admin_socket(n),
                "metrics": format!("http://{}/metrics", super::node_config::metrics_address(n)),
                // What the node itself reports (`hotpair status --json`),
                // asked on its admin socket while it runs.
                "node_status": if alive {
                    hotpair::admin::query(&super::node_config::admin_socket(n))
                        .ok()
                        .and_then(|st| serde_json::to_value(st).ok())
                } else {
                    None
                },
                "log": n.log,
                "pcap": n.pcap,
                "upstream": {
                    "address": n.upstream.address,
                    "pid": n.upstream.process.map(|p| p.pid),
                    "alive": up_alive,
                    "killed": n.upstream.killed,
                    "log": n.upstream.log,
                },
            })
        })
        .collect();
    Ok(serde_json::json!({
        "prefix": prefix,
        "up": state.phase == Phase::Up,
        "phase": state.phase,
        "mode": state.mode,
        "repl_net": state.replication.as_ref().map(|r| r.net),
        "replication": state.replication.as_ref().map(|r| serde_json::json!({
            "net": r.net,
            "listen": state
                .nodes
                .iter()
                .find(|n| n.role == "primary")
                .and_then(|n| n.link.as_ref())
                .map(|l| format!("{}:{}", l.address, r.port)),
            "heartbeat_interval_ms": r.heartbeat_interval_ms,
            "heartbeat_timeout_ms": r.heartbeat_timeout_ms,
            "links": state.links.iter().map(|l| serde_json::json!({
                "listener": l.listener,
                "connector": l.connector,
                "endpoint": l.endpoint(),
            })).collect::<Vec<_>>(),
        })),
        "state_dir": state.state_dir,
        "docroot": state.docroot,
        "service": {
            "address": state.service_address,
            "port": state.service_port,
            "tls_port": state.tls.then_some(crate::tls::TLS_PORT),
        },
        "client": {"namespace": state.client.namespace, "address": state.client.address},
        "app": state.app,
        // The database of `--app orders`: where it listens, its server
        // process, and `psql` as the superuser (run in its namespace).
        "db": state.db.as_ref().map(|d| serde_json::json!({
            "namespace": d.namespace,
            "address": format!("{}/{LAN_PREFIX_LEN}", d.address),
            "port": d.port,
            "dsn": d.dsn(),
            "pid": d.process.map(|p| p.pid),
            "alive": d.process.is_some_and(|p| p.alive()),
            "data_dir": d.data_dir(),
            "bin_dir": d.bin_dir,
            "log": d.log,
            "psql": d.psql_args(),
        })),
        "addresses": addresses_json(&addresses, state.service_port, alive),
        "failure_note": failure_note(state.mode),
        "namespaces": namespaces,
        "nodes": nodes,
    }))
}

pub fn print_status(v: &serde_json::Value) -> anyhow::Result<()> {
    let prefix = v["prefix"].as_str().unwrap_or("?");
    let s = |x: &serde_json::Value| match x {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    if v.get("phase").is_none() {
        hotpair::outln!("lab {prefix}: not up (no state in {})", s(&v["state_dir"]))?;
    } else {
        let repl = if v["replication"].is_object() {
            let links: Vec<String> = v["replication"]["links"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| {
                    format!(
                        "{}<-{} {}",
                        s(&l["listener"]),
                        s(&l["connector"]),
                        s(&l["endpoint"])
                    )
                })
                .collect();
            format!(
                ", repl-net {}, link{} {}, heartbeat {}/{} ms",
                s(&v["replication"]["net"]),
                if links.len() > 1 { "s" } else { "" },
                if links.is_empty() {
                    s(&v["replication"]["listen"])
                } else {
                    links.join(", ")
                },
                s(&v["replication"]["heartbeat_interval_ms"]),
                s(&v["replication"]["heartbeat_timeout_ms"])
            )
        } else {
            String::new()
        };
        hotpair::outln!(
            "lab {prefix}: {} (mode {}{repl}), state {}",
            s(&v["phase"]),
            s(&v["mode"]),
            s(&v["state_dir"])
        )?;
        if v["addresses"].as_array().map_or(0, Vec::len) > 1 {
            hotpair::outln!("docroot {}", s(&v["docroot"]))?;
        } else {
            hotpair::outln!(
                "service {}:{}{}  docroot {}",
                s(&v["service"]["address"]),
                s(&v["service"]["port"]),
                v["service"]["tls_port"]
                    .as_u64()
                    .map_or(String::new(), |p| format!(" and :{p} (HTTPS)")),
                s(&v["docroot"])
            )?;
        }
        for a in v["addresses"].as_array().into_iter().flatten() {
            let serving: Vec<String> = a["serving"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            hotpair::outln!(
                "address {}:{}  owner {}, primary {}: {}{}",
                s(&a["ip"]),
                s(&a["port"]),
                s(&a["owner"]),
                s(&a["primary"]),
                s(&a["state"]),
                if serving.is_empty() {
                    String::new()
                } else {
                    format!(" (served by {})", serving.join(" and "))
                }
            )?;
        }
        if v["db"].is_object() {
            let d = &v["db"];
            hotpair::outln!(
                "app {}; database {} in {}: postgres pid {} {}, log {}",
                s(&v["app"]),
                s(&d["dsn"]),
                s(&d["namespace"]),
                s(&d["pid"]),
                if d["alive"].as_bool() == Some(true) {
                    "alive"
                } else {
                    "dead"
                },
                s(&d["log"])
            )?;
        } else if v["app"].is_string() {
            hotpair::outln!("app {}", s(&v["app"]))?;
        }
        if v["failure_note"].is_string() {
            hotpair::outln!("note: {}", s(&v["failure_note"]))?;
        }
    }
    let namespaces = v["namespaces"].as_array().cloned().unwrap_or_default();
    if !namespaces.is_empty() {
        hotpair::outln!("namespaces:")?;
    }
    for ns in namespaces {
        let addrs: Vec<String> = ns["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| format!("{} {}", s(&a["interface"]), s(&a["address"])))
            .collect();
        hotpair::outln!(
            "  {:<20} {:<8} {}{}",
            s(&ns["name"]),
            s(&ns["kind"]),
            if ns["exists"].as_bool() == Some(true) {
                ""
            } else {
                "MISSING "
            },
            addrs.join(", ")
        )?;
    }
    for n in v["nodes"].as_array().into_iter().flatten() {
        hotpair::outln!(
            "node {}: pid {} {}{}, role {}, mac {}, log {}",
            s(&n["name"]),
            s(&n["pid"]),
            if n["alive"].as_bool() == Some(true) {
                "alive"
            } else {
                "dead"
            },
            if n["killed"].as_bool() == Some(true) {
                " (lab kill)"
            } else {
                ""
            },
            s(&n["role"]),
            s(&n["mac"]),
            s(&n["log"]),
        )?;
        let roles: Vec<String> = n["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| match a["peer"].as_str() {
                Some(peer) => format!("{} of {} (peer {peer})", s(&a["role"]), s(&a["ip"])),
                None => format!("{} on {}", s(&a["role"]), s(&a["ip"])),
            })
            .collect();
        if !roles.is_empty() {
            hotpair::outln!("  {}", roles.join("; "))?;
        }
        if n["cgroup_info"].is_object() {
            let c = &n["cgroup_info"];
            hotpair::outln!(
                "  cgroup {} {} CPUs, {} (cpu time {} ms)",
                s(&c["version"]),
                s(&c["cpus"]),
                s(&c["path"]),
                c["usage_ns"]
                    .as_u64()
                    .map_or("-".to_owned(), |ns| (ns / 1_000_000).to_string())
            )?;
        }
        for a in n["node_status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let peer = &a["peer"];
            // A lone address's role and state are the same word: once.
            let (role, state) = (s(&a["role"]), s(&a["state"]));
            hotpair::outln!(
                "  now: {} {}{}{}, {} live, {} shadow connections{}",
                s(&a["address"]),
                role,
                if state == role {
                    String::new()
                } else {
                    format!(" {state}")
                },
                if peer.is_object() {
                    format!(
                        " (peer {} link {}, heard {} ms ago)",
                        s(&peer["name"]),
                        s(&peer["link"]),
                        s(&peer["last_heard_ms"])
                    )
                } else {
                    String::new()
                },
                s(&a["connections"]["live"]),
                s(&a["connections"]["shadow"]),
                ports_summary(a),
            )?;
        }
        if n["admin_socket"].is_string() {
            hotpair::outln!(
                "  admin {} (hotpair status --socket …), metrics {}",
                s(&n["admin_socket"]),
                s(&n["metrics"])
            )?;
        }
        if n["link"].is_object() {
            hotpair::outln!(
                "  link {} {}",
                s(&n["link"]["interface"]),
                s(&n["link"]["address"])
            )?;
        }
        hotpair::outln!(
            "  upstream {}: pid {} {}{}",
            s(&n["upstream"]["address"]),
            s(&n["upstream"]["pid"]),
            if n["upstream"]["alive"].as_bool() == Some(true) {
                "alive"
            } else {
                "dead"
            },
            if n["upstream"]["killed"].as_bool() == Some(true) {
                " (lab kill --app)"
            } else {
                ""
            },
        )?;
    }
    Ok(())
}

/// The service addresses with their nodes and what a client gets now, given
/// which nodes run: `replicated` (both alive), `unreplicated` (one survivor
/// serves it alone, as it does after taking over), `alone` (configured
/// without a peer) or `down`.
pub fn addresses_json(
    addresses: &[AddressState],
    port: u16,
    alive: impl Fn(&str) -> bool,
) -> Vec<serde_json::Value> {
    addresses
        .iter()
        .map(|a| {
            let serving: Vec<&str> = std::iter::once(a.owner.as_str())
                .chain(a.primary.as_deref())
                .filter(|n| alive(n))
                .collect();
            let state = match (a.primary.is_some(), serving.len()) {
                (_, 0) => "down",
                (false, _) => "alone",
                (true, 2) => "replicated",
                (true, _) => "unreplicated",
            };
            serde_json::json!({
                "ip": a.ip,
                "port": port,
                "owner": a.owner,
                "primary": a.primary,
                "state": state,
                "serving": serving,
            })
        })
        .collect()
}

/// Node `name`'s part in each service address: `owner` (with its primary as
/// peer), `primary` (with the owner as peer) or `alone`.
fn node_addresses(addresses: &[AddressState], name: &str) -> Vec<serde_json::Value> {
    addresses
        .iter()
        .filter_map(|a| {
            if a.owner == name {
                Some(match &a.primary {
                    Some(p) => serde_json::json!({"ip": a.ip, "role": "owner", "peer": p}),
                    None => serde_json::json!({"ip": a.ip, "role": "alone", "peer": null}),
                })
            } else if a.primary.as_deref() == Some(name) {
                Some(serde_json::json!({"ip": a.ip, "role": "primary", "peer": a.owner}))
            } else {
                None
            }
        })
        .collect()
}

/// An address's node status `ports` (HTTP and HTTPS apart, see
/// docs/operations.md) as "; served 80/http 2 conn 3 req, 443/https …";
/// empty when the node reports none (an older node).
fn ports_summary(address: &serde_json::Value) -> String {
    let ports: Vec<String> = address["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{} {} conn {} req",
                p["port"],
                p["scheme"].as_str().unwrap_or("?"),
                p["connections"],
                p["requests"]
            )
        })
        .collect();
    if ports.is_empty() {
        String::new()
    } else {
        format!("; served {}", ports.join(", "))
    }
}

/// What a node's death does to the addresses, for the modes where that is
/// more than one address changing hands.
pub fn failure_note(mode: Mode) -> Option<&'static str> {
    match mode {
        Mode::Simplex | Mode::Duplex => None,
        Mode::DualRole => Some(
            "when a node dies the survivor serves both addresses unreplicated \
             (it claims the dead node's address and promotes its shadows of its own) \
             until the dead node is back (`hotpair lab restart NODE`) and rejoins",
        ),
        Mode::Ring => Some(
            "when node i dies, node i+1 claims address i and node i-1 promotes its \
             shadows of address i-1: those two addresses run unreplicated until the ring \
             is repaired (`hotpair lab restart NODE`: it rejoins); the others stay replicated",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::mode_state;
    use super::super::ReplNet;
    use super::*;

    #[test]
    fn address_status() {
        let state = mode_state(Mode::Ring, 4, ReplNet::Shared);
        let all = |_: &str| true;
        let v = addresses_json(&state.addresses, 80, all);
        assert_eq!(v.len(), 4);
        assert!(v.iter().all(|a| a["state"] == "replicated"));
        assert_eq!(v[3]["ip"], "10.77.0.13");
        assert_eq!(v[3]["owner"], "n4");
        assert_eq!(v[3]["primary"], "n1");
        // n2 dead: its own address (.11, n3 serves it) and n1's (.10, whose
        // primary n2 was) are unreplicated; the rest stay replicated.
        let v = addresses_json(&state.addresses, 80, |n| n != "n2");
        let states: Vec<&str> = v.iter().map(|a| a["state"].as_str().unwrap()).collect();
        assert_eq!(
            states,
            ["unreplicated", "unreplicated", "replicated", "replicated"]
        );
        assert_eq!(v[0]["serving"], serde_json::json!(["n1"]));
        assert_eq!(v[1]["serving"], serde_json::json!(["n3"]));
        // Simplex: one address, alone; down when its node is.
        let s = mode_state(Mode::Simplex, 1, ReplNet::Shared);
        let v = addresses_json(&s.service_addresses(), 80, all);
        assert_eq!(v[0]["state"], "alone");
        assert_eq!(v[0]["primary"], serde_json::Value::Null);
        let v = addresses_json(&s.service_addresses(), 80, |_| false);
        assert_eq!(v[0]["state"], "down");
        assert!(failure_note(Mode::Ring)
            .unwrap()
            .contains("unreplicated until the ring"));
        assert!(failure_note(Mode::Duplex).is_none());
    }

    #[test]
    fn ports_summary_keeps_http_and_https_apart() {
        let a = serde_json::json!({"ports": [
            {"port": 80, "scheme": "http", "connections": 2, "requests": 3},
            {"port": 443, "scheme": "https", "connections": 1, "requests": 5},
        ]});
        assert_eq!(
            ports_summary(&a),
            "; served 80/http 2 conn 3 req, 443/https 1 conn 5 req"
        );
        assert_eq!(ports_summary(&serde_json::json!({})), "");
    }
}
