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
//! | `aws_alb`: AWS ALB router (forward-action weights), target-health probe, target-group workload | `cutover-aws-alb` | `aws-alb` |
//! | `postgres`: expand/contract schema migrations on PostgreSQL | `cutover-postgres` | `postgres` |
//! | `kubernetes`: Deployments, Service-selector / HTTPRoute / replica-ratio routers, pod probe, ConfigMap store, Lease | `cutover-kubernetes` | `kubernetes` |
//! | `local`: embedded HTTP proxy router, HTTP probe, proxy metrics, demo service, load generator | `cutover-local` | `local` |
//! | `istio`: VirtualService router, DestinationRule subsets | `cutover-istio` | `istio` |
//! | `fleet`: PostgreSQL state store, rollouts as data, workers with fenced leases | `cutover-fleet` | `fleet` |
//! | `prometheus`: Prometheus metric source, PromQL templates (cutover-local proxy, Istio, NGINX ingress) with escaped arguments | `cutover-prometheus` | `prometheus` |
//! | `dashboard`: HTML report of a rollout with charts, live web dashboard with controls | `cutover-dashboard` | `dashboard` |
//! | `openfeature`: in-process flags with an OpenFeature provider, sticky bucketing, flag router, metrics per variant | `cutover-openfeature` | `openfeature` |
//! | `unleash`: Unleash flag router (gradual rollout percentage or variants, admin API) | `cutover-unleash` | `unleash` |
//!
//! Each provider is an opt-in feature.
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
//! - `aws-alb`: the `aws_alb` module (`cutover-aws-alb`).
//! - `postgres`: the `postgres` module, zero-downtime schema migrations as migration steps.
//! - `kubernetes`: the `kubernetes` module (it re-exports the `kube`, `k8s_openapi` and
//!   `gateway_api` versions it is built on).
//! - `local`: the `local` module, the embedded proxy router (`cutover-local`).
//! - `istio`: the `istio` module (`cutover-istio`).
//! - `fleet`: the `fleet` module, many worker processes sharing rollouts through PostgreSQL
//!   (`cutover-fleet`).
//! - `prometheus`: the `prometheus` module, the Prometheus metric source (`cutover-prometheus`).
//! - `dashboard`: the `dashboard` module, the HTML report and the live dashboard
//!   (`cutover-dashboard`).
//! - `openfeature`: the `openfeature` module, feature-flag rollouts in process
//!   (`cutover-openfeature`).
//! - `unleash`: the `unleash` module, feature-flag rollouts on an Unleash server
//!   (`cutover-unleash`).
//!
//! # MSRV
//!
//! Rust 1.94.
#![forbid(unsafe_code)]

pub use cutover_analysis as analysis;
pub use cutover_core::*;
#[cfg(feature = "dashboard")]
pub use cutover_dashboard as dashboard;
#[cfg(feature = "fleet")]
pub use cutover_fleet as fleet;
#[cfg(feature = "istio")]
pub use cutover_istio as istio;
#[cfg(feature = "kubernetes")]
pub use cutover_kubernetes as kubernetes;
#[cfg(feature = "local")]
pub use cutover_local as local;
#[cfg(feature = "openfeature")]
pub use cutover_openfeature as openfeature;
#[cfg(feature = "postgres")]
pub use cutover_postgres as postgres;
#[cfg(feature = "prometheus")]
pub use cutover_prometheus as prometheus;
#[cfg(feature = "test-util")]
pub use cutover_test as test;
#[cfg(feature = "unleash")]
pub use cutover_unleash as unleash;

#[cfg(feature = "aws-alb")]
pub use cutover_aws_alb as aws_alb;
