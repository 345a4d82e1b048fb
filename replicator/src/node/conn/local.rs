//! Replies this node makes from its own copy of a `static` route's content
//! (the owner node's copy of the primary's reply, made ahead or for a
//! local unit): the same HTTP code the primary ran, fed the same request
//! bytes.

use std::time::Instant;

use bytes::Bytes;
use hotpair_http::ServerConn;

use super::super::handler::Handler;
use super::Shared;
use crate::{Policy, UnitKind};

/// The final reply of request `index`, made from this node's own copy of a
/// `static` route's content: the same HTTP code the primary ran, fed the
/// same request bytes, so the same bytes come out (no `Date`, no node name
/// in a reply). `request` is the client input from the request's first
/// byte on. With `ahead`, only a request that a `static` route whose
/// content matched the peer's (`ahead[route]`) answers with nothing before
/// the reply (no `Expect`) gets one, from the current generation; others
/// are an error. With `generation` (a local unit's digest), the reply is
/// made from exactly that content generation — the current one or the one
/// a reload retired — or not at all ([`NoReply::Generation`]): the same
/// request bytes under other content would be other reply bytes.
pub(super) fn local_reply(
    shared: &Shared,
    index: u64,
    continue_sent: bool,
    request: &[u8],
    now: Instant,
    ahead: Option<&[bool]>,
    generation: Option<&[u8; 32]>,
) -> Result<LocalReply, NoReply> {
    let mut http = ServerConn::resume(shared.limits, now, index, continue_sent);
    let taken = http.handle_input(request, now);
    let Some(req) = http.poll_request() else {
        return Err(NoReply::Partial(format!(
            "no whole request in {} bytes (took {taken})",
            request.len()
        )));
    };
    if req.index != index {
        return Err(format!("parsed request {} for unit {index}", req.index).into());
    }
    let (i, route) = shared
        .routes
        .iter()
        .enumerate()
        .find(|(_, r)| req.path.starts_with(&r.prefix))
        .ok_or_else(|| format!("no route for {:?}", req.path))?;
    if let Some(ok) = ahead {
        if route.policy == Policy::Logged {
            return Err(format!("route {:?} is logged", route.prefix).into());
        }
        if ok.get(i) != Some(&true) {
            return Err(NoReply::Logged);
        }
        if req.header("expect").is_some() {
            // The primary may answer `100 Continue` first: its unit decides.
            return Err("the request expects 100 Continue".into());
        }
    }
    let (files, digest) = match generation {
        // The current generation, if it is the one named (the digest
        // covers the prefix and every file: equal digests, equal replies).
        Some(d) if shared.digests.get(i) == Some(d) => match &route.handler {
            Handler::Files(f) => (f, *d),
            _ => return Err(format!("route {:?} is not a files route here", route.prefix).into()),
        },
        Some(d) => shared
            .retired
            .iter()
            .find_map(|(r, rd)| match &r.handler {
                Handler::Files(f) if rd == d && req.path.starts_with(&r.prefix) => Some((f, *d)),
                _ => None,
            })
            .ok_or(NoReply::Generation(*d))?,
        None => match &route.handler {
            Handler::Files(f) => (f, shared.digests.get(i).copied().unwrap_or_default()),
            _ => return Err(format!("route {:?} is not a files route here", route.prefix).into()),
        },
    };
    let resp = files.handle(&req);
    let _ = http.send_response(index, resp);
    while let Some(u) = http.take_unit() {
        match u.kind {
            UnitKind::Final => {
                return Ok(LocalReply {
                    chunks: u.chunks,
                    input_end: u.input_end,
                    close_after: u.close_after,
                    digest,
                })
            }
            UnitKind::Interim if ahead.is_some() => {
                return Err("an interim reply came first".into())
            }
            UnitKind::Interim => {}
        }
    }
    Err("no final reply came out".into())
}

/// Whether `chunks`, end to end, are `whole`.
pub(super) fn same_bytes(chunks: &[Bytes], whole: &[u8]) -> bool {
    let mut rest = whole;
    for c in chunks {
        match rest.split_at_checked(c.len()) {
            Some((head, tail)) if head == &c[..] => rest = tail,
            _ => return false,
        }
    }
    rest.is_empty()
}

/// Why `local_reply` made nothing.
pub(super) enum NoReply {
    /// The request is not whole yet.
    Partial(String),
    /// This node cannot (or must not) make this reply.
    Not(String),
    /// A `static` route not in use now (the digest guard).
    Logged,
    /// The content generation a local unit names is not held here.
    Generation([u8; 32]),
}

impl From<String> for NoReply {
    fn from(why: String) -> Self {
        NoReply::Not(why)
    }
}

