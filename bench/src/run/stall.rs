//! The stall series: fresh duplex labs whose node is signalled or
//! switched over mid-download, the stall measured by the client.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hotpair::stall::{measure, Sampler};

use super::{check_interrupt, host::sha256, Bench, SERVICE};
use crate::labs::{self, Lab};
use crate::loadgen::LatencySummary;
use crate::model::{StallSet, TlsStall};
use crate::nginx::{TlsFiles, TLS_SUITE};
use crate::tls;

pub(super) const STALL_FILE: &str = "stall.bin";
/// curl's `--limit-rate` for the stall download: slow enough that the
/// signal lands mid-reply.
const STALL_RATE: &str = "20M";

/// The stall download's size and how much has arrived when the victim is
/// signalled: 50 MB / 20 MiB (--quick: 16 / 8 MiB, lab start-up is faster).
pub(super) fn stall_sizes(quick: bool) -> (u64, u64) {
    if quick {
        (16 << 20, 8 << 20)
    } else {
        (50 << 20, 20 << 20)
    }
}

/// The lab a stall run kills a node of: a fresh duplex lab under prefix
/// letter `tag`; `logged`: /static/ replies logged (else the lab's
/// default, `static`); `tls`: HTTPS on 443 too (`lab up --tls`, the
/// bench's one suite); `https`: the download is over HTTPS (else plain
/// HTTP on 80).
#[derive(Clone, Copy, Debug)]
struct StallLab {
    tag: char,
    logged: bool,
    tls: bool,
    https: bool,
}

