//! `--node-cpus X`: each node's processes (the `hotpair node` and its upstream
//! app) held to X CPUs by a CPU cgroup of their own, so the nodes of one lab
//! compete for the machine like separate hosts would rather than sharing all
//! of its cores. cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us` over a
//! 100 ms `cpu.cfs_period_us`), whichever the machine mounts.

use std::ffi::CString;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Where cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The CFS period: quota is a share of this.
pub const PERIOD_US: u64 = 100_000;
/// The kernel refuses a CFS quota below 1 ms.
const MIN_QUOTA_US: u64 = 1_000;

/// Which cgroup interface a machine offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V1 => "cgroup v1",
            Version::V2 => "cgroup v2",
        })
    }
}

/// The directories a node's cgroup lives in on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The unified hierarchy mounted at the root.
    V2 { root: PathBuf },
    /// The v1 `cpu` controller's hierarchy and the one holding
    /// `cpuacct.usage`: the same directory where they are co-mounted
    /// (`cpu,cpuacct`), two when mounted apart.
    V1 { cpu: PathBuf, cpuacct: PathBuf },
}

/// A node's cgroup as recorded in the lab state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CgroupState {
    pub version: Version,
    /// The CPUs the node may use.
    pub cpus: f64,
    /// The cgroup carrying the CPU limit.
    pub path: PathBuf,
    /// v1: the cgroup whose `cpuacct.usage` (ns) counts the node's CPU time
    /// (`path` itself when cpu and cpuacct are co-mounted). v2: `None`, the
    /// usage is `usage_usec` in `path/cpu.stat`.
    pub cpuacct: Option<PathBuf>,
}

impl CgroupState {
    /// The directory to read CPU usage from: `cpuacct.usage` in v1, `cpu.stat` in v2.
    pub fn usage_dir(&self) -> &Path {
        self.cpuacct.as_deref().unwrap_or(&self.path)
    }

    /// Every directory of the cgroup (one, or two for split v1 hierarchies).
    pub fn dirs(&self) -> Vec<&Path> {
        let mut v = vec![self.path.as_path()];
        if let Some(a) = &self.cpuacct {
            if a != &self.path {
                v.push(a);
            }
        }
        v
    }

    /// CPU time used so far by the processes in the cgroup, in nanoseconds.
    pub fn usage_ns(&self) -> Option<u64> {
        match self.version {
            Version::V1 => fs::read_to_string(self.usage_dir().join("cpuacct.usage"))
                .ok()?
                .trim()
                .parse()
                .ok(),
            Version::V2 => parse_usage_usec(&fs::read_to_string(self.path.join("cpu.stat")).ok()?)
                .map(|us| us * 1000),
        }
    }

