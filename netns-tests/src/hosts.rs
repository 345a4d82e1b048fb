//! Machines made of network namespaces, for tests that follow the
//! operator's documentation rather than `hotpair lab`: a [`Site`] of
//! "hosts" with one NIC each (`eth0`) on a switch namespace's bridge, a
//! client namespace on the same LAN, the commands of a marked block of
//! `docs/operations.md` ([`doc_block`]); a packet capture in any of the
//! namespaces is [`crate::capture::Capture::in_namespace`].
//!
//! A host is a network namespace plus a mount namespace of its own, held
//! by an anchor process that mounted, once, private file systems over the
//! paths a machine's operator writes to: `/usr/local` and `/etc` as
//! overlays (the real ones below, the host's writes in a directory of its
//! own: where the doc installs the binary, the man page, the config and
//! the unit), `/run/hotpair` (admin sockets, crash-loop counts) and `/srv`
//! (the content) as bind mounts. Every command on the host enters both
//! namespaces (`nsenter`). So the doc's commands run as written without
//! touching the real machine's files, and two hosts' admin sockets
//! (`/run/hotpair/n1.sock`, …) do not meet. Every namespace carries the
//! site's unique prefix and is deleted on drop, also when the test panics
//! (after the node logs are printed).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use crate::{describe, run_with_timeout, Background, TempDir};

/// The documented operator's guide the walkthrough follows.
pub fn operations_doc() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("netns-tests lives inside the workspace")
        .join("docs/operations.md")
}

/// The `sh` block right after the marker `<!-- walkthrough:NAME -->` in
/// `text`, its indentation removed: the commands a reader pastes. Panics
/// naming the marker when it or its block is missing, so a doc edit that
/// drops it fails the test rather than skipping a step.
pub fn doc_block(text: &str, name: &str) -> String {
    let marker = format!("<!-- walkthrough:{name} -->");
    let at = text
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/operations.md has no {marker}"));
    let mut lines = text[at + marker.len()..].lines().skip(1);
    let open = lines
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{marker}: no block after it"));
    assert_eq!(
        open.trim(),
        "```sh",
        "{marker}: the next line must open a ```sh block"
    );
    let indent = open.len() - open.trim_start().len();
    let mut body = Vec::new();
    for l in lines {
        if l.trim() == "```" {
            return body.join("\n") + "\n";
        }
        body.push(l.get(indent..).unwrap_or(l.trim_start()));
    }
    panic!("{marker}: the block is not closed");
}

/// The block's commands, one per entry: continuation lines (ending in `\`)
/// joined, blank lines dropped.
pub fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in block.lines() {
        if let Some(head) = l.strip_suffix('\\') {
            cur.push_str(head);
            continue;
        }
        cur.push_str(l);
        if !cur.trim().is_empty() {
            out.push(cur.trim().to_owned());
        }
        cur.clear();
    }
    out
}

