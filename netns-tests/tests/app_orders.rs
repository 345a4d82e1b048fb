//! The reference application (`lab up --app orders`: lab/assets/orders.py on
//! PostgreSQL in PREFIX-db) behind a duplex pair: orders created while a
//! node dies are created exactly once. Four keep-alive connections post 50
//! orders each, whose reply waits 20 ms after the commit; one node is
//! SIGKILLed mid-way. Every request must get exactly one 201 with its own order
//! (distinct integer ids, the reply's SHA-256 that of the body sent), the
//! database must hold exactly one order per request (asked through the app
//! and with psql in the db namespace), and the client must see no RST.
//! Killing the primary makes the survivor run the requests whose reply was
//! not yet logged a second time: the request id makes that a no-op.
//!
//! The same with the application alone killed (`lab kill --app`): on the
//! primary, on the owner, in dual-role, and on each node in turn — n1's,
//! restarted, then n2's while n2 still serves the connections it took over
//! alone (answered by n1's application, the route's `fallback`).
//!
//! And `lab kill --app` / `lab restart --app`: the application alone dies
//! and comes back, the node serving its files throughout; bad input is a
//! 4xx, a hung or dead database a 503 within the app's bounded wait.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hotpair_netns_tests::capture::Capture;
use hotpair_netns_tests::failover::{
    assert_no_rst, assert_survivor, duplex_lab_with, epoch_now, Victim,
};
use hotpair_netns_tests::{
    assert_success, describe, hotpair_bin, report, url, ChildLines, Lab, TempDir, PY_HTTP,
};
use serde_json::Value;

/// Concurrent keep-alive connections, and orders posted on each.
const CONNS: usize = 4;
const PER_CONN: usize = 50;
/// The kill lands once this many replies have arrived (a third of the way),
/// and `KILL_PAUSE` later: the connections run in near lockstep, so each has
/// just sent its next order, and it is committed and waiting out its delay —
/// the window the request id is for.
const KILL_AFTER: usize = CONNS * PER_CONN / 3;
const KILL_PAUSE: Duration = Duration::from_millis(10);
const DELAY_MS: u32 = 20;

/// `CONNS` threads, each one socket posting distinct bodies in sequence,
/// never retrying: at least `PER_CONN`, and on until its standard input
/// ends (the in-turn test keeps it open while it kills and restarts);
/// a line `DONE` per reply, then the results as JSON. After its last reply
/// each connection checks that nothing more arrives (a second reply to one
/// request would).
const CLIENT: &str = r#"
import threading
conns, per_conn, delay_ms, nonce = (int(sys.argv[1]), int(sys.argv[2]),
                                    int(sys.argv[3]), sys.argv[4])
SERVICE = (sys.argv[5], 80)
results = []
lock = threading.Lock()
stop = threading.Event()

def wait_stdin():
    while sys.stdin.buffer.read(4096):
        pass
    stop.set()

threading.Thread(target=wait_stdin, daemon=True).start()

def run(k):
    out = []
    try:
        s = connect(timeout=20.0)
    except OSError as e:
        out.append({"conn": k, "i": 0, "error": "connect: %s" % e})
        with lock:
            results.extend(out)
        return
    r = Reader(s)
    i = -1
    while True:
        i += 1
        if i >= per_conn and stop.is_set():
            break
        body = ("order %s conn %d request %d" % (nonce, k, i)).encode()
        entry = {"conn": k, "i": i, "sent_sha256": hashlib.sha256(body).hexdigest()}
        req = (("POST /app/orders?delay_ms=%d HTTP/1.1\r\nHost: %s\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n")
               % (delay_ms, SERVICE[0], len(body))).encode() + body
        t0 = time.time()
        try:
            s.sendall(req)
        except OSError as e:
            entry["error"] = "send: %s" % e
            out.append(entry)
            break
        resp = read_response(r)
        if resp is None:
            entry["error"] = "no reply (%s)" % (r.error or "eof")
            out.append(entry)
            break
        entry["secs"] = time.time() - t0
        entry["status"] = resp["status"]
        entry["body"] = resp["body"].decode("utf-8", "replace")
        entry["truncated"] = "x-truncated" in resp["headers"]
        entry["replay"] = "x-orders-replay" in resp["headers"]
        out.append(entry)
        with lock:  # one whole line per reply, never two run together
            sys.stdout.write("DONE\n")
            sys.stdout.flush()
    if not out or "error" not in out[-1]:
        s.settimeout(0.5)
        try:
            extra = s.recv(4096)
            if extra:
                out.append({"conn": k, "i": i, "error": "extra bytes after the last reply: %r" % extra[:200]})
        except socket.timeout:
            pass
        except OSError as e:
            out.append({"conn": k, "i": i, "error": "after the last reply: %s" % e})
    s.close()
    with lock:
        results.extend(out)

