//! `hotpair demo`: the failover demo. Brings a lab up — duplex (n1 primary,
//! n2 owner) by default, or dual-role (each node owner of one address and
//! primary for the other) — starts rate-limited downloads of the 50 MB file
//! from the client namespace (one per service address), SIGKILLs one node
//! while the replies are in flight, lets every download finish from the
//! survivor, checks each byte for byte (SHA-256) and reports the
//! client-visible stall. The lab goes down on every path.

use hotpair::stall::Sampler;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate as lab;

const DEMO_FILE: &str = "50m.bin";
/// curl's `--limit-rate`: slow enough that the kill lands mid-reply.
const RATE_LIMIT: &str = "20M";
/// Kill once this much has arrived (about 1 s into the download)…
const KILL_AT_BYTES: u64 = 20 * 1024 * 1024;
/// … or after this long, whichever comes first.
const KILL_AT_LATEST: Duration = Duration::from_secs(3);
/// How often the downloaded file's size is sampled for the stall measurement.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// A pause after the kill worth a line of its own while the demo runs.
const NOTABLE_PAUSE: Duration = Duration::from_millis(100);

/// The lab mode the demo runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoMode {
    /// One address, 10.77.0.10: n1 primary, n2 owner.
    Duplex,
    /// Two addresses: n1 owns 10.77.0.10 (primary n2), n2 owns 10.77.0.11
    /// (primary n1); one download from each at once.
    DualRole,
}

/// The node the demo kills, and what it was.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Victim {
    node: &'static str,
    survivor: &'static str,
    /// What the node did, for the report ("primary", …).
    role: &'static str,
}

impl Victim {
    /// `--kill` in `mode`: duplex takes `primary`/`owner` (or n1/n2),
    /// dual-role n1/n2 (each node is both owner and primary there).
    fn parse(mode: DemoMode, kill: Option<&str>) -> Result<Victim> {
        let duplex = |node, survivor, role| Victim {
            node,
            survivor,
            role,
        };
        Ok(match (mode, kill) {
            (DemoMode::Duplex, None | Some("primary" | "n1")) => duplex("n1", "n2", "primary"),
            (DemoMode::Duplex, Some("owner" | "ingress" | "n2")) => duplex("n2", "n1", "owner"),
            (DemoMode::DualRole, None | Some("n1")) => Victim {
                node: "n1",
                survivor: "n2",
                role: "owner of 10.77.0.10, primary for 10.77.0.11",
            },
            (DemoMode::DualRole, Some("n2")) => Victim {
                node: "n2",
                survivor: "n1",
                role: "owner of 10.77.0.11, primary for 10.77.0.10",
            },
            (DemoMode::Duplex, Some(other)) => {
                bail!("--kill {other}: in duplex kill `primary` (n1) or `owner` (n2)")
            }
            (DemoMode::DualRole, Some(other)) => bail!(
                "--kill {other}: in dual-role kill `n1` or `n2` (each node is owner of one \
                 address and primary for the other)"
            ),
        })
    }
}

const DEMO_AFTER_HELP: &str = "\
The failover demo: brings up a lab (see `hotpair lab --help`), downloads
/static/50m.bin from the client namespace with `curl --limit-rate 20M`,
SIGKILLs the chosen node once 20 MiB have arrived, and lets the survivor
finish the download. PASS when curl exits 0 and the file's SHA-256 matches
the docroot's. Also prints the client-visible stall: the longest time, from
the kill on, that the downloaded file did not grow (sampled every 10 ms).

--mode duplex (default): one download from 10.77.0.10; n1 is the primary, n2
the owner; --kill primary (default) or owner.
--mode dual-role: two downloads at once, one from 10.77.0.10 (owned by n1,
primary n2) and one from 10.77.0.11 (owned by n2, primary n1); --kill n1
(default) or n2. Whichever dies, the survivor finishes one download as the
promoted backup and the other as the primary that claimed the address, and
both must arrive intact.

The lab is taken down on every path (unless --keep); the exit code is
non-zero on FAIL.";

