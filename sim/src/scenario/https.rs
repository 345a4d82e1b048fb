//! The HTTPS scenarios: the TLS handshake, resumption, HelloRetryRequest,
//! refused 0-RTT, KeyUpdate and close_notify, each carrying static and
//! logged replies.

use hotpair_replicator::Policy;

use super::{Close, ConnScript, Scenario, Sending};
use crate::tls::SERVER_NAME;

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\nUser-Agent: hotpair-sim\r\n{extra}\r\n")
        .into_bytes()
}

/// The HTTPS scenarios; `/static/` under `static` (the owner seals its own
/// copy of each reply).
pub fn all() -> Vec<Scenario> {
    let one = |requests, send, close| ConnScript {
        tls: true,
        ..ConnScript::new(requests, send, close)
    };
    // A static reply, then a logged (generate) one: what the resumed and
    // the retried handshakes carry.
    let static_then_logged = || {
        one(
            vec![
                get("/static/1k.bin", ""),
                get("/non-deterministic/x?size=5000", ""),
            ],
            Sending::OneByOne,
            Close::AfterReplies,
        )
    };
    vec![
        Scenario {
            name: "tls-handshake",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "HTTPS: the TLS handshake, then the client closes (close_notify, FIN)",
            conns: vec![one(vec![], Sending::OneByOne, Close::WhenEstablished)],
        },
        Scenario {
            name: "tls-download",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "HTTPS: GET /static/100k.bin",
            conns: vec![one(
                vec![get("/static/100k.bin", "")],
                Sending::OneByOne,
                Close::AfterReplies,
            )],
        },
        Scenario {
            name: "tls-keepalive",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "HTTPS: static, logged (generate), static, one after another on one connection",
            conns: vec![one(
                vec![
                    get("/static/1k.bin", ""),
                    get("/non-deterministic/x?size=20000", ""),
                    get("/static/100k.bin", ""),
                ],
                Sending::OneByOne,
                Close::AfterReplies,
            )],
        },
        Scenario {
            name: "tls-pipelined",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "HTTPS: 3 GETs in one write (one TLS record)",
            conns: vec![one(
                vec![
                    get("/static/1k.bin", ""),
                    get("/static/100k.bin", ""),
                    get("/static/1k.bin", ""),
                ],
                Sending::AllAtOnce,
                Close::AfterReplies,
            )],
        },
        Scenario {
            name: "tls-keyupdate",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "HTTPS: 3 requests one after another, a KeyUpdate (update requested) from the client before the second and the third",
            conns: vec![ConnScript {
                key_update: true,
                ..one(
                    vec![
                        get("/static/1k.bin", ""),
                        get("/static/100k.bin", ""),
                        get("/non-deterministic/x?size=20000", ""),
                    ],
                    Sending::OneByOne,
                    Close::AfterReplies,
                )
            }],
        },
        Scenario {
            name: "tls-keyupdate-after",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "HTTPS: 5 requests one after another (static, static, logged, static, static), each but the last followed in the same write by a KeyUpdate (update requested) from the client: the reply to each comes under the key before the KeyUpdate, the server's KeyUpdate after it",
            conns: vec![ConnScript {
                key_update_after: true,
                ..one(
                    vec![
                        get("/static/1k.bin", ""),
                        get("/static/1k.bin", ""),
                        get("/non-deterministic/x?size=5000", ""),
                        get("/static/1k.bin", ""),
                        get("/static/1k.bin", ""),
                    ],
                    Sending::OneByOne,
                    Close::AfterReplies,
                )
            }],
        },
        Scenario {
            name: "tls-close",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "HTTPS: GET /static/1k.bin with Connection: close (the server's close_notify, then FIN)",
            conns: vec![one(
                vec![get("/static/1k.bin", "Connection: close\r\n")],
                Sending::OneByOne,
                Close::AfterReplies,
            )],
        },
        Scenario {
            name: "tls-resume",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "HTTPS resumption: a first connection (GET /static/1k.bin) is given session tickets; once it is closed a second one offers a ticket (PSK, resumed handshake) and sends GET /static/1k.bin, then a logged (generate) GET",
            conns: vec![
                one(
                    vec![get("/static/1k.bin", "")],
                    Sending::OneByOne,
                    Close::AfterReplies,
                ),
                ConnScript {
                    after: Some(0),
                    ..static_then_logged()
                },
            ],
        },
        Scenario {
            name: "tls-hello-retry",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "HTTPS with a HelloRetryRequest: the client's first key share is P-521 (not served), the server asks for X25519; then GET /static/1k.bin and a logged (generate) GET",
            conns: vec![ConnScript {
                hello_retry: true,
                ..static_then_logged()
            }],
        },
        Scenario {
            name: "tls-early-data",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "HTTPS 0-RTT refused: the client offers another server's ticket that invites early data and sends a logged (generate) GET as 0-RTT data; the node does a full handshake and skips the early data; the client sends the GET again, then GET /static/1k.bin",
            conns: vec![ConnScript {
                early_data: true,
                ..one(
                    vec![
                        get("/non-deterministic/x?size=5000", ""),
                        get("/static/1k.bin", ""),
                    ],
                    Sending::OneByOne,
                    Close::AfterReplies,
                )
            }],
        },
        Scenario {
            name: "tls-and-http",
            files_policy: Policy::Static,
            max_half_open: None,
            what: "one address, two ports: HTTPS on 443 and plain HTTP on 80 at once, each a static and a logged (generate) reply",
            conns: [true, false]
                .into_iter()
                .map(|tls| ConnScript {
                    tls,
                    ..one(
                        vec![
                            get("/static/100k.bin", ""),
                            get("/non-deterministic/x?size=60000", ""),
                        ],
                        Sending::OneByOne,
                        Close::AfterReplies,
                    )
                })
                .collect(),
        },
    ]
}
