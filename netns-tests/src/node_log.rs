//! Driving a lab's node processes directly, for tests whose windows are
//! tens of milliseconds (a `hotpair lab freeze` costs a process start):
//! their pids, signals, and waiting for a line in a node's log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::{status_node, Lab};

impl Lab {
    /// The pid of node `name`'s process (`lab status`).
    pub fn node_pid(&self, name: &str) -> u32 {
        let st = self.status_json();
        status_node(&st, name)
            .and_then(|n| n["pid"].as_u64())
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or_else(|| panic!("[{}] no pid for {name} in lab status", self.test))
    }

    /// Node `name`'s log, read from its current end on.
    pub fn node_log(&self, name: &str) -> NodeLog {
        let path = self.state_dir().join(format!("{name}.log"));
        let from = len(&path);
        NodeLog { path, from }
    }
}

/// `kill -SIG pid`, at once.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid} failed");
}

/// Both nodes (`pids`) running again — a stopped node would keep the lab
/// from going down — then a panic naming `what`, with the nodes' logs.
pub fn thaw_and_panic(lab: &Lab, pids: [u32; 2], what: &str) -> ! {
    for pid in pids {
        signal(pid, "CONT");
    }
    panic!("[{}] {what}\n{}", lab.test, lab.node_logs(30));
}

/// The duplex pair stalled in turn: n1 (`pids[0]`) stopped until n2
/// logs its promotion, then n2 stopped and n1 resumed (both marks moved
/// to the first stop). `fail` on a timeout.
pub fn stall_in_turn(pids: [u32; 2], mut logs: [&mut NodeLog; 2], fail: impl Fn(&str)) {
    let [n1, n2] = pids;
    for log in logs.iter_mut() {
        log.mark();
    }
    signal(n1, "STOP");
    if !logs[1].wait_for("shadow connections promoted", Duration::from_secs(5)) {
        fail("n2 did not promote while n1 was frozen");
    }
    signal(n2, "STOP");
    signal(n1, "CONT");
}

/// A node's log from a mark on: what it says after that moment.
pub struct NodeLog {
    path: PathBuf,
    from: usize,
}

impl NodeLog {
    /// Reads from the log's current end on.
    pub fn mark(&mut self) {
        self.from = len(&self.path);
    }

    /// What the log says past the mark.
    pub fn since_mark(&self) -> String {
        std::fs::read(&self.path).map_or_else(
            |_| String::new(),
            |t| String::from_utf8_lossy(&t[self.from.min(t.len())..]).into_owned(),
        )
    }

    /// Waits until `needle` appears past the mark; whether it did within
    /// `within`.
    pub fn wait_for(&self, needle: &str, within: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < within {
            if self.since_mark().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(2));
        }
        false
    }
}

fn len(path: &Path) -> usize {
    std::fs::metadata(path).map_or(0, |m| m.len() as usize)
}
