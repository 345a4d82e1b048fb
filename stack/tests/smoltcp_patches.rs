//! The TCP fixes hotpair carries in `vendor/smoltcp` (see its
//! `HOTPAIR-PATCHES.md`), each shown on two real smoltcp interfaces joined
//! by an in-memory wire whose frames the test drops, holds and replays.
//! Every test fails against smoltcp 0.14.0 as published.

use std::collections::VecDeque;

use hotpair_stack::seg;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

#[derive(Default)]
struct Wire {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl phy::Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;
    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((Rx(f), Tx(&mut self.tx)))
    }
    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

struct Host {
    iface: Interface,
    dev: Wire,
    sockets: SocketSet<'static>,
    tcp: SocketHandle,
}

impl Host {
    fn new(mac: u8, ip: [u8; 4]) -> Host {
        let mut dev = Wire::default();
        let cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress([
            2, 0, 0, 0, 0, mac,
        ])));
        let mut iface = Interface::new(cfg, &mut dev, Instant::ZERO);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::v4(ip[0], ip[1], ip[2], ip[3]), 24))
                .unwrap();
        });
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 8192]),
            tcp::SocketBuffer::new(vec![0; 8192]),
        );
        s.set_nagle_enabled(false);
        s.set_ack_delay(None);
        let mut sockets = SocketSet::new(Vec::new());
        let tcp = sockets.add(s);
        Host {
            iface,
            dev,
            sockets,
            tcp,
        }
    }
    fn poll(&mut self, now: Instant) -> Vec<Vec<u8>> {
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        self.dev.tx.drain(..).collect()
    }
    fn socket(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.tcp)
    }
}

/// The sequence number of a TCP frame.
fn seq_of(frame: &[u8]) -> u32 {
    seg::parse(frame).expect("a TCP frame").seq
}

/// A TCP frame carrying the FIN.
fn has_fin(frame: &[u8]) -> bool {
    seg::parse(frame).is_some_and(|s| s.has(seg::FIN))
}

/// A TCP frame carrying data.
fn has_data(frame: &[u8]) -> bool {
    seg::parse(frame).is_some_and(|s| s.payload_len > 0)
}

/// Client 10.0.0.1 connected to a server 10.0.0.2:80, everything delivered.
fn connected() -> (Host, Host, Instant) {
    let mut c = Host::new(1, [10, 0, 0, 1]);
    let mut s = Host::new(2, [10, 0, 0, 2]);
    s.socket().listen(80).unwrap();
    let cx = c.iface.context();
    c.sockets
        .get_mut::<tcp::Socket>(c.tcp)
        .connect(cx, (IpAddress::v4(10, 0, 0, 2), 80), 40000)
        .unwrap();
    let mut now = Instant::ZERO;
    for _ in 0..20 {
        pump(&mut c, &mut s, now);
        now += Duration::from_millis(1);
    }
    assert_eq!(c.socket().state(), tcp::State::Established);
    assert_eq!(s.socket().state(), tcp::State::Established);
    (c, s, now)
}

/// Deliver everything both ways, once.
fn pump(c: &mut Host, s: &mut Host, now: Instant) {
    for f in c.poll(now) {
        s.dev.rx.push_back(f);
    }
    for f in s.poll(now) {
        c.dev.rx.push_back(f);
    }
}

/// Patch 1: the server's FIN is lost; three duplicate ACKs arrive while the
/// FIN is the only thing outstanding. The FIN must be sent again at once
/// (unpatched: never — the fast retransmit finds no data and idles the
/// timer for good).
#[test]
fn lone_fin_is_fast_retransmitted() {
    let (mut c, mut s, mut now) = connected();
    s.socket().send_slice(b"reply").unwrap();
    // Server data to the client; the client's ACK of it is kept.
    for f in s.poll(now) {
        c.dev.rx.push_back(f);
    }
    now += Duration::from_millis(1);
    let acks = c.poll(now);
    assert!(!acks.is_empty(), "the client acknowledges the data");
    let ack = acks.last().unwrap().clone();
    for f in acks {
        s.dev.rx.push_back(f);
    }
    s.poll(now);
    assert_eq!(c.socket().recv_queue(), 5);

    // The server closes; its FIN is lost.
    s.socket().close();
    now += Duration::from_millis(1);
    let out = s.poll(now);
    assert!(out.iter().any(|f| has_fin(f)), "the server sends its FIN");
    // Three duplicates of the client's last ACK.
    for _ in 0..3 {
        s.dev.rx.push_back(ack.clone());
    }
    now += Duration::from_millis(1);
    let mut resent = false;
    // Well within the first retransmission timeout (1 s): the fast
    // retransmit, not the timer, must bring the FIN back.
    for _ in 0..10 {
        for f in s.poll(now) {
            if has_fin(&f) {
                resent = true;
            }
            c.dev.rx.push_back(f);
        }
        for f in c.poll(now) {
            s.dev.rx.push_back(f);
        }
        now += Duration::from_millis(10);
    }
    assert!(
        resent,
        "the FIN was not retransmitted after 3 duplicate ACKs"
    );
    assert_eq!(c.socket().state(), tcp::State::CloseWait);
    // And with nothing else done, the exchange completes.
    c.socket().close();
    for _ in 0..20 {
        pump(&mut c, &mut s, now);
        now += Duration::from_millis(10);
    }
    assert_eq!(c.socket().state(), tcp::State::Closed);
    assert!(matches!(
        s.socket().state(),
        tcp::State::TimeWait | tcp::State::Closed
    ));
}

