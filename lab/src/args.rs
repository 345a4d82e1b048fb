//! `hotpair lab`'s command line: its subcommands and their arguments, and
//! [`run`], which checks them and calls the lab's operations.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::app;
use super::control::{cleanup, exec, kill, load_lab, restart, signal_node};
use super::state::AppKind;
use super::status::print_status;
use super::{
    cgroup, partition, require_root, status_json, topology, up, validate_prefix, LabOptions, Mode,
    ReplNet, StaticPolicy, DEFAULT_HEARTBEAT_TIMEOUT_MS, DEFAULT_PREFIX, HEARTBEAT_INTERVAL_MS,
};

const LAB_AFTER_HELP: &str = "\
Topology (PREFIX defaults to `hp`):
  PREFIX-client  eth0 10.77.0.100/24 (veth; its peer `client` sits in PREFIX-sw)
  PREFIX-sw      Linux bridge br0 joining `client`, `n1`, `n2`, …
  PREFIX-n<i>    eth0 (veth; peer `n<i>` in PREFIX-sw) and TAP hptap0 (vnet_hdr)
                 bridged on br-lan, which carries the namespace's own kernel
                 address 10.77.0.<i>/24; the upstream app on port 8080 (the
                 node's route uses 127.0.0.1:8080, the other nodes' routes
                 reach it at 10.77.0.<i>:8080 as their `fallback`);
                 the node process `hotpair node --config …/n<i>.toml` on hptap0,
                 MAC 02:68:70:00:00:0<i>.
  PREFIX-db      (--app orders) eth0 10.77.0.200/24 (veth; peer `db` in
                 PREFIX-sw): PostgreSQL on 10.77.0.200:5432, database and
                 role `orders` (trust from 10.77.0.0/24 only), its cluster in
                 the state dir, its Unix socket there too.
Every service address serves port 80, routes /static/ (files from the
docroot), /non-deterministic/ (generate) and /app/ (upstream). IPv6 is off in
every lab namespace. The owner of an address answers ARP for it on the LAN
(the owner/backup); its primary runs the application and sends the replies.

Modes:
  simplex    one node, n1, serving 10.77.0.10 alone (no replication).
  duplex     two nodes, one address 10.77.0.10: n1 is the primary (runs the
             application, sends the replies), n2 the owner (owns the
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

Applications (--app): `toy` (default; lab/assets/upstream.py: a POST's
reply is its body's SHA-256, GET ?size=N gives N bytes) or `orders`
(lab/assets/orders.py, the reference application of docs/application.md:
POST /app/orders creates an order in PostgreSQL exactly once per request
id, GET /app/orders/stats, GET /app/health). `--app orders` needs the
postgresql and python3-psycopg2 packages; it starts PostgreSQL in PREFIX-db
(run as the `postgres` user) before the apps, which reach it over each node
namespace's kernel LAN address. `hotpair lab kill --app n<i>` SIGKILLs only
that node's application (the node lives on; /app/ answers 502 there),
`hotpair lab restart --app n<i>` starts it again.

--node-cpus X holds each node's processes (the node and its upstream app) to
X CPUs with a CPU cgroup per node, hotpair-PREFIX-n<i>: cgroup v2 `cpu.max`
when /sys/fs/cgroup/cgroup.controllers exists, else cgroup v1
`cpu.cfs_quota_us` over a 100 ms `cpu.cfs_period_us` in /sys/fs/cgroup/cpu
(plus a cgroup in /sys/fs/cgroup/cpuacct where cpuacct is mounted apart).
`lab status --json` shows each node's \"cgroup\" (the directory whose
cpuacct.usage, or cpu.stat on v2, counts its CPU time) and \"cgroup_info\".
The cgroups are removed by `lab down`. The database of --app orders (another
host, in the paper's three tiers) is not held.

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
  hotpair lab up --mode duplex --app orders
  hotpair lab exec client -- curl -s -d hello http://10.77.0.10/app/orders
  hotpair lab kill --app n1
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
    /// SIGKILL a node's process (fail-stop), e.g. `hotpair lab kill n1`;
    /// with --app its application only (the node lives on).
    Kill(NodeOrAppArgs),
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
    /// With --app: stop and start the node's application only.
    Restart(NodeOrAppArgs),
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
    /// (n1 primary, n2 owner), `dual-role` (two nodes, each owner of one
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
    /// (as static, the primary waits for the owner node's copy) or
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
    /// Serve HTTPS (TLS 1.3) on port 443 as well as HTTP on 80, on every
    /// address: a lab CA and an ECDSA P-256 certificate for the addresses
    /// and hotpair.test are made under the state directory (tls/ca.pem:
    /// what clients trust).
    #[arg(long, conflicts_with = "link_plaintext")]
    tls: bool,
    /// With --tls: `[tls] cipher_suites` of every node, IANA names in the
    /// server's order of preference, comma-separated (e.g.
    /// TLS_AES_128_GCM_SHA256) [default: the config's, all three].
    #[arg(long, requires = "tls", value_delimiter = ',', value_name = "SUITES")]
    tls_cipher_suites: Vec<String>,
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
    /// The application behind /app/ on every node: `toy` (a POST's body's
    /// SHA-256, `?size=N` bytes) or `orders` (PostgreSQL in PREFIX-db,
    /// exactly once per request id; docs/application.md).
    #[arg(long, value_enum, default_value = "toy")]
    app: AppKind,
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
    /// The node: n1, n2, …
    node: String,
}

#[derive(clap::Args)]
struct NodeOrAppArgs {
    /// The node: n1, n2, …
    node: String,
    /// The node's application (127.0.0.1:8080 in its namespace), not the
    /// node process.
    #[arg(long)]
    app: bool,
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
                tls: a.tls,
                tls_cipher_suites: (!a.tls_cipher_suites.is_empty()).then_some(a.tls_cipher_suites),
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
                app: a.app,
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
        LabCommand::Kill(a) if a.app => app::kill(&prefix, &a.node),
        LabCommand::Kill(a) => kill(&prefix, &a.node),
        LabCommand::Freeze(a) => signal_node(&prefix, &a.node, libc::SIGSTOP, "froze"),
        LabCommand::Thaw(a) => signal_node(&prefix, &a.node, libc::SIGCONT, "thawed"),
        LabCommand::Restart(a) if a.app => app::restart(&prefix, &a.node),
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
