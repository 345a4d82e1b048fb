//! Judging a run against the promises: [`World::finish`]'s verdicts on the
//! replies, the handlers and the takeovers.

use std::collections::BTreeSet;
use std::time::Duration;

use hotpair_replicator::Role;
use sha2::Digest;

use crate::addresses::{vip, Who};
use crate::app::{self, Database};
use crate::node::SimNode;
use crate::reply;
use crate::scenario::Expected;

use super::{Outcome, Variant, World};

impl World {
    /// Judge the run against the promises.
    pub(super) fn finish(mut self) -> Outcome {
        let mut v = std::mem::take(&mut self.errors);
        v.append(&mut self.wire.violations);
        let done = self.done_time.is_some();
        let several = self.addrs.len() > 1;
        // The request ids the application's replies to the client name.
        let mut app_ids = Vec::new();
        for (n, c) in self.client.conns.iter().enumerate() {
            // "connection 3", or "connection 3 to 10.77.0.11" when there are
            // several addresses.
            let i = if several {
                format!("{n} to {}", vip(c.script.address))
            } else {
                n.to_string()
            };
            if let Some(a) = &c.abnormal {
                v.push(format!("promise 4: connection {i}: {a}"));
            }
            if let Some(e) = &c.parse_error {
                v.push(format!(
                    "promise 2: connection {i}: reply stream unparseable: {e}"
                ));
            }
            if !c.done() {
                v.push(format!(
                    "stalled: connection {i} not finished after {:.1}s virtual / {} steps: {}",
                    self.t.as_secs_f64(),
                    self.step,
                    c.describe()
                ));
            }
            if c.script.tls {
                check_handshake(&i, c, &mut v);
                crate::tls::check_key_update_answers(&i, c, &self.client.tls, &mut v);
            }
            if c.parse_error.is_none() {
                let mut app = AppCheck {
                    db: &self.faults.db,
                    ids: &mut app_ids,
                };
                check_replies(
                    &i,
                    &c.received,
                    &self.spec.expect.conns[n],
                    &mut app,
                    &mut v,
                );
            }
        }
        self.judge_commits(done, &app_ids, &mut v);
        if !self.wire.client_rsts.is_empty() && !done {
            v.push(format!(
                "promise 4: the client sent RST: {}",
                self.wire.client_rsts.join("; ")
            ));
        }
        self.judge_handlers(done, &mut v);
        self.judge_takeovers(&mut v);
        let runs: Vec<u64> = (0..self.nodes.len())
            .map(|i| {
                self.nodes[i]
                    .as_ref()
                    .map_or_else(|| self.runs_at_kill[i].iter().sum(), SimNode::handler_runs)
            })
            .collect();
        let focus_syn_steps = if self.focus_conn(None).is_some() {
            (0..self.nodes.len())
                .map(|i| {
                    self.focus_conn(Some(Who(i as u8)))
                        .and_then(|c| self.syn_steps[c])
                })
                .collect()
        } else {
            Vec::new()
        };
        let st = &mut self.stats;
        st.arp_updates = self.client.arp_updates;
        st.duplicate_bytes = self.wire.duplicate_bytes;
        st.late_rsts = self.wire.late_rsts;
        st.app_commits = self.faults.db.len() as u64;
        st.app_reexecuted = self
            .faults
            .db
            .commits()
            .filter(|(_, c)| c.executions > 1)
            .count() as u64;
        st.app_refused = self.faults.refused;
        st.relinks = self.faults.relinks;
        for c in &self.client.conns {
            use rustls::HandshakeKind as K;
            st.tls_tickets_offered += u64::from(c.offered_ticket);
            match c.handshake_kind {
                Some(K::Full) => st.tls_full += 1,
                Some(K::FullWithHelloRetryRequest) => st.tls_retried += 1,
                Some(K::Resumed) => st.tls_resumed += 1,
                None => {}
            }
        }
        for n in self.nodes.iter().flatten() {
            st.diverged += n.core.shadows_diverged();
            st.local_replies += n.core.local_replies();
            st.replies_ahead += n.core.replies_ahead();
        }
        for e in self.nodes.iter().flatten().flat_map(SimNode::stats) {
            st.promoted_conns += e.promoted;
            st.held += e.held;
            st.held_dropped += e.held_dropped;
            st.not_forwarded += e.not_forwarded;
            st.duplicate_syn += e.duplicate_syn;
            st.passed_through += e.passed_through;
            st.shadows_detached += e.shadows_detached;
            st.detached_open += e.detached as u64;
            st.syn_cookies_validated += e.syn_cookies_validated;
        }
        st.generation_missing = self
            .nodes
            .iter()
            .flatten()
            .map(SimNode::generation_missing)
            .sum();
        Outcome {
            done_step: self.done_step,
            done_time: self.done_time,
            steps: self.step,
            time: self.t,
            violations: v,
            stats: self.stats,
            fingerprint: self.hasher.map(|h| h.finalize().into()),
            handler_runs: runs,
            wall: Duration::ZERO,
            kill_phase: self.kill_phase,
            focus_syn_steps,
        }
    }
}