/// Patch 2: the client sends A, then B+FIN; A is late, so B's data is kept
/// and its FIN ignored (beyond a hole). Once A fills the hole, the
/// retransmission of B+FIN ends exactly at the receive point — and must be
/// accepted for its FIN (unpatched: rejected as a duplicate, every time).
#[test]
fn retransmitted_fin_after_its_data_is_accepted() {
    let (mut c, mut s, mut now) = connected();
    c.socket().send_slice(b"aaaa").unwrap();
    let a: Vec<_> = c.poll(now);
    assert_eq!(a.len(), 1);
    c.socket().send_slice(b"bbbb").unwrap();
    c.socket().close();
    now += Duration::from_millis(1);
    let b: Vec<_> = c.poll(now);
    assert_eq!(b.len(), 1);
    let bs = seg::parse(&b[0]).expect("a TCP frame");
    assert!(
        bs.has(seg::FIN) && bs.payload_len == 4,
        "B carries data and the FIN"
    );

    // B first (out of order), then A.
    s.dev.rx.push_back(b[0].clone());
    s.poll(now);
    s.dev.rx.push_back(a[0].clone());
    s.poll(now);
    assert_eq!(s.socket().recv_queue(), 8, "A and B's data are in");
    assert_eq!(
        s.socket().state(),
        tcp::State::Established,
        "B's FIN came beyond a hole and was (rightly) ignored"
    );
    // The client's retransmission of B+FIN.
    s.dev.rx.push_back(b[0].clone());
    s.poll(now);
    assert_eq!(
        s.socket().state(),
        tcp::State::CloseWait,
        "the retransmitted FIN was rejected"
    );
    let mut buf = [0u8; 16];
    let n = s.socket().recv_slice(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"aaaabbbb");
}

/// Patch 3 (NewReno, RFC 6582): two segments of one window are lost. Three
/// duplicate ACKs bring the first back; the ACK that follows is partial
/// (it stops at the second hole) and must bring the second back at once
/// (unpatched: only the retransmission timer does, a second or more later).
#[test]
fn partial_ack_retransmits_the_next_hole_at_once() {
    let (mut c, mut s, now) = connected();
    s.socket().send_slice(&[7u8; 5 * 1460]).unwrap();
    let segs = s.poll(now);
    let data: Vec<_> = segs.into_iter().filter(|f| has_data(f)).collect();
    assert_eq!(data.len(), 5, "five full segments");
    // Segments 0 and 2 are lost.
    for i in [1, 3, 4] {
        c.dev.rx.push_back(data[i].clone());
    }
    let dups = c.poll(now);
    assert_eq!(dups.len(), 3, "a duplicate ACK per out-of-order segment");
    s.dev.rx.extend(dups);
    let out = s.poll(now);
    assert!(
        out.iter().any(|f| seq_of(f) == seq_of(&data[0])),
        "three duplicate ACKs: segment 0 again"
    );
    // Segment 0 arrives: the client acknowledges 0 and 1 — a partial ACK.
    c.dev.rx.push_back(data[0].clone());
    let partial = c.poll(now);
    s.dev.rx.extend(partial);
    let out = s.poll(now);
    assert!(
        out.iter().any(|f| seq_of(f) == seq_of(&data[2])),
        "the partial ACK did not bring segment 2 back at once"
    );
    // And with it the client has everything.
    c.dev.rx.extend(out);
    c.poll(now);
    assert_eq!(c.socket().recv_queue(), 5 * 1460);
}

