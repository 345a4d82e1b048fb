//! `--pcap FILE` with a size cap (`--pcap-max-bytes`, 1 GiB by default): a
//! capture left on under load must not fill the disk. The stack's pcap
//! writer ([`hotpair_stack::pcap::PcapSink`]) writes a 24-byte file
//! header, then per frame a 16-byte record header (its captured length at
//! bytes 8..12) followed by the frame. This writer sits under it and stops
//! at the first record that would pass the cap — whole records only, so
//! the file stays readable — dropping that record and every later one,
//! with one warning.

use std::io::{self, Write};

/// The default cap.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

pub struct Capped<W: Write> {
    inner: W,
    max: u64,
    written: u64,
    /// Frame bytes still due after the record header just written.
    rest: u64,
    full: bool,
}

impl<W: Write> Capped<W> {
    pub fn new(inner: W, max: u64) -> Self {
        Capped {
            inner,
            max,
            written: 0,
            rest: 0,
            full: false,
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.full {
            return Ok(b.len());
        }
        if self.written > 0 && self.rest == 0 && b.len() == 16 {
            let caplen = u64::from(u32::from_le_bytes([b[8], b[9], b[10], b[11]]));
            if self.written + 16 + caplen > self.max {
                self.full = true;
                tracing::warn!(
                    max_bytes = self.max,
                    written = self.written,
                    "--pcap: the capture reached --pcap-max-bytes; no more frames are written \
                     (the node runs on)"
                );
                return Ok(b.len());
            }
            self.rest = caplen;
        } else {
            self.rest = self.rest.saturating_sub(b.len() as u64);
        }
        self.inner.write_all(b)?;
        self.written += b.len() as u64;
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotpair_stack::pcap::PcapSink;
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
    fn stops_at_the_first_whole_record_past_the_cap() {
        let buf = Shared::default();
        // The file header (24) and two 100-byte frames (116 each) fit in
        // 300; the third would not.
        let mut p = PcapSink::new(Box::new(Capped::new(buf.clone(), 300))).unwrap();
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
        let mut p = PcapSink::new(Box::new(Capped::new(buf.clone(), DEFAULT_MAX_BYTES))).unwrap();
        for i in 0..50u8 {
            p.frame(u64::from(i), &vec![i; 1500]).unwrap();
        }
        assert_eq!(buf.0.lock().unwrap().len(), 24 + 50 * (16 + 1500));
    }
}
