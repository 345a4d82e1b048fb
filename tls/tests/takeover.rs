//! A connection taken over between the server flight and the client's
//! Finished: the survivor has only the logged state (and the flight, which
//! the client has), verifies the client's Finished itself and goes on.

mod common;

use common::*;
use hotpair_tls::{RecordLayer, TlsError, TlsEvent, TlsState};
use rustls::crypto::ring::cipher_suite as cs;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";

#[test]
fn the_survivor_verifies_the_client_finished_and_serves_in_every_suite() {
    let pki = pki();
    let node_a = server_config(&pki, 1, None);
    for suite in [
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let mut client = client(&client_config(&pki, Some(suite)), "a.test");
        // Node A runs the handshake up to its flight and logs it; the
        // client gets the flight; A dies.
        let at = to_flight(&node_a, &mut client);
        let logged = at.state.encode();
        drop(at);

        // Node B: the client's Finished (after a compatibility CCS, as
        // rustls sends it) and its first request arrive together.
        client_write(&mut client, REQUEST);
        let wire = from_client(&mut client);
        assert_eq!(&wire[..6], b"\x14\x03\x03\x00\x01\x01", "a CCS first");
        let mut b = RecordLayer::new(TlsState::decode(&logged).unwrap()).unwrap();
        assert!(b.awaiting_client_finished());
        let got = b.open(&wire).unwrap();
        assert_eq!(got.events, vec![TlsEvent::ClientFinished]);
        assert_eq!(got.plaintext, REQUEST);
        assert!(!b.awaiting_client_finished());
        // No tickets from B: its records start at sequence 0.
        assert_eq!(b.tx_seq(), 0);
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(
            to_client(&mut client, &b.seal(reply).unwrap()).unwrap(),
            reply
        );
    }
}

#[test]
fn the_finished_may_arrive_byte_by_byte() {
    let pki = pki();
    let mut client = client(&client_config(&pki, None), "a.test");
    let at = to_flight(&server_config(&pki, 1, None), &mut client);
    client_write(&mut client, REQUEST);
    let wire = from_client(&mut client);
    let mut b = layer(&at.state);
    let mut plain = Vec::new();
    let mut events = Vec::new();
    for byte in &wire {
        let o = b.open(std::slice::from_ref(byte)).unwrap();
        plain.extend(o.plaintext);
        events.extend(o.events);
    }
    assert_eq!(events, vec![TlsEvent::ClientFinished]);
    assert_eq!(plain, REQUEST);
}

#[test]
fn a_state_that_does_not_match_the_handshake_rejects_the_finished() {
    let pki = pki();
    let mut client = client(&client_config(&pki, None), "a.test");
    let at = to_flight(&server_config(&pki, 1, None), &mut client);
    let wire = from_client(&mut client);

    // The logged transcript hash altered: the Finished decrypts (same
    // keys) but does not verify.
    let mut enc = at.state.encode();
    let hl = at.state.suite().hash_len();
    // The transcript hash sits just before hs_rx_seq (8) and the skip (4).
    let at_hash = enc.len() - 12 - hl;
    enc[at_hash] ^= 1;
    let mut b = RecordLayer::new(TlsState::decode(&enc).unwrap()).unwrap();
    assert_eq!(b.open(&wire), Err(TlsError::BadFinished));
    // The decrypt_error alert reaches the client.
    let err = to_client(&mut client, &b.take_output()).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::AlertReceived(rustls::AlertDescription::DecryptError)
    );
    assert_eq!(b.seal(b"x"), Err(TlsError::Failed));

    // Another connection's state cannot even open this client's records.
    let mut other_client = client_conn(&pki);
    let other = to_flight(&server_config(&pki, 1, None), &mut other_client);
    assert_eq!(layer(&other.state).open(&wire), Err(TlsError::BadRecordMac));
}

fn client_conn(pki: &Pki) -> rustls::ClientConnection {
    client(&client_config(pki, None), "a.test")
}

#[test]
fn application_data_before_the_finished_is_refused() {
    let pki = pki();
    let mut client = client_conn(&pki);
    let at = to_flight(&server_config(&pki, 1, None), &mut client);
    let wire = from_client(&mut client);
    // Drop the client's Finished record: what follows is its application
    // data, under keys that only the Finished unlocks.
    let mut b = layer(&at.state);
    client_write(&mut client, REQUEST);
    let data = from_client(&mut client);
    assert!(b.open(&data).is_err());
    // With the Finished first, the same bytes are fine.
    let mut b = layer(&at.state);
    let mut all = wire.clone();
    all.extend_from_slice(&data);
    assert_eq!(b.open(&all).unwrap().plaintext, REQUEST);
}

/// The primary path and the takeover path end in the same state: a
/// survivor holding the flight state and a node that ran rustls to the end
/// open the same records and, but for the tickets, seal the same ones.
#[test]
fn the_takeover_state_agrees_with_the_state_rustls_reached() {
    let pki = pki();
    let mut client = client_conn(&pki);
    let mut at = to_flight(&server_config(&pki, 1, None), &mut client);
    let flight_state = at.state.clone();
    let fin = from_client(&mut client);
    assert_eq!(at.hs.feed(&fin).unwrap(), hotpair_tls::Progress::Complete);
    let tickets = at.hs.take_output();
    to_client(&mut client, &tickets).unwrap();
    let est = at.hs.into_established().unwrap();

    let mut shadow = layer(&flight_state);
    assert_eq!(
        shadow.open(&fin).unwrap().events,
        vec![TlsEvent::ClientFinished]
    );
    let mut live = layer(&est.state);
    client_write(&mut client, REQUEST);
    let wire = from_client(&mut client);
    assert_eq!(live.open(&wire).unwrap(), shadow.open(&wire).unwrap());
    let s = shadow.snapshot().unwrap();
    let l = live.snapshot().unwrap();
    assert_eq!(s.rx_seq(), l.rx_seq());
    assert_eq!(s.tx_seq(), 0);
    assert_eq!(l.tx_seq(), est.state.tx_seq());
}

/// Before the flight is logged the client has seen nothing of it: the
/// survivor runs a fresh handshake from the logged ClientHello.
#[test]
fn before_the_flight_is_logged_the_survivor_handshakes_afresh() {
    let pki = pki();
    let mut client = client_conn(&pki);
    let ch = from_client(&mut client);
    // Node A made its flight, and died before logging it: never sent.
    let mut a = hotpair_tls::ServerHandshake::new(&server_config(&pki, 1, None)).unwrap();
    assert_eq!(a.feed(&ch).unwrap(), hotpair_tls::Progress::FlightReady);
    drop(a);
    // Node B, from the logged ClientHello.
    let mut b = hotpair_tls::ServerHandshake::new(&server_config(&pki, 1, None)).unwrap();
    assert_eq!(b.feed(&ch).unwrap(), hotpair_tls::Progress::FlightReady);
    to_client(&mut client, &b.take_output()).unwrap();
    client_write(&mut client, REQUEST);
    assert_eq!(
        b.feed(&from_client(&mut client)).unwrap(),
        hotpair_tls::Progress::Complete
    );
    to_client(&mut client, &b.take_output()).unwrap();
    let est = b.into_established().unwrap();
    // The request came with the Finished: it is the record layer's.
    let mut rl = layer(&est.state);
    assert_eq!(rl.open(&est.leftover).unwrap().plaintext, REQUEST);
    assert_eq!(
        to_client(&mut client, &rl.seal(b"ok").unwrap()).unwrap(),
        b"ok"
    );
}
