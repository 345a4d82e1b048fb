//! Running wrk (closed loop: each connection keeps one request outstanding)
//! and reading its output.

use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// What one wrk run reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WrkResult {
    pub requests: u64,
    pub seconds: f64,
    pub rps: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p75_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// connect + read + write + timeout socket errors.
    pub socket_errors: u64,
    pub non_2xx: u64,
}

/// A wrk duration such as `67.22us`, `1.23ms`, `2.00s` or `1.00m`, in µs.
pub fn duration_us(s: &str) -> Option<f64> {
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60e6)
    } else if let Some(v) = s.strip_suffix('h') {
        (v, 3600e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}

/// Parses wrk's `--latency` output. Errors are counted, not refused: see
/// [`WrkResult::check`].
pub fn parse(out: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    let (mut got_rps, mut got_reqs) = (false, false);
    for line in out.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        match t.as_slice() {
            ["Latency", avg, _stdev, max, ..] => {
                r.mean_us = duration_us(avg).with_context(|| format!("latency `{avg}`"))?;
                r.max_us = duration_us(max).with_context(|| format!("latency max `{max}`"))?;
            }
            [p, v] if p.ends_with('%') => {
                let v = duration_us(v).with_context(|| format!("percentile `{line}`"))?;
                match *p {
                    "50%" => r.p50_us = v,
                    "75%" => r.p75_us = v,
                    "90%" => r.p90_us = v,
                    "99%" => r.p99_us = v,
                    _ => {}
                }
            }
            [n, "requests", "in", secs, ..] => {
                r.requests = n.parse().with_context(|| format!("request count `{n}`"))?;
                let secs = secs.trim_end_matches(',');
                r.seconds = duration_us(secs).with_context(|| format!("duration `{secs}`"))? / 1e6;
                got_reqs = true;
            }
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                for pair in rest.chunks(2) {
                    if let [_, n] = pair {
                        r.socket_errors += n
                            .trim_end_matches(',')
                            .parse::<u64>()
                            .with_context(|| format!("socket errors `{line}`"))?;
                    }
                }
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                r.non_2xx = n.parse().with_context(|| format!("non-2xx `{line}`"))?;
            }
            ["Requests/sec:", n] => {
                r.rps = n.parse().with_context(|| format!("requests/s `{n}`"))?;
                got_rps = true;
            }
            _ => {}
        }
    }
    if !got_rps || !got_reqs {
        bail!("no `Requests/sec` or `requests in` line in wrk's output");
    }
    Ok(r)
}

impl WrkResult {
    /// Fails on any socket error, non-2xx reply, or a run that served nothing.
    pub fn check(&self) -> Result<()> {
        if self.socket_errors > 0 || self.non_2xx > 0 || self.requests == 0 {
            bail!(
                "wrk saw {} socket error(s), {} non-2xx/3xx repl(ies), {} request(s)",
                self.socket_errors,
                self.non_2xx,
                self.requests
            );
        }
        Ok(())
    }

    /// Several wrk runs at once (one per address) as one: requests and
    /// rates add up, latencies are request-weighted means (percentiles: the
    /// worst of the runs, an upper bound).
    pub fn combine(parts: &[WrkResult]) -> WrkResult {
        let mut r = WrkResult::default();
        let total = parts.iter().map(|p| p.requests).sum::<u64>().max(1) as f64;
        for p in parts {
            r.requests += p.requests;
            r.seconds = r.seconds.max(p.seconds);
            r.rps += p.rps;
            r.mean_us += p.mean_us * p.requests as f64 / total;
            r.p50_us = r.p50_us.max(p.p50_us);
            r.p75_us = r.p75_us.max(p.p75_us);
            r.p90_us = r.p90_us.max(p.p90_us);
            r.p99_us = r.p99_us.max(p.p99_us);
            r.max_us = r.max_us.max(p.max_us);
            r.socket_errors += p.socket_errors;
            r.non_2xx += p.non_2xx;
        }
        r
    }
}

