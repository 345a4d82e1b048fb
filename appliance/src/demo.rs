//! `hotpair demo`: the failover demo. Brings a duplex lab up (n1 primary, n2
//! ingress), starts a rate-limited download of the 50 MB file from the client
//! namespace, SIGKILLs one node while the reply is in flight, lets the
//! download finish from the survivor, checks it byte for byte (SHA-256) and
//! reports the client-visible stall. The lab goes down on every path.

use hotpair::stall::Sampler;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::lab;

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

/// The node the demo kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Victim {
    /// n1: runs the application and sends the replies.
    Primary,
    /// n2: owns the service address, forwards client frames, keeps shadows.
    Ingress,
}

impl Victim {
    fn node(self) -> &'static str {
        match self {
            Victim::Primary => "n1",
            Victim::Ingress => "n2",
        }
    }

    fn survivor(self) -> &'static str {
        match self {
            Victim::Primary => "n2",
            Victim::Ingress => "n1",
        }
    }

    fn role(self) -> &'static str {
        match self {
            Victim::Primary => "primary",
            Victim::Ingress => "ingress",
        }
    }
}

const DEMO_AFTER_HELP: &str = "\
The failover demo: brings up a duplex lab (n1 primary, n2 ingress; see
`hotpair lab --help`), downloads /static/50m.bin from the client namespace with
`curl --limit-rate 20M`, SIGKILLs the chosen node once 20 MiB have arrived,
and lets the survivor finish the download. PASS when curl exits 0 and the
file's SHA-256 matches the docroot's. Also prints the client-visible stall:
the longest time, from the kill on, that the downloaded file did not grow
(sampled every 10 ms). The lab is taken down on every path (unless --keep);
the exit code is non-zero on FAIL.";

