//! The open-loop load generator (`hotpair bench loadgen`, run inside the
//! client namespace) and the link round-trip ping-pong (`bench echo` /
//! `bench ping`, run in two node namespaces).
//!
//! Open loop without coordinated omission (as wrk2 does it): request k is
//! *due* at `start + k / rate`, whatever happened to earlier ones, and its
//! latency is counted from when it was due, not from when it could be sent.
//! Requests go round-robin over `conns` keep-alive connections, one thread
//! each, so a slow reply delays only its own connection's next requests —
//! and that delay is in their latency too. Latencies go into an HDR
//! histogram (µs, 3 significant digits).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

#[derive(clap::Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// Server address, e.g. 10.77.0.10:80.
    #[arg(long)]
    pub addr: String,
    /// Request path, e.g. /static/5k.bin.
    #[arg(long)]
    pub path: String,
    /// Requests per second (all connections together).
    #[arg(long)]
    pub rate: f64,
    /// Seconds of measurement.
    #[arg(long)]
    pub duration: f64,
    /// Keep-alive connections the requests are spread over.
    #[arg(long, default_value_t = 32)]
    pub conns: u32,
    /// Also report the worst latency of the requests due in the first
    /// this-many seconds (`max_before_us`): a baseline for an event the
    /// caller causes after it.
    #[arg(long)]
    pub split_at: Option<f64>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct EchoArgs {
    /// Address to listen on, e.g. 10.77.0.1:7799; echoes one connection, then exits.
    #[arg(long)]
    pub listen: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PingArgs {
    /// The echo server's address.
    #[arg(long)]
    pub connect: String,
    /// Round trips to time (after 100 unrecorded ones).
    #[arg(long, default_value_t = 10_000)]
    pub count: u32,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

/// What a latency run found (µs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub errors: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
    /// The distribution: (percentile, latency µs), for the log-scale plot.
    pub distribution: Vec<(f64, f64)>,
    /// Requests/s actually completed (open loop: the offered rate if the
    /// server kept up).
    pub achieved_rps: f64,
    /// With `--split-at`: the worst latency of the requests due before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_before_us: Option<f64>,
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds")
}

/// Summary of `h` (µs); `seconds` the measurement's length.
pub fn summarize(h: &Histogram<u64>, errors: u64, seconds: f64) -> LatencySummary {
    let q = |p: f64| h.value_at_quantile(p) as f64;
    let mut distribution = Vec::new();
    if !h.is_empty() {
        for v in h.iter_quantiles(2) {
            let p = v.quantile() * 100.0;
            let lat = v.value_iterated_to() as f64;
            if distribution.last().is_none_or(|&(lp, _)| p > lp) {
                distribution.push((p, lat));
            }
        }
    }
    LatencySummary {
        count: h.len(),
        errors,
        mean_us: h.mean(),
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
        p9999_us: q(0.9999),
        max_us: h.max() as f64,
        distribution,
        achieved_rps: if seconds > 0.0 {
            h.len() as f64 / seconds
        } else {
            0.0
        },
        max_before_us: None,
    }
}

/// Reads one HTTP/1.1 reply from `s` (status line, headers with a
/// Content-Length, body); `buf` carries bytes already read past it. Returns
/// the status code.
pub fn read_reply(s: &mut impl Read, buf: &mut Vec<u8>) -> Result<u16> {
    let mut chunk = [0u8; 64 * 1024];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).context("reply head is not UTF-8")?;
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("bad status line in {head:?}"))?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .with_context(|| format!("no Content-Length in {head:?}"))?;
            let total = end + 4 + len;
            while buf.len() < total {
                let n = s.read(&mut chunk).context("reading reply body")?;
                if n == 0 {
                    bail!("connection closed mid-body");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return Ok(status);
        }
        let n = s.read(&mut chunk).context("reading reply head")?;
        if n == 0 {
            bail!("connection closed before a reply");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// `hotpair bench loadgen`: prints a [`LatencySummary`] as JSON; exits
/// non-zero on any socket error or non-2xx reply.
pub fn loadgen(a: &LoadgenArgs) -> Result<()> {
    if a.rate <= 0.0 || a.duration <= 0.0 || a.conns == 0 {
        bail!("--rate, --duration and --conns must be positive");
    }
    let total = (a.rate * a.duration).round() as u64;
    let interval = 1.0 / a.rate;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hotpair-loadgen\r\n\r\n",
        a.path, a.addr
    );
    // Connect everything first (and warm each connection with one request).
    let mut streams = Vec::new();
    for _ in 0..a.conns {
        let mut s =
            TcpStream::connect(&a.addr).with_context(|| format!("connecting {}", a.addr))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut buf = Vec::new();
        s.write_all(request.as_bytes())?;
        let st = read_reply(&mut s, &mut buf)?;
        if !(200..300).contains(&st) {
            bail!("warm-up request: status {st}");
        }
        streams.push((s, buf));
    }
    let start = Instant::now() + Duration::from_millis(50);
    let split = a
        .split_at
        .map(|t| start + Duration::from_secs_f64(t.max(0.0)));
    let conns = u64::from(a.conns);
    let threads: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(j, (mut s, mut buf))| {
            let request = request.clone();
            std::thread::spawn(move || -> Result<(Histogram<u64>, u64)> {
                let mut h = new_histogram();
                let mut before = 0u64;
                let mut k = j as u64;
                while k < total {
                    let due = start + Duration::from_secs_f64(k as f64 * interval);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    s.write_all(request.as_bytes())
                        .context("sending a request")?;
                    let st = read_reply(&mut s, &mut buf)?;
                    if !(200..300).contains(&st) {
                        bail!("status {st}");
                    }
                    let lat = due.elapsed().as_micros() as u64;
                    h.saturating_record(lat.max(1));
                    if split.is_some_and(|t| due < t) {
                        before = before.max(lat);
                    }
                    k += conns;
                }
                Ok((h, before))
            })
        })
        .collect();
    let mut h = new_histogram();
    let mut before = 0u64;
    let mut errors = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok((th, b))) => {
                h.add(th).context("merging histograms")?;
                before = before.max(b);
            }
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(_) => errors.push("a load thread panicked".into()),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut summary = summarize(&h, errors.len() as u64, elapsed);
    summary.max_before_us = a.split_at.map(|_| before as f64);
    println!("{}", serde_json::to_string(&summary)?);
    if !errors.is_empty() {
        bail!(
            "{} connection(s) failed: {}",
            errors.len(),
            errors.join("; ")
        );
    }
    Ok(())
}

