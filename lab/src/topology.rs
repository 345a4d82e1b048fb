//! Who serves which service address and which nodes share a replication link,
//! derived from the mode alone (the layout is `hotpair_replicator::layout`'s),
//! so a test can predict every name, address and port from `--mode` and
//! `--nodes` without reading the lab's state.

use std::fmt;
use std::str::FromStr;

use hotpair_replicator::layout::Layout;
use serde::{Deserialize, Serialize};

use super::{node_address, REPL_INTERFACE, REPL_PORT, REPL_SUBNET};

/// How the lab's nodes replicate (DESIGN.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One node serving on its own, no replication.
    Simplex,
    /// n1 primary, n2 owner (backup) for the one service address.
    Duplex,
    /// Two nodes, each owner of its own address and primary for the other's.
    DualRole,
    /// N nodes, node i owner of address i with node i+1 as its primary.
    Ring,
}

impl Mode {
    /// Every mode, as written on the command line.
    const NAMES: &'static str = "simplex, duplex, dual-role or ring";

    /// Number of nodes the mode runs; `ring_nodes` is the ring's size.
    pub fn node_count(self, ring_nodes: u32) -> u32 {
        self.layout(ring_nodes).nodes() as u32
    }

    /// Whether the nodes replicate (have links and heartbeats).
    pub fn replicated(self) -> bool {
        self != Mode::Simplex
    }

    /// The role each node is configured with at start-up in this mode. In
    /// dual-role and ring every node owns one address and is primary for
    /// another (its addresses list says which).
    pub fn initial_role(self, node_index: u32) -> &'static str {
        match (self, node_index) {
            (Mode::Simplex, _) => "simplex",
            (Mode::Duplex, 1) => "primary",
            (Mode::Duplex, _) => "owner",
            (Mode::DualRole | Mode::Ring, _) => "owner+primary",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "simplex" => Ok(Mode::Simplex),
            "duplex" => Ok(Mode::Duplex),
            "dual-role" => Ok(Mode::DualRole),
            "ring" => Ok(Mode::Ring),
            _ => Err(format!("unknown mode `{s}`; use {}", Mode::NAMES)),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Simplex => "simplex",
            Mode::Duplex => "duplex",
            Mode::DualRole => "dual-role",
            Mode::Ring => "ring",
        })
    }
}

/// Where a replicated lab's links run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReplNet {
    /// Over the service LAN, between the nodes' kernel addresses 10.77.0.<i>.
    #[default]
    Shared,
    /// Over a network of its own, `repl0` 10.78.0.<i>/24 (duplex-mi).
    Dedicated,
}

impl ReplNet {
    /// The address node `index` uses for the replication link.
    pub fn link_address(self, index: u32) -> String {
        match self {
            ReplNet::Shared => node_address(index),
            ReplNet::Dedicated => format!("{REPL_SUBNET}.{index}"),
        }
    }

    /// The interface in the node namespace that carries the link.
    pub fn interface(self) -> &'static str {
        match self {
            ReplNet::Shared => "br-lan",
            ReplNet::Dedicated => REPL_INTERFACE,
        }
    }
}

impl fmt::Display for ReplNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplNet::Shared => "shared",
            ReplNet::Dedicated => "dedicated",
        })
    }
}

/// One service address (VIP) and its two nodes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddressState {
    pub ip: String,
    /// The node that owns the address on the LAN (the owner/backup).
    pub owner: String,
    /// The node that runs the application for it; `None` when the owner serves alone.
    pub primary: Option<String>,
}

/// One replication link: `listener` accepts it on `address:port`, `connector` dials.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerLinkState {
    pub listener: String,
    pub connector: String,
    /// The listener's own address on the replication network.
    pub address: String,
    pub port: u16,
}

impl PeerLinkState {
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }

    /// The other end of the link, if `node` is one end.
    pub fn other(&self, node: &str) -> Option<&str> {
        if self.listener == node {
            Some(&self.connector)
        } else if self.connector == node {
            Some(&self.listener)
        } else {
            None
        }
    }
}

/// Fewest and most nodes of a ring (fewer than three is dual-role; more than
/// eight would run the node addresses 10.77.0.<i> into the VIPs from .10 on).
pub const RING_MIN: u32 = 3;
pub const RING_MAX: u32 = 8;

/// The service address node `i` (1-based) owns in the multi-address modes:
/// n1 10.77.0.10, n2 10.77.0.11, … (n1's is also the simplex/duplex VIP).
pub fn service_ip(i: u32) -> String {
    format!("10.77.0.{}", 9 + i)
}

impl Mode {
    /// The layout the mode deploys (the one the simulation runs too).
    pub fn layout(self, nodes: u32) -> Layout {
        match self {
            Mode::Simplex => Layout::Simplex,
            Mode::Duplex => Layout::Duplex,
            Mode::DualRole => Layout::DualRole,
            Mode::Ring => Layout::Ring(u8::try_from(nodes).unwrap_or(u8::MAX)),
        }
    }
}

/// The service addresses of a lab of `nodes` nodes in `mode`, in VIP order
/// (`hotpair_replicator::layout`: duplex — n2 owns the VIP on the LAN, n1
/// runs the application; dual-role and ring — node i owns VIP i, the next
/// node is its primary).
pub fn addresses(mode: Mode, nodes: u32) -> Vec<AddressState> {
    let name = |i: usize| format!("n{}", i + 1);
    mode.layout(nodes)
        .addresses()
        .into_iter()
        .enumerate()
        .map(|(i, p)| AddressState {
            ip: service_ip(i as u32 + 1),
            owner: name(p.owner),
            primary: p.primary.map(name),
        })
        .collect()
}

