//! Failover with several service addresses: the `dual-role` lab (n1 owns
//! 10.77.0.10 with primary n2; n2 owns 10.77.0.11 with primary n1) and the
//! `ring --nodes N` lab (node i owns 10.77.0.(9+i), its primary is node
//! i+1 mod N). Shared by `tests/failover_dual_role.rs` and
//! `tests/failover_ring.rs`.
//!
//! The duplex helpers in [`crate::failover`] talk to the one address
//! 10.77.0.10 and kill a [`crate::failover::Victim`] that is n1 or n2; the
//! helpers here generalise them to a list of addresses and any node: a
//! [`MultiLab`] that knows who owns and who is primary for each address, a
//! packet [`Capture`] over all the addresses, downloads, uploads and wrk
//! runs per address, and one SIGKILL while all of them are in progress.
//!
//! Every check of a scenario runs to the end and is reported (`PASS`/`FAIL`
//! lines on stderr), then the test fails listing every failed check.
//!
//! Environment knobs (besides those of [`crate::failover`] and [`crate::Lab`]):
//! - `HOTPAIR_NODE_CPUS=X`: pass `--node-cpus X` to `lab up`.
//! - `HOTPAIR_HEARTBEAT_TIMEOUT_MS=N`: pass `--heartbeat-timeout-ms N` (the
//!   lab's default is 500).

mod checks;
mod load;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::capture::{Capture, Segment};
use crate::failover::{epoch_now, ms, serial, Sampler, Serial, SAMPLE_EVERY};
use crate::wrk::parse_wrk;
use crate::{
    describe, random_bytes, report, require_root, sha256sum, split_head, status_code, status_node,
    Background, Lab, TempDir, SERVICE_PORT,
};

pub use self::checks::*;
pub use self::load::*;

/// The file each download fetches (from the lab's generated docroot).
pub const DOWNLOAD_FILE: &str = "50m.bin";
/// Size of each upload's body.
pub const UPLOAD_BYTES: u64 = 20 * 1024 * 1024;
/// curl `--limit-rate` of the dual-role scenario's downloads and uploads.
/// Under wrk on a loaded 2-core machine (debug nodes) the uploads go at a
/// fraction of their limit; at these rates the downloads are ahead of the uploads (about 40% in
/// when the uploads reach 30%), so every transfer is mid-way at
/// the kill.
pub const DUAL_DOWNLOAD_RATE: &str = "10M";
pub const UPLOAD_RATE: &str = "8M";
/// The kill lands once every transfer has this fraction of its bytes
/// (received, for downloads; acknowledged by the service, for uploads).
pub const KILL_FRACTION: f64 = 0.2;
/// wrk runs from before the transfers start until this long after the kill,
/// when it is stopped with SIGINT (it prints its report then), so it spans
/// the takeover however slow the machine is. `-d` is only a bound.
pub const WRK_AFTER_KILL: Duration = Duration::from_secs(3);
const WRK_MAX_SECS: u64 = 60;
/// wrk connections per address.
pub const WRK_CONNECTIONS: u32 = 8;
/// The kill must come within this time of the loads' start.
const KILL_DEADLINE: Duration = Duration::from_secs(20);
/// Frames sent by a SIGKILLed node can still be on their way for a moment
/// after `lab kill` returns; the role check ignores this window.
const AFTER_KILL_GRACE: f64 = 0.2;

/// What the tests run in the client namespace (and read captures with).
pub const TOOLS: &[&str] = &["curl", "wrk", "tcpdump", "ss", "sha256sum"];

// ---- addresses and the lab --------------------------------------------------

/// One service address and the two nodes that serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAddress {
    pub ip: String,
    /// The owner/backup node: answers ARP, keeps shadows.
    pub owner: String,
    /// Runs the application and sends the replies.
    pub primary: String,
}

impl ServiceAddress {
    pub fn new(ip: &str, owner: &str, primary: &str) -> ServiceAddress {
        ServiceAddress {
            ip: ip.to_owned(),
            owner: owner.to_owned(),
            primary: primary.to_owned(),
        }
    }

    /// The node that sends this address's replies once `victim` is dead:
    /// the owner when the primary died (it promotes its shadows), else the
    /// primary (it claims the address if the owner died, or carries on).
    pub fn server_after(&self, victim: &str) -> &str {
        if self.primary == victim {
            &self.owner
        } else {
            &self.primary
        }
    }

