//! Deterministic simulation of hotpair nodes (DESIGN §8.2).
//!
//! In one process and in virtual time: a client (a smoltcp interface with
//! scripted HTTP connections, [`client`]), N nodes, each the replicator's
//! sans-IO node core ([`hotpair_replicator::node::NodeCore`]) driven
//! through the calls the TAP shell makes ([`node`]), an Ethernet switch
//! between them that delivers by destination MAC (TSO segmentation,
//! optional loss and reordering, [`lan`]) and one replication link per pair
//! of nodes that share a service address (ordered, lossless, delayed;
//! every message tagged with its address's channel).
//!
//! # Topologies
//! Who holds which address in which role is a [`topology::Topology`]
//! (DESIGN §4): **duplex** (B owns 10.77.0.10 and is its owner node, A
//! its primary), **dual-role** (A owns .10 with B its primary, B owns .11
//! with A its primary; one link carries both) and **ring N** (node i owns
//! 10.77.0.(10+i), node i+1 mod N is its primary; each node has two
//! links). Nodes are [`addresses::Who`] indices (A = 0, B = 1, ...; node i's
//! MAC ends in i+1). Outside duplex the client runs one copy of the
//! scenario's connections per address, all at once, so a kill meets live
//! connections of every address.
//!
//! # Time and steps
//! The clock is one `Instant` read when a run starts plus a `Duration` the
//! simulation advances; nothing reads the wall clock for behaviour. One
//! *step* delivers one event — a frame or a link message — to its recipient
//! and runs it, or, when nothing is due, moves the clock to the next
//! deadline (pending deliveries, each node core's `poll_timeout`, the
//! shell's 100 ms cap, the client's `poll_delay`) and runs whoever is due.
//! A run is a function of its [`world::RunSpec`] (topology, scenario, seed,
//! LAN, kill): the seed drives smoltcp's ISNs, the nodes' `generate` seeds,
//! LAN loss and reordering.
//!
//! # Failures and checks
//! A node can be killed before any step: dropped, with each of its peers
//! told `LinkIn::Lost` after what was on the wire ([`world::Variant::Lost`])
//! or told nothing, so their heartbeat timeouts must fire
//! ([`world::Variant::Silent`]), or never started ([`world::Variant::Absent`]).
//! Two variants leave the node's process alive, with the nodes' LAN and
//! application checks on ([`world::RunSpec::checks`]): its LAN cut and
//! later healed ([`world::Variant::Lan`]: it must hand its addresses over,
//! stand by and rejoin), or its application dead ([`world::Variant::App`]:
//! the application behind `/app/` and its database are in [`app`]). [`world::World::run`] then judges
//! DESIGN §5's promises 1-4 for every connection of every address: each
//! connection's received stream against the expected replies (an oracle
//! built from the same HTTP layer and handlers; a `generate` reply must
//! equal exactly one candidate generation), every segment the client is
//! handed against what it was handed before (same ISN, same bytes at every
//! sequence number, one FIN: [`wire`]), no RST while a connection lives,
//! and, per address, its owner's handler runs after a takeover against the
//! final replies logged to it before (and none while its primary lives).
//! It also checks the takeovers themselves: the owner of each address the
//! victim was primary for promotes its shadows, the primary of each
//! address the victim owned claims it, both end up serving it alone, and
//! nobody else takes anything over. [`matrix`] runs the kill matrix per
//! topology; [`isolate`] runs it in child processes so a run that
//! livelocks a node is a reported failure, not a hung test.
//!
//! # Where the client is not a kernel
//! smoltcp stands in for the client's kernel. Two differences matter for a
//! takeover and are bridged in [`client::Client`]: smoltcp ignores a
//! gratuitous ARP (Linux updates an existing entry: that is how a claim
//! reaches clients; the client keeps one entry per service address, so
//! after a dual-role or ring takeover it sends two addresses' frames to
//! one survivor's MAC), and it forgets a neighbour after 60 s and drops the
//! packet that finds it gone (Linux keeps using a stale entry while it
//! re-confirms it).
//!
//! Replay one run with the environment variables printed on failure; see
//! `tests/failover_matrix.rs`.

pub mod addresses;
pub mod app;
pub mod client;
pub mod content;
pub mod harness;
pub mod isolate;
pub mod lan;
pub mod matrix;
pub mod node;
pub mod reply;
pub mod rng;
pub mod sampled;
pub mod scenario;
pub mod threads;
pub mod tls;
pub mod topology;
pub mod wire;
pub mod world;

pub use addresses::Who;
pub use matrix::{run_matrix, MatrixConfig, Mode, Points, Report};
pub use topology::Topology;
pub use world::{Kill, Net, Outcome, RunSpec, Variant, World};
