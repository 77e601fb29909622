//! Shared fixtures for tests that drive the guardian over real sockets on
//! loopback: a per-test CA, an HTTP/HTTPS upstream with scripted replies, a
//! chaining proxy that records the `Proxy-Authorization` it saw, a `curl`
//! runner, a per-test log capture, and a per-thread panic count.
//!
//! Fixture failures panic: they are test set-up, not product code.

#![deny(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ca;
mod chain;
mod curl;
mod logs;
mod panics;
mod upstream;

pub use ca::TestCa;
pub use chain::ChainProxy;
pub use curl::{Curl, CurlOutput, finish as finish_curl};
pub use logs::LogCapture;
pub use panics::PanicWatch;
pub use upstream::{
    ChannelBody, Reply, SeenRequest, SseSender, UpstreamServer, brotli_compress, gzip,
};
