//! [`NodeCore::round`]: timers, then per site: frames for the primary onto
//! the link, one handler per replication event, and the takeover step
//! those decided, then the engine.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hotpair_stack::smoltcp::wire::EthernetAddress;
use hotpair_stack::Frame;

use super::conn::SiteDriver;
use super::{compare_routes, NodeCore, Phase, RoleChange, Site};

use crate::wire::RouteDigest;
use crate::{Event, PeerState, Role};

/// What a site's replication events decided for this round's takeover
/// step. Each handler sets what it decides; a later event of the same
/// round overrides an earlier one's word, as the events happened.
#[derive(Debug, Default)]
struct Decided {
    /// Promote the shadows (an owner whose primary is gone).
    promote: bool,
    /// Claim the address (a primary whose owner is gone).
    claim: bool,
    /// The peer said it leaves: claim without probing; log at info.
    peer_left: bool,
    /// A session came up and no probe is pending: rejoin at once.
    rejoin_now: bool,
}

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
        for i in 0..self.sites.len() {
            busy |= self.site_round(i, lan_up, now);
        }
        busy || self.shared.logged
    }

    /// Site `i`'s part of the round: its link's events, the takeover they
    /// decided, its engine. Returns whether anything moved.
    fn site_round(&mut self, i: usize, lan_up: bool, now: Instant) -> bool {
        let site = &mut self.sites[i];
        // Fencing a starting owner is routine (see `Engine::set_starting`).
        site.engine.set_starting(site.phase == Phase::Booting);
        let mut busy = site.forward_to_primary(now);
        let mut decided = Decided::default();
        while let Some(ev) = site.replica.as_mut().and_then(|r| r.poll_event()) {
            busy = true;
            site.on_event(
                ev,
                lan_up,
                &self.route_digests,
                &mut self.changes,
                &mut decided,
            );
        }
        if decided.rejoin_now {
            Self::rejoin(site);
        }
        site.renew_lease(now, self.heartbeat_timeout);
        site.on_probes_done(&mut decided);
        let mut driver = SiteDriver {
            site: i,
            conns: &mut site.conns,
            shared: &mut self.shared,
            replica: site.replica.as_mut(),
            static_ok: &site.static_ok,
            tls: site.cfg.tls.as_ref(),
        };
        let address = site.cfg.address.address();
        if decided.promote {
            // Promotion follows probes that ended, or a takeover that
            // needed none: never while the outcome is still open.
            debug_assert!(!site.engine.probing(), "{address}: promoting while probing");
            let before = site.engine.stats().promoted;
            site.engine.promote(&mut driver, now);
            let connections = site.engine.stats().promoted - before;
            log_takeover(
                decided.peer_left,
                address,
                connections,
                "shadow connections promoted",
            );
            self.changes.push_back(RoleChange::Promoted {
                address,
                connections,
            });
        }
        if decided.claim {
            log_takeover(
                decided.peer_left,
                address,
                site.engine.connections() as u64,
                "claiming the service address",
            );
            if decided.peer_left {
                site.engine.claim_now();
            } else {
                site.engine.claim();
            }
            self.changes.push_back(RoleChange::Claiming { address });
        }
        busy |= site.engine.poll(&mut driver, now);
        for id in std::mem::take(&mut driver.conns.detach) {
            if site.engine.detach_shadow(&mut driver, id, now) {
                busy = true;
            } else {
                // Not a shadow the engine could detach: its next drive
                // aborts it, as for a reset.
                driver.conns.wake(id);
                busy = true;
            }
        }
        if let Some(mac) = site.engine.take_conflict() {
            site.on_conflict(mac);
            busy = true;
        }
        // Probes unanswered: promote at the next round (called at once).
        busy |= site.engine.probed();
        busy |= site.rejoin_when_probed();
        site.report_fenced();
        site.check_roles();
        busy
    }
}

/// A takeover's line: a planned one (the peer left) is routine, at info.
fn log_takeover(planned: bool, address: impl std::fmt::Display, connections: u64, what: &str) {
    if planned {
        tracing::info!(%address, connections, "takeover (planned): {what}");
    } else {
        tracing::warn!(%address, connections, "takeover: {what}");
    }
}

impl Site {
    /// Client frames the shadow holds go to the primary (dropped when the
    /// site is not replicated). Timers of the link first. Returns whether
    /// any frame moved.
    fn forward_to_primary(&mut self, now: Instant) -> bool {
        let Some(r) = self.replica.as_mut() else {
            // Unreplicated: nothing is forwarded.
            while let Some(f) = self.engine.poll_forward() {
                self.engine.recycle(f);
            }
            return false;
        };
        if r.poll_timeout().is_some_and(|t| t <= now) {
            r.handle_timeout(now);
        }
        let mut busy = false;
        while let Some(f) = self.engine.poll_forward() {
            busy = true;
            let bytes = Bytes::copy_from_slice(f.data());
            self.engine.recycle(f);
            // On back-pressure or no peer the frame is dropped: TCP
            // retransmits, and the primary never acknowledges it.
            if let Err(e) = r.forward_frame(bytes) {
                tracing::debug!(error = %e, "client frame not forwarded");
            }
        }
        busy
    }

