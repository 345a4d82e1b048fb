//! The primary side: units logged, held and released on the peer's acks.

use std::collections::VecDeque;

use bytes::Bytes;
use tracing::{debug, trace};

use crate::wire::{Msg, Unit, MAX_UNIT_PAYLOAD};
use crate::{ConnKey, Role, UnitKind};

use super::{
    charge_of, queue_ack, Backpressure, Event, Held, OutConn, ProtocolError, Queued, Replica,
    UNIT_CHARGE_BYTES,
};

impl Replica {
    /// Primary: a cumulative ack.
    pub(super) fn on_ack(&mut self, conn: ConnKey, seq: u64) -> Result<(), ProtocolError> {
        self.counters.acks_received += 1;
        let Some(c) = self.out_conns.get_mut(&conn) else {
            // The connection ended here after the peer sent the ack.
            trace!(%conn, seq, "ack for a connection already gone");
            self.counters.stale_acks += 1;
            return Ok(());
        };
        let outstanding =
            c.replicated && c.held.front().is_some_and(|h| h.seq <= seq) && seq < c.next_seq;
        if !outstanding {
            return Err(ProtocolError::UnknownAck { conn, seq });
        }
        while let Some(h) = c.held.front().copied() {
            if h.seq > seq {
                break;
            }
            c.held.pop_front();
            self.unacked_units -= 1;
            self.unacked_bytes -= h.len;
            self.unacked_charge -= h.len + UNIT_CHARGE_BYTES;
            self.counters.released_units += 1;
            trace!(%conn, seq = h.seq, "unit acked, released");
            self.events.push_back(Queued {
                event: Event::Release { conn, seq: h.seq },
                logged: None,
            });
        }
        Ok(())
    }

    // ---- primary side ----------------------------------------------------

    /// Logs an output unit and returns its per-connection sequence number.
    ///
    /// A primary with a link session queues a `Unit` and holds the unit:
    /// [`Event::Release`] follows the peer's ack (or its death). Any other
    /// node — simplex, peer dead, not yet connected, or a connection that
    /// began while simplex — releases it at once. On `Err` nothing changed.
    pub fn log_unit(
        &mut self,
        conn: ConnKey,
        index: u64,
        kind: UnitKind,
        input_end: u64,
        close_after: bool,
        payload: Bytes,
    ) -> Result<u64, Backpressure> {
        let result = self.try_log_unit(conn, index, kind, input_end, close_after, false, payload);
        if result.is_err() {
            self.counters.refusals += 1;
        }
        result
    }

    /// Logs a *local* final reply: one of a `static` route, which the peer
    /// makes itself from its own copy of the content. Only the unit's place
    /// in the stream travels (index, input end, close) and `digest`, the
    /// content generation this node made the reply from: the peer makes its
    /// copy from that generation or gives the connection's shadow up (a
    /// reload may have changed either node's content meanwhile). Held and
    /// released like any unit; a `static` caller writes the reply without
    /// waiting for the release, a `sync-static` one waits.
    pub fn log_local_unit(
        &mut self,
        conn: ConnKey,
        index: u64,
        input_end: u64,
        close_after: bool,
        digest: [u8; 32],
    ) -> Result<u64, Backpressure> {
        let result = self.try_log_unit(
            conn,
            index,
            UnitKind::Final,
            input_end,
            close_after,
            true,
            Bytes::copy_from_slice(&digest),
        );
        if result.is_err() {
            self.counters.refusals += 1;
        }
        result
    }

    /// Sends this node's routes (policies and digests) to the peer, if a
    /// session is up; the peer gets [`Event::PeerRoutes`].
    pub fn send_routes(&mut self, routes: Vec<crate::wire::RouteDigest>) {
        if let Some(s) = self.session.as_mut() {
            s.queue.push_back(Msg::Routes { routes });
        }
    }

