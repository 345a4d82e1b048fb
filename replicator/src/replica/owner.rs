//! The owner side: client frames to the primary, units mirrored from
//! it, and the events the caller takes.

use bytes::Bytes;
use tracing::trace;

use crate::wire::{Msg, MAX_FRAME_LEN};
use crate::{ConnKey, Role};

use super::{
    queue_ack, Backpressure, Event, MirrorConn, ProtocolError, Replica, UNIT_CHARGE_BYTES,
};

impl Replica {
    /// Owner: a unit from the primary, for an `Event::Logged`.
    pub(super) fn on_unit(&mut self, unit: crate::wire::Unit) -> Result<(), ProtocolError> {
        let (conn, seq, len) = (unit.conn, unit.seq, unit.payload.len() as u64);
        let Some(s) = self.session.as_mut() else {
            return Err(ProtocolError::NotConnected);
        };
        let expected = self.mirror_conns.get(&conn).map_or(0, |c| c.expected_seq);
        if seq != expected {
            return Err(ProtocolError::SeqGap {
                conn,
                expected,
                got: seq,
            });
        }
        if !self.mirror_conns.contains_key(&conn) && self.mirror_conns.len() >= self.cfg.max_conns {
            return Err(ProtocolError::TooManyConns {
                limit: self.cfg.max_conns,
            });
        }
        let gone_local = self.mirror_conns.get(&conn).is_some_and(|c| c.gone_local);
        let charge = len + UNIT_CHARGE_BYTES;
        if !gone_local
            && s.unpolled_units > 0
            && s.unpolled_charge.saturating_add(charge) > self.cfg.max_unacked_bytes
        {
            return Err(ProtocolError::WindowExceeded {
                bytes: s.unpolled_charge.saturating_add(charge),
                limit: self.cfg.max_unacked_bytes,
            });
        }
        let next_incarnation = &mut self.next_incarnation;
        let c = self.mirror_conns.entry(conn).or_insert_with(|| {
            *next_incarnation += 1;
            MirrorConn {
                expected_seq: 0,
                acked: None,
                gone_local: false,
                incarnation: *next_incarnation,
                unpolled_units: 0,
                unpolled_bytes: 0,
            }
        });
        c.expected_seq += 1;
        self.counters.mirrored_units += 1;
        if c.gone_local {
            // The caller no longer wants it: acknowledge so the primary
            // does not hold the client's reply.
            trace!(%conn, seq, "unit for a connection gone here, acked");
            queue_ack(s, c, conn, seq);
            return Ok(());
        }
        trace!(%conn, seq, len, "unit logged");
        c.unpolled_units += 1;
        c.unpolled_bytes += len;
        s.unpolled_units += 1;
        s.unpolled_charge += charge;
        let tag = (c.incarnation, len);
        self.push_event(Event::Logged(unit), Some(tag));
        Ok(())
    }

    /// The next event for the caller.
    ///
    /// At the owner node, taking an [`Event::Logged`] queues its ack.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let q = self.events.pop_front()?;
        if matches!(
            q.event,
            Event::Frame { .. } | Event::ConnGone { .. } | Event::PeerRoutes { .. }
        ) {
            self.peer_events -= 1;
        }
        if let (Some((incarnation, len)), Event::Logged(u)) = (q.logged, &q.event) {
            self.settle_logged(u.conn, u.seq, incarnation, len);
        }
        Some(q.event)
    }

    /// Owner: the caller took a `Logged` event; release its window share
    /// and acknowledge it, unless it no longer counts (connection gone or a
    /// newer session).
    fn settle_logged(&mut self, conn: ConnKey, seq: u64, incarnation: u64, len: u64) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(c) = self.mirror_conns.get_mut(&conn) else {
            return;
        };
        if c.incarnation != incarnation {
            return;
        }
        c.unpolled_units -= 1;
        c.unpolled_bytes -= len;
        s.unpolled_units -= 1;
        s.unpolled_charge -= len + UNIT_CHARGE_BYTES;
        queue_ack(s, c, conn, seq);
    }

    // ---- owner side ----------------------------------------------------

    /// Owner: queue a client frame for the primary.
    ///
    /// On `Err` nothing was queued: the caller drops the frame (TCP
    /// retransmits) or, for [`Backpressure::NoPeer`], serves it locally.
    pub fn forward_frame(&mut self, frame: Bytes) -> Result<(), Backpressure> {
        let result = self.try_forward_frame(frame);
        if result.is_err() {
            self.counters.refusals += 1;
        }
        result
    }

    fn try_forward_frame(&mut self, frame: Bytes) -> Result<(), Backpressure> {
        if frame.len() > MAX_FRAME_LEN {
            return Err(Backpressure::TooLarge {
                len: frame.len(),
                max: MAX_FRAME_LEN,
            });
        }
        let s = match (&mut self.session, self.role) {
            (Some(s), Role::Owner) => s,
            _ => return Err(Backpressure::NoPeer),
        };
        if s.data_queued() >= self.cfg.max_forward_queue {
            return Err(Backpressure::QueueFull {
                limit: self.cfg.max_forward_queue,
            });
        }
        if s.frame_bytes + frame.len() > self.cfg.max_forward_bytes {
            return Err(Backpressure::ForwardBytes {
                limit: self.cfg.max_forward_bytes,
            });
        }
        s.frame_bytes += frame.len();
        s.queue.push_back(Msg::Frame { frame });
        self.counters.forwarded_frames += 1;
        Ok(())
    }
}
