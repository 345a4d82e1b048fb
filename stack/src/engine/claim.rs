//! Claim, probes and lease: a node whose peer seems gone probes for the
//! address (RFC 5227) before it claims or promotes, stands down (fenced) if
//! the peer answers, announces the address and repeats the announcement;
//! a primary without a current lease stays silent toward clients.

use std::time::{Duration, Instant as StdInstant};

use smoltcp::wire::{ArpOperation, EthernetAddress, Ipv4Address};

use super::types::{Frame, Role};
use super::Engine;

/// ARP probes (sender 0.0.0.0) and answers to probes (target 0.0.0.0):
/// the only frames a node sends while its role is unconfirmed.
pub(super) fn is_probe_traffic(frame: &[u8]) -> bool {
    crate::arp::parse(frame).is_some_and(|a| {
        a.sender_ip == Ipv4Address::UNSPECIFIED || a.target_ip == Ipv4Address::UNSPECIFIED
    })
}

/// Split-brain guard: before claiming the address, the primary probes for
/// it this many times, this far apart; an answer means the owner node is
/// alive (only the link failed) and the primary must stand down.
///
/// The claim comes one interval after the last probe: 36 ms after the
/// heartbeat timeout, which is what a frozen owner costs its clients beyond
/// the timeout (the target is 50 ms). A live owner answers a probe in the
/// round that reads it (rounds are bounded: see `TX_BYTE_BUDGET`), well
/// within that; a node that was paused does not need the probes to catch
/// it: it notices the pause itself (`NodeCore::check_paused`: no heartbeat
/// for the timeout) and stays silent until it has probed in turn — for
/// the heartbeat timeout, not 36 ms ([`Engine::probe_carefully`]): the
/// load that paused it may stall its peer too.
pub const CLAIM_PROBES: u32 = 3;

pub const CLAIM_PROBE_INTERVAL: Duration = Duration::from_millis(12);

/// After a pause of this node (see [`Engine::probe_carefully`]) its probes
/// go this far apart, for at least the heartbeat timeout.
pub const CAREFUL_PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// After claiming the address, the announcement is repeated this many
/// times, 100 ms, 200 ms, 400 ms … apart: one lost gratuitous ARP must not
/// leave a client sending to the dead node's MAC until its neighbour entry
/// expires (keepalived repeats its gratuitous ARPs for the same reason).
pub(super) const REANNOUNCE: u32 = 5;

pub(super) const REANNOUNCE_FIRST: Duration = Duration::from_millis(100);

/// How far smoltcp's clock jumps at a takeover (claim or promotion):
/// beyond the minimum RTO (1 s) and two backoffs of it.
pub(super) const CLAIM_CLOCK_JUMP: Duration = Duration::from_secs(5);

/// A fenced site probes again this long after it was fenced (and after
/// each answered round): the peer that holds the address may die while
/// the link is still down, and then nobody would serve it.
pub const FENCE_REPROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The primary's claim of the address after losing its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    None,
    Probing {
        sent: u32,
        next_at: Option<StdInstant>,
    },
    /// The owner node answered: it owns the address and the connections.
    Fenced,
}

impl<C> Engine<C> {
    /// The node core's word on whether the peer confirmed this node's role
    /// within the heartbeat timeout. Only a primary's output depends on it.
    pub fn set_lease(&mut self, ok: bool) {
        if self.lease != ok {
            tracing::debug!(address = %self.cfg.address.address(), lease = ok, mode = ?self.mode, "lease");
        }
        self.lease = ok;
    }

    /// An owner node whose primary seems gone, but which may itself have
    /// been paused past the timeout (its peer may have claimed the address
    /// meanwhile): probe for the address first, silent. If the primary
    /// answers, it holds the address: this node is fenced. If nobody does,
    /// [`Engine::take_probed`] says so and the caller promotes.
    pub fn probe_before_promote(&mut self) {
        if self.mode == Role::Owner && self.claim == Claim::None {
            self.start_probing();
        }
    }

