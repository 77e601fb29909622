//! A loopback HTTP/HTTPS server with scripted replies per path, which
//! records the request heads it receives (the most recent
//! [`SEEN_KEPT`], so a long load run keeps flat memory).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

/// How many request heads [`UpstreamServer::seen`] keeps, most recent
/// last. Older ones are forgotten.
pub const SEEN_KEPT: usize = 4096;

/// What the server answers on one path.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A fixed body with this content type.
    Text(&'static str, Bytes),
    /// A body sent with `Content-Encoding: gzip` (already compressed).
    Gzip(Bytes),
    /// A body sent with `Content-Encoding: br` (already compressed).
    Brotli(Bytes),
    /// A chunked body, one chunk per frame.
    Chunks(Vec<Bytes>),
    /// The request body, streamed back as it arrives.
    Echo,
    /// `text/event-stream`: each event the test sends is written at once;
    /// the stream ends when the [`SseSender`] is dropped.
    Sse(Arc<Mutex<Option<mpsc::UnboundedReceiver<Bytes>>>>),
    /// `101 Switching Protocols`, then every byte echoed back.
    UpgradeEcho,
    /// Never answers (for response timeouts).
    Hang,
    /// A chunked body followed by one trailer field (announced in a
    /// `Trailer` header, as HTTP/1.1 requires).
    Trailers(Bytes, &'static str, &'static str),
    /// An empty body with this status.
    Status(u16),
    /// Reads the whole request body and keeps it (see
    /// [`UpstreamServer::bodies`]), then answers this `text/plain` body.
    /// As the body is read first, h2 streams are never reset for it.
    Record(Bytes),
}

impl Reply {
    /// A `text/plain` body.
    pub fn text(body: impl Into<Bytes>) -> Reply {
        Reply::Text("text/plain", body.into())
    }

    /// A gzip-encoded body.
    pub fn gzip(plain: &[u8]) -> Reply {
        Reply::Gzip(gzip(plain).into())
    }

    /// A br-encoded body.
    pub fn brotli(plain: &[u8]) -> Reply {
        Reply::Brotli(brotli_compress(plain).into())
    }

    /// An SSE reply and the sender the test uses to emit events.
    pub fn sse() -> (SseSender, Reply) {
        let (tx, rx) = mpsc::unbounded_channel();
        (SseSender { tx }, Reply::Sse(Arc::new(Mutex::new(Some(rx)))))
    }
}

/// Sends server-sent events one at a time, when the test says so.
#[derive(Debug)]
pub struct SseSender {
    tx: mpsc::UnboundedSender<Bytes>,
}

impl SseSender {
    /// Sends `data: <text>\n\n`.
    pub fn event(&self, text: &str) {
        let _ = self.tx.send(Bytes::from(format!("data: {text}\n\n")));
    }

    /// Sends raw bytes as one chunk.
    pub fn raw(&self, bytes: impl Into<Bytes>) {
        let _ = self.tx.send(bytes.into());
    }
}

/// Gzip-compresses `plain`.
pub fn gzip(plain: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(plain).unwrap();
    enc.finish().unwrap()
}

/// Brotli-compresses `plain`.
pub fn brotli_compress(plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        enc.write_all(plain).unwrap();
    }
    out
}

/// A request head as the server saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// Method.
    pub method: Method,
    /// Request target as received.
    pub uri: Uri,
    /// Protocol version.
    pub version: Version,
    /// Headers.
    pub headers: HeaderMap,
}

/// A running upstream server; stops when dropped.
#[derive(Debug)]
pub struct UpstreamServer {
    addr: SocketAddr,
    seen: Arc<Mutex<VecDeque<SeenRequest>>>,
    bodies: Arc<Mutex<Vec<(String, Bytes)>>>,
    connections: Arc<std::sync::atomic::AtomicU64>,
    task: JoinHandle<()>,
}

