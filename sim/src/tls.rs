//! HTTPS in the simulation: the nodes' TLS configuration and the client's
//! (rustls, trusting a CA made at run time); the HTTPS scenarios are
//! `scenario::https`.
//!
//! The certificate is Ed25519: its signatures are deterministic and of one
//! length, so a handshake's records have the same lengths on every run and
//! every node. The handshake's random parts (rustls' randoms and key
//! shares, from the operating system) do differ from run to run: the
//! frames of an HTTPS run are the same in number and size, not in bytes,
//! so a replayed HTTPS run takes the same steps but its fingerprint (event
//! hashes) is not reproducible.
//!
//! The client also keeps the server's first application traffic secret of
//! each connection (its `KeyLog`), so that the judge can open the server's
//! records itself (`server_stream`): rustls as a client does not check what
//! rustls does not need, such as that the server answers a KeyUpdate the
//! client asked for.

mod server_stream;

pub use server_stream::{check_key_update_answers, open_server_stream, ServerStream};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use hotpair_tls::{TicketKey, TlsServerConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PKCS_ED25519};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue,
};
use rustls::crypto::{ActiveKeyExchange, CryptoProvider, SharedSecret, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, KeyLog, NamedGroup, RootCertStore};

/// The name the client asks for (the certificate is also for the
/// service addresses).
pub const SERVER_NAME: &str = "hotpair.test";

struct Pki {
    server: Arc<TlsServerConfig>,
    roots: Arc<RootCertStore>,
    /// Another server with the same certificate that does invite 0-RTT
    /// (plain rustls, its own stateful sessions): where a client gets a
    /// ticket that offers early data to our nodes.
    inviting: Arc<rustls::ServerConfig>,
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
        names.extend((0..4).map(|i| crate::addresses::vip(i).to_string()));
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
        let ring = rustls::crypto::ring::default_provider();
        let mut inviting = rustls::ServerConfig::builder_with_provider(Arc::new(ring))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
                    .expect("the server key"),
            )
            .expect("the inviting server's configuration");
        inviting.max_early_data_size = 16384;
        inviting.alpn_protocols = vec![b"http/1.1".to_vec()];
        Pki {
            server: Arc::new(server),
            roots: Arc::new(roots),
            inviting: Arc::new(inviting),
        }
    })
}

/// What every node of an HTTPS scenario serves with.
pub fn server_config() -> Arc<TlsServerConfig> {
    Arc::clone(&pki().server)
}

/// The TLS side of one simulated client (one per run): its rustls
/// configurations and its own session store. The store is the client's,
/// not the process's: rustls' default is one in-memory cache per
/// `ClientConfig`, and a configuration shared by every run in a process
/// let a run resume with a ticket an earlier run was given — its handshake
/// then depended on which runs the process had made before (a baseline and
/// its kill runs no longer took the same steps).
pub struct ClientTls {
    store: Arc<CountingStore>,
    secrets: Arc<ServerSecrets>,
    /// Offers an X25519 key share first (what the server picks).
    plain: Arc<ClientConfig>,
    /// Offers a key share for a group the server does not serve first: the
    /// server answers with a HelloRetryRequest for X25519.
    retry: Arc<ClientConfig>,
}

/// Get a ticket from the server that invites 0-RTT (a whole handshake in
/// memory, `config`'s store keeps the ticket).
fn inviting_ticket(config: &Arc<ClientConfig>) {
    let mut c = ClientConnection::new(
        Arc::clone(config),
        ServerName::try_from(SERVER_NAME).expect("a DNS name"),
    )
    .expect("a client connection");
    let mut s =
        rustls::ServerConnection::new(Arc::clone(&pki().inviting)).expect("a server connection");
    // Back and forth until neither has anything to say (the tickets come
    // after the client's Finished).
    for _ in 0..8 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).expect("client bytes");
        }
        let mut rd = &wire[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).expect("server reads");
        }
        s.process_new_packets()
            .expect("the inviting server's handshake");
        wire.clear();
        while s.wants_write() {
            s.write_tls(&mut wire).expect("server bytes");
        }
        let mut rd = &wire[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client reads");
        }
        c.process_new_packets().expect("the client's handshake");
        if !c.is_handshaking() && !c.wants_write() && !s.wants_write() {
            break;
        }
    }
    assert!(!c.is_handshaking(), "the inviting server's handshake ends");
}

/// A client connection as [`ClientTls::connect`] opened it.
pub struct Opened {
    pub conn: ClientConnection,
    /// Its ClientHello offers a session ticket (PSK) from an earlier
    /// connection of this client.
    pub offered_ticket: bool,
    /// rustls would let it send 0-RTT data: the ticket it offers allows
    /// early data (the server must never issue such a ticket).
    pub early_data_possible: bool,
}

impl Default for ClientTls {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientTls {
    pub fn new() -> Self {
        let store = Arc::new(CountingStore::default());
        let secrets = Arc::new(ServerSecrets::default());
        #[allow(deprecated)] // ring's provider: see hotpair-tls' config.rs
        let ring = rustls::crypto::ring::default_provider();
        let config = |kx_groups: Vec<&'static dyn SupportedKxGroup>| {
            let provider = CryptoProvider {
                kx_groups,
                ..ring.clone()
            };
            let mut c = ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("TLS 1.3")
                .with_root_certificates(Arc::clone(&pki().roots))
                .with_no_client_auth();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            c.resumption = Resumption::store(Arc::clone(&store) as Arc<dyn ClientSessionStore>);
            // Asked for, so that a ticket allowing 0-RTT would show
            // (`Opened::early_data_possible`); the server issues none.
            c.enable_early_data = true;
            c.key_log = Arc::clone(&secrets) as Arc<dyn KeyLog>;
            Arc::new(c)
        };
        let plain = config(ring.kx_groups.clone());
        let mut groups: Vec<&'static dyn SupportedKxGroup> = vec![&UNSERVED_GROUP];
        groups.extend(ring.kx_groups.iter().copied());
        let retry = config(groups);
        ClientTls {
            store,
            secrets,
            plain,
            retry,
        }
    }

