//! Validators that run after a rule's regex matched: the precision layer.

use std::ops::Range;

/// Extra validation of a regex match. Checks never fail loudly: a check that
/// cannot decide rejects the match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Accept every regex match.
    None,
    /// The `secret` part must look like a generated token: enough entropy,
    /// no placeholder words (`EXAMPLE`, `xxxxxxxx`), no long single-character runs.
    Token,
    /// Like [`Check::Token`], and the text right after the match must not
    /// start with this (such as `.pub` after a key path).
    NotFollowedBy(&'static str),
    /// The `secret` part of a PEM block must hold a real key body: at least
    /// 64 base64 characters, not a `...` placeholder.
    PemBody,
    /// The match must not be followed by this (such as `.pub`); no token check.
    PathNotFollowedBy(&'static str),
    /// An `rm` invocation whose flags include recursive deletion.
    RecursiveRm,
    /// The match starts a path or a word: it is at the start of the view or
    /// follows whitespace, a quote, `=`, `:`, `/`, `\\`, `~`, `(`, `[` or `,`.
    /// (Patterns start with their literal so the regex can skip ahead; the
    /// boundary is checked here.)
    PathStart,
    /// Like [`Check::Token`], and the match does not follow a digit.
    TokenNotAfterDigit,
}

/// What a check sees: the whole view, the match and its `secret` group.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// The bytes the regex ran on.
    pub view: &'a [u8],
    /// The whole match.
    pub span: Range<usize>,
    /// The `secret` group, if the pattern has one and it matched.
    pub secret: Option<Range<usize>>,
    /// The `flags` group, if the pattern has one and it matched.
    pub flags: Option<Range<usize>>,
}

impl Check {
    /// Whether the check reads capture groups (`secret`, `flags`) rather
    /// than only the match span and its surroundings.
    pub fn needs_groups(self) -> bool {
        matches!(
            self,
            Check::Token
                | Check::NotFollowedBy(_)
                | Check::PemBody
                | Check::RecursiveRm
                | Check::TokenNotAfterDigit
        )
    }

    /// Whether the candidate passes.
    pub fn accepts(self, c: &Candidate<'_>) -> bool {
        let secret = c.secret.clone().unwrap_or_else(|| c.span.clone());
        let secret = c.view.get(secret).unwrap_or_default();
        match self {
            Check::None => true,
            Check::Token => looks_generated(secret),
            Check::NotFollowedBy(suffix) => {
                looks_generated(secret) && !followed_by(c.view, c.span.end, suffix)
            }
            Check::PathNotFollowedBy(suffix) => !followed_by(c.view, c.span.end, suffix),
            Check::PemBody => pem_body(secret),
            Check::PathStart => c.span.start == 0 || is_path_boundary(c.view[c.span.start - 1]),
            Check::TokenNotAfterDigit => {
                looks_generated(secret)
                    && (c.span.start == 0 || !c.view[c.span.start - 1].is_ascii_digit())
            }
            Check::RecursiveRm => {
                let flags = c
                    .flags
                    .clone()
                    .and_then(|r| c.view.get(r))
                    .unwrap_or_default();
                recursive_flags(flags)
            }
        }
    }
}

fn is_path_boundary(b: u8) -> bool {
    b.is_ascii_whitespace() || b"\"'=:/\\~([,`".contains(&b)
}

fn followed_by(view: &[u8], at: usize, suffix: &str) -> bool {
    view.get(at..)
        .is_some_and(|rest| rest.starts_with(suffix.as_bytes()))
}

/// Shannon entropy in bits per byte.
pub fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let len = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = f64::from(n) / len;
            -p * p.log2()
        })
        .sum()
}

/// Placeholder words that mark documentation examples, not live secrets.
const PLACEHOLDERS: &[&[u8]] = &[
    b"EXAMPLE",
    b"example",
    b"Example",
    b"XXXXXXXX",
    b"xxxxxxxx",
    b"REDACTED",
    b"redacted",
    b"PLACEHOLDER",
    b"placeholder",
    b"your_",
    b"YOUR_",
    b"your-",
    b"<your",
];

/// Whether `token` looks like a generated credential rather than a word,
/// a placeholder or a repeated character.
pub fn looks_generated(token: &[u8]) -> bool {
    if token.len() < 8 {
        return false;
    }
    if PLACEHOLDERS
        .iter()
        .any(|p| memchr::memmem::find(token, p).is_some())
    {
        return false;
    }
    let mut run = 1;
    for pair in token.windows(2) {
        run = if pair[0] == pair[1] { run + 1 } else { 1 };
        if run >= 6 {
            return false;
        }
    }
    // Random tokens over alphabets of 16 to 64 symbols reach well above this;
    // the threshold scales down for short tokens, whose entropy is capped by
    // their length.
    let threshold = (0.7 * (token.len() as f64).log2()).min(3.0);
    entropy(token) >= threshold
}

fn pem_body(body: &[u8]) -> bool {
    let base64 = body
        .iter()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
        .count();
    base64 >= 64 && memchr::memmem::find(body, b"...").is_none()
}

fn recursive_flags(flags: &[u8]) -> bool {
    flags
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .any(|flag| {
            if let Some(long) = flag.strip_prefix(b"--") {
                long == b"recursive" || long == b"no-preserve-root"
            } else if let Some(short) = flag.strip_prefix(b"-") {
                short.iter().any(|&c| c == b'r' || c == b'R')
            } else {
                false
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(token: &str, generated: bool) {
        assert_eq!(looks_generated(token.as_bytes()), generated, "{token:?}");
    }

    #[test]
    fn generated_tokens_and_not() {
        check("a8Fk2LpQ9zXc7VbN3mR5", true);
        check("IOSFODNN7EXAMPLE", false);
        check("xxxxxxxxxxxxxxxxxxxxxxxx", false);
        check("aaaaaaaaaaaaaaaaaaaaaaaaaaaa", false);
        check("your_api_key_goes_here_1234", false);
        check("short", false);
        check(
            "3f7a9c1e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a",
            true,
        );
    }

    #[test]
    fn recursive_rm_flags() {
        for (flags, expected) in [
            ("-rf ", true),
            ("-fr ", true),
            ("-R -f ", true),
            ("--recursive --force ", true),
            ("-f ", false),
            ("-i ", false),
            ("--no-preserve-root -f ", true),
        ] {
            assert_eq!(recursive_flags(flags.as_bytes()), expected, "{flags:?}");
        }
    }

    #[test]
    fn entropy_bounds() {
        assert_eq!(entropy(b""), 0.0);
        assert_eq!(entropy(b"aaaa"), 0.0);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
    }
}
