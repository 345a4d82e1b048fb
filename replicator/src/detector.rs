//! Heartbeat scheduling and a timeout failure detector.
//!
//! The detector keeps two deadlines: when to send the next heartbeat
//! (`interval` after the previous one) and when the peer counts as dead
//! (`timeout` after anything was last heard from it). The defaults are a
//! 100 ms interval and a 500 ms timeout ([`DEFAULT_HEARTBEAT_INTERVAL`],
//! [`DEFAULT_HEARTBEAT_TIMEOUT`]): five heartbeats may be lost or delayed
//! before a takeover, and a crash is acted on within about half a second,
//! well inside a client's first TCP retransmission timeout (1 s minimum).
//!
//! Failure model: fail-stop. Once the peer is declared dead the detector
//! stays silent until [`FailureDetector::reset`] (a new link session).

use std::time::{Duration, Instant};

/// Default time between heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
/// Default silence after which the peer is declared dead.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(500);
/// Shortest interval the detector uses (a zero interval would spin).
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1);

/// What [`FailureDetector::handle_timeout`] asks the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectorEvent {
    /// Send a heartbeat to the peer now.
    SendHeartbeat,
    /// Nothing was heard from the peer for at least the timeout.
    PeerDead {
        /// Time since the peer was last heard.
        since_heard: Duration,
    },
}

/// Heartbeat timer plus timeout failure detector, driven by passed-in time.
///
/// ```
/// use std::time::{Duration, Instant};
/// use hotpair_replicator::detector::{DetectorEvent, FailureDetector};
///
/// # #[allow(clippy::disallowed_methods)]
/// let t0 = Instant::now(); // the caller's clock
/// let ms = Duration::from_millis;
/// let mut d = FailureDetector::new(ms(100), ms(500), t0);
/// assert_eq!(d.poll_timeout(), Some(t0 + ms(100)));
/// assert_eq!(d.handle_timeout(t0 + ms(100)), Some(DetectorEvent::SendHeartbeat));
/// d.handle_heard(t0 + ms(150));
/// assert_eq!(d.handle_timeout(t0 + ms(649)), Some(DetectorEvent::SendHeartbeat));
/// assert_eq!(
///     d.handle_timeout(t0 + ms(650)),
///     Some(DetectorEvent::PeerDead { since_heard: ms(500) })
/// );
/// assert_eq!(d.poll_timeout(), None);
/// ```
#[derive(Debug, Clone)]
pub struct FailureDetector {
    interval: Duration,
    timeout: Duration,
    last_heard: Instant,
    next_heartbeat: Instant,
    /// When the last heartbeat was asked for (or the session began).
    last_sent: Instant,
    dead: bool,
}

impl FailureDetector {
    /// Starts the detector at `now`, counting `now` as heard from the peer.
    ///
    /// `interval` is raised to [`MIN_HEARTBEAT_INTERVAL`] if smaller.
    pub fn new(interval: Duration, timeout: Duration, now: Instant) -> Self {
        let interval = interval.max(MIN_HEARTBEAT_INTERVAL);
        Self {
            interval,
            timeout,
            last_heard: now,
            next_heartbeat: now + interval,
            last_sent: now,
            dead: false,
        }
    }

    /// Anything arrived from the peer at `now`. Ignored once dead.
    pub fn handle_heard(&mut self, now: Instant) {
        if !self.dead && now > self.last_heard {
            self.last_heard = now;
        }
    }

