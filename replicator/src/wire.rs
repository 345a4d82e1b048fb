//! Messages of the replication link and their byte encoding.
//!
//! Every message is framed as
//!
//! ```text
//! +----------------+---------+------+-----------------+------------------+
//! | length: u32 BE | version | type | channel: u32 BE | body ...         |
//! +----------------+---------+------+-----------------+------------------+
//!   counts version + type + channel + body; at most MAX_MSG_LEN
//!
//! One link between two nodes carries the replication of every service
//! address they share, in both directions: `channel` names the address a
//! message is about (its IPv4 address as a `u32`), and each side hands the
//! message to its state for that address.
//! ```
//!
//! All integers are big-endian. Bodies, by type:
//!
//! | type | message     | body |
//! |------|-------------|------|
//! | 1    | `Hello`     | `version u8, node_len u8, node (UTF-8, ≤ 64 bytes), role u8, epoch u64, mac [u8; 6]` |
//! | 2    | `Heartbeat` | `seq u64` |
//! | 3    | `Frame`     | the Ethernet frame (the rest of the message) |
//! | 4    | `Unit`      | `conn, seq u64, index u64, kind u8, input_end u64, flags u8, payload (rest)` |
//! | 5    | `UnitAck`   | `conn, seq u64` |
//! | 6    | `ConnGone`  | `conn` |
//! | 7    | `Routes`    | `count u16`, then per route: `prefix_len u16, prefix (UTF-8), policy u8, digest [u8; 32]` |
//! | 8    | `Leaving`   | empty |
//! | 9    | `Lan`       | `up u8` (0 or 1) |
//!
//! `conn` is a [`ConnKey`]: `client_ip [u8; 4], client_port u16, client_isn u32`
//! (10 bytes). `role`: 0 simplex, 1 primary, 2 owner. `kind`: 0 interim,
//! 1 final. Unit `flags`: bit 0 close after this unit, bit 1 *local* (the
//! receiver makes the reply itself from its own copy of a `static` route's
//! content; the payload is the 32-byte digest of the content generation the
//! sender made its reply from — [`LOCAL_DIGEST_LEN`] — so that the receiver
//! makes its copy from exactly that generation, or none: see
//! `docs/replication-protocol.md`, "Reloading content"). `policy`: 0 logged,
//! 1 static, 2 sync-static.
//!
//! Version 4 added the digest to local units (a reload may change a route's
//! content between the primary's decision and the owner node's copy).
//!
//! # Panics
//!
//! Nothing in this module panics, whatever the input: malformed, truncated or
//! oversized bytes become a [`WireError`]. [`Msg::encode`] checks the message
//! against the limits before writing a byte, so it never emits something the
//! peer's decoder would reject.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

use crate::{ConnKey, Role, UnitKind};

/// Version byte carried by every message (framing and bodies).
pub const VERSION: u8 = 4;
/// Bytes of a local unit's payload: the content digest it was made under.
pub const LOCAL_DIGEST_LEN: usize = 32;
/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;
/// Largest value of the length prefix (version + type + body).
pub const MAX_MSG_LEN: usize = 96 * 1024 * 1024;
/// Longest node name a `Hello` may carry, in bytes.
pub const MAX_NODE_NAME_LEN: usize = 64;
/// Largest Ethernet frame a `Frame` can carry.
pub const MAX_FRAME_LEN: usize = MAX_MSG_LEN - PREFIX_LEN;
/// Largest payload a `Unit` can carry. A reply larger than this must be
/// produced as several units by the caller.
pub const MAX_UNIT_PAYLOAD: usize = MAX_MSG_LEN - PREFIX_LEN - UNIT_FIXED_LEN;
/// Most bytes a [`Decoder`] buffers: one largest message plus one read's worth
/// of slack (see [`Decoder::room`]).
pub const MAX_BUFFERED: usize = HEADER_LEN + MAX_MSG_LEN + READ_SLACK;

/// Version + type + channel.
const PREFIX_LEN: usize = 2 + 4;
const READ_SLACK: usize = 1024 * 1024;
const CONN_KEY_LEN: usize = 4 + 2 + 4;
/// Unit body without its payload.
const UNIT_FIXED_LEN: usize = CONN_KEY_LEN + 8 + 8 + 1 + 8 + 1;

const TYPE_HELLO: u8 = 1;
const TYPE_HEARTBEAT: u8 = 2;
const TYPE_FRAME: u8 = 3;
const TYPE_UNIT: u8 = 4;
const TYPE_UNIT_ACK: u8 = 5;
const TYPE_CONN_GONE: u8 = 6;
const TYPE_ROUTES: u8 = 7;
const TYPE_LEAVING: u8 = 8;
const TYPE_LAN: u8 = 9;

/// Most routes a `Routes` message may carry.
pub const MAX_ROUTES: usize = 1024;
/// Longest route prefix a `Routes` message may carry, in bytes.
pub const MAX_PREFIX_LEN: usize = 1024;

const FLAG_CLOSE: u8 = 1;
const FLAG_LOCAL: u8 = 2;