impl World {
    /// Handler runs of node `w` for address `a`: now, or when it died.
    fn runs(&self, w: Who, a: usize) -> u64 {
        self.nodes[w.index()]
            .as_ref()
            .map_or(self.runs_at_kill[w.index()][a], |n| n.handler_runs_for(a))
    }

    /// Promises 2 and 3 on the handlers, per service address: its owner
    /// (the owner node) runs none while the address's primary lives; the
    /// primary runs each request once; after the primary died the owner
    /// runs at most the requests whose final reply was not logged to it —
    /// a request whose reply was logged is not executed again.
    fn judge_handlers(&self, done: bool, v: &mut Vec<String>) {
        let expect = &self.spec.expect;
        let kill = self.spec.kill.filter(|_| self.killed);
        let lives_on = kill.is_some_and(|k| k.variant.lives_on());
        for a in &self.addrs {
            let ip = vip(a.index);
            let total: u64 = self
                .spec
                .scenario
                .conns
                .iter()
                .zip(&expect.conn_handler_runs)
                .filter(|(c, _)| c.address == a.index)
                .map(|(_, r)| r)
                .sum();
            let (o, p) = (a.owner, a.primary);
            let victim = kill.map(|k| k.victim);
            if victim == Some(p) {
                // A victim that lives on served until it handed the address
                // over (its first takeover), not until the fault.
                let (finals, before) = match self.faults.takeover_snap[a.index] {
                    Some(snap) if lives_on => snap,
                    _ => (
                        self.finals_at_kill[a.index],
                        self.runs_at_kill[o.index()][a.index],
                    ),
                };
                if before != 0 {
                    v.push(format!(
                        "promise 3: the owner node {} of {ip} ran {before} of its handlers before its primary {} died",
                        o.name(),
                        p.name()
                    ));
                }
                let allowed = total.saturating_sub(finals);
                let after = self.runs(o, a.index) - before;
                if after > allowed {
                    v.push(format!(
                        "promise 3: {} ran {after} handlers of {ip} after the takeover, but only {allowed} of its {total} requests had no logged final reply ({} logged at {} when {} died) — a logged request was executed again",
                        o.name(),
                        finals,
                        o.name(),
                        p.name()
                    ));
                }
            } else if victim == Some(o) {
                let runs = self.runs(p, a.index);
                if runs > total {
                    v.push(format!(
                        "promise 3: the primary {} of {ip} ran {runs} handlers for {total} requests",
                        p.name()
                    ));
                }
                let before = self.runs_at_kill[o.index()][a.index];
                if before != 0 {
                    v.push(format!(
                        "promise 3: the owner node {} of {ip} ran {before} of its handlers with its primary alive",
                        o.name()
                    ));
                }
            } else {
                // Neither node of this address died.
                let runs = self.runs(o, a.index);
                if runs != 0 {
                    v.push(format!(
                        "promise 3: the owner node {} of {ip} ran {runs} of its handlers with its primary alive",
                        o.name()
                    ));
                }
                let runs = self.runs(p, a.index);
                if done && runs != total {
                    v.push(format!(
                        "promise 2/3: the primary {} of {ip} ran {runs} handlers for {total} requests",
                        p.name()
                    ));
                }
            }
        }
    }

