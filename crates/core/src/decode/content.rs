//! Streaming `Content-Encoding` decoding (gzip, deflate, br, zstd), bounded in
//! memory and guarded against decompression bombs.
//!
//! A [`ContentDecoder`] is fed wire bytes in whatever pieces the network
//! delivers and hands decoded bytes to a callback as soon as they exist. It
//! never holds a whole body: each coding keeps only its own window
//! (32 KiB for deflate, at most 16 MiB for brotli, at most
//! [`ZSTD_MAX_WINDOW`] for zstd) plus a 32 KiB output chunk.
//!
//! Two limits apply to the final decoded output ([`DecodeLimits`]):
//!
//! - `max_output` caps what is emitted. Past it the decoder stops working and
//!   reports [`ContentDecoder::is_exhausted`]; the scanner simply sees a
//!   prefix of the body.
//! - `max_ratio` caps expansion against the wire bytes consumed so far. A body
//!   that decodes to more than `max_ratio × wire + 64 KiB` is treated as a
//!   decompression bomb: decoding stops with [`Error::DecompressionBomb`] and
//!   the decoder stays failed.
//!
//! Stacked codings ("gzip, br") are decoded innermost-last: the output of one
//! stage is the input of the next, the caps apply to the output of the last
//! stage and the ratio to the bytes taken off the wire.
//!
//! Leniency: bytes after the end of a complete stream that do not start a new
//! gzip member or zstd frame are ignored, as `gzip -d` does. A body that is
//! empty on the wire decodes to nothing without error.

use std::fmt;
use std::io::Read as _;
use std::panic::{self, AssertUnwindSafe};

use brotli::enc::StandardAlloc;
use brotli::{BrotliDecompressStream, BrotliResult, BrotliState};
use flate2::{Crc, Decompress, FlushDecompress, Status};
use ruzstd::decoding::errors::FrameDecoderError;
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

use crate::Error;

/// The most codings one body may stack ("gzip, br" is two). Real servers use
/// one, rarely two; each stage costs its own window, so the chain is bounded.
pub const MAX_STACKED_CODINGS: usize = 4;

/// The largest zstd window a frame may declare: 8 MiB, the limit RFC 8878
/// §3.1.1.1.2 sets for the `zstd` HTTP content coding. Larger frames are
/// refused as corrupt, which keeps a zstd decoder under about 8.2 MiB.
pub const ZSTD_MAX_WINDOW: u64 = 8 * 1024 * 1024;

/// Size of the output chunk each stage produces per step. It bounds how far
/// decoding can run past a limit before the limit is checked.
const CHUNK: usize = 32 * 1024;

/// Output allowed on top of `max_ratio × wire input`, so that small bodies
/// with a legitimately high ratio (a short run of zeros, a tiny JSON document
/// of repeated keys) are not flagged.
const RATIO_SLACK: u64 = 64 * 1024;

/// Largest zstd block, compressed or not (RFC 8878 §3.1.1.2.4).
const ZSTD_MAX_BLOCK: usize = 128 * 1024;

const ZSTD_MAGIC: u32 = 0xFD2F_B528;
const ZSTD_SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
const ZSTD_SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;

/// One HTTP content coding the guardian can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCoding {
    /// `gzip` (RFC 1952), also spelled `x-gzip`. Multi-member streams decode.
    Gzip,
    /// `deflate`: zlib-wrapped per RFC 9110, or raw deflate as many servers
    /// send it; the first two bytes decide.
    Deflate,
    /// `br`: brotli (RFC 7932).
    Brotli,
    /// `zstd` (RFC 8878), with windows up to [`ZSTD_MAX_WINDOW`].
    Zstd,
}

impl ContentCoding {
    /// The coding's name as it appears in `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentCoding::Gzip => "gzip",
            ContentCoding::Deflate => "deflate",
            ContentCoding::Brotli => "br",
            ContentCoding::Zstd => "zstd",
        }
    }

    /// Maps one header token; `Ok(None)` is `identity`.
    fn from_token(token: &str) -> Result<Option<ContentCoding>, Error> {
        const NAMES: [(&str, Option<ContentCoding>); 6] = [
            ("gzip", Some(ContentCoding::Gzip)),
            ("x-gzip", Some(ContentCoding::Gzip)),
            ("deflate", Some(ContentCoding::Deflate)),
            ("br", Some(ContentCoding::Brotli)),
            ("zstd", Some(ContentCoding::Zstd)),
            ("identity", None),
        ];
        NAMES
            .iter()
            .find(|(name, _)| token.eq_ignore_ascii_case(name))
            .map(|(_, coding)| *coding)
            .ok_or_else(|| Error::UnsupportedEncoding(bounded(token)))
    }
}

impl fmt::Display for ContentCoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a `Content-Encoding` header value such as `"gzip"`, `"br"`,
/// `"gzip, br"`, `"x-gzip"` or `"identity"`.
///
/// Returns the codings in the order they were applied (header order), with
/// `identity` entries and empty list elements dropped; an empty value gives an
/// empty list. Names are case-insensitive and surrounding whitespace is
/// ignored. An unknown coding, or more than [`MAX_STACKED_CODINGS`], is
/// [`Error::UnsupportedEncoding`].
pub fn parse_content_encoding(header: &str) -> Result<Vec<ContentCoding>, Error> {
    let mut codings = Vec::new();
    for token in header.split(',').map(str::trim) {
        if token.is_empty() {
            continue;
        }
        if let Some(coding) = ContentCoding::from_token(token)? {
            codings.push(coding);
        }
    }
    if codings.len() > MAX_STACKED_CODINGS {
        return Err(Error::UnsupportedEncoding(bounded(header)));
    }
    Ok(codings)
}

