//! The compiled rule set: one Aho-Corasick prefilter for every keyword, and
//! per-rule regexes that run only in windows around keyword hits.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

use crate::error::Error;
use crate::finding::Direction;
use crate::fingerprint::Fingerprinter;
use crate::redact::{Redaction, Redactor};
use crate::rules::check::Candidate;
use crate::rules::{self, Kind, Rule};
use crate::scan::{MessageMeta, MessageScanner};

/// The smallest per-message scan budget accepted.
pub const MIN_SCAN_BYTES: usize = 4 * 1024;
/// The per-message scan budget used when none is configured.
pub const DEFAULT_MAX_SCAN_BYTES: usize = 1024 * 1024;
/// The largest per-message scan budget accepted.
pub const MAX_SCAN_BYTES_LIMIT: usize = 64 * 1024 * 1024;
/// The decompression ratio above which decoding stops, by default.
pub const DEFAULT_MAX_DECODE_RATIO: u64 = 100;

/// How an [`Engine`] scans and reports.
#[derive(Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Body bytes scanned per message, after decoding. Bytes beyond are
    /// counted as unscanned and pass through untouched.
    pub max_scan_bytes: usize,
    /// How much context snippets keep. Redaction itself is always on.
    pub redaction: Redaction,
    /// Key for finding fingerprints; `None` leaves them out.
    pub fingerprint_key: Option<Vec<u8>>,
    /// Largest decompressed-to-compressed ratio accepted before decoding of
    /// a body stops (decompression-bomb guard).
    pub max_decode_ratio: u64,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("max_scan_bytes", &self.max_scan_bytes)
            .field("redaction", &self.redaction)
            .field(
                "fingerprint_key",
                &self.fingerprint_key.as_ref().map(|_| "<set>"),
            )
            .field("max_decode_ratio", &self.max_decode_ratio)
            .finish()
    }
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            max_scan_bytes: DEFAULT_MAX_SCAN_BYTES,
            redaction: Redaction::Partial,
            fingerprint_key: None,
            max_decode_ratio: DEFAULT_MAX_DECODE_RATIO,
        }
    }
}

impl EngineConfig {
    /// Checks every setting against its bounds.
    pub fn validate(&self) -> Result<(), Error> {
        if !(MIN_SCAN_BYTES..=MAX_SCAN_BYTES_LIMIT).contains(&self.max_scan_bytes) {
            return Err(Error::InvalidSetting {
                field: "max_scan_bytes",
                reason: format!(
                    "{} is outside {MIN_SCAN_BYTES}..={MAX_SCAN_BYTES_LIMIT}",
                    self.max_scan_bytes
                ),
            });
        }
        if self.max_decode_ratio < 2 {
            return Err(Error::InvalidSetting {
                field: "max_decode_ratio",
                reason: format!("{} is below 2", self.max_decode_ratio),
            });
        }
        if let Some(key) = &self.fingerprint_key
            && key.len() < Fingerprinter::MIN_KEY_LEN
        {
            return Err(Error::InvalidSetting {
                field: "fingerprint_key",
                reason: format!("shorter than {} bytes", Fingerprinter::MIN_KEY_LEN),
            });
        }
        Ok(())
    }
}

/// The compiled rule set plus the settings every scan shares. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.inner.rules.len())
            .field("keywords", &self.inner.keywords.len())
            .field("config", &self.inner.config)
            .finish()
    }
}

struct Inner {
    config: EngineConfig,
    rules: Vec<Compiled>,
    /// `None` only for the rule-less fallback engine.
    prefilter: Option<AhoCorasick>,
    keywords: Vec<&'static str>,
    /// For each keyword (by prefilter pattern id), the rules it may start.
    keyword_rules: Vec<Vec<usize>>,
    redactor: Redactor,
    fingerprinter: Option<Fingerprinter>,
}

struct Compiled {
    rule: &'static Rule,
    regex: Regex,
}

/// A match reported by [`Engine::matches`].
#[derive(Debug, Clone)]
pub struct Match {
    /// The rule that matched.
    pub rule: &'static Rule,
    /// The whole match.
    pub span: Range<usize>,
    /// The parts every snippet masks; empty for indicators.
    pub masks: Vec<Range<usize>>,
}

/// A match of one rule in one view, after its check passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleMatch {
    /// Index of the rule in the engine.
    pub(crate) rule: usize,
    /// The whole match.
    pub(crate) span: Range<usize>,
    /// The parts to mask in snippets: empty for indicators.
    pub(crate) masks: Vec<Range<usize>>,
    /// The part that identifies the match for fingerprints and dedup.
    pub(crate) value: Range<usize>,
}

impl Engine {
    /// Compiles the built-in rule set with `config`.
    pub fn new(config: EngineConfig) -> Result<Engine, Error> {
        config.validate()?;
        Engine::with_rules(config, rules::builtin())
    }

