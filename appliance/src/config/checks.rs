//! `[lan_check]` and `[app_check]`: what tells a node it cannot serve
//! although it runs (its LAN is cut, its application is dead), parsed and
//! checked into what the node core runs.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::Ipv4Addr;

use super::{Config, HandlerKind};

/// `[lan_check]`: a LAN host this node asks (ARP) every `interval_ms`;
/// `fall` misses in a row: this node does not reach the service LAN and
/// hands its addresses to a peer that does; `rise` answers: it does again.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanCheckSection {
    /// The host to ask: the service LAN's gateway, or any host that is
    /// always there (not the peer node: a cut of the peer's own port would
    /// look like one of this node's).
    pub target: Ipv4Addr,
    #[serde(default = "default_lan_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_lan_fall")]
    pub fall: u32,
    #[serde(default = "default_lan_rise")]
    pub rise: u32,
}

fn default_lan_interval() -> u64 {
    200
}
fn default_lan_fall() -> u32 {
    3
}
fn default_lan_rise() -> u32 {
    3
}

/// `[app_check]`: an HTTP GET of `path` on the application every
/// `interval_ms`; `fall` failures in a row: the application is down and a
/// node running requests hands its addresses to a peer whose application
/// answers; `rise` successes: it answers again.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCheckSection {
    /// The path asked (a 2xx or 3xx answer passes), e.g. `/health`.
    pub path: String,
    /// host:port of the application (default: the first `upstream`
    /// route's `address`).
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default = "default_app_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_app_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_app_fall")]
    pub fall: u32,
    #[serde(default = "default_app_rise")]
    pub rise: u32,
}

fn default_app_interval() -> u64 {
    1000
}
fn default_app_timeout() -> u64 {
    500
}
fn default_app_fall() -> u32 {
    2
}
fn default_app_rise() -> u32 {
    2
}

/// The application check as the node runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCheck {
    /// host:port asked (resolved at each check; also the `Host` header).
    pub address: String,
    /// The path asked.
    pub path: String,
    /// The core's part: timing and counts.
    pub core: hotpair_replicator::node::AppCheckConfig,
}