/// The replication links of a lab of `nodes` nodes in `mode`. Duplex keeps its
/// legacy single port (n1 listens on 7700); in the multi-address modes the
/// lower-numbered node of each ring-neighbour pair listens on 7700 + the
/// higher node's index, so a node with two listening links uses two ports.
pub fn links(mode: Mode, nodes: u32, net: ReplNet) -> Vec<PeerLinkState> {
    let link = |lo: u32, hi: u32, port: u16| PeerLinkState {
        listener: format!("n{lo}"),
        connector: format!("n{hi}"),
        address: net.link_address(lo),
        port,
    };
    // One link per pair of nodes sharing an address (in a ring of two,
    // dual-role, both addresses share one).
    let mut pairs: Vec<(u32, u32)> = mode
        .layout(nodes)
        .addresses()
        .into_iter()
        .filter_map(|p| {
            let (a, b) = (p.owner as u32 + 1, p.primary? as u32 + 1);
            Some((a.min(b), a.max(b)))
        })
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
        .into_iter()
        .map(|(lo, hi)| match mode {
            Mode::Duplex => link(lo, hi, REPL_PORT),
            _ => link(lo, hi, REPL_PORT + hi as u16),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str, owner: &str, primary: Option<&str>) -> AddressState {
        AddressState {
            ip: ip.into(),
            owner: owner.into(),
            primary: primary.map(Into::into),
        }
    }

    #[test]
    fn legacy_modes() {
        assert_eq!(
            addresses(Mode::Simplex, 1),
            vec![addr("10.77.0.10", "n1", None)]
        );
        assert_eq!(
            addresses(Mode::Duplex, 2),
            vec![addr("10.77.0.10", "n2", Some("n1"))]
        );
        let l = links(Mode::Duplex, 2, ReplNet::Shared);
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].listener.as_str(), l[0].endpoint()),
            ("n1", "10.77.0.1:7700".into())
        );
        assert!(links(Mode::Simplex, 1, ReplNet::Shared).is_empty());
    }

    #[test]
    fn dual_role() {
        assert_eq!(
            addresses(Mode::DualRole, 2),
            vec![
                addr("10.77.0.10", "n1", Some("n2")),
                addr("10.77.0.11", "n2", Some("n1")),
            ]
        );
        // One link, n1 listening on its link address port 7702.
        let l = links(Mode::DualRole, 2, ReplNet::Shared);
        assert_eq!(
            l,
            vec![PeerLinkState {
                listener: "n1".into(),
                connector: "n2".into(),
                address: "10.77.0.1".into(),
                port: 7702,
            }]
        );
        assert_eq!(
            links(Mode::DualRole, 2, ReplNet::Dedicated)[0].endpoint(),
            "10.78.0.1:7702"
        );
    }

    #[test]
    fn ring() {
        let a = addresses(Mode::Ring, 3);
        assert_eq!(
            a,
            vec![
                addr("10.77.0.10", "n1", Some("n2")),
                addr("10.77.0.11", "n2", Some("n3")),
                addr("10.77.0.12", "n3", Some("n1")),
            ]
        );
        let l: Vec<(String, String, String)> = links(Mode::Ring, 3, ReplNet::Shared)
            .into_iter()
            .map(|l| (l.listener.clone(), l.connector.clone(), l.endpoint()))
            .collect();
        let s = |a: &str, b: &str, e: &str| (a.to_owned(), b.to_owned(), e.to_owned());
        assert_eq!(
            l,
            vec![
                s("n1", "n2", "10.77.0.1:7702"),
                s("n1", "n3", "10.77.0.1:7703"),
                s("n2", "n3", "10.77.0.2:7703"),
            ]
        );
        for n in RING_MIN..=RING_MAX {
            let a = addresses(Mode::Ring, n);
            assert_eq!(a.len(), n as usize);
            assert_eq!(a.last().unwrap().primary.as_deref(), Some("n1"));
            let l = links(Mode::Ring, n, ReplNet::Shared);
            // A ring of n nodes has n links, every node on exactly two.
            assert_eq!(l.len(), n as usize);
            for i in 1..=n {
                let me = format!("n{i}");
                assert_eq!(l.iter().filter(|l| l.other(&me).is_some()).count(), 2);
            }
            // No node listens twice on one port.
            let mut eps: Vec<String> = l.iter().map(|l| l.endpoint()).collect();
            eps.sort();
            eps.dedup();
            assert_eq!(eps.len(), n as usize);
        }
        assert_eq!(service_ip(8), "10.77.0.17");
    }

    #[test]
    fn modes() {
        for m in [Mode::Simplex, Mode::Duplex, Mode::DualRole, Mode::Ring] {
            assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
            // The JSON name (state file, `lab status`) is the CLI name.
            assert_eq!(serde_json::to_value(m).unwrap(), m.to_string());
        }
        assert_eq!("dual-role".parse::<Mode>(), Ok(Mode::DualRole));
        assert!("bogus".parse::<Mode>().unwrap_err().contains("ring"));
        assert_eq!(Mode::Duplex.node_count(3), 2);
        assert_eq!(Mode::DualRole.node_count(3), 2);
        assert_eq!(Mode::Ring.node_count(5), 5);
        assert_eq!(Mode::Duplex.initial_role(1), "primary");
        assert_eq!(Mode::Duplex.initial_role(2), "owner");
        assert_eq!(Mode::Simplex.initial_role(1), "simplex");
        assert_eq!(ReplNet::Shared.link_address(2), "10.77.0.2");
        assert_eq!(ReplNet::Dedicated.link_address(1), "10.78.0.1");
    }
}
