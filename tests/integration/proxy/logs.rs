//! Secrets never reach the logs: not the query, headers, body, or the
//! client's proxy credentials.

use traffic_guardian_proxy::UpstreamProxy;
use traffic_guardian_test_support::{ChainProxy, LogCapture, Reply, UpstreamServer};

use super::harness::Guardian;

const CANARY: &str = "CANARY7f3e9a1cQZ";

/// Every log line of this test, at every level and from every crate
/// (hyper, h2 and rustls included), and only of this test.
#[test]
fn canary_secrets_are_absent_from_every_log_line() {
    let captured = LogCapture::new();
    captured.run(async {
        let chain = ChainProxy::start(None).await;
        let guardian = Guardian::start(|config| {
            config.upstream_proxy = Some(UpstreamProxy::new(chain.addr().to_string()));
        })
        .await;
        let plain = UpstreamServer::start(vec![("/echo", Reply::Echo)]).await;
        let tls = UpstreamServer::start_tls(
            vec![("/echo", Reply::Echo)],
            guardian.upstream_ca.server_config(&["127.0.0.1"]),
        )
        .await;
        for url in [plain.url("http", "/echo"), tls.url("https", "/echo")] {
            let out = guardian
                .curl()
                .args(["--fail", "--proxy-user", &format!("user:{CANARY}")])
                .args(["-H", &format!("x-api-key: {CANARY}")])
                .args(["--data-binary", &format!("secret={CANARY}")])
                .arg_url(&format!("{url}?token={CANARY}"))
                .run()
                .await;
            assert_eq!(out.code, 0, "{}", out.stderr);
        }
        guardian.stop().await;
    });
    let logs = captured.text();
    assert!(
        logs.lines().count() > 5,
        "the run must log something: {logs}"
    );
    assert!(logs.contains("request"), "request lines are logged: {logs}");
    for (i, line) in logs.lines().enumerate() {
        assert!(
            !line.contains(CANARY),
            "log line {i} leaks the canary: {line}"
        );
        assert!(
            !line.contains("dXNlcjpDQU5BUlk"),
            "log line {i} leaks the credential: {line}"
        );
    }
}
