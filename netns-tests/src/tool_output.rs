//! The client tools' command lines (curl) and what they print (curl's
//! heads and `-w` lines, hping3's summary).

use std::path::Path;
use std::process::Output;

/// Splits curl `-D -` / `-i` output into the final response head (interim 1xx
/// heads skipped) and the body.
pub fn split_head(out: &[u8]) -> (String, &[u8]) {
    let mut rest = out;
    loop {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "no end of response head in {:?}",
                    String::from_utf8_lossy(&rest[..rest.len().min(400)])
                )
            });
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 4..];
        let interim = head
            .split_whitespace()
            .nth(1)
            .is_some_and(|code| code.starts_with('1'));
        if !interim {
            return (head, rest);
        }
    }
}

/// The value of header `name` (case-insensitive) in a response head.
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The status code in a response head.
pub fn status_code(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {head:?}"))
}

/// The command line of a rate-limited download of `url` into `out`:
/// `curl -sS --fail --max-time 45 --limit-rate RATE -o OUT`, then `extra`,
/// then the URL.
pub fn curl_download_args(url: &str, rate: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let out = out.to_string_lossy();
    let mut args = vec![
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        "45",
        "--limit-rate",
        rate,
        "-o",
        &out,
    ];
    args.extend_from_slice(extra);
    args.push(url);
    args.into_iter().map(str::to_owned).collect()
}

/// How many packets hping3 says it sent (its summary line, on stdout or
/// stderr); `None` if it printed none (it did not run, or died).
pub fn hping_sent(out: &Output) -> Option<u64> {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    all.lines()
        .find_map(|l| l.split_once(" packets transmitted"))
        .and_then(|(n, _)| n.trim().parse().ok())
}

/// The output of `curl -w "\n%{http_code} %{time_total}"`: the body, the
/// status (0 if none) and the seconds (NaN if none).
pub fn curl_body_code_secs(text: &[u8]) -> (&[u8], u16, f64) {
    let split = text.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let (body, tail) = (&text[..split], &text[(split + 1).min(text.len())..]);
    let tail = String::from_utf8_lossy(tail);
    let mut f = tail.split_whitespace();
    let code = f.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let secs = f.next().and_then(|c| c.parse().ok()).unwrap_or(f64::NAN);
    (body, code, secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let out = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-Request-Id: 7\r\nContent-Length: 2\r\n\r\nhi";
        let (head, body) = split_head(out);
        assert_eq!(status_code(&head), 200);
        assert_eq!(header(&head, "x-request-id").as_deref(), Some("7"));
        assert_eq!(header(&head, "etag"), None);
        assert_eq!(body, b"hi");
    }
}
