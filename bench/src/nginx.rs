//! nginx (kernel TCP) on the same lab bridge, serving the same docroot: the
//! reference a user would pick instead. A namespace `PREFIX-ng` with a veth
//! whose peer sits on the lab's switch bridge `br0`, 10.77.0.20/24; one
//! worker (hotpair's stack is one thread), sendfile, no access log; held to
//! the nodes' CPU quota by a cgroup of its own. Removed when dropped. The
//! proxy part also runs it there as a reverse proxy ([`Nginx::start_proxy`])
//! and inside a lab's node namespace as the application
//! ([`Nginx::in_namespace`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::labs::Lab;

pub const NGINX_ADDRESS: &str = "10.77.0.20";
/// The name a `lab up --tls` certificate is for, besides the addresses.
pub const TLS_NAME: &str = "hotpair.test";
/// The one TLS 1.3 cipher suite every HTTPS server of the bench serves
/// (issue 18's figures are for it): nginx's `ssl_conf_command
/// Ciphersuites`, the labs' `lab up --tls-cipher-suites`.
pub const TLS_SUITE: &str = "TLS_AES_128_GCM_SHA256";

/// A `lab up --tls` lab's TLS files (its state directory's `tls/`).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn of(lab: &Lab) -> Result<TlsFiles> {
        let dir = PathBuf::from(
            lab.status["state_dir"]
                .as_str()
                .context("lab status has no state_dir")?,
        )
        .join("tls");
        let f = TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        for p in [&f.ca, &f.cert, &f.key] {
            if !p.exists() {
                bail!(
                    "lab {} has no {} (not up with --tls?)",
                    lab.prefix,
                    p.display()
                );
            }
        }
        Ok(f)
    }
}

