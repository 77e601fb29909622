//! `CONNECT`: a byte tunnel with its flow recorded (protocol `connect`),
//! or, for runtimes with HTTPS inspection, the entry to the inspected TLS
//! session. Passthrough hosts are always tunnelled.

use std::sync::Arc;

use http::header::PROXY_AUTHORIZATION;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use traffic_guardian_core::{Direction, Protocol};

use crate::body::{ProxyBody, empty};
use crate::counted::Counted;
use crate::error::Error;
use crate::flow::{Flow, FlowMeta};
use crate::forward::scan_head;
use crate::listener::ClientConn;
use crate::mitm;
use crate::shutdown::{Phase, PhaseWatch};
use crate::sink::FlowHandling;
use crate::upstream::{BoxIo, Io, Target};

pub(crate) async fn handle(
    conn: &Arc<ClientConn>,
    mut req: Request<Incoming>,
    flow_id: &str,
) -> Result<Response<ProxyBody>, Error> {
    let state = &conn.state;
    let proxy_auth = req.headers().get(PROXY_AUTHORIZATION).cloned();
    let runtime = conn.runtime(proxy_auth.as_ref())?;
    let Some(authority) = req.uri().authority() else {
        return Err(Error::BadRequest("CONNECT needs a host:port target".into()));
    };
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(Error::BadRequest("CONNECT target has no host".into()));
    }
    let target = Target {
        https: true,
        host: host.to_owned(),
        port: authority.port_u16().unwrap_or(443),
    };
    if state.is_self(&target) {
        return Err(Error::BadRequest(
            "CONNECT loops back to the guardian itself".into(),
        ));
    }
    let dest = target.authority();
    let tunnel_auth = proxy_auth.filter(|_| state.forward_proxy_auth);
    let inspect = runtime.inspect_https
        && state.leaves.is_some()
        && !is_passthrough(&state.passthrough, &target.host);
    let flow = Flow::new(
        FlowMeta {
            id: flow_id.to_owned(),
            runtime: runtime.name.clone(),
            protocol: Protocol::Connect,
            handling: if inspect {
                FlowHandling::Inspected
            } else {
                FlowHandling::Tunnelled
            },
            client: conn.peer,
            dest: dest.clone(),
            method: "CONNECT".into(),
        },
        &state.shared,
    );
    tracing::debug!(flow = flow_id, runtime = %runtime.name, %dest, inspect, "connect");

    // The CONNECT head itself is outbound traffic too.
    let mut scanner = flow.scanner(Direction::Outbound, None);
    scanner.scan_target(&dest);
    scan_head(&mut scanner, req.headers());
    flow.finish_scan(scanner, 0);

    let on_upgrade = hyper::upgrade::on(&mut req);
    if inspect {
        flow.set_status(200);
        let conn = conn.clone();
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let session = mitm::Session {
                        target,
                        runtime,
                        tunnel_auth,
                    };
                    mitm::serve(conn, upgraded, session, flow).await;
                }
                Err(err) => flow.set_error(format!("client did not start the tunnel: {err}")),
            }
        });
        return Ok(Response::new(empty()));
    }

    // Reach the destination first, so a failure is a clear 502/504.
    let upstream = state
        .upstream
        .tunnel(&dest, tunnel_auth.as_ref())
        .await
        .inspect_err(|err| flow.set_error(err.to_string()))?;
    flow.set_status(200);
    let phase = state.phase.clone();
    let conn = conn.clone();
    tokio::spawn(async move {
        let _conn = conn;
        match on_upgrade.await {
            Ok(upgraded) => splice(&flow, TokioIo::new(upgraded), upstream, phase).await,
            Err(err) => flow.set_error(format!("client did not start the tunnel: {err}")),
        }
    });
    Ok(Response::new(empty()))
}

/// Copies bytes both ways until either side closes (or the shutdown
/// deadline passes), counting them on the flow however the copy ends.
pub(crate) async fn splice(
    flow: &Flow,
    client: impl Io,
    mut upstream: BoxIo,
    mut phase: PhaseWatch,
) {
    let mut client = Counted::new(client);
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(err) = copied {
                flow.set_error(format!("tunnel ended: {err}"));
            }
        }
        () = phase.reached(Phase::Cut) => flow.set_error("cut at shutdown".into()),
    }
    flow.add_bytes(Direction::Outbound, client.read);
    flow.add_bytes(Direction::Inbound, client.written);
}

/// Whether `host` is on the passthrough list: `example.com` matches that
/// host, `*.example.com` (or `.example.com`) its subdomains.
pub(crate) fn is_passthrough(list: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.');
    list.iter().any(|entry| {
        let entry = entry.trim().trim_end_matches('.');
        match entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')) {
            Some(suffix) => {
                host.len() > suffix.len() + 1
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
            None => host.eq_ignore_ascii_case(entry),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(entry: &str, host: &str, expect: bool) {
        assert_eq!(
            is_passthrough(&[entry.to_owned()], host),
            expect,
            "{entry} vs {host}"
        );
    }

    #[test]
    fn passthrough_matches_hosts_and_subdomains() {
        check("pinned.example", "pinned.example", true);
        check("pinned.example", "PINNED.example.", true);
        check("pinned.example", "a.pinned.example", false);
        check("*.pinned.example", "a.pinned.example", true);
        check(".pinned.example", "a.b.pinned.example", true);
        check("*.pinned.example", "pinned.example", false);
        check("*.pinned.example", "xpinned.example", false);
        check("10.0.0.1", "10.0.0.1", true);
    }
}
