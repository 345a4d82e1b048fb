//! Preemption control the shell can do (keepalived's `preempt_delay`,
//! and no role taken back while crash-looping): a delay before a starting
//! node opens its replication links.
//!
//! A returning node takes its configured role back as soon as its link's
//! session is up (the node core's rejoin). Until its links are open it
//! cannot: an owner finds by its probes that the peer holds the address
//! and stands by (`fenced`), a primary after its cold-start wait too. So
//! delaying the links delays the preemption — without touching the core,
//! whose rejoin has no delay of its own (a delay *after* the link is up,
//! with the peer meanwhile shadowing nothing, would need one).
//!
//! The delay is `rejoin_delay_ms` at every start, raised to
//! [`CRASH_LOOP_DELAY`] when the node is crash-looping: more than
//! [`CRASH_LOOP_STARTS`] starts within [`CRASH_LOOP_WINDOW`] without a
//! clean stop between them. The starts are kept in a small file beside the
//! admin socket (`/run/hotpair/<name>.starts`: a tmpfs, so a reboot
//! forgets them); a clean stop empties it.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Starts within [`CRASH_LOOP_WINDOW`] beyond which the node counts as
/// crash-looping.
pub const CRASH_LOOP_STARTS: usize = 3;
pub const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(60);
/// The link delay of a crash-looping node. Under the 30 s
/// `TimeoutStartSec=` of the systemd unit: a node that is not ready by
/// then is restarted (and would count as one more crash).
pub const CRASH_LOOP_DELAY: Duration = Duration::from_secs(20);

/// The starts file of the node whose admin socket is `admin`.
pub fn starts_file(admin: &Path) -> PathBuf {
    admin.with_extension("starts")
}

/// The start times (Unix ms) in the file's text within the window
/// before `now_ms`, and `now_ms` added.
pub fn record(text: &str, now_ms: u64) -> Vec<u64> {
    let window = CRASH_LOOP_WINDOW.as_millis() as u64;
    let mut starts: Vec<u64> = text
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|&t: &u64| t <= now_ms && now_ms - t < window)
        .collect();
    starts.push(now_ms);
    starts
}

/// How long to wait before opening the links, given the configured delay
/// and the recent starts (this one included).
pub fn delay(configured: Duration, starts: usize) -> Duration {
    if starts > CRASH_LOOP_STARTS {
        configured.max(CRASH_LOOP_DELAY)
    } else {
        configured
    }
}

/// Count this start in `file` and return the link delay. A file that
/// cannot be read or written only loses the crash-loop guard (warned).
pub fn on_start(file: &Path, configured: Duration) -> Duration {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let starts = record(&text, now_ms);
    let body: String = starts.iter().map(|t| format!("{t}\n")).collect();
    if let Err(e) = std::fs::write(file, body) {
        tracing::warn!(file = %file.display(), error = %e, "cannot record this start: the crash-loop guard is off");
    }
    let d = delay(configured, starts.len());
    if starts.len() > CRASH_LOOP_STARTS {
        tracing::warn!(
            starts = starts.len(),
            window_s = CRASH_LOOP_WINDOW.as_secs(),
            delay_ms = d.as_millis() as u64,
            "crash loop: this node started {} times within {} s without a clean stop; \
             its replication links open only after the delay, so the peer keeps \
             serving meanwhile (this node stands by)",
            starts.len(),
            CRASH_LOOP_WINDOW.as_secs()
        );
    } else if !d.is_zero() {
        tracing::info!(
            delay_ms = d.as_millis() as u64,
            "rejoin_delay_ms: the replication links open after the delay"
        );
    }
    d
}

/// A clean stop: the starts so far were no crash loop.
pub fn on_clean_stop(file: &Path) {
    let _ = std::fs::remove_file(file);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_outside_the_window_are_forgotten() {
        let now = 1_000_000;
        let text = format!("{}\n{}\ngarbage\n{}\n", now - 60_000, now - 59_999, now + 5);
        // The one 60 s old is out, the future one (a clock step) too.
        assert_eq!(record(&text, now), vec![now - 59_999, now]);
        assert_eq!(record("", now), vec![now]);
    }

    #[test]
    fn a_crash_loop_raises_the_delay() {
        let zero = Duration::ZERO;
        assert_eq!(delay(zero, 1), zero);
        assert_eq!(delay(zero, CRASH_LOOP_STARTS), zero);
        assert_eq!(delay(zero, CRASH_LOOP_STARTS + 1), CRASH_LOOP_DELAY);
        let long = Duration::from_secs(45);
        assert_eq!(delay(long, 1), long);
        assert_eq!(delay(long, 9), long);
    }

    #[test]
    fn the_file_counts_starts_until_a_clean_stop() {
        let dir = std::env::temp_dir().join(format!("hotpair-rejoin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = starts_file(&dir.join("n1.sock"));
        assert_eq!(file, dir.join("n1.starts"));
        let d = Duration::from_millis(5);
        for _ in 0..CRASH_LOOP_STARTS {
            assert_eq!(on_start(&file, d), d);
        }
        assert_eq!(on_start(&file, d), CRASH_LOOP_DELAY);
        on_clean_stop(&file);
        assert_eq!(on_start(&file, d), d);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
