//! The replication link: kernel TCP between the two nodes, carrying the
//! replicator's length-prefixed messages. The primary listens, the ingress
//! node connects (and retries until the primary is there). Messages from
//! the stack thread arrive on a bounded channel (back-pressure: the stack
//! thread keeps what does not fit and stops polling the replica); messages
//! from the peer go to the stack thread through a channel and its waker.
//!
//! One link session per process: once it ends the peer is dead for good and
//! this node serves alone (a repaired node rejoining is not built yet).

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use hotpair_replicator::wire::Decoder;
use hotpair_replicator::Msg;
use hotpair_stack::Waker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::service::LinkIn;

/// How the link is set up.
#[derive(Debug, Clone)]
pub enum LinkSetup {
    Listen(SocketAddr),
    Connect(SocketAddr),
}

/// Capacity of the stack thread → link channel, in messages.
pub const LINK_QUEUE: usize = 4096;
/// Batch writes up to this many bytes.
const WRITE_BATCH: usize = 1 << 20;

/// Run the link until its session ends.
pub async fn run(
    setup: LinkSetup,
    to_stack: mpsc::Sender<LinkIn>,
    mut from_stack: tokio::sync::mpsc::Receiver<Msg>,
    waker: Waker,
) {
    let notify = |m: LinkIn| {
        let _ = to_stack.send(m);
        waker.wake();
    };
    let stream = match &setup {
        LinkSetup::Listen(addr) => match TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, "replication link: waiting for the ingress node");
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
                    tracing::debug!(%addr, error = %e, "replication link: primary not there yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        },
    };
    let _ = stream.set_nodelay(true);
    notify(LinkIn::Connected);
    let (mut rd, mut wr) = stream.into_split();
    let reader = {
        let to_stack = to_stack.clone();
        let waker = waker.clone();
        async move {
            let mut dec = Decoder::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match rd.read(&mut buf[..dec.room().clamp(1, 256 * 1024)]).await {
                    Ok(0) => return "peer closed the link".to_string(),
                    Ok(n) => n,
                    Err(e) => return format!("read: {e}"),
                };
                dec.feed(&buf[..n]);
                loop {
                    match dec.next() {
                        Ok(Some(m)) => {
                            let _ = to_stack.send(LinkIn::Msg(m));
                        }
                        Ok(None) => break,
                        Err(e) => return format!("peer sent garbage: {e}"),
                    }
                }
                waker.wake();
            }
        }
    };
    let writer = async move {
        let mut out = Vec::with_capacity(WRITE_BATCH);
        loop {
            let Some(m) = from_stack.recv().await else {
                return "node stopping".to_string();
            };
            out.clear();
            if let Err(e) = m.encode(&mut out) {
                return format!("encode: {e}");
            }
            // Batch whatever else is queued.
            while out.len() < WRITE_BATCH {
                match from_stack.try_recv() {
                    Ok(m) => {
                        if let Err(e) = m.encode(&mut out) {
                            return format!("encode: {e}");
                        }
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = wr.write_all(&out).await {
                return format!("write: {e}");
            }
        }
    };
    let why = tokio::select! {
        w = reader => w,
        w = writer => w,
    };
    notify(LinkIn::Lost(why));
}
