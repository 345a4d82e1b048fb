//! `upstream` handler: reverse proxy to the user's application over kernel
//! TCP, on hyper's HTTP/1.1 client with hyper-util's keep-alive pool.
//!
//! The client's own `X-Request-Id` goes through as it came; the replication
//! id, stable for the request on every node so the application can
//! deduplicate a request re-executed after a takeover, goes in its own
//! header (`request_id_header`). Hop-by-hop headers are not forwarded in
//! either direction (`headers.rs`). The reply body is read whole (bounded)
//! because hotpair replies are whole messages (they are logged whole to the
//! backup in duplex mode).
//!
//! Retries: hyper-util re-sends only a request that was never written (its
//! pooled connection closed before hyper used it). Beyond that, a request
//! whose connection failed before any reply is re-sent once only if its
//! method is idempotent, or the route says the application deduplicates
//! (`retry_non_idempotent`): a POST that reached the application and lost
//! its reply is never executed twice behind the operator's back.
//!
//! Fallback: a route may name other instances of the same application
//! (`fallback`, typically the peer node's). A request the local one could
//! not take or dropped before a whole reply (unreachable: refused, reset,
//! closed) is sent to them in turn, whatever its method: the pair already
//! relies on the application deduplicating on the request id header — a
//! takeover runs a request again on the peer's application the same way.
//! This is what keeps a connection that only this node can serve (one it
//! took over alone, with no shadow on the peer) answered while its own
//! application is down.

mod direct;
mod headers;
mod resolve;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hotpair_http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::HeaderName;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use headers::{check_request_id_header, DEFAULT_REQUEST_ID_HEADER};

/// `max_idle`'s default.
pub const DEFAULT_MAX_IDLE: usize = 64;
/// `timeout_ms`' default: the whole exchange.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// `idle_timeout_ms`' default: below the usual application servers' own
/// keep-alive timeouts would be better still, but those vary (gunicorn
/// 2 s, nginx 75 s); a connection they closed first is detected and not
/// used for a request that cannot be retried (see the module doc).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 30_000;
/// `connect_timeout_ms`' default.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// How long failures are said once at warn (then counted, and said with
/// the count of those not said).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// One route's upstream, as configured.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The route's prefix: in logs and metrics.
    pub route: String,
    /// `host:port`, checked by [`parse_address`].
    pub address: String,
    /// Other instances of the application (`host:port` each), tried in
    /// order when `address` is unreachable (see the module doc).
    pub fallback: Vec<String>,
    pub max_idle: usize,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    /// The whole exchange: connecting, sending, the whole reply.
    pub timeout: Duration,
    /// Largest reply body kept.
    pub max_body: u64,
    pub retry_non_idempotent: bool,
    /// Checked by [`check_request_id_header`].
    pub request_id_header: String,
    /// Open each request's connection with a PROXY protocol v2 header
    /// (not pooled then: `direct.rs`).
    pub proxy_protocol: bool,
}

/// An `address` that is not `host:port`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("{0:?} has no port: write host:port, e.g. \"app.internal:8080\"")]
    NoPort(String),
    #[error("{0:?}: the port must be a number within 1..=65535")]
    BadPort(String),
    #[error("{0:?}: {1:?} is not a host name or IP address (an IPv6 address goes in brackets: \"[::1]:8080\")")]
    BadHost(String, String),
}

/// `proxy_protocol`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum ProxyProtocol {
    /// The binary version 2 header.
    #[serde(rename = "v2")]
    V2,
}

/// A route's upstream settings that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpstreamError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error("{0:?}: {1}")]
    RequestIdHeader(String, &'static str),
    #[error("fallback {0:?} is the route's own address")]
    FallbackIsAddress(String),
}

/// Check an upstream `address`: an IP address or a host name (resolved
/// when a connection is made), and a port.
pub fn parse_address(s: &str) -> Result<(), AddressError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return if a.port() == 0 {
            Err(AddressError::BadPort(s.into()))
        } else {
            Ok(())
        };
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(AddressError::NoPort(s.into()));
    };
    if host.contains(':') || host.starts_with('[') {
        // "::1" (no port) or "::1:8080": an IPv6 address needs brackets.
        return Err(AddressError::BadHost(s.into(), host.into()));
    }
    if port.is_empty() {
        return Err(AddressError::NoPort(s.into()));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
        _ => return Err(AddressError::BadPort(s.into())),
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(AddressError::BadHost(s.into(), host.into()));
    }
    Ok(())
}

