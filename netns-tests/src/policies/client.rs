//! The python keep-alive client of the policy scenarios: a plan of requests
//! on one connection, each reply checked against what the docroot or the
//! upstream app makes.

use super::*;

// ---- the python keep-alive client -------------------------------------------

/// A plan: a list of `{"path", "rate"?, "mark"?}` requests on one
/// `http.client` connection, or `"PAUSE"` (print READY, wait for a line on
/// stdin). `rate` throttles the body's reading (bytes/s); `mark` prints
/// `INREPLY n` once that many body bytes arrived. Prints one JSON list of
/// results at the end, with the wall-clock times of each request's start,
/// head and end and the socket it used.
pub(super) const KEEPALIVE_PLAN_SCRIPT: &str = r#"
import hashlib, http.client, json, sys, time
plan = json.loads(sys.argv[1])
conn = http.client.HTTPConnection("10.77.0.10", 80, timeout=30)
results = []
def fetch(item):
    p = item["path"]
    rate = item.get("rate")
    mark = item.get("mark")
    entry = {"path": p, "t_start": time.time()}
    try:
        conn.request("GET", p)
        r = conn.getresponse()
        entry["t_head"] = time.time()
        h = hashlib.sha256()
        n = 0
        marked = False
        while True:
            chunk = r.read(65536)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
            if mark is not None and not marked and n >= mark:
                marked = True
                print("INREPLY %d" % n, flush=True)
            if rate:
                ahead = n / rate - (time.time() - entry["t_head"])
                if ahead > 0:
                    time.sleep(ahead)
        entry.update(status=r.status, len=n, sha256=h.hexdigest(), will_close=r.will_close)
    except Exception as e:
        entry["error"] = "%s: %s" % (type(e).__name__, e)
    entry["t_end"] = time.time()
    s = conn.sock
    entry["sock_id"] = id(s) if s is not None else None
    entry["local"] = list(s.getsockname()) if s is not None else None
    results.append(entry)
for item in plan:
    if item == "PAUSE":
        print("READY", flush=True)
        sys.stdin.readline()
    else:
        fetch(item)
print("RESULTS " + json.dumps(results), flush=True)
"#;

/// A python keep-alive client running a plan in the client namespace.
pub(super) struct PyClient {
    pub(super) tag: String,
    pub(super) stdin: Option<ChildStdin>,
    /// Killed when the client is dropped.
    pub(super) proc: ChildLines,
}

impl PyClient {
    pub(super) fn start(lab: &Lab, tag: &str, plan: &serde_json::Value) -> PyClient {
        let arg = plan.to_string();
        let mut proc = ChildLines::spawn(
            Command::new(hotpair_bin())
                .args(["lab", "exec", "--prefix", &lab.prefix, "client", "--"])
                .args(["python3", "-c", KEEPALIVE_PLAN_SCRIPT, &arg])
                .stdin(Stdio::piped()),
        )
        .expect("running python3 in the client namespace");
        PyClient {
            tag: tag.to_owned(),
            stdin: proc.take_stdin(),
            proc,
        }
    }

    /// Waits for a line starting with `prefix`; panics (with the client's
    /// stderr) when it does not come.
    pub(super) fn wait_line(&mut self, lab: &Lab, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.proc.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(e) => {
                    let err = self.proc.kill_and_stderr();
                    panic!(
                        "[{}] keep-alive client {}: no `{prefix}` line within {timeout:?} \
                         ({e}); stderr:\n{err}",
                        lab.test, self.tag,
                    );
                }
            }
        }
    }

    /// Lets a paused client go on.
    pub(super) fn go(&mut self) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = s.write_all(b"GO\n");
            let _ = s.flush();
        }
    }

    /// The client's results, or why there are none.
    pub(super) fn results(mut self, timeout: Duration) -> Result<Vec<serde_json::Value>, String> {
        let deadline = Instant::now() + timeout;
        let line = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.proc.lines.recv_timeout(left) {
                Ok(l) if l.starts_with("RESULTS ") => break Ok(l),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        self.stdin = None;
        let err = self.proc.kill_and_stderr();
        let line = line.map_err(|e| {
            format!(
                "keep-alive client {} printed no results within {timeout:?} ({e}); stderr:\n{err}",
                self.tag
            )
        })?;
        let v: serde_json::Value = serde_json::from_str(&line["RESULTS ".len()..])
            .map_err(|e| format!("keep-alive client {}: bad JSON ({e}): {line}", self.tag))?;
        v.as_array()
            .cloned()
            .ok_or_else(|| format!("keep-alive client {}: not a list: {v}", self.tag))
    }
}

