//! What the stack thread tells the world outside the admin socket when an
//! address changes state: systemd (`READY=1`, `STATUS=`, `STOPPING=1`, the
//! watchdog; [`crate::sdnotify`]) and the operator's `[hooks] on_change`
//! script ([`crate::hooks`]).
//!
//! Fed with every status snapshot ([`crate::admin::StatusPublisher`]: every
//! 100 ms, and at once after a takeover, a link change or the start of a
//! planned stop), so a state that lasts less than a snapshot period may be
//! seen only as the change around it. Nothing here blocks: the datagram to
//! systemd is one small send, hooks are queued for their own thread.

use std::time::Instant;

use crate::admin::Status;
use crate::hooks::{Change, Hooks};
use crate::sdnotify::{Notice, Notifier, Watchdog};

/// An address's state for hooks and `STATUS=`: the word of `hotpair
/// status`, or `leaving` for every address once a planned stop began.
fn state_of(s: &Status, a: &crate::admin::AddressStatus) -> String {
    if s.leaving {
        "leaving".into()
    } else {
        a.state.clone()
    }
}

/// The state changes between the states seen last (`prev`, by address)
/// and snapshot `s`; an address not seen before changes from `starting`.
pub fn changes(prev: &[(String, String)], s: &Status) -> Vec<Change> {
    s.addresses
        .iter()
        .filter_map(|a| {
            let new = state_of(s, a);
            let old = prev
                .iter()
                .find(|(addr, _)| *addr == a.address)
                .map_or("starting", |(_, st)| st.as_str());
            (old != new).then(|| Change {
                address: a.address.clone(),
                old: old.to_owned(),
                new,
            })
        })
        .collect()
}

/// The `STATUS=` line: each address and its state.
pub fn status_line(s: &Status) -> String {
    let list: Vec<String> = s
        .addresses
        .iter()
        .map(|a| {
            let peer = a
                .peer
                .as_ref()
                .map_or(String::new(), |p| format!(" (peer {} {})", p.name, p.link));
            format!("{} {}{peer}", a.address, state_of(s, a))
        })
        .collect();
    format!("{}: {}", s.node, list.join(", "))
}

/// The stack thread's observer of its own snapshots.
#[derive(Default)]
pub struct Lifecycle {
    /// Each address's state as last seen.
    states: Vec<(String, String)>,
    ready_said: bool,
    stopping_said: bool,
    notifier: Option<Notifier>,
    watchdog: Option<Watchdog>,
    hooks: Option<Hooks>,
}

impl Lifecycle {
    pub fn new(
        notifier: Option<Notifier>,
        watchdog: Option<Watchdog>,
        hooks: Option<Hooks>,
    ) -> Lifecycle {
        Lifecycle {
            notifier,
            watchdog,
            hooks,
            ..Lifecycle::default()
        }
    }

    fn notify(&self, n: &Notice) {
        if let Some(sock) = &self.notifier {
            if let Err(e) = sock.send(n) {
                // systemd gone (or a socket we may not write): nothing
                // depends on it but the unit's state.
                tracing::debug!(error = %e, "sd_notify");
            }
        }
    }

    /// A snapshot was published.
    pub fn observe(&mut self, s: &Status) {
        if s.format == 0 {
            return;
        }
        let changes = changes(&self.states, s);
        let mut notice = Notice::default();
        if !changes.is_empty() {
            for c in &changes {
                tracing::info!(address = %c.address, from = %c.old, to = %c.new, "address state");
                if let Some(h) = self.hooks.as_mut() {
                    h.submit(c.clone());
                }
            }
            self.states = s
                .addresses
                .iter()
                .map(|a| (a.address.clone(), state_of(s, a)))
                .collect();
            notice.status = Some(status_line(s));
        }
        if !self.ready_said && crate::health::readiness(s).0 {
            self.ready_said = true;
            notice.ready = true;
            tracing::info!("ready: serving every address (READY=1 to systemd, /readyz 200)");
        }
        if s.leaving && !self.stopping_said {
            self.stopping_said = true;
            notice.stopping = true;
        }
        if notice != Notice::default() {
            self.notify(&notice);
        }
    }

    /// The node is stopping: let queued hooks run for at most `within`.
    pub fn finish(&mut self, within: std::time::Duration) {
        if let Some(h) = self.hooks.take() {
            h.finish(within);
        }
    }

    /// A round of the stack loop ran: feed the watchdog if it is due. Only
    /// the stack loop calls this, so a stalled loop starves it.
    pub fn tick(&mut self, now: Instant) {
        if self.watchdog.as_mut().is_some_and(|w| w.due(now)) {
            self.notify(&Notice {
                watchdog: true,
                ..Notice::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::tests::sample;

    #[test]
    fn changes_start_from_starting_and_end_in_leaving() {
        let mut s = sample();
        s.addresses[0].state = "waiting".into();
        let c = changes(&[], &s);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].old.as_str(), c[0].new.as_str()),
            ("starting", "waiting")
        );
        let prev = vec![(s.addresses[0].address.clone(), "waiting".to_owned())];
        assert!(changes(&prev, &s).is_empty());
        s.addresses[0].state = "promoted".into();
        let c = changes(&prev, &s);
        assert_eq!(
            (c[0].old.as_str(), c[0].new.as_str()),
            ("waiting", "promoted")
        );
        s.leaving = true;
        assert_eq!(changes(&prev, &s)[0].new, "leaving");
        assert!(status_line(&s).contains("leaving"), "{}", status_line(&s));
    }

    /// The whole path to a socket standing in for systemd's.
    #[test]
    fn says_status_then_ready_once_then_stopping() {
        use std::os::unix::net::UnixDatagram;
        let path = std::env::temp_dir().join(format!("hotpair-lifecycle-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sd = UnixDatagram::bind(&path).unwrap();
        sd.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let recv = || {
            let mut b = [0u8; 4096];
            let n = sd.recv(&mut b).unwrap();
            String::from_utf8(b[..n].to_vec()).unwrap()
        };
        let n = Notifier::new(path.to_str().unwrap()).unwrap();
        let mut l = Lifecycle::new(Some(n), None, None);
        let mut s = sample();
        s.addresses[0].state = "waiting".into();
        l.observe(&s);
        let got = recv();
        assert!(
            got.starts_with("STATUS=") && got.contains("waiting"),
            "{got}"
        );
        s.addresses[0].state = "replicated".into();
        l.observe(&s);
        let got = recv();
        assert!(
            got.contains("READY=1\n") && got.contains("replicated"),
            "{got}"
        );
        // Unchanged: nothing sent; then the planned stop.
        l.observe(&s);
        s.leaving = true;
        l.observe(&s);
        let got = recv();
        assert!(
            got.contains("STOPPING=1\n") && !got.contains("READY"),
            "{got}"
        );
        let _ = std::fs::remove_file(&path);
    }
}
