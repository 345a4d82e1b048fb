//! Keeps docs/configuration.md true: its key table is compared with what
//! the parser knows. The parser's own list of a table's keys is the one
//! serde gives when it refuses an unknown key (`deny_unknown_fields`:
//! "unknown field `x`, expected one of `a`, `b`, …"), so a key added to a
//! config struct and not to the doc (or the other way round) fails the
//! test, as does a numeric default that differs from the code's.

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::collections::BTreeSet;

    const DOC: &str = include_str!("../../docs/configuration.md");

    /// The doc's table: (key, default column).
    fn documented() -> Vec<(String, String)> {
        DOC.lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                // "| `key` | default | bounds | meaning |"
                let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                Some((key.to_owned(), cells.get(2)?.to_string()))
            })
            .collect()
    }

    /// The keys serde expects in the table a probe key was put in.
    fn parser_keys(probe_doc: &str) -> BTreeSet<String> {
        let e = match toml::from_str::<Config>(probe_doc) {
            Ok(_) => panic!("the probe was accepted: {probe_doc}"),
            Err(e) => e.to_string(),
        };
        let Some(at) = e.find("unknown field `__probe`") else {
            panic!("no unknown-field error for {probe_doc:?}: {e}");
        };
        let rest = &e[at..];
        let line = rest.lines().next().unwrap_or_default();
        let list = line
            .split_once("expected one of ")
            .or_else(|| line.split_once("expected "))
            .map_or("", |(_, l)| l);
        // serde: "expected `a`", "expected `a` or `b`", "expected one of
        // `a`, `b`, `c`".
        list.split(", ")
            .flat_map(|k| k.split(" or "))
            .map(|k| k.trim().trim_matches('`').to_owned())
            .filter(|k| !k.is_empty())
            .collect()
    }

    /// Every table of the file and the header that opens it.
    const TABLES: &[(&str, &str)] = &[
        ("node", "[node]"),
        ("service", "[service]"),
        ("replication", "[replication]"),
        ("address[]", "[[address]]"),
        ("peer[]", "[[peer]]"),
        ("heartbeat", "[heartbeat]"),
        ("link", "[link]"),
        ("http", "[http]"),
        ("route[]", "[[route]]"),
        ("admin", "[admin]"),
        ("hooks", "[hooks]"),
        ("lan_check", "[lan_check]"),
        ("app_check", "[app_check]"),
        ("log", "[log]"),
        ("tls", "[tls]"),
    ];

    #[test]
    fn every_key_is_documented_and_every_documented_key_exists() {
        let doc = documented();
        assert!(doc.len() > 40, "the table was not found: {doc:?}");
        let doc_keys: BTreeSet<String> = doc.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(doc_keys.len(), doc.len(), "a key is documented twice");
        // The top level: its tables are exactly the ones listed here.
        let top = parser_keys("__probe = 1\n");
        let tables: BTreeSet<String> = TABLES
            .iter()
            .map(|(t, _)| t.trim_end_matches("[]").to_owned())
            .collect();
        assert_eq!(top, tables, "top-level tables");
        let mut known = BTreeSet::new();
        for (table, header) in TABLES {
            for k in parser_keys(&format!("{header}\n__probe = 1\n")) {
                known.insert(format!("{table}.{k}"));
            }
        }
        let undocumented: Vec<_> = known.difference(&doc_keys).collect();
        let unknown: Vec<_> = doc_keys.difference(&known).collect();
        assert!(
            undocumented.is_empty() && unknown.is_empty(),
            "docs/configuration.md is out of date.\n  keys the parser knows, not documented: \
             {undocumented:?}\n  keys documented, unknown to the parser: {unknown:?}"
        );
    }

    /// The numeric defaults in the doc are the code's.
    #[test]
    fn documented_numeric_defaults_are_the_codes() {
        let one = "[node]\nname = \"n1\"\ntap = \"t\"\nmac = \"02:00:00:00:00:01\"\n\
                   [service]\naddress = \"10.0.0.10\"\n";
        let c = Config::parse(one).unwrap();
        let r = Config::parse(&format!(
            "{one}[link]\ndanger_plaintext = true\n\
             [replication]\nrole = \"primary\"\nlisten = \"10.0.0.1:7700\"\n"
        ))
        .unwrap();
        let rep = r.replication.as_ref().unwrap();
        let general = Config::parse(
            "[node]\nname = \"n1\"\ntap = \"t\"\nmac = \"02:00:00:00:00:01\"\n\
             [link]\ndanger_plaintext = true\n\
             [[address]]\nip = \"10.0.0.10\"\nrole = \"owner\"\npeer = \"n2\"\n\
             [[peer]]\nname = \"n2\"\nconnect = \"10.0.0.2:7700\"\n[heartbeat]\n",
        )
        .unwrap();
        let hb = general.heartbeat.as_ref().unwrap();
        let a = &general.addresses[0];
        let s = c.service.as_ref().unwrap();
        // `[tls]` as serde fills it in (Config::parse would read its files).
        let tls: crate::config::TlsSection =
            toml::from_str("cert = \"c\"\nkey = \"k\"\nticket_key_file = \"t\"\n").unwrap();
        let code: Vec<(&str, u64)> = vec![
            ("node.rx_buffer_bytes", c.node.rx_buffer_bytes as u64),
            ("node.tx_buffer_bytes", c.node.tx_buffer_bytes as u64),
            ("node.worker_threads", c.node.worker_threads as u64),
            ("service.prefix_len", u64::from(s.prefix_len)),
            ("service.port", u64::from(s.port)),
            ("service.max_connections", s.max_connections as u64),
            ("service.half_open_timeout_ms", s.half_open_timeout_ms),
            (
                "replication.heartbeat_interval_ms",
                rep.heartbeat_interval_ms,
            ),
            ("replication.heartbeat_timeout_ms", rep.heartbeat_timeout_ms),
            ("replication.cold_start_ms", rep.cold_start_ms),
            ("replication.rejoin_delay_ms", rep.rejoin_delay_ms),
            ("address[].prefix_len", u64::from(a.prefix_len)),
            ("address[].port", u64::from(a.port)),
            ("address[].max_connections", a.max_connections as u64),
            ("address[].half_open_timeout_ms", a.half_open_timeout_ms),
            ("heartbeat.interval_ms", hb.interval_ms),
            ("heartbeat.timeout_ms", hb.timeout_ms),
            ("heartbeat.cold_start_ms", hb.cold_start_ms),
            ("heartbeat.rejoin_delay_ms", hb.rejoin_delay_ms),
            ("http.max_header_bytes", c.http.max_header_bytes as u64),
            ("http.max_body_bytes", c.http.max_body_bytes),
            ("http.max_pipelined", c.http.max_pipelined as u64),
            ("http.header_timeout_ms", c.http.header_timeout_ms),
            ("http.idle_timeout_ms", c.http.idle_timeout_ms),
            ("http.body_timeout_ms", c.http.body_timeout_ms),
            ("http.max_output_bytes", c.http.max_output_bytes as u64),
            ("http.send_timeout_ms", c.http.send_timeout_ms),
            (
                "route[].max_total_bytes",
                crate::config::DEFAULT_FILES_MAX_BYTES,
            ),
            (
                "route[].max_size",
                crate::config::DEFAULT_GENERATE_MAX as u64,
            ),
            ("hooks.timeout_ms", c.hooks.timeout_ms),
            ("route[].max_idle", crate::upstream::DEFAULT_MAX_IDLE as u64),
            ("route[].timeout_ms", crate::upstream::DEFAULT_TIMEOUT_MS),
            (
                "route[].idle_timeout_ms",
                crate::upstream::DEFAULT_IDLE_TIMEOUT_MS,
            ),
            (
                "route[].connect_timeout_ms",
                crate::upstream::DEFAULT_CONNECT_TIMEOUT_MS,
            ),
            ("log.access_queue", c.log.access_queue as u64),
            ("tls.port", u64::from(tls.port)),
            ("tls.ticket_rotation_secs", tls.ticket_rotation_secs),
        ];
        let doc = documented();
        for (key, want) in code {
            let got = doc
                .iter()
                .find(|(k, _)| k == key)
                .unwrap_or_else(|| panic!("{key} is not documented"));
            assert_eq!(
                got.1,
                format!("`{want}`"),
                "docs/configuration.md: the default of {key}"
            );
        }
    }
}
