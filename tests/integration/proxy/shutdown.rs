//! Graceful shutdown: stop accepting, drain in-flight flows, flush findings.

use std::time::Duration;

use tokio::net::TcpStream;
use traffic_guardian_test_support::{Reply, UpstreamServer, finish_curl};

use super::harness::{Guardian, PATIENCE, PIPE_TO_SHELL};

#[tokio::test]
async fn shutdown_drains_in_flight_streams_and_flushes_their_findings() {
    let (events, reply) = Reply::sse();
    let upstream = UpstreamServer::start(vec![("/events", reply)]).await;
    let guardian = Guardian::start(|_| {}).await;
    let addr = guardian.addr;
    let (child, mut lines) = guardian
        .curl()
        .arg_url(&upstream.url("http", "/events"))
        .spawn();
    events.event("first");
    let first = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some("data: first"));

    let sink = guardian.sink.clone();
    let stopping = tokio::spawn(
        guardian
            .proxy
            .shutdown_with_deadline(Duration::from_secs(30)),
    );
    // New clients are turned away once draining starts.
    let refused = tokio::time::timeout(PATIENCE, async {
        loop {
            if TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the listener must close");
    assert!(!stopping.is_finished(), "an exchange is still in flight");

    // The in-flight stream still completes.
    events.event(PIPE_TO_SHELL);
    drop(events);
    let (code, stderr) = finish_curl(child).await;
    assert_eq!(code, 0, "{stderr}");
    let stats = tokio::time::timeout(PATIENCE, stopping)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.findings, 1);
    // Returned only after the finding reached the sink.
    assert!(sink.findings().iter().any(|f| f.pattern == "pipe_to_shell"));
    assert_eq!(sink.all_flows().len(), 1);
}

#[tokio::test]
async fn the_drain_deadline_cuts_what_is_left_and_still_records_it() {
    let (events, reply) = Reply::sse();
    let upstream = UpstreamServer::start(vec![("/events", reply)]).await;
    let guardian = Guardian::start(|_| {}).await;
    let (child, mut lines) = guardian
        .curl()
        .arg_url(&upstream.url("http", "/events"))
        .spawn();
    events.event(PIPE_TO_SHELL);
    let first = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(first.is_some());
    let sink = guardian.sink.clone();
    let stats = tokio::time::timeout(
        PATIENCE,
        guardian
            .proxy
            .shutdown_with_deadline(Duration::from_millis(100)),
    )
    .await
    .expect("shutdown must not wait past its deadline");
    let (code, _) = finish_curl(child).await;
    assert_ne!(code, 0, "the stream was cut");
    assert!(
        sink.findings().iter().any(|f| f.pattern == "pipe_to_shell"),
        "what was scanned is kept"
    );
    assert_eq!(stats.flows_inspected, 1);
    drop(events);
}
