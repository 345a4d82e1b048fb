//! The request's head as the application gets it, and the reply's headers
//! as the client gets them: hop-by-hop fields dropped both ways (RFC 9110
//! §7.6.1, with the fields a `Connection` header names), the replication
//! id in its own header, and the client's address and the host it asked
//! for in `X-Forwarded-*` and `Forwarded` (RFC 7239).

use std::net::SocketAddr;

use hotpair_http::Request;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use super::UpstreamError;

/// `request_id_header`'s default.
pub const DEFAULT_REQUEST_ID_HEADER: &str = "X-Hotpair-Request-Id";

/// Fields that describe one hop, not the message; `host`,
/// `content-length` and `expect` are set by this proxy (the body is whole
/// by then).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
    "host",
];

/// Set by this proxy, whatever the client sent.
const REPLACED: &[&str] = &["x-forwarded-proto", "x-forwarded-host"];

/// A `request_id_header` this proxy can set: a valid field name that no
/// other field's meaning rests on.
pub fn check_request_id_header(name: &str) -> Result<HeaderName, UpstreamError> {
    let h = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| UpstreamError::RequestIdHeader(name.into(), "not a header field name"))?;
    let reserved = HOP_BY_HOP
        .iter()
        .chain(REPLACED)
        .chain(&["x-forwarded-for", "forwarded", "x-request-id"])
        .any(|r| h.as_str() == *r);
    if reserved {
        return Err(UpstreamError::RequestIdHeader(
            name.into(),
            "a header with its own meaning (hop-by-hop, forwarding, or the client's X-Request-Id)",
        ));
    }
    Ok(h)
}

/// What the proxy adds to a request.
pub(super) struct Forwarding<'a> {
    pub client: SocketAddr,
    pub request_id: &'a str,
    pub request_id_header: &'a HeaderName,
    /// The configured `host:port`: the `Host` of a request without one.
    pub authority: &'a str,
}

pub(super) struct Head {
    pub method: hyper::Method,
    pub uri: hyper::Uri,
    pub headers: HeaderMap,
}

/// The field names a message's `Connection` headers list (lowercase).
fn connection_tokens<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    values
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// A `Forwarded` quoted-string (RFC 7230 §3.2.6).
fn quoted(v: &[u8]) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in String::from_utf8_lossy(v).chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// The application's request head; `base` is `http://host:port`.
pub(super) fn request_head(req: &Request, f: &Forwarding<'_>, base: &str) -> Result<Head, String> {
    let method = hyper::Method::from_bytes(req.method.as_str().as_bytes())
        .map_err(|e| format!("method: {e}"))?;
    // The re-encoded target: `path` itself is percent-decoded.
    let uri: hyper::Uri = format!("{base}{}", req.target())
        .parse()
        .map_err(|e| format!("target {:?}: {e}", req.target()))?;
    let named = connection_tokens(
        req.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .map(|(_, v)| v.as_slice()),
    );
    let mut h = HeaderMap::with_capacity(req.headers.len() + 6);
    let host = req.header("host");
    let host_value = HeaderValue::from_bytes(host.unwrap_or(f.authority.as_bytes()))
        .map_err(|_| "Host: not a header value".to_owned())?;
    h.insert(hyper::header::HOST, host_value.clone());
    let mut xff: Vec<u8> = Vec::new();
    let mut forwarded: Vec<u8> = Vec::new();
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str())
            || REPLACED.contains(&lower.as_str())
            || named.contains(&lower)
            || lower == f.request_id_header.as_str()
        {
            continue;
        }
        // Appended to below, as one field each.
        let list = match lower.as_str() {
            "x-forwarded-for" => Some(&mut xff),
            "forwarded" => Some(&mut forwarded),
            _ => None,
        };
        if let Some(list) = list {
            if !list.is_empty() {
                list.extend_from_slice(b", ");
            }
            list.extend_from_slice(value.trim_ascii());
            continue;
        }
        // The HTTP layer parsed these already; a field hyper would refuse
        // (a control character) is dropped rather than the request.
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            (Ok(n), Ok(v)) => {
                h.append(n, v);
            }
            _ => tracing::debug!(header = %name, "request header not forwardable: dropped"),
        }
    }
    let ip = f.client.ip();
    if !xff.is_empty() {
        xff.extend_from_slice(b", ");
    }
    xff.extend_from_slice(ip.to_string().as_bytes());
    let node = match ip {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("\"[{a}]\""),
    };
    if !forwarded.is_empty() {
        forwarded.extend_from_slice(b", ");
    }
    forwarded.extend_from_slice(format!("for={node};proto=http").as_bytes());
    if let Some(host) = host {
        forwarded.extend_from_slice(format!(";host={}", quoted(host)).as_bytes());
        h.insert("x-forwarded-host", host_value);
    }
    let value = |v: Vec<u8>| HeaderValue::from_bytes(&v).map_err(|e| e.to_string());
    h.insert("x-forwarded-for", value(xff)?);
    h.insert(hyper::header::FORWARDED, value(forwarded)?);
    h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    h.insert(
        f.request_id_header.clone(),
        HeaderValue::from_str(f.request_id).map_err(|e| e.to_string())?,
    );
    // Whole already: its length, also when 0 on a method that has a body
    // (hyper leaves an empty body without one).
    if !req.body.is_empty() || !matches!(req.method.as_str(), "GET" | "HEAD" | "OPTIONS" | "DELETE")
    {
        h.insert(
            hyper::header::CONTENT_LENGTH,
            HeaderValue::from(req.body.len()),
        );
    }
    Ok(Head {
        method,
        uri,
        headers: h,
    })
}

/// The reply's end-to-end headers, for the client (its own `X-Request-Id`
/// among them), and its `Content-Length`.
pub(super) fn response_headers(map: &HeaderMap) -> Vec<(String, String)> {
    let named = connection_tokens(
        map.get_all(hyper::header::CONNECTION)
            .iter()
            .map(HeaderValue::as_bytes),
    );
    map.iter()
        .filter(|(n, _)| {
            let n = n.as_str();
            // `Content-Length` goes through: the HTTP layer writes the
            // body's own length, but takes the handler's for a reply to
            // HEAD and a 304 (the length of the GET's body). `host`,
            // `expect` are request fields; harmless to drop here.
            n == "content-length" || (!HOP_BY_HOP.contains(&n) && !named.iter().any(|t| t == n))
        })
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
