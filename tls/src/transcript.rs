//! The handshake transcript hash up to the server's Finished, recomputed
//! from the bytes on the wire: the client's plaintext handshake records
//! (its ClientHello, twice after a HelloRetryRequest) and the server's
//! output, whose encrypted part we open with the server handshake secret.
//! rustls does not expose its transcript; a node taking a connection over
//! before the client's Finished needs it to verify that Finished.
//!
//! Checked on every handshake: the server Finished we recompute from this
//! transcript must equal the one rustls sent.

use crate::error::TlsError;
use crate::suite::Suite;

const CT_CCS: u8 = 20;
const CT_HANDSHAKE: u8 = 22;
const CT_APPDATA: u8 = 23;
const HS_CLIENT_HELLO: u8 = 1;
const HS_SERVER_HELLO: u8 = 2;
const HS_FINISHED: u8 = 20;
const HS_MESSAGE_HASH: u8 = 254;
const EXT_EARLY_DATA: u16 = 42;

/// SHA-256("HelloRetryRequest"): a ServerHello with this random is an HRR.
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

pub(crate) struct Flight {
    /// Transcript-Hash(ClientHello … server Finished).
    pub transcript_hash: Vec<u8>,
    /// The (last) ClientHello offered 0-RTT data, which we reject.
    pub early_data_offered: bool,
}

/// `client_hs`: the client's plaintext handshake records, whole;
/// `server_out`: everything the server wrote up to its Finished.
pub(crate) fn flight(
    suite: Suite,
    client_hs: &[u8],
    server_out: &[u8],
    server_hs_secret: &[u8],
) -> Result<Flight, TlsError> {
    let bad = |m| TlsError::CrossCheck(m);
    // The client's handshake stream → ClientHello(s).
    let mut client_stream = Vec::new();
    for (typ, body) in records(client_hs)? {
        if typ == CT_HANDSHAKE {
            client_stream.extend_from_slice(body);
        }
    }
    let client_msgs = messages(&client_stream)?;
    if client_msgs.is_empty()
        || client_msgs.len() > 2
        || client_msgs.iter().any(|m| m[0] != HS_CLIENT_HELLO)
    {
        return Err(bad("client handshake messages"));
    }

    // The server's: plaintext ServerHello (after an HRR), then the
    // encrypted EncryptedExtensions … Finished.
    let keys = suite.traffic_keys(server_hs_secret)?;
    let mut plain = Vec::new();
    let mut encrypted = Vec::new();
    let mut seq = 0u64;
    for (typ, body) in records(server_out)? {
        match typ {
            CT_HANDSHAKE => plain.extend_from_slice(body),
            CT_CCS => {}
            CT_APPDATA => {
                let header = header_of(body.len());
                let mut b = body.to_vec();
                let n = keys
                    .open(seq, &header, &mut b)
                    .ok_or(bad("server flight does not open"))?;
                seq += 1;
                let t = b[..n]
                    .iter()
                    .rposition(|&x| x != 0)
                    .ok_or(bad("server record type"))?;
                if b[t] != CT_HANDSHAKE {
                    return Err(bad("server record type"));
                }
                encrypted.extend_from_slice(&b[..t]);
            }
            _ => return Err(bad("server record type")),
        }
    }
    let server_plain = messages(&plain)?;
    let server_enc = messages(&encrypted)?;
    let hrr = match (server_plain.as_slice(), client_msgs.len()) {
        ([sh], 1) if !is_hrr(sh) => false,
        ([h, sh], 2) if is_hrr(h) && !is_hrr(sh) => true,
        _ => return Err(bad("ServerHello / HelloRetryRequest sequence")),
    };
    let Some((fin, before_fin)) = server_enc.split_last() else {
        return Err(bad("no server Finished"));
    };
    if fin[0] != HS_FINISHED || fin.len() != 4 + suite.hash_len() {
        return Err(bad("server flight does not end with Finished"));
    }

    let mut transcript = Vec::new();
    if hrr {
        // §4.4.1: ClientHello1 is replaced by message_hash(Hash(CH1)).
        let h = suite.hash(client_msgs[0]);
        transcript.extend_from_slice(&[HS_MESSAGE_HASH, 0, 0, h.len() as u8]);
        transcript.extend_from_slice(&h);
        transcript.extend_from_slice(server_plain[0]);
        transcript.extend_from_slice(client_msgs[1]);
        transcript.extend_from_slice(server_plain[1]);
    } else {
        transcript.extend_from_slice(client_msgs[0]);
        transcript.extend_from_slice(server_plain[0]);
    }
    for m in before_fin {
        transcript.extend_from_slice(m);
    }
    // The server's Finished, recomputed: proves the transcript and secret.
    let key = suite.finished_key(server_hs_secret);
    ring::hmac::verify(&key, &suite.hash(&transcript), &fin[4..])
        .map_err(|_| bad("server Finished does not match the recomputed transcript"))?;
    transcript.extend_from_slice(fin);

    let last_ch = client_msgs[client_msgs.len() - 1];
    Ok(Flight {
        transcript_hash: suite.hash(&transcript),
        early_data_offered: has_extension(last_ch, EXT_EARLY_DATA)?,
    })
}

