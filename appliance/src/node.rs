//! `hotpair node`: wiring. The stack thread owns the TAP and the node core
//! (every service address, its engine and connections) inside a
//! [`crate::service::NodeShell`]; handlers that may block or burn CPU
//! (`generate`, `upstream`) and the setup of the replication links run on a
//! tokio runtime and hand results back through channels plus the stack's
//! [`Waker`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hotpair_http::files::Files;
use hotpair_http::Limits;
use hotpair_replicator::node::{Handler, NodeConfig, NodeCore, Route, SiteConfig, SiteTls};
use hotpair_stack::pcap::PcapSink;
/// `--pcap-max-bytes`' default (the stack's pcap writer caps its file).
pub use hotpair_stack::pcap::DEFAULT_MAX_BYTES as PCAP_DEFAULT_MAX_BYTES;
use hotpair_stack::smoltcp::wire::{EthernetAddress, Ipv4Cidr};
use hotpair_stack::tap::Tap;
use hotpair_stack::{Admission, Shell, SynCookies, Waker};

use crate::config::{self, Config, HandlerKind, LinkEnd};
use crate::link::{self, LinkSetup};
use crate::service::NodeShell;
use crate::upstream::{self, Upstream, UpstreamConfig, Upstreams};

static STOP: AtomicBool = AtomicBool::new(false);

/// Set by SIGHUP; a runtime task reloads (a signal handler may only touch
/// an atomic).
static HANGUP: AtomicBool = AtomicBool::new(false);

/// How often that task looks.
const HANGUP_POLL: Duration = Duration::from_millis(200);

/// How long a stopping owner keeps forwarding after `Leaving` (see `run`).
const LEAVE_GRACE: Duration = Duration::from_millis(100);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

extern "C" fn on_hangup(_: libc::c_int) {
    HANGUP.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    // SIGHUP's default action kills the process: a crash-style failover
    // for anyone used to `kill -HUP` meaning "reload". Caught: it reloads
    // (`reload_on_hangup`).
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGHUP, on_hangup as *const () as libc::sighandler_t) };
}