/// Why bytes could not be decoded, or a message could not be encoded.
///
/// Any decoding error leaves the stream unusable: the caller drops the link.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// The length prefix (or the message to encode) exceeds [`MAX_MSG_LEN`].
    #[error("message length {len} exceeds the maximum {max}")]
    TooLong {
        /// The declared or required length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The type byte names no known message.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// The version byte is not [`VERSION`].
    #[error("unsupported message version {0}")]
    BadVersion(u8),
    /// The message ended before a field was complete.
    #[error("truncated {what}")]
    Truncated {
        /// The field that was cut short.
        what: &'static str,
    },
    /// A field holds a value outside its domain, or bytes follow the body.
    #[error("malformed {what}")]
    Malformed {
        /// The offending field.
        what: &'static str,
    },
    /// More bytes were fed to a [`Decoder`] than it may buffer: the caller did
    /// not drain [`Decoder::next`] or fed more than [`Decoder::room`].
    #[error("receive buffer full ({len} bytes offered, at most {max} buffered)")]
    BufferFull {
        /// Bytes that would have been buffered.
        len: usize,
        /// The limit ([`MAX_BUFFERED`]).
        max: usize,
    },
}

/// One logged output unit: what [`Msg::Unit`] carries from the primary and
/// [`crate::Event::Logged`] hands to the owner node's caller — one record,
/// the same on the wire and after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The connection.
    pub conn: ConnKey,
    /// Per-connection unit sequence: 0, 1, 2, …
    pub seq: u64,
    /// HTTP request index the unit answers.
    pub index: u64,
    /// Interim or final.
    pub kind: UnitKind,
    /// Client input stream offset where that request's bytes end.
    pub input_end: u64,
    /// The connection closes after this unit.
    pub close_after: bool,
    /// The receiver makes this (final) reply itself, from its own copy of
    /// a `static` route's content: `payload` is then the 32-byte digest of
    /// the content generation the primary made it from, not reply bytes.
    pub local: bool,
    /// The bytes to send to the client (for a `local` unit, the digest).
    pub payload: Bytes,
}

impl std::fmt::Display for Unit {
    /// One line for traces: the fields, and the payload's length.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unit {} seq={} index=", self.conn, self.seq)?;
        if self.index == u64::MAX {
            f.write_str("close")?;
        } else {
            write!(f, "{}", self.index)?;
        }
        write!(
            f,
            " {:?} input_end={} close_after={} local={} len={}",
            self.kind,
            self.input_end,
            self.close_after,
            self.local,
            self.payload.len()
        )
    }
}

/// One message on the replication link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// First message each way on a new link.
    Hello {
        /// Protocol version the sender speaks ([`VERSION`]).
        version: u8,
        /// The sender's node name (at most [`MAX_NODE_NAME_LEN`] bytes).
        node: String,
        /// The role the sender takes on this link.
        role: Role,
        /// The sender's takeover count: how many times it has declared a
        /// peer dead. Informational (status, logs).
        epoch: u64,
        /// The sender's MAC on the service LAN: only it may answer this
        /// node's probes or make it stand down (all zero: not given).
        mac: [u8; 6],
    },
    /// The sender has stopped serving (a planned stop) and sends nothing
    /// after this: take over now, without waiting for the heartbeat
    /// timeout or probing (the link is authenticated: only the peer can
    /// say it).
    Leaving,
    /// Whether the sender can serve clients: it reaches the service LAN
    /// (its LAN check) and its application answers (its application
    /// check). Sent after `Hello` and on every change. A node that cannot
    /// serve yields its addresses only to a peer that says it can.
    Lan {
        /// The sender's LAN check and application check pass.
        up: bool,
    },
    /// Liveness signal; any message counts, this one is sent when idle.
    Heartbeat {
        /// Sender's heartbeat counter.
        seq: u64,
    },
    /// A client Ethernet frame, owner → primary.
    Frame {
        /// The frame, starting at the Ethernet header.
        frame: Bytes,
    },
    /// A logged output unit, primary → owner.
    Unit(Unit),
    /// Cumulative acknowledgement, owner → primary: every unit of `conn` up
    /// to and including `seq` is logged.
    UnitAck {
        /// The connection.
        conn: ConnKey,
        /// Highest logged unit sequence.
        seq: u64,
    },
    /// Primary → owner: the primary's connection ended; forget it.
    ConnGone {
        /// The connection.
        conn: ConnKey,
    },
    /// Both ways after `Hello`: the sender's routes with their content
    /// policy and, for content it can hash, a digest of it. A `static` route
    /// is used as such only while both sides report the same.
    Routes {
        /// The routes, in the sender's order.
        routes: Vec<RouteDigest>,
    },
}

/// One route as `Msg::Routes` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDigest {
    /// URL path prefix.
    pub prefix: String,
    /// 0 logged, 1 static, 2 sync-static.
    pub policy: u8,
    /// SHA-256 of the content (all zero when it cannot be hashed).
    pub digest: [u8; 32],
}

