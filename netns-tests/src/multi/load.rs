//! The loads of a multi-address scenario, one per address: a rate-limited
//! download, an upload, a wrk run, each checked after the kill.

use super::*;

// ---- loads ----------------------------------------------------------------------

/// A 50 MB download in progress from one address.
pub struct Download {
    pub ip: String,
    pub file: PathBuf,
    pub total: u64,
    pub(super) curl: Background,
    pub(super) sampler: Sampler,
    pub(super) start: Instant,
}

/// Starts `curl --limit-rate RATE -o … http://IP/static/50m.bin` (https,
/// checking the certificate against the lab's CA, when the lab serves
/// HTTPS), its size sampled every [`SAMPLE_EVERY`].
pub fn start_download(lab: &Lab, dir: &Path, ip: &str, rate: &str) -> Download {
    let total = std::fs::metadata(lab.docroot().join(DOWNLOAD_FILE))
        .expect("the lab's docroot has the download file")
        .len();
    let file = dir.join(format!("download-{ip}.bin"));
    let ca = lab.tls_ca().map(|p| p.to_string_lossy().into_owned());
    let u = match ca {
        Some(_) => format!("https://{ip}/static/{DOWNLOAD_FILE}"),
        None => format!("http://{ip}/static/{DOWNLOAD_FILE}"),
    };
    let mut extra = vec!["-w", "%{http_code} %{size_download}\n"];
    if let Some(ca) = &ca {
        extra.extend(["--cacert", ca.as_str()]);
    }
    let start = Instant::now();
    let curl = lab.curl_download(&u, rate, &file, &extra, dir, &format!("curl-get-{ip}"));
    let sampler = Sampler::start(file.clone(), start, SAMPLE_EVERY);
    Download {
        ip: ip.to_owned(),
        file,
        total,
        curl,
        sampler,
        start,
    }
}

impl Download {
    /// Bytes arrived so far.
    pub fn bytes(&self) -> u64 {
        self.sampler.latest()
    }

    /// Whether curl still runs.
    pub fn running(&mut self) -> bool {
        !self.curl.exited()
    }

