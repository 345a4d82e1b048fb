//! Faults a node lives through, and what the world needs for them (with
//! [`RunSpec::checks`](super::RunSpec::checks)):
//!
//! - **the LAN cut** ([`Variant::Lan`]): every LAN frame to or from the
//!   victim is dropped — the client's, the gateway's and the other nodes'
//!   alike — while its links and its process live on; [`LAN_OUTAGE`] later
//!   the LAN comes back. The gateway is a port of the switch that answers
//!   ARP requests for [`GATEWAY_IP`] (the nodes' LAN check probes, sender
//!   0.0.0.0, answered to 0.0.0.0 as every host does).
//! - **the application** behind every node (`/app/` jobs, see
//!   [`crate::app`]), with one database for the world, and its death
//!   ([`Variant::App`]): from then on the victim's jobs in flight and new
//!   ones fail as unreachable (the shell hands the core a 502 through
//!   `handle_job_unreachable`) and its application checks fail.
//! - **the links as the shell keeps them**: a node whose core drops a
//!   link (`LinkAction::Drop`, decided inside `node::step` as in
//!   production) closes its session (the peer hears `Lost` after what is
//!   on the wire). A link is set up again only when and because a core
//!   says so (`LinkAction::Reconnect { after }`, on a lost session or once
//!   a node that could not serve can again): the world starts that node's
//!   link task `after` later, as `appliance/src/service.rs` spawns one.
//!   Of each pair the lower node listens and the higher connects, retrying
//!   every [`CONNECT_RETRY`] as `appliance/src/link.rs` does; a session
//!   comes up when both tasks run and neither end holds one, and each
//!   core then admits it or not (`NodeCore::accept_link`: not while it
//!   cannot serve; a refused session is closed after that node's round,
//!   as the shell closes the socket). Each link session has a number:
//!   what was sent on an older one is not delivered.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hotpair_http::Response;
use hotpair_replicator::node::{Job, Work};
use hotpair_stack::arp;
use hotpair_stack::smoltcp::wire::ArpOperation;
use hotpair_stack::ConnId;

use crate::addresses::{Who, GATEWAY_IP, GATEWAY_MAC};
use crate::app::{self, Database};
use crate::node::LinkIn;
use crate::topology::Topology;

use super::{Delivery, Kill, Port, Variant, World};

/// How long a cut LAN stays cut.
pub const LAN_OUTAGE: Duration = Duration::from_millis(1500);
/// A run with a healed LAN goes on at least this long after the heal: the
/// victim finds its LAN back, links and rejoins.
pub const SETTLE: Duration = Duration::from_secs(2);
/// The connecting link task's pause between attempts while nobody listens
/// (`appliance/src/link.rs`).
pub const CONNECT_RETRY: Duration = Duration::from_millis(100);

/// The application's work, as deliveries.
#[derive(Debug)]
pub(super) enum AppEvent {
    /// Job `n` reaches its commit point.
    Commit(u64),
    /// Job `n`'s reply (or its failure) reaches the node.
    Reply(u64),
    /// The result of an application check reaches the node.
    Check(Who),
}

struct JobState {
    node: Who,
    site: usize,
    conn: ConnId,
    index: u64,
    request_id: String,
    digest: u64,
    /// What the database answered at the commit point.
    committed: Option<Response>,
}

pub(super) struct Faults {
    /// The node cut off the LAN, until the heal.
    pub cut: Option<Who>,
    pub heal_at: Option<Duration>,
    pub healed_at: Option<Duration>,
    /// The node whose application is dead.
    pub app_dead: Option<Who>,
    pub db: Database,
    jobs: BTreeMap<u64, JobState>,
    next_job: u64,
    /// (node, peer): the link session the node holds with the peer, if any.
    views: BTreeMap<(Who, Who), Option<u64>>,
    /// Per pair of nodes (lower first): the latest session.
    sessions: BTreeMap<(Who, Who), u64>,
    /// (node, peer): a new session's `Connected` is on its way to the node.
    pending: BTreeSet<(Who, Who)>,
    /// (node, peer): the node's link task for the peer runs, since when
    /// (listening, or connecting and retrying), waiting for the peer's.
    tasks: BTreeMap<(Who, Who), Duration>,
    /// Per address: (finals logged to its owner, the owner's handler runs
    /// for it) at its first takeover — where a victim that lives on stopped
    /// serving it.
    pub takeover_snap: Vec<Option<(u64, u64)>>,
    /// Handler runs per address of the node in its round, before it.
    pub runs_before_round: Vec<(usize, u64)>,
    /// Links made again.
    pub relinks: u64,
    /// Jobs the application could not take (handed to the core as
    /// unreachable).
    pub refused: u64,
}

