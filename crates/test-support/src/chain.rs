//! A tiny chaining proxy, standing in for NanoClaw's OneCLI gateway: it
//! forwards absolute-form requests and tunnels CONNECT, and records the
//! `Proxy-Authorization` it received with each.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

/// What the chaining proxy saw: method and `Proxy-Authorization`.
type Seen = Arc<Mutex<Vec<(Method, Option<String>)>>>;

/// A running chaining proxy; stops when dropped.
#[derive(Debug)]
pub struct ChainProxy {
    addr: SocketAddr,
    seen: Seen,
    task: JoinHandle<()>,
}

impl ChainProxy {
    /// Starts the proxy. With `require`, requests whose
    /// `Proxy-Authorization` differs get `407`.
    pub async fn start(require: Option<&str>) -> ChainProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let require = require.map(str::to_owned);
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let seen = seen.clone();
                    let require = require.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let seen = seen.clone();
                            let require = require.clone();
                            async move {
                                Ok::<_, Infallible>(handle(req, &seen, require.as_deref()).await)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                    });
                }
            }
        });
        ChainProxy { addr, seen, task }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request's method and the `Proxy-Authorization` it carried.
    pub fn seen(&self) -> Vec<(Method, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ChainProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(format!("chain proxy: {code}\n")))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = code;
    response
}

async fn handle(
    mut req: Request<Incoming>,
    seen: &Mutex<Vec<(Method, Option<String>)>>,
    require: Option<&str>,
) -> Response<Body> {
    let auth = req
        .headers_mut()
        .remove("proxy-authorization")
        .and_then(|v| v.to_str().ok().map(str::to_owned));
    seen.lock()
        .unwrap()
        .push((req.method().clone(), auth.clone()));
    if let Some(required) = require
        && auth.as_deref() != Some(required)
    {
        let mut response = status(StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        response.headers_mut().insert(
            "proxy-authenticate",
            HeaderValue::from_static("Basic realm=\"chain\""),
        );
        return response;
    }
    let Some(authority) = req.uri().authority().map(|a| a.to_string()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(upstream) = TcpStream::connect(&authority).await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    if req.method() == Method::CONNECT {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut client = TokioIo::new(upgraded);
            let mut upstream = upstream;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
        return Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    }
    let Ok((mut sender, conn)) =
        hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await
    else {
        return status(StatusCode::BAD_GATEWAY);
    };
    tokio::spawn(conn);
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.to_string());
    *req.uri_mut() = path.parse().unwrap();
    match sender.send_request(req).await {
        Ok(response) => response.map(|b| b.map_err(BoxError::from).boxed_unsync()),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}
