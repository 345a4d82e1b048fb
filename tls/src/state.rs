//! `TlsState`: everything a node needs to carry on a TLS 1.3 connection's
//! record layer, as it crosses the replication link. After the handshake
//! TLS 1.3 is a function of the traffic secrets and sequence numbers, so
//! this is small: a suite, two secrets, two counters — and, while the
//! client's Finished has not arrived, what is needed to verify it.
//!
//! The encoding is versioned and checked field by field: it comes from the
//! peer, over the link, which is a trust boundary. A garbled encoding is a
//! `TlsError::BadState`, never a panic.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::TlsError;
use crate::suite::Suite;

/// A secret (a traffic secret): zeroized when dropped, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub(crate) fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    pub(crate) fn from_slice(bytes: &[u8]) -> Self {
        Self(Zeroizing::new(bytes.to_vec()))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// What verifying the client's Finished needs, for a connection handed
/// over between the server flight and the client's Finished.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PendingFinished {
    /// CLIENT_HANDSHAKE_TRAFFIC_SECRET: keys the client's Finished record
    /// and its MAC.
    pub(crate) client_hs_secret: Secret,
    /// Transcript hash from the ClientHello up to the server's Finished.
    pub(crate) transcript_hash: Vec<u8>,
    /// Records read so far under the client handshake key.
    pub(crate) hs_rx_seq: u64,
    /// Bytes of rejected 0-RTT data the client may still send before its
    /// Finished, to skip (RFC 8446 §4.2.10); 0 unless it offered early data.
    pub(crate) early_data_skip: u32,
}

/// A connection's replicable TLS 1.3 state. `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TlsState {
    pub(crate) suite: Suite,
    /// Current client application traffic secret (what we open with).
    pub(crate) client_secret: Secret,
    /// Current server application traffic secret (what we seal with).
    pub(crate) server_secret: Secret,
    pub(crate) rx_seq: u64,
    pub(crate) tx_seq: u64,
    /// `Some` until the client's Finished has been verified.
    pub(crate) pending: Option<PendingFinished>,
}

const MAGIC: &[u8; 4] = b"HPTS";
/// Rejected 0-RTT data a client may send before its Finished that we skip:
/// one maximal record, as rustls does when early data is off.
pub(crate) const MAX_EARLY_DATA_SKIP: u32 = 16384;
const VERSION: u8 = 1;
const FLAG_PENDING: u8 = 1;

impl TlsState {
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Records sealed so far under the current server secret.
    pub fn tx_seq(&self) -> u64 {
        self.tx_seq
    }

    /// Records opened so far under the current client secret.
    pub fn rx_seq(&self) -> u64 {
        self.rx_seq
    }

    /// Whether the client's Finished is still to be verified.
    pub fn awaiting_client_finished(&self) -> bool {
        self.pending.is_some()
    }

    /// This state with the sending half of `tx`, moved on by `records`
    /// sealed since `tx` was taken: what a survivor continues from when it
    /// followed the client's records itself (its own receiving half) but
    /// learnt the sending half from the peer's log (the last logged state,
    /// and the records counted in the units logged after it).
    pub fn with_tx(mut self, tx: &TlsState, records: u64) -> Result<Self, TlsError> {
        if tx.suite != self.suite {
            return Err(TlsError::BadState("another suite"));
        }
        self.server_secret = tx.server_secret.clone();
        self.tx_seq = tx
            .tx_seq
            .checked_add(records)
            .ok_or(TlsError::SequenceExhausted)?;
        Ok(self)
    }

    /// Whether `other` seals under the same server traffic secret (a
    /// KeyUpdate of ours lies between them when not).
    pub fn same_sending_key(&self, other: &TlsState) -> bool {
        self.suite == other.suite && self.server_secret == other.server_secret
    }

