//! [`NodeCore::handle_reload`]: a new route table (a changed docroot,
//! changed routes) handed in while every connection carries on.
//!
//! # Why a reload cannot simply swap the content
//!
//! Under `static` the primary decides that a reply is static, writes its
//! own copy to the client at once, and logs only the reply's *place* (a
//! local unit); the owner node makes its copy from its own content. If
//! either node's content changed between the primary's decision and the
//! owner node's copy — one node reloaded, the other not yet, or the
//! primary's decision was still queued behind the log window when the
//! owner node reloaded — the two copies would differ, and a takeover
//! would send the client a spliced reply. So every reply is tied to a
//! content *generation*, named by the route's digest (SHA-256 over the
//! prefix and every file, the value `Routes` announces):
//!
//! 1. The primary uses a route as `static` only while the peer's last
//!    `Routes` announced the digest the primary holds now (the digest
//!    guard, unchanged). After a reload each node compares again against
//!    the peer's last `Routes` and announces its new digests, so a route
//!    whose content changed on one node only is `logged` until the other
//!    node reloaded to the same content — then both see equal digests
//!    again and `static` is back in use, with no restart and no new link
//!    session.
//! 2. The local unit names the digest its reply was made from (wire
//!    version 4: a local unit's payload is that digest).
//! 3. The owner node makes its copy from exactly that generation: the
//!    current one, or the one its last reload retired (kept in
//!    [`super::conn::Shared`]'s `retired` until the next reload, so a unit
//!    decided before this node's new `Routes` reached the primary still
//!    finds it).
//! 4. If it holds neither (two reloads inside one link round trip), it
//!    cannot make the same bytes: that connection's shadow is given up
//!    (an error in the log, `generation_missing` counted). The client sees
//!    nothing — the primary serves on — but that connection would not
//!    survive the primary's crash. Never a spliced reply.
//! 5. A reply the owner node made *ahead* of the primary's unit (its
//!    own `static` decision, so that no client ACK waits for it) was made
//!    from its current generation, which it records: a local unit naming
//!    the same generation confirms it; one naming another generation is
//!    remade from that generation and compared byte for byte (only a
//!    request for a file that actually changed differs), and a logged
//!    unit is compared as always. A difference gives the shadow up, as in 4.
//!
//! The shell reads the files off the round (they may be large) and hands the
//! finished routes in; nothing here blocks.

use super::conn::short_digest;
use super::{compare_routes, digests_of, Handler, NodeConfigError, NodeCore, Route};

/// What a reload changed, for the shell's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Routes whose content generation changed: prefix, old and new digest
    /// (short hex).
    pub changed: Vec<(String, String, String)>,
    /// Routes new in this table.
    pub added: Vec<String>,
    /// Routes no longer in the table.
    pub removed: Vec<String>,
}

impl NodeCore {
    /// Serve HTTPS with `tls` from now on (a reload: new certificates, SNI
    /// entries or ticket keys) on every address that serves HTTPS; returns
    /// how many. Handshakes started from now on use it, and so does a
    /// takeover that must run a handshake afresh from a logged ClientHello
    /// (its client saw no server flight yet). Connections already past
    /// their handshake carry on with their own keys; a handshake under way
    /// keeps the configuration it started with. An address serving plain
    /// HTTP only stays so (which port speaks TLS cannot change live).
    pub fn set_tls(&mut self, tls: &std::sync::Arc<hotpair_tls::TlsServerConfig>) -> usize {
        let mut n = 0;
        for s in &mut self.sites {
            if let Some(t) = s.cfg.tls.as_mut() {
                t.config = tls.clone();
                n += 1;
            }
        }
        n
    }

    /// Replace the routes (handlers, policies, `files` content) with
    /// `routes`, longest prefix first as at [`NodeCore::new`]. Connections
    /// carry on; requests parsed from now on use the new table. A table
    /// the core cannot run ([`NodeConfigError::StaticNeedsFiles`]) is
    /// refused and the old one stays. See the module docs for how
    /// `static` stays byte-exact across it.
    ///
    /// The caller must have taken every [`NodeCore::poll_job`] first: a
    /// job's [`super::Work::Route`] indexes the table it was made under.
    pub fn handle_reload(&mut self, routes: Vec<Route>) -> Result<Reloaded, NodeConfigError> {
        let digests = digests_of(&routes)?;
        let mut out = Reloaded::default();
        // Old route i is new route map[i] (same prefix).
        let map: Vec<Option<usize>> = self
            .route_digests
            .iter()
            .map(|o| digests.iter().position(|n| n.prefix == o.prefix))
            .collect();
        for (o, m) in self.route_digests.iter().zip(&map) {
            match m {
                None => out.removed.push(o.prefix.clone()),
                Some(j) if digests[*j].digest != o.digest => out.changed.push((
                    o.prefix.clone(),
                    short_digest(&o.digest),
                    short_digest(&digests[*j].digest),
                )),
                Some(_) => {}
            }
        }
        for n in &digests {
            if !self.route_digests.iter().any(|o| o.prefix == n.prefix) {
                out.added.push(n.prefix.clone());
            }
        }
        let old_routes = std::mem::replace(&mut self.shared.routes, routes);
        let old_digests = std::mem::replace(&mut self.route_digests, digests);
        self.shared.digests = self.route_digests.iter().map(|r| r.digest).collect();
        // The generations this reload replaced, for local units decided
        // under them that are still on their way.
        let retired: Vec<(Route, [u8; 32])> = old_routes
            .into_iter()
            .zip(old_digests)
            .filter(|(r, d)| {
                matches!(r.handler, Handler::Files(_)) && !self.shared.digests.contains(&d.digest)
            })
            .map(|(r, d)| (r, d.digest))
            .collect();
        // A reload that changed no content keeps the generation the last
        // one retired (units naming it may still come).
        if !retired.is_empty() {
            self.shared.retired = retired;
        }
        let n = self.shared.routes.len();
        for site in &mut self.sites {
            site.static_ok = vec![false; n];
            if let Some(peer) = &site.peer_routes {
                compare_routes(
                    &self.route_digests,
                    peer,
                    &mut site.static_ok,
                    site.cfg.address.address(),
                );
            }
            if let Some(r) = site.replica.as_mut() {
                // The peer compares again too (nothing is sent without a
                // session; the next one starts with these).
                r.send_routes(self.route_digests.clone());
            }
            site.conns.requests.remap(&map, n);
            // Shadows holding requests for a route whose use changed
            // decide again whether to make their replies ahead.
            site.conns.wake_all();
        }
        self.shared.logged = true;
        Ok(out)
    }
}
