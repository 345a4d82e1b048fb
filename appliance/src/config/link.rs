//! `[link]`: the replication link's key, or its loud opt-out, and the
//! keys of each peer read from the config. The section is the config's;
//! what the keys are and how a link uses them is `secure.rs`'s, which
//! needs nothing from the config.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::Config;
use crate::secure::{parse_key, public_of, LinkSecurityKey, PeerKey};

/// `[link]`: this node's key, or the loud opt-out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSection {
    /// This node's private key, 64 hex digits.
    #[serde(default)]
    pub private_key: Option<String>,
    /// Or a file holding it (mode 0600 advised).
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// No authentication, no encryption: anyone who can reach the link
    /// address can read every request and reply and take addresses over.
    /// Only for a dedicated cable between the two hosts.
    #[serde(default)]
    pub danger_plaintext: bool,
}

impl Config {
    /// The files that hold this node's link private key: `config` itself
    /// when the key is inline, and `private_key_file`.
    pub fn secret_files(&self, config: &Path) -> Vec<(PathBuf, &'static str)> {
        let mut files = Vec::new();
        if let Some(link) = &self.link {
            if link.private_key.is_some() {
                files.push((config.to_path_buf(), "link.private_key"));
            }
            if let Some(f) = &link.private_key_file {
                files.push((f.clone(), "link.private_key_file"));
            }
        }
        files
    }

    /// The link security of each peer, in [`Topology`](super::Topology)'s
    /// peer order: every replicated node needs `[link]` with its private
    /// key and every peer's `public_key`, or `[link] danger_plaintext`.
    pub fn link_keys(&self) -> Result<Vec<PeerKey>> {
        let peer_keys: Vec<(String, Option<&String>)> = match &self.replication {
            Some(r) => vec![(
                "replication.peer_public_key".into(),
                r.peer_public_key.as_ref(),
            )],
            None => self
                .peers
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("peer[{i}].public_key"), p.public_key.as_ref()))
                .collect(),
        };
        if peer_keys.is_empty() {
            return Ok(Vec::new());
        }
        let link = self.link.as_ref().context(
            "link: a replicated node needs [link] private_key (or private_key_file) and each peer's public_key — `hotpair pair` writes them — or, for a dedicated cable only, [link] danger_plaintext = true",
        )?;
        if link.danger_plaintext {
            if link.private_key.is_some() || link.private_key_file.is_some() {
                bail!("link.danger_plaintext: set together with a private key; choose one");
            }
            if let Some((key, _)) = peer_keys.iter().find(|(_, k)| k.is_some()) {
                bail!("{key}: given while link.danger_plaintext is set; choose one");
            }
            return Ok(vec![PeerKey::Plaintext; peer_keys.len()]);
        }
        let private = match (&link.private_key, &link.private_key_file) {
            (Some(k), None) => parse_key(k).context("link.private_key")?,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("link.private_key_file: reading {}", path.display())
                })?;
                parse_key(&text)
                    .with_context(|| format!("link.private_key_file: {}", path.display()))?
            }
            (Some(_), Some(_)) => {
                bail!("link.private_key: give private_key or private_key_file, not both")
            }
            (None, None) => bail!(
                "link.private_key: required (or private_key_file) unless danger_plaintext = true"
            ),
        };
        let own_public = public_of(&private);
        peer_keys
            .into_iter()
            .map(|(key, k)| {
                let k = k.with_context(|| {
                    format!("{key}: required (the peer's public key, 64 hex digits)")
                })?;
                let peer_public = parse_key(k).with_context(|| key.clone())?;
                if peer_public == own_public {
                    bail!("{key}: is this node's own public key");
                }
                Ok(PeerKey::Noise {
                    private: LinkSecurityKey(private),
                    peer_public,
                })
            })
            .collect()
    }
}
