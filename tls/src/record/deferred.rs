//! A reply's records sealed a few at a time, as the socket takes them.
//!
//! Sealing a whole reply when it is queued holds its ciphertext for as long
//! as the client takes to read it: a 50 MB `static` file over HTTPS was
//! 50 MB more on each node per download (its plaintext is the content
//! cache's, shared), and a SIGKILLed node's exit (the kernel frees its
//! memory before it closes its sockets) took the longer for it, which
//! lengthened every takeover's detection. A [`Deferred`] reserves the
//! reply's records in the layer at once — the layer's next record comes
//! after them, so later replies and our KeyUpdates are sealed where they
//! would have been — and seals them when asked. The records are the bytes
//! [`RecordLayer::seal_parts`] (and [`RecordLayer::close`]) would have made:
//! cut every [`MAX_FRAGMENT`] bytes from the reply's start, whatever the
//! pieces they are sealed in.

use crate::error::{AlertDescription, TlsError};
use crate::suite::{TrafficKeys, TAG_LEN};

use super::{RecordLayer, CT_ALERT, CT_APPDATA, HEADER_LEN, MAX_FRAGMENT};

/// Bytes on the wire of `plain` bytes of application data sealed in one
/// go, with our close_notify after them when `close_after`.
pub fn sealed_len(plain: usize, close_after: bool) -> usize {
    let per = HEADER_LEN + 1 + TAG_LEN;
    plain + plain.div_ceil(MAX_FRAGMENT) * per + if close_after { per + 2 } else { 0 }
}

/// The reserved records of one reply: its key, its first sequence number,
/// how much plaintext is still to seal and whether our close_notify ends it.
pub struct Deferred {
    tx: TrafficKeys,
    seq: u64,
    left: usize,
    close: bool,
}

/// Without the key.
impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (seq, left, close) = (self.seq, self.left, self.close);
        write!(
            f,
            "Deferred {{ seq: {seq}, left: {left}, close: {close}, .. }}"
        )
    }
}

impl RecordLayer {
    /// Reserve the records of `len` bytes of application data (and our
    /// close_notify after them when `close_after`): the layer moves past
    /// them now, the [`Deferred`] seals them later. Nothing may be sealed
    /// after a close.
    pub fn defer(&mut self, len: usize, close_after: bool) -> Result<Deferred, TlsError> {
        if self.failed {
            return Err(TlsError::Failed);
        }
        if self.tx_closed {
            return Err(TlsError::Closed);
        }
        let records = len.div_ceil(MAX_FRAGMENT) as u64 + u64::from(close_after);
        let seq = self.tx_seq;
        // The last record's sequence number must exist (`open_record`
        // refuses u64::MAX).
        self.tx_seq = seq
            .checked_add(records)
            .filter(|&end| end < u64::MAX || records == 0)
            .ok_or(TlsError::SequenceExhausted)?;
        if close_after {
            self.tx_closed = true;
        }
        Ok(Deferred {
            tx: self.tx.clone(),
            seq,
            left: len,
            close: close_after,
        })
    }
}

impl Deferred {
    /// Plaintext bytes not sealed yet.
    pub fn plain_left(&self) -> usize {
        self.left
    }

    /// Bytes on the wire still to come from [`Self::seal`].
    pub fn wire_left(&self) -> usize {
        sealed_len(self.left, self.close)
    }

    /// Whether every record has been sealed.
    pub fn is_done(&self) -> bool {
        self.left == 0 && !self.close
    }

