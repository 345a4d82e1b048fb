//! Receive buffers from arenas of our own, not from malloc.
//!
//! A socket's receive buffer keeps its configured size (128 KiB by default:
//! its capacity fixes the window scale and the advertised window, which the
//! primary and the owner node's shadow must agree on), yet an idle
//! keep-alive connection touches one page of it. That costs one page only
//! if the buffer comes from fresh zero pages. glibc serves blocks this
//! large with a mmap each — but only up to `M_MMAP_MAX` (65,536) live
//! mappings, and the kernel allows `vm.max_map_count` (65,530) in all:
//! beyond that the buffers came from the heap, zeroed (touched) whole, and
//! 100,000 idle connections cost 39 KB each instead of ~10.
//!
//! Here large anonymous mappings (arenas, ~64 MiB each,
//! `MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE`) are carved into
//! page-aligned blocks, one per socket, handed to smoltcp as
//! `ManagedSlice::Borrowed(&'static mut [u8])`. 100,000 buffers are ~200
//! mappings (and the kernel merges adjacent ones). A buffer given back —
//! its socket taken apart with `tcp::Socket::into_buffers` (hotpair patch
//! 10) — is released with `madvise(MADV_DONTNEED)`: its pages go back to
//! the kernel and read as zeros, so a reused buffer costs nothing until
//! written, like a fresh one.
//!
//! Arenas are never unmapped. A free block costs no memory (its pages were
//! released), only address space, of which a 64-bit process has plenty;
//! unmapping wholly free arenas would need per-arena counts and would map
//! and unmap again at every swing of the connection count around an arena
//! boundary, to give back nothing the RSS shows. And because the memory
//! lives as long as the process, the `'static` of the references handed
//! out is true: a leaked buffer (a socket dropped without being taken
//! apart) can never dangle, it is only never reused.
//!
//! When no arena can be mapped (address space or `vm.max_map_count`
//! exhausted, or a slab's bound reached), [`RxSlab::alloc`] returns `None`
//! and the engine arms no listener: a new connection is refused with an
//! RST, as at a full pool. Nothing panics.

use std::sync::Mutex;

/// Bytes of one arena (rounded down to whole blocks, at least one).
const ARENA_BYTES: usize = 64 << 20;

/// A pool of equal, page-aligned buffers of `len` bytes.
pub struct RxSlab {
    /// Bytes handed out per buffer.
    len: usize,
    /// Distance between blocks: `len` rounded up to whole pages.
    stride: usize,
    per_arena: usize,
    /// Arenas this slab may map (`usize::MAX`: until mmap fails).
    max_arenas: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Base address of each arena.
    arenas: Vec<usize>,
    /// Blocks given back (addresses), reused last-in first-out.
    free: Vec<usize>,
    /// Blocks of the newest arena not handed out yet.
    fresh: usize,
    in_use: usize,
}

/// Counts of a slab, for tests and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlabStats {
    pub arenas: usize,
    pub in_use: usize,
    pub free: usize,
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a system parameter.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Shared slabs, one per buffer size, for the life of the process.
static SHARED: Mutex<Vec<&'static RxSlab>> = Mutex::new(Vec::new());

