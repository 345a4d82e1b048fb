//! ServerConn tests. Time is synthetic: one `crate::test_origin()` per test as the
//! base, every other instant is `base + offset`.

use super::chunked::MAX_CHUNK_EXT;
use super::head::MAX_HEADERS;
use super::*;
use crate::{reason_phrase, Method};
use std::time::Duration;

fn base() -> Instant {
    crate::test_origin()
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

/// The test handler: echoes method, path, query and body.
fn respond(req: &Request) -> Response {
    let mut body = format!("{} {}", req.method, req.path);
    if let Some(q) = &req.query {
        body.push('?');
        body.push_str(q);
    }
    if !req.body.is_empty() {
        body.push_str(" body=");
        body.push_str(&String::from_utf8_lossy(&req.body));
    }
    Response::new(200)
        .header("X-Index", req.index.to_string())
        .body(body)
}

/// Expected bytes of `respond`'s reply (GET-like: body written).
fn ok(index: u64, body: &str, connection: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nX-Index: {index}\r\nContent-Length: {}\r\n{connection}\r\n{body}",
        body.len()
    )
}

const CLOSE: &str = "Connection: close\r\n";
const KEEP: &str = "Connection: keep-alive\r\n";

fn err_reply(status: u16) -> String {
    let body = format!("{status} {}\n", reason_phrase(status));
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason_phrase(status),
        body.len()
    )
}

#[allow(clippy::too_many_arguments)]
fn req(
    index: u64,
    method: Method,
    path: &str,
    query: Option<&str>,
    version: Version,
    headers: &[(&str, &str)],
    body: &str,
    keep_alive: bool,
) -> Request {
    Request {
        index,
        method,
        path: path.into(),
        query: query.map(str::to_owned),
        version,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: Bytes::copy_from_slice(body.as_bytes()),
        keep_alive,
    }
}

struct Run {
    reqs: Vec<Request>,
    out: Vec<u8>,
    conn: ServerConn,
    /// Bytes offered but never consumed.
    left: Vec<u8>,
}

fn drain(conn: &mut ServerConn, out: &mut Vec<u8>) -> bool {
    let mut any = false;
    while let Some(chunk) = conn.poll_output() {
        out.extend_from_slice(chunk);
        let n = chunk.len();
        conn.consume_output(n);
        any = true;
    }
    any
}

/// Feed `parts` one after another (all at time `t0`); after each, answer
/// every request with `respond` and drain the output; re-offer what was not
/// consumed.
fn drive(limits: Limits, parts: &[&[u8]]) -> Run {
    let t0 = base();
    let mut conn = ServerConn::new(limits, t0);
    let mut left: Vec<u8> = Vec::new();
    let mut reqs = Vec::new();
    let mut out = Vec::new();
    for part in parts {
        left.extend_from_slice(part);
        loop {
            let n = conn.handle_input(&left, t0);
            assert!(n <= left.len());
            left.drain(..n);
            let mut progress = n > 0;
            while let Some(r) = conn.poll_request() {
                conn.send_response(r.index, respond(&r)).unwrap();
                reqs.push(r);
                progress = true;
            }
            progress |= drain(&mut conn, &mut out);
            if !progress || left.is_empty() {
                break;
            }
        }
    }
    Run {
        reqs,
        out,
        conn,
        left,
    }
}

/// Whole, split in two at every offset, and one byte at a time: the parsed
/// requests and the output must be exactly as expected every time.
fn check_all_splits(limits: Limits, input: &[u8], want_reqs: &[Request], want_out: &str) -> Run {
    let whole = drive(limits, &[input]);
    assert_eq!(whole.reqs, want_reqs, "whole input");
    assert_eq!(String::from_utf8_lossy(&whole.out), want_out, "whole input");
    for k in 0..=input.len() {
        let run = drive(limits, &[&input[..k], &input[k..]]);
        assert_eq!(run.reqs, want_reqs, "split at {k}");
        assert_eq!(String::from_utf8_lossy(&run.out), want_out, "split at {k}");
        assert_eq!(run.conn.is_closed(), whole.conn.is_closed(), "split at {k}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let run = drive(limits, &bytes);
    assert_eq!(run.reqs, want_reqs, "one byte at a time");
    assert_eq!(
        String::from_utf8_lossy(&run.out),
        want_out,
        "one byte at a time"
    );
    assert_eq!(run.conn.is_closed(), whole.conn.is_closed());
    whole
}

fn check(input: &str, want_reqs: &[Request], want_out: &str) -> Run {
    check_all_splits(Limits::default(), input.as_bytes(), want_reqs, want_out)
}

use Method::*;
use Version::*;

// ---- the request set, split at every offset ------------------------------

#[test]
fn simple_get() {
    let run = check(
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        &[req(0, Get, "/", None, Http11, &[("Host", "a")], "", true)],
        "HTTP/1.1 200 OK\r\nX-Index: 0\r\nContent-Length: 5\r\n\r\nGET /",
    );
    assert!(!run.conn.wants_close() && !run.conn.is_closed());
    assert_eq!(run.conn.requests_in_flight(), 0);
}

#[test]
fn get_with_query_and_encoded_path() {
    check(
        "GET /search//a%20b/./c?q=1&x=%41 HTTP/1.1\r\nhost: a\r\nX-Multi: 1\r\nx-multi: 2\r\n\r\n",
        &[req(
            0,
            Get,
            "/search/a b/c",
            Some("q=1&x=%41"),
            Http11,
            &[("host", "a"), ("X-Multi", "1"), ("x-multi", "2")],
            "",
            true,
        )],
        &ok(0, "GET /search/a b/c?q=1&x=%41", ""),
    );
}

#[test]
fn head_reply_has_no_body() {
    check(
        "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n",
        &[req(0, Head, "/h", None, Http11, &[("Host", "a")], "", true)],
        "HTTP/1.1 200 OK\r\nX-Index: 0\r\nContent-Length: 7\r\n\r\n",
    );
}

#[test]
fn post_content_length() {
    check(
        "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        &[req(
            0,
            Post,
            "/p",
            None,
            Http11,
            &[("Host", "a"), ("Content-Length", "11")],
            "hello world",
            true,
        )],
        &ok(0, "POST /p body=hello world", ""),
    );
}

