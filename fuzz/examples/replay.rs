//! Run one input through one harness, with tracing:
//! `FUZZ_TRACE=1 cargo run --example replay -- <target> <file>`
//! (`<file>` may be `-` for stdin, or `hex:<bytes>`).
use std::io::Read;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (target, file) = match &args[..] {
        [_, t, f] => (t.as_str(), f.as_str()),
        _ => {
            eprintln!(
                "usage: replay <http_conn|wire|engine|replica|tls_record|tls_unit> <file|-|hex:..>"
            );
            std::process::exit(2);
        }
    };
    let data = if file == "-" {
        let mut v = Vec::new();
        std::io::stdin().read_to_end(&mut v).expect("stdin");
        v
    } else if let Some(hex) = file.strip_prefix("hex:") {
        let hex: String = hex.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect()
    } else {
        std::fs::read(file).expect("readable input")
    };
    match target {
        "http_conn" => hotpair_fuzz::http_conn::run(&data),
        "wire" => hotpair_fuzz::wire::run(&data),
        "engine" => hotpair_fuzz::engine::run(&data),
        "replica" => hotpair_fuzz::replica::run(&data),
        "tls_record" => hotpair_fuzz::tls_record::run(&data),
        "tls_unit" => hotpair_fuzz::tls_unit::run(&data),
        _ => panic!("unknown target {target}"),
    }
    println!("ok");
}
