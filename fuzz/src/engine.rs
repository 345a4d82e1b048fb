//! Frame admission into a `hotpair_stack::Engine`: arbitrary Ethernet frames
//! and mostly-valid client TCP segments (fields from the input, sequence
//! numbers near the ones in use, valid IPv4 checksum), from the LAN and from
//! the peer, in each role, with time advancing, takeovers (promotion,
//! claim), ARP probes and a fencing answer.
//!
//! The service on top echoes one byte per byte received and closes on a
//! half-close, so data flows both ways. Checked throughout:
//! - never panics;
//! - the service sees each connection accepted once, driven only while
//!   open, closed once, promoted only while open;
//! - at most `max_connections + max_half_open + SPARE_LISTENERS`
//!   connections are active (the bound is exceeded while idle connections
//!   close for new ones, or when none is idle, by at most the SYN queue's
//!   room; an owner node has a second SYN queue's room), at most
//!   `max_half_open` half-open;
//! - owner: every frame forwarded to the primary is byte for byte one the
//!   client sent, and before promotion no shadow segment but a RST reaches
//!   the LAN (unless the harness also misrouted a frame through
//!   `handle_peer_frame`, which only a primary gets);
//! - primary: no ARP on the LAN before a claim, nothing at all once fenced;
//! - frames on the LAN are at most `TSO_MAX_FRAME` bytes.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use hotpair_stack::engine::{
    Admission, ConnId, ConnInfo, Engine, Frame, Role, Service, SPARE_LISTENERS, TSO_MAX_FRAME,
};
use hotpair_stack::seg::{self, ACK, FIN, PSH, RST, SYN};
use hotpair_stack::smoltcp::socket::tcp;
use hotpair_stack::smoltcp::wire::{ArpOperation, EthernetAddress, Ipv4Address, Ipv4Cidr};
use hotpair_stack::{CookieKey, StackConfig, SynCookies};

use crate::Input;

const NODE_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 10]);
const OTHER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 11]);
const VIP: Ipv4Address = Ipv4Address::new(10, 0, 0, 10);
const PORT: u16 = 80;
/// The address's second port (HTTPS in a node): clients 1 and 3 connect
/// to it, 0 and 2 to `PORT`, so the listeners shared by both ports and the
/// admission of either are fuzzed together.
const ALT_PORT: u16 = 443;

fn server_port(c: usize) -> u16 {
    if c.is_multiple_of(2) {
        PORT
    } else {
        ALT_PORT
    }
}
const CLIENTS: usize = 4;
/// The primary's ISN as the (simulated) client believes it, owner mode.
const PRIMARY_ISN: u32 = 7_000_000;

fn client_mac(c: usize) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 1, c as u8])
}

fn client_ip(c: usize) -> Ipv4Address {
    // Two clients on the link, two behind the gateway.
    match c {
        0 | 1 => Ipv4Address::new(10, 0, 0, 1 + c as u8),
        _ => Ipv4Address::new(192, 168, 7, c as u8),
    }
}

/// Per-connection state of the service.
struct Conn {
    id: ConnId,
    received: u64,
    sent: u64,
    promoted: bool,
}

/// Echoes one byte per byte received; closes on the client's FIN.
#[derive(Default)]
struct Echo {
    open: BTreeSet<ConnId>,
    ever: BTreeSet<ConnId>,
    wake_all: bool,
}

impl Service for Echo {
    type Conn = Conn;

    fn accept(&mut self, id: ConnId, _: &ConnInfo, _: Instant) -> Conn {
        assert!(self.ever.insert(id), "{id:?} accepted twice");
        self.open.insert(id);
        Conn {
            id,
            received: 0,
            sent: 0,
            promoted: false,
        }
    }

    fn drive(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        socket: &mut tcp::Socket<'_>,
        _: Instant,
    ) -> Option<Instant> {
        assert!(self.open.contains(&id), "{id:?} driven while not open");
        assert_eq!(conn.id, id, "another connection's state");
        while socket.can_recv() {
            match socket.recv(|b| (b.len(), b.len())) {
                Ok(n) => conn.received += n as u64,
                Err(_) => break,
            }
        }
        while conn.sent < conn.received && socket.can_send() {
            let owed = (conn.received - conn.sent).min(4096) as usize;
            let buf = vec![b'e'; owed];
            match socket.send_slice(&buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => conn.sent += n as u64,
            }
        }
        if socket.state() == tcp::State::CloseWait && conn.sent == conn.received {
            socket.close();
        }
        None
    }

