//! The metrics counted live, off the stack thread: each upstream route's
//! replies by status code and its failures by kind, and the access log's
//! dropped lines.

use super::{family, Extra};
use crate::upstream::ERROR_KINDS;

/// Appended to the snapshot's text.
pub(super) fn render(o: &mut String, extra: &Extra) {
    if !extra.upstreams.is_empty() {
        let stats: Vec<_> = extra
            .upstreams
            .iter()
            .map(|u| (u.route(), u.stats()))
            .collect();
        let mut f = family(
            o,
            "hotpair_upstream_responses_total",
            "counter",
            "Replies from the upstream application, by route and status code (its own, not the proxy's 502/504).",
        );
        for (route, s) in &stats {
            for (code, n) in &s.responses {
                f.sample(&[("route", route), ("code", &code.to_string())], *n as f64);
            }
        }
        let mut f = family(
            o,
            "hotpair_upstream_errors_total",
            "counter",
            "Upstream exchanges that failed, by route and kind: connect, timeout, protocol, too_large (the client got 502, or 504 for a timeout, unless a fallback instance answered).",
        );
        for (route, s) in &stats {
            for (kind, n) in ERROR_KINDS.iter().zip(s.errors) {
                f.sample(&[("route", route), ("kind", kind)], n as f64);
            }
        }
        let mut f = family(
            o,
            "hotpair_upstream_fallback_total",
            "counter",
            "Requests a route's fallback instance answered because its own application was unreachable (refused, reset, closed).",
        );
        for (route, s) in &stats {
            f.sample(&[("route", route)], s.fallback as f64);
        }
    }
    if let Some(log) = &extra.access_log {
        let mut f = family(
            o,
            "hotpair_access_log_dropped_total",
            "counter",
            "Access log lines dropped: the writer was behind (its queue full) or could not write.",
        );
        f.sample(&[], log.dropped() as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::upstream::{Upstream, UpstreamConfig};

    fn upstream(address: String) -> Arc<Upstream> {
        Arc::new(
            Upstream::new(UpstreamConfig {
                route: "/app/".into(),
                address,
                max_idle: 1,
                idle_timeout: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(1),
                timeout: Duration::from_secs(2),
                max_body: 1024,
                retry_non_idempotent: false,
                fallback: Vec::new(),
                request_id_header: "X-Hotpair-Request-Id".into(),
                proxy_protocol: false,
            })
            .unwrap(),
        )
    }

    #[test]
    fn replies_by_code_and_failures_by_kind() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (answering, refused) = rt.block_on(async {
            // An application answering 404 once.
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap().to_string();
            tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut b = [0u8; 4096];
                let _ = s.read(&mut b).await;
                let _ = s
                    .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    .await;
                let _ = s.read(&mut b).await;
            });
            let answering = upstream(addr);
            let refused = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                upstream(l.local_addr().unwrap().to_string())
            };
            let req = hotpair_http::Request {
                index: 0,
                method: hotpair_http::Method::Get,
                path: "/app/".into(),
                query: None,
                version: hotpair_http::Version::Http11,
                headers: Vec::new(),
                body: bytes::Bytes::new(),
                keep_alive: true,
            };
            let (c, s) = (
                "10.0.0.1:1".parse().unwrap(),
                "10.0.0.10:80".parse().unwrap(),
            );
            assert_eq!(answering.handle(&req, "id", c, s).await.status, 404);
            assert_eq!(refused.handle(&req, "id", c, s).await.status, 502);
            (answering, refused)
        });
        let mut o = String::new();
        let extra = Extra {
            upstreams: vec![answering],
            access_log: None,
        };
        render(&mut o, &extra);
        assert!(
            o.contains("\nhotpair_upstream_responses_total{route=\"/app/\",code=\"404\"} 1\n"),
            "{o}"
        );
        assert!(
            o.contains("hotpair_upstream_errors_total{route=\"/app/\",kind=\"connect\"} 0\n"),
            "{o}"
        );
        assert_eq!(
            o.matches("# TYPE hotpair_upstream_errors_total counter")
                .count(),
            1
        );
        let mut o = String::new();
        render(
            &mut o,
            &Extra {
                upstreams: vec![refused],
                access_log: None,
            },
        );
        assert!(
            o.contains("hotpair_upstream_errors_total{route=\"/app/\",kind=\"connect\"} 1\n"),
            "{o}"
        );
        assert!(!o.contains("hotpair_access_log_dropped_total"));
        // Nothing configured, nothing said.
        let mut o = String::new();
        render(&mut o, &Extra::default());
        assert!(o.is_empty());
    }
}
