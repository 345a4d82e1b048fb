//! A site's state: the phase only the node core decides ([`Phase`], changed
//! in one place, [`Site::transition`]) and the state status reports
//! ([`SiteState`], read in one place, [`NodeCore::site_state`]).
//!
//! The engine already holds the address's role now (`Engine::mode`) and
//! whether it is fenced (its claim), the replica whether the peer is up:
//! `SiteState` is derived from those rather than stored a second time, so
//! it cannot disagree with them. What neither of them knows — that an owner
//! is still at its start, or that this node stands by because it could not
//! serve — is the [`Phase`].

use std::fmt;
use std::str::FromStr;

use super::{NodeCore, Site};
use crate::{PeerState, Role};

/// What the node core decides for a site beyond its engine and replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// An owner probing for its address at start: if nobody answers it
    /// announces the address; if someone does (its peer took the address
    /// over while this node was down) it stands by until the link is up.
    /// A node is in this phase only from its construction: the first
    /// takeover decision, rejoin or standing by ends it for good.
    Booting,
    /// Taking part with its role, configured or taken over.
    Active,
    /// This node could not serve (its LAN check failed, or its application
    /// check while it ran requests): the site stands by (its peer serves
    /// it, or nobody can) and takes nothing over until it rejoins.
    StandingBy,
}

/// A service address's state as status reports it (one word each, see
/// [`SiteState::word`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiteState {
    /// Configured to serve alone.
    Alone,
    /// A replicated role whose peer is not up.
    Waiting,
    /// A replicated role with its peer up.
    Replicated,
    /// An owner whose primary died: its shadows were promoted, it serves
    /// alone.
    Promoted,
    /// A primary whose owner died: it took the address, serves alone.
    Claimed,
    /// Silent for the address: the peer answered for it (or this node
    /// stands by, see `NodeCore::yielded`).
    Fenced,
}

impl SiteState {
    /// Every state, in the order of [`SiteState::word`]'s documentation.
    pub const ALL: [SiteState; 6] = [
        SiteState::Replicated,
        SiteState::Waiting,
        SiteState::Promoted,
        SiteState::Claimed,
        SiteState::Fenced,
        SiteState::Alone,
    ];

    /// The word status, metrics and hooks use: `replicated`, `waiting`,
    /// `promoted`, `claimed`, `fenced` or `alone`.
    pub fn word(self) -> &'static str {
        match self {
            SiteState::Alone => "alone",
            SiteState::Waiting => "waiting",
            SiteState::Replicated => "replicated",
            SiteState::Promoted => "promoted",
            SiteState::Claimed => "claimed",
            SiteState::Fenced => "fenced",
        }
    }

    /// Whether the address runs as configured with its peer, so a planned
    /// stop hands it over without losing what is replicated.
    pub fn replicated(self) -> bool {
        self == SiteState::Replicated
    }
}

impl fmt::Display for SiteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A word that names no [`SiteState`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown address state {0:?}")]
pub struct UnknownSiteState(pub String);

impl FromStr for SiteState {
    type Err = UnknownSiteState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SiteState::ALL
            .into_iter()
            .find(|st| st.word() == s)
            .ok_or_else(|| UnknownSiteState(s.to_owned()))
    }
}

impl Site {
    /// The one place a site's [`Phase`] changes; `why` is logged at debug.
    /// Asserts what must hold on each side.
    pub(super) fn transition(&mut self, to: Phase, why: &'static str) {
        let from = self.phase;
        self.check_roles();
        // Booting is where a site starts, never where it goes back to.
        assert_ne!(to, Phase::Booting, "a site cannot boot again ({why})");
        if from == Phase::Booting {
            assert_eq!(self.cfg.role, Role::Owner, "only an owner boots");
        }
        self.phase = to;
        match to {
            Phase::Booting => unreachable!(),
            Phase::StandingBy => {
                // Standing by is silence on the LAN for the address: the
                // engine was told before the phase changed.
                debug_assert!(self.engine.fenced(), "standing by, yet not silent ({why})");
            }
            Phase::Active => {}
        }
        if from != to {
            tracing::debug!(
                address = %self.cfg.address.address(),
                from = ?from,
                to = ?to,
                why,
                "site phase"
            );
        }
    }

    /// The role is held in three places — configured (`cfg.role`), the
    /// engine's (`Engine::mode`) and the replica's (`Replica::role`) — each
    /// changing at its own step of a takeover or rejoin (the replica's on
    /// the peer's death and on a new session, the engine's on promotion,
    /// claim and rejoin). What must always hold: each is the configured
    /// role or `Simplex`, and a site configured alone has no replica.
    pub(super) fn check_roles(&self) {
        let cfg = self.cfg.role;
        let engine = self.engine.mode();
        debug_assert!(
            engine == cfg || engine == Role::Simplex,
            "{}: engine role {engine:?}, configured {cfg:?}",
            self.cfg.address.address()
        );
        match &self.replica {
            None => debug_assert_eq!(cfg, Role::Simplex, "a replicated role has a replica"),
            Some(r) => {
                debug_assert_ne!(cfg, Role::Simplex, "a site alone has no replica");
                debug_assert!(
                    r.role() == cfg || r.role() == Role::Simplex,
                    "{}: replica role {:?}, configured {cfg:?}",
                    self.cfg.address.address(),
                    r.role()
                );
            }
        }
    }
}

impl NodeCore {
    /// Site `i`'s state as status reports it, from its engine (role now,
    /// fenced) and its replica (the peer up).
    pub fn site_state(&self, site: usize) -> SiteState {
        let s = &self.sites[site];
        if s.engine.fenced() {
            return SiteState::Fenced;
        }
        match (s.cfg.role, s.engine.mode()) {
            (Role::Simplex, _) => SiteState::Alone,
            (Role::Owner, Role::Simplex) => SiteState::Promoted,
            (Role::Primary, Role::Simplex) => SiteState::Claimed,
            _ if s
                .replica
                .as_ref()
                .is_some_and(|r| r.peer_state() == PeerState::Up) =>
            {
                SiteState::Replicated
            }
            _ => SiteState::Waiting,
        }
    }

    /// Site `i` stands by because this node could not serve.
    pub fn yielded(&self, site: usize) -> bool {
        self.sites[site].phase == Phase::StandingBy
    }

    /// Whole heartbeat intervals site `i`'s peer is late now: a miss is an
    /// interval beyond the one a heartbeat may take to come, counted only
    /// while the peer is up; `None` unreplicated.
    pub fn heartbeat_misses(&self, site: usize, now: std::time::Instant) -> Option<u64> {
        let r = self.sites[site].replica.as_ref()?;
        if r.peer_state() != PeerState::Up {
            return Some(0);
        }
        let since = now.saturating_duration_since(r.last_heard());
        let interval_ms = r.config().heartbeat_interval.as_millis().max(1) as u64;
        Some((since.as_millis() as u64 / interval_ms).saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::SiteState;

    #[test]
    fn every_state_reads_back_from_its_word() {
        for st in SiteState::ALL {
            assert_eq!(st.word().parse::<SiteState>(), Ok(st));
        }
        assert!("starting".parse::<SiteState>().is_err());
    }
}
