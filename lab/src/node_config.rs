//! The node configurations the lab writes (`hotpair node --config`): the
//! legacy `[service]` + `[replication]` form for simplex and duplex, the
//! general `[[address]]` + `[[peer]]` + `[heartbeat]` form
//! (docs/configuration.md) for dual-role and ring.

use anyhow::Result;

use super::state::{LabState, NodeState};
use super::{LabOptions, Mode, LAN_PREFIX_LEN, SERVICE_ADDRESS, UPSTREAM_ADDRESS};

/// `max_connections` and the per-address limits `lab up` was given, as
/// lines of a `[service]` or `[[address]]` table.
fn pool_keys(opts: &LabOptions) -> String {
    let mut text = format!("max_connections = {}\n", opts.max_connections);
    if let Some(n) = opts.max_per_source {
        text.push_str(&format!("max_per_source = {n}\n"));
    }
    if let Some(ms) = opts.half_open_timeout_ms {
        text.push_str(&format!("half_open_timeout_ms = {ms}\n"));
    }
    text
}

/// The node configuration, in the format `hotpair node --config` reads.
pub fn node_config(state: &LabState, node: &NodeState, opts: &LabOptions) -> String {
    let mut text = match state.mode {
        Mode::Simplex | Mode::Duplex => legacy_config(state, node, opts),
        Mode::DualRole | Mode::Ring => general_config(state, node, opts),
    };
    if state.tls {
        text.push_str(&crate::tls::config_section(
            &state.state_dir,
            opts.tls_cipher_suites.as_deref(),
        ));
    }
    if let Some(hook) = &opts.hook {
        text.push_str(&format!(
            "\n[hooks]\non_change = {}\n",
            toml_string(&hook.to_string_lossy())
        ));
    }
    text
}

/// A TOML basic string (quotes and backslashes escaped).
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

pub fn write_node_config(state: &LabState, node: &NodeState, opts: &LabOptions) -> Result<()> {
    // It holds the node's link private key: 0600, as `hotpair pair` writes.
    hotpair::secure::write_private(&node.config, &node_config(state, node, opts), true)
}

/// Simplex and duplex: one `[service]`, and in duplex a `[replication]`
/// naming the node's role (kept as it was so older nodes and tests agree).
fn legacy_config(state: &LabState, node: &NodeState, opts: &LabOptions) -> String {
    let mut text = node_section(node);
    text.push_str(&format!(
        "\n[service]\naddress = \"{SERVICE_ADDRESS}\"\nprefix_len = {LAN_PREFIX_LEN}\n\
         port = {}\n{}",
        state.service_port,
        pool_keys(opts)
    ));
    text.push_str(&http_and_routes(state, node, opts));
    if let Some(r) = &state.replication {
        // The primary (n1) listens on its link address; the owner connects to it.
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
        text.push_str(&link_section(node));
        text.push_str(&format!(
            "\n[replication]\nrole = \"{role}\"\n{endpoint}\n\
             heartbeat_interval_ms = {interval}\nheartbeat_timeout_ms = {timeout}\n",
            role = node.role,
            interval = r.heartbeat_interval_ms,
            timeout = r.heartbeat_timeout_ms,
        ));
        if let Some(other) = state.nodes.iter().find(|n| n.name != node.name) {
            text.push_str(&public_key_line("peer_public_key", other));
        }
        text.push_str(&lan_check_section());
    }
    text
}

/// `[lan_check]`: the lab's client stands for the LAN's always-there host
/// (a gateway in a real site), so `lab partition --lan NODE` moves that
/// node's addresses to its peer. `[app_check]`: the node's application
/// answers `/app/health` (every lab app does), so `lab kill --app NODE`
/// moves the addresses that node runs requests for to its peer.
fn lan_check_section() -> String {
    format!(
        "\n[lan_check]\ntarget = \"{}\"\n\n[app_check]\npath = \"{}\"\ninterval_ms = 500\ntimeout_ms = 2000\nfall = 3\n",
        crate::CLIENT_ADDRESS,
        APP_HEALTH_PATH
    )
}

