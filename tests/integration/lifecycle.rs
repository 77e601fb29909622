//! The real `traffic-guardian` service in a temporary home: start, status, traffic with a canary, stop, signals, kill -9, and a findings log that cannot be written.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;
use traffic_guardian_tests::{
    GuardianHome, Upstream, canary_key, mode, post_through_proxy, stderr, stdout, wait_unlocked,
};

/// Every test binds port 0: the actual port is learned from status.
const ANY_PORT: (&str, &str) = ("NANOCLAW_TRAFFIC_GUARDIAN_PROXY_URL", "http://127.0.0.1:0");
const WAIT: Duration = Duration::from_secs(30);

fn query_status(home: &GuardianHome) -> (i32, Value) {
    let out = home.run(&["status", "--json"]);
    let status = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap(), status)
}

fn start(home: &GuardianHome) -> Value {
    let out = home.run_env(&["start"], &[ANY_PORT]);
    assert!(
        out.status.success(),
        "start: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).starts_with("traffic-guardian started: pid "));
    let (code, status) = query_status(home);
    assert_eq!(code, 0, "{status:#}");
    status
}

fn proxy_addr(status: &Value) -> String {
    status["listeners"][0]["addr"].as_str().unwrap().to_owned()
}

fn stored_findings(home: &GuardianHome) -> Value {
    let out = home.run(&["findings", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Sends the canary through the guardian and checks the upstream got the
/// request unchanged and the client got the upstream's answer.
fn send_canary(proxy: &str, upstream: &Upstream) {
    let body = format!("token={}", canary_key());
    let response = post_through_proxy(proxy, &upstream.url(), &body);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");
    let seen = upstream.next_request();
    assert!(seen.ends_with(&body), "the upstream got {seen:?}");
}

#[test]
fn start_status_traffic_findings_stop() {
    let home = GuardianHome::new();
    let upstream = Upstream::start();
    let status = start(&home);
    assert_eq!(status["running"], true);
    assert_eq!(status["mode"], "detect");
    assert!(status["pid"].as_u64().unwrap() > 0);
    assert!(status["uptime_secs"].is_u64());
    assert_eq!(status["runtimes"][0]["name"], "default");
    assert_eq!(status["runtimes"][0]["https_inspection"], false);
    assert_eq!(status["degraded"].as_array().unwrap().len(), 0);
    let addr = proxy_addr(&status);
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let listeners: Value =
        serde_json::from_slice(&std::fs::read(home.home().join("run/listeners.json")).unwrap())
            .unwrap();
    assert_eq!(listeners[0]["addr"], addr.as_str());

    // Private state.
    assert_eq!(mode(&home.home()), 0o700);
    assert_eq!(mode(&home.home().join("run")), 0o700);
    assert_eq!(mode(&home.home().join("run/control.sock")), 0o600);
    assert_eq!(mode(&home.home().join("fingerprint.key")), 0o600);
    assert_eq!(mode(&home.home().join("logs/findings.jsonl")), 0o600);

    let again = home.run_env(&["start"], &[ANY_PORT]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already running"),
        "{}",
        stderr(&again)
    );

    send_canary(&addr, &upstream);

    let out = home.run(&["stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("traffic-guardian stopped"));
    for file in ["pid", "control.sock", "listeners.json"] {
        assert!(!home.home().join("run").join(file).exists(), "{file}");
    }

    let stored = stored_findings(&home);
    let findings = stored["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{stored:#}");
    assert_eq!(findings[0]["pattern"], "ai_api_key");
    assert_eq!(findings[0]["runtime"], "default");
    assert_eq!(
        findings[0]["dest"],
        upstream.url().trim_start_matches("http://")
    );
    let line = std::fs::read_to_string(home.home().join("logs/findings.jsonl")).unwrap();
    assert!(
        !line.contains(&canary_key()[14..]),
        "the secret was stored: {line}"
    );

    let (code, after) = query_status(&home);
    assert_eq!(code, 3);
    assert_eq!(after["running"], false);
    assert_eq!(after["findings"]["total"], 1);
    assert_eq!(after["findings"]["by_type"]["EXFIL"], 1);
    assert!(after["findings"]["last_finding_at"].is_string());

    let stop_again = home.run(&["stop"]);
    assert!(stop_again.status.success());
    assert!(stdout(&stop_again).contains("not running"));
}

#[test]
fn kill_9_leaves_stale_files_that_status_and_start_clean() {
    let home = GuardianHome::new();
    let status = start(&home);
    let pid = status["pid"].as_u64().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(wait_unlocked(&home.home().join("run/lock"), WAIT));
    assert!(
        home.home().join("run/pid").exists(),
        "a crash leaves the pid file"
    );

    let (code, after) = query_status(&home);
    assert_eq!(code, 3);
    assert_eq!(after["running"], false);
    let notes = after["notes"].to_string();
    assert!(
        notes.contains(&format!("stale run files of pid {pid}")),
        "{notes}"
    );
    assert!(!home.home().join("run/pid").exists());
    assert!(!home.home().join("run/control.sock").exists());

    // A crash between a status and a start is cleaned by start itself.
    std::fs::write(home.home().join("run/pid"), "999999\n").unwrap();
    let out = home.run_env(&["start"], &[ANY_PORT]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cleaned stale run files of pid 999999"),
        "{}",
        stderr(&out)
    );
    let (code, again) = query_status(&home);
    assert_eq!(code, 0);
    assert_ne!(again["pid"].to_string(), pid);
    assert!(home.run(&["stop", "--fast"]).status.success());
}

/// `run` in the foreground, as launchd or systemd start it; returns the
/// child once its ready line arrived.
fn run_foreground(home: &GuardianHome, env: &[(&str, &str)]) -> (Child, String) {
    let mut command = home.command(&["run"]);
    command
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("traffic-guardian ready: pid "), "{line:?}");
    (child, line)
}

fn signal(child: &Child, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[test]
fn run_honours_env_and_sigterm_drains() {
    let home = GuardianHome::new();
    let upstream = Upstream::start();
    let logs = home.root().join("custom-logs");
    let (child, line) = run_foreground(
        &home,
        &[
            ANY_PORT,
            ("NANOCLAW_TRAFFIC_GUARDIAN_LOG_DIR", logs.to_str().unwrap()),
        ],
    );
    let addr = line
        .split("listening on http://")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    send_canary(&addr, &upstream);
    signal(&child, "-TERM");
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let stored = std::fs::read_to_string(logs.join("findings.jsonl")).unwrap();
    assert_eq!(stored.lines().count(), 1, "{stored}");
    assert!(stored.contains("\"pattern\":\"ai_api_key\""), "{stored}");
    assert!(!home.home().join("run/pid").exists());
}

#[test]
fn sigint_stops_fast_and_cleans_up() {
    let home = GuardianHome::new();
    let (mut child, _) = run_foreground(&home, &[ANY_PORT]);
    signal(&child, "-INT");
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(!home.home().join("run/control.sock").exists());
    let (code, _) = query_status(&home);
    assert_eq!(code, 3);
}

#[test]
fn an_unwritable_log_keeps_traffic_flowing_and_recovers() {
    let home = GuardianHome::new();
    let upstream = Upstream::start();
    // A folder where the log file must be: a real failure, also for root.
    let blocked = home.home().join("logs/findings.jsonl");
    std::fs::create_dir_all(&blocked).unwrap();
    let status = start(&home);
    let degraded = status["degraded"].to_string();
    assert!(degraded.contains("findings log:"), "{status:#}");

    // Traffic is untouched while findings cannot be stored.
    send_canary(&proxy_addr(&status), &upstream);

    // The disk recovers; the finding waited in memory and is written.
    std::fs::remove_dir(&blocked).unwrap();
    let out = home.run(&["stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stored = stored_findings(&home);
    assert_eq!(
        stored["findings"].as_array().unwrap().len(),
        1,
        "{stored:#}"
    );
    assert_eq!(stored["findings"][0]["pattern"], "ai_api_key");
    let log = std::fs::read_to_string(home.home().join("run/service.log")).unwrap();
    assert!(log.contains("cannot write the findings log"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "service.log is a file, not a terminal: no colour codes\n{log:?}"
    );
}

#[test]
fn start_reports_a_service_that_cannot_start() {
    let home = GuardianHome::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", taken.local_addr().unwrap());
    let out = home.run_env(&["start"], &[("NANOCLAW_TRAFFIC_GUARDIAN_PROXY_URL", &url)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("exited before it was ready"), "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
}

#[test]
fn the_running_service_answers_ipc_tasks_per_group() {
    use traffic_guardian_ipc::{Client, ClientConfig};
    let home = GuardianHome::new();
    let upstream = Upstream::start();
    let groups_root = home.root().join("nanoclaw/data/ipc");
    for group in ["main", "family-chat"] {
        std::fs::create_dir_all(groups_root.join(group)).unwrap();
    }
    home.write_config(
        &serde_json::json!({
            "ipc": {"groups_root": groups_root},
            "runtimes": [{"name": "family", "group": "family-chat", "listen": "http://127.0.0.1:0"}]
        })
        .to_string(),
    );
    let status = start(&home);
    assert_eq!(status["ipc"]["watcher"], true, "{status:#}");
    // The default listener serves the default runtime (group "default").
    send_canary(&proxy_addr(&status), &upstream);

    let client = |group: &str| {
        let mut config = ClientConfig::new(groups_root.join(group));
        config.timeout = WAIT;
        Client::new(config)
    };
    let main = client("main").status().unwrap();
    assert!(main.running);
    assert_eq!(main.mode, "detect-and-log");
    assert_eq!(main.runtimes.len(), 2);
    let family = client("family-chat").status().unwrap();
    assert_eq!(family.runtimes.len(), 1);
    assert_eq!(family.runtimes[0].name, "family");
    let checked = client("family-chat").check_config().unwrap();
    assert!(checked.valid, "{checked:?}");

    assert!(home.run(&["stop"]).status.success());
    // Stopped: nothing answers any more, and the findings stayed scoped.
    let stored = stored_findings(&home);
    assert_eq!(stored["findings"][0]["runtime"], "default");
}
