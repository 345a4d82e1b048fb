//! SIGHUP reloads the docroot and routes without dropping a connection
//! (issue 20), on a duplex lab whose `/static/` runs under `static` (the
//! lab's default; n1 primary, n2 owner, one docroot both nodes serve):
//!
//! - a 50 MB download starts; a file is added to the docroot; n2, then n1
//!   get SIGHUP (the route's content differs between the two nodes for a
//!   moment: `logged` then);
//! - the new file is served from the service address, both nodes report
//!   the same new content generation, `static` is in use again and new
//!   requests are answered as `static` (the route's requests grow, its
//!   static fallbacks do not);
//! - the download finishes byte-exact, the client saw no RST;
//! - a config that does not parse is refused: the node keeps serving and
//!   counts a failed reload; put right, the next SIGHUP applies again;
//! - over HTTPS (`lab up --tls`): renewed certificate files and a rolled
//!   session-ticket master (`hotpair tls new-ticket-key`, the old master
//!   named `previous_ticket_key_file`), SIGHUP to both nodes; new
//!   handshakes present the new certificate, a ticket from before resumes
//!   (under the previous master), a download begun before finishes
//!   byte-exact with no RST; a second reload without the previous master:
//!   the old ticket no longer resumes, one sealed after the roll does.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use hotpair_netns_tests::capture::Capture;
use hotpair_netns_tests::failover::{assert_no_rst, duplex_lab, epoch_now, DOWNLOAD_RATE};
use hotpair_netns_tests::{describe, report, sha256sum, status_node, url, Lab, TempDir};

const DOWNLOAD_FILE: &str = "50m.bin";
const NEW_FILE: &str = "reloaded.txt";
const NEW_BODY: &[u8] = b"content of the second generation\n";

fn node<'a>(st: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status_node(st, name).unwrap_or_else(|| panic!("no node {name} in lab status: {st}"))
}

