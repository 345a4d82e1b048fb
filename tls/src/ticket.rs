//! Session tickets sealed with a key both nodes share, so a ticket issued
//! by one node resumes on the other, and a sealing key that rotates by
//! itself without the nodes talking to each other.
//!
//! A ticket is `key id (4) || nonce (12) || ChaCha20-Poly1305(state)`, the
//! key id as additional data. The operator's 32-byte key is a *master*:
//! the key that seals is derived from it with HKDF for the time epoch
//! `floor(unix_time / period)` (and the period), and so is its id. Both
//! nodes hold the same master and read their own clock, so they seal under
//! the same epoch key without coordination; the raw master seals nothing,
//! and neither the id nor one epoch's key says anything about another's.
//!
//! A node seals with the current epoch's key and opens with any epoch key
//! from `now - lifetime - period` up to the next epoch (the other node's
//! clock may be a little ahead), found by the id in the ticket. The keys
//! of that window are derived when the window moves and the older ones
//! dropped: a bounded set, never a growing one. Rotating the *master*
//! itself (a fresh key from `hotpair tls new-ticket-key`) is the
//! operator's: the old master becomes the previous one, whose epoch keys
//! still open tickets, so a ticket survives one master rotation; both
//! nodes' masters are rotated within a ticket lifetime of each other.

use std::fmt;
use std::sync::{Arc, Mutex};

use ring::{aead, hkdf, rand::SecureRandom};
use zeroize::Zeroizing;

use crate::error::ConfigError;

/// How long a client may keep a ticket (seconds), rustls's default.
pub const TICKET_LIFETIME_SECS: u32 = 6 * 60 * 60;

/// How long one epoch's key seals new tickets by default: an hour.
pub const DEFAULT_TICKET_ROTATION_SECS: u64 = 60 * 60;
/// The shortest period: the window of epoch keys a node may have to open
/// with is `lifetime / period + 3` per master, so a shorter one would
/// make that set large for nothing (a ticket lives 6 h anyway).
pub const MIN_TICKET_ROTATION_SECS: u64 = 10 * 60;
/// The longest period: a week.
pub const MAX_TICKET_ROTATION_SECS: u64 = 7 * 24 * 60 * 60;

const ID_LEN: usize = 4;
const NONCE_LEN: usize = aead::NONCE_LEN;
const TAG_LEN: usize = 16;

/// The time a ticketer reads, in seconds since the Unix epoch. Injectable
/// so tests can set two nodes' clocks; [`system_clock`] in the node.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The machine's wall clock (0 before 1970: such a clock seals under
/// epoch 0, which the other node refuses; a full handshake, no error).
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// A 32-byte ticket key as the operator gives it (a master: epoch keys
/// are derived from it). Zeroized on drop.
#[derive(Clone)]
pub struct TicketKey(Zeroizing<[u8; 32]>);

impl TicketKey {
    pub fn new(bytes: &[u8]) -> Result<Self, ConfigError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ConfigError::TicketKeyLength(bytes.len()))?;
        Ok(Self(Zeroizing::new(arr)))
    }
}

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TicketKey(<32 bytes>)")
    }
}

/// Which configured master an epoch key comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Master {
    Current,
    Previous,
}

/// One epoch's key and id.
struct Sealer {
    master: Master,
    epoch: u64,
    id: [u8; ID_LEN],
    key: aead::LessSafeKey,
}

impl Sealer {
    /// The epoch key of `master` for `epoch` under `period`. The period
    /// is part of the derivation: two nodes configured with different
    /// periods share no key (their tickets fall back to full handshakes)
    /// rather than meaning different times by one epoch number.
    fn derive(k: &TicketKey, which: Master, period: u64, epoch: u64) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"hotpair ticket key v2").extract(&k.0[..]);
        let mut info = [0u8; 16];
        info[..8].copy_from_slice(&period.to_be_bytes());
        info[8..].copy_from_slice(&epoch.to_be_bytes());
        let mut id = [0u8; ID_LEN];
        let mut raw = Zeroizing::new([0u8; 32]);
        prk.expand(&[b"id", &info], Len(ID_LEN))
            .and_then(|o| o.fill(&mut id))
            .expect("4 bytes of HKDF output");
        prk.expand(&[b"aead", &info], Len(32))
            .and_then(|o| o.fill(&mut raw[..]))
            .expect("32 bytes of HKDF output");
        let unbound = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &raw[..])
            .expect("a 32-byte ChaCha20-Poly1305 key");
        Self {
            master: which,
            epoch,
            id,
            key: aead::LessSafeKey::new(unbound),
        }
    }
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The epoch keys of the opening window `lo..=hi`, both masters'.
#[derive(Default)]
struct Window {
    lo: u64,
    hi: u64,
    keys: Vec<Sealer>,
}

