//! The request path of one serving loop: pick an upstream from the routing table, forward the
//! request on this loop's own connections, and count the answer.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use cutover_core::TrafficRouter as _;
use http::header::{ALLOW, HOST, HeaderName, HeaderValue, SET_COOKIE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Either};
use parking_lot::Mutex;

use crate::body::{ProxyBody, RequestBody, full, plain};
use crate::client::{HttpClient, http_client};
use crate::headers::{Peer, prepare_response};
use crate::limits::Activity;
use crate::metrics::{Outcome, ProxyFailure, wall_now};
use crate::pool::Pool;
use crate::router::ProxyRouter;
use crate::table::{Reason, Table};

/// The state of one serving loop: the shared routing table and this loop's own upstream
/// connections and metric shard.
#[derive(Debug)]
pub(crate) struct Forwarder {
    router: ProxyRouter,
    /// This serving thread's own copy of the routing table and the generation it was taken
    /// at (None when the proxy serves on a shared runtime). Every request takes a reference
    /// to its table; on a copy of its own, a thread never writes to the reference count
    /// another thread writes to.
    local: Option<Mutex<(u64, Arc<Table>)>>,
    /// Keep-alive connections for the requests the proxy answers.
    pool: Pool,
    /// The client of mirrored copies, whose responses are discarded.
    mirror_client: HttpClient,
    /// This loop's shard of the metrics.
    shard: usize,
    /// How long an upstream has to send response headers.
    timeout: Duration,
    /// The response header that marks a conversion.
    conversion_header: HeaderName,
}

impl Forwarder {
    /// Upstream connections unused for `pool_idle` are closed. `own_thread`: the forwarder
    /// serves one thread of its own.
    pub(crate) fn new(
        router: ProxyRouter,
        own_thread: bool,
        shard: usize,
        timeout: Duration,
        pool_idle: Duration,
        conversion_header: HeaderName,
    ) -> Self {
        let upstreams = router.table().upstreams.len();
        let local = own_thread.then(|| {
            let generation = router.generation();
            Mutex::new((generation, Arc::new(Table::clone(&router.table()))))
        });
        Forwarder {
            router,
            local,
            pool: Pool::new(upstreams, pool_idle),
            mirror_client: http_client(Duration::from_secs(90)),
            shard,
            timeout,
            conversion_header,
        }
    }

    /// Closes the upstream connections that have been idle too long (called by the
    /// watchdog of this loop, so it also happens when no request comes).
    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub(crate) fn tidy(forwarder: &Arc<Forwarder>) {
        forwarder.pool.sweep(wall_now());
    }

    /// The routing table in force now.
    fn table(&self) -> Arc<Table> {
        let Some(local) = &self.local else {
            return self.router.table();
        };
        let generation = self.router.generation();
        let mut local = local.lock();
        if local.0 != generation {
            *local = (generation, Arc::new(Table::clone(&self.router.table())));
        }
        local.1.clone()
    }

    /// The proxy's name, for logs.
    pub(crate) fn name(&self) -> &str {
        self.router.name()
    }
}

/// The service function of the proxy's listeners. CONNECT and TRACE are answered 405 here:
/// a reverse proxy tunnels nothing, and TRACE would echo the client's headers (cookies
/// included) back to whatever script sent it.
pub(crate) fn handle(
    forwarder: Arc<Forwarder>,
    peer: &Peer,
    mut req: Request<RequestBody>,
) -> Answer {
    let refused = req.method() == Method::CONNECT || req.method() == Method::TRACE;
    let has_host = !refused && peer.prepare_request(req.headers_mut());
    // Boxed: hyper moves the service's future several times before polling it, and this
    // one is large; one allocation costs less than copying it each time.
    Box::pin(async move {
        if refused {
            return Ok(not_allowed());
        }
        Ok(forward(&forwarder, req, has_host).await)
    })
}

/// The future of one request through the proxy.
pub(crate) type Answer =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

/// 405, with the methods the proxy does forward.
fn not_allowed() -> Response<ProxyBody> {
    let mut resp = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "CONNECT and TRACE are not forwarded\n",
    );
    resp.headers_mut().insert(
        ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    resp
}

