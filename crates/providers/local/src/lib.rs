//! Embedded weighted HTTP proxy router, HTTP health probe and proxy-recorded metrics for
//! cutover: a real canary on one machine, with no cluster and no cloud account.
//!
//! - [`LocalProxy`]: an in-process HTTP/1.1 reverse proxy (hyper 1.x) whose
//!   [`ProxyRouter`] implements [`TrafficRouter`](cutover_core::TrafficRouter): weighted
//!   splits in basis points, header and cookie routes, mirroring, sticky sessions, keep-alive
//!   upstream pools and graceful shutdown.
//! - [`ProxyMetrics`]: what the proxy saw, per revision, as a
//!   [`MetricSource`](cutover_core::MetricSource) and as Prometheus text on the admin
//!   listener's `/metrics`.
//! - [`HttpProbe`]: a [`HealthProbe`](cutover_core::HealthProbe) over HTTP.
//! - [`demo`] and [`load`]: a demo service with configurable errors and latency, and a load
//!   generator, for examples and tests.
#![forbid(unsafe_code)]

mod admin;
mod body;
mod client;
pub mod demo;
mod forward;
mod headers;
mod limits;
pub mod load;
mod metrics;
mod pool;
mod probe;
mod proxy;
mod router;
mod server;
mod table;

pub use body::ProxyBody;
pub use limits::ConnectionCounts;
pub use metrics::{
    DEFAULT_CONVERSION_HEADER, LATENCY_BUCKETS, ProxyMetrics, QUERIES, WINDOW_SLOTS,
};
pub use probe::HttpProbe;
pub use proxy::{LocalProxy, LocalProxyBuilder};
pub use router::ProxyRouter;