fn pair(a: Who, b: Who) -> (Who, Who) {
    (a.min(b), a.max(b))
}

impl Faults {
    pub fn new(topo: Topology) -> Self {
        let mut views = BTreeMap::new();
        let mut sessions = BTreeMap::new();
        for w in topo.all_nodes() {
            for p in topo.peers(w) {
                views.insert((w, p), Some(0));
                sessions.insert(pair(w, p), 0);
            }
        }
        Faults {
            cut: None,
            heal_at: None,
            healed_at: None,
            app_dead: None,
            db: Database::default(),
            jobs: BTreeMap::new(),
            next_job: 0,
            views,
            sessions,
            pending: BTreeSet::new(),
            tasks: BTreeMap::new(),
            takeover_snap: vec![None; topo.addresses().len()],
            relinks: 0,
            refused: 0,
            runs_before_round: Vec::new(),
        }
    }

    /// Whether a frame between these ports crosses the cut.
    pub fn cut_off(&self, from: Port, to: Port) -> bool {
        self.cut
            .is_some_and(|c| from == Port::Node(c) || to == Port::Node(c))
    }

    /// The session a message from `from` to `to` travels in: the one the
    /// sender holds (none: a number no receiver holds).
    pub fn session(&self, from: Who, to: Who) -> u64 {
        self.views
            .get(&(from, to))
            .copied()
            .flatten()
            .unwrap_or(u64::MAX)
    }

    /// The node is dead: its link tasks with it.
    pub(super) fn end_link_tasks(&mut self, node: Who) {
        self.tasks.retain(|&(n, _), _| n != node);
    }

    /// Whether the node holds a link session with the peer.
    pub fn linked(&self, node: Who, peer: Who) -> bool {
        self.views.get(&(node, peer)).copied().flatten().is_some()
    }
}

impl World {
    /// A fault strikes `k.victim`; its process lives on.
    pub(super) fn strike(&mut self, k: Kill) {
        match k.variant {
            Variant::Lan => {
                self.faults.cut = Some(k.victim);
                self.faults.heal_at = Some(self.t + LAN_OUTAGE);
            }
            Variant::App => self.faults.app_dead = Some(k.victim),
            _ => unreachable!("only a victim that lives on is struck"),
        }
    }

    /// The LAN comes back when its time has come.
    pub(super) fn heal_if_due(&mut self) {
        if self.faults.heal_at.is_some_and(|h| h <= self.t) {
            self.faults.heal_at = None;
            self.faults.healed_at = Some(self.t);
            let who = self.faults.cut.take();
            self.trace(|| format!("HEAL the LAN of {}", who.map_or("-", Who::name)));
        }
    }

    /// Whether a healed LAN has had its time to settle (the victim rejoins).
    pub(super) fn settled(&self) -> bool {
        match (self.faults.heal_at, self.faults.healed_at) {
            (Some(_), _) => false,
            (None, Some(h)) => self.t >= h + SETTLE,
            (None, None) => true,
        }
    }

    /// A LAN frame reaches the gateway: it answers ARP requests for its
    /// address, probes (sender 0.0.0.0) included.
    pub(super) fn gateway_receive(&mut self, frame: &[u8]) {
        let Some(a) = arp::parse(frame) else { return };
        if a.operation != ArpOperation::Request || a.target_ip != GATEWAY_IP {
            return;
        }
        let answer = arp::reply(GATEWAY_MAC, GATEWAY_IP, a.sender_mac, a.sender_ip);
        self.send_lan(Port::Gateway, answer);
    }

