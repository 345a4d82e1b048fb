//! `[tls]`: HTTPS (TLS 1.3) on the service addresses (docs/tls.md). Every
//! address serves plain HTTP on its own port and, with `[tls]`, HTTPS on
//! `[tls] port` too — both on the one engine of the address; a
//! connection speaks TLS by the port it reached.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use hotpair_tls::{CertSpec, Suite, TicketKey, TlsServerConfig, TlsSettings};
use serde::Deserialize;

use super::Config;

/// `[tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM: the certificate, then its chain (the default certificate).
    pub cert: PathBuf,
    /// PEM: its private key.
    pub key: PathBuf,
    /// Every address serves HTTPS on this port, beside HTTP on its own.
    #[serde(default = "default_tls_port")]
    pub port: u16,
    /// 64 hex digits, the same on both nodes: the master the session
    /// ticket keys are derived from, so a client resumes on either node
    /// (`hotpair pair` and `hotpair tls new-ticket-key` write one).
    pub ticket_key_file: PathBuf,
    /// The master before the last master rotation: still opens tickets.
    #[serde(default)]
    pub previous_ticket_key_file: Option<PathBuf>,
    /// Seconds each epoch's ticket key seals new tickets: the key rotates
    /// by itself, both nodes alike (the epoch is the Unix time over it).
    #[serde(default = "default_ticket_rotation")]
    pub ticket_rotation_secs: u64,
    /// More certificates, chosen by the name the client asks for (SNI).
    #[serde(default)]
    pub sni: Vec<SniSection>,
    /// The TLS 1.3 cipher suites served, by IANA name, in the server's
    /// order of preference. Unset: all three in rustls' order, the
    /// client's preference chosen.
    #[serde(default)]
    pub cipher_suites: Option<Vec<String>>,
}

/// `[[tls.sni]]`: a certificate for some server names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniSection {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Exact names, or `*.example.com` (one label).
    pub names: Vec<String>,
}

pub fn default_tls_port() -> u16 {
    443
}

pub fn default_ticket_rotation() -> u64 {
    hotpair_tls::DEFAULT_TICKET_ROTATION_SECS
}

/// `tls.cipher_suites`: IANA names, each known and listed once (also
/// `lab up --tls-cipher-suites`, checked before a lab is built).
pub fn parse_cipher_suites(names: &[String]) -> Result<Vec<Suite>> {
    let known = || {
        Suite::ALL
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if names.is_empty() {
        bail!(
            "tls.cipher_suites: empty; list at least one of {} (or leave the key out for all)",
            known()
        );
    }
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let Some(s) = Suite::from_name(n) else {
            bail!(
                "tls.cipher_suites: unknown TLS 1.3 cipher suite {n:?}; known: {}",
                known()
            );
        };
        if out.contains(&s) {
            bail!("tls.cipher_suites: {} is listed twice", s.name());
        }
        out.push(s);
    }
    Ok(out)
}

/// A ticket key file: 64 hex digits (whitespace around them ignored).
fn read_ticket_key(path: &Path, key: &str) -> Result<TicketKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{key}: reading {}", path.display()))?;
    let bytes = crate::secure::parse_key(&text)
        .with_context(|| format!("{key}: {} (64 hex digits)", path.display()))?;
    TicketKey::new(&bytes).with_context(|| format!("{key}: {}", path.display()))
}

impl Config {
    /// The TLS server configuration, read and checked (certificates,
    /// keys against their certificates, ticket keys); `None` without
    /// `[tls]`.
    pub(super) fn load_tls(&self) -> Result<Option<Arc<TlsServerConfig>>> {
        let Some(t) = &self.tls else { return Ok(None) };
        if t.port == 0 {
            bail!("tls.port: must be within 1..=65535");
        }
        let ports = self.service_ports();
        if ports.contains(&t.port) {
            bail!(
                "tls.port: {} is also an address's HTTP port ({ports:?}): every address serves HTTP on its port and HTTPS on tls.port, so they must differ (the HTTP port defaults to 80, tls.port to 443)",
                t.port
            );
        }
        if self.link.as_ref().is_some_and(|l| l.danger_plaintext) {
            // The logged TLS state is the connection's keys: it crosses
            // only a secured link.
            bail!("tls: [link] danger_plaintext would send every HTTPS connection's keys in the clear; HTTPS needs the secured link");
        }
        if hotpair_tls::check_rotation(t.ticket_rotation_secs).is_err() {
            bail!(
                "tls.ticket_rotation_secs: {} is out of bounds: {} (10 minutes) to {} (a week); the default is {} (an hour)",
                t.ticket_rotation_secs,
                hotpair_tls::MIN_TICKET_ROTATION_SECS,
                hotpair_tls::MAX_TICKET_ROTATION_SECS,
                hotpair_tls::DEFAULT_TICKET_ROTATION_SECS
            );
        }
        for (i, s) in t.sni.iter().enumerate() {
            if s.names.is_empty() {
                bail!("tls.sni[{i}].names: at least one server name");
            }
        }
        let cipher_suites = t
            .cipher_suites
            .as_deref()
            .map(parse_cipher_suites)
            .transpose()?;
        let mut certs = vec![CertSpec {
            cert: t.cert.clone(),
            key: t.key.clone(),
            names: Vec::new(),
        }];
        certs.extend(t.sni.iter().map(|s| CertSpec {
            cert: s.cert.clone(),
            key: s.key.clone(),
            names: s.names.clone(),
        }));
        let settings = TlsSettings {
            certs,
            ticket_key: read_ticket_key(&t.ticket_key_file, "tls.ticket_key_file")?,
            previous_ticket_key: t
                .previous_ticket_key_file
                .as_deref()
                .map(|p| read_ticket_key(p, "tls.previous_ticket_key_file"))
                .transpose()?,
            ticket_rotation_secs: t.ticket_rotation_secs,
            cipher_suites,
        };
        let server = TlsServerConfig::from_settings(&settings).context("[tls]")?;
        Ok(Some(Arc::new(server)))
    }