/// `text` with every whole-word occurrence of `a` and `b` swapped (`a`
/// not followed or preceded by a digit or a dot-digit: "10.0.0.1" is not
/// the start of "10.0.0.10").
pub fn swap_words(text: &str, a: &str, b: &str) -> String {
    fn word_at(text: &str, i: usize, w: &str) -> bool {
        if !text[i..].starts_with(w) {
            return false;
        }
        let before = text[..i].chars().next_back();
        let after = text[i + w.len()..].chars().next();
        let digitish = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        !digitish(before) && !digitish(after)
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if word_at(text, i, a) {
            out.push_str(b);
            i += a.len();
        } else if word_at(text, i, b) {
            out.push_str(a);
            i += b.len();
        } else {
            let c = text[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// One machine: its network namespace and the anchor of its mount
/// namespace.
pub struct Host {
    pub name: String,
    pub ns: String,
    /// Its home: the commands' working directory (where `./pair` goes).
    pub home: PathBuf,
    /// The process holding its mount namespace (in its network namespace).
    anchor: u32,
}

/// What a host's anchor runs (`$1` its root dir, `$2` the content): its
/// file systems over the machine's, mounted once for every command of the
/// host (two overlays sharing an upper directory would be undefined
/// behaviour), then it sleeps, holding the mount namespace.
const HOST_MOUNTS: &str = "r=\"$1\" && \
     mount -t overlay overlay -o \"lowerdir=/usr/local,upperdir=$r/usr-up,workdir=$r/usr-work\" /usr/local && \
     mount -t overlay overlay -o \"lowerdir=/etc,upperdir=$r/etc-up,workdir=$r/etc-work\" /etc && \
     mount --bind \"$r/run\" /run/hotpair && mount --bind \"$2\" /srv && \
     echo mounted && exec sleep infinity";

impl Host {
    /// `sh -ec SCRIPT` in the host's network and mount namespaces (those
    /// of its anchor), from its home, with a root's PATH.
    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.anchor))
            .args(["--mount", "--net"])
            .arg(format!("--wd={}", self.home.display()))
            .args(["sh", "-ec", script])
            .env("PATH", "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        cmd
    }

    /// Runs `script` with `sh -e` on this host (time limit `timeout`).
    pub fn sh(&self, script: &str, timeout: Duration) -> Output {
        run_with_timeout(&mut self.command(script), timeout)
    }

    /// Runs `script` and panics with its output unless it succeeded;
    /// its stdout.
    #[track_caller]
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "on {}: `{}` failed\n{}",
            self.name,
            script.trim(),
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `script` in the background (`exec` it for one pid all
    /// along), output to `dir/<tag>.out|err`.
    pub fn spawn(&self, script: &str, dir: &Path, tag: &str) -> Background {
        Background::spawn(self.command(script), dir, tag)
    }
}

/// The namespaces of one test and what runs in them; `Drop` ends the
/// processes and deletes the namespaces.
pub struct Site {
    pub test: String,
    pub prefix: String,
    pub hosts: Vec<Host>,
    /// The switch (bridge `lan`) and the client namespaces.
    pub switch: String,
    pub client: String,
    /// Processes to stop at the end, with the tags their logs go under.
    pub procs: Vec<(String, Background)>,
    /// The hosts' anchors (holding their mount namespaces).
    anchors: Vec<Background>,
    namespaces: Vec<String>,
    pub dir: TempDir,
}

/// Runs `ip ARGS…` (or any command) in the root namespace; panics on failure.
#[track_caller]
fn run_ok(args: &[&str]) -> String {
    let out = run_with_timeout(
        Command::new(args[0]).args(&args[1..]),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "`{}` failed\n{}",
        args.join(" "),
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Site {
    /// `n` hosts with `eth0` at `host_addr(i)` (CIDR) and a default route
    /// via `gateway`, the switch holding `gateway` (CIDR) on its bridge,
    /// and a client at `client_addr` (CIDR) with the same default route.
    pub fn new(
        test: &str,
        n: usize,
        host_addr: impl Fn(usize) -> String,
        gateway_cidr: &str,
        client_addr: &str,
    ) -> Site {
        let prefix = format!("wt{}", std::process::id());
        let dir = TempDir::new(&prefix);
        let mut site = Site {
            test: test.to_owned(),
            prefix: prefix.clone(),
            hosts: Vec::new(),
            switch: format!("{prefix}-sw"),
            client: format!("{prefix}-cl"),
            procs: Vec::new(),
            anchors: Vec::new(),
            namespaces: Vec::new(),
            dir,
        };
        let gateway = gateway_cidr.split('/').next().expect("CIDR");
        // The guard exists before anything is made: a failure half-way
        // is torn down too.
        let srv = site.dir.path().join("srv");
        std::fs::create_dir_all(&srv).expect("creating the content dir");
        for mount_point in ["/run/hotpair", "/srv"] {
            std::fs::create_dir_all(mount_point)
                .unwrap_or_else(|e| panic!("{mount_point} must exist as a mount point: {e}"));
        }
        for ns in [site.switch.clone(), site.client.clone()] {
            site.add_ns(&ns);
        }
        run_ok(&[
            "ip",
            "-n",
            &site.switch,
            "link",
            "add",
            "lan",
            "type",
            "bridge",
        ]);
        run_ok(&[
            "ip",
            "-n",
            &site.switch,
            "addr",
            "add",
            gateway_cidr,
            "dev",
            "lan",
        ]);
        run_ok(&["ip", "-n", &site.switch, "link", "set", "lan", "up"]);
        let plug = |site: &Site, ns: &str, port: &str, addr: &str| {
            run_ok(&[
                "ip",
                "link",
                "add",
                "eth0",
                "netns",
                ns,
                "type",
                "veth",
                "peer",
                "name",
                port,
                "netns",
                &site.switch,
            ]);
            run_ok(&[
                "ip",
                "-n",
                &site.switch,
                "link",
                "set",
                port,
                "master",
                "lan",
                "up",
            ]);
            run_ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            run_ok(&["ip", "-n", ns, "addr", "add", addr, "dev", "eth0"]);
            run_ok(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
            run_ok(&[
                "ip", "-n", ns, "route", "add", "default", "via", gateway, "dev", "eth0",
            ]);
        };
        let client = site.client.clone();
        plug(&site, &client, "cl", client_addr);
        for i in 1..=n {
            let name = format!("h{i}");
            let ns = format!("{prefix}-{name}");
            site.add_ns(&ns);
            plug(&site, &ns, &name, &host_addr(i));
            let root = site.dir.path().join(&name);
            for d in ["home", "run", "usr-up", "usr-work", "etc-up", "etc-work"] {
                std::fs::create_dir_all(root.join(d)).expect("creating a host dir");
            }
            // The host's anchor: its mounts, made once, in a mount
            // namespace `ip netns exec` gives it (and that /sys is the
            // network namespace's).
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &ns, "sh", "-c", HOST_MOUNTS, "sh"])
                .arg(&root)
                .arg(&srv);
            let mut anchor = Background::spawn(cmd, site.dir.path(), &format!("anchor-{name}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while !anchor.stdout_text().contains("mounted") {
                assert!(
                    !anchor.exited() && Instant::now() < deadline,
                    "[{test}] {name}: its file systems cannot be mounted: {}",
                    anchor.stderr_text()
                );
                thread::sleep(Duration::from_millis(10));
            }
            let host = Host {
                name,
                ns,
                home: root.join("home"),
                anchor: anchor.pid(),
            };
            site.anchors.push(anchor);
            site.hosts.push(host);
        }
        site
    }

    /// A client beyond the LAN: namespace `PREFIX-far` on a network of
    /// its own (`client_cidr`), routed by the switch namespace (which
    /// holds `router_cidr` there and forwards) — what reaches the service
    /// address through the LAN's router. Its name.
    pub fn add_far_client(&mut self, router_cidr: &str, client_cidr: &str) -> String {
        let far = format!("{}-far", self.prefix);
        self.add_ns(&far);
        let router = router_cidr.split('/').next().expect("CIDR");
        let sw = self.switch.clone();
        run_ok(&[
            "ip", "link", "add", "eth0", "netns", &far, "type", "veth", "peer", "name", "far",
            "netns", &sw,
        ]);
        run_ok(&["ip", "-n", &sw, "addr", "add", router_cidr, "dev", "far"]);
        run_ok(&["ip", "-n", &sw, "link", "set", "far", "up"]);
        run_ok(&[
            "ip",
            "netns",
            "exec",
            &sw,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ]);
        run_ok(&["ip", "-n", &far, "link", "set", "lo", "up"]);
        run_ok(&["ip", "-n", &far, "addr", "add", client_cidr, "dev", "eth0"]);
        run_ok(&["ip", "-n", &far, "link", "set", "eth0", "up"]);
        run_ok(&[
            "ip", "-n", &far, "route", "add", "default", "via", router, "dev", "eth0",
        ]);
        far
    }

    /// Runs `args` in namespace `ns` of this site (time limit `timeout`).
    pub fn run_in(&self, ns: &str, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).args(args);
        run_with_timeout(&mut cmd, timeout)
    }

    fn add_ns(&mut self, ns: &str) {
        assert!(
            !Path::new("/run/netns").join(ns).exists(),
            "namespace {ns} exists already (a test of this pid left it?)"
        );
        run_ok(&["ip", "netns", "add", ns]);
        self.namespaces.push(ns.to_owned());
    }

    /// `/srv` as every host sees it.
    pub fn srv(&self) -> PathBuf {
        self.dir.path().join("srv")
    }

    /// Host `i` (1-based).
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i - 1]
    }

    /// Runs `args` in the client namespace (time limit `timeout`).
    pub fn client(&self, args: &[&str], timeout: Duration) -> Output {
        self.run_in(&self.client, args, timeout)
    }

    /// Starts `args` in the client namespace in the background.
    pub fn spawn_client<S: AsRef<std::ffi::OsStr>>(&self, args: &[S], tag: &str) -> Background {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.client]).args(args);
        Background::spawn(cmd, self.dir.path(), tag)
    }

    /// The last `lines` lines of every kept process's stderr.
    pub fn logs(&self, lines: usize) -> String {
        let mut s = String::new();
        for (tag, p) in &self.procs {
            let text = p.stderr_text();
            let all: Vec<&str> = text.lines().collect();
            s.push_str(&format!("--- tail of {tag}:\n"));
            for l in &all[all.len().saturating_sub(lines)..] {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "[{}] test failed; logs of site {}:\n{}",
                self.test,
                self.prefix,
                self.logs(40)
            );
        }
        // Processes first (Background's drop kills what still runs), then
        // the namespaces: their interfaces go with them.
        self.procs.clear();
        self.anchors.clear();
        for ns in self.namespaces.drain(..).rev() {
            let out = Command::new("ip").args(["netns", "del", &ns]).output();
            if !out.is_ok_and(|o| o.status.success()) {
                eprintln!("[{}] WARNING: could not delete namespace {ns}", self.test);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_found_unindented_and_split() {
        let doc = "x\n   <!-- walkthrough:a -->\n\n   ```sh\n   one \\\n      two\n\n   three # c\n   ```\n";
        let b = doc_block(doc, "a");
        assert_eq!(b, "one \\\n   two\n\nthree # c\n");
        assert_eq!(commands(&b), ["one    two", "three # c"]);
    }

    #[test]
    #[should_panic(expected = "walkthrough:b")]
    fn a_missing_marker_is_a_failure() {
        doc_block("nothing", "b");
    }

    #[test]
    fn words_swap_whole() {
        assert_eq!(
            swap_words(
                "10.0.0.1/24 10.0.0.2 10.0.0.10 10.0.0.100 n1.toml n2.toml",
                "10.0.0.1",
                "10.0.0.2"
            ),
            "10.0.0.2/24 10.0.0.1 10.0.0.10 10.0.0.100 n1.toml n2.toml"
        );
        assert_eq!(swap_words("n1.toml,n2", "n1", "n2"), "n2.toml,n1");
    }
}
