//! The node's service: HTTP connections on the engine's sockets, handler
//! dispatch, and the replication glue.
//!
//! A connection is either **live** (this node answers it: simplex, primary,
//! or promoted after a takeover) or a **shadow** (ingress node, primary
//! alive). Live connections hand their HTTP output to the socket in whole
//! *units* (a reply, a `100 Continue`, a close); as primary, each unit is
//! logged to the ingress node first and written only once released (the
//! ingress node acknowledged it, or died). A shadow keeps the client's input
//! since the last complete reply and writes logged units into its socket in
//! order; at takeover it becomes live by resuming an HTTP connection at the
//! first request without a logged reply.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use bytes::Bytes;
use hotpair_http::files::Files;
use hotpair_http::{Limits, OutputUnit, Request, Response, ServerConn};
use hotpair_replicator::{Event, Msg, Replica, Role, UnitKind};
use hotpair_stack::smoltcp::socket::tcp;
use hotpair_stack::{ConnId, ConnInfo, Control, Engine, Frame, Service, Waker};

use crate::upstream::Upstream;

/// Marks a unit that answers no request: the connection closes here.
const CLOSE_INDEX: u64 = u64::MAX;

/// A route's handler, ready to serve.
pub enum Handler {
    Files(Files),
    Generate { max_size: usize },
    Upstream(Arc<Upstream>),
}

pub struct Route {
    pub prefix: String,
    pub handler: Handler,
}

/// The finished reply of an asynchronous handler.
struct Completion {
    id: ConnId,
    index: u64,
    response: Response,
}

/// Messages from the link task to the stack thread.
#[derive(Debug)]
pub enum LinkIn {
    /// The link is up and messages will arrive as `Msg` (channel transport,
    /// used by the simulation).
    Connected,
    Msg(Msg),
    /// The link is up: the stack thread reads and writes this socket itself,
    /// in its own epoll loop (no thread handoff per message).
    Socket(std::net::TcpStream),
    Lost(String),
}

/// Bytes read from the link socket per round, and written-but-unsent bytes
/// beyond which the replica is not polled for more (back-pressure).
const LINK_READ_PER_ROUND: usize = 8 << 20;
const LINK_WRITE_BUFFER: usize = 4 << 20;

/// The link socket, driven non-blocking by the stack thread.
struct LinkSocket {
    sock: std::net::TcpStream,
    dec: hotpair_replicator::wire::Decoder,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
}

impl LinkSocket {
    fn new(sock: std::net::TcpStream) -> std::io::Result<Self> {
        sock.set_nonblocking(true)?;
        sock.set_nodelay(true)?;
        Ok(LinkSocket {
            sock,
            dec: hotpair_replicator::wire::Decoder::new(),
            rbuf: vec![0; 256 * 1024],
            wbuf: Vec::new(),
            wpos: 0,
        })
    }

