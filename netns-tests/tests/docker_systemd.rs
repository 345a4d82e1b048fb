//! The systemd unit (packaging/systemd/hotpair.service) run for real, with
//! its sandbox, by systemd: a duplex pair as two Docker containers that
//! boot systemd as PID 1 with this machine's /usr (read-only; systemd,
//! systemd-networkd, ip and curl come from there) and an /etc of the
//! test's own, where systemd-networkd makes the bridge br0 (eth0 and the
//! TAP of packaging/systemd/hotpair0.netdev and .network) and the unit,
//! enabled, runs the binary under test. A client container downloads 50 MB
//! from the service address while `systemctl stop hotpair` stops the
//! primary (SIGTERM: Leaving, the owner takes over at once). Checked: the
//! unit's --check and start, the node's process sandbox (only
//! CAP_NET_ADMIN, no_new_privs, a seccomp filter), the download byte-exact,
//! the unit stopped with result `success`, the owner's takeover and a new
//! request served.
//!
//! Needs Docker and systemd on this machine (/usr/lib/systemd); the
//! containers get CAP_SYS_ADMIN and no seccomp profile so systemd can set
//! up the units' sandboxes. Everything made here is removed on every path
//! (`DockerSet`). Skipped loudly without Docker or systemd; under CI a
//! skip is a failure.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hotpair_netns_tests::docker::{
    docker, docker_ok, download_across_stop, require_docker, skip, workspace, DockerSet, LABEL,
};
use hotpair_netns_tests::{assert_success, hotpair_bin, report, run_with_timeout};

/// The host's /usr parts the containers see (read-only).
const USR: [&str; 5] = ["bin", "sbin", "lib", "lib64", "share"];

fn usr_mounts() -> Vec<String> {
    USR.iter()
        .filter(|d| Path::new("/usr").join(d).is_dir())
        .flat_map(|d| ["-v".to_owned(), format!("/usr/{d}:/usr/{d}:ro")])
        .collect()
}

/// The skeleton root file system: merged-/usr symlinks, a minimal /etc with
/// the unit and systemd-networkd enabled and the bridge's files; imported
/// as a temporary image.
fn skeleton(set: &mut DockerSet) -> String {
    let root = set.dir.path().join("rootfs");
    let d = |p: &str| std::fs::create_dir_all(root.join(p)).expect("creating the skeleton");
    for p in [
        "etc/systemd/system/multi-user.target.wants",
        "etc/systemd/system/network-online.target.wants",
        "etc/systemd/network",
        "etc/hotpair",
        "run",
        "tmp",
        "var/tmp",
        "var/lib",
        "var/log",
        "root",
        "proc",
        "sys",
        "dev",
        "srv/www",
        "usr/local/bin",
    ] {
        d(p);
    }
    for u in USR {
        d(&format!("usr/{u}"));
    }
    let link = |target: &str, at: &str| {
        std::os::unix::fs::symlink(target, root.join(at)).expect("a skeleton symlink")
    };
    link("usr/bin", "bin");
    link("usr/sbin", "sbin");
    link("usr/lib", "lib");
    link("usr/lib64", "lib64");
    link("../usr/lib/os-release", "etc/os-release");
    link(
        "/etc/systemd/system/hotpair.service",
        "etc/systemd/system/multi-user.target.wants/hotpair.service",
    );
    link(
        "/usr/lib/systemd/system/systemd-networkd.service",
        "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
    );
    link(
        "/usr/lib/systemd/system/systemd-networkd-wait-online.service",
        "etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service",
    );
    let w = |p: &str, text: &str| std::fs::write(root.join(p), text).expect("a skeleton file");
    w(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nsystemd-network:x:998:998::/:/usr/sbin/nologin\n",
    );
    w("etc/group", "root:x:0:\nsystemd-network:x:998:\n");
    w("etc/machine-id", "");
    w(
        "etc/nsswitch.conf",
        "hosts: files\npasswd: files\ngroup: files\n",
    );
    // The host's part of "give hotpair the LAN" (docs/operations.md): the
    // bridge and the NIC in it; br0's address is per node (below).
    w(
        "etc/systemd/network/br0.netdev",
        "[NetDev]\nName=br0\nKind=bridge\n\n[Bridge]\nForwardDelaySec=0\n",
    );
    w(
        "etc/systemd/network/eth0.network",
        "[Match]\nName=eth0\n\n[Network]\nBridge=br0\nLinkLocalAddressing=no\n",
    );
    let tag = format!("{}-systemd:test", set.name);
    let out = run_with_timeout(
        Command::new("sh").arg("-c").arg(format!(
            "tar -C '{}' -c . | docker import -c 'ENTRYPOINT [\"/lib/systemd/systemd\"]' - '{tag}'",
            root.display()
        )),
        Duration::from_secs(120),
    );
    assert_success(
        &out,
        &format!("[{}] docker import of the skeleton", set.test),
    );
    set.temporary_image(&tag);
    tag
}