#[derive(clap::Args)]
#[command(after_help = DEMO_AFTER_HELP)]
pub struct DemoArgs {
    /// Lab name prefix used by the demo (see `hotpair lab --help`).
    #[arg(long, default_value = "hpdemo")]
    prefix: String,
    /// The lab mode: `duplex` (one address) or `dual-role` (two addresses,
    /// one download from each).
    #[arg(long, value_enum, default_value = "duplex")]
    mode: DemoMode,
    /// Which node to SIGKILL mid-download. Duplex: `primary` (n1, sends the
    /// replies) or `owner` (n2, owns the service address) [default:
    /// primary]. Dual-role: `n1` or `n2` [default: n1].
    #[arg(long)]
    kill: Option<String>,
    /// Where the replication link runs (see `hotpair lab up --help`).
    #[arg(long, value_enum, default_value = "shared")]
    repl_net: lab::ReplNet,
    /// `[replication] heartbeat_timeout_ms` of the nodes.
    #[arg(long, default_value_t = lab::DEFAULT_HEARTBEAT_TIMEOUT_MS)]
    heartbeat_timeout_ms: u64,
    /// Leave the lab up afterwards (remove it with `hotpair lab down --prefix PREFIX`).
    #[arg(long)]
    keep: bool,
    /// Download over HTTPS (`lab up --tls`: port 443 beside HTTP on 80,
    /// curl checks the lab CA's certificate): the TLS connection survives
    /// the kill too.
    #[arg(long)]
    tls: bool,
}

/// The demo file's URL at `ip`, and curl's extra arguments for it.
fn demo_url(lab: &lab::Lab, ip: &str) -> (String, Vec<String>) {
    if lab.state.tls {
        let ca = crate::tls::ca_path(&lab.state.state_dir);
        (
            format!("https://{ip}/static/{DEMO_FILE}"),
            vec!["--cacert".to_owned(), ca.to_string_lossy().into_owned()],
        )
    } else {
        (
            format!("http://{ip}:{}/static/{DEMO_FILE}", lab::SERVICE_PORT),
            Vec::new(),
        )
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C / SIGTERM only set a flag, so the demo can still take the lab down.
fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Takes the lab down when dropped: on success, error, Ctrl-C or panic.
struct LabGuard {
    prefix: String,
    keep: bool,
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "demo: lab {} left up (`hotpair lab down --prefix {}` removes it)",
                self.prefix, self.prefix
            );
            return;
        }
        eprintln!("demo: taking lab {} down", self.prefix);
        if let Err(e) = lab::down(&self.prefix) {
            eprintln!("demo: lab down failed: {e:#}");
        }
    }
}

pub fn run(args: DemoArgs) -> Result<()> {
    // A bad --kill is refused before any lab is built.
    let victim = Victim::parse(args.mode, args.kill.as_deref())?;
    install_signal_handlers();
    let guard = LabGuard {
        prefix: args.prefix.clone(),
        keep: args.keep,
    };
    let result = demo(&args, &victim);
    drop(guard);
    if interrupted() {
        eprintln!("demo: interrupted");
        std::process::exit(130);
    }
    match result {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            println!("FAIL: the demo could not run (error below)");
            Err(e)
        }
    }
}

/// One download in flight: curl writes to a file in the state dir and a
/// thread samples its size every 10 ms, so the progress shown and the stall
/// measured are what the client saw, not our hashing speed.
struct Download {
    ip: String,
    url: String,
    file: PathBuf,
    child: Child,
    sampler: Option<Sampler>,
    status: Option<ExitStatus>,
    resumed_shown: bool,
}

