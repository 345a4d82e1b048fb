//! The client's scripts and what each must receive.
//!
//! A scenario is a set of client connections opened at time zero. Each
//! connection sends its requests (one by one, each after the previous
//! reply is complete, or all in one write) and closes either as soon as it
//! is established or once every reply is in. The expected replies come from
//! an oracle: the same HTTP layer and handlers the nodes use, fed each
//! request alone, so a reply is expected byte for byte; a `generate` reply
//! may be any one of the generations the two nodes could have made.

pub mod https;

use hotpair_replicator::Policy;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hotpair_http::{generate, ServerConn};

use crate::app::APP_PREFIX;
use crate::content::{self, GENERATE_PREFIX};

/// When a connection sends its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// Each request once the previous reply is complete (keep-alive).
    OneByOne,
    /// All requests at once, in one write (pipelining).
    AllAtOnce,
    /// The first `n` requests in one write, then the others one by one.
    FirstAtOnce(usize),
}

/// When the client closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// As soon as the handshake completes (no request).
    WhenEstablished,
    /// Once every reply is complete.
    AfterReplies,
}

#[derive(Debug, Clone)]
pub struct ConnScript {
    pub requests: Vec<Vec<u8>>,
    pub send: Sending,
    pub close: Close,
    /// With [`Close::AfterReplies`]: wait this long after the last reply
    /// before closing (the server, if it closes, closes first).
    pub linger: Duration,
    /// The service address it connects to (an index: `addresses::vip`).
    pub address: usize,
    /// Speak HTTPS (TLS 1.3, rustls as the client) over the connection.
    pub tls: bool,
    /// HTTPS: before each request after the first, the client sends a
    /// KeyUpdate asking the server to update too.
    pub key_update: bool,
    /// HTTPS: a KeyUpdate asking the server to update too, sent after a
    /// request: one by one, right after each request but the last, in the
    /// same write (the server reads it with that request); pipelined, once
    /// the first reply bytes are in (the later requests' replies still to
    /// come). The replies to requests before it must come under the key
    /// before it: the owner node may have sealed them ahead.
    pub key_update_after: bool,
    /// Opened once connection `after` (an index into the scenario's
    /// connections) is done, not at time zero: an HTTPS connection then
    /// offers the session ticket an earlier one was given (resumption).
    pub after: Option<usize>,
    /// HTTPS: the client's first key share is for a group the server does
    /// not serve, so the server answers with a HelloRetryRequest.
    pub hello_retry: bool,
    /// HTTPS: the client holds a ticket from another server (same name and
    /// certificate) that invites 0-RTT, offers it, and sends its first
    /// request as early data too; the node must refuse both (a full
    /// handshake, the early data skipped, never executed), and the client
    /// sends the request again after the handshake.
    pub early_data: bool,
}

