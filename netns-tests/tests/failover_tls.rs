//! HTTPS across the crash of either node (issue 18), with the real binary
//! and a client nobody here wrote: a duplex lab serving HTTPS
//! (`lab up --tls`: port 443, a lab CA, an ECDSA P-256 certificate), curl
//! (OpenSSL) downloading 50 MB at 20 MB/s, the node SIGKILLed at 20 MB in:
//! curl exits 0 (no TLS alert, no record that fails to open), the file's
//! SHA-256 matches, the client's capture holds no RST from the service
//! address. The dual-role tests do the same on both addresses of a
//! `dual-role --tls` lab, and keep-alive TLS connections to each; the ring
//! test on the three addresses of a `ring --nodes 3 --tls` lab.

use hotpair_netns_tests::capture::Capture;
use hotpair_netns_tests::failover::{self, KeepaliveClient, Victim};
use hotpair_netns_tests::multi;

/// /static/ under `logged`: the reply's ciphertext crosses the link.
#[test]
fn https_download_survives_primary_crash() {
    failover::download_tls("fo_tls_primary", Victim::Primary, "logged");
}

#[test]
fn https_download_survives_owner_crash() {
    failover::download_tls("fo_tls_owner", Victim::Owner, "logged");
}

/// /static/ under `static`: the owner seals its own copy of the reply at
/// the sequence number the primary sealed it at.
#[test]
fn https_static_download_survives_primary_crash() {
    failover::download_tls("fo_tls_static", Victim::Primary, "static");
}

