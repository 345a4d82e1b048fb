//! HTTPS in the simulation: the nodes' TLS configuration, the client's
//! (rustls, trusting a CA made at run time), and the HTTPS scenarios.
//!
//! The certificate is Ed25519: its signatures are deterministic and of one
//! length, so a handshake's records have the same lengths on every run and
//! every node. The handshake's random parts (rustls' randoms and key
//! shares, from the operating system) do differ from run to run: the
//! frames of an HTTPS run are the same in number and size, not in bytes,
//! so a replayed HTTPS run takes the same steps but its fingerprint (event
//! hashes) is not reproducible.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hotpair_tls::{TicketKey, TlsServerConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PKCS_ED25519};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::scenario::{Close, ConnScript, Scenario, Sending};
use hotpair_replicator::Policy;

/// The name the client asks for (the certificate is also for the
/// service addresses).
pub const SERVER_NAME: &str = "hotpair.test";

struct Pki {
    server: Arc<TlsServerConfig>,
    client: Arc<ClientConfig>,
}

fn pki() -> &'static Pki {
    static P: OnceLock<Pki> = OnceLock::new();
    P.get_or_init(|| {
        let ca_key = KeyPair::generate_for(&PKCS_ED25519).expect("an Ed25519 key");
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).expect("CA certificate parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "hotpair simulation CA");
        let ca = ca_params.self_signed(&ca_key).expect("the CA certificate");
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("an Ed25519 key");
        let mut names = vec![SERVER_NAME.to_owned()];
        names.extend((0..4).map(|i| crate::node::vip(i).to_string()));
        let cert = CertificateParams::new(names)
            .expect("server certificate parameters")
            .signed_by(&key, &ca, &ca_key)
            .expect("the server certificate");
        let ticket = TicketKey::new(&[0x5a; 32]).expect("a 32-byte ticket key");
        let server = TlsServerConfig::from_pem(
            &[(
                cert.pem().as_bytes(),
                key.serialize_pem().as_bytes(),
                Vec::new(),
            )],
            &ticket,
            None,
        )
        .expect("the simulation's TLS configuration");
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.der().to_vec()))
            .expect("the CA as a root");
        #[allow(deprecated)] // ring's provider: see hotpair-tls' config.rs
        let provider = rustls::crypto::ring::default_provider();
        let mut client = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Pki {
            server: Arc::new(server),
            client: Arc::new(client),
        }
    })
}

/// What every node of an HTTPS scenario serves with.
pub fn server_config() -> Arc<TlsServerConfig> {
    Arc::clone(&pki().server)
}

/// A new client connection to the simulation's server.
pub fn client() -> ClientConnection {
    ClientConnection::new(
        Arc::clone(&pki().client),
        ServerName::try_from(SERVER_NAME).expect("a DNS name"),
    )
    .expect("a client connection")
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\nUser-Agent: hotpair-sim\r\n{extra}\r\n")
        .into_bytes()
}

/// The HTTPS scenarios; `/static/` under `static` (the owner seals its own
/// copy of each reply).
pub fn scenarios() -> Vec<Scenario> {
    let one = |requests: Vec<Vec<u8>>, send, close| ConnScript {
        requests,
        send,
        close,
        linger: Duration::ZERO,
        address: 0,
        tls: true,
        key_update: false,
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use hotpair_replicator::node::{NodeConfig, NodeConfigError, NodeCore, SiteConfig, SiteTls};
    use hotpair_replicator::Role;
    use smoltcp::wire::Ipv4Cidr;

    use crate::node::{vip, MAC_A, PORT, PREFIX_LEN, TLS_PORT};

    fn core(tls_port: u16) -> Result<NodeCore, NodeConfigError> {
        let cfg = NodeConfig {
            name: "a".into(),
            mac: MAC_A,
            sites: vec![SiteConfig {
                address: Ipv4Cidr::new(vip(0), PREFIX_LEN),
                gateway: None,
                port: PORT,
                max_connections: 8,
                max_half_open: 8,
                half_open_timeout: Duration::from_secs(20),
                max_per_source: 8,
                syn_cookies: None,
                role: Role::Simplex,
                peer: None,
                tls: Some(SiteTls {
                    port: tls_port,
                    config: super::server_config(),
                }),
            }],
            peers: Vec::new(),
            heartbeat_interval: Duration::from_millis(100),
            heartbeat_timeout: Duration::from_millis(500),
            cold_start_wait: hotpair_replicator::replica::DEFAULT_COLD_START_WAIT,
            lan_check: None,
            app_check: None,
            rx_buffer_bytes: 16 * 1024,
            tx_buffer_bytes: 16 * 1024,
            limits: hotpair_http::Limits::default(),
            routes: Vec::new(),
            seed: 1,
        };
        #[allow(clippy::disallowed_methods)] // a test's origin of time
        let now = Instant::now();
        NodeCore::new(cfg, now)
    }

    /// A connection's port is what says whether it speaks TLS: HTTPS on
    /// the HTTP port is refused (the appliance's config check says so
    /// first, in its own words).
    #[test]
    fn a_tls_port_that_is_the_http_port_is_refused() {
        assert_eq!(
            core(PORT).err(),
            Some(NodeConfigError::TlsPortIsHttpPort(vip(0), PORT))
        );
        let c = core(TLS_PORT).expect("HTTPS on its own port");
        assert_eq!((c.port(0), c.tls_port(0)), (PORT, Some(TLS_PORT)));
    }
}
