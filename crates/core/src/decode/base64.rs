//! Finding base64 blobs in text and decoding them, one level deep.
//!
//! Secrets often leave base64-wrapped: in JSON fields, `Authorization`
//! headers, MIME parts, PEM-style wrapped lines. [`find_blobs`] locates
//! candidates without reading every byte, and [`decode_blob`] decodes one
//! tolerantly (either alphabet, padding optional, line breaks ignored).
//!
//! # The skip search
//!
//! A blob of at least `min_len` alphabet characters spans at least `min_len`
//! consecutive bytes made only of alphabet characters and line breaks. So if
//! the finder looks at every `min_len`-th byte only, one of those probes
//! lands inside every such blob. On a probe that hits an alphabet character
//! (or a line break next to one) the finder walks outwards to the blob's
//! bounds, judges the whole blob, and resumes probing `min_len - 1` bytes
//! past its end. Text without long runs is therefore read at about one byte
//! in `min_len`, and a blob's bytes are read about twice.

use std::ops::Range;

const UPPER: u8 = 1;
const LOWER: u8 = 2;
const DIGIT: u8 = 4;
/// `+` and `/`: the standard alphabet's last two characters.
const STANDARD: u8 = 8;
/// `-` and `_`: the URL-safe alphabet's last two characters.
const URL_SAFE: u8 = 16;
/// `a`–`f` and `A`–`F`.
const HEX_LETTER: u8 = 32;
const ALPHABET: u8 = UPPER | LOWER | DIGIT | STANDARD | URL_SAFE;

/// Character class bits of every byte.
static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = match c {
            b'A'..=b'F' => UPPER | HEX_LETTER,
            b'a'..=b'f' => LOWER | HEX_LETTER,
            b'G'..=b'Z' => UPPER,
            b'g'..=b'z' => LOWER,
            b'0'..=b'9' => DIGIT,
            b'+' | b'/' => STANDARD,
            b'-' | b'_' => URL_SAFE,
            _ => 0,
        };
        b += 1;
    }
    table
};

const INVALID: u8 = 0xff;

