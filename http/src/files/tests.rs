use super::*;
use crate::{Limits, ServerConn};
use std::sync::atomic::{AtomicU32, Ordering};

/// A scratch directory removed on drop (no tempfile dependency).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "hotpair-http-files-{}-{tag}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, rel: &str, content: &[u8]) {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tree() -> TempDir {
    let t = TempDir::new("tree");
    t.write("a.txt", b"hello");
    t.write("index.html", b"<h1>root</h1>");
    t.write("sub/b.css", b"body{}");
    t.write("sub/index.html", b"sub index");
    t.write("sub/deeper/c.JSON", b"{}");
    t.write("noext", b"x");
    t.write("with space.txt", b"spaced");
    fs::create_dir_all(t.0.join("empty")).unwrap();
    t
}

fn get(method: Method, path: &str) -> Request {
    Request {
        headers: vec![("Host".into(), b"x".to_vec())],
        ..Request::new(method, path)
    }
}

fn etag(content: &[u8]) -> String {
    let d = Sha256::digest(content);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{}\"", &hex[..16])
}

#[test]
fn loads_tree_and_counts() {
    let t = tree();
    let f = Files::load(&t.0, "/static/").unwrap();
    assert_eq!(f.len(), 7);
    assert!(!f.is_empty());
    assert_eq!(f.total_bytes(), 5 + 13 + 6 + 9 + 2 + 1 + 6);
    assert_eq!(f.prefix(), "/static");
    assert_eq!(f.get("sub/b.css").map(|b| &b[..]), Some(&b"body{}"[..]));
    assert!(Files::load(&t.0.join("a.txt"), "/").is_err());
    assert!(Files::load(&t.0.join("missing"), "/").is_err());
}

#[test]
fn serves_files_with_type_and_etag() {
    let t = tree();
    let f = Files::load(&t.0, "/static/").unwrap();
    let r = f.handle(&get(Method::Get, "/static/a.txt"));
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"hello");
    assert_eq!(
        r.get_header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(r.get_header("ETag"), Some(etag(b"hello").as_str()));
    assert_eq!(r.get_header("ETag").unwrap().len(), 18);
    assert!(r.get_header("Date").is_none() && r.get_header("Last-Modified").is_none());

    let r = f.handle(&get(Method::Get, "/static/sub/deeper/c.JSON"));
    assert_eq!(
        (r.status, r.get_header("content-type")),
        (200, Some("application/json"))
    );
    let r = f.handle(&get(Method::Get, "/static/noext"));
    assert_eq!(
        r.get_header("content-type"),
        Some("application/octet-stream")
    );
    let r = f.handle(&get(Method::Get, "/static/with space.txt"));
    assert_eq!(&r.body[..], b"spaced");

    // Zero-copy: two replies share the same allocation.
    let r2 = f.handle(&get(Method::Get, "/static/noext"));
    let r3 = f.handle(&get(Method::Get, "/static/noext"));
    assert_eq!(r2.body.as_ptr(), r3.body.as_ptr());

    // HEAD: same reply (the connection drops the body).
    let h = f.handle(&get(Method::Head, "/static/a.txt"));
    assert_eq!((h.status, &h.body[..]), (200, &b"hello"[..]));
}

