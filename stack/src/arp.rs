//! Frames smoltcp does not build itself.

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Ipv4Address,
};

/// One ARP frame: Ethernet to `eth_dst`, the given operation and addresses.
fn frame(
    eth_dst: EthernetAddress,
    operation: ArpOperation,
    (sender_mac, sender_ip): (EthernetAddress, Ipv4Address),
    (target_mac, target_ip): (EthernetAddress, Ipv4Address),
) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: sender_mac,
        dst_addr: eth_dst,
        ethertype: EthernetProtocol::Arp,
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: sender_mac,
        source_protocol_addr: sender_ip,
        target_hardware_addr: target_mac,
        target_protocol_addr: target_ip,
    };
    let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
    buf
}

const NO_MAC: EthernetAddress = EthernetAddress([0; 6]);

/// A gratuitous ARP request announcing `ip` at `mac` (sender = target = `ip`).
pub fn gratuitous(mac: EthernetAddress, ip: Ipv4Address) -> Vec<u8> {
    frame(
        EthernetAddress::BROADCAST,
        ArpOperation::Request,
        (mac, ip),
        (NO_MAC, ip),
    )
}

/// An ARP reply from `sender` (mac, ip) to `target`: fed to our own
/// interface, it fills smoltcp's neighbour cache (the only way to fill it).
pub fn reply(
    sender_mac: EthernetAddress,
    sender_ip: Ipv4Address,
    target_mac: EthernetAddress,
    target_ip: Ipv4Address,
) -> Vec<u8> {
    frame(
        target_mac,
        ArpOperation::Reply,
        (sender_mac, sender_ip),
        (target_mac, target_ip),
    )
}

/// An RFC 5227 ARP probe for `ip` from `mac`: sender IP 0.0.0.0, so no
/// host's cache changes, yet whoever owns `ip` answers.
pub fn probe(mac: EthernetAddress, ip: Ipv4Address) -> Vec<u8> {
    frame(
        EthernetAddress::BROADCAST,
        ArpOperation::Request,
        (mac, Ipv4Address::UNSPECIFIED),
        (NO_MAC, ip),
    )
}

/// A unicast ARP request from (`mac`, `ip`) to a known host: it learns
/// that `ip` is at `mac` (and answers).
pub fn request_to(
    mac: EthernetAddress,
    ip: Ipv4Address,
    their_mac: EthernetAddress,
    their_ip: Ipv4Address,
) -> Vec<u8> {
    frame(
        their_mac,
        ArpOperation::Request,
        (mac, ip),
        (their_mac, their_ip),
    )
}

/// An ARP packet's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub operation: ArpOperation,
    pub sender_mac: EthernetAddress,
    pub sender_ip: Ipv4Address,
    pub target_mac: EthernetAddress,
    pub target_ip: Ipv4Address,
}

/// Parse an Ethernet/ARP frame.
pub fn parse(frame: &[u8]) -> Option<Arp> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    match ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()? {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_hardware_addr,
            target_protocol_addr,
        } => Some(Arp {
            operation,
            sender_mac: source_hardware_addr,
            sender_ip: source_protocol_addr,
            target_mac: target_hardware_addr,
            target_ip: target_protocol_addr,
        }),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Whether a frame is ARP.
pub fn is_arp(frame: &[u8]) -> bool {
    frame.len() >= 14 && frame[12] == 0x08 && frame[13] == 0x06
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_and_reply_parse_back() {
        let mac = EthernetAddress([2, 0x68, 0x70, 0, 0, 1]);
        let ip = Ipv4Address::new(10, 77, 0, 10);
        let a = parse(&probe(mac, ip)).unwrap();
        assert_eq!(
            (a.operation, a.sender_mac, a.sender_ip, a.target_ip),
            (ArpOperation::Request, mac, Ipv4Address::UNSPECIFIED, ip)
        );
        let other = EthernetAddress([2, 0x68, 0x70, 0, 0, 2]);
        let a = parse(&reply(other, ip, mac, Ipv4Address::UNSPECIFIED)).unwrap();
        assert_eq!(
            (a.operation, a.sender_mac, a.sender_ip, a.target_mac),
            (ArpOperation::Reply, other, ip, mac)
        );
        assert!(parse(&[0u8; 20]).is_none());
    }

    #[test]
    fn gratuitous_arp_parses_back() {
        let mac = EthernetAddress([2, 0x68, 0x70, 0, 0, 1]);
        let ip = Ipv4Address::new(10, 77, 0, 10);
        let f = gratuitous(mac, ip);
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(eth.dst_addr(), EthernetAddress::BROADCAST);
        let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        match arp {
            ArpRepr::EthernetIpv4 {
                source_protocol_addr,
                target_protocol_addr,
                source_hardware_addr,
                ..
            } => {
                assert_eq!(
                    (
                        source_protocol_addr,
                        target_protocol_addr,
                        source_hardware_addr
                    ),
                    (ip, ip, mac)
                );
            }
            _ => panic!("not IPv4 ARP"),
        }
    }
}