    /// The files of `[tls]` that hold secrets (private keys, ticket keys).
    pub(super) fn tls_secret_files(&self) -> Vec<(PathBuf, &'static str)> {
        let Some(t) = &self.tls else {
            return Vec::new();
        };
        let mut files = vec![
            (t.key.clone(), "tls.key"),
            (t.ticket_key_file.clone(), "tls.ticket_key_file"),
        ];
        if let Some(p) = &t.previous_ticket_key_file {
            files.push((p.clone(), "tls.previous_ticket_key_file"));
        }
        files.extend(t.sni.iter().map(|s| (s.key.clone(), "tls.sni.key")));
        files
    }

    /// The port every address serves HTTPS on, if any.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(|t| t.port)
    }

    fn service_ports(&self) -> Vec<u16> {
        let mut p: Vec<u16> = self
            .service
            .iter()
            .map(|s| s.port)
            .chain(self.addresses.iter().map(|a| a.port))
            .collect();
        p.sort_unstable();
        p.dedup();
        p
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = "[node]\nname = \"n1\"\ntap = \"t\"\nmac = \"02:00:00:00:00:01\"\n\
                        [service]\naddress = \"10.0.0.10\"\nport = 80\n";

    fn tls(dir: &std::path::Path, port: u16, ticket: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let t = dir.join("ticket.key");
        std::fs::write(&t, ticket).unwrap();
        // The key files exist (mode 0600, as the secret-file check wants);
        // the certificate does not.
        let k = dir.join("missing-key.pem");
        std::fs::write(&k, "not a key").unwrap();
        for f in [&t, &k] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        format!(
            "[tls]\ncert = \"{d}/missing-cert.pem\"\nkey = \"{d}/missing-key.pem\"\nport = {port}\nticket_key_file = \"{t}\"\n",
            d = dir.display(),
            t = t.display()
        )
    }

    fn load_err(text: &str, dir: &std::path::Path) -> String {
        let p = dir.join("node.toml");
        std::fs::write(&p, text).unwrap();
        format!("{:#}", Config::load(&p).unwrap_err())
    }

    #[test]
    fn tls_is_refused_with_the_key_named() {
        let dir = std::env::temp_dir().join(format!("hotpair-tls-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good_key = "ab".repeat(32);
        // The TLS port is the address's HTTP port: which one speaks TLS?
        let e = load_err(&format!("{BASE}{}", tls(&dir, 80, &good_key)), &dir);
        assert!(
            e.contains("tls.port: 80 is also an address's HTTP port"),
            "{e}"
        );
        // The keys would cross a plaintext link.
        let e = load_err(
            &format!(
                "{BASE}[link]\ndanger_plaintext = true\n{}",
                tls(&dir, 443, &good_key)
            ),
            &dir,
        );
        assert!(e.contains("danger_plaintext"), "{e}");
        // A ticket key that is not 64 hex digits.
        let e = load_err(&format!("{BASE}{}", tls(&dir, 443, "xyz")), &dir);
        assert!(e.contains("tls.ticket_key_file"), "{e}");
        // Cipher suites: an unknown name, an empty list, one listed twice.
        // The `[tls]` table with one more line.
        let with = |line: &str| format!("{BASE}{}{line}\n", tls(&dir, 443, &good_key));
        let with_suites = |list: &str| with(&format!("cipher_suites = {list}"));
        let e = load_err(&with_suites("[\"TLS_AES_128_CCM_SHA256\"]"), &dir);
        assert!(
            e.contains("unknown TLS 1.3 cipher suite \"TLS_AES_128_CCM_SHA256\"")
                && e.contains("known: TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256"),
            "{e}"
        );
        let e = load_err(&with_suites("[]"), &dir);
        assert!(e.contains("tls.cipher_suites: empty"), "{e}");
        let e = load_err(
            &with_suites("[\"TLS_AES_128_GCM_SHA256\", \"tls_aes_128_gcm_sha256\"]"),
            &dir,
        );
        assert!(
            e.contains("tls.cipher_suites: TLS_AES_128_GCM_SHA256 is listed twice"),
            "{e}"
        );
        // A rotation period out of bounds, either way, or not a number.
        for bad in ["0", "599", "604801"] {
            let e = load_err(&with(&format!("ticket_rotation_secs = {bad}")), &dir);
            assert!(
                e.contains(&format!(
                    "tls.ticket_rotation_secs: {bad} is out of bounds: 600 (10 minutes) to 604800 (a week)"
                )),
                "{e}"
            );
        }
        let e = load_err(&with("ticket_rotation_secs = \"1h\""), &dir);
        assert!(e.contains("ticket_rotation_secs"), "{e}");
        // The certificate file is missing: named.
        let e = load_err(&format!("{BASE}{}", tls(&dir, 443, &good_key)), &dir);
        assert!(e.contains("missing-cert.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
