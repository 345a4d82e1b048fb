//! A duplex pair as two Docker containers (packaging/oci/), no network
//! namespaces of our own: the image built by `packaging/oci/build.sh` from
//! the binary under test, a user-defined Docker network (internal: no route
//! out) with a unique name and subnet, configs written by `hotpair pair
//! --mode duplex`, the two nodes with `--cap-add NET_ADMIN --device
//! /dev/net/tun` (the entrypoint bridges eth0 and the TAP), and a client
//! container downloading 50 MB from the service address with curl while the
//! primary's container is killed (`docker kill`: SIGKILL) or stopped
//! (`docker stop`: SIGTERM, the planned switchover). The download must end
//! with curl's success and the file's SHA-256, and the survivor must report
//! the takeover and serve a new request.
//!
//! Everything made here (containers, network, files) carries the test's
//! unique name and is removed on every path (a `Drop` guard, also on panic,
//! after printing the containers' logs). The image is kept: it is named by
//! a digest of what went into it (`hotpair-test:<key>`), so the next run
//! with the same binary skips the build. Without a usable Docker engine the
//! test prints `DOCKER TEST SKIPPED: reason`; with `CI` set it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use hotpair::stall::Sampler;
use hotpair_netns_tests::{
    assert_success, describe, hotpair_bin, random_bytes, report, run_with_timeout, sha256sum,
    TempDir,
};

/// The file downloaded, and its size.
const FILE: &str = "50m.bin";
const FILE_BYTES: usize = 50 * 1024 * 1024;
/// curl's rate limit: the download takes ~2.5 s, so the stop lands mid-reply.
const RATE: &str = "20M";
/// The primary is stopped once the client holds this much.
const STOP_AT: u64 = 15 * 1024 * 1024;
/// Image repository for test builds (kept apart from a user's `hotpair:latest`).
const REPO: &str = "hotpair-test";

/// One test at a time: each runs a pair, a client and a 20 MB/s download.
static SERIAL: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How the primary's container is ended mid-download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// `docker kill`: SIGKILL, a crash; the owner sees the link reset.
    Kill,
    /// `docker stop`: SIGTERM; the node sends Leaving and exits.
    Stop,
}

fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Whether a Docker engine can run this test; otherwise a loud skip, or a
/// panic under CI.
fn require_docker(test: &str) -> bool {
    let reason = docker_unusable();
    let Some(reason) = reason else { return true };
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
fn docker(args: &[&str], timeout: Duration) -> Output {
    run_with_timeout(Command::new("docker").args(args), timeout)
}

#[track_caller]
fn docker_ok(args: &[&str], timeout: Duration) -> String {
    let out = docker(args, timeout);
    assert_success(&out, &format!("docker {}", args.join(" ")));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The workspace root (packaging/ lives there).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("netns-tests lives inside the workspace")
        .to_owned()
}

/// `packaging/oci/build.sh` on the binary under test; the image reference.
fn build_image(test: &str) -> String {
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
struct Pair {
    test: String,
    /// `hotpair-t<pid>-<n>`: every container and the network are named after it.
    name: String,
    network: Option<String>,
    containers: Vec<String>,
    /// The subnet's first three octets, e.g. "10.213.17".
    net24: String,
    dir: TempDir,
}

impl Pair {
    fn new(test: &str) -> Pair {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("hotpair-t{}-{n}", std::process::id());
        Pair {
            test: test.to_owned(),
            dir: TempDir::new(&format!("docker-{test}")),
            name,
            network: None,
            containers: Vec::new(),
            net24: String::new(),
        }
    }

    /// A user-defined bridge network, internal (no route beyond it), with a
    /// free /24 of 10.213.0.0/16; Docker assigns from its lower half only,
    /// so .200 (the service address) is never a container's.
    fn create_network(&mut self) {
        let net = self.name.clone();
        let start = std::process::id() as usize;
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
                    "org.hotpair.test=docker_pair",
                    &net,
                ],
                Duration::from_secs(60),
            );
            if out.status.success() {
                self.network = Some(net);
                self.net24 = net24;
                return;
            }
            last = describe(&out);
            if !last.contains("overlap") {
                break;
            }
        }
        panic!("[{}] docker network create {net} failed\n{last}", self.test);
    }

    fn container(&mut self, role: &str) -> String {
        let c = format!("{}-{role}", self.name);
        self.containers.push(c.clone());
        c
    }

    /// `hotpair status --json` of a node, asked inside its container.
    fn status(&self, container: &str) -> serde_json::Value {
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

    fn logs(&self, container: &str) -> String {
        let out = docker(&["logs", container], Duration::from_secs(20));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if thread::panicking() {
            for c in &self.containers {
                let out = Command::new("docker")
                    .args(["logs", "--tail", "40", c])
                    .stdin(Stdio::null())
                    .output();
                if let Ok(out) = out {
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
            let gone = Command::new("docker")
                .args(["rm", "-f", "-v", c])
                .stdin(Stdio::null())
                .output();
            match gone {
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
        if let Some(net) = &self.network {
            let gone = Command::new("docker")
                .args(["network", "rm", net])
                .stdin(Stdio::null())
                .output();
            if !gone.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!(
                    "[{}] WARNING: docker network rm {net} failed: {gone:?}",
                    self.test
                );
            }
        }
    }
}

/// Whether a node's status shows its one replication peer up.
fn link_up(st: &serde_json::Value) -> bool {
    st["peers"]
        .as_array()
        .is_some_and(|p| p.len() == 1 && p[0]["link_up"] == true)
}

fn run(test: &str, end: End) {
    if !require_docker(test) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let image = build_image(test);
    let mut pair = Pair::new(test);
    pair.create_network();
    let net = pair.network.clone().expect("network made");
    let (ip1, ip2, service) = (
        format!("{}.11", pair.net24),
        format!("{}.12", pair.net24),
        format!("{}.200", pair.net24),
    );

    // Content and configs, as an operator would make them.
    let dir = pair.dir.path().to_owned();
    let www = dir.join("www");
    let cfg = dir.join("cfg");
    let outdir = dir.join("out");
    for d in [&www, &outdir] {
        std::fs::create_dir_all(d).expect("creating a test directory");
    }
    std::fs::write(www.join(FILE), random_bytes(FILE_BYTES)).expect("writing the file");
    std::fs::write(www.join("index.html"), b"hotpair in a container\n").expect("index");
    let out = run_with_timeout(
        Command::new(hotpair_bin()).args([
            "pair",
            "--mode",
            "duplex",
            "--address",
            &service,
            "--link",
            &format!("{ip1},{ip2}"),
            "--docroot",
            "/srv/www",
            "--out",
            &cfg.to_string_lossy(),
        ]),
        Duration::from_secs(30),
    );
    assert_success(&out, &format!("[{test}] hotpair pair"));

    // The nodes: n1 the primary (answers the client), n2 owns the address.
    let mut nodes = Vec::new();
    for (i, ip) in [(1, &ip1), (2, &ip2)] {
        let c = pair.container(&format!("n{i}"));
        let config = format!(
            "{}:/etc/hotpair/node.toml:ro",
            cfg.join(format!("n{i}.toml")).display()
        );
        let docroot = format!("{}:/srv/www:ro", www.display());
        docker_ok(
            &[
                "run",
                "-d",
                "--name",
                &c,
                "--hostname",
                &format!("n{i}"),
                "--network",
                &net,
                "--ip",
                ip,
                "--cap-add",
                "NET_ADMIN",
                "--device",
                "/dev/net/tun",
                "--label",
                "org.hotpair.test=docker_pair",
                "-e",
                "RUST_LOG=info",
                "-v",
                &config,
                "-v",
                &docroot,
                &image,
            ],
            Duration::from_secs(60),
        );
        nodes.push(c);
    }
    let (n1, n2) = (nodes[0].clone(), nodes[1].clone());

    // Both nodes up, the link between them secured and up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = [&n1, &n2].iter().all(|c| {
            let out = docker(
                &["exec", c, "hotpair", "status", "--json"],
                Duration::from_secs(20),
            );
            out.status.success()
                && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    .is_ok_and(|s| link_up(&s))
        });
        if up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "[{test}] the pair's replication link was not up within 60 s\n--- n1:\n{}\n--- n2:\n{}",
            pair.logs(&n1),
            pair.logs(&n2)
        );
        thread::sleep(Duration::from_millis(200));
    }
    let s1 = pair.status(&n1);
    let s2 = pair.status(&n2);
    assert_eq!(s1["addresses"][0]["role"], "primary", "[{test}] n1: {s1}");
    assert_eq!(s2["addresses"][0]["role"], "owner", "[{test}] n2: {s2}");
    report(&format!(
        "[{test}] pair up on {net} ({}.0/24, service {service}) in {:.1} s",
        pair.net24,
        t0.elapsed().as_secs_f64()
    ));

    // The client: curl in a third container, writing into a host directory.
    let client = pair.container("client");
    let u = format!("http://{service}/{FILE}");
    let out_mount = format!("{}:/out", outdir.display());
    let dl = outdir.join("dl.bin");
    let start = Instant::now();
    docker_ok(
        &[
            "run",
            "-d",
            "--name",
            &client,
            "--network",
            &net,
            "--label",
            "org.hotpair.test=docker_pair",
            "-v",
            &out_mount,
            "--entrypoint",
            "/usr/bin/curl",
            &image,
            "-sS",
            "--fail",
            "--max-time",
            "60",
            "--limit-rate",
            RATE,
            "-o",
            "/out/dl.bin",
            "-w",
            "%{http_code} %{size_download}\n",
            &u,
        ],
        Duration::from_secs(60),
    );
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
            pair.logs(&client)
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
    match end {
        End::Kill => docker_ok(&["kill", &n1], Duration::from_secs(30)),
        End::Stop => docker_ok(&["stop", "-t", "10", &n1], Duration::from_secs(30)),
    };
    let stop_took = stopped.elapsed();
    let code = docker_ok(&["wait", &client], Duration::from_secs(90));
    let done = Instant::now();
    let samples = sampler.finish();
    let got = std::fs::metadata(&dl).map_or(0, |m| m.len());
    let curl_said = pair.logs(&client);
    let stall = hotpair::stall::measure(
        &samples,
        stopped - start,
        done - start,
        got == FILE_BYTES as u64,
    );
    let how = match end {
        End::Kill => "docker kill (SIGKILL)",
        End::Stop => "docker stop (SIGTERM)",
    };
    report(&format!(
        "[{test}] {how} of the primary at {:.2} s with {:.1} MiB in (the command took {:.0} ms); \
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

    // The primary is gone (killed, or exited cleanly after Leaving); the
    // owner took the connection over and serves alone.
    let n1_state = docker_ok(
        &[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.ExitCode}}",
            &n1,
        ],
        Duration::from_secs(20),
    );
    let n1_logs = pair.logs(&n1);
    let n2_logs = pair.logs(&n2);
    match end {
        End::Kill => assert_eq!(n1_state, "false 137", "[{test}] n1 after docker kill"),
        End::Stop => {
            assert_eq!(
                n1_state, "false 0",
                "[{test}] n1 after docker stop\n{n1_logs}"
            );
            assert!(
                stop_took < Duration::from_secs(5),
                "[{test}] docker stop took {stop_took:?}: the node did not exit on SIGTERM"
            );
            assert!(
                n2_logs.contains("replication peer leaving (planned stop)"),
                "[{test}] n2 did not hear Leaving\n{n2_logs}"
            );
        }
    }
    let s2 = pair.status(&n2);
    let a = &s2["addresses"][0];
    assert_eq!(a["state"], "promoted", "[{test}] n2 after the stop: {s2}");
    assert_eq!(a["takeovers"], 1, "[{test}] n2 after the stop: {s2}");
    assert_eq!(a["connections"]["promoted"], 1, "[{test}] n2: {s2}");

    // And a new client is served by the survivor.
    let probe = pair.container("probe");
    let out = docker(
        &[
            "run",
            "--name",
            &probe,
            "--network",
            &net,
            "--label",
            "org.hotpair.test=docker_pair",
            "--entrypoint",
            "/usr/bin/curl",
            &image,
            "-sS",
            "--fail",
            "--max-time",
            "20",
            &format!("http://{service}/index.html"),
        ],
        Duration::from_secs(60),
    );
    assert_success(&out, &format!("[{test}] a new request after the takeover"));
    assert_eq!(out.stdout, b"hotpair in a container\n");
    report(&format!(
        "[{test}] passed in {:.1} s (image, network, pair, download, checks)",
        t0.elapsed().as_secs_f64()
    ));
}

/// The primary's container is killed mid-download: a crash.
#[test]
fn docker_pair_primary_killed_mid_download() {
    run("docker_pair_primary_killed_mid_download", End::Kill);
}

/// The primary's container is stopped mid-download (`docker stop`): the
/// node hands the connection to its peer (Leaving) and exits 0.
#[test]
fn docker_pair_primary_stopped_mid_download() {
    run("docker_pair_primary_stopped_mid_download", End::Stop);
}