/// What the lab's node configs check their application with.
pub const APP_HEALTH_PATH: &str = "/app/health";

/// `[link]`: the node's private key, or plaintext when it has none.
fn link_section(node: &NodeState) -> String {
    match node.link.as_ref().and_then(|l| l.private_key.as_ref()) {
        Some(k) => format!("\n[link]\nprivate_key = \"{k}\"\n"),
        None => "\n[link]\ndanger_plaintext = true\n".to_owned(),
    }
}

/// `KEY = "<public key of other's private key>"`, or nothing (plaintext).
fn public_key_line(key: &str, other: &NodeState) -> String {
    other
        .link
        .as_ref()
        .and_then(|l| l.private_key.as_deref())
        .and_then(|k| hotpair::secure::parse_key(k).ok())
        .map_or(String::new(), |k| {
            format!(
                "{key} = \"{}\"\n",
                hotpair::secure::hex(&hotpair::secure::public_of(&k))
            )
        })
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
            "\n[[address]]\nip = \"{ip}\"\nprefix_len = {LAN_PREFIX_LEN}\nport = {port}\n\
             {pool}role = \"{role}\"\n",
            ip = a.ip,
            port = state.service_port,
            pool = pool_keys(opts),
        ));
        if let Some(peer) = peer {
            text.push_str(&format!("peer = \"{peer}\"\n"));
        }
    }
    text.push_str(&http_and_routes(state, node, opts));
    if !state.links.is_empty() {
        text.push_str(&link_section(node));
    }
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
        if let Some(o) = state.nodes.iter().find(|n| n.name == other) {
            text.push_str(&public_key_line("public_key", o));
        }
    }
    if let Some(r) = &state.replication {
        text.push_str(&format!(
            "\n[heartbeat]\ninterval_ms = {}\ntimeout_ms = {}\n",
            r.heartbeat_interval_ms, r.heartbeat_timeout_ms
        ));
        text.push_str(&lan_check_section());
    }
    text
}

/// The port of each node's Prometheus endpoint, on its LAN address.
pub const METRICS_PORT: u16 = 9464;

/// Node `node`'s admin socket (`hotpair status --socket`): beside its
/// config in the lab's state directory.
pub fn admin_socket(node: &NodeState) -> std::path::PathBuf {
    node.config.with_file_name(format!("{}.sock", node.name))
}

/// Node `node`'s metrics address (in its namespace, reachable from the
/// client's).
pub fn metrics_address(node: &NodeState) -> String {
    format!("{}:{METRICS_PORT}", node.address)
}

fn node_section(node: &NodeState) -> String {
    let socket = toml::Value::String(admin_socket(node).to_string_lossy().into_owned());
    format!(
        "[node]\nname = \"{}\"\ntap = \"{}\"\nmac = \"{}\"\n\n[admin]\nsocket = {socket}\nmetrics = \"{}\"\n",
        node.name,
        node.tap,
        node.mac,
        metrics_address(node)
    )
}

