//! Faults on either side of the guardian: upstreams that refuse, reset,
//! close early or stall; clients that vanish mid-stream or send garbage.
//! Each test drives raw sockets on loopback so the fault lands exactly
//! where it is meant to, then checks three things: the peer that is still
//! there gets a clear answer (never a hang), what was scanned before the
//! fault is still recorded, and the guardian is healthy afterwards (a real
//! request succeeds and no connection is left open).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use traffic_guardian_proxy::FlowRecord;
use traffic_guardian_test_support::{Reply, UpstreamServer};

use super::harness::{AI_KEY, Guardian, PATIENCE, PIPE_TO_SHELL};

/// How the peer that goes away does it.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// `SO_LINGER 0`, then close: a TCP reset.
    Reset,
    /// An orderly close (FIN) before the message is complete.
    Close,
}

impl Ending {
    fn apply(self, stream: TcpStream) {
        if let Ending::Reset = self {
            stream.set_zero_linger().unwrap();
        }
        drop(stream);
    }
}

/// A response as a raw client read it.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads until `buf` holds a whole message head; `None` if the peer closed
/// first. Fails the test if nothing conclusive comes within [`PATIENCE`].
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                return Some(head);
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("a message head, or the connection closed")
}

/// Reads one response with a `content-length` body (every answer the
/// guardian makes itself has one); `None` if the connection closed first.
async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut buf = Vec::new();
    let head = read_head(stream, &mut buf).await?;
    let status = head.get(9..12)?.parse().ok()?;
    let mut response = RawResponse {
        status,
        head,
        body: Vec::new(),
    };
    let length: usize = response
        .header("content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    while buf.len() < length {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("the rest of the body")
            .unwrap();
        assert_ne!(n, 0, "closed in the middle of {}", response.head);
        buf.extend_from_slice(&chunk[..n]);
    }
    response.body = buf;
    Some(response)
}

/// Reads until `buf` contains `needle`.
async fn read_until_contains(stream: &mut TcpStream, buf: &mut Vec<u8>, needle: &str) {
    let read = async {
        while !buf.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0, "closed before {needle:?} arrived");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .unwrap_or_else(|_| panic!("{needle:?} never arrived"));
}