pub struct Nginx {
    ns: String,
    /// Whether `ns` was made for it (and is removed on drop).
    owns_ns: bool,
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
        let server = format!(
            "  sendfile on;\n  server {{\n    listen {NGINX_ADDRESS}:80{};\n    location /static/ {{ alias {}/; }}\n  }}\n",
            if limits.workers > 1 { " reuseport" } else { "" },
            docroot.display()
        );
        let mut me = Self::on_bridge(lab, cpus, dir, limits, &server)?;
        me.wait_serving(
            &lab.client_ns(),
            &format!("http://{NGINX_ADDRESS}/static/1k.bin"),
            dir,
        )?;
        Ok(me)
    }

    /// nginx serving `docroot` under /static/ over HTTPS on
    /// 10.77.0.20:443 next to `lab`, TLS 1.3 only, [`TLS_SUITE`] only,
    /// with `cert` and `key`
    /// (the lab's: its CA `ca` must verify it, for the name
    /// `hotpair.test`, before this returns). Returns it and the TLS lines
    /// of its config.
    pub fn start_tls(
        lab: &Lab,
        docroot: &Path,
        cpus: Option<f64>,
        dir: &Path,
        tls: &TlsFiles,
    ) -> Result<(Nginx, String)> {
        // nginx's defaults otherwise (session tickets on, no shared session
        // cache): wrk never resumes, so neither matters to the figures.
        // sendfile stays on as in the plain config; nginx does not use it
        // for TLS (no kTLS configured), it reads and encrypts.
        // TLS 1.3 suites are set through OpenSSL's Ciphersuites command
        // (`ssl_ciphers` is TLS 1.2's list and leaves them alone).
        let tls_conf = format!(
            "ssl_protocols TLSv1.3; ssl_conf_command Ciphersuites {TLS_SUITE}; \
             ssl_certificate {}; ssl_certificate_key {};",
            tls.cert.display(),
            tls.key.display()
        );
        let server = format!(
            "  sendfile on;\n  server {{\n    listen {NGINX_ADDRESS}:443 ssl;\n    {tls_conf}\n    \
             location /static/ {{ alias {}/; }}\n  }}\n",
            docroot.display()
        );
        let mut me = Self::on_bridge(lab, cpus, dir, Limits::default(), &server)?;
        me.wait_serving_with(
            &lab.client_ns(),
            &[
                "--cacert".into(),
                tls.ca.display().to_string(),
                "--resolve".into(),
                format!("{TLS_NAME}:443:{NGINX_ADDRESS}"),
            ],
            &format!("https://{TLS_NAME}/static/1k.bin"),
            dir,
        )?;
        Ok((me, tls_conf))
    }

    /// nginx as a reverse proxy next to `lab` (10.77.0.20, its own
    /// namespace, `cpus` CPUs): every request to `http://10.77.0.20/` goes
    /// to `http://UPSTREAM/` over a pool of keep-alive connections, the way
    /// a production config would (HTTP/1.1 upstream, `Connection` cleared,
    /// buffers large enough for the replies measured, no temp files).
    /// `probe_path` must answer 200 through it before this returns.
    pub fn start_proxy(
        lab: &Lab,
        upstream: &str,
        cpus: Option<f64>,
        dir: &Path,
        probe_path: &str,
    ) -> Result<Nginx> {
        let server = format!(
            "  upstream app {{\n    server {upstream};\n    keepalive 64;\n    keepalive_requests 1000000000;\n    keepalive_timeout 600s;\n  }}\n\
             server {{\n    listen {NGINX_ADDRESS}:80;\n    location / {{\n      proxy_pass http://app;\n\
             proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n\
             proxy_buffer_size 16k;\n      proxy_buffers 8 16k;\n      proxy_max_temp_file_size 0;\n    }}\n  }}\n"
        );
        let mut me = Self::on_bridge(lab, cpus, dir, Limits::default(), &server)?;
        me.wait_serving(
            &lab.client_ns(),
            &format!("http://{NGINX_ADDRESS}{probe_path}"),
            dir,
        )?;
        Ok(me)
    }

    /// nginx inside an existing namespace `ns` (not removed on drop), with
    /// `http_body` (inside `http {}`) as its sites, in a cgroup of its own
    /// named `cgroup` (`cpus` None: no quota, the CPU time still counted).
    pub fn in_namespace(
        ns: &str,
        cgroup: &str,
        cpus: Option<f64>,
        dir: &Path,
        limits: Limits,
        http_body: &str,
    ) -> Result<Nginx> {
        std::fs::create_dir_all(dir)?;
        let mut me = Nginx {
            ns: ns.to_owned(),
            owns_ns: false,
            child: None,
            cgroups: Vec::new(),
            usage_dir: None,
        };
        me.launch(Some(cgroup), cpus, dir, limits, http_body)?;
        Ok(me)
    }

    /// A namespace `PREFIX-ng` on the lab's bridge at 10.77.0.20, nginx in it.
    fn on_bridge(
        lab: &Lab,
        cpus: Option<f64>,
        dir: &Path,
        limits: Limits,
        http_body: &str,
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
            owns_ns: true,
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
        // No cgroup without a quota, as before: nothing to hold or count.
        let cgroup = cpus.map(|_| format!("hotpair-{}-ng", lab.prefix));
        me.launch(cgroup.as_deref(), cpus, dir, limits, http_body)?;
        Ok(me)
    }

    /// Writes the config (`http_body` inside `http {}`) and starts nginx in
    /// `self.ns`, in the cgroup named `cgroup` if any (held to `cpus`, or
    /// only counting with None).
    fn launch(
        &mut self,
        cgroup: Option<&str>,
        cpus: Option<f64>,
        dir: &Path,
        limits: Limits,
        http_body: &str,
    ) -> Result<()> {
        let d = dir.display();
        let rlimit = limits
            .rlimit_nofile
            .map_or(String::new(), |n| format!("worker_rlimit_nofile {n};\n"));
        let conf = format!(
            "worker_processes {};\n{rlimit}daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections {}; }}\nhttp {{\n  default_type application/octet-stream;\n\
             access_log off;\n  tcp_nodelay on;\n  keepalive_requests 1000000000;\n\
             keepalive_timeout {}s;\n  client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n\
             {http_body}}}\n",
            limits.workers.max(1),
            limits.worker_connections,
            limits.keepalive_timeout_s,
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        // The shell enters the cgroups, then becomes nginx: master and worker inherit them.
        let mut enter = String::new();
        let made = match cgroup {
            Some(name) => make_cgroup(name, cpus)?,
            None => Vec::new(),
        };
        for (dir, usage) in made {
            enter.push_str(&format!("echo $$ > {}/cgroup.procs && ", dir.display()));
            if usage {
                self.usage_dir = Some(dir.clone());
            }
            self.cgroups.push(dir);
        }
        let ns = &self.ns;
        let script = format!(
            "{enter}exec ip netns exec {ns} nginx -p {d} -e {d}/error.log -c {d}/nginx.conf"
        );
        let log = std::fs::File::create(dir.join("nginx.out"))?;
        self.child = Some(
            Command::new("sh")
                .args(["-c", &script])
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting nginx")?,
        );
        Ok(())
    }

    /// Waits (10 s at most) until `url` answers 2xx from namespace `from`.
    pub fn wait_serving(&mut self, from: &str, url: &str, dir: &Path) -> Result<()> {
        self.wait_serving_with(from, &[], url, dir)
    }

    /// [`Nginx::wait_serving`] with more curl arguments (HTTPS: the CA).
    fn wait_serving_with(
        &mut self,
        from: &str,
        curl_args: &[String],
        url: &str,
        dir: &Path,
    ) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if serves(from, url, curl_args) {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    let out = std::fs::read_to_string(dir.join("nginx.out")).unwrap_or_default();
                    bail!("nginx exited ({st}): {out}");
                }
            }
            if Instant::now() > deadline {
                bail!("nginx did not serve {url} within 10 s");
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
/// (+ `cpuacct` where mounted apart); `cpus` None: no quota, the cgroup
/// only counts. Returns (directory, has the usage counter).
fn make_cgroup(name: &str, cpus: Option<f64>) -> Result<Vec<(PathBuf, bool)>> {
    let root = Path::new("/sys/fs/cgroup");
    let quota = cpus.map(|c| (c * 100_000.0).round() as u64);
    let w = |p: PathBuf, v: String| {
        std::fs::write(&p, v).with_context(|| format!("writing {}", p.display()))
    };
    if root.join("cgroup.controllers").exists() {
        let d = root.join(name);
        let _ = std::fs::create_dir(&d);
        let max = quota.map_or("max".to_string(), |q| q.to_string());
        w(d.join("cpu.max"), format!("{max} 100000"))?;
        return Ok(vec![(d, true)]);
    }
    let cpu = root.join("cpu").join(name);
    let _ = std::fs::create_dir(&cpu);
    w(cpu.join("cpu.cfs_period_us"), "100000".into())?;
    w(
        cpu.join("cpu.cfs_quota_us"),
        quota.map_or("-1".to_string(), |q| q.to_string()),
    )?;
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
        if self.owns_ns {
            let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        }
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

/// `curl` from namespace `ns`: whether `url` answered 2xx within 2 s.
/// `curl_args` go before the URL (e.g. `--cacert` for HTTPS).
pub fn serves(ns: &str, url: &str, curl_args: &[String]) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-sf",
            "--max-time",
            "2",
            "-o",
            "/dev/null",
        ])
        .args(curl_args)
        .arg(url)
        .status()
        .is_ok_and(|s| s.success())
}
