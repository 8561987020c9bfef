//! Progressive delivery as a library: canary, blue-green, rolling and A/B rollouts with
//! analysis, automatic rollback, crash-safe state and a record of every decision.
//!
//! # Overview
//!
//! This crate re-exports the parts of cutover behind additive features:
//!
//! | item | crate | feature |
//! |---|---|---|
//! | [`Rollout`], the plans, the provider traits, the stores | `cutover-core` | always |
//! | [`analysis`]: verdicts, measurement tallies, A/B statistics | `cutover-analysis` | always |
//! | `test`: fakes, scripted metrics, the router contract suite | `cutover-test` | `test-util` |
//! | `istio`: VirtualService router, DestinationRule subsets, Istio PromQL templates | `cutover-istio` | `istio` |
//!
//! Providers for Kubernetes, Istio, AWS ALB, Prometheus, PostgreSQL and the embedded local
//! proxy will each be an opt-in feature here.
//!
//! # Usage
//!
//! ```
//! use cutover::{Outcome, Plan, Rollout};
//! # use cutover::{Granularity, RouterCapabilities, TrafficSplit, ProviderError};
//! # #[derive(Debug, Default)] struct MeshRouter(std::sync::Arc<std::sync::RwLock<Option<TrafficSplit>>>);
//! # #[async_trait::async_trait]
//! # impl cutover::TrafficRouter for MeshRouter {
//! #     fn name(&self) -> &str { "mesh" }
//! #     fn capabilities(&self) -> RouterCapabilities { RouterCapabilities::new(Granularity::PERCENT) }
//! #     async fn set_split(&self, s: &TrafficSplit) -> Result<(), ProviderError> { *self.0.write().unwrap() = Some(s.clone()); Ok(()) }
//! #     async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> { Ok(self.0.read().unwrap().clone()) }
//! # }
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let plan = Plan::from_yaml("strategy: { canary: { steps: [ {set_weight: 20}, {pause: {duration: 10m}} ] } }")?;
//! let rollout = Rollout::builder("checkout", plan)
//!     .revisions("v41", "v42")
//!     .router(MeshRouter::default())
//!     .build()?;
//! assert_eq!(rollout.run().await?, Outcome::Promoted);
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! - `test-util`: the `test` module and mockall mocks of every trait (`MockTrafficRouter`, ...).
//! - `istio`: the `istio` module (`cutover-istio`).
//!
//! # MSRV
//!
//! Rust 1.94.
#![forbid(unsafe_code)]

pub use cutover_analysis as analysis;
pub use cutover_core::*;
#[cfg(feature = "istio")]
pub use cutover_istio as istio;
#[cfg(feature = "test-util")]
pub use cutover_test as test;
