//! Status of a running node: the snapshot the stack thread publishes, the
//! admin socket `hotpair status` asks, and the client side of it.
//!
//! The stack thread owns the node core, so nothing else may look into it.
//! Every [`PUBLISH_EVERY`] (and at once after a takeover) the shell copies
//! what an operator wants to know into a [`Status`] and publishes it on a
//! `tokio::sync::watch` channel (latest wins: nobody waits on the stack
//! thread, the stack thread waits on nobody). The admin socket and the
//! metrics endpoint (`crate::metrics`) serve the latest snapshot.
//!
//! The admin socket speaks one line each way: the client sends `status\n`,
//! the node answers with the snapshot as one JSON document and closes.
//! `switchover\n` (`hotpair switchover`) asks for a planned stop — the
//! SIGTERM path: every connection handed to the peers, then exit — and is
//! refused unless every address is replicated with its peer up
//! (`switchover force\n` skips that check). Any other request gets
//! `{"error": "..."}`. The JSON is the stable format of
//! `hotpair status --json` (see `docs/operations.md`); fields are only
//! added, never renamed, and [`FORMAT`] changes if one ever must.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use hotpair_replicator::node::{NodeCore, RoleChange};
use hotpair_replicator::{PeerState, Policy, Role};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The version of the status document.
pub const FORMAT: u32 = 1;

/// How often the stack thread publishes a snapshot.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Clients served at once by the admin socket, and by the metrics
/// endpoint (each its own bound); more are closed at once.
pub const MAX_CLIENTS: usize = 32;

/// Longest request line the admin socket reads.
const MAX_REQUEST: usize = 256;

/// What a node reports about itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// [`FORMAT`].
    pub format: u32,
    pub node: String,
    pub pid: u32,
    /// Seconds since the node started.
    pub uptime_s: f64,
    /// When this snapshot was taken (Unix time, milliseconds).
    pub taken_at_unix_ms: u64,
    pub addresses: Vec<AddressStatus>,
    pub peers: Vec<PeerStatus>,
    /// Takeovers and fencing, oldest first (at most [`MAX_EVENTS`]).
    pub events: Vec<RoleEvent>,
    /// Static replication of this node's routes, and requests by route
    /// (summed over addresses in `addresses[].routes`).
    pub routes: Vec<RouteInfo>,
    /// The node is stopping (SIGTERM, `hotpair switchover`): it told its
    /// peers and answers for no address any more.
    #[serde(default)]
    pub leaving: bool,
    /// When the stack thread took this snapshot, on its monotonic clock:
    /// how `/healthz` tells a live stack loop from a stalled one without
    /// trusting the wall clock. Not in the JSON (meaningless elsewhere).
    #[serde(skip)]
    pub taken_at: Option<Instant>,
}

/// Most role events kept.
pub const MAX_EVENTS: usize = 64;

/// One service address.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AddressStatus {
    pub address: String,
    pub port: u16,
    /// The role now: `owner`, `primary` or `alone`.
    pub role: String,
    /// The role as configured.
    pub configured_role: String,
    /// `replicated` (the peer is up), `waiting` (replicated role, the peer
    /// is not up), `promoted` (owner whose primary died: serves alone),
    /// `claimed` (primary whose owner died: took the address, serves
    /// alone), `fenced` (silent: the peer answered for the address), or
    /// `alone` (configured so).
    pub state: String,
    pub fenced: bool,
    /// The peer sharing the address, if replicated.
    pub peer: Option<AddressPeer>,
    pub connections: Connections,
    /// Replication log and queues (present while replicated).
    pub log: Option<LogStatus>,
    /// Client segments the ingress node held (their ACK was ahead of its
    /// shadow) and those dropped at the per-connection bound.
    pub held_acks: u64,
    pub held_acks_dropped: u64,
    /// Connections refused or dropped by the bounds.
    pub refused: Refused,
    pub forwarded_frames: u64,
    pub passed_through: u64,
    /// Takeovers of this address: promotions for an owner, claims for a
    /// primary.
    pub takeovers: u64,
    /// Times this address was fenced.
    pub fencings: u64,
    /// Per route: requests served on this address.
    pub routes: Vec<RouteRequests>,
}

/// The peer of one address, as this node sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AddressPeer {
    pub name: String,
    /// `up`, `handshaking` or `down`.
    pub link: String,
    /// Milliseconds since anything (a message or part of one) was heard
    /// from the peer on this address's session.
    pub last_heard_ms: u64,
    /// Heartbeat intervals without a word from the peer, now.
    pub heartbeat_misses: u64,
    /// Heartbeat intervals missed in total (as counted every snapshot).
    pub heartbeat_misses_total: u64,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    pub heartbeats_sent: u64,
    pub heartbeats_received: u64,
}

/// Connections of one address.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Connections {
    /// Open connections this node answers.
    pub live: usize,
    /// Open connections this node shadows for its primary.
    pub shadow: usize,
    /// Of the live ones, those no peer shadows (opened while this node
    /// served alone, or taken over): a switchover cannot hand them over.
    #[serde(default)]
    pub unreplicated: usize,
    /// Handshakes in progress.
    pub half_open: usize,
    pub max: usize,
    pub accepted: u64,
    pub closed: u64,
    /// Shadows made live by takeovers.
    pub promoted: u64,
}

