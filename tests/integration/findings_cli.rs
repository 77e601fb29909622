//! `traffic-guardian findings`, `report` and offline `status` over real rotated JSONL files with a torn last line.

use std::io::Write;

use serde_json::Value;
use traffic_guardian_core::{
    Direction, Finding, FindingLog, Protocol, Rotation, RuleId, Severity, ThreatType, Timestamp,
};
use traffic_guardian_test_support::sample_finding;
use traffic_guardian_tests::{GuardianHome, stderr, stdout};

fn finding(
    pattern: &str,
    severity: Severity,
    threat: ThreatType,
    runtime: &str,
    at: &str,
) -> Finding {
    Finding {
        direction: match threat {
            ThreatType::Exfil => Direction::Outbound,
            ThreatType::Injection => Direction::Inbound,
        },
        protocol: Protocol::Http,
        threat_type: threat,
        pattern: RuleId::new(pattern),
        severity,
        dest: format!("{pattern}.example:80"),
        snippet: "x=[REDACTED]".into(),
        timestamp: at.parse::<Timestamp>().unwrap(),
        runtime: Some(runtime.into()),
        method: Some("POST".into()),
        ..sample_finding()
    }
}

/// Five findings over two rotated files and the current one, plus a torn
/// last line as a crash leaves it.
fn stored_home() -> GuardianHome {
    let home = GuardianHome::new();
    let logs = home.home().join("logs");
    let rotation = Rotation {
        max_bytes: 700,
        keep: 5,
    };
    let mut sink = FindingLog::open(&logs, rotation).unwrap();
    use Severity::{Critical, High, Low, Medium};
    use ThreatType::{Exfil, Injection};
    for f in [
        finding("ai_api_key", High, Exfil, "main", "2026-11-01T10:00:00Z"),
        finding(
            "pipe_to_shell",
            Critical,
            Injection,
            "main",
            "2026-11-02T10:00:00Z",
        ),
        finding(
            "ssh_key_path",
            Medium,
            Exfil,
            "family",
            "2026-11-03T10:00:00Z",
        ),
        finding(
            "private_key_pem",
            Critical,
            Exfil,
            "family",
            "2026-11-04T10:00:00Z",
        ),
        finding(
            "credential_path",
            Low,
            Exfil,
            "main",
            "2026-11-05T10:00:00Z",
        ),
    ] {
        sink.append(&f).unwrap();
    }
    drop(sink);
    assert!(logs.join("findings.jsonl.1").exists(), "rotation happened");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("findings.jsonl"))
        .unwrap();
    file.write_all(b"{\"schema_version\":\"clawsec-traffic-fin")
        .unwrap();
    home
}

fn query(home: &GuardianHome, args: &[&str]) -> Value {
    let out = home.run(&[&["findings", "--json"][..], args].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn patterns(report: &Value) -> Vec<&str> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["pattern"].as_str().unwrap())
        .collect()
}

#[test]
fn findings_filters_over_rotated_files_newest_first() {
    let home = stored_home();
    let all = query(&home, &[]);
    assert_eq!(
        patterns(&all),
        [
            "credential_path",
            "private_key_pem",
            "ssh_key_path",
            "pipe_to_shell",
            "ai_api_key"
        ]
    );
    assert_eq!(all["skipped_lines"], 1);
    assert_eq!(
        patterns(&query(&home, &["--type", "INJECTION"])),
        ["pipe_to_shell"]
    );
    assert_eq!(
        patterns(&query(&home, &["--severity", "critical"])),
        ["private_key_pem", "pipe_to_shell"]
    );
    assert_eq!(
        patterns(&query(&home, &["--runtime", "family", "--limit", "1"])),
        ["private_key_pem"]
    );
    assert_eq!(
        patterns(&query(
            &home,
            &["--since", "2026-11-03T00:00:00Z", "--type", "exfil"]
        )),
        ["credential_path", "private_key_pem", "ssh_key_path"]
    );
    assert_eq!(
        query(&home, &["--runtime", "family", "--limit", "1"])["matched"],
        2
    );
}

#[test]
fn findings_table_and_bad_arguments() {
    let home = stored_home();
    let out = home.run(&["findings", "--limit", "2"]);
    assert!(out.status.success());
    let table = stdout(&out);
    assert!(table.starts_with("TIME"), "{table}");
    assert!(table.contains("credential_path") && !table.contains("ssh_key_path"));
    assert!(stderr(&out).contains("1 unreadable lines skipped"));
    assert!(stderr(&out).contains("newest 2 of 5"));

    let bad = home.run(&["findings", "--type", "MALWARE"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = home.run(&["findings", "--since", "last tuesday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("RFC 3339"));
    let bad = home.run(&["findings", "--limit", "0"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("at least 1"), "{}", stderr(&bad));
}

#[test]
fn an_unreadable_log_is_a_failed_operation() {
    let home = GuardianHome::new();
    std::fs::create_dir_all(home.home().join("logs/findings.jsonl")).unwrap();
    for command in ["findings", "report"] {
        let out = home.run(&[command]);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", stderr(&out));
        assert!(stderr(&out).contains("findings.jsonl"), "{}", stderr(&out));
    }
}

#[test]
fn report_is_markdown_for_a_range() {
    let home = stored_home();
    let out = home.run(&[
        "report",
        "--since",
        "2026-11-02T00:00:00Z",
        "--until",
        "2026-11-05T00:00:00Z",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "# Traffic guardian report: 2026-11-02T00:00:00.000Z to 2026-11-05T00:00:00.000Z"
        ),
        "{text}"
    );
    assert!(
        text.contains("pipe\\_to\\_shell") || text.contains("pipe_to_shell"),
        "{text}"
    );
    assert!(!text.contains("credential"), "{text}");
    assert!(
        !text.contains("ai_api_key") && !text.contains("ai\\_api\\_key"),
        "{text}"
    );
}

#[test]
fn status_when_not_running_counts_the_log() {
    let home = stored_home();
    let out = home.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["running"], false);
    assert_eq!(status["findings_scope"], "log");
    assert_eq!(status["findings"]["total"], 5);
    assert_eq!(status["findings"]["by_severity"]["critical"], 2);
    assert_eq!(status["findings"]["by_type"]["EXFIL"], 4);
    assert_eq!(status["findings"]["by_runtime"]["family"], 2);
    assert_eq!(status["findings"]["unreadable_lines"], 1);
    assert_eq!(
        status["findings"]["last_finding_at"],
        "2026-11-05T10:00:00.000Z"
    );
    let human = stdout(&home.run(&["status"]));
    assert!(human.contains("not running"), "{human}");
    assert!(human.contains("findings:  5 in the log"), "{human}");
}
