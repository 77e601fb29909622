//! The wire format of the IPC channel: versioned tasks and results, request
//! ids, error codes, and the data each task type answers with.
//!
//! SPEC.md (section "IPC") describes the same format for readers who do not read
//! Rust; the tests at the bottom of this file pin the exact JSON.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use traffic_guardian_core::{Direction, Finding, Severity, ThreatType, Timestamp};

/// The protocol version this crate reads and writes.
pub const PROTOCOL_VERSION: u32 = 1;

/// The folder, inside a group's IPC root, where the container drops tasks.
pub const TASKS_DIR: &str = "clawsec_traffic_tasks";

/// The folder, inside a group's IPC root, where the host writes results.
pub const RESULTS_DIR: &str = "clawsec_results";

/// The longest request id accepted.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// How many findings a findings task returns when it names no limit.
pub const DEFAULT_FINDINGS_LIMIT: u32 = 20;

/// The largest findings limit accepted. Larger values are rejected with
/// `bad_request`, never silently clamped.
pub const MAX_FINDINGS_LIMIT: u32 = 100;

/// The only `mode` the guardian runs in.
pub const MODE_DETECT_AND_LOG: &str = "detect-and-log";

/// The extension of task and result files.
const JSON_EXT: &str = ".json";

/// A request id: `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
///
/// It names the task file (`<id>.json`) and the result file, so it can never
/// contain a path separator, start with a dot, or be `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(String);

/// A request id that does not match `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid request id: expected 1 to 128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
)]
pub struct InvalidRequestId;

impl RequestId {
    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<RequestId, InvalidRequestId> {
        let id = id.into();
        if is_valid_request_id(&id) {
            Ok(RequestId(id))
        } else {
            Err(InvalidRequestId)
        }
    }

    /// A fresh id, `tg-<unix millis>-<16 random hex digits>`. Unique in
    /// practice: two ids collide only if they are made in the same
    /// millisecond and draw the same 64 random bits.
    pub fn generate() -> RequestId {
        let millis = Timestamp::now().unix_millis();
        RequestId(format!("tg-{millis}-{:016x}", random_u64()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of this request's task and result files: `<id>.json`.
    pub fn file_name(&self) -> String {
        format!("{}{JSON_EXT}", self.0)
    }

    /// The request id a task or result file is named after, if its name is
    /// `<valid id>.json`.
    pub fn from_file_name(name: &str) -> Option<RequestId> {
        let stem = name.strip_suffix(JSON_EXT)?;
        RequestId::new(stem).ok()
    }
}

/// Whether `id` is a valid request id.
pub fn is_valid_request_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    match bytes.split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphanumeric()
                && rest.len() < MAX_REQUEST_ID_LEN
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => false,
    }
}

/// 64 random bits from the operating system. Falls back to the clock and the
/// process id if the system source fails, which keeps ids unique within a
/// process (they also carry the time) even then.
pub(crate) fn random_u64() -> u64 {
    match getrandom::u64() {
        Ok(value) => value,
        Err(_) => {
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            (u64::from(std::process::id()) << 32) ^ u64::from(nanos) ^ (count << 48)
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RequestId {
    type Err = InvalidRequestId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RequestId::new(s)
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        RequestId::new(text).map_err(serde::de::Error::custom)
    }
}

/// The three things a container can ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    /// Is the guardian running, and what has it seen?
    Status,
    /// The newest redacted findings visible to the caller.
    Findings,
    /// The host's verdict on its own configuration.
    CheckConfig,
}

impl TaskType {
    /// Every task type.
    pub const ALL: [TaskType; 3] = [TaskType::Status, TaskType::Findings, TaskType::CheckConfig];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Status => "status",
            TaskType::Findings => "findings",
            TaskType::CheckConfig => "check_config",
        }
    }

