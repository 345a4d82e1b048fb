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
//!
//! Here the document itself; in `admin/` the publisher (`publish.rs`), the
//! socket's node side (`server.rs`) and its client side with the table
//! (`client.rs`).

mod client;
mod publish;
mod server;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use self::client::*;
pub use self::publish::*;
pub use self::server::*;

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
    /// The LAN check: `true` while it passes (`None`: not configured).
    #[serde(default)]
    pub lan_up: Option<bool>,
    /// The application check: `true` while the application answers
    /// (`None`: not configured).
    #[serde(default)]
    pub app_up: Option<bool>,
    /// Requests the application could not take, waiting for the
    /// application check's verdict (see docs/application.md).
    #[serde(default)]
    pub held_replies: usize,
    /// SIGHUP reloads.
    #[serde(default)]
    pub reloads: ReloadStatus,
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
    /// The node core's [`hotpair_replicator::node::SiteState`] as its
    /// word: `replicated` (the peer is up), `waiting` (replicated role, the
    /// peer is not up), `promoted` (owner whose primary died: serves
    /// alone), `claimed` (primary whose owner died: took the address,
    /// serves alone), `fenced` (silent: the peer answered for the
    /// address), or `alone` (configured so). A word, not the enum: a
    /// client reads other nodes' JSON, maybe a newer node's words.
    pub state: String,
    pub fenced: bool,
    /// The peer sharing the address, if replicated.
    pub peer: Option<AddressPeer>,
    pub connections: Connections,
    /// Replication log and queues (present while replicated).
    pub log: Option<LogStatus>,
    /// Client segments the owner node held (their ACK was ahead of its
    /// shadow) and those dropped at the per-connection bound.
    pub held_acks: u64,
    pub held_acks_dropped: u64,
    /// Connections reset because the client had acknowledged bytes this
    /// node never sent (both nodes served them in a split brain).
    #[serde(default)]
    pub diverged_resets: u64,
    /// Owner: shadows given up because their reply differed from the
    /// primary's, whose connections kept going to the primary
    /// (forward-only: they will not survive its crash); and those of them
    /// open now.
    #[serde(default)]
    pub shadows_detached: u64,
    #[serde(default)]
    pub detached_connections: u64,
    /// Connections refused or dropped by the bounds.
    pub refused: Refused,
    /// SYN cookies at the half-open bound.
    #[serde(default)]
    pub syn_cookies: SynCookies,
    pub forwarded_frames: u64,
    pub passed_through: u64,
    /// Takeovers of this address: promotions for an owner, claims for a
    /// primary.
    pub takeovers: u64,
    /// Times this address was fenced.
    pub fencings: u64,
    /// Per route: requests served on this address.
    pub routes: Vec<RouteRequests>,
    /// HTTPS on this address (`[tls]`); absent for plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsStatus>,
    /// Per service port (HTTP on `port`, HTTPS on `tls.port`): what it
    /// served here. The configured ports are always listed; a port a
    /// reload dropped stays while it has counts.
    #[serde(default)]
    pub ports: Vec<PortStatus>,
}

/// What one service port of an address served on this node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PortStatus {
    pub port: u16,
    /// `http` or `https`.
    pub scheme: String,
    /// Connections served here: accepted live, or made live by a takeover
    /// (shadows kept for the primary are not counted).
    pub connections: u64,
    /// Requests parsed here, and requests whose reply a takeover finished
    /// here (as `routes[].requests` counts them).
    pub requests: u64,
}

/// HTTPS counters of one address.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TlsStatus {
    /// The port the address serves HTTPS on (its `port` serves HTTP).
    #[serde(default)]
    pub port: u16,
    /// TLS handshakes completed on this node (full and resumed).
    pub handshakes: u64,
    /// Of them, resumed with a session ticket.
    pub resumed: u64,
    /// Connections closed on a TLS error (an alert, a bad record).
    pub errors: u64,
    /// Handshakes by cipher suite (IANA name). The version is TLS 1.3:
    /// nothing else is offered.
    #[serde(default)]
    pub suites: std::collections::BTreeMap<String, u64>,
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
    /// Owner: units received and not yet applied.
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

