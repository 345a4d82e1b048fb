//! One kill of the HTTPS-beside-HTTP stall comparison: a download by the
//! bench's own timestamping client ([`super::super::fetch`]), the same for
//! both schemes, the victim SIGKILLed once `kill_at` bytes have arrived.
//! The stall is the plain series' quantity (`hotpair::stall::measure`: the
//! longest time without a new byte from the kill on), taken from every
//! read's timestamp instead of a 10 ms file-size sampler.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hotpair::stall::measure;

use super::super::fetch::{self, Request};
use super::super::labs::Lab;
use super::super::nginx::TlsFiles;
use super::SERVICE;

/// How long a kill may take to show: a read that waits longer fails the
/// run (a failover is heartbeats and a takeover, well under a second).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Downloads `path` from `lab`'s service address (`https`: port 443, the
/// lab's CA checked; else port 80), sends `pid` `signal` once `kill_at`
/// body bytes have arrived (a SIGSTOPped node is SIGKILLed after the
/// download), and checks the body against `want_sha`. Returns (the stall
/// from the signal on, the longest gap before it), in ms.
pub fn one_kill(
    lab: &Lab,
    pid: i32,
    signal: i32,
    https: bool,
    path: &str,
    kill_at: u64,
    want_sha: &str,
) -> Result<(f64, f64)> {
    let tls_ca = if https {
        Some(TlsFiles::of(lab)?.ca)
    } else {
        None
    };
    let addr: IpAddr = SERVICE.parse().expect("SERVICE is an address");
    let progress = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let client = fetch::spawn(
        Request {
            ns: lab.client_ns(),
            addr,
            path: path.into(),
            tls_ca,
            read_timeout: READ_TIMEOUT,
        },
        start,
        progress.clone(),
    );
    let deadline = start + Duration::from_secs(20);
    // Polled, not told: the client must not wait for the bench. A 200 µs
    // poll puts the kill within a fraction of a millisecond of the mark.
    while progress.load(Ordering::SeqCst) < kill_at && !client.is_finished() {
        if Instant::now() > deadline {
            bail!("the download did not reach {kill_at} bytes in 20 s");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    if client.is_finished() {
        let r = client
            .join()
            .map_err(|_| anyhow::anyhow!("the client panicked"))?;
        bail!(
            "the download ended before the kill at {kill_at} bytes: {}",
            match r {
                Ok(f) => format!("complete, {} bytes", f.samples.last().map_or(0, |s| s.1)),
                Err(e) => format!("{e:#}"),
            }
        );
    }
    let kill = start.elapsed();
    // SAFETY: kill(2) on the node's pid, which the lab started.
    unsafe { libc::kill(pid, signal) };
    let got = client
        .join()
        .map_err(|_| anyhow::anyhow!("the client panicked"));
    if signal == libc::SIGSTOP {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let got = got?.with_context(|| format!("download across the signal (at {kill:?})"))?;
    if got.sha256 != want_sha {
        bail!(
            "download across the kill: wrong SHA-256 {}, want {want_sha}",
            got.sha256
        );
    }
    let s = measure(&got.samples, kill, got.end, true);
    Ok((
        s.after_kill.as_secs_f64() * 1e3,
        s.before_kill.as_secs_f64() * 1e3,
    ))
}
