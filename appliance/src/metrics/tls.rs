//! The HTTPS families (addresses with `[tls]` only).

use super::family;
use crate::admin::Status;

/// `hotpair_tls_handshakes_total` and `hotpair_tls_errors_total`.
pub(super) fn render(o: &mut String, s: &Status) {
    let tls: Vec<_> = s
        .addresses
        .iter()
        .filter_map(|a| a.tls.as_ref().map(|t| (a.address.as_str(), t)))
        .collect();
    if tls.is_empty() {
        return;
    }
    let mut f = family(
        o,
        "hotpair_tls_handshakes_total",
        "counter",
        "TLS handshakes completed on this node: full, or resumed with a session ticket.",
    );
    for (address, t) in &tls {
        f.sample(
            &[("address", address), ("kind", "full")],
            (t.handshakes - t.resumed.min(t.handshakes)) as f64,
        );
        f.sample(
            &[("address", address), ("kind", "resumed")],
            t.resumed as f64,
        );
    }
    let mut f = family(
        o,
        "hotpair_tls_suite_handshakes_total",
        "counter",
        "TLS handshakes completed on this node by cipher suite (all TLS 1.3).",
    );
    for (address, t) in &tls {
        for (suite, n) in &t.suites {
            f.sample(&[("address", address), ("suite", suite)], *n as f64);
        }
    }
    let mut f = family(
        o,
        "hotpair_tls_errors_total",
        "counter",
        "HTTPS connections closed on a TLS error (the client's alert, a bad record, a failed handshake).",
    );
    for (address, t) in &tls {
        f.sample(&[("address", address)], t.errors as f64);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn https_counters_are_exported_for_https_addresses_only() {
        let mut s = crate::admin::tests::sample();
        let text = super::super::render(&s);
        for line in [
            "hotpair_tls_handshakes_total{address=\"10.77.0.10\",kind=\"full\"} 5",
            "hotpair_tls_handshakes_total{address=\"10.77.0.10\",kind=\"resumed\"} 2",
            "hotpair_tls_errors_total{address=\"10.77.0.10\"} 1",
            "hotpair_tls_suite_handshakes_total{address=\"10.77.0.10\",suite=\"TLS_AES_256_GCM_SHA384\"} 7",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        s.addresses[0].tls = None;
        assert!(!super::super::render(&s).contains("hotpair_tls_"));
    }
}
