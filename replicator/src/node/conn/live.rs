//! The live side: a connection this node answers, its HTTP output logged
//! (as primary) and written to the socket in whole units.

use std::time::Instant;

use bytes::Bytes;
use hotpair_http::OutputUnit;
use hotpair_stack::smoltcp::socket::tcp;
use hotpair_stack::ConnId;

use crate::node::stats::ServicePort;
use crate::{Event, Policy, UnitKind};

use super::out::OutQueue;
use super::tls::TLS_INDEX;
use super::{discard_input, input_log_limit, LiveConn, Pending, Queued, SiteDriver, CLOSE_INDEX};

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
        if c.tls.as_ref().is_some_and(|t| t.is_lost()) && sock.is_open() {
            // Its TLS state could not be taken over: it cannot go on.
            sock.abort();
            c.units.clear();
            c.unlogged.clear();
            c.finish = true;
            return None;
        }
        if !c.finish && c.tls.is_some() {
            self.read_tls(id, c, sock, now);
        }
        if !c.finish {
            // Client bytes into the HTTP layer, as far as it takes them (it
            // stops at the pipelining limit: back-pressure on the client).
            if !c.input.is_empty() {
                let n = c.http.handle_input(&c.input, now);
                c.input.drain(..n);
            }
            while c.tls.is_none() && c.input.is_empty() && sock.can_recv() {
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
            let tls_pending = c.tls.as_ref().is_some_and(|t| t.has_partial_input());
            let tls_closed = c.tls.as_ref().is_some_and(|t| t.client_closed());
            let socket_eof = !sock.may_recv() && sock.recv_queue() == 0 && !tls_pending;
            if !c.eof_seen && (socket_eof || tls_closed) && c.input.is_empty() {
                c.eof_seen = true;
                c.http.handle_eof(now);
            }
            // Requests go to a handler only while the replies this client
            // has not read stay under the output bound: a client that
            // pipelines requests and never reads holds at most that much
            // (plus one reply) here — and in its owner node's mirror.
            while c.pending_jobs == 0 && c.held_output() < self.shared.limits.max_output_bytes {
                let Some(req) = c.http.poll_request() else {
                    break;
                };
                let index = req.index;
                let local = self.local_policy(&req.path);
                if let Some(p) = local {
                    c.local.insert(index, p);
                }
                let port = ServicePort {
                    port: c.port,
                    https: c.tls.is_some(),
                };
                self.count_request(c.key, port, index, &req.path, local.is_some(), now);
                match self.dispatch(id, &c.key, c.port, req) {
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
            loop {
                // Our answer to a client KeyUpdate goes between the
                // replies to the requests before it and those after it.
                answer_key_update(c);
                let Some(u) = c.http.take_unit() else { break };
                self.queue_unit(c, u);
            }
            if c.http.is_closed() && c.unlogged.is_empty() && !c.close_queued {
                // The HTTP layer is done (EOF, timeout) after a reply that
                // did not say so: the close is a unit too, so the owner
                // node closes its shadow at the same byte.
                let u = OutputUnit {
                    index: CLOSE_INDEX,
                    kind: UnitKind::Interim,
                    input_end: c.http.input_consumed(),
                    close_after: true,
                    chunks: Vec::new(),
                };
                self.queue_unit(c, u);
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
            match u.out.write(sock) {
                Ok(n) => wrote |= n > 0,
                Err(e) => {
                    // Records reserved and not sealed as reserved: a bug,
                    // never a client's doing; the connection cannot go on.
                    tracing::error!(conn = %c.key, error = %e, "TLS: cannot seal a reply; aborting");
                    sock.abort();
                    c.units.clear();
                    c.unlogged.clear();
                    c.finish = true;
                    return None;
                }
            }
            if !u.out.is_empty() {
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

    /// A unit for the socket, sealed into TLS records on an HTTPS
    /// connection (so the log carries exactly what the socket gets).
    fn queue_unit(&mut self, c: &mut LiveConn, mut u: OutputUnit) {
        let mut sealing = None;
        if let Some(t) = c.tls.as_mut() {
            match t.defer(u.len(), u.close_after) {
                Ok(Some(d)) => sealing = Some(d),
                Ok(None) => u.chunks = Vec::new(),
                Err(e) => {
                    tracing::debug!(conn = %c.key, error = %e, "TLS: cannot seal; closing");
                    u.chunks = Vec::new();
                    u.close_after = true;
                }
            }
        }
        c.unlogged.push_back(Queued { unit: u, sealing });
    }

    /// HTTPS: the client's bytes through the TLS layer into `input`
    /// (plaintext); what the TLS layer writes itself (the flight, tickets,
    /// a KeyUpdate) queued as TLS units, logged before they are sent.
    fn read_tls(&mut self, id: ConnId, c: &mut LiveConn, sock: &mut tcp::Socket<'_>, now: Instant) {
        let limit = input_log_limit(&self.shared.limits);
        let Some(t) = c.tls.as_mut() else { return };
        let mut outs = Vec::new();
        let mut completed = Vec::new();
        let mut count = |read: super::tls::Read| completed.extend(read.completed);
        // A handshake step back from the shell first; else a survivor's
        // copy of the client's bytes.
        let mut result = match self.conns.tls_done.remove(&id) {
            Some(done) => t.job_done(done, &mut c.input, &mut outs),
            None => t.read(&[], &mut c.input, &mut outs),
        }
        .map(&mut count);
        while result.is_ok() && sock.can_recv() && c.input.len() < limit && t.wants_input() {
            let input = &mut c.input;
            let outs = &mut outs;
            let r = sock.recv(|buf| {
                let r = t.read(buf, input, outs);
                (buf.len(), r)
            });
            match r {
                Ok(Ok(read)) => count(read),
                Ok(Err(alert)) => result = Err(alert),
                Err(_) => break,
            }
        }
        if let Some(work) = t.take_job() {
            self.shared.tls_jobs.push_back(super::TlsJob {
                site: self.site,
                conn: id,
                work,
            });
        }
        for (resumed, suite) in completed {
            self.conns.tls_handshakes += 1;
            self.conns.tls_resumed += u64::from(resumed);
            *self.conns.tls_suites.entry(suite.name()).or_default() += 1;
        }
        for o in outs {
            c.unlogged.push_back(tls_unit(o));
        }
        if let Err(alert) = result {
            // The client broke TLS: its alert, then the connection closes
            // (logged like any close, so the owner closes at the same byte).
            self.conns.tls_errors += 1;
            c.input.clear();
            c.http.handle_eof(now);
            c.unlogged.push_back(Queued::plain(OutputUnit {
                index: CLOSE_INDEX,
                kind: UnitKind::Interim,
                input_end: c.http.input_consumed(),
                close_after: true,
                chunks: if alert.is_empty() {
                    Vec::new()
                } else {
                    vec![Bytes::from(alert)]
                },
            }));
            c.finish = true;
        }
    }

    /// Log units the HTTP layer handed out (primary) or release them at once.
    fn log_units(&mut self, c: &mut LiveConn) {
        let logging = self.primary_logging() && c.session == Some(self.conns.session);
        while let Some(q) = c.unlogged.front_mut() {
            let u = &q.unit;
            let local = if u.kind == UnitKind::Final {
                c.local.get(&u.index).copied()
            } else {
                None
            };
            // `Some(bytes)`: what the socket gets instead of the unit's own
            // (a TLS unit's bytes without its state; a logged payload).
            let (seq, released, sent) = if let (true, Some((policy, digest))) = (logging, local) {
                // Only the reply's place and its content generation
                // travel; the owner node makes the bytes itself from
                // that generation. `static` sends at once, `sync-static`
                // once the owner node has its copy (the unit's ack).
                let Some(replica) = self.replica.as_mut() else {
                    break;
                };
                match replica.log_local_unit(c.key, u.index, u.input_end, u.close_after, digest) {
                    Ok(seq) => {
                        self.shared.logged = true;
                        (Some(seq), policy == Policy::Static, None)
                    }
                    Err(_) => break,
                }
            } else if u.index == TLS_INDEX {
                // The TLS layer's own output: logged with the state after
                // it (`chunks`: that state's encoding, then the bytes).
                let bytes = u.chunks.get(1).cloned().unwrap_or_default();
                if logging {
                    let Some(replica) = self.replica.as_mut() else {
                        break;
                    };
                    match replica.log_unit(
                        c.key,
                        TLS_INDEX,
                        UnitKind::Interim,
                        u.input_end,
                        false,
                        Bytes::from(u.chunks.concat()),
                    ) {
                        Ok(seq) => {
                            self.shared.logged = true;
                            (Some(seq), false, Some(bytes))
                        }
                        Err(_) => break,
                    }
                } else {
                    (None, true, Some(bytes))
                }
            } else if logging {
                // The bytes cross the link: on HTTPS its records are
                // sealed now (kept sealed if the log is full: a retry
                // sends the same).
                let payload = q
                    .payload()
                    .expect("a unit's whole plaintext fills the records reserved for it");
                q.unit.chunks = vec![payload.clone()];
                let u = &q.unit;
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
                        (Some(seq), false, Some(payload))
                    }
                    // The window of unacknowledged units is full: retry
                    // after a release (back-pressure on this connection).
                    Err(_) => break,
                }
            } else {
                (None, true, None)
            };
            let q = c.unlogged.pop_front().expect("front exists");
            let (index, kind, close_after) = (q.unit.index, q.unit.kind, q.unit.close_after);
            if kind == UnitKind::Final {
                c.local.remove(&index);
            }
            if close_after {
                c.close_queued = true;
            }
            if index != CLOSE_INDEX && index != TLS_INDEX {
                let final_of = (kind == UnitKind::Final).then_some(index);
                self.conns.requests.unit_queued(c.key, final_of);
            }
            let out = match sent {
                Some(b) => OutQueue::from_bytes([b]),
                None => q.into_out(),
            };
            c.units.push_back(Pending {
                seq,
                released,
                out,
                from_http: index != CLOSE_INDEX && index != TLS_INDEX,
                close_after,
            });
        }
    }
}

/// What the TLS layer writes itself, as a unit: logged with its state
/// (`chunks`: the state's encoding, then the bytes for the client).
fn tls_unit(o: super::tls::TlsOut) -> Queued {
    Queued::plain(OutputUnit {
        index: TLS_INDEX,
        kind: UnitKind::Interim,
        input_end: o.input_end,
        close_after: false,
        chunks: vec![o.head, o.bytes],
    })
}

/// HTTPS: the client asked for a KeyUpdate; answer it once every request
/// that ended before it has its final reply sealed (queued), so that the
/// replies to those are under the key they were under when the client
/// sent its KeyUpdate — the key the owner node sealed its copies ahead
/// with — and every later reply under the new one. The client reads our
/// records under the old key until our KeyUpdate comes (RFC 8446 §4.6.3),
/// and cannot tell an answer held back from replies already in flight.
fn answer_key_update(c: &mut LiveConn) {
    let Some(t) = c.tls.as_mut() else { return };
    let Some(at) = t.answer_owed_at() else { return };
    if !c.http.replied_through(at) {
        return;
    }
    match t.answer_update() {
        Ok(Some(o)) => c.unlogged.push_back(tls_unit(o)),
        Ok(None) => {}
        Err(e) => {
            // Not a state this connection can go on from (a handshake
            // message half read): it closes, logged like any close so the
            // owner node closes at the same byte.
            tracing::debug!(conn = %c.key, error = %e, "TLS: cannot answer the client's KeyUpdate; closing");
            c.unlogged.push_back(Queued::plain(OutputUnit {
                index: CLOSE_INDEX,
                kind: UnitKind::Interim,
                input_end: c.http.input_consumed(),
                close_after: true,
                chunks: Vec::new(),
            }));
            c.finish = true;
        }
    }
}
