//! The replication link: kernel TCP between two nodes, carrying the
//! replicator's length-prefixed messages for every service address they
//! share. One side listens, the other connects (and retries until the
//! listener is there); one task per peer. Once the
//! connection is up this task hands the socket to the stack thread, which
//! reads and writes it non-blocking in its own epoll loop (no thread handoff
//! per message; see `service::LinkSocket`).
//!
//! Before the socket is handed over, the peer is authenticated (Noise KK,
//! `secure.rs`) and has confirmed the session with a first transport
//! message (a replayed opening cannot): a connection that fails is refused
//! and logged, and the listener keeps waiting for the real peer.
//! Handshakes run side by side, at most [`MAX_HANDSHAKES`] at once and at
//! most [`MAX_HANDSHAKES_PER_SOURCE`] from one source address: a host that
//! opens silent connections faster than they time out holds a few slots,
//! never all, and a connection over either bound is closed at once rather
//! than left queued (the kernel's accept queue is first-in first-out: the
//! real peer would wait behind every silent connection). A replayed
//! opening is only a handshake that never confirms: the real peer, arriving
//! after it, takes the session when it confirms.
//!
//! One task per link session: once it is up the listener closes, so a
//! second session is refused. When the session ends the peer is declared
//! dead (this node takes over) and the stack thread starts a new task for
//! the link (`service::NodeShell::spawn_link`): the peer, restarted or back
//! from a partition, rejoins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hotpair_stack::Waker;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use hotpair_replicator::node::PeerId;

use crate::secure::{self, PeerKey, SecureError, Session};

/// News from a link task to the stack thread.
#[derive(Debug)]
pub enum LinkIn {
    /// The link is up and the peer authenticated: the stack thread reads and
    /// writes this socket itself, in its own epoll loop (no thread handoff
    /// per message), sealing and opening with the session.
    Socket(std::net::TcpStream, Session),
    /// The link could not be set up.
    Lost(String),
}

/// Handshakes the listener runs at once; more connections are closed.
pub const MAX_HANDSHAKES: usize = 16;
/// Handshakes from one source address at once: the real peer needs one;
/// a few allow for its retries overlapping a dying attempt.
pub const MAX_HANDSHAKES_PER_SOURCE: usize = 4;
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

/// Which connections the listener authenticates: bounded in all and per
/// source address (the state machine; `accept_authenticated` is its I/O).
#[derive(Debug, Default)]
pub struct Admission {
    per_source: HashMap<IpAddr, usize>,
    total: usize,
}

impl Admission {
    /// Whether a connection from `from` may start a handshake; if so it
    /// holds a slot until [`Admission::done`].
    pub fn admit(&mut self, from: IpAddr) -> bool {
        let n = self.per_source.entry(from).or_insert(0);
        if self.total >= MAX_HANDSHAKES || *n >= MAX_HANDSHAKES_PER_SOURCE {
            if *n == 0 {
                self.per_source.remove(&from);
            }
            return false;
        }
        *n += 1;
        self.total += 1;
        true
    }

    /// A handshake from `from` ended (either way): its slot is free.
    pub fn done(&mut self, from: IpAddr) {
        if let Some(n) = self.per_source.get_mut(&from) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.per_source.remove(&from);
            }
        }
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

