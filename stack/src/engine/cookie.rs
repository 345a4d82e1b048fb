//! SYN cookies (RFC 4987 §3.6), Linux's design: at the half-open bound a
//! SYN is answered with a SYN-ACK whose sequence number encodes the
//! handshake — a keyed hash of the 4-tuple and the client's ISN, a coarse
//! time counter and the client's MSS (an index into a short table) — and
//! nothing is kept; the client's ACK brings it back (`ack − 1`), and a
//! valid one opens the connection as if the SYN had been queued.
//!
//! `cookie = h(tuple, 0) + client_isn + (count << 24)
//!           + ((h(tuple, count) + mss_index) mod 2²⁴)`
//!
//! The counter ticks every [`TICK_SECS`] of wall time (both nodes of a
//! pair keep their clocks in time: they validate each other's cookies) —
//! the wall clock at the engine's start, given in its configuration, plus
//! the time passed in since: the engine reads no clock;
//! a cookie is good for [`MAX_AGE`] ticks, and for one tick ahead (a peer
//! whose clock is a little ahead made it). No TCP option but the MSS
//! survives: see `docs/architecture.md`, "SYN cookies".

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address, TcpSeqNumber};

use crate::seg::{self, Seg, ACK, RST, SYN};

use super::pool::{Phase, Slot};
use super::shadow::{Shadow, Track};
use super::types::{Frame, Role, Tuple};
use super::Engine;

/// Seconds per counter tick (Linux: 60 s, `tcp_cookie_time`).
pub const TICK_SECS: u64 = 64;
/// A cookie older than this many ticks is refused (Linux:
/// `MAX_SYNCOOKIE_AGE`, 2): 2 to 3 minutes in all.
pub const MAX_AGE: u32 = 2;
/// The MSS values a cookie can carry (Linux's `msstab`): the largest one
/// not above the client's is encoded, its index in 2 bits' worth.
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

/// The secret cookies are made with. Both nodes of a pair must hold the
/// same one (`appliance`: derived from the link's keys).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CookieKey(pub [u8; 32]);

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

/// One handshake's names: the client's endpoint and the service's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    pub client: Ipv4Address,
    pub client_port: u16,
    pub server: Ipv4Address,
    pub server_port: u16,
}

/// The counter at wall time `wall` (since the Unix epoch).
pub fn counter_at(wall: Duration) -> u32 {
    (wall.as_secs() / TICK_SECS) as u32
}

/// The index in [`MSS_TABLE`] of the largest entry not above `mss` (the
/// client's MSS option; 536, the default, without one).
pub fn mss_index(mss: Option<u16>) -> u32 {
    let mss = mss.unwrap_or(MSS_TABLE[0]);
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32
}

fn hash(key: &CookieKey, e: &Endpoints, count: u32, which: u8) -> u32 {
    let mut h = Sha256::new();
    h.update(key.0);
    h.update(e.client.octets());
    h.update(e.server.octets());
    h.update(e.client_port.to_be_bytes());
    h.update(e.server_port.to_be_bytes());
    h.update(count.to_be_bytes());
    h.update([which]);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The SYN-ACK's sequence number for a SYN of `client_isn` at `count`,
/// carrying `mss_index`.
pub fn make(key: &CookieKey, e: &Endpoints, client_isn: u32, count: u32, mss_index: u32) -> u32 {
    let low = hash(key, e, count, 1).wrapping_add(mss_index) & 0x00ff_ffff;
    hash(key, e, 0, 0)
        .wrapping_add(client_isn)
        .wrapping_add(count << 24)
        .wrapping_add(low)
}

/// Check `cookie` (the client's ACK − 1) for a handshake whose client ISN
/// was `client_isn` (its ACK's sequence number − 1), at counter `now`:
/// the MSS it carries, or `None` if it was not made with this key for this
/// handshake, or is too old.
pub fn check(
    key: &CookieKey,
    e: &Endpoints,
    client_isn: u32,
    cookie: u32,
    now: u32,
) -> Option<u16> {
    let c = cookie
        .wrapping_sub(hash(key, e, 0, 0))
        .wrapping_sub(client_isn);
    // Only the counter's low 8 bits travel: its age, modulo 256.
    let age = now.wrapping_sub(c >> 24) & 0xff;
    let count = match age {
        0..=MAX_AGE => now.wrapping_sub(age),
        // Made by a node whose clock is up to one tick ahead.
        0xff => now.wrapping_add(1),
        _ => return None,
    };
    let index = c.wrapping_sub(hash(key, e, count, 1)) & 0x00ff_ffff;
    MSS_TABLE.get(index as usize).copied()
}

/// What an ACK of no known connection turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CookieAck {
    /// A valid cookie: its connection is open (tracked, a socket in
    /// SYN-RECEIVED that the ACK completes).
    Opened,
    /// Dropped here: a bad cookie while ours may come back, or a good one
    /// with no room (the client retransmits).
    Drop,
    /// Not a cookie's ACK as far as this node can tell: as before cookies.
    NotCookie,
}

