//! The stack thread: one thread owns the TAP, the smoltcp `Interface` and the
//! sockets. It polls, lets the [`Service`] move bytes on each connection that
//! changed, repeats while anything moved, and otherwise sleeps in `epoll` on
//! the TAP fd and an eventfd (the [`Waker`]) for no longer than smoltcp's
//! `poll_delay` and the service's deadlines, rounded up to a millisecond. No
//! busy spinning.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpCidr, IpEndpoint, IpListenEndpoint, Ipv4Address, Ipv4Cidr,
};

use crate::device::{TapPhy, Tuple};

/// Identifies one connection for its whole life: the pool slot plus a
/// generation that changes each time the slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub slot: u32,
    pub generation: u32,
}

/// What runs on top of the stack: the HTTP server in the appliance.
pub trait Service {
    /// Per-connection state.
    type Conn;
    /// A listener completed a handshake with `remote`.
    fn accept(&mut self, id: ConnId, remote: IpEndpoint, now: StdInstant) -> Self::Conn;
    /// The socket may have changed or the connection was woken: move bytes
    /// between the socket and the connection, close it if done. Returns the
    /// connection's next deadline, if any.
    fn drive(
        &mut self,
        id: ConnId,
        conn: &mut Self::Conn,
        socket: &mut tcp::Socket<'_>,
        now: StdInstant,
    ) -> Option<StdInstant>;
    /// The connection is gone (closed, reset or timed out).
    fn closed(&mut self, id: ConnId, conn: Self::Conn);
    /// Called when the [`Waker`] fired: append connections with new work.
    fn woken(&mut self, out: &mut Vec<ConnId>);
}

/// Static settings of the stack.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The node's own unicast MAC (not the TAP's).
    pub mac: EthernetAddress,
    /// The service address and its prefix.
    pub address: Ipv4Cidr,
    /// Default gateway for clients off the local subnet.
    pub gateway: Option<Ipv4Address>,
    pub port: u16,
    /// Size of the listener pool: the most connections at once.
    pub max_connections: usize,
    pub rx_buffer_bytes: usize,
    pub tx_buffer_bytes: usize,
    /// Seed for smoltcp's RNG (ISNs, ephemeral ports).
    pub seed: u64,
}

/// Counters for status and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct StackStats {
    pub accepted: u64,
    pub closed: u64,
    pub active: usize,
    pub time_wait_recycled: u64,
}

/// Wakes the stack thread from another thread (an eventfd).
#[derive(Debug, Clone)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    fn new() -> std::io::Result<Self> {
        // SAFETY: plain eventfd(2); result checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is new and ours.
        Ok(Waker {
            fd: Arc::new(unsafe { OwnedFd::from_raw_fd(fd) }),
        })
    }

    /// Make the stack thread run a loop iteration soon.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to an eventfd. A full
        // counter (EAGAIN) still leaves the fd readable, which is all we need.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

/// Listeners kept armed ahead of demand. Only sockets in use live in the
/// smoltcp `SocketSet`: smoltcp walks every socket on every poll, so a
/// thousand idle pre-armed listeners would cost more than the traffic.
pub const SPARE_LISTENERS: usize = 16;

enum Phase<C> {
    /// Listening, or half-open (SYN received) with the client's tuple.
    Listening {
        half_open: Option<Tuple>,
    },
    Active(Active<C>),
    /// Closed by the service, smoltcp still in TIME-WAIT.
    Lingering,
}

struct Slot<C> {
    handle: SocketHandle,
    phase: Phase<C>,
}

struct Active<C> {
    conn: C,
    tuple: Tuple,
    deadline: Option<StdInstant>,
    /// (recv_queue, send_queue, state) when last driven: drive again only
    /// when this changes, the connection is woken, or its deadline passes.
    seen: (usize, usize, tcp::State),
    woken: bool,
}

