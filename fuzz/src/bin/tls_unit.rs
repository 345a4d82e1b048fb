//! AFL++ entry point: `bash scripts/fuzz.sh` builds and runs it.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        hotpair_fuzz::tls_unit::run(data);
    });
}
