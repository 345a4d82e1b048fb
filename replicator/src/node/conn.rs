//! One service address's HTTP connections on its engine's sockets: the
//! replication glue at the HTTP layer, sans-IO.
//!
//! A connection is either **live** (this node answers it: alone, primary,
//! or promoted after a takeover) or a **shadow** (owner node, primary
//! alive). Live connections hand their HTTP output to the socket in whole
//! *units* (a reply, a `100 Continue`, a close); as primary, each unit is
//! logged to the owner node first and written only once released (the
//! owner node acknowledged it, or died). A shadow keeps the client's input
//! since the last complete reply and writes logged units into its socket in
//! order; at takeover it becomes live by resuming an HTTP connection at the
//! first request without a logged reply.
//!
//! The live side (`drive_live`, `log_units`) is in `live`, the shadow side
//! (`drive_shadow`, `reply_ahead`) in `shadow`; this file holds the types,
//! the site's table, dispatch and the engine's [`Service`] (accept, promote).

mod live;
mod local;
mod out;
mod shadow;
mod taken;
mod tls;

pub use tls::{decode_tls_unit, encode_tls_unit, HandshakeDone, HandshakeWork, TLS_INDEX};

pub(crate) use local::short_digest;
use local::{local_reply, same_bytes, NoReply};

/// A handshake step for the shell to run off the round; give the result
/// back with [`crate::node::NodeCore::handle_tls_job_done`].
#[derive(Debug)]
pub struct TlsJob {
    /// The service address's index.
    pub site: usize,
    /// The connection.
    pub conn: ConnId,
    /// Run it (`work.run()`), anywhere.
    pub work: HandshakeWork,
}

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use hotpair_http::{Limits, OutputUnit, Request, Response, ServerConn};
use hotpair_stack::smoltcp::socket::tcp;
use hotpair_stack::{ConnId, ConnInfo, Service};

use super::handler::{Handler, Job, Route, Work};
use super::stats::ServicePort;
use crate::{ConnKey, Event, PeerState, Policy, Replica, Role};
use out::OutQueue;

/// Marks a unit that answers no request: the connection closes here.
pub(crate) const CLOSE_INDEX: u64 = u64::MAX;

/// A unit on its way to the socket.
struct Pending {
    /// Replica sequence number when logged; `None` when not logged.
    seq: Option<u64>,
    released: bool,
    out: OutQueue,
    /// The HTTP layer handed it out (report `unit_flushed` when written).
    from_http: bool,
    close_after: bool,
}

/// A unit taken from the HTTP layer, not logged yet. On HTTPS its chunks
/// are plaintext and its records are reserved (`sealing`), sealed as the
/// socket takes them — or at once, when its bytes must cross the link.
struct Queued {
    unit: OutputUnit,
    sealing: Option<hotpair_tls::Deferred>,
}

impl Queued {
    fn plain(unit: OutputUnit) -> Self {
        Self {
            unit,
            sealing: None,
        }
    }

    /// The bytes for the socket.
    fn into_out(self) -> OutQueue {
        let mut q = OutQueue::default();
        match self.sealing {
            None => q.extend(self.unit.chunks),
            Some(d) => q.push_sealing(out::Sealing::new(d, self.unit.chunks)),
        }
        q
    }

    /// The bytes as one payload for the link (sealed now on HTTPS).
    fn payload(&mut self) -> Result<Bytes, hotpair_tls::TlsError> {
        let chunks = std::mem::take(&mut self.unit.chunks);
        match self.sealing.take() {
            Some(d) => out::Sealing::new(d, chunks).seal_all(),
            None if chunks.len() == 1 => Ok(chunks.into_iter().next().expect("one chunk")),
            None => Ok(Bytes::from(chunks.concat())),
        }
    }
}

