//! `lab partition` / `lab heal`: cut and restore the replication links, or
//! one node's side of the service LAN, with nftables rules inside the node
//! namespaces (nothing outside the lab is touched). Packets are dropped,
//! not refused: to the nodes a cut looks like a silent peer (a cable pulled,
//! a switch port dead), not like a crashed process whose kernel resets the
//! link.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::state::LabState;

/// The table cutting the links (in every node namespace).
const LINK_TABLE: &str = "hotpair_link_cut";
/// The table cutting a node's TAP off its LAN bridge.
const LAN_TABLE: &str = "hotpair_lan_cut";

/// Loads `rules` with `nft -f -` inside namespace `ns`.
fn nft(ns: &str, rules: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft (is nftables installed?)")?;
    child
        .stdin
        .take()
        .context("nft's stdin")?
        .write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft in {ns} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The nftables rules that drop every replication-link packet (both ways).
pub fn link_cut_rules(ports: &[u16]) -> String {
    let set = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "table inet {LINK_TABLE} {{\n\
         \tchain input {{ type filter hook input priority -10; policy accept;\n\
         \t\ttcp dport {{ {set} }} drop\n\t\ttcp sport {{ {set} }} drop\n\t}}\n\
         \tchain output {{ type filter hook output priority -10; policy accept;\n\
         \t\ttcp dport {{ {set} }} drop\n\t\ttcp sport {{ {set} }} drop\n\t}}\n\
         }}\n"
    )
}

/// The nftables rules that cut a node's TAP off its LAN bridge (the node's
/// kernel, and with it a link on the shared network, stays connected).
pub fn lan_cut_rules(tap: &str) -> String {
    format!(
        "table bridge {LAN_TABLE} {{\n\
         \tchain forward {{ type filter hook forward priority -10; policy accept;\n\
         \t\tiifname \"{tap}\" drop\n\t\toifname \"{tap}\" drop\n\t}}\n\
         }}\n"
    )
}

/// Cuts every replication link of the lab, or (`lan`) that node's LAN side.
pub fn partition(state: &LabState, lan: Option<&str>) -> Result<String> {
    match lan {
        Some(name) => {
            let n = state
                .nodes
                .iter()
                .find(|n| n.name == name)
                .with_context(|| format!("the lab has no node `{name}`"))?;
            nft(&n.namespace, &lan_cut_rules(&n.tap))?;
            Ok(format!(
                "cut node {name}'s TAP ({}) off the service LAN; its replication link is untouched",
                n.tap
            ))
        }
        None => {
            if state.links.is_empty() {
                bail!(
                    "this lab has no replication link to cut (mode {})",
                    state.mode
                );
            }
            let mut ports: Vec<u16> = state.links.iter().map(|l| l.port).collect();
            ports.sort_unstable();
            ports.dedup();
            for n in &state.nodes {
                nft(&n.namespace, &link_cut_rules(&ports))?;
            }
            Ok(format!(
                "cut every replication link ({} link(s), TCP ports {ports:?}, dropped both ways in every node)",
                state.links.len()
            ))
        }
    }
}

/// Removes every cut. Succeeds when there was none.
pub fn heal(state: &LabState) -> Result<String> {
    let mut removed = 0;
    for n in &state.nodes {
        for table in [format!("inet {LINK_TABLE}"), format!("bridge {LAN_TABLE}")] {
            // `destroy` would ignore a missing table, but needs nftables ≥ 1.0.8.
            let listed = Command::new("ip")
                .args(["netns", "exec", &n.namespace, "nft", "list", "tables"])
                .stdin(Stdio::null())
                .output()
                .context("cannot run nft (is nftables installed?)")?;
            let have = String::from_utf8_lossy(&listed.stdout)
                .lines()
                .any(|l| l.trim() == format!("table {table}"));
            if have {
                nft(&n.namespace, &format!("delete table {table}\n"))?;
                removed += 1;
            }
        }
    }
    Ok(if removed == 0 {
        "nothing to heal".to_owned()
    } else {
        format!("healed: {removed} cut(s) removed")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_what_they_cut() {
        let r = link_cut_rules(&[7700, 7702]);
        assert!(r.contains("tcp dport { 7700, 7702 } drop"));
        assert!(r.contains("hook output"));
        let l = lan_cut_rules("hptap0");
        assert!(l.contains("iifname \"hptap0\" drop") && l.contains("table bridge"));
    }
}
