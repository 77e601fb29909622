//! Host services of the NanoClaw traffic guardian.
//!
//! This crate owns everything that happens on the host around the proxy:
//! the config and its checks, the state folder, the CA (created, kept
//! private, exported as public trust files), the findings pipeline (dedup,
//! JSONL, counters, survival of log failures), the service lifecycle
//! (single-instance lock, control socket, background start and stop), and
//! the operator's setup text.
//!
//! Its API is what the `traffic-guardian` binary uses, what the host-side
//! security suite embeds, and what the IPC watcher calls:
//!
//! - [`config::load`] and [`check_config`]: read and check a config;
//! - [`Guardian::start`], [`Guardian::status`], [`Guardian::findings`],
//!   [`Guardian::shutdown`]: run one;
//! - [`offline_status`]: what the disk says when none runs;
//! - [`lifecycle`]: start/stop a background service;
//! - [`ca`], [`setup`]: operator commands.
//!
//! It never writes outside the home, log and trust folders, never touches a
//! system trust store, and never puts a secret, the CA key or raw traffic
//! in a [`Status`] or [`ConfigReport`].

#![deny(missing_docs)]

pub mod ca;
pub mod config;
pub mod control;
pub mod error;
pub mod findings_pipeline;
pub mod ipc_answers;
pub mod lifecycle;
pub mod paths;
pub mod service;
pub mod setup;
pub mod status;
mod traffic;

pub use config::{Config, ConfigReport, Env, Problem, ProblemSeverity, check_config};
pub use error::Error;
pub use paths::StatePaths;
pub use service::{
    Guardian, GuardianHandle, StartOptions, current_status, offline_status, run_until_stopped,
};
pub use status::Status;
pub use traffic_guardian_core::{FindingQuery, QueryReport};
