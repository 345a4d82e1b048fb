//! `--only proxy`: the `upstream` route's throughput, side by side in one
//! run — this build's client, the same lab run by another hotpair binary
//! (`--baseline-bin`, e.g. the hand-written client before the hyper one),
//! nginx `proxy_pass` to the same application, and the application alone
//! (the ceiling).
//!
//! The lab's own application (lab/assets/upstream.py) is Python and would
//! cap every row at its speed, so each lab's app is replaced by nginx
//! serving the docroot's files under /app/ on port 8080 of the node
//! namespace (where the lab's `upstream` route points: 127.0.0.1:8080),
//! with two workers and no CPU quota, in a cgroup of its own that only
//! counts its CPU time. The proxies (the node, nginx) are held to
//! `--node-cpus` like every server of the bench.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::labs::{self, cpu_delta, read_usage_ns, Lab};
use super::markdown;
use super::model::{Point, ProxyConfig, ProxyRow, ProxyRun, Results};
use super::nginx::{serves, Limits, Nginx, NGINX_ADDRESS};
use super::part::Ctx;
use super::wrk;

const SERVICE: &str = "10.77.0.10";
/// n1's kernel address on the LAN: the app is reached there from outside
/// the node namespace (nginx's upstream, the direct row).
const APP_HOST: &str = "10.77.0.1";
const APP_PORT: u16 = 8080;
/// wrk connections (closed loop), as issue 19 asks.
pub const CONNS: u32 = 32;
/// The reply sizes measured.
pub const SIZES: [u64; 2] = [1024, 50 * 1024];

/// Where a row's CPU time is read: (name, cgroup directory with the usage
/// counter). Names: `proxy` (the node or nginx in front), `app`.
type Sources = Vec<(&'static str, PathBuf)>;

/// A simplex lab whose app is nginx, ready behind the node's `upstream` route.
struct ProxyLab {
    /// Dropped before the lab: it runs inside the lab's node namespace.
    app: Nginx,
    lab: Lab,
    node_cgroup: PathBuf,
}

fn lab_args(node_cpus: f64, docroot: &Path) -> Vec<String> {
    vec![
        "--mode".into(),
        "simplex".into(),
        "--node-cpus".into(),
        node_cpus.to_string(),
        "--docroot".into(),
        docroot.display().to_string(),
    ]
}

/// Both binaries must build the same lab.
fn check_lab_args(exe: &Path) -> Result<()> {
    labs::check_lab_up_args(
        exe,
        "proxy",
        &["--mode", "--node-cpus", "--docroot", "--prefix"],
    )
}

/// `exe --version` and the start of the binary's SHA-256 (every build
/// says the same version: the hash tells binaries apart).
fn version(exe: &Path) -> String {
    let v = Command::new(exe)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("(--version failed: {e})"));
    match super::run::sha256(exe) {
        Ok(h) => format!("{v}, sha256 {}…", &h[..16]),
        Err(e) => format!("{v}, sha256 unknown: {e:#}"),
    }
}

fn app_url(host: &str, size: u64) -> String {
    format!("http://{host}/app/{}k.bin", size / 1024)
}

