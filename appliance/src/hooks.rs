//! State-change hooks (keepalived's `notify`): `[hooks] on_change` is run
//! as `SCRIPT ADDRESS OLD_STATE NEW_STATE` each time a service address
//! changes state (the words of `hotpair status`: replicated, waiting,
//! promoted, claimed, fenced, alone, leaving; `starting` as the old state
//! of an address's first state).
//!
//! The stack thread only queues a change ([`Hooks::submit`], never
//! blocks): a thread of its own runs the scripts one at a time, in order,
//! each for at most `timeout_ms` (then its process group is killed). The
//! queue is bounded: a change that finds it full is dropped and said at
//! warn — a hook that hangs must not grow the node's memory, nor delay
//! the stack loop that serves the clients.

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Changes waiting for the hook thread, at most.
pub const QUEUE: usize = 64;

/// How often a running hook is looked at.
const POLL: Duration = Duration::from_millis(10);

/// One state change of one address: what a hook is run with (made by
/// [`crate::lifecycle::changes`] from the status snapshots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub address: String,
    pub old: String,
    pub new: String,
}

/// How one run ended.
#[derive(Debug)]
pub enum Outcome {
    Exited(ExitStatus),
    /// Still running at the timeout: killed.
    TimedOut,
    Failed(std::io::Error),
}

/// The hook thread's handle.
pub struct Hooks {
    tx: Option<mpsc::SyncSender<Change>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dropped: u64,
}

impl Hooks {
    /// Start the hook thread for `script`, each run bounded by `timeout`;
    /// `node` is given to the script as `$HOTPAIR_NODE`.
    pub fn start(script: PathBuf, timeout: Duration, node: String) -> std::io::Result<Hooks> {
        Hooks::start_with_queue(script, timeout, node, QUEUE)
    }

    pub fn start_with_queue(
        script: PathBuf,
        timeout: Duration,
        node: String,
        queue: usize,
    ) -> std::io::Result<Hooks> {
        let (tx, rx) = mpsc::sync_channel::<Change>(queue);
        let thread = std::thread::Builder::new()
            .name("hotpair-hooks".into())
            .spawn(move || {
                for c in rx {
                    let started = Instant::now();
                    match run(&script, &node, &c, timeout) {
                        Outcome::Exited(st) if st.success() => tracing::debug!(
                            address = %c.address, old = %c.old, new = %c.new,
                            ms = started.elapsed().as_millis() as u64,
                            "hooks.on_change ran"
                        ),
                        Outcome::Exited(st) => tracing::warn!(
                            script = %script.display(), address = %c.address,
                            old = %c.old, new = %c.new, status = %st,
                            "hooks.on_change failed"
                        ),
                        Outcome::TimedOut => tracing::warn!(
                            script = %script.display(), address = %c.address,
                            old = %c.old, new = %c.new, timeout_ms = timeout.as_millis() as u64,
                            "hooks.on_change still running at its timeout: killed"
                        ),
                        Outcome::Failed(e) => tracing::warn!(
                            script = %script.display(), error = %e,
                            "hooks.on_change could not be run"
                        ),
                    }
                }
            })?;
        Ok(Hooks {
            tx: Some(tx),
            thread: Some(thread),
            dropped: 0,
        })
    }

    /// Queue a change for the hook; never blocks. Returns whether it was
    /// queued.
    pub fn submit(&mut self, c: Change) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(c) {
            Ok(()) => true,
            Err(mpsc::TrySendError::Full(c)) => {
                self.dropped += 1;
                tracing::warn!(
                    address = %c.address, old = %c.old, new = %c.new,
                    dropped = self.dropped,
                    "hooks.on_change: the queue is full (hooks run slower than states \
                     change): this change is not run"
                );
                false
            }
            Err(mpsc::TrySendError::Disconnected(_)) => false,
        }
    }

    /// Let the queued hooks run, for at most `within` (the node is
    /// stopping: its `leaving` changes should reach the script).
    pub fn finish(mut self, within: Duration) {
        self.tx = None;
        let deadline = Instant::now() + within;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() {
                if Instant::now() >= deadline {
                    tracing::warn!("hooks.on_change: still running as the node stops: left behind");
                    return;
                }
                std::thread::sleep(POLL);
            }
            let _ = t.join();
        }
    }
}

/// Run the hook once for `c`, killing it (its whole process group: a
/// shell script's children too) at `timeout`.
pub fn run(script: &std::path::Path, node: &str, c: &Change, timeout: Duration) -> Outcome {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(script);
    cmd.args([&c.address, &c.old, &c.new])
        .env("HOTPAIR_NODE", node)
        // systemd's readiness socket is the node's: a script must not be
        // able to say READY or feed the watchdog for it.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(e),
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Outcome::Exited(st),
            Ok(None) if Instant::now() >= deadline => {
                let pid = child.id() as libc::pid_t;
                // SAFETY: kill(2) with a negative pid signals the group we
                // made the child the leader of (process_group(0) above).
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                let _ = child.wait();
                return Outcome::TimedOut;
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Outcome::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        let p = dir.join("hook.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hotpair-hooks-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn change(a: &str, old: &str, new: &str) -> Change {
        Change {
            address: a.into(),
            old: old.into(),
            new: new.into(),
        }
    }

    #[test]
    fn runs_in_order_with_the_arguments() {
        let d = tempdir("order");
        let out = d.join("out");
        let s = script(
            &d,
            &format!("echo \"$HOTPAIR_NODE $1 $2 $3\" >> {}", out.display()),
        );
        let mut h = Hooks::start(s, Duration::from_secs(5), "n2".into()).unwrap();
        assert!(h.submit(change("10.0.0.10", "starting", "waiting")));
        assert!(h.submit(change("10.0.0.10", "waiting", "replicated")));
        assert!(h.submit(change("10.0.0.10", "replicated", "promoted")));
        h.finish(Duration::from_secs(10));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "n2 10.0.0.10 starting waiting\nn2 10.0.0.10 waiting replicated\n\
             n2 10.0.0.10 replicated promoted\n"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed_with_its_children() {
        let d = tempdir("timeout");
        let out = d.join("out");
        // The child `sleep` holds on too: the group is killed, so the
        // file never gets the line.
        let s = script(&d, &format!("sleep 30; echo late >> {}", out.display()));
        let t = Instant::now();
        let r = run(&s, "n1", &change("a", "b", "c"), Duration::from_millis(200));
        assert!(matches!(r, Outcome::TimedOut), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(!out.exists());
        let r = run(
            &d.join("missing"),
            "n1",
            &change("a", "b", "c"),
            Duration::from_secs(1),
        );
        assert!(matches!(r, Outcome::Failed(_)), "{r:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_queue_drops_without_blocking() {
        let d = tempdir("full");
        let s = script(&d, "sleep 1");
        let mut h = Hooks::start_with_queue(s, Duration::from_secs(5), "n1".into(), 2).unwrap();
        let t = Instant::now();
        let queued = (0..10)
            .filter(|i| h.submit(change(&i.to_string(), "x", "y")))
            .count();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        // Two in the queue, at most one taken by the thread already.
        assert!((2..=3).contains(&queued), "{queued}");
        assert!(h.dropped >= 7);
        let _ = std::fs::remove_dir_all(&d);
    }
}
