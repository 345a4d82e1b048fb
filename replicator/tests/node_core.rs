//! The node core's own rules, without HTTP traffic (the simulation drives
//! whole connections through it): which site a frame or a link message
//! reaches, who may speak on a link, and the dual-role takeover — the
//! survivor promotes its own address's shadows and claims the dead node's.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hotpair_http::Limits;
use hotpair_replicator::node::{
    channel_of, Handler, LinkAction, LinkError, NodeConfig, NodeConfigError, NodeCore, RoleChange,
    Route, SiteConfig, SiteState,
};
use hotpair_replicator::wire::Decoder;
use hotpair_replicator::{Msg, Policy, Role};
use hotpair_stack::arp;
use hotpair_stack::seg::{self, ACK, SYN};
use hotpair_stack::smoltcp::wire::{ArpOperation, EthernetAddress, Ipv4Address, Ipv4Cidr};
use hotpair_stack::{Admission, Frame};

const A: Ipv4Address = Ipv4Address::new(10, 77, 0, 10);
const B: Ipv4Address = Ipv4Address::new(10, 77, 0, 11);
const CLIENT: Ipv4Address = Ipv4Address::new(10, 77, 0, 100);
const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x64]);

/// The test's origin of time: read once per test, then passed in.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([2, 0x68, 0x70, 0, 0, n])
}

fn site(address: Ipv4Address, role: Role, peer: Option<usize>) -> SiteConfig {
    SiteConfig {
        address: Ipv4Cidr::new(address, 24),
        gateway: None,
        port: 80,
        admission: Admission {
            max_connections: 16,
            max_half_open: 8,
            half_open_timeout: Duration::from_secs(20),
            max_per_source: 16,
            syn_cookies: None,
        },
        role,
        peer,
        tls: None,
    }
}

fn config(name: &str, n: u8, sites: Vec<SiteConfig>, peers: &[&str]) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        mac: mac(n),
        sites,
        peers: peers.iter().map(|p| Some((*p).to_owned())).collect(),
        heartbeat_interval: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_millis(500),
        cold_start_wait: hotpair_replicator::replica::DEFAULT_COLD_START_WAIT,
        lan_check: None,
        app_check: None,
        rx_buffer_bytes: 16 * 1024,
        tx_buffer_bytes: 16 * 1024,
        limits: Limits::default(),
        routes: Vec::new(),
        seed: u64::from(n),
    }
}

