//! Helpers for `tests/docker_compose.rs`: packaging/compose/docker-compose.yml
//! run by `docker-compose` (1.29, Debian's package) under a project name of
//! the test's own, and a [`Compose`] guard whose `Drop` runs `down -v` —
//! the project's containers, network and anonymous volumes — on every
//! path, after printing the project's logs when the test panicked.
//!
//! Without a usable Docker engine or without `docker-compose` a test
//! prints `DOCKER TEST SKIPPED: reason`; with `CI` set it fails
//! (`docker::skip`).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use crate::docker::{require_docker, skip, workspace};
use crate::{assert_success, describe, run_with_timeout};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The compose file under test.
pub fn compose_file() -> PathBuf {
    workspace().join("packaging/compose/docker-compose.yml")
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// Whether a Docker engine and `docker-compose` can run the test;
/// otherwise `docker::skip` (which fails under CI).
pub fn require_compose(test: &str) -> bool {
    if !require_docker(test) {
        return false;
    }
    if !on_path("docker-compose") {
        return skip(
            test,
            "no docker-compose on PATH (apt-get install docker-compose; scripts/test.sh does)",
        );
    }
    true
}

/// One compose project of packaging/compose/docker-compose.yml; `Drop`
/// takes it down.
pub struct Compose {
    pub test: String,
    /// `hotpair-c<pid>-<n>`: docker-compose's project name (its network is
    /// `<project>_lan`).
    pub project: String,
    /// The compose file's variables (`HOTPAIR_IMAGE`, `HOTPAIR_NET`, …).
    env: Vec<(String, String)>,
}

impl Compose {
    pub fn new(test: &str) -> Compose {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Compose {
            test: test.to_owned(),
            project: format!("hotpair-c{}-{n}", std::process::id()),
            env: Vec::new(),
        }
    }

    /// Sets one of the compose file's variables for every later command.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    fn command(&self) -> Command {
        let mut c = Command::new("docker-compose");
        c.arg("-f")
            .arg(compose_file())
            .args(["-p", &self.project, "--ansi", "never"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    /// Runs `docker-compose -f FILE -p PROJECT ARGS…` with a time limit.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Output {
        run_with_timeout(self.command().args(args), timeout)
    }

    /// Like [`Compose::run`]; panics unless it succeeds; its stdout, trimmed.
    #[track_caller]
    pub fn run_ok(&self, args: &[&str], timeout: Duration) -> String {
        let out = self.run(args, timeout);
        assert_success(
            &out,
            &format!("[{}] docker-compose {}", self.test, args.join(" ")),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `up -d`: Err with what docker-compose said if it fails (the caller
    /// may retry on another subnet; `Drop` takes down whatever was made).
    pub fn up(&self) -> Result<(), String> {
        let out = self.run(&["up", "-d"], Duration::from_secs(120));
        if out.status.success() {
            Ok(())
        } else {
            Err(describe(&out))
        }
    }

    /// `down -v` now (also what `Drop` does).
    pub fn down(&self) -> Output {
        self.run(
            &["down", "-v", "--remove-orphans", "--timeout", "10"],
            Duration::from_secs(120),
        )
    }

    /// The container id of a service (`ps -q SERVICE`).
    pub fn container(&self, service: &str) -> String {
        let id = self.run_ok(&["ps", "-q", service], Duration::from_secs(30));
        assert!(
            !id.is_empty() && !id.contains('\n'),
            "[{}] docker-compose ps -q {service}: {id:?}",
            self.test
        );
        id
    }

    /// The project's network (the file's `lan`).
    pub fn network(&self) -> String {
        format!("{}_lan", self.project)
    }

    /// The last lines of every service's log.
    pub fn logs(&self) -> String {
        let out = self.run(
            &["logs", "--no-color", "--tail", "80"],
            Duration::from_secs(30),
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Compose {
    // No time limits here (`run` panics on one, and a panic while
    // unwinding aborts): plain `output()`, as docker.rs's `DockerSet` does.
    fn drop(&mut self) {
        if thread::panicking() {
            if let Ok(out) = self
                .command()
                .args(["logs", "--no-color", "--tail", "80"])
                .output()
            {
                eprintln!(
                    "[{}] --- docker-compose -p {} logs:\n{}{}",
                    self.test,
                    self.project,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let out = self
            .command()
            .args(["down", "-v", "--remove-orphans", "--timeout", "10"])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            other => eprintln!(
                "[{}] WARNING: docker-compose -p {} down -v failed (leftovers: docker ps -a \
                 --filter label=com.docker.compose.project={}): {other:?}",
                self.test, self.project, self.project
            ),
        }
    }
}