    /// A new connection to the simulation's server; `retry`: its first key
    /// share is for a group the server does not serve; `foreign_ticket`:
    /// it offers a ticket from another server, one that invites 0-RTT.
    pub fn connect(&self, retry: bool, foreign_ticket: bool) -> Opened {
        let config = if retry { &self.retry } else { &self.plain };
        if foreign_ticket {
            inviting_ticket(config);
        }
        let taken = self.store.taken.load(Ordering::Relaxed);
        let mut conn = ClientConnection::new(
            Arc::clone(config),
            ServerName::try_from(SERVER_NAME).expect("a DNS name"),
        )
        .expect("a client connection");
        let early_data_possible = conn.early_data().is_some();
        Opened {
            conn,
            offered_ticket: self.store.taken.load(Ordering::Relaxed) > taken,
            early_data_possible,
        }
    }

    /// Session tickets the client has been given so far (all connections).
    pub fn tickets_received(&self) -> u64 {
        self.store.inserted.load(Ordering::Relaxed)
    }

    /// SERVER_TRAFFIC_SECRET_0 of the connection whose ClientHello carried
    /// `client_random`, once its handshake got that far.
    pub fn server_secret(&self, client_random: &[u8; 32]) -> Option<Vec<u8>> {
        let map = self.secrets.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(client_random).cloned()
    }
}

/// The client's key log: each connection's first server application
/// traffic secret, by its ClientHello's random (a run's connections share
/// one configuration; the random tells them apart). Simulated connections
/// only: these are test keys.
#[derive(Debug, Default)]
struct ServerSecrets(Mutex<BTreeMap<[u8; 32], Vec<u8>>>);

const SERVER_TRAFFIC_SECRET_0: &str = "SERVER_TRAFFIC_SECRET_0";

impl KeyLog for ServerSecrets {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        if label != SERVER_TRAFFIC_SECRET_0 {
            return;
        }
        if let Ok(random) = <[u8; 32]>::try_from(client_random) {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.insert(random, secret.to_vec());
        }
    }

    fn will_log(&self, label: &str) -> bool {
        label == SERVER_TRAFFIC_SECRET_0
    }
}

/// rustls' in-memory session store, counting the tickets put in and taken
/// out (a ticket is taken when a ClientHello offers it).
#[derive(Debug)]
struct CountingStore {
    inner: ClientSessionMemoryCache,
    inserted: AtomicU64,
    taken: AtomicU64,
}

impl Default for CountingStore {
    fn default() -> Self {
        CountingStore {
            inner: ClientSessionMemoryCache::new(16),
            inserted: AtomicU64::new(0),
            taken: AtomicU64::new(0),
        }
    }
}

impl ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(server_name, group);
    }
    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(server_name)
    }
    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.inner.set_tls12_session(server_name, value);
    }
    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.inner.tls12_session(server_name)
    }
    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name);
    }
    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.inserted.fetch_add(1, Ordering::Relaxed);
        self.inner.insert_tls13_ticket(server_name, value);
    }
    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        let t = self.inner.take_tls13_ticket(server_name);
        if t.is_some() {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
        t
    }
}

/// A key-exchange group the client offers first and the server's provider
/// (ring: X25519, P-256, P-384) does not serve — P-521 — so that the server
/// picks the client's next group, X25519, and, having no share for it,
/// answers with a HelloRetryRequest. Its share is never used: the server
/// cannot pick it, so `complete` is never reached (it refuses if it is).
#[derive(Debug)]
struct UnservedGroup;

static UNSERVED_GROUP: UnservedGroup = UnservedGroup;

/// An uncompressed point's length on P-521 (the share's length on the
/// wire is what a real P-521 client would send).
const P521_POINT_LEN: usize = 1 + 2 * 66;

struct UnservedShare([u8; P521_POINT_LEN]);

impl SupportedKxGroup for UnservedGroup {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let mut point = [0u8; P521_POINT_LEN];
        point[0] = 4;
        Ok(Box::new(UnservedShare(point)))
    }
    fn name(&self) -> NamedGroup {
        NamedGroup::secp521r1
    }
}

impl ActiveKeyExchange for UnservedShare {
    fn complete(self: Box<Self>, _peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        Err(rustls::Error::General(
            "the simulation's P-521 share is only ever offered, never used".into(),
        ))
    }
    fn pub_key(&self) -> &[u8] {
        &self.0
    }
    fn group(&self) -> NamedGroup {
        NamedGroup::secp521r1
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use hotpair_replicator::node::{NodeConfig, NodeConfigError, NodeCore, SiteConfig, SiteTls};
    use hotpair_replicator::Role;
    use smoltcp::wire::Ipv4Cidr;

    use crate::addresses::{vip, MAC_A, PORT, PREFIX_LEN, TLS_PORT};

    fn core(tls_port: u16) -> Result<NodeCore, NodeConfigError> {
        let cfg = NodeConfig {
            name: "a".into(),
            mac: MAC_A,
            sites: vec![SiteConfig {
                address: Ipv4Cidr::new(vip(0), PREFIX_LEN),
                gateway: None,
                port: PORT,
                admission: hotpair_stack::Admission {
                    max_connections: 8,
                    max_half_open: 8,
                    half_open_timeout: Duration::from_secs(20),
                    max_per_source: 8,
                    syn_cookies: None,
                },
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
