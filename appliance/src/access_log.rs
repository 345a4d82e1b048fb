//! The access log: one line per request on the node that executed it
//! (`[log] access`). Lines are handed to a writer thread through a bounded
//! queue: a slow disk or a full one never holds up a handler, let alone the
//! stack loop; a line the queue has no room for is dropped and counted
//! (`hotpair_access_log_dropped_total`, and a warn at most every 10 s).
//!
//! Covered: requests answered by the shell — `upstream` routes and
//! `generate`. `files` replies are made inside the node core's round and
//! are not logged here.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use hotpair_http::Request;
use serde::Deserialize;

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// An absolute file path (appended to), or `-` for stdout; absent: no
    /// access log.
    #[serde(default)]
    pub access: Option<PathBuf>,
    #[serde(default)]
    pub access_format: AccessFormat,
    /// Lines waiting for the writer before new ones are dropped.
    #[serde(default = "default_queue")]
    pub access_queue: usize,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            access: None,
            access_format: AccessFormat::default(),
            access_queue: default_queue(),
        }
    }
}

/// `access_queue`'s default: a few seconds of a busy node's lines.
pub const DEFAULT_QUEUE: usize = 16_384;
const MAX_QUEUE: usize = 1_000_000;

fn default_queue() -> usize {
    DEFAULT_QUEUE
}

/// A line's form.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessFormat {
    /// Apache/nginx "combined", then `rt=` (seconds), `rid=` and `route=`.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

impl LogSection {
    /// The section's checks, each naming its key.
    pub fn check(&self) -> Result<()> {
        if let Some(p) = &self.access {
            // Run from / under systemd: a relative path would depend on
            // where the node was started.
            if p.as_os_str() != "-" && !p.is_absolute() {
                bail!("log.access: {p:?} must be an absolute path or \"-\" (stdout)");
            }
        }
        if !(1..=MAX_QUEUE).contains(&self.access_queue) {
            bail!(
                "log.access_queue: {} must be within 1..={MAX_QUEUE}",
                self.access_queue
            );
        }
        Ok(())
    }
}

/// One request, as logged.
#[derive(Debug, Clone)]
pub struct Entry {
    pub time: SystemTime,
    pub client: SocketAddr,
    pub method: &'static str,
    pub target: String,
    pub version: &'static str,
    pub host: Option<String>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    pub status: u16,
    /// Body bytes of the reply.
    pub bytes: usize,
    /// From the handler's start to its reply.
    pub duration: Duration,
    pub request_id: Option<String>,
    pub route: String,
}

impl Entry {
    /// An entry for `req`, its reply's fields not filled in yet.
    pub fn begin(req: &Request, client: SocketAddr) -> Entry {
        let text = |name: &str| {
            req.header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        Entry {
            time: SystemTime::now(),
            client,
            method: req.method.as_str(),
            target: req.target(),
            version: req.version.as_str(),
            host: text("host"),
            referer: text("referer"),
            user_agent: text("user-agent"),
            status: 0,
            bytes: 0,
            duration: Duration::ZERO,
            request_id: None,
            route: String::new(),
        }
    }
}

/// Shared between the loggers and the writer.
#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    last_warn: Mutex<Option<Instant>>,
    /// Open the file again before the next line (SIGHUP).
    reopen: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn drop_one(&self, why: &str) {
        self.drop_n(1, why);
    }

    fn drop_n(&self, count: u64, why: &str) {
        let n = self.dropped.fetch_add(count, Ordering::Relaxed) + count;
        let mut last = self.last_warn.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_none_or(|l| now.duration_since(l) >= Duration::from_secs(10)) {
            *last = Some(now);
            tracing::warn!(dropped_total = n, reason = why, "access log: lines dropped");
        }
    }
}

/// The handle handlers log through; cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: SyncSender<Entry>,
    shared: Arc<Shared>,
    /// The file, opened again on [`AccessLog::reopen`] (`None`: stdout or
    /// a writer given to [`AccessLog::start_with`]).
    path: Option<Arc<std::path::PathBuf>>,
}

