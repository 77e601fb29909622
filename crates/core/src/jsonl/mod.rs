//! Append-only JSONL storage of findings: the log writer that appends them and the reader that reads them back.
//!
//! # Layout
//!
//! All findings live in one folder (under `NANOCLAW_TRAFFIC_GUARDIAN_HOME`):
//!
//! ```text
//! <dir>/findings.jsonl      the current file, appended to
//! <dir>/findings.jsonl.1    the most recently rotated file
//! <dir>/findings.jsonl.2    older
//! ...
//! <dir>/findings.jsonl.<keep>  the oldest kept
//! ```
//!
//! Each line is one `clawsec-traffic-finding/v1` object followed by `\n`.
//! The folder is mode 0700 when the writer creates it, and the files are mode
//! 0600.
//!
//! [`FindingLog`] appends one line per write call and rotates by size.
//! [`FindingReader`] reads every file back, oldest first, and skips (and
//! counts) lines it cannot read, so a torn or tampered file never stops a
//! report. [`FindingQuery`] filters and orders what the reader yields.

mod query;
mod reader;
mod writer;

use std::path::{Path, PathBuf};

pub use query::{FindingQuery, QueryReport};
pub use reader::{FindingReader, MAX_LINE_BYTES, ReadReport, read_all};
pub use writer::{FindingLog, Rotation};

/// The name of the current findings file inside the log folder.
pub const FILE_NAME: &str = "findings.jsonl";

/// The path of the current findings file in `dir`.
pub fn current_path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The path of rotated file number `n` (1 is the newest) in `dir`.
pub fn rotated_path(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("{FILE_NAME}.{n}"))
}

#[cfg(test)]
mod tests {
    use crate::finding::{Finding, Protocol, Severity};
    use crate::timestamp::Timestamp;

    /// A finding whose snippet is `snippet`, made at `millis` after the epoch.
    pub(super) fn finding(snippet: &str, millis: i64) -> Finding {
        Finding {
            protocol: Protocol::Https,
            severity: Severity::High,
            source: "172.17.0.2:40000".into(),
            dest: "api.example.com:443".into(),
            snippet: snippet.into(),
            timestamp: Timestamp::from_unix_millis(millis),
            runtime: Some("main".into()),
            ..crate::finding::sample()
        }
    }
}