/// Brings up a simplex lab with `exe`, replaces its app with nginx and
/// waits until the node's `upstream` route serves the app's files.
fn proxy_lab(cx: &Ctx, exe: &Path, letter: char, what: &str) -> Result<ProxyLab> {
    let prefix = format!("{}{letter}", cx.base);
    let args = lab_args(cx.node_cpus, cx.docroot);
    (cx.progress)(&format!(
        "proxy: lab up {prefix} with {what} ({})",
        args.join(" ")
    ));
    let lab = Lab::up(
        exe,
        &prefix,
        &args,
        &cx.logs.join(format!("lab-{prefix}-proxy.log")),
    )?;
    let n1 = &lab.status["nodes"][0];
    let ns = n1["namespace"]
        .as_str()
        .context("lab status: node without a namespace")?
        .to_owned();
    let node_cgroup = PathBuf::from(
        n1["cgroup"]
            .as_str()
            .context("lab status: the node has no cgroup (--node-cpus)")?,
    );
    // The toy app holds port 8080; its pid is in the lab's status.
    if let Some(pid) = n1["upstream"]["pid"].as_i64() {
        let pid = pid as i32;
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        // Gone, or a zombie (which holds no socket).
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, r)| !r.starts_with('Z'))
            })
        };
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let dir = cx.logs.join(format!("app-{prefix}"));
    let body = format!(
        "  sendfile on;\n  server {{\n    listen {APP_PORT} reuseport;\n\
         location = /app/health {{ return 200 \"ok\\n\"; }}\n\
         location /app/ {{ alias {}/; }}\n  }}\n",
        cx.docroot.display()
    );
    let mut app = Nginx::in_namespace(
        &ns,
        &format!("hotpair-{prefix}-app"),
        None,
        &dir,
        Limits {
            workers: 2,
            ..Limits::default()
        },
        &body,
    )?;
    app.wait_serving(&ns, &app_url(&format!("127.0.0.1:{APP_PORT}"), 1024), &dir)?;
    // The node's app check saw the toy app die; wait until it sees nginx.
    let url = app_url(SERVICE, 1024);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !serves(&lab.client_ns(), &url, &[]) {
        (cx.interrupted)()?;
        if Instant::now() > deadline {
            bail!("{url} (the node's upstream route to nginx) did not serve within 20 s in lab {prefix}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(ProxyLab {
        app,
        lab,
        node_cgroup,
    })
}

fn cpu(sources: &Sources) -> Result<Vec<(String, u64)>> {
    sources
        .iter()
        .map(|(n, d)| Ok((n.to_string(), read_usage_ns(d)?)))
        .collect()
}

/// One wrk run from `ns` at `url`, the sources' CPU time around it.
fn point(ns: &str, url: &str, secs: f64, sources: &Sources, quota: Option<f64>) -> Result<Point> {
    let before = cpu(sources)?;
    let t0 = Instant::now();
    let res = wrk::run_all(vec![wrk::command(ns, url, CONNS, secs)])?;
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_ns = cpu_delta(&before, &cpu(sources)?);
    let wrk = wrk::WrkResult::combine(&res);
    Ok(Point {
        conns: CONNS,
        wall_s: wall_s.max(wrk.seconds),
        wrk,
        cpu_ns,
        quota,
    })
}

/// A row to measure: where wrk runs and aims, what is counted.
struct Target {
    ns: String,
    host: String,
    sources: Sources,
    quota: Option<f64>,
}

