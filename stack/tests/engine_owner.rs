//! The engine's takeover-related rules, on crafted client segments. The
//! owner node's forwarding rule: a segment goes to the primary only once
//! the shadow holds it — acknowledged, or (without a FIN) reported in a SACK
//! block — and a FIN only once the shadow has taken it. At promotion, an
//! ACK to the client at once. The primary's claim: probes, then repeated
//! announcements.

use std::time::{Duration, Instant};

use hotpair_stack::engine::{Engine, Frame, Role};
use hotpair_stack::seg::{self, ACK, FIN, SYN};
use hotpair_stack::{Admission, StackConfig};
use smoltcp::wire::{EthernetAddress, Ipv4Address};

mod common;
use common::{quiet, Plain};

const NODE_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 10]);
const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const VIP: Ipv4Address = Ipv4Address::new(10, 0, 0, 10);
const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const CLIENT_ISN: u32 = 1000;
/// The primary's ISN, as the client's ACKs reveal it.
const PRIMARY_ISN: u32 = 7_000_000;

/// A client segment with TCP options and payload, valid IPv4 checksum.
fn client_seg(seq: u32, flags: u8, options: &[u8], payload: &[u8]) -> Frame {
    let ack = if flags & ACK != 0 { PRIMARY_ISN + 1 } else { 0 };
    let f = seg::build(
        CLIENT_MAC, NODE_MAC, CLIENT, VIP, 40000, 80, seq, ack, flags, 65535,
    );
    common::finish(f, options, payload)
}

struct Owner {
    engine: Engine<()>,
    service: Plain,
    now: Instant,
}

impl Owner {
    fn new() -> Self {
        Self::with_mode(Role::Owner)
    }

    fn with_mode(mode: Role) -> Self {
        let now = Instant::now();
        let cfg = StackConfig {
            admission: Admission {
                max_half_open: 8,
                max_per_source: 64,
                ..common::admission(64)
            },
            seed: 7,
            ..common::config(64, 65536, 65536)
        };
        Owner {
            engine: Engine::new(cfg, mode, now),
            service: quiet(),
            now,
        }
    }

    /// Give the engine a client frame, run it, and return the sequence
    /// numbers of the frames it forwarded to the primary.
    fn client(&mut self, f: Frame) -> Vec<(u32, bool)> {
        self.engine.handle_lan_frame(f);
        for _ in 0..4 {
            self.engine.poll(&mut self.service, self.now);
            self.now += Duration::from_millis(1);
        }
        let mut out = Vec::new();
        while let Some(f) = self.engine.poll_forward() {
            let s = seg::parse(f.data()).expect("a TCP frame");
            out.push((s.seq, s.has(FIN)));
        }
        // Nothing the shadow emits reaches the LAN while the primary lives.
        while let Some(f) = self.engine.poll_lan_transmit() {
            assert!(seg::parse(f.data()).is_none(), "a shadow segment leaked");
        }
        out
    }

    /// Handshake with SACK permitted; returns the next client sequence number.
    fn open(&mut self) -> u32 {
        // MSS 1460, SACK permitted, padded.
        let syn_opts = [2, 4, 0x05, 0xb4, 4, 2, 1, 1];
        assert_eq!(
            self.client(client_seg(CLIENT_ISN, SYN, &syn_opts, b"")),
            vec![(CLIENT_ISN, false)],
            "the SYN goes on once the shadow answered it"
        );
        assert_eq!(
            self.client(client_seg(CLIENT_ISN + 1, ACK, &[], b"")),
            vec![(CLIENT_ISN + 1, false)],
            "a pure ACK always goes on"
        );
        CLIENT_ISN + 1
    }
}

#[test]
fn in_order_data_is_forwarded_once_acknowledged() {
    let mut n = Owner::new();
    let seq = n.open();
    assert_eq!(
        n.client(client_seg(seq, ACK, &[], &[b'a'; 100])),
        vec![(seq, false)]
    );
}

