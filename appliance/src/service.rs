//! The node's I/O around the sans-IO node core
//! ([`hotpair_replicator::node::NodeCore`]): the replication link sockets,
//! driven non-blocking on the stack thread, and the handlers that may block
//! or burn CPU (`generate`, `upstream`), run on a tokio runtime. The TAP
//! shell drives this through [`hotpair_stack::Node`]; every decision is the
//! core's.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Instant;

use hotpair_http::Response;
use hotpair_replicator::node::{
    Drive, HandshakeDone, Job, LinkAction, NodeCore, PeerId, RoleChange, Served, TlsJob, Work,
};
use hotpair_replicator::wire::Decoder;
use hotpair_replicator::Msg;
use hotpair_stack::{ConnId, Frame, Node, Waker};

use crate::link::LinkIn;
use crate::secure::Session;

/// A SIGHUP reload, read off the stack thread, for it to apply.
pub enum ReloadIn {
    /// The config loaded and changed nothing that cannot change live:
    /// the new routes (docroots read), their upstream proxies, and their
    /// prefixes (longest first) for the access log.
    Ready {
        routes: Vec<hotpair_replicator::node::Route>,
        upstreams: crate::upstream::Upstreams,
        prefixes: Vec<String>,
        /// `[tls]` read again (certificates, keys, ticket keys).
        tls: Option<std::sync::Arc<hotpair_tls::TlsServerConfig>>,
    },
    /// The config changed these keys, which cannot change live.
    Refused(Vec<&'static str>),
    /// The config did not load (or a docroot did not read).
    Failed(String),
}

/// Plaintext sealed per step of a flush: four Noise messages.
const SEAL_SLICE: usize = 4 * crate::secure::MAX_PLAIN;

/// Bytes read from a link socket per round.
const LINK_READ_PER_ROUND: usize = 8 << 20;
/// Written-but-unsent bytes beyond which the core is not polled for more
/// (back-pressure). Small, so that what waits for a busy link waits in the
/// core's queue, where connections take turns (replica/queue.rs), not in
/// one first-in, first-out buffer here: a client's small reply queued
/// behind this much of others' at most (plus the kernel's send buffer).
/// Many rounds' worth of a LAN link's bandwidth-delay product all the same.
const LINK_WRITE_BUFFER: usize = 256 << 10;
/// The kernel's share of the same: a link socket takes no more once this
/// much it holds is not yet sent (`TCP_NOTSENT_LOWAT`; bytes in flight, a
/// congestion window's worth, are not counted, so throughput is not
/// capped). Without it the kernel's send buffer (megabytes, autotuned) is
/// a first-in, first-out queue in front of every turn the core gives.
const LINK_NOTSENT_LOWAT: u32 = 128 << 10;

/// `TCP_NOTSENT_LOWAT` on a link socket; a kernel without it (before
/// Linux 3.12) keeps the plain send buffer, logged once per link.
fn set_notsent_lowat(sock: &std::net::TcpStream, bytes: u32) {
    use std::os::fd::AsRawFd;
    let v = bytes as libc::c_int;
    // SAFETY: a valid socket descriptor and a c_int option value of the
    // size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "TCP_NOTSENT_LOWAT not set on the link socket");
    }
}
const LINK_WRITE_PER_ROUND: usize = 4 << 20;

/// A link socket, driven non-blocking by the stack thread.
struct LinkSocket {
    sock: std::net::TcpStream,
    session: Session,
    dec: Decoder,
    rbuf: Vec<u8>,
    /// Sealed bytes read, from a Noise message boundary on.
    cipher: Vec<u8>,
    /// Opened bytes for the decoder.
    plain: Vec<u8>,
    /// Encoded messages not sealed yet (sealed in batches: one Noise
    /// message per up to 64 KiB, not one per replicator message).
    unsealed: Vec<u8>,
    /// Bytes of `unsealed` already sealed into `wbuf`.
    sealed: usize,
    wbuf: Vec<u8>,
    wpos: usize,
}

