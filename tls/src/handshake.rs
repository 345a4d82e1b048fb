//! The handshake driver: rustls' `ServerConnection` fed whole records, so
//! it never reads a byte past the client's Finished — what follows is
//! ours (the record layer) on every node alike.
//!
//! Two moments matter to replication:
//! - **the server flight is written** (ServerHello … server Finished):
//!   rustls has derived all four traffic secrets by then, and
//!   `flight_state()` gives the state a peer needs to go on from there,
//!   verifying the client's Finished itself. The primary logs the flight
//!   and this state before the client sees a byte of the flight.
//! - **the handshake is complete** (rustls verified the client's
//!   Finished): rustls may write NewSessionTickets, non-deterministic
//!   output to log like the flight. `into_established()` gives the state
//!   after them, cross-checked against rustls' own keys and sequence
//!   numbers (`dangerous_extract_secrets`).

use std::sync::{Arc, Mutex};

use rustls::server::ServerConnection;
use rustls::HandshakeKind;
use tracing::debug;

use crate::config::TlsServerConfig;
use crate::error::TlsError;
use crate::state::{PendingFinished, Secret, TlsState, MAX_EARLY_DATA_SKIP};
use crate::suite::Suite;
use crate::transcript;

const HEADER_LEN: usize = 5;
const MAX_RECORD: usize = HEADER_LEN + 16384 + 256;
const CT_HANDSHAKE: u8 = 22;
const CT_APPDATA: u8 = 23;

/// The four TLS 1.3 traffic secrets of one connection, as rustls reports
/// them through its `KeyLog`. Never printed.
#[derive(Default)]
struct Captured {
    client_hs: Option<Secret>,
    server_hs: Option<Secret>,
    client_app: Option<Secret>,
    server_app: Option<Secret>,
}

#[derive(Default)]
struct ConnKeyLog(Mutex<Captured>);

impl std::fmt::Debug for ConnKeyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnKeyLog")
    }
}

impl rustls::KeyLog for ConnKeyLog {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let slot = match label {
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => &mut c.client_hs,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => &mut c.server_hs,
            "CLIENT_TRAFFIC_SECRET_0" => &mut c.client_app,
            "SERVER_TRAFFIC_SECRET_0" => &mut c.server_app,
            _ => return,
        };
        *slot = Some(Secret::from_slice(secret));
    }

    fn will_log(&self, label: &str) -> bool {
        matches!(
            label,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
                | "SERVER_HANDSHAKE_TRAFFIC_SECRET"
                | "CLIENT_TRAFFIC_SECRET_0"
                | "SERVER_TRAFFIC_SECRET_0"
        )
    }
}

/// Where a handshake stands after `feed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Waiting for more of the client's handshake.
    InProgress,
    /// The server flight is in the output: log it with `flight_state()`
    /// before sending it.
    FlightReady,
    /// The client's Finished verified: `into_established()`.
    Complete,
}

/// The result of a completed handshake.
#[derive(Debug)]
pub struct Established {
    /// The record layer's state (tx_seq counts the tickets rustls sent).
    pub state: TlsState,
    /// Client bytes that followed its Finished: the record layer's first
    /// input.
    pub leftover: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
    pub server_name: Option<String>,
    /// Whether the client resumed a session (a ticket).
    pub resumed: bool,
}

/// One connection's handshake, driven by rustls.
pub struct ServerHandshake {
    conn: Option<ServerConnection>,
    keys: Arc<ConnKeyLog>,
    /// Client bytes of a record not yet whole.
    inbuf: Vec<u8>,
    /// The client's plaintext handshake records, for the transcript.
    client_hs: Vec<u8>,
    /// Everything rustls wrote.
    server_out: Vec<u8>,
    /// Not yet taken by `take_output`.
    out: Vec<u8>,
    flight: Option<TlsState>,
    flight_len: usize,
    established: Option<Established>,
}

