//! systemd's readiness protocol (`sd_notify(3)`), spoken directly: one
//! datagram of `KEY=VALUE` lines to the Unix socket named by
//! `$NOTIFY_SOCKET` — a path, or an abstract name written with a leading
//! `@`. A few lines, so no crate (docs/architecture.md, "Choices").
//!
//! The node sends `READY=1` once it serves every address it is responsible
//! for (the same judgement as `/readyz`, [`crate::health::readiness`]),
//! `STATUS=…` when an address changes state, `STOPPING=1` on a planned
//! stop, and `WATCHDOG=1` from the stack loop when the unit has
//! `WatchdogSec=` (`$WATCHDOG_USEC`): a stalled loop stops feeding it and
//! systemd kills and restarts the node.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// One notification: the fields systemd reads, in the order given.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Notice {
    pub ready: bool,
    pub stopping: bool,
    pub watchdog: bool,
    pub status: Option<String>,
}

impl Notice {
    /// The datagram: `KEY=VALUE\n` per field. A STATUS value is one line
    /// (a newline in it would start a field of systemd's reading).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if self.ready {
            out.push_str("READY=1\n");
        }
        if self.stopping {
            out.push_str("STOPPING=1\n");
        }
        if self.watchdog {
            out.push_str("WATCHDOG=1\n");
        }
        if let Some(s) = &self.status {
            out.push_str("STATUS=");
            out.extend(s.chars().map(|c| if c == '\n' { ' ' } else { c }));
            out.push('\n');
        }
        out
    }
}

/// The socket systemd listens on for this service.
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; `None` when not run by systemd with
    /// `Type=notify` (or `NotifyAccess=`), which is not an error.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => Notifier::new(&v.to_string_lossy()).map(Some),
            _ => Ok(None),
        }
    }

    /// To the socket `name`: a path, or `@name` for the abstract namespace.
    pub fn new(name: &str) -> io::Result<Notifier> {
        let addr = if let Some(abs) = name.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abs.as_bytes())?
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(name)?
        } else {
            // systemd also allows `vsock:`; a node never runs in a VM
            // talking to its host's systemd.
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("NOTIFY_SOCKET={name}: only a path or an @abstract name is supported"),
            ));
        };
        Ok(Notifier {
            sock: UnixDatagram::unbound()?,
            addr,
        })
    }

    pub fn send(&self, n: &Notice) -> io::Result<()> {
        let msg = n.encode();
        // A datagram is all or nothing: a short send cannot happen.
        self.sock
            .send_to_addr(msg.as_bytes(), &self.addr)
            .map(|_| ())
    }
}

/// How often to feed the watchdog: half of `$WATCHDOG_USEC` (as
/// `sd_watchdog_enabled(3)` advises), when it is set for this process
/// (`$WATCHDOG_PID` absent or ours).
pub fn watchdog_every() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// The watchdog as the stack loop feeds it: at most once per period.
pub struct Watchdog {
    every: Duration,
    last: Option<Instant>,
}

impl Watchdog {
    pub fn new(every: Duration) -> Watchdog {
        Watchdog { every, last: None }
    }

    pub fn every(&self) -> Duration {
        self.every
    }

    /// Whether a `WATCHDOG=1` is due at `now` (and, if so, counts it sent).
    pub fn due(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.every)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn encodes_each_field_as_a_line() {
        let n = Notice {
            ready: true,
            stopping: false,
            watchdog: true,
            status: Some("10.0.0.10 replicated\n(peer n1 up)".into()),
        };
        assert_eq!(
            n.encode(),
            "READY=1\nWATCHDOG=1\nSTATUS=10.0.0.10 replicated (peer n1 up)\n"
        );
        assert_eq!(Notice::default().encode(), "");
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("hotpair-sdnotify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.to_str().unwrap()).unwrap();
        n.send(&Notice {
            ready: true,
            status: Some("serving".into()),
            ..Notice::default()
        })
        .unwrap();
        assert_eq!(recv(&server), "READY=1\nSTATUS=serving\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("hotpair-sdnotify-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let n = Notifier::new(&format!("@{name}")).unwrap();
        n.send(&Notice {
            watchdog: true,
            ..Notice::default()
        })
        .unwrap();
        assert_eq!(recv(&server), "WATCHDOG=1\n");
        assert!(Notifier::new("vsock:2:1234").is_err());
    }

    #[test]
    fn the_watchdog_is_fed_once_per_period() {
        let t = Instant::now();
        let mut w = Watchdog::new(Duration::from_millis(100));
        assert!(w.due(t));
        assert!(!w.due(t + Duration::from_millis(99)));
        assert!(w.due(t + Duration::from_millis(100)));
        assert!(!w.due(t + Duration::from_millis(150)));
    }
}
