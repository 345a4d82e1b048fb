//! The client-visible stall of a download around a kill: the longest time
//! without a new byte, from a series of (time, size) samples. Used by
//! `hotpair demo` and by the netns failover tests, so both report the same
//! quantity.

use std::ops::Sub;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The stall around a kill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    /// The longest interval without growth that ends after the kill (or is
    /// still open at the end of an incomplete download).
    pub after_kill: Duration,
    /// The longest such interval before the kill, for comparison.
    pub before_kill: Duration,
    /// From the kill to the first growth after it.
    pub resumed_after: Option<Duration>,
}

/// The [`Stall`] of `samples` (time, size so far) around `kill`; `end` is
/// when sampling stopped and `complete` whether the download finished (if
/// not, the time from its last growth to `end` is a stall that never ended).
/// `T` is a time: an `Instant`, or a `Duration` since some start.
pub fn measure<T>(samples: &[(T, u64)], kill: T, end: T, complete: bool) -> Stall
where
    T: Copy + PartialOrd + Sub<Output = Duration>,
{
    let since = |a: T, b: T| if a > b { a - b } else { Duration::ZERO };
    // Instants at which the size had grown since the previous sample.
    let growth: Vec<T> = samples
        .windows(2)
        .filter(|w| w[1].1 > w[0].1)
        .map(|w| w[1].0)
        .collect();
    let mut after = Duration::ZERO;
    let mut before = Duration::ZERO;
    for w in growth.windows(2) {
        let gap = since(w[1], w[0]);
        if w[1] > kill {
            after = after.max(gap);
        } else {
            before = before.max(gap);
        }
    }
    if !complete {
        let last = growth.last().copied().unwrap_or(kill);
        after = after.max(since(end, last));
    }
    Stall {
        after_kill: after,
        before_kill: before,
        resumed_after: growth.iter().find(|&&t| t > kill).map(|&t| since(t, kill)),
    }
}

/// Samples a growing file's size on a thread of its own.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    latest: Arc<AtomicU64>,
    samples: Arc<Mutex<Vec<(Duration, u64)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Sample `path` every `every`, times since `start`.
    pub fn start(path: PathBuf, start: Instant, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let latest = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(Mutex::new(Vec::with_capacity(8192)));
        let thread = {
            let (stop, latest, samples) = (stop.clone(), latest.clone(), samples.clone());
            std::thread::spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                    latest.store(size, Ordering::SeqCst);
                    if let Ok(mut v) = samples.lock() {
                        v.push((start.elapsed(), size));
                    }
                    next += every;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            })
        };
        Sampler {
            stop,
            latest,
            samples,
            thread: Some(thread),
        }
    }

    /// The size last seen.
    pub fn latest(&self) -> u64 {
        self.latest.load(Ordering::SeqCst)
    }

    /// The first pause of at least `min` (no growth) that ended after
    /// `kill`: (its length, when it ended), times since the start.
    pub fn pause_ended_after(&self, kill: Duration, min: Duration) -> Option<(Duration, Duration)> {
        let v = self.samples.lock().ok()?;
        let mut last_growth: Option<Duration> = None;
        for w in v.windows(2) {
            if w[1].1 > w[0].1 {
                let t = w[1].0;
                if let Some(prev) = last_growth {
                    if t > kill && t - prev >= min {
                        return Some((t - prev, t));
                    }
                }
                last_growth = Some(t);
            }
        }
        None
    }

    /// Stop sampling; the samples (time since the start, size).
    pub fn finish(mut self) -> Vec<(Duration, u64)> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Growth every 10 ms, except from 100 to 700 ms.
    fn samples<T>(at: impl Fn(u64) -> T) -> Vec<(T, u64)> {
        let mut samples = Vec::new();
        let mut size = 0;
        for t in (0..=1000).step_by(10) {
            if t <= 100 || t >= 700 {
                size += 1000;
            }
            samples.push((at(t), size));
        }
        samples
    }

    #[test]
    fn the_longest_gap_from_the_kill_on() {
        let samples = samples(ms);
        let s = measure(&samples, ms(150), ms(1000), true);
        assert_eq!(s.after_kill, ms(600));
        assert_eq!(s.before_kill, ms(10));
        assert_eq!(s.resumed_after, Some(ms(550)));
        // A longer gap before the kill is not the kill's stall.
        let s = measure(&samples, ms(800), ms(1000), true);
        assert_eq!(s.after_kill, ms(10));
        assert_eq!(s.before_kill, ms(600));
        // A download that stopped for good stalls until the end.
        let cut: Vec<_> = samples.iter().copied().filter(|s| s.0 <= ms(400)).collect();
        let s = measure(&cut, ms(150), ms(400), false);
        assert_eq!(s.after_kill, ms(300));
        assert_eq!(s.resumed_after, None);
    }

    #[test]
    fn works_on_instants_too() {
        let t0 = Instant::now();
        let samples = samples(|v| t0 + ms(v));
        let s = measure(&samples, t0 + ms(150), t0 + ms(1000), true);
        assert_eq!(s.after_kill, ms(600));
        assert_eq!(s.resumed_after, Some(ms(550)));
    }
}
