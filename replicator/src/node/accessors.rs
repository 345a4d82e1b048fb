//! Read-only accessors of [`NodeCore`] for status and metrics.

use std::time::{Duration, Instant};

use hotpair_stack::engine::EngineStats;
use hotpair_stack::smoltcp::wire::Ipv4Address;

use super::{stats, NodeCore, PeerId};

use crate::{Policy, Replica, ReplicaStats, Role};

impl NodeCore {
    /// Run `generate` inside the round instead of handing it out as a job
    /// (the deterministic simulation; it never uses external routes).
    pub fn set_inline_generate(&mut self, inline: bool) {
        self.shared.inline_generate = inline;
    }

    /// The latest time any input, round or poll handed in, if any.
    pub fn last_call(&self) -> Option<Instant> {
        self.last_call
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of service addresses.
    pub fn sites(&self) -> usize {
        self.sites.len()
    }

    /// Site `i`'s address.
    pub fn address(&self, site: usize) -> Ipv4Address {
        self.sites[site].cfg.address.address()
    }

    /// Site `i`'s role now (after any takeover).
    pub fn role(&self, site: usize) -> Role {
        self.sites[site].engine.mode()
    }

    /// Site `i`'s engine counters.
    pub fn engine_stats(&self, site: usize) -> EngineStats {
        self.sites[site].engine.stats()
    }

    /// Site `i`'s replication counters, if it is replicated.
    pub fn replica_stats(&self, site: usize) -> Option<ReplicaStats> {
        self.sites[site].replica.as_ref().map(Replica::stats)
    }

    /// Site `i`'s open connections (live and shadow).
    pub fn connections(&self, site: usize) -> usize {
        self.sites[site].conns.len()
    }

    /// Site `i`'s connections shadowed here for its primary.
    pub fn shadow_connections(&self, site: usize) -> usize {
        self.sites[site].conns.shadows()
    }

    /// Site `i`'s connections answered here that no peer shadows (opened
    /// while alone, or taken over): a planned stop cannot hand them over.
    pub fn unreplicated_connections(&self, site: usize) -> usize {
        self.sites[site].conns.unreplicated()
    }

    /// Whether site `i` was fenced (its peer answered for the address).
    pub fn fenced(&self, site: usize) -> bool {
        self.sites[site].engine.fenced()
    }

    /// Requests handed to a handler so far (a test counts re-executions).
    pub fn handler_runs(&self) -> u64 {
        self.shared.handler_runs
    }

    /// Requests of site `i`'s address handed to a handler so far (a test
    /// counts re-executions per address).
    pub fn site_handler_runs(&self, site: usize) -> u64 {
        self.sites[site].conns.handler_runs
    }

    /// Site `i`'s connections aborted at the send timeout (a client that
    /// stopped reading).
    pub fn send_timeouts(&self, site: usize) -> u64 {
        self.sites[site].conns.send_timeouts
    }

    /// HTTPS counters of site `i`'s address; `None` when it serves plain
    /// HTTP.
    pub fn tls_stats(&self, site: usize) -> Option<super::stats::TlsStats> {
        let s = &self.sites[site];
        s.cfg.tls.as_ref().map(|_| super::stats::TlsStats {
            handshakes: s.conns.tls_handshakes,
            resumed: s.conns.tls_resumed,
            errors: s.conns.tls_errors,
            suites: s.conns.tls_suites.iter().map(|(k, v)| (*k, *v)).collect(),
        })
    }

    /// Route `route`'s content digest: the generation its `static`
    /// replies are made from now (zero for a route that is not `files`).
    pub fn route_digest(&self, route: usize) -> [u8; 32] {
        self.shared.digests.get(route).copied().unwrap_or_default()
    }

    /// Content generations a reload retired and this node still holds for
    /// local units decided under them (prefix, digest).
    pub fn retired_generations(&self) -> Vec<(String, [u8; 32])> {
        self.shared
            .retired
            .iter()
            .map(|(r, d)| (r.prefix.clone(), *d))
            .collect()
    }

    /// Local units that named a content generation this node did not hold
    /// (their shadows were given up; see [`NodeCore::handle_reload`]).
    pub fn generation_missing(&self) -> u64 {
        self.shared.generation_missing
    }

    /// Shadow connections this node gave up because the primary's output
    /// differed from what it made or predicted (a reply made ahead, a
    /// record's key or sequence number): those would not have survived
    /// their primary.
    pub fn shadows_diverged(&self) -> u64 {
        self.shared.diverged
    }

    /// `static` replies this node made itself as an owner node.
    pub fn local_replies(&self) -> u64 {
        self.shared.local_replies
    }

    /// Of [`NodeCore::local_replies`], those made ahead of the primary's
    /// unit (from the request in this node's own input log).
    pub fn replies_ahead(&self) -> u64 {
        self.shared.replies_ahead
    }

    /// Whether route `route` is replicated under its `static` policy on
    /// site `site` now (the peer's content matched in this link session).
    pub fn static_in_use(&self, site: usize, route: usize) -> bool {
        self.sites[site].static_ok.get(route) == Some(&true)
    }

    /// Units this node logged to its peers so far.
    pub fn logged_units(&self) -> u64 {
        self.sites
            .iter()
            .filter_map(|s| s.replica.as_ref())
            .map(|r| r.stats().logged_units)
            .sum()
    }

    // ---- read-only accessors for status and metrics ------------------------

    /// Site `i`'s role as configured (before any takeover).
    pub fn configured_role(&self, site: usize) -> Role {
        self.sites[site].cfg.role
    }

    /// The peer sharing site `i`'s address, if it is replicated.
    pub fn site_peer(&self, site: usize) -> Option<PeerId> {
        self.sites[site].cfg.peer
    }

    /// Site `i`'s TCP port (HTTP).
    pub fn port(&self, site: usize) -> u16 {
        self.sites[site].cfg.port
    }

    /// Site `i`'s HTTPS port, if it serves HTTPS too.
    pub fn tls_port(&self, site: usize) -> Option<u16> {
        self.sites[site].cfg.tls.as_ref().map(|t| t.port)
    }

    /// Site `i`'s connection bound.
    pub fn max_connections(&self, site: usize) -> usize {
        self.sites[site].cfg.admission.max_connections
    }

    /// When anything was last heard from site `i`'s peer (the start of the
    /// link session, or of the node, if nothing yet); `None` unreplicated.
    pub fn last_heard(&self, site: usize) -> Option<Instant> {
        self.sites[site].replica.as_ref().map(Replica::last_heard)
    }

    /// Site `i`'s heartbeat interval and timeout; `None` unreplicated.
    pub fn heartbeat(&self, site: usize) -> Option<(Duration, Duration)> {
        self.sites[site]
            .replica
            .as_ref()
            .map(|r| (r.config().heartbeat_interval, r.config().heartbeat_timeout))
    }

    /// Site `i`'s requests by route and their latency.
    pub fn request_stats(&self, site: usize) -> &stats::RequestStats {
        &self.sites[site].conns.requests.stats
    }

    /// Number of routes (indices of [`NodeCore::route_prefix`],
    /// [`NodeCore::route_policy`] and [`stats::RequestStats::routes`]).
    pub fn route_count(&self) -> usize {
        self.shared.routes.len()
    }

    /// Route `i`'s URL prefix.
    pub fn route_prefix(&self, route: usize) -> &str {
        &self.shared.routes[route].prefix
    }

    /// Route `i`'s configured policy.
    pub fn route_policy(&self, route: usize) -> Policy {
        self.shared.routes[route].policy
    }

    /// Error replies held for the application check's verdict.
    pub fn held_replies(&self) -> usize {
        self.held.len()
    }

    /// Whether the LAN check is configured, and its state.
    pub fn lan_check_state(&self) -> Option<bool> {
        self.lan.as_ref().map(super::LanCheck::is_up)
    }

    /// Whether the application check is configured, and its state.
    pub fn app_check_state(&self) -> Option<bool> {
        self.app.as_ref().map(super::AppCheck::is_up)
    }

    /// Times the application check changed its mind.
    pub fn app_changes(&self) -> u64 {
        self.app.as_ref().map_or(0, super::AppCheck::changes)
    }
}