    /// One replication event: its handler.
    fn on_event(
        &mut self,
        ev: Event,
        lan_up: bool,
        route_digests: &[RouteDigest],
        changes: &mut VecDeque<RoleChange>,
        decided: &mut Decided,
    ) {
        match ev {
            Event::Frame { frame } => self.engine.handle_peer_frame(Frame::copy_from(&frame)),
            Event::ConnGone { conn } => {
                // A connection whose shadow was dropped here (detached)
                // ends with the primary's.
                if !self.conns.event(conn, ev) {
                    self.engine.end_detached(conn);
                }
            }
            Event::Release { conn, .. } => {
                self.conns.event(conn, ev);
            }
            Event::Logged(ref u) => {
                self.conns.event(u.conn, ev);
            }
            Event::PeerUp { node, mac } => {
                decided.rejoin_now = self.on_peer_up(&node, mac, route_digests);
            }
            Event::PeerRoutes { routes } => self.on_peer_routes(routes, route_digests),
            Event::PeerLeaving => self.on_peer_leaving(changes),
            Event::PeerAbsent { .. } | Event::PeerDead { .. }
                if !lan_up || self.phase == Phase::StandingBy =>
            {
                self.on_peer_gone_unfit();
            }
            Event::PeerAbsent { waited } => self.on_peer_absent(waited, decided),
            Event::PeerDead { since_heard, left } => self.on_peer_dead(since_heard, left, decided),
        }
    }

    /// A link session is up. Returns whether to rejoin at once: unless
    /// probing — a primary that had claimed the address stops answering
    /// for it in this round, before its `Routes` reach the owner.
    fn on_peer_up(&mut self, node: &str, mac: [u8; 6], route_digests: &[RouteDigest]) -> bool {
        tracing::info!(
            peer = %node,
            address = %self.cfg.address.address(),
            "replication link up"
        );
        let r = self
            .replica
            .as_mut()
            .expect("only a replicated site hears its peer");
        // Only this MAC may fence us or make us stand down from now on
        // (not any LAN host).
        self.engine.set_peer_mac(EthernetAddress(mac));
        // A primary that took the address over in its life may serve
        // connections this node never saw open: only then do their
        // segments pass.
        self.engine
            .set_pass_through(r.peer_epoch().is_some_and(|e| e > 0));
        // A new session: static waits for the peer's digests again.
        self.static_ok.iter_mut().for_each(|ok| *ok = false);
        self.peer_routes = None;
        self.routes_seen = false;
        // Only connections opened from now on are replicated.
        self.conns.new_session();
        self.rejoin_pending = true;
        if self.phase == Phase::Booting && r.peer_epoch() == Some(0) {
            // An owner starting: its primary never took the address over,
            // so nobody holds it — no need to finish the probes.
            self.engine.cancel_probe();
        }
        r.send_routes(route_digests.to_vec());
        !self.engine.probing()
    }

    /// The peer's `Routes` of this session: the digest guard, and the
    /// owner's word that the address is its own again if it was owed.
    fn on_peer_routes(&mut self, routes: Vec<RouteDigest>, route_digests: &[RouteDigest]) {
        self.routes_seen = true;
        if std::mem::take(&mut self.reassert) {
            self.engine.reassert();
        }
        compare_routes(
            route_digests,
            &routes,
            &mut self.static_ok,
            self.cfg.address.address(),
        );
        self.peer_routes = Some(routes);
        // Shadows holding requests for a route now in use make their
        // replies ahead (their client ACKs may be waiting for them).
        self.conns.wake_all();
    }

    /// The owner leaves (planned): claim its address now, without probes;
    /// it forwards what still reaches it until it closes the link.
    fn on_peer_leaving(&mut self, changes: &mut VecDeque<RoleChange>) {
        self.conns.peer_gone();
        if self.engine.mode() == Role::Primary && !self.engine.probing() {
            // Planned (a switchover, a stop): routine.
            tracing::info!(
                address = %self.cfg.address.address(),
                connections = self.engine.connections(),
                "the owner is leaving: claiming the service address at once"
            );
            self.engine.claim_now();
            changes.push_back(RoleChange::Claiming {
                address: self.cfg.address.address(),
            });
        }
    }

    /// The peer is gone (absent or dead) while this node reaches no
    /// client: it takes nothing over; it stands by until it rejoins.
    fn on_peer_gone_unfit(&mut self) {
        self.engine.yield_address();
        self.conns.peer_gone();
        self.rejoin_pending = false;
        self.transition(Phase::StandingBy, "peer gone while unfit");
        tracing::warn!(
            address = %self.cfg.address.address(),
            "peer gone while this node does not reach the service LAN: \
             not taking over, standing by"
        );
    }

