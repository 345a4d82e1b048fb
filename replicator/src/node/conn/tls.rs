//! HTTPS on a connection (docs/tls.md): TLS 1.3 between the socket and the
//! HTTP layer, replicated at the record level.
//!
//! **Live side** ([`LiveTls`], `tls/live.rs`): the client's bytes go
//! through the handshake driver (rustls; each step handed to the shell as
//! a [`HandshakeWork`] job, so its signature and key exchange run off the
//! round that carries heartbeats) until it completes, then through our
//! record layer; the
//! plaintext goes to the HTTP layer as on a plain connection. HTTP output
//! units are sealed when taken from the HTTP layer, so a unit holds exactly
//! the bytes the socket gets, and the log carries ciphertext: the owner
//! writes logged units unchanged. What the TLS layer itself writes (the
//! server flight, a HelloRetryRequest, the session tickets, our answer to a
//! client's KeyUpdate) is a unit too, a *TLS unit* ([`TLS_INDEX`]), whose
//! logged payload carries the connection's encoded `TlsState` after those
//! bytes — before the client sees any of them.
//!
//! **Mirror** ([`MirrorTls`]): keeps the client's bytes; once the flight's
//! state is logged it opens the client's records itself (verifying its
//! Finished), so its input log is plaintext HTTP as on a plain connection.
//! The sending half it learns from the log: the last logged state, plus
//! the records counted in the units logged after it. At promotion: no
//! flight logged — a fresh handshake from the client's bytes (the client
//! saw nothing but a HelloRetryRequest, which the new handshake repeats
//! byte for byte and which is not sent twice); flight logged — a record
//! layer from its own receiving half and the logged sending half.

mod live;

pub use live::{HandshakeDone, HandshakeWork};
pub(crate) use live::{LiveTls, Read};

use bytes::Bytes;
use hotpair_tls::{RecordLayer, TlsError, TlsEvent, TlsServerConfig, TlsState};

use super::out::Sealing;

/// The index a TLS unit carries: it answers no request (as `CLOSE_INDEX`).
/// Public for observers of the link (the simulation tells a handshake's
/// phases by the TLS units it sees logged).
pub const TLS_INDEX: u64 = u64::MAX - 1;

const HEADER_LEN: usize = 5;
/// Largest record a client may send (2^14 + 256 bytes of ciphertext).
const MAX_RECORD: usize = HEADER_LEN + 16384 + 256;

