//! The host's side of a task: the [`TaskHandler`] the host implements, the
//! [`Caller`] it is told about, and [`dispatch`], which calls the handler and
//! enforces authorization on what it returns.

use std::panic::{AssertUnwindSafe, catch_unwind};

use traffic_guardian_core::{Finding, FindingQuery};

use crate::group::{GroupMap, GroupName};
use crate::protocol::{
    CheckConfigData, ErrorCode, FindingsData, FindingsParams, Request, RequestId, Response,
    StatusData,
};

/// Who is asking: derived from the folder a task was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The group folder's name.
    pub group: GroupName,
    /// Whether the group is `main`, which sees every runtime.
    pub is_main: bool,
    /// The runtimes mapped to the group.
    pub runtimes: Vec<String>,
}

impl Caller {
    /// The caller for `group`, with its runtimes from `map`.
    pub fn new(group: GroupName, map: &GroupMap) -> Caller {
        Caller {
            is_main: group.is_main(),
            runtimes: map.runtimes(&group).to_vec(),
            group,
        }
    }

    /// The runtimes whose findings the caller may see: `None` means all.
    pub fn visible_runtimes(&self) -> Option<&[String]> {
        if self.is_main {
            None
        } else {
            Some(&self.runtimes)
        }
    }

    /// Whether the caller may see a finding or runtime named `runtime`.
    /// Findings without a runtime are visible to `main` only.
    pub fn can_see(&self, runtime: Option<&str>) -> bool {
        match self.visible_runtimes() {
            None => true,
            Some(visible) => runtime.is_some_and(|r| visible.iter().any(|v| v == r)),
        }
    }
}

impl FindingsParams {
    /// The core query for these parameters as `caller` may run them: its
    /// filters, its limit, and the caller's runtime restriction.
    pub fn to_query(&self, caller: &Caller) -> FindingQuery {
        FindingQuery {
            since: self.since,
            until: None,
            min_severity: self.min_severity,
            threat_type: self.threat_type,
            direction: self.direction,
            runtimes: caller.visible_runtimes().map(<[String]>::to_vec),
            limit: Some(self.limit as usize),
        }
    }
}

/// A failure the handler reports. Its message reaches the container: it
/// must never carry a secret, a key, or raw traffic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HandlerError {
    /// The code the result carries.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
}

impl HandlerError {
    /// The host cannot answer right now.
    pub fn unavailable(message: impl Into<String>) -> HandlerError {
        HandlerError {
            code: ErrorCode::Unavailable,
            message: message.into(),
        }
    }

    /// The caller may not see this.
    pub fn forbidden(message: impl Into<String>) -> HandlerError {
        HandlerError {
            code: ErrorCode::Forbidden,
            message: message.into(),
        }
    }

    /// The host failed.
    pub fn internal(message: impl Into<String>) -> HandlerError {
        HandlerError {
            code: ErrorCode::Internal,
            message: message.into(),
        }
    }
}

/// What the host answers tasks with. The watcher calls it from its own
/// thread, one task at a time.
///
/// Contract:
/// - Answer for `caller` only. For a non-main caller, restrict everything
///   to `caller.runtimes`: the runtimes listed in the status, the counts and
///   the last finding time. [`FindingsParams::to_query`] builds the right
///   findings query.
/// - Return redacted data only, and nothing secret: no key material, no
///   proxy credentials, no raw traffic, in data or in error messages.
/// - Be quick: the watcher serves every group from one thread.
///
/// [`dispatch`] enforces the runtime restriction again on findings and on
/// the status's runtime list, re-applies the filters and the limit, and
/// turns a panic into an `internal` error, so a handler bug degrades the
/// answer instead of widening it.
pub trait TaskHandler: Send + Sync {
    /// Answers a `status` task.
    fn status(&self, caller: &Caller) -> Result<StatusData, HandlerError>;

    /// Answers a `findings` task: matching findings, newest first.
    fn findings(
        &self,
        caller: &Caller,
        params: &FindingsParams,
    ) -> Result<Vec<Finding>, HandlerError>;