    fn from_wire(name: &str) -> Option<TaskType> {
        TaskType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Filters of a findings task. Every filter that is set must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FindingsParams {
    /// Only findings at least this severe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Only findings of this threat type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_type: Option<ThreatType>,
    /// Only findings in this direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Only findings made at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// At most this many findings, the newest: 1 to [`MAX_FINDINGS_LIMIT`],
    /// default [`DEFAULT_FINDINGS_LIMIT`].
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    DEFAULT_FINDINGS_LIMIT
}

impl Default for FindingsParams {
    fn default() -> FindingsParams {
        FindingsParams {
            min_severity: None,
            threat_type: None,
            direction: None,
            since: None,
            limit: DEFAULT_FINDINGS_LIMIT,
        }
    }
}

impl FindingsParams {
    /// Checks the limit bounds.
    pub fn validate(&self) -> Result<(), String> {
        if (1..=MAX_FINDINGS_LIMIT).contains(&self.limit) {
            Ok(())
        } else {
            Err(format!(
                "limit must be between 1 and {MAX_FINDINGS_LIMIT}, got {}",
                self.limit
            ))
        }
    }
}

/// What a task asks, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// See [`TaskType::Status`].
    Status,
    /// See [`TaskType::Findings`].
    Findings(FindingsParams),
    /// See [`TaskType::CheckConfig`].
    CheckConfig,
}

impl Request {
    /// The task type of this request.
    pub fn task_type(&self) -> TaskType {
        match self {
            Request::Status => TaskType::Status,
            Request::Findings(_) => TaskType::Findings,
            Request::CheckConfig => TaskType::CheckConfig,
        }
    }
}

/// A task file: one request with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Names the task and result files.
    pub request_id: RequestId,
    /// What is asked.
    pub request: Request,
}

/// Why a task file was not accepted. `request_id` is set when a valid id
/// could be read from the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct TaskError {
    /// The error code the result carries.
    pub code: ErrorCode,
    /// What is wrong, for the caller. Never echoes more than a short,
    /// quoted fragment of the input.
    pub message: String,
    /// The request id found in the payload, if any.
    pub request_id: Option<RequestId>,
}

/// Top-level keys of a task object.
const TASK_KEYS: [&str; 4] = ["version", "type", "requestId", "params"];

impl Task {
    /// Serialises the task as its file content.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a, P: Serialize> {
            version: u32,
            #[serde(rename = "type")]
            task_type: &'static str,
            request_id: &'a RequestId,
            params: P,
        }
        #[derive(Serialize)]
        struct NoParams {}
        let task_type = self.request.task_type().as_str();
        let request_id = &self.request_id;
        let version = PROTOCOL_VERSION;
        let encoded = match &self.request {
            Request::Findings(params) => serde_json::to_vec(&Wire {
                version,
                task_type,
                request_id,
                params,
            }),
            Request::Status | Request::CheckConfig => serde_json::to_vec(&Wire {
                version,
                task_type,
                request_id,
                params: NoParams {},
            }),
        };
        // Every field is a string, a number or a struct of them.
        encoded.unwrap_or_default()
    }

    /// Parses a task file. Checks, in order: JSON object, request id,
    /// version, type, parameters, unknown keys. The first failure wins.
    pub fn parse(bytes: &[u8]) -> Result<Task, TaskError> {
        let fail = |code, message: String, request_id: Option<RequestId>| TaskError {
            code,
            message,
            request_id,
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|err| {
            fail(
                ErrorCode::BadRequest,
                format!("task is not valid JSON: {}", describe_json_error(&err)),
                None,
            )
        })?;
        let Value::Object(mut object) = value else {
            return Err(fail(
                ErrorCode::BadRequest,
                "task must be a JSON object".into(),
                None,
            ));
        };

        let request_id = match object.get("requestId") {
            Some(Value::String(id)) => RequestId::new(id.as_str())
                .map_err(|err| fail(ErrorCode::BadRequest, format!("requestId: {err}"), None))?,
            Some(_) => {
                return Err(fail(
                    ErrorCode::BadRequest,
                    "requestId must be a string".into(),
                    None,
                ));
            }
            None => {
                return Err(fail(
                    ErrorCode::BadRequest,
                    "requestId is missing".into(),
                    None,
                ));
            }
        };
        let id = Some(request_id.clone());

        match object.get("version") {
            Some(Value::Number(n)) if n.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
            Some(Value::Number(n)) => {
                return Err(fail(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "task version {} is not supported; this host speaks version {PROTOCOL_VERSION}",
                        quote(&n.to_string())
                    ),
                    id,
                ));
            }
            Some(_) => {
                return Err(fail(
                    ErrorCode::BadRequest,
                    "version must be a number".into(),
                    id,
                ));
            }
            None => {
                return Err(fail(ErrorCode::BadRequest, "version is missing".into(), id));
            }
        }

        let task_type = match object.get("type") {
            Some(Value::String(name)) => TaskType::from_wire(name).ok_or_else(|| {
                fail(
                    ErrorCode::UnknownType,
                    format!(
                        "unknown task type {}; expected one of status, findings, check_config",
                        quote(name)
                    ),
                    id.clone(),
                )
            })?,
            Some(_) => {
                return Err(fail(
                    ErrorCode::BadRequest,
                    "type must be a string".into(),
                    id,
                ));
            }
            None => return Err(fail(ErrorCode::BadRequest, "type is missing".into(), id)),
        };

        let params = match object.remove("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(params)) => params,
            Some(_) => {
                return Err(fail(
                    ErrorCode::BadRequest,
                    "params must be an object".into(),
                    id,
                ));
            }
        };
        let request = match task_type {
            TaskType::Status | TaskType::CheckConfig => {
                if let Some(key) = params.keys().next() {
                    return Err(fail(
                        ErrorCode::BadRequest,
                        format!("{task_type} takes no params, got {}", quote(key)),
                        id,
                    ));
                }
                if task_type == TaskType::Status {
                    Request::Status
                } else {
                    Request::CheckConfig
                }
            }
            TaskType::Findings => {
                let params: FindingsParams = serde_json::from_value(Value::Object(params))
                    .map_err(|err| {
                        fail(
                            ErrorCode::BadRequest,
                            format!("params: {}", describe_json_error(&err)),
                            id.clone(),
                        )
                    })?;
                params
                    .validate()
                    .map_err(|reason| fail(ErrorCode::BadRequest, reason, id.clone()))?;
                Request::Findings(params)
            }
        };

        if let Some(key) = object.keys().find(|k| !TASK_KEYS.contains(&k.as_str())) {
            return Err(fail(
                ErrorCode::BadRequest,
                format!("unknown key {} in task", quote(key)),
                id,
            ));
        }

        Ok(Task {
            request_id,
            request,
        })
    }
}

