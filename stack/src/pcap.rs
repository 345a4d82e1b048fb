//! A minimal pcap (libpcap classic format) writer for `--pcap FILE`.
//!
//! Our own rather than smoltcp's `PcapWriter` because frames here carry a
//! vnet header and may be 64 KiB TSO segments: we record the Ethernet frame
//! as the kernel sees it, with a snap length large enough for those.

use std::io::{self, Write};

const SNAPLEN: u32 = 262_144;
const LINKTYPE_ETHERNET: u32 = 1;
const FILE_HEADER: u64 = 24;
const RECORD_HEADER: u64 = 16;

/// The default cap of a capture (`--pcap-max-bytes`): one left on under
/// load must not fill the disk.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Writes frames with timestamps to any `Write` (buffered by the caller),
/// up to a size cap: the first record that would pass it, and every later
/// one, is dropped — whole records only, so the file stays readable — with
/// one warning.
pub struct PcapSink {
    out: Box<dyn Write + Send>,
    max_bytes: u64,
    written: u64,
    full: bool,
}

impl std::fmt::Debug for PcapSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PcapSink")
    }
}

impl PcapSink {
    /// Write the global header and return the sink (no size cap).
    pub fn new(out: Box<dyn Write + Send>) -> io::Result<Self> {
        Self::with_limit(out, u64::MAX)
    }

    /// As [`PcapSink::new`], writing at most `max_bytes` in all.
    pub fn with_limit(mut out: Box<dyn Write + Send>, max_bytes: u64) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapSink {
            out,
            max_bytes,
            written: FILE_HEADER,
            full: false,
        })
    }

    /// Record one frame seen at `micros` since the Unix epoch.
    pub fn frame(&mut self, micros: u64, frame: &[u8]) -> io::Result<()> {
        if self.full {
            return Ok(());
        }
        let caplen = frame.len().min(SNAPLEN as usize);
        let size = RECORD_HEADER + caplen as u64;
        if self.written.saturating_add(size) > self.max_bytes {
            self.full = true;
            tracing::warn!(
                max_bytes = self.max_bytes,
                written = self.written,
                "--pcap: the capture reached --pcap-max-bytes; no more frames are written \
                 (the node runs on)"
            );
            return Ok(());
        }
        self.written += size;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((micros / 1_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((micros % 1_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&frame[..caplen])
    }

    /// Flush buffered frames (called when the node goes idle).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_header_and_records() {
        let buf = Shared::default();
        let mut p = PcapSink::new(Box::new(buf.clone())).unwrap();
        p.frame(1_500_000, &[1, 2, 3]).unwrap();
        let b = buf.0.lock().unwrap().clone();
        assert_eq!(b.len(), 24 + 16 + 3);
        assert_eq!(&b[0..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(&b[24..28], &1u32.to_le_bytes());
        assert_eq!(&b[28..32], &500_000u32.to_le_bytes());
        assert_eq!(&b[40..], &[1, 2, 3]);
    }

    #[test]
    fn stops_at_the_first_whole_record_past_the_cap() {
        let buf = Shared::default();
        // The file header (24) and two 100-byte frames (116 each) fit in
        // 300; the third would not.
        let mut p = PcapSink::with_limit(Box::new(buf.clone()), 300).unwrap();
        for i in 0..5u8 {
            p.frame(u64::from(i), &[i; 100]).unwrap();
        }
        p.flush().unwrap();
        let data = buf.0.lock().unwrap().clone();
        assert_eq!(data.len(), 24 + 2 * 116);
        // The last record is whole: its header's length and its bytes.
        assert_eq!(&data[24 + 116 + 8..24 + 116 + 12], &100u32.to_le_bytes());
        assert!(data[24 + 116 + 16..].iter().all(|&b| b == 1));
    }

    #[test]
    fn under_the_cap_everything_is_written() {
        let buf = Shared::default();
        let mut p = PcapSink::with_limit(Box::new(buf.clone()), DEFAULT_MAX_BYTES).unwrap();
        for i in 0..50u8 {
            p.frame(u64::from(i), &vec![i; 1500]).unwrap();
        }
        assert_eq!(buf.0.lock().unwrap().len(), 24 + 50 * (16 + 1500));
    }
}
