//! The scanning engine the proxy feeds: a stand-in with the core crate's
//! `Engine` API until that lands, so the proxy is written against it today.
//!
//! It knows two markers only (an Anthropic-style key prefix outbound and
//! `| sh` inbound). Swapping this module for a re-export of
//! `traffic_guardian_core::{Engine, …}` changes no caller.

use traffic_guardian_core::finding::{Platform, SchemaVersion};
use traffic_guardian_core::{
    Direction, Error, Finding, Protocol, RuleId, Severity, ThreatType, Timestamp,
};

/// Redaction settings (placeholder until the core engine lands).
#[derive(Debug, Clone, Default)]
pub struct Redaction;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Body bytes scanned per message.
    pub max_scan_bytes: usize,
    /// Redaction settings.
    pub redaction: Redaction,
    /// Key for fingerprints.
    pub fingerprint_key: Option<Vec<u8>>,
    /// Decompression ratio cap.
    pub max_decode_ratio: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_scan_bytes: 1 << 20,
            redaction: Redaction,
            fingerprint_key: None,
            max_decode_ratio: 100,
        }
    }
}

/// A built scanning engine, cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    config: std::sync::Arc<EngineConfig>,
}

impl Engine {
    /// Builds an engine.
    pub fn new(config: EngineConfig) -> Result<Engine, Error> {
        Ok(Engine {
            config: std::sync::Arc::new(config),
        })
    }

    /// The engine with its default settings.
    pub fn builtin() -> Engine {
        Engine {
            config: std::sync::Arc::new(EngineConfig::default()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Opens a scanner for one HTTP message.
    pub fn message(&self, meta: MessageMeta) -> MessageScanner {
        MessageScanner {
            meta,
            max: self.config.max_scan_bytes,
            text: Vec::new(),
            body: 0,
            unscanned: 0,
        }
    }
}

/// Who and where a message belongs to.
#[derive(Debug, Clone)]
pub struct MessageMeta {
    /// Which way.
    pub direction: Direction,
    /// How it reached the guardian.
    pub protocol: Protocol,
    /// Client address.
    pub source: String,
    /// Destination `host:port`.
    pub dest: String,
    /// Runtime name.
    pub runtime: Option<String>,
    /// Flow id.
    pub flow_id: Option<String>,
    /// Request method.
    pub method: Option<String>,
}

impl MessageMeta {
    /// A message with protocol `http`.
    pub fn new(direction: Direction, source: impl Into<String>, dest: impl Into<String>) -> Self {
        MessageMeta {
            direction,
            protocol: Protocol::Http,
            source: source.into(),
            dest: dest.into(),
            runtime: None,
            flow_id: None,
            method: None,
        }
    }
    /// Sets the protocol.
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }
    /// Sets the runtime.
    pub fn with_runtime(mut self, runtime: impl Into<String>) -> Self {
        self.runtime = Some(runtime.into());
        self
    }
    /// Sets the flow id.
    pub fn with_flow_id(mut self, flow_id: impl Into<String>) -> Self {
        self.flow_id = Some(flow_id.into());
        self
    }
    /// Sets the method.
    pub fn with_method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }
}

/// Scans one message.
#[derive(Debug)]
pub struct MessageScanner {
    meta: MessageMeta,
    max: usize,
    text: Vec<u8>,
    body: usize,
    unscanned: u64,
}

impl MessageScanner {
    /// Scans the request target.
    pub fn scan_target(&mut self, target: &str) {
        self.text.extend_from_slice(target.as_bytes());
        self.text.push(b'\n');
    }
    /// Scans one header.
    pub fn scan_header(&mut self, name: &str, value: &[u8]) {
        if name.eq_ignore_ascii_case("proxy-authorization") {
            return;
        }
        self.text.extend_from_slice(value);
        self.text.push(b'\n');
    }
    /// Starts the body.
    pub fn begin_body(&mut self, _content_encoding: Option<&str>, _content_type: Option<&str>) {}
    /// Feeds body bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        let room = self.max.saturating_sub(self.body);
        let take = room.min(chunk.len());
        self.text.extend_from_slice(&chunk[..take]);
        self.body += take;
        self.unscanned += (chunk.len() - take) as u64;
    }
    /// Whether the body budget is used up.
    pub fn budget_spent(&self) -> bool {
        self.body >= self.max
    }
    /// Ends the scan.
    pub fn finish(self) -> ScanOutcome {
        let (rule, threat) = match self.meta.direction {
            Direction::Outbound => ("ai_api_key", ThreatType::Exfil),
            Direction::Inbound => ("pipe_to_shell", ThreatType::Injection),
        };
        let needle: &[u8] = match self.meta.direction {
            Direction::Outbound => b"sk-ant-",
            Direction::Inbound => b"| sh",
        };
        let hit = self.text.windows(needle.len()).any(|w| w == needle);
        let findings = if hit {
            vec![Finding {
                schema_version: SchemaVersion,
                platform: Platform,
                direction: self.meta.direction,
                protocol: self.meta.protocol,
                threat_type: threat,
                pattern: RuleId::new(rule),
                severity: Severity::High,
                source: self.meta.source,
                dest: self.meta.dest,
                snippet: "[REDACTED]".into(),
                timestamp: Timestamp::now(),
                runtime: self.meta.runtime,
                flow_id: self.meta.flow_id,
                method: self.meta.method,
                path: None,
                location: None,
                encoding: None,
                count: 1,
                fingerprint: None,
            }]
        } else {
            Vec::new()
        };
        ScanOutcome {
            findings,
            scanned_bytes: self.body as u64,
            unscanned_bytes: self.unscanned,
            notes: Vec::new(),
        }
    }
}

/// What a finished scan found.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    /// Findings.
    pub findings: Vec<Finding>,
    /// Body bytes scanned.
    pub scanned_bytes: u64,
    /// Body bytes seen but not scanned.
    pub unscanned_bytes: u64,
    /// Notes.
    pub notes: Vec<String>,
}
