//! The crate's errors: one enum for configuration (files, keys), one for a
//! connection (handshake, records, state decoding).

use std::path::PathBuf;

use thiserror::Error;

/// A server configuration that cannot be built.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad PEM in {what} {path}: {reason}")]
    BadPem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    #[error("private key {key} does not match certificate {cert}: {reason}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("unusable private key {path}: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("certificate {cert} is configured with no server name and is not the default")]
    NoServerName { cert: PathBuf },
    #[error("server name {0:?} is given to two certificates")]
    DuplicateName(String),
    #[error("no certificate configured")]
    NoCertificates,
    #[error("ticket key must be 32 bytes, got {0}")]
    TicketKeyLength(usize),
    #[error("the current and the previous ticket key are the same key")]
    TicketKeyReused,
    #[error(
        "ticket key rotation period {0} s: must be within 600 (10 minutes) ..= 604800 (a week)"
    )]
    TicketRotation(u64),
    #[error("no cipher suite configured")]
    NoCipherSuites,
    #[error("cipher suite {0} is listed twice")]
    DuplicateCipherSuite(&'static str),
    #[error("cipher suite {0} is not one the crypto provider offers")]
    UnsupportedCipherSuite(&'static str),
    #[error("rustls refused the configuration: {0}")]
    Rustls(rustls::Error),
}

/// A TLS alert description we send or receive (RFC 8446 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertDescription(pub u8);

impl AlertDescription {
    pub const CLOSE_NOTIFY: Self = Self(0);
    pub const UNEXPECTED_MESSAGE: Self = Self(10);
    pub const BAD_RECORD_MAC: Self = Self(20);
    pub const RECORD_OVERFLOW: Self = Self(22);
    pub const DECODE_ERROR: Self = Self(50);
    pub const DECRYPT_ERROR: Self = Self(51);
    pub const INTERNAL_ERROR: Self = Self(80);
    pub const USER_CANCELED: Self = Self(90);
}

/// A connection-level failure. Every variant that the peer caused has
/// already queued the alert that tells it so (see `RecordLayer::take_output`).
#[derive(Clone, Debug, Error, PartialEq)]
pub enum TlsError {
    #[error("record decryption failed (bad_record_mac)")]
    BadRecordMac,
    #[error("record too long: {0} bytes")]
    RecordOverflow(usize),
    #[error("unexpected message: {0}")]
    UnexpectedMessage(&'static str),
    #[error("malformed message: {0}")]
    Decode(&'static str),
    #[error("the client's Finished does not verify")]
    BadFinished,
    #[error("the peer sent a fatal alert ({0:?})")]
    PeerAlert(AlertDescription),
    #[error("the connection is closed")]
    Closed,
    #[error("the connection failed earlier")]
    Failed,
    #[error("a sequence number would wrap")]
    SequenceExhausted,
    #[error("the record layer holds part of a record: no state to hand over now")]
    MidRecord,
    #[error("replicated TLS state: {0}")]
    BadState(&'static str),
    #[error("handshake: {0}")]
    Handshake(rustls::Error),
    #[error("handshake result does not cross-check: {0}")]
    CrossCheck(&'static str),
    #[error("key derivation failed")]
    Crypto,
}
