//! Against real local servers (`server.rs`: tokio TCP speaking HTTP/1.1
//! by hand, so each can misbehave exactly as a test needs and count what it
//! received).
mod config;
mod server;

use std::sync::Arc;

use tokio::net::TcpStream;

use super::*;
use server::{server, server_opts, Act, Got, OK};

const CLIENT: &str = "10.77.0.1:40000";
const SERVICE: &str = "10.77.0.10:80";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config(address: String) -> UpstreamConfig {
    UpstreamConfig {
        route: "/app/".into(),
        address,
        max_idle: 8,
        idle_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(5),
        max_body: 1 << 20,
        retry_non_idempotent: false,
        fallback: Vec::new(),
        request_id_header: DEFAULT_REQUEST_ID_HEADER.into(),
        proxy_protocol: false,
    }
}

fn request(method: Method, path: &str, headers: &[(&str, &str)], body: &'static [u8]) -> Request {
    Request {
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: Bytes::from_static(body),
        ..Request::new(method, path)
    }
}

fn get(path: &str) -> Request {
    request(Method::Get, path, &[("Host", "shop")], b"")
}

async fn handle(up: &Upstream, req: &Request) -> Response {
    up.handle(
        req,
        "10.77.0.1:40000#7-0",
        CLIENT.parse().unwrap(),
        SERVICE.parse().unwrap(),
    )
    .await
}

#[test]
fn a_chunk_size_near_u64_max_is_a_502_not_a_panic_nor_a_hang() {
    const HUGE: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                          2\r\nhi\r\nffffffffffffffff\r\nxx\r\n0\r\n\r\n";
    rt().block_on(async {
        // A first chunk, so the body is not empty when the huge size comes
        // (the sum `body + size` overflowed the hand-written client). The
        // application closes: the body is cut short.
        let (addr, _) = server(|_, _| Act::ReplyThenClose(HUGE, Duration::ZERO)).await;
        let up = Upstream::new(config(addr)).unwrap();
        assert_eq!(handle(&up, &get("/app/")).await.status, 502);
        assert_eq!(up.stats().errors, [0, 0, 1, 0]);
        // It keeps the connection open: hyper waits for the announced
        // bytes, which the exchange's timeout bounds.
        let (addr, _) = server(|_, _| Act::Reply(HUGE)).await;
        let mut c = config(addr);
        c.timeout = Duration::from_millis(300);
        let up = Upstream::new(c).unwrap();
        assert_eq!(handle(&up, &get("/app/")).await.status, 504);
        assert_eq!(up.stats().errors, [0, 1, 0, 0]);
    });
}

#[test]
fn headers_forwarded_replaced_and_stripped_both_ways() {
    rt().block_on(async {
        let (addr, log) = server(|_, _| {
            Act::Reply(
                b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Hop\r\n\
                  X-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Request-Id: app-said\r\n\
                  Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            )
        })
        .await;
        let up = Upstream::new(config(addr)).unwrap();
        let req = request(
            Method::Post,
            "/app/orders",
            &[
                ("Host", "shop.example:8080"),
                ("X-Request-Id", "client-own-id"),
                ("X-Hotpair-Request-Id", "spoofed"),
                ("X-Forwarded-For", "203.0.113.7"),
                ("X-Forwarded-Proto", "https"),
                ("Forwarded", "for=203.0.113.7"),
                ("Connection", "keep-alive, X-Secret"),
                ("X-Secret", "hop only"),
                ("Keep-Alive", "timeout=5"),
                ("Upgrade", "websocket"),
                ("TE", "trailers"),
                ("Expect", "100-continue"),
                ("Content-Length", "3"),
                ("Accept", "text/plain"),
            ],
            b"abc",
        );
        let resp = handle(&up, &req).await;
        assert_eq!(resp.status, 201);
        assert_eq!(&resp.body[..], b"abcde");
        let names: Vec<&str> = resp.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["content-type", "x-request-id"], "{:?}", resp.headers);
        assert_eq!(resp.headers[1].1, "app-said");

        let got = log.got();
        assert_eq!(got.len(), 1);
        let g = &got[0];
        assert_eq!(g.head.lines().next().unwrap(), "POST /app/orders HTTP/1.1");
        assert_eq!(g.body, b"abc");
        assert_eq!(g.header("host"), ["shop.example:8080"]);
        assert_eq!(g.header("x-request-id"), ["client-own-id"]);
        assert_eq!(g.header("x-hotpair-request-id"), ["10.77.0.1:40000#7-0"]);
        assert_eq!(g.header("x-forwarded-for"), ["203.0.113.7, 10.77.0.1"]);
        assert_eq!(g.header("x-forwarded-proto"), ["http"]);
        assert_eq!(g.header("x-forwarded-host"), ["shop.example:8080"]);
        assert_eq!(
            g.header("forwarded"),
            ["for=203.0.113.7, for=10.77.0.1;proto=http;host=\"shop.example:8080\""]
        );
        assert_eq!(g.header("content-length"), ["3"]);
        assert_eq!(g.header("accept"), ["text/plain"]);
        for hop in ["x-secret", "keep-alive", "upgrade", "te", "expect"] {
            assert!(g.header(hop).is_empty(), "{hop} forwarded: {}", g.head);
        }
        assert_eq!(up.stats().responses, [(201, 1)]);
    });
}

