//! Prometheus metric source for cutover.
//!
//! - [`PrometheusClient`]: instant and range queries over the Prometheus HTTP API, with a
//!   timeout, optional bearer token or basic auth (never shown in `Debug`), custom headers
//!   (a tenant id) and TLS verification always on.
//! - [`Template`]: PromQL with named placeholders (`{service}`, `{namespace}`, `{revision}`,
//!   `{window}`, `{quantile}`, your own). Label values are escaped as PromQL strings, so a
//!   revision or service name cannot change the query; `{window}` must be a PromQL duration
//!   ([`template`] has the rules).
//! - [`templates`]: built-in templates for the cutover-local proxy, Istio's standard metrics
//!   and the NGINX ingress controller: success and error rates (as counts), error ratio,
//!   request rate, latency quantiles, per revision.
//! - [`PrometheusSource`]: the [`MetricSource`](cutover_core::MetricSource). A plan's metric
//!   names a registered query or is PromQL itself; results map to samples as [`response`]
//!   describes (NaN and empty results are no data, never zero).
//! - `testing` (feature `test-util`): [`testing::PrometheusServer`] starts a real Prometheus
//!   on a free loopback port for tests and examples.
//!
//! Errors: a query Prometheus cannot parse (`bad_data`) is `Permanent`; timeouts, refused
//! connections and 5xx are `Transient`; 429 (and 503 with `Retry-After`) is `Throttled`
//! (the full table is in the `error` module's docs, repeated in the README).
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use cutover_core::{Plan, Rollout};
//! use cutover_prometheus::{PrometheusClient, PrometheusSource};
//!
//! let client = PrometheusClient::builder("http://127.0.0.1:9090").build()?;
//! let prometheus = PrometheusSource::new("prometheus", client);
//! let plan = Plan::from_yaml(r"
//! strategy: { canary: { steps: [ {set_weight: 10}, {analysis: {name: health}} ] } }
//! analyses:
//!   health:
//!     threshold:
//!       metrics:
//!         - { name: errors, source: prometheus, query: local/error-rate, window: 1m, max: 0.01, min_samples: 100 }
//! ")?;
//! let rollout = Rollout::builder("checkout", plan)
//!     .revisions("v1", "v2")
//!     .metric_source("prometheus", prometheus);
//! // .router(..).build()?.run().await?
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod client;
mod error;
pub mod response;
mod source;
pub mod template;
pub mod templates;
#[cfg(feature = "test-util")]
pub mod testing;

pub use client::{Auth, PrometheusClient, PrometheusClientBuilder};
pub use response::QueryData;
pub use source::{Mode, PrometheusSource, Query};
pub use template::{Args, Filled, Shape, Template, TemplateError};
