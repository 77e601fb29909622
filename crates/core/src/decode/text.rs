//! One-pass normalisation of percent-escapes, JSON string escapes and HTML
//! character references, so rules see `/etc/passwd` where the wire says
//! `%2Fetc%2Fpasswd`, `\/etc\/passwd` or `&sol;etc&sol;passwd`.
//!
//! [`normalize`] jumps between candidate escapes with `memchr3` and copies the
//! runs between them with `extend_from_slice`, so text without escapes costs
//! one memchr pass and no allocation, and text with escapes costs about one
//! memcpy of the input.

use memchr::memchr3;

/// Decodes one level of percent-escapes, JSON string escapes and HTML
/// character references in a single left-to-right pass over `input`, writing
/// the result to `out` (cleared first).
///
/// - Percent: `%XX` with two hex digits becomes the byte. `+` stays `+`, and
///   `%uXXXX` is not decoded.
/// - JSON: `\"` `\\` `\/` `\b` `\f` `\n` `\r` `\t` and `\uXXXX`, with
///   surrogate pairs joined into one UTF-8 character and lone surrogates
///   replaced by U+FFFD.
/// - HTML: `&#NN;`, `&#xHH;` (the `;` is optional, as in HTML; zero,
///   surrogates and values past U+10FFFF become U+FFFD) and named references
///   from a small table of the ones used to hide shell syntax (`&amp;`,
///   `&lt;`, `&sol;`, `&colon;`, `&vert;`, `&dollar;`, ...). Names are
///   case-sensitive as in HTML. Only `amp`, `lt`, `gt`, `quot` and `nbsp`
///   (and their upper-case forms) may omit the `;`, and then not before `=`,
///   following the HTML rule for attribute values, so a query string such as
///   `?a=1&lt=2` stays as it is. References decode to what a browser shows:
///   `&nbsp;` is U+00A0 and `&hyphen;` U+2010, not ASCII; folding such
///   look-alikes is the rules' business.
///
/// Unknown or malformed sequences are copied literally. Decoding is one
/// level: `%2541` becomes `%41`. Quoted-printable is not decoded here. The
/// output is never longer than the input.
///
/// Returns false, leaving `out` empty, when nothing in `input` decodes.
pub fn normalize(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    // input[..copied] is already represented in `out`.
    let mut copied = 0;
    let mut at = 0;
    let mut changed = false;
    while let Some(offset) = input
        .get(at..)
        .and_then(|rest| memchr3(b'%', b'\\', b'&', rest))
    {
        let i = at + offset;
        let rest = &input[i..];
        let mut decoded = Decoded::default();
        let used = match rest[0] {
            b'%' => percent(rest, &mut decoded),
            b'\\' => json_escape(rest, &mut decoded),
            _ => html_reference(rest, &mut decoded),
        };
        if used == 0 {
            at = i + 1;
            continue;
        }
        if !changed {
            changed = true;
            out.reserve(input.len());
        }
        out.extend_from_slice(&input[copied..i]);
        out.extend_from_slice(decoded.as_bytes());
        copied = i + used;
        at = copied;
    }
    if changed {
        out.extend_from_slice(&input[copied..]);
    }
    changed
}

/// The bytes one escape decodes to: at most one UTF-8 character.
#[derive(Debug, Default)]
struct Decoded {
    bytes: [u8; 4],
    len: usize,
}

impl Decoded {
    fn byte(&mut self, byte: u8) {
        self.bytes[0] = byte;
        self.len = 1;
    }

