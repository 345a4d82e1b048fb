//! Reading and rewriting TCP/IPv4 segments inside Ethernet frames, in place.
//!
//! The owner node aligns its shadow sockets with the primary's sequence
//! space by rewriting a few fields of client segments (ACK, SACK edges,
//! window) and, after a takeover, of its own segments (SEQ). TCP checksums
//! are not touched: smoltcp is configured not to verify them (the kernel or
//! the owner node already did), and outgoing checksums are completed by
//! the kernel from the pseudo-header sum written at the TAP (see `vnet`).

use smoltcp::wire::{EthernetAddress, Ipv4Address};

use crate::vnet::{tcpv4_offsets, TcpV4Offsets};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// The fields of a TCP segment the replication cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    pub off: TcpV4Offsets,
    pub src_mac: EthernetAddress,
    pub dst_mac: EthernetAddress,
    pub src: Ipv4Address,
    pub dst: Ipv4Address,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload_len: usize,
}

impl Seg {
    /// Sequence space the segment occupies (payload, plus one each for SYN and FIN).
    pub fn seq_len(&self) -> u32 {
        self.payload_len as u32
            + u32::from(self.flags & SYN != 0)
            + u32::from(self.flags & FIN != 0)
    }
    pub fn seq_end(&self) -> u32 {
        self.seq.wrapping_add(self.seq_len())
    }
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Parse an Ethernet/IPv4/TCP frame; `None` for anything else or malformed.
pub fn parse(frame: &[u8]) -> Option<Seg> {
    let off = tcpv4_offsets(frame)?;
    let t = off.tcp;
    Some(Seg {
        off,
        dst_mac: EthernetAddress::from_bytes(&frame[0..6]),
        src_mac: EthernetAddress::from_bytes(&frame[6..12]),
        src: Ipv4Address::from_octets([frame[26], frame[27], frame[28], frame[29]]),
        dst: Ipv4Address::from_octets([frame[30], frame[31], frame[32], frame[33]]),
        src_port: u16::from_be_bytes([frame[t], frame[t + 1]]),
        dst_port: u16::from_be_bytes([frame[t + 2], frame[t + 3]]),
        seq: be32(frame, t + 4),
        ack: be32(frame, t + 8),
        flags: frame[t + 13],
        window: u16::from_be_bytes([frame[t + 14], frame[t + 15]]),
        payload_len: off.end - off.payload,
    })
}

pub fn set_seq(frame: &mut [u8], s: &Seg, v: u32) {
    frame[s.off.tcp + 4..s.off.tcp + 8].copy_from_slice(&v.to_be_bytes());
}
pub fn set_ack(frame: &mut [u8], s: &Seg, v: u32) {
    frame[s.off.tcp + 8..s.off.tcp + 12].copy_from_slice(&v.to_be_bytes());
}
pub fn set_window(frame: &mut [u8], s: &Seg, v: u16) {
    frame[s.off.tcp + 14..s.off.tcp + 16].copy_from_slice(&v.to_be_bytes());
}

/// Where the option of `want` kind starts in a segment's options and its
/// length. `None` when there is none; a malformed option list ends the
/// search.
fn find_option(frame: &[u8], s: &Seg, want: u8) -> Option<(usize, usize)> {
    let mut i = s.off.tcp + 20;
    let end = s.off.payload.min(frame.len());
    while i < end {
        match frame[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*frame.get(i + 1)?);
                if len < 2 || i + len > end {
                    return None;
                }
                if kind == want {
                    return Some((i, len));
                }
                i += len;
            }
        }
    }
    None
}

/// Where the SACK blocks of a segment's options are: `(first, end)` byte
/// indices, 8 bytes a block.
fn sack_option(frame: &[u8], s: &Seg) -> Option<(usize, usize)> {
    let (i, len) = find_option(frame, s, 5)?;
    Some((i + 2, i + 2 + (len - 2) / 8 * 8))
}

/// The MSS option of a segment (a SYN's), if it has a well-formed one.
pub fn mss_option(frame: &[u8], s: &Seg) -> Option<u16> {
    match find_option(frame, s, 2)? {
        (i, 4) => Some(u16::from_be_bytes([frame[i + 2], frame[i + 3]])),
        _ => None,
    }
}

