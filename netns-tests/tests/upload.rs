//! Uploads through the `upstream` handler: the lab's upstream app replies with
//! the SHA-256 of the body it received, and echoes X-Request-Id (the
//! client's), X-Hotpair-Request-Id (the replication id) and X-Forwarded-For.

use hotpair_netns_tests::{
    assert_success, header, random_bytes, sha256_hex, split_head, status_code, url, Lab, TempDir,
};

fn upload(test: &str, chunked: bool) {
    let Some(lab) = Lab::up(test) else {
        return;
    };
    let tmp = TempDir::new(test);
    let data = random_bytes(5 * 1024 * 1024);
    let file = tmp.path().join("upload.bin");
    std::fs::write(&file, &data).unwrap();
    let want = sha256_hex(&data);

    let at_file = format!("@{}", file.display());
    let u = url("/app/upload");
    let mut args = vec![
        "curl",
        "-sS",
        "--max-time",
        "60",
        "-D",
        "-",
        "-H",
        "Content-Type: application/octet-stream",
        "-H",
        "X-Request-Id: client-chose-this",
        "--data-binary",
        &at_file,
    ];
    if chunked {
        args.extend(["-H", "Transfer-Encoding: chunked"]);
    }
    args.push(&u);
    let out = lab.exec_client(&args);
    assert_success(&out, &format!("[{test}] curl upload"));
    let (head, body) = split_head(&out.stdout);
    assert_eq!(status_code(&head), 200, "[{test}] reply head:\n{head}");
    assert_eq!(
        String::from_utf8_lossy(body).trim(),
        want,
        "[{test}] the upstream saw a different body than was sent"
    );
    // The client's own id reaches the application untouched.
    assert_eq!(
        header(&head, "x-request-id").as_deref(),
        Some("client-chose-this"),
        "[{test}] the client's X-Request-Id:\n{head}"
    );
    let rid = header(&head, "x-hotpair-request-id").unwrap_or_else(|| {
        panic!("[{test}] no X-Hotpair-Request-Id in the reply (the proxy must add one):\n{head}")
    });
    assert!(!rid.is_empty(), "[{test}] empty X-Hotpair-Request-Id");
    // The client's address, as the application sees it: the start of the
    // replication id ("ip:port#isn-index").
    let client_ip = rid.split(':').next().unwrap_or_default();
    assert_eq!(
        header(&head, "x-forwarded-for").as_deref(),
        Some(client_ip),
        "[{test}] X-Forwarded-For:\n{head}"
    );
}

#[test]
fn upload_5mb_content_length() {
    upload("upload_cl", false);
}

#[test]
fn upload_5mb_chunked() {
    upload("upload_chunked", true);
}