impl Msg {
    /// Short name of the message type, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "Hello",
            Msg::Heartbeat { .. } => "Heartbeat",
            Msg::Frame { .. } => "Frame",
            Msg::Unit(Unit { .. }) => "Unit",
            Msg::UnitAck { .. } => "UnitAck",
            Msg::ConnGone { .. } => "ConnGone",
            Msg::Routes { .. } => "Routes",
            Msg::Leaving => "Leaving",
            Msg::Lan { .. } => "Lan",
        }
    }

    fn type_byte(&self) -> u8 {
        match self {
            Msg::Hello { .. } => TYPE_HELLO,
            Msg::Heartbeat { .. } => TYPE_HEARTBEAT,
            Msg::Frame { .. } => TYPE_FRAME,
            Msg::Unit(Unit { .. }) => TYPE_UNIT,
            Msg::UnitAck { .. } => TYPE_UNIT_ACK,
            Msg::ConnGone { .. } => TYPE_CONN_GONE,
            Msg::Routes { .. } => TYPE_ROUTES,
            Msg::Leaving => TYPE_LEAVING,
            Msg::Lan { .. } => TYPE_LAN,
        }
    }

    /// Bytes of the body (after version and type).
    fn body_len(&self) -> usize {
        match self {
            Msg::Hello { node, .. } => 1 + 1 + node.len() + 1 + 8 + 6,
            Msg::Heartbeat { .. } => 8,
            Msg::Leaving => 0,
            Msg::Lan { .. } => 1,
            Msg::Frame { frame } => frame.len(),
            Msg::Unit(u) => UNIT_FIXED_LEN + u.payload.len(),
            Msg::UnitAck { .. } => CONN_KEY_LEN + 8,
            Msg::ConnGone { .. } => CONN_KEY_LEN,
            Msg::Routes { routes } => {
                2 + routes
                    .iter()
                    .map(|r| 2 + r.prefix.len() + 1 + 32)
                    .sum::<usize>()
            }
        }
    }

    /// Bytes [`Msg::encode`] appends, length prefix included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + PREFIX_LEN + self.body_len()
    }

    /// Appends the framed message to `out`.
    ///
    /// Fails, writing nothing, if the message breaks a limit: a node name
    /// longer than [`MAX_NODE_NAME_LEN`], or a total length above
    /// [`MAX_MSG_LEN`].
    pub fn encode(&self, channel: u32, out: &mut Vec<u8>) -> Result<(), WireError> {
        if let Msg::Hello { node, .. } = self {
            if node.len() > MAX_NODE_NAME_LEN {
                return Err(WireError::Malformed {
                    what: "Hello node name (too long)",
                });
            }
        }
        if let Msg::Routes { routes } = self {
            if routes.len() > MAX_ROUTES {
                return Err(WireError::Malformed {
                    what: "Routes (too many)",
                });
            }
            if routes.iter().any(|r| r.prefix.len() > MAX_PREFIX_LEN) {
                return Err(WireError::Malformed {
                    what: "Routes prefix (too long)",
                });
            }
            // The decoder's rule, so the peer never rejects what we send.
            if routes.iter().any(|r| r.policy > 2) {
                return Err(WireError::Malformed {
                    what: "Routes policy",
                });
            }
        }
        if let Msg::Unit(Unit {
            kind,
            local: true,
            payload,
            ..
        }) = self
        {
            // The decoder's rule, as above.
            if *kind != UnitKind::Final || payload.len() != LOCAL_DIGEST_LEN {
                return Err(WireError::Malformed {
                    what: "Unit (a local unit is a final reply whose payload is a digest)",
                });
            }
        }
        let len = PREFIX_LEN + self.body_len();
        if len > MAX_MSG_LEN {
            return Err(WireError::TooLong {
                len,
                max: MAX_MSG_LEN,
            });
        }
        out.reserve(HEADER_LEN + len);
        // `len <= MAX_MSG_LEN < u32::MAX`, checked above.
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.push(VERSION);
        out.push(self.type_byte());
        out.extend_from_slice(&channel.to_be_bytes());
        match self {
            Msg::Hello {
                version,
                node,
                role,
                epoch,
                mac,
            } => {
                out.push(*version);
                // `node.len() <= MAX_NODE_NAME_LEN < 256`, checked above.
                out.push(node.len() as u8);
                out.extend_from_slice(node.as_bytes());
                out.push(role_byte(*role));
                out.extend_from_slice(&epoch.to_be_bytes());
                out.extend_from_slice(mac);
            }
            Msg::Heartbeat { seq } => out.extend_from_slice(&seq.to_be_bytes()),
            Msg::Leaving => {}
            Msg::Lan { up } => out.push(u8::from(*up)),
            Msg::Frame { frame } => out.extend_from_slice(frame),
            Msg::Unit(u) => {
                put_conn(out, &u.conn);
                out.extend_from_slice(&u.seq.to_be_bytes());
                out.extend_from_slice(&u.index.to_be_bytes());
                out.push(match u.kind {
                    UnitKind::Interim => 0,
                    UnitKind::Final => 1,
                });
                out.extend_from_slice(&u.input_end.to_be_bytes());
                let mut flags = 0;
                if u.close_after {
                    flags |= FLAG_CLOSE;
                }
                if u.local {
                    flags |= FLAG_LOCAL;
                }
                out.push(flags);
                out.extend_from_slice(&u.payload);
            }
            Msg::UnitAck { conn, seq } => {
                put_conn(out, conn);
                out.extend_from_slice(&seq.to_be_bytes());
            }
            Msg::ConnGone { conn } => put_conn(out, conn),
            Msg::Routes { routes } => {
                // Bounded above: fits u16.
                out.extend_from_slice(&(routes.len() as u16).to_be_bytes());
                for r in routes {
                    out.extend_from_slice(&(r.prefix.len() as u16).to_be_bytes());
                    out.extend_from_slice(r.prefix.as_bytes());
                    out.push(r.policy);
                    out.extend_from_slice(&r.digest);
                }
            }
        }
        Ok(())
    }

    /// Decodes exactly one framed message (length prefix included).
    ///
    /// `Frame` and `Unit` payloads are zero-copy slices of `buf`.
    pub fn decode(mut buf: Bytes) -> Result<(u32, Msg), WireError> {
        let len = declared_len(&buf)?.ok_or(WireError::Truncated {
            what: "length prefix",
        })?;
        if buf.len() < HEADER_LEN + len {
            return Err(WireError::Truncated { what: "message" });
        }
        if buf.len() > HEADER_LEN + len {
            return Err(WireError::Malformed {
                what: "message (bytes after the declared length)",
            });
        }
        buf.advance(HEADER_LEN);
        parse(buf)
    }
}

