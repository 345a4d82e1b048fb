//! The lab's generated document root: deterministic pseudo-random files.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// (file name, size in bytes) of the generated binary files.
pub const FILES: &[(&str, u64)] = &[
    ("1k.bin", 1024),
    ("5k.bin", 5 * 1024),
    ("50k.bin", 50 * 1024),
    ("50m.bin", 50 * 1024 * 1024),
];

pub const INDEX_HTML: &str = "<!doctype html>\n<html><head><title>hotpair lab</title></head>\n\
<body><h1>hotpair lab</h1><p>Served by a hotpair node.</p>\n\
<ul><li><a href=\"1k.bin\">1k.bin</a></li><li><a href=\"5k.bin\">5k.bin</a></li>\
<li><a href=\"50k.bin\">50k.bin</a></li><li><a href=\"50m.bin\">50m.bin</a></li></ul>\n\
</body></html>\n";

/// Creates `dir` with the lab files; files already present with the right
/// size (and, for index.html, content) are kept as they are. Returns how
/// many files were (re)written.
pub fn generate(dir: &Path) -> Result<usize> {
    let mut written = 0;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for &(name, size) in FILES {
        let path = dir.join(name);
        if fs::metadata(&path)
            .map(|m| m.len() == size)
            .unwrap_or(false)
        {
            continue;
        }
        write_file(&path, seed_of(name), size)
            .with_context(|| format!("writing {}", path.display()))?;
        written += 1;
    }
    let index = dir.join("index.html");
    if fs::read(&index).ok().as_deref() != Some(INDEX_HTML.as_bytes()) {
        fs::write(&index, INDEX_HTML).with_context(|| format!("writing {}", index.display()))?;
        written += 1;
    }
    Ok(written)
}

/// FNV-1a of the name, never zero (xorshift must not start at zero).
fn seed_of(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

/// Writes `size` bytes of xorshift64* output to `path` (via a temporary file,
/// so a crash never leaves a short file with the final name).
fn write_file(path: &Path, seed: u64, size: u64) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let mut state = seed;
        let mut buf = vec![0u8; 1 << 16];
        let mut left = size;
        while left > 0 {
            for chunk in buf.chunks_exact_mut(8) {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let v = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
                chunk.copy_from_slice(&v.to_le_bytes());
            }
            let n = left.min(buf.len() as u64) as usize;
            w.write_all(&buf[..n])?;
            left -= n as u64;
        }
        w.flush()?;
    }
    fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sized() {
        let dir = std::env::temp_dir().join(format!("hotpair-docroot-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(generate(&dir).unwrap(), 5);
        assert_eq!(generate(&dir).unwrap(), 0);
        let first = fs::read(dir.join("5k.bin")).unwrap();
        assert_eq!(first.len(), 5120);
        fs::remove_file(dir.join("5k.bin")).unwrap();
        fs::write(dir.join("1k.bin"), b"short").unwrap();
        generate(&dir).unwrap();
        assert_eq!(fs::read(dir.join("5k.bin")).unwrap(), first);
        assert_eq!(fs::metadata(dir.join("1k.bin")).unwrap().len(), 1024);
        assert_eq!(fs::metadata(dir.join("50m.bin")).unwrap().len(), 50 << 20);
        assert_ne!(fs::read(dir.join("1k.bin")).unwrap()[..], first[..1024]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