/// Reads until the peer closes the connection (EOF or reset) and returns
/// how many bytes came meanwhile. Fails the test if it stays open.
async fn read_until_closed(stream: &mut TcpStream, what: &str) -> usize {
    let read = async {
        let mut total = 0;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .unwrap_or_else(|_| panic!("{what} stayed open"))
}

/// A loopback listener that plays the upstream by hand.
async fn raw_upstream() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// The next connection the guardian makes to `listener`, with the request
/// head it sent (and any body bytes that came with it).
async fn accept_request(listener: &TcpListener) -> (TcpStream, String, Vec<u8>) {
    let (mut stream, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("the guardian connects upstream")
        .unwrap();
    let mut buf = Vec::new();
    let head = read_head(&mut stream, &mut buf)
        .await
        .expect("a request head");
    (stream, head, buf)
}

/// Plays an endless response: the head and an injection, then filler for
/// as long as anyone takes it. Returns the error that ends it (the
/// connection was closed under it).
async fn stream_endlessly(mut up: impl AsyncWrite + Unpin) -> std::io::Error {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000000000000\r\n\r\n{PIPE_TO_SHELL}\n"
    );
    let filler = vec![b'.'; 64 * 1024];
    let mut next: &[u8] = head.as_bytes();
    loop {
        if let Err(err) = async {
            up.write_all(next).await?;
            up.flush().await
        }
        .await
        {
            return err;
        }
        next = &filler;
    }
}

/// The flow record of the exchange with `dest`.
async fn flow_to(guardian: &Guardian, dest: SocketAddr) -> FlowRecord {
    let dest = dest.to_string();
    guardian
        .sink
        .wait(&format!("the flow to {dest}"), |_, flows| {
            flows.iter().find(|f| f.dest == dest).cloned()
        })
        .await
}

/// Waits for a finding with this rule id from the exchange with `dest`.
async fn finding_from(guardian: &Guardian, pattern: &str, dest: SocketAddr) {
    let dest = dest.to_string();
    guardian
        .sink
        .wait(
            &format!("a {pattern} finding from {dest}"),
            |findings, _| {
                findings
                    .iter()
                    .find(|f| f.pattern == pattern && f.dest == dest)
                    .cloned()
            },
        )
        .await;
}

#[tokio::test]
async fn a_refused_upstream_is_a_short_502_recorded_on_the_flow() {
    let guardian = Guardian::start(|_| {}).await;
    // Bound but not listening: connecting is refused, and the port stays
    // ours for the whole test.
    let reserved = TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let refused = reserved.local_addr().unwrap();
    let (upstream, live) = raw_upstream().await;

    let mut client = TcpStream::connect(guardian.addr).await.unwrap();
    client
        .write_all(
            format!("GET http://{refused}/x?token=q7Zp0 HTTP/1.1\r\nhost: {refused}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let response = read_response(&mut client).await.expect("an answer");
    assert_eq!(response.status, 502, "{response:?}");
    assert!(
        response
            .header("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "{response:?}"
    );
    let text = response.text();
    assert!(
        text.starts_with(&format!("traffic-guardian: cannot connect to {refused}")),
        "{text}"
    );
    assert!(
        text.len() < 200 && text.trim_end().lines().count() == 1,
        "short: {text}"
    );
    assert!(!text.contains("q7Zp0"), "no query in the reason: {text}");

    // The same client connection carries on to a live upstream.
    client
        .write_all(format!("GET http://{live}/y HTTP/1.1\r\nhost: {live}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (mut up, head, _) = accept_request(&upstream).await;
    assert!(head.starts_with("GET /y HTTP/1.1"), "{head}");
    up.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfine")
        .await
        .unwrap();
    let response = read_response(&mut client).await.expect("an answer");
    assert_eq!((response.status, response.text().as_str()), (200, "fine"));
    drop(client);

    let flow = flow_to(&guardian, refused).await;
    assert_eq!(flow.status, None, "{flow:?}");
    let error = flow.error.as_deref().unwrap_or_default();
    assert!(error.starts_with("cannot connect to"), "{flow:?}");
    assert!(!error.contains("q7Zp0"), "{flow:?}");
    assert_eq!(flow_to(&guardian, live).await.error, None);

    let stats = guardian.assert_healthy().await;
    assert_eq!(stats.upstream_errors, 1, "{stats:?}");
    assert_eq!(stats.client_errors, 0, "{stats:?}");
    assert_eq!(stats.requests, 3, "{stats:?}");
    drop(reserved);
    guardian.stop().await;
}

#[tokio::test]
async fn an_upstream_that_dies_mid_body_aborts_the_response_and_keeps_the_finding() {
    const LENGTH: usize = 100_000;
    let guardian = Guardian::start(|_| {}).await;
    for ending in [Ending::Reset, Ending::Close] {
        let (upstream, addr) = raw_upstream().await;
        let mut client = TcpStream::connect(guardian.addr).await.unwrap();
        client
            .write_all(
                format!("GET http://{addr}/page HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let (mut up, _, _) = accept_request(&upstream).await;
        let partial = format!(
            "<pre>{PIPE_TO_SHELL}</pre>\n{}<!-- part end -->",
            "x".repeat(2000)
        );
        up.write_all(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {LENGTH}\r\n\r\n{partial}"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        // The head and the partial body are through before the upstream goes.
        let mut got = Vec::new();
        let head = read_head(&mut client, &mut got)
            .await
            .expect("the response head");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        read_until_contains(&mut client, &mut got, "<!-- part end -->").await;
        ending.apply(up);

        // The client sees the response end early: no hang, no full body.
        let rest = read_until_closed(&mut client, "the client connection").await;
        assert!(got.len() + rest < LENGTH, "{ending:?}: the body was cut");

        finding_from(&guardian, "pipe_to_shell", addr).await;
        let flow = flow_to(&guardian, addr).await;
        assert_eq!(flow.status, Some(200), "{ending:?}: {flow:?}");
        assert_eq!(flow.bytes_in, partial.len() as u64, "{ending:?}: {flow:?}");
        assert!(
            flow.error
                .as_deref()
                .is_some_and(|e| e.starts_with("inbound body failed")),
            "{ending:?}: {flow:?}"
        );
        guardian.assert_healthy().await;
    }
    let stats = guardian.stop().await;
    assert_eq!(stats.findings, 2, "{stats:?}");
}

#[tokio::test]
async fn a_silent_upstream_is_504_after_the_response_timeout_and_is_let_go() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let guardian = Guardian::start(|config| {
        config.limits.upstream_response_timeout = Some(TIMEOUT);
    })
    .await;
    let (upstream, addr) = raw_upstream().await;
    let mut client = TcpStream::connect(guardian.addr).await.unwrap();
    let asked = Instant::now();
    client
        .write_all(format!("GET http://{addr}/slow HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // The upstream takes the request and never answers.
    let (mut up, head, _) = accept_request(&upstream).await;
    assert!(head.starts_with("GET /slow"), "{head}");

    let response = read_response(&mut client).await.expect("an answer");
    let waited = asked.elapsed();
    assert_eq!(response.status, 504, "{response:?}");
    assert_eq!(
        response.text(),
        format!("traffic-guardian: {addr} sent no response within {TIMEOUT:?}\n")
    );
    assert!(waited >= TIMEOUT, "answered after {waited:?}");
    // The guardian hangs up on the silent upstream; it does not keep the
    // connection (or pool it).
    read_until_closed(&mut up, "the silent upstream's connection").await;

    let flow = flow_to(&guardian, addr).await;
    assert!(
        flow.error
            .as_deref()
            .is_some_and(|e| e.contains("sent no response")),
        "{flow:?}"
    );
    drop(client);
    let stats = guardian.assert_healthy().await;
    assert_eq!(stats.upstream_errors, 1, "{stats:?}");
    guardian.stop().await;
}

#[tokio::test]
async fn a_body_that_stalls_is_cut_after_the_idle_timeout_on_both_sides() {
    const IDLE: Duration = Duration::from_millis(300);
    let guardian = Guardian::start(|config| {
        config.limits.idle_timeout = IDLE;
        config.limits.upstream_response_timeout = Some(IDLE);
    })
    .await;
    let (upstream, addr) = raw_upstream().await;
    let mut client = TcpStream::connect(guardian.addr).await.unwrap();
    client
        .write_all(format!("GET http://{addr}/feed HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (mut up, _, _) = accept_request(&upstream).await;
    up.write_all(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{PIPE_TO_SHELL}\n\r\n",
            PIPE_TO_SHELL.len() + 1
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    read_head(&mut client, &mut got).await.expect("a head");
    read_until_contains(&mut client, &mut got, PIPE_TO_SHELL).await;
    // From here the upstream says nothing, but keeps its end open.
    let stalled = Instant::now();
    read_until_closed(&mut client, "the client connection").await;
    let cut_after = stalled.elapsed();
    assert!(cut_after >= IDLE, "cut after {cut_after:?}");
    assert!(
        cut_after < Duration::from_secs(5),
        "cut by the configured idle timeout, not some other limit: {cut_after:?}"
    );
    read_until_closed(&mut up, "the stalled upstream's connection").await;

    finding_from(&guardian, "pipe_to_shell", addr).await;
    let flow = flow_to(&guardian, addr).await;
    assert!(flow.error.is_some(), "{flow:?}");
    guardian.assert_healthy().await;
    guardian.stop().await;
}

#[tokio::test]
async fn a_client_that_vanishes_mid_upload_frees_both_sides() {
    const LENGTH: usize = 10_000_000;
    let guardian = Guardian::start(|_| {}).await;
    for ending in [Ending::Reset, Ending::Close] {
        let (upstream, addr) = raw_upstream().await;
        let mut client = TcpStream::connect(guardian.addr).await.unwrap();
        let first = format!("{{\"key\":\"{AI_KEY}\",\"pad\":\"{}", "p".repeat(64 * 1024));
        client
            .write_all(
                format!(
                    "POST http://{addr}/upload HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {LENGTH}\r\n\r\n{first}"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        // The upstream has the secret (the guardian forwards as it reads)
        // before the client goes.
        let (mut up, _, mut body) = accept_request(&upstream).await;
        read_until_contains(&mut up, &mut body, AI_KEY).await;
        ending.apply(client);

        read_until_closed(&mut up, "the upstream connection").await;
        finding_from(&guardian, "ai_api_key", addr).await;
        let flow = flow_to(&guardian, addr).await;
        assert!(flow.error.is_some(), "{ending:?}: {flow:?}");
        assert!(flow.bytes_out < LENGTH as u64, "{ending:?}: {flow:?}");
        guardian.settled().await;
        guardian.assert_healthy().await;
    }
    guardian.stop().await;
}

#[tokio::test]
async fn a_client_that_vanishes_mid_download_frees_both_sides() {
    let guardian = Guardian::start(|_| {}).await;
    for ending in [Ending::Reset, Ending::Close] {
        let (upstream, addr) = raw_upstream().await;
        let mut client = TcpStream::connect(guardian.addr).await.unwrap();
        client
            .write_all(format!("GET http://{addr}/big HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (up, _, _) = accept_request(&upstream).await;
        let streaming = tokio::spawn(stream_endlessly(up));
        let mut got = Vec::new();
        read_head(&mut client, &mut got).await.expect("a head");
        read_until_contains(&mut client, &mut got, PIPE_TO_SHELL).await;
        // Take a good part of the stream, then go.
        while got.len() < 1024 * 1024 {
            let mut chunk = vec![0u8; 64 * 1024];
            let n = client.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0);
            got.extend_from_slice(&chunk[..n]);
        }
        ending.apply(client);

        // The upstream's writes fail once the guardian lets go of it.
        tokio::time::timeout(PATIENCE, streaming)
            .await
            .expect("the upstream connection stayed open")
            .unwrap();
        finding_from(&guardian, "pipe_to_shell", addr).await;
        let flow = flow_to(&guardian, addr).await;
        assert_eq!(flow.status, Some(200), "{ending:?}: {flow:?}");
        assert!(flow.bytes_in >= got.len() as u64, "{ending:?}: {flow:?}");
        // A 200 the client never got to the end of is not a clean flow.
        assert_eq!(
            flow.error.as_deref(),
            Some("inbound body cut short before its end"),
            "{ending:?}: {flow:?}"
        );
        guardian.settled().await;
        guardian.assert_healthy().await;
    }
    guardian.stop().await;
}

/// How the guardian answered one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A response with this status; `own` when the guardian's service
    /// wrote it (a `traffic-guardian: …` reason), not the HTTP parser.
    Status { status: u16, own: bool },
    /// Closed without a response.
    Closed,
}

/// A malformed request and the answers it may get.
struct Malformed {
    name: &'static str,
    bytes: Vec<u8>,
    /// Half-close after sending: the request can never be completed.
    half_close: bool,
    allowed: &'static [Answer],
    /// The head is complete, so the request reaches the guardian's service
    /// (and counts in `requests`).
    served: bool,
}

const PARSER_400: Answer = Answer::Status {
    status: 400,
    own: false,
};
const PARSER_431: Answer = Answer::Status {
    status: 431,
    own: false,
};
const OWN_400: Answer = Answer::Status {
    status: 400,
    own: true,
};

fn malformed(up: SocketAddr) -> Vec<Malformed> {
    let case = |name, bytes: Vec<u8>, allowed, served| Malformed {
        name,
        bytes,
        half_close: false,
        allowed,
        served,
    };
    let cut = |name, bytes: Vec<u8>, allowed, served| Malformed {
        half_close: true,
        ..case(name, bytes, allowed, served)
    };
    let post_chunked = |chunks: &str| {
        format!(
            "POST http://{up}/hang HTTP/1.1\r\nhost: {up}\r\ntransfer-encoding: chunked\r\n\r\n{chunks}"
        )
        .into_bytes()
    };
    // A secret in a well-formed first chunk: it is forwarded and scanned
    // before the body goes bad.
    let first = format!("{{\"k\":\"{AI_KEY}\"}}");
    let first = format!("{:x}\r\n{first}\r\n", first.len());
    vec![
        case("garbage", b"\x00\x01\x02garbage\xff\r\n\r\n".to_vec(), &[PARSER_400], false),
        case(
            "a TLS hello on the plain port",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            &[PARSER_400, Answer::Closed],
            false,
        ),
        case(
            "oversized header",
            format!("GET http://{up}/ok HTTP/1.1\r\nhost: {up}\r\nx-big: {}\r\n\r\n", "a".repeat(8192))
                .into_bytes(),
            &[PARSER_431],
            false,
        ),
        case(
            "oversized target",
            format!("GET http://{up}/{} HTTP/1.1\r\nhost: {up}\r\n\r\n", "a".repeat(8192)).into_bytes(),
            &[PARSER_431],
            false,
        ),
        case(
            "bad chunk size",
            post_chunked(&format!("{first}ZZZ\r\nhello\r\n0\r\n\r\n")),
            &[OWN_400],
            true,
        ),
        case(
            "chunk size overflow",
            post_chunked(&format!("{first}FFFFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n")),
            &[OWN_400],
            true,
        ),
        case(
            "chunk without its CRLF",
            post_chunked(&format!("{first}5\r\nhelloXX0\r\n\r\n")),
            &[OWN_400],
            true,
        ),
        cut(
            "body shorter than its content-length",
            format!("POST http://{up}/hang HTTP/1.1\r\nhost: {up}\r\ncontent-length: 100\r\n\r\nshort")
                .into_bytes(),
            &[OWN_400],
            true,
        ),
        cut(
            "truncated CONNECT",
            format!("CONNECT {}", up.ip()).into_bytes(),
            &[PARSER_400, Answer::Closed],
            false,
        ),
        cut(
            "CONNECT head without its end",
            format!("CONNECT {up} HTTP/1.1\r\nhost: {up}\r\n").into_bytes(),
            &[PARSER_400, Answer::Closed],
            false,
        ),
        case(
            "CONNECT without a target",
            b"CONNECT  HTTP/1.1\r\n\r\n".to_vec(),
            &[PARSER_400],
            false,
        ),
        case(
            "two content-lengths",
            format!("POST http://{up}/ok HTTP/1.1\r\nhost: {up}\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!")
                .into_bytes(),
            &[PARSER_400],
            false,
        ),
        case(
            "negative content-length",
            format!("POST http://{up}/ok HTTP/1.1\r\nhost: {up}\r\ncontent-length: -1\r\n\r\n").into_bytes(),
            &[PARSER_400],
            false,
        ),
        case(
            "unknown transfer coding",
            format!("POST http://{up}/ok HTTP/1.1\r\nhost: {up}\r\ntransfer-encoding: gzip\r\n\r\nhello")
                .into_bytes(),
            &[PARSER_400],
            false,
        ),
        case(
            "space in a header name",
            format!("GET http://{up}/ok HTTP/1.1\r\nhost: {up}\r\nbad header: x\r\n\r\n").into_bytes(),
            &[PARSER_400],
            false,
        ),
        case(
            "NUL in a header value",
            format!("GET http://{up}/ok HTTP/1.1\r\nhost: {up}\r\nx: a\x00b\r\n\r\n").into_bytes(),
            &[PARSER_400],
            false,
        ),
        case(
            "unknown HTTP version",
            format!("GET http://{up}/ok HTTP/9.9\r\nhost: {up}\r\n\r\n").into_bytes(),
            &[PARSER_400],
            false,
        ),
        case(
            "origin-form target",
            format!("GET /ok HTTP/1.1\r\nhost: {up}\r\n\r\n").into_bytes(),
            &[OWN_400],
            true,
        ),
    ]
}

/// Sends `bytes` on a new connection and reads what comes back.
async fn answer_to(guardian: SocketAddr, bytes: &[u8], half_close: bool) -> Answer {
    let mut stream = TcpStream::connect(guardian).await.unwrap();
    // The guardian may answer and close before it has read everything.
    let _ = stream.write_all(bytes).await;
    if half_close {
        let _ = stream.shutdown().await;
    }
    match read_response(&mut stream).await {
        None => Answer::Closed,
        Some(response) => Answer::Status {
            status: response.status,
            own: response.text().starts_with("traffic-guardian: "),
        },
    }
}

#[tokio::test]
async fn a_burst_of_malformed_requests_gets_clear_refusals_and_good_ones_still_pass() {
    const ROUNDS: usize = 3;
    let guardian = Guardian::start(|config| config.limits.max_header_bytes = 4096).await;
    let upstream = UpstreamServer::start(vec![
        ("/ok", Reply::text("ok")),
        ("/sink", Reply::Status(204)),
        ("/hang", Reply::Hang),
    ])
    .await;
    let up = upstream.addr();
    let cases = malformed(up);
    let good_get = format!("GET http://{up}/ok HTTP/1.1\r\nhost: {up}\r\n\r\n");
    let secret = format!("key={AI_KEY}");
    let good_post = format!(
        "POST http://{up}/sink HTTP/1.1\r\nhost: {up}\r\ncontent-length: {}\r\n\r\n{secret}",
        secret.len()
    );

    // Every case, each followed by a good request, all at once.
    let mut burst = tokio::task::JoinSet::new();
    for round in 0..ROUNDS {
        for (i, case) in cases.iter().enumerate() {
            let (bytes, half) = (case.bytes.clone(), case.half_close);
            let addr = guardian.addr;
            burst.spawn(async move { (Some(i), answer_to(addr, &bytes, half).await) });
            let good = if (round + i) % 2 == 0 {
                good_get.clone()
            } else {
                good_post.clone()
            };
            burst.spawn(async move { (None, answer_to(addr, good.as_bytes(), false).await) });
        }
    }
    let mut served = 0;
    let mut own_400 = 0;
    let mut good = 0;
    while let Some(joined) = burst.join_next().await {
        let (case, answer) = joined.unwrap();
        match case {
            Some(i) => {
                let case = &cases[i];
                assert!(
                    case.allowed.contains(&answer),
                    "{}: got {answer:?}, allowed {:?}",
                    case.name,
                    case.allowed
                );
                served += usize::from(case.served);
                own_400 += usize::from(answer == OWN_400);
            }
            None => {
                assert!(
                    matches!(
                        answer,
                        Answer::Status {
                            status: 200 | 204,
                            own: false
                        }
                    ),
                    "a good request got {answer:?}"
                );
                good += 1;
            }
        }
    }
    assert_eq!(good, ROUNDS * cases.len());

    // A keep-alive connection that turns bad after a good exchange.
    let mut stream = TcpStream::connect(guardian.addr).await.unwrap();
    stream.write_all(good_get.as_bytes()).await.unwrap();
    let response = read_response(&mut stream).await.expect("an answer");
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    stream
        .write_all(b"\x00\x01 nonsense\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut stream).await.expect("an answer");
    assert_eq!(response.status, 400);
    assert_eq!(
        read_until_closed(&mut stream, "the poisoned connection").await,
        0
    );

    // The secrets in good requests, and in the good first chunk of the
    // malformed bodies, were all found.
    let posts = (0..ROUNDS)
        .flat_map(|round| (0..cases.len()).map(move |i| (round + i) % 2))
        .filter(|odd| *odd == 1)
        .count();
    let chunked = cases.iter().filter(|c| c.name.contains("chunk")).count();
    let dest = up.to_string();
    guardian
        .sink
        .wait("every secret's finding", |findings, _| {
            let n = findings
                .iter()
                .filter(|f| f.pattern == "ai_api_key" && f.dest == dest)
                .count();
            (n >= posts + ROUNDS * chunked).then_some(n)
        })
        .await;

    let stats = guardian.settled().await;
    let found = guardian
        .sink
        .findings()
        .iter()
        .filter(|f| f.pattern == "ai_api_key" && f.dest == dest)
        .count();
    assert_eq!(found, posts + ROUNDS * chunked, "one finding per secret");
    let connections = 2 * ROUNDS * cases.len() + 1;
    assert_eq!(stats.connections_total, connections as u64, "{stats:?}");
    assert_eq!(stats.requests, (served + good + 1) as u64, "{stats:?}");
    // The upstream never failed: every refusal is the client's.
    assert_eq!(stats.upstream_errors, 0, "{stats:?}");
    assert_eq!(stats.client_errors, own_400 as u64, "{stats:?}");
    guardian.assert_healthy().await;
    guardian.stop().await;
}

/// A TLS upstream played by hand: HTTP/1.1 only, with a certificate from
/// the CA the guardian trusts for upstreams.
struct TlsRawUpstream {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    addr: SocketAddr,
}

impl TlsRawUpstream {
    async fn start(guardian: &Guardian) -> TlsRawUpstream {
        let (listener, addr) = raw_upstream().await;
        let config = guardian
            .upstream_ca
            .server_config_with_alpn(&["127.0.0.1"], &[b"http/1.1"]);
        TlsRawUpstream {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            addr,
        }
    }

    /// The next connection and request head, decrypted.
    async fn accept(&self) -> (tokio_rustls::server::TlsStream<TcpStream>, String) {
        let (tcp, _) = tokio::time::timeout(PATIENCE, self.listener.accept())
            .await
            .expect("the guardian connects upstream")
            .unwrap();
        let mut tls = self.acceptor.accept(tcp).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let n = tokio::time::timeout(PATIENCE, tls.read(&mut byte))
                .await
                .expect("a request head")
                .unwrap();
            assert_ne!(n, 0, "closed before the request head");
            head.push(byte[0]);
        }
        (tls, String::from_utf8_lossy(&head).into_owned())
    }
}

/// An HTTP/2 client inside an inspected TLS session through the guardian.
async fn h2_client_through(
    guardian: &Guardian,
    dest: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    use std::sync::Arc;

    let mut tcp = TcpStream::connect(guardian.addr).await.unwrap();
    tcp.write_all(format!("CONNECT {dest} HTTP/1.1\r\nhost: {dest}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let head = read_head(&mut tcp, &mut buf)
        .await
        .expect("a CONNECT answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(guardian.ca.cert_der()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls_pki_types::ServerName::try_from(dest.ip().to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    sender
}

/// Starts a GET over the HTTP/2 session; the response head comes once the
/// test has played the upstream's part.
fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    dest: SocketAddr,
    path: &str,
) -> tokio::task::JoinHandle<http::Response<hyper::body::Incoming>> {
    let request = http::Request::get(format!("https://{dest}{path}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = sender.send_request(request);
    tokio::spawn(async move {
        tokio::time::timeout(PATIENCE, response)
            .await
            .expect("a response head")
            .unwrap()
    })
}

/// Reads response body frames until `needle` and at least `at_least`
/// bytes have come; returns how many did.
async fn read_body_until(body: &mut hyper::body::Incoming, needle: &str, at_least: usize) -> usize {
    use http_body_util::BodyExt;

    let mut got = Vec::new();
    let read = async {
        while got.len() < at_least || !got.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            let frame = body.frame().await.expect("more body").unwrap();
            if let Ok(data) = frame.into_data() {
                got.extend_from_slice(&data);
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .unwrap_or_else(|_| panic!("{needle:?} never arrived"));
    got.len()
}

#[tokio::test]
async fn inside_inspected_http2_a_failed_or_cancelled_stream_leaves_the_session_serving() {
    use http_body_util::BodyExt;

    let guardian = Guardian::start(|_| {}).await;
    let upstream = TlsRawUpstream::start(&guardian).await;
    let dest = upstream.addr;
    let mut client = h2_client_through(&guardian, dest).await;

    // Stream 1: the upstream resets in the middle of the body.
    let response = h2_get(&mut client, dest, "/reset");
    let (mut up, head) = upstream.accept().await;
    assert!(head.starts_with("GET /reset HTTP/1.1"), "{head}");
    up.write_all(
        format!("HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n{PIPE_TO_SHELL}\n").as_bytes(),
    )
    .await
    .unwrap();
    up.flush().await.unwrap();
    let mut body = response.await.unwrap().into_body();
    read_body_until(&mut body, PIPE_TO_SHELL, 0).await;
    let (tcp, _) = up.into_inner();
    Ending::Reset.apply(tcp);
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(_)) => return true,
                None => return false,
            }
        }
    })
    .await
    .expect("the stream ends instead of hanging");
    assert!(ended, "the stream ends with an error, not as if complete");
    // The client's session lives as long as any of its streams.
    drop(body);
    let flow = guardian
        .sink
        .wait("the reset stream's flow", |_, flows| {
            flows.iter().find(|f| f.method == "GET").cloned()
        })
        .await;
    assert!(
        flow.error
            .as_deref()
            .is_some_and(|e| e.starts_with("inbound body failed")),
        "{flow:?}"
    );

    // Stream 2: the client cancels in the middle of an endless download.
    let response = h2_get(&mut client, dest, "/endless");
    let (up, _) = upstream.accept().await;
    let streaming = tokio::spawn(stream_endlessly(up));
    let mut body = response.await.unwrap().into_body();
    read_body_until(&mut body, PIPE_TO_SHELL, 512 * 1024).await;
    drop(body);
    tokio::time::timeout(PATIENCE, streaming)
        .await
        .expect("the upstream connection stayed open after the stream was cancelled")
        .unwrap();
    let flows = guardian.sink.flows("GET", 2).await;
    assert_eq!(
        flows[1].error.as_deref(),
        Some("inbound body cut short before its end"),
        "{flows:?}"
    );
    assert_eq!(
        guardian.proxy.stats().connections_open,
        1,
        "the session lives on"
    );

    // Stream 3 on the same session: served as if nothing happened.
    let response = h2_get(&mut client, dest, "/fine");
    let (mut up, _) = upstream.accept().await;
    up.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfine")
        .await
        .unwrap();
    up.flush().await.unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"fine");

    let findings = guardian.sink.findings();
    assert_eq!(
        findings
            .iter()
            .filter(|f| f.pattern == "pipe_to_shell")
            .count(),
        2,
        "both cut streams' findings are kept: {findings:#?}"
    );
    drop(client);
    guardian.assert_healthy().await;
    guardian.stop().await;
}
