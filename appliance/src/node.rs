//! `hotpair node`: a simplex node. The stack thread owns the TAP, smoltcp and
//! every HTTP connection; handlers that may block or burn CPU (`generate`,
//! `upstream`) run on a tokio runtime and hand their reply back through a
//! channel plus the stack's [`Waker`]. `files` replies are made inline: they
//! are in memory and cost a refcount.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hotpair_http::files::Files;
use hotpair_http::{Limits, Request, Response, ServerConn};
use hotpair_stack::pcap::PcapSink;
use hotpair_stack::smoltcp::socket::tcp;
use hotpair_stack::smoltcp::wire::{EthernetAddress, Ipv4Cidr};
use hotpair_stack::tap::Tap;
use hotpair_stack::{ConnId, ConnInfo, Engine, Mode, Service, Shell, StackConfig, Waker};

use crate::config::{self, Config, HandlerKind};
use crate::upstream::Upstream;

/// A route's handler, ready to serve.
enum Handler {
    Files(Files),
    Generate { max_size: usize },
    Upstream(Arc<Upstream>),
}

struct Route {
    prefix: String,
    handler: Handler,
}

/// The finished reply of an asynchronous handler.
struct Completion {
    id: ConnId,
    index: u64,
    response: Response,
}

struct Conn {
    http: ServerConn,
    /// Set once the client's FIN has been passed to the HTTP layer.
    eof_seen: bool,
    /// Per-connection serial, for request ids.
    serial: u64,
}

struct HttpService {
    routes: Vec<Route>,
    limits: Limits,
    runtime: tokio::runtime::Handle,
    done_tx: mpsc::Sender<Completion>,
    done_rx: mpsc::Receiver<Completion>,
    /// Replies that arrived for a connection, applied at its next drive.
    ready: BTreeMap<ConnId, Vec<(u64, Response)>>,
    live: BTreeSet<ConnId>,
    waker: Waker,
    serial: u64,
    /// Distinguishes this process's request ids from an earlier run's.
    boot_id: u64,
    seeds: Arc<AtomicU64>,
}

