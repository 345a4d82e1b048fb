//! Admission: which client frames reach smoltcp, and what a SYN may cost —
//! the half-open bound (the SYN queue), the per-source limit, the eviction
//! of idle connections at `max_connections`, and the reclaiming of
//! FIN-WAIT-2 sockets for SYNs meeting a full pool. (At the half-open
//! bound, SYN cookies: `cookie.rs`.)

use std::collections::VecDeque;
use std::time::{Duration, Instant as StdInstant};

use smoltcp::socket::tcp;
use smoltcp::wire::Ipv4Address;

use crate::seg::{self, Seg, ACK, SYN};

use super::cookie::CookieAck;
use super::pool::{Phase, Slot};
use super::shadow::{translate_ack, Shadow, Track};
use super::types::{Frame, Role, Service, Tuple};
use super::{Engine, SPARE_LISTENERS};

/// What became of a new client's SYN ([`Engine::admit_new_syn`]).
pub(super) enum NewSyn {
    /// Tracked: the frame goes on to smoltcp.
    Tracked(Frame),
    /// Dropped or answered with a cookie; the frame is recycled.
    Consumed,
    /// No room yet: the frame waits for a listener.
    Wait(Frame),
}

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

impl<C> Engine<C> {
    /// Sockets this engine may hold (listeners, half-open, open, lingering):
    /// `max_connections` bounds the connections, and the SYN queue
    /// (`max_half_open`) and the armed listeners have their own room beyond
    /// it — as the kernel's SYN queue is apart from nginx's connections —
    /// so a SYN, spoofed or not, never costs an open connection: a new
    /// connection makes room only once its handshake is complete (see
    /// `enforce_max_connections`). The owner node shadows the primary's
    /// connections and sees each SYN first, and the shadow of a connection
    /// the primary closed to make room closes a round trip later: its pool
    /// has a second SYN queue's room, so it never refuses a SYN the
    /// primary takes. After a promotion it is a simplex node's.
    pub(super) fn pool_limit(&self) -> usize {
        let queue = match self.mode {
            Role::Owner => self.cfg.admission.max_half_open.saturating_mul(2),
            Role::Simplex | Role::Primary => self.cfg.admission.max_half_open,
        };
        self.cfg
            .admission
            .max_connections
            .saturating_add(queue)
            .saturating_add(SPARE_LISTENERS)
    }

    /// SYNs meeting a full socket pool: release connections in FIN-WAIT-2
    /// for them first (see `reclaim_fin_wait2`).
    pub(super) fn reclaim_for_syns<S: Service<Conn = C>>(&mut self, service: &mut S) {
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
    pub(super) fn enforce_max_connections<S: Service<Conn = C>>(
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
        if self.mode == Role::Owner {
            return false;
        }
        let over = self
            .stats
            .active
            .saturating_sub(self.cfg.admission.max_connections);
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
            max_connections = self.cfg.admission.max_connections,
            over,
            evicted = self.stats.idle_evicted,
            "connection pool full: oldest idle keep-alive connections closed for new clients"
        );
    }

    pub(super) fn admit(&mut self, now: StdInstant) {
        // Each SYN is given one free listener (`open_track`); with none
        // free, it waits for the next round, when the pool has armed more
        // — unless the pool is full, when smoltcp's refusal (an RST) is
        // what we want.
        let refusing = self.pool.in_use >= self.pool_limit();
        let mut deferred = VecDeque::new();
        self.admitting_lan = false;
        while let Some(mut f) = self.peer_in.pop_front() {
            // Addressed to the owner node's MAC on the LAN; ours here.
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
            let owner_fenced = self.mode == Role::Owner && self.probe_answered(&f);
            let stood_down_fenced = self.mode == Role::Simplex && self.probe_answered(&f);
            let back = match self.mode {
                // The primary hears clients only through the owner node;
                // while claiming it listens for an answer to its probes.
                Role::Primary if self.serves_from_lan(&f) => self.admit_plain(f, refusing),
                Role::Primary => {
                    if self.probe_answered(&f) {
                        self.fence("the owner node still owns the service address");
                    }
                    self.recycle(f);
                    None
                }
                Role::Owner if owner_fenced => {
                    self.fence(
                        "the primary holds the service address (it took over while this node \
                         was silent)",
                    );
                    self.recycle(f);
                    None
                }
                // A site that lost a split brain stays `Simplex`, fenced,
                // and re-probes now and then (`poll`): the owner's answer
                // fences it again. Unheard, every re-probe claimed the
                // address back and the split brain restarted.
                Role::Simplex if stood_down_fenced => {
                    self.fence("the configured owner still serves the address");
                    self.recycle(f);
                    None
                }
                Role::Simplex => {
                    self.check_conflict(&f);
                    self.admit_plain(f, refusing)
                }
                Role::Owner => {
                    // The shadow answers a SYN at once only if it knows the
                    // client's MAC; waiting for ARP would hold the SYN back.
                    self.learn_neighbor(f.data(), now);
                    self.admit_owner(f, refusing)
                }
            };
            if let Some(f) = back {
                deferred.push_back(f);
            }
        }
        self.lan_in = deferred;
    }