    /// The takeovers DESIGN §4 names, and no others: when node i dies, the
    /// owner of each address i was primary for promotes its shadows of it,
    /// and the primary of each address i owned claims it; both serve it
    /// alone at the end. Without a death nobody takes over.
    fn judge_takeovers(&self, v: &mut Vec<String>) {
        let kill = self.spec.kill.filter(|_| self.killed);
        let mut victim = kill.map(|k| k.victim);
        // A dead application makes its node hand over only if it runs
        // requests (it is some address's primary): an owner whose primary
        // serves just tells its peer it cannot take anything over.
        if kill.is_some_and(|k| {
            k.variant == Variant::App && self.addrs.iter().all(|a| a.primary != k.victim)
        }) {
            victim = None;
        }
        let mut want = BTreeSet::new();
        for a in &self.addrs {
            if victim == Some(a.primary) {
                want.insert((a.owner, a.index, true));
            } else if victim == Some(a.owner) {
                want.insert((a.primary, a.index, false));
            }
        }
        let what = |&(w, a, promote): &(Who, usize, bool)| {
            format!(
                "{} {} {}",
                w.name(),
                if promote {
                    "promoting its shadows of"
                } else {
                    "claiming"
                },
                vip(a)
            )
        };
        for t in want.difference(&self.takeovers) {
            v.push(format!("takeover: no {} after the kill", what(t)));
        }
        for t in self.takeovers.difference(&want) {
            v.push(format!(
                "takeover: {} with no node of that address dead",
                what(t)
            ));
        }
        if self.faults.healed_at.is_some() {
            self.judge_rejoin(v);
            return;
        }
        for &(w, a, _) in &want {
            if let Some(n) = self.nodes[w.index()].as_ref() {
                let role = n.site_of(a).map(|s| n.core.role(s));
                if role != Some(Role::Simplex) {
                    v.push(format!(
                        "takeover: {} serves {} as {role:?} at the end, not alone",
                        w.name(),
                        vip(a)
                    ));
                }
            }
        }
    }
}

impl World {
    /// After a healed LAN: the victim linked again and rejoined; every
    /// node holds every address in its configured role again.
    fn judge_rejoin(&self, v: &mut Vec<String>) {
        for n in self.nodes.iter().flatten() {
            for plan in self.spec.topology.sites(n.who) {
                let Some(site) = n.site_of(plan.address) else {
                    continue;
                };
                let role = n.core.role(site);
                if role != plan.role || n.core.yielded(site) {
                    v.push(format!(
                        "rejoin: {} holds {} as {role:?}{} at the end, {:.1}s after the LAN came back, not as its configured {:?}",
                        n.who.name(),
                        vip(plan.address),
                        if n.core.yielded(site) { " (standing by)" } else { "" },
                        self.faults
                            .healed_at
                            .map_or(0.0, |h| (self.t - h).as_secs_f64()),
                        plan.role
                    ));
                }
                if !self.faults.linked(n.who, plan.peer) {
                    v.push(format!(
                        "rejoin: {} has no link to {} at the end, after the LAN came back",
                        n.who.name(),
                        plan.peer.name()
                    ));
                }
            }
        }
    }

    /// Each application request the client sent committed exactly once:
    /// no request id answered two client requests, and (once the client is
    /// done) no commit that answered no client request — a request run
    /// under a second id.
    fn judge_commits(&self, done: bool, ids: &[String], v: &mut Vec<String>) {
        let mut seen = BTreeSet::new();
        for id in ids {
            if !seen.insert(id.as_str()) {
                v.push(format!(
                    "promise 2/3: the application's reply for request id {id} answered two client requests"
                ));
            }
        }
        if !done {
            return;
        }
        for (id, c) in self.faults.db.commits() {
            if !seen.contains(id.as_str()) {
                v.push(format!(
                    "promise 3: the database committed request id {id} ({} executions), which answered no client request — a request executed under a second id",
                    c.executions
                ));
            }
        }
    }
}

/// What judging the application's replies needs: the database, and where
/// to put the request ids the replies name.
struct AppCheck<'a> {
    db: &'a Database,
    ids: &'a mut Vec<String>,
}

/// Judge reply `k` of connection `i` to application request `raw`: a 200
/// (a peer with a live application exists in every run), naming a request
/// id the database committed for this very request, byte for byte the
/// committed reply as the HTTP layer frames it.
fn check_app_reply(
    i: &str,
    k: usize,
    raw: &[u8],
    bytes: &[u8],
    r: &reply::Reply,
    app: &mut AppCheck<'_>,
    v: &mut Vec<String>,
) {
    if r.status != 200 {
        v.push(format!(
            "promise 2: connection {i}: reply {k} to an application request is a {} (a node with a live application was there to run it)",
            r.status
        ));
        return;
    }
    let body = &bytes[r.head_len..];
    let Some(id) = app::request_id_of(body) else {
        v.push(format!(
            "promise 2: connection {i}: reply {k} is not the application's reply ({} bytes)",
            bytes.len()
        ));
        return;
    };
    app.ids.push(id.to_owned());
    let Some(c) = app.db.get(id) else {
        v.push(format!(
            "promise 2: connection {i}: reply {k} names request id {id}, which the database never committed"
        ));
        return;
    };
    if app::digest_of_raw(raw) != Some(c.digest) {
        v.push(format!(
            "promise 2: connection {i}: reply {k} is the reply committed for request id {id}, another request"
        ));
        return;
    }
    let want = app::render(raw, &c.response);
    if want.as_deref() != Some(bytes) {
        let at = want.as_deref().map_or(0, |w| first_difference(bytes, w));
        v.push(format!(
            "promise 2: connection {i}: reply {k} differs from the reply committed for request id {id} from byte {at}"
        ));
    }
}

