//! The client: a smoltcp interface with its own in-memory NIC, running the
//! scenario's connections. smoltcp here stands for an unmodified client
//! kernel; where it differs from one in a way that matters for a takeover
//! the NIC says so (gratuitous ARP, below).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use smoltcp::iface::{Config, Context, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address,
};

use crate::addresses::{vip, vip_index, PORT, TLS_PORT};
use crate::reply;
use crate::scenario::{Close, ConnScript, Sending};
use crate::tls::ClientTls;

pub const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x64]);
pub const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 77, 0, 100);
/// Local port of the scenario's first connection (then +1 each).
pub const FIRST_PORT: u16 = 40_000;
const SOCKET_BUFFER: usize = 256 * 1024;

fn smol(t: Duration) -> SmolInstant {
    SmolInstant::from_micros(t.as_micros() as i64)
}

/// The client's NIC: frames in from the LAN, frames out to it.
struct Nic {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct RxToken(Vec<u8>);
struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl phy::Device for Nic {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _ts: SmolInstant) -> Option<(RxToken, TxToken<'_>)> {
        let f = self.rx.pop_front()?;
        Some((RxToken(f), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _ts: SmolInstant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        // The nodes leave TCP checksums to the kernel under their TAP (the
        // simulation has none), so neither side computes or checks them;
        // IPv4 header checksums are real and checked.
        let mut csum = ChecksumCapabilities::default();
        csum.tcp = Checksum::None;
        caps.checksum = csum;
        caps
    }
}

/// One client connection and its progress through its script.
pub struct ClientConn {
    pub script: ConnScript,
    handle: SocketHandle,
    pub local_port: u16,
    /// Requests queued so far.
    pub next_req: usize,
    out: Vec<u8>,
    out_pos: usize,
    /// Everything received, in order.
    pub received: Vec<u8>,
    /// Whole replies received so far.
    pub complete: usize,
    /// The last complete reply says `Connection: close`.
    pub server_closes: bool,
    pub parse_error: Option<String>,
    pub closed_by_us: bool,
    pub established: bool,
    pub state: tcp::State,
    /// The socket ended without the client closing it (reset, refusal).
    pub abnormal: Option<String>,
    /// When every reply was in.
    pub replies_at: Option<Duration>,
    pub done_at: Option<Duration>,
    /// HTTPS: the TLS client; `out` and `received` are then plaintext.
    tls: Option<Box<rustls::ClientConnection>>,
    /// HTTPS: ciphertext for the socket, and how much of it is written.
    wire_out: Vec<u8>,
    wire_pos: usize,
    /// HTTPS: ciphertext bytes received.
    pub wire_received: u64,
    /// HTTPS: TLS failed (`abnormal` says why); rustls is not called again.
    tls_failed: bool,
    /// HTTPS, pipelined with `key_update_after`: the KeyUpdate went out.
    key_update_sent: bool,
    /// The socket is connecting or connected (a connection with
    /// `script.after` waits for that one to be done).
    pub opened: bool,
    /// HTTPS: ciphertext bytes handed to the socket.
    pub wire_sent: u64,
    /// HTTPS: its ClientHello offered a session ticket.
    pub offered_ticket: bool,
    /// HTTPS: rustls could have sent 0-RTT data on it (a ticket that
    /// allows early data).
    pub early_data_possible: bool,
    /// HTTPS: the server's early-data acceptance, once the handshake is over.
    pub early_data_accepted: bool,
    /// HTTPS: bytes of 0-RTT data the client wrote (`script.early_data`).
    pub early_data_sent: usize,
    /// HTTPS: how the handshake went (full, with a HelloRetryRequest,
    /// resumed), once it is over at the client.
    pub handshake_kind: Option<rustls::HandshakeKind>,
    /// HTTPS: the client's session tickets (all its connections) when
    /// this one was opened.
    pub tickets_at_open: u64,
    /// HTTPS: for each KeyUpdate(update_requested) the client sent, the
    /// request it sent right after it (the judge holds the server to an
    /// answer before that request's reply).
    pub key_updates: Vec<usize>,
    /// HTTPS: the random of its ClientHello (what the client's key log
    /// files the server's traffic secret under).
    pub client_random: Option<[u8; 32]>,
    /// HTTPS: the negotiated cipher suite (IANA number).
    pub suite: Option<u16>,
    /// HTTPS with KeyUpdates in its script: every byte the server sent,
    /// for the judge to open itself (`tls::check_key_update_answers`).
    pub server_wire: Vec<u8>,
}

impl ClientConn {
    pub fn done(&self) -> bool {
        self.done_at.is_some()
    }

    /// HTTPS: TLS failed at the client (`abnormal` says why).
    pub fn tls_failed(&self) -> bool {
        self.tls_failed
    }

    pub fn describe(&self) -> String {
        if !self.opened {
            return format!(
                "port {} not opened (waits for connection {:?})",
                self.local_port, self.script.after
            );
        }
        format!(
            "port {} state {} sent {}/{} requests ({} of {} bytes written), {} of {} replies complete, {} bytes received",
            self.local_port,
            self.state,
            self.next_req,
            self.script.requests.len(),
            self.out_pos,
            self.out.len(),
            self.complete,
            self.script.requests.len(),
            self.received.len()
        )
    }

    /// Whether the connection is ready for requests: TCP is up and, on
    /// HTTPS, the TLS handshake is done.
    fn ready(&self) -> bool {
        self.established && self.tls.as_ref().is_none_or(|t| !t.is_handshaking())
    }

    /// HTTPS: hand the plaintext written so far to TLS and its records to
    /// the socket.
    fn pump_tls_out(&mut self, sock: &mut tcp::Socket<'_>) -> bool {
        let Some(t) = self.tls.as_mut().filter(|_| !self.tls_failed) else {
            return false;
        };
        let mut moved = false;
        if self.out_pos < self.out.len() && !t.is_handshaking() {
            use std::io::Write;
            if t.writer().write_all(&self.out[self.out_pos..]).is_ok() {
                self.out_pos = self.out.len();
                moved = true;
            }
        }
        while t.wants_write() {
            if t.write_tls(&mut self.wire_out).is_err() {
                break;
            }
        }
        if self.client_random.is_none() {
            // The first thing written is the ClientHello: record header
            // (5), handshake header (4), legacy_version (2), then the
            // random (32).
            if let Some(r) = self.wire_out.get(11..43).filter(|_| self.wire_out[0] == 22) {
                self.client_random = r.try_into().ok();
            }
        }
        while self.wire_pos < self.wire_out.len() && sock.can_send() {
            let n = sock
                .send_slice(&self.wire_out[self.wire_pos..])
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            self.wire_pos += n;
            self.wire_sent += n as u64;
            moved = true;
        }
        if self.wire_pos == self.wire_out.len() {
            self.wire_out.clear();
            self.wire_pos = 0;
        }
        moved
    }

    /// HTTPS: the request just queued goes to rustls now, and a KeyUpdate
    /// (update requested) right after it: both records in the same write.
    fn key_update_after_request(&mut self) {
        let Some(t) = self.tls.as_mut().filter(|_| !self.tls_failed) else {
            return;
        };
        use std::io::Write;
        if t.is_handshaking() || t.writer().write_all(&self.out[self.out_pos..]).is_err() {
            return;
        }
        self.out_pos = self.out.len();
        if let Err(e) = t.refresh_traffic_keys() {
            self.abnormal
                .get_or_insert(format!("TLS: the client could not send a KeyUpdate: {e}"));
        }
    }

    /// HTTPS: the server's records through TLS; plaintext to `received`.
    /// A TLS error (an alert from the server, a record that does not open)
    /// ends the connection abnormally.
    fn take_tls_in(&mut self, data: &[u8]) {
        let Some(t) = self.tls.as_mut().filter(|_| !self.tls_failed) else {
            return;
        };
        self.wire_received += data.len() as u64;
        if self.script.key_update {
            self.server_wire.extend_from_slice(data);
        }
        let mut rd = data;
        while !rd.is_empty() {
            let failed = match t.read_tls(&mut rd) {
                Err(e) => Some(format!(
                    "TLS: the client could not take the server's bytes: {e}"
                )),
                Ok(_) => t
                    .process_new_packets()
                    .err()
                    .map(|e| format!("TLS error at the client: {e}")),
            };
            if let Some(why) = failed {
                self.tls_failed = true;
                self.abnormal.get_or_insert(why);
                break;
            }
            if self.handshake_kind.is_none() && !t.is_handshaking() {
                self.handshake_kind = t.handshake_kind();
                self.suite = t.negotiated_cipher_suite().map(|s| u16::from(s.suite()));
                self.early_data_accepted = t.is_early_data_accepted();
            }
            let mut buf = [0u8; 16384];
            loop {
                use std::io::Read;
                match t.reader().read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.received.extend_from_slice(&buf[..n]),
                }
            }
        }
    }

    /// Connect its socket (and, on HTTPS, start its TLS client).
    fn open(&mut self, sock: &mut tcp::Socket<'_>, cx: &mut Context, tls: &ClientTls) {
        // HTTPS on its own port of the same address.
        let port = if self.script.tls { TLS_PORT } else { PORT };
        sock.connect(
            cx,
            IpEndpoint::new(IpAddress::Ipv4(vip(self.script.address)), port),
            self.local_port,
        )
        .expect("connecting a fresh socket");
        self.opened = true;
        self.state = tcp::State::SynSent;
        if self.script.tls {
            let mut o = tls.connect(self.script.hello_retry, self.script.early_data);
            // After `connect`: another server's tickets it fetched are not
            // this connection's.
            self.tickets_at_open = tls.tickets_received();
            self.offered_ticket = o.offered_ticket;
            self.early_data_possible = o.early_data_possible;
            if self.script.early_data {
                // The first request as 0-RTT data, besides (not instead of)
                // its ordinary sending after the handshake: a node that
                // took the early data would run it twice.
                if let (Some(mut w), Some(r)) = (o.conn.early_data(), self.script.requests.first())
                {
                    use std::io::Write;
                    if w.write_all(r).is_ok() {
                        self.early_data_sent = r.len();
                    }
                }
            }
            self.tls = Some(Box::new(o.conn));
        }
    }

    /// Move the script along; returns whether anything moved.
    fn drive(&mut self, sock: &mut tcp::Socket<'_>, now: Duration) -> bool {
        if !self.opened {
            return false;
        }
        let mut moved = false;
        let st = sock.state();
        if st != self.state {
            if st == tcp::State::Closed && !self.closed_by_us && self.abnormal.is_none() {
                self.abnormal = Some(format!(
                    "socket went {} -> Closed without the client closing it (reset or refused)",
                    self.state
                ));
            }
            self.state = st;
            moved = true;
        }
        if matches!(
            st,
            tcp::State::Established | tcp::State::CloseWait | tcp::State::FinWait1
        ) {
            self.established = true;
        }
        let n_req = self.script.requests.len();
        moved |= self.pump_tls_out(sock);
        if self.ready() && !self.closed_by_us && sock.may_send() {
            match self.script.send {
                Sending::AllAtOnce | Sending::FirstAtOnce(_) if self.next_req == 0 => {
                    let n = match self.script.send {
                        Sending::FirstAtOnce(n) => n.min(n_req),
                        _ => n_req,
                    };
                    if n > 0 {
                        for r in &self.script.requests[..n] {
                            self.out.extend_from_slice(r);
                        }
                        self.next_req = n;
                        moved = true;
                    }
                }
                Sending::AllAtOnce => {}
                Sending::OneByOne | Sending::FirstAtOnce(_) => {
                    if self.next_req < n_req
                        && self.complete == self.next_req
                        && self.out_pos == self.out.len()
                    {
                        if self.next_req > 0 && self.script.key_update {
                            if let Some(t) = self.tls.as_mut() {
                                // Goes out ahead of the request (rustls
                                // queues it now; the request is written
                                // after it).
                                // (rustls' KeyUpdate asks for the server's.)
                                match t.refresh_traffic_keys() {
                                    Ok(()) => self.key_updates.push(self.next_req),
                                    Err(e) => {
                                        self.abnormal.get_or_insert(format!(
                                            "TLS: the client could not send a KeyUpdate: {e}"
                                        ));
                                    }
                                }
                            }
                        }
                        self.out
                            .extend_from_slice(&self.script.requests[self.next_req]);
                        self.next_req += 1;
                        moved = true;
                        if self.next_req < n_req && self.script.key_update_after {
                            self.key_update_after_request();
                        }
                    }
                }
            }
        }
        moved |= self.pump_tls_out(sock);
        while self.tls.is_none() && self.out_pos < self.out.len() && sock.can_send() {
            let n = sock.send_slice(&self.out[self.out_pos..]).unwrap_or(0);
            if n == 0 {
                break;
            }
            self.out_pos += n;
            moved = true;
        }
        let mut got = false;
        while sock.can_recv() {
            let n = if self.tls.is_some() {
                let mut wire = Vec::new();
                let n = sock
                    .recv(|b| {
                        wire.extend_from_slice(b);
                        (b.len(), b.len())
                    })
                    .unwrap_or(0);
                self.take_tls_in(&wire);
                n
            } else {
                let rx = &mut self.received;
                sock.recv(|b| {
                    rx.extend_from_slice(b);
                    (b.len(), b.len())
                })
                .unwrap_or(0)
            };
            if n == 0 {
                break;
            }
            got = true;
        }
        if got
            && self.script.key_update_after
            && self.script.send == Sending::AllAtOnce
            && !self.key_update_sent
            && !self.received.is_empty()
        {
            // Pipelined: the KeyUpdate once the first reply bytes are in,
            // its own write after the requests (the owner node has read
            // them, and may have made their replies, before it reads it).
            self.key_update_sent = true;
            if let Some(t) = self.tls.as_mut().filter(|_| !self.tls_failed) {
                if let Err(e) = t.refresh_traffic_keys() {
                    self.abnormal
                        .get_or_insert(format!("TLS: the client could not send a KeyUpdate: {e}"));
                }
            }
        }
        // The client's Finished (or anything else TLS has to say) goes out.
        moved |= self.pump_tls_out(sock);
        if got {
            moved = true;
            match reply::parse_stream(&self.received) {
                Ok(p) => {
                    self.complete = p.replies.len();
                    self.server_closes = p.replies.last().is_some_and(reply::Reply::closes);
                }
                Err(e) => {
                    if self.parse_error.is_none() {
                        self.parse_error = Some(e);
                    }
                }
            }
        }
        // Every reply is in, and every request byte is written — or the
        // server said it closes, so it will read no more.
        if self.replies_at.is_none()
            && self.next_req == n_req
            && (self.out_pos == self.out.len() || self.server_closes)
            && self.complete >= n_req
        {
            self.replies_at = Some(now);
        }
        let close_now = !self.closed_by_us
            && match self.script.close {
                Close::WhenEstablished => self.ready(),
                Close::AfterReplies => self
                    .replies_at
                    .is_some_and(|at| now >= at + self.script.linger),
            };
        if close_now && sock.is_open() {
            if let Some(t) = self.tls.as_mut().filter(|_| !self.tls_failed) {
                // close_notify first, then FIN after it.
                t.send_close_notify();
                self.pump_tls_out(sock);
            }
            sock.close();
            self.closed_by_us = true;
            moved = true;
        }
        let st = sock.state();
        if self.closed_by_us
            && self.done_at.is_none()
            && matches!(st, tcp::State::TimeWait | tcp::State::Closed)
        {
            self.done_at = Some(now);
            moved = true;
        }
        moved
    }
}

pub struct Client {
    /// The client's TLS configurations and session store.
    pub tls: ClientTls,
    iface: Interface,
    nic: Nic,
    sockets: SocketSet<'static>,
    pub conns: Vec<ClientConn>,
    /// The MAC the client's neighbour entry for each service address
    /// holds, and when it was last confirmed.
    vip_mac: BTreeMap<Ipv4Address, (EthernetAddress, Duration)>,
    /// Gratuitous ARPs turned into neighbour updates.
    pub arp_updates: u64,
    /// Frames the NIC sends on its own at the next poll (ARP requests).
    nic_tx: Vec<Vec<u8>>,
}

impl Client {
    pub fn new(seed: u64, scripts: &[ConnScript], now: Duration) -> Self {
        let mut nic = Nic {
            rx: VecDeque::new(),
            tx: Vec::new(),
        };
        let mut cfg = Config::new(HardwareAddress::Ethernet(CLIENT_MAC));
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut nic, smol(now));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(CLIENT_IP), 24));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let mut conns = Vec::new();
        let tls = ClientTls::new();
        for (i, script) in scripts.iter().enumerate() {
            let s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
                tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
            );
            let local_port = FIRST_PORT + i as u16;
            let handle = sockets.add(s);
            conns.push(ClientConn {
                script: script.clone(),
                handle,
                local_port,
                next_req: 0,
                out: Vec::new(),
                out_pos: 0,
                received: Vec::new(),
                complete: 0,
                server_closes: false,
                parse_error: None,
                closed_by_us: false,
                established: false,
                state: tcp::State::Closed,
                abnormal: None,
                replies_at: None,
                done_at: None,
                tls: None,
                wire_out: Vec::new(),
                wire_pos: 0,
                wire_received: 0,
                tls_failed: false,
                key_update_sent: false,
                opened: false,
                wire_sent: 0,
                offered_ticket: false,
                early_data_possible: false,
                early_data_accepted: false,
                early_data_sent: 0,
                handshake_kind: None,
                tickets_at_open: 0,
                key_updates: Vec::new(),
                client_random: None,
                suite: None,
                server_wire: Vec::new(),
            });
        }
        for c in conns.iter_mut().filter(|c| c.script.after.is_none()) {
            let sock = sockets.get_mut::<tcp::Socket>(c.handle);
            c.open(sock, iface.context(), &tls);
        }
        // smoltcp sends one ARP request a second across all addresses
        // (its neighbour cache's rate limit), so a connection to a second
        // service address would start a second late; Linux resolves each
        // neighbour on its own. The NIC asks for every address but the
        // first connection's (smoltcp asks for that one) at once.
        let first = scripts.first().map(|s| s.address);
        let mut addresses: Vec<usize> = scripts
            .iter()
            .map(|s| s.address)
            .filter(|&a| Some(a) != first)
            .collect();
        addresses.sort_unstable();
        addresses.dedup();
        let nic_tx = addresses
            .iter()
            .map(|&a| {
                hotpair_stack::arp::request_to(
                    CLIENT_MAC,
                    CLIENT_IP,
                    EthernetAddress::BROADCAST,
                    vip(a),
                )
            })
            .collect();
        Client {
            tls,
            iface,
            nic,
            sockets,
            conns,
            vip_mac: BTreeMap::new(),
            arp_updates: 0,
            nic_tx,
        }
    }

    /// A frame from the LAN.
    ///
    /// A gratuitous ARP for an address the client already has a neighbour
    /// entry for updates that entry — what Linux does (even with
    /// `arp_accept=0`) and how a surviving node takes a service address
    /// over. smoltcp ignores ARP not aimed at its own address, so the NIC
    /// hands it over as a reply to the client. Each service address has
    /// its own entry: after a takeover one node may answer for several.
    pub fn receive(&mut self, frame: Vec<u8>, now: Duration) {
        if let Some((op, smac, sip, tip)) = arp_fields(&frame) {
            let service = vip_index(sip).is_some();
            if service && op == ArpOperation::Reply && tip == CLIENT_IP {
                self.vip_mac.insert(sip, (smac, now));
            }
            if service && op == ArpOperation::Request && sip == tip && smac != CLIENT_MAC {
                if let Some(entry) = self.vip_mac.get_mut(&sip) {
                    self.arp_updates += 1;
                    *entry = (smac, now);
                    self.nic
                        .rx
                        .push_back(hotpair_stack::arp::reply(smac, sip, CLIENT_MAC, CLIENT_IP));
                }
                return;
            }
        }
        self.nic.rx.push_back(frame);
    }

    /// Keep each service address's neighbour entry usable while its owner
    /// answers. smoltcp forgets an entry after 60 s and drops the packet
    /// that finds it gone (an ACK it then believes sent: the connection
    /// stalls); Linux keeps using a stale entry while it re-confirms it
    /// with unicast probes. `alive` says whether the MAC's owner would
    /// answer such a probe.
    pub fn refresh_neighbor(&mut self, now: Duration, alive: impl Fn(EthernetAddress) -> bool) {
        const REFRESH: Duration = Duration::from_secs(20);
        for (&ip, entry) in self.vip_mac.iter_mut() {
            let (mac, at) = *entry;
            if now >= at + REFRESH && alive(mac) {
                *entry = (mac, now);
                self.nic
                    .rx
                    .push_back(hotpair_stack::arp::reply(mac, ip, CLIENT_MAC, CLIENT_IP));
            }
        }
    }

    /// The MAC the client sends service address `ip`'s frames to, if it
    /// has one.
    pub fn neighbor(&self, ip: Ipv4Address) -> Option<EthernetAddress> {
        self.vip_mac.get(&ip).map(|&(mac, _)| mac)
    }

    /// Run the interface and the scripts until nothing moves; the frames
    /// to send.
    pub fn poll(&mut self, now: Duration) -> Vec<Vec<u8>> {
        self.nic.tx.append(&mut self.nic_tx);
        let mut rounds = 0;
        loop {
            rounds += 1;
            let r = self.iface.poll(smol(now), &mut self.nic, &mut self.sockets);
            let mut moved = false;
            for c in &mut self.conns {
                let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
                moved |= c.drive(s, now);
            }
            // Connections waiting for one that is now done open.
            for i in 0..self.conns.len() {
                let c = &self.conns[i];
                if c.opened || !c.script.after.is_some_and(|a| self.conns[a].done()) {
                    continue;
                }
                let c = &mut self.conns[i];
                let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
                c.open(s, self.iface.context(), &self.tls);
                moved = true;
            }
            if (r == PollResult::None && !moved) || rounds > 10_000 {
                break;
            }
        }
        std::mem::take(&mut self.nic.tx)
    }

    #[must_use]
    pub fn poll_delay(&mut self, now: Duration) -> Option<Duration> {
        if !self.nic.rx.is_empty() || !self.nic_tx.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut d = self
            .iface
            .poll_delay(smol(now), &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()));
        for c in &self.conns {
            if let (Some(at), false, Close::AfterReplies) =
                (c.replies_at, c.closed_by_us, c.script.close)
            {
                let w = (at + c.script.linger).saturating_sub(now);
                d = Some(d.map_or(w, |d| d.min(w)));
            }
        }
        d
    }

    pub fn done(&self) -> bool {
        self.conns.iter().all(ClientConn::done)
    }
}

/// (operation, sender MAC, sender IP, target IP) of an Ethernet/ARP frame.
fn arp_fields(frame: &[u8]) -> Option<(ArpOperation, EthernetAddress, Ipv4Address, Ipv4Address)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()?;
    match arp {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } => Some((
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
        )),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}
