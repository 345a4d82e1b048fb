//! The link side: sessions, the peer's messages, timers, heartbeats and
//! the messages to send; the failure decisions.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::{debug, info, trace, warn};

use crate::detector::{DetectorEvent, FailureDetector};
use crate::wire::{self, Msg};
use crate::Role;

use super::{charge_of, Event, ProtocolError, Queued, Replica, Session};

impl Replica {
    // ---- link ------------------------------------------------------------

    /// The link to the peer is up: queue `Hello`, start the failure detector.
    ///
    /// Restores the configured role after a takeover (rejoin). If a session
    /// was still open, the old link counts as lost first ([`Event::PeerDead`]).
    /// A node configured [`Role::Simplex`] ignores links.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.cfg.role == Role::Simplex {
            debug!("simplex node ignores a replication link");
            return;
        }
        if self.session.is_some() {
            debug!("new link while a session is open; the old one counts as lost");
            self.handle_link_lost(now);
        }
        self.role = self.cfg.role;
        self.last_heard = now;
        self.cold_start = None;
        self.leaving = false;
        self.peer_leaving = false;
        debug!(role = ?self.role, "link up, sending hello");
        self.session = Some(Session {
            detector: FailureDetector::new(
                self.cfg.heartbeat_interval,
                self.cfg.heartbeat_timeout,
                now,
            ),
            peer: None,
            peer_epoch: 0,
            hello_pending: true,
            fit_pending: true,
            peer_fit: None,
            heartbeat_pending: None,
            next_heartbeat_seq: 0,
            acks: BTreeMap::new(),
            queue: super::queue::LinkQueue::default(),
            gone_in_queue: 0,
            frame_bytes: 0,
            unpolled_units: 0,
            unpolled_charge: 0,
        });
    }

    /// The link closed or failed (or a connection attempt the caller gave up
    /// on). The peer is declared dead at once: see the module docs for why.
    /// No-op when already simplex.
    pub fn handle_link_lost(&mut self, now: Instant) {
        if self.role == Role::Simplex {
            return;
        }
        let since_heard = now.saturating_duration_since(self.last_heard);
        self.peer_dead(since_heard, self.peer_leaving);
    }

    /// A message from the peer. On `Err` the caller drops the link and calls
    /// [`Replica::handle_link_lost`]; the message had no effect other than
    /// counting as a sign of life.
    pub fn handle_peer_msg(&mut self, msg: Msg, now: Instant) -> Result<(), ProtocolError> {
        let result = self.on_peer_msg(msg, now);
        if let Err(e) = &result {
            warn!(error = %e, "replication peer broke the protocol");
        }
        result
    }

    fn on_peer_msg(&mut self, msg: Msg, now: Instant) -> Result<(), ProtocolError> {
        let role = self.role;
        let Some(s) = self.session.as_mut() else {
            return Err(ProtocolError::NotConnected);
        };
        s.detector.handle_heard(now);
        if now > self.last_heard {
            self.last_heard = now;
        }
        trace!(msg = msg.name(), "from peer");
        if let Msg::Hello {
            version,
            node,
            role: theirs,
            epoch,
            mac,
        } = msg
        {
            if s.peer.is_some() {
                return Err(ProtocolError::DuplicateHello);
            }
            if version != wire::VERSION {
                return Err(ProtocolError::BadVersion { got: version });
            }
            let wanted = match role {
                Role::Primary => Role::Owner,
                Role::Owner => Role::Primary,
                // No session exists while simplex.
                Role::Simplex => return Err(ProtocolError::NotConnected),
            };
            if theirs != wanted {
                return Err(ProtocolError::RoleMismatch { ours: role, theirs });
            }
            info!(peer = %node, peer_epoch = epoch, ?role, "replication peer up");
            s.peer = Some(node.clone());
            s.peer_epoch = epoch;
            self.push_event(Event::PeerUp { node, mac }, None);
            return Ok(());
        }
        if s.peer.is_none() {
            return Err(ProtocolError::HelloExpected { got: msg.name() });
        }
        let unexpected = ProtocolError::UnexpectedMsg {
            msg: msg.name(),
            role,
        };
        match msg {
            Msg::Hello { .. } => Err(ProtocolError::DuplicateHello),
            Msg::Heartbeat { .. } => {
                self.counters.heartbeats_received += 1;
                Ok(())
            }
            Msg::Lan { up } => {
                if s.peer_fit != Some(up) {
                    debug!(up, "peer can serve");
                }
                s.peer_fit = Some(up);
                Ok(())
            }
            // The owner leaves: this primary claims the address at once but
            // keeps taking the frames the owner still forwards (those
            // already on their way) until it closes the link. The primary
            // leaves: the owner takes over at once.
            Msg::Leaving if role == Role::Primary => {
                self.peer_leaving = true;
                self.push_event(Event::PeerLeaving, None);
                Ok(())
            }
            Msg::Leaving => {
                self.peer_dead(Duration::ZERO, true);
                Ok(())
            }
            Msg::Frame { frame } => {
                if role != Role::Primary {
                    return Err(unexpected);
                }
                self.check_peer_backlog()?;
                self.counters.received_frames += 1;
                self.peer_events += 1;
                self.push_event(Event::Frame { frame }, None);
                Ok(())
            }
            Msg::Unit(unit) => {
                if role != Role::Owner {
                    return Err(unexpected);
                }
                self.on_unit(unit)
            }
            Msg::Routes { routes } => {
                self.check_peer_backlog()?;
                self.peer_events += 1;
                self.push_event(Event::PeerRoutes { routes }, None);
                Ok(())
            }
            Msg::UnitAck { conn, seq } => {
                if role != Role::Primary {
                    return Err(unexpected);
                }
                self.on_ack(conn, seq)
            }
            Msg::ConnGone { conn } => {
                if role != Role::Owner {
                    return Err(unexpected);
                }
                self.check_peer_backlog()?;
                if let Some(c) = self.mirror_conns.remove(&conn) {
                    if let Some(s) = self.session.as_mut() {
                        s.unpolled_units -= c.unpolled_units;
                        s.unpolled_charge -= charge_of(c.unpolled_units, c.unpolled_bytes);
                    }
                }
                debug!(%conn, "primary reports connection gone");
                self.peer_events += 1;
                self.push_event(Event::ConnGone { conn }, None);
                Ok(())
            }
        }
    }

    fn check_peer_backlog(&self) -> Result<(), ProtocolError> {
        if self.peer_events >= self.cfg.max_forward_queue {
            return Err(ProtocolError::EventBacklog {
                limit: self.cfg.max_forward_queue,
            });
        }
        Ok(())
    }

    /// Bytes arrived on the link, whether or not they completed a message:
    /// the peer is alive. Liveness must not depend on how much data the
    /// link carries (DESIGN §5): a heartbeat queued behind a large logged
    /// reply reaches the peer only after it, and the peer would otherwise
    /// hear nothing — and declare a live node dead — while the reply's
    /// bytes are streaming in.
    pub fn handle_link_progress(&mut self, now: Instant) {
        if let Some(s) = self.session.as_mut() {
            s.detector.handle_heard(now);
            if now > self.last_heard {
                self.last_heard = now;
            }
        }
    }

    /// Advances timers to `now`: heartbeats and the failure detector.
    pub fn handle_timeout(&mut self, now: Instant) {
        loop {
            let Some(s) = self.session.as_mut() else {
                if let Some(start) = self.cold_start {
                    if now >= start + self.cfg.cold_start_wait {
                        self.cold_start = None;
                        self.peer_absent(now.saturating_duration_since(start));
                    }
                }
                return;
            };
            match s.detector.handle_timeout(now) {
                None => return,
                Some(DetectorEvent::SendHeartbeat) => {
                    s.heartbeat_pending = Some(s.next_heartbeat_seq);
                    s.next_heartbeat_seq += 1;
                }
                Some(DetectorEvent::PeerDead { since_heard }) => {
                    self.peer_dead(since_heard, self.peer_leaving);
                }
            }
        }
    }

    /// When [`Replica::handle_timeout`] should next be called. `None` with no
    /// link session. May be in the past: call at once.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.session {
            Some(s) => s.detector.poll_timeout(),
            None => self
                .cold_start
                .map(|start| start + self.cfg.cold_start_wait),
        }
    }

    /// The next message for the link: `Hello` first, then heartbeats, acks and
    /// the queued `Frame`/`Unit`/`ConnGone` messages in order.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Msg> {
        let s = self.session.as_mut()?;
        if self.leaving {
            // A leaving primary: what was queued up to its `Leaving`, then
            // nothing (the owner took over at `Leaving`).
            let msg = s.queue.pop_front()?;
            s.taken(&msg);
            if matches!(msg, Msg::Leaving) {
                s.queue.clear();
                s.gone_in_queue = 0;
                s.frame_bytes = 0;
            }
            return Some(msg);
        }
        if s.hello_pending {
            s.hello_pending = false;
            return Some(Msg::Hello {
                version: wire::VERSION,
                node: self.cfg.node.clone(),
                role: self.role,
                epoch: self.takeovers,
                mac: self.cfg.mac,
            });
        }
        if std::mem::take(&mut s.fit_pending) {
            return Some(Msg::Lan { up: self.fit });
        }
        if let Some(seq) = s.heartbeat_pending.take() {
            self.counters.heartbeats_sent += 1;
            return Some(Msg::Heartbeat { seq });
        }
        if let Some((conn, seq)) = s.acks.pop_first() {
            self.counters.acks_sent += 1;
            return Some(Msg::UnitAck { conn, seq });
        }
        let msg = s.queue.pop_front()?;
        s.taken(&msg);
        Some(msg)
    }

    /// Whether this node can serve its clients (`true`: its LAN check and
    /// its application check pass): the peer is told (`Msg::Lan`) now and
    /// after every `Hello`, and hands nothing over to a node that cannot.
    pub fn set_fit(&mut self, fit: bool) {
        if self.fit != fit {
            self.fit = fit;
            if let Some(s) = self.session.as_mut() {
                s.fit_pending = true;
            }
        }
    }

    /// Whether the peer said it can serve (`None`: not said in this
    /// session, or no session).
    pub fn peer_fit(&self) -> Option<bool> {
        self.session.as_ref().and_then(|s| s.peer_fit)
    }

    /// The peer is up and said it can serve: it may be handed this
    /// address (and requests this node's application could not take).
    pub fn peer_can_take_over(&self) -> bool {
        self.peer_state() == crate::PeerState::Up && self.peer_fit() == Some(true)
    }

    /// This node stops serving (a planned stop): tell the peer, after
    /// everything already queued, so it takes over at once. The caller
    /// must send nothing on the LAN from now on.
    ///
    /// An owner keeps forwarding, acknowledging and beating while the
    /// caller lets it (a grace for frames already on their way to it; the
    /// primary claims the address at `Leaving`). A primary sends nothing
    /// after `Leaving`, and logs nothing more: the owner has taken over.
    pub fn leave(&mut self) {
        if let Some(s) = self.session.as_mut().filter(|s| s.peer.is_some()) {
            s.queue.push_back(Msg::Leaving);
            if self.role == Role::Primary {
                self.leaving = true;
                for c in self.out_conns.values_mut() {
                    c.replicated = false;
                }
            }
        }
    }

    /// The takeovers the peer had made when its `Hello` was sent, in this
    /// session (`None` before it). Zero: it never took this address over
    /// since it started, so it does not hold it.
    pub fn peer_epoch(&self) -> Option<u64> {
        self.session
            .as_ref()
            .filter(|s| s.peer.is_some())
            .map(|s| s.peer_epoch)
    }

    /// The owner said it leaves (see [`Event::PeerLeaving`]).
    pub fn peer_leaving(&self) -> bool {
        self.peer_leaving
    }

    // ---- failure decisions ---------------------------------------------

    /// No peer came within the cold-start wait: serve alone. Nothing is
    /// held (no session ever carried a unit), but the epoch counts it, so a
    /// peer that boots later learns from `Hello` that this node may hold
    /// the address.
    fn peer_absent(&mut self, waited: Duration) {
        if self.role == Role::Simplex {
            return;
        }
        let old = self.role;
        self.role = Role::Simplex;
        self.takeovers += 1;
        warn!(
            role = ?old,
            waited_ms = waited.as_millis() as u64,
            "no replication peer since the start: serving alone"
        );
        self.push_event(Event::PeerAbsent { waited }, None);
    }

    /// Declares the peer dead: become simplex, release held units.
    fn peer_dead(&mut self, since_heard: Duration, left: bool) {
        if self.role == Role::Simplex {
            return;
        }
        let old = self.role;
        self.role = Role::Simplex;
        self.session = None;
        self.takeovers += 1;
        if left {
            warn!(
                role = ?old,
                held_units = self.unacked_units,
                "replication peer leaving (planned stop), taking over"
            );
        } else {
            info!(
                role = ?old,
                since_heard_ms = since_heard.as_millis() as u64,
                held_units = self.unacked_units,
                "replication peer dead, taking over"
            );
        }
        self.push_event(Event::PeerDead { since_heard, left }, None);
        for (&conn, c) in &mut self.out_conns {
            c.replicated = false;
            for h in c.held.drain(..) {
                self.counters.released_units += 1;
                self.events.push_back(Queued {
                    event: Event::Release { conn, seq: h.seq },
                    logged: None,
                });
            }
        }
        self.unacked_units = 0;
        self.unacked_bytes = 0;
        self.unacked_charge = 0;
        // The caller keeps the `Logged` events still queued (they precede
        // `PeerDead`); their tags no longer match anything.
        self.mirror_conns.clear();
    }
}
