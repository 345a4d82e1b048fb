//! Our record layer against a real rustls client: a request and a reply,
//! every TLS 1.3 suite, SNI, two nodes sealing identical records, the
//! client's KeyUpdate, close_notify, tampering.

mod common;

use common::*;
use hotpair_tls::{Opened, RecordLayer, Suite, TlsError, TlsEvent, TlsState, MAX_FRAGMENT};
use rustls::crypto::ring::cipher_suite as cs;

const REQUEST: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: a.test\r\n\r\n";

fn reply(body_len: usize) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n\r\n").into_bytes();
    r.extend(pattern(body_len, 7));
    r
}

#[test]
fn a_request_and_a_reply_through_our_record_layer_in_every_suite() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    for (suite, ours) in [
        (cs::TLS13_AES_128_GCM_SHA256, Suite::Aes128GcmSha256),
        (cs::TLS13_AES_256_GCM_SHA384, Suite::Aes256GcmSha384),
        (
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            Suite::Chacha20Poly1305Sha256,
        ),
    ] {
        let mut client = client(&client_config(&pki, Some(suite)), "a.test");
        let est = handshake(&server, &mut client);
        assert_eq!(est.state.suite(), ours);
        assert_eq!(est.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(est.server_name.as_deref(), Some("a.test"));
        assert!(!est.resumed);
        // rustls sent its tickets: our tx sequence starts after them.
        assert!(est.state.tx_seq() >= 1, "{:?}", est.state);
        assert!(est.leftover.is_empty());
        let mut rl = RecordLayer::new(est.state).unwrap();

        client_write(&mut client, REQUEST);
        let got = rl.open(&from_client(&mut client)).unwrap();
        assert_eq!(got.plaintext, REQUEST);
        assert!(got.events.is_empty());

        // 40 KB: three records, cut at 16 KiB.
        let r = reply(40_000);
        let records = rl.seal(&r).unwrap();
        assert_eq!(records.len(), r.len() + 3 * (5 + 1 + 16));
        assert_eq!(to_client(&mut client, &records).unwrap(), r);
    }
}

#[test]
fn the_certificate_is_chosen_by_server_name() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    let cfg = client_config(&pki, None);
    // (name the client asks for, the certificate it must get)
    for (name, want) in [
        ("a.test", 1),
        ("B.TEST", 2),
        ("x.wild.test", 3),
        ("default.test", 0),
        ("127.0.0.1", 0), // an IP address: no SNI at all
    ] {
        let mut c = client(&cfg, name);
        let est = handshake(&server, &mut c);
        assert!(!est.resumed, "{name}");
        assert_eq!(
            c.peer_certificates().unwrap_or_else(|| panic!("{name}"))[0],
            pki.certs[want].2,
            "{name}"
        );
        let sni = if name == "127.0.0.1" {
            None
        } else {
            Some(name.to_ascii_lowercase())
        };
        assert_eq!(est.server_name, sni);
    }
    // A name no certificate is configured for gets the default one (the
    // resolver's unit test says which), which this client rightly refuses
    // for its name alone: the chain itself verified.
    let mut c = client(&cfg, "other.test");
    let mut hs = hotpair_tls::ServerHandshake::new(&server).unwrap();
    hs.feed(&from_client(&mut c)).unwrap();
    let err = to_client(&mut c, &hs.take_output()).unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{err:?}"
    );
}

