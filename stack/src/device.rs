//! The smoltcp [`Device`] over a [`Tap`]: strips/adds the vnet header, checks
//! checksums the kernel did not vouch for, guards against duplicate SYNs,
//! and records frames to pcap. Buffers are allocated once and reused.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::time::{SystemTime, UNIX_EPOCH};

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium, PacketMeta};
use smoltcp::time::Instant;
use smoltcp::wire::{Ipv4Address, TcpPacket};

use crate::pcap::PcapSink;
use crate::tap::Tap;
use crate::vnet::{self, VnetHdr, VNET_HDR_LEN};

/// Ethernet MTU toward the LAN (IP MTU 1500 + 14).
pub const ETHERNET_MTU: usize = 1514;
/// Largest frame we build for the kernel to segment (Ethernet header
/// included); keeps the IPv4 total length within 16 bits.
pub const TSO_MAX_FRAME: usize = 14 + 65_535;
/// Largest frame the kernel may hand us (a 64 KiB GRO/TSO segment).
const RX_BUF_LEN: usize = VNET_HDR_LEN + 14 + 65_535 + 64;

/// A client TCP 4-tuple as seen from the node: (client address, client port, local port).
pub type Tuple = (Ipv4Address, u16, u16);

/// Counters kept by the device.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceStats {
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub rx_bad_checksum: u64,
    pub rx_duplicate_syn: u64,
    pub rx_malformed: u64,
    pub tx_errors: u64,
}

/// Tracks which client 4-tuples have a socket, so a retransmitted SYN is not
/// taken by a second free listener (smoltcp gives a SYN to the first socket
/// that accepts it, and any listener does).
#[derive(Debug, Default)]
pub struct SynGuard {
    occupied: HashSet<Tuple>,
    /// SYNs let through since the last reconcile: they may or may not have
    /// found a listener (at the pool limit smoltcp refuses them with RST).
    pending: Vec<Tuple>,
}

impl SynGuard {
    /// Record that a socket now holds `t`.
    pub fn occupy(&mut self, t: Tuple) {
        self.occupied.insert(t);
    }
    /// Record that no socket holds `t` any more.
    pub fn release(&mut self, t: &Tuple) {
        self.occupied.remove(t);
    }
    /// SYNs passed up since the last call; the caller releases those no socket took.
    pub fn take_pending(&mut self) -> Vec<Tuple> {
        std::mem::take(&mut self.pending)
    }
    /// Decide for a received frame; returns false to drop it.
    fn admit(&mut self, frame: &[u8]) -> bool {
        let Some(off) = vnet::tcpv4_offsets(frame) else {
            return true;
        };
        let Ok(tcp) = TcpPacket::new_checked(&frame[off.tcp..off.end]) else {
            return true;
        };
        if !tcp.syn() || tcp.ack() {
            return true;
        }
        let src = Ipv4Address::from_octets([frame[26], frame[27], frame[28], frame[29]]);
        let t = (src, tcp.src_port(), tcp.dst_port());
        if self.occupied.contains(&t) {
            return false;
        }
        self.occupied.insert(t);
        self.pending.push(t);
        true
    }
}

/// The smoltcp device over the TAP.
pub struct TapPhy {
    tap: Tap,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    pcap: Option<PcapSink>,
    /// Duplicate-SYN guard, kept in step with the socket pool by the stack.
    pub syn_guard: SynGuard,
    stats: DeviceStats,
    /// Set when a frame was received or sent since the last `take_activity`.
    activity: bool,
}

impl std::fmt::Debug for TapPhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapPhy")
            .field("tap", &self.tap.name())
            .finish()
    }
}

fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl TapPhy {
    pub fn new(tap: Tap, pcap: Option<PcapSink>) -> Self {
        TapPhy {
            tap,
            rx_buf: vec![0; RX_BUF_LEN],
            tx_buf: Vec::with_capacity(VNET_HDR_LEN + TSO_MAX_FRAME),
            pcap,
            syn_guard: SynGuard::default(),
            stats: DeviceStats::default(),
            activity: false,
        }
    }

    pub fn tap(&self) -> &Tap {
        &self.tap
    }

    pub fn stats(&self) -> DeviceStats {
        self.stats
    }

    /// Whether any frame moved since the last call.
    pub fn take_activity(&mut self) -> bool {
        std::mem::take(&mut self.activity)
    }

    /// Send a frame built outside smoltcp (e.g. a gratuitous ARP).
    pub fn send_raw(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.tx_buf.clear();
        self.tx_buf.resize(VNET_HDR_LEN, 0);
        self.tx_buf.extend_from_slice(frame);
        let hdr = vnet::prepare_tx(&mut self.tx_buf[VNET_HDR_LEN..], None);
        hdr.emit(&mut self.tx_buf[..VNET_HDR_LEN]);
        write_frame(&self.tap, &self.tx_buf, &mut self.pcap, &mut self.stats)
    }

    pub fn flush_pcap(&mut self) {
        if let Some(p) = self.pcap.as_mut() {
            if let Err(e) = p.flush() {
                tracing::warn!(error = %e, "pcap flush failed; capture disabled");
                self.pcap = None;
            }
        }
    }
}

