//! The pooling HTTP/1.1 client of the probe, the load generator and mirrored copies.

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::ProxyBody;

/// An HTTP/1.1 client with a keep-alive pool.
pub(crate) type HttpClient = Client<HttpConnector, ProxyBody>;

/// A client whose idle connections close after `pool_idle`.
pub(crate) fn http_client(pool_idle: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(pool_idle)
        .build(connector)
}