/// Reads and checks the length prefix; `None` if fewer than 4 bytes.
fn declared_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(prefix) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut word = [0u8; HEADER_LEN];
    word.copy_from_slice(prefix);
    let len = u32::from_be_bytes(word) as usize;
    if len > MAX_MSG_LEN {
        return Err(WireError::TooLong {
            len,
            max: MAX_MSG_LEN,
        });
    }
    if len < PREFIX_LEN {
        return Err(WireError::Truncated {
            what: "message header",
        });
    }
    Ok(Some(len))
}

fn role_byte(role: Role) -> u8 {
    match role {
        Role::Simplex => 0,
        Role::Primary => 1,
        Role::Owner => 2,
    }
}

fn put_conn(out: &mut Vec<u8>, conn: &ConnKey) {
    out.extend_from_slice(&conn.client_ip.octets());
    out.extend_from_slice(&conn.client_port.to_be_bytes());
    out.extend_from_slice(&conn.client_isn.to_be_bytes());
}

/// A checked reader over one message body: every read is bounds-checked.
struct Reader {
    buf: Bytes,
}

/// A length-prefixed UTF-8 field: its bound and the names of its errors
/// (the error type carries static words only).
struct TextField {
    max: usize,
    what: &'static str,
    too_long: &'static str,
    not_utf8: &'static str,
}

impl Reader {
    /// `len` bytes of `field`, checked against its bound and as UTF-8.
    fn text(&mut self, len: usize, field: &TextField) -> Result<String, WireError> {
        if len > field.max {
            return Err(WireError::Malformed {
                what: field.too_long,
            });
        }
        let bytes = self.take(len, field.what)?;
        std::str::from_utf8(&bytes)
            .map(str::to_owned)
            .map_err(|_| WireError::Malformed {
                what: field.not_utf8,
            })
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated { what });
        }
        Ok(self.buf.split_to(n))
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn conn(&mut self) -> Result<ConnKey, WireError> {
        Ok(ConnKey {
            client_ip: hotpair_stack::smoltcp::wire::Ipv4Address::from_octets(
                self.array("conn client_ip")?,
            ),
            client_port: self.u16("conn client_port")?,
            client_isn: self.u32("conn client_isn")?,
        })
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    fn finish(self, what: &'static str) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed { what })
        }
    }
}

