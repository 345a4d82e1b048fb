//! report.md's HTTPS section.

use std::fmt::Write;

use super::super::markdown::{kb, table, us};
use super::super::model::{Point, Results, TlsRow, TlsServer};
use super::super::nginx::NGINX_ADDRESS;
use super::super::stats;
use super::targets::{overheads, targets};

/// "n1 30.1 + n2 12.0" (a lab's nodes) or "41.0" (one process).
pub(super) fn cpu_cell(p: &Point) -> String {
    let per: Vec<(String, f64)> = p
        .cpu_ns
        .iter()
        .filter_map(|(n, _)| Some((n.clone(), p.cpu_us_per_request(n)?)))
        .collect();
    match per.as_slice() {
        [] => "—".into(),
        [(_, v)] => format!("{v:.1}"),
        many => many
            .iter()
            .map(|(n, v)| format!("{n} {v:.1}"))
            .collect::<Vec<_>>()
            .join(" + "),
    }
}

/// report.md's section: the keep-alive table, the ratios, handshakes, stalls.
pub fn section(o: &mut String, r: &Results) {
    let Some(t) = &r.tls else {
        return;
    };
    let _ = writeln!(o, "## HTTPS (TLS 1.3) beside nginx\n");
    let _ = writeln!(
        o,
        "Every server held to {} CPU; 1-minute load {:.2} when the part started, {:.2} when its \
         wrk runs ended (the stalls follow). HTTPS: `lab up --tls` (ECDSA P-256 certificate \
         from the lab's CA), nginx at {NGINX_ADDRESS} on the unreplicated lab's bridge, one \
         worker, `{}`. wrk does not verify certificates; what OpenSSL's default client (the \
         one wrk uses) negotiates, certificate checked:\n",
        r.meta.node_cpus, t.load_start, t.load_end, t.nginx_tls
    );
    for (s, n) in &t.negotiated {
        let _ = writeln!(o, "- {s}: {n}");
    }
    o.push('\n');
    for n in &t.not_run {
        let _ = writeln!(o, "Not run: {n}.\n");
    }
    let _ = writeln!(
        o,
        "### Keep-alive\n\nwrk (one thread, closed loop), one run per cell, the servers \
         interleaved point by point. CPU µs/req: each server process's cgroup (a lab's \
         nodes n1 primary, n2 owner; nginx's kernel TCP work is partly softirq, counted \
         where it lands, not all in its cgroup).\n"
    );
    let rows: Vec<Vec<String>> = t
        .keepalive
        .iter()
        .map(|row| {
            let p = &row.point;
            vec![
                row.server.label().into(),
                kb(row.size),
                p.conns.to_string(),
                format!("{:.0}", p.wrk.rps),
                us(Some(p.wrk.p50_us)),
                us(Some(p.wrk.p99_us)),
                cpu_cell(p),
                p.saturation()
                    .map_or("—".into(), |s| format!("{:.0} %", s * 100.0)),
            ]
        })
        .collect();
    table(
        o,
        &[
            "server",
            "size",
            "conns",
            "req/s",
            "p50",
            "p99",
            "CPU µs/req",
            "busiest of quota",
        ],
        &rows,
    );
    let _ = writeln!(
        o,
        "### Ratios (req/s)\n\nhotpair/nginx over HTTPS; duplex overhead (duplex HTTPS static \
         / unreplicated HTTPS); what TLS costs (duplex HTTPS / the same duplex over HTTP, \
         per policy).\n"
    );
    let mut keys: Vec<(u64, u32)> = t
        .keepalive
        .iter()
        .map(|r| (r.size, r.point.conns))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let rate = |s, size, c| t.keepalive(s, size, c).map(|p| p.wrk.rps);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    };
    use TlsServer::*;
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|&(size, c)| {
            let g = |s| rate(s, size, c);
            vec![
                kb(size),
                c.to_string(),
                ratio(g(Simplex), g(Nginx)),
                ratio(g(DuplexStatic), g(Nginx)),
                ratio(g(DuplexStatic), g(Simplex)),
                ratio(g(DuplexStatic), g(DuplexStaticHttp)),
                ratio(g(DuplexLogged), g(DuplexLoggedHttp)),
            ]
        })
        .collect();
    table(
        o,
        &[
            "size",
            "conns",
            "unreplicated / nginx",
            "duplex static / nginx",
            "duplex static / unreplicated",
            "static: HTTPS / HTTP",
            "logged: HTTPS / HTTP",
        ],
        &rows,
    );
    let ov = overheads(t);
    if !ov.is_empty() {
        let _ = writeln!(
            o,
            "### Duplex overhead, HTTPS against HTTP\n\nwrk at 1 connection (keep-alive), \
             {:.0} s per run, on the unreplicated and the duplex `static` labs, each over HTTP \
             (port 80) and HTTPS (443) of the same `--tls` lab — the same node processes, only \
             TLS differs; every cell once per round, the order rotated each round; each cell \
             the median of its runs' p50. Overhead = duplex p50 / unreplicated p50; the \
             target: HTTPS's ≤ 1.1× HTTP's.\n",
            t.overhead_seconds
        );
        let rows: Vec<Vec<String>> = ov
            .iter()
            .map(|v| {
                vec![
                    kb(v.size),
                    v.rounds.to_string(),
                    us(Some(v.simplex_http)),
                    us(Some(v.duplex_http)),
                    format!("{:.2}", v.http()),
                    us(Some(v.simplex_https)),
                    us(Some(v.duplex_https)),
                    format!("{:.2}", v.https()),
                    format!("{:.2}", v.ratio()),
                ]
            })
            .collect();
        table(
            o,
            &[
                "size",
                "rounds",
                "unreplicated HTTP",
                "duplex HTTP",
                "HTTP overhead",
                "unreplicated HTTPS",
                "duplex HTTPS",
                "HTTPS overhead",
                "HTTPS ÷ HTTP",
            ],
            &rows,
        );
    }
    let _ = writeln!(
        o,
        "### Handshakes\n\n**Full handshakes** (no resumption): {} `openssl s_time -new` \
         processes at once, each connection a full TLS 1.3 handshake (X25519, ECDSA P-256 \
         signature) and one request for the 1 KB file (HTTP/1.0: the server closes); \
         handshakes/s = connections / the wall time from the first start to the last exit; \
         s_time gives no latency. The nodes' counts show none resumed.\n",
        t.handshake_conns
    );
    let count_cell = |row: &TlsRow| match (row.handshakes, row.resumed) {
        (Some(h), Some(r)) => format!("{h} ({r} resumed) / {} requests", row.point.wrk.requests),
        _ => "— (nginx does not count)".into(),
    };
    let quota_cell = |p: &Point| {
        p.saturation()
            .map_or("—".into(), |s| format!("{:.0} %", s * 100.0))
    };
    let rows: Vec<Vec<String>> = t
        .full_handshakes
        .iter()
        .map(|row| {
            vec![
                row.server.label().into(),
                format!("{:.0}", row.point.wrk.rps),
                cpu_cell(&row.point),
                quota_cell(&row.point),
                count_cell(row),
            ]
        })
        .collect();
    table(
        o,
        &[
            "server",
            "full handshakes/s",
            "CPU µs/handshake",
            "busiest of quota",
            "counted by the node",
        ],
        &rows,
    );
    let _ = writeln!(
        o,
        "**wrk, a new connection per request** (`-H \"Connection: close\"`), 1 KB, {} \
         connections. wrk **does resume**: it clears each connection's `SSL` object between \
         connections (`SSL_clear`), which keeps the session, so after each connection's \
         first handshake every one is resumed with the server's ticket (PSK with X25519, no \
         signature), as the nodes' counts below say; nginx issues tickets by default too.\n",
        t.handshake_conns
    );
    let rows: Vec<Vec<String>> = t
        .handshakes
        .iter()
        .map(|row| {
            let p = &row.point;
            vec![
                row.server.label().into(),
                format!("{:.0}", p.wrk.rps),
                us(Some(p.wrk.p50_us)),
                us(Some(p.wrk.p99_us)),
                cpu_cell(p),
                quota_cell(p),
                count_cell(row),
            ]
        })
        .collect();
    table(
        o,
        &[
            "server",
            "conn/s",
            "p50",
            "p99",
            "CPU µs/conn",
            "busiest of quota",
            "counted by the node",
        ],
        &rows,
    );
    let _ = writeln!(
        o,
        "### Failover stall, HTTPS beside HTTP\n\nA fresh duplex `lab up --tls` per kill (no \
         CPU quota), the bench's own client downloading {} with no rate limit (it reads as \
         fast as bytes arrive and timestamps every read; not curl, whose `--limit-rate` \
         sleeps differ between TCP and TLS), the victim SIGKILLed once {} arrived; every \
         download completes with the right SHA-256. Each kill is made twice, in alternating \
         order: the download over HTTPS (rustls, the lab's CA checked) and over HTTP (port \
         80 of the same kind of lab), the same read loop for both. The stall: the longest \
         time without a new byte from the signal on (every read's timestamp). Owner = the \
         owner node (n2).\n",
        if r.meta.quick { "16 MiB" } else { "50 MiB" },
        if r.meta.quick { "8 MiB" } else { "20 MiB" },
    );
    let rows: Vec<Vec<String>> = t
        .stalls
        .iter()
        .map(|s| {
            let v = &s.set.stalls_ms;
            let ms = |x: Option<f64>| x.map_or("—".into(), |x| format!("{x:.0} ms"));
            vec![
                s.policy.clone(),
                if s.https { "HTTPS" } else { "HTTP" }.into(),
                if s.set.victim == "owner" {
                    "owner (owner)".into()
                } else {
                    s.set.victim.clone()
                },
                s.set.signal.clone(),
                v.len().to_string(),
                ms(stats::median(v)),
                ms(stats::percentile(v, 90.0)),
                ms(stats::max(v)),
                format!(
                    "{} / {} ms",
                    s.set.heartbeat_interval_ms, s.set.heartbeat_timeout_ms
                ),
            ]
        })
        .collect();
    table(
        o,
        &[
            "/static/ policy",
            "scheme",
            "victim",
            "signal",
            "kills",
            "p50",
            "p90",
            "max",
            "heartbeat interval / timeout",
        ],
        &rows,
    );
    let _ = writeln!(o, "### Issue 18's targets\n");
    let rows: Vec<Vec<String>> = targets(t)
        .into_iter()
        .map(|v| vec![v.what, v.ours, super::super::target::verdict(v.met).into()])
        .collect();
    table(o, &["target", "this run", "verdict"], &rows);
}
