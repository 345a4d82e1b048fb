//! Per-address request counters and the request latency histogram, for the
//! node's status and metrics. Sans-IO like the rest of the core: the times
//! are the round's `now`.
//!
//! Latency is measured from the round in which the HTTP layer handed out
//! the parsed request to the round in which the last byte of its final
//! reply was queued into the connection's socket (so for a reply larger
//! than the socket's send buffer it includes most of the transfer). On a
//! primary it includes the wait for the owner node's log
//! acknowledgement. Requests of a connection taken over mid-way are counted
//! from the takeover on (the old primary's parse time is not known here).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::ConnKey;

/// Upper bounds of the latency histogram's buckets, in seconds (the last,
/// `+Inf`, is implied).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// HTTPS on one address (status and metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsStats {
    /// Handshakes completed here (full and resumed; a connection taken
    /// over before the client's Finished is not counted).
    pub handshakes: u64,
    /// Of them, resumed with a session ticket.
    pub resumed: u64,
    /// Connections closed on a TLS error.
    pub errors: u64,
    /// Handshakes by cipher suite (IANA name); the version is always
    /// TLS 1.3.
    pub suites: Vec<(&'static str, u64)>,
}

/// A latency histogram with [`LATENCY_BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Per bucket (not cumulative), `LATENCY_BUCKETS.len() + 1` entries
    /// (the last one is `+Inf`) once anything was recorded.
    pub counts: Vec<u64>,
    /// Sum of the observations, in microseconds.
    pub sum_micros: u64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&mut self, d: Duration) {
        if self.counts.is_empty() {
            self.counts = vec![0; LATENCY_BUCKETS.len() + 1];
        }
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i] += 1;
        self.sum_micros = self
            .sum_micros
            .saturating_add(d.as_micros().min(u128::from(u64::MAX)) as u64);
        self.count += 1;
    }

    /// Cumulative counts per bucket bound (`le`), `+Inf` last.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .enumerate()
            .map(|(i, le)| {
                acc += self.counts.get(i).copied().unwrap_or(0);
                (le, acc)
            })
            .collect()
    }

    /// Add another histogram's observations.
    pub fn merge(&mut self, other: &Histogram) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; LATENCY_BUCKETS.len() + 1];
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        self.count += other.count;
    }
}

/// One route's requests on one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRequests {
    /// Requests parsed and dispatched to this route (live connections).
    pub requests: u64,
    /// Of those, requests of a `static`/`sync-static` route served as
    /// `logged` because the digest guard did not (yet) clear the route.
    pub static_fallbacks: u64,
    /// Request parsed → final reply fully queued into the socket.
    pub latency: Histogram,
    /// Final replies made here, by status code.
    pub codes: BTreeMap<u16, u64>,
}

/// A service port of an address, with whether its connections speak
/// HTTPS: an address with `[tls]` serves HTTP on its port and HTTPS on the
/// TLS port, and an operator wants the two apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePort {
    /// The local port the client connected to.
    pub port: u16,
    /// Its connections speak TLS (it is the address's `[tls] port`).
    pub https: bool,
}

/// What one service port of an address served here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounts {
    /// Connections served here: accepted live, or shadows a takeover made
    /// live (a shadow is not counted until then: the primary serves it).
    pub connections: u64,
    /// Requests parsed and dispatched here, and requests a takeover
    /// finished (as [`RouteRequests::requests`] counts them).
    pub requests: u64,
}

/// Requests on one address, by route (the index into the core's routes);
/// requests no route matched (answered 404) apart; connections and
/// requests by the port they reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// By route index (grown as routes are seen).
    pub routes: Vec<RouteRequests>,
    /// Requests no route matched.
    pub unrouted: RouteRequests,
    /// By service port (a port appears once it served a connection).
    pub ports: BTreeMap<ServicePort, PortCounts>,
}

impl RequestStats {
    fn slot(&mut self, route: Option<usize>) -> &mut RouteRequests {
        match route {
            Some(i) => {
                if self.routes.len() <= i {
                    self.routes.resize_with(i + 1, RouteRequests::default);
                }
                &mut self.routes[i]
            }
            None => &mut self.unrouted,
        }
    }

