//! CONNECT without inspection: a byte tunnel whose flow is still recorded.

use traffic_guardian_core::Protocol;
use traffic_guardian_proxy::{FlowHandling, RuntimeConfig};
use traffic_guardian_test_support::{Reply, UpstreamServer};

use super::harness::{AI_KEY, Guardian};

#[tokio::test]
async fn connect_is_a_recorded_tunnel_for_runtimes_without_inspection() {
    let guardian = Guardian::start(|config| {
        config.runtimes = vec![RuntimeConfig::named("agent")];
    })
    .await;
    let upstream = UpstreamServer::start_tls(
        vec![("/echo", Reply::Echo)],
        guardian.upstream_ca.server_config(&["127.0.0.1"]),
    )
    .await;
    let body = format!("k={AI_KEY}");
    // curl trusts the upstream's CA: only an untouched tunnel works.
    let out = traffic_guardian_test_support::Curl::new(guardian.addr)
        .args([
            "--fail",
            "--cacert",
            guardian.upstream_ca.cert_file().to_str().unwrap(),
        ])
        .args(["--data-binary", &body])
        .arg_url(&upstream.url("https", "/echo"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.text(), body);
    let flow = guardian.sink.flows("CONNECT", 1).await.remove(0);
    assert_eq!(flow.protocol, Protocol::Connect);
    assert_eq!(flow.handling, FlowHandling::Tunnelled);
    assert_eq!(flow.dest, upstream.addr().to_string());
    assert_eq!(flow.runtime, "agent");
    assert!(flow.bytes_out > body.len() as u64 && flow.bytes_in > body.len() as u64);
    assert!(
        guardian.sink.findings().is_empty(),
        "nothing inside a tunnel is read"
    );
    let stats = guardian.stop().await;
    assert_eq!(stats.flows_tunnelled, 1);
}

#[tokio::test]
async fn passthrough_hosts_are_tunnelled_even_when_inspecting() {
    let guardian = Guardian::start(|config| {
        config.passthrough_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let upstream = UpstreamServer::start_tls(
        vec![("/x", Reply::text("pinned"))],
        guardian.upstream_ca.server_config(&["127.0.0.1"]),
    )
    .await;
    let out = traffic_guardian_test_support::Curl::new(guardian.addr)
        .args([
            "--fail",
            "--cacert",
            guardian.upstream_ca.cert_file().to_str().unwrap(),
        ])
        .arg_url(&upstream.url("https", "/x"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.text(), "pinned");
    let flow = guardian.sink.flows("CONNECT", 1).await.remove(0);
    assert_eq!(flow.handling, FlowHandling::Tunnelled);
    guardian.stop().await;
}

#[tokio::test]
async fn connect_findings_from_the_connect_head_carry_protocol_connect() {
    let guardian = Guardian::start(|config| {
        config.runtimes = vec![RuntimeConfig::named("agent")];
    })
    .await;
    let upstream = UpstreamServer::start_tls(
        vec![("/x", Reply::text("ok"))],
        guardian.upstream_ca.server_config(&["127.0.0.1"]),
    )
    .await;
    let out = traffic_guardian_test_support::Curl::new(guardian.addr)
        .args([
            "--fail",
            "--cacert",
            guardian.upstream_ca.cert_file().to_str().unwrap(),
        ])
        .args(["--proxy-header", &format!("x-leak: {AI_KEY}")])
        .arg_url(&upstream.url("https", "/x"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let finding = guardian.sink.finding("ai_api_key", "outbound").await;
    assert_eq!(finding.protocol, Protocol::Connect);
    assert_eq!(finding.method.as_deref(), Some("CONNECT"));
    guardian.stop().await;
}

#[tokio::test]
async fn a_connect_without_tls_is_tunnelled_even_for_inspected_runtimes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = UpstreamServer::start(vec![("/x", Reply::text("plain inside connect"))]).await;
    let guardian = Guardian::start(|_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(guardian.addr).await.unwrap();
    let dest = upstream.addr();
    stream
        .write_all(format!("CONNECT {dest} HTTP/1.1\r\nhost: {dest}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    stream
        .write_all(
            format!("GET /x HTTP/1.1\r\nhost: {dest}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        super::harness::PATIENCE,
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(response.ends_with("plain inside connect"), "{response}");
    drop(stream);
    let flow = guardian.sink.flows("CONNECT", 1).await.remove(0);
    assert_eq!(flow.handling, FlowHandling::Tunnelled);
    assert!(flow.bytes_in > 0);
    guardian.stop().await;
}

#[tokio::test]
async fn a_silent_upstream_proxy_hits_the_connect_timeout_with_504() {
    use std::time::Duration;
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let guardian = Guardian::start(|config| {
        config.runtimes = vec![RuntimeConfig::named("agent")];
        config.upstream_proxy = Some(traffic_guardian_proxy::UpstreamProxy::new(
            silent.to_string(),
        ));
        config.limits.upstream_connect_timeout = Duration::from_millis(300);
    })
    .await;
    let out = traffic_guardian_test_support::Curl::new(guardian.addr)
        .args(["-w", "%{http_connect}", "-o", "/dev/null"])
        .arg_url("https://127.0.0.1:9/")
        .run()
        .await;
    assert_eq!(out.text(), "504", "{}", out.stderr);
    let flow = guardian.sink.flows("CONNECT", 1).await.remove(0);
    assert!(
        flow.error
            .as_deref()
            .unwrap_or_default()
            .contains("timed out"),
        "{flow:?}"
    );
    guardian.stop().await;
    holder.abort();
}