/// The replication log of one address.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LogStatus {
    /// Primary: reply units logged to the peer and not yet acknowledged.
    pub unacked_units: u64,
    /// Their payload bytes (the replica window in use).
    pub unacked_bytes: u64,
    /// Ingress: units received and not yet applied.
    pub unapplied_units: u64,
    /// Messages waiting in the link queue.
    pub queued_msgs: usize,
    pub logged_units: u64,
    pub mirrored_units: u64,
    pub acks_sent: u64,
    pub acks_received: u64,
    /// Local requests refused for back-pressure.
    pub refusals: u64,
}

/// Connections refused or dropped by the engine's bounds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Refused {
    pub per_source: u64,
    pub half_open_evicted: u64,
    pub half_open_expired: u64,
}

/// Requests of one route on one address.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RouteRequests {
    pub route: String,
    pub policy: String,
    /// `static`/`sync-static` route whose content matched the peer's in
    /// this link session (the digest guard): replicated as configured.
    /// `false` for a `logged` route and while fallen back to `logged`.
    pub static_in_use: bool,
    pub requests: u64,
    pub static_fallbacks: u64,
    /// Request parsed → final reply fully queued into the socket.
    pub latency: LatencyStatus,
}

/// A latency histogram (cumulative buckets, as Prometheus has them).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencyStatus {
    pub count: u64,
    pub sum_s: f64,
    /// `(le seconds, cumulative count)`; the last bound is `+Inf`, given
    /// as `null` in JSON.
    pub buckets: Vec<(Option<f64>, u64)>,
}

/// A route of the node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RouteInfo {
    pub route: String,
    pub policy: String,
}

/// One replication link.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    pub name: String,
    /// The link socket is connected.
    pub link_up: bool,
    pub link_ups: u64,
    pub link_downs: u64,
    /// The link's round trip: the kernel's smoothed RTT of the link's TCP
    /// connection (`TCP_INFO`), while it is up.
    pub rtt_us: Option<u64>,
    pub rtt_var_us: Option<u64>,
    /// Link messages encoded and not yet taken by the kernel (the shell's
    /// write buffer; it stops taking more from the core at 4 MiB).
    #[serde(default)]
    pub send_buffer_bytes: usize,
    /// Since when the link is in its present state (Unix ms).
    pub since_unix_ms: u64,
}

/// A takeover or fencing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RoleEvent {
    /// `promoted`, `claimed` or `fenced`.
    pub kind: String,
    pub address: String,
    pub peer: Option<String>,
    pub at_unix_ms: u64,
    /// Promoted: connections made live.
    pub connections: Option<u64>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn policy_name(p: Policy) -> String {
    p.name().to_owned()
}

/// The link's smoothed RTT and its variance from the kernel, in µs.
fn tcp_rtt(sock: &std::net::TcpStream) -> Option<(u64, u64)> {
    // SAFETY: a zeroed tcp_info is a valid value (plain integers).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: valid fd, a buffer of `len` bytes, `len` points to its size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then(|| (u64::from(info.tcpi_rtt), u64::from(info.tcpi_rttvar)))
}

/// What the shell shows of a link socket.
#[derive(Debug, Clone, Copy)]
pub struct LinkView<'a> {
    pub sock: &'a std::net::TcpStream,
    /// Bytes in the shell's write buffer.
    pub unsent: usize,
}

#[derive(Debug, Default, Clone)]
struct PeerCounters {
    up: bool,
    ups: u64,
    downs: u64,
    since: Option<SystemTime>,
    hello_name: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct SiteCounters {
    misses_now: u64,
    misses_total: u64,
    takeovers: u64,
    fencings: u64,
    fenced: bool,
}

/// The readers' side: the latest snapshot, and a way to ask the stack
/// thread for a fresh one.
#[derive(Clone)]
pub struct StatusSource {
    rx: watch::Receiver<std::sync::Arc<Status>>,
    want: std::sync::Arc<std::sync::atomic::AtomicBool>,
    waker: Option<hotpair_stack::Waker>,
}

impl StatusSource {
    /// A snapshot taken after this call (the stack thread is woken to take
    /// it), or the latest one if none comes within 250 ms (a busy or
    /// stalled stack thread).
    pub async fn fresh(&mut self) -> std::sync::Arc<Status> {
        self.rx.mark_unchanged();
        self.want.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(w) = &self.waker {
            w.wake();
        }
        let _ = tokio::time::timeout(Duration::from_millis(250), self.rx.changed()).await;
        self.rx.borrow_and_update().clone()
    }

    /// The latest snapshot.
    pub fn latest(&self) -> std::sync::Arc<Status> {
        self.rx.borrow().clone()
    }
}

/// The stack thread's side: counts what only the shell sees (link
/// transitions, takeovers with their times) and publishes snapshots.
pub struct StatusPublisher {
    want: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tx: watch::Sender<std::sync::Arc<Status>>,
    started: Instant,
    next: Option<Instant>,
    peers: Vec<PeerCounters>,
    sites: Vec<SiteCounters>,
    events: Vec<RoleEvent>,
    leaving: bool,
}

impl StatusPublisher {
    /// A publisher and the source the admin tasks read; `waker` wakes the
    /// stack thread when a reader wants a fresh snapshot.
    pub fn new(started: Instant, waker: Option<hotpair_stack::Waker>) -> (Self, StatusSource) {
        let (tx, rx) = watch::channel(std::sync::Arc::new(Status::default()));
        let want = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        (
            StatusPublisher {
                want: want.clone(),
                tx,
                started,
                next: None,
                peers: Vec::new(),
                sites: Vec::new(),
                events: Vec::new(),
                leaving: false,
            },
            StatusSource { rx, want, waker },
        )
    }

