//! The load generator: a fixed number of client tasks, each opening
//! connections through the guardian on a random lane, keeping some alive
//! for many requests and closing others after one, and sending a random
//! mix of exchanges until the deadline. Every answered exchange adds the
//! findings it must cause to the tally.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use traffic_guardian_test_support::client::{ConnectError, Route, http1_on, http2_on};

use super::canary::Canaries;
use super::latency::Histogram;
use super::mix::{ABANDONED_UPLOAD, Exchange, Expect, Lane, Request, abandoned_upload};
use super::rng::Rng;

/// Longest a request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed connection attempt, so a broken guardian does not
/// turn the load into a busy loop.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Most requests on one keep-alive connection.
const MAX_SESSION: u64 = 40;
/// Out of a hundred sessions on HTTP/1 lanes, how many send one upload
/// and abandon it part way.
const ABANDON_PERCENT: u64 = 3;
/// How long an abandoning client waits to see its partial upload echoed.
const ABANDON_WAIT: Duration = Duration::from_secs(2);

/// What the load does, shared by every client task.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) canaries: Canaries,
    /// The route of each lane, in [`Lane::ALL`] order.
    pub(crate) routes: Vec<Route>,
    pub(crate) deadline: Instant,
    /// Out of a hundred sessions, how many use a fresh connection for a
    /// single request.
    pub(crate) fresh_percent: u64,
    /// Requests per second for the whole load; `None` for as fast as the
    /// connections go.
    pub(crate) rate: Option<f64>,
    pub(crate) started: Instant,
    /// Numbers every exchange; also the rate limiter's ticket.
    pub(crate) sequence: AtomicU64,
    /// Exchanges answered and failed so far, for progress lines.
    pub(crate) served: AtomicU64,
    pub(crate) failed: AtomicU64,
}

/// Findings the guardian must have recorded for one rule, runtime and
/// protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Owed {
    /// From exchanges that completed: the guardian saw them whole.
    pub(crate) certain: u64,
    /// From exchanges that failed part way: the guardian may or may not
    /// have seen enough to record them.
    pub(crate) uncertain: u64,
}

/// (rule, runtime, protocol).
pub(crate) type FindingKey = (&'static str, &'static str, &'static str);

/// Per-lane counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct LaneTally {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    /// Connections that served requests (not those of abandoned uploads).
    pub(crate) connections: u64,
    pub(crate) abandoned: u64,
    pub(crate) latency: Histogram,
}

/// What the load did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub(crate) lanes: BTreeMap<Lane, LaneTally>,
    pub(crate) exchanges: BTreeMap<&'static str, u64>,
    pub(crate) errors: BTreeMap<String, u64>,
    /// First error message of each kind, for the report.
    pub(crate) error_samples: BTreeMap<String, String>,
    pub(crate) owed: BTreeMap<FindingKey, Owed>,
    pub(crate) latency: Histogram,
    pub(crate) connect: Histogram,
    pub(crate) fresh_connections: u64,
    pub(crate) kept_connections: u64,
    /// Uploads abandoned part way, and how many of them the upstream was
    /// seen to receive (so their finding is owed for sure).
    pub(crate) abandoned: u64,
    pub(crate) abandoned_seen: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
}

impl Tally {
    pub(crate) fn requests(&self) -> u64 {
        self.lanes.values().map(|l| l.requests).sum()
    }

    /// The requests the guardian itself must have counted if nothing
    /// failed: every request it could see, plus one CONNECT per TLS
    /// connection.
    pub(crate) fn guardian_requests(&self) -> u64 {
        self.lanes
            .iter()
            .map(|(lane, l)| {
                let visible = if *lane == Lane::Tunnelled {
                    0
                } else {
                    l.requests + l.abandoned
                };
                let connects = if lane.tls() {
                    l.connections + l.abandoned
                } else {
                    0
                };
                visible + connects
            })
            .sum()
    }

    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn error(&mut self, plan: &Plan, lane: Lane, kind: &str, message: String) {
        plan.failed.fetch_add(1, Ordering::Relaxed);
        *self.errors.entry(kind.to_owned()).or_default() += 1;
        self.error_samples.entry(kind.to_owned()).or_insert(message);
        self.lanes.entry(lane).or_default().errors += 1;
    }