/// Patch 4: TIME-WAIT lasts 60 s. The server closes first; the client's FIN
/// is acknowledged, but that ACK is lost, and the client's retransmissions
/// of its FIN are lost until 15 s later. The server must still be in
/// TIME-WAIT and acknowledge it (unpatched: its TIME-WAIT ended at 10 s and
/// the FIN meets an RST).
#[test]
fn time_wait_outlasts_a_backed_off_fin() {
    let (mut c, mut s, mut now) = connected();
    s.socket().close();
    for _ in 0..5 {
        pump(&mut c, &mut s, now);
        now += Duration::from_millis(1);
    }
    assert_eq!(s.socket().state(), tcp::State::FinWait2);
    assert_eq!(c.socket().state(), tcp::State::CloseWait);
    c.socket().close();
    let fin = c.poll(now);
    assert_eq!(fin.len(), 1);
    s.dev.rx.push_back(fin[0].clone());
    let ack = s.poll(now);
    assert_eq!(
        ack.len(),
        1,
        "the server acknowledges the FIN (this ACK is lost)"
    );
    assert_eq!(s.socket().state(), tcp::State::TimeWait);
    // 15 s later the FIN comes again.
    now += Duration::from_secs(15);
    s.poll(now);
    s.dev.rx.push_back(fin[0].clone());
    let out = s.poll(now);
    assert_eq!(out.len(), 1);
    let t = seg::parse(&out[0]).expect("a TCP frame");
    assert!(
        !t.has(seg::RST),
        "the late FIN met an RST: TIME-WAIT was over"
    );
    assert!(t.has(seg::ACK));
    c.dev.rx.push_back(out[0].clone());
    c.poll(now);
    assert_eq!(c.socket().state(), tcp::State::Closed);
}

// ---- patches 5-9: cost per active connection (issue 9) ------------------
// These use entry points smoltcp 0.14.0 does not have (so they fail to
// build against it), and check that each behaves as its whole-set
// counterpart does for the one socket it names.

use smoltcp::iface::{EgressResult, TcpDispatch};

/// A server host with a second listener on port 80 ahead of `tcp` in its set.
fn two_listeners() -> (Host, Host, SocketHandle) {
    let c = Host::new(1, [10, 0, 0, 1]);
    let mut s = Host::new(2, [10, 0, 0, 2]);
    let mut first = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 8192]),
        tcp::SocketBuffer::new(vec![0; 8192]),
    );
    first.listen(80).unwrap();
    // Remove the host's socket and add it back after `first`, so the walk
    // would reach `first` before it.
    let own = s.sockets.remove(s.tcp);
    let first = s.sockets.add(first);
    s.tcp = s.sockets.add(own);
    s.socket().listen(80).unwrap();
    (c, s, first)
}

fn connect_client(c: &mut Host) {
    let cx = c.iface.context();
    c.sockets
        .get_mut::<tcp::Socket>(c.tcp)
        .connect(cx, (IpAddress::v4(10, 0, 0, 2), 80), 40000)
        .unwrap();
}

/// Patch 5: `TcpDispatch::Only` gives a segment to the named socket alone,
/// not to the first in the set that accepts it; `NoSocket` to none (RST).
#[test]
fn tcp_dispatch_names_the_socket() {
    let (mut c, mut s, first) = two_listeners();
    connect_client(&mut c);
    // The client's ARP request, the server's answer, then the SYN.
    let arp = c.poll(Instant::ZERO);
    assert_eq!(arp.len(), 1);
    s.dev.rx.push_back(arp[0].clone());
    for f in s.poll(Instant::ZERO) {
        c.dev.rx.push_back(f);
    }
    let syn = c.poll(Instant::from_millis(1));
    assert_eq!(syn.len(), 1);
    assert!(seg::parse(&syn[0]).is_some_and(|g| g.has(seg::SYN)));
    // Walk (smoltcp's default): the first listener takes it.
    {
        let (_, mut s2, first2) = two_listeners();
        s2.dev.rx.push_back(arp[0].clone());
        s2.dev.rx.push_back(syn[0].clone());
        s2.poll(Instant::ZERO);
        let st = s2.sockets.get::<tcp::Socket>(first2).state();
        assert_eq!(st, tcp::State::SynReceived);
    }
    // Only(the second): the second takes it, the first stays listening.
    s.iface.set_tcp_dispatch(TcpDispatch::Only(s.tcp));
    s.dev.rx.push_back(syn[0].clone());
    let out = s.poll(Instant::ZERO);
    assert_eq!(s.socket().state(), tcp::State::SynReceived);
    assert_eq!(
        s.sockets.get::<tcp::Socket>(first).state(),
        tcp::State::Listen
    );
    assert!(out
        .iter()
        .any(|f| seg::parse(f).is_some_and(|g| g.has(seg::SYN))));
    // NoSocket: refused with a RST although a listener is free.
    s.iface.set_tcp_dispatch(TcpDispatch::NoSocket);
    // A second client socket's SYN (another source port).
    let mut cs2 = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 1024]),
        tcp::SocketBuffer::new(vec![0; 1024]),
    );
    cs2.connect(c.iface.context(), (IpAddress::v4(10, 0, 0, 2), 80), 40001)
        .unwrap();
    c.sockets.add(cs2);
    let other = c
        .poll(Instant::from_millis(2))
        .into_iter()
        .find(|f| seg::parse(f).is_some_and(|g| g.has(seg::SYN) && g.src_port == 40001))
        .expect("the second SYN");
    s.dev.rx.push_back(other.clone());
    let out = s.poll(Instant::ZERO);
    assert!(out
        .iter()
        .any(|f| seg::parse(f).is_some_and(|g| g.has(seg::RST))));
    assert_eq!(
        s.sockets.get::<tcp::Socket>(first).state(),
        tcp::State::Listen
    );
    // Only(a socket that does not accept it): as if none matched.
    s.iface.set_tcp_dispatch(TcpDispatch::Only(s.tcp));
    s.dev.rx.push_back(other);
    let out = s.poll(Instant::ZERO);
    assert!(out
        .iter()
        .any(|f| seg::parse(f).is_some_and(|g| g.has(seg::RST))));
}