/// The length of the whole record at the front of `buf`, if it is all
/// there; `Err` for a length no TLS 1.3 record has.
fn whole_record(buf: &[u8]) -> Result<Option<usize>, TlsError> {
    // Judged as soon as its bytes are here, so that what is not TLS (plain
    // HTTP on the HTTPS port) is refused at once, not waited on.
    if buf.first().is_some_and(|t| !(20..=23).contains(t)) {
        return Err(TlsError::Decode("not a TLS record (content type)"));
    }
    if buf.get(1).is_some_and(|&v| v != 3) {
        return Err(TlsError::Decode("not a TLS record (version)"));
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = HEADER_LEN + usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if len > MAX_RECORD {
        return Err(TlsError::RecordOverflow(len));
    }
    Ok((buf.len() >= len).then_some(len))
}

/// Records in `bytes`, which must be whole records (a logged unit).
pub(super) fn count_records(mut bytes: &[u8]) -> Option<u64> {
    let mut n = 0;
    while !bytes.is_empty() {
        let len = whole_record(bytes).ok()??;
        bytes = &bytes[len..];
        n += 1;
    }
    Some(n)
}

/// A TLS unit's logged payload: `u16` length of the encoded state (0:
/// none, a HelloRetryRequest), the state, then the bytes for the client
/// (appended by the caller: this is the head). Public, with
/// [`decode_tls_unit`], for the fuzz target (`fuzz/src/tls_unit.rs`).
pub fn encode_tls_unit(state: Option<&TlsState>) -> Bytes {
    let mut out = Vec::with_capacity(192);
    match state {
        Some(s) => {
            let enc = s.encode();
            out.extend_from_slice(&(enc.len() as u16).to_be_bytes());
            out.extend_from_slice(&enc);
        }
        None => out.extend_from_slice(&0u16.to_be_bytes()),
    }
    Bytes::from(out)
}

/// Split a logged TLS unit's payload into its state and its bytes. The
/// payload comes from the peer over the link (a trust boundary): any bytes
/// give a state and bytes or an error, never a panic.
pub fn decode_tls_unit(payload: &Bytes) -> Result<(Option<TlsState>, Bytes), TlsError> {
    if payload.len() < 2 {
        return Err(TlsError::BadState("TLS unit without a state length"));
    }
    let n = usize::from(u16::from_be_bytes([payload[0], payload[1]]));
    let rest = payload
        .get(2..2 + n)
        .ok_or(TlsError::BadState("TLS unit shorter than its state"))?;
    let state = (n > 0).then(|| TlsState::decode(rest)).transpose()?;
    Ok((state, payload.slice(2 + n..)))
}

/// Output of the TLS layer itself, to log (with its state) and send.
pub(super) struct TlsOut {
    /// Logged before `bytes`: `encode_tls_unit`.
    pub head: Bytes,
    pub bytes: Bytes,
    /// The client's input (ciphertext) offset up to which the handshake
    /// had read (the flight: where the owner's record layer starts).
    pub input_end: u64,
}

/// A mirror's TLS state (the owner node, the primary alive).
#[derive(Default)]
pub(crate) struct MirrorTls {
    /// Client bytes not yet opened: before the flight is logged, every
    /// byte from the first (a fresh handshake needs them all); then the
    /// part of a record not yet whole.
    raw: Vec<u8>,
    /// The receiving half, from the flight's state on.
    rl: Option<Box<RecordLayer>>,
    /// The last logged state (its sending half).
    tx: Option<TlsState>,
    /// Records in the units logged after `tx`.
    tx_records: u64,
    /// The handshake's last TLS unit is logged (the state after the
    /// session tickets): from here the sending half changes only with
    /// our answer to a client's KeyUpdate.
    established: bool,
    /// Records of the replies made ahead (`seal_ahead`) whose units have
    /// not come yet: they follow the `tx_records` in the client's stream.
    ahead_records: u64,
    /// The sequence number each of those replies starts at, oldest first
    /// (checked when its unit comes).
    ahead_from: std::collections::VecDeque<u64>,
    /// The record layer `seal_local` sealed with last, kept while it is
    /// still at the sequence number the next local reply starts at (no
    /// logged unit or new state since): building one derives the record
    /// keys (HKDF), which was a quarter of an owner's CPU serving `static`
    /// replies over TLS.
    sealer: Option<Box<RecordLayer>>,
    /// Bytes of TLS units without a state written before the flight (a
    /// HelloRetryRequest): a fresh handshake does not send them again.
    hrr_sent: usize,
    /// The client's records could not be opened here: no takeover.
    failed: bool,
    /// Plaintext opened so far (the input log's offsets), and the client's
    /// ciphertext offset opened to (the primary's `input_end` of TLS
    /// units counts the same bytes).
    plain_at: u64,
    fed: u64,
    /// The client's KeyUpdates asking for ours that no logged answer
    /// covers yet, oldest first: where each was in the plaintext (the
    /// primary answers once the replies to every request that ended by
    /// there are sealed, before any later reply) and the ciphertext offset
    /// its record ended at.
    unanswered: std::collections::VecDeque<(u64, u64)>,
    /// The client's ciphertext offset the last logged answer covers: it
    /// answers every KeyUpdate the primary had read (one answer for
    /// several), including those not read here yet.
    answered_to: u64,
}

impl std::fmt::Debug for MirrorTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorTls")
            .field("flight_logged", &self.rl.is_some())
            .field("tx_records", &self.tx_records)
            .field("failed", &self.failed)
            .finish()
    }
}

/// Bytes of client ciphertext a mirror keeps before the flight is logged:
/// a ClientHello is at most a few records.
const MAX_HELLO_BYTES: usize = 4 * MAX_RECORD;

impl MirrorTls {
    /// How many more client bytes may be read into `raw`: before the
    /// flight only a ClientHello's worth (the owner's window closes past
    /// it); after it, records are opened as they come.
    pub fn room(&self) -> usize {
        if self.failed {
            0
        } else if self.rl.is_some() {
            1 << 16
        } else {
            MAX_HELLO_BYTES.saturating_sub(self.raw.len())
        }
    }

