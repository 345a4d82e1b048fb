//! The `files` handler: a document root loaded into memory at start.
//!
//! Replies are deterministic (byte-identical on every node): no `Date`, no
//! `Last-Modified`; the `ETag` is derived from the content only. Bodies are
//! shared [`Bytes`], so serving a file never copies it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::{Method, Request, Response};

/// Default bound on the bytes [`Files::load`] reads (1 GiB).
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 1 << 30;
/// Deepest directory nesting followed while loading.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: loading it would exceed the document root limit of {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}: not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{}: directories nested deeper than {MAX_DEPTH}", path.display())]
    TooDeep { path: PathBuf },
}

#[derive(Debug, Clone)]
struct Entry {
    body: Bytes,
    etag: String,
    /// SHA-256 of `body`, computed once at load.
    sha256: [u8; 32],
    content_type: &'static str,
}

/// An in-memory document root served under a URL prefix.
#[derive(Debug, Clone)]
pub struct Files {
    /// URL prefix without trailing `/` (`""` for the root, else `/static`).
    prefix: String,
    /// Relative path (`a.txt`, `sub/b.html`) → file.
    files: BTreeMap<String, Entry>,
    /// Relative paths of directories (`""` is the root).
    dirs: BTreeSet<String>,
    total: u64,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Files {
    /// Load `dir` recursively, bounded by [`DEFAULT_MAX_TOTAL_BYTES`].
    pub fn load(dir: &Path, url_prefix: &str) -> Result<Files, FilesError> {
        Self::load_with_limit(dir, url_prefix, DEFAULT_MAX_TOTAL_BYTES)
    }

    /// Load `dir` recursively; fail (naming the file) if the files would
    /// total more than `max_total_bytes`. Symbolic links are followed
    /// (directory loops are skipped, nesting is bounded by [`MAX_DEPTH`]);
    /// dangling links, special files and names that are not UTF-8 are
    /// skipped with a warning.
    pub fn load_with_limit(
        dir: &Path,
        url_prefix: &str,
        max_total_bytes: u64,
    ) -> Result<Files, FilesError> {
        let meta = fs::metadata(dir).map_err(io_err(dir))?;
        if !meta.is_dir() {
            return Err(FilesError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        let mut files = Files {
            prefix: normalize_prefix(url_prefix),
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            total: 0,
        };
        let root = fs::canonicalize(dir).map_err(io_err(dir))?;
        let mut ancestors = vec![root];
        files.load_dir(dir, String::new(), &mut ancestors, max_total_bytes)?;
        Ok(files)
    }

    fn load_dir(
        &mut self,
        dir: &Path,
        rel: String,
        ancestors: &mut Vec<PathBuf>,
        limit: u64,
    ) -> Result<(), FilesError> {
        if ancestors.len() > MAX_DEPTH {
            return Err(FilesError::TooDeep {
                path: dir.to_path_buf(),
            });
        }
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            entries.push(entry.map_err(io_err(dir))?.path());
        }
        entries.sort();
        self.dirs.insert(rel.clone());
        for path in entries {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                tracing::warn!(path = %path.display(), "skipping file whose name is not UTF-8");
                continue;
            };
            let child_rel = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(path = %path.display(), "skipping dangling symbolic link");
                    continue;
                }
                Err(e) => return Err(io_err(&path)(e)),
            };
            if meta.is_dir() {
                let canonical = fs::canonicalize(&path).map_err(io_err(&path))?;
                if ancestors.contains(&canonical) {
                    tracing::warn!(path = %path.display(), "skipping directory loop");
                    continue;
                }
                ancestors.push(canonical);
                self.load_dir(&path, child_rel, ancestors, limit)?;
                ancestors.pop();
            } else if meta.is_file() {
                let room = limit.saturating_sub(self.total);
                let too_large = || FilesError::TooLarge {
                    path: path.clone(),
                    limit,
                };
                if meta.len() > room {
                    return Err(too_large());
                }
                let mut content = Vec::new();
                fs::File::open(&path)
                    .and_then(|f| f.take(room.saturating_add(1)).read_to_end(&mut content))
                    .map_err(io_err(&path))?;
                if content.len() as u64 > room {
                    return Err(too_large());
                }
                self.total += content.len() as u64;
                let sha256: [u8; 32] = Sha256::digest(&content).into();
                self.files.insert(
                    child_rel,
                    Entry {
                        body: Bytes::from(content),
                        etag: etag_of(&sha256),
                        sha256,
                        content_type: content_type(name),
                    },
                );
            } else {
                tracing::warn!(path = %path.display(), "skipping special file");
            }
        }
        Ok(())
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Bytes held (sum of file sizes).
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// SHA-256 over every file's path and content, in path order: two
    /// nodes whose digests agree serve byte-identical replies from this
    /// root (the precondition of the `static` policy).
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.prefix.as_bytes());
        h.update([0]);
        // Each body's own SHA-256 was taken at load: no second pass over
        // the content.
        for (path, e) in &self.files {
            h.update((path.len() as u64).to_be_bytes());
            h.update(path.as_bytes());
            h.update((e.body.len() as u64).to_be_bytes());
            h.update(e.sha256);
        }
        h.finalize().into()
    }

    /// The URL prefix, without trailing `/` (`""` for `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Content of the file at `rel` (relative to the root, `/`-separated).
    pub fn get(&self, rel: &str) -> Option<&Bytes> {
        self.files.get(rel).map(|e| &e.body)
    }

    /// Serve a request (its path is expected under the prefix).
    ///
    /// GET/HEAD only (else 405 + `Allow`); 404 when absent; a directory is
    /// served by its `index.html` when the path ends in `/`, and redirected
    /// (301) to the path with a `/` appended when it does not; 304 when
    /// `If-None-Match` matches the `ETag`.
    pub fn handle(&self, req: &Request) -> Response {
        if !matches!(req.method, Method::Get | Method::Head) {
            return Response::error(405).header("Allow", "GET, HEAD");
        }
        let Some(rest) = req.path.strip_prefix(self.prefix.as_str()) else {
            return Response::error(404);
        };
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Response::error(404);
        }
        let dir_form = rest.ends_with('/');
        let rel = rest.strip_prefix('/').unwrap_or(rest);
        let rel = rel.strip_suffix('/').unwrap_or(rel);
        // Defence in depth: ServerConn never produces these, but a Request
        // may be built by hand. Lookups are in memory, so nothing outside
        // the loaded tree is reachable anyway.
        let bad_segment = !rel.is_empty()
            && rel
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..");
        if bad_segment || rel.contains(['\\', '\0']) {
            return Response::error(404);
        }
        if !dir_form {
            if let Some(entry) = self.files.get(rel) {
                return serve(entry, req);
            }
        }
        if self.dirs.contains(rel) {
            let index = if rel.is_empty() {
                "index.html".to_owned()
            } else {
                format!("{rel}/index.html")
            };
            if let Some(entry) = self.files.get(&index) {
                if dir_form {
                    return serve(entry, req);
                }
                let mut location = format!("{}/", req.path);
                if let Some(q) = &req.query {
                    location.push('?');
                    location.push_str(q);
                }
                return Response::error(301).header("Location", location);
            }
        }
        Response::error(404)
    }
}

