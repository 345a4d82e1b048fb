//! Our TLS 1.3 record layer (RFC 8446 §5), built from a `TlsState`.
//!
//! It is deterministic on purpose: the same state and the same plaintext
//! give the same records on either node — a record carries at most
//! `MAX_FRAGMENT` bytes, cut at the same offsets, never padded — so the
//! owner node's copy of a connection can produce exactly the bytes the
//! primary sent, and a survivor can go on where the dead node stopped.
//!
//! Reading handles records split anywhere across calls, the client's
//! KeyUpdate (followed on receive; when it asks for an update, our answer
//! is owed until the caller asks for it with `answer_update`),
//! close_notify and other alerts, and — for a connection handed over
//! before the client's Finished — that Finished, verified here. Anything
//! else the client sends is a protocol error: an alert is queued
//! (`take_output`) and the layer refuses further use.

use tracing::debug;

mod deferred;
pub use deferred::{sealed_len, Deferred};

use crate::error::{AlertDescription, TlsError};
use crate::state::{PendingFinished, Secret, TlsState};
use crate::suite::{Suite, TrafficKeys, TAG_LEN};

/// Most plaintext bytes in one record (2^14, RFC 8446 §5.1).
pub const MAX_FRAGMENT: usize = 16384;
/// Largest ciphertext a record may carry (2^14 + 256, §5.2).
const MAX_CIPHERTEXT: usize = MAX_FRAGMENT + 256;
const HEADER_LEN: usize = 5;

const CT_CCS: u8 = 20;
const CT_ALERT: u8 = 21;
const CT_HANDSHAKE: u8 = 22;
const CT_APPDATA: u8 = 23;

const HS_FINISHED: u8 = 20;
const HS_KEY_UPDATE: u8 = 24;

/// Something the client did besides sending data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsEvent {
    /// The client's Finished arrived and verified (a connection handed over
    /// before it): the handshake is complete.
    ClientFinished,
    /// The client moved to its next traffic secret; `update_requested`: it
    /// asked us to move too. We have not yet: our answer is owed
    /// ([`RecordLayer::update_owed`]) until the caller sends it with
    /// [`RecordLayer::answer_update`], once it has sealed the replies to
    /// what the client sent before its KeyUpdate.
    KeyUpdate { update_requested: bool },
    /// The client closed its sending side (close_notify).
    CloseNotify,
    /// A user_canceled warning (followed by close_notify, per §6.1).
    UserCanceled,
}

/// What `open` read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Opened {
    pub plaintext: Vec<u8>,
    pub events: Vec<TlsEvent>,
}

struct Pending {
    fin: PendingFinished,
    hs_keys: TrafficKeys,
}

/// A connection's record layer after (or at the end of) the handshake.
pub struct RecordLayer {
    suite: Suite,
    client_secret: Secret,
    server_secret: Secret,
    rx: TrafficKeys,
    tx: TrafficKeys,
    rx_seq: u64,
    tx_seq: u64,
    pending: Option<Pending>,
    /// Bytes of an incomplete record.
    inbuf: Vec<u8>,
    /// Bytes of an incomplete handshake message.
    hs_buf: Vec<u8>,
    /// Records `open` produced (our KeyUpdate, an alert), to send before
    /// anything sealed later.
    out: Vec<u8>,
    rx_closed: bool,
    tx_closed: bool,
    failed: bool,
    /// The client asked for a KeyUpdate we have not sent yet. Not part of
    /// the `TlsState`: the node keeps track of it (where in the client's
    /// stream it was asked), and several requests before one answer
    /// collapse into that answer.
    update_owed: bool,
}

