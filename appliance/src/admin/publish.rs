//! The status publisher: the stack thread's side, which counts what only
//! the shell sees and publishes a [`Status`] snapshot; the readers' side,
//! [`StatusSource`].

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hotpair_replicator::node::{NodeCore, RoleChange, SiteState};
use hotpair_replicator::{PeerState, Policy};
use tokio::sync::watch;

use super::{
    AddressPeer, AddressStatus, Connections, LatencyStatus, LogStatus, PeerStatus, Refused,
    RoleEvent, RouteInfo, RouteRequests, Status, SynCookies, FORMAT, MAX_EVENTS, PUBLISH_EVERY,
};

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
    reloads: crate::admin::ReloadStatus,
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
                reloads: Default::default(),
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

    /// A SIGHUP reload ended: `Some(true)` applied, `Some(false)` failed
    /// (the config did not load), `None` refused (a key that cannot
    /// change live). The next snapshot is published at once.
    pub fn reloaded(&mut self, result: Option<bool>) {
        match result {
            Some(true) => {
                self.reloads.ok += 1;
                self.reloads.last_ok_unix_ms = unix_ms(std::time::SystemTime::now());
            }
            Some(false) => self.reloads.failed += 1,
            None => self.reloads.refused += 1,
        }
        self.next = None;
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
                generation: generation(core.route_digest(r)),
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
            lan_up: core.lan_check_state(),
            app_up: core.app_check_state(),
            held_replies: core.held_replies(),
            reloads: crate::admin::ReloadStatus {
                generation_missing: core.generation_missing(),
                ..self.reloads.clone()
            },
            taken_at: Some(now),
        }
    }

    fn address_status(&mut self, core: &NodeCore, i: usize, now: Instant) -> AddressStatus {
        let role = core.role(i);
        let configured = core.configured_role(i);
        let state = core.site_state(i);
        let fenced = state == SiteState::Fenced;
        let st = core.engine_stats(i);
        let rs = core.replica_stats(i);
        let peer = match (core.site_peer(i), rs.as_ref(), core.heartbeat(i)) {
            (Some(p), Some(r), Some((interval, timeout))) => {
                let since = core
                    .last_heard(i)
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                let misses = core.heartbeat_misses(i, now).unwrap_or(0);
                // The total counts what each snapshot saw (the core knows
                // the misses now, not how many snapshots looked).
                let counters = self.site(i);
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
                    heartbeat_interval_ms: interval.as_millis().max(1) as u64,
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
                    codes: s.codes.clone(),
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
                codes: req.unrouted.codes.clone(),
            });
        }
        AddressStatus {
            address: core.address(i).to_string(),
            port: core.port(i),
            role: crate::config::role_name(role).into(),
            configured_role: crate::config::role_name(configured).into(),
            state: state.word().into(),
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
            diverged_resets: st.diverged_reset,
            shadows_detached: st.shadows_detached,
            detached_connections: st.detached as u64,
            refused: Refused {
                per_source: st.per_source_refused,
                half_open_evicted: st.half_open_evicted,
                half_open_expired: st.half_open_expired,
            },
            syn_cookies: SynCookies {
                sent: st.syn_cookies_sent,
                unroutable: st.syn_cookies_unroutable,
                validated: st.syn_cookies_validated,
                rejected: st.syn_cookies_rejected,
            },
            forwarded_frames: st.forwarded,
            passed_through: st.passed_through,
            takeovers: self.sites.get(i).map_or(0, |s| s.takeovers),
            fencings: self.sites.get(i).map_or(0, |s| s.fencings),
            routes,
            tls: core.tls_stats(i).map(|t| crate::admin::TlsStatus {
                port: core.tls_port(i).unwrap_or_default(),
                handshakes: t.handshakes,
                resumed: t.resumed,
                errors: t.errors,
                suites: t
                    .suites
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect(),
            }),
            ports: ports(req, core.port(i), core.tls_port(i)),
        }
    }
}

/// The address's service ports, HTTP on `http` and HTTPS on `https`, with
/// what they served; listed from the start (at zero) so a scraper's series
/// exist before the first client, and any other port that served here
/// (one a reload moved) after them.
fn ports(
    req: &hotpair_replicator::node::stats::RequestStats,
    http: u16,
    https: Option<u16>,
) -> Vec<crate::admin::PortStatus> {
    use hotpair_replicator::node::stats::{PortCounts, ServicePort};
    let mut all: std::collections::BTreeMap<ServicePort, PortCounts> = req.ports.clone();
    let configured = std::iter::once(ServicePort {
        port: http,
        https: false,
    })
    .chain(https.map(|port| ServicePort { port, https: true }));
    for p in configured {
        all.entry(p).or_default();
    }
    all.into_iter()
        .map(|(p, c)| crate::admin::PortStatus {
            port: p.port,
            scheme: if p.https { "https" } else { "http" }.into(),
            connections: c.connections,
            requests: c.requests,
        })
        .collect()
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

/// A route digest as status names a generation: its first 6 bytes in hex;
/// empty for a route without content (not `files`).
fn generation(d: [u8; 32]) -> String {
    if d == [0; 32] {
        return String::new();
    }
    d[..6].iter().map(|b| format!("{b:02x}")).collect()
}