/// Patch 6: `egress_socket` sends what one socket has, and nothing of the
/// others'.
#[test]
fn egress_socket_sends_one_socket_only() {
    let (mut c, mut s, _) = two_listeners();
    connect_client(&mut c);
    let mut now = Instant::ZERO;
    s.iface.set_tcp_dispatch(TcpDispatch::Only(s.tcp));
    for _ in 0..10 {
        pump(&mut c, &mut s, now);
        now += Duration::from_millis(1);
    }
    assert_eq!(s.socket().state(), tcp::State::Established);
    s.socket().send_slice(b"hello").unwrap();
    let h = s.tcp;
    // Another socket's turn: nothing to send.
    let mut other = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 64]),
        tcp::SocketBuffer::new(vec![0; 64]),
    );
    other.listen(81).unwrap();
    let other = s.sockets.add(other);
    let r = s
        .iface
        .egress_socket(now, &mut s.dev, &mut s.sockets, other);
    assert_eq!(r, EgressResult::Idle);
    assert!(s.dev.tx.is_empty());
    let r = s.iface.egress_socket(now, &mut s.dev, &mut s.sockets, h);
    assert_eq!(r, EgressResult::Emitted);
    assert_eq!(s.dev.tx.len(), 1);
    assert!(has_data(&s.dev.tx[0]));
    let r = s.iface.egress_socket(now, &mut s.dev, &mut s.sockets, h);
    assert_eq!(r, EgressResult::Idle, "one segment was all it had");
    // A handle that names no socket is idle, not a panic.
    s.sockets.remove(other);
    let r = s
        .iface
        .egress_socket(now, &mut s.dev, &mut s.sockets, other);
    assert_eq!(r, EgressResult::Idle);
}

/// Patch 7: `socket_poll_at` is `poll_at` for one socket: the
/// retransmission timer of unacknowledged data, now for queued data, and
/// nothing for a listener.
#[test]
fn socket_poll_at_matches_poll_at() {
    let (mut c, mut s, now) = connected();
    assert_eq!(s.iface.socket_poll_at(now, &s.sockets, s.tcp), None);
    s.socket().send_slice(b"x").unwrap();
    let h = s.tcp;
    assert_eq!(
        s.iface.socket_poll_at(now, &s.sockets, h),
        Some(Instant::from_millis(0))
    );
    let sent = s.poll(now);
    assert_eq!(sent.len(), 1); // lost
    let at = s.iface.socket_poll_at(now, &s.sockets, h);
    assert!(
        at.is_some_and(|t| t > now),
        "a retransmission timer: {at:?}"
    );
    assert_eq!(at, s.iface.poll_at(now, &s.sockets));
    let _ = &mut c;
    assert!(!s.iface.socket_waits_for_neighbor(&s.sockets, h));
}

