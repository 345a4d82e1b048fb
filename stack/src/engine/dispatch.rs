//! How a round reaches sockets: each frame goes to the one socket its
//! 4-tuple names (smoltcp's `TcpDispatch::Only`, a hotpair patch), not to
//! whichever socket a walk over the set finds first; a SYN to a listener
//! taken off the free-listener list; egress and the engine's step run only
//! for the slots of the ready set, and each slot's next timer is queued
//! afterwards (see `ready.rs` and docs/architecture.md, "Cost per active
//! connection").

use std::time::Instant as StdInstant;

use smoltcp::iface::{EgressResult, PollIngressSingleResult, SocketHandle, TcpDispatch};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use super::{Active, Engine, Frame, Phase, Tuple};

impl<C> Engine<C> {
    /// Look at every slot in the next round (after smoltcp's clock jumped).
    pub(super) fn mark_all(&mut self) {
        for i in 0..self.pool.slots.len() {
            if self.pool.slots[i].is_some() {
                self.pool.ready.mark(i);
            }
        }
    }

    pub(super) fn free_listeners(&self) -> usize {
        self.pool.listeners.len()
    }

    /// A free listener for a new SYN to `port`, taken off the list. The
    /// spare listeners are shared by the address's ports (one pool, one
    /// bound): each waits on `cfg.port` and is pointed at the SYN's port
    /// here, as it is handed its one SYN — a free listener holds no
    /// connection, so closing and re-opening it sends nothing.
    pub(super) fn take_listener(&mut self, port: u16) -> Option<usize> {
        while let Some(i) = self.pool.listeners.pop() {
            let Some(slot) = self.pool.slots[i].as_mut() else {
                continue;
            };
            slot.listed = false;
            let free = matches!(
                slot.phase,
                Phase::Listening {
                    half_open: None,
                    ..
                }
            ) && self.sockets.get::<tcp::Socket>(slot.handle).state()
                == tcp::State::Listen;
            if free {
                let sock = self.sockets.get_mut::<tcp::Socket>(slot.handle);
                if sock.listen_endpoint().port != port {
                    sock.abort();
                    super::pool::listen(sock, port);
                }
                return Some(i);
            }
        }
        None
    }

    /// Put slot `i` on the free listener list if it listens, unclaimed.
    pub(super) fn list_listener(&mut self, i: usize) {
        let Some(slot) = self.pool.slots[i].as_mut() else {
            return;
        };
        let free = !slot.listed
            && matches!(
                slot.phase,
                Phase::Listening {
                    half_open: None,
                    ..
                }
            )
            && self.sockets.get::<tcp::Socket>(slot.handle).state() == tcp::State::Listen;
        if free {
            slot.listed = true;
            self.pool.listeners.push(i);
        }
    }

    /// Hand a frame to smoltcp, aimed at the socket of `tuple` if one holds
    /// it (else at none: smoltcp answers with a RST, as it would after
    /// walking every socket in vain).
    pub(super) fn queue_for_stack(&mut self, f: Frame, tuple: Option<&Tuple>) {
        let slot = tuple
            .and_then(|t| self.tracks.get(t))
            .and_then(|tr| tr.slot);
        let target = slot.and_then(|i| self.pool.slots[i].as_ref().map(|s| (i, s.handle)));
        match target {
            Some((i, h)) => {
                if let Some(t) = tuple {
                    self.note_stack_frame(i, t, &f);
                }
                self.dev.rx.push_back((f, TcpDispatch::Only(h), Some(i)))
            }
            None => self.dev.rx.push_back((f, TcpDispatch::NoSocket, None)),
        }
    }

    /// Process the frames queued for smoltcp, each against its one socket.
    pub(super) fn ingress(&mut self, t: Instant) -> bool {
        let mut any = false;
        while let Some((f, dispatch, slot)) = self.dev.rx.front() {
            if let Some(i) = *slot {
                self.pool.ready.mark(i);
            } else if crate::arp::is_arp(f.data()) {
                // A neighbour may be known now.
                self.pool.ready.neighbor_seen();
            }
            self.iface.set_tcp_dispatch(*dispatch);
            match self
                .iface
                .poll_ingress_single(t, &mut self.dev, &mut self.sockets)
            {
                // The device refused (its transmit budget is spent): the
                // frame waits for the next round.
                PollIngressSingleResult::None => break,
                _ => any = true,
            }
        }
        any
    }

    /// Let the ready sockets send, one segment each in turn (as smoltcp's
    /// own egress loop does over all of them), until none has more or the
    /// device is full.
    pub(super) fn egress(&mut self, t: Instant, ready: &[usize]) -> bool {
        let mut any = false;
        let mut sending: Vec<(usize, SocketHandle)> = ready
            .iter()
            .filter_map(|&i| self.pool.slots[i].as_ref().map(|s| (i, s.handle)))
            .collect();
        while !sending.is_empty() {
            let mut k = 0;
            while k < sending.len() {
                let (_, h) = sending[k];
                match self
                    .iface
                    .egress_socket(t, &mut self.dev, &mut self.sockets, h)
                {
                    EgressResult::Emitted => {
                        any = true;
                        k += 1;
                    }
                    EgressResult::Idle => {
                        sending.swap_remove(k);
                    }
                    // The rest go next round (their `poll_at` is now).
                    EgressResult::Exhausted => return any,
                }
            }
        }
        any
    }

    /// After a slot was looked at: queue its next smoltcp timer and its
    /// deadline, or look at it again next round if smoltcp wants it now.
    pub(super) fn schedule(&mut self, i: usize, now: StdInstant) {
        let Some(slot) = self.pool.slots[i].as_ref() else {
            return;
        };
        let t = self.smol_now(now);
        let handle = slot.handle;
        self.pool
            .tx
            .reclaim(self.sockets.get_mut::<tcp::Socket>(handle));
        let Some(slot) = self.pool.slots[i].as_ref() else {
            return;
        };
        match self.iface.socket_poll_at(t, &self.sockets, slot.handle) {
            Some(at) if at <= t => self.pool.ready.mark(i),
            Some(at) => {
                self.pool.ready.set_timer(i, at.total_micros());
                if self
                    .iface
                    .socket_waits_for_neighbor(&self.sockets, slot.handle)
                {
                    self.pool.ready.wait_neighbor(i);
                }
            }
            // Only a segment will wake it: no spurious timer later.
            None => self.pool.ready.clear_timer(i),
        }
        match &slot.phase {
            Phase::Active(Active {
                deadline: Some(d), ..
            }) => self.pool.ready.set_deadline(i, *d),
            Phase::Listening {
                half_open: Some(_),
                since: Some(since),
            } => self
                .pool
                .ready
                .set_deadline(i, *since + self.cfg.admission.half_open_timeout),
            _ => self.pool.ready.clear_deadline(i),
        }
        self.list_listener(i);
    }

    /// Stop tracking `tuple`.
    pub(super) fn untrack(&mut self, tuple: &Tuple) {
        self.detached.remove(tuple);
        if self.tracks.remove(tuple).is_some() {
            if let Some(n) = self.per_source.get_mut(&tuple.0) {
                *n -= 1;
                if *n == 0 {
                    self.per_source.remove(&tuple.0);
                }
            }
        }
    }
}
