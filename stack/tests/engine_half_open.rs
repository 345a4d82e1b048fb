//! Half-open connections have their own bound and expire (DESIGN §5,
//! promise 6): a SYN flood from sources that never answer cannot lock a
//! legitimate client out, during the flood or after it.

use std::time::{Duration, Instant};

use hotpair_stack::engine::{Engine, Frame, Role};
use hotpair_stack::seg::{self, ACK, SYN};
use hotpair_stack::StackConfig;
use smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};

mod common;
use common::Quiet;

const NODE_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 10]);
const VIP: Ipv4Address = Ipv4Address::new(10, 0, 0, 10);
const MAX_HALF_OPEN: usize = 8;
const TIMEOUT: Duration = Duration::from_secs(20);
const PER_SOURCE: usize = 4;

fn mac_of(ip: Ipv4Address) -> EthernetAddress {
    let o = ip.octets();
    EthernetAddress([2, 1, o[0], o[1], o[2], o[3]])
}

/// The client asks who has the service address: the engine learns its MAC
/// (smoltcp fills its neighbour cache from ARP), so its SYN-ACK can go out.
fn hello(src: Ipv4Address) -> Frame {
    Frame::copy_from(&hotpair_stack::arp::request_to(
        mac_of(src),
        src,
        EthernetAddress::BROADCAST,
        VIP,
    ))
}

/// A SYN from `src:port`, with a valid IPv4 checksum.
fn syn(src: Ipv4Address, port: u16, isn: u32) -> Frame {
    let mut f = seg::build(
        mac_of(src),
        NODE_MAC,
        src,
        VIP,
        port,
        80,
        isn,
        0,
        SYN,
        65535,
    );
    seg::set_ipv4_checksum(&mut f);
    Frame::copy_from(&f)
}

struct Node {
    engine: Engine<()>,
    now: Instant,
}

impl Node {
    fn new() -> Self {
        let now = Instant::now();
        let cfg = StackConfig {
            mac: NODE_MAC,
            address: Ipv4Cidr::new(VIP, 24),
            gateway: None,
            port: 80,
            alt_port: None,
            max_connections: 64,
            max_half_open: MAX_HALF_OPEN,
            half_open_timeout: TIMEOUT,
            max_per_source: PER_SOURCE,
            rx_buffer_bytes: 4096,
            tx_buffer_bytes: 4096,
            seed: 3,
            syn_cookies: None,
        };
        Node {
            engine: Engine::new(cfg, Role::Simplex, now),
            now,
        }
    }

    /// Feed frames, run a few rounds, return the SYN-ACKs sent, by
    /// (client address, client port).
    fn run(&mut self, frames: Vec<Frame>) -> Vec<(Ipv4Address, u16)> {
        for f in frames {
            self.engine.handle_lan_frame(f);
        }
        let mut synacks = Vec::new();
        for _ in 0..6 {
            self.engine.poll(&mut Quiet, self.now);
            while let Some(f) = self.engine.poll_lan_transmit() {
                if let Some(s) = seg::parse(f.data()) {
                    if s.has(SYN) && s.has(ACK) {
                        synacks.push((s.dst, s.dst_port));
                    }
                }
            }
            self.now += Duration::from_millis(1);
        }
        synacks
    }
}

#[test]
fn a_flood_cannot_hold_more_than_the_bound_and_a_new_client_gets_in() {
    let mut n = Node::new();
    // Teach the engine every flood source's MAC (as an ARP would): the
    // SYN-ACKs go out, to sources that never answer.
    let flood: Vec<Frame> = (0..200u16)
        .map(|i| {
            syn(
                Ipv4Address::new(10, 0, 1, (i % 250) as u8 + 1),
                20_000 + i,
                u32::from(i),
            )
        })
        .collect();
    for chunk in flood.chunks(10) {
        n.run(chunk.to_vec());
        let st = n.engine.stats();
        assert!(
            st.half_open <= MAX_HALF_OPEN,
            "{} half-open, bound {MAX_HALF_OPEN}",
            st.half_open
        );
    }
    let st = n.engine.stats();
    assert_eq!(st.half_open, MAX_HALF_OPEN);
    assert!(
        st.half_open_evicted >= 200 - MAX_HALF_OPEN as u64,
        "evicted {}",
        st.half_open_evicted
    );
    // During the flood, a legitimate client's SYN is answered at once.
    let client = Ipv4Address::new(10, 0, 0, 100);
    let answered = n.run(vec![hello(client), syn(client, 40_000, 77)]);
    assert!(answered.contains(&(client, 40_000)), "{answered:?}");
    assert!(n.engine.stats().half_open <= MAX_HALF_OPEN);
}

#[test]
fn half_open_connections_expire() {
    let mut n = Node::new();
    let flood: Vec<Frame> = (0..5u16)
        .map(|i| syn(Ipv4Address::new(10, 0, 2, i as u8 + 1), 30_000 + i, 9))
        .collect();
    n.run(flood);
    assert_eq!(n.engine.stats().half_open, 5);
    // Not before the timeout…
    n.now += TIMEOUT - Duration::from_secs(1);
    n.run(Vec::new());
    assert_eq!(n.engine.stats().half_open, 5);
    // …and all of them after it: their listeners serve again.
    n.now += Duration::from_secs(2);
    n.run(Vec::new());
    let st = n.engine.stats();
    assert_eq!((st.half_open, st.half_open_expired), (0, 5));
    let client = Ipv4Address::new(10, 0, 0, 100);
    assert!(n
        .run(vec![hello(client), syn(client, 40_001, 5)])
        .contains(&(client, 40_001)));
}

#[test]
fn one_source_cannot_take_more_than_its_share() {
    let mut n = Node::new();
    let greedy = Ipv4Address::new(10, 0, 0, 50);
    let answered = n.run(
        std::iter::once(hello(greedy))
            .chain((0..10u16).map(|i| syn(greedy, 50_000 + i, 100 + u32::from(i))))
            .collect(),
    );
    assert_eq!(answered.len(), PER_SOURCE, "{answered:?}");
    assert_eq!(n.engine.stats().per_source_refused, 10 - PER_SOURCE as u64);
    // Another client is not affected.
    let other = Ipv4Address::new(10, 0, 0, 51);
    let answered = n.run(vec![hello(other), syn(other, 50_000, 1)]);
    assert_eq!(answered, vec![(other, 50_000)]);
}
