//! Figures for docs/tls.md: the server side of a handshake through our
//! driver against plain rustls with the same certificate and ticketer, and
//! seal/open throughput of our record layer in each suite.
//!
//!     cargo run --release -p hotpair-tls --example throughput

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hotpair_tls::{Progress, RecordLayer, ServerHandshake, SharedTicketer};
use rustls::crypto::ring::cipher_suite as cs;
use rustls::pki_types::pem::PemObject;

const HANDSHAKES: u32 = 300;

fn plain_rustls(pki: &Pki) -> Arc<rustls::ServerConfig> {
    let pk = rustls::pki_types::PrivateKeyDer::from_pem_slice(pki.certs[1].1.as_bytes()).unwrap();
    let mut sc = rustls::ServerConfig::builder_with_provider(Arc::new(client_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.certs[1].2.clone()], pk)
        .unwrap();
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    sc.ticketer = Arc::new(SharedTicketer::new(&key(1), None).unwrap());
    Arc::new(sc)
}

/// Server time of one handshake through `ServerHandshake`.
fn ours(server: &hotpair_tls::TlsServerConfig, c: &mut rustls::ClientConnection) -> Duration {
    let ch = from_client(c);
    let t = Instant::now();
    let mut hs = ServerHandshake::new(server).unwrap();
    assert_eq!(hs.feed(&ch).unwrap(), Progress::FlightReady);
    let flight = hs.take_output();
    let mut spent = t.elapsed();
    to_client(c, &flight).unwrap();
    let fin = from_client(c);
    let t = Instant::now();
    assert_eq!(hs.feed(&fin).unwrap(), Progress::Complete);
    let tickets = hs.take_output();
    spent += t.elapsed();
    to_client(c, &tickets).unwrap();
    spent
}

/// Server time of one handshake in a plain `rustls::ServerConnection`.
fn plain(cfg: &Arc<rustls::ServerConfig>, c: &mut rustls::ClientConnection) -> Duration {
    let mut spent = Duration::ZERO;
    let mut s = None;
    while c.is_handshaking() || c.wants_write() {
        let input = from_client(c);
        let t = Instant::now();
        let s = s.get_or_insert_with(|| rustls::ServerConnection::new(cfg.clone()).unwrap());
        s.read_tls(&mut &input[..]).unwrap();
        s.process_new_packets().unwrap();
        let mut out = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut out).unwrap();
        }
        spent += t.elapsed();
        to_client(c, &out).unwrap();
    }
    spent
}

fn main() {
    let pki = pki();
    let server = server_config(&pki, 1, None);
    let plain_cfg = plain_rustls(&pki);
    for resumed in [false, true] {
        let (shared_ours, shared_plain) = (client_config(&pki, None), client_config(&pki, None));
        let (mut t_ours, mut t_plain) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..HANDSHAKES {
            let pick = |shared: &Arc<rustls::ClientConfig>| {
                if resumed {
                    shared.clone()
                } else {
                    client_config(&pki, None)
                }
            };
            let mut c = client(&pick(&shared_ours), "a.test");
            t_ours += ours(&server, &mut c);
            let mut c = client(&pick(&shared_plain), "a.test");
            t_plain += plain(&plain_cfg, &mut c);
        }
        println!(
            "{} handshake, server side: ours {:.0} µs, plain rustls {:.0} µs",
            if resumed { "resumed" } else { "full" },
            t_ours.as_secs_f64() * 1e6 / f64::from(HANDSHAKES),
            t_plain.as_secs_f64() * 1e6 / f64::from(HANDSHAKES),
        );
    }
    let mib = vec![7u8; 1 << 20];
    for (name, suite) in [
        ("AES-128-GCM", cs::TLS13_AES_128_GCM_SHA256),
        ("AES-256-GCM", cs::TLS13_AES_256_GCM_SHA384),
        ("ChaCha20-Poly1305", cs::TLS13_CHACHA20_POLY1305_SHA256),
    ] {
        let mut c = client(&client_config(&pki, Some(suite)), "a.test");
        let est = handshake(&server, &mut c);
        let mut rl = RecordLayer::new(est.state.clone()).unwrap();
        let t = Instant::now();
        for _ in 0..200 {
            std::hint::black_box(rl.seal(&mib).unwrap());
        }
        let seal = 200.0 / t.elapsed().as_secs_f64();
        // The client's 1 MiB in records, opened again and again.
        let mut wire = Vec::new();
        for chunk in mib.chunks(65536) {
            client_write(&mut c, chunk);
            wire.extend(from_client(&mut c));
        }
        let t = Instant::now();
        for _ in 0..100 {
            // Fed as a socket would: 64 KiB reads, cutting records anywhere.
            let mut rl = RecordLayer::new(est.state.clone()).unwrap();
            let mut n = 0;
            for read in wire.chunks(65536) {
                n += rl.open(read).unwrap().plaintext.len();
            }
            assert_eq!(n, mib.len());
        }
        let open = 100.0 / t.elapsed().as_secs_f64();
        println!("{name}: seal {seal:.0} MiB/s, open {open:.0} MiB/s");
    }
}
