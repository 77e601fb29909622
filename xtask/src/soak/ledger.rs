//! What the guardian recorded, read straight from every findings file
//! (current and rotated), and how it compares with what the load owed.
//!
//! The comparison follows the dedup contract in SPEC.md: the sum of
//! `count` over all lines equals the occurrences. On top of the sums it
//! checks the lines themselves: a value sent once (a unique key, a fresh
//! reverse-shell address) must be exactly one line with `count` 1, and a
//! repeated value may take at most a first line and a summary line per
//! dedup window.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::load::{FindingKey, Owed};
use super::mix::RULES;

/// One findings file.
#[derive(Debug, Clone)]
pub(crate) struct File {
    pub(crate) bytes: u64,
    pub(crate) lines: u64,
}

/// The lines and occurrences of one (rule, runtime, protocol).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lines {
    pub(crate) lines: u64,
    pub(crate) occurrences: u64,
}

/// What the log holds.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    pub(crate) files: Vec<File>,
    /// The highest `findings.jsonl.<n>`, 0 when nothing rotated.
    pub(crate) highest_rotation: usize,
    pub(crate) corrupt_lines: u64,
    /// Lines without the schema's fixed fields or with `count` below 1.
    pub(crate) malformed_lines: u64,
    pub(crate) by_key: BTreeMap<(String, String, String), Lines>,
    /// Per dedup key: lines and occurrences.
    subjects: HashMap<Subject, Lines>,
}

/// The dedup key of SPEC.md: rule, direction, destination, runtime, and
/// the fingerprint (or the snippet when there is none).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Subject {
    rule: String,
    direction: String,
    dest: String,
    runtime: String,
    value: String,
}

/// Reads every `findings.jsonl[.N]` in `dir`.
pub(crate) fn read(dir: &Path) -> Result<Recorded> {
    let mut recorded = Recorded::default();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let rotation = match name.strip_prefix("findings.jsonl") {
            Some("") => 0,
            Some(rest) => match rest.strip_prefix('.').and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => n,
                None => continue,
            },
            None => continue,
        };
        recorded.highest_rotation = recorded.highest_rotation.max(rotation);
        names.push((rotation, name));
    }
    names.sort_by_key(|(rotation, _)| std::cmp::Reverse(*rotation));
    for (_, name) in names {
        let path = dir.join(&name);
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut lines = 0;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            lines += 1;
            match serde_json::from_slice::<Value>(line) {
                Ok(value) => recorded.add(&value),
                Err(_) => recorded.corrupt_lines += 1,
            }
        }
        recorded.files.push(File {
            bytes: text.len() as u64,
            lines,
        });
    }
    Ok(recorded)
}

impl Recorded {
    fn add(&mut self, line: &Value) {
        let text = |field: &str| line[field].as_str().unwrap_or("").to_owned();
        let count = line["count"].as_u64().unwrap_or(0);
        if line["schema_version"] != "clawsec-traffic-finding/v1"
            || line["platform"] != "nanoclaw"
            || count == 0
        {
            self.malformed_lines += 1;
        }
        let count = count.max(1);
        let tally = self
            .by_key
            .entry((text("pattern"), text("runtime"), text("protocol")))
            .or_default();
        tally.lines += 1;
        tally.occurrences += count;
        let value = match line["fingerprint"].as_str() {
            Some(fingerprint) => fingerprint.to_owned(),
            None => format!("snippet:{}", text("snippet")),
        };
        let subject = self
            .subjects
            .entry(Subject {
                rule: text("pattern"),
                direction: text("direction"),
                dest: text("dest"),
                runtime: text("runtime"),
                value,
            })
            .or_default();
        subject.lines += 1;
        subject.occurrences += count;
    }

    pub(crate) fn lines(&self) -> u64 {
        self.files.iter().map(|f| f.lines).sum()
    }

    pub(crate) fn occurrences(&self) -> u64 {
        self.by_key.values().map(|l| l.occurrences).sum()
    }
}

/// One row of the comparison.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) rule: String,
    pub(crate) runtime: String,
    pub(crate) protocol: String,
    pub(crate) owed: Owed,
    pub(crate) recorded: Lines,
    /// Occurrences owed for sure but not recorded.
    pub(crate) missing: u64,
    /// Occurrences recorded beyond everything that could be owed.
    pub(crate) extra: u64,
}

/// The whole comparison.
#[derive(Debug, Clone, Default)]
pub(crate) struct Comparison {
    pub(crate) rows: Vec<Row>,
    /// Values sent once that show as more than one line or a count above 1.
    pub(crate) unique_repeated: u64,
    /// Repeated values with more lines than their windows allow.
    pub(crate) over_window: u64,
    /// The most lines any repeated value took.
    pub(crate) max_repeat_lines: u64,
    /// Dedup keys of repeated values.
    pub(crate) repeated_subjects: u64,
    /// Dedup keys of values sent once.
    pub(crate) unique_subjects: u64,
}

impl Comparison {
    pub(crate) fn missing(&self) -> u64 {
        self.rows.iter().map(|r| r.missing).sum()
    }

    pub(crate) fn extra(&self) -> u64 {
        self.rows.iter().map(|r| r.extra).sum()
    }
}

