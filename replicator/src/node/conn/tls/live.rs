//! The live side of an HTTPS connection (see the parent module): the
//! client's records through the handshake — its steps handed out as jobs,
//! run off the round — then through our record layer.

use bytes::Bytes;
use hotpair_tls::{
    Progress, RecordLayer, ServerHandshake, TlsError, TlsEvent, TlsServerConfig, TlsState,
};

use super::{encode_tls_unit, whole_record, TlsOut, MAX_RECORD};

/// What reading the client's bytes gave.
#[derive(Default)]
pub(crate) struct Read {
    /// The client sent close_notify: its end of the HTTP stream.
    pub eof: bool,
    /// A handshake completed: resumed with a ticket?, its suite.
    pub completed: Option<(bool, hotpair_tls::Suite)>,
}

enum Phase {
    Handshake(Box<ServerHandshake>),
    /// The handshake is out as a [`HandshakeWork`] (run off the round):
    /// client bytes wait in `raw` until it comes back.
    Busy,
    Records(Box<RecordLayer>),
    Failed,
}

/// One step of a handshake: the client's whole records so far, fed to
/// rustls — a signature and a key exchange for a ClientHello, ~1.5 ms of
/// CPU. `run` needs nothing of the node: the shell may run it on its job
/// pool (`NodeCore::poll_tls_job`) so the round that carries heartbeats is
/// not held up, or the round runs it inline (the simulation).
pub struct HandshakeWork {
    hs: Box<ServerHandshake>,
    input: Vec<u8>,
}

impl std::fmt::Debug for HandshakeWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeWork")
            .field("input", &self.input.len())
            .finish_non_exhaustive()
    }
}

/// One record fed: its length, where the handshake stood after it, what
/// rustls wrote, and the state to log with it (encoded TLS unit head).
struct Step {
    len: usize,
    progress: Progress,
    bytes: Vec<u8>,
    head: Option<Bytes>,
}

/// A [`HandshakeWork`] done: give it back to the connection
/// (`NodeCore::handle_tls_job_done`).
pub struct HandshakeDone {
    hs: Option<Box<ServerHandshake>>,
    steps: Vec<Step>,
    established: Option<(TlsState, bool)>,
    error: Option<(TlsError, Vec<u8>)>,
    /// Records after the client's Finished: the record layer's.
    rest: Vec<u8>,
}

impl std::fmt::Debug for HandshakeDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeDone")
            .field("steps", &self.steps.len())
            .field("established", &self.established.is_some())
            .field("failed", &self.error.is_some())
            .finish_non_exhaustive()
    }
}

impl HandshakeWork {
    /// Feed the records, one at a time (so rustls never reads past the
    /// client's Finished).
    pub fn run(self) -> HandshakeDone {
        let HandshakeWork { mut hs, input } = self;
        let mut steps = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let len = match whole_record(&input[pos..]) {
                Ok(Some(len)) => len,
                // Only whole records are handed out.
                _ => break,
            };
            let rec = &input[pos..pos + len];
            pos += len;
            let progress = match hs.feed(rec) {
                Ok(p) => p,
                Err(e) => {
                    let alert = hs.take_output();
                    return HandshakeDone {
                        hs: None,
                        steps,
                        established: None,
                        error: Some((e, alert)),
                        rest: Vec::new(),
                    };
                }
            };
            let bytes = hs.take_output();
            match progress {
                Progress::InProgress => steps.push(Step {
                    len,
                    progress,
                    bytes,
                    head: None,
                }),
                Progress::FlightReady => {
                    let head = Some(encode_tls_unit(hs.flight_state()));
                    steps.push(Step {
                        len,
                        progress,
                        bytes,
                        head,
                    });
                }
                Progress::Complete => {
                    let Some(est) = hs.into_established() else {
                        return HandshakeDone {
                            hs: None,
                            steps,
                            established: None,
                            error: Some((TlsError::Failed, Vec::new())),
                            rest: Vec::new(),
                        };
                    };
                    // A whole record is fed at a time: nothing is left
                    // over inside the driver.
                    debug_assert!(est.leftover.is_empty());
                    steps.push(Step {
                        len,
                        progress,
                        bytes,
                        head: Some(encode_tls_unit(Some(&est.state))),
                    });
                    return HandshakeDone {
                        hs: None,
                        steps,
                        established: Some((est.state, est.resumed)),
                        error: None,
                        rest: input[pos..].to_vec(),
                    };
                }
            }
        }
        HandshakeDone {
            hs: Some(hs),
            steps,
            established: None,
            error: None,
            rest: Vec::new(),
        }
    }
}

