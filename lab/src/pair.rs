//! `hotpair pair`: matched node configs for a replicated set of nodes —
//! duplex, dual-role or a ring — with roles, MACs, link endpoints and a
//! fresh link key pair per node, each file ready for `hotpair node
//! --config FILE --check` on its machine. Who owns which address and who
//! listens on which link follow the lab's conventions (`lab/src/topology.rs`),
//! with the operator's own addresses.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hotpair::secure::{self, write_private};

use crate::topology;
use crate::{Mode, ReplNet};

/// Port of the first link; ring links use `LINK_PORT + the higher node's
/// index`, as in the lab, so a node that listens twice uses two ports.
const LINK_PORT: u16 = 7700;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example (two machines, one service address, files from /srv/www):

  hotpair pair --mode duplex --address 192.0.2.10 --link 10.0.0.1,10.0.0.2 \\
               --docroot /srv/www --out ./pair

then copy pair/n1.toml to the first machine and pair/n2.toml to the second,
and on each: hotpair node --config nN.toml --check && hotpair node --config nN.toml
(docs/operations.md walks through it)."
)]
pub struct PairArgs {
    /// `duplex` (n1 primary, n2 owns the address), `dual-role` (two
    /// addresses, each node owns one and is primary for the other's) or
    /// `ring` (--nodes N: node i owns address i, node i+1 is its primary).
    #[arg(long, value_enum)]
    mode: Mode,
    /// Ring only: how many nodes, 3 to 8.
    #[arg(long)]
    nodes: Option<u32>,
    /// The service address(es) clients connect to, comma-separated: one for
    /// duplex, two for dual-role, N for a ring (address i is node i's).
    #[arg(long, value_delimiter = ',', required = true)]
    address: Vec<Ipv4Addr>,
    /// Each node's own address for the replication link, comma-separated,
    /// in node order (n1, n2, …): a kernel address of that machine.
    #[arg(long, value_delimiter = ',', required = true)]
    link: Vec<Ipv4Addr>,
    /// Prefix length of the service LAN.
    #[arg(long, default_value_t = 24)]
    prefix_len: u8,
    /// Default gateway for clients beyond the LAN (optional).
    #[arg(long)]
    gateway: Option<Ipv4Addr>,
    /// Service port, plain HTTP (default 80).
    #[arg(long)]
    port: Option<u16>,
    /// With --tls-cert: the port every address serves HTTPS on, beside
    /// HTTP on --port.
    #[arg(long, default_value_t = 443, value_name = "PORT")]
    tls_port: u16,
    /// Serve HTTPS (TLS 1.3) with this certificate (PEM, chain after it),
    /// the path it has on every node; with --tls-key.
    #[arg(long, requires = "tls_key", value_name = "PATH")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM), the path it has on every node.
    #[arg(long, requires = "tls_cert", value_name = "PATH")]
    tls_key: Option<PathBuf>,
    /// Where every node reads the session-ticket key both share (HTTPS):
    /// `pair` writes a fresh one as tls-ticket.key next to the configs,
    /// to copy there on each node.
    #[arg(
        long,
        default_value = "/etc/hotpair/tls-ticket.key",
        value_name = "PATH"
    )]
    tls_ticket_key: PathBuf,
    /// The TAP device each node attaches to.
    #[arg(long, default_value = "hotpair0")]
    tap: String,
    /// Serve this directory at / (`files`, policy `static`); it must exist,
    /// with the same content, on every node.
    #[arg(long)]
    docroot: Option<PathBuf>,
    /// Or proxy / to this application (`upstream`, policy `logged`),
    /// reachable from each node at the same address, e.g. 127.0.0.1:8080.
    #[arg(long, conflicts_with = "docroot")]
    upstream: Option<String>,
    /// Serve Prometheus metrics, /healthz and /readyz on ADDR:PORT
    /// (`[admin] metrics`): one address for every node (e.g.
    /// 127.0.0.1:9464), or one per node, comma-separated in node order
    /// (each machine's management address). No authentication: keep it off
    /// the service LAN.
    #[arg(long, value_delimiter = ',', value_name = "ADDR:PORT")]
    metrics: Vec<std::net::SocketAddr>,
    /// Check the service LAN through this host (`[lan_check] target`: the
    /// LAN's gateway, or any always-there host but the nodes): a node that
    /// loses the LAN hands its addresses to its peer. Without it a node
    /// whose NIC dies leaves its clients hanging.
    #[arg(long, value_name = "IP")]
    lan_check: Option<std::net::Ipv4Addr>,
    /// With --upstream: check the application at this path (`[app_check]
    /// path`, e.g. /health): a node whose application stops answering
    /// hands its addresses to its peer, whose application runs the
    /// requests in flight again (docs/application.md).
    #[arg(long, value_name = "PATH")]
    app_check: Option<String>,
    /// With --upstream: where each node's application is reachable from the
    /// other nodes, one HOST:PORT per node in node order (e.g. each
    /// machine's LAN address, port 8080): each node's route names the
    /// others' as its `fallback`, tried when its own application refuses
    /// or drops a request (docs/application.md: the application must
    /// deduplicate on the request id).
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT")]
    app_fallback: Vec<String>,
    /// Directory for n1.toml … nN.toml (created; mode 0600 files: they hold
    /// private keys).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// One node's config file.
