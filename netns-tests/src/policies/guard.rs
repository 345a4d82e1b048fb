//! The static digest guard: a docroot file altered under a running node
//! is served logged, not from a stale digest.

use super::*;

// ---- the digest guard -----------------------------------------------------------

/// A node process the test started itself (`hotpair node` in the node's
/// namespace, its output appended to `log`); SIGKILLed on drop.
pub(super) struct NodeProc {
    pub(super) child: Child,
    pub(super) log: PathBuf,
    pub(super) name: String,
}

impl NodeProc {
    pub(super) fn start(lab: &Lab, name: &str, config: &Path, log: PathBuf) -> NodeProc {
        let out = File::create(&log).expect("creating a node log");
        let err = out.try_clone().expect("cloning a file handle");
        let bin = hotpair_bin();
        let child = Command::new(&bin)
            .args(["lab", "exec", "--prefix", &lab.prefix, name, "--"])
            .arg(&bin)
            .arg("node")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("RUST_LIB_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting node {name}: {e}"));
        NodeProc {
            child,
            log,
            name: name.to_owned(),
        }
    }

    pub(super) fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    pub(super) fn log_text(&self) -> String {
        read_log(&self.log)
    }

    /// Waits until the log holds a line with every one of `needles`.
    pub(super) fn wait_log(&mut self, lab: &Lab, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = log_lines(&self.log_text(), needles).into_iter().next() {
                return l;
            }
            assert!(
                self.alive(),
                "[{}] node {} exited; its log:\n{}",
                lab.test,
                self.name,
                self.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "[{}] node {}: no log line with {needles:?} within {timeout:?}; its log:\n{}",
                lab.test,
                self.name,
                self.log_text()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL (fail-stop); returns the instant just before.
    pub(super) fn kill(&mut self) -> Instant {
        let t = Instant::now();
        let _ = self.child.kill();
        let _ = self.child.wait();
        t
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls /static/index.html from the client namespace until it answers 200.
pub(super) fn wait_serving(lab: &Lab, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let u = url("/static/index.html");
    loop {
        let out = lab.get_status_within(&u, 1);
        if out.stdout == b"200" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] the restarted pair did not serve {u} within {timeout:?}: {}",
            lab.test,
            describe(&out)
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// Copies the (flat) docroot to `to` and changes one byte of 50m.bin there.
pub(super) fn altered_docroot(from: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).expect("creating the altered docroot");
    for e in std::fs::read_dir(from).expect("reading the docroot") {
        let p = e.expect("docroot entry").path();
        assert!(
            p.is_file(),
            "the lab's docroot is not flat: {}",
            p.display()
        );
        std::fs::copy(&p, to.join(p.file_name().expect("a file name"))).expect("copying");
    }
    let big = to.join(BIG_FILE);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&big)
        .expect("opening the copy");
    use std::io::{Read, Seek, SeekFrom};
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(GUARD_FLIP_AT)).expect("seek");
    f.read_exact(&mut b).expect("read");
    b[0] ^= 0xff;
    f.seek(SeekFrom::Start(GUARD_FLIP_AT)).expect("seek");
    f.write_all(&b).expect("write");
    big
}

/// The digest guard end to end (see the module docs). The lab gives every
/// node the same docroot, so after `lab up` both nodes are SIGKILLed and
/// started again by the test (`hotpair node` in their namespaces, as the lab
/// starts them): n1 with the lab's n1.toml, n2 with a copy of the lab's
/// n2.toml whose /static/ root is a copy of the docroot with one byte of
/// 50m.bin changed.
pub fn digest_guard(test: &str) {
    let Some(lab) = KeptLab::up(test, "static") else {
        return;
    };
    let (tmp, began) = (&lab.tmp, lab.began);
    let docroot = lab.docroot();
    let state = lab.state_dir();
    for node in ["n1", "n2"] {
        let fell = log_lines(
            &read_log(&state.join(format!("{node}.log"))),
            &[FALLBACK_LINE],
        );
        assert!(
            fell.is_empty(),
            "[{test}] {node} fell back to logged with identical docroots: {fell:?}"
        );
    }

    // n2's copy of 50m.bin differs in one byte.
    let alt_root = tmp.path().join("docroot-n2");
    let alt_big = altered_docroot(&docroot, &alt_root);
    let n2_toml = std::fs::read_to_string(state.join("n2.toml")).expect("reading n2.toml");
    let root_line = format!(
        "root = {}",
        serde_json::Value::String(docroot.to_string_lossy().into_owned())
    );
    assert_eq!(
        n2_toml.matches(&root_line).count(),
        1,
        "[{test}] n2.toml does not name the docroot as `{root_line}` once:\n{n2_toml}"
    );
    let alt_line = format!(
        "root = {}",
        serde_json::Value::String(alt_root.to_string_lossy().into_owned())
    );
    let n2_cfg = state.join("n2-guard.toml");
    std::fs::write(&n2_cfg, n2_toml.replace(&root_line, &alt_line)).expect("writing n2-guard.toml");

    lab.kill("n2");
    lab.kill("n1");
    let mut n1 = NodeProc::start(
        &lab,
        "n1",
        &state.join("n1.toml"),
        state.join("n1-guard.log"),
    );
    n1.wait_log(
        &lab,
        &["replication link: waiting for the peer"],
        Duration::from_secs(60),
    );
    let mut n2 = NodeProc::start(&lab, "n2", &n2_cfg, state.join("n2-guard.log"));
    for n in [&mut n1, &mut n2] {
        n.wait_log(&lab, &["replication link up"], Duration::from_secs(60));
    }
    wait_serving(&lab, Duration::from_secs(30));
    for n in [&mut n1, &mut n2] {
        let line = n.wait_log(
            &lab,
            &[
                FALLBACK_LINE,
                "route=/static/",
                "the peer's content differs",
            ],
            Duration::from_secs(10),
        );
        report(&format!("[{test}] {}: {line}", n.name));
    }

    // A download, the primary killed mid-way.
    let cap = Capture::start(&lab, tmp.path());
    let mut dl = Download::start(&lab, tmp.path());
    dl.wait_for(&lab, KILL_AT_BYTES);
    let at_kill = dl.sampler.latest();
    let link = link_bytes_acked(&lab, "n1", link_port(&lab));
    let n1_alive = n1.alive();
    let kill_epoch = epoch_now();
    let kill = n1.kill();
    report(&format!(
        "[{test}] SIGKILL n1 (primary) {:.1} MiB into the download; link n1->n2 had carried {}",
        at_kill as f64 / (1 << 20) as f64,
        link.map_or("?".to_owned(), |b| format!(
            "{:.2} MiB",
            b as f64 / (1 << 20) as f64
        ))
    ));
    let mut failures = Vec::new();
    if !n1_alive {
        failures.push("n1 was no longer running when the test came to kill it".to_owned());
    }
    // The download first: it ends only once n2 took over, so its log says
    // so by then (read at once after the kill, it raced n2's takeover).
    failures.extend(dl.finish(&lab, &docroot.join(BIG_FILE), kill, Some(&alt_big)));
    failures.extend(takeover_failures(
        "n1",
        &n1.log_text(),
        "n2",
        &n2.log_text(),
    ));
    match link {
        Some(b) if b >= at_kill => {}
        other => failures.push(format!(
            "the link carried {other:?} bytes from n1 before the kill, less than the {at_kill} \
             bytes of the reply the client had: /static/ was not logged"
        )),
    }
    if !n2.alive() {
        failures.push("n2, the survivor, died (see n2-guard.log)".to_owned());
    }
    let c = cap.stop();
    failures.extend(rst_failure(&c, kill_epoch));
    fail_if(&lab, &failures);
    drop(n2);
    drop(n1);
    report(&format!(
        "[{test}] PASS: one byte differs, /static/ logged, the download is the primary's \
         content; {:.1} s",
        began.elapsed().as_secs_f64()
    ));
}
