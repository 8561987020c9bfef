//! The headers a proxy must not pass on as they are: hop-by-hop headers, which belong to one
//! connection (RFC 9110 §7.6.1), are dropped in both directions; `Forwarded` and
//! `X-Forwarded-For` get the client's address appended, so what a client claims is kept for
//! the upstream to judge but never taken for the client's address.

use std::net::SocketAddr;

use http::HeaderMap;
use http::header::{
    CONNECTION, FORWARDED, HOST, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION,
    TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};

/// `X-Forwarded-For` (not in `http`'s standard set).
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Hop-by-hop headers that `http` knows as standard names.
const HOP_BY_HOP: [HeaderName; 6] = [
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// `Keep-Alive` and `Proxy-Connection` (the non-standard one some clients still send).
const HOP_BY_HOP_OTHER: [&str; 2] = ["keep-alive", "proxy-connection"];

/// Whether `name` is a hop-by-hop header (not counting those a `Connection` header names).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == CONNECTION || HOP_BY_HOP.contains(name) || HOP_BY_HOP_OTHER.contains(&name.as_str())
}

/// Removes the hop-by-hop headers from an upstream's response: the fixed list and every
/// header that `Connection` names. Message framing is the HTTP library's job on each side: it
/// sets `Transfer-Encoding` or `Content-Length` anew for the next hop. Returns whether the
/// response has the header `marker` (the conversion header), found in the same pass.
pub(crate) fn prepare_response(headers: &mut HeaderMap, marker: &HeaderName) -> bool {
    // Most responses carry no hop-by-hop header: one pass over the names, with no hashing,
    // finds out.
    let (mut hop, mut marked) = (false, false);
    for name in headers.keys() {
        hop |= is_hop_by_hop(name);
        marked |= name == marker;
    }
    if hop {
        remove_hop_by_hop(headers);
    }
    marked && headers.contains_key(marker)
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    headers.remove(CONNECTION);
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    for name in HOP_BY_HOP_OTHER {
        headers.remove(name);
    }
}

/// The client of one connection, as the forwarding headers name it.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// `X-Forwarded-For` element: the bare address.
    forwarded_for: HeaderValue,
    /// `Forwarded` element: `for=` the address (IPv6 in quoted brackets), `proto=http`.
    forwarded: HeaderValue,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        let ip = addr.ip();
        let node = if ip.is_ipv6() {
            format!("\"[{ip}]\"")
        } else {
            ip.to_string()
        };
        // Addresses print as ASCII digits, dots, colons and brackets: valid header values.
        Peer {
            forwarded_for: HeaderValue::try_from(ip.to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            forwarded: HeaderValue::try_from(format!("for={node};proto=http"))
                .unwrap_or(HeaderValue::from_static("for=unknown")),
        }
    }

    /// Makes a client's request headers fit to send upstream: drops the hop-by-hop headers and
    /// appends this client to `X-Forwarded-For` and `Forwarded`. Returns whether the request
    /// has a `Host` header, found in the same pass.
    pub(crate) fn prepare_request(&self, headers: &mut HeaderMap) -> bool {
        // One pass over the names, with no hashing, tells what there is to do.
        let (mut hop, mut xff, mut fwd, mut host) = (false, false, false, false);
        for name in headers.keys() {
            hop |= is_hop_by_hop(name);
            xff |= *name == X_FORWARDED_FOR;
            fwd |= *name == FORWARDED;
            host |= *name == HOST;
        }
        if hop {
            remove_hop_by_hop(headers);
        }
        headers.reserve(2);
        append(headers, &X_FORWARDED_FOR, &self.forwarded_for, xff);
        append(headers, &FORWARDED, &self.forwarded, fwd);
        host
    }
}

/// Adds `value` to `name`: as its own line when the request has none, else after the existing
/// lines joined into one (`existing, value`, as RFC 9110 §5.3 reads list-valued fields).
fn append(headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue, existing: bool) {
    if !existing {
        headers.append(name.clone(), value.clone());
        return;
    }
    let mut joined: Vec<u8> = Vec::new();
    for line in headers.get_all(name) {
        joined.extend_from_slice(line.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(value.as_bytes());
    // The parts were valid header values and ", " is too.
    if let Ok(joined) = HeaderValue::from_bytes(&joined) {
        headers.insert(name.clone(), joined);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::try_from(*k).unwrap(),
                HeaderValue::try_from(*v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "close"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy-authenticate", "Basic"),
            ("host", "example.com"),
            ("x-kept", "yes"),
        ]);
        let marker = HeaderName::from_static("x-kept");
        assert!(prepare_response(&mut h, &marker));
        assert!(!prepare_response(
            &mut h,
            &HeaderName::from_static("x-absent")
        ));
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["host", "x-kept"]);
    }

    #[test]
    fn forwarding_headers_are_appended_never_replaced() {
        let v4 = Peer::new("10.1.2.3:5555".parse().unwrap());
        let mut h = map(&[]);
        assert!(!v4.prepare_request(&mut h));
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["forwarded"], "for=10.1.2.3;proto=http");

        let mut h = map(&[
            ("host", "example.com"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "7.7.7.7"),
            ("forwarded", "for=6.6.6.6"),
        ]);
        assert!(Peer::new("[::1]:80".parse().unwrap()).prepare_request(&mut h));
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 7.7.7.7, ::1");
        assert_eq!(h["forwarded"], "for=6.6.6.6, for=\"[::1]\";proto=http");
    }
}