/// The clone test: node A's state after the handshake, encoded and
/// decoded on node B. Both seal identical records; the client reads A's
/// first records and B's after a switch, and sees one byte-exact stream.
#[test]
fn a_cloned_state_seals_identical_records_and_the_client_accepts_the_switch() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    let mut client = client(&client_config(&pki, None), "a.test");
    let est = handshake(&server, &mut client);
    let logged = est.state.encode();
    let mut a = RecordLayer::new(est.state).unwrap();
    let mut b = RecordLayer::new(TlsState::decode(&logged).unwrap()).unwrap();

    let mut sent = Vec::new();
    let mut got = Vec::new();
    for i in 0..10usize {
        // The client's request reaches both (B is the shadow).
        let req = format!("GET /{i} HTTP/1.1\r\nHost: a.test\r\n\r\n").into_bytes();
        client_write(&mut client, &req);
        let wire = from_client(&mut client);
        let (ga, gb) = (a.open(&wire).unwrap(), b.open(&wire).unwrap());
        assert_eq!(ga.plaintext, req);
        assert_eq!(ga, gb);

        let r = reply(1000 + i * 5000);
        let (ra, rb) = (a.seal(&r).unwrap(), b.seal(&r).unwrap());
        assert_eq!(ra, rb, "reply {i}: both nodes make the same records");
        // A dies in its 6th reply, mid-record (a TCP segment boundary):
        // the client gets A's bytes up to there and B's after.
        let wire = match i {
            0..5 => ra,
            5 => {
                let cut = ra.len() / 2 + 3;
                [&ra[..cut], &rb[cut..]].concat()
            }
            _ => rb,
        };
        got.extend(to_client(&mut client, &wire).unwrap());
        sent.extend_from_slice(&r);
    }
    assert_eq!(got, sent);
    assert_eq!(a.snapshot().unwrap(), b.snapshot().unwrap());
}

#[test]
fn record_boundaries_do_not_depend_on_how_the_input_is_split() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    let mut client = client(&client_config(&pki, None), "a.test");
    let est = handshake(&server, &mut client);
    let mut a = layer(&est.state);
    let mut b = layer(&est.state);
    let r = reply(3 * MAX_FRAGMENT + 17);
    // Sealed whole on A; on B as the same whole (the unit is what both
    // nodes agree on) — and the records are exactly MAX_FRAGMENT long.
    let ra = a.seal(&r).unwrap();
    let rb = b.seal(&r).unwrap();
    assert_eq!(ra, rb);
    let mut lens = Vec::new();
    let mut rest = &ra[..];
    while !rest.is_empty() {
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        lens.push(len - 17);
        rest = &rest[5 + len..];
    }
    assert_eq!(
        lens,
        [
            MAX_FRAGMENT,
            MAX_FRAGMENT,
            MAX_FRAGMENT,
            r.len() - 3 * MAX_FRAGMENT
        ]
    );
    assert!(a.seal(b"").unwrap().is_empty());
    assert_eq!(to_client(&mut client, &ra).unwrap(), r);
}

#[test]
fn the_client_records_may_arrive_split_anywhere() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    let mut client = client(&client_config(&pki, None), "a.test");
    let est = handshake(&server, &mut client);
    client_write(&mut client, &pattern(20_000, 3));
    client_write(&mut client, REQUEST);
    let wire = from_client(&mut client);
    let mut want = pattern(20_000, 3);
    want.extend_from_slice(REQUEST);
    for step in [1, 2, 5, 4096, 16_389, wire.len()] {
        let mut rl = layer(&est.state);
        let mut got = Vec::new();
        for chunk in wire.chunks(step) {
            got.extend(rl.open(chunk).unwrap().plaintext);
        }
        assert_eq!(got, want, "step {step}");
        rl.snapshot().unwrap();
    }
    // Mid-record, no state can be handed over.
    let mut rl = layer(&est.state);
    rl.open(&wire[..10]).unwrap();
    assert_eq!(rl.snapshot(), Err(TlsError::MidRecord));
}

