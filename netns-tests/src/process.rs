//! Child processes of the tests: a command run to completion within a time
//! limit, one left running in the background with its output in files
//! ([`Background`]), one whose stdout is read line by line as it comes
//! ([`ChildLines`]), and a process's resident memory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::describe;

/// Runs `cmd` with a time limit, capturing stdout and stderr. On timeout the
/// process is killed and the test panics with what it printed so far.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let mut out_pipe = child.stdout.take().expect("stdout piped");
    let mut err_pipe = child.stderr.take().expect("stderr piped");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        match child.try_wait().expect("waiting for child") {
            Some(status) => break (status, false),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                break (child.wait().expect("waiting for killed child"), true);
            }
            None => thread::sleep(Duration::from_millis(20)),
        }
    };
    let output = Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    };
    if timed_out {
        panic!(
            "{shown} did not finish within {timeout:?}; killed.\n{}",
            describe(&output)
        );
    }
    output
}

/// A process started in the background with its output going to files;
/// killed on drop if it still runs.
pub struct Background {
    child: std::process::Child,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    shown: String,
}

impl Background {
    /// Spawns `cmd` with stdin from /dev/null and stdout/stderr to
    /// `dir/<tag>.out` and `dir/<tag>.err`.
    pub fn spawn(mut cmd: Command, dir: &Path, tag: &str) -> Background {
        let shown = format!("{cmd:?}");
        let stdout_path = dir.join(format!("{tag}.out"));
        let stderr_path = dir.join(format!("{tag}.err"));
        let out = std::fs::File::create(&stdout_path).expect("creating a stdout file");
        let err = std::fs::File::create(&stderr_path).expect("creating a stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
        Background {
            child,
            stdout_path,
            stderr_path,
            shown,
        }
    }

    /// The process id (`hotpair lab exec` execs `ip netns exec`, which execs
    /// the program: one pid all along).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stdout_path).unwrap_or_default()).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    /// Sends a signal by name (`INT`, `TERM`, …) with kill(1).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .stdin(Stdio::null())
            .output();
    }

    /// Waits up to `timeout` for the exit; on timeout kills it and panics
    /// with what it printed.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let (status, timed_out) = loop {
            match self.child.try_wait().expect("waiting for child") {
                Some(status) => break (status, false),
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    break (self.child.wait().expect("waiting for killed child"), true);
                }
                None => thread::sleep(Duration::from_millis(10)),
            }
        };
        let output = Output {
            status,
            stdout: std::fs::read(&self.stdout_path).unwrap_or_default(),
            stderr: std::fs::read(&self.stderr_path).unwrap_or_default(),
        };
        if timed_out {
            panic!(
                "{} did not finish within {timeout:?}; killed.\n{}",
                self.shown,
                describe(&output)
            );
        }
        output
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory of process `pid`, bytes (0 when it is gone).
pub fn rss(pid: u64) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A child process whose output is read on threads of its own: its stdout
/// line by line into [`ChildLines::lines`], its stderr whole (for the
/// failure message). Killed when dropped, so a test that panics half way
/// leaves no client running.
pub struct ChildLines {
    child: std::process::Child,
    /// Stdout, a line per message; disconnected once the child closes it.
    pub lines: std::sync::mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl ChildLines {
    /// Spawns `cmd` with stdout and stderr piped (stdin as `cmd` says).
    pub fn spawn(cmd: &mut Command) -> std::io::Result<ChildLines> {
        use std::io::{BufRead, BufReader, Read};
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Ok(ChildLines {
            child,
            lines,
            stderr: Some(stderr),
        })
    }

    /// The child's stdin, when `cmd` piped it (once).
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Kills the child (if still running) and returns all it wrote to
    /// stderr.
    pub fn kill_and_stderr(&mut self) -> String {
        self.kill();
        self.stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildLines {
    fn drop(&mut self) {
        self.kill();
    }
}
