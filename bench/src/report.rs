//! `report.md` from [`Results`]: every figure as a table with the paper's
//! value beside ours, the targets met or missed, and what was not measured.

use std::fmt::Write;

use super::markdown::{kb, table, us};
use super::model::{Config, Point, Results, Workload};
use super::stats;
use super::target::{verdict, Target};

/// What the paper's text states (its figures are plots; the values below
/// are the ones its text gives in numbers).
pub mod paper {
    /// Dual-role over duplex peak throughput, `generate` 50 KB (§V: "up to 67 %").
    pub const DUAL_OVER_DUPLEX_50K: f64 = 1.67;
    /// `static` over `logged` peak throughput at 50 KB (§V: "up to 121 %").
    pub const STATIC_THROUGHPUT_50K: f64 = 2.21;
    /// `static` over `logged` mean latency at 50 KB (§V: "reduction of up to 43 %").
    pub const STATIC_LATENCY_50K: f64 = 0.57;
    /// Figure 6's fixed rate, 5 KB static replies, req/s.
    pub const FIG6_RATE: f64 = 550.0;
}

pub const NOT_BUILT: &str = "**not measured: content policies not built yet** \
(`hotpair lab up --help` has no `--static-policy`)";

fn rps(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.0}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn x(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.2}×"))
}

fn peak_rps(r: &Results, c: Config, w: Workload, size: u64) -> Option<f64> {
    r.peak(c, w, size).map(|p| p.wrk.rps)
}

/// The link RTT floor of duplex overhead: one and a half round trips.
pub fn floor_us(r: &Results) -> Option<f64> {
    r.rtt
        .iter()
        .find(|t| t.net == "shared")
        .map(|t| 1.5 * t.summary.p50_us)
}

/// Dual-role theoretical peak: both nodes' quota spent on requests that
/// each cost duplex primary + backup CPU.
pub fn dual_theoretical(r: &Results, size: u64) -> Option<f64> {
    let p = r.peak(Config::Duplex, Workload::Generate, size)?;
    let total = p.cpu_us_per_request("n1")? + p.cpu_us_per_request("n2")?;
    let q = p.quota?;
    (total > 0.0).then(|| 2.0 * q * 1e6 / total)
}

