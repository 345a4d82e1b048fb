//! Shared helpers for the netns tests: a [`Lab`] guard around
//! `hotpair lab up/down`, commands with time limits, hashing, and python
//! client snippets.
//!
//! Every test builds its own lab with a unique prefix and only sends traffic
//! from that lab's client namespace to its service address (10.77.0.10).

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub mod browser;
pub mod capture;
pub mod compose;
pub mod docker;
pub mod failover;
pub mod hosts;
pub mod multi;
pub mod node_log;
pub mod policies;
mod process;
pub mod tls;
mod tool_output;
pub mod wrk;

pub use process::{rss, run_with_timeout, Background, ChildLines};
pub use tool_output::{
    curl_body_code_secs, curl_download_args, header, hping_sent, split_head, status_code,
};

/// The lab's service address and port.
pub const SERVICE: &str = "10.77.0.10";
pub const SERVICE_PORT: u16 = 80;

/// `http://10.77.0.10` + `path`.
pub fn url(path: &str) -> String {
    format!("http://{SERVICE}{path}")
}

/// The `hotpair` binary under test: `$HOTPAIR_BIN`, else
/// `target/debug/hotpair` of this workspace (honouring `CARGO_TARGET_DIR`).
pub fn hotpair_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HOTPAIR_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "HOTPAIR_BIN={} does not name a file",
            p.display()
        );
        return p;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("netns-tests lives inside the workspace");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => workspace.join(t),
        None => workspace.join("target"),
    };
    let p = target.join("debug").join("hotpair");
    assert!(
        p.is_file(),
        "the hotpair binary is missing at {}: run `cargo build -p hotpair-cli` first \
         (or set HOTPAIR_BIN to the binary to test)",
        p.display()
    );
    p
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// True when the netns tests can run (we are root). Otherwise prints a loud
/// skip notice — or panics when `$CI` is set, since CI must never skip silently.
pub fn require_root(test: &str) -> bool {
    if effective_uid() == Some(0) {
        return true;
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("NETNS TEST {test} CANNOT RUN: needs root, and CI is set so it may not be skipped");
    }
    // Straight to the process's stderr: eprintln! would be captured (and
    // hidden) by the test harness for a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "\n==================================================================\n\
         NETNS TEST SKIPPED: needs root ({test})\n\
         ==================================================================\n"
    );
    false
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A lab prefix unique to this process and not in use: `t<pid%10000><n>`
/// (at most 8 characters). `HOTPAIR_TEST_PREFIX` (one or two lowercase
/// letters) replaces the `t`, so that whoever runs tests beside others'
/// can tell their labs apart (`ip netns list`).
pub fn unique_prefix() -> String {
    let pid = std::process::id() % 10_000;
    let lead = std::env::var("HOTPAIR_TEST_PREFIX")
        .ok()
        .filter(|p| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase()))
        .unwrap_or_else(|| "t".to_owned());
    loop {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("{lead}{pid}{n}");
        assert!(prefix.len() <= 8, "ran out of lab prefixes");
        let taken = ["client", "sw", "n1"].iter().any(|s| {
            Path::new("/run/netns")
                .join(format!("{prefix}-{s}"))
                .exists()
        }) || Path::new("/run/hotpair")
            .join(format!("lab-{prefix}"))
            .exists();
        if !taken {
            return prefix;
        }
    }
}