    /// Answers a `check_config` task.
    fn check_config(&self, caller: &Caller) -> Result<CheckConfigData, HandlerError>;
}

/// Answers `request` for `caller` through `handler`, enforcing
/// authorization on the way out. Never panics.
pub fn dispatch(
    handler: &dyn TaskHandler,
    caller: &Caller,
    request_id: RequestId,
    request: &Request,
) -> Response {
    let answer = catch_unwind(AssertUnwindSafe(|| answer(handler, caller, request)));
    match answer {
        Ok(Ok((message, data))) => Response {
            message,
            ..Response::ok(request_id, "", &data)
        },
        Ok(Err(err)) => Response::error(request_id, err.code, err.message),
        Err(_) => Response::error(
            request_id,
            ErrorCode::Internal,
            "the host failed while answering; see the host log",
        ),
    }
}

/// The summary message and data for a request.
fn answer(
    handler: &dyn TaskHandler,
    caller: &Caller,
    request: &Request,
) -> Result<(String, serde_json::Value), HandlerError> {
    let to_value = |data: Result<serde_json::Value, serde_json::Error>| {
        data.map_err(|err| HandlerError::internal(format!("could not encode the answer: {err}")))
    };
    match request {
        Request::Status => {
            let mut status = handler.status(caller)?;
            status
                .runtimes
                .retain(|runtime| caller.can_see(Some(&runtime.name)));
            let message = format!(
                "guardian {}; {} runtime(s) visible; {} finding(s)",
                if status.running {
                    "running"
                } else {
                    "not running"
                },
                status.runtimes.len(),
                status.counts.total
            );
            Ok((message, to_value(serde_json::to_value(status))?))
        }
        Request::Findings(params) => {
            params.validate().map_err(|reason| HandlerError {
                code: ErrorCode::BadRequest,
                message: reason,
            })?;
            let found = handler.findings(caller, params)?;
            // The handler returns newest first; `select` expects write
            // order (oldest first) to break timestamp ties the same way.
            let findings = params.to_query(caller).select(found.into_iter().rev());
            let message = format!("{} finding(s)", findings.len());
            Ok((
                message,
                to_value(serde_json::to_value(FindingsData { findings }))?,
            ))
        }
        Request::CheckConfig => {
            let data: CheckConfigData = handler.check_config(caller)?;
            let message = format!(
                "host configuration is {}; {} problem(s)",
                if data.valid { "valid" } else { "invalid" },
                data.problems.len()
            );
            Ok((message, to_value(serde_json::to_value(data))?))
        }
    }
}

#[cfg(test)]
mod tests {
    use traffic_guardian_core::{Severity, Timestamp};
    use traffic_guardian_test_support::sample_finding;

    use super::*;
    use crate::protocol::{Counts, MODE_DETECT_AND_LOG, RuntimeStatus};

    fn finding(snippet: &str, secs: i64, runtime: Option<&str>) -> Finding {
        Finding {
            snippet: snippet.into(),
            timestamp: Timestamp::from_unix_millis(secs * 1000),
            runtime: runtime.map(str::to_owned),
            ..sample_finding()
        }
    }

    /// A careless handler: ignores the caller and every filter.
    struct Careless;

    impl TaskHandler for Careless {
        fn status(&self, _: &Caller) -> Result<StatusData, HandlerError> {
            let runtime = |name: &str| RuntimeStatus {
                name: name.into(),
                group: None,
                https_inspection: false,
                listen: None,
            };
            Ok(StatusData {
                running: true,
                mode: MODE_DETECT_AND_LOG.into(),
                uptime_seconds: None,
                runtimes: vec![runtime("rt-a"), runtime("rt-b")],
                counts: Counts::default(),
                last_finding_at: None,
                degraded: vec![],
                ca_fingerprint: None,
            })
        }