threads = [threading.Thread(target=run, args=(k,)) for k in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results), flush=True)
"#;

/// The database's own count: psql as the superuser, in the db namespace.
fn sql(lab: &Lab, query: &str) -> String {
    let st = lab.status_json();
    let psql: Vec<String> = st["db"]["psql"]
        .as_array()
        .unwrap_or_else(|| panic!("[{}] lab status has no db.psql: {st}", lab.test))
        .iter()
        .map(|a| a.as_str().expect("psql argument").to_owned())
        .collect();
    let mut args = psql;
    args.extend(["-tA".into(), "-c".into(), query.into()]);
    let out = lab.exec_in("db", &args, Duration::from_secs(30));
    assert_success(&out, &format!("[{}] psql -c {query:?}", lab.test));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// GET `path` from the client; (status, body).
fn get(lab: &Lab, path: &str) -> (u16, String) {
    request(lab, &[], path)
}

/// `path` from the client, curl's `extra` options (a POST's body) before
/// the URL; (status, body).
fn request(lab: &Lab, extra: &[&str], path: &str) -> (u16, String) {
    let u = url(path);
    let mut args = vec!["curl", "-s", "--max-time", "20", "-w", "\n%{http_code}"];
    args.extend_from_slice(extra);
    args.push(&u);
    let out = lab.exec_client(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// What fails mid-way.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// The node is SIGKILLed (`lab kill`).
    Node(Victim),
    /// Only the node's application is SIGKILLed (`lab kill --app`); the
    /// node lives on and its application check finds it dead.
    App(Victim),
    /// n1's application killed, n2 takes the address over, n1's restarted
    /// and n1 rejoins as the primary; then n2's application killed while
    /// n2 still runs the connections it took over (no shadow on n1), and
    /// restarted.
    AppsInTurn,
}

impl Fault {
    fn victim(self) -> Victim {
        match self {
            Fault::Node(v) | Fault::App(v) => v,
            Fault::AppsInTurn => Victim::Primary,
        }
    }
}

/// A lab and the lock that keeps failover tests one at a time.
enum Held {
    Duplex(hotpair_netns_tests::failover::DuplexLab),
    Plain(Lab),
}

impl Held {
    fn lab(&self) -> &Lab {
        match self {
            Held::Duplex(d) => d,
            Held::Plain(l) => l,
        }
    }
}

/// The pair's layout, and the service address the clients use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layout {
    /// n1 primary, n2 owner of 10.77.0.10.
    Duplex,
    /// n1 owns .10 (primary n2) and is the primary of .11 (owner n2): the
    /// clients use .11, whose application runs on n1.
    DualRole,
}

impl Layout {
    fn service(self) -> &'static str {
        match self {
            Layout::Duplex => "10.77.0.10",
            Layout::DualRole => "10.77.0.11",
        }
    }
}

fn orders_survive(test: &str, fault: Fault) {
    orders_survive_in(test, fault, Layout::Duplex)
}