impl std::fmt::Debug for RecordLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordLayer")
            .field("suite", &self.suite)
            .field("rx_seq", &self.rx_seq)
            .field("tx_seq", &self.tx_seq)
            .field("pending", &self.pending.is_some())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl RecordLayer {
    /// A record layer continuing from `state` (from this node's handshake,
    /// or decoded from the peer's log).
    pub fn new(state: TlsState) -> Result<Self, TlsError> {
        let TlsState {
            suite,
            client_secret,
            server_secret,
            rx_seq,
            tx_seq,
            pending,
        } = state;
        let pending = match pending {
            Some(fin) => Some(Pending {
                hs_keys: suite.traffic_keys(fin.client_hs_secret.bytes())?,
                fin,
            }),
            None => None,
        };
        Ok(Self {
            suite,
            rx: suite.traffic_keys(client_secret.bytes())?,
            tx: suite.traffic_keys(server_secret.bytes())?,
            client_secret,
            server_secret,
            rx_seq,
            tx_seq,
            pending,
            inbuf: Vec::new(),
            hs_buf: Vec::new(),
            out: Vec::new(),
            rx_closed: false,
            tx_closed: false,
            failed: false,
            update_owed: false,
        })
    }

    /// The state to hand to the peer. Only between records: with part of a
    /// record or of a handshake message buffered the state would not say
    /// where the stream stands, so that is `MidRecord`.
    pub fn snapshot(&self) -> Result<TlsState, TlsError> {
        if self.failed {
            return Err(TlsError::Failed);
        }
        if !self.inbuf.is_empty() || !self.hs_buf.is_empty() {
            return Err(TlsError::MidRecord);
        }
        Ok(TlsState {
            suite: self.suite,
            client_secret: self.client_secret.clone(),
            server_secret: self.server_secret.clone(),
            rx_seq: self.rx_seq,
            tx_seq: self.tx_seq,
            pending: self.pending.as_ref().map(|p| p.fin.clone()),
        })
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Records sealed under the current server secret.
    pub fn tx_seq(&self) -> u64 {
        self.tx_seq
    }

    /// Whether the client's Finished is still awaited.
    pub fn awaiting_client_finished(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the client asked for a KeyUpdate (update_requested) that we
    /// have not answered yet ([`RecordLayer::answer_update`]).
    pub fn update_owed(&self) -> bool {
        self.update_owed
    }

    /// Owe the client a KeyUpdate it asked for from another node, which
    /// never sent it (a survivor taking over a connection whose old node
    /// had not answered yet): sent by [`RecordLayer::answer_update`].
    pub fn owe_update(&mut self) {
        self.update_owed = !self.tx_closed;
    }

    /// Send the KeyUpdate the client asked for, if one is owed: queued for
    /// `take_output`, sealed under the current key, then our sending side
    /// moves to the next secret. Returns whether it queued one. Every
    /// request for an update read so far is answered by this one (RFC 8446
    /// §4.6.3 asks for an update, not one per request). Call it once the
    /// records for what the client sent before its KeyUpdate are sealed:
    /// the client reads records under our old key until it sees our
    /// KeyUpdate, and cannot tell an answer held back until then from
    /// replies that were already in flight — so the answer's place in our
    /// stream is the caller's to choose, and a node that replicates the
    /// connection chooses it where its peer can predict it. After our
    /// close_notify nothing is sent: the owed answer is dropped.
    pub fn answer_update(&mut self) -> Result<bool, TlsError> {
        if !std::mem::take(&mut self.update_owed) || self.tx_closed {
            return Ok(false);
        }
        self.update_tx()?;
        Ok(true)
    }

    /// Records queued by `open` or `close`: our KeyUpdate, an alert.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Seal application data into records of at most `MAX_FRAGMENT`
    /// plaintext bytes each, cut at the same offsets on every node. Nothing
    /// for empty input. Send `take_output()` first if it holds anything.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, TlsError> {
        self.seal_parts(&[plaintext])
    }

    /// As [`RecordLayer::seal`], for plaintext in parts (an HTTP reply's
    /// head and body): the records are cut from the parts' concatenation,
    /// so the bytes are those of `seal(&parts.concat())`, without that
    /// copy.
    pub fn seal_parts<T: AsRef<[u8]>>(&mut self, parts: &[T]) -> Result<Vec<u8>, TlsError> {
        if self.failed {
            return Err(TlsError::Failed);
        }
        if self.tx_closed {
            return Err(TlsError::Closed);
        }
        let total: usize = parts.iter().map(|p| p.as_ref().len()).sum();
        let n = total.div_ceil(MAX_FRAGMENT);
        let mut out = Vec::with_capacity(total + n * (HEADER_LEN + 1 + TAG_LEN));
        let mut parts = parts.iter().map(|p| p.as_ref()).filter(|p| !p.is_empty());
        let mut part: &[u8] = parts.next().unwrap_or_default();
        let mut left = total;
        while left > 0 {
            let len = left.min(MAX_FRAGMENT);
            let (header, from) = self.open_record(len, &mut out)?;
            let mut need = len;
            while need > 0 {
                if part.is_empty() {
                    part = parts.next().unwrap_or_default();
                }
                let take = need.min(part.len());
                out.extend_from_slice(&part[..take]);
                part = &part[take..];
                need -= take;
            }
            self.close_record(CT_APPDATA, header, from, &mut out);
            left -= len;
        }
        Ok(out)
    }

    /// Our KeyUpdate (update_not_requested), queued for `take_output`,
    /// sealed under the current key; then our sending side moves to the
    /// next secret (§4.6.3). What answering a client's request for an
    /// update does ([`RecordLayer::answer_update`]).
    pub fn update_tx(&mut self) -> Result<(), TlsError> {
        if self.failed {
            return Err(TlsError::Failed);
        }
        if self.tx_closed {
            return Err(TlsError::Closed);
        }
        let mut rec = Vec::new();
        self.seal_record(CT_HANDSHAKE, &[HS_KEY_UPDATE, 0, 0, 1, 0], &mut rec)?;
        self.out.extend_from_slice(&rec);
        let next = Secret::new(self.suite.next_secret(self.server_secret.bytes()));
        self.tx = self.suite.traffic_keys(next.bytes())?;
        self.server_secret = next;
        self.tx_seq = 0;
        Ok(())
    }

    /// Our close_notify, queued for `take_output`; nothing sealed after it.
    pub fn close(&mut self) -> Result<(), TlsError> {
        if self.failed {
            return Err(TlsError::Failed);
        }
        if !self.tx_closed {
            let mut rec = Vec::new();
            self.seal_record(CT_ALERT, &[1, AlertDescription::CLOSE_NOTIFY.0], &mut rec)?;
            self.out.extend_from_slice(&rec);
            self.tx_closed = true;
            self.update_owed = false;
        }
        Ok(())
    }

    fn seal_record(&mut self, ct: u8, body: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        let (header, from) = self.open_record(body.len(), out)?;
        out.extend_from_slice(body);
        self.close_record(ct, header, from, out);
        Ok(())
    }

    /// A record of `body_len` content bytes begun in `out`: its header
    /// written, room reserved; the content goes behind it, then
    /// [`Self::close_record`]. Returns the header and where the content
    /// starts.
    fn open_record(
        &mut self,
        body_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<([u8; 5], usize), TlsError> {
        if self.tx_seq == u64::MAX {
            return Err(TlsError::SequenceExhausted);
        }
        let len = body_len + 1 + TAG_LEN;
        let header = [CT_APPDATA, 3, 3, (len >> 8) as u8, len as u8];
        out.reserve(HEADER_LEN + len);
        out.extend_from_slice(&header);
        Ok((header, out.len()))
    }

    /// Seals the record begun by [`Self::open_record`] in place: its inner
    /// content type, then the AEAD over `out[from..]`, the tag appended.
    fn close_record(&mut self, ct: u8, header: [u8; 5], from: usize, out: &mut Vec<u8>) {
        out.push(ct);
        self.tx.seal_tail(self.tx_seq, &header, out, from);
        self.tx_seq += 1;
    }

    /// Open the client's bytes: any split, any number of records. On a
    /// protocol error the alert is queued (`take_output`), the layer fails
    /// for good, and what this call had read is dropped with it.
    pub fn open(&mut self, data: &[u8]) -> Result<Opened, TlsError> {
        if self.failed {
            return Err(TlsError::Failed);
        }
        let mut opened = Opened::default();
        if self.rx_closed {
            // §6.1: data after a closure alert is ignored.
            return Ok(opened);
        }
        // Records are opened in place in the buffer, taken out of `self`
        // while `read_record` borrows it.
        let mut buf = std::mem::take(&mut self.inbuf);
        buf.extend_from_slice(data);
        opened.plaintext.reserve(buf.len());
        let mut pos = 0;
        let result = loop {
            let rest = &mut buf[pos..];
            if rest.len() < HEADER_LEN {
                break Ok(());
            }
            let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
            if len > MAX_CIPHERTEXT {
                break Err(TlsError::RecordOverflow(len));
            }
            if rest.len() < HEADER_LEN + len {
                break Ok(());
            }
            let (header, tail) = rest.split_at_mut(HEADER_LEN);
            let header: [u8; 5] = (&*header).try_into().expect("5 bytes");
            pos += HEADER_LEN + len;
            if let Err(e) = self.read_record(header, &mut tail[..len], &mut opened) {
                break Err(e);
            }
            if self.rx_closed {
                break Ok(());
            }
        };
        match result {
            Ok(()) => {
                if self.rx_closed || pos == buf.len() {
                    // Nothing held: an idle connection keeps no buffer.
                    buf = Vec::new();
                } else {
                    buf.drain(..pos);
                    if buf.capacity() > 2 * (HEADER_LEN + MAX_CIPHERTEXT) {
                        buf.shrink_to(HEADER_LEN + MAX_CIPHERTEXT);
                    }
                }
                self.inbuf = buf;
                Ok(opened)
            }
            Err(e) => {
                self.fail(&e);
                Err(e)
            }
        }
    }

    /// Queue the alert an error calls for, and stop.
    fn fail(&mut self, e: &TlsError) {
        let alert = match e {
            TlsError::BadRecordMac => Some(AlertDescription::BAD_RECORD_MAC),
            TlsError::RecordOverflow(_) => Some(AlertDescription::RECORD_OVERFLOW),
            TlsError::UnexpectedMessage(_) => Some(AlertDescription::UNEXPECTED_MESSAGE),
            TlsError::Decode(_) => Some(AlertDescription::DECODE_ERROR),
            TlsError::BadFinished => Some(AlertDescription::DECRYPT_ERROR),
            TlsError::SequenceExhausted => Some(AlertDescription::INTERNAL_ERROR),
            // The peer's own fatal alert: nothing to answer.
            _ => None,
        };
        debug!(error = %e, ?alert, "TLS record layer failed");
        if let (Some(a), false) = (alert, self.tx_closed) {
            let mut rec = Vec::new();
            if self.seal_record(CT_ALERT, &[2, a.0], &mut rec).is_ok() {
                self.out.extend_from_slice(&rec);
            }
        }
        self.inbuf.clear();
        self.hs_buf.clear();
        self.failed = true;
    }

    fn read_record(
        &mut self,
        header: [u8; 5],
        body: &mut [u8],
        opened: &mut Opened,
    ) -> Result<(), TlsError> {
        if header[1] != 3 || header[2] != 3 {
            return Err(TlsError::Decode("record version is not 0x0303"));
        }
        match header[0] {
            CT_APPDATA => {}
            // §5: a change_cipher_spec (one byte, 1) between the ClientHello
            // and the client's Finished is dropped; anywhere else it is an
            // error.
            CT_CCS if self.pending.is_some() && body == [1] && self.hs_buf.is_empty() => {
                return Ok(())
            }
            // Before its Finished a client that could not use our flight may
            // answer with a plaintext alert.
            CT_ALERT if self.pending.is_some() && self.hs_buf.is_empty() => {
                return self.read_alert(body, opened);
            }
            _ => return Err(TlsError::UnexpectedMessage("record type")),
        }
        let len = self.decrypt(&header, body)?;
        let Some(len) = len else {
            return Ok(()); // skipped 0-RTT data
        };
        // Inner plaintext: content || type || zeros (§5.4).
        let Some(type_at) = body[..len].iter().rposition(|&b| b != 0) else {
            return Err(TlsError::UnexpectedMessage("record with no content type"));
        };
        let ct = body[type_at];
        let content = &body[..type_at];
        if content.len() > MAX_FRAGMENT {
            return Err(TlsError::RecordOverflow(content.len()));
        }
        if !self.hs_buf.is_empty() && ct != CT_HANDSHAKE {
            return Err(TlsError::UnexpectedMessage(
                "record inside a handshake message",
            ));
        }
        match ct {
            CT_APPDATA if self.pending.is_none() => {
                opened.plaintext.extend_from_slice(content);
                Ok(())
            }
            CT_APPDATA => Err(TlsError::UnexpectedMessage(
                "application data before Finished",
            )),
            CT_ALERT => self.read_alert(content, opened),
            CT_HANDSHAKE if !content.is_empty() => self.read_handshake(content, opened),
            _ => Err(TlsError::UnexpectedMessage("inner content type")),
        }
    }

    /// Decrypt in place with the current receive key; `None` for a record
    /// skipped as rejected 0-RTT data.
    fn decrypt(&mut self, header: &[u8; 5], body: &mut [u8]) -> Result<Option<usize>, TlsError> {
        if let Some(p) = &mut self.pending {
            if p.fin.hs_rx_seq == u64::MAX {
                return Err(TlsError::SequenceExhausted);
            }
            return match p.hs_keys.open(p.fin.hs_rx_seq, header, body) {
                Some(n) => {
                    p.fin.hs_rx_seq += 1;
                    // Past the first good record no more early data comes.
                    p.fin.early_data_skip = 0;
                    Ok(Some(n))
                }
                None if (body.len() as u64) <= u64::from(p.fin.early_data_skip) => {
                    p.fin.early_data_skip -= body.len() as u32;
                    Ok(None)
                }
                None => Err(TlsError::BadRecordMac),
            };
        }
        if self.rx_seq == u64::MAX {
            return Err(TlsError::SequenceExhausted);
        }
        let n = self
            .rx
            .open(self.rx_seq, header, body)
            .ok_or(TlsError::BadRecordMac)?;
        self.rx_seq += 1;
        Ok(Some(n))
    }

    fn read_alert(&mut self, content: &[u8], opened: &mut Opened) -> Result<(), TlsError> {
        let [_level, desc] = content else {
            return Err(TlsError::Decode("alert is not two bytes"));
        };
        match AlertDescription(*desc) {
            AlertDescription::CLOSE_NOTIFY => {
                self.rx_closed = true;
                opened.events.push(TlsEvent::CloseNotify);
                Ok(())
            }
            AlertDescription::USER_CANCELED => {
                opened.events.push(TlsEvent::UserCanceled);
                Ok(())
            }
            d => Err(TlsError::PeerAlert(d)),
        }
    }

    fn read_handshake(&mut self, content: &[u8], opened: &mut Opened) -> Result<(), TlsError> {
        self.hs_buf.extend_from_slice(content);
        loop {
            let Some(&typ) = self.hs_buf.first() else {
                return Ok(());
            };
            let allowed = if self.pending.is_some() {
                HS_FINISHED
            } else {
                HS_KEY_UPDATE
            };
            if typ != allowed {
                return Err(TlsError::UnexpectedMessage("handshake message type"));
            }
            if self.hs_buf.len() < 4 {
                return Ok(());
            }
            let len = u32::from_be_bytes([0, self.hs_buf[1], self.hs_buf[2], self.hs_buf[3]]);
            let len = len as usize;
            // A Finished is one hash long, a KeyUpdate one byte.
            if len > 64 {
                return Err(TlsError::Decode("handshake message too long"));
            }
            if self.hs_buf.len() < 4 + len {
                return Ok(());
            }
            let msg: Vec<u8> = self.hs_buf.drain(..4 + len).collect();
            // Both messages change keys: they must end their record (§5.1).
            if !self.hs_buf.is_empty() {
                return Err(TlsError::UnexpectedMessage("data after a key change"));
            }
            if typ == HS_FINISHED {
                self.read_finished(&msg[4..], opened)?;
            } else {
                self.read_key_update(&msg[4..], opened)?;
            }
        }
    }

    fn read_finished(&mut self, verify_data: &[u8], opened: &mut Opened) -> Result<(), TlsError> {
        let p = self.pending.as_ref().expect("only called while pending");
        if verify_data.len() != self.suite.hash_len() {
            return Err(TlsError::Decode("Finished length"));
        }
        let key = self.suite.finished_key(p.fin.client_hs_secret.bytes());
        // ring's verify compares in constant time.
        ring::hmac::verify(&key, &p.fin.transcript_hash, verify_data)
            .map_err(|_| TlsError::BadFinished)?;
        self.pending = None;
        debug!("client Finished verified; handshake complete");
        opened.events.push(TlsEvent::ClientFinished);
        Ok(())
    }

    fn read_key_update(&mut self, body: &[u8], opened: &mut Opened) -> Result<(), TlsError> {
        let update_requested = match body {
            [0] => false,
            [1] => true,
            _ => return Err(TlsError::Decode("KeyUpdate")),
        };
        let next = Secret::new(self.suite.next_secret(self.client_secret.bytes()));
        self.rx = self.suite.traffic_keys(next.bytes())?;
        self.client_secret = next;
        self.rx_seq = 0;
        // Only noted: our answer goes where the caller places it
        // (`answer_update`), not before replies it has yet to seal.
        if update_requested && !self.tx_closed {
            self.update_owed = true;
        }
        debug!(update_requested, "client KeyUpdate followed");
        opened.events.push(TlsEvent::KeyUpdate { update_requested });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