#[test]
fn a_head_reply_keeps_the_length_of_the_body_it_does_not_carry() {
    rt().block_on(async {
        let (addr, log) = server(|_, _| {
            Act::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"x\"\r\n\r\n")
        })
        .await;
        let up = Upstream::new(config(addr)).unwrap();
        let resp = handle(&up, &request(Method::Head, "/app/big", &[], b"")).await;
        assert_eq!(resp.status, 200);
        assert!(resp.body.is_empty());
        assert_eq!(
            resp.headers,
            [
                ("content-length".to_owned(), "1234".to_owned()),
                ("etag".to_owned(), "\"x\"".to_owned())
            ]
        );
        // And the connection is still good for the next request.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let resp = handle(&up, &request(Method::Head, "/app/big", &[], b"")).await;
        assert_eq!(resp.status, 200);
        assert_eq!(log.conns.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn the_request_id_header_is_configurable_and_checked() {
    rt().block_on(async {
        let (addr, log) = server(|_, _| Act::Reply(OK)).await;
        let mut c = config(addr);
        c.request_id_header = "X-Dedup-Key".into();
        let up = Upstream::new(c).unwrap();
        assert_eq!(handle(&up, &get("/app/")).await.status, 200);
        let g = &log.got()[0];
        assert_eq!(g.header("x-dedup-key"), ["10.77.0.1:40000#7-0"]);
        assert!(g.header("x-hotpair-request-id").is_empty());
        // Without a Host, the configured address stands in; no
        // X-Forwarded-Host is made up.
        let (addr, log) = server(|_, _| Act::Reply(OK)).await;
        let up = Upstream::new(config(addr.clone())).unwrap();
        let req = request(Method::Get, "/app/", &[], b"");
        assert_eq!(handle(&up, &req).await.status, 200);
        let g = &log.got()[0];
        assert_eq!(g.header("host"), [addr]);
        assert!(g.header("x-forwarded-host").is_empty());
        assert_eq!(g.header("forwarded"), ["for=10.77.0.1;proto=http"]);
    });
    for bad in ["X-Request-Id", "Connection", "Forwarded", "bad header", ""] {
        assert!(check_request_id_header(bad).is_err(), "{bad}");
    }
}

#[test]
fn idle_connections_are_reused_then_expire() {
    rt().block_on(async {
        let (addr, log) = server(|_, _| Act::Reply(OK)).await;
        let mut c = config(addr);
        c.idle_timeout = Duration::from_millis(200);
        let up = Upstream::new(c).unwrap();
        // Each given time to go back to the pool (hyper returns it from
        // its connection task, a moment after the reply is read).
        for _ in 0..3 {
            warm(&up).await;
        }
        assert_eq!(log.conns.load(Ordering::SeqCst), 1, "one pooled connection");
        // The pool's reaper closes it once idle past the timeout.
        let deadline = Instant::now() + Duration::from_secs(3);
        while log.closed_by_client.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the idle connection was never closed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(handle(&up, &get("/app/")).await.status, 200);
        assert_eq!(log.conns.load(Ordering::SeqCst), 2, "a fresh connection");
    });
}

#[test]
fn no_more_idle_connections_than_max_idle_are_kept() {
    rt().block_on(async {
        let (addr, log) = server(|_, _| Act::Reply(OK)).await;
        let mut c = config(addr);
        c.max_idle = 1;
        let up = Arc::new(Upstream::new(c).unwrap());
        // Three at once: three connections (the server answers each at once,
        // but all three are asked before any answer is read).
        let barrier = Arc::new(tokio::sync::Barrier::new(3));
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (up, barrier) = (up.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                handle(&up, &get("/app/")).await.status
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
        let opened = log.conns.load(Ordering::SeqCst);
        // hyper may have raced fewer; the bound is what is checked.
        let deadline = Instant::now() + Duration::from_secs(3);
        while log.closed_by_client.load(Ordering::SeqCst) < opened - 1 {
            assert!(
                Instant::now() < deadline,
                "{opened} opened, {} closed: more than max_idle = 1 kept",
                log.closed_by_client.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(log.closed_by_client.load(Ordering::SeqCst), opened - 1);
    });
}

#[test]
fn connect_refused_is_502_and_a_stalled_connect_504_in_time() {
    rt().block_on(async {
        // A port nobody listens on.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let up = Upstream::new(config(addr)).unwrap();
        assert_eq!(handle(&up, &get("/app/")).await.status, 502);
        assert_eq!(up.stats().errors, [1, 0, 0, 0]);

        // A listener whose accept queue is full: further SYNs are dropped
        // and a connect waits.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let l = sock.listen(0).unwrap();
        let addr = l.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
            {
                fillers.push(s);
            }
        }
        let mut c = config(addr.to_string());
        c.connect_timeout = Duration::from_millis(300);
        let up = Upstream::new(c).unwrap();
        let t = Instant::now();
        assert_eq!(handle(&up, &get("/app/")).await.status, 504);
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert_eq!(up.stats().errors, [1, 0, 0, 0], "counted as connect");
        drop(l);
    });
}

#[test]
fn an_application_that_never_answers_is_a_504_at_the_timeout() {
    rt().block_on(async {
        let (addr, log) = server(|_, _| Act::Hang).await;
        let mut c = config(addr);
        c.timeout = Duration::from_millis(300);
        let up = Upstream::new(c).unwrap();
        let t = Instant::now();
        // GET is retried on a connection error, not on a timeout.
        assert_eq!(handle(&up, &get("/app/")).await.status, 504);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(up.stats().errors, [0, 1, 0, 0]);
        assert_eq!(log.got().len(), 1);
    });
}

#[test]
fn replies_larger_than_the_bound_are_refused() {
    rt().block_on(async {
        for reply in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n\
              0123456789012345678901234567890123456789012345678901234567890123\r\n0\r\n\r\n",
            // Read to EOF, no length.
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789012345678901234567890123456789012345678901234567890123",
        ] {
            let (addr, _) = server(move |_, _| Act::ReplyThenClose(reply, Duration::ZERO)).await;
            let mut c = config(addr);
            c.max_body = 32;
            let up = Upstream::new(c).unwrap();
            assert_eq!(handle(&up, &get("/app/")).await.status, 502);
            assert_eq!(up.stats().errors, [0, 0, 0, 1]);
        }
        // At the bound exactly: served.
        let (addr, _) = server(|_, _| Act::Reply(OK)).await;
        let mut c = config(addr);
        c.max_body = 2;
        let up = Upstream::new(c).unwrap();
        assert_eq!(handle(&up, &get("/app/")).await.status, 200);
    });
}

#[test]
fn hostnames_are_resolved_and_a_name_that_is_not_is_a_502() {
    rt().block_on(async {
        let (addr, log) = server(|_, _| Act::Reply(OK)).await;
        let port = addr.rsplit_once(':').unwrap().1;
        // `localhost` may resolve to ::1 first, where nobody listens: the
        // connector goes on to 127.0.0.1.
        let up = Upstream::new(config(format!("localhost:{port}"))).unwrap();
        assert_eq!(handle(&up, &get("/app/")).await.status, 200);
        assert_eq!(log.got().len(), 1);

        // `.invalid` never resolves (RFC 2606).
        let up = Upstream::new(config("no-such-host.invalid:80".into())).unwrap();
        let resp = handle(&up, &get("/app/")).await;
        assert_eq!(resp.status, 502);
        assert_eq!(up.stats().errors, [1, 0, 0, 0]);
    });
}

/// Answers the first request (keep-alive), takes the second and closes
/// without an answer, answers every later one. Counted over all
/// connections: whether hyper had the first connection back in its pool
/// for the second request or not, the second is the one lost.
fn dies_after_one() -> impl Fn(usize, usize) -> Act + Send + Sync + 'static {
    let seen = std::sync::atomic::AtomicUsize::new(0);
    move |_, _| {
        if seen.fetch_add(1, Ordering::SeqCst) == 1 {
            Act::Close
        } else {
            Act::Reply(OK)
        }
    }
}

/// A GET, then time for its connection to go back to the pool.
async fn warm(up: &Upstream) {
    assert_eq!(handle(up, &get("/app/")).await.status, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[test]
fn a_post_whose_pooled_connection_dies_is_never_sent_twice() {
    rt().block_on(async {
        let (addr, log) = server(dies_after_one()).await;
        let up = Upstream::new(config(addr)).unwrap();
        warm(&up).await;
        let post = request(Method::Post, "/app/pay", &[("Host", "shop")], b"42");
        assert_eq!(handle(&up, &post).await.status, 502);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let posts = log.got().iter().filter(|g| g.method() == "POST").count();
        assert_eq!(posts, 1, "the POST reached the application {posts} times");
        // PATCH likewise.
        let (addr, log) = server(dies_after_one()).await;
        let up = Upstream::new(config(addr)).unwrap();
        warm(&up).await;
        let patch = request(Method::Patch, "/app/pay", &[("Host", "shop")], b"42");
        assert_eq!(handle(&up, &patch).await.status, 502);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(log.got().len(), 2);
    });
}

#[test]
fn idempotent_requests_are_retried_once_on_a_fresh_connection() {
    rt().block_on(async {
        for method in [Method::Get, Method::Put, Method::Delete] {
            let (addr, log) = server(dies_after_one()).await;
            let up = Upstream::new(config(addr)).unwrap();
            warm(&up).await;
            let req = request(method, "/app/x", &[("Host", "shop")], b"");
            assert_eq!(handle(&up, &req).await.status, 200, "{method:?}");
            let got = log.got();
            let again: Vec<usize> = got
                .iter()
                .filter(|g| g.head.starts_with(&format!("{} /app/x ", method.as_str())))
                .map(|g| g.conn)
                .collect();
            assert_eq!(again, [0, 1], "{method:?}: {got:?}");
        }
        // Once: an application that drops every request is a 502 after two.
        let (addr, log) = server(|_, _| Act::Close).await;
        let up = Upstream::new(config(addr)).unwrap();
        assert_eq!(handle(&up, &get("/app/")).await.status, 502);
        assert_eq!(log.got().len(), 2);
    });
}

#[test]
fn retry_non_idempotent_retries_a_post() {
    rt().block_on(async {
        let (addr, log) = server(dies_after_one()).await;
        let mut c = config(addr);
        c.retry_non_idempotent = true;
        let up = Upstream::new(c).unwrap();
        warm(&up).await;
        let post = request(Method::Post, "/app/pay", &[("Host", "shop")], b"42");
        assert_eq!(handle(&up, &post).await.status, 200);
        let posts: Vec<Got> = log
            .got()
            .into_iter()
            .filter(|g| g.method() == "POST")
            .collect();
        assert_eq!(posts.len(), 2);
        // The same id both times: what the application deduplicates on.
        assert_eq!(
            posts[0].header("x-hotpair-request-id"),
            posts[1].header("x-hotpair-request-id")
        );
    });
}

#[test]
fn a_post_after_the_application_closed_an_idle_connection_goes_once_on_a_fresh_one() {
    rt().block_on(async {
        // The application's keep-alive timeout (50 ms) is shorter than ours.
        let (addr, log) = server(|conn, _| {
            if conn == 0 {
                Act::ReplyThenClose(OK, Duration::from_millis(50))
            } else {
                Act::Reply(OK)
            }
        })
        .await;
        let up = Upstream::new(config(addr)).unwrap();
        assert_eq!(handle(&up, &get("/app/")).await.status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let post = request(Method::Post, "/app/pay", &[("Host", "shop")], b"42");
        assert_eq!(handle(&up, &post).await.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let posts: Vec<Got> = log
            .got()
            .into_iter()
            .filter(|g| g.method() == "POST")
            .collect();
        assert_eq!(posts.len(), 1, "{posts:?}");
        assert_eq!(posts[0].conn, 1);
        assert_eq!(posts[0].body, b"42");
    });
}

#[test]
fn garbage_and_interim_replies_are_502() {
    rt().block_on(async {
        for reply in [
            &b"SMTP ready\r\n\r\n"[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        ] {
            let (addr, _) = server(move |_, _| Act::ReplyThenClose(reply, Duration::ZERO)).await;
            let up = Upstream::new(config(addr)).unwrap();
            // POST: not retried, so each reply is judged once.
            let post = request(Method::Post, "/app/", &[], b"");
            assert_eq!(
                handle(&up, &post).await.status,
                502,
                "{:?}",
                String::from_utf8_lossy(reply)
            );
            assert_eq!(up.stats().errors[2], 1);
        }
    });
}

#[test]
fn addresses_need_a_port_and_a_host() {
    for ok in [
        "127.0.0.1:8080",
        "[::1]:8080",
        "app.internal:8080",
        "app:1",
        "my_app-2.svc:65535",
    ] {
        assert_eq!(parse_address(ok), Ok(()), "{ok}");
    }
    assert!(matches!(
        parse_address("app.internal"),
        Err(AddressError::NoPort(_))
    ));
    assert!(matches!(
        parse_address("app.internal:"),
        Err(AddressError::NoPort(_))
    ));
    assert!(parse_address("app.internal")
        .unwrap_err()
        .to_string()
        .contains("has no port"));
    for bad_port in ["app:0", "app:65536", "app:http", "app:+80", "127.0.0.1:0"] {
        assert!(
            matches!(parse_address(bad_port), Err(AddressError::BadPort(_))),
            "{bad_port}"
        );
    }
    for bad_host in [
        ":80", "::1", "::1:80", "a..b:80", "a b:80", "a/b:80", "[::1:80",
    ] {
        assert!(
            matches!(parse_address(bad_host), Err(AddressError::BadHost(..))),
            "{bad_host}"
        );
    }
}

#[test]
fn proxy_v2_headers_are_the_protocols() {
    let h = direct::header_v2(
        "10.77.0.100:40000".parse().unwrap(),
        "10.77.0.10:80".parse().unwrap(),
    );
    let mut want = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    want.extend_from_slice(&[0x21, 0x11, 0, 12, 10, 77, 0, 100, 10, 77, 0, 10]);
    want.extend_from_slice(&[0x9c, 0x40, 0, 80]);
    assert_eq!(h, want);
    // Mixed families: both as IPv6 (the IPv4 one mapped).
    let h = direct::header_v2(
        "10.0.0.1:1".parse().unwrap(),
        "[2001:db8::1]:443".parse().unwrap(),
    );
    assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
    assert_eq!(
        &h[16..32],
        &"::ffff:10.0.0.1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
    );
    assert_eq!(h.len(), 16 + 36);
}

#[test]
fn with_the_proxy_protocol_each_request_has_its_own_connection_and_header() {
    rt().block_on(async {
        let (addr, log) = server_opts(true, |_, _| Act::Reply(OK)).await;
        let mut c = config(addr);
        c.proxy_protocol = true;
        let up = Upstream::new(c).unwrap();
        let service: SocketAddr = SERVICE.parse().unwrap();
        for port in [40001u16, 40002, 40001] {
            let client = SocketAddr::from(([10, 77, 0, 1], port));
            let mut req = get("/app/q");
            req.query = Some("x=1".into());
            let resp = up.handle(&req, "rid", client, service).await;
            assert_eq!(resp.status, 200);
            assert_eq!(&resp.body[..], b"ok");
        }
        assert_eq!(
            log.conns.load(Ordering::SeqCst),
            3,
            "one connection per request"
        );
        let headers = log.proxy_headers.lock().unwrap().clone();
        let ports: Vec<u16> = headers
            .iter()
            .map(|h| u16::from_be_bytes([h[24], h[25]]))
            .collect();
        assert_eq!(ports, [40001, 40002, 40001]);
        for h in &headers {
            assert_eq!(&h[16..20], &[10, 77, 0, 1], "source address");
            assert_eq!(&h[20..24], &[10, 77, 0, 10], "destination address");
        }
        // Origin-form target on these connections too.
        assert!(log.got()[0].head.starts_with("GET /app/q?x=1 HTTP/1.1\r\n"));
        // Each closed after its reply: none is kept.
        let deadline = Instant::now() + Duration::from_secs(3);
        while log.closed_by_client.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "a connection was kept open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // An application that never answers: a 504 at the timeout.
        let (addr, _) = server_opts(true, |_, _| Act::Hang).await;
        let mut c = config(addr);
        c.proxy_protocol = true;
        c.timeout = Duration::from_millis(300);
        let up = Upstream::new(c).unwrap();
        assert_eq!(handle(&up, &get("/app/")).await.status, 504);
        // Nobody listening: a 502.
        let mut c = config("127.0.0.1:1".into());
        c.proxy_protocol = true;
        let up = Upstream::new(c).unwrap();
        assert_eq!(handle(&up, &get("/app/")).await.status, 502);
        assert_eq!(up.stats().errors, [1, 0, 0, 0]);
    });
}

/// What `NodeCore::handle_job_unreachable` is told: only an application
/// that is gone — refused, or the connection dropped before a whole reply
/// — lets the peer run the request instead; a bad reply or a slow one is
/// the application's answer.
#[test]
fn only_a_refused_or_dropped_exchange_counts_as_unreachable() {
    rt().block_on(async {
        let (client, service) = (CLIENT.parse().unwrap(), SERVICE.parse().unwrap());
        let post = request(Method::Post, "/app/", &[], b"x");
        // Refused: bound, then closed, so nobody listens there.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = l.local_addr().unwrap().to_string();
        drop(l);
        let up = Upstream::new(config(refused)).unwrap();
        let p = up.handle_outcome(&post, "id-1", client, service).await;
        assert!(p.unreachable && p.response.status == 502, "{p:?}");
        // Read, then closed without a reply (the application died with it).
        let (addr, _) = server(|_, _| Act::Close).await;
        let up = Upstream::new(config(addr)).unwrap();
        let p = up.handle_outcome(&post, "id-2", client, service).await;
        assert!(p.unreachable && p.response.status == 502, "{p:?}");
        // A body cut short by the close.
        let (addr, _) = server(|_, _| {
            Act::ReplyThenClose(
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                Duration::ZERO,
            )
        })
        .await;
        let up = Upstream::new(config(addr)).unwrap();
        let p = up.handle_outcome(&post, "id-3", client, service).await;
        assert!(p.unreachable && p.response.status == 502, "{p:?}");
        // Garbage is an answer, a slow application is alive.
        let (addr, _) =
            server(|_, _| Act::ReplyThenClose(b"SMTP ready\r\n\r\n", Duration::ZERO)).await;
        let up = Upstream::new(config(addr)).unwrap();
        let p = up.handle_outcome(&post, "id-4", client, service).await;
        assert!(!p.unreachable && p.response.status == 502, "{p:?}");
        let (addr, _) = server(|_, _| Act::Hang).await;
        let mut cfg = config(addr);
        cfg.timeout = Duration::from_millis(200);
        let up = Upstream::new(cfg).unwrap();
        let p = up.handle_outcome(&post, "id-5", client, service).await;
        assert!(!p.unreachable && p.response.status == 504, "{p:?}");
        // A good reply.
        let (addr, _) = server(|_, _| Act::Reply(OK)).await;
        let up = Upstream::new(config(addr)).unwrap();
        let p = up.handle_outcome(&post, "id-6", client, service).await;
        assert!(!p.unreachable && p.response.status == 200, "{p:?}");
    });
}

/// `fallback`: a request the local application could not take (refused),
/// or dropped before a whole reply, goes to the fallback instance with
/// the same request id — a POST included, as a takeover would run it on
/// the peer — and `local_unreachable` tells the application check. A bad
/// or slow local answer is the answer: never sent on.
#[test]
fn an_unreachable_application_passes_the_request_to_its_fallback() {
    rt().block_on(async {
        let (client, service) = (CLIENT.parse().unwrap(), SERVICE.parse().unwrap());
        let post = request(Method::Post, "/app/orders", &[("Host", "shop")], b"order");
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let (peer, peer_log) = server(|_, _| Act::Reply(OK)).await;
        let with_fallback = |address: String| {
            let mut c = config(address);
            c.fallback = vec![peer.clone()];
            Upstream::new(c).unwrap()
        };

        // Refused locally: the peer's instance answers, once.
        let up = with_fallback(refused.clone());
        let p = up.handle_outcome(&post, "id-1", client, service).await;
        assert!(p.local_unreachable && !p.unreachable, "{p:?}");
        assert_eq!(p.response.status, 200, "{p:?}");
        assert_eq!(up.stats().fallback, 1);
        assert_eq!(up.stats().errors, [1, 0, 0, 0]);
        let got = peer_log.got();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].method(), "POST");
        assert_eq!(got[0].header(DEFAULT_REQUEST_ID_HEADER), ["id-1"]);
        assert_eq!(got[0].body, b"order");

        // Read, then dropped without a reply (the application died with
        // it): run again on the peer, same id.
        let (local, local_log) = server(|_, _| Act::Close).await;
        let up = with_fallback(local);
        let p = up.handle_outcome(&post, "id-2", client, service).await;
        assert!(
            p.local_unreachable && !p.unreachable && p.response.status == 200,
            "{p:?}"
        );
        assert_eq!(local_log.got().len(), 1);
        let got = peer_log.got();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].header(DEFAULT_REQUEST_ID_HEADER), ["id-2"]);

        // Garbage, and a slow application, are answers: not sent on.
        let (local, _) =
            server(|_, _| Act::ReplyThenClose(b"SMTP ready\r\n\r\n", Duration::ZERO)).await;
        let up = with_fallback(local);
        let p = up.handle_outcome(&post, "id-3", client, service).await;
        assert!(!p.local_unreachable && p.response.status == 502, "{p:?}");
        let (local, _) = server(|_, _| Act::Hang).await;
        let mut c = config(local);
        c.fallback = vec![peer.clone()];
        c.timeout = Duration::from_millis(200);
        let up = Upstream::new(c).unwrap();
        let p = up.handle_outcome(&post, "id-4", client, service).await;
        assert!(!p.local_unreachable && p.response.status == 504, "{p:?}");
        assert_eq!(
            peer_log.got().len(),
            2,
            "a bad or slow answer went to the fallback"
        );
        assert_eq!(up.stats().fallback, 0);

        // Both gone: unreachable, the held-reply path decides.
        let c = {
            let mut c = config(refused.clone());
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            c.fallback = vec![l.local_addr().unwrap().to_string()];
            c
        };
        let up = Upstream::new(c).unwrap();
        let p = up.handle_outcome(&post, "id-5", client, service).await;
        assert!(
            p.local_unreachable && p.unreachable && p.response.status == 502,
            "{p:?}"
        );
        assert_eq!(up.stats().errors, [2, 0, 0, 0]);

        // A fallback that is the address itself is refused.
        let mut c = config(peer.clone());
        c.fallback = vec![peer.clone()];
        assert!(matches!(
            Upstream::new(c),
            Err(UpstreamError::FallbackIsAddress(_))
        ));
    });
}
