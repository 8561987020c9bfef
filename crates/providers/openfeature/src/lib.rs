//! In-process feature flags for cutover, evaluated through OpenFeature.
//!
//! A rollout can move users instead of requests: the new code path sits behind a flag, and
//! the rollout raises the share of users who get it (1 % -> 5 % -> 25 % -> 100 %), judging
//! users with the flag on against users with it off, and turns it back off on a failure.
//!
//! - [`Flags`]: the application's flags, defined with [`FlagDefinition`] (boolean, or string
//!   variants for A/B tests). Sticky bucketing by targeting key ([`bucket`]): a fixed hash
//!   (XXH3), the same in every process; a user who has the flag at 5 % keeps it at 10 %.
//! - [`CutoverProvider`]: the OpenFeature provider (`open-feature` crate) that evaluates them,
//!   with variants, reasons (`STATIC`, `SPLIT`) and flag metadata per the spec.
//! - [`FlagRouter`]: the [`TrafficRouter`](cutover_core::TrafficRouter) a rollout sets one
//!   flag's weights through, to the basis point.
//! - [`VariantMetrics`] and [`VariantRecorder`]: a [`MetricSource`](cutover_core::MetricSource)
//!   over per-variant counters and latency histograms that the application records into, so
//!   the existing judges and sequential tests compare the variants.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cutover_core::{Plan, Rollout};
//! use cutover_openfeature::{CutoverProvider, FlagDefinition, FlagRouter, Flags, VariantMetrics};
//!
//! let flags = Flags::new();
//! flags.define(FlagDefinition::boolean("checkout.new-path", "old", "new")?)?;
//! open_feature::OpenFeature::singleton_mut()
//!     .await
//!     .set_provider(CutoverProvider::new(flags.clone()))
//!     .await;
//! let metrics = VariantMetrics::new("flags");
//! let plan = Plan::from_yaml(r"
//! strategy: { canary: { steps: [ {set_weight: 1}, {analysis: {name: errors}}, {set_weight: 5} ] } }
//! analyses:
//!   errors:
//!     sequential: { test: counts, source: flags, query: error_rate }
//! ")?;
//! let rollout = Rollout::builder("checkout-new-path", plan)
//!     .revisions("old", "new")
//!     .router(FlagRouter::new(flags.clone(), "checkout.new-path"))
//!     .metric_source("flags", metrics.clone())
//!     .build()?;
//! // Request handlers evaluate the flag and record into `metrics.recorder()`; then:
//! // rollout.run().await?
//! # drop(rollout); Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod bucket;
mod flags;
mod metrics;
mod provider;
mod router;

/// The `open-feature` crate this provider implements, re-exported so that applications use
/// the same version.
pub use open_feature;

pub use flags::{Evaluation, FlagDefinition, FlagError, Flags, Reason};
pub use metrics::{Outcome, QUERIES, VariantMetrics, VariantRecorder, WINDOW_SLOTS};
pub use provider::{CutoverProvider, METADATA_BUCKET, METADATA_WEIGHT};
pub use router::FlagRouter;