#[test]
fn post_chunked_with_extensions_and_trailer() {
    let input = "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5;ext=1;foo=\"b;a r\"\r\nhello\r\n\
                 6 ; x\r\n world\r\n\
                 00A\r\n, chunked!\r\n\
                 0;last=yes\r\nTrailer-A: 1\r\nX: y\r\n\r\n";
    check(
        input,
        &[req(
            0,
            Post,
            "/up",
            None,
            Http11,
            &[("Host", "a"), ("Transfer-Encoding", "chunked")],
            "hello world, chunked!",
            true,
        )],
        &ok(0, "POST /up body=hello world, chunked!", ""),
    );
}

#[test]
fn chunked_without_trailer_then_next_request() {
    check(
        "PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nDELETE /d HTTP/1.1\r\nHost: a\r\n\r\n",
        &[
            req(0, Put, "/c", None, Http11, &[("Host", "a"), ("Transfer-Encoding", "Chunked")], "abc", true),
            req(1, Delete, "/d", None, Http11, &[("Host", "a")], "", true),
        ],
        &(ok(0, "PUT /c body=abc", "") + &ok(1, "DELETE /d", "")),
    );
}

#[test]
fn three_pipelined_requests() {
    let input = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\
                 POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
                 GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let run = check(
        input,
        &[
            req(0, Get, "/1", None, Http11, &[("Host", "a")], "", true),
            req(
                1,
                Post,
                "/2",
                None,
                Http11,
                &[("Host", "a"), ("Content-Length", "3")],
                "abc",
                true,
            ),
            req(
                2,
                Get,
                "/3",
                None,
                Http11,
                &[("Host", "a"), ("Connection", "close")],
                "",
                false,
            ),
        ],
        &(ok(0, "GET /1", "") + &ok(1, "POST /2 body=abc", "") + &ok(2, "GET /3", CLOSE)),
    );
    assert!(run.conn.wants_close() && run.conn.is_closed());
}

#[test]
fn http10_without_keep_alive_closes_and_reads_no_more() {
    let run = check(
        "GET /old HTTP/1.0\r\nUser-Agent: x\r\n\r\nGET /never HTTP/1.0\r\n\r\n",
        &[req(
            0,
            Get,
            "/old",
            None,
            Http10,
            &[("User-Agent", "x")],
            "",
            false,
        )],
        &ok(0, "GET /old", CLOSE),
    );
    assert!(run.conn.is_closed());
    assert_eq!(run.left, b"GET /never HTTP/1.0\r\n\r\n");
}

#[test]
fn http10_with_keep_alive() {
    let run = check(
        "GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET /b HTTP/1.0\r\nHost: h\r\n\r\n",
        &[
            req(
                0,
                Get,
                "/a",
                None,
                Http10,
                &[("Connection", "Keep-Alive")],
                "",
                true,
            ),
            req(1, Get, "/b", None, Http10, &[("Host", "h")], "", false),
        ],
        &(ok(0, "GET /a", KEEP) + &ok(1, "GET /b", CLOSE)),
    );
    assert!(run.conn.is_closed());
}

#[test]
fn expect_100_continue() {
    check(
        "POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndata",
        &[req(
            0,
            Post,
            "/e",
            None,
            Http11,
            &[
                ("Host", "a"),
                ("Expect", "100-continue"),
                ("Content-Length", "4"),
            ],
            "data",
            true,
        )],
        &("HTTP/1.1 100 Continue\r\n\r\n".to_owned() + &ok(0, "POST /e body=data", "")),
    );
}

#[test]
fn expect_100_continue_is_sent_before_the_body_arrives() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    let head =
        b"PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(c.handle_input(head, t0), head.len());
    assert_eq!(c.poll_output(), Some(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]));
    c.consume_output(25);
    assert!(c.poll_request().is_none());
    c.handle_input(b"2\r\nok\r\n0\r\n\r\n", t0);
    let r = c.poll_request().unwrap();
    assert_eq!(&r.body[..], b"ok");
    assert!(c.poll_output().is_none());

    // No body expected (no Content-Length) or HTTP/1.0: no 100.
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        t0,
    );
    assert!(c.poll_output().is_none());
    c.handle_input(
        b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        t0,
    );
    assert!(c.poll_output().is_none());
}

#[test]
fn expect_100_continue_waits_for_earlier_replies() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        t0,
    );
    let r0 = c.poll_request().unwrap();
    assert!(c.poll_output().is_none(), "100 must not overtake reply 0");
    c.send_response(r0.index, respond(&r0)).unwrap();
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        ok(0, "GET /1", "") + "HTTP/1.1 100 Continue\r\n\r\n"
    );
}

#[test]
fn leading_empty_lines_and_bare_lf() {
    check(
        "\r\n\nGET /x HTTP/1.1\nHost: a\n\n\r\nGET /y HTTP/1.1\r\nHost: b\r\n\n",
        &[
            req(0, Get, "/x", None, Http11, &[("Host", "a")], "", true),
            req(1, Get, "/y", None, Http11, &[("Host", "b")], "", true),
        ],
        &(ok(0, "GET /x", "") + &ok(1, "GET /y", "")),
    );
}