/// The first connection on `l` that completes the handshake (and
/// confirms it); the others are refused (and logged). Handshakes run side
/// by side, each bounded by [`secure::HANDSHAKE_TIMEOUT`], as many as
/// [`Admission`] lets in; connections over its bounds are closed at once.
async fn accept_authenticated(
    l: &TcpListener,
    key: &PeerKey,
    refusals: &mut Refusals,
) -> std::io::Result<(TcpStream, Session)> {
    let mut handshakes = JoinSet::new();
    let mut admission = Admission::default();
    // Each task's source, so its slot is freed even if the task failed.
    let mut sources: HashMap<tokio::task::Id, IpAddr> = HashMap::new();
    loop {
        tokio::select! {
            accepted = l.accept() => {
                let (mut s, from) = accepted?;
                if !admission.admit(from.ip()) {
                    // Closed now, not queued: the accept queue is FIFO, and
                    // the real peer must not wait behind a flood.
                    drop(s);
                    refusals.note(&from.to_string(), &SecureError::Busy);
                    continue;
                }
                tracing::debug!(%from, "replication link: connection, authenticating");
                let key = key.clone();
                let task = handshakes.spawn(async move {
                    let r = secure::handshake(&mut s, &key, false).await;
                    (from, r.map(|session| (s, session)))
                });
                sources.insert(task.id(), from.ip());
            }
            Some(done) = handshakes.join_next_with_id() => {
                let id = match &done {
                    Ok((id, _)) => *id,
                    Err(e) => e.id(),
                };
                if let Some(ip) = sources.remove(&id) {
                    admission.done(ip);
                }
                match done.map(|(_, r)| r) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::{generate_keypair, LinkSecurityKey};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_source_holds_a_few_handshake_slots_never_all() {
        let mut a = Admission::default();
        let attacker = ip("10.77.0.100");
        let admitted = (0..100).filter(|_| a.admit(attacker)).count();
        assert_eq!(admitted, MAX_HANDSHAKES_PER_SOURCE);
        // The real peer, from its own address, still gets in.
        assert!(a.admit(ip("10.77.0.2")));
        // Many sources fill the rest, and no more.
        let others = (0..100u8)
            .filter(|&i| a.admit(IpAddr::from([10, 1, 0, i])))
            .count();
        assert_eq!(others, MAX_HANDSHAKES - MAX_HANDSHAKES_PER_SOURCE - 1);
        assert!(!a.admit(ip("10.77.0.3")));
        // A slot freed is a slot for the next; a source's count goes down.
        a.done(ip("10.77.0.2"));
        assert!(a.admit(ip("10.77.0.3")));
        a.done(attacker);
        a.done(ip("10.1.0.0"));
        assert!(a.admit(attacker));
        assert!(!a.admit(attacker));
        // A source never admitted frees nothing: one slot is left, not two.
        a.done(ip("192.0.2.1"));
        assert!(a.admit(ip("192.0.2.1")));
        assert!(!a.admit(ip("192.0.2.2")));
    }

    use crate::test_rt as rt;

    /// Keys for a listener (responder) and its peer (initiator).
    fn keys() -> (PeerKey, PeerKey) {
        let (l_priv, l_pub) = generate_keypair().unwrap();
        let (p_priv, p_pub) = generate_keypair().unwrap();
        (
            PeerKey::Noise {
                private: LinkSecurityKey(l_priv),
                peer_public: p_pub,
            },
            PeerKey::Noise {
                private: LinkSecurityKey(p_priv),
                peer_public: l_pub,
            },
        )
    }

    fn refusals() -> Refusals {
        Refusals {
            last: None,
            since: 0,
        }
    }

    /// The first handshake message a real initiator sends, as a LAN host
    /// would record it (here: a listener that reads it and hangs up).
    async fn recorded_opening(peer_key: &PeerKey) -> Vec<u8> {
        let tap = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tap.local_addr().unwrap();
        let k = peer_key.clone();
        let initiator = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = secure::handshake(&mut s, &k, true).await;
        });
        let (mut s, _) = tap.accept().await.unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.unwrap();
        let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut m).await.unwrap();
        drop(s);
        initiator.abort();
        [len.to_vec(), m].concat()
    }

    #[test]
    fn a_replayed_opening_does_not_take_the_session_from_the_real_peer() {
        let (listener_key, peer_key) = keys();
        rt().block_on(async {
            let opening = recorded_opening(&peer_key).await;
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let accept = tokio::spawn(async move {
                let (s, _) = accept_authenticated(&l, &listener_key, &mut refusals())
                    .await
                    .unwrap();
                s.peer_addr().unwrap()
            });
            // The replay: KK's first step accepts it and answers; then the
            // attacker is silent (it cannot confirm: it has not the
            // initiator's ephemeral key).
            let mut replay = TcpStream::connect(addr).await.unwrap();
            replay.write_all(&opening).await.unwrap();
            let mut answer = [0u8; 2];
            replay.read_exact(&mut answer).await.unwrap();
            // The real peer comes after it, and must be the one paired.
            let mut real = TcpStream::connect(addr).await.unwrap();
            let real_addr = real.local_addr().unwrap();
            let t0 = Instant::now();
            let session = secure::handshake(&mut real, &peer_key, true).await;
            assert!(session.is_ok(), "{session:?}");
            let paired = tokio::time::timeout(Duration::from_secs(2), accept)
                .await
                .expect("the real peer was not accepted within 2 s")
                .unwrap();
            assert_eq!(
                paired, real_addr,
                "the replayed opening was paired instead of the real peer"
            );
            assert!(t0.elapsed() < secure::HANDSHAKE_TIMEOUT);
            drop(replay);
        });
    }

    #[test]
    fn a_flood_of_silent_connections_from_one_host_does_not_delay_the_real_peer() {
        let (listener_key, peer_key) = keys();
        rt().block_on(async {
            let l = TcpListener::bind("0.0.0.0:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            let accept = tokio::spawn(async move {
                accept_authenticated(&l, &listener_key, &mut refusals())
                    .await
                    .unwrap()
                    .0
                    .peer_addr()
                    .unwrap()
            });
            // 40 silent connections from 127.0.0.2: more than every slot.
            let mut silent = Vec::new();
            for _ in 0..40 {
                let s = tokio::net::TcpSocket::new_v4().unwrap();
                s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                silent.push(s.connect(([127, 0, 0, 1], port).into()).await.unwrap());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            // The real peer, from 127.0.0.1, pairs at once — not once the
            // silent ones time out (HANDSHAKE_TIMEOUT, 3 s, per 16).
            let t0 = Instant::now();
            let mut real = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let real_addr = real.local_addr().unwrap();
            secure::handshake(&mut real, &peer_key, true).await.unwrap();
            let paired = tokio::time::timeout(Duration::from_secs(2), accept)
                .await
                .expect("the real peer was not accepted within 2 s")
                .unwrap();
            assert_eq!(paired, real_addr);
            assert!(
                t0.elapsed() < Duration::from_secs(1),
                "the real peer waited {:?}",
                t0.elapsed()
            );
            drop(silent);
        });
    }
}
