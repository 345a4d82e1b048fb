//! Hostile and malformed input over raw sockets: the node answers each with
//! the right status (or closes), and keeps serving afterwards.

use std::time::Duration;

use hotpair_netns_tests::{python_json, url, Lab};
use serde_json::{json, Value};

/// Header timeout the lab is started with, so the slowloris case is quick.
const HEADER_TIMEOUT_MS: u64 = 2000;

/// Sends each case on its own connection. `mode` "response": read one reply;
/// "close": read until the server closes (or `timeout` passes).
const SCRIPT: &str = r#"
cases = json.loads(sys.argv[1])
out = []
for c in cases:
    res = {"name": c["name"], "status": None, "closed": False, "elapsed": None,
           "error": None, "body_prefix": "", "send_error": None}
    t0 = time.time()
    try:
        s = connect(timeout=c["timeout"])
    except OSError as e:
        res["error"] = "connect: %s" % e
        out.append(res)
        continue
    try:
        s.sendall(base64.b64decode(c["send"]))
    except OSError as e:
        res["send_error"] = type(e).__name__
    r = Reader(s)
    if c["mode"] == "close":
        data = r.rest()
        res["closed"] = r.eof
        res["error"] = r.error
        first = data.split(b"\r\n", 1)[0].decode("latin-1")
        parts = first.split(" ")
        if len(parts) >= 2 and parts[1].isdigit():
            res["status"] = int(parts[1])
        res["body_prefix"] = data[:200].decode("latin-1")
    else:
        resp = read_response(r)
        res["error"] = r.error
        if resp is not None:
            sm = summary(resp)
            res["status"] = sm["status"]
            res["body_prefix"] = sm["body_prefix"]
            res["bad_status_line"] = sm["bad_status_line"]
        else:
            res["closed"] = r.eof
    res["elapsed"] = round(time.time() - t0, 3)
    s.close()
    out.append(res)
print(json.dumps(out))
"#;

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

struct Case {
    name: &'static str,
    send: Vec<u8>,
    mode: &'static str,
    timeout: f64,
    /// Acceptable status codes (empty: none expected, e.g. slowloris).
    want: &'static [u64],
}

fn case(name: &'static str, send: impl Into<Vec<u8>>, want: &'static [u64]) -> Case {
    Case {
        name,
        send: send.into(),
        mode: "response",
        timeout: 10.0,
        want,
    }
}

#[test]
fn malformed_requests_get_errors_and_the_node_keeps_serving() {
    let timeout = HEADER_TIMEOUT_MS.to_string();
    let Some(lab) = Lab::up_with("bad_input", &["--http-header-timeout-ms", &timeout]) else {
        return;
    };
    let big_header = format!(
        "GET /static/1k.bin HTTP/1.1\r\nHost: 10.77.0.10\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let cases = vec![
        case("garbage line", "this is not http at all\r\n\r\n", &[400]),
        case("header section over 16 KiB", big_header, &[431]),
        case(
            "Content-Length over max_body_bytes",
            "POST /app/upload HTTP/1.1\r\nHost: 10.77.0.10\r\nContent-Length: 100000000\r\n\r\n",
            &[413],
        ),
        case(
            "unknown method BREW",
            "BREW / HTTP/1.1\r\nHost: 10.77.0.10\r\n\r\n",
            &[501],
        ),
        case(
            "Transfer-Encoding gzip",
            "POST /app/upload HTTP/1.1\r\nHost: 10.77.0.10\r\nTransfer-Encoding: gzip\r\n\r\n",
            &[501],
        ),
        case(
            "both Transfer-Encoding and Content-Length",
            "POST /app/upload HTTP/1.1\r\nHost: 10.77.0.10\r\nTransfer-Encoding: chunked\r\n\
             Content-Length: 5\r\n\r\n0\r\n\r\n",
            &[400],
        ),
        case(
            "dot-dot path",
            "GET /static/../../etc/passwd HTTP/1.1\r\nHost: 10.77.0.10\r\n\r\n",
            &[400, 404],
        ),
        case(
            "percent-encoded dot-dot path",
            "GET /static/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: 10.77.0.10\r\n\r\n",
            &[400, 404],
        ),
        case(
            "percent-encoded slash and dot-dot",
            "GET /static/..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: 10.77.0.10\r\n\r\n",
            &[400, 404],
        ),
        Case {
            name: "slowloris (partial head, then silence)",
            send: b"GET /static/1k.bin HTTP/1.1\r\nHost: 10.77.0.10\r\n".to_vec(),
            mode: "close",
            timeout: 15.0,
            want: &[],
        },
    ];
    let spec: Vec<Value> = cases
        .iter()
        .map(
            |c| json!({"name": c.name, "send": b64(&c.send), "mode": c.mode, "timeout": c.timeout}),
        )
        .collect();
    let arg = serde_json::to_string(&spec).unwrap();
    let v = python_json(&lab, SCRIPT, &[&arg], Duration::from_secs(120));
    let results = v.as_array().expect("a list of results");
    assert_eq!(results.len(), cases.len(), "{v}");

    let mut failures = Vec::new();
    for (c, r) in cases.iter().zip(results) {
        eprintln!("[bad_input] {}: {r}", c.name);
        let body = r["body_prefix"].as_str().unwrap_or("");
        if body.contains("root:") {
            failures.push(format!("{}: served /etc/passwd! {r}", c.name));
        }
        if c.mode == "close" {
            // Slowloris: closed by the server after about the header timeout.
            let elapsed = r["elapsed"].as_f64().unwrap_or(f64::MAX);
            let limit = HEADER_TIMEOUT_MS as f64 / 1000.0;
            if r["closed"] != true && r["error"].as_str().is_none_or(|e| e == "timeout") {
                failures.push(format!(
                    "{}: the server did not close the connection within {} s: {r}",
                    c.name, c.timeout
                ));
            } else if elapsed < limit * 0.5 || elapsed > limit + 5.0 {
                failures.push(format!(
                    "{}: closed after {elapsed} s, expected about {limit} s: {r}",
                    c.name
                ));
            } else if let Some(s) = r["status"].as_u64() {
                if s != 408 {
                    failures.push(format!(
                        "{}: only 408 (or nothing) may precede the close, got {s}: {r}",
                        c.name
                    ));
                }
            }
            continue;
        }
        match r["status"].as_u64() {
            Some(s) if c.want.contains(&s) => {}
            Some(s) => failures.push(format!("{}: expected {:?}, got {s}: {r}", c.name, c.want)),
            None => failures.push(format!(
                "{}: expected {:?}, got no reply (closed={}, error={}): {r}",
                c.name, c.want, r["closed"], r["error"]
            )),
        }
    }

    // The node keeps serving after all of that.
    let out = lab.get_status(&url("/static/index.html"));
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    if code != "200" {
        failures.push(format!(
            "normal GET after the bad input: expected 200, got {code:?} ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }

    assert!(
        failures.is_empty(),
        "{} of {} checks failed:\n  {}",
        failures.len(),
        cases.len() + 1,
        failures.join("\n  ")
    );
}

#[test]
fn base64_encoder() {
    assert_eq!(b64(b""), "");
    assert_eq!(b64(b"f"), "Zg==");
    assert_eq!(b64(b"fo"), "Zm8=");
    assert_eq!(b64(b"foo"), "Zm9v");
    assert_eq!(b64(b"foobar"), "Zm9vYmFy");
}
