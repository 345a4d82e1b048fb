//! The replication link's message codec: `Msg::decode`, `Msg::encode` and
//! the incremental `Decoder`.
//!
//! Input: one byte choosing how the stream is cut into reads, then the
//! stream itself. Checked on every input:
//! 1. `Msg::decode` of the whole stream: a message decodes only from its
//!    canonical encoding (`encode` gives back exactly the same bytes).
//! 2. The `Decoder`, fed the stream in pieces, agrees message by message
//!    (and error by error) with `Msg::decode` on each length-prefixed
//!    frame, holds exactly the unfinished tail, and stays poisoned after
//!    an error.
//! 3. A message built from the same bytes: if it encodes, it decodes back
//!    to itself, through `Msg::decode` and through the `Decoder`.

use bytes::Bytes;
use hotpair_replicator::wire::{Decoder, Msg, RouteDigest, WireError, HEADER_LEN, MAX_MSG_LEN};
use hotpair_replicator::{ConnKey, Role, UnitKind};
use hotpair_stack::smoltcp::wire::Ipv4Address;

use crate::Input;

pub fn run(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    whole(stream);
    streamed(cut, stream);
    built(stream);
}

/// Encoding of a decoded message.
fn reencode(channel: u32, msg: &Msg) -> Vec<u8> {
    let mut out = Vec::new();
    msg.encode(channel, &mut out)
        .expect("a decoded message must encode");
    assert_eq!(out.len(), msg.encoded_len(), "encoded_len of {msg:?}");
    out
}

fn whole(stream: &[u8]) {
    if let Ok((channel, msg)) = Msg::decode(Bytes::copy_from_slice(stream)) {
        assert_eq!(
            reencode(channel, &msg),
            stream,
            "decode→encode is not the identity for {msg:?}"
        );
    }
}

/// What the stream holds at `pos`, by the length prefix alone.
enum Next {
    /// Fewer bytes than a whole message: the decoder must wait.
    Partial,
    /// The prefix itself is bad: the decoder fails at once.
    BadPrefix(WireError),
    /// A whole frame (prefix included).
    Frame(usize),
}

