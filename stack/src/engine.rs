//! The node's TCP engine, sans-IO: smoltcp's `Interface`, the socket pool and
//! the per-connection bookkeeping of replication, over in-memory frame queues.
//!
//! Frames come in with [`Engine::handle_lan_frame`] (from the TAP) and
//! [`Engine::handle_peer_frame`] (client frames forwarded by the ingress
//! node); [`Engine::poll`] runs smoltcp and the [`Service`] on every
//! connection that changed; frames go out through
//! [`Engine::poll_lan_transmit`] (to the TAP) and [`Engine::poll_forward`]
//! (to the primary). Time is passed in. The TAP shell (`runtime`) and the
//! deterministic simulation both drive this same type.
//!
//! # Modes (per service address)
//! - [`Role::Simplex`]: serve alone.
//! - [`Role::Ingress`] (the paper's backup): own the address on the LAN. Each
//!   client segment is fed first to a *shadow* socket — with its ACK (and SACK
//!   edges) moved into the shadow's sequence space — and only once the shadow
//!   has acknowledged the segment's bytes is the original forwarded to the
//!   primary. So every byte the primary acknowledges is held here. The
//!   shadow's output is observed (its ISN, its ACK) and discarded; at a
//!   takeover smoltcp's clock jumps past its retransmission timers so it
//!   resends what the client has not acknowledged at once.
//! - [`Role::Primary`]: take client frames only from the ingress node, never
//!   from the LAN; never send ARP (the client must keep sending to the
//!   ingress node); learn the client's MAC from forwarded frames.
//!
//! # Sequence alignment
//! The primary's ISN is learned from the client's first ACK (which the
//! ingress node sees before the primary does): `offset = ack - 1 - shadow_isn`.
//! Client ACK/SACK into the shadow: `- offset`; after a takeover, the
//! shadow's SEQ onto the wire: `+ offset`. Both stacks are smoltcp with the
//! same configuration, so MSS, window scale and SACK-permitted agree, and
//! neither uses timestamps.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant as StdInstant};

use managed::ManagedSlice;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, TcpDispatch};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium, PacketMeta};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint,
    IpListenEndpoint, Ipv4Address,
};

use crate::runtime::StackConfig;
use crate::seg::{self, Seg, ACK, RST, SYN};
use crate::vnet::VNET_HDR_LEN;

mod buffers;
mod dispatch;
mod ready;
mod rejoin;
pub mod slab;
use buffers::SendBuffers;
use ready::Ready;
pub use slab::RxSlab;

/// ARP probes (sender 0.0.0.0) and answers to probes (target 0.0.0.0):
/// the only frames a node sends while its role is unconfirmed.
fn is_probe_traffic(frame: &[u8]) -> bool {
    crate::arp::parse(frame).is_some_and(|a| {
        a.sender_ip == Ipv4Address::UNSPECIFIED || a.target_ip == Ipv4Address::UNSPECIFIED
    })
}

/// Bytes kept free in front of every frame, for the TAP's vnet header.
pub const HEADROOM: usize = VNET_HDR_LEN;
/// Ethernet MTU toward the LAN (IP MTU 1500 + 14).
pub const ETHERNET_MTU: usize = 1514;
/// Largest frame built for the kernel to segment (Ethernet header included).
pub const TSO_MAX_FRAME: usize = 14 + 65_535;
/// Listeners kept armed ahead of demand. Only sockets in use live in the
/// smoltcp `SocketSet`: smoltcp walks every socket on every poll.
pub const SPARE_LISTENERS: usize = 16;
/// A connection's receive buffer empty this long has its pages released.
pub const RX_RELEASE_AFTER: Duration = Duration::from_secs(2);
/// Receive buffers released per round at most.
const RX_RELEASE_BATCH: usize = 1024;
/// Client segments held per shadow connection while their ACK is ahead of
/// the bytes the shadow has queued; beyond this they are dropped (the client
/// retransmits).
pub const MAX_HELD: usize = 256;
/// Out-of-order client segments kept per shadow connection for forwarding.
pub const MAX_DEFERRED: usize = 64;
/// SACK ranges remembered per shadow connection (smoltcp's assembler holds
/// at most 8 out-of-order runs: `assembler-max-segment-count-8`).
const MAX_SACKED: usize = 8;
/// Whether a rate-limited warning last logged at `last` may be logged again
/// at `now` (and if so, records `now`).
fn warning_due(last: &mut Option<StdInstant>, now: StdInstant) -> bool {
    if last.is_some_and(|t| now.saturating_duration_since(t) < FLOOD_WARN_INTERVAL) {
        return false;
    }
    *last = Some(now);
    true
}

/// At most one warning of each kind (half-open bound, per-source limit)
/// per this interval.
const FLOOD_WARN_INTERVAL: Duration = Duration::from_secs(10);
/// Frames smoltcp may emit in one round before the device refuses more.
const TX_BUDGET: usize = 4096;
/// Bytes smoltcp may emit in one round: a client with a wide window would
/// otherwise have the whole window built in one round (megabytes), and a
/// round is what stands between two heartbeats and two looks at the clock.
const TX_BYTE_BUDGET: usize = 1 << 20;
/// Spare frame buffers kept for reuse.
const MAX_POOLED: usize = 512;
/// How often the primary refreshes a client's neighbour entry.
const NEIGHBOR_REFRESH: Duration = Duration::from_secs(20);
const MAX_NEIGHBORS: usize = 256;
/// Split-brain guard: before claiming the address, the primary probes for
/// it this many times, this far apart; an answer means the ingress node is
/// alive (only the link failed) and the primary must stand down.
///
/// The claim comes one interval after the last probe: 36 ms after the
/// heartbeat timeout, which is what a frozen owner costs its clients beyond
/// the timeout (the target is 50 ms). A live owner answers a probe in the
/// round that reads it (rounds are bounded: see `TX_BYTE_BUDGET`), well
/// within that; a node that was paused does not need the probes to catch
/// it: it notices the pause itself (`NodeCore::check_paused`: no heartbeat
/// for the timeout) and stays silent until it has probed in turn.
pub const CLAIM_PROBES: u32 = 3;
pub const CLAIM_PROBE_INTERVAL: Duration = Duration::from_millis(12);
/// After claiming the address, the announcement is repeated this many
/// times, 100 ms, 200 ms, 400 ms … apart: one lost gratuitous ARP must not
/// leave a client sending to the dead node's MAC until its neighbour entry
/// expires (keepalived repeats its gratuitous ARPs for the same reason).
const REANNOUNCE: u32 = 5;
const REANNOUNCE_FIRST: Duration = Duration::from_millis(100);
/// How far smoltcp's clock jumps at a takeover (claim or promotion):
/// beyond the minimum RTO (1 s) and two backoffs of it.
const CLAIM_CLOCK_JUMP: Duration = Duration::from_secs(5);

/// The primary's claim of the address after losing its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    None,
    Probing {
        sent: u32,
        next_at: Option<StdInstant>,
    },
    /// The ingress node answered: it owns the address and the connections.
    Fenced,
}

/// A client TCP 4-tuple as seen from the node: (client address, client port, local port).
pub type Tuple = (Ipv4Address, u16, u16);

/// An Ethernet frame in a buffer with headroom: the frame is `buf[start..]`.
#[derive(Debug, Clone)]
pub struct Frame {
    pub buf: Vec<u8>,
    pub start: usize,
    /// Segment size the device should cut this frame into (TSO), if any.
    pub gso: Option<u16>,
}

impl Frame {
    /// A frame copied from `data`, with headroom.
    pub fn copy_from(data: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(HEADROOM + data.len());
        crate::bytes::extend_zeroed(&mut buf, HEADROOM);
        buf.extend_from_slice(data);
        Frame {
            buf,
            start: HEADROOM,
            gso: None,
        }
    }
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }
}

/// What a node does for one service address: the one role type of the
/// engine, the protocol core and the config. Promotion and claim turn
/// `Ingress` and `Primary` into `Simplex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Serve the address alone, unreplicated (no live peer).
    Simplex,
    /// Run the application for the address's connections; a peer owns the
    /// address on the LAN (hears the clients, forwards their frames).
    Primary,
    /// Own the address on the LAN (the paper's backup): shadow every
    /// connection and forward client frames to the peer that is primary.
    Ingress,
}

/// Identifies one connection for its whole life: the pool slot plus a
/// generation that changes each time the slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub slot: u32,
    pub generation: u32,
}

/// A connection's name on every node: the client's endpoint and initial
/// sequence number (which tells a reused port apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    pub client_ip: Ipv4Address,
    pub client_port: u16,
    pub client_isn: u32,
}

impl std::fmt::Display for ConnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}#{}",
            self.client_ip, self.client_port, self.client_isn
        )
    }
}

/// What the service learns about a new connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub remote: IpEndpoint,
    pub key: ConnKey,
    /// A shadow of a connection the primary serves (ingress mode).
    pub shadow: bool,
}

/// What runs on top of the engine: the HTTP server and replication glue.
pub trait Service {
    /// Per-connection state.
    type Conn;
    /// A listener completed a handshake (or a shadow did).
    fn accept(&mut self, id: ConnId, info: &ConnInfo, now: StdInstant) -> Self::Conn;
    /// The socket may have changed or the connection was woken: move bytes
    /// between the socket and the connection. Returns its next deadline.
    fn drive(
        &mut self,
        id: ConnId,
        conn: &mut Self::Conn,
        socket: &mut tcp::Socket<'_>,
        now: StdInstant,
    ) -> Option<StdInstant>;
    /// The connection is gone (closed, reset or timed out).
    fn closed(&mut self, id: ConnId, conn: Self::Conn);
    /// Connections with new work since the last call (replies arrived).
    fn woken(&mut self, out: &mut Vec<ConnId>);
    /// A shadow connection became live (takeover): serve it from now on.
    fn promote(&mut self, _id: ConnId, _conn: &mut Self::Conn, _now: StdInstant) {}
    /// Since when the connection has been idle — a keep-alive connection
    /// between requests, nothing received, owed or being written — if it
    /// is and this node decides its close (never a shadow). When new
    /// connections go beyond `max_connections`, the engine closes the
    /// oldest idle ones first.
    fn idle_since(&self, _conn: &Self::Conn) -> Option<StdInstant> {
        None
    }
    /// Close an idle connection to make room for a new client: an orderly
    /// close (a FIN after everything owed; under replication a logged
    /// close, so the shadow closes at the same byte), never a reset. The
    /// engine drives the connection in its next round. Returns whether it
    /// will close.
    fn evict_idle(&mut self, _id: ConnId, _conn: &mut Self::Conn, _now: StdInstant) -> bool {
        false
    }
}

