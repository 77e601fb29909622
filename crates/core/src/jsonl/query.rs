//! Filters stored findings and returns the newest first, up to a limit.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::path::Path;

use super::reader::FindingReader;
use crate::error::Error;
use crate::finding::{Direction, Finding, Severity, ThreatType};
use crate::timestamp::Timestamp;

/// Which findings to return. Every field that is set must match; the default
/// query matches everything and has no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindingQuery {
    /// Only findings at or after this time.
    pub since: Option<Timestamp>,
    /// Only findings strictly before this time.
    pub until: Option<Timestamp>,
    /// Only findings at least this severe.
    pub min_severity: Option<Severity>,
    /// Only findings of this threat type.
    pub threat_type: Option<ThreatType>,
    /// Only findings in this direction.
    pub direction: Option<Direction>,
    /// Only findings whose runtime is one of these. `None` means every
    /// runtime. A finding without a runtime never matches a list, so a
    /// caller restricted to its own runtime never sees unattributed findings.
    pub runtimes: Option<Vec<String>>,
    /// Return at most this many findings (the newest).
    pub limit: Option<usize>,
}

/// The result of running a [`FindingQuery`] over a log folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryReport {
    /// The matching findings, newest first, at most `limit` of them.
    pub findings: Vec<Finding>,
    /// How many lines matched before the limit was applied.
    pub matched: u64,
    /// Lines that could not be read as findings.
    pub skipped_lines: u64,
}

impl FindingQuery {
    /// Whether `finding` passes every filter (the limit aside).
    pub fn matches(&self, finding: &Finding) -> bool {
        self.since.is_none_or(|since| finding.timestamp >= since)
            && self.until.is_none_or(|until| finding.timestamp < until)
            && self.min_severity.is_none_or(|min| finding.severity >= min)
            && self.threat_type.is_none_or(|t| finding.threat_type == t)
            && self.direction.is_none_or(|d| finding.direction == d)
            && self.runtimes.as_ref().is_none_or(|runtimes| {
                finding
                    .runtime
                    .as_ref()
                    .is_some_and(|runtime| runtimes.contains(runtime))
            })
    }

    /// Filters `findings` (in the order they were written) and returns the
    /// matches newest first, at most `limit`. Equal timestamps keep the
    /// later-written finding first. Memory holds only `limit` findings.
    pub fn select(&self, findings: impl IntoIterator<Item = Finding>) -> Vec<Finding> {
        let mut newest = Newest::new(self.limit);
        for finding in findings {
            if self.matches(&finding) {
                newest.push(finding);
            }
        }
        newest.into_vec()
    }

    /// Runs the query over the log folder `dir` (see
    /// [`read_all`](super::read_all) for which files are read). A missing
    /// folder gives an empty report.
    pub fn run(&self, dir: &Path) -> Result<QueryReport, Error> {
        let mut reader = FindingReader::open(dir)?;
        let mut newest = Newest::new(self.limit);
        for finding in &mut reader {
            let finding = finding?;
            if self.matches(&finding) {
                newest.push(finding);
            }
        }
        Ok(QueryReport {
            matched: newest.seen,
            findings: newest.into_vec(),
            skipped_lines: reader.skipped(),
        })
    }
}

/// Keeps the `limit` newest findings pushed so far.
struct Newest {
    limit: Option<usize>,
    /// A min-heap: the oldest kept finding is on top, ready to be dropped.
    heap: BinaryHeap<Reverse<Ranked>>,
    seen: u64,
}

impl Newest {
    fn new(limit: Option<usize>) -> Newest {
        Newest {
            limit,
            heap: BinaryHeap::new(),
            seen: 0,
        }
    }

    fn push(&mut self, finding: Finding) {
        let seq = self.seen;
        self.seen += 1;
        if self.limit == Some(0) {
            return;
        }
        self.heap.push(Reverse(Ranked { seq, finding }));
        if self.limit.is_some_and(|limit| self.heap.len() > limit) {
            self.heap.pop();
        }
    }

    /// The kept findings, newest first.
    fn into_vec(self) -> Vec<Finding> {
        // Ascending `Reverse` order is descending `Ranked` order.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse(ranked)| ranked.finding)
            .collect()
    }
}

/// A finding ordered by timestamp, then by the order it was read.
struct Ranked {
    seq: u64,
    finding: Finding,
}

impl Ranked {
    fn rank(&self) -> (Timestamp, u64) {
        (self.finding.timestamp, self.seq)
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Ranked) -> bool {
        self.rank() == other.rank()
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Ranked) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::finding;
    use super::super::{FindingLog, Rotation};
    use super::*;