    fn owe(&mut self, lane: Lane, findings: &[Expect], certain: bool) {
        let Some(protocol) = lane.finding_protocol() else {
            return;
        };
        for expect in findings {
            let owed = self
                .owed
                .entry((expect.rule, lane.runtime(), protocol))
                .or_default();
            if certain {
                owed.certain += 1;
            } else {
                owed.uncertain += 1;
            }
        }
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        for (lane, theirs) in other.lanes {
            let mine = self.lanes.entry(lane).or_default();
            mine.requests += theirs.requests;
            mine.errors += theirs.errors;
            mine.connections += theirs.connections;
            mine.abandoned += theirs.abandoned;
            mine.latency.merge(&theirs.latency);
        }
        for (name, n) in other.exchanges {
            *self.exchanges.entry(name).or_default() += n;
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        for (kind, message) in other.error_samples {
            self.error_samples.entry(kind).or_insert(message);
        }
        for (key, theirs) in other.owed {
            let mine = self.owed.entry(key).or_default();
            mine.certain += theirs.certain;
            mine.uncertain += theirs.uncertain;
        }
        self.latency.merge(&other.latency);
        self.connect.merge(&other.connect);
        self.fresh_connections += other.fresh_connections;
        self.kept_connections += other.kept_connections;
        self.abandoned += other.abandoned;
        self.abandoned_seen += other.abandoned_seen;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
    }
}

/// Runs `connections` client tasks until the plan's deadline and returns
/// what they did together.
pub(crate) async fn run(plan: Arc<Plan>, connections: usize, seed: u64) -> Tally {
    let mut tasks = Vec::new();
    for i in 0..connections {
        let plan = plan.clone();
        let rng = Rng::new(seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        tasks.push(tokio::spawn(client(plan, rng)));
    }
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(mine) => tally.merge(mine),
            Err(err) => {
                *tally.errors.entry("client task".into()).or_default() += 1;
                tally
                    .error_samples
                    .entry("client task".into())
                    .or_insert(err.to_string());
            }
        }
    }
    tally
}

/// An open client connection.
enum Conn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// Why one exchange failed.
struct Failure {
    kind: String,
    message: String,
}

impl Failure {
    fn new(kind: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

impl From<ConnectError> for Failure {
    fn from(err: ConnectError) -> Failure {
        Failure::new(err.kind(), err.to_string())
    }
}

/// One client task: session after session until the deadline.
async fn client(plan: Arc<Plan>, mut rng: Rng) -> Tally {
    let mut tally = Tally::default();
    let lane_weights: Vec<u64> = Lane::ALL.iter().map(|l| l.weight()).collect();
    while Instant::now() < plan.deadline {
        let index = rng.weighted(&lane_weights);
        let lane = Lane::ALL[index];
        let route = &plan.routes[index];
        if lane != Lane::InspectedH2 && rng.percent(ABANDON_PERCENT) {
            let Some(n) = pace(&plan).await else { break };
            let (request, announced, token) = abandoned_upload(&plan.canaries, n);
            match abandon(route, &request, announced, &token).await {
                Ok(seen) => {
                    tally.abandoned += 1;
                    tally.lanes.entry(lane).or_default().abandoned += 1;
                    tally.abandoned_seen += u64::from(seen);
                    tally.owe(lane, ABANDONED_UPLOAD, seen);
                }
                Err(failure) => {
                    tally.error(&plan, lane, &failure.kind, failure.message);
                    tally.owe(lane, ABANDONED_UPLOAD, false);
                }
            }
            continue;
        }
        let session = if rng.percent(plan.fresh_percent) {
            tally.fresh_connections += 1;
            1
        } else {
            tally.kept_connections += 1;
            rng.between(2, MAX_SESSION)
        };
        let began = Instant::now();
        let mut conn = match open(lane, route).await {
            Ok(conn) => conn,
            Err(failure) => {
                tally.error(&plan, lane, &failure.kind, failure.message);
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        tally.connect.record(began.elapsed());
        tally.lanes.entry(lane).or_default().connections += 1;
        for _ in 0..session {
            let Some(n) = pace(&plan).await else { break };
            let exchange = Exchange::pick(&mut rng);
            let request = exchange.request(&plan.canaries, n);
            *tally.exchanges.entry(exchange.name()).or_default() += 1;
            let began = Instant::now();
            let result =
                tokio::time::timeout(REQUEST_TIMEOUT, send(&mut conn, lane, route, &request))
                    .await
                    .unwrap_or_else(|_| Err(Failure::new("timeout", "no full answer in 30 s")));
            match result {
                Ok(body) if body == exchange.response_body(&request) => {
                    plan.served.fetch_add(1, Ordering::Relaxed);
                    let elapsed = began.elapsed();
                    tally.latency.record(elapsed);
                    let lane_tally = tally.lanes.entry(lane).or_default();
                    lane_tally.requests += 1;
                    lane_tally.latency.record(elapsed);
                    tally.bytes_sent += request.body.len() as u64;
                    tally.bytes_received += body.len() as u64;
                    tally.owe(lane, exchange.findings(), true);
                }
                Ok(body) => {
                    tally.error(
                        &plan,
                        lane,
                        "wrong body",
                        format!("{exchange:?}: {} bytes back", body.len()),
                    );
                    tally.owe(lane, exchange.findings(), false);
                    break;
                }
                Err(failure) => {
                    tally.error(&plan, lane, &failure.kind, failure.message);
                    tally.owe(lane, exchange.findings(), false);
                    break;
                }
            }
        }
    }
    tally
}

/// Waits for the rate limiter and returns the exchange's number, or
/// `None` when the deadline has passed.
async fn pace(plan: &Plan) -> Option<u64> {
    if Instant::now() >= plan.deadline {
        return None;
    }
    let n = plan.sequence.fetch_add(1, Ordering::Relaxed);
    if let Some(rate) = plan.rate {
        let slot = plan.started + Duration::from_secs_f64(n as f64 / rate);
        if slot >= plan.deadline {
            return None;
        }
        tokio::time::sleep_until(slot.into()).await;
    }
    Some(n)
}

/// Sends the head and the first part of an upload that announces more,
/// waits until the upstream's echo brings the token back (so the guardian
/// has passed it on, and scanned it), then drops the connection. Returns
/// whether the echo was seen.
async fn abandon(
    route: &Route,
    request: &Request,
    announced: usize,
    token: &str,
) -> Result<bool, Failure> {
    let (mut io, _) = route.open().await?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\ncontent-length: {announced}\r\n",
        request.method,
        route.target(&request.path),
        route.origin()
    );
    if let Some(value) = route.request_proxy_authorization() {
        head.push_str("proxy-authorization: ");
        head.push_str(value.to_str().unwrap_or_default());
        head.push_str("\r\n");
    }
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let write = async {
        io.write_all(head.as_bytes()).await?;
        io.write_all(&request.body).await?;
        io.flush().await
    };
    write
        .await
        .map_err(|err| Failure::new("abandon", format!("writing the partial upload: {err}")))?;
    let deadline = tokio::time::Instant::now() + ABANDON_WAIT;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                seen.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&seen).contains(token) {
                    return Ok(true);
                }
            }
            _ => return Ok(false),
        }
    }
}

