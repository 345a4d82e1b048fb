//! Detached connections (owner mode): a shadow the node core gave up
//! because its reply differed from the primary's. The primary still serves
//! the connection, and its client still sends to this node (it owns the
//! address), so the tuple keeps a *forward-only* track: no socket, every
//! client segment forwarded to the primary as the client sent it (no ACK
//! translation, no holding for a shadow's coverage). Without it, freeing
//! the shadow's slot forgot the tuple, and `admit_owner` dropped the
//! client's next segments as those of a connection it never saw: the live
//! connection stalled.
//!
//! Bounded like pass-through: its segments spend the pass-through budget,
//! its track still counts against its client's `max_per_source`, at most
//! `max_connections` are kept (the least recently heard one goes for a
//! new one), and one ends when its client resets it, when the primary's
//! connection is gone (`ConnGone`, through [`Engine::end_detached`]),
//! when the client sent its FIN and [`DETACHED_FIN_LINGER`] passed, or
//! when nothing came from its client for [`DETACHED_IDLE`]. A rejoin's
//! drop of stale shadows keeps them (they are the primary's connections,
//! still forwarded); a fenced node's drop of everything ends them.
//!
//! It cannot be taken over (its shadow is gone): at promotion every one
//! ends. The survivor resets its client at once, at the client's last
//! acknowledgement (RFC 5961: a reset at exactly the receiver's next
//! sequence number is taken; one inside its window draws an ACK, which
//! finds no connection here and is answered with an RST). A client idle
//! on the connection, or waiting for the server's FIN, would otherwise
//! never hear; one that sends before it reaches it finds no connection
//! and is reset too. A clean refusal either way, never silence.

use std::time::{Duration, Instant as StdInstant};

use crate::seg::{self, Seg, ACK, FIN, RST};

use super::pool::{Phase, Slot};
use super::types::{ConnId, ConnKey, Frame, Role, Service, Tuple};
use super::Engine;

/// A detached connection whose client sent nothing for this long ends
/// (its client's next segment is dropped, as one of a connection this
/// node never saw). Well beyond the HTTP layer's idle timeout (60 s by
/// default), after which the primary closes such a connection anyway.
pub const DETACHED_IDLE: Duration = Duration::from_secs(300);
/// After the client's FIN, a detached connection lingers this long for
/// the client's last ACK (and its retransmissions) of the primary's FIN.
pub const DETACHED_FIN_LINGER: Duration = Duration::from_secs(10);

/// A forward-only track's state.
#[derive(Debug, Clone, Copy)]
pub(super) struct Detached {
    /// When the client last sent a segment of it (or it was detached).
    last_seen: StdInstant,
    /// The client sent its FIN.
    client_fin: bool,
    /// The highest ACK the client sent since it was detached (the
    /// primary's sequence space): where a reset to it goes.
    client_ack: Option<u32>,
}

impl Detached {
    /// When it ends if its client sends nothing more.
    fn due(&self) -> StdInstant {
        self.last_seen
            + if self.client_fin {
                DETACHED_FIN_LINGER
            } else {
                DETACHED_IDLE
            }
    }
}

impl<C> Engine<C> {
    /// Give up the shadow of connection `id` (owner mode) but keep
    /// forwarding its client's segments to the primary, which still serves
    /// it: the node core calls this for a shadow whose reply differed from
    /// the primary's (not for one whose primary connection is gone: that
    /// one is aborted and its track goes). The shadow socket is dropped
    /// silently (a shadow's output never leaves the node) and the
    /// connection closed for the service; the client segments the shadow
    /// held or deferred go to the primary now. Returns whether `id` was a
    /// shadow this could detach.
    pub fn detach_shadow<S: Service<Conn = C>>(
        &mut self,
        service: &mut S,
        id: ConnId,
        now: StdInstant,
    ) -> bool {
        if self.mode != Role::Owner {
            return false;
        }
        let i = id.slot as usize;
        if self.pool.generations.get(i) != Some(&id.generation) {
            return false;
        }
        let Some(Slot {
            phase: Phase::Active(a),
            ..
        }) = self.pool.slots[i].as_ref()
        else {
            return false;
        };
        let tuple = a.tuple;
        let shadow = self
            .tracks
            .get(&tuple)
            .is_some_and(|tr| tr.slot == Some(i) && tr.shadow.as_ref().is_some_and(|sh| !sh.live));
        if !shadow {
            return false;
        }
        if self.detached.len() >= self.cfg.admission.max_connections {
            self.end_least_recent_detached();
        }
        let Some(tr) = self.tracks.get_mut(&tuple) else {
            return false;
        };
        let sh = tr.shadow.take();
        // The track no longer names the slot: freeing it keeps the track.
        tr.slot = None;
        tr.detached = Some(Detached {
            last_seen: now,
            client_fin: false,
            client_ack: None,
        });
        self.detached.insert(tuple);
        self.deferring.remove(&tuple);
        if let Some(mut sh) = sh {
            // Held and deferred segments are the client's originals.
            for f in sh.held.drain(..) {
                self.stats.detached_forwarded += 1;
                self.fwd_out.push_back(f);
            }
            for f in sh.take_deferred() {
                self.stats.detached_forwarded += 1;
                self.fwd_out.push_back(f);
            }
        }
        // Out of the socket set before it could send its RST.
        self.abort_slot(service, i, tuple);
        self.top_up();
        self.stats.shadows_detached += 1;
        self.note_detached_due(now + DETACHED_IDLE);
        tracing::debug!(client = %tuple.0, port = tuple.1, ?id, "shadow dropped: its connection's segments go on to the primary");
        true
    }