/// A serde_json error message without the input it quotes beyond a short
/// fragment: serde names offending values, and those come from the container.
fn describe_json_error(err: &serde_json::Error) -> String {
    let text = err.to_string();
    truncate_chars(&text, 200)
}

/// `text` quoted, and cut to 64 characters.
fn quote(text: &str) -> String {
    format!("{:?}", truncate_chars(text, 64))
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Stable error codes of the result `error` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The task is malformed: not JSON, missing or mistyped fields, bad
    /// parameters, a request id that does not match the file name.
    BadRequest,
    /// The task names a protocol version this host does not speak.
    UnsupportedVersion,
    /// The task type is not one of `status`, `findings`, `check_config`.
    UnknownType,
    /// The task file is larger than the host accepts.
    TooLarge,
    /// The group sent more tasks than its rate limit allows.
    RateLimited,
    /// The caller may not see what it asked for.
    Forbidden,
    /// The host cannot answer right now (for example, its findings log is
    /// unreadable).
    Unavailable,
    /// The host failed in a way that is its own fault.
    Internal,
    /// A code this version does not know (sent by a newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object of a failed result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code.
    pub code: ErrorCode,
    /// What went wrong, for a person or a model.
    pub message: String,
}

/// A result file: the answer to one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// Always [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The id of the task this answers.
    pub request_id: RequestId,
    /// Whether the task succeeded; `data` is set if so, `error` if not.
    pub success: bool,
    /// A one-line summary.
    pub message: String,
    /// The task's data (see [`StatusData`], [`FindingsData`],
    /// [`CheckConfigData`]), or `null` on failure.
    pub data: Option<Value>,
    /// The failure, or `null` on success.
    pub error: Option<ErrorBody>,
}

impl Response {
    /// A successful result carrying `data`.
    pub fn ok(
        request_id: RequestId,
        message: impl Into<String>,
        data: &impl Serialize,
    ) -> Response {
        match serde_json::to_value(data) {
            Ok(data) => Response {
                version: PROTOCOL_VERSION,
                request_id,
                success: true,
                message: message.into(),
                data: Some(data),
                error: None,
            },
            Err(err) => Response::error(
                request_id,
                ErrorCode::Internal,
                format!("could not encode the answer: {err}"),
            ),
        }
    }

    /// A failed result.
    pub fn error(request_id: RequestId, code: ErrorCode, message: impl Into<String>) -> Response {
        let message = message.into();
        Response {
            version: PROTOCOL_VERSION,
            request_id,
            success: false,
            message: message.clone(),
            data: None,
            error: Some(ErrorBody { code, message }),
        }
    }

