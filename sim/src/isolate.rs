//! Runs in child processes, so that one run stuck in a livelock inside a
//! node (which nothing can interrupt from outside, and which may eat memory
//! fast) is reported as that run's failure and the matrix goes on.
//!
//! The parent hands a child a batch of run specs in a file; the child (the
//! same test binary, running its `worker` test) runs them one by one and
//! prints one `SIMRESULT` line per run. If the child dies — the watchdog
//! in [`crate::threads::run_all`] exits it when a run is stuck — the first
//! run without a result is the culprit; the rest go back in the queue.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::scenario::{self, Expectations};
use crate::threads::run_all;
use crate::topology::Topology;
use crate::world::{expectations_for, Kill, Net, Outcome, RunSpec, RunStats, TlsPhase, Variant};

/// How to start a worker: the test binary and the arguments that select
/// its worker test.
#[derive(Debug, Clone)]
pub struct Isolation {
    pub exe: PathBuf,
    pub args: Vec<String>,
    /// Runs per child process.
    pub batch: usize,
}

impl Isolation {
    /// The running test binary, as the worker: its `worker` test runs the
    /// runs of each batch of `batch` (every matrix test file has one).
    pub fn this_test_binary(batch: usize) -> Self {
        Isolation {
            exe: std::env::current_exe().expect("the test binary's path"),
            args: ["worker", "--exact", "--nocapture", "--test-threads", "1"]
                .map(String::from)
                .to_vec(),
            batch,
        }
    }
}

/// The environment variable naming a worker's batch file.
pub const WORKER_ENV: &str = "SIM_WORKER_SPECS";

/// One line naming a run (no spaces inside fields).
pub fn spec_key(s: &RunSpec) -> String {
    let kill = match s.kill {
        None => "none".to_owned(),
        Some(k) => format!(
            "{}:{}:{}",
            s.topology.victim_name(k.victim),
            k.step,
            k.variant.name()
        ),
    };
    format!(
        "{} {} {} {} {kill}{}",
        s.topology.name(),
        s.scenario.name,
        s.seed,
        s.net.name,
        if s.checks { " checks" } else { "" }
    )
}

/// Expectations already computed, per (topology, scenario, seed).
pub type ExpectCache =
    BTreeMap<(Topology, String, u64), (Arc<scenario::Scenario>, Arc<Expectations>)>;

/// Parse [`spec_key`]'s output.
pub fn parse_key(line: &str, cache: &mut ExpectCache) -> Option<RunSpec> {
    let mut f = line.split_whitespace();
    let (topo, name, seed, net, kill) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let checks = match f.next() {
        None => false,
        Some("checks") => true,
        Some(_) => return None,
    };
    let topology = Topology::parse(topo)?;
    let seed: u64 = seed.parse().ok()?;
    let net = Net::parse(net)?;
    let key = (topology, name.to_owned(), seed);
    if !cache.contains_key(&key) {
        let s = Arc::new(topology.scenario(scenario::by_name(name)?));
        let e = expectations_for(&s, seed, topology);
        cache.insert(key.clone(), (s, e));
    }
    let (sc, ex) = cache.get(&key)?.clone();
    let kill = if kill == "none" {
        None
    } else {
        let mut k = kill.split(':');
        Some(Kill {
            victim: topology.parse_victim(k.next()?)?,
            step: k.next()?.parse().ok()?,
            variant: Variant::parse(k.next()?)?,
        })
    };
    Some(RunSpec {
        topology,
        scenario: sc,
        expect: ex,
        seed,
        net,
        kill,
        checks,
        trace: false,
        fingerprint: false,
    })
}

fn stats_fields(s: &RunStats) -> [u64; 32] {
    [
        s.lan_frames,
        s.lan_lost,
        s.link_msgs,
        s.tso_frames,
        u64::from(s.promoted),
        u64::from(s.claimed),
        s.promoted_conns,
        s.held,
        s.held_dropped,
        s.not_forwarded,
        s.duplicate_syn,
        s.passed_through,
        s.arp_updates,
        s.duplicate_bytes,
        s.logged_before_kill,
        s.late_rsts,
        s.link_stalls,
        s.syn_cookies_validated,
        s.app_commits,
        s.app_reexecuted,
        s.app_refused,
        s.relinks,
        s.tls_full,
        s.tls_retried,
        s.tls_resumed,
        s.tls_tickets_offered,
        s.diverged,
        s.local_replies,
        s.replies_ahead,
        s.shadows_detached,
        s.generation_missing,
        s.detached_open,
    ]
}

