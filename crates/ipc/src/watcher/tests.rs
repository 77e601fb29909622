//! Watcher tests: real folders in a temp dir, driven scan by scan.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use traffic_guardian_core::{Finding, Timestamp};
use traffic_guardian_test_support::sample_finding;

use super::*;
use crate::client::{Client, ClientConfig};
use crate::handler::HandlerError;
use crate::protocol::{
    CheckConfigData, Counts, FindingsData, FindingsParams, MODE_DETECT_AND_LOG, RuntimeStatus,
    StatusData,
};

fn finding(snippet: &str, secs: i64, runtime: Option<&str>) -> Finding {
    Finding {
        snippet: snippet.into(),
        timestamp: Timestamp::from_unix_millis(secs * 1000),
        runtime: runtime.map(str::to_owned),
        ..sample_finding()
    }
}

/// Serves a fixed set of findings, honouring the caller like a real host.
struct Fixed(Vec<Finding>);

impl TaskHandler for Fixed {
    fn status(&self, caller: &Caller) -> Result<StatusData, HandlerError> {
        let mut counts = Counts::default();
        for f in &self.0 {
            if caller.can_see(f.runtime.as_deref()) {
                counts.add(f);
            }
        }
        Ok(StatusData {
            running: true,
            mode: MODE_DETECT_AND_LOG.into(),
            uptime_seconds: Some(1),
            runtimes: ["rt-a", "rt-b"]
                .iter()
                .map(|name| RuntimeStatus {
                    name: (*name).into(),
                    group: None,
                    https_inspection: false,
                    listen: None,
                })
                .collect(),
            counts,
            last_finding_at: None,
            degraded: vec![],
            ca_fingerprint: None,
        })
    }

    fn findings(
        &self,
        caller: &Caller,
        params: &FindingsParams,
    ) -> Result<Vec<Finding>, HandlerError> {
        let mut all = self.0.clone();
        all.sort_by_key(|f| f.timestamp);
        Ok(params.to_query(caller).select(all))
    }

    fn check_config(&self, _: &Caller) -> Result<CheckConfigData, HandlerError> {
        Ok(CheckConfigData {
            valid: true,
            problems: vec![],
            proxy_url: Some("http://host.docker.internal:3129".into()),
            ca_fingerprint: None,
        })
    }
}

fn handler() -> Arc<dyn TaskHandler> {
    Arc::new(Fixed(vec![
        finding("a1", 10, Some("rt-a")),
        finding("b1", 20, Some("rt-b")),
        finding("none", 30, None),
        finding("a2", 40, Some("rt-a")),
    ]))
}

fn groups() -> GroupMap {
    GroupMap::new()
        .with(GroupName::new("team-a").unwrap(), "rt-a")
        .with(GroupName::new("team-b").unwrap(), "rt-b")
}

struct Fixture {
    tmp: tempfile::TempDir,
    watcher: Watcher,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(|config| config)
    }

    fn with(tune: impl FnOnce(WatcherConfig) -> WatcherConfig) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let groups_root = tmp.path().join("data/ipc");
        for group in ["main", "team-a", "team-b"] {
            std::fs::create_dir_all(groups_root.join(group).join(TASKS_DIR)).unwrap();
        }
        let config = tune(
            WatcherConfig::new(tmp.path().join("state/quarantine")).with_groups_root(&groups_root),
        );
        let watcher = Watcher::new(config, groups(), handler()).unwrap();
        Fixture { tmp, watcher }
    }

    /// A fixture whose rate limit never gets in the way.
    fn unlimited() -> Fixture {
        Fixture::with(|mut config| {
            config.rate_limit = RateLimit {
                burst: 100,
                refill_every: Duration::from_millis(1),
            };
            config
        })
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("data/ipc")
    }

    fn tasks(&self, group: &str) -> PathBuf {
        self.root().join(group).join(TASKS_DIR)
    }

    fn drop_task(&self, group: &str, name: &str, bytes: &[u8]) {
        std::fs::write(self.tasks(group).join(name), bytes).unwrap();
    }

    fn result(&self, group: &str, id: &str) -> Option<Response> {
        let path = self
            .root()
            .join(group)
            .join(RESULTS_DIR)
            .join(format!("{id}.json"));
        let bytes = std::fs::read(path).ok()?;
        Some(Response::parse(&bytes).unwrap())
    }

    fn quarantined(&self, group: &str) -> Vec<String> {
        let dir = self.tmp.path().join("state/quarantine").join(group);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn task_entries(&self, group: &str) -> usize {
        std::fs::read_dir(self.tasks(group)).unwrap().count()
    }
}