    /// The primary's connection `key` is gone (its `ConnGone`): end its
    /// detached track, if it has one. Returns whether it had.
    pub fn end_detached(&mut self, key: ConnKey) -> bool {
        let found = self.detached.iter().copied().find(|t| {
            t.0 == key.client_ip
                && t.1 == key.client_port
                && self
                    .tracks
                    .get(t)
                    .is_some_and(|tr| tr.isn == key.client_isn)
        });
        match found {
            Some(t) => {
                self.end_detached_track(&t, "the primary's connection is gone");
                true
            }
            None => false,
        }
    }

    /// Whether `tuple` has a forward-only track.
    pub(super) fn is_detached(&self, tuple: &Tuple) -> bool {
        self.tracks.get(tuple).is_some_and(|t| t.detached.is_some())
    }

    /// A client segment of a detached connection (not a new SYN): to the
    /// primary as it came, within the pass-through budget.
    pub(super) fn forward_detached(&mut self, f: Frame, s: &Seg, tuple: Tuple) {
        if !self.pass_budget(f.data().len()) {
            // The client retransmits.
            self.stats.not_forwarded += 1;
            self.recycle(f);
            return;
        }
        let now = self.last_poll;
        if let Some(d) = self
            .tracks
            .get_mut(&tuple)
            .and_then(|t| t.detached.as_mut())
        {
            d.last_seen = now;
            d.client_fin |= s.has(FIN);
            if s.has(ACK) && d.client_ack.is_none_or(|a| seg::seq_ge(s.ack, a)) {
                d.client_ack = Some(s.ack);
            }
            let due = d.due();
            self.note_detached_due(due);
        }
        self.stats.detached_forwarded += 1;
        self.fwd_out.push_back(f);
        if s.has(RST) {
            self.end_detached_track(&tuple, "the client reset it");
        }
    }

    /// End a detached connection's track.
    pub(super) fn end_detached_track(&mut self, tuple: &Tuple, why: &str) {
        if self.is_detached(tuple) {
            tracing::debug!(client = %tuple.0, port = tuple.1, why, "detached connection ended");
            self.untrack(tuple);
        }
    }

    /// At the `max_connections` bound: the detached connection heard from
    /// least recently ends. A scan, but only when one more is detached at
    /// the bound.
    fn end_least_recent_detached(&mut self) {
        let oldest = self
            .detached
            .iter()
            .filter_map(|t| Some((self.tracks.get(t)?.detached?.last_seen, *t)))
            .min();
        if let Some((_, t)) = oldest {
            self.end_detached_track(&t, "room for another one (max_connections)");
        }
    }

    /// Promotion: detached connections cannot be taken over (no shadow
    /// holds their bytes). Their tracks end, so each client's next segment
    /// is answered with an RST here.
    pub(super) fn end_all_detached(&mut self) {
        let all: Vec<Tuple> = self.detached.iter().copied().collect();
        if !all.is_empty() {
            tracing::info!(
                address = %self.cfg.address.address(),
                connections = all.len(),
                "takeover: connections without a shadow (it was dropped) cannot be taken over; their clients are reset when they next send"
            );
        }
        for t in &all {
            let ack = self
                .tracks
                .get(t)
                .and_then(|tr| tr.detached)
                .and_then(|d| d.client_ack);
            if let (Some(ack), Some(mac)) = (ack, self.next_hop_mac(t.0)) {
                let f = seg::build(
                    self.cfg.mac,
                    mac,
                    self.cfg.address.address(),
                    t.0,
                    t.2,
                    t.1,
                    ack,
                    0,
                    RST,
                    0,
                );
                // (Its TCP checksum is the shell's to fill.)
                self.lan_out.push_back(Frame::copy_from(&f));
            }
            self.end_detached_track(t, "takeover");
        }
    }

    fn note_detached_due(&mut self, due: StdInstant) {
        if self.detached_due.is_none_or(|d| due < d) {
            self.detached_due = Some(due);
        }
    }

    /// When the next detached connection may be due to end.
    pub(super) fn detached_due(&self) -> Option<StdInstant> {
        self.detached_due.filter(|_| !self.detached.is_empty())
    }

    /// End the detached connections idle past their limit (a scan of the
    /// detached ones only, when the earliest is due).
    pub(super) fn expire_detached(&mut self, now: StdInstant) {
        if self.detached_due().is_none_or(|d| d > now) {
            return;
        }
        self.detached_due = None;
        let mut expired = Vec::new();
        let mut next: Option<StdInstant> = None;
        for t in &self.detached {
            let Some(d) = self.tracks.get(t).and_then(|tr| tr.detached) else {
                continue;
            };
            let due = d.due();
            if due <= now {
                expired.push(*t);
            } else if next.is_none_or(|n| due < n) {
                next = Some(due);
            }
        }
        self.detached_due = next;
        for t in &expired {
            self.end_detached_track(t, "idle");
        }
    }
}
