//! Zstandard (RFC 8878) frames, fed to ruzstd one complete block at a time.

use std::io::Read as _;
use std::panic::{self, AssertUnwindSafe};

use ruzstd::decoding::errors::FrameDecoderError;
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

use super::{CHUNK, ZSTD_MAX_WINDOW};

/// Largest zstd block, compressed or not (RFC 8878 §3.1.1.2.4).
pub(super) const ZSTD_MAX_BLOCK: usize = 128 * 1024;
pub(super) const ZSTD_MAGIC: u32 = 0xFD2F_B528;
pub(super) const ZSTD_SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
pub(super) const ZSTD_SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;

/// zstd through ruzstd's `FrameDecoder`, fed one complete block at a time.
///
/// ruzstd pulls from a reader and cannot resume a half-read block, so this
/// stage frames the stream itself: it collects a frame header or a block
/// (at most 128 KiB + 7 bytes) in `pending`, then hands it over whole.
/// Decoded bytes stay in the decoder until they leave the window, so output
/// trails input by up to the frame's window size.
pub(super) struct Zstd {
    decoder: FrameDecoder,
    scratch: Box<[u8]>,
    pending: Vec<u8>,
    /// Length `pending` must reach before the current unit can be handled.
    need: usize,
    phase: ZPhase,
    /// Frames (including skippable ones) completed.
    frames: u64,
    /// The current frame ends with a content checksum.
    checksum: bool,
    /// The body ended inside a frame.
    truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZPhase {
    /// Collecting a frame's 4-byte magic number.
    Magic,
    /// Collecting a skippable frame's size field.
    SkipSize,
    /// Skipping this many bytes of a skippable frame.
    Skip(u64),
    /// Collecting a frame header (its length is known after 5 bytes).
    Header,
    /// Collecting a 3-byte block header.
    BlockHeader,
    /// Collecting a block body (and the checksum after the last block).
    Block,
    /// The frame is decoded; emptying the decoder.
    Drain,
    /// Bytes after the last frame that are not a frame: ignored.
    Trailing,
}

impl Zstd {
    pub(super) fn new() -> Zstd {
        let mut decoder = FrameDecoder::new();
        decoder.set_max_window_size(ZSTD_MAX_WINDOW);
        Zstd {
            decoder,
            scratch: vec![0; CHUNK].into_boxed_slice(),
            pending: Vec::new(),
            need: 4,
            phase: ZPhase::Magic,
            frames: 0,
            checksum: false,
            truncated: false,
        }
    }

    pub(super) fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        loop {
            if matches!(
                self.phase,
                ZPhase::BlockHeader | ZPhase::Block | ZPhase::Drain
            ) {
                let n = self
                    .decoder
                    .read(&mut self.scratch)
                    .map_err(|e| e.to_string())?;
                if n > 0 {
                    out.extend_from_slice(self.scratch.get(..n).unwrap_or_default());
                    return Ok(0);
                }
            }
            match self.phase {
                ZPhase::Drain => {
                    self.end_frame()?;
                    continue;
                }
                ZPhase::Trailing => return Ok(input.len()),
                ZPhase::Skip(left) => {
                    let take = usize::try_from(left).map_or(input.len(), |l| l.min(input.len()));
                    let left = left - take as u64;
                    self.phase = ZPhase::Skip(left);
                    if left == 0 {
                        self.frames += 1;
                        self.expect(ZPhase::Magic, 4);
                    }
                    return Ok(take);
                }
                _ => {}
            }
            if input.is_empty() {
                return Ok(0);
            }
            let take = self
                .need
                .saturating_sub(self.pending.len())
                .min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            while self.pending.len() >= self.need && self.unit_phase() {
                self.unit()?;
            }
            return Ok(take);
        }
    }

    /// True in the phases that collect bytes into `pending`.
    fn unit_phase(&self) -> bool {
        matches!(
            self.phase,
            ZPhase::Magic | ZPhase::SkipSize | ZPhase::Header | ZPhase::BlockHeader | ZPhase::Block
        )
    }

    fn expect(&mut self, phase: ZPhase, need: usize) {
        self.pending.clear();
        self.phase = phase;
        self.need = need;
    }