    /// The built-in rule set with the default configuration, compiled once
    /// per process.
    pub fn builtin() -> Engine {
        static BUILTIN: OnceLock<Engine> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                // The built-in rules are tested to compile, so this cannot
                // fail; fall back to an engine without rules rather than panic.
                Engine::new(EngineConfig::default())
                    .unwrap_or_else(|_| Engine::without_rules(EngineConfig::default()))
            })
            .clone()
    }

    /// An engine that finds nothing: the fallback that keeps `builtin`
    /// infallible.
    fn without_rules(config: EngineConfig) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                redactor: Redactor::new(config.redaction),
                config,
                rules: Vec::new(),
                prefilter: None,
                keywords: Vec::new(),
                keyword_rules: Vec::new(),
                fingerprinter: None,
            }),
        }
    }

    /// Compiles an explicit rule list (tests and benchmarks use subsets).
    pub fn with_rules<'a>(
        config: EngineConfig,
        rules: impl IntoIterator<Item = &'a Rule>,
    ) -> Result<Engine, Error>
    where
        'a: 'static,
    {
        let mut compiled = Vec::new();
        let mut keywords: Vec<&'static str> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        for rule in rules {
            let index = compiled.len();
            let regex = Regex::builder()
                .syntax(syntax::Config::new().unicode(false).utf8(false))
                .build(rule.pattern)
                .map_err(|err| Error::InvalidSetting {
                    field: "rule pattern",
                    reason: format!("{}/{}: {err}", rule.id, rule.variant),
                })?;
            for keyword in rule.keywords {
                match keywords.iter().position(|k| k == keyword) {
                    Some(at) => keyword_rules[at].push(index),
                    None => {
                        keywords.push(keyword);
                        keyword_rules.push(vec![index]);
                    }
                }
            }
            compiled.push(Compiled { rule, regex });
        }
        let prefilter = Some(prefilter(&keywords)?);
        let redactor = Redactor::new(config.redaction);
        let fingerprinter = config
            .fingerprint_key
            .as_deref()
            .and_then(Fingerprinter::new);
        Ok(Engine {
            inner: Arc::new(Inner {
                config,
                rules: compiled,
                prefilter,
                keywords,
                keyword_rules,
                redactor,
                fingerprinter,
            }),
        })
    }

    /// The configuration this engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Opens a scanner for one HTTP message.
    pub fn message(&self, meta: MessageMeta) -> MessageScanner {
        MessageScanner::new(self.clone(), meta)
    }

    /// The keyword list behind the prefilter, in pattern-id order.
    pub fn keywords(&self) -> &[&'static str] {
        &self.inner.keywords
    }

    /// Every rule match in one view, without decoding, segmenting or
    /// findings: what matched where, for tests, fuzzing and tooling. The
    /// spans index `view`.
    pub fn matches(&self, view: &[u8], direction: Direction) -> Vec<Match> {
        let mut windows = Vec::new();
        let mut found = Vec::new();
        self.find(view, direction, &mut windows, &mut found);
        found
            .into_iter()
            .map(|m| Match {
                rule: self.rule(m.rule),
                span: m.span,
                masks: m.masks,
            })
            .collect()
    }

    pub(crate) fn rule(&self, index: usize) -> &'static Rule {
        self.inner.rules[index].rule
    }

    pub(crate) fn redactor(&self) -> &Redactor {
        &self.inner.redactor
    }

    pub(crate) fn fingerprinter(&self) -> Option<&Fingerprinter> {
        self.inner.fingerprinter.as_ref()
    }

    /// Finds every rule match in `view` for rules of `direction`, appending
    /// them to `out` ordered by start. Overlapping matches of the same rule
    /// id keep the earliest (then longest) one.
    pub(crate) fn find(
        &self,
        view: &[u8],
        direction: Direction,
        scratch: &mut Vec<(usize, usize, usize)>,
        out: &mut Vec<RuleMatch>,
    ) {
        let inner = &*self.inner;
        scratch.clear();
        let Some(prefilter) = &inner.prefilter else {
            return;
        };
        for hit in prefilter.find_iter(view) {
            for &index in &inner.keyword_rules[hit.pattern().as_usize()] {
                let rule = inner.rules[index].rule;
                if rule.direction() != direction {
                    continue;
                }
                let start = hit.start().saturating_sub(rule.reach.before);
                let end = hit.end().saturating_add(rule.reach.after).min(view.len());
                scratch.push((index, start, end));
            }
        }
        if scratch.is_empty() {
            return;
        }
        scratch.sort_unstable();
        let first_new = out.len();
        let mut i = 0;
        while i < scratch.len() {
            let (index, start, mut end) = scratch[i];
            i += 1;
            while i < scratch.len() && scratch[i].0 == index && scratch[i].1 <= end {
                end = end.max(scratch[i].2);
                i += 1;
            }
            self.run_rule(index, view, start..end, out);
        }
        resolve_overlaps(self, &mut out[first_new..]);
        let mut keep = first_new;
        for j in first_new..out.len() {
            if !out[j].span.is_empty() {
                out.swap(keep, j);
                keep += 1;
            }
        }
        out.truncate(keep);
        out[first_new..].sort_by_key(|m| (m.span.start, m.rule));
    }

    fn run_rule(&self, index: usize, view: &[u8], window: Range<usize>, out: &mut Vec<RuleMatch>) {
        let compiled = &self.inner.rules[index];
        let rule = compiled.rule;
        let needs_groups = rule.kind == Kind::Secret || rule.check.needs_groups();
        // The lazy DFA finds match spans quickly. Capture groups need a
        // slower engine, so they are resolved only for rules that use them,
        // on a slice just around the match (one byte of context each side
        // for look-around), where the bounded backtracker applies.
        // (`find_iter` over a ranged input is an order of magnitude slower
        // than repeated `search`, measured with benches/scan.rs.)
        // Searching a small slice (plus one byte of context on each side
        // for look-around) is several times faster than a range of the
        // whole view.
        let mut caps = None;
        let base = window.start.saturating_sub(1);
        let hay = &view[base..(window.end + 1).min(view.len())];
        let local_end = window.end - base;
        let mut input = Input::new(hay).range(window.start - base..local_end);
        while let Some(found) = compiled.regex.search(&input) {
            let local = found.range();
            let next = local.end.max(local.start + 1);
            if next > local_end {
                break;
            }
            input.set_start(next);
            if local.is_empty() {
                continue;
            }
            let span = local.start + base..local.end + base;
            let (mut secret, mut secret2, mut flags) = (None, None, None);
            if needs_groups {
                let caps = caps.get_or_insert_with(|| compiled.regex.create_captures());
                let from = span.start.saturating_sub(1);
                let to = (span.end + 1).min(view.len());
                compiled.regex.search_captures(
                    &Input::new(&view[from..to])
                        .range(span.start - from..span.end - from)
                        .anchored(Anchored::Yes),
                    caps,
                );
                let group = |name: &str| {
                    caps.get_group_by_name(name)
                        .map(|s| s.start + from..s.end + from)
                };
                secret = group("secret");
                secret2 = group("secret2");
                flags = group("flags");
            }
            let candidate = Candidate {
                view,
                span: span.clone(),
                secret: secret.clone(),
                flags,
            };
            if !rule.check.accepts(&candidate) {
                continue;
            }
            let (masks, value) = match rule.kind {
                Kind::Indicator => (Vec::new(), span.clone()),
                Kind::Secret => {
                    let primary = secret.unwrap_or_else(|| span.clone());
                    let mut masks = vec![primary.clone()];
                    masks.extend(secret2);
                    (masks, primary)
                }
            };
            out.push(RuleMatch {
                rule: index,
                span,
                masks,
                value,
            });
        }
    }
}

