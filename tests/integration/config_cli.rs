//! `traffic-guardian check-config` as an operator runs it: rejections with field paths, env overrides, exit codes.

use serde_json::Value;
use traffic_guardian_tests::{GuardianHome, stderr, stdout};

/// Runs `check-config --json` in `home` with `env`; returns the exit code
/// and the report.
fn check(home: &GuardianHome, env: &[(&str, &str)]) -> (i32, Value) {
    let out = home.run_env(&["check-config", "--json"], env);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap(), report)
}

/// Asserts `report` has an error at `path` whose reason contains `part`.
#[track_caller]
fn has_error(report: &Value, path: &str, part: &str) {
    let found = report["problems"].as_array().unwrap().iter().any(|p| {
        p["severity"] == "error"
            && p["path"] == path
            && p["reason"].as_str().unwrap().contains(part)
    });
    assert!(found, "want error at {path} with {part:?}: {report:#}");
}

#[test]
fn no_file_means_valid_embedded_defaults() {
    let home = GuardianHome::new();
    let (code, report) = check(&home, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["valid"], true);
    assert_eq!(report["source"], Value::Null);
    assert_eq!(report["problems"].as_array().unwrap().len(), 0);
    // Checking creates nothing.
    assert!(!home.home().exists());
}

#[test]
fn file_rejections_name_their_fields_and_exit_1() {
    let home = GuardianHome::new();
    let ipc = home.root().join("nanoclaw/data/ipc");
    std::fs::create_dir_all(&ipc).unwrap();
    home.write_config(
        &serde_json::json!({
            "mode": "block",
            "max_scan_bytes": 1,
            "log_dir": ipc.join("main/logs"),
            "ipc": {"groups_root": ipc},
            "upstream_proxy": {"url": "https://127.0.0.1:10255"},
            "runtimes": [{"name": "main", "proxy_users": ["main"], "https_inspection": true}],
            "proxy_url": "http://0.0.0.0:10280"
        })
        .to_string(),
    );
    let (code, report) = check(&home, &[]);
    assert_eq!(code, 1);
    assert_eq!(report["valid"], false);
    has_error(
        &report,
        "mode",
        "blocking does not exist in this version; only detect",
    );
    has_error(&report, "max_scan_bytes", "outside 4096..=67108864");
    has_error(&report, "log_dir", "inside ipc.groups_root");
    has_error(&report, "upstream_proxy.url", "only http://");
    has_error(&report, "runtimes[0].https_inspection", "ca init");
    let warned = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["severity"] == "warning" && p["path"] == "proxy_url");
    assert!(warned, "{report:#}");
}

#[test]
fn unknown_fields_are_rejected() {
    let home = GuardianHome::new();
    home.write_config(r#"{"runtimes": [{"name": "main", "inspect": true}]}"#);
    let (code, report) = check(&home, &[]);
    assert_eq!(code, 1);
    has_error(&report, "runtimes[0].inspect", "unknown field `inspect`");
}

#[test]
fn variables_override_fields_and_malformed_ones_are_named() {
    let home = GuardianHome::new();
    home.write_config(r#"{"max_scan_bytes": 8192}"#);
    let (code, report) = check(
        &home,
        &[
            ("NANOCLAW_TRAFFIC_GUARDIAN_MAX_SCAN_BYTES", "12"),
            ("NANOCLAW_TRAFFIC_GUARDIAN_MODE", "block"),
            ("NANOCLAW_TRAFFIC_GUARDIAN_REDACT_SNIPPETS", "none"),
            (
                "NANOCLAW_TRAFFIC_GUARDIAN_PROXY_URL",
                "socks5://127.0.0.1:1",
            ),
        ],
    );
    assert_eq!(code, 1);
    has_error(
        &report,
        "NANOCLAW_TRAFFIC_GUARDIAN_MAX_SCAN_BYTES",
        "outside",
    );
    has_error(&report, "NANOCLAW_TRAFFIC_GUARDIAN_MODE", "only detect");
    has_error(
        &report,
        "NANOCLAW_TRAFFIC_GUARDIAN_REDACT_SNIPPETS",
        "cannot be turned off",
    );
    has_error(&report, "NANOCLAW_TRAFFIC_GUARDIAN_PROXY_URL", "http://");
}

#[test]
fn a_malformed_variable_does_not_hide_the_file_s_problems() {
    let home = GuardianHome::new();
    home.write_config(r#"{"mode": "block", "allowed_clients": []}"#);
    let (code, report) = check(&home, &[("NANOCLAW_TRAFFIC_GUARDIAN_MAX_SCAN_BYTES", "1")]);
    assert_eq!(code, 1);
    has_error(
        &report,
        "NANOCLAW_TRAFFIC_GUARDIAN_MAX_SCAN_BYTES",
        "outside",
    );
    has_error(&report, "mode", "only detect");
}

#[test]
fn container_side_variables_are_not_warned_about() {
    let home = GuardianHome::new();
    let (code, report) = check(
        &home,
        &[
            ("NANOCLAW_TRAFFIC_GUARDIAN_IPC_DIR", "/workspace/ipc"),
            ("NANOCLAW_TRAFFIC_GUARDIAN_IPC_TIMEOUT_MS", "5000"),
            ("NANOCLAW_TRAFFIC_GUARDIAN_TYPO", "1"),
        ],
    );
    assert_eq!(code, 0, "{report:#}");
    let paths: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["NANOCLAW_TRAFFIC_GUARDIAN_TYPO"], "{report:#}");
}

#[test]
fn a_named_config_file_must_exist() {
    let home = GuardianHome::new();
    let missing = home.root().join("absent.json");
    let out = home.run(&["check-config", "--config", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("does not exist"), "{}", stdout(&out));
    let via_env = home.run_env(
        &["check-config"],
        &[(
            "NANOCLAW_TRAFFIC_GUARDIAN_CONFIG",
            missing.to_str().unwrap(),
        )],
    );
    assert_eq!(via_env.status.code(), Some(1));
    assert!(stdout(&via_env).contains("NANOCLAW_TRAFFIC_GUARDIAN_CONFIG"));
}

#[test]
fn env_overrides_reach_the_commands() {
    let home = GuardianHome::new();
    let logs = home.root().join("elsewhere/logs");
    let out = home.run_env(
        &["status", "--json"],
        &[("NANOCLAW_TRAFFIC_GUARDIAN_LOG_DIR", logs.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["running"], false);
    assert_eq!(status["log_dir"], logs.to_str().unwrap());
    assert_eq!(status["home"], home.home().to_str().unwrap());
    assert_eq!(status["mode"], "detect");
}
