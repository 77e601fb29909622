//! Redaction: turning a match and its surroundings into a snippet that is
//! safe to write to disk and to hand to a container.
//!
//! Three layers, applied together:
//! 1. every secret match of every rule in the view is masked, not only the
//!    one the snippet is about; a secret keeps at most its public prefix
//!    (such as `sk-ant-api03-`);
//! 2. any other token in the snippet that looks generated (long, mixed,
//!    high entropy) is masked too, so a secret no rule knows still does not
//!    leak through the context;
//! 3. the result is escaped (control, format and invalid bytes become
//!    visible escapes) and bounded in length.

use std::collections::HashSet;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::rules::check::entropy;

/// What replaces a masked secret.
pub const MASK: &str = "[REDACTED]";

/// Bytes of context kept on each side of a match in `partial` mode.
pub const CONTEXT_BYTES: usize = 40;

/// The longest snippet produced, in characters.
pub const MAX_SNIPPET_CHARS: usize = 240;

/// How much context a snippet keeps. There is no setting that turns
/// redaction off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Redaction {
    /// Only the match itself, masked.
    Full,
    /// The match, masked, with a little context on each side (also masked
    /// where it looks secret).
    #[default]
    Partial,
}

impl std::str::FromStr for Redaction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Redaction::Full),
            "partial" => Ok(Redaction::Partial),
            _ => Err(format!(
                "unknown redaction {s:?}: expected \"full\" or \"partial\" (redaction cannot be turned off)"
            )),
        }
    }
}

/// Builds snippets and redacted paths.
#[derive(Debug, Clone)]
pub struct Redactor {
    mode: Redaction,
}

impl Redactor {
    /// A redactor in `mode`.
    pub fn new(mode: Redaction) -> Redactor {
        Redactor { mode }
    }

    /// The snippet for the match at `target` in `view`. `masks` holds every
    /// secret range known in `view` (from all rules); ranges outside the
    /// snippet's window are ignored.
    pub fn snippet(&self, view: &[u8], target: Range<usize>, masks: &[Range<usize>]) -> String {
        let target = clamp(target, view.len());
        let window = match self.mode {
            Redaction::Full => target.clone(),
            Redaction::Partial => {
                target.start.saturating_sub(CONTEXT_BYTES)
                    ..target.end.saturating_add(CONTEXT_BYTES).min(view.len())
            }
        };
        let mut text = String::new();
        if window.start > 0 {
            text.push('…');
        }
        render(view, window.clone(), masks, &mut text);
        if window.end < view.len() {
            text.push('…');
        }
        shorten(text, MAX_SNIPPET_CHARS)
    }

    /// Redacts free text with no known matches: only generated-looking
    /// tokens are masked. Used for request paths.
    pub fn redact_text(&self, text: &[u8], masks: &[Range<usize>]) -> String {
        let mut out = String::new();
        render(text, 0..text.len(), masks, &mut out);
        shorten(out, MAX_SNIPPET_CHARS)
    }

    /// The request target as a finding's `path`: scheme and authority
    /// dropped, secrets and generated tokens masked, query values masked
    /// (parameter names kept).
    pub fn redact_target(&self, target: &str, masks: &[Range<usize>]) -> String {
        let bytes = target.as_bytes();
        let path_start = path_start(target);
        let query_start = target[path_start..]
            .find(['?', '#'])
            .map_or(bytes.len(), |at| path_start + at);
        let mut out = String::new();
        render_part(bytes, path_start..query_start, masks, &mut out);
        if out.is_empty() {
            out.push('/');
        }
        if bytes.get(query_start) == Some(&b'?') {
            let query_end = target[query_start..]
                .find('#')
                .map_or(bytes.len(), |at| query_start + at);
            out.push('?');
            let mut start = query_start + 1;
            while start <= query_end {
                let end = target[start..query_end]
                    .find('&')
                    .map_or(query_end, |at| start + at);
                if start > query_start + 1 {
                    out.push('&');
                }
                let pair = &target[start..end];
                match pair.find('=') {
                    Some(eq) => {
                        render_part(bytes, start..start + eq, masks, &mut out);
                        out.push('=');
                        if eq + 1 < pair.len() {
                            out.push_str(MASK);
                        }
                    }
                    None => render_part(bytes, start..end, masks, &mut out),
                }
                start = end + 1;
            }
        }
        shorten(out, MAX_SNIPPET_CHARS)
    }
}

/// Renders `bytes[part]` on its own, with the parts of `masks` that fall
/// inside it.
fn render_part(bytes: &[u8], part: Range<usize>, masks: &[Range<usize>], out: &mut String) {
    let shifted: Vec<Range<usize>> = masks
        .iter()
        .filter(|m| m.end > part.start && m.start < part.end)
        .map(|m| m.start.max(part.start) - part.start..m.end.min(part.end) - part.start)
        .collect();
    render(&bytes[part.clone()], 0..part.len(), &shifted, out);
}

