//! The checks of a multi-address scenario: no RST from any address, each
//! address served by the node it should be after the kill, no takeover
//! before it (read from the node logs).

use super::*;

// ---- packet capture over several addresses ------------------------------------

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
pub(super) const TAKEOVER_WORDS: &[&str] = &[
    "declared dead",
    "taking over",
    "fenced",
    "claiming",
    "promoted",
];

/// For a failure before the kill: the node logs' takeovers so far, if any.
pub(super) fn early_note(lab: &Lab) -> String {
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
