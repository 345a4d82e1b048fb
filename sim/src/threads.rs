//! Runs in threads of this process, under a watchdog: the runner the
//! matrix uses without isolation, and each child of [`crate::isolate`]
//! runs its batch with. It knows nothing of the matrix (which calls both).

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::world::{Outcome, RunSpec, World};

fn progress() -> bool {
    std::env::var("SIM_PROGRESS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A run whose step count has not moved for this long (wall time) is stuck
/// inside a node or the client (a livelock the simulation cannot interrupt).
const STUCK_AFTER: Duration = Duration::from_secs(5);
/// Resident memory beyond which a stuck run is reported at once.
const MEMORY_LIMIT_BYTES: u64 = 3 << 30;

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Run `specs` on `threads` threads; results in `specs` order.
///
/// A watchdog guards the process: a livelock inside a node (smoltcp's poll
/// loop, say) cannot be interrupted from outside and eats memory fast, so
/// when a run stops making steps for [`STUCK_AFTER`], or the process grows
/// past [`MEMORY_LIMIT_BYTES`], it prints the stuck runs with their replay
/// commands straight to stderr (past the test harness's capture) and exits.
pub fn run_all(specs: &[RunSpec], threads: usize) -> Vec<Outcome> {
    let threads = threads.max(1);
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; specs.len()]);
    // Per worker: the spec it runs (usize::MAX: none) and its step count.
    let current: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(usize::MAX)).collect();
    let pulses: Vec<Arc<AtomicU64>> = (0..threads).map(|_| Arc::new(AtomicU64::new(0))).collect();
    std::thread::scope(|s| {
        for w in 0..threads {
            let (next, finished, results) = (&next, &finished, &results);
            let done_tx = done_tx.clone();
            let (current, pulse) = (&current[w], Arc::clone(&pulses[w]));
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(spec) = specs.get(i) else { break };
                current.store(i, Ordering::Relaxed);
                let started = Instant::now();
                if progress() {
                    eprintln!("sim: start {}", spec.label());
                }
                let mut out = World::new(spec.clone())
                    .with_pulse(Arc::clone(&pulse))
                    .run();
                out.wall = started.elapsed();
                if progress() {
                    eprintln!(
                        "sim: end   {}: {} steps, {:.1}s virtual, {} violations, {:.2}s wall",
                        spec.label(),
                        out.steps,
                        out.time.as_secs_f64(),
                        out.violations.len(),
                        started.elapsed().as_secs_f64()
                    );
                }
                current.store(usize::MAX, Ordering::Relaxed);
                results.lock().expect("no panics while holding it")[i] = Some(out);
                finished.fetch_add(1, Ordering::Relaxed);
                let _ = done_tx.send(());
            });
        }
        // The watchdog.
        let mut seen: Vec<(usize, u64, Instant)> = vec![(usize::MAX, 0, Instant::now()); threads];
        while finished.load(Ordering::Relaxed) < specs.len() {
            // Wake when a run ends, or every 200 ms to look for stuck ones.
            let _ = done_rx.recv_timeout(Duration::from_millis(200));
            let memory = resident_bytes().unwrap_or(0);
            let mut stuck = Vec::new();
            for w in 0..threads {
                let (i, p) = (
                    current[w].load(Ordering::Relaxed),
                    pulses[w].load(Ordering::Relaxed),
                );
                if (i, p) != (seen[w].0, seen[w].1) {
                    seen[w] = (i, p, Instant::now());
                } else if i != usize::MAX
                    && (seen[w].2.elapsed() > STUCK_AFTER || memory > MEMORY_LIMIT_BYTES)
                {
                    stuck.push((i, p));
                }
            }
            if !stuck.is_empty() {
                let mut msg = String::new();
                for (i, step) in stuck {
                    let spec = &specs[i];
                    msg.push_str(&format!(
                        "sim: STUCK {}: no step for {}s of wall time at step {step} (process resident {} MiB): a livelock inside a node or the client\n    replay: {}\n",
                        spec.label(),
                        STUCK_AFTER.as_secs(),
                        memory >> 20,
                        spec.replay_command()
                    ));
                }
                let _ = std::io::stderr().write_all(msg.as_bytes());
                std::process::exit(3);
            }
        }
    });
    results
        .into_inner()
        .expect("no panics while holding it")
        .into_iter()
        .map(|o| o.expect("every run ran"))
        .collect()
}