/// `baseline`: the other hotpair binary (None: its rows say not measured).
pub fn run(cx: &Ctx, baseline: Option<&Path>) -> Result<ProxyRun> {
    check_lab_args(cx.exe)?;
    // `lab down` runs it again later, from wherever.
    let baseline = baseline
        .map(|b| {
            std::fs::canonicalize(b).with_context(|| format!("--baseline-bin {}", b.display()))
        })
        .transpose()?;
    let baseline = baseline.as_deref();
    let mut run = ProxyRun {
        conns: CONNS,
        app: format!(
            "{} (2 workers, no CPU quota) serving the docroot's files under /app/ on \
             port {APP_PORT} of the node namespace",
            sh_first_line("nginx -v 2>&1")
        ),
        baseline_bin: baseline.map(|p| p.display().to_string()),
        baseline_version: baseline.map(version),
        rows: Vec::new(),
    };
    if let Some(b) = baseline {
        check_lab_args(b)?;
    }
    let ours = proxy_lab(cx, cx.exe, 'u', "this build")?;
    let baseline = match baseline {
        Some(b) => Some(proxy_lab(
            cx,
            b,
            'v',
            &format!("--baseline-bin {}", b.display()),
        )?),
        None => None,
    };
    (cx.progress)("proxy: starting nginx proxy_pass on the lab's bridge");
    let app_addr = format!("{APP_HOST}:{APP_PORT}");
    let ng = Nginx::start_proxy(
        &ours.lab,
        &app_addr,
        Some(cx.node_cpus),
        &cx.logs.join("nginx-proxy"),
        "/app/1k.bin",
    )?;
    let client = ours.lab.client_ns();
    let app_usage = |l: &ProxyLab| l.app.usage_dir.clone().context("app nginx has no cgroup");
    let mut targets: Vec<(ProxyConfig, Result<Target, String>)> = vec![(
        ProxyConfig::Hotpair,
        Ok(Target {
            ns: client.clone(),
            host: SERVICE.into(),
            sources: vec![
                ("proxy", ours.node_cgroup.clone()),
                ("app", app_usage(&ours)?),
            ],
            quota: Some(cx.node_cpus),
        }),
    )];
    targets.push((
        ProxyConfig::Baseline,
        match &baseline {
            Some(b) => Ok(Target {
                ns: b.lab.client_ns(),
                host: SERVICE.into(),
                sources: vec![("proxy", b.node_cgroup.clone()), ("app", app_usage(b)?)],
                quota: Some(cx.node_cpus),
            }),
            None => Err("not measured (no --baseline-bin)".into()),
        },
    ));
    targets.push((
        ProxyConfig::NginxProxy,
        Ok(Target {
            ns: client.clone(),
            host: NGINX_ADDRESS.into(),
            sources: vec![
                (
                    "proxy",
                    ng.usage_dir.clone().context("nginx has no cgroup")?,
                ),
                ("app", app_usage(&ours)?),
            ],
            quota: Some(cx.node_cpus),
        }),
    ));
    targets.push((
        ProxyConfig::Direct,
        if serves(&client, &app_url(&app_addr, 1024), &[]) {
            Ok(Target {
                ns: client.clone(),
                host: app_addr.clone(),
                sources: vec![("app", app_usage(&ours)?)],
                quota: None,
            })
        } else {
            Err(format!(
                "not measured: the application ({app_addr}) does not answer from the client namespace"
            ))
        },
    ));
    if !cx.quick {
        // Fill the connection pools and the page cache before anything counts.
        for (c, t) in &targets {
            if let Ok(t) = t {
                (cx.interrupted)()?;
                (cx.progress)(&format!("proxy: warm-up {}", c.label()));
                point(&t.ns, &app_url(&t.host, SIZES[0]), 1.0, &t.sources, t.quota)?;
            }
        }
    }
    // Interleaved, size by size, so every row sees the same conditions.
    for size in SIZES {
        for (c, t) in &targets {
            (cx.interrupted)()?;
            let row = match t {
                Ok(t) => {
                    let p = point(
                        &t.ns,
                        &app_url(&t.host, size),
                        cx.seconds,
                        &t.sources,
                        t.quota,
                    )
                    .with_context(|| format!("proxy {} {}", c.label(), markdown::kb(size)))?;
                    (cx.progress)(&format!(
                        "proxy {} {} {CONNS} conns: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, \
                         proxy {} µs CPU/req",
                        c.label(),
                        markdown::kb(size),
                        p.wrk.rps,
                        p.wrk.p50_us,
                        p.wrk.p99_us,
                        p.cpu_us_per_request("proxy")
                            .map_or("—".into(), |v| format!("{v:.1}"))
                    ));
                    ProxyRow {
                        config: *c,
                        size,
                        point: Some(p),
                        not_measured: None,
                    }
                }
                Err(why) => ProxyRow {
                    config: *c,
                    size,
                    point: None,
                    not_measured: Some(why.clone()),
                },
            };
            run.rows.push(row);
        }
    }
    // nginx first, then each lab (a ProxyLab drops its app before its lab).
    drop(ng);
    drop(baseline);
    drop(ours);
    Ok(run)
}

fn sh_first_line(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .trim_start_matches("nginx version: ")
                .to_owned()
        })
        .unwrap_or_default()
}

