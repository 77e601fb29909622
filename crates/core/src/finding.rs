//! The `clawsec-traffic-finding/v1` record and the small enums it is made of.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::timestamp::Timestamp;

/// The value of `schema_version` in every finding.
pub const SCHEMA_VERSION: &str = "clawsec-traffic-finding/v1";

/// The value of `platform` in every finding.
pub const PLATFORM: &str = "nanoclaw";

/// Which way the inspected bytes were travelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the agent container towards the internet (requests).
    Outbound,
    /// From the internet towards the agent container (responses).
    Inbound,
}

impl Direction {
    /// The wire name, as in the finding schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// How the traffic reached the guardian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Plain HTTP through the forward proxy.
    Http,
    /// HTTPS that the guardian decrypted and inspected.
    Https,
    /// A CONNECT tunnel that was not decrypted: metadata only.
    Connect,
}

impl Protocol {
    /// The wire name, as in the finding schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Connect => "connect",
        }
    }
}

/// The kind of threat a rule looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ThreatType {
    /// Secrets or sensitive paths leaving a container.
    #[serde(rename = "EXFIL")]
    Exfil,
    /// Command-injection shapes arriving in a response.
    #[serde(rename = "INJECTION")]
    Injection,
}

impl ThreatType {
    /// The wire name, as in the finding schema.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreatType::Exfil => "EXFIL",
            ThreatType::Injection => "INJECTION",
        }
    }
}

/// How bad a finding is. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; usually expected traffic.
    Low,
    /// Suspicious; look when convenient.
    Medium,
    /// Likely harmful.
    High,
    /// A live secret or a working attack shape.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The wire name, as in the finding schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// An error for a word that names none of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}; expected one of: {expected}")]
pub struct UnknownName {
    what: &'static str,
    given: String,
    expected: &'static str,
}

