//! The LAN check: does this node still reach the service LAN?
//!
//! A node whose NIC, cable or switch port fails while its replication link
//! stays up hears its peer as ever, so the heartbeats say nothing about it;
//! its clients hang. Each node therefore asks a LAN host it should always
//! reach (the gateway, say) at a fixed interval: an ARP request from the
//! node's MAC with sender address 0.0.0.0 — an RFC 5227 probe, which every
//! host answers and which changes nobody's ARP cache (a primary must never
//! speak for an address its peer owns). `fall` intervals in a row with
//! neither an answer nor any frame from another host mark the LAN down,
//! `rise` good ones up again (keepalived's `track_interface`, HAProxy's
//! `fall`/`rise`): a flood that drowns the one answer still proves the
//! LAN reaches the node. What the node does about it
//! is the node core's (see `NodeCore::round`).

use std::time::{Duration, Instant};

use hotpair_stack::arp;
use hotpair_stack::smoltcp::wire::{ArpOperation, EthernetAddress, Ipv4Address};
use hotpair_stack::Frame;

use super::fall_rise::FallRise;

/// What to check, how often, and how many misses or answers decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanCheckConfig {
    /// A LAN host that answers ARP (the gateway, or any always-on host).
    pub target: Ipv4Address,
    /// Time between requests; a request unanswered by the next one is a
    /// miss.
    pub interval: Duration,
    /// Misses in a row that mark the LAN down.
    pub fall: u32,
    /// Answers in a row that mark it up again.
    pub rise: u32,
}

/// A change of the LAN's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanChange {
    /// `fall` requests in a row went unanswered.
    Down,
    /// `rise` requests in a row were answered.
    Up,
}

/// The check's state machine, driven by passed-in time.
#[derive(Debug)]
pub struct LanCheck {
    cfg: LanCheckConfig,
    mac: EthernetAddress,
    state: FallRise,
    /// The request in flight has been answered.
    answered: bool,
    /// A frame from another host arrived since the request went out: the
    /// LAN reaches this node. Under a flood (a SYN flood at 20,000/s) the
    /// one answer a probe gets can be lost among the rest at the TAP's
    /// queue — taking that for a dead LAN made an owner decline to take
    /// over its dead primary (found by the SYN-cookie flood tests); a dead
    /// NIC, cable or port brings no frame at all.
    heard: bool,
    /// A request is in flight (sent, not yet judged).
    in_flight: bool,
    next_at: Instant,
    /// A request to send now.
    due: bool,
}

impl LanCheck {
    /// A check from node MAC `mac`, starting at `now` with the LAN taken as
    /// up (a node that cannot reach it is found out within `fall`
    /// intervals).
    pub fn new(cfg: LanCheckConfig, mac: EthernetAddress, now: Instant) -> Self {
        LanCheck {
            cfg: LanCheckConfig {
                fall: cfg.fall.max(1),
                rise: cfg.rise.max(1),
                interval: cfg.interval.max(Duration::from_millis(1)),
                ..cfg
            },
            mac,
            state: FallRise::new(cfg.fall, cfg.rise),
            answered: false,
            heard: false,
            in_flight: false,
            next_at: now,
            due: false,
        }
    }

    /// Whether the LAN is reachable now.
    pub fn is_up(&self) -> bool {
        self.state.is_up()
    }

    /// The configuration.
    pub fn config(&self) -> &LanCheckConfig {
        &self.cfg
    }

    /// Times the state changed so far.
    pub fn changes(&self) -> u64 {
        self.state.changes()
    }