impl AccessLog {
    /// The configured log's writer thread, or `None` without `[log] access`.
    pub fn start(section: &LogSection) -> Result<Option<AccessLog>> {
        let Some(path) = &section.access else {
            return Ok(None);
        };
        let out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("log.access: opening {}", path.display()))?,
            )
        };
        let path = (path.as_os_str() != "-").then(|| Arc::new(path.clone()));
        Self::start_inner(out, section.access_format, section.access_queue, path).map(Some)
    }

    /// A writer thread writing to `out`.
    pub fn start_with(
        out: Box<dyn Write + Send>,
        format: AccessFormat,
        queue: usize,
    ) -> Result<AccessLog> {
        Self::start_inner(out, format, queue, None)
    }

    fn start_inner(
        out: Box<dyn Write + Send>,
        format: AccessFormat,
        queue: usize,
        path: Option<Arc<std::path::PathBuf>>,
    ) -> Result<AccessLog> {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue);
        let shared = Arc::new(Shared::default());
        let writer_shared = shared.clone();
        let writer_path = path.clone();
        std::thread::Builder::new()
            .name("hotpair-access".into())
            .spawn(move || write_lines(rx, out, format, &writer_shared, writer_path.as_deref()))
            .context("starting the access log thread")?;
        Ok(AccessLog { tx, shared, path })
    }

    /// Open the file again before the next line (SIGHUP, after logrotate
    /// moved it away): lines go to a file of the configured name again.
    pub fn reopen(&self) {
        if self.path.is_some() {
            self.shared.reopen.store(true, Ordering::Relaxed);
        }
    }

    /// `n` lines lost before they reached this log (counted as dropped).
    pub fn note_dropped(&self, n: u64, why: &str) {
        if n > 0 {
            self.shared.drop_n(n, why);
        }
    }

    /// Queue a line; never waits.
    pub fn log(&self, e: Entry) {
        match self.tx.try_send(e) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.shared.drop_one("the writer is behind (queue full)"),
            Err(TrySendError::Disconnected(_)) => self.shared.drop_one("the writer stopped"),
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

fn write_lines(
    rx: Receiver<Entry>,
    out: Box<dyn Write + Send>,
    format: AccessFormat,
    shared: &Shared,
    path: Option<&std::path::PathBuf>,
) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut line = Vec::with_capacity(512);
    loop {
        let e = match rx.try_recv() {
            Ok(e) => e,
            Err(TryRecvError::Empty) => {
                // Flushed whenever the queue is empty: a line is in the
                // file as soon as the writer has nothing else to do.
                if let Err(e) = out.flush() {
                    shared.drop_one(&format!("writing: {e}"));
                }
                match rx.recv() {
                    Ok(e) => e,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        if let (true, Some(p)) = (shared.reopen.swap(false, Ordering::Relaxed), path) {
            let _ = out.flush();
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                Ok(f) => out = std::io::BufWriter::with_capacity(64 * 1024, Box::new(f)),
                // The old file stays open: lines still land somewhere.
                Err(e) => tracing::warn!(
                    path = %p.display(),
                    error = %e,
                    "access log: cannot reopen the file; writing on to the old one"
                ),
            }
        }
        line.clear();
        match format {
            AccessFormat::Combined => combined(&e, &mut line),
            AccessFormat::Json => json(&e, &mut line),
        }
        if let Err(err) = out.write_all(&line) {
            shared.drop_one(&format!("writing: {err}"));
        }
    }
    let _ = out.flush();
}

/// UTC calendar fields of `t`: (year, month 1-12, day, hour, min, sec, ms).
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis(),
    )
}

/// A combined-format string field: `"` and control bytes escaped as nginx
/// does (`\x22`), so a client cannot forge a line or a field.
fn field(out: &mut Vec<u8>, v: Option<&str>) {
    out.push(b'"');
    match v {
        None => out.push(b'-'),
        Some(v) => {
            for &b in v.as_bytes() {
                if b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f {
                    let _ = write!(out, "\\x{b:02X}");
                } else {
                    out.push(b);
                }
            }
        }
    }
    out.push(b'"');
}

fn combined(e: &Entry, out: &mut Vec<u8>) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = civil(e.time);
    let _ = write!(
        out,
        "{} - - [{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02} +0000] ",
        e.client.ip(),
        MONTHS[(mo - 1) as usize]
    );
    field(
        out,
        Some(&format!("{} {} {}", e.method, e.target, e.version)),
    );
    let _ = write!(out, " {} {} ", e.status, e.bytes);
    field(out, e.referer.as_deref());
    out.push(b' ');
    field(out, e.user_agent.as_deref());
    let _ = write!(out, " rt={:.3} rid=", e.duration.as_secs_f64());
    field(out, e.request_id.as_deref());
    out.extend_from_slice(b" route=");
    field(out, Some(&e.route));
    out.push(b'\n');
}