fn orders_survive_in(test: &str, fault: Fault, layout: Layout) {
    let victim = fault.victim();
    // Either way one failover test at a time (`failover::serial`).
    let _serial = (layout == Layout::DualRole).then(hotpair_netns_tests::failover::serial);
    let held = match layout {
        Layout::Duplex => duplex_lab_with(test, &["--app", "orders"]).map(Held::Duplex),
        Layout::DualRole => {
            Lab::up_with(test, &["--mode", "dual-role", "--app", "orders"]).map(Held::Plain)
        }
    };
    let Some(held) = held else {
        return;
    };
    let lab = held.lab();
    let st = lab.initial_status();
    assert_eq!(st["app"], "orders", "[{test}] {st}");
    assert_eq!(st["db"]["alive"], true, "[{test}] {st}");
    assert_eq!(st["db"]["address"], "10.77.0.200/24", "[{test}] {st}");
    let (code, body) = get(lab, "/app/health");
    assert_eq!(code, 200, "[{test}] /app/health before the run: {body}");

    let dir = TempDir::new(test);
    let cap = Capture::start_hosts(lab, dir.path(), &[layout.service().to_owned()]);
    let nonce = format!("{}-{}", lab.prefix, std::process::id());
    let script = format!("{PY_HTTP}\n{CLIENT}");
    // Killed if the test panics half way.
    let mut client = ChildLines::spawn(
        Command::new(hotpair_bin())
            .args(["lab", "exec", "--prefix", &lab.prefix, "client", "--"])
            .args(["python3", "-c", &script])
            .args([
                CONNS.to_string(),
                PER_CONN.to_string(),
                DELAY_MS.to_string(),
                nonce,
                layout.service().to_owned(),
            ])
            .stdin(if fault == Fault::AppsInTurn {
                Stdio::piped()
            } else {
                Stdio::null()
            }),
    )
    .expect("running python3 in the client namespace");
    // Closed when the clients may stop (after `PER_CONN` each).
    let client_stdin = client.take_stdin();

    let mut done = 0;
    while done < KILL_AFTER {
        match client.lines.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if l == "DONE" => done += 1,
            other => panic!(
                "[{test}] the client stopped after {done} replies, before the kill: {other:?}\n{}",
                client.kill_and_stderr()
            ),
        }
    }
    std::thread::sleep(KILL_PAUSE);
    let kill_epoch = epoch_now();
    let kill = Instant::now();
    match fault {
        Fault::Node(_) => drop(lab.kill(victim.node())),
        Fault::App(_) => kill_app(lab, victim.node()),
        Fault::AppsInTurn => {
            let mut replies = |n: usize, what: &str| {
                let to = done + n;
                while done < to {
                    match client.lines.recv_timeout(Duration::from_secs(20)) {
                        Ok(l) if l == "DONE" => done += 1,
                        other => panic!(
                            "[{test}] the client stopped after {done} replies, {what}: {other:?}"
                        ),
                    }
                }
            };
            kill_app(lab, "n1");
            wait_status(lab, "n2 serving the address alone", |_, n2| {
                let states = address_states(n2);
                !states.is_empty() && states.iter().all(|s| s == "promoted" || s == "claimed")
            });
            replies(CONNS, "with n1's application dead");
            rejoin_after_app_restart(lab, Victim::Primary);
            replies(CONNS, "after n1 rejoined");
            kill_app(lab, "n2");
            // n2's own check finds it dead (its requests go to n1's
            // application meanwhile).
            wait_status(lab, "n2 reporting its application down", |_, n2| {
                n2["app_up"] == false
            });
            replies(2 * CONNS, "with n2's application dead");
            rejoin_after_app_restart(lab, Victim::Owner);
            replies(CONNS, "after n2's application came back");
        }
    }
    drop(client_stdin);
    let (line, finished) = loop {
        match client.lines.recv_timeout(Duration::from_secs(40)) {
            Ok(l) if l == "DONE" => done += 1,
            Ok(l) => break (l, kill.elapsed()),
            Err(e) => panic!(
                "[{test}] the client did not finish ({e}) after {done} replies; stderr:\n{}",
                client.kill_and_stderr()
            ),
        }
    };
    drop(client);
    let results: Vec<Value> = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("[{test}] the client printed no JSON ({e}): {line}"));
    match fault {
        Fault::Node(_) => assert_survivor(lab, victim),
        Fault::App(_) => assert_app_fault_handled(lab, victim),
        Fault::AppsInTurn => {}
    }

    // Exactly one 201 per request, each its own order.
    let sent = results.len();
    assert!(
        sent >= CONNS * PER_CONN,
        "[{test}] {sent} results, fewer than the {} requests sent: {line}",
        CONNS * PER_CONN
    );
    let mut ids = std::collections::BTreeSet::new();
    let mut replays = 0u64;
    let mut slowest = 0.0f64;
    for r in &results {
        let what = format!("connection {} request {}", r["conn"], r["i"]);
        assert!(
            r.get("error").is_none(),
            "[{test}] {what} failed (a request lost or answered twice): {r}"
        );
        assert_eq!(r["status"], 201, "[{test}] {what}: {r}");
        assert_eq!(r["truncated"], false, "[{test}] {what}: {r}");
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("[{test}] {what}: the reply is not JSON ({e}): {r}"));
        let id = body["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("[{test}] {what}: no integer id in the reply: {r}"));
        assert_eq!(
            body["sha256"], r["sent_sha256"],
            "[{test}] {what}: the order is not the one this request sent: {r}"
        );
        assert!(
            ids.insert(id),
            "[{test}] {what}: order id {id} given to two requests"
        );
        if r["replay"] == true {
            replays += 1;
        }
        slowest = slowest.max(r["secs"].as_f64().unwrap_or(0.0));
    }
    for k in 0..CONNS {
        let n = results.iter().filter(|r| r["conn"] == k).count();
        assert!(
            n >= PER_CONN,
            "[{test}] connection {k} got {n} replies, fewer than {PER_CONN}: {line}"
        );
    }

    // The database holds exactly one order per request.
    let (code, body) = get(lab, "/app/orders/stats");
    assert_eq!(code, 200, "[{test}] /app/orders/stats: {body}");
    let stats: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("[{test}] /app/orders/stats is not JSON ({e}): {body}"));
    assert_eq!(
        stats["orders"].as_u64(),
        Some(sent as u64),
        "[{test}] orders in the database vs requests sent: {stats}"
    );
    let counted = sql(
        lab,
        "SELECT count(*) || ' ' || count(DISTINCT body_sha256) || ' ' || count(DISTINCT request_id) FROM orders",
    );
    assert_eq!(
        counted,
        format!("{sent} {sent} {sent}"),
        "[{test}] psql: orders, distinct bodies, distinct request ids"
    );

    // A replay is a request run again (on the peer's application, by the
    // survivor or through the route's fallback): the client gets one reply,
    // a replayed one when its last run found the order. Every replayed reply
    // the client got is a run the database answered from an existing order;
    // with a fallback a request can be run a third time (the fallback's
    // reply was not yet logged when the address moved: the peer runs it
    // again), so the database may count more runs than replies replayed.
    let refused = stats["duplicates_refused"].as_u64().unwrap_or(0);
    assert!(
        refused >= replays,
        "[{test}] runs answered from an existing order (database: {refused}) are fewer than \
         the replayed replies the client got (X-Orders-Replay: {replays}): {stats}"
    );
    if !matches!(fault, Fault::App(_) | Fault::AppsInTurn) {
        // No fallback used: each replay is exactly one more run.
        assert_eq!(
            refused, replays,
            "[{test}] runs answered from an existing order (database) vs replayed replies \
             the client got (X-Orders-Replay): {stats}"
        );
    }
    if victim == Victim::Primary {
        // Each connection always has an order in flight, 20 of its ~25 ms
        // between the commit and the reply, and the kill aims at the middle
        // of that window (KILL_PAUSE): it finds some committed and
        // unanswered.
        assert!(
            replays > 0,
            "[{test}] no request was run again after the primary's death: the \
             deduplication was not exercised (kill too early or too late?)"
        );
    }

    let capture = cap.stop_from(layout.service());
    assert_no_rst(
        lab,
        &capture,
        &format!("{sent} orders over {CONNS} keep-alive connections"),
        kill_epoch,
    );
    if let Fault::App(v) = fault {
        rejoin_after_app_restart(lab, v);
    }
    let fallback = if fault == Fault::AppsInTurn {
        // The connections n2 took over alone were answered by n1's
        // application while n2's was dead: the route's fallback.
        let n = fallback_answers(lab, "n2");
        assert!(
            n > 0.0,
            "[{test}] n2's route never used its fallback while its application was dead: \
             the connections it took over were not running on n2 then?"
        );
        format!("; n2's fallback (n1's application) answered {n} request(s)")
    } else {
        String::new()
    };
    report(&format!(
        "[{test}] {sent} orders on {CONNS} connections, {} ({}) {} SIGKILLed after {KILL_AFTER} \
         replies: all {sent} created once, done {:.2} s after the kill, the slowest request \
         {slowest:.2} s (one takes {DELAY_MS} ms and a little); {} request(s) run again and \
         answered from the existing order (stats duplicates_refused {}; {replays} replayed \
         replies reached the client){fallback}",
        victim.node(),
        victim.role(),
        match fault {
            Fault::Node(_) => "node",
            Fault::App(_) => "application",
            Fault::AppsInTurn => "application (then n2's in turn)",
        },
        finished.as_secs_f64(),
        stats["duplicates_refused"],
        stats["duplicates_refused"],
    ));
}

