//! The IPC channel end to end: real clients in several group folders
//! against one running watcher.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use traffic_guardian_core::{FindingLog, Rotation, Timestamp};
use traffic_guardian_ipc::{
    Client, ClientConfig, FindingsParams, GroupMap, GroupName, RateLimit, Watcher, WatcherConfig,
};
use traffic_guardian_tests::canary::{Canaries, canary_findings};
use traffic_guardian_tests::host::FindingsLogHost;

#[test]
fn concurrent_requests_from_several_groups_are_answered_within_their_rights() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("home/findings");
    let canaries = Canaries::new();
    let findings = canary_findings(&canaries, Timestamp::now().unix_millis() - 60_000);
    let mut sink = FindingLog::open(&log, Rotation::default()).unwrap();
    for finding in &findings {
        sink.append(finding).unwrap();
    }
    drop(sink);

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
