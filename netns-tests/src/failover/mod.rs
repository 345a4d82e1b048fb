//! Failover scenarios, shared by `tests/failover_primary_crash.rs` and
//! `tests/failover_owner_crash.rs`: each body takes the [`Victim`] to
//! SIGKILL. Every scenario builds its own duplex lab (n1 primary, n2 owner),
//! kills one node while a client is in the middle of something, and checks
//! that the client sees nothing but a pause.
//!
//! Environment knobs:
//! - `HOTPAIR_REPL_NET=dedicated`: run the labs with a dedicated replication
//!   network (default: shared, over the LAN).
//! - `HOTPAIR_FAILOVER_RUNS=N`: runs of the random-moment test (default 5).
//! - `HOTPAIR_FAILOVER_SEED=S`: its seed (default: from the clock; printed).
//! - `HOTPAIR_STALL_RUNS=N`: kills of the (ignored) stall statistics test
//!   (default 20).
//! - `HOTPAIR_LOG_LINES=N`: node log lines shown when a test fails.
//!
//! The scenarios live in [`download`] (one download, random moments, stall
//! statistics), [`transfer`] (upload, generate, wrk) and [`keepalive`]; this
//! module holds what they share: the victim, the duplex lab, the clock.

mod download;
mod keepalive;
mod transfer;

use std::sync::Mutex;
use std::time::Duration;

use crate::{describe, status_node, Lab};

pub use download::{
    download, download_and_keepalive_tls, download_tls, download_with_kill,
    download_with_kill_then, random_moments, stall_statistics, stall_summary, DownloadOutcome,
    KillAt, Rng,
};
pub use keepalive::{keepalive, keepalive_tls, KeepaliveClient};
pub use transfer::{generate, upload, wrk_load, wrk_load_tls};

/// curl `--limit-rate` for downloads (the 50 MB file takes ~2.5 s).
pub const DOWNLOAD_RATE: &str = "20M";
/// curl `--limit-rate` for uploads (the 20 MB body takes ~2 s).
pub const UPLOAD_RATE: &str = "10M";
/// The download kill lands once this much has arrived (~1 s in).
pub const KILL_AT_BYTES: u64 = 20 * 1024 * 1024;
/// How often the downloaded file's size is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// The node a scenario kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Victim {
    /// n1: runs the application and sends the replies.
    Primary,
    /// n2: owns the service address, forwards client frames, keeps shadows.
    Owner,
}

impl Victim {
    pub fn node(self) -> &'static str {
        match self {
            Victim::Primary => "n1",
            Victim::Owner => "n2",
        }
    }

    pub fn survivor(self) -> &'static str {
        match self {
            Victim::Primary => "n2",
            Victim::Owner => "n1",
        }
    }

    pub fn role(self) -> &'static str {
        match self {
            Victim::Primary => "primary",
            Victim::Owner => "owner",
        }
    }
}

/// `lab up` arguments for a duplex lab (`HOTPAIR_REPL_NET` picks the link's network).
pub fn duplex_args() -> Vec<String> {
    let net = std::env::var("HOTPAIR_REPL_NET").unwrap_or_else(|_| "shared".to_owned());
    vec![
        "--mode".into(),
        "duplex".into(),
        "--repl-net".into(),
        net,
        "--wait-secs".into(),
        "30".into(),
    ]
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Held while a test runs a duplex lab: such tests run one at a time within
/// a test binary (test binaries run one after the other anyway), because on
/// a small machine two duplex labs at once starve each other's nodes of CPU
/// and the measured stalls say more about the machine than about hotpair.
/// `HOTPAIR_FAILOVER_PARALLEL=1` lets them run in parallel.
pub struct Serial {
    _guard: Option<std::sync::MutexGuard<'static, ()>>,
}

/// Takes the duplex-lab lock (see [`Serial`]).
pub fn serial() -> Serial {
    if std::env::var_os("HOTPAIR_FAILOVER_PARALLEL").is_some_and(|v| !v.is_empty() && v != "0") {
        return Serial { _guard: None };
    }
    Serial {
        _guard: Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner())),
    }
}

/// A duplex lab for test `test`; `None` when skipped (not root). Holds the
/// [`serial`] lock until dropped.
pub fn duplex_lab(test: &str) -> Option<DuplexLab> {
    duplex_lab_with(test, &[])
}

/// As [`duplex_lab`], passing `extra` arguments to `lab up` after
/// [`duplex_args`] (e.g. `--static-policy sync-static`).
pub fn duplex_lab_with(test: &str, extra: &[&str]) -> Option<DuplexLab> {
    let serial = serial();
    let lab = plain_duplex_lab(test, extra)?;
    Some(DuplexLab {
        lab,
        _serial: serial,
    })
}

/// A duplex [`Lab`] plus the [`serial`] lock (the lab goes down first).
pub struct DuplexLab {
    pub lab: Lab,
    _serial: Serial,
}

impl std::ops::Deref for DuplexLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

fn plain_duplex_lab(test: &str, extra: &[&str]) -> Option<Lab> {
    let args = duplex_args();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    let lab = Lab::up_with(test, &args)?;
    let st = lab.initial_status();
    assert_eq!(st["mode"], "duplex", "[{test}] lab status: {st}");
    for (name, role) in [("n1", "primary"), ("n2", "owner")] {
        let n = status_node(st, name)
            .unwrap_or_else(|| panic!("[{test}] no node {name} in lab status: {st}"));
        assert_eq!(n["role"], role, "[{test}] lab status: {st}");
        assert_eq!(n["alive"], true, "[{test}] lab status: {st}");
    }
    Some(lab)
}

/// Rebuilds the lab in place (same prefix), for tests that kill repeatedly.
pub fn reup(lab: &Lab) {
    let mut args = vec!["up".to_owned()];
    args.extend(duplex_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.lab(&args, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "[{}] lab up again failed\n{}",
        lab.test,
        describe(&out)
    );
}

/// After a kill: the victim is dead and the survivor alive.
#[track_caller]
pub fn assert_survivor(lab: &Lab, victim: Victim) {
    assert!(
        !lab.node_alive(victim.node()),
        "[{}] {} ({}) still alive after lab kill",
        lab.test,
        victim.node(),
        victim.role()
    );
    assert!(
        lab.node_alive(victim.survivor()),
        "[{}] the survivor {} died too (see its log below)",
        lab.test,
        victim.survivor()
    );
}

// ---- size sampling and the stall ------------------------------------------

pub use hotpair::stall::{Sampler, Stall};

/// Seconds since the epoch (tcpdump -tt's clock).
pub fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

// ---- packet capture --------------------------------------------------------

pub use crate::capture::{arp_capture, assert_no_rst, Capture, CaptureReport};