impl RxSlab {
    /// A slab of `len`-byte buffers, `per_arena` to an arena (0: as many
    /// as fit in 64 MiB), mapping at most `max_arenas` arenas. Leaked on
    /// purpose: the buffers it hands out live as long as the process.
    pub fn new(len: usize, per_arena: usize, max_arenas: usize) -> &'static RxSlab {
        let page = page_size();
        let stride = len.max(1).div_ceil(page) * page;
        let per_arena = if per_arena == 0 {
            (ARENA_BYTES / stride).max(1)
        } else {
            per_arena
        };
        Box::leak(Box::new(RxSlab {
            len,
            stride,
            per_arena,
            max_arenas,
            inner: Mutex::new(Inner::default()),
        }))
    }

    /// The process's slab for `len`-byte buffers (unbounded: until mmap
    /// fails). Engines of the same buffer size share it.
    pub fn shared(len: usize) -> &'static RxSlab {
        let mut all = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = all.iter().find(|s| s.len == len) {
            return s;
        }
        let s = RxSlab::new(len, 0, usize::MAX);
        all.push(s);
        s
    }

    /// Bytes per buffer.
    pub fn buffer_len(&self) -> usize {
        self.len
    }

    pub fn stats(&self) -> SlabStats {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        SlabStats {
            arenas: g.arenas.len(),
            in_use: g.in_use,
            free: g.free.len() + g.fresh,
        }
    }

    /// A buffer of [`Self::buffer_len`] bytes, reading as zeros and costing
    /// no memory until written; `None` if no arena can be mapped.
    pub fn alloc(&self) -> Option<&'static mut [u8]> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let addr = match g.free.pop() {
            Some(a) => a,
            None => {
                if g.fresh == 0 {
                    if g.arenas.len() >= self.max_arenas {
                        return None;
                    }
                    let base = self.map_arena()?;
                    g.arenas.push(base);
                    g.fresh = self.per_arena;
                }
                let base = *g.arenas.last()?;
                let a = base + (self.per_arena - g.fresh) * self.stride;
                g.fresh -= 1;
                a
            }
        };
        g.in_use += 1;
        // SAFETY: `addr` is the start of a block of `stride >= len` bytes
        // inside an arena this slab mapped readable and writable, which is
        // never unmapped (so the memory is valid for 'static). The block is
        // handed out to one holder at a time: it comes either from `fresh`
        // (never handed out: each block index is taken once, as `fresh`
        // only counts down) or from `free`, where only `free()` puts it,
        // and `free()` takes the one `&'static mut` to it by value — so
        // no other reference to these bytes exists. u8 has no invalid
        // values, and anonymous pages read as zeros.
        Some(unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, self.len) })
    }

    /// Give a buffer of this slab back: its pages are released
    /// (`MADV_DONTNEED`), so it reads as zeros and costs nothing until it
    /// is written again. A buffer not from this slab is left alone (leaked:
    /// the caller gave up its only reference, and nothing is unsound).
    pub fn free(&self, buf: &'static mut [u8]) {
        let addr = buf.as_mut_ptr() as usize;
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let ours = self.owns(&g, addr, buf.len());
        debug_assert!(ours, "RxSlab::free: a buffer from elsewhere");
        if !ours {
            return;
        }
        // SAFETY: `buf` is the only reference to this block (we own it by
        // value), the range [addr, addr + stride) is page-aligned and lies
        // inside one of our arenas (checked above), and MADV_DONTNEED on a
        // private anonymous mapping only replaces its pages with zero pages
        // — the same as writing zeros through `buf`. The padding past `len`
        // up to `stride` belongs to this block and is never referenced.
        let rc =
            unsafe { libc::madvise(addr as *mut libc::c_void, self.stride, libc::MADV_DONTNEED) };
        if rc != 0 {
            // Cannot happen for our own mapping; if it did, the buffer
            // still works (smoltcp needs no zeros), it only keeps its pages.
            tracing::warn!(error = %std::io::Error::last_os_error(), "madvise(MADV_DONTNEED) failed");
        }
        g.free.push(addr);
        g.in_use = g.in_use.saturating_sub(1);
    }

    /// Release the pages of a buffer of this slab that is in use but holds
    /// nothing worth keeping (an idle connection's empty receive buffer):
    /// it reads as zeros afterwards and costs nothing until written again.
    /// Returns whether it was one of ours (others are left alone).
    pub fn release(&self, buf: &mut [u8]) -> bool {
        let addr = buf.as_mut_ptr() as usize;
        {
            let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if !self.owns(&g, addr, buf.len()) {
                return false;
            }
        }
        // Whole pages inside `buf` only (ours start on a page).
        let bytes = buf.len() / page_size() * page_size();
        if bytes == 0 {
            return true;
        }
        // SAFETY: [addr, addr + bytes) lies inside `buf`, to which we hold
        // the only (`&mut`) reference for this call, starts on a page
        // boundary (our blocks do) and covers whole pages of a private
        // anonymous mapping of ours: MADV_DONTNEED there only replaces
        // the pages with zero pages — the same as writing zeros through
        // `buf`, which the caller lets us do.
        let rc = unsafe { libc::madvise(addr as *mut libc::c_void, bytes, libc::MADV_DONTNEED) };
        rc == 0
    }

    /// Whether [addr, addr + len) is a block of this slab.
    fn owns(&self, g: &Inner, addr: usize, len: usize) -> bool {
        let arena_len = self.per_arena * self.stride;
        len == self.len
            && g.arenas.iter().any(|&b| {
                addr >= b && addr < b + arena_len && (addr - b).is_multiple_of(self.stride)
            })
    }

    /// Map one arena; `None` if the kernel refuses.
    fn map_arena(&self) -> Option<usize> {
        let bytes = self.per_arena.checked_mul(self.stride)?;
        // SAFETY: a new private anonymous mapping at an address the kernel
        // picks: it aliases nothing; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                bytes,
                "cannot map a receive-buffer arena: new connections are refused"
            );
            return None;
        }
        Some(p as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_reuse_zeroed() {
        let slab = RxSlab::new(128 * 1024, 4, 2);
        let a = slab.alloc().unwrap();
        assert_eq!(a.len(), 128 * 1024);
        assert!(a.iter().all(|&b| b == 0));
        assert_eq!(a.as_ptr() as usize % page_size(), 0, "page-aligned");
        a[0] = 1;
        a[5000] = 2;
        a[128 * 1024 - 1] = 3;
        let at = a.as_ptr() as usize;
        slab.free(a);
        assert_eq!(
            slab.stats(),
            SlabStats {
                arenas: 1,
                in_use: 0,
                free: 4
            }
        );
        let b = slab.alloc().unwrap();
        assert_eq!(b.as_ptr() as usize, at, "the freed block is reused first");
        assert!(b.iter().all(|&x| x == 0), "a reused buffer reads as zeros");
        slab.free(b);
    }

    /// An idle connection's buffer, released in place: zeros, and its
    /// pages no longer resident (mincore).
    #[test]
    fn release_in_place() {
        let slab = RxSlab::new(64 * 1024, 2, 1);
        let b = slab.alloc().unwrap();
        b.fill(7);
        let resident = |b: &[u8]| {
            let pages = b.len() / page_size();
            let mut v = vec![0u8; pages];
            // SAFETY: mincore only reads the page tables for a range of
            // our own mapping and writes one byte per page into `v`.
            let rc =
                unsafe { libc::mincore(b.as_ptr() as *mut libc::c_void, b.len(), v.as_mut_ptr()) };
            assert_eq!(rc, 0);
            v.iter().filter(|&&x| x & 1 != 0).count()
        };
        assert_eq!(resident(b), 64 * 1024 / page_size());
        assert!(slab.release(b));
        assert_eq!(resident(b), 0, "the pages went back");
        assert!(b.iter().all(|&x| x == 0));
        assert_eq!(slab.stats().in_use, 1, "still lent out");
        let mut other = vec![1u8; 64 * 1024];
        assert!(!slab.release(&mut other), "not ours: left alone");
        assert!(other.iter().all(|&x| x == 1));
        slab.free(b);
    }

    #[test]
    fn distinct_blocks_and_the_bound() {
        // 2 arenas of 3 blocks: the 7th buffer is refused, not a panic.
        let slab = RxSlab::new(10_000, 3, 2);
        let mut bufs: Vec<&'static mut [u8]> = (0..6).map(|_| slab.alloc().unwrap()).collect();
        assert!(slab.alloc().is_none());
        assert!(slab.alloc().is_none(), "and again");
        assert_eq!(slab.stats().arenas, 2);
        // Writing each whole buffer disturbs no other.
        for (i, b) in bufs.iter_mut().enumerate() {
            b.fill(i as u8 + 1);
        }
        for (i, b) in bufs.iter().enumerate() {
            assert_eq!(b.len(), 10_000);
            assert!(b.iter().all(|&x| x == i as u8 + 1));
        }
        let one = bufs.pop().unwrap();
        slab.free(one);
        let again = slab.alloc().expect("room after a free");
        assert!(again.iter().all(|&x| x == 0));
        bufs.push(again);
        for b in bufs {
            slab.free(b);
        }
        assert_eq!(slab.stats().in_use, 0);
    }

    /// More buffers than glibc would ever mmap (`M_MMAP_MAX` = 65,536) and
    /// than the kernel's `vm.max_map_count`, each its own zero pages: with
    /// malloc the ones past 65,536 came from the heap. Here they take a few
    /// hundred arenas, and the process's mappings barely grow.
    #[test]
    fn more_than_65536_buffers() {
        const N: usize = 70_000;
        let maps = || {
            std::fs::read_to_string("/proc/self/maps")
                .map(|s| s.lines().count())
                .unwrap_or(0)
        };
        let before = maps();
        let slab = RxSlab::new(128 * 1024, 0, usize::MAX);
        let mut bufs = Vec::with_capacity(N);
        for i in 0..N {
            let b = slab.alloc().expect("an arena");
            // Touch one page in every 1,000th buffer (RSS stays small).
            if i % 1000 == 0 {
                assert_eq!(b[0], 0);
                b[0] = 1;
            }
            bufs.push(b);
        }
        let st = slab.stats();
        assert_eq!(st.in_use, N);
        assert_eq!(st.arenas, N.div_ceil(512));
        let grew = maps().saturating_sub(before);
        assert!(
            grew <= st.arenas + 16,
            "{grew} new mappings for {N} buffers"
        );
        // All distinct.
        let mut addrs: Vec<usize> = bufs.iter().map(|b| b.as_ptr() as usize).collect();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), N);
        for b in bufs {
            slab.free(b);
        }
        assert_eq!(slab.stats().in_use, 0);
        // Reused after all that, and zero.
        let b = slab.alloc().unwrap();
        assert_eq!(b[0], 0);
        slab.free(b);
    }

    #[test]
    fn shared_is_per_size() {
        let a = RxSlab::shared(12_345);
        let b = RxSlab::shared(12_345);
        let c = RxSlab::shared(54_321);
        assert!(std::ptr::eq(a, b));
        assert!(!std::ptr::eq(a, c));
        assert_eq!(c.buffer_len(), 54_321);
    }
}