    fn closed(&mut self, id: ConnId, conn: Conn) {
        assert!(self.open.remove(&id), "{id:?} closed while not open");
        assert_eq!(conn.id, id);
    }

    fn woken(&mut self, out: &mut Vec<ConnId>) {
        if std::mem::take(&mut self.wake_all) {
            out.extend(self.open.iter().copied());
            // A stale id must be harmless.
            out.push(ConnId {
                slot: 3,
                generation: 77,
            });
        }
    }

    fn promote(&mut self, id: ConnId, conn: &mut Conn, _: usize, _: Instant) {
        assert!(self.open.contains(&id), "{id:?} promoted while not open");
        assert!(!conn.promoted, "{id:?} promoted twice");
        conn.promoted = true;
    }
}

struct Client {
    isn: u32,
    next: u32,
    server_isn: u32,
}

struct Harness {
    engine: Engine<Conn>,
    service: Echo,
    now: Instant,
    role: Role,
    promoted: bool,
    claimed: bool,
    max_connections: usize,
    clients: Vec<Client>,
    /// Every frame handed in from the LAN (what may be forwarded).
    sent: HashSet<Vec<u8>>,
    /// A frame came through `handle_peer_frame` while not primary (a
    /// caller's mistake the replica's protocol rules out): the engine
    /// serves it plainly, so the no-leak check is off.
    misrouted: bool,
}

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let role = [Role::Simplex, Role::Primary, Role::Owner][inp.below(3)];
    let max_connections = 1 + inp.below(6);
    let buffer = |inp: &mut Input<'_>| 256 + inp.below(4) * 2048;
    let (gateway, rx, tx, knobs) = (inp.bool(), buffer(&mut inp), buffer(&mut inp), inp.u8());
    let cfg = StackConfig {
        mac: NODE_MAC,
        address: Ipv4Cidr::new(VIP, 24),
        gateway: gateway.then(|| Ipv4Address::new(10, 0, 0, 254)),
        port: PORT,
        alt_port: Some(ALT_PORT),
        rx_buffer_bytes: rx,
        tx_buffer_bytes: tx,
        // One byte: smoltcp's seed, and the half-open and per-source
        // bounds (small, so the fuzzer reaches them).
        seed: u64::from(knobs),
        admission: Admission {
            max_connections,
            // SYN cookies at the bound for odd knobs (half-open bounds 2
            // and 4); the key either way (a node checks its peer's
            // cookies).
            syn_cookies: Some(SynCookies {
                key: CookieKey([0x42; 32]),
                send: knobs & 1 == 1,
                wall_start: Duration::from_secs(1_800_000_000),
            }),
            max_half_open: 1 + usize::from(knobs % 4),
            half_open_timeout: Duration::from_secs(1 + u64::from(knobs >> 5)),
            max_per_source: 1 + usize::from((knobs >> 2) % 6),
        },
    };
    let now = origin();
    let max_connections = match role {
        Role::Owner => max_connections + 2 * cfg.admission.max_half_open + SPARE_LISTENERS,
        _ => max_connections + cfg.admission.max_half_open + SPARE_LISTENERS,
    };
    let mut h = Harness {
        engine: Engine::new(cfg, role, now),
        service: Echo::default(),
        now,
        role,
        promoted: false,
        claimed: false,
        max_connections,
        clients: (0..CLIENTS)
            .map(|c| Client {
                isn: 1000 * (c as u32 + 1),
                next: 1000 * (c as u32 + 1),
                server_isn: PRIMARY_ISN,
            })
            .collect(),
        sent: HashSet::new(),
        misrouted: false,
    };
    let mut ops = 0;
    while !inp.is_empty() && ops < 300 {
        ops += 1;
        h.op(&mut inp);
        h.run_engine();
    }
    // Let timers run out: TIME-WAIT, retransmissions, closes.
    for _ in 0..8 {
        h.now += Duration::from_secs(3);
        h.run_engine();
    }
}

