//! `hotpair demo`: bring a lab up, download the 50 MB file from the client
//! namespace, check it byte for byte (SHA-256), bring the lab down.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::lab;

const DEMO_FILE: &str = "50m.bin";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Lab name prefix used by the demo (see `hotpair lab --help`).
    #[arg(long, default_value = "hpdemo")]
    prefix: String,
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
    let result = demo(&args.prefix);
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

/// Runs the demo; Ok(true) on PASS, Ok(false) on a checksum mismatch.
fn demo(prefix: &str) -> Result<bool> {
    let mut opts = lab::LabOptions::new(prefix);
    opts.wait = Duration::from_secs(15);
    println!("== hotpair demo: one client, one node (simplex) in lab `{prefix}`");
    let lab = lab::up(&opts)?;
    if interrupted() {
        bail!("interrupted");
    }
    for (name, pid) in lab.node_pids() {
        println!(
            "   node {name} pid {}",
            pid.map_or("-".to_owned(), |p| p.to_string())
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
        "== downloading {url} ({:.1} MiB) from {}",
        mib(expected_len),
        lab.client_namespace()
    );

    // curl writes to a file in the state dir and we watch its size, so the
    // throughput shown is the network's, not our hashing speed.
    let download = lab.state_dir().join("demo-download.bin");
    let _ = std::fs::remove_file(&download);
    let mut child = lab
        .command_in("client", "curl")
        .args(["-sS", "--fail", "--max-time", "300", "-o"])
        .arg(&download)
        .arg(&url)
        .stdin(Stdio::null())
        .spawn()
        .context("running curl in the client namespace")?;
    let start = Instant::now();
    let mut progress = Progress::new(expected_len);
    let status = loop {
        if interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("interrupted");
        }
        let got = std::fs::metadata(&download).map_or(0, |m| m.len());
        progress.update(got, start.elapsed());
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
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

    println!(
        "   received {got} bytes in {:.2} s ({:.1} MiB/s), curl {status}",
        elapsed.as_secs_f64(),
        mib(got) / elapsed.as_secs_f64().max(1e-6)
    );
    println!("   sha256 received: {received}");
    println!("   sha256 expected: {expected}  ({})", file.display());
    let pass = status.success() && got == expected_len && received == expected;
    if pass {
        println!("PASS: the client received {DEMO_FILE} byte for byte");
    } else {
        println!(
            "FAIL: {}",
            if !status.success() {
                format!("curl failed ({status})")
            } else if got != expected_len {
                format!("received {got} bytes, expected {expected_len}")
            } else {
                "content differs".to_owned()
            }
        );
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
            "   {:>6.1} / {:.1} MiB  {:>5.1}%  {:>7.1} MiB/s",
            mib(got),
            mib(self.total),
            pct,
            mib(got) / elapsed.as_secs_f64().max(1e-6)
        )
    }

    fn update(&mut self, got: u64, elapsed: Duration) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
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
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(path: &std::path::Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut f, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}
