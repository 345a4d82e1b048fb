//! The lab's network: namespaces, the switch bridge, the nodes' veths, local
//! bridges and TAP devices, and the dedicated replication network.

use anyhow::{bail, Context, Result};

use super::state::{LabState, NodeState};
use super::{ip, Mode, ReplNet, LAN_PREFIX_LEN, REPL_BRIDGE, REPL_INTERFACE};

/// Creates every namespace of `state` and wires them up.
pub fn build_network(state: &LabState) -> Result<()> {
    for ns in state.namespaces() {
        ip::ip(["netns", "add", ns.as_str()])?;
        // Keep the LAN quiet: no IPv6 (router solicitations, DAD, MLD).
        // And a switch, not a firewall: where br_netfilter is loaded (a
        // Docker engine loads it) every bridged frame would go through
        // iptables — twice on a node's path (its TAP's bridge, then the
        // switch) — which perf showed as a fifth of a node's CPU while
        // clients opened connections. These settings are per namespace.
        ip::exec_in(
            &ns,
            "sh",
            &[
                "-c",
                "for c in all default; do \
                 f=/proc/sys/net/ipv6/conf/$c/disable_ipv6; \
                 if [ -e $f ]; then echo 1 > $f || exit 1; fi; done; \
                 for t in iptables ip6tables arptables; do \
                 f=/proc/sys/net/bridge/bridge-nf-call-$t; \
                 if [ -e $f ]; then echo 0 > $f || exit 1; fi; done",
            ],
        )?;
        ip::ip_in(&ns, &["link", "set", "lo", "up"])?;
    }

    let sw = state.switch.namespace.as_str();
    let br = state.switch.bridge.as_str();
    ip::ip_in(
        sw,
        &["link", "add", br, "type", "bridge", "forward_delay", "0"],
    )?;
    ip::ip_in(sw, &["link", "set", br, "up"])?;

    // client <-> switch
    let client = &state.client;
    let cns = client.namespace.as_str();
    let cif = client.interface.as_str();
    ip::veth_in(sw, "client", cif, cns)?;
    ip::ip_in(sw, &["link", "set", "client", "master", br, "up"])?;
    ip::ip_in(cns, &["addr", "add", client.address.as_str(), "dev", cif])?;
    ip::ip_in(cns, &["link", "set", cif, "up"])?;

    // database <-> switch (`--app orders`): a LAN host like the client.
    if let Some(db) = &state.db {
        let ns = db.namespace.as_str();
        ip::veth_in(sw, "db", "eth0", ns)?;
        ip::ip_in(sw, &["link", "set", "db", "master", br, "up"])?;
        let addr = format!("{}/{LAN_PREFIX_LEN}", db.address);
        ip::ip_in(ns, &["addr", "add", addr.as_str(), "dev", "eth0"])?;
        ip::ip_in(ns, &["link", "set", "eth0", "up"])?;
    }

    // node <-> switch, and the node's local bridge joining eth0 and the TAP
    for n in &state.nodes {
        let ns = n.namespace.as_str();
        let port = n.name.as_str();
        ip::veth_in(sw, port, "eth0", ns)?;
        ip::ip_in(sw, &["link", "set", port, "master", br, "up"])?;
        ip::ip_in(
            ns,
            &[
                "link",
                "add",
                "br-lan",
                "type",
                "bridge",
                "forward_delay",
                "0",
            ],
        )?;
        ip::ip_in(
            ns,
            &[
                "tuntap",
                "add",
                "dev",
                n.tap.as_str(),
                "mode",
                "tap",
                "vnet_hdr",
            ],
        )?;
        ip::ip_in(ns, &["link", "set", "eth0", "master", "br-lan", "up"])?;
        ip::ip_in(
            ns,
            &["link", "set", n.tap.as_str(), "master", "br-lan", "up"],
        )?;
        let addr = format!("{}/{LAN_PREFIX_LEN}", n.address);
        ip::ip_in(ns, &["addr", "add", addr.as_str(), "dev", "br-lan"])?;
        ip::ip_in(ns, &["link", "set", "br-lan", "up"])?;
    }

    if state.replication.as_ref().map(|r| r.net) != Some(ReplNet::Dedicated) {
        return Ok(());
    }
    if state.mode != Mode::Duplex {
        // Dual-role and ring: a second bridge in the switch namespace with a
        // port per node, so every link of the lab shares one network as the
        // service LAN does (a veth pair per link would need an interface
        // and an address per link in every node).
        ip::ip_in(
            sw,
            &[
                "link",
                "add",
                REPL_BRIDGE,
                "type",
                "bridge",
                "forward_delay",
                "0",
            ],
        )?;
        ip::ip_in(sw, &["link", "set", REPL_BRIDGE, "up"])?;
        for n in &state.nodes {
            let port = format!("r-{}", n.name);
            ip::veth_in(sw, port.as_str(), REPL_INTERFACE, n.namespace.as_str())?;
            ip::ip_in(
                sw,
                &["link", "set", port.as_str(), "master", REPL_BRIDGE, "up"],
            )?;
            repl_interface_up(n)?;
        }
        return Ok(());
    }
    // Duplex: a veth pair joining n1 and n2 directly.
    let [a, b] = &state.nodes[..] else {
        bail!("a dedicated replication network joins exactly two nodes");
    };
    ip::veth_in(
        &a.namespace,
        REPL_INTERFACE,
        REPL_INTERFACE,
        b.namespace.as_str(),
    )?;
    for n in [a, b] {
        repl_interface_up(n)?;
    }
    Ok(())
}

/// Gives node `n`'s `repl0` its link address and brings it up.
fn repl_interface_up(n: &NodeState) -> Result<()> {
    let link = n.link.as_ref().context("replicated nodes have a link")?;
    let addr = format!("{}/{LAN_PREFIX_LEN}", link.address);
    ip::ip_in(
        &n.namespace,
        &["addr", "add", addr.as_str(), "dev", REPL_INTERFACE],
    )?;
    ip::ip_in(&n.namespace, &["link", "set", REPL_INTERFACE, "up"])?;
    Ok(())
}
