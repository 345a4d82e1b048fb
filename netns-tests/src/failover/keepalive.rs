//! (d) keep-alive: one connection's requests before and after a kill.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{assert_survivor, duplex_lab_with, Victim};
use crate::{report, sha256_file, ChildLines, Lab, SERVICE};

// ---- (d) keep-alive -----------------------------------------------------------

const KEEPALIVE_SCRIPT: &str = r#"
import hashlib, http.client, json, ssl, sys, time
paths = json.loads(sys.argv[1])
ca = sys.argv[2] if len(sys.argv) > 2 else ""
host = sys.argv[3] if len(sys.argv) > 3 else "10.77.0.10"
if ca:
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(host, 443, timeout=30, context=ctx)
else:
    conn = http.client.HTTPConnection(host, 80, timeout=30)
results = []
def fetch(p):
    entry = {"path": p, "t0": time.time()}
    try:
        conn.request("GET", p)
        r = conn.getresponse()
        body = r.read()
        entry.update(status=r.status, len=len(body),
                     sha256=hashlib.sha256(body).hexdigest(), will_close=r.will_close)
    except Exception as e:
        entry["error"] = "%s: %s" % (type(e).__name__, e)
    entry["t1"] = time.time()
    s = conn.sock
    entry["sock_id"] = id(s) if s is not None else None
    entry["local"] = list(s.getsockname()) if s is not None else None
    results.append(entry)
for p in paths[:5]:
    fetch(p)
print("READY", flush=True)
sys.stdin.readline()
for p in paths[5:]:
    fetch(p)
print(json.dumps(results), flush=True)
"#;

/// (d): five requests on one http.client connection, kill, five more on the
/// same connection (same socket object, same local port); every body checked.
pub fn keepalive(test: &str, victim: Victim) {
    keepalive_with(test, victim, &[]);
}

/// As [`keepalive`], over HTTPS (`lab up --tls`): Python's `ssl` checking
/// the certificate against the lab's CA, one TLS connection throughout.
pub fn keepalive_tls(test: &str, victim: Victim) {
    keepalive_with(test, victim, &["--tls"]);
}

fn keepalive_with(test: &str, victim: Victim, extra: &[&str]) {
    let Some(lab) = duplex_lab_with(test, extra) else {
        return;
    };
    let mut client = KeepaliveClient::start(&lab, SERVICE);
    let kill = lab.kill(victim.node());
    client.go();
    let elapsed = client.finish(kill);
    report(&format!(
        "[{test}] 5 more requests on the same connection done {:.2} s after SIGKILL {} ({})",
        elapsed.as_secs_f64(),
        victim.node(),
        victim.role()
    ));
    assert_survivor(&lab, victim);
}

/// The files the keep-alive client fetches, in order: five before the
/// kill, five after.
const KEEPALIVE_FILES: [&str; 10] = [
    "index.html",
    "1k.bin",
    "5k.bin",
    "50k.bin",
    "1k.bin",
    "50k.bin",
    "5k.bin",
    "index.html",
    "50k.bin",
    "1k.bin",
];

/// Python `http.client` in the client namespace on one connection to
/// `host` (over `ssl`, checking the lab's CA, when the lab serves HTTPS):
/// five requests, a pause for the kill ([`KeepaliveClient::go`] ends it),
/// five more. Killed if the test panics half way.
pub struct KeepaliveClient {
    test: String,
    host: String,
    docroot: std::path::PathBuf,
    stdin: Option<std::process::ChildStdin>,
    client: ChildLines,
}