        fn findings(&self, _: &Caller, _: &FindingsParams) -> Result<Vec<Finding>, HandlerError> {
            Ok(vec![
                finding("b-new", 40, Some("rt-b")),
                finding("a-new", 30, Some("rt-a")),
                finding("none", 20, None),
                finding("a-old", 10, Some("rt-a")),
            ])
        }

        fn check_config(&self, _: &Caller) -> Result<CheckConfigData, HandlerError> {
            Err(HandlerError::unavailable("config unreadable"))
        }
    }

    /// A broken handler: panics.
    struct Panicking;

    impl TaskHandler for Panicking {
        fn status(&self, _: &Caller) -> Result<StatusData, HandlerError> {
            panic!("boom")
        }
        fn findings(&self, _: &Caller, _: &FindingsParams) -> Result<Vec<Finding>, HandlerError> {
            panic!("boom")
        }
        fn check_config(&self, _: &Caller) -> Result<CheckConfigData, HandlerError> {
            panic!("boom")
        }
    }

    fn caller(group: &str) -> Caller {
        let map = GroupMap::new()
            .with(GroupName::new("team-a").unwrap(), "rt-a")
            .with(GroupName::new("main").unwrap(), "rt-main");
        Caller::new(GroupName::new(group).unwrap(), &map)
    }

    fn id() -> RequestId {
        RequestId::new("r").unwrap()
    }

    #[track_caller]
    fn check_findings(group: &str, params: FindingsParams, expected: &[&str]) {
        let response = dispatch(&Careless, &caller(group), id(), &Request::Findings(params));
        assert!(response.success, "{response:?}");
        let data: FindingsData = response.data_as().unwrap();
        let got: Vec<&str> = data.findings.iter().map(|f| f.snippet.as_str()).collect();
        assert_eq!(got, expected, "group {group}");
    }

    #[test]
    fn findings_are_restricted_even_when_the_handler_forgets() {
        let all = FindingsParams::default;
        check_findings("main", all(), &["b-new", "a-new", "none", "a-old"]);
        check_findings("team-a", all(), &["a-new", "a-old"]);
        check_findings("unmapped", all(), &[]);
        check_findings(
            "main",
            FindingsParams { limit: 2, ..all() },
            &["b-new", "a-new"],
        );
        check_findings(
            "team-a",
            FindingsParams {
                since: Some(Timestamp::from_unix_millis(20_000)),
                ..all()
            },
            &["a-new"],
        );
        check_findings(
            "main",
            FindingsParams {
                min_severity: Some(Severity::Critical),
                ..all()
            },
            &[],
        );
    }

    #[test]
    fn status_lists_only_visible_runtimes() {
        let names = |group: &str| {
            let response = dispatch(&Careless, &caller(group), id(), &Request::Status);
            let status: StatusData = response.data_as().unwrap();
            status
                .runtimes
                .into_iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("main"), ["rt-a", "rt-b"]);
        assert_eq!(names("team-a"), ["rt-a"]);
        assert!(names("other").is_empty());
    }

    #[test]
    fn handler_errors_and_panics_become_error_results() {
        let response = dispatch(&Careless, &caller("main"), id(), &Request::CheckConfig);
        assert!(!response.success);
        let error = response.error.unwrap();
        assert_eq!(error.code, ErrorCode::Unavailable);
        assert_eq!(error.message, "config unreadable");
        assert!(response.data.is_none());

        for request in [
            Request::Status,
            Request::CheckConfig,
            Request::Findings(FindingsParams::default()),
        ] {
            let response = dispatch(&Panicking, &caller("main"), id(), &request);
            assert_eq!(response.error.unwrap().code, ErrorCode::Internal);
        }
    }

    #[test]
    fn out_of_range_limits_are_refused_before_the_handler_runs() {
        let params = FindingsParams {
            limit: 1000,
            ..FindingsParams::default()
        };
        let response = dispatch(
            &Panicking,
            &caller("main"),
            id(),
            &Request::Findings(params),
        );
        assert_eq!(response.error.unwrap().code, ErrorCode::BadRequest);
    }
}
