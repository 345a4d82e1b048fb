//! Where an HTTPS connection stood when the victim died: its handshake or
//! record phase, read from what the world had seen by then — the client's
//! TLS state and bytes, the client's bytes that had reached the address's
//! primary, the TLS units (HelloRetryRequest, flight, tickets: each logged
//! with the connection's state before the client gets it) delivered to the
//! address's owner or still on the link. Nothing here is a step table: a
//! phase is what these observations say, so a lossy run or a resumed
//! handshake lands kills in whatever phases its steps really were in.

use std::collections::BTreeMap;

use bytes::Bytes;
use hotpair_replicator::node::TLS_INDEX;
use hotpair_replicator::Msg;

use crate::addresses::{vip_index, Who, TLS_PORT};
use crate::client::{ClientConn, CLIENT_IP};
use crate::node::LinkIn;
use crate::topology::Address;

use super::{Delivery, World};

/// An HTTPS connection's phase, in the order a connection goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsPhase {
    /// Not opened yet: an earlier connection of the scenario is under way
    /// (the one a resumption takes its ticket from).
    Earlier,
    /// TCP handshake: the client has sent no TLS byte.
    Tcp,
    /// The ClientHello is on the LAN; the owner has none of it.
    HelloSent,
    /// The owner has (part of) the ClientHello, forwarded on the link; the
    /// primary has none of it.
    HelloForwarded,
    /// The primary has (part of) the ClientHello and has answered nothing
    /// (rare here: the simulation runs a handshake step in the round that
    /// read its records, so the answer is on the link by the next step).
    HelloAtPrimary,
    /// The primary made a HelloRetryRequest (on the link or logged at the
    /// owner); the client has not had all of it.
    Retry,
    /// The client has the HelloRetryRequest (its second ClientHello is on
    /// its way); no flight made yet.
    HelloAgain,
    /// The server flight (with the connection's state) is on the link to
    /// the owner, not logged yet.
    FlightOnLink,
    /// The flight is logged at the owner; none of it is on the LAN to the
    /// client yet.
    FlightLogged,
    /// The flight is on the LAN to the client; the client has none of it.
    FlightSent,
    /// The client has (part of) the flight; its Finished is not sent.
    FlightAtClient,
    /// The client's handshake is over: its Finished (and, right behind
    /// it, its first request) sent; the server has made no session ticket
    /// (none on the link or logged), so it has not read that Finished.
    ClientFinished,
    /// Session tickets made (on the link to the owner, logged, or at the
    /// client); no request sent.
    Tickets,
    /// Tickets made and a request sent; no reply byte at the client.
    Request,
    /// Reply records coming in.
    Reply,
    /// Every reply in, or the server said it closes, or the client has
    /// closed (close_notify, FIN): closing.
    Close,
    /// The connection is done.
    After,
}

impl TlsPhase {
    pub const ALL: [TlsPhase; 17] = [
        TlsPhase::Earlier,
        TlsPhase::Tcp,
        TlsPhase::HelloSent,
        TlsPhase::HelloForwarded,
        TlsPhase::HelloAtPrimary,
        TlsPhase::Retry,
        TlsPhase::HelloAgain,
        TlsPhase::FlightOnLink,
        TlsPhase::FlightLogged,
        TlsPhase::FlightSent,
        TlsPhase::FlightAtClient,
        TlsPhase::ClientFinished,
        TlsPhase::Tickets,
        TlsPhase::Request,
        TlsPhase::Reply,
        TlsPhase::Close,
        TlsPhase::After,
    ];

    /// Inside the connection's TCP or TLS handshake: from its SYN to the
    /// client's Finished (the tickets after it are records of their own).
    pub fn in_handshake(self) -> bool {
        (TlsPhase::Tcp..=TlsPhase::ClientFinished).contains(&self)
    }

