//! The Prometheus endpoint: `[admin] metrics = "ADDR:PORT"`, plain
//! HTTP/1.1 `GET /metrics` on kernel TCP (tokio), the text exposition
//! format 0.0.4, rendered from the latest status snapshot the stack thread
//! published (`crate::admin`); and on the same listener `/healthz` and
//! `/readyz` for load balancers and orchestrators (`crate::health`). The
//! list of metrics and what to alert on is in `docs/operations.md`.
//!
//! Written here rather than with a metrics crate: our values are not live
//! counters incremented where things happen but a snapshot copied from the
//! stack thread, which the crates' registries do not model well, and the
//! format is a few lines of text (see `docs/architecture.md`).

mod ports;
mod tls;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::admin::Status;

mod upstream;

/// Metrics counted live off the stack thread (the upstream proxies', the
/// access log's), rendered after the snapshot's.
#[derive(Debug, Default, Clone)]
pub struct Extra {
    pub upstreams: Vec<std::sync::Arc<crate::upstream::Upstream>>,
    pub access_log: Option<crate::access_log::AccessLog>,
}

/// The content type of the 0.0.4 text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Largest request head read.
const MAX_HEAD: usize = 8192;

/// A label value, escaped as the format wants (`\`, `"`, newline).
fn escape(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

fn labels(l: &[(&str, &str)]) -> String {
    if l.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn num(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.is_nan() {
        "NaN".to_owned()
    } else {
        format!("{v}")
    }
}

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    fn sample(&mut self, l: &[(&str, &str)], v: f64) {
        let _ = writeln!(self.out, "{}{} {}", self.name, labels(l), num(v));
    }
}

fn family<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out, name }
}

/// A family with one sample per address, labelled by the address alone.
fn per_address(
    out: &mut String,
    s: &Status,
    name: &'static str,
    kind: &str,
    help: &str,
    value: impl Fn(&crate::admin::AddressStatus) -> f64,
) {
    let mut f = family(out, name, kind, help);
    for a in &s.addresses {
        f.sample(&[("address", &a.address)], value(a));
    }
}