/// Counters for status and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct EngineStats {
    pub accepted: u64,
    pub closed: u64,
    pub active: usize,
    pub time_wait_recycled: u64,
    pub duplicate_syn: u64,
    pub forwarded: u64,
    pub not_forwarded: u64,
    pub held: u64,
    pub held_dropped: u64,
    pub passed_through: u64,
    pub promoted: u64,
    /// Half-open connections now (SYN received, handshake not completed).
    pub half_open: usize,
    /// Half-open connections dropped after `half_open_timeout`.
    pub half_open_expired: u64,
    /// Half-open connections dropped, oldest first, to admit a new SYN at
    /// the `max_half_open` bound.
    pub half_open_evicted: u64,
    /// SYNs dropped because their source held `max_per_source` connections.
    pub per_source_refused: u64,
    /// Idle keep-alive connections closed, oldest idle first, because a
    /// new connection went beyond `max_connections`.
    pub idle_evicted: u64,
    /// Connections in FIN-WAIT-2 released for new ones (at
    /// `max_connections`, or when SYNs met a full socket pool).
    pub fin_wait2_reclaimed: u64,
    /// SYNs refused (RST) because no receive buffer could be had: the
    /// slab could map no arena (`engine/slab.rs`).
    pub no_rx_buffer: u64,
    /// Receive buffers of connections with nothing to read whose pages
    /// were given back (see `Engine::release_idle_rx`).
    pub rx_released: u64,
    /// Full-size send buffers lent to connections now (the others hold
    /// none: see `engine/buffers.rs`).
    pub send_buffers_lent: usize,
    /// Slots looked at by rounds so far (each ready slot once per round):
    /// what a round costs, which must follow the active connections.
    pub slots_polled: u64,
    /// Frames for the LAN not sent because this node's role was not
    /// confirmed at the time (no lease from its peer, or probing for the
    /// address): a node that may have been taken over stays silent.
    pub silenced: u64,
}

#[derive(Debug, Default)]
struct Shadow {
    /// The shadow socket's own ISN (from its SYN-ACK).
    isn: Option<u32>,
    /// wire = shadow + offset, for the server's sequence numbers.
    offset: Option<u32>,
    /// The shadow's receive point (the ACK it last emitted), client space.
    rcv_nxt: Option<u32>,
    /// Bytes the service queued into the shadow socket, and its FIN.
    written: u64,
    fin: bool,
    held: VecDeque<Frame>,
    /// Segments not yet acknowledged by the shadow: forwarded once its ACK
    /// or its SACK covers them.
    deferred: VecDeque<(Span, Frame)>,
    /// Client bytes the shadow holds beyond a hole, as its SACK blocks
    /// reported them (client space, above `rcv_nxt`). smoltcp never drops
    /// what its assembler took, so a reported range stays held.
    sacked: Vec<(u32, u32)>,
    /// The end of what the shadow has sent (its SND.NXT, own space) and
    /// the window it last advertised: what an ACK from it would carry.
    snd_end: Option<u32>,
    window: u16,
    /// Promoted: its output goes to the LAN.
    live: bool,
    /// The client sent a SYN again after the takeover: it never saw the
    /// primary's SYN-ACK, so ours may stand.
    syn_again: bool,
}

impl Shadow {
    /// The shadow holds all of `span`: acknowledged, or — without a FIN,
    /// which smoltcp never keeps beyond a hole — inside a SACKed range.
    fn holds(&self, span: Span) -> bool {
        if self.rcv_nxt.is_some_and(|r| seg::seq_ge(r, span.end)) {
            return true;
        }
        !span.fin
            && self
                .sacked
                .iter()
                .any(|&(l, r)| seg::seq_ge(span.start, l) && seg::seq_ge(r, span.end))
    }

    /// Remember a SACK block the shadow sent.
    fn note_sack(&mut self, (l, r): (u32, u32)) {
        if seg::seq_ge(l, r) {
            return;
        }
        // Merge with every range it touches.
        let (mut l, mut r) = (l, r);
        self.sacked.retain(|&(a, b)| {
            let touches = seg::seq_ge(b, l) && seg::seq_ge(r, a);
            if touches {
                if seg::seq_ge(l, a) {
                    l = a;
                }
                if seg::seq_ge(b, r) {
                    r = b;
                }
            }
            !touches
        });
        if self.sacked.len() >= MAX_SACKED {
            // Forgetting a range only delays forwarding until the ACK.
            self.sacked.remove(0);
        }
        self.sacked.push((l, r));
    }

    /// The receive point moved: ranges below it are acknowledged now.
    fn prune_sacked(&mut self) {
        if let Some(rcv) = self.rcv_nxt {
            self.sacked.retain(|&(_, r)| !seg::seq_ge(rcv, r));
        }
    }

    /// How a client segment (not a SYN) may enter the shadow socket, in
    /// both modes: the first ACK teaches the offset; a segment whose ACK is
    /// beyond the shadow's queued data is held (smoltcp would drop it,
    /// payload included, as "unacceptable") and so is everything after it,
    /// to keep the order.
    fn admission(&mut self, s: &Seg) -> Admission {
        if self.offset.is_none() && s.has(ACK) {
            match self.isn {
                Some(isn) => self.offset = Some(s.ack.wrapping_sub(1).wrapping_sub(isn)),
                // Our shadow never answered the SYN: nothing to align to.
                None if !self.live => return Admission::Drop,
                None => {}
            }
        }
        if !self.held.is_empty() {
            return Admission::Hold;
        }
        let off = self.offset.filter(|_| s.has(ACK));
        if let Some(off) = off {
            let ack = s.ack.wrapping_sub(off);
            if self.queued_end().is_some_and(|end| !seg::seq_ge(end, ack)) {
                // The client acknowledges bytes the primary sent that we
                // have not queued yet.
                return Admission::Hold;
            }
        }
        Admission::Ready(off)
    }

    /// End of the shadow's queued data in its own sequence space: an ACK
    /// beyond it would make smoltcp drop the whole segment, payload included.
    fn queued_end(&self) -> Option<u32> {
        let isn = self.isn?;
        Some(
            isn.wrapping_add(1)
                .wrapping_add(self.written as u32)
                .wrapping_add(u32::from(self.fin)),
        )
    }
}

#[derive(Debug)]
struct Track {
    isn: u32,
    /// The pool slot holding it, once a socket took the SYN.
    slot: Option<usize>,
    shadow: Option<Shadow>,
    /// Opened from the LAN by this node serving alone (not forwarded by
    /// an owner): after a rejoin as primary, its frames may still reach
    /// this node on the LAN until the owner's announcement reaches the
    /// client, and are taken (see `admit`).
    local: bool,
}

/// See [`Shadow::admission`].
#[derive(Debug, Clone, Copy)]
enum Admission {
    /// Into the shadow, its ACK and SACK moved back by this offset (if any).
    Ready(Option<u32>),
    /// Keep it until the shadow's data catches up.
    Hold,
    Drop,
}

/// Move a client segment's ACK and SACK edges into the shadow's space.
fn translate_ack(f: &mut Frame, s: &Seg, off: Option<u32>) {
    if let Some(off) = off {
        seg::set_ack(f.data_mut(), s, s.ack.wrapping_sub(off));
        seg::shift_sack(f.data_mut(), s, off);
    }
}

/// The client sequence space a segment occupies.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
    fin: bool,
}

#[derive(Debug, Clone, Copy)]
enum FwdRule {
    /// SYN: only if a shadow socket took it.
    Syn,
    /// Data or FIN: only once the shadow holds it (see [`Shadow::holds`]).
    Covered(Span),
    /// Pure ACK, RST: always.
    Always,
}

struct QueueDevice {
    /// Frames for smoltcp, each with the one socket it may reach (the
    /// engine's 4-tuple map decides, not a walk over the socket set) and
    /// that socket's pool slot.
    rx: VecDeque<(Frame, TcpDispatch, Option<usize>)>,
    tx: VecDeque<Frame>,
    /// Payload bytes of `tx`, against [`TX_BYTE_BUDGET`].
    tx_bytes: usize,
    /// Buffers of received frames, back from smoltcp.
    rx_done: Vec<Vec<u8>>,
    /// Buffers for frames smoltcp builds.
    tx_pool: Vec<Vec<u8>>,
}

struct RxToken<'a> {
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

struct TxToken<'a> {
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

enum Phase<C> {
    /// Listening, or half-open (SYN received) with the client's tuple and
    /// when the handshake began.
    Listening {
        half_open: Option<Tuple>,
        since: Option<StdInstant>,
    },
    Active(Active<C>),
    /// Closed by the service, smoltcp still in TIME-WAIT. The tuple's track
    /// stays until the socket is released, so a shadow's late output is
    /// still translated (or discarded).
    Lingering {
        tuple: Tuple,
    },
}

struct Slot<C> {
    handle: SocketHandle,
    phase: Phase<C>,
    /// In [`Pool::listeners`]: listening, free for the next SYN.
    listed: bool,
}

struct Active<C> {
    conn: C,
    tuple: Tuple,
    deadline: Option<StdInstant>,
    /// (recv_queue, send_queue, state) when last driven: drive again only
    /// when this changes, the connection is woken, or its deadline passes.
    seen: (usize, usize, tcp::State),
    woken: bool,
    /// In [`Pool::rx_release`] (at most once).
    release_queued: bool,
}

/// The sockets in use, in a slab whose indices are [`ConnId::slot`]s.
struct Pool<C> {
    slots: Vec<Option<Slot<C>>>,
    generations: Vec<u32>,
    free: Vec<usize>,
    /// Where the sockets' receive buffers come from, and go back to when
    /// a socket is released (see `engine/slab.rs`).
    rx: &'static RxSlab,
    in_use: usize,
    /// Free listeners (slots in LISTEN), each given at most one SYN.
    listeners: Vec<usize>,
    /// Half-open slots by when their handshake began: the oldest is the
    /// one dropped at the `max_half_open` bound.
    half_open: BTreeSet<(StdInstant, usize)>,
    /// Slots in TIME-WAIT, recycled (lowest first) when the pool is full.
    lingering: BTreeSet<usize>,
    /// Which slots a round must look at (see `ready.rs`).
    ready: Ready,
    /// Connections whose receive buffer was empty after a drive: (when
    /// to look again, slot, generation). If it is still empty then, its
    /// pages are released (`Engine::release_idle_rx`).
    rx_release: BinaryHeap<Reverse<(StdInstant, usize, u32)>>,
    /// Send buffers, lent while a connection sends (see `buffers.rs`).
    tx: SendBuffers,
}

