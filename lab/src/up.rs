//! `lab up`: what it builds ([`LabOptions`]), building it — state file,
//! namespaces, cgroups, node configs, the database (`--app orders`),
//! upstream apps and nodes — and waiting until every service address serves.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::control::{cleanup, start_node};
use super::node_config::write_node_config;
use super::state::{
    AppKind, ClientState, DbState, LabState, LinkState, NodeState, Phase, ReplicationState,
    SwitchState, UpstreamState,
};
use super::{app, db};
use super::{
    cgroup, docroot, ip, net, node_address, node_config, node_mac, require_root, state_dir, tail,
    topology, validate_prefix, Mode, ReplNet, CLIENT_ADDRESS, DEFAULT_HEARTBEAT_TIMEOUT_MS,
    HEARTBEAT_INTERVAL_MS, LAN_PREFIX_LEN, REPL_PORT, SERVICE_ADDRESS, SERVICE_PORT, TAP_NAME,
    UPSTREAM_ADDRESS,
};

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
    pub hook: Option<std::path::PathBuf>,
    /// The application behind /app/ (`orders`: with PostgreSQL in PREFIX-db).
    pub app: AppKind,
    /// Print progress lines to stderr.
    pub verbose: bool,
    /// Serve HTTPS on port 443 as well as HTTP on 80 (`--tls`).
    pub tls: bool,
    /// `[tls] cipher_suites` (`--tls-cipher-suites`); None: the config's default.
    pub tls_cipher_suites: Option<Vec<String>>,
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
            app: AppKind::Toy,
            verbose: true,
            tls: false,
            tls_cipher_suites: None,
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
        if let Some(suites) = &self.tls_cipher_suites {
            if !self.tls {
                bail!("--tls-cipher-suites needs --tls");
            }
            hotpair::config::parse_cipher_suites(suites).context("--tls-cipher-suites")?;
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

// ---- up ---------------------------------------------------------------------

/// Builds the lab described by `opts` and waits until the service address
/// serves. Leftovers of an earlier lab with the same prefix are removed first.
/// On failure the lab is left in place (state phase `failed`) for inspection;
/// callers that want it gone call [`down`](super::down).
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
    // Found before anything is built: a machine without PostgreSQL or
    // psycopg2 fails here with nothing to tear down.
    app::check(opts.app)?;
    let db = match opts.app {
        AppKind::Orders => Some(DbState::new(prefix, &dir)?),
        AppKind::Toy => None,
    };

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
                    killed: false,
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
        app: opts.app,
        db,
        tls: opts.tls,
    };
    state.save()?;
    app::write_script(&state)?;
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
        .map(|a| service_url(&state, &a.ip))
        .collect();
    say(&format!(
        "up: service {} from {}",
        urls.join(" "),
        state.client.namespace
    ));
    Ok(Lab { state })
}

/// The service's URLs at address `ip`: HTTP, and with `--tls` HTTPS too
/// (with the CA to trust).
/// Where the docroot is served (`/static/`: `/` itself answers 404, so
/// the line a user copies from must not point there).
pub fn service_url(state: &LabState, ip: &str) -> String {
    let http = format!("http://{ip}:{SERVICE_PORT}/static/");
    if state.tls {
        format!(
            "{http} https://{ip}/static/ (curl --cacert {})",
            crate::tls::ca_path(&state.state_dir).display()
        )
    } else {
        http
    }
}

fn build(state: &mut LabState, opts: &LabOptions, say: &dyn Fn(&str)) -> Result<()> {
    if state.tls {
        let ips: Vec<String> = state
            .service_addresses()
            .iter()
            .map(|a| a.ip.clone())
            .collect();
        crate::tls::generate(&state.state_dir, &ips)?;
        say(&format!(
            "HTTPS on port {} (HTTP on {SERVICE_PORT} too): certificate for {} and {}, CA {}",
            crate::tls::TLS_PORT,
            crate::tls::TLS_NAME,
            ips.join(" "),
            crate::tls::ca_path(&state.state_dir).display()
        ));
    }
    say("creating namespaces");
    net::build_network(state)?;
    for node in &state.nodes {
        write_node_config(state, node, opts)?;
    }
    if state.db.is_some() {
        db::start(state, say)?;
        app::init_schema(state)?;
    }
    // The upstream apps first, then the nodes in order. Every link's listener
    // is the lower-numbered node (in duplex n1, the primary), so waiting
    // for a node's listening ports before starting the next means each
    // connecting node finds its peer ready.
    for i in 0..state.nodes.len() {
        say(&format!(
            "starting the {} app in {}",
            state.app.name(),
            state.nodes[i].namespace
        ));
        app::start(state, i)?;
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

/// Waits until node `node`'s process listens on TCP `port` (read from
/// /proc/PID/net/tcp, which shows the process's own network namespace).
fn wait_listening(node: &NodeState, port: u16, wait: Duration) -> Result<()> {
    let p = node.process.context("the node was not started")?;
    let deadline = Instant::now() + wait;
    let needle = format!(":{port:04X}");
    loop {
        if !p.alive() {
            return Err(exited_at_start(node));
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

/// The error for node `n` gone during start-up, with its log's tail.
fn exited_at_start(n: &NodeState) -> anyhow::Error {
    anyhow::anyhow!(
        "node {} exited during start-up; tail of {}:\n{}",
        n.name,
        n.log.display(),
        tail(&n.log, 40)
    )
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
                return Err(exited_at_start(n));
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
    // Every address answers on each port it serves: HTTP, and HTTPS too
    // with `--tls`.
    let ca = crate::tls::ca_path(&state.state_dir);
    let ca = ca.to_string_lossy();
    let targets = state.service_addresses().into_iter().flat_map(|a| {
        let https = state.tls.then(|| {
            (
                a.clone(),
                format!("https://{}/static/index.html", a.ip),
                true,
            )
        });
        std::iter::once((
            a.clone(),
            format!("http://{}:{SERVICE_PORT}/static/index.html", a.ip),
            false,
        ))
        .chain(https)
    });
    for (a, url, tls) in targets {
        let mut curl_args = vec![
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "1",
        ];
        if tls {
            curl_args.extend(["--cacert", &ca]);
        }
        curl_args.push(&url);
        let mut last;
        loop {
            for n in &state.nodes {
                if !n.process.is_some_and(|p| p.alive()) {
                    return Err(exited_at_start(n));
                }
            }
            let out = ip::netns_command(&state.client.namespace, "curl")
                .args(&curl_args)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
