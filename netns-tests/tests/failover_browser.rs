//! A real browser across a failover (issue 18): headless Chromium in the
//! client namespace loads an HTTPS page from the service address (a duplex
//! lab, `lab up --tls`, the lab certificate pinned with
//! `--ignore-certificate-errors-spki-list`); its script downloads 40 MB with
//! `fetch()`, read at 20 MB/s, and writes the SHA-256 of what arrived
//! (`crypto.subtle.digest`) into the DOM. The primary, or in the second
//! test the owner, is SIGKILLed 10 MiB in: the hash must be the file's, the
//! capture must hold no RST from the service address. The scenario lives
//! in `hotpair_netns_tests::browser`, one body for both victims.

use hotpair_netns_tests::browser;
use hotpair_netns_tests::failover::Victim;

#[test]
fn chromium_https_download_survives_primary_crash() {
    browser::download_across_kill("fo_browser_primary", Victim::Primary);
}

/// The owner dies: it held the address (the client's frames reached the
/// primary through it) and acknowledged the log, so the primary, stalled on
/// the unacknowledged log, claims the address after the heartbeat timeout
/// and serves alone; the page must see only that pause.
#[test]
fn chromium_https_download_survives_owner_crash() {
    browser::download_across_kill("fo_browser_owner", Victim::Owner);
}
