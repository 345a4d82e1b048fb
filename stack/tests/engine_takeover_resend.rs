//! A takeover resends what the client has not acknowledged at once, even
//! from a connection whose smoltcp timer had gone idle with data in flight.
//!
//! The case, from a capture at a client (issue 17): the server had sent
//! data the client had no room for; the client said so with a zero window
//! (acknowledging earlier data), then opened its window by less than what
//! was in flight. smoltcp 0.14 then kept the data in flight with no timer
//! running and nothing it could send: the download stopped dead, and the
//! takeover after a kill did not revive it — its clock jump fires running
//! retransmission timers, not an idle one. Both the shadow promoted by the
//! owner and the primary that claims the address must resend from the
//! client's last ACK in the takeover's own round.

use hotpair_stack::engine::Role;
use hotpair_stack::seg::{self, ACK, SYN};

mod common;
use common::{client_seg, Node, MSS};
/// The primary's ISN as the owner's client sees it (promotion case).
const PRIMARY_ISN: u32 = 7_000_000;

/// Data segments of `out` starting at `seq`.
fn data_at(out: &[seg::Seg], seq: u32) -> usize {
    out.iter()
        .filter(|s| s.payload_len > 0 && s.seq == seq)
        .count()
}

/// The owner's shadow "sent" the reply into the void while the primary
/// lived; the client took the first segment, had no room for the rest
/// (a zero window), then opened its window by one segment. The primary
/// dies: the promoted shadow must resend from the client's ACK at once.
#[test]
fn a_promoted_shadow_resends_at_once_after_a_reopened_window() {
    let mut n = Node::new(Role::Owner);
    n.engine.handle_lan_frame(client_seg(SYN, 0, 65535));
    assert!(n.run(4).is_empty(), "a shadow sends nothing to the LAN");
    // The handshake's ACK (the primary's ISN + 1): the shadow is open and
    // its service writes the reply, which goes nowhere.
    n.engine
        .handle_lan_frame(client_seg(ACK, PRIMARY_ISN + 1, 65535));
    assert!(n.run(4).is_empty());
    let second = PRIMARY_ISN + 1 + MSS as u32;
    n.engine.handle_lan_frame(client_seg(ACK, second, 0));
    assert!(n.run(4).is_empty());
    n.engine
        .handle_lan_frame(client_seg(ACK, second, MSS as u16));
    assert!(n.run(4).is_empty(), "still the primary's connection");
    n.engine.promote(&mut n.service, n.now);
    let out = n.run(5);
    assert!(
        data_at(&out, second) > 0,
        "the promoted shadow did not resend from the client's ACK: {out:?}"
    );
}

/// The primary sent the reply; the client took the first segment, had no
/// room for the rest, then opened its window by one segment (both ACKs
/// forwarded by the owner). The owner dies: the primary that claims the
/// address must resend from the client's ACK when it claims, not after a
/// timer (1 s at least) — nor never, as smoltcp 0.14 left it.
#[test]
fn a_claim_resends_at_once_after_a_reopened_window() {
    let mut n = Node::new(Role::Primary);
    n.engine.handle_peer_frame(client_seg(SYN, 0, 65535));
    let out = n.run(4);
    let synack = out
        .iter()
        .find(|s| s.has(SYN) && s.has(ACK))
        .expect("the primary answers the SYN");
    let isn = synack.seq;
    n.engine.handle_peer_frame(client_seg(ACK, isn + 1, 65535));
    let out = n.run(4);
    assert_eq!(data_at(&out, isn + 1), 1, "the reply goes out: {out:?}");
    let second = isn + 1 + MSS as u32;
    n.engine.handle_peer_frame(client_seg(ACK, second, 0));
    n.run(4);
    n.engine
        .handle_peer_frame(client_seg(ACK, second, MSS as u16));
    // What it sends for the reopened window (if anything) is lost with the
    // owner, whose MAC the client still uses for the address: only what
    // the claim sends counts.
    n.run(4);
    n.engine.claim();
    // Three probes 12 ms apart, the claim one interval after the last.
    let out = n.run(40);
    assert!(
        data_at(&out, second) > 0,
        "the claim did not resend from the client's ACK: {out:?}"
    );
}
