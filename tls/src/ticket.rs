//! Session tickets sealed with a key both nodes share, so a ticket issued
//! by one node resumes on the other.
//!
//! A ticket is `key id (4) || nonce (12) || ChaCha20-Poly1305(state)`, the
//! key id as additional data. The AEAD key and the id are derived from the
//! operator's 32-byte key with HKDF (so the raw key is used for nothing
//! else, and the id says nothing about it). Rotation: a node seals with the
//! current key and opens with the current or the previous one, so a ticket
//! survives one rotation; the operator rotates both nodes' keys within a
//! ticket lifetime of each other.

use std::fmt;

use ring::{aead, hkdf, rand::SecureRandom};
use zeroize::Zeroizing;

use crate::error::ConfigError;

/// How long a client may keep a ticket (seconds), rustls's default.
pub const TICKET_LIFETIME_SECS: u32 = 6 * 60 * 60;

const ID_LEN: usize = 4;
const NONCE_LEN: usize = aead::NONCE_LEN;
const TAG_LEN: usize = 16;

/// A 32-byte ticket key as the operator gives it. Zeroized on drop.
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

struct Sealer {
    id: [u8; ID_LEN],
    key: aead::LessSafeKey,
}

impl Sealer {
    fn new(k: &TicketKey) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"hotpair ticket key v1").extract(&k.0[..]);
        let mut id = [0u8; ID_LEN];
        let mut raw = Zeroizing::new([0u8; 32]);
        prk.expand(&[b"id"], Len(ID_LEN))
            .and_then(|o| o.fill(&mut id))
            .expect("4 bytes of HKDF output");
        prk.expand(&[b"aead"], Len(32))
            .and_then(|o| o.fill(&mut raw[..]))
            .expect("32 bytes of HKDF output");
        let unbound = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &raw[..])
            .expect("a 32-byte ChaCha20-Poly1305 key");
        Self {
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

/// rustls' `ProducesTickets` over the shared key (current + previous).
pub struct SharedTicketer {
    current: Sealer,
    previous: Option<Sealer>,
    lifetime: u32,
    rng: ring::rand::SystemRandom,
}

impl fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedTicketer")
            .field("current_id", &self.current.id)
            .field("previous_id", &self.previous.as_ref().map(|p| p.id))
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl SharedTicketer {
    pub fn new(current: &TicketKey, previous: Option<&TicketKey>) -> Result<Self, ConfigError> {
        let current = Sealer::new(current);
        let previous = previous.map(Sealer::new);
        if previous.as_ref().is_some_and(|p| p.id == current.id) {
            return Err(ConfigError::TicketKeyReused);
        }
        Ok(Self {
            current,
            previous,
            lifetime: TICKET_LIFETIME_SECS,
            rng: ring::rand::SystemRandom::new(),
        })
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
        let mut out = Vec::with_capacity(ID_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(self.current.id),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < ID_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (id, rest) = cipher.split_at(ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let sealer = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|s| s.id == id)?;
        let mut body = sealed.to_vec();
        let n = sealer
            .key
            .open_in_place(
                aead::Nonce::try_assume_unique_for_key(nonce).ok()?,
                aead::Aad::from(sealer.id),
                &mut body,
            )
            .ok()?
            .len();
        body.truncate(n);
        Some(body)
    }
}

#[cfg(test)]
mod tests {
    use rustls::server::ProducesTickets;

    use super::*;

    fn key(b: u8) -> TicketKey {
        TicketKey::new(&[b; 32]).unwrap()
    }

    #[test]
    fn another_node_with_the_key_opens_and_others_do_not() {
        let a = SharedTicketer::new(&key(1), None).unwrap();
        let b = SharedTicketer::new(&key(1), None).unwrap();
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"session state");
        let other = SharedTicketer::new(&key(2), None).unwrap();
        assert_eq!(other.decrypt(&t), None);
        // Rotated: key 2 current, key 1 previous still opens.
        let rotated = SharedTicketer::new(&key(2), Some(&key(1))).unwrap();
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
    fn keys_are_checked() {
        assert!(matches!(
            TicketKey::new(&[0; 31]),
            Err(ConfigError::TicketKeyLength(31))
        ));
        assert!(matches!(
            SharedTicketer::new(&key(1), Some(&key(1))),
            Err(ConfigError::TicketKeyReused)
        ));
        assert_eq!(format!("{:?}", key(7)), "TicketKey(<32 bytes>)");
    }
}
