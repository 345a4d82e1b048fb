//! Frames on the simulated LAN: TSO segmentation (the NIC's job under a real
//! TAP) and one-line descriptions for traces and reports.

use hotpair_stack::seg::{self, ACK, FIN, PSH, RST, SYN};
use smoltcp::wire::EthernetAddress;

/// Cut a TSO frame into `mss`-byte TCP segments, as the kernel does for a
/// frame a node writes with a GSO size: each segment gets the headers, its
/// sequence number, its own IPv4 total length, ID and header checksum; FIN
/// and PSH stay on the last segment only. Frames with no more payload than
/// `mss` (or not TCP) come back whole.
pub fn segment(frame: &[u8], mss: usize) -> Vec<Vec<u8>> {
    let Some(s) = seg::parse(frame) else {
        return vec![frame.to_vec()];
    };
    let payload = &frame[s.off.payload..s.off.end];
    if mss == 0 || payload.len() <= mss {
        return vec![frame[..s.off.end].to_vec()];
    }
    let head = &frame[..s.off.payload];
    let ihl = s.off.tcp - 14;
    let id = u16::from_be_bytes([frame[18], frame[19]]);
    let n = payload.len().div_ceil(mss);
    payload
        .chunks(mss)
        .enumerate()
        .map(|(i, chunk)| {
            let mut f = Vec::with_capacity(head.len() + chunk.len());
            f.extend_from_slice(head);
            f.extend_from_slice(chunk);
            let total = (s.off.payload - 14 + chunk.len()) as u16;
            f[16..18].copy_from_slice(&total.to_be_bytes());
            f[18..20].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let csum = ipv4_checksum(&f[14..14 + ihl]);
            f[24..26].copy_from_slice(&csum.to_be_bytes());
            seg::set_seq(&mut f, &s, s.seq.wrapping_add((i * mss) as u32));
            if i + 1 < n {
                f[s.off.tcp + 13] &= !(FIN | PSH);
            }
            f
        })
        .collect()
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Destination MAC of a frame.
pub fn dst_mac(frame: &[u8]) -> Option<EthernetAddress> {
    (frame.len() >= 14).then(|| EthernetAddress::from_bytes(&frame[0..6]))
}

/// Source MAC of a frame.
pub fn src_mac(frame: &[u8]) -> Option<EthernetAddress> {
    (frame.len() >= 14).then(|| EthernetAddress::from_bytes(&frame[6..12]))
}

/// TCP flags as letters (S, A, F, R, P).
pub fn flags(f: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [(SYN, 'S'), (ACK, 'A'), (FIN, 'F'), (RST, 'R'), (PSH, 'P')] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// A one-line description of a frame.
pub fn describe(frame: &[u8]) -> String {
    if hotpair_stack::arp::is_arp(frame) {
        return match hotpair_stack::arp::parse(frame) {
            Some(a) => format!(
                "ARP {:?} {} {} -> {} {}",
                a.operation, a.sender_mac, a.sender_ip, a.target_mac, a.target_ip
            ),
            None => format!("ARP ({} bytes)", frame.len()),
        };
    }
    match seg::parse(frame) {
        Some(s) => format!(
            "TCP {}:{} > {}:{} [{}] seq={} ack={} win={} len={}",
            s.src,
            s.src_port,
            s.dst,
            s.dst_port,
            flags(s.flags),
            s.seq,
            s.ack,
            s.window,
            s.payload_len
        ),
        None => format!("frame ({} bytes)", frame.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{Ipv4Address, Ipv4Packet};

    #[test]
    fn tso_frames_are_cut_like_the_kernel_does() {
        let mut f = seg::build(
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            EthernetAddress([2, 0, 0, 0, 0, 2]),
            Ipv4Address::new(10, 77, 0, 10),
            Ipv4Address::new(10, 77, 0, 100),
            80,
            40000,
            1000,
            7,
            ACK | PSH | FIN,
            512,
        );
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        f.extend_from_slice(&payload);
        let total = (40 + payload.len()) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        let segs = segment(&f, 1448);
        assert_eq!(segs.len(), 3);
        let mut joined = Vec::new();
        for (i, g) in segs.iter().enumerate() {
            let s = seg::parse(g).unwrap();
            assert!(Ipv4Packet::new_checked(&g[14..]).unwrap().verify_checksum());
            assert_eq!(s.seq, 1000 + 1448 * i as u32);
            assert_eq!(s.has(FIN), i == 2);
            assert_eq!(s.has(PSH), i == 2);
            assert!(s.has(ACK));
            joined.extend_from_slice(&g[s.off.payload..s.off.end]);
        }
        assert_eq!(joined, payload);
        assert_eq!(segment(&f, 4000).len(), 1);
    }
}