#[test]
fn options_star() {
    check(
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\nPATCH /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        &[
            req(0, Options, "*", None, Http11, &[("Host", "a")], "", true),
            req(1, Patch, "/p", None, Http11, &[("Host", "a"), ("Content-Length", "0")], "", true),
        ],
        &(ok(0, "OPTIONS *", "") + &ok(1, "PATCH /p", "")),
    );
}

// ---- errors ----------------------------------------------------------------

const FIRST: &str = "GET /first HTTP/1.1\r\nHost: a\r\n\r\n";
const AFTER: &str = "GET /after HTTP/1.1\r\nHost: a\r\n\r\n";

/// `bad` after a good request and before another: the good one is answered
/// first, then the error reply; nothing after the bad request is parsed;
/// the connection closes.
fn check_error_with(limits: Limits, bad: &str, status: u16) {
    let input = format!("{FIRST}{bad}{AFTER}");
    let first = req(0, Get, "/first", None, Http11, &[("Host", "a")], "", true);
    let want = ok(0, "GET /first", "") + &err_reply(status);
    let run = check_all_splits(limits, input.as_bytes(), &[first], &want);
    assert!(run.conn.wants_close(), "{bad:?}");
    assert!(run.conn.is_closed(), "{bad:?}");
    assert!(run.conn.poll_timeout().is_none());
}

fn check_error(bad: &str, status: u16) {
    check_error_with(Limits::default(), bad, status);
}

#[test]
fn malformed_head_400() {
    for bad in [
        "GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / FOO/1.1\r\nHost: a\r\n\r\n",
        "GET\r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",
        "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\u{16}\u{3}\u{1}\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{0}b\r\n\r\n",
    ] {
        check_error(bad, 400);
    }
}

#[test]
fn bad_chunk_framing_400() {
    let head = "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        "zz\r\n",
        "\r\n",
        "3\r\nabcX",
        "3\r\nabc\rX",
        "3\nabc\r\n0\r\n\r\n",
        "-3\r\nabc\r\n",
        "3 x\r\nabc\r\n",
        "0000000000000000001\r\na\r\n",
        "0\r\nTrailer\n\r\n",
        "0\r\n\rX",
        "1;a\nb\r\n",
    ] {
        check_error(&format!("{head}{body}"), 400);
    }
    let long_ext = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_EXT + 1));
    check_error(&format!("{head}{long_ext}"), 400);
}

#[test]
fn header_too_large_431() {
    let limits = Limits {
        max_header_bytes: 64,
        ..Limits::default()
    };
    // FIRST and AFTER are 31 bytes: well within the limit.
    let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "y".repeat(40));
    check_error_with(limits, &big, 431);
    // No end of head ever: 431 as soon as the limit is reached.
    let t0 = base();
    let mut c = ServerConn::new(limits, t0);
    let n = c.handle_input(&[b'A'; 1000], t0);
    assert_eq!(n, 64);
    assert!(c.poll_output().unwrap().starts_with(b"HTTP/1.1 501 "));
    assert!(c.wants_close());
    let mut c = ServerConn::new(limits, t0);
    let n = c.handle_input(format!("GET /{} HTTP/1.1", "a".repeat(100)).as_bytes(), t0);
    assert_eq!(n, 64);
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), err_reply(431));
    // Empty lines count too.
    let mut c = ServerConn::new(limits, t0);
    c.handle_input(&b"\r\n".repeat(40), t0);
    assert!(c.poll_output().unwrap().starts_with(b"HTTP/1.1 431 "));
    // Too many header fields.
    let many: String = (0..MAX_HEADERS + 1)
        .map(|i| format!("X{i}: v\r\n"))
        .collect();
    check_error(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n"), 431);
}

#[test]
fn head_of_exactly_max_header_bytes_is_accepted() {
    let head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for (max, accepted) in [(head.len(), true), (head.len() - 1, false)] {
        let limits = Limits {
            max_header_bytes: max,
            ..Limits::default()
        };
        let run = drive(limits, &[head.as_bytes()]);
        assert_eq!(run.reqs.len() == 1, accepted, "max {max}");
    }
}

#[test]
fn trailer_too_large_431() {
    let limits = Limits {
        max_header_bytes: 64,
        ..Limits::default()
    };
    let bad = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nT: {}\r\n\r\n",
        "t".repeat(70)
    );
    check_error_with(limits, &bad, 431);
}

