//! The record layer against a crafted client (the secrets swapped): the
//! records and rules a real client does not exercise.

use super::*;

/// A server layer and a "client" layer sealing with the client's secret
/// (the two secrets swapped), to craft any record a client could send.
pub(super) fn pair(suite: Suite) -> (RecordLayer, RecordLayer) {
    let hl = suite.hash_len();
    let state = TlsState {
        suite,
        client_secret: Secret::from_slice(&vec![1; hl]),
        server_secret: Secret::from_slice(&vec![2; hl]),
        rx_seq: 0,
        tx_seq: 0,
        pending: None,
    };
    let mut swapped = state.clone();
    std::mem::swap(&mut swapped.client_secret, &mut swapped.server_secret);
    (
        RecordLayer::new(state).unwrap(),
        RecordLayer::new(swapped).unwrap(),
    )
}

fn rec(client: &mut RecordLayer, ct: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    client.seal_record(ct, body, &mut out).unwrap();
    out
}

/// The server's last alert, opened by the "client".
fn alert_sent(server: &mut RecordLayer, client: &mut RecordLayer) -> Option<u8> {
    let out = server.take_output();
    let mut c = RecordLayer::new(client.snapshot().unwrap()).unwrap();
    // Open with the client's view: its rx is the server's tx.
    match c.open(&out) {
        Err(TlsError::PeerAlert(d)) => Some(d.0),
        _ => None,
    }
}

#[test]
fn sealing_in_parts_makes_the_bytes_of_sealing_the_whole() {
    let body: Vec<u8> = (0..40_000u32).map(|i| (i * 7) as u8).collect();
    let whole = pair(Suite::Aes128GcmSha256).0.seal(&body).unwrap();
    // Records of 16384, 16384, 7232 bytes whatever the parts.
    assert_eq!(whole.len(), body.len() + 3 * (HEADER_LEN + 1 + TAG_LEN));
    for cuts in [
        vec![],
        vec![0, 0],
        vec![100],
        vec![MAX_FRAGMENT],
        vec![1, MAX_FRAGMENT - 1, MAX_FRAGMENT + 5, 39_999],
    ] {
        let mut parts = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain([&body.len()]) {
            parts.push(&body[at..c]);
            at = c;
        }
        let (mut s, mut c) = pair(Suite::Aes128GcmSha256);
        let sealed = s.seal_parts(&parts).unwrap();
        assert_eq!(sealed, whole, "cut at {cuts:?}");
        assert_eq!(c.open(&sealed).unwrap().plaintext, body);
        assert_eq!(s.tx_seq(), 3);
    }
    let (mut s, _) = pair(Suite::Aes128GcmSha256);
    assert!(s.seal_parts::<&[u8]>(&[]).unwrap().is_empty());
    assert!(s.seal_parts(&[&b""[..], b""]).unwrap().is_empty());
    assert_eq!(s.tx_seq(), 0);
}

#[test]
fn a_client_may_not_send_a_ticket_or_any_other_handshake_message() {
    for typ in [1u8, 2, 4, 8, 11, 13, 15, 20] {
        let (mut s, mut c) = pair(Suite::Aes128GcmSha256);
        let r = rec(&mut c, CT_HANDSHAKE, &[typ, 0, 0, 1, 0]);
        assert_eq!(
            s.open(&r),
            Err(TlsError::UnexpectedMessage("handshake message type")),
            "type {typ}"
        );
        assert_eq!(alert_sent(&mut s, &mut c), Some(10), "unexpected_message");
    }
}

#[test]
fn key_update_rules() {
    // Fragmented across two records: fine.
    let (mut s, mut c) = pair(Suite::Chacha20Poly1305Sha256);
    let mut r = rec(&mut c, CT_HANDSHAKE, &[HS_KEY_UPDATE, 0]);
    r.extend(rec(&mut c, CT_HANDSHAKE, &[0, 1, 0]));
    let o = s.open(&r).unwrap();
    assert_eq!(
        o.events,
        vec![TlsEvent::KeyUpdate {
            update_requested: false
        }]
    );
    assert!(s.take_output().is_empty(), "not requested: no answer");
    assert!(!s.update_owed());
    // Followed by more in the same record: refused (a key change ends
    // its record).
    let (mut s, mut c) = pair(Suite::Aes128GcmSha256);
    let r = rec(
        &mut c,
        CT_HANDSHAKE,
        &[HS_KEY_UPDATE, 0, 0, 1, 0, HS_KEY_UPDATE],
    );
    assert_eq!(
        s.open(&r),
        Err(TlsError::UnexpectedMessage("data after a key change"))
    );
    // A bad request value.
    let (mut s, mut c) = pair(Suite::Aes128GcmSha256);
    let r = rec(&mut c, CT_HANDSHAKE, &[HS_KEY_UPDATE, 0, 0, 1, 7]);
    assert_eq!(s.open(&r), Err(TlsError::Decode("KeyUpdate")));
    assert_eq!(alert_sent(&mut s, &mut c), Some(50));
    // Application data inside a fragmented handshake message.
    let (mut s, mut c) = pair(Suite::Aes128GcmSha256);
    let mut r = rec(&mut c, CT_HANDSHAKE, &[HS_KEY_UPDATE, 0]);
    r.extend(rec(&mut c, CT_APPDATA, b"x"));
    assert_eq!(
        s.open(&r),
        Err(TlsError::UnexpectedMessage(
            "record inside a handshake message"
        ))
    );
}

