//! The takeover's helpers: the pause check, the LAN check's decisions and
//! the rejoin of a site.

use std::time::Instant;

use super::lan::LanChange;
use super::{NodeCore, Site};

use crate::Role;

impl NodeCore {
    /// The shell calls this before each frame it sends (frames made in
    /// the round before a pause must not go out after it), and every input
    /// and round calls it too.
    ///
    /// A gap since the last call longer than the heartbeat timeout, or no
    /// heartbeat for that long: this
    /// node was paused (or starved) and every peer may have declared it
    /// dead and taken over. Whatever the links still hold was sent before
    /// that and proves nothing, so every replicated site drops its session
    /// (the shell drops the link at the next message) and goes through the
    /// takeover's checks: a primary probes before it claims, an ingress
    /// node probes before it promotes; either is fenced if the peer
    /// answers. Until then each stays silent on the LAN.
    pub fn check_paused(&mut self, now: Instant) {
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
            s.suspect = s.engine.mode() == Role::Ingress;
            s.engine.set_lease(false);
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

    /// The LAN check changed its mind. Down: every address whose peer is
    /// linked and reaches the LAN is handed to it at once (`Leaving`: the
    /// owner promotes its shadows, the primary claims without probes) and
    /// this node stands by for it; the link is then dropped and not made
    /// again until the LAN is back (see [`NodeCore::link_allowed`]), when
    /// the node rejoins as a restarted one would. Up: it may link again.
    pub(super) fn lan_changed(&mut self, change: LanChange) {
        let target = self.lan.as_ref().map(|l| l.config().target);
        match change {
            LanChange::Down => {
                tracing::warn!(
                    target = ?target,
                    "LAN check failed: this node does not reach the service LAN; \
                     handing its addresses to its peers"
                );
                for s in &mut self.sites {
                    s.engine.set_lan_down(true);
                    let Some(r) = s.replica.as_mut() else {
                        continue;
                    };
                    r.set_lan(false);
                    let peer_takes =
                        r.peer_state() == crate::PeerState::Up && r.peer_lan_up() == Some(true);
                    if !peer_takes {
                        tracing::warn!(
                            address = %s.cfg.address.address(),
                            "LAN down, but the peer cannot take this address (its link or \
                             its LAN is down too): keeping it"
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
                        "LAN down: handing the address to the peer"
                    );
                    r.leave();
                    s.engine.yield_address();
                    s.yielded = true;
                    s.fenced_reported = true;
                }
            }
            LanChange::Up => {
                tracing::info!(target = ?target, "LAN check passes again: this node reaches the service LAN");
                for s in &mut self.sites {
                    s.engine.set_lan_down(false);
                    if let Some(r) = s.replica.as_mut() {
                        r.set_lan(true);
                    }
                }
            }
        }
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
        site.yielded = false;
        site.engine.rejoin(site.cfg.role);
        site.suspect = false;
        site.booting = false;
        site.fenced_reported = false;
        if site.cfg.role == Role::Ingress {
            if site.routes_seen {
                site.engine.reassert();
            } else {
                site.reassert = true;
            }
        }
    }
}
