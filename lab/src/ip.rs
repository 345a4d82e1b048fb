//! Thin wrappers around iproute2 (`ip`) for the namespace work.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Runs `ip ARGS…`, failing with ip's stderr when it exits non-zero.
pub fn ip<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run(&mut cmd)
}

/// Runs `ip -n NS ARGS…` (the command operates inside namespace `ns`).
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("ip");
    cmd.arg("-n").arg(ns).args(args);
    run(&mut cmd)
}

/// A veth pair: `name` in namespace `ns`, its peer `peer` moved into
/// namespace `peer_ns`.
pub fn veth_in(ns: &str, name: &str, peer: &str, peer_ns: &str) -> Result<String> {
    ip_in(
        ns,
        &[
            "link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_ns,
        ],
    )
}

/// Runs `ip netns exec NS PROGRAM ARGS…` and waits for it.
pub fn exec_in(ns: &str, program: &str, args: &[&str]) -> Result<String> {
    let mut cmd = netns_command(ns, program);
    cmd.args(args);
    run(&mut cmd)
}

/// A `Command` that runs `program` inside namespace `ns` (`ip netns exec`, which
/// execs the program, so the child's pid is the program's pid).
pub fn netns_command(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.arg("netns").arg("exec").arg(ns).arg(program);
    cmd
}

/// Runs a command to completion with captured output; error on non-zero exit.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {shown} (is iproute2 installed?)"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Names of all network namespaces known to `ip netns`.
pub fn netns_list() -> Result<Vec<String>> {
    let out = ip(["netns", "list"])?;
    // Lines look like "hp-n1 (id: 2)" or just "hp-n1".
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Pids of the processes living in namespace `ns`.
pub fn netns_pids(ns: &str) -> Result<Vec<i32>> {
    let out = ip(["netns", "pids", ns])?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// IPv4 addresses (`a.b.c.d/len`) per interface in namespace `ns`.
pub fn ipv4_addresses(ns: &str) -> Result<Vec<(String, String)>> {
    let out = ip_in(ns, &["-j", "-4", "addr", "show"])?;
    let v: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("parsing `ip -j addr` in {ns}"))?;
    let mut addrs = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        let ifname = link["ifname"].as_str().unwrap_or("?");
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if let (Some(local), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) {
                addrs.push((ifname.to_owned(), format!("{local}/{len}")));
            }
        }
    }
    Ok(addrs)
}