/// A request for an update is only noted: the sending key moves when
/// the caller answers, once; nothing is owed without a request, nor
/// after our close_notify. (The client's view: `tests/records.rs`.)
#[test]
fn an_answer_is_owed_until_asked_for() {
    let (mut s, mut c) = pair(Suite::Aes128GcmSha256);
    assert_eq!(s.answer_update(), Ok(false));
    let r = rec(&mut c, CT_HANDSHAKE, &[HS_KEY_UPDATE, 0, 0, 1, 1]);
    s.open(&r).unwrap();
    assert!(s.update_owed());
    assert!(s.take_output().is_empty(), "nothing sent yet");
    let old_tx = s.server_secret.clone();
    s.seal(b"reply").unwrap();
    assert_eq!(
        (s.tx_seq(), &s.server_secret),
        (1, &old_tx),
        "sealed under the old key"
    );
    assert_eq!(s.answer_update(), Ok(true));
    assert_ne!(s.server_secret, old_tx);
    assert_eq!(s.tx_seq(), 0);
    assert!(!s.take_output().is_empty());
    assert_eq!(s.answer_update(), Ok(false), "answered once");
    // A survivor's owed answer, dropped at our close.
    let (mut s, _) = pair(Suite::Aes128GcmSha256);
    s.owe_update();
    assert!(s.update_owed());
    s.close().unwrap();
    assert!(!s.update_owed());
    assert_eq!(s.answer_update(), Ok(false));
    s.owe_update();
    assert!(!s.update_owed(), "nothing is owed after our close_notify");
}

#[test]
fn malformed_records_are_refused_with_the_right_alert() {
    let cases: [(u8, &[u8], TlsError, u8); 6] = [
        (
            CT_HANDSHAKE,
            b"",
            TlsError::UnexpectedMessage("inner content type"),
            10,
        ),
        (
            CT_ALERT,
            &[2],
            TlsError::Decode("alert is not two bytes"),
            50,
        ),
        (
            CT_CCS,
            &[1],
            TlsError::UnexpectedMessage("inner content type"),
            10,
        ),
        (
            0,
            b"abc",
            TlsError::UnexpectedMessage("inner content type"),
            10,
        ),
        (
            99,
            b"abc",
            TlsError::UnexpectedMessage("inner content type"),
            10,
        ),
        (
            CT_APPDATA,
            &[0; MAX_FRAGMENT + 1],
            TlsError::RecordOverflow(MAX_FRAGMENT + 1),
            22,
        ),
    ];
    for (ct, body, err, alert) in cases {
        let (mut s, mut c) = pair(Suite::Aes256GcmSha384);
        let r = rec(&mut c, ct, body);
        assert_eq!(s.open(&r), Err(err.clone()));
        assert_eq!(alert_sent(&mut s, &mut c), Some(alert), "{err:?}");
    }
    // A plaintext CCS after the handshake.
    let (mut s, _) = pair(Suite::Aes128GcmSha256);
    assert_eq!(
        s.open(&[CT_CCS, 3, 3, 0, 1, 1]),
        Err(TlsError::UnexpectedMessage("record type"))
    );
    // A record longer than TLS allows, refused from its header alone.
    let (mut s, _) = pair(Suite::Aes128GcmSha256);
    assert_eq!(
        s.open(&[CT_APPDATA, 3, 3, 0x48, 0x01]),
        Err(TlsError::RecordOverflow(0x4801))
    );
    // All padding, no content type.
    let (mut s, c) = pair(Suite::Aes128GcmSha256);
    let header = [CT_APPDATA, 3, 3, 0, 4 + TAG_LEN as u8];
    let mut out = header.to_vec();
    out.extend_from_slice(&[0u8; 4]);
    c.tx.seal_tail(0, &header, &mut out, HEADER_LEN);
    assert_eq!(
        s.open(&out),
        Err(TlsError::UnexpectedMessage("record with no content type"))
    );
}

#[test]
fn padding_and_empty_records_are_read() {
    let (mut s, mut c) = pair(Suite::Aes128GcmSha256);
    let mut r = rec(&mut c, CT_APPDATA, b"");
    // Inner plaintext "ab" || 23 || three zeros of padding: sealed as a
    // body of "ab\x17\0\0" with a zero "type" byte appended.
    r.extend(rec(&mut c, 0, b"ab\x17\0\0"));
    let o = s.open(&r).unwrap();
    assert_eq!(o.plaintext, b"ab");
    // A fatal alert from the client: an error, and no answer to it.
    let r = rec(&mut c, CT_ALERT, &[2, 40]);
    assert_eq!(s.open(&r), Err(TlsError::PeerAlert(AlertDescription(40))));
    assert!(s.take_output().is_empty());
    assert_eq!(s.open(&[]), Err(TlsError::Failed));
}