    /// Handles a complete unit in `pending`.
    fn unit(&mut self) -> Result<(), String> {
        let p = &self.pending;
        match self.phase {
            ZPhase::Magic => {
                let magic = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                if magic == ZSTD_MAGIC {
                    self.phase = ZPhase::Header;
                    self.need = 5;
                } else if magic & ZSTD_SKIPPABLE_MASK == ZSTD_SKIPPABLE_MAGIC {
                    self.phase = ZPhase::SkipSize;
                    self.need = 8;
                } else if self.frames > 0 {
                    self.expect(ZPhase::Trailing, 0);
                } else {
                    return Err("not a zstd frame (bad magic)".to_owned());
                }
            }
            ZPhase::SkipSize => {
                let size = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
                self.expect(ZPhase::Skip(u64::from(size)), 0);
                if size == 0 {
                    self.frames += 1;
                    self.expect(ZPhase::Magic, 4);
                }
            }
            ZPhase::Header if self.need == 5 => {
                self.need = zstd_header_len(p[4]);
            }
            ZPhase::Header => {
                let mut source: &[u8] = p;
                let decoder = &mut self.decoder;
                guarded(|| decoder.init(&mut source))?;
                if !source.is_empty() {
                    return Err("frame header length mismatch".to_owned());
                }
                self.checksum = p[4] & 0x04 != 0;
                self.expect(ZPhase::BlockHeader, 3);
            }
            ZPhase::BlockHeader => {
                let header = u32::from_le_bytes([p[0], p[1], p[2], 0]);
                let last = header & 1 == 1;
                let block_type = (header >> 1) & 3;
                let size = (header >> 3) as usize;
                if block_type == 3 {
                    return Err("reserved block type".to_owned());
                }
                if size > ZSTD_MAX_BLOCK {
                    return Err(format!("block of {size} bytes exceeds 128 KiB"));
                }
                let body = if block_type == 1 { 1 } else { size };
                let checksum = if last && self.checksum { 4 } else { 0 };
                self.phase = ZPhase::Block;
                self.need = 3 + body + checksum;
            }
            ZPhase::Block => {
                let mut source: &[u8] = p;
                let decoder = &mut self.decoder;
                guarded(|| {
                    decoder.decode_blocks(&mut source, BlockDecodingStrategy::UptoBlocks(1))
                })?;
                if !source.is_empty() {
                    return Err("block length mismatch".to_owned());
                }
                if self.decoder.is_finished() {
                    self.expect(ZPhase::Drain, 0);
                } else {
                    self.expect(ZPhase::BlockHeader, 3);
                }
            }
            ZPhase::Skip(_) | ZPhase::Drain | ZPhase::Trailing => {}
        }
        Ok(())
    }

    /// Called once the decoder holds no more output of a finished frame.
    fn end_frame(&mut self) -> Result<(), String> {
        if self.checksum && !self.truncated {
            let expected = self.decoder.get_checksum_from_data();
            let actual = self.decoder.get_calculated_checksum();
            if expected.is_some() && expected != actual {
                return Err("content checksum mismatch".to_owned());
            }
        }
        self.frames += 1;
        self.expect(ZPhase::Magic, 4);
        Ok(())
    }

    /// The body ended. Inside a frame, close it with an empty last block so
    /// the decoder releases the bytes it kept for its window.
    pub(super) fn end_of_input(&mut self) -> Result<(), String> {
        if !matches!(self.phase, ZPhase::BlockHeader | ZPhase::Block) {
            return Ok(());
        }
        self.truncated = true;
        let terminator: &[u8] = if self.checksum {
            &[1, 0, 0, 0, 0, 0, 0]
        } else {
            &[1, 0, 0]
        };
        let mut source = terminator;
        let decoder = &mut self.decoder;
        guarded(|| decoder.decode_blocks(&mut source, BlockDecodingStrategy::UptoBlocks(1)))?;
        self.expect(ZPhase::Drain, 0);
        Ok(())
    }

    pub(super) fn is_complete(&self) -> bool {
        !self.truncated && self.frames > 0 && matches!(self.phase, ZPhase::Magic | ZPhase::Trailing)
    }
}

/// Length of a zstd frame header (magic included) from its descriptor byte
/// (RFC 8878 §3.1.1.1).
fn zstd_header_len(descriptor: u8) -> usize {
    let single_segment = descriptor & 0x20 != 0;
    let dictionary_id = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let content_size = match descriptor >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    4 + 1 + usize::from(!single_segment) + dictionary_id + content_size
}

/// Runs a ruzstd call, turning a panic on hostile input into an error. The
/// decoder is third-party code fed by peers; a bug there must cost one body's
/// decoding, not the proxy.
fn guarded<T>(f: impl FnOnce() -> Result<T, FrameDecoderError>) -> Result<T, String> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(FrameDecoderError::WindowSizeTooBig { requested, .. })) => Err(format!(
            "frame window of {requested} bytes exceeds the {} MiB limit",
            ZSTD_MAX_WINDOW >> 20
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("zstd decoder failed on malformed input".to_owned()),
    }
}