/// A live connection's TLS layer.
pub(crate) struct LiveTls {
    phase: Phase,
    /// Client bytes not yet fed (part of a record, or records waiting for
    /// a handshake step that is out).
    raw: Vec<u8>,
    /// Client bytes taken so far (whole records fed).
    fed: u64,
    /// Handshake output the client has already had (a survivor's repeated
    /// HelloRetryRequest).
    skip_out: usize,
    /// The client sent close_notify.
    client_closed: bool,
    /// A handshake step to hand out.
    job: Option<HandshakeWork>,
    /// Its state could not be taken over: the connection is lost (reset),
    /// unlike one the client broke (alert and close).
    lost: bool,
    /// Plaintext handed out so far, as an offset in the HTTP layer's input
    /// (a promoted connection's starts after the input it was given).
    plain_at: u64,
    /// The HTTP input offset of the first client KeyUpdate (update
    /// requested) not answered yet: the answer goes out once every request
    /// that ended by there has its final reply sealed (`answer_owed_at`).
    owed_at: Option<u64>,
}

impl std::fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = match self.phase {
            Phase::Handshake(_) => "handshake",
            Phase::Busy => "handshake step out",
            Phase::Records(_) => "records",
            Phase::Failed => "failed",
        };
        f.debug_struct("LiveTls").field("phase", &phase).finish()
    }
}

impl LiveTls {
    /// A new connection: a handshake from its first byte, its steps
    /// handed out as jobs (`take_job`).
    pub fn new(config: &TlsServerConfig) -> Result<Self, TlsError> {
        Self::fresh(config, Vec::new(), 0)
    }