/// SYN cookies of one address: SYNs answered with one at the half-open
/// bound, connections opened by a valid one, ACKs with a bad one dropped.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SynCookies {
    pub sent: u64,
    /// SYNs beyond the bound from sources with no route: not answered.
    #[serde(default)]
    pub unroutable: u64,
    pub validated: u64,
    pub rejected: u64,
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
    /// Final replies made here, by status code.
    #[serde(default)]
    pub codes: std::collections::BTreeMap<u16, u64>,
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
    /// The content generation served now: the first 6 bytes of the
    /// route's digest in hex (a `files` route's; empty for others). Two
    /// nodes serving the same generation use `static` as configured.
    #[serde(default)]
    pub generation: String,
}

/// SIGHUP reloads so far, by result (see docs/operations.md, "Signals").
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReloadStatus {
    /// Applied: the new routes and content are served.
    pub ok: u64,
    /// The config did not load (a parse or validation error, a docroot
    /// that did not read): nothing changed.
    pub failed: u64,
    /// The config changed a key that cannot change live: nothing changed.
    pub refused: u64,
    /// When the last reload was applied (Unix ms; 0: never).
    pub last_ok_unix_ms: u64,
    /// Local units naming a content generation this node no longer held:
    /// those connections' shadows were given up (never a spliced reply).
    pub generation_missing: u64,
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

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::server::peer_allowed;
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
                diverged_resets: 0,
                shadows_detached: 0,
                detached_connections: 0,
                refused: Refused {
                    per_source: 1,
                    half_open_evicted: 2,
                    half_open_expired: 3,
                },
                syn_cookies: SynCookies {
                    sent: 40,
                    unroutable: 7,
                    validated: 5,
                    rejected: 6,
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
                    codes: [(200, 3), (404, 1)].into_iter().collect(),
                }],
                tls: Some(TlsStatus {
                    port: 443,
                    handshakes: 7,
                    resumed: 2,
                    errors: 1,
                    suites: [("TLS_AES_256_GCM_SHA384".to_owned(), 7)].into(),
                }),
                ports: vec![
                    PortStatus {
                        port: 80,
                        scheme: "http".into(),
                        connections: 2,
                        requests: 1,
                    },
                    PortStatus {
                        port: 443,
                        scheme: "https".into(),
                        connections: 6,
                        requests: 3,
                    },
                ],
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
                generation: "46c7cbd683be".into(),
            }],
            leaving: false,
            lan_up: Some(true),
            app_up: Some(false),
            held_replies: 0,
            reloads: ReloadStatus {
                ok: 2,
                failed: 1,
                refused: 0,
                last_ok_unix_ms: 998_000,
                generation_missing: 0,
            },
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
            "syn_cookies",
            "takeovers",
            "routes",
            "ports",
        ] {
            assert!(a.get(key).is_some(), "addresses[0].{key} missing");
        }
        assert_eq!(a["state"], "promoted");
        assert_eq!(a["peer"]["name"], "n1");
        assert_eq!(a["peer"]["link"], "down");
        assert_eq!(a["connections"]["live"], 3);
        assert_eq!(a["ports"][1]["scheme"], "https");
        assert_eq!(a["ports"][1]["requests"], 3);
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
        // sample(): 3 unreplicated connections — why a switchover waits.
        assert!(
            t.contains("3 connection(s) not replicated") && t.contains("--force"),
            "{t}"
        );
        assert!(t.contains("application DOWN"), "{t}");
        assert!(
            t.contains(
                "by port: 80/http 2 connections 1 requests, 443/https 6 connections 3 requests"
            ),
            "{t}"
        );
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
