//! A checker on the wire in front of the client: every TCP segment the
//! client is handed from a service address is compared with everything it
//! was handed before. A takeover must continue the same sequence space: the
//! same ISN, the same byte at every sequence number (a retransmission from
//! the survivor must equal what the dead node sent there), one FIN position,
//! and never an RST.

use std::collections::BTreeMap;
use std::time::Duration;

use hotpair_stack::seg::{self, FIN, RST, SYN};

use crate::addresses::{vip_index, PORT, TLS_PORT};
use crate::client::CLIENT_IP;
use crate::lan;

#[derive(Debug, Default)]
struct Stream {
    isn: Option<u32>,
    /// The stream as the client was sent it; meaningful inside `have`.
    data: Vec<u8>,
    /// The byte ranges sent so far: sorted, disjoint, not adjacent.
    have: Vec<(usize, usize)>,
    fin: Option<u64>,
    /// A conflict was reported already (report the first only).
    conflict: bool,
}

#[derive(Debug, Default)]
pub struct WireCheck {
    streams: BTreeMap<u16, Stream>,
    pub violations: Vec<String>,
    /// RSTs the client sent (to the service address).
    pub client_rsts: Vec<String>,
    /// Bytes delivered to the client that it had already been handed.
    pub duplicate_bytes: u64,
    /// RSTs that reached the client after its connection was over.
    pub late_rsts: u64,
}

impl WireCheck {
    /// A frame handed to the client's NIC; `from` names the sender;
    /// `finished(port)` says whether the client's connection on that port
    /// is over (TIME-WAIT or closed after its own close).
    pub fn to_client(
        &mut self,
        frame: &[u8],
        from: &str,
        step: u64,
        t: Duration,
        finished: impl Fn(u16) -> bool,
    ) {
        let Some(s) = seg::parse(frame) else { return };
        if vip_index(s.src).is_none()
            || (s.src_port != PORT && s.src_port != TLS_PORT)
            || s.dst != CLIENT_IP
        {
            return;
        }
        // Only a violation needs it: made for every frame, it was 8% of
        // the matrix's time.
        let at = || {
            format!(
                "step {step} t={:.6}s from {from}: {}",
                t.as_secs_f64(),
                lan::describe(frame)
            )
        };
        if s.has(RST) {
            if finished(s.dst_port) {
                // A stray segment after both ends closed draws an RST from
                // any TCP (no socket left): the connection was complete.
                self.late_rsts += 1;
            } else {
                self.violations
                    .push(format!("promise 4: the client received an RST ({})", at()));
            }
            return;
        }
        let st = self.streams.entry(s.dst_port).or_default();
        if s.has(SYN) {
            match st.isn {
                None => st.isn = Some(s.seq),
                Some(isn) if isn != s.seq => {
                    self.violations.push(format!(
                        "sequence space: SYN-ACK with ISN {} after the client saw ISN {isn} ({})",
                        s.seq,
                        at()
                    ));
                    return;
                }
                Some(_) => {}
            }
        }
        let Some(isn) = st.isn else {
            if s.payload_len > 0 || s.has(FIN) {
                self.violations.push(format!(
                    "sequence space: data or FIN before any SYN-ACK ({})",
                    at()
                ));
            }
            return;
        };
        let first = isn.wrapping_add(1);
        let data_seq = if s.has(SYN) {
            s.seq.wrapping_add(1)
        } else {
            s.seq
        };
        let rel = data_seq.wrapping_sub(first);
        if rel >= 1 << 31 {
            if s.payload_len > 0 {
                self.violations.push(format!(
                    "sequence space: data {} bytes before the first data byte ({})",
                    rel.wrapping_neg(),
                    at()
                ));
            }
            return;
        }
        let off = u64::from(rel) as usize;
        let payload = &frame[s.off.payload..s.off.end];
        let end = off + payload.len();
        if let Some(fin) = st.fin {
            if end as u64 > fin && !payload.is_empty() {
                self.violations.push(format!(
                    "promise 2: data beyond the FIN at stream offset {fin} ({})",
                    at()
                ));
                return;
            }
        }
        // Compare with what overlaps, copy in what is new (slices: this
        // runs for every byte the client is sent).
        let mut p = off;
        for &(a, b) in st.have.iter().filter(|&&(a, b)| a < end && b > off) {
            if p < a {
                put(&mut st.data, p, &payload[p - off..a - off]);
            }
            let (lo, hi) = (a.max(off), b.min(end));
            self.duplicate_bytes += (hi - lo) as u64;
            let (old, new) = (&st.data[lo..hi], &payload[lo - off..hi - off]);
            if old != new && !st.conflict {
                st.conflict = true;
                let i = old.iter().zip(new).position(|(x, y)| x != y).unwrap_or(0);
                self.violations.push(format!(
                    "promise 2: stream offset {} was {:#04x} and is now {:#04x} — a retransmission differs from what the client was sent before (spliced or misaligned) ({})",
                    lo + i,
                    old[i],
                    new[i], at()));
            }
            p = hi;
        }
        if p < end {
            put(&mut st.data, p, &payload[p - off..]);
        }
        if end > off {
            add_range(&mut st.have, off, end);
        }
        if s.has(FIN) {
            let fin = end as u64;
            match st.fin {
                None => {
                    if st.have.last().is_some_and(|&(_, b)| b > end) {
                        self.violations.push(format!(
                            "promise 2: FIN at stream offset {fin} before data the client was already sent ({})", at()));
                    }
                    st.fin = Some(fin);
                }
                Some(f) if f != fin => self.violations.push(format!(
                    "promise 2: FIN at stream offset {fin} after a FIN at {f} ({})",
                    at()
                )),
                Some(_) => {}
            }
        }
    }