/// A peer-controlled header value, cut short enough to quote in an error.
fn bounded(value: &str) -> String {
    const MAX: usize = 64;
    let mut end = value.len().min(MAX);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_owned()
}

/// Bounds on what one [`ContentDecoder`] may produce.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Most decoded bytes emitted for one body. Decoding stops silently
    /// there. Default: 1 MiB.
    pub max_output: u64,
    /// Most decoded bytes per wire byte (plus 64 KiB of slack) before the
    /// body counts as a decompression bomb. Default: 100, comfortably above
    /// what text, JSON and HTML compress to, and an order of magnitude below
    /// deflate's ceiling of about 1032:1 (brotli and zstd bombs go far
    /// higher).
    pub max_ratio: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_output: 1024 * 1024,
            max_ratio: 100,
        }
    }
}

/// Streaming decoder for one message body's `Content-Encoding`.
///
/// Feed it with [`push`](ContentDecoder::push) and end it with
/// [`finish`](ContentDecoder::finish). Errors are sticky: after one, every
/// later call returns the same kind of error without doing work.
pub struct ContentDecoder {
    codings: Vec<ContentCoding>,
    /// Decoding stages, wire side first (the reverse of `codings`).
    stages: Vec<Stage>,
    limits: DecodeLimits,
    counters: Counters,
    input_len: u64,
    failed: Option<Failure>,
    finished: bool,
}

/// What the final sink has seen.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    /// Wire bytes consumed by the first stage.
    wire_in: u64,
    /// Bytes the last stage produced, emitted or not.
    decoded: u64,
    /// Bytes handed to the caller.
    emitted: u64,
    /// Output was cut at `max_output`.
    exhausted: bool,
}

/// A sticky failure, kept so later calls can report it again.
#[derive(Debug, Clone)]
enum Failure {
    Corrupt {
        coding: &'static str,
        reason: String,
    },
    Bomb {
        coding: &'static str,
    },
    TooManyCodings,
}

impl Failure {
    fn to_error(&self, limits: DecodeLimits) -> Error {
        match self {
            Failure::Corrupt { coding, reason } => Error::CorruptEncoding {
                coding,
                reason: reason.clone(),
            },
            Failure::Bomb { coding } => Error::DecompressionBomb {
                coding,
                max_ratio: limits.max_ratio,
            },
            Failure::TooManyCodings => Error::UnsupportedEncoding(format!(
                "more than {MAX_STACKED_CODINGS} stacked codings"
            )),
        }
    }
}

impl ContentDecoder {
    /// A decoder for `codings` in applied order, as returned by
    /// [`parse_content_encoding`]; decoding undoes them in reverse. An empty
    /// list passes bytes through (still capped at `max_output`). More than
    /// [`MAX_STACKED_CODINGS`] codings make the first call fail with
    /// [`Error::UnsupportedEncoding`].
    pub fn new(codings: &[ContentCoding], limits: DecodeLimits) -> ContentDecoder {
        let too_many = codings.len() > MAX_STACKED_CODINGS;
        let stages = if too_many {
            Vec::new()
        } else {
            codings
                .iter()
                .rev()
                .map(|&coding| Stage::new(coding))
                .collect()
        };
        ContentDecoder {
            codings: codings.to_vec(),
            stages,
            limits,
            counters: Counters::default(),
            input_len: 0,
            failed: too_many.then_some(Failure::TooManyCodings),
            finished: false,
        }
    }

    /// Feeds compressed bytes, in chunks of any size down to one byte.
    /// Decoded bytes go to `out` as soon as they are available.
    ///
    /// Never emits more than `max_output` bytes in total; past that it stops
    /// decoding, returns `Ok` and [`is_exhausted`](Self::is_exhausted) turns
    /// true. Output beyond `max_ratio × wire + 64 KiB` is
    /// [`Error::DecompressionBomb`]; corrupt data is
    /// [`Error::CorruptEncoding`]. Input after [`finish`](Self::finish) is
    /// counted and ignored.
    pub fn push(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8])) -> Result<(), Error> {
        self.input_len = self.input_len.saturating_add(input.len() as u64);
        if let Some(failure) = &self.failed {
            return Err(failure.to_error(self.limits));
        }
        if self.counters.exhausted || self.finished {
            return Ok(());
        }
        let mut sink = Sink {
            out,
            limits: self.limits,
            counters: &mut self.counters,
            coding: last_coding(&self.codings),
        };
        match drive(&mut self.stages, input, &mut sink, true) {
            Ok(Flow::Continue) => Ok(()),
            Ok(Flow::Stop) => {
                self.stages.clear();
                Ok(())
            }
            Err(failure) => Err(self.fail(failure)),
        }
    }

    /// Ends the body: flushes what the stages still hold. A stream that stops
    /// before its end is [`Error::CorruptEncoding`], but everything decodable
    /// has been emitted by then. Calling it again is a no-op.
    pub fn finish(&mut self, out: &mut dyn FnMut(&[u8])) -> Result<(), Error> {
        if let Some(failure) = &self.failed {
            return Err(failure.to_error(self.limits));
        }
        if self.counters.exhausted || self.finished {
            return Ok(());
        }
        self.finished = true;
        let mut sink = Sink {
            out,
            limits: self.limits,
            counters: &mut self.counters,
            coding: last_coding(&self.codings),
        };
        // Flush stage by stage, wire side first, so each stage's tail reaches
        // the stages after it before they are flushed in turn. A truncated
        // stage is reported only after every later stage has been drained.
        let mut truncated = None;
        for i in 0..self.stages.len() {
            let tail = &mut self.stages[i..];
            let result = tail[0]
                .end_of_input()
                .and_then(|()| drive(tail, &[], &mut sink, i == 0));
            match result {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => {
                    self.stages.clear();
                    return Ok(());
                }
                Err(failure) => return Err(self.fail(failure)),
            }
            let stage = &tail[0];
            if truncated.is_none() && stage.seen_input && !stage.codec.is_complete() {
                truncated = Some(Failure::Corrupt {
                    coding: stage.coding.as_str(),
                    reason: "stream ends before its end marker (truncated body)".to_owned(),
                });
            }
        }
        self.stages.clear();
        match truncated {
            Some(failure) => Err(self.fail(failure)),
            None => Ok(()),
        }
    }

    /// Wire bytes pushed so far, including any ignored after a stop.
    pub fn input_len(&self) -> u64 {
        self.input_len
    }

    /// Decoded bytes emitted so far; never more than `max_output`.
    pub fn output_len(&self) -> u64 {
        self.counters.emitted
    }

    /// True once decoded output went past `max_output` and decoding stopped.
    pub fn is_exhausted(&self) -> bool {
        self.counters.exhausted
    }

    /// Records a failure, frees the stages' windows, and returns its error.
    fn fail(&mut self, failure: Failure) -> Error {
        let error = failure.to_error(self.limits);
        self.failed = Some(failure);
        self.stages.clear();
        error
    }
}

