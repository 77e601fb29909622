//! `traffic-guardian-mcp` end to end: the real binary as a child process of
//! the official MCP Python SDK, answered by the real IPC watcher over a
//! findings log made by the real engine from canary traffic.
//!
//! The Python client lives in `tests/python/`; its virtualenv is
//! `<repo>/.venv` (see [`traffic_guardian_tests::python`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use traffic_guardian_core::{Finding, FindingLog, Rotation, Timestamp};
use traffic_guardian_ipc::{GroupMap, GroupName, Watcher, WatcherConfig, WatcherHandle};
use traffic_guardian_tests::canary::{Canaries, canary_findings};
use traffic_guardian_tests::cargo_bin;
use traffic_guardian_tests::host::FindingsLogHost;
use traffic_guardian_tests::python::{python, repo};

/// The `traffic-guardian-mcp` binary, built for this test run.
fn mcp_binary() -> PathBuf {
    cargo_bin("traffic-guardian-mcp", "traffic-guardian-mcp")
}

/// Stand-ins for certificate DER: the wiring check hashes the bytes between
/// the PEM markers and does not parse X.509.
const GUARDIAN_CA_DER: &[u8] = b"traffic-guardian test CA certificate DER";
const SYSTEM_ROOT_DER: &[u8] = b"some system root certificate DER bytes";

/// PEM `CERTIFICATE` blocks holding `ders`.
fn pem(ders: &[&[u8]]) -> String {
    use base64::Engine as _;
    ders.iter()
        .map(|der| {
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                base64::engine::general_purpose::STANDARD.encode(der)
            )
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A host with a findings log of canary findings and a running watcher.
struct Guardian {
    tmp: tempfile::TempDir,
    canaries: Canaries,
    findings: Vec<Finding>,
    _watcher: WatcherHandle,
}

impl Guardian {
    fn start() -> Guardian {
        let tmp = tempfile::tempdir().unwrap();
        let canaries = Canaries::new();
        let findings = canary_findings(&canaries, Timestamp::now().unix_millis() - 60_000);
        let log = tmp.path().join("home/findings");
        let mut sink = FindingLog::open(&log, Rotation::default()).unwrap();
        for finding in &findings {
            sink.append(finding).unwrap();
        }
        drop(sink);
        // The engine really redacted: the log itself holds no canary.
        let stored = std::fs::read_to_string(log.join("findings.jsonl")).unwrap();
        assert_eq!(canaries.leaks(&stored), Vec::<&str>::new(), "{stored}");

        let root = tmp.path().join("data/ipc");
        for group in ["main", "team-a", "team-b"] {
            std::fs::create_dir_all(root.join(group)).unwrap();
        }
        let ca_dir = tmp.path().join("ca");
        std::fs::create_dir_all(&ca_dir).unwrap();
        std::fs::write(ca_dir.join("ca.pem"), pem(&[GUARDIAN_CA_DER])).unwrap();
        std::fs::write(
            ca_dir.join("bundle.pem"),
            pem(&[SYSTEM_ROOT_DER, GUARDIAN_CA_DER]),
        )
        .unwrap();

        let host = FindingsLogHost {
            dir: log,
            runtimes: vec![
                ("rt-a".into(), "team-a".into(), true),
                ("rt-b".into(), "team-b".into(), false),
            ],
            proxy_url: "http://127.0.0.1:3129".into(),
            ca_fingerprint: sha256_hex(GUARDIAN_CA_DER),
        };
        let map = GroupMap::new()
            .with(GroupName::new("team-a").unwrap(), "rt-a")
            .with(GroupName::new("team-b").unwrap(), "rt-b");
        let mut config =
            WatcherConfig::new(tmp.path().join("home/quarantine")).with_groups_root(&root);
        config.poll_interval = Duration::from_millis(20);
        let watcher = Watcher::new(config, map, Arc::new(host))
            .unwrap()
            .spawn()
            .unwrap();
        Guardian {
            tmp,
            canaries,
            findings,
            _watcher: watcher,
        }
    }

    fn ipc_dir(&self, group: &str) -> PathBuf {
        self.tmp.path().join("data/ipc").join(group)
    }

    /// The environment a fully wired container of `group` has.
    fn container_env(&self, group: &str) -> BTreeMap<String, String> {
        let proxy = format!(
            "http://{group}:{}@127.0.0.1:3129",
            self.canaries.proxy_password
        );
        let ca = self.tmp.path().join("ca");
        let bundle = ca.join("bundle.pem").display().to_string();
        let mut env = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            env.insert(k.to_owned(), v);
        };
        set(
            "NANOCLAW_TRAFFIC_GUARDIAN_IPC_DIR",
            self.ipc_dir(group).display().to_string(),
        );
        set("NANOCLAW_TRAFFIC_GUARDIAN_IPC_TIMEOUT_MS", "10000".into());
        set(
            "NANOCLAW_TRAFFIC_GUARDIAN_PROXY_URL",
            "http://127.0.0.1:3129".into(),
        );
        for var in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"] {
            set(var, proxy.clone());
        }
        set("NODE_USE_ENV_PROXY", "1".into());
        set("NANOCLAW_TRAFFIC_GUARDIAN_CA_BUNDLE", bundle.clone());
        set(
            "NODE_EXTRA_CA_CERTS",
            ca.join("ca.pem").display().to_string(),
        );
        for var in [
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "GIT_SSL_CAINFO",
            "DENO_CERT",
        ] {
            set(var, bundle.clone());
        }
        set("TRAFFIC_GUARDIAN_LOG", "debug".into());
        env
    }
}