/// Why an exchange failed; each maps to a reply status and a metric kind.
#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("cannot resolve the application's host: {0}")]
    Resolve(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("no whole reply within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Protocol(String),
    /// The application closed or reset the connection before a whole
    /// reply: it is gone (or going), not answering badly.
    #[error("the application dropped the connection before a whole reply: {0}")]
    Dropped(String),
    #[error("reply body larger than {0} bytes (http.max_body_bytes)")]
    TooLarge(u64),
}

/// The error kinds counted (`hotpair_upstream_errors_total{kind}`).
pub const ERROR_KINDS: [&str; 4] = ["connect", "timeout", "protocol", "too_large"];

impl ProxyError {
    fn kind(&self) -> usize {
        match self {
            ProxyError::Resolve(_) | ProxyError::Connect(_) | ProxyError::ConnectTimeout(_) => 0,
            ProxyError::Timeout(_) => 1,
            ProxyError::Protocol(_) | ProxyError::Dropped(_) => 2,
            ProxyError::TooLarge(_) => 3,
        }
    }

    /// The application could not take the request at all, or dropped it
    /// before a whole reply (`NodeCore::handle_job_unreachable`: its peer
    /// may run it instead). Not a resolution failure (both nodes share the
    /// name service), not a slow application (504), not a bad reply.
    fn unreachable(&self) -> bool {
        matches!(self, ProxyError::Connect(_) | ProxyError::Dropped(_))
    }

    /// 504 when the application was too slow (to accept or to answer),
    /// 502 when it could not be reached or answered badly.
    fn status(&self) -> u16 {
        match self {
            ProxyError::ConnectTimeout(_) | ProxyError::Timeout(_) => 504,
            _ => 502,
        }
    }
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
struct Stats {
    responses: Mutex<BTreeMap<u16, u64>>,
    errors: [AtomicU64; ERROR_KINDS.len()],
    /// Requests a fallback answered.
    fallback: AtomicU64,
}

/// A copy of an upstream's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Replies from the application, by status code.
    pub responses: Vec<(u16, u64)>,
    /// Failures, by kind, in [`ERROR_KINDS`]' order.
    pub errors: [u64; ERROR_KINDS.len()],
    /// Requests a fallback instance answered (the local one unreachable).
    pub fallback: u64,
}

/// At most one warn per [`WARN_EVERY`]; the rest at debug, counted.
#[derive(Debug, Default)]
struct WarnLimit {
    state: Mutex<(Option<Instant>, u64)>,
}

impl WarnLimit {
    /// `Some(failures not said since the last warn)` when this one is.
    fn allow(&self, now: Instant) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match st.0 {
            Some(last) if now.duration_since(last) < WARN_EVERY => {
                st.1 += 1;
                None
            }
            _ => {
                st.0 = Some(now);
                Some(std::mem::take(&mut st.1))
            }
        }
    }
}

type HyperClient = Client<HttpConnector<resolve::Resolver>, Full<Bytes>>;

/// The upstream proxy of each route, by route index (`None` where the core
/// answers itself).
pub type Upstreams = Vec<Option<std::sync::Arc<Upstream>>>;

/// One upstream application.
pub struct Upstream {
    cfg: UpstreamConfig,
    client: HyperClient,
    /// `http://host:port` of `address`, then of each fallback: the
    /// pool's keys.
    bases: Vec<String>,
    request_id_header: HeaderName,
    stats: Stats,
    warn: WarnLimit,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("cfg", &self.cfg).finish()
    }
}

/// Whether a method may be executed twice (RFC 9110 §9.2.2).
fn idempotent(m: Method) -> bool {
    matches!(
        m,
        Method::Get | Method::Head | Method::Put | Method::Delete | Method::Options
    )
}

/// `e` and its causes, one line.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The first cause of `e` (itself included) of type `T`.
fn find<'a, T: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        cur = c.source();
    }
    None
}