impl ConnScript {
    /// `requests` sent as `send` says, closed as `close` says: plain HTTP
    /// to the first address at time zero, none of the special cases.
    pub fn new(requests: Vec<Vec<u8>>, send: Sending, close: Close) -> Self {
        ConnScript {
            requests,
            send,
            close,
            linger: Duration::ZERO,
            address: 0,
            tls: false,
            key_update: false,
            key_update_after: false,
            after: None,
            hello_retry: false,
            early_data: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub what: &'static str,
    pub conns: Vec<ConnScript>,
    /// The content policy of /static/ on every node in this scenario.
    pub files_policy: Policy,
    /// Every node's half-open bound, beyond which SYN cookies answer
    /// (`None`: 32, never reached by a scenario's own connections).
    pub max_half_open: Option<usize>,
}

impl Scenario {
    /// The nodes serve HTTPS (every connection of such a scenario speaks
    /// TLS: an address serves TLS or plain HTTP on its one port).
    pub fn tls(&self) -> bool {
        self.conns.iter().any(|c| c.tls)
    }

    pub fn requests(&self) -> usize {
        self.conns.iter().map(|c| c.requests.len()).sum()
    }
    /// Requests served by `generate` (their replies are not deterministic).
    pub fn generate_requests(&self) -> usize {
        self.conns
            .iter()
            .flat_map(|c| &c.requests)
            .filter(|r| is_generate(r))
            .count()
    }
}

fn is_generate(req: &[u8]) -> bool {
    target_starts_with(req, GENERATE_PREFIX)
}

/// A request for the application (`/app/`).
pub fn is_app(req: &[u8]) -> bool {
    target_starts_with(req, APP_PREFIX)
}

fn target_starts_with(req: &[u8], prefix: &str) -> bool {
    req.split(|&b| b == b' ')
        .nth(1)
        .is_some_and(|target| target.starts_with(prefix.as_bytes()))
}

/// A POST of `body` to the application.
fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: 10.77.0.10\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 10.77.0.10\r\nUser-Agent: hotpair-sim\r\n{extra}\r\n")
        .into_bytes()
}

/// The upload body (deterministic).
pub const UPLOAD_LEN: usize = 1024 * 1024;
/// Body bytes the client of the `reject` scenario writes (of 100 MiB announced).
pub const REJECT_SENT: usize = 512 * 1024;
/// `generate` reply size of the slow-reply scenario.
pub const GENERATE_SIZE: usize = 300_000;

/// Every scenario, in a fixed order.
pub fn all() -> Vec<Scenario> {
    let one = ConnScript::new;
    let mut upload =
        format!("POST /static/x HTTP/1.1\r\nHost: 10.77.0.10\r\nContent-Type: application/octet-stream\r\nContent-Length: {UPLOAD_LEN}\r\n\r\n")
            .into_bytes();
    upload.extend_from_slice(&content::file_bytes("upload", UPLOAD_LEN));
    let mut reject =
        b"POST /static/x HTTP/1.1\r\nHost: 10.77.0.10\r\nContent-Length: 104857600\r\n\r\n"
            .to_vec();
    reject.extend_from_slice(&content::file_bytes("reject", REJECT_SENT));
    let mixed = [
        get("/static/1k.bin", ""),
        get("/non-deterministic/x?size=20000", ""),
        get("/static/100k.bin", ""),
        get("/non-deterministic/x?size=5000", ""),
    ];
    let pipelined = [
        get("/static/1k.bin", ""),
        get("/static/100k.bin", ""),
        get("/static/1k.bin", ""),
    ];
    vec![
        Scenario {
            name: "handshake",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "handshake, then the client closes",
            conns: vec![one(vec![], Sending::OneByOne, Close::WhenEstablished)],
        },
        Scenario {
            name: "upload",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "POST of a 1 MiB body to /static/x (405 once the body is in)",
            conns: vec![one(vec![upload], Sending::OneByOne, Close::AfterReplies)],
        },
        Scenario {
            name: "download",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "GET /static/2m.bin",
            conns: vec![one(
                vec![get("/static/2m.bin", "")],
                Sending::OneByOne,
                Close::AfterReplies,
            )],
        },
        Scenario {
            name: "generate",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "GET /non-deterministic/x?size=300000 (a logged, non-deterministic reply)",
            conns: vec![one(
                vec![get(
                    &format!("/non-deterministic/x?size={GENERATE_SIZE}"),
                    "",
                )],
                Sending::OneByOne,
                Close::AfterReplies,
            )],
        },
        Scenario {
            name: "keepalive",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "4 requests one after another on one connection",
            conns: vec![one(
                vec![
                    get("/static/1k.bin", ""),
                    get("/static/100k.bin", ""),
                    get("/static/1k.bin", ""),
                    get("/static/100k.bin", ""),
                ],
                Sending::OneByOne,
                Close::AfterReplies,
            )],
        },
        Scenario {
            name: "pipelined",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "3 GETs in one write",
            conns: vec![one(
                pipelined.to_vec(),
                Sending::AllAtOnce,
                Close::AfterReplies,
            )],
        },
        Scenario {
            name: "close",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "GET /static/100k.bin with Connection: close",
            conns: vec![one(
                vec![get("/static/100k.bin", "Connection: close\r\n")],
                Sending::OneByOne,
                Close::AfterReplies,
            )],
        },
        Scenario {
            name: "reject",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "POST announcing a 100 MiB body (over the 64 MiB limit): 413 and close at once, while the client is still sending",
            conns: vec![one(vec![reject], Sending::OneByOne, Close::AfterReplies)],
        },
        Scenario {
            name: "linger",
            files_policy: Policy::Static,
            max_half_open: None,
            what:
                "GET /static/1k.bin with Connection: close; the client closes 3 s after the server",
            conns: vec![ConnScript {
                linger: Duration::from_secs(3),
                ..one(
                    vec![get("/static/1k.bin", "Connection: close\r\n")],
                    Sending::OneByOne,
                    Close::AfterReplies,
                )
            }],
        },
        Scenario {
            name: "mixed",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "keep-alive: static, logged (generate), static, logged, one after another",
            conns: vec![one(
                mixed.to_vec(),
                Sending::OneByOne,
                Close::AfterReplies,
            )],
        },
        Scenario {
            name: "mixed-pipe",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "static, logged (generate), static in one write",
            conns: vec![one(
                mixed[..3].to_vec(),
                Sending::AllAtOnce,
                Close::AfterReplies,
            )],
        },
        Scenario {
            name: "app",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "the application (/app/, logged, a shared database): two POSTs, a GET and a static GET one after another, and two POSTs pipelined on a second connection",
            conns: vec![
                one(
                    vec![
                        post("/app/orders", &content::file_bytes("order-1", 2000)),
                        get("/app/orders/1", ""),
                        get("/static/1k.bin", ""),
                        post("/app/orders", &content::file_bytes("order-2", 300)),
                    ],
                    Sending::OneByOne,
                    Close::AfterReplies,
                ),
                one(
                    vec![
                        post("/app/payments", &content::file_bytes("payment-1", 500)),
                        post("/app/payments", &content::file_bytes("payment-2", 700)),
                    ],
                    Sending::AllAtOnce,
                    Close::AfterReplies,
                ),
            ],
        },
        Scenario {
            name: "mixed-sync",
            files_policy: Policy::SyncStatic,
            max_half_open: None,
            what: "as mixed, with /static/ under sync-static",
            conns: vec![one(
                mixed.to_vec(),
                Sending::OneByOne,
                Close::AfterReplies,
            )],
        },
    ]
}

pub fn by_name(name: &str) -> Option<Scenario> {
    all()
        .into_iter()
        .chain(std::iter::once(syn_cookies()))
        .chain(https::all())
        .find(|s| s.name == name)
}

/// Two downloads at once against a half-open bound of 1: the second
/// handshake meets the bound and is answered with a SYN cookie (on a pair,
/// by the owner; the primary opens it from the forwarded ACK). Not in
/// [`all`]: `sim/tests/syn_cookies.rs` runs its own kill matrix.
pub fn syn_cookies() -> Scenario {
    let conn = ConnScript::new(
        vec![get("/static/2m.bin", "")],
        Sending::OneByOne,
        Close::AfterReplies,
    );
    Scenario {
        name: "syn-cookies",
        what: "two GET /static/2m.bin at once, half-open bound 1 (the second through a SYN cookie)",
        conns: vec![conn.clone(), conn],
        files_policy: Policy::Static,
        max_half_open: Some(1),
    }
}

/// What one request must be answered with.
#[derive(Debug, Clone)]
pub enum Expected {
    /// Exactly these bytes.
    Exact(Bytes),
    /// Exactly one of these (a `generate` reply: one per seed a node could
    /// have used), with the seed it was made from.
    OneOf(Vec<(u64, Bytes)>),
    /// The application's reply to this request (its bytes as the client
    /// wrote them): the reply the database committed for it, which only
    /// the run knows (see `crate::app`).
    App(Bytes),
}

impl Expected {
    /// Which alternative `got` is, if any (an application reply is judged
    /// against the database instead: never a match here).
    pub fn matches(&self, got: &[u8]) -> Option<Option<u64>> {
        match self {
            Expected::App(_) => None,
            Expected::Exact(b) => (b.as_ref() == got).then_some(None),
            Expected::OneOf(cands) => {
                let mut hits = cands.iter().filter(|(_, c)| c.as_ref() == got);
                let first = hits.next()?;
                // Two identical generations cannot tell the nodes apart,
                // but they still are one correct reply.
                Some(Some(first.0))
            }
        }
    }
}

/// The expected replies of a scenario: per connection, per request.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub conns: Vec<Vec<Expected>>,
    /// Requests that reach a handler (the others the HTTP layer answers).
    pub handler_runs: u64,
    /// The same, per connection.
    pub conn_handler_runs: Vec<u64>,
}