    /// Six findings, in write order. Snippets name them; timestamps are
    /// seconds, and `e` is written after `f` but is older.
    fn corpus() -> Vec<Finding> {
        let make = |snippet: &str,
                    secs: i64,
                    severity: Severity,
                    threat: ThreatType,
                    runtime: Option<&str>| {
            let mut f = finding(snippet, secs * 1_000);
            f.severity = severity;
            f.threat_type = threat;
            f.direction = match threat {
                ThreatType::Exfil => Direction::Outbound,
                ThreatType::Injection => Direction::Inbound,
            };
            f.runtime = runtime.map(str::to_owned);
            f
        };
        use Severity::{Critical, High, Low, Medium};
        use ThreatType::{Exfil, Injection};
        vec![
            make("a", 10, Low, Exfil, Some("main")),
            make("b", 20, Critical, Injection, Some("group-b")),
            make("c", 30, Medium, Exfil, Some("group-b")),
            make("d", 30, High, Injection, None),
            make("f", 50, Critical, Exfil, Some("main")),
            make("e", 40, High, Exfil, Some("group-c")),
        ]
    }

    #[track_caller]
    fn check(query: FindingQuery, expected: &[&str]) {
        let got = query.select(corpus());
        let got: Vec<&str> = got.iter().map(|f| f.snippet.as_str()).collect();
        assert_eq!(got, expected, "{query:?}");
    }

    fn at(secs: i64) -> Option<Timestamp> {
        Some(Timestamp::from_unix_millis(secs * 1_000))
    }

    fn runtimes(names: &[&str]) -> Option<Vec<String>> {
        Some(names.iter().map(|n| (*n).to_owned()).collect())
    }

    #[test]
    fn filters_and_orders_newest_first() {
        let q = FindingQuery::default;
        check(q(), &["f", "e", "d", "c", "b", "a"]);
        check(
            FindingQuery {
                limit: Some(2),
                ..q()
            },
            &["f", "e"],
        );
        check(
            FindingQuery {
                limit: Some(0),
                ..q()
            },
            &[],
        );
        check(
            FindingQuery {
                limit: Some(99),
                ..q()
            },
            &["f", "e", "d", "c", "b", "a"],
        );
        check(
            FindingQuery {
                since: at(30),
                ..q()
            },
            &["f", "e", "d", "c"],
        );
        check(
            FindingQuery {
                until: at(30),
                ..q()
            },
            &["b", "a"],
        );
        check(
            FindingQuery {
                since: at(20),
                until: at(40),
                ..q()
            },
            &["d", "c", "b"],
        );
        check(
            FindingQuery {
                min_severity: Some(Severity::High),
                ..q()
            },
            &["f", "e", "d", "b"],
        );
        check(
            FindingQuery {
                min_severity: Some(Severity::Low),
                ..q()
            },
            &["f", "e", "d", "c", "b", "a"],
        );
        check(
            FindingQuery {
                threat_type: Some(ThreatType::Injection),
                ..q()
            },
            &["d", "b"],
        );
        check(
            FindingQuery {
                direction: Some(Direction::Outbound),
                ..q()
            },
            &["f", "e", "c", "a"],
        );
        check(
            FindingQuery {
                runtimes: runtimes(&["main"]),
                ..q()
            },
            &["f", "a"],
        );
        check(
            FindingQuery {
                runtimes: runtimes(&["main", "group-b"]),
                ..q()
            },
            &["f", "c", "b", "a"],
        );
        check(
            FindingQuery {
                runtimes: runtimes(&[]),
                ..q()
            },
            &[],
        );
        check(
            FindingQuery {
                min_severity: Some(Severity::High),
                threat_type: Some(ThreatType::Exfil),
                limit: Some(1),
                ..q()
            },
            &["f"],
        );
    }

    #[test]
    fn runs_over_a_log_folder_with_rotation_and_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: 600,
            keep: 10,
        };
        let mut sink = FindingLog::open(tmp.path(), rotation).unwrap();
        for f in corpus() {
            sink.append(&f).unwrap();
        }
        drop(sink);
        assert!(super::super::rotated_path(tmp.path(), 2).exists());
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(super::super::rotated_path(tmp.path(), 1))
            .unwrap();
        std::io::Write::write_all(&mut file, b"garbage\n").unwrap();

        let query = FindingQuery {
            min_severity: Some(Severity::Medium),
            limit: Some(3),
            ..FindingQuery::default()
        };
        let report = query.run(tmp.path()).unwrap();
        let got: Vec<&str> = report.findings.iter().map(|f| f.snippet.as_str()).collect();
        assert_eq!(got, ["f", "e", "d"]);
        assert_eq!(report.matched, 5);
        assert_eq!(report.skipped_lines, 1);

        let empty = query.run(&tmp.path().join("absent")).unwrap();
        assert_eq!(empty, QueryReport::default());
    }
}
