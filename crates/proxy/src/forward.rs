//! Forwarding one HTTP exchange: attribution, scanning of both heads, tee
//! bodies both ways, hop-by-hop headers per RFC 9110, and protocol upgrades
//! tunnelled through. Nothing end-to-end is changed.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use traffic_guardian_core::{Direction, Protocol};

use crate::attribution::Runtime;
use crate::body::{ProxyBody, ScanBody, text};
use crate::connect::{self, splice};
use crate::error::{Error, ErrorClass};
use crate::flow::{Flow, FlowMeta};
use crate::hop::{strip_hop_by_hop, wants_upgrade};
use crate::listener::ClientConn;
use crate::sink::FlowHandling;
use crate::stats::add;
use crate::upstream::{BoxIo, Target};
use traffic_guardian_core::MessageScanner;

/// The facts shared by every exchange on one path: plain HTTP, or one
/// inspected TLS session.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) protocol: Protocol,
    pub(crate) handling: FlowHandling,
    pub(crate) target: Target,
    /// HTTP/2 may be used towards the server.
    pub(crate) allow_h2: bool,
    /// `Proxy-Authorization` for the upstream proxy's CONNECT (HTTPS).
    pub(crate) tunnel_auth: Option<HeaderValue>,
}

/// The service of the plain listener: CONNECT or an absolute-form request.
pub(crate) async fn handle(
    conn: Arc<ClientConn>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    add(&conn.state.shared.stats.requests, 1);
    let flow_id = conn.next_flow_id();
    let result = if req.method() == Method::CONNECT {
        connect::handle(&conn, req, &flow_id).await
    } else {
        plain(&conn, req, &flow_id).await
    };
    Ok(result.unwrap_or_else(|err| error_response(&conn, err, &flow_id)))
}

/// The service inside an inspected TLS session.
pub(crate) async fn handle_inspected(
    conn: Arc<ClientConn>,
    exchange: Arc<Exchange>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    add(&conn.state.shared.stats.requests, 1);
    let flow_id = conn.next_flow_id();
    let result = forward(&conn, &exchange, req, flow_id.clone()).await;
    Ok(result.unwrap_or_else(|err| error_response(&conn, err, &flow_id)))
}

async fn plain(
    conn: &Arc<ClientConn>,
    req: Request<Incoming>,
    flow_id: &str,
) -> Result<Response<ProxyBody>, Error> {
    let runtime = conn.runtime(req.headers().get(PROXY_AUTHORIZATION))?;
    let uri = req.uri();
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(Error::BadRequest(
                "https:// URLs go through CONNECT, not as plain requests".into(),
            ));
        }
        _ if uri.authority().is_none() => {
            return Err(Error::BadRequest(
                "this is a forward proxy: send absolute-form requests (http://host/path)".into(),
            ));
        }
        _ => return Err(Error::BadRequest("only http:// URLs are proxied".into())),
    }
    let Some(host) = uri.host().map(trim_brackets).filter(|h| !h.is_empty()) else {
        return Err(Error::BadRequest("request URL has no host".into()));
    };
    let target = Target {
        https: false,
        host: host.to_owned(),
        port: uri.port_u16().unwrap_or(80),
    };
    if conn.state.is_self(&target) {
        return Err(Error::BadRequest(
            "request loops back to the guardian itself".into(),
        ));
    }
    let exchange = Exchange {
        runtime,
        protocol: Protocol::Http,
        handling: FlowHandling::Forwarded,
        target,
        allow_h2: false,
        tunnel_auth: None,
    };
    forward(conn, &exchange, req, flow_id.to_owned()).await
}

