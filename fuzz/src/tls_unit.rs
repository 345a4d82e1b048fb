//! The node core's TLS unit payload (`hotpair_replicator::node::
//! decode_tls_unit` / `encode_tls_unit`): what the primary logs with the
//! server flight, the session tickets and its KeyUpdate answers — a `u16`
//! state length, the encoded `TlsState`, the bytes for the client. It
//! crosses the replication link, a trust boundary: the owner decodes what
//! its peer sent.
//!
//! Input: one byte choosing the mode, then
//! - raw: the payload itself. What decodes is canonical: the state
//!   re-encoded, followed by the bytes, is the payload again (so no two
//!   payloads decode to the same unit, and nothing is dropped or read
//!   twice); a unit has a state exactly when its length is not 0; a decoded
//!   state is one a record layer runs on.
//! - built: a unit made from the input's fields (suite, pending Finished or
//!   not, secrets, sequence numbers, no state at all, the bytes): it
//!   decodes back to the same state and bytes, and every payload cut short
//!   inside its length or state is refused.

use bytes::Bytes;
use hotpair_replicator::node::{decode_tls_unit, encode_tls_unit};
use hotpair_tls::{RecordLayer, TlsState};

use crate::{trace, Input};

/// The suites `TlsState` encodes, with their hash lengths.
const SUITES: [(u16, usize); 3] = [(0x1301, 32), (0x1302, 48), (0x1303, 32)];

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    if input.bool() {
        built(&mut input);
    } else {
        raw(input.rest());
    }
}

/// The payload of `state` and `bytes`, as the primary logs it.
fn payload(state: Option<&TlsState>, bytes: &[u8]) -> Vec<u8> {
    let mut p = encode_tls_unit(state).to_vec();
    p.extend_from_slice(bytes);
    p
}

fn raw(data: &[u8]) {
    let payload_in = Bytes::copy_from_slice(data);
    let r = decode_tls_unit(&payload_in);
    trace!(
        "decode {} bytes: {:?}",
        data.len(),
        r.as_ref().map(|(s, b)| (s.is_some(), b.len()))
    );
    let Ok((state, bytes)) = r else {
        return;
    };
    let n = usize::from(u16::from_be_bytes([data[0], data[1]]));
    assert_eq!(
        state.is_some(),
        n > 0,
        "a state exactly when its length is not 0"
    );
    assert_eq!(
        &bytes[..],
        &data[2 + n..],
        "the bytes are what follows the state"
    );
    assert_eq!(
        payload(state.as_ref(), &bytes),
        data,
        "a decoded unit does not encode back to its payload"
    );
    if let Some(s) = state {
        RecordLayer::new(s).expect("a decoded state runs a record layer");
    }
}

/// A state in the link's encoding from the input's fields; `None` when the
/// input asks for a unit without one (a HelloRetryRequest).
fn state_from(input: &mut Input<'_>) -> Option<TlsState> {
    if input.below(4) == 0 {
        return None;
    }
    let (suite, hl) = SUITES[input.below(SUITES.len())];
    let pending = input.bool();
    let secret = |input: &mut Input<'_>| {
        let mut s = input.take(hl).to_vec();
        s.resize(hl, 0x5c);
        s
    };
    let mut b = Vec::new();
    b.extend_from_slice(b"HPTS");
    b.push(1);
    b.extend_from_slice(&suite.to_be_bytes());
    b.push(u8::from(pending));
    for _ in 0..2 {
        b.push(hl as u8);
        b.extend(secret(input));
    }
    // Before the client's Finished no application record was read.
    let rx_seq = if pending { 0 } else { input.u64() };
    b.extend_from_slice(&rx_seq.to_be_bytes());
    b.extend_from_slice(&input.u64().to_be_bytes());
    if pending {
        for _ in 0..2 {
            b.push(hl as u8);
            b.extend(secret(input));
        }
        b.extend_from_slice(&input.u64().to_be_bytes());
        b.extend_from_slice(&(input.u32() % 16385).to_be_bytes());
    }
    Some(TlsState::decode(&b).expect("the harness builds valid states"))
}

