//! Rejoin: when a link session with the peer comes up again, a site takes
//! its configured role back (the rule is in docs/replication-protocol.md,
//! "Rejoin"). Connections the node serves itself stay with it: as the
//! owner node it keeps answering them locally and passes frames of
//! connections it does not know through to the primary, which serves those
//! unreplicated; as the primary it keeps serving the ones it holds, their
//! frames now arriving over the link. A node that stood by (fenced) held
//! only stale copies of connections its peer has served since: those are
//! dropped without a word — an RST from the address would break a client
//! the peer still serves.

use smoltcp::socket::tcp;

use super::claim::{Claim, REANNOUNCE, REANNOUNCE_FIRST};
use super::{Engine, Phase, Service};
use crate::Role;

impl<C> Engine<C> {
    /// A new link session: serve in `role` (the configured one) again.
    pub fn rejoin(&mut self, role: Role) {
        if role == Role::Simplex {
            return;
        }
        // A site re-probing a fence holds stale copies too.
        let (mode, fenced) = (
            self.mode,
            self.claim == Claim::Fenced || std::mem::take(&mut self.reprobing),
        );
        self.reprobe_at = None;
        self.reset_pending = if fenced {
            Some(Stale::All)
        } else if role == Role::Owner {
            // Shadows not promoted lost their mirrors with the old session
            // (the primary serves those connections unreplicated now):
            // their frames pass through from here on.
            Some(Stale::Shadows)
        } else {
            None
        };
        // Until the primary's `Routes` say it stopped answering for the
        // address, an owner coming back from a takeover (either side's)
        // stays silent on ARP: answering the primary's announcement made
        // the primary, still serving alone, see a split brain and stand
        // down, dropping connections only it held (found by the
        // simulation's `lan` variant).
        self.arp_quiet = role == Role::Owner && (mode != role || fenced);
        self.claim = Claim::None;
        self.probed = false;
        if role == Role::Primary {
            // The owner answers for the address again.
            self.reannounce = None;
        }
        self.mode = role;
        if mode == role && !fenced {
            // A first session, or one that came back before any takeover.
            tracing::debug!(address = %self.cfg.address.address(), ?role, "link session: role confirmed");
        } else {
            tracing::info!(
                address = %self.cfg.address.address(),
                from = ?mode,
                stood_by = fenced,
                to = ?role,
                connections = self.stats.active,
                "rejoined: configured role taken back"
            );
        }
    }

    /// The owner says the address is its own again (after a rejoin, once
    /// the primary stopped answering for it): a gratuitous ARP, a direct
    /// request to every client it knows, repeated as after a claim.
    pub fn reassert(&mut self) {
        if self.mode != Role::Owner || self.claim != Claim::None {
            return;
        }
        self.arp_quiet = false;
        self.announce_to_all();
        self.reannounce = Some((REANNOUNCE, self.last_poll + REANNOUNCE_FIRST));
    }

    /// Drop stale connections and handshakes without sending anything:
    /// all of them (a fenced node's copies), or the shadows that were not
    /// promoted. Returns how many connections went.
    pub(super) fn drop_silently<S: Service<Conn = C>>(
        &mut self,
        service: &mut S,
        which: Stale,
    ) -> usize {
        let mut dropped = 0;
        let orphan = |tracks: &std::collections::BTreeMap<super::Tuple, super::Track>,
                      t: &super::Tuple| {
            which == Stale::All
                || tracks
                    .get(t)
                    .is_some_and(|tr| tr.shadow.as_ref().is_some_and(|sh| !sh.live))
        };
        for i in 0..self.pool.slots.len() {
            let Some(slot) = self.pool.slots[i].as_mut() else {
                continue;
            };
            let tuple = match &slot.phase {
                Phase::Listening {
                    half_open: Some(t), ..
                } => Some(*t),
                Phase::Listening { .. } => None,
                Phase::Active(a) => Some(a.tuple),
                Phase::Lingering { tuple } => Some(*tuple),
            };
            let Some(tuple) = tuple.filter(|t| orphan(&self.tracks, t)) else {
                continue;
            };
            match &slot.phase {
                Phase::Listening { .. } => self.drop_half_open(i),
                Phase::Active(_) | Phase::Lingering { .. } => {
                    if self.abort_slot(service, i, tuple) {
                        dropped += 1;
                    }
                }
            }
        }
        // Tracks of SYNs no socket took yet.
        let left: Vec<_> = self
            .tracks
            .keys()
            .copied()
            .filter(|t| orphan(&self.tracks, t))
            .collect();
        for t in &left {
            self.untrack(t);
        }
        self.pending_syn.retain(|t| !left.contains(t));
        self.pending_fwd.retain(|(t, _, _)| !left.contains(t));
        self.deferring.retain(|t| !left.contains(t));
        if which == Stale::All {
            self.lan_out.clear();
            self.fwd_out.clear();
        }
        self.top_up();
        if dropped > 0 {
            tracing::info!(
                address = %self.cfg.address.address(),
                dropped,
                what = ?which,
                "stale connections dropped silently"
            );
        }
        dropped
    }
}

/// What [`Engine::drop_silently`] drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stale {
    /// Everything (a fenced node's copies).
    All,
    /// Shadows that were not promoted.
    Shadows,
}

impl<C> Engine<C> {
    /// Slot `i`'s socket aborted and out of the socket set before it could
    /// send its own RST (as `drop_half_open`), the slot freed; its
    /// connection, if it was active, closed for the service (`true`).
    pub(super) fn abort_slot<S: Service<Conn = C>>(
        &mut self,
        service: &mut S,
        i: usize,
        tuple: super::Tuple,
    ) -> bool {
        let Some(slot) = self.pool.slots[i].as_mut() else {
            return false;
        };
        self.sockets.get_mut::<tcp::Socket>(slot.handle).abort();
        let old = std::mem::replace(&mut slot.phase, Phase::Lingering { tuple });
        let active = if let Phase::Active(a) = old {
            let id = self.pool.id(i);
            self.stats.active -= 1;
            self.stats.closed += 1;
            service.closed(id, a.conn);
            self.pool.generations[i] = self.pool.generations[i].wrapping_add(1);
            true
        } else {
            false
        };
        self.pool.lingering.remove(&i);
        self.forget(&tuple, i);
        self.pool.release(i, &mut self.sockets);
        active
    }
}
