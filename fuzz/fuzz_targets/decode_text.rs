//! Text decoders: one-pass unescaping, base64 blob finding and decoding,
//! streaming multipart. Properties: no panic, outputs within their bounds,
//! ranges inside the input, chunking never changes multipart output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffic_guardian_core::decode::{MultipartDecoder, base64, normalize};

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if normalize(data, &mut out) {
        assert!(out.len() <= data.len());
    } else {
        assert!(out.is_empty());
    }

    let mut blobs = Vec::new();
    base64::find_blobs(data, 32, &mut blobs);
    let mut decoded = Vec::new();
    for blob in &blobs {
        assert!(blob.start < blob.end && blob.end <= data.len());
        if base64::decode_blob(&data[blob.clone()], &mut decoded, 4096) {
            assert!(decoded.len() <= 4096);
        }
    }

    let boundary = "b0und";
    let whole = {
        let mut decoder = MultipartDecoder::new(boundary);
        let mut out = Vec::new();
        decoder.push(data, &mut |b| out.extend_from_slice(b));
        decoder.finish(&mut |b| out.extend_from_slice(b));
        out
    };
    let split = {
        let mut decoder = MultipartDecoder::new(boundary);
        let mut out = Vec::new();
        for piece in data.chunks(7) {
            decoder.push(piece, &mut |b| out.extend_from_slice(b));
        }
        decoder.finish(&mut |b| out.extend_from_slice(b));
        out
    };
    assert_eq!(whole, split, "chunking changed multipart output");
});