    fn char(&mut self, c: char) {
        self.len = c.encode_utf8(&mut self.bytes).len();
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn hex_value(byte: u8) -> Option<u32> {
    char::from(byte).to_digit(16)
}

/// `%XX` at the start of `s`; returns the bytes used (0: not an escape).
fn percent(s: &[u8], decoded: &mut Decoded) -> usize {
    match s {
        [_, hi, lo, ..] => match (hex_value(*hi), hex_value(*lo)) {
            (Some(hi), Some(lo)) => {
                decoded.byte((hi << 4 | lo) as u8);
                3
            }
            _ => 0,
        },
        _ => 0,
    }
}

/// A JSON escape at the start of `s` (which starts with `\`).
fn json_escape(s: &[u8], decoded: &mut Decoded) -> usize {
    let simple = match s.get(1) {
        Some(b'"') => b'"',
        Some(b'\\') => b'\\',
        Some(b'/') => b'/',
        Some(b'b') => 0x08,
        Some(b'f') => 0x0c,
        Some(b'n') => b'\n',
        Some(b'r') => b'\r',
        Some(b't') => b'\t',
        Some(b'u') => return json_unicode(s, decoded),
        _ => return 0,
    };
    decoded.byte(simple);
    2
}

/// The four hex digits of a `\uXXXX` at the start of `s`.
fn u_escape(s: &[u8]) -> Option<u32> {
    match s {
        [b'\\', b'u', a, b, c, d, ..] => [a, b, c, d]
            .iter()
            .try_fold(0, |acc, &&digit| Some(acc << 4 | hex_value(digit)?)),
        _ => None,
    }
}

/// `\uXXXX`, joining a surrogate pair `\uD83D\uDE00` into one character.
fn json_unicode(s: &[u8], decoded: &mut Decoded) -> usize {
    let Some(unit) = u_escape(s) else {
        return 0;
    };
    if (0xD800..0xDC00).contains(&unit)
        && let Some(low @ 0xDC00..0xE000) = s.get(6..).and_then(u_escape)
    {
        let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
        decoded.char(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
        return 12;
    }
    decoded.char(char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER));
    6
}

/// An HTML character reference at the start of `s` (which starts with `&`).
fn html_reference(s: &[u8], decoded: &mut Decoded) -> usize {
    if s.get(1) == Some(&b'#') {
        return html_numeric(s, decoded);
    }
    // Names are ASCII alphanumerics; anything longer than the longest name
    // in the table cannot match.
    const MAX_NAME: usize = 12;
    let name_len = s
        .iter()
        .skip(1)
        .take(MAX_NAME + 1)
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if name_len == 0 || name_len > MAX_NAME {
        return 0;
    }
    let name = &s[1..1 + name_len];
    let next = s.get(1 + name_len).copied();
    if next == Some(b';') {
        if let Some(c) = named_reference(name) {
            decoded.char(c);
            return name_len + 2;
        }
        return 0;
    }
    if next != Some(b'=')
        && let Some(c) = legacy_reference(name)
    {
        decoded.char(c);
        return name_len + 1;
    }
    0
}

/// `&#NN;` or `&#xHH;`, the `;` optional.
fn html_numeric(s: &[u8], decoded: &mut Decoded) -> usize {
    let hex = matches!(s.get(2), Some(b'x' | b'X'));
    let digits_start = if hex { 3 } else { 2 };
    let radix = if hex { 16 } else { 10 };
    let mut value: u32 = 0;
    let mut end = digits_start;
    while let Some(digit) = s.get(end).and_then(|&b| char::from(b).to_digit(radix)) {
        // Saturate: anything past U+10FFFF is replaced anyway.
        value = value.saturating_mul(radix).saturating_add(digit);
        end += 1;
    }
    if end == digits_start {
        return 0;
    }
    if s.get(end) == Some(&b';') {
        end += 1;
    }
    let c = match value {
        0 => char::REPLACEMENT_CHARACTER,
        v => char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER),
    };
    decoded.char(c);
    end
}

/// References that HTML decodes even without the trailing `;`.
fn legacy_reference(name: &[u8]) -> Option<char> {
    Some(match name {
        b"amp" | b"AMP" => '&',
        b"lt" | b"LT" => '<',
        b"gt" | b"GT" => '>',
        b"quot" | b"QUOT" => '"',
        b"nbsp" => '\u{a0}',
        _ => return None,
    })
}

/// Named references used to spell out shell syntax, paths and URLs.
fn named_reference(name: &[u8]) -> Option<char> {
    if let Some(c) = legacy_reference(name) {
        return Some(c);
    }
    Some(match name {
        b"apos" => '\'',
        b"sol" => '/',
        b"bsol" => '\\',
        b"colon" => ':',
        b"semi" => ';',
        b"period" => '.',
        b"comma" => ',',
        b"equals" => '=',
        b"num" => '#',
        b"dollar" => '$',
        b"percnt" => '%',
        b"lpar" => '(',
        b"rpar" => ')',
        b"lsqb" | b"lbrack" => '[',
        b"rsqb" | b"rbrack" => ']',
        b"lcub" | b"lbrace" => '{',
        b"rcub" | b"rbrace" => '}',
        b"vert" | b"verbar" | b"VerticalLine" => '|',
        b"excl" => '!',
        b"quest" => '?',
        b"lowbar" | b"UnderBar" => '_',
        b"plus" => '+',
        b"ast" | b"midast" => '*',
        b"commat" => '@',
        b"grave" | b"DiacriticalGrave" => '`',
        b"Hat" => '^',
        b"Tab" => '\t',
        b"NewLine" => '\n',
        b"hyphen" | b"dash" => '\u{2010}',
        b"minus" => '\u{2212}',
        b"tilde" => '\u{2dc}',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `input` normalises to `expected`; `None` means "nothing decodes".
    fn check(input: &str, expected: Option<&str>) {
        let mut out = vec![b'x'; 3];
        let changed = normalize(input.as_bytes(), &mut out);
        match expected {
            Some(expected) => {
                assert!(changed, "{input:?} should decode");
                assert_eq!(String::from_utf8_lossy(&out), expected, "{input:?}");
                assert!(out.len() <= input.len());
            }
            None => {
                assert!(!changed, "{input:?} should not decode");
                assert!(out.is_empty(), "{input:?} left output behind");
            }
        }
    }

    #[test]
    fn decodes_percent_escapes() {
        check("%2Fetc%2fpasswd", Some("/etc/passwd"));
        check("curl%20-s%20x%7Csh", Some("curl -s x|sh"));
        check("100%", None);
        check("%zz %4 %", None);
        check("%4g%41", Some("%4gA"));
        check("a+b", None);
        check("%2541", Some("%41"));
        check("%u0041", None);
    }

    #[test]
    fn decodes_json_escapes() {
        check(r#"\"quoted\""#, Some("\"quoted\""));
        check(r"\/etc\/shadow", Some("/etc/shadow"));
        check(r"a\\b", Some(r"a\b"));
        check(r"\b\f\n\r\t", Some("\u{8}\u{c}\n\r\t"));
        check(r"\u0041\u00e9\u20AC", Some("Aé€"));
        check(r"\ud83d\ude00", Some("😀"));
        check(r"\uD83D\uDE00!", Some("😀!"));
        check(r"\ud83dx", Some("\u{fffd}x"));
        check(r"\ud83d\u0041", Some("\u{fffd}A"));
        check(r"\ude00", Some("\u{fffd}"));
        check(r"\u12", None);
        check(r"\u12g4 \x41 \q", None);
        check(r"trailing\", None);
        check(r"\\u0041", Some(r"\u0041"));
        check(r"\u0000", Some("\0"));
    }

    #[test]
    fn decodes_html_references() {
        check("&lt;script&gt;", Some("<script>"));
        check("&amp;&quot;&apos;", Some("&\"'"));
        check("&AMP;&LT;&GT;&QUOT;", Some("&<>\""));
        check("&sol;etc&sol;shadow", Some("/etc/shadow"));
        check("curl x &vert; sh", Some("curl x | sh"));
        check("&dollar;&lpar;id&rpar;", Some("$(id)"));
        check(
            "&colon;&period;&equals;&num;&excl;&quest;&lowbar;&plus;",
            Some(":.=#!?_+"),
        );
        check("a&nbsp;b", Some("a\u{a0}b"));
        check("&hyphen;rf", Some("\u{2010}rf"));
        check("&#47;&#x2F;&#X2f;", Some("///"));
        check("&#47etc&#x2Fpasswd", Some("/etc/passwd"));
        check(
            "&#0; &#xD800; &#x110000; &#99999999999;",
            Some("\u{fffd} \u{fffd} \u{fffd} \u{fffd}"),
        );
        check("&#128512;", Some("😀"));
        check("&lt &gt x", Some("< > x"));
        check("&amp=1", None);
        check("?a=1&lt=2", None);
        check("&ampx &apos &sol &Amp; &unknown; &; &#; &#x; &", None);
        check("&sol;&#47;", Some("//"));
        check("&&lt;", Some("&<"));
        check("&amp;lt;", Some("&lt;"));
    }

    #[test]
    fn mixes_kinds_in_one_pass() {
        check(r"%2F\/&sol;", Some("///"));
        check(r"%5Cu0041", Some(r"\u0041"));
        check("&#37;41", Some("%41"));
        check("a=1&b=2&c=%20", Some("a=1&b=2&c= "));
    }

    #[test]
    fn plain_text_does_not_decode() {
        check("", None);
        check("GET /index.html HTTP/1.1 Host: example.com", None);
        check("a=1&b=2&c=3", None);
        check("50% off & more \\ less", None);
    }

    proptest::proptest! {
        #[test]
        fn output_is_never_longer_than_input(input in "[%&#;\\\\/xXuUdD0-9a-fA-Fltgmpqos =]{0,40}") {
            let mut out = Vec::new();
            let changed = normalize(input.as_bytes(), &mut out);
            proptest::prop_assert!(out.len() <= input.len());
            proptest::prop_assert!(changed || out.is_empty());
        }
    }

    #[test]
    fn invalid_utf8_passes_through() {
        let mut out = Vec::new();
        assert!(normalize(b"\xff%41\xfe", &mut out));
        assert_eq!(out, b"\xffA\xfe");
    }
}