pub(crate) fn header_of(len: usize) -> [u8; 5] {
    [CT_APPDATA, 3, 3, (len >> 8) as u8, len as u8]
}

/// Split whole records; a partial record is an error here (we only hand
/// whole records in).
pub(crate) fn records(mut b: &[u8]) -> Result<Vec<(u8, &[u8])>, TlsError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 5 {
            return Err(TlsError::CrossCheck("partial record"));
        }
        let len = u16::from_be_bytes([b[3], b[4]]) as usize;
        if b.len() < 5 + len {
            return Err(TlsError::CrossCheck("partial record"));
        }
        out.push((b[0], &b[5..5 + len]));
        b = &b[5 + len..];
    }
    Ok(out)
}

/// Split a handshake stream into whole messages (header included).
fn messages(mut b: &[u8]) -> Result<Vec<&[u8]>, TlsError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 4 {
            return Err(TlsError::CrossCheck("partial handshake message"));
        }
        let len = u32::from_be_bytes([0, b[1], b[2], b[3]]) as usize;
        if b.len() < 4 + len {
            return Err(TlsError::CrossCheck("partial handshake message"));
        }
        out.push(&b[..4 + len]);
        b = &b[4 + len..];
    }
    Ok(out)
}

fn is_hrr(msg: &[u8]) -> bool {
    // type(1) len(3) legacy_version(2) random(32)
    msg[0] == HS_SERVER_HELLO && msg.get(6..38) == Some(&HRR_RANDOM[..])
}

/// Whether a ClientHello (header included) carries extension `ext`.
fn has_extension(ch: &[u8], ext: u16) -> Result<bool, TlsError> {
    let bad = || TlsError::CrossCheck("ClientHello does not parse");
    let mut r = &ch[4..];
    let mut take = |n: usize| -> Result<&[u8], TlsError> {
        if r.len() < n {
            return Err(bad());
        }
        let (a, rest) = r.split_at(n);
        r = rest;
        Ok(a)
    };
    take(2 + 32)?; // legacy_version, random
    let n = take(1)?[0] as usize;
    take(n)?; // legacy_session_id
    let n = u16::from_be_bytes(take(2)?.try_into().expect("2")) as usize;
    take(n)?; // cipher_suites
    let n = take(1)?[0] as usize;
    take(n)?; // legacy_compression_methods
    let n = u16::from_be_bytes(take(2)?.try_into().expect("2")) as usize;
    let mut exts = take(n)?;
    while !exts.is_empty() {
        if exts.len() < 4 {
            return Err(bad());
        }
        let typ = u16::from_be_bytes([exts[0], exts[1]]);
        let len = u16::from_be_bytes([exts[2], exts[3]]) as usize;
        if exts.len() < 4 + len {
            return Err(bad());
        }
        if typ == ext {
            return Ok(true);
        }
        exts = &exts[4 + len..];
    }
    Ok(false)
}