    /// A new client's SYN (not a duplicate): dropped over its source's
    /// limit, answered with a SYN cookie at the half-open bound (not
    /// forwarded either: the primary learns of the connection from its ACK,
    /// which carries the cookie, see `cookie_ack`), else tracked
    /// (`open_track`; `shadow` on an owner).
    pub(super) fn admit_new_syn(
        &mut self,
        f: Frame,
        s: &Seg,
        tuple: Tuple,
        shadow: bool,
        refusing: bool,
    ) -> NewSyn {
        if self.over_source_limit(tuple.0) {
            self.recycle(f);
            return NewSyn::Consumed;
        }
        if self.cookie_instead() {
            self.send_syn_cookie(&f, s);
            self.recycle(f);
            return NewSyn::Consumed;
        }
        if !self.open_track(tuple, s, shadow, refusing) {
            return NewSyn::Wait(f);
        }
        NewSyn::Tracked(f)
    }

    /// A new connection request: start tracking its tuple, with a free
    /// listener to take the SYN. With none free and room in the pool, one
    /// more is armed now: kept for the next round instead, SYNs queued
    /// behind a flood without bound and a legitimate one waited seconds.
    /// At a full pool (`refusing`) the SYN goes to no socket and smoltcp
    /// refuses it with a RST.
    pub(super) fn open_track(
        &mut self,
        tuple: Tuple,
        s: &Seg,
        shadow: bool,
        refusing: bool,
    ) -> bool {
        if !self.make_half_open_room() {
            return false;
        }
        let mut refusing = refusing;
        let mut slot = self.take_listener(tuple.2);
        if slot.is_none() && !refusing {
            if self.arm_listener() {
                slot = self.take_listener(tuple.2);
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
                detached: None,
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
        if count < self.cfg.admission.max_half_open {
            return true;
        }
        let Some(&(_, i)) = self.pool.half_open.first() else {
            return false;
        };
        self.drop_half_open(i);
        self.stats.half_open_evicted += 1;
        self.flood_warning(false);
        true
    }

    /// Drop the half-open connection of slot `i`, silently (as Linux drops
    /// from a full SYN queue: the source never answered). The socket leaves
    /// the set: smoltcp keeps per-handle neighbour state, and a listener
    /// that waited for an unreachable source's MAC would stay silent for a
    /// second after it was reused; a fresh handle has none.
    pub(super) fn drop_half_open(&mut self, i: usize) {
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
    pub(super) fn over_source_limit(&mut self, source: Ipv4Address) -> bool {
        if self.source_connections(source) < self.cfg.admission.max_per_source {
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
            max_per_source = self.cfg.admission.max_per_source,
            refused = self.stats.per_source_refused,
            "a client holds its share of connections: its new SYNs are dropped"
        );
    }

    /// After a half-open warning, say once when no half-open connection
    /// is left (the flood is over and expiry reclaimed its listeners).
    pub(super) fn flood_over_check(&mut self) {
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

    /// Rate-limited: an operator should know the SYN queue is full, and
    /// what this node does about it (`cookies`: new SYNs are answered with
    /// SYN cookies; else the oldest handshakes are dropped).
    pub(super) fn flood_warning(&mut self, cookies: bool) {
        self.flood_on = true;
        if !warning_due(&mut self.flood_warned, self.last_poll) {
            return;
        }
        if cookies {
            tracing::warn!(
                address = %self.cfg.address.address(),
                max_half_open = self.cfg.admission.max_half_open,
                sent = self.stats.syn_cookies_sent,
                validated = self.stats.syn_cookies_validated,
                rejected = self.stats.syn_cookies_rejected,
                "half-open connections at their bound (a SYN flood?): new SYNs answered with SYN cookies"
            );
            return;
        }
        tracing::warn!(
            address = %self.cfg.address.address(),
            max_half_open = self.cfg.admission.max_half_open,
            evicted = self.stats.half_open_evicted,
            expired = self.stats.half_open_expired,
            "half-open connections at their bound (a SYN flood?): oldest handshakes dropped for new ones"
        );
    }

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

    fn for_us(&self, s: &Seg) -> bool {
        s.dst == self.cfg.address.address() && self.serves_port(s.dst_port)
    }

    /// A TCP segment for the service address, with its tuple. Anything else
    /// (ARP, other addresses) goes straight to smoltcp.
    pub(super) fn classify(&mut self, f: Frame) -> Option<(Frame, Seg, Tuple)> {
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
            f = match self.admit_new_syn(f, &s, tuple, false, refusing) {
                NewSyn::Tracked(f) => f,
                NewSyn::Consumed => return None,
                NewSyn::Wait(f) => return Some(f),
            };
        } else if self.cookie_ack(&s, tuple) == CookieAck::Drop {
            self.recycle(f);
            return None;
        } else if self.tracks.get(&tuple).is_some_and(|t| t.shadow.is_some()) {
            // A promoted shadow: its ACKs still need moving into its space.
            let (g, off) = self.shadow_admit(f, &s, &tuple)?;
            f = g;
            translate_ack(&mut f, &s, off);
        }
        self.queue_for_stack(f, Some(&tuple));
        None
    }

    /// A SYN for `tuple`: if its old connection lingers in TIME-WAIT, the
    /// client has moved on (as Linux does, reuse the slot); returns whether
    /// a live connection still holds the tuple (a duplicate SYN).
    pub(super) fn syn_is_duplicate(&mut self, tuple: &Tuple) -> bool {
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
}
