//! Process bookkeeping for the lab: detached spawning, liveness that survives
//! pid reuse (pid + start time), and killing by pid.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// A process the lab started: its pid and its start time (clock ticks since
/// boot, field 22 of /proc/PID/stat) so a recycled pid is never mistaken for it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub start_time: u64,
}

impl Proc {
    /// Whether this very process still runs (not exited, not a zombie).
    pub fn alive(&self) -> bool {
        matches!(stat(self.pid), Some((state, start)) if start == self.start_time && state != 'Z' && state != 'X')
    }

    /// Sends `sig` if the process is still the one we started.
    pub fn signal(&self, sig: i32) -> bool {
        if !self.alive() {
            return false;
        }
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.pid, sig) == 0 }
    }

    /// Waits up to `timeout` for the process to be gone; true if it is.
    pub fn wait_gone(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.alive() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and wait (briefly) until it is gone. Returns true if it had been alive.
    pub fn kill(&self) -> bool {
        if !self.signal(libc::SIGKILL) {
            return false;
        }
        self.wait_gone(Duration::from_secs(2));
        true
    }

    /// Identifies a running process by pid.
    pub fn of_pid(pid: i32) -> Option<Proc> {
        stat(pid).map(|(_, start_time)| Proc { pid, start_time })
    }
}

/// (state letter, start time) from /proc/PID/stat.
fn stat(pid: i32) -> Option<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid …": comm may contain spaces and parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3 (state); starttime is field 22.
    let start = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start))
}

/// Kills a process by pid without start-time check (used for processes found
/// inside one of the lab's own namespaces, which are ours by construction).
pub fn kill_pid(pid: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Spawns `cmd` detached from us: its own session (so a Ctrl-C in our terminal
/// does not reach it), stdin from /dev/null, stdout and stderr appended to `log`.
/// The child is not waited for; it outlives this process.
pub fn spawn_detached(mut cmd: Command, log: &Path) -> Result<Proc> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let shown = format!("{cmd:?}");
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {shown}"))?;
    let pid = child.id() as i32;
    drop(child);
    // The start time is read right away; should the process already have
    // exited, record a start time that matches nothing so it reads as dead.
    Ok(Proc::of_pid(pid).unwrap_or(Proc {
        pid,
        start_time: u64::MAX,
    }))
}