/// A connection this node answers.
pub struct LiveConn {
    http: ServerConn,
    key: ConnKey,
    /// Client bytes read but not yet taken by the HTTP layer (a resumed
    /// connection starts with the input the old primary had not answered).
    input: Vec<u8>,
    /// Units taken from the HTTP layer that could not be logged yet.
    unlogged: VecDeque<Queued>,
    units: VecDeque<Pending>,
    eof_seen: bool,
    /// A unit with `close_after` has been queued: nothing follows it.
    close_queued: bool,
    /// Stop reading and close once `units` are written (a shadow that was
    /// already closing when promoted).
    finish: bool,
    /// Requests answered by a `static` or `sync-static` route: their final
    /// reply is logged as a local unit (its place and the content
    /// generation it was made from, no payload).
    local: BTreeMap<u64, (Policy, [u8; 32])>,
    /// The link session whose owner node shadows this connection; `None`
    /// when none does (opened while alone, or promoted). Only such a
    /// connection's units are logged: after a rejoin the new session's
    /// owner node knows nothing of older connections.
    session: Option<u64>,
    /// Since when released output has waited with none of it taken by the
    /// socket (the client does not read): `send_timeout` runs from here.
    send_stalled: Option<Instant>,
    /// Requests handed to the shell as jobs whose reply has not come back.
    /// While one is out no further request of the connection goes to a
    /// handler (pipelined requests run one after another, as nginx runs
    /// them): a reply's size is known only once it is made, and the output
    /// bound must count it.
    pending_jobs: usize,
    /// HTTPS: the TLS layer between the socket and `http` (`input` holds
    /// plaintext).
    tls: Option<tls::LiveTls>,
    /// The service port the client connected to (HTTP or HTTPS).
    port: u16,
}

impl LiveConn {
    /// Nothing in flight at this layer either: no unread input, no unit
    /// waiting to be logged or written, not closing.
    /// Reply bytes made and not yet written to the socket: what
    /// `max_output_bytes` bounds.
    fn held_output(&self) -> usize {
        let units: usize = self.units.iter().map(|u| u.out.wire_len()).sum();
        let unlogged: usize = self.unlogged.iter().map(|q| q.unit.len()).sum();
        units + unlogged + self.http.output_pending()
    }

    fn is_idle(&self) -> bool {
        self.input.is_empty()
            && self.unlogged.is_empty()
            && self.units.is_empty()
            && !self.eof_seen
            && !self.close_queued
            && !self.finish
            && self.local.is_empty()
    }
}

/// The owner node's mirror of a connection the primary answers.
pub struct Mirror {
    key: ConnKey,
    /// Client input from `input_base` on: the requests without a logged reply.
    input_log: Vec<u8>,
    input_base: u64,
    /// Logged bytes (and replies made here) not yet in the socket.
    units_out: OutQueue,
    /// First request without a logged final reply.
    next_index: u64,
    /// The request whose `100 Continue` was logged.
    continue_for: Option<u64>,
    close_pending: bool,
    gone: bool,
    /// The primary's connection is gone (its `ConnGone`).
    primary_gone: bool,
    /// A local reply could not be made: this shadow must not take over.
    diverged: bool,
    /// The engine was asked to detach this shadow (see `drive_shadow`).
    detach_asked: bool,
    /// Replies this node made ahead of the primary's unit for `static`
    /// routes (consecutive indices from `next_index`), in `units_out`
    /// already; each is checked against the primary's unit when it comes.
    ahead: VecDeque<Ahead>,
    /// The last reply made ahead closes the connection: nothing follows.
    ahead_closed: bool,
    /// `input_base + input_log.len()` when making a reply ahead last found
    /// no whole request: no new try before more input comes.
    ahead_tried: u64,
    /// A request this node does not make ahead (not `static` here, or not
    /// one this node can answer): its unit comes from the primary.
    ahead_skip: Option<u64>,
    /// `static_mask` when a request was found on a route not in use.
    ahead_mask: u64,
    /// HTTPS: the client's records opened here (`input_log` holds
    /// plaintext) and the sending half followed from the log.
    tls: Option<Box<tls::MirrorTls>>,
    /// The service port the client connected to (HTTP or HTTPS).
    port: u16,
    /// Final replies the client has not acknowledged whole: the ones a
    /// takeover finishes, counted here then.
    unacked: taken::Record,
}

