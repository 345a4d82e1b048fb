//! Who holds which service address in each deployment layout (DESIGN §4):
//! the one definition the lab, `hotpair pair` and the simulation all read.
//!
//! - **simplex**: one address, one node serving it alone;
//! - **duplex**: one address; node 1 owns it on the LAN (the owner
//!   node), node 0 is its primary (runs the requests);
//! - **dual-role**: the ring of two: node i owns address i, the other node
//!   is its primary;
//! - **ring of N** (N ≥ 3): node i owns address i, node i+1 (mod N) is its
//!   primary; links run between neighbours.
//!
//! Nodes and addresses are numbered from 0 here; the lab names node i
//! `n<i+1>` and the simulation `A`, `B`, ….

/// A deployment layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layout {
    /// One node, one address, no replication.
    Simplex,
    /// Two nodes, one address.
    Duplex,
    /// Two nodes, each owning one address and primary for the other's.
    DualRole,
    /// This many nodes (at least 3).
    Ring(u8),
}

/// One service address: the node that owns it on the LAN and the node
/// that is its primary (`None`: the owner serves it alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The node that answers for the address on the LAN.
    pub owner: usize,
    /// The node that runs its requests while both live.
    pub primary: Option<usize>,
}

impl Layout {
    /// How many nodes the layout runs.
    pub fn nodes(self) -> usize {
        match self {
            Layout::Simplex => 1,
            Layout::Duplex | Layout::DualRole => 2,
            Layout::Ring(n) => usize::from(n),
        }
    }

    /// The service addresses, in order (address i is the i-th).
    pub fn addresses(self) -> Vec<Placement> {
        match self {
            Layout::Simplex => vec![Placement {
                owner: 0,
                primary: None,
            }],
            Layout::Duplex => vec![Placement {
                owner: 1,
                primary: Some(0),
            }],
            Layout::DualRole | Layout::Ring(_) => {
                let n = self.nodes();
                (0..n)
                    .map(|i| Placement {
                        owner: i,
                        primary: Some((i + 1) % n),
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_replicated_address_has_two_distinct_nodes_and_each_node_owns_at_most_one() {
        for l in [
            Layout::Duplex,
            Layout::DualRole,
            Layout::Ring(3),
            Layout::Ring(8),
        ] {
            let a = l.addresses();
            for p in &a {
                assert_ne!(Some(p.owner), p.primary, "{l:?}");
                assert!(p.owner < l.nodes() && p.primary.unwrap() < l.nodes());
            }
            for n in 0..l.nodes() {
                assert!(a.iter().filter(|p| p.owner == n).count() <= 1, "{l:?}");
            }
        }
        assert_eq!(
            Layout::DualRole.addresses(),
            [
                Placement {
                    owner: 0,
                    primary: Some(1)
                },
                Placement {
                    owner: 1,
                    primary: Some(0)
                }
            ]
        );
        assert_eq!(Layout::Simplex.addresses()[0].primary, None);
    }
}