    fn schedule(&mut self, at: Duration, d: Delivery) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.insert((at, seq), d);
    }

    /// A job for the application of node `w`.
    pub(super) fn start_job(&mut self, w: Who, job: Job) {
        let Job {
            site,
            conn,
            index,
            request,
            work,
            ..
        } = job;
        let request_id = match work {
            Work::Route { request_id, .. } => request_id,
            Work::Generate { seed, max_size } => {
                // `generate` runs inline in the simulation; answer a job
                // anyway, as the shell would.
                let r = hotpair_http::generate::handle(&request, seed, max_size);
                if let Some(n) = self.nodes[w.index()].as_mut() {
                    n.core.handle_job_done(site, conn, index, r);
                }
                return;
            }
        };
        let n = self.faults.next_job;
        self.faults.next_job += 1;
        let dead = self.faults.app_dead == Some(w);
        let delay = app::job_delay(self.spec.seed, w.index(), &request_id);
        self.trace(|| {
            format!(
                "APP {} job {n}: {request_id} {}",
                w.name(),
                if dead { "refused" } else { "taken" }
            )
        });
        self.faults.jobs.insert(
            n,
            JobState {
                node: w,
                site,
                conn,
                index,
                digest: app::digest_of(&request),
                request_id,
                committed: None,
            },
        );
        if dead {
            self.schedule(
                self.t + app::REFUSE_DELAY,
                Delivery::App(AppEvent::Reply(n)),
            );
        } else {
            self.schedule(self.t + delay / 2, Delivery::App(AppEvent::Commit(n)));
            self.schedule(self.t + delay, Delivery::App(AppEvent::Reply(n)));
        }
    }

    /// Node `w` asked for an application check.
    pub(super) fn start_app_check(&mut self, w: Who) {
        let delay = if self.faults.app_dead == Some(w) {
            app::REFUSE_DELAY
        } else {
            app::CHECK_DELAY
        };
        self.schedule(self.t + delay, Delivery::App(AppEvent::Check(w)));
    }

    pub(super) fn app_event(&mut self, ev: AppEvent) -> Result<(), String> {
        match ev {
            AppEvent::Commit(n) => {
                let Some(j) = self.faults.jobs.get_mut(&n) else {
                    return Ok(());
                };
                // The application is a process of its own: it commits what
                // it took even if the node that sent it died since.
                if self.faults.app_dead != Some(j.node) {
                    j.committed = Some(self.faults.db.execute(&j.request_id, j.digest));
                    let (who, id) = (j.node, j.request_id.clone());
                    self.trace(|| format!("APP {} job {n}: {id} committed", who.name()));
                }
            }
            AppEvent::Reply(n) => {
                let Some(j) = self.faults.jobs.remove(&n) else {
                    return Ok(());
                };
                let w = j.node;
                let now = self.now();
                let Some(node) = self.nodes[w.index()].as_mut() else {
                    return Ok(());
                };
                match j.committed.filter(|_| self.faults.app_dead != Some(w)) {
                    Some(r) => node.core.handle_job_done(j.site, j.conn, j.index, r),
                    None => {
                        // Refused, or reset before its reply: a 502 for
                        // the core, which may hold it for the verdict.
                        self.faults.refused += 1;
                        node.core.handle_job_unreachable(
                            j.site,
                            j.conn,
                            j.index,
                            Response::error(502),
                            now,
                        );
                    }
                }
                self.trace(|| format!("APP {} job {n}: {} answered", w.name(), j.request_id));
                self.run_node(w)?;
            }
            AppEvent::Check(w) => {
                let ok = self.faults.app_dead != Some(w);
                let Some(node) = self.nodes[w.index()].as_mut() else {
                    return Ok(());
                };
                node.core.handle_app_check(ok);
                self.trace(|| {
                    format!(
                        "APP {} check: {}",
                        w.name(),
                        if ok { "ok" } else { "fails" }
                    )
                });
                self.run_node(w)?;
            }
        }
        Ok(())
    }

    /// What a link delivery becomes at its receiver, by the session it
    /// travels in (see the module docs); `None`: not delivered.
    pub(super) fn link_session_filter(
        &mut self,
        from: Who,
        to: Who,
        msg: LinkIn,
        session: u64,
    ) -> Option<LinkIn> {
        if !self.spec.checks {
            return Some(msg);
        }
        let held = self.faults.views.get(&(to, from)).copied().flatten();
        match msg {
            LinkIn::Connected => {
                self.faults.pending.remove(&(to, from));
                self.nodes[to.index()].as_ref()?;
                // The session is the node's now; its core may refuse it
                // (`NodeCore::accept_link`: it cannot serve), and the
                // world closes it after the node's round, as the shell
                // closes the socket.
                self.faults.views.insert((to, from), Some(session));
                Some(LinkIn::Connected)
            }
            m if held != Some(session) => {
                self.trace(|| {
                    format!(
                        "link {} -> {}: dropped, session {session} is closed ({})",
                        from.name(),
                        to.name(),
                        super::link_desc(&m)
                    )
                });
                None
            }
            LinkIn::Lost(why) => {
                self.faults.views.insert((to, from), None);
                Some(LinkIn::Lost(why))
            }
            m => Some(m),
        }
    }

    /// After a round of `w`: close the sessions of the links its core
    /// dropped (`LinkAction::Drop`; the peer hears `Lost` after what is on
    /// the wire).
    pub(super) fn drop_links(&mut self, w: Who, dropped: &[Who]) {
        for &p in dropped {
            if let Some(s) = self.faults.views.get(&(w, p)).copied().flatten() {
                self.faults.views.insert((w, p), None);
                self.trace(|| format!("LINK {} drops its link to {}", w.name(), p.name()));
                self.send_link_in(w, p, LinkIn::Lost("closed by the peer".into()), s);
            }
        }
    }

    /// After a round of `w`: start the link tasks its core asked for
    /// (`LinkAction::Reconnect`), each after its pause.
    pub(super) fn reconnect_links(&mut self, w: Who, reconnects: &[(Who, Duration)]) {
        for &(peer, after) in reconnects {
            self.trace(|| {
                format!(
                    "LINK {} sets up its link to {} in {} ms",
                    w.name(),
                    peer.name(),
                    after.as_millis()
                )
            });
            self.schedule(self.t + after, Delivery::LinkTask { node: w, peer });
        }
    }

    /// Node `w`'s link task for `peer` starts: it listens (the lower of
    /// the two) or connects; with the peer's task running too and neither
    /// end holding a session, the session comes up.
    pub(super) fn start_link_task(&mut self, w: Who, peer: Who) {
        if self.nodes[w.index()].is_none() {
            return;
        }
        // One attempt per peer at a time (the core asks for one): a second
        // ask while one runs changes nothing.
        self.faults.tasks.entry((w, peer)).or_insert(self.t);
        let (listener, connector) = pair(w, peer);
        let (Some(&listening), Some(&connecting)) = (
            self.faults.tasks.get(&(listener, connector)),
            self.faults.tasks.get(&(connector, listener)),
        ) else {
            return;
        };
        let f = &self.faults;
        if f.linked(w, peer)
            || f.linked(peer, w)
            || f.pending.contains(&(w, peer))
            || f.pending.contains(&(peer, w))
        {
            return;
        }
        // The connecting task reaches the listener at its first attempt
        // after the listener is up.
        let wait = if listening > connecting {
            let since = (listening - connecting).as_nanos() % CONNECT_RETRY.as_nanos();
            if since == 0 {
                Duration::ZERO
            } else {
                CONNECT_RETRY - Duration::from_nanos(since as u64)
            }
        } else {
            Duration::ZERO
        };
        self.faults.tasks.remove(&(listener, connector));
        self.faults.tasks.remove(&(connector, listener));
        let s = self.faults.sessions.entry(pair(w, peer)).or_default();
        *s += 1;
        let s = *s;
        self.faults.relinks += 1;
        self.faults.pending.insert((w, peer));
        self.faults.pending.insert((peer, w));
        self.trace(|| {
            format!(
                "LINK {} and {} link again (session {s}) in {} ms",
                listener.name(),
                connector.name(),
                wait.as_millis()
            )
        });
        for (from, to) in [(peer, w), (w, peer)] {
            self.schedule(
                self.t + wait,
                Delivery::Link {
                    from,
                    to,
                    msg: LinkIn::Connected,
                    session: s,
                },
            );
        }
    }

    /// The first takeover of address `a`, by node `by` (in the round being
    /// emitted): what its owner had been logged and had run by then.
    pub(super) fn snapshot_takeover(&mut self, a: usize, by: Who) {
        if self.faults.takeover_snap[a].is_some() {
            return;
        }
        let finals = self
            .finals_to_owner
            .iter()
            .filter(|(x, _, _)| *x == a)
            .count() as u64;
        let owner = self.addrs[a].owner;
        // An owner that promotes runs the promoted requests in that same
        // round: count from before it.
        let before_round = (by == owner)
            .then(|| {
                self.faults
                    .runs_before_round
                    .iter()
                    .find(|&&(x, _)| x == a)
                    .map(|&(_, r)| r)
            })
            .flatten();
        let runs = before_round.unwrap_or_else(|| {
            self.nodes[owner.index()]
                .as_ref()
                .map_or(self.runs_at_kill[owner.index()][a], |n| {
                    n.handler_runs_for(a)
                })
        });
        self.faults.takeover_snap[a] = Some((finals, runs));
    }
}