    /// When [`LanCheck::handle_timeout`] has work.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        self.next_at
    }

    /// Advance to `now`: judge the request in flight, queue the next one.
    /// Returns a change of state, if this made one.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<LanChange> {
        if now < self.next_at {
            return None;
        }
        let change = if self.in_flight {
            self.state.observe(self.answered || self.heard).map(|up| {
                if up {
                    LanChange::Up
                } else {
                    LanChange::Down
                }
            })
        } else {
            None
        };
        self.in_flight = true;
        self.answered = false;
        self.heard = false;
        self.due = true;
        self.next_at = now + self.cfg.interval;
        change
    }

    /// The request to send, when one is due.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        if !std::mem::take(&mut self.due) {
            return None;
        }
        Some(Frame::copy_from(&arp::probe(self.mac, self.cfg.target)))
    }

    /// A frame from the LAN: whether it answers our request (then it is
    /// consumed). Only an ARP reply from the target to this node's MAC and
    /// to address 0.0.0.0, the sender of our probes: the target's answers
    /// to the stack's own requests (sent from the service address: the
    /// stack resolving the gateway, or in the lab the client) are the
    /// stack's.
    pub fn handle_frame(&mut self, frame: &[u8]) -> bool {
        if frame.len() >= 12 && frame[6..12] != self.mac.0 {
            self.heard = true;
        }
        let Some(a) = arp::parse(frame) else {
            return false;
        };
        if a.operation != ArpOperation::Reply
            || a.sender_ip != self.cfg.target
            || a.target_mac != self.mac
            || a.target_ip != Ipv4Address::UNSPECIFIED
        {
            return false;
        }
        self.answered = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const GW: Ipv4Address = Ipv4Address::new(10, 77, 0, 254);
    const GW_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xfe]);

    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    fn t0() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn check(t: Instant) -> LanCheck {
        LanCheck::new(
            LanCheckConfig {
                target: GW,
                interval: ms(200),
                fall: 3,
                rise: 2,
            },
            MAC,
            t,
        )
    }

    /// One interval: send the request, answer it if `answer`.
    fn tick(c: &mut LanCheck, t: Instant, answer: bool) -> Option<LanChange> {
        let change = c.handle_timeout(t);
        let req = c.poll_transmit().expect("a request each interval");
        let a = arp::parse(req.data()).expect("an ARP request");
        assert_eq!(a.operation, ArpOperation::Request);
        assert_eq!(
            a.sender_ip,
            Ipv4Address::UNSPECIFIED,
            "a probe: no cache changes"
        );
        assert_eq!(a.target_ip, GW);
        if answer {
            let reply = arp::reply(GW_MAC, GW, MAC, Ipv4Address::UNSPECIFIED);
            assert!(c.handle_frame(&reply));
        }
        change
    }

    #[test]
    fn falls_after_fall_misses_and_rises_after_rise_answers() {
        let t0 = t0();
        let mut c = check(t0);
        let mut t = t0;
        for _ in 0..5 {
            assert_eq!(tick(&mut c, t, true), None);
            t += ms(200);
        }
        assert!(c.is_up());
        // The LAN goes: misses 1 and 2 change nothing, the third does.
        assert_eq!(tick(&mut c, t, false), None);
        t += ms(200);
        assert_eq!(tick(&mut c, t, false), None);
        t += ms(200);
        assert_eq!(tick(&mut c, t, false), None);
        t += ms(200);
        assert_eq!(tick(&mut c, t, true), Some(LanChange::Down));
        assert!(!c.is_up());
        t += ms(200);
        // Back: one answer (judged now) is not enough, two are.
        assert_eq!(tick(&mut c, t, true), None);
        t += ms(200);
        assert_eq!(tick(&mut c, t, true), Some(LanChange::Up));
        assert!(c.is_up());
        assert_eq!(c.changes(), 2);
    }

    #[test]
    fn an_answer_from_another_host_or_to_another_mac_is_not_taken_but_heard() {
        let t0 = t0();
        let mut c = check(t0);
        let mut t = t0;
        let mut changes = Vec::new();
        for _ in 0..4 {
            changes.extend(c.handle_timeout(t));
            let _ = c.poll_transmit();
            let other = Ipv4Address::new(10, 77, 0, 9);
            assert!(!c.handle_frame(&arp::reply(GW_MAC, other, MAC, Ipv4Address::UNSPECIFIED)));
            let to = EthernetAddress([2, 0, 0, 0, 0, 9]);
            assert!(!c.handle_frame(&arp::reply(GW_MAC, GW, to, Ipv4Address::UNSPECIFIED)));
            // The gateway answering the stack's own request (sent from the
            // service address) is the stack's: not taken.
            let vip = Ipv4Address::new(10, 77, 0, 10);
            assert!(!c.handle_frame(&arp::reply(GW_MAC, GW, MAC, vip)));
            t += ms(200);
        }
        // Not answers, but frames from other hosts: the LAN reaches us.
        assert_eq!(changes, vec![]);
        assert!(c.is_up());
    }

    #[test]
    fn a_flood_that_drowns_the_answers_is_no_dead_lan_but_silence_is() {
        let t0 = t0();
        let mut c = check(t0);
        let mut t = t0;
        let client = EthernetAddress([2, 0, 0, 0, 0, 0x64]);
        let syn = |src: EthernetAddress| {
            let mut f = vec![0u8; 60];
            f[0..6].copy_from_slice(&MAC.0);
            f[6..12].copy_from_slice(&src.0);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f
        };
        // Every answer lost, but the flood's frames arrive: up throughout.
        for _ in 0..10 {
            assert_eq!(c.handle_timeout(t), None);
            let _ = c.poll_transmit();
            assert!(!c.handle_frame(&syn(client)));
            t += ms(200);
        }
        assert!(c.is_up());
        // Our own frames (looped back) prove nothing: silence is a cut.
        let mut changes = Vec::new();
        for _ in 0..4 {
            changes.extend(c.handle_timeout(t));
            let _ = c.poll_transmit();
            assert!(!c.handle_frame(&syn(MAC)));
            t += ms(200);
        }
        assert_eq!(changes, vec![LanChange::Down]);
    }

    #[test]
    fn nothing_before_the_interval_is_over() {
        let t0 = t0();
        let mut c = check(t0);
        assert_eq!(c.handle_timeout(t0), None);
        assert!(c.poll_transmit().is_some());
        assert_eq!(c.poll_timeout(), t0 + ms(200));
        assert_eq!(c.handle_timeout(t0 + ms(199)), None);
        assert!(c.poll_transmit().is_none());
    }
}
