//! Connections whose client is ahead of this node: it acknowledges bytes
//! this node never queued, and keeps doing so.
//!
//! That happens after a true split brain (docs/replication-protocol.md,
//! "Split brain"): both nodes served a connection at once for a while, the
//! loser sent the client bytes the survivor never sent, then the loser
//! died. The client's ACKs are beyond everything the survivor has queued;
//! smoltcp (RFC 9293) drops each such segment and answers with an ACK (an
//! owner node holds it, waiting for its service to queue that far: it
//! never will); the survivor retransmits from its SND.UNA, old data to the
//! client, which acknowledges its own, higher, receive point again. Nothing
//! ever moves: the connection hangs until the client gives up. An RST is
//! far better than that silence, and in general nothing better is possible:
//! the bytes the client holds beyond the survivor's stream are not the
//! survivor's to vouch for (another reply, other headers, another TLS
//! record), so it cannot carry on byte-exact.
//!
//! A legitimate takeover looks different: a promoted shadow's or a claiming
//! primary's SND.NXT may lag the client's ACK (the dead peer had sent
//! further), but that ACK is within what this node has queued — smoltcp
//! takes it at once and SND.UNA moves — or, on an owner node, the segment
//! waits for the service to queue the same bytes, which it holds (the
//! primary sends nothing its peer does not hold). Either way SND.UNA moves
//! within a round or two. So a connection is reset only when, for
//! [`DIVERGED_AFTER`], every client segment acknowledged beyond what it has
//! queued and SND.UNA never moved.

use std::time::{Duration, Instant as StdInstant};

use smoltcp::socket::tcp;
use smoltcp::wire::EthernetAddress;

use crate::seg::{self, ACK, RST};

use super::pool::{Phase, Slot};
use super::types::{Frame, Role, Service, Tuple};
use super::Engine;

/// How long a connection may get nothing but ACKs of bytes it has not
/// queued, SND.UNA standing still, before it is reset. A legitimate
/// catch-up moves SND.UNA within a round or two (see the module's text):
/// what it waits for is one client ACK, an RTT away, and at worst the
/// takeover's second retransmission, one minimum RTO (smoltcp's: 1 s)
/// after the first. Two seconds is twice that: no takeover the engine
/// survives comes near it, and a client stuck behind a diverged stream
/// learns of it long before its own timeouts (curl's, a browser's: tens
/// of seconds), in a time a person still waits.
pub const DIVERGED_AFTER: Duration = Duration::from_secs(2);

/// Client segments ahead that make a diverged stream: "keeps sending", not
/// a single stray ACK (with the bound above, a node paused past it sees the
/// backlog of one round as a whole: those are counted first, and SND.UNA
/// moves there if it is going to).
const DIVERGED_MIN_SEGMENTS: u32 = 3;

/// The client must still be talking to this node when it is reset: its
/// last segment ahead came at most this long ago. In a split brain the
/// client may acknowledge to the node that is behind for a while (its ARP
/// cache points there), then leave for the other, which serves it: the
/// copy left behind stops hearing from it and must not reset a connection
/// served elsewhere. (A client stuck on a node that cannot serve it keeps
/// answering that node's retransmissions and challenge ACKs.)
const DIVERGED_RECENT: Duration = Duration::from_secs(1);

/// How often the warning may be logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A connection seen ahead: since when, where SND.UNA stood then, and what
/// the RST needs (the client's latest ACK and next sequence number, wire
/// space, and its MAC).
#[derive(Debug, Clone, Copy)]
pub(super) struct Watch {
    generation: u32,
    since: StdInstant,
    /// When the last client segment ahead arrived.
    last: StdInstant,
    una: u32,
    segments: u32,
    mac: EthernetAddress,
    ack_wire: u32,
    next_seq: u32,
}