/// `journalctl -u hotpair` in a node's container.
fn journal(c: &str) -> String {
    let out = docker(
        &[
            "exec",
            c,
            "journalctl",
            "-u",
            "hotpair",
            "--no-pager",
            "-o",
            "cat",
        ],
        Duration::from_secs(20),
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One property of the unit in a node's container.
fn show(c: &str, prop: &str) -> String {
    docker_ok(
        &[
            "exec",
            c,
            "systemctl",
            "show",
            "-p",
            prop,
            "--value",
            "hotpair",
        ],
        Duration::from_secs(20),
    )
}

#[test]
fn systemd_unit_pair_primary_stopped_mid_download() {
    let test = "systemd_unit_pair_primary_stopped_mid_download";
    if !require_docker(test) {
        return;
    }
    for p in [
        "/usr/lib/systemd/systemd",
        "/usr/lib/systemd/systemd-networkd",
        "/usr/lib/systemd/system/systemd-networkd-wait-online.service",
    ] {
        if !Path::new(p).exists() {
            skip(
                test,
                &format!("no {p} on this machine (apt-get install systemd)"),
            );
            return;
        }
    }
    let t0 = Instant::now();
    let mut set = DockerSet::new(test);
    let net = set.create_network();
    let (www, cfg) = set.content_and_configs();
    let image = skeleton(&mut set);
    let unit = workspace().join("packaging/systemd/hotpair.service");
    let netdev = workspace().join("packaging/systemd/hotpair0.netdev");
    let network = workspace().join("packaging/systemd/hotpair0.network");
    let bin = hotpair_bin();

    let mut nodes = Vec::new();
    for i in 1..=2 {
        let c = set.container(&format!("n{i}"));
        let addr = format!("{}.1{i}", set.net24);
        let br0 = set.dir.path().join(format!("br0-n{i}.network"));
        std::fs::write(
            &br0,
            format!(
                "[Match]\nName=br0\n\n[Network]\nAddress={addr}/24\nLinkLocalAddressing=no\n\
                 ConfigureWithoutCarrier=yes\n"
            ),
        )
        .expect("writing br0.network");
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &c,
            "--hostname",
            &format!("n{i}"),
            "--network",
            &net,
            "--ip",
            &addr,
            "--label",
            LABEL,
            "--cap-add",
            "SYS_ADMIN",
            "--cap-add",
            "NET_ADMIN",
            "--device",
            "/dev/net/tun",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--cgroupns",
            "host",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(usr_mounts());
        for (from, to) in [
            (bin.as_path(), "/usr/local/bin/hotpair"),
            (unit.as_path(), "/etc/systemd/system/hotpair.service"),
            (netdev.as_path(), "/etc/systemd/network/hotpair0.netdev"),
            (network.as_path(), "/etc/systemd/network/hotpair0.network"),
            (br0.as_path(), "/etc/systemd/network/br0.network"),
            (
                cfg.join(format!("n{i}.toml")).as_path(),
                "/etc/hotpair/node.toml",
            ),
            (www.as_path(), "/srv/www"),
        ] {
            args.push("-v".into());
            args.push(format!("{}:{to}:ro", from.display()));
        }
        args.push(image.clone());
        docker_ok(&args, Duration::from_secs(60));
        nodes.push(c);
    }
    let (n1, n2) = (nodes[0].clone(), nodes[1].clone());
    // Docker gave eth0 the address too; on a host only br0 has it
    // (networkd keeps a foreign address on a bridge port). Taken away
    // first: the pair's link goes over br0, and with Type=notify the unit
    // is not `active` (nor the boot finished) before the node serves.
    for c in [&n1, &n2] {
        docker_ok(
            &["exec", c, "ip", "-4", "addr", "flush", "dev", "eth0"],
            Duration::from_secs(20),
        );
    }
    for c in [&n1, &n2] {
        let out = docker(
            &["exec", c, "systemctl", "is-system-running", "--wait"],
            Duration::from_secs(90),
        );
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let hotpair = docker(
            &["exec", c, "systemctl", "is-active", "hotpair"],
            Duration::from_secs(20),
        );
        let hotpair = String::from_utf8_lossy(&hotpair.stdout).trim().to_owned();
        let failed = docker(
            &["exec", c, "systemctl", "--failed", "--no-pager", "--plain"],
            Duration::from_secs(20),
        );
        report(&format!(
            "[{test}] {c}: systemd {state}, hotpair.service {hotpair}{}",
            if state == "running" {
                String::new()
            } else {
                format!(
                    "; failed units:\n{}",
                    String::from_utf8_lossy(&failed.stdout)
                )
            }
        ));
        assert_eq!(hotpair, "active", "[{test}] {c}\n{}", journal(c));
    }
    // The link up on both; a unit that failed (a sandbox that breaks the
    // node) fails the test at once, with its journal.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(set.link_up(&n1) && set.link_up(&n2)) {
        for c in [&n1, &n2] {
            let state = docker(
                &["exec", c, "systemctl", "is-active", "hotpair"],
                Duration::from_secs(20),
            );
            let state = String::from_utf8_lossy(&state.stdout).trim().to_owned();
            assert!(
                state == "active",
                "[{test}] hotpair.service in {c} is {state}\n{}",
                journal(c)
            );
        }
        assert!(
            Instant::now() < deadline,
            "[{test}] the pair's replication link was not up within 60 s\n--- n1:\n{}\n--- n2:\n{}",
            journal(&n1),
            journal(&n2)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    report(&format!(
        "[{test}] pair up under systemd on {net} in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));

    // Type=notify: `active` only through READY=1 (the node logs it when it
    // says it), STATUS= the addresses' states, the watchdog fed.
    for c in [&n1, &n2] {
        let j = journal(c);
        assert!(
            j.contains("ready: serving every address (READY=1"),
            "[{test}] {c} never said READY=1\n{j}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let text = loop {
            let text = show(c, "StatusText");
            if text.contains("replicated") || Instant::now() >= deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            text.starts_with(&format!("{}: ", if c == &n1 { "n1" } else { "n2" }))
                && text.contains(&format!("{}.200", set.net24))
                && text.contains("replicated"),
            "[{test}] {c}: StatusText={text}"
        );
        assert_eq!(show(c, "Type"), "notify", "[{test}] {c}");
        assert_eq!(show(c, "WatchdogUSec"), "10s", "[{test}] {c}");
        let fed = show(c, "WatchdogTimestampMonotonic");
        std::thread::sleep(Duration::from_secs(6));
        let fed_again = show(c, "WatchdogTimestampMonotonic");
        assert!(
            fed != "0" && fed_again.parse::<u64>().unwrap_or(0) > fed.parse::<u64>().unwrap_or(0),
            "[{test}] {c}: the watchdog was not fed ({fed} then {fed_again})"
        );
        report(&format!(
            "[{test}] {c}: Type=notify, StatusText={text:?}, watchdog fed"
        ));
    }

    // The unit's sandbox, as the kernel sees the node's process.
    let pid = docker_ok(
        &[
            "exec",
            &n1,
            "systemctl",
            "show",
            "-p",
            "MainPID",
            "--value",
            "hotpair",
        ],
        Duration::from_secs(20),
    );
    let status = docker_ok(
        &["exec", &n1, "cat", &format!("/proc/{pid}/status")],
        Duration::from_secs(20),
    );
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    // CAP_NET_ADMIN is capability 12.
    assert_eq!(field("CapEff"), "0000000000001000", "[{test}]\n{status}");
    assert_eq!(field("CapBnd"), "0000000000001000", "[{test}]\n{status}");
    assert_eq!(field("NoNewPrivs"), "1", "[{test}]\n{status}");
    assert_eq!(field("Seccomp"), "2", "[{test}]\n{status}");
    report(&format!(
        "[{test}] node pid {pid}: CapEff {} CapBnd {} NoNewPrivs {} Seccomp {}",
        field("CapEff"),
        field("CapBnd"),
        field("NoNewPrivs"),
        field("Seccomp")
    ));

    // The client: curl from the host's /usr, in a container of the skeleton.
    let mut client_args = usr_mounts();
    client_args.extend(["--entrypoint", "/usr/bin/curl", &image].map(String::from));
    let d = download_across_stop(
        &mut set,
        &client_args,
        &www,
        &n2,
        "systemctl stop hotpair (SIGTERM) on the primary",
        || {
            docker_ok(
                &["exec", &n1, "systemctl", "stop", "hotpair"],
                Duration::from_secs(30),
            );
        },
    );
    let shown = docker_ok(
        &[
            "exec",
            &n1,
            "systemctl",
            "show",
            "-p",
            "ActiveState,Result,ExecMainStatus",
            "hotpair",
        ],
        Duration::from_secs(20),
    );
    let mut lines: Vec<&str> = shown.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["ActiveState=inactive", "ExecMainStatus=0", "Result=success"],
        "[{test}] the unit after systemctl stop\n{}",
        journal(&n1)
    );
    assert!(
        d.stop_took < Duration::from_secs(5),
        "[{test}] systemctl stop took {:?}",
        d.stop_took
    );
    let j2 = journal(&n2);
    assert!(
        j2.contains("replication peer leaving (planned stop)"),
        "[{test}] n2 did not hear Leaving\n{j2}"
    );
    // STATUS= follows the takeover: n2, the owner, serves alone now.
    let text = show(&n2, "StatusText");
    assert!(
        text.contains("promoted"),
        "[{test}] n2's StatusText after the takeover: {text}\n{j2}"
    );
    report(&format!("[{test}] n2 after the stop: StatusText={text:?}"));
    report(&format!(
        "[{test}] passed in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
}
