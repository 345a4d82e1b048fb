//! One download, over HTTP or HTTPS, every read timestamped: the client
//! of the HTTPS-beside-HTTP stall comparison (`tls/stall.rs`).
//!
//! curl with `--limit-rate` (the plain stall series) sleeps on its own
//! schedule, and that schedule differs between plain TCP and TLS (it reads
//! whole records), so its pauses mixed into the file-growth stall and made
//! the two schemes' figures incomparable. This client never pauses on its
//! own: it reads as fast as bytes arrive, the same loop and the same 64 KiB
//! reads for both schemes (HTTPS: rustls), so every gap between reads that
//! returned data is the network's or the server's. What is timestamped is
//! each read *of the socket* (TCP payload: ciphertext over HTTPS), not the
//! plaintext: rustls hands out a record's plaintext only once the whole
//! record (up to 16 KiB, about 11 segments) is in, so a plaintext measure
//! would charge HTTPS, and not HTTP, for the rest of the record torn by
//! the kill. It runs on a thread of the bench that has entered the
//! client's network namespace, so its timestamps and the kill's share one
//! clock.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

/// What to fetch and how.
pub struct Request {
    /// The network namespace to connect from (`ip netns` name).
    pub ns: String,
    pub addr: IpAddr,
    pub path: String,
    /// HTTPS with this CA (the certificate is checked for `addr`); None:
    /// plain HTTP on port 80.
    pub tls_ca: Option<std::path::PathBuf>,
    /// A read that waits longer than this fails the download.
    pub read_timeout: Duration,
}

/// A finished download.
pub struct Fetched {
    /// (time since the start, bytes read from the socket so far) after
    /// every socket read that returned data.
    pub samples: Vec<(Duration, u64)>,
    pub sha256: String,
    /// When the last byte arrived, since the start.
    pub end: Duration,
}

/// Starts `req` on a thread of its own; `progress` follows the bytes read
/// from the socket, times are since `start`.
pub fn spawn(
    req: Request,
    start: Instant,
    progress: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Result<Fetched>> {
    std::thread::spawn(move || {
        enter_netns(&req.ns)?;
        run(&req, start, &progress)
    })
}

/// Moves the calling thread (only it: a network namespace is per thread)
/// into `/run/netns/NAME`.
fn enter_netns(name: &str) -> Result<()> {
    let path = Path::new("/run/netns").join(name);
    let f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: setns(2) on a file descriptor we own, for this thread only.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!(
            "setns into {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn run(req: &Request, start: Instant, progress: &AtomicU64) -> Result<Fetched> {
    let port = if req.tls_ca.is_some() { 443 } else { 80 };
    let sock = TcpStream::connect_timeout(&SocketAddr::new(req.addr, port), Duration::from_secs(5))
        .with_context(|| format!("connecting to {}:{port}", req.addr))?;
    sock.set_read_timeout(Some(req.read_timeout))?;
    sock.set_nodelay(true)?;
    let wire = Timestamped {
        sock,
        start,
        progress,
        got: 0,
        samples: Vec::with_capacity(16 * 1024),
    };
    let mut stream: Box<dyn Fetch + '_> = match &req.tls_ca {
        None => Box::new(wire),
        Some(ca) => Box::new(tls_stream(wire, ca, req.addr)?),
    };
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        req.path, req.addr
    );
    stream.write_all(head.as_bytes())?;
    stream.flush()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = Vec::new();
    let length = loop {
        let n = stream.read(&mut buf).context("reading the reply's head")?;
        if n == 0 {
            bail!("the server closed before the reply's head");
        }
        pending.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&pending, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end + 4);
            // The reply has begun: what came before (the handshake, the
            // wait for the first byte) is no pause of the download.
            stream.reply_begun();
            break content_length(&head)?;
        }
        if pending.len() > 16 * 1024 {
            bail!("no end of the reply's head in 16 KiB");
        }
    };
    let mut sha = Sha256::new();
    let mut got = pending.len() as u64;
    sha.update(&pending);
    while got < length {
        let n = match stream.read(&mut buf) {
            Ok(0) => bail!("the server closed after {got} of {length} bytes"),
            Ok(n) => n,
            Err(e) => {
                return Err(e).with_context(|| format!("reading after {got} of {length} bytes"))
            }
        };
        sha.update(&buf[..n]);
        got += n as u64;
    }
    if got > length {
        bail!("{got} bytes for a Content-Length of {length}");
    }
    let samples = stream.samples();
    let end = samples.last().map_or(Duration::ZERO, |s| s.0);
    Ok(Fetched {
        samples,
        sha256: format!("{:x}", sha.finalize()),
        end,
    })
}

/// The socket, each read that returned data timestamped.
struct Timestamped<'a> {
    sock: TcpStream,
    start: Instant,
    progress: &'a AtomicU64,
    got: u64,
    samples: Vec<(Duration, u64)>,
}

impl Read for Timestamped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.sock.read(buf)?;
        if n > 0 {
            self.got += n as u64;
            self.samples.push((self.start.elapsed(), self.got));
            self.progress.store(self.got, Ordering::SeqCst);
        }
        Ok(n)
    }
}

impl Write for Timestamped<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sock.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sock.flush()
    }
}

/// A download's stream (plain or TLS over [`Timestamped`]): read, write,
/// and the socket's timestamps at the end.
trait Fetch: Read + Write {
    /// The socket's timestamps so far.
    fn wire(&mut self) -> &mut Vec<(Duration, u64)>;

    fn samples(&mut self) -> Vec<(Duration, u64)> {
        std::mem::take(self.wire())
    }

    /// Keeps only the last sample: the download's first.
    fn reply_begun(&mut self) {
        let v = self.wire();
        let keep = v.len().saturating_sub(1);
        v.drain(..keep);
    }
}

impl Fetch for Timestamped<'_> {
    fn wire(&mut self) -> &mut Vec<(Duration, u64)> {
        &mut self.samples
    }
}

impl Fetch for rustls::StreamOwned<rustls::ClientConnection, Timestamped<'_>> {
    fn wire(&mut self) -> &mut Vec<(Duration, u64)> {
        &mut self.sock.samples
    }
}

fn tls_stream<'a>(
    sock: Timestamped<'a>,
    ca: &Path,
    addr: IpAddr,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, Timestamped<'a>>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(c?)?;
    }
    #[allow(deprecated)] // ring's provider: see hotpair-tls' config.rs
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::IpAddress(addr.into()))?;
    Ok(rustls::StreamOwned::new(conn, sock))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The body's length from a 200 reply's head.
fn content_length(head: &str) -> Result<u64> {
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("reply {status:?}, not 200");
    }
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                return v.trim().parse().context("Content-Length");
            }
        }
    }
    bail!("a reply without Content-Length: {head}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_of_a_200_only() {
        assert_eq!(
            content_length("HTTP/1.1 200 OK\r\nServer: x\r\ncontent-length: 52428800").unwrap(),
            52_428_800
        );
        assert!(content_length("HTTP/1.1 404 Not Found\r\nContent-Length: 9").is_err());
        assert!(content_length("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked").is_err());
    }
}
