//! Counters the running proxy keeps, and their snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the proxy's counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Client connections open now.
    pub connections_open: u64,
    /// Client connections accepted since start.
    pub connections_total: u64,
    /// Client connections refused over `max_connections`.
    pub connections_refused: u64,
    /// HTTP requests handled (plain and inspected, CONNECT included).
    pub requests: u64,
    /// Flows tunnelled without decryption.
    pub flows_tunnelled: u64,
    /// Flows inspected (plain HTTP and decrypted HTTPS).
    pub flows_inspected: u64,
    /// Bytes from clients to servers.
    pub bytes_out: u64,
    /// Bytes from servers to clients.
    pub bytes_in: u64,
    /// Body bytes scanned.
    pub scanned_bytes: u64,
    /// Body bytes that passed unscanned.
    pub unscanned_bytes: u64,
    /// Findings sent to the sink.
    pub findings: u64,
    /// Requests that failed upstream (502/504).
    pub upstream_errors: u64,
    /// Requests refused as the client's fault (400/403/407).
    pub client_errors: u64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connections_open: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) flows_tunnelled: AtomicU64,
    pub(crate) flows_inspected: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) scanned_bytes: AtomicU64,
    pub(crate) unscanned_bytes: AtomicU64,
    pub(crate) findings: AtomicU64,
    pub(crate) upstream_errors: AtomicU64,
    pub(crate) client_errors: AtomicU64,
}

/// Adds to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    pub(crate) fn snapshot(&self) -> ProxyStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProxyStats {
            connections_open: get(&self.connections_open),
            connections_total: get(&self.connections_total),
            connections_refused: get(&self.connections_refused),
            requests: get(&self.requests),
            flows_tunnelled: get(&self.flows_tunnelled),
            flows_inspected: get(&self.flows_inspected),
            bytes_out: get(&self.bytes_out),
            bytes_in: get(&self.bytes_in),
            scanned_bytes: get(&self.scanned_bytes),
            unscanned_bytes: get(&self.unscanned_bytes),
            findings: get(&self.findings),
            upstream_errors: get(&self.upstream_errors),
            client_errors: get(&self.client_errors),
        }
    }
}
