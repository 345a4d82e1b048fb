//! `hotpair lab`: a ready network-namespace lab (client, switch, nodes) for
//! trying hotpair out and for the end-to-end tests.
//!
//! Everything is done by shelling out to iproute2 (`ip`); processes inside the
//! namespaces run through `ip netns exec`. The lab's state (configs, logs, pids,
//! docroot, `state.json`) lives in `/run/hotpair/lab-PREFIX/`.
//!
//! The crate: the lab's names and conventions here; its command line
//! (`args`), building a lab (`up`), operating on one (`control`: down, exec,
//! kill, freeze, restart), the application behind /app/ (`app`) and its
//! database (`db`, PostgreSQL for `--app orders`), its layouts (`topology`: who owns which address,
//! which nodes share a link) and its state file (`state`). `demo` and `pair`
//! are the two other commands built on the lab.

mod app;
mod args;
mod cgroup;
mod control;
mod db;
pub mod demo;
mod docroot;
#[cfg(test)]
mod fixtures;
mod ip;
mod net;
mod node_config;
pub mod pair;
mod partition;
mod proc;
pub(crate) mod state;
mod status;
pub mod tls;
pub(crate) mod topology;
mod up;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

pub use self::app::REQUEST_ID_HEADER;
pub use self::args::{run, LabArgs};
pub use self::control::{down, kill_node, Killed};
pub use self::db::DB_ADDRESS;
pub use self::state::AppKind;
pub use self::status::status_json;
pub use self::topology::{Mode, ReplNet};
pub use self::up::{up, Lab, LabOptions, StaticPolicy};

/// Default lab name prefix.
pub const DEFAULT_PREFIX: &str = "hp";
/// Where lab state directories live (`lab-PREFIX/` below it).
pub const STATE_ROOT: &str = "/run/hotpair";
/// The service address (VIP) the nodes serve, and its port.
pub const SERVICE_ADDRESS: &str = "10.77.0.10";
pub const SERVICE_PORT: u16 = 80;
/// The client namespace's address.
pub const CLIENT_ADDRESS: &str = "10.77.0.100";
/// Prefix length of the lab LAN 10.77.0.0/24.
pub const LAN_PREFIX_LEN: u8 = 24;
/// The TAP device each node namespace gets.
pub const TAP_NAME: &str = "hptap0";
/// Where the upstream app listens inside each node namespace.
pub const UPSTREAM_ADDRESS: &str = "127.0.0.1:8080";
/// TCP port of the replication link (the primary listens on it).
pub const REPL_PORT: u16 = 7700;
/// The dedicated replication network (`--repl-net dedicated`): 10.78.0.<i>/24
/// on `repl0`; in duplex a veth pair joining the two node namespaces
/// directly, in the multi-address modes veths to a bridge in the switch.
pub const REPL_SUBNET: &str = "10.78.0";
pub const REPL_INTERFACE: &str = "repl0";
/// The switch namespace's bridge of the dedicated replication network
/// (dual-role and ring, where more than two nodes or links share it).
pub const REPL_BRIDGE: &str = "br-repl";
/// Default `[replication] heartbeat_interval_ms` (`--heartbeat-interval-ms`):
/// the node's own default, defined once in the replicator.
pub const HEARTBEAT_INTERVAL_MS: u64 =
    hotpair_replicator::detector::DEFAULT_HEARTBEAT_INTERVAL.as_millis() as u64;
/// Default `[replication] heartbeat_timeout_ms` (`--heartbeat-timeout-ms`):
/// the node's own default.
pub const DEFAULT_HEARTBEAT_TIMEOUT_MS: u64 =
    hotpair_replicator::detector::DEFAULT_HEARTBEAT_TIMEOUT.as_millis() as u64;

const MAX_PREFIX_LEN: usize = 16;

// ---- names ------------------------------------------------------------------

fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty()
        || prefix.len() > MAX_PREFIX_LEN
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        bail!(
            "invalid lab prefix `{prefix}`: use 1 to {MAX_PREFIX_LEN} letters, digits or '_' \
             (no '-', so PREFIX-* names stay unambiguous)"
        );
    }
    Ok(())
}

/// `/run/hotpair/lab-PREFIX`.
pub fn state_dir(prefix: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(format!("lab-{prefix}"))
}

/// Whether `suffix` (the part after `PREFIX-`) names a lab namespace.
fn is_lab_member(suffix: &str) -> bool {
    match suffix {
        "client" | "sw" | "db" => true,
        _ => suffix
            .strip_prefix('n')
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit())),
    }
}

/// Namespaces that exist now and belong to the lab `prefix`.
fn existing_namespaces(prefix: &str) -> Result<Vec<String>> {
    let head = format!("{prefix}-");
    Ok(ip::netns_list()?
        .into_iter()
        .filter(|ns| ns.strip_prefix(&head).is_some_and(is_lab_member))
        .collect())
}

fn node_mac(index: u32) -> String {
    format!("02:68:70:00:00:{index:02x}")
}

fn node_address(index: u32) -> String {
    format!("10.77.0.{index}")
}

fn require_root() -> Result<()> {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the lab needs root (it creates network namespaces); run it as root");
    }
    Ok(())
}

/// The last `lines` lines of a log file (for error messages).
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            if all.is_empty() {
                "    (empty)".to_owned()
            } else {
                all[start..]
                    .iter()
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Err(e) => format!("    (cannot read: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(validate_prefix("hp").is_ok());
        assert!(validate_prefix("t1234_5").is_ok());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("a-b").is_err());
        assert!(validate_prefix("a/b").is_err());
        assert!(validate_prefix("abcdefghijklmnopq").is_err());
    }

    #[test]
    fn members() {
        for ok in ["client", "sw", "db", "n1", "n12"] {
            assert!(is_lab_member(ok), "{ok}");
        }
        for bad in ["n", "nx", "client2", "x", "", "n1a", "db1"] {
            assert!(!is_lab_member(bad), "{bad}");
        }
    }
}