impl fmt::Debug for ContentDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentDecoder")
            .field("codings", &self.codings)
            .field("limits", &self.limits)
            .field("input_len", &self.input_len)
            .field("output_len", &self.counters.emitted)
            .field("exhausted", &self.counters.exhausted)
            .field("failed", &self.failed)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// The coding named in a bomb report: the one whose output is the body.
fn last_coding(codings: &[ContentCoding]) -> &'static str {
    codings.first().map_or("identity", |c| c.as_str())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// The end of the stage chain: applies the limits and calls the caller.
struct Sink<'a, 'f> {
    out: &'a mut (dyn FnMut(&[u8]) + 'f),
    limits: DecodeLimits,
    counters: &'a mut Counters,
    coding: &'static str,
}

impl Sink<'_, '_> {
    fn emit(&mut self, chunk: &[u8]) -> Result<Flow, Failure> {
        let c = &mut *self.counters;
        c.decoded = c.decoded.saturating_add(chunk.len() as u64);
        let allowed = self
            .limits
            .max_ratio
            .saturating_mul(c.wire_in)
            .saturating_add(RATIO_SLACK);
        if c.decoded > allowed {
            return Err(Failure::Bomb {
                coding: self.coding,
            });
        }
        let room = self.limits.max_output.saturating_sub(c.emitted);
        let n = usize::try_from(room).map_or(chunk.len(), |room| room.min(chunk.len()));
        if n > 0 {
            (self.out)(&chunk[..n]);
            c.emitted += n as u64;
        }
        if n < chunk.len() {
            c.exhausted = true;
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }
}

/// Runs `input` through the first stage of `stages`, passing each output
/// chunk on to the rest, until the stage has consumed all input and has no
/// output left. `wire` marks the stage that reads wire bytes.
fn drive(
    stages: &mut [Stage],
    input: &[u8],
    sink: &mut Sink<'_, '_>,
    wire: bool,
) -> Result<Flow, Failure> {
    let Some((stage, rest)) = stages.split_first_mut() else {
        if wire {
            sink.counters.wire_in = sink.counters.wire_in.saturating_add(input.len() as u64);
        }
        return if input.is_empty() {
            Ok(Flow::Continue)
        } else {
            sink.emit(input)
        };
    };
    stage.seen_input |= !input.is_empty();
    let mut input = input;
    loop {
        stage.out.clear();
        let consumed = stage
            .codec
            .step(input, &mut stage.out)
            .map_err(|reason| stage.corrupt(reason))?
            .min(input.len());
        input = &input[consumed..];
        if wire {
            sink.counters.wire_in = sink.counters.wire_in.saturating_add(consumed as u64);
        }
        let produced = !stage.out.is_empty();
        if produced && drive(rest, &stage.out, sink, false)? == Flow::Stop {
            return Ok(Flow::Stop);
        }
        if consumed == 0 && !produced {
            if input.is_empty() {
                return Ok(Flow::Continue);
            }
            return Err(stage.corrupt("decoder stopped making progress".to_owned()));
        }
    }
}

/// One decoding stage: a codec plus its output chunk buffer.
struct Stage {
    coding: ContentCoding,
    codec: Codec,
    out: Vec<u8>,
    seen_input: bool,
}

impl Stage {
    fn new(coding: ContentCoding) -> Stage {
        let codec = match coding {
            ContentCoding::Gzip => Codec::Gzip(Box::new(Gzip::new())),
            ContentCoding::Deflate => Codec::Deflate(Box::new(Deflate::new())),
            ContentCoding::Brotli => Codec::Brotli(Box::new(Brotli::new())),
            ContentCoding::Zstd => Codec::Zstd(Box::new(Zstd::new())),
        };
        Stage {
            coding,
            codec,
            out: Vec::with_capacity(CHUNK),
            seen_input: false,
        }
    }