impl Config {
    /// The application check the node runs, checked (`None`: not
    /// configured).
    pub fn app_check(&self) -> Result<Option<AppCheck>> {
        let Some(a) = &self.app_check else {
            return Ok(None);
        };
        if !a.path.starts_with('/') || a.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            bail!(
                "app_check.path: {:?} must start with / and hold no spaces or control characters",
                a.path
            );
        }
        if !(10..=60_000).contains(&a.interval_ms) {
            bail!(
                "app_check.interval_ms: {} must be within 10..=60000",
                a.interval_ms
            );
        }
        if !(1..=60_000).contains(&a.timeout_ms) {
            bail!(
                "app_check.timeout_ms: {} must be within 1..=60000",
                a.timeout_ms
            );
        }
        for (key, v) in [("app_check.fall", a.fall), ("app_check.rise", a.rise)] {
            if !(1..=100).contains(&v) {
                bail!("{key}: {v} must be within 1..=100");
            }
        }
        let address = match &a.address {
            Some(addr) => addr.clone(),
            None => self
                .routes
                .iter()
                .find(|r| matches!(r.handler, HandlerKind::Upstream))
                .and_then(|r| r.address.clone())
                .context(
                    "app_check.address: not given and no upstream route to take it from: \
                     name the application's host:port",
                )?,
        };
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => bail!("app_check.address: {address:?} is not host:port"),
        }
        Ok(Some(AppCheck {
            address,
            path: a.path.clone(),
            core: hotpair_replicator::node::AppCheckConfig {
                interval: std::time::Duration::from_millis(a.interval_ms),
                timeout: std::time::Duration::from_millis(a.timeout_ms),
                fall: a.fall,
                rise: a.rise,
                fallback: self.routes.iter().any(|r| {
                    matches!(r.handler, HandlerKind::Upstream)
                        && r.fallback.as_ref().is_some_and(|f| !f.is_empty())
                }),
            },
        }))
    }

    /// The LAN check the node runs, checked (`None`: not configured).
    pub fn lan_check(&self) -> Result<Option<hotpair_replicator::node::LanCheckConfig>> {
        let Some(l) = &self.lan_check else {
            return Ok(None);
        };
        if !(10..=60_000).contains(&l.interval_ms) {
            bail!(
                "lan_check.interval_ms: {} must be within 10..=60000",
                l.interval_ms
            );
        }
        for (key, v) in [("lan_check.fall", l.fall), ("lan_check.rise", l.rise)] {
            if !(1..=100).contains(&v) {
                bail!("{key}: {v} must be within 1..=100");
            }
        }
        if l.target.is_unspecified() || l.target.is_broadcast() || l.target.is_multicast() {
            bail!("lan_check.target: {} is not a host's address", l.target);
        }
        Ok(Some(hotpair_replicator::node::LanCheckConfig {
            target: hotpair_stack::smoltcp::wire::Ipv4Address::from_octets(l.target.octets()),
            interval: std::time::Duration::from_millis(l.interval_ms),
            fall: l.fall,
            rise: l.rise,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[node]\nname = \"n1\"\ntap = \"t\"\nmac = \"02:00:00:00:00:01\"\n\
                        [service]\naddress = \"10.0.0.10\"\n";

    fn with(extra: &str) -> Result<Config> {
        Config::parse(&format!("{BASE}{extra}"))
    }

    #[test]
    fn the_app_check_takes_the_upstream_address_and_defaults() {
        let c = with(
            "[[route]]\nprefix = \"/app/\"\nhandler = \"upstream\"\naddress = \"127.0.0.1:8080\"\n\
             [app_check]\npath = \"/health\"\n",
        )
        .unwrap();
        let a = c.app_check().unwrap().unwrap();
        assert_eq!(a.address, "127.0.0.1:8080");
        assert_eq!(a.path, "/health");
        assert_eq!(a.core.interval.as_millis(), 1000);
        assert_eq!(a.core.timeout.as_millis(), 500);
        assert_eq!((a.core.fall, a.core.rise), (2, 2));
        let named = with("[app_check]\npath = \"/h\"\naddress = \"app.internal:9000\"\n").unwrap();
        assert_eq!(
            named.app_check().unwrap().unwrap().address,
            "app.internal:9000"
        );
        assert!(with("").unwrap().app_check().unwrap().is_none());
    }

    #[test]
    fn a_bad_app_check_is_refused_with_the_key_named() {
        for (extra, key) in [
            ("[app_check]\npath = \"/h\"\n", "app_check.address"),
            (
                "[app_check]\npath = \"h\"\naddress = \"a:1\"\n",
                "app_check.path",
            ),
            (
                "[app_check]\npath = \"/a b\"\naddress = \"a:1\"\n",
                "app_check.path",
            ),
            (
                "[app_check]\npath = \"/h\"\naddress = \"a\"\n",
                "app_check.address",
            ),
            (
                "[app_check]\npath = \"/h\"\naddress = \"a:0\"\n",
                "app_check.address",
            ),
            (
                "[app_check]\npath = \"/h\"\naddress = \"a:1\"\ninterval_ms = 5\n",
                "app_check.interval_ms",
            ),
            (
                "[app_check]\npath = \"/h\"\naddress = \"a:1\"\ntimeout_ms = 0\n",
                "app_check.timeout_ms",
            ),
            (
                "[app_check]\npath = \"/h\"\naddress = \"a:1\"\nfall = 0\n",
                "app_check.fall",
            ),
            (
                "[app_check]\npath = \"/h\"\naddress = \"a:1\"\nbogus = 1\n",
                "bogus",
            ),
        ] {
            let err = match with(extra) {
                Err(e) => format!("{e:#}"),
                Ok(c) => format!("{:#}", c.app_check().unwrap_err()),
            };
            assert!(err.contains(key), "{extra:?}: {err}");
        }
    }
}
