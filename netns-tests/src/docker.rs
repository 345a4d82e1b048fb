//! Helpers for the tests that run hotpair in Docker containers
//! (`tests/docker_pair.rs`: the OCI image of packaging/oci/;
//! `tests/docker_systemd.rs`: the systemd unit of packaging/systemd/): no
//! network namespaces of the tests' own, a user-defined Docker network with
//! a unique name and subnet, and a [`DockerSet`] guard that removes every
//! container, network and temporary image it made, also on panic (after
//! printing the containers' logs).
//!
//! Without a usable Docker engine a test prints `DOCKER TEST SKIPPED:
//! reason`; with `CI` set it fails instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::{assert_success, describe, hotpair_bin, report, run_with_timeout, sha256sum, TempDir};
use hotpair::stall::Sampler;

/// The file the clients download, and its size.
pub const FILE: &str = "50m.bin";
pub const FILE_BYTES: usize = 50 * 1024 * 1024;
/// curl's rate limit: the download takes ~2.5 s, so the stop lands mid-reply.
pub const RATE: &str = "20M";
/// The primary is stopped once the client holds this much.
pub const STOP_AT: u64 = 15 * 1024 * 1024;
/// Image repository for test builds of packaging/oci (kept apart from a
/// user's `hotpair:latest`).
pub const REPO: &str = "hotpair-test";
/// The label on everything the tests make (`docker ps -a --filter
/// label=org.hotpair.test` finds leftovers of a killed test run).
pub const LABEL: &str = "org.hotpair.test";

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Skips loudly (or fails, under CI) with `reason`; returns false.
pub fn skip(test: &str, reason: &str) -> bool {
    if ci() {
        panic!("DOCKER TEST {test} CANNOT RUN: {reason}; CI is set, so it may not be skipped");
    }
    report(&format!(
        "\n==================================================================\n\
         DOCKER TEST SKIPPED: {reason} ({test})\n\
         =================================================================="
    ));
    false
}

/// Whether a Docker engine can run the test; otherwise [`skip`].
pub fn require_docker(test: &str) -> bool {
    match docker_unusable() {
        None => true,
        Some(reason) => skip(test, &reason),
    }
}

