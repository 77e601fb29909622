//! A host-side [`TaskHandler`] over a findings log folder, as the host
//! service answers IPC tasks: the stand-in the end-to-end tests put behind
//! the real watcher.

use std::path::PathBuf;

use traffic_guardian_core::Finding;
use traffic_guardian_core::FindingQuery;
use traffic_guardian_ipc::protocol::MODE_DETECT_AND_LOG;
use traffic_guardian_ipc::{
    Caller, CheckConfigData, ConfigProblem, Counts, FindingsParams, HandlerError, ProblemLevel,
    RuntimeStatus, StatusData, TaskHandler,
};

/// Answers from the findings log in `dir`, for a fixed set of runtimes.
#[derive(Debug, Clone)]
pub struct FindingsLogHost {
    /// The findings log folder (as `FindingLog` writes it).
    pub dir: PathBuf,
    /// `(runtime, group, https inspection)` for every runtime.
    pub runtimes: Vec<(String, String, bool)>,
    /// The proxy URL containers should use.
    pub proxy_url: String,
    /// The CA fingerprint, reported for callers with an inspected runtime.
    pub ca_fingerprint: String,
}

impl FindingsLogHost {
    fn visible(&self, caller: &Caller) -> impl Iterator<Item = &(String, String, bool)> {
        self.runtimes
            .iter()
            .filter(move |(name, _, _)| caller.can_see(Some(name)))
    }

    fn inspected(&self, caller: &Caller) -> bool {
        self.visible(caller).any(|(_, _, inspected)| *inspected)
    }

    fn query(&self, query: &FindingQuery) -> Result<Vec<Finding>, HandlerError> {
        query
            .run(&self.dir)
            .map(|report| report.findings)
            .map_err(|err| HandlerError::unavailable(format!("findings log unreadable: {err}")))
    }
}

impl TaskHandler for FindingsLogHost {
    fn status(&self, caller: &Caller) -> Result<StatusData, HandlerError> {
        let all = FindingQuery {
            runtimes: caller.visible_runtimes().map(<[String]>::to_vec),
            ..FindingQuery::default()
        };
        let findings = self.query(&all)?;
        let mut counts = Counts::default();
        for finding in &findings {
            counts.add(finding);
        }
        Ok(StatusData {
            running: true,
            mode: MODE_DETECT_AND_LOG.into(),
            uptime_seconds: Some(42),
            runtimes: self
                .visible(caller)
                .map(|(name, group, inspected)| RuntimeStatus {
                    name: name.clone(),
                    group: Some(group.clone()),
                    https_inspection: *inspected,
                    listen: None,
                })
                .collect(),
            counts,
            last_finding_at: findings.first().map(|f| f.timestamp),
            degraded: vec![],
            ca_fingerprint: self.inspected(caller).then(|| self.ca_fingerprint.clone()),
        })
    }

    fn findings(
        &self,
        caller: &Caller,
        params: &FindingsParams,
    ) -> Result<Vec<Finding>, HandlerError> {
        self.query(&params.to_query(caller))
    }

    fn check_config(&self, caller: &Caller) -> Result<CheckConfigData, HandlerError> {
        Ok(CheckConfigData {
            valid: true,
            problems: vec![ConfigProblem {
                path: "runtimes.rt-b.https_inspection".into(),
                reason: "off: rt-b's HTTPS is logged as CONNECT metadata only".into(),
                level: ProblemLevel::Warning,
            }],
            proxy_url: Some(self.proxy_url.clone()),
            ca_fingerprint: self.inspected(caller).then(|| self.ca_fingerprint.clone()),
        })
    }
}
