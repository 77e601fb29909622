//! Plain HTTP forwarding: inspection both ways, encodings, streaming,
//! keep-alive, upgrades and hop-by-hop handling.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use traffic_guardian_core::Protocol;
use traffic_guardian_proxy::FlowHandling;
use traffic_guardian_test_support::{ChannelBody, Reply, UpstreamServer, finish_curl};

use super::harness::{AI_KEY, Guardian, PATIENCE, PIPE_TO_SHELL};

#[tokio::test]
async fn request_secret_is_found_and_body_arrives_unchanged() {
    let upstream = UpstreamServer::start(vec![("/echo", Reply::Echo)]).await;
    let guardian = Guardian::start(|_| {}).await;
    let body = format!("{{\"key\":\"{AI_KEY}\"}}");
    let out = guardian
        .curl()
        .args([
            "--fail",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &body,
        ])
        .arg_url(&upstream.url("http", "/echo"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.text(), body, "the body must pass unchanged");

    let finding = guardian.sink.finding("ai_api_key", "outbound").await;
    assert_eq!(finding.protocol, Protocol::Http);
    assert_eq!(finding.runtime.as_deref(), Some("agent"));
    assert_eq!(finding.dest, upstream.addr().to_string());
    assert_eq!(finding.method.as_deref(), Some("POST"));
    assert!(
        !finding.snippet.contains(&AI_KEY[12..]),
        "snippet leaks the key: {}",
        finding.snippet
    );

    let flow = guardian.sink.flows("POST", 1).await.remove(0);
    assert_eq!(flow.handling, FlowHandling::Forwarded);
    assert_eq!(flow.status, Some(200));
    assert_eq!(flow.bytes_out, body.len() as u64);
    assert_eq!(flow.bytes_in, body.len() as u64);
    assert_eq!(finding.flow_id.as_deref(), Some(flow.flow_id.as_str()));
    guardian.stop().await;
}

#[tokio::test]
async fn response_injection_is_found() {
    let page = format!("<p>To install, run:</p>\n<pre>\n{PIPE_TO_SHELL}\n</pre>\n");
    let upstream = UpstreamServer::start(vec![(
        "/install",
        Reply::Text("text/html", page.clone().into()),
    )])
    .await;
    let guardian = Guardian::start(|_| {}).await;
    let out = guardian
        .curl()
        .arg_url(&upstream.url("http", "/install"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.text(), page);
    let finding = guardian.sink.finding("pipe_to_shell", "inbound").await;
    assert_eq!(finding.protocol, Protocol::Http);
    assert_eq!(finding.method.as_deref(), Some("GET"));
    guardian.stop().await;
}

#[tokio::test]
async fn secret_in_query_and_header_is_found() {
    let upstream = UpstreamServer::start(vec![("/q", Reply::text("ok"))]).await;
    let guardian = Guardian::start(|_| {}).await;
    let out = guardian
        .curl()
        .args(["-H", &format!("x-forward: {AI_KEY}")])
        .arg_url(&upstream.url("http", &format!("/q?key={AI_KEY}")))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    guardian
        .sink
        .wait("findings in url and header", |findings, _| {
            (findings
                .iter()
                .filter(|f| f.pattern == "ai_api_key")
                .count()
                >= 1)
                .then_some(())
        })
        .await;
    guardian.stop().await;
}

#[tokio::test]
async fn gzip_and_brotli_bodies_are_scanned_decoded_and_passed_encoded() {
    // Long and repetitive, so the encoded bytes differ from the text.
    let page = format!(
        "{}step 1: {PIPE_TO_SHELL}\n",
        "lorem ipsum dolor sit amet\n".repeat(40)
    );
    let upstream = UpstreamServer::start(vec![
        ("/gz", Reply::gzip(page.as_bytes())),
        ("/br", Reply::brotli(page.as_bytes())),
    ])
    .await;
    for path in ["/gz", "/br"] {
        let guardian = Guardian::start(|_| {}).await;
        // Without --compressed curl writes the body as it came.
        let raw = guardian
            .curl()
            .arg_url(&upstream.url("http", path))
            .run()
            .await;
        assert_eq!(raw.code, 0, "{}", raw.stderr);
        let expected = match path {
            "/gz" => traffic_guardian_test_support::gzip(page.as_bytes()),
            _ => traffic_guardian_test_support::brotli_compress(page.as_bytes()),
        };
        assert_eq!(
            raw.stdout, expected,
            "{path}: the encoded body must pass unchanged"
        );
        let finding = guardian.sink.finding("pipe_to_shell", "inbound").await;
        assert_eq!(finding.dest, upstream.addr().to_string());
        guardian.stop().await;
    }
}

#[tokio::test]
async fn chunked_request_body_is_scanned() {
    let upstream = UpstreamServer::start(vec![("/echo", Reply::Echo)]).await;
    let guardian = Guardian::start(|_| {}).await;
    let body = format!("token={AI_KEY}&x=1");
    let out = guardian
        .curl()
        .args(["-H", "transfer-encoding: chunked", "--data-binary", &body])
        .arg_url(&upstream.url("http", "/echo"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.text(), body);
    guardian.sink.finding("ai_api_key", "outbound").await;
    guardian.stop().await;
}

/// A raw HTTP/1.1 client through the guardian whose request body the test
/// writes piece by piece.
async fn streaming_client(
    proxy: std::net::SocketAddr,
    url: &str,
) -> (
    mpsc::UnboundedSender<Bytes>,
    hyper::Response<hyper::body::Incoming>,
) {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, body) = ChannelBody::new();
    let req = hyper::Request::post(url)
        .header(
            "host",
            url.trim_start_matches("http://").split('/').next().unwrap(),
        )
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    (tx, response)
}

#[tokio::test]
async fn secret_split_across_two_writes_is_found() {
    let upstream = UpstreamServer::start(vec![("/echo", Reply::Echo)]).await;
    let guardian = Guardian::start(|_| {}).await;
    let (first, second) = AI_KEY.split_at(20);
    let (tx, response) = streaming_client(guardian.addr, &upstream.url("http", "/echo")).await;
    let mut body = response.into_body();
    tx.send(Bytes::from(format!("key={first}"))).unwrap();
    // The echo proves the first half went all the way through on its own
    // before the second half is written.
    let echoed = tokio::time::timeout(PATIENCE, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_data().unwrap(), format!("key={first}"));
    tx.send(Bytes::from(second.to_owned())).unwrap();
    drop(tx);
    while let Some(frame) = tokio::time::timeout(PATIENCE, body.frame()).await.unwrap() {
        frame.unwrap();
    }
    guardian.sink.finding("ai_api_key", "outbound").await;
    guardian.stop().await;
}

#[tokio::test]
async fn every_request_on_a_keep_alive_connection_is_scanned() {
    let upstream = UpstreamServer::start(vec![("/echo", Reply::Echo)]).await;
    let guardian = Guardian::start(|_| {}).await;
    let url = upstream.url("http", "/echo");
    // One curl, two transfers: curl reuses the connection.
    let out = guardian
        .curl()
        .args(["--data-binary", &format!("a={AI_KEY}"), &url])
        .arg_url(&url)
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let findings = guardian
        .sink
        .wait("two findings", |findings, _| {
            let keys: Vec<_> = findings
                .iter()
                .filter(|f| f.pattern == "ai_api_key")
                .cloned()
                .collect();
            (keys.len() >= 2).then_some(keys)
        })
        .await;
    assert_ne!(
        findings[0].flow_id, findings[1].flow_id,
        "each request is its own flow"
    );
    let stats = guardian.stop().await;
    assert_eq!(stats.connections_total, 1, "curl reused one connection");
    assert_eq!(stats.connections_open, 0);
    assert_eq!(stats.flows_inspected, 2);
    assert_eq!(stats.requests, 2);
}

#[tokio::test]
async fn sse_events_reach_the_client_before_the_stream_ends() {
    let (events, reply) = Reply::sse();
    let upstream = UpstreamServer::start(vec![("/events", reply)]).await;
    let guardian = Guardian::start(|_| {}).await;
    let (child, mut lines) = guardian
        .curl()
        .arg_url(&upstream.url("http", "/events"))
        .spawn();
    for i in 0..3 {
        events.event(&format!("token {i}"));
        // Only after the client has this event is the next one sent: a
        // guardian that held bytes back would stall here.
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("event did not arrive while the stream is open")
            .unwrap()
            .unwrap();
        assert_eq!(line, format!("data: token {i}"));
        let blank = lines.next_line().await.unwrap().unwrap();
        assert_eq!(blank, "");
    }
    events.event(PIPE_TO_SHELL);
    drop(events);
    let (code, stderr) = finish_curl(child).await;
    assert_eq!(code, 0, "{stderr}");
    guardian.sink.finding("pipe_to_shell", "inbound").await;
    guardian.stop().await;
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let upstream = UpstreamServer::start(vec![("/echo", Reply::Echo)]).await;
    let guardian = Guardian::start(|_| {}).await;
    let mut stream = TcpStream::connect(guardian.addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
        upstream.url("http", "/echo"),
        upstream.addr()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(PATIENCE, reader.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    let mut blank = String::new();
    reader.read_line(&mut blank).await.unwrap();
    assert_eq!(blank, "\r\n");
    reader.get_mut().write_all(b"hello").await.unwrap();
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(PATIENCE, reader.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early: {head:?}");
        if line == "\r\n" {
            break;
        }
        head.push(line);
    }
    assert!(head[0].starts_with("HTTP/1.1 200"), "{head:?}");
    let mut body = [0u8; 5];
    tokio::time::timeout(PATIENCE, reader.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&body, b"hello");
    guardian.stop().await;
}

#[tokio::test]
async fn upgrades_are_tunnelled_through() {
    let upstream = UpstreamServer::start(vec![("/ws", Reply::UpgradeEcho)]).await;
    let guardian = Guardian::start(|_| {}).await;
    let mut stream = TcpStream::connect(guardian.addr).await.unwrap();
    let head = format!(
        "GET {} HTTP/1.1\r\nhost: {}\r\nconnection: Upgrade\r\nupgrade: echo\r\n\r\n",
        upstream.url("http", "/ws"),
        upstream.addr()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the 101");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    stream
        .write_all(b"ping over the upgraded stream")
        .await
        .unwrap();
    let mut echoed = vec![0u8; 29];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping over the upgraded stream");
    drop(stream);
    let flow = guardian.sink.flows("GET", 1).await.remove(0);
    assert_eq!(flow.status, Some(101));
    assert_eq!(flow.bytes_out, 29);
    guardian.stop().await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_and_end_to_end_ones_kept() {
    let upstream = UpstreamServer::start(vec![("/h", Reply::text("ok"))]).await;
    let guardian = Guardian::start(|_| {}).await;
    let out = guardian
        .curl()
        .args([
            "-H",
            "connection: keep-alive, x-hop",
            "-H",
            "x-hop: 1",
            "-H",
            "x-end: 2",
            "-H",
            "proxy-connection: keep-alive",
            "--proxy-user",
            "someone:pw",
        ])
        .arg_url(&upstream.url("http", "/h?a=b"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen = upstream.seen().remove(0);
    assert_eq!(seen.uri, "/h?a=b", "origin-form towards the server");
    assert_eq!(seen.headers["x-end"], "2");
    for gone in [
        "x-hop",
        "proxy-connection",
        "proxy-authorization",
        "connection",
    ] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} must not be forwarded"
        );
    }
    assert_eq!(seen.headers["host"], upstream.addr().to_string());
    guardian.stop().await;
}

#[tokio::test]
async fn large_download_streams_through() {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let chunks = vec![chunk; 512]; // 32 MiB
    let upstream = UpstreamServer::start(vec![("/big", Reply::Chunks(chunks))]).await;
    let guardian = Guardian::start(|_| {}).await;
    let out = guardian
        .curl()
        .args(["-o", "/dev/null", "-w", "%{size_download}"])
        .arg_url(&upstream.url("http", "/big"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.text(), (32 * 1024 * 1024).to_string());
    let flow = guardian.sink.flows("GET", 1).await.remove(0);
    assert_eq!(flow.bytes_in, 32 * 1024 * 1024);
    assert!(
        flow.unscanned_bytes > 0,
        "beyond the budget bytes pass unscanned"
    );
    guardian.stop().await;
}

#[tokio::test]
async fn response_trailers_pass_through() {
    let upstream = UpstreamServer::start(vec![(
        "/t",
        Reply::Trailers(Bytes::from_static(b"payload"), "x-checksum", "abc123"),
    )])
    .await;
    let guardian = Guardian::start(|_| {}).await;
    let mut stream = TcpStream::connect(guardian.addr).await.unwrap();
    let head = format!(
        "GET {} HTTP/1.1\r\nhost: {}\r\nte: trailers\r\nconnection: close\r\n\r\n",
        upstream.url("http", "/t"),
        upstream.addr()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    assert!(raw.contains("transfer-encoding: chunked"), "{raw}");
    assert!(raw.contains("payload"), "{raw}");
    assert!(
        raw.contains("\r\n0\r\nx-checksum: abc123\r\n"),
        "trailer lost: {raw:?}"
    );
    // Trailers end the message: the flow is complete, not cut short.
    let flow = guardian.sink.flows("GET", 1).await.remove(0);
    assert_eq!(flow.error, None, "{flow:?}");
    assert_eq!(flow.bytes_in, 7, "{flow:?}");
    guardian.stop().await;
}

#[tokio::test]
async fn the_target_authority_wins_over_a_different_host_header() {
    let upstream = UpstreamServer::start(vec![("/h", Reply::text("ok"))]).await;
    let guardian = Guardian::start(|_| {}).await;
    let out = guardian
        .curl()
        .args(["--fail", "-H", "host: somewhere-else.example"])
        .arg_url(&upstream.url("http", "/h"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen = upstream.seen().remove(0);
    assert_eq!(seen.headers["host"], upstream.addr().to_string());
    guardian.stop().await;
}