fn http_and_routes(state: &LabState, node: &NodeState, opts: &LabOptions) -> String {
    // The other nodes' applications (each listens on its node's LAN
    // address too, `app::start`): a connection only this node serves (one
    // it took over alone) is still answered while its own is down.
    let port = UPSTREAM_ADDRESS.rsplit_once(':').map_or("8080", |(_, p)| p);
    let others: Vec<String> = state
        .nodes
        .iter()
        .filter(|n| n.name != node.name)
        .map(|n| format!("\"{}:{port}\"", n.address))
        .collect();
    let fallback = if others.is_empty() {
        String::new()
    } else {
        format!("fallback = [{}]\n", others.join(", "))
    };
    let root = toml::Value::String(state.docroot.to_string_lossy().into_owned());
    format!(
        r#"
[http]
max_header_bytes = 16384
max_body_bytes = 67108864
header_timeout_ms = {header_timeout}
idle_timeout_ms = {idle_timeout}
send_timeout_ms = {send_timeout}

[[route]]
prefix = "/static/"
handler = "files"
root = {root}
{policy}
[[route]]
prefix = "/non-deterministic/"
handler = "generate"
max_size = 67108864

[[route]]
prefix = "/app/"
handler = "upstream"
address = "{UPSTREAM_ADDRESS}"
{fallback}"#,
        policy = opts
            .static_policy
            .map_or(String::new(), |p| format!("policy = \"{}\"\n", p.name())),
        header_timeout = opts.http_header_timeout_ms,
        idle_timeout = opts.http_idle_timeout_ms,
        send_timeout = opts.http_send_timeout_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{mode_state, test_node, test_state};
    use super::super::state::ReplicationState;
    use super::super::{topology, ReplNet, REPL_PORT};
    use super::*;

    #[test]
    fn duplex_config_format() {
        let opts = LabOptions::new("hp");
        for (net, link) in [
            (ReplNet::Shared, ["10.77.0.1", "10.77.0.2"]),
            (ReplNet::Dedicated, ["10.78.0.1", "10.78.0.2"]),
        ] {
            let mut state = test_state(
                Mode::Duplex,
                Some(ReplicationState {
                    net,
                    port: REPL_PORT,
                    heartbeat_interval_ms: 100,
                    heartbeat_timeout_ms: 700,
                }),
            );
            state.nodes = vec![
                test_node(1, "primary", Some(link[0])),
                test_node(2, "owner", Some(link[1])),
            ];
            let primary = node_config(&state, &state.nodes[0], &opts);
            let owner = node_config(&state, &state.nodes[1], &opts);
            // Node `i`'s link and replication sections, with peer `p`:
            // `role` and how it reaches the link (`listen` or `peer`).
            let tail = |i: u32, p: u32, role: &str, reach: &str| {
                format!(
                    "\n[link]\nprivate_key = \"{}\"\n\
                     \n[replication]\nrole = \"{role}\"\n{reach} = \"{}:7700\"\n\
                     heartbeat_interval_ms = 100\nheartbeat_timeout_ms = 700\n\
                     peer_public_key = \"{}\"\n\
                     \n[lan_check]\ntarget = \"10.77.0.100\"\n\n[app_check]\npath = \"/app/health\"\ninterval_ms = 500\ntimeout_ms = 2000\nfall = 3\n",
                    private(i),
                    link[0],
                    public(p)
                )
            };
            assert!(
                primary.ends_with(&tail(1, 2, "primary", "listen")),
                "{primary}"
            );
            assert!(owner.ends_with(&tail(2, 1, "owner", "peer")), "{owner}");
            assert!(primary.contains("mac = \"02:68:70:00:00:01\"\n"));
            assert!(owner.contains("mac = \"02:68:70:00:00:02\"\n"));
            for text in [&primary, &owner] {
                let v: toml::Value = toml::from_str(text).unwrap();
                assert_eq!(v["service"]["address"].as_str(), Some(SERVICE_ADDRESS));
                toml::from_str::<hotpair::config::Config>(text)
                    .unwrap()
                    .link_keys()
                    .unwrap();
            }
            // Without keys (`--link-plaintext`) the links are plaintext, loudly.
            for n in &mut state.nodes {
                n.link.as_mut().unwrap().private_key = None;
            }
            let plain = node_config(&state, &state.nodes[0], &opts);
            assert!(
                plain.contains("\n[link]\ndanger_plaintext = true\n"),
                "{plain}"
            );
            assert!(!plain.contains("public_key"), "{plain}");
            toml::from_str::<hotpair::config::Config>(&plain)
                .unwrap()
                .link_keys()
                .unwrap();
        }
    }

    #[test]
    fn a_hook_goes_into_every_config() {
        let mut opts = LabOptions::new("hp");
        for mode in [Mode::Simplex, Mode::Duplex, Mode::DualRole, Mode::Ring] {
            let state = mode_state(mode, mode.node_count(3), ReplNet::Shared);
            for n in &state.nodes {
                assert!(!node_config(&state, n, &opts).contains("[hooks]"));
            }
        }
        opts.hook = Some("/tmp/a \"b\"/hook.sh".into());
        for mode in [Mode::Simplex, Mode::Duplex, Mode::DualRole, Mode::Ring] {
            let state = mode_state(mode, mode.node_count(3), ReplNet::Shared);
            for n in &state.nodes {
                let text = node_config(&state, n, &opts);
                let c: hotpair::config::Config = toml::from_str(&text).unwrap();
                assert_eq!(
                    c.hooks.on_change.as_deref(),
                    Some(std::path::Path::new("/tmp/a \"b\"/hook.sh")),
                    "{text}"
                );
            }
        }
    }

    /// The test fixtures' link keys: node i's private key is [i; 32].
    fn private(i: u32) -> String {
        format!("{i:02x}").repeat(32)
    }
    fn public(i: u32) -> String {
        hotpair::secure::hex(&hotpair::secure::public_of(&[i as u8; 32]))
    }

    /// The `[admin]` section the lab gives node `i`.
    fn admin(i: u32) -> String {
        format!(
            "\n[admin]\nsocket = \"/run/hotpair/lab-hp/n{i}.sock\"\nmetrics = \"10.77.0.{i}:9464\"\n"
        )
    }

    const HTTP_AND_ROUTES: &str = r#"
[http]
max_header_bytes = 16384
max_body_bytes = 67108864
header_timeout_ms = 10000
idle_timeout_ms = 60000
send_timeout_ms = 60000

[[route]]
prefix = "/static/"
handler = "files"
root = "/run/hotpair/lab-hp/docroot"

[[route]]
prefix = "/non-deterministic/"
handler = "generate"
max_size = 67108864

[[route]]
prefix = "/app/"
handler = "upstream"
address = "127.0.0.1:8080"
"#;

    /// The routes, the upstream's fallback the other node `peer`'s app.
    fn routes(peer: u32) -> String {
        format!("{HTTP_AND_ROUTES}fallback = [\"10.77.0.{peer}:8080\"]\n")
    }

    #[test]
    fn duplex_config_is_unchanged() {
        // The legacy form byte for byte (older nodes and the netns tests
        // read it), with the link's keys.
        let state = mode_state(Mode::Duplex, 2, ReplNet::Shared);
        let opts = LabOptions::new("hp");
        assert_eq!(
            node_config(&state, &state.nodes[1], &opts),
            format!(
                "[node]\nname = \"n2\"\ntap = \"hptap0\"\nmac = \"02:68:70:00:00:02\"\n{}\n\
                 [service]\naddress = \"10.77.0.10\"\nprefix_len = 24\nport = 80\n\
                 max_connections = 1024\n{}\n[link]\nprivate_key = \"{}\"\n\
                 \n[replication]\nrole = \"owner\"\n\
                 peer = \"10.77.0.1:7700\"\nheartbeat_interval_ms = 100\n\
                 heartbeat_timeout_ms = 500\npeer_public_key = \"{}\"\n\
                     \n[lan_check]\ntarget = \"10.77.0.100\"\n\n[app_check]\npath = \"/app/health\"\ninterval_ms = 500\ntimeout_ms = 2000\nfall = 3\n",
                admin(2),
                routes(1),
                private(2),
                public(1)
            )
        );
    }

    #[test]
    fn dual_role_config_format() {
        let opts = LabOptions::new("hp");
        let state = mode_state(Mode::DualRole, 2, ReplNet::Shared);
        let address = |ip: &str, role: &str, peer: &str| {
            format!(
                "\n[[address]]\nip = \"{ip}\"\nprefix_len = 24\nport = 80\n\
                 max_connections = 1024\nrole = \"{role}\"\npeer = \"{peer}\"\n"
            )
        };
        let heartbeat = "\n[heartbeat]\ninterval_ms = 100\ntimeout_ms = 500\n\n[lan_check]\ntarget = \"10.77.0.100\"\n\n[app_check]\npath = \"/app/health\"\ninterval_ms = 500\ntimeout_ms = 2000\nfall = 3\n";
        // Node `i`'s config with peer `p`: its two addresses' roles, and
        // how it reaches the link (`listen` or `connect`).
        let expected = |i: u32, p: u32, roles: [&str; 2], link: &str| {
            let peer = format!("n{p}");
            format!(
                "[node]\nname = \"n{i}\"\ntap = \"hptap0\"\nmac = \"02:68:70:00:00:0{i}\"\n{}{}{}\
                 {}\n[link]\nprivate_key = \"{}\"\n\
                 \n[[peer]]\nname = \"{peer}\"\n{link} = \"10.77.0.1:7702\"\n\
                 public_key = \"{}\"\n{heartbeat}",
                admin(i),
                address("10.77.0.10", roles[0], &peer),
                address("10.77.0.11", roles[1], &peer),
                routes(p),
                private(i),
                public(p),
            )
        };
        // n1 owns .10 (primary n2), is primary for .11 (owned by n2), and
        // listens for the one link on its LAN address port 7702.
        assert_eq!(
            node_config(&state, &state.nodes[0], &opts),
            expected(1, 2, ["owner", "primary"], "listen")
        );
        // n2 is the mirror image and connects.
        assert_eq!(
            node_config(&state, &state.nodes[1], &opts),
            expected(2, 1, ["primary", "owner"], "connect")
        );
        // Dedicated: the link goes to n1's repl0 address.
        let state = mode_state(Mode::DualRole, 2, ReplNet::Dedicated);
        assert!(node_config(&state, &state.nodes[1], &opts)
            .contains("\n[[peer]]\nname = \"n1\"\nconnect = \"10.78.0.1:7702\"\n"));
    }

    #[test]
    fn ring_config_format() {
        let opts = LabOptions::new("hp");
        for n in topology::RING_MIN..=topology::RING_MAX {
            let state = mode_state(Mode::Ring, n, ReplNet::Shared);
            for (k, node) in state.nodes.iter().enumerate() {
                let i = k as u32 + 1;
                let prev = if i == 1 { n } else { i - 1 };
                let next = i % n + 1;
                let text = node_config(&state, node, &opts);
                let v: toml::Value = toml::from_str(&text).unwrap();
                assert!(v.get("service").is_none() && v.get("replication").is_none());
                // Its own address as owner with the next node as primary, and
                // the previous node's address as its primary.
                let addrs = v["address"].as_array().unwrap();
                let mut got: Vec<(String, String, String)> = addrs
                    .iter()
                    .map(|a| {
                        (
                            a["ip"].as_str().unwrap().to_owned(),
                            a["role"].as_str().unwrap().to_owned(),
                            a["peer"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
                got.sort();
                let mut want = vec![
                    (topology::service_ip(i), "owner".into(), format!("n{next}")),
                    (
                        topology::service_ip(prev),
                        "primary".into(),
                        format!("n{prev}"),
                    ),
                ];
                want.sort();
                assert_eq!(got, want, "n{i} of {n}:\n{text}");
                // A link to each neighbour; the lower-numbered node listens on
                // 7700 + the higher one's index.
                let peers = v["peer"].as_array().unwrap();
                assert_eq!(peers.len(), 2, "n{i} of {n}:\n{text}");
                for other in [prev, next] {
                    let p = peers
                        .iter()
                        .find(|p| p["name"].as_str() == Some(&format!("n{other}")))
                        .unwrap_or_else(|| panic!("n{i} has no peer n{other}:\n{text}"));
                    let (lo, hi) = (i.min(other), i.max(other));
                    let endpoint = format!("10.77.0.{lo}:{}", 7700 + hi);
                    let key = if i == lo { "listen" } else { "connect" };
                    assert_eq!(p[key].as_str(), Some(endpoint.as_str()), "n{i}:\n{text}");
                    assert_eq!(p["public_key"].as_str(), Some(public(other).as_str()));
                    assert_eq!(p.as_table().unwrap().len(), 3, "n{i}:\n{text}");
                }
                assert_eq!(v["heartbeat"]["timeout_ms"].as_integer(), Some(500));
                toml::from_str::<hotpair::config::Config>(&text)
                    .unwrap()
                    .link_keys()
                    .unwrap();
            }
        }
        // The ring of three written out for n3: primary for .11 (n2's), owner
        // of .12 with n1 as primary; it connects to both neighbours.
        let state = mode_state(Mode::Ring, 3, ReplNet::Shared);
        let text = node_config(&state, &state.nodes[2], &opts);
        assert!(text.contains(
            "\n[[address]]\nip = \"10.77.0.11\"\nprefix_len = 24\nport = 80\n\
             max_connections = 1024\nrole = \"primary\"\npeer = \"n2\"\n\
             \n[[address]]\nip = \"10.77.0.12\"\nprefix_len = 24\nport = 80\n\
             max_connections = 1024\nrole = \"owner\"\npeer = \"n1\"\n"
        ));
        assert!(text.ends_with(&format!(
            "\n[[peer]]\nname = \"n1\"\nconnect = \"10.77.0.1:7703\"\npublic_key = \"{}\"\n\
                 \n[[peer]]\nname = \"n2\"\nconnect = \"10.77.0.2:7703\"\npublic_key = \"{}\"\n\
                 \n[heartbeat]\ninterval_ms = 100\ntimeout_ms = 500\n\n[lan_check]\ntarget = \"10.77.0.100\"\n\n[app_check]\npath = \"/app/health\"\ninterval_ms = 500\ntimeout_ms = 2000\nfall = 3\n",
            public(1),
            public(2)
        )));
    }

    #[test]
    fn config_format() {
        let mut opts = LabOptions::new("hp");
        opts.http_header_timeout_ms = 2000;
        let node = test_node(1, "simplex", None);
        let state = test_state(Mode::Simplex, None);
        let text = node_config(&state, &node, &opts);
        assert!(text.contains("mac = \"02:68:70:00:00:01\"\n"));
        assert!(text.contains("root = \"/run/hotpair/lab-hp/docroot\"\n"));
        assert!(text.contains("header_timeout_ms = 2000\n"));
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["service"]["port"].as_integer(), Some(80));
        assert_eq!(v["route"].as_array().unwrap().len(), 3);
        assert_eq!(v["route"][2]["address"].as_str(), Some("127.0.0.1:8080"));
        assert!(v.get("replication").is_none());
        assert!(v.get("tls").is_none());
        // --tls, --tls-cipher-suites: the suites in the order given, as
        // the node's config reads them.
        let mut state = test_state(Mode::Simplex, None);
        state.tls = true;
        opts.tls = true;
        opts.tls_cipher_suites = Some(vec![
            "TLS_AES_128_GCM_SHA256".into(),
            "TLS_CHACHA20_POLY1305_SHA256".into(),
        ]);
        let text = node_config(&state, &node, &opts);
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            v["tls"]["cipher_suites"],
            toml::Value::Array(vec![
                "TLS_AES_128_GCM_SHA256".into(),
                "TLS_CHACHA20_POLY1305_SHA256".into()
            ]),
            "{text}"
        );
        let t: hotpair::config::TlsSection = v["tls"].clone().try_into().unwrap();
        hotpair::config::parse_cipher_suites(t.cipher_suites.as_deref().unwrap()).unwrap();
        // Without the flag, no key: the config's default.
        opts.tls_cipher_suites = None;
        let v: toml::Value = toml::from_str(&node_config(&state, &node, &opts)).unwrap();
        assert!(v["tls"].get("cipher_suites").is_none());
        // A name the node would refuse is refused before anything is built.
        opts.tls_cipher_suites = Some(vec!["TLS_AES_128_CCM_SHA256".into()]);
        let e = format!("{:#}", opts.validate().unwrap_err());
        assert!(
            e.contains("--tls-cipher-suites") && e.contains("unknown"),
            "{e}"
        );
    }
}
