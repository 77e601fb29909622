//! Hop-by-hop header handling (RFC 9110 §7.6.1) and protocol upgrades:
//! what belongs to one connection is dropped, everything end-to-end stays.

use http::header::{CONNECTION, HeaderName, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderValue};

/// Whether the request asks for a protocol upgrade (RFC 9110 §7.8).
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop fields (RFC 9110 §7.6.1): those `Connection` names,
/// `Connection` itself and the well-known ones. With `upgrade`, `Upgrade`
/// and `Connection: upgrade` stay so the next hop can switch protocols.
/// `TE: trailers` is end-to-end in practice (gRPC) and stays.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let listed: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in listed {
        if upgrade && name == UPGRADE {
            continue;
        }
        headers.remove(name);
    }
    headers.remove(CONNECTION);
    headers.remove("proxy-connection");
    headers.remove("keep-alive");
    headers.remove(TRANSFER_ENCODING);
    let te_trailers = headers
        .get(TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_trailers {
        headers.remove(TE);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn check(input: &[(&str, &str)], upgrade: bool, expect: &[(&str, &str)]) {
        let mut map = headers(input);
        strip_hop_by_hop(&mut map, upgrade);
        let mut got: Vec<(String, String)> = map
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        got.sort();
        let mut expect: Vec<(String, String)> = expect
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        expect.sort();
        assert_eq!(got, expect, "{input:?}");
    }

    #[test]
    fn hop_by_hop_headers_go_end_to_end_ones_stay() {
        check(
            &[
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("x-end", "2"),
            ],
            false,
            &[("x-end", "2")],
        );
        check(
            &[
                ("proxy-connection", "keep-alive"),
                ("transfer-encoding", "chunked"),
                ("te", "gzip"),
                ("upgrade", "h2c"),
            ],
            false,
            &[],
        );
        check(
            &[("te", "trailers"), ("trailer", "x-sum")],
            false,
            &[("te", "trailers"), ("trailer", "x-sum")],
        );
        check(
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", "k"),
            ],
            true,
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", "k"),
            ],
        );
    }

    #[test]
    fn upgrade_needs_both_headers() {
        assert!(wants_upgrade(&headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket")
        ])));
        assert!(!wants_upgrade(&headers(&[("upgrade", "websocket")])));
        assert!(!wants_upgrade(&headers(&[("connection", "upgrade")])));
    }
}
