//! What the nodes serve: a document root the simulation writes once per
//! process with deterministic content, loaded into a `Files` handler that
//! every node of every run shares (its bodies are reference-counted).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use hotpair_http::files::Files;
use hotpair_http::Limits;

use crate::rng::Rng;

pub const FILES_PREFIX: &str = "/static/";
pub const GENERATE_PREFIX: &str = "/non-deterministic/";
/// `generate`'s largest `?size=`.
pub const GENERATE_MAX: usize = 4 * 1024 * 1024;

/// The files under `/static/`: name and size.
pub const FILES: [(&str, usize); 3] = [
    ("1k.bin", 1024),
    ("100k.bin", 100 * 1024),
    ("2m.bin", 2 * 1024 * 1024),
];

pub struct Content {
    pub files: Files,
    pub limits: Limits,
}

/// The bytes of a file (a function of its name only).
pub fn file_bytes(name: &str, size: usize) -> Vec<u8> {
    let mut r = Rng::new(name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }));
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        v.extend_from_slice(&r.next_u64().to_le_bytes());
    }
    v.truncate(size);
    v
}

/// Another generation of the content, as an operator's edit makes it:
/// the same files, `1k.bin`'s bytes changed by `salt` (not 0). Made once
/// per process and salt (runs on other threads share it).
pub fn altered(salt: u64) -> Files {
    static MADE: Mutex<BTreeMap<u64, Files>> = Mutex::new(BTreeMap::new());
    let mut made = MADE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    made.entry(salt)
        .or_insert_with(|| {
            let dir: PathBuf = std::env::temp_dir().join(format!(
                "hotpair-sim-docroot-{}-altered-{salt}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("creating an altered document root");
            for (name, size) in FILES {
                let mut bytes = file_bytes(name, size);
                if name == "1k.bin" {
                    for (b, k) in bytes.iter_mut().zip(salt.to_le_bytes().iter().cycle()) {
                        *b ^= k;
                    }
                }
                std::fs::write(dir.join(name), bytes).expect("writing an altered document root");
            }
            let files = Files::load(&dir, FILES_PREFIX).expect("loading an altered document root");
            let _ = std::fs::remove_dir_all(&dir);
            files
        })
        .clone()
}

/// The shared content, written and loaded on first use.
pub fn get() -> &'static Content {
    static C: OnceLock<Content> = OnceLock::new();
    C.get_or_init(|| {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("hotpair-sim-docroot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the simulation's document root");
        for (name, size) in FILES {
            std::fs::write(dir.join(name), file_bytes(name, size))
                .expect("writing the simulation's document root");
        }
        let files = Files::load(&dir, FILES_PREFIX).expect("loading the document root");
        // Everything is in memory now.
        let _ = std::fs::remove_dir_all(&dir);
        Content {
            files,
            limits: Limits::default(),
        }
    })
}
