//! The `virtio_net_hdr` that prefixes every frame on a TAP opened with
//! `IFF_VNET_HDR`, and the checksum work that goes with it.
//!
//! Why: with the header the kernel hands us TCP segments of up to 64 KiB
//! (coalesced by the sender's TSO/GRO) and accepts the same from us, doing
//! segmentation and checksums itself. Without it, smoltcp serves 50 KB replies
//! about 4x slower than nginx on this machine; with it, at parity.
//!
//! Layout (`struct virtio_net_hdr`, 10 bytes, little-endian on the hosts we run on):
//! `flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16, csum_offset u16`.

/// Length of the header we ask the kernel for (the default `TUNSETVNETHDRSZ`).
pub const VNET_HDR_LEN: usize = 10;
/// The checksum from `csum_start` on is still to be computed (partial checksum).
pub const F_NEEDS_CSUM: u8 = 1;
/// The kernel already verified the checksum.
pub const F_DATA_VALID: u8 = 2;
/// No segmentation.
pub const GSO_NONE: u8 = 0;
/// TCP over IPv4 segmentation.
pub const GSO_TCPV4: u8 = 1;

const ETH_HDR_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const IPPROTO_TCP: u8 = 6;
const TCP_CHECKSUM_OFFSET: u16 = 16;

/// A parsed `virtio_net_hdr`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Parse the header at the front of `buf`; `None` if `buf` is too short.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        let b = buf.get(..VNET_HDR_LEN)?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Write the header into the first [`VNET_HDR_LEN`] bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`VNET_HDR_LEN`] (a caller bug, never input-driven).
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0] = self.flags;
        buf[1] = self.gso_type;
        buf[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        buf[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        buf[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        buf[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }
}

/// Offsets of an IPv4/TCP segment inside an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpV4Offsets {
    /// Start of the TCP header.
    pub tcp: usize,
    /// End of the TCP header (start of payload).
    pub payload: usize,
    /// End of the IP packet (frames may carry padding after it).
    pub end: usize,
}

/// Locate the TCP header of an untagged Ethernet/IPv4/TCP frame. `None` for
/// anything else or anything malformed (callers then treat the frame as opaque).
pub fn tcpv4_offsets(frame: &[u8]) -> Option<TcpV4Offsets> {
    if frame.len() < ETH_HDR_LEN + 20 {
        return None;
    }
    if u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &frame[ETH_HDR_LEN..];
    if ip[0] >> 4 != 4 || ip[9] != IPPROTO_TCP {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    // A fragment carries no complete TCP header we could checksum.
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if ihl < 20 || frag & 0x3fff != 0 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // Total length 0 is how a >64 KiB GSO packet is marked; we never build those.
    if total < ihl + 20 || total > ip.len() {
        return None;
    }
    let tcp = ETH_HDR_LEN + ihl;
    let doff = usize::from(frame[tcp + 12] >> 4) * 4;
    if doff < 20 || ihl + doff > total {
        return None;
    }
    Some(TcpV4Offsets {
        tcp,
        payload: tcp + doff,
        end: ETH_HDR_LEN + total,
    })
}

/// One's-complement sum of `data` as big-endian 16-bit words, not folded.
fn sum_be_words(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]))
            + u64::from(u16::from_be_bytes([c[2], c[3]]))
            + u64::from(u16::from_be_bytes([c[4], c[5]]))
            + u64::from(u16::from_be_bytes([c[6], c[7]]));
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = rest.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The TCP pseudo-header sum (source, destination, protocol, TCP length).
fn pseudo_header_sum(frame: &[u8], off: &TcpV4Offsets) -> u64 {
    let ip = &frame[ETH_HDR_LEN..];
    let tcp_len = (off.end - off.tcp) as u64;
    sum_be_words(0, &ip[12..20]) + u64::from(IPPROTO_TCP) + tcp_len
}

/// Verify the TCP checksum of a frame the kernel did not vouch for.
/// Frames that are not IPv4/TCP pass (smoltcp checks what it understands).
pub fn tcp_checksum_ok(frame: &[u8]) -> bool {
    match tcpv4_offsets(frame) {
        None => true,
        Some(off) => {
            let acc = sum_be_words(pseudo_header_sum(frame, &off), &frame[off.tcp..off.end]);
            fold(acc) == 0xffff
        }
    }
}

/// Whether a received frame may go up the stack: the kernel marked it
/// (partial or verified checksum), or its TCP checksum is right.
pub fn rx_checksum_ok(hdr: &VnetHdr, frame: &[u8]) -> bool {
    hdr.flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0 || tcp_checksum_ok(frame)
}

