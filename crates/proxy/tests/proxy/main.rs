//! Integration tests: the guardian between a real `curl` (or a raw socket)
//! and a real upstream, all on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod chain;
mod connect;
mod fixtures;
mod http;
mod https;
mod limits;
mod logs;
mod shutdown;
