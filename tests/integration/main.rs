//! The integration test binary: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ca_cli;
mod config_cli;
#[cfg(target_os = "linux")]
mod crash;
mod findings_cli;
mod https_inspection;
mod ipc;
mod lifecycle;
mod mcp;
mod proxy;
mod real_clients;
mod scan_cli;
mod setup_cli;