impl UpstreamServer {
    /// Starts a plain HTTP server (HTTP/1.1, and h2c by prior knowledge).
    pub async fn start(routes: Vec<(&str, Reply)>) -> UpstreamServer {
        UpstreamServer::launch(LOOPBACK, routes, None).await
    }

    /// Starts an HTTPS server with `tls` (ALPN h2 and http/1.1).
    pub async fn start_tls(routes: Vec<(&str, Reply)>, tls: Arc<ServerConfig>) -> UpstreamServer {
        UpstreamServer::launch(LOOPBACK, routes, Some(tls)).await
    }

    /// Like [`UpstreamServer::start_tls`], bound to `bind` (a loopback
    /// address; port 0 picks a free port).
    pub async fn start_tls_on(
        bind: SocketAddr,
        routes: Vec<(&str, Reply)>,
        tls: Arc<ServerConfig>,
    ) -> UpstreamServer {
        UpstreamServer::launch(bind, routes, Some(tls)).await
    }

    async fn launch(
        bind: SocketAddr,
        routes: Vec<(&str, Reply)>,
        tls: Option<Arc<ServerConfig>>,
    ) -> UpstreamServer {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<HashMap<String, Reply>> =
            Arc::new(routes.into_iter().map(|(p, r)| (p.to_owned(), r)).collect());
        let seen = Arc::new(Mutex::new(VecDeque::new()));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let connections = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn({
            let seen = seen.clone();
            let bodies = bodies.clone();
            let connections = connections.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _ = stream.set_nodelay(true);
                    let routes = routes.clone();
                    let seen = seen.clone();
                    let bodies = bodies.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let routes = routes.clone();
                            let seen = seen.clone();
                            let bodies = bodies.clone();
                            async move {
                                match routes.get(req.uri().path()) {
                                    Some(Reply::Hang) => std::future::pending::<()>().await,
                                    Some(Reply::Record(reply)) => {
                                        let reply = reply.clone();
                                        return Ok(record(req, reply, &seen, &bodies).await);
                                    }
                                    _ => {}
                                }
                                Ok::<_, Infallible>(answer(req, &routes, &seen))
                            }
                        });
                        let builder = auto::Builder::new(TokioExecutor::new());
                        match acceptor {
                            Some(acceptor) => {
                                let Ok(tls) = acceptor.accept(stream).await else {
                                    return;
                                };
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                                    .await;
                            }
                            None => {
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    });
                }
            }
        });
        UpstreamServer {
            addr,
            seen,
            bodies,
            connections,
            task,
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port` or with another scheme.
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }

    /// How many connections the server accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The request heads received so far (the most recent [`SEEN_KEPT`]),
    /// oldest first.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().iter().cloned().collect()
    }

    /// The path and whole body of every request answered with
    /// [`Reply::Record`], in the order their bodies ended.
    pub fn bodies(&self) -> Vec<(String, Bytes)> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Where [`UpstreamServer::start`] binds.
const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

impl Drop for UpstreamServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Answers a [`Reply::Record`] route: the body is read to its end and
/// kept before the reply goes out.
async fn record(
    req: Request<Incoming>,
    reply: Bytes,
    seen: &Mutex<VecDeque<SeenRequest>>,
    bodies: &Mutex<Vec<(String, Bytes)>>,
) -> Response<Body> {
    remember(seen, &req);
    let path = req.uri().path().to_owned();
    match req.into_body().collect().await {
        Ok(body) => {
            bodies.lock().unwrap().push((path, body.to_bytes()));
            let mut response = Response::new(full(reply));
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("text/plain"));
            response
        }
        Err(_) => {
            let mut response = Response::new(full("request body broken\n"));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
    }
}

/// Records a request head, keeping the most recent [`SEEN_KEPT`].
fn remember(seen: &Mutex<VecDeque<SeenRequest>>, req: &Request<Incoming>) {
    let mut seen = seen.lock().unwrap();
    if seen.len() == SEEN_KEPT {
        seen.pop_front();
    }
    seen.push_back(SeenRequest {
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
        headers: req.headers().clone(),
    });
}

fn answer(
    mut req: Request<Incoming>,
    routes: &HashMap<String, Reply>,
    seen: &Mutex<VecDeque<SeenRequest>>,
) -> Response<Body> {
    remember(seen, &req);
    let Some(reply) = routes.get(req.uri().path()) else {
        let mut response = Response::new(full("no such route\n"));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let with_type = |body: Body, content_type: &'static str, encoding: Option<&'static str>| {
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static(content_type));
        if let Some(encoding) = encoding {
            headers.insert("content-encoding", HeaderValue::from_static(encoding));
        }
        response
    };
    match reply.clone() {
        Reply::Text(content_type, body) => with_type(full(body), content_type, None),
        Reply::Gzip(body) => with_type(full(body), "text/plain", Some("gzip")),
        Reply::Brotli(body) => with_type(full(body), "text/plain", Some("br")),
        Reply::Chunks(chunks) => {
            let stream = futures_stream(chunks);
            with_type(stream, "text/plain", None)
        }
        Reply::Echo => {
            let content_type = req.headers().get("content-type").cloned();
            let mut response =
                Response::new(req.into_body().map_err(BoxError::from).boxed_unsync());
            if let Some(content_type) = content_type {
                response.headers_mut().insert("content-type", content_type);
            }
            response
        }
        Reply::Sse(feed) => {
            let rx = feed.lock().unwrap().take();
            let body = match rx {
                Some(rx) => ReceiverFrames { rx }.boxed_unsync(),
                None => full("stream already taken\n"),
            };
            with_type(body, "text/event-stream", None)
        }
        Reply::UpgradeEcho => {
            let protocol = req
                .headers()
                .get("upgrade")
                .cloned()
                .unwrap_or(HeaderValue::from_static("echo"));
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let mut io = TokioIo::new(upgraded);
                let mut buf = vec![0u8; 4096];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            let mut response = Response::new(full(Bytes::new()));
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            response.headers_mut().insert("upgrade", protocol);
            response
                .headers_mut()
                .insert("connection", HeaderValue::from_static("upgrade"));
            response
        }
        Reply::Trailers(body, name, value) => {
            let mut trailers = HeaderMap::new();
            trailers.insert(
                http::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
            let frames = vec![Frame::data(body), Frame::trailers(trailers)];
            let mut response = Response::new(FramesBody { frames }.boxed_unsync());
            response
                .headers_mut()
                .insert("trailer", HeaderValue::from_static(name));
            response
        }
        // The service never gets here for `Hang`: it waits forever first.
        Reply::Hang => Response::new(full(Bytes::new())),
        Reply::Status(code) => {
            let mut response = Response::new(full(Bytes::new()));
            *response.status_mut() = StatusCode::from_u16(code).unwrap();
            response
        }
        // The service answers `Record` routes itself, after the body.
        Reply::Record(body) => with_type(full(body), "text/plain", None),
    }
}

fn futures_stream(chunks: Vec<Bytes>) -> Body {
    let (tx, rx) = mpsc::unbounded_channel();
    for chunk in chunks {
        let _ = tx.send(chunk);
    }
    drop(tx);
    ReceiverFrames { rx }.boxed_unsync()
}

/// A body whose data frames come from a channel, one per message; it ends
/// when the sender is dropped.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::UnboundedReceiver<Bytes>,
}

impl ChannelBody {
    /// A body and the sender that feeds it.
    pub fn new() -> (mpsc::UnboundedSender<Bytes>, ChannelBody) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, ChannelBody { rx })
    }
}

use ChannelBody as ReceiverFrames;

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

/// A body made of the given frames, in order.
struct FramesBody {
    frames: Vec<Frame<Bytes>>,
}

impl http_body::Body for FramesBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.frames.is_empty() {
            return std::task::Poll::Ready(None);
        }
        std::task::Poll::Ready(Some(Ok(self.frames.remove(0))))
    }
}
