//! A new operator's first pair, by `docs/operations.md` alone ("From
//! `hotpair pair` to a running pair"), on two network namespaces standing
//! in for two machines — no `hotpair lab`.
//!
//! The site: a switch namespace whose bridge holds the LAN's router
//! address (10.0.0.254), two "machines" `h1` and `h2` with one NIC each
//! (`eth0`, 10.0.0.1/24 and 10.0.0.2/24, default route via the router),
//! and a client (10.0.0.100), each plugged into the switch by a veth pair;
//! later a client beyond the router (198.51.100.2, the switch namespace
//! routing).
//! Each machine gets a firewall of its own before the walkthrough starts,
//! standing for what a hardened machine has (not from the doc): nftables
//! `inet filter` dropping input it does not accept and all forwarded
//! traffic; with `br_netfilter` loaded (as on this test machine) that
//! forward policy drops bridged frames too — the trap the doc's firewall
//! step must get the operator out of.
//!
//! Then the doc's blocks, read from `docs/operations.md` at their
//! `<!-- walkthrough:NAME -->` markers and run as written (so the doc and
//! this test cannot drift): `install` (the binary into the machine's
//! `/usr/local/bin`, the path `target/release/hotpair` replaced by the
//! binary under test), `pair` on h1 (the configs), copying each file to
//! its machine (what the doc's `scp` does), `lan` (bridge, NIC, TAP,
//! address and default route) and `firewall` on each, then `start`:
//! `--check` must say ok with no warning, and the node runs. Host 2 runs
//! the blocks with 10.0.0.1 and 10.0.0.2 swapped and n1 and n2 swapped —
//! what the doc's "(… on the other)" comments say. Step 4's commands
//! (`hotpair status`, `status --check`, `curl …:9464/readyz`) are inline
//! in the doc and copied here.
//!
//! Checked: the bridge has the NIC's MAC and the default route survives;
//! both nodes `replicated`; `status --check` exits 0; `/readyz` answers on
//! the metrics address from the client; the client reaches the service
//! address, and so does the client beyond the router (`--gateway`); a 20 MB download survives `kill -9` of the primary byte-exact
//! with no RST from the service address (tcpdump in the client); the
//! killed node, started again as the systemd unit runs it (below),
//! rejoins; `hotpair switchover` on it (the
//! doc's maintenance section) hands a second download over byte-exact;
//! no node logs an error all along.
//!
//! The systemd parts ("Running as a systemd service") are run by hand:
//! there is no systemd in a namespace. After the kill, h1 follows that
//! section's step 1 (its block: binary, man page, completions, config in
//! /etc/hotpair, the unit in /etc/systemd/system — into the host's private
//! overlays), then runs the installed unit's `ExecStartPre=` (`--check`,
//! ok without warnings) and `ExecStart=` lines, as `Restart=on-failure`
//! would; the unit's sandbox is not applied, and networkd's files (step 2)
//! are not used — `netns-tests/tests/docker_systemd.rs` runs the unit and
//! networkd in containers.
//!
//! Namespaces are named `wt<pid>-h1`, `-h2`, `-sw`, `-cl` and deleted on
//! every path (`Site`'s `Drop`, also on panic, after the node logs).

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use hotpair_netns_tests::capture::{Capture, Segment};
use hotpair_netns_tests::hosts::{commands, doc_block, operations_doc, swap_words, Host, Site};
use hotpair_netns_tests::{
    curl_download_args, hotpair_bin, random_bytes, report, require_root, sha256sum,
};

const TEST: &str = "walkthrough";
/// The doc's addresses: the service, the machines, the router, a client
/// (the doc's firewall lets metrics in from it).
const SERVICE: &str = "10.0.0.10";
const GATEWAY: &str = "10.0.0.254";
const CLIENT: &str = "10.0.0.100";
const BIG: usize = 20 * 1024 * 1024;

/// The firewall a hardened machine had before the walkthrough (not the
/// doc's): input dropped unless established or local, forwarding dropped.
const HOST_FIREWALL: &str = "table inet filter {
  chain input { type filter hook input priority filter; policy drop;
    ct state established,related accept
    iif lo accept
    ip protocol icmp accept
  }
  chain forward { type filter hook forward priority filter; policy drop; }
  chain output { type filter hook output priority filter; policy accept; }
}
";

/// A block of the doc as host `i` runs it: host 2 swaps the machines'
/// addresses and the node names ("10.0.0.2 on the other").
fn for_host(block: &str, i: usize) -> String {
    if i == 1 {
        return block.to_owned();
    }
    swap_words(&swap_words(block, "10.0.0.1", "10.0.0.2"), "n1", "n2")
}

