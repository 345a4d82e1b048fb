//! Bad input never panics or hangs: random bytes and mutated real records
//! into the record layer and the handshake driver, random and mutated
//! encodings into `TlsState::decode`. Seeded, so a failure reproduces.

mod common;

use common::*;
use hotpair_tls::{RecordLayer, ServerHandshake, TlsState};

#[test]
fn garbage_into_open_is_an_error_or_nothing_never_a_panic() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    let mut client = client(&client_config(&pki, None), "a.test");
    let at = to_flight(&server, &mut client);
    let pending = at.state.clone();
    client_write(&mut client, b"GET / HTTP/1.1\r\n\r\n");
    let real = from_client(&mut client);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..3000 {
        let mut rl = RecordLayer::new(pending.clone()).unwrap();
        let input = match round % 3 {
            // Pure noise, any length.
            0 => {
                let n = rng.below(40_000);
                rng.bytes(n)
            }
            // Noise behind a plausible header.
            1 => {
                let n = rng.below(17_000);
                let mut v = vec![[20u8, 21, 22, 23][rng.below(4)], 3, 3];
                v.extend_from_slice(&(n as u16).to_be_bytes());
                v.extend(rng.bytes(n));
                v
            }
            // The client's real bytes, a few of them changed or cut.
            _ => {
                let mut v = real.clone();
                for _ in 0..1 + rng.below(3) {
                    let i = rng.below(v.len());
                    v[i] = rng.next() as u8;
                }
                v.truncate(rng.below(v.len() + 1));
                v
            }
        };
        // Fed whole or in pieces; then once more after the verdict.
        let mut failed = false;
        for chunk in input.chunks(1 + rng.below(5000)) {
            if rl.open(chunk).is_err() {
                failed = true;
                break;
            }
        }
        if failed {
            assert!(rl.open(&real).is_err(), "a failed layer stays failed");
        }
        let _ = rl.seal(b"x");
        let _ = rl.take_output();
    }
}

#[test]
fn garbage_into_the_handshake_is_an_error_never_a_panic() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    let mut client = client(&client_config(&pki, None), "a.test");
    let ch = from_client(&mut client);
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    for round in 0..400 {
        let mut hs = ServerHandshake::new(&server).unwrap();
        let input = if round % 2 == 0 {
            let n = rng.below(20_000);
            rng.bytes(n)
        } else {
            let mut v = ch.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            v
        };
        for chunk in input.chunks(1 + rng.below(3000)) {
            if hs.feed(chunk).is_err() {
                // rustls' alert is the output; the driver refuses more.
                let _ = hs.take_output();
                assert!(hs.feed(&ch).is_err());
                break;
            }
        }
    }
}

#[test]
fn garbage_into_decode_is_an_error_never_a_panic() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    let mut client = client(&client_config(&pki, None), "a.test");
    let at = to_flight(&server, &mut client);
    let good = at.state.encode();
    let mut rng = Rng(0x5eed_1234_abcd_0003);
    let mut accepted = 0;
    for round in 0..20_000 {
        let input = if round % 2 == 0 {
            let n = rng.below(200);
            rng.bytes(n)
        } else {
            let mut v = good.to_vec();
            let i = rng.below(v.len());
            v[i] = rng.next() as u8;
            v
        };
        if let Ok(s) = TlsState::decode(&input) {
            accepted += 1;
            // Whatever decodes is usable without panicking.
            let mut rl = RecordLayer::new(s).unwrap();
            let _ = rl.open(&input);
            let _ = rl.seal(b"x");
        }
    }
    // Changes inside secrets or counters still decode (only the AEAD can
    // tell); changes to the structure do not.
    assert!(accepted > 0 && accepted < 10_000, "{accepted}");
}

#[test]
fn an_oversized_record_ends_the_handshake_with_an_alert() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    for header in [[22u8, 3, 3, 0x48, 0x01], [23, 3, 3, 0xff, 0xff]] {
        let mut hs = ServerHandshake::new(&server).unwrap();
        assert!(hs.feed(&header).is_err(), "{header:?}");
        // rustls' decode_error alert, in plaintext (no keys yet).
        assert_eq!(hs.take_output(), [21, 3, 3, 0, 2, 2, 50]);
        assert!(hs.feed(&[0; 100]).is_err(), "the handshake stays failed");
        assert_eq!(hs.feed(&[]), Err(hotpair_tls::TlsError::Failed));
    }
    // 16 KiB, the most a record may hold: waits for its bytes.
    let mut hs = ServerHandshake::new(&server).unwrap();
    assert_eq!(
        hs.feed(&[22, 3, 1, 0x40, 0x00]).unwrap(),
        hotpair_tls::Progress::InProgress
    );
}
