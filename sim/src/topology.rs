//! Which nodes hold which service addresses, in which role (DESIGN §4):
//! the simulation's one world runs any of them.
//!
//! - **duplex**: one address (10.77.0.10); B owns it (owner), A is its
//!   primary. One link.
//! - **dual-role**: A owns 10.77.0.10 with B its primary; B owns
//!   10.77.0.11 with A its primary. One link carries both.
//! - **ring N**: node i owns 10.77.0.(10+i) and node i+1 (mod N) is its
//!   primary; links between neighbours (each node has two peers).
//!
//! The client's connections are spread over every address (see
//! [`Topology::scenario`]), so a kill meets connections of each address.

use hotpair_replicator::layout::Layout;
use hotpair_replicator::Role;

use crate::addresses::{Who, MAX_ADDRESSES};
use crate::scenario::Scenario;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topology {
    Duplex,
    DualRole,
    /// N ≥ 3 nodes.
    Ring(u8),
}

/// A service address: its index (10.77.0.10 + index), the node that owns
/// it on the LAN (owner) and the node that runs its application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub index: usize,
    pub owner: Who,
    pub primary: Who,
}

/// One site of a node: an address, the node's starting role for it, and
/// the peer it shares the address with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SitePlan {
    pub address: usize,
    pub role: Role,
    pub peer: Who,
}

impl Topology {
    /// "duplex", "dual-role", "ring3".
    pub fn name(self) -> String {
        match self {
            Topology::Duplex => "duplex".into(),
            Topology::DualRole => "dual-role".into(),
            Topology::Ring(n) => format!("ring{n}"),
        }
    }

    pub fn parse(s: &str) -> Option<Topology> {
        match s {
            "duplex" => Some(Topology::Duplex),
            "dual-role" | "dual" => Some(Topology::DualRole),
            _ => {
                let n: u8 = s.strip_prefix("ring")?.parse().ok()?;
                (3..=Who::MAX as u8)
                    .contains(&n)
                    .then_some(Topology::Ring(n))
                    .filter(|_| usize::from(n) <= MAX_ADDRESSES)
            }
        }
    }

    pub fn nodes(self) -> usize {
        self.layout().nodes()
    }

    pub fn all_nodes(self) -> Vec<Who> {
        (0..self.nodes()).map(|i| Who(i as u8)).collect()
    }

    /// The layout it runs (the lab's and `hotpair pair`'s too).
    pub fn layout(self) -> Layout {
        match self {
            Topology::Duplex => Layout::Duplex,
            Topology::DualRole => Layout::DualRole,
            Topology::Ring(n) => Layout::Ring(n),
        }
    }

    /// The service addresses, by index.
    pub fn addresses(self) -> Vec<Address> {
        let who = |i: usize| Who(i as u8);
        self.layout()
            .addresses()
            .into_iter()
            .enumerate()
            .map(|(index, p)| Address {
                index,
                owner: who(p.owner),
                primary: who(p.primary.expect("the simulation's layouts are replicated")),
            })
            .collect()
    }

    /// Node `who`'s sites, by address index.
    pub fn sites(self, who: Who) -> Vec<SitePlan> {
        self.addresses()
            .into_iter()
            .filter_map(|a| {
                if a.owner == who {
                    Some(SitePlan {
                        address: a.index,
                        role: Role::Owner,
                        peer: a.primary,
                    })
                } else if a.primary == who {
                    Some(SitePlan {
                        address: a.index,
                        role: Role::Primary,
                        peer: a.owner,
                    })
                } else {
                    None
                }
            })
            .collect()
    }

    /// The nodes `who` has a link to (its `PeerId`s, in order): every node
    /// it shares an address with, by index.
    pub fn peers(self, who: Who) -> Vec<Who> {
        let mut v: Vec<Who> = self.sites(who).into_iter().map(|s| s.peer).collect();
        v.sort();
        v.dedup();
        v
    }

    /// How a victim is named in reports and replay commands: the duplex
    /// topology names its nodes by role ("primary", "owner"), the others
    /// by letter.
    pub fn victim_name(self, w: Who) -> &'static str {
        match (self, w) {
            (Topology::Duplex, Who::A) => "primary",
            (Topology::Duplex, Who::B) => "owner",
            _ => w.name(),
        }
    }

    pub fn parse_victim(self, s: &str) -> Option<Who> {
        let w = match s {
            "primary" if self == Topology::Duplex => Who::A,
            "owner" if self == Topology::Duplex => Who::B,
            _ => Who::parse(s)?,
        };
        (w.index() < self.nodes()).then_some(w)
    }

    /// The client's connections for a scenario: in the duplex topology the
    /// scenario's own; otherwise one copy of its connections per service
    /// address, all open at once (copy j's connections go to address j).
    pub fn scenario(self, base: Scenario) -> Scenario {
        let n = self.addresses().len();
        if n == 1 {
            return base;
        }
        let per = base.conns.len();
        let conns = (0..n)
            .flat_map(|j| {
                base.conns.iter().cloned().map(move |mut c| {
                    c.address = j;
                    // Each address's copy waits for its own earlier connection.
                    c.after = c.after.map(|i| i + j * per);
                    c
                })
            })
            .collect();
        Scenario { conns, ..base }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_peers() {
        let d = Topology::Duplex;
        assert_eq!(d.sites(Who::A)[0].role, Role::Primary);
        assert_eq!(d.sites(Who::B)[0].role, Role::Owner);
        let dr = Topology::DualRole;
        assert_eq!(dr.peers(Who::A), vec![Who::B]);
        assert_eq!(
            dr.sites(Who::A)
                .iter()
                .map(|s| (s.address, s.role))
                .collect::<Vec<_>>(),
            vec![(0, Role::Owner), (1, Role::Primary)]
        );
        let r = Topology::Ring(3);
        assert_eq!(r.peers(Who::B), vec![Who::A, Who::C]);
        assert_eq!(
            r.sites(Who::C)
                .iter()
                .map(|s| (s.address, s.role, s.peer))
                .collect::<Vec<_>>(),
            vec![(1, Role::Primary, Who::B), (2, Role::Owner, Who::A)]
        );
        for t in [d, dr, r] {
            assert_eq!(Topology::parse(&t.name()), Some(t));
            for w in t.all_nodes() {
                assert_eq!(t.parse_victim(t.victim_name(w)), Some(w));
            }
        }
        assert_eq!(Topology::parse("ring2"), None);
    }
}