#[test]
fn body_too_large_413() {
    let limits = Limits {
        max_body_bytes: 10,
        ..Limits::default()
    };
    // Declared length: rejected at once, body not read, no 100 Continue.
    let bad = "POST /big HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n";
    check_error_with(limits, bad, 413);
    let t0 = base();
    let mut c = ServerConn::new(limits, t0);
    let n = c.handle_input(format!("{bad}0123456789a").as_bytes(), t0);
    assert_eq!(n, bad.len(), "body bytes are not consumed");
    // Huge and overflowing declared lengths.
    check_error_with(
        limits,
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        413,
    );
    // Chunked: the running total.
    let chunked =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n6\r\n";
    check_error_with(limits, chunked, 413);
    check_error_with(
        limits,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        413,
    );
    // Exactly the limit is fine.
    let run = drive(limits, &[b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n"]);
    assert_eq!(&run.reqs[0].body[..], b"0123456789");
    // HEAD: the error reply has no body.
    let run = drive(
        limits,
        &[b"HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"],
    );
    let want = err_reply(413);
    assert_eq!(
        String::from_utf8(run.out).unwrap(),
        want[..want.find("\r\n\r\n").unwrap() + 4]
    );
}

#[test]
fn unknown_method_501() {
    check_error("BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", 501);
    check_error("get / HTTP/1.1\r\nHost: a\r\n\r\n", 501);
    check_error("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 501);
    check_error(&format!("{} / HTTP/1.1\r\n\r\n", "X".repeat(40)), 501);
}

#[test]
fn transfer_encoding_rules() {
    let te =
        |v: &str| format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n0\r\n\r\n");
    check_error(&te("gzip, chunked"), 501);
    check_error(&te("identity, chunked"), 501);
    check_error(&te("chunked, gzip"), 501);
    check_error(&te("gzip"), 501);
    check_error(&te("chunked, chunked"), 400);
    check_error(&te(""), 400);
    check_error(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        501,
    );
    // TE and CL together: rejected outright (no smuggling), in either order.
    check_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400);
    check_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    // TE on HTTP/1.0.
    check_error(
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn content_length_rules() {
    let cl = |v: &str| format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\nabc");
    for v in ["3, 3", "abc", "-3", "+3", "", "3 3", "0x3", "3.0"] {
        check_error(&cl(v), 400);
    }
    check_error(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    );
    check_error(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\nabc",
        400,
    );
    // Leading zeros are digits.
    let run = drive(Limits::default(), &[cl("003").as_bytes()]);
    assert_eq!(&run.reqs[0].body[..], b"abc");
}

#[test]
fn http_version_505() {
    check_error("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    check_error("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
    check_error("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
}

#[test]
fn bad_targets_400() {
    for target in [
        "http://a/b",
        "a/b",
        "*",
        "/../etc/passwd",
        "/a/../b",
        "/%2e%2e/x",
        "/a/..%2f..%2fetc",
        "/a%5c..%5c..%5cb",
        "/a\\..\\b",
        "/a%00b",
        "/a%zz",
        "/a%",
        "/x#frag",
    ] {
        check_error(&format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }
}

#[test]
fn host_rules() {
    check_error("GET / HTTP/1.1\r\n\r\n", 400);
    check_error("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    check_error("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400);
    let run = drive(Limits::default(), &[b"GET / HTTP/1.0\r\n\r\n"]);
    assert_eq!(run.reqs.len(), 1);
}

#[test]
fn head_request_error_has_no_body() {
    let run = drive(
        Limits::default(),
        &[b"HEAD /../x HTTP/1.1\r\nHost: a\r\n\r\n"],
    );
    assert_eq!(
        String::from_utf8(run.out).unwrap(),
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n"
    );
    assert!(run.conn.is_closed());
}

#[test]
fn error_waits_for_earlier_unanswered_replies() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    let input = format!("{FIRST}GET /../x HTTP/1.1\r\nHost: a\r\n\r\n{AFTER}");
    let n = c.handle_input(input.as_bytes(), t0);
    assert_eq!(n, input.len() - AFTER.len());
    assert!(c.wants_close() && !c.is_closed());
    assert!(
        c.poll_output().is_none(),
        "error reply must wait for reply 0"
    );
    let r = c.poll_request().unwrap();
    assert!(c.poll_request().is_none());
    assert_eq!(c.handle_input(AFTER.as_bytes(), t0), 0);
    c.send_response(r.index, respond(&r)).unwrap();
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        ok(0, "GET /first", "") + &err_reply(400)
    );
    assert!(c.is_closed());
}

// ---- back-pressure ---------------------------------------------------------

#[test]
fn back_pressure_at_max_pipelined() {
    let t0 = base();
    let limits = Limits {
        max_pipelined: 2,
        ..Limits::default()
    };
    let one = |i: usize| format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n");
    let input: String = (0..5).map(one).collect();
    let mut c = ServerConn::new(limits, t0);
    let n = c.handle_input(input.as_bytes(), t0);
    assert_eq!(n, one(0).len() + one(1).len());
    assert_eq!(c.requests_in_flight(), 2);
    let mut rest = &input.as_bytes()[n..];
    assert_eq!(c.handle_input(rest, t0), 0);
    let r0 = c.poll_request().unwrap();
    let r1 = c.poll_request().unwrap();
    assert!(c.poll_request().is_none());
    c.send_response(r0.index, respond(&r0)).unwrap();
    // Answered but not flushed still counts.
    assert_eq!(c.requests_in_flight(), 2);
    assert_eq!(c.handle_input(rest, t0), 0);
    // Flushing part of the reply is not enough...
    c.consume_output(3);
    assert_eq!(c.handle_input(rest, t0), 0);
    // ...flushing all of it frees one place.
    let left = c.output_pending();
    c.consume_output(left);
    assert_eq!(c.requests_in_flight(), 1);
    let n = c.handle_input(rest, t0);
    assert_eq!(n, one(2).len());
    rest = &rest[n..];
    assert_eq!(c.requests_in_flight(), 2);
    assert_eq!(c.handle_input(rest, t0), 0);
    // No timeout applies while requests are waiting for the handler.
    assert!(c.poll_timeout().is_none());
    c.send_response(r1.index, respond(&r1)).unwrap();
    let r2 = c.poll_request().unwrap();
    assert_eq!(r2.index, 2);
    c.send_response(2, respond(&r2)).unwrap();
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    assert_eq!(c.requests_in_flight(), 0);
    assert_eq!(c.handle_input(rest, t0), rest.len());
    assert_eq!(c.requests_in_flight(), 2);
}

#[test]
fn pipelined_flood_is_bounded_by_default_limit() {
    let input = "GET / HTTP/1.1\r\nHost: a\r\n\r\n".repeat(100);
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    let n = c.handle_input(input.as_bytes(), t0);
    assert_eq!(n, 32 * 27);
    assert_eq!(c.requests_in_flight(), 32);
    // The harness (answers and flushes) gets through all of them.
    let run = drive(Limits::default(), &[input.as_bytes()]);
    assert_eq!(run.reqs.len(), 100);
    assert_eq!(run.reqs[99].index, 99);
}

// ---- reply ordering and serialization ---------------------------------------

#[test]
fn out_of_order_replies_are_written_in_order() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    let input = "GET /0 HTTP/1.1\r\nHost: a\r\n\r\nGET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    c.handle_input(input.as_bytes(), t0);
    let reqs: Vec<Request> = std::iter::from_fn(|| c.poll_request()).collect();
    assert_eq!(
        reqs.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let mut out = Vec::new();
    c.send_response(2, respond(&reqs[2])).unwrap();
    assert!(c.poll_output().is_none());
    c.send_response(0, respond(&reqs[0])).unwrap();
    drain(&mut c, &mut out);
    assert_eq!(String::from_utf8_lossy(&out), ok(0, "GET /0", ""));
    c.send_response(1, respond(&reqs[1])).unwrap();
    drain(&mut c, &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        ok(0, "GET /0", "") + &ok(1, "GET /1", "") + &ok(2, "GET /2", "")
    );
    // Already answered / unknown / never delivered.
    assert_eq!(
        c.send_response(1, Response::new(200)),
        Err(Error::UnknownRequest(1))
    );
    assert_eq!(
        c.send_response(7, Response::new(200)),
        Err(Error::UnknownRequest(7))
    );
    c.handle_input(b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n", t0);
    assert_eq!(
        c.send_response(3, Response::new(200)),
        Err(Error::UnknownRequest(3))
    );
    let r3 = c.poll_request().unwrap();
    assert_eq!(
        c.send_response(3, Response::new(100)),
        Err(Error::InvalidStatus(100))
    );
    assert_eq!(
        c.send_response(3, Response::new(1000)),
        Err(Error::InvalidStatus(1000))
    );
    assert!(c.send_response(r3.index, Response::new(204)).is_ok());
    assert_eq!(
        c.poll_output(),
        Some(&b"HTTP/1.1 204 No Content\r\n\r\n"[..])
    );
}

#[test]
fn reply_header_handling() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\n", t0);
    let _ = std::iter::from_fn(|| c.poll_request()).count();
    let resp = Response::new(200)
        .header("Content-Length", "999")
        .header("Transfer-Encoding", "chunked")
        .header("Bad\r\nName", "x")
        .header("X-Injected", "a\r\nSet-Cookie: evil")
        .header("X-Fine", " v ")
        .header("Keep-Alive", "timeout=5")
        .body("abc");
    c.send_response(0, resp).unwrap();
    // HEAD with an empty body and an explicit length (e.g. a proxied HEAD).
    c.send_response(1, Response::new(200).header("content-length", "1234"))
        .unwrap();
    c.send_response(
        2,
        Response::new(304).header("ETag", "\"x\"").body("ignored"),
    )
    .unwrap();
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nX-Fine: v\r\nContent-Length: 3\r\n\r\nabc\
         HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n\
         HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"
    );
    assert!(!c.wants_close());
}

#[test]
fn handler_connection_close_ends_the_connection() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(
        b"GET /0 HTTP/1.1\r\nHost: a\r\n\r\nGET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
        t0,
    );
    let r0 = c.poll_request().unwrap();
    let r1 = c.poll_request().unwrap();
    c.send_response(r1.index, Response::new(200)).unwrap();
    c.send_response(r0.index, Response::new(503).header("Connection", "close"))
        .unwrap();
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert!(c.is_closed());
    assert_eq!(c.handle_input(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", t0), 0);
}

#[test]
fn large_bodies_are_zero_copy_and_partially_consumable() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
        t0,
    );
    let body = Bytes::from(vec![7u8; 100_000]);
    c.send_response(0, Response::new(200).body(body.clone()))
        .ok();
    let _ = c.poll_request();
    let _ = c.poll_request();
    c.send_response(0, Response::new(200).body(body.clone()))
        .unwrap();
    c.send_response(1, Response::new(200).body(body.clone()))
        .unwrap();
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
    assert_eq!(c.output_pending(), 2 * head.len() + 100_000);
    assert_eq!(c.poll_output(), Some(&head[..]));
    c.consume_output(10);
    assert_eq!(c.poll_output(), Some(&head[10..]));
    c.consume_output(head.len() - 10 + 5);
    let chunk = c.poll_output().unwrap();
    assert_eq!(chunk.len(), 100_000 - 5);
    assert_eq!(chunk.as_ptr(), body[5..].as_ptr(), "body is not copied");
    c.consume_output(usize::MAX);
    assert_eq!(c.output_pending(), 0);
    assert!(c.poll_output().is_none());
    assert_eq!(c.requests_in_flight(), 0);
}

// ---- EOF -------------------------------------------------------------------

#[test]
fn eof_after_complete_requests_still_replies() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(
        b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHo",
        t0,
    );
    c.handle_eof(t0);
    assert!(c.wants_close() && !c.is_closed());
    let r = c.poll_request().unwrap();
    assert!(c.poll_request().is_none());
    c.send_response(r.index, respond(&r)).unwrap();
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), ok(0, "GET /a", ""));
    assert!(c.is_closed());

    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_eof(t0);
    assert!(c.is_closed() && c.poll_output().is_none() && c.poll_timeout().is_none());

    // EOF in the middle of a body: the request is dropped.
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
        t0,
    );
    c.handle_eof(t0);
    assert!(c.poll_request().is_none());
    assert!(c.is_closed() && c.poll_output().is_none());
}

