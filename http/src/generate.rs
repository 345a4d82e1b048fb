//! The `generate` handler: the paper's WebStone CGI workload.
//!
//! A reply of N pseudo-random bytes made with real CPU work per byte, so that
//! dynamic content costs CPU like a CGI program would. Every output byte is
//! the low byte of a 64-bit state after [`ROUNDS_PER_BYTE`] dependent
//! splitmix64 mixing rounds (multiply/xor-shift chains that cannot be
//! vectorized or skipped). Cost measured on the development machine
//! (release build, AMD EPYC x86-64): about 22 ns per byte, i.e. ~1.1 ms of
//! CPU for 50 KB and ~30 ms for 1 MB; debug builds are several times slower. The content depends only on
//! `(size, seed)`; the appliance passes a fresh random seed per request, which
//! makes the reply non-deterministic (so it must be reply-logged).

use bytes::Bytes;

use crate::{Method, Request, Response};

/// Mixing rounds per output byte (the CPU cost knob).
pub const ROUNDS_PER_BYTE: u32 = 6;

/// Reply size when the request has no `size` parameter.
pub const DEFAULT_SIZE: usize = 1024;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `size` pseudo-random bytes, deterministic in `(size, seed)` (a prefix of
/// a longer output with the same seed). The caller bounds `size`.
pub fn generate(size: usize, seed: u64) -> Bytes {
    let mut out = Vec::with_capacity(size);
    let mut state = mix(seed);
    for _ in 0..size {
        for _ in 0..ROUNDS_PER_BYTE {
            state = mix(state);
        }
        out.push((state >> 24) as u8);
    }
    Bytes::from(out)
}

/// Serve `GET|HEAD …?size=N`: 200 `application/octet-stream` with N bytes
/// from [`generate`]. No `size` → [`DEFAULT_SIZE`]; a `size` that is not a
/// plain decimal number → 400; `size > max_size` → 413; other methods → 405.
pub fn handle(req: &Request, seed: u64, max_size: usize) -> Response {
    if !matches!(req.method, Method::Get | Method::Head) {
        return Response::error(405).header("Allow", "GET, HEAD");
    }
    let size = match req.query_param("size") {
        None => DEFAULT_SIZE,
        Some(s) => match parse_size(s) {
            Some(n) if n <= max_size => n,
            Some(_) => return Response::error(413),
            None => return Response::error(400),
        },
    };
    Response::new(200)
        .header("Content-Type", "application/octet-stream")
        .header("Cache-Control", "no-store")
        .body(generate(size, seed))
}

/// Plain decimal digits; values too large for usize saturate (→ 413).
fn parse_size(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > 40 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0usize, |acc, d| {
        acc.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, query: Option<&str>) -> Request {
        Request {
            query: query.map(str::to_owned),
            ..Request::new(method, "/generate")
        }
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let a = generate(4096, 42);
        let b = generate(4096, 42);
        let c = generate(4096, 43);
        assert_eq!(a.len(), 4096);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(&generate(100, 42)[..], &a[..100]);
        assert!(generate(0, 1).is_empty());
        // Pinned: the content must not change between builds or nodes.
        assert_eq!(
            &generate(8, 0)[..],
            &[0x54, 0x1b, 0x57, 0xf6, 0x7f, 0x2f, 0x1b, 0x62]
        );
    }

    #[test]
    fn output_looks_random() {
        let data = generate(64 * 1024, 7);
        let mut counts = [0u32; 256];
        for &b in data.iter() {
            counts[b as usize] += 1;
        }
        // Expect 256 per value; a broken generator is far off.
        assert!(
            counts.iter().all(|&c| (150..400).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn size_parsing() {
        let r = handle(&req(Method::Get, None), 1, 1 << 20);
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), DEFAULT_SIZE);
        assert_eq!(
            r.get_header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(r.body, generate(DEFAULT_SIZE, 1));

        let r = handle(&req(Method::Get, Some("size=5000")), 9, 1 << 20);
        assert_eq!((r.status, r.body.len()), (200, 5000));
        assert_eq!(r.body, generate(5000, 9));
        let r = handle(&req(Method::Head, Some("a=b&size=0")), 9, 1 << 20);
        assert_eq!((r.status, r.body.len()), (200, 0));
        let r = handle(&req(Method::Get, Some("size=1048576")), 9, 1 << 20);
        assert_eq!(r.body.len(), 1 << 20);

        for q in [
            "size=",
            "size=abc",
            "size=-1",
            "size=+1",
            "size=1e3",
            "size=1%30",
        ] {
            assert_eq!(
                handle(&req(Method::Get, Some(q)), 1, 1 << 20).status,
                400,
                "{q}"
            );
        }
        for q in ["size=1048577", "size=99999999999999999999999999"] {
            assert_eq!(
                handle(&req(Method::Get, Some(q)), 1, 1 << 20).status,
                413,
                "{q}"
            );
        }
        let r = handle(&req(Method::Post, None), 1, 1 << 20);
        assert_eq!(r.status, 405);
        assert_eq!(r.get_header("allow"), Some("GET, HEAD"));
    }
}