#[test]
fn not_found_and_directories() {
    let t = tree();
    let f = Files::load(&t.0, "/static").unwrap();
    for p in [
        "/static/missing",
        "/static/sub/missing.css",
        "/other/a.txt",
        "/staticx/a.txt",
        "/",
        "/static/empty/",
        "/static/empty",
        "/static/a.txt/",
    ] {
        assert_eq!(f.handle(&get(Method::Get, p)).status, 404, "{p}");
    }
    let r = f.handle(&get(Method::Get, "/static/"));
    assert_eq!((r.status, &r.body[..]), (200, &b"<h1>root</h1>"[..]));
    assert_eq!(
        r.get_header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let r = f.handle(&get(Method::Get, "/static/sub/"));
    assert_eq!((r.status, &r.body[..]), (200, &b"sub index"[..]));
    let mut req = get(Method::Get, "/static/sub");
    req.query = Some("a=1".into());
    let r = f.handle(&req);
    assert_eq!(r.status, 301);
    assert_eq!(r.get_header("location"), Some("/static/sub/?a=1"));
    let r = f.handle(&get(Method::Get, "/static"));
    assert_eq!(
        (r.status, r.get_header("location")),
        (301, Some("/static/"))
    );

    // Root prefix.
    let f = Files::load(&t.0, "/").unwrap();
    assert_eq!(&f.handle(&get(Method::Get, "/a.txt")).body[..], b"hello");
    assert_eq!(&f.handle(&get(Method::Get, "/")).body[..], b"<h1>root</h1>");
}

#[test]
fn method_not_allowed() {
    let t = tree();
    let f = Files::load(&t.0, "/").unwrap();
    for m in [
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Options,
        Method::Patch,
    ] {
        let r = f.handle(&get(m, "/a.txt"));
        assert_eq!(r.status, 405);
        assert_eq!(r.get_header("Allow"), Some("GET, HEAD"));
    }
}

#[test]
fn if_none_match_gives_304() {
    let t = tree();
    let f = Files::load(&t.0, "/").unwrap();
    let tag = etag(b"hello");
    for value in [
        tag.clone(),
        format!("W/{tag}"),
        format!("\"zzz\", {tag}"),
        "*".into(),
    ] {
        let mut req = get(Method::Get, "/a.txt");
        req.headers
            .push(("If-None-Match".into(), value.clone().into_bytes()));
        let r = f.handle(&req);
        assert_eq!(r.status, 304, "{value}");
        assert!(r.body.is_empty());
        assert_eq!(r.get_header("etag"), Some(tag.as_str()));
    }
    let mut req = get(Method::Get, "/a.txt");
    req.headers
        .push(("if-none-match".into(), b"\"0000000000000000\"".to_vec()));
    assert_eq!(f.handle(&req).status, 200);
    req.headers
        .push(("if-none-match".into(), tag.clone().into_bytes()));
    assert_eq!(f.handle(&req).status, 304);

    // Through the connection: 304 has no body and no Content-Length.
    let mut conn = ServerConn::new(Limits::default(), crate::test_origin());
    let input = format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {tag}\r\n\r\n");
    conn.handle_input(input.as_bytes(), crate::test_origin());
    let req = conn.poll_request().unwrap();
    conn.send_response(req.index, f.handle(&req)).unwrap();
    let out = conn.poll_output().unwrap();
    assert_eq!(
        out,
        format!("HTTP/1.1 304 Not Modified\r\nETag: {tag}\r\n\r\n").as_bytes()
    );
}

#[test]
fn traversal_is_impossible() {
    let t = tree();
    let secret = TempDir::new("secret");
    secret.write("secret.txt", b"top secret");
    let f = Files::load(&t.0, "/static/").unwrap();
    // Hand-built requests (ServerConn would reject these with 400).
    for p in [
        "/static/../a.txt",
        "/static/sub/../../secret.txt",
        "/static/..",
        "/static/sub/..\\..\\x",
        "/static//a.txt",
        "/static/./a.txt",
        "/static/a.txt\0",
    ] {
        assert_eq!(f.handle(&get(Method::Get, p)).status, 404, "{p:?}");
    }
    // Through the connection: encoded traversal is refused before the handler.
    for target in [
        "/static/%2e%2e/a.txt",
        "/static/..%2f..%2fetc/passwd",
        "/static/sub%5c..%5c..%5cx",
        "/static/a.txt%00",
    ] {
        let mut conn = ServerConn::new(Limits::default(), crate::test_origin());
        let input = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        conn.handle_input(input.as_bytes(), crate::test_origin());
        assert!(conn.poll_request().is_none(), "{target}");
        assert!(conn
            .poll_output()
            .unwrap()
            .starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    }
}

#[test]
fn load_limit_names_the_file() {
    let t = TempDir::new("limit");
    t.write("a.bin", &[1u8; 100]);
    t.write("b.bin", &[2u8; 100]);
    assert_eq!(
        Files::load_with_limit(&t.0, "/", 200)
            .unwrap()
            .total_bytes(),
        200
    );
    let err = Files::load_with_limit(&t.0, "/", 150).unwrap_err();
    match &err {
        FilesError::TooLarge { path, limit } => {
            assert!(path.ends_with("b.bin"), "{path:?}");
            assert_eq!(*limit, 150);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("b.bin"));
}

#[cfg(unix)]
#[test]
fn symlinks_followed_and_loops_skipped() {
    let t = TempDir::new("links");
    t.write("real/f.txt", b"f");
    std::os::unix::fs::symlink(t.0.join("real"), t.0.join("alias")).unwrap();
    std::os::unix::fs::symlink(&t.0, t.0.join("real/loop")).unwrap();
    std::os::unix::fs::symlink(t.0.join("nowhere"), t.0.join("dangling")).unwrap();
    let f = Files::load(&t.0, "/").unwrap();
    assert_eq!(f.get("alias/f.txt").map(|b| &b[..]), Some(&b"f"[..]));
    assert_eq!(f.get("real/f.txt").map(|b| &b[..]), Some(&b"f"[..]));
    assert_eq!(f.len(), 2);
}

#[test]
fn content_types() {
    assert_eq!(content_type("a.HTML"), "text/html; charset=utf-8");
    assert_eq!(content_type("x.tar.gz"), "application/gzip");
    assert_eq!(content_type("x.woff2"), "font/woff2");
    assert_eq!(content_type("Makefile"), "application/octet-stream");
    assert_eq!(content_type(".hidden"), "application/octet-stream");
}
