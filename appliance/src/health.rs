//! Health decisions over a status snapshot ([`crate::admin::Status`]):
//! `hotpair status --check`'s exit code, and the metrics listener's
//! `/healthz` and `/readyz`. Pure functions, so that what a load balancer
//! or a keepalived-style check script is told is tested without a node.
//!
//! Three questions, three answers:
//! - **alive** (`/healthz`): the stack loop runs rounds. A snapshot is only
//!   ever taken in a round, so its age on the stack thread's monotonic
//!   clock is the time since a round (the reader woke the loop for a
//!   fresh one first).
//! - **ready** (`/readyz`): this node answers for every address it is
//!   responsible for, replicated or alone.
//! - **check** (`status --check`): ready *and* replicated (0), served but
//!   some address alone (1), or some address not served (2).

use std::time::{Duration, Instant};

use hotpair_replicator::node::SiteState;

use crate::admin::{AddressStatus, Status, PUBLISH_EVERY};

/// How one address stands, as far as health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// Replicated with its peer up, or configured without a peer: as
    /// configured, nothing to repair.
    AsConfigured,
    /// Served by this node alone after a takeover: the peer must come
    /// back before the next failure is survived.
    Alone,
    /// Not answered by this node: fenced (the peer holds it), or waiting
    /// for its peer (starting, or the peer's heartbeat timeout runs).
    Not,
}

fn served(a: &AddressStatus) -> Served {
    if a.fenced {
        return Served::Not;
    }
    // The snapshot may come from another node's JSON: a word this code
    // does not know (a newer node's) reads as not served until it does.
    match a.state.parse::<SiteState>() {
        Ok(SiteState::Replicated | SiteState::Alone) => Served::AsConfigured,
        Ok(SiteState::Promoted | SiteState::Claimed) => Served::Alone,
        Ok(SiteState::Waiting | SiteState::Fenced) | Err(_) => Served::Not,
    }
}

fn describe(a: &AddressStatus) -> String {
    let peer = a
        .peer
        .as_ref()
        .map_or(String::new(), |p| format!(" (peer {} {})", p.name, p.link));
    format!("{} {}{peer}", a.address, a.state)
}

/// Why a snapshot cannot be judged at all, if so: none taken yet, or the
/// node is stopping.
fn not_judged(s: &Status) -> Option<String> {
    if s.format == 0 {
        return Some("booting: no status snapshot yet".into());
    }
    if s.leaving {
        return Some("leaving: a planned stop is under way".into());
    }
    if s.addresses.is_empty() {
        return Some("no service address".into());
    }
    None
}

/// `/readyz`: whether the node answers for every address it is
/// responsible for (replicated or alone), and why not.
pub fn readiness(s: &Status) -> (bool, String) {
    if let Some(why) = not_judged(s) {
        return (false, why);
    }
    let not: Vec<String> = s
        .addresses
        .iter()
        .filter(|a| served(a) == Served::Not)
        .map(describe)
        .collect();
    if not.is_empty() {
        let all: Vec<String> = s.addresses.iter().map(describe).collect();
        (true, format!("ready: serving {}", all.join(", ")))
    } else {
        (false, format!("not ready: not serving {}", not.join(", ")))
    }
}

/// How old a snapshot may be before the stack loop counts as stalled:
/// twice the heartbeat timeout — a loop stalled that long has had its
/// peer take over already — but never under three snapshot periods, so
/// the period itself cannot make a live loop look stalled.
pub fn stale_after(heartbeat_timeout: Duration) -> Duration {
    (heartbeat_timeout * 2).max(PUBLISH_EVERY * 3)
}

/// `/healthz`: whether the stack loop is alive (its last round at most
/// `stale_after` before `now`), and why not.
pub fn liveness(s: &Status, now: Instant, stale_after: Duration) -> (bool, String) {
    let Some(at) = s.taken_at else {
        return (
            false,
            "booting: the stack loop has not run a round yet".into(),
        );
    };
    let age = now.saturating_duration_since(at);
    if age > stale_after {
        (
            false,
            format!(
                "stalled: the stack loop's last round was {} ms ago (limit {} ms)",
                age.as_millis(),
                stale_after.as_millis()
            ),
        )
    } else {
        (
            true,
            format!(
                "alive: the stack loop's last round was {} ms ago",
                age.as_millis()
            ),
        )
    }
}

/// `hotpair status --check`'s verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Every address as configured (replicated, or configured alone).
    Ok = 0,
    /// Every address served, some alone after a takeover.
    Degraded = 1,
    /// Some address not served, the node stopping or stalled, or no node.
    Down = 2,
}

impl Check {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Check::Ok => "OK",
            Check::Degraded => "DEGRADED",
            Check::Down => "DOWN",
        }
    }
}