    /// What killing `victim` means for this address.
    pub fn effect_of(&self, victim: &str) -> &'static str {
        if self.owner == victim {
            "owner killed: the primary claims it"
        } else if self.primary == victim {
            "primary killed: the owner promotes its shadows"
        } else {
            "not served by the victim"
        }
    }
}

/// The dual-role lab's addresses.
pub fn dual_role_addresses() -> Vec<ServiceAddress> {
    vec![
        ServiceAddress::new("10.77.0.10", "n1", "n2"),
        ServiceAddress::new("10.77.0.11", "n2", "n1"),
    ]
}

/// The addresses of a ring of `n` nodes: node i owns 10.77.0.(9+i), its
/// primary is node i+1 (mod n).
pub fn ring_addresses(n: u32) -> Vec<ServiceAddress> {
    (1..=n)
        .map(|i| {
            ServiceAddress::new(
                &format!("10.77.0.{}", 9 + i),
                &format!("n{i}"),
                &format!("n{}", i % n + 1),
            )
        })
        .collect()
}

/// The `addresses` list of `lab status --json`: `[{ip, owner, primary}]`.
pub fn status_addresses(status: &Value) -> Result<Vec<ServiceAddress>, String> {
    let list = status["addresses"]
        .as_array()
        .ok_or_else(|| "lab status --json has no \"addresses\" list".to_owned())?;
    list.iter()
        .map(|a| {
            let field = |k: &str| {
                a[k].as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("address entry without a string \"{k}\": {a}"))
            };
            Ok(ServiceAddress {
                ip: field("ip")?,
                owner: field("owner")?,
                primary: field("primary")?,
            })
        })
        .collect()
}

/// Panics unless every tool of `tools` is installed: a test that cannot run
/// its clients must fail, never pass.
pub fn require_tools(test: &str, tools: &[&str]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !dirs.iter().any(|d| d.join(t).is_file()))
        .collect();
    assert!(
        missing.is_empty(),
        "NETNS TEST {test} CANNOT RUN: missing tools {missing:?} (scripts/test.sh installs them: \
         apt-get install curl wrk tcpdump iproute2 coreutils)"
    );
}

/// A lab with several service addresses, checked against the expected
/// ownership, plus the [`serial`] lock (the lab goes down first).
pub struct MultiLab {
    pub lab: Lab,
    pub addresses: Vec<ServiceAddress>,
    /// Node name → MAC, from `lab status`.
    macs: BTreeMap<String, String>,
    _serial: Serial,
}

impl std::ops::Deref for MultiLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