#[test]
fn a_client_key_update_is_followed_by_both_nodes() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    let mut client = client(&client_config(&pki, None), "a.test");
    let est = handshake(&server, &mut client);
    let mut a = layer(&est.state);
    let mut b = layer(&TlsState::decode(&est.state.encode()).unwrap());

    client_write(&mut client, b"before");
    let wire = from_client(&mut client);
    assert_eq!(a.open(&wire).unwrap().plaintext, b"before");
    b.open(&wire).unwrap();

    client.refresh_traffic_keys().unwrap();
    client_write(&mut client, b"after");
    let wire = from_client(&mut client);
    let (ga, gb) = (a.open(&wire).unwrap(), b.open(&wire).unwrap());
    assert_eq!(
        ga,
        Opened {
            plaintext: b"after".to_vec(),
            events: vec![TlsEvent::KeyUpdate {
                update_requested: true
            }],
        }
    );
    assert_eq!(ga, gb);
    // Owed, not sent: the caller places it.
    assert!(a.take_output().is_empty());
    assert!(a.update_owed() && b.update_owed());
    assert_eq!(a.answer_update(), Ok(true));
    assert_eq!(b.answer_update(), Ok(true));
    assert!(!a.update_owed());
    assert_eq!(a.answer_update(), Ok(false), "answered once");
    // Our answering KeyUpdate, identical on both, then data under the
    // new keys.
    let (ka, kb) = (a.take_output(), b.take_output());
    assert_eq!(ka, kb);
    assert!(!ka.is_empty());
    assert_eq!(a.tx_seq(), 0);
    let (ra, rb) = (a.seal(b"reply").unwrap(), b.seal(b"reply").unwrap());
    assert_eq!(ra, rb);
    to_client(&mut client, &ka).unwrap();
    assert_eq!(to_client(&mut client, &rb).unwrap(), b"reply");

    // The client keeps talking under its new keys, and updates again.
    client.refresh_traffic_keys().unwrap();
    client_write(&mut client, b"third");
    let wire = from_client(&mut client);
    assert_eq!(a.open(&wire).unwrap().plaintext, b"third");
    assert_eq!(a.answer_update(), Ok(true));
    to_client(&mut client, &a.take_output()).unwrap();
    assert_eq!(
        to_client(&mut client, &a.seal(b"ok").unwrap()).unwrap(),
        b"ok"
    );
}

/// The client sends a request and, in the same flight, a KeyUpdate asking
/// us to update: our reply to that request is sealed under the old key
/// (the owner node may have sealed its copy already), our KeyUpdate after
/// it, later replies under the new key — and rustls reads it all. Two
/// more requests for an update before our answer get one answer.
#[test]
fn an_answer_held_back_until_the_replies_before_it_are_sealed() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    let mut client = client(&client_config(&pki, None), "a.test");
    let est = handshake(&server, &mut client);
    let mut a = layer(&est.state);
    let tx0 = a.tx_seq();

    client_write(&mut client, REQUEST);
    client.refresh_traffic_keys().unwrap();
    client_write(&mut client, b"second");
    let wire = from_client(&mut client);
    let got = a.open(&wire).unwrap();
    assert_eq!(got.plaintext, [REQUEST, b"second"].concat());
    assert!(a.update_owed());
    assert!(a.take_output().is_empty(), "nothing sent yet");
    assert_eq!(a.tx_seq(), tx0, "the sending key has not moved");
    // Node B (the owner) from the same state: the same records, the
    // answer at the same place.
    let mut b = layer(&TlsState::decode(&est.state.encode()).unwrap());
    b.open(&wire).unwrap();

    let first = a.seal(&reply(100)).unwrap();
    assert_eq!(b.seal(&reply(100)).unwrap(), first, "the old key on both");
    assert_eq!(a.answer_update(), Ok(true));
    assert_eq!(b.answer_update(), Ok(true));
    let (ka, kb) = (a.take_output(), b.take_output());
    assert_eq!(ka, kb);
    assert_eq!(a.tx_seq(), 0, "the new key");
    let second = a.seal(&reply(200)).unwrap();
    assert_eq!(b.seal(&reply(200)).unwrap(), second);
    assert_eq!(to_client(&mut client, &first).unwrap(), reply(100));
    to_client(&mut client, &ka).unwrap();
    assert_eq!(to_client(&mut client, &second).unwrap(), reply(200));

    // Two requests for an update, then one answer: the client reads on.
    client.refresh_traffic_keys().unwrap();
    client_write(&mut client, b"third");
    client.refresh_traffic_keys().unwrap();
    let got = a.open(&from_client(&mut client)).unwrap();
    assert_eq!(got.plaintext, b"third");
    assert_eq!(got.events.len(), 2);
    let third = a.seal(b"reply to third").unwrap();
    assert_eq!(a.answer_update(), Ok(true));
    assert_eq!(a.answer_update(), Ok(false), "one answer for both");
    let answer = a.take_output();
    let fourth = a.seal(b"later").unwrap();
    assert_eq!(to_client(&mut client, &third).unwrap(), b"reply to third");
    to_client(&mut client, &answer).unwrap();
    assert_eq!(to_client(&mut client, &fourth).unwrap(), b"later");
    // And on, both ways, under the newest keys.
    client_write(&mut client, b"more");
    assert_eq!(
        a.open(&from_client(&mut client)).unwrap().plaintext,
        b"more"
    );
    assert_eq!(
        to_client(&mut client, &a.seal(b"ok").unwrap()).unwrap(),
        b"ok"
    );
}