impl Bench<'_> {
    /// One kill of a fresh duplex lab (`how`): the stall and the longest
    /// pause before the signal, in ms.
    fn one_stall(
        &self,
        how: StallLab,
        victim: &str,
        signal: i32,
        want_sha: &str,
        i: u32,
    ) -> Result<(f64, f64, (u64, u64))> {
        let (lab, hb, pid) = self.victim_lab(how, victim, i)?;
        if self.o.stall_reader {
            let (ms, before) = tls::stall::one_kill(
                &lab,
                pid,
                signal,
                how.https,
                &format!("/static/{STALL_FILE}"),
                stall_sizes(self.o.quick).1,
                want_sha,
            )
            .with_context(|| format!("download during the {victim} kill"))?;
            return Ok((ms, before, hb));
        }
        if self.o.stall_client_rmem > 0 {
            let max = self.o.stall_client_rmem;
            let st = Command::new("ip")
                .args(["netns", "exec", &lab.client_ns(), "sysctl", "-q", "-w"])
                .arg(format!("net.ipv4.tcp_rmem=4096 {} {max}", max.min(131_072)))
                .status()
                .context("running sysctl in the client namespace")?;
            if !st.success() {
                bail!("setting the client's tcp_rmem failed ({st})");
            }
        }
        let prefix = lab.prefix.clone();
        let file = self.logs.join(format!("stall-{prefix}.bin"));
        let _ = std::fs::remove_file(&file);
        // HTTPS: curl (OpenSSL) checks the lab's certificate, which is for
        // the service address too.
        let (scheme, tls_args) = if how.https {
            let ca = TlsFiles::of(&lab)?.ca;
            (
                "https",
                vec!["--cacert".to_string(), ca.display().to_string()],
            )
        } else {
            ("http", Vec::new())
        };
        let start = Instant::now();
        let mut curl = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.client_ns(),
                "curl",
                "-sS",
                "--fail",
                "--max-time",
                "60",
            ])
            .args(&tls_args)
            .args(["--limit-rate", STALL_RATE, "-o"])
            .arg(&file)
            .arg(format!("{scheme}://{SERVICE}/static/{STALL_FILE}"))
            .stderr(Stdio::piped())
            .spawn()
            .context("starting curl")?;
        let sampler = Sampler::start(file.clone(), start, Duration::from_millis(10));
        let deadline = start + Duration::from_secs(5);
        let kill_at_bytes = stall_sizes(self.o.quick).1;
        while sampler.latest() < kill_at_bytes && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let kill_at = start.elapsed();
        // SAFETY: kill(2) on the node's pid, which the lab started.
        unsafe { libc::kill(pid, signal) };
        let st = curl.wait()?;
        let end = start.elapsed();
        if signal == libc::SIGSTOP {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let samples = sampler.finish();
        let mut err = String::new();
        if let Some(mut e) = curl.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        if !st.success() {
            bail!("download during the {victim} kill failed ({st}): {err}");
        }
        let sha = sha256(&file)?;
        let _ = std::fs::remove_file(&file);
        if sha != want_sha {
            bail!("download during the {victim} kill: wrong SHA-256 {sha}, want {want_sha}");
        }
        drop(lab);
        let s = measure(&samples, kill_at, end, true);
        Ok((
            s.after_kill.as_secs_f64() * 1e3,
            s.before_kill.as_secs_f64() * 1e3,
            hb,
        ))
    }

    /// A fresh duplex lab on the stall docroot (`how`), its heartbeat
    /// settings and the victim's pid.
    fn victim_lab(&self, how: StallLab, victim: &str, i: u32) -> Result<(Lab, (u64, u64), i32)> {
        check_interrupt()?;
        let prefix = format!("{}{}", self.base, how.tag);
        let mut args: Vec<String> = ["--mode", "duplex", "--docroot"]
            .iter()
            .map(|s| s.to_string())
            .chain([self.stall_docroot.display().to_string()])
            .collect();
        if how.logged {
            args.extend(["--static-policy".into(), "logged".into()]);
        }
        if how.tls {
            args.extend([
                "--tls".into(),
                "--tls-cipher-suites".into(),
                TLS_SUITE.into(),
            ]);
        }
        let lab = Lab::up(
            &self.exe,
            &prefix,
            &args,
            &self.logs.join(format!("lab-{prefix}-{i}.log")),
        )?;
        let hb = lab
            .heartbeat_ms()
            .context("no heartbeat settings in lab status")?;
        let node = lab.node(if victim == "primary" { "n1" } else { "n2" })?;
        let pid = node.pid.context("victim has no pid")?;
        Ok((lab, hb, pid))
    }

    /// One planned switchover (SIGTERM, the path `hotpair switchover`
    /// takes) of a fresh duplex lab under open-loop keep-alive requests:
    /// the worst request latency (counted from when each was due, so a
    /// request held up by the switchover counts the whole gap), in ms.
    /// Also the worst request due in the first 1.3 s, before the stop
    /// (at about 1.45 s of the generator's clock): the baseline.
    fn one_switchover(&self, victim: &str, i: u32) -> Result<(f64, f64, (u64, u64))> {
        let how = StallLab {
            tag: 'w',
            logged: false,
            tls: false,
            https: false,
        };
        let (lab, hb, pid) = self.victim_lab(how, victim, i)?;
        let secs = 3.0;
        let child = labs::in_ns(&lab.client_ns(), &self.exe)
            .args(["bench", "loadgen", "--addr", &format!("{SERVICE}:80")])
            .args(["--path", "/static/index.html", "--rate", "2000"])
            .args(["--duration", &secs.to_string(), "--conns", "4"])
            .args(["--split-at", "1.3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting hotpair bench loadgen")?;
        std::thread::sleep(Duration::from_secs_f64(secs / 2.0));
        // SAFETY: kill(2) on the node's pid, which the lab started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let o = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&o.stdout);
        if !o.status.success() {
            bail!(
                "requests across the {victim} switchover failed ({}): {text} {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let summary: LatencySummary =
            serde_json::from_str(text.trim()).context("parsing loadgen output")?;
        if summary.errors > 0 {
            bail!(
                "{} request(s) failed across the {victim} switchover",
                summary.errors
            );
        }
        drop(lab);
        let before = summary
            .max_before_us
            .context("loadgen reported no baseline (--split-at)")?;
        Ok((summary.max_us / 1e3, before / 1e3, hb))
    }

    pub(super) fn stalls(&mut self) -> Result<()> {
        // Planned switchovers, measured by requests (1 ms resolution, not
        // a download's 10 ms sampling and curl's rate-limit pauses).
        let switchovers: &[&str] = if self.wants_stall("switchover") {
            &["primary", "owner"]
        } else {
            &[]
        };
        for &victim in switchovers {
            let mut set = StallSet {
                victim: victim.into(),
                signal: "switchover".into(),
                stalls_ms: Vec::new(),
                heartbeat_interval_ms: 0,
                heartbeat_timeout_ms: 0,
                baseline_ms: Vec::new(),
            };
            for i in 0..self.o.kills {
                let (ms, before, (hi, ht)) = self.one_switchover(victim, i)?;
                set.heartbeat_interval_ms = hi;
                set.heartbeat_timeout_ms = ht;
                set.stalls_ms.push(ms);
                set.baseline_ms.push(before);
                self.progress(&format!(
                    "switchover {victim} {}/{}: worst request {ms:.1} ms \
                     (before the stop: {before:.1} ms)",
                    i + 1,
                    self.o.kills
                ));
            }
            self.r.stalls.push(set);
        }
        let want = sha256(&self.stall_docroot.join(STALL_FILE))?;
        // The download's reply is logged, as before content policies.
        let how = StallLab {
            tag: 'k',
            logged: self.r.meta.static_policy_available,
            tls: false,
            https: false,
        };
        // SIGTERM: a planned stop — the node exits, its kernel closes the
        // link, and the peer takes over without waiting for the heartbeat.
        for (signal, sname) in [
            (libc::SIGKILL, "SIGKILL"),
            (libc::SIGSTOP, "SIGSTOP"),
            (libc::SIGTERM, "SIGTERM"),
        ] {
            if !self.wants_stall(sname) {
                continue;
            }
            for victim in ["primary", "owner"] {
                let mut set = StallSet {
                    victim: victim.into(),
                    signal: sname.into(),
                    stalls_ms: Vec::new(),
                    heartbeat_interval_ms: 0,
                    heartbeat_timeout_ms: 0,
                    baseline_ms: Vec::new(),
                };
                for i in 0..self.o.kills {
                    let (ms, before, (hi, ht)) = self.one_stall(how, victim, signal, &want, i)?;
                    set.heartbeat_interval_ms = hi;
                    set.heartbeat_timeout_ms = ht;
                    set.stalls_ms.push(ms);
                    set.baseline_ms.push(before);
                    self.progress(&format!(
                        "stall {victim} {sname} {}/{}: {ms:.0} ms (before the signal: \
                         {before:.0} ms; heartbeat {hi}/{ht} ms)",
                        i + 1,
                        self.o.kills
                    ));
                }
                self.r.stalls.push(set);
            }
        }
        Ok(())
    }

    /// The failover stall over HTTPS beside HTTP's: SIGKILL of the
    /// primary and of the owner, /static/ `logged` (as the plain series)
    /// then `static` (the owner seals its own copy; not in --quick). Each
    /// kill's HTTPS run has an HTTP one beside it — the same `--tls` lab
    /// built afresh, the download on port 80 — in alternating order, so
    /// whatever the machine does hits both alike.
    pub(super) fn tls_stalls(&mut self) -> Result<()> {
        let want = sha256(&self.stall_docroot.join(STALL_FILE))?;
        let policies: &[&str] = if self.o.quick {
            &["logged"]
        } else {
            &["logged", "static"]
        };
        for &policy in policies {
            for victim in ["primary", "owner"] {
                let set = || StallSet {
                    victim: victim.into(),
                    signal: "SIGKILL".into(),
                    stalls_ms: Vec::new(),
                    heartbeat_interval_ms: 0,
                    heartbeat_timeout_ms: 0,
                    baseline_ms: Vec::new(),
                };
                // [HTTP, HTTPS]
                let mut sets = [set(), set()];
                for i in 0..self.o.kills {
                    let order: [usize; 2] = if i % 2 == 0 { [0, 1] } else { [1, 0] };
                    for k in order {
                        let https = k == 1;
                        let how = StallLab {
                            tag: if https { 'g' } else { 'h' },
                            logged: policy == "logged",
                            tls: true,
                            https,
                        };
                        let scheme = if https { "HTTPS" } else { "HTTP" };
                        // Not curl (one_stall): its --limit-rate pauses differ
                        // between the schemes; tls/stall.rs says why.
                        let (lab, (hi, ht), pid) = self.victim_lab(how, victim, i)?;
                        let (ms, before) = tls::stall::one_kill(
                            &lab,
                            pid,
                            libc::SIGKILL,
                            https,
                            &format!("/static/{STALL_FILE}"),
                            stall_sizes(self.o.quick).1,
                            &want,
                        )
                        .with_context(|| format!("{scheme} stall, {policy}, {victim} killed"))?;
                        drop(lab);
                        sets[k].heartbeat_interval_ms = hi;
                        sets[k].heartbeat_timeout_ms = ht;
                        sets[k].stalls_ms.push(ms);
                        // The download's own longest pause before the
                        // signal: results.json.
                        sets[k].baseline_ms.push(before);
                        self.progress(&format!(
                            "tls stall {scheme} {policy} {victim} SIGKILL {}/{}: {ms:.0} ms",
                            i + 1,
                            self.o.kills
                        ));
                    }
                }
                if let Some(t) = self.r.tls.as_mut() {
                    let [http, https] = sets;
                    for (set, https) in [(http, false), (https, true)] {
                        t.stalls.push(TlsStall {
                            policy: policy.into(),
                            set,
                            https,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
