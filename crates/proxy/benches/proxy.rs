//! `cargo xtask bench proxy`: the guardian's cost against a direct baseline,
//! measured in the same run.
//!
//! A local upstream (plain and TLS), a load generator with 32 keep-alive
//! connections, and the guardian in a child process (so its memory is its
//! own). Five scenarios: plain HTTP direct, through a bare hop and through
//! the guardian; HTTPS direct and through the guardian with inspection. Then
//! 1,000 idle keep-alive connections to measure the guardian's resident
//! memory.
//!
//! The bare hop is a second baseline: a forward proxy made of the same hyper
//! and tokio with nothing else in it, in its own child process. On two shared
//! cores a hop costs about as much CPU as the client and server it sits
//! between, so the bare hop shows the ceiling any proxy can reach here; the
//! guardian's distance to it is what inspection costs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use traffic_guardian_core::Finding;
use traffic_guardian_proxy::{
    CertificateAuthority, Engine, FindingSink, Proxy, ProxyConfig, RuntimeConfig, UnknownClients,
};
use traffic_guardian_test_support::client::{Route, tls_client_config};
use traffic_guardian_test_support::procfs::{self, cpu_ticks};
use traffic_guardian_test_support::{Reply, TestCa, UpstreamServer};

const CONNECTIONS: usize = 32;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(3);
/// Direct and guardian runs alternate this many times; the median counts,
/// so background load on a shared machine hits both sides alike.
const ROUNDS: usize = 3;
const IDLE_CONNECTIONS: usize = 1000;
const CHILD_ENV: &str = "TRAFFIC_GUARDIAN_BENCH_CHILD";
const BARE_HOP_ENV: &str = "TRAFFIC_GUARDIAN_BENCH_BARE_HOP";

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        guardian_child(Path::new(&dir));
        return;
    }
    if std::env::var_os(BARE_HOP_ENV).is_some() {
        bare_hop_child();
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(parent());
}

/// Counts findings; the bench traffic has none, but the scanner runs.
struct CountingSink(AtomicU64);

impl FindingSink for CountingSink {
    fn record(&self, findings: Vec<Finding>) {
        self.0.fetch_add(findings.len() as u64, Ordering::Relaxed);
    }
}

/// The guardian process: start, print the address, serve until stdin closes.
fn guardian_child(dir: &Path) {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config = ProxyConfig::new(Engine::builtin()).listen("127.0.0.1:0".parse().unwrap());
        config.runtimes = vec![RuntimeConfig {
            https_inspection: true,
            ..RuntimeConfig::named("bench")
        }];
        config.unknown_clients = UnknownClients::Attribute("bench".into());
        config.certificate_authority =
            Some(CertificateAuthority::from_pem(&read("ca.pem"), &read("ca.key")).unwrap());
        let upstream_ca: CertificateDer<'static> = {
            use rustls_pki_types::pem::PemObject;
            CertificateDer::from_pem_slice(read("upstream.pem").as_bytes()).unwrap()
        };
        config.extra_upstream_roots = vec![upstream_ca];
        config.limits.header_read_timeout = Duration::from_secs(300);
        config.limits.max_connections = 8192;
        let proxy = Proxy::start(config, Arc::new(CountingSink(AtomicU64::new(0))))
            .await
            .unwrap();
        println!("listening {}", proxy.local_addrs()[0]);
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .unwrap();
        proxy.shutdown(false).await;
    });
}

/// The bare hop: serve until stdin closes.
fn bare_hop_child() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening {}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(bare_hop_connection(stream));
            }
        });
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .unwrap();
    });
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

type BareUpstream =
    Arc<tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<hyper::body::Incoming>>>>;

