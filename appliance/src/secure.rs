//! The replication link's security: mutual authentication and encryption
//! with Noise (`Noise_KK_25519_ChaChaPoly_BLAKE2s`, the `snow` crate).
//!
//! The link carries every client request and reply of the addresses the
//! two nodes share, and a message on it can make a node take over an
//! address: it is a trust boundary. Each node has a static X25519 key pair;
//! each knows its peers' public keys from its config (`hotpair pair` writes
//! matched ones). KK is the Noise pattern for "both sides know each other's
//! static key in advance": one round trip, and a peer without the right
//! private key cannot finish the handshake — it is refused before a single
//! protocol message is read. Transport messages are AEAD-sealed with a
//! counter nonce, so a forged, altered, replayed, dropped or reordered
//! message fails to open and the link is dropped (the pair's heartbeat
//! rules then apply, as for any lost link).
//!
//! On the wire, every Noise message (handshake or transport) is a 2-byte
//! big-endian length and the message (at most 65 535 bytes). Transport
//! messages carry the replicator's own byte stream (`wire.rs` framing)
//! cut into pieces of at most [`MAX_PLAIN`] bytes.
//!
//! `[link] danger_plaintext = true` turns all of this off — only for a
//! dedicated cable between the two hosts; the node warns at every start.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use hotpair_stack::CookieKey;

/// The Noise protocol the link speaks.
pub const NOISE: &str = "Noise_KK_25519_ChaChaPoly_BLAKE2s";
/// Bound into the handshake: a peer speaking another link version fails it.
/// v3: the initiator confirms the session with a first transport message
/// (below); a v2 peer fails the handshake instead of half-pairing.
const PROLOGUE: &[u8] = b"hotpair replication link v4";
/// Largest Noise message.
const MAX_MSG: usize = 65_535;
/// AEAD tag per transport message.
const TAG: usize = 16;
/// Plaintext per transport message.
pub const MAX_PLAIN: usize = MAX_MSG - TAG;
/// A peer must finish the handshake within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// A 32-byte X25519 key.
pub type Key = [u8; 32];

/// What one link needs to authenticate its peer.
#[derive(Debug, Clone)]
pub enum PeerKey {
    Noise {
        private: LinkSecurityKey,
        peer_public: Key,
    },
    Plaintext,
}

/// A private key that is not printed.
#[derive(Clone)]
pub struct LinkSecurityKey(pub Key);

impl std::fmt::Debug for LinkSecurityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<private key>")
    }
}

/// Parse 64 hex digits.
pub fn parse_key(s: &str) -> Result<Key> {
    // Bytes, not `str` slices: a key of 64 bytes holding a multi-byte
    // character would slice through it (a panic in `--check`).
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        bail!("a key is 64 hex digits, this has {} bytes", s.len());
    }
    let digit = |at: usize| {
        char::from(s[at])
            .to_digit(16)
            .with_context(|| format!("not a hex digit at position {at}"))
    };
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::try_from(digit(2 * i)? << 4 | digit(2 * i + 1)?).expect("two hex digits");
    }
    Ok(k)
}