impl HttpService {
    fn dispatch(&mut self, id: ConnId, serial: u64, req: Request) -> Option<Response> {
        let Some(route) = self.routes.iter().find(|r| req.path.starts_with(&r.prefix)) else {
            return Some(Response::error(404));
        };
        match &route.handler {
            Handler::Files(files) => Some(files.handle(&req)),
            Handler::Generate { max_size } => {
                let max_size = *max_size;
                // Non-deterministic content: each reply from a fresh seed.
                let seed = self
                    .seeds
                    .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
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
                let request_id = format!("{:016x}-{}-{}", self.boot_id, serial, index);
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
}

impl Service for HttpService {
    type Conn = Conn;

    fn accept(&mut self, id: ConnId, info: &ConnInfo, now: Instant) -> Conn {
        tracing::trace!(?id, remote = %info.remote, "connection");
        self.live.insert(id);
        self.serial += 1;
        Conn {
            http: ServerConn::new(self.limits, now),
            eof_seen: false,
            serial: self.serial,
        }
    }

    fn drive(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        sock: &mut tcp::Socket<'_>,
        now: Instant,
    ) -> Option<Instant> {
        if let Some(replies) = self.ready.remove(&id) {
            for (index, resp) in replies {
                let _ = conn.http.send_response(index, resp);
            }
        }
        // Client bytes into the HTTP layer, as far as it takes them
        // (it stops at the pipelining limit: back-pressure on the client).
        while sock.can_recv() {
            let taken = sock
                .recv(|buf| {
                    let n = conn.http.handle_input(buf, now);
                    (n, n)
                })
                .unwrap_or(0);
            if taken == 0 {
                break;
            }
        }
        if !conn.eof_seen && !sock.may_recv() && sock.recv_queue() == 0 {
            conn.eof_seen = true;
            conn.http.handle_eof(now);
        }
        while let Some(req) = conn.http.poll_request() {
            let index = req.index;
            if let Some(resp) = self.dispatch(id, conn.serial, req) {
                let _ = conn.http.send_response(index, resp);
            }
        }
        if conn.http.poll_timeout().is_some_and(|t| t <= now) {
            conn.http.handle_timeout(now);
        }
        while let Some(out) = conn.http.poll_output() {
            let n = match sock.send_slice(out) {
                Ok(n) => n,
                Err(_) => break,
            };
            conn.http.consume_output(n);
            if n == 0 {
                break;
            }
        }
        if conn.http.is_closed() && sock.is_open() {
            // FIN after the queued bytes; smoltcp keeps retransmitting them.
            sock.close();
        }
        conn.http.poll_timeout()
    }

    fn closed(&mut self, id: ConnId, _conn: Conn) {
        self.live.remove(&id);
        self.ready.remove(&id);
    }

    fn woken(&mut self, out: &mut Vec<ConnId>) {
        while let Ok(c) = self.done_rx.try_recv() {
            // A reply for a connection that is already gone is dropped.
            if self.live.contains(&c.id) {
                self.ready
                    .entry(c.id)
                    .or_default()
                    .push((c.index, c.response));
                out.push(c.id);
            }
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

fn build_routes(cfg: &Config) -> Result<Vec<Route>> {
    let mut routes = Vec::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let handler = match r.handler {
            HandlerKind::Files => {
                let root: &PathBuf = r.root.as_ref().context("validated")?;
                let max = r.max_total_bytes.unwrap_or(config::DEFAULT_FILES_MAX_BYTES);
                let files = Files::load_with_limit(root, &r.prefix, max)
                    .with_context(|| format!("route[{i}]: loading {}", root.display()))?;
                tracing::info!(prefix = %r.prefix, files = files.len(), bytes = files.total_bytes(), "files loaded");
                Handler::Files(files)
            }
            HandlerKind::Generate => Handler::Generate {
                max_size: r.max_size.unwrap_or(config::DEFAULT_GENERATE_MAX),
            },
            HandlerKind::Upstream => {
                let addr: SocketAddr = r.address.as_deref().context("validated")?.parse()?;
                Handler::Upstream(Arc::new(Upstream::new(
                    addr,
                    r.max_idle.unwrap_or(64),
                    Duration::from_millis(r.timeout_ms.unwrap_or(60_000)),
                    cfg.http.max_body_bytes,
                )))
            }
        };
        routes.push(Route {
            prefix: r.prefix.clone(),
            handler,
        });
    }
    // Longest prefix first, so "/app/admin/" wins over "/app/".
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    Ok(routes)
}

fn limits(cfg: &Config) -> Limits {
    let h = &cfg.http;
    Limits {
        max_header_bytes: h.max_header_bytes,
        max_body_bytes: h.max_body_bytes,
        max_pipelined: h.max_pipelined,
        header_timeout: Duration::from_millis(h.header_timeout_ms),
        idle_timeout: Duration::from_millis(h.idle_timeout_ms),
        body_timeout: Duration::from_millis(h.body_timeout_ms),
    }
}

/// Run a node until SIGTERM/SIGINT.
pub fn run(cfg: Config, pcap: Option<PathBuf>) -> Result<()> {
    let routes = build_routes(&cfg)?;
    let mac = config::parse_mac(&cfg.node.mac)?;
    let tap = Tap::open(&cfg.node.tap).with_context(|| format!("opening TAP {}", cfg.node.tap))?;
    let pcap = match pcap {
        Some(path) => {
            let f = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            Some(PcapSink::new(Box::new(std::io::BufWriter::with_capacity(
                1 << 20,
                f,
            )))?)
        }
        None => None,
    };
    let boot_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let scfg = StackConfig {
        mac: EthernetAddress(mac),
        address: Ipv4Cidr::new(cfg.service.address, cfg.service.prefix_len),
        gateway: cfg.service.gateway,
        port: cfg.service.port,
        max_connections: cfg.service.max_connections,
        rx_buffer_bytes: cfg.node.rx_buffer_bytes,
        tx_buffer_bytes: cfg.node.tx_buffer_bytes,
        seed: boot_id ^ 0x6a09_e667_f3bc_c908,
    };
    let waker = Waker::new().context("creating the waker")?;
    let mut shell = Shell::new(tap, pcap, waker.clone()).context("building the TAP shell")?;
    let mut engine: Engine<Conn> = Engine::new(scfg, Mode::Simplex, Instant::now());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.node.worker_threads)
        .max_blocking_threads(cfg.node.worker_threads * 2)
        .thread_name("hotpair-worker")
        .enable_all()
        .build()
        .context("starting the worker runtime")?;
    let (done_tx, done_rx) = mpsc::channel();
    let mut service = HttpService {
        routes,
        limits: limits(&cfg),
        runtime: runtime.handle().clone(),
        done_tx,
        done_rx,
        ready: BTreeMap::new(),
        live: BTreeSet::new(),
        waker,
        serial: 0,
        boot_id,
        seeds: Arc::new(AtomicU64::new(boot_id)),
    };
    install_signal_handlers();
    engine.announce();
    tracing::info!(
        node = %cfg.node.name,
        tap = %cfg.node.tap,
        address = %cfg.service.address,
        port = cfg.service.port,
        mac = %cfg.node.mac,
        max_connections = cfg.service.max_connections,
        "serving (simplex)"
    );
    shell
        .run(&mut engine, &mut service, &STOP)
        .context("stack loop")?;
    let st = engine.stats();
    let sh = shell.stats();
    tracing::info!(
        accepted = st.accepted,
        active = st.active,
        rx = sh.rx_frames,
        tx = sh.tx_frames,
        "stopped"
    );
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