    /// Route `route`'s counters (zero if it has had no request).
    pub fn route(&self, route: usize) -> RouteRequests {
        self.routes.get(route).cloned().unwrap_or_default()
    }
}

/// One live connection's requests in flight.
#[derive(Debug, Default)]
struct ConnTrack {
    /// Parsed requests whose final reply is not fully queued yet.
    started: VecDeque<(u64, Instant, Option<usize>)>,
    /// Per unit handed to the socket queue from the HTTP layer, in order:
    /// the request index if it is a final reply.
    units: VecDeque<Option<u64>>,
}

/// Follows each live connection's requests from parse to reply.
#[derive(Debug, Default)]
pub(crate) struct RequestTracker {
    conns: BTreeMap<ConnKey, ConnTrack>,
    pub stats: RequestStats,
}

impl RequestTracker {
    /// A connection to `port` is served here from now on (accepted live,
    /// or a shadow promoted by a takeover).
    pub(crate) fn connection(&mut self, port: ServicePort) {
        self.stats.ports.entry(port).or_default().connections += 1;
    }

    /// Request `index` of `conn` (to `port`) was parsed and goes to `route`.
    pub(crate) fn parsed(
        &mut self,
        conn: ConnKey,
        port: ServicePort,
        index: u64,
        route: Option<usize>,
        static_fallback: bool,
        now: Instant,
    ) {
        self.stats.ports.entry(port).or_default().requests += 1;
        let slot = self.stats.slot(route);
        slot.requests += 1;
        if static_fallback {
            slot.static_fallbacks += 1;
        }
        self.conns
            .entry(conn)
            .or_default()
            .started
            .push_back((index, now, route));
    }

    /// Request `index` of `conn` got its final reply here, with `status`:
    /// counted for the route it was dispatched to.
    pub(crate) fn answered(&mut self, conn: ConnKey, index: u64, status: u16) {
        let route = self
            .conns
            .get(&conn)
            .and_then(|t| t.started.iter().find(|(i, _, _)| *i == index))
            .map(|&(_, _, route)| route);
        if let Some(route) = route {
            *self.stats.slot(route).codes.entry(status).or_default() += 1;
        }
    }

    /// A takeover finishes a reply the dead primary made for `route`: the
    /// request is counted here (its latency is the primary's, not known).
    pub(crate) fn taken_over(
        &mut self,
        port: ServicePort,
        route: Option<usize>,
        status: Option<u16>,
    ) {
        self.stats.ports.entry(port).or_default().requests += 1;
        let slot = self.stats.slot(route);
        slot.requests += 1;
        if let Some(code) = status {
            *slot.codes.entry(code).or_default() += 1;
        }
    }

    /// A unit from the HTTP layer joined `conn`'s socket queue; `final_of`
    /// is the request it is the final reply of.
    pub(crate) fn unit_queued(&mut self, conn: ConnKey, final_of: Option<u64>) {
        self.conns
            .entry(conn)
            .or_default()
            .units
            .push_back(final_of);
    }

    /// The oldest queued unit from the HTTP layer of `conn` is fully in its
    /// socket.
    pub(crate) fn unit_written(&mut self, conn: ConnKey, now: Instant) {
        let Some(t) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(Some(index)) = t.units.pop_front() else {
            return;
        };
        while let Some(&(i, at, route)) = t.started.front() {
            if i > index {
                break;
            }
            t.started.pop_front();
            if i == index {
                self.stats
                    .slot(route)
                    .latency
                    .observe(now.saturating_duration_since(at));
            }
        }
        if t.started.is_empty() && t.units.is_empty() {
            self.conns.remove(&conn);
        }
    }

    /// The routes were reloaded: old route `i` is new route `map[i]`
    /// (`None`: removed). Counters follow their route (by prefix), so a
    /// route's metrics stay its own however the table was reordered; a
    /// removed route's counters go with it.
    pub(crate) fn remap(&mut self, map: &[Option<usize>], routes: usize) {
        let mut moved = vec![RouteRequests::default(); routes];
        for (i, r) in std::mem::take(&mut self.stats.routes)
            .into_iter()
            .enumerate()
        {
            if let Some(&Some(j)) = map.get(i) {
                if let Some(slot) = moved.get_mut(j) {
                    *slot = r;
                }
            }
        }
        self.stats.routes = moved;
        for t in self.conns.values_mut() {
            for (_, _, route) in &mut t.started {
                *route = route.and_then(|i| map.get(i).copied().flatten());
            }
        }
    }