impl Download {
    fn start(lab: &lab::Lab, ip: &str, start: Instant) -> Result<Download> {
        let (url, tls_args) = demo_url(lab, ip);
        let file = lab.state_dir().join(format!("demo-download-{ip}.bin"));
        let _ = std::fs::remove_file(&file);
        let child = lab
            .command_in("client", "curl")
            .args([
                "-sS",
                "--fail",
                "--max-time",
                "120",
                // Give up on a download that makes no progress for 20 s.
                "--speed-limit",
                "1",
                "--speed-time",
                "20",
                "--limit-rate",
                RATE_LIMIT,
                "-o",
            ])
            .arg(&file)
            .args(&tls_args)
            .arg(&url)
            .stdin(Stdio::null())
            .spawn()
            .context("running curl in the client namespace")?;
        let sampler = Sampler::start(file.clone(), start, SAMPLE_EVERY);
        Ok(Download {
            ip: ip.to_owned(),
            url,
            file,
            child,
            sampler: Some(sampler),
            status: None,
            resumed_shown: false,
        })
    }

    fn latest(&self) -> u64 {
        self.sampler.as_ref().map_or(0, Sampler::latest)
    }

    /// Whether curl has exited (recording its status).
    fn poll(&mut self) -> Result<bool> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status.is_some())
    }

    fn abort(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the demo; Ok(true) on PASS, Ok(false) when a download did not
/// survive the kill intact.
fn demo(args: &DemoArgs, victim: &Victim) -> Result<bool> {
    let prefix = args.prefix.as_str();
    let mut opts = lab::LabOptions::new(prefix);
    opts.mode = match args.mode {
        DemoMode::Duplex => lab::Mode::Duplex,
        DemoMode::DualRole => lab::Mode::DualRole,
    };
    opts.repl_net = args.repl_net;
    opts.heartbeat_timeout_ms = args.heartbeat_timeout_ms;
    opts.wait = Duration::from_secs(30);
    opts.tls = args.tls;
    match args.mode {
        DemoMode::Duplex => println!(
            "== hotpair demo: one client, two nodes (duplex, replication link on the {} network) \
             in lab `{prefix}`",
            args.repl_net
        ),
        DemoMode::DualRole => println!(
            "== hotpair demo: one client, two nodes, two addresses (dual-role, replication link \
             on the {} network) in lab `{prefix}`",
            args.repl_net
        ),
    }
    let lab = lab::up(&opts)?;
    if interrupted() {
        bail!("interrupted");
    }
    for n in &lab.state.nodes {
        let what = match n.role.as_str() {
            "primary" => "primary, runs the application and sends the replies".to_owned(),
            "owner" => "owner, owns 10.77.0.10 and keeps shadow connections".to_owned(),
            _ => lab
                .state
                .service_addresses()
                .iter()
                .filter_map(|a| {
                    if a.owner == n.name {
                        Some(format!("owns {} (keeps its shadows)", a.ip))
                    } else if a.primary.as_deref() == Some(n.name.as_str()) {
                        Some(format!("primary for {}", a.ip))
                    } else {
                        None
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        println!(
            "   node {} pid {}: {what} (mac {})",
            n.name,
            n.process.map_or("-".to_owned(), |p| p.pid.to_string()),
            n.mac
        );
    }

    let source = lab.docroot().join(DEMO_FILE);
    let expected_len = std::fs::metadata(&source)
        .with_context(|| format!("stat {}", source.display()))?
        .len();
    let ips: Vec<String> = lab
        .state
        .service_addresses()
        .into_iter()
        .map(|a| a.ip)
        .collect();
    let urls: Vec<String> = ips.iter().map(|ip| demo_url(&lab, ip).0).collect();
    println!(
        "== downloading {} ({:.1} MiB{}, curl --limit-rate {RATE_LIMIT}) from {}; \
         {} ({}) will be SIGKILLed at {:.0} MiB",
        urls.join(" and "),
        mib(expected_len),
        if urls.len() > 1 { " each, at once" } else { "" },
        lab.client_namespace(),
        victim.node,
        victim.role,
        mib(KILL_AT_BYTES)
    );

    let start = Instant::now();
    let mut downloads = Vec::new();
    for ip in &ips {
        match Download::start(&lab, ip, start) {
            Ok(d) => downloads.push(d),
            Err(e) => {
                downloads.iter_mut().for_each(Download::abort);
                return Err(e);
            }
        }
    }
    let total_len = expected_len * downloads.len() as u64;
    let got_all = |ds: &[Download]| ds.iter().map(Download::latest).sum::<u64>();
    let mut progress = Progress::new(total_len);
    let mut kill_at: Option<Duration> = None;
    loop {
        if interrupted() {
            downloads.iter_mut().for_each(Download::abort);
            bail!("interrupted");
        }
        let got = got_all(&downloads);
        let elapsed = start.elapsed();
        progress.update(got, elapsed);
        let all_far_enough = downloads.iter().all(|d| d.latest() >= KILL_AT_BYTES);
        if kill_at.is_none() && (all_far_enough || elapsed >= KILL_AT_LATEST) {
            progress.finish(got, elapsed);
            let t = start.elapsed();
            let killed = lab::kill_node(prefix, victim.node)?;
            kill_at = Some(t);
            println!(
                "== {:.1} MiB received after {:.2} s: SIGKILL {} ({}, pid {}){}",
                mib(got),
                t.as_secs_f64(),
                victim.node,
                victim.role,
                killed.pid.map_or("-".to_owned(), |p| p.to_string()),
                if killed.was_alive {
                    ""
                } else {
                    " -- it was already dead!"
                }
            );
            println!(
                "   the download{} go{} on from {}; watching for the client to notice",
                if downloads.len() > 1 { "s" } else { "" },
                if downloads.len() > 1 { "" } else { "es" },
                victim.survivor
            );
        }
        let several = downloads.len() > 1;
        let mut all_done = true;
        for d in &mut downloads {
            let done = d.poll()?;
            all_done &= done;
            let (Some(k), false, Some(sampler)) = (kill_at, d.resumed_shown, &d.sampler) else {
                continue;
            };
            // Growth as curl exits is its last buffer reaching the file, not a resumption.
            if let (Some((gap, at)), false) = (sampler.pause_ended_after(k, NOTABLE_PAUSE), done) {
                d.resumed_shown = true;
                progress.finish(got, start.elapsed());
                println!(
                    "   bytes flowing again{} after a {:.0} ms pause ({:.0} ms after the kill)",
                    if several {
                        format!(" from {}", d.ip)
                    } else {
                        String::new()
                    },
                    ms(gap),
                    ms(at.saturating_sub(k))
                );
            }
        }
        if all_done {
            break;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    let elapsed = start.elapsed();
    let expected = sha256_file(&source)?;
    let survivor_alive = lab
        .state
        .nodes
        .iter()
        .find(|n| n.name == victim.survivor)
        .and_then(|n| n.process)
        .is_some_and(|p| p.alive());

    let several = downloads.len() > 1;
    let mut failures = Vec::new();
    let samples: Vec<_> = downloads
        .iter_mut()
        .map(|d| d.sampler.take().map(Sampler::finish).unwrap_or_default())
        .collect();
    let sizes: Vec<u64> = downloads
        .iter()
        .map(|d| std::fs::metadata(&d.file).map_or(0, |m| m.len()))
        .collect();
    progress.finish(sizes.iter().sum(), elapsed);
    for ((d, samples), got) in downloads.iter().zip(samples).zip(sizes) {
        if interrupted() {
            bail!("interrupted");
        }
        let received = if got > 0 {
            sha256_file(&d.file)?
        } else {
            "-".to_owned()
        };
        let _ = std::fs::remove_file(&d.file);
        let status = d.status.context("curl status")?;
        let tag = if several {
            format!(" from {}", d.ip)
        } else {
            String::new()
        };
        let stag = if several {
            format!(" ({})", d.ip)
        } else {
            String::new()
        };
        println!(
            "   received {got} bytes{tag} in {:.2} s ({:.1} MiB/s), curl {status}",
            elapsed.as_secs_f64(),
            mib(got) / elapsed.as_secs_f64().max(1e-6)
        );
        println!("   sha256 received{stag}: {received}");
        if !several {
            println!("   sha256 expected: {expected}  ({})", source.display());
        }
        if let (Some(k), true) = (kill_at, status.success()) {
            let s = hotpair::stall::measure(&samples, k, elapsed, got == expected_len);
            println!(
                "   client-visible stall{stag}: {:.0} ms (longest time without a new byte from \
                 the kill on; before the kill the longest was {:.0} ms)",
                ms(s.after_kill),
                ms(s.before_kill)
            );
        }
        if !status.success() {
            failures.push(format!("curl failed for {} ({status})", d.url));
        } else if got != expected_len {
            failures.push(format!(
                "received {got} bytes{tag}, expected {expected_len}"
            ));
        } else if received != expected {
            failures.push(format!("content{tag} differs"));
        }
    }
    if several {
        println!("   sha256 expected: {expected}  ({})", source.display());
    }
    println!(
        "   survivor {}: {}",
        victim.survivor,
        if survivor_alive { "alive" } else { "DEAD" }
    );
    if kill_at.is_none() {
        failures.insert(
            0,
            "the download finished before the kill; nothing was shown".to_owned(),
        );
    }
    if !survivor_alive {
        failures.push(format!("the survivor {} died too", victim.survivor));
    }
    let pass = failures.is_empty();
    if pass {
        println!(
            "PASS: {DEMO_FILE} arrived byte for byte{} although {} ({}) was killed mid-reply",
            if several {
                format!(" from all {} addresses", downloads.len())
            } else {
                String::new()
            },
            victim.node,
            victim.role
        );
    } else {
        println!("FAIL: {}", failures.join("; "));
        for n in &lab.state.nodes {
            println!(
                "   tail of {} (removed with the lab unless --keep):\n{}",
                n.log.display(),
                lab::tail(&n.log, 15)
            );
        }
    }
    Ok(pass)
}

struct Progress {
    total: u64,
    tty: bool,
    last: Option<Instant>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            total,
            tty: io::stderr().is_terminal(),
            last: None,
        }
    }

    fn line(&self, got: u64, elapsed: Duration) -> String {
        let pct = if self.total > 0 {
            got as f64 * 100.0 / self.total as f64
        } else {
            0.0
        };
        format!(
            "   {:>6.1} / {:.1} MiB  {:>5.1}%  {:>7.1} MiB/s  {:>6.2} s",
            mib(got),
            mib(self.total),
            pct,
            mib(got) / elapsed.as_secs_f64().max(1e-6),
            elapsed.as_secs_f64()
        )
    }

    fn update(&mut self, got: u64, elapsed: Duration) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_millis(500)
        };
        let now = Instant::now();
        if self.last.is_some_and(|t| now - t < every) {
            return;
        }
        self.last = Some(now);
        let line = self.line(got, elapsed);
        let mut err = io::stderr();
        if self.tty {
            let _ = write!(err, "\r{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
    }

    fn finish(&mut self, got: u64, elapsed: Duration) {
        let line = self.line(got, elapsed);
        let mut err = io::stderr();
        if self.tty {
            let _ = writeln!(err, "\r{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        self.last = Some(Instant::now());
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut f, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn victims() {
        let v = Victim::parse(DemoMode::Duplex, None).unwrap();
        assert_eq!((v.node, v.survivor, v.role), ("n1", "n2", "primary"));
        let v = Victim::parse(DemoMode::Duplex, Some("owner")).unwrap();
        assert_eq!((v.node, v.survivor, v.role), ("n2", "n1", "owner"));
        assert_eq!(
            Victim::parse(DemoMode::Duplex, Some("n2")).unwrap(),
            Victim::parse(DemoMode::Duplex, Some("owner")).unwrap()
        );
        let v = Victim::parse(DemoMode::DualRole, None).unwrap();
        assert_eq!((v.node, v.survivor), ("n1", "n2"));
        let v = Victim::parse(DemoMode::DualRole, Some("n2")).unwrap();
        assert_eq!((v.node, v.survivor), ("n2", "n1"));
        // In dual-role every node is both: "primary" names no one node.
        let e = Victim::parse(DemoMode::DualRole, Some("primary")).unwrap_err();
        assert!(e.to_string().contains("n1"), "{e}");
        assert!(Victim::parse(DemoMode::Duplex, Some("n3")).is_err());
    }
}
