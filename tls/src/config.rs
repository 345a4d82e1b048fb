//! The server's TLS configuration: certificates from PEM files chosen by
//! SNI, TLS 1.3 only, ALPN `http/1.1`, no 0-RTT, tickets sealed with the
//! key both nodes share, rustls over ring.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::ConfigError;
use crate::suite::Suite;
use crate::ticket::{system_clock, SharedTicketer, TicketKey};

/// One certificate chain and its key, and the server names it serves.
#[derive(Clone, Debug)]
pub struct CertSpec {
    /// PEM file: the end-entity certificate first, then its chain.
    pub cert: PathBuf,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Server names (exact, or `*.example.com` for one label). May be empty
    /// only for the first certificate, the default.
    pub names: Vec<String>,
}

/// Everything the TLS server is configured with.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// The first is the default: served when the client names no server
    /// or one no certificate is given for.
    pub certs: Vec<CertSpec>,
    /// The master the sealing keys are derived from; shared by both nodes.
    pub ticket_key: TicketKey,
    /// The master before the last master rotation: its epoch keys still
    /// open tickets.
    pub previous_ticket_key: Option<TicketKey>,
    /// Seconds each epoch's sealing key seals new tickets (the epoch is
    /// `unix_time / ticket_rotation_secs`, the same on both nodes).
    pub ticket_rotation_secs: u64,
    /// The TLS 1.3 cipher suites served, in the server's order of
    /// preference (it picks the first the client offers). `None`: all of
    /// them, in rustls' default order, and the client's preference wins
    /// (rustls' default).
    pub cipher_suites: Option<Vec<Suite>>,
}

/// The server configuration every connection's handshake starts from.
#[derive(Clone, Debug)]
pub struct TlsServerConfig {
    base: rustls::ServerConfig,
}

/// The ALPN protocol we speak.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

impl TlsServerConfig {
    /// Read the certificates and keys, check each key against its
    /// certificate, and build the configuration.
    pub fn from_settings(settings: &TlsSettings) -> Result<Self, ConfigError> {
        let mut loaded = Vec::with_capacity(settings.certs.len());
        for spec in &settings.certs {
            let cert_pem = read(&spec.cert, "certificate")?;
            let key_pem = read(&spec.key, "private key")?;
            loaded.push((
                certified_key(&cert_pem, &spec.cert, &key_pem, &spec.key)?,
                spec.names.clone(),
                spec.cert.clone(),
            ));
        }
        let ticketer = SharedTicketer::with_rotation(
            &settings.ticket_key,
            settings.previous_ticket_key.as_ref(),
            settings.ticket_rotation_secs,
            system_clock(),
        )?;
        Self::build(loaded, ticketer, settings.cipher_suites.as_deref())
    }

    /// As `from_settings`, from PEM bytes (the first entry is the default),
    /// the ticket keys rotating every `DEFAULT_TICKET_ROTATION_SECS`.
    /// Each entry: certificate PEM, key PEM, names.
    pub fn from_pem(
        certs: &[(&[u8], &[u8], Vec<String>)],
        ticket_key: &TicketKey,
        previous_ticket_key: Option<&TicketKey>,
    ) -> Result<Self, ConfigError> {
        let mut loaded = Vec::with_capacity(certs.len());
        for (i, (cert, key, names)) in certs.iter().enumerate() {
            let label = PathBuf::from(format!("<certificate {i}>"));
            loaded.push((
                certified_key(cert, &label, key, &label)?,
                names.clone(),
                label,
            ));
        }
        Self::build(
            loaded,
            SharedTicketer::new(ticket_key, previous_ticket_key)?,
            None,
        )
    }

    fn build(
        loaded: Vec<(CertifiedKey, Vec<String>, PathBuf)>,
        ticketer: SharedTicketer,
        suites: Option<&[Suite]>,
    ) -> Result<Self, ConfigError> {
        let resolver = SniResolver::new(loaded)?;
        let mut provider = ring_provider();
        if let Some(suites) = suites {
            provider.cipher_suites = choose_suites(&provider.cipher_suites, suites)?;
        }
        let provider = Arc::new(provider);
        let mut base = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(ConfigError::Rustls)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        base.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        // A configured list is the server's order of preference; without
        // one rustls follows the client's, as it does by default.
        base.ignore_client_order = suites.is_some();
        // 0-RTT data is replayable and would reach the application before
        // the handshake is logged: refused.
        base.max_early_data_size = 0;
        // Resumption is stateless (tickets under the shared key), so either
        // node resumes a session; no per-node session cache.
        base.ticketer = Arc::new(ticketer);
        base.session_storage = Arc::new(NoServerSessionStorage {});
        // The handshake driver cross-checks its sequence numbers and keys
        // against rustls' own when the handshake ends.
        base.enable_secret_extraction = true;
        Ok(Self { base })
    }

    /// A configuration for one connection, with its own key log (rustls
    /// reports secrets through the configuration's `KeyLog`).
    pub(crate) fn for_connection(
        &self,
        key_log: Arc<dyn rustls::KeyLog>,
    ) -> Arc<rustls::ServerConfig> {
        let mut c = self.base.clone();
        c.key_log = key_log;
        Arc::new(c)
    }
}

