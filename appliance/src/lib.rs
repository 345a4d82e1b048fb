//! The hotpair appliance as a library: configuration, the node service
//! (HTTP connections, handlers, replication glue), the replication link and
//! the upstream proxy. The `hotpair` binary adds the CLI, the lab and the
//! demo; the deterministic simulation (`sim/`) drives [`service::NodeService`]
//! over the stack's sans-IO engine in virtual time.

pub mod admin;
pub mod capture;
pub mod config;
mod config_doc;
pub mod health;
pub mod hooks;
pub mod lifecycle;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod out;
pub mod rejoin;
pub mod sdnotify;
pub mod secure;
pub mod service;
pub mod stall;
pub mod upstream;
