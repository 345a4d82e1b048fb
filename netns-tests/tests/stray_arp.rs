//! A LAN host answering the primary's claim probes must not fence it: only
//! the peer's MAC (carried in its `Hello`) counts. A responder in the
//! client namespace answers every ARP probe for the service address from
//! its own MAC (as a misconfigured or hostile host would); the owner is
//! SIGKILLed mid-download; the primary claims the address anyway and the
//! download finishes byte-exact with no RST. (Before, the stray answer
//! fenced the primary and the download never finished.)

use std::time::Duration;

use hotpair_netns_tests::failover::{self, KillAt, Victim};
use hotpair_netns_tests::{report, TempDir, SERVICE};

/// Answers ARP probes (sender 0.0.0.0) for argv[1] on interface argv[2]
/// from this host's MAC, for argv[3] seconds; prints how many it answered.
const RESPONDER: &str = r#"
import socket, struct, sys, time
vip, ifname, secs = socket.inet_aton(sys.argv[1]), sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((ifname, 0))
s.settimeout(0.2)
mine = s.getsockname()[4]
answered, end = 0, time.time() + secs
while time.time() < end:
    try:
        f = s.recv(2048)
    except socket.timeout:
        continue
    if len(f) < 42 or f[20:22] != b"\x00\x01":
        continue
    sha, spa, tpa = f[22:28], f[28:32], f[38:42]
    if spa == b"\0\0\0\0" and tpa == vip:
        arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mine + vip + sha + b"\0\0\0\0"
        s.send(sha + mine + b"\x08\x06" + arp)
        answered += 1
print(answered, flush=True)
"#;

#[test]
fn a_lan_host_answering_claim_probes_does_not_fence_the_primary() {
    let test = "stray_arp";
    let Some(lab) = failover::duplex_lab(test) else {
        return;
    };
    let tmp = TempDir::new(&format!("{test}-responder"));
    let responder = lab.spawn_in(
        "client",
        &["python3", "-c", RESPONDER, SERVICE, "eth0", "20"],
        tmp.path(),
        "responder",
    );
    // Let it bind before the owner dies.
    std::thread::sleep(Duration::from_millis(300));
    let o = failover::download_with_kill(
        &lab,
        Victim::Owner,
        KillAt::Bytes(10 << 20),
        true,
        "the owner killed while a LAN host answers every claim probe",
    );
    let out = responder.wait(Duration::from_secs(30));
    let answered: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        answered >= 1,
        "[{test}] the stray host answered no probe: the test proves nothing\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = lab.node_logs(200);
    assert!(
        logs.contains("that is not the peer's answered a probe"),
        "[{test}] the primary did not log the stray answer\n{logs}"
    );
    report(&format!(
        "[{test}] {answered} probe(s) answered by a LAN host; the primary claimed anyway: \
         stall {} ms, byte-exact, 0 RST",
        o.stall.after_kill.as_millis()
    ));
}
