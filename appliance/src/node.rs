//! `hotpair node`: wiring. The stack thread owns the TAP, the engine and
//! every connection ([`crate::service::NodeService`]); handlers that may
//! block or burn CPU (`generate`, `upstream`) and the replication link run on
//! a tokio runtime and hand results back through channels plus the stack's
//! [`Waker`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hotpair_http::files::Files;
use hotpair_http::Limits;
use hotpair_replicator::{Replica, ReplicaConfig, Role};
use hotpair_stack::pcap::PcapSink;
use hotpair_stack::smoltcp::wire::{EthernetAddress, Ipv4Cidr};
use hotpair_stack::tap::Tap;
use hotpair_stack::{Engine, Mode, Shell, StackConfig, Waker};

use crate::config::{self, Config, HandlerKind, ReplRole};
use crate::link::{self, LinkSetup};
use crate::service::{Conn, Handler, NodeService, Replication, Route};
use crate::upstream::Upstream;

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

pub fn build_routes(cfg: &Config) -> Result<Vec<Route>> {
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
                let addr: std::net::SocketAddr =
                    r.address.as_deref().context("validated")?.parse()?;
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

pub fn limits(cfg: &Config) -> Limits {
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.node.worker_threads)
        .max_blocking_threads(cfg.node.worker_threads * 2)
        .thread_name("hotpair-worker")
        .enable_all()
        .build()
        .context("starting the worker runtime")?;
    let waker = Waker::new().context("creating the waker")?;
    let now = Instant::now();
    let (mode, repl) = match &cfg.replication {
        None => (Mode::Simplex, None),
        Some(r) => {
            let (mode, role, setup) = match r.role {
                ReplRole::Primary => (
                    Mode::Primary,
                    Role::Primary,
                    LinkSetup::Listen(r.listen.context("validated")?),
                ),
                ReplRole::Ingress => (
                    Mode::Ingress,
                    Role::Ingress,
                    LinkSetup::Connect(r.peer.context("validated")?),
                ),
            };
            let mut rc = ReplicaConfig::new(role, cfg.node.name.clone());
            rc.heartbeat_interval = Duration::from_millis(r.heartbeat_interval_ms);
            rc.heartbeat_timeout = Duration::from_millis(r.heartbeat_timeout_ms);
            let replica = Replica::new(rc, now);
            let (to_stack, from_link) = mpsc::channel();
            // The channel transport is unused here: the link task hands the
            // socket itself to the stack thread.
            let (to_link, _unused) = tokio::sync::mpsc::channel(link::LINK_QUEUE);
            runtime.spawn(link::run(setup, to_stack, waker.clone()));
            (mode, Some(Replication::new(replica, from_link, to_link)))
        }
    };
    let mut shell = Shell::new(tap, pcap, waker.clone()).context("building the TAP shell")?;
    let mut engine: Engine<Conn> = Engine::new(scfg, mode, now);
    let mut service = NodeService::new(
        routes,
        limits(&cfg),
        runtime.handle().clone(),
        waker,
        boot_id,
        repl,
    );
    install_signal_handlers();
    if mode != Mode::Primary {
        // The primary never speaks ARP for the service address.
        engine.announce();
    }
    tracing::info!(
        node = %cfg.node.name,
        tap = %cfg.node.tap,
        address = %cfg.service.address,
        port = cfg.service.port,
        mac = %cfg.node.mac,
        max_connections = cfg.service.max_connections,
        mode = ?mode,
        "serving"
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
