//! The shadow side: a connection the owner node mirrors, fed the
//! primary's logged units, replying ahead for `static` routes.

use std::time::Instant;

use hotpair_stack::smoltcp::socket::tcp;
use hotpair_stack::ConnId;

use crate::{Event, Role, UnitKind};

use super::taken;
use super::tls::TLS_INDEX;
use super::{
    discard_input, input_log_limit, local_reply, same_bytes, static_mask, Ahead, Mirror, NoReply,
    SiteDriver, CLOSE_INDEX,
};

impl SiteDriver<'_> {
    pub(super) fn drive_shadow(
        &mut self,
        id: ConnId,
        m: &mut Mirror,
        sock: &mut tcp::Socket<'_>,
        now: Instant,
    ) {
        if !m.close_pending {
            // The request log first: a local unit is made from it.
            self.read_input_log(m, sock);
        }
        if let Some(events) = self.conns.conn_events.remove(&id) {
            for ev in events {
                match ev {
                    Event::Logged(crate::wire::Unit {
                        index,
                        kind,
                        input_end,
                        close_after,
                        local,
                        payload,
                        ..
                    }) => {
                        if let Some(t) = m.tls.as_mut() {
                            // HTTPS: units carry ciphertext. The TLS layer's
                            // own units set the state; the others' records
                            // are counted (the sending half at a takeover).
                            let r = if index == TLS_INDEX && !m.ahead.is_empty() {
                                // A new sending state before the replies
                                // made ahead: they were sealed under the
                                // old one. (The primary answers a client's
                                // KeyUpdate only after the replies to the
                                // requests before it, and no reply is made
                                // ahead here for a request after one not
                                // answered in the log: a primary that
                                // broke that rule.)
                                Err(hotpair_tls::TlsError::BadState(
                                    "a TLS unit came before the replies made ahead",
                                ))
                            } else if index == TLS_INDEX {
                                t.logged_tls_unit(&payload, input_end, &mut m.input_log)
                                    .map(Some)
                            } else if local {
                                // Made and sealed here, below.
                                Ok(None)
                            } else {
                                t.logged_records(&payload).map(|()| None)
                            };
                            match r {
                                Ok(Some(bytes)) => {
                                    m.units_out.push(bytes);
                                    continue;
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    let why = format!("TLS: {e}");
                                    self.diverge(m, index, &why);
                                    if index == TLS_INDEX {
                                        continue;
                                    }
                                }
                            }
                        }
                        // A final reply from the primary's unit (not one
                        // made ahead: that was noted when made): which route
                        // and status, for the takeover's count.
                        let noted = kind == UnitKind::Final
                            && index != CLOSE_INDEX
                            && m.ahead.front().is_none_or(|a| a.index != index);
                        let route = if noted {
                            let end = input_end.saturating_sub(m.input_base) as usize;
                            m.input_log
                                .get(..end)
                                .and_then(|req| taken::route_of(&self.shared.routes, req))
                        } else {
                            None
                        };
                        let status = if noted && m.tls.is_none() && !local {
                            taken::status_of([&payload])
                        } else {
                            None
                        };
                        let mut local_status = None;
                        // A local unit names the content generation the
                        // primary made its reply from (its payload).
                        let generation: Option<[u8; 32]> = if local {
                            payload[..].try_into().ok()
                        } else {
                            None
                        };
                        if m.ahead.front().is_some_and(|a| a.index == index) {
                            // This node made the reply already: the
                            // primary's unit must be for the same bytes.
                            let a = m.ahead.pop_front().expect("front exists");
                            let placed = kind == UnitKind::Final
                                && input_end == a.input_end
                                && close_after == a.close_after;
                            let same = match (local, generation) {
                                _ if !placed => Ok(false),
                                // HTTPS: the records, as the primary
                                // sealed them.
                                (false, _) => match (a.records, m.tls.as_ref()) {
                                    (Some(_), Some(t)) => t
                                        .reseal_ahead(&a.chunks, a.close_after)
                                        .map(|s| s == payload)
                                        .map_err(|e| format!("TLS: {e}")),
                                    _ => Ok(same_bytes(&a.chunks, &payload)),
                                },
                                // Made from the same generation: the
                                // same bytes.
                                (true, Some(g)) if g == a.digest => Ok(true),
                                // One node reloaded between the two
                                // decisions: the reply may still be the
                                // same (another file changed). Make the
                                // primary's from its generation and see.
                                (true, Some(g)) => self.remade_same(m, &a, &g, now),
                                (true, None) => {
                                    Err("a local unit without a content generation".to_owned())
                                }
                            };
                            // HTTPS: the records made ahead are logged
                            // ones now (the same records, when the same).
                            let same = match (same, m.tls.as_mut(), a.records) {
                                (Ok(true), Some(t), Some(n)) => t
                                    .ahead_logged(n, local)
                                    .map(|()| true)
                                    .map_err(|e| format!("TLS: {e}")),
                                (same, _, _) => same,
                            };
                            match same {
                                Ok(true) => {}
                                Ok(false) => self.diverge(
                                    m,
                                    index,
                                    "the primary answered otherwise than the reply made ahead",
                                ),
                                Err(why) => self.diverge(m, index, &why),
                            }
                        } else if !m.ahead.is_empty() {
                            self.diverge(
                                m,
                                index,
                                "a unit came for a request before the replies made ahead",
                            );
                        } else if local {
                            let end = input_end.saturating_sub(m.input_base) as usize;
                            let shared = &mut *self.shared;
                            let made = m
                                .input_log
                                .get(..end)
                                .ok_or_else(|| {
                                    format!(
                                        "the request ends at {input_end}, the log holds up to {}",
                                        m.input_base + m.input_log.len() as u64
                                    )
                                })
                                .and_then(|req| {
                                    let Some(g) = generation.as_ref() else {
                                        return Err(
                                            "a local unit without a content generation".to_owned()
                                        );
                                    };
                                    local_reply(
                                        shared,
                                        index,
                                        m.continue_for == Some(index),
                                        req,
                                        now,
                                        None,
                                        Some(g),
                                    )
                                    .map_err(|e| {
                                        if matches!(e, NoReply::Generation(_)) {
                                            shared.generation_missing += 1;
                                        }
                                        e.to_string()
                                    })
                                })
                                .and_then(|r| {
                                    if r.input_end == input_end - m.input_base {
                                        Ok(r.chunks)
                                    } else {
                                        Err(format!("the request ends at {} here", r.input_end))
                                    }
                                });
                            match made {
                                Ok(chunks) => match m.tls.as_mut() {
                                    None => {
                                        local_status = taken::status_of(&chunks);
                                        self.shared.local_replies += 1;
                                        m.units_out.extend(chunks);
                                    }
                                    // HTTPS: sealed as the primary sealed
                                    // its copy.
                                    Some(t) => match t.seal_local(&chunks, close_after) {
                                        Ok(sealed) => {
                                            self.shared.local_replies += 1;
                                            m.units_out.push_sealing(sealed);
                                        }
                                        Err(e) => {
                                            let why = format!("TLS: {e}");
                                            self.diverge(m, index, &why);
                                        }
                                    },
                                },
                                Err(why) => self.diverge(m, index, &why),
                            }
                        } else {
                            m.units_out.push(payload);
                        }
                        if noted {
                            let waiting = m.units_out.wire_len() as u64;
                            taken::note(&mut m.unacked, waiting, route, status.or(local_status));
                        }
                        match kind {
                            UnitKind::Final if index != CLOSE_INDEX => {
                                m.next_index = index + 1;
                                // The next request may be one to make ahead.
                                m.ahead_tried = 0;
                                // The request's input is answered: forget it.
                                let drop = input_end.saturating_sub(m.input_base) as usize;
                                let drop = drop.min(m.input_log.len());
                                m.input_log.drain(..drop);
                                m.input_base += drop as u64;
                            }
                            UnitKind::Interim if index != CLOSE_INDEX => {
                                m.continue_for = Some(index)
                            }
                            _ => {}
                        }
                        if close_after {
                            m.close_pending = true;
                        }
                    }
                    Event::ConnGone { .. } => {
                        m.gone = true;
                        m.primary_gone = true;
                    }
                    _ => {}
                }
            }
        }
        if m.close_pending {
            // The primary's connection reads no more (lingering close there):
            // nothing after this is a request; discard it here too.
            discard_input(sock);
        }
        self.read_input_log(m, sock);
        self.reply_ahead(m, now);
        let sent = match m.units_out.write(sock) {
            Ok(n) => n,
            Err(e) => {
                // Records reserved here and not sealed as reserved: this
                // copy is not the primary's any more.
                self.diverge(m, m.next_index, &format!("TLS: {e}"));
                0
            }
        };
        taken::sent(&mut m.unacked, sent, sock.send_queue());
        if m.close_pending && m.units_out.is_empty() && sock.is_open() && !m.diverged {
            sock.close();
        } else if m.gone && (!m.close_pending || m.diverged) && sock.is_open() {
            if m.diverged && !m.primary_gone && !m.detach_asked {
                // Given up while the primary serves on: the engine drops
                // the socket but keeps forwarding the client's segments
                // (freed, the slot would forget the tuple, and the owner
                // would drop them: the live connection stalled).
                m.detach_asked = true;
                self.conns.detach.push(id);
            } else {
                // The primary's connection was reset (or the engine could
                // not detach this one): so is ours (silently: a shadow's
                // output never leaves this node).
                sock.abort();
            }
        }
    }

    /// The reply made ahead `a` (the front of the input log's requests),
    /// against the primary's made from content generation `g`: whether
    /// the bytes are the same; an error when this node does not hold `g`.
    fn remade_same(
        &mut self,
        m: &Mirror,
        a: &Ahead,
        g: &[u8; 32],
        now: Instant,
    ) -> Result<bool, String> {
        let end = a.input_end.saturating_sub(m.input_base) as usize;
        let req = m
            .input_log
            .get(..end)
            .ok_or("the request made ahead is no longer in the log")?;
        match local_reply(self.shared, a.index, false, req, now, None, Some(g)) {
            Ok(r) => Ok(same_bytes(&a.chunks, &r.chunks.concat())),
            Err(e) => {
                if matches!(e, NoReply::Generation(_)) {
                    self.shared.generation_missing += 1;
                }
                Err(e.to_string())
            }
        }
    }

    /// Never a spliced reply: without the primary's bytes this shadow
    /// cannot take over; it goes (silently — its output never leaves this
    /// node).
    fn diverge(&mut self, m: &mut Mirror, index: u64, why: &str) {
        tracing::error!(conn = %m.key, index, reason = %why, "the reply here differs from the primary's; this connection will not survive the primary");
        if !m.diverged {
            self.shared.diverged += 1;
        }
        m.gone = true;
        m.diverged = true;
    }

    /// `static` routes, as the owner node: make the replies of whole
    /// requests in the input log now, without waiting for the primary's
    /// unit (one link trip later). The shadow then holds the reply bytes
    /// before the client can acknowledge them, so no client ACK waits
    /// here for the shadow to catch up.
    fn reply_ahead(&mut self, m: &mut Mirror, now: Instant) {
        const MAX_AHEAD: usize = 16;
        let owner = self
            .replica
            .as_ref()
            .is_some_and(|r| r.role() == Role::Owner);
        if !owner || m.diverged || m.gone || m.close_pending || m.ahead_closed {
            return;
        }
        let logged_to = m.input_base + m.input_log.len() as u64;
        let mask = static_mask(self.static_ok);
        if m.ahead_mask != mask {
            m.ahead_tried = 0;
        }
        while m.ahead.len() < MAX_AHEAD && m.ahead_tried != logged_to {
            let (index, start) = match m.ahead.back() {
                Some(a) => (a.index + 1, a.input_end),
                None => (m.next_index, m.input_base),
            };
            if m.continue_for == Some(index) || m.ahead_skip == Some(index) {
                // The primary answers it (it started with `100 Continue`,
                // or this node cannot make it).
                return;
            }
            // HTTPS: the sequence number or key of the next record is not
            // known here yet (the handshake's tickets not logged, or the
            // request begins after a client KeyUpdate the primary has not
            // answered in the log: its answer comes first): the reply is
            // made when its unit comes, or ahead once the answer is logged.
            if m.tls.as_ref().is_some_and(|t| !t.can_seal_ahead(start + 1)) {
                return;
            }
            let from = (start - m.input_base) as usize;
            let Some(input) = m.input_log.get(from..).filter(|i| !i.is_empty()) else {
                m.ahead_tried = logged_to;
                return;
            };
            match local_reply(
                self.shared,
                index,
                false,
                input,
                now,
                Some(self.static_ok),
                None,
            ) {
                Ok(r) => {
                    let input_end = start + r.input_end;
                    if m.tls.as_ref().is_some_and(|t| !t.can_seal_ahead(input_end)) {
                        // It ends after a KeyUpdate not answered yet: the
                        // primary's answer comes before it (as above).
                        return;
                    }
                    let sealed = match m.tls.as_mut() {
                        None => None,
                        Some(t) => match t.seal_ahead(&r.chunks, r.close_after, input_end) {
                            Ok(s) => Some(s),
                            // Nothing placed: the primary's unit decides.
                            Err(e) => {
                                tracing::debug!(conn = %m.key, error = %e, "TLS: no reply ahead");
                                m.ahead_skip = Some(index);
                                return;
                            }
                        },
                    };
                    self.shared.local_replies += 1;
                    self.shared.replies_ahead += 1;
                    let records = match sealed {
                        None => {
                            m.units_out.extend(r.chunks.iter().cloned());
                            None
                        }
                        Some((s, n)) => {
                            m.units_out.push_sealing(s);
                            Some(n)
                        }
                    };
                    let waiting = m.units_out.wire_len() as u64;
                    taken::note(
                        &mut m.unacked,
                        waiting,
                        taken::route_of(&self.shared.routes, input),
                        taken::status_of(&r.chunks),
                    );
                    m.ahead.push_back(Ahead {
                        index,
                        input_end,
                        close_after: r.close_after,
                        chunks: r.chunks,
                        records,
                        digest: r.digest,
                    });
                    if r.close_after {
                        m.ahead_closed = true;
                        return;
                    }
                }
                // Not whole yet: try again with more input (a request
                // head is small; past its limit it is not one to make
                // here, and no input is parsed twice over).
                Err(NoReply::Partial(_)) if input.len() <= self.shared.limits.max_header_bytes => {
                    m.ahead_tried = logged_to
                }
                // Static here but not (yet) in use: the digests of this
                // link session may still be on their way; try again when
                // they are.
                Err(NoReply::Logged) => {
                    m.ahead_tried = logged_to;
                    m.ahead_mask = mask;
                    return;
                }
                // Not for this node to answer: the primary's unit decides.
                Err(_) => {
                    m.ahead_skip = Some(index);
                    return;
                }
            }
        }
    }

    /// Keep the client's input (the request log) as far as allowed.
    fn read_input_log(&mut self, m: &mut Mirror, sock: &mut tcp::Socket<'_>) {
        let limit = input_log_limit(&self.shared.limits);
        if let Some(t) = m.tls.as_mut() {
            // HTTPS: the client's records, opened here once the flight's
            // state is logged; plaintext into the log.
            let mut failed = None;
            while failed.is_none() && sock.can_recv() && m.input_log.len() < limit && t.room() > 0 {
                let room = t.room();
                let log = &mut m.input_log;
                let r = sock.recv(|buf| {
                    let n = buf.len().min(room);
                    (n, (n, t.read(&buf[..n], log)))
                });
                match r {
                    Ok((0, _)) | Err(_) => break,
                    Ok((_, Ok(()))) => {}
                    Ok((_, Err(e))) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                // The client broke TLS: the primary fails it too and logs
                // its close (with the alert). Not a divergence; this
                // shadow just cannot take the connection over.
                tracing::debug!(conn = %m.key, error = %e, "TLS: the client's records do not open here");
            }
            return;
        }
        while sock.can_recv() && m.input_log.len() < limit {
            let room = limit - m.input_log.len();
            let log = &mut m.input_log;
            let n = sock
                .recv(|buf| {
                    let n = buf.len().min(room);
                    log.extend_from_slice(&buf[..n]);
                    (n, n)
                })
                .unwrap_or(0);
            if n == 0 {
                break;
            }
        }
    }
}
