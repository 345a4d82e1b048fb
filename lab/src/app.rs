//! The application each node's `upstream` route proxies to (127.0.0.1:8080
//! in every node namespace; the other nodes' routes name it, at the node's
//! LAN address, as their `fallback`): which one (`lab up --app`), starting it, and
//! `lab kill --app` / `lab restart --app`, which stop and start it alone
//! while the node process lives on.

use std::fs;
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::control::load_lab;
use super::state::{AppKind, LabState};
use super::{ip, proc, tail, UPSTREAM_ADDRESS};

const TOY_SCRIPT: &str = include_str!("../assets/upstream.py");
const ORDERS_SCRIPT: &str = include_str!("../assets/orders.py");

/// The header the node puts the request id in, passed to the orders app as
/// `--id-header`: the one place the lab names it.
pub const REQUEST_ID_HEADER: &str = "X-Hotpair-Request-Id";

/// Debian's own interpreter, where `python3-psycopg2` installs psycopg2 (a
/// `python3` first on PATH, e.g. pyenv's, may not see it).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

impl AppKind {
    pub fn name(self) -> &'static str {
        match self {
            AppKind::Toy => "toy",
            AppKind::Orders => "orders",
        }
    }

    fn script_name(self) -> &'static str {
        match self {
            AppKind::Toy => "upstream.py",
            AppKind::Orders => "orders.py",
        }
    }
}

/// Writes the app's script into the state directory; its path.
pub fn write_script(state: &LabState) -> Result<PathBuf> {
    let path = state.state_dir.join(state.app.script_name());
    let text = match state.app {
        AppKind::Toy => TOY_SCRIPT,
        AppKind::Orders => ORDERS_SCRIPT,
    };
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Checks that the app can run here (before anything is built): the orders
/// app needs psycopg2 in the system's python3.
pub fn check(app: AppKind) -> Result<()> {
    if app == AppKind::Toy {
        return Ok(());
    }
    let ok = std::process::Command::new(SYSTEM_PYTHON)
        .args(["-c", "import psycopg2"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!(
            "--app orders runs lab/assets/orders.py with {SYSTEM_PYTHON}, which cannot \
             import psycopg2 (Debian: apt-get install python3-psycopg2)"
        );
    }
    Ok(())
}

/// `orders.py --init-schema` from the db namespace: the table, once.
pub fn init_schema(state: &LabState) -> Result<()> {
    let db = state
        .db
        .as_ref()
        .context("the orders app needs the lab's database")?;
    let mut cmd = ip::netns_command(&db.namespace, SYSTEM_PYTHON);
    cmd.arg(state.state_dir.join(AppKind::Orders.script_name()))
        .args(["--dsn", &db.dsn(), "--init-schema"]);
    ip::run(&mut cmd).context("creating the orders schema (is python3-psycopg2 installed?)")?;
    Ok(())
}

/// Starts node `i`'s application and waits until it listens.
pub fn start(state: &mut LabState, i: usize) -> Result<()> {
    let node = &state.nodes[i];
    let ready = state
        .state_dir
        .join(format!("upstream-{}.ready", node.name));
    let _ = fs::remove_file(&ready);
    let (_, port) = UPSTREAM_ADDRESS
        .rsplit_once(':')
        .expect("UPSTREAM_ADDRESS is host:port");
    // The node's route reaches it on 127.0.0.1, the other nodes' routes
    // (their `fallback`) on the node's LAN address: every address of the
    // namespace, which holds nothing else.
    let host = "0.0.0.0";
    let script = state.state_dir.join(state.app.script_name());
    let interpreter = match state.app {
        AppKind::Toy => "python3",
        AppKind::Orders => SYSTEM_PYTHON,
    };
    let mut cmd = ip::netns_command(&node.namespace, interpreter);
    cmd.arg(&script);
    if state.app == AppKind::Orders {
        let db = state
            .db
            .as_ref()
            .context("the orders app needs the lab's database")?;
        cmd.args(["--dsn", &db.dsn(), "--id-header", REQUEST_ID_HEADER]);
    }
    cmd.args(["--bind", host, "--port", port, "--log"])
        .arg(&node.upstream.log)
        .arg("--ready")
        .arg(&ready);
    if let Some(cg) = &node.cgroup {
        cg.enter_on_exec(&mut cmd)?;
    }
    let p = proc::spawn_detached(cmd, &node.upstream.log)?;
    state.nodes[i].upstream.process = Some(p);
    state.nodes[i].upstream.killed = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        if !p.alive() {
            bail!(
                "the {} app in {} exited at start:\n{}",
                state.app.name(),
                state.nodes[i].namespace,
                tail(&state.nodes[i].upstream.log, 20)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "the {} app in {} did not start listening within 10 s:\n{}",
                state.app.name(),
                state.nodes[i].namespace,
                tail(&state.nodes[i].upstream.log, 20)
            );
        }
        sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn node_index(state: &LabState, name: &str) -> Result<usize> {
    state
        .nodes
        .iter()
        .position(|n| n.name == name)
        .with_context(|| format!("lab {} has no node `{name}`", state.prefix))
}

/// `lab kill --app NODE`: SIGKILL node NODE's application only.
pub fn kill(prefix: &str, name: &str) -> Result<()> {
    let mut state = load_lab(prefix)?;
    let i = node_index(&state, name)?;
    let up = &mut state.nodes[i].upstream;
    let was_alive = up.process.is_some_and(|p| p.kill());
    up.killed = true;
    let pid = up.process.map(|p| p.pid);
    state.save()?;
    match (was_alive, pid) {
        (true, Some(pid)) => {
            hotpair::outln!("lab {prefix}: killed the app of node {name} (pid {pid}, SIGKILL)")?
        }
        (_, Some(pid)) => {
            hotpair::outln!("lab {prefix}: the app of node {name} (pid {pid}) was already dead")?
        }
        (_, None) => hotpair::outln!("lab {prefix}: the app of node {name} was never started")?,
    }
    Ok(())
}

/// `lab restart --app NODE`: stop node NODE's application if it runs, start
/// it again and wait until it listens.
pub fn restart(prefix: &str, name: &str) -> Result<()> {
    let mut state = load_lab(prefix)?;
    let i = node_index(&state, name)?;
    if let Some(p) = state.nodes[i].upstream.process.filter(|p| p.alive()) {
        p.signal(libc::SIGTERM);
        if !p.wait_gone(Duration::from_secs(5)) {
            p.kill();
        }
        hotpair::outln!(
            "lab {prefix}: stopped the app of node {name} (pid {})",
            p.pid
        )?;
    }
    let result = start(&mut state, i);
    state.save()?;
    result?;
    let pid = state.nodes[i].upstream.process.map_or(0, |p| p.pid);
    hotpair::outln!(
        "lab {prefix}: restarted the {} app of node {name} (pid {pid})",
        state.app.name()
    )?;
    Ok(())
}
