//! Inspected HTTPS: leaf certificates from the guardian's CA, HTTP/2 both
//! ways, verified upstream TLS.

use http::Version;
use traffic_guardian_core::Protocol;
use traffic_guardian_proxy::FlowHandling;
use traffic_guardian_test_support::{Reply, TestCa, UpstreamServer};

use super::harness::{AI_KEY, Guardian, PIPE_TO_SHELL};

async fn tls_upstream(ca: &TestCa, routes: Vec<(&str, Reply)>) -> UpstreamServer {
    UpstreamServer::start_tls(routes, ca.server_config(&["localhost", "127.0.0.1"])).await
}

#[tokio::test]
async fn http2_through_the_inspected_path_is_scanned_both_ways() {
    let guardian = Guardian::start(|_| {}).await;
    let page = format!("run: {PIPE_TO_SHELL}");
    let upstream = tls_upstream(
        &guardian.upstream_ca,
        vec![("/echo", Reply::Echo), ("/page", Reply::text(page.clone()))],
    )
    .await;
    let body = format!("key={AI_KEY}");
    let out = guardian
        .curl()
        .args([
            "--http2",
            "--fail",
            "-w",
            "\n%{http_version}",
            "--data-binary",
            &body,
        ])
        .arg_url(&upstream.url("https", "/echo"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.text(),
        format!("{body}\n2"),
        "h2 to the client, body unchanged"
    );

    let finding = guardian.sink.finding("ai_api_key", "outbound").await;
    assert_eq!(finding.protocol, Protocol::Https);
    assert_eq!(finding.dest, upstream.addr().to_string());

    let out = guardian
        .curl()
        .args(["--http2", "--fail"])
        .arg_url(&upstream.url("https", "/page"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.text(), page);
    let finding = guardian.sink.finding("pipe_to_shell", "inbound").await;
    assert_eq!(finding.protocol, Protocol::Https);

    let seen = upstream.seen();
    assert!(
        seen.iter().all(|r| r.version == Version::HTTP_2),
        "h2 upstream too: {seen:?}"
    );
    let flows = guardian.sink.flows("POST", 1).await;
    assert_eq!(flows[0].handling, FlowHandling::Inspected);
    assert_eq!(flows[0].protocol, Protocol::Https);
    guardian.stop().await;
}

#[tokio::test]
async fn http1_client_keeps_http1_upstream_and_dns_names_get_leaves() {
    let guardian = Guardian::start(|_| {}).await;
    let upstream = tls_upstream(&guardian.upstream_ca, vec![("/echo", Reply::Echo)]).await;
    let url = format!("https://localhost:{}/echo", upstream.addr().port());
    let out = guardian
        .curl()
        .args([
            "--http1.1",
            "--fail",
            "--data-binary",
            &format!("k={AI_KEY}"),
        ])
        .arg_url(&url)
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        upstream
            .seen()
            .iter()
            .all(|r| r.version == Version::HTTP_11)
    );
    let finding = guardian.sink.finding("ai_api_key", "outbound").await;
    assert_eq!(
        finding.dest,
        format!("localhost:{}", upstream.addr().port())
    );
    guardian.stop().await;
}

#[tokio::test]
async fn upstream_certificate_failure_is_a_clear_502() {
    let guardian = Guardian::start(|_| {}).await;
    let stranger = TestCa::new("untrusted");
    let upstream = tls_upstream(&stranger, vec![("/x", Reply::text("never"))]).await;
    let out = guardian
        .curl()
        .args(["-w", "\n%{http_code}"])
        .arg_url(&upstream.url("https", "/x"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = out.text();
    assert!(text.ends_with("\n502"), "{text}");
    assert!(text.contains("certificate"), "{text}");
    assert!(
        upstream.seen().is_empty(),
        "no request reaches an unverified server"
    );
    let stats = guardian.stop().await;
    assert_eq!(stats.upstream_errors, 1);
}

#[tokio::test]
async fn http2_clients_reach_http1_only_servers() {
    let guardian = Guardian::start(|_| {}).await;
    let upstream = UpstreamServer::start_tls(
        vec![("/echo", Reply::Echo)],
        guardian
            .upstream_ca
            .server_config_with_alpn(&["127.0.0.1"], &[b"http/1.1"]),
    )
    .await;
    let body = format!("k={AI_KEY}");
    let out = guardian
        .curl()
        .args([
            "--http2",
            "--fail",
            "-w",
            "\n%{http_version}",
            "--data-binary",
            &body,
        ])
        .arg_url(&upstream.url("https", "/echo?x=1"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.text(), format!("{body}\n2"));
    let seen = upstream.seen().remove(0);
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(
        seen.uri, "/echo?x=1",
        "origin-form towards an HTTP/1.1 server"
    );
    assert_eq!(seen.headers["host"], upstream.addr().to_string());
    guardian.sink.finding("ai_api_key", "outbound").await;
    guardian.stop().await;
}

#[tokio::test]
async fn websocket_style_upgrades_work_inside_inspected_tls() {
    use std::sync::Arc;

    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let guardian = Guardian::start(|_| {}).await;
    let upstream = tls_upstream(&guardian.upstream_ca, vec![("/ws", Reply::UpgradeEcho)]).await;
    let dest = upstream.addr();

    // CONNECT, then TLS with the guardian's CA as the only root.
    let mut tcp = tokio::net::TcpStream::connect(guardian.addr).await.unwrap();
    tcp.write_all(format!("CONNECT {dest} HTTP/1.1\r\nhost: {dest}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(guardian.ca.cert_der()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(dest.ip().to_string()).unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();

    stream
        .write_all(
            format!(
                "GET /ws HTTP/1.1\r\nhost: {dest}\r\nconnection: Upgrade\r\nupgrade: echo\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the 101");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    stream.write_all(b"frame through wss").await.unwrap();
    let mut echoed = [0u8; 17];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"frame through wss");
    drop(stream);
    let flow = guardian.sink.flows("GET", 1).await.remove(0);
    assert_eq!(flow.status, Some(101));
    assert_eq!(flow.protocol, Protocol::Https);
    assert_eq!(flow.bytes_out, 17);
    guardian.stop().await;
}
