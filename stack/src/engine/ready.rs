//! Which pool slots a round must touch: a ready set plus two timer heaps.
//!
//! A node holds far more connections than are active at any moment (a real
//! site keeps tens of thousands of idle keep-alives). Walking every socket
//! on every round made each round cost O(all connections); this keeps it
//! O(slots with something to do): a slot is *ready* when a frame reached
//! its socket, its service was woken, or one of its timers came due —
//! smoltcp's own (`poll_at`: retransmission, delayed ACK, TIME-WAIT, …) or
//! the engine's (the service's deadline, a half-open timeout).
//!
//! The heaps use lazy deletion: each slot records the earliest entry it
//! has queued; an entry that no longer matches is skipped when it surfaces.
//! A timer that moves *later* queues nothing: the old entry fires early,
//! the slot is looked at once for nothing, and queues its new time then.
//! So a slot has at most one live entry per heap, and stale ones are
//! bounded by compaction. Nothing here is sized by `max_connections`: the
//! per-slot vectors grow with the pool's slab.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant as StdInstant;

/// The ready set and timers of one engine's pool.
#[derive(Debug, Default)]
pub(super) struct Ready {
    /// Slots to look at this round, each once (`marked`).
    list: Vec<usize>,
    marked: Vec<bool>,
    /// smoltcp timers, in smoltcp's microseconds, earliest first.
    timers: BinaryHeap<Reverse<(i64, usize)>>,
    timer_at: Vec<Option<i64>>,
    /// Engine and service deadlines, earliest first.
    deadlines: BinaryHeap<Reverse<(StdInstant, usize)>>,
    deadline_at: Vec<Option<StdInstant>>,
    /// Slots whose socket waits for a neighbour's MAC (ARP): looked at
    /// again when any ARP frame has come in, not only when their silence
    /// (1 s) ends.
    neighbor_wait: Vec<usize>,
    /// In `neighbor_wait` (so that adding is O(1) however many wait).
    waiting: Vec<bool>,
}

fn grow<T: Default + Clone>(v: &mut Vec<T>, i: usize) {
    if v.len() <= i {
        v.resize(i + 1, T::default());
    }
}

impl Ready {
    /// Look at slot `i` this round.
    pub(super) fn mark(&mut self, i: usize) {
        grow(&mut self.marked, i);
        if !self.marked[i] {
            self.marked[i] = true;
            self.list.push(i);
        }
    }

    /// Whether any slot is marked.
    pub(super) fn any(&self) -> bool {
        !self.list.is_empty()
    }

    /// The marked slots, in the order they were marked; the set is empty
    /// afterwards.
    pub(super) fn take(&mut self) -> Vec<usize> {
        let list = std::mem::take(&mut self.list);
        for &i in &list {
            self.marked[i] = false;
        }
        list
    }

    /// Give back a (cleared) list taken with [`Ready::take`], to keep its
    /// allocation.
    pub(super) fn give_back(&mut self, mut list: Vec<usize>) {
        if self.list.is_empty() {
            list.clear();
            self.list = list;
        }
    }

    /// smoltcp wants slot `i` polled at `at` (its microseconds).
    pub(super) fn set_timer(&mut self, i: usize, at: i64) {
        grow(&mut self.timer_at, i);
        if self.timer_at[i].is_none_or(|c| at < c) {
            self.timer_at[i] = Some(at);
            self.timers.push(Reverse((at, i)));
        }
        if self.timers.len() > 2 * self.timer_at.len() + 64 {
            self.compact_timers();
        }
    }

    /// The engine or service wants slot `i` looked at by `at`.
    pub(super) fn set_deadline(&mut self, i: usize, at: StdInstant) {
        grow(&mut self.deadline_at, i);
        if self.deadline_at[i].is_none_or(|c| at < c) {
            self.deadline_at[i] = Some(at);
            self.deadlines.push(Reverse((at, i)));
        }
        if self.deadlines.len() > 2 * self.deadline_at.len() + 64 {
            self.compact_deadlines();
        }
    }

    /// Slot `i` needs no smoltcp timer any more (its queued entry, if
    /// any, is skipped when it surfaces).
    pub(super) fn clear_timer(&mut self, i: usize) {
        if let Some(t) = self.timer_at.get_mut(i) {
            *t = None;
        }
    }

    /// Slot `i` has no deadline any more.
    pub(super) fn clear_deadline(&mut self, i: usize) {
        if let Some(t) = self.deadline_at.get_mut(i) {
            *t = None;
        }
    }

    /// Slot `i`'s socket waits for ARP.
    pub(super) fn wait_neighbor(&mut self, i: usize) {
        grow(&mut self.waiting, i);
        if !self.waiting[i] {
            self.waiting[i] = true;
            self.neighbor_wait.push(i);
        }
    }

    /// An ARP frame came in: every slot waiting for a neighbour is ready.
    pub(super) fn neighbor_seen(&mut self) {
        for i in std::mem::take(&mut self.neighbor_wait) {
            self.waiting[i] = false;
            self.mark(i);
        }
    }

    /// Slot `i` was released: its queued timers are stale now.
    pub(super) fn forget(&mut self, i: usize) {
        if let Some(t) = self.timer_at.get_mut(i) {
            *t = None;
        }
        if let Some(t) = self.deadline_at.get_mut(i) {
            *t = None;
        }
        // Left in `neighbor_wait`: a spurious look at a reused slot costs
        // nothing; removing it here would cost a scan.
    }