impl From<&str> for NoReply {
    fn from(why: &str) -> Self {
        NoReply::Not(why.into())
    }
}

impl std::fmt::Display for NoReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoReply::Partial(why) | NoReply::Not(why) => f.write_str(why),
            NoReply::Logged => f.write_str("the route's content is not known to match the peer's"),
            NoReply::Generation(d) => write!(
                f,
                "the primary made its reply from content generation {}, which this node does not hold (reloaded twice since, or never loaded it)",
                short_digest(d)
            ),
        }
    }
}

/// The first bytes of a digest in hex, as logs and status name a
/// content generation.
pub(crate) fn short_digest(d: &[u8; 32]) -> String {
    d[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// What `local_reply` made.
pub(super) struct LocalReply {
    /// As the HTTP layer made them (a file's body is shared with the
    /// cache, not copied).
    pub chunks: Vec<Bytes>,
    /// Where the request ends, from the first byte `local_reply` was given.
    pub input_end: u64,
    pub close_after: bool,
    /// The content generation it was made from.
    pub digest: [u8; 32],
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use hotpair_http::Limits;

    use super::super::super::handler::Route;
    use super::*;

    fn files(tag: &str, body: &[u8]) -> hotpair_http::files::Files {
        let dir = std::env::temp_dir().join(format!("hotpair-conn-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.txt"), body).unwrap();
        let f = hotpair_http::files::Files::load(&dir, "/s/").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        f
    }

    fn route(f: hotpair_http::files::Files) -> Route {
        Route {
            prefix: "/s/".into(),
            handler: Handler::Files(f),
            policy: Policy::Static,
        }
    }

    fn body(r: &LocalReply) -> Vec<u8> {
        r.chunks.concat()
    }

    /// A reload between the primary's static decision and the owner's copy:
    /// the owner makes its copy from the generation the unit names — the
    /// current one or the one the reload retired — and from no other.
    #[test]
    #[allow(clippy::disallowed_methods)] // a test's origin of time
    fn a_local_reply_is_made_from_the_named_generation_or_not_at_all() {
        let now = Instant::now();
        let (old, new) = (files("old", b"version one"), files("new", b"version two!"));
        let (d_old, d_new) = (old.digest(), new.digest());
        let shared = Shared {
            routes: vec![route(new)],
            digests: vec![d_new],
            retired: vec![(route(old), d_old)],
            limits: Limits::default(),
            jobs: VecDeque::new(),
            inline_generate: false,
            tls_jobs: VecDeque::new(),
            seed: 0,
            handler_runs: 0,
            local_replies: 0,
            generation_missing: 0,
            diverged: 0,
            replies_ahead: 0,
            logged: false,
            served_dropped: 0,
            served: None,
        };
        let req = b"GET /s/a.txt HTTP/1.1\r\nHost: x\r\n\r\n";
        let made = |g: Option<&[u8; 32]>, ahead: Option<&[bool]>| {
            local_reply(&shared, 0, false, req, now, ahead, g)
        };
        // Decided under the old content (before the primary heard of this
        // node's reload): the old bytes.
        let r = made(Some(&d_old), None)
            .ok()
            .expect("the retired generation");
        assert!(body(&r).ends_with(b"version one"), "{:?}", body(&r));
        assert_eq!(r.digest, d_old);
        // Under the new: the new bytes.
        let r = made(Some(&d_new), None)
            .ok()
            .expect("the current generation");
        assert!(body(&r).ends_with(b"version two!"));
        // A generation never held (or dropped by a second reload): nothing,
        // so the shadow is given up instead of holding other bytes.
        assert!(matches!(
            made(Some(&[1; 32]), None),
            Err(NoReply::Generation(d)) if d == [1; 32]
        ));
        // A reply made ahead comes from the current generation and says so.
        let r = made(None, Some(&[true])).ok().expect("made ahead");
        assert_eq!(r.digest, d_new);
        assert!(body(&r).ends_with(b"version two!"));
    }

    #[test]
    fn chunks_compare_with_a_whole_payload_end_to_end() {
        let c = |parts: &[&'static [u8]]| {
            parts
                .iter()
                .map(|p| Bytes::from_static(p))
                .collect::<Vec<_>>()
        };
        assert!(same_bytes(
            &c(&[b"HTTP/1.1 200", b" OK"]),
            b"HTTP/1.1 200 OK"
        ));
        assert!(same_bytes(&c(&[b"", b"ab", b""]), b"ab"));
        assert!(same_bytes(&c(&[]), b""));
        assert!(!same_bytes(&c(&[b"ab", b"c"]), b"abd"));
        assert!(!same_bytes(&c(&[b"ab", b"c"]), b"abcd"));
        assert!(!same_bytes(&c(&[b"ab", b"cd"]), b"abc"));
    }
}