/// Which routes are in use as `static` (the first 64), to notice a change.
fn static_mask(ok: &[bool]) -> u64 {
    ok.iter()
        .take(64)
        .enumerate()
        .fold(0, |m, (i, &ok)| m | (u64::from(ok) << i))
}

/// A reply the owner node made before the primary's unit for it came.
struct Ahead {
    index: u64,
    /// Where the request ends in the client's input (absolute).
    input_end: u64,
    close_after: bool,
    /// The reply itself, to compare with a logged payload.
    chunks: Vec<Bytes>,
    /// HTTPS: how many records it was sealed in (in `units_out`, sealed
    /// as the socket takes them).
    records: Option<u64>,
    /// The content generation it was made from.
    digest: [u8; 32],
}

/// One connection's HTTP-level state.
pub enum Conn {
    /// Answered here.
    Live(Box<LiveConn>),
    /// Mirrored here, answered by the primary.
    Shadow(Mirror),
}

/// Drop whatever the client sent that nobody will read.
fn discard_input(sock: &mut tcp::Socket<'_>) {
    while sock.can_recv() {
        let n = sock.recv(|buf| (buf.len(), buf.len())).unwrap_or(0);
        if n == 0 {
            break;
        }
    }
}

/// Bytes of client input a shadow keeps for requests without a logged
/// reply, beyond which it stops reading (its window closes, and the
/// owner node forwards nothing it does not hold).
fn input_log_limit(limits: &Limits) -> usize {
    (limits.max_header_bytes as u64 + limits.max_body_bytes + 64 * 1024).min(1 << 30) as usize
}

/// Per-address connection bookkeeping.
#[derive(Default)]
pub(crate) struct SiteConns {
    live: BTreeMap<ConnId, ConnKey>,
    by_key: BTreeMap<ConnKey, ConnId>,
    /// Replies that arrived for a connection, applied at its next drive.
    ready: BTreeMap<ConnId, Vec<(u64, Response)>>,
    /// Replication events for connections, applied at their next drive.
    conn_events: BTreeMap<ConnId, VecDeque<Event>>,
    /// Handshake steps back from the shell, applied at their next drive.
    tls_done: BTreeMap<ConnId, HandshakeDone>,
    woken: Vec<ConnId>,
    /// Shadows given up (diverged) while the primary serves on: the round
    /// has the engine detach them (`Engine::detach_shadow`) after its poll.
    pub(crate) detach: Vec<ConnId>,
    /// Requests of this address handed to a handler so far.
    pub handler_runs: u64,
    /// Connections aborted because their client took no output for
    /// `send_timeout`.
    pub send_timeouts: u64,
    /// HTTPS connections closed on a TLS error (the client's alert, a bad
    /// record, a failed handshake).
    pub tls_errors: u64,
    /// HTTPS handshakes completed here, and of them resumed ones.
    pub tls_handshakes: u64,
    pub tls_resumed: u64,
    /// HTTPS handshakes by cipher suite (IANA name; TLS 1.3 only).
    pub tls_suites: BTreeMap<&'static str, u64>,
    /// Requests by route, and their latency (status and metrics).
    pub(crate) requests: super::stats::RequestTracker,
    /// The current link session's number (see [`LiveConn`]'s `session`).
    session: u64,
    /// Connections shadowed here for the primary.
    shadows: usize,
    /// Connections answered here whose shadow lives in the current session
    /// (their replies are logged); the other live ones are unreplicated.
    replicated: BTreeSet<ConnId>,
}

