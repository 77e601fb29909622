//! HTTP `deflate`: zlib-wrapped per RFC 9110, or raw deflate as many servers send it.

use flate2::{Decompress, FlushDecompress, Status};

use super::CHUNK;

/// HTTP `deflate`: zlib-wrapped (RFC 1950) or raw (RFC 1951).
pub(super) struct Deflate {
    phase: DeflatePhase,
    /// The first byte, held while waiting for the second to sniff the wrap.
    first: Option<u8>,
    inflate: Decompress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeflatePhase {
    Sniff,
    Body,
    Done,
}

impl Deflate {
    pub(super) fn new() -> Deflate {
        Deflate {
            phase: DeflatePhase::Sniff,
            first: None,
            inflate: Decompress::new(true),
        }
    }

    pub(super) fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        loop {
            match self.phase {
                DeflatePhase::Sniff => {
                    let (b0, b1) = match (self.first, input) {
                        (Some(b0), [b1, ..]) => (b0, *b1),
                        (None, [b0, b1, ..]) => (*b0, *b1),
                        (None, [b0]) => {
                            self.first = Some(*b0);
                            return Ok(1);
                        }
                        (_, []) => return Ok(0),
                    };
                    self.inflate.reset(is_zlib_header(b0, b1));
                    self.phase = DeflatePhase::Body;
                    if let Some(b0) = self.first.take() {
                        let (consumed, end) = inflate_step(&mut self.inflate, &[b0], out)?;
                        if consumed != 1 {
                            return Err("decoder refused the first byte".to_owned());
                        }
                        if end {
                            self.phase = DeflatePhase::Done;
                        }
                    }
                }
                DeflatePhase::Body => {
                    let (consumed, end) = inflate_step(&mut self.inflate, input, out)?;
                    if end {
                        self.phase = DeflatePhase::Done;
                    }
                    if consumed > 0 || !out.is_empty() || !end {
                        return Ok(consumed);
                    }
                }
                DeflatePhase::Done => return Ok(input.len()),
            }
        }
    }

    pub(super) fn is_complete(&self) -> bool {
        self.phase == DeflatePhase::Done
    }
}

/// The RFC 1950 header check: method 8, window at most 32 KiB, the 16-bit
/// big-endian value a multiple of 31, and no preset dictionary. A raw
/// deflate stream can pass it only when it opens with a non-final stored
/// block whose ignored header bits happen to fit, which compressors emit
/// only for incompressible data; that rare case then fails as corrupt.
fn is_zlib_header(b0: u8, b1: u8) -> bool {
    b0 & 0x0f == 8
        && b0 >> 4 <= 7
        && (u16::from(b0) << 8 | u16::from(b1)) % 31 == 0
        && b1 & 0x20 == 0
}

/// One inflate call into `out`'s spare capacity: (consumed, reached end).
pub(super) fn inflate_step(
    inflate: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(usize, bool), String> {
    if out.capacity() - out.len() < CHUNK / 2 {
        out.reserve(CHUNK);
    }
    let before = inflate.total_in();
    let status = inflate
        .decompress_vec(input, out, FlushDecompress::None)
        .map_err(|e| e.to_string())?;
    let consumed = usize::try_from(inflate.total_in() - before).unwrap_or(input.len());
    Ok((consumed, status == Status::StreamEnd))
}
