//! The rule engine and the redactor over any bytes. Properties: no panic,
//! and no secret range the rules matched in the input appears unmasked in
//! any finding's snippet or JSONL line.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use traffic_guardian_core::rules::Kind;
use traffic_guardian_core::{Direction, Engine, MessageMeta};

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::builtin)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let direction = if selector & 1 == 0 { Direction::Outbound } else { Direction::Inbound };
    let engine = engine();

    let mut scanner = engine.message(MessageMeta::new(direction, "fuzz", "sink.example:443"));
    if selector & 2 != 0 {
        scanner.scan_header("x-fuzz", body);
    } else {
        let split = usize::from(selector >> 2).min(body.len());
        scanner.feed(&body[..split]);
        scanner.feed(&body[split..]);
    }
    let outcome = scanner.finish();
    if outcome.findings.is_empty() {
        return;
    }

    let lines: Vec<String> = outcome.findings.iter().map(|f| f.to_json_line()).collect();
    for m in engine.matches(body, direction) {
        if m.rule.kind != Kind::Secret {
            continue;
        }
        for mask in &m.masks {
            let secret = &body[mask.clone()];
            // Judge only token-like secrets: escaping changes how other
            // bytes look in a snippet, so their raw form proves nothing.
            if secret.len() < 12 || !secret.iter().all(|b| b.is_ascii_graphic() && *b != b'"' && *b != b'\\') {
                continue;
            }
            let secret = std::str::from_utf8(secret).unwrap_or_default();
            for line in &lines {
                assert!(!line.contains(secret), "secret {secret:?} leaked in {line}");
            }
        }
    }
});
