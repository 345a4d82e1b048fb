//! `hotpair lab`: a ready network-namespace lab (client, switch, nodes) for
//! trying hotpair out and for the end-to-end tests.
//!
//! Everything is done by shelling out to iproute2 (`ip`); processes inside the
//! namespaces run through `ip netns exec`. The lab's state (configs, logs, pids,
//! docroot, `state.json`) lives in `/run/hotpair/lab-PREFIX/`.

mod cgroup;
mod docroot;
#[cfg(test)]
mod fixtures;
mod ip;
mod net;
mod node_config;
mod partition;
mod proc;
pub(crate) mod state;
mod status;
pub(crate) mod topology;

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use self::node_config::write_node_config;
use self::proc::Proc;
use self::state::{
    ClientState, LabState, LinkState, NodeState, Phase, ReplicationState, SwitchState,
    UpstreamState,
};
use self::status::print_status;
pub use self::status::status_json;

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
/// the node's own default.
pub const HEARTBEAT_INTERVAL_MS: u64 = 100;
/// Default `[replication] heartbeat_timeout_ms` (`--heartbeat-timeout-ms`):
/// the node's own default.
pub const DEFAULT_HEARTBEAT_TIMEOUT_MS: u64 = 500;

const UPSTREAM_SCRIPT: &str = include_str!("../assets/upstream.py");
const MAX_PREFIX_LEN: usize = 16;

const LAB_AFTER_HELP: &str = "\
Topology (PREFIX defaults to `hp`):
  PREFIX-client  eth0 10.77.0.100/24 (veth; its peer `client` sits in PREFIX-sw)
  PREFIX-sw      Linux bridge br0 joining `client`, `n1`, `n2`, …
  PREFIX-n<i>    eth0 (veth; peer `n<i>` in PREFIX-sw) and TAP hptap0 (vnet_hdr)
                 bridged on br-lan, which carries the namespace's own kernel
                 address 10.77.0.<i>/24; the upstream app on 127.0.0.1:8080;
                 the node process `hotpair node --config …/n<i>.toml` on hptap0,
                 MAC 02:68:70:00:00:0<i>.
Every service address serves port 80, routes /static/ (files from the
docroot), /non-deterministic/ (generate) and /app/ (upstream). IPv6 is off in
every lab namespace. The owner of an address answers ARP for it on the LAN
(the ingress/backup); its primary runs the application and sends the replies.

Modes:
  simplex    one node, n1, serving 10.77.0.10 alone (no replication).
  duplex     two nodes, one address 10.77.0.10: n1 is the primary (runs the
             application, sends the replies), n2 the ingress (owns the
             address on the LAN, keeps shadow connections, forwards client
             frames to n1). Link: n1 listens on port 7700, n2 connects.
  dual-role  two nodes, two addresses, each node owner of one and primary
             for the other: n1 owns 10.77.0.10 (primary n2), n2 owns
             10.77.0.11 (primary n1). One link: n1 listens on port 7702, n2
             connects. When one dies the other serves both addresses,
             unreplicated until it is repaired.
  ring       --nodes N (3 to 8, default 3) nodes in a ring: n<i> owns
             10.77.0.<9+i> (n1 .10, n2 .11, n3 .12, …) and n<i+1> is its
             primary (n<N>'s primary is n1). One link per neighbour pair
             (n<i>, n<i+1>): the lower-numbered node listens on port 7700 +
             the higher node's number (n1-n2 on n1:7702, n2-n3 on n2:7703,
             n1-n<N> on n1:7700+N), the other connects. When n<i> dies, n<i+1>
             claims its address and n<i-1> promotes its shadows of address
             i-1: those two run unreplicated until the ring is repaired.
  Replicated modes write node configs in the [[address]]/[[peer]] form
  (dual-role, ring) or the legacy [service]/[replication] form (duplex);
  heartbeats every --heartbeat-interval-ms (default 100), a peer is
  declared dead after --heartbeat-timeout-ms (default 500).

Replication network (--repl-net, replicated modes):
  shared     (default) the links run over the LAN between the nodes' kernel
             addresses 10.77.0.<i>.
  dedicated  a network of its own (the paper's duplex-mi), 10.78.0.<i>/24 on
             `repl0` in every node namespace. In duplex a veth pair joining
             PREFIX-n1 and PREFIX-n2; in dual-role and ring each `repl0` is a
             veth whose peer `r-n<i>` sits on the bridge br-repl in PREFIX-sw.
             Links go to the listener's 10.78.0.<i>.

`hotpair lab kill n<i>` SIGKILLs any node (fail-stop); its peers take its
connections and addresses over.

--node-cpus X holds each node's processes (the node and its upstream app) to
X CPUs with a CPU cgroup per node, hotpair-PREFIX-n<i>: cgroup v2 `cpu.max`
when /sys/fs/cgroup/cgroup.controllers exists, else cgroup v1
`cpu.cfs_quota_us` over a 100 ms `cpu.cfs_period_us` in /sys/fs/cgroup/cpu
(plus a cgroup in /sys/fs/cgroup/cpuacct where cpuacct is mounted apart).
`lab status --json` shows each node's \"cgroup\" (the directory whose
cpuacct.usage, or cpu.stat on v2, counts its CPU time) and \"cgroup_info\".
The cgroups are removed by `lab down`.

State, configs, logs, pids and the generated docroot (1k.bin, 5k.bin, 50k.bin,
50m.bin, index.html) live in /run/hotpair/lab-PREFIX/.

Examples:
  hotpair lab up
  hotpair lab up --mode duplex --repl-net dedicated
  hotpair lab up --mode dual-role
  hotpair lab up --mode ring --nodes 4 --node-cpus 0.5
  hotpair lab exec client -- curl -s http://10.77.0.10/static/index.html
  hotpair lab status --json
  hotpair lab kill n1
  hotpair lab down";

