//! A duplex pair as two Docker containers of the OCI image
//! (packaging/oci/), no network namespaces of our own: the image built by
//! `packaging/oci/build.sh` from the binary under test, a user-defined
//! Docker network (internal: no route out) with a unique name and subnet,
//! configs written by `hotpair pair --mode duplex`, the two nodes with
//! `--cap-add NET_ADMIN --device /dev/net/tun` (the entrypoint bridges eth0
//! and the TAP), and a client container downloading 50 MB from the service
//! address with curl while the primary's container is killed (`docker
//! kill`: SIGKILL) or stopped (`docker stop`: SIGTERM, the planned
//! switchover). The download must end with curl's success and the file's
//! SHA-256, and the survivor must report the takeover and serve a new
//! request.
//!
//! Everything made here (containers, network, files) carries the test's
//! unique name and is removed on every path (`DockerSet`'s `Drop`, also on
//! panic, after printing the containers' logs). The image is kept: it is
//! named by a digest of what went into it (`hotpair-test:<key>`), so the
//! next run with the same binary skips the build (images of it older than
//! 2 h are pruned). Without a usable Docker engine the test prints `DOCKER
//! TEST SKIPPED: reason`; with `CI` set it fails.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hotpair_netns_tests::docker::{
    build_image, docker, docker_ok, download_across_stop, require_docker, DockerSet, LABEL,
};
use hotpair_netns_tests::report;

/// One test at a time: each runs a pair, a client and a 20 MB/s download.
static SERIAL: Mutex<()> = Mutex::new(());

/// How the primary's container is ended mid-download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// `docker kill`: SIGKILL, a crash; the owner sees the link reset.
    Kill,
    /// `docker stop`: SIGTERM; the node sends Leaving and exits.
    Stop,
}