/// A document root with one file, in a directory of its own.
fn docroot(tag: &str, content: &[u8]) -> hotpair_http::files::Files {
    let dir = std::env::temp_dir().join(format!("hotpair-node-core-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("page.html"), content).unwrap();
    let files = hotpair_http::files::Files::load(&dir, "/static/").unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    files
}

fn static_route(files: hotpair_http::files::Files, policy: Policy) -> Route {
    Route {
        prefix: "/static/".into(),
        handler: Handler::Files(files),
        policy,
    }
}

/// n1 owns A (primary n2) and is primary for B; n2 the mirror image.
fn dual_role(t0: Instant) -> (NodeCore, NodeCore) {
    dual_role_with(t0, |_| {})
}

/// [`dual_role`], each node's config passed through `tune` first.
fn dual_role_with(t0: Instant, tune: impl Fn(&mut NodeConfig)) -> (NodeCore, NodeCore) {
    let mk = |name: &str, n: u8, roles: [Role; 2], peer: &str| {
        let mut c = config(
            name,
            n,
            vec![site(A, roles[0], Some(0)), site(B, roles[1], Some(0))],
            &[peer],
        );
        tune(&mut c);
        NodeCore::new(c, t0).unwrap()
    };
    (
        mk("n1", 1, [Role::Owner, Role::Primary], "n2"),
        mk("n2", 2, [Role::Primary, Role::Owner], "n1"),
    )
}

/// Everything `from` has for its peer 0, through the real encoding.
fn carry(from: &mut NodeCore, to: &mut NodeCore, now: Instant) -> usize {
    let mut bytes = Vec::new();
    let mut n = 0;
    while let Some((ch, m)) = from.poll_link_transmit(0) {
        m.encode(ch, &mut bytes).unwrap();
        n += 1;
    }
    let mut dec = Decoder::new();
    dec.feed(&bytes);
    while let Some((ch, m)) = dec.next().unwrap() {
        to.handle_link_msg(0, ch, m, now).unwrap();
    }
    n
}

/// Links the pair up at `t0` and runs it (link carried, LAN frames
/// dropped) until every owner's start-up probes are over (300 ms, nobody
/// answering: each owner announces its address); returns the time then.
fn boot(n1: &mut NodeCore, n2: &mut NodeCore, t0: Instant) -> Instant {
    n1.handle_link_up(0, t0);
    n2.handle_link_up(0, t0);
    let mut t = t0;
    while t < t0 + Duration::from_millis(400) {
        settle(n1, n2, t);
        lan_out(n1);
        lan_out(n2);
        t += Duration::from_millis(50);
    }
    settle(n1, n2, t);
    t
}

fn settle(n1: &mut NodeCore, n2: &mut NodeCore, now: Instant) {
    for _ in 0..20 {
        let busy = n1.round(now) | n2.round(now);
        let moved = carry(n1, n2, now) + carry(n2, n1, now);
        if !busy && moved == 0 {
            return;
        }
    }
    panic!("the pair did not settle");
}

/// What `n` has for the LAN, asked at the latest time it was handed: no
/// time passes between its round and this (a pause is its own test).
fn lan_out(n: &mut NodeCore) -> Vec<Frame> {
    let now = n.last_call().expect("the core ran a round");
    std::iter::from_fn(|| n.poll_lan_transmit(now)).collect()
}

fn arp_who_has(ip: Ipv4Address) -> Frame {
    Frame::copy_from(&arp::request_to(
        CLIENT_MAC,
        CLIENT,
        EthernetAddress::BROADCAST,
        ip,
    ))
}

#[test]
fn configs_the_core_cannot_run_are_refused() {
    let t0 = origin();
    let err = |c| NodeCore::new(c, t0).err().unwrap();
    assert_eq!(err(config("n", 1, vec![], &[])), NodeConfigError::NoSites);
    assert_eq!(
        err(config(
            "n",
            1,
            vec![site(A, Role::Simplex, None), site(A, Role::Simplex, None)],
            &[]
        )),
        NodeConfigError::DuplicateAddress(A)
    );
    assert_eq!(
        err(config("n", 1, vec![site(A, Role::Owner, None)], &[])),
        NodeConfigError::BadPeer(A, Role::Owner)
    );
    assert_eq!(
        err(config(
            "n",
            1,
            vec![site(A, Role::Primary, Some(1))],
            &["p"]
        )),
        NodeConfigError::BadPeer(A, Role::Primary)
    );
    assert_eq!(
        err(config(
            "n",
            1,
            vec![site(A, Role::Simplex, Some(0))],
            &["p"]
        )),
        NodeConfigError::PeerForSimplex(A)
    );
}

#[test]
fn an_address_is_answered_on_the_lan_only_by_its_owner() {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    // Each owner probes for its own address at start (its peer may hold
    // it), and, nobody answering, announces it; nothing else.
    let t = t0 + Duration::from_millis(400);
    for (n, own, m) in [(&mut n1, A, 1), (&mut n2, B, 2)] {
        let (mut probes, mut announced) = (0, 0);
        let mut at = t0;
        while at <= t {
            n.round(at);
            for f in lan_out(n) {
                let a = arp::parse(f.data()).expect("only ARP at start");
                assert_eq!(a.sender_mac, mac(m));
                assert_eq!(a.target_ip, own);
                if a.sender_ip == Ipv4Address::UNSPECIFIED {
                    assert_eq!(announced, 0, "a probe after the announcement");
                    probes += 1;
                } else {
                    assert_eq!(a.sender_ip, own);
                    announced += 1;
                }
            }
            at += Duration::from_millis(50);
        }
        assert_eq!(probes, 3);
        assert!(announced >= 1);
    }
    let t0 = t;
    // Who has A? n1 answers, n2 (its primary) stays silent; and for B the
    // other way round.
    for (ip, owner) in [(A, 1u8), (B, 2u8)] {
        for (n, who) in [(&mut n1, 1u8), (&mut n2, 2u8)] {
            n.handle_lan_frame(arp_who_has(ip));
            n.round(t0);
            let replies: Vec<_> = lan_out(n)
                .iter()
                .filter_map(|f| arp::parse(f.data()))
                .filter(|a| a.operation == ArpOperation::Reply && a.sender_ip == ip)
                .collect();
            assert_eq!(
                replies.len(),
                usize::from(who == owner),
                "n{who} asked for {ip}: {replies:?}"
            );
        }
    }
    // A frame for an address of no site is dropped, not misrouted.
    n1.handle_lan_frame(arp_who_has(Ipv4Address::new(10, 77, 0, 99)));
    n1.round(t0);
    assert!(lan_out(&mut n1).is_empty());
}

#[test]
fn one_link_carries_both_addresses_and_only_the_configured_peer_speaks() {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    n1.handle_link_up(0, t0);
    n2.handle_link_up(0, t0);
    // Hello for A and for B, each on its own channel (each followed by
    // the node's LAN state).
    let mut hellos = Vec::new();
    while let Some((ch, m)) = n1.poll_link_transmit(0) {
        assert!(matches!(m, Msg::Hello { .. } | Msg::Lan { up: true }));
        if matches!(m, Msg::Hello { .. }) {
            hellos.push(ch);
        }
        n2.handle_link_msg(0, ch, m, t0).unwrap();
    }
    hellos.sort();
    assert_eq!(hellos, vec![channel_of(A), channel_of(B)]);
    settle(&mut n1, &mut n2, t0);
    for n in [&n1, &n2] {
        for i in 0..2 {
            assert_eq!(
                n.replica_stats(i).unwrap().peer,
                hotpair_replicator::PeerState::Up
            );
        }
    }
    // A channel the two do not share is refused (the caller drops the link).
    assert_eq!(
        n1.handle_link_msg(0, channel_of(CLIENT), Msg::Heartbeat { seq: 1 }, t0),
        Err(LinkError::UnknownChannel {
            channel: channel_of(CLIENT)
        })
    );
    // So is a node pretending to be another.
    let (mut m1, _) = dual_role(t0);
    m1.handle_link_up(0, t0);
    let impostor = Msg::Hello {
        version: hotpair_replicator::wire::VERSION,
        node: "mallory".into(),
        role: Role::Primary,
        epoch: 0,
        mac: [2, 0, 0, 0, 0, 0x66],
    };
    assert_eq!(
        m1.handle_link_msg(0, channel_of(A), impostor, t0),
        Err(LinkError::WrongPeer {
            expected: "n2".into(),
            got: "mallory".into()
        })
    );
    // A forwarded client frame is taken on the channel of an address this
    // node is primary for (B), refused on one it owns (A): there it would
    // come from the LAN, never from the peer.
    let frame = Bytes::from_static(b"a client frame");
    assert!(n1
        .handle_link_msg(
            0,
            channel_of(A),
            Msg::Frame {
                frame: frame.clone()
            },
            t0
        )
        .is_err());
    n1.handle_link_msg(0, channel_of(B), Msg::Frame { frame }, t0)
        .unwrap();
}

#[test]
fn the_survivor_of_a_dual_role_pair_promotes_its_address_and_claims_the_other() {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    let t0 = boot(&mut n1, &mut n2, t0);
    assert_eq!((n2.role(0), n2.role(1)), (Role::Primary, Role::Owner));
    assert_eq!(
        (n2.site_state(0), n2.site_state(1)),
        (SiteState::Replicated, SiteState::Replicated)
    );
    // n1's process dies: its kernel resets the link.
    let t1 = t0 + Duration::from_millis(50);
    n2.handle_link_lost(0, t1);
    n2.round(t1);
    let changes: Vec<_> = std::iter::from_fn(|| n2.poll_role_change()).collect();
    assert_eq!(
        changes,
        vec![
            RoleChange::Claiming { address: A },
            RoleChange::Promoted {
                address: B,
                connections: 0
            }
        ]
    );
    assert_eq!(n2.role(1), Role::Simplex, "B's shadows are live now");
    assert_eq!(n2.site_state(1), SiteState::Promoted);
    assert_eq!(
        n2.site_state(0),
        SiteState::Waiting,
        "A's claim probes first"
    );
    // Claiming A: RFC 5227 probes first (nobody answers: n1 is dead), then
    // gratuitous ARP, and n2 serves A alone.
    let mut probes = 0;
    let mut t = t1;
    for _ in 0..50 {
        n2.round(t);
        for f in lan_out(&mut n2) {
            if let Some(a) = arp::parse(f.data()) {
                if a.sender_ip == Ipv4Address::UNSPECIFIED && a.target_ip == A {
                    probes += 1;
                }
            }
        }
        t += Duration::from_millis(50);
    }
    assert_eq!(probes, 3);
    assert_eq!(n2.role(0), Role::Simplex, "A claimed");
    assert_eq!(n2.site_state(0), SiteState::Claimed);
    assert!(!n2.fenced(0) && !n2.all_fenced());
    // Who has A? n2 answers now.
    n2.handle_lan_frame(arp_who_has(A));
    n2.round(t);
    assert!(lan_out(&mut n2).iter().any(|f| arp::parse(f.data())
        .is_some_and(|a| a.operation == ArpOperation::Reply && a.sender_ip == A)));
}

#[test]
fn a_link_whose_peer_went_silent_is_dropped_and_tried_again_by_the_core() {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    let t = boot(&mut n1, &mut n2, t0);
    assert_eq!(n2.poll_link_action(t), None, "a live link was touched");
    // n1 freezes: the socket stays open, nothing comes. Past the
    // heartbeat timeout n2 declares it dead; the core drops the link.
    let mut at = t;
    let mut actions = Vec::new();
    while at < t + Duration::from_millis(800) {
        at += Duration::from_millis(50);
        n2.round(at);
        let _ = lan_out(&mut n2);
        while n2.poll_link_transmit(0).is_some() {}
        actions.extend(std::iter::from_fn(|| n2.poll_link_action(at)));
    }
    assert_eq!(
        actions,
        vec![
            LinkAction::Drop {
                peer: 0,
                why: "the peer was declared dead"
            },
            LinkAction::Reconnect {
                peer: 0,
                after: Duration::from_millis(100)
            },
        ]
    );
    // A set-up that fails is tried again, more slowly.
    n2.handle_link_failed(0);
    assert_eq!(
        n2.poll_link_action(at),
        Some(LinkAction::Reconnect {
            peer: 0,
            after: Duration::from_millis(1000)
        })
    );
    assert_eq!(n2.poll_link_action(at), None);
}

#[test]
fn a_cut_link_fences_only_the_claim_the_live_owner_answers() {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    let t0 = boot(&mut n1, &mut n2, t0);
    // The link is cut, both processes live: each promotes its own address
    // and probes for the other's; each owner answers the other's probe.
    let t1 = t0 + Duration::from_millis(10);
    n1.handle_link_lost(0, t1);
    n2.handle_link_lost(0, t1);
    let mut t = t1;
    for _ in 0..20 {
        n1.round(t);
        n2.round(t);
        let (f1, f2) = (lan_out(&mut n1), lan_out(&mut n2));
        // The LAN: a broadcast reaches the other node.
        for f in f1 {
            n2.handle_lan_frame(f);
        }
        for f in f2 {
            n1.handle_lan_frame(f);
        }
        t += Duration::from_millis(50);
    }
    // n1 keeps A (promoted), is fenced for B; n2 the mirror image. Neither
    // node stops: each still serves its own address.
    assert_eq!(n1.role(0), Role::Simplex);
    assert!(n1.fenced(1) && !n1.fenced(0) && !n1.all_fenced());
    assert_eq!(n2.role(1), Role::Simplex);
    assert!(n2.fenced(0) && !n2.fenced(1) && !n2.all_fenced());
    let states = |n: &NodeCore| (n.site_state(0), n.site_state(1));
    assert_eq!(states(&n1), (SiteState::Promoted, SiteState::Fenced));
    assert_eq!(states(&n2), (SiteState::Fenced, SiteState::Promoted));
}

#[test]
fn static_is_used_only_while_both_nodes_hold_the_same_content() {
    let t0 = origin();
    // n1 owns A, n2 is its primary: n2 decides whether /static/ replies
    // are made on both nodes or logged.
    let pair = |primary: &[u8], owner: &[u8], policy: Policy| {
        let mut n1 = config("n1", 1, vec![site(A, Role::Owner, Some(0))], &["n2"]);
        n1.routes = vec![static_route(docroot("owner", owner), policy)];
        let mut n2 = config("n2", 2, vec![site(A, Role::Primary, Some(0))], &["n1"]);
        n2.routes = vec![static_route(docroot("primary", primary), policy)];
        let (mut n1, mut n2) = (
            NodeCore::new(n1, t0).unwrap(),
            NodeCore::new(n2, t0).unwrap(),
        );
        assert!(!n2.static_in_use(0, 0), "not before the peer's digests");
        let t = boot(&mut n1, &mut n2, t0);
        (n1, n2, t)
    };
    let (n1, n2, _) = pair(b"<h1>same</h1>", b"<h1>same</h1>", Policy::Static);
    assert!(n2.static_in_use(0, 0) && n1.static_in_use(0, 0));
    // One byte differs on one node: the route falls back to logged.
    let (n1, n2, _) = pair(b"<h1>same</h1>", b"<h1>Same</h1>", Policy::Static);
    assert!(!n2.static_in_use(0, 0) && !n1.static_in_use(0, 0));
    // So does a route whose policy differs between the two configs.
    let (_, n2, _) = pair(b"x", b"x", Policy::SyncStatic);
    assert!(n2.static_in_use(0, 0));
    let mut other = config("n1", 1, vec![site(A, Role::Owner, Some(0))], &["n2"]);
    other.routes = vec![static_route(docroot("other", b"x"), Policy::Static)];
    let mut n1 = NodeCore::new(other, t0).unwrap();
    let mut n2b = config("n2", 2, vec![site(A, Role::Primary, Some(0))], &["n1"]);
    n2b.routes = vec![static_route(docroot("again", b"x"), Policy::SyncStatic)];
    let mut n2 = NodeCore::new(n2b, t0).unwrap();
    let t0 = boot(&mut n1, &mut n2, t0);
    assert!(!n2.static_in_use(0, 0));
    // And static on a route the owner node cannot make replies for is
    // refused outright.
    let mut bad = config("n", 1, vec![site(A, Role::Simplex, None)], &[]);
    bad.routes = vec![Route {
        prefix: "/gen/".into(),
        handler: Handler::Generate { max_size: 10 },
        policy: Policy::Static,
    }];
    assert_eq!(
        NodeCore::new(bad, t0).err(),
        Some(NodeConfigError::StaticNeedsFiles("/gen/".into()))
    );
}

#[test]
fn a_reload_compares_digests_again_and_static_is_back_once_both_nodes_agree() {
    let t0 = origin();
    let mut c1 = config("n1", 1, vec![site(A, Role::Owner, Some(0))], &["n2"]);
    c1.routes = vec![static_route(docroot("r-owner", b"v1"), Policy::Static)];
    let mut c2 = config("n2", 2, vec![site(A, Role::Primary, Some(0))], &["n1"]);
    c2.routes = vec![static_route(docroot("r-primary", b"v1"), Policy::Static)];
    let (mut n1, mut n2) = (
        NodeCore::new(c1, t0).unwrap(),
        NodeCore::new(c2, t0).unwrap(),
    );
    let mut t = boot(&mut n1, &mut n2, t0);
    assert!(n1.static_in_use(0, 0) && n2.static_in_use(0, 0));
    let v1 = n1.route_digest(0);
    // The owner reloads a changed file: at once neither node uses the
    // route as static (the primary hears of it in the owner's new Routes),
    // and the owner still holds the old generation for units on their way.
    let r = n1
        .handle_reload(vec![static_route(
            docroot("r-owner2", b"v2"),
            Policy::Static,
        )])
        .unwrap();
    assert_eq!(r.changed.len(), 1, "{r:?}");
    assert!(
        !n1.static_in_use(0, 0),
        "the owner compares with the peer's last Routes"
    );
    t += Duration::from_millis(10);
    settle(&mut n1, &mut n2, t);
    assert!(
        !n2.static_in_use(0, 0),
        "the primary heard of the owner's reload"
    );
    assert_ne!(n1.route_digest(0), v1);
    assert_eq!(n1.retired_generations(), vec![("/static/".to_owned(), v1)]);
    // The primary reloads the same change: equal digests, static again,
    // on both, in the same link session.
    n2.handle_reload(vec![static_route(
        docroot("r-primary2", b"v2"),
        Policy::Static,
    )])
    .unwrap();
    assert!(
        n2.static_in_use(0, 0),
        "the primary compares with the owner's new Routes"
    );
    t += Duration::from_millis(10);
    settle(&mut n1, &mut n2, t);
    assert!(n1.static_in_use(0, 0) && n2.static_in_use(0, 0));
    assert_eq!(n1.route_digest(0), n2.route_digest(0));
    // A reload that changes nothing keeps static in use and the retired
    // generation (units naming it may still come).
    n1.handle_reload(vec![static_route(
        docroot("r-owner3", b"v2"),
        Policy::Static,
    )])
    .unwrap();
    assert!(n1.static_in_use(0, 0));
    assert_eq!(n1.retired_generations(), vec![("/static/".to_owned(), v1)]);
    // A table the core cannot run is refused and the old one stays.
    let bad = n1.handle_reload(vec![Route {
        prefix: "/gen/".into(),
        handler: Handler::Generate { max_size: 10 },
        policy: Policy::Static,
    }]);
    assert_eq!(
        bad.err(),
        Some(NodeConfigError::StaticNeedsFiles("/gen/".into()))
    );
    assert_eq!(n1.route_prefix(0), "/static/");
    assert!(n1.static_in_use(0, 0));
}

#[test]
fn a_peer_leaving_is_taken_over_at_once_and_its_address_claimed_without_probes() {
    let t0 = origin();
    let pair = || {
        let n1 = config("n1", 1, vec![site(A, Role::Owner, Some(0))], &["n2"]);
        let n2 = config("n2", 2, vec![site(A, Role::Primary, Some(0))], &["n1"]);
        let (mut n1, mut n2) = (
            NodeCore::new(n1, t0).unwrap(),
            NodeCore::new(n2, t0).unwrap(),
        );
        let t = boot(&mut n1, &mut n2, t0);
        (n1, n2, t)
    };
    // The owner (owner) stops: its primary claims A in the same round,
    // a gratuitous ARP and no probe (the owner said it answers nothing).
    let (mut n1, mut n2, t0) = pair();
    let t1 = t0 + Duration::from_millis(10);
    n1.leave();
    assert!(carry(&mut n1, &mut n2, t1) >= 1);
    n2.round(t1);
    let changes: Vec<_> = std::iter::from_fn(|| n2.poll_role_change()).collect();
    assert_eq!(changes, vec![RoleChange::Claiming { address: A }]);
    n2.round(t1);
    let arps: Vec<_> = lan_out(&mut n2)
        .iter()
        .filter_map(|f| arp::parse(f.data()))
        .collect();
    assert!(
        arps.iter().any(|a| a.sender_ip == A && a.target_ip == A),
        "no announcement at once: {arps:?}"
    );
    assert!(!arps.iter().any(|a| a.sender_ip == Ipv4Address::UNSPECIFIED));
    assert_eq!(n2.role(0), Role::Simplex);
    // The primary stops: the owner promotes its shadows at once, well
    // before any heartbeat timeout.
    let (mut n1, mut n2, _) = pair();
    n2.leave();
    carry(&mut n2, &mut n1, t1);
    n1.round(t1);
    let changes: Vec<_> = std::iter::from_fn(|| n1.poll_role_change()).collect();
    assert_eq!(
        changes,
        vec![RoleChange::Promoted {
            address: A,
            connections: 0
        }]
    );
}

/// Frames `n` sends that are neither ARP probes nor answers to probes.
fn spoken(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| {
            arp::parse(f.data()).is_none_or(|a| {
                a.sender_ip != Ipv4Address::UNSPECIFIED && a.target_ip != Ipv4Address::UNSPECIFIED
            })
        })
        .map(|f| format!("{:02x?}", &f.data()[..f.data().len().min(42)]))
        .collect()
}

#[test]
fn a_node_paused_past_the_timeout_stays_silent_and_stands_down_where_its_peer_took_over() {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    let t0 = boot(&mut n1, &mut n2, t0);
    // n2 is frozen (SIGSTOP: its kernel keeps the link open). What n1
    // sends meanwhile waits in n2's socket buffer.
    let mut stale = Vec::new();
    let mut t = t0;
    for _ in 0..6 {
        t += Duration::from_millis(100);
        n1.round(t);
        while let Some(m) = n1.poll_link_transmit(0) {
            stale.push(m);
        }
    }
    // n1 declared n2 dead (heartbeat timeout): it promotes A, claims B.
    for _ in 0..10 {
        t += Duration::from_millis(100);
        n1.round(t);
        lan_out(&mut n1);
    }
    assert_eq!((n1.role(0), n1.role(1)), (Role::Simplex, Role::Simplex));
    // n2 resumes 2 s after it froze. Its first input is the stale link
    // data: refused (the session is gone), so the shell drops the link.
    let t2 = t0 + Duration::from_secs(2);
    let (ch, m) = stale.remove(0);
    assert!(n2.handle_link_msg(0, ch, m, t2).is_err());
    assert_eq!(n2.pauses(), 1);
    // A client asks n2 who has B (n2 owned it before it froze).
    n2.handle_lan_frame(arp_who_has(B));
    let mut t = t2;
    let mut n2_spoke = Vec::new();
    for _ in 0..20 {
        n2.round(t);
        n1.round(t);
        let (f2, f1) = (lan_out(&mut n2), lan_out(&mut n1));
        n2_spoke.extend(spoken(&f2));
        for f in f2 {
            n1.handle_lan_frame(f);
        }
        for f in f1 {
            n2.handle_lan_frame(f);
        }
        t += Duration::from_millis(50);
    }
    assert!(
        n2_spoke.is_empty(),
        "the resumed node spoke before its role was confirmed: {n2_spoke:?}"
    );
    // n1 answered n2's probes for both addresses: n2 stands down for both.
    assert!(
        n2.fenced(0) && n2.fenced(1),
        "n2 not fenced: {:?}",
        (n2.fenced(0), n2.fenced(1))
    );
    assert!(
        n2.engine_stats(1).silenced > 0,
        "the ARP reply was not held back"
    );
    assert!(!n1.fenced(0) && !n1.fenced(1));
}

#[test]
fn a_pause_counts_from_the_last_heartbeat_not_from_the_last_round() {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    let mut t = boot(&mut n1, &mut n2, t0);
    // n2 runs in 10 ms steps until it sends a heartbeat.
    let heartbeat_at = loop {
        t += Duration::from_millis(10);
        n1.round(t);
        n2.round(t);
        let mut sent_heartbeat = false;
        while let Some((ch, m)) = n2.poll_link_transmit(0) {
            sent_heartbeat |= matches!(m, Msg::Heartbeat { .. });
            n1.handle_link_msg(0, ch, m, t).unwrap();
        }
        while let Some((ch, m)) = n1.poll_link_transmit(0) {
            n2.handle_link_msg(0, ch, m, t).unwrap();
        }
        if sent_heartbeat {
            break t;
        }
    };
    // It runs on for 90 ms (no heartbeat due), then freezes for 420 ms:
    // shorter than the timeout, but its peer last heard from it 510 ms
    // before it resumes, and may have taken over.
    n2.round(heartbeat_at + Duration::from_millis(90));
    assert!(n2
        .poll_link_transmit(0)
        .is_none_or(|(_, m)| !matches!(m, Msg::Heartbeat { .. })));
    assert_eq!(n2.pauses(), 0);
    n2.round(heartbeat_at + Duration::from_millis(510));
    assert_eq!(
        n2.pauses(),
        1,
        "a pause that left 510 ms without a heartbeat went unnoticed"
    );
}

#[test]
fn a_paused_node_probes_long_enough_for_a_peer_stalled_by_the_same_load_to_answer() {
    // CI: both nodes of a lab starved for about half a second. The peer
    // had taken over; the resumed node's 36 ms of probes went unanswered
    // (the peer was stalled again), it claimed, and the split brain cost
    // a download. A node that knows it was paused probes for the
    // heartbeat timeout instead.
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    let t0 = boot(&mut n1, &mut n2, t0);
    // n2 freezes; n1 takes both addresses over.
    let mut t = t0;
    for _ in 0..16 {
        t += Duration::from_millis(100);
        n1.round(t);
        while n1.poll_link_transmit(0).is_some() {}
        lan_out(&mut n1);
    }
    assert_eq!((n1.role(0), n1.role(1)), (Role::Simplex, Role::Simplex));
    // n2 resumes; n1 is stalled for the next 300 ms: n2's probes wait.
    let t2 = t0 + Duration::from_secs(2);
    let mut t = t2;
    let mut queued = Vec::new();
    let mut n2_spoke = Vec::new();
    while t < t2 + Duration::from_millis(300) {
        n2.round(t);
        let f2 = lan_out(&mut n2);
        n2_spoke.extend(spoken(&f2));
        queued.extend(f2);
        t += Duration::from_millis(10);
    }
    assert_eq!(n2.pauses(), 1);
    // n1 runs again and answers; from now on the LAN carries both ways.
    for f in queued {
        n1.handle_lan_frame(f);
    }
    for _ in 0..30 {
        let [_, f2] = exchange(&mut n1, &mut n2, t, false);
        n2_spoke.extend(spoken(&f2));
        t += Duration::from_millis(10);
    }
    assert!(
        n2_spoke.is_empty(),
        "the resumed node claimed while its stalled peer held the addresses: {n2_spoke:?}"
    );
    assert!(
        n2.fenced(0) && n2.fenced(1),
        "n2 not fenced: {:?}",
        (n2.fenced(0), n2.fenced(1))
    );
    assert!(!n1.fenced(0) && !n1.fenced(1));
}

#[test]
fn a_paused_owner_whose_primary_is_gone_too_takes_over_after_its_probes() {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    let t0 = boot(&mut n1, &mut n2, t0);
    // n2 froze; n1 died meanwhile. n2 resumes: nobody answers its probes,
    // so it promotes B (its own) and claims A.
    let mut t = t0 + Duration::from_secs(2);
    n2.round(t);
    for _ in 0..20 {
        t += Duration::from_millis(50);
        n2.round(t);
        lan_out(&mut n2);
    }
    assert_eq!((n2.role(0), n2.role(1)), (Role::Simplex, Role::Simplex));
    assert!(!n2.fenced(0) && !n2.fenced(1));
    let changes: Vec<_> = std::iter::from_fn(|| n2.poll_role_change()).collect();
    assert!(changes.contains(&RoleChange::Promoted {
        address: B,
        connections: 0
    }));
}

/// Rounds of both nodes at `t`, with the LAN between them (broadcast and
/// unicast alike reach the other node) and the link carried; the frames
/// each sent, by node.
fn exchange(n1: &mut NodeCore, n2: &mut NodeCore, t: Instant, linked: bool) -> [Vec<Frame>; 2] {
    n1.round(t);
    n2.round(t);
    if linked {
        carry(n1, n2, t);
        carry(n2, n1, t);
        n1.round(t);
        n2.round(t);
    }
    let (f1, f2) = (lan_out(n1), lan_out(n2));
    cross(n1, n2, &f1, &f2);
    [f1, f2]
}

/// The LAN between the two nodes: what each sent reaches the other.
fn cross(n1: &mut NodeCore, n2: &mut NodeCore, f1: &[Frame], f2: &[Frame]) {
    for f in f1 {
        n2.handle_lan_frame(Frame::copy_from(f.data()));
    }
    for f in f2 {
        n1.handle_lan_frame(Frame::copy_from(f.data()));
    }
}

fn answers_for(frames: &[Frame], ip: Ipv4Address) -> usize {
    frames
        .iter()
        .filter_map(|f| arp::parse(f.data()))
        .filter(|a| a.operation == ArpOperation::Reply && a.sender_ip == ip)
        .count()
}

#[test]
fn a_restarted_node_stands_by_until_its_link_is_up_then_both_take_their_roles_back() {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    let t0 = boot(&mut n1, &mut n2, t0);
    // n2 crashes: n1 promotes A (its own) and claims B.
    let mut t = t0 + Duration::from_millis(10);
    n1.handle_link_lost(0, t);
    for _ in 0..10 {
        n1.round(t);
        lan_out(&mut n1);
        t += Duration::from_millis(50);
    }
    assert_eq!((n1.role(0), n1.role(1)), (Role::Simplex, Role::Simplex));
    // n2 starts again. Its link is not up yet: it probes for B, which n1
    // holds and answers for, so it stands by — silent, not announcing B.
    let n2c = config(
        "n2",
        2,
        vec![
            site(A, Role::Primary, Some(0)),
            site(B, Role::Owner, Some(0)),
        ],
        &["n1"],
    );
    let mut n2 = NodeCore::new(n2c, t).unwrap();
    for _ in 0..10 {
        let [_, f2] = exchange(&mut n1, &mut n2, t, false);
        assert!(
            f2.iter()
                .all(|f| arp::parse(f.data())
                    .is_some_and(|a| a.sender_ip == Ipv4Address::UNSPECIFIED)),
            "the restarted node spoke for B while n1 holds it"
        );
        t += Duration::from_millis(50);
    }
    assert!(n2.fenced(1), "the restarted owner of B does not stand by");
    // The link comes up: n2 takes B back (n1 is B's primary again and stops
    // answering for it), n1 goes back to owning A with n2 as its primary.
    n1.handle_link_up(0, t);
    n2.handle_link_up(0, t);
    let mut announced_b = 0;
    for _ in 0..6 {
        let [_, f2] = exchange(&mut n1, &mut n2, t, true);
        announced_b += f2
            .iter()
            .filter_map(|f| arp::parse(f.data()))
            .filter(|a| a.sender_ip == B && a.target_ip == B)
            .count();
        t += Duration::from_millis(50);
    }
    assert_eq!((n1.role(0), n1.role(1)), (Role::Owner, Role::Primary));
    assert_eq!((n2.role(0), n2.role(1)), (Role::Primary, Role::Owner));
    assert!(!n2.fenced(1) && !n1.fenced(0));
    assert!(announced_b >= 1, "n2 did not take B back on the LAN");
    // Each address is answered by its owner only.
    assert_owners_answer(&mut n1, &mut n2, t, "after the rejoin");
}

/// Who-has for A and for B: n1 answers A alone, n2 B alone.
fn assert_owners_answer(n1: &mut NodeCore, n2: &mut NodeCore, t: Instant, when: &str) {
    for (ip, owner) in [(A, 0), (B, 1)] {
        n1.handle_lan_frame(arp_who_has(ip));
        n2.handle_lan_frame(arp_who_has(ip));
        n1.round(t);
        n2.round(t);
        let got = [answers_for(&lan_out(n1), ip), answers_for(&lan_out(n2), ip)];
        let mut want = [0, 0];
        want[owner] = 1;
        assert_eq!(got, want, "who answers for {ip} {when}");
    }
}

#[test]
fn a_leaving_owner_stays_silent_but_its_link_carries_on_until_it_closes() {
    let t0 = origin();
    let n1 = config("n1", 1, vec![site(A, Role::Owner, Some(0))], &["n2"]);
    let n2 = config("n2", 2, vec![site(A, Role::Primary, Some(0))], &["n1"]);
    let (mut n1, mut n2) = (
        NodeCore::new(n1, t0).unwrap(),
        NodeCore::new(n2, t0).unwrap(),
    );
    let t0 = boot(&mut n1, &mut n2, t0);
    assert!(n1.leave_grace_wanted());
    n1.leave();
    let mut t = t0;
    for _ in 0..4 {
        t += Duration::from_millis(30);
        // A client still asks the owner: it answers nothing any more.
        n1.handle_lan_frame(arp_who_has(A));
        n1.round(t);
        assert!(
            lan_out(&mut n1).is_empty(),
            "a leaving node spoke on the LAN"
        );
        // Its messages (heartbeats, acks, forwarded frames) are still
        // taken by the primary, which claimed the address at `Leaving`.
        carry(&mut n1, &mut n2, t);
        n2.round(t);
        lan_out(&mut n2);
    }
    assert_eq!(n2.role(0), Role::Simplex, "the primary did not claim A");
    let changes: Vec<_> = std::iter::from_fn(|| n2.poll_role_change()).collect();
    assert_eq!(changes, vec![RoleChange::Claiming { address: A }]);
    // The owner closes the link: no second takeover.
    n2.handle_link_lost(0, t);
    n2.round(t);
    assert!(n2.poll_role_change().is_none());
}

#[test]
fn an_owner_starting_with_a_fresh_primary_announces_without_waiting_for_its_probes() {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    n1.handle_link_up(0, t0);
    n2.handle_link_up(0, t0);
    settle(&mut n1, &mut n2, t0);
    // Same instant: the primary's `Hello` said it never took A over (epoch
    // 0), so n1 owns A at once, with no 300 ms of silent probing.
    let announced = lan_out(&mut n1)
        .iter()
        .filter_map(|f| arp::parse(f.data()))
        .any(|a| a.sender_ip == A && a.target_ip == A);
    assert!(announced, "the owner did not announce A at once");
    n1.handle_lan_frame(arp_who_has(A));
    n1.round(t0);
    assert_eq!(answers_for(&lan_out(&mut n1), A), 1);
}

/// A client's SYN to `ip` (from port `port`), addressed to node `n`'s MAC.
fn client_syn(n: u8, ip: Ipv4Address, port: u16) -> Frame {
    Frame::copy_from(&seg::build(
        CLIENT_MAC,
        mac(n),
        CLIENT,
        ip,
        port,
        80,
        1000,
        0,
        SYN,
        65_535,
    ))
}

/// SYN-ACKs in `frames` from `ip` to the client.
fn syn_acks_from(frames: &[Frame], ip: Ipv4Address) -> usize {
    frames
        .iter()
        .filter_map(|f| seg::parse(f.data()))
        .filter(|s| s.src == ip && s.dst == CLIENT && s.has(SYN) && s.has(ACK))
        .count()
}

#[test]
fn a_node_started_alone_serves_every_address_after_the_cold_start_wait_then_rejoins() {
    let t0 = origin();
    let wait = hotpair_replicator::replica::DEFAULT_COLD_START_WAIT;
    let (mut n1, _) = dual_role(t0);
    // Until the wait is over n1 keeps its configured roles: it does not
    // answer for B, its peer's address.
    let mut t = t0;
    while t + Duration::from_millis(50) < t0 + wait {
        n1.handle_lan_frame(arp_who_has(B));
        n1.round(t);
        assert_eq!(answers_for(&lan_out(&mut n1), B), 0, "n1 spoke for B early");
        t += Duration::from_millis(50);
    }
    assert_eq!((n1.role(0), n1.role(1)), (Role::Owner, Role::Primary));
    // Then it serves both: A promoted, B probed for and claimed.
    let mut changes = Vec::new();
    while t < t0 + wait + Duration::from_millis(300) {
        n1.round(t);
        lan_out(&mut n1);
        changes.extend(std::iter::from_fn(|| n1.poll_role_change()));
        t += Duration::from_millis(10);
    }
    assert_eq!((n1.role(0), n1.role(1)), (Role::Simplex, Role::Simplex));
    assert!(
        changes.contains(&RoleChange::Claiming { address: B }),
        "{changes:?}"
    );
    for (ip, port) in [(A, 40_001), (B, 40_002)] {
        n1.handle_lan_frame(arp_who_has(ip));
        n1.handle_lan_frame(client_syn(1, ip, port));
        n1.round(t);
        let out = lan_out(&mut n1);
        assert_eq!(answers_for(&out, ip), 1, "who-has {ip}");
        assert_eq!(syn_acks_from(&out, ip), 1, "a client's SYN to {ip}");
    }
    // n2 comes back: it finds B held (n1 answers its probes), stands by
    // until the link is up, then both take their configured roles back.
    let (_, mut n2) = dual_role(t);
    for _ in 0..10 {
        exchange(&mut n1, &mut n2, t, false);
        t += Duration::from_millis(50);
    }
    assert!(n2.fenced(1), "n2 took B from under n1");
    n1.handle_link_up(0, t);
    n2.handle_link_up(0, t);
    for _ in 0..6 {
        exchange(&mut n1, &mut n2, t, true);
        t += Duration::from_millis(50);
    }
    assert_eq!((n1.role(0), n1.role(1)), (Role::Owner, Role::Primary));
    assert_eq!((n2.role(0), n2.role(1)), (Role::Primary, Role::Owner));
    assert!(!n1.fenced(0) && !n1.fenced(1) && !n2.fenced(0) && !n2.fenced(1));
}

#[test]
fn a_lone_owner_that_finds_its_address_held_waits_for_the_link() {
    // The peer holds the owner's address (it served alone, its link to
    // this node not up yet): the cold-start wait must not take it back.
    let t0 = origin();
    let wait = hotpair_replicator::replica::DEFAULT_COLD_START_WAIT;
    let holder = config("n2", 2, vec![site(A, Role::Simplex, None)], &[]);
    let mut holder = NodeCore::new(holder, t0).unwrap();
    let owner = config("n1", 1, vec![site(A, Role::Owner, Some(0))], &["n2"]);
    let mut owner = NodeCore::new(owner, t0).unwrap();
    let mut t = t0;
    while t < t0 + wait + Duration::from_millis(500) {
        let [f1, _] = exchange(&mut owner, &mut holder, t, false);
        assert_eq!(
            answers_for(&f1, A),
            0,
            "the owner spoke for A while n2 holds it"
        );
        t += Duration::from_millis(20);
    }
    assert!(owner.fenced(0));
}

/// Answers to `n`'s probes (ARP requests from 0.0.0.0) for `ip` in
/// `frames`, as `from` would send them.
fn answer_probes(n: &mut NodeCore, frames: &[Frame], ip: Ipv4Address, from: EthernetAddress) {
    for f in frames {
        if let Some(a) = arp::parse(f.data()) {
            if a.operation == ArpOperation::Request
                && a.sender_ip == Ipv4Address::UNSPECIFIED
                && a.target_ip == ip
            {
                n.handle_lan_frame(Frame::copy_from(&arp::reply(
                    from,
                    ip,
                    a.sender_mac,
                    Ipv4Address::UNSPECIFIED,
                )));
            }
        }
    }
}

#[test]
fn a_probe_answer_from_a_lan_host_that_is_not_the_peer_does_not_fence() {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    let t0 = boot(&mut n1, &mut n2, t0);
    // n1 dies: n2 probes for A, and a LAN host that is not n1 answers
    // every probe (a stray or hostile host): ignored, n2 claims A.
    let mut t = t0 + Duration::from_millis(10);
    n2.handle_link_lost(0, t);
    let stranger = EthernetAddress([2, 0, 0, 0, 0, 0x77]);
    for _ in 0..10 {
        n2.round(t);
        let out = lan_out(&mut n2);
        answer_probes(&mut n2, &out, A, stranger);
        t += Duration::from_millis(20);
    }
    assert!(!n2.fenced(0), "a stranger's answer fenced n2");
    assert_eq!(n2.role(0), Role::Simplex);
    // The peer's own answer still fences (a_cut_link_fences_…).
}

#[test]
fn a_fenced_primary_probes_again_and_claims_once_the_owner_is_gone() {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    let t0 = boot(&mut n1, &mut n2, t0);
    // The link is cut: n2 is fenced for A (n1 answers its probes), and
    // stays fenced through its re-probes while n1 lives.
    let mut t = t0 + Duration::from_millis(10);
    n1.handle_link_lost(0, t);
    n2.handle_link_lost(0, t);
    for _ in 0..60 {
        exchange(&mut n1, &mut n2, t, false);
        t += Duration::from_millis(50);
    }
    assert!(n2.fenced(0), "n2 took A while its owner lives");
    assert!(n2.engine_stats(0).reprobes >= 2, "no re-probe in 3 s");
    // n1 dies (no more frames from it): within a re-probe interval and a
    // round of probes n2 takes A.
    for _ in 0..30 {
        n2.round(t);
        lan_out(&mut n2);
        t += Duration::from_millis(50);
    }
    assert!(!n2.fenced(0), "n2 still fenced with nobody holding A");
    assert_eq!(n2.role(0), Role::Simplex);
    n2.handle_lan_frame(arp_who_has(A));
    n2.round(t);
    assert_eq!(
        answers_for(&lan_out(&mut n2), A),
        1,
        "n2 does not answer for A"
    );
}

/// A dual-role pair whose link and LAN failed together for a moment:
/// each node's probes for the other's address went unanswered, so both
/// serve both addresses (the LAN is back, the link is not).
fn split_brain() -> (NodeCore, NodeCore, Instant) {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    let t0 = boot(&mut n1, &mut n2, t0);
    let mut t = t0 + Duration::from_millis(10);
    n1.handle_link_lost(0, t);
    n2.handle_link_lost(0, t);
    for _ in 0..8 {
        n1.round(t);
        n2.round(t);
        lan_out(&mut n1);
        lan_out(&mut n2);
        t += Duration::from_millis(20);
    }
    for n in [&n1, &n2] {
        assert_eq!((n.role(0), n.role(1)), (Role::Simplex, Role::Simplex));
        assert!(!n.fenced(0) && !n.fenced(1));
    }
    (n1, n2, t)
}

#[test]
fn a_split_brain_ends_with_each_configured_owner_keeping_its_address() {
    let (mut n1, mut n2, mut t) = split_brain();
    // The LAN is back (the link is not): each hears the other's
    // announcements. The configured owner keeps each address, the
    // configured primary stands down.
    for _ in 0..40 {
        exchange(&mut n1, &mut n2, t, false);
        t += Duration::from_millis(50);
    }
    assert!(
        !n1.fenced(0) && n1.fenced(1),
        "n1 should keep A and yield B"
    );
    assert!(
        n2.fenced(0) && !n2.fenced(1),
        "n2 should keep B and yield A"
    );
    assert!(n1.engine_stats(0).conflicts >= 1 && n2.engine_stats(1).conflicts >= 1);
    assert_owners_answer(&mut n1, &mut n2, t, "after the split brain");
}

/// Announcements of `ip` in `frames` (ARP from `ip` that is not an answer
/// to a probe), by sender MAC.
fn announcers(frames: &[Frame], ip: Ipv4Address) -> Vec<EthernetAddress> {
    frames
        .iter()
        .filter_map(|f| arp::parse(f.data()))
        .filter(|a| a.sender_ip == ip && a.target_ip != Ipv4Address::UNSPECIFIED)
        .map(|a| a.sender_mac)
        .collect()
}

#[test]
fn after_a_split_brain_the_owner_has_the_last_word_and_the_loser_stays_down() {
    // Linux ignores an ARP update within `locktime` (1 s) of the last one:
    // if the loser's last announcement came after the owner's single
    // defence, the client's cache stayed on the loser's MAC — a dead MAC
    // when the loser was killed. The owner
    // must keep announcing past the loser's last word by more than that.
    let (mut n1, mut n2, mut t) = split_brain();
    // The LAN is back: who announces A, and when.
    let (mut last_owner, mut last_loser) = (None, None);
    let mut loser_after_fenced = 0;
    let mut fenced_at = None;
    for _ in 0..120 {
        let [f1, f2] = exchange(&mut n1, &mut n2, t, false);
        if !announcers(&f1, A).is_empty() {
            last_owner = Some(t);
        }
        if !announcers(&f2, A).is_empty() {
            last_loser = Some(t);
            loser_after_fenced += usize::from(fenced_at.is_some());
        }
        if n2.fenced(0) && fenced_at.is_none() {
            fenced_at = Some(t);
        }
        t += Duration::from_millis(50);
    }
    assert!(n2.fenced(0) && !n1.fenced(0), "n1 should keep A");
    // A stood-down site re-probes, and the owner's answers fence it again:
    // it must not claim A back (the split brain restarted every second).
    assert!(n2.engine_stats(0).reprobes >= 2, "no re-probe in 6 s");
    assert_eq!(
        loser_after_fenced, 0,
        "n2 announced A again after standing down"
    );
    let (owner, loser) = (last_owner.unwrap(), last_loser.unwrap());
    assert!(
        owner > loser + Duration::from_secs(1),
        "the owner's last announcement of A came {:?} after the loser's: a client's \
         ARP locktime (1 s) can keep the loser's MAC",
        owner.saturating_duration_since(loser)
    );
}

#[test]
fn a_thawed_owners_answers_to_stale_probes_do_not_make_the_primary_stand_down() {
    let t0 = origin();
    let (mut n1, mut n2) = dual_role(t0);
    let t0 = boot(&mut n1, &mut n2, t0);
    // n1 (owner of A) freezes: n2 claims A, its probes unanswered.
    let mut t = t0 + Duration::from_millis(10);
    n2.handle_link_lost(0, t);
    let mut probes = Vec::new();
    for _ in 0..10 {
        n2.round(t);
        probes.extend(lan_out(&mut n2));
        t += Duration::from_millis(20);
    }
    assert_eq!(n2.role(0), Role::Simplex);
    // n1 thaws and answers the probes queued while it was stopped: answers
    // (target 0.0.0.0), not announcements — n2 keeps A.
    answer_probes(&mut n2, &probes, A, mac(1));
    for _ in 0..5 {
        n2.round(t);
        lan_out(&mut n2);
        t += Duration::from_millis(20);
    }
    assert!(!n2.fenced(0), "stale probe answers made n2 stand down");
    assert_eq!(n2.engine_stats(0).conflicts, 0);
}

const GATEWAY: Ipv4Address = Ipv4Address::new(10, 77, 0, 254);
const GATEWAY_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xfe]);