pub fn hex(k: &[u8]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh key pair: (private, public).
pub fn generate_keypair() -> Result<(Key, Key)> {
    let kp = snow::Builder::new(NOISE.parse().context("Noise parameters")?)
        .generate_keypair()
        .map_err(|e| anyhow::anyhow!("generating a key pair: {e}"))?;
    let mut private = [0u8; 32];
    let mut public = [0u8; 32];
    private.copy_from_slice(&kp.private);
    public.copy_from_slice(&kp.public);
    Ok((private, public))
}

/// The public key of a private one (X25519, as snow computes it).
pub fn public_of(private: &Key) -> Key {
    use snow::resolvers::CryptoResolver;
    let mut dh = snow::resolvers::DefaultResolver
        .resolve_dh(&snow::params::DHChoice::Curve25519)
        .expect("the default resolver has Curve25519");
    dh.set(private);
    let mut public = [0u8; 32];
    public.copy_from_slice(dh.pubkey());
    public
}

/// The SYN-cookie key of the addresses this node shares with the peer of
/// `key`: both nodes validate the cookies either sends (a cookie SYN-ACK
/// from the owner, its ACK checked by the primary; after a takeover by
/// the survivor), so both must hold it, from the first SYN on — before
/// their link is up. Derived, not exchanged: the X25519 secret the two
/// static keys give (`DH(a, B) = DH(b, A)`, Noise KK's own `ss`), hashed
/// under a label of its own, which nobody without one of the private keys
/// can compute. A plaintext link has no secret to derive from: its key is
/// a fixed label, as public as everything else on such a link (cookies
/// still work; anyone who reads this can forge them).
pub fn shared_cookie_key(key: &PeerKey) -> CookieKey {
    use sha2::{Digest, Sha256};
    use snow::resolvers::CryptoResolver;
    let mut h = Sha256::new();
    match key {
        PeerKey::Noise {
            private,
            peer_public,
        } => {
            let mut dh = snow::resolvers::DefaultResolver
                .resolve_dh(&snow::params::DHChoice::Curve25519)
                .expect("the default resolver has Curve25519");
            dh.set(&private.0);
            let mut ss = [0u8; 32];
            dh.dh(peer_public, &mut ss)
                .expect("X25519 of two 32-byte keys");
            h.update(b"hotpair syn cookie key v1");
            h.update(ss);
        }
        PeerKey::Plaintext => h.update(b"hotpair syn cookie key v1, plaintext link"),
    }
    CookieKey(h.finalize().into())
}

/// A SYN-cookie key for addresses served alone: random, this process's.
pub fn random_cookie_key() -> Result<CookieKey> {
    use std::io::Read;
    let mut k = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut k))
        .context("reading /dev/urandom for the SYN-cookie key")?;
    Ok(CookieKey(k))
}

/// Write a file that holds a private key: mode 0600 whether it is created
/// or overwritten (`force`). `OpenOptions::mode` applies only when the file
/// is created, so an overwritten file kept its old — maybe world-readable —
/// mode; the mode is set on the open file as well.
pub fn write_private(path: &Path, text: &str, force: bool) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).with_context(|| {
        if path.exists() && !force {
            format!("{} exists (--force to overwrite)", path.display())
        } else {
            format!("creating {}", path.display())
        }
    })?;
    // Before the key is written: it is never readable by others, even for
    // a moment.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} mode 0600", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Check a file that holds a private key (`[link] private_key_file`, or the
/// config itself when it has `private_key`). Refused: a file others can
/// write (they could put their own key in, or point it elsewhere) or one
/// owned by another user than root or this process's (its owner can make
/// it so). Returned as a warning, to be said loudly: a file others can
/// read (they can read the key and pose as this node on the link).
pub fn check_secret_file(path: &Path, what: &str) -> Result<Option<String>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{what}: reading the mode of {}", path.display()))?;
    let mode = meta.mode() & 0o777;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        bail!(
            "{what}: {} holds a private key and is owned by uid {}, neither root nor this process's uid {me}: that user can change it; chown it",
            path.display(),
            meta.uid()
        );
    }
    if mode & 0o022 != 0 {
        bail!(
            "{what}: {} holds a private key and is writable by others (mode {mode:04o}): chmod 600 it",
            path.display()
        );
    }
    Ok((mode & 0o044 != 0).then(|| {
        format!(
            "{what}: {} holds a private key and is readable by others (mode {mode:04o}): anyone who reads it can pose as this node on the replication link; chmod 600 it",
            path.display()
        )
    }))
}

/// The transport half of a finished handshake, or plaintext.
pub enum Session {
    Noise(Box<snow::TransportState>),
    Plaintext,
}

