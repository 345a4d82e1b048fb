//! Request-target validation and path normalization.

use crate::Method;

/// Split an origin-form request target into a normalized, percent-decoded
/// path and the raw query. `None` means the target is rejected (400).
///
/// Rules: the target must start with `/` (only `OPTIONS *` may use `*`); no
/// fragment; every `%` must start a valid escape; the decoded path must be
/// UTF-8 without control characters (NUL included); backslashes count as
/// separators; `.` and empty segments are dropped (so `//` collapses); any
/// `..` segment rejects the target, whether it would escape the root or not.
/// A trailing `/` (or trailing `/.`) is kept, as it names a directory.
pub(crate) fn parse_target(method: Method, target: &str) -> Option<(String, Option<String>)> {
    if target == "*" {
        return (method == Method::Options).then(|| ("*".to_owned(), None));
    }
    if !target.starts_with('/') || target.contains('#') {
        return None;
    }
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    let decoded = percent_decode(raw_path.as_bytes())?;
    if decoded.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return None;
    }
    let decoded = String::from_utf8(decoded).ok()?;
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_dir = false;
    for seg in decoded.split(['/', '\\']) {
        match seg {
            "" | "." => trailing_dir = true,
            ".." => return None,
            s => {
                segments.push(s);
                trailing_dir = false;
            }
        }
    }
    let mut path = String::with_capacity(decoded.len() + 1);
    for s in &segments {
        path.push('/');
        path.push_str(s);
    }
    if segments.is_empty() || trailing_dir {
        path.push('/');
    }
    Some((path, query))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode `%XX` escapes; `None` on a truncated or non-hex escape.
pub(crate) fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            let hi = hex_val(*input.get(i + 1)?)?;
            let lo = hex_val(*input.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> Option<(String, Option<String>)> {
        parse_target(Method::Get, t)
    }

    fn path(t: &str) -> Option<String> {
        p(t).map(|(p, _)| p)
    }

    #[test]
    fn normal_paths() {
        assert_eq!(path("/"), Some("/".into()));
        assert_eq!(path("/static/a.txt"), Some("/static/a.txt".into()));
        assert_eq!(path("/a//b///c"), Some("/a/b/c".into()));
        assert_eq!(path("//a"), Some("/a".into()));
        assert_eq!(path("/a/./b/."), Some("/a/b/".into()));
        assert_eq!(path("/dir/"), Some("/dir/".into()));
        assert_eq!(path("/a%20b"), Some("/a b".into()));
        assert_eq!(path("/%C3%A9t%C3%A9"), Some("/été".into()));
        assert_eq!(path("/a...b/..c/c.."), Some("/a...b/..c/c..".into()));
        assert_eq!(path("/a%2fb"), Some("/a/b".into()));
        assert_eq!(path("/a\\b"), Some("/a/b".into()));
    }

    #[test]
    fn query_split() {
        assert_eq!(
            p("/g?size=10&x=%41"),
            Some(("/g".into(), Some("size=10&x=%41".into())))
        );
        assert_eq!(p("/g?"), Some(("/g".into(), Some(String::new()))));
        assert_eq!(p("/g?a?b"), Some(("/g".into(), Some("a?b".into()))));
        // `..` in the query is not a path segment
        assert_eq!(
            p("/g?x=/../.."),
            Some(("/g".into(), Some("x=/../..".into())))
        );
    }

    #[test]
    fn rejected() {
        for t in [
            "/..",
            "/../etc/passwd",
            "/a/../b",
            "/a/..",
            "/%2e%2e/x",
            "/%2E%2e",
            "/.%2e/x",
            "/a%2f..%2fb",
            "/a%5c..%5cb",
            "/a\\..\\b",
            "/a%00b",
            "/a%0ab",
            "/a%7f",
            "/a%",
            "/a%4",
            "/a%zz",
            "/%ff",
            "a/b",
            "http://example.com/a",
            "example.com:80",
            "/a#frag",
            "*",
        ] {
            assert_eq!(p(t), None, "{t:?} must be rejected");
        }
        assert_eq!(parse_target(Method::Options, "*"), Some(("*".into(), None)));
    }
}
