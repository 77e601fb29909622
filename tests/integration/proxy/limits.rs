//! Attribution, refusals and limits: each with a clear status.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use traffic_guardian_proxy::{ListenerConfig, RuntimeConfig, UnknownClients};
use traffic_guardian_test_support::{Curl, Reply, UpstreamServer};

use super::harness::{AI_KEY, Guardian, PATIENCE};

async fn status_of(curl: Curl, url: &str) -> (String, String) {
    let out = curl.args(["-w", "\n%{http_code}"]).arg_url(url).run().await;
    let text = out.text();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_owned(), body.to_owned())
}

#[tokio::test]
async fn origin_form_requests_are_400_with_a_reason() {
    let guardian = Guardian::start(|_| {}).await;
    let mut stream = TcpStream::connect(guardian.addr).await.unwrap();
    stream
        .write_all(b"GET /not-a-proxy-request HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("absolute-form"), "{text}");
    guardian.stop().await;
}

#[tokio::test]
async fn unreachable_upstream_is_502_and_silent_upstream_is_504() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let upstream = UpstreamServer::start(vec![("/hang", Reply::Hang)]).await;
    let guardian = Guardian::start(|config| {
        config.limits.upstream_response_timeout = Some(Duration::from_millis(300));
    })
    .await;
    let (code, body) = status_of(guardian.curl(), &format!("http://{dead}/x")).await;
    assert_eq!(code, "502", "{body}");
    assert!(
        body.starts_with("traffic-guardian: cannot connect"),
        "{body}"
    );
    let (code, body) = status_of(guardian.curl(), &upstream.url("http", "/hang")).await;
    assert_eq!(code, "504", "{body}");
    let stats = guardian.stop().await;
    assert_eq!(stats.upstream_errors, 2);
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let upstream = UpstreamServer::start(vec![("/x", Reply::text("ok"))]).await;
    let guardian = Guardian::start(|config| config.limits.max_header_bytes = 4096).await;
    let big = "a".repeat(8192);
    let (code, _) = status_of(
        guardian.curl().args(["-H", &format!("x-big: {big}")]),
        &upstream.url("http", "/x"),
    )
    .await;
    assert_eq!(code, "431");
    guardian.stop().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let guardian = Guardian::start(|config| {
        config.limits.header_read_timeout = Duration::from_millis(200);
    })
    .await;
    let mut stream = TcpStream::connect(guardian.addr).await.unwrap();
    stream
        .write_all(b"GET http://127.0.0.1:1/ HTTP/1.1\r\nhost: 127")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    // The guardian closes the connection (with or without a 408).
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a slowloris client must be disconnected");
    guardian.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_get_503() {
    let upstream = UpstreamServer::start(vec![("/x", Reply::text("ok"))]).await;
    let guardian = Guardian::start(|config| config.limits.max_connections = 1).await;
    let held = TcpStream::connect(guardian.addr).await.unwrap();
    let (code, body) = status_of(guardian.curl(), &upstream.url("http", "/x")).await;
    assert_eq!(code, "503", "{body}");
    drop(held);
    let stats = guardian.stop().await;
    assert_eq!(stats.connections_refused, 1);
}

#[tokio::test]
async fn runtimes_by_user_by_listener_and_refusal_of_unknown_clients() {
    let upstream = UpstreamServer::start(vec![("/echo", Reply::Echo)]).await;
    let guardian = Guardian::start(|config| {
        config.runtimes = vec![
            RuntimeConfig {
                proxy_auth_users: vec!["alice".into()],
                ..RuntimeConfig::named("alice-rt")
            },
            RuntimeConfig::named("second"),
            RuntimeConfig {
                source_nets: vec!["127.0.0.2/32".parse().unwrap()],
                ..RuntimeConfig::named("by-source")
            },
        ];
        config.listeners.push(ListenerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            runtime: Some("second".into()),
        });
        config.unknown_clients = UnknownClients::Refuse;
    })
    .await;
    let url = upstream.url("http", "/echo");
    let (code, _) = status_of(guardian.curl(), &url).await;
    assert_eq!(
        code, "407",
        "unknown clients are refused and asked to authenticate"
    );

    let body = format!("k={AI_KEY}");
    let out = guardian
        .curl()
        .args(["--fail", "--proxy-user", "alice:x", "--data-binary", &body])
        .arg_url(&url)
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let finding = guardian.sink.finding("ai_api_key", "outbound").await;
    assert_eq!(finding.runtime.as_deref(), Some("alice-rt"));

    let second = guardian.proxy.local_addrs()[1];
    let out = Curl::new(second)
        .args(["--fail", "--data-binary", &body])
        .arg_url(&url)
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    guardian
        .sink
        .wait("a finding for the listener's runtime", |f, _| {
            f.iter()
                .find(|f| f.runtime.as_deref() == Some("second"))
                .cloned()
        })
        .await;

    // A client from 127.0.0.2 belongs to the runtime of that network.
    let out = guardian
        .curl()
        .args(["--fail", "--interface", "127.0.0.2", "--data-binary", &body])
        .arg_url(&url)
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let finding = guardian
        .sink
        .wait("a finding for the source network's runtime", |f, _| {
            f.iter()
                .find(|f| f.runtime.as_deref() == Some("by-source"))
                .cloned()
        })
        .await;
    assert!(
        finding.source.starts_with("127.0.0.2:"),
        "{}",
        finding.source
    );
    guardian.stop().await;
}

