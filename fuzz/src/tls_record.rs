//! `hotpair_tls`: the replicated state's decoder (`TlsState::decode`, the
//! link is a trust boundary) and our record layer's reader
//! (`RecordLayer::open`, the client is one) — any bytes, any split.
//!
//! Invariants: a decoded state encodes back to a state that decodes to
//! itself; `open` never panics, and once it has failed it refuses every
//! later call; records this layer seals open back to the same plaintext
//! under the same keys (the state below uses one secret for both
//! directions, so a layer opens what another sealed), and a sealed record
//! with any one byte changed never opens to other plaintext.

use hotpair_tls::{RecordLayer, TlsState};

use crate::{trace, Input};

/// A state in the link's encoding: AES-128-GCM, the same secret both
/// ways, sequence numbers 0; `pending` adds what verifying a client's
/// Finished needs.
fn state(pending: bool) -> TlsState {
    let mut b = Vec::new();
    b.extend_from_slice(b"HPTS");
    b.push(1);
    b.extend_from_slice(&0x1301u16.to_be_bytes());
    b.push(u8::from(pending));
    for _ in 0..2 {
        b.push(32);
        b.extend_from_slice(&[0x42; 32]);
    }
    b.extend_from_slice(&0u64.to_be_bytes());
    b.extend_from_slice(&0u64.to_be_bytes());
    if pending {
        b.push(32);
        b.extend_from_slice(&[0x17; 32]);
        b.push(32);
        b.extend_from_slice(&[0x99; 32]);
        b.extend_from_slice(&0u64.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
    }
    TlsState::decode(&b).expect("the harness's state is valid")
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    match input.u8() % 3 {
        0 => decode(input.rest()),
        1 => open_raw(&mut input),
        _ => sealed_then_mutated(&mut input),
    }
}

fn decode(bytes: &[u8]) {
    let Ok(s) = TlsState::decode(bytes) else {
        return;
    };
    let enc = s.encode();
    let again = TlsState::decode(&enc).expect("an encoded state decodes");
    assert_eq!(again, s, "decode(encode(s)) != s");
    // A decoded state is one a record layer can run.
    let _ = RecordLayer::new(s);
}

fn open_raw(input: &mut Input<'_>) {
    let pending = input.bool();
    let mut rl = RecordLayer::new(state(pending)).expect("a record layer");
    let mut failed = false;
    while !input.is_empty() {
        let n = usize::from(input.u16() % 700);
        let chunk = input.take(n);
        let r = rl.open(chunk);
        trace!(
            "open {} bytes: {:?}",
            chunk.len(),
            r.as_ref().map(|o| o.plaintext.len())
        );
        match r {
            Ok(_) => assert!(!failed, "open succeeded after a failure"),
            Err(_) => failed = true,
        }
        let _ = rl.take_output();
        if input.bool() {
            let _ = rl.snapshot();
        }
    }
}

fn sealed_then_mutated(input: &mut Input<'_>) {
    let len = usize::from(input.u16() % 40_000);
    let plain: Vec<u8> = (0..len).map(|i| (i as u8) ^ input.u8()).collect();
    let mut tx = RecordLayer::new(state(false)).expect("a record layer");
    let sealed = tx.seal(&plain).expect("sealing");
    // Opened whole and in two pieces: the same plaintext.
    let mut rx = RecordLayer::new(state(false)).expect("a record layer");
    let cut = usize::from(input.u16()).min(sealed.len());
    let mut got = rx
        .open(&sealed[..cut])
        .expect("a prefix of valid records")
        .plaintext;
    got.extend(rx.open(&sealed[cut..]).expect("the rest").plaintext);
    assert_eq!(got, plain, "sealed records did not open to their plaintext");
    if sealed.is_empty() {
        return;
    }
    // One byte changed: never other plaintext.
    let at = usize::from(input.u16()) % sealed.len();
    let flip = input.u8() | 1;
    let mut bad = sealed.clone();
    bad[at] ^= flip;
    let mut rx = RecordLayer::new(state(false)).expect("a record layer");
    if let Ok(o) = rx.open(&bad) {
        assert!(
            plain.starts_with(&o.plaintext),
            "a changed record opened to other plaintext"
        );
    }
}
