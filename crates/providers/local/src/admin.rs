//! The admin listener's pages: `/metrics` (Prometheus text), `/healthz` and `/split`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::body::{ProxyBody, RequestBody, full, plain};
use crate::headers::Peer;
use crate::metrics::ProxyMetrics;
use crate::router::ProxyRouter;

/// What the admin pages show.
#[derive(Debug)]
pub(crate) struct Admin {
    pub(crate) router: ProxyRouter,
    pub(crate) metrics: ProxyMetrics,
}

/// The service function of the admin listener (its signature is the one `serve` calls).
#[allow(clippy::needless_pass_by_value)]
pub(crate) fn handle(
    admin: Arc<Admin>,
    _peer: &Peer,
    req: Request<RequestBody>,
) -> Ready<Result<Response<ProxyBody>, Infallible>> {
    ready(Ok(page(&admin, &req)))
}

fn page<B>(admin: &Admin, req: &Request<B>) -> Response<ProxyBody> {
    match req.uri().path() {
        "/metrics" => {
            let mut resp = Response::new(full(admin.metrics.prometheus_text()));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        "/healthz" => plain(StatusCode::OK, "ok\n"),
        "/split" => Response::new(full(format!("{}\n", admin.router.split()))),
        _ => plain(StatusCode::NOT_FOUND, "not found: try /metrics\n"),
    }
}