    /// Peer `p`'s name: as configured, or else as its `Hello` said (kept
    /// once heard, so metrics labels stay put when the link goes down).
    fn peer_name(&mut self, core: &NodeCore, p: usize, hello: Option<&str>) -> String {
        let configured = core.peer_name(p);
        if configured != "peer" {
            return configured.to_owned();
        }
        let c = self.peer(p);
        if let Some(h) = hello {
            c.hello_name = Some(h.to_owned());
        }
        c.hello_name
            .clone()
            .unwrap_or_else(|| configured.to_owned())
    }

    /// Peer `p`'s name as last known.
    fn known_peer_name(&self, core: &NodeCore, p: usize) -> String {
        self.peers
            .get(p)
            .and_then(|c| c.hello_name.clone())
            .unwrap_or_else(|| core.peer_name(p).to_owned())
    }

    fn peer(&mut self, p: usize) -> &mut PeerCounters {
        if self.peers.len() <= p {
            self.peers.resize_with(p + 1, PeerCounters::default);
        }
        &mut self.peers[p]
    }

    fn site(&mut self, s: usize) -> &mut SiteCounters {
        if self.sites.len() <= s {
            self.sites.resize_with(s + 1, SiteCounters::default);
        }
        &mut self.sites[s]
    }

    /// The link to `peer` came up.
    pub fn link_up(&mut self, peer: usize) {
        let p = self.peer(peer);
        if !p.up {
            p.up = true;
            p.ups += 1;
            p.since = Some(SystemTime::now());
        }
        self.next = None;
    }

    /// The link to `peer` went down (or could not be set up).
    pub fn link_down(&mut self, peer: usize) {
        let p = self.peer(peer);
        if p.up || p.since.is_none() {
            if p.up {
                p.downs += 1;
            }
            p.up = false;
            p.since = Some(SystemTime::now());
        }
        self.next = None;
    }

    fn push_event(&mut self, e: RoleEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.remove(0);
        }
        self.events.push(e);
        self.next = None;
    }

    /// A takeover the core reported.
    pub fn role_change(&mut self, core: &NodeCore, change: &RoleChange) {
        let (kind, address, connections) = match change {
            RoleChange::Promoted {
                address,
                connections,
            } => ("promoted", *address, Some(*connections)),
            RoleChange::Claiming { address } => ("claimed", *address, None),
        };
        let site = (0..core.sites()).find(|&i| core.address(i) == address);
        let peer = site
            .and_then(|i| core.site_peer(i))
            .map(|p| self.known_peer_name(core, p));
        if let Some(i) = site {
            self.site(i).takeovers += 1;
        }
        self.push_event(RoleEvent {
            kind: kind.into(),
            address: address.to_string(),
            peer,
            at_unix_ms: unix_ms(SystemTime::now()),
            connections,
        });
    }

    /// The node began a planned stop: the next snapshot (due at once)
    /// says so, and `/readyz` and `hotpair status --check` stop calling
    /// it ready before it is gone.
    pub fn leaving(&mut self) {
        self.leaving = true;
        self.next = None;
    }

