//! The server's side of an HTTPS connection opened by the judge itself,
//! with hotpair-tls's record layer and the server's first application
//! traffic secret (from the client's key log), independently of the
//! client's rustls.
//!
//! Why: rustls as a client does not notice a KeyUpdate the server owes it.
//! When the client sends KeyUpdate(update_requested), RFC 8446 §4.6.3 has
//! the server answer with a KeyUpdate of its own before its next
//! application data; rustls reads on under the server's old key if none
//! comes, so a survivor that forgot the answer the dead node owed
//! (`MirrorTls::promote`) broke no promise the simulation could see. Here
//! every record is opened in order (a record sent twice or missing does
//! not open: its sequence number is implicit), each server KeyUpdate is
//! placed in the plaintext stream, and [`check_key_update_answers`] holds
//! the server to one answer per request, before the reply to the request
//! the client sent after it.

use hotpair_tls::{RecordLayer, Suite, TlsError, TlsEvent, TlsState};

use crate::client::ClientConn;
use crate::reply;

use super::ClientTls;

const HEADER_LEN: usize = 5;
const CT_CCS: u8 = 20;
const CT_HANDSHAKE: u8 = 22;
const CT_APPDATA: u8 = 23;

/// What the server sent after its handshake, as opened here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServerStream {
    /// The application data, in order.
    pub plaintext: Vec<u8>,
    /// For each KeyUpdate the server sent, in order: the application data
    /// bytes before it.
    pub key_updates: Vec<usize>,
    /// Records of other post-handshake messages before the first
    /// application data (the NewSessionTickets).
    pub tickets: u64,
    /// The server's close_notify was read.
    pub closed: bool,
}

/// A record layer that opens what the server sealed: the "client" secret
/// of our record layer is the one it opens with, so the server's secret
/// goes there (the other half is never used: nothing is sealed here).
fn opener(suite: Suite, secret: &[u8], seq: u64) -> Result<RecordLayer, String> {
    // `TlsState`'s link encoding (tls/src/state.rs): magic, version,
    // suite, flags, both secrets, rx and tx sequence numbers.
    let mut b = Vec::with_capacity(32 + 2 * secret.len());
    b.extend_from_slice(b"HPTS");
    b.push(1);
    b.extend_from_slice(&suite.iana().to_be_bytes());
    b.push(0);
    for _ in 0..2 {
        b.push(u8::try_from(secret.len()).map_err(|_| "secret too long")?);
        b.extend_from_slice(secret);
    }
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&0u64.to_be_bytes());
    let state = TlsState::decode(&b).map_err(|e| format!("the server's secret: {e}"))?;
    RecordLayer::new(state).map_err(|e| format!("a record layer: {e}"))
}

/// Open the server's bytes `wire` (everything the client received on the
/// connection, handshake first) under its first application traffic
/// secret. The handshake's records (plaintext, or under the handshake key:
/// they do not open under this one) are skipped, then the session tickets
/// (they open, but are no KeyUpdate, which our record layer refuses); from
/// the first application record or KeyUpdate on every record must open,
/// in order. A partial record at the end is left unread.
pub fn open_server_stream(suite: u16, secret: &[u8], wire: &[u8]) -> Result<ServerStream, String> {
    let suite = Suite::from_iana(suite).ok_or_else(|| format!("unknown suite {suite:#06x}"))?;
    let mut s = ServerStream::default();
    // `None` until the first record that opens to data or a KeyUpdate.
    let mut layer: Option<RecordLayer> = None;
    let mut pos = 0;
    let mut n = 0u64;
    while wire.len() - pos >= HEADER_LEN {
        let len = usize::from(u16::from_be_bytes([wire[pos + 3], wire[pos + 4]]));
        let Some(rec) = wire.get(pos..pos + HEADER_LEN + len) else {
            break;
        };
        let at = pos;
        pos += HEADER_LEN + len;
        n += 1;
        if s.closed {
            return Err(format!(
                "record {n} (byte {at}) after the server's close_notify"
            ));
        }
        let opened = match layer.as_mut() {
            Some(l) => l
                .open(rec)
                .map_err(|e| format!("record {n} (byte {at}) does not open: {e}"))?,
            None if matches!(rec[0], CT_HANDSHAKE | CT_CCS) => continue,
            None if rec[0] != CT_APPDATA => {
                return Err(format!("record {n} (byte {at}): content type {}", rec[0]))
            }
            None => {
                let mut l = opener(suite, secret, s.tickets)?;
                match l.open(rec) {
                    Ok(o) => {
                        layer = Some(l);
                        o
                    }
                    // Still the handshake key (EncryptedExtensions to the
                    // server's Finished).
                    Err(TlsError::BadRecordMac) if s.tickets == 0 => continue,
                    // A post-handshake message our layer does not take: a
                    // NewSessionTicket.
                    Err(TlsError::UnexpectedMessage("handshake message type")) => {
                        s.tickets += 1;
                        continue;
                    }
                    Err(e) => return Err(format!("record {n} (byte {at}) does not open: {e}")),
                }
            }
        };
        s.plaintext.extend_from_slice(&opened.plaintext);
        for e in opened.events {
            match e {
                TlsEvent::KeyUpdate {
                    update_requested: false,
                } => s.key_updates.push(s.plaintext.len()),
                TlsEvent::KeyUpdate {
                    update_requested: true,
                } => {
                    return Err(format!(
                        "record {n} (byte {at}): the server asked the client for a KeyUpdate"
                    ))
                }
                TlsEvent::CloseNotify => s.closed = true,
                e => return Err(format!("record {n} (byte {at}): unexpected {e:?}")),
            }
        }
    }
    Ok(s)
}