/// Compares what was owed with what was recorded. A repeated value may
/// take at most `max_lines_per_value` lines.
pub(crate) fn compare(
    owed: &BTreeMap<FindingKey, Owed>,
    recorded: &Recorded,
    max_lines_per_value: u64,
) -> Comparison {
    let mut keys: Vec<(String, String, String)> = owed
        .keys()
        .map(|(rule, runtime, protocol)| {
            (
                (*rule).to_owned(),
                (*runtime).to_owned(),
                (*protocol).to_owned(),
            )
        })
        .collect();
    keys.extend(recorded.by_key.keys().cloned());
    keys.sort();
    keys.dedup();
    let mut out = Comparison::default();
    for (rule, runtime, protocol) in keys {
        let owed = owed
            .iter()
            .find(|((r, rt, p), _)| *r == rule && *rt == runtime && *p == protocol)
            .map(|(_, owed)| *owed)
            .unwrap_or_default();
        let got = recorded
            .by_key
            .get(&(rule.clone(), runtime.clone(), protocol.clone()))
            .copied()
            .unwrap_or_default();
        out.rows.push(Row {
            missing: owed.certain.saturating_sub(got.occurrences),
            extra: got
                .occurrences
                .saturating_sub(owed.certain + owed.uncertain),
            rule,
            runtime,
            protocol,
            owed,
            recorded: got,
        });
    }
    for (subject, lines) in &recorded.subjects {
        let unique = RULES
            .iter()
            .find(|e| e.rule == subject.rule)
            .is_some_and(|e| e.unique);
        if unique {
            out.unique_subjects += 1;
            if lines.lines != 1 || lines.occurrences != 1 {
                out.unique_repeated += 1;
            }
        } else {
            out.repeated_subjects += 1;
            out.max_repeat_lines = out.max_repeat_lines.max(lines.lines);
            if lines.lines > max_lines_per_value {
                out.over_window += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(rule: &str, runtime: &str, fingerprint: &str, count: u64) -> String {
        serde_json::json!({
            "schema_version": "clawsec-traffic-finding/v1", "platform": "nanoclaw",
            "direction": "outbound", "protocol": "http", "threat_type": "EXFIL",
            "pattern": rule, "severity": "critical", "source": "127.0.0.1:1",
            "dest": "127.0.0.1:2", "snippet": "[REDACTED]", "timestamp": "2026-01-01T00:00:00.000Z",
            "runtime": runtime, "count": count, "fingerprint": fingerprint,
        })
        .to_string()
    }

    #[test]
    fn counts_every_file_and_checks_the_dedup_contract() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, lines: &[String]| {
            let mut text = lines.join("\n");
            text.push('\n');
            std::fs::write(dir.path().join(name), text).unwrap();
        };
        write(
            "findings.jsonl.2",
            &[
                line("ai_api_key", "plain", "a", 1),
                line("github_token", "plain", "t", 1),
            ],
        );
        write(
            "findings.jsonl.1",
            &[line("ai_api_key", "plain", "b", 1), "{torn".into()],
        );
        write(
            "findings.jsonl",
            &[
                line("github_token", "plain", "t", 7),
                line("github_token", "plain", "t", 1),
                // The same unique value twice: recorded twice.
                line("ai_api_key", "plain", "b", 1),
            ],
        );
        std::fs::write(dir.path().join("unrelated.txt"), "x").unwrap();
        let recorded = read(dir.path()).unwrap();
        assert_eq!(recorded.files.len(), 3);
        assert_eq!(recorded.highest_rotation, 2);
        assert_eq!(recorded.corrupt_lines, 1);
        assert_eq!(recorded.lines(), 7);
        assert_eq!(recorded.occurrences(), 12);

        let mut owed = BTreeMap::new();
        owed.insert(
            ("ai_api_key", "plain", "http"),
            Owed {
                certain: 4,
                uncertain: 0,
            },
        );
        owed.insert(
            ("github_token", "plain", "http"),
            Owed {
                certain: 8,
                uncertain: 1,
            },
        );
        owed.insert(
            ("ssh_key_path", "plain", "http"),
            Owed {
                certain: 0,
                uncertain: 2,
            },
        );
        let comparison = compare(&owed, &recorded, 2);
        let row = |rule: &str| comparison.rows.iter().find(|r| r.rule == rule).unwrap();
        assert_eq!((row("ai_api_key").missing, row("ai_api_key").extra), (1, 0));
        assert_eq!(
            (row("github_token").missing, row("github_token").extra),
            (0, 0)
        );
        assert_eq!(
            (row("ssh_key_path").missing, row("ssh_key_path").extra),
            (0, 0)
        );
        assert_eq!(comparison.unique_subjects, 2);
        assert_eq!(comparison.unique_repeated, 1);
        assert_eq!(comparison.max_repeat_lines, 3);
        assert_eq!(comparison.over_window, 1);

        owed.insert(
            ("github_token", "plain", "http"),
            Owed {
                certain: 5,
                uncertain: 1,
            },
        );
        assert_eq!(compare(&owed, &recorded, 3).extra(), 3);
        assert_eq!(compare(&owed, &recorded, 3).over_window, 0);
    }
}
