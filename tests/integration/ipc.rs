//! The IPC channel end to end: real clients in several group folders
//! against one running watcher.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use traffic_guardian_core::{Finding, FindingLog, Rotation, Timestamp};
use traffic_guardian_ipc::protocol::{RESULTS_DIR, TASKS_DIR};
use traffic_guardian_ipc::{
    Caller, CheckConfigData, Client, ClientConfig, ErrorCode, FindingsParams, GroupMap, GroupName,
    HandlerError, RateLimit, Response, ScanReport, StatusData, TaskHandler, Watcher, WatcherConfig,
};
use traffic_guardian_tests::canary::{Canaries, canary_findings};
use traffic_guardian_tests::host::FindingsLogHost;

/// A findings log under `home` holding the canary findings.
fn findings_log(home: &Path, canaries: &Canaries) -> (PathBuf, Vec<Finding>) {
    let log = home.join("findings");
    let findings = canary_findings(canaries, Timestamp::now().unix_millis() - 60_000);
    let mut sink = FindingLog::open(&log, Rotation::default()).unwrap();
    for finding in &findings {
        sink.append(finding).unwrap();
    }
    (log, findings)
}

#[test]
fn concurrent_requests_from_several_groups_are_answered_within_their_rights() {
    let tmp = tempfile::tempdir().unwrap();
    let canaries = Canaries::new();
    let (log, findings) = findings_log(&tmp.path().join("home"), &canaries);

    let root = tmp.path().join("data/ipc");
    let groups = ["main", "team-a", "team-b", "team-c"];
    for group in groups {
        std::fs::create_dir_all(root.join(group)).unwrap();
    }
    let map = GroupMap::new()
        .with(GroupName::new("team-a").unwrap(), "rt-a")
        .with(GroupName::new("team-b").unwrap(), "rt-b");
    let host = FindingsLogHost {
        dir: log,
        runtimes: vec![
            ("rt-a".into(), "team-a".into(), true),
            ("rt-b".into(), "team-b".into(), false),
        ],
        proxy_url: "http://127.0.0.1:3129".into(),
        ca_fingerprint: "ab".repeat(32),
    };
    let mut config = WatcherConfig::new(tmp.path().join("home/quarantine")).with_groups_root(&root);
    config.poll_interval = Duration::from_millis(10);
    config.rate_limit = RateLimit {
        burst: 100,
        refill_every: Duration::from_millis(1),
    };
    let handle = Watcher::new(config, map, Arc::new(host))
        .unwrap()
        .spawn()
        .unwrap();

    // What each group may see, by runtime (`None` for unattributed).
    let allowed = |group: &str| -> BTreeSet<Option<String>> {
        let all: BTreeSet<Option<String>> = findings.iter().map(|f| f.runtime.clone()).collect();
        match group {
            "main" => all,
            "team-a" => [Some("rt-a".to_owned())].into(),
            "team-b" => [Some("rt-b".to_owned())].into(),
            _ => BTreeSet::new(),
        }
    };

    const THREADS_PER_GROUP: usize = 3;
    const REQUESTS_PER_THREAD: usize = 4;
    let started = Instant::now();
    let latencies = std::thread::scope(|scope| {
        let mut workers = Vec::new();
        for group in groups {
            for _ in 0..THREADS_PER_GROUP {
                let client = Client::new(ClientConfig::new(root.join(group)));
                let allowed = allowed(group);
                workers.push(scope.spawn(move || {
                    let mut latencies = Vec::new();
                    for i in 0..REQUESTS_PER_THREAD {
                        let asked = Instant::now();
                        if i % 2 == 0 {
                            let data = client.findings(FindingsParams::default()).unwrap();
                            let seen: BTreeSet<_> =
                                data.findings.iter().map(|f| f.runtime.clone()).collect();
                            assert_eq!(seen, allowed, "group {group}");
                        } else {
                            let status = client.status().unwrap();
                            let names: BTreeSet<_> = status
                                .runtimes
                                .iter()
                                .map(|r| Some(r.name.clone()))
                                .collect();
                            assert!(names.is_subset(&allowed), "group {group}: {names:?}");
                        }
                        latencies.push(asked.elapsed());
                    }
                    latencies
                }));
            }
        }
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    });
    let elapsed = started.elapsed();
    handle.shutdown();

    let mut sorted = latencies.clone();
    sorted.sort();
    let expected = groups.len() * THREADS_PER_GROUP * REQUESTS_PER_THREAD;
    assert_eq!(sorted.len(), expected);
    eprintln!(
        "{expected} IPC calls from {} groups in {elapsed:?}: median {:?}, max {:?}",
        groups.len(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
    // Every task and result was cleaned up.
    for group in groups {
        for folder in ["clawsec_traffic_tasks", "clawsec_results"] {
            let left = std::fs::read_dir(root.join(group).join(folder))
                .unwrap()
                .count();
            assert_eq!(left, 0, "{group}/{folder}");
        }
    }
}

/// The host behind the watcher, counting the calls each group causes: the
/// host work a group can make the watcher ask for.
struct CountingHost {
    inner: FindingsLogHost,
    calls: Mutex<HashMap<String, usize>>,
}

impl CountingHost {
    fn count(&self, caller: &Caller) {
        let mut calls = self.calls.lock().unwrap();
        *calls.entry(caller.group.as_str().to_owned()).or_default() += 1;
    }

    fn calls(&self, group: &str) -> usize {
        self.calls.lock().unwrap().get(group).copied().unwrap_or(0)
    }
}

impl TaskHandler for CountingHost {
    fn status(&self, caller: &Caller) -> Result<StatusData, HandlerError> {
        self.count(caller);
        self.inner.status(caller)
    }

    fn findings(
        &self,
        caller: &Caller,
        params: &FindingsParams,
    ) -> Result<Vec<Finding>, HandlerError> {
        self.count(caller);
        self.inner.findings(caller, params)
    }

    fn check_config(&self, caller: &Caller) -> Result<CheckConfigData, HandlerError> {
        self.count(caller);
        self.inner.check_config(caller)
    }
}

/// Checks one scan's report against the per-scan budgets, for `busy`
/// groups with something to do.
fn check_bounded(report: &ScanReport, config: &WatcherConfig, busy: usize) {
    let per_group = config.max_tasks_per_group_per_scan;
    let handled = report.answered + report.rejected + report.quarantined;
    assert!(handled <= busy * per_group, "{report:?}");
    assert!(
        report.rate_limited <= per_group,
        "only one group floods: {report:?}"
    );
    assert_eq!(report.refused, 0, "{report:?}");
}

#[test]
fn a_flooding_group_gets_bounded_work_while_another_is_answered_promptly() {
    const POLL: Duration = Duration::from_millis(20);
    const FLOOD: usize = 2500;
    const MORE: usize = 1000;
    const JUNK: usize = 150;
    const GARBAGE: usize = 150;
    const OVERSIZED: usize = 20;
    const FIFOS: usize = 20;
    const LINKS: usize = 20;
    const DIRS: usize = 5;

    let tmp = tempfile::tempdir().unwrap();
    let canaries = Canaries::new();
    let (log, findings) = findings_log(&tmp.path().join("home"), &canaries);
    let root = tmp.path().join("data/ipc");
    let hostile = root.join("hostile").join(TASKS_DIR);
    std::fs::create_dir_all(&hostile).unwrap();
    std::fs::create_dir_all(root.join("team-a")).unwrap();
    let map = GroupMap::new()
        .with(GroupName::new("team-a").unwrap(), "rt-a")
        .with(GroupName::new("hostile").unwrap(), "rt-b");
    let handler = Arc::new(CountingHost {
        inner: FindingsLogHost {
            dir: log,
            runtimes: vec![
                ("rt-a".into(), "team-a".into(), true),
                ("rt-b".into(), "hostile".into(), false),
            ],
            proxy_url: "http://127.0.0.1:3129".into(),
            ca_fingerprint: "ab".repeat(32),
        },
        calls: Mutex::new(HashMap::new()),
    });

    // The flood, in place before the watcher starts: thousands of valid
    // tasks, names that are no request id, undecodable tasks, oversized
    // (sparse) ones, FIFOs that would block a reader, symlinks to a host
    // file, and directories.
    let status_task = |id: &str| format!(r#"{{"version":1,"requestId":"{id}","type":"status"}}"#);
    for i in 0..FLOOD {
        std::fs::write(
            hostile.join(format!("t{i}.json")),
            status_task(&format!("t{i}")),
        )
        .unwrap();
    }
    for i in 0..JUNK {
        std::fs::write(hostile.join(format!("junk {i}.txt")), b"\x00\xff junk").unwrap();
    }
    for i in 0..GARBAGE {
        std::fs::write(
            hostile.join(format!("g{i}.json")),
            b"{\"version\":1,\"requestId\":",
        )
        .unwrap();
    }
    for i in 0..OVERSIZED {
        let file = std::fs::File::create(hostile.join(format!("big{i}.json"))).unwrap();
        file.set_len(64 << 20).unwrap();
    }
    let fifos: Vec<PathBuf> = (0..FIFOS)
        .map(|i| hostile.join(format!("fifo{i}.json")))
        .collect();
    let made = std::process::Command::new("mkfifo")
        .args(&fifos)
        .status()
        .unwrap();
    assert!(made.success());
    let secret_file = tmp.path().join("host-secret.txt");
    let secret = format!("host secret {}", canaries.github_token);
    std::fs::write(&secret_file, &secret).unwrap();
    for i in 0..LINKS {
        std::os::unix::fs::symlink(&secret_file, hostile.join(format!("link{i}.json"))).unwrap();
    }
    for i in 0..DIRS {
        std::fs::create_dir(hostile.join(format!("d{i}.json"))).unwrap();
    }

    let mut config = WatcherConfig::new(tmp.path().join("home/quarantine")).with_groups_root(&root);
    config.poll_interval = POLL;
    let limit = config.rate_limit;
    let started = Instant::now();
    let mut watcher = Watcher::new(config.clone(), map, handler.clone()).unwrap();

    // The watcher's loop, as `Watcher::spawn` runs it, keeping each scan's
    // report and how long it took.
    let (stop, stopped) = mpsc::channel::<()>();
    let (scanned, scans) = mpsc::channel::<()>();
    let scanning = std::thread::spawn(move || {
        let mut reports = Vec::new();
        loop {
            let began = Instant::now();
            reports.push((watcher.scan_once(), began.elapsed()));
            let _ = scanned.send(());
            if stopped.recv_timeout(POLL) != Err(mpsc::RecvTimeoutError::Timeout) {
                return (watcher, reports);
            }
        }
    });
    // The hostile group keeps writing while the other one asks.
    let flooding = Arc::new(AtomicBool::new(true));
    let flooder = std::thread::spawn({
        let flooding = flooding.clone();
        let hostile = hostile.clone();
        move || {
            let mut written = 0;
            while written < MORE && flooding.load(Ordering::Relaxed) {
                let id = format!("m{written}");
                std::fs::write(hostile.join(format!("{id}.json")), status_task(&id)).unwrap();
                written += 1;
            }
            written
        }
    });

    // Ask once the watcher is deep in the flood.
    for _ in 0..5 {
        scans.recv_timeout(Duration::from_secs(20)).unwrap();
    }
    let client = Client::new(ClientConfig {
        timeout: Duration::from_secs(20),
        ..ClientConfig::new(root.join("team-a"))
    });
    let asked = Instant::now();
    let answer = client.findings(FindingsParams::default()).unwrap();
    let latency = asked.elapsed();
    flooding.store(false, Ordering::Relaxed);
    let more = flooder.join().unwrap();
    stop.send(()).unwrap();
    let (mut watcher, reports) = scanning.join().unwrap();

    // Answered promptly, and right: team-a's findings, redacted.
    let slowest = reports.iter().map(|(_, took)| *took).max().unwrap();
    eprintln!(
        "team-a answered in {latency:?} during a flood of {} entries \
         ({} scans, the slowest took {slowest:?})",
        FLOOD + more + JUNK + GARBAGE + OVERSIZED + FIFOS + LINKS + DIRS,
        reports.len()
    );
    assert!(
        latency < Duration::from_secs(3),
        "answered after {latency:?}"
    );
    let expected: Vec<_> = findings
        .iter()
        .filter(|f| f.runtime.as_deref() == Some("rt-a"))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(answer.findings.len(), expected.len(), "{answer:?}");
    assert!(
        answer
            .findings
            .iter()
            .all(|f| f.runtime.as_deref() == Some("rt-a"))
    );
    let text = serde_json::to_string(&answer.findings).unwrap();
    assert!(canaries.leaks(&text).is_empty(), "{text}");
    assert_eq!(handler.calls("team-a"), 1);

    // Every scan stayed within its budgets, and the flood outlasted them.
    let reports: Vec<ScanReport> = reports.into_iter().map(|(report, _)| report).collect();
    for report in &reports {
        check_bounded(report, &config, 2);
    }
    assert!(reports.iter().all(|r| r.deferred > 0), "{reports:?}");

    // Drain the rest, scan after scan, each still bounded.
    let entries = |dir: &Path| std::fs::read_dir(dir).unwrap().count();
    let mut totals = reports.clone();
    let mut left = entries(&hostile);
    let scans_needed = left + 10;
    for _ in 0..scans_needed {
        if left == 0 {
            break;
        }
        let report = watcher.scan_once();
        check_bounded(&report, &config, 1);
        totals.push(report);
        left = entries(&hostile);
    }
    assert_eq!(left, 0, "the flood was drained");
    let sum = |field: fn(&ScanReport) -> usize| totals.iter().map(field).sum::<usize>();

    // The host worked for the hostile group no more than its rate allows;
    // the rest of its valid tasks were refused with `rate_limited`.
    let elapsed = started.elapsed();
    let allowed =
        limit.burst as usize + (elapsed.as_millis() / limit.refill_every.as_millis()) as usize + 1;
    let hostile_calls = handler.calls("hostile");
    assert!(
        (1..=allowed).contains(&hostile_calls),
        "{hostile_calls} calls in {elapsed:?}, {allowed} allowed"
    );
    // Every task with a valid name that is a regular file takes a token
    // or is refused for the lack of one, before it is even read.
    let valid = FLOOD + more + GARBAGE + OVERSIZED;
    assert!(sum(|r| r.rate_limited) >= valid - allowed, "{totals:?}");
    assert_eq!(sum(|r| r.answered + r.rejected), valid + 1, "{totals:?}");
    // What has no valid name, or is not a regular file, was quarantined
    // without being opened, and nothing outside the group was touched.
    assert_eq!(sum(|r| r.quarantined), JUNK + FIFOS + LINKS + DIRS);
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), secret);
    let quarantine = tmp.path().join("home/quarantine/hostile");
    assert!(entries(&quarantine) <= config.max_quarantined_per_group);

    // Every result the hostile group got is a well-formed answer.
    let results = root.join("hostile").join(RESULTS_DIR);
    let mut codes = HashSet::new();
    for entry in std::fs::read_dir(&results).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(&secret));
        let response = Response::parse(&bytes).unwrap();
        codes.insert(response.error.map(|e| e.code));
    }
    let allowed_codes = [
        None,
        Some(ErrorCode::RateLimited),
        Some(ErrorCode::BadRequest),
        Some(ErrorCode::TooLarge),
    ];
    assert!(codes.iter().all(|c| allowed_codes.contains(c)), "{codes:?}");
    assert!(codes.contains(&Some(ErrorCode::RateLimited)), "{codes:?}");
    assert_eq!(entries(&results), valid);
}
