//! The live side: a connection this node answers, its HTTP output logged
//! (as primary) and written to the socket in whole units.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use hotpair_http::OutputUnit;
use hotpair_stack::smoltcp::socket::tcp;
use hotpair_stack::ConnId;

use crate::{Event, Policy, UnitKind};

use super::{discard_input, LiveConn, Pending, SiteDriver, CLOSE_INDEX};

impl SiteDriver<'_> {
    pub(super) fn drive_live(
        &mut self,
        id: ConnId,
        c: &mut LiveConn,
        sock: &mut tcp::Socket<'_>,
        now: Instant,
    ) -> Option<Instant> {
        if let Some(replies) = self.conns.ready.remove(&id) {
            c.pending_jobs = c.pending_jobs.saturating_sub(replies.len());
            for (index, resp) in replies {
                self.conns.requests.answered(c.key, index, resp.status);
                let _ = c.http.send_response(index, resp);
            }
        }
        if let Some(events) = self.conns.conn_events.remove(&id) {
            for ev in events {
                if let Event::Release { seq, .. } = ev {
                    for u in c.units.iter_mut() {
                        if u.seq == Some(seq) {
                            u.released = true;
                        }
                    }
                }
            }
        }
        if !c.finish {
            // Client bytes into the HTTP layer, as far as it takes them (it
            // stops at the pipelining limit: back-pressure on the client).
            if !c.input.is_empty() {
                let n = c.http.handle_input(&c.input, now);
                c.input.drain(..n);
            }
            while c.input.is_empty() && sock.can_recv() {
                let http = &mut c.http;
                let taken = sock
                    .recv(|buf| {
                        let n = http.handle_input(buf, now);
                        (n, n)
                    })
                    .unwrap_or(0);
                if taken == 0 {
                    break;
                }
            }
            if !c.eof_seen && !sock.may_recv() && sock.recv_queue() == 0 && c.input.is_empty() {
                c.eof_seen = true;
                c.http.handle_eof(now);
            }
            // Requests go to a handler only while the replies this client
            // has not read stay under the output bound: a client that
            // pipelines requests and never reads holds at most that much
            // (plus one reply) here — and in its ingress node's mirror.
            while c.pending_jobs == 0 && c.held_output() < self.shared.limits.max_output_bytes {
                let Some(req) = c.http.poll_request() else {
                    break;
                };
                let index = req.index;
                let local = self.local_policy(&req.path);
                if let Some(p) = local {
                    c.local.insert(index, p);
                }
                self.count_request(c.key, index, &req.path, local.is_some(), now);
                match self.dispatch(id, &c.key, req) {
                    Some(resp) => {
                        self.conns.requests.answered(c.key, index, resp.status);
                        let _ = c.http.send_response(index, resp);
                    }
                    None => c.pending_jobs += 1,
                }
            }
            if c.http.poll_timeout().is_some_and(|t| t <= now) {
                c.http.handle_timeout(now);
            }
            while let Some(u) = c.http.take_unit() {
                c.unlogged.push_back(u);
            }
            if c.http.is_closed() && c.unlogged.is_empty() && !c.close_queued {
                // The HTTP layer is done (EOF, timeout) after a reply that
                // did not say so: the close is a unit too, so the ingress
                // node closes its shadow at the same byte.
                c.unlogged.push_back(OutputUnit {
                    index: CLOSE_INDEX,
                    kind: UnitKind::Interim,
                    input_end: c.http.input_consumed(),
                    close_after: true,
                    chunks: Vec::new(),
                });
            }
        }
        if c.finish || c.http.wants_close() {
            // Lingering close: the HTTP layer reads no more (an error reply,
            // `Connection: close`, a timeout), but the client may still be
            // sending (the rest of a rejected body). Drain and discard it, so
            // it is not stuck behind a zero window and can take our FIN.
            discard_input(sock);
        }
        self.log_units(c);
        // Write released units, in order.
        let mut wrote = false;
        while let Some(u) = c.units.front_mut() {
            if !u.released {
                break;
            }
            while let Some(front) = u.chunks.front() {
                let n = sock.send_slice(&front[u.offset..]).unwrap_or_default();
                wrote |= n > 0;
                u.offset += n;
                if u.offset < front.len() {
                    break;
                }
                u.chunks.pop_front();
                u.offset = 0;
            }
            if !u.chunks.is_empty() {
                break;
            }
            let u = c.units.pop_front().expect("front exists");
            if u.from_http {
                c.http.unit_flushed(now);
                self.conns.requests.unit_written(c.key, now);
            }
            if u.close_after {
                c.finish = true;
            }
        }
        let done = c.units.is_empty() && c.unlogged.is_empty();
        if done && (c.finish || (c.http.is_closed() && c.close_queued)) && sock.is_open() {
            // FIN after the queued bytes; smoltcp keeps retransmitting them.
            sock.close();
        }
        // The send timeout: released output the socket has not taken any
        // of (its buffer stays full: the client does not read). Units
        // waiting for the peer's ack are not the client's doing.
        let waiting = c.units.front().is_some_and(|u| u.released);
        if !waiting || wrote {
            c.send_stalled = None;
        } else if c.send_stalled.is_none() {
            c.send_stalled = Some(now);
        }
        let send_deadline = c
            .send_stalled
            .map(|since| since + self.shared.limits.send_timeout);
        if send_deadline.is_some_and(|t| now >= t) && sock.is_open() {
            tracing::debug!(conn = %c.key, "send timeout: the client took no output; aborting");
            self.conns.send_timeouts += 1;
            sock.abort();
            c.units.clear();
            c.unlogged.clear();
            c.finish = true;
            c.send_stalled = None;
            return None;
        }
        match (c.http.poll_timeout(), send_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Log units the HTTP layer handed out (primary) or release them at once.
    fn log_units(&mut self, c: &mut LiveConn) {
        let logging = self.primary_logging() && c.session == Some(self.conns.session);
        while let Some(u) = c.unlogged.front() {
            let local = if u.kind == UnitKind::Final {
                c.local.get(&u.index).copied()
            } else {
                None
            };
            let (seq, released, chunks) = if let (true, Some(policy)) = (logging, local) {
                // Only the reply's place travels; the ingress node makes
                // the bytes itself. `static` sends at once, `sync-static`
                // once the ingress node has its copy (the unit's ack).
                let Some(replica) = self.replica.as_mut() else {
                    break;
                };
                match replica.log_local_unit(c.key, u.index, u.input_end, u.close_after) {
                    Ok(seq) => {
                        self.shared.logged = true;
                        (
                            Some(seq),
                            policy == Policy::Static,
                            u.chunks.iter().cloned().collect(),
                        )
                    }
                    Err(_) => break,
                }
            } else if logging {
                let payload: Bytes = if u.chunks.len() == 1 {
                    u.chunks[0].clone()
                } else {
                    Bytes::from(u.chunks.concat())
                };
                let Some(replica) = self.replica.as_mut() else {
                    break;
                };
                match replica.log_unit(
                    c.key,
                    u.index,
                    u.kind,
                    u.input_end,
                    u.close_after,
                    payload.clone(),
                ) {
                    Ok(seq) => {
                        self.shared.logged = true;
                        (Some(seq), false, VecDeque::from([payload]))
                    }
                    // The window of unacknowledged units is full: retry
                    // after a release (back-pressure on this connection).
                    Err(_) => break,
                }
            } else {
                (None, true, u.chunks.iter().cloned().collect())
            };
            let u = c.unlogged.pop_front().expect("front exists");
            if u.kind == UnitKind::Final {
                c.local.remove(&u.index);
            }
            if u.close_after {
                c.close_queued = true;
            }
            if u.index != CLOSE_INDEX {
                let final_of = (u.kind == UnitKind::Final).then_some(u.index);
                self.conns.requests.unit_queued(c.key, final_of);
            }
            c.units.push_back(Pending {
                seq,
                released,
                chunks,
                offset: 0,
                from_http: u.index != CLOSE_INDEX,
                close_after: u.close_after,
            });
        }
    }
}
