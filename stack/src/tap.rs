//! A TAP device opened with `IFF_VNET_HDR` and TCP segmentation offload, over
//! plain libc ioctls.
//!
//! Why not a crate: `tun-tap` cannot set `IFF_VNET_HDR` (and drags in tokio
//! 0.1); `tun-rs` can, but brings a large dependency tree for four ioctls.
//! See `docs/architecture.md`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;

/// Errors opening or configuring the TAP device.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The interface name is empty, too long (IFNAMSIZ) or has a NUL.
    #[error("invalid TAP interface name {0:?}")]
    BadName(String),
    /// An OS call failed; `what` names it.
    #[error("{what} on TAP {name}: {source}")]
    Os {
        what: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
}

#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TAP device in vnet-header mode, non-blocking.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Attach to (or create) the TAP device `name` in the current network
    /// namespace, enable the vnet header and checksum/TSO offload, set it up.
    pub fn open(name: &str) -> Result<Self, TapError> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(TapError::BadName(name.to_owned()));
        }
        let os = |what: &'static str| {
            let source = io::Error::last_os_error();
            TapError::Os {
                what,
                name: name.to_owned(),
                source,
            }
        };
        let path = c"/dev/net/tun";
        // SAFETY: a valid NUL-terminated path and flags; the result is checked.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if raw < 0 {
            return Err(os("open /dev/net/tun"));
        }
        // SAFETY: `raw` is a freshly opened fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        for (d, s) in req.name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: TUNSETIFF takes a `struct ifreq`, which IfReqFlags lays out (name, flags, padding).
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            return Err(os("TUNSETIFF"));
        }
        let hdr_len: libc::c_int = crate::vnet::VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ takes a pointer to int.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, &hdr_len) } < 0 {
            return Err(os("TUNSETVNETHDRSZ"));
        }
        // The offload flags say what *we* accept from the kernel: partial
        // checksums and TSO segments. Without them the kernel segments and
        // checksums everything before handing it to us.
        let offload: libc::c_uint = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        // SAFETY: TUNSETOFFLOAD takes an unsigned int by value.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, offload as libc::c_ulong) } < 0 {
            return Err(os("TUNSETOFFLOAD"));
        }
        let actual = {
            let end = req
                .name
                .iter()
                .position(|&c| c == 0)
                .unwrap_or(req.name.len());
            req.name[..end]
                .iter()
                .map(|&c| c as u8 as char)
                .collect::<String>()
        };
        set_link_up(&actual).map_err(|source| TapError::Os {
            what: "SIOCSIFFLAGS (up)",
            name: actual.clone(),
            source,
        })?;
        Ok(Tap { fd, name: actual })
    }

    /// The interface name the kernel gave the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Read one frame into `buf`, replacing its contents, with room for
    /// `max` bytes. The bytes go into the vector's spare capacity, so a
    /// reused buffer is not zeroed first (zeroing 64 KiB before every read
    /// of a ~1 KiB frame was a fifth of the node's CPU under load).
    pub fn read_into(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        buf.clear();
        buf.reserve(max);
        let room = buf.spare_capacity_mut();
        let len = room.len().min(max);
        // SAFETY: `room` is a valid writable region of at least `len` bytes
        // (the vector's spare capacity); the kernel writes `n` ≤ `len` of them.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), room.as_mut_ptr().cast(), len) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // SAFETY: the first `n` bytes were just written by read(2), n ≤ capacity.
        unsafe { buf.set_len(n) };
        Ok(n)
    }

    /// Write one frame (vnet header included).
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: buf is a valid readable region of buf.len() bytes.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn set_link_up(name: &str) -> io::Result<()> {
    // SAFETY: plain socket(2) call; result checked.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `s` is ours.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    for (d, c) in req.name.iter_mut().zip(name.bytes()) {
        *d = c as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS take a `struct ifreq` with the flags union member.
    unsafe {
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
