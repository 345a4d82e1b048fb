//! The node's TCP engine, sans-IO: smoltcp's `Interface`, the socket pool and
//! the per-connection bookkeeping of replication, over in-memory frame queues.
//!
//! Frames come in with [`Engine::handle_lan_frame`] (from the TAP) and
//! [`Engine::handle_peer_frame`] (client frames forwarded by the owner
//! node); [`Engine::poll`] runs smoltcp and the [`Service`] on every
//! connection that changed; frames go out through
//! [`Engine::poll_lan_transmit`] (to the TAP) and [`Engine::poll_forward`]
//! (to the primary). Time is passed in. The TAP shell (`runtime`) and the
//! deterministic simulation both drive this same type.
//!
//! # Modes (per service address)
//! - [`Role::Simplex`]: serve alone.
//! - [`Role::Owner`] (the paper's backup): own the address on the LAN. Each
//!   client segment is fed first to a *shadow* socket — with its ACK (and SACK
//!   edges) moved into the shadow's sequence space — and only once the shadow
//!   has acknowledged the segment's bytes is the original forwarded to the
//!   primary. So every byte the primary acknowledges is held here. The
//!   shadow's output is observed (its ISN, its ACK) and discarded; at a
//!   takeover smoltcp's clock jumps past its retransmission timers so it
//!   resends what the client has not acknowledged at once.
//! - [`Role::Primary`]: take client frames only from the owner node, never
//!   from the LAN; never send ARP (the client must keep sending to the
//!   owner node); learn the client's MAC from forwarded frames.
//!
//! # Sequence alignment
//! The primary's ISN is learned from the client's first ACK (which the
//! owner node sees before the primary does): `offset = ack - 1 - shadow_isn`.
//! Client ACK/SACK into the shadow: `- offset`; after a takeover, the
//! shadow's SEQ onto the wire: `+ offset`. Both stacks are smoltcp with the
//! same configuration, so MSS, window scale and SACK-permitted agree, and
//! neither uses timestamps.
//!
//! # Layout
//! This file holds the [`Engine`] itself (its state, a round, promotion and
//! each connection's step); the rest lives beside it, one file per seam:
//! `types` (the configuration, frames, roles, connection names, the
//! [`Service`] trait, counters), `device` (the queue device under smoltcp), `pool` (sockets,
//! listeners, TIME-WAIT), `dispatch` and `ready` (which sockets a round
//! reaches), `admission` (half-open, per-source, eviction), `shadow` (the
//! owner node's shadow path), `claim` (claim, probes, lease), `rejoin`,
//! `route` (output routing and neighbours), `buffers` and `slab` (send and
//! receive buffers).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant as StdInstant};

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

use crate::seg::{self, ACK};
use crate::vnet::VNET_HDR_LEN;

mod admission;
mod buffers;
mod claim;
pub mod cookie;
mod detached;
mod device;
mod dispatch;
mod diverge;
mod pool;
mod ready;
mod rejoin;
mod route;
mod shadow;
pub mod slab;
mod types;
use buffers::SendBuffers;
use claim::{is_probe_traffic, Claim, CLAIM_CLOCK_JUMP};
use device::QueueDevice;
use pool::{listen, tuple_of, Active, Phase, Pool, Slot};
use ready::Ready;
use shadow::{FwdRule, Track};

pub use claim::{CLAIM_PROBES, CLAIM_PROBE_INTERVAL, FENCE_REPROBE_INTERVAL};
pub use cookie::CookieKey;
pub use detached::{DETACHED_FIN_LINGER, DETACHED_IDLE};
pub use diverge::DIVERGED_AFTER;
pub use slab::RxSlab;
pub use types::{
    Admission, ConnId, ConnInfo, ConnKey, EngineStats, Frame, Role, Service, StackConfig,
    SynCookies, Tuple,
};

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
/// Segments of connections an owner node does not know pass through to
/// the primary at most this fast (bytes a second) and in bursts of at most
/// `PASS_THROUGH_BURST`: enough for the few connections a primary serves
/// unreplicated after a rejoin, not for a flood to fill the link.
pub const PASS_THROUGH_RATE: u64 = 32 * 1024 * 1024;
pub const PASS_THROUGH_BURST: u64 = 8 * 1024 * 1024;
/// SACK ranges remembered per shadow connection (smoltcp's assembler holds
/// at most 8 out-of-order runs: `assembler-max-segment-count-8`).
const MAX_SACKED: usize = 8;