#[test]
fn data_beyond_a_hole_is_forwarded_once_sacked() {
    let mut n = Owner::new();
    let a = n.open();
    let b = a + 100;
    // A is lost; B arrives: the shadow stores it and SACKs it, so it goes
    // to the primary now (which will then ask the client for A).
    assert_eq!(
        n.client(client_seg(b, ACK, &[], &[b'b'; 100])),
        vec![(b, false)]
    );
    // A fills the hole.
    assert_eq!(
        n.client(client_seg(a, ACK, &[], &[b'a'; 100])),
        vec![(a, false)]
    );
}

#[test]
fn a_fin_beyond_a_hole_waits_until_the_shadow_takes_it() {
    let mut n = Owner::new();
    let a = n.open();
    let c = a + 100;
    // C (data + FIN) beyond the hole at A: smoltcp keeps C's data but not
    // its FIN, so C must not reach the primary yet.
    assert_eq!(
        n.client(client_seg(c, ACK | FIN, &[], &[b'c'; 100])),
        vec![]
    );
    // A fills the hole: A goes, C still not (its FIN is not held).
    assert_eq!(
        n.client(client_seg(a, ACK, &[], &[b'a'; 100])),
        vec![(a, false)]
    );
    // The client retransmits C: the shadow takes the FIN now (see
    // vendor/smoltcp/HOTPAIR-PATCHES.md), and both copies go on.
    assert_eq!(
        n.client(client_seg(c, ACK | FIN, &[], &[b'c'; 100])),
        vec![(c, true), (c, true)]
    );
}

#[test]
fn promotion_acknowledges_what_the_shadow_holds_at_once() {
    let mut n = Owner::new();
    let a = n.open();
    assert_eq!(
        n.client(client_seg(a, ACK, &[], &[b'a'; 100])),
        vec![(a, false)]
    );
    // The primary dies before its ACK of these 100 bytes reaches the client.
    n.engine.promote(&mut n.service, n.now);
    let mut acks = Vec::new();
    while let Some(f) = n.engine.poll_lan_transmit() {
        if let Some(s) = seg::parse(f.data()) {
            acks.push(s);
        }
    }
    assert_eq!(acks.len(), 1, "one ACK for the one connection");
    let s = acks[0];
    assert_eq!(
        (s.src, s.dst, s.src_port, s.dst_port),
        (VIP, CLIENT, 80, 40000)
    );
    assert_eq!((s.src_mac, s.dst_mac), (NODE_MAC, CLIENT_MAC));
    assert_eq!(s.flags, ACK);
    assert_eq!(s.payload_len, 0);
    assert_eq!(
        s.ack,
        a + 100,
        "acknowledges the client's bytes the shadow holds"
    );
    assert_eq!(
        s.seq,
        PRIMARY_ISN + 1,
        "in the wire's (the primary's) sequence space"
    );
    assert!(s.window > 0);
}

