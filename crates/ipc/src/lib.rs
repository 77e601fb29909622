//! The IPC channel between agent containers and the traffic guardian on the
//! host.
//!
//! A container asks one of three questions (status, findings, check-config)
//! by dropping a task file into its IPC folder; the host's [`Watcher`]
//! answers with a result file next to it. This crate owns:
//!
//! - the wire format ([`protocol`]): versioned JSON tasks and results;
//! - the container side ([`Client`]): writes a task atomically and waits for
//!   the result;
//! - the host side ([`Watcher`]): finds tasks in every group folder, refuses
//!   anything hostile, asks the host's [`TaskHandler`] and enforces
//!   authorization on its answer.
//!
//! No raw traffic crosses this crate: findings are redacted before they are
//! stored, and the watcher returns only what the handler gives it, filtered.
//! SPEC.md (section "IPC") is the exact wire format.

#![deny(missing_docs)]

pub mod client;
pub mod error;
mod fs_safety;
pub mod group;
pub mod handler;
pub mod protocol;
mod quarantine;
pub mod rate_limit;
pub mod watcher;

pub use client::{Client, ClientConfig};
pub use error::Error;
pub use group::{GroupMap, GroupName, MAIN_GROUP};
pub use handler::{Caller, HandlerError, TaskHandler, dispatch};
pub use protocol::{
    CheckConfigData, ConfigProblem, Counts, DegradedState, ErrorBody, ErrorCode, FindingsData,
    FindingsParams, PROTOCOL_VERSION, ProblemLevel, Request, RequestId, Response, RuntimeStatus,
    StatusData, Task, TaskType,
};
pub use rate_limit::RateLimit;
pub use watcher::{ScanReport, Watcher, WatcherConfig, WatcherHandle};
