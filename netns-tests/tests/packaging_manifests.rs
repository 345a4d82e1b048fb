//! The packaging files no test runs end to end here, checked as far as
//! this machine can (no root, no Docker engine needed):
//!
//! - packaging/k8s/hotpair.yaml (no Kubernetes cluster here) and
//!   packaging/compose/docker-compose.yml parse as YAML and say what
//!   their docs say (`packaging/check-manifests.py`: pinned pods,
//!   hostNetwork, NET_ADMIN alone, the tun device, probes, the
//!   PodDisruptionBudget; the compose file's capabilities, healthcheck,
//!   restart policy, read-only configs) — and the checker fails on a file
//!   that breaks one of them;
//! - docker-compose 1.29 accepts the compose file (`config -q`);
//! - packaging/oci/build.sh refuses a binary that needs a newer glibc than
//!   the one it would put in the image.
//!
//! A missing python3-yaml or docker-compose fails the test, naming the
//! package (scripts/test.sh installs both).

use std::process::Command;
use std::time::Duration;

use hotpair_netns_tests::compose::compose_file;
use hotpair_netns_tests::docker::workspace;
use hotpair_netns_tests::{describe, run_with_timeout, TempDir};

fn checker(args: &[&str]) -> std::process::Output {
    let script = workspace().join("packaging/check-manifests.py");
    let out = run_with_timeout(
        Command::new("python3").arg(&script).args(args),
        Duration::from_secs(60),
    );
    assert!(
        out.status.code() != Some(2)
            || !String::from_utf8_lossy(&out.stderr).contains("python3-yaml"),
        "python3-yaml is missing (apt-get install python3-yaml; scripts/test.sh installs it)\n{}",
        describe(&out)
    );
    out
}

#[test]
fn k8s_and_compose_manifests_say_what_their_docs_say() {
    let out = checker(&[]);
    assert!(
        out.status.success(),
        "packaging/check-manifests.py\n{}",
        describe(&out)
    );
}

/// Each mutation of a manifest must make the checker fail, naming it.
#[test]
fn the_manifest_checker_fails_on_a_broken_file() {
    let dir = TempDir::new("packaging-manifests");
    let k8s = std::fs::read_to_string(workspace().join("packaging/k8s/hotpair.yaml"))
        .expect("reading packaging/k8s/hotpair.yaml");
    let compose = std::fs::read_to_string(compose_file()).expect("reading the compose file");
    let cases: [(&str, &str, &str, &str, &str); 5] = [
        (
            "k8s",
            "hostNetwork: true",
            "hostNetwork: false",
            "hostNetwork must be true",
            "hostNetwork",
        ),
        (
            "k8s",
            "maxUnavailable: 1",
            "maxUnavailable: 2",
            "maxUnavailable must be 1",
            "PDB",
        ),
        (
            "k8s",
            "path: /readyz",
            "path: /healthz",
            "readinessProbe must GET /readyz",
            "readiness",
        ),
        (
            "k8s",
            "kubernetes.io/hostname: host-b",
            "kubernetes.io/hostname: host-a",
            "two different hosts",
            "pinning",
        ),
        (
            "compose",
            "  restart: on-failure",
            "  privileged: true\n  restart: on-failure",
            "privileged",
            "privileged",
        ),
    ];
    for (which, from, to, says, what) in cases {
        let (text, flag) = if which == "k8s" {
            (&k8s, "--k8s")
        } else {
            (&compose, "--compose")
        };
        assert!(
            text.contains(from),
            "{what}: the manifest has no {from:?} to change"
        );
        let broken = dir.path().join(format!("{what}.yaml"));
        std::fs::write(&broken, text.replacen(from, to, 1)).expect("writing the broken manifest");
        let out = checker(&[flag, &broken.to_string_lossy()]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: the checker accepted a manifest with {to:?}\n{}",
            describe(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(says),
            "{what}: the checker did not say {says:?}\n{}",
            describe(&out)
        );
    }
}

#[test]
fn docker_compose_accepts_the_compose_file() {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("docker-compose").is_file()));
    assert!(
        found,
        "docker-compose is not installed (apt-get install docker-compose; scripts/test.sh installs it)"
    );
    let file = compose_file();
    let out = run_with_timeout(
        Command::new("docker-compose")
            .arg("-f")
            .arg(&file)
            .args(["-p", "hotpair-config-check", "config", "-q"])
            .env("HOTPAIR_NET", "10.213.9"),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "docker-compose config -q {} (no warnings either)\n{}",
        file.display(),
        describe(&out)
    );
}

/// A copy of a system binary whose newest glibc symbol version is renamed
/// to GLIBC_9.99 (same length: the ELF stays valid) stands for a binary
/// built on a newer system; build.sh must refuse it before any Docker call.
#[test]
fn build_sh_refuses_a_binary_that_needs_a_newer_glibc() {
    let dir = TempDir::new("packaging-glibc");
    let mut bytes = std::fs::read("/usr/bin/cat").expect("reading /usr/bin/cat");
    let pat = b"GLIBC_2.";
    let at = (0..bytes.len().saturating_sub(10))
        .find(|&i| {
            bytes[i..].starts_with(pat)
                && bytes[i + 8..i + 10].iter().all(u8::is_ascii_digit)
                && bytes[i + 10] == 0
        })
        .expect("/usr/bin/cat names no GLIBC_2.NN symbol version");
    bytes[at..at + 10].copy_from_slice(b"GLIBC_9.99");
    let fake = dir.path().join("hotpair");
    std::fs::write(&fake, &bytes).expect("writing the fake binary");
    let mut perms = std::fs::metadata(&fake).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&fake, perms).expect("chmod");
    let script = workspace().join("packaging/oci/build.sh");
    let out = run_with_timeout(
        Command::new("bash")
            .arg(&script)
            .arg("--bin")
            .arg(&fake)
            .args(["--repo", "hotpair-glibc-refused", "--no-latest"]),
        Duration::from_secs(120),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "build.sh accepted it\n{}",
        describe(&out)
    );
    assert!(
        err.contains("GLIBC_9.99") && err.contains("build the binary on this machine"),
        "build.sh did not name the glibc it lacks\n{}",
        describe(&out)
    );
}