/// Subtract `delta` (wrapping) from both edges of every SACK block: SACK
/// edges are acknowledgment numbers, in the same space as ACK.
pub fn shift_sack(frame: &mut [u8], s: &Seg, delta: u32) {
    let Some((first, end)) = sack_option(frame, s) else {
        return;
    };
    for j in (first..end).step_by(4) {
        let v = be32(frame, j).wrapping_sub(delta);
        frame[j..j + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// The SACK blocks `(left, right)` a segment carries (at most 4 fit).
pub fn sack_blocks<'a>(frame: &'a [u8], s: &Seg) -> impl Iterator<Item = (u32, u32)> + 'a {
    let (first, end) = sack_option(frame, s).unwrap_or((0, 0));
    (first..end)
        .step_by(8)
        .map(move |j| (be32(frame, j), be32(frame, j + 4)))
}

/// Wrapping sequence comparison: `a` is at or after `b`.
pub fn seq_ge(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// Recompute the IPv4 header checksum of an Ethernet frame (no options).
pub fn set_ipv4_checksum(f: &mut [u8]) {
    f[24..26].copy_from_slice(&[0, 0]);
    let mut sum: u32 = 0;
    for c in f[14..34].chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Build a bare TCP segment (no options, no payload) with a valid IPv4
/// header checksum and a zero TCP checksum (never verified where these go:
/// they are fed to our own smoltcp).
#[allow(clippy::too_many_arguments)]
pub fn build(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Address,
    dst: Ipv4Address,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
) -> Vec<u8> {
    let mut f = vec![0u8; 54];
    f[0..6].copy_from_slice(dst_mac.as_bytes());
    f[6..12].copy_from_slice(src_mac.as_bytes());
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&40u16.to_be_bytes());
    f[20] = 0x40; // DF
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&src.octets());
    f[30..34].copy_from_slice(&dst.octets());
    set_ipv4_checksum(&mut f);
    f[34..36].copy_from_slice(&src_port.to_be_bytes());
    f[36..38].copy_from_slice(&dst_port.to_be_bytes());
    f[38..42].copy_from_slice(&seq.to_be_bytes());
    f[42..46].copy_from_slice(&ack.to_be_bytes());
    f[46] = 5 << 4;
    f[47] = flags;
    f[48..50].copy_from_slice(&window.to_be_bytes());
    f
}

/// Adds the MSS option to a bare segment from [`build`]: a SYN cookie's
/// SYN-ACK (no other option survives in a cookie).
pub fn with_mss(mut f: Vec<u8>, mss: u16) -> Vec<u8> {
    debug_assert_eq!(f.len(), 54, "not a bare segment");
    f[16..18].copy_from_slice(&44u16.to_be_bytes());
    set_ipv4_checksum(&mut f);
    f[46] = 6 << 4;
    f.extend_from_slice(&[2, 4]);
    f.extend_from_slice(&mss.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        build(
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            EthernetAddress([2, 0, 0, 0, 0, 2]),
            Ipv4Address::new(10, 77, 0, 100),
            Ipv4Address::new(10, 77, 0, 10),
            40000,
            80,
            1000,
            5000,
            ACK,
            512,
        )
    }

    #[test]
    fn build_parse_roundtrip_and_rewrites() {
        let mut f = sample();
        let s = parse(&f).unwrap();
        assert_eq!(
            (s.src_port, s.dst_port, s.seq, s.ack, s.flags, s.window),
            (40000, 80, 1000, 5000, ACK, 512)
        );
        assert_eq!(s.payload_len, 0);
        assert_eq!(s.seq_end(), 1000);
        assert!(smoltcp::wire::Ipv4Packet::new_checked(&f[14..])
            .unwrap()
            .verify_checksum());
        set_ack(&mut f, &s, 7);
        set_seq(&mut f, &s, 8);
        set_window(&mut f, &s, 0);
        let t = parse(&f).unwrap();
        assert_eq!((t.seq, t.ack, t.window), (8, 7, 0));
    }

    #[test]
    fn sack_edges_shift_and_bad_options_are_harmless() {
        // Rebuild with options: NOP NOP SACK(2 blocks) = 2 + 18 = 20 bytes.
        let base = sample();
        let mut f = base[..54].to_vec();
        f[46] = 10 << 4;
        f[16..18].copy_from_slice(&60u16.to_be_bytes());
        let mut opts = vec![1u8, 1, 5, 18];
        for v in [100u32, 200, 300, 400] {
            opts.extend_from_slice(&v.to_be_bytes());
        }
        f.extend_from_slice(&opts);
        let s = parse(&f).unwrap();
        shift_sack(&mut f, &s, 50);
        let got: Vec<u32> = (0..4).map(|k| be32(&f, 58 + 4 * k)).collect();
        assert_eq!(got, vec![50, 150, 250, 350]);
        let s = parse(&f).unwrap();
        let blocks: Vec<_> = sack_blocks(&f, &s).collect();
        assert_eq!(blocks, vec![(50, 150), (250, 350)]);
        // A length byte running past the header must not panic.
        f[57] = 200;
        shift_sack(&mut f, &s, 1);
        assert_eq!(sack_blocks(&f, &s).count(), 0);
        f[57] = 0;
        shift_sack(&mut f, &s, 1);
        assert_eq!(sack_blocks(&f, &s).count(), 0);
    }

    #[test]
    fn a_syn_ack_carries_its_mss() {
        let f = with_mss(
            build(
                EthernetAddress([2, 0, 0, 0, 0, 1]),
                EthernetAddress([2, 0, 0, 0, 0, 2]),
                Ipv4Address::new(10, 77, 0, 10),
                Ipv4Address::new(10, 77, 0, 100),
                80,
                40000,
                77,
                1001,
                SYN | ACK,
                65535,
            ),
            1460,
        );
        let s = parse(&f).unwrap();
        assert_eq!(
            (s.seq, s.ack, s.flags, s.payload_len),
            (77, 1001, SYN | ACK, 0)
        );
        assert_eq!(mss_option(&f, &s), Some(1460));
        assert!(smoltcp::wire::Ipv4Packet::new_checked(&f[14..])
            .unwrap()
            .verify_checksum());
        // What smoltcp makes of it.
        let ip = smoltcp::wire::Ipv4Packet::new_checked(&f[14..]).unwrap();
        let tcp = smoltcp::wire::TcpPacket::new_checked(ip.payload()).unwrap();
        let (_, opt) = smoltcp::wire::TcpOption::parse(tcp.options()).unwrap();
        assert_eq!(opt, smoltcp::wire::TcpOption::MaxSegmentSize(1460));
        assert_eq!(mss_option(&sample(), &parse(&sample()).unwrap()), None);
    }

    #[test]
    fn wrapping_compare() {
        assert!(seq_ge(5, 5));
        assert!(seq_ge(5, u32::MAX - 3));
        assert!(!seq_ge(u32::MAX - 3, 5));
    }
}
