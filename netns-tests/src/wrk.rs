//! Parsing wrk's report.

/// What matters in wrk's report.
#[derive(Debug, Default, Clone)]
pub struct WrkReport {
    pub requests: u64,
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    pub non_2xx: u64,
    pub requests_per_sec: f64,
    /// The "Latency" line's Max column, as printed (e.g. "612.35ms").
    pub latency_max: String,
}

impl WrkReport {
    /// Socket errors of all kinds.
    pub fn socket_errors(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// Parses wrk's text report. Missing lines read as zero (wrk prints the
/// "Socket errors" and "Non-2xx" lines only when there are some).
pub fn parse_wrk(text: &str) -> WrkReport {
    let mut r = WrkReport::default();
    for line in text.lines().map(str::trim) {
        if let Some(n) = line
            .split(" requests in ")
            .next()
            .filter(|_| line.contains(" requests in "))
        {
            r.requests = n.trim().parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in rest.split(',') {
                let mut it = part.split_whitespace();
                let (Some(k), Some(v)) = (it.next(), it.next()) else {
                    continue;
                };
                let v: u64 = v.parse().unwrap_or(u64::MAX);
                match k {
                    "connect" => r.connect = v,
                    "read" => r.read = v,
                    "write" => r.write = v,
                    "timeout" => r.timeout = v,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = rest.trim().parse().unwrap_or(u64::MAX);
        } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
            r.requests_per_sec = rest.trim().parse().unwrap_or(0.0);
        } else if let Some(rest) = line.strip_prefix("Latency") {
            // "Latency     1.00ms  200.00us   5.00ms   90.00%": avg, stdev, max, +/-.
            if let Some(max) = rest.split_whitespace().nth(2) {
                r.latency_max = max.to_owned();
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let sample = "Running 10s test @ http://10.77.0.10/static/5k.bin
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.00ms  200.00us   5.00ms   90.00%
    Req/Sec    10.00k     1.00k   12.00k    70.00%
  199000 requests in 10.00s, 1.00GB read
  Socket errors: connect 0, read 3, write 0, timeout 7
  Non-2xx or 3xx responses: 12
Requests/sec:  19900.00
Transfer/sec:    100.00MB
";
        let r = parse_wrk(sample);
        assert_eq!(r.requests, 199_000);
        assert_eq!((r.connect, r.read, r.write, r.timeout), (0, 3, 0, 7));
        assert_eq!(r.socket_errors(), 10);
        assert_eq!(r.non_2xx, 12);
        assert_eq!(r.latency_max, "5.00ms");
        assert!((r.requests_per_sec - 19900.0).abs() < 0.1);
        let clean = parse_wrk("  10 requests in 1.00s, 1.00KB read\nRequests/sec: 10.0\n");
        assert_eq!((clean.socket_errors(), clean.non_2xx), (0, 0));
    }
}
