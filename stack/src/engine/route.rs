//! Output routing and neighbours: smoltcp's output sorted (shadow output
//! observed and discarded, live shadows moved into the wire's sequence
//! space, no ARP from a primary), and the client MACs a primary learns from
//! forwarded frames.

use std::time::{Duration, Instant as StdInstant};

use smoltcp::wire::{EthernetAddress, Ipv4Address};

use crate::seg::{self, ACK, RST, SYN};

use super::types::{Frame, Role};
use super::Engine;

/// How often the primary refreshes a client's neighbour entry.
const NEIGHBOR_REFRESH: Duration = Duration::from_secs(20);
/// A neighbour entry not confirmed by a connection's frame for this long
/// may be replaced by any frame from that address (a client whose MAC
/// changed, with no connection open).
const NEIGHBOR_STALE: Duration = Duration::from_secs(60);

const MAX_NEIGHBORS: usize = 256;

impl<C> Engine<C> {
    /// The neighbour a frame to `ip` goes through: `ip` itself, if on the
    /// link, else the gateway.
    pub(super) fn next_hop(&self, ip: Ipv4Address) -> Option<Ipv4Address> {
        if self.cfg.address.contains_addr(&ip) {
            Some(ip)
        } else {
            self.cfg.gateway
        }
    }

    /// The MAC a frame to `ip` goes to, as learned from client frames.
    pub(super) fn next_hop_mac(&self, ip: Ipv4Address) -> Option<EthernetAddress> {
        let hop = self.next_hop(ip)?;
        self.neighbors.get(&hop).map(|(mac, _)| *mac)
    }

    /// The primary learns a client's MAC from the frames forwarded to it
    /// (smoltcp fills its neighbour cache only from ARP, and the primary
    /// must not ARP for the service address).
    ///
    /// A known entry changes only on a frame of a connection this node
    /// holds (its 4-tuple has a socket), or once it is stale: else one
    /// spoofed segment — a SYN or an ACK with the victim's address and
    /// another MAC — would divert the victim's replies to that MAC.
    pub(super) fn learn_neighbor(&mut self, frame: &[u8], now: StdInstant) {
        let Some(s) = seg::parse(frame) else { return };
        let Some(ip) = self.next_hop(s.src) else {
            return;
        };
        let fresh = self.neighbors.get(&ip).is_some_and(|(mac, at)| {
            *mac == s.src_mac && now.saturating_duration_since(*at) < NEIGHBOR_REFRESH
        });
        if fresh {
            return;
        }
        if let Some((mac, at)) = self.neighbors.get(&ip) {
            let held = self
                .tracks
                .get(&(s.src, s.src_port, s.dst_port))
                .is_some_and(|t| t.slot.is_some());
            let stale = now.saturating_duration_since(*at) >= NEIGHBOR_STALE;
            if *mac != s.src_mac && !held && !stale {
                self.stats.neighbor_refused += 1;
                return;
            }
        }
        if self.neighbors.len() >= MAX_NEIGHBORS && !self.neighbors.contains_key(&ip) {
            if let Some(oldest) = self
                .neighbors
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| *k)
            {
                self.neighbors.remove(&oldest);
            }
        }
        self.neighbors.insert(ip, (s.src_mac, now));
        let arp = crate::arp::reply(s.src_mac, ip, self.cfg.mac, self.cfg.address.address());
        self.queue_for_stack(Frame::copy_from(&arp), None);
    }

    /// Route smoltcp's output: shadow output is observed and discarded, the
    /// primary sends no ARP, live shadows get their sequence numbers moved
    /// into the wire's space.
    pub(super) fn route_output(&mut self) -> bool {
        let mut any = false;
        self.dev.tx_bytes = 0;
        while let Some(mut f) = self.dev.tx.pop_front() {
            any = true;
            if tracing::enabled!(tracing::Level::TRACE) {
                match seg::parse(f.data()) {
                    Some(s) => {
                        tracing::trace!(mode = ?self.mode, dst = %s.dst, seq = s.seq, ack = s.ack, flags = s.flags, len = s.payload_len, "smoltcp output")
                    }
                    None => {
                        tracing::trace!(mode = ?self.mode, len = f.data().len(), "smoltcp output (not TCP)")
                    }
                }
            }
            if crate::arp::is_arp(f.data()) {
                let quiet = self.arp_quiet && self.mode == Role::Owner;
                if self.mode == Role::Primary || quiet {
                    self.recycle(f);
                } else {
                    self.lan_out.push_back(f);
                }
                continue;
            }
            let Some(s) = seg::parse(f.data()) else {
                self.lan_out.push_back(f);
                continue;
            };
            let tuple = (s.dst, s.dst_port, s.src_port);
            let Some(tr) = self.tracks.get_mut(&tuple) else {
                self.lan_out.push_back(f);
                continue;
            };
            if tr.detached.is_some() {
                // No socket holds it: an RST smoltcp made for a segment
                // queued to the shadow before it went. Never the client's.
                self.recycle(f);
                continue;
            }
            if s.has(RST) && tr.slot.is_none() && !s.has(SYN) {
                // No socket took the SYN (pool full): the refusal is ours to
                // send, shadow or not.
                self.lan_out.push_back(f);
                continue;
            }
            let Some(sh) = tr.shadow.as_mut() else {
                self.lan_out.push_back(f);
                continue;
            };
            if s.has(SYN) && sh.isn.is_none() {
                sh.isn = Some(s.seq);
            }
            if !s.has(RST) {
                let end = s.seq_end();
                if sh.snd_end.is_none_or(|e| seg::seq_ge(end, e)) {
                    sh.snd_end = Some(end);
                }
                sh.window = s.window;
            }
            if s.has(ACK) && sh.rcv_nxt.is_none_or(|r| seg::seq_ge(s.ack, r)) {
                sh.rcv_nxt = Some(s.ack);
                sh.prune_sacked();
            }
            if !sh.live {
                // An out-of-order client segment makes the shadow send a
                // duplicate ACK whose SACK block covers what it stored.
                for b in seg::sack_blocks(f.data(), &s) {
                    if sh.rcv_nxt.is_none_or(|r| !seg::seq_ge(r, b.1)) {
                        sh.note_sack(b);
                    }
                }
            }
            if !sh.live {
                self.recycle(f);
                continue;
            }
            if sh.offset.is_none() && s.has(SYN) && sh.syn_again {
                // The client never saw the primary's SYN-ACK: ours stands.
                sh.offset = Some(0);
            }
            match sh.offset {
                Some(off) => {
                    seg::set_seq(f.data_mut(), &s, s.seq.wrapping_add(off));
                    self.lan_out.push_back(f);
                }
                // Not aligned yet (the client's first ACK will tell).
                None => self.recycle(f),
            }
        }
        any
    }
}