/// Answers `n`'s LAN-check requests in `frames` as the gateway would (they
/// are probes: sender 0.0.0.0).
fn gateway_answers(n: &mut NodeCore, frames: &[Frame]) {
    answer_probes(n, frames, GATEWAY, GATEWAY_MAC);
}

/// One step of a pair on a LAN with a gateway: rounds, the link carried
/// if `linked`, LAN frames between the nodes and the gateway's answers for
/// each node whose LAN is `up`.
fn lan_step(n1: &mut NodeCore, n2: &mut NodeCore, t: Instant, linked: bool, up: [bool; 2]) {
    if linked {
        settle(n1, n2, t);
    } else {
        n1.round(t);
        n2.round(t);
    }
    let (f1, f2) = (lan_out(n1), lan_out(n2));
    if up[0] {
        gateway_answers(n1, &f1);
    }
    if up[1] {
        gateway_answers(n2, &f2);
    }
    if up[0] && up[1] {
        cross(n1, n2, &f1, &f2);
    }
}

#[test]
fn a_node_that_loses_the_lan_hands_its_addresses_to_its_peer_and_holds_its_link_down() {
    let t0 = origin();
    let check = hotpair_replicator::node::LanCheckConfig {
        target: GATEWAY,
        interval: Duration::from_millis(100),
        fall: 3,
        rise: 2,
    };
    let (mut n1, mut n2) = dual_role_with(t0, |c| c.lan_check = Some(check));
    n1.handle_link_up(0, t0);
    n2.handle_link_up(0, t0);
    let step = Duration::from_millis(50);
    let mut t = t0;
    // Both reach the gateway.
    for _ in 0..10 {
        lan_step(&mut n1, &mut n2, t, true, [true, true]);
        t += step;
    }
    assert!(n1.lan_up() && n2.lan_up());
    assert!(!n2.fenced(0) && !n2.fenced(1));
    // n2's NIC dies (its link stays up): within `fall` intervals it hands
    // A (it was A's primary) and B (its own) to n1, over the link.
    for _ in 0..12 {
        lan_step(&mut n1, &mut n2, t, true, [true, false]);
        t += step;
    }
    assert!(!n2.lan_up() && n1.lan_up());
    assert!(n2.yielded(0) && n2.yielded(1), "n2 did not yield");
    assert!(
        n2.fenced(0) && n2.fenced(1),
        "n2 still speaks for an address"
    );
    assert_eq!(
        (n1.role(0), n1.role(1)),
        (Role::Simplex, Role::Simplex),
        "n1 did not take both addresses"
    );
    assert!(
        !n2.link_allowed(0),
        "n2 would link (and rejoin) with its LAN down"
    );
    assert!(!n2.link_wanted(0));
    // n2's core drops the link (counting it lost itself) and holds it
    // down: no new attempt, and a session offered meanwhile is refused.
    assert_eq!(
        n2.poll_link_action(t),
        Some(LinkAction::Drop {
            peer: 0,
            why: "this node cannot serve (its LAN or its application check failed): its addresses went to the peer"
        })
    );
    assert_eq!(n2.poll_link_action(t), None, "a link held down was retried");
    assert!(!n2.accept_link(0, t), "n2 took a session with its LAN down");
    // n2 takes nothing over (it reaches no client), for as long as its LAN
    // is down — no re-probe either.
    n1.handle_link_lost(0, t);
    assert_eq!(
        n1.poll_link_action(t),
        Some(LinkAction::Reconnect {
            peer: 0,
            after: Duration::from_millis(100)
        }),
        "n1 can serve: it tries its lost link again"
    );
    for _ in 0..40 {
        lan_step(&mut n1, &mut n2, t, false, [true, false]);
        t += step;
    }
    assert!(
        n2.fenced(0) && n2.fenced(1),
        "n2 took an address with its LAN down"
    );
    // The NIC is back: n1 still holds both (it answers n2's re-probes), and
    // n2 may link again.
    for _ in 0..30 {
        lan_step(&mut n1, &mut n2, t, false, [true, true]);
        t += step;
    }
    assert!(n2.lan_up() && n2.link_allowed(0));
    assert!(n2.fenced(0) && n2.fenced(1), "n2 took an address n1 holds");
    // The link held down is set up again at once.
    assert_eq!(
        n2.poll_link_action(t),
        Some(LinkAction::Reconnect {
            peer: 0,
            after: Duration::ZERO
        })
    );
    assert_eq!(n2.poll_link_action(t), None);
    // It rejoins: each node takes its configured roles back.
    n1.handle_link_up(0, t);
    assert!(n2.accept_link(0, t));
    for _ in 0..10 {
        lan_step(&mut n1, &mut n2, t, true, [true, true]);
        t += step;
    }
    assert_eq!((n1.role(0), n1.role(1)), (Role::Owner, Role::Primary));
    assert_eq!((n2.role(0), n2.role(1)), (Role::Primary, Role::Owner));
    assert!(!n2.yielded(0) && !n2.yielded(1));
    for n in [&n1, &n2] {
        assert!(!n.fenced(0) && !n.fenced(1));
    }
}

