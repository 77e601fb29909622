//! Shaping a request for the connection that carries it: origin-form or
//! absolute-form HTTP/1.1 with a `Host`, or HTTP/2 with an authority.

use http::header::HOST;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Uri, Version};

use super::{Dispatch, Target};
use crate::body::ProxyBody;
use crate::error::Error;

/// HTTP/1.1 towards a server (origin-form) or an upstream proxy
/// (absolute-form), with a `Host` header.
pub(super) fn shape_h1(
    mut req: Request<ProxyBody>,
    target: &Target,
    absolute: bool,
) -> Request<ProxyBody> {
    *req.version_mut() = Version::HTTP_11;
    let path = path_and_query(req.uri());
    if !req.headers().contains_key(HOST) {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| target.host_header());
        if let Ok(value) = HeaderValue::from_str(&authority) {
            req.headers_mut().insert(HOST, value);
        }
    }
    if !absolute {
        *req.uri_mut() = Uri::from(path);
    }
    req
}

/// HTTP/2 needs scheme and authority in the URI, and no `Host` header.
pub(super) fn shape_h2(
    mut req: Request<ProxyBody>,
    target: &Target,
) -> Result<Request<ProxyBody>, Dispatch> {
    *req.version_mut() = Version::HTTP_2;
    let authority = req
        .headers_mut()
        .remove(HOST)
        .and_then(|h| h.to_str().ok().map(str::to_owned))
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_else(|| target.host_header());
    let path = path_and_query(req.uri());
    let uri = Uri::builder()
        .scheme(Scheme::HTTPS)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| {
            Dispatch::Failed(Error::BadRequest("request authority is not valid".into()))
        })?;
    *req.uri_mut() = uri;
    Ok(req)
}

fn path_and_query(uri: &Uri) -> PathAndQuery {
    uri.path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::empty;

    fn target(host: &str, port: u16, https: bool) -> Target {
        Target {
            https,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn authorities_bracket_ipv6_and_drop_default_ports() {
        assert_eq!(target("::1", 8080, false).authority(), "[::1]:8080");
        assert_eq!(target("::1", 443, true).host_header(), "[::1]");
        assert_eq!(
            target("example.com", 80, false).host_header(),
            "example.com"
        );
        assert_eq!(
            target("example.com", 8443, true).host_header(),
            "example.com:8443"
        );
    }

    #[test]
    fn h1_requests_go_origin_form_to_servers_and_absolute_to_proxies() {
        let t = target("example.com", 80, false);
        let req = || {
            let mut req = Request::new(empty());
            *req.uri_mut() = "http://example.com/a?b=c".parse().unwrap();
            req
        };
        let direct = shape_h1(req(), &t, false);
        assert_eq!(direct.uri(), "/a?b=c");
        assert_eq!(direct.headers()[HOST], "example.com");
        let proxied = shape_h1(req(), &t, true);
        assert_eq!(proxied.uri(), "http://example.com/a?b=c");
    }

    #[test]
    fn h2_requests_carry_the_host_as_authority() {
        let t = target("example.com", 443, true);
        let mut req = Request::new(empty());
        *req.uri_mut() = "/x?y".parse().unwrap();
        req.headers_mut()
            .insert(HOST, HeaderValue::from_static("example.com"));
        let Ok(req) = shape_h2(req, &t) else {
            panic!("shape failed")
        };
        assert_eq!(req.uri(), "https://example.com/x?y");
        assert!(!req.headers().contains_key(HOST));
    }
}