    /// The next records, from the reply's next plaintext bytes in `parts`
    /// (their concatenation): a whole number of records, so `parts` must
    /// hold a multiple of [`MAX_FRAGMENT`] bytes or the rest of the reply.
    /// The close_notify follows the last record.
    pub fn seal<T: AsRef<[u8]>>(&mut self, parts: &[T]) -> Result<Vec<u8>, TlsError> {
        let total: usize = parts.iter().map(|p| p.as_ref().len()).sum();
        if total > self.left || (total != self.left && !total.is_multiple_of(MAX_FRAGMENT)) {
            return Err(TlsError::BadState(
                "deferred records sealed from a piece not cut at a record",
            ));
        }
        let mut out = Vec::with_capacity(sealed_len(total, false) + HEADER_LEN + 3 + TAG_LEN);
        let mut parts = parts.iter().map(|p| p.as_ref()).filter(|p| !p.is_empty());
        let mut part: &[u8] = parts.next().unwrap_or_default();
        let mut left = total;
        while left > 0 {
            let len = left.min(MAX_FRAGMENT);
            let from = self.open_record(len, &mut out);
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
            self.close_record(CT_APPDATA, from, &mut out);
            left -= len;
        }
        self.left -= total;
        if self.left == 0 && self.close {
            let from = self.open_record(2, &mut out);
            out.extend_from_slice(&[1, AlertDescription::CLOSE_NOTIFY.0]);
            self.close_record(CT_ALERT, from, &mut out);
            self.close = false;
        }
        Ok(out)
    }

    fn open_record(&self, body_len: usize, out: &mut Vec<u8>) -> usize {
        let len = body_len + 1 + TAG_LEN;
        out.extend_from_slice(&[CT_APPDATA, 3, 3, (len >> 8) as u8, len as u8]);
        out.len()
    }

    fn close_record(&mut self, ct: u8, from: usize, out: &mut Vec<u8>) {
        let header: [u8; HEADER_LEN] = out[from - HEADER_LEN..from]
            .try_into()
            .expect("the header is in place");
        out.push(ct);
        self.tx.seal_tail(self.seq, &header, out, from);
        self.seq += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::Suite;

    fn layer_pair() -> (RecordLayer, RecordLayer) {
        super::super::tests::pair(Suite::Aes128GcmSha256)
    }

    fn plain(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// A reply sealed in pieces is the bytes of sealing it whole (and the
    /// close after it), and the layer's next record comes where it would
    /// have: for sizes around record boundaries, pieces of one and of
    /// several records.
    #[test]
    fn deferred_records_are_the_bytes_of_sealing_at_once() {
        for len in [
            0,
            1,
            MAX_FRAGMENT - 1,
            MAX_FRAGMENT,
            MAX_FRAGMENT + 1,
            3 * MAX_FRAGMENT + 17,
        ] {
            for close in [false, true] {
                for piece in [1, 2, 5] {
                    let (mut whole, _) = layer_pair();
                    let (mut lazy, _) = layer_pair();
                    let data = plain(len);
                    let mut want = whole.seal(&data).unwrap();
                    if close {
                        whole.close().unwrap();
                        want.extend_from_slice(&whole.take_output());
                    }
                    let mut d = lazy.defer(len, close).unwrap();
                    assert_eq!(d.wire_left(), want.len(), "len {len} close {close}");
                    assert_eq!(lazy.tx_seq(), whole.tx_seq());
                    let mut got = Vec::new();
                    let mut at = 0;
                    while !d.is_done() {
                        let n = (piece * MAX_FRAGMENT).min(len - at);
                        // Split each piece across two parts too.
                        let (a, b) = data[at..at + n].split_at(n / 3);
                        got.extend(d.seal(&[a, b]).unwrap());
                        at += n;
                        assert_eq!(d.wire_left(), want.len() - got.len());
                    }
                    assert_eq!(got, want, "len {len} close {close} piece {piece}");
                    if !close {
                        // The next reply follows the deferred one.
                        assert_eq!(lazy.seal(b"next").unwrap(), whole.seal(b"next").unwrap());
                    } else {
                        assert!(matches!(lazy.seal(b"x"), Err(TlsError::Closed)));
                    }
                }
            }
        }
    }

    #[test]
    fn a_piece_not_cut_at_a_record_is_refused() {
        let (mut l, _) = layer_pair();
        let mut d = l.defer(3 * MAX_FRAGMENT, false).unwrap();
        let data = plain(MAX_FRAGMENT + 1);
        assert!(d.seal(&[&data[..]]).is_err());
        let too_much = plain(4 * MAX_FRAGMENT);
        assert!(d.seal(&[&too_much[..]]).is_err());
        assert_eq!(d.plain_left(), 3 * MAX_FRAGMENT);
    }
}
