//! The host side of a run: the docroot files, hashes and the machine
//! description in the report.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

pub fn sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A docroot of deterministic files (name, size), and the index.html
/// `lab up` waits for.
pub(super) fn make_docroot(dir: &Path, all: Vec<(String, u64)>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for (name, size) in all {
        let mut buf = Vec::with_capacity(size as usize);
        while (buf.len() as u64) < size {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            buf.extend_from_slice(&state.to_le_bytes());
        }
        buf.truncate(size as usize);
        std::fs::write(dir.join(&name), &buf).with_context(|| format!("writing {name}"))?;
    }
    // `lab up` waits for /static/index.html to serve.
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>hotpair bench</title>\n",
    )?;
    Ok(())
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.trim().replace('\n', " ")
        })
        .unwrap_or_default()
}

pub(super) fn machine() -> Vec<(String, String)> {
    [
        ("CPU", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        ("CPUs", "nproc"),
        ("memory", "free -g | awk '/Mem:/{print $2\" GiB\"}'"),
        ("kernel", "uname -r"),
        ("load average at start", "cut -d' ' -f1-3 /proc/loadavg"),
        ("wrk", "wrk -v 2>&1 | head -1"),
        ("nginx", "nginx -v 2>&1"),
        ("commit", "git rev-parse --short HEAD 2>/dev/null && git status --porcelain 2>/dev/null | grep -q . && echo '(dirty)'"),
    ]
    .iter()
    .map(|(k, c)| (k.to_string(), sh(c)))
    .collect()
}

pub(super) fn now_utc() -> String {
    sh("date -u '+%Y-%m-%d %H:%M:%S UTC'")
}