#[derive(clap::Args)]
#[command(after_help = DEMO_AFTER_HELP)]
pub struct DemoArgs {
    /// Lab name prefix used by the demo (see `hotpair lab --help`).
    #[arg(long, default_value = "hpdemo")]
    prefix: String,
    /// Which node to SIGKILL mid-download: `primary` (n1, sends the replies)
    /// or `ingress` (n2, owns the service address).
    #[arg(long, value_enum, default_value = "primary")]
    kill: Victim,
    /// Where the replication link runs (see `hotpair lab up --help`).
    #[arg(long, value_enum, default_value = "shared")]
    repl_net: lab::ReplNet,
    /// `[replication] heartbeat_timeout_ms` of the nodes.
    #[arg(long, default_value_t = lab::DEFAULT_HEARTBEAT_TIMEOUT_MS)]
    heartbeat_timeout_ms: u64,
    /// Leave the lab up afterwards (remove it with `hotpair lab down --prefix PREFIX`).
    #[arg(long)]
    keep: bool,
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
    install_signal_handlers();
    let guard = LabGuard {
        prefix: args.prefix.clone(),
        keep: args.keep,
    };
    let result = demo(&args);
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

/// Runs the demo; Ok(true) on PASS, Ok(false) when the download did not
/// survive the kill intact.
fn demo(args: &DemoArgs) -> Result<bool> {
    let prefix = args.prefix.as_str();
    let victim = args.kill;
    let mut opts = lab::LabOptions::new(prefix);
    opts.mode = lab::Mode::Duplex;
    opts.repl_net = args.repl_net;
    opts.heartbeat_timeout_ms = args.heartbeat_timeout_ms;
    opts.wait = Duration::from_secs(30);
    println!(
        "== hotpair demo: one client, two nodes (duplex, replication link on the {} network) \
         in lab `{prefix}`",
        args.repl_net
    );
    let lab = lab::up(&opts)?;
    if interrupted() {
        bail!("interrupted");
    }
    for n in &lab.state.nodes {
        println!(
            "   node {} pid {}: {} (mac {})",
            n.name,
            n.process.map_or("-".to_owned(), |p| p.pid.to_string()),
            match n.role.as_str() {
                "primary" => "primary, runs the application and sends the replies",
                "ingress" => "ingress, owns 10.77.0.10 and keeps shadow connections",
                other => other,
            },
            n.mac
        );
    }

    let file = lab.docroot().join(DEMO_FILE);
    let expected_len = std::fs::metadata(&file)
        .with_context(|| format!("stat {}", file.display()))?
        .len();
    let url = format!(
        "http://{}:{}/static/{DEMO_FILE}",
        lab::SERVICE_ADDRESS,
        lab::SERVICE_PORT
    );
    println!(
        "== downloading {url} ({:.1} MiB, curl --limit-rate {RATE_LIMIT}) from {}; \
         {} ({}) will be SIGKILLed at {:.0} MiB",
        mib(expected_len),
        lab.client_namespace(),
        victim.node(),
        victim.role(),
        mib(KILL_AT_BYTES)
    );

    // curl writes to a file in the state dir and a thread samples its size
    // every 10 ms: the progress shown and the stall measured are what the
    // client saw, not our hashing speed.
    let download = lab.state_dir().join("demo-download.bin");
    let _ = std::fs::remove_file(&download);
    let mut child = lab
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
        .arg(&download)
        .arg(&url)
        .stdin(Stdio::null())
        .spawn()
        .context("running curl in the client namespace")?;
    let start = Instant::now();
    let sampler = Sampler::start(download.clone(), start, SAMPLE_EVERY);
    let mut progress = Progress::new(expected_len);
    let mut kill_at: Option<Duration> = None;
    let mut resumed_shown = false;
    let status = loop {
        if interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            sampler.finish();
            bail!("interrupted");
        }
        let got = sampler.latest();
        let elapsed = start.elapsed();
        progress.update(got, elapsed);
        if kill_at.is_none() && (got >= KILL_AT_BYTES || elapsed >= KILL_AT_LATEST) {
            progress.finish(got, elapsed);
            let t = start.elapsed();
            let killed = lab::kill_node(prefix, victim.node())?;
            kill_at = Some(t);
            println!(
                "== {:.1} MiB received after {:.2} s: SIGKILL {} ({}, pid {}){}",
                mib(got),
                t.as_secs_f64(),
                victim.node(),
                victim.role(),
                killed.pid.map_or("-".to_owned(), |p| p.to_string()),
                if killed.was_alive {
                    ""
                } else {
                    " -- it was already dead!"
                }
            );
            println!(
                "   the download goes on from {}; watching for the client to notice",
                victim.survivor()
            );
        }
        if let (Some(k), false) = (kill_at, resumed_shown) {
            let pause = sampler.pause_ended_after(k, NOTABLE_PAUSE);
            // Growth as curl exits is its last buffer reaching the file, not a resumption.
            if let (Some((gap, at)), None) = (pause, child.try_wait()?) {
                resumed_shown = true;
                progress.finish(sampler.latest(), start.elapsed());
                println!(
                    "   bytes flowing again after a {:.0} ms pause ({:.0} ms after the kill)",
                    ms(gap),
                    ms(at.saturating_sub(k))
                );
            }
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(SAMPLE_EVERY);
    };
    let elapsed = start.elapsed();
    let samples = sampler.finish();
    let got = std::fs::metadata(&download).map_or(0, |m| m.len());
    progress.finish(got, elapsed);
    if interrupted() {
        bail!("interrupted");
    }
    let received = if got > 0 {
        sha256_file(&download)?
    } else {
        "-".to_owned()
    };
    let _ = std::fs::remove_file(&download);
    let expected = sha256_file(&file)?;
    let survivor_alive = lab
        .state
        .nodes
        .iter()
        .find(|n| n.name == victim.survivor())
        .and_then(|n| n.process)
        .is_some_and(|p| p.alive());

    println!(
        "   received {got} bytes in {:.2} s ({:.1} MiB/s), curl {status}",
        elapsed.as_secs_f64(),
        mib(got) / elapsed.as_secs_f64().max(1e-6)
    );
    println!("   sha256 received: {received}");
    println!("   sha256 expected: {expected}  ({})", file.display());
    println!(
        "   survivor {}: {}",
        victim.survivor(),
        if survivor_alive { "alive" } else { "DEAD" }
    );
    if let (Some(k), true) = (kill_at, status.success()) {
        let s = hotpair::stall::measure(&samples, k, elapsed, got == expected_len);
        println!(
            "   client-visible stall: {:.0} ms (longest time without a new byte from the \
             kill on; before the kill the longest was {:.0} ms)",
            ms(s.after_kill),
            ms(s.before_kill)
        );
    }
    let pass = status.success()
        && got == expected_len
        && received == expected
        && kill_at.is_some()
        && survivor_alive;
    if pass {
        println!(
            "PASS: {DEMO_FILE} arrived byte for byte although {} ({}) was killed mid-reply",
            victim.node(),
            victim.role()
        );
    } else {
        println!(
            "FAIL: {}",
            if kill_at.is_none() {
                "the download finished before the kill; nothing was shown".to_owned()
            } else if !status.success() {
                format!("curl failed ({status})")
            } else if got != expected_len {
                format!("received {got} bytes, expected {expected_len}")
            } else if received != expected {
                "content differs".to_owned()
            } else {
                format!("the survivor {} died too", victim.survivor())
            }
        );
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
