//! Byte-buffer helpers the hot paths share.

/// Appends `n` zero bytes to `buf`. Not `Vec::resize`: an unoptimised build
/// fills byte by byte there, which perf showed as half of a debug node's CPU
/// time under a bulk download (frame buffers, link sealing) and which
/// stretched single rounds past the heartbeat timeout on a loaded machine.
/// `extend_from_slice` is a `memcpy` in every build.
pub fn extend_zeroed(buf: &mut Vec<u8>, n: usize) {
    static ZEROS: [u8; 4096] = [0; 4096];
    buf.reserve(n);
    let end = buf.len() + n;
    while buf.len() < end {
        let k = (end - buf.len()).min(ZEROS.len());
        buf.extend_from_slice(&ZEROS[..k]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_exactly_n_zeros() {
        for n in [0, 1, 4095, 4096, 4097, 70_000] {
            let mut v = vec![7u8; 3];
            extend_zeroed(&mut v, n);
            assert_eq!(v.len(), 3 + n);
            assert_eq!(&v[..3], &[7, 7, 7]);
            assert!(v[3..].iter().all(|&b| b == 0));
        }
    }
}