fn write_frame(
    tap: &Tap,
    buf: &[u8],
    pcap: &mut Option<PcapSink>,
    stats: &mut DeviceStats,
) -> std::io::Result<()> {
    if let Some(p) = pcap.as_mut() {
        // Record the frame as it will leave the kernel: with a full checksum.
        let mut copy = buf[VNET_HDR_LEN..].to_vec();
        vnet::finish_tcp_checksum(&mut copy);
        let _ = p.frame(wall_micros(), &copy);
    }
    match tap.write(buf) {
        Ok(_) => {
            stats.tx_frames += 1;
            Ok(())
        }
        Err(e) => {
            // TCP retransmits; a dropped frame is not an error for the node.
            stats.tx_errors += 1;
            tracing::trace!(error = %e, "TAP write failed");
            Err(e)
        }
    }
}

/// Receive token: one frame in the device's receive buffer.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

/// Transmit token: builds the frame in the device's transmit buffer.
pub struct TxToken<'a> {
    tap: &'a Tap,
    buf: &'a mut Vec<u8>,
    pcap: &'a mut Option<PcapSink>,
    stats: &'a mut DeviceStats,
    activity: &'a mut bool,
    meta: PacketMeta,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        self.buf.clear();
        self.buf.resize(VNET_HDR_LEN + len, 0);
        let r = f(&mut self.buf[VNET_HDR_LEN..]);
        let gso = self.meta.segmentation_offload_size.map(|s| s.get());
        let hdr = vnet::prepare_tx(&mut self.buf[VNET_HDR_LEN..], gso);
        hdr.emit(&mut self.buf[..VNET_HDR_LEN]);
        let _ = write_frame(self.tap, self.buf, self.pcap, self.stats);
        *self.activity = true;
        r
    }

    fn set_meta(&mut self, meta: PacketMeta) {
        self.meta = meta;
    }
}

impl phy::Device for TapPhy {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _ts: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let len = loop {
            let n = match self.tap.read(&mut self.rx_buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "TAP read failed");
                    return None;
                }
            };
            self.activity = true;
            let Some(hdr) = VnetHdr::parse(&self.rx_buf[..n]) else {
                self.stats.rx_malformed += 1;
                continue;
            };
            let frame = &self.rx_buf[VNET_HDR_LEN..n];
            if !vnet::rx_checksum_ok(&hdr, frame) {
                self.stats.rx_bad_checksum += 1;
                continue;
            }
            if !self.syn_guard.admit(frame) {
                self.stats.rx_duplicate_syn += 1;
                continue;
            }
            if let Some(p) = self.pcap.as_mut() {
                let mut copy = frame.to_vec();
                if hdr.flags & vnet::F_NEEDS_CSUM != 0 {
                    vnet::finish_tcp_checksum(&mut copy);
                }
                let _ = p.frame(wall_micros(), &copy);
            }
            self.stats.rx_frames += 1;
            break n;
        };
        Some((
            RxToken {
                frame: &self.rx_buf[VNET_HDR_LEN..len],
            },
            TxToken {
                tap: &self.tap,
                buf: &mut self.tx_buf,
                pcap: &mut self.pcap,
                stats: &mut self.stats,
                activity: &mut self.activity,
                meta: PacketMeta::default(),
            },
        ))
    }

    fn transmit(&mut self, _ts: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            tap: &self.tap,
            buf: &mut self.tx_buf,
            pcap: &mut self.pcap,
            stats: &mut self.stats,
            activity: &mut self.activity,
            meta: PacketMeta::default(),
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = ETHERNET_MTU;
        let mut csum = ChecksumCapabilities::default();
        // TCP checksums are the kernel's job in both directions (vnet header);
        // frames it did not vouch for are verified in `receive`.
        csum.tcp = Checksum::None;
        caps.checksum = csum;
        caps.segmentation.tcpv4 = NonZeroUsize::new(TSO_MAX_FRAME);
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(src_port: u16, flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 54];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 77, 0, 100]);
        f[30..34].copy_from_slice(&[10, 77, 0, 10]);
        f[34..36].copy_from_slice(&src_port.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = flags;
        f
    }

    #[test]
    fn duplicate_syn_is_dropped_until_released() {
        let mut g = SynGuard::default();
        assert!(g.admit(&syn(1000, 0x02)));
        assert!(
            !g.admit(&syn(1000, 0x02)),
            "retransmitted SYN must not reach a second listener"
        );
        assert!(g.admit(&syn(1001, 0x02)));
        assert!(g.admit(&syn(1000, 0x10)), "non-SYN segments always pass");
        assert!(
            g.admit(&syn(1000, 0x12)),
            "SYN-ACK is not a connection request"
        );
        let pending = g.take_pending();
        assert_eq!(pending.len(), 2);
        g.release(&pending[0]);
        assert!(g.admit(&syn(1000, 0x02)));
    }
}