#[derive(clap::Args)]
#[command(after_help = LAB_AFTER_HELP)]
pub struct LabArgs {
    /// Lab name prefix: namespaces PREFIX-client, PREFIX-sw, PREFIX-n1…, state in
    /// /run/hotpair/lab-PREFIX/ (letters, digits and '_', at most 16 characters).
    #[arg(long, global = true, default_value = DEFAULT_PREFIX)]
    prefix: String,
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(clap::Subcommand)]
enum LabCommand {
    /// Build the lab (removing leftovers of an earlier run with the same
    /// prefix first), start the upstream apps and the nodes, and wait until
    /// every service address serves.
    Up(UpArgs),
    /// Stop the lab's processes and delete its namespaces and state directory.
    /// Succeeds when there is nothing to delete.
    Down,
    /// Show mode, service addresses (owner, primary, replicated or not),
    /// namespaces, node processes, roles, links and cgroups.
    Status(StatusArgs),
    /// Run a command inside one of the lab namespaces, e.g.
    /// `hotpair lab exec client -- curl -s http://10.77.0.10/static/index.html`;
    /// exits with the command's exit code.
    Exec(ExecArgs),
    /// SIGKILL a node's process (fail-stop), e.g. `hotpair lab kill n1`.
    Kill(KillArgs),
    /// SIGSTOP a node's process: a host that hangs, whose kernel does not
    /// reset the replication link (`lab thaw` resumes it).
    Freeze(KillArgs),
    /// SIGCONT a frozen node: it finds its peer has taken over, stays
    /// silent and stands down, then rejoins once its link is up again.
    Thaw(KillArgs),
    /// Start a node again (stopping it first with SIGTERM if it runs) and
    /// wait until its replication links to the nodes that run are up: it
    /// rejoins its peers, which keep the connections they serve. With no
    /// other node running it serves alone after its cold-start wait.
    Restart(KillArgs),
    /// Cut every replication link (packets dropped both ways, as a pulled
    /// cable: no reset), or with --lan NODE that node's side of the
    /// service LAN (its TAP off its bridge; its link stays up).
    Partition(PartitionArgs),
    /// Remove every cut `lab partition` made.
    Heal,
}

#[derive(clap::Args)]
struct PartitionArgs {
    /// Cut this node's side of the service LAN instead of the links.
    #[arg(long, value_name = "NODE")]
    lan: Option<String>,
}

#[derive(clap::Args)]
struct UpArgs {
    /// Replication mode: `simplex` (one node, no replication), `duplex`
    /// (n1 primary, n2 ingress), `dual-role` (two nodes, each owner of one
    /// address and primary for the other) or `ring` (--nodes N); see below.
    #[arg(long, default_value = "simplex")]
    mode: Mode,
    /// Ring only: how many nodes, 3 to 8 [default: 3].
    #[arg(long)]
    nodes: Option<u32>,
    /// Replicated modes only: where the replication links run, `shared`
    /// (the service LAN) or `dedicated` (a network of its own, 10.78.0.0/24)
    /// [default: shared].
    #[arg(long, value_enum)]
    repl_net: Option<ReplNet>,
    /// Replicated modes only: how long a node waits without hearing a peer
    /// before taking over (`heartbeat_timeout_ms`; more than the heartbeat
    /// interval) [default: 500].
    #[arg(long)]
    heartbeat_timeout_ms: Option<u64>,
    /// Replicated modes only: how often each node sends a heartbeat when
    /// it has nothing else to send (`heartbeat_interval_ms`) [default: 100].
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// Hold each node (its `hotpair node` and its upstream app) to this many
    /// CPUs, e.g. 0.5, with a CPU cgroup per node (cgroup v2 `cpu.max`, or
    /// v1 `cpu.cfs_quota_us` with a 100 ms period; this picks whichever the
    /// machine mounts). Emulates separate hosts. Default: no limit.
    #[arg(long, value_parser = cgroup::parse_cpus, allow_negative_numbers = true)]
    node_cpus: Option<f64>,
    /// Serve this directory under /static/ instead of the generated docroot
    /// (default: generated into /run/hotpair/lab-PREFIX/docroot).
    #[arg(long)]
    docroot: Option<PathBuf>,
    /// The content policy of /static/: `static` (active replication: both
    /// nodes make the reply, only its place crosses the link), `sync-static`
    /// (as static, the primary waits for the ingress node's copy) or
    /// `logged` (the whole reply is logged) [default: static, the config's
    /// default for files]. /non-deterministic/ and /app/ are always logged.
    #[arg(long, value_enum)]
    static_policy: Option<StaticPolicy>,
    /// Make each node write the frames it sees to /run/hotpair/lab-PREFIX/n<i>.pcap.
    #[arg(long)]
    pcap: bool,
    /// Replicated modes: run the replication links without authentication
    /// or encryption (`[link] danger_plaintext`), e.g. to measure what
    /// encryption costs. Default: each node gets a fresh key pair and the
    /// links are Noise-secured.
    #[arg(long)]
    link_plaintext: bool,
    /// `[http] header_timeout_ms` in the node configs.
    #[arg(long, default_value_t = 10_000)]
    http_header_timeout_ms: u64,
    /// `[http] idle_timeout_ms` in the node configs.
    #[arg(long, default_value_t = 60_000)]
    http_idle_timeout_ms: u64,
    /// `[http] send_timeout_ms` in the node configs (a client that takes
    /// none of its waiting output for this long is cut off).
    #[arg(long, default_value_t = 60_000)]
    http_send_timeout_ms: u64,
    /// `max_connections` of every service address in the node configs.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// `max_per_source` of every service address [default: the config's,
    /// half of `max_connections`].
    #[arg(long)]
    max_per_source: Option<usize>,
    /// `half_open_timeout_ms` of every service address [default: the
    /// config's, 20000].
    #[arg(long)]
    half_open_timeout_ms: Option<u64>,
    /// How long to wait for every service address to serve before giving up.
    #[arg(long, default_value_t = 10)]
    wait_secs: u64,
    /// `[hooks] on_change` in every node config: this script runs as
    /// `SCRIPT ADDRESS OLD_STATE NEW_STATE` (with $HOTPAIR_NODE) on each
    /// state change of a node's address.
    #[arg(long, value_name = "PATH")]
    hook: Option<PathBuf>,
}