/// /static/ under `static`, the owner SIGKILLed: the primary, which
/// sealed every reply itself all along, claims the address and serves on
/// alone; a 50 MB download and a keep-alive TLS connection's static GETs
/// cross the kill (docs/tls.md).
#[test]
fn https_static_download_and_keepalive_survive_owner_crash() {
    failover::download_and_keepalive_tls("fo_tls_static_owner", Victim::Owner);
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
    let s_client = |extra: &str| hotpair_netns_tests::tls::s_client(&lab, &ca, extra);
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

/// Dual-role over HTTPS (`lab up --mode dual-role --tls`: n1 owns
/// 10.77.0.10 with primary n2, n2 owns 10.77.0.11 with primary n1): curl
/// downloads 50 MB from each address at 10 MB/s, checking the lab CA; n2 is
/// SIGKILLed once both have 10 MiB, so 10.77.0.10 loses its primary (n1
/// promotes its shadows, TLS state included) and 10.77.0.11 its owner (n1
/// claims it). Both downloads byte-exact, no RST from either address.
#[test]
fn https_dual_role_downloads_survive_n2_crash() {
    let test = "fo_tls_dual_dl";
    let Some(lab) = multi::dual_role_tls_lab(test) else {
        return;
    };
    let failures = multi::downloads_survive_kill(&lab, "n2");
    let survivors = lab.check_survivors("n2");
    assert!(
        failures.is_empty() && survivors.is_ok(),
        "[{test}] across the SIGKILL of {}:\n{}\nsurvivors: {survivors:?}",
        lab.describe_node("n2"),
        failures.join("\n")
    );
}

/// Dual-role over HTTPS, keep-alive: one Python `http.client` over `ssl`
/// (the lab CA checked) per address, five requests each, n1 SIGKILLed
/// (10.77.0.10 loses its owner, 10.77.0.11 its primary), five more each on
/// the same TLS connections; every body checked, no RST from either
/// address.
#[test]
fn https_dual_role_keepalive_survives_n1_crash() {
    let test = "fo_tls_dual_keepalive";
    let Some(lab) = multi::dual_role_tls_lab(test) else {
        return;
    };
    let tmp = hotpair_netns_tests::TempDir::new(&format!("{test}-cap"));
    let cap = Capture::start_hosts(&lab, tmp.path(), &lab.ips());
    let mut clients: Vec<KeepaliveClient> = lab
        .ips()
        .iter()
        .map(|ip| KeepaliveClient::start(&lab, ip))
        .collect();
    let kill_epoch = failover::epoch_now();
    let kill = lab.kill("n1");
    for c in &mut clients {
        c.go();
    }
    for (c, ip) in clients.into_iter().zip(lab.ips()) {
        let after = c.finish(kill);
        hotpair_netns_tests::report(&format!(
            "[{test}] {ip}: 5 more requests on the same TLS connection done {:.2} s after \
             SIGKILL {}",
            after.as_secs_f64(),
            lab.describe_node("n1")
        ));
    }
    let segs = cap
        .segments()
        .unwrap_or_else(|e| panic!("[{test}] the client capture: {e}"));
    match multi::check_no_rst(&lab, &segs, kill_epoch) {
        Ok(line) => hotpair_netns_tests::report(&format!("[{test}] {line}")),
        Err(e) => panic!("[{test}] {e}"),
    }
    if let Err(e) = lab.check_survivors("n1") {
        panic!("[{test}] {e}");
    }
}

/// A ring over HTTPS (`lab up --mode ring --nodes 3 --tls`: n1 owns
/// 10.77.0.10 with primary n2, n2 owns .11 with primary n3, n3 owns .12
/// with primary n1): curl downloads 50 MB from each address at 10 MB/s,
/// checking the lab CA; n2 is SIGKILLed once each has 10 MiB, so .10 loses
/// its primary (n1 promotes its shadows, TLS state included), .11 its owner
/// (n3 claims it), and .12 is not n2's business. Every download byte-exact,
/// no RST from any address. Then the per-port metrics: each download was
/// one HTTPS connection and one request, so on the node serving each
/// address at the end its `port="443",scheme="https"` series rose by one
/// (.10: the promoted connection and the request its takeover finished)
/// and its `port="80"` ones did not move.
#[test]
fn https_ring_downloads_survive_a_primary_crash() {
    let test = "fo_tls_ring_dl";
    let Some(lab) = multi::ring_tls_lab(test, 3) else {
        return;
    };
    let victim = "n2";
    let servers: Vec<(String, u32)> = lab
        .addresses
        .iter()
        .map(|a| {
            let node = a.server_after(victim);
            (a.ip.clone(), node[1..].parse().expect("nodes are n<i>"))
        })
        .collect();
    let before: Vec<[f64; 4]> = servers
        .iter()
        .map(|(ip, i)| port_counts(&lab.scrape_metrics(*i), ip))
        .collect();
    let failures = multi::downloads_survive_kill(&lab, victim);
    let survivors = lab.check_survivors(victim);
    assert!(
        failures.is_empty() && survivors.is_ok(),
        "[{test}] across the SIGKILL of {}:\n{}\nsurvivors: {survivors:?}",
        lab.describe_node(victim),
        failures.join("\n")
    );
    for ((ip, i), before) in servers.iter().zip(before) {
        let text = lab.scrape_metrics(*i);
        let after = port_counts(&text, ip);
        let delta: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        hotpair_netns_tests::report(&format!(
            "[{test}] {ip} on n{i}: +{} HTTPS connections, +{} HTTPS requests, +{} HTTP \
             connections, +{} HTTP requests",
            delta[0], delta[1], delta[2], delta[3]
        ));
        assert_eq!(
            delta,
            [1.0, 1.0, 0.0, 0.0],
            "[{test}] {ip} on n{i}: one HTTPS download (connections, requests on 443, then on \
             80)\n{text}"
        );
    }
}

/// `[https connections, https requests, http connections, http requests]`
/// of address `ip` in a node's metrics text (the lab's ports, 443 and 80).
fn port_counts(text: &str, ip: &str) -> [f64; 4] {
    let get = |family: &str, port: u16, scheme: &str| -> f64 {
        let series = format!("{family}{{address=\"{ip}\",port=\"{port}\",scheme=\"{scheme}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sample {series}in\n{text}"))
    };
    [
        get("hotpair_port_connections_total", 443, "https"),
        get("hotpair_port_requests_total", 443, "https"),
        get("hotpair_port_connections_total", 80, "http"),
        get("hotpair_port_requests_total", 80, "http"),
    ]
}
