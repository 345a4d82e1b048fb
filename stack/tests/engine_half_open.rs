//! Half-open connections have their own bound and expire (DESIGN §5,
//! promise 6): a SYN flood from sources that never answer cannot lock a
//! legitimate client out, during the flood or after it.

use std::time::{Duration, Instant};

use hotpair_stack::engine::{Engine, Frame, Role};
use hotpair_stack::seg::{ACK, SYN};
use hotpair_stack::{Admission, StackConfig};
use smoltcp::wire::Ipv4Address;

mod common;
use common::{hello, quiet, rounds, segment_from, segments};

const MAX_HALF_OPEN: usize = 8;
const TIMEOUT: Duration = Duration::from_secs(20);
const PER_SOURCE: usize = 4;

/// A SYN from `src:port`, with a valid IPv4 checksum.
fn syn(src: Ipv4Address, port: u16, isn: u32) -> Frame {
    segment_from(src, port, isn, 0, SYN)
}

struct Node {
    engine: Engine<()>,
    now: Instant,
}

impl Node {
    fn new() -> Self {
        let now = Instant::now();
        let cfg = StackConfig {
            admission: Admission {
                max_half_open: MAX_HALF_OPEN,
                half_open_timeout: TIMEOUT,
                max_per_source: PER_SOURCE,
                ..common::admission(64)
            },
            seed: 3,
            ..common::config(64, 4096, 4096)
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
        let sent = rounds(&mut self.engine, &mut quiet(), &mut self.now, 6);
        segments(&sent)
            .iter()
            .filter(|s| s.has(SYN) && s.has(ACK))
            .map(|s| (s.dst, s.dst_port))
            .collect()
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