// ---- timeouts --------------------------------------------------------------

#[test]
fn header_timeout_slowloris() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    // The first head is due `header_timeout` after the accept.
    assert_eq!(
        c.poll_timeout(),
        Some(secs(t0, 10)),
        "first-request deadline"
    );
    c.handle_input(b"GET / HTTP/1.1\r\n", secs(t0, 1));
    assert_eq!(c.poll_timeout(), Some(secs(t0, 10)));
    // Trickling bytes does not extend the head deadline.
    for s in 2..10 {
        c.handle_input(b"X", secs(t0, s));
        c.handle_timeout(secs(t0, s));
        assert_eq!(c.poll_timeout(), Some(secs(t0, 10)));
    }
    c.handle_input(b"X", secs(t0, 10) - Duration::from_nanos(1));
    c.handle_timeout(secs(t0, 10) - Duration::from_nanos(1));
    assert!(!c.wants_close(), "one tick before the deadline");
    c.handle_timeout(secs(t0, 10));
    assert!(c.wants_close() && !c.is_closed());
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), err_reply(408));
    assert!(c.is_closed());
    assert_eq!(c.handle_input(b"\r\n\r\n", secs(t0, 12)), 0);
}

/// The second head of a keep-alive connection: its deadline runs from its
/// own first byte, and trickling does not move it.
#[test]
fn header_timeout_slowloris_after_a_request() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", secs(t0, 1));
    let r = c.poll_request().unwrap();
    c.send_response(r.index, respond(&r)).unwrap();
    drain(&mut c, &mut Vec::new());
    c.handle_timeout(secs(t0, 2));
    assert_eq!(
        c.poll_timeout(),
        Some(secs(t0, 62)),
        "idle between requests"
    );
    c.handle_input(b"G", secs(t0, 30));
    assert_eq!(c.poll_timeout(), Some(secs(t0, 40)));
    for s in 31..40 {
        c.handle_input(b"E", secs(t0, s));
        c.handle_timeout(secs(t0, s));
        assert!(!c.wants_close());
        assert_eq!(c.poll_timeout(), Some(secs(t0, 40)));
    }
    c.handle_timeout(secs(t0, 40));
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), err_reply(408));
    assert!(c.is_closed());
}