pub fn targets(r: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    // 1. simplex vs nginx, every size and concurrency.
    let mut worst_rps: Option<f64> = None;
    let mut worst_p50: Option<f64> = None;
    for m in r.nginx.iter().filter(|m| m.config == Config::Simplex) {
        if let Some(n) = r.nginx_row(Config::Nginx, m.size, m.point.conns) {
            let a = m.point.wrk.rps / n.wrk.rps;
            let b = m.point.wrk.p50_us / n.wrk.p50_us;
            worst_rps = Some(worst_rps.map_or(a, |w: f64| w.min(a)));
            worst_p50 = Some(worst_p50.map_or(b, |w: f64| w.max(b)));
        }
    }
    t.push(Target {
        what: "simplex ≥ 1.0× nginx req/s at every size and concurrency".into(),
        ours: format!("worst {}", x(worst_rps)),
        met: worst_rps.map(|v| v >= 1.0),
    });
    t.push(Target {
        what: "simplex ≤ 1.0× nginx p50 at every size and concurrency".into(),
        ours: format!("worst {}", x(worst_p50)),
        met: worst_p50.map(|v| v <= 1.0),
    });
    // 2. duplex overhead vs the link floor, 1 KB files, one outstanding request.
    let over = match (
        r.latency(Config::Duplex, Workload::Files, 1024),
        r.latency(Config::Simplex, Workload::Files, 1024),
    ) {
        (Some(d), Some(s)) => Some(d.wrk.p50_us - s.wrk.p50_us),
        _ => None,
    };
    let rel = ratio(over, floor_us(r));
    t.push(Target {
        what: "duplex p50 overhead over simplex ≤ 1.1× its floor (1.5 link RTT), 1 KB".into(),
        ours: format!(
            "+{} over a floor of {} = {}",
            us(over),
            us(floor_us(r)),
            x(rel)
        ),
        met: rel.map(|v| v <= 1.1),
    });
    // 3. dual-role vs duplex, generate 50 KB.
    let d = ratio(
        peak_rps(r, Config::DualRole, Workload::Generate, 50 * 1024),
        peak_rps(r, Config::Duplex, Workload::Generate, 50 * 1024),
    );
    t.push(Target {
        what: format!(
            "dual-role ≥ 1.8× duplex peak, generate 50 KB (paper {:.2}×)",
            paper::DUAL_OVER_DUPLEX_50K
        ),
        ours: x(d),
        met: d.map(|v| v >= 1.8),
    });
    // 4. static vs logged at 50 KB.
    let st = ratio(
        peak_rps(r, Config::Static, Workload::Files, 50 * 1024),
        peak_rps(r, Config::Duplex, Workload::Files, 50 * 1024),
    );
    t.push(Target {
        what: format!(
            "static ≥ 2.5× logged peak, files 50 KB (paper {:.2}×)",
            paper::STATIC_THROUGHPUT_50K
        ),
        ours: x(st),
        met: st.map(|v| v >= 2.5),
    });
    let sl = ratio(
        r.latency(Config::Static, Workload::Files, 50 * 1024)
            .map(|p| p.wrk.mean_us),
        r.latency(Config::Duplex, Workload::Files, 50 * 1024)
            .map(|p| p.wrk.mean_us),
    );
    t.push(Target {
        what: format!(
            "static ≤ 0.5× logged mean latency, 50 KB (paper {:.2}×)",
            paper::STATIC_LATENCY_50K
        ),
        ours: x(sl),
        met: sl.map(|v| v <= 0.5),
    });
    // 5. sync-static p99.9 ≤ static's at the fixed rate.
    let (s, ss) = (r.open_loop(Config::Static), r.open_loop(Config::SyncStatic));
    t.push(Target {
        what: "sync-static p99.9 ≤ static p99.9 at the fixed rate (Fig. 6)".into(),
        ours: match (s, ss) {
            (Some(s), Some(ss)) => {
                format!(
                    "{} vs {}",
                    us(Some(ss.summary.p999_us)),
                    us(Some(s.summary.p999_us))
                )
            }
            _ => "—".into(),
        },
        met: s
            .zip(ss)
            .map(|(s, ss)| ss.summary.p999_us <= s.summary.p999_us),
    });
    // 6. planned switchover (issue: ≤ 10 ms).
    for set in r.stalls.iter().filter(|s| s.signal == "switchover") {
        t.push(Target {
            what: format!(
                "planned switchover of the {}: worst request ≤ 10 ms",
                set.victim
            ),
            ours: format!(
                "max {:.1} ms, median {:.1} ms over {} switchovers (worst before the stop in \
                 the same runs: max {}, median {})",
                set.max().unwrap_or(f64::NAN),
                set.median().unwrap_or(f64::NAN),
                set.stalls_ms.len(),
                stats::max(&set.baseline_ms).map_or("—".into(), |v| format!("{v:.1} ms")),
                stats::median(&set.baseline_ms).map_or("—".into(), |v| format!("{v:.1} ms")),
            ),
            met: set.max().map(|m| m <= 10.0),
        });
    }
    // 7. frozen-node stall.
    for set in r.stalls.iter().filter(|s| s.signal == "SIGSTOP") {
        let bound = (set.heartbeat_timeout_ms + 50) as f64;
        t.push(Target {
            what: format!(
                "frozen {} stall ≤ heartbeat timeout + 50 ms = {bound:.0} ms",
                set.victim
            ),
            ours: format!(
                "max {:.0} ms over {} kills",
                set.max().unwrap_or(f64::NAN),
                set.stalls_ms.len()
            ),
            met: set.max().map(|m| m <= bound),
        });
    }
    // Issue 18 (HTTPS), when the tls part ran.
    if let Some(tls) = &r.tls {
        t.extend(super::tls::targets(tls));
    }
    t
}

fn plot(out: &mut String, name: &str, plots: &[String]) {
    if plots.iter().any(|p| p == name) {
        let _ = writeln!(out, "![{name}]({name}.svg) ([PNG]({name}.png))\n");
    }
}