fn stats_from(v: &[u64]) -> Option<RunStats> {
    let g = |i: usize| v.get(i).copied();
    Some(RunStats {
        lan_frames: g(0)?,
        lan_lost: g(1)?,
        link_msgs: g(2)?,
        tso_frames: g(3)?,
        promoted: g(4)? != 0,
        claimed: g(5)? != 0,
        promoted_conns: g(6)?,
        held: g(7)?,
        held_dropped: g(8)?,
        not_forwarded: g(9)?,
        duplicate_syn: g(10)?,
        passed_through: g(11)?,
        arp_updates: g(12)?,
        duplicate_bytes: g(13)?,
        logged_before_kill: g(14)?,
        late_rsts: g(15)?,
        link_stalls: g(16)?,
        syn_cookies_validated: g(17)?,
        app_commits: g(18)?,
        app_reexecuted: g(19)?,
        app_refused: g(20)?,
        relinks: g(21)?,
        tls_full: g(22)?,
        tls_retried: g(23)?,
        tls_resumed: g(24)?,
        tls_tickets_offered: g(25)?,
        diverged: g(26)?,
        local_replies: g(27)?,
        replies_ahead: g(28)?,
        shadows_detached: g(29)?,
        generation_missing: g(30)?,
        detached_open: g(31)?,
    })
}

const SEP: char = '\u{1e}';

/// An outcome as one line (after `SIMRESULT\t<index>\t`).
pub fn outcome_line(o: &Outcome) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let stats: Vec<String> = stats_fields(&o.stats).iter().map(u64::to_string).collect();
    let violations: Vec<String> = o
        .violations
        .iter()
        .map(|v| v.replace(['\t', '\n', SEP], " "))
        .collect();
    let runs: Vec<String> = o.handler_runs.iter().map(u64::to_string).collect();
    let syn_steps: Vec<String> = o.focus_syn_steps.iter().map(|&s| opt(s)).collect();
    let phase = o
        .kill_phase
        .and_then(|p| TlsPhase::ALL.iter().position(|&q| q == p))
        .map(|i| i as u64);
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        opt(o.done_step),
        opt(o.done_time.map(|d| d.as_nanos() as u64)),
        o.steps,
        o.time.as_nanos() as u64,
        o.wall.as_micros() as u64,
        runs.join(","),
        stats.join(","),
        opt(phase),
        syn_steps.join(","),
        violations.join(&SEP.to_string())
    )
}

