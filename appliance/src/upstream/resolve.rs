//! Host names for hyper-util's connector, resolved on tokio's blocking
//! pool (getaddrinfo: `/etc/hosts`, then DNS), each time a connection is
//! made — a name whose address changes is followed without a restart. Ours
//! rather than hyper-util's own resolver so a failure to resolve is told
//! apart from a failure to connect (its own error type, found in the
//! error's causes).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Resolver;

#[derive(Debug, thiserror::Error)]
#[error("resolving {name:?}: {source}")]
pub(super) struct ResolveError {
    name: String,
    #[source]
    source: std::io::Error,
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, ResolveError>> + Send>>;

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: the connector puts the address's port in.
            let host = name.clone();
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map(|a| a.collect::<Vec<SocketAddr>>());
            match found {
                Ok(addrs) => {
                    if addrs.is_empty() {
                        Err(ResolveError {
                            name,
                            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
                        })
                    } else {
                        Ok(addrs.into_iter())
                    }
                }
                Err(source) => Err(ResolveError { name, source }),
            }
        })
    }
}
