//! The `files` handler: every docroot file byte for byte, HEAD, ETag and 304.

use std::time::Duration;

use hotpair_netns_tests::{
    assert_success, header, python_json, sha256_file, sha256_hex, split_head, status_code, url, Lab,
};

#[test]
fn every_docroot_file_is_served_byte_for_byte() {
    let Some(lab) = Lab::up("static_files") else {
        return;
    };
    let docroot = lab.docroot();
    let mut names: Vec<String> = std::fs::read_dir(&docroot)
        .expect("reading the docroot")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for expected in ["1k.bin", "5k.bin", "50k.bin", "50m.bin", "index.html"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {}",
            docroot.display()
        );
    }
    for name in &names {
        let path = docroot.join(name);
        let body = lab.get(&format!("/static/{name}"));
        let want_len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(body.len() as u64, want_len, "/static/{name}: length");
        assert_eq!(
            sha256_hex(&body),
            sha256_file(&path),
            "/static/{name}: SHA-256 of the body differs from the file's"
        );
    }
}

#[test]
fn head_has_length_and_no_body() {
    let Some(lab) = Lab::up("static_head") else {
        return;
    };
    // HEAD then GET pipelined on one connection: if the HEAD reply carried a
    // body, the GET reply would not parse.
    let script = r#"
s = connect()
s.sendall(b"HEAD /static/5k.bin HTTP/1.1\r\nHost: 10.77.0.10\r\n\r\n"
          b"GET /static/index.html HTTP/1.1\r\nHost: 10.77.0.10\r\nConnection: close\r\n\r\n")
r = Reader(s)
head = summary(read_response(r, head_request=True))
get = summary(read_response(r))
extra = r.rest()
print(json.dumps({"head": head, "get": get, "extra": len(extra)}))
"#;
    let v = python_json(&lab, script, &[], Duration::from_secs(30));
    assert_eq!(v["head"]["status"], 200, "HEAD reply: {v}");
    assert_eq!(
        v["head"]["headers"]["content-length"][0], "5120",
        "HEAD must announce the GET body length: {v}"
    );
    assert_eq!(
        v["get"]["status"], 200,
        "the GET after HEAD did not parse, so HEAD sent a body: {v}"
    );
    let index = lab.docroot().join("index.html");
    assert_eq!(v["get"]["sha256"], sha256_file(&index), "{v}");
    assert_eq!(v["extra"], 0, "bytes after the last reply: {v}");
}

#[test]
fn etag_and_if_none_match() {
    let Some(lab) = Lab::up("static_etag") else {
        return;
    };
    let u = url("/static/50k.bin");
    let out = lab.exec_client(&[
        "curl",
        "-sS",
        "--max-time",
        "30",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &u,
    ]);
    assert_success(&out, "curl -D - /static/50k.bin");
    let (head, _) = split_head(&out.stdout);
    assert_eq!(status_code(&head), 200, "{head}");
    let etag = header(&head, "etag").unwrap_or_else(|| panic!("no ETag in:\n{head}"));
    assert!(!etag.is_empty(), "empty ETag");

    let inm = format!("If-None-Match: {etag}");
    let out = lab.exec_client(&["curl", "-sS", "--max-time", "30", "-D", "-", "-H", &inm, &u]);
    assert_success(&out, "curl If-None-Match");
    let (head, body) = split_head(&out.stdout);
    assert_eq!(status_code(&head), 304, "If-None-Match {etag}:\n{head}");
    assert!(body.is_empty(), "304 with a body of {} bytes", body.len());

    // A different tag still gets the file.
    let out = lab.exec_client(&[
        "curl",
        "-sS",
        "--max-time",
        "30",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "If-None-Match: \"not-the-tag\"",
        &u,
    ]);
    assert_success(&out, "curl If-None-Match other");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}
