//! The node's log lines, ranked for journald: under systemd each line gets
//! the kernel-style `<N>` priority prefix journald reads from a stream
//! (`SyslogLevelPrefix=`, on by default), so `journalctl -p warning`
//! shows the takeovers, fencing and warnings, and `-p err` the errors.
//!
//! Chosen over `--log-format json` (tracing-subscriber's `json` feature):
//! journald is where a systemd node's logs go, and it ranks a prefixed
//! line with no configuration and no parser, while JSON lines would land
//! in the journal as one opaque message of priority info each. The text
//! stays the same, so everything that greps the logs keeps working.

use std::fmt;

use tracing::{Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written (`hotpair node --log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// `journald` when stderr is the journal (`$JOURNAL_STREAM` names it),
    /// else `text`.
    #[default]
    Auto,
    /// Plain lines.
    Text,
    /// Each line prefixed with its syslog priority, `<3>` … `<7>`.
    Journald,
}

/// The syslog priority of a level: err, warning, info, debug.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Whether stderr is the journal: `$JOURNAL_STREAM` is `DEVICE:INODE` of
/// the stream systemd connected, and must match stderr itself — a child
/// whose stderr was redirected (a lab node writing to a file) inherits
/// the variable but not the stream (systemd.exec(5)).
pub fn stderr_is_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some_and(|v| stderr_is(&v))
}

/// Whether stderr is the stream `DEVICE:INODE`.
fn stderr_is(v: &std::ffi::OsStr) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // /proc/self/fd/2 is the stream itself (fstat on fd 2), not a path.
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

impl LogFormat {
    /// Whether lines get the priority prefix.
    pub fn prefixed(self) -> bool {
        match self {
            LogFormat::Auto => stderr_is_journal(),
            LogFormat::Text => false,
            LogFormat::Journald => true,
        }
    }
}

/// A formatter that writes `<N>` before what `inner` writes.
pub struct Prefixed<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for Prefixed<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Install the global subscriber: `RUST_LOG` (default `info`) to stderr.
pub fn init(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let prefixed = format.prefixed();
    // Colour only on a terminal: node logs usually go to files or journald.
    let ansi =
        !prefixed && std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if prefixed {
        let inner = tracing_subscriber::fmt::format().with_ansi(false);
        builder.event_format(Prefixed(inner)).init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_line_carries_its_priority() {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || out.clone())
            .event_format(Prefixed(tracing_subscriber::fmt::format().with_ansi(false)))
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::error!("e");
            tracing::warn!(
                address = "10.0.0.10",
                "takeover: claiming the service address"
            );
            tracing::info!("i");
            tracing::debug!("d");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for (l, p) in lines.iter().zip(["<3>", "<4>", "<6>", "<7>"]) {
            assert!(l.starts_with(p), "{l}");
        }
        assert!(lines[1].contains("WARN") && lines[1].contains("claiming"));
    }

    #[test]
    fn journal_stream_must_be_stderr_itself() {
        use std::os::unix::fs::MetadataExt;
        // Whatever this test's stderr is, a made-up device and inode is
        // not it; its own are.
        assert!(!stderr_is("999999:1".as_ref()));
        assert!(!stderr_is("garbage".as_ref()));
        let m = std::fs::metadata("/proc/self/fd/2").unwrap();
        assert!(stderr_is(format!("{}:{}", m.dev(), m.ino()).as_ref()));
        assert!(!LogFormat::Text.prefixed());
        assert!(LogFormat::Journald.prefixed());
    }
}