fn json(e: &Entry, out: &mut Vec<u8>) {
    let (y, mo, d, h, mi, s, ms) = civil(e.time);
    let v = serde_json::json!({
        "time": format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z"),
        "client": e.client.to_string(),
        "method": e.method,
        "target": e.target,
        "version": e.version,
        "host": e.host,
        "status": e.status,
        "bytes": e.bytes,
        "duration_ms": e.duration.as_secs_f64() * 1e3,
        "request_id": e.request_id,
        "route": e.route,
        "referer": e.referer,
        "user_agent": e.user_agent,
    });
    let _ = serde_json::to_writer(&mut *out, &v);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` the test reads back, that can also be made to block.
    #[derive(Clone, Default)]
    struct Sink {
        buf: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _held = self.gate.lock().unwrap();
            self.buf.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            let _held = self.gate.lock().unwrap();
            Ok(())
        }
    }

    fn entry() -> Entry {
        Entry {
            // 2026-12-07 03:15:25.123 UTC.
            time: UNIX_EPOCH + Duration::from_millis(1_796_613_325_123),
            client: "10.77.0.1:40000".parse().unwrap(),
            method: "GET",
            target: "/app/x?q=1".into(),
            version: "HTTP/1.1",
            host: Some("shop".into()),
            referer: None,
            user_agent: Some("curl \"evil\"\n".into()),
            status: 200,
            bytes: 5,
            duration: Duration::from_millis(12),
            request_id: Some("10.77.0.1:40000#7-0".into()),
            route: "/app/".into(),
        }
    }

    fn wait_for(sink: &Sink, lines: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = String::from_utf8(sink.buf.lock().unwrap().clone()).unwrap();
            if text.lines().count() >= lines || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn combined_line_is_escaped_and_complete() {
        let sink = Sink::default();
        let log = AccessLog::start_with(Box::new(sink.clone()), AccessFormat::Combined, 8).unwrap();
        log.log(entry());
        let text = wait_for(&sink, 1);
        assert_eq!(
            text,
            "10.77.0.1 - - [07/Dec/2026:03:15:25 +0000] \"GET /app/x?q=1 HTTP/1.1\" 200 5 \"-\" \
             \"curl \\x22evil\\x22\\x0A\" rt=0.012 rid=\"10.77.0.1:40000#7-0\" route=\"/app/\"\n"
        );
    }

    #[test]
    fn json_line_parses_back() {
        let sink = Sink::default();
        let log = AccessLog::start_with(Box::new(sink.clone()), AccessFormat::Json, 8).unwrap();
        log.log(entry());
        let text = wait_for(&sink, 1);
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["time"], "2026-12-07T03:15:25.123Z");
        assert_eq!(v["status"], 200);
        assert_eq!(v["client"], "10.77.0.1:40000");
        assert_eq!(v["user_agent"], "curl \"evil\"\n");
        assert_eq!(v["referer"], serde_json::Value::Null);
        assert_eq!(v["route"], "/app/");
    }

    #[test]
    fn a_blocked_writer_drops_and_counts_never_waits() {
        let sink = Sink::default();
        let held = sink.gate.lock().unwrap();
        let log = AccessLog::start_with(Box::new(sink.clone()), AccessFormat::Combined, 4).unwrap();
        let t = Instant::now();
        for _ in 0..100 {
            log.log(entry());
        }
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // The queue holds four; the writer buffers whatever it took before
        // its first flush blocked (one line on a quiet machine, a few more
        // when the scheduler lets it run beside the loop: 9 were seen at a
        // load of 8), so the exact count is the scheduler's.
        assert!(log.dropped() >= 50, "{}", log.dropped());
        drop(held);
        let text = wait_for(&sink, (100 - log.dropped()) as usize);
        assert_eq!(text.lines().count() as u64, 100 - log.dropped());
    }

    #[test]
    fn config_checks_name_their_key() {
        let s = LogSection {
            access: Some("rel/access.log".into()),
            ..LogSection::default()
        };
        assert!(format!("{:#}", s.check().unwrap_err()).contains("log.access"));
        let s = LogSection {
            access: Some("-".into()),
            access_queue: 0,
            ..LogSection::default()
        };
        assert!(format!("{:#}", s.check().unwrap_err()).contains("log.access_queue"));
    }
}