/// Prepare an outgoing frame for the TAP and return the header to send with it.
///
/// smoltcp is configured not to compute TCP checksums: for IPv4/TCP we put the
/// pseudo-header sum in the checksum field and ask the kernel to finish it
/// (`NEEDS_CSUM`), the same contract a NIC with checksum offload has. When
/// `gso_size` is given and the payload is larger, the kernel also cuts the
/// segment into `gso_size`-byte segments (TSO).
pub fn prepare_tx(frame: &mut [u8], gso_size: Option<u16>) -> VnetHdr {
    let Some(off) = tcpv4_offsets(frame) else {
        return VnetHdr::default();
    };
    let partial = fold(pseudo_header_sum(frame, &off));
    let c = off.tcp + usize::from(TCP_CHECKSUM_OFFSET);
    frame[c..c + 2].copy_from_slice(&partial.to_be_bytes());
    let mut hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: off.tcp as u16,
        csum_offset: TCP_CHECKSUM_OFFSET,
        ..VnetHdr::default()
    };
    if let Some(mss) = gso_size {
        if off.end - off.payload > usize::from(mss) && mss > 0 {
            hdr.gso_type = GSO_TCPV4;
            hdr.gso_size = mss;
            hdr.hdr_len = off.payload as u16;
        }
    }
    hdr
}

/// Compute the full TCP checksum in place (what the kernel does for a
/// `NEEDS_CSUM` frame); used by tests and by the pcap writer so captures
/// show valid checksums.
pub fn finish_tcp_checksum(frame: &mut [u8]) {
    if let Some(off) = tcpv4_offsets(frame) {
        let c = off.tcp + usize::from(TCP_CHECKSUM_OFFSET);
        frame[c..c + 2].copy_from_slice(&[0, 0]);
        let acc = sum_be_words(pseudo_header_sum(frame, &off), &frame[off.tcp..off.end]);
        frame[c..c + 2].copy_from_slice(&(!fold(acc)).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 + TCP (SYN, 20-byte header) + `payload`, with a valid
    /// IPv4 header checksum and TCP checksum left at zero.
    pub(crate) fn tcp_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload.len()];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let total = (40 + payload.len()) as u16;
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[8] = 64;
        ip[9] = IPPROTO_TCP;
        ip[12..16].copy_from_slice(&[10, 77, 0, 100]);
        ip[16..20].copy_from_slice(&[10, 77, 0, 10]);
        let tcp = &mut f[34..54];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18;
        f[54..].copy_from_slice(payload);
        f
    }

    #[test]
    fn header_roundtrip() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        h.emit(&mut b);
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert_eq!(VnetHdr::parse(&b[..9]), None);
    }

    #[test]
    fn full_checksum_verifies_and_corruption_fails() {
        for len in [0usize, 1, 2, 7, 1448, 3001] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let mut f = tcp_frame(&payload);
            finish_tcp_checksum(&mut f);
            assert!(tcp_checksum_ok(&f), "len {len}");
            if len > 0 {
                let i = 60.min(f.len() - 1);
                f[i] ^= 0x40;
                assert!(!tcp_checksum_ok(&f), "corrupt len {len}");
            }
        }
    }

    #[test]
    fn partial_checksum_completes_to_full() {
        // What the kernel does with NEEDS_CSUM: sum from csum_start, add the
        // partial value already in the field, store the complement.
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut f = tcp_frame(&payload);
        let h = prepare_tx(&mut f, Some(1448));
        assert_eq!(h.flags, F_NEEDS_CSUM);
        assert_eq!((h.gso_type, h.gso_size, h.hdr_len), (GSO_TCPV4, 1448, 54));
        let start = usize::from(h.csum_start);
        let c = start + usize::from(h.csum_offset);
        let acc = sum_be_words(0, &f[start..]);
        f[c..c + 2].copy_from_slice(&(!fold(acc)).to_be_bytes());
        assert!(tcp_checksum_ok(&f));
    }

    #[test]
    fn small_segments_are_not_marked_for_gso() {
        let mut f = tcp_frame(&[1, 2, 3]);
        let h = prepare_tx(&mut f, Some(1448));
        assert_eq!(h.gso_type, GSO_NONE);
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(prepare_tx(&mut arp, Some(1448)), VnetHdr::default());
    }

    #[test]
    fn malformed_frames_are_opaque_not_panics() {
        let good = tcp_frame(b"hello");
        for cut in 0..good.len() {
            let _ = tcpv4_offsets(&good[..cut]);
            let _ = tcp_checksum_ok(&good[..cut]);
            let mut g = good[..cut].to_vec();
            let _ = prepare_tx(&mut g, Some(1));
        }
        let mut bad = good.clone();
        bad[14 + 12 + 20] = 0xf0; // TCP data offset 60 > packet
        assert_eq!(tcpv4_offsets(&bad), None);
        let mut bad = good.clone();
        bad[16..18].copy_from_slice(&5000u16.to_be_bytes()); // IP total > frame
        assert_eq!(tcpv4_offsets(&bad), None);
    }
}