#[derive(Debug)]
pub struct PairFile {
    pub name: String,
    pub text: String,
}

pub fn run(a: PairArgs) -> Result<()> {
    let files = configs(&a)?;
    fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for f in &files {
        let path = a.out.join(format!("{}.toml", f.name));
        write_private(&path, &f.text, a.force)?;
    }
    if a.tls_cert.is_some() {
        // Any 32 random bytes: a fresh private key is one.
        let (ticket, _) = secure::generate_keypair()?;
        let path = a.out.join("tls-ticket.key");
        write_private(&path, &format!("{}\n", secure::hex(&ticket)), a.force)?;
        hotpair::outln!(
            "wrote {}: copy it to {} on every node (the same key on all: a session resumes on any node)",
            path.display(),
            a.tls_ticket_key.display()
        )?;
    }
    hotpair::outln!(
        "wrote {} configs ({} mode) to {}:",
        files.len(),
        a.mode,
        a.out.display()
    )?;
    for (i, f) in files.iter().enumerate() {
        hotpair::outln!(
            "  {}.toml  for the machine with link address {}",
            f.name,
            a.link[i]
        )?;
    }
    hotpair::outln!(
        "On each machine: hotpair node --config <file> --check, then run it (docs/operations.md).\n\
         The files hold private keys: copy them over a secure channel and keep them mode 0600."
    )?;
    Ok(())
}

/// A locally administered unicast MAC, random (two pairs on one LAN must
/// not collide), ending in the node's index.
fn random_mac(i: u32) -> Result<String> {
    let mut b = [0u8; 4];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .context("reading /dev/urandom")?;
    Ok(format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], i as u8
    ))
}

