//! The configuration from PEM files, and its refusals.

mod common;

use std::path::PathBuf;

use common::*;
use hotpair_tls::{CertSpec, ConfigError, Suite, TlsServerConfig, TlsSettings};

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> Dir {
    let p = std::env::temp_dir().join(format!("hotpair-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    Dir(p)
}

fn settings(certs: Vec<CertSpec>) -> TlsSettings {
    TlsSettings {
        certs,
        ticket_key: key(1),
        previous_ticket_key: Some(key(2)),
        ticket_rotation_secs: hotpair_tls::DEFAULT_TICKET_ROTATION_SECS,
        cipher_suites: None,
    }
}

#[test]
fn certificates_and_keys_from_pem_files_serve_a_client() {
    let pki = pki();
    let d = dir("ok");
    let mut specs = Vec::new();
    for (i, (cert, key, _)) in pki.certs.iter().enumerate() {
        let (c, k) = (d.0.join(format!("c{i}.pem")), d.0.join(format!("k{i}.pem")));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        let names = ["", "a.test", "b.test", "*.wild.test"][i];
        specs.push(CertSpec {
            cert: c,
            key: k,
            names: if names.is_empty() {
                vec![]
            } else {
                vec![names.to_string()]
            },
        });
    }
    let cfg = TlsServerConfig::from_settings(&settings(specs)).unwrap();
    let mut c = client(&client_config(&pki, None), "b.test");
    handshake(&cfg, &mut c);
    assert_eq!(c.peer_certificates().unwrap()[0], pki.certs[2].2);
}

/// The suite a client offering all three (AES-256 first, rustls' order)
/// gets from a server configured with `suites`.
fn negotiated_with(suites: Option<Vec<Suite>>) -> Result<Suite, ConfigError> {
    let pki = pki();
    let d = dir(&format!(
        "suites-{}",
        suites.as_ref().map_or(0, |s| s.len())
    ));
    let (c, k) = (d.0.join("c.pem"), d.0.join("k.pem"));
    std::fs::write(&c, &pki.certs[0].0).unwrap();
    std::fs::write(&k, &pki.certs[0].1).unwrap();
    let mut s = settings(vec![CertSpec {
        cert: c,
        key: k,
        names: vec![],
    }]);
    s.cipher_suites = suites;
    let cfg = TlsServerConfig::from_settings(&s)?;
    let mut client = client(&client_config(&pki, None), "default.test");
    handshake(&cfg, &mut client);
    let got = client.negotiated_cipher_suite().unwrap().suite();
    Ok(Suite::from_iana(u16::from(got)).unwrap())
}

#[test]
fn the_configured_cipher_suites_are_the_servers_preference() {
    // Unconfigured: the client's first choice.
    assert_eq!(negotiated_with(None).unwrap(), Suite::Aes256GcmSha384);
    // One suite: that one, whatever the client prefers.
    assert_eq!(
        negotiated_with(Some(vec![Suite::Aes128GcmSha256])).unwrap(),
        Suite::Aes128GcmSha256
    );
    // Several: the server's order wins over the client's.
    assert_eq!(
        negotiated_with(Some(vec![
            Suite::Chacha20Poly1305Sha256,
            Suite::Aes256GcmSha384
        ]))
        .unwrap(),
        Suite::Chacha20Poly1305Sha256
    );
    assert!(matches!(
        negotiated_with(Some(vec![])),
        Err(ConfigError::NoCipherSuites)
    ));
    assert!(matches!(
        negotiated_with(Some(vec![Suite::Aes128GcmSha256, Suite::Aes128GcmSha256])),
        Err(ConfigError::DuplicateCipherSuite("TLS_AES_128_GCM_SHA256"))
    ));
}

#[test]
fn suites_are_known_by_their_iana_names() {
    for s in Suite::ALL {
        assert_eq!(Suite::from_name(s.name()), Some(s));
    }
    assert_eq!(
        Suite::from_name("tls_aes_128_gcm_sha256"),
        Some(Suite::Aes128GcmSha256)
    );
    assert_eq!(Suite::from_name("TLS_AES_128_CCM_SHA256"), None);
    assert_eq!(Suite::from_name("AES128-GCM-SHA256"), None);
}

#[test]
fn bad_files_are_refused_with_a_clear_error() {
    let pki = pki();
    let d = dir("bad");
    let write = |name: &str, body: &[u8]| {
        let p = d.0.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let cert0 = write("c0.pem", pki.certs[0].0.as_bytes());
    let key0 = write("k0.pem", pki.certs[0].1.as_bytes());
    let key1 = write("k1.pem", pki.certs[1].1.as_bytes());
    let garbage = write(
        "garbage.pem",
        b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    let empty = write("empty.pem", b"");
    let one = |cert: &PathBuf, key: &PathBuf| {
        TlsServerConfig::from_settings(&settings(vec![CertSpec {
            cert: cert.clone(),
            key: key.clone(),
            names: vec![],
        }]))
    };
    let e = one(&d.0.join("missing.pem"), &key0).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    let e = one(&garbage, &key0).unwrap_err();
    assert!(matches!(e, ConfigError::BadPem { .. }), "{e}");
    let e = one(&empty, &key0).unwrap_err();
    assert!(matches!(e, ConfigError::NoCertificate(_)), "{e}");
    let e = one(&cert0, &empty).unwrap_err();
    assert!(matches!(e, ConfigError::BadPem { .. }), "{e}");
    // A key that is not the certificate's.
    let e = one(&cert0, &key1).unwrap_err();
    assert!(matches!(e, ConfigError::KeyMismatch { .. }), "{e}");
    assert!(e.to_string().contains("k1.pem"), "{e}");
    // The certificate file given as the key.
    let e = one(&cert0, &cert0).unwrap_err();
    assert!(matches!(e, ConfigError::BadPem { .. }), "{e}");
    let e = TlsServerConfig::from_settings(&settings(vec![])).unwrap_err();
    assert!(matches!(e, ConfigError::NoCertificates), "{e}");
    // Both ticket keys the same.
    let mut s = settings(vec![CertSpec {
        cert: cert0,
        key: key0,
        names: vec![],
    }]);
    s.previous_ticket_key = Some(key(1));
    let e = TlsServerConfig::from_settings(&s).unwrap_err();
    assert!(matches!(e, ConfigError::TicketKeyReused), "{e}");
    // A rotation period out of bounds, named with the bounds.
    s.previous_ticket_key = None;
    s.ticket_rotation_secs = 59;
    let e = TlsServerConfig::from_settings(&s).unwrap_err();
    assert!(matches!(e, ConfigError::TicketRotation(59)), "{e}");
    assert!(
        e.to_string().contains(&format!(
            "{} (10 minutes) ..= {} (a week)",
            hotpair_tls::MIN_TICKET_ROTATION_SECS,
            hotpair_tls::MAX_TICKET_ROTATION_SECS
        )),
        "{e}"
    );
}