/// The primary (n1, running the application) dies: the owner runs the
/// requests whose reply it had not received again, on its own application.
#[test]
fn orders_are_created_once_when_the_primary_dies() {
    orders_survive("app_orders_primary", Fault::Node(Victim::Primary));
}

/// The owner (n2) dies: the primary carries on alone.
#[test]
fn orders_are_created_once_when_the_owner_dies() {
    orders_survive("app_orders_owner", Fault::Node(Victim::Owner));
}

/// The primary's application dies, the node lives: its application check
/// (or the first request the dead application refuses) finds it, the pair
/// hands the address to n2 as in a planned switchover, and n2 runs the
/// requests in flight again on its own application — no 502, no RST, each
/// order once. Restarted, the application answers again and n1 rejoins as
/// the primary.
#[test]
fn orders_are_created_once_when_the_primarys_application_dies() {
    orders_survive("app_orders_primary_app", Fault::App(Victim::Primary));
}

/// Dual-role: n1's application dies; n1 is the primary of 10.77.0.11 (the
/// clients') and owner of .10: it hands both to n2, whose application runs
/// the requests in flight again; restarted, n1 rejoins in both roles.
#[test]
fn orders_are_created_once_when_a_dual_role_nodes_application_dies() {
    orders_survive_in(
        "app_orders_dual_role_app",
        Fault::App(Victim::Primary),
        Layout::DualRole,
    );
}

