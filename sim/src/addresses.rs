//! The simulated LAN's addressing plan: which node is which ([`Who`], with
//! its MAC), the service addresses, the ports they serve, and the gateway
//! the LAN checks ask. Every part of the simulation names these, so they
//! live apart from any one of those parts.

use hotpair_stack::smoltcp::wire::{EthernetAddress, Ipv4Address};

/// The first service address (the duplex topology's only one); address `i`
/// of a topology is [`vip`]`(i)`.
pub const VIP: Ipv4Address = Ipv4Address::new(10, 77, 0, 10);
/// Service addresses a topology may have at most.
pub const MAX_ADDRESSES: usize = 8;
pub const PREFIX_LEN: u8 = 24;
pub const PORT: u16 = 80;
/// The port every address serves HTTPS on in a scenario with TLS (beside
/// HTTP on [`PORT`]).
pub const TLS_PORT: u16 = 443;
pub const MAC_A: EthernetAddress = EthernetAddress([0x02, 0x68, 0x70, 0, 0, 0x01]);
pub const MAC_B: EthernetAddress = EthernetAddress([0x02, 0x68, 0x70, 0, 0, 0x02]);
/// The LAN host every node's LAN check asks (a gateway the world answers
/// as a port of the switch; see `world::faults`).
pub const GATEWAY_IP: Ipv4Address = Ipv4Address::new(10, 77, 0, 1);
pub const GATEWAY_MAC: EthernetAddress = EthernetAddress([0x02, 0x68, 0x70, 0, 0, 0xfe]);

/// Service address `i`: 10.77.0.10, .11, ...
pub fn vip(i: usize) -> Ipv4Address {
    assert!(i < MAX_ADDRESSES, "service address {i} out of range");
    let [a, b, c, d] = VIP.octets();
    Ipv4Address::new(a, b, c, d + i as u8)
}

/// Which service address `ip` is, if it is one.
pub fn vip_index(ip: Ipv4Address) -> Option<usize> {
    (0..MAX_ADDRESSES).find(|&i| vip(i) == ip)
}

/// Which node: an index (A = 0, B = 1, C = 2, ...). In the duplex
/// topology A is the primary and B the owner node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Who(pub u8);

const NAMES: [&str; 8] = ["A", "B", "C", "D", "E", "F", "G", "H"];
const LOWER: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

impl Who {
    pub const A: Who = Who(0);
    pub const B: Who = Who(1);
    pub const C: Who = Who(2);
    /// Nodes a topology may have at most.
    pub const MAX: usize = NAMES.len();

    pub fn index(self) -> usize {
        usize::from(self.0)
    }
    /// "A", "B", ...
    pub fn name(self) -> &'static str {
        NAMES[self.index()]
    }
    /// The node core's name ("a", "b", ...).
    pub fn node_name(self) -> &'static str {
        LOWER[self.index()]
    }
    /// Node A's MAC is 02:68:70:00:00:01, B's ...:02, and so on.
    pub fn mac(self) -> EthernetAddress {
        let mut m = MAC_A.0;
        m[5] += self.0;
        EthernetAddress(m)
    }
    /// "A"/"a" → A, ...
    pub fn parse(s: &str) -> Option<Who> {
        (0..NAMES.len())
            .find(|&i| NAMES[i] == s || LOWER[i] == s)
            .map(|i| Who(i as u8))
    }
}