/// For each SIGHUP: read the config file again, off the stack thread (a
/// docroot may be large), and hand the result to it (`NodeShell` applies
/// it between two rounds). One reload at a time; a SIGHUP during one
/// starts another after it.
async fn reload_on_hangup(
    path: PathBuf,
    started: Vec<(&'static str, String)>,
    to_stack: mpsc::Sender<crate::service::ReloadIn>,
    waker: Waker,
) {
    let mut tick = tokio::time::interval(HANGUP_POLL);
    let started = Arc::new(started);
    loop {
        tick.tick().await;
        if !HANGUP.swap(false, Ordering::Relaxed) {
            continue;
        }
        tracing::info!(config = %path.display(), "SIGHUP: reloading the config file");
        let (p, s) = (path.clone(), started.clone());
        let r = tokio::task::spawn_blocking(move || prepare_reload(&p, &s))
            .await
            .unwrap_or_else(|e| crate::service::ReloadIn::Failed(format!("reload task: {e}")));
        if to_stack.send(r).is_err() {
            return;
        }
        waker.wake();
    }
}

/// The parts of a config that cannot change while the node runs (the
/// addresses, roles, peers, link, TAP, limits, …), each by its key, as a
/// value to compare: a reload that changes one is refused.
pub fn fixed_parts(cfg: &Config) -> Vec<(&'static str, String)> {
    vec![
        ("node", format!("{:?}", cfg.node)),
        ("service", format!("{:?}", cfg.service)),
        ("http", format!("{:?}", cfg.http)),
        ("replication", format!("{:?}", cfg.replication)),
        ("address", format!("{:?}", cfg.addresses)),
        ("peer", format!("{:?}", cfg.peers)),
        ("heartbeat", format!("{:?}", cfg.heartbeat)),
        ("link", format!("{:?}", cfg.link)),
        ("admin", format!("{:?}", cfg.admin)),
        ("lan_check", format!("{:?}", cfg.lan_check)),
        ("app_check", format!("{:?}", cfg.app_check)),
        ("hooks", format!("{:?}", cfg.hooks)),
        ("log", format!("{:?}", cfg.log)),
        // Certificates, keys, SNI entries and ticket keys reload; which
        // port speaks TLS (and whether any does) does not.
        (
            "tls.port",
            format!("{:?}", cfg.tls.as_ref().map(|t| t.port)),
        ),
    ]
}

/// Load `path` again and build its routes (reading every docroot), or say
/// why not.
fn prepare_reload(
    path: &std::path::Path,
    started: &[(&'static str, String)],
) -> crate::service::ReloadIn {
    use crate::service::ReloadIn;
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return ReloadIn::Failed(format!("{e:#}")),
    };
    let now = fixed_parts(&cfg);
    let changed: Vec<&'static str> = started
        .iter()
        .zip(&now)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0)
        .collect();
    if !changed.is_empty() {
        return ReloadIn::Refused(changed);
    }
    match build_routes(&cfg) {
        Ok((routes, upstreams)) => {
            let prefixes = routes.iter().map(|r| r.prefix.clone()).collect();
            ReloadIn::Ready {
                routes,
                upstreams,
                prefixes,
                tls: cfg.tls_server.clone(),
            }
        }
        Err(e) => ReloadIn::Failed(format!("{e:#}")),
    }
}

/// The routes for the node core, and the upstream proxies the shell runs
/// for its external routes.
pub fn build_routes(cfg: &Config) -> Result<(Vec<Route>, Upstreams)> {
    let mut routes = Vec::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let (handler, upstream) = match r.handler {
            HandlerKind::Files => {
                let root: &PathBuf = r.root.as_ref().context("validated")?;
                let max = r.max_total_bytes.unwrap_or(config::DEFAULT_FILES_MAX_BYTES);
                let files = Files::load_with_limit(root, &r.prefix, max)
                    .with_context(|| format!("route[{i}]: loading {}", root.display()))?;
                tracing::info!(prefix = %r.prefix, files = files.len(), bytes = files.total_bytes(), policy = r.policy().name(), "files loaded");
                (Handler::Files(files), None)
            }
            HandlerKind::Generate => (
                Handler::Generate {
                    max_size: r.max_size.unwrap_or(config::DEFAULT_GENERATE_MAX),
                },
                None,
            ),
            HandlerKind::Upstream => {
                let up = Upstream::new(UpstreamConfig {
                    route: r.prefix.clone(),
                    address: r.address.clone().context("validated")?,
                    fallback: r.fallback.clone().unwrap_or_default(),
                    max_idle: r.max_idle.unwrap_or(upstream::DEFAULT_MAX_IDLE),
                    idle_timeout: Duration::from_millis(
                        r.idle_timeout_ms
                            .unwrap_or(upstream::DEFAULT_IDLE_TIMEOUT_MS),
                    ),
                    connect_timeout: Duration::from_millis(
                        r.connect_timeout_ms
                            .unwrap_or(upstream::DEFAULT_CONNECT_TIMEOUT_MS),
                    ),
                    timeout: Duration::from_millis(
                        r.timeout_ms.unwrap_or(upstream::DEFAULT_TIMEOUT_MS),
                    ),
                    max_body: cfg.http.max_body_bytes,
                    retry_non_idempotent: r.retry_non_idempotent.unwrap_or(false),
                    request_id_header: r
                        .request_id_header
                        .clone()
                        .unwrap_or_else(|| upstream::DEFAULT_REQUEST_ID_HEADER.to_owned()),
                    proxy_protocol: r.proxy_protocol.is_some(),
                })
                .with_context(|| format!("route[{i}]"))?;
                (Handler::External, Some(Arc::new(up)))
            }
        };
        routes.push((
            Route {
                prefix: r.prefix.clone(),
                handler,
                policy: r.policy(),
            },
            upstream,
        ));
    }
    // Longest prefix first, so "/app/admin/" wins over "/app/".
    routes.sort_by_key(|(r, _)| std::cmp::Reverse(r.prefix.len()));
    Ok(routes.into_iter().unzip())
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
        max_output_bytes: h.max_output_bytes,
        send_timeout: Duration::from_millis(h.send_timeout_ms),
    }
}

