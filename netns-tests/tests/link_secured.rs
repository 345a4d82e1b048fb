//! The replication link is encrypted and authenticated (Noise KK, keys from
//! `lab up`): a client request crosses the link (the owner node forwards
//! client frames to the primary; `logged` replies come back over it), and
//! a capture of the link shows none of its bytes — while with
//! `--link-plaintext` the same capture shows them (so the check can fail).
//! Once the pair's session is up, a third party connecting to the link's
//! port is refused, and the pair keeps serving.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use hotpair_netns_tests::{assert_success, describe, Background, Lab, TempDir};

const T: Duration = Duration::from_secs(30);

/// tcpdump on n1's link interface (port 7700), listening.
fn capture_link(lab: &Lab, dir: &Path) -> (Background, std::path::PathBuf) {
    let file = dir.join("link.pcap");
    let file_s = file.to_string_lossy().into_owned();
    let mut proc = lab.spawn_in(
        "n1",
        &[
            "tcpdump",
            "--immediate-mode",
            "-i",
            "br-lan",
            "-n",
            "-s",
            "0",
            "-U",
            "-w",
            &file_s,
            "tcp port 7700",
        ],
        dir,
        "tcpdump",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proc.stderr_text().contains("listening on") {
        assert!(!proc.exited(), "tcpdump exited: {}", proc.stderr_text());
        assert!(
            Instant::now() < deadline,
            "tcpdump did not start: {}",
            proc.stderr_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
    (proc, file)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Requests carrying `marker`, captured on the link: whether the capture
/// holds it, and how many link bytes it saw.
fn marker_on_link(lab: &Lab, tag: &str, marker: &str) -> (bool, usize) {
    let dir = TempDir::new(tag);
    let (proc, file) = capture_link(lab, dir.path());
    for i in 0..5 {
        // The request (client frames) crosses the link to the primary,
        // and its logged reply (4 KiB) comes back over it.
        let url = format!("http://10.77.0.10/non-deterministic/{marker}-{i}?size=4096");
        let out = lab.get_status(&url);
        assert_success(&out, "curl through the pair");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "{}",
            describe(&out)
        );
    }
    thread::sleep(Duration::from_millis(300));
    proc.signal("INT");
    let out = proc.wait(Duration::from_secs(10));
    let pcap =
        std::fs::read(&file).unwrap_or_else(|e| panic!("no capture ({e})\n{}", describe(&out)));
    (contains(&pcap, marker.as_bytes()), pcap.len())
}

#[test]
fn the_link_carries_no_client_byte_in_clear_and_refuses_a_second_session() {
    let _serial = hotpair_netns_tests::failover::serial();
    let marker = format!("secret-{:x}", std::process::id() as u64 * 0x9e37_79b9);
    // Secured (the default).
    let Some(lab) = Lab::up_with("link_secured", &["--mode", "duplex"]) else {
        return;
    };
    for n in ["n1", "n2"] {
        let cfg = std::fs::read_to_string(lab.state_dir().join(format!("{n}.toml"))).unwrap();
        assert!(cfg.contains("\n[link]\nprivate_key = \""), "{n}: {cfg}");
        assert!(!cfg.contains("danger_plaintext"), "{n}: {cfg}");
    }
    let (seen, bytes) = marker_on_link(&lab, "link-secured", &marker);
    assert!(
        bytes > 4096 * 5,
        "the capture saw only {bytes} bytes of link traffic"
    );
    assert!(!seen, "a client request's bytes crossed the link in clear");
    // A third party on the LAN connects to the link's port: the session is
    // up, so the port is closed — refused at once; the pair serves on.
    let probe = lab.python(
        "import socket,sys\n\
         s=socket.socket(); s.settimeout(5)\n\
         try:\n    s.connect(('10.77.0.1',7700)); s.sendall(b'x'*64); print('connected')\n\
         except ConnectionRefusedError: print('refused')\n",
        &[] as &[&str],
        T,
    );
    assert_success(&probe, "probe the link port");
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout).trim(),
        "refused",
        "{}",
        describe(&probe)
    );
    assert_eq!(lab.get("/static/1k.bin").len(), 1024);
    assert!(lab.node_alive("n1") && lab.node_alive("n2"));
    drop(lab);

    // Plaintext (`--link-plaintext`): the same capture finds the marker.
    let Some(lab) = Lab::up_with("link_plaintext", &["--mode", "duplex", "--link-plaintext"])
    else {
        return;
    };
    let cfg = std::fs::read_to_string(lab.state_dir().join("n1.toml")).unwrap();
    assert!(cfg.contains("\n[link]\ndanger_plaintext = true\n"), "{cfg}");
    let (seen, _) = marker_on_link(&lab, "link-plaintext", &marker);
    assert!(
        seen,
        "the marker is not in a plaintext link's capture: the check above proves nothing"
    );
}

/// The race the issue found: a host on the LAN connects to the primary's
/// link port just before the real owner node does (here: while the
/// owner restarts, when the primary listens again), and talks first. It
/// must not become the primary's peer: the handshake refuses it, the real
/// node pairs, and the pair serves.
#[test]
fn an_impostor_connecting_first_is_refused_and_the_real_peer_pairs() {
    let _serial = hotpair_netns_tests::failover::serial();
    let Some(lab) = Lab::up_with("link_impostor", &["--mode", "duplex"]) else {
        return;
    };
    let tmp = TempDir::new("link-impostor");
    let _ = lab.kill("n2");
    // The primary listens again once the link is lost; the impostor is
    // first on the port, sends a forged opening, and waits for an answer.
    thread::sleep(Duration::from_millis(500));
    let impostor = lab.spawn_in(
        "client",
        &[
            "python3",
            "-c",
            "import socket,time\n\
             s=socket.socket(); s.settimeout(8)\n\
             s.connect(('10.77.0.1',7700)); print('connected', flush=True)\n\
             m=b'HELLO n2 owner' * 3\n\
             s.sendall(len(m).to_bytes(2, 'big') + m)\n\
             try:\n    d=s.recv(4096); print('closed' if not d else 'answered %d' % len(d), flush=True)\n\
             except socket.timeout: print('held open', flush=True)\n",
        ],
        tmp.path(),
        "impostor",
    );
    let t = Instant::now();
    while !impostor.stdout_text().contains("connected") {
        assert!(
            t.elapsed() < T,
            "the impostor could not connect: {}",
            impostor.stderr_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let out = lab.lab(&["restart", "n2"], T);
    assert_success(
        &out,
        "lab restart n2 (the real peer pairs although the impostor came first)",
    );
    let said = impostor.wait(T);
    let said = String::from_utf8_lossy(&said.stdout).into_owned();
    assert!(
        said.contains("closed"),
        "the impostor's connection was not closed by the primary: {said}"
    );
    let logs = lab.node_logs(200);
    assert!(
        logs.contains("connection refused (authentication)"),
        "the primary did not log the refusal\n{logs}"
    );
    assert_eq!(lab.get("/static/1k.bin").len(), 1024);
    assert!(lab.node_alive("n1") && lab.node_alive("n2"));
}