    #[allow(clippy::too_many_arguments)] // the unit's fields, as on the wire
    fn try_log_unit(
        &mut self,
        conn: ConnKey,
        index: u64,
        kind: UnitKind,
        input_end: u64,
        close_after: bool,
        local: bool,
        payload: Bytes,
    ) -> Result<u64, Backpressure> {
        let len = payload.len();
        if len > MAX_UNIT_PAYLOAD {
            return Err(Backpressure::TooLarge {
                len,
                max: MAX_UNIT_PAYLOAD,
            });
        }
        let gone_slots = self.session.as_ref().map_or(0, |s| s.gone_in_queue);
        let replicated = match self.out_conns.get(&conn) {
            Some(c) => c.replicated,
            None => {
                if self.out_conns.len() + gone_slots >= self.cfg.max_conns {
                    return Err(Backpressure::TooManyConns {
                        limit: self.cfg.max_conns,
                    });
                }
                self.role == Role::Primary && self.session.is_some() && !self.leaving
            }
        };
        let len = len as u64;
        let charge = len + UNIT_CHARGE_BYTES;
        if replicated {
            if self.unacked_units > 0
                && self.unacked_charge.saturating_add(charge) > self.cfg.max_unacked_bytes
            {
                return Err(Backpressure::UnackedBytes {
                    limit: self.cfg.max_unacked_bytes,
                });
            }
            if self
                .session
                .as_ref()
                .is_some_and(|s| s.data_queued() >= self.cfg.max_forward_queue)
            {
                return Err(Backpressure::QueueFull {
                    limit: self.cfg.max_forward_queue,
                });
            }
        }
        let c = self.out_conns.entry(conn).or_insert(OutConn {
            next_seq: 0,
            held: VecDeque::new(),
            replicated,
        });
        let seq = c.next_seq;
        c.next_seq += 1;
        match (replicated, self.session.as_mut()) {
            (true, Some(s)) => {
                c.held.push_back(Held { seq, len });
                self.unacked_units += 1;
                self.unacked_bytes += len;
                self.unacked_charge += charge;
                self.counters.logged_units += 1;
                trace!(%conn, seq, len, "unit logged, held for ack");
                s.queue.push_back(Msg::Unit(Unit {
                    conn,
                    seq,
                    index,
                    kind,
                    input_end,
                    close_after,
                    local,
                    payload,
                }));
            }
            _ => {
                self.counters.unreplicated_units += 1;
                self.counters.released_units += 1;
                trace!(%conn, seq, len, "unit released unreplicated");
                self.push_event(Event::Release { conn, seq }, None);
            }
        }
        Ok(seq)
    }

    /// The connection ended here: forget it.
    ///
    /// Primary side: held units are dropped (never released) and, if the
    /// connection was replicated, the peer is told with `ConnGone`. Owner
    /// side: everything received is acknowledged and later units for it are
    /// acknowledged without an event, until the primary's `ConnGone`.
    pub fn conn_gone(&mut self, conn: ConnKey) {
        if let Some(c) = self.out_conns.remove(&conn) {
            for h in &c.held {
                self.unacked_units -= 1;
                self.unacked_bytes -= h.len;
                self.unacked_charge -= h.len + UNIT_CHARGE_BYTES;
            }
            debug!(%conn, dropped_units = c.held.len(), "connection gone");
            if c.replicated {
                if let Some(s) = self.session.as_mut() {
                    s.queue.push_back(Msg::ConnGone { conn });
                    s.gone_in_queue += 1;
                }
            }
        }
        if let Some(c) = self.mirror_conns.get_mut(&conn) {
            if c.gone_local {
                return;
            }
            debug!(%conn, "mirrored connection gone here");
            c.gone_local = true;
            // Queued `Logged` events of this connection stop counting.
            self.next_incarnation += 1;
            c.incarnation = self.next_incarnation;
            if let Some(s) = self.session.as_mut() {
                s.unpolled_units -= c.unpolled_units;
                s.unpolled_charge -= charge_of(c.unpolled_units, c.unpolled_bytes);
                if let Some(last) = c.expected_seq.checked_sub(1) {
                    queue_ack(s, c, conn, last);
                }
            }
            c.unpolled_units = 0;
            c.unpolled_bytes = 0;
        }
    }
}
