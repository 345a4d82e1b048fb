//! The socket pool: slots and their phases (listening or half-open, active,
//! lingering in TIME-WAIT), the armed listeners, TIME-WAIT recycling and the
//! release of idle receive buffers.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::Instant as StdInstant;

use managed::ManagedSlice;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};

use super::types::{ConnId, Role, Tuple};
use super::{buffers, Engine, Ready, RxSlab, SendBuffers, RX_RELEASE_BATCH, SPARE_LISTENERS};

pub(super) enum Phase<C> {
    /// Listening, or half-open (SYN received) with the client's tuple and
    /// when the handshake began.
    Listening {
        half_open: Option<Tuple>,
        since: Option<StdInstant>,
    },
    Active(Active<C>),
    /// Closed by the service, smoltcp still in TIME-WAIT. The tuple's track
    /// stays until the socket is released, so a shadow's late output is
    /// still translated (or discarded).
    Lingering {
        tuple: Tuple,
    },
}

pub(super) struct Slot<C> {
    pub(super) handle: SocketHandle,
    pub(super) phase: Phase<C>,
    /// In [`Pool::listeners`]: listening, free for the next SYN.
    pub(super) listed: bool,
}

pub(super) struct Active<C> {
    pub(super) conn: C,
    pub(super) tuple: Tuple,
    pub(super) deadline: Option<StdInstant>,
    /// (recv_queue, send_queue, state) when last driven: drive again only
    /// when this changes, the connection is woken, or its deadline passes.
    pub(super) seen: (usize, usize, tcp::State),
    pub(super) woken: bool,
    /// In [`Pool::rx_release`] (at most once).
    pub(super) release_queued: bool,
}

/// The sockets in use, in a slab whose indices are [`ConnId::slot`]s.
pub(super) struct Pool<C> {
    pub(super) slots: Vec<Option<Slot<C>>>,
    pub(super) generations: Vec<u32>,
    pub(super) free: Vec<usize>,
    /// Where the sockets' receive buffers come from, and go back to when
    /// a socket is released (see `engine/slab.rs`).
    pub(super) rx: &'static RxSlab,
    pub(super) in_use: usize,
    /// Free listeners (slots in LISTEN), each given at most one SYN.
    pub(super) listeners: Vec<usize>,
    /// Half-open slots by when their handshake began: the oldest is the
    /// one dropped at the `max_half_open` bound.
    pub(super) half_open: BTreeSet<(StdInstant, usize)>,
    /// Slots in TIME-WAIT, recycled (lowest first) when the pool is full.
    pub(super) lingering: BTreeSet<usize>,
    /// Which slots a round must look at (see `ready.rs`).
    pub(super) ready: Ready,
    /// Connections whose receive buffer was empty after a drive: (when
    /// to look again, slot, generation). If it is still empty then, its
    /// pages are released (`Engine::release_idle_rx`).
    pub(super) rx_release: BinaryHeap<Reverse<(StdInstant, usize, u32)>>,
    /// Send buffers, lent while a connection sends (see `buffers.rs`).
    pub(super) tx: SendBuffers,
}

