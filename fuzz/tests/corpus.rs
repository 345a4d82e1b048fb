//! Deterministic replay of the fuzz targets, for `cargo test`:
//! every committed corpus input (`corpus/<target>/`) and every fixed crash
//! (`crashes/<target>/`) through the same harness the fuzzer runs, then a
//! few hundred pseudo-random inputs from a fixed seed (`FUZZ_RANDOM=<n>`
//! for more).
//!
//! `FUZZ_REPLAY_DIR=<dir>` replays the files of one more directory (e.g. an
//! AFL++ queue or crashes directory) through the target named by
//! `FUZZ_REPLAY_TARGET`.

use std::path::{Path, PathBuf};

type Harness = fn(&[u8]);

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory").path())
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != "README.md"))
        .collect();
    v.sort();
    v
}

/// A small deterministic generator (xorshift64*).
fn random_inputs(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..count)
        .map(|_| {
            let len = (next() % 600) as usize;
            (0..len).map(|_| next() as u8).collect()
        })
        .collect()
}

fn replay(target: &str, harness: Harness) {
    let mut n = 0;
    for kind in ["corpus", "crashes"] {
        for f in files(&dir(kind, target)) {
            let data = std::fs::read(&f).expect("readable input");
            // Name the input if it fails.
            let r = std::panic::catch_unwind(|| harness(&data));
            assert!(r.is_ok(), "{target}: {} failed", f.display());
            n += 1;
        }
    }
    if std::env::var("FUZZ_REPLAY_TARGET").as_deref() == Ok(target) {
        if let Ok(extra) = std::env::var("FUZZ_REPLAY_DIR") {
            for f in files(Path::new(&extra)) {
                let data = std::fs::read(&f).expect("readable input");
                let r = std::panic::catch_unwind(|| harness(&data));
                assert!(r.is_ok(), "{target}: {} failed", f.display());
                n += 1;
            }
        }
    }
    assert!(n > 0, "{target}: no corpus committed");
    let count = std::env::var("FUZZ_RANDOM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for (i, data) in random_inputs(0x5eed ^ target.len() as u64, count)
        .iter()
        .enumerate()
    {
        let r = std::panic::catch_unwind(|| harness(data));
        if r.is_err() {
            let out = std::env::temp_dir().join(format!("hotpair-fuzz-{target}-{i}.bin"));
            let _ = std::fs::write(&out, data);
            panic!(
                "{target}: random input #{i} failed; saved as {}",
                out.display()
            );
        }
    }
    println!("{target}: {n} corpus inputs and {count} random inputs replayed");
}

#[test]
fn http_conn() {
    replay("http_conn", hotpair_fuzz::http_conn::run);
}

#[test]
fn wire() {
    replay("wire", hotpair_fuzz::wire::run);
}

#[test]
fn engine() {
    replay("engine", hotpair_fuzz::engine::run);
}

#[test]
fn tls_record() {
    replay("tls_record", hotpair_fuzz::tls_record::run);
}

#[test]
fn tls_unit() {
    replay("tls_unit", hotpair_fuzz::tls_unit::run);
}

/// The committed seeds of `tls_unit` are the units the generator makes
/// (`cargo run --example tls_unit_seeds` writes them again).
#[test]
fn tls_unit_seeds_are_current() {
    for (name, data) in hotpair_fuzz::tls_unit::seeds() {
        let f = dir("corpus", "tls_unit").join(format!("seed-{name}"));
        let committed = std::fs::read(&f).unwrap_or_default();
        assert!(
            committed == data,
            "{} is not what the generator makes",
            f.display()
        );
    }
}

#[test]
fn replica() {
    replay("replica", hotpair_fuzz::replica::run);
}
