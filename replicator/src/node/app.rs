//! The application check: does the application behind this node answer?
//!
//! The host and the node process can live on while the application they
//! front dies (a crash, an OOM kill, a bad deploy): every request then
//! fails with a 502 although the peer's application may be fine. The core
//! asks for a check every `interval` ([`AppCheck::poll_check`]); the shell
//! runs it (an HTTP GET of the configured health path, bounded by its
//! timeout) and hands the result back ([`AppCheck::handle_result`]). A
//! request the application could not take at all (connection refused,
//! reset or closed before a reply) counts as a failed check too and asks
//! for another one at once, so a dead application under load is found in
//! about a round trip rather than `fall` intervals. `fall` failures in a
//! row mark it down, `rise` successes up again. What the node does about
//! it is the node core's (see `NodeCore::app_changed`).

use std::time::{Duration, Instant};

use super::fall_rise::FallRise;

/// How often to check and how many results decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppCheckConfig {
    /// Time between checks.
    pub interval: Duration,
    /// How long the shell waits for one check's answer (a check it has not
    /// reported after twice this counts as failed).
    pub timeout: Duration,
    /// Failures in a row that mark the application down.
    pub fall: u32,
    /// Successes in a row that mark it up again.
    pub rise: u32,
    /// Another instance of the application answers this node's requests
    /// while its own is down (the route's `fallback`): connections only
    /// this node serves are kept here rather than lost in a handover (see
    /// `NodeCore::app_changed`).
    pub fallback: bool,
}

/// The check's state machine, driven by passed-in time.
#[derive(Debug)]
pub struct AppCheck {
    cfg: AppCheckConfig,
    state: FallRise,
    next_at: Instant,
    /// When the check in flight was asked for.
    in_flight: Option<Instant>,
    /// A check to run now.
    due: bool,
}

impl AppCheck {
    /// A check starting at `now` (the first one at once) with the
    /// application taken as up.
    pub fn new(cfg: AppCheckConfig, now: Instant) -> Self {
        AppCheck {
            cfg: AppCheckConfig {
                interval: cfg.interval.max(Duration::from_millis(1)),
                ..cfg
            },
            state: FallRise::new(cfg.fall, cfg.rise),
            next_at: now,
            in_flight: None,
            due: false,
        }
    }

    /// Whether the application answers.
    pub fn is_up(&self) -> bool {
        self.state.is_up()
    }

    /// Times the state changed so far.
    pub fn changes(&self) -> u64 {
        self.state.changes()
    }

    /// The configuration.
    pub fn config(&self) -> &AppCheckConfig {
        &self.cfg
    }

    /// When [`AppCheck::handle_timeout`] has work.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        match self.in_flight {
            Some(at) => self.next_at.max(at + 2 * self.cfg.timeout),
            None => self.next_at,
        }
    }

    /// Advance to `now`: a check lost by the shell counts as failed; the
    /// next one is queued when due. Returns the new state if it changed.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<bool> {
        let mut change = None;
        if let Some(at) = self.in_flight {
            if now < at + 2 * self.cfg.timeout {
                return None;
            }
            self.in_flight = None;
            change = self.state.observe(false);
        }
        if now >= self.next_at {
            self.due = true;
            self.in_flight = Some(now);
            self.next_at = now + self.cfg.interval;
        }
        change
    }

    /// Whether the shell should run a check now (once per `true`).
    #[must_use]
    pub fn poll_check(&mut self) -> bool {
        std::mem::take(&mut self.due)
    }

    /// The result of the check the shell ran. Returns the new state if it
    /// changed.
    pub fn handle_result(&mut self, ok: bool) -> Option<bool> {
        self.in_flight = None;
        self.state.observe(ok)
    }

    /// A request found the application unreachable: a failed check, and
    /// another check as soon as none is in flight.
    pub fn handle_unreachable(&mut self, now: Instant) -> Option<bool> {
        if self.in_flight.is_none() {
            self.next_at = now;
        }
        self.state.observe(false)
    }

    /// How long a request the application could not take waits for the
    /// check's verdict (the peer takes it over if the application is
    /// found down) before its error reply goes out: `fall` checks run
    /// back to back, each within its timeout, plus an interval of slack.
    pub fn verdict_wait(&self) -> Duration {
        self.cfg.timeout * (self.cfg.fall.max(1) + 1) + self.cfg.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    fn t0() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn check(t: Instant) -> AppCheck {
        AppCheck::new(
            AppCheckConfig {
                interval: ms(500),
                timeout: ms(200),
                fall: 2,
                rise: 2,
                fallback: false,
            },
            t,
        )
    }

    #[test]
    fn checks_run_every_interval_and_fall_failures_mark_down() {
        let t = t0();
        let mut c = check(t);
        assert_eq!(c.handle_timeout(t), None);
        assert!(c.poll_check(), "the first check runs at once");
        assert!(!c.poll_check(), "once");
        assert_eq!(c.handle_result(false), None);
        // Not before the interval.
        assert_eq!(c.handle_timeout(t + ms(100)), None);
        assert!(!c.poll_check());
        assert_eq!(c.poll_timeout(), t + ms(500));
        assert_eq!(c.handle_timeout(t + ms(500)), None);
        assert!(c.poll_check());
        assert_eq!(c.handle_result(false), Some(false));
        assert!(!c.is_up());
        for k in 2..4 {
            c.handle_timeout(t + ms(500 * k));
            assert!(c.poll_check());
            let got = c.handle_result(true);
            assert_eq!(got, (k == 3).then_some(true));
        }
        assert!(c.is_up());
        assert_eq!(c.changes(), 2);
    }

    #[test]
    fn a_check_the_shell_never_answers_counts_as_failed() {
        let t = t0();
        let mut c = check(t);
        c.handle_timeout(t);
        assert!(c.poll_check());
        // No result: nothing new is asked while it is in flight …
        assert_eq!(c.handle_timeout(t + ms(300)), None);
        assert!(!c.poll_check());
        // … until twice the timeout, when it counts as a failure.
        assert_eq!(c.poll_timeout(), t + ms(500));
        assert_eq!(c.handle_timeout(t + ms(500)), None);
        assert!(c.poll_check());
        assert_eq!(c.handle_timeout(t + ms(900)), Some(false));
    }

    #[test]
    fn an_unreachable_request_fails_a_check_and_asks_for_one_at_once() {
        let t = t0();
        let mut c = check(t);
        c.handle_timeout(t);
        assert!(c.poll_check());
        assert_eq!(c.handle_result(true), None);
        assert_eq!(c.handle_unreachable(t + ms(10)), None);
        assert_eq!(c.poll_timeout(), t + ms(10), "a check at once");
        c.handle_timeout(t + ms(10));
        assert!(c.poll_check());
        assert_eq!(c.handle_result(false), Some(false));
        assert!(c.verdict_wait() >= ms(600));
    }
}
