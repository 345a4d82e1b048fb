//! One round of the node, written once, and the decisions about links.
//!
//! Both shells — the TAP shell (`appliance/src/service.rs`) and the
//! deterministic simulation (`sim/src/node.rs`) — run a round through
//! [`step`]: the core's `round`, then every kind of output in one fixed
//! order, handed to the shell's [`Drive`] implementation. The shells only
//! move bytes and time: which link to drop, when to try a lost one again
//! and whether a frame may still go out after a pause are the core's
//! ([`NodeCore::poll_link_action`], [`NodeCore::poll_lan_transmit`]), so
//! the simulation executes exactly what production executes.
//!
//! LAN frames are not part of [`step`]: whoever owns the wire pulls them
//! one at a time with [`NodeCore::poll_lan_transmit`], passing the clock
//! read just then (the pause check runs per frame).

use std::time::{Duration, Instant};

use super::{Job, NodeCore, PeerId, Phase, RoleChange, Served, TlsJob};
use crate::Msg;

/// A session that was up and is lost is tried again after this: a peer
/// that just failed is not reached again at once.
pub(super) const RELINK_AFTER_LOSS: Duration = Duration::from_millis(100);
/// A link attempt that ended without a session (it could not listen or
/// connect) is tried again after this, more slowly.
pub(super) const RELINK_AFTER_FAILURE: Duration = Duration::from_millis(1000);

/// What the core decided about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAction {
    /// Close the link's socket. The core has counted the link lost already
    /// (the shell does not call `handle_link_lost` for it).
    Drop {
        /// The link's peer.
        peer: PeerId,
        /// Why, for the log.
        why: &'static str,
    },
    /// Set up a link to `peer` again (listen or connect), after `after`.
    Reconnect {
        /// The link's peer.
        peer: PeerId,
        /// How long to wait before the attempt.
        after: Duration,
    },
}

/// A shell's side of one round: where each kind of output goes.
pub trait Drive {
    /// The node core the shell drives.
    fn core(&mut self) -> &mut NodeCore;
    /// A TLS handshake step to run (off the round, or inline).
    fn tls_job(&mut self, job: TlsJob);
    /// A request for a handler to answer.
    fn job(&mut self, job: Job);
    /// Run the application check now.
    fn app_check(&mut self);
    /// A request the core answered itself (only with
    /// `NodeCore::set_report_served`).
    fn served(&mut self, served: Served) {
        let _ = served;
    }
    /// Whether `peer`'s link takes another message now (back-pressure:
    /// what it does not take waits in the core's queue).
    fn link_ready(&mut self, peer: PeerId) -> bool;
    /// A message for `peer`'s link, with its channel.
    fn link_message(&mut self, peer: PeerId, channel: u32, msg: Msg);
    /// A takeover, to report.
    fn role_change(&mut self, change: RoleChange);
    /// A link to drop or to set up again.
    fn link_action(&mut self, action: LinkAction);
}

/// One round at `now` and everything it produced, but LAN frames, handed
/// to `shell`; whether anything moved (run another at once).
#[must_use]
pub fn step(shell: &mut impl Drive, now: Instant) -> bool {
    let busy = shell.core().round(now);
    if shell.core().poll_app_check() {
        shell.app_check();
    }
    while let Some(s) = shell.core().poll_served() {
        shell.served(s);
    }
    while let Some(j) = shell.core().poll_job() {
        shell.job(j);
    }
    while let Some(j) = shell.core().poll_tls_job() {
        shell.tls_job(j);
    }
    send_link_messages(shell);
    while let Some(c) = shell.core().poll_role_change() {
        shell.role_change(c);
    }
    while let Some(a) = shell.core().poll_link_action(now) {
        shell.link_action(a);
    }
    busy
}

/// The core's link messages into the shell's links, as far as each takes
/// them (the rest waits in the core's queues). Part of [`step`]; a shell
/// also calls it outside a round (a planned stop flushing its links).
pub fn send_link_messages(shell: &mut impl Drive) {
    for peer in 0..shell.core().peers() {
        while shell.link_ready(peer) {
            let Some((channel, msg)) = shell.core().poll_link_transmit(peer) else {
                break;
            };
            shell.link_message(peer, channel, msg);
        }
    }
}

