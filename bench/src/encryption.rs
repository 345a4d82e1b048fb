//! What the replication link's encryption (Noise, `appliance/src/secure.rs`)
//! costs: duplex with `/static/` `logged` — every reply crosses the link —
//! with the link secured (the default) and in plaintext
//! (`--link-plaintext`), one outstanding request, size by size, in one run.

use std::fmt::Write;

use super::markdown::{kb, table, us};
use super::model::{Config, Results, Workload};

/// The report's section.
pub fn section(o: &mut String, r: &Results) {
    let _ = writeln!(o, "## The replication link's encryption\n");
    let _ = writeln!(
        o,
        "Duplex, /static/ `logged` (each reply crosses the link, sealed and opened once), \
         one outstanding request: the link secured (Noise KK, ChaCha20-Poly1305; the \
         default) against `lab up --link-plaintext`.\n"
    );
    let rows: Vec<Vec<String>> = r
        .latency_sizes()
        .into_iter()
        .filter_map(|s| {
            let sec = r.latency(Config::Duplex, Workload::Files, s)?;
            let plain = r.latency(Config::DuplexPlaintext, Workload::Files, s)?;
            Some(vec![
                kb(s),
                us(Some(sec.wrk.mean_us)),
                us(Some(plain.wrk.mean_us)),
                us(Some(sec.wrk.p50_us)),
                us(Some(plain.wrk.p50_us)),
                us(Some(sec.wrk.p99_us)),
                us(Some(plain.wrk.p99_us)),
                format!("{:+.0} µs", sec.wrk.p50_us - plain.wrk.p50_us),
            ])
        })
        .collect();
    table(
        o,
        &[
            "size",
            "mean, secured",
            "mean, plaintext",
            "p50, secured",
            "p50, plaintext",
            "p99, secured",
            "p99, plaintext",
            "p50 cost",
        ],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use super::super::model::{Measured, Point};
    use super::*;

    fn lat(config: Config, size: u64, p50_us: f64) -> Measured {
        let mut point = Point {
            conns: 1,
            ..Point::default()
        };
        point.wrk.mean_us = p50_us + 10.0;
        point.wrk.p50_us = p50_us;
        point.wrk.p99_us = 2.0 * p50_us;
        Measured {
            config,
            workload: Workload::Files,
            size,
            point,
        }
    }

    #[test]
    fn rows_pair_secured_and_plaintext_by_size() {
        let mut r = Results::default();
        let mut o = String::new();
        section(&mut o, &r);
        assert!(o.contains("Not run in this bench"), "{o}");
        r.latency.push(lat(Config::Duplex, 1024, 200.0));
        r.latency.push(lat(Config::DuplexPlaintext, 1024, 180.0));
        // A size with only one side measured has no row.
        r.latency.push(lat(Config::Duplex, 50 * 1024, 900.0));
        let mut o = String::new();
        section(&mut o, &r);
        assert!(
            o.contains("| 1 KB | 210 µs | 190 µs | 200 µs | 180 µs | 400 µs | 360 µs | +20 µs |"),
            "{o}"
        );
        assert!(!o.contains("| 50 KB"), "{o}");
    }
}
