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
