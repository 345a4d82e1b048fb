//! `hotpair node --check` on the machine itself: what the config names must
//! exist here, or the node starts and serves nobody. Parsing proves the
//! file is well formed; this proves it fits the host (the link address is
//! one of the machine's, the metrics address too, the TAP is joined to a
//! bridge). Nothing is changed: addresses are tried with port 0.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;

use super::{Config, LinkEnd};

/// What `--check` found on this host.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HostCheck {
    /// The node would run and reach nobody, or not start: `--check` fails.
    pub errors: Vec<String>,
    /// Worth knowing, not fatal (the node copes, and says so at start).
    pub warnings: Vec<String>,
}

/// Whether `ip` is an address of this machine (in this namespace): a
/// socket binds to it (port 0: nothing is held).
fn is_local(ip: IpAddr) -> Result<(), std::io::Error> {
    TcpListener::bind(SocketAddr::new(ip, 0)).map(drop)
}

impl Config {
    /// Checks the config against the host it runs on (see the module docs).
    pub fn check_host(&self) -> HostCheck {
        let mut out = HostCheck::default();
        if let Ok(t) = self.topology() {
            for p in &t.peers {
                if let LinkEnd::Listen(addr) = p.link {
                    if !addr.ip().is_unspecified() {
                        if let Err(e) = is_local(addr.ip()) {
                            out.errors.push(format!(
                                "link listen {addr}: {} is not an address of this machine ({e}): \
                                 the node would retry every second and its peer never link; \
                                 bring the address up before the node starts",
                                addr.ip()
                            ));
                        }
                    }
                }
            }
        }
        if let Some(m) = self.admin.metrics {
            if !m.ip().is_unspecified() {
                if let Err(e) = is_local(m.ip()) {
                    out.errors.push(format!(
                        "admin.metrics {m}: {} is not an address of this machine ({e})",
                        m.ip()
                    ));
                }
            }
        }
        self.check_tap(&Path::new("/sys/class/net").join(&self.node.tap), &mut out);
        out
    }

    /// The TAP in `sys` (its `/sys/class/net/NAME` directory).
    fn check_tap(&self, sys: &Path, out: &mut HostCheck) {
        let tap = &self.node.tap;
        if !sys.exists() {
            out.warnings.push(format!(
                "node.tap {tap:?} does not exist: the node creates it, attached to nothing — \
                 no client reaches the node until it is joined to the service LAN's bridge \
                 (docs/operations.md, step 2)"
            ));
            return;
        }
        if !sys.join("tun_flags").exists() {
            out.errors.push(format!(
                "node.tap {tap:?} exists but is not a TAP device: name a TAP (ip tuntap add \
                 {tap} mode tap vnet_hdr)"
            ));
            return;
        }
        if !sys.join("master").exists() {
            out.warnings.push(format!(
                "node.tap {tap:?} is in no bridge: no client reaches the node until it is \
                 joined to the service LAN's bridge (ip link set {tap} master br0)"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(&format!(
            "[node]\nname = \"n1\"\ntap = \"hp-no-such-tap\"\nmac = \"02:00:00:00:00:01\"\n\
             [service]\naddress = \"10.0.0.10\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn addresses_not_on_this_machine_are_errors() {
        // 192.0.2.0/24 is TEST-NET-1: never a local address here.
        let c = config(
            "[link]\ndanger_plaintext = true\n[replication]\nrole = \"primary\"\n\
             listen = \"192.0.2.1:7700\"\n[admin]\nmetrics = \"192.0.2.1:9464\"\n",
        );
        let h = c.check_host();
        assert_eq!(h.errors.len(), 2, "{h:?}");
        assert!(h.errors[0].contains("link listen 192.0.2.1:7700"), "{h:?}");
        assert!(h.errors[1].contains("admin.metrics"), "{h:?}");
        // The loopback is local: no error.
        let c = config(
            "[link]\ndanger_plaintext = true\n[replication]\nrole = \"primary\"\n\
             listen = \"127.0.0.1:7700\"\n[admin]\nmetrics = \"127.0.0.1:9464\"\n",
        );
        assert!(c.check_host().errors.is_empty(), "{:?}", c.check_host());
    }

    #[test]
    fn a_missing_tap_a_tap_in_no_bridge_and_a_non_tap_are_told_apart() {
        let c = config("");
        let h = c.check_host();
        assert!(h.errors.is_empty(), "{h:?}");
        assert!(h.warnings[0].contains("does not exist"), "{h:?}");
        let dir = std::env::temp_dir().join(format!("hotpair-host-{}", std::process::id()));
        let sys = dir.join("hp0");
        std::fs::create_dir_all(&sys).unwrap();
        let mut h = HostCheck::default();
        c.check_tap(&sys, &mut h);
        assert!(h.errors[0].contains("not a TAP"), "{h:?}");
        std::fs::write(sys.join("tun_flags"), "0x1002\n").unwrap();
        let mut h = HostCheck::default();
        c.check_tap(&sys, &mut h);
        assert!(
            h.errors.is_empty() && h.warnings[0].contains("in no bridge"),
            "{h:?}"
        );
        std::fs::create_dir_all(sys.join("master")).unwrap();
        let mut h = HostCheck::default();
        c.check_tap(&sys, &mut h);
        assert_eq!(h, HostCheck::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
