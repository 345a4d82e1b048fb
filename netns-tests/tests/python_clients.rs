//! Python clients: http.client keep-alive, and 50 pipelined GETs in one write.

use std::time::Duration;

use hotpair_netns_tests::{python_json, sha256_file, Lab};

const FILES: [&str; 4] = ["1k.bin", "5k.bin", "index.html", "50k.bin"];

#[test]
fn http_client_keepalive_20_requests_on_one_connection() {
    let Some(lab) = Lab::up("py_keepalive") else {
        return;
    };
    let paths: Vec<String> = (0..20)
        .map(|i| format!("/static/{}", FILES[i % FILES.len()]))
        .collect();
    let script = r#"
import http.client
c = http.client.HTTPConnection("10.77.0.10", 80, timeout=10)
out = []
for p in sys.argv[1:]:
    c.request("GET", p)
    r = c.getresponse()
    body = r.read()
    out.append({"path": p, "status": r.status, "len": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "port": c.sock.getsockname()[1] if c.sock else None,
                "will_close": r.will_close})
c.close()
print(json.dumps(out))
"#;
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let v = python_json(&lab, script, &args, Duration::from_secs(60));
    let replies = v.as_array().expect("a list of replies");
    assert_eq!(replies.len(), 20, "{v}");
    let docroot = lab.docroot();
    let first_port = &replies[0]["port"];
    for (i, r) in replies.iter().enumerate() {
        let name = FILES[i % FILES.len()];
        assert_eq!(r["status"], 200, "request {i} ({name}): {r}");
        assert_eq!(
            r["sha256"],
            sha256_file(&docroot.join(name)),
            "request {i} ({name}): body differs from the file: {r}"
        );
        assert_eq!(
            r["will_close"], false,
            "request {i}: server closes keep-alive: {r}"
        );
        assert_eq!(
            &r["port"], first_port,
            "request {i} went over a new connection (local port changed): {r}"
        );
    }
}

#[test]
fn fifty_pipelined_gets_in_one_write() {
    let Some(lab) = Lab::up("py_pipeline") else {
        return;
    };
    let names: Vec<&str> = (0..50)
        .map(|i| FILES[(i * 7 + i / 3) % FILES.len()])
        .collect();
    let script = r#"
names = sys.argv[1:]
reqs = b"".join(
    ("GET /static/%s HTTP/1.1\r\nHost: 10.77.0.10\r\nX-Seq: %d\r\n\r\n" % (n, i)).encode()
    for i, n in enumerate(names))
s = connect(timeout=15)
s.sendall(reqs)          # all 50 requests in one write
r = Reader(s)
out = []
for i in range(len(names)):
    resp = read_response(r)
    if resp is None:
        out.append({"missing": True, "error": r.error})
        break
    out.append(summary(resp))
s.close()
print(json.dumps(out))
"#;
    let v = python_json(&lab, script, &names, Duration::from_secs(60));
    let replies = v.as_array().expect("a list of replies");
    let docroot = lab.docroot();
    assert_eq!(
        replies.len(),
        50,
        "expected 50 replies, got {}: last {}",
        replies.len(),
        replies.last().unwrap_or(&serde_json::Value::Null)
    );
    for (i, (r, name)) in replies.iter().zip(&names).enumerate() {
        assert_eq!(r["status"], 200, "pipelined reply {i} ({name}): {r}");
        assert_eq!(
            r["sha256"],
            sha256_file(&docroot.join(name)),
            "pipelined reply {i} should be {name} (replies out of order or corrupt): {r}"
        );
    }
}

#[test]
fn burst_of_64_simultaneous_connections_is_accepted() {
    // wrk opens all its connections at once; so do browsers and proxies. A
    // burst of SYNs must be queued (like a kernel listen backlog), not reset.
    let Some(lab) = Lab::up("py_burst") else {
        return;
    };
    let script = r#"
import select
n = int(sys.argv[1])
socks = []
for i in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(SERVICE)
    socks.append(s)
deadline = time.time() + 10
pending = set(range(n))
errors = {}
while pending and time.time() < deadline:
    _, w, _ = select.select([], [socks[i] for i in pending], [], 0.5)
    for s in w:
        i = socks.index(s)
        e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if e:
            errors[i] = e
        pending.discard(i)
ok = 0
for i, s in enumerate(socks):
    if i in errors or i in pending:
        continue
    s.setblocking(True)
    s.settimeout(10)
    try:
        s.sendall(b"GET /static/1k.bin HTTP/1.1\r\nHost: 10.77.0.10\r\nConnection: close\r\n\r\n")
        resp = read_response(Reader(s))
        if resp and resp["status"] == 200 and len(resp["body"]) == 1024:
            ok += 1
    except OSError as e:
        errors[i] = str(e)
for s in socks:
    s.close()
print(json.dumps({"n": n, "ok": ok, "refused": len(errors), "pending": len(pending),
                  "errors": sorted(set(str(v) for v in errors.values()))}))
"#;
    let v = python_json(&lab, script, &["64"], Duration::from_secs(60));
    assert_eq!(
        v["ok"], 64,
        "of 64 connections opened at once, not all were accepted and served \
         (refused = connect error such as ECONNREFUSED=111 from a RST): {v}"
    );
}