    /// Whether a snapshot is due (the period passed, or a reader asked).
    pub fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| now >= t) || self.want.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Publish a snapshot if one is due; returns it if so.
    pub fn maybe_publish(
        &mut self,
        core: &NodeCore,
        links: &[Option<LinkView<'_>>],
        now: Instant,
    ) -> Option<std::sync::Arc<Status>> {
        let asked = self.want.swap(false, std::sync::atomic::Ordering::Relaxed);
        if !asked && self.next.is_some_and(|t| now < t) {
            return None;
        }
        self.next = Some(now + PUBLISH_EVERY);
        let status = std::sync::Arc::new(self.snapshot(core, links, now));
        self.tx.send_replace(status.clone());
        Some(status)
    }

    fn snapshot(
        &mut self,
        core: &NodeCore,
        links: &[Option<LinkView<'_>>],
        now: Instant,
    ) -> Status {
        let wall = SystemTime::now();
        let mut addresses = Vec::with_capacity(core.sites());
        for i in 0..core.sites() {
            let fenced = core.fenced(i);
            let was = std::mem::replace(&mut self.site(i).fenced, fenced);
            if fenced && !was {
                self.site(i).fencings += 1;
                let peer = core.site_peer(i).map(|p| self.known_peer_name(core, p));
                self.push_event(RoleEvent {
                    kind: "fenced".into(),
                    address: core.address(i).to_string(),
                    peer,
                    at_unix_ms: unix_ms(wall),
                    connections: None,
                });
            }
            addresses.push(self.address_status(core, i, now));
        }
        let peers = (0..core.peers())
            .map(|p| {
                let c = self.peers.get(p).cloned().unwrap_or_default();
                let link = links.get(p).copied().flatten();
                let rtt = link.and_then(|l| tcp_rtt(l.sock));
                PeerStatus {
                    name: c
                        .hello_name
                        .clone()
                        .unwrap_or_else(|| core.peer_name(p).to_owned()),
                    link_up: links.get(p).is_some_and(Option::is_some),
                    link_ups: c.ups,
                    link_downs: c.downs,
                    rtt_us: rtt.map(|r| r.0),
                    rtt_var_us: rtt.map(|r| r.1),
                    send_buffer_bytes: link.map_or(0, |l| l.unsent),
                    since_unix_ms: c.since.map_or(0, unix_ms),
                }
            })
            .collect();
        let routes = (0..core.route_count())
            .map(|r| RouteInfo {
                route: core.route_prefix(r).to_owned(),
                policy: policy_name(core.route_policy(r)),
            })
            .collect();
        Status {
            format: FORMAT,
            node: core.name().to_owned(),
            pid: std::process::id(),
            uptime_s: now.saturating_duration_since(self.started).as_secs_f64(),
            taken_at_unix_ms: unix_ms(wall),
            addresses,
            peers,
            events: self.events.clone(),
            routes,
            leaving: self.leaving,
            taken_at: Some(now),
        }
    }

    fn address_status(&mut self, core: &NodeCore, i: usize, now: Instant) -> AddressStatus {
        let role = core.role(i);
        let configured = core.configured_role(i);
        let fenced = core.fenced(i);
        let st = core.engine_stats(i);
        let rs = core.replica_stats(i);
        let link_state = rs.as_ref().map(|r| r.peer);
        let state = if fenced {
            "fenced"
        } else {
            match (configured, role) {
                (Role::Simplex, _) => "alone",
                (Role::Ingress, Role::Simplex) => "promoted",
                (Role::Primary, Role::Simplex) => "claimed",
                _ if link_state == Some(PeerState::Up) => "replicated",
                _ => "waiting",
            }
        };
        let peer = match (core.site_peer(i), rs.as_ref(), core.heartbeat(i)) {
            (Some(p), Some(r), Some((interval, timeout))) => {
                let since = core
                    .last_heard(i)
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                let interval_ms = interval.as_millis().max(1) as u64;
                let counters = self.site(i);
                // A miss is a whole interval beyond the one a heartbeat
                // may take to come; counted only while the peer is up.
                let misses = if r.peer == PeerState::Up {
                    (since.as_millis() as u64 / interval_ms).saturating_sub(1)
                } else {
                    0
                };
                if misses > counters.misses_now {
                    counters.misses_total += misses - counters.misses_now;
                }
                counters.misses_now = misses;
                let name = self.peer_name(core, p, r.peer_node.as_deref());
                let counters = self.site(i);
                Some(AddressPeer {
                    name,
                    link: match r.peer {
                        PeerState::Up => "up",
                        PeerState::Handshaking => "handshaking",
                        PeerState::Down => "down",
                    }
                    .into(),
                    last_heard_ms: since.as_millis() as u64,
                    heartbeat_misses: misses,
                    heartbeat_misses_total: counters.misses_total,
                    heartbeat_interval_ms: interval_ms,
                    heartbeat_timeout_ms: timeout.as_millis() as u64,
                    heartbeats_sent: r.heartbeats_sent,
                    heartbeats_received: r.heartbeats_received,
                })
            }
            _ => None,
        };
        let open = core.connections(i);
        let shadow = core.shadow_connections(i);
        let log = rs.as_ref().map(|r| LogStatus {
            unacked_units: r.unacked_units,
            unacked_bytes: r.unacked_bytes,
            unapplied_units: r.unpolled_units,
            queued_msgs: r.queued_msgs,
            logged_units: r.logged_units,
            mirrored_units: r.mirrored_units,
            acks_sent: r.acks_sent,
            acks_received: r.acks_received,
            refusals: r.refusals,
        });
        let req = core.request_stats(i);
        let mut routes: Vec<RouteRequests> = (0..core.route_count())
            .map(|r| {
                let s = req.route(r);
                RouteRequests {
                    route: core.route_prefix(r).to_owned(),
                    policy: policy_name(core.route_policy(r)),
                    static_in_use: core.static_in_use(i, r),
                    requests: s.requests,
                    static_fallbacks: s.static_fallbacks,
                    latency: latency(&s.latency),
                }
            })
            .collect();
        if req.unrouted.requests > 0 {
            routes.push(RouteRequests {
                route: "(none)".into(),
                policy: "-".into(),
                static_in_use: false,
                requests: req.unrouted.requests,
                static_fallbacks: 0,
                latency: latency(&req.unrouted.latency),
            });
        }
        AddressStatus {
            address: core.address(i).to_string(),
            port: core.port(i),
            role: crate::config::role_name(role).into(),
            configured_role: crate::config::role_name(configured).into(),
            state: state.into(),
            fenced,
            peer,
            connections: Connections {
                live: open - shadow,
                shadow,
                unreplicated: core.unreplicated_connections(i),
                half_open: st.half_open,
                max: core.max_connections(i),
                accepted: st.accepted,
                closed: st.closed,
                promoted: st.promoted,
            },
            log,
            held_acks: st.held,
            held_acks_dropped: st.held_dropped,
            refused: Refused {
                per_source: st.per_source_refused,
                half_open_evicted: st.half_open_evicted,
                half_open_expired: st.half_open_expired,
            },
            forwarded_frames: st.forwarded,
            passed_through: st.passed_through,
            takeovers: self.sites.get(i).map_or(0, |s| s.takeovers),
            fencings: self.sites.get(i).map_or(0, |s| s.fencings),
            routes,
        }
    }
}

fn latency(h: &hotpair_replicator::node::stats::Histogram) -> LatencyStatus {
    LatencyStatus {
        count: h.count,
        sum_s: h.sum_micros as f64 / 1e6,
        buckets: h
            .cumulative()
            .into_iter()
            .map(|(le, n)| (le.is_finite().then_some(le), n))
            .collect(),
    }
}

// ---- the admin socket (server) -------------------------------------------

/// The answer to one request line.
pub fn answer(request: &[u8], status: &Status) -> Vec<u8> {
    let line = request.strip_suffix(b"\n").unwrap_or(request);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut out = match line {
        b"status" => serde_json::to_vec(status).unwrap_or_else(|e| {
            serde_json::to_vec(&serde_json::json!({"error": format!("encoding: {e}")}))
                .unwrap_or_default()
        }),
        _ => serde_json::to_vec(&serde_json::json!({
            "error": "unknown request: send \"status\\n\" or \"switchover\\n\""
        }))
        .unwrap_or_default(),
    };
    out.push(b'\n');
    out
}

/// The answer to a `switchover` request line (`None`: not one), and
/// whether the switchover goes ahead. Without `force`, every address must
/// be replicated with its peer up: otherwise a stop hands nothing over —
/// it just stops serving.
pub fn answer_switchover(request: &[u8], status: &Status) -> Option<(Vec<u8>, bool)> {
    let line = request.strip_suffix(b"\n").unwrap_or(request);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let force = match line {
        b"switchover" => false,
        b"switchover force" => true,
        _ => return None,
    };
    let not_ready: Vec<String> = status
        .addresses
        .iter()
        .filter_map(|a| {
            if a.state != "replicated" {
                Some(format!("{} is {}", a.address, a.state))
            } else if a.connections.unreplicated > 0 {
                Some(format!(
                    "{} has {} connection(s) no peer shadows (opened before the peer rejoined)",
                    a.address, a.connections.unreplicated
                ))
            } else {
                None
            }
        })
        .collect();
    let go = force || not_ready.is_empty();
    let v = if go {
        serde_json::json!({
            "switchover": "started",
            "node": status.node,
            "forced": !not_ready.is_empty(),
        })
    } else {
        serde_json::json!({"error": format!(
            "not switching over: {} (no peer would take those connections; \
             `hotpair switchover --wait SECS` waits for them to end, --force stops anyway)",
            not_ready.join(", ")
        )})
    };
    let mut out = serde_json::to_vec(&v).unwrap_or_default();
    out.push(b'\n');
    Some((out, go))
}

/// What a granted `switchover` does (the node's planned stop).
pub type SwitchoverAction = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Bind the admin socket at `path`: its directory is made if missing, and
/// a stale socket (no node answering on it) is replaced. A live node on
/// the path is an error.
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the admin socket's directory {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "admin socket {}: another node is running there (set [admin] socket)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale admin socket {}", path.display()))?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("binding the admin socket {}", path.display()))?;
    // The mode `bind` gives comes from the umask (0755 under the usual
    // 022: anyone may connect, and `switchover` stops the node). Set it;
    // each connection's peer is checked as well (`serve`), which also
    // covers the moment between bind and chmod.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making the admin socket {} mode 0600", path.display()))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Who may use the admin socket: root and the node's own user (the
/// socket's mode says the same; this holds even if someone widens it).
fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == own_uid
}

