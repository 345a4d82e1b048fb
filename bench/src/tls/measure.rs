//! The tls part's instruments: a server's wrk and `openssl s_time` runs
//! with its CPU time around them, the nodes' handshake counters, what a
//! client negotiates, and the evidence kept when a run fails.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::super::labs::{self, Lab};
use super::super::model::{Point, TlsServer};
use super::super::nginx::{Nginx, TLS_NAME, TLS_SUITE};
use super::super::wrk;
use super::SERVICE;

/// The handshakes (full, resumed) counted between two readings of
/// [`handshake_counts`]; none where the server does not count (nginx).
pub(super) fn counted(
    before: Option<(u64, u64)>,
    after: Option<(u64, u64)>,
) -> (Option<u64>, Option<u64>) {
    match (before, after) {
        (Some(b), Some(a)) => (Some(a.0.saturating_sub(b.0)), Some(a.1.saturating_sub(b.1))),
        _ => (None, None),
    }
}

/// Full and resumed handshakes the nodes of `lab` counted on the service
/// address (`hotpair status`, per HTTPS address), summed over its nodes.
pub(super) fn handshake_counts(lab: &Lab) -> Result<(u64, u64)> {
    let st = lab.status_now()?;
    let mut found = false;
    let (mut full, mut resumed) = (0, 0);
    for n in st["nodes"].as_array().into_iter().flatten() {
        for a in n["node_status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if a["address"].as_str() == Some(SERVICE) {
                if let Some(t) = a.get("tls").filter(|t| !t.is_null()) {
                    found = true;
                    full += t["handshakes"].as_u64().unwrap_or(0);
                    resumed += t["resumed"].as_u64().unwrap_or(0);
                }
            }
        }
    }
    if !found {
        bail!(
            "lab {}: no node reports TLS counters for {SERVICE}",
            lab.prefix
        );
    }
    Ok((full, resumed))
}

/// What OpenSSL's default client (the one wrk links) negotiates with
/// `addr`: "TLSv1.3, SUITE, GROUP", the certificate checked against `ca`.
pub(super) fn negotiated(ns: &str, addr: &str, ca: &Path) -> String {
    let o = Command::new("sh")
        .args(["-c"])
        .arg(format!(
            "ip netns exec {ns} timeout 10 openssl s_client -connect {addr}:443 \
             -servername {TLS_NAME} -CAfile {} </dev/null 2>&1",
            ca.display()
        ))
        .output();
    let text = match o {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => return format!("openssl s_client failed: {e}"),
    };
    parse_s_client(&text)
}

/// The protocol, suite, key exchange and verification of `openssl
/// s_client`'s output.
pub(super) fn parse_s_client(text: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for l in text.lines() {
        let l = l.trim();
        let part = if let Some(rest) = l.strip_prefix("New, ") {
            // "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384"
            rest.replace("Cipher is ", "")
        } else if let Some(k) = l.strip_prefix("Server Temp Key: ") {
            k.to_owned()
        } else if let Some(v) = l.strip_prefix("Verify return code: ") {
            format!("verify {v}")
        } else {
            continue;
        };
        // Each session ticket that arrives repeats the session's lines.
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    if parts.is_empty() {
        "not known (openssl s_client said nothing usable)".into()
    } else {
        parts.join(", ")
    }
}

/// Refuses a server whose negotiated parameters ([`parse_s_client`]) are
/// not [`TLS_SUITE`]: its figures would not be the issue's.
pub(super) fn check_suite(server: &str, negotiated: &str) -> Result<()> {
    if !negotiated.split(", ").any(|p| p == TLS_SUITE) {
        bail!("{server} negotiated {negotiated}, not {TLS_SUITE}: the figures would not compare");
    }
    Ok(())
}

pub(super) fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Where a server is measured from and what counts its CPU.
pub(super) struct Target<'a> {
    pub(super) server: TlsServer,
    pub(super) ns: String,
    pub(super) host: &'static str,
    pub(super) lab: Option<&'a Lab>,
    pub(super) nginx: Option<&'a Nginx>,
}