/// A new socket with a receive buffer from `rx`; `None` if the slab has
/// no room (no arena could be mapped).
fn new_socket(rx: &'static RxSlab, mode: Role) -> Option<tcp::Socket<'static>> {
    let rx = tcp::SocketBuffer::new(rx.alloc()?);
    // No send buffer until the service may write (`buffers.rs`).
    let mut s = tcp::Socket::new(rx, buffers::empty());
    // Request/response: send a reply's tail at once.
    s.set_nagle_enabled(false);
    if mode == Role::Owner {
        // A shadow must acknowledge each client segment at once: that ACK is
        // what tells us the segment is held here and may go to the primary.
        s.set_ack_delay(None);
    }
    Some(s)
}

pub(super) fn listen(s: &mut tcp::Socket<'_>, port: u16) {
    if let Err(e) = s.listen(IpListenEndpoint { addr: None, port }) {
        // Only fails on port 0 or an open socket: both are bugs here.
        unreachable!("listen on a closed socket failed: {e}");
    }
}

/// The client tuple a socket holds, its local port from its own endpoint
/// (an address may serve two ports).
pub(super) fn tuple_of(s: &tcp::Socket<'_>) -> Option<Tuple> {
    let port = s.local_endpoint()?.port;
    match s.remote_endpoint()? {
        IpEndpoint {
            addr: IpAddress::Ipv4(a),
            port: p,
        } => Some((a, p, port)),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

impl<C> Pool<C> {
    pub(super) fn id(&self, i: usize) -> ConnId {
        ConnId {
            slot: i as u32,
            generation: self.generations[i],
        }
    }

    /// Take a closed socket out of the set and apart: its receive buffer
    /// goes back to the slab (its pages released), its send buffer to the
    /// spares. A new socket is cheap; what made parking worth it was the
    /// buffers, and a parked socket kept the pages its buffer had touched.
    pub(super) fn release(&mut self, i: usize, sockets: &mut SocketSet<'static>) {
        if let Some(slot) = self.slots[i].take() {
            self.ready.forget(i);
            self.lingering.remove(&i);
            #[allow(irrefutable_let_patterns)]
            if let smoltcp::socket::Socket::Tcp(sock) = sockets.remove(slot.handle) {
                self.give_back(sock);
            }
            self.free.push(i);
            self.in_use -= 1;
        }
    }

    /// Return a socket's buffers: receive to the slab, send to the spares.
    fn give_back(&mut self, sock: tcp::Socket<'static>) {
        let (rx, tx) = sock.into_buffers();
        self.tx.take_back(tx);
        match rx.into_storage() {
            ManagedSlice::Borrowed(b) => self.rx.free(b),
            ManagedSlice::Owned(_) => {}
        }
    }
}

impl<C> Engine<C> {
    /// Release the receive-buffer pages of connections queued by
    /// `step_slot` whose buffer still holds nothing (in order or out of
    /// order): an idle keep-alive connection then costs no page of it. A
    /// busy one is released at most once per [`RX_RELEASE_AFTER`] (and
    /// touches a page again with its next request), so this costs at most
    /// one `madvise` per connection per period; at most
    /// [`RX_RELEASE_BATCH`] per round. Invisible on the wire: the buffer's
    /// capacity, and so the window, is unchanged.
    pub(super) fn release_idle_rx(&mut self, now: StdInstant) {
        let mut n = 0;
        while n < RX_RELEASE_BATCH {
            let Some(&Reverse((due, i, generation))) = self.pool.rx_release.peek() else {
                break;
            };
            if due > now {
                break;
            }
            self.pool.rx_release.pop();
            n += 1;
            if self.pool.generations.get(i) != Some(&generation) {
                continue;
            }
            let Some(Slot {
                handle,
                phase: Phase::Active(a),
                ..
            }) = self.pool.slots[i].as_mut()
            else {
                continue;
            };
            a.release_queued = false;
            let sock = self.sockets.get_mut::<tcp::Socket>(*handle);
            if let Some(buf) = sock.recv_storage_if_empty() {
                if self.pool.rx.release(buf) {
                    self.stats.rx_released += 1;
                }
            }
        }
    }

    /// Keep [`SPARE_LISTENERS`] listeners armed within `max_connections`;
    /// when the pool is full, recycle a TIME-WAIT socket rather than refuse
    /// a new client (`listen` resets it silently; `abort` would send an RST).
    pub(super) fn top_up(&mut self) {
        let mut free = self.free_listeners();
        while free < SPARE_LISTENERS.min(self.pool_limit()) {
            if !self.arm_listener() {
                let Some(&i) = self.pool.lingering.first() else {
                    break;
                };
                self.recycle_lingering(i);
            }
            free += 1;
        }
    }

    /// Arm one more listener, if the pool has room.
    pub(super) fn arm_listener(&mut self) -> bool {
        if self.pool.in_use >= self.pool_limit() {
            return false;
        }
        // No buffer (no arena could be mapped): no listener, so the SYN
        // that wanted one is refused with an RST, as at a full pool.
        let Some(mut sock) = new_socket(self.pool.rx, self.mode) else {
            return false;
        };
        listen(&mut sock, self.cfg.port);
        let slot = Slot {
            handle: self.sockets.add(sock),
            phase: Phase::Listening {
                half_open: None,
                since: None,
            },
            listed: false,
        };
        let i = match self.pool.free.pop() {
            Some(i) => {
                self.pool.slots[i] = Some(slot);
                i
            }
            None => {
                self.pool.slots.push(Some(slot));
                self.pool.generations.push(0);
                self.pool.slots.len() - 1
            }
        };
        self.pool.in_use += 1;
        self.list_listener(i);
        true
    }

    /// Drop the track of `tuple` if it still belongs to slot `i`.
    pub(super) fn forget(&mut self, tuple: &Tuple, i: usize) {
        tracing::trace!(client = %tuple.0, port = tuple.1, slot = i, "socket released");
        if self.tracks.get(tuple).is_some_and(|t| t.slot == Some(i)) {
            self.untrack(tuple);
        }
    }

    /// Turn a TIME-WAIT slot back into a listener (silently: `listen`
    /// resets the socket; `abort` would send an RST).
    pub(super) fn recycle_lingering(&mut self, i: usize) {
        let Some(slot) = self.pool.slots[i].as_mut() else {
            return;
        };
        let Phase::Lingering { tuple } = slot.phase else {
            return;
        };
        listen(
            self.sockets.get_mut::<tcp::Socket>(slot.handle),
            self.cfg.port,
        );
        slot.phase = Phase::Listening {
            half_open: None,
            since: None,
        };
        self.pool.lingering.remove(&i);
        self.stats.time_wait_recycled += 1;
        self.forget(&tuple, i);
        self.list_listener(i);
    }
}