/// Human-readable exit status and output (stdout abbreviated) for messages.
pub fn describe(out: &Output) -> String {
    let stdout = if out.stdout.len() > 4096 {
        format!(
            "{}… ({} bytes)",
            String::from_utf8_lossy(&out.stdout[..4096]),
            out.stdout.len()
        )
    } else {
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    format!(
        "exit: {}\n--- stdout:\n{stdout}\n--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Panics with the command's output unless it succeeded.
#[track_caller]
pub fn assert_success(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed\n{}", describe(out));
}

/// A lab built for one test; `Drop` takes it down (also when the test panics,
/// after printing the tail of the node logs).
pub struct Lab {
    pub test: String,
    pub prefix: String,
    bin: PathBuf,
    status: serde_json::Value,
}

impl Lab {
    /// `hotpair lab up` with a fresh prefix; `None` when skipped (not root).
    pub fn up(test: &str) -> Option<Lab> {
        Self::up_with(test, &[])
    }

    /// As [`Lab::up`], passing `extra` arguments to `lab up`.
    pub fn up_with(test: &str, extra: &[&str]) -> Option<Lab> {
        if !require_root(test) {
            return None;
        }
        let mut lab = Lab {
            test: test.to_owned(),
            prefix: unique_prefix(),
            bin: hotpair_bin(),
            status: serde_json::Value::Null,
        };
        eprintln!(
            "[{test}] lab up --prefix {} ({})",
            lab.prefix,
            lab.bin.display()
        );
        // The guard exists before `lab up` runs, so a failed up is torn down too.
        let mut args = vec!["up"];
        args.extend_from_slice(extra);
        let out = lab.lab(&args, Duration::from_secs(120));
        assert!(
            out.status.success(),
            "[{test}] `hotpair lab up --prefix {}` failed\n{}",
            lab.prefix,
            describe(&out)
        );
        lab.status = lab.status_json();
        Some(lab)
    }

    /// Runs `hotpair lab ARGS… --prefix PREFIX`.
    pub fn lab(&self, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("lab").args(args).args(["--prefix", &self.prefix]);
        run_with_timeout(&mut cmd, timeout)
    }

    /// `hotpair lab status --json`, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let out = self.lab(&["status", "--json"], Duration::from_secs(30));
        assert_success(&out, "hotpair lab status --json");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("lab status --json is not JSON ({e})\n{}", describe(&out)))
    }

    /// Runs a command inside namespace `PREFIX-<ns>` (client, sw, n1…).
    pub fn exec_in<S: AsRef<OsStr>>(&self, ns: &str, args: &[S], timeout: Duration) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["lab", "exec", "--prefix", &self.prefix, ns, "--"])
            .args(args);
        run_with_timeout(&mut cmd, timeout)
    }

    /// The largest `counter` (`bytes_acked`, `bytes_received`…) over the
    /// established TCP sockets of namespace `ns` that `filter` (`ss` filter
    /// words) selects, as `ss -tinH` reports it; `None` when there is none.
    pub fn tcp_counter_max(&self, ns: &str, filter: &[&str], counter: &str) -> Option<u64> {
        let mut args = vec!["ss", "-tinH", "state", "established"];
        args.extend_from_slice(filter);
        let out = self.exec_in(ns, &args, Duration::from_secs(10));
        let prefix = format!("{counter}:");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|w| w.strip_prefix(prefix.as_str()))
            .filter_map(|v| v.parse::<u64>().ok())
            .max()
    }

    /// Runs a command in the client namespace (time limit 90 s).
    pub fn exec_client<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.exec_in("client", args, Duration::from_secs(90))
    }

    /// GETs `url` from the client namespace, the body thrown away: stdout
    /// is the HTTP status (`curl -sS --max-time 10 -o /dev/null -w
    /// %{http_code}`), stderr curl's error if any.
    pub fn get_status(&self, url: &str) -> Output {
        self.get_status_within(url, 10)
    }

    /// [`Lab::get_status`] with curl allowed `max_secs`.
    pub fn get_status_within(&self, url: &str, max_secs: u32) -> Output {
        self.exec_in(
            "client",
            &[
                "curl",
                "-sS",
                "--max-time",
                &max_secs.to_string(),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                url,
            ],
            // The namespace's own limit, with slack over curl's.
            Duration::from_secs(u64::from(max_secs) + 10),
        )
    }

    /// `GET path` on node `i`'s metrics listener (`10.77.0.<i>:9464`) from
    /// the client: the status code and the body.
    pub fn metrics_get(&self, i: u32, path: &str) -> (u16, String) {
        let out = self.exec_client(&[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            &format!("http://10.77.0.{i}:9464{path}"),
        ]);
        assert!(
            out.status.success(),
            "[{}] curl n{i}{path}\n{}",
            self.test,
            describe(&out)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').expect("curl -w adds a line");
        (
            code.parse()
                .unwrap_or_else(|_| panic!("no status in {text:?}")),
            body.to_owned(),
        )
    }

    /// Node `i`'s Prometheus metrics (`/metrics` answered 200).
    pub fn scrape_metrics(&self, i: u32) -> String {
        let (code, body) = self.metrics_get(i, "/metrics");
        assert_eq!(
            code, 200,
            "[{}] scraping n{i}'s metrics failed\n{body}",
            self.test
        );
        body
    }

    /// Runs python3 `script` in the client namespace with `args`.
    pub fn python<S: AsRef<OsStr>>(&self, script: &str, args: &[S], timeout: Duration) -> Output {
        let mut argv: Vec<&OsStr> =
            vec![OsStr::new("python3"), OsStr::new("-c"), OsStr::new(script)];
        argv.extend(args.iter().map(AsRef::as_ref));
        self.exec_in("client", &argv, timeout)
    }

    /// One request for `path` on a new connection from the client, allowed
    /// `max_secs`: its HTTP status (0: none) and how long it took (s).
    pub fn timed_get(&self, path: &str, max_secs: u32) -> (u16, f64) {
        let max = max_secs.to_string();
        let out = self.exec_client(&[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            &max,
            "-w",
            "%{http_code} %{time_total}",
            &url(path),
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut w = text.split_whitespace();
        (
            w.next().and_then(|c| c.parse().ok()).unwrap_or(0),
            w.next().and_then(|c| c.parse().ok()).unwrap_or(f64::NAN),
        )
    }

    /// One GET of `url` from the client namespace, curl allowed `max_secs`
    /// (`extra`: more curl options): the HTTP status (0: none), the
    /// seconds curl took (NaN: unknown), whether the body's SHA-256 is
    /// `want_sha`; and curl's output, to describe a failure.
    pub fn checked_get(
        &self,
        url: &str,
        max_secs: u32,
        extra: &[&str],
        want_sha: &str,
    ) -> ((u16, f64, bool), Output) {
        let max = max_secs.to_string();
        let mut args = vec!["curl", "-sS", "--max-time", &max];
        args.extend_from_slice(extra);
        args.extend(["-w", "\n%{http_code} %{time_total}", url]);
        let out = self.exec_in(
            "client",
            &args,
            Duration::from_secs(u64::from(max_secs) + 15),
        );
        let (body, code, secs) = curl_body_code_secs(&out.stdout);
        let ok = sha256_hex(body) == want_sha;
        ((code, secs, ok), out)
    }

    /// Fetches `path` from the service with curl; panics unless 2xx.
    pub fn get(&self, path: &str) -> Vec<u8> {
        let out = self.exec_client(&["curl", "-sS", "--fail", "--max-time", "60", &url(path)]);
        assert_success(&out, &format!("[{}] curl {path}", self.test));
        out.stdout
    }

    /// The docroot the lab serves under /static/.
    pub fn docroot(&self) -> PathBuf {
        PathBuf::from(
            self.status["docroot"]
                .as_str()
                .expect("lab status has a docroot"),
        )
    }

    /// The status captured right after `lab up`.
    pub fn initial_status(&self) -> &serde_json::Value {
        &self.status
    }

    /// `/run/hotpair/lab-PREFIX`.
    /// The CA to trust when the lab serves HTTPS (`lab up --tls`).
    pub fn tls_ca(&self) -> Option<PathBuf> {
        let ca = self.state_dir().join("tls").join("ca.pem");
        ca.is_file().then_some(ca)
    }

    /// The URL of `path` on the service address: `https://` (port 443)
    /// when the lab serves HTTPS, else [`url`] (a `--tls` lab serves that
    /// too, on port 80).
    pub fn service_url(&self, path: &str) -> String {
        match self.tls_ca() {
            Some(_) => format!("https://{SERVICE}{path}"),
            None => url(path),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        Path::new("/run/hotpair").join(format!("lab-{}", self.prefix))
    }

    /// Starts `args` inside namespace `PREFIX-<ns>` in the background, its
    /// stdout and stderr going to files in `dir` named after `tag`.
    pub fn spawn_in<S: AsRef<OsStr>>(
        &self,
        ns: &str,
        args: &[S],
        dir: &Path,
        tag: &str,
    ) -> Background {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["lab", "exec", "--prefix", &self.prefix, ns, "--"])
            .args(args);
        Background::spawn(cmd, dir, tag)
    }

    /// curl in the client namespace fetching `url` into `out` at `rate`
    /// (`-sS --fail --max-time 45 --limit-rate RATE -o OUT`, then `extra`
    /// before the URL); its output and logs in `dir` under `tag`.
    pub fn curl_download(
        &self,
        url: &str,
        rate: &str,
        out: &Path,
        extra: &[&str],
        dir: &Path,
        tag: &str,
    ) -> Background {
        self.spawn_in(
            "client",
            &curl_download_args(url, rate, out, extra),
            dir,
            tag,
        )
    }

    /// curl in the client namespace POSTing the file `body` to `url` at
    /// `rate` (`--max-time 45`), printing the reply's head (`-D -`) and
    /// body; its output and logs in `dir` under `tag`.
    pub fn curl_upload(
        &self,
        url: &str,
        rate: &str,
        body: &Path,
        dir: &Path,
        tag: &str,
    ) -> Background {
        let at_file = format!("@{}", body.display());
        self.spawn_in(
            "client",
            &[
                "curl",
                "-sS",
                "--max-time",
                "45",
                "--limit-rate",
                rate,
                "-D",
                "-",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &at_file,
                url,
            ],
            dir,
            tag,
        )
    }

    /// `hotpair lab kill NODE` (SIGKILL); returns the instant just before.
    pub fn kill(&self, node: &str) -> Instant {
        let t = Instant::now();
        let out = self.lab(&["kill", node], Duration::from_secs(30));
        assert_success(&out, &format!("[{}] lab kill {node}", self.test));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("killed node"),
            "[{}] lab kill {node}: the node was not running\n{}",
            self.test,
            describe(&out)
        );
        t
    }

    /// Whether `lab status` reports node `name` alive.
    pub fn node_alive(&self, name: &str) -> bool {
        let st = self.status_json();
        status_node(&st, name).is_some_and(|n| n["alive"] == true)
    }

    /// The last `lines` lines of every node log.
    pub fn node_logs(&self, lines: usize) -> String {
        let dir = Path::new("/run/hotpair").join(format!("lab-{}", self.prefix));
        let mut s = String::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return s;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read(&log).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            let all: Vec<&str> = text.lines().collect();
            s.push_str(&format!("--- tail of {}:\n", log.display()));
            for l in &all[all.len().saturating_sub(lines)..] {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if thread::panicking() {
            let lines = std::env::var("HOTPAIR_LOG_LINES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(40);
            eprintln!(
                "[{}] test failed; logs of lab {}:\n{}",
                self.test,
                self.prefix,
                self.node_logs(lines)
            );
        }
        let mut cmd = Command::new(&self.bin);
        cmd.args(["lab", "down", "--prefix", &self.prefix]);
        match cmd.stdin(Stdio::null()).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "[{}] WARNING: lab down --prefix {} failed\n{}",
                self.test,
                self.prefix,
                describe(&out)
            ),
            Err(e) => eprintln!(
                "[{}] WARNING: cannot run lab down --prefix {}: {e}",
                self.test, self.prefix
            ),
        }
    }
}

/// Lowercase hex SHA-256 of a file, with coreutils' `sha256sum` (much faster
/// than the debug-built hasher for the 20-50 MB files of the failover tests).
pub fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run sha256sum: {e}"));
    assert_success(&out, &format!("sha256sum {}", path.display()));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Writes a line straight to the process's stderr, past the test harness's
/// output capture, so it shows for passing tests too.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p =
            std::env::temp_dir().join(format!("hotpair-netns-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("creating a temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> String {
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).expect("reading file");
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` pseudo-random bytes (xorshift64*, seeded from the clock and pid).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let k = u64::from(COUNTER.fetch_add(1, Ordering::SeqCst));
    let mut s =
        (t ^ (u64::from(std::process::id()) << 32) ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        v.extend_from_slice(&s.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Python helpers prepended to the client scripts: a buffered reader and an
/// HTTP/1.1 response parser (Content-Length, chunked, close-delimited, HEAD).
pub const PY_HTTP: &str = r#"
import base64, hashlib, json, socket, sys, time

SERVICE = ("10.77.0.10", 80)

def connect(timeout=10.0):
    return socket.create_connection(SERVICE, timeout=timeout)

class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.error = None

    def fill(self):
        if self.eof:
            return False
        try:
            d = self.sock.recv(1 << 16)
        except socket.timeout:
            self.error = "timeout"
            return False
        except OSError as e:
            self.error = type(e).__name__
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def until(self, sep):
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            start = max(0, len(self.buf) - len(sep))
            if not self.fill():
                return None

    def exact(self, n):
        while len(self.buf) < n:
            if not self.fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def rest(self):
        while self.fill():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

def read_response(r, head_request=False):
    """One response: dict(status, headers{lower: [values]}, body) or None."""
    while True:
        head = r.until(b"\r\n\r\n")
        if head is None:
            return None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            return {"status": None, "bad_status_line": lines[0], "headers": {}, "body": b""}
        headers = {}
        for l in lines[1:]:
            if l:
                k, _, v = l.partition(":")
                headers.setdefault(k.strip().lower(), []).append(v.strip())
        if 100 <= status < 200:
            continue
        break
    if head_request or status in (204, 304):
        body = b""
    elif "chunked" in ",".join(headers.get("transfer-encoding", [])).lower():
        body = bytearray()
        while True:
            line = r.until(b"\r\n")
            if line is None:
                break
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while r.until(b"\r\n") not in (b"\r\n", None):
                    pass
                break
            body += r.exact(size) or b""
            r.exact(2)
        body = bytes(body)
    elif "content-length" in headers:
        body = r.exact(int(headers["content-length"][0]))
        if body is None:
            body = b""
            headers["x-truncated"] = ["1"]
    else:
        body = r.rest()
    return {"status": status, "headers": headers, "body": body}

def summary(resp):
    if resp is None:
        return None
    return {
        "status": resp["status"],
        "headers": resp["headers"],
        "len": len(resp["body"]),
        "sha256": hashlib.sha256(resp["body"]).hexdigest(),
        "body_prefix": resp["body"][:200].decode("latin-1"),
        "bad_status_line": resp.get("bad_status_line"),
    }
"#;

/// Runs a python client script (PY_HTTP + `script`) in the lab's client
/// namespace and parses the JSON it prints last.
pub fn python_json(lab: &Lab, script: &str, args: &[&str], timeout: Duration) -> serde_json::Value {
    let full = format!("{PY_HTTP}\n{script}");
    let out = lab.python(&full, args, timeout);
    assert_success(&out, &format!("[{}] python client", lab.test));
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or("");
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("python client printed no JSON ({e})\n{}", describe(&out)))
}

/// Node `name`'s entry in a `lab status --json` document.
pub fn status_node<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == name)
}

/// The addresses of namespace `ns` in a `lab status --json` document
/// (each with its `interface` and `address`).
pub fn ns_addresses<'a>(
    status: &'a serde_json::Value,
    ns: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> {
    status["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |n| n["name"] == ns)
        .flat_map(|n| n["addresses"].as_array().into_iter().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_short_and_distinct() {
        let a = unique_prefix();
        let b = unique_prefix();
        assert_ne!(a, b);
        assert!(a.len() <= 8 && b.len() <= 8);
    }

    #[test]
    fn random_differs() {
        let a = random_bytes(1000);
        assert_eq!(a.len(), 1000);
        assert_ne!(a, random_bytes(1000));
    }
}