    pub fn name(self) -> &'static str {
        match self {
            TlsPhase::Earlier => "earlier connection",
            TlsPhase::Tcp => "TCP handshake",
            TlsPhase::HelloSent => "ClientHello sent",
            TlsPhase::HelloForwarded => "ClientHello forwarded",
            TlsPhase::HelloAtPrimary => "ClientHello at primary",
            TlsPhase::Retry => "HelloRetryRequest made",
            TlsPhase::HelloAgain => "2nd ClientHello",
            TlsPhase::FlightOnLink => "flight on the link",
            TlsPhase::FlightLogged => "flight logged",
            TlsPhase::FlightSent => "flight sent",
            TlsPhase::FlightAtClient => "flight at client",
            TlsPhase::ClientFinished => "client Finished",
            TlsPhase::Tickets => "tickets",
            TlsPhase::Request => "first request",
            TlsPhase::Reply => "reply records",
            TlsPhase::Close => "close",
            TlsPhase::After => "after the connection",
        }
    }
}

/// What the world saw of one HTTPS connection (by client port) on the
/// server side.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct TlsSeen {
    /// Client TCP payload bytes delivered to the address's owner, and
    /// to its primary.
    at_owner: u64,
    at_primary: u64,
    /// TLS units without a state (a HelloRetryRequest) logged at the
    /// owner, and the bytes they carry for the client.
    retry_units: u64,
    retry_bytes: u64,
    /// TLS units with a state logged at the owner: the flight, then the
    /// tickets, then answers to KeyUpdates.
    state_units: u64,
}

/// What is on its way for one connection: TLS units on the link to the
/// owner (without a state, with one), and server bytes on the LAN to the
/// client.
#[derive(Debug, Default, Clone, Copy)]
struct Queued {
    retry: u64,
    state: u64,
    to_client: u64,
}

/// A TLS unit's logged payload: its state's length first (0: none).
fn has_state(payload: &Bytes) -> Option<bool> {
    let n = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]);
    Some(n > 0)
}

impl World {
    /// A frame from the client reached node `to` (from the LAN, or
    /// forwarded on a link): count its TLS payload if `to` is the
    /// address's primary.
    pub(super) fn see_client_frame(&mut self, to: Who, frame: &[u8]) {
        let Some(s) = hotpair_stack::seg::parse(frame) else {
            return;
        };
        if s.src != CLIENT_IP || s.dst_port != TLS_PORT || s.payload_len == 0 {
            return;
        }
        let Some(a) = vip_index(s.dst).and_then(|a| self.addrs.get(a)).copied() else {
            return;
        };
        let seen = self.tls_seen.entry(s.src_port).or_default();
        if a.primary == to {
            seen.at_primary += s.payload_len as u64;
        }
        if a.owner == to {
            seen.at_owner += s.payload_len as u64;
        }
    }

    /// A link message delivered to node `to`: a TLS unit logged at the
    /// address's owner, or a client frame forwarded to its primary.
    pub(super) fn see_link_msg(&mut self, to: Who, msg: &LinkIn) {
        let LinkIn::Msg(channel, m) = msg else {
            return;
        };
        match m {
            Msg::Frame { frame } => self.see_client_frame(to, frame),
            Msg::Unit(u) if u.index == TLS_INDEX => {
                let ip = hotpair_stack::smoltcp::wire::Ipv4Address::from(*channel);
                let owner = vip_index(ip)
                    .and_then(|a| self.addrs.get(a))
                    .is_some_and(|a| a.owner == to);
                if !owner {
                    return;
                }
                let seen = self.tls_seen.entry(u.conn.client_port).or_default();
                match has_state(&u.payload) {
                    Some(false) => {
                        seen.retry_units += 1;
                        seen.retry_bytes += u.payload.len() as u64 - 2;
                    }
                    Some(true) => seen.state_units += 1,
                    None => {}
                }
            }
            _ => {}
        }
    }