#[derive(clap::Args)]
struct StatusArgs {
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ExecArgs {
    /// Namespace without the prefix: client, sw, n1, n2, …
    name: String,
    /// The command and its arguments (put them after `--`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

#[derive(clap::Args)]
struct KillArgs {
    /// The node to kill: n1, n2, …
    node: String,
}

/// How the lab's nodes replicate (DESIGN.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One node serving on its own, no replication.
    Simplex,
    /// n1 primary, n2 ingress (backup) for the one service address.
    Duplex,
    /// Two nodes, each owner of its own address and primary for the other's.
    DualRole,
    /// N nodes, node i owner of address i with node i+1 as its primary.
    Ring,
}

impl Mode {
    /// Every mode, as written on the command line.
    const NAMES: &'static str = "simplex, duplex, dual-role or ring";

    /// Number of nodes the mode runs; `ring_nodes` is the ring's size.
    pub fn node_count(self, ring_nodes: u32) -> u32 {
        match self {
            Mode::Simplex => 1,
            Mode::Duplex | Mode::DualRole => 2,
            Mode::Ring => ring_nodes,
        }
    }

    /// Whether the nodes replicate (have links and heartbeats).
    pub fn replicated(self) -> bool {
        self != Mode::Simplex
    }

    /// The role each node is configured with at start-up in this mode. In
    /// dual-role and ring every node owns one address and is primary for
    /// another (its addresses list says which).
    pub fn initial_role(self, node_index: u32) -> &'static str {
        match (self, node_index) {
            (Mode::Simplex, _) => "simplex",
            (Mode::Duplex, 1) => "primary",
            (Mode::Duplex, _) => "ingress",
            (Mode::DualRole | Mode::Ring, _) => "owner+primary",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "simplex" => Ok(Mode::Simplex),
            "duplex" => Ok(Mode::Duplex),
            "dual-role" => Ok(Mode::DualRole),
            "ring" => Ok(Mode::Ring),
            _ => Err(format!("unknown mode `{s}`; use {}", Mode::NAMES)),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Simplex => "simplex",
            Mode::Duplex => "duplex",
            Mode::DualRole => "dual-role",
            Mode::Ring => "ring",
        })
    }
}

/// Where a replicated lab's links run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReplNet {
    /// Over the service LAN, between the nodes' kernel addresses 10.77.0.<i>.
    #[default]
    Shared,
    /// Over a network of its own, `repl0` 10.78.0.<i>/24 (duplex-mi).
    Dedicated,
}

impl ReplNet {
    /// The address node `index` uses for the replication link.
    pub fn link_address(self, index: u32) -> String {
        match self {
            ReplNet::Shared => node_address(index),
            ReplNet::Dedicated => format!("{REPL_SUBNET}.{index}"),
        }
    }

    /// The interface in the node namespace that carries the link.
    pub fn interface(self) -> &'static str {
        match self {
            ReplNet::Shared => "br-lan",
            ReplNet::Dedicated => REPL_INTERFACE,
        }
    }
}

impl fmt::Display for ReplNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplNet::Shared => "shared",
            ReplNet::Dedicated => "dedicated",
        })
    }
}

/// The policy `lab up --static-policy` gives /static/.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StaticPolicy {
    Static,
    SyncStatic,
    Logged,
}

impl StaticPolicy {
    /// The config's word for it.
    pub fn name(self) -> &'static str {
        match self {
            StaticPolicy::Static => "static",
            StaticPolicy::SyncStatic => "sync-static",
            StaticPolicy::Logged => "logged",
        }
    }
}

/// What `lab up` builds.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub prefix: String,
    pub mode: Mode,
    /// Ring: the number of nodes.
    pub ring_nodes: u32,
    /// Replicated modes: where the replication links run.
    pub repl_net: ReplNet,
    /// Replicated modes: the heartbeat timeout.
    pub heartbeat_timeout_ms: u64,
    /// Replicated modes: the heartbeat interval.
    pub heartbeat_interval_ms: u64,
    /// CPUs each node may use (a cgroup per node); `None`: no limit.
    pub node_cpus: Option<f64>,
    /// `None`: generate the docroot into the state directory.
    pub docroot: Option<PathBuf>,
    /// `None`: the config's default for files (static).
    pub static_policy: Option<StaticPolicy>,
    pub pcap: bool,
    /// Replicated modes: `[link] danger_plaintext` instead of keys.
    pub link_plaintext: bool,
    pub http_header_timeout_ms: u64,
    pub http_idle_timeout_ms: u64,
    pub http_send_timeout_ms: u64,
    /// Per service address: `max_connections`, and `max_per_source` and
    /// `half_open_timeout_ms` (`None`: the config's defaults).
    pub max_connections: usize,
    pub max_per_source: Option<usize>,
    pub half_open_timeout_ms: Option<u64>,
    /// How long to wait for the service address to serve.
    pub wait: Duration,
    /// `[hooks] on_change` of every node (an absolute path).
    pub hook: Option<PathBuf>,
    /// Print progress lines to stderr.
    pub verbose: bool,
}

impl LabOptions {
    pub fn new(prefix: &str) -> LabOptions {
        LabOptions {
            prefix: prefix.to_owned(),
            mode: Mode::Simplex,
            ring_nodes: topology::RING_MIN,
            repl_net: ReplNet::Shared,
            heartbeat_timeout_ms: DEFAULT_HEARTBEAT_TIMEOUT_MS,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            node_cpus: None,
            docroot: None,
            static_policy: None,
            link_plaintext: false,
            pcap: false,
            http_header_timeout_ms: 10_000,
            http_idle_timeout_ms: 60_000,
            http_send_timeout_ms: 60_000,
            max_connections: 1024,
            max_per_source: None,
            half_open_timeout_ms: None,
            wait: Duration::from_secs(10),
            hook: None,
            verbose: true,
        }
    }
}