/// What the Python client printed, and the server's stderr.
struct Run {
    out: Value,
    raw: String,
    stderr: String,
}

/// Runs the Python MCP client against the binary with `env` and `calls`.
fn run_client(env: &BTreeMap<String, String>, calls: Value) -> Run {
    let plan_dir = tempfile::tempdir().unwrap();
    let plan = plan_dir.path().join("plan.json");
    let plan_json = json!({
        "server": mcp_binary(),
        "env": env,
        "calls": calls,
    });
    std::fs::write(&plan, plan_json.to_string()).unwrap();
    let output = Command::new(python())
        .arg(repo().join("tests/python/mcp_client.py"))
        .arg(&plan)
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "the MCP client failed:\nstdout: {raw}\nstderr: {stderr}"
    );
    let out: Value = serde_json::from_str(&raw)
        .unwrap_or_else(|e| panic!("client output is not JSON ({e}): {raw}\nstderr: {stderr}"));
    Run { out, raw, stderr }
}

/// The structured content of call `i` of the handshake session, checking
/// its error flag.
fn structured(run: &Run, i: usize, is_error: bool) -> &Value {
    let call = &run.out["handshake"]["calls"][i];
    assert!(call.get("exception").is_none(), "call {i}: {call}");
    assert_eq!(
        call["result"]["isError"].as_bool().unwrap_or(false),
        is_error,
        "call {i}: {call}"
    );
    &call["result"]["structuredContent"]
}