fn next_frame(rest: &[u8]) -> Next {
    if rest.len() < HEADER_LEN {
        return Next::Partial;
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if !(6..=MAX_MSG_LEN).contains(&len) {
        // Msg::decode checks the prefix first, whatever follows.
        let Err(e) = Msg::decode(Bytes::copy_from_slice(rest)) else {
            panic!("Msg::decode accepted a bad length prefix {len}");
        };
        return Next::BadPrefix(e);
    }
    if rest.len() < HEADER_LEN + len {
        Next::Partial
    } else {
        Next::Frame(HEADER_LEN + len)
    }
}

fn streamed(cut: u8, stream: &[u8]) {
    // Read sizes: a repeating pattern from the cut byte (1..=16 bytes, or
    // everything at once).
    let sizes: Vec<usize> = if cut == 0 {
        vec![stream.len().max(1)]
    } else {
        (0..4)
            .map(|i| usize::from((cut >> (2 * i)) & 3) * 5 + 1)
            .collect()
    };
    let mut dec = Decoder::new();
    let mut fed = 0;
    let mut pos = 0; // start of the next message in `stream`
    let mut failed: Option<WireError> = None;
    let mut i = 0;
    while fed < stream.len() {
        let n = sizes[i % sizes.len()].min(stream.len() - fed);
        i += 1;
        assert!(n <= dec.room(), "room must cover small reads");
        dec.feed(&stream[fed..fed + n]);
        fed += n;
        loop {
            let got = dec.next();
            if let Some(e) = &failed {
                assert_eq!(got.as_ref(), Err(e), "a failed decoder must stay failed");
                break;
            }
            let avail = &stream[pos..fed];
            match next_frame(avail) {
                Next::Partial => {
                    assert_eq!(got, Ok(None), "decoder must wait for a whole message");
                    assert_eq!(dec.buffered(), avail.len(), "decoder holds the tail");
                    break;
                }
                Next::BadPrefix(e) => {
                    assert_eq!(got, Err(e.clone()), "bad prefix at offset {pos}");
                    failed = Some(e);
                }
                Next::Frame(len) => {
                    let frame = &stream[pos..pos + len];
                    let want = Msg::decode(Bytes::copy_from_slice(frame));
                    match (&got, &want) {
                        (Ok(Some(g)), Ok(w)) => {
                            assert_eq!(g, w, "decoder and Msg::decode disagree");
                            assert_eq!(reencode(g.0, &g.1), frame, "re-encoding differs");
                            pos += len;
                        }
                        (Err(g), Err(w)) => {
                            assert_eq!(g, w, "decoder and Msg::decode fail differently");
                            failed = Some(g.clone());
                        }
                        _ => panic!("decoder {got:?}, Msg::decode {want:?} at offset {pos}"),
                    }
                }
            }
        }
    }
    if failed.is_some() {
        assert_eq!(dec.buffered(), 0, "a failed decoder holds nothing");
    }
}

/// A message from fuzz bytes (names, payloads and frames from the input).
pub fn arbitrary_msg(inp: &mut Input<'_>) -> Msg {
    let conn = |inp: &mut Input<'_>| ConnKey {
        client_ip: Ipv4Address::from_octets(inp.u32().to_be_bytes()),
        client_port: inp.u16(),
        client_isn: inp.u32(),
    };
    match inp.below(9) {
        7 => Msg::Leaving,
        8 => Msg::Lan { up: inp.bool() },
        0 => {
            let name = inp.bytes(80);
            Msg::Hello {
                version: inp.u8(),
                node: String::from_utf8_lossy(name).into_owned(),
                role: [Role::Simplex, Role::Primary, Role::Owner][inp.below(3)],
                epoch: inp.u64(),
                mac: [inp.u8(), 0, 0, 0, 0, 1],
            }
        }
        1 => Msg::Heartbeat { seq: inp.u64() },
        2 => Msg::Frame {
            frame: Bytes::copy_from_slice(inp.bytes(200)),
        },
        3 => Msg::Unit(hotpair_replicator::wire::Unit {
            conn: conn(inp),
            seq: inp.u64(),
            index: inp.u64(),
            kind: if inp.bool() {
                UnitKind::Final
            } else {
                UnitKind::Interim
            },
            input_end: inp.u64(),
            close_after: inp.bool(),
            local: inp.below(4) == 0,
            payload: Bytes::copy_from_slice(inp.bytes(200)),
        }),
        4 => Msg::UnitAck {
            conn: conn(inp),
            seq: inp.u64(),
        },
        5 => Msg::ConnGone { conn: conn(inp) },
        _ => Msg::Routes {
            routes: (0..inp.below(4))
                .map(|_| {
                    let prefix = String::from_utf8_lossy(inp.bytes(24)).into_owned();
                    let mut digest = [0u8; 32];
                    digest.copy_from_slice(&[inp.take(32), &[0u8; 32]].concat()[..32]);
                    RouteDigest {
                        prefix,
                        policy: inp.below(4) as u8,
                        digest,
                    }
                })
                .collect(),
        },
    }
}

fn built(data: &[u8]) {
    let mut inp = Input::new(data);
    let channel = inp.u32();
    let msg = arbitrary_msg(&mut inp);
    let mut out = Vec::new();
    match msg.encode(channel, &mut out) {
        Err(_) => {
            assert!(out.is_empty(), "a failed encode writes nothing");
            return;
        }
        Ok(()) => assert_eq!(out.len(), msg.encoded_len()),
    }
    let back = Msg::decode(Bytes::copy_from_slice(&out));
    assert_eq!(back, Ok((channel, msg.clone())), "encode→decode");
    let mut dec = Decoder::new();
    dec.feed(&out);
    assert_eq!(dec.next(), Ok(Some((channel, msg))));
    assert_eq!(dec.next(), Ok(None));
}