/// The server answered each KeyUpdate(update_requested) the client sent on
/// connection `c`, once: its `k`-th KeyUpdate comes before the reply to the
/// request the client sent right after its `k`-th (the server read the
/// request after the KeyUpdate, so it had read the KeyUpdate before it
/// replied; a reply still under way at the kill does not count), and it
/// sent no more KeyUpdates than the client asked for. The stream opened
/// here must be the plaintext the client's rustls gave. Violations go to
/// `v`, named by connection `i`.
pub fn check_key_update_answers(i: &str, c: &ClientConn, tls: &ClientTls, v: &mut Vec<String>) {
    if c.key_updates.is_empty() || c.tls_failed() {
        // Nothing asked, or the client already failed (said elsewhere).
        return;
    }
    let (Some(random), Some(suite)) = (c.client_random, c.suite) else {
        v.push(format!(
            "tls: connection {i}: a KeyUpdate was sent on a connection with no known ClientHello random or suite"
        ));
        return;
    };
    let Some(secret) = tls.server_secret(&random) else {
        v.push(format!(
            "tls: connection {i}: the client's key log has no server traffic secret for it"
        ));
        return;
    };
    let s = match open_server_stream(suite, &secret, &c.server_wire) {
        Ok(s) => s,
        Err(e) => {
            v.push(format!(
                "tls: connection {i}: the server's records, opened by the judge: {e}"
            ));
            return;
        }
    };
    if s.plaintext != c.received {
        v.push(format!(
            "tls: connection {i}: the server's records opened by the judge give {} bytes, the client's rustls {} (they differ from byte {})",
            s.plaintext.len(),
            c.received.len(),
            s.plaintext
                .iter()
                .zip(&c.received)
                .position(|(a, b)| a != b)
                .unwrap_or(s.plaintext.len().min(c.received.len()))
        ));
        return;
    }
    // Where each reply starts: the whole ones, then one under way.
    let mut starts: Vec<usize> = Vec::new();
    if let Ok(p) = reply::parse_stream(&c.received) {
        starts.extend(p.replies.iter().map(|r| r.start));
        if p.partial > 0 {
            starts.push(c.received.len() - p.partial);
        }
    }
    for (k, &req) in c.key_updates.iter().enumerate() {
        let Some(&start) = starts.get(req) else {
            continue;
        };
        if s.key_updates.get(k).is_none_or(|&at| at > start) {
            v.push(format!(
                "tls: connection {i}: the client's KeyUpdate #{} (update_requested, sent before request {req}) has no answer before that request's reply (byte {start}); the server's KeyUpdates came after bytes {:?}",
                k + 1,
                s.key_updates
            ));
        }
    }
    if s.key_updates.len() > c.key_updates.len() {
        v.push(format!(
            "tls: connection {i}: the server sent {} KeyUpdates (after bytes {:?}) for the client's {} requests (one answered twice?)",
            s.key_updates.len(),
            s.key_updates,
            c.key_updates.len()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server-side layer sealing under `secret`, as a node does.
    fn sealer(suite: Suite, secret: &[u8]) -> RecordLayer {
        opener(suite, secret, 0).expect("a layer")
    }

    #[test]
    fn opens_the_stream_and_places_key_updates() {
        let suite = Suite::from_iana(0x1301).expect("AES-128-GCM");
        let secret = [7u8; 32];
        // What a client receives: a plaintext ServerHello, a CCS, a record
        // under another key (the handshake's), data, our KeyUpdate (under
        // the old key), data under the new key, our close_notify.
        let mut head = vec![CT_HANDSHAKE, 3, 3, 0, 2, 2, 0];
        head.extend_from_slice(&[CT_CCS, 3, 3, 0, 1, 1]);
        head.extend(
            sealer(suite, &[9u8; 32])
                .seal(b"encrypted extensions")
                .expect("sealed"),
        );
        let mut l = sealer(suite, &secret);
        let first = l.seal(b"first").expect("sealed");
        l.update_tx().expect("a KeyUpdate");
        let update = l.take_output();
        let second = l.seal(b"second").expect("sealed");
        l.close().expect("close_notify");
        let close = l.take_output();
        let stream = |parts: &[&[u8]]| {
            let mut w = head.clone();
            for p in parts {
                w.extend_from_slice(p);
            }
            w
        };
        let wire = stream(&[&first, &update, &second, &close]);
        let s = open_server_stream(0x1301, &secret, &wire).expect("opens");
        assert_eq!(s.plaintext, b"firstsecond");
        assert_eq!(s.key_updates, vec![5]);
        assert!(s.closed);
        // A partial record at the end is left unread.
        let s = open_server_stream(0x1301, &secret, &wire[..wire.len() - 3]).expect("opens");
        assert_eq!((s.key_updates.len(), s.closed), (1, false));
        // The KeyUpdate missing, or a record sent twice: refused.
        for bad in [
            stream(&[&first, &second]),
            stream(&[&first, &first, &update]),
            stream(&[&first, &update, &update]),
        ] {
            assert!(open_server_stream(0x1301, &secret, &bad).is_err());
        }
        // Under another secret nothing opens past the handshake: no data.
        let s = open_server_stream(0x1301, &[8u8; 32], &wire).expect("all skipped");
        assert!(s.plaintext.is_empty());
    }
}
