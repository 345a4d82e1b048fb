//! Issue 18's performance targets, judged from a [`TlsRun`].

use super::super::markdown::kb;
use super::super::model::{StallSet, TlsRun, TlsServer};
use super::super::stats;
use super::super::target::Target as Verdict;

/// The duplex-overhead comparison at one size: each cell's median p50 (µs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overhead {
    pub size: u64,
    /// Rounds measured.
    pub rounds: usize,
    pub simplex_http: f64,
    pub duplex_http: f64,
    pub simplex_https: f64,
    pub duplex_https: f64,
}

impl Overhead {
    /// duplex HTTP p50 / unreplicated HTTP p50.
    pub fn http(&self) -> f64 {
        self.duplex_http / self.simplex_http
    }

    /// duplex HTTPS p50 / unreplicated HTTPS p50.
    pub fn https(&self) -> f64 {
        self.duplex_https / self.simplex_https
    }

    /// The target's figure: HTTPS's overhead ÷ HTTP's (≤ 1.1).
    pub fn ratio(&self) -> f64 {
        self.https() / self.http()
    }
}

/// [`Overhead`] per size measured (a size with a cell missing left out).
pub fn overheads(t: &TlsRun) -> Vec<Overhead> {
    let mut sizes: Vec<u64> = t.overhead.iter().map(|r| r.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .filter_map(|size| {
            let med = |duplex: bool, https: bool| {
                let v: Vec<f64> = t
                    .overhead
                    .iter()
                    .filter(|r| r.size == size && r.duplex == duplex && r.https == https)
                    .map(|r| r.p50_us)
                    .collect();
                stats::median(&v)
            };
            let mut rounds: Vec<u32> = t
                .overhead
                .iter()
                .filter(|r| r.size == size)
                .map(|r| r.round)
                .collect();
            rounds.sort_unstable();
            rounds.dedup();
            Some(Overhead {
                size,
                rounds: rounds.len(),
                simplex_http: med(false, false)?,
                duplex_http: med(true, false)?,
                simplex_https: med(false, true)?,
                duplex_https: med(true, true)?,
            })
        })
        .collect()
}

/// The stall sets side by side: (policy, victim, HTTP's, HTTPS's).
pub fn stall_pairs(t: &TlsRun) -> Vec<(&str, &str, &StallSet, &StallSet)> {
    t.stalls
        .iter()
        .filter(|s| s.https)
        .filter_map(|s| {
            let http = t
                .stalls
                .iter()
                .find(|h| !h.https && h.policy == s.policy && h.set.victim == s.set.victim)?;
            Some((s.policy.as_str(), s.set.victim.as_str(), &http.set, &s.set))
        })
        .collect()
}

fn times(v: f64) -> String {
    format!("{v:.2}×")
}

/// Issue 18's performance targets from a tls run, each with its verdict
/// (None: not measured in this run).
pub fn targets(t: &TlsRun) -> Vec<Verdict> {
    use TlsServer::*;
    let mut out = Vec::new();
    // 1. Unreplicated keep-alive ≥ nginx's req/s, 1 KB and 50 KB, 1 and 32 connections.
    let mut cells = Vec::new();
    for size in [1024, 50 * 1024] {
        for conns in [1, 32] {
            if let (Some(a), Some(n)) = (
                t.keepalive(Simplex, size, conns),
                t.keepalive(Nginx, size, conns),
            ) {
                if n.wrk.rps > 0.0 {
                    cells.push((size, conns, a.wrk.rps / n.wrk.rps));
                }
            }
        }
    }
    let worst = cells.iter().map(|c| c.2).min_by(f64::total_cmp);
    out.push(Verdict {
        what: "HTTPS: unreplicated keep-alive ≥ 1.0× nginx req/s at 1 KB and 50 KB, 1 and 32 \
               connections"
            .into(),
        ours: match worst {
            None => "—".into(),
            Some(w) => {
                let each: Vec<String> = cells
                    .iter()
                    .map(|(s, c, r)| format!("{} ×{c} {}", kb(*s), times(*r)))
                    .collect();
                format!(
                    "worst {}: {}{}",
                    times(w),
                    each.join(", "),
                    if cells.len() < 4 {
                        format!(" (only {} of the 4 cells measured)", cells.len())
                    } else {
                        String::new()
                    }
                )
            }
        },
        met: worst.map(|w| w >= 1.0),
    });
    // 2. Full handshakes ≥ 0.8× nginx's.
    let full = |s| {
        t.full_handshakes
            .iter()
            .find(|r| r.server == s)
            .map(|r| r.point.wrk.rps)
    };
    let hs = match (full(Simplex), full(Nginx)) {
        (Some(a), Some(n)) if n > 0.0 => Some((a, n)),
        _ => None,
    };
    out.push(Verdict {
        what: "HTTPS: unreplicated full handshakes/s ≥ 0.8× nginx".into(),
        ours: hs.map_or("—".into(), |(a, n)| {
            format!(
                "{a:.0} vs {n:.0}/s = {}{}",
                times(a / n),
                full(DuplexStatic).map_or(String::new(), |d| format!(
                    " (duplex static {d:.0}/s = {})",
                    times(d / n)
                ))
            )
        }),
        met: hs.map(|(a, n)| a / n >= 0.8),
    });
    // 3. Duplex p50 overhead over HTTPS ≤ 1.1× HTTP's.
    let ov = overheads(t);
    if ov.is_empty() {
        out.push(Verdict {
            what: "HTTPS: duplex p50 overhead over unreplicated ≤ 1.1× HTTP's".into(),
            ours: "—".into(),
            met: None,
        });
    }
    for o in &ov {
        out.push(Verdict {
            what: format!(
                "HTTPS: duplex p50 overhead over unreplicated ≤ 1.1× HTTP's, {}, 1 connection",
                kb(o.size)
            ),
            ours: format!(
                "HTTPS {} ({:.0} / {:.0} µs) ÷ HTTP {} ({:.0} / {:.0} µs) = {}, medians of {} rounds",
                times(o.https()),
                o.duplex_https,
                o.simplex_https,
                times(o.http()),
                o.duplex_http,
                o.simplex_http,
                times(o.ratio()),
                o.rounds
            ),
            met: Some(o.ratio() <= 1.1),
        });
    }
    // 4. The HTTPS failover stall within 10 % of HTTP's.
    let pairs = stall_pairs(t);
    if pairs.is_empty() {
        out.push(Verdict {
            what: "HTTPS failover stall ≤ 1.1× HTTP's".into(),
            ours: "—".into(),
            met: None,
        });
    }
    for (policy, victim, http, https) in pairs {
        let r = https.median().zip(http.median()).map(|(a, b)| a / b);
        let ms = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0} ms"));
        out.push(Verdict {
            what: format!(
                "HTTPS failover stall ≤ 1.1× HTTP's, {policy}, {} SIGKILLed",
                victim
            ),
            ours: format!(
                "median {} vs {} over {} kills each = {}",
                ms(https.median()),
                ms(http.median()),
                https.stalls_ms.len(),
                r.map_or("—".into(), times)
            ),
            met: r.map(|r| r <= 1.1),
        });
    }
    // 5. `static` ≥ 2× `logged` over HTTPS at 50 KB: each one's best req/s
    // over the concurrencies measured; every concurrency listed.
    let size = 50 * 1024;
    let mut conns: Vec<u32> = t
        .keepalive
        .iter()
        .filter(|r| r.size == size)
        .map(|r| r.point.conns)
        .collect();
    conns.sort_unstable();
    conns.dedup();
    let mut each = Vec::new();
    let (mut best_s, mut best_l) = (0.0f64, 0.0f64);
    for c in conns {
        if let (Some(s), Some(l)) = (
            t.keepalive(DuplexStatic, size, c),
            t.keepalive(DuplexLogged, size, c),
        ) {
            best_s = best_s.max(s.wrk.rps);
            best_l = best_l.max(l.wrk.rps);
            each.push(format!("×{c} {}", times(s.wrk.rps / l.wrk.rps)));
        }
    }
    let peak = (best_l > 0.0).then(|| best_s / best_l);
    out.push(Verdict {
        what: "HTTPS: duplex `static` ≥ 2× `logged` req/s, 50 KB (each one's best over the \
               concurrencies)"
            .into(),
        ours: peak.map_or("—".into(), |p| {
            format!("{}; per concurrency {}", times(p), each.join(", "))
        }),
        met: peak.map(|p| p >= 2.0),
    });
    out
}
