//! The body of requests and responses through the proxy, and the short answers the proxy, its
//! admin listener and the demo service make themselves.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// The body of requests and responses through the proxy: streamed from the other side, or
/// made whole by the proxy (buffered mirrored requests, 502/504, admin pages).
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// A whole body of `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Either::Right(Full::new(bytes.into()))
}

/// A response with `status` and a one-line text body.
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp
}
