//! Redaction that knows the shape of a request target (a URL, or a path
//! and query): the `path` of findings, and the extra masks of snippets
//! taken from a URL.
//!
//! Rules match on decoded views, but a finding's `path` is rendered from
//! the raw target, whose percent-escapes hide a secret from both the
//! rules' masks and the generic masker. So every piece of the target that
//! holds an escape is decoded on its own and masked whole when its decoded
//! form holds a secret. URL snippets also mask the userinfo and every
//! query value other than the one the finding is about: they are
//! credentials or unrelated data far more often than evidence.

use std::ops::Range;

use crate::decode::text::normalize;
use crate::engine::{Engine, RuleMatch};
use crate::finding::Direction;
use crate::redact::looks_secret;

/// Bytes that separate the pieces of a target judged one by one.
fn is_separator(b: u8) -> bool {
    matches!(b, b'/' | b'?' | b'&' | b'=' | b'#' | b';' | b':' | b'@')
}

/// `target` as a finding's `path`: scheme, authority and userinfo dropped,
/// query values masked, and every secret masked, also where it is
/// percent-encoded. Secrets are outbound rules, so those are the ones
/// looked for, whatever the direction of the message the path goes with.
pub(crate) fn redacted_path(engine: &Engine, target: &str) -> String {
    let bytes = target.as_bytes();
    let mut windows = Vec::new();
    let mut matches: Vec<RuleMatch> = Vec::new();
    engine.find(bytes, Direction::Outbound, &mut windows, &mut matches);
    let mut masks: Vec<Range<usize>> = matches
        .iter()
        .flat_map(|m| m.masks.iter().cloned())
        .collect();
    let mut decoded = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let end = bytes[start..]
            .iter()
            .position(|&b| is_separator(b))
            .map_or(bytes.len(), |at| start + at);
        let piece = &bytes[start..end];
        if piece.contains(&b'%') && normalize(piece, &mut decoded) {
            matches.clear();
            engine.find(&decoded, Direction::Outbound, &mut windows, &mut matches);
            let secret = matches.iter().any(|m| !m.masks.is_empty())
                || decoded.split(|&b| !is_token_byte(b)).any(looks_secret);
            if secret {
                masks.push(start..end);
            }
        }
        start = end + 1;
    }
    engine.redactor().redact_target(target, &masks)
}

/// The token alphabet of the generic masker, plus the bytes a decoded
/// piece may join tokens with.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-')
}

/// Masks for a snippet of the URL `view`: its userinfo, and every query
/// value that does not overlap `keep` (the finding's own match, which its
/// rule masks or shows as it should).
pub(crate) fn url_context_masks(view: &[u8], keep: &Range<usize>) -> Vec<Range<usize>> {
    let mut masks = Vec::new();
    let overlaps = |r: &Range<usize>| r.start < keep.end && keep.start < r.end;
    let authority_start = find(view, b"://").map_or(0, |at| at + 3);
    let path_start = view[authority_start..]
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .map_or(view.len(), |at| authority_start + at);
    if authority_start > 0
        && let Some(at) = view[authority_start..path_start]
            .iter()
            .rposition(|&b| b == b'@')
    {
        // The userinfo is always masked: it is a credential by definition.
        masks.push(authority_start..authority_start + at);
    }
    let Some(query) = view[path_start..]
        .iter()
        .position(|&b| b == b'?')
        .map(|at| path_start + at + 1)
    else {
        return masks;
    };
    let query_end = view[query..]
        .iter()
        .position(|&b| b == b'#')
        .map_or(view.len(), |at| query + at);
    let mut start = query;
    while start < query_end {
        let end = view[start..query_end]
            .iter()
            .position(|&b| b == b'&')
            .map_or(query_end, |at| start + at);
        if let Some(eq) = view[start..end].iter().position(|&b| b == b'=') {
            let value = start + eq + 1..end;
            if !value.is_empty() && !overlaps(&value) {
                masks.push(value);
            }
        }
        start = end + 1;
    }
    masks
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;

    fn path(target: &str) -> String {
        redacted_path(&Engine::builtin(), target)
    }

    #[test]
    fn a_percent_encoded_secret_in_the_path_is_masked() {
        let key = "sk-ant-api03-Zq8Xw2Lm4Nv6Bc1Dr3Ft5Gy7Hu9Jk0LpQaWsEdRfTgYhUjIkOlPzXcVbNm1234";
        let encoded: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
        let out = path(&format!("http://x.example/upload/{encoded}/done"));
        assert_eq!(out, "/upload/[REDACTED]/done");
    }

    #[test]
    fn a_generated_token_with_encoded_slashes_is_masked() {
        let out = path("/v1/store/wJalrXUtnFEMI%2FK7MDENG%2FbPxRfiCYEXAMPLEKEY?x=1");
        assert_eq!(out, "/v1/store/[REDACTED]?x=[REDACTED]");
    }

    #[test]
    fn ordinary_escapes_stay_readable() {
        assert_eq!(path("/docs/hello%20world.md"), "/docs/hello%20world.md");
    }

    #[test]
    fn a_secret_as_a_query_name_is_masked() {
        let key = "SG.abcdefGHIJKLmnopQRSTuv.0123456789abcdefghijABCDEFGHIJ0123456789xyz";
        let out = path(&format!("/v3/mail?{key}"));
        assert!(!out.contains("abcdefGHIJKL"), "{out}");
    }

    #[test]
    fn url_snippets_mask_userinfo_and_other_query_values() {
        let url = b"http://admin:hunter2pass@internal.example/x?password=hunter2pass&k=KEY&q=ok";
        let keep = find(url, b"KEY").unwrap()..find(url, b"KEY").unwrap() + 3;
        let masks = url_context_masks(url, &keep);
        let masked: Vec<&[u8]> = masks.iter().map(|r| &url[r.clone()]).collect();
        assert_eq!(
            masked,
            [&b"admin:hunter2pass"[..], b"hunter2pass", b"ok"],
            "{masks:?}"
        );
    }

    #[test]
    fn paths_without_a_query_or_userinfo_get_no_context_masks() {
        assert!(url_context_masks(b"/just/a/path", &(0..1)).is_empty());
        assert!(url_context_masks(b"https://h.example/p", &(0..1)).is_empty());
    }
}