fn built(input: &mut Input<'_>) {
    let state = state_from(input);
    let bytes = input.rest();
    let p = payload(state.as_ref(), bytes);
    let head = p.len() - bytes.len();
    trace!(
        "built: state {} bytes, {} bytes after",
        head - 2,
        bytes.len()
    );
    let (s, b) = decode_tls_unit(&Bytes::from(p.clone())).expect("an encoded unit decodes");
    assert_eq!(s, state, "decode(encode(state)) != state");
    assert_eq!(&b[..], bytes, "decode(encode(bytes)) != bytes");
    // Cut inside the length or the state: refused, never a shorter state.
    for cut in 0..head {
        assert!(
            decode_tls_unit(&Bytes::copy_from_slice(&p[..cut])).is_err(),
            "a unit cut at {cut} of its {head}-byte head decoded"
        );
    }
}

/// Seeds from real encoded units (`cargo run --example tls_unit_seeds`
/// writes them to `corpus/tls_unit/`): the flight (a pending Finished), the
/// tickets, a KeyUpdate answer (the record sealed by our record layer), a
/// HelloRetryRequest (no state), in each suite; and a built one of each
/// kind.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (suite, hl) in SUITES {
        let fields = |pending: bool, tx_seq: u64| {
            let mut b = Vec::new();
            b.extend_from_slice(b"HPTS");
            b.push(1);
            b.extend_from_slice(&suite.to_be_bytes());
            b.push(u8::from(pending));
            for fill in [0x11, 0x22] {
                b.push(hl as u8);
                b.extend(std::iter::repeat_n(fill, hl));
            }
            b.extend_from_slice(&0u64.to_be_bytes());
            b.extend_from_slice(&tx_seq.to_be_bytes());
            if pending {
                for fill in [0x33, 0x44] {
                    b.push(hl as u8);
                    b.extend(std::iter::repeat_n(fill, hl));
                }
                b.extend_from_slice(&1u64.to_be_bytes());
                b.extend_from_slice(&0u32.to_be_bytes());
            }
            TlsState::decode(&b).expect("a valid state")
        };
        // The flight: its records are the handshake's (opaque here).
        let flight = fields(true, 0);
        out.push((
            format!("flight-{suite:04x}"),
            [
                &[0u8][..],
                &payload(Some(&flight), &[22, 3, 3, 0, 4, 2, 0, 0, 0]),
            ]
            .concat(),
        ));
        // The tickets: two records sealed under the state before them.
        let mut rl = RecordLayer::new(fields(false, 0)).expect("a record layer");
        let tickets = rl.seal(&[4u8; 200]).expect("sealed");
        let after = rl.snapshot().expect("a state");
        out.push((
            format!("tickets-{suite:04x}"),
            [&[0u8][..], &payload(Some(&after), &tickets)].concat(),
        ));
        // Our KeyUpdate answer and the state after it.
        let mut rl = RecordLayer::new(fields(false, 7)).expect("a record layer");
        rl.update_tx().expect("a KeyUpdate");
        let update = rl.take_output();
        let after = rl.snapshot().expect("a state");
        out.push((
            format!("keyupdate-{suite:04x}"),
            [&[0u8][..], &payload(Some(&after), &update)].concat(),
        ));
    }
    out.push((
        "hello-retry".into(),
        [&[0u8][..], &payload(None, &[22, 3, 3, 0, 4, 2, 0, 0, 0])].concat(),
    ));
    // Built units: no state; a pending one in AES-256 (suite index 1).
    out.push(("built-none".into(), vec![1, 0, 9, 9, 9]));
    let mut b = vec![1, 1, 1, 1];
    b.extend((0..48 * 4 + 8 + 4).map(|i| i as u8));
    b.extend_from_slice(b"records");
    out.push(("built-pending".into(), b));
    out
}