/// The provider's TLS 1.3 suites that `want` names, in `want`'s order.
fn choose_suites(
    have: &[rustls::SupportedCipherSuite],
    want: &[Suite],
) -> Result<Vec<rustls::SupportedCipherSuite>, ConfigError> {
    if want.is_empty() {
        return Err(ConfigError::NoCipherSuites);
    }
    let mut out = Vec::with_capacity(want.len());
    for (i, s) in want.iter().enumerate() {
        if want[..i].contains(s) {
            return Err(ConfigError::DuplicateCipherSuite(s.name()));
        }
        let found = have
            .iter()
            .find(|c| Suite::from_rustls(c.suite()) == Some(*s))
            .ok_or(ConfigError::UnsupportedCipherSuite(s.name()))?;
        out.push(*found);
    }
    Ok(out)
}

/// rustls over ring. rustls 0.23.48 deprecated ring's provider because ring
/// has no post-quantum key exchange (X25519MLKEM768, aws-lc-rs only); we
/// keep ring for its build (docs/architecture.md, docs/tls.md) and accept
/// classical X25519/P-256/P-384 key exchange for now.
#[allow(deprecated)]
pub(crate) fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn certified_key(
    cert_pem: &[u8],
    cert_path: &Path,
    key_pem: &[u8],
    key_path: &Path,
) -> Result<CertifiedKey, ConfigError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::BadPem {
            what: "certificate",
            path: cert_path.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(ConfigError::NoCertificate(cert_path.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| ConfigError::BadPem {
        what: "private key",
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    let signing = ring_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| ConfigError::BadKey {
            path: key_path.to_owned(),
            reason: e.to_string(),
        })?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) => Ok(ck),
        Err(e) => Err(ConfigError::KeyMismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Chooses a certificate by the client's server name: exact names first,
/// then a `*.` name for the first label's parent, then the default.
#[derive(Debug)]
struct SniResolver {
    exact: BTreeMap<String, Arc<CertifiedKey>>,
    wildcard: BTreeMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn new(loaded: Vec<(CertifiedKey, Vec<String>, PathBuf)>) -> Result<Self, ConfigError> {
        let mut exact = BTreeMap::new();
        let mut wildcard = BTreeMap::new();
        let mut default = None;
        for (i, (ck, names, path)) in loaded.into_iter().enumerate() {
            let ck = Arc::new(ck);
            if i == 0 {
                default = Some(ck.clone());
            } else if names.is_empty() {
                return Err(ConfigError::NoServerName { cert: path });
            }
            for name in names {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let (map, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut wildcard, parent.to_owned()),
                    None => (&mut exact, name.clone()),
                };
                if map.insert(key, ck.clone()).is_some() {
                    return Err(ConfigError::DuplicateName(name));
                }
            }
        }
        Ok(Self {
            exact,
            wildcard,
            default: default.ok_or(ConfigError::NoCertificates)?,
        })
    }

    fn choose(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) else {
            return self.default.clone();
        };
        if let Some(ck) = self.exact.get(&name) {
            return ck.clone();
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(ck) = self.wildcard.get(parent) {
                return ck.clone();
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.choose(client_hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ck() -> CertifiedKey {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        certified_key(
            cert.pem().as_bytes(),
            Path::new("c"),
            key.serialize_pem().as_bytes(),
            Path::new("k"),
        )
        .unwrap()
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_resolver_prefers_exact_then_wildcard_then_default() {
        let r = SniResolver::new(vec![
            (ck(), vec![], "d".into()),
            (ck(), names(&["a.test", "www.a.test"]), "a".into()),
            (ck(), names(&["*.a.test"]), "w".into()),
        ])
        .unwrap();
        let is = |name: Option<&str>, want: &Arc<CertifiedKey>| {
            assert!(Arc::ptr_eq(&r.choose(name), want), "{name:?}");
        };
        let (a, w) = (r.exact["a.test"].clone(), r.wildcard["a.test"].clone());
        is(None, &r.default);
        is(Some("a.test"), &a);
        is(Some("A.Test."), &a);
        is(Some("www.a.test"), &a);
        is(Some("x.a.test"), &w);
        is(Some("y.x.a.test"), &r.default); // a wildcard covers one label
        is(Some("other.test"), &r.default);
        assert!(!Arc::ptr_eq(&a, &w) && !Arc::ptr_eq(&a, &r.default));
    }

    #[test]
    fn bad_configurations_are_refused_with_a_reason() {
        assert!(matches!(
            SniResolver::new(vec![]),
            Err(ConfigError::NoCertificates)
        ));
        assert!(matches!(
            SniResolver::new(vec![(ck(), vec![], "d".into()), (ck(), vec![], "e".into())]),
            Err(ConfigError::NoServerName { .. })
        ));
        assert!(matches!(
            SniResolver::new(vec![
                (ck(), names(&["a.test"]), "d".into()),
                (ck(), names(&["A.test"]), "e".into())
            ]),
            Err(ConfigError::DuplicateName(n)) if n == "a.test"
        ));
    }
}