/// Compare a connection's received stream with its expected replies.
fn check_replies(
    i: &str,
    got: &[u8],
    expected: &[Expected],
    app: &mut AppCheck<'_>,
    v: &mut Vec<String>,
) {
    let parsed = match reply::parse_stream(got) {
        Ok(p) => p,
        Err(e) => {
            v.push(format!("promise 2: connection {i}: {e}"));
            return;
        }
    };
    for (k, exp) in expected.iter().enumerate() {
        let Some(r) = parsed.replies.get(k) else {
            if k == parsed.replies.len() && parsed.partial > 0 {
                v.push(format!(
                    "promise 1/2: connection {i}: reply {k} incomplete ({} bytes of it received)",
                    parsed.partial
                ));
            } else {
                v.push(format!("promise 2: connection {i}: reply {k} missing"));
            }
            continue;
        };
        let bytes = &got[r.start..r.end()];
        if let Expected::App(raw) = exp {
            check_app_reply(i, k, raw, bytes, r, app, v);
            continue;
        }
        if exp.matches(bytes).is_some() {
            continue;
        }
        let what = match exp {
            Expected::App(_) => unreachable!("judged above"),
            Expected::Exact(want) => {
                let at = first_difference(bytes, want);
                let want_status = reply::parse_stream(want)
                    .ok()
                    .and_then(|p| p.replies.first().map(|r| r.status))
                    .unwrap_or(0);
                format!(
                    "is status {} ({} bytes) where {want_status} ({} bytes) was expected; they differ from reply byte {at} (stream offset {})",
                    r.status,
                    bytes.len(),
                    want.len(),
                    r.start + at
                )
            }
            Expected::OneOf(cands) => {
                let best = cands
                    .iter()
                    .map(|(seed, c)| (first_difference(bytes, c), *seed))
                    .max()
                    .unwrap_or((0, 0));
                format!(
                    "equals none of the {} candidate generations (status {}, {} bytes); it agrees with seed {:#x}'s for its first {} bytes only — spliced or corrupt",
                    cands.len(),
                    r.status,
                    bytes.len(),
                    best.1,
                    best.0
                )
            }
        };
        v.push(format!("promise 2: connection {i}: reply {k} {what}"));
    }
    if parsed.replies.len() > expected.len() {
        v.push(format!(
            "promise 2: connection {i}: {} replies for {} requests",
            parsed.replies.len(),
            expected.len()
        ));
    } else if parsed.partial > 0 && parsed.replies.len() >= expected.len() {
        v.push(format!(
            "promise 2: connection {i}: {} stray bytes after the last reply",
            parsed.partial
        ));
    }
}

/// An HTTPS connection's handshake, as the client saw it: resumed when
/// its ClientHello offered one of our tickets (whichever node answered:
/// both hold the ticket key, and a survivor that re-runs the handshake
/// from the logged ClientHello resumes it as well), with a
/// HelloRetryRequest when its first key share was one the server does not
/// serve, else full (another server's ticket, offered with 0-RTT data, is
/// refused); and never 0-RTT (replayable: our tickets must not allow it,
/// and early data offered is not accepted — that it is not executed
/// either, the handler counts and the replies say).
fn check_handshake(i: &str, c: &crate::client::ClientConn, v: &mut Vec<String>) {
    use rustls::HandshakeKind as K;
    if c.script.early_data {
        // The scenario's premise: the other server's ticket let the client
        // send its request as 0-RTT data.
        if c.early_data_sent == 0 {
            v.push(format!(
                "tls: connection {i}: the client could not send 0-RTT data (the scenario tests nothing)"
            ));
        }
    } else if c.early_data_possible {
        v.push(format!(
            "tls: connection {i}: the session ticket it offered allows 0-RTT data (the server must refuse early data)"
        ));
    }
    if c.early_data_accepted {
        v.push(format!(
            "tls: connection {i}: the server accepted 0-RTT data"
        ));
    }
    let Some(kind) = c.handshake_kind else {
        return;
    };
    let want = if c.offered_ticket && !c.script.early_data {
        K::Resumed
    } else if c.script.hello_retry {
        K::FullWithHelloRetryRequest
    } else {
        K::Full
    };
    if kind != want {
        v.push(format!(
            "tls: connection {i}: the handshake was {kind:?}, expected {want:?} (ticket offered: {}, first key share one the server does not serve: {})",
            c.offered_ticket, c.script.hello_retry
        ));
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}
