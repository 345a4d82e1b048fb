//! A real browser across a failover (issue 18): headless Chromium in the
//! lab's client namespace loads an HTTPS page from the service address whose
//! script downloads a large file with `fetch()`, while a node is SIGKILLed
//! mid-download; the page's SHA-256 of what arrived (`crypto.subtle.digest`)
//! must be the file's, and the client's capture must hold no RST.
//!
//! The parts:
//! - `browser/page.html`, written with a random 40 MB file into a docroot of
//!   the test's own (`lab up --docroot`: a node reads its docroot when it
//!   starts). The page reads the body no faster than the rate in its URL:
//!   its reads pause, Chromium's buffers fill, TCP's window closes, so the
//!   server is paced the way `curl --limit-rate` paces it (the other
//!   download tests), with no shaping in the network and a bounded time
//!   (40 MB at 20 MB/s: 2 s, plus the takeover). Chromium's buffers are
//!   large (it had 10–25 MiB more than the page had read, in runs here),
//!   so the kill is timed on the client's TCP byte count (`ss`), 10 MiB in:
//!   mid-transfer on the wire whatever the page has read.
//! - `browser/cdp.py`, a small DevTools client over `--remote-debugging-pipe`
//!   that starts Chromium (niced, killed when the driver dies), opens the
//!   page and reports the page's progress and result on stdout. `--dump-dom`
//!   would not do: it dumps at the load event, before the download ends.
//! - Chromium trusts the lab's certificate through
//!   `--ignore-certificate-errors-spki-list` (the base64 SHA-256 of its
//!   public key) with a throwaway `--user-data-dir`: no trust store changes.
//!
//! Without Chromium the test prints "BROWSER TEST SKIPPED", and fails when
//! `CI` is set (scripts/test.sh installs it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::capture::{Capture, CaptureReport, Segment};
use crate::failover::{assert_no_rst, assert_survivor, duplex_lab_with, epoch_now, ms, Victim};
use crate::{
    describe, random_bytes, report, require_root, sha256_hex, status_node, ChildLines, Lab,
    TempDir, SERVICE,
};

/// The page the browser loads (see the module doc).
pub const PAGE: &str = include_str!("browser/page.html");
/// The DevTools driver, run with python3 in the client namespace.
const DRIVER: &str = include_str!("browser/cdp.py");
/// The downloaded file: big enough that the kill lands mid-transfer with
/// room to spare, small enough for a bounded test.
pub const FILE_BYTES: usize = 40_000_000;
/// The page's read rate, bytes per second.
pub const RATE: u64 = 20_000_000;
/// The kill lands once the client's TCP has received this much.
pub const KILL_AT_BYTES: u64 = 10 * 1024 * 1024;
/// The driver gives up (and reports a timeout) after this long.
const DRIVER_DEADLINE_SECS: u64 = 60;

/// The Chromium binary, `None` (after a loud notice) when it is missing and
/// `CI` is unset; panics when missing under CI.
pub fn require_chromium(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file());
    if found.is_some() {
        return found;
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!(
            "BROWSER TEST {test} CANNOT RUN: no chromium on PATH, and CI is set so it may not be \
             skipped (scripts/test.sh installs it: apt-get install chromium)"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n==================================================================\n\
         BROWSER TEST SKIPPED: no chromium on PATH ({test}; apt-get install chromium)\n\
         ==================================================================\n"
    );
    None
}

/// The base64 SHA-256 of the certificate's SubjectPublicKeyInfo, what
/// `--ignore-certificate-errors-spki-list` takes (openssl does the DER).
pub fn spki_pin(cert: &Path) -> String {
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der \
         | openssl dgst -sha256 -binary | base64",
        cert.display()
    );
    let out = crate::run_with_timeout(
        Command::new("sh").args(["-c", &script]),
        Duration::from_secs(10),
    );
    let pin = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // A SHA-256 in base64: 44 characters ending in "=".
    assert!(
        out.status.success() && pin.len() == 44,
        "the SPKI pin of {}: {pin:?}\n{}",
        cert.display(),
        describe(&out)
    );
    pin
}

/// Chromium's command line (before the driver's own flags): headless, no
/// sandbox (root), the lab certificate pinned, and none of its background
/// traffic (updates, sync, metrics: the namespace has no route for it
/// anyway, but it would only add noise).
pub fn chromium_args(chromium: &Path, profile: &Path, pin: &str) -> Vec<String> {
    vec![
        chromium.to_string_lossy().into_owned(),
        "--headless=new".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        format!("--user-data-dir={}", profile.display()),
        format!("--ignore-certificate-errors-spki-list={pin}"),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-extensions".into(),
        "--metrics-recording-only".into(),
    ]
}