/// `lab up` arguments for `mode` plus `extra` (and `--node-cpus` from
/// `HOTPAIR_NODE_CPUS`, `--heartbeat-timeout-ms` from
/// `HOTPAIR_HEARTBEAT_TIMEOUT_MS`).
pub fn mode_args(mode: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["--mode".into(), mode.into()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.extend(["--wait-secs".into(), "30".into()]);
    if let Some(ms) = std::env::var("HOTPAIR_HEARTBEAT_TIMEOUT_MS")
        .ok()
        .filter(|v| !v.is_empty())
    {
        args.extend(["--heartbeat-timeout-ms".into(), ms]);
    }
    if let Some(cpus) = std::env::var("HOTPAIR_NODE_CPUS")
        .ok()
        .filter(|v| !v.is_empty())
    {
        args.extend(["--node-cpus".into(), cpus]);
    }
    args
}

/// Builds a lab of `mode` and checks that `lab status --json` reports the
/// addresses `want` and every node alive; `None` when skipped (not root).
pub fn multi_lab(
    test: &str,
    mode: &str,
    extra: &[&str],
    want: Vec<ServiceAddress>,
) -> Option<MultiLab> {
    if !require_root(test) {
        return None;
    }
    require_tools(test, TOOLS);
    let serial = serial();
    let args = mode_args(mode, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let lab = Lab::up_with(test, &args)?;
    let st = lab.initial_status();
    assert_eq!(st["mode"], mode, "[{test}] lab status: {st}");
    let mut have =
        status_addresses(st).unwrap_or_else(|e| panic!("[{test}] {e}\nlab status: {st}"));
    have.sort_by(|a, b| a.ip.cmp(&b.ip));
    assert_eq!(
        have, want,
        "[{test}] lab status reports other service addresses than the {mode} layout"
    );
    let mut macs = BTreeMap::new();
    let names: BTreeSet<&str> = want
        .iter()
        .flat_map(|a| [a.owner.as_str(), a.primary.as_str()])
        .collect();
    for name in names {
        let n = status_node(st, name)
            .unwrap_or_else(|| panic!("[{test}] no node {name} in lab status: {st}"));
        assert_eq!(n["alive"], true, "[{test}] {name} not alive: {st}");
        let mac = n["mac"]
            .as_str()
            .unwrap_or_else(|| panic!("[{test}] node {name} has no mac: {st}"));
        macs.insert(name.to_owned(), mac.to_ascii_lowercase());
    }
    Some(MultiLab {
        lab,
        addresses: want,
        macs,
        _serial: serial,
    })
}

/// A `dual-role` lab (see [`dual_role_addresses`]).
pub fn dual_role_lab(test: &str) -> Option<MultiLab> {
    multi_lab(test, "dual-role", &[], dual_role_addresses())
}

/// A `dual-role --tls` lab: both addresses serve HTTPS on 443, one
/// certificate (from the lab CA) for both.
pub fn dual_role_tls_lab(test: &str) -> Option<MultiLab> {
    multi_lab(test, "dual-role", &["--tls"], dual_role_addresses())
}

/// A `ring --nodes n` lab (see [`ring_addresses`]).
pub fn ring_lab(test: &str, n: u32) -> Option<MultiLab> {
    let nodes = n.to_string();
    multi_lab(test, "ring", &["--nodes", &nodes], ring_addresses(n))
}

/// A `ring --nodes n --tls` lab: every address serves HTTPS on 443 beside
/// HTTP on 80, one certificate (from the lab CA) for all of them.
pub fn ring_tls_lab(test: &str, n: u32) -> Option<MultiLab> {
    let nodes = n.to_string();
    multi_lab(
        test,
        "ring",
        &["--nodes", &nodes, "--tls"],
        ring_addresses(n),
    )
}

impl MultiLab {
    /// Every node of the lab, in name order.
    pub fn nodes(&self) -> Vec<&str> {
        self.macs.keys().map(String::as_str).collect()
    }

    pub fn mac(&self, node: &str) -> &str {
        self.macs
            .get(node)
            .map_or_else(|| panic!("no node {node}"), String::as_str)
    }

    /// `n2` for a node's MAC, else the MAC itself.
    pub fn name_of_mac<'a>(&'a self, mac: &'a str) -> &'a str {
        self.macs
            .iter()
            .find(|(_, m)| m.as_str() == mac)
            .map_or(mac, |(n, _)| n.as_str())
    }

    /// "n1 (owner of 10.77.0.10, primary for 10.77.0.11)".
    pub fn describe_node(&self, node: &str) -> String {
        let mut roles = Vec::new();
        for a in &self.addresses {
            if a.owner == node {
                roles.push(format!("owner of {}", a.ip));
            }
            if a.primary == node {
                roles.push(format!("primary for {}", a.ip));
            }
        }
        format!("{node} ({})", roles.join(", "))
    }

    /// "02:68:70:00:00:01 = n1, …" for messages.
    pub fn mac_legend(&self) -> String {
        self.macs
            .iter()
            .map(|(n, m)| format!("{m} = {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every address's IP.
    pub fn ips(&self) -> Vec<String> {
        self.addresses.iter().map(|a| a.ip.clone()).collect()
    }

    /// After killing `victim`: it is dead and every other node alive.
    pub fn check_survivors(&self, victim: &str) -> Result<String, String> {
        let st = self.status_json();
        let alive = |name: &str| status_node(&st, name).is_some_and(|n| n["alive"] == true);
        let mut bad = Vec::new();
        if alive(victim) {
            bad.push(format!("{victim} still alive after lab kill"));
        }
        for n in self.nodes() {
            if n != victim && !alive(n) {
                bad.push(format!("{n} died too (see its log)"));
            }
        }
        if bad.is_empty() {
            Ok(format!(
                "{victim} dead, {} alive",
                self.nodes()
                    .into_iter()
                    .filter(|n| *n != victim)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else {
            Err(bad.join("; "))
        }
    }

    /// curl `http://IP/static/index.html` before any kill: the address serves
    /// the docroot's file.
    pub fn check_serves(&self, ip: &str) -> Result<(), String> {
        let out = self.exec_client(&[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "20",
            &format!("http://{ip}/static/index.html"),
        ]);
        let want = std::fs::read(self.docroot().join("index.html")).unwrap_or_default();
        if !out.status.success() {
            return Err(format!(
                "GET http://{ip}/static/index.html before any kill failed\n{}",
                describe(&out)
            ));
        }
        if out.stdout != want {
            return Err(format!(
                "GET http://{ip}/static/index.html before any kill: {} bytes, not the \
                 docroot's index.html ({} bytes)",
                out.stdout.len(),
                want.len()
            ));
        }
        Ok(())
    }
}

// ---- the scenario -----------------------------------------------------------------

/// What runs across the kill, on every address of the lab.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// curl `--limit-rate` of the 50 MB downloads (one per address).
    pub download_rate: &'static str,
    /// curl `--limit-rate` of the 20 MB uploads (one per address), if any.
    pub upload_rate: Option<&'static str>,
    /// Whether a wrk runs on each address.
    pub wrk: bool,
}

/// The outcome of each check of a scenario, in order.
pub struct Checks {
    test: String,
    results: Vec<(String, Result<String, String>)>,
}

impl Checks {
    pub fn new(test: &str) -> Checks {
        Checks {
            test: test.to_owned(),
            results: Vec::new(),
        }
    }

    /// Records (and prints) one check's outcome.
    pub fn record(&mut self, what: String, r: Result<String, String>) {
        match &r {
            Ok(m) => report(&format!("[{}] PASS {what}: {m}", self.test)),
            Err(e) => report(&format!(
                "[{}] FAIL {what}: {}",
                self.test,
                e.lines().next().unwrap_or("")
            )),
        }
        self.results.push((what, r));
    }

    /// Panics listing every failed check (the lab's node logs follow, from
    /// the lab guard's drop).
    pub fn assert_all_passed(self) {
        let failed: Vec<String> = self
            .results
            .iter()
            .filter_map(|(what, r)| r.as_ref().err().map(|e| format!("* {what}: {e}")))
            .collect();
        assert!(
            failed.is_empty(),
            "[{}] {} of {} checks failed:\n{}",
            self.test,
            failed.len(),
            self.results.len(),
            failed.join("\n")
        );
    }
}

/// Starts `load` on every address of `lab` (client capture on), SIGKILLs
/// `victim` once every transfer is [`KILL_FRACTION`] through (and wrk has run
/// a second), then checks each download, upload and wrk run, the capture (no
/// RST from any address; the roles before and after the kill) and that only
/// the victim died. Every check is recorded in the returned [`Checks`].
pub fn kill_under_load(lab: &MultiLab, victim: &str, load: Load) -> Checks {
    let test = lab.test.clone();
    let mut checks = Checks::new(&test);
    let ips = lab.ips();
    for ip in &ips {
        checks.record(
            format!("{ip} serves before the kill"),
            lab.check_serves(ip).map(|()| "index.html exact".to_owned()),
        );
    }
    let tmp = TempDir::new(&format!("{test}-multi"));
    let want_dl = sha256sum(&lab.docroot().join(DOWNLOAD_FILE));
    // Upload bodies are written before anything starts, so the loads start together.
    let bodies: Vec<UploadBody> = match load.upload_rate {
        Some(_) => ips.iter().map(|ip| upload_body(tmp.path(), ip)).collect(),
        None => Vec::new(),
    };
    let cap = Capture::start_hosts(lab, tmp.path(), &ips);
    let mut wrks: Vec<WrkRun> = if load.wrk {
        ips.iter()
            .map(|ip| start_wrk(lab, tmp.path(), ip))
            .collect()
    } else {
        Vec::new()
    };
    let mut uploads: Vec<Upload> = match load.upload_rate {
        Some(rate) => ips
            .iter()
            .zip(bodies)
            .map(|(ip, body)| start_upload(lab, tmp.path(), ip, body, rate))
            .collect(),
        None => Vec::new(),
    };
    let start = Instant::now();
    let mut downloads: Vec<Download> = ips
        .iter()
        .map(|ip| start_download(lab, tmp.path(), ip, load.download_rate))
        .collect();
    let upload_ips: Vec<String> = uploads.iter().map(|u| u.ip.clone()).collect();

    // Wait until every transfer is KILL_FRACTION through.
    let (dl_at_kill, up_at_kill) = loop {
        let acked = acked_by_address(lab, &upload_ips);
        let dls: Vec<u64> = downloads.iter().map(|d| d.sampler.latest()).collect();
        let progress = {
            let mut p: Vec<String> = downloads
                .iter()
                .zip(&dls)
                .map(|(d, b)| format!("GET {}: {:.1} MiB", d.ip, mib(*b)))
                .collect();
            p.extend(
                acked
                    .iter()
                    .map(|(ip, b)| format!("POST {ip}: {:.1} MiB acked", mib(*b))),
            );
            p.join(", ")
        };
        let dl_ready = downloads
            .iter()
            .zip(&dls)
            .all(|(d, b)| *b as f64 >= d.total as f64 * KILL_FRACTION);
        let up_ready = acked
            .values()
            .all(|b| *b as f64 >= UPLOAD_BYTES as f64 * KILL_FRACTION);
        let wrk_ready = wrks
            .iter()
            .all(|w| w.start.elapsed() >= Duration::from_secs(1));
        for d in &mut downloads {
            assert!(
                !d.curl.exited(),
                "[{test}] the download from {} ended before the kill ({progress}); curl: {}{}",
                d.ip,
                d.curl.stderr_text().trim(),
                early_note(lab)
            );
        }
        for u in &mut uploads {
            assert!(
                !u.curl.exited(),
                "[{test}] the upload to {} ended before the kill ({progress}); curl: {}{}",
                u.ip,
                u.curl.stderr_text().trim(),
                early_note(lab)
            );
        }
        for w in &mut wrks {
            assert!(
                !w.proc.exited(),
                "[{test}] wrk on {} ended before the kill ({progress}): {}{}",
                w.ip,
                w.proc.stderr_text(),
                early_note(lab)
            );
        }
        if dl_ready && up_ready && wrk_ready {
            let ups: Vec<u64> = uploads.iter().map(|u| acked[&u.ip]).collect();
            break (dls, ups);
        }
        assert!(
            start.elapsed() < KILL_DEADLINE,
            "[{test}] the transfers did not reach {:.0}% within {KILL_DEADLINE:?} ({progress}){}",
            KILL_FRACTION * 100.0,
            early_note(lab)
        );
        thread::sleep(Duration::from_millis(5));
    };
    let kill_epoch = epoch_now();
    let kill = lab.kill(victim);
    let killed_epoch = epoch_now();
    report(&format!(
        "[{test}] SIGKILL {} {:.2} s into the transfers ({} downloads at {}/s{}{})",
        lab.describe_node(victim),
        (kill - start).as_secs_f64(),
        downloads.len(),
        load.download_rate,
        load.upload_rate.map_or(String::new(), |r| format!(
            ", {} uploads at {r}/s",
            uploads.len()
        )),
        if wrks.is_empty() {
            String::new()
        } else {
            format!(", wrk -c{WRK_CONNECTIONS} on each address")
        }
    ));

    // wrk first: it stops a fixed time after the kill.
    if !wrks.is_empty() {
        thread::sleep((kill + WRK_AFTER_KILL).saturating_duration_since(Instant::now()));
    }
    let effect = |ip: &str| {
        lab.addresses
            .iter()
            .find(|a| a.ip == ip)
            .map_or("", |a| a.effect_of(victim))
    };
    for w in wrks {
        let what = format!("wrk on {} ({}) across the kill", w.ip, effect(&w.ip));
        checks.record(what, w.stop(kill));
    }
    for (d, at) in downloads.into_iter().zip(dl_at_kill) {
        let what = format!(
            "download of 50 MB from {} ({}) across the kill",
            d.ip,
            effect(&d.ip)
        );
        checks.record(what, d.finish(kill, at, &want_dl));
    }
    for (u, at) in uploads.into_iter().zip(up_at_kill) {
        let what = format!(
            "upload of 20 MB to {} ({}) across the kill",
            u.ip,
            effect(&u.ip)
        );
        checks.record(what, u.finish(kill, at));
    }
    match cap.segments() {
        Ok(segs) => {
            checks.record(
                "no RST from any service address in the client's capture".to_owned(),
                check_no_rst(lab, &segs, kill_epoch),
            );
            checks.record(
                "roles in the capture (who sends, who receives, before and after)".to_owned(),
                check_roles(lab, &segs, victim, kill_epoch, killed_epoch),
            );
        }
        Err(e) => checks.record("client capture".to_owned(), Err(e)),
    }
    checks.record(
        "no takeover or fencing before the kill (node logs)".to_owned(),
        check_no_early_takeover(lab, kill_epoch),
    );
    checks.record(
        "only the victim died".to_owned(),
        lab.check_survivors(victim),
    );
    checks
}

/// Dual-role: downloads, uploads and wrk on both addresses, SIGKILL `victim`.
pub fn dual_role(test: &str, victim: &str) {
    let Some(lab) = dual_role_lab(test) else {
        return;
    };
    let load = Load {
        download_rate: DUAL_DOWNLOAD_RATE,
        upload_rate: Some(UPLOAD_RATE),
        wrk: true,
    };
    kill_under_load(&lab, victim, load).assert_all_passed();
}

/// curl `--limit-rate` of each of the ring's downloads (three at once).
pub const RING_DOWNLOAD_RATE: &str = "15M";

/// Ring of `n`: a download from every address, SIGKILL `victim`.
pub fn ring(test: &str, n: u32, victim: &str) {
    let Some(lab) = ring_lab(test, n) else {
        return;
    };
    let load = Load {
        download_rate: RING_DOWNLOAD_RATE,
        upload_rate: None,
        wrk: false,
    };
    kill_under_load(&lab, victim, load).assert_all_passed();
}

/// Downloads from every address of `lab` (10 MB/s, client capture on);
/// once each has 10 MiB, SIGKILL `victim`. Returns what failed: a download
/// not byte-exact, or an RST from any address (empty: all survived).
pub fn downloads_survive_kill(lab: &MultiLab, victim: &str) -> Vec<String> {
    downloads_survive(lab, &format!("{victim} killed"), || lab.kill(victim))
}

/// Downloads from every address of `lab` (10 MB/s, client capture on);
/// once each has 10 MiB, `disrupt` runs (it returns when the disruption
/// began). Returns what failed: a download not byte-exact, or an RST from
/// any address (empty: all survived). `what` names the disruption.
pub fn downloads_survive(
    lab: &MultiLab,
    what: &str,
    disrupt: impl FnOnce() -> Instant,
) -> Vec<String> {
    let test = lab.test.clone();
    let tmp = TempDir::new(&format!("{test}-dlk"));
    let want = sha256sum(&lab.docroot().join(DOWNLOAD_FILE));
    let ips = lab.ips();
    let cap = Capture::start_hosts(lab, tmp.path(), &ips);
    let downloads: Vec<_> = ips
        .iter()
        .map(|ip| start_download(lab, tmp.path(), ip, "10M"))
        .collect();
    let start = Instant::now();
    while downloads.iter().any(|d| d.bytes() < 10 << 20) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "[{test}] the downloads did not reach 10 MiB"
        );
        thread::sleep(Duration::from_millis(2));
    }
    let at: Vec<u64> = downloads.iter().map(Download::bytes).collect();
    let epoch = epoch_now();
    let began = disrupt();
    let mut failures = Vec::new();
    for (d, at) in downloads.into_iter().zip(at) {
        let ip = d.ip.clone();
        match d.finish(began, at, &want) {
            Ok(line) => report(&format!("[{test}] {ip}, {what}: {line}")),
            Err(e) => failures.push(format!("{ip}: {e}")),
        }
    }
    match cap.segments() {
        Ok(segs) => match check_no_rst(lab, &segs, epoch) {
            Ok(line) => report(&format!("[{test}] {line}")),
            Err(e) => failures.push(e),
        },
        Err(e) => failures.push(e),
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_layout() {
        let r = ring_addresses(3);
        assert_eq!(
            r,
            vec![
                ServiceAddress::new("10.77.0.10", "n1", "n2"),
                ServiceAddress::new("10.77.0.11", "n2", "n3"),
                ServiceAddress::new("10.77.0.12", "n3", "n1"),
            ]
        );
        // Killing n2: n2 owned .11 (n3 claims it), was primary for .10 (n1
        // promotes), .12 is not its business.
        assert_eq!(r[1].server_after("n2"), "n3");
        assert_eq!(r[0].server_after("n2"), "n1");
        assert_eq!(r[2].server_after("n2"), "n1");
        assert_eq!(r[2].effect_of("n2"), "not served by the victim");
    }

    #[test]
    fn status_addresses_parse() {
        let st: Value = serde_json::from_str(
            r#"{"addresses": [{"ip": "10.77.0.10", "owner": "n1", "primary": "n2", "x": 1},
                              {"ip": "10.77.0.11", "owner": "n2", "primary": "n1"}]}"#,
        )
        .unwrap();
        assert_eq!(status_addresses(&st).unwrap(), dual_role_addresses());
        assert!(status_addresses(&serde_json::json!({})).is_err());
    }

    #[test]
    fn log_times() {
        let t = log_time("2026-11-30T17:39:25.825899Z  INFO hotpair: x").unwrap();
        assert!((t - 1_796_060_365.825_899).abs() < 1e-5, "{t}");
        assert_eq!(log_time("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(log_time("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert!(log_time("listening on 127.0.0.1:8080").is_none());
    }
}