/// report.md's section: config × size → req/s, p50, p99, CPU per request.
pub fn section(o: &mut String, r: &Results) {
    use std::fmt::Write;
    let Some(p) = &r.proxy else {
        return;
    };
    let _ = writeln!(
        o,
        "## Upstream proxy: this build, --baseline-bin, nginx proxy_pass\n"
    );
    let _ = writeln!(
        o,
        "wrk, {} connections (closed loop), one run per cell, the rows interleaved size by \
         size. Every row reaches the same application: {}. hotpair: a simplex lab, \
         `/app/` (`upstream` route) → 127.0.0.1:{APP_PORT}; nginx: `proxy_pass` with an \
         HTTP/1.1 keep-alive pool (`keepalive 64`) at {NGINX_ADDRESS} on the lab's bridge → \
         {APP_HOST}:{APP_PORT}; direct: wrk → {APP_HOST}:{APP_PORT}, the ceiling. The \
         proxies (node, nginx) are held to the CPU quota; the app is not. CPU per request: \
         the proxy's cgroup (its kernel TCP work for nginx is partly softirq, counted \
         where it lands) and the app's.\n",
        p.conns, p.app
    );
    if let Some(b) = &p.baseline_bin {
        let _ = writeln!(
            o,
            "Baseline: `{b}` ({}).\n",
            p.baseline_version.as_deref().unwrap_or("version unknown")
        );
    }
    let rows: Vec<Vec<String>> = p
        .rows
        .iter()
        .map(|row| {
            let mut v = vec![row.config.label().to_string(), markdown::kb(row.size)];
            match &row.point {
                Some(pt) => {
                    let f = |x: Option<f64>| x.map_or("—".into(), |x| format!("{x:.1}"));
                    v.extend([
                        format!("{:.0}", pt.wrk.rps),
                        markdown::us(Some(pt.wrk.p50_us)),
                        markdown::us(Some(pt.wrk.p99_us)),
                        f(pt.cpu_us_per_request("proxy")),
                        pt.share_of_quota("proxy")
                            .map_or("—".into(), |s| format!("{:.0} %", s * 100.0)),
                        f(pt.cpu_us_per_request("app")),
                    ]);
                }
                None => {
                    v.push(
                        row.not_measured
                            .clone()
                            .unwrap_or_else(|| "not measured".into()),
                    );
                    v.extend(std::iter::repeat_n("—".to_string(), 5));
                }
            }
            v
        })
        .collect();
    markdown::table(
        o,
        &[
            "config",
            "size",
            "req/s",
            "p50",
            "p99",
            "proxy CPU µs/req",
            "proxy CPU of quota",
            "app CPU µs/req",
        ],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(config: ProxyConfig, size: u64, rps: f64, proxy_ns: u64) -> ProxyRow {
        let requests = (rps * 5.0) as u64;
        let mut cpu_ns = vec![("app".to_string(), 20_000 * requests)];
        let quota = (config != ProxyConfig::Direct).then_some(0.5);
        if quota.is_some() {
            cpu_ns.insert(0, ("proxy".to_string(), proxy_ns));
        }
        ProxyRow {
            config,
            size,
            point: Some(Point {
                conns: CONNS,
                wrk: wrk::WrkResult {
                    requests,
                    seconds: 5.0,
                    rps,
                    p50_us: 1500.0,
                    p99_us: 12_000.0,
                    ..Default::default()
                },
                cpu_ns,
                wall_s: 5.0,
                quota,
            }),
            not_measured: None,
        }
    }

    #[test]
    fn section_shows_each_row_and_what_was_not_measured() {
        let mut r = Results::default();
        assert!(
            {
                let mut o = String::new();
                section(&mut o, &r);
                o.is_empty()
            },
            "no proxy run, no section"
        );
        r.proxy = Some(ProxyRun {
            conns: CONNS,
            app: "nginx/1.22.1".into(),
            baseline_bin: None,
            baseline_version: None,
            rows: vec![
                // 2.5 s of CPU over 10,000 requests: 250 µs each, 100 % of 0.5 CPU over 5 s.
                measured(ProxyConfig::Hotpair, 1024, 2000.0, 2_500_000_000),
                ProxyRow {
                    config: ProxyConfig::Baseline,
                    size: 1024,
                    point: None,
                    not_measured: Some("not measured (no --baseline-bin)".into()),
                },
                measured(ProxyConfig::Direct, 1024, 13_000.0, 0),
            ],
        });
        let mut o = String::new();
        section(&mut o, &r);
        assert!(
            o.contains(
                "| hotpair (this build) | 1 KB | 2000 | 1500 µs | 12.0 ms | 250.0 | 100 % | 20.0 |"
            ),
            "{o}"
        );
        assert!(
            o.contains("| hotpair (--baseline-bin) | 1 KB | not measured (no --baseline-bin) | — | — | — | — | — |"),
            "{o}"
        );
        assert!(
            o.contains("| application direct | 1 KB | 13000 | 1500 µs | 12.0 ms | — | — | 20.0 |"),
            "{o}"
        );
    }
}
