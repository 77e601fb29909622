//! Chaining through an upstream proxy (NanoClaw's OneCLI gateway): the
//! client's `Proxy-Authorization` travels on untouched and nowhere else.

use http::Method;
use traffic_guardian_proxy::UpstreamProxy;
use traffic_guardian_test_support::{ChainProxy, Reply, UpstreamServer};

use super::harness::{AI_KEY, Guardian};

/// `user:s3cret-chain-pass` in Basic form.
const CREDENTIAL: &str = "Basic dXNlcjpzM2NyZXQtY2hhaW4tcGFzcw==";

#[tokio::test]
async fn plain_and_inspected_requests_go_through_the_upstream_proxy_with_the_clients_credentials() {
    let chain = ChainProxy::start(Some(CREDENTIAL)).await;
    let guardian = Guardian::start(|config| {
        config.upstream_proxy = Some(UpstreamProxy::new(format!("http://{}", chain.addr())));
    })
    .await;
    let plain = UpstreamServer::start(vec![("/echo", Reply::Echo)]).await;
    let tls = UpstreamServer::start_tls(
        vec![("/echo", Reply::Echo)],
        guardian.upstream_ca.server_config(&["127.0.0.1"]),
    )
    .await;
    let body = format!("k={AI_KEY}");
    for url in [plain.url("http", "/echo"), tls.url("https", "/echo")] {
        let out = guardian
            .curl()
            .args([
                "--fail",
                "--proxy-user",
                "user:s3cret-chain-pass",
                "--data-binary",
                &body,
            ])
            .arg_url(&url)
            .run()
            .await;
        assert_eq!(out.code, 0, "{url}: {}", out.stderr);
        assert_eq!(out.text(), body);
    }
    let seen = chain.seen();
    assert!(
        seen.contains(&(Method::POST, Some(CREDENTIAL.into()))),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(Method::CONNECT, Some(CREDENTIAL.into()))),
        "{seen:?}"
    );
    assert!(plain.seen()[0].headers.get("proxy-authorization").is_none());

    let findings = guardian
        .sink
        .wait("both findings", |f, _| (f.len() >= 2).then(|| f.to_vec()))
        .await;
    for finding in &findings {
        let line = finding.to_json_line();
        assert!(
            !line.contains("s3cret-chain-pass") && !line.contains(&CREDENTIAL[6..]),
            "{line}"
        );
    }
    guardian.stop().await;
}

#[tokio::test]
async fn credentials_stay_home_when_forwarding_is_off() {
    let chain = ChainProxy::start(None).await;
    let guardian = Guardian::start(|config| {
        let mut upstream = UpstreamProxy::new(chain.addr().to_string());
        upstream.forward_proxy_authorization = false;
        config.upstream_proxy = Some(upstream);
    })
    .await;
    let plain = UpstreamServer::start(vec![("/x", Reply::text("ok"))]).await;
    let out = guardian
        .curl()
        .args(["--fail", "--proxy-user", "user:pw"])
        .arg_url(&plain.url("http", "/x"))
        .run()
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(chain.seen(), vec![(Method::GET, None)]);
    guardian.stop().await;
}

#[tokio::test]
async fn upstream_proxy_refusal_reaches_the_client() {
    let chain = ChainProxy::start(Some(CREDENTIAL)).await;
    let guardian = Guardian::start(|config| {
        config.upstream_proxy = Some(UpstreamProxy::new(chain.addr().to_string()));
    })
    .await;
    let plain = UpstreamServer::start(vec![("/x", Reply::text("ok"))]).await;
    let out = guardian
        .curl()
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--proxy-user",
            "user:wrong",
        ])
        .arg_url(&plain.url("http", "/x"))
        .run()
        .await;
    assert_eq!(out.text(), "407");
    guardian.stop().await;
}
