//! A real browser across a failover (issue 18): headless Chromium in the
//! client namespace loads an HTTPS page from the service address (a duplex
//! lab, `lab up --tls`, the lab certificate pinned with
//! `--ignore-certificate-errors-spki-list`); its script downloads 40 MB with
//! `fetch()`, read at 20 MB/s, and writes the SHA-256 of what arrived
//! (`crypto.subtle.digest`) into the DOM. The primary is SIGKILLed 10 MiB
//! in: the hash must be the file's, the capture must hold no RST from the
//! service address. The scenario lives in `hotpair_netns_tests::browser`.

use hotpair_netns_tests::browser;
use hotpair_netns_tests::failover::Victim;

#[test]
fn chromium_https_download_survives_primary_crash() {
    browser::download_across_kill("fo_browser_primary", Victim::Primary);
}