/// The exposition text for a status snapshot.
pub fn render(s: &Status) -> String {
    let mut o = String::with_capacity(8192);
    let node = s.node.as_str();
    let peer_of = |a: &crate::admin::AddressStatus| {
        a.peer.as_ref().map_or("", |p| p.name.as_str()).to_owned()
    };

    let mut f = family(
        &mut o,
        "hotpair_node_info",
        "gauge",
        "The node (value 1), by name.",
    );
    f.sample(&[("node", node)], 1.0);
    let mut f = family(
        &mut o,
        "hotpair_build_info",
        "gauge",
        "The hotpair build (value 1), by version.",
    );
    f.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    // Points in time as Unix timestamps (Prometheus's convention, as
    // process_start_time_seconds): `time() - x` is the age, and a value
    // that does not move is not mistaken for a stalled scrape.
    let taken_s = s.taken_at_unix_ms as f64 / 1e3;
    let mut f = family(
        &mut o,
        "hotpair_start_time_seconds",
        "gauge",
        "When the node started (Unix time).",
    );
    f.sample(&[], taken_s - s.uptime_s);
    let mut f = family(
        &mut o,
        "hotpair_uptime_seconds",
        "gauge",
        "DEPRECATED, removed in the next release: use time() - hotpair_start_time_seconds. \
         Seconds since the node started.",
    );
    f.sample(&[], s.uptime_s);

    for (name, help, state) in [
        (
            "hotpair_lan_up",
            "1 while the LAN check passes, 0 while it fails (absent: not configured).",
            s.lan_up,
        ),
        (
            "hotpair_app_up",
            "1 while the application check passes, 0 while it fails (absent: not configured).",
            s.app_up,
        ),
    ] {
        if let Some(up) = state {
            let mut f = family(&mut o, name, "gauge", help);
            f.sample(&[], f64::from(u8::from(up)));
        }
    }
    let mut f = family(
        &mut o,
        "hotpair_held_replies",
        "gauge",
        "Requests the application could not take, waiting for the application check's verdict.",
    );
    f.sample(&[], s.held_replies as f64);
    let mut f = family(
        &mut o,
        "hotpair_reloads_total",
        "counter",
        "SIGHUP reloads by result: ok (applied), failed (the config did not load), refused (a key that cannot change live).",
    );
    for (result, n) in [
        ("ok", s.reloads.ok),
        ("failed", s.reloads.failed),
        ("refused", s.reloads.refused),
    ] {
        f.sample(&[("result", result)], n as f64);
    }
    let mut f = family(
        &mut o,
        "hotpair_static_generation_missing_total",
        "counter",
        "Local (static) units naming a content generation this node no longer held: those connections' shadows were given up.",
    );
    f.sample(&[], s.reloads.generation_missing as f64);

    let mut f = family(
        &mut o,
        "hotpair_address_state",
        "gauge",
        "1 for the address's state now: replicated, waiting, promoted, claimed, fenced or alone.",
    );
    for a in &s.addresses {
        for st in hotpair_replicator::node::SiteState::ALL.map(|st| st.word()) {
            f.sample(
                &[("address", &a.address), ("state", st)],
                f64::from(u8::from(a.state == st)),
            );
        }
    }
    let mut f = family(
        &mut o,
        "hotpair_takeovers_total",
        "counter",
        "Takeovers of the address: promoted (its primary died) or claimed (its owner died).",
    );
    for a in &s.addresses {
        let peer = peer_of(a);
        // An owner can only promote, a primary only claim.
        for (kind, role) in [("promoted", "owner"), ("claimed", "primary")] {
            let n = if a.configured_role == role {
                a.takeovers
            } else {
                0
            };
            f.sample(
                &[("address", &a.address), ("peer", &peer), ("kind", kind)],
                n as f64,
            );
        }
    }
    let mut f = family(&mut o, "hotpair_fenced", "gauge",
        "1 while the address is fenced (its owner answered for it after the link failed: silent here).");
    for a in &s.addresses {
        f.sample(
            &[("address", &a.address), ("peer", &peer_of(a))],
            f64::from(u8::from(a.fenced)),
        );
    }
    let mut f = family(
        &mut o,
        "hotpair_fencings_total",
        "counter",
        "Times the address was fenced.",
    );
    for a in &s.addresses {
        f.sample(
            &[("address", &a.address), ("peer", &peer_of(a))],
            a.fencings as f64,
        );
    }

    let mut f = family(
        &mut o,
        "hotpair_link_up",
        "gauge",
        "1 while the replication link to the peer is connected.",
    );
    for p in &s.peers {
        f.sample(&[("peer", &p.name)], f64::from(u8::from(p.link_up)));
    }
    let mut f = family(
        &mut o,
        "hotpair_link_transitions_total",
        "counter",
        "Replication link transitions to up and to down.",
    );
    for p in &s.peers {
        f.sample(&[("peer", &p.name), ("direction", "up")], p.link_ups as f64);
        f.sample(
            &[("peer", &p.name), ("direction", "down")],
            p.link_downs as f64,
        );
    }
    let mut f = family(
        &mut o,
        "hotpair_link_rtt_seconds",
        "gauge",
        "The replication link's smoothed round trip (kernel TCP_INFO), while up.",
    );
    for p in &s.peers {
        if let Some(r) = p.rtt_us {
            f.sample(&[("peer", &p.name)], r as f64 / 1e6);
        }
    }
    let mut f = family(
        &mut o,
        "hotpair_link_send_buffer_bytes",
        "gauge",
        "Link bytes encoded and not yet taken by the kernel (back-pressure at 4 MiB).",
    );
    for p in s.peers.iter().filter(|p| p.link_up) {
        f.sample(&[("peer", &p.name)], p.send_buffer_bytes as f64);
    }
    let mut f = family(
        &mut o,
        "hotpair_peer_last_heard_timestamp_seconds",
        "gauge",
        "When anything was last heard from the address's peer (Unix time).",
    );
    for a in &s.addresses {
        if let Some(p) = &a.peer {
            f.sample(
                &[("address", &a.address), ("peer", &p.name)],
                taken_s - p.last_heard_ms as f64 / 1e3,
            );
        }
    }
    let mut f = family(
        &mut o,
        "hotpair_peer_last_heard_seconds",
        "gauge",
        "DEPRECATED, removed in the next release: use time() - \
         hotpair_peer_last_heard_timestamp_seconds. Seconds since anything was heard from \
         the address's peer.",
    );
    for a in &s.addresses {
        if let Some(p) = &a.peer {
            f.sample(
                &[("address", &a.address), ("peer", &p.name)],
                p.last_heard_ms as f64 / 1e3,
            );
        }
    }
    let mut f = family(
        &mut o,
        "hotpair_link_last_change_timestamp_seconds",
        "gauge",
        "When the replication link last came up or went down (Unix time).",
    );
    for p in s.peers.iter().filter(|p| p.since_unix_ms > 0) {
        f.sample(&[("peer", &p.name)], p.since_unix_ms as f64 / 1e3);
    }
    let mut f = family(
        &mut o,
        "hotpair_heartbeat_misses_total",
        "counter",
        "Heartbeat intervals that passed without a word from the peer (sampled every 100 ms).",
    );
    for a in &s.addresses {
        if let Some(p) = &a.peer {
            f.sample(
                &[("address", &a.address), ("peer", &p.name)],
                p.heartbeat_misses_total as f64,
            );
        }
    }
    let mut f = family(
        &mut o,
        "hotpair_heartbeats_received_total",
        "counter",
        "Heartbeats received from the peer.",
    );
    for a in &s.addresses {
        if let Some(p) = &a.peer {
            f.sample(
                &[("address", &a.address), ("peer", &p.name)],
                p.heartbeats_received as f64,
            );
        }
    }

    type LogField = fn(&crate::admin::LogStatus) -> f64;
    let log_metrics: [(&'static str, &str, &str, LogField); 6] = [
        (
            "hotpair_log_unacked_units",
            "gauge",
            "Primary: reply units logged to the peer, not yet acknowledged.",
            |l| l.unacked_units as f64,
        ),
        (
            "hotpair_log_unacked_bytes",
            "gauge",
            "Primary: payload bytes of those units (the replica window in use).",
            |l| l.unacked_bytes as f64,
        ),
        (
            "hotpair_log_unapplied_units",
            "gauge",
            "Owner: logged units received, not yet applied to the shadow.",
            |l| l.unapplied_units as f64,
        ),
        (
            "hotpair_link_queued_messages",
            "gauge",
            "Messages waiting in the address's link queue.",
            |l| l.queued_msgs as f64,
        ),
        (
            "hotpair_logged_units_total",
            "counter",
            "Primary: reply units sent to the peer for logging.",
            |l| l.logged_units as f64,
        ),
        (
            "hotpair_replication_refusals_total",
            "counter",
            "Local requests refused for replication back-pressure.",
            |l| l.refusals as f64,
        ),
    ];
    for (name, kind, help, get) in log_metrics {
        let mut f = family(&mut o, name, kind, help);
        for a in &s.addresses {
            if let Some(l) = &a.log {
                f.sample(&[("address", &a.address), ("peer", &peer_of(a))], get(l));
            }
        }
    }

    let mut f = family(&mut o, "hotpair_connections", "gauge",
        "Open connections: live (answered here), shadow (backed up for the primary), half_open (handshakes).");
    for a in &s.addresses {
        let c = &a.connections;
        for (kind, v) in [
            ("live", c.live),
            ("shadow", c.shadow),
            ("half_open", c.half_open),
        ] {
            f.sample(&[("address", &a.address), ("kind", kind)], v as f64);
        }
    }
    per_address(
        &mut o,
        s,
        "hotpair_connections_max",
        "gauge",
        "The address's connection bound.",
        |a| a.connections.max as f64,
    );
    per_address(
        &mut o,
        s,
        "hotpair_connections_accepted_total",
        "counter",
        "Connections accepted.",
        |a| a.connections.accepted as f64,
    );
    per_address(
        &mut o,
        s,
        "hotpair_connections_promoted_total",
        "counter",
        "Shadow connections made live by takeovers.",
        |a| a.connections.promoted as f64,
    );
    let mut f = family(&mut o, "hotpair_connections_refused_total", "counter",
        "Connections refused or dropped by the bounds: per_source (a client's limit), half_open_evicted (oldest handshake dropped at the bound), half_open_expired.");
    for a in &s.addresses {
        let r = &a.refused;
        for (reason, v) in [
            ("per_source", r.per_source),
            ("half_open_evicted", r.half_open_evicted),
            ("half_open_expired", r.half_open_expired),
        ] {
            f.sample(&[("address", &a.address), ("reason", reason)], v as f64);
        }
    }
    let mut f = family(&mut o, "hotpair_syn_cookies_total", "counter",
        "SYN cookies at the half-open bound: sent (SYNs answered with one), unroutable (SYNs from sources with no route, not answered), validated (connections opened by one), rejected (ACKs with a bad or expired one, dropped).");
    for a in &s.addresses {
        let c = &a.syn_cookies;
        for (kind, v) in [
            ("sent", c.sent),
            ("unroutable", c.unroutable),
            ("validated", c.validated),
            ("rejected", c.rejected),
        ] {
            f.sample(&[("address", &a.address), ("kind", kind)], v as f64);
        }
    }
    per_address(
        &mut o,
        s,
        "hotpair_held_acks_total",
        "counter",
        "Client segments the owner node held because their ACK was ahead of its shadow.",
        |a| a.held_acks as f64,
    );
    per_address(
        &mut o,
        s,
        "hotpair_held_acks_dropped_total",
        "counter",
        "Client segments dropped at the per-connection hold bound.",
        |a| a.held_acks_dropped as f64,
    );
    per_address(&mut o, s, "hotpair_diverged_resets_total", "counter", "Connections reset because the client acknowledged bytes this node never sent (both nodes served them in a split brain).", |a| a.diverged_resets as f64);
    per_address(
        &mut o,
        s,
        "hotpair_shadows_detached_total",
        "counter",
        "Shadows the owner node gave up because their reply differed from the primary's; their connections go on, forwarded, unreplicated.",
        |a| a.shadows_detached as f64,
    );
    per_address(
        &mut o,
        s,
        "hotpair_detached_connections",
        "gauge",
        "Connections whose shadow was given up, still forwarded to the primary: they will not survive its crash.",
        |a| a.detached_connections as f64,
    );

    let mut f = family(
        &mut o,
        "hotpair_requests_total",
        "counter",
        "Requests parsed and dispatched, by route and configured policy.",
    );
    for a in &s.addresses {
        for r in &a.routes {
            f.sample(
                &[
                    ("address", &a.address),
                    ("route", &r.route),
                    ("policy", &r.policy),
                ],
                r.requests as f64,
            );
        }
    }
    let mut f = family(
        &mut o,
        "hotpair_responses_total",
        "counter",
        "Final replies made here, by route and status code.",
    );
    for a in &s.addresses {
        for r in &a.routes {
            for (code, n) in &r.codes {
                f.sample(
                    &[
                        ("address", &a.address),
                        ("route", &r.route),
                        ("code", &code.to_string()),
                    ],
                    *n as f64,
                );
            }
        }
    }
    let mut f = family(&mut o, "hotpair_static_fallbacks_total", "counter",
        "Requests of a static/sync-static route served logged because the digest guard had not cleared it.");
    for a in &s.addresses {
        for r in a
            .routes
            .iter()
            .filter(|r| r.policy != "logged" && r.policy != "-")
        {
            f.sample(
                &[
                    ("address", &a.address),
                    ("route", &r.route),
                    ("policy", &r.policy),
                ],
                r.static_fallbacks as f64,
            );
        }
    }
    let mut f = family(&mut o, "hotpair_static_route_in_use", "gauge",
        "1 while a static/sync-static route is replicated as configured on the address (its content matched the peer's).");
    for a in s.addresses.iter().filter(|a| a.peer.is_some()) {
        for r in a
            .routes
            .iter()
            .filter(|r| r.policy != "logged" && r.policy != "-")
        {
            f.sample(
                &[
                    ("address", &a.address),
                    ("route", &r.route),
                    ("policy", &r.policy),
                ],
                f64::from(u8::from(r.static_in_use)),
            );
        }
    }
    let name = "hotpair_request_duration_seconds";
    let _ = writeln!(o, "# HELP {name} Request parsed to its final reply fully queued into the socket (a primary waits for the log ack).");
    let _ = writeln!(o, "# TYPE {name} histogram");
    for a in &s.addresses {
        for r in &a.routes {
            let base = [
                ("address", a.address.as_str()),
                ("route", r.route.as_str()),
                ("policy", r.policy.as_str()),
            ];
            let mut buckets = r.latency.buckets.clone();
            if buckets.last().is_none_or(|b| b.0.is_some()) {
                buckets.push((None, r.latency.count));
            }
            for (le, n) in buckets {
                let le = le.map_or("+Inf".to_owned(), num);
                let mut l = base.to_vec();
                l.push(("le", &le));
                let _ = writeln!(o, "{name}_bucket{} {n}", labels(&l));
            }
            let _ = writeln!(o, "{name}_sum{} {}", labels(&base), num(r.latency.sum_s));
            let _ = writeln!(o, "{name}_count{} {}", labels(&base), r.latency.count);
        }
    }
    tls::render(&mut o, s);
    ports::render(&mut o, s);
    o
}

/// The HTTP answer to a request head, given the snapshot, when it is
/// answered (`now`, the stack thread's clock) and how old a snapshot may
/// be before the stack loop counts as stalled (`stale_after`, `/healthz`).
pub fn respond(
    head: &[u8],
    status: &Status,
    extra: &Extra,
    now: Instant,
    stale_after: Duration,
) -> Vec<u8> {
    let reply = |code: &str, ctype: &str, body: &str| {
        format!(
            "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return reply("400 Bad Request", "text/plain", "bad request\n"),
    }
    let path = req.path.unwrap_or("");
    let path = path.split('?').next().unwrap_or(path);
    // A health answer: 200 or 503, and one line saying why.
    let health = |(ok, why): (bool, String)| {
        let code = if ok {
            "200 OK"
        } else {
            "503 Service Unavailable"
        };
        reply(code, "text/plain; charset=utf-8", &format!("{why}\n"))
    };
    let r = match path {
        "/metrics" => {
            let mut text = render(status);
            upstream::render(&mut text, extra);
            reply("200 OK", CONTENT_TYPE, &text)
        }
        "/healthz" => health(crate::health::liveness(status, now, stale_after)),
        "/readyz" => health(crate::health::readiness(status)),
        _ if matches!(req.method, Some("GET" | "HEAD")) => reply(
            "404 Not Found",
            "text/plain",
            "try /metrics, /healthz or /readyz\n",
        ),
        _ => return reply("405 Method Not Allowed", "text/plain", "GET only\n"),
    };
    match req.method {
        Some("GET") => r,
        Some("HEAD") => {
            let mut r = r;
            if let Some(end) = r.windows(4).position(|w| w == b"\r\n\r\n") {
                r.truncate(end + 4);
            }
            r
        }
        _ => reply("405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

/// Bind the metrics listener (kernel TCP).
pub fn bind(addr: std::net::SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    use anyhow::Context;
    let l = std::net::TcpListener::bind(addr)
        .with_context(|| format!("[admin] metrics: listening on {addr}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serve the metrics endpoint until the runtime stops; `stale_after`: see
/// [`respond`].
pub async fn serve(
    listener: std::net::TcpListener,
    status: crate::admin::StatusSource,
    stale_after: Duration,
    extra: Extra,
) {
    let extra = std::sync::Arc::new(extra);
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "metrics listener unusable");
            return;
        }
    };
    let respond = move |head: Vec<u8>| {
        let mut status = status.clone();
        let extra = extra.clone();
        async move {
            let snapshot = status.fresh().await;
            respond(&head, &snapshot, &extra, Instant::now(), stale_after)
        }
    };
    let bounds = crate::one_shot::Bounds {
        slots: crate::admin::MAX_CLIENTS,
        read_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        max_request: MAX_HEAD,
    };
    crate::one_shot::serve(
        listener,
        "metrics",
        bounds,
        |_| Ok(()),
        |h: &[u8]| h.windows(4).any(|w| w == b"\r\n\r\n"),
        respond,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        crate::admin::tests::sample()
    }

    /// [`respond`] with the sample's snapshot taken just now.
    fn ask(head: &[u8], s: &Status) -> Vec<u8> {
        let now = Instant::now();
        let mut s = s.clone();
        s.taken_at.get_or_insert(now);
        respond(head, &s, &Extra::default(), now, Duration::from_secs(1))
    }

    /// Every line is a comment or `name{labels} value` with a number.
    fn check_format(text: &str) {
        for line in text.lines() {
            if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            assert!(series.starts_with("hotpair_"), "{line}");
            assert!(
                value.parse::<f64>().is_ok() || value == "+Inf" || value == "NaN",
                "{line}"
            );
            if let Some(open) = series.find('{') {
                assert!(series.ends_with('}'), "{line}");
                let name = &series[..open];
                assert!(
                    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn the_exposition_text_has_the_metrics_an_operator_alerts_on() {
        let t = render(&sample());
        check_format(&t);
        for want in [
            "# TYPE hotpair_takeovers_total counter",
            "hotpair_takeovers_total{address=\"10.77.0.10\",peer=\"n1\",kind=\"promoted\"} 1",
            "hotpair_link_transitions_total{peer=\"n1\",direction=\"down\"} 1",
            "hotpair_link_up{peer=\"n1\"} 0",
            "hotpair_heartbeat_misses_total{address=\"10.77.0.10\",peer=\"n1\"} 5",
            "hotpair_log_unacked_bytes{address=\"10.77.0.10\",peer=\"n1\"} 2048",
            "hotpair_connections{address=\"10.77.0.10\",kind=\"live\"} 3",
            "hotpair_connections_refused_total{address=\"10.77.0.10\",reason=\"half_open_evicted\"} 2",
            "hotpair_syn_cookies_total{address=\"10.77.0.10\",kind=\"rejected\"} 6",
            "hotpair_requests_total{address=\"10.77.0.10\",route=\"/static/\",policy=\"static\"} 4",
            "hotpair_responses_total{address=\"10.77.0.10\",route=\"/static/\",code=\"200\"} 3",
            "hotpair_responses_total{address=\"10.77.0.10\",route=\"/static/\",code=\"404\"} 1",
            "hotpair_static_fallbacks_total{address=\"10.77.0.10\",route=\"/static/\",policy=\"static\"} 1",
            "hotpair_address_state{address=\"10.77.0.10\",state=\"promoted\"} 1",
            &format!(
                "hotpair_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "hotpair_start_time_seconds 987.5",
            "hotpair_peer_last_heard_timestamp_seconds{address=\"10.77.0.10\",peer=\"n1\"} 999.1",
            "hotpair_link_last_change_timestamp_seconds{peer=\"n1\"} 999",
            // The "seconds since" gauges, one release more, said deprecated.
            "# HELP hotpair_uptime_seconds DEPRECATED",
            "hotpair_uptime_seconds 12.5",
            "# HELP hotpair_peer_last_heard_seconds DEPRECATED",
            "# TYPE hotpair_request_duration_seconds histogram",
            "hotpair_request_duration_seconds_bucket{address=\"10.77.0.10\",route=\"/static/\",policy=\"static\",le=\"0.001\"} 1",
            "hotpair_request_duration_seconds_bucket{address=\"10.77.0.10\",route=\"/static/\",policy=\"static\",le=\"+Inf\"} 2",
            "hotpair_request_duration_seconds_count{address=\"10.77.0.10\",route=\"/static/\",policy=\"static\"} 2",
            "hotpair_request_duration_seconds_sum{address=\"10.77.0.10\",route=\"/static/\",policy=\"static\"} 0.003",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        // Each family is declared once.
        let mut types: Vec<&str> = t.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let n = types.len();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), n);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("route", "/a\"b\\c\nd")]),
            "{route=\"/a\\\"b\\\\c\\nd\"}"
        );
        assert_eq!(num(f64::INFINITY), "+Inf");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(3.0), "3");
    }

    #[test]
    fn only_get_metrics_is_served_and_garbage_is_refused() {
        let s = sample();
        let ok = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &s);
        let text = String::from_utf8(ok).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.contains("Content-Type: text/plain; version=0.0.4"),
            "{text}"
        );
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        let head_only = ask(b"HEAD /metrics HTTP/1.1\r\n\r\n", &s);
        assert!(head_only.ends_with(b"\r\n\r\n"));
        let status = |r: &[u8]| String::from_utf8_lossy(&r[..12]).into_owned();
        assert_eq!(status(&ask(b"GET / HTTP/1.1\r\n\r\n", &s)), "HTTP/1.1 404");
        assert_eq!(
            status(&ask(b"POST /metrics HTTP/1.1\r\n\r\n", &s)),
            "HTTP/1.1 405"
        );
        for junk in [
            &b"\x00\x01\x02garbage\r\n\r\n"[..],
            b"",
            b"GET /metrics",
            b"\xff\xff\xff\xff",
        ] {
            assert_eq!(status(&ask(junk, &s)), "HTTP/1.1 400");
        }
    }

    #[test]
    fn healthz_and_readyz_answer_200_or_503_with_why() {
        let answer = |path: &str, s: &Status, age_ms: u64| {
            let now = Instant::now();
            let mut s = s.clone();
            s.taken_at = Some(now - Duration::from_millis(age_ms));
            let r = respond(
                format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes(),
                &s,
                &Extra::default(),
                now,
                Duration::from_secs(1),
            );
            let text = String::from_utf8(r).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            (head[9..12].to_owned(), body.to_owned())
        };
        let mut s = sample(); // promoted: served alone
        let (code, body) = answer("/readyz", &s, 0);
        assert_eq!(code, "200", "{body}");
        assert!(body.contains("10.77.0.10 promoted"), "{body}");
        let (code, body) = answer("/healthz", &s, 100);
        assert_eq!(code, "200", "{body}");
        // A stalled stack loop: alive no more, whatever the addresses.
        let (code, body) = answer("/healthz", &s, 1500);
        assert!(code == "503" && body.contains("stalled"), "{body}");
        s.addresses[0].state = "fenced".into();
        s.addresses[0].fenced = true;
        let (code, body) = answer("/readyz", &s, 0);
        assert!(code == "503" && body.contains("fenced"), "{body}");
        s.addresses[0].state = "replicated".into();
        s.addresses[0].fenced = false;
        s.leaving = true;
        let (code, body) = answer("/readyz", &s, 0);
        assert!(code == "503" && body.contains("leaving"), "{body}");
        let (code, _) = answer("/readyz", &Status::default(), 0);
        assert_eq!(code, "503");
        // HEAD: the head alone; other methods refused.
        let r = ask(b"HEAD /healthz HTTP/1.1\r\n\r\n", &sample());
        assert!(r.starts_with(b"HTTP/1.1 200") && r.ends_with(b"\r\n\r\n"));
        let r = ask(b"POST /readyz HTTP/1.1\r\n\r\n", &sample());
        assert!(r.starts_with(b"HTTP/1.1 405"));
    }
}
