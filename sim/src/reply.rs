//! A tiny HTTP/1.1 response parser for the client side: enough to split a
//! received byte stream into whole replies (status line, header fields,
//! `Content-Length` body) and to say precisely where a stream goes wrong.
//! The server always sends `Content-Length` (never chunked), so that is all
//! it understands; anything else is a parse error, which is a finding.

/// One reply found in a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Offset of its first byte in the stream.
    pub start: usize,
    pub status: u16,
    /// Header fields, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Length of the head, empty line included.
    pub head_len: usize,
    pub body_len: usize,
}

impl Reply {
    pub fn len(&self) -> usize {
        self.head_len + self.body_len
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn end(&self) -> usize {
        self.start + self.len()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// `Connection: close`.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

/// What a stream holds: whole replies, then maybe a partial one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub replies: Vec<Reply>,
    /// Bytes after the last whole reply (a reply still arriving).
    pub partial: usize,
}

/// Split `stream` into replies. `Err` names the offset and what is wrong.
pub fn parse_stream(stream: &[u8]) -> Result<Parsed, String> {
    let mut replies = Vec::new();
    let mut pos = 0;
    loop {
        match parse_one(&stream[pos..]) {
            Ok(Some(mut r)) => {
                r.start = pos;
                pos += r.len();
                replies.push(r);
            }
            Ok(None) => {
                return Ok(Parsed {
                    replies,
                    partial: stream.len() - pos,
                })
            }
            Err(e) => return Err(format!("at stream offset {pos}: {e}")),
        }
    }
}

/// Parse one reply at the start of `b`: `Ok(None)` if incomplete.
fn parse_one(b: &[u8]) -> Result<Option<Reply>, String> {
    if b.is_empty() {
        return Ok(None);
    }
    const MAX_HEAD: usize = 64 * 1024;
    let Some(head_end) = find(b, b"\r\n\r\n") else {
        if !b"HTTP/1.1 ".starts_with(&b[..b.len().min(9)]) {
            return Err(format!(
                "not a status line: {:?}",
                show(&b[..b.len().min(40)])
            ));
        }
        if b.len() > MAX_HEAD {
            return Err("head longer than 64 KiB".into());
        }
        return Ok(None);
    };
    let head_len = head_end + 4;
    let head = std::str::from_utf8(&b[..head_end])
        .map_err(|_| format!("head is not UTF-8: {:?}", show(&b[..head_end.min(80)])))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let rest = status_line
        .strip_prefix("HTTP/1.1 ")
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let code = rest.get(..3).unwrap_or_default();
    let status: u16 = code
        .parse()
        .ok()
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| format!("bad status code in {status_line:?}"))?;
    if rest.len() > 3 && rest.as_bytes()[3] != b' ' {
        return Err(format!("bad status line {status_line:?}"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line without ':': {line:?}"))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(format!("bad header name in {line:?}"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err("transfer-encoding in a reply (the server always sends Content-Length)".into());
    }
    let lengths: Vec<&String> = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v)
        .collect();
    let body_len = match (status, lengths.as_slice()) {
        (100..=199 | 204 | 304, _) => 0,
        (_, [v]) => v
            .parse::<usize>()
            .map_err(|_| format!("bad Content-Length {v:?}"))?,
        (_, []) => return Err(format!("status {status} without Content-Length")),
        (_, _) => return Err("several Content-Length fields".into()),
    };
    if b.len() < head_len + body_len {
        return Ok(None);
    }
    Ok(Some(Reply {
        start: 0,
        status,
        headers,
        head_len,
        body_len,
    }))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Printable form of a few bytes, for messages.
pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_replies_and_waits_for_partial_ones() {
        let s = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 5\r\n\r\nab";
        let p = parse_stream(s).unwrap();
        assert_eq!(p.replies.len(), 2);
        assert_eq!(p.replies[0].body_len, 3);
        assert_eq!(p.replies[1].status, 204);
        assert_eq!(p.replies[1].start, p.replies[0].end());
        assert_eq!(p.partial, s.len() - p.replies[1].end());
        let mut full = s.to_vec();
        full.extend_from_slice(b"cde");
        let p = parse_stream(&full).unwrap();
        assert_eq!(p.replies.len(), 3);
        assert!(p.replies[2].closes());
        assert_eq!(p.partial, 0);
        // Every prefix parses (or waits) without error.
        for cut in 0..full.len() {
            parse_stream(&full[..cut]).unwrap();
        }
    }

    #[test]
    fn garbage_is_an_error_with_an_offset() {
        let e = parse_stream(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naXTTP").unwrap_err();
        assert!(e.contains("offset 39"), "{e}");
        assert!(parse_stream(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
