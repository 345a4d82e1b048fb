//! The final replies a shadow holds that the client has not acknowledged
//! whole. The primary counted their requests on its routes; when it dies
//! this node finishes them, so at the takeover they are counted here too
//! (the survivor's route counters show the request it took over, as an
//! operator reading them after a failover expects).

use std::collections::VecDeque;

use bytes::Bytes;

use super::super::handler::Route;

/// A shadow holds the replies of at most this many pipelined requests
/// unacknowledged before the oldest are forgotten (then not counted at a
/// takeover): the primary's output bound keeps the real number far lower
/// for any client that reads; this bounds a memory that is only for
/// counting.
const MAX_TRACKED: usize = 64;

/// One final reply: where it ends in the connection's output, its route
/// and status (when known: an HTTPS unit carries ciphertext).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    pub end: u64,
    pub route: Option<usize>,
    pub status: Option<u16>,
}

#[derive(Debug, Default)]
pub(crate) struct Unacked {
    /// Bytes handed to the socket so far.
    sent: u64,
    replies: VecDeque<Reply>,
}

impl Unacked {
    /// A final reply was appended to the output whose bytes not yet in the
    /// socket are `waiting`.
    pub fn reply(&mut self, waiting: u64, route: Option<usize>, status: Option<u16>) {
        if self.replies.len() == MAX_TRACKED {
            self.replies.pop_front();
        }
        self.replies.push_back(Reply {
            end: self.sent + waiting,
            route,
            status,
        });
    }

    /// `n` more bytes went into the socket, which holds `in_socket` the
    /// client has not acknowledged: forget the replies it has whole.
    pub fn sent(&mut self, n: usize, in_socket: usize) {
        self.sent += n as u64;
        let acked = self.sent.saturating_sub(in_socket as u64);
        while self.replies.front().is_some_and(|r| r.end <= acked) {
            self.replies.pop_front();
        }
    }

    /// The takeover: the replies not acknowledged whole while the socket
    /// holds `in_socket` unacknowledged bytes.
    pub fn take(&mut self, in_socket: usize) -> impl Iterator<Item = Reply> + '_ {
        let acked = self.sent.saturating_sub(in_socket as u64);
        self.replies.drain(..).filter(move |r| r.end > acked)
    }
}

/// A shadow's record: none while every reply it holds is acknowledged
/// whole and nothing waits in its socket (an idle keep-alive connection
/// pays nothing for it). Positions count from when the record was made;
/// acknowledged = sent since then − still in the socket, exact whatever
/// went before.
pub(crate) type Record = Option<Box<Unacked>>;

/// A final reply was appended to the output (see [`Unacked::reply`]).
pub(crate) fn note(r: &mut Record, waiting: u64, route: Option<usize>, status: Option<u16>) {
    r.get_or_insert_with(Box::default)
        .reply(waiting, route, status);
}

/// `n` more bytes went into the socket (see [`Unacked::sent`]).
pub(crate) fn sent(r: &mut Record, n: usize, in_socket: usize) {
    if let Some(u) = r {
        u.sent(n, in_socket);
        if u.replies.is_empty() && in_socket == 0 {
            *r = None;
        }
    }
}

/// The route a request's head names (the same prefix match as the live
/// side's), from the first line of its bytes.
pub(crate) fn route_of(routes: &[Route], request: &[u8]) -> Option<usize> {
    let start = request.iter().position(|b| !b"\r\n".contains(b))?;
    let line = request[start..].split(|b| *b == b'\n').next()?;
    let target = line.split(|b| *b == b' ').nth(1)?;
    let path = std::str::from_utf8(target).ok()?;
    routes.iter().position(|r| path.starts_with(&r.prefix))
}

/// The status of a reply from its first bytes (`HTTP/1.1 200 …`), which
/// may be split across chunks.
pub(crate) fn status_of<'a>(chunks: impl IntoIterator<Item = &'a Bytes>) -> Option<u16> {
    let mut head = [0u8; 12];
    let mut n = 0;
    for c in chunks {
        let take = (head.len() - n).min(c.len());
        head[n..n + take].copy_from_slice(&c[..take]);
        n += take;
        if n == head.len() {
            break;
        }
    }
    if n < head.len() || !head.starts_with(b"HTTP/1.") || head[8] != b' ' {
        return None;
    }
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_replies_the_client_has_not_acknowledged_whole_are_taken_over() {
        let mut u = Unacked::default();
        u.reply(100, Some(0), Some(200)); // ends at 100
        u.reply(150, Some(1), Some(404)); // ends at 150
        u.sent(120, 120); // nothing acknowledged yet
        assert_eq!(u.replies.len(), 2);
        u.sent(30, 50); // 100 acknowledged: the first is whole
        assert_eq!(u.replies.len(), 1);
        let taken: Vec<_> = u.take(10).collect(); // 140 of 150 acknowledged
        assert_eq!(
            taken,
            vec![Reply {
                end: 150,
                route: Some(1),
                status: Some(404)
            }]
        );
        let mut u = Unacked::default();
        u.reply(10, None, None);
        u.sent(10, 0);
        assert_eq!(u.take(0).count(), 0, "acknowledged whole: the primary's");
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut u = Unacked::default();
        for i in 0..(MAX_TRACKED as u64 * 2) {
            u.reply(i, None, None);
        }
        assert_eq!(u.replies.len(), MAX_TRACKED);
        assert_eq!(u.take(1 << 20).count(), MAX_TRACKED);
    }

    #[test]
    fn status_and_route_come_from_the_first_bytes() {
        let parts = [
            Bytes::from_static(b"HTTP/1.1 2"),
            Bytes::from_static(b"06 Partial"),
        ];
        assert_eq!(status_of(&parts), Some(206));
        assert_eq!(status_of(&[Bytes::from_static(b"HTTP/1.1 20")]), None);
        assert_eq!(
            status_of(&[Bytes::from_static(b"\x17\x03\x03 ciphertext")]),
            None
        );
    }
}
