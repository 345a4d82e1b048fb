//! hotpair's network stack: smoltcp over a TAP device opened with a vnet
//! header and TCP segmentation offload, with the per-connection machinery of
//! replication (shadow sockets, sequence alignment, forwarding).
//!
//! Layers, bottom up:
//! - `tap`: the TAP file descriptor (libc ioctls: `IFF_VNET_HDR`, offload).
//! - [`vnet`]: the `virtio_net_hdr` codec and checksum offload contract (pure).
//! - [`seg`], [`arp`]: reading, rewriting and building frames (pure).
//! - [`engine`]: sans-IO — smoltcp, the socket pool and replication modes
//!   over in-memory frame queues, driving a [`engine::Service`].
//! - `runtime`: the TAP shell — one thread, epoll, batches of frames (with
//!   `tap` and `pcap`, behind the `shell` feature: the sans-IO crates above
//!   this one do without it; the appliance enables it).

pub mod arp;
pub mod bytes;
pub mod engine;
#[cfg(feature = "shell")]
pub mod pcap;
#[cfg(feature = "shell")]
pub mod runtime;
pub mod seg;
#[cfg(feature = "shell")]
pub mod tap;
pub mod vnet;

pub use engine::{
    Admission, ConnId, ConnInfo, ConnKey, CookieKey, Engine, Frame, Role, Service, StackConfig,
    SynCookies,
};
#[cfg(feature = "shell")]
pub use runtime::{Node, Shell, Waker};
pub use smoltcp;
