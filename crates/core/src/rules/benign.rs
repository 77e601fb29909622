//! The benign-traffic suite: common API payloads, pages, scripts and docs
//! must produce no finding at medium or above, in either direction.

use crate::engine::Engine;
use crate::finding::{Direction, Severity};
use crate::scan::MessageMeta;

/// Every benign fixture, by name.
pub(crate) const CORPUS: &[(&str, &str)] = &[
    (
        "anthropic_request.json",
        include_str!("../../testdata/benign/anthropic_request.json"),
    ),
    (
        "openai_response.json",
        include_str!("../../testdata/benign/openai_response.json"),
    ),
    (
        "github_api.json",
        include_str!("../../testdata/benign/github_api.json"),
    ),
    (
        "npm_registry.json",
        include_str!("../../testdata/benign/npm_registry.json"),
    ),
    ("page.html", include_str!("../../testdata/benign/page.html")),
    (
        "app.min.js",
        include_str!("../../testdata/benign/app.min.js"),
    ),
    (
        "SHA256SUMS",
        include_str!("../../testdata/benign/SHA256SUMS"),
    ),
    (
        "setup_guide.md",
        include_str!("../../testdata/benign/setup_guide.md"),
    ),
    ("k8s.yaml", include_str!("../../testdata/benign/k8s.yaml")),
];

#[test]
fn benign_traffic_has_no_finding_at_medium_or_above() {
    let engine = Engine::builtin();
    for (name, body) in CORPUS {
        for direction in [Direction::Outbound, Direction::Inbound] {
            let mut scanner =
                engine.message(MessageMeta::new(direction, "c", "api.example.com:443"));
            scanner.scan_target(&format!(
                "https://api.example.com/v1/{name}?page=2&per_page=50"
            ));
            scanner.scan_header("content-type", b"application/json");
            scanner.scan_header(
                "user-agent",
                b"node-fetch/3.3.2 (+https://github.com/node-fetch/node-fetch)",
            );
            scanner.feed(body.as_bytes());
            let loud: Vec<_> = scanner
                .finish()
                .findings
                .into_iter()
                .filter(|f| f.severity >= Severity::Medium)
                .map(|f| (f.pattern.to_string(), f.snippet))
                .collect();
            assert!(loud.is_empty(), "{name} ({direction}): {loud:?}");
        }
    }
}