/// Patch 8: `SocketSet::add` reuses a removed slot without walking the set,
/// and `try_get_mut` never panics.
#[test]
fn socket_set_reuses_freed_slots() {
    let mut set = SocketSet::new(Vec::new());
    let mk = || {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 16]),
            tcp::SocketBuffer::new(vec![0; 16]),
        )
    };
    let hs: Vec<_> = (0..1000).map(|_| set.add(mk())).collect();
    set.remove(hs[10]);
    set.remove(hs[500]);
    let a = set.add(mk());
    let b = set.add(mk());
    let mut got = [a, b];
    got.sort();
    assert_eq!(got, [hs[10], hs[500]]);
    let c = set.add(mk());
    assert!(!hs.contains(&c), "a new slot once no freed one is left");
    set.remove(c);
    assert!(set.try_get_mut::<tcp::Socket>(c).is_none());
    assert!(set.try_get_mut::<tcp::Socket>(hs[0]).is_some());
}

/// Patch 9: `replace_send_buffer` keeps queued and unacknowledged bytes:
/// the peer receives the stream byte-exact across a swap mid-transfer, in
/// both directions of size; a buffer too small for what is queued is
/// refused.
#[test]
fn replace_send_buffer_keeps_the_stream() {
    let (mut c, mut s, mut now) = connected();
    let data: Vec<u8> = (0..6000u32).map(|i| (i * 7 % 251) as u8).collect();
    let n = s.socket().send_slice(&data).unwrap();
    assert_eq!(n, 6000);
    // Sent but not acknowledged yet: the client's ACKs are dropped.
    s.poll(now);
    assert_eq!(s.socket().send_queue(), 6000);
    let small = tcp::SocketBuffer::new(vec![0; 1000]);
    let small = s.socket().replace_send_buffer(small).unwrap_err();
    assert_eq!(small.capacity(), 1000);
    let old = s
        .socket()
        .replace_send_buffer(tcp::SocketBuffer::new(vec![0; 65536]))
        .unwrap();
    assert_eq!(old.capacity(), 8192);
    assert_eq!(s.socket().send_queue(), 6000);
    let more: Vec<u8> = (0..20000u32).map(|i| (i * 13 % 241) as u8).collect();
    assert_eq!(s.socket().send_slice(&more).unwrap(), 20000);
    let mut got = Vec::new();
    let mut swapped_back = false;
    for _ in 0..400 {
        pump(&mut c, &mut s, now);
        let mut buf = [0u8; 4096];
        while let Ok(k) = c.socket().recv_slice(&mut buf) {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
        if !swapped_back && s.socket().send_queue() <= 4000 {
            // Back to a small buffer once what is queued fits.
            s.socket()
                .replace_send_buffer(tcp::SocketBuffer::new(vec![0; 4096]))
                .unwrap();
            swapped_back = true;
        }
        now += Duration::from_millis(50);
    }
    assert!(swapped_back);
    let mut want = data;
    want.extend_from_slice(&more);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the stream changed across the swaps");
}

/// Patch 10: `tcp::Socket::into_buffers` and `RingBuffer::into_storage`
/// give back borrowed storage — the same memory, not a copy — so that a
/// receive buffer lent from our own arena can be reused once its socket is
/// done with.
#[test]
fn into_buffers_returns_borrowed_storage() {
    let rx: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
    let rx_at = rx.as_ptr();
    let mut sock = tcp::Socket::new(
        tcp::SocketBuffer::new(rx),
        tcp::SocketBuffer::new(vec![0; 1024]),
    );
    sock.listen(80).unwrap();
    assert_eq!(sock.recv_capacity(), 4096);
    let (rx, tx) = sock.into_buffers();
    assert_eq!(tx.capacity(), 1024);
    match rx.into_storage() {
        managed::ManagedSlice::Borrowed(b) => {
            assert_eq!(b.as_ptr(), rx_at, "the very same memory");
            assert_eq!(b.len(), 4096);
        }
        managed::ManagedSlice::Owned(_) => panic!("borrowed storage came back owned"),
    }
}

/// Patch 11: with nothing buffered the receive ring starts over at offset
/// 0 (unpatched, each request landed after the last one, so a keep-alive
/// connection walked through — and touched — its whole buffer), and
/// `recv_storage_if_empty` lends the storage only while nothing is
/// buffered, in order or out of order.
#[test]
fn rx_ring_restarts_when_empty_and_lends_its_storage() {
    let (mut c, mut s, mut now) = connected();
    let mut buf = [0u8; 256];
    for (round, byte) in [b'A', b'B', b'C'].into_iter().enumerate() {
        c.socket().send_slice(&[byte; 100]).unwrap();
        for _ in 0..5 {
            pump(&mut c, &mut s, now);
            now += Duration::from_millis(1);
        }
        assert_eq!(s.socket().recv_queue(), 100, "round {round}");
        assert!(
            s.socket().recv_storage_if_empty().is_none(),
            "not while data waits"
        );
        assert_eq!(s.socket().recv_slice(&mut buf).unwrap(), 100);
        let storage = s.socket().recv_storage_if_empty().expect("empty now");
        assert_eq!(storage.len(), 8192);
        assert!(
            storage[..100].iter().all(|&b| b == byte),
            "round {round}: the data landed at offset 0"
        );
        assert!(storage[100..200].iter().all(|&b| b != b'B' && b != b'C'));
    }

    // A segment beyond a hole sits in the assembler: not empty.
    c.socket().send_slice(&[b'x'; 100]).unwrap();
    let first = c.poll(now);
    assert_eq!(first.len(), 1);
    c.socket().send_slice(&[b'y'; 100]).unwrap();
    let second = c.poll(now);
    assert_eq!(second.len(), 1);
    // Only the second arrives: out of order.
    s.dev.rx.push_back(second[0].clone());
    s.poll(now);
    assert_eq!(s.socket().recv_queue(), 0);
    assert!(
        s.socket().recv_storage_if_empty().is_none(),
        "out-of-order data is buffered too"
    );
    s.dev.rx.push_back(first[0].clone());
    s.poll(now);
    assert_eq!(s.socket().recv_queue(), 200);
}

/// Patch 12: `ack_now` makes an idle, fully acknowledged connection send
/// an ACK with its window at the next poll (unpatched: nothing to send, and
/// no such entry point).
#[test]
fn ack_now_sends_an_ack_with_the_window_again() {
    let (mut c, mut s, mut now) = connected();
    c.socket().send_slice(b"hello").unwrap();
    for _ in 0..5 {
        pump(&mut c, &mut s, now);
        now += Duration::from_millis(1);
    }
    // Quiet: everything acknowledged, nothing to say.
    assert!(s.poll(now).is_empty());
    s.socket().ack_now();
    let out = s.poll(now);
    let acks: Vec<_> = out
        .iter()
        .filter_map(|f| seg::parse(f))
        .filter(|x| x.has(seg::ACK) && x.payload_len == 0)
        .collect();
    assert_eq!(acks.len(), 1, "one ACK again: {acks:?}");
    assert!(acks[0].window > 0);
    // Once: then quiet again.
    assert!(s.poll(now + Duration::from_millis(1)).is_empty());
}

/// Patch 13: a listening socket takes up a handshake answered elsewhere
/// by a SYN cookie. The server never sees the client's SYN; the test
/// answers it with a SYN-ACK of its own (sequence number `ISS`, MSS only),
/// hands the listener the handshake (`accept_syn_cookie`), and the
/// client's ACK completes it: data flows both ways at the cookie's
/// sequence numbers, with no window scaling. Unpatched there is no way in.
#[test]
fn accept_syn_cookie_takes_up_a_stateless_handshake() {
    const ISS: u32 = 0xfedc_ba98;
    let mut c = Host::new(1, [10, 0, 0, 1]);
    let mut s = Host::new(2, [10, 0, 0, 2]);
    s.socket().listen(80).unwrap();
    connect_client(&mut c);
    // Deliver everything but the client's SYN (ARP goes through).
    let mut client_syn = None;
    let mut now = Instant::ZERO;
    for _ in 0..10 {
        for f in c.poll(now) {
            match seg::parse(&f) {
                Some(x) if x.has(seg::SYN) => client_syn = Some(x),
                _ => s.dev.rx.push_back(f),
            }
        }
        for f in s.poll(now) {
            c.dev.rx.push_back(f);
        }
        now += Duration::from_millis(1);
        if client_syn.is_some() {
            break;
        }
    }
    let syn = client_syn.expect("the client sent its SYN");
    assert_eq!(s.socket().state(), tcp::State::Listen);
    let mut f = seg::with_mss(
        seg::build(
            EthernetAddress([2, 0, 0, 0, 0, 2]),
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            smoltcp::wire::Ipv4Address::new(10, 0, 0, 2),
            smoltcp::wire::Ipv4Address::new(10, 0, 0, 1),
            80,
            40000,
            ISS,
            syn.seq.wrapping_add(1),
            seg::SYN | seg::ACK,
            8192,
        ),
        1460,
    );
    {
        let mut ip = smoltcp::wire::Ipv4Packet::new_unchecked(&mut f[14..]);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let mut tcp = smoltcp::wire::TcpPacket::new_unchecked(ip.payload_mut());
        tcp.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
    }
    c.dev.rx.push_back(f);
    let local = smoltcp::wire::IpEndpoint::new(IpAddress::v4(10, 0, 0, 2), 80);
    let remote = smoltcp::wire::IpEndpoint::new(IpAddress::v4(10, 0, 0, 1), 40000);
    let iss = smoltcp::wire::TcpSeqNumber(ISS as i32);
    let irs = smoltcp::wire::TcpSeqNumber(syn.seq as i32);
    // Only a listener, on its own endpoint, takes it.
    let mut other = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 64]),
        tcp::SocketBuffer::new(vec![0; 64]),
    );
    assert!(other
        .accept_syn_cookie(local, remote, iss, irs, 1460, 8192)
        .is_err());
    other.listen(81).unwrap();
    assert!(other
        .accept_syn_cookie(local, remote, iss, irs, 1460, 8192)
        .is_err());
    s.socket()
        .accept_syn_cookie(local, remote, iss, irs, 1460, 8192)
        .unwrap();
    assert_eq!(s.socket().state(), tcp::State::SynReceived);
    // The listener sends no SYN-ACK of its own: the cookie's was sent.
    let mut server_out = Vec::new();
    for _ in 0..10 {
        for f in c.poll(now) {
            s.dev.rx.push_back(f);
        }
        let out = s.poll(now);
        server_out.extend(out.iter().filter_map(|f| seg::parse(f)));
        for f in out {
            c.dev.rx.push_back(f);
        }
        now += Duration::from_millis(1);
    }
    assert!(
        server_out.iter().all(|x| !x.has(seg::SYN)),
        "{server_out:?}"
    );
    assert_eq!(c.socket().state(), tcp::State::Established);
    assert_eq!(s.socket().state(), tcp::State::Established);
    c.socket().send_slice(b"request").unwrap();
    let mut got = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..10 {
        for f in c.poll(now) {
            s.dev.rx.push_back(f);
        }
        let mut buf = [0u8; 64];
        if let Ok(n @ 1..) = s.socket().recv_slice(&mut buf) {
            got.extend_from_slice(&buf[..n]);
            s.socket().send_slice(b"reply").unwrap();
        }
        let out = s.poll(now);
        sent.extend(
            out.iter()
                .filter_map(|f| seg::parse(f))
                .filter(|x| x.payload_len > 0),
        );
        for f in out {
            c.dev.rx.push_back(f);
        }
        now += Duration::from_millis(1);
    }
    assert_eq!(got, b"request");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].seq, ISS.wrapping_add(1), "the cookie is the ISN");
    let mut buf = [0u8; 16];
    let n = c.socket().recv_slice(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"reply");
}