/// systemd's side, when run as a `Type=notify` unit: readiness and status
/// on the notify socket, the watchdog fed from the stack loop.
fn lifecycle(cfg: &Config) -> Result<crate::lifecycle::Lifecycle> {
    let notifier = crate::sdnotify::Notifier::from_env().context("NOTIFY_SOCKET")?;
    let watchdog = crate::sdnotify::watchdog_every().map(crate::sdnotify::Watchdog::new);
    match (&notifier, &watchdog) {
        (Some(_), Some(w)) => {
            tracing::info!(
                every_ms = w.every().as_millis() as u64,
                "systemd: notify socket, watchdog fed from the stack loop"
            )
        }
        (Some(_), None) => {
            tracing::info!("systemd: notify socket (READY=1 once every address serves)")
        }
        (None, Some(_)) => tracing::warn!(
            "WATCHDOG_USEC is set but NOTIFY_SOCKET is not: the watchdog cannot be fed"
        ),
        (None, None) => {}
    }
    let hooks = match &cfg.hooks.on_change {
        Some(script) => {
            let timeout = Duration::from_millis(cfg.hooks.timeout_ms);
            tracing::info!(script = %script.display(), timeout_ms = cfg.hooks.timeout_ms, "hooks.on_change: run on each address state change");
            Some(
                crate::hooks::Hooks::start(script.clone(), timeout, cfg.node.name.clone())
                    .context("starting the hook thread")?,
            )
        }
        None => None,
    };
    Ok(crate::lifecycle::Lifecycle::new(notifier, watchdog, hooks))
}

