//! The takeover's helpers: the pause check, the LAN check's decisions and
//! the rejoin of a site.

use std::time::Instant;

use super::lan::LanChange;
use super::{NodeCore, Phase, Site};

use crate::Role;

impl NodeCore {
    /// Every input, round and [`NodeCore::poll_lan_transmit`] (each frame
    /// the shell sends: frames made in the round before a pause must not
    /// go out after it) calls this first.
    ///
    /// A gap since the last call longer than the heartbeat timeout, or no
    /// heartbeat for that long: this
    /// node was paused (or starved) and every peer may have declared it
    /// dead and taken over. Whatever the links still hold was sent before
    /// that and proves nothing, so every replicated site drops its session
    /// (the shell drops the link at the next message) and goes through the
    /// takeover's checks: a primary probes before it claims, an owner
    /// node probes before it promotes; either is fenced if the peer
    /// answers. Until then each stays silent on the LAN.
    pub(super) fn check_paused(&mut self, now: Instant) {
        let last = self
            .last_call
            .replace(now.max(self.last_call.unwrap_or(now)));
        let Some(last) = last else { return };
        let gap = now.saturating_duration_since(last);
        let mut affected = 0;
        let mut paused = gap;
        for s in &mut self.sites {
            let Some(r) = s.replica.as_mut() else {
                continue;
            };
            if r.role() == Role::Simplex || s.engine.fenced() {
                continue;
            }
            // The gap alone misses a pause that began up to a heartbeat
            // interval after the last heartbeat (the loop ran on, sending
            // nothing to the peer): the peer times out from that
            // heartbeat, so its age counts too.
            let silence = r.heartbeat_silence(now).unwrap_or_default();
            if gap <= self.heartbeat_timeout && silence < self.heartbeat_timeout {
                continue;
            }
            paused = paused.max(silence);
            affected += 1;
            s.suspect = s.engine.mode() == Role::Owner;
            s.engine.set_lease(false);
            s.engine.probe_carefully(self.heartbeat_timeout);
            r.handle_link_lost(now);
        }
        if affected > 0 {
            self.pauses += 1;
            tracing::warn!(
                paused_ms = paused.as_millis() as u64,
                addresses = affected,
                "this node was paused past the heartbeat timeout: its peers may have taken \
                 over; links dropped, probing before serving again"
            );
        }
    }

    /// The LAN check changed its mind. Down: every address whose peer can
    /// serve is handed to it at once (see [`NodeCore::hand_over`]). Up: it
    /// may link again and rejoin as a restarted node would.
    pub(super) fn lan_changed(&mut self, change: LanChange) {
        let target = self.lan.as_ref().map(|l| l.config().target);
        let down = change == LanChange::Down;
        for s in &mut self.sites {
            s.engine.set_lan_down(down);
        }
        self.announce_fit();
        if down {
            tracing::warn!(
                target = ?target,
                "LAN check failed: this node does not reach the service LAN; \
                 handing its addresses to its peers"
            );
            self.hand_over("LAN down");
        } else {
            tracing::info!(target = ?target, "LAN check passes again: this node reaches the service LAN");
        }
    }

    /// The application check changed its mind. Down while this node runs
    /// requests for a replicated address (its primary role, or an owner
    /// serving it alone): every address whose peer can serve is handed
    /// to it, as the LAN check does — the peer runs again, on its own
    /// application, the requests in flight here (same request ids).
    /// Down on a node that runs nothing (an owner whose primary is up):
    /// the peer is only told, so it will not hand this node its
    /// addresses. Up: it may link again and rejoin; requests held for the
    /// verdict get their error replies now (the peer did not take them).
    ///
    /// With a fallback (`AppCheckConfig::fallback`), the handover waits
    /// while this node serves connections no peer shadows (taken over
    /// alone, kept after the peer rejoined): a handover would lose them,
    /// while the fallback answers their requests. It happens once they
    /// are gone ([`NodeCore::retry_app_handover`]).
    pub(super) fn app_changed(&mut self, up: bool) {
        self.announce_fit();
        if up {
            self.app_handover_deferred = false;
            tracing::info!("application check passes again");
            for h in &mut self.held {
                h.until = h.until.min(self.last_call.unwrap_or(h.until));
            }
            return;
        }
        let runs_requests = self.sites.iter().any(|s| {
            !s.engine.fenced()
                && s.phase != Phase::StandingBy
                && s.replica.as_ref().is_some_and(|r| {
                    r.peer_state() == crate::PeerState::Up && s.engine.mode() == Role::Primary
                })
        });
        if !runs_requests {
            tracing::warn!(
                "application check failed: this node runs no requests for a replicated \
                 address; its peers are told it cannot take any over"
            );
            return;
        }
        let stranded = self.stranded_connections();
        if stranded > 0 && self.app.as_ref().is_some_and(|a| a.config().fallback) {
            self.app_handover_deferred = true;
            tracing::warn!(
                connections = stranded,
                "application check failed: the application behind this node does not answer; \
                 connections here that no peer shadows would be lost in a handover, so the \
                 route's fallback answers their requests and the addresses are handed over \
                 once they are gone"
            );
            return;
        }
        tracing::warn!(
            "application check failed: the application behind this node does not answer; \
             handing its addresses to its peers"
        );
        self.hand_over("application down");
    }