/// `hotpair bench echo`: echo one TCP connection back, then exit.
pub fn echo(a: &EchoArgs) -> Result<()> {
    let l = TcpListener::bind(&a.listen).with_context(|| format!("listening on {}", a.listen))?;
    // Tell the parent we listen.
    println!("listening");
    std::io::stdout().flush()?;
    let (mut s, _) = l.accept()?;
    s.set_nodelay(true)?;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n])?;
    }
}

/// `hotpair bench ping`: time `count` round trips of `size` bytes over TCP
/// (Nagle off); prints a [`LatencySummary`] as JSON.
pub fn ping(a: &PingArgs) -> Result<()> {
    let mut s =
        TcpStream::connect(&a.connect).with_context(|| format!("connecting {}", a.connect))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let msg = vec![0x5au8; a.size.max(1)];
    let mut back = vec![0u8; msg.len()];
    let mut h = new_histogram();
    let t0 = Instant::now();
    for i in 0..a.count + 100 {
        let t = Instant::now();
        s.write_all(&msg)?;
        s.read_exact(&mut back).context("reading the echo")?;
        if i >= 100 {
            h.saturating_record((t.elapsed().as_nanos() as u64 / 1000).max(1));
        }
    }
    let summary = summarize(&h, 0, t0.elapsed().as_secs_f64());
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pipelined_replies() {
        let data = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        let mut r = &data[..];
        let mut buf = Vec::new();
        assert_eq!(read_reply(&mut r, &mut buf).unwrap(), 200);
        assert_eq!(read_reply(&mut r, &mut buf).unwrap(), 404);
        assert!(read_reply(&mut r, &mut buf).is_err());
        let mut short = &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"[..];
        assert!(read_reply(&mut short, &mut Vec::new()).is_err());
    }

    #[test]
    fn summary_percentiles() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let s = summarize(&h, 0, 2.0);
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_us, 500.0);
        assert_eq!(s.p99_us, 990.0);
        assert_eq!(s.max_us, 1000.0);
        assert_eq!(s.achieved_rps, 500.0);
        assert!(s.distribution.windows(2).all(|w| w[1].0 > w[0].0));
        assert_eq!(s.distribution.last().unwrap().1, 1000.0);
    }
}
