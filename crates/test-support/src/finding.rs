//! A complete finding for tests that store, filter or serve findings.

use traffic_guardian_core::finding::{Platform, SchemaVersion};
use traffic_guardian_core::{
    Direction, Finding, Protocol, RuleId, Severity, ThreatType, Timestamp,
};

/// An outbound, high-severity `ai_api_key` finding of runtime `main`, already
/// redacted, made at 2025-11-29T12:00:00Z. Tests change what matters to them
/// with struct update syntax: `Finding { severity, ..sample_finding() }`.
pub fn sample_finding() -> Finding {
    Finding {
        schema_version: SchemaVersion,
        platform: Platform,
        direction: Direction::Outbound,
        protocol: Protocol::Https,
        threat_type: ThreatType::Exfil,
        pattern: RuleId::new("ai_api_key"),
        severity: Severity::High,
        source: "172.17.0.2:40000".into(),
        dest: "api.example.com:443".into(),
        snippet: "x-api-key: sk-ant-****".into(),
        timestamp: Timestamp::from_unix_millis(1_764_417_600_000),
        runtime: Some("main".into()),
        flow_id: None,
        method: None,
        path: None,
        location: None,
        encoding: None,
        count: 1,
        fingerprint: None,
    }
}
