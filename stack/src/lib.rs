//! hotpair's network stack: smoltcp over a TAP device opened with a vnet
//! header and TCP segmentation offload.
//!
//! Layers, bottom up:
//! - [`tap`]: the TAP file descriptor (libc ioctls: `IFF_VNET_HDR`, offload).
//! - [`vnet`]: the `virtio_net_hdr` codec and checksum offload contract (pure).
//! - [`device`]: the smoltcp `Device` over the TAP, with pcap and a guard
//!   against duplicate SYNs.
//! - [`runtime`]: the single stack thread — poll loop, listener pool,
//!   connection slots, waker — driving a [`runtime::Service`].

pub mod arp;
pub mod device;
pub mod pcap;
pub mod runtime;
pub mod tap;
pub mod vnet;

pub use runtime::{ConnId, Service, Stack, StackConfig, Waker};
pub use smoltcp;
