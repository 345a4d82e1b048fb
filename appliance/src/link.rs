//! The replication link: kernel TCP between two nodes, carrying the
//! replicator's length-prefixed messages for every service address they
//! share. One side listens, the other connects (and retries until the
//! listener is there); one task per peer. Once the
//! connection is up this task hands the socket to the stack thread, which
//! reads and writes it non-blocking in its own epoll loop (no thread handoff
//! per message; see `service::LinkSocket`).
//!
//! Before the socket is handed over, the peer is authenticated (Noise KK,
//! `secure.rs`): a connection that fails the handshake is refused and
//! logged, and the listener keeps waiting for the real peer (handshakes run
//! side by side, so a silent connection cannot hold the place).
//!
//! One task per link session: once it is up the listener closes, so a
//! second session is refused. When the session ends the peer is declared
//! dead (this node takes over) and the stack thread starts a new task for
//! the link (`service::NodeShell::spawn_link`): the peer, restarted or back
//! from a partition, rejoins.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hotpair_stack::Waker;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use hotpair_replicator::node::PeerId;

use crate::secure::{self, PeerKey, SecureError, Session};
use crate::service::LinkIn;

/// Handshakes the listener runs at once; more connections wait.
const MAX_HANDSHAKES: usize = 16;
/// At most one warning about refused link connections per this interval.
const REFUSED_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Rate-limited warnings about connections that failed authentication.
struct Refusals {
    last: Option<Instant>,
    since: u64,
}

impl Refusals {
    fn note(&mut self, from: &str, e: &SecureError) {
        self.since += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < REFUSED_WARN_INTERVAL)
        {
            return;
        }
        tracing::warn!(from = %from, error = %e, refused = self.since, "replication link: connection refused (authentication)");
        self.last = Some(now);
        self.since = 0;
    }
}

/// How the link is set up.
#[derive(Debug, Clone)]
pub enum LinkSetup {
    Listen(SocketAddr),
    Connect(SocketAddr),
}

/// Run the link until its session ends.
pub async fn run(
    setup: LinkSetup,
    key: PeerKey,
    peer: PeerId,
    to_stack: mpsc::Sender<(PeerId, LinkIn)>,
    waker: Waker,
) {
    let notify = |m: LinkIn| {
        let _ = to_stack.send((peer, m));
        waker.wake();
    };
    let mut refusals = Refusals {
        last: None,
        since: 0,
    };
    let (stream, session) = match &setup {
        LinkSetup::Listen(addr) => match TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, "replication link: waiting for the peer");
                match accept_authenticated(&l, &key, &mut refusals).await {
                    Ok(s) => s,
                    Err(e) => {
                        notify(LinkIn::Lost(format!("accept on {addr}: {e}")));
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::error!(%addr, error = %e, "replication link: cannot listen");
                notify(LinkIn::Lost(format!("listen on {addr}: {e}")));
                return;
            }
        },
        LinkSetup::Connect(addr) => loop {
            match TcpStream::connect(addr).await {
                Ok(mut s) => match secure::handshake(&mut s, &key, true).await {
                    Ok(session) => {
                        tracing::info!(%addr, secured = !session.is_plaintext(), "replication link: connected");
                        break (s, session);
                    }
                    Err(e) => {
                        refusals.note(&addr.to_string(), &e);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "replication link: peer not there yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        },
    };
    // From here on the stack thread reads and writes the socket itself,
    // in its own epoll loop: no thread handoff per message.
    match stream.into_std() {
        Ok(s) => notify(LinkIn::Socket(s, session)),
        Err(e) => notify(LinkIn::Lost(format!("taking the socket: {e}"))),
    }
}

/// The first connection on `l` that completes the handshake; the others
/// are refused (and logged). Handshakes run side by side, each bounded by
/// [`secure::HANDSHAKE_TIMEOUT`].
async fn accept_authenticated(
    l: &TcpListener,
    key: &PeerKey,
    refusals: &mut Refusals,
) -> std::io::Result<(TcpStream, Session)> {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = l.accept(), if handshakes.len() < MAX_HANDSHAKES => {
                let (mut s, from) = accepted?;
                tracing::debug!(%from, "replication link: connection, authenticating");
                let key = key.clone();
                handshakes.spawn(async move {
                    let r = secure::handshake(&mut s, &key, false).await;
                    (from, r.map(|session| (s, session)))
                });
            }
            Some(done) = handshakes.join_next() => {
                match done {
                    Ok((from, Ok((s, session)))) => {
                        tracing::info!(%from, secured = !session.is_plaintext(), "replication link: accepted");
                        return Ok((s, session));
                    }
                    Ok((from, Err(e))) => refusals.note(&from.to_string(), &e),
                    Err(e) => tracing::warn!(error = %e, "replication link: a handshake task failed"),
                }
            }
        }
    }
}
