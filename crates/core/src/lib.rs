//! Detection core of the NanoClaw traffic guardian.
//!
//! This crate owns the finding schema, the rule set, decoding, redaction,
//! dedup and JSONL storage. It does no networking and has no async runtime:
//! the proxy feeds it bytes, the host stores what it returns.
//!
//! The entry point for scanning is [`Engine`]: build it once, then open a
//! [`MessageScanner`] per HTTP message and feed it the message's parts.

#![deny(missing_docs)]

pub mod decode;
pub mod dedup;
pub mod engine;
pub mod error;
pub mod finding;
pub mod fingerprint;
pub mod jsonl;
pub mod offline;
pub mod redact;
pub mod report;
pub mod rules;
pub mod scan;
mod target;
pub mod timestamp;

pub use dedup::{Dedup, DedupConfig};
pub use engine::{
    DEFAULT_MAX_SCAN_BYTES, Engine, EngineConfig, MAX_SCAN_BYTES_LIMIT, MIN_SCAN_BYTES,
};
pub use error::Error;
pub use finding::{Direction, Finding, Protocol, RuleId, Severity, ThreatType};
pub use jsonl::{FindingLog, FindingQuery, FindingReader, QueryReport, ReadReport, Rotation};
pub use redact::{Redaction, Redactor};
pub use report::{format_markdown, format_table};
pub use scan::{MessageMeta, MessageScanner, ScanOutcome};
pub use timestamp::Timestamp;
