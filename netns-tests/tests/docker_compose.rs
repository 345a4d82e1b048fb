//! packaging/compose/docker-compose.yml as an operator runs it: the image
//! from `packaging/oci/build.sh` (the binary under test), configs from
//! `hotpair pair --mode duplex --metrics 127.0.0.1:9464` in a directory the
//! file mounts read-only, `docker-compose up -d` under a project name of
//! the test's own on a subnet of its own (the file's `HOTPAIR_NET`). Then:
//!
//! 1. both nodes come up with their link and report healthy (the file's
//!    healthcheck: `/healthz`);
//! 2. a client container on the project's network downloads 50 MB from
//!    the service address while the primary's container is killed
//!    (`docker kill`): curl's success, every byte, the file's SHA-256; the
//!    survivor reports the takeover and serves a new request; the killed
//!    container stays down (a `docker kill` by hand is not undone by
//!    `restart: on-failure`);
//! 3. `docker-compose start n1`: it rejoins, primary again;
//! 4. a crash Docker did not ask for (SIGKILL to the node's process from
//!    this host): the restart policy brings n1 back and it rejoins.
//!
//! `docker-compose down -v` runs on every path (`Compose`'s `Drop`, also on
//! panic, after printing the project's logs); the client containers
//! (`DockerSet`) are removed before it. Without a usable Docker engine or
//! docker-compose the test prints `DOCKER TEST SKIPPED: reason`; with `CI`
//! set it fails.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use hotpair_netns_tests::compose::{require_compose, Compose};
use hotpair_netns_tests::docker::{
    build_image, docker_ok, download_across_stop, DockerSet, FILE_BYTES,
};
use hotpair_netns_tests::{describe, report, run_with_timeout};

/// `docker inspect -f FORMAT CONTAINER`.
fn inspect(container: &str, format: &str) -> String {
    docker_ok(
        &["inspect", "-f", format, container],
        Duration::from_secs(20),
    )
}

/// Waits (≤ `limit`) until `cond`; panics with `what` and `logs()` otherwise.
fn wait_for(
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
    logs: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what} (waited {limit:?})\n{}",
            logs()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn docker_compose_pair_primary_killed_mid_download() {
    let test = "docker_compose_pair_primary_killed_mid_download";
    if !require_compose(test) {
        return;
    }
    let t0 = Instant::now();
    let image = build_image(test);
    // Declared first, so dropped last: `down -v` removes the project's
    // network, which the client containers of `set` must have left by then.
    let mut compose = Compose::new(test);
    let mut set = DockerSet::new(test);

    // A subnet no other network has: up on one, else (an overlap) down and
    // the next.
    compose.set_env("HOTPAIR_IMAGE", &image);
    let mut www = None;
    let start = std::process::id() as usize;
    for i in 0..20 {
        let net24 = format!("10.214.{}", (start + i * 11) % 250 + 1);
        set.net24 = net24.clone();
        let _ = std::fs::remove_dir_all(set.dir.path().join("cfg"));
        let (w, cfg) = set.content_and_configs_with(&["--metrics", "127.0.0.1:9464"]);
        compose.set_env("HOTPAIR_NET", &net24);
        compose.set_env("HOTPAIR_PAIR_DIR", &cfg.to_string_lossy());
        compose.set_env("HOTPAIR_WWW", &w.to_string_lossy());
        match compose.up() {
            Ok(()) => {
                www = Some(w);
                break;
            }
            Err(e) if e.contains("overlap") => {
                let down = compose.down();
                assert!(
                    down.status.success(),
                    "[{test}] down after an overlap\n{}",
                    describe(&down)
                );
            }
            Err(e) => panic!("[{test}] docker-compose up -d failed\n{e}"),
        }
    }
    let www =
        www.unwrap_or_else(|| panic!("[{test}] no free subnet in 10.214.0.0/16 after 20 tries"));
    let net24 = set.net24.clone();
    set.adopt_network(&compose.network(), &net24);
    let n1 = compose.container("n1");
    let n2 = compose.container("n2");

    // 1. The pair: link up, roles as configured, both healthy.
    set.wait_link_up(&n1, &n2, |_| compose.logs());
    let s1 = set.status(&n1);
    let s2 = set.status(&n2);
    assert_eq!(s1["addresses"][0]["role"], "primary", "[{test}] n1: {s1}");
    assert_eq!(s2["addresses"][0]["role"], "owner", "[{test}] n2: {s2}");
    let up_in = t0.elapsed();
    wait_for(
        Duration::from_secs(40),
        &format!("[{test}] the healthcheck did not report both nodes healthy"),
        || {
            inspect(&n1, "{{.State.Health.Status}}") == "healthy"
                && inspect(&n2, "{{.State.Health.Status}}") == "healthy"
        },
        || compose.logs(),
    );
    report(&format!(
        "[{test}] compose project {} on {}.0/24: link up at {:.1} s, both healthy at {:.1} s",
        compose.project,
        set.net24,
        up_in.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    ));

    // 2. docker kill of the primary mid-download.
    let client_args = ["--entrypoint", "/usr/bin/curl", &image].map(String::from);
    let d = download_across_stop(
        &mut set,
        &client_args,
        &www,
        &n2,
        "docker kill (SIGKILL) of the primary n1",
        || {
            docker_ok(&["kill", &n1], Duration::from_secs(30));
        },
    );
    assert!(d.at_stop < FILE_BYTES as u64);
    // Given the restart policy a moment to act, were it going to.
    thread::sleep(Duration::from_secs(2));
    assert_eq!(
        inspect(
            &n1,
            "{{.State.Running}} {{.State.ExitCode}} {{.RestartCount}}"
        ),
        "false 137 0",
        "[{test}] n1 after docker kill: restart: on-failure restarted a container stopped by hand"
    );

    // 3. Started again: it rejoins, primary again.
    compose.run_ok(&["start", "n1"], Duration::from_secs(60));
    set.wait_link_up(&n1, &n2, |_| compose.logs());
    wait_for(
        Duration::from_secs(20),
        &format!("[{test}] n1 did not take its primary role back after docker-compose start"),
        || set.status(&n1)["addresses"][0]["role"] == "primary",
        || compose.logs(),
    );

    // 4. A crash Docker did not ask for: the restart policy restarts it.
    let pid = inspect(&n1, "{{.State.Pid}}");
    assert!(
        pid.parse::<u32>().is_ok_and(|p| p > 1),
        "[{test}] n1's pid {pid:?}"
    );
    let out = run_with_timeout(
        Command::new("kill").args(["-KILL", &pid]),
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "[{test}] kill -KILL {pid}\n{}",
        describe(&out)
    );
    let crashed = Instant::now();
    wait_for(
        Duration::from_secs(30),
        &format!("[{test}] restart: on-failure did not bring n1 back after a crash"),
        || inspect(&n1, "{{.State.Running}} {{.RestartCount}}") == "true 1",
        || compose.logs(),
    );
    set.wait_link_up(&n1, &n2, |_| compose.logs());
    report(&format!(
        "[{test}] n1 crashed (SIGKILL from the host), restarted by the policy and rejoined in {:.1} s",
        crashed.elapsed().as_secs_f64()
    ));
    report(&format!(
        "[{test}] passed in {:.1} s (image, compose up, healthy, download across docker kill, \
         start, crash and restart)",
        t0.elapsed().as_secs_f64()
    ));
}