/// A TCP frame with its window field set to `window` (unscaled: these
/// hosts' buffers are too small to scale), checksums made right again.
fn with_window(frame: &[u8], window: u16) -> Vec<u8> {
    let mut f = frame.to_vec();
    let s = seg::parse(&f).expect("a TCP frame");
    seg::set_window(&mut f, &s, window);
    let mut ip = smoltcp::wire::Ipv4Packet::new_unchecked(&mut f[14..]);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let mut tcp = smoltcp::wire::TcpPacket::new_unchecked(ip.payload_mut());
    tcp.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
    f
}

/// The client's pure ACK of everything it holds, with its window set to
/// `window`.
fn client_ack(c: &mut Host, now: Instant, window: u16) -> Vec<u8> {
    c.socket().ack_now();
    let out = c.poll(now);
    let ack = out
        .iter()
        .find(|f| seg::parse(f).is_some_and(|s| s.has(seg::ACK) && s.payload_len == 0))
        .expect("the client's ACK");
    with_window(ack, window)
}

/// Patch 14: the server sends three segments; the client has no room for
/// them (they are dropped) and says so with a zero window, then opens its
/// window by less than what is in flight. The server must resend from the
/// client's ACK at once. Unpatched, when the zero-window ACK acknowledged
/// nothing (`first_arrives: false`) the data waited for the retransmission
/// timer (1 s); when it acknowledged the first segment (`true`), the
/// zero-window probe timer replaced the retransmission timer, leaving
/// probing idled it, and the connection hung for good.
fn window_reopened_after_a_zero_window(first_arrives: bool) {
    let (mut c, mut s, now) = connected();
    s.socket().send_slice(&[7u8; 3 * 1460]).unwrap();
    let sent: Vec<_> = s.poll(now).into_iter().filter(|f| has_data(f)).collect();
    assert_eq!(sent.len(), 3);
    let mut una = seq_of(&sent[0]);
    if first_arrives {
        c.dev.rx.push_back(sent[0].clone());
        c.poll(now);
        una = seq_of(&sent[1]);
    }
    // The rest is dropped at the client, which has no room left.
    let zero = client_ack(&mut c, now, 0);
    assert_eq!(seg::parse(&zero).unwrap().ack, una);
    s.dev.rx.push_back(zero);
    let t = now + Duration::from_millis(5);
    let out = s.poll(t);
    assert!(!out.iter().any(|f| has_data(f)), "no room: nothing to send");
    // The window opens by one segment's worth, less than what is in flight.
    s.dev.rx.push_back(client_ack(&mut c, t, 1460));
    let t = t + Duration::from_millis(5);
    let out = s.poll(t);
    assert!(
        out.iter().any(|f| has_data(f) && seq_of(f) == una),
        "the reopened window did not bring the unacknowledged data back"
    );
    // And the stream completes, well within a retransmission timeout.
    let mut t = t;
    c.dev.rx.extend(out);
    for _ in 0..50 {
        pump(&mut c, &mut s, t);
        t += Duration::from_millis(1);
    }
    assert_eq!(c.socket().recv_queue(), 3 * 1460);
}