impl LabOptions {
    /// Checks the options that need no system access, so a bad command line
    /// is refused before anything is built (or torn down).
    pub fn validate(&self) -> Result<()> {
        validate_prefix(&self.prefix)?;
        if self.mode == Mode::Ring
            && !(topology::RING_MIN..=topology::RING_MAX).contains(&self.ring_nodes)
        {
            bail!(
                "--nodes {}: a ring has {} to {} nodes (two is --mode dual-role)",
                self.ring_nodes,
                topology::RING_MIN,
                topology::RING_MAX
            );
        }
        if let Some(cpus) = self.node_cpus {
            // The CLI parses it already; callers building LabOptions by hand too.
            cgroup::parse_cpus(&cpus.to_string())
                .map_err(|e| anyhow::anyhow!("--node-cpus {e}"))?;
        }
        if self.mode.replicated() && self.heartbeat_timeout_ms <= self.heartbeat_interval_ms {
            bail!(
                "--heartbeat-timeout-ms {} must exceed the heartbeat interval ({} ms)",
                self.heartbeat_timeout_ms,
                self.heartbeat_interval_ms
            );
        }
        if self.mode.replicated() && self.heartbeat_interval_ms == 0 {
            bail!("--heartbeat-interval-ms must be at least 1");
        }
        Ok(())
    }
}

/// A lab that is up.
pub struct Lab {
    pub state: LabState,
}

impl Lab {
    pub fn client_namespace(&self) -> &str {
        &self.state.client.namespace
    }

    pub fn docroot(&self) -> &Path {
        &self.state.docroot
    }

    /// `/run/hotpair/lab-PREFIX`.
    pub fn state_dir(&self) -> &Path {
        &self.state.state_dir
    }

    /// A command running `program` inside the lab namespace `name` (client, sw, n1…).
    pub fn command_in(&self, name: &str, program: &str) -> std::process::Command {
        ip::netns_command(&format!("{}-{name}", self.state.prefix), program)
    }
}

pub fn run(args: LabArgs) -> Result<()> {
    let prefix = args.prefix;
    match args.command {
        LabCommand::Up(a) => {
            if !a.mode.replicated() {
                if a.repl_net.is_some() {
                    bail!(
                        "--repl-net needs --mode duplex, dual-role or ring \
                         (a simplex lab has no replication link)"
                    );
                }
                if a.heartbeat_timeout_ms.is_some() || a.heartbeat_interval_ms.is_some() {
                    bail!(
                        "--heartbeat-timeout-ms and --heartbeat-interval-ms need --mode duplex, dual-role or ring \
                         (a simplex lab has no heartbeats)"
                    );
                }
            }
            if a.nodes.is_some() && a.mode != Mode::Ring {
                bail!(
                    "--nodes needs --mode ring (mode {} always runs {} node(s))",
                    a.mode,
                    a.mode.node_count(0)
                );
            }
            let opts = LabOptions {
                prefix: prefix.clone(),
                mode: a.mode,
                ring_nodes: a.nodes.unwrap_or(topology::RING_MIN),
                repl_net: a.repl_net.unwrap_or_default(),
                heartbeat_timeout_ms: a
                    .heartbeat_timeout_ms
                    .unwrap_or(DEFAULT_HEARTBEAT_TIMEOUT_MS),
                heartbeat_interval_ms: a.heartbeat_interval_ms.unwrap_or(HEARTBEAT_INTERVAL_MS),
                node_cpus: a.node_cpus,
                docroot: a.docroot,
                static_policy: a.static_policy,
                pcap: a.pcap,
                link_plaintext: a.link_plaintext,
                http_header_timeout_ms: a.http_header_timeout_ms,
                http_idle_timeout_ms: a.http_idle_timeout_ms,
                http_send_timeout_ms: a.http_send_timeout_ms,
                max_connections: a.max_connections,
                max_per_source: a.max_per_source,
                half_open_timeout_ms: a.half_open_timeout_ms,
                wait: Duration::from_secs(a.wait_secs),
                // The nodes run from elsewhere: the path they are given
                // must not depend on this shell's directory.
                hook: a
                    .hook
                    .map(|p| {
                        std::path::absolute(&p).with_context(|| format!("--hook {}", p.display()))
                    })
                    .transpose()?,
                verbose: true,
            };
            opts.validate()?;
            match up(&opts) {
                Ok(lab) => {
                    print_status(&status_json(&lab.state.prefix)?)?;
                    Ok(())
                }
                Err(e) => Err(e.context(format!(
                    "lab up failed; the lab is left in place for inspection \
                     (`hotpair lab status --prefix {prefix}`), remove it with \
                     `hotpair lab down --prefix {prefix}`"
                ))),
            }
        }
        LabCommand::Down => {
            validate_prefix(&prefix)?;
            require_root()?;
            if cleanup(&prefix, false)? {
                hotpair::outln!("lab {prefix}: down")?;
            } else {
                hotpair::outln!("lab {prefix}: nothing to remove")?;
            }
            Ok(())
        }
        LabCommand::Status(a) => {
            let v = status_json(&prefix)?;
            if a.json {
                hotpair::outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                print_status(&v)?;
            }
            Ok(())
        }
        LabCommand::Exec(a) => exec(&prefix, &a.name, &a.command),
        LabCommand::Kill(a) => kill(&prefix, &a.node),
        LabCommand::Freeze(a) => signal_node(&prefix, &a.node, libc::SIGSTOP, "froze"),
        LabCommand::Thaw(a) => signal_node(&prefix, &a.node, libc::SIGCONT, "thawed"),
        LabCommand::Restart(a) => restart(&prefix, &a.node),
        LabCommand::Partition(a) => {
            let state = load_lab(&prefix)?;
            let what = partition::partition(&state, a.lan.as_deref())?;
            hotpair::outln!("lab {prefix}: {what}")?;
            Ok(())
        }
        LabCommand::Heal => {
            let state = load_lab(&prefix)?;
            hotpair::outln!("lab {prefix}: {}", partition::heal(&state)?)?;
            Ok(())
        }
    }
}

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
        "client" | "sw" => true,
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

// ---- up ---------------------------------------------------------------------

