//! Request and response values shared by the connection and the handlers.

use bytes::Bytes;

/// Request methods this server accepts; anything else is answered with 501.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
}

impl Method {
    /// Parse a method token (case-sensitive, as RFC 9110 §9.1 requires).
    pub fn from_token(token: &str) -> Option<Method> {
        Some(match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HTTP version of a request. Replies are always sent as `HTTP/1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// One complete request (head and whole de-chunked body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// 0, 1, 2… per connection in arrival order; pass it to `send_response`.
    pub index: u64,
    pub method: Method,
    /// Percent-decoded, normalized absolute path without the query
    /// (`/static/a.txt`); never contains a `..` segment, NUL, backslash or
    /// empty segment. `*` for `OPTIONS *`.
    pub path: String,
    /// Raw query string after `?`, not decoded (`Some("")` for a bare `?`).
    pub query: Option<String>,
    pub version: Version,
    /// Header fields in arrival order; names as received, values raw.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
    /// Whether the connection stays open after this request's reply.
    pub keep_alive: bool,
}

impl Request {
    /// A keep-alive HTTP/1.1 request for `path` (index 0): no query, no
    /// header field, no body. Callers that build requests themselves (not
    /// parsed off a connection) set the rest with struct update syntax.
    pub fn new(method: Method, path: &str) -> Request {
        Request {
            index: 0,
            method,
            path: path.into(),
            query: None,
            version: Version::Http11,
            headers: Vec::new(),
            body: Bytes::new(),
            keep_alive: true,
        }
    }

    /// Value of the first header field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// All values of header fields called `name` (case-insensitive), in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The request target to forward upstream: the normalized path,
    /// percent-encoded again where needed (anything but unreserved
    /// characters, sub-delims, `:`, `@` and `/`), then `?` and the raw query.
    /// Always a valid origin-form target (or `*`).
    pub fn target(&self) -> String {
        let mut t = String::with_capacity(self.path.len() + 8);
        if self.path == "*" {
            t.push('*');
        } else {
            for &b in self.path.as_bytes() {
                if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
                    t.push(char::from(b));
                } else {
                    t.push_str(&format!("%{b:02X}"));
                }
            }
        }
        if let Some(q) = &self.query {
            t.push('?');
            t.push_str(q);
        }
        t
    }

    /// Raw (not percent-decoded) value of the first `key=value` pair in the
    /// query whose key equals `key`; `""` for a bare `key` or `key=`.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        let query = self.query.as_deref()?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then_some(v)
        })
    }
}

/// A reply produced by a handler. The connection adds `Content-Length` and
/// `Connection` itself (any such fields set here are replaced, except as
/// documented on [`crate::ServerConn::send_response`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Append a header field.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// A small `text/plain` reply: `"<status> <reason phrase>\n"`.
    pub fn error(status: u16) -> Self {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(format!("{} {}\n", status, reason_phrase(status)))
    }

    /// Value of the first header called `name` (case-insensitive).
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reason phrase for a status code (`"Unknown"` for codes not listed).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(query: Option<&str>) -> Request {
        Request {
            query: query.map(str::to_owned),
            headers: vec![
                ("Host".into(), b"a".to_vec()),
                ("X-A".into(), b"1".to_vec()),
                ("x-a".into(), b"2".to_vec()),
            ],
            ..Request::new(Method::Get, "/")
        }
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_first() {
        let r = req(None);
        assert_eq!(r.header("x-A"), Some(&b"1"[..]));
        assert_eq!(r.header("HOST"), Some(&b"a"[..]));
        assert_eq!(r.header("nope"), None);
        assert_eq!(
            r.header_all("X-a").collect::<Vec<_>>(),
            vec![&b"1"[..], &b"2"[..]]
        );
    }

    #[test]
    fn query_param_parsing() {
        let r = req(Some("size=10&x&y=&size=20&a%20b=c"));
        assert_eq!(r.query_param("size"), Some("10"));
        assert_eq!(r.query_param("x"), Some(""));
        assert_eq!(r.query_param("y"), Some(""));
        assert_eq!(r.query_param("a%20b"), Some("c"));
        assert_eq!(r.query_param("z"), None);
        assert_eq!(req(None).query_param("size"), None);
    }

    #[test]
    fn target_is_re_encoded() {
        let mut r = req(Some("a=%20b&c"));
        r.path = "/a b/%/é/x?y#z/ok-._~!$&'()*+,;=:@".into();
        assert_eq!(
            r.target(),
            "/a%20b/%25/%C3%A9/x%3Fy%23z/ok-._~!$&'()*+,;=:@?a=%20b&c"
        );
        r.path = "*".into();
        r.query = None;
        assert_eq!(r.target(), "*");
        // Round trip through the connection's own target parser.
        r.path = "/a b/%25/é".into();
        assert_eq!(
            crate::target::parse_target(Method::Get, &r.target()).map(|(p, _)| p),
            Some(r.path.clone())
        );
    }

    #[test]
    fn response_builders() {
        let r = Response::error(404);
        assert_eq!(r.status, 404);
        assert_eq!(&r.body[..], b"404 Not Found\n");
        assert_eq!(
            r.get_header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        let r = Response::new(200).header("A", "b").body("xyz");
        assert_eq!(r.headers, vec![("A".to_string(), "b".to_string())]);
        assert_eq!(&r.body[..], b"xyz");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(799), "Unknown");
    }
}