/// Runs the application checks `n` asks for, answering `ok`.
fn app_answers(n: &mut NodeCore, ok: bool) {
    if n.poll_app_check() {
        n.handle_app_check(ok);
    }
}

/// One step of a dual-role pair whose applications answer `apps`.
fn app_step(n1: &mut NodeCore, n2: &mut NodeCore, t: Instant, linked: bool, apps: [bool; 2]) {
    for _ in 0..3 {
        if linked {
            settle(n1, n2, t);
        } else {
            n1.round(t);
            n2.round(t);
        }
        app_answers(n1, apps[0]);
        app_answers(n2, apps[1]);
    }
    let (f1, f2) = (lan_out(n1), lan_out(n2));
    cross(n1, n2, &f1, &f2);
}

/// [`boot`] with both applications answering their checks.
fn app_boot(n1: &mut NodeCore, n2: &mut NodeCore, t0: Instant) -> Instant {
    n1.handle_link_up(0, t0);
    n2.handle_link_up(0, t0);
    let mut t = t0;
    while t < t0 + Duration::from_millis(400) {
        app_step(n1, n2, t, true, [true, true]);
        t += Duration::from_millis(50);
    }
    settle(n1, n2, t);
    t
}

fn app_pair(t0: Instant) -> (NodeCore, NodeCore) {
    let check = hotpair_replicator::node::AppCheckConfig {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(100),
        fall: 2,
        rise: 2,
        fallback: false,
    };
    dual_role_with(t0, |c| c.app_check = Some(check))
}

