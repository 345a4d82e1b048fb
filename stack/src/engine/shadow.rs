//! The shadow path (owner mode): each client segment goes first to a
//! shadow socket, its ACK and SACK edges moved into the shadow's sequence
//! space, and is forwarded to the primary only once the shadow holds its
//! bytes (held while the shadow's data lags, deferred while out of order).

use std::collections::VecDeque;

use crate::seg::{self, Seg, ACK, RST, SYN};

use super::admission::NewSyn;
use super::cookie::CookieAck;
use super::types::{EngineStats, Frame, Tuple};
use super::{Engine, MAX_DEFERRED, MAX_HELD, MAX_SACKED, PASS_THROUGH_BURST, PASS_THROUGH_RATE};

#[derive(Debug, Default)]
pub(super) struct Shadow {
    /// The shadow socket's own ISN (from its SYN-ACK).
    pub(super) isn: Option<u32>,
    /// wire = shadow + offset, for the server's sequence numbers.
    pub(super) offset: Option<u32>,
    /// The shadow's receive point (the ACK it last emitted), client space.
    pub(super) rcv_nxt: Option<u32>,
    /// Bytes the service queued into the shadow socket, and its FIN.
    pub(super) written: u64,
    pub(super) fin: bool,
    pub(super) held: VecDeque<Frame>,
    /// Segments not yet acknowledged by the shadow: forwarded once its ACK
    /// or its SACK covers them.
    deferred: VecDeque<(Span, Frame)>,
    /// Client bytes the shadow holds beyond a hole, as its SACK blocks
    /// reported them (client space, above `rcv_nxt`). smoltcp never drops
    /// what its assembler took, so a reported range stays held.
    sacked: Vec<(u32, u32)>,
    /// The end of what the shadow has sent (its SND.NXT, own space) and
    /// the window it last advertised: what an ACK from it would carry.
    pub(super) snd_end: Option<u32>,
    pub(super) window: u16,
    /// Promoted: its output goes to the LAN.
    pub(super) live: bool,
    /// The client sent a SYN again after the takeover: it never saw the
    /// primary's SYN-ACK, so ours may stand.
    pub(super) syn_again: bool,
}

