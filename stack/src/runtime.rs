//! The TAP shell around a [`Node`] (the node core, which holds one
//! [`crate::Engine`] per service address): one thread owns the TAP, reads
//! frames into the node, runs one round, writes its output, and repeats
//! while anything moved; otherwise it sleeps in `epoll` on the TAP fd, an
//! eventfd (the [`Waker`]) and the node's own fds (its replication links) no
//! longer than the node's next deadline, rounded up to a millisecond. No
//! busy spinning. The deterministic simulation drives the same node through
//! the same calls, with virtual time instead of this loop's clock.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

pub use crate::engine::StackConfig;
use crate::engine::{Frame, HEADROOM};
use crate::pcap::PcapSink;
use crate::tap::Tap;
use crate::vnet::{self, VnetHdr, VNET_HDR_LEN};

/// Largest frame the kernel may hand us (a 64 KiB GRO/TSO segment) plus header.
const RX_BUF_LEN: usize = VNET_HDR_LEN + 14 + 65_535 + 64;
/// Frames read per round before the engine runs.
const RX_BATCH: usize = 64;

/// Counters of the TAP shell.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShellStats {
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub rx_bad_checksum: u64,
    pub rx_malformed: u64,
    pub tx_errors: u64,
}

/// Wakes the stack thread from another thread (an eventfd).
#[derive(Debug, Clone)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    pub fn new() -> std::io::Result<Self> {
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

    /// Make the stack thread run a round soon.
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

fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The TAP, its pcap and the epoll set.
pub struct Shell {
    tap: Tap,
    pcap: Option<PcapSink>,
    waker: Waker,
    epoll: OwnedFd,
    stats: ShellStats,
    /// The node's own fds as registered in the epoll set (fd, writable).
    extra: Vec<(std::os::fd::RawFd, bool)>,
    want: Vec<(std::os::fd::RawFd, bool)>,
}

/// What the shell drives: the node core plus whatever I/O of its own it
/// does inside a round (replication links, handler completions).
pub trait Node {
    /// A buffer for a frame about to be read (reuses returned buffers).
    fn take_buffer(&mut self) -> Vec<u8>;
    /// Give a frame's buffer back.
    fn recycle(&mut self, f: Frame);
    /// A frame from the LAN (the TAP).
    fn handle_lan_frame(&mut self, f: Frame);
    /// One round at `now`; whether anything moved (run another at once).
    fn round(&mut self, now: StdInstant) -> bool;
    /// Next frame for the LAN, at `now` (read for each frame: a node
    /// frozen mid-burst must not send the rest unchecked).
    #[must_use]
    fn poll_lan_transmit(&mut self, now: StdInstant) -> Option<Frame>;
    /// When the node next needs a round, if nothing arrives before.
    #[must_use]
    fn poll_timeout(&mut self, now: StdInstant) -> Option<StdInstant>;
    /// Fds to wait on besides the TAP and the waker: (fd, want writable).
    fn watch_fds(&self, out: &mut Vec<(std::os::fd::RawFd, bool)>) {
        let _ = out;
    }
}

/// Allocations at least this large get pages of their own (glibc: mmap).
const MMAP_THRESHOLD: usize = 128 * 1024;

/// A socket's receive buffer (128 KiB by default) costs only the pages its
/// data touched — one for an idle keep-alive connection, whose ring starts
/// over at offset 0 whenever it is empty — *if* it comes zeroed from fresh
/// pages (mmap). glibc's threshold for that moves up each time a large
/// block is freed (the send buffers returned by `engine/buffers.rs` are
/// 256 KiB), after which every new receive buffer came from reused heap
/// memory and calloc zeroed — touched — all of it: with 50,000 idle
/// connections a node held 3.3 GB instead of ~0.5 GB. Fixing the
/// threshold stops that drift (and frames, ≤ 64 KiB, stay on the heap).
fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