/// `kill -HUP` node `name` (the lab's pid for it).
fn hangup(lab: &Lab, name: &str) {
    let st = lab.status_json();
    let pid = node(&st, name)["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("[{}] no pid for {name}: {st}", lab.test));
    let out = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .output()
        .expect("kill");
    assert!(
        out.status.success(),
        "[{}] kill -HUP {pid}\n{}",
        lab.test,
        describe(&out)
    );
}

/// What node `name` reports about `/static/`: (generation, static in use on
/// the address, requests, static fallbacks), and its reload counters.
struct View {
    generation: String,
    in_use: bool,
    requests: u64,
    fallbacks: u64,
    reloads_ok: u64,
    reloads_failed: u64,
}

fn view(lab: &Lab, name: &str) -> Option<View> {
    let st = lab.status_json();
    let ns = &node(&st, name)["node_status"];
    let generation = ns["routes"]
        .as_array()?
        .iter()
        .find(|r| r["route"] == "/static/")?["generation"]
        .as_str()?
        .to_owned();
    let r = ns["addresses"][0]["routes"]
        .as_array()?
        .iter()
        .find(|r| r["route"] == "/static/")?;
    Some(View {
        generation,
        in_use: r["static_in_use"] == true,
        requests: r["requests"].as_u64()?,
        fallbacks: r["static_fallbacks"].as_u64()?,
        reloads_ok: ns["reloads"]["ok"].as_u64()?,
        reloads_failed: ns["reloads"]["failed"].as_u64()?,
    })
}

/// Waits up to 15 s for `f` to hold for both nodes' views.
fn wait_for(lab: &Lab, what: &str, f: impl Fn(&View, &View) -> bool) -> (View, View) {
    let t = Instant::now();
    loop {
        if let (Some(a), Some(b)) = (view(lab, "n1"), view(lab, "n2")) {
            if f(&a, &b) {
                return (a, b);
            }
            if t.elapsed() > Duration::from_secs(15) {
                panic!(
                    "[{}] {what}: not within 15 s: n1 gen {} in_use {} ok {} failed {}; n2 gen {} in_use {} ok {} failed {}\n{}",
                    lab.test, a.generation, a.in_use, a.reloads_ok, a.reloads_failed,
                    b.generation, b.in_use, b.reloads_ok, b.reloads_failed,
                    lab.node_logs(40)
                );
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// curl of `path` from the client: (status, body).
fn get(lab: &Lab, path: &str) -> (u16, Vec<u8>) {
    let out = lab.exec_client(&[
        "curl",
        "-sS",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code}",
        &url(path),
    ]);
    assert!(
        out.status.success(),
        "[{}] curl {path}\n{}",
        lab.test,
        describe(&out)
    );
    let text = out.stdout;
    let at = text.iter().rposition(|&b| b == b'\n').expect("status line");
    let code = String::from_utf8_lossy(&text[at + 1..])
        .trim()
        .parse()
        .unwrap_or(0);
    (code, text[..at].to_vec())
}

#[test]
fn sighup_reloads_the_docroot_and_static_is_back_without_dropping_a_connection() {
    let test = "reload_static";
    let Some(lab) = duplex_lab(test) else { return };
    let docroot = lab.docroot();
    let _ = std::fs::remove_file(docroot.join(NEW_FILE));
    let (a0, b0) = wait_for(&lab, "static in use at start", |a, b| a.in_use && b.in_use);
    assert_eq!(
        a0.generation, b0.generation,
        "[{test}] same content at start"
    );
    assert_eq!(
        get(&lab, &format!("/static/{NEW_FILE}")).0,
        404,
        "[{test}] not there before the reload"
    );

    // A download that runs across both reloads.
    let tmp = TempDir::new(&format!("{test}-dl"));
    let cap = Capture::start(&lab, tmp.path());
    let src = docroot.join(DOWNLOAD_FILE);
    let dl = tmp.path().join("download.bin");
    let mut curl = lab.curl_download(
        &url(&format!("/static/{DOWNLOAD_FILE}")),
        DOWNLOAD_RATE,
        &dl,
        &[],
        tmp.path(),
        "curl",
    );
    thread::sleep(Duration::from_millis(600));

    std::fs::write(docroot.join(NEW_FILE), NEW_BODY).expect("writing the new file");
    let hup = epoch_now();
    hangup(&lab, "n2");
    // Requests while only the owner node reloaded: the route is logged
    // then, still served.
    thread::sleep(Duration::from_millis(300));
    hangup(&lab, "n1");
    assert!(
        !curl.exited(),
        "[{test}] the download ended before both reloads: it proves nothing"
    );
    let (a1, b1) = wait_for(&lab, "both reloaded, static in use again", |a, b| {
        a.reloads_ok == 1 && b.reloads_ok == 1 && a.in_use && b.in_use
    });
    assert_eq!(
        a1.generation, b1.generation,
        "[{test}] both nodes serve the same generation"
    );
    assert_ne!(
        a1.generation, a0.generation,
        "[{test}] the generation changed"
    );

    let (code, body) = get(&lab, &format!("/static/{NEW_FILE}"));
    assert_eq!(
        (code, body.as_slice()),
        (200, NEW_BODY),
        "[{test}] the new file from the service address"
    );
    // New requests are answered as static: the primary's count of the
    // route grows, its fallbacks to logged do not.
    for _ in 0..5 {
        assert_eq!(get(&lab, &format!("/static/{NEW_FILE}")).0, 200);
    }
    let (a2, _) = wait_for(&lab, "requests counted", |a, _| {
        a.requests >= a1.requests + 6
    });
    assert_eq!(
        a2.fallbacks, a1.fallbacks,
        "[{test}] static requests after the reload fell back to logged"
    );

    let out = curl.wait(Duration::from_secs(50));
    assert!(
        out.status.success(),
        "[{test}] the download across the reloads failed\n{}",
        describe(&out)
    );
    assert_eq!(
        sha256sum(&dl),
        sha256sum(&src),
        "[{test}] the download across the reloads differs"
    );
    let r = cap.stop();
    assert_no_rst(&lab, &r, "download across SIGHUP", hup);

    // A config that does not load: refused, the node serves on unchanged.
    let st = lab.status_json();
    let cfg = std::path::PathBuf::from(node(&st, "n1")["config"].as_str().expect("config path"));
    let good = std::fs::read(&cfg).expect("reading n1's config");
    let mut bad = good.clone();
    bad.extend_from_slice(b"\n[[route]\nthis is not TOML\n");
    std::fs::write(&cfg, &bad).expect("breaking the config");
    hangup(&lab, "n1");
    let (a3, _) = wait_for(&lab, "the broken config refused", |a, _| {
        a.reloads_failed == 1
    });
    std::fs::write(&cfg, &good).expect("restoring the config");
    assert!(lab.node_alive("n1"), "[{test}] n1 died of a broken config");
    assert_eq!(
        a3.generation, a1.generation,
        "[{test}] a failed reload changed the content"
    );
    assert!(a3.in_use, "[{test}] a failed reload took static out of use");
    assert_eq!(
        get(&lab, &format!("/static/{NEW_FILE}")).0,
        200,
        "[{test}] serving after a failed reload"
    );
    // Put right, a SIGHUP applies again.
    hangup(&lab, "n1");
    wait_for(&lab, "the config put right applies", |a, _| {
        a.reloads_ok == 2 && a.in_use
    });
    let _ = std::fs::remove_file(docroot.join(NEW_FILE));
    report(&format!(
        "[{test}] SIGHUP both nodes mid-download: generation {} -> {}, static in use again, \
         download byte-exact, 0 RST; broken config refused, serving on",
        a0.generation, a1.generation
    ));
}

/// The SHA-256 fingerprint of the certificate the service address presents
/// (openssl s_client from the client namespace).
fn served_fingerprint(lab: &Lab) -> String {
    let out = lab.exec_client(&[
        "sh",
        "-c",
        "openssl s_client -connect 10.77.0.10:443 -servername hotpair.test </dev/null 2>/dev/null \
         | openssl x509 -noout -fingerprint -sha256",
    ]);
    let fp = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && fp.contains("Fingerprint"),
        "[{}] no certificate from the service address\n{}",
        lab.test,
        describe(&out)
    );
    fp
}

/// Whether `openssl s_client` output is a 200 over a resumed TLS 1.3
/// session (`Some(true)`), a full handshake (`Some(false)`), or neither.
fn resumed(out: &str) -> Option<bool> {
    if !out.contains("HTTP/1.1 200") {
        return None;
    }
    if out.contains("Reused, TLSv1.3") {
        Some(true)
    } else if out.contains("New, TLSv1.3") {
        Some(false)
    } else {
        None
    }
}

/// Rewrites `[tls]` of both nodes' configs: `previous_ticket_key_file`
/// naming `previous`, or no such line.
fn set_previous_ticket_key(lab: &Lab, previous: Option<&std::path::Path>) {
    for n in ["n1", "n2"] {
        let path = lab.state_dir().join(format!("{n}.toml"));
        let text = std::fs::read_to_string(&path).expect("the node's config");
        let mut out: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.starts_with("previous_ticket_key_file") {
                continue;
            }
            out.push(line.to_owned());
            if let (true, Some(p)) = (line.starts_with("ticket_key_file"), previous) {
                out.push(format!("previous_ticket_key_file = \"{}\"", p.display()));
            }
        }
        std::fs::write(&path, out.join("\n") + "\n").expect("rewriting the node's config");
    }
}

/// SIGHUP with renewed certificate files (issue 20: "and certificates")
/// and a rolled session-ticket master: new handshakes present the new
/// certificate, tickets from before still resume, an HTTPS download
/// started before the reload finishes byte-exact with no RST.
#[test]
fn sighup_renews_the_tls_certificate_and_connections_carry_on() {
    let test = "reload_tls";
    let Some(lab) = hotpair_netns_tests::failover::duplex_lab_with(
        test,
        &["--tls", "--static-policy", "logged"],
    ) else {
        return;
    };
    let ca = lab.tls_ca().expect("lab up --tls writes tls/ca.pem");
    let ca = ca.to_string_lossy().into_owned();
    let tls_dir = lab.state_dir().join("tls");
    let before = served_fingerprint(&lab);
    // A session ticket sealed under the lab's first master.
    let tmp_sess = TempDir::new(&format!("{test}-sess"));
    let (sess_a, sess_b) = (tmp_sess.path().join("a.pem"), tmp_sess.path().join("b.pem"));
    let sess = |extra: &str, file: &std::path::Path| {
        hotpair_netns_tests::tls::s_client(
            &lab,
            std::path::Path::new(&ca),
            &format!("{extra} {}", file.display()),
        )
    };
    let first = sess("-sess_out", &sess_a);
    assert_eq!(
        resumed(&first),
        Some(false),
        "[{test}] a first full handshake\n{first}"
    );
    let again = sess("-sess_in", &sess_a);
    assert_eq!(
        resumed(&again),
        Some(true),
        "[{test}] the ticket resumes before the roll\n{again}"
    );

    let tmp = TempDir::new(&format!("{test}-dl"));
    let cap = Capture::start(&lab, tmp.path());
    let src = lab.docroot().join(DOWNLOAD_FILE);
    let dl = tmp.path().join("download.bin");
    let mut curl = lab.curl_download(
        &lab.service_url(&format!("/static/{DOWNLOAD_FILE}")),
        DOWNLOAD_RATE,
        &dl,
        &["--cacert", &ca],
        tmp.path(),
        "curl",
    );
    thread::sleep(Duration::from_millis(600));

    // A renewed certificate (here from a CA of the test's own) replaces
    // the files both nodes' `[tls]` name.
    let new_cert = tmp.path().join("new-cert.pem");
    let new_key = tmp.path().join("new-key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&new_key)
        .arg("-out")
        .arg(&new_cert)
        .args([
            "-subj",
            "/CN=hotpair.test",
            "-addext",
            "subjectAltName=DNS:hotpair.test,IP:10.77.0.10",
            "-days",
            "1",
        ])
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "[{test}] openssl req\n{}",
        describe(&out)
    );
    for (from, to) in [(&new_cert, "cert.pem"), (&new_key, "key.pem")] {
        let staged = tls_dir.join(format!("{to}.new"));
        std::fs::copy(from, &staged).expect("staging the renewed file");
        std::fs::rename(&staged, tls_dir.join(to)).expect("replacing the file");
    }
    let want = {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&new_cert)
            .output()
            .expect("openssl x509");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_ne!(
        want, before,
        "[{test}] the renewed certificate is a new one"
    );

    // The ticket master rolled as `hotpair tls new-ticket-key` says: the
    // current file becomes the previous master, a fresh key the current.
    let (current, previous) = (
        tls_dir.join("ticket.key"),
        tls_dir.join("ticket-previous.key"),
    );
    let fresh = tls_dir.join("ticket-new.key");
    let out = Command::new(hotpair_netns_tests::hotpair_bin())
        .args(["tls", "new-ticket-key"])
        .arg(&fresh)
        .output()
        .expect("hotpair tls new-ticket-key");
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("previous_ticket_key_file"),
        "[{test}] hotpair tls new-ticket-key\n{}",
        describe(&out)
    );
    std::fs::rename(&current, &previous).expect("the current master becomes the previous");
    std::fs::rename(&fresh, &current).expect("the fresh master becomes the current");
    set_previous_ticket_key(&lab, Some(&previous));

    let hup = epoch_now();
    hangup(&lab, "n2");
    hangup(&lab, "n1");
    assert!(
        !curl.exited(),
        "[{test}] the download ended before the reloads: it proves nothing"
    );
    wait_for(&lab, "both reloaded", |a, b| {
        a.reloads_ok == 1 && b.reloads_ok == 1
    });
    assert_eq!(
        served_fingerprint(&lab),
        want,
        "[{test}] a new handshake after the reload does not present the renewed certificate"
    );
    let old_ticket = sess("-sess_in", &sess_a);
    assert_eq!(
        resumed(&old_ticket),
        Some(true),
        "[{test}] a ticket from before the roll does not resume under the previous master\n{old_ticket}"
    );
    let fresh_session = sess("-sess_out", &sess_b);
    assert_eq!(
        resumed(&fresh_session),
        Some(false),
        "[{test}]\n{fresh_session}"
    );

    let out = curl.wait(Duration::from_secs(50));
    assert!(
        out.status.success(),
        "[{test}] the HTTPS download across the reload failed\n{}",
        describe(&out)
    );
    assert_eq!(
        sha256sum(&dl),
        sha256sum(&src),
        "[{test}] the HTTPS download across the reload differs"
    );
    let r = cap.stop();
    assert_no_rst(&lab, &r, "HTTPS download across SIGHUP", hup);

    // The previous master dropped: its tickets no longer open, the
    // current master's do.
    set_previous_ticket_key(&lab, None);
    hangup(&lab, "n2");
    hangup(&lab, "n1");
    wait_for(&lab, "both reloaded again", |a, b| {
        a.reloads_ok == 2 && b.reloads_ok == 2
    });
    let dropped = sess("-sess_in", &sess_a);
    assert_eq!(
        resumed(&dropped),
        Some(false),
        "[{test}] a ticket under a master no longer configured still resumed\n{dropped}"
    );
    let kept = sess("-sess_in", &sess_b);
    assert_eq!(
        resumed(&kept),
        Some(true),
        "[{test}] a ticket under the current master does not resume\n{kept}"
    );
    report(&format!(
        "[{test}] SIGHUP both nodes mid-download over HTTPS: certificate {before} -> {want}, \
         ticket master rolled (the old ticket resumed, then not once the previous master was \
         dropped); download byte-exact, 0 RST"
    ));
}
