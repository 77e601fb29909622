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
pub mod error;
pub mod finding;
pub mod jsonl;
pub mod report;
pub mod timestamp;

pub use dedup::{Dedup, DedupConfig};
pub use error::Error;
pub use finding::{Direction, Finding, Protocol, RuleId, Severity, ThreatType};
pub use jsonl::{FindingQuery, FindingReader, FindingSink, QueryReport, ReadReport, Rotation};
pub use report::{format_markdown, format_table};
pub use timestamp::Timestamp;