    /// Serialises the result as its file content.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a result file.
    pub fn parse(bytes: &[u8]) -> Result<Response, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Decodes `data` as `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(self.data.as_ref().unwrap_or(&Value::Null))
    }
}

/// The data of a `status` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusData {
    /// Whether the proxy is running.
    pub running: bool,
    /// Always [`MODE_DETECT_AND_LOG`] in this version.
    pub mode: String,
    /// Seconds since the proxy started, when running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
    /// The runtimes the caller may see: its own, or all for `main`.
    pub runtimes: Vec<RuntimeStatus>,
    /// Finding counts over the caller's visible runtimes.
    pub counts: Counts,
    /// When the newest visible finding was made.
    pub last_finding_at: Option<Timestamp>,
    /// Parts that are not working as configured.
    pub degraded: Vec<DegradedState>,
    /// SHA-256 of the guardian CA certificate (DER), 64 lowercase hex
    /// digits, when HTTPS inspection is on for a visible runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<String>,
}

/// One runtime (a container or group the proxy tells apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStatus {
    /// The runtime's name, as findings carry it in `runtime`.
    pub name: String,
    /// The NanoClaw group it is mapped to, if any.
    pub group: Option<String>,
    /// Whether its HTTPS traffic is decrypted and inspected (otherwise
    /// CONNECT tunnels are logged as metadata only).
    pub https_inspection: bool,
    /// The proxy listener it uses, such as `127.0.0.1:3129`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// Finding counts. Each stored finding line counts once, whatever its
/// `count` of folded repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Per severity.
    pub by_severity: SeverityCounts,
    /// Per threat type.
    pub by_threat_type: ThreatTypeCounts,
    /// All of them.
    pub total: u64,
}

impl Counts {
    /// Counts one more finding.
    pub fn add(&mut self, finding: &Finding) {
        let slot = match finding.severity {
            Severity::Low => &mut self.by_severity.low,
            Severity::Medium => &mut self.by_severity.medium,
            Severity::High => &mut self.by_severity.high,
            Severity::Critical => &mut self.by_severity.critical,
        };
        *slot += 1;
        let slot = match finding.threat_type {
            ThreatType::Exfil => &mut self.by_threat_type.exfil,
            ThreatType::Injection => &mut self.by_threat_type.injection,
        };
        *slot += 1;
        self.total += 1;
    }
}

/// Counts per severity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityCounts {
    /// `low` findings.
    pub low: u64,
    /// `medium` findings.
    pub medium: u64,
    /// `high` findings.
    pub high: u64,
    /// `critical` findings.
    pub critical: u64,
}

/// Counts per threat type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreatTypeCounts {
    /// `EXFIL` findings.
    #[serde(rename = "EXFIL")]
    pub exfil: u64,
    /// `INJECTION` findings.
    #[serde(rename = "INJECTION")]
    pub injection: u64,
}

/// A part of the guardian that is not working as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DegradedState {
    /// Which part, such as `findings_log` or `listener:rt-a`.
    pub component: String,
    /// What is wrong, without secrets.
    pub reason: String,
}

/// The data of a `findings` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingsData {
    /// Redacted findings, newest first, at most the requested limit.
    pub findings: Vec<Finding>,
}

/// The data of a `check_config` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckConfigData {
    /// Whether the host's configuration is valid (no `error` problems).
    pub valid: bool,
    /// What is wrong or worth a look.
    pub problems: Vec<ConfigProblem>,
    /// The proxy URL the caller's runtime should use, as the host knows it.
    pub proxy_url: Option<String>,
    /// SHA-256 of the guardian CA certificate (DER), 64 lowercase hex
    /// digits, when HTTPS inspection is on for the caller's runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<String>,
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigProblem {
    /// The setting concerned, such as `runtimes[1].listen`.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
    /// How bad it is.
    pub level: ProblemLevel,
}

/// How bad a configuration problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemLevel {
    /// The configuration cannot be used as it is.
    Error,
    /// It works, but probably not as meant.
    Warning,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_id(id: &str, valid: bool) {
        assert_eq!(is_valid_request_id(id), valid, "{id:?}");
        assert_eq!(RequestId::new(id).is_ok(), valid, "{id:?}");
    }

    #[test]
    fn request_ids_follow_the_pattern() {
        check_id("a", true);
        check_id("tg-1700000000000-00ff00ff00ff00ff", true);
        check_id("A.b_c-D", true);
        check_id(&"x".repeat(128), true);
        check_id(&"x".repeat(129), false);
        check_id("", false);
        check_id(".hidden", false);
        check_id("-dash", false);
        check_id("_under", false);
        check_id("..", false);
        check_id("a/b", false);
        check_id("a\\b", false);
        check_id("a b", false);
        check_id("a\0b", false);
        check_id("é", false);
        check_id("a\n", false);
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| RequestId::generate()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert!(id.as_str().starts_with("tg-"), "{id}");
            assert!(is_valid_request_id(id.as_str()));
        }
    }

    #[test]
    fn file_names_round_trip() {
        let id = RequestId::new("abc.1").unwrap();
        assert_eq!(id.file_name(), "abc.1.json");
        assert_eq!(RequestId::from_file_name("abc.1.json"), Some(id));
        assert_eq!(RequestId::from_file_name("abc.1"), None);
        assert_eq!(RequestId::from_file_name(".abc.json"), None);
        assert_eq!(RequestId::from_file_name(".json"), None);
    }

    #[test]
    fn tasks_serialise_exactly() {
        let id = RequestId::new("r1").unwrap();
        let task = Task {
            request_id: id.clone(),
            request: Request::Status,
        };
        assert_eq!(
            String::from_utf8(task.to_json()).unwrap(),
            r#"{"version":1,"type":"status","requestId":"r1","params":{}}"#
        );
        let task = Task {
            request_id: id,
            request: Request::Findings(FindingsParams {
                min_severity: Some(Severity::High),
                threat_type: Some(ThreatType::Exfil),
                direction: Some(Direction::Outbound),
                since: Some("2026-01-02T03:04:05Z".parse().unwrap()),
                limit: 5,
            }),
        };
        let json = String::from_utf8(task.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"version":1,"type":"findings","requestId":"r1","params":{"minSeverity":"high","threatType":"EXFIL","direction":"outbound","since":"2026-01-02T03:04:05.000Z","limit":5}}"#
        );
        assert_eq!(Task::parse(json.as_bytes()).unwrap(), task);
    }

    /// Parses `json` and returns the error code and whether an id was
    /// recovered, or `None` if it parsed.
    fn parse_error(json: &str) -> Option<(ErrorCode, bool, String)> {
        Task::parse(json.as_bytes())
            .err()
            .map(|e| (e.code, e.request_id.is_some(), e.message))
    }

    #[track_caller]
    fn check_parse(json: &str, expected: Option<(ErrorCode, bool)>) {
        let got = parse_error(json);
        assert_eq!(
            got.clone().map(|(c, r, _)| (c, r)),
            expected,
            "{json}: {got:?}"
        );
    }

    #[test]
    fn task_parsing_accepts_and_rejects() {
        use ErrorCode::*;
        check_parse(r#"{"version":1,"type":"status","requestId":"a"}"#, None);
        check_parse(
            r#"{"version":1,"type":"check_config","requestId":"a","params":{}}"#,
            None,
        );
        check_parse(
            r#"{"version":1,"type":"findings","requestId":"a","params":null}"#,
            None,
        );
        check_parse(
            r#"{"version":1,"type":"findings","requestId":"a","params":{"minSeverity":"low","limit":100}}"#,
            None,
        );
        check_parse("", Some((BadRequest, false)));
        check_parse("{", Some((BadRequest, false)));
        check_parse("[1]", Some((BadRequest, false)));
        check_parse(
            r#"{"version":1,"type":"status"}"#,
            Some((BadRequest, false)),
        );
        check_parse(
            r#"{"version":1,"type":"status","requestId":"../x"}"#,
            Some((BadRequest, false)),
        );
        check_parse(
            r#"{"version":1,"type":"status","requestId":7}"#,
            Some((BadRequest, false)),
        );
        check_parse(
            r#"{"version":2,"type":"status","requestId":"a"}"#,
            Some((UnsupportedVersion, true)),
        );
        check_parse(
            r#"{"version":1.5,"type":"status","requestId":"a"}"#,
            Some((UnsupportedVersion, true)),
        );
        check_parse(
            r#"{"version":"1","type":"status","requestId":"a"}"#,
            Some((BadRequest, true)),
        );
        check_parse(
            r#"{"type":"status","requestId":"a"}"#,
            Some((BadRequest, true)),
        );
        check_parse(
            r#"{"version":1,"type":"rm_rf","requestId":"a"}"#,
            Some((UnknownType, true)),
        );
        check_parse(
            r#"{"version":1,"type":"STATUS","requestId":"a"}"#,
            Some((UnknownType, true)),
        );
        check_parse(r#"{"version":1,"requestId":"a"}"#, Some((BadRequest, true)));
        check_parse(
            r#"{"version":1,"type":"status","requestId":"a","params":{"x":1}}"#,
            Some((BadRequest, true)),
        );
        check_parse(
            r#"{"version":1,"type":"status","requestId":"a","params":[]}"#,
            Some((BadRequest, true)),
        );
        check_parse(
            r#"{"version":1,"type":"status","requestId":"a","group":"main"}"#,
            Some((BadRequest, true)),
        );
        check_parse(
            r#"{"version":1,"type":"findings","requestId":"a","params":{"limit":0}}"#,
            Some((BadRequest, true)),
        );
        check_parse(
            r#"{"version":1,"type":"findings","requestId":"a","params":{"limit":101}}"#,
            Some((BadRequest, true)),
        );
        check_parse(
            r#"{"version":1,"type":"findings","requestId":"a","params":{"limit":-1}}"#,
            Some((BadRequest, true)),
        );
        check_parse(
            r#"{"version":1,"type":"findings","requestId":"a","params":{"minSeverity":"urgent"}}"#,
            Some((BadRequest, true)),
        );
        check_parse(
            r#"{"version":1,"type":"findings","requestId":"a","params":{"since":"yesterday"}}"#,
            Some((BadRequest, true)),
        );
        check_parse(
            r#"{"version":1,"type":"findings","requestId":"a","params":{"runtimes":["other"]}}"#,
            Some((BadRequest, true)),
        );
    }

    #[test]
    fn error_messages_quote_little_of_the_input() {
        let long = "A".repeat(5000);
        let json = format!(r#"{{"version":1,"type":"{long}","requestId":"a"}}"#);
        let (_, _, message) = parse_error(&json).unwrap();
        assert!(message.len() < 200, "{message}");
        let json = format!(
            r#"{{"version":1,"type":"findings","requestId":"a","params":{{"minSeverity":"{long}"}}}}"#
        );
        let (_, _, message) = parse_error(&json).unwrap();
        assert!(message.len() < 300, "{message}");
    }

    mod props {
        use proptest::prelude::*;

        use super::super::*;

        /// A leaf JSON value: often one a task uses, sometimes anything.
        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                (0i64..120).prop_map(Value::from),
                "[a-z_A-Z0-9./-]{0,12}".prop_map(Value::from),
                prop_oneof![
                    Just("high"),
                    Just("LOW"),
                    Just("EXFIL"),
                    Just("inbound"),
                    Just("2026-01-31T12:00:00Z"),
                    Just("yesterday"),
                ]
                .prop_map(Value::from),
            ]
        }

        /// Findings-like params: the real keys and others, any leaf values.
        fn params() -> impl Strategy<Value = Value> {
            prop::collection::btree_map(
                prop_oneof![
                    Just("minSeverity".to_owned()),
                    Just("threatType".to_owned()),
                    Just("direction".to_owned()),
                    Just("since".to_owned()),
                    Just("limit".to_owned()),
                    "[a-z]{1,6}",
                ],
                leaf(),
                0..4,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect()))
        }

        /// A task object, mostly well formed, each part sometimes wrong or
        /// missing.
        fn task_like() -> impl Strategy<Value = Value> {
            let version = prop_oneof![
                4 => Just(Some(Value::from(1))),
                1 => Just(Some(Value::from(2))),
                1 => Just(Some(Value::from("1"))),
                1 => Just(None),
            ];
            let task_type = prop_oneof![
                4 => prop_oneof![Just("status"), Just("findings"), Just("check_config")]
                    .prop_map(|t| Some(Value::from(t))),
                1 => leaf().prop_map(Some),
                1 => Just(None),
            ];
            let request_id = prop_oneof![
                4 => Just(Some(Value::from("r-1"))),
                1 => leaf().prop_map(Some),
                1 => Just(None),
            ];
            let task_params = prop_oneof![
                2 => Just(None),
                4 => params().prop_map(Some),
                1 => leaf().prop_map(Some),
            ];
            let extra = prop::option::weighted(0.2, ("[a-z]{1,5}", leaf()));
            (version, task_type, request_id, task_params, extra).prop_map(
                |(version, task_type, request_id, params, extra)| {
                    let mut object = Map::new();
                    for (key, value) in [
                        ("version", version),
                        ("type", task_type),
                        ("requestId", request_id),
                        ("params", params),
                    ] {
                        if let Some(value) = value {
                            object.insert(key.to_owned(), value);
                        }
                    }
                    if let Some((key, value)) = extra {
                        object.insert(key, value);
                    }
                    Value::Object(object)
                },
            )
        }

        proptest! {
            #[test]
            fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                let _ = Task::parse(&bytes);
            }

            #[test]
            fn accepted_tasks_are_well_formed(value in task_like()) {
                let bytes = serde_json::to_vec(&value).unwrap();
                match Task::parse(&bytes) {
                    Ok(task) => {
                        prop_assert!(is_valid_request_id(task.request_id.as_str()));
                        if let Request::Findings(params) = &task.request {
                            prop_assert!((1..=MAX_FINDINGS_LIMIT).contains(&params.limit));
                        }
                        // What is accepted round-trips.
                        prop_assert_eq!(Task::parse(&task.to_json()).unwrap(), task);
                    }
                    Err(err) => {
                        prop_assert!(!err.message.is_empty());
                        prop_assert!(err.message.len() < 400, "{}", err.message);
                    }
                }
            }
        }
    }

    #[test]
    fn results_serialise_exactly() {
        let id = RequestId::new("r1").unwrap();
        let ok = Response::ok(id.clone(), "ok", &FindingsData { findings: vec![] });
        assert_eq!(
            String::from_utf8(ok.to_json()).unwrap(),
            r#"{"version":1,"requestId":"r1","success":true,"message":"ok","data":{"findings":[]},"error":null}"#
        );
        let err = Response::error(id, ErrorCode::TooLarge, "too big");
        let json = String::from_utf8(err.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"version":1,"requestId":"r1","success":false,"message":"too big","data":null,"error":{"code":"too_large","message":"too big"}}"#
        );
        assert_eq!(Response::parse(json.as_bytes()).unwrap(), err);
    }

    #[test]
    fn unknown_error_codes_from_newer_peers_still_parse() {
        let json = r#"{"version":1,"requestId":"r1","success":false,"message":"m","data":null,"error":{"code":"brand_new","message":"m"}}"#;
        let parsed = Response::parse(json.as_bytes()).unwrap();
        assert_eq!(parsed.error.unwrap().code, ErrorCode::Unknown);
    }

    #[test]
    fn status_and_check_config_data_serialise_exactly() {
        let status = StatusData {
            running: true,
            mode: MODE_DETECT_AND_LOG.into(),
            uptime_seconds: Some(5),
            runtimes: vec![RuntimeStatus {
                name: "rt-a".into(),
                group: Some("team-a".into()),
                https_inspection: true,
                listen: None,
            }],
            counts: Counts::default(),
            last_finding_at: None,
            degraded: vec![],
            ca_fingerprint: None,
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"running":true,"mode":"detect-and-log","uptimeSeconds":5,"runtimes":[{"name":"rt-a","group":"team-a","httpsInspection":true}],"counts":{"bySeverity":{"low":0,"medium":0,"high":0,"critical":0},"byThreatType":{"EXFIL":0,"INJECTION":0},"total":0},"lastFindingAt":null,"degraded":[]}"#
        );
        let check = CheckConfigData {
            valid: false,
            problems: vec![ConfigProblem {
                path: "listen".into(),
                reason: "port in use".into(),
                level: ProblemLevel::Error,
            }],
            proxy_url: Some("http://host.docker.internal:3129".into()),
            ca_fingerprint: Some("ab".repeat(32)),
        };
        let json = serde_json::to_string(&check).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"valid":false,"problems":[{{"path":"listen","reason":"port in use","level":"error"}}],"proxyUrl":"http://host.docker.internal:3129","caFingerprint":"{}"}}"#,
                "ab".repeat(32)
            )
        );
        assert_eq!(
            serde_json::from_str::<CheckConfigData>(&json).unwrap(),
            check
        );
    }
}
