//! Resumption across nodes (a ticket key both share), key rotation, 0-RTT
//! refused, and a HelloRetryRequest handshake taken over.

mod common;

use std::sync::Arc;

use common::*;
use hotpair_tls::{Progress, ServerHandshake, TlsEvent};
use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{NamedGroup, ServerConfig, ServerConnection};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";

#[test]
fn a_ticket_from_node_a_resumes_on_node_b_and_survives_one_rotation() {
    let pki = pki();
    let node_a = server_config(&pki, 1, None);
    let node_b = server_config(&pki, 1, None); // shares only the key
    let cfg = client_config(&pki, None);

    let est = handshake(&node_a, &mut client(&cfg, "a.test"));
    assert!(!est.resumed);
    // Each fresh connection uses up one of the tickets rustls sent (2),
    // and a resumed handshake brings new ones.
    let mut c = client(&cfg, "a.test");
    let est = handshake(&node_b, &mut c);
    assert!(est.resumed, "node B resumed node A's session");
    // Through our record layer after a resumed handshake.
    let mut rl = layer(&est.state);
    client_write(&mut c, REQUEST);
    assert_eq!(rl.open(&from_client(&mut c)).unwrap().plaintext, REQUEST);
    assert_eq!(to_client(&mut c, &rl.seal(b"ok").unwrap()).unwrap(), b"ok");

    // Rotated: key 2 seals, key 1 still opens.
    let rotated = server_config(&pki, 2, Some(1));
    let est = handshake(&rotated, &mut client(&cfg, "a.test"));
    assert!(est.resumed, "the previous key still opens the ticket");
}

#[test]
fn a_ticket_under_another_key_falls_back_to_a_full_handshake() {
    let pki = pki();
    let cfg = client_config(&pki, None);
    handshake(&server_config(&pki, 1, None), &mut client(&cfg, "a.test"));
    let mut c = client(&cfg, "a.test");
    let est = handshake(&server_config(&pki, 2, None), &mut c);
    assert!(!est.resumed);
    assert_eq!(
        c.handshake_kind(),
        Some(rustls::HandshakeKind::Full),
        "the client saw a full handshake"
    );
}

