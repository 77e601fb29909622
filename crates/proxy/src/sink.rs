//! Where findings and flow records go: a trait the host implements.

use std::net::SocketAddr;
use std::time::Duration;

use traffic_guardian_core::{Finding, Protocol};

/// Receives what the proxy observed. The host implements it (JSONL,
/// dedup, counters); tests use an in-memory one.
///
/// Calls come from the proxy's worker threads, once a message's scan has
/// finished; they should return quickly.
pub trait FindingSink: Send + Sync + 'static {
    /// Findings of one finished message (never empty).
    fn record(&self, findings: Vec<Finding>);

    /// One finished flow: an HTTP exchange or a tunnel. Carries metadata
    /// only, never a header value, query or body.
    fn flow(&self, flow: &FlowRecord) {
        let _ = flow;
    }
}

/// How the proxy handled a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowHandling {
    /// Plain HTTP forwarded and scanned.
    Forwarded,
    /// HTTPS decrypted, scanned and re-encrypted.
    Inspected,
    /// Bytes tunnelled without decryption (CONNECT, passthrough hosts,
    /// protocol upgrades after the handshake): metadata only.
    Tunnelled,
}

/// Metadata of one finished flow.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlowRecord {
    /// Names the flow; findings of the flow carry the same id.
    pub flow_id: String,
    /// The runtime the client was attributed to.
    pub runtime: String,
    /// `http`, `https` (inspected) or `connect` (tunnel).
    pub protocol: Protocol,
    /// How it was handled.
    pub handling: FlowHandling,
    /// The client's address.
    pub client: SocketAddr,
    /// `host:port` of the destination.
    pub dest: String,
    /// The request method (`CONNECT` for tunnels).
    pub method: String,
    /// The response status, if one was received.
    pub status: Option<u16>,
    /// Bytes from client to server (bodies, or tunnel payload).
    pub bytes_out: u64,
    /// Bytes from server to client (bodies, or tunnel payload).
    pub bytes_in: u64,
    /// Body bytes the scanner read, both ways.
    pub scanned_bytes: u64,
    /// Body bytes that passed unscanned (over the budget, or tunnelled).
    pub unscanned_bytes: u64,
    /// From the request's arrival until both bodies ended.
    pub duration: Duration,
    /// Why the flow failed, if it did (no secrets: a class and `host:port`).
    /// A body that ended early counts: one that failed while being read,
    /// or one cut short because a peer went away.
    pub error: Option<String>,
}