/// At most one warning about refused admin clients per this interval.
const ADMIN_REFUSED_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Serve the admin socket until the runtime stops.
pub async fn serve(
    listener: std::os::unix::net::UnixListener,
    status: StatusSource,
    switchover: Option<SwitchoverAction>,
) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin socket unusable");
            return;
        }
    };
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(crate::admin::MAX_CLIENTS));
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own_uid = unsafe { libc::geteuid() };
    let mut refused_warned: Option<std::time::Instant> = None;
    let mut refused_since = 0u64;
    loop {
        let (mut sock, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // SO_PEERCRED: the user of the process that connected.
        let peer_uid = sock.peer_cred().map(|c| c.uid());
        if !peer_uid
            .as_ref()
            .is_ok_and(|&uid| peer_allowed(uid, own_uid))
        {
            let who = match &peer_uid {
                Ok(uid) => format!("uid {uid}"),
                Err(e) => format!("a peer whose credentials are unknown ({e})"),
            };
            refused_since += 1;
            if refused_warned.is_none_or(|t| t.elapsed() >= ADMIN_REFUSED_WARN_INTERVAL) {
                tracing::warn!(peer = %who, refused = refused_since, "admin socket: client refused (only root and the node's own user may use it)");
                refused_warned = Some(std::time::Instant::now());
                refused_since = 0;
            }
            // One line, not waited for: a refused client cannot hold a slot.
            let line = format!(
                "error: refused: {who} may not use this admin socket (only root and uid {own_uid})\n"
            );
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), sock.write_all(line.as_bytes()))
                        .await;
            });
            continue;
        }
        // A bounded number at once; beyond it a client is closed at once.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(sock);
            continue;
        };
        let mut status = status.clone();
        let switchover = switchover.clone();
        tokio::spawn(async move {
            let _slot = slot;
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = Vec::with_capacity(64);
            let read = async {
                let mut chunk = [0u8; 64];
                while !buf.contains(&b'\n') && buf.len() <= MAX_REQUEST {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(2), read)
                .await
                .is_err()
            {
                return;
            }
            let line = match buf.iter().position(|&b| b == b'\n') {
                Some(n) => &buf[..=n],
                None => &buf[..buf.len().min(MAX_REQUEST)],
            };
            let snapshot = status.fresh().await;
            let out = match (answer_switchover(line, &snapshot), &switchover) {
                (Some((out, go)), Some(act)) => {
                    if go {
                        tracing::info!(
                            "switchover asked on the admin socket: handing over and stopping"
                        );
                        act();
                    }
                    out
                }
                _ => answer(line, &snapshot),
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), sock.write_all(&out)).await;
            let _ = sock.shutdown().await;
        });
    }
}

