//! Lab states for unit tests, built as `lab up` builds them but without
//! touching the system.

use super::state::{
    ClientState, LabState, LinkState, NodeState, Phase, ReplicationState, SwitchState,
    UpstreamState,
};
use super::*;

pub fn test_node(i: u32, role: &str, link: Option<&str>) -> NodeState {
    NodeState {
        name: format!("n{i}"),
        index: i,
        namespace: format!("hp-n{i}"),
        address: node_address(i),
        mac: node_mac(i),
        role: role.into(),
        link: link.map(|a| LinkState {
            interface: "br-lan".into(),
            address: a.into(),
            private_key: Some(format!("{i:02x}").repeat(32)),
        }),
        tap: TAP_NAME.into(),
        config: format!("/run/hotpair/lab-hp/n{i}.toml").into(),
        log: format!("/run/hotpair/lab-hp/n{i}.log").into(),
        pcap: None,
        process: None,
        killed: false,
        upstream: UpstreamState {
            address: UPSTREAM_ADDRESS.into(),
            log: "/x".into(),
            process: None,
            killed: false,
        },
        cgroup: None,
    }
}

pub fn test_state(mode: Mode, replication: Option<ReplicationState>) -> LabState {
    LabState {
        prefix: "hp".into(),
        mode,
        replication,
        phase: Phase::Building,
        state_dir: "/run/hotpair/lab-hp".into(),
        docroot: "/run/hotpair/lab-hp/docroot".into(),
        docroot_generated: true,
        service_address: SERVICE_ADDRESS.into(),
        service_port: SERVICE_PORT,
        client: ClientState {
            namespace: "hp-client".into(),
            interface: "eth0".into(),
            address: "10.77.0.100/24".into(),
        },
        switch: SwitchState {
            namespace: "hp-sw".into(),
            bridge: "br0".into(),
        },
        nodes: vec![],
        addresses: vec![],
        links: vec![],
        app: AppKind::Toy,
        db: None,
        tls: false,
    }
}

/// A lab state for `mode` as `up` builds it (without touching the system).
pub fn mode_state(mode: Mode, n: u32, net: ReplNet) -> LabState {
    let mut state = test_state(
        mode,
        mode.replicated().then_some(ReplicationState {
            net,
            port: REPL_PORT,
            heartbeat_interval_ms: 100,
            heartbeat_timeout_ms: 500,
        }),
    );
    state.nodes = (1..=n)
        .map(|i| {
            let link = net.link_address(i);
            test_node(i, mode.initial_role(i), Some(link.as_str()))
        })
        .collect();
    state.addresses = topology::addresses(mode, n);
    state.links = topology::links(mode, n, net);
    state
}