/// Run a node until SIGTERM/SIGINT.
///
/// `config`: the file `cfg` was read from, read again on SIGHUP (`None`:
/// SIGHUP reloads nothing and says so).
pub fn run(
    cfg: Config,
    config: Option<PathBuf>,
    pcap: Option<PathBuf>,
    pcap_max_bytes: u64,
) -> Result<()> {
    let topo = cfg.topology()?;
    let (routes, upstreams) = build_routes(&cfg)?;
    let mac = config::parse_mac(&cfg.node.mac)?;
    let sys = std::path::Path::new("/sys/class/net");
    let existed = sys.join(&cfg.node.tap).exists();
    let tap = Tap::open(&cfg.node.tap).with_context(|| format!("opening TAP {}", cfg.node.tap))?;
    // A mistyped `node.tap` used to go unnoticed: the kernel creates a TAP
    // of that name, attached to nothing, and the node serves no one.
    if !existed {
        tracing::warn!(
            tap = %tap.name(),
            "the TAP device did not exist: it was created now, attached to nothing, and goes \
             away when the node stops; clients reach this node only once it is bridged to the \
             service LAN (docs/operations.md) — or is node.tap misspelt?"
        );
    } else if !sys.join(tap.name()).join("master").exists() {
        tracing::warn!(
            tap = %tap.name(),
            "the TAP device is in no bridge: clients reach this node only if something else \
             forwards the service LAN's frames to it"
        );
    }
    let pcap = match pcap {
        Some(path) => {
            let f = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            Some(PcapSink::with_limit(
                Box::new(std::io::BufWriter::with_capacity(1 << 20, f)),
                pcap_max_bytes,
            )?)
        }
        None => None,
    };
    let boot_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.node.worker_threads)
        .max_blocking_threads(cfg.node.worker_threads * 2)
        .thread_name("hotpair-worker")
        .enable_all()
        .build()
        .context("starting the worker runtime")?;
    let waker = Waker::new().context("creating the waker")?;
    let keys = cfg.link_keys()?;
    // Alone, a secret of this process's own; shared with a peer, one both
    // derive from the link's keys (each validates the other's cookies).
    let alone_cookies = crate::secure::random_cookie_key()?;
    let now = Instant::now();
    // Longest first, as the core matches them (build_routes sorted them).
    let prefixes: Vec<String> = routes.iter().map(|r| r.prefix.clone()).collect();
    // The cookies' counter is wall time; the engines reckon it from this.
    let wall_start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ncfg = NodeConfig {
        name: cfg.node.name.clone(),
        mac: EthernetAddress(mac),
        sites: topo
            .sites
            .iter()
            .map(|s| SiteConfig {
                address: Ipv4Cidr::new(s.address, s.prefix_len),
                gateway: s.gateway,
                port: s.port,
                admission: Admission {
                    max_connections: s.max_connections,
                    max_half_open: s.max_half_open,
                    half_open_timeout: Duration::from_millis(s.half_open_timeout_ms),
                    max_per_source: s.max_per_source,
                    syn_cookies: Some(SynCookies {
                        key: match s.peer.and_then(|p| keys.get(p)) {
                            Some(k) => crate::secure::shared_cookie_key(k),
                            None => alone_cookies,
                        },
                        send: s.syn_cookies,
                        wall_start,
                    }),
                },
                role: s.role,
                peer: s.peer,
                tls: cfg
                    .tls_port()
                    .zip(cfg.tls_server.clone())
                    .map(|(port, config)| SiteTls { port, config }),
            })
            .collect(),
        peers: topo.peers.iter().map(|p| p.name.clone()).collect(),
        heartbeat_interval: Duration::from_millis(topo.heartbeat_interval_ms),
        heartbeat_timeout: Duration::from_millis(topo.heartbeat_timeout_ms),
        cold_start_wait: Duration::from_millis(topo.cold_start_ms),
        lan_check: cfg.lan_check()?,
        app_check: cfg.app_check()?.map(|a| a.core),
        rx_buffer_bytes: cfg.node.rx_buffer_bytes,
        tx_buffer_bytes: cfg.node.tx_buffer_bytes,
        limits: limits(&cfg),
        routes,
        seed: boot_id,
    };
    let core = NodeCore::new(ncfg, now).context("building the node core")?;
    if keys
        .iter()
        .any(|k| matches!(k, crate::secure::PeerKey::Plaintext))
    {
        tracing::warn!("replication link in plaintext (link.danger_plaintext): anyone who reaches the link address can read every request and reply and take addresses over; only for a dedicated cable");
    }
    let (to_stack, from_links) = mpsc::channel();
    let mut setups = Vec::new();
    for (p, key) in topo.peers.iter().zip(keys) {
        let setup = match p.link {
            LinkEnd::Listen(a) => LinkSetup::Listen(a),
            LinkEnd::Connect(a) => LinkSetup::Connect(a),
        };
        setups.push((setup, key));
    }
    let first_links: Vec<_> = setups.clone();
    let mut shell = Shell::new(tap, pcap, waker.clone()).context("building the TAP shell")?;
    let (publisher, status_rx) = crate::admin::StatusPublisher::new(now, Some(waker.clone()));
    let stop_waker = waker.clone();
    let grace_waker = waker.clone();
    let link_waker = waker.clone();
    let hangup_waker = waker.clone();
    let first_to_stack = to_stack.clone();
    let metrics_upstreams: Vec<Arc<Upstream>> = upstreams.iter().flatten().cloned().collect();
    let mut node = NodeShell::new(core, from_links, upstreams, runtime.handle().clone(), waker);
    let access = crate::access_log::AccessLog::start(&cfg.log)?;
    if let Some(log) = &access {
        tracing::info!(path = ?cfg.log.access, format = ?cfg.log.access_format, "access log: upstream and generate requests");
        node.set_access_log(log.clone(), prefixes);
    }
    node.set_status(publisher);
    node.set_lifecycle(lifecycle(&cfg)?);
    node.set_relink(crate::service::Relink { setups, to_stack });
    if let Some(check) = cfg.app_check()? {
        tracing::info!(address = %check.address, path = %check.path, "application check");
        node.set_app_check(check);
    }
    let admin_path = cfg.admin_socket();
    let admin = crate::admin::bind(&admin_path)?;
    tracing::info!(socket = %admin_path.display(), "admin socket (hotpair status)");
    // Preemption control (rejoin.rs): the links open after
    // `rejoin_delay_ms`, longer while crash-looping; the admin socket's
    // directory (made by `bind`) keeps the count of starts.
    let starts = crate::rejoin::starts_file(&admin_path);
    let link_delay = crate::rejoin::on_start(&starts, Duration::from_millis(cfg.rejoin_delay_ms()));
    for (i, (setup, key)) in first_links.into_iter().enumerate() {
        let (to_stack, waker) = (first_to_stack.clone(), link_waker.clone());
        runtime.spawn(async move {
            tokio::time::sleep(link_delay).await;
            link::run(setup, key, i, to_stack, waker).await;
        });
    }
    // `hotpair switchover`: the SIGTERM path, asked on the admin socket.
    let switchover: crate::admin::SwitchoverAction = Arc::new(move || {
        STOP.store(true, Ordering::Relaxed);
        stop_waker.wake();
    });
    runtime.spawn(crate::admin::serve(
        admin,
        status_rx.clone(),
        Some(switchover),
    ));
    if let Some(addr) = cfg.admin.metrics {
        // Monitoring is not worth the service: a metrics address that is
        // taken or not (yet) on this host leaves the node without metrics,
        // not without a node.
        match crate::metrics::bind(addr) {
            Ok(l) => {
                tracing::info!(%addr, "metrics: GET /metrics, /healthz, /readyz");
                let stale_after =
                    crate::health::stale_after(Duration::from_millis(topo.heartbeat_timeout_ms));
                let extra = crate::metrics::Extra {
                    upstreams: metrics_upstreams,
                    access_log: access,
                };
                runtime.spawn(crate::metrics::serve(l, status_rx, stale_after, extra));
            }
            Err(e) => tracing::warn!(
                %addr,
                error = %format!("{e:#}"),
                "metrics: cannot listen; running on without metrics, /healthz and /readyz \
                 (fix [admin] metrics and restart the node)"
            ),
        }
    }
    install_signal_handlers();
    let (reload_tx, reload_rx) = mpsc::channel();
    node.set_reloads(reload_rx);
    match config {
        Some(path) => {
            runtime.spawn(reload_on_hangup(
                path,
                fixed_parts(&cfg),
                reload_tx,
                hangup_waker,
            ));
        }
        None => {
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(HANGUP_POLL);
                loop {
                    tick.tick().await;
                    if HANGUP.swap(false, Ordering::Relaxed) {
                        tracing::warn!(
                            "SIGHUP: no config file to read again; nothing was reloaded"
                        );
                    }
                }
            });
        }
    }
    for (i, s) in topo.sites.iter().enumerate() {
        tracing::info!(
            node = %cfg.node.name,
            tap = %cfg.node.tap,
            address = %s.address,
            port = s.port,
            tls_port = ?cfg.tls_port(),
            mac = %cfg.node.mac,
            max_connections = s.max_connections,
            role = config::role_name(s.role),
            peer = %s.peer.map_or("-", |p| node.core.peer_name(p)),
            site = i,
            "serving"
        );
    }
    let ran = shell.run(&mut node, &STOP);
    // Stopped (SIGTERM/SIGINT, `hotpair switchover`): tell the peers and
    // close the links first, so each takes over at once (a planned
    // switchover), not when this process has finished shutting down. An
    // owner keeps forwarding for LEAVE_GRACE: client frames sent before
    // the primary's claim reached the client still arrive here, and would
    // otherwise wait for the client's retransmission timeout.
    if node.begin_leave() && ran.is_ok() {
        static GRACE_OVER: AtomicBool = AtomicBool::new(false);
        let w = grace_waker;
        std::thread::spawn(move || {
            std::thread::sleep(LEAVE_GRACE);
            GRACE_OVER.store(true, Ordering::Relaxed);
            w.wake();
        });
        let _ = shell.run(&mut node, &GRACE_OVER);
    }
    node.leave(Duration::from_millis(500));
    // The `leaving` changes are queued: give the hook that long to see
    // them (the peer has taken over already; this only delays the exit).
    if let Some(mut l) = node.take_lifecycle() {
        l.finish(Duration::from_millis(cfg.hooks.timeout_ms.min(2000)));
    }
    if ran.is_err() {
        let _ = std::fs::remove_file(&admin_path);
    }
    ran.context("stack loop")?;
    let sh = shell.stats();
    for i in 0..node.core.sites() {
        let st = node.core.engine_stats(i);
        tracing::info!(
            address = %node.core.address(i),
            accepted = st.accepted,
            active = st.active,
            "stopped"
        );
    }
    tracing::info!(rx = sh.rx_frames, tx = sh.tx_frames, "stopped");
    crate::rejoin::on_clean_stop(&starts);
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = std::fs::remove_file(&admin_path);
    Ok(())
}