/// Builds the lab described by `opts` and waits until the service address
/// serves. Leftovers of an earlier lab with the same prefix are removed first.
/// On failure the lab is left in place (state phase `failed`) for inspection;
/// callers that want it gone call [`down`].
pub fn up(opts: &LabOptions) -> Result<Lab> {
    opts.validate()?;
    require_root()?;
    let prefix = opts.prefix.as_str();
    let dir = state_dir(prefix);
    let say = |msg: &str| {
        if opts.verbose {
            eprintln!("lab {prefix}: {msg}");
        }
    };

    if cleanup(prefix, true)? {
        say("removed leftovers of an earlier run");
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let (docroot, docroot_generated) = match &opts.docroot {
        Some(d) => {
            let d = fs::canonicalize(d)
                .with_context(|| format!("docroot {} does not exist", d.display()))?;
            if !d.is_dir() {
                bail!("docroot {} is not a directory", d.display());
            }
            (d, false)
        }
        None => {
            let d = dir.join("docroot");
            let written = docroot::generate(&d)?;
            if written > 0 {
                say(&format!(
                    "generated {written} docroot files in {}",
                    d.display()
                ));
            }
            (d, true)
        }
    };
    let script = dir.join("upstream.py");
    fs::write(&script, UPSTREAM_SCRIPT).with_context(|| format!("writing {}", script.display()))?;

    // Detected before anything is built, so a machine without a CPU cgroup
    // fails here with nothing to tear down.
    let cgroups = match opts.node_cpus {
        Some(_) => Some(cgroup::detect(Path::new(cgroup::CGROUP_ROOT))?),
        None => None,
    };
    let replicated = opts.mode.replicated();
    let node_count = opts.mode.node_count(opts.ring_nodes);
    let nodes = (1..=node_count)
        .map(|i| {
            let name = format!("n{i}");
            NodeState {
                namespace: format!("{prefix}-{name}"),
                address: node_address(i),
                mac: node_mac(i),
                role: opts.mode.initial_role(i).to_owned(),
                link: replicated.then(|| LinkState {
                    interface: opts.repl_net.interface().to_owned(),
                    address: opts.repl_net.link_address(i),
                    private_key: (!opts.link_plaintext).then(|| {
                        hotpair::secure::generate_keypair()
                            .map(|(private, _)| hotpair::secure::hex(&private))
                            .expect("the system's random source")
                    }),
                }),
                tap: TAP_NAME.to_owned(),
                config: dir.join(format!("{name}.toml")),
                log: dir.join(format!("{name}.log")),
                pcap: opts.pcap.then(|| dir.join(format!("{name}.pcap"))),
                process: None,
                killed: false,
                upstream: UpstreamState {
                    address: UPSTREAM_ADDRESS.to_owned(),
                    log: dir.join(format!("upstream-{name}.log")),
                    process: None,
                },
                cgroup: None,
                index: i,
                name,
            }
        })
        .collect();
    let mut state = LabState {
        prefix: prefix.to_owned(),
        mode: opts.mode,
        replication: replicated.then_some(ReplicationState {
            net: opts.repl_net,
            port: REPL_PORT,
            heartbeat_interval_ms: opts.heartbeat_interval_ms,
            heartbeat_timeout_ms: opts.heartbeat_timeout_ms,
        }),
        phase: Phase::Building,
        state_dir: dir.clone(),
        docroot,
        docroot_generated,
        service_address: SERVICE_ADDRESS.to_owned(),
        service_port: SERVICE_PORT,
        client: ClientState {
            namespace: format!("{prefix}-client"),
            interface: "eth0".to_owned(),
            address: format!("{CLIENT_ADDRESS}/{LAN_PREFIX_LEN}"),
        },
        switch: SwitchState {
            namespace: format!("{prefix}-sw"),
            bridge: "br0".to_owned(),
        },
        nodes,
        addresses: topology::addresses(opts.mode, node_count),
        links: topology::links(opts.mode, node_count, opts.repl_net),
    };
    state.save()?;
    if let (Some(layout), Some(cpus)) = (&cgroups, opts.node_cpus) {
        for i in 0..state.nodes.len() {
            let name = cgroup::name(prefix, &state.nodes[i].name);
            // Recorded as soon as it exists, so `lab down` removes it even
            // if a later step fails.
            state.nodes[i].cgroup = Some(cgroup::create(layout, &name, cpus)?);
            state.save()?;
        }
        if let Some(c) = &state.nodes[0].cgroup {
            say(&format!(
                "each node held to {cpus} CPUs by a cgroup of its own ({}): {}",
                c.version,
                c.path
                    .with_file_name(cgroup::name(prefix, "n<i>"))
                    .display()
            ));
        }
    }

    let result = build(&mut state, opts, &say);
    state.phase = if result.is_ok() {
        Phase::Up
    } else {
        Phase::Failed
    };
    state.save()?;
    result?;
    let urls: Vec<String> = state
        .service_addresses()
        .iter()
        .map(|a| format!("http://{}:{SERVICE_PORT}/", a.ip))
        .collect();
    say(&format!(
        "up: service {} from {}",
        urls.join(" "),
        state.client.namespace
    ));
    Ok(Lab { state })
}

fn build(state: &mut LabState, opts: &LabOptions, say: &dyn Fn(&str)) -> Result<()> {
    say("creating namespaces");
    net::build_network(state)?;
    for node in &state.nodes {
        write_node_config(state, node, opts)?;
    }
    // The upstream apps first, then the nodes in order. Every link's listener
    // is the lower-numbered node (in duplex n1, the primary), so waiting
    // for a node's listening ports before starting the next means each
    // connecting node finds its peer ready.
    for i in 0..state.nodes.len() {
        say(&format!(
            "starting upstream app in {}",
            state.nodes[i].namespace
        ));
        start_upstream(state, i)?;
        state.save()?;
    }
    for i in 0..state.nodes.len() {
        say(&format!(
            "starting node {} ({})",
            state.nodes[i].name, state.nodes[i].role
        ));
        start_node(state, i)?;
        state.save()?;
        let node = &state.nodes[i];
        for l in state.links.iter().filter(|l| l.listener == node.name) {
            wait_listening(node, l.port, Duration::from_secs(10))?;
            say(&format!(
                "node {} listens for the replication link with {} on {}",
                node.name,
                l.connector,
                l.endpoint()
            ));
        }
    }
    say(if state.service_addresses().len() > 1 {
        "waiting for every service address to serve"
    } else {
        "waiting for the service address to serve"
    });
    wait_serving(state, opts.wait)
}

fn start_upstream(state: &mut LabState, i: usize) -> Result<()> {
    let node = &state.nodes[i];
    let ready = state
        .state_dir
        .join(format!("upstream-{}.ready", node.name));
    let _ = fs::remove_file(&ready);
    let (host, port) = UPSTREAM_ADDRESS
        .rsplit_once(':')
        .expect("UPSTREAM_ADDRESS is host:port");
    let mut cmd = ip::netns_command(&node.namespace, "python3");
    cmd.arg(state.state_dir.join("upstream.py"))
        .args(["--bind", host, "--port", port, "--log"])
        .arg(&node.upstream.log)
        .arg("--ready")
        .arg(&ready);
    if let Some(cg) = &node.cgroup {
        cg.enter_on_exec(&mut cmd)?;
    }
    let p = proc::spawn_detached(cmd, &node.upstream.log)?;
    state.nodes[i].upstream.process = Some(p);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        if !p.alive() {
            bail!(
                "the upstream app in {} exited at start:\n{}",
                state.nodes[i].namespace,
                tail(&state.nodes[i].upstream.log, 20)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "the upstream app in {} did not start listening within 10 s:\n{}",
                state.nodes[i].namespace,
                tail(&state.nodes[i].upstream.log, 20)
            );
        }
        sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn start_node(state: &mut LabState, i: usize) -> Result<()> {
    let node = &state.nodes[i];
    let exe = std::env::current_exe().context("locating the hotpair binary")?;
    let mut cmd = ip::netns_command(&node.namespace, &exe);
    cmd.arg("node").arg("--config").arg(&node.config);
    if let Some(pcap) = &node.pcap {
        cmd.arg("--pcap").arg(pcap);
    }
    cmd.env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
    );
    // The log is a file: no terminal colour codes in it.
    cmd.env("NO_COLOR", "1");
    // An error's exit should not bury the log's tail under an anyhow
    // backtrace (RUST_BACKTRACE=1 still gives panics theirs).
    cmd.env(
        "RUST_LIB_BACKTRACE",
        std::env::var("RUST_LIB_BACKTRACE").unwrap_or_else(|_| "0".to_owned()),
    );
    if let Some(cg) = &node.cgroup {
        cg.enter_on_exec(&mut cmd)?;
    }
    let p = proc::spawn_detached(cmd, &node.log)?;
    state.nodes[i].process = Some(p);
    Ok(())
}

/// Waits until node `node`'s process listens on TCP `port` (read from
/// /proc/PID/net/tcp, which shows the process's own network namespace).
fn wait_listening(node: &NodeState, port: u16, wait: Duration) -> Result<()> {
    let p = node.process.context("the node was not started")?;
    let deadline = Instant::now() + wait;
    let needle = format!(":{port:04X}");
    loop {
        if !p.alive() {
            bail!(
                "node {} exited during start-up; tail of {}:\n{}",
                node.name,
                node.log.display(),
                tail(&node.log, 40)
            );
        }
        let table = fs::read_to_string(format!("/proc/{}/net/tcp", p.pid)).unwrap_or_default();
        // "sl local_address rem_address st …", st 0A = LISTEN.
        let listening = table.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&needle) && f[3] == "0A"
        });
        if listening {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "node {} did not listen on port {port} within {} s; tail of {}:\n{}",
                node.name,
                wait.as_secs_f32(),
                node.log.display(),
                tail(&node.log, 40)
            );
        }
        sleep(Duration::from_millis(20));
    }
}