#[test]
fn a_node_whose_application_dies_hands_its_addresses_over_and_rejoins_once_it_answers() {
    let t0 = origin();
    let (mut n1, mut n2) = app_pair(t0);
    let mut t = app_boot(&mut n1, &mut n2, t0);
    let step = Duration::from_millis(50);
    for _ in 0..10 {
        app_step(&mut n1, &mut n2, t, true, [true, true]);
        t += step;
    }
    assert!(n1.app_up() && n2.app_up() && n1.fit() && n2.fit());
    // n2's application dies (the host and the link live on): n2 is A's
    // primary, so within `fall` checks it hands both addresses to n1.
    for _ in 0..12 {
        app_step(&mut n1, &mut n2, t, true, [true, false]);
        t += step;
    }
    assert!(!n2.app_up() && !n2.fit());
    assert!(n2.yielded(0) && n2.yielded(1), "n2 did not yield");
    assert!(
        n2.fenced(0) && n2.fenced(1),
        "n2 still speaks for an address"
    );
    assert_eq!((n1.role(0), n1.role(1)), (Role::Simplex, Role::Simplex));
    assert!(
        !n2.link_allowed(0),
        "n2 would rejoin with its application down"
    );
    n1.handle_link_lost(0, t);
    n2.handle_link_lost(0, t);
    for _ in 0..20 {
        app_step(&mut n1, &mut n2, t, false, [true, false]);
        t += step;
    }
    assert!(n2.fenced(0) && n2.fenced(1), "n2 took an address back");
    // The application answers again (`rise` checks): n2 may link, and
    // rejoins with its configured roles.
    for _ in 0..12 {
        app_step(&mut n1, &mut n2, t, false, [true, true]);
        t += step;
    }
    assert!(n2.app_up() && n2.link_allowed(0));
    n1.handle_link_up(0, t);
    n2.handle_link_up(0, t);
    for _ in 0..10 {
        app_step(&mut n1, &mut n2, t, true, [true, true]);
        t += step;
    }
    assert_eq!((n1.role(0), n1.role(1)), (Role::Owner, Role::Primary));
    assert_eq!((n2.role(0), n2.role(1)), (Role::Primary, Role::Owner));
    assert!(!n2.yielded(0) && !n2.yielded(1));
}