/// A new socket with a receive buffer from `rx`; `None` if the slab has
/// no room (no arena could be mapped).
fn new_socket(rx: &'static RxSlab, mode: Role) -> Option<tcp::Socket<'static>> {
    let rx = tcp::SocketBuffer::new(rx.alloc()?);
    // No send buffer until the service may write (`buffers.rs`).
    let mut s = tcp::Socket::new(rx, buffers::empty());
    // Request/response: send a reply's tail at once.
    s.set_nagle_enabled(false);
    if mode == Role::Ingress {
        // A shadow must acknowledge each client segment at once: that ACK is
        // what tells us the segment is held here and may go to the primary.
        s.set_ack_delay(None);
    }
    Some(s)
}

fn listen(s: &mut tcp::Socket<'_>, port: u16) {
    if let Err(e) = s.listen(IpListenEndpoint { addr: None, port }) {
        // Only fails on port 0 or an open socket: both are bugs here.
        unreachable!("listen on a closed socket failed: {e}");
    }
}

fn tuple_of(s: &tcp::Socket<'_>, port: u16) -> Option<Tuple> {
    match s.remote_endpoint()? {
        IpEndpoint {
            addr: IpAddress::Ipv4(a),
            port: p,
        } => Some((a, p, port)),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The engine: one service address, its sockets and their replication state.
pub struct Engine<C> {
    cfg: StackConfig,
    mode: Role,
    iface: Interface,
    sockets: SocketSet<'static>,
    dev: QueueDevice,
    start: StdInstant,
    pool: Pool<C>,
    tracks: BTreeMap<Tuple, Track>,
    /// Tracked tuples per client address (the per-source limit), so that a
    /// SYN costs O(1), not a count over that source's connections.
    per_source: HashMap<Ipv4Address, usize>,
    /// Shadow tuples with client segments waiting to be forwarded.
    deferring: BTreeSet<Tuple>,
    lan_in: VecDeque<Frame>,
    peer_in: VecDeque<Frame>,
    lan_out: VecDeque<Frame>,
    fwd_out: VecDeque<Frame>,
    pending_fwd: Vec<(Tuple, Frame, FwdRule)>,
    pending_syn: Vec<Tuple>,
    neighbors: BTreeMap<Ipv4Address, (EthernetAddress, StdInstant)>,
    woken_ids: Vec<ConnId>,
    stats: EngineStats,
    claim: Claim,
    /// The peer confirmed this node's role recently enough (set by the
    /// node core each round): a primary without it sends nothing to
    /// clients, since its peer may have taken the connections over.
    lease: bool,
    /// An ingress node's probes went unanswered: promote (taken once).
    probed: bool,
    /// This node is stopping (a planned stop): nothing more on the LAN.
    leaving: bool,
    /// `admit` is taking frames from the LAN (not from the peer's link).
    admitting_lan: bool,
    /// Rejoined after standing by: drop the stale connections at the
    /// next poll.
    reset_pending: Option<rejoin::Stale>,
    /// Announcements still to repeat after a claim, and when the next is due.
    reannounce: Option<(u32, StdInstant)>,
    /// Added to smoltcp's clock. Claiming the address advances it once so
    /// every pending retransmission timer fires at once (see `claim_tick`).
    clock_skew: Duration,
    /// The time of the current (or last) poll.
    last_poll: StdInstant,
    /// When the half-open warning was last logged.
    flood_warned: Option<StdInstant>,
    /// When the per-source warning was last logged.
    source_warned: Option<StdInstant>,
    /// When the idle-eviction warning was last logged.
    evict_warned: Option<StdInstant>,
    /// The half-open warning was logged and the SYN queue has not drained
    /// since.
    flood_on: bool,
    /// Connections closed to make room that still hold their slot.
    evicted: BTreeSet<ConnId>,
}

impl<C> Engine<C> {
    /// Build the engine; `start` is time zero for smoltcp.
    pub fn new(cfg: StackConfig, mode: Role, start: StdInstant) -> Self {
        let rx = RxSlab::shared(cfg.rx_buffer_bytes);
        Self::with_rx_slab(cfg, mode, start, rx)
    }

    /// Build the engine with its receive buffers from `rx` (of
    /// `cfg.rx_buffer_bytes` each) rather than the process's shared slab
    /// for that size: a test bounds it.
    pub fn with_rx_slab(
        cfg: StackConfig,
        mode: Role,
        start: StdInstant,
        rx: &'static RxSlab,
    ) -> Self {
        assert_eq!(
            rx.buffer_len(),
            cfg.rx_buffer_bytes,
            "receive-buffer slab of the wrong size"
        );
        let mut dev = QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            rx_done: Vec::new(),
            tx_bytes: 0,
            tx_pool: Vec::new(),
        };
        let mut icfg = Config::new(HardwareAddress::Ethernet(cfg.mac));
        icfg.random_seed = cfg.seed;
        let mut iface = Interface::new(icfg, &mut dev, Instant::from_micros(0));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::Ipv4(cfg.address));
        });
        if let Some(gw) = cfg.gateway {
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        let tx_size = cfg.tx_buffer_bytes;
        let mut e = Engine {
            cfg,
            mode,
            iface,
            sockets: SocketSet::new(Vec::new()),
            dev,
            start,
            pool: Pool {
                slots: Vec::new(),
                generations: Vec::new(),
                free: Vec::new(),
                rx,
                rx_release: BinaryHeap::new(),
                in_use: 0,
                listeners: Vec::new(),
                half_open: BTreeSet::new(),
                lingering: BTreeSet::new(),
                ready: Ready::default(),
                tx: SendBuffers::new(tx_size),
            },
            tracks: BTreeMap::new(),
            per_source: HashMap::new(),
            deferring: BTreeSet::new(),
            lan_in: VecDeque::new(),
            peer_in: VecDeque::new(),
            lan_out: VecDeque::new(),
            fwd_out: VecDeque::new(),
            pending_fwd: Vec::new(),
            pending_syn: Vec::new(),
            neighbors: BTreeMap::new(),
            woken_ids: Vec::new(),
            stats: EngineStats::default(),
            claim: Claim::None,
            lease: true,
            probed: false,
            reset_pending: None,
            leaving: false,
            admitting_lan: false,
            reannounce: None,
            clock_skew: Duration::ZERO,
            last_poll: start,
            flood_warned: None,
            source_warned: None,
            evict_warned: None,
            flood_on: false,
            evicted: BTreeSet::new(),
        };
        e.top_up();
        e
    }

    pub fn mode(&self) -> Role {
        self.mode
    }
    pub fn stats(&self) -> EngineStats {
        let mut st = self.stats;
        st.half_open = self.pool.half_open.len();
        st.send_buffers_lent = self.pool.tx.lent();
        st
    }
    pub fn config(&self) -> &StackConfig {
        &self.cfg
    }

    fn smol_now(&self, now: StdInstant) -> Instant {
        let t = now.saturating_duration_since(self.start) + self.clock_skew;
        Instant::from_micros(t.as_micros() as i64)
    }

    /// A buffer for a frame about to be read (reuses returned buffers).
    pub fn take_buffer(&mut self) -> Vec<u8> {
        self.dev
            .rx_done
            .pop()
            .or_else(|| self.dev.tx_pool.pop())
            .unwrap_or_default()
    }

    /// Give a transmitted frame's buffer back.
    pub fn recycle(&mut self, f: Frame) {
        if self.dev.tx_pool.len() < MAX_POOLED {
            self.dev.tx_pool.push(f.buf);
        }
    }

    /// A frame from the LAN (the TAP).
    pub fn handle_lan_frame(&mut self, f: Frame) {
        self.lan_in.push_back(f);
    }

    /// A client frame forwarded by the ingress node (primary mode).
    pub fn handle_peer_frame(&mut self, f: Frame) {
        self.peer_in.push_back(f);
    }

    /// Next frame for the LAN. While the node's role is not confirmed
    /// (see [`Engine::set_lease`], [`Engine::probe_before_promote`]) only
    /// ARP probes and answers to probes leave: a node that was paused must
    /// not speak first.
    pub fn poll_lan_transmit(&mut self) -> Option<Frame> {
        loop {
            let f = self.lan_out.pop_front()?;
            if !self.leaving && (!self.silent() || is_probe_traffic(f.data())) {
                return Some(f);
            }
            self.stats.silenced += 1;
            self.recycle(f);
        }
    }

    /// A planned stop: from now on nothing leaves for the LAN (an owner
    /// still takes client frames and forwards them while it runs).
    pub fn set_leaving(&mut self) {
        self.leaving = true;
    }

    /// Whether frames to clients are held back: while probing for the
    /// address, and for a primary without a current lease.
    pub fn silent(&self) -> bool {
        matches!(self.claim, Claim::Probing { .. }) || (self.mode == Role::Primary && !self.lease)
    }

    /// The node core's word on whether the peer confirmed this node's role
    /// within the heartbeat timeout. Only a primary's output depends on it.
    pub fn set_lease(&mut self, ok: bool) {
        if self.lease != ok {
            tracing::debug!(address = %self.cfg.address.address(), lease = ok, mode = ?self.mode, "lease");
        }
        self.lease = ok;
    }

    /// An ingress node whose primary seems gone, but which may itself have
    /// been paused past the timeout (its peer may have claimed the address
    /// meanwhile): probe for the address first, silent. If the primary
    /// answers, it holds the address: this node is fenced. If nobody does,
    /// [`Engine::take_probed`] says so and the caller promotes.
    pub fn probe_before_promote(&mut self) {
        if self.mode == Role::Ingress && self.claim == Claim::None {
            self.claim = Claim::Probing {
                sent: 0,
                next_at: None,
            };
        }
    }

    /// An owner's probes at start are moot: its primary says it never
    /// took the address over (its `Hello`'s epoch is 0), so nobody else
    /// holds it. Stop probing; the caller announces it.
    pub fn cancel_probe(&mut self) {
        if self.mode == Role::Ingress && matches!(self.claim, Claim::Probing { .. }) {
            self.claim = Claim::None;
        }
    }

    /// The probes of [`Engine::probe_before_promote`] went unanswered
    /// (once).
    pub fn take_probed(&mut self) -> bool {
        std::mem::take(&mut self.probed)
    }

    /// Probing for the address (a claim, or an owner's check before it
    /// promotes or announces): its outcome is not known yet.
    pub fn probing(&self) -> bool {
        matches!(self.claim, Claim::Probing { .. })
    }

    /// Whether [`Engine::take_probed`] would say so (without taking it).
    pub fn probed(&self) -> bool {
        self.probed
    }

    /// Next client frame to forward to the primary (ingress mode).
    pub fn poll_forward(&mut self) -> Option<Frame> {
        self.fwd_out.pop_front()
    }

    /// How long until smoltcp or a connection needs a poll.
    pub fn poll_delay(&mut self, now: StdInstant) -> Option<Duration> {
        // The timer heaps hold every socket's `poll_at` and every
        // deadline: no walk over the pool.
        let t = self.smol_now(now).total_micros();
        let mut wait = self
            .pool
            .ready
            .next_timer()
            .map(|at| Duration::from_micros(at.saturating_sub(t).max(0) as u64));
        if let Some(d) = self.pool.ready.next_deadline() {
            let d = d.saturating_duration_since(now);
            wait = Some(wait.map_or(d, |w| w.min(d)));
        }
        if !self.lan_in.is_empty()
            || !self.peer_in.is_empty()
            || !self.dev.rx.is_empty()
            || self.pool.ready.any()
        {
            wait = Some(Duration::ZERO);
        }
        if let Claim::Probing { next_at, .. } = self.claim {
            let d = next_at.map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
            wait = Some(wait.map_or(d, |w| w.min(d)));
        }
        if let Some((_, at)) = self.reannounce {
            let d = at.saturating_duration_since(now);
            wait = Some(wait.map_or(d, |w| w.min(d)));
        }
        wait
    }

    /// Announce the service address (gratuitous ARP).
    pub fn announce(&mut self) {
        let f = crate::arp::gratuitous(self.cfg.mac, self.cfg.address.address());
        self.lan_out.push_back(Frame::copy_from(&f));
    }

    /// The ingress node seems gone: probe for the address, then serve it
    /// ourselves — unless someone answers the probe, in which case the
    /// ingress node is alive (the link alone failed), it has taken over,
    /// and this node is fenced: it must send nothing more.
    pub fn claim(&mut self) {
        if self.mode == Role::Primary && self.claim == Claim::None {
            self.claim = Claim::Probing {
                sent: 0,
                next_at: None,
            };
        }
    }

    /// The ingress node said it is leaving (a planned stop, on the
    /// authenticated link): it answers nothing any more, so claim the
    /// address at the next round, without the probes.
    pub fn claim_now(&mut self) {
        if self.mode == Role::Primary && self.claim == Claim::None {
            self.claim = Claim::Probing {
                sent: CLAIM_PROBES,
                next_at: None,
            };
        }
    }

    /// The ingress node answered our probe: stop serving for good.
    pub fn fenced(&self) -> bool {
        self.claim == Claim::Fenced
    }

    /// Gratuitous ARP for the address, and a direct ARP request to every
    /// client (or gateway) we have been talking to: not every stack takes a
    /// gratuitous ARP (smoltcp, for one, ignores ARP not aimed at its own
    /// address), but every stack learns the sender of a request addressed
    /// to it.
    fn announce_to_all(&mut self) {
        self.announce();
        let (mac, vip) = (self.cfg.mac, self.cfg.address.address());
        let known: Vec<_> = self
            .neighbors
            .iter()
            .map(|(ip, (m, _))| (*ip, *m))
            .collect();
        for (ip, their_mac) in known {
            let f = crate::arp::request_to(mac, vip, their_mac, ip);
            self.lan_out.push_back(Frame::copy_from(&f));
        }
    }

    /// Repeat the announcement after a claim, with a doubling interval.
    fn reannounce_tick(&mut self, now: StdInstant) {
        let Some((left, at)) = self.reannounce else {
            return;
        };
        if at > now {
            return;
        }
        self.announce_to_all();
        let sent = REANNOUNCE - left + 1;
        self.reannounce = (left > 1).then(|| (left - 1, now + REANNOUNCE_FIRST * (1 << sent)));
    }

    fn claim_tick(&mut self, now: StdInstant) {
        let Claim::Probing { sent, next_at } = self.claim else {
            return;
        };
        if next_at.is_some_and(|t| t > now) {
            return;
        }
        if sent < CLAIM_PROBES {
            let f = crate::arp::probe(self.cfg.mac, self.cfg.address.address());
            self.lan_out.push_back(Frame::copy_from(&f));
            self.claim = Claim::Probing {
                sent: sent + 1,
                next_at: Some(now + CLAIM_PROBE_INTERVAL),
            };
        } else if self.mode == Role::Ingress {
            tracing::info!(
                connections = self.stats.active,
                "no answer to probes: the address is still ours"
            );
            self.claim = Claim::None;
            self.probed = true;
        } else {
            tracing::info!(
                connections = self.stats.active,
                "no answer to probes: claiming the service address"
            );
            self.claim = Claim::None;
            self.mode = Role::Simplex;
            // Every connection is this node's alone now; after a rejoin its
            // clients may keep sending here until the owner's announcement
            // takes (Linux ignores an ARP update within `locktime`, 1 s, of
            // the last): see `serves_from_lan`.
            for tr in self.tracks.values_mut() {
                tr.local = true;
            }
            self.announce_to_all();
            self.reannounce = Some((REANNOUNCE, now + REANNOUNCE_FIRST));
            // The client has been acknowledging to the dead ingress node:
            // our data reached it, its ACKs did not reach us. Rather than
            // wait for smoltcp's retransmission timer (1 s at least, more
            // after a backoff), move smoltcp's clock past it once: every
            // socket with unacknowledged data retransmits now, and the
            // client's ACK, arriving here after the gratuitous ARP, catches
            // us up. Karn's rule keeps these retransmissions out of the RTT
            // estimate.
            self.clock_skew += CLAIM_CLOCK_JUMP;
            self.mark_all();
        }
    }

    /// The primary is gone: every shadow connection becomes live, and at
    /// once retransmits what the client has not acknowledged.
    pub fn promote<S: Service<Conn = C>>(&mut self, service: &mut S, now: StdInstant) {
        if self.mode != Role::Ingress {
            return;
        }
        self.mode = Role::Simplex;
        // A shadow "sent" its data into the void while the primary lived, so
        // its sender is as far as the primary's was, or further; what the
        // client has not acknowledged must go out again, now. Rather than
        // wait for smoltcp's retransmission timers (1 s at least), move its
        // clock past them once: every shadow with unacknowledged data
        // retransmits from the client's last ACK on (Karn's rule keeps these
        // out of the RTT estimate).
        self.clock_skew += CLAIM_CLOCK_JUMP;
        let mut acks = Vec::new();
        for (tuple, tr) in self.tracks.iter_mut() {
            let Some(sh) = tr.shadow.as_mut() else {
                continue;
            };
            sh.live = true;
            // Held segments are admitted again, now in live mode.
            while let Some(f) = sh.held.pop_back() {
                self.lan_in.push_front(f);
            }
            // The client's data has gone unacknowledged since the primary
            // died (its ACKs went down with it): tell the client at once
            // what we hold, or it waits for its retransmission timer, backed
            // off by now — an upload would sit still for a second or more.
            if let (Some(off), Some(rcv), Some(end)) = (sh.offset, sh.rcv_nxt, sh.snd_end) {
                acks.push((*tuple, end.wrapping_add(off), rcv, sh.window));
            }
        }
        for ((client, client_port, port), seq, ack, window) in acks {
            let Some(mac) = self.next_hop_mac(client) else {
                continue;
            };
            let f = seg::build(
                self.cfg.mac,
                mac,
                self.cfg.address.address(),
                client,
                port,
                client_port,
                seq,
                ack,
                ACK,
                window,
            );
            // (Its TCP checksum is the shell's to fill, as for every frame.)
            self.lan_out.push_back(Frame::copy_from(&f));
        }
        for i in 0..self.pool.slots.len() {
            let id = self.pool.id(i);
            if let Some(Slot {
                phase: Phase::Active(a),
                ..
            }) = self.pool.slots[i].as_mut()
            {
                let shadow = self
                    .tracks
                    .get(&a.tuple)
                    .is_some_and(|t| t.shadow.is_some());
                if shadow {
                    service.promote(id, &mut a.conn, now);
                    a.woken = true;
                    self.stats.promoted += 1;
                }
            }
        }
        // The clock jumped: every socket's timers are looked at now (once).
        self.mark_all();
    }

    /// One round: admit queued frames, run smoltcp, route its output, drive
    /// the connections. Returns whether anything moved (call again at once).
    pub fn poll<S: Service<Conn = C>>(&mut self, service: &mut S, now: StdInstant) -> bool {
        if self.claim == Claim::Fenced {
            self.lan_in.clear();
            self.peer_in.clear();
            self.lan_out.clear();
            return false;
        }
        self.last_poll = now;
        if let Some(which) = self.reset_pending.take() {
            self.drop_silently(service, which);
        }
        self.claim_tick(now);
        self.reannounce_tick(now);
        let mut busy = !self.lan_in.is_empty() || !self.peer_in.is_empty();
        self.reclaim_for_syns(service);
        self.admit(now);
        let t = self.smol_now(now);
        if self.ingress(t) {
            busy = true;
        }
        self.pool.ready.fire(t.total_micros(), now);

        self.woken_ids.clear();
        service.woken(&mut self.woken_ids);
        for id in std::mem::take(&mut self.woken_ids) {
            let i = id.slot as usize;
            if self.pool.generations.get(i) == Some(&id.generation) {
                if let Some(Slot {
                    phase: Phase::Active(a),
                    ..
                }) = self.pool.slots[i].as_mut()
                {
                    a.woken = true;
                    self.pool.ready.mark(i);
                }
            }
        }
        // Only the ready slots: those a frame reached, whose service was
        // woken, or whose timer came due (see `ready.rs`).
        let ready = self.pool.ready.take();
        self.stats.slots_polled += ready.len() as u64;
        if self.egress(t, &ready) {
            busy = true;
        }
        if self.route_output() {
            busy = true;
        }
        self.decide_forwarding();
        for &i in &ready {
            if self.step_slot(i, service, now) {
                busy = true;
            }
            self.schedule(i, now);
        }
        self.pool.ready.give_back(ready);
        self.release_idle_rx(now);
        if self.enforce_max_connections(service, now) {
            busy = true;
        }
        // SYNs that found no listener (refused at the pool limit) or whose
        // handshake already failed no longer occupy their tuple.
        for t in std::mem::take(&mut self.pending_syn) {
            let taken = self.tracks.get(&t).and_then(|tr| tr.slot).is_some_and(|i| {
                self.pool.slots[i].as_ref().is_some_and(|s| match &s.phase {
                    Phase::Listening { half_open, .. } => *half_open == Some(t),
                    Phase::Active(a) => a.tuple == t,
                    Phase::Lingering { tuple } => *tuple == t,
                })
            });
            if !taken && self.tracks.contains_key(&t) {
                tracing::trace!(client = %t.0, port = t.1, "SYN found no socket: track dropped");
                self.untrack(&t);
            }
        }
        self.flood_over_check();
        self.top_up();
        // Rebalance buffers between the receive and transmit pools.
        while self.dev.tx_pool.len() < 64 {
            match self.dev.rx_done.pop() {
                Some(b) => self.dev.tx_pool.push(b),
                None => break,
            }
        }
        busy
    }

    // ---- admission -------------------------------------------------------

    /// Sockets this engine may hold (listeners, half-open, open, lingering):
    /// `max_connections` bounds the connections, and the SYN queue
    /// (`max_half_open`) and the armed listeners have their own room beyond
    /// it — as the kernel's SYN queue is apart from nginx's connections —
    /// so a SYN, spoofed or not, never costs an open connection: a new
    /// connection makes room only once its handshake is complete (see
    /// `enforce_max_connections`). The ingress node shadows the primary's
    /// connections and sees each SYN first, and the shadow of a connection
    /// the primary closed to make room closes a round trip later: its pool
    /// has a second SYN queue's room, so it never refuses a SYN the
    /// primary takes. After a promotion it is a simplex node's.
    fn pool_limit(&self) -> usize {
        let queue = match self.mode {
            Role::Ingress => self.cfg.max_half_open.saturating_mul(2),
            Role::Simplex | Role::Primary => self.cfg.max_half_open,
        };
        self.cfg
            .max_connections
            .saturating_add(queue)
            .saturating_add(SPARE_LISTENERS)
    }

    /// SYNs meeting a full socket pool: release connections in FIN-WAIT-2
    /// for them first (see `reclaim_fin_wait2`).
    fn reclaim_for_syns<S: Service<Conn = C>>(&mut self, service: &mut S) {
        if self.pool.in_use < self.pool_limit() {
            return;
        }
        let syns = self.new_syns_waiting();
        let free = self.free_listeners();
        if syns > free {
            self.reclaim_fin_wait2(service, syns - free);
        }
    }

    /// More connections than `max_connections` (new ones completed their
    /// handshake): close the oldest idle keep-alive connections for them,
    /// as nginx does — only where this node decides (never a shadow) — after
    /// releasing those in FIN-WAIT-2. Connections already closing for
    /// earlier ones count. With nothing idle the bound is exceeded for a
    /// while, by at most the SYN queue's room: then the socket pool is full
    /// and SYNs are refused. Returns whether it closed anything.
    fn enforce_max_connections<S: Service<Conn = C>>(
        &mut self,
        service: &mut S,
        now: StdInstant,
    ) -> bool {
        // Evicted connections that have released their slot, or moved on
        // to TIME-WAIT (recycled at once at a full pool).
        let pool = &self.pool;
        let sockets = &self.sockets;
        self.evicted.retain(|id| {
            let i = id.slot as usize;
            pool.generations.get(i) == Some(&id.generation)
                && pool.slots[i].as_ref().is_some_and(|s| {
                    matches!(s.phase, Phase::Active(_))
                        && sockets.get::<tcp::Socket>(s.handle).state() != tcp::State::TimeWait
                })
        });
        if self.mode == Role::Ingress {
            return false;
        }
        let over = self.stats.active.saturating_sub(self.cfg.max_connections);
        let mut want = over.saturating_sub(self.evicted.len());
        if want == 0 {
            return false;
        }
        // An evicted client that never closes its end no longer counts as
        // making room: release it, and whoever else sits in FIN-WAIT-2.
        let reclaimed = self.reclaim_fin_wait2(service, want);
        want -= reclaimed;
        if want == 0 {
            return true;
        }
        // The idle connections, oldest idle first. Idle for the engine too:
        // nothing unread, nothing unacknowledged in the socket.
        let mut idle: Vec<(StdInstant, usize)> = Vec::new();
        for (i, slot) in self.pool.slots.iter().enumerate() {
            let Some(Slot {
                handle,
                phase: Phase::Active(a),
                ..
            }) = slot
            else {
                continue;
            };
            let sock = self.sockets.get::<tcp::Socket>(*handle);
            if sock.state() != tcp::State::Established
                || sock.recv_queue() != 0
                || sock.send_queue() != 0
                || self.evicted.contains(&self.pool.id(i))
            {
                continue;
            }
            if let Some(t) = service.idle_since(&a.conn) {
                idle.push((t, i));
            }
        }
        idle.sort_unstable();
        let mut closed = 0;
        for (_, i) in idle {
            if closed == want {
                break;
            }
            let id = self.pool.id(i);
            if let Some(Slot {
                phase: Phase::Active(a),
                ..
            }) = self.pool.slots[i].as_mut()
            {
                if service.evict_idle(id, &mut a.conn, now) {
                    // Driven next round (`poll` reports itself busy): its
                    // close goes out, or is logged, then.
                    a.woken = true;
                    self.pool.ready.mark(i);
                    self.evicted.insert(id);
                    self.stats.idle_evicted += 1;
                    closed += 1;
                }
            }
        }
        if closed > 0 {
            self.eviction_warning(over);
        }
        reclaimed + closed > 0
    }

    /// SYNs for a new tuple waiting in this round's input (from the LAN, or
    /// from the link for a primary).
    fn new_syns_waiting(&self) -> usize {
        let queue = match self.mode {
            Role::Primary => &self.peer_in,
            _ => &self.lan_in,
        };
        queue
            .iter()
            .filter_map(|f| seg::parse(f.data()))
            .filter(|s| {
                self.for_us(s)
                    && s.has(SYN)
                    && !s.has(ACK)
                    && !self.tracks.contains_key(&(s.src, s.src_port, s.dst_port))
            })
            .count()
    }

    /// At a full pool, release up to `n` connections in FIN-WAIT-2, as
    /// TIME-WAIT ones are: this node closed them and the client
    /// acknowledged the FIN, so every byte was delivered; only the client's
    /// own FIN is awaited, and a client that never sends it (smoltcp has no
    /// FIN-WAIT-2 timer) would hold the slot for good — an evicted idle
    /// connection among them. Released silently (aborted and out of the
    /// socket set before smoltcp sends anything): the client's late FIN
    /// meets an RST, as after Linux's `tcp_fin_timeout`, once its
    /// application has seen the end. Both nodes of a pair may do it on
    /// their own: nothing is left to agree on. Returns how many.
    fn reclaim_fin_wait2<S: Service<Conn = C>>(&mut self, service: &mut S, n: usize) -> usize {
        let mut done = 0;
        for i in 0..self.pool.slots.len() {
            if done == n {
                break;
            }
            let Some(slot) = self.pool.slots[i].as_mut() else {
                continue;
            };
            let Phase::Active(a) = &slot.phase else {
                continue;
            };
            let sock = self.sockets.get_mut::<tcp::Socket>(slot.handle);
            if sock.state() != tcp::State::FinWait2 {
                continue;
            }
            sock.abort();
            let tuple = a.tuple;
            let Phase::Active(a) = std::mem::replace(&mut slot.phase, Phase::Lingering { tuple })
            else {
                continue;
            };
            let id = self.pool.id(i);
            self.stats.active -= 1;
            self.stats.closed += 1;
            self.stats.fin_wait2_reclaimed += 1;
            tracing::trace!(?id, "FIN-WAIT-2 connection released for a new client");
            service.closed(id, a.conn);
            self.pool.generations[i] = self.pool.generations[i].wrapping_add(1);
            self.forget(&tuple, i);
            self.pool.release(i, &mut self.sockets);
            done += 1;
        }
        done
    }

    /// Rate-limited: an operator should know the pool is too small.
    fn eviction_warning(&mut self, over: usize) {
        if !warning_due(&mut self.evict_warned, self.last_poll) {
            return;
        }
        tracing::warn!(
            address = %self.cfg.address.address(),
            max_connections = self.cfg.max_connections,
            over,
            evicted = self.stats.idle_evicted,
            "connection pool full: oldest idle keep-alive connections closed for new clients"
        );
    }

    fn admit(&mut self, now: StdInstant) {
        // Each SYN is given one free listener (`open_track`); with none
        // free, it waits for the next round, when the pool has armed more
        // — unless the pool is full, when smoltcp's refusal (an RST) is
        // what we want.
        let refusing = self.pool.in_use >= self.pool_limit();
        let mut deferred = VecDeque::new();
        self.admitting_lan = false;
        while let Some(mut f) = self.peer_in.pop_front() {
            // Addressed to the ingress node's MAC on the LAN; ours here.
            if f.data().len() >= 6 {
                let mac = self.cfg.mac;
                f.data_mut()[0..6].copy_from_slice(mac.as_bytes());
            }
            self.learn_neighbor(f.data(), now);
            if let Some(f) = self.admit_plain(f, refusing) {
                deferred.push_back(f);
            }
        }
        self.peer_in = deferred;
        let mut deferred = VecDeque::new();
        self.admitting_lan = true;
        while let Some(f) = self.lan_in.pop_front() {
            if self.mode != Role::Primary && self.answer_probe(&f) {
                self.recycle(f);
                continue;
            }
            let back = match self.mode {
                // The primary hears clients only through the ingress node;
                // while claiming it listens for an answer to its probes.
                Role::Primary if self.serves_from_lan(&f) => self.admit_plain(f, refusing),
                Role::Primary => {
                    if self.probe_answered(&f) {
                        tracing::error!(
                            "the ingress node still owns the service address: fenced, standing down"
                        );
                        self.claim = Claim::Fenced;
                    }
                    self.recycle(f);
                    None
                }
                Role::Ingress if self.probe_answered(&f) => {
                    tracing::error!(
                        "the primary holds the service address (it took over while this node \
                         was silent): fenced, standing down"
                    );
                    self.claim = Claim::Fenced;
                    self.recycle(f);
                    None
                }
                Role::Simplex => self.admit_plain(f, refusing),
                Role::Ingress => {
                    // The shadow answers a SYN at once only if it knows the
                    // client's MAC; waiting for ARP would hold the SYN back.
                    self.learn_neighbor(f.data(), now);
                    self.admit_ingress(f, refusing)
                }
            };
            if let Some(f) = back {
                deferred.push_back(f);
            }
        }
        self.lan_in = deferred;
    }

    /// A new connection request: start tracking its tuple, with a free
    /// listener to take the SYN. With none free and room in the pool, one
    /// more is armed now: kept for the next round instead, SYNs queued
    /// behind a flood without bound and a legitimate one waited seconds.
    /// At a full pool (`refusing`) the SYN goes to no socket and smoltcp
    /// refuses it with a RST.
    fn open_track(&mut self, tuple: Tuple, s: &Seg, shadow: bool, refusing: bool) -> bool {
        if !self.make_half_open_room() {
            return false;
        }
        let mut refusing = refusing;
        let mut slot = self.take_listener();
        if slot.is_none() && !refusing {
            if self.arm_listener() {
                slot = self.take_listener();
            } else if self.pool.in_use < self.pool_limit() {
                // Room in the pool but no receive buffer (no arena could be
                // mapped): refused with an RST now, as at a full pool —
                // waiting would keep the SYN, and all behind it, for good.
                refusing = true;
                self.stats.no_rx_buffer += 1;
            }
        }
        if slot.is_none() && !refusing {
            return false;
        }
        if let (true, Some(sl)) = (shadow, slot.and_then(|i| self.pool.slots[i].as_ref())) {
            // A listener armed while this node served alone (before a
            // rejoin) delays its ACKs; a shadow's ACK is what lets a
            // segment go to the primary, so it must go at once.
            self.sockets
                .get_mut::<tcp::Socket>(sl.handle)
                .set_ack_delay(None);
        }
        self.tracks.insert(
            tuple,
            Track {
                isn: s.seq,
                slot,
                shadow: shadow.then(Shadow::default),
                local: self.admitting_lan && !shadow,
            },
        );
        *self.per_source.entry(tuple.0).or_default() += 1;
        self.pending_syn.push(tuple);
        true
    }

    /// Half-open connections have their own bound (a SYN queue), apart from
    /// established ones: at `max_half_open`, the oldest handshake is dropped
    /// for the new SYN, so a flood from sources that never answer cannot
    /// lock legitimate clients out — each of them completes its handshake
    /// within a round trip, long before it would be the oldest. Returns
    /// false if no room can be made (nothing to evict: the SYN waits).
    fn make_half_open_room(&mut self) -> bool {
        let count = self.pending_syn.len() + self.pool.half_open.len();
        if count < self.cfg.max_half_open {
            return true;
        }
        let Some(&(_, i)) = self.pool.half_open.first() else {
            return false;
        };
        self.drop_half_open(i);
        self.stats.half_open_evicted += 1;
        self.flood_warning();
        true
    }

    /// Drop the half-open connection of slot `i`, silently (as Linux drops
    /// from a full SYN queue: the source never answered). The socket leaves
    /// the set: smoltcp keeps per-handle neighbour state, and a listener
    /// that waited for an unreachable source's MAC would stay silent for a
    /// second after it was reused; a fresh handle has none.
    fn drop_half_open(&mut self, i: usize) {
        let Some(slot) = self.pool.slots[i].as_mut() else {
            return;
        };
        let mut gone = None;
        if let Phase::Listening { half_open, since } = &mut slot.phase {
            if let Some(t) = since.take() {
                self.pool.half_open.remove(&(t, i));
            }
            if let Some(old) = half_open.take() {
                if self.tracks.get(&old).is_some_and(|t| t.slot == Some(i)) {
                    gone = Some(old);
                }
            }
        }
        if let Some(old) = gone {
            self.untrack(&old);
        }
        let Some(slot) = self.pool.slots[i].as_mut() else {
            return;
        };
        // CLOSED, so that `listen` takes it again when it is reused.
        self.sockets.get_mut::<tcp::Socket>(slot.handle).abort();
        self.pool.release(i, &mut self.sockets);
    }

    /// One source may not take the whole pool (slow or greedy clients): a
    /// SYN from a source at `max_per_source` is dropped, as from a full
    /// backlog, and the client retries once one of its connections ended.
    fn over_source_limit(&mut self, source: Ipv4Address) -> bool {
        if self.source_connections(source) < self.cfg.max_per_source {
            return false;
        }
        self.stats.per_source_refused += 1;
        self.per_source_warning(source);
        true
    }

    /// Connections (open, half-open or lingering) from `source`.
    fn source_connections(&self, source: Ipv4Address) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }

    fn per_source_warning(&mut self, source: Ipv4Address) {
        if !warning_due(&mut self.source_warned, self.last_poll) {
            return;
        }
        tracing::warn!(
            address = %self.cfg.address.address(),
            %source,
            max_per_source = self.cfg.max_per_source,
            refused = self.stats.per_source_refused,
            "a client holds its share of connections: its new SYNs are dropped"
        );
    }

    /// After a half-open warning, say once when no half-open connection
    /// is left (the flood is over and expiry reclaimed its listeners).
    fn flood_over_check(&mut self) {
        if !self.flood_on || self.stats().half_open > 0 {
            return;
        }
        self.flood_on = false;
        tracing::info!(
            address = %self.cfg.address.address(),
            evicted = self.stats.half_open_evicted,
            expired = self.stats.half_open_expired,
            "half-open connections drained"
        );
    }

    /// Rate-limited: an operator should know the SYN queue is full.
    fn flood_warning(&mut self) {
        self.flood_on = true;
        if !warning_due(&mut self.flood_warned, self.last_poll) {
            return;
        }
        tracing::warn!(
            address = %self.cfg.address.address(),
            max_half_open = self.cfg.max_half_open,
            evicted = self.stats.half_open_evicted,
            expired = self.stats.half_open_expired,
            "half-open connections at their bound (a SYN flood?): oldest handshakes dropped for new ones"
        );
    }

    /// Answer an RFC 5227 probe for our address (smoltcp ignores ARP from
    /// 0.0.0.0): a primary that lost the link asks this before claiming.
    /// A primary after a rejoin: `f` is a client segment (not a new SYN),
    /// sent to our MAC, of a connection this node opened from the LAN
    /// while it served alone — one the owner passes through to us once
    /// its announcement reached the client, and which until then still
    /// comes here. Replicated connections never do: their clients reach
    /// the address through the owner.
    fn serves_from_lan(&self, f: &Frame) -> bool {
        let d = f.data();
        if d.len() < 6 || d[0..6] != self.cfg.mac.0 {
            return false;
        }
        let Some(s) = seg::parse(d) else {
            return false;
        };
        if !self.for_us(&s) || (s.has(SYN) && !s.has(ACK)) {
            return false;
        }
        self.tracks
            .get(&(s.src, s.src_port, s.dst_port))
            .is_some_and(|t| t.local)
    }

    /// While probing: `f` answers *our* probe — an ARP reply for the
    /// address from another MAC, addressed to us.
    fn probe_answered(&self, f: &Frame) -> bool {
        if !matches!(self.claim, Claim::Probing { .. }) {
            return false;
        }
        crate::arp::parse(f.data()).is_some_and(|a| {
            a.operation == ArpOperation::Reply
                && a.sender_ip == self.cfg.address.address()
                && a.sender_mac != self.cfg.mac
                && a.target_mac == self.cfg.mac
        })
    }

    fn answer_probe(&mut self, f: &Frame) -> bool {
        let vip = self.cfg.address.address();
        match crate::arp::parse(f.data()) {
            Some(a)
                if a.operation == ArpOperation::Request
                    && a.sender_ip == Ipv4Address::UNSPECIFIED
                    && a.target_ip == vip =>
            {
                let r =
                    crate::arp::reply(self.cfg.mac, vip, a.sender_mac, Ipv4Address::UNSPECIFIED);
                self.lan_out.push_back(Frame::copy_from(&r));
                true
            }
            _ => false,
        }
    }

    fn for_us(&self, s: &Seg) -> bool {
        s.dst == self.cfg.address.address() && s.dst_port == self.cfg.port
    }

    /// A TCP segment for the service address, with its tuple. Anything else
    /// (ARP, other addresses) goes straight to smoltcp.
    fn classify(&mut self, f: Frame) -> Option<(Frame, Seg, Tuple)> {
        match seg::parse(f.data()) {
            Some(s) if self.for_us(&s) => {
                tracing::trace!(mode = ?self.mode, src = %s.src, port = s.src_port, seq = s.seq, ack = s.ack, flags = s.flags, len = s.payload_len, "client segment");
                let tuple = (s.src, s.src_port, s.dst_port);
                Some((f, s, tuple))
            }
            _ => {
                self.queue_for_stack(f, None);
                None
            }
        }
    }

    /// Admit a frame with no replication work (simplex, primary, live).
    /// Returns it back if it must wait for a listener.
    fn admit_plain(&mut self, f: Frame, refusing: bool) -> Option<Frame> {
        let (mut f, s, tuple) = self.classify(f)?;
        if s.has(SYN) && !s.has(ACK) {
            if self.syn_is_duplicate(&tuple) {
                // A promoted shadow still waiting for its offset: the client
                // never saw the primary's SYN-ACK, so the shadow's may stand.
                // The SYN itself is not handed to smoltcp: a free listener
                // ahead of the shadow in the socket set would take it and
                // answer with a second SYN-ACK (found by fuzzing). The
                // shadow's own SYN-ACK retransmission (its timer, moved on
                // at promotion) answers the client instead.
                if let Some(sh) = self.tracks.get_mut(&tuple).and_then(|t| t.shadow.as_mut()) {
                    if sh.live && sh.offset.is_none() {
                        sh.syn_again = true;
                        self.stats.duplicate_syn += 1;
                        self.recycle(f);
                        return None;
                    }
                }
                // A retransmitted SYN must not reach a second free listener.
                self.stats.duplicate_syn += 1;
                self.recycle(f);
                return None;
            }
            if self.over_source_limit(tuple.0) {
                self.recycle(f);
                return None;
            }
            if !self.open_track(tuple, &s, false, refusing) {
                return Some(f);
            }
        } else if self.tracks.get(&tuple).is_some_and(|t| t.shadow.is_some()) {
            // A promoted shadow: its ACKs still need moving into its space.
            let (g, off) = self.shadow_admit(f, &s, &tuple)?;
            f = g;
            translate_ack(&mut f, &s, off);
        }
        self.queue_for_stack(f, Some(&tuple));
        None
    }

    /// Apply [`Shadow::admission`] to a segment of a tracked shadow: the
    /// frame back with the offset for its ACK, or `None` when it was held
    /// or dropped.
    fn shadow_admit(&mut self, f: Frame, s: &Seg, tuple: &Tuple) -> Option<(Frame, Option<u32>)> {
        let sh = self.tracks.get_mut(tuple)?.shadow.as_mut()?;
        match sh.admission(s) {
            Admission::Ready(off) => Some((f, off)),
            Admission::Hold => {
                hold(sh, f, &mut self.stats);
                None
            }
            Admission::Drop => {
                self.recycle(f);
                None
            }
        }
    }

    fn admit_ingress(&mut self, f: Frame, refusing: bool) -> Option<Frame> {
        let (f, s, tuple) = self.classify(f)?;
        if s.has(SYN) && !s.has(ACK) {
            if self.syn_is_duplicate(&tuple) {
                // Not for our shadow (it has the SYN); the primary's SYN-ACK
                // may have been lost, so let it see the retransmission.
                self.stats.duplicate_syn += 1;
                self.fwd_out.push_back(f);
                return None;
            }
            if self.over_source_limit(tuple.0) {
                self.recycle(f);
                return None;
            }
            if !self.open_track(tuple, &s, true, refusing) {
                return Some(f);
            }
            self.pending_fwd
                .push((tuple, Frame::copy_from(f.data()), FwdRule::Syn));
            self.queue_for_stack(f, Some(&tuple));
            return None;
        }
        let Some(tr) = self.tracks.get_mut(&tuple) else {
            // A connection this node never saw open (it started before we
            // did): the primary serves it unreplicated; pass it through.
            tracing::trace!(client = %tuple.0, port = tuple.1, "no track: passed through");
            self.stats.passed_through += 1;
            self.fwd_out.push_back(f);
            return None;
        };
        if tr.shadow.is_none() {
            self.queue_for_stack(f, Some(&tuple));
            return None;
        }
        if tr.shadow.as_ref().is_some_and(|sh| sh.live) {
            // Promoted before a rejoin: served here, as in simplex.
            let (mut f, off) = self.shadow_admit(f, &s, &tuple)?;
            translate_ack(&mut f, &s, off);
            self.queue_for_stack(f, Some(&tuple));
            return None;
        }
        let (mut f, off) = self.shadow_admit(f, &s, &tuple)?;
        // The primary gets the segment as the client sent it.
        let original = Frame::copy_from(f.data());
        translate_ack(&mut f, &s, off);
        let rule = if s.has(RST) || s.seq_len() == 0 {
            FwdRule::Always
        } else {
            FwdRule::Covered(Span {
                start: s.seq,
                end: s.seq_end(),
                fin: s.has(seg::FIN),
            })
        };
        self.pending_fwd.push((tuple, original, rule));
        self.queue_for_stack(f, Some(&tuple));
        None
    }

    /// The neighbour a frame to `ip` goes through: `ip` itself, if on the
    /// link, else the gateway.
    fn next_hop(&self, ip: Ipv4Address) -> Option<Ipv4Address> {
        if self.cfg.address.contains_addr(&ip) {
            Some(ip)
        } else {
            self.cfg.gateway
        }
    }

    /// The MAC a frame to `ip` goes to, as learned from client frames.
    fn next_hop_mac(&self, ip: Ipv4Address) -> Option<EthernetAddress> {
        let hop = self.next_hop(ip)?;
        self.neighbors.get(&hop).map(|(mac, _)| *mac)
    }

    /// The primary learns a client's MAC from the frames forwarded to it
    /// (smoltcp fills its neighbour cache only from ARP, and the primary
    /// must not ARP for the service address).
    fn learn_neighbor(&mut self, frame: &[u8], now: StdInstant) {
        let Some(s) = seg::parse(frame) else { return };
        let Some(ip) = self.next_hop(s.src) else {
            return;
        };
        let fresh = self.neighbors.get(&ip).is_some_and(|(mac, at)| {
            *mac == s.src_mac && now.saturating_duration_since(*at) < NEIGHBOR_REFRESH
        });
        if fresh {
            return;
        }
        if self.neighbors.len() >= MAX_NEIGHBORS && !self.neighbors.contains_key(&ip) {
            if let Some(oldest) = self
                .neighbors
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| *k)
            {
                self.neighbors.remove(&oldest);
            }
        }
        self.neighbors.insert(ip, (s.src_mac, now));
        let arp = crate::arp::reply(s.src_mac, ip, self.cfg.mac, self.cfg.address.address());
        self.queue_for_stack(Frame::copy_from(&arp), None);
    }

    // ---- output ----------------------------------------------------------

    /// Route smoltcp's output: shadow output is observed and discarded, the
    /// primary sends no ARP, live shadows get their sequence numbers moved
    /// into the wire's space.
    fn route_output(&mut self) -> bool {
        let mut any = false;
        self.dev.tx_bytes = 0;
        while let Some(mut f) = self.dev.tx.pop_front() {
            any = true;
            if tracing::enabled!(tracing::Level::TRACE) {
                match seg::parse(f.data()) {
                    Some(s) => {
                        tracing::trace!(mode = ?self.mode, dst = %s.dst, seq = s.seq, ack = s.ack, flags = s.flags, len = s.payload_len, "smoltcp output")
                    }
                    None => {
                        tracing::trace!(mode = ?self.mode, len = f.data().len(), "smoltcp output (not TCP)")
                    }
                }
            }
            if crate::arp::is_arp(f.data()) {
                if self.mode == Role::Primary {
                    self.recycle(f);
                } else {
                    self.lan_out.push_back(f);
                }
                continue;
            }
            let Some(s) = seg::parse(f.data()) else {
                self.lan_out.push_back(f);
                continue;
            };
            let tuple = (s.dst, s.dst_port, s.src_port);
            let Some(tr) = self.tracks.get_mut(&tuple) else {
                self.lan_out.push_back(f);
                continue;
            };
            if s.has(RST) && tr.slot.is_none() && !s.has(SYN) {
                // No socket took the SYN (pool full): the refusal is ours to
                // send, shadow or not.
                self.lan_out.push_back(f);
                continue;
            }
            let Some(sh) = tr.shadow.as_mut() else {
                self.lan_out.push_back(f);
                continue;
            };
            if s.has(SYN) && sh.isn.is_none() {
                sh.isn = Some(s.seq);
            }
            if !s.has(RST) {
                let end = s.seq_end();
                if sh.snd_end.is_none_or(|e| seg::seq_ge(end, e)) {
                    sh.snd_end = Some(end);
                }
                sh.window = s.window;
            }
            if s.has(ACK) && sh.rcv_nxt.is_none_or(|r| seg::seq_ge(s.ack, r)) {
                sh.rcv_nxt = Some(s.ack);
                sh.prune_sacked();
            }
            if !sh.live {
                // An out-of-order client segment makes the shadow send a
                // duplicate ACK whose SACK block covers what it stored.
                for b in seg::sack_blocks(f.data(), &s) {
                    if sh.rcv_nxt.is_none_or(|r| !seg::seq_ge(r, b.1)) {
                        sh.note_sack(b);
                    }
                }
            }
            if !sh.live {
                self.recycle(f);
                continue;
            }
            if sh.offset.is_none() && s.has(SYN) && sh.syn_again {
                // The client never saw the primary's SYN-ACK: ours stands.
                sh.offset = Some(0);
            }
            match sh.offset {
                Some(off) => {
                    seg::set_seq(f.data_mut(), &s, s.seq.wrapping_add(off));
                    self.lan_out.push_back(f);
                }
                // Not aligned yet (the client's first ACK will tell).
                None => self.recycle(f),
            }
        }
        any
    }

    /// Forward to the primary the client segments the shadow now holds.
    ///
    /// A segment beyond a hole goes as soon as the shadow SACKs it, not
    /// only once the hole is filled: the primary then stores it too and
    /// sends the client the duplicate ACKs (with SACK) that trigger a fast
    /// retransmission of the missing bytes. Without that, every lost client
    /// segment would cost the client a retransmission timeout, with backoff.
    /// The primary still acknowledges cumulatively only what it has in
    /// order, which the shadow has too.
    fn decide_forwarding(&mut self) {
        // Earlier segments the shadow now holds (only shadows with some
        // waiting: no walk over every connection).
        let deferring = std::mem::take(&mut self.deferring);
        for tuple in deferring {
            let Some(sh) = self.tracks.get_mut(&tuple).and_then(|t| t.shadow.as_mut()) else {
                continue;
            };
            if sh.deferred.is_empty() {
                continue;
            }
            let mut keep = VecDeque::new();
            for (span, f) in std::mem::take(&mut sh.deferred) {
                if sh.holds(span) {
                    self.stats.forwarded += 1;
                    self.fwd_out.push_back(f);
                } else {
                    keep.push_back((span, f));
                }
            }
            if !keep.is_empty() {
                self.deferring.insert(tuple);
            }
            sh.deferred = keep;
        }
        for (tuple, f, rule) in std::mem::take(&mut self.pending_fwd) {
            let sh = self.tracks.get(&tuple).and_then(|t| t.shadow.as_ref());
            let ok = match rule {
                FwdRule::Always => true,
                FwdRule::Syn => sh.is_some_and(|sh| sh.isn.is_some()),
                FwdRule::Covered(span) => sh.is_some_and(|sh| sh.holds(span)),
            };
            tracing::trace!(client = %tuple.0, port = tuple.1, ?rule, ok, "forward decision");
            if ok {
                self.stats.forwarded += 1;
                self.fwd_out.push_back(f);
            } else if let (FwdRule::Covered(span), Some(sh)) = (
                rule,
                self.tracks.get_mut(&tuple).and_then(|t| t.shadow.as_mut()),
            ) {
                // Not acknowledged by the shadow (yet): out of order, or
                // refused. Keep it until the shadow's ACK covers it; the
                // primary must not see it before.
                if sh.deferred.len() < MAX_DEFERRED {
                    sh.deferred.push_back((span, f));
                    self.deferring.insert(tuple);
                } else {
                    self.stats.not_forwarded += 1;
                }
            } else {
                self.stats.not_forwarded += 1;
            }
        }
    }

    // ---- connections -----------------------------------------------------

    /// Advance one slot after a poll; returns whether bytes moved.
    fn step_slot<S: Service<Conn = C>>(
        &mut self,
        i: usize,
        service: &mut S,
        now: StdInstant,
    ) -> bool {
        let id = self.pool.id(i);
        let Some(slot) = self.pool.slots[i].as_mut() else {
            return false;
        };
        let sock = self.sockets.get_mut::<tcp::Socket>(slot.handle);
        match &mut slot.phase {
            Phase::Listening { half_open, since } => {
                // Which handshake the listener holds now. It can change
                // between two looks: an RST in SYN-RECEIVED sends a passive
                // socket back to LISTEN (RFC 793), and it may then take
                // another SYN — so never trust the one seen before.
                let current = match sock.state() {
                    tcp::State::Listen | tcp::State::Closed | tcp::State::TimeWait => None,
                    _ => tuple_of(sock, self.cfg.port),
                };
                if *half_open != current {
                    if let Some(t) = since.take() {
                        self.pool.half_open.remove(&(t, i));
                    }
                    *since = current.map(|_| now);
                    if current.is_some() {
                        self.pool.half_open.insert((now, i));
                    }
                    let old = half_open.take();
                    *half_open = current;
                    if let Some(tr) = current.and_then(|t| self.tracks.get_mut(&t)) {
                        tr.slot = Some(i);
                    }
                    if let Some(old) = old {
                        if self.tracks.get(&old).is_some_and(|t| t.slot == Some(i)) {
                            tracing::trace!(client = %old.0, port = old.1, "handshake reset: track dropped");
                            self.untrack(&old);
                        }
                    }
                    // Again, with the handshake it holds now (and fresh
                    // borrows): one level deep, it is unchanged then.
                    return self.step_slot(i, service, now);
                }
                match sock.state() {
                    tcp::State::SynReceived
                        if since.is_some_and(|t| now >= t + self.cfg.half_open_timeout) =>
                    {
                        // A handshake the client never completed (a spoofed
                        // source, or a client gone): its listener serves
                        // someone else. smoltcp would keep it for good.
                        tracing::trace!(client = ?half_open, "half-open connection expired");
                        self.stats.half_open_expired += 1;
                        self.drop_half_open(i);
                        return true;
                    }
                    tcp::State::Listen | tcp::State::SynReceived => return false,
                    tcp::State::Closed | tcp::State::TimeWait => {
                        // The handshake failed (timeout): listen again.
                        listen(sock, self.cfg.port);
                        return false;
                    }
                    _ => {
                        let (Some(tuple), Some(remote)) =
                            (half_open.take(), sock.remote_endpoint())
                        else {
                            return false;
                        };
                        if let Some(t) = since.take() {
                            self.pool.half_open.remove(&(t, i));
                        }
                        let (key, shadow) = match self.tracks.get_mut(&tuple) {
                            Some(tr) => (
                                ConnKey {
                                    client_ip: tuple.0,
                                    client_port: tuple.1,
                                    client_isn: tr.isn,
                                },
                                tr.shadow.as_ref().is_some_and(|s| !s.live),
                            ),
                            None => (
                                ConnKey {
                                    client_ip: tuple.0,
                                    client_port: tuple.1,
                                    client_isn: 0,
                                },
                                false,
                            ),
                        };
                        self.stats.accepted += 1;
                        self.stats.active += 1;
                        tracing::trace!(?id, %remote, shadow, "accepted");
                        let info = ConnInfo {
                            remote,
                            key,
                            shadow,
                        };
                        let conn = service.accept(id, &info, now);
                        slot.phase = Phase::Active(Active {
                            conn,
                            tuple,
                            deadline: None,
                            seen: (usize::MAX, usize::MAX, tcp::State::Closed),
                            woken: true,
                            release_queued: false,
                        });
                    }
                }
            }
            Phase::Lingering { tuple } => {
                if sock.state() == tcp::State::Closed {
                    let tuple = *tuple;
                    self.forget(&tuple, i);
                    self.pool.release(i, &mut self.sockets);
                }
                return false;
            }
            Phase::Active(_) => {}
        }
        let Some(slot) = self.pool.slots[i].as_mut() else {
            return false;
        };
        let Phase::Active(a) = &mut slot.phase else {
            return false;
        };
        let sock = self.sockets.get_mut::<tcp::Socket>(slot.handle);
        let seen = (sock.recv_queue(), sock.send_queue(), sock.state());
        let due = a.deadline.is_some_and(|d| d <= now);
        let mut busy = false;
        if a.woken || due || seen != a.seen {
            a.woken = false;
            self.pool.tx.lend(sock);
            a.deadline = service.drive(id, &mut a.conn, sock, now);
            let after = (sock.recv_queue(), sock.send_queue(), sock.state());
            busy = after != seen;
            a.seen = after;
            if after.0 == 0 && !a.release_queued {
                // Nothing left to read: look again in a while, and if it is
                // still empty then, give its pages back (an idle keep-alive
                // connection would otherwise keep what its requests touched).
                a.release_queued = true;
                self.pool
                    .rx_release
                    .push(Reverse((now + RX_RELEASE_AFTER, i, id.generation)));
            }
            // Nothing but the service touches the socket during drive, so
            // the growth of its send queue is exactly what it wrote.
            if let Some(tr) = self.tracks.get_mut(&a.tuple) {
                if let Some(sh) = tr.shadow.as_mut() {
                    sh.written += after.1.saturating_sub(seen.1) as u64;
                    let closing = matches!(
                        after.2,
                        tcp::State::FinWait1 | tcp::State::LastAck | tcp::State::Closing
                    );
                    if closing && !sh.fin {
                        sh.fin = true;
                    }
                    // Held client segments may be acceptable now.
                    if let (Some(end), Some(front)) = (sh.queued_end(), sh.held.front()) {
                        let ok = seg::parse(front.data()).is_none_or(|s| {
                            !s.has(ACK)
                                || sh
                                    .offset
                                    .is_none_or(|off| seg::seq_ge(end, s.ack.wrapping_sub(off)))
                        });
                        if ok {
                            let held = std::mem::take(&mut sh.held);
                            for f in held.into_iter().rev() {
                                self.lan_in.push_front(f);
                            }
                            busy = true;
                        }
                    }
                }
            }
        }
        let state = sock.state();
        if matches!(state, tcp::State::Closed | tcp::State::TimeWait) {
            let tuple = a.tuple;
            let Phase::Active(a) = std::mem::replace(&mut slot.phase, Phase::Lingering { tuple })
            else {
                unreachable!("matched Active above");
            };
            self.pool.lingering.insert(i);
            self.stats.active -= 1;
            self.stats.closed += 1;
            tracing::trace!(?id, "closed");
            service.closed(id, a.conn);
            self.pool.generations[i] = self.pool.generations[i].wrapping_add(1);
            if state == tcp::State::Closed {
                self.forget(&a.tuple, i);
                self.pool.release(i, &mut self.sockets);
            }
        }
        busy
    }

    /// Release the receive-buffer pages of connections queued by
    /// `step_slot` whose buffer still holds nothing (in order or out of
    /// order): an idle keep-alive connection then costs no page of it. A
    /// busy one is released at most once per [`RX_RELEASE_AFTER`] (and
    /// touches a page again with its next request), so this costs at most
    /// one `madvise` per connection per period; at most
    /// [`RX_RELEASE_BATCH`] per round. Invisible on the wire: the buffer's
    /// capacity, and so the window, is unchanged.
    fn release_idle_rx(&mut self, now: StdInstant) {
        let mut n = 0;
        while n < RX_RELEASE_BATCH {
            let Some(&Reverse((due, i, generation))) = self.pool.rx_release.peek() else {
                break;
            };
            if due > now {
                break;
            }
            self.pool.rx_release.pop();
            n += 1;
            if self.pool.generations.get(i) != Some(&generation) {
                continue;
            }
            let Some(Slot {
                handle,
                phase: Phase::Active(a),
                ..
            }) = self.pool.slots[i].as_mut()
            else {
                continue;
            };
            a.release_queued = false;
            let sock = self.sockets.get_mut::<tcp::Socket>(*handle);
            if let Some(buf) = sock.recv_storage_if_empty() {
                if self.pool.rx.release(buf) {
                    self.stats.rx_released += 1;
                }
            }
        }
    }

    /// Keep [`SPARE_LISTENERS`] listeners armed within `max_connections`;
    /// when the pool is full, recycle a TIME-WAIT socket rather than refuse
    /// a new client (`listen` resets it silently; `abort` would send an RST).
    fn top_up(&mut self) {
        let mut free = self.free_listeners();
        while free < SPARE_LISTENERS.min(self.pool_limit()) {
            if !self.arm_listener() {
                let Some(&i) = self.pool.lingering.first() else {
                    break;
                };
                self.recycle_lingering(i);
            }
            free += 1;
        }
    }

    /// Arm one more listener, if the pool has room.
    fn arm_listener(&mut self) -> bool {
        if self.pool.in_use >= self.pool_limit() {
            return false;
        }
        // No buffer (no arena could be mapped): no listener, so the SYN
        // that wanted one is refused with an RST, as at a full pool.
        let Some(mut sock) = new_socket(self.pool.rx, self.mode) else {
            return false;
        };
        listen(&mut sock, self.cfg.port);
        let slot = Slot {
            handle: self.sockets.add(sock),
            phase: Phase::Listening {
                half_open: None,
                since: None,
            },
            listed: false,
        };
        let i = match self.pool.free.pop() {
            Some(i) => {
                self.pool.slots[i] = Some(slot);
                i
            }
            None => {
                self.pool.slots.push(Some(slot));
                self.pool.generations.push(0);
                self.pool.slots.len() - 1
            }
        };
        self.pool.in_use += 1;
        self.list_listener(i);
        true
    }

    /// Drop the track of `tuple` if it still belongs to slot `i`.
    fn forget(&mut self, tuple: &Tuple, i: usize) {
        tracing::trace!(client = %tuple.0, port = tuple.1, slot = i, "socket released");
        if self.tracks.get(tuple).is_some_and(|t| t.slot == Some(i)) {
            self.untrack(tuple);
        }
    }

    /// Turn a TIME-WAIT slot back into a listener (silently: `listen`
    /// resets the socket; `abort` would send an RST).
    fn recycle_lingering(&mut self, i: usize) {
        let Some(slot) = self.pool.slots[i].as_mut() else {
            return;
        };
        let Phase::Lingering { tuple } = slot.phase else {
            return;
        };
        listen(
            self.sockets.get_mut::<tcp::Socket>(slot.handle),
            self.cfg.port,
        );
        slot.phase = Phase::Listening {
            half_open: None,
            since: None,
        };
        self.pool.lingering.remove(&i);
        self.stats.time_wait_recycled += 1;
        self.forget(&tuple, i);
        self.list_listener(i);
    }

    /// A SYN for `tuple`: if its old connection lingers in TIME-WAIT, the
    /// client has moved on (as Linux does, reuse the slot); returns whether
    /// a live connection still holds the tuple (a duplicate SYN).
    fn syn_is_duplicate(&mut self, tuple: &Tuple) -> bool {
        let Some(slot) = self.tracks.get(tuple).and_then(|t| t.slot) else {
            return self.tracks.contains_key(tuple);
        };
        if self.pool.slots[slot]
            .as_ref()
            .is_some_and(|s| matches!(s.phase, Phase::Lingering { .. }))
        {
            self.recycle_lingering(slot);
            return false;
        }
        true
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.stats.active
    }
}