/// A client that connects and sends nothing is closed (silently) at the
/// header timeout, not after a whole idle period; empty lines do not
/// count as a request.
#[test]
fn silent_connection_closed_at_the_header_timeout() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(b"\r\n", secs(t0, 5));
    c.handle_timeout(secs(t0, 10) - Duration::from_nanos(1));
    assert!(!c.wants_close());
    assert_eq!(c.poll_timeout(), Some(secs(t0, 10)));
    c.handle_timeout(secs(t0, 10));
    assert!(c.is_closed() && c.poll_output().is_none());

    // With an idle timeout shorter than the header timeout, the shorter.
    let limits = Limits {
        idle_timeout: Duration::from_secs(3),
        ..Limits::default()
    };
    let c = ServerConn::new(limits, t0);
    assert_eq!(c.poll_timeout(), Some(secs(t0, 3)));

    // A resumed connection (taken over) waits a keep-alive period: its
    // client may have been idle on the old node for a while already.
    let mut c = ServerConn::resume(Limits::default(), t0, 3, false);
    assert_eq!(c.poll_timeout(), Some(secs(t0, 60)));
    c.handle_input(b"GET", secs(t0, 20));
    assert_eq!(c.poll_timeout(), Some(secs(t0, 30)));
}

/// Closing an idle connection to make room: only between requests, and
/// silently (the caller's orderly close follows).
#[test]
fn close_if_idle_only_when_idle() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    assert_eq!(c.idle_since(), Some(t0));
    c.handle_input(b"GET / HTTP/1.1\r\n", secs(t0, 1));
    assert_eq!(c.idle_since(), None, "a head is arriving");
    assert!(!c.close_if_idle(secs(t0, 1)));
    c.handle_input(b"Host: a\r\n\r\n", secs(t0, 1));
    let r = c.poll_request().unwrap();
    assert!(!c.close_if_idle(secs(t0, 2)), "a reply is owed");
    c.send_response(r.index, respond(&r)).unwrap();
    assert!(!c.close_if_idle(secs(t0, 2)), "a reply is being written");
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    c.handle_timeout(secs(t0, 3));
    assert_eq!(c.idle_since(), Some(secs(t0, 3)));
    assert!(c.close_if_idle(secs(t0, 4)));
    assert!(c.is_closed() && c.poll_output().is_none());
    assert_eq!(String::from_utf8(out).unwrap(), ok(0, "GET /", ""));
    assert!(!c.close_if_idle(secs(t0, 5)), "once");
}

#[test]
fn header_timeout_with_replies_owed_closes_after_them() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b", t0);
    let r = c.poll_request().unwrap();
    assert_eq!(c.poll_timeout(), Some(secs(t0, 10)));
    c.handle_timeout(secs(t0, 10));
    assert!(c.wants_close() && !c.is_closed());
    assert!(c.poll_timeout().is_none());
    c.send_response(r.index, respond(&r)).unwrap();
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), ok(0, "GET /a", ""));
    assert!(c.is_closed());
}

#[test]
fn idle_timeout_closes_silently() {
    let t0 = base();
    let mut c = ServerConn::resume(Limits::default(), t0, 1, false);
    c.handle_timeout(secs(t0, 59));
    assert!(!c.wants_close());
    c.handle_timeout(secs(t0, 60));
    assert!(c.is_closed() && c.poll_output().is_none());
    assert!(c.poll_timeout().is_none());
}

