//! nginx (kernel TCP) on the same lab bridge, serving the same docroot: the
//! reference a user would pick instead. A namespace `PREFIX-ng` with a veth
//! whose peer sits on the lab's switch bridge `br0`, 10.77.0.20/24; one
//! worker (hotpair's stack is one thread), sendfile, no access log; held to
//! the nodes' CPU quota by a cgroup of its own. Removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::labs::Lab;

pub const NGINX_ADDRESS: &str = "10.77.0.20";

pub struct Nginx {
    ns: String,
    child: Option<Child>,
    /// Cgroup directories made for it (removed on drop); the first with
    /// the CPU usage counter.
    cgroups: Vec<PathBuf>,
    pub usage_dir: Option<PathBuf>,
}

fn ip(args: &[&str]) -> Result<()> {
    let st = Command::new("ip")
        .args(args)
        .status()
        .with_context(|| format!("ip {}", args.join(" ")))?;
    if !st.success() {
        bail!("`ip {}` failed ({st})", args.join(" "));
    }
    Ok(())
}

/// Connection limits of the nginx config.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Worker processes; above one, each has a listening socket of its own
    /// (`reuseport`: the kernel spreads connections evenly by their
    /// 4-tuple), so no worker holds more than its share of the fds.
    pub workers: u32,
    pub worker_connections: u32,
    /// `worker_rlimit_nofile` (None: inherited).
    pub rlimit_nofile: Option<u32>,
    pub keepalive_timeout_s: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            workers: 1,
            worker_connections: 4096,
            rlimit_nofile: None,
            keepalive_timeout_s: 65,
        }
    }
}

impl Nginx {
    /// Starts nginx next to `lab`, serving `docroot` under /static/, held
    /// to `cpus` CPUs (none: no limit). `dir` holds its config and logs.
    pub fn start(lab: &Lab, docroot: &Path, cpus: Option<f64>, dir: &Path) -> Result<Nginx> {
        Self::start_with(lab, docroot, cpus, dir, Limits::default())
    }

    /// [`Nginx::start`] with other connection limits (the idle part holds
    /// thousands of keep-alive connections for minutes).
    pub fn start_with(
        lab: &Lab,
        docroot: &Path,
        cpus: Option<f64>,
        dir: &Path,
        limits: Limits,
    ) -> Result<Nginx> {
        if Command::new("nginx").arg("-v").output().is_err() {
            bail!("nginx is not installed (Debian: apt-get install nginx-light)");
        }
        let ns = format!("{}-ng", lab.prefix);
        let sw = lab.switch_ns();
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        std::fs::create_dir_all(dir)?;
        let mut me = Nginx {
            ns: ns.clone(),
            child: None,
            cgroups: Vec::new(),
            usage_dir: None,
        };
        ip(&["netns", "add", &ns])?;
        let _ = Command::new("ip")
            .args(["netns", "exec", &ns, "sh", "-c"])
            .arg("for c in all default; do f=/proc/sys/net/ipv6/conf/$c/disable_ipv6; [ -e $f ] && echo 1 > $f; done; true")
            .status();
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n", &sw, "link", "add", "ng", "type", "veth", "peer", "name", "ng0", "netns", &ns,
        ])?;
        ip(&["-n", &sw, "link", "set", "ng", "master", "br0", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{NGINX_ADDRESS}/24"),
            "dev",
            "ng0",
        ])?;
        ip(&["-n", &ns, "link", "set", "ng0", "up"])?;
        let d = dir.display();
        let rlimit = limits
            .rlimit_nofile
            .map_or(String::new(), |n| format!("worker_rlimit_nofile {n};\n"));
        let conf = format!(
            "worker_processes {};\n{rlimit}daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections {}; }}\nhttp {{\n  default_type application/octet-stream;\n\
             access_log off;\n  sendfile on;\n  tcp_nodelay on;\n  keepalive_requests 1000000000;\n\
             keepalive_timeout {}s;\n  client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n\
             server {{\n    listen {NGINX_ADDRESS}:80{};\n    location /static/ {{ alias {}/; }}\n  }}\n}}\n",
            limits.workers.max(1),
            limits.worker_connections,
            limits.keepalive_timeout_s,
            if limits.workers > 1 { " reuseport" } else { "" },
            docroot.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        // The shell enters the cgroups, then becomes nginx: master and worker inherit them.
        let mut enter = String::new();
        if let Some(cpus) = cpus {
            let name = format!("hotpair-{}-ng", lab.prefix);
            for (dir, usage) in make_cgroup(&name, cpus)? {
                enter.push_str(&format!("echo $$ > {}/cgroup.procs && ", dir.display()));
                if usage {
                    me.usage_dir = Some(dir.clone());
                }
                me.cgroups.push(dir);
            }
        }
        let script = format!(
            "{enter}exec ip netns exec {ns} nginx -p {d} -e {d}/error.log -c {d}/nginx.conf"
        );
        let log = std::fs::File::create(dir.join("nginx.out"))?;
        me.child = Some(
            Command::new("sh")
                .args(["-c", &script])
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting nginx")?,
        );
        // Serving?
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &lab.client_ns(),
                    "curl",
                    "-sf",
                    "--max-time",
                    "2",
                    "-o",
                    "/dev/null",
                ])
                .arg(format!("http://{NGINX_ADDRESS}/static/1k.bin"))
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(me);
            }
            if let Some(c) = me.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    let out = std::fs::read_to_string(dir.join("nginx.out")).unwrap_or_default();
                    bail!("nginx exited ({st}): {out}");
                }
            }
            if Instant::now() > deadline {
                bail!("nginx did not serve http://{NGINX_ADDRESS}/static/1k.bin within 10 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its processes (master and worker), from its cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let Some(d) = self.cgroups.first() else {
            return Vec::new();
        };
        std::fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    pub fn cpu_ns(&self) -> Result<Vec<(String, u64)>> {
        match &self.usage_dir {
            Some(d) => Ok(vec![("nginx".into(), super::labs::read_usage_ns(d)?)]),
            None => Ok(vec![]),
        }
    }
}

/// A cgroup holding `cpus` CPUs: v2 `cpu.max`, or v1 `cpu.cfs_quota_us`
/// (+ `cpuacct` where mounted apart). Returns (directory, has the usage
/// counter).
fn make_cgroup(name: &str, cpus: f64) -> Result<Vec<(PathBuf, bool)>> {
    let root = Path::new("/sys/fs/cgroup");
    let quota = (cpus * 100_000.0).round() as u64;
    let w = |p: PathBuf, v: String| {
        std::fs::write(&p, v).with_context(|| format!("writing {}", p.display()))
    };
    if root.join("cgroup.controllers").exists() {
        let d = root.join(name);
        let _ = std::fs::create_dir(&d);
        w(d.join("cpu.max"), format!("{quota} 100000"))?;
        return Ok(vec![(d, true)]);
    }
    let cpu = root.join("cpu").join(name);
    let _ = std::fs::create_dir(&cpu);
    w(cpu.join("cpu.cfs_period_us"), "100000".into())?;
    w(cpu.join("cpu.cfs_quota_us"), quota.to_string())?;
    if cpu.join("cpuacct.usage").exists() {
        return Ok(vec![(cpu, true)]);
    }
    let acct = root.join("cpuacct").join(name);
    let _ = std::fs::create_dir(&acct);
    Ok(vec![(cpu, false), (acct, true)])
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The shell exec'd into ip netns exec, which exec'd nginx: c is the master.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        for d in self.cgroups.iter().rev() {
            // Empty once nginx is gone.
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