/// The MSS our SYN-ACK advertises: smoltcp's own (IP MTU 1500 − 40).
const OWN_MSS: u16 = 1460;

impl<C> Engine<C> {
    /// A new SYN from the LAN is answered with a cookie instead of queued:
    /// cookies are on and the half-open connections are at their bound.
    /// Only a node that hears SYNs first decides (simplex, or the owner
    /// node of a pair); a primary queues what its owner node forwards —
    /// its shadow is in the queue there.
    pub(super) fn cookie_instead(&self) -> bool {
        self.cfg
            .admission
            .syn_cookies
            .as_ref()
            .is_some_and(|c| c.send)
            && self.admitting_lan
            && matches!(self.mode, Role::Simplex | Role::Owner)
            && self.pending_syn.len() + self.pool.half_open.len()
                >= self.cfg.admission.max_half_open
    }

    /// Answer the SYN `s` (in `f`) with a SYN-ACK whose sequence number is
    /// its cookie, keeping nothing. It goes to the SYN's source MAC — the
    /// client's, or the router's for a client off the LAN — where smoltcp's
    /// own SYN-ACK would go after ARP (no ARP for a flood's sources, which
    /// need not exist). A source with no route (off the LAN, no gateway
    /// configured) gets nothing, as smoltcp, or Linux, would send nothing.
    pub(super) fn send_syn_cookie(&mut self, f: &Frame, s: &Seg) {
        if self.cfg.admission.syn_cookies.is_none() {
            return;
        }
        self.flood_warning(true);
        if self.next_hop(s.src).is_none() {
            self.stats.syn_cookies_unroutable += 1;
            return;
        }
        let Some(key) = self.cfg.admission.syn_cookies.as_ref().map(|c| c.key) else {
            return;
        };
        let key = &key;
        let e = Endpoints {
            client: s.src,
            client_port: s.src_port,
            server: s.dst,
            server_port: s.dst_port,
        };
        let mss = seg::mss_option(f.data(), s);
        let cookie = make(key, &e, s.seq, self.cookie_counter(), mss_index(mss));
        let syn_ack = seg::with_mss(
            seg::build(
                self.cfg.mac,
                s.src_mac,
                s.dst,
                s.src,
                s.dst_port,
                s.src_port,
                cookie,
                s.seq.wrapping_add(1),
                SYN | ACK,
                self.cookie_window(),
            ),
            OWN_MSS,
        );
        self.lan_out.push_back(Frame::copy_from(&syn_ack));
        self.stats.syn_cookies_sent += 1;
        self.cookie_sent_at = Some(self.last_poll);
    }

    /// The window a cookie's SYN-ACK advertises: with no window scaling,
    /// what an empty receive buffer offers, at most 64 KiB − 1.
    fn cookie_window(&self) -> u16 {
        u16::try_from(self.cfg.rx_buffer_bytes).unwrap_or(u16::MAX)
    }

    /// The cookie counter at this round: wall time, from the wall clock
    /// at the engine's start and the time passed in since (the engine
    /// reads no clock).
    fn cookie_counter(&self) -> u32 {
        let start = self
            .cfg
            .admission
            .syn_cookies
            .as_ref()
            .map_or(Duration::ZERO, |c| c.wall_start);
        counter_at(start + self.last_poll.saturating_duration_since(self.start))
    }

    /// This node's cookies may still come back (a tick beyond their
    /// life: a late ACK of an expired one is dropped too).
    fn cookies_recent(&self) -> bool {
        let life = Duration::from_secs(TICK_SECS * u64::from(MAX_AGE + 2));
        self.cookie_sent_at
            .is_some_and(|t| self.last_poll.saturating_duration_since(t) < life)
    }

