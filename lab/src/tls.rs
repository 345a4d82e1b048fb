//! `lab up --tls`: a lab CA and a certificate for the service addresses
//! and `hotpair.test` (ECDSA P-256), made at `lab up` with rcgen, and the
//! ticket key both nodes share. The CA certificate is what a client
//! trusts (`curl --cacert PREFIX-STATE/tls/ca.pem`); its key is not kept.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};

/// The name the lab's certificate is for (besides the addresses).
pub const TLS_NAME: &str = "hotpair.test";
/// The port an HTTPS lab's addresses serve HTTPS on (beside plain HTTP
/// on [`crate::SERVICE_PORT`]: both on the one engine of each address).
pub const TLS_PORT: u16 = 443;

/// Where a lab's TLS files are.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("tls")
}

pub fn ca_path(state_dir: &Path) -> PathBuf {
    dir(state_dir).join("ca.pem")
}

/// The `[tls]` table of every node's config: HTTPS on [`TLS_PORT`] of
/// every address, besides its HTTP port; `suites`: its `cipher_suites`.
pub fn config_section(state_dir: &Path, suites: Option<&[String]>) -> String {
    let d = dir(state_dir);
    let mut text = format!(
        "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\nport = {TLS_PORT}\nticket_key_file = \"{}\"\n",
        d.join("cert.pem").display(),
        d.join("key.pem").display(),
        d.join("ticket.key").display()
    );
    if let Some(s) = suites {
        let list: Vec<String> = s
            .iter()
            .map(|n| toml::Value::String(n.clone()).to_string())
            .collect();
        text.push_str(&format!("cipher_suites = [{}]\n", list.join(", ")));
    }
    text
}

/// Write the CA, the server certificate and key, and the ticket key.
pub fn generate(state_dir: &Path, addresses: &[String]) -> Result<()> {
    let d = dir(state_dir);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("a CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hotpair lab CA");
    let ca = ca_params.self_signed(&ca_key).context("the lab CA")?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("a server key")?;
    let mut names = vec![TLS_NAME.to_owned()];
    names.extend(addresses.iter().cloned());
    let cert = CertificateParams::new(names)
        .context("server certificate parameters")?
        .signed_by(&key, &ca, &ca_key)
        .context("the server certificate")?;
    let write = |name: &str, text: &str, private: bool| -> Result<()> {
        let p = d.join(name);
        if private {
            hotpair::secure::write_private(&p, text, true)
        } else {
            std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
        }
    };
    write("ca.pem", &ca.pem(), false)?;
    write("cert.pem", &cert.pem(), false)?;
    write("key.pem", &key.serialize_pem(), true)?;
    // Any 32 random bytes: a fresh private key is one.
    let (ticket, _) = hotpair::secure::generate_keypair()?;
    write(
        "ticket.key",
        &format!("{}\n", hotpair::secure::hex(&ticket)),
        true,
    )?;
    Ok(())
}
