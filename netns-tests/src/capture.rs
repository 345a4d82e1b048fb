//! Packet captures in the client namespace: tcpdump writing the service
//! addresses' TCP traffic (or ARP) to a file, read back as text lines or as
//! [`Segment`]s. One type for the duplex scenarios (one address, a
//! [`CaptureReport`]), the multi-address ones (every segment) and the
//! walkthrough's hosts outside a lab ([`Capture::in_namespace`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{describe, report, Background, Lab, SERVICE};

/// tcpdump in the client namespace, capturing the service addresses' TCP
/// traffic (both directions, so a RST can be shown with its connection's
/// history; the RST count only looks at segments from the service address).
pub struct Capture {
    proc: Background,
    file: PathBuf,
}

/// What a capture saw.
#[derive(Debug)]
pub struct CaptureReport {
    /// Segments from the service address.
    pub packets: usize,
    /// Summary lines (`tcpdump -tt`) of the segments from the service
    /// address with RST set.
    pub rsts: Vec<String>,
    /// For each RST, the last segments of its connection (both directions).
    pub context: Vec<String>,
}

impl CaptureReport {
    /// The first 20 RST lines, each dated relative to `kill` (seconds since
    /// the epoch; `tcpdump -tt`'s first field is the time).
    pub fn dated_rsts(&self, kill: f64) -> Vec<String> {
        self.rsts
            .iter()
            .take(20)
            .map(|l| {
                let t: f64 = l
                    .split_whitespace()
                    .next()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(f64::NAN);
                format!("  [{:+.3} s from the kill] {l}", t - kill)
            })
            .collect()
    }
}

impl Capture {
    /// Starts `tcpdump -i eth0 -w FILE 'tcp and host 10.77.0.10'` and
    /// waits until it listens.
    pub fn start(lab: &Lab, dir: &Path) -> Capture {
        Capture::with_filter(lab, dir, format!("tcp and host {SERVICE}"))
    }

    /// Starts `tcpdump -i eth0 -w FILE 'tcp and (host A or host B …)'` and
    /// waits until it listens.
    pub fn start_hosts(lab: &Lab, dir: &Path, ips: &[String]) -> Capture {
        let hosts: Vec<String> = ips.iter().map(|ip| format!("host {ip}")).collect();
        Capture::with_filter(lab, dir, format!("tcp and ({})", hosts.join(" or ")))
    }

    fn with_filter(lab: &Lab, dir: &Path, filter: String) -> Capture {
        let file = dir.join("client.pcap");
        let file_s = file.to_string_lossy().into_owned();
        let proc = tcpdump(lab, dir, &tcp_args(&file_s, &filter), "tcpdump");
        Capture { proc, file }
    }

    /// Starts `tcpdump -i eth0 -w FILE FILTER` in namespace `ns` (one
    /// outside a lab: the hosts of a walkthrough site) and waits until it
    /// listens.
    pub fn in_namespace(ns: &str, dir: &Path, filter: &str) -> Capture {
        let file = dir.join(format!("{ns}.pcap"));
        let file_s = file.to_string_lossy().into_owned();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .args(tcp_args(&file_s, filter));
        let proc = Background::spawn(cmd, dir, &format!("tcpdump-{ns}"));
        let proc = listening(proc, &format!("tcpdump in {ns}"));
        Capture { proc, file }
    }

    /// Stops tcpdump (after letting the last packets reach the capture);
    /// the capture file.
    fn finish(self) -> Result<PathBuf, String> {
        // Let the last packets reach the capture before stopping it.
        thread::sleep(Duration::from_millis(200));
        self.proc.signal("INT");
        let out = self.proc.wait(Duration::from_secs(10));
        if !self.file.exists() {
            return Err(format!("tcpdump wrote no capture file\n{}", describe(&out)));
        }
        Ok(self.file)
    }

    /// Stops tcpdump and returns every TCP segment it captured.
    pub fn segments(self) -> Result<Vec<Segment>, String> {
        let file = self.finish()?;
        Ok(read(&file, "tcp")?
            .iter()
            .filter_map(|l| parse_segment(l))
            .collect())
    }

    /// Stops tcpdump and reads the capture back.
    pub fn stop(self) -> CaptureReport {
        self.stop_from(SERVICE)
    }