impl Shell {
    pub fn new(tap: Tap, pcap: Option<PcapSink>, waker: Waker) -> std::io::Result<Self> {
        pin_mmap_threshold();
        // SAFETY: plain epoll_create1; result checked.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: ep is new and ours.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        for (fd, token) in [(tap.as_raw_fd(), 0u64), (waker.fd.as_raw_fd(), 1u64)] {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: token,
            };
            // SAFETY: valid epoll fd, valid fd, valid event.
            if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Shell {
            tap,
            pcap,
            waker,
            epoll,
            stats: ShellStats::default(),
            extra: Vec::new(),
            want: Vec::new(),
        })
    }

    pub fn stats(&self) -> ShellStats {
        self.stats
    }

    /// Read up to a batch of frames into the engine; returns how many.
    fn read_frames<N: Node>(&mut self, engine: &mut N) -> usize {
        let mut n_frames = 0;
        while n_frames < RX_BATCH {
            let mut buf = engine.take_buffer();
            let n = match self.tap.read_into(&mut buf, RX_BUF_LEN) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        tracing::warn!(error = %e, "TAP read failed");
                    }
                    engine.recycle(Frame {
                        buf,
                        start: 0,
                        gso: None,
                    });
                    break;
                }
            };
            debug_assert_eq!(buf.len(), n);
            let Some(hdr) = VnetHdr::parse(&buf) else {
                self.stats.rx_malformed += 1;
                continue;
            };
            let frame = &buf[VNET_HDR_LEN..];
            if !vnet::rx_checksum_ok(&hdr, frame) {
                self.stats.rx_bad_checksum += 1;
                continue;
            }
            if let Some(p) = self.pcap.as_mut() {
                let mut copy = frame.to_vec();
                if hdr.flags & vnet::F_NEEDS_CSUM != 0 {
                    vnet::finish_tcp_checksum(&mut copy);
                }
                let _ = p.frame(wall_micros(), &copy);
            }
            self.stats.rx_frames += 1;
            n_frames += 1;
            engine.handle_lan_frame(Frame {
                buf,
                start: VNET_HDR_LEN,
                gso: None,
            });
        }
        n_frames
    }

    /// Write one frame (with its vnet header) to the TAP.
    pub fn write_frame(&mut self, f: &mut Frame) {
        debug_assert!(f.start >= HEADROOM);
        let gso = f.gso;
        let hdr = vnet::prepare_tx(f.data_mut(), gso);
        let at = f.start - VNET_HDR_LEN;
        hdr.emit(&mut f.buf[at..f.start]);
        if let Some(p) = self.pcap.as_mut() {
            // Record the frame as it leaves the kernel: with a full checksum.
            let mut copy = f.data().to_vec();
            vnet::finish_tcp_checksum(&mut copy);
            let _ = p.frame(wall_micros(), &copy);
        }
        match self.tap.write(&f.buf[at..]) {
            Ok(_) => self.stats.tx_frames += 1,
            Err(e) => {
                // TCP retransmits; a dropped frame is not an error for the node.
                self.stats.tx_errors += 1;
                tracing::trace!(error = %e, "TAP write failed");
            }
        }
    }

    fn flush_pcap(&mut self) {
        if let Some(p) = self.pcap.as_mut() {
            if let Err(e) = p.flush() {
                tracing::warn!(error = %e, "pcap flush failed; capture disabled");
                self.pcap = None;
            }
        }
    }

    /// Run the node until `stop` is set (checked at least every 100 ms).
    /// A fenced address does not stop the node: it stands by, silent,
    /// until its link is up again and the node rejoins.
    pub fn run<N: Node>(&mut self, node: &mut N, stop: &AtomicBool) -> std::io::Result<()> {
        while !stop.load(Ordering::Relaxed) {
            let read = self.read_frames(node);
            let now = StdInstant::now();
            let mut busy = node.round(now) || read > 0;
            while let Some(mut f) = node.poll_lan_transmit(StdInstant::now()) {
                self.write_frame(&mut f);
                node.recycle(f);
                busy = true;
            }
            if busy {
                continue;
            }
            self.flush_pcap();
            let now = StdInstant::now();
            let wait = node
                .poll_timeout(now)
                .map_or(Duration::from_millis(100), |t| {
                    t.saturating_duration_since(now)
                })
                .min(Duration::from_millis(100));
            let mut want = std::mem::take(&mut self.want);
            want.clear();
            node.watch_fds(&mut want);
            self.watch_extra(&want);
            self.want = want;
            // Round up: waking a little late is fine, spinning is not.
            let ms = wait.as_micros().div_ceil(1000) as i32;
            self.wait(ms)?;
        }
        self.flush_pcap();
        Ok(())
    }

    /// Keep the node's fds registered with the right interest.
    fn watch_extra(&mut self, want: &[(std::os::fd::RawFd, bool)]) {
        if want == self.extra.as_slice() {
            return;
        }
        for (fd, _) in self.extra.drain(..) {
            // May fail if the fd was closed already (it left the set then).
            // SAFETY: valid epoll fd; a stale fd only makes this fail.
            unsafe {
                libc::epoll_ctl(
                    self.epoll.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    fd,
                    std::ptr::null_mut(),
                )
            };
        }
        for &(fd, write) in want {
            let mut events = libc::EPOLLIN as u32;
            if write {
                events |= libc::EPOLLOUT as u32;
            }
            let mut ev = libc::epoll_event { events, u64: 2 };
            // SAFETY: valid epoll fd, an open fd owned by the node, valid event.
            if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) }
                < 0
            {
                tracing::warn!(error = %std::io::Error::last_os_error(), "cannot watch a link socket");
                continue;
            }
            self.extra.push((fd, write));
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