#[test]
fn a_resumed_handshake_can_be_taken_over_before_the_client_finished() {
    let pki = pki();
    let cfg = client_config(&pki, None);
    handshake(&server_config(&pki, 1, None), &mut client(&cfg, "a.test"));
    let mut c = client(&cfg, "a.test");
    let at = to_flight(&server_config(&pki, 1, None), &mut c);
    assert_eq!(c.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
    client_write(&mut c, REQUEST);
    let mut b = layer(&at.state);
    let got = b.open(&from_client(&mut c)).unwrap();
    assert_eq!(got.events, vec![TlsEvent::ClientFinished]);
    assert_eq!(got.plaintext, REQUEST);
}

/// A plain rustls server that does allow 0-RTT (stateful sessions), with
/// the same certificate as ours for a.test: it hands the client a ticket
/// inviting early data, which the client then offers to our node.
fn early_data_ticket(pki: &Pki, cfg: &Arc<rustls::ClientConfig>) {
    use rustls::pki_types::pem::PemObject;
    let chain = vec![pki.certs[1].2.clone()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pki.certs[1].1.as_bytes()).unwrap();
    let mut sc = ServerConfig::builder_with_provider(Arc::new(client_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    sc.max_early_data_size = 16384;
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut server = ServerConnection::new(Arc::new(sc)).unwrap();
    let mut c = client(cfg, "a.test");
    while c.is_handshaking() || server.wants_write() || c.wants_write() {
        let mut v = from_client(&mut c);
        let mut rd = &v[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
        }
        server.process_new_packets().unwrap();
        v.clear();
        while server.wants_write() {
            server.write_tls(&mut v).unwrap();
        }
        to_client(&mut c, &v).unwrap();
        if !c.is_handshaking() && !server.wants_write() && !c.wants_write() {
            break;
        }
    }
}

fn early_data_client(pki: &Pki) -> Arc<rustls::ClientConfig> {
    let mut cfg = (*client_config(pki, None)).clone();
    cfg.enable_early_data = true;
    Arc::new(cfg)
}

#[test]
fn zero_rtt_offered_by_the_client_is_refused() {
    let pki = pki();
    let cfg = early_data_client(&pki);
    early_data_ticket(&pki, &cfg);
    let mut c = client(&cfg, "a.test");
    c.early_data()
        .expect("the client may offer 0-RTT")
        .bytes_left();
    use std::io::Write;
    c.early_data().unwrap().write_all(REQUEST).unwrap();
    let est = handshake(&server_config(&pki, 1, None), &mut c);
    assert!(!c.is_early_data_accepted());
    assert!(!est.resumed, "the other server's session is not ours");
    assert!(est.leftover.is_empty());

    // Our own tickets never invite early data.
    let mut c = client(&cfg, "a.test");
    let est = handshake(&server_config(&pki, 1, None), &mut c);
    assert!(est.resumed);
    assert!(c.early_data().is_none());
}

/// The client's early data may reach the survivor after the flight was
/// logged: it is skipped there too, and the Finished then verifies.
#[test]
fn rejected_early_data_after_the_flight_is_skipped_by_the_survivor() {
    let pki = pki();
    let cfg = early_data_client(&pki);
    early_data_ticket(&pki, &cfg);
    let mut c = client(&cfg, "a.test");
    use std::io::Write;
    c.early_data().unwrap().write_all(REQUEST).unwrap();
    let wire = from_client(&mut c);
    // Node A reads only the ClientHello record before writing its flight.
    let ch_len = 5 + u16::from_be_bytes([wire[3], wire[4]]) as usize;
    assert!(wire.len() > ch_len, "early data follows the ClientHello");
    let mut hs = ServerHandshake::new(&server_config(&pki, 1, None)).unwrap();
    assert_eq!(hs.feed(&wire[..ch_len]).unwrap(), Progress::FlightReady);
    let state = hs.flight_state().unwrap().clone();
    to_client(&mut c, &hs.take_output()).unwrap();
    assert!(!c.is_early_data_accepted());

    // Node B gets the early data, then the client's Finished.
    let mut b = layer(&state);
    let mut rest = wire[ch_len..].to_vec();
    rest.extend(from_client(&mut c));
    let got = b.open(&rest).unwrap();
    assert_eq!(got.events, vec![TlsEvent::ClientFinished]);
    assert!(got.plaintext.is_empty(), "early data is never read");
}

/// A key exchange group our server does not support, so the client's
/// first key share is useless and the server asks again (HRR).
#[derive(Debug)]
struct Unsupported;
static UNSUPPORTED: Unsupported = Unsupported;

struct Renamed(Box<dyn ActiveKeyExchange>);

impl SupportedKxGroup for Unsupported {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        Ok(Box::new(Renamed(
            rustls::crypto::ring::kx_group::X25519.start()?,
        )))
    }
    fn name(&self) -> NamedGroup {
        NamedGroup::secp521r1
    }
}

impl ActiveKeyExchange for Renamed {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        self.0.complete(peer)
    }
    fn pub_key(&self) -> &[u8] {
        self.0.pub_key()
    }
    fn group(&self) -> NamedGroup {
        NamedGroup::secp521r1
    }
}

fn hrr_client(pki: &Pki) -> Arc<rustls::ClientConfig> {
    let mut provider = client_provider();
    provider.kx_groups = vec![&UNSUPPORTED, rustls::crypto::ring::kx_group::X25519];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[test]
fn a_hello_retry_request_handshake_is_logged_and_taken_over() {
    let pki = pki();
    let cfg = hrr_client(&pki);
    let mut c = client(&cfg, "a.test");
    let mut hs = ServerHandshake::new(&server_config(&pki, 1, None)).unwrap();
    assert_eq!(hs.feed(&from_client(&mut c)).unwrap(), Progress::InProgress);
    to_client(&mut c, &hs.take_output()).unwrap(); // the HRR
    assert_eq!(
        hs.feed(&from_client(&mut c)).unwrap(),
        Progress::FlightReady
    );
    let state = hs.flight_state().unwrap().clone();
    to_client(&mut c, &hs.take_output()).unwrap();
    assert_eq!(
        c.handshake_kind(),
        Some(rustls::HandshakeKind::FullWithHelloRetryRequest)
    );
    // The survivor verifies the Finished over the HRR transcript.
    let fin = from_client(&mut c);
    let mut b = layer(&state);
    assert_eq!(b.open(&fin).unwrap().events, vec![TlsEvent::ClientFinished]);
    // And the primary path completes too.
    assert_eq!(hs.feed(&fin).unwrap(), Progress::Complete);
    assert!(!hs.into_established().unwrap().resumed);
}

/// A HelloRetryRequest is sent before any secret exists. A survivor that
/// re-runs the handshake from the logged first ClientHello makes the very
/// same HRR bytes (it has no random part), so the client's second
/// ClientHello answers it too.
#[test]
fn a_survivor_replaying_the_first_client_hello_makes_the_same_hrr() {
    let pki = pki();
    let cfg = hrr_client(&pki);
    let mut c = client(&cfg, "a.test");
    let ch1 = from_client(&mut c);
    let mut a = ServerHandshake::new(&server_config(&pki, 1, None)).unwrap();
    assert_eq!(a.feed(&ch1).unwrap(), Progress::InProgress);
    let hrr = a.take_output();
    to_client(&mut c, &hrr).unwrap();
    drop(a); // node A dies after sending its HRR
    let mut b = ServerHandshake::new(&server_config(&pki, 1, None)).unwrap();
    assert_eq!(b.feed(&ch1).unwrap(), Progress::InProgress);
    assert_eq!(b.take_output(), hrr, "the replayed HRR is byte-identical");
    assert_eq!(b.feed(&from_client(&mut c)).unwrap(), Progress::FlightReady);
    to_client(&mut c, &b.take_output()).unwrap();
    assert_eq!(b.feed(&from_client(&mut c)).unwrap(), Progress::Complete);
    assert!(!c.is_handshaking());
}
