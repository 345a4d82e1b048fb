//! The hotpair node as a library: configuration, the node service
//! (HTTP connections, handlers, replication glue), the replication link and
//! the upstream proxy, the admin socket and metrics. The `hotpair` binary
//! (`cli/`) adds the CLI over it, the lab, demo and pair (`lab/`) and the
//! bench (`bench/`); the deterministic simulation (`sim/`) drives
//! [`service::NodeService`] over the stack's sans-IO engine in virtual time.

pub mod access_log;
pub mod admin;
pub mod app_check;
pub mod config;
mod config_doc;
pub mod health;
pub mod hooks;
pub mod lifecycle;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod one_shot;
pub mod out;
pub mod rejoin;
pub mod sdnotify;
pub mod secure;
pub mod service;
pub mod stall;
pub mod upstream;

/// A current-thread tokio runtime for a unit test (time and I/O enabled).
#[cfg(test)]
pub(crate) fn test_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for a test")
}