/// Dual-role: n1, the primary of .11 (the clients') and owner of .10, is
/// SIGKILLed: n2 promotes .11's shadows and runs the requests in flight again.
#[test]
fn orders_are_created_once_when_a_dual_role_primary_dies() {
    orders_survive_in(
        "app_orders_dual_role_primary",
        Fault::Node(Victim::Primary),
        Layout::DualRole,
    );
}

/// Dual-role: n2, the owner of .11 and primary of .10, is SIGKILLed: n1
/// goes on alone with .11 and claims .10.
#[test]
fn orders_are_created_once_when_a_dual_role_owner_dies() {
    orders_survive_in(
        "app_orders_dual_role_owner",
        Fault::Node(Victim::Owner),
        Layout::DualRole,
    );
}

/// Dual-role, each node's application in turn: n1's, then n2's — n2 is
/// then the primary of .10 and still runs the .11 connections it took
/// over alone.
#[test]
fn orders_are_created_once_when_each_dual_role_application_dies_in_turn() {
    orders_survive_in(
        "app_orders_dual_role_apps_in_turn",
        Fault::AppsInTurn,
        Layout::DualRole,
    );
}

/// Each node's application in turn (issue 19's scenario d): n1's dies, n2
/// takes the address over; n1's restarted, n1 rejoins as the primary while
/// n2 keeps the keep-alive connections it took over; then n2's dies — those
/// connections' requests go to n1's application (the fallback) — and is
/// restarted. Every order once, no 502, no RST.
#[test]
fn orders_are_created_once_when_each_application_dies_in_turn() {
    orders_survive("app_orders_apps_in_turn", Fault::AppsInTurn);
}