impl SiteConns {
    /// A handler's reply for connection `id` (dropped if it is gone).
    pub(crate) fn reply(&mut self, id: ConnId, index: u64, response: Response) {
        if self.live.contains_key(&id) {
            self.ready.entry(id).or_default().push((index, response));
            self.woken.push(id);
        }
    }

    /// A handshake step back from the shell (dropped if the connection is
    /// gone).
    pub(crate) fn tls_job_done(&mut self, id: ConnId, done: HandshakeDone) {
        if self.live.contains_key(&id) {
            self.tls_done.insert(id, done);
            self.woken.push(id);
        }
    }

    /// A replication event for the connection `conn` names. Returns
    /// whether a connection here took it.
    pub(crate) fn event(&mut self, conn: ConnKey, ev: Event) -> bool {
        match self.by_key.get(&conn) {
            Some(&id) => {
                self.conn_events.entry(id).or_default().push_back(ev);
                self.woken.push(id);
                true
            }
            None => {
                tracing::debug!(%conn, "replication event for an unknown connection");
                false
            }
        }
    }

    /// Drive connection `id` at the next round.
    pub(crate) fn wake(&mut self, id: ConnId) {
        self.woken.push(id);
    }

    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// A new link session: connections from now on are replicated in it.
    pub(crate) fn new_session(&mut self) {
        self.session += 1;
        self.replicated.clear();
    }

    /// The peer is gone: no connection answered here is replicated now.
    pub(crate) fn peer_gone(&mut self) {
        self.replicated.clear();
    }

    /// Connections shadowed here.
    pub(crate) fn shadows(&self) -> usize {
        self.shadows
    }

    /// Connections answered here that no peer shadows (opened while this
    /// node served alone, or taken over): a planned stop cannot hand them
    /// over.
    pub(crate) fn unreplicated(&self) -> usize {
        self.live.len() - self.shadows - self.replicated.len()
    }

    /// Drive every connection at the next round.
    pub(crate) fn wake_all(&mut self) {
        self.woken.extend(self.live.keys().copied());
    }
}

/// What the connections of every address share: routes, limits, the jobs
/// handed to the shell, the `generate` seed.
pub(crate) struct Shared {
    pub routes: Vec<Route>,
    /// Per route: its content digest (a `files` route's
    /// [`hotpair_http::files::Files::digest`]; zero for others), the
    /// content *generation* a `static` decision names.
    pub digests: Vec<[u8; 32]>,
    /// The `files` routes of the previous generation whose content a reload
    /// replaced, with their digests: a local unit the primary decided
    /// before it (or before it heard of this node's reload) names such a
    /// generation, and this node makes its copy from it. Only one previous
    /// generation is kept (bounded memory): each reload replaces these.
    pub retired: Vec<(Route, [u8; 32])>,
    pub limits: Limits,
    pub jobs: VecDeque<Job>,
    /// Run `generate` inside the round (deterministic simulation).
    pub inline_generate: bool,
    /// TLS handshake steps for the shell to run off the round.
    pub tls_jobs: VecDeque<TlsJob>,
    pub seed: u64,
    pub handler_runs: u64,
    /// Replies the owner node made itself for local (`static`) units.
    pub local_replies: u64,
    /// Local units naming a content generation this node no longer (or
    /// never) held: their connections' shadows were given up.
    pub generation_missing: u64,
    /// Shadows given up because the primary's output differed from what
    /// this node made or predicted (they would not survive their primary).
    pub diverged: u64,
    /// Of `local_replies`, those made ahead of the primary's unit.
    pub replies_ahead: u64,
    /// A unit was logged: the link has something to send.
    pub logged: bool,
    /// [`Served`] records dropped at [`MAX_SERVED`].
    pub served_dropped: u64,
    /// Requests the core answered itself (`files`), for the shell's access
    /// log; `None` while nobody asks (the default: no cost).
    pub served: Option<VecDeque<Served>>,
}