impl Target<'_> {
    pub(super) fn url(&self, size: u64) -> String {
        let scheme = if self.server.https() { "https" } else { "http" };
        format!("{scheme}://{}/static/{}k.bin", self.host, size / 1024)
    }

    fn cpu(&self) -> Result<Vec<(String, u64)>> {
        match (self.lab, self.nginx) {
            (Some(l), _) => l.cpu_ns(),
            (None, Some(n)) => n.cpu_ns(),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// One wrk run, the servers' CPU time around it.
    pub(super) fn point(&self, size: u64, conns: u32, secs: f64, extra: &[&str]) -> Result<Point> {
        self.point_at(&self.url(size), conns, secs, extra)
    }

    /// As [`Target::point`], at `url` (e.g. a `--tls` lab's port 80).
    pub(super) fn point_at(
        &self,
        url: &str,
        conns: u32,
        secs: f64,
        extra: &[&str],
    ) -> Result<Point> {
        let before = self.cpu()?;
        let t0 = Instant::now();
        let res = wrk::run_all(vec![wrk::command_with(&self.ns, url, conns, secs, extra)])
            .with_context(|| format!("tls {} {url} {conns} conns", self.server.label()))?;
        let wall_s = t0.elapsed().as_secs_f64();
        let cpu_ns = labs::cpu_delta(&before, &self.cpu()?);
        let wrk = wrk::WrkResult::combine(&res);
        Ok(Point {
            conns,
            wall_s: wall_s.max(wrk.seconds),
            wrk,
            cpu_ns,
            quota: None,
        })
    }
}

/// `openssl s_time`'s count: the connections made and the bytes read per
/// connection (`N connections in T real seconds, B bytes read per connection`).
pub(super) fn parse_s_time(text: &str) -> Option<(u64, u64)> {
    text.lines().find_map(|l| {
        let t: Vec<&str> = l.split_whitespace().collect();
        match t.as_slice() {
            [n, "connections", "in", _, "real", "seconds,", b, "bytes", "read", "per", "connection"] => {
                Some((n.parse().ok()?, b.parse().ok()?))
            }
            _ => None,
        }
    })
}

impl Target<'_> {
    /// `procs` `openssl s_time -new` processes at once (a full handshake
    /// and one request per connection, never a resumed session) for
    /// `secs` seconds; the connections made, their rate over the wall time
    /// and the servers' CPU time around them.
    pub(super) fn full_handshakes(&self, ca: &Path, procs: u32, secs: f64) -> Result<Point> {
        // s_time's window is whole seconds of time(2) (it stops at the
        // first tick past the start + `-time`): 2 at least, so that a run
        // is not a fraction of a second; the rate is over the wall time.
        let secs = secs.ceil().max(2.0) as u64;
        let before = self.cpu()?;
        let t0 = Instant::now();
        let mut children = Vec::new();
        for _ in 0..procs {
            let c = Command::new("ip")
                .args(["netns", "exec", &self.ns, "timeout", "-k", "5"])
                .arg((secs + 30).to_string())
                .args(["openssl", "s_time", "-new", "-connect"])
                .arg(format!("{}:443", self.host))
                .args(["-www", "/static/1k.bin", "-CAfile"])
                .arg(ca)
                .args(["-time", &secs.to_string()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .context("starting openssl s_time")?;
            children.push(c);
        }
        let mut total = 0;
        let mut first_err = None;
        for c in children {
            let o = c.wait_with_output().context("waiting for openssl s_time")?;
            let text = String::from_utf8_lossy(&o.stdout);
            match parse_s_time(&text) {
                // Headers and the 1 KB body: a connection that read less
                // was not served.
                Some((n, bytes)) if o.status.success() && n > 0 && bytes >= 1024 => total += n,
                _ => {
                    first_err.get_or_insert_with(|| {
                        anyhow::anyhow!(
                            "openssl s_time against {} ({}): {text}{}",
                            self.server.label(),
                            o.status,
                            String::from_utf8_lossy(&o.stderr)
                        )
                    });
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let wall_s = t0.elapsed().as_secs_f64();
        let cpu_ns = labs::cpu_delta(&before, &self.cpu()?);
        Ok(Point {
            conns: procs,
            wrk: wrk::WrkResult {
                requests: total,
                seconds: wall_s,
                rps: total as f64 / wall_s,
                ..Default::default()
            },
            cpu_ns,
            wall_s,
            quota: None,
        })
    }
}

/// After a failed run on `lab`: its status (what the nodes report: live,
/// shadow and half-open connections, TLS errors) and its nodes' logs,
/// copied into `logs` before the lab goes down with them. Returns where.
fn keep_evidence(lab: &Lab, logs: &Path) -> String {
    let dir = logs.join(format!("failed-{}", lab.prefix));
    if std::fs::create_dir_all(&dir).is_err() {
        return format!("(could not create {})", dir.display());
    }
    if let Ok(st) = lab.status_now() {
        let _ = std::fs::write(
            dir.join("status.json"),
            serde_json::to_string_pretty(&st).unwrap_or_default(),
        );
        for n in st["nodes"].as_array().into_iter().flatten() {
            if let (Some(name), Some(log)) = (n["name"].as_str(), n["log"].as_str()) {
                let _ = std::fs::copy(log, dir.join(format!("{name}.log")));
            }
        }
    }
    dir.display().to_string()
}

/// `r`, and on an error the lab's evidence kept ([`keep_evidence`]).
pub(super) fn or_evidence<T>(r: Result<T>, t: &Target, logs: &Path) -> Result<T> {
    r.map_err(|e| match t.lab {
        Some(l) => {
            let d = keep_evidence(l, logs);
            e.context(format!(
                "lab {}: status and node logs kept in {d}",
                l.prefix
            ))
        }
        None => e,
    })
}