    /// A handshake over `raw` (a survivor's copy of the client's bytes),
    /// not sending again the first `skip_out` bytes of its output.
    pub(super) fn fresh(
        config: &TlsServerConfig,
        raw: Vec<u8>,
        skip_out: usize,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            phase: Phase::Handshake(Box::new(ServerHandshake::new(config)?)),
            raw,
            fed: 0,
            skip_out,
            client_closed: false,
            job: None,
            lost: false,
            plain_at: 0,
            owed_at: None,
        })
    }

    /// A connection continuing with record layer `rl` (a promoted mirror);
    /// `raw`: client bytes of a record not yet whole; `plain_at`: the HTTP
    /// input offset its plaintext continues at; `owed_at`: where a
    /// KeyUpdate the old node did not answer was asked (`rl` owes it).
    pub(super) fn records(
        rl: RecordLayer,
        raw: Vec<u8>,
        plain_at: u64,
        owed_at: Option<u64>,
    ) -> Self {
        Self {
            phase: Phase::Records(Box::new(rl)),
            raw,
            fed: 0,
            skip_out: 0,
            client_closed: false,
            job: None,
            lost: false,
            plain_at,
            owed_at,
        }
    }

    /// A connection that cannot go on (its state could not be taken over):
    /// aborted at its next drive.
    pub fn failed() -> Self {
        Self {
            phase: Phase::Failed,
            raw: Vec::new(),
            fed: 0,
            skip_out: 0,
            client_closed: false,
            job: None,
            lost: true,
            plain_at: 0,
            owed_at: None,
        }
    }

    /// The client sent close_notify: its end of the HTTP stream.
    pub fn client_closed(&self) -> bool {
        self.client_closed
    }

    /// Taken over without a usable state ([`LiveTls::failed`]).
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Whether client bytes wait in here (not yet a whole record, or
    /// waiting for a handshake step).
    pub fn has_partial_input(&self) -> bool {
        !self.raw.is_empty() || matches!(self.phase, Phase::Busy)
    }

    /// Whether more client bytes may be taken now: while a handshake step
    /// is out, at most a few records wait (a client has nothing to send
    /// before the server flight beyond its ClientHello).
    pub fn wants_input(&self) -> bool {
        self.raw.len() < 4 * MAX_RECORD
    }

    /// A handshake step to run off the round, if one is due.
    pub fn take_job(&mut self) -> Option<HandshakeWork> {
        self.job.take()
    }

    /// Take the client's bytes: plaintext to `plain`, the TLS layer's own
    /// output (to log and send, in order) to `out`. On an error the
    /// connection is over: `Err` carries the alert for the client, if any.
    pub fn read(
        &mut self,
        data: &[u8],
        plain: &mut Vec<u8>,
        out: &mut Vec<TlsOut>,
    ) -> Result<Read, Vec<u8>> {
        self.raw.extend_from_slice(data);
        let mut read = Read::default();
        let r = self.pump(None, plain, out, &mut read);
        self.settle(r, read)
    }

    /// A handshake step handed out came back: apply it, then go on with
    /// the bytes that came meanwhile.
    pub fn job_done(
        &mut self,
        done: HandshakeDone,
        plain: &mut Vec<u8>,
        out: &mut Vec<TlsOut>,
    ) -> Result<Read, Vec<u8>> {
        let mut read = Read::default();
        let r = self.pump(Some(done), plain, out, &mut read);
        self.settle(r, read)
    }

    fn settle(&mut self, r: Result<(), (TlsError, Vec<u8>)>, read: Read) -> Result<Read, Vec<u8>> {
        match r {
            Ok(()) => {
                self.client_closed |= read.eof;
                Ok(read)
            }
            Err((e, alert)) => {
                tracing::debug!(error = %e, "TLS connection failed");
                self.phase = Phase::Failed;
                self.raw.clear();
                self.job = None;
                Err(alert)
            }
        }
    }

    /// Apply a handshake step's result: its output as TLS units, in order.
    fn apply(
        &mut self,
        done: HandshakeDone,
        out: &mut Vec<TlsOut>,
        read: &mut Read,
    ) -> Result<(), (TlsError, Vec<u8>)> {
        for step in done.steps {
            self.fed += step.len as u64;
            let mut bytes = step.bytes;
            if self.skip_out > 0 {
                let n = self.skip_out.min(bytes.len());
                bytes.drain(..n);
                self.skip_out -= n;
            }
            match (step.progress, step.head) {
                // Nothing written (a record rustls only took in).
                (Progress::InProgress, _) if bytes.is_empty() => {}
                // A HelloRetryRequest: no secret yet.
                (Progress::InProgress, _) => out.push(TlsOut {
                    head: encode_tls_unit(None),
                    bytes: bytes.into(),
                    input_end: self.fed,
                }),
                // The flight with its state; the tickets (if any) with the
                // state after them: the owner's sending half from here.
                (_, Some(head)) => out.push(TlsOut {
                    head,
                    bytes: bytes.into(),
                    input_end: self.fed,
                }),
                (_, None) => return Err((TlsError::Failed, Vec::new())),
            }
        }
        if let Some(err) = done.error {
            return Err(err);
        }
        // Records after the Finished go before those that came meanwhile.
        if !done.rest.is_empty() {
            let mut raw = done.rest;
            raw.extend_from_slice(&self.raw);
            self.raw = raw;
        }
        self.phase = match (done.established, done.hs) {
            (Some((state, resumed)), _) => {
                read.completed = Some((resumed, state.suite()));
                tracing::debug!(resumed, suite = ?state.suite(), "TLS handshake complete");
                Phase::Records(Box::new(
                    RecordLayer::new(state).map_err(|e| (e, Vec::new()))?,
                ))
            }
            (None, Some(hs)) => Phase::Handshake(hs),
            (None, None) => return Err((TlsError::Failed, Vec::new())),
        };
        Ok(())
    }

    fn pump(
        &mut self,
        mut done: Option<HandshakeDone>,
        plain: &mut Vec<u8>,
        out: &mut Vec<TlsOut>,
        read: &mut Read,
    ) -> Result<(), (TlsError, Vec<u8>)> {
        if let Some(d) = done.take() {
            if !matches!(self.phase, Phase::Busy) {
                return Err((TlsError::Failed, Vec::new()));
            }
            self.apply(d, out, read)?;
        }
        match &mut self.phase {
            Phase::Busy | Phase::Failed => Ok(()),
            Phase::Handshake(_) => {
                // Every whole record here goes to one step.
                let mut n = 0;
                while let Some(len) = whole_record(&self.raw[n..]).map_err(|e| (e, Vec::new()))? {
                    n += len;
                }
                if n == 0 {
                    return Ok(());
                }
                let input: Vec<u8> = self.raw.drain(..n).collect();
                let Phase::Handshake(hs) = std::mem::replace(&mut self.phase, Phase::Busy) else {
                    unreachable!("in the handshake phase");
                };
                self.job = Some(HandshakeWork { hs, input });
                Ok(())
            }
            Phase::Records(rl) => {
                let mut pos = 0;
                let result = loop {
                    let len = match whole_record(&self.raw[pos..]) {
                        Ok(Some(len)) => len,
                        Ok(None) => break Ok(()),
                        Err(e) => break Err((e, Vec::new())),
                    };
                    let rec = &self.raw[pos..pos + len];
                    pos += len;
                    self.fed += len as u64;
                    let opened = match rl.open(rec) {
                        Ok(o) => o,
                        Err(e) => break Err((e, rl.take_output())),
                    };
                    plain.extend_from_slice(&opened.plaintext);
                    self.plain_at += opened.plaintext.len() as u64;
                    if rl.update_owed() && self.owed_at.is_none() {
                        // Answered after the replies to what came before
                        // (`answer_update`): the owner node may have
                        // sealed those ahead under the key before it.
                        self.owed_at = Some(self.plain_at);
                    }
                    for ev in opened.events {
                        match ev {
                            TlsEvent::CloseNotify => read.eof = true,
                            TlsEvent::KeyUpdate { update_requested } => {
                                tracing::debug!(update_requested, "client KeyUpdate")
                            }
                            TlsEvent::ClientFinished => {
                                tracing::debug!("client Finished verified (taken over)")
                            }
                            TlsEvent::UserCanceled => {}
                        }
                    }
                };
                self.raw.drain(..pos.min(self.raw.len()));
                result
            }
        }
    }

    /// The HTTP input offset of the client's first KeyUpdate still owed an
    /// answer: the caller sends it (`answer_update`) once every request
    /// that ended by there has its final reply sealed, and before any
    /// output for a later one.
    pub fn answer_owed_at(&self) -> Option<u64> {
        self.owed_at
    }

    /// Our answer to the client's KeyUpdate(s), as a TLS unit: the
    /// KeyUpdate record, logged with the state after it (the new sending
    /// key), `input_end` the client's ciphertext read so far — every
    /// KeyUpdate the client sent before that offset is answered by it,
    /// which is how the owner node tells which it answers. `None` if
    /// nothing is owed (or we have closed).
    pub(in crate::node::conn) fn answer_update(&mut self) -> Result<Option<TlsOut>, TlsError> {
        self.owed_at = None;
        let Phase::Records(rl) = &mut self.phase else {
            return Ok(None);
        };
        if !rl.answer_update()? {
            return Ok(None);
        }
        let bytes = rl.take_output();
        let state = rl.snapshot()?;
        tracing::debug!("our KeyUpdate: the client's request for one answered");
        Ok(Some(TlsOut {
            head: encode_tls_unit(Some(&state)),
            bytes: bytes.into(),
            input_end: self.fed,
        }))
    }

    /// Reserve the records of one HTTP output unit of `plain_len` bytes
    /// (and our close_notify after it when the connection closes there),
    /// sealed as the socket takes them ([`super::super::out::Sealing`]).
    /// Before the handshake is done nothing can be sent: `None`, the
    /// unit's bytes are dropped (a timeout's reply).
    pub fn defer(
        &mut self,
        plain_len: usize,
        close_after: bool,
    ) -> Result<Option<hotpair_tls::Deferred>, TlsError> {
        let Phase::Records(rl) = &mut self.phase else {
            return Ok(None);
        };
        rl.defer(plain_len, close_after).map(Some)
    }
}