/// `has_host`: whether the request has a `Host` header.
async fn forward(f: &Forwarder, req: Request<RequestBody>, has_host: bool) -> Response<ProxyBody> {
    let start = wall_now();
    let table = f.table();
    let (index, reason) = table.pick(req.headers());
    let upstream = &table.upstreams[index];
    let mirror = table.mirror_for(req.headers()).map(|i| &table.upstreams[i]);
    let (mut parts, body) = req.into_parts();
    let activity = body.activity().clone();
    // HTTP/1.1 upstreams get the origin form (`/path?query`) and the client's Host header,
    // which only requests without one (HTTP/1.0) or in absolute form need rebuilt.
    if parts.uri.authority().is_some() {
        parts.uri = origin_form(&parts.uri);
    }
    if !has_host && let Ok(host) = HeaderValue::from_str(upstream.authority.as_str()) {
        parts.headers.insert(HOST, host);
    }
    let body = match mirror {
        None => Either::Left(body),
        Some(shadow) => {
            // The copy needs the body twice, so a mirrored request is buffered.
            let Ok(collected) = body.collect().await else {
                return plain(StatusCode::BAD_REQUEST, "request body could not be read\n");
            };
            let bytes = collected.to_bytes();
            let mut copy = Request::new(full(bytes.clone()));
            *copy.method_mut() = parts.method.clone();
            *copy.uri_mut() = upstream_uri(parts.uri.clone(), &shadow.authority);
            *copy.headers_mut() = parts.headers.clone();
            let client = f.mirror_client.clone();
            let timeout = f.timeout;
            // Fire and forget: the copy's response is discarded and never delays the primary.
            tokio::spawn(async move {
                if let Ok(Ok(resp)) = tokio::time::timeout(timeout, client.request(copy)).await {
                    let _ = resp.into_body().collect().await;
                }
            });
            full(bytes)
        }
    };
    let sent = UpstreamDeadline {
        send: std::pin::pin!(f.pool.send(
            index,
            upstream.addr,
            Request::from_parts(parts, body),
            start,
        )),
        activity: &activity,
    }
    .await;
    let (mut resp, error, conversion) = match sent {
        Ok(Ok(mut resp)) => {
            let conversion = prepare_response(resp.headers_mut(), &f.conversion_header);
            (resp.map(Either::Left), None, conversion)
        }
        Ok(Err(e)) => {
            tracing::debug!(proxy = %f.name(), upstream = %upstream.addr, error = %e, "upstream failed");
            (
                plain(StatusCode::BAD_GATEWAY, "upstream unavailable\n"),
                Some(ProxyFailure::Connect),
                false,
            )
        }
        Err(UpstreamLate) => (
            plain(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n"),
            Some(ProxyFailure::Timeout),
            false,
        ),
    };
    if let Some(sticky) = &table.sticky
        && reason == Reason::Weight
    {
        resp.headers_mut()
            .append(SET_COOKIE, sticky.set_cookie[index].clone());
    }
    let end = wall_now();
    upstream.stats.record(
        f.shard,
        end,
        Outcome {
            status: resp.status().as_u16(),
            latency: end.saturating_duration_since(start),
            conversion,
            error,
        },
    );
    resp
}

/// The upstream sent no response headers within the upstream timeout.
struct UpstreamLate;

/// A request to an upstream, given up when the connection's watchdog finds the upstream late
/// (no timer per request).
struct UpstreamDeadline<'a, F> {
    send: Pin<&'a mut F>,
    activity: &'a Activity,
}

impl<F: Future> Future for UpstreamDeadline<'_, F> {
    type Output = Result<F::Output, UpstreamLate>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = self.send.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if self.activity.poll_upstream_late(cx) {
            return Poll::Ready(Err(UpstreamLate));
        }
        Poll::Pending
    }
}

fn upstream_uri(uri: Uri, authority: &Authority) -> Uri {
    let mut parts = uri.into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority.clone());
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    // Scheme, authority and path are all set, which is all `from_parts` checks.
    Uri::from_parts(parts).unwrap_or_default()
}

/// `uri` without scheme and authority: what an HTTP/1.1 request line carries.
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}