/// Sextet value of every byte in either alphabet; `INVALID` otherwise.
static SEXTET: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 26 {
        table[b'A' as usize + i] = i as u8;
        table[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        table[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    table[b'+' as usize] = 62;
    table[b'-' as usize] = 62;
    table[b'/' as usize] = 63;
    table[b'_' as usize] = 63;
    table
};

/// A wrapped line continues a blob onto the next line only when it is at
/// least this long and a whole number of 4-character groups, as MIME (76)
/// and PEM (64) lines are. Two short lines of prose never join.
const MIN_WRAPPED_LINE: usize = 16;

/// How far before a blob to look for the `data:` of a data URI.
const DATA_URI_LOOKBACK: usize = 128;

/// Media types whose data URIs are skipped: binary assets, never findings.
const MEDIA_TYPES: [&[u8]; 6] = [
    b"image/",
    b"font/",
    b"audio/",
    b"video/",
    b"application/font",
    b"application/x-font",
];

/// The 6-bit value of a character of either base64 alphabet.
pub(crate) fn sextet(byte: u8) -> Option<u8> {
    Some(SEXTET[usize::from(byte)]).filter(|&v| v != INVALID)
}

fn is_alphabet(byte: u8) -> bool {
    CLASS[usize::from(byte)] & ALPHABET != 0
}

/// Finds runs that look like base64 and appends their byte ranges to `out`
/// (cleared first).
///
/// A blob is a run of standard or URL-safe alphabet characters with up to
/// two `=` of padding, holding at least `min_len` alphabet characters in
/// all. It may be wrapped over several lines (`\n` or `\r\n`) as MIME (76)
/// and PEM (64) wrap: a line continues on the next when it holds at least
/// 16 alphabet characters, a multiple of 4, and nothing else. A wrapped blob
/// is one range, line breaks included.
///
/// Skipped: blobs that are the payload of an image, font, audio or video
/// `data:` URI, and runs that are more likely words or hex than base64. A
/// blob must contain a digit or both upper and lower case letters, and must
/// not be pure hex (digits with `a`–`f`, or digits with `A`–`F`), which
/// rules match directly.
///
/// Reads about one byte in `min_len` of text without long runs; see the
/// module docs.
pub fn find_blobs(input: &[u8], min_len: usize, out: &mut Vec<Range<usize>>) {
    out.clear();
    let step = min_len.max(1);
    // Every blob starting at or after `scan_from` is still to be found.
    let mut scan_from: usize = 0;
    while let Some(probe) = scan_from.checked_add(step - 1).filter(|&p| p < input.len()) {
        let byte = input[probe];
        let mut resume = probe + 1;
        if is_alphabet(byte) {
            let blob = Blob::around(input, probe);
            blob.report(input, min_len, scan_from, out);
            resume = resume.max(blob.end);
        } else if byte == b'\n' || byte == b'\r' {
            // A probe between two wrapped lines: the blob may lie on either
            // side, or span both.
            let left = match byte {
                b'\n' if probe >= 1 && input[probe - 1] == b'\r' => probe.checked_sub(2),
                _ => probe.checked_sub(1),
            };
            let right = match input.get(probe + 1) {
                Some(b'\n') if byte == b'\r' => probe + 2,
                _ => probe + 1,
            };
            if let Some(left) = left.filter(|&l| l >= scan_from && is_alphabet(input[l])) {
                let blob = Blob::around(input, left);
                blob.report(input, min_len, scan_from, out);
                resume = resume.max(blob.end);
            }
            if right >= resume && input.get(right).is_some_and(|&b| is_alphabet(b)) {
                let blob = Blob::around(input, right);
                blob.report(input, min_len, scan_from, out);
                resume = resume.max(blob.end);
            }
        }
        scan_from = resume;
    }
}

/// The bounds of one candidate blob.
#[derive(Debug)]
struct Blob {
    start: usize,
    end: usize,
}

impl Blob {
    /// The blob containing the alphabet character at `i`.
    fn around(input: &[u8], i: usize) -> Blob {
        let run_start = run_start(input, i);
        // Earlier lines of a wrapped blob.
        let mut start = run_start;
        while let Some(line_break) = line_break_before(input, start) {
            let previous = run_start_of_line(input, line_break);
            if !wraps(line_break - previous) {
                break;
            }
            start = previous;
        }
        // This line and later ones.
        let mut line_start = run_start;
        let mut end = i;
        loop {
            while end < input.len() && is_alphabet(input[end]) {
                end += 1;
            }
            match line_break_after(input, end) {
                Some(next)
                    if wraps(end - line_start)
                        && input.get(next).is_some_and(|&b| is_alphabet(b)) =>
                {
                    line_start = next;
                    end = next;
                }
                _ => break,
            }
        }
        let padding = input[end..]
            .iter()
            .take(2)
            .take_while(|&&b| b == b'=')
            .count();
        Blob {
            start,
            end: end + padding,
        }
    }

    /// Appends the blob to `out` if it qualifies and was not seen before.
    fn report(&self, input: &[u8], min_len: usize, scan_from: usize, out: &mut Vec<Range<usize>>) {
        // Most probes land in words, far shorter than a blob: the length
        // bound (which counts line breaks too) rules them out unread.
        if self.start < scan_from || self.end - self.start < min_len {
            return;
        }
        let body = &input[self.start..self.end];
        let mut count = 0usize;
        let mut upper = 0usize;
        let mut lower = 0usize;
        let mut digits = 0usize;
        let mut non_hex = false;
        for &b in body {
            let class = CLASS[usize::from(b)];
            if class & ALPHABET != 0 {
                count += 1;
                upper += usize::from(class & UPPER != 0);
                lower += usize::from(class & LOWER != 0);
                digits += usize::from(class & DIGIT != 0);
                non_hex |= class & (DIGIT | HEX_LETTER) == 0;
            }
        }
        if count >= min_len
            && looks_encoded(upper, lower, digits, non_hex)
            && !is_media_data_uri(input, self.start)
        {
            out.push(self.start..self.end);
        }
    }
}

/// The character-class rule that tells base64 from words and hex.
///
/// Random base64 mixes cases about evenly and has a digit in all but a few
/// percent of 16-character runs. Words have no digits and, when capitalised
/// (`Content-Transfer-Encoding`, `SingletonFactoryBean`), few capitals. So a
/// blob needs a digit, or else both cases with the rarer one making up at
/// least a quarter of its letters. Pure hex (digits and letters of one case
/// from `a`–`f`) is refused: rules match hex directly.
fn looks_encoded(upper: usize, lower: usize, digits: usize, non_hex: bool) -> bool {
    let mixed_case = upper > 0 && lower > 0;
    if !non_hex && !mixed_case {
        return false;
    }
    digits > 0 || (mixed_case && upper.min(lower) * 4 >= upper + lower)
}

/// Start of the run of alphabet characters containing `i`.
fn run_start(input: &[u8], i: usize) -> usize {
    input[..i]
        .iter()
        .rposition(|&b| !is_alphabet(b))
        .map_or(0, |p| p + 1)
}

/// Start of the run of alphabet characters ending just before `end`.
fn run_start_of_line(input: &[u8], end: usize) -> usize {
    run_start(input, end)
}

/// If `start` begins a line, the position of the line break before it.
fn line_break_before(input: &[u8], start: usize) -> Option<usize> {
    let newline = start.checked_sub(1).filter(|&p| input[p] == b'\n')?;
    match newline.checked_sub(1) {
        Some(cr) if input[cr] == b'\r' => Some(cr),
        _ => Some(newline),
    }
}

/// If a line break starts at `end`, the position just after it.
fn line_break_after(input: &[u8], end: usize) -> Option<usize> {
    match input.get(end..)? {
        [b'\n', ..] => Some(end + 1),
        [b'\r', b'\n', ..] => Some(end + 2),
        _ => None,
    }
}

/// Whether a line of `len` alphabet characters may continue on the next.
fn wraps(len: usize) -> bool {
    len >= MIN_WRAPPED_LINE && len.is_multiple_of(4)
}

/// Whether the blob at `start` follows `data:<media type>...;base64,` for
/// an image, font, audio or video type.
fn is_media_data_uri(input: &[u8], start: usize) -> bool {
    const MARKER: &[u8] = b";base64,";
    let before = &input[..start];
    let Some(head) = before.len().checked_sub(MARKER.len()) else {
        return false;
    };
    if !before[head..].eq_ignore_ascii_case(MARKER) {
        return false;
    }
    let window = &before[head.saturating_sub(DATA_URI_LOOKBACK)..head];
    let Some(data) = window
        .windows(5)
        .rposition(|w| w.eq_ignore_ascii_case(b"data:"))
    else {
        return false;
    };
    let media_type = &window[data + 5..];
    MEDIA_TYPES.iter().any(|prefix| {
        media_type
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    })
}

/// Decodes one blob into `out` (cleared first), stopping after `max_out`
/// bytes.
///
/// Accepts either alphabet (but not both in one blob), with or without `=`
/// padding, and ignores `\r` and `\n` anywhere. Returns false, leaving `out`
/// empty, when the blob is not base64: another byte, data after padding,
/// more than two `=`, a length that leaves a lone sextet, or padding that
/// does not complete a 4-character group. When `max_out` is reached it
/// returns true without checking the rest.
pub fn decode_blob(blob: &[u8], out: &mut Vec<u8>, max_out: usize) -> bool {
    out.clear();
    out.reserve((blob.len() / 4 * 3 + 3).min(max_out));
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut count = 0usize;
    let mut padding = 0usize;
    let mut alphabets = 0u8;
    for &b in blob {
        match b {
            b'\r' | b'\n' => continue,
            b'=' => {
                padding += 1;
                if padding > 2 {
                    return reject(out);
                }
                continue;
            }
            _ => {}
        }
        let sextet = SEXTET[usize::from(b)];
        if sextet == INVALID || padding > 0 {
            return reject(out);
        }
        alphabets |= CLASS[usize::from(b)] & (STANDARD | URL_SAFE);
        if alphabets == STANDARD | URL_SAFE {
            return reject(out);
        }
        acc = acc << 6 | u32::from(sextet);
        bits += 6;
        count += 1;
        if bits >= 8 {
            bits -= 8;
            if out.len() >= max_out {
                return true;
            }
            out.push((acc >> bits) as u8);
        }
    }
    if count == 0 || count % 4 == 1 || (padding > 0 && !(count + padding).is_multiple_of(4)) {
        return reject(out);
    }
    true
}

fn reject(out: &mut Vec<u8>) -> bool {
    out.clear();
    false
}

#[cfg(test)]
#[allow(
    clippy::single_range_in_vec_init,
    reason = "the expected result is often exactly one blob"
)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use proptest::prelude::*;

    use super::*;

    const MIN: usize = 16;

    /// `input` yields exactly the blobs `expected` (as strings).
    fn check(input: &str, expected: &[&str]) {
        let mut ranges = vec![0..1, 1..2];
        find_blobs(input.as_bytes(), MIN, &mut ranges);
        let found: Vec<&str> = ranges.iter().map(|r| &input[r.clone()]).collect();
        assert_eq!(found, expected, "in {input:?}");
    }

    /// `blob` decodes to `expected`, or is refused when `None`.
    fn check_decode(blob: &str, expected: Option<&[u8]>) {
        let mut out = vec![1, 2, 3];
        let ok = decode_blob(blob.as_bytes(), &mut out, usize::MAX);
        match expected {
            Some(expected) => {
                assert!(ok, "{blob:?} should decode");
                assert_eq!(out, expected, "{blob:?}");
            }
            None => {
                assert!(!ok, "{blob:?} should be refused");
                assert!(out.is_empty());
            }
        }
    }

    const KEY: &str = "c2stYW50LWFwaTAzLXNlY3JldC1rZXktMTIzNA==";

    #[test]
    fn finds_blobs() {
        check(KEY, &[KEY]);
        check(&format!("token={KEY}&x=1"), &[KEY]);
        check(&format!("{{\"auth\":\"{KEY}\"}}"), &[KEY]);
        check(
            "Authorization: Basic dXNlcjpwYXNzd29yZDEyMzQ1Ng==\r\n",
            &["dXNlcjpwYXNzd29yZDEyMzQ1Ng=="],
        );
        check(
            "a QUJDREVGR0hJSktMTU5PUFFS b QUJDREVGR0hJSktMTU5PUFFT",
            &["QUJDREVGR0hJSktMTU5PUFFS", "QUJDREVGR0hJSktMTU5PUFFT"],
        );
        check(
            "url-safe: _-8Abc_def-GHI0jk_lm-no end",
            &["_-8Abc_def-GHI0jk_lm-no"],
        );
        check(
            "unpadded dXNlcjpwYXNzd29yZDEyMzQ1Ng",
            &["dXNlcjpwYXNzd29yZDEyMzQ1Ng"],
        );
    }

    #[test]
    fn finds_wrapped_blobs_as_one_range() {
        let line = "TWFuIGlzIGRpc3Rpbmd1aXNoZWQsIG5vdCBvbmx5IGJ5IGhpcyByZWFzb24sIGJ1dCBieSB0aGlz";
        let crlf =
            format!("Content-Transfer-Encoding: base64\r\n\r\n{line}\r\n{line}\r\nIGJ5==\r\n");
        check(&crlf, &[&format!("{line}\r\n{line}\r\nIGJ5==")]);
        let lf = format!("-----BEGIN-----\n{line}\n{line}\nIGJ5\n-----END-----");
        check(&lf, &[&format!("{line}\n{line}\nIGJ5")]);
        // Short or ragged lines do not join.
        check(
            "dXNlcjpwYXNzd29yZA\nZDEyMzQ1NmFiY2RlZmdo",
            &["dXNlcjpwYXNzd29yZA", "ZDEyMzQ1NmFiY2RlZmdo"],
        );
        check("abc1\ndef2\nghi3\njkl4\nmno5", &[]);
    }

    #[test]
    fn ignores_words_hex_short_runs_and_media_data_uris() {
        check("short Zm9vYmFy runs", &[]);
        check("the_quick-brown/fox_jumps-over/the_lazy-dog", &[]);
        check("path /usr/local/share/applications/defaults", &[]);
        check("ABCDEFGHIJKLMNOPQRSTUVWXYZ", &[]);
        check(
            "Content-Transfer-Encoding AbstractSingletonProxyFactoryBean",
            &[],
        );
        check(
            "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            &[],
        );
        check("SHA1 A94A8FE5CCB19BA61C4C0873D391E987982FBBD3", &[]);
        check("1234567890123456789012345", &[]);
        check(&format!("<img src=\"data:image/png;base64,{KEY}\">"), &[]);
        check(&format!("url(data:font/woff2;base64,{KEY})"), &[]);
        check(&format!("data:application/json;base64,{KEY}"), &[KEY]);
        check(&format!("data:text/plain;base64,{KEY}"), &[KEY]);
    }

    #[test]
    fn decodes_blobs() {
        check_decode(KEY, Some(b"sk-ant-api03-secret-key-1234"));
        check_decode(
            "c2stYW50LWFwaTAzLXNlY3JldC1rZXktMTIzNA",
            Some(b"sk-ant-api03-secret-key-1234"),
        );
        check_decode("Zm9v\r\nYmFy", Some(b"foobar"));
        check_decode("Zm8=", Some(b"fo"));
        check_decode("Zg==", Some(b"f"));
        check_decode("Zg", Some(b"f"));
        check_decode("-_-_", Some(&[0xfb, 0xff, 0xbf]));
        check_decode("+/+/", Some(&[0xfb, 0xff, 0xbf]));
        check_decode("+/-_", None);
        check_decode("Zm9vY", None);
        check_decode("Zg=", None);
        check_decode("Zg===", None);
        check_decode("Zg==Zg==", None);
        check_decode("Zm 9v", None);
        check_decode("Zm9v!", None);
        check_decode("", None);
        check_decode("\r\n", None);
    }

    #[test]
    fn decoding_stops_at_max_out() {
        let mut out = Vec::new();
        assert!(decode_blob(KEY.as_bytes(), &mut out, 5));
        assert_eq!(out, b"sk-an");
    }

    #[test]
    fn every_probe_offset_finds_the_blob() {
        // Move the blob across all offsets so probes land on each of its
        // bytes and on its line breaks.
        let wrapped = format!(
            "{}\r\n{}\r\nQUJD",
            "QUJDREVGR0hJSktMTU5P", "UFFSU1RVVldYWVo0NTY3"
        );
        for pad in 0..40 {
            let input = format!("{}{wrapped}.", " ".repeat(pad));
            let mut ranges = Vec::new();
            for min_len in [1, 4, 16, 20, 44] {
                find_blobs(input.as_bytes(), min_len, &mut ranges);
                assert_eq!(
                    ranges,
                    [pad..pad + wrapped.len()],
                    "offset {pad}, min_len {min_len}"
                );
            }
        }
    }

    /// Whether an encoding passes the finder's character-class rule.
    fn mixed_enough(encoded: &str) -> bool {
        let count = |f: fn(&char) -> bool| encoded.chars().filter(f).count();
        let (upper, lower) = (
            count(char::is_ascii_uppercase),
            count(char::is_ascii_lowercase),
        );
        let mixed = upper > 0 && lower > 0;
        let hex_only = encoded
            .chars()
            .all(|c| c.is_ascii_hexdigit() || "=\r\n".contains(c));
        (mixed || !hex_only)
            && (count(char::is_ascii_digit) > 0 || (mixed && upper.min(lower) * 4 >= upper + lower))
    }

    proptest! {
        #[test]
        fn any_encoded_bytes_are_found_and_decode_back(
            data in proptest::collection::vec(any::<u8>(), 12..200),
            engine in 0usize..5,
        ) {
            let mut encoded = match engine {
                0 => STANDARD.encode(&data),
                1 => STANDARD_NO_PAD.encode(&data),
                2 => URL_SAFE.encode(&data),
                3 => URL_SAFE_NO_PAD.encode(&data),
                _ => STANDARD.encode(&data),
            };
            if engine == 4 {
                // MIME: 76-character lines.
                let lines: Vec<String> = encoded
                    .as_bytes()
                    .chunks(76)
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect();
                encoded = lines.join("\r\n");
            }
            let alphabet = encoded.bytes().filter(|&b| is_alphabet(b)).count();
            prop_assume!(alphabet >= MIN && mixed_enough(&encoded));
            let input = format!("  {encoded}  ");
            let mut ranges = Vec::new();
            find_blobs(input.as_bytes(), MIN, &mut ranges);
            prop_assert_eq!(&ranges, &[2..2 + encoded.len()]);
            let mut decoded = Vec::new();
            prop_assert!(decode_blob(&input.as_bytes()[ranges[0].clone()], &mut decoded, usize::MAX));
            prop_assert_eq!(decoded, data);
        }

        #[test]
        fn finder_never_panics_and_ranges_are_ordered(
            input in proptest::collection::vec(
                prop::sample::select(b"aZ9+/-_=\r\n .:;,dataimgbse64".to_vec()), 0..300),
            min_len in 0usize..40,
        ) {
            let mut ranges = Vec::new();
            find_blobs(&input, min_len, &mut ranges);
            let mut last_end = 0;
            for r in &ranges {
                prop_assert!(r.start >= last_end && r.start < r.end && r.end <= input.len());
                last_end = r.end;
                let mut out = Vec::new();
                let _ = decode_blob(&input[r.clone()], &mut out, 64);
                prop_assert!(out.len() <= 64);
            }
        }
    }
}