    /// Read what is there; every whole message goes to `deliver`.
    fn read(&mut self, mut deliver: impl FnMut(Msg)) -> Result<bool, String> {
        use std::io::Read;
        let mut total = 0;
        while total < LINK_READ_PER_ROUND {
            let room = self.dec.room().clamp(1, self.rbuf.len());
            match self.sock.read(&mut self.rbuf[..room]) {
                Ok(0) => return Err("peer closed the link".into()),
                Ok(n) => {
                    total += n;
                    self.dec.feed(&self.rbuf[..n]);
                    loop {
                        match self.dec.next() {
                            Ok(Some(m)) => deliver(m),
                            Ok(None) => break,
                            Err(e) => return Err(format!("peer sent garbage: {e}")),
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(total > 0)
    }

    fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    fn queue(&mut self, m: &Msg) -> Result<(), String> {
        m.encode(&mut self.wbuf).map_err(|e| format!("encode: {e}"))
    }

    fn flush(&mut self) -> Result<bool, String> {
        use std::io::Write;
        let mut wrote = false;
        while self.wpos < self.wbuf.len() {
            match self.sock.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err("link closed on write".into()),
                Ok(n) => {
                    self.wpos += n;
                    wrote = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos > (1 << 20) {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(wrote)
    }
}

/// The replication side of the service.
pub struct Replication {
    pub replica: Replica,
    pub from_link: mpsc::Receiver<LinkIn>,
    pub to_link: tokio::sync::mpsc::Sender<Msg>,
    /// Messages the link queue could not take yet (bounded: we stop polling
    /// the replica while it is long).
    outbox: VecDeque<Msg>,
    dead_since: Option<Instant>,
    sock: Option<LinkSocket>,
}

impl Replication {
    pub fn new(
        replica: Replica,
        from_link: mpsc::Receiver<LinkIn>,
        to_link: tokio::sync::mpsc::Sender<Msg>,
    ) -> Self {
        Replication {
            replica,
            from_link,
            to_link,
            outbox: VecDeque::new(),
            dead_since: None,
            sock: None,
        }
    }
}

fn key_of(info: &ConnInfo) -> hotpair_replicator::ConnKey {
    hotpair_replicator::ConnKey {
        client_ip: info.key.client_ip.octets(),
        client_port: info.key.client_port,
        client_isn: info.key.client_isn,
    }
}

fn unit_kind(k: hotpair_http::UnitKind) -> UnitKind {
    match k {
        hotpair_http::UnitKind::Interim => UnitKind::Interim,
        hotpair_http::UnitKind::Final => UnitKind::Final,
    }
}

/// A unit on its way to the socket.
struct Pending {
    /// Replica sequence number when logged; `None` when not logged.
    seq: Option<u64>,
    released: bool,
    chunks: VecDeque<Bytes>,
    /// Written bytes of the front chunk.
    offset: usize,
    /// The HTTP layer handed it out (report `unit_flushed` when written).
    from_http: bool,
    close_after: bool,
}

/// A connection this node answers.
pub struct LiveConn {
    http: ServerConn,
    key: hotpair_replicator::ConnKey,
    /// Client bytes read but not yet taken by the HTTP layer (a resumed
    /// connection starts with the input the old primary had not answered).
    input: Vec<u8>,
    /// Units taken from the HTTP layer that could not be logged yet.
    unlogged: VecDeque<OutputUnit>,
    units: VecDeque<Pending>,
    eof_seen: bool,
    /// A unit with `close_after` has been queued: nothing follows it.
    close_queued: bool,
    /// Stop reading and close once `units` are written (a shadow that was
    /// already closing when promoted).
    finish: bool,
}

/// The ingress node's mirror of a connection the primary answers.
pub struct Mirror {
    key: hotpair_replicator::ConnKey,
    /// Client input from `input_base` on: the requests without a logged reply.
    input_log: Vec<u8>,
    input_base: u64,
    /// Logged bytes not yet in the socket.
    units_out: VecDeque<Bytes>,
    front_offset: usize,
    /// First request without a logged final reply.
    next_index: u64,
    /// The request whose `100 Continue` was logged.
    continue_for: Option<u64>,
    close_pending: bool,
    gone: bool,
}

pub enum Conn {
    Live(Box<LiveConn>),
    Shadow(Mirror),
}

/// Drop whatever the client sent that nobody will read.
fn discard_input(sock: &mut tcp::Socket<'_>) {
    while sock.can_recv() {
        let n = sock.recv(|buf| (buf.len(), buf.len())).unwrap_or(0);
        if n == 0 {
            break;
        }
    }
}

/// Bytes of client input a shadow keeps for requests without a logged
/// reply, beyond which it stops reading (its window closes, and the
/// ingress node forwards nothing it does not hold).
fn input_log_limit(limits: &Limits) -> usize {
    (limits.max_header_bytes as u64 + limits.max_body_bytes + 64 * 1024).min(1 << 30) as usize
}

pub struct NodeService {
    routes: Vec<Route>,
    limits: Limits,
    runtime: tokio::runtime::Handle,
    done_tx: mpsc::Sender<Completion>,
    done_rx: mpsc::Receiver<Completion>,
    /// Replies that arrived for a connection, applied at its next drive.
    ready: BTreeMap<ConnId, Vec<(u64, Response)>>,
    live: BTreeMap<ConnId, hotpair_replicator::ConnKey>,
    by_key: BTreeMap<hotpair_replicator::ConnKey, ConnId>,
    /// Replication events for connections, applied at their next drive.
    conn_events: BTreeMap<ConnId, VecDeque<Event>>,
    waker: Waker,
    seeds: Arc<AtomicU64>,
    pub repl: Option<Replication>,
    woken: Vec<ConnId>,
    /// Run `generate` on the stack thread (deterministic simulation).
    inline_handlers: bool,
    /// Messages were queued for the link outside `exchange`.
    exchange_due: bool,
    /// Requests handed to a handler (a test counts re-executions with it).
    handler_runs: u64,
}

impl NodeService {
    pub fn new(
        routes: Vec<Route>,
        limits: Limits,
        runtime: tokio::runtime::Handle,
        waker: Waker,
        seed: u64,
        repl: Option<Replication>,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::channel();
        NodeService {
            routes,
            limits,
            runtime,
            done_tx,
            done_rx,
            ready: BTreeMap::new(),
            live: BTreeMap::new(),
            by_key: BTreeMap::new(),
            conn_events: BTreeMap::new(),
            waker,
            seeds: Arc::new(AtomicU64::new(seed)),
            repl,
            woken: Vec::new(),
            inline_handlers: false,
            exchange_due: false,
            handler_runs: 0,
        }
    }

    /// Requests handed to a handler so far.
    pub fn handler_runs(&self) -> u64 {
        self.handler_runs
    }

    /// Run CPU-bound handlers inline instead of on the runtime, so a
    /// simulation stays deterministic (it never uses `upstream`).
    pub fn set_inline_handlers(&mut self, inline: bool) {
        self.inline_handlers = inline;
    }

    fn dispatch(
        &mut self,
        id: ConnId,
        key: &hotpair_replicator::ConnKey,
        req: Request,
    ) -> Option<Response> {
        let Some(route) = self.routes.iter().find(|r| req.path.starts_with(&r.prefix)) else {
            return Some(Response::error(404));
        };
        self.handler_runs += 1;
        match &route.handler {
            Handler::Files(files) => Some(files.handle(&req)),
            Handler::Generate { max_size } => {
                let max_size = *max_size;
                // Non-deterministic content: each reply from a fresh seed.
                let seed = self
                    .seeds
                    .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
                if self.inline_handlers {
                    return Some(hotpair_http::generate::handle(&req, seed, max_size));
                }
                let tx = self.done_tx.clone();
                let waker = self.waker.clone();
                let index = req.index;
                self.runtime.spawn_blocking(move || {
                    let response = hotpair_http::generate::handle(&req, seed, max_size);
                    let _ = tx.send(Completion {
                        id,
                        index,
                        response,
                    });
                    waker.wake();
                });
                None
            }
            Handler::Upstream(up) => {
                let up = Arc::clone(up);
                let tx = self.done_tx.clone();
                let waker = self.waker.clone();
                let index = req.index;
                // The same on every node, so the application can tell a
                // request re-executed after a takeover.
                let request_id = format!("{key}-{index}");
                self.runtime.spawn(async move {
                    let response = up.handle(&req, &request_id).await;
                    let _ = tx.send(Completion {
                        id,
                        index,
                        response,
                    });
                    waker.wake();
                });
                None
            }
        }
    }

    fn primary_logging(&self) -> bool {
        self.repl
            .as_ref()
            .is_some_and(|r| r.replica.role() == Role::Primary)
    }

    fn drive_live(
        &mut self,
        id: ConnId,
        c: &mut LiveConn,
        sock: &mut tcp::Socket<'_>,
        now: Instant,
    ) -> Option<Instant> {
        if let Some(replies) = self.ready.remove(&id) {
            for (index, resp) in replies {
                let _ = c.http.send_response(index, resp);
            }
        }
        if let Some(events) = self.conn_events.remove(&id) {
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
            while let Some(req) = c.http.poll_request() {
                let index = req.index;
                if let Some(resp) = self.dispatch(id, &c.key, req) {
                    let _ = c.http.send_response(index, resp);
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
                    kind: hotpair_http::UnitKind::Interim,
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
        while let Some(u) = c.units.front_mut() {
            if !u.released {
                break;
            }
            while let Some(front) = u.chunks.front() {
                let n = sock.send_slice(&front[u.offset..]).unwrap_or_default();
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
        c.http.poll_timeout()
    }

    /// Log units the HTTP layer handed out (primary) or release them at once.
    fn log_units(&mut self, c: &mut LiveConn) {
        let logging = self.primary_logging();
        while let Some(u) = c.unlogged.front() {
            let (seq, released, chunks) = if logging {
                let payload: Bytes = if u.chunks.len() == 1 {
                    u.chunks[0].clone()
                } else {
                    Bytes::from(u.chunks.concat())
                };
                let Some(repl) = self.repl.as_mut() else {
                    break;
                };
                match repl.replica.log_unit(
                    c.key,
                    u.index,
                    unit_kind(u.kind),
                    u.input_end,
                    u.close_after,
                    payload.clone(),
                ) {
                    Ok(seq) => {
                        // Possibly from a handler's completion, after this
                        // round's exchange: the log record must not wait
                        // for the next wake-up.
                        self.exchange_due = true;
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
            if u.close_after {
                c.close_queued = true;
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

    fn drive_shadow(
        &mut self,
        id: ConnId,
        m: &mut Mirror,
        sock: &mut tcp::Socket<'_>,
    ) -> Option<Instant> {
        if let Some(events) = self.conn_events.remove(&id) {
            for ev in events {
                match ev {
                    Event::Logged {
                        index,
                        kind,
                        input_end,
                        close_after,
                        payload,
                        ..
                    } => {
                        if !payload.is_empty() {
                            m.units_out.push_back(payload);
                        }
                        match kind {
                            UnitKind::Final if index != CLOSE_INDEX => {
                                m.next_index = index + 1;
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
                    Event::ConnGone { .. } => m.gone = true,
                    _ => {}
                }
            }
        }
        if m.close_pending {
            // The primary's connection reads no more (lingering close there):
            // nothing after this is a request; discard it here too.
            discard_input(sock);
        }
        // Keep the client's input (the request log) as far as allowed.
        let limit = input_log_limit(&self.limits);
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
        while let Some(front) = m.units_out.front() {
            let n = sock.send_slice(&front[m.front_offset..]).unwrap_or(0);
            m.front_offset += n;
            if m.front_offset < front.len() {
                break;
            }
            m.units_out.pop_front();
            m.front_offset = 0;
        }
        if m.close_pending && m.units_out.is_empty() && sock.is_open() {
            sock.close();
        } else if m.gone && !m.close_pending && sock.is_open() {
            // The primary's connection was reset: so is ours (silently:
            // a shadow's output never leaves this node).
            sock.abort();
        }
        None
    }

    fn handle_event(
        &mut self,
        ev: Event,
        engine: &mut Engine<Conn>,
        ctl: &mut Control,
        now: Instant,
    ) {
        let conn_of = |by_key: &BTreeMap<_, ConnId>, k| by_key.get(k).copied();
        match ev {
            Event::Frame { frame } => engine.handle_peer_frame(Frame::copy_from(&frame)),
            Event::Release { conn, .. } | Event::Logged { conn, .. } | Event::ConnGone { conn } => {
                let key = conn;
                match conn_of(&self.by_key, &key) {
                    Some(id) => {
                        self.conn_events.entry(id).or_default().push_back(ev);
                        self.woken.push(id);
                    }
                    None => {
                        tracing::debug!(conn = %key, "replication event for an unknown connection")
                    }
                }
            }
            Event::PeerUp { node } => tracing::info!(peer = %node, "replication link up"),
            Event::PeerDead { since_heard } => {
                let Some(repl) = self.repl.as_mut() else {
                    return;
                };
                repl.dead_since = Some(now);
                match engine.mode() {
                    hotpair_stack::Mode::Ingress => ctl.promote = true,
                    hotpair_stack::Mode::Primary => ctl.claim = true,
                    hotpair_stack::Mode::Simplex => {}
                }
                tracing::info!(
                    silent_ms = since_heard.as_millis() as u64,
                    connections = engine.connections(),
                    "peer declared dead: taking over"
                );
            }
        }
    }
}

impl Service for NodeService {
    type Conn = Conn;

    fn accept(&mut self, id: ConnId, info: &ConnInfo, now: Instant) -> Conn {
        let key = key_of(info);
        tracing::trace!(?id, conn = %key, shadow = info.shadow, "connection");
        self.live.insert(id, key);
        self.by_key.insert(key, id);
        if info.shadow {
            Conn::Shadow(Mirror {
                key,
                input_log: Vec::new(),
                input_base: 0,
                units_out: VecDeque::new(),
                front_offset: 0,
                next_index: 0,
                continue_for: None,
                close_pending: false,
                gone: false,
            })
        } else {
            Conn::Live(Box::new(LiveConn {
                http: ServerConn::new(self.limits, now),
                key,
                input: Vec::new(),
                unlogged: VecDeque::new(),
                units: VecDeque::new(),
                eof_seen: false,
                close_queued: false,
                finish: false,
            }))
        }
    }

    fn drive(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        sock: &mut tcp::Socket<'_>,
        now: Instant,
    ) -> Option<Instant> {
        match conn {
            Conn::Live(c) => self.drive_live(id, c, sock, now),
            Conn::Shadow(m) => self.drive_shadow(id, m, sock),
        }
    }

    fn closed(&mut self, id: ConnId, conn: Conn) {
        if let Some(key) = self.live.remove(&id) {
            if self.by_key.get(&key) == Some(&id) {
                self.by_key.remove(&key);
            }
            if matches!(conn, Conn::Live(_)) {
                if let Some(repl) = self.repl.as_mut() {
                    repl.replica.conn_gone(key);
                    self.exchange_due = true;
                }
            }
        }
        self.ready.remove(&id);
        self.conn_events.remove(&id);
    }

    fn woken(&mut self, out: &mut Vec<ConnId>) {
        out.append(&mut self.woken);
        while let Ok(c) = self.done_rx.try_recv() {
            // A reply for a connection that is already gone is dropped.
            if self.live.contains_key(&c.id) {
                self.ready
                    .entry(c.id)
                    .or_default()
                    .push((c.index, c.response));
                out.push(c.id);
            }
        }
    }

    fn promote(&mut self, _id: ConnId, conn: &mut Conn, now: Instant) {
        let Conn::Shadow(m) = conn else { return };
        let mut http = ServerConn::resume(
            self.limits,
            now,
            m.next_index,
            m.continue_for == Some(m.next_index),
        );
        let mut units = VecDeque::new();
        let rest: VecDeque<Bytes> = std::mem::take(&mut m.units_out);
        if !rest.is_empty() {
            let mut chunks = rest;
            if m.front_offset > 0 {
                if let Some(f) = chunks.front_mut() {
                    *f = f.slice(m.front_offset..);
                }
            }
            units.push_back(Pending {
                seq: None,
                released: true,
                chunks,
                offset: 0,
                from_http: false,
                close_after: m.close_pending,
            });
        }
        if m.close_pending {
            // The old primary closed this connection after these bytes.
            http.handle_eof(now);
        }
        *conn = Conn::Live(Box::new(LiveConn {
            http,
            key: m.key,
            input: std::mem::take(&mut m.input_log),
            unlogged: VecDeque::new(),
            units,
            eof_seen: false,
            close_queued: m.close_pending,
            finish: m.close_pending,
        }));
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.repl.as_ref().and_then(|r| r.replica.poll_timeout())
    }

    fn extra_fd(&self) -> Option<(std::os::fd::RawFd, bool)> {
        use std::os::fd::AsRawFd;
        let ls = self.repl.as_ref()?.sock.as_ref()?;
        Some((ls.sock.as_raw_fd(), ls.pending() > 0))
    }

    fn wants_exchange(&self) -> bool {
        self.exchange_due
    }

    fn exchange(&mut self, engine: &mut Engine<Conn>, now: Instant) -> Control {
        self.exchange_due = false;
        let mut ctl = Control::default();
        let Some(repl) = self.repl.as_mut() else {
            return ctl;
        };
        // Link news.
        while let Ok(m) = repl.from_link.try_recv() {
            ctl.busy = true;
            match m {
                LinkIn::Connected => repl.replica.handle_connected(now),
                LinkIn::Socket(sock) => match LinkSocket::new(sock) {
                    Ok(ls) => {
                        repl.sock = Some(ls);
                        repl.replica.handle_connected(now);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "replication link socket unusable");
                        repl.replica.handle_link_lost(now);
                    }
                },
                LinkIn::Msg(msg) => {
                    if let Err(e) = repl.replica.handle_peer_msg(msg, now) {
                        tracing::warn!(error = %e, "replication peer broke the protocol; dropping the link");
                        repl.replica.handle_link_lost(now);
                    }
                }
                LinkIn::Lost(why) => {
                    tracing::info!(reason = %why, "replication link lost");
                    repl.replica.handle_link_lost(now);
                }
            }
        }
        if let Some(ls) = repl.sock.as_mut() {
            let replica = &mut repl.replica;
            let mut broke = None;
            let got = ls.read(|m| {
                if broke.is_none() {
                    if let Err(e) = replica.handle_peer_msg(m, now) {
                        broke = Some(e.to_string());
                    }
                }
            });
            let why = match (got, broke) {
                (_, Some(e)) => Some(format!("peer broke the protocol: {e}")),
                (Err(e), None) => Some(e),
                (Ok(moved), None) => {
                    ctl.busy |= moved;
                    None
                }
            };
            if let Some(why) = why {
                tracing::info!(reason = %why, "replication link lost");
                repl.sock = None;
                repl.replica.handle_link_lost(now);
            }
        }
        if repl.replica.poll_timeout().is_some_and(|t| t <= now) {
            repl.replica.handle_timeout(now);
        }
        // Client frames for the primary.
        while let Some(f) = engine.poll_forward() {
            ctl.busy = true;
            let bytes = Bytes::copy_from_slice(f.data());
            engine.recycle(f);
            // On back-pressure or no peer the frame is dropped: TCP
            // retransmits, and the primary never acknowledges it.
            if let Err(e) = repl.replica.forward_frame(bytes) {
                tracing::debug!(error = %e, "client frame not forwarded");
            }
        }
        let mut events = Vec::new();
        while let Some(ev) = repl.replica.poll_event() {
            events.push(ev);
        }
        // Messages for the link: straight into the socket's buffer when the
        // stack thread owns it.
        let repl = self.repl.as_mut().expect("checked");
        if let Some(ls) = repl.sock.as_mut() {
            let mut failed = None;
            while ls.pending() < LINK_WRITE_BUFFER {
                let Some(m) = repl.replica.poll_transmit() else {
                    break;
                };
                if let Err(e) = ls.queue(&m) {
                    failed = Some(e);
                    break;
                }
            }
            match failed.map_or_else(|| ls.flush(), Err) {
                Ok(wrote) => ctl.busy |= wrote,
                Err(why) => {
                    tracing::info!(reason = %why, "replication link lost");
                    repl.sock = None;
                    repl.replica.handle_link_lost(now);
                }
            }
        }
        // Channel transport (simulation): through the bounded queue.
        loop {
            let repl = self.repl.as_mut().expect("checked");
            if repl.sock.is_some() || repl.outbox.len() >= 1024 {
                break;
            }
            match repl.replica.poll_transmit() {
                Some(m) => repl.outbox.push_back(m),
                None => break,
            }
        }
        let repl = self.repl.as_mut().expect("checked");
        while let Some(m) = repl.outbox.pop_front() {
            match repl.to_link.try_send(m) {
                Ok(()) => ctl.busy = true,
                Err(tokio::sync::mpsc::error::TrySendError::Full(m)) => {
                    repl.outbox.push_front(m);
                    break;
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                    repl.outbox.clear();
                    break;
                }
            }
        }
        for ev in events {
            ctl.busy = true;
            self.handle_event(ev, engine, &mut ctl, now);
        }
        ctl
    }
}