#[test]
fn a_window_reopened_after_a_zero_window_resends_what_was_in_flight() {
    window_reopened_after_a_zero_window(false);
}

#[test]
fn a_window_reopened_after_a_zero_window_that_acknowledged_data_does_not_hang() {
    window_reopened_after_a_zero_window(true);
}

/// Patch 15: `retransmit_now` resends from SND.UNA at the next dispatch,
/// well before the retransmission timer (1 s at least), and does nothing
/// when nothing is in flight.
#[test]
fn retransmit_now_resends_the_unacknowledged_at_once() {
    let (mut c, mut s, now) = connected();
    assert!(!s.socket().retransmit_now(), "nothing in flight");
    assert!(!s.poll(now).iter().any(|f| has_data(f)));
    s.socket().send_slice(&[7u8; 2 * 1460]).unwrap();
    let sent: Vec<_> = s.poll(now).into_iter().filter(|f| has_data(f)).collect();
    assert_eq!(sent.len(), 2, "both lost");
    let t = now + Duration::from_millis(10);
    assert!(s.poll(t).is_empty(), "the timer is not due for a second");
    assert!(s.socket().retransmit_now());
    let again: Vec<_> = s.poll(t).into_iter().filter(|f| has_data(f)).collect();
    assert_eq!(
        again.iter().map(|f| seq_of(f)).collect::<Vec<_>>(),
        sent.iter().map(|f| seq_of(f)).collect::<Vec<_>>(),
        "both again, from SND.UNA"
    );
    c.dev.rx.extend(again);
    let mut t = t;
    for _ in 0..10 {
        pump(&mut c, &mut s, t);
        t += Duration::from_millis(1);
    }
    assert_eq!(c.socket().recv_queue(), 2 * 1460);
    assert!(!s.socket().retransmit_now(), "all acknowledged");
}