impl Harness {
    fn op(&mut self, inp: &mut Input<'_>) {
        match inp.below(12) {
            0..=4 => {
                let f = self.client_segment(inp);
                // The usual path for the role, or (sometimes) the other one.
                let via_peer = (self.role == Role::Primary) != (inp.u8() < 16);
                self.deliver(f, via_peer);
            }
            5 => {
                let f = inp.bytes(120).to_vec();
                let via_peer = inp.bool();
                self.deliver(f, via_peer);
            }
            6 => {
                // A valid segment with one byte changed.
                let mut f = self.client_segment(inp);
                let i = inp.below(f.len());
                f[i] = inp.u8();
                let via_peer = self.role == Role::Primary;
                self.deliver(f, via_peer);
            }
            7 => {
                let f = match inp.below(4) {
                    // Someone probes for the address (a primary before its claim).
                    0 => hotpair_stack::arp::probe(OTHER_MAC, VIP),
                    // The owner answers our probe: fences a claiming primary.
                    1 => hotpair_stack::arp::reply(OTHER_MAC, VIP, NODE_MAC, VIP),
                    // A client asks for the address.
                    2 => hotpair_stack::arp::request_to(client_mac(0), client_ip(0), NODE_MAC, VIP),
                    _ => hotpair_stack::arp::gratuitous(OTHER_MAC, VIP),
                };
                self.deliver(f, false);
            }
            8 => {
                self.now += match inp.below(4) {
                    0 => Duration::from_millis(u64::from(inp.u8())),
                    1 => Duration::from_millis(u64::from(inp.u16())),
                    2 => Duration::from_secs(u64::from(inp.u8())),
                    _ => self
                        .engine
                        .poll_delay(self.now)
                        .unwrap_or(Duration::ZERO)
                        .min(Duration::from_secs(300)),
                };
            }
            9 => match inp.below(3) {
                0 => {
                    crate::trace!("promote");
                    if self.role == Role::Owner {
                        self.promoted = true;
                    }
                    self.engine.promote(&mut self.service, self.now);
                }
                1 => {
                    crate::trace!("claim");
                    if self.role == Role::Primary {
                        self.claimed = true;
                    }
                    self.engine.claim();
                }
                _ => {
                    if !self.engine.fenced() {
                        self.engine.announce();
                        self.claimed = true; // an announcement is ARP
                    }
                }
            },
            10 => self.service.wake_all = true,
            _ => {
                // Let several rounds pass with no input.
                for _ in 0..inp.below(4) {
                    self.now += Duration::from_millis(200);
                    self.run_engine();
                }
            }
        }
    }

    fn deliver(&mut self, f: Vec<u8>, via_peer: bool) {
        crate::trace!(
            "{:?} <- {} {:?}",
            self.role,
            if via_peer { "peer" } else { "lan" },
            seg::parse(&f).map_or_else(|| format!("{} bytes", f.len()), |s| format!("{s:?}"))
        );
        let frame = Frame::copy_from(&f);
        if via_peer && self.role != Role::Primary {
            self.misrouted = true;
        }
        if via_peer {
            self.engine.handle_peer_frame(frame);
        } else {
            self.sent.insert(f);
            self.engine.handle_lan_frame(frame);
        }
    }