// ---- the client: `hotpair status` ---------------------------------------

/// Ask the node on `path` for its status.
pub fn query(path: &Path) -> Result<Status> {
    let mut sock = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no such socket: is the node running, with this [admin] socket?".to_owned()
            }
            std::io::ErrorKind::ConnectionRefused => {
                "nobody answers on it: the node is not running (a stale socket)".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (run as the node's user or root)".to_owned()
            }
            _ => e.to_string(),
        };
        anyhow::anyhow!("admin socket {}: {why}", path.display())
    })?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.set_write_timeout(Some(Duration::from_secs(5)))?;
    sock.write_all(b"status\n")
        .with_context(|| format!("writing to {}", path.display()))?;
    let mut out = Vec::new();
    sock.read_to_end(&mut out).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => anyhow::anyhow!(
            "admin socket {}: the node did not answer within 5 s (stopped, or overloaded?)",
            path.display()
        ),
        _ => anyhow::anyhow!("admin socket {}: reading: {e}", path.display()),
    })?;
    parse_answer(&out).with_context(|| format!("the node on {} answered", path.display()))
}

/// Ask the node on `path` to switch over (`hotpair switchover`); its name
/// once it accepted.
pub fn switchover(path: &Path, force: bool) -> Result<String> {
    let mut sock = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        anyhow::anyhow!(
            "admin socket {}: {e} (is the node running?)",
            path.display()
        )
    })?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.write_all(if force {
        b"switchover force\n"
    } else {
        b"switchover\n"
    })?;
    let mut out = Vec::new();
    sock.read_to_end(&mut out)
        .with_context(|| format!("reading the answer on {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&out).context("not JSON (is this a hotpair admin socket?)")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("{e}");
    }
    Ok(v["node"].as_str().unwrap_or("?").to_owned())
}

/// The node's answer: a status, or its error.
pub fn parse_answer(bytes: &[u8]) -> Result<Status> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).context("not JSON (is this a hotpair admin socket?)")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("error: {e}");
    }
    if v.get("format").and_then(serde_json::Value::as_u64) != Some(u64::from(FORMAT)) {
        bail!(
            "status format {:?}, this hotpair reads {FORMAT}",
            v.get("format")
        );
    }
    serde_json::from_value(v).context("status document")
}

/// `hotpair status` as a compact table.
pub fn render(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "node {}  pid {}  up {}",
        s.node,
        s.pid,
        human_duration(s.uptime_s)
    );
    let _ = writeln!(
        o,
        "{:<18} {:<8} {:<11} {:<20} {:>9} {:>6} {:>6} {:>5} {:>10} {:>8} {:>5} {:>5}",
        "ADDRESS",
        "ROLE",
        "STATE",
        "PEER",
        "HEARD",
        "LIVE",
        "SHADOW",
        "HALF",
        "UNACKED",
        "QUEUED",
        "HELD",
        "TAKE"
    );
    for a in &s.addresses {
        let (peer, heard) = match &a.peer {
            Some(p) => (
                format!("{} {}", p.name, p.link),
                if p.link == "down" {
                    "-".to_owned()
                } else {
                    format!("{}ms", p.last_heard_ms)
                },
            ),
            None => ("-".into(), "-".into()),
        };
        let (unacked, queued) = a.log.as_ref().map_or(("-".into(), "-".into()), |l| {
            (
                format!("{}/{}", l.unacked_units, human_bytes(l.unacked_bytes)),
                l.queued_msgs.to_string(),
            )
        });
        let _ = writeln!(
            o,
            "{:<18} {:<8} {:<11} {:<20} {:>9} {:>6} {:>6} {:>5} {:>10} {:>8} {:>5} {:>5}",
            format!("{}:{}", a.address, a.port),
            a.role,
            a.state,
            peer,
            heard,
            a.connections.live,
            a.connections.shadow,
            a.connections.half_open,
            unacked,
            queued,
            a.held_acks,
            a.takeovers
        );
    }
    if !s.peers.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<12} {:<6} {:>10} {:>9} {:>6} {:>6}",
            "PEER", "LINK", "RTT", "SENDBUF", "UPS", "DOWNS"
        );
        for p in &s.peers {
            let rtt = p
                .rtt_us
                .map_or("-".to_owned(), |r| format!("{:.2}ms", r as f64 / 1000.0));
            let _ = writeln!(
                o,
                "{:<12} {:<6} {:>10} {:>9} {:>6} {:>6}",
                p.name,
                if p.link_up { "up" } else { "down" },
                rtt,
                if p.link_up {
                    human_bytes(p.send_buffer_bytes as u64)
                } else {
                    "-".to_owned()
                },
                p.link_ups,
                p.link_downs
            );
        }
    }
    // Routes: requests summed over addresses; static routes' guard per address.
    let mut by_route: BTreeMap<(String, String), (u64, u64, Vec<String>)> = BTreeMap::new();
    for a in &s.addresses {
        for r in &a.routes {
            let e = by_route
                .entry((r.route.clone(), r.policy.clone()))
                .or_default();
            e.0 += r.requests;
            e.1 += r.static_fallbacks;
            if r.policy != "logged" && r.policy != "-" && a.peer.is_some() {
                e.2.push(format!(
                    "{} {}",
                    a.address,
                    if r.static_in_use { "static" } else { "logged" }
                ));
            }
        }
    }
    if !by_route.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<22} {:<12} {:>9} {:>9}  STATIC IN USE",
            "ROUTE", "POLICY", "REQUESTS", "FALLBACK"
        );
        for ((route, policy), (n, fb, guard)) in by_route {
            let _ = writeln!(
                o,
                "{:<22} {:<12} {:>9} {:>9}  {}",
                route,
                policy,
                n,
                fb,
                if guard.is_empty() {
                    "-".to_owned()
                } else {
                    guard.join(", ")
                }
            );
        }
    }
    if !s.events.is_empty() {
        let _ = writeln!(o, "\nEVENTS");
        for e in &s.events {
            let ago = s.taken_at_unix_ms.saturating_sub(e.at_unix_ms) as f64 / 1000.0;
            let _ = writeln!(
                o,
                "  {} ago  {:<8} {}{}{}",
                human_duration(ago),
                e.kind,
                e.address,
                e.peer
                    .as_ref()
                    .map_or(String::new(), |p| format!(" (peer {p})")),
                e.connections
                    .map_or(String::new(), |c| format!(", {c} connections"))
            );
        }
    }
    o
}