/// Every node's config text.
pub fn configs(a: &PairArgs) -> Result<Vec<PairFile>> {
    let n = match a.mode {
        Mode::Simplex => {
            bail!("--mode simplex: one node needs no pair; write its config by hand (no [link])")
        }
        Mode::Duplex | Mode::DualRole => {
            if a.nodes.is_some_and(|n| n != 2) {
                bail!("--nodes: {} has two nodes", a.mode);
            }
            2
        }
        Mode::Ring => {
            let n = a.nodes.context("--nodes: required for a ring")?;
            if !(topology::RING_MIN..=topology::RING_MAX).contains(&n) {
                bail!(
                    "--nodes: a ring has {} to {} nodes",
                    topology::RING_MIN,
                    topology::RING_MAX
                );
            }
            n
        }
    };
    let addrs = topology::addresses(a.mode, n);
    if a.address.len() != addrs.len() {
        bail!(
            "--address: {} takes {} service address(es), got {}",
            a.mode,
            addrs.len(),
            a.address.len()
        );
    }
    if a.link.len() != n as usize {
        bail!(
            "--link: one link address per node ({n}), got {}",
            a.link.len()
        );
    }
    for (i, x) in a.address.iter().enumerate() {
        if a.address[..i].contains(x) {
            bail!("--address: {x} is given twice");
        }
    }
    for (i, x) in a.link.iter().enumerate() {
        if a.link[..i].contains(x) {
            bail!("--link: {x} is given twice (one per machine)");
        }
        if a.address.contains(x) {
            bail!("--link: {x} is also a service address; a link address belongs to the machine's kernel");
        }
    }
    if !(a.metrics.is_empty() || a.metrics.len() == 1 || a.metrics.len() == n as usize) {
        bail!(
            "--metrics: one ADDR:PORT for every node, or one per node ({n}), got {}",
            a.metrics.len()
        );
    }
    if let Some(m) = a.metrics.iter().find(|m| m.port() == 0) {
        bail!("--metrics: {m} needs a port");
    }
    if a.app_check.is_some() && a.upstream.is_none() {
        bail!("--app-check checks the application: give --upstream HOST:PORT too");
    }
    if a.docroot.is_none() && a.upstream.is_none() {
        bail!("give --docroot DIR (files) or --upstream HOST:PORT (your application)");
    }
    if !a.app_fallback.is_empty() {
        if a.upstream.is_none() {
            bail!("--app-fallback names other instances of the application: give --upstream HOST:PORT too");
        }
        if a.app_fallback.len() != n as usize {
            bail!(
                "--app-fallback: one HOST:PORT per node ({n}), in node order, got {}",
                a.app_fallback.len()
            );
        }
        for f in &a.app_fallback {
            hotpair::upstream::parse_address(f)
                .map_err(|e| anyhow::anyhow!("--app-fallback: {e}"))?;
        }
    }
    let port = a.port.unwrap_or(80);
    if a.tls_cert.is_some() && a.tls_port == port {
        bail!(
            "--tls-port {port} is also --port: every address serves HTTP on --port and HTTPS on --tls-port, so they must differ"
        );
    }
    let links = topology::links(a.mode, n, ReplNet::Shared);
    let keys: Vec<(secure::Key, secure::Key)> = (0..n)
        .map(|_| secure::generate_keypair())
        .collect::<Result<_>>()?;
    let node = |i: u32| format!("n{i}");
    let index = |name: &str| -> usize { name[1..].parse::<usize>().expect("nK") - 1 };
    let mut out = Vec::new();
    for i in 1..=n {
        let me = node(i);
        let mut t = format!(
            "# hotpair node {me} of a {mode} set of {n}, written by `hotpair pair`.\n\
             # Holds this node's private link key: keep it mode 0600.\n\
             [node]\nname = \"{me}\"\ntap = \"{tap}\"\nmac = \"{mac}\"\n\
             \n[link]\nprivate_key = \"{key}\"\n",
            mode = a.mode,
            tap = a.tap,
            mac = random_mac(i)?,
            key = secure::hex(&keys[i as usize - 1].0),
        );
        for (k, ad) in addrs.iter().enumerate() {
            let (role, peer) = if ad.owner == me {
                ("owner", ad.primary.clone())
            } else if ad.primary.as_deref() == Some(me.as_str()) {
                ("primary", Some(ad.owner.clone()))
            } else {
                continue;
            };
            t.push_str(&format!(
                "\n[[address]]\nip = \"{}\"\nprefix_len = {}\nport = {}\nrole = \"{role}\"\n",
                a.address[k], a.prefix_len, port
            ));
            if let Some(g) = a.gateway {
                t.push_str(&format!("gateway = \"{g}\"\n"));
            }
            if let Some(p) = peer {
                t.push_str(&format!("peer = \"{p}\"\n"));
            }
        }
        match (&a.docroot, &a.upstream) {
            (Some(root), _) => {
                let root = toml::Value::String(root.to_string_lossy().into_owned());
                t.push_str(&format!(
                    "\n[[route]]\nprefix = \"/\"\nhandler = \"files\"\nroot = {root}\npolicy = \"static\"\n"
                ));
            }
            (None, Some(up)) => {
                t.push_str(&format!(
                    "\n[[route]]\nprefix = \"/\"\nhandler = \"upstream\"\naddress = {}\n",
                    toml::Value::String(up.clone())
                ));
                let others: Vec<String> = a
                    .app_fallback
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k + 1 != i as usize)
                    .map(|(_, f)| toml::Value::String(f.clone()).to_string())
                    .collect();
                if !others.is_empty() {
                    t.push_str(&format!("fallback = [{}]\n", others.join(", ")));
                }
            }
            (None, None) => unreachable!("checked above"),
        }
        for l in &links {
            let Some(other) = l.other(&me) else { continue };
            let (end, at) = if l.listener == me {
                ("listen", a.link[index(&l.listener)])
            } else {
                ("connect", a.link[index(&l.listener)])
            };
            t.push_str(&format!(
                "\n[[peer]]\nname = \"{other}\"\n{end} = \"{at}:{port}\"\npublic_key = \"{key}\"\n",
                port = if a.mode == Mode::Duplex {
                    LINK_PORT
                } else {
                    l.port
                },
                key = secure::hex(&keys[index(other)].1),
            ));
        }
        if let (Some(cert), Some(key)) = (&a.tls_cert, &a.tls_key) {
            let s = |p: &PathBuf| toml::Value::String(p.to_string_lossy().into_owned());
            t.push_str(&format!(
                "\n[tls]\ncert = {}\nkey = {}\nport = {}\nticket_key_file = {}\n",
                s(cert),
                s(key),
                a.tls_port,
                s(&a.tls_ticket_key)
            ));
        }
        // Written out (the defaults) so the file shows what to tune.
        t.push_str(&format!(
            "\n[heartbeat]\ninterval_ms = {}\ntimeout_ms = {}\n",
            crate::HEARTBEAT_INTERVAL_MS,
            crate::DEFAULT_HEARTBEAT_TIMEOUT_MS
        ));
        match a.lan_check {
            Some(ip) => t.push_str(&format!("\n[lan_check]\ntarget = \"{ip}\"\n")),
            None => t.push_str(
                "\n# A node that loses the service LAN hands its addresses to its peer\n\
                 # once it checks the LAN (`hotpair pair --lan-check GATEWAY`):\n\
                 # [lan_check]\n# target = \"GATEWAY\"\n",
            ),
        }
        match (&a.upstream, &a.app_check) {
            (Some(_), Some(path)) => t.push_str(&format!(
                "\n[app_check]\npath = {}\n",
                toml::Value::String(path.clone())
            )),
            (Some(_), None) => t.push_str(
                "\n# A node whose application dies hands its addresses to its peer once\n\
                 # it checks the application (`hotpair pair --app-check /HEALTH-PATH`):\n\
                 # [app_check]\n# path = \"/health\"\n",
            ),
            (None, _) => {}
        }
        // Written out, though it is the default, so that the file says
        // where `hotpair status --config` and `status --check` will ask.
        t.push_str(&format!(
            "\n[admin]\nsocket = {}\n",
            toml::Value::String(format!("{}/{me}.sock", hotpair::config::DEFAULT_ADMIN_DIR))
        ));
        let metrics = match a.metrics.as_slice() {
            [] => None,
            [all] => Some(all),
            each => each.get(i as usize - 1),
        };
        if let Some(m) = metrics {
            t.push_str(&format!(
                "metrics = {}   # /metrics, /healthz, /readyz; no authentication\n",
                toml::Value::String(m.to_string())
            ));
        }
        out.push(PairFile { name: me, text: t });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        pair: PairArgs,
    }

    fn args(line: &str) -> PairArgs {
        Cli::try_parse_from(std::iter::once("pair").chain(line.split_whitespace()))
            .unwrap()
            .pair
    }

    #[test]
    fn every_mode_gives_configs_that_check_and_agree() {
        let dir = std::env::temp_dir().join(format!("hotpair-pair-test-{}", std::process::id()));
        let www = dir.join("www");
        fs::create_dir_all(&www).unwrap();
        fs::write(www.join("index.html"), "hi").unwrap();
        for (line, addresses) in [
            (
                "--mode duplex --address 192.0.2.10 --link 10.0.0.1,10.0.0.2",
                1,
            ),
            (
                "--mode dual-role --address 192.0.2.10,192.0.2.11 --link 10.0.0.1,10.0.0.2",
                2,
            ),
            (
                "--mode ring --nodes 4 --address 192.0.2.10,192.0.2.11,192.0.2.12,192.0.2.13 \
                 --link 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4",
                4,
            ),
        ] {
            let mut a = args(&format!(
                "{line} --docroot {} --out {}",
                www.display(),
                dir.display()
            ));
            a.force = true;
            let files = configs(&a).unwrap();
            let mut owners = std::collections::BTreeMap::<std::net::Ipv4Addr, Vec<&str>>::new();
            let mut primaries = std::collections::BTreeMap::<std::net::Ipv4Addr, Vec<&str>>::new();
            let cfgs: Vec<hotpair::config::Config> = files
                .iter()
                .map(|f| {
                    let path = dir.join(format!("{}.toml", f.name));
                    write_private(&path, &f.text, true).unwrap();
                    // What `hotpair node --check` runs.
                    hotpair::config::Config::load(&path)
                        .unwrap_or_else(|e| panic!("{line}: {}: {e:#}\n{}", f.name, f.text))
                })
                .collect();
            for (f, c) in files.iter().zip(&cfgs) {
                for ad in &c.addresses {
                    match ad.role {
                        hotpair_stack::Role::Owner => {
                            owners.entry(ad.ip).or_default().push(&f.name)
                        }
                        hotpair_stack::Role::Primary => {
                            primaries.entry(ad.ip).or_default().push(&f.name)
                        }
                        hotpair_stack::Role::Simplex => panic!("{line}: an address alone"),
                    }
                }
                // Each peer's public key is that peer's own key.
                for p in &c.peers {
                    let other = cfgs.iter().find(|o| o.node.name == p.name).unwrap();
                    let private = secure::parse_key(
                        other.link.as_ref().unwrap().private_key.as_ref().unwrap(),
                    )
                    .unwrap();
                    assert_eq!(
                        p.public_key.as_deref(),
                        Some(secure::hex(&secure::public_of(&private)).as_str()),
                        "{line}: {} → {}",
                        f.name,
                        p.name
                    );
                    // One end listens on its own link address, the other dials it.
                    let back = other.peers.iter().find(|q| q.name == c.node.name).unwrap();
                    assert_eq!(p.listen.or(p.connect), back.listen.or(back.connect));
                    assert!(p.listen.is_some() != back.listen.is_some(), "{line}");
                }
            }
            assert_eq!(owners.len(), addresses, "{line}");
            assert!(
                owners
                    .values()
                    .chain(primaries.values())
                    .all(|v| v.len() == 1),
                "{line}"
            );
            assert_eq!(
                owners.keys().collect::<Vec<_>>(),
                primaries.keys().collect::<Vec<_>>()
            );
            // Each names its admin socket, where `hotpair status` asks.
            for c in &cfgs {
                assert_eq!(
                    c.admin_socket(),
                    std::path::Path::new(&format!("/run/hotpair/{}.sock", c.node.name)),
                    "{line}"
                );
                assert_eq!(c.admin.metrics, None, "{line}");
            }
            // MACs differ.
            let macs: std::collections::BTreeSet<_> =
                cfgs.iter().map(|c| c.node.mac.clone()).collect();
            assert_eq!(macs.len(), cfgs.len());
        }
        // Files are private and not overwritten without --force.
        let meta = fs::metadata(dir.join("n1.toml")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
        assert!(write_private(&dir.join("n1.toml"), "x", false).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_serves_https_on_443_and_http_on_80_with_one_ticket_key_for_all() {
        let files = configs(&args(
            "--mode dual-role --address 192.0.2.10,192.0.2.11 --link 10.0.0.1,10.0.0.2 \
             --upstream 127.0.0.1:8080 --tls-cert /etc/hotpair/cert.pem --tls-key /etc/hotpair/key.pem",
        ))
        .unwrap();
        for f in &files {
            let c = hotpair::config::Config::parse(&f.text).unwrap();
            let t = c.tls.as_ref().expect("[tls]");
            assert_eq!(t.port, 443);
            assert!(c.addresses.iter().all(|a| a.port == 80), "{}", f.text);
            assert_eq!(
                t.ticket_key_file,
                PathBuf::from("/etc/hotpair/tls-ticket.key")
            );
        }
        assert!(Cli::try_parse_from(
            "pair --mode duplex --address 192.0.2.10 --link 10.0.0.1,10.0.0.2 --tls-cert c.pem"
                .split_whitespace()
        )
        .is_err());
        // HTTPS on the HTTP port: refused, the flags named.
        let e = configs(&args(
            "--mode duplex --address 192.0.2.10 --link 10.0.0.1,10.0.0.2 --upstream 127.0.0.1:8080 \
             --tls-cert /c.pem --tls-key /k.pem --port 8443 --tls-port 8443",
        ))
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("--tls-port 8443 is also --port"),
            "{e:#}"
        );
    }

    #[test]
    fn wrong_counts_are_refused_with_the_flag_named() {
        let bad = [
            ("--mode duplex --address 192.0.2.10,192.0.2.11 --link 10.0.0.1,10.0.0.2 --upstream 127.0.0.1:8080", "--address"),
            ("--mode duplex --address 192.0.2.10 --link 10.0.0.1 --upstream 127.0.0.1:8080", "--link"),
            ("--mode ring --address 192.0.2.10 --link 10.0.0.1 --upstream 127.0.0.1:8080", "--nodes"),
            ("--mode duplex --address 192.0.2.10 --link 10.0.0.1,10.0.0.1 --upstream 127.0.0.1:8080", "--link"),
            ("--mode duplex --address 192.0.2.10 --link 192.0.2.10,10.0.0.1 --upstream 127.0.0.1:8080", "--link"),
            ("--mode duplex --address 192.0.2.10 --link 10.0.0.1,10.0.0.2", "--docroot"),
            ("--mode simplex --address 192.0.2.10 --link 10.0.0.1 --upstream 127.0.0.1:8080", "simplex"),
            ("--mode duplex --address 192.0.2.10 --link 10.0.0.1,10.0.0.2 --upstream 127.0.0.1:8080 --metrics 10.0.0.1:9464,10.0.0.2:9464,10.0.0.3:9464", "--metrics"),
            ("--mode duplex --address 192.0.2.10 --link 10.0.0.1,10.0.0.2 --upstream 127.0.0.1:8080 --metrics 10.0.0.1:0", "--metrics"),
        ];
        for (line, flag) in bad {
            let e = format!("{:#}", configs(&args(line)).unwrap_err());
            assert!(e.contains(flag), "{line}: {e}");
        }
    }

    #[test]
    fn a_lan_check_goes_into_every_node_config() {
        let dir = std::env::temp_dir().join(format!("hotpair-pair-lan-{}", std::process::id()));
        let a = args(&format!(
            "--mode dual-role --address 192.0.2.10,192.0.2.11 --link 10.0.0.1,10.0.0.2 \
             --upstream 127.0.0.1:8080 --lan-check 10.0.0.254 --out {}",
            dir.display()
        ));
        for f in configs(&a).unwrap() {
            let c: hotpair::config::Config = toml::from_str(&f.text).unwrap();
            let l = c.lan_check().unwrap().expect("a lan check");
            assert_eq!(l.target.octets(), [10, 0, 0, 254], "{}", f.text);
        }
        let a = args(&format!(
            "--mode duplex --address 192.0.2.10 --link 10.0.0.1,10.0.0.2 --upstream 127.0.0.1:8080 --out {}",
            dir.display()
        ));
        for f in configs(&a).unwrap() {
            let c: hotpair::config::Config = toml::from_str(&f.text).unwrap();
            assert!(c.lan_check().unwrap().is_none());
            assert!(f.text.contains("--lan-check GATEWAY"), "{}", f.text);
            assert!(c.app_check().unwrap().is_none());
            assert!(f.text.contains("--app-check /HEALTH-PATH"), "{}", f.text);
        }
    }

    #[test]
    fn an_app_check_goes_into_every_node_config_and_needs_an_upstream() {
        let dir = std::env::temp_dir().join(format!("hotpair-pair-app-{}", std::process::id()));
        let a = args(&format!(
            "--mode dual-role --address 192.0.2.10,192.0.2.11 --link 10.0.0.1,10.0.0.2 \
             --upstream 127.0.0.1:8080 --app-check /health --out {}",
            dir.display()
        ));
        for f in configs(&a).unwrap() {
            let c: hotpair::config::Config = toml::from_str(&f.text).unwrap();
            let check = c.app_check().unwrap().expect("an app check");
            assert_eq!(
                (check.address.as_str(), check.path.as_str()),
                ("127.0.0.1:8080", "/health")
            );
        }
        let a = args(
            "--mode duplex --address 192.0.2.10 --link 10.0.0.1,10.0.0.2 \
             --docroot /tmp --app-check /health",
        );
        let err = configs(&a).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("--upstream"), "{err}");
    }

    #[test]
    fn each_nodes_fallback_is_the_other_nodes_application() {
        let a = args(
            "--mode duplex --address 192.0.2.10 --link 10.0.0.1,10.0.0.2 \
             --upstream 127.0.0.1:8080 --app-fallback 10.0.0.1:8080,10.0.0.2:8080",
        );
        let fallbacks: Vec<Option<Vec<String>>> = configs(&a)
            .unwrap()
            .iter()
            .map(|f| {
                let c: hotpair::config::Config = toml::from_str(&f.text).unwrap();
                c.routes[0].fallback.clone()
            })
            .collect();
        assert_eq!(
            fallbacks,
            [
                Some(vec!["10.0.0.2:8080".to_owned()]),
                Some(vec!["10.0.0.1:8080".to_owned()])
            ]
        );
        for (bad, want) in [
            (
                "--upstream 127.0.0.1:8080 --app-fallback 10.0.0.1:8080",
                "one HOST:PORT per node",
            ),
            (
                "--upstream 127.0.0.1:8080 --app-fallback 10.0.0.1,10.0.0.2",
                "no port",
            ),
            (
                "--docroot /tmp --app-fallback 10.0.0.1:8080,10.0.0.2:8080",
                "--upstream",
            ),
        ] {
            let a = args(&format!(
                "--mode duplex --address 192.0.2.10 --link 10.0.0.1,10.0.0.2 {bad}"
            ));
            let err = configs(&a).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn metrics_go_to_every_node_or_one_each() {
        let dir = std::env::temp_dir().join(format!("hotpair-pair-metrics-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let base =
            "--mode duplex --address 192.0.2.10 --link 10.0.0.1,10.0.0.2 --upstream 127.0.0.1:8080";
        for (extra, want) in [
            (
                "--metrics 127.0.0.1:9464",
                ["127.0.0.1:9464", "127.0.0.1:9464"],
            ),
            (
                "--metrics 10.0.0.1:9464,10.0.0.2:9465",
                ["10.0.0.1:9464", "10.0.0.2:9465"],
            ),
        ] {
            let files = configs(&args(&format!("{base} {extra}"))).unwrap();
            for (f, want) in files.iter().zip(want) {
                // Valid TOML that the node loads, with the address in it.
                let path = dir.join(format!("{}.toml", f.name));
                write_private(&path, &f.text, true).unwrap();
                let c = hotpair::config::Config::load(&path)
                    .unwrap_or_else(|e| panic!("{extra}: {e:#}\n{}", f.text));
                assert_eq!(c.admin.metrics, Some(want.parse().unwrap()), "{extra}");
                assert!(f.text.contains("\n[admin]\nsocket = "), "{}", f.text);
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