/// Among matches of the same rule id that overlap, keeps the earliest and
/// then the longest; the others get an empty span and are dropped by the caller.
fn resolve_overlaps(engine: &Engine, matches: &mut [RuleMatch]) {
    matches.sort_by(|a, b| {
        engine
            .rule(a.rule)
            .id
            .cmp(engine.rule(b.rule).id)
            .then(a.span.start.cmp(&b.span.start))
            .then(b.span.end.cmp(&a.span.end))
    });
    let mut last: Option<(&'static str, usize)> = None;
    for m in matches.iter_mut() {
        let id = engine.rule(m.rule).id;
        match last {
            Some((last_id, last_end)) if last_id == id && m.span.start < last_end => {
                m.span = 0..0;
            }
            _ => last = Some((id, m.span.end)),
        }
    }
}

/// Builds the one prefilter automaton over every keyword. The benchmark's
/// baseline builds the same automaton, so this is the only place that says how.
pub fn prefilter(keywords: &[&str]) -> Result<AhoCorasick, Error> {
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::LeftmostFirst)
        .build(keywords)
        .map_err(|err| Error::InvalidSetting {
            field: "rule keywords",
            reason: err.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_rule_compiles() {
        let engine = Engine::new(EngineConfig::default()).unwrap();
        assert_eq!(engine.inner.rules.len(), rules::builtin().count());
        assert!(!engine.keywords().is_empty());
    }

    #[test]
    fn config_bounds_are_enforced() {
        let mut config = EngineConfig {
            max_scan_bytes: MIN_SCAN_BYTES - 1,
            ..EngineConfig::default()
        };
        assert!(config.validate().is_err());
        config.max_scan_bytes = MAX_SCAN_BYTES_LIMIT + 1;
        assert!(config.validate().is_err());
        config.max_scan_bytes = MAX_SCAN_BYTES_LIMIT;
        assert!(config.validate().is_ok());
        config.fingerprint_key = Some(b"short".to_vec());
        assert!(config.validate().is_err());
    }

    #[test]
    fn debug_never_prints_the_fingerprint_key() {
        let config = EngineConfig {
            fingerprint_key: Some(b"canary-fingerprint-key".to_vec()),
            ..EngineConfig::default()
        };
        assert!(!format!("{config:?}").contains("canary"));
    }
}