#[tokio::test]
async fn clients_outside_the_allowed_networks_get_403() {
    let upstream = UpstreamServer::start(vec![("/x", Reply::text("ok"))]).await;
    let guardian = Guardian::start(|config| {
        config.allowed_clients = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let (code, _) = status_of(guardian.curl(), &upstream.url("http", "/x")).await;
    assert_eq!(code, "403");
    assert!(upstream.seen().is_empty());
    guardian.stop().await;
}

#[tokio::test]
async fn requests_to_the_guardian_itself_are_refused() {
    let guardian = Guardian::start(|_| {}).await;
    let (code, body) = status_of(guardian.curl(), &format!("http://{}/", guardian.addr)).await;
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("loops back"), "{body}");
    let (code, _) = status_of(
        guardian.curl(),
        &format!("http://localhost:{}/", guardian.addr.port()),
    )
    .await;
    assert_eq!(code, "400");
    let stats = guardian.stop().await;
    assert_eq!(stats.connections_total, 2, "no connection looped back in");
}

#[tokio::test]
async fn open_tunnels_count_against_the_connection_limit() {
    let upstream = UpstreamServer::start(vec![("/x", Reply::text("ok"))]).await;
    let guardian = Guardian::start(|config| {
        config.limits.max_connections = 1;
        config.runtimes = vec![RuntimeConfig::named("agent")];
    })
    .await;
    let mut tunnel = TcpStream::connect(guardian.addr).await.unwrap();
    let dest = upstream.addr();
    tunnel
        .write_all(format!("CONNECT {dest} HTTP/1.1\r\nhost: {dest}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(PATIENCE, tunnel.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The HTTP side of that connection is done; the tunnel still holds the slot.
    let (code, _) = status_of(guardian.curl(), &upstream.url("http", "/x")).await;
    assert_eq!(code, "503");
    drop(tunnel);
    guardian.sink.flows("CONNECT", 1).await;
    let stats = guardian.stop().await;
    assert_eq!(stats.connections_open, 0);
}

#[tokio::test]
async fn a_stalled_response_body_is_cut_after_the_idle_timeout() {
    let (events, reply) = Reply::sse();
    let upstream = UpstreamServer::start(vec![("/stall", reply)]).await;
    let guardian = Guardian::start(|config| {
        config.limits.idle_timeout = Duration::from_millis(300);
        config.limits.upstream_response_timeout = Some(Duration::from_millis(300));
    })
    .await;
    let (child, mut lines) = guardian
        .curl()
        .arg_url(&upstream.url("http", "/stall"))
        .spawn();
    events.event("first");
    let first = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some("data: first"));
    // The upstream now says nothing more, but keeps its end open.
    let (code, _) = traffic_guardian_test_support::finish_curl(child).await;
    assert_ne!(code, 0, "a cut stream is an error for the client");
    let flow = guardian.sink.flows("GET", 1).await.remove(0);
    assert!(flow.error.is_some(), "{flow:?}");
    drop(events);
    guardian.stop().await;
}
