//! Content-Encoding decoders: any bytes, any coding chain, any chunking.
//! Property: no panic, and never more output than the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffic_guardian_core::decode::{ContentCoding, ContentDecoder, DecodeLimits};

const CODINGS: [ContentCoding; 4] = [
    ContentCoding::Gzip,
    ContentCoding::Deflate,
    ContentCoding::Brotli,
    ContentCoding::Zstd,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((&chunking, body)) = rest.split_first() else {
        return;
    };
    let mut chain = vec![CODINGS[usize::from(selector & 3)]];
    if selector & 4 != 0 {
        chain.push(CODINGS[usize::from((selector >> 3) & 3)]);
    }
    let limits = DecodeLimits {
        max_output: 256 * 1024,
        max_ratio: 100,
    };
    let mut decoder = ContentDecoder::new(&chain, limits);
    let mut emitted = 0u64;
    let chunk = usize::from(chunking).max(1);
    for piece in body.chunks(chunk) {
        if decoder.push(piece, &mut |out| emitted += out.len() as u64).is_err() {
            break;
        }
    }
    let _ = decoder.finish(&mut |out| emitted += out.len() as u64);
    assert!(emitted <= limits.max_output, "emitted {emitted} > cap");
    assert_eq!(emitted, decoder.output_len());
});