/// Most [`Served`] records held for the shell between two rounds; more
/// are dropped and counted (an access log must never hold the core up).
pub const MAX_SERVED: usize = 65_536;

/// A request the node core answered itself (a `files` route), as the
/// access log wants it: the request without its body, and the reply's
/// status and body size.
#[derive(Debug)]
pub struct Served {
    /// The service address's index.
    pub site: usize,
    /// The client's address.
    pub client: std::net::SocketAddr,
    /// The request, its body left out.
    pub request: Request,
    /// The route that answered it.
    pub route: usize,
    /// The reply's status.
    pub status: u16,
    /// The reply's body bytes.
    pub bytes: usize,
}

/// The engine's view of one address: its connections, the shared part, and
/// its replica (to log units to).
pub(crate) struct SiteDriver<'a> {
    pub site: usize,
    pub conns: &'a mut SiteConns,
    pub shared: &'a mut Shared,
    pub replica: Option<&'a mut Replica>,
    /// Per route: the peer holds the same content under the same policy
    /// (the digest guard), so `static`/`sync-static` may be used.
    pub static_ok: &'a [bool],
    /// The address also serves HTTPS, on this port with this
    /// configuration: a connection to that port speaks TLS.
    pub tls: Option<&'a super::SiteTls>,
}

impl SiteDriver<'_> {
    /// The policy request `path` is replicated under on this site now, and
    /// the content generation (digest) the reply is made from:
    /// `static`/`sync-static` only while this node logs to a peer whose
    /// content matched (the peer's last `Routes` announced this very
    /// digest). The local unit names the digest, so the peer makes its copy
    /// from the same generation even if either node reloads meanwhile.
    fn local_policy(&self, path: &str) -> Option<(Policy, [u8; 32])> {
        if !self.primary_logging() {
            return None;
        }
        let (i, r) = self
            .shared
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| path.starts_with(&r.prefix))?;
        (r.policy != Policy::Logged && self.static_ok.get(i) == Some(&true))
            .then(|| (r.policy, self.shared.digests[i]))
    }

    fn dispatch(&mut self, id: ConnId, key: &ConnKey, port: u16, req: Request) -> Option<Response> {
        let sh = &mut *self.shared;
        let Some((route, r)) = sh
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| req.path.starts_with(&r.prefix))
        else {
            return Some(Response::error(404));
        };
        sh.handler_runs += 1;
        self.conns.handler_runs += 1;
        let work = match &r.handler {
            Handler::Files(files) => {
                let resp = files.handle(&req);
                if let Some(q) = sh.served.as_mut() {
                    if q.len() < MAX_SERVED {
                        q.push_back(Served {
                            site: self.site,
                            client: std::net::SocketAddr::from((key.client_ip, key.client_port)),
                            request: Request {
                                body: Bytes::new(),
                                ..req.clone()
                            },
                            route,
                            status: resp.status,
                            bytes: resp.body.len(),
                        });
                    } else {
                        sh.served_dropped += 1;
                    }
                }
                return Some(resp);
            }
            Handler::Generate { max_size } => {
                // Non-deterministic content: each reply from a fresh seed.
                let seed = sh.seed;
                sh.seed = sh.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                if sh.inline_generate {
                    return Some(hotpair_http::generate::handle(&req, seed, *max_size));
                }
                Work::Generate {
                    seed,
                    max_size: *max_size,
                }
            }
            Handler::External => Work::Route {
                route,
                // The same on every node, so the application can tell a
                // request re-executed after a takeover.
                request_id: format!("{key}-{}", req.index),
            },
        };
        sh.jobs.push_back(Job {
            site: self.site,
            conn: id,
            index: req.index,
            request: req,
            client: std::net::SocketAddr::from((key.client_ip, key.client_port)),
            port,
            work,
        });
        None
    }

    /// Count request `index` of `conn` (to `port`) for its route and port
    /// (status and metrics); a `static` route not used as such while
    /// logging is a fallback.
    fn count_request(
        &mut self,
        conn: ConnKey,
        port: ServicePort,
        index: u64,
        path: &str,
        local: bool,
        now: Instant,
    ) {
        let route = self
            .shared
            .routes
            .iter()
            .position(|r| path.starts_with(&r.prefix));
        let fallback = !local
            && route.is_some_and(|i| self.shared.routes[i].policy != Policy::Logged)
            && self.primary_logging();
        self.conns
            .requests
            .parsed(conn, port, index, route, fallback, now);
    }

    fn primary_logging(&self) -> bool {
        self.replica
            .as_ref()
            .is_some_and(|r| r.role() == Role::Primary)
    }
}