/// Why a link was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    #[error("link I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer failed authentication (wrong key, or not a hotpair peer): {0}")]
    Handshake(String),
    #[error("the peer took longer than {HANDSHAKE_TIMEOUT:?} to authenticate")]
    Timeout,
    #[error("too many link handshakes at once (from this source, or in all): closed")]
    Busy,
    #[error("the peer did not confirm the session (a replayed opening?)")]
    Unconfirmed,
    #[error("a link message failed to open (forged, altered, replayed or out of order)")]
    Forged,
    #[error("a link message of {0} bytes is over the Noise limit")]
    TooLong(usize),
}

async fn send_msg(s: &mut TcpStream, m: &[u8]) -> Result<(), SecureError> {
    let len = u16::try_from(m.len()).map_err(|_| SecureError::TooLong(m.len()))?;
    let mut buf = Vec::with_capacity(2 + m.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(m);
    s.write_all(&buf).await?;
    Ok(())
}

async fn recv_msg(s: &mut TcpStream) -> Result<Vec<u8>, SecureError> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut m).await?;
    Ok(m)
}

/// Authenticate the peer on a fresh link connection. The side that
/// connects initiates. Bounded by [`HANDSHAKE_TIMEOUT`].
///
/// KK's first message (initiator to responder) is authenticated but can be
/// replayed: a LAN host that recorded one gets the responder's answer, and
/// a responder that counted the link up then would pair with a host that
/// cannot read or write a byte of it (and stop listening for the real
/// peer). So the initiator, once it has the answer, sends one transport
/// message (empty); it opens only with this handshake's keys, which only
/// the holder of the initiator's ephemeral key has. The responder returns
/// only once that message opened: a session is confirmed, both ways,
/// before either side counts the link up. (The initiator needs no such
/// message back: the responder's answer already depends on the initiator's
/// fresh ephemeral key.)
pub async fn handshake(
    s: &mut TcpStream,
    key: &PeerKey,
    initiator: bool,
) -> Result<Session, SecureError> {
    let PeerKey::Noise {
        private,
        peer_public,
    } = key
    else {
        return Ok(Session::Plaintext);
    };
    let run = async {
        let hs_err = |e: snow::Error| SecureError::Handshake(e.to_string());
        let b = snow::Builder::new(NOISE.parse().expect("a valid Noise name"))
            .local_private_key(&private.0)
            .and_then(|b| b.remote_public_key(peer_public))
            .and_then(|b| b.prologue(PROLOGUE))
            .map_err(hs_err)?;
        let mut hs = if initiator {
            b.build_initiator()
        } else {
            b.build_responder()
        }
        .map_err(hs_err)?;
        let mut buf = vec![0u8; MAX_MSG];
        if initiator {
            let n = hs.write_message(&[], &mut buf).map_err(hs_err)?;
            send_msg(s, &buf[..n]).await?;
            let m = recv_msg(s).await?;
            hs.read_message(&m, &mut buf).map_err(hs_err)?;
        } else {
            let m = recv_msg(s).await?;
            hs.read_message(&m, &mut buf).map_err(hs_err)?;
            let n = hs.write_message(&[], &mut buf).map_err(hs_err)?;
            send_msg(s, &buf[..n]).await?;
        }
        let mut t = hs.into_transport_mode().map_err(hs_err)?;
        if initiator {
            let n = t.write_message(&[], &mut buf).map_err(hs_err)?;
            send_msg(s, &buf[..n]).await?;
        } else {
            let m = recv_msg(s).await?;
            t.read_message(&m, &mut buf)
                .map_err(|_| SecureError::Unconfirmed)?;
        }
        Ok(Session::Noise(Box::new(t)))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, run)
        .await
        .map_err(|_| SecureError::Timeout)?
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_plaintext() {
            "Plaintext"
        } else {
            "Noise"
        })
    }
}

