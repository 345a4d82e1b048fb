//! The metrics counted live, off the stack thread: each upstream route's
//! replies by status code and its failures by kind, and the access log's
//! dropped lines.

use std::fmt::Write as _;

use super::{family, Extra};
use crate::upstream::ERROR_KINDS;

/// Appended to the snapshot's text.
pub(super) fn render(o: &mut String, extra: &Extra) {
    if !extra.upstreams.is_empty() {
        let stats: Vec<_> = extra
            .upstreams
            .iter()
            .map(|u| (u.route(), u.stats()))
            .collect();
        let mut f = family(
            o,
            "hotpair_upstream_responses_total",
            "counter",
            "Replies from the upstream application, by route and status code (its own, not the proxy's 502/504).",
        );
        for (route, s) in &stats {
            for (code, n) in &s.responses {
                f.sample(&[("route", route), ("code", &code.to_string())], *n as f64);
            }
        }
        let mut f = family(
            o,
            "hotpair_upstream_errors_total",
            "counter",
            "Upstream exchanges that failed (the client got 502, or 504 for a timeout), by route and kind: connect, timeout, protocol, too_large.",
        );
        for (route, s) in &stats {
            for (kind, n) in ERROR_KINDS.iter().zip(s.errors) {
                f.sample(&[("route", route), ("kind", kind)], n as f64);
            }
        }
    }
    if let Some(log) = &extra.access_log {
        let mut f = family(
            o,
            "hotpair_access_log_dropped_total",
            "counter",
            "Access log lines dropped: the writer was behind (its queue full) or could not write.",
        );
        f.sample(&[], log.dropped() as f64);
    }
    // The family writer writes as it goes; nothing is left to flush.
    let _ = o.write_str("");
}