#[test]
fn idle_timeout_after_a_reply() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", secs(t0, 5));
    // Waiting for the handler: no deadline.
    assert!(c.poll_timeout().is_none());
    let r = c.poll_request().unwrap();
    c.send_response(r.index, respond(&r)).unwrap();
    // Output pending: no deadline.
    assert!(c.poll_timeout().is_none());
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    // Output drained without a time: the deadline is due, to stamp the start.
    assert_eq!(c.poll_timeout(), Some(secs(t0, 5)));
    c.handle_timeout(secs(t0, 100));
    assert!(!c.is_closed());
    assert_eq!(c.poll_timeout(), Some(secs(t0, 160)));
    c.handle_timeout(secs(t0, 159));
    assert!(!c.is_closed());
    // Empty lines neither extend the idle period nor start a head.
    c.handle_input(b"\r\n", secs(t0, 159));
    assert_eq!(c.poll_timeout(), Some(secs(t0, 160)));
    c.handle_input(b"G", secs(t0, 159));
    assert_eq!(c.poll_timeout(), Some(secs(t0, 169)));
    c.handle_input(b"ET / HTTP/1.1\r\nHost: a\r\n\r\n", secs(t0, 160));
    assert!(c.poll_timeout().is_none());
    c.handle_timeout(secs(t0, 1000));
    assert!(!c.is_closed());
}

#[test]
fn crlf_after_body_does_not_start_the_header_timeout() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\r\n",
        t0,
    );
    let r = c.poll_request().unwrap();
    c.send_response(r.index, respond(&r)).unwrap();
    drain(&mut c, &mut Vec::new());
    c.handle_timeout(secs(t0, 1));
    assert_eq!(c.poll_timeout(), Some(secs(t0, 61)));
    c.handle_timeout(secs(t0, 30));
    assert!(!c.wants_close());
    c.handle_timeout(secs(t0, 61));
    assert!(c.is_closed() && c.poll_output().is_none());
}

#[test]
fn new_input_restarts_the_idle_clock() {
    let t0 = base();
    let mut c = ServerConn::resume(Limits::default(), t0, 1, false);
    assert_eq!(c.poll_timeout(), Some(secs(t0, 60)));
    c.handle_input(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", secs(t0, 30));
    let r = c.poll_request().unwrap();
    c.handle_timeout(secs(t0, 1000));
    assert!(!c.is_closed(), "no idle timeout while the handler works");
    c.send_response(r.index, respond(&r)).unwrap();
    drain(&mut c, &mut Vec::new());
    c.handle_timeout(secs(t0, 1001));
    assert_eq!(c.poll_timeout(), Some(secs(t0, 1061)));
}

#[test]
fn body_timeout() {
    let t0 = base();
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
        secs(t0, 1),
    );
    assert_eq!(c.poll_timeout(), Some(secs(t0, 61)));
    c.handle_input(b"de", secs(t0, 30));
    assert_eq!(c.poll_timeout(), Some(secs(t0, 90)));
    c.handle_timeout(secs(t0, 89));
    assert!(!c.wants_close());
    c.handle_timeout(secs(t0, 90));
    assert!(c.wants_close());
    assert!(c.poll_request().is_none());
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), err_reply(408));
    assert!(c.is_closed());

    // Chunked, with a reply owed to an earlier request: no 408, close after it.
    let mut c = ServerConn::new(Limits::default(), t0);
    c.handle_input(
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        t0,
    );
    let r = c.poll_request().unwrap();
    c.handle_timeout(secs(t0, 60));
    assert!(c.wants_close() && !c.is_closed());
    c.send_response(r.index, respond(&r)).unwrap();
    let mut out = Vec::new();
    drain(&mut c, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), ok(0, "GET /", ""));
    assert!(c.is_closed());
}

#[test]
fn huge_timeouts_do_not_overflow() {
    let t0 = base();
    let limits = Limits {
        idle_timeout: Duration::MAX,
        header_timeout: Duration::MAX,
        body_timeout: Duration::MAX,
        ..Limits::default()
    };
    let mut c = ServerConn::new(limits, t0);
    assert!(c.poll_timeout().is_none());
    c.handle_input(b"GET", t0);
    assert!(c.poll_timeout().is_none());
    c.handle_timeout(secs(t0, 1_000_000));
    assert!(!c.wants_close());
}

// ---- robustness --------------------------------------------------------------

/// Deterministic pseudo-random garbage and mutations of valid requests never
/// panic, and the connection either keeps going or closes cleanly.
#[test]
fn garbage_never_panics() {
    let t0 = base();
    let seeds: &[&[u8]] = &[
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n4;a=b\r\nabcd\r\n0\r\nT: v\r\n\r\n",
        b"GET /%2e/a?b HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
    ];
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..3000 {
        let mut input = seeds[round % seeds.len()].to_vec();
        for _ in 0..(next() % 4 + 1) {
            let pos = (next() as usize) % input.len();
            match next() % 3 {
                0 => input[pos] = next() as u8,
                1 => {
                    input.remove(pos);
                }
                _ => input.insert(pos, b"\r\n:; 0%\x00"[(next() % 8) as usize]),
            }
            if input.is_empty() {
                input.push(b'x');
            }
        }
        let limits = Limits {
            max_header_bytes: 40 + (next() % 100) as usize,
            max_body_bytes: next() % 8,
            max_pipelined: 1 + (next() % 3) as usize,
            ..Limits::default()
        };
        let cut = (next() as usize) % (input.len() + 1);
        let run = drive(limits, &[&input[..cut], &input[cut..]]);
        let mut c = run.conn;
        c.handle_eof(t0);
        c.handle_timeout(secs(t0, 3600));
        drain(&mut c, &mut Vec::new());
        assert!(c.is_closed(), "round {round}");
    }
}