    /// `conn` is gone: forget what it had in flight.
    pub(crate) fn closed(&mut self, conn: &ConnKey) {
        self.conns.remove(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTP: ServicePort = ServicePort {
        port: 80,
        https: false,
    };
    const HTTPS: ServicePort = ServicePort {
        port: 443,
        https: true,
    };

    fn key(port: u16) -> ConnKey {
        ConnKey {
            client_ip: hotpair_stack::smoltcp::wire::Ipv4Address::new(10, 0, 0, 1),
            client_port: port,
            client_isn: 7,
        }
    }

    #[test]
    fn histogram_buckets_and_cumulative_counts() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.count, 3);
        assert_eq!(h.sum_micros, 300 + 3000 + 60_000_000);
        let c = h.cumulative();
        assert_eq!(c.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(c[0], (0.0005, 1));
        assert_eq!(c[3], (0.005, 2));
        assert_eq!(c[13].1, 2);
        assert_eq!(c[14], (f64::INFINITY, 3));
        let mut m = Histogram::default();
        m.merge(&h);
        m.merge(&h);
        assert_eq!(m.count, 6);
        assert_eq!(m.cumulative()[14].1, 6);
    }

    #[test]
    fn latency_from_parse_to_final_reply_written() {
        #[allow(clippy::disallowed_methods)] // a test's clock
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = RequestTracker::default();
        // Pipelined: two requests, an interim unit, two finals.
        t.parsed(key(1), HTTP, 0, Some(0), false, t0);
        t.parsed(key(1), HTTP, 1, Some(1), true, t0 + ms(1));
        t.unit_queued(key(1), None); // 100 Continue
        t.unit_queued(key(1), Some(0));
        t.unit_queued(key(1), Some(1));
        t.unit_written(key(1), t0 + ms(2));
        assert_eq!(t.stats.route(0).latency.count, 0);
        t.unit_written(key(1), t0 + ms(4));
        assert_eq!(t.stats.route(0).latency.count, 1);
        assert_eq!(t.stats.route(0).latency.sum_micros, 4000);
        t.unit_written(key(1), t0 + ms(21));
        assert_eq!(t.stats.route(1).latency.sum_micros, 20_000);
        assert_eq!(t.stats.route(1).requests, 1);
        assert_eq!(t.stats.route(1).static_fallbacks, 1);
        assert!(t.conns.is_empty());
        // A request no route took; a connection closed mid-way.
        t.parsed(key(2), HTTP, 0, None, false, t0);
        t.closed(&key(2));
        t.unit_written(key(2), t0);
        assert_eq!(t.stats.unrouted.requests, 1);
        assert_eq!(t.stats.unrouted.latency.count, 0);
        assert!(t.conns.is_empty());
    }

    #[test]
    fn connections_and_requests_are_counted_by_port() {
        #[allow(clippy::disallowed_methods)] // a test's clock
        let t0 = Instant::now();
        let mut t = RequestTracker::default();
        t.connection(HTTP);
        t.parsed(key(1), HTTP, 0, Some(0), false, t0);
        t.connection(HTTPS);
        t.connection(HTTPS);
        t.parsed(key(2), HTTPS, 0, Some(0), false, t0);
        t.parsed(key(2), HTTPS, 1, None, false, t0);
        // A takeover finishing a reply counts its request on its port.
        t.taken_over(HTTPS, Some(0), Some(200));
        let p = &t.stats.ports;
        assert_eq!(
            p.get(&HTTP),
            Some(&PortCounts {
                connections: 1,
                requests: 1
            })
        );
        assert_eq!(
            p.get(&HTTPS),
            Some(&PortCounts {
                connections: 2,
                requests: 3
            })
        );
        // The per-port requests add up to the per-route ones.
        let by_route: u64 =
            t.stats.routes.iter().map(|r| r.requests).sum::<u64>() + t.stats.unrouted.requests;
        assert_eq!(by_route, p.values().map(|c| c.requests).sum::<u64>());
    }
}
