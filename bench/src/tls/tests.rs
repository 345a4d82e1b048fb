use super::super::model::{
    Point, Results, StallSet, TlsOverheadRun, TlsRow, TlsRun, TlsServer, TlsStall,
};
use super::super::nginx::TLS_SUITE;
use super::super::target::Target as Verdict;
use super::super::wrk;
use super::measure::{check_suite, parse_s_client, parse_s_time};
use super::targets::{overheads, targets};
use super::{lab_spec, overhead_order, section};

fn row(server: TlsServer, size: u64, conns: u32, rps: f64, cpu: &[(&str, u64)]) -> TlsRow {
    TlsRow {
        server,
        size,
        point: Point {
            conns,
            wrk: wrk::WrkResult {
                requests: (rps * 5.0) as u64,
                seconds: 5.0,
                rps,
                p50_us: 900.0,
                p99_us: 15_000.0,
                ..Default::default()
            },
            cpu_ns: cpu.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            wall_s: 5.0,
            quota: Some(0.5),
        },
        handshakes: None,
        resumed: None,
    }
}

#[test]
fn section_has_each_table_and_the_ratios() {
    let mut r = Results::default();
    let mut o = String::new();
    section(&mut o, &r);
    assert!(o.is_empty(), "no tls run, no section");
    // 2,000 req/s × 5 s = 10,000 requests; 1 s of n1 = 100 µs each.
    let mut hs = row(
        TlsServer::DuplexStatic,
        1024,
        16,
        300.0,
        &[("n1", 1_500_000_000), ("n2", 150_000_000)],
    );
    hs.handshakes = Some(1500);
    hs.resumed = Some(0);
    r.tls = Some(TlsRun {
        negotiated: vec![(
            "nginx HTTPS".into(),
            "TLSv1.3, TLS_AES_256_GCM_SHA384".into(),
        )],
        nginx_tls: "ssl_protocols TLSv1.3;".into(),
        keepalive: vec![
            row(
                TlsServer::Simplex,
                1024,
                16,
                2000.0,
                &[("n1", 1_000_000_000)],
            ),
            row(
                TlsServer::DuplexStatic,
                1024,
                16,
                1000.0,
                &[("n1", 1_000_000_000), ("n2", 500_000_000)],
            ),
            row(
                TlsServer::Nginx,
                1024,
                16,
                4000.0,
                &[("nginx", 1_000_000_000)],
            ),
            row(
                TlsServer::DuplexStaticHttp,
                1024,
                16,
                2500.0,
                &[("n1", 1_000_000_000), ("n2", 500_000_000)],
            ),
        ],
        full_handshakes: vec![{
            // s_time: counts and rate only.
            let mut f = row(
                TlsServer::Nginx,
                1024,
                16,
                500.0,
                &[("nginx", 1_250_000_000)],
            );
            f.point.wrk.p50_us = 0.0;
            f
        }],
        handshakes: vec![hs],
        handshake_conns: 16,
        stalls: vec![
            stall(
                "logged",
                "owner",
                true,
                (1..=10).map(|x| x as f64 * 10.0).collect(),
            ),
            stall("logged", "owner", false, vec![40.0; 10]),
        ],
        overhead: overhead_runs(1024, 3, [100.0, 200.0, 110.0, 242.0]),
        overhead_seconds: 2.0,
        ..TlsRun::default()
    });
    let mut o = String::new();
    section(&mut o, &r);
    assert!(
        o.contains("| duplex HTTPS static | 1 KB | 16 | 1000 | 900 µs | 15.0 ms | n1 200.0 + n2 100.0 | 40 % |"),
        "{o}"
    );
    assert!(
        o.contains("| unreplicated HTTPS | 1 KB | 16 | 2000 | 900 µs | 15.0 ms | 100.0 | 40 % |"),
        "{o}"
    );
    // unreplicated/nginx 0.5, duplex/nginx 0.25, duplex/unreplicated 0.5, HTTPS/HTTP 0.4, logged: none.
    assert!(
        o.contains("| 1 KB | 16 | 0.50 | 0.25 | 0.50 | 0.40 | — |"),
        "{o}"
    );
    assert!(
        o.contains("| duplex HTTPS static | 300 | 900 µs | 15.0 ms | n1 1000.0 + n2 100.0 | 60 % | 1500 (0 resumed) / 1500 requests |"),
        "{o}"
    );
    assert!(
        o.contains("| logged | HTTPS | owner (owner) | SIGKILL | 10 | 50 ms | 90 ms | 100 ms | 100 / 500 ms |"),
        "{o}"
    );
    assert!(
        o.contains("| logged | HTTP | owner (owner) | SIGKILL | 10 | 40 ms | 40 ms | 40 ms | 100 / 500 ms |"),
        "{o}"
    );
    // Overhead: HTTP 200/100 = 2.00, HTTPS 242/110 = 2.20, 2.20 / 2.00 = 1.10.
    assert!(
        o.contains("| 1 KB | 3 | 100 µs | 200 µs | 2.00 | 110 µs | 242 µs | 2.20 | 1.10 |"),
        "{o}"
    );
    // The targets, with their verdicts: the stall 50 ms vs 40 ms is 1.25×.
    assert!(o.contains("### Issue 18's targets"), "{o}");
    assert!(
        o.contains("| HTTPS failover stall ≤ 1.1× HTTP's, logged, owner SIGKILLed | median 50 ms vs 40 ms over 10 kills each = 1.25× | **missed** |"),
        "{o}"
    );
    assert!(
        o.contains("| HTTPS: unreplicated keep-alive ≥ 1.0× nginx req/s at 1 KB and 50 KB, 1 and 32 connections | — | not measured |"),
        "{o}"
    );
    assert!(
        o.contains("- nginx HTTPS: TLSv1.3, TLS_AES_256_GCM_SHA384"),
        "{o}"
    );
    // 2,500 handshakes, 1.25 s of CPU: 500 µs each; 50 % of 0.5 CPU over 5 s.
    assert!(
        o.contains("| nginx HTTPS | 500 | 500.0 | 50 % | — (nginx does not count) |"),
        "{o}"
    );
}

