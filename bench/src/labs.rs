//! Labs for the bench, built and removed with the `hotpair lab` commands of
//! this same binary, each under a prefix of its own. A [`Lab`] goes down
//! when dropped, so every path out of the bench (an error too) removes it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// A lab that is up.
pub struct Lab {
    pub exe: PathBuf,
    pub prefix: String,
    pub status: Value,
}

/// One node of a lab, as `lab status --json` shows it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub namespace: String,
    pub pid: Option<i32>,
    /// The directory with `cpuacct.usage` (v1) or `cpu.stat` (v2).
    pub cgroup: Option<PathBuf>,
    /// The address its replication link uses.
    pub link_address: Option<String>,
}

impl Lab {
    /// `hotpair lab up --prefix PREFIX ARGS…`; its output goes to `log`.
    pub fn up(exe: &Path, prefix: &str, args: &[String], log: &Path) -> Result<Lab> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let status = Command::new(exe)
            .args(["lab", "up", "--prefix", prefix])
            .args(args)
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .context("running hotpair lab up")?;
        // From here on the lab exists (perhaps half built): drop removes it.
        let mut lab = Lab {
            exe: exe.to_owned(),
            prefix: prefix.to_owned(),
            status: Value::Null,
        };
        if !status.success() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            bail!(
                "`hotpair lab up --prefix {prefix} {}` failed ({status}):\n{text}",
                args.join(" ")
            );
        }
        lab.refresh()?;
        Ok(lab)
    }

    pub fn refresh(&mut self) -> Result<()> {
        self.status = self.status_now()?;
        Ok(())
    }

    /// `lab status --json` now (what the nodes report at this moment).
    pub fn status_now(&self) -> Result<Value> {
        let o = Command::new(&self.exe)
            .args(["lab", "status", "--json", "--prefix", &self.prefix])
            .stderr(Stdio::inherit())
            .output()
            .context("running hotpair lab status --json")?;
        if !o.status.success() {
            bail!("hotpair lab status --json --prefix {} failed", self.prefix);
        }
        serde_json::from_slice(&o.stdout).context("parsing lab status --json")
    }

    pub fn client_ns(&self) -> String {
        format!("{}-client", self.prefix)
    }

    pub fn switch_ns(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.status["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| NodeInfo {
                name: n["name"].as_str().unwrap_or_default().to_owned(),
                namespace: n["namespace"].as_str().unwrap_or_default().to_owned(),
                pid: n["pid"].as_i64().map(|p| p as i32),
                cgroup: n["cgroup"].as_str().map(PathBuf::from),
                link_address: n["link"]["address"].as_str().map(str::to_owned),
            })
            .collect()
    }

    pub fn node(&self, name: &str) -> Result<NodeInfo> {
        self.nodes()
            .into_iter()
            .find(|n| n.name == name)
            .with_context(|| format!("lab {} has no node {name}", self.prefix))
    }

    /// (heartbeat interval, timeout) in ms, for replicated labs.
    pub fn heartbeat_ms(&self) -> Option<(u64, u64)> {
        let r = &self.status["replication"];
        Some((
            r["heartbeat_interval_ms"].as_u64()?,
            r["heartbeat_timeout_ms"].as_u64()?,
        ))
    }

    /// CPU time (ns) of every node with a cgroup: (node name, ns).
    pub fn cpu_ns(&self) -> Result<Vec<(String, u64)>> {
        self.nodes()
            .into_iter()
            .filter_map(|n| n.cgroup.map(|c| (n.name, c)))
            .map(|(name, dir)| Ok((name, read_usage_ns(&dir)?)))
            .collect()
    }

    pub fn down(&mut self) {
        if self.prefix.is_empty() {
            return;
        }
        let ok = Command::new(&self.exe)
            .args(["lab", "down", "--prefix", &self.prefix])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "warning: `hotpair lab down --prefix {}` failed; remove it by hand",
                self.prefix
            );
        }
        self.prefix.clear();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.down();
    }
}

/// CPU time in ns from a cgroup directory: v1 `cpuacct.usage`, or v2
/// `cpu.stat`'s `usage_usec`.
pub fn read_usage_ns(dir: &Path) -> Result<u64> {
    let v1 = dir.join("cpuacct.usage");
    if v1.exists() {
        let s =
            std::fs::read_to_string(&v1).with_context(|| format!("reading {}", v1.display()))?;
        return s
            .trim()
            .parse()
            .with_context(|| format!("parsing {}", v1.display()));
    }
    let v2 = dir.join("cpu.stat");
    let s = std::fs::read_to_string(&v2).with_context(|| format!("reading {}", v2.display()))?;
    s.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|us| us * 1000)
        .with_context(|| format!("no usage_usec in {}", v2.display()))
}

/// Whether this binary's `lab up` knows `--static-policy` (the content
/// policies `static` / `sync-static`).
pub fn static_policy_available(exe: &Path) -> bool {
    Command::new(exe)
        .args(["lab", "up", "--help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--static-policy"))
}

/// `cmd` run inside namespace `ns`.
pub fn in_ns(ns: &str, program: &Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

/// Brings up every `(key, prefix, args)` lab at once, each logging to
/// `logs/lab-PREFIX.log`. Returns the labs that came up — kept even when
/// another failed, so the caller removes them (they go down when dropped)
/// — and the first error.
pub fn up_all<K: Copy + Send + Sync>(
    exe: &Path,
    logs: &Path,
    jobs: &[(K, String, Vec<String>)],
) -> (Vec<(K, Lab)>, Option<anyhow::Error>) {
    let results: Vec<(K, Result<Lab>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(k, p, a)| {
                let log = logs.join(format!("lab-{p}.log"));
                (*k, sc.spawn(move || Lab::up(exe, p, a, &log)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(k, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("lab up thread panicked")));
                (k, r)
            })
            .collect()
    });
    let mut labs = Vec::new();
    let mut first_err = None;
    for (k, r) in results {
        match r {
            Ok(l) => labs.push((k, l)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    (labs, first_err)
}

/// CPU time used between two readings of the same named counters (ns): a
/// name missing from `before` counts from zero.
pub fn cpu_delta(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .map(|(n, v)| {
            let b = before.iter().find(|(m, _)| m == n).map_or(0, |x| x.1);
            (n.clone(), v.saturating_sub(b))
        })
        .collect()
}

/// Refuses a binary whose `lab up` lacks an argument a part passes (e.g. an
/// older build given as a baseline), naming it, before any lab is built.
pub fn check_lab_up_args(exe: &Path, part: &str, args: &[&str]) -> Result<()> {
    let o = Command::new(exe)
        .args(["lab", "up", "--help"])
        .output()
        .with_context(|| format!("running {} lab up --help", exe.display()))?;
    let help = String::from_utf8_lossy(&o.stdout);
    for a in args {
        if !help.contains(a) {
            bail!(
                "{}'s `lab up` has no {a}: the {part} part cannot build its labs with it",
                exe.display()
            );
        }
    }
    Ok(())
}