impl Service for SiteDriver<'_> {
    type Conn = Conn;

    fn accept(&mut self, id: ConnId, info: &ConnInfo, now: Instant) -> Conn {
        let key = info.key;
        // TLS is per connection, by the port it reached: the address
        // serves HTTP on its port and HTTPS on the TLS port. A shadow
        // decides as its live connection does (the same SYN, the same
        // port), so a takeover promotes each as it was.
        let tls = self
            .tls
            .filter(|t| t.port == info.local_port)
            .map(|t| &*t.config);
        tracing::trace!(?id, conn = %key, shadow = info.shadow, port = info.local_port, tls = tls.is_some(), "connection");
        self.conns.live.insert(id, key);
        self.conns.by_key.insert(key, id);
        if info.shadow {
            self.conns.shadows += 1;
            Conn::Shadow(Mirror {
                key,
                input_log: Vec::new(),
                input_base: 0,
                units_out: OutQueue::default(),
                next_index: 0,
                continue_for: None,
                close_pending: false,
                gone: false,
                primary_gone: false,
                diverged: false,
                detach_asked: false,
                ahead: VecDeque::new(),
                ahead_closed: false,
                ahead_tried: 0,
                ahead_skip: None,
                ahead_mask: 0,
                tls: tls.map(|_| Box::default()),
                port: info.local_port,
                unacked: None,
            })
        } else {
            let wants_tls = tls.is_some();
            self.conns.requests.connection(ServicePort {
                port: info.local_port,
                https: wants_tls,
            });
            let tls = match tls.map(tls::LiveTls::new).transpose() {
                Ok(t) => t,
                Err(e) => {
                    // Only a broken configuration makes rustls refuse a
                    // new connection; it is closed at the first drive.
                    tracing::error!(conn = %key, error = %e, "TLS connection could not start");
                    None
                }
            };
            let shadowed = self.replica.as_ref().is_some_and(|r| {
                r.role() == Role::Primary && r.peer_state() == PeerState::Up && !r.peer_leaving()
            });
            Conn::Live(Box::new(LiveConn {
                http: ServerConn::new(self.shared.limits, now),
                key,
                input: Vec::new(),
                unlogged: VecDeque::new(),
                units: VecDeque::new(),
                eof_seen: false,
                close_queued: false,
                local: BTreeMap::new(),
                send_stalled: None,
                pending_jobs: 0,
                finish: wants_tls && tls.is_none(),
                tls,
                port: info.local_port,
                session: shadowed.then(|| {
                    self.conns.replicated.insert(id);
                    self.conns.session
                }),
            }))
        }
    }

    fn drive(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        sock: &mut tcp::Socket<'_>,
        now: Instant,
    ) -> Option<Instant> {
        match conn {
            Conn::Live(c) => self.drive_live(id, c, sock, now),
            Conn::Shadow(m) => {
                self.drive_shadow(id, m, sock, now);
                None
            }
        }
    }

    fn closed(&mut self, id: ConnId, conn: Conn) {
        self.conns.replicated.remove(&id);
        if let Some(key) = self.conns.live.remove(&id) {
            if matches!(conn, Conn::Shadow(_)) {
                self.conns.shadows -= 1;
            }
            self.conns.requests.closed(&key);
            if self.conns.by_key.get(&key) == Some(&id) {
                self.conns.by_key.remove(&key);
            }
            if matches!(conn, Conn::Live(_)) {
                if let Some(replica) = self.replica.as_mut() {
                    replica.conn_gone(key);
                    self.shared.logged = true;
                }
            }
        }
        self.conns.ready.remove(&id);
        self.conns.conn_events.remove(&id);
        self.conns.tls_done.remove(&id);
    }

    fn woken(&mut self, out: &mut Vec<ConnId>) {
        out.append(&mut self.conns.woken);
    }

    fn idle_since(&self, conn: &Conn) -> Option<Instant> {
        match conn {
            Conn::Live(c) if c.is_idle() => c.http.idle_since(),
            // A shadow's close is the primary's to decide.
            _ => None,
        }
    }

    fn evict_idle(&mut self, id: ConnId, conn: &mut Conn, now: Instant) -> bool {
        let Conn::Live(c) = conn else { return false };
        if !c.is_idle() || !c.http.close_if_idle(now) {
            return false;
        }
        // The HTTP layer is closed now; the next drive queues its close as
        // a unit (logged under replication, like an idle timeout's), so the
        // owner node's shadow closes at the same byte, and then sends the
        // FIN.
        tracing::debug!(?id, conn = %c.key, "idle connection closed to make room for a new client");
        true
    }

    fn promote(&mut self, _id: ConnId, conn: &mut Conn, unacked: usize, now: Instant) {
        let Conn::Shadow(m) = conn else { return };
        self.conns.shadows -= 1;
        let port = ServicePort {
            port: m.port,
            https: m.tls.is_some(),
        };
        self.conns.requests.connection(port);
        if let Some(mut u) = m.unacked.take() {
            for r in u.take(unacked) {
                self.conns.requests.taken_over(port, r.route, r.status);
            }
        }
        // Replies made ahead are answered here: resume after the last.
        let (next_index, continue_sent) = match m.ahead.back() {
            Some(a) => {
                let from = (a.input_end - m.input_base) as usize;
                m.input_log.drain(..from.min(m.input_log.len()));
                (a.index + 1, false)
            }
            None => (m.next_index, m.continue_for == Some(m.next_index)),
        };
        let closing = m.close_pending || m.ahead_closed;
        // A mirror of a TLS connection carries its TLS state (`accept`
        // chose by port); an HTTP one has none.
        let http_base = m.ahead.back().map_or(m.input_base, |a| a.input_end);
        let tls = match (m.tls.take(), self.tls.map(|t| &*t.config)) {
            (None, _) => None,
            (Some(mt), Some(cfg)) => match mt.promote(cfg, http_base) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(conn = %m.key, error = %e, "TLS state could not be taken over: the connection is lost");
                    Some(tls::LiveTls::failed())
                }
            },
            (Some(_), None) => Some(tls::LiveTls::failed()),
        };
        let mut http = ServerConn::resume(self.shared.limits, now, next_index, continue_sent);
        let mut units = VecDeque::new();
        let rest = std::mem::take(&mut m.units_out);
        if !rest.is_empty() {
            units.push_back(Pending {
                seq: None,
                released: true,
                out: rest,
                from_http: false,
                close_after: closing,
            });
        }
        if closing {
            // The old primary closed this connection after these bytes.
            http.handle_eof(now);
        }
        *conn = Conn::Live(Box::new(LiveConn {
            http,
            key: m.key,
            input: std::mem::take(&mut m.input_log),
            unlogged: VecDeque::new(),
            units,
            eof_seen: false,
            close_queued: closing,
            finish: closing,
            local: BTreeMap::new(),
            session: None,
            send_stalled: None,
            pending_jobs: 0,
            tls,
            port: m.port,
        }));
    }
}