/// A duplex pair (n1 primary of A, n2 its owner), both checking their
/// application every `interval_ms` (timeout 100 ms, fall 2, rise 2).
fn app_duplex(t0: Instant, interval_ms: u64) -> (NodeCore, NodeCore) {
    let check = hotpair_replicator::node::AppCheckConfig {
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(100),
        fall: 2,
        rise: 2,
        fallback: false,
    };
    let mut c1 = config("n1", 1, vec![site(A, Role::Primary, Some(0))], &["n2"]);
    let mut c2 = config("n2", 2, vec![site(A, Role::Owner, Some(0))], &["n1"]);
    c1.app_check = Some(check);
    c2.app_check = Some(check);
    (
        NodeCore::new(c1, t0).unwrap(),
        NodeCore::new(c2, t0).unwrap(),
    )
}

#[test]
fn an_owner_whose_application_dies_keeps_its_roles_and_is_handed_nothing() {
    // Duplex: n1 primary of A, n2 its owner (runs no request).
    let t0 = origin();
    let (mut n1, mut n2) = app_duplex(t0, 200);
    let mut t = app_boot(&mut n1, &mut n2, t0);
    let step = Duration::from_millis(50);
    // The owner's application dies: nothing moves (it runs nothing).
    for _ in 0..12 {
        app_step(&mut n1, &mut n2, t, true, [true, false]);
        t += step;
    }
    assert!(!n2.app_up());
    assert!(!n2.yielded(0) && !n2.fenced(0));
    assert_eq!((n1.role(0), n2.role(0)), (Role::Primary, Role::Owner));
    // Now the primary's dies too: its peer cannot serve either, so it
    // keeps the address (a 502 beats no answer) and hands nothing over;
    // a request the application refused gets its error reply at once.
    for _ in 0..12 {
        app_step(&mut n1, &mut n2, t, true, [false, false]);
        t += step;
    }
    assert!(!n1.app_up());
    assert!(!n1.yielded(0) && !n1.fenced(0));
    assert_eq!((n1.role(0), n2.role(0)), (Role::Primary, Role::Owner));
    n1.handle_job_unreachable(0, CONN7, 0, hotpair_http::Response::error(502), t);
    assert_eq!(n1.held_replies(), 0, "held with no peer to take it");
}