impl<C> Engine<C> {
    /// Whether this node serves the connection of `tuple` alone (nobody
    /// else's copy behind it): serving the address alone (claimed or
    /// promoted), a shadow promoted before a rejoin, or a primary's own
    /// connection opened while it served alone.
    fn served_alone(&self, tuple: &Tuple) -> bool {
        let tr = self.tracks.get(tuple);
        match self.mode {
            Role::Simplex => true,
            Role::Owner => tr.is_some_and(|t| t.shadow.as_ref().is_some_and(|sh| sh.live)),
            Role::Primary => tr.is_some_and(|t| t.local),
        }
    }

    /// The ACK beyond which smoltcp refuses a client's segment: the end of
    /// what the socket has queued or sent (and its FIN, once it closed).
    fn ack_limit(sock: &tcp::Socket<'_>) -> u32 {
        let una = sock.snd_una().0 as u32;
        let nxt = sock.snd_nxt().0 as u32;
        let queued = una.wrapping_add(sock.send_queue() as u32);
        let end = if seg::seq_ge(nxt, queued) {
            nxt
        } else {
            queued
        };
        let fin = matches!(
            sock.state(),
            tcp::State::FinWait1
                | tcp::State::FinWait2
                | tcp::State::Closing
                | tcp::State::LastAck
                | tcp::State::TimeWait
        );
        end.wrapping_add(u32::from(fin))
    }

    /// A client segment `s` of slot `i` (tuple `tuple`), its ACK `ack` in
    /// the socket's sequence space (moved by `off` from the wire's), about
    /// to reach smoltcp or to be held: watch the connection while its ACKs
    /// are beyond what it has queued, stop watching at the first that is
    /// not.
    pub(super) fn note_client_ack(
        &mut self,
        i: usize,
        tuple: &Tuple,
        s: &seg::Seg,
        ack: u32,
        off: u32,
    ) {
        if !s.has(ACK) || s.has(RST) || !self.served_alone(tuple) {
            return;
        }
        let Some(Slot {
            handle,
            phase: Phase::Active(_),
            ..
        }) = self.pool.slots.get(i).and_then(|s| s.as_ref())
        else {
            return;
        };
        let sock = self.sockets.get::<tcp::Socket>(*handle);
        let una = sock.snd_una().0 as u32;
        let ahead = !seg::seq_ge(Self::ack_limit(sock), ack);
        if !ahead {
            self.diverging.remove(&i);
            return;
        }
        let generation = self.pool.generations[i];
        let now = self.last_poll;
        let w = self
            .diverging
            .entry(i)
            .and_modify(|w| {
                if w.generation != generation || w.una != una {
                    // Another connection in the slot, or SND.UNA moved
                    // since: a new watch.
                    w.generation = generation;
                    w.since = now;
                    w.una = una;
                    w.segments = 0;
                }
            })
            .or_insert(Watch {
                generation,
                since: now,
                last: now,
                una,
                segments: 0,
                mac: s.src_mac,
                ack_wire: 0,
                next_seq: 0,
            });
        w.segments += 1;
        w.last = now;
        w.mac = s.src_mac;
        w.ack_wire = ack.wrapping_add(off);
        w.next_seq = s.seq_end();
        if w.segments == 1 {
            tracing::debug!(
                client = %tuple.0,
                port = tuple.1,
                ack,
                una,
                limit = Self::ack_limit(sock),
                "client acknowledges beyond what this node queued: watching"
            );
        }
    }

    /// A client frame of slot `i` about to reach smoltcp, its ACK already
    /// in the socket's space (see [`Engine::note_client_ack`]).
    pub(super) fn note_stack_frame(&mut self, i: usize, tuple: &Tuple, f: &Frame) {
        if !self.served_alone(tuple) {
            return;
        }
        let Some(s) = seg::parse(f.data()) else {
            return;
        };
        let off = self
            .tracks
            .get(tuple)
            .and_then(|t| t.shadow.as_ref())
            .and_then(|sh| sh.offset)
            .unwrap_or(0);
        self.note_client_ack(i, tuple, &s, s.ack, off);
    }

