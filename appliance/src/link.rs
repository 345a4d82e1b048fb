//! The replication link: kernel TCP between two nodes, carrying the
//! replicator's length-prefixed messages for every service address they
//! share. One side listens, the other connects (and retries until the
//! listener is there); one task per peer. Once the
//! connection is up this task hands the socket to the stack thread, which
//! reads and writes it non-blocking in its own epoll loop (no thread handoff
//! per message; see `service::LinkSocket`).
//!
//! One link session per process: once it ends the peer is dead for good and
//! this node serves alone (a repaired node rejoining is not built yet).

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use hotpair_stack::Waker;
use tokio::net::{TcpListener, TcpStream};

use hotpair_replicator::node::PeerId;

use crate::service::LinkIn;

/// How the link is set up.
#[derive(Debug, Clone)]
pub enum LinkSetup {
    Listen(SocketAddr),
    Connect(SocketAddr),
}

/// Run the link until its session ends.
pub async fn run(
    setup: LinkSetup,
    peer: PeerId,
    to_stack: mpsc::Sender<(PeerId, LinkIn)>,
    waker: Waker,
) {
    let notify = |m: LinkIn| {
        let _ = to_stack.send((peer, m));
        waker.wake();
    };
    let stream = match &setup {
        LinkSetup::Listen(addr) => match TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, "replication link: waiting for the peer");
                match l.accept().await {
                    Ok((s, peer)) => {
                        tracing::info!(%peer, "replication link: accepted");
                        s
                    }
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
                Ok(s) => {
                    tracing::info!(%addr, "replication link: connected");
                    break s;
                }
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
        Ok(s) => notify(LinkIn::Socket(s)),
        Err(e) => notify(LinkIn::Lost(format!("taking the socket: {e}"))),
    }
}