    /// The state as bytes for the replication link (secured link only:
    /// these bytes are the connection's keys, zeroized when dropped).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(160));
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.suite.iana().to_be_bytes());
        out.push(if self.pending.is_some() {
            FLAG_PENDING
        } else {
            0
        });
        put_bytes(&mut out, self.client_secret.bytes());
        put_bytes(&mut out, self.server_secret.bytes());
        out.extend_from_slice(&self.rx_seq.to_be_bytes());
        out.extend_from_slice(&self.tx_seq.to_be_bytes());
        if let Some(p) = &self.pending {
            put_bytes(&mut out, p.client_hs_secret.bytes());
            put_bytes(&mut out, &p.transcript_hash);
            out.extend_from_slice(&p.hs_rx_seq.to_be_bytes());
            out.extend_from_slice(&p.early_data_skip.to_be_bytes());
        }
        out
    }

    /// Decode what `encode` wrote. Every length is checked against the
    /// suite; trailing bytes are refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, TlsError> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err(TlsError::BadState("not a TLS state"));
        }
        if r.u8()? != VERSION {
            return Err(TlsError::BadState("unknown version"));
        }
        let suite = Suite::from_iana(r.u16()?).ok_or(TlsError::BadState("unknown suite"))?;
        let flags = r.u8()?;
        if flags & !FLAG_PENDING != 0 {
            return Err(TlsError::BadState("unknown flags"));
        }
        let hl = suite.hash_len();
        let client_secret = Secret::from_slice(r.secret(hl)?);
        let server_secret = Secret::from_slice(r.secret(hl)?);
        let rx_seq = r.u64()?;
        let tx_seq = r.u64()?;
        let pending = if flags & FLAG_PENDING != 0 {
            let client_hs_secret = Secret::from_slice(r.secret(hl)?);
            let transcript_hash = r.secret(hl)?.to_vec();
            let hs_rx_seq = r.u64()?;
            let early_data_skip = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes"));
            if rx_seq != 0 {
                return Err(TlsError::BadState("application records before Finished"));
            }
            if early_data_skip > MAX_EARLY_DATA_SKIP {
                return Err(TlsError::BadState("early data to skip beyond one record"));
            }
            Some(PendingFinished {
                client_hs_secret,
                transcript_hash,
                hs_rx_seq,
                early_data_skip,
            })
        } else {
            None
        };
        if !r.0.is_empty() {
            return Err(TlsError::BadState("trailing bytes"));
        }
        Ok(Self {
            suite,
            client_secret,
            server_secret,
            rx_seq,
            tx_seq,
            pending,
        })
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Secrets and hashes are at most 48 bytes.
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TlsError> {
        if self.0.len() < n {
            return Err(TlsError::BadState("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, TlsError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, TlsError> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, TlsError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// A length-prefixed field that must be exactly `len` bytes.
    fn secret(&mut self, len: usize) -> Result<&'a [u8], TlsError> {
        let n = self.u8()? as usize;
        if n != len {
            return Err(TlsError::BadState("secret length does not fit the suite"));
        }
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pending: bool) -> TlsState {
        TlsState {
            suite: Suite::Aes256GcmSha384,
            client_secret: Secret::from_slice(&[1; 48]),
            server_secret: Secret::from_slice(&[2; 48]),
            rx_seq: 0,
            tx_seq: 7,
            pending: pending.then(|| PendingFinished {
                client_hs_secret: Secret::from_slice(&[3; 48]),
                transcript_hash: vec![4; 48],
                hs_rx_seq: 0,
                early_data_skip: 16384,
            }),
        }
    }

    #[test]
    fn round_trips_and_refuses_every_truncation_and_extension() {
        for pending in [false, true] {
            let s = sample(pending);
            let enc = s.encode();
            // The sizes docs/tls.md gives (SHA-384).
            assert_eq!(enc.len(), if pending { 232 } else { 122 });
            assert_eq!(TlsState::decode(&enc).unwrap(), s);
            for cut in 0..enc.len() {
                assert!(TlsState::decode(&enc[..cut]).is_err(), "cut at {cut}");
            }
            if pending {
                let mut big = enc.clone();
                let n = big.len();
                big[n - 4..].copy_from_slice(&16385u32.to_be_bytes());
                assert!(TlsState::decode(&big).is_err());
            }
            let mut longer = enc.clone();
            longer.push(0);
            assert_eq!(
                TlsState::decode(&longer),
                Err(TlsError::BadState("trailing bytes"))
            );
        }
    }

    #[test]
    fn with_tx_takes_the_sending_half_and_counts_records() {
        let rx = sample(true);
        let mut tx = sample(false);
        tx.server_secret = Secret::from_slice(&[9; 48]);
        let s = rx.clone().with_tx(&tx, 3).unwrap();
        assert_eq!(s.tx_seq, 10);
        assert_eq!(s.server_secret, tx.server_secret);
        assert_eq!(s.client_secret, rx.client_secret);
        assert_eq!(s.pending, rx.pending);
        tx.suite = Suite::Aes128GcmSha256;
        assert!(rx.clone().with_tx(&tx, 0).is_err());
        tx.suite = Suite::Aes256GcmSha384;
        tx.tx_seq = u64::MAX;
        assert_eq!(rx.with_tx(&tx, 1), Err(TlsError::SequenceExhausted));
    }

    #[test]
    fn debug_prints_no_secret() {
        let s = format!("{:?}", sample(true));
        assert!(s.contains("48 bytes"), "{s}");
        assert!(!s.contains("[1, 1") && !s.contains("1, 1, 1"), "{s}");
        assert!(!s.contains("3, 3, 3"), "{s}");
    }
}