/// An answer still owed when we close is dropped: nothing is sealed after
/// our close_notify.
#[test]
fn an_owed_answer_is_dropped_at_our_close() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    let mut client = client(&client_config(&pki, None), "a.test");
    let est = handshake(&server, &mut client);
    let mut rl = layer(&est.state);
    client_write(&mut client, REQUEST);
    client.refresh_traffic_keys().unwrap();
    rl.open(&from_client(&mut client)).unwrap();
    assert!(rl.update_owed());
    let mut last = rl.seal(&reply(10)).unwrap();
    rl.close().unwrap();
    last.extend(rl.take_output());
    assert!(!rl.update_owed());
    assert_eq!(rl.answer_update(), Ok(false));
    assert!(rl.take_output().is_empty());
    assert_eq!(to_client(&mut client, &last).unwrap(), reply(10));
}

#[test]
fn close_notify_both_ways() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    let mut client = client(&client_config(&pki, None), "a.test");
    let est = handshake(&server, &mut client);
    let mut rl = layer(&est.state);
    client_write(&mut client, b"last words");
    client.send_close_notify();
    let got = rl.open(&from_client(&mut client)).unwrap();
    assert_eq!(got.plaintext, b"last words");
    assert_eq!(got.events, vec![TlsEvent::CloseNotify]);
    // Anything after the client's close_notify is ignored (RFC 8446 §6.1).
    assert_eq!(
        rl.open(b"\x17\x03\x03\x00\x01x").unwrap(),
        Opened::default()
    );
    // We may still answer, then close our side.
    assert_eq!(
        to_client(&mut client, &rl.seal(b"bye").unwrap()).unwrap(),
        b"bye"
    );
    rl.close().unwrap();
    to_client(&mut client, &rl.take_output()).unwrap();
    assert!(client.process_new_packets().unwrap().peer_has_closed());
    assert_eq!(rl.seal(b"more"), Err(TlsError::Closed));
}

#[test]
fn a_tampered_record_is_an_error_and_an_alert_never_a_panic() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    let mut client = client(&client_config(&pki, None), "a.test");
    let est = handshake(&server, &mut client);
    client_write(&mut client, REQUEST);
    let wire = from_client(&mut client);
    for i in 0..wire.len() {
        let mut bad = wire.clone();
        bad[i] ^= 0x01;
        let mut rl = layer(&est.state);
        if u16::from_be_bytes([bad[3], bad[4]]) > u16::from_be_bytes([wire[3], wire[4]]) {
            // A longer length: the record is not whole yet, so no verdict.
            assert_eq!(rl.open(&bad).unwrap(), Opened::default());
            assert!(rl.take_output().is_empty());
            continue;
        }
        let err = rl.open(&bad).unwrap_err();
        let alert = rl.take_output();
        match i {
            0 => assert_eq!(err, TlsError::UnexpectedMessage("record type")),
            1 | 2 => assert_eq!(err, TlsError::Decode("record version is not 0x0303")),
            // A shorter length fails the AEAD like any other change.
            _ => assert_eq!(err, TlsError::BadRecordMac, "byte {i}"),
        }
        assert!(!alert.is_empty(), "byte {i}: an alert is queued");
        assert_eq!(rl.open(&wire), Err(TlsError::Failed));
        assert_eq!(rl.seal(b"x"), Err(TlsError::Failed));
    }
    // The client reads our alert as what it is.
    let mut bad = wire.clone();
    bad[10] ^= 0x80;
    let mut rl = layer(&est.state);
    assert_eq!(rl.open(&bad), Err(TlsError::BadRecordMac));
    let err = to_client(&mut client, &rl.take_output()).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::AlertReceived(rustls::AlertDescription::BadRecordMac)
    );
}
