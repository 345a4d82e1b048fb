//! Routes and the work the node core hands to its shell.
//!
//! `files` replies are made inside the round (in memory, deterministic).
//! `generate` burns CPU and `upstream` waits on the network: the core hands
//! them out as [`Job`]s, and the shell runs them (a thread pool, an async
//! client) and returns the reply with
//! [`crate::node::NodeCore::handle_job_done`]. The simulation runs
//! `generate` inside the round instead, so it stays deterministic.

use hotpair_http::files::Files;
use hotpair_http::Request;
use hotpair_stack::ConnId;

/// A route's handler, as far as the core knows it.
pub enum Handler {
    /// A document root held in memory.
    Files(Files),
    /// The built-in CPU workload: `?size=` random bytes (≤ `max_size`).
    Generate {
        /// Largest `?size=` served.
        max_size: usize,
    },
    /// Served by the shell (a reverse proxy to the application): the core
    /// hands each request out as [`Work::Route`].
    External,
}

/// A URL path prefix, its handler and its content policy.
pub struct Route {
    /// e.g. `/static/`.
    pub prefix: String,
    /// What answers it.
    pub handler: Handler,
    /// How its replies are replicated. `Static` and `SyncStatic` need a
    /// handler both nodes run alike: only [`Handler::Files`] here (the core
    /// refuses others).
    pub policy: crate::Policy,
}

/// Work for the shell.
#[derive(Debug)]
pub enum Work {
    /// Run `hotpair_http::generate::handle(&request, seed, max_size)`.
    Generate {
        /// The reply's seed (a fresh one per request).
        seed: u64,
        /// The route's ceiling.
        max_size: usize,
    },
    /// The request goes to the handler of route `route` (an index into the
    /// routes given to the core), which is [`Handler::External`].
    Route {
        /// Index of the route.
        route: usize,
        /// The replication id for the application (its own header, beside
        /// the client's `X-Request-Id`): the same on every node.
        request_id: String,
    },
}

/// A request the shell answers; give the reply back with
/// [`crate::node::NodeCore::handle_job_done`]`(site, conn, index, response)`.
#[derive(Debug)]
pub struct Job {
    /// The service address's index.
    pub site: usize,
    /// The connection.
    pub conn: ConnId,
    /// The request's index on its connection.
    pub index: u64,
    /// The request.
    pub request: Request,
    /// The client's address (the connection's far end): for the
    /// application's `X-Forwarded-For` and the access log.
    pub client: std::net::SocketAddr,
    /// The service port the client connected to (the address's HTTP port,
    /// or its HTTPS port): what a PROXY header names as the destination.
    pub port: u16,
    /// What to do with it.
    pub work: Work,
}