/// The sockets in use, in a slab whose indices are [`ConnId::slot`]s.
struct Pool<C> {
    slots: Vec<Option<Slot<C>>>,
    /// Generation per slab index; bumped whenever a connection leaves it.
    generations: Vec<u32>,
    free: Vec<usize>,
    /// Closed sockets kept for reuse (their buffers are the expensive part).
    idle: Vec<tcp::Socket<'static>>,
    in_use: usize,
}

impl<C> Pool<C> {
    fn new() -> Self {
        Pool {
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            idle: Vec::new(),
            in_use: 0,
        }
    }

    fn id(&self, i: usize) -> ConnId {
        ConnId {
            slot: i as u32,
            generation: self.generations[i],
        }
    }

    fn free_listeners(&self, sockets: &SocketSet<'static>) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|s| {
                matches!(s.phase, Phase::Listening { .. })
                    && sockets.get::<tcp::Socket>(s.handle).state() == tcp::State::Listen
            })
            .count()
    }

    /// Arm one more listener: a parked socket, or a new one.
    fn arm(&mut self, sockets: &mut SocketSet<'static>, cfg: &StackConfig) {
        let mut sock = self.idle.pop().unwrap_or_else(|| new_socket(cfg));
        listen(&mut sock, cfg.port);
        let slot = Slot {
            handle: sockets.add(sock),
            phase: Phase::Listening { half_open: None },
        };
        match self.free.pop() {
            Some(i) => self.slots[i] = Some(slot),
            None => {
                self.slots.push(Some(slot));
                self.generations.push(0);
            }
        }
        self.in_use += 1;
    }

    /// Take a closed socket out of the set and park it.
    fn release(&mut self, i: usize, sockets: &mut SocketSet<'static>) {
        if let Some(slot) = self.slots[i].take() {
            #[allow(irrefutable_let_patterns)]
            if let smoltcp::socket::Socket::Tcp(sock) = sockets.remove(slot.handle) {
                self.idle.push(sock);
            }
            self.free.push(i);
            self.in_use -= 1;
        }
    }
}

/// The stack: interface, sockets, device and the listener pool.
pub struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    phy: TapPhy,
    cfg: StackConfig,
    waker: Waker,
    epoll: OwnedFd,
    start: StdInstant,
    stats: StackStats,
}

fn new_socket(cfg: &StackConfig) -> tcp::Socket<'static> {
    let rx = tcp::SocketBuffer::new(vec![0; cfg.rx_buffer_bytes]);
    let tx = tcp::SocketBuffer::new(vec![0; cfg.tx_buffer_bytes]);
    let mut s = tcp::Socket::new(rx, tx);
    // Request/response: send a reply's tail at once rather than waiting for
    // the ACK of the previous segment.
    s.set_nagle_enabled(false);
    s
}