    /// A cold start with the peer down: serve alone, through the same
    /// checks as a takeover.
    fn on_peer_absent(&mut self, waited: Duration, decided: &mut Decided) {
        match self.engine.mode() {
            // Someone answered the owner's boot probes: its peer holds the
            // address; wait for the link (rejoin).
            Role::Owner if self.engine.fenced() => {}
            // The probes' outcome decides (see `on_probes_done`).
            Role::Owner if self.engine.probing() => {}
            Role::Owner => decided.promote = true,
            Role::Primary => decided.claim = !self.engine.probing(),
            Role::Simplex => {}
        }
        self.conns.peer_gone();
        self.rejoin_pending = false;
        tracing::warn!(
            address = %self.cfg.address.address(),
            waited_ms = waited.as_millis() as u64,
            role = ?self.cfg.role,
            "no peer since the start: serving the address alone until it joins"
        );
    }

    /// The peer was declared dead (or left): take over.
    fn on_peer_dead(&mut self, since_heard: Duration, left: bool, decided: &mut Decided) {
        match self.engine.mode() {
            // Paused past the timeout, or still probing at start: the
            // primary may hold the address now; ask the LAN first.
            Role::Owner if self.suspect || self.engine.probing() => {
                self.engine.probe_before_promote()
            }
            Role::Owner => decided.promote = true,
            // (Unless a `Leaving` started the claim.)
            Role::Primary => decided.claim = !self.engine.probing(),
            Role::Simplex => {}
        }
        self.suspect = false;
        self.conns.peer_gone();
        // A probe now decides a takeover, not a start.
        self.transition(Phase::Active, "peer dead");
        self.rejoin_pending = false;
        decided.peer_left = left;
        if left {
            // A planned stop (`Leaving`): routine, at info.
            tracing::info!(
                address = %self.cfg.address.address(),
                connections = self.conns.len(),
                "the peer left (a planned stop): taking over"
            );
        } else {
            tracing::warn!(
                address = %self.cfg.address.address(),
                silent_ms = since_heard.as_millis() as u64,
                connections = self.conns.len(),
                "peer declared dead: taking over"
            );
        }
    }

    /// The lease: a primary speaks to clients only while its peer's last
    /// word is younger than the timeout (after it, the peer may have taken
    /// its connections over).
    fn renew_lease(&mut self, now: Instant, timeout: Duration) {
        let lease = self.replica.as_ref().is_some_and(|r| {
            r.peer_state() == PeerState::Up
                && now.saturating_duration_since(r.last_heard()) <= timeout
        });
        self.engine.set_lease(lease);
    }

    /// The probes went unanswered: a booting owner's address is its own
    /// (and it serves alone if no peer came either); a takeover's probes
    /// promote.
    fn on_probes_done(&mut self, decided: &mut Decided) {
        if !self.engine.take_probed() {
            return;
        }
        if self.phase == Phase::Booting {
            self.transition(Phase::Active, "boot probes unanswered");
            // Nobody holds the address: ours.
            self.engine.reassert();
            // And no peer came within the cold-start wait either
            // (`PeerAbsent` while probing): serve alone now.
            decided.promote = self
                .replica
                .as_ref()
                .is_some_and(|r| r.role() == Role::Simplex);
        } else {
            decided.promote = true;
        }
    }

    /// Both nodes serve the address (a probe answer was lost, or the link
    /// and the probes failed together): the configured owner keeps it, the
    /// primary stands down. Deterministic on both sides, whatever each saw
    /// first.
    fn on_conflict(&mut self, mac: EthernetAddress) {
        let address = self.cfg.address.address();
        match self.cfg.role {
            Role::Owner => {
                tracing::warn!(%address, peer_mac = %mac, "split brain: the primary announced this node's address too; the owner keeps it");
                self.engine.defend();
            }
            Role::Primary => {
                tracing::warn!(%address, peer_mac = %mac, "split brain: the owner serves the address too; standing down");
                self.engine.stand_down();
            }
            Role::Simplex => {}
        }
    }

    /// A rejoin owed since a session came up during probes happens once
    /// they decided (and the session is still up). Returns whether it did.
    fn rejoin_when_probed(&mut self) -> bool {
        if self.rejoin_pending
            && !self.engine.probing()
            && !self.engine.probed()
            && self
                .replica
                .as_ref()
                .is_some_and(|r| r.peer_state() == PeerState::Up)
        {
            NodeCore::rejoin(self);
            return true;
        }
        false
    }

    /// A fence is warned about once (a routine restart's was said at info
    /// by the engine).
    fn report_fenced(&mut self) {
        if !self.engine.fenced() || self.fenced_reported {
            return;
        }
        self.fenced_reported = true;
        if self.phase == Phase::Booting {
            return;
        }
        tracing::warn!(
            address = %self.cfg.address.address(),
            "fenced: the peer answered for the address after the link failed; \
             it serves that address's connections now, this node stays silent for it"
        );
    }
}