/// rustls' `ProducesTickets` over the shared masters (current + previous),
/// sealing under the current epoch's key.
pub struct SharedTicketer {
    current: TicketKey,
    previous: Option<TicketKey>,
    period: u64,
    lifetime: u32,
    clock: Clock,
    window: Mutex<Window>,
    rng: ring::rand::SystemRandom,
}

impl fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedTicketer")
            .field("previous", &self.previous.is_some())
            .field("period", &self.period)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl SharedTicketer {
    /// Epoch keys rotating every [`DEFAULT_TICKET_ROTATION_SECS`] by the
    /// system clock.
    pub fn new(current: &TicketKey, previous: Option<&TicketKey>) -> Result<Self, ConfigError> {
        Self::with_rotation(
            current,
            previous,
            DEFAULT_TICKET_ROTATION_SECS,
            system_clock(),
        )
    }

    /// Epoch keys rotating every `period` seconds of `clock`.
    pub fn with_rotation(
        current: &TicketKey,
        previous: Option<&TicketKey>,
        period: u64,
        clock: Clock,
    ) -> Result<Self, ConfigError> {
        check_rotation(period)?;
        if previous.is_some_and(|p| p.0[..] == current.0[..]) {
            return Err(ConfigError::TicketKeyReused);
        }
        Ok(Self {
            current: current.clone(),
            previous: previous.cloned(),
            period,
            lifetime: TICKET_LIFETIME_SECS,
            clock,
            window: Mutex::new(Window::default()),
            rng: ring::rand::SystemRandom::new(),
        })
    }

    /// Runs `f` over the window's keys at the clock's present, with the
    /// current epoch, first moving the window if the epoch changed:
    /// the keys now out of it are dropped, the missing ones derived.
    fn with_window<R>(&self, f: impl FnOnce(&[Sealer], u64) -> R) -> R {
        let now = (self.clock)();
        let epoch = now / self.period;
        // The oldest epoch a ticket still within its lifetime can come
        // from, one period more for the sealing node's clock being behind.
        let lo = now.saturating_sub(u64::from(self.lifetime) + self.period) / self.period;
        // The sealing node's clock may be ahead, into the next epoch.
        let hi = epoch.saturating_add(1);
        // A poisoned lock held keys only: they are still right.
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.keys.is_empty() || (w.lo, w.hi) != (lo, hi) {
            w.keys.retain(|k| (lo..=hi).contains(&k.epoch));
            let masters = [
                Some((&self.current, Master::Current)),
                self.previous.as_ref().map(|p| (p, Master::Previous)),
            ];
            for (k, which) in masters.into_iter().flatten() {
                for e in lo..=hi {
                    if !w.keys.iter().any(|s| s.master == which && s.epoch == e) {
                        let s = Sealer::derive(k, which, self.period, e);
                        w.keys.push(s);
                    }
                }
            }
            (w.lo, w.hi) = (lo, hi);
            // The epoch number and a count: nothing of any key.
            tracing::debug!(
                epoch,
                opens_from = lo,
                keys = w.keys.len(),
                "session-ticket key window moved"
            );
        }
        f(&w.keys, epoch)
    }

    #[cfg(test)]
    fn window_len(&self) -> usize {
        self.with_window(|keys, _| keys.len())
    }
}

/// `period` is within [`MIN_TICKET_ROTATION_SECS`] ..=
/// [`MAX_TICKET_ROTATION_SECS`].
pub fn check_rotation(period: u64) -> Result<(), ConfigError> {
    if (MIN_TICKET_ROTATION_SECS..=MAX_TICKET_ROTATION_SECS).contains(&period) {
        Ok(())
    } else {
        Err(ConfigError::TicketRotation(period))
    }
}