fn human_duration(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1}s")
    } else if s < 7200.0 {
        format!("{:.0}m", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}

fn human_bytes(b: u64) -> String {
    if b < 10 * 1024 {
        format!("{b}B")
    } else if b < 10 << 20 {
        format!("{}K", b >> 10)
    } else {
        format!("{}M", b >> 20)
    }
}

/// `hotpair status`: which socket to ask.
pub fn socket_path(socket: Option<PathBuf>, config: Option<&Path>) -> Result<PathBuf> {
    match (socket, config) {
        (Some(s), _) => Ok(s),
        (None, Some(c)) => Ok(crate::config::Config::load(c)?.admin_socket()),
        (None, None) => {
            // The one node on this host, if there is exactly one.
            let dir = Path::new(crate::config::DEFAULT_ADMIN_DIR);
            let socks: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                        .collect()
                })
                .unwrap_or_default();
            match socks.as_slice() {
                [one] => Ok(one.clone()),
                [] => bail!(
                    "no admin socket in {}: is a node running? (or give --socket PATH or --config FILE)",
                    dir.display()
                ),
                many => bail!(
                    "{} admin sockets in {}: pick one with --socket PATH or --config FILE",
                    many.len(),
                    dir.display()
                ),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Status {
        Status {
            format: FORMAT,
            node: "n2".into(),
            pid: 42,
            uptime_s: 12.5,
            taken_at_unix_ms: 1_000_000,
            addresses: vec![AddressStatus {
                address: "10.77.0.10".into(),
                port: 80,
                role: "alone".into(),
                configured_role: "owner".into(),
                state: "promoted".into(),
                fenced: false,
                peer: Some(AddressPeer {
                    name: "n1".into(),
                    link: "down".into(),
                    last_heard_ms: 900,
                    heartbeat_misses: 0,
                    heartbeat_misses_total: 5,
                    heartbeat_interval_ms: 100,
                    heartbeat_timeout_ms: 500,
                    heartbeats_sent: 10,
                    heartbeats_received: 9,
                }),
                connections: Connections {
                    live: 3,
                    shadow: 0,
                    unreplicated: 3,
                    half_open: 1,
                    max: 1024,
                    accepted: 7,
                    closed: 4,
                    promoted: 2,
                },
                log: Some(LogStatus {
                    unacked_units: 1,
                    unacked_bytes: 2048,
                    ..LogStatus::default()
                }),
                held_acks: 3,
                held_acks_dropped: 0,
                refused: Refused {
                    per_source: 1,
                    half_open_evicted: 2,
                    half_open_expired: 3,
                },
                forwarded_frames: 100,
                passed_through: 0,
                takeovers: 1,
                fencings: 0,
                routes: vec![RouteRequests {
                    route: "/static/".into(),
                    policy: "static".into(),
                    static_in_use: false,
                    requests: 4,
                    static_fallbacks: 1,
                    latency: LatencyStatus {
                        count: 2,
                        sum_s: 0.003,
                        buckets: vec![(Some(0.001), 1), (Some(0.0025), 2), (None, 2)],
                    },
                }],
            }],
            peers: vec![PeerStatus {
                name: "n1".into(),
                link_up: false,
                link_ups: 1,
                link_downs: 1,
                rtt_us: None,
                rtt_var_us: None,
                send_buffer_bytes: 0,
                since_unix_ms: 999_000,
            }],
            events: vec![RoleEvent {
                kind: "promoted".into(),
                address: "10.77.0.10".into(),
                peer: Some("n1".into()),
                at_unix_ms: 999_000,
                connections: Some(2),
            }],
            routes: vec![RouteInfo {
                route: "/static/".into(),
                policy: "static".into(),
            }],
            leaving: false,
            taken_at: None,
        }
    }

    #[test]
    fn the_json_document_has_its_documented_shape_and_round_trips() {
        let s = sample();
        let out = answer(b"status\n", &s);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["format"], 1);
        let a = &v["addresses"][0];
        for key in [
            "address",
            "port",
            "role",
            "configured_role",
            "state",
            "fenced",
            "peer",
            "connections",
            "log",
            "held_acks",
            "refused",
            "takeovers",
            "routes",
        ] {
            assert!(a.get(key).is_some(), "addresses[0].{key} missing");
        }
        assert_eq!(a["state"], "promoted");
        assert_eq!(a["peer"]["name"], "n1");
        assert_eq!(a["peer"]["link"], "down");
        assert_eq!(a["connections"]["live"], 3);
        assert_eq!(a["log"]["unacked_bytes"], 2048);
        assert_eq!(
            a["routes"][0]["latency"]["buckets"][2][0],
            serde_json::Value::Null
        );
        assert_eq!(v["peers"][0]["link_downs"], 1);
        assert_eq!(v["events"][0]["kind"], "promoted");
        assert_eq!(parse_answer(&out).unwrap(), s);
    }

    #[test]
    fn garbage_on_the_admin_socket_is_refused_cleanly() {
        let s = sample();
        for req in [&b"GET / HTTP/1.1\r\n"[..], b"", b"\xff\xfe\n", b"statusx\n"] {
            let out = answer(req, &s);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert!(v["error"].as_str().unwrap().contains("unknown request"));
            assert!(parse_answer(&out)
                .unwrap_err()
                .to_string()
                .contains("unknown request"));
        }
        assert!(answer(b"status\r\n", &s).starts_with(b"{\"format\""));
        assert!(parse_answer(b"garbage").is_err());
        assert!(parse_answer(b"{\"format\": 99}").is_err());
    }

    #[test]
    fn the_table_names_role_state_peer_and_events() {
        let t = render(&sample());
        assert!(t.contains("node n2"), "{t}");
        assert!(t.contains("10.77.0.10:80"), "{t}");
        assert!(t.contains("promoted"), "{t}");
        assert!(t.contains("n1 down"), "{t}");
        assert!(t.contains("/static/"), "{t}");
        assert!(t.contains("EVENTS"), "{t}");
        assert!(t.contains("2 connections"), "{t}");
    }

    #[test]
    fn a_switchover_is_refused_while_an_address_has_no_peer_up() {
        let mut st = sample();
        // sample(): an address promoted, its peer down.
        let (out, go) = answer_switchover(b"switchover\n", &st).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(!go);
        assert!(v["error"].as_str().unwrap().contains("is promoted"), "{v}");
        let (out, go) = answer_switchover(b"switchover force\n", &st).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(go && v["forced"] == true, "{v}");
        for a in &mut st.addresses {
            a.state = "replicated".into();
        }
        // Replicated, but holding connections no peer shadows.
        let (out, go) = answer_switchover(b"switchover\n", &st).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(
            !go && v["error"].as_str().unwrap().contains("no peer shadows"),
            "{v}"
        );
        for a in &mut st.addresses {
            a.connections.unreplicated = 0;
        }
        let (out, go) = answer_switchover(b"switchover\n", &st).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(
            go && v["switchover"] == "started" && v["forced"] == false,
            "{v}"
        );
        assert!(answer_switchover(b"status\n", &st).is_none());
        assert!(answer_switchover(b"switchover now\n", &st).is_none());
    }

    #[test]
    fn a_missing_socket_is_a_clear_error() {
        let e = query(Path::new("/nonexistent/hotpair-test.sock")).unwrap_err();
        assert!(format!("{e:#}").contains("is the node running"), "{e:#}");
        let dir = std::env::temp_dir().join(format!("hotpair-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let e = query(&path).unwrap_err();
        assert!(format!("{e:#}").contains("not running"), "{e:#}");
        // A listener that never answers: a timeout, said as such.
        let l = std::os::unix::net::UnixListener::bind(dir.join("mute.sock")).unwrap();
        let t = std::time::Instant::now();
        let e = query(&dir.join("mute.sock")).unwrap_err();
        assert!(format!("{e:#}").contains("did not answer"), "{e:#}");
        assert!(t.elapsed() < Duration::from_secs(10));
        drop(l);
        // A stale socket is replaced by a new node.
        let l = bind(&path).unwrap();
        assert!(bind(&path)
            .unwrap_err()
            .to_string()
            .contains("another node"));
        drop(l);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_admin_socket_is_0600_and_refuses_other_users() {
        let dir = std::env::temp_dir().join(format!("hotpair-admin-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("n1.sock");
        let l = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the umask decided the socket's mode");
        assert!(peer_allowed(0, 1000) && peer_allowed(1000, 1000) && !peer_allowed(1001, 1000));
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            // Connecting as another user needs root; the rest is covered above.
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        // Widened by hand (as an operator might): SO_PEERCRED still refuses
        // another user.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_publisher, source) = StatusPublisher::new(std::time::Instant::now(), None);
        rt.spawn(async move { serve(l, source, None).await });
        let p = path.clone();
        let client = std::thread::spawn(move || {
            // The raw syscall changes this thread's credentials only (glibc's
            // setuid would change every thread's); the thread ends after.
            // SAFETY: a plain syscall with integer arguments.
            let r = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
            assert_eq!(r, 0, "setresuid");
            let mut s = std::os::unix::net::UnixStream::connect(&p).unwrap();
            let _ = s.write_all(b"status\n");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        });
        let out = rt.block_on(async {
            loop {
                if client.is_finished() {
                    break client.join().unwrap();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert!(
            out.starts_with("error: refused: uid 65534 may not use this admin socket"),
            "{out:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