impl KeepaliveClient {
    /// Starts the client and waits until its first five requests are done.
    pub fn start(lab: &Lab, host: &str) -> KeepaliveClient {
        let test = &lab.test;
        let ca = lab
            .tls_ca()
            .map_or(String::new(), |p| p.to_string_lossy().into_owned());
        let paths: Vec<String> = KEEPALIVE_FILES
            .iter()
            .map(|f| format!("/static/{f}"))
            .collect();
        let arg = serde_json::to_string(&paths).expect("json");
        let mut client = ChildLines::spawn(
            Command::new(crate::hotpair_bin())
                .args(["lab", "exec", "--prefix", &lab.prefix, "client", "--"])
                .args(["python3", "-c", KEEPALIVE_SCRIPT, &arg, &ca, host])
                .stdin(Stdio::piped()),
        )
        .expect("running python3 in the client namespace");
        let stdin = client.take_stdin().expect("stdin");
        let ready = client.lines.recv_timeout(Duration::from_secs(30));
        assert_eq!(
            ready.as_deref().ok(),
            Some("READY"),
            "[{test}] the python client of {host} did not finish its first 5 requests: {ready:?}"
        );
        KeepaliveClient {
            test: test.clone(),
            host: host.to_owned(),
            docroot: lab.docroot(),
            stdin: Some(stdin),
            client,
        }
    }

    /// Lets the client go on with its last five requests.
    pub fn go(&mut self) {
        let mut stdin = self.stdin.take().expect("go() once");
        stdin
            .write_all(b"GO\n")
            .expect("telling the client to go on");
        stdin.flush().expect("flush");
    }

    /// Waits for the client's results and checks every request: no error,
    /// 200, the body is the docroot file's, and the same socket (same
    /// local port) as the first request. Returns the time since `kill`.
    pub fn finish(mut self, kill: Instant) -> Duration {
        let (test, host) = (&self.test, &self.host);
        let line = self.client.lines.recv_timeout(Duration::from_secs(55));
        let elapsed = kill.elapsed();
        let line = line.unwrap_or_else(|e| {
            panic!(
                "[{test}] the python client of {host} printed no result after the kill ({e}); \
                 stderr:\n{}",
                self.client.kill_and_stderr()
            )
        });
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("[{test}] python printed no JSON ({e}): {line}"));
        let results = v.as_array().expect("a list of results");
        assert_eq!(results.len(), 10, "[{test}] {host}: {v}");
        let first = &results[0];
        for (i, r) in results.iter().enumerate() {
            let when = if i < 5 { "before" } else { "after" };
            assert!(
                r.get("error").is_none(),
                "[{test}] {host}: request {i} ({when} the kill) failed: {r}"
            );
            assert_eq!(
                r["status"], 200,
                "[{test}] {host}: request {i} ({when} the kill): {r}"
            );
            assert_eq!(
                r["sha256"],
                sha256_file(&self.docroot.join(KEEPALIVE_FILES[i])),
                "[{test}] {host}: request {i} ({when} the kill, {}): body differs from the \
                 file: {r}",
                KEEPALIVE_FILES[i]
            );
            assert_eq!(
                (&r["sock_id"], &r["local"]),
                (&first["sock_id"], &first["local"]),
                "[{test}] {host}: request {i} ({when} the kill) did not use the first \
                 connection (socket reopened): {r} vs first {first}"
            );
        }
        // Each request's time after the kill (the first one waits out the
        // takeover), from the client's own clock.
        let took: Vec<String> = results[5..]
            .iter()
            .map(|r| {
                let t = r["t1"].as_f64().unwrap_or(0.0) - r["t0"].as_f64().unwrap_or(0.0);
                format!("{:.0}", t * 1000.0)
            })
            .collect();
        let kill_epoch = super::epoch_now() - kill.elapsed().as_secs_f64();
        let since_kill =
            |r: &serde_json::Value, t: &str| (r[t].as_f64().unwrap_or(0.0) - kill_epoch) * 1000.0;
        crate::report(&format!(
            "[{test}] {host}: the 5 requests after the kill took {} ms (the first sent {:.0} ms \
             after the kill, the last answered {:.0} ms after it)",
            took.join(", "),
            since_kill(&results[5], "t0"),
            since_kill(&results[9], "t1")
        ));
        elapsed
    }
}
