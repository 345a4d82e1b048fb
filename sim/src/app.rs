//! The application behind the nodes (`/app/`, a [`Handler::External`]
//! route the node core hands to its shell as jobs) and the database behind
//! it, one per world as a real database sits behind both nodes.
//!
//! A job takes a seeded virtual-time delay: the application commits the
//! request half-way through and replies at the end. The database is
//! insert-or-return by request id (`X-Request-Id`, the same on every node):
//! the first execution stores its reply, a request id executed again — on
//! the peer after a takeover — gets the stored reply back, not a new
//! commit. The reply names its commit's sequence number, so a request run
//! under two ids (two commits) cannot pass for one.
//!
//! [`Handler::External`]: hotpair_replicator::node::Handler::External

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hotpair_http::{Request, Response, ServerConn};

use crate::content;
use crate::rng::derive;

/// The application's route prefix.
pub const APP_PREFIX: &str = "/app/";
/// The health path the application check asks (any answer from a live
/// application is a pass).
pub const HEALTH_PATH: &str = "/app/health";
/// Shortest and longest time a job takes.
pub const MIN_DELAY: Duration = Duration::from_millis(1);
pub const MAX_DELAY: Duration = Duration::from_millis(40);
/// How long a dead application takes to refuse (connection refused).
pub const REFUSE_DELAY: Duration = Duration::from_micros(200);
/// How long a live application takes to answer the health check.
pub const CHECK_DELAY: Duration = Duration::from_millis(1);

/// A digest of what the application reads of a request: method, path,
/// query and body (FNV-1a, 64 bits).
pub fn request_digest(method: &str, path: &str, query: Option<&str>, body: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let q = query.unwrap_or("");
    for part in [
        method.as_bytes(),
        b" ",
        path.as_bytes(),
        b"?",
        q.as_bytes(),
        b"\n",
        body,
    ] {
        for &b in part {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

/// The digest of a parsed request.
pub fn digest_of(r: &Request) -> u64 {
    request_digest(r.method.as_str(), &r.path, r.query.as_deref(), &r.body)
}

/// The digest of a raw request as the client writes it (parsed by the
/// same HTTP layer the nodes use).
pub fn digest_of_raw(raw: &[u8]) -> Option<u64> {
    let t0 = std::time::Instant::now();
    let mut conn = ServerConn::new(content::get().limits, t0);
    let _ = conn.handle_input(raw, t0);
    conn.poll_request().map(|r| digest_of(&r))
}

/// How long job `request_id` takes on a node (a function of the run's seed
/// and the id: the same request takes another time on the peer).
pub fn job_delay(seed: u64, node: usize, request_id: &str) -> Duration {
    let h = request_id
        .bytes()
        .fold(derive(seed, 50 + node as u64), |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    let span = (MAX_DELAY - MIN_DELAY).as_micros() as u64;
    MIN_DELAY + Duration::from_micros(derive(h, 1) % (span + 1))
}

/// One committed request.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The digest of the request committed.
    pub digest: u64,
    /// The stored reply.
    pub response: Response,
    /// Times the request id was executed (the first committed it).
    pub executions: u64,
}

/// The database: committed requests by request id.
#[derive(Debug, Default)]
pub struct Database {
    commits: BTreeMap<String, Commit>,
}

impl Database {
    /// Execute request `request_id` (digest `digest`): commit it, or return
    /// what its first execution stored.
    pub fn execute(&mut self, request_id: &str, digest: u64) -> Response {
        let seq = self.commits.len() as u64;
        let c = self
            .commits
            .entry(request_id.to_owned())
            .or_insert_with(|| Commit {
                digest,
                response: app_response(request_id, digest, seq),
                executions: 0,
            });
        c.executions += 1;
        c.response.clone()
    }

    pub fn get(&self, request_id: &str) -> Option<&Commit> {
        self.commits.get(request_id)
    }

    pub fn commits(&self) -> impl Iterator<Item = (&String, &Commit)> {
        self.commits.iter()
    }

    pub fn len(&self) -> usize {
        self.commits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commits.is_empty()
    }
}

/// The application's reply to a request: its id, its digest and the
/// commit's sequence number.
pub fn app_response(request_id: &str, digest: u64, seq: u64) -> Response {
    Response::new(200)
        .header("Content-Type", "text/plain")
        .body(Bytes::from(format!(
            "hotpair-sim app\nrequest-id: {request_id}\nrequest: {digest:016x}\ncommit: {seq}\n"
        )))
}

/// The request id a reply body names.
pub fn request_id_of(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let mut lines = text.lines();
    (lines.next()? == "hotpair-sim app").then_some(())?;
    lines.next()?.strip_prefix("request-id: ")
}

/// The bytes a client must receive for `raw` (a whole request) answered
/// with `response`, as the nodes' HTTP layer frames it.
pub fn render(raw: &[u8], response: &Response) -> Option<Bytes> {
    let t0 = std::time::Instant::now();
    let mut conn = ServerConn::new(content::get().limits, t0);
    let _ = conn.handle_input(raw, t0);
    let r = conn.poll_request()?;
    conn.send_response(r.index, response.clone()).ok()?;
    let mut out = Vec::new();
    while let Some(chunk) = conn.poll_output() {
        let n = chunk.len();
        out.extend_from_slice(chunk);
        conn.consume_output(n);
    }
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_executed_again_gets_its_stored_reply() {
        let mut db = Database::default();
        let a = db.execute("c1-0", 7);
        let b = db.execute("c2-0", 8);
        assert_ne!(a, b);
        assert_eq!(db.execute("c1-0", 7), a, "insert-or-return");
        assert_eq!(db.len(), 2);
        assert_eq!(db.get("c1-0").map(|c| c.executions), Some(2));
        assert_eq!(request_id_of(&a.body), Some("c1-0"));
    }

    #[test]
    fn delays_stay_in_bounds_and_differ_between_nodes() {
        let d: Vec<Duration> = (0..2).map(|n| job_delay(1, n, "x-0")).collect();
        assert!(d.iter().all(|d| (MIN_DELAY..=MAX_DELAY).contains(d)));
        assert_eq!(job_delay(1, 0, "x-0"), d[0], "deterministic");
    }
}