pub(super) fn req(path: &str) -> serde_json::Value {
    serde_json::json!({ "path": path })
}

/// What a reply to `path` must be.
pub(super) enum Expect {
    /// Exactly this body (SHA-256, length).
    Exact(String, u64),
    /// `generate`: random bytes, this many.
    Length(u64),
}

/// The upstream app's `?size=N` body: byte k is (k*131+17) % 251.
pub(super) fn upstream_pattern(n: u64) -> Vec<u8> {
    (0..n).map(|k| ((k * 131 + 17) % 251) as u8).collect()
}

pub(super) fn expect(docroot: &Path, path: &str) -> Expect {
    let size = |p: &str| -> Option<u64> {
        p.split_once("?size=")
            .map(|(_, n)| n.parse().expect("size in the plan"))
    };
    if let Some(f) = path.strip_prefix("/static/") {
        let file = docroot.join(f);
        let len = std::fs::metadata(&file).expect("docroot file").len();
        Expect::Exact(sha256_file(&file), len)
    } else if path.starts_with("/non-deterministic/") {
        Expect::Length(size(path).expect("generate requests name a size"))
    } else if path.starts_with("/app/") {
        let body = match size(path) {
            Some(n) => upstream_pattern(n),
            None => format!("hotpair lab upstream: GET {path}\n").into_bytes(),
        };
        Expect::Exact(crate::sha256_hex(&body), body.len() as u64)
    } else {
        panic!("no expectation for {path}")
    }
}

/// Checks every reply of a keep-alive client: no error, 200, the expected
/// body, the first connection's socket throughout. Returns failures.
pub(super) fn check_replies(
    docroot: &Path,
    who: &str,
    plan: &serde_json::Value,
    results: &[serde_json::Value],
) -> Vec<String> {
    let mut failures = Vec::new();
    let paths: Vec<&str> = plan
        .as_array()
        .expect("plan")
        .iter()
        .filter_map(|i| i["path"].as_str())
        .collect();
    if results.len() != paths.len() {
        failures.push(format!(
            "{who}: {} results for {} requests: {results:?}",
            results.len(),
            paths.len()
        ));
        return failures;
    }
    let first = &results[0];
    for (i, (r, path)) in results.iter().zip(&paths).enumerate() {
        if r.get("error").is_some() || r["status"] != 200 {
            failures.push(format!("{who}: request {i} ({path}) failed: {r}"));
            continue;
        }
        let len = r["len"].as_u64().unwrap_or(u64::MAX);
        match expect(docroot, path) {
            Expect::Exact(sha, want_len) => {
                if len != want_len || r["sha256"] != sha.as_str() {
                    failures.push(format!(
                        "{who}: request {i} ({path}): body differs from the expected one \
                         ({len} bytes, want {want_len}; sha256 {} want {sha})",
                        r["sha256"]
                    ));
                }
            }
            Expect::Length(want_len) => {
                if len != want_len {
                    failures.push(format!(
                        "{who}: request {i} ({path}): {len} bytes, want {want_len}"
                    ));
                }
            }
        }
        if (&r["sock_id"], &r["local"]) != (&first["sock_id"], &first["local"]) {
            failures.push(format!(
                "{who}: request {i} ({path}) did not use the first connection (socket \
                 reopened): {r} vs first {first}"
            ));
        }
    }
    failures
}

/// Result `i`'s time `field` (seconds since the epoch).
pub(super) fn time_of(results: &[serde_json::Value], i: usize, field: &str) -> f64 {
    results
        .get(i)
        .and_then(|r| r[field].as_f64())
        .unwrap_or(f64::NAN)
}
