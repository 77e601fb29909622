//! Shared fixtures for tests that drive the guardian over real sockets on
//! loopback: a sample finding, a per-test CA, an HTTP/HTTPS upstream with scripted replies, a
//! chaining proxy that records the `Proxy-Authorization` it saw, a `curl`
//! runner, a per-test log capture, a per-thread panic count, clients that
//! reach an origin directly or through the guardian, and `/proc` readings of
//! a process, and a nested `cargo` that leaves the outer build's artifacts
//! alone. The benchmarks and `cargo xtask` use them too.
//!
//! Fixture failures panic: they are test set-up, not product code.

#![deny(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ca;
mod cargo;
mod chain;
pub mod client;
mod curl;
mod finding;
mod logs;
mod panics;
pub mod procfs;
mod upstream;

pub use ca::TestCa;
pub use cargo::nested_cargo;
pub use chain::ChainProxy;
pub use curl::{Curl, CurlOutput, finish as finish_curl};
pub use finding::sample_finding;
pub use logs::LogCapture;
pub use panics::PanicWatch;
pub use upstream::{
    ChannelBody, Reply, SEEN_KEPT, SeenRequest, SseSender, UpstreamServer, brotli_compress, gzip,
};