#[test]
fn a_claim_probes_then_announces_again_and_again() {
    use hotpair_stack::arp;
    use smoltcp::wire::ArpOperation;

    let mut n = Owner::with_mode(Role::Primary);
    // A forwarded client frame: the primary learns the client's MAC.
    n.engine
        .handle_peer_frame(client_seg(CLIENT_ISN, SYN, &[], b""));
    n.engine.poll(&mut n.service, n.now);
    while n.engine.poll_lan_transmit().is_some() {}

    let t0 = n.now;
    n.engine.claim();
    let (mut probes, mut garps, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..4000 {
        n.engine.poll(&mut n.service, n.now);
        let at = n.now.duration_since(t0).as_millis() as u64;
        while let Some(f) = n.engine.poll_lan_transmit() {
            let Some(a) = arp::parse(f.data()) else {
                continue;
            };
            assert_eq!(a.operation, ArpOperation::Request);
            if a.sender_ip == Ipv4Address::UNSPECIFIED {
                probes.push(at);
            } else if a.target_ip == VIP {
                garps.push(at);
            } else {
                assert_eq!((a.target_ip, a.target_mac), (CLIENT, CLIENT_MAC));
                direct.push(at);
            }
        }
        n.now += Duration::from_millis(1);
    }
    assert_eq!(probes, vec![0, 12, 24], "three probes, 12 ms apart");
    // Claimed at 36 ms, then again 100, 200, 400, 800, 1600 ms later.
    assert_eq!(garps, vec![36, 136, 336, 736, 1536, 3136]);
    assert_eq!(
        direct, garps,
        "each with an ARP request to the known client"
    );
}

/// An ACK with `len` bytes of payload for a connection this node never saw
/// open (from client port `port`).
fn stranger_seg(port: u16, len: usize) -> Frame {
    let mut f = seg::build(
        CLIENT_MAC, NODE_MAC, CLIENT, VIP, port, 80, 5000, 9000, ACK, 65535,
    );
    f.extend(std::iter::repeat_n(0u8, len));
    let ip_len = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    seg::set_ipv4_checksum(&mut f);
    Frame::copy_from(&f)
}

#[test]
fn segments_of_unknown_connections_pass_only_when_the_primary_may_hold_them_and_within_a_budget() {
    let mut n = Owner::new();
    // The primary never took the address over: it holds no connection this
    // node does not know, so such a segment is dropped here (it would only
    // draw an RST there).
    assert!(n.client(stranger_seg(41000, 100)).is_empty());
    assert_eq!(n.engine.stats().unknown_dropped, 1);
    // It did (a rejoin after a claim): they pass through, up to the burst…
    n.engine.set_pass_through(true);
    assert_eq!(n.client(stranger_seg(41001, 100)).len(), 1);
    let burst = hotpair_stack::engine::PASS_THROUGH_BURST as usize;
    let frame = 60_000;
    let mut passed = 0;
    for i in 0..(2 * burst / frame) {
        n.engine
            .handle_lan_frame(stranger_seg(42000 + i as u16, frame - 54));
    }
    n.engine.poll(&mut n.service, n.now);
    while n.engine.poll_forward().is_some() {
        passed += 1;
    }
    assert!(
        passed * frame <= burst && passed * frame > burst / 2,
        "{passed} frames of {frame} bytes passed in one instant (burst {burst})"
    );
    // …and at the rate after it.
    n.now += Duration::from_millis(100);
    assert_eq!(n.client(stranger_seg(43000, 1000)).len(), 1);
}

#[test]
fn a_spoofed_segment_does_not_divert_a_clients_replies() {
    let attacker = EthernetAddress([2, 0, 0, 0, 0, 0x66]);
    let mut n = Owner::with_mode(Role::Primary);
    let syn = |mac: EthernetAddress, port: u16| {
        Frame::copy_from(&seg::build(
            mac, NODE_MAC, CLIENT, VIP, port, 80, CLIENT_ISN, 0, SYN, 65535,
        ))
    };
    // Where the primary's SYN-ACKs to the client go.
    let syn_ack_macs = |n: &mut Owner| {
        for _ in 0..4 {
            n.engine.poll(&mut n.service, n.now);
            n.now += Duration::from_millis(1);
        }
        let mut macs = Vec::new();
        while let Some(f) = n.engine.poll_lan_transmit() {
            if let Some(s) = seg::parse(f.data()) {
                if s.has(SYN) && s.has(ACK) {
                    macs.push(s.dst_mac);
                }
            }
        }
        macs
    };
    n.engine.handle_peer_frame(syn(CLIENT_MAC, 40000));
    assert_eq!(syn_ack_macs(&mut n), vec![CLIENT_MAC]);
    // A SYN with the client's address from another MAC (forwarded like any
    // SYN): its reply still goes to the client's MAC, and so do later ones.
    n.engine.handle_peer_frame(syn(attacker, 40001));
    assert_eq!(syn_ack_macs(&mut n), vec![CLIENT_MAC]);
    assert_eq!(n.engine.stats().neighbor_refused, 1);
    n.engine.handle_peer_frame(syn(CLIENT_MAC, 40002));
    assert_eq!(syn_ack_macs(&mut n), vec![CLIENT_MAC]);
}
