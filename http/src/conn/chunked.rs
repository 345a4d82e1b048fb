//! Decoding a chunked request body (RFC 9112 §7.1): chunk sizes,
//! extensions and the trailer section, each bounded.

use super::reserve_body;

/// Longest chunk extension (per chunk-size line) before the body is rejected (400).
pub(super) const MAX_CHUNK_EXT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkResult {
    More,
    Done,
    Reject(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    /// Reading chunk-size hex digits.
    #[default]
    Size,
    /// After the size: optional whitespace before `;` or CR.
    SizeWs,
    /// Inside chunk extensions, until CR.
    Ext,
    /// CR of the chunk-size line seen.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    /// CR of the final empty line seen.
    EndLf,
}

/// Strict chunked decoder (RFC 9112 §7.1): CRLF line ends, ≤ 16 hex digits,
/// extensions skipped (≤ `MAX_CHUNK_EXT` bytes per line), trailer fields
/// skipped (≤ `max_header_bytes` in all).
#[derive(Debug, Default)]
pub(super) struct ChunkDecoder {
    state: ChunkState,
    size: u64,
    digits: u8,
    ext_len: usize,
    trailer_len: usize,
}

impl ChunkDecoder {
    pub(super) fn feed(
        &mut self,
        data: &[u8],
        body: &mut Vec<u8>,
        max_body: u64,
        max_trailer: usize,
    ) -> (usize, ChunkResult) {
        use ChunkState as S;
        let mut i = 0;
        while i < data.len() {
            if self.state == S::Data {
                let n = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(data.len() - i);
                reserve_body(body, n, max_body);
                body.extend_from_slice(&data[i..i + n]);
                self.size -= n as u64;
                i += n;
                if self.size == 0 {
                    self.state = S::DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            let reject = |status| (i, ChunkResult::Reject(status));
            match self.state {
                S::Size => {
                    if let Some(d) = hex_digit(b) {
                        self.digits += 1;
                        if self.digits > 16 {
                            return reject(400);
                        }
                        self.size = self.size << 4 | u64::from(d);
                        if self.size > max_body.saturating_sub(body.len() as u64) {
                            return reject(413);
                        }
                    } else if self.digits == 0 {
                        return reject(400);
                    } else {
                        match b {
                            b' ' | b'\t' => self.state = S::SizeWs,
                            b';' => self.state = S::Ext,
                            b'\r' => self.state = S::SizeLf,
                            _ => return reject(400),
                        }
                    }
                }
                S::SizeWs => match b {
                    b' ' | b'\t' => {}
                    b';' => self.state = S::Ext,
                    b'\r' => self.state = S::SizeLf,
                    _ => return reject(400),
                },
                S::Ext => match b {
                    b'\r' => self.state = S::SizeLf,
                    b'\n' | 0 => return reject(400),
                    _ => {
                        self.ext_len += 1;
                        if self.ext_len > MAX_CHUNK_EXT {
                            return reject(400);
                        }
                    }
                },
                S::SizeLf => {
                    if b != b'\n' {
                        return reject(400);
                    }
                    self.digits = 0;
                    self.ext_len = 0;
                    self.state = if self.size == 0 {
                        S::TrailerStart
                    } else {
                        S::Data
                    };
                }
                S::Data => {}
                S::DataCr => {
                    if b != b'\r' {
                        return reject(400);
                    }
                    self.state = S::DataLf;
                }
                S::DataLf => {
                    if b != b'\n' {
                        return reject(400);
                    }
                    self.state = S::Size;
                }
                S::TrailerStart | S::TrailerLine | S::TrailerLf => {
                    self.trailer_len += 1;
                    if self.trailer_len > max_trailer {
                        return reject(431);
                    }
                    self.state = match (self.state, b) {
                        (S::TrailerStart, b'\r') => S::EndLf,
                        (S::TrailerLine, b'\r') => S::TrailerLf,
                        (S::TrailerStart | S::TrailerLine, b'\n' | 0) => return reject(400),
                        (S::TrailerStart | S::TrailerLine, _) => S::TrailerLine,
                        (S::TrailerLf, b'\n') => S::TrailerStart,
                        _ => return reject(400),
                    };
                }
                S::EndLf => {
                    if b != b'\n' {
                        return reject(400);
                    }
                    return (i, ChunkResult::Done);
                }
            }
        }
        (i, ChunkResult::More)
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