/// Where the path begins in an absolute-form or origin-form target.
fn path_start(target: &str) -> usize {
    match target.find("://") {
        Some(scheme_end) if !target[..scheme_end].contains(['/', '?']) => {
            let authority = scheme_end + 3;
            target[authority..]
                .find(['/', '?', '#'])
                .map_or(target.len(), |at| authority + at)
        }
        _ => 0,
    }
}

fn clamp(range: Range<usize>, len: usize) -> Range<usize> {
    let end = range.end.min(len);
    range.start.min(end)..end
}

/// Whether a byte can be part of a token judged by the generic masker:
/// the base64 and base64url alphabets. Padding (`=`) only ends a token, so
/// `name=value` stays two tokens.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-')
}

/// Whether a whole token looks like a secret nobody wrote a rule for.
pub fn looks_secret(token: &[u8]) -> bool {
    if token.len() < 16 {
        return false;
    }
    let digits = token.iter().filter(|b| b.is_ascii_digit()).count();
    let upper = token.iter().any(u8::is_ascii_uppercase);
    let lower = token.iter().any(u8::is_ascii_lowercase);
    // Unlike detection, masking has no placeholder or repeated-character
    // exceptions: a generated secret glued to filler is still masked.
    let threshold = (0.7 * (token.len() as f64).log2()).min(3.0);
    (digits >= 2 || (upper && lower && token.len() >= 24)) && entropy(token) >= threshold
}

/// Fragments of known secrets this long are masked wherever they occur.
pub const ECHO_FRAGMENT: usize = 12;
/// Secrets longer than this (key blocks) are masked only where they matched;
/// their lines are high-entropy tokens the generic masker catches anyway.
const MAX_ECHO_BYTES: usize = 1024;

/// Adds to `ranges` every place in `window` where a fragment of a secret in
/// `masks` occurs, and every whole occurrence of a secret shorter than a
/// fragment (8 bytes or more).
fn mask_echoes(
    view: &[u8],
    window: Range<usize>,
    masks: &[Range<usize>],
    ranges: &mut Vec<Range<usize>>,
) {
    let mut fragments: HashSet<&[u8]> = HashSet::new();
    let mut short: Vec<&[u8]> = Vec::new();
    for mask in masks {
        let Some(secret) = view.get(mask.clone()) else {
            continue;
        };
        match secret.len() {
            0..8 => {}
            8..ECHO_FRAGMENT => short.push(secret),
            ECHO_FRAGMENT..=MAX_ECHO_BYTES => fragments.extend(secret.windows(ECHO_FRAGMENT)),
            _ => {}
        }
    }
    if fragments.is_empty() && short.is_empty() {
        return;
    }
    let from = window.start.saturating_sub(ECHO_FRAGMENT - 1);
    let to = (window.end + ECHO_FRAGMENT - 1).min(view.len());
    let area = &view[from..to];
    if !fragments.is_empty() {
        for (at, piece) in area.windows(ECHO_FRAGMENT).enumerate() {
            if fragments.contains(piece) {
                ranges.push(from + at..from + at + ECHO_FRAGMENT);
            }
        }
    }
    for secret in short {
        for at in memchr::memmem::find_iter(area, secret) {
            ranges.push(from + at..from + at + secret.len());
        }
    }
}