/// The wrk command for `conns` connections (one wrk thread: the client has
/// the CPUs the nodes' quotas leave) against `url` for `secs` seconds, run in
/// namespace `ns`.
pub fn command(ns: &str, url: &str, conns: u32, secs: f64) -> Command {
    command_with(ns, url, conns, secs, &[])
}

/// [`command`] with more wrk arguments (e.g. `-H "Connection: close"`).
pub fn command_with(ns: &str, url: &str, conns: u32, secs: f64, extra: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "timeout", "-k", "5"])
        .arg(format!("{}", secs.ceil() as u64 + 30))
        .args(["wrk", "-t1", "--latency"])
        .arg(format!("-c{conns}"))
        .arg(format!("-d{}s", secs.ceil().max(1.0) as u64))
        .args(extra)
        .arg(url);
    c
}

/// Runs several wrk commands at once and waits for all; each must exit 0,
/// parse, and be free of errors.
pub fn run_all(cmds: Vec<Command>) -> Result<Vec<WrkResult>> {
    let mut children = Vec::new();
    for mut c in cmds {
        let desc = format!("{c:?}");
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push((
            desc.clone(),
            c.spawn().with_context(|| format!("starting {desc}"))?,
        ));
    }
    let mut out = Vec::new();
    let mut first_err = None;
    for (desc, child) in children {
        let o = child
            .wait_with_output()
            .with_context(|| format!("waiting for {desc}"))?;
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let res = if o.status.success() {
            parse(&text).and_then(|r| r.check().map(|()| r))
        } else {
            Err(anyhow::anyhow!("exit status {}", o.status))
        };
        match res {
            Ok(r) => out.push(r),
            Err(e) => {
                first_err.get_or_insert(e.context(format!(
                    "{desc} failed:\n{text}{}",
                    String::from_utf8_lossy(&o.stderr)
                )));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 5s test @ http://10.77.0.10/static/1k.bin
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    67.22us   20.11us   1.23ms   95.00%
    Req/Sec    14.78k     1.01k   16.00k    80.00%
  Latency Distribution
     50%   65.00us
     75%   70.00us
     90%   80.00us
     99%    1.30ms
  73904 requests in 5.00s, 82.12MB read
Requests/sec:  14780.75
Transfer/sec:     16.42MB
";

    #[test]
    fn parses_a_clean_run() {
        let r = parse(OUT).unwrap();
        assert_eq!(r.requests, 73904);
        assert_eq!(r.seconds, 5.0);
        assert_eq!(r.rps, 14780.75);
        assert_eq!(r.mean_us, 67.22);
        assert_eq!(r.max_us, 1230.0);
        assert_eq!(
            (r.p50_us, r.p75_us, r.p90_us, r.p99_us),
            (65.0, 70.0, 80.0, 1300.0)
        );
        assert_eq!((r.socket_errors, r.non_2xx), (0, 0));
        r.check().unwrap();
    }

    #[test]
    fn errors_are_counted_and_refused() {
        let out = OUT.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 2, write 16, timeout 1\n  Non-2xx or 3xx responses: 5\nRequests/sec",
        );
        let r = parse(&out).unwrap();
        assert_eq!(r.socket_errors, 19);
        assert_eq!(r.non_2xx, 5);
        assert!(r.check().is_err());
        assert!(parse("wrk: unable to connect").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration_us("12.5us"), Some(12.5));
        assert_eq!(duration_us("2.00s"), Some(2e6));
        assert_eq!(duration_us("1.00m"), Some(60e6));
        assert_eq!(duration_us("3"), None);
    }

    #[test]
    fn combined_runs_add_rates() {
        let a = parse(OUT).unwrap();
        let c = WrkResult::combine(&[a.clone(), a.clone()]);
        assert_eq!(c.requests, 2 * a.requests);
        assert_eq!(c.rps, 2.0 * a.rps);
        assert!((c.mean_us - a.mean_us).abs() < 1e-9);
    }
}
