//! The lab's other operations on a lab that exists: `down`, `exec`,
//! `kill`, `freeze`/`thaw` and `restart`, and starting a node (for `up` too).

use std::ffi::OsString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::proc::Proc;
use super::state::LabState;
use super::{
    cgroup, db, existing_namespaces, ip, is_lab_member, node_config, proc, require_root, state_dir,
    tail, validate_prefix,
};

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
pub(crate) fn cleanup(prefix: &str, keep_docroot: bool) -> Result<bool> {
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
            // Its clients gone, the database shuts down fast and clean.
            if let Some(db) = &state.db {
                db::stop(db);
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
pub(crate) fn exec(prefix: &str, name: &str, command: &[OsString]) -> Result<()> {
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
    let mut state = load_lab(prefix)?;
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
pub(crate) fn load_lab(prefix: &str) -> Result<LabState> {
    validate_prefix(prefix)?;
    let dir = state_dir(prefix);
    LabState::load(&dir)?
        .with_context(|| format!("no lab with prefix {prefix} (no {})", dir.display()))
}

/// `lab restart`: stop the node if it runs (a planned stop), start it with
/// its config, wait until its links are up.
pub(crate) fn restart(prefix: &str, name: &str) -> Result<()> {
    let mut state = load_lab(prefix)?;
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

/// Starts node `i`'s `hotpair node` (this binary) in its namespace and
/// cgroup, its log to its file.
pub(crate) fn start_node(state: &mut LabState, i: usize) -> Result<()> {
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

/// `lab freeze` / `lab thaw`: send `sig` to a node that is running.
pub(crate) fn signal_node(prefix: &str, name: &str, sig: i32, did: &str) -> Result<()> {
    let state = load_lab(prefix)?;
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
pub(crate) fn kill(prefix: &str, name: &str) -> Result<()> {
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