fn docker_unusable() -> Option<String> {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("docker").is_file()));
    if !found {
        return Some("no docker command on PATH".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun on this host (the nodes' TAP devices need it)".into());
    }
    // `docker version` asks the engine; bounded, and not a panic if it hangs.
    let mut child = match Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Some(format!("cannot run docker: {e}")),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Some("the Docker engine did not answer `docker version` in 30 s".into());
            }
        }
    }
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return Some(format!(
            "the Docker engine is not usable: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    None
}

/// Runs `docker ARGS…` with a time limit.
pub fn docker<S: AsRef<std::ffi::OsStr>>(args: &[S], timeout: Duration) -> Output {
    run_with_timeout(Command::new("docker").args(args), timeout)
}

/// Runs `docker ARGS…`; panics unless it succeeds; its stdout, trimmed.
#[track_caller]
pub fn docker_ok<S: AsRef<std::ffi::OsStr>>(args: &[S], timeout: Duration) -> String {
    let out = docker(args, timeout);
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert_success(&out, &format!("docker {}", shown.join(" ")));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The workspace root (packaging/ lives there).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("netns-tests lives inside the workspace")
        .to_owned()
}

/// `packaging/oci/build.sh` on the binary under test (skipped when the
/// image of the same content exists); the image reference.
pub fn build_image(test: &str) -> String {
    let t = Instant::now();
    let bin = hotpair_bin();
    let script = workspace().join("packaging/oci/build.sh");
    let out = run_with_timeout(
        Command::new("bash")
            .arg(&script)
            .arg("--bin")
            .arg(&bin)
            .args(["--repo", REPO, "--no-latest", "--prune-older-than", "2h"]),
        Duration::from_secs(600),
    );
    assert_success(&out, &format!("[{test}] {}", script.display()));
    let image = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(
        image.starts_with(&format!("{REPO}:")),
        "[{test}] build.sh printed no image reference\n{}",
        describe(&out)
    );
    report(&format!(
        "[{test}] image {image} ready in {:.1} s ({})",
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.starts_with("build.sh:"))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    image
}

/// What one test made on the Docker engine; `Drop` removes it all.
pub struct DockerSet {
    pub test: String,
    /// `hotpair-t<pid>-<n>`: every container, the network and temporary
    /// images are named after it.
    pub name: String,
    pub network: Option<String>,
    /// Whether `network` was made here (removed on drop) or is someone
    /// else's, e.g. a compose project's ([`DockerSet::adopt_network`]).
    owns_network: bool,
    containers: Vec<String>,
    images: Vec<String>,
    /// The subnet's first three octets, e.g. "10.213.17".
    pub net24: String,
    pub dir: TempDir,
}

impl DockerSet {
    pub fn new(test: &str) -> DockerSet {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("hotpair-t{}-{n}", std::process::id());
        DockerSet {
            test: test.to_owned(),
            dir: TempDir::new(&format!("docker-{test}")),
            name,
            network: None,
            owns_network: false,
            containers: Vec::new(),
            images: Vec::new(),
            net24: String::new(),
        }
    }

    /// A user-defined bridge network, internal (no route beyond it), on a
    /// free /24 of 10.213.0.0/16; Docker assigns addresses from its lower
    /// half only, so .200 (the service address) is never a container's.
    /// The network's name.
    pub fn create_network(&mut self) -> String {
        let net = self.name.clone();
        let start = std::process::id() as usize + COUNTER.load(Ordering::SeqCst) as usize;
        let mut last = String::new();
        for i in 0..40 {
            let third = (start + i * 7) % 250 + 1;
            let net24 = format!("10.213.{third}");
            let out = docker(
                &[
                    "network",
                    "create",
                    "--driver",
                    "bridge",
                    "--internal",
                    "--subnet",
                    &format!("{net24}.0/24"),
                    "--ip-range",
                    &format!("{net24}.0/25"),
                    "--label",
                    LABEL,
                    &net,
                ],
                Duration::from_secs(60),
            );
            if out.status.success() {
                self.network = Some(net.clone());
                self.owns_network = true;
                self.net24 = net24;
                return net;
            }
            last = describe(&out);
            if !last.contains("overlap") {
                break;
            }
        }
        panic!("[{}] docker network create {net} failed\n{last}", self.test);
    }

    /// Uses a network made by someone else (a compose project, which
    /// removes it itself) on the subnet `net24`.0/24: containers of this
    /// set join it, and drop leaves it alone.
    pub fn adopt_network(&mut self, network: &str, net24: &str) {
        self.network = Some(network.to_owned());
        self.owns_network = false;
        self.net24 = net24.to_owned();
    }

    /// The name for a container of this set (removed on drop from now on).
    pub fn container(&mut self, role: &str) -> String {
        let c = format!("{}-{role}", self.name);
        self.containers.push(c.clone());
        c
    }

    /// Registers an image tag this test made, to be removed on drop.
    pub fn temporary_image(&mut self, tag: &str) {
        self.images.push(tag.to_owned());
    }

    /// `hotpair status --json` of a node, asked inside its container.
    pub fn status(&self, container: &str) -> serde_json::Value {
        let out = docker(
            &["exec", container, "hotpair", "status", "--json"],
            Duration::from_secs(20),
        );
        assert_success(
            &out,
            &format!("[{}] hotpair status in {container}", self.test),
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "[{}] status of {container} is not JSON ({e})\n{}",
                self.test,
                describe(&out)
            )
        })
    }

    /// Whether the node in `container` answers with its one peer's link up.
    pub fn link_up(&self, container: &str) -> bool {
        let out = docker(
            &["exec", container, "hotpair", "status", "--json"],
            Duration::from_secs(20),
        );
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|s| {
                s["peers"]
                    .as_array()
                    .is_some_and(|p| p.len() == 1 && p[0]["link_up"] == true)
            })
    }

    /// Waits (≤ 60 s) until both nodes report their link up; panics with
    /// `logs(container)` of each otherwise.
    pub fn wait_link_up(&self, n1: &str, n2: &str, logs: impl Fn(&str) -> String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(self.link_up(n1) && self.link_up(n2)) {
            assert!(
                Instant::now() < deadline,
                "[{}] the pair's replication link was not up within 60 s\n--- {n1}:\n{}\n--- {n2}:\n{}",
                self.test,
                logs(n1),
                logs(n2)
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// `docker logs CONTAINER`, stdout and stderr.
    pub fn logs(&self, container: &str) -> String {
        let out = docker(&["logs", container], Duration::from_secs(20));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The docroot (with [`FILE`] and index.html) and `hotpair pair
    /// --mode duplex` configs for link addresses .11 and .12 and the
    /// service address .200 of the network, docroot /srv/www in the
    /// containers. Returns (docroot, config dir).
    pub fn content_and_configs(&self) -> (PathBuf, PathBuf) {
        self.content_and_configs_with(&[])
    }

    /// [`DockerSet::content_and_configs`] with more `hotpair pair`
    /// arguments (e.g. `--metrics 127.0.0.1:9464`).
    pub fn content_and_configs_with(&self, extra: &[&str]) -> (PathBuf, PathBuf) {
        let dir = self.dir.path();
        let www = dir.join("www");
        let cfg = dir.join("cfg");
        std::fs::create_dir_all(&www).expect("creating the docroot");
        std::fs::write(www.join(FILE), crate::random_bytes(FILE_BYTES)).expect("writing the file");
        std::fs::write(www.join("index.html"), INDEX).expect("writing index.html");
        let n = &self.net24;
        let out = run_with_timeout(
            Command::new(hotpair_bin())
                .args([
                    "pair",
                    "--mode",
                    "duplex",
                    "--address",
                    &format!("{n}.200"),
                    "--link",
                    &format!("{n}.11,{n}.12"),
                    "--docroot",
                    "/srv/www",
                    "--out",
                    &cfg.to_string_lossy(),
                ])
                .args(extra),
            Duration::from_secs(30),
        );
        assert_success(&out, &format!("[{}] hotpair pair", self.test));
        (www, cfg)
    }
}

/// index.html's content.
pub const INDEX: &[u8] = b"hotpair in a container\n";

impl Drop for DockerSet {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            Command::new("docker")
                .args(args)
                .stdin(Stdio::null())
                .output()
        };
        if thread::panicking() {
            for c in &self.containers {
                if let Ok(out) = quiet(&["logs", "--tail", "60", c]) {
                    eprintln!(
                        "[{}] --- tail of docker logs {c}:\n{}{}",
                        self.test,
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        for c in &self.containers {
            match quiet(&["rm", "-f", "-v", c]) {
                Ok(o)
                    if o.status.success()
                        || String::from_utf8_lossy(&o.stderr).contains("No such container") => {}
                Ok(o) => eprintln!(
                    "[{}] WARNING: docker rm -f {c} failed: {}",
                    self.test,
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => eprintln!("[{}] WARNING: cannot run docker rm -f {c}: {e}", self.test),
            }
        }
        if let Some(net) = self.network.as_ref().filter(|_| self.owns_network) {
            let gone = quiet(&["network", "rm", net]);
            if !gone.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!(
                    "[{}] WARNING: docker network rm {net} failed: {gone:?}",
                    self.test
                );
            }
        }
        for i in &self.images {
            let gone = quiet(&["rmi", i]);
            if !gone.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!("[{}] WARNING: docker rmi {i} failed: {gone:?}", self.test);
            }
        }
    }
}

/// What [`download_across_stop`] saw.
#[derive(Debug)]
pub struct Download {
    /// Bytes the client held when the stop was sent.
    pub at_stop: u64,
    /// From the client's start to the stop command.
    pub stop_after: Duration,
    /// How long the stop command took.
    pub stop_took: Duration,
    pub stall: hotpair::stall::Stall,
    pub total: Duration,
    pub sha256: String,
}

/// A client container on the set's network (`docker run -d --name … --network
/// … CLIENT_ARGS… curl-args`: `client_args` give the image and whatever makes
/// curl its program) downloads [`FILE`] from the service address at
/// [`RATE`] into `outdir`; `stop` runs once it holds [`STOP_AT`] bytes. Then
/// the download must be complete (curl's exit 0, 200, every byte) with the
/// file's SHA-256; the owner `n2` must report the address `promoted` with one
/// takeover of one connection, and serve a new client.
pub fn download_across_stop(
    set: &mut DockerSet,
    client_args: &[String],
    www: &Path,
    n2: &str,
    what: &str,
    stop: impl FnOnce(),
) -> Download {
    let test = set.test.clone();
    let net = set.network.clone().expect("network made");
    let service = format!("{}.200", set.net24);
    let outdir = set.dir.path().join("out");
    std::fs::create_dir_all(&outdir).expect("creating the output directory");
    let client = set.container("client");
    let dl = outdir.join("dl.bin");
    let volume = format!("{}:/out", outdir.display());
    let args = curl_run(
        &client,
        &net,
        &["-d", "-v", &volume],
        client_args,
        &[
            "--max-time",
            "60",
            "--limit-rate",
            RATE,
            "-o",
            "/out/dl.bin",
            "-w",
            "%{http_code} %{size_download}\n",
            &format!("http://{service}/{FILE}"),
        ],
    );
    let start = Instant::now();
    docker_ok(&args, Duration::from_secs(60));
    let sampler = Sampler::start(dl.clone(), start, Duration::from_millis(5));
    while sampler.latest() < STOP_AT {
        let running = docker_ok(
            &["inspect", "-f", "{{.State.Running}}", &client],
            Duration::from_secs(20),
        );
        assert!(
            running == "true" || sampler.latest() >= STOP_AT,
            "[{test}] curl ended before the primary was stopped ({} bytes)\n{}",
            sampler.latest(),
            set.logs(&client)
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "[{test}] {STOP_AT} bytes did not arrive within 30 s ({} did)",
            sampler.latest()
        );
        thread::sleep(Duration::from_millis(5));
    }
    let at_stop = sampler.latest();
    let stopped = Instant::now();
    stop();
    let stop_took = stopped.elapsed();
    let code = docker_ok(&["wait", &client], Duration::from_secs(90));
    let done = Instant::now();
    let samples = sampler.finish();
    let got = std::fs::metadata(&dl).map_or(0, |m| m.len());
    let curl_said = set.logs(&client);
    let stall = hotpair::stall::measure(
        &samples,
        stopped - start,
        done - start,
        got == FILE_BYTES as u64,
    );
    report(&format!(
        "[{test}] {what} at {:.2} s with {:.1} MiB in (the command took {:.0} ms); \
         curl exit {code}, {got} bytes, total {:.2} s; longest stall after it {:.0} ms \
         (before {:.0} ms)",
        (stopped - start).as_secs_f64(),
        at_stop as f64 / 1048576.0,
        stop_took.as_secs_f64() * 1e3,
        (done - start).as_secs_f64(),
        stall.after_kill.as_secs_f64() * 1e3,
        stall.before_kill.as_secs_f64() * 1e3,
    ));
    assert!(
        at_stop < FILE_BYTES as u64,
        "[{test}] the download had finished before the stop"
    );
    assert_eq!(code, "0", "[{test}] curl failed: {curl_said}");
    assert!(
        curl_said.trim() == format!("200 {FILE_BYTES}"),
        "[{test}] curl reported {curl_said:?}"
    );
    assert_eq!(got, FILE_BYTES as u64, "[{test}] received {got} bytes");
    let want = sha256sum(&www.join(FILE));
    let have = sha256sum(&dl);
    assert_eq!(have, want, "[{test}] the download differs from the file");
    report(&format!("[{test}] sha256 {have} (both)"));

    // The owner took the connection over and serves alone…
    let s2 = set.status(n2);
    let a = &s2["addresses"][0];
    assert_eq!(a["state"], "promoted", "[{test}] {n2} after the stop: {s2}");
    assert_eq!(a["takeovers"], 1, "[{test}] {n2} after the stop: {s2}");
    assert_eq!(a["connections"]["promoted"], 1, "[{test}] {n2}: {s2}");
    // …and a new client too.
    let probe = set.container("probe");
    let url = format!("http://{service}/index.html");
    let args = curl_run(&probe, &net, &[], client_args, &["--max-time", "20", &url]);
    let out = docker(&args, Duration::from_secs(60));
    assert_success(&out, &format!("[{test}] a new request after the takeover"));
    assert_eq!(out.stdout, INDEX, "[{test}] index.html after the takeover");
    Download {
        at_stop,
        stop_after: stopped - start,
        stop_took,
        stall,
        total: done - start,
        sha256: have,
    }
}

/// `docker run` of the curl client: container `name` on `net`, docker's
/// `opts` (detach, volumes), the image and its curl entrypoint
/// (`client_args`), then `curl -sS --fail` with `curl` after.
fn curl_run(
    name: &str,
    net: &str,
    opts: &[&str],
    client_args: &[String],
    curl: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = ["run", "--name", name, "--network", net, "--label", LABEL]
        .iter()
        .chain(opts)
        .map(|s| s.to_string())
        .collect();
    args.extend(client_args.iter().cloned());
    args.extend(["-sS", "--fail"].iter().chain(curl).map(|s| s.to_string()));
    args
}