    /// Connections answered here that no peer shadows, on the addresses a
    /// handover would move.
    fn stranded_connections(&self) -> usize {
        self.sites
            .iter()
            .filter(|s| {
                !s.engine.fenced()
                    && s.phase != Phase::StandingBy
                    && s.replica.as_ref().is_some_and(|r| r.peer_can_take_over())
            })
            .map(|s| s.conns.unreplicated())
            .sum()
    }

    /// A handover deferred for stranded connections happens once they are
    /// gone (or is forgotten once the application answers again). Returns
    /// whether it happened.
    pub(super) fn retry_app_handover(&mut self) -> bool {
        if !self.app_handover_deferred {
            return false;
        }
        if self.app_up() {
            self.app_handover_deferred = false;
            return false;
        }
        if self.stranded_connections() > 0 {
            return false;
        }
        self.app_handover_deferred = false;
        tracing::warn!(
            "the connections no peer shadows are gone and the application still does not \
             answer: handing the addresses to the peers"
        );
        self.hand_over("application down");
        true
    }

    /// Tell every peer whether this node can serve (`Msg::Lan`).
    fn announce_fit(&mut self) {
        let fit = self.fit();
        for s in &mut self.sites {
            if let Some(r) = s.replica.as_mut() {
                r.set_fit(fit);
            }
        }
    }

    /// This node cannot serve: every address whose peer is linked and can
    /// serve is handed to it at once (`Leaving`: the owner promotes its
    /// shadows, the primary claims without probes) and this node stands
    /// by for it; the link is then dropped and not made again until the
    /// node can serve (see [`NodeCore::link_allowed`]), when it rejoins as
    /// a restarted node would. Replies held for the application check's
    /// verdict on those addresses are dropped: the peer answers them.
    fn hand_over(&mut self, why: &'static str) {
        for (i, s) in self.sites.iter_mut().enumerate() {
            let Some(r) = s.replica.as_mut() else {
                continue;
            };
            if !r.peer_can_take_over() {
                tracing::warn!(
                    address = %s.cfg.address.address(),
                    why,
                    "cannot serve, but the peer cannot take this address (its link is \
                     down or it cannot serve either): keeping it"
                );
                continue;
            }
            if s.engine.fenced() {
                continue;
            }
            tracing::info!(
                address = %s.cfg.address.address(),
                role = ?s.engine.mode(),
                connections = s.conns.len(),
                why,
                "handing the address to the peer"
            );
            r.leave();
            s.engine.yield_address();
            s.transition(Phase::StandingBy, why);
            s.fenced_reported = true;
            self.held.retain(|h| h.site != i);
        }
    }

    /// Error replies held for the application check's verdict whose wait
    /// is over go out. Returns whether any did.
    pub(super) fn release_held(&mut self, now: Instant) -> bool {
        let mut any = false;
        let mut k = 0;
        while k < self.held.len() {
            if self.held[k].until > now {
                k += 1;
                continue;
            }
            let h = self.held.swap_remove(k);
            if let Some(s) = self.sites.get_mut(h.site) {
                s.conns.reply(h.conn, h.index, h.response);
            }
            any = true;
        }
        any
    }

    /// Pauses past the heartbeat timeout detected so far.
    pub fn pauses(&self) -> u64 {
        self.pauses
    }

    /// The configured role comes back for `site` (a link session is up and
    /// no probe is pending); connections served here stay here (see
    /// `Engine::rejoin`). An owner says the address is its own again once
    /// the primary's `Routes` of this session arrived — sent after the
    /// primary's own rejoin, so after it stopped answering for it.
    pub(super) fn rejoin(site: &mut Site) {
        site.rejoin_pending = false;
        site.engine.rejoin(site.cfg.role);
        // The engine holds the configured role again, silent for nothing.
        debug_assert!(
            site.engine.mode() == site.cfg.role && !site.engine.fenced() && !site.engine.probing(),
            "a rejoined site holds its configured role"
        );
        site.transition(Phase::Active, "rejoined");
        site.suspect = false;
        site.fenced_reported = false;
        if site.cfg.role == Role::Owner {
            if site.routes_seen {
                site.engine.reassert();
            } else {
                site.reassert = true;
            }
        }
    }
}