impl Upstream {
    /// The pool is built here; its connections are made on first use, on
    /// the tokio runtime `handle` runs on.
    pub fn new(cfg: UpstreamConfig) -> Result<Self, UpstreamError> {
        parse_address(&cfg.address)?;
        for f in &cfg.fallback {
            parse_address(f)?;
            if *f == cfg.address {
                return Err(UpstreamError::FallbackIsAddress(f.clone()));
            }
        }
        let request_id_header = check_request_id_header(&cfg.request_id_header)?;
        let mut connector = HttpConnector::new_with_resolver(resolve::Resolver);
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            // The idle expiry needs a timer.
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(cfg.idle_timeout)
            .pool_max_idle_per_host(cfg.max_idle)
            // hyper-util's default, said here because the safety of POST
            // rests on it: only a request never written is re-sent.
            .retry_canceled_requests(true)
            .build(connector);
        Ok(Upstream {
            bases: std::iter::once(&cfg.address)
                .chain(&cfg.fallback)
                .map(|a| format!("http://{a}"))
                .collect(),
            cfg,
            client,
            request_id_header,
            stats: Stats::default(),
            warn: WarnLimit::default(),
        })
    }

    /// The route's prefix.
    pub fn route(&self) -> &str {
        &self.cfg.route
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        let responses = self
            .stats
            .responses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(c, n)| (*c, *n))
            .collect();
        let mut errors = [0; ERROR_KINDS.len()];
        for (e, c) in errors.iter_mut().zip(&self.stats.errors) {
            *e = c.load(Ordering::Relaxed);
        }
        StatsSnapshot {
            responses,
            errors,
            fallback: self.stats.fallback.load(Ordering::Relaxed),
        }
    }

    /// Proxy `req` from `client`, who connected to `service`; never fails:
    /// errors become 502, a timeout 504.
    pub async fn handle(
        &self,
        req: &Request,
        request_id: &str,
        client: SocketAddr,
        service: SocketAddr,
    ) -> Response {
        self.handle_outcome(req, request_id, client, service)
            .await
            .response
    }

    /// [`Upstream::handle`], saying whether the application was unreachable.
    pub async fn handle_outcome(
        &self,
        req: &Request,
        request_id: &str,
        client: SocketAddr,
        service: SocketAddr,
    ) -> Proxied {
        let mut local_unreachable = false;
        let mut last = None;
        for target in 0..self.bases.len() {
            let exchange = self.exchange(target, req, request_id, client, service);
            let r = match tokio::time::timeout(self.cfg.timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err(ProxyError::Timeout(self.cfg.timeout)),
            };
            match r {
                Ok(resp) => {
                    *self
                        .stats
                        .responses
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(resp.status)
                        .or_default() += 1;
                    if target > 0 {
                        self.stats.fallback.fetch_add(1, Ordering::Relaxed);
                    }
                    return Proxied {
                        response: resp,
                        unreachable: false,
                        local_unreachable,
                    };
                }
                Err(e) => {
                    self.stats.errors[e.kind()].fetch_add(1, Ordering::Relaxed);
                    let upstream = self.address(target);
                    let next = (e.unreachable() && target + 1 < self.bases.len())
                        .then(|| self.address(target + 1));
                    match self.warn.allow(Instant::now()) {
                        Some(unsaid) => tracing::warn!(
                            route = %self.cfg.route,
                            upstream,
                            error = %e,
                            request_id,
                            failures_not_logged = unsaid,
                            fallback = next,
                            "upstream request failed"
                        ),
                        None => tracing::debug!(
                            route = %self.cfg.route,
                            upstream,
                            error = %e,
                            request_id,
                            fallback = next,
                            "upstream request failed"
                        ),
                    }
                    local_unreachable |= target == 0 && e.unreachable();
                    // Only an application that is not there is passed
                    // over: a slow or wrong answer is the answer.
                    let again = next.is_some();
                    last = Some(e);
                    if !again {
                        break;
                    }
                }
            }
        }
        let e = last.unwrap_or(ProxyError::Protocol("no upstream".into()));
        Proxied {
            response: Response::error(e.status()),
            unreachable: e.unreachable(),
            local_unreachable,
        }
    }

    /// The `host:port` of target `i` (0: `address`, then the fallbacks).
    fn address(&self, i: usize) -> &str {
        if i == 0 {
            &self.cfg.address
        } else {
            &self.cfg.fallback[i - 1]
        }
    }

    async fn exchange(
        &self,
        target: usize,
        req: &Request,
        request_id: &str,
        client: SocketAddr,
        service: SocketAddr,
    ) -> Result<Response, ProxyError> {
        let fwd = headers::Forwarding {
            client,
            request_id,
            request_id_header: &self.request_id_header,
            authority: self.address(target),
        };
        let head = headers::request_head(req, &fwd, &self.bases[target])
            .map_err(|e| ProxyError::Protocol(format!("request not forwardable: {e}")))?;
        let proxy_header = self
            .cfg
            .proxy_protocol
            .then(|| direct::header_v2(client, service));
        let retries = idempotent(req.method) || self.cfg.retry_non_idempotent;
        let mut attempt = 0;
        let resp = loop {
            let mut r = hyper::Request::new(Full::new(req.body.clone()));
            *r.method_mut() = head.method.clone();
            *r.headers_mut() = head.headers.clone();
            let sent = match &proxy_header {
                None => {
                    *r.uri_mut() = head.uri.clone();
                    self.client.request(r).await.map_err(|e| {
                        let err = self.classify(&e);
                        let again = retryable(&e, &err);
                        (err, again)
                    })
                }
                Some(ph) => {
                    // A connection of its own: the target in origin form.
                    if let Some(pq) = head.uri.path_and_query() {
                        *r.uri_mut() = hyper::Uri::from(pq.clone());
                    }
                    direct::send(self.address(target), self.cfg.connect_timeout, ph, r).await
                }
            };
            match sent {
                Ok(resp) => break resp,
                Err((err, again)) => {
                    if attempt == 0 && retries && again {
                        tracing::debug!(route = %self.cfg.route, error = %err, request_id, "upstream connection failed before a reply: sending again");
                        attempt += 1;
                        continue;
                    }
                    // Closed or reset before a reply: the application went.
                    return Err(match err {
                        ProxyError::Protocol(text) if again => ProxyError::Dropped(text),
                        other => other,
                    });
                }
            }
        };
        let status = resp.status().as_u16();
        if status < 200 {
            // hyper consumes 100/103; a 101 answers an upgrade never asked.
            return Err(ProxyError::Protocol(format!(
                "an interim reply {status} as the final one"
            )));
        }
        let (parts, body) = resp.into_parts();
        let announced = parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > self.cfg.max_body) {
            return Err(ProxyError::TooLarge(self.cfg.max_body));
        }
        let limit = usize::try_from(self.cfg.max_body).unwrap_or(usize::MAX);
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    ProxyError::TooLarge(self.cfg.max_body)
                } else if dropped(&*e) {
                    ProxyError::Dropped(format!("reading the reply body: {}", chain(&*e)))
                } else {
                    ProxyError::Protocol(format!("reading the reply body: {}", chain(&*e)))
                }
            })?
            .to_bytes();
        let mut out = Response::new(status);
        out.headers = headers::response_headers(&parts.headers);
        out.body = body;
        Ok(out)
    }

    fn classify(&self, e: &hyper_util::client::legacy::Error) -> ProxyError {
        let text = chain(e);
        if e.is_connect() {
            if find::<resolve::ResolveError>(e).is_some() {
                ProxyError::Resolve(text)
            } else if find::<std::io::Error>(e)
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            {
                ProxyError::ConnectTimeout(self.cfg.connect_timeout)
            } else {
                ProxyError::Connect(text)
            }
        } else {
            ProxyError::Protocol(text)
        }
    }
}