impl std::fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("flight", &self.flight.is_some())
            .field("complete", &self.established.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerHandshake {
    pub fn new(config: &TlsServerConfig) -> Result<Self, TlsError> {
        let keys = Arc::new(ConnKeyLog::default());
        let conn = ServerConnection::new(config.for_connection(keys.clone()))
            .map_err(TlsError::Handshake)?;
        Ok(Self {
            conn: Some(conn),
            keys,
            inbuf: Vec::new(),
            client_hs: Vec::new(),
            server_out: Vec::new(),
            out: Vec::new(),
            flight: None,
            flight_len: 0,
            established: None,
        })
    }

    /// Output to send (after logging, at `FlightReady` and `Complete`).
    /// After an error it holds rustls' alert.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The state a peer continues from, once the server flight is written:
    /// traffic secrets, sequence numbers 0, and what verifying the client's
    /// Finished needs.
    pub fn flight_state(&self) -> Option<&TlsState> {
        self.flight.as_ref()
    }

    /// The handshake's result once `Complete`.
    pub fn into_established(self) -> Option<Established> {
        self.established
    }

    /// Feed the client's bytes (any split).
    pub fn feed(&mut self, data: &[u8]) -> Result<Progress, TlsError> {
        if let Some(e) = &mut self.established {
            e.leftover.extend_from_slice(data);
            return Ok(Progress::Complete);
        }
        if self.conn.is_none() {
            return Err(TlsError::Failed);
        }
        self.inbuf.extend_from_slice(data);
        let mut progress = Progress::InProgress;
        let mut pos = 0;
        while self.inbuf.len() - pos >= HEADER_LEN {
            let rest = &self.inbuf[pos..];
            let len = HEADER_LEN + u16::from_be_bytes([rest[3], rest[4]]) as usize;
            if len > MAX_RECORD {
                // rustls judges the header first, so the alert is its own;
                // either way the handshake ends here.
                let rec = rest[..HEADER_LEN].to_vec();
                self.inbuf.clear();
                let judged = self.feed_record(&rec);
                self.conn = None;
                return Err(judged.err().unwrap_or(TlsError::RecordOverflow(len)));
            }
            if rest.len() < len {
                break;
            }
            let rec = rest[..len].to_vec();
            pos += len;
            match self.feed_record(&rec) {
                Ok(p) => {
                    if p != Progress::InProgress {
                        progress = p;
                    }
                    if p == Progress::Complete {
                        let leftover = self.inbuf.split_off(pos);
                        self.inbuf.clear();
                        self.complete(leftover)?;
                        return Ok(Progress::Complete);
                    }
                }
                Err(e) => {
                    self.inbuf.clear();
                    return Err(e);
                }
            }
        }
        self.inbuf.drain(..pos);
        Ok(progress)
    }

    fn feed_record(&mut self, rec: &[u8]) -> Result<Progress, TlsError> {
        let conn = self.conn.as_mut().ok_or(TlsError::Failed)?;
        if rec[0] == CT_HANDSHAKE && self.flight.is_none() {
            self.client_hs.extend_from_slice(rec);
        }
        let mut rd = rec;
        let mut result = Ok(());
        while !rd.is_empty() {
            match conn.read_tls(&mut rd) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => {
                    result = Err(TlsError::Decode("rustls refused the record"));
                    break;
                }
            }
        }
        let processed = result.and_then(|()| {
            conn.process_new_packets()
                .map(|_| ())
                .map_err(TlsError::Handshake)
        });
        // Whatever rustls wrote — the flight, tickets, or its alert.
        let mut w = Vec::new();
        while conn.wants_write() {
            if conn.write_tls(&mut w).is_err() {
                break;
            }
        }
        self.server_out.extend_from_slice(&w);
        self.out.extend_from_slice(&w);
        if let Err(e) = processed {
            debug!(error = %e, "TLS handshake failed");
            self.conn = None;
            return Err(e);
        }
        let conn = self.conn.as_ref().expect("still here");
        if conn.is_handshaking() {
            if self.flight.is_none() && self.keys_complete() {
                self.flight = Some(self.make_flight_state()?);
                self.flight_len = self.server_out.len();
                // The transcript is computed: the client's records are no
                // longer needed.
                self.client_hs = Vec::new();
                return Ok(Progress::FlightReady);
            }
            return Ok(Progress::InProgress);
        }
        if self.flight.is_none() {
            return Err(TlsError::CrossCheck("handshake done with no flight seen"));
        }
        Ok(Progress::Complete)
    }

    fn keys_complete(&self) -> bool {
        let c = self.keys.0.lock().unwrap_or_else(|p| p.into_inner());
        c.client_hs.is_some()
            && c.server_hs.is_some()
            && c.client_app.is_some()
            && c.server_app.is_some()
    }

    fn suite(&self) -> Result<Suite, TlsError> {
        self.conn
            .as_ref()
            .and_then(|c| c.negotiated_cipher_suite())
            .and_then(|s| Suite::from_rustls(s.suite()))
            .ok_or(TlsError::CrossCheck("no TLS 1.3 suite negotiated"))
    }

    fn make_flight_state(&self) -> Result<TlsState, TlsError> {
        let suite = self.suite()?;
        let c = self.keys.0.lock().unwrap_or_else(|p| p.into_inner());
        let missing = TlsError::CrossCheck("secret missing");
        let (client_hs, server_hs, client_app, server_app) = (
            c.client_hs.clone().ok_or(missing.clone())?,
            c.server_hs.clone().ok_or(missing.clone())?,
            c.client_app.clone().ok_or(missing.clone())?,
            c.server_app.clone().ok_or(missing)?,
        );
        let f = transcript::flight(suite, &self.client_hs, &self.server_out, server_hs.bytes())?;
        Ok(TlsState {
            suite,
            client_secret: client_app,
            server_secret: server_app,
            rx_seq: 0,
            tx_seq: 0,
            pending: Some(PendingFinished {
                client_hs_secret: client_hs,
                transcript_hash: f.transcript_hash,
                hs_rx_seq: 0,
                early_data_skip: if f.early_data_offered {
                    MAX_EARLY_DATA_SKIP
                } else {
                    0
                },
            }),
        })
    }

    /// rustls verified the client's Finished: count the ticket records it
    /// wrote, take its keys and sequence numbers, and check them against
    /// ours.
    fn complete(&mut self, leftover: Vec<u8>) -> Result<(), TlsError> {
        let conn = self.conn.take().ok_or(TlsError::Failed)?;
        let flight = self.flight.clone().ok_or(TlsError::Failed)?;
        let alpn = conn.alpn_protocol().map(|p| p.to_vec());
        let server_name = conn.server_name().map(str::to_owned);
        let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
        let after = transcript::records(&self.server_out[self.flight_len..])?;
        if after.iter().any(|(t, _)| *t != CT_APPDATA) {
            return Err(TlsError::CrossCheck("plaintext record after the flight"));
        }
        let tickets = after.len() as u64;
        let secrets = conn
            .dangerous_extract_secrets()
            .map_err(TlsError::Handshake)?;
        let suite = flight.suite;
        check_keys(suite, &secrets.tx.1, flight.server_secret.bytes())?;
        check_keys(suite, &secrets.rx.1, flight.client_secret.bytes())?;
        if secrets.tx.0 != tickets || secrets.rx.0 != 0 {
            return Err(TlsError::CrossCheck("sequence numbers"));
        }
        self.server_out = Vec::new();
        debug!(tickets, resumed, "TLS handshake complete");
        self.established = Some(Established {
            state: TlsState {
                tx_seq: tickets,
                pending: None,
                ..flight
            },
            leftover,
            alpn,
            server_name,
            resumed,
        });
        // The flight state stays available for whoever still needs it.
        Ok(())
    }
}

fn check_keys(
    suite: Suite,
    theirs: &rustls::ConnectionTrafficSecrets,
    secret: &[u8],
) -> Result<(), TlsError> {
    use rustls::ConnectionTrafficSecrets as S;
    let (key, iv, s) = match theirs {
        S::Aes128Gcm { key, iv } => (key, iv, Suite::Aes128GcmSha256),
        S::Aes256Gcm { key, iv } => (key, iv, Suite::Aes256GcmSha384),
        S::Chacha20Poly1305 { key, iv } => (key, iv, Suite::Chacha20Poly1305Sha256),
        _ => return Err(TlsError::CrossCheck("unknown suite from rustls")),
    };
    if s != suite {
        return Err(TlsError::CrossCheck("suite"));
    }
    let (k, i) = suite.raw_traffic_keys(secret);
    if key.as_ref() != &k[..] || iv.as_ref() != &i[..] {
        return Err(TlsError::CrossCheck("traffic keys differ from rustls'"));
    }
    Ok(())
}