/// One client connection of the bare hop. No attribution, scanning,
/// pooling, limits or header handling.
async fn bare_hop_connection(stream: tokio::net::TcpStream) {
    let upstream = BareUpstream::default();
    let service = hyper::service::service_fn(move |req| bare_hop_forward(upstream.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

/// Sends an absolute-form request on in origin form, over the one upstream
/// connection this client connection opened at its first request.
async fn bare_hop_forward(
    upstream: BareUpstream,
    mut req: Request<hyper::body::Incoming>,
) -> Result<hyper::Response<hyper::body::Incoming>, BoxError> {
    let mut slot = upstream.lock().await;
    let sender = match &mut *slot {
        Some(sender) => sender,
        None => {
            let authority = req.uri().authority().ok_or("no authority")?.to_string();
            let tcp = tokio::net::TcpStream::connect(authority).await?;
            tcp.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
            tokio::spawn(connection);
            slot.insert(sender)
        }
    };
    let path = req.uri().path_and_query().ok_or("no path")?.as_str();
    *req.uri_mut() = path.parse()?;
    Ok(sender.send_request(req).await?)
}

/// A proxy in a child process: the guardian or the bare hop.
struct GuardianProcess {
    child: Child,
    addr: SocketAddr,
}

impl GuardianProcess {
    fn start(dir: &Path) -> GuardianProcess {
        GuardianProcess::spawn(CHILD_ENV, dir.as_os_str())
    }

    fn start_bare_hop() -> GuardianProcess {
        GuardianProcess::spawn(BARE_HOP_ENV, "1".as_ref())
    }

    fn spawn(env: &str, value: &std::ffi::OsStr) -> GuardianProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(env, value)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .expect("guardian address")
            .parse()
            .unwrap();
        GuardianProcess { child, addr }
    }

    /// (current, peak) resident memory in KiB.
    fn rss_kib(&self) -> (u64, u64) {
        procfs::memory(self.child.id()).map_or((0, 0), |m| (m.rss_kib, m.peak_kib))
    }
}

impl Drop for GuardianProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Direct,
    BareHop(SocketAddr),
    Guardian(SocketAddr),
}

#[derive(Clone)]
struct Scenario {
    name: &'static str,
    target: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
    via: Via,
}

impl Scenario {
    fn route(&self) -> Route {
        let mut route = Route::direct(self.target);
        if let Via::Guardian(proxy) | Via::BareHop(proxy) = self.via {
            route = route.via(proxy);
        }
        if let Some(tls) = &self.tls {
            route = route.tls(tls.clone());
        }
        route
    }
}

fn tls_config(root: CertificateDer<'static>) -> Arc<ClientConfig> {
    tls_client_config(root, &[b"http/1.1"])
}

/// Opens one client connection as the scenario says and returns a sender
/// plus the request URI to use on it.
async fn connect(
    s: &Scenario,
) -> (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    String,
) {
    let route = s.route();
    (route.http1().await.unwrap(), route.target("/bench"))
}

struct Measured {
    rps: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time per request of this process (load generator and upstream)
    /// and of the proxy, in microseconds.
    cpu_us: (f64, f64),
}

/// Runs one scenario; `proxy_pid` is the process whose CPU time is
/// reported beside the load generator's.
async fn run(s: &Scenario, proxy_pid: &str) -> Measured {
    let start = Instant::now();
    let mut cpu_before = None;
    let measure_from = start + WARMUP;
    let end = measure_from + MEASURE;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let (mut sender, uri) = connect(&s).await;
            let host = s.target.to_string();
            let mut latencies = Vec::new();
            loop {
                let begin = Instant::now();
                if begin >= end {
                    return latencies;
                }
                let req = Request::get(uri.as_str())
                    .header("host", &host)
                    .body(Empty::new())
                    .unwrap();
                sender.ready().await.unwrap();
                let response = sender.send_request(req).await.unwrap();
                assert!(
                    response.status().is_success(),
                    "{}: {}",
                    s.name,
                    response.status()
                );
                response.into_body().collect().await.unwrap();
                if begin >= measure_from {
                    latencies.push(begin.elapsed());
                }
            }
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    cpu_before = cpu_before.or(Some((cpu_ticks("self"), cpu_ticks(proxy_pid))));
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let (own_before, proxy_before) = cpu_before.unwrap_or_default();
    let per_request = |ticks: u64| ticks as f64 * 10_000.0 / all.len().max(1) as f64;
    let cpu_us = (
        per_request(cpu_ticks("self") - own_before),
        per_request(cpu_ticks(proxy_pid) - proxy_before),
    );
    all.sort();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Measured {
        rps: all.len() as f64 / MEASURE.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        cpu_us,
    }
}

async fn parent() {
    let upstream_ca = TestCa::new("bench upstream");
    let guardian_ca = TestCa::new("bench guardian");
    // A JSON API answer of about 1 KiB: what agents mostly fetch.
    let item =
        r#"{"id":1042,"name":"blue widget","tags":["tools","garden"],"price":9.99,"stock":17},"#;
    let mut json = String::from(r#"{"items":["#);
    while json.len() + item.len() < 1020 {
        json.push_str(item);
    }
    json.pop();
    json.push_str("]}");
    let body = Bytes::from(json);
    let big = Bytes::from(vec![b'z'; 64 * 1024]);
    let plain = UpstreamServer::start(vec![
        ("/bench", Reply::Text("text/plain", body.clone())),
        ("/1g", Reply::Chunks(vec![big; 16 * 1024])),
    ])
    .await;
    let tls = UpstreamServer::start_tls(
        vec![("/bench", Reply::Text("text/plain", body))],
        upstream_ca.server_config(&["127.0.0.1"]),
    )
    .await;
    let dir = guardian_ca.dir();
    std::fs::write(dir.join("ca.key"), guardian_ca.key_pem()).unwrap();
    std::fs::write(dir.join("upstream.pem"), upstream_ca.cert_pem()).unwrap();
    let guardian = GuardianProcess::start(dir);
    let via = Via::Guardian(guardian.addr);
    let bare_hop = GuardianProcess::start_bare_hop();

    let scenarios = [
        Scenario {
            name: "http direct",
            target: plain.addr(),
            tls: None,
            via: Via::Direct,
        },
        Scenario {
            name: "http via bare hop",
            target: plain.addr(),
            tls: None,
            via: Via::BareHop(bare_hop.addr),
        },
        Scenario {
            name: "http via guardian",
            target: plain.addr(),
            tls: None,
            via,
        },
        Scenario {
            name: "https direct",
            target: tls.addr(),
            tls: Some(tls_config(upstream_ca.cert_der())),
            via: Via::Direct,
        },
        Scenario {
            name: "https via guardian (inspected)",
            target: tls.addr(),
            tls: Some(tls_config(guardian_ca.cert_der())),
            via,
        },
    ];
    println!(
        "traffic-guardian proxy bench: {CONNECTIONS} keep-alive connections, 1 KiB JSON responses, \
         median of {ROUNDS} alternating runs of {:?} (after {:?} warm-up)",
        MEASURE, WARMUP
    );
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>12} {:>24}",
        "scenario", "req/s", "p50", "p99", "vs direct", "CPU µs/req (load+up/proxy)"
    );
    let mut results = Vec::new();
    let mut rounds: Vec<Vec<Measured>> = (0..scenarios.len()).map(|_| Vec::new()).collect();
    let guardian_pid = guardian.child.id().to_string();
    let bare_hop_pid = bare_hop.child.id().to_string();
    for _ in 0..ROUNDS {
        for (i, s) in scenarios.iter().enumerate() {
            let pid = match s.via {
                Via::BareHop(_) => &bare_hop_pid,
                Via::Direct | Via::Guardian(_) => &guardian_pid,
            };
            rounds[i].push(run(s, pid).await);
        }
    }
    let mut direct_rps = 0.0;
    for (i, s) in scenarios.iter().enumerate() {
        let mut runs = std::mem::take(&mut rounds[i]);
        runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let m = runs.swap_remove(runs.len() / 2);
        let (ratio, cpu) = match s.via {
            Via::Direct => {
                direct_rps = m.rps;
                ("baseline".into(), format!("{:.0} / -", m.cpu_us.0))
            }
            Via::BareHop(_) | Via::Guardian(_) => (
                format!("{:.0}%", 100.0 * m.rps / direct_rps),
                format!("{:.0} / {:.0}", m.cpu_us.0, m.cpu_us.1),
            ),
        };
        println!(
            "{:<32} {:>10.0} {:>10.2?} {:>10.2?} {:>12} {:>24}",
            s.name, m.rps, m.p50, m.p99, ratio, cpu
        );
        results.push(m);
    }
    drop(bare_hop);
    let (_, peak) = guardian.rss_kib();
    println!(
        "guardian peak RSS under load (VmHWM): {:.1} MiB",
        peak as f64 / 1024.0
    );
    let bare_hop_ratio = results[1].rps / results[0].rps;
    let http_ratio = results[2].rps / results[0].rps;

    // A 1 GiB download must stream through with flat memory.
    let started = Instant::now();
    let download = Scenario {
        name: "1 GiB",
        target: plain.addr(),
        tls: None,
        via,
    };
    let (mut sender, _) = connect(&download).await;
    let req = Request::get(format!("http://{}/1g", plain.addr()))
        .header("host", plain.addr().to_string())
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert!(
        response.status().is_success(),
        "1 GiB download: {}",
        response.status()
    );
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len() as u64;
        }
    }
    let (_, peak_after) = guardian.rss_kib();
    println!(
        "1 GiB download through the guardian: {:.0} MiB in {:.2?}; guardian peak RSS {:.1} MiB (was {:.1} MiB)",
        received as f64 / (1024.0 * 1024.0),
        started.elapsed(),
        peak_after as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let https_ratio = results[4].rps / results[3].rps;

    // Idle keep-alive connections: each makes one request, then waits.
    let idle_guardian = GuardianProcess::start(dir);
    let (before, _) = idle_guardian.rss_kib();
    let idle_scenario = Scenario {
        name: "idle",
        target: plain.addr(),
        tls: None,
        via: Via::Guardian(idle_guardian.addr),
    };
    let mut held = Vec::new();
    for batch in 0..IDLE_CONNECTIONS / 50 {
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let s = idle_scenario.clone();
            tasks.push(tokio::spawn(async move {
                let (mut sender, uri) = connect(&s).await;
                let req = Request::get(uri.as_str())
                    .header("host", s.target.to_string())
                    .body(Empty::new())
                    .unwrap();
                let response = sender.send_request(req).await.unwrap();
                response.into_body().collect().await.unwrap();
                sender
            }));
        }
        for task in tasks {
            held.push(task.await.unwrap());
        }
        let _ = batch;
    }
    let (idle_rss, idle_peak) = idle_guardian.rss_kib();
    println!(
        "guardian RSS with {} idle keep-alive connections: {:.1} MiB (peak {:.1} MiB; {:.1} MiB before they opened)",
        held.len(),
        idle_rss as f64 / 1024.0,
        idle_peak as f64 / 1024.0,
        before as f64 / 1024.0
    );
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "goal: plain HTTP >= 50% of direct req/s: {:.0}% ({}); the bare hop reaches {:.0}%, \
         so the guardian keeps {:.0}% of what a hop can do here",
        100.0 * http_ratio,
        verdict(http_ratio >= 0.5),
        100.0 * bare_hop_ratio,
        100.0 * http_ratio / bare_hop_ratio
    );
    println!(
        "goal: inspected HTTPS >= 35% of direct req/s: {:.0}% ({})",
        100.0 * https_ratio,
        verdict(https_ratio >= 0.35)
    );
    println!(
        "goal: RSS < 64 MiB at {IDLE_CONNECTIONS} idle connections: {:.1} MiB ({})",
        idle_rss as f64 / 1024.0,
        verdict(idle_rss < 64 * 1024)
    );
    drop(held);
}