    fn corrupt(&self, reason: String) -> Failure {
        Failure::Corrupt {
            coding: self.coding.as_str(),
            reason,
        }
    }

    fn end_of_input(&mut self) -> Result<(), Failure> {
        match &mut self.codec {
            Codec::Zstd(z) => z.end_of_input().map_err(|reason| Failure::Corrupt {
                coding: ContentCoding::Zstd.as_str(),
                reason,
            }),
            _ => Ok(()),
        }
    }
}

enum Codec {
    Gzip(Box<Gzip>),
    Deflate(Box<Deflate>),
    Brotli(Box<Brotli>),
    Zstd(Box<Zstd>),
}

impl Codec {
    /// Decodes some of `input` into `out` (empty, with `CHUNK` capacity) and
    /// returns how many input bytes it consumed. Each call makes progress
    /// (consumes or produces) unless it has nothing left to do with `input`.
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        match self {
            Codec::Gzip(c) => c.step(input, out),
            Codec::Deflate(c) => c.step(input, out),
            Codec::Brotli(c) => c.step(input, out),
            Codec::Zstd(c) => c.step(input, out),
        }
    }

    /// True when the stream reached its proper end.
    fn is_complete(&self) -> bool {
        match self {
            Codec::Gzip(c) => c.is_complete(),
            Codec::Deflate(c) => c.is_complete(),
            Codec::Brotli(c) => c.done,
            Codec::Zstd(c) => c.is_complete(),
        }
    }
}

