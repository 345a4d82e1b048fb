//! The `generate` handler: N random bytes, different every time.

use hotpair_netns_tests::{sha256_hex, Lab};

#[test]
fn generate_returns_exact_size_and_fresh_content() {
    let Some(lab) = Lab::up("generate") else {
        return;
    };
    let a = lab.get("/non-deterministic/x?size=100000");
    let b = lab.get("/non-deterministic/x?size=100000");
    assert_eq!(a.len(), 100_000, "first reply length");
    assert_eq!(b.len(), 100_000, "second reply length");
    assert_ne!(
        sha256_hex(&a),
        sha256_hex(&b),
        "two fetches of /non-deterministic/ returned identical content"
    );
    let small = lab.get("/non-deterministic/y?size=1");
    assert_eq!(small.len(), 1);
}
