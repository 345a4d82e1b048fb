//! The queue device: smoltcp's `phy::Device` over in-memory frame queues,
//! with each frame's dispatch decided by the engine and a per-round budget
//! of frames and bytes for what smoltcp emits.

use std::collections::VecDeque;
use std::num::NonZeroUsize;

use smoltcp::iface::TcpDispatch;
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium, PacketMeta};
use smoltcp::time::Instant;

use super::types::Frame;
use super::{ETHERNET_MTU, HEADROOM, MAX_POOLED, TSO_MAX_FRAME, TX_BUDGET, TX_BYTE_BUDGET};

pub(super) struct QueueDevice {
    /// Frames for smoltcp, each with the one socket it may reach (the
    /// engine's 4-tuple map decides, not a walk over the socket set) and
    /// that socket's pool slot.
    pub(super) rx: VecDeque<(Frame, TcpDispatch, Option<usize>)>,
    pub(super) tx: VecDeque<Frame>,
    /// Payload bytes of `tx`, against [`TX_BYTE_BUDGET`].
    pub(super) tx_bytes: usize,
    /// Buffers of received frames, back from smoltcp.
    pub(super) rx_done: Vec<Vec<u8>>,
    /// Buffers for frames smoltcp builds.
    pub(super) tx_pool: Vec<Vec<u8>>,
}

pub(super) struct RxToken<'a> {
    frame: Frame,
    done: &'a mut Vec<Vec<u8>>,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(self.frame.data());
        if self.done.len() < MAX_POOLED {
            self.done.push(self.frame.buf);
        }
        r
    }
}

pub(super) struct TxToken<'a> {
    tx: &'a mut VecDeque<Frame>,
    pool: &'a mut Vec<Vec<u8>>,
    bytes: &'a mut usize,
    meta: PacketMeta,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        crate::bytes::extend_zeroed(&mut buf, HEADROOM + len);
        *self.bytes += len;
        let r = f(&mut buf[HEADROOM..]);
        self.tx.push_back(Frame {
            buf,
            start: HEADROOM,
            gso: self.meta.segmentation_offload_size.map(|s| s.get()),
        });
        r
    }
    fn set_meta(&mut self, meta: PacketMeta) {
        self.meta = meta;
    }
}

impl QueueDevice {
    /// A round's transmit budget is spent (see [`TX_BUDGET`]).
    fn full(&self) -> bool {
        self.tx.len() >= TX_BUDGET || self.tx_bytes >= TX_BYTE_BUDGET
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _ts: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        if self.full() {
            return None;
        }
        let (frame, _, _) = self.rx.pop_front()?;
        Some((
            RxToken {
                frame,
                done: &mut self.rx_done,
            },
            TxToken {
                tx: &mut self.tx,
                pool: &mut self.tx_pool,
                bytes: &mut self.tx_bytes,
                meta: PacketMeta::default(),
            },
        ))
    }

    fn transmit(&mut self, _ts: Instant) -> Option<TxToken<'_>> {
        // Like a NIC's full transmit ring: refuse beyond a round's budget, so
        // smoltcp's egress loop (it repeats while any socket emits) always
        // ends, whatever a socket does.
        if self.full() {
            return None;
        }
        Some(TxToken {
            tx: &mut self.tx,
            pool: &mut self.tx_pool,
            bytes: &mut self.tx_bytes,
            meta: PacketMeta::default(),
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = ETHERNET_MTU;
        let mut csum = ChecksumCapabilities::default();
        // TCP checksums are the kernel's job in both directions (vnet
        // header); the TAP shell verifies frames the kernel did not vouch for.
        csum.tcp = Checksum::None;
        caps.checksum = csum;
        caps.segmentation.tcpv4 = NonZeroUsize::new(TSO_MAX_FRAME);
        caps
    }
}