fn hold(sh: &mut Shadow, f: Frame, stats: &mut EngineStats) {
    if sh.held.len() < MAX_HELD {
        sh.held.push_back(f);
        stats.held += 1;
    } else {
        stats.held_dropped += 1;
    }
}

impl<C> Pool<C> {
    fn id(&self, i: usize) -> ConnId {
        ConnId {
            slot: i as u32,
            generation: self.generations[i],
        }
    }

    /// Take a closed socket out of the set and apart: its receive buffer
    /// goes back to the slab (its pages released), its send buffer to the
    /// spares. A new socket is cheap; what made parking worth it was the
    /// buffers, and a parked socket kept the pages its buffer had touched.
    fn release(&mut self, i: usize, sockets: &mut SocketSet<'static>) {
        if let Some(slot) = self.slots[i].take() {
            self.ready.forget(i);
            self.lingering.remove(&i);
            #[allow(irrefutable_let_patterns)]
            if let smoltcp::socket::Socket::Tcp(sock) = sockets.remove(slot.handle) {
                self.give_back(sock);
            }
            self.free.push(i);
            self.in_use -= 1;
        }
    }

    /// Return a socket's buffers: receive to the slab, send to the spares.
    fn give_back(&mut self, sock: tcp::Socket<'static>) {
        let (rx, tx) = sock.into_buffers();
        self.tx.take_back(tx);
        match rx.into_storage() {
            ManagedSlice::Borrowed(b) => self.rx.free(b),
            ManagedSlice::Owned(_) => {}
        }
    }
}

impl<C> Drop for Engine<C> {
    /// Every socket's receive buffer back to the slab (shared by the
    /// process's engines, and by the next engine a test builds).
    fn drop(&mut self) {
        for i in 0..self.pool.slots.len() {
            self.pool.release(i, &mut self.sockets);
        }
    }
}
