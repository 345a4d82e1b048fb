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

struct Slot<C> {
    handle: SocketHandle,
    generation: u32,
    conn: Option<Active<C>>,
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

fn listen(s: &mut tcp::Socket<'static>, port: u16) {
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
        let mut sockets = SocketSet::new(Vec::with_capacity(cfg.max_connections));
        for _ in 0..cfg.max_connections {
            let mut s = new_socket(&cfg);
            listen(&mut s, cfg.port);
            sockets.add(s);
        }
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
        let mut slots: Vec<Slot<S::Conn>> = self
            .sockets
            .iter()
            .map(|(handle, _)| Slot {
                handle,
                generation: 0,
                conn: None,
            })
            .collect();
        let mut woken_ids = Vec::new();
        let mut free_listeners = slots.len();
        while !stop.load(Ordering::Relaxed) {
            let (now, now_s) = self.now();
            let polled = self.iface.poll(now_s, &mut self.phy, &mut self.sockets);
            let mut busy = polled == PollResult::SocketStateChanged || self.phy.take_activity();

            woken_ids.clear();
            service.woken(&mut woken_ids);
            for id in &woken_ids {
                if let Some(slot) = slots.get_mut(id.slot as usize) {
                    if slot.generation == id.generation {
                        if let Some(a) = slot.conn.as_mut() {
                            a.woken = true;
                        }
                    }
                }
            }

            for (i, slot) in slots.iter_mut().enumerate() {
                let sock = self.sockets.get_mut::<tcp::Socket>(slot.handle);
                let id = ConnId {
                    slot: i as u32,
                    generation: slot.generation,
                };
                if slot.conn.is_none() {
                    match sock.state() {
                        tcp::State::Listen => continue,
                        tcp::State::SynReceived => continue,
                        tcp::State::Closed | tcp::State::TimeWait => {
                            // Handshake failed (RST) before we saw it: re-arm.
                            if sock.state() == tcp::State::TimeWait {
                                continue;
                            }
                            listen(sock, self.cfg.port);
                            continue;
                        }
                        _ => {}
                    }
                    let Some(remote) = sock.remote_endpoint() else {
                        continue;
                    };
                    let smoltcp::wire::IpAddress::Ipv4(raddr) = remote.addr else {
                        // The node has only an IPv4 address; nothing else can connect.
                        continue;
                    };
                    let tuple = (raddr, remote.port, self.cfg.port);
                    self.phy.syn_guard.occupy(tuple);
                    free_listeners -= 1;
                    self.stats.accepted += 1;
                    self.stats.active += 1;
                    tracing::trace!(?id, %remote, "accepted");
                    let conn = service.accept(id, remote, now);
                    slot.conn = Some(Active {
                        conn,
                        tuple,
                        deadline: None,
                        seen: (usize::MAX, usize::MAX, tcp::State::Closed),
                        woken: true,
                    });
                }
                let Some(a) = slot.conn.as_mut() else {
                    continue;
                };
                let seen = (sock.recv_queue(), sock.send_queue(), sock.state());
                let due = a.deadline.is_some_and(|d| d <= now);
                if a.woken || due || seen != a.seen {
                    a.woken = false;
                    a.deadline = service.drive(id, &mut a.conn, sock, now);
                    let after = (sock.recv_queue(), sock.send_queue(), sock.state());
                    if after != seen {
                        busy = true;
                    }
                    a.seen = after;
                }
                if matches!(sock.state(), tcp::State::Closed | tcp::State::TimeWait) {
                    // TimeWait: the connection is over for the service; the
                    // slot stays with smoltcp until the timer or recycling.
                    let a = slot.conn.take().expect("checked above");
                    self.stats.active -= 1;
                    self.stats.closed += 1;
                    tracing::trace!(?id, "closed");
                    service.closed(id, a.conn);
                    self.phy.syn_guard.release(&a.tuple);
                    slot.generation = slot.generation.wrapping_add(1);
                    if sock.state() == tcp::State::Closed {
                        listen(sock, self.cfg.port);
                        free_listeners += 1;
                    }
                }
            }

            // SYNs that found no listener (refused at the pool limit) or
            // whose socket already went away no longer occupy their tuple.
            let pending = self.phy.syn_guard.take_pending();
            if !pending.is_empty() {
                for t in pending {
                    let held = slots.iter().any(|s| {
                        let sock = self.sockets.get::<tcp::Socket>(s.handle);
                        sock.remote_endpoint().is_some_and(|r| {
                            r.port == t.1 && r.addr == smoltcp::wire::IpAddress::Ipv4(t.0)
                        }) && sock.state() != tcp::State::TimeWait
                    });
                    if !held {
                        self.phy.syn_guard.release(&t);
                    }
                }
            }

            // Re-arm slots whose TimeWait ended; when no listener is free,
            // recycle TimeWait slots rather than refuse new clients.
            free_listeners = self.rearm(&mut slots, free_listeners);

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
            for s in &slots {
                if let Some(d) = s.conn.as_ref().and_then(|a| a.deadline) {
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

    fn rearm<C>(&mut self, slots: &mut [Slot<C>], mut free: usize) -> usize {
        for slot in slots.iter_mut().filter(|s| s.conn.is_none()) {
            let sock = self.sockets.get_mut::<tcp::Socket>(slot.handle);
            match sock.state() {
                tcp::State::Closed => {
                    listen(sock, self.cfg.port);
                    free += 1;
                }
                tcp::State::TimeWait if free == 0 => {
                    // Replace the socket silently (abort would send an RST).
                    self.sockets.remove(slot.handle);
                    let mut s = new_socket(&self.cfg);
                    listen(&mut s, self.cfg.port);
                    slot.handle = self.sockets.add(s);
                    self.stats.time_wait_recycled += 1;
                    free += 1;
                }
                _ => {}
            }
        }
        free
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
