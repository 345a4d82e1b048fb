//! `fall`/`rise` debouncing, shared by the LAN check and the application
//! check (keepalived's and HAProxy's words): `fall` failures in a row mark
//! a thing down, `rise` successes in a row up again; one result the other
//! way resets the count.

/// A debounced up/down state.
#[derive(Debug, Clone)]
pub struct FallRise {
    fall: u32,
    rise: u32,
    up: bool,
    misses: u32,
    hits: u32,
    changes: u64,
}

impl FallRise {
    /// Starts up (a thing that is down is found out within `fall`
    /// results); counts below 1 are taken as 1.
    pub fn new(fall: u32, rise: u32) -> Self {
        FallRise {
            fall: fall.max(1),
            rise: rise.max(1),
            up: true,
            misses: 0,
            hits: 0,
            changes: 0,
        }
    }

    /// Whether the thing is up now.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Times the state changed so far.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// One result; `Some(new state)` when it changed the state.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.misses = 0;
            self.hits = self.hits.saturating_add(1);
            if !self.up && self.hits >= self.rise {
                self.up = true;
                self.changes += 1;
                return Some(true);
            }
        } else {
            self.hits = 0;
            self.misses = self.misses.saturating_add(1);
            if self.up && self.misses >= self.fall {
                self.up = false;
                self.changes += 1;
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_misses_in_a_row_mark_down_and_rise_hits_mark_up() {
        let mut s = FallRise::new(3, 2);
        assert_eq!(s.observe(false), None);
        assert_eq!(s.observe(false), None);
        // A success between resets the misses.
        assert_eq!(s.observe(true), None);
        assert_eq!(s.observe(false), None);
        assert_eq!(s.observe(false), None);
        assert_eq!(s.observe(false), Some(false));
        assert!(!s.is_up());
        assert_eq!(s.observe(false), None, "already down: no change");
        assert_eq!(s.observe(true), None);
        assert_eq!(s.observe(false), None, "a miss resets the hits");
        assert_eq!(s.observe(true), None);
        assert_eq!(s.observe(true), Some(true));
        assert_eq!(s.changes(), 2);
    }

    #[test]
    fn counts_below_one_act_as_one() {
        let mut s = FallRise::new(0, 0);
        assert_eq!(s.observe(false), Some(false));
        assert_eq!(s.observe(true), Some(true));
    }
}