fn serve(entry: &Entry, req: &Request) -> Response {
    if req
        .header_all("if-none-match")
        .any(|v| etag_matches(v, &entry.etag))
    {
        return Response::new(304).header("ETag", entry.etag.clone());
    }
    Response::new(200)
        .header("Content-Type", entry.content_type)
        .header("ETag", entry.etag.clone())
        .body(entry.body.clone())
}

/// `If-None-Match` uses weak comparison: `W/"x"` matches `"x"`.
fn etag_matches(header: &[u8], etag: &str) -> bool {
    let Ok(header) = std::str::from_utf8(header) else {
        return false;
    };
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

fn etag_of(digest: &[u8; 32]) -> String {
    let mut tag = String::with_capacity(18);
    tag.push('"');
    for b in &digest[..8] {
        tag.push_str(&format!("{b:02x}"));
    }
    tag.push('"');
    tag
}

/// Media type from the file name's extension.
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt" | "text") => "text/plain; charset=utf-8",
        Some("md") => "text/markdown; charset=utf-8",
        Some("csv") => "text/csv; charset=utf-8",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("avif") => "image/avif",
        Some("ico") => "image/x-icon",
        Some("pdf") => "application/pdf",
        Some("wasm") => "application/wasm",
        Some("woff") => "font/woff",
        Some("woff2") => "font/woff2",
        Some("ttf") => "font/ttf",
        Some("otf") => "font/otf",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        Some("mp3") => "audio/mpeg",
        Some("ogg") => "audio/ogg",
        Some("wav") => "audio/wav",
        Some("zip") => "application/zip",
        Some("gz") => "application/gzip",
        Some("tar") => "application/x-tar",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests;
