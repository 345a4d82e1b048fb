//! [`NodeCore::round`]: timers, frames for the primary onto the link,
//! replication events (takeovers), then every engine.

use std::time::Instant;

use bytes::Bytes;
use hotpair_stack::smoltcp::wire::EthernetAddress;
use hotpair_stack::Frame;

use super::conn::SiteDriver;
use super::{compare_routes, NodeCore, RoleChange};

use crate::{Event, Role};

impl NodeCore {
    // ---- the round ---------------------------------------------------------

    /// Next role change (takeover) to report.
    #[must_use]
    pub fn poll_role_change(&mut self) -> Option<RoleChange> {
        self.changes.pop_front()
    }

    /// One round at `now`: timers, frames for the primary onto the link,
    /// replication events (takeovers), then every engine. Returns whether
    /// anything moved: call again at once (after moving the outputs).
    pub fn round(&mut self, now: Instant) -> bool {
        self.check_paused(now);
        let mut busy = std::mem::take(&mut self.shared.logged);
        if let Some(change) = self.lan.as_mut().and_then(|l| l.handle_timeout(now)) {
            self.lan_changed(change);
            busy = true;
        }
        if let Some(up) = self.app.as_mut().and_then(|a| a.handle_timeout(now)) {
            self.app_changed(up);
            busy = true;
        }
        busy |= self.release_held(now);
        busy |= self.retry_app_handover();
        let lan_up = self.lan_up();
        for (i, site) in self.sites.iter_mut().enumerate() {
            // Fencing a starting owner is routine (see `Engine::set_starting`).
            site.engine.set_starting(site.booting);
            let mut promote = false;
            let mut claim = false;
            // The peer said it leaves: claim without probing.
            let mut peer_left = false;
            let mut rejoin_now = false;
            if let Some(r) = site.replica.as_mut() {
                if r.poll_timeout().is_some_and(|t| t <= now) {
                    r.handle_timeout(now);
                }
                // Client frames the shadow holds, for the primary.
                while let Some(f) = site.engine.poll_forward() {
                    busy = true;
                    let bytes = Bytes::copy_from_slice(f.data());
                    site.engine.recycle(f);
                    // On back-pressure or no peer the frame is dropped: TCP
                    // retransmits, and the primary never acknowledges it.
                    if let Err(e) = r.forward_frame(bytes) {
                        tracing::debug!(error = %e, "client frame not forwarded");
                    }
                }
                while let Some(ev) = r.poll_event() {
                    busy = true;
                    match ev {
                        Event::Frame { frame } => {
                            site.engine.handle_peer_frame(Frame::copy_from(&frame))
                        }
                        Event::Release { conn, .. } | Event::ConnGone { conn } => {
                            site.conns.event(conn, ev)
                        }
                        Event::Logged(ref u) => site.conns.event(u.conn, ev),
                        Event::PeerUp { node, mac } => {
                            tracing::info!(
                                peer = %node,
                                address = %site.cfg.address.address(),
                                "replication link up"
                            );
                            // Only this MAC may fence us or make us stand
                            // down from now on (not any LAN host).
                            site.engine.set_peer_mac(EthernetAddress(mac));
                            // A primary that took the address over in its
                            // life may serve connections this node never
                            // saw open: only then do their segments pass.
                            site.engine
                                .set_pass_through(r.peer_epoch().is_some_and(|e| e > 0));
                            // A new session: static waits for the peer's
                            // digests again.
                            site.static_ok.iter_mut().for_each(|ok| *ok = false);
                            site.peer_routes = None;
                            site.routes_seen = false;
                            // Only connections opened from now on are
                            // replicated.
                            site.conns.new_session();
                            site.rejoin_pending = true;
                            if site.booting && r.peer_epoch() == Some(0) {
                                // An owner starting: its primary never took
                                // the address over, so nobody holds it —
                                // no need to finish the probes.
                                site.engine.cancel_probe();
                            }
                            // At once unless probing: a primary that had
                            // claimed the address stops answering for it in
                            // this round, before its `Routes` (below)
                            // reach the owner.
                            rejoin_now = !site.engine.probing();
                            r.send_routes(self.route_digests.clone());
                        }
                        Event::PeerRoutes { routes } => {
                            site.routes_seen = true;
                            if std::mem::take(&mut site.reassert) {
                                site.engine.reassert();
                            }
                            compare_routes(
                                &self.route_digests,
                                &routes,
                                &mut site.static_ok,
                                site.cfg.address.address(),
                            );
                            site.peer_routes = Some(routes);
                            // Shadows holding requests for a route now in
                            // use make their replies ahead (their client
                            // ACKs may be waiting for them).
                            site.conns.wake_all();
                        }
                        Event::PeerLeaving => {
                            // The owner leaves (planned): claim its address
                            // now, without probes; it forwards what still
                            // reaches it until it closes the link.
                            site.conns.peer_gone();
                            if site.engine.mode() == Role::Primary && !site.engine.probing() {
                                // Planned (a switchover, a stop): routine.
                                tracing::info!(
                                    address = %site.cfg.address.address(),
                                    connections = site.engine.connections(),
                                    "the owner is leaving: claiming the service address at once"
                                );
                                site.engine.claim_now();
                                self.changes.push_back(RoleChange::Claiming {
                                    address: site.cfg.address.address(),
                                });
                            }
                        }
                        Event::PeerAbsent { .. } | Event::PeerDead { .. }
                            if !lan_up || site.yielded =>
                        {
                            // This node reaches no client: it takes
                            // nothing over; it stands by until it rejoins.
                            site.yielded = true;
                            site.engine.yield_address();
                            site.conns.peer_gone();
                            site.booting = false;
                            site.rejoin_pending = false;
                            tracing::warn!(
                                address = %site.cfg.address.address(),
                                "peer gone while this node does not reach the service LAN: \
                                 not taking over, standing by"
                            );
                        }
                        Event::PeerAbsent { waited } => {
                            // A cold start with the peer down: serve alone,
                            // through the same checks as a takeover.
                            match site.engine.mode() {
                                // Someone answered the owner's boot probes:
                                // its peer holds the address; wait for the
                                // link (rejoin).
                                Role::Ingress if site.engine.fenced() => {}
                                // The probes' outcome decides (see below).
                                Role::Ingress if site.engine.probing() => {}
                                Role::Ingress => promote = true,
                                Role::Primary => claim = !site.engine.probing(),
                                Role::Simplex => {}
                            }
                            site.conns.peer_gone();
                            site.rejoin_pending = false;
                            tracing::warn!(
                                address = %site.cfg.address.address(),
                                waited_ms = waited.as_millis() as u64,
                                role = ?site.cfg.role,
                                "no peer since the start: serving the address alone until it joins"
                            );
                        }
                        Event::PeerDead { since_heard, left } => {
                            match site.engine.mode() {
                                // Paused past the timeout: the primary may
                                // hold the address now; ask the LAN first.
                                // Paused past the timeout, or still probing
                                // at start: the primary may hold the
                                // address now; ask the LAN first.
                                Role::Ingress if site.suspect || site.engine.probing() => {
                                    site.engine.probe_before_promote()
                                }
                                Role::Ingress => promote = true,
                                // (Unless a `Leaving` started the claim.)
                                Role::Primary => claim = !site.engine.probing(),
                                Role::Simplex => {}
                            }
                            site.suspect = false;
                            site.conns.peer_gone();
                            // A probe now decides a takeover, not a start.
                            site.booting = false;
                            site.rejoin_pending = false;
                            peer_left = left;
                            if left {
                                // A planned stop (`Leaving`): routine, at info.
                                tracing::info!(
                                    address = %site.cfg.address.address(),
                                    connections = site.conns.len(),
                                    "the peer left (a planned stop): taking over"
                                );
                            } else {
                                tracing::warn!(
                                    address = %site.cfg.address.address(),
                                    silent_ms = since_heard.as_millis() as u64,
                                    connections = site.conns.len(),
                                    "peer declared dead: taking over"
                                );
                            }
                        }
                    }
                }
            } else {
                // Unreplicated: nothing is forwarded.
                while let Some(f) = site.engine.poll_forward() {
                    site.engine.recycle(f);
                }
            }
            if rejoin_now {
                Self::rejoin(site);
            }
            // The lease: a primary speaks to clients only while its peer's
            // last word is younger than the timeout (after it, the peer may
            // have taken its connections over).
            let lease = site.replica.as_ref().is_some_and(|r| {
                r.peer_state() == crate::PeerState::Up
                    && now.saturating_duration_since(r.last_heard()) <= self.heartbeat_timeout
            });
            site.engine.set_lease(lease);
            if site.engine.take_probed() {
                if std::mem::take(&mut site.booting) {
                    // Nobody holds the address: ours.
                    site.engine.reassert();
                    // And no peer came within the cold-start wait either
                    // (`PeerAbsent` while probing): serve alone now.
                    promote = site
                        .replica
                        .as_ref()
                        .is_some_and(|r| r.role() == Role::Simplex);
                } else {
                    promote = true;
                }
            }
            let mut driver = SiteDriver {
                site: i,
                conns: &mut site.conns,
                shared: &mut self.shared,
                replica: site.replica.as_mut(),
                static_ok: &site.static_ok,
                tls: site.cfg.tls.as_ref(),
            };
            if promote {
                let before = site.engine.stats().promoted;
                site.engine.promote(&mut driver, now);
                let connections = site.engine.stats().promoted - before;
                if peer_left {
                    tracing::info!(
                        address = %site.cfg.address.address(),
                        connections,
                        "takeover (planned): shadow connections promoted"
                    );
                } else {
                    tracing::warn!(
                        address = %site.cfg.address.address(),
                        connections,
                        "takeover: shadow connections promoted"
                    );
                }
                self.changes.push_back(RoleChange::Promoted {
                    address: site.cfg.address.address(),
                    connections,
                });
            }
            if claim {
                if peer_left {
                    tracing::info!(
                        address = %site.cfg.address.address(),
                        connections = site.engine.connections(),
                        "takeover (planned): claiming the service address"
                    );
                } else {
                    tracing::warn!(
                        address = %site.cfg.address.address(),
                        connections = site.engine.connections(),
                        "takeover: claiming the service address"
                    );
                }
                if peer_left {
                    site.engine.claim_now();
                } else {
                    site.engine.claim();
                }
                self.changes.push_back(RoleChange::Claiming {
                    address: site.cfg.address.address(),
                });
            }
            busy |= site.engine.poll(&mut driver, now);
            if let Some(mac) = site.engine.take_conflict() {
                // Both nodes serve the address (a probe answer was lost, or
                // the link and the probes failed together): the configured
                // owner keeps it, the primary stands down. Deterministic on
                // both sides, whatever each saw first.
                let address = site.cfg.address.address();
                match site.cfg.role {
                    Role::Ingress => {
                        tracing::warn!(%address, peer_mac = %mac, "split brain: the primary announced this node's address too; the owner keeps it");
                        site.engine.defend();
                    }
                    Role::Primary => {
                        tracing::warn!(%address, peer_mac = %mac, "split brain: the owner serves the address too; standing down");
                        site.engine.stand_down();
                    }
                    Role::Simplex => {}
                }
                busy = true;
            }
            // Probes unanswered: promote at the next round (called at once).
            busy |= site.engine.probed();
            if site.rejoin_pending
                && !site.engine.probing()
                && !site.engine.probed()
                && site
                    .replica
                    .as_ref()
                    .is_some_and(|r| r.peer_state() == crate::PeerState::Up)
            {
                Self::rejoin(site);
                busy = true;
            }
            if site.engine.fenced() && !site.fenced_reported && site.booting {
                // A routine restart: the engine said so at info.
                site.fenced_reported = true;
            }
            if site.engine.fenced() && !site.fenced_reported {
                site.fenced_reported = true;
                tracing::warn!(
                    address = %site.cfg.address.address(),
                    "fenced: the peer answered for the address after the link failed; \
                     it serves that address's connections now, this node stays silent for it"
                );
            }
        }
        busy || self.shared.logged
    }
}
