//! A connection both nodes served at once (a split brain) is reset by the
//! survivor, not left hanging; a legitimate catch-up after a takeover is
//! not.
//!
//! After a true split brain the loser had sent the client bytes the
//! survivor never sent; once the loser dies, every client ACK is beyond
//! what the survivor has queued. smoltcp drops each such segment (RFC 9293)
//! and an owner node's shadow path holds it (waiting for its service to
//! queue that far): the survivor retransmits old data, the client
//! acknowledges its own, higher, receive point, for ever. The engine must
//! see that and reset the connection with an RST the client takes: its
//! sequence number is the client's ACK (smoltcp's own RST, at our SND.NXT,
//! would be out of the client's window and ignored).

use std::time::Duration;

use hotpair_stack::engine::{Role, DIVERGED_AFTER};
use hotpair_stack::seg::{self, ACK, RST, SYN};

mod common;
use common::{client_seg, Node, MSS, REPLY};
/// The primary's ISN as the owner's client sees it (promotion cases).
const PRIMARY_ISN: u32 = 7_000_000;
/// How far the loser's stream went beyond the survivor's: far more than
/// anything the survivor queued.
const LOSER_AHEAD: u32 = 200_000;

impl Node {
    /// The client keeps acknowledging `ack` (its receive point), every
    /// 100 ms, as it does for each retransmission of old data, for
    /// `secs` seconds; what the node sent meanwhile, with when.
    fn client_insists(&mut self, ack: u32, secs: u64) -> Vec<(Duration, seg::Seg)> {
        let start = self.now;
        let mut out = Vec::new();
        for k in 0..secs * 100 {
            if k % 10 == 0 {
                self.engine.handle_lan_frame(client_seg(ACK, ack, 65535));
            }
            let at = self.now - start;
            for s in self.run_every(1, Duration::from_millis(10)) {
                out.push((at, s));
            }
        }
        out
    }
}

/// The RST in `out`, if any, with when it left.
fn rst(out: &[(Duration, seg::Seg)]) -> Option<(Duration, seg::Seg)> {
    out.iter().find(|(_, s)| s.has(RST)).cloned()
}

/// Checks the survivor's answer to a client ahead of it: an RST at the
/// client's ACK, after `DIVERGED_AFTER` and not much later, and the
/// connection gone.
fn assert_reset(n: &Node, out: &[(Duration, seg::Seg)], client_ack: u32) {
    let Some((at, r)) = rst(out) else {
        panic!(
            "no RST: the diverged connection hangs ({} connection(s) open, {} segments sent: {:?})",
            n.engine.connections(),
            out.len(),
            out.iter()
                .map(|(_, s)| (s.seq, s.ack, s.flags))
                .collect::<Vec<_>>()
        );
    };
    assert_eq!(
        r.seq, client_ack,
        "the RST must carry the client's own ACK, or the client ignores it"
    );
    assert_eq!((r.src_port, r.dst_port), (80, 40000));
    assert!(
        at >= DIVERGED_AFTER && at <= DIVERGED_AFTER + Duration::from_millis(500),
        "reset after {at:?}, not {DIVERGED_AFTER:?}"
    );
    assert_eq!(n.engine.connections(), 0, "the connection is freed");
    assert_eq!(n.engine.stats().diverged_reset, 1);
    // After it, the client (this one insists) gets an RST for each segment
    // (smoltcp's answer to a segment of no connection: at its ACK too).
    assert!(
        out.iter()
            .filter(|(_, s)| s.has(RST))
            .all(|(_, s)| s.seq == client_ack),
        "an RST the client would ignore: {out:?}"
    );
}

/// A primary that claimed the address (its owner gone) while the client
/// holds bytes the owner sent beyond the primary's stream.
#[test]
fn a_claimed_connection_whose_client_is_ahead_is_reset() {
    let (mut n, isn) = claimed();
    let ahead = isn + 1 + REPLY as u32 + LOSER_AHEAD;
    let out = n.client_insists(ahead, 4);
    assert_reset(&n, &out, ahead);
}

/// A primary that sent the reply, the client's ACK of its first segment
/// forwarded by the owner, then claimed the address: serving alone. Its
/// ISN.
fn claimed() -> (Node, u32) {
    let mut n = Node::new(Role::Primary);
    n.engine.handle_peer_frame(client_seg(SYN, 0, 65535));
    let out = n.run(4);
    let isn = out
        .iter()
        .find(|s| s.has(SYN) && s.has(ACK))
        .expect("the primary answers the SYN")
        .seq;
    n.engine.handle_peer_frame(client_seg(ACK, isn + 1, 65535));
    n.run(4);
    n.engine
        .handle_peer_frame(client_seg(ACK, isn + 1 + MSS as u32, 65535));
    n.run(4);
    n.engine.claim();
    n.run(40);
    assert_eq!(n.engine.mode(), Role::Simplex, "the claim went through");
    (n, isn)
}

