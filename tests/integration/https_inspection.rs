//! HTTPS inspection end to end: the host's own CA, exported for one runtime, signs the leaves that runtime trusts, and its HTTPS is scanned; another runtime's HTTPS stays a tunnel.

use serde_json::{Value, json};
use traffic_guardian_test_support::{Curl, Reply, TestCa, UpstreamServer};
use traffic_guardian_tests::{GuardianHome, canary_key, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inspected_runtime_trusts_its_exported_bundle_and_is_scanned() {
    let home = GuardianHome::new();
    let upstream_ca = TestCa::new("upstream");
    let server = UpstreamServer::start_tls(
        vec![("/upload", Reply::text("ok"))],
        upstream_ca.server_config(&["127.0.0.1"]),
    )
    .await;
    home.write_config(
        &json!({
            "runtimes": [{"name": "main", "proxy_users": ["main"], "https_inspection": true}],
            "upstream_ca_files": [upstream_ca.cert_file()]
        })
        .to_string(),
    );
    let invalid = home.run(&["check-config"]);
    assert_eq!(
        invalid.status.code(),
        Some(1),
        "no CA yet: {}",
        stdout(&invalid)
    );
    assert!(home.run(&["ca", "init"]).status.success());
    // The upstream CA stands in for the system roots of the bundle.
    let export = home.run_env(
        &["ca", "export", "--runtime", "main"],
        &[
            ("SSL_CERT_FILE", upstream_ca.cert_file().to_str().unwrap()),
            (
                "SSL_CERT_DIR",
                home.root().join("no-cert-dir").to_str().unwrap(),
            ),
        ],
    );
    assert!(export.status.success(), "{}", stderr(&export));
    let started = home.run_env(
        &["start"],
        &[("NANOCLAW_TRAFFIC_GUARDIAN_PROXY_URL", "http://127.0.0.1:0")],
    );
    assert!(started.status.success(), "{}", stderr(&started));
    let status: Value = serde_json::from_slice(&home.run(&["status", "--json"]).stdout).unwrap();
    let proxy = status["listeners"][0]["addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let main = &status["runtimes"][0];
    assert_eq!(main["name"], "main");
    assert_eq!(main["https_inspection"], true);
    assert_eq!(main["trust_exported"], true);

    let bundle = home.home().join("trust/main/ca-bundle.pem");
    let body = format!("key={}", canary_key());
    let inspected = Curl::new(proxy)
        .args([
            "--proxy-user",
            "main:",
            "--cacert",
            bundle.to_str().unwrap(),
            "-d",
            &body,
        ])
        .arg_url(&server.url("https", "/upload"))
        .run()
        .await;
    assert_eq!(inspected.code, 0, "{}", inspected.stderr);
    assert_eq!(inspected.text(), "ok");

    // The default runtime has no inspection: its TLS goes end to end.
    // (HTTP/1.1: the test upstream resets h2 streams whose body it does not read.)
    let tunnelled = Curl::new(proxy)
        .args([
            "--http1.1",
            "--cacert",
            upstream_ca.cert_file().to_str().unwrap(),
            "-d",
            &body,
        ])
        .arg_url(&server.url("https", "/upload"))
        .run()
        .await;
    assert_eq!(tunnelled.code, 0, "{}", tunnelled.stderr);

    let stopped = home.run(&["stop"]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let out = home.run(&["findings", "--json"]);
    let stored: Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = stored["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{stored:#}");
    assert_eq!(findings[0]["protocol"], "https");
    assert_eq!(findings[0]["runtime"], "main");
    assert_eq!(findings[0]["pattern"], "ai_api_key");
}