    /// The next instant [`FailureDetector::handle_timeout`] has work to do:
    /// a heartbeat or the death deadline. `None` once dead.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.dead {
            None
        } else {
            Some(self.next_heartbeat.min(self.deadline()))
        }
    }

    /// Advances to `now`. Death is checked first: a dead peer gets no
    /// heartbeat. Returns at most one event per call; call again until `None`.
    #[must_use]
    pub fn handle_timeout(&mut self, now: Instant) -> Option<DetectorEvent> {
        if self.dead {
            return None;
        }
        let since_heard = now.saturating_duration_since(self.last_heard);
        if since_heard >= self.timeout {
            self.dead = true;
            return Some(DetectorEvent::PeerDead { since_heard });
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat += self.interval;
            if self.next_heartbeat <= now {
                // Woken late: don't send a burst to catch up.
                self.next_heartbeat = now + self.interval;
            }
            self.last_sent = now;
            return Some(DetectorEvent::SendHeartbeat);
        }
        None
    }

    /// Starts over at `now` (a new link session): alive, heard at `now`.
    pub fn reset(&mut self, now: Instant) {
        *self = Self::new(self.interval, self.timeout, now);
    }

    /// Whether the peer has been declared dead.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// When the peer was last heard.
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// When this side last asked for a heartbeat to be sent (or the session
    /// began). The peer's detector times out `timeout` after it last heard
    /// from this side, so once `timeout` has passed since this instant the
    /// peer may have declared this side dead.
    pub fn last_sent(&self) -> Instant {
        self.last_sent
    }

    /// When the peer will be declared dead if nothing more is heard.
    pub fn deadline(&self) -> Instant {
        self.last_heard + self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[allow(clippy::disallowed_methods)] // the origin of virtual time; only offsets are used
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn heartbeats_every_interval_while_heard() {
        let t0 = t0();
        let mut d = FailureDetector::new(ms(100), ms(500), t0);
        for i in 1..=20u32 {
            let t = t0 + ms(100) * i;
            assert_eq!(d.poll_timeout(), Some(t));
            assert_eq!(d.handle_timeout(t), Some(DetectorEvent::SendHeartbeat));
            assert_eq!(d.handle_timeout(t), None);
            d.handle_heard(t);
        }
        assert!(!d.is_dead());
    }

    #[test]
    fn dead_exactly_at_timeout_not_before() {
        let t0 = t0();
        let mut d = FailureDetector::new(ms(100), ms(500), t0);
        let mut now = t0;
        while let Some(t) = d.poll_timeout() {
            if t >= t0 + ms(500) {
                break;
            }
            now = t;
            assert_eq!(d.handle_timeout(now), Some(DetectorEvent::SendHeartbeat));
        }
        assert_eq!(now, t0 + ms(400));
        assert_eq!(d.poll_timeout(), Some(t0 + ms(500)));
        assert_eq!(
            d.handle_timeout(t0 + ms(500) - Duration::from_nanos(1)),
            None
        );
        assert_eq!(
            d.handle_timeout(t0 + ms(500)),
            Some(DetectorEvent::PeerDead {
                since_heard: ms(500)
            })
        );
        // Stays dead: nothing more, hearing the peer does not revive it.
        d.handle_heard(t0 + ms(600));
        assert!(d.is_dead());
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.handle_timeout(t0 + ms(10_000)), None);
        d.reset(t0 + ms(700));
        assert!(!d.is_dead());
        assert_eq!(d.poll_timeout(), Some(t0 + ms(800)));
        assert_eq!(d.deadline(), t0 + ms(1200));
    }

    #[test]
    fn late_wakeup_reports_real_silence_and_no_burst() {
        let t0 = t0();
        let mut d = FailureDetector::new(ms(100), ms(500), t0);
        // Woken long after several heartbeats were due but before death.
        assert_eq!(
            d.handle_timeout(t0 + ms(450)),
            Some(DetectorEvent::SendHeartbeat)
        );
        assert_eq!(d.handle_timeout(t0 + ms(450)), None);
        assert_eq!(d.poll_timeout(), Some(t0 + ms(500)));
        d.handle_heard(t0 + ms(460));
        assert_eq!(d.poll_timeout(), Some(t0 + ms(550)));
        // Woken far past the deadline: death first, with the true silence.
        assert_eq!(
            d.handle_timeout(t0 + ms(2000)),
            Some(DetectorEvent::PeerDead {
                since_heard: ms(1540)
            })
        );
    }

    #[test]
    fn zero_interval_is_clamped() {
        let t0 = t0();
        let mut d = FailureDetector::new(Duration::ZERO, ms(5), t0);
        assert_eq!(d.poll_timeout(), Some(t0 + MIN_HEARTBEAT_INTERVAL));
        assert_eq!(d.handle_timeout(t0), None);
    }
}
