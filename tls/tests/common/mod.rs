//! Test fixtures: a CA and server certificates made with rcgen at test
//! time, a real rustls client, and the pumps between client and server.
#![allow(dead_code)] // each test file uses a part

use std::sync::Arc;

use hotpair_tls::{
    Established, Progress, RecordLayer, ServerHandshake, TicketKey, TlsServerConfig, TlsState,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

pub struct Pki {
    pub ca: CertificateDer<'static>,
    /// (cert PEM, key PEM, DER of the cert), for: default (SANs
    /// default.test and 127.0.0.1), a.test, b.test, *.wild.test.
    pub certs: Vec<(String, String, CertificateDer<'static>)>,
}

pub fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hotpair test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut certs = Vec::new();
    for sans in [
        vec!["default.test", "127.0.0.1"],
        vec!["a.test"],
        vec!["b.test"],
        vec!["*.wild.test"],
    ] {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        certs.push((cert.pem(), key.serialize_pem(), cert.der().clone()));
    }
    Pki {
        ca: ca.der().clone(),
        certs,
    }
}

pub fn key(b: u8) -> TicketKey {
    TicketKey::new(&[b; 32]).unwrap()
}

pub fn server_config(pki: &Pki, current: u8, previous: Option<u8>) -> TlsServerConfig {
    let names = [
        vec![],
        vec!["a.test".to_string()],
        vec!["b.test".to_string()],
        vec!["*.wild.test".to_string()],
    ];
    let certs: Vec<(&[u8], &[u8], Vec<String>)> = pki
        .certs
        .iter()
        .zip(names)
        .map(|((c, k, _), n)| (c.as_bytes(), k.as_bytes(), n))
        .collect();
    let prev = previous.map(key);
    TlsServerConfig::from_pem(&certs, &key(current), prev.as_ref()).unwrap()
}

#[allow(deprecated)] // ring's provider: see hotpair-tls' config.rs
pub fn client_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A client config trusting the test CA; `suite` restricts its offer.
pub fn client_config(pki: &Pki, suite: Option<rustls::SupportedCipherSuite>) -> Arc<ClientConfig> {
    let mut provider = client_provider();
    if let Some(s) = suite {
        provider.cipher_suites = vec![s];
    }
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let mut c = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

pub fn client(cfg: &Arc<ClientConfig>, name: &str) -> ClientConnection {
    ClientConnection::new(cfg.clone(), ServerName::try_from(name.to_string()).unwrap()).unwrap()
}

/// Everything the client has to send.
pub fn from_client(c: &mut ClientConnection) -> Vec<u8> {
    let mut v = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut v).unwrap();
    }
    v
}

/// Give the client bytes from the server; what it read of them.
pub fn to_client(c: &mut ClientConnection, bytes: &[u8]) -> Result<Vec<u8>, rustls::Error> {
    let mut rd = bytes;
    let mut plain = Vec::new();
    while !rd.is_empty() {
        c.read_tls(&mut rd).unwrap();
        c.process_new_packets()?;
        // rustls holds at most 16 KiB of unread plaintext.
        plain.extend(client_read(c));
    }
    Ok(plain)
}

/// What the client has read.
pub fn client_read(c: &mut ClientConnection) -> Vec<u8> {
    use std::io::Read;
    let mut v = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match c.reader().read(&mut buf) {
            Ok(0) => break,
            Ok(n) => v.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("client read: {e}"),
        }
    }
    v
}

pub fn client_write(c: &mut ClientConnection, data: &[u8]) {
    use std::io::Write;
    c.writer().write_all(data).unwrap();
}

/// A handshake stopped right after the server flight: what the primary
/// logs (flight + state), with the client having read the flight.
pub struct AtFlight {
    pub hs: ServerHandshake,
    pub flight: Vec<u8>,
    pub state: TlsState,
}

pub fn to_flight(cfg: &TlsServerConfig, client: &mut ClientConnection) -> AtFlight {
    let mut hs = ServerHandshake::new(cfg).unwrap();
    let ch = from_client(client);
    assert_eq!(hs.feed(&ch).unwrap(), Progress::FlightReady);
    let flight = hs.take_output();
    let state = hs.flight_state().unwrap().clone();
    assert!(state.awaiting_client_finished());
    to_client(client, &flight).unwrap();
    AtFlight { hs, flight, state }
}

/// A whole handshake on one node; the tickets delivered to the client.
pub fn handshake(cfg: &TlsServerConfig, client: &mut ClientConnection) -> Established {
    let mut at = to_flight(cfg, client);
    let fin = from_client(client);
    assert_eq!(at.hs.feed(&fin).unwrap(), Progress::Complete);
    let tickets = at.hs.take_output();
    to_client(client, &tickets).unwrap();
    assert!(!client.is_handshaking());
    at.hs.into_established().unwrap()
}

pub fn layer(state: &TlsState) -> RecordLayer {
    RecordLayer::new(state.clone()).unwrap()
}

/// `n` bytes of a fixed pattern.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
