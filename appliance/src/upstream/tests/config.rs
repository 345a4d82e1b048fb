//! The route's keys as the config parser checks them.

use crate::config::Config;

const BASE: &str = "[node]\nname = \"n1\"\ntap = \"t\"\nmac = \"02:00:00:00:00:01\"\n\
                    [service]\naddress = \"10.0.0.10\"\n";

fn route(keys: &str) -> String {
    format!("{BASE}[[route]]\nprefix = \"/app/\"\nhandler = \"upstream\"\n{keys}\n")
}

fn err(text: &str) -> String {
    format!("{:#}", Config::parse(text).unwrap_err())
}

#[test]
fn upstream_keys_are_checked_and_named() {
    let ok = route(
        "address = \"app.internal:8080\"\nconnect_timeout_ms = 1000\nidle_timeout_ms = 5000\n\
         retry_non_idempotent = true\nrequest_id_header = \"X-Dedup\"",
    );
    let c = Config::parse(&ok).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(c.routes[0].retry_non_idempotent, Some(true));
    let e = err(&route("address = \"app.internal\""));
    assert!(
        e.contains("route[0].address") && e.contains("has no port"),
        "{e}"
    );
    for (keys, key) in [
        ("timeout_ms = 0", "route[0].timeout_ms"),
        ("connect_timeout_ms = 0", "route[0].connect_timeout_ms"),
        ("connect_timeout_ms = 600001", "route[0].connect_timeout_ms"),
        ("idle_timeout_ms = 3600001", "route[0].idle_timeout_ms"),
        (
            "request_id_header = \"X-Request-Id\"",
            "route[0].request_id_header",
        ),
        ("request_id_header = \"a b\"", "route[0].request_id_header"),
        ("fallback = [\"10.0.0.2\"]", "route[0].fallback[0]"),
        ("fallback = [\"127.0.0.1:1\"]", "route[0].fallback[0]"),
    ] {
        let e = err(&route(&format!("address = \"127.0.0.1:1\"\n{keys}")));
        assert!(e.contains(key), "{keys}: {e}");
    }
    let fb = route("address = \"127.0.0.1:8080\"\nfallback = [\"10.0.0.2:8080\", \"app2:8080\"]");
    assert_eq!(
        Config::parse(&fb).unwrap().routes[0].fallback.as_deref(),
        Some(&["10.0.0.2:8080".to_owned(), "app2:8080".to_owned()][..])
    );
    let pp = route("address = \"127.0.0.1:1\"\nproxy_protocol = \"v2\"");
    assert!(Config::parse(&pp).unwrap().routes[0]
        .proxy_protocol
        .is_some());
    let e = err(&route(
        "address = \"127.0.0.1:1\"\nproxy_protocol = \"v2\"\nmax_idle = 4",
    ));
    assert!(e.contains("route[0].max_idle"), "{e}");
    let e = err(&route("address = \"127.0.0.1:1\"\nproxy_protocol = \"v1\""));
    assert!(e.contains("v1"), "{e}");
    let generate = format!(
        "{BASE}[[route]]\nprefix = \"/g/\"\nhandler = \"generate\"\nretry_non_idempotent = true\n"
    );
    assert!(err(&generate).contains("route[0].retry_non_idempotent"));
    let generate = format!(
        "{BASE}[[route]]\nprefix = \"/g/\"\nhandler = \"generate\"\nfallback = [\"10.0.0.2:8080\"]\n"
    );
    assert!(err(&generate).contains("route[0].fallback"));
}

#[test]
fn the_log_section_is_checked() {
    let log = |keys: &str| format!("{BASE}[log]\n{keys}\n");
    let c = Config::parse(&log("access = \"-\"\naccess_format = \"json\"")).unwrap();
    assert_eq!(c.log.access_format, crate::access_log::AccessFormat::Json);
    assert!(err(&log("access = \"x.log\"")).contains("log.access"));
    assert!(err(&log("access_format = \"xml\"")).contains("xml"));
    assert!(err(&log("access_queue = 0")).contains("log.access_queue"));
}