/// Renders the report; `plots`: the names of the plots written.
pub fn render(r: &Results, plots: &[String]) -> String {
    let mut o = String::new();
    let m = &r.meta;
    let _ = writeln!(
        o,
        "# hotpair bench — the paper's evaluation on this machine\n"
    );
    let _ = writeln!(
        o,
        "Run {} → {} ({:.0} s){}. Each server (node, nginx) held to **{} CPU** by a cgroup; \
         the client is not limited. {:.0} s per closed-loop point.\n",
        m.started,
        m.finished,
        m.duration_s,
        if m.quick {
            ", **--quick: a smoke test, numbers are not meaningful**"
        } else {
            ""
        },
        m.node_cpus,
        m.seconds_per_point
    );
    if !m.machine.is_empty() {
        let _ = writeln!(o, "Machine:\n");
        for (k, v) in &m.machine {
            let _ = writeln!(o, "- {k}: {v}");
        }
        o.push('\n');
    }
    if !r.not_measured.is_empty() {
        let _ = writeln!(o, "## Not measured\n");
        for n in &r.not_measured {
            let _ = writeln!(o, "- {n}");
        }
        o.push('\n');
    }
    let _ = writeln!(
        o,
        "The paper's figures are plots; where its text gives a number, it is in the \
         *paper* column. Its testbed (350 MHz Pentium II, 100 Mb/s Ethernet, Apache, kernel \
         module) differs from ours by orders of magnitude in absolute terms: compare ratios.\n"
    );

    // Targets.
    let _ = writeln!(o, "## Targets\n");
    let rows: Vec<Vec<String>> = targets(r)
        .into_iter()
        .map(|t| vec![t.what, t.ours, verdict(t.met).into()])
        .collect();
    table(&mut o, &["target", "ours", ""], &rows);

    // Fig. 2.
    let _ = writeln!(
        o,
        "## Fig. 2 — CPU time per request (`generate`, µs, at the peak point)\n"
    );
    let _ = writeln!(
        o,
        "From each node's cgroup CPU accounting over the peak run, divided by the requests \
         served. Paper: the backup is \"mostly idle\" (its cycles per request are a small \
         fraction of the primary's).\n"
    );
    let gen_sizes = r.peak_sizes(Workload::Generate);
    let rows: Vec<Vec<String>> = gen_sizes
        .iter()
        .map(|&s| {
            let u = r
                .peak(Config::Simplex, Workload::Generate, s)
                .and_then(|p| p.cpu_us_per_request("n1"));
            let d = r.peak(Config::Duplex, Workload::Generate, s);
            let pri = d.and_then(|p| p.cpu_us_per_request("n1"));
            let bu = d.and_then(|p| p.cpu_us_per_request("n2"));
            let tot = pri.zip(bu).map(|(a, b)| a + b);
            let f = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.1}"));
            vec![kb(s), f(u), f(pri), f(bu), f(tot), x(ratio(bu, pri))]
        })
        .collect();
    table(
        &mut o,
        &[
            "size",
            "unreplicated",
            "duplex primary",
            "duplex backup",
            "duplex total",
            "backup / primary",
        ],
        &rows,
    );
    plot(&mut o, "fig2-cpu-per-request", plots);

    // Fig. 3.
    let _ = writeln!(o, "## Fig. 3 — peak throughput, `generate` (req/s)\n");
    let _ = writeln!(
        o,
        "Clients each keep one request outstanding; their number is raised until req/s stop \
         growing (clients at the peak in brackets). Dual-role: half the clients on each \
         address. Theoretical: 2 × quota / (duplex primary + backup CPU per request).\n"
    );
    let rows: Vec<Vec<String>> = gen_sizes
        .iter()
        .map(|&s| {
            let pk = |c| {
                r.peak(c, Workload::Generate, s)
                    .map_or("—".into(), |p| format!("{:.0} ({})", p.wrk.rps, p.conns))
            };
            let u = peak_rps(r, Config::Simplex, Workload::Generate, s);
            let dr = ratio(
                peak_rps(r, Config::DualRole, Workload::Generate, s),
                peak_rps(r, Config::Duplex, Workload::Generate, s),
            );
            vec![
                kb(s),
                pk(Config::Simplex),
                rps(u.map(|v| 2.0 * v)),
                pk(Config::Duplex),
                pk(Config::DualRole),
                rps(dual_theoretical(r, s)),
                x(dr),
                if s == 50 * 1024 {
                    format!("{:.2}×", paper::DUAL_OVER_DUPLEX_50K)
                } else {
                    "—".into()
                },
            ]
        })
        .collect();
    table(
        &mut o,
        &[
            "size",
            "unreplicated",
            "2× unreplicated",
            "duplex",
            "dual-role",
            "dual-role theoretical",
            "dual-role / duplex",
            "paper",
        ],
        &rows,
    );
    plot(&mut o, "fig3-generate-peak", plots);

    // Fig. 4.
    let _ = writeln!(o, "## Fig. 4 — peak throughput, cached files (req/s)\n");
    let file_sizes = r.peak_sizes(Workload::Files);
    let rows: Vec<Vec<String>> = file_sizes
        .iter()
        .map(|&s| {
            let pk = |c: Config| match r.peak(c, Workload::Files, s) {
                Some(p) => format!("{:.0} ({})", p.wrk.rps, p.conns),
                None if c.needs_static_policy() && !m.static_policy_available => {
                    "not measured".into()
                }
                None => "—".into(),
            };
            let st = ratio(
                peak_rps(r, Config::Static, Workload::Files, s),
                peak_rps(r, Config::Duplex, Workload::Files, s),
            );
            vec![
                kb(s),
                pk(Config::Simplex),
                pk(Config::Duplex),
                pk(Config::DuplexMi),
                pk(Config::Static),
                pk(Config::SyncStatic),
                x(st),
                if s == 50 * 1024 {
                    format!("{:.2}×", paper::STATIC_THROUGHPUT_50K)
                } else {
                    "—".into()
                },
            ]
        })
        .collect();
    table(
        &mut o,
        &[
            "size",
            "unreplicated",
            "duplex",
            "duplex-mi",
            "static",
            "sync-static",
            "static / duplex",
            "paper",
        ],
        &rows,
    );
    if !m.static_policy_available {
        let _ = writeln!(o, "static, sync-static: {NOT_BUILT}\n");
    }
    plot(&mut o, "fig4-files-peak", plots);

    // Saturation check.
    let _ = writeln!(o, "### Was the client the bottleneck?\n");
    let _ = writeln!(
        o,
        "At each peak, the busiest server's CPU time as a share of its quota. Near 100 %: \
         the servers, not the client, limited the rate.\n"
    );
    let rows: Vec<Vec<String>> = r
        .peaks
        .iter()
        .filter_map(|p| {
            let pk = p.peak()?;
            Some(vec![
                p.config.label().into(),
                p.workload.label().into(),
                kb(p.size),
                pk.conns.to_string(),
                pk.saturation()
                    .map_or("—".into(), |s| format!("{:.0} %", s * 100.0)),
            ])
        })
        .collect();
    table(
        &mut o,
        &[
            "config",
            "workload",
            "size",
            "clients",
            "busiest server / quota",
        ],
        &rows,
    );

    // Fig. 5.
    let _ = writeln!(o, "## Fig. 5 — mean latency, one outstanding request\n");
    let _ = writeln!(
        o,
        "`generate` for unreplicated and duplex (as the paper), files for all. Reply-logging \
         share: duplex files − static files, the part of duplex's overhead that reply logging \
         costs (needs `static`).\n"
    );
    let rows: Vec<Vec<String>> = r
        .latency_sizes()
        .iter()
        .map(|&s| {
            let l = |c, w| r.latency(c, w, s).map(|p| p.wrk.mean_us);
            let dfiles = l(Config::Duplex, Workload::Files);
            let sfiles = l(Config::Simplex, Workload::Files);
            let st = l(Config::Static, Workload::Files);
            let share = match (dfiles, sfiles, st) {
                (Some(d), Some(u), Some(st)) if d > u => {
                    Some(format!("{:.0} %", 100.0 * (d - st) / (d - u)))
                }
                _ => None,
            };
            let nm = |v: Option<f64>| {
                if v.is_none() && !m.static_policy_available {
                    "not measured".into()
                } else {
                    us(v)
                }
            };
            vec![
                kb(s),
                us(l(Config::Simplex, Workload::Generate)),
                us(l(Config::Duplex, Workload::Generate)),
                us(sfiles),
                us(dfiles),
                share.unwrap_or_else(|| nm(None)),
                nm(st),
                nm(l(Config::SyncStatic, Workload::Files)),
                x(ratio(st, dfiles)),
                if s == 50 * 1024 {
                    format!("{:.2}×", paper::STATIC_LATENCY_50K)
                } else {
                    "—".into()
                },
            ]
        })
        .collect();
    table(
        &mut o,
        &[
            "size",
            "generate unreplicated",
            "generate duplex",
            "files unreplicated",
            "files duplex",
            "reply-logging share",
            "static",
            "sync-static",
            "static / duplex",
            "paper",
        ],
        &rows,
    );
    plot(&mut o, "fig5-latency", plots);

    // Fig. 6.
    let _ = writeln!(
        o,
        "## Fig. 6 — latency distribution, 5 KB files at a fixed rate\n"
    );
    let rate = r.open_loop.first().map(|o| o.rate);
    let _ = writeln!(
        o,
        "Open loop (`hotpair bench loadgen`, HDR histogram, latency counted from when each \
         request was due: no coordinated omission) at {} req/s, about 70 % of the peak of \
         the slowest configuration shown (paper: {:.0} req/s).\n",
        rps(rate),
        paper::FIG6_RATE
    );
    let mut rows: Vec<Vec<String>> = r
        .open_loop
        .iter()
        .map(|ol| {
            let s = &ol.summary;
            vec![
                ol.config.label().into(),
                format!("{:.0}", s.achieved_rps),
                us(Some(s.p50_us)),
                us(Some(s.p90_us)),
                us(Some(s.p99_us)),
                us(Some(s.p999_us)),
                us(Some(s.p9999_us)),
                us(Some(s.max_us)),
                s.count.to_string(),
            ]
        })
        .collect();
    if !m.static_policy_available {
        for c in ["static", "sync-static"] {
            let mut row = vec![c.to_string(), "not measured".into()];
            row.extend(std::iter::repeat_n("—".to_string(), 7));
            rows.push(row);
        }
    }
    table(
        &mut o,
        &[
            "config", "req/s", "p50", "p90", "p99", "p99.9", "p99.99", "max", "requests",
        ],
        &rows,
    );
    plot(&mut o, "fig6-latency-distribution", plots);

    // nginx.
    let _ = writeln!(o, "## Simplex and duplex against nginx (files)\n");
    let mut keys: Vec<(u64, u32)> = r.nginx.iter().map(|m| (m.size, m.point.conns)).collect();
    keys.sort_unstable();
    keys.dedup();
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|&(s, c)| {
            let g = |cfg| r.nginx_row(cfg, s, c);
            let cell = |p: Option<&Point>| {
                p.map_or("—".into(), |p| {
                    format!(
                        "{:.0} / {} / {}",
                        p.wrk.rps,
                        us(Some(p.wrk.p50_us)),
                        us(Some(p.wrk.p99_us))
                    )
                })
            };
            let (sp, n) = (g(Config::Simplex), g(Config::Nginx));
            vec![
                kb(s),
                c.to_string(),
                cell(sp),
                cell(g(Config::Duplex)),
                cell(n),
                x(ratio(sp.map(|p| p.wrk.rps), n.map(|p| p.wrk.rps))),
                x(ratio(sp.map(|p| p.wrk.p50_us), n.map(|p| p.wrk.p50_us))),
            ]
        })
        .collect();
    table(
        &mut o,
        &[
            "size",
            "conns",
            "simplex req/s / p50 / p99",
            "duplex",
            "nginx",
            "simplex/nginx req/s",
            "simplex/nginx p50",
        ],
        &rows,
    );

    // RTT.
    let _ = writeln!(o, "## Replication link round trip\n");
    let _ = writeln!(
        o,
        "TCP ping-pong (64 bytes, Nagle off) between the node namespaces over the replication \
         network, outside the nodes' cgroups: the physical floor of duplex overhead, which \
         costs one and a half round trips per request.\n"
    );
    let rows: Vec<Vec<String>> = r
        .rtt
        .iter()
        .map(|t| {
            vec![
                t.net.clone(),
                format!("{} → {}", t.from, t.to),
                us(Some(t.summary.p50_us)),
                us(Some(t.summary.p99_us)),
                us(Some(t.summary.mean_us)),
                us(Some(1.5 * t.summary.p50_us)),
                t.summary.count.to_string(),
            ]
        })
        .collect();
    table(
        &mut o,
        &[
            "network",
            "path",
            "p50",
            "p99",
            "mean",
            "floor (1.5 × p50)",
            "round trips",
        ],
        &rows,
    );

    super::encryption::section(&mut o, r);
    super::proxy::section(&mut o, r);
    super::tls::section(&mut o, r);

    if let Some(idle) = &r.idle {
        super::idle::render(&mut o, idle);
    }

    // Stalls.
    let _ = writeln!(o, "## Failover stall\n");
    let _ = writeln!(
        o,
        "A duplex lab per kill (no CPU quota, /static/ `logged`), a 50 MiB download (--quick: 16 MiB) at 20 MB/s, the victim \
         signalled once 20 MiB (8) arrived; every download completes with the right SHA-256. \
         The stall is the longest time the file did not grow from the signal on (sampled \
         every 10 ms). SIGSTOP freezes the node (a host crash: no kernel resets the link); \
         it is SIGKILLed after the download. SIGTERM is a planned stop: the node sends `Leaving` \
         on the link and exits, and the peer takes over at once (a primary claims without \
         probing). *switchover*: the same planned stop (what `hotpair switchover` does), \
         measured instead by open-loop requests (2,000/s on 4 keep-alive connections, \
         `/static/index.html`, latency from when each was due): the worst request's \
         latency across the switchover, at 1 ms resolution; *before the stop*: the worst \
         request due in the same run's first 1.3 s, before the signal (the lab's own \
         jitter); for the downloads, the longest pause of the same download before the \
         signal: curl's own (`--limit-rate` reads what the socket holds in one go, then \
         sleeps until it is back under the rate, so the client's receive buffer bounds \
         these pauses). Client receive buffer (`tcp_rmem` max): {}.\n",
        if r.meta.stall_client_rmem == 0 {
            "the kernel's (autotuned, up to 6 MiB)".to_string()
        } else {
            format!("{} KiB", r.meta.stall_client_rmem / 1024)
        }
    );
    if r.meta.stall_reader {
        let _ = writeln!(
            o,
            "**This run's downloads were not curl's** (`--stall-client reader`): the \
             bench's own client read each download as fast as the server sent it and \
             timestamped every socket read; the stall is the longest time without a new \
             byte from the signal on, and *before the signal* the same download's longest \
             gap before it (no client pauses of its own, no rate limit).\n"
        );
    }
    let rows: Vec<Vec<String>> = r
        .stalls
        .iter()
        .map(|s| {
            vec![
                s.victim.clone(),
                s.signal.clone(),
                s.stalls_ms.len().to_string(),
                s.median().map_or("—".into(), |v| format!("{v:.0} ms")),
                s.p90().map_or("—".into(), |v| format!("{v:.0} ms")),
                s.max().map_or("—".into(), |v| format!("{v:.0} ms")),
                format!(
                    "{} / {} ms",
                    s.heartbeat_interval_ms, s.heartbeat_timeout_ms
                ),
                match (stats::median(&s.baseline_ms), stats::max(&s.baseline_ms)) {
                    (Some(m), Some(x)) => format!("{m:.1} / {x:.1} ms"),
                    _ => "—".into(),
                },
            ]
        })
        .collect();
    table(
        &mut o,
        &[
            "victim",
            "signal",
            "kills",
            "median",
            "p90",
            "max",
            "heartbeat interval / timeout",
            "before the stop (median / max)",
        ],
        &rows,
    );
    o
}