    /// This node was paused (or starved) past the heartbeat timeout: its
    /// peer has probably taken over, and may itself be starved by the same
    /// load — CI saw both nodes of a lab stalled for half a second, the
    /// resumed primary's 36 ms of probes unanswered, and a split brain.
    /// So the next round of probes lasts `window` (the heartbeat timeout)
    /// at least, a probe every [`CAREFUL_PROBE_INTERVAL`]: a peer that is
    /// alive answers within that unless it stalls as long as the timeout
    /// itself. It costs a takeover only in a double fault (the peer died
    /// during this node's pause), by `window`.
    pub fn probe_carefully(&mut self, window: Duration) {
        self.careful = Some((window, self.last_poll));
    }

    /// Start a round of probes (none sent yet), as many and as far apart
    /// as [`Engine::probe_carefully`] asked, if it did (a claim, an owner's
    /// check before it promotes, a fenced site's re-probe).
    pub(super) fn start_probing(&mut self) {
        // A pause long past (the takeover it called for did not come) says
        // nothing about the probes of today.
        let careful = self
            .careful
            .take()
            .filter(|(w, at)| self.last_poll.saturating_duration_since(*at) <= *w * 4);
        self.probe_plan = match careful {
            Some((window, _)) => {
                let n = window.as_millis() / CAREFUL_PROBE_INTERVAL.as_millis().max(1);
                (
                    u32::try_from(n).unwrap_or(u32::MAX).max(CLAIM_PROBES),
                    CAREFUL_PROBE_INTERVAL,
                )
            }
            None => (CLAIM_PROBES, CLAIM_PROBE_INTERVAL),
        };
        self.claim = Claim::Probing {
            sent: 0,
            next_at: None,
        };
    }

