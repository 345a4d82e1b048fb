//! Frames smoltcp does not build itself.

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Ipv4Address,
};

/// A gratuitous ARP request announcing `ip` at `mac` (sender = target = `ip`).
pub fn gratuitous(mac: EthernetAddress, ip: Ipv4Address) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: ip,
    };
    let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

/// An ARP reply from `sender` (mac, ip) to `target`: fed to our own
/// interface, it fills smoltcp's neighbour cache (the only way to fill it).
pub fn reply(
    sender_mac: EthernetAddress,
    sender_ip: Ipv4Address,
    target_mac: EthernetAddress,
    target_ip: Ipv4Address,
) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: sender_mac,
        dst_addr: target_mac,
        ethertype: EthernetProtocol::Arp,
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: sender_mac,
        source_protocol_addr: sender_ip,
        target_hardware_addr: target_mac,
        target_protocol_addr: target_ip,
    };
    let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

/// Whether a frame is ARP.
pub fn is_arp(frame: &[u8]) -> bool {
    frame.len() >= 14 && frame[12] == 0x08 && frame[13] == 0x06
}

#[cfg(test)]
mod tests {
    use super::*;

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