#[test]
fn units_carry_index_kind_input_end_and_close() {
    let t0 = crate::test_origin();
    let mut c = ServerConn::new(Limits::default(), t0);
    let a = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    let b = b"POST /b HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nxyz";
    let c3 = b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let mut input = Vec::new();
    input.extend_from_slice(a);
    input.extend_from_slice(b);
    input.extend_from_slice(c3);
    assert_eq!(c.handle_input(&input, t0), input.len());
    // The interim for request 1 is owed only after reply 0.
    for _ in 0..3 {
        let r = c.poll_request().unwrap();
        c.send_response(r.index, Response::new(200).body("ok"))
            .unwrap();
    }
    let u0 = c.take_unit().unwrap();
    assert_eq!(
        (u0.index, u0.kind, u0.input_end, u0.close_after),
        (0, UnitKind::Final, a.len() as u64, false)
    );
    let u1 = c.take_unit().unwrap();
    assert_eq!((u1.index, u1.kind), (1, UnitKind::Interim));
    assert_eq!(u1.chunks.concat(), b"HTTP/1.1 100 Continue\r\n\r\n");
    let u2 = c.take_unit().unwrap();
    assert_eq!(
        (u2.index, u2.kind, u2.input_end),
        (1, UnitKind::Final, (a.len() + b.len()) as u64)
    );
    let u3 = c.take_unit().unwrap();
    assert_eq!(
        (u3.index, u3.input_end, u3.close_after),
        (2, input.len() as u64, true)
    );
    assert!(c.take_unit().is_none());
    assert_eq!(c.output_pending(), 0);
    assert_eq!(c.input_consumed(), input.len() as u64);
}

/// `replied_through(offset)`: every request that ended by `offset` has
/// had its final reply taken, and the input was read that far — what an
/// HTTPS connection waits for before answering a client KeyUpdate read
/// at `offset`.
#[test]
fn replied_through_waits_for_the_final_replies_of_the_requests_before() {
    let t0 = crate::test_origin();
    let mut c = ServerConn::new(Limits::default(), t0);
    let a = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    let b = b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    let (ea, eb) = (a.len() as u64, (a.len() + b.len()) as u64);
    assert!(c.replied_through(0), "nothing before offset 0");
    assert!(!c.replied_through(ea), "not read that far");
    assert_eq!(c.handle_input(a, t0), a.len());
    assert!(!c.replied_through(ea), "request 0 not answered");
    // Half of request 1: it ends after `ea`.
    assert_eq!(c.handle_input(&b[..5], t0), 5);
    let r = c.poll_request().unwrap();
    c.send_response(r.index, Response::new(200).body("0"))
        .unwrap();
    assert!(!c.replied_through(ea), "its reply not taken yet");
    let u = c.take_unit().unwrap();
    assert_eq!(u.input_end, ea);
    assert!(c.replied_through(ea));
    // Request 1, half read, ends after any offset read so far.
    assert!(c.replied_through(ea + 5));
    assert!(!c.replied_through(ea + 6), "not read that far");
    assert_eq!(c.handle_input(&b[5..], t0), b.len() - 5);
    assert!(!c.replied_through(eb));
    assert!(c.replied_through(ea), "request 1 ends after `ea`");
    let r = c.poll_request().unwrap();
    c.send_response(r.index, Response::new(200).body("1"))
        .unwrap();
    assert!(!c.replied_through(eb));
    c.take_unit().unwrap();
    assert!(c.replied_through(eb));
}

#[test]
fn resumed_connection_continues_numbering_and_skips_sent_continue() {
    let t0 = crate::test_origin();
    let b = b"POST /b HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nxyz";
    let mut c = ServerConn::resume(Limits::default(), t0, 7, true);
    assert_eq!(c.handle_input(b, t0), b.len());
    let r = c.poll_request().unwrap();
    assert_eq!(r.index, 7);
    c.send_response(7, Response::new(200)).unwrap();
    let u = c.take_unit().unwrap();
    assert_eq!(
        (u.index, u.kind),
        (7, UnitKind::Final),
        "no second 100 Continue"
    );
    // Without continue_sent it is sent.
    let mut c = ServerConn::resume(Limits::default(), t0, 7, false);
    c.handle_input(b, t0);
    let r = c.poll_request().unwrap();
    c.send_response(r.index, Response::new(200)).unwrap();
    assert_eq!(c.take_unit().unwrap().kind, UnitKind::Interim);
}

#[test]
fn poll_output_keeps_unit_queue_bounded() {
    let t0 = crate::test_origin();
    let mut c = ServerConn::new(Limits::default(), t0);
    for _ in 0..100 {
        c.handle_input(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", t0);
        let r = c.poll_request().unwrap();
        c.send_response(r.index, Response::new(200).body("x"))
            .unwrap();
        while let Some(o) = c.poll_output() {
            let n = o.len();
            c.consume_output(n);
        }
    }
    assert!(
        c.take_unit().is_none(),
        "units consumed through poll_output are gone"
    );
}

#[test]
fn replies_taken_as_units_count_against_max_pipelined_until_flushed() {
    // A client that pipelines requests and never reads: the caller takes
    // each reply as a unit (to log it) but cannot write it. Those replies
    // are still in flight, so reading stops at `max_pipelined`.
    let t0 = crate::test_origin();
    let limits = Limits {
        max_pipelined: 2,
        ..Limits::default()
    };
    let mut c = ServerConn::new(limits, t0);
    let req = b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n";
    let input: Vec<u8> = req.repeat(10);
    let mut consumed = 0;
    let mut taken = Vec::new();
    for _ in 0..10 {
        consumed += c.handle_input(&input[consumed..], t0);
        while let Some(r) = c.poll_request() {
            c.send_response(r.index, Response::new(200).body("x"))
                .unwrap();
        }
        while let Some(u) = c.take_unit() {
            taken.push(u);
        }
    }
    assert_eq!(
        taken.len(),
        2,
        "replies made for a client that reads nothing"
    );
    assert_eq!(consumed, 2 * req.len());
    assert_eq!(c.requests_in_flight(), 2);
    // One written out: one more request is read.
    c.unit_flushed(t0);
    consumed += c.handle_input(&input[consumed..], t0);
    assert_eq!(consumed, 3 * req.len());
}