fn stall(policy: &str, victim: &str, https: bool, ms: Vec<f64>) -> TlsStall {
    TlsStall {
        policy: policy.into(),
        set: StallSet {
            victim: victim.into(),
            signal: "SIGKILL".into(),
            stalls_ms: ms,
            heartbeat_interval_ms: 100,
            heartbeat_timeout_ms: 500,
            baseline_ms: vec![],
        },
        https,
    }
}

/// `rounds` rounds of the four overhead cells at `size`, p50s
/// [unreplicated HTTP, duplex HTTP, unreplicated HTTPS, duplex HTTPS]
/// scaled by 1, 0.5, 1.5, 1, … per round (so the median is the value).
fn overhead_runs(size: u64, rounds: u32, p50: [f64; 4]) -> Vec<TlsOverheadRun> {
    let scale = [1.0, 0.5, 1.5];
    let mut v = Vec::new();
    for round in 0..rounds {
        for (duplex, https) in overhead_order(round) {
            let i = usize::from(duplex) + 2 * usize::from(https);
            v.push(TlsOverheadRun {
                size,
                duplex,
                https,
                round,
                p50_us: p50[i] * scale[round as usize % 3],
                rps: 1000.0,
            });
        }
    }
    v
}

#[test]
fn overhead_rounds_rotate_the_cells() {
    let all: Vec<[(bool, bool); 4]> = (0..4).map(overhead_order).collect();
    // Each cell comes first in exactly one of four rounds.
    for c in [(false, false), (false, true), (true, false), (true, true)] {
        assert_eq!(all.iter().filter(|r| r[0] == c).count(), 1, "{c:?}");
        assert!(all.iter().all(|r| r.contains(&c)));
    }
    assert_eq!(overhead_order(5), overhead_order(1));
}

#[test]
fn overhead_is_the_median_of_each_cell_and_the_ratio_of_ratios() {
    let mut t = TlsRun {
        overhead: overhead_runs(1024, 3, [100.0, 150.0, 120.0, 240.0]),
        ..TlsRun::default()
    };
    // A size with a cell missing is left out.
    t.overhead.extend(
        overhead_runs(50 * 1024, 3, [1.0; 4])
            .into_iter()
            .filter(|r| !(r.duplex && r.https)),
    );
    let ov = overheads(&t);
    assert_eq!(ov.len(), 1, "{ov:?}");
    let o = ov[0];
    assert_eq!(
        (
            o.size,
            o.rounds,
            o.simplex_http,
            o.duplex_http,
            o.simplex_https,
            o.duplex_https
        ),
        (1024, 3, 100.0, 150.0, 120.0, 240.0)
    );
    assert_eq!((o.http(), o.https()), (1.5, 2.0));
    assert!((o.ratio() - 4.0 / 3.0).abs() < 1e-9);
    let v = targets(&t);
    let over: Vec<&Verdict> = v.iter().filter(|v| v.what.contains("overhead")).collect();
    assert_eq!(over.len(), 1);
    assert_eq!(over[0].met, Some(false));
    assert_eq!(
        over[0].ours,
        "HTTPS 2.00× (240 / 120 µs) ÷ HTTP 1.50× (150 / 100 µs) = 1.33×, medians of 3 rounds"
    );
    // Within 1.1×: met.
    t.overhead = overhead_runs(1024, 3, [100.0, 150.0, 120.0, 198.0]);
    let v = targets(&t);
    assert!(v
        .iter()
        .any(|v| v.what.contains("overhead") && v.met == Some(true)));
}

