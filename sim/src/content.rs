//! What the nodes serve: a document root the simulation writes once per
//! process with deterministic content, loaded into a `Files` handler that
//! every node of every run shares (its bodies are reference-counted).

use std::path::PathBuf;
use std::sync::OnceLock;

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