    /// Makes `cmd`'s child join this cgroup before it execs, so the program
    /// and every process or thread it ever starts are held from the first
    /// instruction (moving it in after the spawn would race its start-up).
    pub fn enter_on_exec(&self, cmd: &mut Command) -> Result<()> {
        let files: Vec<CString> = self
            .dirs()
            .into_iter()
            .map(|d| CString::new(d.join("cgroup.procs").as_os_str().as_bytes()))
            .collect::<Result<_, _>>()
            .context("a cgroup path contains a NUL byte")?;
        // SAFETY: between fork and exec only async-signal-safe calls are made
        // (getpid, open, write, close) on buffers prepared before the fork;
        // nothing allocates.
        unsafe {
            cmd.pre_exec(move || {
                let mut buf = [0u8; 20];
                let digits = format_pid(libc::getpid(), &mut buf);
                for f in &files {
                    let fd = libc::open(f.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let n = libc::write(fd, digits.as_ptr().cast(), digits.len());
                    let err = std::io::Error::last_os_error();
                    libc::close(fd);
                    if n < 0 {
                        return Err(err);
                    }
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// Removes the cgroup's directories. Waits briefly for just-killed
    /// processes to leave it (rmdir fails with EBUSY until they have).
    pub fn remove(&self) -> Result<()> {
        for dir in self.dirs() {
            remove_dir(dir)?;
        }
        Ok(())
    }
}

/// Writes `pid` in decimal into `buf` without allocating (for `pre_exec`).
fn format_pid(pid: libc::pid_t, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = pid.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Parses `--node-cpus`: a positive number of CPUs, at least the smallest
/// quota the kernel accepts (1 ms per 100 ms period, 0.01 CPU).
pub fn parse_cpus(s: &str) -> Result<f64, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of CPUs (use e.g. 0.5, 1 or 2.5)"))?;
    if !x.is_finite() || x <= 0.0 {
        return Err(format!(
            "`{s}` CPUs: the CPU share must be a positive number (e.g. 0.5)"
        ));
    }
    if quota_us(x) < MIN_QUOTA_US {
        return Err(format!(
            "`{s}` CPUs is below the smallest CFS quota, {} CPUs ({MIN_QUOTA_US} µs per {PERIOD_US} µs)",
            MIN_QUOTA_US as f64 / PERIOD_US as f64
        ));
    }
    Ok(x)
}

/// The CFS quota in µs per [`PERIOD_US`] for `cpus` CPUs.
pub fn quota_us(cpus: f64) -> u64 {
    (cpus * PERIOD_US as f64).round() as u64
}

/// The cgroup v2 `cpu.max` line for `cpus` CPUs.
pub fn cpu_max(cpus: f64) -> String {
    format!("{} {PERIOD_US}\n", quota_us(cpus))
}

/// The cgroup name of node `node` of lab `prefix` (`hotpair-PREFIX-n1`).
/// The prefix has no '-', so the names of two labs never collide.
pub fn name(prefix: &str, node: &str) -> String {
    format!("{}{node}", name_head(prefix))
}

/// What every cgroup name of lab `prefix` starts with.
fn name_head(prefix: &str) -> String {
    format!("hotpair-{prefix}-")
}

/// `usage_usec` from a cgroup v2 `cpu.stat`.
fn parse_usage_usec(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// Finds the cgroup interface under `root` (normally [`CGROUP_ROOT`]):
/// `cgroup.controllers` at the root means the unified v2 hierarchy; else a
/// v1 `cpu` hierarchy.
pub fn detect(root: &Path) -> Result<Layout> {
    if root.join("cgroup.controllers").exists() {
        return Ok(Layout::V2 {
            root: root.to_owned(),
        });
    }
    let cpu = root.join("cpu");
    if cpu.join("cpu.cfs_quota_us").exists() {
        // Co-mounted `cpu,cpuacct` shows cpuacct.usage beside the quota;
        // otherwise look for a cpuacct hierarchy of its own.
        let cpuacct = if cpu.join("cpuacct.usage").exists() {
            cpu.clone()
        } else {
            let a = root.join("cpuacct");
            if !a.join("cpuacct.usage").exists() {
                bail!(
                    "cgroup v1 has a cpu controller in {} but no cpuacct.usage there or in {}",
                    cpu.display(),
                    a.display()
                );
            }
            a
        };
        return Ok(Layout::V1 { cpu, cpuacct });
    }
    bail!(
        "--node-cpus needs a CPU cgroup: neither cgroup v2 ({}/cgroup.controllers) nor a \
         cgroup v1 cpu controller ({}/cpu.cfs_quota_us) was found",
        root.display(),
        cpu.display()
    )
}

/// Creates (or takes over a leftover) cgroup `name` limited to `cpus` CPUs.
pub fn create(layout: &Layout, name: &str, cpus: f64) -> Result<CgroupState> {
    match layout {
        Layout::V2 { root } => {
            // Child cgroups get the cpu controller only if the parent passes it on.
            let control = root.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&control)
                .with_context(|| format!("reading {}", control.display()))?;
            if !enabled.split_whitespace().any(|c| c == "cpu") {
                fs::write(&control, "+cpu").with_context(|| {
                    format!("enabling the cpu controller in {}", control.display())
                })?;
            }
            let path = root.join(name);
            make_dir(&path)?;
            write(&path.join("cpu.max"), &cpu_max(cpus))?;
            Ok(CgroupState {
                version: Version::V2,
                cpus,
                path,
                cpuacct: None,
            })
        }
        Layout::V1 { cpu, cpuacct } => {
            let path = cpu.join(name);
            make_dir(&path)?;
            // The period first: a quota is checked against the current period.
            write(&path.join("cpu.cfs_period_us"), &format!("{PERIOD_US}\n"))?;
            write(
                &path.join("cpu.cfs_quota_us"),
                &format!("{}\n", quota_us(cpus)),
            )?;
            let acct = cpuacct.join(name);
            if acct != path {
                make_dir(&acct)?;
            }
            Ok(CgroupState {
                version: Version::V1,
                cpus,
                path,
                cpuacct: Some(acct),
            })
        }
    }
}

/// Removes cgroups of lab `prefix` left behind by a lab whose state is lost.
/// Their processes were in the lab's namespaces and are gone by now.
/// Returns whether any existed.
pub fn remove_leftovers(root: &Path, prefix: &str) -> Result<bool> {
    let Ok(layout) = detect(root) else {
        return Ok(false);
    };
    let parents = match layout {
        Layout::V2 { root } => vec![root],
        Layout::V1 { cpu, cpuacct } if cpu == cpuacct => vec![cpu],
        Layout::V1 { cpu, cpuacct } => vec![cpu, cpuacct],
    };
    let head = name_head(prefix);
    let mut found = false;
    for parent in parents {
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        for e in entries.flatten() {
            let is_ours = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&head))
                .is_some_and(|node| super::is_lab_member(node) && node.starts_with('n'));
            if is_ours && e.path().is_dir() {
                found = true;
                remove_dir(&e.path())?;
            }
        }
    }
    Ok(found)
}

fn make_dir(path: &Path) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating cgroup {}", path.display())),
    }
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value)
        .with_context(|| format!("writing {:?} to {}", value.trim(), path.display()))
}

/// rmdir with a short wait for EBUSY (processes killed an instant ago are
/// still leaving); a cgroup already gone is fine.
fn remove_dir(path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "removing cgroup {} (processes still in it: {})",
                        path.display(),
                        fs::read_to_string(path.join("cgroup.procs"))
                            .unwrap_or_default()
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_flag() {
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        assert_eq!(parse_cpus("2"), Ok(2.0));
        assert_eq!(parse_cpus(" 1.25 "), Ok(1.25));
        for bad in ["0", "-1", "-0.5", "0.0"] {
            let e = parse_cpus(bad).unwrap_err();
            assert!(e.contains("positive"), "{bad}: {e}");
        }
        for bad in ["abc", "", "1,5", "half"] {
            let e = parse_cpus(bad).unwrap_err();
            assert!(e.contains("not a number"), "{bad}: {e}");
        }
        for bad in ["nan", "inf", "-inf"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
        assert!(parse_cpus("0.001").unwrap_err().contains("smallest"));
        assert_eq!(parse_cpus("0.01"), Ok(0.01));
    }

    #[test]
    fn quota() {
        assert_eq!(quota_us(0.5), 50_000);
        assert_eq!(quota_us(1.0), 100_000);
        assert_eq!(quota_us(2.5), 250_000);
        // Rounded, not truncated: 0.3 * 100000 is 29999.999… in binary.
        assert_eq!(quota_us(0.3), 30_000);
        assert_eq!(cpu_max(0.5), "50000 100000\n");
    }

    #[test]
    fn names() {
        assert_eq!(name("hp", "n1"), "hotpair-hp-n1");
        assert_eq!(name("hl1", "n12"), "hotpair-hl1-n12");
        // One lab's names are not another's: prefixes cannot contain '-'.
        assert!(!name("hp_x", "n1").starts_with(&name_head("hp")));
    }

    #[test]
    fn pid_digits() {
        let mut b = [0u8; 20];
        assert_eq!(format_pid(0, &mut b), b"0");
        assert_eq!(format_pid(7, &mut b), b"7");
        assert_eq!(format_pid(4_194_304, &mut b), b"4194304");
    }

    #[test]
    fn v2_usage() {
        let stat = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n";
        assert_eq!(parse_usage_usec(stat), Some(123_456));
        assert_eq!(parse_usage_usec("user_usec 5\n"), None);
    }

    fn scratch(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("hotpair-cgroup-test-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn touch(p: PathBuf) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "").unwrap();
    }

    #[test]
    fn detection_and_layout() {
        // v2: cgroup.controllers at the root.
        let r = scratch("v2");
        touch(r.join("cgroup.controllers"));
        assert_eq!(detect(&r).unwrap(), Layout::V2 { root: r.clone() });
        // v1, cpu and cpuacct co-mounted.
        let r1 = scratch("v1co");
        touch(r1.join("cpu/cpu.cfs_quota_us"));
        touch(r1.join("cpu/cpuacct.usage"));
        assert_eq!(
            detect(&r1).unwrap(),
            Layout::V1 {
                cpu: r1.join("cpu"),
                cpuacct: r1.join("cpu")
            }
        );
        // v1, mounted apart (as on this project's build machine).
        let r2 = scratch("v1split");
        touch(r2.join("cpu/cpu.cfs_quota_us"));
        touch(r2.join("cpuacct/cpuacct.usage"));
        let layout = detect(&r2).unwrap();
        assert_eq!(
            layout,
            Layout::V1 {
                cpu: r2.join("cpu"),
                cpuacct: r2.join("cpuacct")
            }
        );
        // Creating writes period and quota (plain files here, not a cgroupfs).
        let cg = create(&layout, &name("t", "n1"), 0.5).unwrap();
        let dir = r2.join("cpu/hotpair-t-n1");
        assert_eq!(cg.path, dir);
        assert_eq!(
            fs::read_to_string(dir.join("cpu.cfs_quota_us")).unwrap(),
            "50000\n"
        );
        assert_eq!(
            fs::read_to_string(dir.join("cpu.cfs_period_us")).unwrap(),
            "100000\n"
        );
        assert_eq!(cg.usage_dir(), r2.join("cpuacct/hotpair-t-n1"));
        assert_eq!(cg.dirs().len(), 2);
        // Neither: a clear error.
        let none = scratch("none");
        let e = detect(&none).unwrap_err().to_string();
        assert!(e.contains("cgroup v2") && e.contains("cgroup v1"), "{e}");
        for d in [r, r1, r2, none] {
            let _ = fs::remove_dir_all(d);
        }
    }
}
