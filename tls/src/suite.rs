//! The TLS 1.3 key schedule pieces our record layer needs (RFC 8446 §7):
//! HKDF-Expand-Label, traffic keys and IVs, the next generation of a
//! traffic secret, and the Finished MAC. All of it over `ring`, the same
//! crypto provider rustls runs the handshake with.

use ring::{aead, digest, hkdf, hmac};
use zeroize::Zeroizing;

use crate::error::TlsError;

/// The TLS 1.3 cipher suites rustls offers with the ring provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// TLS_AES_128_GCM_SHA256 (0x1301)
    Aes128GcmSha256,
    /// TLS_AES_256_GCM_SHA384 (0x1302)
    Aes256GcmSha384,
    /// TLS_CHACHA20_POLY1305_SHA256 (0x1303)
    Chacha20Poly1305Sha256,
}

impl Suite {
    /// The suite of an IANA code point; `None` for anything else.
    pub fn from_iana(code: u16) -> Option<Self> {
        match code {
            0x1301 => Some(Self::Aes128GcmSha256),
            0x1302 => Some(Self::Aes256GcmSha384),
            0x1303 => Some(Self::Chacha20Poly1305Sha256),
            _ => None,
        }
    }

    /// Every suite, in rustls' default order of preference (ring's).
    pub const ALL: [Suite; 3] = [
        Suite::Aes256GcmSha384,
        Suite::Aes128GcmSha256,
        Suite::Chacha20Poly1305Sha256,
    ];

    /// The suite of an IANA name (`TLS_AES_128_GCM_SHA256`, as OpenSSL
    /// and nginx spell them; any case); `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The IANA name, e.g. `TLS_AES_128_GCM_SHA256` (status, metrics).
    pub fn name(self) -> &'static str {
        match self {
            Suite::Aes128GcmSha256 => "TLS_AES_128_GCM_SHA256",
            Suite::Aes256GcmSha384 => "TLS_AES_256_GCM_SHA384",
            Suite::Chacha20Poly1305Sha256 => "TLS_CHACHA20_POLY1305_SHA256",
        }
    }

    /// The IANA code point.
    pub fn iana(self) -> u16 {
        match self {
            Self::Aes128GcmSha256 => 0x1301,
            Self::Aes256GcmSha384 => 0x1302,
            Self::Chacha20Poly1305Sha256 => 0x1303,
        }
    }

    pub(crate) fn from_rustls(suite: rustls::CipherSuite) -> Option<Self> {
        Self::from_iana(u16::from(suite))
    }

    /// Length of the suite's hash, so of every secret and of a Finished.
    pub fn hash_len(self) -> usize {
        self.digest().output_len()
    }

    pub(crate) fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::Aes256GcmSha384 => &digest::SHA384,
            _ => &digest::SHA256,
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Self::Aes256GcmSha384 => hkdf::HKDF_SHA384,
            _ => hkdf::HKDF_SHA256,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Aes256GcmSha384 => hmac::HMAC_SHA384,
            _ => hmac::HMAC_SHA256,
        }
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes128GcmSha256 => &aead::AES_128_GCM,
            Self::Aes256GcmSha384 => &aead::AES_256_GCM,
            Self::Chacha20Poly1305Sha256 => &aead::CHACHA20_POLY1305,
        }
    }

    /// HKDF-Expand-Label(secret, label, context, len) (RFC 8446 §7.1).
    pub(crate) fn expand_label(
        self,
        secret: &[u8],
        label: &[u8],
        context: &[u8],
        len: usize,
    ) -> Zeroizing<Vec<u8>> {
        // Our labels and contexts are constants or hashes: always short.
        debug_assert!(label.len() + 6 <= 255 && context.len() <= 255 && len <= 255);
        let out_len = (len as u16).to_be_bytes();
        let label_len = [(6 + label.len()) as u8];
        let ctx_len = [context.len() as u8];
        let info: [&[u8]; 6] = [&out_len, &label_len, b"tls13 ", label, &ctx_len, context];
        let prk = hkdf::Prk::new_less_safe(self.hkdf(), secret);
        let mut out = Zeroizing::new(vec![0u8; len]);
        // Fails only for an output longer than 255 hash blocks: never here.
        prk.expand(&info, Len(len))
            .and_then(|okm| okm.fill(&mut out))
            .expect("HKDF-Expand-Label output within bounds");
        out
    }

    /// The next generation of an application traffic secret (§7.2).
    pub(crate) fn next_secret(self, secret: &[u8]) -> Zeroizing<Vec<u8>> {
        self.expand_label(secret, b"traffic upd", b"", self.hash_len())
    }

    /// The AEAD key and IV of a traffic secret (§7.3).
    pub(crate) fn traffic_keys(self, secret: &[u8]) -> Result<TrafficKeys, TlsError> {
        let alg = self.aead();
        let key = self.expand_label(secret, b"key", b"", alg.key_len());
        let iv_bytes = self.expand_label(secret, b"iv", b"", aead::NONCE_LEN);
        let unbound = aead::UnboundKey::new(alg, &key).map_err(|_| TlsError::Crypto)?;
        let mut iv = [0u8; aead::NONCE_LEN];
        iv.copy_from_slice(&iv_bytes);
        Ok(TrafficKeys {
            key: aead::LessSafeKey::new(unbound),
            iv,
        })
    }

    /// The raw key and IV bytes, for cross-checking against rustls.
    pub(crate) fn raw_traffic_keys(
        self,
        secret: &[u8],
    ) -> (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>) {
        (
            self.expand_label(secret, b"key", b"", self.aead().key_len()),
            self.expand_label(secret, b"iv", b"", aead::NONCE_LEN),
        )
    }

    /// The Finished MAC key of a handshake traffic secret (§4.4.4).
    pub(crate) fn finished_key(self, hs_secret: &[u8]) -> hmac::Key {
        let raw = self.expand_label(hs_secret, b"finished", b"", self.hash_len());
        hmac::Key::new(self.hmac(), &raw)
    }

    /// Hash of `data` with the suite's hash.
    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// One direction's AEAD key and static IV. The key lives inside ring's