    /// Time since curl started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Waits until `bytes` arrived (the moment a test kills, freezes or
    /// cuts something mid-download); panics, naming `test`, if curl ends
    /// or 20 s pass first.
    pub fn wait_for(&mut self, bytes: u64, test: &str) {
        while self.bytes() < bytes {
            assert!(
                self.running() && self.elapsed() < Duration::from_secs(20),
                "[{test}] the download did not reach {bytes} bytes ({} in {:?})",
                self.bytes(),
                self.elapsed()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for curl and checks: exit 0, status 200, every byte, the
    /// SHA-256 of the docroot's file (`want`), and that the kill landed
    /// mid-reply.
    pub fn finish(self, kill: Instant, at_kill: u64, want: &str) -> Result<String, String> {
        let out = self.curl.wait(Duration::from_secs(50));
        let end = Instant::now();
        let samples = self.sampler.finish();
        let got = std::fs::metadata(&self.file).map_or(0, |m| m.len());
        let total = self.total;
        let kill_at = kill.saturating_duration_since(self.start);
        let s = hotpair::stall::measure(&samples, kill_at, end - self.start, got == total);
        // When the last byte arrived (sampled), else when curl was seen to end.
        let done = samples
            .iter()
            .find(|(_, size)| *size >= total)
            .map_or(end - self.start, |(t, _)| *t);
        let how = format!(
            "{:.1} MiB in at the kill; stall {:.0} ms; {} {:.2} s after the kill",
            mib(at_kill),
            ms(s.after_kill),
            if got == total { "done" } else { "ended" },
            done.saturating_sub(kill_at).as_secs_f64()
        );
        if at_kill == 0 || at_kill >= total {
            return Err(format!(
                "the kill did not land mid-reply ({at_kill} of {total} bytes)"
            ));
        }
        if !out.status.success() {
            return Err(format!(
                "curl failed after the kill; {got} of {total} bytes ({how})\n{}",
                describe(&out)
            ));
        }
        let w = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !w.starts_with("200 ") {
            return Err(format!("status after the kill: {w} ({how})"));
        }
        if got != total {
            return Err(format!("received {got} bytes, expected {total} ({how})"));
        }
        let have = sha256sum(&self.file);
        if have != want {
            return Err(format!(
                "{total} bytes but the SHA-256 differs from the docroot's {DOWNLOAD_FILE} ({how})"
            ));
        }
        Ok(format!("{total} bytes, SHA-256 exact; {how}"))
    }
}

/// A 20 MB POST in progress to one address's /app/upload (the upstream app
/// replies with the SHA-256 of the body it got).
pub struct Upload {
    pub ip: String,
    /// SHA-256 of the body.
    pub want: String,
    pub(super) curl: Background,
}

/// A random upload body in a file, and its SHA-256.
pub struct UploadBody {
    pub path: PathBuf,
    pub sha256: String,
}

/// Writes a fresh random body for an upload to `ip` (each upload its own,
/// so a reply meant for another upload is caught).
pub fn upload_body(dir: &Path, ip: &str) -> UploadBody {
    let path = dir.join(format!("upload-{ip}.bin"));
    std::fs::write(&path, random_bytes(UPLOAD_BYTES as usize)).expect("writing an upload body");
    let sha256 = sha256sum(&path);
    UploadBody { path, sha256 }
}

/// Starts `curl --limit-rate RATE --data-binary @BODY http://IP/app/upload`.
pub fn start_upload(lab: &Lab, dir: &Path, ip: &str, body: UploadBody, rate: &str) -> Upload {
    let UploadBody {
        path: body,
        sha256: want,
    } = body;
    let u = format!("http://{ip}/app/upload");
    let curl = lab.curl_upload(&u, rate, &body, dir, &format!("curl-post-{ip}"));
    Upload {
        ip: ip.to_owned(),
        want,
        curl,
    }
}

impl Upload {
    /// Waits for curl and checks: exit 0, status 200, the reply is the
    /// SHA-256 of this upload's body, and the kill landed mid-body.
    pub fn finish(self, kill: Instant, acked_at_kill: u64) -> Result<String, String> {
        let out = self.curl.wait(Duration::from_secs(50));
        let after = kill.elapsed();
        if acked_at_kill == 0 || acked_at_kill >= UPLOAD_BYTES {
            return Err(format!(
                "the kill did not land mid-upload ({acked_at_kill} of {UPLOAD_BYTES} bytes \
                 acknowledged)"
            ));
        }
        let how = format!(
            "{:.1} of {:.1} MiB acknowledged at the kill; done {:.2} s after it",
            mib(acked_at_kill),
            mib(UPLOAD_BYTES),
            after.as_secs_f64()
        );
        if !out.status.success() {
            return Err(format!(
                "curl failed after the kill ({how})\n{}",
                describe(&out)
            ));
        }
        if !out.stdout.windows(4).any(|w| w == b"\r\n\r\n") {
            return Err(format!("no complete reply ({how})\n{}", describe(&out)));
        }
        let (head, body) = split_head(&out.stdout);
        let code = status_code(&head);
        if code != 200 {
            return Err(format!("status {code} ({how}); reply head:\n{head}"));
        }
        let body = String::from_utf8_lossy(body).trim().to_owned();
        if body != self.want {
            return Err(format!(
                "the reply {body:?} is not the SHA-256 of the uploaded body {} ({how})",
                self.want
            ));
        }
        Ok(format!("reply is the body's SHA-256; {how}"))
    }
}

/// Bytes acknowledged by the service, per address: the largest
/// `bytes_acked` (`ss -ti`) of the client's connections to each of `ips`.
pub fn acked_by_address(lab: &Lab, ips: &[String]) -> BTreeMap<String, u64> {
    let mut acked: BTreeMap<String, u64> = ips.iter().map(|ip| (ip.clone(), 0)).collect();
    if ips.is_empty() {
        return acked;
    }
    let out = lab.exec_in(
        "client",
        &["ss", "-tinH", "state", "established"],
        Duration::from_secs(10),
    );
    // Each socket: "RECV-Q SEND-Q LOCAL PEER" then its info, with bytes_acked:N.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut peer: Option<String> = None;
    for w in text.split_whitespace() {
        if let Some((ip, port)) = w.rsplit_once(':') {
            if port.parse::<u16>().is_ok() && ip.split('.').count() == 4 {
                // An endpoint: the local one comes first, then the peer.
                let watched = port == SERVICE_PORT.to_string() && acked.contains_key(ip);
                peer = watched.then(|| ip.to_owned());
                continue;
            }
        }
        if let (Some(p), Some(v)) = (&peer, w.strip_prefix("bytes_acked:")) {
            if let (Ok(v), Some(e)) = (v.parse::<u64>(), acked.get_mut(p)) {
                *e = (*e).max(v);
            }
        }
    }
    acked
}

/// wrk running against one address.
pub struct WrkRun {
    pub ip: String,
    pub(super) proc: Background,
    pub(super) start: Instant,
}

/// Starts `wrk -t1 -cC -d60s --timeout 5s http://IP/static/5k.bin`
/// (stopped by [`WrkRun::stop`]).
pub fn start_wrk(lab: &Lab, dir: &Path, ip: &str) -> WrkRun {
    let u = format!("http://{ip}/static/5k.bin");
    let c = format!("-c{WRK_CONNECTIONS}");
    let d = format!("-d{WRK_MAX_SECS}s");
    let start = Instant::now();
    let proc = lab.spawn_in(
        "client",
        &["wrk", "-t1", &c, &d, "--timeout", "5s", &u],
        dir,
        &format!("wrk-{ip}"),
    );
    WrkRun {
        ip: ip.to_owned(),
        proc,
        start,
    }
}

impl WrkRun {
    /// Stops wrk (SIGINT) and checks: it was still running, it completed
    /// requests, no socket error and no non-2xx reply.
    pub fn stop(mut self, kill: Instant) -> Result<String, String> {
        let at = kill.saturating_duration_since(self.start);
        let ended_early = self.proc.exited();
        let stopped = self.start.elapsed();
        self.proc.signal("INT");
        let out = self.proc.wait(Duration::from_secs(30));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let r = parse_wrk(&text);
        let summary = format!(
            "kill {:.2} s in, stopped {:.2} s after it; {} requests, {:.0} req/s, max latency {}, \
             socket errors {} (connect {}, read {}, write {}, timeout {}), non-2xx {}",
            at.as_secs_f64(),
            stopped.saturating_sub(at).as_secs_f64(),
            r.requests,
            r.requests_per_sec,
            r.latency_max,
            r.socket_errors(),
            r.connect,
            r.read,
            r.write,
            r.timeout,
            r.non_2xx
        );
        if ended_early {
            return Err(format!(
                "wrk ended before it was stopped ({summary})\n{}",
                describe(&out)
            ));
        }
        if !out.status.success() {
            return Err(format!("wrk failed ({summary})\n{}", describe(&out)));
        }
        if r.requests == 0 {
            return Err(format!("wrk completed no request\n{text}"));
        }
        if r.socket_errors() != 0 || r.non_2xx != 0 {
            return Err(format!("{summary}\n{text}"));
        }
        Ok(summary)
    }
}

pub(super) fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}