impl NodeCore {
    /// Next decision about a link: drop one that carries no session any
    /// more (its peer was declared dead, or this node cannot serve), set
    /// up again one that was lost, or one held down once it may be.
    #[must_use]
    pub fn poll_link_action(&mut self, now: Instant) -> Option<LinkAction> {
        for peer in 0..self.peers.len() {
            if self.peers[peer].up && !self.link_wanted(peer) {
                // A link whose peer was declared dead carries nothing any
                // more: drop it and try again (the peer may come back and
                // rejoin).
                let why = if self.link_allowed(peer) {
                    "the peer was declared dead"
                } else {
                    "this node cannot serve (its LAN or its application check failed): its addresses went to the peer"
                };
                self.handle_link_lost(peer, now);
                return Some(LinkAction::Drop { peer, why });
            }
        }
        if let Some(a) = self.link_actions.pop_front() {
            return Some(a);
        }
        for peer in 0..self.peers.len() {
            if self.peers[peer].held && self.link_allowed(peer) {
                self.peers[peer].held = false;
                tracing::info!(peer = %self.peer_name(peer), "this node can serve again: linking to the peer");
                return Some(LinkAction::Reconnect {
                    peer,
                    after: Duration::ZERO,
                });
            }
        }
        None
    }

    /// The shell has a new session for `peer`'s link: whether it may use
    /// it. Not while [`NodeCore::link_allowed`] says no — the link is held
    /// down then (the shell closes the socket and starts no new attempt)
    /// until [`NodeCore::poll_link_action`] says to set it up again.
    /// Otherwise the link is up ([`NodeCore::handle_link_up`]).
    #[must_use]
    pub fn accept_link(&mut self, peer: PeerId, now: Instant) -> bool {
        if !self.link_allowed(peer) {
            self.hold_link(peer);
            return false;
        }
        self.handle_link_up(peer, now);
        true
    }

    /// An attempt at `peer`'s link ended without a session (it could not
    /// listen, connect or set up the socket): no peer was lost, nothing to
    /// take over — the heartbeat timeout still decides if the peer never
    /// comes. It is tried again, more slowly.
    pub fn handle_link_failed(&mut self, peer: PeerId) {
        self.relink_after(peer, RELINK_AFTER_FAILURE);
    }

    /// One link attempt per peer at a time: a lost link is tried again
    /// after `after`, or held down while it may not be.
    pub(super) fn relink_after(&mut self, peer: PeerId, after: Duration) {
        if self.link_allowed(peer) {
            self.link_actions
                .push_back(LinkAction::Reconnect { peer, after });
        } else {
            self.hold_link(peer);
        }
    }

    fn hold_link(&mut self, peer: PeerId) {
        if !std::mem::replace(&mut self.peers[peer].held, true) {
            tracing::info!(
                peer = %self.peer_name(peer),
                "this node cannot serve (its LAN or its application check failed): its replication link stays down until it can"
            );
        }
    }

    /// Whether the link to `peer` still carries a session for some shared
    /// address. After the peer was declared dead (its heartbeats stopped,
    /// or this node was paused) it does not: the shell drops the socket
    /// and tries again, so that the peer can rejoin.
    pub fn link_wanted(&self, peer: PeerId) -> bool {
        if !self.link_allowed(peer) {
            return false;
        }
        self.sites.iter().any(|s| {
            s.cfg.peer == Some(peer)
                && s.replica
                    .as_ref()
                    .is_some_and(|r| r.peer_state() != crate::PeerState::Down)
        })
    }

    /// Whether a link to `peer` may be (re)established now: not while this
    /// node's LAN is down and it stands by for an address it shares with
    /// `peer` — a new session would make it take its role back, and the
    /// peer give the address up, with no node reaching the clients. The
    /// shell holds off connecting until this says yes again.
    pub fn link_allowed(&self, peer: PeerId) -> bool {
        self.fit()
            || !self
                .sites
                .iter()
                .any(|s| s.cfg.peer == Some(peer) && s.phase == Phase::StandingBy)
    }
}
