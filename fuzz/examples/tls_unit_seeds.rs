//! Write the `tls_unit` target's seeds (real encoded TLS units, from
//! `hotpair_fuzz::tls_unit::seeds`) to `fuzz/corpus/tls_unit/`:
//! `cargo run --manifest-path fuzz/Cargo.toml --example tls_unit_seeds`.
fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/tls_unit");
    std::fs::create_dir_all(&dir).expect("the corpus directory");
    for (name, data) in hotpair_fuzz::tls_unit::seeds() {
        let f = dir.join(format!("seed-{name}"));
        std::fs::write(&f, data).expect("a seed written");
        println!("{}", f.display());
    }
}