/// What a proxied request came to.
#[derive(Debug)]
pub struct Proxied {
    /// The reply for the client (an error reply when the exchange failed).
    pub response: Response,
    /// No instance of the application could take the request or each
    /// dropped it before a whole reply (see `ProxyError::unreachable`).
    pub unreachable: bool,
    /// The local application (`address`) was unreachable, whether or not a
    /// fallback answered: evidence for the application check.
    pub local_unreachable: bool,
}

/// A reply body cut short by the application's end of the connection.
fn dropped(e: &(dyn StdError + 'static)) -> bool {
    find::<hyper::Error>(e).is_some_and(|h| h.is_incomplete_message() || h.is_closed())
        || find::<std::io::Error>(e).is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        })
}

/// Whether a failed attempt may be made again: the connection failed
/// before a reply head came whole (refused, reset, closed) — not a reply
/// hyper could not parse, not a timeout.
fn retryable(e: &(dyn StdError + 'static), err: &ProxyError) -> bool {
    match err {
        ProxyError::Connect(_) => true,
        ProxyError::Protocol(_) => {
            if let Some(h) = find::<hyper::Error>(e) {
                if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                    return true;
                }
                if h.is_parse() || h.is_user() {
                    return false;
                }
            }
            find::<std::io::Error>(e).is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                )
            })
        }
        _ => false,
    }
}