fn run(test: &str, end: End, net_given: bool) {
    if !require_docker(test) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let image = build_image(test);
    let mut set = DockerSet::new(test);
    let net = set.create_network();
    let (www, cfg) = set.content_and_configs();

    // The nodes: n1 the primary (answers the client), n2 owns the address.
    let mut nodes = Vec::new();
    for i in 1..=2 {
        let c = set.container(&format!("n{i}"));
        let addr = format!("{}.1{i}", set.net24);
        let mut args: Vec<String> = ["run", "-d", "--name", &c].map(String::from).to_vec();
        if net_given {
            // A stand-in for a machine given the LAN (docs/operations.md,
            // step 2): a container whose network namespace has the bridge,
            // eth0 in it with the address, and the TAP; the node runs in
            // that namespace (`--network container:…`, as `--network
            // host` on such a machine).
            let host = set.container(&format!("host{i}"));
            let script = format!(
                "set -e; read -r mac < /sys/class/net/eth0/address; \
                 ip link add br0 type bridge forward_delay 0; ip link set br0 address \"$mac\"; \
                 ip link set eth0 master br0; ip -4 addr flush dev eth0; \
                 ip addr add {addr}/24 dev br0; ip tuntap add dev hotpair0 mode tap vnet_hdr; \
                 ip link set hotpair0 master br0 up; ip link set br0 up; exec sleep infinity"
            );
            docker_ok(
                &[
                    "run",
                    "-d",
                    "--name",
                    &host,
                    "--network",
                    &net,
                    "--ip",
                    &addr,
                    "--cap-add",
                    "NET_ADMIN",
                    "--device",
                    "/dev/net/tun",
                    "--label",
                    LABEL,
                    "--entrypoint",
                    "/bin/sh",
                    &image,
                    "-c",
                    &script,
                ],
                Duration::from_secs(60),
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while !docker(
                &[
                    "exec",
                    &host,
                    "/bin/sh",
                    "-c",
                    "test -e /sys/class/net/hotpair0/master",
                ],
                Duration::from_secs(20),
            )
            .status
            .success()
            {
                assert!(
                    Instant::now() < deadline,
                    "[{test}] {host} did not make its bridge\n{}",
                    set.logs(&host)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            args.extend(["--network".to_owned(), format!("container:{host}")]);
        } else {
            args.extend(
                [
                    "--hostname",
                    &format!("n{i}"),
                    "--network",
                    &net,
                    "--ip",
                    &addr,
                ]
                .map(String::from),
            );
        }
        args.extend(
            [
                "--cap-add",
                "NET_ADMIN",
                "--device",
                "/dev/net/tun",
                "--label",
                LABEL,
                "-v",
                &format!(
                    "{}:/etc/hotpair/node.toml:ro",
                    cfg.join(format!("n{i}.toml")).display()
                ),
                "-v",
                &format!("{}:/srv/www:ro", www.display()),
                &image,
            ]
            .map(String::from),
        );
        docker_ok(&args, Duration::from_secs(60));
        nodes.push(c);
    }
    let (n1, n2) = (nodes[0].clone(), nodes[1].clone());
    set.wait_link_up(&n1, &n2, |c| set.logs(c));
    if net_given {
        let log = set.logs(&n1);
        assert!(
            log.contains("is in bridge br0 already: network left as it is"),
            "[{test}] the entrypoint did not leave the given network alone\n{log}"
        );
    }
    let s1 = set.status(&n1);
    let s2 = set.status(&n2);
    assert_eq!(s1["addresses"][0]["role"], "primary", "[{test}] n1: {s1}");
    assert_eq!(s2["addresses"][0]["role"], "owner", "[{test}] n2: {s2}");
    report(&format!(
        "[{test}] pair up on {net} ({}.0/24, service {}.200) in {:.1} s",
        set.net24,
        set.net24,
        t0.elapsed().as_secs_f64()
    ));

    // The client: curl from the same image, in a third container.
    let client_args = ["--entrypoint", "/usr/bin/curl", &image].map(String::from);
    let what = match end {
        End::Kill => "docker kill (SIGKILL) of the primary",
        End::Stop => "docker stop (SIGTERM) of the primary",
    };
    let d = download_across_stop(&mut set, &client_args, &www, &n2, what, || {
        match end {
            End::Kill => docker_ok(&["kill", &n1], Duration::from_secs(30)),
            End::Stop => docker_ok(&["stop", "-t", "10", &n1], Duration::from_secs(30)),
        };
    });

    // The primary is gone: killed, or exited cleanly after Leaving.
    let n1_state = docker_ok(
        &[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.ExitCode}}",
            &n1,
        ],
        Duration::from_secs(20),
    );
    match end {
        End::Kill => assert_eq!(n1_state, "false 137", "[{test}] n1 after docker kill"),
        End::Stop => {
            assert_eq!(
                n1_state,
                "false 0",
                "[{test}] n1 after docker stop\n{}",
                set.logs(&n1)
            );
            assert!(
                d.stop_took < Duration::from_secs(5),
                "[{test}] docker stop took {:?}: the node did not exit on SIGTERM",
                d.stop_took
            );
            let n2_logs = set.logs(&n2);
            assert!(
                n2_logs.contains("replication peer leaving (planned stop)"),
                "[{test}] n2 did not hear Leaving\n{n2_logs}"
            );
        }
    }
    report(&format!(
        "[{test}] passed in {:.1} s (image, network, pair, download, checks)",
        t0.elapsed().as_secs_f64()
    ));
}

/// The primary's container is killed mid-download: a crash.
#[test]
fn docker_pair_primary_killed_mid_download() {
    run("docker_pair_primary_killed_mid_download", End::Kill, false);
}

/// The primary's container is stopped mid-download (`docker stop`): the
/// node hands the connection to its peer (Leaving) and exits 0.
#[test]
fn docker_pair_primary_stopped_mid_download() {
    run("docker_pair_primary_stopped_mid_download", End::Stop, false);
}

/// As on two machines given the LAN beforehand, with `--network host`:
/// each node's container joins a network namespace that has the bridge and
/// the TAP already; the entrypoint leaves it alone. The primary's container
/// is killed mid-download.
#[test]
fn docker_pair_network_given_primary_killed() {
    run("docker_pair_network_given_primary_killed", End::Kill, true);
}