fn status_json(h: &Host, n: &str) -> Option<serde_json::Value> {
    let out = h.sh(
        &format!("hotpair status --json --config {n}.toml"),
        Duration::from_secs(10),
    );
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The service address's state on a node (`replicated`, `promoted`, …).
fn state(h: &Host, n: &str) -> Option<String> {
    let st = status_json(h, n)?;
    st["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["address"] == SERVICE)?["state"]
        .as_str()
        .map(str::to_owned)
}

/// Waits until every `(host, node)` reports `want` for the service address.
fn wait_state(site: &Site, nodes: &[(usize, &str)], want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now: Vec<Option<String>> = nodes.iter().map(|(i, n)| state(site.host(*i), n)).collect();
        if now.iter().all(|s| s.as_deref() == Some(want)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "[{TEST}] {nodes:?} not all `{want}` within {within:?}: {now:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Starts node `n` on host `i` with the doc's start line (run under
/// `exec`, so the process is the node); kept in the site's processes.
fn start_node(site: &mut Site, i: usize, start_line: &str, tag: &str) -> u32 {
    let line = for_host(start_line, i);
    let p = site
        .host(i)
        .spawn(&format!("exec {line}"), site.dir.path(), tag);
    let pid = p.pid();
    site.procs.push((tag.to_owned(), p));
    pid
}

/// The RSTs from the service address among `segs`.
fn rsts(segs: &[Segment]) -> Vec<&str> {
    segs.iter()
        .filter(|s| s.rst && s.src_ip() == SERVICE)
        .map(|s| s.line.as_str())
        .collect()
}

/// A rate-limited download of `/big.bin` from the client, with `during`
/// run once it is under way; asserts it completes byte-exact with no RST.
fn download_across(site: &mut Site, tag: &str, rate: &str, during: impl FnOnce(&mut Site)) {
    let file = site.dir.path().join(format!("{tag}.bin"));
    let cap = Capture::in_namespace(
        &site.client,
        site.dir.path(),
        &format!("tcp and host {SERVICE}"),
    );
    let url = format!("http://{SERVICE}/big.bin");
    let mut curl = site.spawn_client(&curl_download_args(&url, rate, &file, &[]), tag);
    // Under way: a few MB in.
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::fs::metadata(&file).map_or(0, |m| m.len()) < 4 * 1024 * 1024 {
        assert!(
            !curl.exited(),
            "[{TEST}] {tag}: curl ended early: {}",
            curl.stderr_text()
        );
        assert!(
            Instant::now() < deadline,
            "[{TEST}] {tag}: the download did not start"
        );
        thread::sleep(Duration::from_millis(20));
    }
    during(site);
    assert!(
        !curl.exited(),
        "[{TEST}] {tag}: the download ended before the failure it was to survive"
    );
    let out = curl.wait(Duration::from_secs(50));
    let segs = cap
        .segments()
        .unwrap_or_else(|e| panic!("the client capture: {e}"));
    assert!(
        out.status.success(),
        "[{TEST}] {tag}: curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = sha256sum(&file);
    let want = sha256sum(&site.srv().join("www/big.bin"));
    assert_eq!(got, want, "[{TEST}] {tag}: the download is not byte-exact");
    let r = rsts(&segs);
    assert!(
        r.is_empty(),
        "[{TEST}] {tag}: RST from the service address:\n{}",
        r.join("\n")
    );
    assert!(
        segs.iter().filter(|s| s.src_ip() == SERVICE).count() > 100,
        "[{TEST}] {tag}: the capture saw (almost) nothing from the service address"
    );
    std::fs::remove_file(&file).ok();
}

#[test]
fn a_new_operator_reaches_a_working_pair_by_the_doc_alone() {
    if !require_root(TEST) {
        return;
    }
    let t0 = Instant::now();
    let doc = std::fs::read_to_string(operations_doc()).expect("reading docs/operations.md");
    let bin = hotpair_bin();
    let mut site = Site::new(
        TEST,
        2,
        |i| format!("10.0.0.{i}/24"),
        &format!("{GATEWAY}/24"),
        &format!("{CLIENT}/24"),
    );

    // The content, the same on both machines ("e.g. /srv/www").
    let www = site.srv().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from the pair\n").unwrap();
    std::fs::write(www.join("big.bin"), random_bytes(BIG)).unwrap();

    // Each machine's own firewall, there before hotpair.
    let bridged_filtered = site
        .host(1)
        .sh_ok("cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo 0")
        .trim()
        == "1";
    for i in 1..=2 {
        let h = site.host(i);
        std::fs::write(h.home.join("host-firewall.nft"), HOST_FIREWALL).unwrap();
        h.sh_ok("nft -f host-firewall.nft");
    }

    // Step 0: install the binary.
    let bin_s = bin.to_str().expect("a UTF-8 path");
    let install = doc_block(&doc, "install").replace("target/release/hotpair", bin_s);
    for i in 1..=2 {
        let out = site.host(i).sh_ok(&for_host(&install, i));
        assert!(out.starts_with("hotpair "), "hotpair --version: {out:?}");
    }

    // Step 1: the configs, written on h1; "copy each to its machine".
    site.host(1).sh_ok(&doc_block(&doc, "pair"));
    for i in 1..=2 {
        let from = site.host(1).home.join(format!("pair/n{i}.toml"));
        std::fs::copy(&from, site.host(i).home.join(format!("n{i}.toml")))
            .unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }

    // Step 2: the LAN, then the firewall, on each machine.
    let lan = doc_block(&doc, "lan");
    let firewall = doc_block(&doc, "firewall");
    for i in 1..=2 {
        let h = site.host(i);
        let nic_mac = h.sh_ok("cat /sys/class/net/eth0/address");
        h.sh_ok(&for_host(&lan, i));
        h.sh_ok(&for_host(&firewall, i));
        // The machine kept its MAC and its way out.
        let br_mac = h.sh_ok("cat /sys/class/net/br0/address");
        assert_eq!(
            br_mac.trim(),
            nic_mac.trim(),
            "[{TEST}] {}: the bridge does not have the NIC's MAC",
            h.name
        );
        let routes = h.sh_ok("ip -4 route show default");
        assert!(
            routes.contains(&format!("via {GATEWAY} dev br0")),
            "[{TEST}] {}: no default route via the bridge after step 2: {routes:?}",
            h.name
        );
    }

    // Step 3: check, then start.
    let start = commands(&doc_block(&doc, "start"));
    assert_eq!(
        start.len(),
        2,
        "[{TEST}] the doc's start block is `--check` then the node: {start:?}"
    );
    let check_line = start[0].split('#').next().unwrap_or_default().trim();
    let start_line = start[1].split('#').next().unwrap_or_default().trim();
    assert!(
        check_line.ends_with("--check") && !start_line.contains("--check"),
        "[{TEST}] the doc's start block changed shape: {start:?}"
    );
    for i in 1..=2 {
        let h = site.host(i);
        let out = h.sh(&for_host(check_line, i), Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains(&format!("n{i}.toml: ok")),
            "[{TEST}] {}: --check is not ok\n{stdout}\n{stderr}",
            h.name
        );
        assert!(
            !stderr.contains("warning"),
            "[{TEST}] {}: --check warns: {stderr}",
            h.name
        );
    }
    let n1_pid = start_node(&mut site, 1, start_line, "n1");
    start_node(&mut site, 2, start_line, "n2");

    // Step 4: look. Both replicated, `status --check` 0, /readyz on the
    // metrics address (from the client the doc's firewall lets in).
    wait_state(
        &site,
        &[(1, "n1"), (2, "n2")],
        "replicated",
        Duration::from_secs(20),
    );
    let paired = t0.elapsed();
    // The same content on both: the `static` route `pair` wrote is in use
    // (the digest guard cleared it) once both nodes' digests crossed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = status_json(site.host(1), "n1");
        let in_use = st.as_ref().and_then(|st| {
            st["addresses"][0]["routes"]
                .as_array()?
                .iter()
                .find(|r| r["route"] == "/")
                .map(|r| r["policy"] == "static" && r["static_in_use"] == true)
        });
        if in_use == Some(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "[{TEST}] the static route is not in use on n1: {st:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    for i in 1..=2 {
        let out = site.host(i).sh(
            &format!("hotpair status --check --config n{i}.toml"),
            Duration::from_secs(10),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "[{TEST}] status --check on h{i}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let table = site
            .host(i)
            .sh_ok(&format!("hotpair status --config n{i}.toml"));
        assert!(table.contains("replicated"), "{table}");
        let ready = site.client(
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                &format!("http://10.0.0.{i}:9464/readyz"),
            ],
            Duration::from_secs(10),
        );
        let text = String::from_utf8_lossy(&ready.stdout);
        assert!(
            ready.status.success() && text.starts_with("ready"),
            "[{TEST}] /readyz on 10.0.0.{i}:9464: {text} {}",
            String::from_utf8_lossy(&ready.stderr)
        );
    }
    // The index from namespace `ns`, as `who` sees it.
    let index_from = |site: &Site, ns: &str, who: &str| {
        let out = site.run_in(
            ns,
            &[
                "curl",
                "-sS",
                "--fail",
                "--max-time",
                "10",
                &format!("http://{SERVICE}/"),
            ],
            Duration::from_secs(15),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello from the pair\n",
            "[{TEST}] {who}: curl http://{SERVICE}/: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    index_from(&site, &site.client, "the client on the LAN");

    // "clients beyond it through the LAN's router": a client on another
    // network, routed by the switch namespace; the node's replies go out
    // through `--gateway`.
    let far = site.add_far_client("198.51.100.1/24", "198.51.100.2/24");
    let far_get = |site: &Site, when: &str| {
        index_from(site, &far, &format!("{when}, from beyond the router"));
    };
    far_get(&site, "paired");

    // "stop either node (`kill -9`) mid-download and the download
    // finishes from the other": the primary, n1.
    download_across(&mut site, "kill", "2M", |site| {
        site.host(1).sh_ok(&format!("kill -9 {n1_pid}"));
    });
    wait_state(&site, &[(2, "n2")], "promoted", Duration::from_secs(5));
    let degraded = site.host(2).sh(
        "hotpair status --check --config n2.toml",
        Duration::from_secs(10),
    );
    assert_eq!(
        degraded.status.code(),
        Some(1),
        "[{TEST}] status --check on the survivor: {}",
        String::from_utf8_lossy(&degraded.stdout)
    );

    // "Restarted after a crash (`Restart=on-failure`) … the node
    // rejoins": n1 comes back as its systemd unit runs it, installed by
    // the doc's "Running as a systemd service" step 1 (its block, with the
    // binary under test, and the checkout's `packaging/`); the unit's
    // `ExecStartPre=` and `ExecStart=` run by hand — there is no systemd
    // in a namespace, and the unit's sandbox is not applied.
    let h1 = site.host(1);
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging"),
        h1.home.join("packaging"),
    )
    .expect("linking the checkout's packaging/");
    h1.sh_ok(&doc_block(&doc, "systemd-install").replace("target/release/hotpair", bin_s));
    h1.sh_ok("test -s /usr/local/share/man/man1/hotpair.1");
    let unit = h1.sh_ok("cat /etc/systemd/system/hotpair.service");
    let exec = |key: &str| -> String {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("[{TEST}] the installed unit has no {key}"))
            .to_owned()
    };
    let pre = h1.sh(&exec("ExecStartPre="), Duration::from_secs(30));
    assert!(
        pre.status.success()
            && String::from_utf8_lossy(&pre.stdout).contains("/etc/hotpair/node.toml: ok")
            && !String::from_utf8_lossy(&pre.stderr).contains("warning"),
        "[{TEST}] the unit's ExecStartPre on h1\n{}",
        hotpair_netns_tests::describe(&pre)
    );
    start_node(&mut site, 1, &exec("ExecStart="), "n1-again");

    // Then the maintenance stop: `hotpair switchover` on n1 mid-download.
    wait_state(
        &site,
        &[(1, "n1"), (2, "n2")],
        "replicated",
        Duration::from_secs(20),
    );
    let mut switched = String::new();
    download_across(&mut site, "switchover", "4M", |site| {
        switched = site
            .host(1)
            .sh_ok("hotpair switchover --config n1.toml")
            .trim()
            .to_owned();
    });
    assert!(
        switched.contains("handed over"),
        "[{TEST}] switchover said {switched:?}"
    );
    wait_state(&site, &[(2, "n2")], "promoted", Duration::from_secs(5));
    far_get(&site, "after the switchover (n2 alone)");
    let n1 = site
        .procs
        .iter_mut()
        .find(|(tag, _)| tag == "n1-again")
        .map(|(_, p)| p)
        .expect("n1 was started again");
    assert!(n1.exited(), "[{TEST}] n1 still runs after its switchover");

    // A walkthrough that worked logs no error: takeovers are warnings,
    // a restart and a planned stop routine.
    for (tag, p) in &site.procs {
        let errors: Vec<String> = p
            .stderr_text()
            .lines()
            .filter(|l| l.contains(" ERROR "))
            .map(str::to_owned)
            .collect();
        assert!(
            errors.is_empty(),
            "[{TEST}] {tag} logged errors:\n{}",
            errors.join("\n")
        );
    }

    report(&format!(
        "[{TEST}] paired {:.1} s after the start (namespaces, install, pair, LAN, firewall, check); \
         20 MB downloads survived kill -9 of the primary and, after it came back by its \
         systemd unit's commands, a switchover ({switched}), byte-exact, no RST; br_netfilter {}; total {:.1} s",
        paired.as_secs_f64(),
        if bridged_filtered {
            "on: the doc's forward rule carried the clients' frames"
        } else {
            "OFF on this machine: the forward trap was not exercised"
        },
        t0.elapsed().as_secs_f64()
    ));
}