/// The owner promoted its shadow, then (the split brain) the primary
/// served the client on, further than the shadow ever queued: the
/// promoted shadow holds each client segment, waiting for bytes its
/// service will never queue.
#[test]
fn a_promoted_shadow_whose_client_is_ahead_is_reset() {
    let mut n = Node::new(Role::Owner);
    n.engine.handle_lan_frame(client_seg(SYN, 0, 65535));
    n.run(4);
    n.engine
        .handle_lan_frame(client_seg(ACK, PRIMARY_ISN + 1, 65535));
    n.run(4);
    n.engine.promote(&mut n.service, n.now);
    n.run(4);
    let ahead = PRIMARY_ISN + 1 + REPLY as u32 + LOSER_AHEAD;
    let out = n.client_insists(ahead, 4);
    assert_reset(&n, &out, ahead);
}

/// A legitimate takeover: the client acknowledges beyond what the promoted
/// shadow sent (the dead primary had sent more) but within what it
/// queued. smoltcp takes it, SND.UNA moves, the rest goes out: no reset,
/// however long the connection then stays idle.
#[test]
fn a_catch_up_after_a_promotion_is_not_reset() {
    let mut n = Node::new(Role::Owner);
    n.engine.handle_lan_frame(client_seg(SYN, 0, 65535));
    n.run(4);
    // The client's window held one segment when the shadow wrote the reply:
    // the shadow "sent" only that one into the void.
    n.engine
        .handle_lan_frame(client_seg(ACK, PRIMARY_ISN + 1, MSS as u16));
    n.run(4);
    n.engine.promote(&mut n.service, n.now);
    n.run(4);
    // The primary had sent two segments; the client took both.
    let two = PRIMARY_ISN + 1 + 2 * MSS as u32;
    n.engine.handle_lan_frame(client_seg(ACK, two, 65535));
    let out = n.run(5);
    assert!(
        out.iter().any(|s| s.payload_len > 0 && s.seq == two),
        "the promoted shadow goes on from the client's ACK: {out:?}"
    );
    let end = PRIMARY_ISN + 1 + REPLY as u32;
    let out = n.client_insists(end, 5);
    assert!(rst(&out).is_none(), "a caught-up connection was reset");
    assert_eq!(n.engine.connections(), 1);
    assert_eq!(n.engine.stats().diverged_reset, 0);
}

/// One stray ACK ahead, then the client's ACKs are in line again: a watch
/// begins and ends, nothing is reset.
#[test]
fn a_single_stray_ack_ahead_is_not_reset() {
    let (mut n, isn) = claimed();
    n.engine
        .handle_lan_frame(client_seg(ACK, isn + 1 + REPLY as u32 + LOSER_AHEAD, 65535));
    n.run(2);
    let out = n.client_insists(isn + 1 + REPLY as u32, 4);
    assert!(rst(&out).is_none(), "reset on a stray ACK");
    assert_eq!(n.engine.connections(), 1);
}

/// In a split brain the client may acknowledge to the node that is behind
/// for a while, then leave for the other (its ARP cache moved): the copy
/// it left must not reset a connection served elsewhere, however long
/// after. If the client comes back to it, still ahead, it is reset then.
#[test]
fn a_connection_the_client_left_is_not_reset_until_it_comes_back() {
    let (mut n, isn) = claimed();
    let ahead = isn + 1 + REPLY as u32 + LOSER_AHEAD;
    // Five ACKs ahead over half a second, then nothing for five seconds.
    let mut out = n.client_insists(ahead, 0);
    for _ in 0..5 {
        n.engine.handle_lan_frame(client_seg(ACK, ahead, 65535));
        out.extend(
            n.run_every(10, Duration::from_millis(10))
                .into_iter()
                .map(|s| (Duration::ZERO, s)),
        );
    }
    out.extend(
        n.run_every(500, Duration::from_millis(10))
            .into_iter()
            .map(|s| (Duration::ZERO, s)),
    );
    assert!(rst(&out).is_none(), "reset a connection the client left");
    assert_eq!(n.engine.connections(), 1);
    // It comes back, still ahead: reset at its first segment.
    n.engine.handle_lan_frame(client_seg(ACK, ahead, 65535));
    let out = n.run(2);
    let r = out
        .iter()
        .find(|s| s.has(RST))
        .expect("reset when the client came back");
    assert_eq!(r.seq, ahead);
    assert_eq!(n.engine.connections(), 0);
}
