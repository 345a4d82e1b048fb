//! `state.json`: what a lab consists of, written by `lab up` and read by the
//! other lab commands (and by a later `lab up` cleaning up after a crash).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::cgroup::CgroupState;
use super::proc::Proc;
pub use super::topology::{AddressState, PeerLinkState};
use super::{Mode, ReplNet};

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// `lab up` is building it (or died while doing so).
    Building,
    /// Built and the nodes served.
    Up,
    /// `lab up` failed; left in place for inspection.
    Failed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabState {
    pub prefix: String,
    pub mode: Mode,
    /// The replication link's settings (duplex); `None` in simplex.
    #[serde(default)]
    pub replication: Option<ReplicationState>,
    pub phase: Phase,
    pub state_dir: PathBuf,
    pub docroot: PathBuf,
    /// Whether the docroot was generated into the state dir (vs. `--docroot`).
    pub docroot_generated: bool,
    pub service_address: String,
    pub service_port: u16,
    pub client: ClientState,
    pub switch: SwitchState,
    pub nodes: Vec<NodeState>,
    /// Every service address and the nodes serving it. Empty in state files
    /// written before multi-address modes; [`LabState::service_addresses`]
    /// derives it then.
    #[serde(default)]
    pub addresses: Vec<AddressState>,
    /// Every replication link (one per pair of nodes sharing an address).
    #[serde(default)]
    pub links: Vec<PeerLinkState>,
    /// The application behind /app/ on every node.
    #[serde(default)]
    pub app: AppKind,
    /// The database namespace and server (`--app orders`).
    #[serde(default)]
    pub db: Option<DbState>,
    /// `--tls`: the addresses serve HTTPS on `tls::TLS_PORT` (443) as
    /// well as HTTP on `service_port`; a client trusts
    /// `tls::ca_path(state_dir)`.
    #[serde(default)]
    pub tls: bool,
}

/// The application behind `/app/`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AppKind {
    /// lab/assets/upstream.py: SHA-256 of POST bodies, `?size=N` bytes.
    #[default]
    Toy,
    /// lab/assets/orders.py on PostgreSQL (docs/application.md).
    Orders,
}

/// The lab's database (`lab up --app orders`): where it runs; started and
/// stopped by `db.rs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DbState {
    pub namespace: String,
    /// `10.77.0.200`.
    pub address: String,
    pub port: u16,
    /// PostgreSQL's `bin` directory (initdb, postgres, psql).
    pub bin_dir: PathBuf,
    /// Owned by `postgres`: the cluster in `data/`, the Unix socket beside it.
    pub dir: PathBuf,
    pub log: PathBuf,
    /// The postmaster, once started.
    pub process: Option<Proc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicationState {
    pub net: ReplNet,
    /// The port the primary listens on for the link.
    pub port: u16,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientState {
    pub namespace: String,
    pub interface: String,
    pub address: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SwitchState {
    pub namespace: String,
    pub bridge: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeState {
    /// `n1`, `n2`, …
    pub name: String,
    pub index: u32,
    pub namespace: String,
    /// The namespace's own kernel address on `br-lan` (replication link).
    pub address: String,
    pub mac: String,
    /// The configured role: `simplex`, `primary` or `owner`.
    #[serde(default = "simplex_role")]
    pub role: String,
    /// The node's end of the replication link (duplex).
    #[serde(default)]
    pub link: Option<LinkState>,
    pub tap: String,
    pub config: PathBuf,
    pub log: PathBuf,
    pub pcap: Option<PathBuf>,
    /// The `hotpair node` process, once started.
    pub process: Option<Proc>,
    /// Set by `lab kill`.
    pub killed: bool,
    pub upstream: UpstreamState,
    /// The CPU cgroup holding the node and its upstream app (`--node-cpus`).
    #[serde(default)]
    pub cgroup: Option<CgroupState>,
}

fn simplex_role() -> String {
    "simplex".to_owned()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkState {
    /// The interface carrying the link: `br-lan` (shared) or `repl0` (dedicated).
    pub interface: String,
    /// The node's own address on it.
    pub address: String,
    /// The node's link private key (hex); `None`: plaintext links.
    #[serde(default)]
    pub private_key: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpstreamState {
    pub address: String,
    pub log: PathBuf,
    pub process: Option<Proc>,
    /// Set by `lab kill --app`, cleared when it is started again.
    #[serde(default)]
    pub killed: bool,
}

impl LabState {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("state.json")
    }

    /// Loads the state file; `Ok(None)` when there is none.
    pub fn load(state_dir: &Path) -> Result<Option<LabState>> {
        let path = Self::path(state_dir);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let state =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Some(state))
    }

    /// Writes the state file atomically.
    pub fn save(&self) -> Result<()> {
        let path = Self::path(&self.state_dir);
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Every process the lab started but the database (nodes and upstream
    /// apps; the database is stopped after them, see `db::stop`).
    pub fn processes(&self) -> Vec<Proc> {
        self.nodes
            .iter()
            .flat_map(|n| [n.process, n.upstream.process])
            .flatten()
            .collect()
    }

    /// The service addresses, derived from the mode for state files that
    /// predate the `addresses` list.
    pub fn service_addresses(&self) -> Vec<AddressState> {
        if self.addresses.is_empty() {
            super::topology::addresses(self.mode, self.nodes.len() as u32)
        } else {
            self.addresses.clone()
        }
    }

    /// Every namespace of the lab, client and switch first, the database's last.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.client.namespace.clone(), self.switch.namespace.clone()];
        v.extend(self.nodes.iter().map(|n| n.namespace.clone()));
        v.extend(self.db.iter().map(|d| d.namespace.clone()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{test_node, test_state};
    use super::*;

    #[test]
    fn old_state_files_still_load() {
        // A state.json written before duplex existed: no role, link or replication.
        let mut v = serde_json::to_value(test_state(Mode::Simplex, None)).unwrap();
        let mut node = serde_json::to_value(test_node(1, "simplex", None)).unwrap();
        node.as_object_mut().unwrap().remove("role");
        node.as_object_mut().unwrap().remove("link");
        v.as_object_mut().unwrap().remove("replication");
        // Nor an application choice or a database, nor `killed` on the app.
        v.as_object_mut().unwrap().remove("app");
        v.as_object_mut().unwrap().remove("db");
        node["upstream"].as_object_mut().unwrap().remove("killed");
        v["nodes"] = serde_json::json!([node]);
        let state: LabState = serde_json::from_value(v).unwrap();
        assert_eq!(state.nodes[0].role, "simplex");
        assert!(state.replication.is_none());
        assert_eq!(state.app, AppKind::Toy);
        assert!(state.db.is_none());
        assert!(!state.nodes[0].upstream.killed);
        assert_eq!(state.namespaces(), ["hp-client", "hp-sw", "hp-n1"]);
    }
}