/// One inflate call into `out`'s spare capacity: (consumed, reached end).
fn inflate_step(
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

// ---------------------------------------------------------------- gzip ----

/// gzip (RFC 1952): header, raw deflate body, CRC-32 and size trailer;
/// members may follow each other.
struct Gzip {
    phase: GzPhase,
    header: GzHeader,
    inflate: Decompress,
    crc: Crc,
    trailer: [u8; 8],
    trailer_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GzPhase {
    Header,
    Body,
    Trailer,
    /// A member ended; another may follow.
    BetweenMembers,
    /// Bytes after the last member that are not a member: ignored.
    Trailing,
}

impl Gzip {
    fn new() -> Gzip {
        Gzip {
            phase: GzPhase::Header,
            header: GzHeader::default(),
            inflate: Decompress::new(false),
            crc: Crc::new(),
            trailer: [0; 8],
            trailer_len: 0,
        }
    }

    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        loop {
            match self.phase {
                GzPhase::Header => {
                    for (i, &byte) in input.iter().enumerate() {
                        if self.header.feed(byte)? {
                            self.phase = GzPhase::Body;
                            return Ok(i + 1);
                        }
                    }
                    return Ok(input.len());
                }
                GzPhase::Body => {
                    let (consumed, end) = inflate_step(&mut self.inflate, input, out)?;
                    self.crc.update(out);
                    if end {
                        self.phase = GzPhase::Trailer;
                    }
                    if consumed > 0 || !out.is_empty() || !end {
                        return Ok(consumed);
                    }
                }
                GzPhase::Trailer => {
                    let take = (8 - self.trailer_len).min(input.len());
                    self.trailer[self.trailer_len..self.trailer_len + take]
                        .copy_from_slice(&input[..take]);
                    self.trailer_len += take;
                    if self.trailer_len == 8 {
                        self.check_trailer()?;
                        self.phase = GzPhase::BetweenMembers;
                    }
                    return Ok(take);
                }
                GzPhase::BetweenMembers => match input.first() {
                    None => return Ok(0),
                    Some(&GZIP_ID1) => {
                        self.header = GzHeader::default();
                        self.inflate.reset(false);
                        self.crc.reset();
                        self.trailer_len = 0;
                        self.phase = GzPhase::Header;
                    }
                    Some(_) => self.phase = GzPhase::Trailing,
                },
                GzPhase::Trailing => return Ok(input.len()),
            }
        }
    }

    fn check_trailer(&self) -> Result<(), String> {
        let [c0, c1, c2, c3, s0, s1, s2, s3] = self.trailer;
        if u32::from_le_bytes([c0, c1, c2, c3]) != self.crc.sum() {
            return Err("CRC-32 mismatch".to_owned());
        }
        // ISIZE is the member's length modulo 2^32.
        if u32::from_le_bytes([s0, s1, s2, s3]) != self.inflate.total_out() as u32 {
            return Err("length mismatch in trailer".to_owned());
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        matches!(self.phase, GzPhase::BetweenMembers | GzPhase::Trailing)
    }
}

const GZIP_ID1: u8 = 0x1f;
const GZIP_ID2: u8 = 0x8b;
const GZIP_FHCRC: u8 = 0x02;
const GZIP_FEXTRA: u8 = 0x04;
const GZIP_FNAME: u8 = 0x08;
const GZIP_FCOMMENT: u8 = 0x10;
const GZIP_RESERVED: u8 = 0xe0;

/// Byte-at-a-time gzip header parser, so a header split anywhere works.
#[derive(Debug)]
struct GzHeader {
    field: GzField,
    flags: u8,
}

impl Default for GzHeader {
    fn default() -> Self {
        GzHeader {
            field: GzField::Fixed(0),
            flags: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GzField {
    /// Inside the fixed 10-byte part, at this offset.
    Fixed(u8),
    XlenLo,
    XlenHi(u8),
    /// Inside the extra field, with this many bytes left.
    Extra(u16),
    Name,
    Comment,
    Hcrc(u8),
}

/// The optional header fields in stream order, with the flag announcing each.
const GZIP_OPTIONAL: [(u8, GzField); 4] = [
    (GZIP_FEXTRA, GzField::XlenLo),
    (GZIP_FNAME, GzField::Name),
    (GZIP_FCOMMENT, GzField::Comment),
    (GZIP_FHCRC, GzField::Hcrc(0)),
];

impl GzHeader {
    /// Takes one header byte; true when the header is complete.
    fn feed(&mut self, byte: u8) -> Result<bool, String> {
        let next = match self.field {
            GzField::Fixed(0) | GzField::Fixed(1) => {
                let expected = if self.field == GzField::Fixed(0) {
                    GZIP_ID1
                } else {
                    GZIP_ID2
                };
                if byte != expected {
                    return Err("not a gzip stream (bad magic)".to_owned());
                }
                self.advance_fixed()
            }
            GzField::Fixed(2) if byte != 8 => {
                return Err(format!("unknown compression method {byte}"));
            }
            GzField::Fixed(3) if byte & GZIP_RESERVED != 0 => {
                return Err("reserved header flags set".to_owned());
            }
            GzField::Fixed(3) => {
                self.flags = byte;
                self.advance_fixed()
            }
            GzField::Fixed(9) => return Ok(self.optional_from(0)),
            GzField::Fixed(_) => self.advance_fixed(),
            GzField::XlenLo => GzField::XlenHi(byte),
            GzField::XlenHi(lo) => match u16::from_le_bytes([lo, byte]) {
                0 => return Ok(self.optional_from(1)),
                len => GzField::Extra(len),
            },
            GzField::Extra(1) => return Ok(self.optional_from(1)),
            GzField::Extra(left) => GzField::Extra(left - 1),
            GzField::Name if byte == 0 => return Ok(self.optional_from(2)),
            GzField::Comment if byte == 0 => return Ok(self.optional_from(3)),
            GzField::Name | GzField::Comment => self.field,
            GzField::Hcrc(0) => GzField::Hcrc(1),
            GzField::Hcrc(_) => return Ok(true),
        };
        self.field = next;
        Ok(false)
    }

    fn advance_fixed(&self) -> GzField {
        match self.field {
            GzField::Fixed(n) => GzField::Fixed(n + 1),
            other => other,
        }
    }

    /// Moves to the first flagged optional field at or after `index` in
    /// [`GZIP_OPTIONAL`]; true when none is left and the header is done.
    fn optional_from(&mut self, index: usize) -> bool {
        let next = GZIP_OPTIONAL
            .iter()
            .skip(index)
            .find(|(flag, _)| self.flags & flag != 0);
        match next {
            Some(&(_, field)) => {
                self.field = field;
                false
            }
            None => true,
        }
    }
}

// ------------------------------------------------------------- deflate ----

/// HTTP `deflate`: zlib-wrapped (RFC 1950) or raw (RFC 1951).
struct Deflate {
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
    fn new() -> Deflate {
        Deflate {
            phase: DeflatePhase::Sniff,
            first: None,
            inflate: Decompress::new(true),
        }
    }

    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
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

    fn is_complete(&self) -> bool {
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

// -------------------------------------------------------------- brotli ----

/// Brotli through the decoder's streaming state API. Standard (not
/// large-window) streams only, so the window is at most 16 MiB.
struct Brotli {
    state: BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>,
    scratch: Box<[u8]>,
    done: bool,
}

impl Brotli {
    fn new() -> Brotli {
        Brotli {
            state: BrotliState::new_strict(
                StandardAlloc::default(),
                StandardAlloc::default(),
                StandardAlloc::default(),
            ),
            scratch: vec![0; CHUNK].into_boxed_slice(),
            done: false,
        }
    }

    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        if self.done {
            return Ok(input.len());
        }
        let mut available_in = input.len();
        let mut input_offset = 0;
        let mut available_out = self.scratch.len();
        let mut output_offset = 0;
        let mut total_out = 0;
        let result = BrotliDecompressStream(
            &mut available_in,
            &mut input_offset,
            input,
            &mut available_out,
            &mut output_offset,
            &mut self.scratch[..],
            &mut total_out,
            &mut self.state,
        );
        out.extend_from_slice(self.scratch.get(..output_offset).unwrap_or_default());
        match result {
            BrotliResult::ResultSuccess => {
                self.done = true;
                Ok(input.len())
            }
            BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => Ok(input_offset),
            BrotliResult::ResultFailure => Err(format!(
                "invalid brotli stream ({:?})",
                self.state.error_code
            )),
        }
    }
}

// ---------------------------------------------------------------- zstd ----

/// zstd through ruzstd's `FrameDecoder`, fed one complete block at a time.
///
/// ruzstd pulls from a reader and cannot resume a half-read block, so this
/// stage frames the stream itself: it collects a frame header or a block
/// (at most 128 KiB + 7 bytes) in `pending`, then hands it over whole.
/// Decoded bytes stay in the decoder until they leave the window, so output
/// trails input by up to the frame's window size.
struct Zstd {
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
    fn new() -> Zstd {
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

    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
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
    fn end_of_input(&mut self) -> Result<(), String> {
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

    fn is_complete(&self) -> bool {
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

/// `ContentDecoder` moves between threads with its connection.
const _: () = {
    const fn assert_send<T: Send + fmt::Debug>() {}
    assert_send::<ContentDecoder>();
};

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use proptest::prelude::*;

    use super::*;

    /// The text compressed into `testdata/corpus.txt.zst` by the zstd CLI
    /// (`zstd -19 --check --no-content-size --zstd=wlog=16`).
    fn corpus() -> Vec<u8> {
        (0..4000u32)
            .map(|i| {
                format!(
                    "{i:05} the quick brown fox jumps over the lazy dog {}\n",
                    i * 7919 % 10007
                )
            })
            .collect::<String>()
            .into_bytes()
    }

    const CLI_ZSTD: &[u8] = include_bytes!("testdata/corpus.txt.zst");

    /// Incompressible bytes from a fixed LCG.
    fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (x >> 56) as u8
            })
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gzip_with_header_fields(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::GzBuilder::new()
            .filename("secrets.txt")
            .extra(vec![7; 300])
            .comment("a comment")
            .write(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn br(data: &[u8]) -> Vec<u8> {
        let mut e = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
        e.write_all(data).unwrap();
        e.into_inner()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    /// A zstd frame header without content size, declaring `2^window_log`.
    fn zstd_header(window_log: u8) -> Vec<u8> {
        let mut frame = ZSTD_MAGIC.to_le_bytes().to_vec();
        frame.push(0x00);
        frame.push((window_log - 10) << 3);
        frame
    }

    /// A zstd frame of `blocks` RLE blocks of 128 KiB zeros: 4 bytes each.
    fn zstd_rle_bomb(blocks: usize) -> Vec<u8> {
        let mut frame = zstd_header(20);
        for i in 0..blocks {
            let last = u32::from(i + 1 == blocks);
            let header = (ZSTD_MAX_BLOCK as u32) << 3 | 1 << 1 | last;
            frame.extend_from_slice(&header.to_le_bytes()[..3]);
            frame.push(0);
        }
        frame
    }

    fn skippable_frame() -> Vec<u8> {
        let mut frame = (ZSTD_SKIPPABLE_MAGIC | 3).to_le_bytes().to_vec();
        frame.extend_from_slice(&5u32.to_le_bytes());
        frame.extend_from_slice(b"12345");
        frame
    }

    /// Decodes `wire` pushed in `chunk`-byte pieces: output and first error.
    fn decode(
        header: &str,
        wire: &[u8],
        chunk: usize,
        limits: DecodeLimits,
    ) -> (Vec<u8>, Result<(), Error>) {
        let codings = parse_content_encoding(header).unwrap();
        let mut decoder = ContentDecoder::new(&codings, limits);
        let mut out = Vec::new();
        for piece in wire.chunks(chunk.max(1)) {
            if let Err(e) = decoder.push(piece, &mut |b| out.extend_from_slice(b)) {
                return (out, Err(e));
            }
        }
        let result = decoder.finish(&mut |b| out.extend_from_slice(b));
        assert!(decoder.output_len() == out.len() as u64);
        (out, result)
    }

    /// `wire` decodes to `expected` whether pushed whole, byte by byte, or
    /// in odd-sized pieces.
    fn check(header: &str, wire: &[u8], expected: &[u8]) {
        let limits = DecodeLimits {
            max_output: u64::MAX,
            max_ratio: 100,
        };
        for chunk in [wire.len(), 1, 7, 4096] {
            let (out, result) = decode(header, wire, chunk, limits);
            assert!(
                result.is_ok(),
                "{header} in {chunk}-byte pieces: {result:?}"
            );
            assert!(
                out == expected,
                "{header} in {chunk}-byte pieces: wrong output"
            );
        }
    }

    #[test]
    fn every_coding_round_trips_in_any_chunking() {
        let text = corpus();
        let noise = noise(70_000);
        let both = [&text[..], &noise[..]].concat();
        check("gzip", &gzip(&text), &text);
        check("x-gzip", &gzip(&noise), &noise);
        check("gzip", &gzip_with_header_fields(&text), &text);
        check("gzip", &[gzip(&text), gzip(&noise)].concat(), &both);
        check(
            "gzip",
            &[&gzip(&text)[..], b"\0\0trailing junk"].concat(),
            &text,
        );
        check("deflate", &zlib(&text), &text);
        check("deflate", &raw_deflate(&text), &text);
        check("deflate", &raw_deflate(&noise), &noise);
        check("br", &br(&text), &text);
        check("br", &br(&noise), &noise);
        check("zstd", &zstd(&text), &text);
        check("zstd", &zstd(&noise), &noise);
        check("zstd", CLI_ZSTD, &text);
        check(
            "zstd",
            &[skippable_frame(), zstd(&text), zstd(&noise)].concat(),
            &both,
        );
        check("gzip, br", &br(&gzip(&text)), &text);
        check("zstd, deflate, br", &br(&raw_deflate(&zstd(&text))), &text);
        check("identity", b"plain body", b"plain body");
        check("", b"plain body", b"plain body");
        check("gzip", b"", b"");
        check("gzip", &gzip(b""), b"");
        check("deflate", &zlib(b""), b"");
        check("br", &br(b""), b"");
        check("zstd", &zstd(b""), b"");
    }

    #[test]
    fn zstd_output_streams_before_the_frame_ends() {
        let codings = [ContentCoding::Zstd];
        let mut decoder = ContentDecoder::new(&codings, DecodeLimits::default());
        let mut out = 0;
        decoder.push(CLI_ZSTD, &mut |b| out += b.len()).unwrap();
        // The CLI frame has a 64 KiB window: all but the window is released.
        assert!(out >= corpus().len() - 64 * 1024 - ZSTD_MAX_BLOCK, "{out}");
    }

    #[test]
    fn corrupt_input_is_an_error_never_a_panic() {
        let text = corpus();
        let mut bad_crc = gzip(&text);
        let n = bad_crc.len();
        bad_crc[n - 6] ^= 1;
        let mut flipped_br = br(&text);
        flipped_br[10] ^= 0x55;
        let mut bad_checksum = CLI_ZSTD.to_vec();
        let n = bad_checksum.len();
        bad_checksum[n - 1] ^= 1;
        let cases: &[(&str, &[u8])] = &[
            ("gzip", b"not gzip at all"),
            ("gzip", &[0x1f, 0x8b, 9, 0, 0, 0, 0, 0, 0, 0]),
            ("gzip", &bad_crc),
            ("deflate", b"\xff\xff\xff\xff\xff\xff"),
            ("deflate", &[0x78, 0x9c, 0xff, 0xff, 0xff]),
            ("br", b"\xff\xff\xff\xff not brotli"),
            ("br", &flipped_br),
            ("zstd", b"not zstd"),
            (
                "zstd",
                &[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x50, 0x07, 0x00, 0x00],
            ),
            ("zstd", &bad_checksum),
            ("gzip, br", &br(b"this is not gzip")),
        ];
        for &(header, wire) in cases {
            for chunk in [wire.len(), 1] {
                let (_, result) = decode(header, wire, chunk, DecodeLimits::default());
                assert!(
                    matches!(result, Err(Error::CorruptEncoding { .. })),
                    "{header} {wire:?} in {chunk}-byte pieces: {result:?}"
                );
            }
        }
    }

    #[test]
    fn a_truncated_stream_fails_at_finish_after_emitting_its_prefix() {
        let text = corpus();
        let cases: [(&str, Vec<u8>); 5] = [
            ("gzip", gzip(&text)),
            ("deflate", zlib(&text)),
            ("br", br(&text)),
            ("zstd", CLI_ZSTD.to_vec()),
            ("zstd", zstd(&text)),
        ];
        for (header, wire) in cases {
            let cut = &wire[..wire.len() * 3 / 4];
            for chunk in [cut.len(), 1] {
                let (out, result) = decode(header, cut, chunk, DecodeLimits::default());
                assert!(
                    matches!(result, Err(Error::CorruptEncoding { .. })),
                    "{header}: {result:?}"
                );
                assert!(
                    out.len() > text.len() / 3,
                    "{header}: only {} bytes",
                    out.len()
                );
                assert!(text.starts_with(&out), "{header}: output is not a prefix");
            }
        }
    }

    /// A decompression bomb fed in network-sized reads is stopped early:
    /// it fails as a bomb or stops at `max_output`, and never emits more.
    fn assert_bomb_contained(header: &str, wire: &[u8], limits: DecodeLimits) {
        for chunk in [16 * 1024, wire.len()] {
            let codings = parse_content_encoding(header).unwrap();
            let mut decoder = ContentDecoder::new(&codings, limits);
            let mut emitted = 0u64;
            let mut bomb = false;
            for piece in wire.chunks(chunk) {
                match decoder.push(piece, &mut |b| emitted += b.len() as u64) {
                    Ok(()) => {}
                    Err(Error::DecompressionBomb { .. }) => {
                        bomb = true;
                        break;
                    }
                    Err(e) => panic!("{header}: {e}"),
                }
            }
            assert!(
                bomb || decoder.is_exhausted(),
                "{header}: neither bomb nor exhausted"
            );
            assert!(emitted <= limits.max_output, "{header}: emitted {emitted}");
            assert_eq!(decoder.output_len(), emitted);
            if bomb {
                // Sticky, and cheap: the stages are gone.
                assert!(matches!(
                    decoder.push(b"more", &mut |_| panic!("output after failure")),
                    Err(Error::DecompressionBomb { .. })
                ));
                assert!(decoder.finish(&mut |_| {}).is_err());
            } else {
                assert!(
                    decoder
                        .push(b"more", &mut |_| panic!("output after stop"))
                        .is_ok()
                );
                assert!(decoder.finish(&mut |_| {}).is_ok());
            }
        }
    }

    const HUNDRED_MIB: usize = 100 * 1024 * 1024;

    /// 100 MiB of zeros compressed without ever holding them: 64 KiB at a time.
    fn compress_zeros(mut encoder: impl std::io::Write) {
        let zeros = vec![0u8; 64 * 1024];
        for _ in 0..HUNDRED_MIB / zeros.len() {
            encoder.write_all(&zeros).unwrap();
        }
    }

    #[test]
    fn gzip_bomb_is_contained() {
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        compress_zeros(&mut e);
        let wire = e.finish().unwrap();
        assert!(wire.len() < HUNDRED_MIB / 500);
        assert_bomb_contained("gzip", &wire, DecodeLimits::default());
        let generous = DecodeLimits {
            max_output: 1 << 20,
            max_ratio: u64::MAX,
        };
        assert_bomb_contained("gzip", &wire, generous);
    }

    #[test]
    fn brotli_bomb_is_contained() {
        let mut e = brotli::CompressorWriter::new(Vec::new(), 64 * 1024, 1, 24);
        compress_zeros(&mut e);
        let wire = e.into_inner();
        assert!(wire.len() < HUNDRED_MIB / 500);
        assert_bomb_contained("br", &wire, DecodeLimits::default());
        assert_bomb_contained(
            "br",
            &wire,
            DecodeLimits {
                max_output: 1 << 20,
                max_ratio: u64::MAX,
            },
        );
    }

    #[test]
    fn zstd_bomb_is_contained() {
        let wire = zstd_rle_bomb(HUNDRED_MIB / ZSTD_MAX_BLOCK);
        assert_bomb_contained("zstd", &wire, DecodeLimits::default());
        assert_bomb_contained(
            "zstd",
            &wire,
            DecodeLimits {
                max_output: 1 << 20,
                max_ratio: u64::MAX,
            },
        );
    }

    #[test]
    fn stacked_bomb_is_contained() {
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        compress_zeros(&mut e);
        let wire = br(&e.finish().unwrap());
        assert_bomb_contained("gzip, br", &wire, DecodeLimits::default());
    }

    #[test]
    fn zstd_refuses_windows_over_8_mib() {
        let mut wire = zstd_header(24);
        wire.extend_from_slice(&[1, 0, 0]);
        let (_, result) = decode("zstd", &wire, 1, DecodeLimits::default());
        let Err(Error::CorruptEncoding { reason, .. }) = result else {
            panic!("{result:?}");
        };
        assert!(reason.contains("window"), "{reason}");
        let mut ok = zstd_header(23);
        ok.extend_from_slice(&[1, 0, 0]);
        assert!(decode("zstd", &ok, 1, DecodeLimits::default()).1.is_ok());
    }

    #[test]
    fn output_is_capped_exactly_at_max_output() {
        let text = corpus();
        let limits = |max_output| DecodeLimits {
            max_output,
            max_ratio: 100,
        };
        let (out, result) = decode("gzip", &gzip(&text), 1000, limits(1000));
        assert!(result.is_ok());
        assert_eq!(out, &text[..1000]);

        let codings = [ContentCoding::Gzip];
        let mut exact = ContentDecoder::new(&codings, limits(text.len() as u64));
        exact.push(&gzip(&text), &mut |_| {}).unwrap();
        exact.finish(&mut |_| {}).unwrap();
        assert!(!exact.is_exhausted(), "nothing was cut");

        let mut short = ContentDecoder::new(&codings, limits(text.len() as u64 - 1));
        short.push(&gzip(&text), &mut |_| {}).unwrap();
        assert!(short.is_exhausted());
    }

    #[test]
    fn small_bodies_with_a_high_ratio_are_not_bombs() {
        // 60 KiB of zeros compresses to ~80 bytes: over 700:1, under the slack.
        let zeros = vec![0; 60 * 1024];
        check("gzip", &gzip(&zeros), &zeros);
        check(
            "zstd",
            &zstd_rle_bomb(0)
                .into_iter()
                .chain([1, 0, 0])
                .collect::<Vec<_>>(),
            b"",
        );
    }

    #[test]
    fn too_many_stacked_codings_are_refused() {
        assert!(matches!(
            parse_content_encoding("gzip, gzip, gzip, gzip, gzip"),
            Err(Error::UnsupportedEncoding(_))
        ));
        let mut decoder = ContentDecoder::new(&[ContentCoding::Gzip; 5], DecodeLimits::default());
        assert!(matches!(
            decoder.push(b"x", &mut |_| {}),
            Err(Error::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn parses_content_encoding_headers() {
        use ContentCoding::{Brotli, Deflate, Gzip, Zstd};
        let ok = |header: &str, expected: &[ContentCoding]| {
            assert_eq!(
                parse_content_encoding(header).unwrap(),
                expected,
                "{header:?}"
            );
        };
        ok("gzip", &[Gzip]);
        ok("x-gzip", &[Gzip]);
        ok("GZip", &[Gzip]);
        ok("deflate", &[Deflate]);
        ok("br", &[Brotli]);
        ok("ZSTD", &[Zstd]);
        ok("gzip, br", &[Gzip, Brotli]);
        ok(" gzip ,\tbr ", &[Gzip, Brotli]);
        ok("identity", &[]);
        ok("identity, gzip", &[Gzip]);
        ok("", &[]);
        ok(" , ", &[]);
        for bad in ["compress", "x-compress", "gzip, lzma", "gzip;q=1", "br2"] {
            assert!(
                matches!(
                    parse_content_encoding(bad),
                    Err(Error::UnsupportedEncoding(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(ContentCoding::Brotli.as_str(), "br");
        assert_eq!(ContentCoding::Zstd.to_string(), "zstd");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            wire in proptest::collection::vec(any::<u8>(), 0..600),
            chunk in 1usize..64,
            coding in 0usize..4,
        ) {
            let header = ["gzip", "deflate", "br", "zstd"][coding];
            let (out, _) = decode(header, &wire, chunk, DecodeLimits::default());
            prop_assert!(out.len() as u64 <= DecodeLimits::default().max_output);
        }

        #[test]
        fn mutated_streams_never_panic(
            position in any::<prop::sample::Index>(),
            xor in 1u8..,
            coding in 0usize..4,
        ) {
            let text = b"GET /etc/passwd HTTP/1.1 and some more text to compress, twice: GET /etc/passwd";
            let (header, mut wire) = match coding {
                0 => ("gzip", gzip(text)),
                1 => ("deflate", zlib(text)),
                2 => ("br", br(text)),
                _ => ("zstd", zstd(text)),
            };
            let i = position.index(wire.len());
            wire[i] ^= xor;
            let _ = decode(header, &wire, 3, DecodeLimits::default());
        }
    }
}