impl rustls::server::ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        // A failing system RNG means no ticket (rustls then sends none).
        self.rng.fill(&mut nonce).ok()?;
        self.with_window(|keys, epoch| {
            let sealer = keys
                .iter()
                .find(|s| s.master == Master::Current && s.epoch == epoch)?;
            let mut out = Vec::with_capacity(ID_LEN + NONCE_LEN + plain.len() + TAG_LEN);
            out.extend_from_slice(&sealer.id);
            out.extend_from_slice(&nonce);
            let mut body = plain.to_vec();
            sealer
                .key
                .seal_in_place_append_tag(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(sealer.id),
                    &mut body,
                )
                .ok()?;
            out.extend_from_slice(&body);
            Some(out)
        })
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < ID_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (id, rest) = cipher.split_at(ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        self.with_window(|keys, _| {
            // Two keys of the window may share a 4-byte id (18 keys: about
            // one window in 2^25): each is tried, the AEAD tells.
            keys.iter().filter(|s| s.id == id).find_map(|s| {
                let mut body = sealed.to_vec();
                let n = s
                    .key
                    .open_in_place(
                        aead::Nonce::try_assume_unique_for_key(nonce).ok()?,
                        aead::Aad::from(s.id),
                        &mut body,
                    )
                    .ok()?
                    .len();
                body.truncate(n);
                Some(body)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use rustls::server::ProducesTickets;

    use super::*;

    const HOUR: u64 = 3600;
    /// An epoch boundary far from zero: epoch 500,000 of an hour.
    const T0: u64 = 500_000 * HOUR;

    fn key(b: u8) -> TicketKey {
        TicketKey::new(&[b; 32]).unwrap()
    }

    /// A clock a test sets.
    fn clock(at: u64) -> (Arc<AtomicU64>, Clock) {
        let t = Arc::new(AtomicU64::new(at));
        let c = t.clone();
        (t, Arc::new(move || c.load(Ordering::SeqCst)))
    }

    /// A ticketer with an hour's rotation at a clock the test sets.
    fn node(current: u8, previous: Option<u8>, at: u64) -> (Arc<AtomicU64>, SharedTicketer) {
        let (t, c) = clock(at);
        let prev = previous.map(key);
        let s = SharedTicketer::with_rotation(&key(current), prev.as_ref(), HOUR, c).unwrap();
        (t, s)
    }

    #[test]
    fn another_node_with_the_key_opens_and_others_do_not() {
        let (_, a) = node(1, None, T0 + 10);
        let (_, b) = node(1, None, T0 + 10);
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"session state");
        let (_, other) = node(2, None, T0 + 10);
        assert_eq!(other.decrypt(&t), None);
        // The master rotated: 2 current, 1 previous still opens.
        let (_, rotated) = node(2, Some(1), T0 + 10);
        assert_eq!(rotated.decrypt(&t).unwrap(), b"session state");
        // Every single-bit change is refused.
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 0x40;
            assert_eq!(b.decrypt(&bad), None, "byte {i}");
        }
        for cut in 0..t.len() {
            assert_eq!(b.decrypt(&t[..cut]), None);
        }
    }

    #[test]
    fn the_sealing_key_rotates_each_epoch_and_old_tickets_open_for_their_lifetime() {
        let (now, n) = node(1, None, T0 + 100);
        let t = n.encrypt(b"epoch n").unwrap();
        // The same epoch seals under the same key id; the next under another.
        assert_eq!(n.encrypt(b"x").unwrap()[..ID_LEN], t[..ID_LEN]);
        now.store(T0 + HOUR, Ordering::SeqCst);
        let next = n.encrypt(b"epoch n+1").unwrap();
        assert_ne!(next[..ID_LEN], t[..ID_LEN], "the key did not rotate");
        // The epoch-n ticket opens in every later epoch up to its lifetime.
        let life = u64::from(TICKET_LIFETIME_SECS);
        let mut at = T0 + HOUR;
        while at <= T0 + 100 + life {
            now.store(at, Ordering::SeqCst);
            assert_eq!(
                n.decrypt(&t).as_deref(),
                Some(&b"epoch n"[..]),
                "{} s after sealing",
                at - T0 - 100
            );
            at += 600;
        }
        // And not after: the window has left epoch n behind.
        now.store(T0 + HOUR + life + HOUR, Ordering::SeqCst);
        assert_eq!(n.decrypt(&t), None, "an epoch key outlived the window");
        assert!(n.decrypt(&next).is_some(), "epoch n+1 is still in it");
        now.store(T0 + 2 * HOUR + life + HOUR, Ordering::SeqCst);
        assert_eq!(n.decrypt(&next), None);
    }

    #[test]
    fn two_nodes_a_few_seconds_apart_across_an_epoch_boundary_open_each_others_tickets() {
        // a's clock is 3 s behind b's; the boundary T0 + HOUR falls between.
        for (a_at, b_at) in [
            (T0 + HOUR - 2, T0 + HOUR + 1),
            (T0 + HOUR - 1, T0 + HOUR + 2),
        ] {
            let (_, a) = node(1, None, a_at);
            let (_, b) = node(1, None, b_at);
            let from_a = a.encrypt(b"sealed by a, epoch n").unwrap();
            let from_b = b.encrypt(b"sealed by b, epoch n+1").unwrap();
            assert_ne!(from_a[..ID_LEN], from_b[..ID_LEN], "two epochs, two keys");
            assert_eq!(b.decrypt(&from_a).unwrap(), b"sealed by a, epoch n");
            // a is still in epoch n: b's ticket is from its next epoch.
            assert_eq!(a.decrypt(&from_b).unwrap(), b"sealed by b, epoch n+1");
        }
        // Further ahead than one epoch is not skew any more: refused.
        let (_, a) = node(1, None, T0);
        let (_, far) = node(1, None, T0 + 2 * HOUR);
        assert_eq!(a.decrypt(&far.encrypt(b"x").unwrap()), None);
    }

    #[test]
    fn a_ticket_from_another_master_or_period_does_not_open() {
        let (_, a) = node(1, None, T0 + 5);
        let t = a.encrypt(b"state").unwrap();
        for (cur, prev) in [(2, None), (2, Some(3)), (3, Some(2))] {
            let (_, other) = node(cur, prev, T0 + 5);
            assert_eq!(other.decrypt(&t), None, "master {cur}, previous {prev:?}");
        }
        // The same master with another period derives other keys.
        let (_, c) = clock(T0 + 5);
        let two_hours = SharedTicketer::with_rotation(&key(1), None, 2 * HOUR, c).unwrap();
        assert_eq!(two_hours.decrypt(&t), None);
    }

    #[test]
    fn the_window_of_epoch_keys_is_bounded_and_moves() {
        let (now, n) = node(1, Some(2), T0);
        // lifetime / period + 3 epochs (lo..=hi) for each of two masters.
        let per_master = u64::from(TICKET_LIFETIME_SECS) / HOUR + 3;
        assert_eq!(n.window_len() as u64, 2 * per_master);
        for day in 1..=30 {
            now.store(T0 + day * 24 * HOUR, Ordering::SeqCst);
            assert_eq!(n.window_len() as u64, 2 * per_master, "day {day}");
        }
        let (_, alone) = node(1, None, T0);
        assert_eq!(alone.window_len() as u64, per_master);
    }

    #[test]
    fn keys_and_periods_are_checked() {
        assert!(matches!(
            TicketKey::new(&[0; 31]),
            Err(ConfigError::TicketKeyLength(31))
        ));
        assert!(matches!(
            SharedTicketer::new(&key(1), Some(&key(1))),
            Err(ConfigError::TicketKeyReused)
        ));
        for bad in [
            0,
            1,
            MIN_TICKET_ROTATION_SECS - 1,
            MAX_TICKET_ROTATION_SECS + 1,
        ] {
            assert!(matches!(
                SharedTicketer::with_rotation(&key(1), None, bad, system_clock()),
                Err(ConfigError::TicketRotation(p)) if p == bad
            ));
        }
        for good in [MIN_TICKET_ROTATION_SECS, MAX_TICKET_ROTATION_SECS] {
            assert!(SharedTicketer::with_rotation(&key(1), None, good, system_clock()).is_ok());
        }
        assert_eq!(format!("{:?}", key(7)), "TicketKey(<32 bytes>)");
        let d = format!("{:?}", SharedTicketer::new(&key(7), None).unwrap());
        assert!(!d.contains("07"), "{d}");
    }
}