/// Parses version + type + body (the length prefix already removed).
fn parse(buf: Bytes) -> Result<(u32, Msg), WireError> {
    let mut r = Reader { buf };
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(WireError::BadVersion(version));
    }
    let ty = r.u8("type")?;
    let channel = r.u32("channel")?;
    let msg = match ty {
        TYPE_HELLO => {
            let version = r.u8("Hello version")?;
            let node_len = usize::from(r.u8("Hello node length")?);
            let node = r.text(
                node_len,
                &TextField {
                    max: MAX_NODE_NAME_LEN,
                    what: "Hello node name",
                    too_long: "Hello node name (too long)",
                    not_utf8: "Hello node name (not UTF-8)",
                },
            )?;
            let role = match r.u8("Hello role")? {
                0 => Role::Simplex,
                1 => Role::Primary,
                2 => Role::Owner,
                _ => return Err(WireError::Malformed { what: "Hello role" }),
            };
            let epoch = r.u64("Hello epoch")?;
            let mac_bytes = r.take(6, "Hello mac")?;
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&mac_bytes);
            r.finish("Hello (trailing bytes)")?;
            Msg::Hello {
                version,
                node,
                role,
                epoch,
                mac,
            }
        }
        TYPE_HEARTBEAT => {
            let seq = r.u64("Heartbeat seq")?;
            r.finish("Heartbeat (trailing bytes)")?;
            Msg::Heartbeat { seq }
        }
        TYPE_LEAVING => {
            r.finish("Leaving (trailing bytes)")?;
            Msg::Leaving
        }
        TYPE_LAN => {
            let up = match r.u8("Lan up")? {
                0 => false,
                1 => true,
                _ => return Err(WireError::Malformed { what: "Lan up" }),
            };
            r.finish("Lan (trailing bytes)")?;
            Msg::Lan { up }
        }
        TYPE_FRAME => Msg::Frame { frame: r.rest() },
        TYPE_UNIT => {
            let conn = r.conn()?;
            let seq = r.u64("Unit seq")?;
            let index = r.u64("Unit index")?;
            let kind = match r.u8("Unit kind")? {
                0 => UnitKind::Interim,
                1 => UnitKind::Final,
                _ => return Err(WireError::Malformed { what: "Unit kind" }),
            };
            let input_end = r.u64("Unit input_end")?;
            let flags = r.u8("Unit flags")?;
            if flags & !(FLAG_CLOSE | FLAG_LOCAL) != 0 {
                return Err(WireError::Malformed { what: "Unit flags" });
            }
            let local = flags & FLAG_LOCAL != 0;
            let payload = r.rest();
            if local && (kind != UnitKind::Final || payload.len() != LOCAL_DIGEST_LEN) {
                return Err(WireError::Malformed {
                    what: "Unit (a local unit is a final reply whose payload is a digest)",
                });
            }
            Msg::Unit(Unit {
                conn,
                seq,
                index,
                kind,
                input_end,
                close_after: flags & FLAG_CLOSE != 0,
                local,
                payload,
            })
        }
        TYPE_UNIT_ACK => {
            let conn = r.conn()?;
            let seq = r.u64("UnitAck seq")?;
            r.finish("UnitAck (trailing bytes)")?;
            Msg::UnitAck { conn, seq }
        }
        TYPE_CONN_GONE => {
            let conn = r.conn()?;
            r.finish("ConnGone (trailing bytes)")?;
            Msg::ConnGone { conn }
        }
        TYPE_ROUTES => {
            let n = usize::from(r.u16("Routes count")?);
            if n > MAX_ROUTES {
                return Err(WireError::Malformed {
                    what: "Routes (too many)",
                });
            }
            let mut routes = Vec::with_capacity(n);
            for _ in 0..n {
                let len = usize::from(r.u16("Routes prefix length")?);
                let prefix = r.text(
                    len,
                    &TextField {
                        max: MAX_PREFIX_LEN,
                        what: "Routes prefix",
                        too_long: "Routes prefix (too long)",
                        not_utf8: "Routes prefix (not UTF-8)",
                    },
                )?;
                let policy = r.u8("Routes policy")?;
                if policy > 2 {
                    return Err(WireError::Malformed {
                        what: "Routes policy",
                    });
                }
                let digest = r.array("Routes digest")?;
                routes.push(RouteDigest {
                    prefix,
                    policy,
                    digest,
                });
            }
            r.finish("Routes (trailing bytes)")?;
            Msg::Routes { routes }
        }
        other => return Err(WireError::UnknownType(other)),
    };
    Ok((channel, msg))
}