    /// When the earliest watch that may fire expires (for
    /// [`Engine::poll_delay`]). One with too few segments yet waits for
    /// the next (a frame wakes the engine anyway); a silent node waits to
    /// speak again (which another event brings): timers for those would
    /// be due at once, and for ever.
    pub(super) fn diverged_due(&self, now: StdInstant) -> Option<StdInstant> {
        if self.silent() {
            return None;
        }
        self.diverging
            .values()
            .filter(|w| w.segments >= DIVERGED_MIN_SEGMENTS)
            .map(|w| w.since + DIVERGED_AFTER)
            // One already due that did not fire waits for the client's
            // next segment (it went quiet here).
            .filter(|&at| at > now)
            .min()
    }

    /// After a round: drop the watches whose connection moved on (SND.UNA
    /// moved, or the connection is gone), reset the ones past
    /// [`DIVERGED_AFTER`].
    pub(super) fn check_diverged<S: Service<Conn = C>>(
        &mut self,
        service: &mut S,
        now: StdInstant,
    ) {
        if self.diverging.is_empty() {
            return;
        }
        let mut due = Vec::new();
        let watched: Vec<(usize, Watch)> = self.diverging.iter().map(|(&i, &w)| (i, w)).collect();
        for (i, w) in watched {
            let live = self.pool.generations.get(i) == Some(&w.generation)
                && matches!(
                    self.pool.slots[i].as_ref(),
                    Some(Slot {
                        phase: Phase::Active(_),
                        ..
                    })
                );
            let moved = live
                && self.pool.slots[i].as_ref().is_some_and(|slot| {
                    self.sockets.get::<tcp::Socket>(slot.handle).snd_una().0 as u32 != w.una
                });
            if !live || moved {
                self.diverging.remove(&i);
                continue;
            }
            // A silent node's RST would not leave: wait until it may speak.
            if now >= w.since + DIVERGED_AFTER
                && w.segments >= DIVERGED_MIN_SEGMENTS
                && now.saturating_duration_since(w.last) <= DIVERGED_RECENT
                && !self.silent()
            {
                due.push((i, w));
            }
        }
        for (i, w) in due {
            self.diverging.remove(&i);
            self.reset_diverged(service, i, w, now);
        }
    }

    /// Reset a diverged connection: an RST the client takes (its sequence
    /// number is the client's own ACK: its receive point, RFC 5961's exact
    /// match — smoltcp's own RST would carry our SND.NXT, behind it, and be
    /// ignored), then the socket dropped without a word of its own.
    fn reset_diverged<S: Service<Conn = C>>(
        &mut self,
        service: &mut S,
        i: usize,
        w: Watch,
        now: StdInstant,
    ) {
        let Some(slot) = self.pool.slots[i].as_mut() else {
            return;
        };
        let Phase::Active(a) = &slot.phase else {
            return;
        };
        let tuple = a.tuple;
        let (client, client_port, port) = tuple;
        let f = seg::build(
            self.cfg.mac,
            w.mac,
            self.cfg.address.address(),
            client,
            port,
            client_port,
            w.ack_wire,
            w.next_seq,
            RST | ACK,
            0,
        );
        // (Its TCP checksum is the shell's to fill, as for every frame.)
        self.lan_out.push_back(Frame::copy_from(&f));
        if self.abort_slot(service, i, tuple) {
            self.stats.diverged_reset += 1;
        }
        self.top_up();
        let warn = self
            .diverged_warned
            .is_none_or(|(t, _)| now.saturating_duration_since(t) >= WARN_EVERY);
        if warn {
            let since_last = self.diverged_warned.map_or(0, |(_, n)| n);
            self.diverged_warned = Some((now, 0));
            tracing::warn!(
                client = %client,
                port = client_port,
                client_ack = w.ack_wire,
                segments = w.segments,
                others_since_last_warning = since_last,
                total = self.stats.diverged_reset,
                "connection reset: the client acknowledges bytes this node never sent (both \
                 nodes served it in a split brain) and nothing moved for {:?}; it cannot go on \
                 byte-exact",
                DIVERGED_AFTER
            );
        } else if let Some((_, n)) = self.diverged_warned.as_mut() {
            *n += 1;
        }
    }
}