fn tuple_of(s: &tcp::Socket<'_>, port: u16) -> Option<Tuple> {
    match s.remote_endpoint()? {
        IpEndpoint {
            addr: smoltcp::wire::IpAddress::Ipv4(a),
            port: p,
        } => Some((a, p, port)),
        // The node has only an IPv4 address; nothing else can connect.
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn listen(s: &mut tcp::Socket<'_>, port: u16) {
    if let Err(e) = s.listen(IpListenEndpoint { addr: None, port }) {
        // Only fails on port 0 or a non-closed socket: both are bugs.
        unreachable!("listen on a closed socket failed: {e}");
    }
}

impl Stack {
    /// Build the interface on `phy` with the service address.
    pub fn new(cfg: StackConfig, mut phy: TapPhy) -> std::io::Result<Self> {
        let mut icfg = Config::new(HardwareAddress::Ethernet(cfg.mac));
        icfg.random_seed = cfg.seed;
        let start = StdInstant::now();
        let mut iface = Interface::new(icfg, &mut phy, Instant::from_micros(0));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::Ipv4(cfg.address));
        });
        if let Some(gw) = cfg.gateway {
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        let sockets = SocketSet::new(Vec::new());
        let waker = Waker::new()?;
        // SAFETY: plain epoll_create1; result checked.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: ep is new and ours.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        for (fd, token) in [(phy.tap().as_raw_fd(), 0u64), (waker.fd.as_raw_fd(), 1u64)] {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: token,
            };
            // SAFETY: valid epoll fd, valid fd, valid event.
            if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Stack {
            iface,
            sockets,
            phy,
            cfg,
            waker,
            epoll,
            start,
            stats: StackStats::default(),
        })
    }

    /// A handle to wake this stack's thread.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    pub fn stats(&self) -> StackStats {
        self.stats
    }

    pub fn device_stats(&self) -> crate::device::DeviceStats {
        self.phy.stats()
    }

    fn now(&self) -> (StdInstant, Instant) {
        let now = StdInstant::now();
        let since = now.saturating_duration_since(self.start);
        (now, Instant::from_micros(since.as_micros() as i64))
    }

    /// Announce the service address (gratuitous ARP), so switches and
    /// clients map it to this node's MAC at once.
    pub fn announce(&mut self) -> std::io::Result<()> {
        let frame = crate::arp::gratuitous(self.cfg.mac, self.cfg.address.address());
        self.phy.send_raw(&frame)
    }

    /// Run until `stop` is set (checked at least every 100 ms).
    pub fn run<S: Service>(&mut self, service: &mut S, stop: &AtomicBool) -> std::io::Result<()> {
        let mut pool: Pool<S::Conn> = Pool::new();
        let mut woken_ids = Vec::new();
        self.top_up(&mut pool);
        while !stop.load(Ordering::Relaxed) {
            let (now, now_s) = self.now();
            let polled = self.iface.poll(now_s, &mut self.phy, &mut self.sockets);
            let mut busy = polled == PollResult::SocketStateChanged || self.phy.take_activity();

            woken_ids.clear();
            service.woken(&mut woken_ids);
            for id in &woken_ids {
                let i = id.slot as usize;
                if pool.generations.get(i) == Some(&id.generation) {
                    if let Some(Slot {
                        phase: Phase::Active(a),
                        ..
                    }) = pool.slots[i].as_mut()
                    {
                        a.woken = true;
                    }
                }
            }

            for i in 0..pool.slots.len() {
                if self.step_slot(&mut pool, i, service, now) {
                    busy = true;
                }
            }

            // SYNs that found no listener (refused at the pool limit) or
            // whose handshake already failed no longer occupy their tuple.
            for t in self.phy.syn_guard.take_pending() {
                let held = pool.slots.iter().flatten().any(|s| match &s.phase {
                    Phase::Listening { half_open } => half_open.as_ref() == Some(&t),
                    Phase::Active(a) => a.tuple == t,
                    Phase::Lingering => false,
                });
                if !held {
                    self.phy.syn_guard.release(&t);
                }
            }

            self.top_up(&mut pool);

            if busy {
                continue;
            }
            self.phy.flush_pcap();
            let (now, now_s) = self.now();
            let mut wait = self
                .iface
                .poll_delay(now_s, &self.sockets)
                .map(|d| Duration::from_micros(d.total_micros()))
                .unwrap_or(Duration::from_millis(100));
            for s in pool.slots.iter().flatten() {
                if let Phase::Active(Active {
                    deadline: Some(d), ..
                }) = &s.phase
                {
                    wait = wait.min(d.saturating_duration_since(now));
                }
            }
            let wait = wait.min(Duration::from_millis(100));
            // Round up: waking a little late is fine, spinning is not.
            let ms = wait.as_micros().div_ceil(1000) as i32;
            self.wait(ms)?;
        }
        Ok(())
    }

    /// Advance one slot after a poll; returns whether bytes moved.
    fn step_slot<S: Service>(
        &mut self,
        pool: &mut Pool<S::Conn>,
        i: usize,
        service: &mut S,
        now: StdInstant,
    ) -> bool {
        let id = pool.id(i);
        let Some(slot) = pool.slots[i].as_mut() else {
            return false;
        };
        let sock = self.sockets.get_mut::<tcp::Socket>(slot.handle);
        let mut busy = false;
        match &mut slot.phase {
            Phase::Listening { half_open } => match sock.state() {
                tcp::State::Listen => {}
                tcp::State::SynReceived => {
                    if half_open.is_none() {
                        *half_open = tuple_of(sock, self.cfg.port);
                    }
                }
                tcp::State::Closed | tcp::State::TimeWait => {
                    // The handshake failed (RST, timeout): listen again.
                    if let Some(t) = half_open.take() {
                        self.phy.syn_guard.release(&t);
                    }
                    listen(sock, self.cfg.port);
                }
                _ => {
                    let Some(tuple) = half_open.take().or_else(|| tuple_of(sock, self.cfg.port))
                    else {
                        return false;
                    };
                    let Some(remote) = sock.remote_endpoint() else {
                        return false;
                    };
                    self.phy.syn_guard.occupy(tuple);
                    self.stats.accepted += 1;
                    self.stats.active += 1;
                    tracing::trace!(?id, %remote, "accepted");
                    let conn = service.accept(id, remote, now);
                    slot.phase = Phase::Active(Active {
                        conn,
                        tuple,
                        deadline: None,
                        seen: (usize::MAX, usize::MAX, tcp::State::Closed),
                        woken: true,
                    });
                }
            },
            Phase::Lingering => {
                if sock.state() == tcp::State::Closed {
                    pool.release(i, &mut self.sockets);
                }
                return false;
            }
            Phase::Active(_) => {}
        }
        let Some(slot) = pool.slots[i].as_mut() else {
            return false;
        };
        let Phase::Active(a) = &mut slot.phase else {
            return false;
        };
        let sock = self.sockets.get_mut::<tcp::Socket>(slot.handle);
        let seen = (sock.recv_queue(), sock.send_queue(), sock.state());
        let due = a.deadline.is_some_and(|d| d <= now);
        if a.woken || due || seen != a.seen {
            a.woken = false;
            a.deadline = service.drive(id, &mut a.conn, sock, now);
            let after = (sock.recv_queue(), sock.send_queue(), sock.state());
            busy = after != seen;
            a.seen = after;
        }
        let state = sock.state();
        if matches!(state, tcp::State::Closed | tcp::State::TimeWait) {
            let Phase::Active(a) = std::mem::replace(&mut slot.phase, Phase::Lingering) else {
                unreachable!("matched Active above");
            };
            self.stats.active -= 1;
            self.stats.closed += 1;
            tracing::trace!(?id, "closed");
            service.closed(id, a.conn);
            self.phy.syn_guard.release(&a.tuple);
            pool.generations[i] = pool.generations[i].wrapping_add(1);
            if state == tcp::State::Closed {
                pool.release(i, &mut self.sockets);
            }
        }
        busy
    }

    /// Keep [`SPARE_LISTENERS`] listeners armed within `max_connections`;
    /// when the pool is full, recycle a TIME-WAIT socket rather than refuse
    /// a new client (`listen` resets it silently; `abort` would send an RST).
    fn top_up<C>(&mut self, pool: &mut Pool<C>) {
        let mut free = pool.free_listeners(&self.sockets);
        while free < SPARE_LISTENERS.min(self.cfg.max_connections) {
            if pool.in_use < self.cfg.max_connections {
                pool.arm(&mut self.sockets, &self.cfg);
            } else {
                let lingering = pool
                    .slots
                    .iter_mut()
                    .flatten()
                    .find(|s| matches!(s.phase, Phase::Lingering));
                let Some(slot) = lingering else { break };
                listen(
                    self.sockets.get_mut::<tcp::Socket>(slot.handle),
                    self.cfg.port,
                );
                slot.phase = Phase::Listening { half_open: None };
                self.stats.time_wait_recycled += 1;
            }
            free += 1;
        }
    }

    fn wait(&mut self, timeout_ms: i32) -> std::io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: valid epoll fd and event buffer of the stated length.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            if ev.u64 == 1 {
                self.waker.drain();
            }
        }
        Ok(())
    }
}
