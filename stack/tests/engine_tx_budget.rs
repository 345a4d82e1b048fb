//! A round builds at most about a mebibyte of output: with many clients
//! whose windows are open, the rest waits for the next rounds (which come
//! at once) instead of one round building megabytes while the node looks at
//! no clock and sends no heartbeat.

use std::time::{Duration, Instant};

use hotpair_stack::engine::{Engine, Frame, Role};
use hotpair_stack::seg::{self, ACK, RST, SYN};
use smoltcp::socket::tcp;
use smoltcp::wire::EthernetAddress;

mod common;
use common::{config, segment, CLIENT, CLIENT_MAC, VIP};

/// Connections, each with a 64 KiB window: ~2.5 MiB sendable at once.
const N: u16 = 40;
const BUDGET: usize = 1 << 20;

/// Fills every socket's send buffer whenever it is driven.
fn fill(s: &mut tcp::Socket<'_>) {
    static DATA: [u8; 16 * 1024] = [b'x'; 16 * 1024];
    while s.can_send() {
        match s.send_slice(&DATA) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// One poll; the TCP segments it sent, as (client port, seq, flags,
/// payload bytes).
fn poll(e: &mut Engine<()>, now: Instant) -> (bool, Vec<(u16, u32, u8, usize)>) {
    let busy = e.poll(&mut common::Plain::new(fill), now);
    let mut out = Vec::new();
    while let Some(f) = e.poll_lan_transmit() {
        if let Some(s) = seg::parse(f.data()) {
            out.push((s.dst_port, s.seq, s.flags, s.payload_len));
        }
    }
    (busy, out)
}

#[test]
fn a_round_builds_about_a_mebibyte_and_the_next_rounds_the_rest() {
    let mut now = Instant::now();
    let cfg = config(100, 4096, 256 * 1024);
    let mut e = Engine::new(cfg, Role::Simplex, now);
    e.handle_lan_frame(Frame::copy_from(&hotpair_stack::arp::request_to(
        CLIENT_MAC,
        CLIENT,
        EthernetAddress::BROADCAST,
        VIP,
    )));
    // Handshakes (the writer fills each socket as soon as it is open, but
    // the client's ACK of the SYN-ACK comes with the request below).
    let mut isns = vec![0u32; usize::from(N)];
    for k in 0..N {
        e.handle_lan_frame(segment(10_000 + k, 1000, 0, SYN, &[]));
    }
    for _ in 0..100 {
        let (busy, out) = poll(&mut e, now);
        for (port, seq, flags, _) in out {
            assert_eq!(flags & RST, 0);
            if flags & SYN != 0 {
                isns[usize::from(port - 10_000)] = seq;
            }
        }
        if !busy {
            break;
        }
        now += Duration::from_millis(1);
    }
    assert!(isns.iter().all(|&i| i != 0), "every SYN answered");
    // Every client acknowledges and sends a request: every socket has a
    // full window to send.
    for k in 0..N {
        let isn = isns[usize::from(k)];
        e.handle_lan_frame(segment(10_000 + k, 1001, isn + 1, ACK, b"GET"));
    }
    let mut rounds = Vec::new();
    for _ in 0..100 {
        let (busy, out) = poll(&mut e, now);
        let bytes: usize = out.iter().map(|o| o.3).sum();
        if bytes > 0 {
            rounds.push(bytes);
        }
        if !busy {
            break;
        }
    }
    let total: usize = rounds.iter().sum();
    // Each window (65535, no scaling) filled once.
    assert_eq!(total, usize::from(N) * 65535, "rounds: {rounds:?}");
    // No round beyond the budget by more than the frame that crossed it.
    for (i, r) in rounds.iter().enumerate() {
        assert!(
            *r <= BUDGET + 65535,
            "round {i} built {r} bytes: {rounds:?}"
        );
    }
    assert!(
        rounds.len() >= 3,
        "the output took several rounds: {rounds:?}"
    );
}