pub fn parse_outcome(line: &str) -> Option<Outcome> {
    let f: Vec<&str> = line.splitn(10, '\t').collect();
    let opt = |s: &str| -> Option<Option<u64>> {
        if s == "-" {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    let stats: Vec<u64> = f
        .get(6)?
        .split(',')
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let kill_phase = match opt(f.get(7)?)? {
        None => None,
        Some(i) => Some(*TlsPhase::ALL.get(usize::try_from(i).ok()?)?),
    };
    let violations = match f.get(9) {
        Some(v) if !v.is_empty() => v.split(SEP).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    Some(Outcome {
        done_step: opt(f.first()?)?,
        done_time: opt(f.get(1)?)?.map(Duration::from_nanos),
        steps: f.get(2)?.parse().ok()?,
        time: Duration::from_nanos(f.get(3)?.parse().ok()?),
        wall: Duration::from_micros(f.get(4)?.parse().ok()?),
        handler_runs: f
            .get(5)?
            .split(',')
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?,
        stats: stats_from(&stats)?,
        violations,
        fingerprint: None,
        kill_phase,
        focus_syn_steps: match *f.get(8)? {
            "" => Vec::new(),
            s => s.split(',').map(opt).collect::<Option<_>>()?,
        },
    })
}

/// The worker side: if [`WORKER_ENV`] names a batch file, run it and print
/// the results; returns whether it did.
pub fn worker_main() -> bool {
    let Some(path) = std::env::var_os(WORKER_ENV) else {
        return false;
    };
    let text = std::fs::read_to_string(&path).expect("reading the worker's batch file");
    let mut cache = BTreeMap::new();
    println!();
    for (i, line) in text.lines().enumerate() {
        let spec = parse_key(line, &mut cache).unwrap_or_else(|| panic!("bad spec line {line:?}"));
        let out = run_all(std::slice::from_ref(&spec), 1).remove(0);
        println!("SIMRESULT\t{i}\t{}", outcome_line(&out));
    }
    true
}

/// Run `specs` in child processes, `threads` at a time, in batches.
pub fn run_isolated(specs: &[RunSpec], threads: usize, iso: &Isolation) -> Vec<Outcome> {
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..specs.len()).collect());
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; specs.len()]);
    let dir = std::env::temp_dir();
    // Two tests of one binary may run matrices at once (cargo runs tests
    // in threads): each call names its batch files apart.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::thread::scope(|s| {
        for w in 0..threads.max(1) {
            let (queue, results, dir) = (&queue, &results, &dir);
            s.spawn(move || {
                let file = dir.join(format!(
                    "hotpair-sim-batch-{}-{call}-{w}",
                    std::process::id()
                ));
                loop {
                    let batch: Vec<usize> = {
                        let mut q = queue.lock().expect("queue");
                        let n = iso.batch.max(1).min(q.len());
                        q.drain(..n).collect()
                    };
                    if batch.is_empty() {
                        break;
                    }
                    let lines: Vec<String> = batch.iter().map(|&i| spec_key(&specs[i])).collect();
                    std::fs::write(&file, lines.join("\n") + "\n")
                        .expect("writing a worker's batch file");
                    let (got, failure) = run_child(iso, &file, batch.len());
                    let mut res = results.lock().expect("results");
                    let mut first_missing = None;
                    for (k, &i) in batch.iter().enumerate() {
                        match got.get(&k) {
                            Some(o) => res[i] = Some(o.clone()),
                            None if first_missing.is_none() => first_missing = Some(k),
                            None => {}
                        }
                    }
                    drop(res);
                    if let Some(k) = first_missing {
                        // The child died in this run: it is the culprit;
                        // the rest of the batch runs again elsewhere.
                        let why = failure.unwrap_or_else(|| "the worker ended early".into());
                        let i = batch[k];
                        results.lock().expect("results")[i] = Some(Outcome {
                            done_step: None,
                            done_time: None,
                            steps: 0,
                            time: Duration::ZERO,
                            violations: vec![format!("run did not finish: {why}")],
                            stats: RunStats::default(),
                            fingerprint: None,
                            handler_runs: Vec::new(),
                            wall: Duration::ZERO,
                            kill_phase: None,
                            focus_syn_steps: Vec::new(),
                        });
                        let mut q = queue.lock().expect("queue");
                        for &j in batch[k + 1..].iter().rev() {
                            if results.lock().expect("results")[j].is_none() {
                                q.push_front(j);
                            }
                        }
                    }
                }
                let _ = std::fs::remove_file(&file);
            });
        }
    });
    results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|o| o.expect("every run has an outcome"))
        .collect()
}