/// The seeds `NodeService` uses for its n-th `generate` request (it starts
/// at the seed it was built with and adds the golden ratio each time).
pub fn generate_seeds(first: u64, n: usize) -> impl Iterator<Item = u64> {
    (0..n as u64).map(move |k| first.wrapping_add(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

/// Compute the expected replies. `service_seeds` are the nodes' first
/// `generate` seeds.
pub fn expectations(s: &Scenario, service_seeds: &[u64]) -> Arc<Expectations> {
    let c = content::get();
    let n_gen = s.generate_requests().max(1);
    let seeds: Vec<u64> = service_seeds
        .iter()
        .flat_map(|&f| generate_seeds(f, n_gen))
        .collect();
    // The oracle's clock: an origin for the HTTP layer's timeouts, which
    // never fire here (every request is complete when fed).
    let t0 = Instant::now();
    // One reply per script entry: (bytes, whether a handler made it).
    let reply = |req: &[u8], seed: u64| -> (Bytes, bool) {
        let mut conn = ServerConn::new(c.limits, t0);
        // A rejected request is not read to its end.
        let _ = conn.handle_input(req, t0);
        let mut handled = false;
        while let Some(r) = conn.poll_request() {
            let resp = if r.path.starts_with(GENERATE_PREFIX) {
                generate::handle(&r, seed, content::GENERATE_MAX)
            } else {
                c.files.handle(&r)
            };
            conn.send_response(r.index, resp)
                .expect("oracle: reply accepted");
            assert!(!handled, "oracle: one request per script entry");
            handled = true;
        }
        let mut out = Vec::new();
        while let Some(chunk) = conn.poll_output() {
            let n = chunk.len();
            out.extend_from_slice(chunk);
            conn.consume_output(n);
        }
        assert!(!out.is_empty(), "oracle: no reply");
        (Bytes::from(out), handled)
    };
    let mut conn_handler_runs = Vec::new();
    let conns = s
        .conns
        .iter()
        .map(|cs| {
            let mut runs = 0;
            let expected = cs
                .requests
                .iter()
                .map(|r| {
                    if is_app(r) {
                        runs += 1;
                        Expected::App(Bytes::copy_from_slice(r))
                    } else if is_generate(r) {
                        runs += 1;
                        Expected::OneOf(seeds.iter().map(|&sd| (sd, reply(r, sd).0)).collect())
                    } else {
                        let (b, handled) = reply(r, 0);
                        runs += u64::from(handled);
                        Expected::Exact(b)
                    }
                })
                .collect();
            conn_handler_runs.push(runs);
            expected
        })
        .collect();
    Arc::new(Expectations {
        conns,
        handler_runs: conn_handler_runs.iter().sum(),
        conn_handler_runs,
    })
}