impl Session {
    /// Seal `plain` (all of it) onto `out`.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SecureError> {
        let Session::Noise(t) = self else {
            out.extend_from_slice(plain);
            return Ok(());
        };
        for piece in plain.chunks(MAX_PLAIN) {
            let at = out.len();
            hotpair_stack::bytes::extend_zeroed(out, 2 + piece.len() + TAG);
            let n = t
                .write_message(piece, &mut out[at + 2..])
                .map_err(|_| SecureError::TooLong(piece.len()))?;
            out[at..at + 2].copy_from_slice(&(n as u16).to_be_bytes());
            out.truncate(at + 2 + n);
        }
        Ok(())
    }

    /// Open every whole message in `cipher` (the bytes read so far, from a
    /// message boundary) onto `plain`; what is left of an incomplete
    /// message stays in `cipher`.
    pub fn open(&mut self, cipher: &mut Vec<u8>, plain: &mut Vec<u8>) -> Result<(), SecureError> {
        let Session::Noise(t) = self else {
            plain.append(cipher);
            return Ok(());
        };
        let mut at = 0;
        while cipher.len() - at >= 2 {
            let len = usize::from(u16::from_be_bytes([cipher[at], cipher[at + 1]]));
            if cipher.len() - at - 2 < len {
                break;
            }
            if len < TAG {
                return Err(SecureError::Forged);
            }
            let p = plain.len();
            hotpair_stack::bytes::extend_zeroed(plain, len - TAG);
            let n = t
                .read_message(&cipher[at + 2..at + 2 + len], &mut plain[p..])
                .map_err(|_| SecureError::Forged)?;
            plain.truncate(p + n);
            at += 2 + len;
        }
        cipher.drain(..at);
        Ok(())
    }

    pub fn is_plaintext(&self) -> bool {
        matches!(self, Session::Plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ((Key, Key), (Key, Key)) {
        (generate_keypair().unwrap(), generate_keypair().unwrap())
    }

    #[test]
    fn both_ends_of_a_link_derive_the_same_cookie_key_and_no_one_else() {
        let ((a, a_pub), (b, b_pub)) = keys();
        let (c, _) = generate_keypair().unwrap();
        let k = |private: Key, peer_public: Key| {
            shared_cookie_key(&PeerKey::Noise {
                private: LinkSecurityKey(private),
                peer_public,
            })
        };
        assert_eq!(k(a, b_pub), k(b, a_pub));
        assert_ne!(k(a, b_pub), k(c, b_pub));
        assert_ne!(k(a, b_pub).0, [0; 32]);
        let plain = shared_cookie_key(&PeerKey::Plaintext);
        assert_eq!(plain, shared_cookie_key(&PeerKey::Plaintext));
        assert_ne!(plain, k(a, b_pub));
        assert_ne!(random_cookie_key().unwrap(), random_cookie_key().unwrap());
    }

    #[test]
    fn a_public_key_is_derived_as_snow_makes_it() {
        let (private, public) = generate_keypair().unwrap();
        assert_eq!(public_of(&private), public);
        assert_eq!(parse_key(&hex(&public)).unwrap(), public);
        assert!(parse_key("abc").is_err());
        assert!(parse_key(&"zz".repeat(32)).is_err());
        assert_eq!(parse_key(&"aB".repeat(32)).unwrap(), [0xab; 32]);
    }

    #[test]
    fn key_files_are_written_0600_even_over_an_open_file_and_checked() {
        let dir = std::env::temp_dir().join(format!("hotpair-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("k.toml");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        // An existing world-readable file, overwritten with --force.
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, "new", true).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
        assert_eq!(check_secret_file(&f, "k").unwrap(), None);
        // Readable by the group: a warning naming the file and the mode.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let w = check_secret_file(&f, "k").unwrap().unwrap();
        assert!(w.contains("readable by others (mode 0640)"), "{w}");
        // Writable by others: refused.
        for m in [0o620, 0o602, 0o666] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(m)).unwrap();
            let e = check_secret_file(&f, "k").unwrap_err().to_string();
            assert!(e.contains("writable by others"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_64_byte_key_with_a_multibyte_character_is_an_error_not_a_panic() {
        // 'é' is two bytes: 62 ASCII digits and one 'é' make 64 bytes, and
        // the 'é' straddles a digit pair's boundary.
        let key = format!("{}é{}", "a".repeat(31), "b".repeat(31));
        assert_eq!(key.len(), 64);
        let e = parse_key(&key).unwrap_err().to_string();
        assert!(e.contains("not a hex digit at position 31"), "{e}");
    }

    async fn pair_of_sockets() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    use crate::test_rt as rt;

    #[test]
    fn peers_with_each_others_keys_talk_and_a_forgery_or_replay_is_refused() {
        let ((a_priv, a_pub), (b_priv, b_pub)) = keys();
        rt().block_on(async {
            let (mut sa, mut sb) = pair_of_sockets().await;
            let ka = PeerKey::Noise {
                private: LinkSecurityKey(a_priv),
                peer_public: b_pub,
            };
            let kb = PeerKey::Noise {
                private: LinkSecurityKey(b_priv),
                peer_public: a_pub,
            };
            let (ra, rb) = tokio::join!(
                handshake(&mut sa, &ka, true),
                handshake(&mut sb, &kb, false)
            );
            let (mut a, mut b) = (ra.unwrap(), rb.unwrap());
            // A stream bigger than one Noise message, in one go.
            let msg: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let mut wire = Vec::new();
            a.seal(&msg, &mut wire).unwrap();
            let second_start = wire.len();
            a.seal(b"more", &mut wire).unwrap();
            // Delivered in odd pieces, it opens to the same bytes.
            let mut cipher = Vec::new();
            let mut plain = Vec::new();
            for piece in wire[..second_start].chunks(7777) {
                cipher.extend_from_slice(piece);
                b.open(&mut cipher, &mut plain).unwrap();
            }
            assert_eq!(plain, msg);
            // A replay of the first message is refused (the nonce moved on).
            let mut replay = wire[..2 + MAX_PLAIN + TAG].to_vec();
            assert!(matches!(
                b.open(&mut replay, &mut plain),
                Err(SecureError::Forged)
            ));
            // So is one altered byte (on a fresh pair of sessions).
            let (mut sa, mut sb) = pair_of_sockets().await;
            let (ra, rb) = tokio::join!(
                handshake(&mut sa, &ka, true),
                handshake(&mut sb, &kb, false)
            );
            let (mut a, mut b) = (ra.unwrap(), rb.unwrap());
            let mut wire = Vec::new();
            a.seal(b"GET / HTTP/1.1", &mut wire).unwrap();
            wire[5] ^= 1;
            assert!(matches!(
                b.open(&mut wire, &mut Vec::new()),
                Err(SecureError::Forged)
            ));
        });
    }

    #[test]
    fn a_peer_with_another_key_is_refused_in_the_handshake() {
        let ((a_priv, _), (b_priv, b_pub)) = keys();
        let (m_priv, _) = generate_keypair().unwrap();
        rt().block_on(async {
            let (mut sa, mut sb) = pair_of_sockets().await;
            // The impostor has B's public key but its own private key.
            let impostor = PeerKey::Noise {
                private: LinkSecurityKey(m_priv),
                peer_public: b_pub,
            };
            let a_pub = public_of(&a_priv);
            let kb = PeerKey::Noise {
                private: LinkSecurityKey(b_priv),
                peer_public: a_pub,
            };
            let (ri, rb) = tokio::join!(
                handshake(&mut sa, &impostor, true),
                handshake(&mut sb, &kb, false)
            );
            assert!(
                matches!(rb, Err(SecureError::Handshake(_))),
                "B must refuse"
            );
            drop(ri);
            // And one that says nothing times out.
            let (_sa, mut sb) = pair_of_sockets().await;
            let t0 = std::time::Instant::now();
            let rb = handshake(&mut sb, &kb, false).await;
            assert!(matches!(rb, Err(SecureError::Timeout)));
            assert!(t0.elapsed() >= HANDSHAKE_TIMEOUT);
        });
    }
}