/// Incremental decoder for the link's byte stream.
///
/// Feed bytes as they arrive, then call [`Decoder::next`] until it returns
/// `Ok(None)`. The decoder buffers at most [`MAX_BUFFERED`] bytes: read at most
/// [`Decoder::room`] bytes from the socket before each [`Decoder::feed`].
/// After any error the decoder is poisoned and keeps returning that error; the
/// caller drops the link.
///
/// ```
/// use hotpair_replicator::wire::{Decoder, Msg};
///
/// let mut bytes = Vec::new();
/// let channel = u32::from_be_bytes([10, 77, 0, 10]); // the service address
/// Msg::Heartbeat { seq: 7 }.encode(channel, &mut bytes).unwrap();
/// let mut dec = Decoder::new();
/// dec.feed(&bytes[..3]);
/// assert_eq!(dec.next(), Ok(None));
/// dec.feed(&bytes[3..]);
/// assert_eq!(dec.next(), Ok(Some((channel, Msg::Heartbeat { seq: 7 }))));
/// assert_eq!(dec.next(), Ok(None));
/// ```
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    poisoned: Option<WireError>,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes currently buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes [`Decoder::feed`] accepts now.
    pub fn room(&self) -> usize {
        MAX_BUFFERED.saturating_sub(self.buf.len())
    }

    /// Appends bytes received from the link.
    ///
    /// Offering more than [`Decoder::room`] discards the bytes and poisons the
    /// decoder with [`WireError::BufferFull`] (reported by the next
    /// [`Decoder::next`]), so memory stays bounded.
    pub fn feed(&mut self, data: &[u8]) {
        if self.poisoned.is_some() {
            return;
        }
        let len = self.buf.len().saturating_add(data.len());
        if len > MAX_BUFFERED {
            self.buf = BytesMut::new();
            self.poisoned = Some(WireError::BufferFull {
                len,
                max: MAX_BUFFERED,
            });
            return;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    #[allow(clippy::should_implement_trait)] // fallible, unlike Iterator::next
    pub fn next(&mut self) -> Result<Option<(u32, Msg)>, WireError> {
        if let Some(err) = &self.poisoned {
            return Err(err.clone());
        }
        let result = match declared_len(&self.buf) {
            Ok(None) => return Ok(None),
            Ok(Some(len)) if self.buf.len() < HEADER_LEN + len => return Ok(None),
            Ok(Some(len)) => {
                let mut msg = self.buf.split_to(HEADER_LEN + len).freeze();
                msg.advance(HEADER_LEN);
                parse(msg)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(msg) => Ok(Some(msg)),
            Err(e) => {
                self.buf = BytesMut::new();
                self.poisoned = Some(e.clone());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONN: ConnKey = ConnKey {
        client_ip: hotpair_stack::smoltcp::wire::Ipv4Address::new(10, 0, 0, 7),
        client_port: 40123,
        client_isn: 0xdead_beef,
    };

    fn samples() -> Vec<Msg> {
        vec![
            Msg::Hello {
                version: VERSION,
                node: "node-a".into(),
                role: Role::Primary,
                epoch: 3,
                mac: [2, 0, 0, 0, 0, 1],
            },
            Msg::Hello {
                version: 9,
                node: String::new(),
                role: Role::Owner,
                epoch: u64::MAX,
                mac: [2, 0, 0, 0, 0, 1],
            },
            Msg::Hello {
                version: VERSION,
                node: "é".repeat(32),
                role: Role::Simplex,
                epoch: 0,
                mac: [2, 0, 0, 0, 0, 1],
            },
            Msg::Heartbeat { seq: 0 },
            Msg::Heartbeat { seq: u64::MAX },
            Msg::Frame {
                frame: Bytes::from_static(b"\xff\xff\xff\xff\xff\xff ethernet"),
            },
            Msg::Frame {
                frame: Bytes::new(),
            },
            Msg::Unit(Unit {
                conn: CONN,
                seq: 2,
                index: 1,
                kind: UnitKind::Final,
                input_end: 1234,
                close_after: true,
                local: false,
                payload: Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"),
            }),
            Msg::Unit(Unit {
                conn: CONN,
                seq: 0,
                index: 0,
                kind: UnitKind::Interim,
                input_end: 0,
                close_after: false,
                local: false,
                payload: Bytes::new(),
            }),
            Msg::UnitAck { conn: CONN, seq: 5 },
            Msg::ConnGone { conn: CONN },
            Msg::Unit(Unit {
                conn: CONN,
                seq: 9,
                index: 4,
                kind: UnitKind::Final,
                input_end: 99,
                close_after: true,
                local: true,
                payload: Bytes::from_static(&[7; LOCAL_DIGEST_LEN]),
            }),
            Msg::Routes { routes: vec![] },
            Msg::Routes {
                routes: vec![
                    RouteDigest {
                        prefix: "/static/".into(),
                        policy: 1,
                        digest: [7; 32],
                    },
                    RouteDigest {
                        prefix: "/é/".into(),
                        policy: 0,
                        digest: [0; 32],
                    },
                ],
            },
            Msg::Leaving,
            Msg::Lan { up: true },
            Msg::Lan { up: false },
        ]
    }

    /// Every test message travels on this channel; `channel_roundtrip`
    /// checks others.
    const CH: u32 = 0x0a4d_000a;

    fn encode(msg: &Msg) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(CH, &mut out).unwrap();
        assert_eq!(out.len(), msg.encoded_len());
        out
    }

    fn stream() -> (Vec<u8>, Vec<Msg>) {
        let msgs = samples();
        let mut out = Vec::new();
        for m in &msgs {
            m.encode(CH, &mut out).unwrap();
        }
        (out, msgs)
    }

    fn drain(dec: &mut Decoder, got: &mut Vec<Msg>) {
        while let Some((ch, m)) = dec.next().unwrap() {
            assert_eq!(ch, CH);
            got.push(m);
        }
    }

    #[test]
    fn roundtrip_every_message() {
        for msg in samples() {
            let bytes = encode(&msg);
            assert_eq!(
                Msg::decode(Bytes::from(bytes.clone())),
                Ok((CH, msg.clone()))
            );
            let mut dec = Decoder::new();
            dec.feed(&bytes);
            assert_eq!(dec.next(), Ok(Some((CH, msg))));
            assert_eq!(dec.next(), Ok(None));
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn known_encoding() {
        let bytes = encode(&Msg::UnitAck { conn: CONN, seq: 5 });
        assert_eq!(
            bytes,
            [
                0, 0, 0, 24, // length
                4, 5, // version, type
                10, 77, 0, 10, // channel (the service address 10.77.0.10)
                10, 0, 0, 7, 0x9c, 0xbb, 0xde, 0xad, 0xbe, 0xef, // conn
                0, 0, 0, 0, 0, 0, 0, 5, // seq
            ]
        );
    }

    #[test]
    fn split_at_every_offset() {
        let (bytes, msgs) = stream();
        for cut in 0..=bytes.len() {
            let mut dec = Decoder::new();
            let mut got = Vec::new();
            dec.feed(&bytes[..cut]);
            drain(&mut dec, &mut got);
            dec.feed(&bytes[cut..]);
            drain(&mut dec, &mut got);
            assert_eq!(got, msgs, "cut at {cut}");
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn byte_at_a_time() {
        let (bytes, msgs) = stream();
        let mut dec = Decoder::new();
        let mut got = Vec::new();
        for b in &bytes {
            dec.feed(std::slice::from_ref(b));
            drain(&mut dec, &mut got);
        }
        assert_eq!(got, msgs);
    }

    #[test]
    fn encode_refuses_limits() {
        let mut out = Vec::new();
        let long_name = Msg::Hello {
            version: VERSION,
            node: "x".repeat(MAX_NODE_NAME_LEN + 1),
            role: Role::Primary,
            epoch: 0,
            mac: [2, 0, 0, 0, 0, 1],
        };
        assert!(matches!(
            long_name.encode(CH, &mut out),
            Err(WireError::Malformed { .. })
        ));
        let huge = Msg::Frame {
            frame: Bytes::from(vec![0u8; MAX_FRAME_LEN + 1]),
        };
        assert_eq!(
            huge.encode(CH, &mut out),
            Err(WireError::TooLong {
                len: MAX_MSG_LEN + 1,
                max: MAX_MSG_LEN
            })
        );
        assert!(out.is_empty(), "nothing written on error");
    }

    /// Found by the `wire` fuzz target (fuzz/crashes/wire/): `encode`
    /// accepted a route policy and a local unit that the decoder rejects.
    #[test]
    fn encode_refuses_what_decode_rejects() {
        let mut out = Vec::new();
        let bad_policy = Msg::Routes {
            routes: vec![RouteDigest {
                prefix: "/static".into(),
                policy: 3,
                digest: [0; 32],
            }],
        };
        assert_eq!(
            bad_policy.encode(CH, &mut out),
            Err(WireError::Malformed {
                what: "Routes policy"
            })
        );
        for (kind, payload) in [
            (UnitKind::Final, Bytes::from_static(b"x")),
            (UnitKind::Final, Bytes::new()),
            (
                UnitKind::Interim,
                Bytes::from_static(&[7; LOCAL_DIGEST_LEN]),
            ),
        ] {
            let bad_local = Msg::Unit(Unit {
                conn: CONN,
                seq: 0,
                index: 0,
                kind,
                input_end: 0,
                close_after: false,
                local: true,
                payload,
            });
            assert!(matches!(
                bad_local.encode(CH, &mut out),
                Err(WireError::Malformed { .. })
            ));
        }
        assert!(out.is_empty(), "nothing written on error");
        // The valid local unit still goes through.
        let local = Msg::Unit(Unit {
            conn: CONN,
            seq: 0,
            index: 0,
            kind: UnitKind::Final,
            input_end: 0,
            close_after: true,
            local: true,
            payload: Bytes::from_static(&[7; LOCAL_DIGEST_LEN]),
        });
        local.encode(CH, &mut out).unwrap();
        assert_eq!(Msg::decode(Bytes::from(out)), Ok((CH, local)));
    }

    #[test]
    fn oversized_length_is_rejected_early() {
        let mut dec = Decoder::new();
        dec.feed(&((MAX_MSG_LEN + 1) as u32).to_be_bytes());
        assert_eq!(
            dec.next(),
            Err(WireError::TooLong {
                len: MAX_MSG_LEN + 1,
                max: MAX_MSG_LEN
            })
        );
        // Poisoned: the error sticks, further bytes are ignored.
        dec.feed(&encode(&Msg::Heartbeat { seq: 1 }));
        assert!(dec.next().is_err());
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn feeding_beyond_room_poisons() {
        let mut dec = Decoder::new();
        // A valid prefix for a largest message, never completed.
        dec.feed(&(MAX_MSG_LEN as u32).to_be_bytes());
        assert_eq!(dec.next(), Ok(None));
        let room = dec.room();
        assert_eq!(room, MAX_BUFFERED - HEADER_LEN);
        let big = vec![0u8; room + 1];
        dec.feed(&big);
        assert!(matches!(dec.next(), Err(WireError::BufferFull { .. })));
        assert_eq!(dec.buffered(), 0);
    }

    /// A framed message with any type and body, on channel `CH`.
    fn raw(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut v = ((PREFIX_LEN + body.len()) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&[VERSION, ty]);
        v.extend_from_slice(&CH.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn bad_fields_are_errors() {
        let cases: Vec<(Vec<u8>, WireError)> = vec![
            (
                vec![0, 0, 0, 1, VERSION],
                WireError::Truncated {
                    what: "message header",
                },
            ),
            (vec![0, 0, 0, 6, 1, 2, 0, 0, 0, 0], WireError::BadVersion(1)),
            (raw(99, &[]), WireError::UnknownType(99)),
            (raw(0, &[]), WireError::UnknownType(0)),
            (
                raw(2, &[0, 0, 0]),
                WireError::Truncated {
                    what: "Heartbeat seq",
                },
            ),
            (
                raw(2, &[0, 0, 0, 0, 0, 0, 0, 0, 9]),
                WireError::Malformed {
                    what: "Heartbeat (trailing bytes)",
                },
            ),
            (
                // Hello with a role byte of 7.
                raw(1, &[1, 1, b'a', 7, 0, 0, 0, 0, 0, 0, 0, 0]),
                WireError::Malformed { what: "Hello role" },
            ),
            (
                // Hello whose name is not UTF-8.
                raw(1, &[1, 1, 0xff, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
                WireError::Malformed {
                    what: "Hello node name (not UTF-8)",
                },
            ),
            (
                // Hello claiming a 65-byte name.
                raw(1, &[1, 65]),
                WireError::Malformed {
                    what: "Hello node name (too long)",
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(Msg::decode(Bytes::from(bytes.clone())), Err(want.clone()));
            let mut dec = Decoder::new();
            dec.feed(&bytes);
            assert_eq!(dec.next(), Err(want), "{bytes:?}");
        }

        let mut unit = encode(&samples()[7]);
        unit[HEADER_LEN + PREFIX_LEN + CONN_KEY_LEN + 16] = 2; // kind
        assert_eq!(
            Msg::decode(Bytes::from(unit)),
            Err(WireError::Malformed { what: "Unit kind" })
        );
        let mut unit = encode(&samples()[7]);
        unit[HEADER_LEN + PREFIX_LEN + CONN_KEY_LEN + 25] = 4; // flags: an unknown bit
        assert_eq!(
            Msg::decode(Bytes::from(unit)),
            Err(WireError::Malformed { what: "Unit flags" })
        );
        // A local unit must be a final reply whose payload is a digest.
        let mut unit = encode(&samples()[7]);
        unit[HEADER_LEN + PREFIX_LEN + CONN_KEY_LEN + 25] = 3; // close + local, payload not a digest
        assert!(matches!(
            Msg::decode(Bytes::from(unit)),
            Err(WireError::Malformed { .. })
        ));
        assert_eq!(
            Msg::decode(Bytes::from(raw(7, &[0, 1, 0, 1, b'/', 3]))),
            Err(WireError::Malformed {
                what: "Routes policy"
            })
        );
        assert_eq!(
            Msg::decode(Bytes::from(raw(7, &[0, 1, 0, 1, b'/', 1, 0]))),
            Err(WireError::Truncated {
                what: "Routes digest"
            })
        );
    }

    #[test]
    fn decode_needs_exact_length() {
        let bytes = encode(&Msg::ConnGone { conn: CONN });
        for cut in 0..bytes.len() {
            assert!(Msg::decode(Bytes::copy_from_slice(&bytes[..cut])).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            Msg::decode(Bytes::from(longer)),
            Err(WireError::Malformed { .. })
        ));
    }

    /// Deterministic xorshift64* so the fuzz loop is reproducible.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random and mutated inputs, fed in random chunks: errors, never panics,
    /// and whatever decodes re-encodes to the same bytes.
    #[test]
    fn fuzz_never_panics() {
        let (valid, _) = stream();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..3000 {
            let mut input: Vec<u8> = match round % 3 {
                0 => (0..rng.below(200))
                    .map(|_| rng.next() as u8)
                    .collect::<Vec<_>>(),
                _ => {
                    let mut v = valid.clone();
                    for _ in 0..=rng.below(4) {
                        let i = rng.below(v.len());
                        v[i] ^= 1 << rng.below(8);
                    }
                    v.truncate(rng.below(v.len() + 1));
                    v
                }
            };
            if round % 7 == 0 {
                // Keep lengths small so a "need more bytes" answer is cheap.
                input.insert(0, 0);
            }
            let mut dec = Decoder::new();
            let mut rest = &input[..];
            'feed: while !rest.is_empty() {
                let n = 1 + rng.below(rest.len());
                dec.feed(&rest[..n]);
                rest = &rest[n..];
                loop {
                    match dec.next() {
                        Ok(Some((ch, msg))) => {
                            let mut again = Vec::new();
                            msg.encode(ch, &mut again).unwrap();
                            assert_eq!(Msg::decode(Bytes::from(again)), Ok((ch, msg)));
                        }
                        Ok(None) => break,
                        Err(_) => {
                            assert!(dec.next().is_err(), "errors stick");
                            break 'feed;
                        }
                    }
                }
            }
            let _ = Msg::decode(Bytes::from(input));
        }
    }
}
