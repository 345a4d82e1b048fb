//! `[hooks] on_change` (keepalived's `notify`) in a duplex lab (n1
//! primary, n2 owner) given a hook with `lab up --hook`: a script that
//! appends `NODE ADDRESS OLD NEW` to a file records each node's
//! transitions — starting, waiting, replicated on both, then on the
//! survivor `replicated promoted` after `lab kill n1`. The script sleeps
//! after each line, and the survivor's takeover and service do not wait
//! for it (hooks run off the stack loop).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use hotpair_netns_tests::{report, Lab, TempDir};

const ADDRESS: &str = "10.77.0.10";

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits up to `secs` for `line` in the hook's record.
fn wait_line(lab: &Lab, out: &Path, line: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !lines(out).iter().any(|l| l == line) {
        assert!(
            Instant::now() < deadline,
            "[{}] no {line:?} in the hook's record after {secs} s:\n{}\n--- logs:\n{}",
            lab.test,
            lines(out).join("\n"),
            lab.node_logs(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_hook_records_the_survivors_takeover() {
    let test = "hooks";
    let dir = TempDir::new(test);
    let out = dir.path().join("transitions");
    let script = dir.path().join("on_change.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$HOTPAIR_NODE $1 $2 $3\" >> '{}'\nsleep 0.3\n",
            out.display()
        ),
    )
    .expect("writing the hook");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the hook");
    let script = script.to_string_lossy().into_owned();
    let Some(lab) = Lab::up_with(test, &["--mode", "duplex", "--hook", &script]) else {
        return;
    };
    for n in ["n1", "n2"] {
        wait_line(&lab, &out, &format!("{n} {ADDRESS} waiting replicated"), 20);
    }
    // Each node's first state comes from `starting`.
    for n in ["n1", "n2"] {
        let first = lines(&out)
            .into_iter()
            .find(|l| l.starts_with(&format!("{n} ")))
            .unwrap_or_default();
        assert!(
            first.starts_with(&format!("{n} {ADDRESS} starting ")),
            "[{test}] {n}'s first transition: {first:?}"
        );
    }
    let killed = lab.kill("n1");
    wait_line(&lab, &out, &format!("n2 {ADDRESS} replicated promoted"), 20);
    let took = killed.elapsed();
    // The survivor serves (the hook's sleeps did not hold its loop).
    let body = lab.get("/static/index.html");
    assert!(
        !body.is_empty(),
        "[{test}] nothing served after the takeover"
    );
    report(&format!(
        "[{test}] hook recorded n2's takeover within {:.2} s of the kill:\n{}",
        took.as_secs_f64(),
        lines(&out).join("\n")
    ));
}
