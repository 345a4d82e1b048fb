//! Deterministic simulation of a hotpair pair (DESIGN §8.2).
//!
//! In one process and in virtual time: a client (a smoltcp interface with
//! scripted HTTP connections, [`client`]), node A (primary) and node B
//! (ingress), each the stack's sans-IO [`hotpair_stack::Engine`] driving the
//! appliance's [`hotpair::service::NodeService`] the way `Shell::run` does
//! ([`node`]), an Ethernet switch between the three (TSO segmentation,
//! optional loss and reordering, [`lan`]) and the replication link
//! (ordered, lossless, delayed).
//!
//! # Time and steps
//! The clock is one `Instant` read when a run starts plus a `Duration` the
//! simulation advances; nothing reads the wall clock for behaviour. One
//! *step* delivers one event — a frame or a link message — to its recipient
//! and runs it, or, when nothing is due, moves the clock to the next
//! deadline (pending deliveries, each engine's `poll_delay`, each service's
//! `poll_timeout`, the shell's 100 ms cap, the client's `poll_delay`) and
//! runs whoever is due. A run is a function of its [`world::RunSpec`]: the
//! seed drives smoltcp's ISNs, the nodes' `generate` seeds, LAN loss and
//! reordering.
//!
//! # Failures and checks
//! A node can be killed before any step: dropped, with the survivor told
//! `LinkIn::Lost` after what was on the wire ([`world::Variant::Lost`]) or
//! told nothing, so its heartbeat timeout must fire
//! ([`world::Variant::Silent`]). [`world::World::run`] then judges
//! DESIGN §5's promises 1-4: each connection's received stream against the
//! expected replies (an oracle built from the same HTTP layer and handlers;
//! a `generate` reply must equal exactly one candidate generation), every
//! segment the client is handed against what it was handed before (same
//! ISN, same bytes at every sequence number, one FIN: [`wire`]), no RST
//! while a connection lives, and B's handler runs after a takeover against
//! the final replies logged to it before. [`matrix`] runs the kill matrix;
//! [`isolate`] runs it in child processes so a run that livelocks a node is
//! a reported failure, not a hung test.
//!
//! # Where the client is not a kernel
//! smoltcp stands in for the client's kernel. Two differences matter for a
//! takeover and are bridged in [`client::Client`]: smoltcp ignores a
//! gratuitous ARP (Linux updates an existing entry: that is how a claim
//! reaches clients), and it forgets a neighbour after 60 s and drops the
//! packet that finds it gone (Linux keeps using a stale entry while it
//! re-confirms it).
//!
//! Replay one run with the environment variables printed on failure; see
//! `tests/failover_matrix.rs`.

pub mod client;
pub mod content;
pub mod isolate;
pub mod lan;
pub mod matrix;
pub mod node;
pub mod reply;
pub mod rng;
pub mod scenario;
pub mod wire;
pub mod world;

pub use matrix::{run_matrix, MatrixConfig, Points, Report};
pub use node::Who;
pub use world::{Kill, Net, Outcome, RunSpec, Variant, World};
