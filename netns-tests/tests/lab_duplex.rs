//! `hotpair lab up --mode duplex`: two node namespaces with their roles,
//! MACs, replication link settings and (with `--repl-net dedicated`) the
//! link's own veth pair; `lab status` reports them; `lab kill` works per node.

use std::time::Duration;

use hotpair_netns_tests::{assert_success, status_node, Lab};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn node<'a>(status: &'a Value, name: &str) -> &'a Value {
    status_node(status, name).unwrap_or_else(|| panic!("no node {name} in status: {status}"))
}

fn addresses(status: &Value, ns: &str) -> Vec<(String, String)> {
    hotpair_netns_tests::ns_addresses(status, ns)
        .map(|a| {
            (
                a["interface"].as_str().unwrap_or("").to_owned(),
                a["address"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// (remote address, state hex) of the TCP sockets in process `pid`'s network
/// namespace (/proc/PID/net/tcp; state 01 = ESTABLISHED).
fn tcp_connections(pid: u64) -> Vec<(String, String)> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (ip, port) = f.get(2)?.split_once(':')?;
            // The address is the u32 in host (little-endian) order, in hex.
            let ip = u32::from_str_radix(ip, 16).ok()?.to_le_bytes();
            let port = u16::from_str_radix(port, 16).ok()?;
            let remote = format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3]);
            Some((remote, (*f.get(3)?).to_owned()))
        })
        .collect()
}

fn check(repl_net: &str, link: [&str; 2], heartbeat_timeout: &str) {
    let test = format!("lab_duplex_{repl_net}");
    // One duplex lab at a time (see `failover::serial`).
    let _serial = hotpair_netns_tests::failover::serial();
    let Some(lab) = Lab::up_with(
        &test,
        &[
            "--mode",
            "duplex",
            "--repl-net",
            repl_net,
            "--heartbeat-timeout-ms",
            heartbeat_timeout,
            "--wait-secs",
            "30",
        ],
    ) else {
        return;
    };
    let p = lab.prefix.clone();
    let st = lab.status_json();
    assert_eq!(st["up"], true, "{st}");
    assert_eq!(st["mode"], "duplex", "{st}");
    assert_eq!(st["repl_net"], repl_net, "{st}");
    assert_eq!(
        st["replication"]["listen"],
        format!("{}:7700", link[0]),
        "{st}"
    );
    assert_eq!(st["replication"]["heartbeat_interval_ms"], 100, "{st}");
    assert_eq!(
        st["replication"]["heartbeat_timeout_ms"].to_string(),
        heartbeat_timeout,
        "{st}"
    );
    for (i, (name, role)) in [("n1", "primary"), ("n2", "owner")].iter().enumerate() {
        let n = node(&st, name);
        assert_eq!(n["role"], *role, "{st}");
        assert_eq!(n["alive"], true, "{st}");
        assert!(n["pid"].as_u64().is_some(), "{st}");
        assert_eq!(n["mac"], format!("02:68:70:00:00:0{}", i + 1), "{st}");
        assert_eq!(n["link"]["address"], link[i], "{st}");
        let addrs = addresses(&st, &format!("{p}-{name}"));
        let lan = ("br-lan".to_owned(), format!("10.77.0.{}/24", i + 1));
        assert!(addrs.contains(&lan), "{name}: {addrs:?}");
        let dedicated = ("repl0".to_owned(), format!("10.78.0.{}/24", i + 1));
        assert_eq!(
            addrs.contains(&dedicated),
            repl_net == "dedicated",
            "{name}: {addrs:?}"
        );
        // The config the node runs with.
        let cfg = std::fs::read_to_string(n["config"].as_str().unwrap()).unwrap();
        let endpoint = if *role == "primary" { "listen" } else { "peer" };
        let want = format!(
            "[replication]\nrole = \"{role}\"\n{endpoint} = \"{}:7700\"\n\
             heartbeat_interval_ms = 100\nheartbeat_timeout_ms = {heartbeat_timeout}\n",
            link[0]
        );
        assert!(
            cfg.contains(&want),
            "{name} config lacks\n{want}\n---\n{cfg}"
        );
        assert!(cfg.contains("address = \"10.77.0.10\""), "{cfg}");
    }
    // The replication link is up, over the chosen network: n2 has an
    // established TCP connection to the primary's link address, port 7700.
    let n2_pid = node(&st, "n2")["pid"].as_u64().unwrap();
    let conns = tcp_connections(n2_pid);
    assert!(
        conns
            .iter()
            .any(|(remote, state)| remote == &format!("{}:7700", link[0]) && state == "01"),
        "n2 has no established link to {}:7700; its TCP table: {conns:?}",
        link[0]
    );

    // The human-readable status names roles and the link.
    let out = lab.lab(&["status"], T);
    assert_success(&out, "lab status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mode duplex"), "{text}");
    assert!(text.contains(&format!("repl-net {repl_net}")), "{text}");
    assert!(text.contains("role primary"), "{text}");
    assert!(text.contains("role owner"), "{text}");

    // The service answers through the pair.
    assert!(!lab.get("/static/index.html").is_empty());

    // kill n2: only n2 dies.
    let out = lab.lab(&["kill", "n2"], T);
    assert_success(&out, "lab kill n2");
    let st = lab.status_json();
    assert_eq!(node(&st, "n2")["alive"], false, "{st}");
    assert_eq!(node(&st, "n2")["killed"], true, "{st}");
    assert_eq!(node(&st, "n1")["alive"], true, "{st}");
}

#[test]
fn duplex_shared_replication_net() {
    check("shared", ["10.77.0.1", "10.77.0.2"], "500");
}

#[test]
fn duplex_dedicated_replication_net() {
    check("dedicated", ["10.78.0.1", "10.78.0.2"], "800");
}