/// Polls from the client namespace until every service address answers
/// HTTP (one by one: an address that served stays served), failing early if
/// a node process dies. Any status counts: a user's `--docroot` need not
/// hold an `index.html` (a 404 from the node is a node that serves).
fn wait_serving(state: &LabState, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    // Replicated: every link up first (asked on each node's admin socket).
    // A probe sent before would reach an owner whose primary is not
    // there yet: unanswered, it gives up after 1 s and leaves a half-open
    // connection from the client's address on the owner until it expires
    // — one the tests' per-source limits would count.
    for n in state.nodes.iter().filter(|_| state.mode.replicated()) {
        let sock = node_config::admin_socket(n);
        loop {
            let up = hotpair::admin::query(Path::new(&sock))
                .is_ok_and(|st| !st.peers.is_empty() && st.peers.iter().all(|p| p.link_up));
            if up {
                break;
            }
            if !n.process.is_some_and(|p| p.alive()) {
                bail!(
                    "node {} exited during start-up; tail of {}:\n{}",
                    n.name,
                    n.log.display(),
                    tail(&n.log, 40)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "node {}: its replication links were not all up within {} s; tail of {}:\n{}",
                    n.name,
                    wait.as_secs(),
                    n.log.display(),
                    tail(&n.log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for a in state.service_addresses() {
        let url = format!("http://{}:{SERVICE_PORT}/static/index.html", a.ip);
        let mut last;
        loop {
            for n in &state.nodes {
                if !n.process.is_some_and(|p| p.alive()) {
                    bail!(
                        "node {} exited during start-up; tail of {}:\n{}",
                        n.name,
                        n.log.display(),
                        tail(&n.log, 40)
                    );
                }
            }
            let out = ip::netns_command(&state.client.namespace, "curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "1",
                    &url,
                ])
                .stdin(std::process::Stdio::null())
                .output()
                .context("running curl in the client namespace (is curl installed?)")?;
            let code = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if code.len() == 3 && code != "000" {
                break;
            }
            last = format!("curl exit {}, http code {code:?}", out.status);
            if Instant::now() >= deadline {
                let logs: Vec<String> = state
                    .nodes
                    .iter()
                    .map(|n| format!("tail of {}:\n{}", n.log.display(), tail(&n.log, 40)))
                    .collect();
                bail!(
                    "{url} (owner {}, primary {}) did not answer HTTP from {} within {} s \
                     (last: {last})\n{}",
                    a.owner,
                    a.primary.as_deref().unwrap_or("-"),
                    state.client.namespace,
                    wait.as_secs_f32(),
                    logs.join("\n")
                );
            }
            sleep(Duration::from_millis(200));
        }
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

// ---- down / cleanup ---------------------------------------------------------

/// Stops the lab's processes, deletes its namespaces and its state directory.
/// Succeeds when nothing exists.
pub fn down(prefix: &str) -> Result<()> {
    validate_prefix(prefix)?;
    require_root()?;
    cleanup(prefix, false)?;
    Ok(())
}

/// Kills the lab's processes and deletes its namespaces and state. With
/// `keep_docroot`, a generated docroot in the state dir survives (it is
/// expensive to regenerate). Returns whether anything existed.
fn cleanup(prefix: &str, keep_docroot: bool) -> Result<bool> {
    let dir = state_dir(prefix);
    let mut found = false;
    let mut cgroups = Vec::new();

    // 1. Processes recorded in the state file: SIGTERM, grace, SIGKILL.
    match LabState::load(&dir) {
        Ok(Some(state)) => {
            found = true;
            cgroups.extend(state.nodes.iter().filter_map(|n| n.cgroup.clone()));
            let procs = state.processes();
            let live: Vec<Proc> = procs
                .into_iter()
                .filter(|p| p.signal(libc::SIGTERM))
                .collect();
            let deadline = Instant::now() + Duration::from_secs(1);
            for p in &live {
                let left = deadline.saturating_duration_since(Instant::now());
                if !p.wait_gone(left) {
                    p.kill();
                }
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("lab {prefix}: ignoring unreadable state: {e:#}"),
    }

    // 2. Anything still running inside the lab's namespaces, then the namespaces.
    for ns in existing_namespaces(prefix)? {
        found = true;
        for pid in ip::netns_pids(&ns).unwrap_or_default() {
            proc::kill_pid(pid);
        }
        ip::ip(["netns", "del", ns.as_str()])?;
    }

    // 3. The nodes' CPU cgroups, now empty: those recorded, then any left by
    //    a lab whose state file is gone (they are named after the prefix).
    for cg in &cgroups {
        cg.remove()?;
    }
    if cgroup::remove_leftovers(Path::new(cgroup::CGROUP_ROOT), prefix)? {
        found = true;
    }

    // 4. The state directory.
    if dir.exists() {
        found = true;
        if keep_docroot {
            for entry in fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.file_name() == Some("docroot".as_ref()) && path.is_dir() {
                    continue;
                }
                if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                }
                .with_context(|| format!("removing {}", path.display()))?;
            }
        } else {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    Ok(found)
}

// ---- exec / kill ------------------------------------------------------------

/// Replaces this process with `ip netns exec PREFIX-NAME COMMAND…`, so the
/// command inherits stdio and its exit code becomes ours.
fn exec(prefix: &str, name: &str, command: &[OsString]) -> Result<()> {
    validate_prefix(prefix)?;
    if !is_lab_member(name) {
        bail!("unknown lab namespace `{name}`: use client, sw, n1, n2, …");
    }
    let ns = format!("{prefix}-{name}");
    if !ip::netns_list()?.contains(&ns) {
        bail!("namespace {ns} does not exist (is the lab up? `hotpair lab up --prefix {prefix}`)");
    }
    let (program, args) = command.split_first().context("no command given")?;
    let err = ip::netns_command(&ns, program).args(args).exec();
    Err(err).context("cannot run `ip netns exec`")
}

/// What [`kill_node`] did.
#[derive(Clone, Copy, Debug)]
pub struct Killed {
    /// Whether the process was alive (and so was killed now).
    pub was_alive: bool,
    pub pid: Option<i32>,
}

/// SIGKILLs node `name` of lab `prefix` (fail-stop), waits until it is gone
/// and records it as killed.
pub fn kill_node(prefix: &str, name: &str) -> Result<Killed> {
    validate_prefix(prefix)?;
    let dir = state_dir(prefix);
    let mut state = LabState::load(&dir)?
        .with_context(|| format!("no lab with prefix {prefix} (no {})", dir.display()))?;
    let node = state
        .nodes
        .iter_mut()
        .find(|n| n.name == name)
        .with_context(|| format!("lab {prefix} has no node `{name}`"))?;
    let was_alive = node.process.is_some_and(|p| p.kill());
    node.killed = true;
    let pid = node.process.map(|p| p.pid);
    state.save()?;
    Ok(Killed { was_alive, pid })
}

/// The state of lab `prefix`, or a clear error if there is none.
fn load_lab(prefix: &str) -> Result<LabState> {
    validate_prefix(prefix)?;
    let dir = state_dir(prefix);
    LabState::load(&dir)?
        .with_context(|| format!("no lab with prefix {prefix} (no {})", dir.display()))
}

/// `lab restart`: stop the node if it runs (a planned stop), start it with
/// its config, wait until its links are up.
fn restart(prefix: &str, name: &str) -> Result<()> {
    validate_prefix(prefix)?;
    let dir = state_dir(prefix);
    let mut state = LabState::load(&dir)?
        .with_context(|| format!("no lab with prefix {prefix} (no {})", dir.display()))?;
    let i = state
        .nodes
        .iter()
        .position(|n| n.name == name)
        .with_context(|| format!("lab {prefix} has no node `{name}`"))?;
    if let Some(p) = state.nodes[i].process.filter(|p| p.alive()) {
        p.signal(libc::SIGCONT);
        p.signal(libc::SIGTERM);
        if !p.wait_gone(Duration::from_secs(5)) {
            p.kill();
        }
        hotpair::outln!("lab {prefix}: stopped node {name} (pid {})", p.pid)?;
    }
    start_node(&mut state, i)?;
    state.nodes[i].killed = false;
    state.save()?;
    let node = &state.nodes[i];
    let pid = node.process.map_or(0, |p| p.pid);
    // The peers it can pair with now: the other nodes that run. With none
    // (a cold start after every node went down) it serves alone after its
    // cold-start wait, and there is no link to wait for.
    let running: Vec<String> = state
        .nodes
        .iter()
        .filter(|n| n.name != name && n.process.is_some_and(|p| p.alive()))
        .map(|n| n.name.clone())
        .collect();
    if state.mode.replicated() && running.is_empty() {
        hotpair::outln!(
            "lab {prefix}: restarted node {name} (pid {pid}); no other node runs: it serves alone once its cold-start wait is over"
        )?;
    } else if state.mode.replicated() {
        let sock = node_config::admin_socket(node);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = hotpair::admin::query(Path::new(&sock)).is_ok_and(|st| {
                !st.peers.is_empty()
                    && st.peers.iter().all(|p| {
                        // Before its Hello a peer may go by its configured
                        // name ("peer" in a duplex config): not known to
                        // be stopped, so its link is waited for.
                        let stopped = !running.contains(&p.name)
                            && state.nodes.iter().any(|n| n.name == p.name);
                        p.link_up || stopped
                    })
            });
            if up {
                break;
            }
            if !node.process.is_some_and(|p| p.alive()) {
                bail!(
                    "node {name} exited after its restart; tail of {}:\n{}",
                    node.log.display(),
                    tail(&node.log, 40)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "node {name}: its replication links were not all up within 30 s of its restart; tail of {}:\n{}",
                    node.log.display(),
                    tail(&node.log, 40)
                );
            }
            sleep(Duration::from_millis(50));
        }
        hotpair::outln!(
            "lab {prefix}: restarted node {name} (pid {pid}); its replication links to the nodes that run are up"
        )?;
    } else {
        hotpair::outln!("lab {prefix}: restarted node {name} (pid {pid})")?;
    }
    Ok(())
}

/// `lab freeze` / `lab thaw`: send `sig` to a node that is running.
fn signal_node(prefix: &str, name: &str, sig: i32, did: &str) -> Result<()> {
    validate_prefix(prefix)?;
    let dir = state_dir(prefix);
    let state = LabState::load(&dir)?
        .with_context(|| format!("no lab with prefix {prefix} (no {})", dir.display()))?;
    let node = state
        .nodes
        .iter()
        .find(|n| n.name == name)
        .with_context(|| format!("lab {prefix} has no node `{name}`"))?;
    let Some(p) = node.process else {
        bail!("lab {prefix}: node {name} was never started");
    };
    if !p.signal(sig) {
        bail!("lab {prefix}: node {name} (pid {}) is not running", p.pid);
    }
    hotpair::outln!("lab {prefix}: {did} node {name} (pid {})", p.pid)?;
    Ok(())
}

/// `lab kill`: [`kill_node`] and say what happened.
fn kill(prefix: &str, name: &str) -> Result<()> {
    let Killed { was_alive, pid } = kill_node(prefix, name)?;
    match (was_alive, pid) {
        (true, Some(pid)) => {
            hotpair::outln!("lab {prefix}: killed node {name} (pid {pid}, SIGKILL)")?
        }
        (_, Some(pid)) => {
            hotpair::outln!("lab {prefix}: node {name} (pid {pid}) was already dead")?
        }
        (_, None) => hotpair::outln!("lab {prefix}: node {name} was never started")?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::fixtures::{test_node, test_state};
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
        for ok in ["client", "sw", "n1", "n12"] {
            assert!(is_lab_member(ok), "{ok}");
        }
        for bad in ["n", "nx", "client2", "x", "", "n1a"] {
            assert!(!is_lab_member(bad), "{bad}");
        }
    }

    #[test]
    fn modes() {
        for m in [Mode::Simplex, Mode::Duplex, Mode::DualRole, Mode::Ring] {
            assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
            // The JSON name (state file, `lab status`) is the CLI name.
            assert_eq!(serde_json::to_value(m).unwrap(), m.to_string());
        }
        assert_eq!("dual-role".parse::<Mode>(), Ok(Mode::DualRole));
        assert!("bogus".parse::<Mode>().unwrap_err().contains("ring"));
        assert_eq!(Mode::Duplex.node_count(3), 2);
        assert_eq!(Mode::DualRole.node_count(3), 2);
        assert_eq!(Mode::Ring.node_count(5), 5);
        assert_eq!(Mode::Duplex.initial_role(1), "primary");
        assert_eq!(Mode::Duplex.initial_role(2), "ingress");
        assert_eq!(Mode::Simplex.initial_role(1), "simplex");
        assert_eq!(ReplNet::Shared.link_address(2), "10.77.0.2");
        assert_eq!(ReplNet::Dedicated.link_address(1), "10.78.0.1");
    }

    #[test]
    fn options_are_checked_before_building() {
        let mut o = LabOptions::new("hp");
        o.mode = Mode::Ring;
        for n in [0, 1, 2, 9] {
            o.ring_nodes = n;
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains("3 to 8"), "{e}");
        }
        o.ring_nodes = 8;
        assert!(o.validate().is_ok());
        o.node_cpus = Some(0.0);
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--node-cpus"));
        o.node_cpus = Some(0.5);
        o.heartbeat_timeout_ms = o.heartbeat_interval_ms;
        assert!(o.validate().is_err());
        // The ring size is ignored outside ring mode.
        let mut o = LabOptions::new("hp");
        o.mode = Mode::DualRole;
        o.ring_nodes = 0;
        assert!(o.validate().is_ok());
    }

    #[test]
    fn old_state_files_still_load() {
        // A state.json written before duplex existed: no role, link or replication.
        let mut v = serde_json::to_value(test_state(Mode::Simplex, None)).unwrap();
        let mut node = serde_json::to_value(test_node(1, "simplex", None)).unwrap();
        node.as_object_mut().unwrap().remove("role");
        node.as_object_mut().unwrap().remove("link");
        v.as_object_mut().unwrap().remove("replication");
        v["nodes"] = serde_json::json!([node]);
        let state: LabState = serde_json::from_value(v).unwrap();
        assert_eq!(state.nodes[0].role, "simplex");
        assert!(state.replication.is_none());
    }
}