    /// A segment of no known connection (`tuple`): if it is the ACK of a
    /// cookie — made here or by the peer, with the same key — open its
    /// connection: a listener takes the handshake up in SYN-RECEIVED
    /// (hotpair patch 13) and the segment, fed to it next, completes it.
    /// On the owner node the socket is the shadow, its ISN the cookie
    /// (the primary's is the same cookie: the offset is 0).
    pub(super) fn cookie_ack(&mut self, s: &Seg, tuple: Tuple) -> CookieAck {
        let Some(key) = self.cfg.admission.syn_cookies.as_ref().map(|c| c.key) else {
            return CookieAck::NotCookie;
        };
        let key = &key;
        if !s.has(ACK) || s.has(SYN) || s.has(RST) || self.tracks.contains_key(&tuple) {
            return CookieAck::NotCookie;
        }
        let e = Endpoints {
            client: s.src,
            client_port: s.src_port,
            server: s.dst,
            server_port: s.dst_port,
        };
        let client_isn = s.seq.wrapping_sub(1);
        let iss = s.ack.wrapping_sub(1);
        let Some(mss) = check(key, &e, client_isn, iss, self.cookie_counter()) else {
            if !self.cookies_recent() {
                return CookieAck::NotCookie;
            }
            // A forged or stale cookie: dropped, never answered (an RST
            // per forged ACK would be a reflection of the flood).
            self.stats.syn_cookies_rejected += 1;
            tracing::trace!(client = %s.src, port = s.src_port, "bad SYN cookie: dropped");
            return CookieAck::Drop;
        };
        if self.over_source_limit(tuple.0) {
            return CookieAck::Drop;
        }
        let mut slot = self.take_listener(s.dst_port);
        if slot.is_none() && self.arm_listener() {
            slot = self.take_listener(s.dst_port);
        }
        let Some(i) = slot else {
            // A full pool: the client's retransmission may find room.
            tracing::trace!(client = %s.src, port = s.src_port, "SYN cookie: no socket free");
            return CookieAck::Drop;
        };
        let shadow = self.mode == Role::Owner;
        let window = self.cookie_window();
        let local = IpEndpoint::new(IpAddress::Ipv4(s.dst), s.dst_port);
        let remote = IpEndpoint::new(IpAddress::Ipv4(s.src), s.src_port);
        let Some(sl) = self.pool.slots[i].as_ref() else {
            return CookieAck::Drop;
        };
        let sock = self.sockets.get_mut::<tcp::Socket>(sl.handle);
        if shadow {
            // As for every shadow: its ACK lets a segment go to the primary.
            sock.set_ack_delay(None);
        }
        if sock
            .accept_syn_cookie(
                local,
                remote,
                TcpSeqNumber(iss as i32),
                TcpSeqNumber(client_isn as i32),
                usize::from(mss),
                window,
            )
            .is_err()
        {
            // `take_listener` gives only listening sockets: not reached.
            self.list_listener(i);
            return CookieAck::Drop;
        }
        // The listener holds this handshake now, as after a SYN: said here,
        // not left for its next step to notice, so that a round whose
        // frames wait for the next (a full device) still finds it taken.
        // It is not entered among the half-open connections: the client
        // proved its round trip, so it takes none of the SYN queue's room
        // (a cookie goes out only when that queue is full, which it would
        // overfill) and is not the oldest handshake to drop for a SYN.
        if let Some(Slot {
            phase: Phase::Listening { half_open, since },
            ..
        }) = self.pool.slots[i].as_mut()
        {
            *half_open = Some(tuple);
            *since = Some(self.last_poll);
        }
        self.stats.syn_cookies_validated += 1;
        tracing::trace!(client = %s.src, port = s.src_port, shadow, "SYN cookie: connection opened");
        self.tracks.insert(
            tuple,
            Track {
                isn: client_isn,
                slot: Some(i),
                shadow: shadow.then(|| Shadow::from_cookie(iss, s.seq, window)),
                local: self.admitting_lan && !shadow,
                detached: None,
            },
        );
        *self.per_source.entry(tuple.0).or_default() += 1;
        // Checked at the end of the round like a SYN's: a socket that did
        // not take the handshake gives the tuple back.
        self.pending_syn.push(tuple);
        CookieAck::Opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: CookieKey = CookieKey([7; 32]);

    fn ends() -> Endpoints {
        Endpoints {
            client: Ipv4Address::new(10, 77, 0, 100),
            client_port: 40_000,
            server: Ipv4Address::new(10, 77, 0, 10),
            server_port: 80,
        }
    }

    #[test]
    fn a_cookie_checks_and_carries_its_mss() {
        for (i, &m) in MSS_TABLE.iter().enumerate() {
            for now in [0u32, 1, 255, 256, 27_000_000, u32::MAX] {
                let c = make(&KEY, &ends(), 123_456, now, i as u32);
                assert_eq!(check(&KEY, &ends(), 123_456, c, now), Some(m));
            }
        }
    }

    #[test]
    fn the_mss_index_rounds_down() {
        assert_eq!(mss_index(None), 0);
        assert_eq!(mss_index(Some(100)), 0);
        assert_eq!(mss_index(Some(1299)), 0);
        assert_eq!(mss_index(Some(1300)), 1);
        assert_eq!(mss_index(Some(1460)), 3);
        assert_eq!(mss_index(Some(9000)), 3);
    }

    #[test]
    fn a_cookie_expires_after_its_age_and_tolerates_one_tick_ahead() {
        let made = 1_000;
        let c = make(&KEY, &ends(), 5, made, 3);
        for now in made..=made + MAX_AGE {
            assert_eq!(
                check(&KEY, &ends(), 5, c, now),
                Some(1460),
                "age {}",
                now - made
            );
        }
        assert_eq!(check(&KEY, &ends(), 5, c, made + MAX_AGE + 1), None);
        assert_eq!(check(&KEY, &ends(), 5, c, made + 200), None);
        // This node's clock a tick behind the maker's.
        assert_eq!(check(&KEY, &ends(), 5, c, made - 1), Some(1460));
        assert_eq!(check(&KEY, &ends(), 5, c, made - 2), None);
        // 256 ticks later the low bits of the counter match again: the
        // hash of the full counter tells.
        assert_eq!(check(&KEY, &ends(), 5, c, made + 256), None);
    }

    #[test]
    fn another_tuple_isn_or_key_fails() {
        let c = make(&KEY, &ends(), 77, 500, 2);
        let mut other = ends();
        other.client_port += 1;
        assert_eq!(check(&KEY, &other, 77, c, 500), None);
        let mut other = ends();
        other.client = Ipv4Address::new(10, 77, 0, 101);
        assert_eq!(check(&KEY, &other, 77, c, 500), None);
        let mut other = ends();
        other.server_port = 443;
        assert_eq!(check(&KEY, &other, 77, c, 500), None);
        // Another client ISN moves the low bits past the MSS table (as in
        // Linux, the ISN is added, not hashed: an ISN a few apart shifts
        // the MSS index only — which only the cookie's receiver could use,
        // for the tuple it was sent to).
        assert_eq!(check(&KEY, &ends(), 77 + 1000, c, 500), None);
        assert_eq!(check(&KEY, &ends(), 77u32.wrapping_sub(1000), c, 500), None);
        assert_eq!(check(&KEY, &ends(), 77 + (1 << 24), c, 500), None);
        assert_eq!(check(&CookieKey([8; 32]), &ends(), 77, c, 500), None);
    }

    #[test]
    fn wrong_mss_bits_fail() {
        let c = make(&KEY, &ends(), 9, 42, 0);
        // Any change in the low 24 bits beyond the table's indices.
        for delta in [4u32, 5, 100, 0x00ff_0000] {
            assert_eq!(check(&KEY, &ends(), 9, c.wrapping_add(delta), 42), None);
        }
        // Changing the index within the table is what a forger would try:
        // it changes the hash's share as well only if the key is known, so
        // a random cookie passes with a probability of 4 / 2²⁴ per counter.
        let mut passed = 0;
        for guess in 0..100_000u32 {
            if check(&KEY, &ends(), 9, guess.wrapping_mul(2_654_435_761), 42).is_some() {
                passed += 1;
            }
        }
        assert!(passed <= 2, "{passed} random cookies passed");
    }
}