/// Frames smoltcp may emit in one round before the device refuses more.
const TX_BUDGET: usize = 4096;
/// Bytes smoltcp may emit in one round: a client with a wide window would
/// otherwise have the whole window built in one round (megabytes), and a
/// round is what stands between two heartbeats and two looks at the clock.
const TX_BYTE_BUDGET: usize = 1 << 20;
/// Spare frame buffers kept for reuse.
const MAX_POOLED: usize = 512;

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
    /// Connections served alone whose client acknowledges beyond what
    /// they queued, by slot (see `diverge.rs`).
    diverging: BTreeMap<usize, diverge::Watch>,
    /// When a diverged connection's reset was last logged, and how many
    /// were not logged since.
    diverged_warned: Option<(StdInstant, u64)>,
    /// Owner: tuples with a forward-only track (their shadow was given
    /// up, the primary serves on: see `detached.rs`), and when the first
    /// of them may be due to end.
    detached: BTreeSet<Tuple>,
    detached_due: Option<StdInstant>,
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
    /// An owner node's probes went unanswered: promote (taken once).
    probed: bool,
    /// The peer's MAC on the LAN (from its `Hello`, or configured): only
    /// it may answer our probes (fence us) or make us stand down. `None`:
    /// not known yet, any other MAC counts.
    peer_mac: Option<smoltcp::wire::EthernetAddress>,
    /// While fenced: when to probe again (the peer that answered may be
    /// gone since; then this node takes the address).
    reprobe_at: Option<StdInstant>,
    /// The probes under way re-check a fence: the connections held are
    /// stale copies (dropped at the next poll), and an answer fences again
    /// quietly.
    reprobing: bool,
    /// An owner starting: its primary may hold the address (it served it
    /// while this node was down), so being fenced is expected, not news.
    starting: bool,
    /// This node's LAN check failed: it reaches no client, so a fence is
    /// not re-probed (unanswered probes would prove nothing).
    lan_down: bool,
    /// An owner that took its role back from a takeover: no ARP from it
    /// until [`Engine::reassert`] (the primary stopped answering for the
    /// address), or it would answer the primary's announcements for it.
    arp_quiet: bool,
    /// Another node's MAC announced our address while we serve it alone
    /// (a split brain): the node core resolves it (taken once).
    conflict: Option<smoltcp::wire::EthernetAddress>,
    /// When a frame from an unknown MAC claiming our address was last
    /// logged.
    foreign_warned: Option<StdInstant>,
    /// Owner: the primary may serve connections this node never saw open
    /// (it took the address over in its life: its `Hello` epoch): their
    /// segments pass through to it. Otherwise a segment of no connection
    /// we know is dropped here — it could only draw an RST over there.
    pass_through: bool,
    /// Pass-through budget (bytes) and when it was last topped up: a flood
    /// of segments for unknown connections must not fill the link.
    pass_tokens: u64,
    pass_refilled: StdInstant,
    /// This node is stopping (a planned stop): nothing more on the LAN.
    leaving: bool,
    /// `admit` is taking frames from the LAN (not from the peer's link).
    admitting_lan: bool,
    /// Rejoined after standing by: drop the stale connections at the
    /// next poll.
    reset_pending: Option<rejoin::Stale>,
    /// Announcements still to repeat after a claim, and when the next is due.
    reannounce: Option<(u32, StdInstant)>,
    /// This node was paused: the next round of probes (a claim, or an
    /// owner's check before it promotes) lasts at least this long (see
    /// [`Engine::probe_carefully`]); taken when that round starts.
    careful: Option<(Duration, StdInstant)>,
    /// The round of probes under way: how many, how far apart.
    probe_plan: (u32, Duration),
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
    /// When this node last answered a SYN with a cookie: while its cookies
    /// may come back, an ACK of no connection with a bad one is dropped
    /// and counted (see `admission::CookieAck`).
    cookie_sent_at: Option<StdInstant>,
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
        assert_ne!(
            cfg.alt_port,
            Some(cfg.port),
            "a second port equal to the first (the configuration refuses it)"
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
            diverging: BTreeMap::new(),
            diverged_warned: None,
            detached: BTreeSet::new(),
            detached_due: None,
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
            peer_mac: None,
            reprobe_at: None,
            reprobing: false,
            careful: None,
            probe_plan: (claim::CLAIM_PROBES, claim::CLAIM_PROBE_INTERVAL),
            starting: false,
            lan_down: false,
            arp_quiet: false,
            conflict: None,
            foreign_warned: None,
            pass_through: false,
            pass_tokens: PASS_THROUGH_BURST,
            pass_refilled: start,
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
            cookie_sent_at: None,
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
        st.detached = self.detached.len();
        st
    }
    pub fn config(&self) -> &StackConfig {
        &self.cfg
    }

    /// Whether this address serves TCP port `port` (its `port` or its
    /// `alt_port`). Segments to any other port are not ours: smoltcp
    /// answers them with an RST.
    pub fn serves_port(&self, port: u16) -> bool {
        port == self.cfg.port || self.cfg.alt_port == Some(port)
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

    /// A client frame forwarded by the owner node (primary mode).
    pub fn handle_peer_frame(&mut self, f: Frame) {
        self.peer_in.push_back(f);
    }

    /// Next frame for the LAN. While the node's role is not confirmed
    /// (see [`Engine::set_lease`], [`Engine::probe_before_promote`]) only
    /// ARP probes and answers to probes leave: a node that was paused must
    /// not speak first. A fenced engine sends nothing at all: a frame made
    /// in the round that fenced it (smoltcp's ARP reply to the peer's
    /// announcement, read just before the answer to our probe) would
    /// speak for an address the peer holds.
    #[must_use]
    pub fn poll_lan_transmit(&mut self) -> Option<Frame> {
        loop {
            let f = self.lan_out.pop_front()?;
            if !self.leaving
                && self.claim != Claim::Fenced
                && (!self.silent() || is_probe_traffic(f.data()))
            {
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

    /// Next client frame to forward to the primary (owner mode).
    #[must_use]
    pub fn poll_forward(&mut self) -> Option<Frame> {
        self.fwd_out.pop_front()
    }

    /// How long until smoltcp or a connection needs a poll.
    #[must_use]
    pub fn poll_delay(&mut self, now: StdInstant) -> Option<Duration> {
        if self.claim == Claim::Fenced {
            // A fenced engine's poll only arms or fires the re-probe: its
            // sockets stay frozen, so their timers (a FIN's retransmission,
            // say) would be due at once and for ever — the shell spun on a
            // node that handed its address over with connections in flight
            // (found by the simulation's `lan` variant). Nothing to wait for
            // while the LAN is down: the re-probe waits for it too.
            return match self.reprobe_at {
                // Fenced since the last poll: it arms the re-probe timer.
                None => Some(Duration::ZERO),
                Some(_) if self.lan_down => None,
                Some(t) => Some(t.saturating_duration_since(now)),
            };
        }
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
        if let Some(at) = self.diverged_due(now) {
            let d = at.saturating_duration_since(now);
            wait = Some(wait.map_or(d, |w| w.min(d)));
        }
        if let Some(at) = self.detached_due() {
            let d = at.saturating_duration_since(now);
            wait = Some(wait.map_or(d, |w| w.min(d)));
        }
        wait
    }

    /// The primary is gone: every shadow connection becomes live, and at
    /// once retransmits what the client has not acknowledged.
    pub fn promote<S: Service<Conn = C>>(&mut self, service: &mut S, now: StdInstant) {
        if self.mode != Role::Owner {
            return;
        }
        self.mode = Role::Simplex;
        self.end_all_detached();
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
                handle,
                phase: Phase::Active(a),
                ..
            }) = self.pool.slots[i].as_mut()
            {
                let shadow = self
                    .tracks
                    .get(&a.tuple)
                    .is_some_and(|t| t.shadow.is_some());
                if shadow {
                    // The clock jump above fires the retransmission timers,
                    // but not a timer that is idle with data in flight (a
                    // window that reopened after a zero window left smoltcp
                    // so, HOTPAIR-PATCHES.md 14): resend from the client's
                    // last ACK whatever the timer says (patch 15).
                    self.sockets
                        .get_mut::<smoltcp::socket::tcp::Socket>(*handle)
                        .retransmit_now();
                    let unacked = self.sockets.get::<tcp::Socket>(*handle).send_queue();
                    service.promote(id, &mut a.conn, unacked, now);
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
            match self.reprobe_at {
                None => {
                    self.reprobe_at = Some(now + FENCE_REPROBE_INTERVAL);
                    return false;
                }
                Some(t) if now < t || self.lan_down => return false,
                // The peer that answered may be gone by now: ask again.
                // Whatever this node held is a stale copy either way.
                Some(_) => {
                    self.reprobe_at = None;
                    self.reprobing = true;
                    self.reset_pending = Some(rejoin::Stale::All);
                    self.start_probing();
                    self.stats.reprobes += 1;
                    tracing::debug!(address = %self.cfg.address.address(), "fenced: probing again");
                }
            }
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
        self.check_diverged(service, now);
        self.expire_detached(now);
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
                    _ => tuple_of(sock),
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
                        if since
                            .is_some_and(|t| now >= t + self.cfg.admission.half_open_timeout) =>
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
                            local_port: tuple.2,
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
                if sock.state() == tcp::State::Closed && sock.remote_endpoint().is_none() {
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
            // An abort (the service cut a client off) still owes the
            // client its RST: smoltcp sends it at its next dispatch, and
            // only then forgets the tuple; the slot is released after
            // (the `Lingering` step), or the RST would never leave.
            if state == tcp::State::Closed && sock.remote_endpoint().is_none() {
                self.forget(&a.tuple, i);
                self.pool.release(i, &mut self.sockets);
            }
        }
        busy
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.stats.active
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