    /// An owner's probes at start are moot: its primary says it never
    /// took the address over (its `Hello`'s epoch is 0), so nobody else
    /// holds it. Stop probing; the caller announces it.
    pub fn cancel_probe(&mut self) {
        if self.mode == Role::Owner && matches!(self.claim, Claim::Probing { .. }) {
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

    /// Announce the service address (gratuitous ARP).
    pub fn announce(&mut self) {
        let f = crate::arp::gratuitous(self.cfg.mac, self.cfg.address.address());
        self.lan_out.push_back(Frame::copy_from(&f));
    }

    /// The owner node seems gone: probe for the address, then serve it
    /// ourselves — unless someone answers the probe, in which case the
    /// owner node is alive (the link alone failed), it has taken over,
    /// and this node is fenced: it must send nothing more.
    pub fn claim(&mut self) {
        if self.mode == Role::Primary && self.claim == Claim::None {
            self.start_probing();
        }
    }

    /// The owner node said it is leaving (a planned stop, on the
    /// authenticated link): it answers nothing any more, so claim the
    /// address at the next round, without the probes.
    pub fn claim_now(&mut self) {
        if self.mode == Role::Primary && self.claim == Claim::None {
            self.probe_plan = (CLAIM_PROBES, CLAIM_PROBE_INTERVAL);
            self.careful = None;
            self.claim = Claim::Probing {
                sent: CLAIM_PROBES,
                next_at: None,
            };
        }
    }

    /// The owner node answered our probe: stop serving for good.
    pub fn fenced(&self) -> bool {
        self.claim == Claim::Fenced
    }

    /// Gratuitous ARP for the address, and a direct ARP request to every
    /// client (or gateway) we have been talking to: not every stack takes a
    /// gratuitous ARP (smoltcp, for one, ignores ARP not aimed at its own
    /// address), but every stack learns the sender of a request addressed
    /// to it.
    pub(super) fn announce_to_all(&mut self) {
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
    pub(super) fn reannounce_tick(&mut self, now: StdInstant) {
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

    pub(super) fn claim_tick(&mut self, now: StdInstant) {
        let Claim::Probing { sent, next_at } = self.claim else {
            return;
        };
        if next_at.is_some_and(|t| t > now) {
            return;
        }
        let (probes, interval) = self.probe_plan;
        if sent < probes {
            let f = crate::arp::probe(self.cfg.mac, self.cfg.address.address());
            self.lan_out.push_back(Frame::copy_from(&f));
            self.claim = Claim::Probing {
                sent: sent + 1,
                next_at: Some(now + interval),
            };
        } else if self.mode == Role::Owner {
            tracing::info!(
                connections = self.stats.active,
                reprobe = self.reprobing,
                "no answer to probes: the address is still ours"
            );
            self.claim = Claim::None;
            self.reprobing = false;
            self.probed = true;
        } else {
            self.reprobing = false;
            tracing::warn!(
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
            self.start_reannouncing(now);
            // The client has been acknowledging to the dead owner node:
            // our data reached it, its ACKs did not reach us. Rather than
            // wait for smoltcp's retransmission timer (1 s at least, more
            // after a backoff), move smoltcp's clock past it once: every
            // socket with unacknowledged data retransmits now, and the
            // client's ACK, arriving here after the gratuitous ARP, catches
            // us up. Karn's rule keeps these retransmissions out of the RTT
            // estimate.
            self.clock_skew += CLAIM_CLOCK_JUMP;
            // And every connection acknowledges again, with its window:
            // pure ACKs are never retransmitted, and the last one (a
            // window update after a zero window, say) may have been held
            // back while this node's role was unconfirmed — the client
            // would wait on its persist timer. It also resends from the
            // client's last ACK it heard of, whatever its timer says: the
            // jump fires running retransmission timers, not one that went
            // idle with data in flight (`retransmit_now`).
            self.ack_and_resend_all_now();
            self.mark_all();
        }
    }

    /// Every open connection sends an ACK with its window at its next
    /// dispatch (see `tcp::Socket::ack_now`), and resends what the client
    /// has not acknowledged, if anything (`tcp::Socket::retransmit_now`).
    pub(super) fn ack_and_resend_all_now(&mut self) {
        for slot in self.pool.slots.iter().flatten() {
            if matches!(slot.phase, super::pool::Phase::Active(_)) {
                let s = self
                    .sockets
                    .get_mut::<smoltcp::socket::tcp::Socket>(slot.handle);
                s.ack_now();
                s.retransmit_now();
            }
        }
    }

    /// While probing: `f` answers *our* probe — an ARP reply for the
    /// address from the peer's MAC (any other MAC while it is not known),
    /// addressed to us. An answer from a MAC the pair does not know is
    /// ignored: one LAN host must not be able to fence a node.
    pub(super) fn probe_answered(&mut self, f: &Frame) -> bool {
        if !matches!(self.claim, Claim::Probing { .. }) {
            return false;
        }
        let Some(a) = crate::arp::parse(f.data()) else {
            return false;
        };
        if a.operation != ArpOperation::Reply
            || a.sender_ip != self.cfg.address.address()
            || a.sender_mac == self.cfg.mac
            || a.target_mac != self.cfg.mac
        {
            return false;
        }
        if self.peer_mac.is_some_and(|p| p != a.sender_mac) {
            self.foreign_claim(a.sender_mac, "answered a probe for");
            return false;
        }
        true
    }

    /// The node's peer on the LAN is `mac` (its `Hello`, or configured).
    pub fn set_peer_mac(&mut self, mac: EthernetAddress) {
        if mac != self.cfg.mac && mac != EthernetAddress([0; 6]) {
            self.peer_mac = Some(mac);
        }
    }

    /// The probe answer that fenced this site came while re-checking an
    /// earlier fence: no news, say it quietly.
    pub(super) fn fence(&mut self, why: &str) {
        if std::mem::take(&mut self.reprobing) {
            tracing::debug!(address = %self.cfg.address.address(), "the peer still holds the address: fenced");
        } else if self.starting {
            tracing::info!(
                address = %self.cfg.address.address(),
                "the primary serves the address (it took over while this node was down): \
                 standing by until the link is up, then rejoining"
            );
        } else {
            tracing::warn!(address = %self.cfg.address.address(), "{why}: fenced, standing down");
        }
        self.fence_quietly();
    }

    /// This owner is starting (`true`) or has rejoined: see `starting`.
    pub fn set_starting(&mut self, starting: bool) {
        self.starting = starting;
    }

    /// Fenced, re-probed later (see `Engine::poll`); the caller said why.
    fn fence_quietly(&mut self) {
        self.claim = Claim::Fenced;
        self.reprobe_at = None;
        self.reprobing = false;
    }

    /// While serving the address alone: `f` announces it from another
    /// node's MAC (a gratuitous ARP or an answer: the peer claimed it too —
    /// a split brain). Recorded for the node core, which decides who keeps
    /// it ([`Engine::take_conflict`]).
    pub(super) fn check_conflict(&mut self, f: &Frame) {
        if self.mode != Role::Simplex || self.leaving {
            return;
        }
        let Some(a) = crate::arp::parse(f.data()) else {
            return;
        };
        if a.sender_ip != self.cfg.address.address() || a.sender_mac == self.cfg.mac {
            return;
        }
        // An answer to a probe (target 0.0.0.0) is no announcement: a node
        // thawed after a freeze answers the probes that queued up while it
        // was stopped — it holds nothing (it probes and stands down itself),
        // and yielding to it would leave nobody serving.
        if a.target_ip == Ipv4Address::UNSPECIFIED {
            return;
        }
        if self.peer_mac.is_some_and(|p| p != a.sender_mac) {
            self.foreign_claim(a.sender_mac, "announced");
            return;
        }
        self.stats.conflicts += 1;
        self.conflict = Some(a.sender_mac);
    }

    /// A MAC the pair does not know claims our address: not the peer, so
    /// not ours to yield to — an operator should look (rate-limited).
    fn foreign_claim(&mut self, mac: EthernetAddress, what: &str) {
        let now = self.last_poll;
        if self
            .foreign_warned
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(10))
        {
            return;
        }
        self.foreign_warned = Some(now);
        tracing::warn!(
            address = %self.cfg.address.address(),
            %mac,
            "a MAC that is not the peer's {what} the service address: ignored (an address \
             conflict on the LAN, or someone spoofing it)"
        );
    }

    /// Another node announced our address while we served it alone (see
    /// [`Engine::check_conflict`]); taken once.
    pub fn take_conflict(&mut self) -> Option<EthernetAddress> {
        self.conflict.take()
    }

    /// Serving alone, we lost a split brain to the configured owner: stand
    /// down, silent; probe again later (it may die while the link is down).
    pub fn stand_down(&mut self) {
        if self.claim == Claim::Fenced {
            return;
        }
        self.reannounce = None;
        self.fence("the configured owner serves the address too (split brain)");
    }

    /// This node's LAN check failed (`true`) or passes again. While it
    /// fails a fenced site does not re-probe.
    pub fn set_lan_down(&mut self, down: bool) {
        self.lan_down = down;
    }

    /// This node cannot reach the service LAN: its peer takes the address
    /// (or keeps it); stand by, silent, until the node rejoins.
    pub fn yield_address(&mut self) {
        if self.claim == Claim::Fenced {
            return;
        }
        self.reannounce = None;
        // The node core logs why (its LAN check).
        self.fence_quietly();
    }

    /// Serving alone, we won a split brain (we own the address): say so
    /// again to every client, so their caches point here — and keep saying
    /// it on the claim's doubling schedule. One announcement is not enough:
    /// the loser re-announces on its own schedule until it has heard ours
    /// (and it may die first, its last word standing), and a client may
    /// ignore an ARP update within `locktime` (1 s on Linux) of the last,
    /// leaving its cache on a dead node's MAC until the entry expires. The
    /// last word on the LAN must be the owner's, more than a second after
    /// the loser's.
    pub fn defend(&mut self) {
        if self.mode == Role::Simplex && self.claim == Claim::None {
            self.announce_to_all();
            self.start_reannouncing(self.last_poll);
        }
    }

    /// Repeat the announcement just made [`REANNOUNCE`] times, the first
    /// [`REANNOUNCE_FIRST`] after `now`, then at doubling intervals.
    fn start_reannouncing(&mut self, now: StdInstant) {
        self.reannounce = Some((REANNOUNCE, now + REANNOUNCE_FIRST));
    }

    /// Answer an RFC 5227 probe for our address (smoltcp ignores ARP from
    /// 0.0.0.0): a primary that lost the link asks this before claiming.
    pub(super) fn answer_probe(&mut self, f: &Frame) -> bool {
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
}