macro_rules! from_str_by_name {
    ($ty:ty, $what:literal, $expected:literal, [$($name:literal => $value:expr),+ $(,)?]) => {
        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.to_ascii_lowercase().as_str() {
                    $($name => Ok($value),)+
                    _ => Err(UnknownName { what: $what, given: s.to_owned(), expected: $expected }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

from_str_by_name!(Direction, "direction", "outbound, inbound", [
    "outbound" => Direction::Outbound,
    "inbound" => Direction::Inbound,
]);
from_str_by_name!(Protocol, "protocol", "http, https, connect", [
    "http" => Protocol::Http,
    "https" => Protocol::Https,
    "connect" => Protocol::Connect,
]);
from_str_by_name!(ThreatType, "threat type", "EXFIL, INJECTION", [
    "exfil" => ThreatType::Exfil,
    "injection" => ThreatType::Injection,
]);
from_str_by_name!(Severity, "severity", "low, medium, high, critical", [
    "low" => Severity::Low,
    "medium" => Severity::Medium,
    "high" => Severity::High,
    "critical" => Severity::Critical,
]);

/// A stable rule id such as `ai_api_key`. Rule ids are part of the wire format
/// and never change meaning once released.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleId(String);

impl RuleId {
    /// Wraps a rule id.
    pub fn new(id: impl Into<String>) -> RuleId {
        RuleId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<&str> for RuleId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// One detection, as written to `findings.jsonl` and returned through MCP.
///
/// The first eleven fields are the required `clawsec-traffic-finding/v1`
/// fields; the rest are optional extras that never carry a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Always [`SCHEMA_VERSION`].
    #[serde(serialize_with = "ser_schema", deserialize_with = "de_schema")]
    pub schema_version: SchemaVersion,
    /// Always [`PLATFORM`].
    #[serde(serialize_with = "ser_platform", deserialize_with = "de_platform")]
    pub platform: Platform,
    /// Which way the traffic went.
    pub direction: Direction,
    /// How the traffic reached the guardian.
    pub protocol: Protocol,
    /// EXFIL or INJECTION.
    pub threat_type: ThreatType,
    /// The stable id of the rule that matched.
    pub pattern: RuleId,
    /// How bad it is.
    pub severity: Severity,
    /// The client address (`ip:port`), or the input name for offline scans.
    pub source: String,
    /// The destination as `host:port`.
    pub dest: String,
    /// Redacted context around the match; never the secret.
    pub snippet: String,
    /// When the finding was made: RFC 3339, UTC, milliseconds.
    pub timestamp: Timestamp,

    /// The runtime (container or group) the traffic came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Names the flow: a connection and message for live traffic,
    /// `har:<index>` or `file:<name>` for offline scans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    /// The HTTP method of the request the finding belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The request path with the query string and secrets masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Where in the message the match was: `url`, `header:<name>` or `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The decodings applied before the match, such as `gzip+base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// How many occurrences this line stands for (see dedup). At least 1.
    #[serde(default = "one")]
    pub count: u64,
    /// Keyed fingerprint of the matched value, for correlation without storing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

fn one() -> u64 {
    1
}

/// Marker for the constant `schema_version` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchemaVersion;

/// Marker for the constant `platform` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Platform;

fn ser_schema<S: Serializer>(_: &SchemaVersion, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(SCHEMA_VERSION)
}

fn ser_platform<S: Serializer>(_: &Platform, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(PLATFORM)
}

fn de_schema<'de, D: Deserializer<'de>>(d: D) -> Result<SchemaVersion, D::Error> {
    let value = String::deserialize(d)?;
    if value == SCHEMA_VERSION {
        Ok(SchemaVersion)
    } else {
        Err(serde::de::Error::custom(format!(
            "unsupported schema_version {value:?}, expected {SCHEMA_VERSION:?}"
        )))
    }
}

fn de_platform<'de, D: Deserializer<'de>>(d: D) -> Result<Platform, D::Error> {
    let value = String::deserialize(d)?;
    if value == PLATFORM {
        Ok(Platform)
    } else {
        Err(serde::de::Error::custom(format!(
            "unsupported platform {value:?}, expected {PLATFORM:?}"
        )))
    }
}

impl Finding {
    /// Serialises the finding as one JSON line, without the trailing newline.
    pub fn to_json_line(&self) -> String {
        // Serialising this struct cannot fail: every field is a string, a
        // number or a unit enum, and no map has non-string keys.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// A complete finding for tests to adjust with struct update syntax.
#[cfg(test)]
pub(crate) fn sample() -> Finding {
    Finding {
        schema_version: SchemaVersion,
        platform: Platform,
        direction: Direction::Outbound,
        protocol: Protocol::Http,
        threat_type: ThreatType::Exfil,
        pattern: RuleId::new("ai_api_key"),
        severity: Severity::Critical,
        source: "127.0.0.1:50000".into(),
        dest: "example.com:80".into(),
        snippet: "key=sk-ant-****".into(),
        timestamp: Timestamp::from_unix_millis(1_700_000_000_123),
        runtime: None,
        flow_id: None,
        method: None,
        path: None,
        location: None,
        encoding: None,
        count: 1,
        fingerprint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_exactly_the_required_fields_in_order() {
        let line = sample().to_json_line();
        assert_eq!(
            line,
            r#"{"schema_version":"clawsec-traffic-finding/v1","platform":"nanoclaw","direction":"outbound","protocol":"http","threat_type":"EXFIL","pattern":"ai_api_key","severity":"critical","source":"127.0.0.1:50000","dest":"example.com:80","snippet":"key=sk-ant-****","timestamp":"2023-11-14T22:13:20.123Z","count":1}"#
        );
    }

    #[test]
    fn round_trips_through_json() {
        let mut finding = sample();
        finding.runtime = Some("main".into());
        finding.fingerprint = Some("hmac-sha256:0011223344556677".into());
        let back: Finding = serde_json::from_str(&finding.to_json_line()).unwrap();
        assert_eq!(back, finding);
    }

    #[test]
    fn rejects_other_schema_versions_and_platforms() {
        let line = sample().to_json_line().replace("finding/v1", "finding/v9");
        let err = serde_json::from_str::<Finding>(&line).unwrap_err();
        assert!(
            err.to_string().contains("unsupported schema_version"),
            "{err}"
        );
        let line = sample().to_json_line().replace("nanoclaw", "other");
        assert!(serde_json::from_str::<Finding>(&line).is_err());
    }

    #[test]
    fn severity_orders_and_parses() {
        assert!(Severity::Low < Severity::Medium && Severity::High < Severity::Critical);
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        let err = "urgent".parse::<Severity>().unwrap_err().to_string();
        assert!(err.contains("low, medium, high, critical"), "{err}");
        assert_eq!("exfil".parse::<ThreatType>(), Ok(ThreatType::Exfil));
    }
}