/// `hotpair status --check` over a snapshot the admin socket gave at
/// `now_unix_ms` (the client's wall clock: the socket is local, so the
/// node's clock is the same one). A snapshot older than [`stale_after`]
/// of the longest heartbeat timeout means the stack loop no longer runs
/// rounds (the admin task answers from its tokio thread regardless).
pub fn check(s: &Status, now_unix_ms: u64) -> (Check, String) {
    if let Some(why) = not_judged(s) {
        return (Check::Down, why);
    }
    let timeout = s
        .addresses
        .iter()
        .filter_map(|a| a.peer.as_ref().map(|p| p.heartbeat_timeout_ms))
        .max()
        .map_or(Duration::ZERO, Duration::from_millis);
    let limit = stale_after(timeout);
    let age = Duration::from_millis(now_unix_ms.saturating_sub(s.taken_at_unix_ms));
    if age > limit {
        return (
            Check::Down,
            format!(
                "stalled: the node's last status snapshot is {} ms old (limit {} ms)",
                age.as_millis(),
                limit.as_millis()
            ),
        );
    }
    let list = |want: Served| -> Vec<String> {
        s.addresses
            .iter()
            .filter(|a| served(a) == want)
            .map(describe)
            .collect()
    };
    let down = list(Served::Not);
    if !down.is_empty() {
        return (Check::Down, format!("not serving {}", down.join(", ")));
    }
    let alone = list(Served::Alone);
    if !alone.is_empty() {
        return (
            Check::Degraded,
            format!("serving alone (unreplicated) {}", alone.join(", ")),
        );
    }
    (
        Check::Ok,
        format!("serving {}", list(Served::AsConfigured).join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::tests::sample;

    /// `sample()` with the address in state `state`.
    fn with_state(state: &str) -> Status {
        let mut s = sample();
        let a = &mut s.addresses[0];
        a.state = state.into();
        a.fenced = state == "fenced";
        s
    }

    /// A second address, replicated, beside the sample's.
    fn two(first: &str) -> Status {
        let mut s = with_state(first);
        let mut b = s.addresses[0].clone();
        b.address = "10.77.0.11".into();
        b.state = "replicated".into();
        b.fenced = false;
        s.addresses.push(b);
        s
    }

    const NOW: u64 = 1_000_100; // 100 ms after sample()'s snapshot

    #[test]
    fn the_check_exit_code_follows_the_worst_address() {
        for (state, want) in [
            ("replicated", Check::Ok),
            ("alone", Check::Ok),
            ("promoted", Check::Degraded),
            ("claimed", Check::Degraded),
            ("waiting", Check::Down),
            ("fenced", Check::Down),
            ("something-new", Check::Down),
        ] {
            let (got, why) = check(&with_state(state), NOW);
            assert_eq!(got, want, "{state}: {why}");
            assert!(why.contains("10.77.0.10"), "{state}: {why}");
            // With a second, replicated address the worst one decides.
            let (got, why) = check(&two(state), NOW);
            assert_eq!(got, want, "{state} + replicated: {why}");
        }
        let (_, why) = check(&with_state("promoted"), NOW);
        assert!(
            why.contains("alone") && why.contains("peer n1 down"),
            "{why}"
        );
        // A fenced flag wins over a state that says otherwise.
        let mut s = with_state("replicated");
        s.addresses[0].fenced = true;
        assert_eq!(check(&s, NOW).0, Check::Down);
        assert_eq!(
            (Check::Ok.code(), Check::Degraded.code(), Check::Down.code()),
            (0, 1, 2)
        );
    }

    #[test]
    fn the_check_says_down_while_booting_leaving_or_stalled() {
        let (got, why) = check(&Status::default(), NOW);
        assert_eq!(got, Check::Down);
        assert!(why.contains("booting"), "{why}");
        let mut s = with_state("replicated");
        s.leaving = true;
        let (got, why) = check(&s, NOW);
        assert!(got == Check::Down && why.contains("leaving"), "{why}");
        // sample(): heartbeat timeout 500 ms, so stale beyond 1 s.
        let s = with_state("replicated");
        assert_eq!(check(&s, s.taken_at_unix_ms + 1000).0, Check::Ok);
        let (got, why) = check(&s, s.taken_at_unix_ms + 1001);
        assert!(got == Check::Down && why.contains("stalled"), "{why}");
        let mut s = with_state("replicated");
        s.addresses.clear();
        assert_eq!(check(&s, NOW).0, Check::Down);
    }

    #[test]
    fn ready_means_every_address_served_replicated_or_alone() {
        for (state, want) in [
            ("replicated", true),
            ("alone", true),
            ("promoted", true),
            ("claimed", true),
            ("waiting", false),
            ("fenced", false),
        ] {
            let (got, why) = readiness(&with_state(state));
            assert_eq!(got, want, "{state}: {why}");
            assert!(why.contains("10.77.0.10"), "{state}: {why}");
            assert_eq!(readiness(&two(state)).0, want, "{state} + replicated");
        }
        let (ok, why) = readiness(&Status::default());
        assert!(!ok && why.contains("booting"), "{why}");
        let mut s = with_state("replicated");
        s.leaving = true;
        let (ok, why) = readiness(&s);
        assert!(!ok && why.contains("leaving"), "{why}");
    }

    #[test]
    fn alive_means_a_recent_round() {
        let limit = stale_after(Duration::from_millis(500));
        assert_eq!(limit, Duration::from_secs(1));
        // Never under three snapshot periods, whatever the timeout.
        assert_eq!(stale_after(Duration::from_millis(50)), PUBLISH_EVERY * 3);
        let now = Instant::now();
        let mut s = with_state("fenced");
        let (ok, why) = liveness(&s, now, limit);
        assert!(!ok && why.contains("booting"), "{why}");
        // Liveness is about the loop, not the addresses: fenced is alive.
        s.taken_at = Some(now);
        let later = now + Duration::from_millis(400);
        let (ok, why) = liveness(&s, later, limit);
        assert!(ok && why.contains("400 ms"), "{why}");
        let (ok, why) = liveness(&s, now + Duration::from_millis(1001), limit);
        assert!(!ok && why.contains("stalled"), "{why}");
    }
}