/// The owner's application dies: it runs no request, so nothing moves;
/// n1 learns its peer could not take over.
#[test]
fn orders_go_on_when_the_owners_application_dies() {
    orders_survive("app_orders_owner_app", Fault::App(Victim::Owner));
}

/// `lab kill --app NODE`.
fn kill_app(lab: &Lab, node: &str) {
    let out = lab.lab(&["kill", "--app", node], Duration::from_secs(30));
    assert_success(&out, &format!("lab kill --app {node}"));
}

/// The states of a node's addresses in its status.
fn address_states(st: &Value) -> Vec<String> {
    st["addresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["state"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (20 s at most) until `f(n1's status, n2's status)` holds.
fn wait_status(lab: &Lab, what: &str, f: impl Fn(&Value, &Value) -> bool) {
    let t = Instant::now();
    loop {
        let (n1, n2) = (node_status(lab, "n1"), node_status(lab, "n2"));
        if f(&n1, &n2) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "[{}] not {what} within 20 s:\n{n1}\n{n2}",
            lab.test
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `hotpair_upstream_fallback_total{route="/app/"}` of a node, scraped from
/// the client namespace.
fn fallback_answers(lab: &Lab, node: &str) -> f64 {
    let i = node[1..].parse().expect("a node name is n<i>");
    let text = lab.scrape_metrics(i);
    text.lines()
        .find_map(|l| l.strip_prefix("hotpair_upstream_fallback_total{route=\"/app/\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "[{}] no fallback counter in {node}'s metrics:\n{text}",
                lab.test
            )
        })
}

/// Both nodes alive after an application's death; the victim's status
/// says its application is down; where it ran requests (n1, the primary
/// of the address the clients use), n2 serves every address alone
/// (promoted or claimed) and n1 stands by; where it ran none (a duplex
/// owner), nothing moved.
fn assert_app_fault_handled(lab: &Lab, victim: Victim) {
    let test = &lab.test;
    for n in ["n1", "n2"] {
        assert!(lab.node_alive(n), "[{test}] {n} died with an application");
    }
    let st = node_status(lab, victim.node());
    assert_eq!(
        st["app_up"],
        false,
        "[{test}] {} does not report its application down: {st}",
        victim.node()
    );
    let n2 = node_status(lab, "n2");
    let states: Vec<&str> = n2["addresses"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["state"].as_str()).collect())
        .unwrap_or_default();
    let moved = victim == Victim::Primary;
    assert!(
        !states.is_empty()
            && states.iter().all(|s| if moved {
                *s == "promoted" || *s == "claimed"
            } else {
                *s == "replicated"
            }),
        "[{test}] n2's addresses after {}'s application died: {states:?}\n{n2}",
        victim.node()
    );
}

/// `lab restart --app`: the application answers again and every address
/// is replicated again with its configured roles, within a few seconds.
fn rejoin_after_app_restart(lab: &Lab, victim: Victim) {
    let test = &lab.test;
    let out = lab.lab(
        &["restart", "--app", victim.node()],
        Duration::from_secs(30),
    );
    assert_success(&out, &format!("lab restart --app {}", victim.node()));
    let t = Instant::now();
    loop {
        let (n1, n2) = (node_status(lab, "n1"), node_status(lab, "n2"));
        let settled = |st: &Value| {
            st["addresses"].as_array().is_some_and(|a| {
                a.iter()
                    .all(|x| x["state"] == "replicated" && x["role"] == x["configured_role"])
            })
        };
        if n1["app_up"] == true && n2["app_up"] == true && settled(&n1) && settled(&n2) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "[{test}] not replicated again 20 s after the application came back:\n{n1}\n{n2}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, body) = get(lab, "/app/health");
    assert_eq!(code, 200, "[{test}] /app/health after the rejoin: {body}");
}

/// `hotpair status --json` of one node.
fn node_status(lab: &Lab, node: &str) -> Value {
    let sock = lab.state_dir().join(format!("{node}.sock"));
    let out = Command::new(hotpair_bin())
        .args(["status", "--json", "--socket"])
        .arg(&sock)
        .stdin(Stdio::null())
        .output()
        .expect("running hotpair status");
    assert_success(&out, &format!("hotpair status {node}"));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("[{}] status of {node} is not JSON ({e})", lab.test))
}

/// `lab kill --app n1` kills the application only: the node still serves
/// its files, /app/ answers 502; `lab restart --app n1` brings it back.
#[test]
fn kill_and_restart_the_application_only() {
    let Some(lab) = Lab::up_with("app_orders_kill_app", &["--app", "orders"]) else {
        return;
    };
    let test = lab.test.clone();
    let (code, body) = get(&lab, "/app/health");
    assert_eq!(code, 200, "[{test}] /app/health: {body}");
    let node_pid = lab.initial_status()["nodes"][0]["pid"].clone();

    let out = lab.lab(&["kill", "--app", "n1"], Duration::from_secs(30));
    assert_success(&out, "lab kill --app n1");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("killed the app of node n1"),
        "[{test}] {}",
        describe(&out)
    );
    let st = lab.status_json();
    let n1 = &st["nodes"][0];
    assert_eq!(
        n1["alive"], true,
        "[{test}] the node died with its app: {st}"
    );
    assert_eq!(n1["pid"], node_pid, "[{test}] {st}");
    assert_eq!(n1["upstream"]["alive"], false, "[{test}] {st}");
    assert_eq!(n1["upstream"]["killed"], true, "[{test}] {st}");
    let (code, _) = get(&lab, "/static/index.html");
    assert_eq!(code, 200, "[{test}] /static/ with the app dead");
    let (code, body) = get(&lab, "/app/health");
    assert_eq!(code, 502, "[{test}] /app/ with the app dead: {body}");

    let t = Instant::now();
    let out = lab.lab(&["restart", "--app", "n1"], Duration::from_secs(30));
    assert_success(&out, "lab restart --app n1");
    let st = lab.status_json();
    assert_eq!(st["nodes"][0]["upstream"]["alive"], true, "[{test}] {st}");
    assert_eq!(st["nodes"][0]["upstream"]["killed"], false, "[{test}] {st}");
    assert_eq!(st["nodes"][0]["pid"], node_pid, "[{test}] {st}");
    let (code, body) = get(&lab, "/app/health");
    assert_eq!(code, 200, "[{test}] /app/health after the restart: {body}");
    let (code, body) = request(&lab, &["--data-binary", "after the restart"], "/app/orders");
    assert_eq!(
        code, 201,
        "[{test}] POST /app/orders after the restart: {body}"
    );
    report(&format!(
        "[{test}] app killed and restarted, node pid unchanged; restart took {:.2} s",
        t.elapsed().as_secs_f64()
    ));
}

/// The pids of every process in the lab's db namespace (the postmaster and
/// its backends).
fn db_pids(lab: &Lab) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "pids", &format!("{}-db", lab.prefix)])
        .stdin(Stdio::null())
        .output()
        .expect("running ip netns pids");
    assert_success(&out, "ip netns pids PREFIX-db");
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(
        !pids.is_empty(),
        "[{}] no process in the db namespace",
        lab.test
    );
    pids
}

