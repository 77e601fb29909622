//! The integration test binary: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ipc;
mod mcp;
mod proxy;
mod scan_cli;