/// Patch 16: `snd_una` and `snd_nxt` say where the sender stands: both at
/// the ISN + 1 after the handshake, SND.NXT past what was sent, SND.UNA
/// at the peer's ACK, SND.NXT back at SND.UNA after a rewind.
#[test]
fn snd_una_and_snd_nxt_follow_the_sender() {
    let (mut c, mut s, now) = connected();
    let start = s.socket().snd_una();
    assert_eq!(s.socket().snd_nxt(), start, "nothing in flight");
    s.socket().send_slice(&[7u8; 3 * 1460]).unwrap();
    let sent: Vec<_> = s.poll(now).into_iter().filter(|f| has_data(f)).collect();
    assert_eq!(sent.len(), 3);
    assert_eq!(
        seq_of(&sent[0]),
        start.0 as u32,
        "SND.UNA is the first byte"
    );
    assert_eq!(s.socket().snd_una(), start);
    assert_eq!(s.socket().snd_nxt(), start + 3 * 1460);
    // The client gets the first segment only and acknowledges it.
    c.dev.rx.push_back(sent[0].clone());
    let t = now + Duration::from_millis(1);
    for f in c.poll(t) {
        s.dev.rx.push_back(f);
    }
    s.poll(t);
    assert_eq!(s.socket().snd_una(), start + 1460);
    assert_eq!(s.socket().snd_nxt(), start + 3 * 1460);
    assert!(s.socket().retransmit_now());
    assert_eq!(
        s.socket().snd_nxt(),
        start + 1460,
        "a rewind resends from SND.UNA"
    );
}