#[test]
fn a_request_the_application_refused_waits_for_the_verdict_and_goes_to_the_peer() {
    let t0 = origin();
    let (mut n1, mut n2) = app_duplex(t0, 1000);
    let mut t = app_boot(&mut n1, &mut n2, t0);
    for _ in 0..3 {
        app_step(&mut n1, &mut n2, t, true, [true, true]);
        t += Duration::from_millis(50);
    }
    // A refused request: held (the peer can serve), and a check at once
    // — well before the 1 s interval.
    n1.handle_job_unreachable(0, CONN7, 3, hotpair_http::Response::error(502), t);
    assert_eq!(n1.held_replies(), 1);
    n1.round(t);
    assert!(
        n1.poll_app_check(),
        "no immediate check after a refused request"
    );
    // It fails too: down (fall 2) at once, the address handed over, the
    // error reply dropped — the peer runs the request again.
    n1.handle_app_check(false);
    assert!(!n1.app_up());
    assert_eq!(n1.held_replies(), 0);
    settle(&mut n1, &mut n2, t);
    assert!(n1.yielded(0));
    assert_eq!(n2.role(0), Role::Simplex, "the owner did not promote");

    // A refusal the check does not confirm: the error reply goes out
    // after the verdict wait (3 timeouts + an interval), not before.
    let (mut n1, mut n2) = app_duplex(t, 1000);
    let mut t = app_boot(&mut n1, &mut n2, t);
    app_step(&mut n1, &mut n2, t, true, [true, true]);
    n1.handle_job_unreachable(0, CONN7, 3, hotpair_http::Response::error(502), t);
    let start = t;
    while n1.held_replies() > 0 {
        app_step(&mut n1, &mut n2, t, true, [true, true]);
        t += Duration::from_millis(50);
        assert!(t < start + Duration::from_secs(3), "held for ever");
    }
    assert!(t - start >= Duration::from_millis(1300), "released early");
    assert!(n1.app_up() && !n1.yielded(0));
}

/// A connection id no connection has (its reply is dropped if released).
const CONN7: hotpair_stack::ConnId = hotpair_stack::ConnId {
    slot: 7,
    generation: 7,
};
