//! HTTP and HTTPS apart: connections and requests by the service port they
//! reached (an address with `[tls]` serves HTTP on its port and HTTPS on
//! the TLS port, one engine for both; the other families add them up).

use super::family;
use crate::admin::Status;

/// `hotpair_port_connections_total` and `hotpair_port_requests_total`.
pub(super) fn render(o: &mut String, s: &Status) {
    type Get = fn(&crate::admin::PortStatus) -> u64;
    let families: [(&'static str, &str, Get); 2] = [
        (
            "hotpair_port_connections_total",
            "Connections served here by service port and scheme (http, https): accepted live, or made live by a takeover.",
            |p| p.connections,
        ),
        (
            "hotpair_port_requests_total",
            "Requests parsed here, and requests whose reply a takeover finished here, by service port and scheme (http, https).",
            |p| p.requests,
        ),
    ];
    for (name, help, get) in families {
        let mut f = family(o, name, "counter", help);
        for a in &s.addresses {
            for p in &a.ports {
                f.sample(
                    &[
                        ("address", &a.address),
                        ("port", &p.port.to_string()),
                        ("scheme", &p.scheme),
                    ],
                    get(p) as f64,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_and_https_are_apart_by_port() {
        let mut s = crate::admin::tests::sample();
        let text = super::super::render(&s);
        for line in [
            "hotpair_port_connections_total{address=\"10.77.0.10\",port=\"80\",scheme=\"http\"} 2",
            "hotpair_port_connections_total{address=\"10.77.0.10\",port=\"443\",scheme=\"https\"} 6",
            "hotpair_port_requests_total{address=\"10.77.0.10\",port=\"80\",scheme=\"http\"} 1",
            "hotpair_port_requests_total{address=\"10.77.0.10\",port=\"443\",scheme=\"https\"} 3",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        // Each family once, with its HELP and TYPE.
        assert_eq!(
            text.matches("# TYPE hotpair_port_requests_total counter")
                .count(),
            1
        );
        // An address with no ports listed (an older node's JSON): no samples.
        s.addresses[0].ports.clear();
        let text = super::super::render(&s);
        assert!(!text.contains("hotpair_port_requests_total{"), "{text}");
    }
}