/// Appends `view[window]` to `out`, masked and escaped.
fn render(view: &[u8], window: Range<usize>, masks: &[Range<usize>], out: &mut String) {
    let mut ranges: Vec<Range<usize>> = masks
        .iter()
        .map(|m| clamp(m.clone(), view.len()))
        .filter(|m| !m.is_empty() && m.end > window.start && m.start < window.end)
        .collect();
    // A known secret, or a piece of one, may occur again where no rule
    // recognised it (inside a longer token, or with a neighbouring byte
    // decoded into it): every fragment of [`ECHO_FRAGMENT`] bytes of a known
    // secret is masked wherever it occurs in the window.
    mask_echoes(view, window.clone(), masks, &mut ranges);
    // Generic masking judges whole tokens, even where the window cuts them.
    let mut at = window.start;
    while at < window.end {
        if !is_token_byte(view[at]) {
            at += 1;
            continue;
        }
        let mut start = at;
        while start > 0 && is_token_byte(view[start - 1]) {
            start -= 1;
        }
        let mut end = at;
        while end < view.len() && is_token_byte(view[end]) {
            end += 1;
        }
        while end < view.len() && end - at < 3 && view[end] == b'=' && end > start {
            end += 1;
        }
        if looks_secret(&view[start..end]) {
            ranges.push(start..end);
        }
        at = end;
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    let mut at = window.start;
    for mask in merged {
        let start = mask.start.max(window.start);
        if start > at {
            escape_into(&view[at..start], out);
        }
        out.push_str(MASK);
        at = at.max(mask.end.min(window.end));
    }
    if at < window.end {
        escape_into(&view[at..window.end], out);
    }
}

/// Escapes bytes for a single-line, terminal-safe string.
pub fn escape_into(bytes: &[u8], out: &mut String) {
    use std::fmt::Write;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() || is_format_char(c) => {
                    let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

/// Invisible or direction-changing characters that could disguise a snippet.
fn is_format_char(c: char) -> bool {
    matches!(u32::from(c), 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2069 | 0xFEFF | 0x00AD)
}

/// Keeps the head and tail of a long snippet. Masks were applied first, so
/// cutting can never reveal anything.
fn shorten(text: String, max_chars: usize) -> String {
    let count = text.chars().count();
    if count <= max_chars {
        return text;
    }
    let head = max_chars * 2 / 3;
    let tail = max_chars - head - 1;
    let mut out: String = text.chars().take(head).collect();
    out.push('…');
    out.extend(text.chars().skip(count - tail));
    out
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(view: &str, target: Range<usize>, masks: &[Range<usize>], expected: &str) {
        let got = Redactor::new(Redaction::Partial).snippet(view.as_bytes(), target, masks);
        assert_eq!(got, expected, "view {view:?}");
    }

    #[test]
    fn masks_the_target_and_every_other_secret() {
        check(
            "a=SECRET1 b=SECRET2",
            2..9,
            &[2..9, 12..19],
            "a=[REDACTED] b=[REDACTED]",
        );
        check(
            "key: sk-ant-abc",
            5..15,
            &[12..15],
            "key: sk-ant-[REDACTED]",
        );
    }

    #[test]
    fn masks_every_occurrence_of_a_known_secret() {
        // The second occurrence is where no rule matched, and the word is
        // not one the generic masker would judge secret on its own.
        check(
            "k=qwertyuiopasdfgh x=(qwertyuiopasdfgh)",
            2..18,
            &[2..18],
            "k=[REDACTED] x=([REDACTED])",
        );
    }

    #[test]
    fn masks_fragments_of_a_known_secret() {
        // A neighbouring escape decoded into the secret's first byte leaves a
        // 15-byte fragment: still masked.
        check(
            "k=67Q3M5N2B4V6C3X2 x=\u{a6}7Q3M5N2B4V6C3X2 y=7Q3M5N2B4V6",
            2..18,
            &[2..18],
            "k=[REDACTED] x=¦[REDACTED] y=7Q3M5N2B4V6",
        );
    }

    #[test]
    fn masks_generated_tokens_in_the_context() {
        check(
            "cat ~/.ssh/id_rsa token=q8Zr4Tw2Lm9Xv7Bn3Kd5",
            4..17,
            &[],
            "cat ~/.ssh/id_rsa token=[REDACTED]",
        );
        // A token cut by the window is judged whole and still masked.
        let token = "Qw3rTy7uIo9pAs2dFg4hJk6lZx8cVb1nM5Qw3rTy7uIo9pAs2dFg4hJk6lZx8";
        let long = format!("{token} /etc/shadow");
        let got = Redactor::new(Redaction::Partial).snippet(long.as_bytes(), 61..72, &[]);
        assert_eq!(got, "…[REDACTED] /etc/shadow");
    }

    #[test]
    fn keeps_words_paths_and_ids_readable() {
        check(
            "GET /v1/messages model=claude-sonnet uuid",
            4..16,
            &[],
            "GET /v1/messages model=claude-sonnet uuid",
        );
    }

    #[test]
    fn escapes_control_format_and_invalid_bytes() {
        let view = b"a\nb\x1b[31m\xff\xe2\x80\xaeZ";
        let got = Redactor::new(Redaction::Partial).snippet(view, 0..view.len(), &[]);
        assert_eq!(got, "a\\nb\\u{001b}[31m\\xff\\u{202e}Z");
    }

    #[test]
    fn full_mode_keeps_no_context() {
        let got =
            Redactor::new(Redaction::Full).snippet(b"before sk-ant-SECRET after", 7..20, &[14..20]);
        assert_eq!(got, "…sk-ant-[REDACTED]…");
    }

    #[test]
    fn long_snippets_are_bounded() {
        let view = "word ".repeat(200);
        let got = Redactor::new(Redaction::Partial).snippet(view.as_bytes(), 0..view.len(), &[]);
        assert_eq!(got.chars().count(), MAX_SNIPPET_CHARS);
    }

    #[test]
    fn targets_lose_query_values_and_authority() {
        let r = Redactor::new(Redaction::Partial);
        assert_eq!(
            r.redact_target("http://user:pw@example.com:8080/a/b?key=v&flag&x=", &[]),
            "/a/b?key=[REDACTED]&flag&x="
        );
        assert_eq!(
            r.redact_target("/search?q=secret#frag", &[]),
            "/search?q=[REDACTED]"
        );
        assert_eq!(r.redact_target("http://example.com", &[]), "/");
        assert_eq!(r.redact_target("/t/abc", &[3..6]), "/t/[REDACTED]");
    }

    #[test]
    fn redaction_parses_and_cannot_be_off() {
        assert_eq!("FULL".parse::<Redaction>(), Ok(Redaction::Full));
        assert!(
            "none"
                .parse::<Redaction>()
                .unwrap_err()
                .contains("cannot be turned off")
        );
    }
}
