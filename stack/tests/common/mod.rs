//! What the engine tests share.

// Each test file compiles its own copy and uses part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use hotpair_stack::engine::{ConnId, ConnInfo, Engine, Frame, Service};
use hotpair_stack::seg;
use hotpair_stack::{Admission, StackConfig};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};

pub const NODE_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 10]);
pub const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 1, 0, 0, 0, 100]);
pub const VIP: Ipv4Address = Ipv4Address::new(10, 0, 0, 10);
pub const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 0, 100);

/// A segment from CLIENT:`port` to VIP:80 with `payload` (window 65535, no
/// options).
pub fn segment(port: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Frame {
    finish(
        seg::build(
            CLIENT_MAC, NODE_MAC, CLIENT, VIP, port, 80, seq, ack, flags, 65535,
        ),
        &[],
        payload,
    )
}

/// Finishes a frame of `seg::build`: appends `options` (a multiple of 4
/// bytes) and `payload`, and sets the TCP header length, the IPv4 total
/// length and the IPv4 checksum to match.
pub fn finish(mut f: Vec<u8>, options: &[u8], payload: &[u8]) -> Frame {
    assert_eq!(options.len() % 4, 0);
    f.extend_from_slice(options);
    f.extend_from_slice(payload);
    f[46] = (((20 + options.len()) / 4) << 4) as u8;
    let ip_len = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    seg::set_ipv4_checksum(&mut f);
    Frame::copy_from(&f)
}

// ---- many clients, each with its own address and MAC ----------------------

/// The MAC of the client at `ip`: 02:01 and the address's four octets.
pub fn mac_of(ip: Ipv4Address) -> EthernetAddress {
    let o = ip.octets();
    EthernetAddress([2, 1, o[0], o[1], o[2], o[3]])
}

/// Client number `i`: 10.0.0.(100 + i).
pub fn client(i: u8) -> Ipv4Address {
    Ipv4Address::new(10, 0, 0, 100 + i)
}

/// The client at `src` asks who has the service address: the engine
/// learns its MAC (smoltcp fills its neighbour cache from ARP), so its
/// SYN-ACK can go out.
pub fn hello(src: Ipv4Address) -> Frame {
    Frame::copy_from(&hotpair_stack::arp::request_to(
        mac_of(src),
        src,
        EthernetAddress::BROADCAST,
        VIP,
    ))
}

/// A segment from `src:port` (MAC [`mac_of`]) to VIP:80, no options or
/// payload, valid IPv4 checksum.
pub fn segment_from(src: Ipv4Address, port: u16, seq: u32, ack: u32, flags: u8) -> Frame {
    segment_with(src, port, seq, ack, flags, &[], &[])
}

/// As [`segment_from`], with TCP `options` (a multiple of 4 bytes) and
/// `payload`.
pub fn segment_with(
    src: Ipv4Address,
    port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Frame {
    let f = seg::build(
        mac_of(src),
        NODE_MAC,
        src,
        VIP,
        port,
        80,
        seq,
        ack,
        flags,
        65535,
    );
    finish(f, options, payload)
}

/// Runs `n` rounds of `engine`, 1 ms apart from `now` on (which it
/// advances); every frame the engine sent to the LAN.
pub fn rounds<S: Service>(
    engine: &mut Engine<S::Conn>,
    service: &mut S,
    now: &mut Instant,
    n: usize,
) -> Vec<Frame> {
    let mut out = Vec::new();
    for _ in 0..n {
        engine.poll(service, *now);
        while let Some(f) = engine.poll_lan_transmit() {
            out.push(f);
        }
        *now += Duration::from_millis(1);
    }
    out
}

/// The TCP segments among `frames` (ARP and the rest left out).
pub fn segments(frames: &[Frame]) -> Vec<seg::Seg> {
    frames.iter().filter_map(|f| seg::parse(f.data())).collect()
}

/// A node on VIP:80 for one client that may hold them all.
pub fn config(max: usize, rx_buffer_bytes: usize, tx_buffer_bytes: usize) -> StackConfig {
    StackConfig {
        mac: NODE_MAC,
        address: Ipv4Cidr::new(VIP, 24),
        gateway: None,
        port: 80,
        alt_port: None,
        admission: admission(max),
        rx_buffer_bytes,
        tx_buffer_bytes,
        seed: 5,
    }
}

/// Room for `max` connections from one client, half-open or not; no
/// cookies.
pub fn admission(max: usize) -> Admission {
    Admission {
        max_connections: max,
        max_half_open: max,
        half_open_timeout: Duration::from_secs(20),
        max_per_source: usize::MAX,
        syn_cookies: None,
    }
}

/// A service with no per-connection state: it keeps what it was told of
/// each accepted connection and runs `on_socket` on every socket it
/// drives; nothing on close or wake.
pub struct Plain {
    pub accepted: Vec<ConnInfo>,
    on_socket: fn(&mut tcp::Socket<'_>),
}

impl Plain {
    pub fn new(on_socket: fn(&mut tcp::Socket<'_>)) -> Self {
        Plain {
            accepted: Vec::new(),
            on_socket,
        }
    }
}

/// Accepts every connection and never touches a socket: the tests look at
/// the engine's own rules.
pub fn quiet() -> Plain {
    Plain::new(|_| {})
}

impl Service for Plain {
    type Conn = ();
    fn accept(&mut self, _: ConnId, info: &ConnInfo, _: Instant) {
        self.accepted.push(*info);
    }
    fn drive(
        &mut self,
        _: ConnId,
        _: &mut (),
        socket: &mut tcp::Socket<'_>,
        _: Instant,
    ) -> Option<Instant> {
        (self.on_socket)(socket);
        None
    }
    fn closed(&mut self, _: ConnId, _: ()) {}
    fn woken(&mut self, _: &mut Vec<ConnId>) {}
}

/// The client's ISN in the single-connection takeover tests.
pub const CLIENT_ISN: u32 = 1000;
pub const MSS: usize = 1460;
/// Their reply: three full segments.
pub const REPLY: usize = 3 * MSS;

/// Writes [`REPLY`] bytes into each connection once, and nothing else.
pub struct Sender;

impl Service for Sender {
    type Conn = bool;
    fn accept(&mut self, _: ConnId, _: &ConnInfo, _: Instant) -> bool {
        false
    }
    fn drive(
        &mut self,
        _: ConnId,
        sent: &mut bool,
        socket: &mut tcp::Socket<'_>,
        _: Instant,
    ) -> Option<Instant> {
        if !*sent && socket.may_send() {
            assert_eq!(socket.send_slice(&[7u8; REPLY]), Ok(REPLY));
            *sent = true;
        }
        None
    }
    fn closed(&mut self, _: ConnId, _: bool) {}
    fn woken(&mut self, _: &mut Vec<ConnId>) {}
}

/// A segment of the client at CLIENT:40000 ([`CLIENT_ISN`]) with no
/// payload, this ACK and window; MSS and SACK-permitted options on a SYN
/// (no window scaling); valid IPv4 checksum (the engine's smoltcp does not
/// check the TCP one: the device offloads it).
pub fn client_seg(flags: u8, ack: u32, window: u16) -> Frame {
    let syn = flags & seg::SYN != 0;
    let seq = if syn { CLIENT_ISN } else { CLIENT_ISN + 1 };
    let f = seg::build(
        CLIENT_MAC, NODE_MAC, CLIENT, VIP, 40000, 80, seq, ack, flags, window,
    );
    let options: &[u8] = if syn {
        &[2, 4, 0x05, 0xb4, 4, 2, 1, 1]
    } else {
        &[]
    };
    finish(f, options, &[])
}

/// One engine serving [`Sender`], with its own clock (the takeover tests).
pub struct Node {
    pub engine: Engine<bool>,
    pub service: Sender,
    pub now: Instant,
}

impl Node {
    pub fn new(mode: hotpair_stack::engine::Role) -> Self {
        let now = Instant::now();
        let cfg = StackConfig {
            admission: Admission {
                max_half_open: 8,
                max_per_source: 16,
                ..admission(16)
            },
            seed: 7,
            ..config(16, 65536, 65536)
        };
        let mut engine = Engine::new(cfg, mode, now);
        engine.set_lease(true);
        Node {
            engine,
            service: Sender,
            now,
        }
    }

    /// Run `rounds` rounds `step` apart; the TCP segments sent to the LAN.
    pub fn run_every(&mut self, rounds: u32, step: Duration) -> Vec<seg::Seg> {
        let mut out = Vec::new();
        for _ in 0..rounds {
            self.engine.poll(&mut self.service, self.now);
            while let Some(f) = self.engine.poll_lan_transmit() {
                if let Some(s) = seg::parse(f.data()) {
                    out.push(s);
                }
            }
            while self.engine.poll_forward().is_some() {}
            self.now += step;
        }
        out
    }

    /// Run `rounds` rounds 1 ms apart.
    pub fn run(&mut self, rounds: u32) -> Vec<seg::Seg> {
        self.run_every(rounds, Duration::from_millis(1))
    }
}