    /// The client's bytes: plaintext to `plain` once the flight's state is
    /// known. `Err`: this mirror cannot follow the connection any more.
    pub fn read(&mut self, data: &[u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        if self.failed {
            return Err(TlsError::Failed);
        }
        self.raw.extend_from_slice(data);
        self.pump(plain)
    }

    fn pump(&mut self, plain: &mut Vec<u8>) -> Result<(), TlsError> {
        let Some(rl) = self.rl.as_mut() else {
            if self.raw.len() > MAX_HELLO_BYTES {
                self.failed = true;
                return Err(TlsError::BadState("client bytes before the flight"));
            }
            return Ok(());
        };
        let mut pos = 0;
        let r = loop {
            match whole_record(&self.raw[pos..]) {
                Ok(Some(len)) => {
                    match rl.open(&self.raw[pos..pos + len]) {
                        Ok(o) => {
                            plain.extend_from_slice(&o.plaintext);
                            self.plain_at += o.plaintext.len() as u64;
                            self.fed += len as u64;
                            let asked = o.events.iter().any(|e| {
                                matches!(
                                    e,
                                    TlsEvent::KeyUpdate {
                                        update_requested: true
                                    }
                                )
                            });
                            if asked && self.fed > self.answered_to {
                                self.unanswered.push_back((self.plain_at, self.fed));
                            }
                        }
                        Err(e) => break Err(e),
                    }
                    pos += len;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.raw.drain(..pos);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// A logged TLS unit: its state (if any) and where in the client's
    /// input the handshake had read. Returns the bytes for the client.
    pub fn logged_tls_unit(
        &mut self,
        payload: &Bytes,
        input_end: u64,
        plain: &mut Vec<u8>,
    ) -> Result<Bytes, TlsError> {
        let (state, bytes) = decode_tls_unit(payload)?;
        match state {
            None if self.rl.is_none() => self.hrr_sent += bytes.len(),
            None => {
                return Err(TlsError::BadState(
                    "a TLS unit with no state after the flight",
                ))
            }
            Some(state) => {
                if self.rl.is_none() {
                    // The flight: the client's records from `input_end` on
                    // are ours to open (ClientHello before it).
                    let end = usize::try_from(input_end)
                        .ok()
                        .filter(|&e| e <= self.raw.len())
                        .ok_or(TlsError::BadState("the flight follows bytes not seen here"))?;
                    self.raw.drain(..end);
                    self.fed = input_end;
                    self.rl = Some(Box::new(RecordLayer::new(state.clone())?));
                    self.pump(plain)?;
                }
                if self
                    .tx
                    .as_ref()
                    .is_some_and(|t| !t.same_sending_key(&state))
                {
                    // Our answer: it covers every KeyUpdate the primary had
                    // read by then.
                    self.answered_to = self.answered_to.max(input_end);
                    self.unanswered.retain(|&(_, end)| end > input_end);
                }
                // The flight's state first; the next is the one after the
                // tickets (the handshake's end: `LiveTls::apply`).
                self.established = self.tx.is_some();
                self.tx = Some(state);
                self.tx_records = 0;
                self.sealer = None;
            }
        }
        Ok(bytes)
    }

    /// A logged unit of HTTP output (ciphertext): count its records.
    pub fn logged_records(&mut self, payload: &[u8]) -> Result<(), TlsError> {
        if self.rl.is_none() {
            // Nothing is sealed before the flight: what a unit carries then
            // is the primary's alert closing a failed handshake (plaintext,
            // nothing to count), or nothing (a timeout's close).
            return Ok(());
        }
        let n = count_records(payload).ok_or(TlsError::BadState("a unit of partial records"))?;
        self.tx_records += n;
        Ok(())
    }

    /// A `static` reply this node made itself for a local unit, sealed as
    /// the primary sealed its own copy: under the logged sending half, at
    /// the record sequence number the units logged before it reached (its
    /// records are then counted as a logged unit's), our close_notify after
    /// it when the connection closes there.
    pub fn seal_local(&mut self, chunks: &[Bytes], close_after: bool) -> Result<Sealing, TlsError> {
        let (out, _, n) = self.seal_next(chunks, close_after)?;
        self.tx_records += n;
        Ok(out)
    }

    /// Whether the reply to a request whose input ends at `input_end` (a
    /// plaintext offset), sealed now, is sealed as the primary will seal
    /// it, before its unit comes: the handshake is over and its tickets
    /// logged (the key and the sequence number are the logged state's
    /// plus the records counted since), and the request ended before every
    /// client KeyUpdate not answered in the log (the primary sends its
    /// answer, a new key, only after the replies to the requests before
    /// the KeyUpdate: `LiveConn`'s `answer_key_update`).
    pub fn can_seal_ahead(&self, input_end: u64) -> bool {
        !self.failed
            && self.established
            && self.rl.is_some()
            && self
                .unanswered
                .front()
                .is_none_or(|&(at, _)| input_end <= at)
    }

    /// A `static` reply made ahead of its (local) unit, to the request
    /// ending at `input_end`, sealed after the replies made ahead before
    /// it: the records the primary will send, if the units logged
    /// meanwhile are those replies' (checked as they come: a TLS unit
    /// first is a divergence, by the caller). Returns the records and
    /// their count.
    pub fn seal_ahead(
        &mut self,
        chunks: &[Bytes],
        close_after: bool,
        input_end: u64,
    ) -> Result<(Sealing, u64), TlsError> {
        if !self.can_seal_ahead(input_end) {
            return Err(TlsError::BadState("a reply ahead of an unsettled state"));
        }
        let (out, from, n) = self.seal_next(chunks, close_after)?;
        self.ahead_records += n;
        self.ahead_from.push_back(from);
        Ok((out, n))
    }

    /// The records of the oldest reply made ahead (`chunks`), sealed again
    /// to compare with a logged unit's: the primary logged its bytes
    /// instead of placing a local reply. Rare, so not kept from the first
    /// sealing (which the socket takes a few records at a time).
    pub fn reseal_ahead(&self, chunks: &[Bytes], close_after: bool) -> Result<Bytes, TlsError> {
        let (Some(rl), Some(tx), Some(&from)) =
            (self.rl.as_ref(), self.tx.as_ref(), self.ahead_from.front())
        else {
            return Err(TlsError::BadState("no reply made ahead"));
        };
        let after = from
            .checked_sub(tx.tx_seq())
            .ok_or(TlsError::BadState("a reply ahead before the logged state"))?;
        let mut w = RecordLayer::new(rl.snapshot()?.with_tx(tx, after)?)?;
        let mut out = w.seal_parts(chunks)?;
        if close_after {
            w.close()?;
            out.extend_from_slice(&w.take_output());
        }
        Ok(Bytes::from(out))
    }

    /// The unit of a reply made ahead came, for the same `sealed` bytes:
    /// its records are logged ones now. A local unit (the primary's place
    /// of the same reply, no bytes) must come where the reply was sealed:
    /// every unit before it is logged now, so the sequence number it
    /// starts at is known, not predicted, and is checked. A logged unit's
    /// ciphertext was compared (and its records counted by
    /// `logged_records`).
    pub fn ahead_logged(&mut self, n: u64, local: bool) -> Result<(), TlsError> {
        let from = self
            .ahead_from
            .pop_front()
            .ok_or(TlsError::BadState("a unit for a reply not made ahead"))?;
        self.ahead_records = self
            .ahead_records
            .checked_sub(n)
            .ok_or(TlsError::BadState("more records logged than made ahead"))?;
        if local {
            let at = self.tx.as_ref().map(|t| t.tx_seq() + self.tx_records);
            if at != Some(from) {
                return Err(TlsError::BadState(
                    "a reply made ahead was sealed at another sequence number",
                ));
            }
            self.tx_records += n;
        }
        Ok(())
    }

    /// Seal `chunks` (and our close_notify) at the next sequence number
    /// this node knows of: the logged state's, plus the records logged
    /// and made ahead since. Returns the records (reserved, sealed as the
    /// socket takes them), the sequence number of the first and their
    /// count.
    fn seal_next(
        &mut self,
        chunks: &[Bytes],
        close_after: bool,
    ) -> Result<(Sealing, u64, u64), TlsError> {
        let (Some(rl), Some(tx)) = (self.rl.as_ref(), self.tx.as_ref()) else {
            return Err(TlsError::BadState("a local unit before the handshake"));
        };
        let after = self
            .tx_records
            .checked_add(self.ahead_records)
            .ok_or(TlsError::SequenceExhausted)?;
        let from = tx
            .tx_seq()
            .checked_add(after)
            .ok_or(TlsError::SequenceExhausted)?;
        let w = match self.sealer.take() {
            Some(w) if w.tx_seq() == from => w,
            _ => Box::new(RecordLayer::new(rl.snapshot()?.with_tx(tx, after)?)?),
        };
        let w = self.sealer.insert(w);
        let len = chunks.iter().map(Bytes::len).sum();
        let d = w.defer(len, close_after)?;
        let n = w.tx_seq() - from;
        Ok((Sealing::new(d, chunks.iter().cloned()), from, n))
    }

    /// The live TLS layer a promoted mirror continues with, its HTTP layer
    /// fed the plaintext from offset `http_base` on (the first request
    /// without a reply logged or made here).
    pub fn promote(self, config: &TlsServerConfig, http_base: u64) -> Result<LiveTls, TlsError> {
        if self.failed {
            return Err(TlsError::Failed);
        }
        match (self.rl, self.tx) {
            (None, _) => LiveTls::fresh(config, self.raw, self.hrr_sent),
            (Some(rl), Some(tx)) => {
                // Replies made ahead are in the stream already (the
                // promoted connection resumes after them).
                let sent = self
                    .tx_records
                    .checked_add(self.ahead_records)
                    .ok_or(TlsError::SequenceExhausted)?;
                let state = rl.snapshot()?.with_tx(&tx, sent)?;
                let mut rl = RecordLayer::new(state)?;
                // The client asked for a KeyUpdate the old node had not
                // answered in the log: the client has seen no answer, so
                // this node owes it one (one for all of them), placed as
                // the old node would have: after the replies to the
                // requests before the first (those made ahead here are
                // sent already; the rest this node makes again).
                let owed_at = self
                    .unanswered
                    .front()
                    .map(|&(at, _)| at.saturating_sub(http_base));
                if owed_at.is_some() {
                    rl.owe_update();
                }
                let plain_at = self.plain_at.saturating_sub(http_base);
                Ok(LiveTls::records(rl, self.raw, plain_at, owed_at))
            }
            (Some(_), None) => Err(TlsError::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_counted_only_when_whole() {
        let rec = |n: usize| {
            let mut r = vec![23, 3, 3, (n >> 8) as u8, n as u8];
            r.extend(std::iter::repeat_n(0, n));
            r
        };
        let mut two = rec(10);
        two.extend(rec(300));
        assert_eq!(count_records(&two), Some(2));
        assert_eq!(count_records(&[]), Some(0));
        assert_eq!(count_records(&two[..two.len() - 1]), None);
        assert_eq!(count_records(&[23, 3]), None);
        assert_eq!(count_records(&rec(MAX_RECORD)), None);
        // Not TLS at all (plain HTTP on the HTTPS port): refused at its
        // first byte, not waited on.
        assert!(whole_record(b"G").is_err());
        assert!(whole_record(b"GET / HTTP/1.1\r\n").is_err());
        assert!(whole_record(&[22, 2]).is_err());
        assert_eq!(whole_record(&[22, 3]), Ok(None));
    }

    #[test]
    fn a_tls_unit_payload_is_refused_when_garbled() {
        assert!(decode_tls_unit(&Bytes::from_static(b"")).is_err());
        assert!(decode_tls_unit(&Bytes::from_static(b"\x00")).is_err());
        assert!(decode_tls_unit(&Bytes::from_static(b"\x00\x05ab")).is_err());
        assert!(decode_tls_unit(&Bytes::from_static(b"\x00\x02ab")).is_err());
        let (s, b) = decode_tls_unit(&Bytes::from_static(b"\x00\x00hrr")).unwrap();
        assert!(s.is_none());
        assert_eq!(&b[..], b"hrr");
    }
}
