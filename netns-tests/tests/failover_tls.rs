//! HTTPS across the crash of either node (issue 18), with the real binary
//! and a client nobody here wrote: a duplex lab serving HTTPS
//! (`lab up --tls`: port 443, a lab CA, an ECDSA P-256 certificate), curl
//! (OpenSSL) downloading 50 MB at 20 MB/s, the node SIGKILLed at 20 MB in:
//! curl exits 0 (no TLS alert, no record that fails to open), the file's
//! SHA-256 matches, the client's capture holds no RST from the service
//! address.

use hotpair_netns_tests::failover::{self, Victim};

/// /static/ under `logged`: the reply's ciphertext crosses the link.
#[test]
fn https_download_survives_primary_crash() {
    failover::download_tls("fo_tls_primary", Victim::Primary, "logged");
}

#[test]
fn https_download_survives_ingress_crash() {
    failover::download_tls("fo_tls_ingress", Victim::Ingress, "logged");
}

/// /static/ under `static`: the owner seals its own copy of the reply at
/// the sequence number the primary sealed it at.
#[test]
fn https_static_download_survives_primary_crash() {
    failover::download_tls("fo_tls_static", Victim::Primary, "static");
}

/// wrk -c16 over HTTPS (keep-alive TLS connections, static replies the
/// owner seals itself), the primary SIGKILLed at 3 s: no socket error, no
/// non-2xx, no RST.
#[test]
fn https_wrk_load_survives_primary_crash() {
    failover::wrk_load_tls("fo_tls_wrk", Victim::Primary);
}

/// Python `http.client` over `ssl` (the lab CA checked): five requests,
/// the primary SIGKILLed, five more on the same TLS connection.
#[test]
fn https_keepalive_connection_survives_primary_crash() {
    failover::keepalive_tls("fo_tls_keepalive", Victim::Primary);
}

/// A session ticket issued by the primary resumes on the owner after the
/// primary's death (`openssl s_client -sess_out`, SIGKILL n1, then
/// `-sess_in`: "Reused, TLSv1.3"): both nodes seal tickets under the
/// ticket key they share, and the tickets themselves were logged before
/// the client saw them.
#[test]
fn https_session_resumes_on_the_survivor() {
    use std::time::Duration;
    let test = "fo_tls_resume";
    let Some(lab) = failover::duplex_lab_with(test, &["--tls"]) else {
        return;
    };
    let ca = lab.tls_ca().expect("lab up --tls writes tls/ca.pem");
    let tmp = hotpair_netns_tests::TempDir::new(&format!("{test}-sess"));
    let sess = tmp.path().join("session.pem");
    let s_client = |extra: &str| {
        let script = format!(
            "printf 'GET /static/index.html HTTP/1.1\\r\\nHost: hotpair.test\\r\\nConnection: close\\r\\n\\r\\n' \
             | openssl s_client -connect {}:443 -servername hotpair.test -CAfile {} -tls1_3 -ign_eof {extra} 2>&1",
            hotpair_netns_tests::SERVICE,
            ca.display()
        );
        let out = lab.exec_client(&["sh", "-c", &script]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = s_client(&format!("-sess_out {}", sess.display()));
    assert!(
        first.contains("HTTP/1.1 200") && first.contains("New, TLSv1.3"),
        "[{test}] the first connection: a full TLS 1.3 handshake and a 200\n{first}"
    );
    assert!(
        sess.is_file(),
        "[{test}] openssl wrote no session to {}\n{first}",
        sess.display()
    );
    let again = s_client(&format!("-sess_in {}", sess.display()));
    assert!(
        again.contains("Reused, TLSv1.3") && again.contains("HTTP/1.1 200"),
        "[{test}] the ticket did not resume on the primary\n{again}"
    );
    lab.kill(Victim::Primary.node());
    // The owner takes over (heartbeat timeout 500 ms) and serves alone.
    std::thread::sleep(Duration::from_millis(1500));
    let after = s_client(&format!("-sess_in {}", sess.display()));
    assert!(
        after.contains("Reused, TLSv1.3") && after.contains("HTTP/1.1 200"),
        "[{test}] the primary's ticket did not resume on the owner after the kill\n{after}"
    );
    // The owner counted the resumed handshake (status, HTTPS counters).
    let sock = lab.state_dir().join("n2.sock");
    let st = hotpair::admin::query(&sock).expect("n2 answers on its admin socket");
    let tls = st.addresses[0]
        .tls
        .clone()
        .expect("an HTTPS address reports its TLS counters");
    assert!(
        tls.resumed >= 1 && tls.handshakes >= tls.resumed,
        "[{test}] n2's TLS counters after a resumption: {tls:?}"
    );
    hotpair_netns_tests::report(&format!(
        "[{test}] a ticket from n1 resumed on n1, then on n2 after n1's SIGKILL; n2 counts {tls:?}"
    ));
}

/// Bad input on the HTTPS port: plain HTTP and random bytes instead of a
/// ClientHello. Each connection is refused cleanly (an alert, a close),
/// counted as a TLS error; both nodes live on and serve HTTPS after.
#[test]
fn https_bad_input_is_refused_and_counted() {
    use std::time::Duration;
    let test = "fo_tls_bad_input";
    let Some(lab) = failover::duplex_lab_with(test, &["--tls"]) else {
        return;
    };
    let ca = lab.tls_ca().expect("lab up --tls writes tls/ca.pem");
    let ca = ca.to_string_lossy();
    let svc = hotpair_netns_tests::SERVICE;
    // Plain HTTP to the TLS port.
    let plain = lab.exec_client(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        &format!("http://{svc}:443/static/index.html"),
    ]);
    assert!(
        !plain.status.success() || !String::from_utf8_lossy(&plain.stdout).contains("<html"),
        "[{test}] plain HTTP on the HTTPS port was served: {plain:?}"
    );
    // Random bytes, then the connection closed by the node.
    let script = format!(
        "head -c 3000 /dev/urandom | timeout 5 python3 -c \"import socket,sys; s=socket.create_connection(('{svc}',443)); s.sendall(sys.stdin.buffer.read()); s.settimeout(4); print(len(s.recv(100)))\""
    );
    let junk = lab.exec_in("client", &["sh", "-c", &script], Duration::from_secs(10));
    assert!(
        junk.status.success(),
        "[{test}] the node did not answer random bytes with an alert or a close within 4 s: {junk:?}"
    );
    // HTTPS still served, both nodes alive.
    let ok = lab.exec_client(&[
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        "10",
        "--cacert",
        &ca,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://{svc}/static/index.html"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "200",
        "[{test}] HTTPS after the bad input: {ok:?}"
    );
    assert!(
        lab.node_alive("n1") && lab.node_alive("n2"),
        "[{test}] a node died"
    );
    // The primary answered (and counted) the bad connections.
    let st = hotpair::admin::query(&lab.state_dir().join("n1.sock")).expect("n1 answers");
    let tls = st.addresses[0].tls.clone().expect("HTTPS counters");
    assert!(tls.errors >= 2, "[{test}] n1's TLS errors: {tls:?}");
    hotpair_netns_tests::report(&format!(
        "[{test}] plain HTTP and random bytes refused on 443; n1 counts {tls:?}"
    ));
}
