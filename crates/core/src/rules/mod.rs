//! The rule set: what the guardian looks for, as plain data.
//!
//! A [`Rule`] is one detector. Several rules may share a stable id (the
//! `pattern` field of a finding): `ai_api_key` has one rule per provider.
//! Adding a detector means adding one entry to [`exfil::RULES`] or
//! [`injection::RULES`], plus a positive and a negative case in that file's
//! tests, plus a line in SPEC.md (a test checks SPEC.md lists every id).
//!
//! How a rule matches:
//! 1. Its `keywords` feed one Aho-Corasick automaton shared by the whole set.
//!    Nothing else runs on bytes that contain no keyword.
//! 2. Around each keyword hit (`reach` bytes before and after), the rule's
//!    `pattern` regex runs. Regexes are compiled without Unicode and match
//!    bytes, so invalid UTF-8 is harmless.
//! 3. Its `check` runs on the regex match and may reject it (entropy,
//!    placeholders, context).
//!
//! A pattern may name a capture group `secret`: the part of the match that is
//! masked in snippets and fingerprinted. Text matched outside it is the
//! public prefix that snippets may show (such as `sk-ant-`). A second group
//! `secret2` is masked too (an AWS secret key next to its key id). A rule of
//! kind [`Kind::Secret`] without a `secret` group masks its whole match.

#[cfg(test)]
mod benign;
pub mod check;
pub mod exfil;
pub mod injection;

use crate::finding::{Direction, Severity, ThreatType};

pub use check::Check;

/// One detector.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The stable rule id reported as a finding's `pattern`.
    pub id: &'static str,
    /// Which detector of the id this is, such as `anthropic`.
    pub variant: &'static str,
    /// EXFIL rules inspect outbound traffic, INJECTION rules inbound.
    pub threat_type: ThreatType,
    /// Severity of a finding from this rule in the general case.
    pub severity: Severity,
    /// One line on what the rule catches, for docs and reports.
    pub description: &'static str,
    /// Literals of which at least one occurs in every match. Case-sensitive.
    pub keywords: &'static [&'static str],
    /// The regex, over bytes, without Unicode classes.
    pub pattern: &'static str,
    /// How far from a keyword hit a match may start and end.
    pub reach: Reach,
    /// Whether the match is a secret (masked) or an indicator (shown).
    pub kind: Kind,
    /// Extra validation of a regex match.
    pub check: Check,
    /// Hosts (and their subdomains) that legitimately receive this secret,
    /// such as `anthropic.com` for an Anthropic key. A match sent to one of
    /// them in a header or the URL is recorded at `low`.
    pub expected_hosts: &'static [&'static str],
}

impl Rule {
    /// The direction this rule inspects.
    pub fn direction(&self) -> Direction {
        match self.threat_type {
            ThreatType::Exfil => Direction::Outbound,
            ThreatType::Injection => Direction::Inbound,
        }
    }
}

impl Rule {
    /// This rule with another reach.
    pub const fn reaching(self, reach: Reach) -> Rule {
        Rule { reach, ..self }
    }

    /// This rule with another check.
    pub const fn checking(self, check: Check) -> Rule {
        Rule { check, ..self }
    }
}

/// How many bytes before a keyword's start and after its end a match may
/// extend. Bounds the regex work per keyword hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// Bytes before the keyword.
    pub before: usize,
    /// Bytes after the keyword.
    pub after: usize,
}

impl Reach {
    /// A reach of `before` and `after` bytes.
    pub const fn new(before: usize, after: usize) -> Reach {
        Reach { before, after }
    }
}

/// What a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A credential: masked in every snippet, only the public prefix shown.
    Secret,
    /// A path or a command shape: shown in snippets (the context around it
    /// is still masked for secrets).
    Indicator,
}

/// Every built-in rule, EXFIL first.
pub fn builtin() -> impl Iterator<Item = &'static Rule> {
    exfil::RULES.iter().chain(injection::RULES.iter())
}

/// The distinct stable rule ids of the built-in set, in table order.
pub fn builtin_ids() -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = Vec::new();
    for rule in builtin() {
        if !ids.contains(&rule.id) {
            ids.push(rule.id);
        }
    }
    ids
}

#[cfg(test)]
pub(crate) mod testing {
    //! The table-test helper shared by the rule files.

    use crate::engine::Engine;
    use crate::finding::{Direction, Severity};
    use crate::scan::{MessageMeta, ScanOutcome};

    /// Scans `body` in `direction` and returns (rule id, severity) pairs.
    pub(crate) fn scan(direction: Direction, body: &str) -> ScanOutcome {
        let engine = Engine::builtin();
        let mut scanner = engine.message(MessageMeta::new(
            direction,
            "127.0.0.1:1",
            "example.com:443",
        ));
        scanner.begin_body(None, None);
        scanner.feed(body.as_bytes());
        scanner.finish()
    }

    /// Asserts that scanning `body` yields exactly `expected` (a rule id, or
    /// `None` for no finding at medium or above).
    #[track_caller]
    pub(crate) fn check(direction: Direction, body: &str, expected: Option<&str>) {
        let outcome = scan(direction, body);
        let got: Vec<(String, Severity)> = outcome
            .findings
            .iter()
            .map(|f| (f.pattern.to_string(), f.severity))
            .collect();
        match expected {
            Some(id) => assert!(
                got.iter().any(|(p, _)| p == id),
                "expected {id} in {body:?}, got {got:?}"
            ),
            None => assert!(
                got.iter().all(|(_, s)| *s < Severity::Medium),
                "expected no finding in {body:?}, got {got:?}"
            ),
        }
    }
}

/// Renders the rule table that SPEC.md carries between its `rules:begin`
/// and `rules:end` markers.
pub fn spec_table() -> String {
    let mut out = String::from(
        "| id | variant | type | severity | expected hosts | catches |\n|---|---|---|---|---|---|\n",
    );
    for rule in builtin() {
        let hosts = if rule.expected_hosts.is_empty() {
            "-".to_owned()
        } else {
            rule.expected_hosts.join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            rule.id,
            rule.variant,
            rule.threat_type.as_str(),
            rule.severity.as_str(),
            hosts,
            rule.description.replace('|', "\\|"),
        ));
    }
    out
}

#[cfg(test)]
mod spec_tests {
    /// SPEC.md lists every rule exactly as the table says. Regenerate with
    /// `UPDATE_SPEC=1 cargo test -p traffic-guardian-core spec_lists_every_rule`.
    #[test]
    fn spec_lists_every_rule() {
        const BEGIN: &str = "<!-- rules:begin -->\n";
        const END: &str = "<!-- rules:end -->";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../SPEC.md");
        let spec = std::fs::read_to_string(&path).expect("SPEC.md is readable");
        let start = spec.find(BEGIN).expect("SPEC.md has a rules:begin marker") + BEGIN.len();
        let end = spec.find(END).expect("SPEC.md has a rules:end marker");
        let table = super::spec_table();
        if spec[start..end] != table {
            if std::env::var_os("UPDATE_SPEC").is_some() {
                let updated = format!("{}{}{}", &spec[..start], table, &spec[end..]);
                std::fs::write(&path, updated).expect("SPEC.md is writable");
            } else {
                panic!(
                    "SPEC.md's rule table is out of date; run \
                     UPDATE_SPEC=1 cargo test -p traffic-guardian-core spec_lists_every_rule"
                );
            }
        }
    }
}
