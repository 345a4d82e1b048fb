//! `proxy_protocol = "v2"`: each request on a connection of its own that
//! opens with a PROXY protocol v2 header (the client's address and the
//! service address it connected to), for an application that reads the
//! client's address from it (HAProxy's protocol; nginx `proxy_protocol`,
//! Envoy, many application servers). The header describes the connection,
//! so a connection cannot carry the requests of different clients: these
//! connections are not pooled — one connect per request, closed after
//! its reply.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{chain, ProxyError};

/// The v2 signature (its 12 first bytes).
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The PROXY v2 header for a TCP connection from `client` to `service`
/// (addresses of mixed families are both written as IPv6).
pub(super) fn header_v2(client: SocketAddr, service: SocketAddr) -> Vec<u8> {
    let mut h = Vec::with_capacity(16 + 36);
    h.extend_from_slice(&SIGNATURE);
    // Version 2, command PROXY.
    h.push(0x21);
    match (client.ip(), service.ip()) {
        (IpAddr::V4(c), IpAddr::V4(s)) => {
            // TCP over IPv4; 12 bytes of addresses.
            h.push(0x11);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&c.octets());
            h.extend_from_slice(&s.octets());
        }
        (c, s) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            // TCP over IPv6; 36 bytes of addresses.
            h.push(0x21);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(c).octets());
            h.extend_from_slice(&v6(s).octets());
        }
    }
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&service.port().to_be_bytes());
    h
}

/// Connect to `address` (`host:port`), the addresses a name resolves to
/// in turn, each within `timeout`.
async fn connect(address: &str, timeout: std::time::Duration) -> Result<TcpStream, ProxyError> {
    let addrs: Vec<SocketAddr> = match address.parse::<SocketAddr>() {
        Ok(a) => vec![a],
        Err(_) => tokio::net::lookup_host(address)
            .await
            .map_err(|e| ProxyError::Resolve(format!("resolving {address:?}: {e}")))?
            .collect(),
    };
    let mut last = ProxyError::Resolve(format!("resolving {address:?}: no address"));
    for a in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(a)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = ProxyError::Connect(format!("{a}: {e}")),
            Err(_) => last = ProxyError::ConnectTimeout(timeout),
        }
    }
    Err(last)
}

/// Send `req` on a new connection opened with the PROXY header; the
/// connection ends with the reply (its task ends when the reply's body is
/// read or dropped). `Err` says whether the request may be sent again (it
/// failed before any reply).
pub(super) async fn send(
    address: &str,
    connect_timeout: std::time::Duration,
    header: &[u8],
    req: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, (ProxyError, bool)> {
    let mut s = connect(address, connect_timeout).await.map_err(|e| {
        let again = matches!(e, ProxyError::Connect(_));
        (e, again)
    })?;
    let _ = s.set_nodelay(true);
    s.write_all(header).await.map_err(|e| {
        (
            ProxyError::Connect(format!("sending the PROXY header: {e}")),
            true,
        )
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .map_err(|e| (ProxyError::Protocol(chain(&e)), false))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %chain(&e), "upstream connection (PROXY protocol) ended");
        }
    });
    sender.send_request(req).await.map_err(|e| {
        let err = ProxyError::Protocol(chain(&e));
        let again = super::retryable(&e, &err);
        (err, again)
    })
}
