//! The bodies of requests and responses through the proxy, and the short answers the proxy,
//! its admin listener and the demo service make themselves.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::limits::Activity;

/// The body of requests and responses through the proxy: streamed from the other side, or
/// made whole by the proxy (buffered mirrored requests, 502/504, admin pages).
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// The body of a request on its way upstream: the client's stream, or a whole copy.
pub(crate) type UpstreamBody = Either<RequestBody, Full<Bytes>>;

/// A whole body of `bytes`.
pub(crate) fn full<B: Body<Data = Bytes>>(bytes: impl Into<Bytes>) -> Either<B, Full<Bytes>> {
    Either::Right(Full::new(bytes.into()))
}

/// A response with `status` and a one-line text body.
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// A client's request body, which tells its connection's [`Activity`] when bytes come (for the
/// body idle timeout) and when it ends.
#[derive(Debug)]
pub(crate) struct RequestBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, activity: Arc<Activity>) -> Self {
        RequestBody { inner, activity }
    }

    /// The activity of the connection this body comes on.
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) if !self.inner.is_end_stream() => self.activity.touch(),
            Poll::Ready(Some(Ok(_)) | None) => self.activity.body_ended(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
