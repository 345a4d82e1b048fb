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
//! packet [`MultiCapture`] over all the addresses, downloads, uploads and wrk
//! runs per address, and one SIGKILL while all of them are in progress.
//!
//! Every check of a scenario runs to the end and is reported (`PASS`/`FAIL`
//! lines on stderr), then the test fails listing every failed check.
//!
//! Environment knobs (besides those of [`crate::failover`] and [`crate::Lab`]):
//! - `HOTPAIR_NODE_CPUS=X`: pass `--node-cpus X` to `lab up`.
//! - `HOTPAIR_HEARTBEAT_TIMEOUT_MS=N`: pass `--heartbeat-timeout-ms N` (the
//!   lab's default is 500).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::failover::{epoch_now, ms, serial, Sampler, Serial, SAMPLE_EVERY};
use crate::wrk::parse_wrk;
use crate::{
    describe, random_bytes, report, require_root, sha256sum, split_head, status_code, Background,
    Lab, TempDir, SERVICE_PORT,
};

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
    /// The ingress/backup node: answers ARP, keeps shadows.
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
        let n = st["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["name"] == name)
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

/// A `ring --nodes n` lab (see [`ring_addresses`]).
pub fn ring_lab(test: &str, n: u32) -> Option<MultiLab> {
    let nodes = n.to_string();
    multi_lab(test, "ring", &["--nodes", &nodes], ring_addresses(n))
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
        let alive = |name: &str| {
            st["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|n| n["name"] == name)
                .is_some_and(|n| n["alive"] == true)
        };
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

// ---- packet capture over several addresses ------------------------------------

/// One TCP segment of a capture (`tcpdump -n -e -tt -r`).
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// Seconds since the epoch.
    pub time: f64,
    pub src_mac: String,
    pub dst_mac: String,
    /// "10.77.0.10.80"
    pub src: String,
    pub dst: String,
    pub rst: bool,
    pub line: String,
}

fn ip_of(endpoint: &str) -> &str {
    endpoint.rsplit_once('.').map_or(endpoint, |(ip, _)| ip)
}

impl Segment {
    pub fn src_ip(&self) -> &str {
        ip_of(&self.src)
    }

    pub fn dst_ip(&self) -> &str {
        ip_of(&self.dst)
    }

    /// Whether `other` belongs to the same connection (either direction).
    pub fn same_connection(&self, other: &Segment) -> bool {
        (self.src == other.src && self.dst == other.dst)
            || (self.src == other.dst && self.dst == other.src)
    }
}

/// Parses a `tcpdump -n -e -tt` line of an IPv4 TCP segment:
/// `TIME SMAC > DMAC, ethertype IPv4 (0x0800), length N: SRC > DST: Flags [..], …`.
pub fn parse_segment(line: &str) -> Option<Segment> {
    let mut it = line.split_whitespace();
    let time = it.next()?.parse().ok()?;
    let src_mac = it.next()?.to_ascii_lowercase();
    if it.next()? != ">" {
        return None;
    }
    let dst_mac = it.next()?.trim_end_matches(',').to_ascii_lowercase();
    let (_, rest) = line.split_once(", length ")?;
    let (_, ip) = rest.split_once(": ")?;
    let mut w = ip.split_whitespace();
    let src = w.next()?.to_owned();
    if w.next()? != ">" {
        return None;
    }
    let dst = w.next()?.trim_end_matches(':').to_owned();
    let flags = ip.split_once("Flags [")?.1.split_once(']')?.0;
    Some(Segment {
        time,
        src_mac,
        dst_mac,
        src,
        dst,
        rst: flags.contains('R'),
        line: line.to_owned(),
    })
}

/// tcpdump in the client namespace capturing the TCP traffic of several
/// service addresses (the generalisation of [`crate::failover::Capture`]).
pub struct MultiCapture {
    proc: Background,
    file: PathBuf,
}

impl MultiCapture {
    /// Starts `tcpdump -i eth0 -w FILE 'tcp and (host A or host B …)'` and
    /// waits until it listens.
    pub fn start(lab: &Lab, dir: &Path, ips: &[String]) -> MultiCapture {
        let file = dir.join("client.pcap");
        let hosts: Vec<String> = ips.iter().map(|ip| format!("host {ip}")).collect();
        let filter = format!("tcp and ({})", hosts.join(" or "));
        let file_s = file.to_string_lossy().into_owned();
        let mut proc = lab.spawn_in(
            "client",
            &[
                "tcpdump", "-i", "eth0", "-n", "-s", "128", "-U", "-w", &file_s, &filter,
            ],
            dir,
            "tcpdump",
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !proc.stderr_text().contains("listening on") {
            assert!(
                !proc.exited(),
                "[{}] tcpdump exited at start: {}",
                lab.test,
                proc.stderr_text()
            );
            assert!(
                Instant::now() < deadline,
                "[{}] tcpdump did not start listening within 10 s: {}",
                lab.test,
                proc.stderr_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
        MultiCapture { proc, file }
    }

    /// Stops tcpdump and returns every TCP segment it captured.
    pub fn stop(self) -> Result<Vec<Segment>, String> {
        // Let the last packets reach the capture before stopping it.
        thread::sleep(Duration::from_millis(200));
        self.proc.signal("INT");
        let out = self.proc.wait(Duration::from_secs(10));
        if !self.file.exists() {
            return Err(format!("tcpdump wrote no capture file\n{}", describe(&out)));
        }
        let out = Command::new("tcpdump")
            .args(["-n", "-e", "-tt", "-r"])
            .arg(&self.file)
            .arg("tcp")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run tcpdump -r: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tcpdump -r {} failed\n{}",
                self.file.display(),
                describe(&out)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(parse_segment)
            .collect())
    }
}

/// No segment from any of the lab's addresses has RST set (and the capture
/// does hold segments from each). `kill` (seconds since the epoch) dates the
/// RSTs relative to the kill.
pub fn check_no_rst(lab: &MultiLab, segs: &[Segment], kill: f64) -> Result<String, String> {
    let mut counts = Vec::new();
    let mut bad = Vec::new();
    for ip in lab.ips() {
        let from: Vec<&Segment> = segs.iter().filter(|s| s.src_ip() == ip).collect();
        let rsts: Vec<&Segment> = from.iter().copied().filter(|s| s.rst).collect();
        counts.push(format!("{ip}: {} segments, {} RST", from.len(), rsts.len()));
        if from.is_empty() {
            bad.push(format!(
                "the capture in the client namespace holds no segment from {ip}"
            ));
        }
        for r in rsts.iter().take(5) {
            let conn: Vec<&Segment> = segs.iter().filter(|s| s.same_connection(r)).collect();
            let at = conn.iter().position(|s| *s == *r).unwrap_or(conn.len());
            let mut text = format!(
                "RST from {ip} sent with MAC {} ({}) {:+.3} s from the kill; its connection \
                 up to it:",
                r.src_mac,
                lab.name_of_mac(&r.src_mac),
                r.time - kill
            );
            for s in &conn[at.saturating_sub(10)..(at + 3).min(conn.len())] {
                text.push_str(&format!("\n    [{:+.3} s] {}", s.time - kill, s.line));
            }
            bad.push(text);
        }
        if rsts.len() > 5 {
            bad.push(format!("… {} more RSTs from {ip}", rsts.len() - 5));
        }
    }
    if bad.is_empty() {
        Ok(format!("no RST ({})", counts.join("; ")))
    } else {
        Err(format!(
            "{} (MACs: {})\n{}",
            counts.join("; "),
            lab.mac_legend(),
            bad.join("\n")
        ))
    }
}

/// The roles the capture shows. Before the kill, for each address: the
/// client sends to its owner's MAC (the owner answers ARP) and every segment
/// from the address comes from its primary's MAC (the primary sends the
/// replies). After the kill: nothing from the victim's MAC, and the address
/// is served by [`ServiceAddress::server_after`] (DESIGN §4/§5: the primary
/// claims an address whose owner died; the owner promotes its shadows when
/// its primary died). `kill` is just before `lab kill` ran, `killed` just
/// after it returned.
pub fn check_roles(
    lab: &MultiLab,
    segs: &[Segment],
    victim: &str,
    kill: f64,
    killed: f64,
) -> Result<String, String> {
    let mut bad = Vec::new();
    let mut seen = Vec::new();
    let names = |set: &BTreeSet<&str>| {
        set.iter()
            .map(|m| lab.name_of_mac(m).to_owned())
            .collect::<Vec<_>>()
            .join("+")
    };
    for a in &lab.addresses {
        let before = |s: &Segment| s.time < kill;
        let after = |s: &Segment| s.time > killed + AFTER_KILL_GRACE;
        let from: Vec<&Segment> = segs.iter().filter(|s| s.src_ip() == a.ip).collect();
        let to: Vec<&Segment> = segs.iter().filter(|s| s.dst_ip() == a.ip).collect();
        let primary = lab.mac(&a.primary);
        let owner = lab.mac(&a.owner);
        let server = lab.mac(a.server_after(victim));
        let victim_mac = lab.mac(victim);
        let first = |v: &[&Segment]| {
            v.first().map_or(String::new(), |s| {
                format!("[{:+.3} s] {}", s.time - kill, s.line)
            })
        };

        let early: Vec<&Segment> = from.iter().copied().filter(|s| before(s)).collect();
        let wrong: Vec<&Segment> = early
            .iter()
            .copied()
            .filter(|s| s.src_mac != primary)
            .collect();
        if !wrong.is_empty() {
            bad.push(format!(
                "{}: before the kill {} segment(s) came from another MAC than its primary \
                 {}'s, e.g. {}",
                a.ip,
                wrong.len(),
                a.primary,
                first(&wrong)
            ));
        }
        let wrong: Vec<&Segment> = to
            .iter()
            .copied()
            .filter(|s| before(s) && s.dst_mac != owner)
            .collect();
        if !wrong.is_empty() {
            bad.push(format!(
                "{}: before the kill the client sent {} segment(s) to another MAC than its \
                 owner {}'s, e.g. {}",
                a.ip,
                wrong.len(),
                a.owner,
                first(&wrong)
            ));
        }
        let late: Vec<&Segment> = from.iter().copied().filter(|s| after(s)).collect();
        if late.is_empty() {
            bad.push(format!(
                "{}: no segment from it more than {AFTER_KILL_GRACE} s after the kill",
                a.ip
            ));
        }
        let from_victim: Vec<&Segment> = late
            .iter()
            .copied()
            .filter(|s| s.src_mac == victim_mac)
            .collect();
        if !from_victim.is_empty() {
            bad.push(format!(
                "{}: {} segment(s) from the killed {victim}'s MAC after the kill, e.g. {}",
                a.ip,
                from_victim.len(),
                first(&from_victim)
            ));
        }
        let wrong: Vec<&Segment> = late
            .iter()
            .copied()
            .filter(|s| s.src_mac != server)
            .collect();
        if !wrong.is_empty() {
            bad.push(format!(
                "{} ({}): {} segment(s) after the kill not from {}, e.g. {}",
                a.ip,
                a.effect_of(victim),
                wrong.len(),
                a.server_after(victim),
                first(&wrong)
            ));
        }
        let before_src: BTreeSet<&str> = early.iter().map(|s| s.src_mac.as_str()).collect();
        let after_src: BTreeSet<&str> = late.iter().map(|s| s.src_mac.as_str()).collect();
        let after_dst: BTreeSet<&str> = to
            .iter()
            .filter(|s| after(s))
            .map(|s| s.dst_mac.as_str())
            .collect();
        seen.push(format!(
            "{}: replies from {} before, {} after; client sends to {} after",
            a.ip,
            names(&before_src),
            names(&after_src),
            names(&after_dst)
        ));
    }
    if bad.is_empty() {
        Ok(seen.join("; "))
    } else {
        Err(format!(
            "{}\n(what the capture shows: {}; MACs: {})",
            bad.join("\n"),
            seen.join("; "),
            lab.mac_legend()
        ))
    }
}

// ---- node logs ------------------------------------------------------------------

/// Seconds since the epoch of a log line's leading RFC 3339 UTC timestamp
/// (`2026-11-30T17:39:25.825899Z …`, as `tracing` writes it).
pub fn log_time(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|v| v.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut h = time.splitn(3, ':');
    let hh: i64 = h.next()?.parse().ok()?;
    let mm: i64 = h.next()?.parse().ok()?;
    let ss: f64 = h.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

/// Words of the node log lines that tell of a takeover or fencing.
const TAKEOVER_WORDS: &[&str] = &[
    "declared dead",
    "taking over",
    "fenced",
    "claiming",
    "promoted",
];

/// For a failure before the kill: the node logs' takeovers so far, if any.
fn early_note(lab: &Lab) -> String {
    match check_no_early_takeover(lab, epoch_now()) {
        Ok(_) => String::new(),
        Err(e) => format!("\nNo node was killed yet, but {e}"),
    }
}

/// Takeover and fencing lines the node logs show before `kill` (seconds
/// since the epoch): there was no failure then, so there must be none. A
/// diagnosis beside [`check_roles`], which sees the same from the client's
/// side and does not depend on the wording of the logs.
pub fn check_no_early_takeover(lab: &Lab, kill: f64) -> Result<String, String> {
    let mut early = Vec::new();
    let Ok(entries) = std::fs::read_dir(lab.state_dir()) else {
        return Err(format!("cannot read {}", lab.state_dir().display()));
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "log")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('n'))
        })
        .collect();
    logs.sort();
    for log in &logs {
        let text = std::fs::read(log).unwrap_or_default();
        let name = log
            .file_stem()
            .map_or(String::new(), |s| s.to_string_lossy().into_owned());
        for line in String::from_utf8_lossy(&text).lines() {
            let Some(t) = log_time(line) else {
                continue;
            };
            if t < kill && TAKEOVER_WORDS.iter().any(|w| line.contains(w)) {
                early.push(format!(
                    "  {name} [{:+.3} s from the kill] {line}",
                    t - kill
                ));
            }
        }
    }
    if early.is_empty() {
        Ok(format!("none in {} node logs", logs.len()))
    } else {
        Err(format!(
            "{} takeover/fencing line(s) before any node was killed:\n{}",
            early.len(),
            early.join("\n")
        ))
    }
}

// ---- loads ----------------------------------------------------------------------

/// A 50 MB download in progress from one address.
pub struct Download {
    pub ip: String,
    pub file: PathBuf,
    pub total: u64,
    curl: Background,
    sampler: Sampler,
    start: Instant,
}

/// Starts `curl --limit-rate RATE -o … http://IP/static/50m.bin`, its size
/// sampled every [`SAMPLE_EVERY`].
pub fn start_download(lab: &Lab, dir: &Path, ip: &str, rate: &str) -> Download {
    let total = std::fs::metadata(lab.docroot().join(DOWNLOAD_FILE))
        .expect("the lab's docroot has the download file")
        .len();
    let file = dir.join(format!("download-{ip}.bin"));
    let file_s = file.to_string_lossy().into_owned();
    let u = format!("http://{ip}/static/{DOWNLOAD_FILE}");
    let start = Instant::now();
    let curl = lab.spawn_in(
        "client",
        &[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "45",
            "--limit-rate",
            rate,
            "-o",
            &file_s,
            "-w",
            "%{http_code} %{size_download}\n",
            &u,
        ],
        dir,
        &format!("curl-get-{ip}"),
    );
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
    curl: Background,
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
    let at_file = format!("@{}", body.display());
    let u = format!("http://{ip}/app/upload");
    let curl = lab.spawn_in(
        "client",
        &[
            "curl",
            "-sS",
            "--max-time",
            "45",
            "--limit-rate",
            rate,
            "-D",
            "-",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &at_file,
            &u,
        ],
        dir,
        &format!("curl-post-{ip}"),
    );
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
    proc: Background,
    start: Instant,
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

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
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
    let cap = MultiCapture::start(lab, tmp.path(), &ips);
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
    match cap.stop() {
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
    let cap = MultiCapture::start(lab, tmp.path(), &ips);
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
    match cap.stop() {
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

    #[test]
    fn segments_parse() {
        let l = "1764523648.884691 02:68:70:00:00:02 > 5a:3b:00:11:22:33, ethertype IPv4 \
                 (0x0800), length 66: 10.77.0.10.80 > 10.77.0.100.41234: Flags [R.], seq 1, \
                 ack 2, win 0, length 0";
        let s = parse_segment(l).unwrap();
        assert_eq!(s.src_mac, "02:68:70:00:00:02");
        assert_eq!(s.dst_mac, "5a:3b:00:11:22:33");
        assert_eq!((s.src_ip(), s.dst_ip()), ("10.77.0.10", "10.77.0.100"));
        assert!(s.rst);
        assert!((s.time - 1_764_523_648.884_691).abs() < 1e-6);
        let ack = l.replace("[R.]", "[.]").replace(
            "10.77.0.10.80 > 10.77.0.100.41234",
            "10.77.0.100.41234 > 10.77.0.10.80",
        );
        let a = parse_segment(&ack).unwrap();
        assert!(!a.rst);
        assert!(a.same_connection(&s));
        assert!(parse_segment("reading from file x.pcap").is_none());
    }
}
