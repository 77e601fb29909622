//! Secrets never reach the logs: not the query, headers, body, or the
//! client's proxy credentials.

use std::io::Write;
use std::sync::{Arc, Mutex};

use traffic_guardian_proxy::UpstreamProxy;
use traffic_guardian_test_support::{ChainProxy, Reply, UpstreamServer};

use crate::harness::Guardian;

const CANARY: &str = "CANARY7f3e9a1cQZ";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary from the moment this test starts,
/// at every level and from every crate (hyper, h2 and rustls included).
///
/// A process-wide subscriber: a thread-scoped one races the callsite
/// interest cache with the tests running beside it and can miss lines.
fn capture_all_logs() -> Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            captured
        })
        .clone()
}

#[tokio::test]
async fn canary_secrets_are_absent_from_every_log_line() {
    let captured = capture_all_logs();
    {
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
    }
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
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