/// key object, which does not promise to zeroize itself on drop; the
/// secret it came from (which can derive every later key) is ours and is
/// zeroized. Cloned for a [`crate::Deferred`] reply's records (the
/// clone zeroizes its IV too).
#[derive(Clone)]
pub(crate) struct TrafficKeys {
    key: aead::LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
}

impl Drop for TrafficKeys {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.iv);
    }
}

impl TrafficKeys {
    /// The per-record nonce: the IV XOR the 64-bit sequence number,
    /// left-padded (RFC 8446 §5.3).
    fn nonce(&self, seq: u64) -> aead::Nonce {
        let mut n = self.iv;
        for (b, s) in n[aead::NONCE_LEN - 8..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        aead::Nonce::assume_unique_for_key(n)
    }

    /// Seal `buf[from..]` in place and append the tag, with the record
    /// header as additional data: a record sealed where it is written,
    /// behind its header in the output, with no buffer of its own to
    /// allocate and copy.
    pub(crate) fn seal_tail(&self, seq: u64, header: &[u8; 5], buf: &mut Vec<u8>, from: usize) {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(seq), aead::Aad::from(*header), &mut buf[from..])
            // ring refuses only inputs beyond the AEAD's limit (GiBs).
            .expect("a TLS record is far below the AEAD input limit");
        buf.extend_from_slice(tag.as_ref());
    }

    /// Open `in_out` in place; the plaintext's length on success.
    pub(crate) fn open(&self, seq: u64, header: &[u8; 5], in_out: &mut [u8]) -> Option<usize> {
        self.key
            .open_in_place(self.nonce(seq), aead::Aad::from(*header), in_out)
            .ok()
            .map(|p| p.len())
    }
}

/// AEAD tag length of every TLS 1.3 suite.
pub(crate) const TAG_LEN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 8448 §3 (simple 1-RTT handshake): the server's handshake
    /// traffic secret gives the key and IV printed there.
    #[test]
    fn expand_label_matches_rfc8448() {
        let secret = unhex(
            "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc ded9 10 5d 42 be fd 59 d3 91 ad 38",
        );
        let s = Suite::Aes128GcmSha256;
        let (key, iv) = s.raw_traffic_keys(&secret);
        assert_eq!(
            &key[..],
            &unhex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")[..]
        );
        assert_eq!(&iv[..], &unhex("5d 31 3e b2 67 12 76 ee 13 00 0b 30")[..]);
    }
}