async fn open(lane: Lane, route: &Route) -> Result<Conn, Failure> {
    let (io, alpn) = route.open().await?;
    if lane == Lane::InspectedH2 {
        if alpn.as_deref() != Some(b"h2".as_slice()) {
            return Err(Failure::new("alpn", "the guardian did not agree on h2"));
        }
        return Ok(Conn::H2(http2_on(io).await?));
    }
    Ok(Conn::H1(http1_on(io).await?))
}

/// Sends one request and reads the whole answer, which must be `200`.
async fn send(
    conn: &mut Conn,
    lane: Lane,
    route: &Route,
    request: &Request,
) -> Result<Bytes, Failure> {
    let origin = route.origin();
    let uri = match conn {
        Conn::H2(_) => format!("https://{origin}{}", request.path),
        Conn::H1(_) => route.target(&request.path),
    };
    let mut builder = hyper::Request::builder()
        .method(request.method.clone())
        .uri(uri);
    if let Conn::H1(_) = conn {
        builder = builder.header("host", origin.to_string());
    }
    if let Some(value) = route.request_proxy_authorization() {
        builder = builder.header("proxy-authorization", value.clone());
    }
    for (name, value) in &request.headers {
        builder = builder.header(*name, value.as_str());
    }
    let http_request = builder
        .body(Full::new(request.body.clone()))
        .map_err(|err| Failure::new("request", err.to_string()))?;
    let sent = match conn {
        Conn::H1(sender) => match sender.ready().await {
            Ok(()) => sender.send_request(http_request).await,
            Err(err) => Err(err),
        },
        Conn::H2(sender) => match sender.ready().await {
            Ok(()) => sender.send_request(http_request).await,
            Err(err) => Err(err),
        },
    };
    let response = sent.map_err(|err| Failure::new("send", format!("{}: {err}", lane.label())))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|err| Failure::new("body", format!("{}: {err}", lane.label())))?
        .to_bytes();
    if status != http::StatusCode::OK {
        return Err(Failure::new(
            format!("status {}", status.as_u16()),
            format!("{}: {}", lane.label(), String::from_utf8_lossy(&body)),
        ));
    }
    Ok(body)
}