impl Shadow {
    /// The shadow of a connection opened by a SYN cookie: its SYN-ACK was
    /// the cookie (`iss`), acknowledging the client's SYN (`rcv_nxt`), with
    /// `window` — the primary's socket is made from the same cookie.
    pub(super) fn from_cookie(iss: u32, rcv_nxt: u32, window: u16) -> Self {
        Shadow {
            isn: Some(iss),
            rcv_nxt: Some(rcv_nxt),
            snd_end: Some(iss.wrapping_add(1)),
            window,
            ..Shadow::default()
        }
    }

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
    pub(super) fn note_sack(&mut self, (l, r): (u32, u32)) {
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
    pub(super) fn prune_sacked(&mut self) {
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

    /// The segments deferred until the shadow held them (client
    /// originals), taken.
    pub(super) fn take_deferred(&mut self) -> impl Iterator<Item = Frame> {
        std::mem::take(&mut self.deferred)
            .into_iter()
            .map(|(_, f)| f)
    }

    /// End of the shadow's queued data in its own sequence space: an ACK
    /// beyond it would make smoltcp drop the whole segment, payload included.
    pub(super) fn queued_end(&self) -> Option<u32> {
        let isn = self.isn?;
        Some(
            isn.wrapping_add(1)
                .wrapping_add(self.written as u32)
                .wrapping_add(u32::from(self.fin)),
        )
    }
}

#[derive(Debug)]
pub(super) struct Track {
    pub(super) isn: u32,
    /// The pool slot holding it, once a socket took the SYN.
    pub(super) slot: Option<usize>,
    pub(super) shadow: Option<Shadow>,
    /// Opened from the LAN by this node serving alone (not forwarded by
    /// an owner): after a rejoin as primary, its frames may still reach
    /// this node on the LAN until the owner's announcement reaches the
    /// client, and are taken (see `admit`).
    pub(super) local: bool,
    /// Owner: its shadow was given up and its segments go to the primary
    /// as they come (see `detached.rs`); no slot, no shadow.
    pub(super) detached: Option<super::detached::Detached>,
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
pub(super) fn translate_ack(f: &mut Frame, s: &Seg, off: Option<u32>) {
    if let Some(off) = off {
        seg::set_ack(f.data_mut(), s, s.ack.wrapping_sub(off));
        seg::shift_sack(f.data_mut(), s, off);
    }
}

/// The client sequence space a segment occupies.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    start: u32,
    end: u32,
    fin: bool,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum FwdRule {
    /// SYN: only if a shadow socket took it.
    Syn,
    /// Data or FIN: only once the shadow holds it (see [`Shadow::holds`]).
    Covered(Span),
    /// Pure ACK, RST: always.
    Always,
}

fn hold(sh: &mut Shadow, f: Frame, stats: &mut EngineStats) {
    if sh.held.len() < MAX_HELD {
        sh.held.push_back(f);
        stats.held += 1;
    } else {
        stats.held_dropped += 1;
    }
}

impl<C> Engine<C> {
    /// Apply [`Shadow::admission`] to a segment of a tracked shadow: the
    /// frame back with the offset for its ACK, or `None` when it was held
    /// or dropped.
    pub(super) fn shadow_admit(
        &mut self,
        f: Frame,
        s: &Seg,
        tuple: &Tuple,
    ) -> Option<(Frame, Option<u32>)> {
        let tr = self.tracks.get_mut(tuple)?;
        let slot = tr.slot;
        let sh = tr.shadow.as_mut()?;
        match sh.admission(s) {
            Admission::Ready(off) => Some((f, off)),
            Admission::Hold => {
                let live = sh.live.then(|| sh.offset.unwrap_or(0));
                hold(sh, f, &mut self.stats);
                // A live shadow's client may be ahead of what it will ever
                // queue (a split brain: see `diverge.rs`).
                if let (Some(off), Some(i)) = (live, slot) {
                    self.note_client_ack(i, tuple, s, s.ack.wrapping_sub(off), off);
                }
                None
            }
            Admission::Drop => {
                self.recycle(f);
                None
            }
        }
    }

    /// Whether `len` more bytes may pass through to the primary now (a
    /// token bucket: `PASS_THROUGH_RATE` bytes a second, bursts of
    /// `PASS_THROUGH_BURST`).
    pub(super) fn pass_budget(&mut self, len: usize) -> bool {
        let now = self.last_poll;
        let dt = now.saturating_duration_since(self.pass_refilled);
        let add = (dt.as_micros() as u64).saturating_mul(PASS_THROUGH_RATE) / 1_000_000;
        if add > 0 {
            self.pass_tokens = (self.pass_tokens + add).min(PASS_THROUGH_BURST);
            self.pass_refilled = now;
        }
        let len = len as u64;
        if self.pass_tokens < len {
            return false;
        }
        self.pass_tokens -= len;
        true
    }

    /// Whether the primary may serve connections this node never saw open:
    /// it took the address over during its life (its `Hello` epoch is not
    /// 0). Only then do segments of unknown connections pass through.
    pub fn set_pass_through(&mut self, on: bool) {
        self.pass_through = on;
    }

    pub(super) fn admit_owner(&mut self, f: Frame, refusing: bool) -> Option<Frame> {
        let (f, s, tuple) = self.classify(f)?;
        if self.is_detached(&tuple) {
            if !s.has(SYN) || s.has(ACK) {
                self.forward_detached(f, &s, tuple);
                return None;
            }
            // A new connection from the same client port: the old one is
            // over for its client.
            self.end_detached_track(&tuple, "a new SYN on its tuple");
        }
        if s.has(SYN) && !s.has(ACK) {
            if self.syn_is_duplicate(&tuple) {
                // A handshake served here (promoted before a rejoin), as in
                // simplex: its own SYN-ACK retransmission answers. Sent on,
                // the SYN made the rejoined primary open a second
                // connection on the client's port, with another ISN (found
                // by the simulation's `lan` variant).
                let here = self
                    .tracks
                    .get_mut(&tuple)
                    .filter(|t| t.shadow.as_ref().is_none_or(|sh| sh.live));
                if let Some(tr) = here {
                    if let Some(sh) = tr.shadow.as_mut().filter(|sh| sh.offset.is_none()) {
                        sh.syn_again = true;
                    }
                    self.stats.duplicate_syn += 1;
                    self.recycle(f);
                    return None;
                }
                // Not for our shadow (it has the SYN); the primary's SYN-ACK
                // may have been lost, so let it see the retransmission.
                self.stats.duplicate_syn += 1;
                self.fwd_out.push_back(f);
                return None;
            }
            let f = match self.admit_new_syn(f, &s, tuple, true, refusing) {
                NewSyn::Tracked(f) => f,
                NewSyn::Consumed => return None,
                NewSyn::Wait(f) => return Some(f),
            };
            self.pending_fwd
                .push((tuple, Frame::copy_from(f.data()), FwdRule::Syn));
            self.queue_for_stack(f, Some(&tuple));
            return None;
        }
        if self.cookie_ack(&s, tuple) == CookieAck::Drop {
            self.recycle(f);
            return None;
        }
        let Some(tr) = self.tracks.get_mut(&tuple) else {
            // A connection this node never saw open (it started before we
            // did): the primary serves it unreplicated; pass it through —
            // if the primary can hold such connections at all, within the
            // budget; never an RST (it has nothing to reset).
            if s.has(RST) || !self.pass_through || !self.pass_budget(f.data().len()) {
                tracing::trace!(client = %tuple.0, port = tuple.1, "no track: dropped");
                self.stats.unknown_dropped += 1;
                self.recycle(f);
                return None;
            }
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

    /// Forward to the primary the client segments the shadow now holds.
    ///
    /// A segment beyond a hole goes as soon as the shadow SACKs it, not
    /// only once the hole is filled: the primary then stores it too and
    /// sends the client the duplicate ACKs (with SACK) that trigger a fast
    /// retransmission of the missing bytes. Without that, every lost client
    /// segment would cost the client a retransmission timeout, with backoff.
    /// The primary still acknowledges cumulatively only what it has in
    /// order, which the shadow has too.
    pub(super) fn decide_forwarding(&mut self) {
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
            let tr = self.tracks.get(&tuple);
            // Detached since it was queued: the primary gets it as it is.
            let detached = tr.is_some_and(|t| t.detached.is_some());
            let sh = tr.and_then(|t| t.shadow.as_ref());
            let ok = detached
                || match rule {
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
}
