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

use crate::Error;

mod brotli;
mod deflate;
mod gzip;
mod zstd;

use self::brotli::Brotli;
use self::deflate::Deflate;
use self::gzip::Gzip;
use self::zstd::Zstd;

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

/// `ContentDecoder` moves between threads with its connection.
const _: () = {
    const fn assert_send<T: Send + fmt::Debug>() {}
    assert_send::<ContentDecoder>();
};

#[cfg(test)]
mod tests;