fn task(id: &str, body: &str) -> Vec<u8> {
    format!(r#"{{"version":1,"requestId":"{id}",{body}}}"#).into_bytes()
}

fn snippets(response: &Response) -> Vec<String> {
    let data: FindingsData = response.data_as().unwrap();
    data.findings.into_iter().map(|f| f.snippet).collect()
}

#[test]
fn answers_every_task_type_and_removes_the_tasks() {
    let mut fx = Fixture::new();
    fx.drop_task("team-a", "s1.json", &task("s1", r#""type":"status""#));
    fx.drop_task(
        "team-a",
        "f1.json",
        &task("f1", r#""type":"findings","params":{"limit":5}"#),
    );
    fx.drop_task("team-a", "c1.json", &task("c1", r#""type":"check_config""#));
    let report = fx.watcher.scan_once();
    assert_eq!(report.answered, 3, "{report:?}");
    assert_eq!(fx.task_entries("team-a"), 0);

    let status: StatusData = fx.result("team-a", "s1").unwrap().data_as().unwrap();
    assert_eq!(status.counts.total, 2);
    let names: Vec<_> = status.runtimes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["rt-a"]);
    assert_eq!(snippets(&fx.result("team-a", "f1").unwrap()), ["a2", "a1"]);
    let check: CheckConfigData = fx.result("team-a", "c1").unwrap().data_as().unwrap();
    assert!(check.valid);

    // Nothing left to do: a second scan is idle.
    let report = fx.watcher.scan_once();
    assert_eq!(report.answered + report.rejected + report.quarantined, 0);
}

#[test]
fn malformed_tasks_get_error_results() {
    let mut fx = Fixture::unlimited();
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        ("json", b"{not json".to_vec(), ErrorCode::BadRequest),
        ("empty", Vec::new(), ErrorCode::BadRequest),
        ("array", b"[]".to_vec(), ErrorCode::BadRequest),
        (
            "big",
            {
                let mut big = task("big", r#""type":"status","params":{}"#);
                big.extend(std::iter::repeat_n(b' ', 64 * 1024));
                big
            },
            ErrorCode::TooLarge,
        ),
        (
            "type",
            task("type", r#""type":"delete_everything""#),
            ErrorCode::UnknownType,
        ),
        (
            "version",
            br#"{"version":2,"requestId":"version","type":"status"}"#.to_vec(),
            ErrorCode::UnsupportedVersion,
        ),
        (
            "noversion",
            br#"{"requestId":"noversion","type":"status"}"#.to_vec(),
            ErrorCode::BadRequest,
        ),
        (
            "mismatch",
            task("other-id", r#""type":"status""#),
            ErrorCode::BadRequest,
        ),
        (
            "badid",
            task("../../etc/cron.d/x", r#""type":"status""#),
            ErrorCode::BadRequest,
        ),
        (
            "limit",
            task("limit", r#""type":"findings","params":{"limit":101}"#),
            ErrorCode::BadRequest,
        ),
        (
            "severity",
            task(
                "severity",
                r#""type":"findings","params":{"minSeverity":"urgent"}"#,
            ),
            ErrorCode::BadRequest,
        ),
        (
            "group",
            task("group", r#""type":"findings","group":"main""#),
            ErrorCode::BadRequest,
        ),
    ];
    for (id, bytes, _) in &cases {
        fx.drop_task("team-a", &format!("{id}.json"), bytes);
    }
    let report = fx.watcher.scan_once();
    // A few per scan by default: run until all are done.
    let mut rejected = report.rejected;
    while rejected < cases.len() {
        let report = fx.watcher.scan_once();
        assert!(report.rejected > 0, "no progress: {report:?}");
        rejected += report.rejected;
    }
    for (id, _, code) in &cases {
        let response = fx
            .result("team-a", id)
            .unwrap_or_else(|| panic!("no result for {id}"));
        assert!(!response.success, "{id}");
        assert!(response.data.is_none(), "{id}");
        let error = response.error.unwrap();
        assert_eq!(error.code, *code, "{id}: {}", error.message);
        assert!(!error.message.is_empty());
        assert_eq!(response.request_id.as_str(), *id);
    }
    assert_eq!(fx.task_entries("team-a"), 0);
    assert!(fx.quarantined("team-a").is_empty());
}

#[test]
fn unanswerable_entries_are_quarantined_without_being_opened() {
    let mut fx = Fixture::with(|mut config| {
        config.max_tasks_per_group_per_scan = 16;
        config
    });
    let outside = fx.tmp.path().join("secret.txt");
    std::fs::write(&outside, b"do not read").unwrap();
    let tasks = fx.tasks("team-a");
    // No valid request id in the name.
    fx.drop_task("team-a", "bad id.json", &task("x", r#""type":"status""#));
    fx.drop_task("team-a", "notes.txt", b"hello");
    fx.drop_task("team-a", &format!("{}.json", "x".repeat(129)), b"{}");
    // Valid names, wrong kinds of file.
    symlink(&outside, tasks.join("link.json")).unwrap();
    std::fs::create_dir(tasks.join("dir.json")).unwrap();
    std::fs::create_dir_all(tasks.join("full.json/inside")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(tasks.join("fifo.json"))
        .status()
        .unwrap();
    assert!(status.success());
    // A hard link to a file elsewhere in the group folder.
    let other = fx.root().join("team-a/elsewhere.json");
    std::fs::write(&other, task("hard", r#""type":"status""#)).unwrap();
    std::fs::hard_link(&other, tasks.join("hard.json")).unwrap();

    let report = fx.watcher.scan_once();
    assert_eq!(report.quarantined, 8, "{report:?}");
    assert_eq!(report.answered + report.rejected, 0, "{report:?}");
    // Folders are never moved into the host's quarantine: the empty one is
    // removed, the other left in place (and skipped from then on).
    let left: Vec<_> = std::fs::read_dir(&tasks)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["full.json"]);
    let moved = fx.quarantined("team-a");
    assert_eq!(moved.len(), 6, "{moved:?}");
    assert!(
        !moved
            .iter()
            .any(|m| m.contains("dir.json") || m.contains("full.json"))
    );
    for name in ["bad_id.json", "notes.txt", "xxxx", "link.json", "fifo.json"] {
        assert!(
            moved.iter().any(|m| m.contains(&format!("-{name}"))),
            "{name} not in {moved:?}"
        );
    }
    // The symlink was moved, not followed; its target is intact.
    assert_eq!(std::fs::read(&outside).unwrap(), b"do not read");
    for id in ["link", "dir", "full", "fifo", "hard"] {
        assert!(fx.result("team-a", id).is_none(), "{id} was answered");
    }
    let again = fx.watcher.scan_once();
    assert_eq!(again.quarantined, 0, "{again:?}");
    // The quarantine is outside every group folder.
    assert!(!fx.tmp.path().join("state").starts_with(fx.root()));
}

#[test]
fn temp_files_in_progress_are_left_alone() {
    let mut fx = Fixture::new();
    fx.drop_task("team-a", ".s1.json.tmp-0011", b"{\"vers");
    let report = fx.watcher.scan_once();
    assert_eq!(
        report,
        ScanReport {
            mailboxes: 3,
            ..ScanReport::default()
        }
    );
    assert_eq!(fx.task_entries("team-a"), 1);
}

#[test]
fn symlinked_folders_are_refused_and_nothing_is_written_outside() {
    let mut fx = Fixture::new();
    let outside = fx.tmp.path().join("outside");
    std::fs::create_dir_all(outside.join(TASKS_DIR)).unwrap();
    std::fs::write(
        outside.join(TASKS_DIR).join("o1.json"),
        task("o1", r#""type":"status""#),
    )
    .unwrap();

    // A group folder that is a symlink to somewhere else.
    symlink(&outside, fx.root().join("evil")).unwrap();
    // A results folder that is a symlink out of the group.
    let results_target = fx.tmp.path().join("results-target");
    std::fs::create_dir(&results_target).unwrap();
    symlink(&results_target, fx.root().join("team-a").join(RESULTS_DIR)).unwrap();
    fx.drop_task("team-a", "r1.json", &task("r1", r#""type":"status""#));
    // A tasks folder that is a symlink to another group's tasks.
    std::fs::remove_dir(fx.tasks("team-b")).unwrap();
    symlink(fx.tasks("main"), fx.tasks("team-b")).unwrap();
    fx.drop_task("main", "m1.json", &task("m1", r#""type":"status""#));

    let report = fx.watcher.scan_once();
    assert_eq!(report.refused, 3, "{report:?}");
    // Only main's own task was answered, in main's own folder.
    assert_eq!(report.answered, 1, "{report:?}");
    assert!(fx.result("main", "m1").is_some());
    // Nothing went through the links.
    assert_eq!(std::fs::read_dir(&results_target).unwrap().count(), 0);
    assert!(!outside.join(RESULTS_DIR).exists());
    assert!(outside.join(TASKS_DIR).join("o1.json").exists());
    // The refused group's task is left where it is.
    assert_eq!(fx.task_entries("team-a"), 1);
}

#[test]
fn a_results_file_planted_as_a_symlink_is_replaced_not_followed() {
    let mut fx = Fixture::new();
    let victim = fx.tmp.path().join("victim.json");
    std::fs::write(&victim, b"precious").unwrap();
    let results = fx.root().join("team-a").join(RESULTS_DIR);
    std::fs::create_dir(&results).unwrap();
    symlink(&victim, results.join("r1.json")).unwrap();
    fx.drop_task("team-a", "r1.json", &task("r1", r#""type":"status""#));
    assert_eq!(fx.watcher.scan_once().answered, 1);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(fx.result("team-a", "r1").unwrap().success);
}

#[test]
fn a_group_that_makes_every_answer_fail_is_logged_once_not_per_task() {
    let mut fx = Fixture::unlimited();
    let results = fx.root().join("team-a").join(RESULTS_DIR);
    for n in 0..20 {
        // A non-empty folder where each result goes: no rename can replace it.
        std::fs::create_dir_all(results.join(format!("w{n}.json")).join("x")).unwrap();
        fx.drop_task(
            "team-a",
            &format!("w{n}.json"),
            &task(&format!("w{n}"), r#""type":"status""#),
        );
    }
    let capture = traffic_guardian_test_support::LogCapture::new();
    capture.run(async {
        while fx.task_entries("team-a") > 0 {
            fx.watcher.scan_once();
        }
    });
    let text = capture.text();
    assert_eq!(text.matches("cannot write").count(), 1, "{text}");
}

#[test]
fn the_group_comes_from_the_folder_never_the_payload() {
    let mut fx = Fixture::new();
    for group in ["main", "team-a", "team-b"] {
        fx.drop_task(group, "f.json", &task("f", r#""type":"findings""#));
    }
    std::fs::create_dir_all(fx.root().join("stranger").join(TASKS_DIR)).unwrap();
    fx.drop_task("stranger", "f.json", &task("f", r#""type":"findings""#));
    assert_eq!(fx.watcher.scan_once().answered, 4);
    assert_eq!(
        snippets(&fx.result("main", "f").unwrap()),
        ["a2", "none", "b1", "a1"]
    );
    assert_eq!(snippets(&fx.result("team-a", "f").unwrap()), ["a2", "a1"]);
    assert_eq!(snippets(&fx.result("team-b", "f").unwrap()), ["b1"]);
    assert!(snippets(&fx.result("stranger", "f").unwrap()).is_empty());

    // Folders that are not valid group names are not served.
    for name in ["bad.name", "-x"] {
        std::fs::create_dir_all(fx.root().join(name).join(TASKS_DIR)).unwrap();
        std::fs::write(
            fx.root().join(name).join(TASKS_DIR).join("f.json"),
            task("f", r#""type":"findings""#),
        )
        .unwrap();
    }
    fx.watcher.scan_once();
    assert!(!fx.root().join("bad.name").join(RESULTS_DIR).exists());
    assert!(!fx.root().join("-x").join(RESULTS_DIR).exists());
}

#[test]
fn the_rate_limit_refuses_a_flood_with_a_clear_error() {
    let mut fx = Fixture::with(|mut config| {
        config.rate_limit = RateLimit {
            burst: 2,
            refill_every: Duration::from_secs(3600),
        };
        config
    });
    for i in 0..4 {
        fx.drop_task(
            "team-a",
            &format!("t{i}.json"),
            &task(&format!("t{i}"), r#""type":"status""#),
        );
    }
    fx.drop_task("team-b", "b.json", &task("b", r#""type":"status""#));
    let report = fx.watcher.scan_once();
    assert_eq!(report.answered, 3, "{report:?}");
    assert_eq!(report.rate_limited, 2, "{report:?}");
    let limited: Vec<_> = (0..4)
        .filter_map(|i| fx.result("team-a", &format!("t{i}")))
        .filter(|r| !r.success)
        .collect();
    assert_eq!(limited.len(), 2);
    for response in limited {
        let error = response.error.unwrap();
        assert_eq!(error.code, ErrorCode::RateLimited);
        assert!(error.message.contains("team-a"), "{}", error.message);
    }
    assert!(fx.result("team-b", "b").unwrap().success);
}

#[test]
fn a_hostile_group_gets_bounded_work_per_scan() {
    let mut fx = Fixture::with(|mut config| {
        config.max_tasks_per_group_per_scan = 3;
        config.max_entries_per_scan = 64;
        config.rate_limit = RateLimit {
            burst: 1000,
            refill_every: Duration::from_millis(1),
        };
        config
    });
    for i in 0..200 {
        fx.drop_task("team-a", &format!("x{i}.json"), b"junk");
    }
    fx.drop_task(
        "team-b",
        "honest.json",
        &task("honest", r#""type":"status""#),
    );
    let report = fx.watcher.scan_once();
    assert_eq!(report.rejected, 3, "{report:?}");
    assert!(fx.result("team-b", "honest").unwrap().success);
    assert_eq!(fx.task_entries("team-a"), 197);
}

#[test]
fn a_group_byte_budget_defers_the_rest() {
    let mut fx = Fixture::with(|mut config| {
        config.max_task_bytes = 1000;
        config.max_bytes_per_group_per_scan = 1000;
        config
    });
    let mut padded = task("p0", r#""type":"status""#);
    padded.resize(900, b' ');
    fx.drop_task("team-a", "p0.json", &padded);
    padded = task("p1", r#""type":"status""#);
    padded.resize(900, b' ');
    fx.drop_task("team-a", "p1.json", &padded);
    let report = fx.watcher.scan_once();
    assert_eq!((report.answered, report.deferred), (1, 1), "{report:?}");
    let report = fx.watcher.scan_once();
    assert_eq!((report.answered, report.deferred), (1, 0), "{report:?}");
}

#[test]
fn stale_results_are_swept() {
    let mut fx = Fixture::with(|mut config| {
        config.result_ttl = Duration::from_secs(60);
        config
    });
    let results = fx.root().join("team-a").join(RESULTS_DIR);
    std::fs::create_dir(&results).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    let abandoned = std::fs::File::create(fx.tasks("team-a").join(".t.json.tmp-01")).unwrap();
    abandoned.set_modified(old).unwrap();
    for name in ["old.json", ".old.json.tmp-00", "fresh.json", "keep.txt"] {
        let file = std::fs::File::create(results.join(name)).unwrap();
        if name != "fresh.json" {
            file.set_modified(old).unwrap();
        }
    }
    let report = fx.watcher.scan_once();
    assert_eq!(report.expired, 3, "{report:?}");
    let mut left: Vec<_> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["fresh.json", "keep.txt"]);
    assert_eq!(fx.task_entries("team-a"), 0);
}

#[test]
fn sessions_root_serves_v2_agent_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let sessions = tmp.path().join("data/v2-sessions");
    let session = sessions.join("team-a/sess-1");
    std::fs::create_dir_all(session.join(TASKS_DIR)).unwrap();
    std::fs::write(
        session.join(TASKS_DIR).join("f.json"),
        task("f", r#""type":"findings""#),
    )
    .unwrap();
    // A session folder that is a symlink is refused.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join(TASKS_DIR)).unwrap();
    std::fs::write(
        elsewhere.join(TASKS_DIR).join("e.json"),
        task("e", r#""type":"status""#),
    )
    .unwrap();
    symlink(&elsewhere, sessions.join("team-a/sess-2")).unwrap();

    let config = WatcherConfig::new(tmp.path().join("quarantine")).with_sessions_root(&sessions);
    let mut watcher = Watcher::new(config, groups(), handler()).unwrap();
    let report = watcher.scan_once();
    assert_eq!((report.answered, report.refused), (1, 1), "{report:?}");
    let bytes = std::fs::read(session.join(RESULTS_DIR).join("f.json")).unwrap();
    let response = Response::parse(&bytes).unwrap();
    assert_eq!(snippets(&response), ["a2", "a1"]);
    assert!(!elsewhere.join(RESULTS_DIR).exists());
}

#[test]
fn configuration_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data/ipc");
    std::fs::create_dir_all(&root).unwrap();
    let check = |config: WatcherConfig| Watcher::new(config, groups(), handler()).err();
    let err = check(WatcherConfig::new(root.join("main/q")).with_groups_root(&root)).unwrap();
    assert!(err.to_string().contains("quarantine_dir"), "{err}");
    let err = check(WatcherConfig::new(tmp.path().join("q"))).unwrap();
    assert!(err.to_string().contains("groups_root"), "{err}");
    let mut config = WatcherConfig::new(tmp.path().join("q")).with_groups_root(&root);
    config.max_bytes_per_group_per_scan = 10;
    assert!(check(config).is_some());
    // The quarantine may not hide inside a root through a symlink either.
    symlink(root.join("main"), tmp.path().join("sneaky")).unwrap();
    std::fs::create_dir_all(root.join("main")).unwrap();
    let err = check(WatcherConfig::new(tmp.path().join("sneaky/q")).with_groups_root(&root));
    assert!(err.is_some());
    assert!(check(WatcherConfig::new(tmp.path().join("q")).with_groups_root(&root)).is_none());
}

#[test]
fn a_spawned_watcher_answers_clients_and_stops_promptly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data/ipc");
    std::fs::create_dir_all(root.join("team-a")).unwrap();
    let mut config = WatcherConfig::new(tmp.path().join("q")).with_groups_root(&root);
    config.poll_interval = Duration::from_millis(10);
    let handle = Watcher::new(config, groups(), handler())
        .unwrap()
        .spawn()
        .unwrap();

    let client = Client::new(ClientConfig::new(root.join("team-a")));
    let data = client.findings(FindingsParams::default()).unwrap();
    let got: Vec<_> = data.findings.iter().map(|f| f.snippet.as_str()).collect();
    assert_eq!(got, ["a2", "a1"]);
    // The client deleted the result it read.
    assert_eq!(
        std::fs::read_dir(root.join("team-a").join(RESULTS_DIR))
            .unwrap()
            .count(),
        0
    );
    let err = client
        .findings(FindingsParams {
            limit: 0,
            ..FindingsParams::default()
        })
        .unwrap_err();
    assert!(
        matches!(
            &err,
            crate::Error::Remote {
                code: ErrorCode::BadRequest,
                ..
            }
        ),
        "{err}"
    );

    // A new group map takes effect for the next task: the watcher reads the
    // map after it lists a task, and this task is written after the swap.
    handle.set_groups(GroupMap::new().with(GroupName::new("team-a").unwrap(), "rt-b"));
    let data = client.findings(FindingsParams::default()).unwrap();
    let got: Vec<_> = data.findings.iter().map(|f| f.snippet.as_str()).collect();
    assert_eq!(got, ["b1"]);

    let started = Instant::now();
    handle.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn shutdown_interrupts_a_long_poll_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ipc");
    std::fs::create_dir_all(&root).unwrap();
    let mut config = WatcherConfig::new(tmp.path().join("q")).with_groups_root(&root);
    config.poll_interval = Duration::from_secs(3600);
    let handle = Watcher::new(config, groups(), handler())
        .unwrap()
        .spawn()
        .unwrap();
    let started = Instant::now();
    drop(handle);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn paths_helper_sees_through_missing_components() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(inside(&tmp.path().join("a/b/c"), tmp.path()));
    assert!(!inside(tmp.path(), &tmp.path().join("a")));
    assert!(!inside(Path::new("/elsewhere/x"), tmp.path()));
}
