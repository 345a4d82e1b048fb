//! HTTPS across the crash of either node (issue 18), with the real binary
//! and a client nobody here wrote: a duplex lab serving HTTPS
//! (`lab up --tls`: port 443, a lab CA, an ECDSA P-256 certificate), curl
//! (OpenSSL) downloading 50 MB at 20 MB/s, the node SIGKILLed at 20 MB in:
//! curl exits 0 (no TLS alert, no record that fails to open), the file's
//! SHA-256 matches, the client's capture holds no RST from the service
//! address.

use hotpair_netns_tests::failover::{self, Victim};

#[test]
fn https_download_survives_primary_crash() {
    failover::download_tls("fo_tls_primary", Victim::Primary);
}

#[test]
fn https_download_survives_ingress_crash() {
    failover::download_tls("fo_tls_ingress", Victim::Ingress);
}