/// Bytes the client's TCP connections from `SERVICE` have received, the
/// largest over its connections (`ss -ti` in the client namespace).
fn client_bytes_received(lab: &Lab) -> u64 {
    let filter = format!("dst {SERVICE}");
    lab.tcp_counter_max("client", &[&filter], "bytes_received")
        .unwrap_or(0)
}

/// The payload length of a `tcpdump` segment line ("…, length N").
fn payload_len(s: &Segment) -> u64 {
    s.line
        .rsplit_once("length ")
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The pause in the data from the service address that the kill caused,
/// as the client's capture saw it: from the victim's last data segment
/// (by its MAC, `victim_mac`; when it sent none, the last data segment
/// before `kill`, seconds since the epoch) to the next data segment from
/// another node. Later pauses are not counted: they are the page's pacing
/// (a closed window). `None` when no other node sent data after it.
pub fn wire_stall(segs: &[Segment], kill: f64, victim_mac: &str) -> Option<Duration> {
    let data = || {
        segs.iter()
            .filter(|s| s.src_ip() == SERVICE && payload_len(s) > 0)
    };
    let last = data()
        .filter(|s| s.src_mac == victim_mac)
        .map(|s| s.time)
        .reduce(f64::max)
        .or_else(|| {
            data()
                .map(|s| s.time)
                .filter(|t| *t < kill)
                .reduce(f64::max)
        })
        .unwrap_or(kill);
    let next = data()
        .filter(|s| s.src_mac != victim_mac && s.time > last)
        .map(|s| s.time)
        .reduce(f64::min)?;
    Some(Duration::from_secs_f64(next - last))
}

/// When the address moved, for a victim that held it (the owner): from
/// `kill` (seconds since the epoch) to the first client segment to the
/// service address sent to another MAC than `victim_mac` (the client
/// learnt the survivor's claim). With the owner dead the primary's data
/// keeps coming until the client's window closes, so [`wire_stall`] sees
/// little; this is the takeover's own time. `None` when no such segment
/// came.
pub fn frames_moved(segs: &[Segment], kill: f64, victim_mac: &str) -> Option<Duration> {
    segs.iter()
        .filter(|s| s.dst_ip() == SERVICE && s.time > kill && s.dst_mac != victim_mac)
        .map(|s| s.time)
        .reduce(f64::min)
        .map(|t| Duration::from_secs_f64(t - kill))
}

/// The duplex scenario's [`CaptureReport`] from the segments (RSTs from
/// the service address, each with the last segments of its connection).
fn capture_report(segs: &[Segment]) -> CaptureReport {
    let from: Vec<&Segment> = segs.iter().filter(|s| s.src_ip() == SERVICE).collect();
    let mut context = Vec::new();
    for r in from.iter().filter(|s| s.rst).take(5) {
        let conn: Vec<&Segment> = segs.iter().filter(|s| s.same_connection(r)).collect();
        let at = conn.iter().position(|s| s == r).unwrap_or(conn.len());
        context.push(format!("connection {}, up to the RST:", r.dst));
        for s in &conn[at.saturating_sub(10)..(at + 3).min(conn.len())] {
            context.push(format!("    {}", s.line));
        }
    }
    CaptureReport {
        packets: from.len(),
        rsts: from
            .iter()
            .filter(|s| s.rst)
            .map(|s| s.line.clone())
            .collect(),
        context,
    }
}

/// Panics with `what` and the tail of the driver's and Chromium's stderr,
/// after killing them (the driver, and through PR_SET_PDEATHSIG, Chromium).
fn fail(test: &str, what: String, mut driver: ChildLines) -> ! {
    let err = driver.kill_and_stderr();
    // Chromium's stderr is mostly D-Bus noise: show its tail.
    let lines: Vec<&str> = err.lines().collect();
    panic!(
        "[{test}] {what}\n--- driver and Chromium stderr (tail):\n{}",
        lines[lines.len().saturating_sub(30)..].join("\n")
    )
}

/// A duplex HTTPS lab serving the page and the file; Chromium downloads
/// it, `victim` is SIGKILLed once the client's TCP has received
/// [`KILL_AT_BYTES`].
/// Checks: the page's SHA-256 (in `window.hotpair` and in the DOM) is the
/// file's, every byte arrived, the kill landed mid-transfer on the wire,
/// the survivor lives, and the capture holds no RST from the service.
pub fn download_across_kill(test: &str, victim: Victim) {
    if !require_root(test) {
        return;
    }
    let Some(chromium) = require_chromium(test) else {
        return;
    };
    // The docroot outlives the lab (declared first, dropped last).
    let docroot = TempDir::new(&format!("{test}-docroot"));
    let body = random_bytes(FILE_BYTES);
    let want = sha256_hex(&body);
    let write = |name: &str, data: &[u8]| {
        std::fs::write(docroot.path().join(name), data)
            .unwrap_or_else(|e| panic!("[{test}] writing {name} into the docroot: {e}"))
    };
    write("index.html", b"<!doctype html><title>hotpair</title>\n");
    write("page.html", PAGE.as_bytes());
    write("40m.bin", &body);
    drop(body);
    let root = docroot.path().to_string_lossy().into_owned();
    let Some(lab) = duplex_lab_with(test, &["--tls", "--docroot", &root]) else {
        return;
    };
    let tmp = TempDir::new(&format!("{test}-chromium"));
    let profile = tmp.path().join("profile");
    std::fs::create_dir_all(&profile).expect("creating the profile dir");
    let pin = spki_pin(&lab.state_dir().join("tls").join("cert.pem"));
    let url = lab.service_url(&format!(
        "/static/page.html?file=/static/40m.bin&rate={RATE}"
    ));
    let cap = Capture::start(&lab, tmp.path());

    let mut cmd = Command::new(crate::hotpair_bin());
    cmd.args(["lab", "exec", "--prefix", &lab.prefix, "client", "--"])
        .args(["python3", "-c", DRIVER, &url])
        .arg(DRIVER_DEADLINE_SECS.to_string())
        .args(chromium_args(&chromium, &profile, &pin))
        .stdin(Stdio::null());
    let start = Instant::now();
    // Killed (and with it Chromium) if the test panics half way.
    let driver = ChildLines::spawn(&mut cmd).expect("running the DevTools driver");
    let parse_result = |line: &str| -> serde_json::Value {
        serde_json::from_str(line.trim_start_matches("RESULT "))
            .unwrap_or_else(|e| panic!("[{test}] the driver's result is not JSON ({e}): {line}"))
    };

    // Wait for the kill moment, judged on the wire: Chromium reads far
    // ahead of the page (10 to 25 MiB more than the script had read, in
    // runs here), so the page's count says little about what the server
    // still has to send.
    let mut page_at_kill = 0;
    let wire_at_kill = loop {
        loop {
            match driver.lines.try_recv() {
                Ok(line) if line.starts_with("PROGRESS ") => {
                    page_at_kill = line["PROGRESS ".len()..].trim().parse().unwrap_or(0);
                }
                Ok(line) if line.starts_with("RESULT ") => {
                    let r = parse_result(&line);
                    fail(
                        test,
                        format!("the page ended before the kill ({page_at_kill} bytes read): {r}"),
                        driver,
                    );
                }
                Ok(_) => {}
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(e) => fail(
                    test,
                    format!("the driver ended before the kill ({e})"),
                    driver,
                ),
            }
        }
        let wire = client_bytes_received(&lab);
        if wire >= KILL_AT_BYTES {
            break wire;
        }
        if start.elapsed() > Duration::from_secs(30) {
            fail(
                test,
                format!(
                    "the client did not receive {KILL_AT_BYTES} bytes within 30 s ({wire} on the \
                     wire, {page_at_kill} read by the page)"
                ),
                driver,
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let kill_epoch = epoch_now();
    let kill = lab.kill(victim.node());
    let kill_after = kill - start;

    // The result.
    let deadline = Instant::now() + Duration::from_secs(DRIVER_DEADLINE_SECS);
    let result = loop {
        match driver
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) if line.starts_with("RESULT ") => break parse_result(&line),
            Ok(_) => {}
            Err(e) => fail(
                test,
                format!("no result from the driver after the kill ({e})"),
                driver,
            ),
        }
    };
    let done_after_kill = kill.elapsed();
    drop(driver);
    let segs = cap
        .segments()
        .unwrap_or_else(|e| panic!("[{test}] the client capture: {e}"));
    let victim_mac = status_node(lab.initial_status(), victim.node())
        .and_then(|n| n["mac"].as_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| panic!("[{test}] no MAC for {} in lab status", victim.node()));
    let stall = wire_stall(&segs, kill_epoch, &victim_mac);
    let moved = match victim {
        Victim::Owner => match frames_moved(&segs, kill_epoch, &victim_mac) {
            Some(d) => format!(
                "; the client's frames went to {} {:.0} ms after the kill",
                victim.survivor(),
                ms(d)
            ),
            None => format!(
                "; no client frame reached {} after the kill",
                victim.survivor()
            ),
        },
        // The primary never held the address: the client's frames went to
        // the owner all along.
        Victim::Primary => String::new(),
    };
    let seconds = result["seconds"].as_f64().unwrap_or(f64::NAN);
    let line = format!(
        "[{test}] Chromium: SIGKILL {} ({}) at {:.2} s, the page {:.1} MiB in (TCP {:.1} MiB); \
         state {}, {} bytes, SHA-256 {}; pause on the wire from {}'s last data to the survivor's first {}; page's download \
         {seconds:.2} s; result {:.2} s after the kill{moved}",
        victim.node(),
        victim.role(),
        kill_after.as_secs_f64(),
        page_at_kill as f64 / (1024.0 * 1024.0),
        wire_at_kill as f64 / (1024.0 * 1024.0),
        result["state"],
        result["received"],
        if result["sha256"] == want.as_str() {
            "exact"
        } else {
            "DIFFERS"
        },
        victim.node(),
        stall.map_or("none (no data after the kill)".to_owned(), |s| format!(
            "{:.0} ms",
            ms(s)
        )),
        done_after_kill.as_secs_f64()
    );
    report(&line);
    assert_eq!(
        result["state"], "done",
        "[{test}] the page did not finish its download: {result}\n{line}"
    );
    assert_eq!(
        result["received"], FILE_BYTES as u64,
        "[{test}] the page read another length: {result}"
    );
    assert_eq!(
        result["sha256"],
        want.as_str(),
        "[{test}] the page's SHA-256 is not the file's: {result}"
    );
    assert_eq!(
        result["dom_sha256"],
        want.as_str(),
        "[{test}] the DOM's #sha256 is not the file's: {result}"
    );
    assert!(
        wire_at_kill < FILE_BYTES as u64,
        "[{test}] the kill did not land mid-transfer: the client's TCP had {wire_at_kill} of \
         {FILE_BYTES} bytes"
    );
    assert!(
        stall.is_some(),
        "[{test}] no data from {SERVICE} after the kill in the client's capture"
    );
    assert_survivor(&lab, victim);
    assert_no_rst(
        &lab,
        &capture_report(&segs),
        "Chromium download",
        kill_epoch,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const N1: &str = "02:68:70:00:00:01";
    const N2: &str = "02:68:70:00:00:02";

    fn seg(time: f64, mac: &str, src: &str, len: u64) -> Segment {
        let dst = if src.starts_with(SERVICE) {
            "10.77.0.100.5000"
        } else {
            "10.77.0.10.443"
        };
        crate::capture::parse_segment(&format!(
            "{time} {mac} > 5a:3b:00:11:22:33, ethertype IPv4 (0x0800), length \
             {}: {src} > {dst}: Flags [.], seq 1:{}, ack 1, win 501, length {len}",
            len + 66,
            len + 1
        ))
        .expect("a segment line")
    }

    #[test]
    fn wire_stall_is_the_victims_last_data_to_the_next() {
        let svc = "10.77.0.10.443";
        let segs = vec![
            // A long pause before the kill does not count.
            seg(10.0, N1, svc, 1448),
            seg(11.0, N1, svc, 1448),
            // The victim's last data, a little after the kill was sent.
            seg(11.2, N1, svc, 1448),
            // Client ACKs and empty segments are not data.
            seg(11.5, "5a:3b:00:11:22:33", "10.77.0.100.5000", 0),
            seg(11.6, N2, svc, 0),
            seg(11.9, N2, svc, 1448),
            seg(11.95, N2, svc, 1448),
            // A later pause (the page's pacing) does not count.
            seg(13.0, N2, svc, 1448),
        ];
        let s = wire_stall(&segs, 11.1, N1).expect("data after the kill");
        assert!((ms(s) - 700.0).abs() < 1.0, "{s:?}");
        // The victim sent no data (the owner node, N1 the primary): from
        // the last data before the kill to the next.
        let primary = [
            seg(11.0, N1, svc, 1448),
            seg(11.2, N1, svc, 1448),
            seg(11.9, N1, svc, 1448),
        ];
        let s = wire_stall(&primary, 11.3, N2).expect("data after the kill");
        assert!((ms(s) - 700.0).abs() < 1.0, "{s:?}");
        // Nobody else sent data after the victim.
        assert_eq!(wire_stall(&segs[..3], 11.1, N1), None);
    }

    #[test]
    fn frames_moved_is_the_first_client_segment_to_another_mac() {
        let client = |time: f64, dst_mac: &str| {
            crate::capture::parse_segment(&format!(
                "{time} 5a:3b:00:11:22:33 > {dst_mac}, ethertype IPv4 (0x0800), length 66: \
                 10.77.0.100.5000 > 10.77.0.10.443: Flags [.], ack 1, win 501, length 0"
            ))
            .expect("a segment line")
        };
        let segs = vec![
            client(10.9, N2),
            // Still to the dead owner after the kill (its ARP entry).
            client(11.2, N2),
            // Data from the primary is not the client's.
            seg(11.3, N1, "10.77.0.10.443", 1448),
            client(11.6, N1),
            client(11.7, N1),
        ];
        let d = frames_moved(&segs, 11.0, N2).expect("moved");
        assert!((ms(d) - 600.0).abs() < 1.0, "{d:?}");
        assert_eq!(frames_moved(&segs[..3], 11.0, N2), None);
    }
}