    /// Mark every slot whose smoltcp timer is due at `smol_now` or whose
    /// deadline is due at `now`.
    pub(super) fn fire(&mut self, smol_now: i64, now: StdInstant) {
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if at > smol_now {
                break;
            }
            self.timers.pop();
            if self.timer_at.get(i) == Some(&Some(at)) {
                self.timer_at[i] = None;
                self.mark(i);
            }
        }
        while let Some(&Reverse((at, i))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if self.deadline_at.get(i) == Some(&Some(at)) {
                self.deadline_at[i] = None;
                self.mark(i);
            }
        }
    }

    /// The earliest live smoltcp timer.
    pub(super) fn next_timer(&mut self) -> Option<i64> {
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if self.timer_at.get(i) == Some(&Some(at)) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// The earliest live deadline.
    pub(super) fn next_deadline(&mut self) -> Option<StdInstant> {
        while let Some(&Reverse((at, i))) = self.deadlines.peek() {
            if self.deadline_at.get(i) == Some(&Some(at)) {
                return Some(at);
            }
            self.deadlines.pop();
        }
        None
    }

    fn compact_timers(&mut self) {
        self.timers = self
            .timer_at
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| Reverse((t, i))))
            .collect();
    }

    fn compact_deadlines(&mut self) {
        self.deadlines = self
            .deadline_at
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| Reverse((t, i))))
            .collect();
    }

    /// Entries queued in both heaps (live or stale), for tests.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.timers.len() + self.deadlines.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn marks_once_and_takes_in_order() {
        let mut r = Ready::default();
        r.mark(5);
        r.mark(2);
        r.mark(5);
        assert!(r.any());
        assert_eq!(r.take(), vec![5, 2]);
        assert!(!r.any());
        r.mark(5);
        assert_eq!(r.take(), vec![5]);
    }

    #[test]
    fn timers_fire_when_due_and_only_once() {
        let mut r = Ready::default();
        let t0 = StdInstant::now();
        r.set_timer(1, 100);
        r.set_timer(2, 50);
        r.set_timer(3, 200);
        assert_eq!(r.next_timer(), Some(50));
        r.fire(49, t0);
        assert!(!r.any());
        r.fire(100, t0);
        assert_eq!(r.take(), vec![2, 1]);
        r.fire(150, t0);
        assert!(!r.any(), "fired timers do not fire again");
        assert_eq!(r.next_timer(), Some(200));
        r.fire(1_000, t0);
        assert_eq!(r.take(), vec![3]);
        assert_eq!(r.next_timer(), None);
    }

    #[test]
    fn an_earlier_timer_replaces_a_later_one_and_a_later_one_fires_early() {
        let mut r = Ready::default();
        let t0 = StdInstant::now();
        r.set_timer(7, 100);
        r.set_timer(7, 40); // earlier: the 100 entry is stale now
        r.fire(40, t0);
        assert_eq!(r.take(), vec![7]);
        r.fire(100, t0);
        assert!(!r.any(), "the stale entry is skipped");
        // Later than the one queued: nothing new is queued, the old entry
        // fires early (the caller then queues the later time again).
        r.set_timer(7, 300);
        r.set_timer(7, 500);
        r.fire(300, t0);
        assert_eq!(r.take(), vec![7]);
    }

    #[test]
    fn forgotten_slots_never_fire() {
        let mut r = Ready::default();
        let t0 = StdInstant::now();
        r.set_timer(3, 10);
        r.set_deadline(3, t0 + Duration::from_millis(5));
        r.wait_neighbor(3);
        r.forget(3);
        r.fire(1_000, t0 + Duration::from_secs(1));
        assert!(!r.any());
        assert_eq!(r.next_timer(), None);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn deadlines_fire_by_wall_time() {
        let mut r = Ready::default();
        let t0 = StdInstant::now();
        r.set_deadline(4, t0 + Duration::from_millis(20));
        r.set_deadline(9, t0 + Duration::from_millis(10));
        assert_eq!(r.next_deadline(), Some(t0 + Duration::from_millis(10)));
        r.fire(0, t0 + Duration::from_millis(15));
        assert_eq!(r.take(), vec![9]);
        r.fire(0, t0 + Duration::from_millis(20));
        assert_eq!(r.take(), vec![4]);
    }

    #[test]
    fn neighbor_waiters_are_marked_on_arp() {
        let mut r = Ready::default();
        r.wait_neighbor(1);
        r.wait_neighbor(1);
        r.wait_neighbor(8);
        r.neighbor_seen();
        assert_eq!(r.take(), vec![1, 8]);
        r.neighbor_seen();
        assert!(!r.any());
    }

    #[test]
    fn stale_entries_stay_bounded() {
        // A socket whose retransmission timer moves earlier on every round
        // (each queues a new entry) must not grow the heap without bound.
        let mut r = Ready::default();
        for k in 0..100_000i64 {
            r.set_timer(0, 1_000_000 - k);
        }
        // One slot: at most 2 × 1 + 64 entries before a compaction, plus the new one.
        assert!(r.queued() <= 67, "queued {}", r.queued());
        assert_eq!(r.next_timer(), Some(1_000_000 - 99_999));
    }

    #[test]
    fn many_slots_at_the_limit() {
        // 200k slots, each with a timer: every one fires exactly once.
        let mut r = Ready::default();
        let t0 = StdInstant::now();
        let n = 200_000usize;
        for i in 0..n {
            r.set_timer(i, (n - i) as i64);
        }
        r.fire(n as i64, t0);
        let mut got = r.take();
        assert_eq!(got.len(), n);
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), n);
    }
}