fn text(run: &Run, i: usize) -> String {
    run.out["handshake"]["calls"][i]["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn runtimes_of(findings: &Value) -> Vec<Option<String>> {
    findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["runtime"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_group_agent_sees_only_its_own_redacted_findings_and_its_wiring() {
    let guardian = Guardian::start();
    let env = guardian.container_env("team-a");
    let run = run_client(
        &env,
        json!([
            ["clawsec_traffic_status", {}],
            ["clawsec_traffic_findings", {}],
            ["clawsec_traffic_findings", {"severity": "critical", "threat_type": "EXFIL", "limit": 1}],
            ["clawsec_traffic_findings", {"limit": 500}],
            ["clawsec_traffic_findings", {"since": "last tuesday"}],
            ["clawsec_traffic_check_config", {}],
        ]),
    );

    // The handshake and the discover revisions both work.
    let handshake = &run.out["handshake"];
    assert_eq!(handshake["protocolVersion"], "2025-11-25");
    assert_eq!(handshake["serverInfo"]["name"], "traffic-guardian-mcp");
    let names: Vec<&str> = handshake["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "clawsec_traffic_status",
            "clawsec_traffic_findings",
            "clawsec_traffic_check_config"
        ]
    );
    let discover = &run.out["discover"];
    assert!(discover.get("exception").is_none(), "{discover}");
    assert_eq!(discover["protocolVersion"], "2026-07-28");
    assert_eq!(discover["tools"], handshake["tools"]);
    assert_eq!(
        discover["calls"][0]["result"]["structuredContent"]["runtimes"][0]["name"],
        "rt-a"
    );

    // Status: only rt-a, counted over rt-a's findings.
    let own: Vec<&Finding> = guardian
        .findings
        .iter()
        .filter(|f| f.runtime.as_deref() == Some("rt-a"))
        .collect();
    assert!(own.len() >= 2, "the engine found too little: {own:?}");
    let status = structured(&run, 0, false);
    assert_eq!(status["running"], true);
    assert_eq!(status["mode"], "detect-and-log");
    assert_eq!(status["runtimes"].as_array().unwrap().len(), 1);
    assert_eq!(status["runtimes"][0]["name"], "rt-a");
    assert_eq!(status["runtimes"][0]["httpsInspection"], true);
    assert_eq!(status["counts"]["total"], own.len());

    // Findings: rt-a's only, newest first, redacted.
    let findings = structured(&run, 1, false);
    assert_eq!(findings["returned"], own.len());
    assert_eq!(findings["limit"], 20);
    let list = &findings["findings"];
    assert!(
        runtimes_of(list)
            .iter()
            .all(|r| r.as_deref() == Some("rt-a"))
    );
    let times: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["timestamp"].as_str().unwrap())
        .collect();
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first);
    for finding in list.as_array().unwrap() {
        assert_eq!(finding["schema_version"], "clawsec-traffic-finding/v1");
        assert_eq!(finding["platform"], "nanoclaw");
    }
    let filtered = structured(&run, 2, false);
    assert_eq!(filtered["returned"], 1);
    assert_eq!(filtered["findings"][0]["severity"], "critical");
    assert_eq!(filtered["findings"][0]["threat_type"], "EXFIL");

    // Bad arguments are tool errors with a clear message.
    structured(&run, 3, true);
    assert!(
        text(&run, 3).contains("limit must be between 1 and 100"),
        "{}",
        text(&run, 3)
    );
    structured(&run, 4, true);
    assert!(text(&run, 4).contains("RFC 3339"), "{}", text(&run, 4));

    // Check-config: protected, with the host's verdict and the CA matched.
    let check = structured(&run, 5, false);
    assert_eq!(check["protected"], true, "{check:#}");
    assert_eq!(check["host"]["valid"], true);
    assert_eq!(check["host"]["problems"][0]["level"], "warning");
    assert_eq!(
        check["container"]["ca"]["bundle"]["containsGuardianCa"],
        true
    );
    assert_eq!(check["container"]["ca"]["bundle"]["certificates"], 2);
    assert_eq!(check["container"]["problems"], json!([]));

    // No canary anywhere: answers, server logs.
    assert_eq!(guardian.canaries.leaks(&run.raw), Vec::<&str>::new());
    assert_eq!(guardian.canaries.leaks(&run.stderr), Vec::<&str>::new());
    assert!(run.raw.contains("[REDACTED]") || run.raw.contains("***"));
}

#[test]
fn main_sees_every_finding_and_a_silent_host_is_a_tool_error() {
    let guardian = Guardian::start();
    let env = guardian.container_env("main");
    let run = run_client(
        &env,
        json!([
            ["clawsec_traffic_findings", {"limit": 100}],
            ["clawsec_traffic_status", {}],
        ]),
    );
    let findings = structured(&run, 0, false);
    let mut seen = runtimes_of(&findings["findings"]);
    seen.sort();
    let mut all: Vec<Option<String>> = guardian
        .findings
        .iter()
        .map(|f| f.runtime.clone())
        .collect();
    all.sort();
    assert_eq!(seen, all);
    assert!(seen.contains(&None), "main sees unattributed findings");
    let status = structured(&run, 1, false);
    assert_eq!(status["runtimes"].as_array().unwrap().len(), 2);
    assert_eq!(guardian.canaries.leaks(&run.raw), Vec::<&str>::new());

    // A group folder no watcher serves: every tool answers in bounded time
    // with an error, and check-config still reports the local wiring.
    let silent = tempfile::tempdir().unwrap();
    let mut env = guardian.container_env("main");
    env.insert(
        "NANOCLAW_TRAFFIC_GUARDIAN_IPC_DIR".into(),
        silent.path().display().to_string(),
    );
    env.insert(
        "NANOCLAW_TRAFFIC_GUARDIAN_IPC_TIMEOUT_MS".into(),
        "300".into(),
    );
    let run = run_client(
        &env,
        json!([
            ["clawsec_traffic_status", {}],
            ["clawsec_traffic_findings", {}],
            ["clawsec_traffic_check_config", {}],
        ]),
    );
    for i in 0..3 {
        structured(&run, i, true);
        assert!(
            text(&run, i).contains("no answer from the traffic guardian within"),
            "{}",
            text(&run, i)
        );
    }
    let check = structured(&run, 2, true);
    assert_eq!(check["protected"], false);
    assert_eq!(check["host"], Value::Null);
    assert_eq!(
        check["container"]["proxy"]["variables"][0]["matchesGuardian"],
        true
    );
    assert_eq!(guardian.canaries.leaks(&run.raw), Vec::<&str>::new());
    // No task was left behind for a host that might start later.
    let left = std::fs::read_dir(silent.path().join("clawsec_traffic_tasks"))
        .unwrap()
        .count();
    assert_eq!(left, 0);
}