#[test]
fn every_target_has_its_verdict() {
    use TlsServer::*;
    let t = TlsRun {
        keepalive: vec![
            row(Simplex, 1024, 1, 1100.0, &[]),
            row(Nginx, 1024, 1, 1000.0, &[]),
            row(Simplex, 1024, 32, 1900.0, &[]),
            row(Nginx, 1024, 32, 2000.0, &[]),
            row(Simplex, 51200, 1, 500.0, &[]),
            row(Nginx, 51200, 1, 400.0, &[]),
            // 50 KB: static/logged 2.5× at 1, 2× at 32; best 3000/1500 = 2×.
            row(DuplexStatic, 51200, 1, 2500.0, &[]),
            row(DuplexLogged, 51200, 1, 1000.0, &[]),
            row(DuplexStatic, 51200, 32, 3000.0, &[]),
            row(DuplexLogged, 51200, 32, 1500.0, &[]),
        ],
        full_handshakes: vec![
            row(Simplex, 1024, 16, 820.0, &[]),
            row(DuplexStatic, 1024, 16, 700.0, &[]),
            row(Nginx, 1024, 16, 1000.0, &[]),
        ],
        stalls: vec![
            stall("static", "primary", false, vec![80.0, 78.0, 90.0]),
            stall("static", "primary", true, vec![85.0, 88.0, 84.0]),
        ],
        ..TlsRun::default()
    };
    let v = targets(&t);
    let get = |s: &str| v.iter().find(|v| v.what.contains(s)).unwrap();
    let ka = get("keep-alive");
    assert_eq!(ka.met, Some(false), "1 KB ×32 is 0.95×");
    assert_eq!(
        ka.ours,
        "worst 0.95×: 1 KB ×1 1.10×, 1 KB ×32 0.95×, 50 KB ×1 1.25× (only 3 of the 4 cells measured)"
    );
    let hs = get("handshakes");
    assert_eq!(hs.met, Some(true));
    assert_eq!(
        hs.ours,
        "820 vs 1000/s = 0.82× (duplex static 700/s = 0.70×)"
    );
    // Stall medians 85 vs 80 ms: 1.06×.
    let st = get("stall");
    assert_eq!(st.met, Some(true));
    assert_eq!(
        st.what,
        "HTTPS failover stall ≤ 1.1× HTTP's, static, primary SIGKILLed"
    );
    assert_eq!(st.ours, "median 85 ms vs 80 ms over 3 kills each = 1.06×");
    let sl = get("`static`");
    assert_eq!(sl.met, Some(true));
    assert_eq!(sl.ours, "2.00×; per concurrency ×1 2.50×, ×32 2.00×");
    // Not measured: no overhead runs.
    assert_eq!(get("overhead").met, None);
    // The run's report lists them among its targets too.
    let r = Results {
        tls: Some(t.clone()),
        ..Results::default()
    };
    let all = super::super::report::targets(&r);
    assert!(all.iter().any(|a| a.what == st.what && a.met == Some(true)));
}

#[test]
fn only_the_benchs_suite_is_accepted() {
    assert!(check_suite(
        "nginx HTTPS",
        "X25519, 253 bits, TLSv1.3, TLS_AES_128_GCM_SHA256, verify 0 (ok)"
    )
    .is_ok());
    let e = check_suite(
        "nginx HTTPS",
        "X25519, 253 bits, TLSv1.3, TLS_AES_256_GCM_SHA384, verify 0 (ok)",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not TLS_AES_128_GCM_SHA256"), "{e}");
    assert!(check_suite("x", "not known (openssl s_client said nothing usable)").is_err());
}

#[test]
fn https_labs_serve_the_one_suite() {
    for s in [
        TlsServer::Simplex,
        TlsServer::DuplexStatic,
        TlsServer::DuplexLogged,
    ] {
        let (_, args) = lab_spec(s).unwrap();
        let i = args
            .iter()
            .position(|a| *a == "--tls-cipher-suites")
            .unwrap();
        assert_eq!(args[i + 1], TLS_SUITE);
        assert!(args.contains(&"--tls"));
    }
    for s in [TlsServer::DuplexStaticHttp, TlsServer::DuplexLoggedHttp] {
        let (_, args) = lab_spec(s).unwrap();
        assert!(!args.iter().any(|a| a.starts_with("--tls")));
    }
}

#[test]
fn s_client_output() {
    let out = "CONNECTED(00000003)\n---\nServer Temp Key: X25519, 253 bits\n---\n\
               New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384\nVerify return code: 0 (ok)\n";
    assert_eq!(
        parse_s_client(out),
        "X25519, 253 bits, TLSv1.3, TLS_AES_256_GCM_SHA384, verify 0 (ok)"
    );
    assert!(parse_s_client("connect: Connection refused").starts_with("not known"));
    // Repeated per session ticket: said once.
    let twice =
        format!("{out}---\nPost-Handshake New Ticket arrived:\nVerify return code: 0 (ok)\n");
    assert_eq!(parse_s_client(&twice), parse_s_client(out));
}

#[test]
fn s_time_output() {
    let out = "Collecting connection statistics for 5 seconds\ntttttttttt\n\n\
               1771 connections in 1.93s; 917.62 connections/user sec, bytes read 2023482\n\
               1771 connections in 6 real seconds, 1142 bytes read per connection\n";
    assert_eq!(parse_s_time(out), Some((1771, 1142)));
    assert_eq!(parse_s_time("ERROR\nconnect: Connection refused"), None);
}