    /// [`Capture::stop`] for the segments from service address `service`.
    pub fn stop_from(self, service: &str) -> CaptureReport {
        let file = self.finish().unwrap_or_else(|e| panic!("{e}"));
        let read = |filter: &str| read(&file, filter).unwrap_or_else(|e| panic!("{e}"));
        let rsts = read(&format!(
            "src host {service} and tcp[tcpflags] & tcp-rst != 0"
        ));
        let all = read("tcp");
        let mut context = Vec::new();
        for rst in rsts.iter().take(5) {
            // "TIME MAC > MAC, …: 10.77.0.10.80 > 10.77.0.100.PORT: Flags [R] …"
            let Some(client) = after_service(rst, service).and_then(|rest| {
                rest.split_whitespace()
                    .next()
                    .map(|c| c.trim_end_matches(':').to_owned())
            }) else {
                continue;
            };
            let conn: Vec<&String> = all.iter().filter(|l| l.contains(&client)).collect();
            let at = conn.iter().position(|l| *l == rst).unwrap_or(conn.len());
            context.push(format!("connection {client}, up to the RST:"));
            for l in &conn[at.saturating_sub(10)..(at + 3).min(conn.len())] {
                context.push(format!("    {l}"));
            }
        }
        CaptureReport {
            packets: all
                .iter()
                .filter(|l| after_service(l, service).is_some())
                .count(),
            rsts,
            context,
        }
    }
}

/// What follows "10.77.0.10.PORT > " in a `tcpdump` line (a segment from
/// the service address, on whichever port it serves: 80, and 443 too for
/// HTTPS).
fn after_service<'a>(line: &'a str, service: &str) -> Option<&'a str> {
    let needle = format!(" {service}.");
    let mut rest = line;
    while let Some(at) = rest.find(&needle) {
        let tail = &rest[at + needle.len()..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            if let Some(after) = tail[digits..].strip_prefix(" > ") {
                return Some(after);
            }
        }
        rest = tail;
    }
    None
}

/// The segments of capture `file` matching `filter`, as `tcpdump -n -e
/// -tt -r` lines (-e: the MACs tell which node sent a segment,
/// 02:68:70:00:00:0<i>).
pub fn read(file: &Path, filter: &str) -> Result<Vec<String>, String> {
    let out = Command::new("tcpdump")
        .args(["-n", "-e", "-tt", "-r"])
        .arg(file)
        .arg(filter)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run tcpdump -r: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tcpdump -r {} failed\n{}",
            file.display(),
            describe(&out)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// A tcpdump command line writing `filter`'s TCP segments (their first 128
/// bytes: the headers) to `file`.
fn tcp_args<'a>(file: &'a str, filter: &'a str) -> [&'a str; 11] {
    [
        "tcpdump",
        // Without it the kernel hands packets over in blocks, and a
        // capture of a few segments (keep-alive requests) stopped soon
        // after holds none of them: "0 packets captured, 18 received by
        // filter".
        "--immediate-mode",
        "-i",
        "eth0",
        "-n",
        "-s",
        "128",
        "-U",
        "-w",
        file,
        filter,
    ]
}

/// Starts `args` (a tcpdump command line) in the client namespace and
/// waits until it listens.
fn tcpdump(lab: &Lab, dir: &Path, args: &[&str], name: &str) -> Background {
    let proc = lab.spawn_in("client", args, dir, name);
    listening(proc, &format!("[{}] {name}", lab.test))
}

/// Waits until tcpdump `proc` (`who`, for the failure message) says it
/// listens: a capture started before the traffic must not miss its start.
fn listening(mut proc: Background, who: &str) -> Background {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proc.stderr_text().contains("listening on") {
        assert!(
            !proc.exited(),
            "{who} exited at start: {}",
            proc.stderr_text()
        );
        assert!(
            Instant::now() < deadline,
            "{who} did not start listening within 10 s: {}",
            proc.stderr_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
    proc
}

/// Starts tcpdump on the client's interface for ARP, into `dir/arp.pcap`,
/// and waits until it listens.
pub fn arp_capture(lab: &Lab, dir: &Path) -> Background {
    let f = dir.join("arp.pcap").to_string_lossy().into_owned();
    tcpdump(
        lab,
        dir,
        // --immediate-mode: a few ARP frames must not wait in a kernel
        // block when the capture stops (see `tcp_args`).
        &[
            "tcpdump",
            "--immediate-mode",
            "-i",
            "eth0",
            "-n",
            "-U",
            "-w",
            &f,
            "arp",
        ],
        "tcpdump-arp",
    )
}

/// Asserts the capture holds packets and no RST from the service address.
/// `kill` (seconds since the epoch) dates the RSTs relative to the kill.
#[track_caller]
pub fn assert_no_rst(lab: &Lab, cap: &CaptureReport, what: &str, kill: f64) {
    assert!(
        cap.packets > 0,
        "[{}] {what}: the capture in the client namespace holds no packet from {SERVICE}",
        lab.test
    );
    assert!(
        cap.rsts.is_empty(),
        "[{}] {what}: {} RST segment(s) from {SERVICE} seen by the client (MAC \
         02:68:70:00:00:01 = n1, :02 = n2):\n{}\n{}",
        lab.test,
        cap.rsts.len(),
        cap.dated_rsts(kill).join("\n"),
        cap.context.join("\n")
    );
    report(&format!(
        "[{}] {what}: capture: {} packets from {SERVICE}, 0 RST",
        lab.test, cap.packets
    ));
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