#[cfg(test)]
mod tests {
    use super::super::loadgen::LatencySummary;
    use super::super::model::*;
    use super::super::wrk::WrkResult;
    use super::*;

    fn point(conns: u32, rps: f64, p50: f64, cpu: &[(&str, u64)]) -> Point {
        Point {
            conns,
            wrk: WrkResult {
                requests: (rps * 10.0) as u64,
                seconds: 10.0,
                rps,
                mean_us: p50 * 1.1,
                p50_us: p50,
                p99_us: p50 * 3.0,
                ..WrkResult::default()
            },
            cpu_ns: cpu.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            wall_s: 10.0,
            quota: Some(0.5),
        }
    }

    fn sample() -> Results {
        let k50 = 50 * 1024;
        let mut r = Results::default();
        r.meta.node_cpus = 0.5;
        for (c, rates) in [
            (Config::Simplex, [1000.0, 1500.0, 1510.0]),
            (Config::Duplex, [800.0, 1400.0, 1400.0]),
            (Config::DualRole, [900.0, 2600.0, 2500.0]),
        ] {
            r.peaks.push(PeakSearch {
                config: c,
                workload: Workload::Generate,
                size: k50,
                points: rates
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        point(
                            1 << i,
                            v,
                            100.0,
                            &[("n1", 5_000_000_000), ("n2", 1_000_000_000)],
                        )
                    })
                    .collect(),
            });
        }
        r.latency.push(Measured {
            config: Config::Simplex,
            workload: Workload::Files,
            size: 1024,
            point: point(1, 10_000.0, 60.0, &[]),
        });
        r.latency.push(Measured {
            config: Config::Duplex,
            workload: Workload::Files,
            size: 1024,
            point: point(1, 5_000.0, 180.0, &[]),
        });
        r.nginx.push(Measured {
            config: Config::Simplex,
            workload: Workload::Files,
            size: 1024,
            point: point(1, 12_000.0, 60.0, &[]),
        });
        r.nginx.push(Measured {
            config: Config::Nginx,
            workload: Workload::Files,
            size: 1024,
            point: point(1, 10_000.0, 70.0, &[]),
        });
        r.rtt.push(Rtt {
            net: "shared".into(),
            from: "n2".into(),
            to: "n1".into(),
            summary: LatencySummary {
                p50_us: 60.0,
                count: 1000,
                ..LatencySummary::default()
            },
        });
        r.stalls.push(StallSet {
            victim: "primary".into(),
            signal: "SIGSTOP".into(),
            stalls_ms: vec![440.0, 450.0, 600.0],
            heartbeat_interval_ms: 100,
            heartbeat_timeout_ms: 500,
            baseline_ms: Vec::new(),
        });
        r.not_measured.push(NOT_BUILT.into());
        r
    }

    #[test]
    fn peak_is_the_best_point_and_ratios_follow() {
        let r = sample();
        let p = r
            .peak(Config::DualRole, Workload::Generate, 50 * 1024)
            .unwrap();
        assert_eq!((p.conns, p.wrk.rps), (2, 2600.0));
        // 5 s + 1 s of CPU for 14000 requests: ~428.6 µs; 2 × 0.5 CPU / that.
        let th = dual_theoretical(&r, 50 * 1024).unwrap();
        assert!((th - 2333.3).abs() < 1.0, "{th}");
        assert_eq!(p.saturation().map(|s| (s * 100.0).round()), Some(100.0));
    }

    #[test]
    fn targets_met_missed_and_not_measured() {
        let t = targets(&sample());
        let find = |s: &str| t.iter().find(|t| t.what.contains(s)).unwrap();
        assert_eq!(find("nginx req/s").met, Some(true));
        assert_eq!(find("nginx p50").met, Some(true));
        // +120 µs over a 90 µs floor.
        let f = find("floor");
        assert_eq!(f.met, Some(false));
        assert!(f.ours.contains("1.33×"), "{}", f.ours);
        // 2600 / 1400 = 1.86.
        assert_eq!(find("dual-role").met, Some(true));
        assert_eq!(find("static ≥").met, None);
        assert_eq!(find("frozen primary").met, Some(false));
    }

    #[test]
    fn report_has_every_figure_and_says_what_is_missing() {
        let md = render(&sample(), &["fig3-generate-peak".to_string()]);
        for h in [
            "Fig. 2",
            "Fig. 3",
            "Fig. 4",
            "Fig. 5",
            "Fig. 6",
            "nginx",
            "round trip",
            "Failover stall",
            "## Targets",
        ] {
            assert!(md.contains(h), "no {h}");
        }
        assert!(md.contains("not measured: content policies not built yet"));
        assert!(
            md.contains("| 50 KB | 1510 (4) | 3020 | 1400 (2) | 2600 (2) | 2333 | 1.86× | 1.67× |"),
            "{md}"
        );
        assert!(md.contains("fig3-generate-peak.svg"));
        assert!(!md.contains("fig2-cpu-per-request.svg"));
        assert!(render(&Results::default(), &[]).contains("Not run in this bench"));
    }
}