fn signal_all(pids: &[String], sig: &str) {
    let out = Command::new("kill")
        .arg("-s")
        .arg(sig)
        .args(pids)
        .stdin(Stdio::null())
        .output()
        .expect("running kill");
    assert_success(
        &out,
        &format!("kill -s {sig} (the db namespace's processes)"),
    );
}

/// (status, seconds) of a request from the client.
fn timed(lab: &Lab, args: &[&str]) -> (u16, f64) {
    let mut argv = vec![
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "--max-time",
        "40",
        "-w",
        "%{http_code} %{time_total}",
    ];
    argv.extend_from_slice(args);
    let out = lab.exec_client(&argv);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut w = text.split_whitespace();
    (
        w.next().and_then(|c| c.parse().ok()).unwrap_or(0),
        w.next().and_then(|c| c.parse().ok()).unwrap_or(f64::NAN),
    )
}

/// Bad input is a 4xx through the node; a hung database a 503 after the
/// app's bounded wait (3 s for /app/health, 15 s for an order), a dead one
/// a 503 at once — never a hang.
#[test]
fn bad_input_and_a_database_down_are_answered() {
    let Some(lab) = Lab::up_with("app_orders_db_down", &["--app", "orders"]) else {
        return;
    };
    let test = lab.test.clone();
    let big = lab.state_dir().join("big.bin");
    std::fs::write(&big, vec![b'x'; 64 * 1024 + 1]).expect("writing the oversize body");
    let at_big = format!("@{}", big.display());
    let orders = url("/app/orders");
    for (args, want, what) in [
        (
            vec!["--data-binary", at_big.as_str(), &orders],
            413,
            "a body over 64 KiB",
        ),
        (vec![orders.as_str()], 405, "GET /app/orders"),
        (
            vec!["-X", "DELETE", orders.as_str()],
            405,
            "DELETE /app/orders",
        ),
        (
            vec!["-d", "x", &format!("{orders}?delay_ms=30001")],
            400,
            "delay_ms over 30000",
        ),
        (
            vec![&url("/app/nothing-here")],
            404,
            "an unknown /app/ path",
        ),
        (
            vec!["-d", "{not json", orders.as_str()],
            201,
            "an opaque body (not JSON) is an order",
        ),
    ] {
        let (code, _) = timed(&lab, &args);
        assert_eq!(code, want, "[{test}] {what}: {args:?}");
    }

    // Hung: every process of the database stopped (the kernel still ACKs).
    let pids = db_pids(&lab);
    signal_all(&pids, "STOP");
    let (health, t_health) = timed(&lab, &[&url("/app/health")]);
    let (post, t_post) = timed(&lab, &["-d", "while hung", &orders]);
    signal_all(&pids, "CONT");
    assert_eq!(health, 503, "[{test}] /app/health with the database hung");
    assert!(t_health < 10.0, "[{test}] /app/health took {t_health} s");
    assert_eq!(post, 503, "[{test}] an order with the database hung");
    assert!(t_post < 25.0, "[{test}] the order took {t_post} s");
    let (code, _) = timed(&lab, &[&url("/app/health")]);
    assert_eq!(
        code, 200,
        "[{test}] /app/health once the database runs again"
    );

    // Dead: every process of the database killed.
    signal_all(&db_pids(&lab), "KILL");
    let (post_dead, t_dead) = timed(&lab, &["-d", "while dead", &orders]);
    let (health_dead, _) = timed(&lab, &[&url("/app/health")]);
    assert_eq!(post_dead, 503, "[{test}] an order with the database dead");
    assert!(t_dead < 5.0, "[{test}] the order took {t_dead} s");
    assert_eq!(
        health_dead, 503,
        "[{test}] /app/health with the database dead"
    );
    report(&format!(
        "[{test}] database hung: /app/health 503 in {t_health:.2} s, an order 503 in \
         {t_post:.2} s; dead: an order 503 in {t_dead:.2} s"
    ));
}