    /// TLS units on their way to an owner, and server bytes to the
    /// client, per client port.
    fn queued_tls(&self) -> BTreeMap<u16, Queued> {
        let mut q: BTreeMap<u16, Queued> = BTreeMap::new();
        for d in self.queue.values() {
            if let Delivery::Lan {
                to: super::Port::Client,
                frame,
                ..
            } = d
            {
                if let Some(s) = hotpair_stack::seg::parse(frame)
                    .filter(|s| s.src_port == TLS_PORT && s.dst == CLIENT_IP)
                {
                    q.entry(s.dst_port).or_default().to_client += s.payload_len as u64;
                }
                continue;
            }
            let Delivery::Link {
                to,
                msg: LinkIn::Msg(channel, Msg::Unit(u)),
                ..
            } = d
            else {
                continue;
            };
            if u.index != TLS_INDEX {
                continue;
            }
            let ip = hotpair_stack::smoltcp::wire::Ipv4Address::from(*channel);
            let to_owner = vip_index(ip)
                .and_then(|a| self.addrs.get(a))
                .is_some_and(|a| a.owner == *to);
            if !to_owner {
                continue;
            }
            let e = q.entry(u.conn.client_port).or_default();
            match has_state(&u.payload) {
                Some(false) => e.retry += 1,
                Some(true) => e.state += 1,
                None => {}
            }
        }
        q
    }

    /// The connection a kill of `victim` is judged by: on the first
    /// address the victim is the primary of (else the owner of), the last
    /// HTTPS connection of the scenario (a resumption's second one).
    pub(super) fn focus_conn(&self, victim: Option<Who>) -> Option<usize> {
        let address: Option<&Address> = victim
            .and_then(|v| {
                self.addrs
                    .iter()
                    .find(|a| a.primary == v)
                    .or_else(|| self.addrs.iter().find(|a| a.owner == v))
            })
            .or_else(|| self.addrs.first());
        let a = address?.index;
        self.client
            .conns
            .iter()
            .rposition(|c| c.script.tls && c.script.address == a)
    }

    /// The phase the focus connection of a kill of `victim` is in now.
    pub(super) fn tls_phase(&self, victim: Who) -> Option<TlsPhase> {
        let c: &ClientConn = &self.client.conns[self.focus_conn(Some(victim))?];
        let seen = self
            .tls_seen
            .get(&c.local_port)
            .copied()
            .unwrap_or_default();
        let queued = self
            .queued_tls()
            .get(&c.local_port)
            .copied()
            .unwrap_or_default();
        let tickets = seen.state_units + queued.state >= 2
            || self.client.tls.tickets_received() > c.tickets_at_open;
        let p = if !c.opened {
            TlsPhase::Earlier
        } else if c.done() {
            TlsPhase::After
        } else if c.closed_by_us
            || c.server_closes
            // (A connection without requests has all its replies at once.)
            || (c.replies_at.is_some() && !c.script.requests.is_empty())
        {
            TlsPhase::Close
        } else if !c.received.is_empty() {
            TlsPhase::Reply
        } else if c.handshake_kind.is_some() {
            if !tickets {
                TlsPhase::ClientFinished
            } else if c.next_req > 0 {
                TlsPhase::Request
            } else {
                TlsPhase::Tickets
            }
        } else if c.wire_received > seen.retry_bytes {
            TlsPhase::FlightAtClient
        } else if seen.state_units > 0 && queued.to_client > 0 {
            TlsPhase::FlightSent
        } else if seen.state_units > 0 {
            TlsPhase::FlightLogged
        } else if queued.state > 0 {
            TlsPhase::FlightOnLink
        } else if seen.retry_units > 0 && c.wire_received >= seen.retry_bytes {
            TlsPhase::HelloAgain
        } else if seen.retry_units + queued.retry > 0 {
            TlsPhase::Retry
        } else if c.wire_sent == 0 {
            TlsPhase::Tcp
        } else if seen.at_primary > 0 {
            TlsPhase::HelloAtPrimary
        } else if seen.at_owner > 0 {
            TlsPhase::HelloForwarded
        } else {
            TlsPhase::HelloSent
        };
        Some(p)
    }
}
