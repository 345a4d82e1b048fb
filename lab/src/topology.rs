//! Who serves which service address and which nodes share a replication link,
//! derived from the mode alone. The conventions are those of
//! `notes/config-spec.md`, so a test can predict every name, address and
//! port from `--mode` and `--nodes` without reading the lab's state.

use super::state::{AddressState, PeerLinkState};
use super::{Mode, ReplNet, REPL_PORT};

/// Fewest and most nodes of a ring (fewer than three is dual-role; more than
/// eight would run the node addresses 10.77.0.<i> into the VIPs from .10 on).
pub const RING_MIN: u32 = 3;
pub const RING_MAX: u32 = 8;

/// The service address node `i` (1-based) owns in the multi-address modes:
/// n1 10.77.0.10, n2 10.77.0.11, … (n1's is also the simplex/duplex VIP).
pub fn service_ip(i: u32) -> String {
    format!("10.77.0.{}", 9 + i)
}

/// The node after `i` in a ring of `n` (n_N's successor is n1).
fn next(i: u32, n: u32) -> u32 {
    i % n + 1
}

/// The service addresses of a lab of `nodes` nodes in `mode`, in VIP order.
pub fn addresses(mode: Mode, nodes: u32) -> Vec<AddressState> {
    let name = |i: u32| format!("n{i}");
    match mode {
        Mode::Simplex => vec![AddressState {
            ip: service_ip(1),
            owner: name(1),
            primary: None,
        }],
        // n2 is the ingress: it owns the VIP on the LAN; n1 runs the application.
        Mode::Duplex => vec![AddressState {
            ip: service_ip(1),
            owner: name(2),
            primary: Some(name(1)),
        }],
        // Dual-role is the ring of two: each node owns its VIP, the other is its primary.
        Mode::DualRole | Mode::Ring => (1..=nodes)
            .map(|i| AddressState {
                ip: service_ip(i),
                owner: name(i),
                primary: Some(name(next(i, nodes))),
            })
            .collect(),
    }
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
    match mode {
        Mode::Simplex => Vec::new(),
        Mode::Duplex => vec![link(1, 2, REPL_PORT)],
        Mode::DualRole | Mode::Ring => {
            let mut pairs: Vec<(u32, u32)> = (1..=nodes)
                .map(|i| {
                    let j = next(i, nodes);
                    (i.min(j), i.max(j))
                })
                .collect();
            // In a ring of two, (1,2) and (2,1) are the same link.
            pairs.sort_unstable();
            pairs.dedup();
            pairs
                .into_iter()
                .map(|(lo, hi)| link(lo, hi, REPL_PORT + hi as u16))
                .collect()
        }
    }
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
}