/// Run one child on a batch file: its results by batch index, and why it
/// failed if it did.
fn run_child(
    iso: &Isolation,
    file: &PathBuf,
    n: usize,
) -> (BTreeMap<usize, Outcome>, Option<String>) {
    let mut child = match Command::new(&iso.exe)
        .args(&iso.args)
        .env(WORKER_ENV, file)
        .env_remove("SIM_SCENARIO")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return (BTreeMap::new(), Some(format!("cannot start a worker: {e}"))),
    };
    let mut err = child.stderr.take().expect("piped");
    let echo = std::env::var("SIM_PROGRESS").is_ok_and(|v| !v.is_empty() && v != "0");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        if echo {
            eprint!("{s}");
        }
        s
    });
    let mut got = BTreeMap::new();
    let out = child.stdout.take().expect("piped");
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        // libtest may have printed "test worker ... " on the same line.
        if let Some(rest) = line.find("SIMRESULT\t").map(|i| &line[i + 10..]) {
            if let Some((k, o)) = rest.split_once('\t') {
                if let (Ok(k), Some(o)) = (k.parse::<usize>(), parse_outcome(o)) {
                    got.insert(k, o);
                }
            }
        }
    }
    let status = child.wait();
    let stderr = err_reader.join().unwrap_or_default();
    if got.len() == n {
        return (got, None);
    }
    let stuck: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("STUCK") || l.contains("panicked"))
        .collect();
    let why = match status {
        Ok(s) if s.code() == Some(3) => format!(
            "livelock — {}",
            stuck
                .first()
                .map_or("the watchdog stopped the worker", |l| l.trim())
        ),
        Ok(s) => format!(
            "the worker exited with {s}{}",
            stuck
                .first()
                .map_or(String::new(), |l| format!(": {}", l.trim()))
        ),
        Err(e) => format!("waiting for the worker failed: {e}"),
    };
    (got, Some(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_specs_survive_the_pipe() {
        let o = Outcome {
            done_step: Some(42),
            done_time: Some(Duration::from_micros(1234)),
            steps: 99,
            time: Duration::from_millis(2001),
            violations: vec!["promise 4: a\tb".into(), "stalled: c\nd".into()],
            stats: RunStats {
                lan_frames: 7,
                promoted: true,
                late_rsts: 3,
                tls_resumed: 2,
                ..RunStats::default()
            },
            fingerprint: None,
            handler_runs: vec![1, 2, 3],
            wall: Duration::from_millis(5),
            kill_phase: Some(TlsPhase::FlightLogged),
            focus_syn_steps: vec![Some(7), None, Some(9)],
        };
        let back = parse_outcome(&outcome_line(&o)).expect("parses");
        assert_eq!(back.done_step, Some(42));
        assert_eq!(back.done_time, o.done_time);
        assert_eq!((back.steps, back.time), (99, o.time));
        assert_eq!(back.violations, vec!["promise 4: a b", "stalled: c d"]);
        assert_eq!(
            (
                back.stats.lan_frames,
                back.stats.promoted,
                back.stats.late_rsts
            ),
            (7, true, 3)
        );
        assert_eq!(back.handler_runs, [1, 2, 3]);
        assert_eq!(back.wall, o.wall);
        assert_eq!(back.stats.tls_resumed, 2);
        assert_eq!(
            (back.kill_phase, back.focus_syn_steps),
            (Some(TlsPhase::FlightLogged), vec![Some(7), None, Some(9)])
        );
        let none = Outcome {
            done_step: None,
            done_time: None,
            violations: vec![],
            kill_phase: None,
            focus_syn_steps: Vec::new(),
            ..o
        };
        let back = parse_outcome(&outcome_line(&none)).expect("parses");
        assert!(back.done_step.is_none() && back.violations.is_empty());
        assert!(back.kill_phase.is_none() && back.focus_syn_steps.is_empty());

        let mut cache = ExpectCache::new();
        for key in [
            "duplex handshake 5 lossy none",
            "duplex close 1 clean owner:17:silent",
            "dual-role upload 2 lossy A:3:lost",
            "ring3 keepalive 1 clean C:40:silent",
            "duplex app 3 clean primary:120:app checks",
            "dual-role app 1 lossy B:7:lan checks",
            "duplex app 1 clean none checks",
        ] {
            let spec = parse_key(key, &mut cache).expect("parses");
            assert_eq!(spec_key(&spec), key);
        }
        assert!(parse_key("duplex close 1 muddy none", &mut cache).is_none());
        assert!(parse_key("duplex close 1 clean none extra", &mut cache).is_none());
        assert!(parse_key("duplex close 1 clean C:3:lost", &mut cache).is_none());
        let ring = parse_key("ring3 keepalive 1 clean none", &mut cache).expect("parses");
        assert_eq!(ring.scenario.conns.len(), 3);
    }
}
