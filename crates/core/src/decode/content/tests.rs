//! Tests of content decoding: round trips, chunking, corruption, bombs.

use std::io::Write as _;

use flate2::Compression;
use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use proptest::prelude::*;

use super::zstd::{ZSTD_MAGIC, ZSTD_MAX_BLOCK, ZSTD_SKIPPABLE_MAGIC};
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

const CLI_ZSTD: &[u8] = include_bytes!("../testdata/corpus.txt.zst");

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
    let mut e = ::brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
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
    let mut e = ::brotli::CompressorWriter::new(Vec::new(), 64 * 1024, 1, 24);
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