/// Forwards one request and returns the response whose body streams back
/// through the scanner.
async fn forward(
    conn: &Arc<ClientConn>,
    exchange: &Exchange,
    mut req: Request<Incoming>,
    flow_id: String,
) -> Result<Response<ProxyBody>, Error> {
    let state = &conn.state;
    let in_flight = conn.activity.begin();
    let flow = Flow::new(
        FlowMeta {
            id: flow_id,
            runtime: exchange.runtime.name.clone(),
            protocol: exchange.protocol,
            handling: exchange.handling,
            client: conn.peer,
            dest: exchange.target.authority(),
            method: req.method().as_str().to_owned(),
        },
        &state.shared,
    );
    let meta = flow.meta();
    tracing::debug!(flow = %meta.id, runtime = %meta.runtime, method = %meta.method, dest = %meta.dest, protocol = %meta.protocol, "request");

    // The outbound head: the whole target, then every header.
    let absolute = absolute_uri(req.uri(), &exchange.target);
    let target = absolute.to_string();
    let mut scanner = flow.scanner(Direction::Outbound, None);
    scanner.scan_target(&target);
    scan_head(&mut scanner, req.headers());

    let upgrade = wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let proxy_auth = parts.headers.remove(PROXY_AUTHORIZATION);
    // RFC 9112 §3.2.2: with an absolute-form target (or an h2 authority),
    // the target's authority is the host; the server must see the same one
    // the guardian recorded as the destination.
    if let Some(authority) = parts.uri.authority() {
        let host = authority.as_str().rsplit('@').next().unwrap_or_default();
        if let Ok(value) = HeaderValue::from_str(host) {
            parts.headers.insert(HOST, value);
        }
    }
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let chained_plain = exchange.protocol == Protocol::Http && state.upstream.has_proxy();
    if chained_plain
        && state.forward_proxy_auth
        && let Some(auth) = proxy_auth
    {
        parts.headers.insert(PROXY_AUTHORIZATION, auth);
    }
    parts.uri = absolute;
    let body = ScanBody::new(body, Direction::Outbound, flow.clone(), scanner, None, None);
    let request = Request::from_parts(parts, body.boxed_unsync());

    let sent = state
        .upstream
        .send(
            request,
            &exchange.target,
            exchange.allow_h2,
            exchange.tunnel_auth.as_ref(),
        )
        .await
        .map_err(|err| {
            // The client's own body broke (bad chunking, cut short): the
            // exchange failed because of the client, not the server.
            let err = match flow.request_body_failure() {
                Some(reason) => {
                    Error::BadRequest(format!("the request body could not be read: {reason}"))
                }
                None => err,
            };
            flow.set_error(err.to_string());
            err
        })?;

    let mut response = sent.response;
    let status = response.status();
    flow.set_status(status.as_u16());
    let server_upgrade = (status == StatusCode::SWITCHING_PROTOCOLS && upgrade)
        .then(|| hyper::upgrade::on(&mut response));
    let (mut parts, body) = response.into_parts();
    let mut scanner = flow.scanner(Direction::Inbound, Some(&target));
    scan_head(&mut scanner, &parts.headers);
    strip_hop_by_hop(&mut parts.headers, server_upgrade.is_some());
    if !(chained_plain && state.forward_proxy_auth) {
        parts.headers.remove(PROXY_AUTHENTICATE);
    }
    if let (Some(client), Some(server)) = (client_upgrade, server_upgrade) {
        tunnel_upgrade(conn, flow.clone(), client, server);
    }
    let body = ScanBody::new(
        body,
        Direction::Inbound,
        flow,
        scanner,
        sent.release,
        Some(Box::new(in_flight)),
    );
    Ok(Response::from_parts(parts, body.boxed_unsync()))
}

/// After `101 Switching Protocols`, the two upgraded streams are joined
/// byte for byte (a WebSocket, for instance). Not inspected.
fn tunnel_upgrade(
    conn: &Arc<ClientConn>,
    flow: Arc<Flow>,
    client: hyper::upgrade::OnUpgrade,
    server: hyper::upgrade::OnUpgrade,
) {
    let phase = conn.state.phase.clone();
    let conn = conn.clone();
    tokio::spawn(async move {
        let _conn = conn;
        match tokio::try_join!(client, server) {
            Ok((client, server)) => {
                let server: BoxIo = Box::new(TokioIo::new(server));
                splice(&flow, TokioIo::new(client), server, phase).await;
            }
            Err(err) => flow.set_error(format!("upgrade failed: {err}")),
        }
    });
}

/// Feeds a message head to the scanner: every header but
/// `Proxy-Authorization`, which is credentials for the proxy itself and is
/// never scanned, logged or put in a finding.
pub(crate) fn scan_head(scanner: &mut MessageScanner, headers: &HeaderMap) {
    for (name, value) in headers {
        if name == PROXY_AUTHORIZATION {
            continue;
        }
        scanner.scan_header(name.as_str(), value.as_bytes());
    }
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    scanner.begin_body(text(CONTENT_ENCODING), text(CONTENT_TYPE));
}

/// The request target as an absolute URI towards `target`.
fn absolute_uri(uri: &Uri, target: &Target) -> Uri {
    if uri.scheme().is_some() && uri.authority().is_some() {
        return uri.clone();
    }
    let scheme = if target.https { "https" } else { "http" };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{scheme}://{}{path}", target.authority())
        .parse()
        .unwrap_or_else(|_| uri.clone())
}

fn trim_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The short plain-text answer for a failure; logs it at its class's level.
pub(crate) fn error_response(conn: &ClientConn, err: Error, flow_id: &str) -> Response<ProxyBody> {
    err.log(flow_id);
    let stats = &conn.state.shared.stats;
    match err.class() {
        ErrorClass::Downstream => add(&stats.client_errors, 1),
        ErrorClass::Upstream => add(&stats.upstream_errors, 1),
        ErrorClass::Internal => {}
    }
    let status = err.status();
    let mut response = Response::new(text(format!("traffic-guardian: {err}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        headers.insert(
            PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"traffic-guardian\""),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_uris_are_built_for_origin_form_targets() {
        let target = Target {
            https: true,
            host: "::1".into(),
            port: 8443,
        };
        let uri: Uri = "/a?b=c".parse().unwrap();
        assert_eq!(absolute_uri(&uri, &target), "https://[::1]:8443/a?b=c");
        let uri: Uri = "http://example.com/x".parse().unwrap();
        assert_eq!(absolute_uri(&uri, &target), "http://example.com/x");
    }
}
