//! What the engine tests share.

// Each test file compiles its own copy and uses part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use hotpair_stack::engine::{ConnId, ConnInfo, Frame, Service};
use hotpair_stack::seg;
use hotpair_stack::StackConfig;
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};

pub const NODE_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 10]);
pub const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 1, 0, 0, 0, 100]);
pub const VIP: Ipv4Address = Ipv4Address::new(10, 0, 0, 10);
pub const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 0, 100);

/// A segment from CLIENT:`port` to VIP:80 with `payload` (window 65535, no
/// options).
pub fn segment(port: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Frame {
    let mut f = seg::build(
        CLIENT_MAC, NODE_MAC, CLIENT, VIP, port, 80, seq, ack, flags, 65535,
    );
    if !payload.is_empty() {
        // Append the payload and fix the IPv4 total length.
        f.extend_from_slice(payload);
        let total = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
    }
    seg::set_ipv4_checksum(&mut f);
    Frame::copy_from(&f)
}

/// A node on VIP:80 for one client that may hold them all.
pub fn config(max: usize, rx_buffer_bytes: usize, tx_buffer_bytes: usize) -> StackConfig {
    StackConfig {
        mac: NODE_MAC,
        address: Ipv4Cidr::new(VIP, 24),
        gateway: None,
        port: 80,
        alt_port: None,
        max_connections: max,
        max_half_open: max,
        half_open_timeout: Duration::from_secs(20),
        max_per_source: usize::MAX,
        rx_buffer_bytes,
        tx_buffer_bytes,
        seed: 5,
        syn_cookies: None,
    }
}

/// A service that accepts every connection and never touches a socket:
/// the tests look at the engine's own rules.
pub struct Quiet;

impl Service for Quiet {
    type Conn = ();
    fn accept(&mut self, _: ConnId, _: &ConnInfo, _: Instant) {}
    fn drive(
        &mut self,
        _: ConnId,
        _: &mut (),
        _: &mut tcp::Socket<'_>,
        _: Instant,
    ) -> Option<Instant> {
        None
    }
    fn closed(&mut self, _: ConnId, _: ()) {}
    fn woken(&mut self, _: &mut Vec<ConnId>) {}
}
