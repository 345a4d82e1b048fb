//! The link's send queue, fair between connections.
//!
//! A primary's logged replies (`Unit`) and connection ends (`ConnGone`)
//! wait per connection and leave in turns, one message per connection with
//! something queued: a client whose reply is small waits behind at most one
//! unit of each other busy connection, not behind everything a heavy one
//! (a large download, a pipelining client) logged before it. Units of one
//! connection keep their order (the peer rejects a gap); across
//! connections no order is owed (acks and releases are per connection).
//!
//! Every other message (`Frame`, `Routes`, `Leaving`) keeps its place in
//! the order everything was queued in: it leaves only after every
//! connection message queued before it, and none queued after it passes
//! it. `Leaving` must follow every unit logged before it (the owner takes
//! over at `Leaving` with everything the primary logged); `Routes` marks
//! where the peer's view of the content changes; a node forwarding frames
//! (owner) queues only these, so its queue stays first in, first out.
//!
//! Turns are per message, not per byte: a connection whose units are large
//! gets more bytes per turn. A unit is one reply and is never split, so no
//! finer share is possible without cutting replies on the wire.

use std::collections::{BTreeMap, VecDeque};

use crate::wire::Msg;
use crate::ConnKey;

#[derive(Debug, Default)]
pub(super) struct LinkQueue {
    /// Order stamps: every message gets the next.
    next: u64,
    /// `Unit`/`ConnGone` per connection, in order, with their stamps.
    conns: BTreeMap<ConnKey, VecDeque<(u64, Msg)>>,
    /// The connections in `conns`, in turn order.
    turns: VecDeque<ConnKey>,
    /// Every other message, in order, with their stamps.
    ordered: VecDeque<(u64, Msg)>,
    len: usize,
}

impl LinkQueue {
    pub fn push_back(&mut self, msg: Msg) {
        let stamp = self.next;
        self.next += 1;
        self.len += 1;
        match &msg {
            Msg::Unit(crate::wire::Unit { conn, .. }) | Msg::ConnGone { conn } => {
                let q = self.conns.entry(*conn).or_default();
                if q.is_empty() {
                    self.turns.push_back(*conn);
                }
                q.push_back((stamp, msg));
            }
            _ => self.ordered.push_back((stamp, msg)),
        }
    }

    /// The next message: the next connection in turn with a message queued
    /// before the oldest other message, else that message.
    pub fn pop_front(&mut self) -> Option<Msg> {
        let limit = self.ordered.front().map(|(stamp, _)| *stamp);
        for _ in 0..self.turns.len() {
            let conn = self.turns.pop_front()?;
            let q = self.conns.get_mut(&conn).expect("a turn has a queue");
            let (stamp, _) = q.front().expect("a queue with a turn is not empty");
            if limit.is_some_and(|l| *stamp > l) {
                // Queued after the oldest other message: it waits.
                self.turns.push_back(conn);
                continue;
            }
            let (_, msg) = q.pop_front().expect("not empty");
            if q.is_empty() {
                self.conns.remove(&conn);
            } else {
                self.turns.push_back(conn);
            }
            self.len -= 1;
            return Some(msg);
        }
        let (_, msg) = self.ordered.pop_front()?;
        self.len -= 1;
        Some(msg)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn clear(&mut self) {
        self.conns.clear();
        self.turns.clear();
        self.ordered.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UnitKind;
    use bytes::Bytes;

    fn conn(port: u16) -> ConnKey {
        ConnKey {
            client_ip: hotpair_stack::smoltcp::wire::Ipv4Address::new(10, 0, 0, 1),
            client_port: port,
            client_isn: 7,
        }
    }

    fn unit(port: u16, seq: u64) -> Msg {
        Msg::Unit(crate::wire::Unit {
            conn: conn(port),
            seq,
            index: seq,
            kind: UnitKind::Final,
            input_end: 0,
            close_after: false,
            local: false,
            payload: Bytes::from_static(b"x"),
        })
    }

    fn name(m: &Msg) -> String {
        match m {
            Msg::Unit(crate::wire::Unit { conn, seq, .. }) => {
                format!("u{}.{seq}", conn.client_port)
            }
            Msg::ConnGone { conn } => format!("gone{}", conn.client_port),
            Msg::Leaving => "leaving".into(),
            other => format!("{other:?}"),
        }
    }

    fn drain(q: &mut LinkQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop_front())
            .map(|m| name(&m))
            .collect()
    }

    #[test]
    fn a_light_connection_waits_behind_one_unit_of_a_heavy_one_not_all() {
        let mut q = LinkQueue::default();
        for s in 0..4 {
            q.push_back(unit(1, s));
        }
        q.push_back(unit(2, 0));
        q.push_back(Msg::ConnGone { conn: conn(2) });
        assert_eq!(q.len(), 6);
        assert_eq!(
            drain(&mut q),
            ["u1.0", "u2.0", "u1.1", "gone2", "u1.2", "u1.3"]
        );
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn leaving_follows_everything_queued_before_it_and_nothing_after_passes_it() {
        let mut q = LinkQueue::default();
        q.push_back(unit(1, 0));
        q.push_back(unit(1, 1));
        q.push_back(unit(2, 0));
        q.push_back(Msg::Leaving);
        q.push_back(unit(3, 0));
        q.push_back(unit(1, 2));
        assert_eq!(
            drain(&mut q),
            ["u1.0", "u2.0", "u1.1", "leaving", "u3.0", "u1.2"]
        );
    }

    #[test]
    fn frames_alone_stay_first_in_first_out() {
        let mut q = LinkQueue::default();
        for i in 0..3u8 {
            q.push_back(Msg::Frame {
                frame: Bytes::from(vec![i]),
            });
        }
        let got: Vec<_> = std::iter::from_fn(|| q.pop_front())
            .map(|m| match m {
                Msg::Frame { frame } => frame[0],
                _ => panic!("not a frame"),
            })
            .collect();
        assert_eq!(got, [0, 1, 2]);
        q.push_back(unit(1, 0));
        q.clear();
        assert_eq!((q.len(), q.pop_front().is_none()), (0, true));
    }
}