impl LinkSocket {
    fn new(sock: std::net::TcpStream, session: Session) -> std::io::Result<Self> {
        sock.set_nonblocking(true)?;
        sock.set_nodelay(true)?;
        set_notsent_lowat(&sock, LINK_NOTSENT_LOWAT);
        Ok(LinkSocket {
            sock,
            session,
            dec: Decoder::new(),
            rbuf: vec![0; 256 * 1024],
            cipher: Vec::new(),
            plain: Vec::new(),
            unsealed: Vec::new(),
            sealed: 0,
            wbuf: Vec::new(),
            wpos: 0,
        })
    }

    /// Read what is there; every whole message goes to `deliver`, which may
    /// refuse it (the link is dropped then). Returns whether bytes were
    /// read, and whether any of them opened (authenticated and decrypted;
    /// on a plaintext link, any byte): only opened bytes are a sign of the
    /// peer's life — anyone on the path can make raw bytes arrive.
    fn read(
        &mut self,
        mut deliver: impl FnMut(u32, Msg) -> Result<(), String>,
    ) -> Result<(bool, bool), String> {
        use std::io::Read;
        let mut total = 0;
        let mut opened = false;
        while total < LINK_READ_PER_ROUND {
            let room = if self.session.is_plaintext() {
                self.dec.room().clamp(1, self.rbuf.len())
            } else {
                self.rbuf.len()
            };
            match self.sock.read(&mut self.rbuf[..room]) {
                Ok(0) => return Err("peer closed the link".into()),
                Ok(n) => {
                    total += n;
                    if self.session.is_plaintext() {
                        opened = true;
                        self.dec.feed(&self.rbuf[..n]);
                        self.decode(&mut deliver)?;
                    } else {
                        self.cipher.extend_from_slice(&self.rbuf[..n]);
                        self.session
                            .open(&mut self.cipher, &mut self.plain)
                            .map_err(|e| e.to_string())?;
                        opened |= !self.plain.is_empty();
                        // Within the decoder's bound, as the plaintext
                        // path's reads are.
                        let mut at = 0;
                        while at < self.plain.len() {
                            let k = self.dec.room().clamp(1, self.plain.len() - at);
                            self.dec.feed(&self.plain[at..at + k]);
                            at += k;
                            self.decode(&mut deliver)?;
                        }
                        self.plain.clear();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok((total > 0, opened))
    }

    /// Every whole message the decoder holds, to `deliver`.
    fn decode(
        &mut self,
        deliver: &mut impl FnMut(u32, Msg) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            match self.dec.next() {
                Ok(Some((channel, m))) => deliver(channel, m)?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("peer sent garbage: {e}")),
            }
        }
    }

    fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos + self.unsealed.len() - self.sealed
    }

    fn queue(&mut self, channel: u32, m: &Msg) -> Result<(), String> {
        let out = if self.session.is_plaintext() {
            &mut self.wbuf
        } else {
            &mut self.unsealed
        };
        m.encode(channel, out).map_err(|e| format!("encode: {e}"))
    }

    fn flush(&mut self) -> Result<bool, String> {
        use std::io::Write;
        let mut wrote = false;
        let mut written = 0;
        // At most LINK_WRITE_PER_ROUND per round: a round that seals and
        // writes a 50 MB logged reply whole (the socket drains as fast as
        // the peer reads) looks at no clock for that long.
        while written < LINK_WRITE_PER_ROUND {
            // Seal a slice at a time, as the socket takes it: a 50 MB
            // logged reply sealed at once would hold the link silent for
            // as long as that takes, and the peer counts silence as death.
            if self.wpos == self.wbuf.len() && self.sealed < self.unsealed.len() {
                self.wbuf.clear();
                self.wpos = 0;
                let end = (self.sealed + SEAL_SLICE).min(self.unsealed.len());
                self.session
                    .seal(&self.unsealed[self.sealed..end], &mut self.wbuf)
                    .map_err(|e| e.to_string())?;
                self.sealed = end;
                if self.sealed == self.unsealed.len() {
                    self.unsealed.clear();
                    self.sealed = 0;
                }
            }
            if self.wpos == self.wbuf.len() {
                break;
            }
            match self.sock.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err("link closed on write".into()),
                Ok(n) => {
                    self.wpos += n;
                    written += n;
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
        // Compact once the sealed part is the larger half: a 50 MB message
        // compacted at every MiB sealed moved ~1 GB of memory.
        if self.sealed > (1 << 20) && self.sealed * 2 >= self.unsealed.len() {
            self.unsealed.drain(..self.sealed);
            self.sealed = 0;
        }
        Ok(wrote)
    }
}

/// The finished reply of a handler run off the stack thread.
struct Completion {
    site: usize,
    conn: ConnId,
    index: u64,
    response: Response,
    /// The application could not take the request (see
    /// `NodeCore::handle_job_unreachable`).
    unreachable: bool,
    /// The local application could not, whether or not a fallback did.
    local_unreachable: bool,
}

/// The node core plus its I/O: what the TAP shell runs.
pub struct NodeShell {
    pub core: NodeCore,
    /// Link sockets by peer.
    links: Vec<Option<LinkSocket>>,
    from_links: mpsc::Receiver<(PeerId, LinkIn)>,
    upstreams: crate::upstream::Upstreams,
    runtime: tokio::runtime::Handle,
    waker: Waker,
    done_tx: mpsc::Sender<Completion>,
    done_rx: mpsc::Receiver<Completion>,
    /// TLS handshake steps run on the worker pool, back: (site, conn, result).
    tls_tx: mpsc::Sender<(usize, ConnId, HandshakeDone)>,
    tls_rx: mpsc::Receiver<(usize, ConnId, HandshakeDone)>,
    /// The application check, when configured, and its results.
    app_check: Option<std::sync::Arc<crate::config::AppCheck>>,
    app_tx: mpsc::Sender<bool>,
    app_rx: mpsc::Receiver<bool>,
    /// Publishes status snapshots for the admin socket and metrics.
    status: Option<crate::admin::StatusPublisher>,
    /// How to bring each peer's link up again after it was lost (rejoin).
    relink: Option<Relink>,
    /// Per peer: a message could not be queued on its link socket in this
    /// round (the link is dropped after the round's output).
    link_failed: Vec<Option<String>>,
    /// systemd notifications and hooks, fed with each snapshot.
    lifecycle: Option<crate::lifecycle::Lifecycle>,
    /// The access log, and the routes' prefixes (longest first, as the
    /// core matches them) to name a `generate` request's route.
    access: Option<(crate::access_log::AccessLog, Vec<String>)>,
    /// SIGHUP reloads read off the stack thread.
    reloads: Option<mpsc::Receiver<ReloadIn>>,
}

/// What a lost link needs to be tried again: a new link task per loss.
pub struct Relink {
    pub setups: Vec<(crate::link::LinkSetup, crate::secure::PeerKey)>,
    pub to_stack: mpsc::Sender<(PeerId, LinkIn)>,
}

impl NodeShell {
    pub fn new(
        core: NodeCore,
        from_links: mpsc::Receiver<(PeerId, LinkIn)>,
        upstreams: crate::upstream::Upstreams,
        runtime: tokio::runtime::Handle,
        waker: Waker,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::channel();
        let (tls_tx, tls_rx) = mpsc::channel();
        let (app_tx, app_rx) = mpsc::channel();
        let peers = core.peers();
        NodeShell {
            links: (0..core.peers()).map(|_| None).collect(),
            core,
            from_links,
            upstreams,
            runtime,
            waker,
            done_tx,
            done_rx,
            tls_tx,
            tls_rx,
            app_check: None,
            app_tx,
            app_rx,
            status: None,
            relink: None,
            link_failed: vec![None; peers],
            lifecycle: None,
            access: None,
            reloads: None,
        }
    }

    /// Take SIGHUP reloads from `rx` (see `node::reload_on_hangup`).
    pub fn set_reloads(&mut self, rx: mpsc::Receiver<ReloadIn>) {
        self.reloads = Some(rx);
    }

    /// Apply the reloads read so far: the core takes the new routes
    /// (comparing content digests with the peer again), the shell its
    /// upstreams and the access log's route names; the access log is
    /// reopened (logrotate). Refused and failed reloads change nothing.
    fn apply_reloads(&mut self) -> bool {
        let mut busy = false;
        while let Some(r) = self.reloads.as_ref().and_then(|rx| rx.try_recv().ok()) {
            busy = true;
            let result = match r {
                ReloadIn::Ready {
                    routes,
                    upstreams,
                    prefixes,
                    tls,
                } => match self.core.handle_reload(routes) {
                    Ok(done) => {
                        self.upstreams = upstreams;
                        if let Some(tls) = &tls {
                            let addresses = self.core.set_tls(tls);
                            tracing::info!(
                                addresses,
                                "reloaded the TLS certificates and keys: new handshakes use them"
                            );
                        }
                        if let Some((log, p)) = self.access.as_mut() {
                            *p = prefixes;
                            log.reopen();
                        }
                        tracing::info!(
                            changed = ?done.changed,
                            added = ?done.added,
                            removed = ?done.removed,
                            "reloaded: new requests use the new routes and content; connections carry on"
                        );
                        Some(true)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reload failed: the node keeps serving as before");
                        Some(false)
                    }
                },
                ReloadIn::Refused(keys) => {
                    tracing::warn!(
                        keys = ?keys,
                        "reload refused: these keys cannot change while the node runs (restart it, \
                         one node at a time: docs/operations.md); nothing was reloaded"
                    );
                    None
                }
                ReloadIn::Failed(e) => {
                    tracing::error!(error = %e, "reload failed: the config did not load; the node keeps serving as before");
                    Some(false)
                }
            };
            if let Some(st) = self.status.as_mut() {
                st.reloaded(result);
            }
        }
        busy
    }

    /// Run the application check the core asks for (`[app_check]`).
    pub fn set_app_check(&mut self, check: crate::config::AppCheck) {
        self.app_check = Some(std::sync::Arc::new(check));
    }

    /// The application checks' results, back to the core.
    fn take_app_checks(&mut self) -> bool {
        let mut busy = false;
        while let Ok(ok) = self.app_rx.try_recv() {
            busy = true;
            self.core.handle_app_check(ok);
        }
        busy
    }

    /// Log every request the shell answers to `log`; `prefixes`: the
    /// routes', longest first.
    pub fn set_access_log(&mut self, log: crate::access_log::AccessLog, prefixes: Vec<String>) {
        self.access = Some((log, prefixes));
        // The requests the core answers itself (files) too.
        self.core.set_report_served(true);
    }

    /// The requests the core's queue of them dropped, counted in the log.
    fn note_served_dropped(&mut self) {
        if let Some((log, _)) = self.access.as_ref() {
            log.note_dropped(
                self.core.take_served_dropped(),
                "the node core's queue of files requests was full",
            );
        }
    }

    /// Try every lost link again, for ever (a restarted or thawed peer
    /// rejoins): the listening side listens again, the connecting side
    /// retries.
    pub fn set_relink(&mut self, r: Relink) {
        self.relink = Some(r);
    }

    fn spawn_link(&self, peer: PeerId, pause: std::time::Duration) {
        let Some(r) = &self.relink else { return };
        let Some((setup, key)) = r.setups.get(peer).cloned() else {
            return;
        };
        let (to_stack, waker) = (r.to_stack.clone(), self.waker.clone());
        self.runtime.spawn(async move {
            // A peer that just failed is not reached again at once.
            tokio::time::sleep(pause).await;
            crate::link::run(setup, key, peer, to_stack, waker).await;
        });
    }

    /// Publish status snapshots through `p` (`hotpair status`, metrics).
    pub fn set_status(&mut self, p: crate::admin::StatusPublisher) {
        self.status = Some(p);
    }

    /// Tell systemd and the hooks about each snapshot (`set_status` first).
    pub fn set_lifecycle(&mut self, l: crate::lifecycle::Lifecycle) {
        self.lifecycle = Some(l);
    }

    /// The lifecycle observer, taken back when the node stops.
    pub fn take_lifecycle(&mut self) -> Option<crate::lifecycle::Lifecycle> {
        self.lifecycle.take()
    }

    /// A snapshot when one is due.
    fn publish_status(&mut self, now: Instant) {
        let Some(st) = self.status.as_mut() else {
            return;
        };
        if !st.due(now) {
            return;
        }
        let links: Vec<Option<crate::admin::LinkView<'_>>> = self
            .links
            .iter()
            .map(|l| {
                l.as_ref().map(|l| crate::admin::LinkView {
                    sock: &l.sock,
                    unsent: l.pending(),
                })
            })
            .collect();
        let published = st.maybe_publish(&self.core, &links, now);
        if let (Some(s), Some(l)) = (published, self.lifecycle.as_mut()) {
            l.observe(&s);
        }
    }

    /// A planned stop, first step: tell every peer (`Leaving`); nothing
    /// more goes out on the LAN. Returns whether the node should keep
    /// running a moment ([`NodeCore::leave_grace_wanted`]) before
    /// [`NodeShell::leave`].
    pub fn begin_leave(&mut self) -> bool {
        let grace = self.core.leave_grace_wanted();
        self.core.leave();
        // Said at once: the stack loop may run no more rounds (no grace),
        // and a health check must not see the node ready while it goes.
        if let Some(st) = self.status.as_mut() {
            st.leaving();
        }
        while let Some(change) = self.core.poll_role_change() {
            self.role_change(change);
        }
        self.publish_status(Instant::now());
        grace
    }

    /// A planned stop, last step: flush the links for at most `within`,
    /// then close them.
    pub fn leave(&mut self, within: std::time::Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = Instant::now();
            self.write_links(now);
            let pending = self.links.iter().flatten().any(|l| l.pending() > 0);
            if !pending || now >= deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.close_links();
    }

    /// Close every link socket (the node is stopping).
    pub fn close_links(&mut self) {
        for l in &mut self.links {
            if let Some(ls) = l.take() {
                let _ = ls.sock.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// The link to `peer` failed (an I/O error, or its task ended
    /// without a socket): the core hears it and decides when to try again
    /// (`LinkAction::Reconnect`).
    fn drop_link(&mut self, peer: PeerId, why: &str, now: Instant) {
        tracing::info!(peer = %self.core.peer_name(peer), reason = %why, "replication link lost");
        if self.close_link(peer) {
            self.core.handle_link_lost(peer, now);
        } else {
            self.core.handle_link_failed(peer);
        }
    }

    /// Close `peer`'s link socket, if there is one; whether there was.
    fn close_link(&mut self, peer: PeerId) -> bool {
        let Some(ls) = self.links[peer].take() else {
            return false;
        };
        let _ = ls.sock.shutdown(std::net::Shutdown::Both);
        if let Some(st) = self.status.as_mut() {
            st.link_down(peer);
        }
        true
    }

    /// Link news, then whatever the link sockets hold.
    fn read_links(&mut self, now: Instant) -> bool {
        let mut busy = false;
        while let Ok((peer, m)) = self.from_links.try_recv() {
            busy = true;
            match m {
                LinkIn::Socket(sock, session) => match LinkSocket::new(sock, session) {
                    // The core may refuse it (this node cannot serve: no
                    // session until it can) and holds the link down then.
                    Ok(ls) if !self.core.accept_link(peer, now) => {
                        let _ = ls.sock.shutdown(std::net::Shutdown::Both);
                    }
                    Ok(ls) => {
                        self.links[peer] = Some(ls);
                        if let Some(st) = self.status.as_mut() {
                            st.link_up(peer);
                        }
                    }
                    Err(e) => self.drop_link(peer, &format!("socket unusable: {e}"), now),
                },
                LinkIn::Lost(why) => self.drop_link(peer, &why, now),
            }
        }
        for peer in 0..self.links.len() {
            let Some(ls) = self.links[peer].as_mut() else {
                continue;
            };
            let core = &mut self.core;
            let got = ls.read(|channel, m| {
                core.handle_link_msg(peer, channel, m, now)
                    .map_err(|e| format!("peer refused: {e}"))
            });
            match got {
                Ok((moved, opened)) => {
                    if opened {
                        // Part of a large message counts as life too — once
                        // it opened: raw bytes may be anyone's.
                        self.core.handle_link_progress(peer, now);
                    }
                    busy |= moved;
                }
                Err(why) => {
                    tracing::warn!(peer = %self.core.peer_name(peer), reason = %why, "dropping the replication link");
                    self.drop_link(peer, &why, now);
                }
            }
        }
        busy
    }

    /// The core's messages into the link sockets, as far as they take them
    /// (`leave`: outside a round).
    fn write_links(&mut self, now: Instant) -> bool {
        hotpair_replicator::node::send_link_messages(self);
        self.flush_links(now)
    }

    /// What the round queued on the link sockets, out as far as they take
    /// it; a link that failed is dropped.
    fn flush_links(&mut self, now: Instant) -> bool {
        let mut busy = false;
        for peer in 0..self.links.len() {
            let failed = self.link_failed[peer].take();
            let Some(ls) = self.links[peer].as_mut() else {
                continue;
            };
            match failed.map_or_else(|| ls.flush(), Err) {
                Ok(wrote) => busy |= wrote,
                Err(why) => self.drop_link(peer, &why, now),
            }
        }
        busy
    }

    /// Take finished jobs back (started in [`Drive::job`]).
    fn take_jobs(&mut self) -> bool {
        let mut busy = false;
        while let Ok(c) = self.done_rx.try_recv() {
            busy = true;
            if c.local_unreachable && !c.unreachable {
                // A fallback instance answered: the reply goes out now, and
                // the application check hears that its own did not.
                self.core.handle_app_unreachable(Instant::now());
            }
            if c.unreachable {
                self.core.handle_job_unreachable(
                    c.site,
                    c.conn,
                    c.index,
                    c.response,
                    Instant::now(),
                );
            } else {
                self.core
                    .handle_job_done(c.site, c.conn, c.index, c.response);
            }
        }
        while let Ok((site, conn, done)) = self.tls_rx.try_recv() {
            busy = true;
            self.core.handle_tls_job_done(site, conn, done);
        }
        busy
    }

    fn spawn(&mut self, job: Job) {
        let Job {
            site,
            conn,
            index,
            request,
            client,
            port,
            work,
        } = job;
        let tx = self.done_tx.clone();
        let waker = self.waker.clone();
        // Started here: the line's duration is the handler's.
        let started = Instant::now();
        let mut entry = self.access.as_ref().map(|(log, prefixes)| {
            let mut e = crate::access_log::Entry::begin(&request, client);
            e.route = prefixes
                .iter()
                .find(|p| request.path.starts_with(p.as_str()))
                .cloned()
                .unwrap_or_default();
            (log.clone(), e)
        });
        if let (Some((_, e)), Work::Route { request_id, .. }) = (entry.as_mut(), &work) {
            e.request_id = Some(request_id.clone());
        }
        let done = move |response: Response, unreachable: bool, local_unreachable: bool| {
            if let Some((log, mut e)) = entry {
                e.status = response.status;
                e.bytes = response.body.len();
                e.duration = started.elapsed();
                log.log(e);
            }
            let _ = tx.send(Completion {
                site,
                conn,
                index,
                response,
                unreachable,
                local_unreachable,
            });
            waker.wake();
        };
        match work {
            Work::Generate { seed, max_size } => {
                self.runtime.spawn_blocking(move || {
                    done(
                        hotpair_http::generate::handle(&request, seed, max_size),
                        false,
                        false,
                    )
                });
            }
            Work::Route { route, request_id } => {
                match self.upstreams.get(route).and_then(Option::clone) {
                    Some(up) => {
                        // What the client connected to (a PROXY header says
                        // it): the address, and the port of this connection
                        // (HTTP or HTTPS).
                        let service = SocketAddr::from((self.core.address(site), port));
                        self.runtime.spawn(async move {
                            let p = up
                                .handle_outcome(&request, &request_id, client, service)
                                .await;
                            done(p.response, p.unreachable, p.local_unreachable);
                        });
                    }
                    // Built from the same routes: cannot happen; answer anyway.
                    None => done(Response::error(502), false, false),
                }
            }
        }
    }
}

impl Node for NodeShell {
    fn take_buffer(&mut self) -> Vec<u8> {
        self.core.take_buffer()
    }

    fn recycle(&mut self, f: Frame) {
        self.core.recycle(f);
    }

    fn handle_lan_frame(&mut self, f: Frame) {
        self.core.handle_lan_frame(f);
    }

    fn round(&mut self, now: Instant) -> bool {
        // Between rounds the core holds no job (each round's are spawned
        // at its end), so no job indexes the route table a reload replaces.
        let mut busy = self.apply_reloads();
        busy |= self.read_links(now);
        busy |= self.take_jobs();
        busy |= self.take_app_checks();
        busy |= hotpair_replicator::node::step(self, now);
        self.note_served_dropped();
        busy |= self.flush_links(now);
        self.publish_status(now);
        if let Some(l) = self.lifecycle.as_mut() {
            l.tick(now);
        }
        // A fenced address stands by (silent) until its link is up again
        // and the node rejoins: the process does not exit.
        busy
    }

    fn poll_lan_transmit(&mut self, now: Instant) -> Option<Frame> {
        self.core.poll_lan_transmit(now)
    }

    fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        self.core.poll_timeout(now)
    }

    fn watch_fds(&self, out: &mut Vec<(std::os::fd::RawFd, bool)>) {
        use std::os::fd::AsRawFd;
        for ls in self.links.iter().flatten() {
            out.push((ls.sock.as_raw_fd(), ls.pending() > 0));
        }
    }
}

/// Where one round's output goes: jobs and checks to the runtime, link
/// messages into the sockets, takeovers to the status, link decisions to
/// the link tasks.
impl Drive for NodeShell {
    fn core(&mut self) -> &mut NodeCore {
        &mut self.core
    }

    fn tls_job(&mut self, job: TlsJob) {
        // A signature and a key exchange each: on the worker pool, off the
        // round that carries heartbeats.
        let TlsJob { site, conn, work } = job;
        let (tx, waker) = (self.tls_tx.clone(), self.waker.clone());
        self.runtime.spawn_blocking(move || {
            let _ = tx.send((site, conn, work.run()));
            waker.wake();
        });
    }

    fn job(&mut self, job: Job) {
        self.spawn(job);
    }

    fn app_check(&mut self) {
        let Some(check) = self.app_check.clone() else {
            return;
        };
        let (tx, waker) = (self.app_tx.clone(), self.waker.clone());
        self.runtime.spawn(async move {
            let ok = crate::app_check::probe(&check.address, &check.path, check.core.timeout).await;
            let _ = tx.send(ok);
            waker.wake();
        });
    }

    fn served(&mut self, s: Served) {
        let Some((log, _)) = self.access.as_ref() else {
            return;
        };
        let mut e = crate::access_log::Entry::begin(&s.request, s.client);
        e.route = self.core.route_prefix(s.route).to_owned();
        e.status = s.status;
        e.bytes = s.bytes;
        // Answered inside the round, from memory.
        e.duration = std::time::Duration::ZERO;
        log.log(e);
    }

    fn link_ready(&mut self, peer: PeerId) -> bool {
        self.link_failed[peer].is_none()
            && self.links[peer]
                .as_ref()
                .is_some_and(|ls| ls.pending() < LINK_WRITE_BUFFER)
    }

    fn link_message(&mut self, peer: PeerId, channel: u32, msg: hotpair_replicator::Msg) {
        if let Some(ls) = self.links[peer].as_mut() {
            if let Err(e) = ls.queue(channel, &msg) {
                self.link_failed[peer] = Some(e);
            }
        }
    }

    fn role_change(&mut self, change: RoleChange) {
        // Nobody reads them without a status publisher: dropped then.
        if let Some(st) = self.status.as_mut() {
            st.role_change(&self.core, &change);
        }
    }

    fn link_action(&mut self, action: LinkAction) {
        match action {
            LinkAction::Drop { peer, why } => {
                tracing::info!(peer = %self.core.peer_name(peer), reason = %why, "replication link lost");
                self.close_link(peer);
            }
            LinkAction::Reconnect { peer, after } => self.spawn_link(peer, after),
        }
    }
}