    /// A frame the client sent.
    pub fn from_client(&mut self, frame: &[u8], step: u64, t: Duration) {
        if let Some(s) = seg::parse(frame) {
            if s.has(RST) && vip_index(s.dst).is_some() {
                self.client_rsts.push(format!(
                    "step {step} t={:.6}s: {}",
                    t.as_secs_f64(),
                    lan::describe(frame)
                ));
            }
        }
    }
}

/// Write `bytes` at `at`, growing `data` (by copying, not zero-filling,
/// where it can: this runs for every byte the client is sent).
fn put(data: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if data.len() < at {
        data.resize(at, 0);
    }
    let inside = (data.len() - at).min(bytes.len());
    data[at..at + inside].copy_from_slice(&bytes[..inside]);
    data.extend_from_slice(&bytes[inside..]);
}

/// Add `[a, b)` to sorted, disjoint, non-adjacent ranges.
fn add_range(v: &mut Vec<(usize, usize)>, a: usize, b: usize) {
    let (mut a, mut b) = (a, b);
    let mut out = Vec::with_capacity(v.len() + 1);
    let mut placed = false;
    for &(x, y) in v.iter() {
        if y < a {
            out.push((x, y));
        } else if b < x {
            if !placed {
                out.push((a, b));
                placed = true;
            }
            out.push((x, y));
        } else {
            a = a.min(x);
            b = b.max(y);
        }
    }
    if !placed {
        out.push((a, b));
    }
    *v = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::addresses::VIP;
    use hotpair_stack::seg::{ACK, SYN};
    use smoltcp::wire::EthernetAddress;

    fn seg_to_client(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = seg::build(
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            EthernetAddress([2, 0, 0, 0, 0, 0x64]),
            VIP,
            CLIENT_IP,
            PORT,
            40_000,
            seq,
            1,
            flags,
            512,
        );
        f.extend_from_slice(payload);
        let total = (40 + payload.len()) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f
    }

    #[test]
    fn retransmissions_must_match_and_rsts_count_until_done() {
        let mut w = WireCheck::default();
        let t = Duration::ZERO;
        let open = |_: u16| false;
        w.to_client(&seg_to_client(99, SYN | ACK, b""), "A", 0, t, open);
        w.to_client(&seg_to_client(100, ACK, b"hello"), "A", 1, t, open);
        w.to_client(&seg_to_client(103, ACK, b"lo wor"), "B", 2, t, open);
        w.to_client(
            &seg_to_client(100, ACK | FIN, b"hello world"),
            "B",
            3,
            t,
            open,
        );
        assert!(w.violations.is_empty(), "{:?}", w.violations);
        assert_eq!(w.duplicate_bytes, 2 + 9);
        w.to_client(&seg_to_client(105, ACK, b" W"), "B", 4, t, open);
        assert_eq!(w.violations.len(), 1, "{:?}", w.violations);
        assert!(
            w.violations[0].contains("stream offset 6"),
            "{}",
            w.violations[0]
        );
        w.to_client(&seg_to_client(99, SYN | ACK, b""), "B", 5, t, open);
        w.to_client(&seg_to_client(5, SYN | ACK, b""), "B", 6, t, open);
        assert_eq!(w.violations.len(), 2, "{:?}", w.violations);
        w.to_client(&seg_to_client(111, ACK | RST, b""), "B", 7, t, |_| true);
        assert_eq!((w.violations.len(), w.late_rsts), (2, 1));
        w.to_client(&seg_to_client(111, ACK | RST, b""), "B", 8, t, open);
        assert_eq!(w.violations.len(), 3);
    }

    #[test]
    fn ranges_merge() {
        let mut v = Vec::new();
        add_range(&mut v, 10, 20);
        add_range(&mut v, 30, 40);
        add_range(&mut v, 0, 5);
        assert_eq!(v, vec![(0, 5), (10, 20), (30, 40)]);
        add_range(&mut v, 20, 30);
        assert_eq!(v, vec![(0, 5), (10, 40)]);
        add_range(&mut v, 3, 12);
        assert_eq!(v, vec![(0, 40)]);
        add_range(&mut v, 50, 60);
        add_range(&mut v, 45, 55);
        assert_eq!(v, vec![(0, 40), (45, 60)]);
    }
}