    /// A client segment with fields from the input, mostly near the
    /// sequence numbers in use.
    fn client_segment(&mut self, inp: &mut Input<'_>) -> Vec<u8> {
        let c = inp.below(CLIENTS);
        let flags = match inp.below(8) {
            0 => SYN,
            1 | 2 => ACK,
            3 => ACK | PSH,
            4 => FIN | ACK,
            5 => RST,
            6 => RST | ACK,
            _ => inp.u8(),
        };
        let delta = |inp: &mut Input<'_>| match inp.below(4) {
            0 | 1 => 0,
            2 => u32::from(inp.u8()),
            _ => (i32::from(inp.u16() as i16)) as u32,
        };
        let cl = &mut self.clients[c];
        let seq = if flags & SYN != 0 && flags & ACK == 0 {
            if inp.bool() {
                // A new connection (a new ISN), or a retransmitted SYN.
                cl.isn = cl.isn.wrapping_add(100_000);
                cl.next = cl.isn;
            }
            cl.isn
        } else {
            match inp.below(4) {
                0 => inp.u32(),
                _ => cl.next.wrapping_add(delta(inp)),
            }
        };
        let ack = if flags & ACK == 0 {
            0
        } else if inp.below(8) == 0 {
            inp.u32()
        } else {
            cl.server_isn.wrapping_add(1).wrapping_add(delta(inp))
        };
        let window = match inp.below(3) {
            0 => 65535,
            1 => 0,
            _ => inp.u16(),
        };
        let options: Vec<u8> = match inp.below(4) {
            0 | 1 => Vec::new(),
            // MSS 1460, SACK permitted.
            2 => vec![2, 4, 0x05, 0xb4, 4, 2, 1, 1],
            _ => {
                let mut o = inp.bytes(40).to_vec();
                o.resize(o.len().div_ceil(4) * 4, 0);
                o
            }
        };
        let payload_len = match inp.below(4) {
            0 | 1 => 0,
            2 => inp.below(64),
            _ => inp.below(1461),
        };
        let payload: Vec<u8> = (0..payload_len).map(|i| b'a' + (i % 26) as u8).collect();
        let src_mac = if inp.below(8) == 0 {
            client_mac(inp.below(CLIENTS))
        } else {
            client_mac(c)
        };
        let mut f = seg::build(
            src_mac,
            NODE_MAC,
            client_ip(c),
            VIP,
            40000 + c as u16,
            server_port(c),
            seq,
            ack,
            flags,
            window,
        );
        f.extend_from_slice(&options);
        f.extend_from_slice(&payload);
        f[46] = (((20 + options.len()) / 4) << 4) as u8;
        let ip_len = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        seg::set_ipv4_checksum(&mut f);
        let sl = u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
        if seq == cl.next {
            cl.next = seq.wrapping_add(payload_len as u32 + sl);
        }
        f
    }

    fn run_engine(&mut self) {
        for _ in 0..3 {
            for _ in 0..16 {
                if !self.engine.poll(&mut self.service, self.now) {
                    break;
                }
            }
            if !self.drain() {
                break;
            }
        }
        let active = self.engine.connections();
        assert!(
            active <= self.max_connections,
            "{active} connections, max_connections {}",
            self.max_connections
        );
        let st = self.engine.stats();
        crate::trace!(
            "  active {} half-open {} evicted {} expired {}",
            st.active,
            st.half_open,
            st.half_open_evicted,
            st.half_open_expired
        );
        assert_eq!(active, st.active);
        let bounds = &self.engine.config().admission;
        assert!(
            st.half_open <= bounds.max_half_open,
            "{} half-open connections, max_half_open {}",
            st.half_open,
            bounds.max_half_open
        );
    }

    /// Take the engine's output; true if the LAN answered something.
    fn drain(&mut self) -> bool {
        let fenced = self.engine.fenced();
        let mut answers = Vec::new();
        while let Some(f) = self.engine.poll_lan_transmit() {
            let d = f.data();
            crate::trace!(
                "  lan -> {:?}",
                seg::parse(d).map_or_else(|| format!("{} bytes", d.len()), |s| format!("{s:?}"))
            );
            assert!(d.len() <= TSO_MAX_FRAME, "a {} byte frame", d.len());
            assert!(!fenced, "a fenced primary sent a frame");
            if let Some(s) = seg::parse(d) {
                if self.role == Role::Owner && !self.promoted && !self.misrouted {
                    // An RST for a SYN no socket took, or the owner's own
                    // SYN cookie: never the shadow's output.
                    let cookie =
                        s.has(SYN) && s.has(ACK) && self.engine.stats().syn_cookies_sent > 0;
                    assert!(
                        s.has(RST) || cookie,
                        "a shadow segment reached the LAN: {s:?}"
                    );
                }
                // Learn the server's ISN from its SYN-ACK.
                if s.has(SYN) && s.has(ACK) {
                    if let Some(c) = (0..CLIENTS).find(|&c| client_ip(c) == s.dst) {
                        self.clients[c].server_isn = s.seq;
                    }
                }
            } else if let Some(a) = hotpair_stack::arp::parse(d) {
                assert!(
                    self.role != Role::Primary || self.claimed,
                    "a primary sent ARP before any claim"
                );
                // The LAN answers: a client (or the gateway) on the link.
                let gateway = Ipv4Address::new(10, 0, 0, 254);
                if a.operation == ArpOperation::Request && a.sender_ip == VIP {
                    let mac = (0..CLIENTS)
                        .find(|&c| client_ip(c) == a.target_ip)
                        .map(client_mac)
                        .or((a.target_ip == gateway).then_some(OTHER_MAC));
                    if let Some(mac) = mac {
                        answers.push(hotpair_stack::arp::reply(mac, a.target_ip, NODE_MAC, VIP));
                    }
                }
            }
            self.engine.recycle(f);
        }
        let answered = !answers.is_empty();
        for f in answers {
            self.deliver(f, false);
        }
        while let Some(f) = self.engine.poll_forward() {
            assert!(
                self.sent.contains(f.data()),
                "forwarded a frame the client never sent"
            );
        }
        answered
    }
}

/// The only clock read: an origin for synthetic instants.
fn origin() -> Instant {
    Instant::now()
}
