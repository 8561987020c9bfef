//! Progressive delivery as a library: canary, blue-green, rolling and A/B rollouts with
//! analysis, automatic rollback, crash-safe state and a record of every decision.
//!
//! Your tool builds a [`Rollout`] from a [`Plan`] and a few providers, calls
//! [`run`](Rollout::run), and gets back an [`Outcome`]: promoted, rolled back (with the reason
//! and the numbers), aborted, or an A/B result. This page is a tour; the guides in the
//! repository's [`docs/`](https://github.com/cutover-rs/cutover/tree/main/docs) go further.
//!
//! # Where to start
//!
//! 1. Run the main example, a real canary over HTTP on your machine with nothing to install:
//!    `cargo run --example canary` (and `-- --bad` for the rollback). Every example is one file
//!    that compiles alone in a project of your own; its header lists the dependencies.
//! 2. Read [getting started]: a rollout with a router and a metric source of your own, state
//!    on disk, and tests on fakes.
//! 3. Pick a strategy ([`Canary`], [`BlueGreen`], [`Rolling`], [`AbTest`]) and an analysis
//!    ([`AnalysisTemplate`]: thresholds, Argo conditions, the Kayenta judge, sequential tests);
//!    each has a guide.
//!
//! # A rollout
//!
//! A plan, a router, a metric source, and the outcome. Here on the test kit's fakes and
//! tokio's paused clock, so the ten minutes of analysis take no time; swap in a provider
//! module below, or your own implementations of the traits.
//!
//! ```
//! use cutover::test::{FakeRouter, ScriptedMetricSource};
//! use cutover::{Outcome, Plan, Rollout, Samples};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let plan = Plan::from_yaml(r"
//! strategy:
//!   canary:
//!     steps:
//!       - set_weight: 10
//!       - analysis: { name: errors, count: 5, interval: 1m }
//!       - set_weight: 50
//!       - analysis: { name: errors, count: 5, interval: 1m }
//! analyses:
//!   errors:
//!     threshold:
//!       metrics:
//!         - { name: error-rate, source: prom, query: errors, max: 0.01, min_samples: 100 }
//! ")?;
//! let metrics = ScriptedMetricSource::new("prom");
//! metrics.set("errors", &"v42".parse()?, Samples::Counts { events: 3, total: 1_000 });
//! let router = FakeRouter::new("mesh");
//!
//! let rollout = Rollout::builder("checkout", plan)
//!     .revisions("v41", "v42")
//!     .router(router.clone())           // any TrafficRouter
//!     .metric_source("prom", metrics)   // any MetricSource, under the name the plan uses
//!     .build()?;                        // checks the plan against the providers
//! assert_eq!(rollout.run().await?, Outcome::Promoted);
//! assert!(router.current().is_some_and(|split| split.is_all_to(&"v42".parse().unwrap())));
//! # Ok(()) }
//! ```
//!
//! # The traits
//!
//! A rollout touches the world only through these; every provider module implements some of
//! them, and so can you. They are `async`, take `&self`, and must be idempotent: the engine
//! repeats a call after a transient error and after a restart.
//!
//! | trait | what it does |
//! |---|---|
//! | [`TrafficRouter`] | splits traffic between revisions (weights in basis points; header and cookie routes, mirroring, sticky sessions where declared in [`RouterCapabilities`]) |
//! | [`MetricSource`] | answers a [`MetricQuery`] per revision with [`Samples`]: values or counts; no data is empty, never zero |
//! | [`HealthProbe`] | says whether a revision is ready |
//! | [`Workload`] | scales revisions and reports their replicas (rolling updates, blue-green environments) |
//! | [`MigrationStep`] | expand / contract schema changes tied to the rollout |
//! | [`Gate`] | pre-flight checks and approvals ([`GateStage`]) |
//! | [`Analysis`] | a verdict written in Rust, when no [`AnalysisTemplate`] fits |
//! | [`StateStore`] | keeps the state so a rollout survives its process ([`MemoryStateStore`], [`FileStateStore`]) |
//!
//! Errors a provider returns are [`ProviderError`]s of a kind (transient, throttled,
//! permanent, unsupported): only the engine retries, following the plan's [`RetryPolicy`].
//! `cutover::test::router_contract` (feature `test-util`) checks a router against the rules
//! every built-in router passes.
//!
//! # While it runs, and after
//!
//! - [`Rollout::subscribe`] streams [`RolloutEvent`]s: every [`DecisionRecord`] (inputs,
//!   decision, a one-line summary), split changes, retries.
//! - [`Rollout::handle`] gives a [`RolloutHandle`]: pause, resume, promote, promote-full,
//!   abort, approve, and the decision records, which serialize to JSON. The handle talks to
//!   the rollout's [`StateStore`], so [`RolloutHandle::new`] on the same store steers a
//!   rollout that runs in another process.
//! - The library never installs a `tracing` subscriber; its spans are `rollout` > `step` >
//!   `provider`.
//!
//! # Features
//!
//! Every provider is an opt-in feature; with none, you get the engine, the plans, the
//! analyses and the traits.
//!
//! | feature | module | what |
//! |---|---|---|
//! | (always) | [`analysis`] | the statistics: Mann-Whitney, the Kayenta judge, Argo tallies, A/B tests, sequential tests (`cutover-analysis`) |
//! | `local` | `local` | embedded HTTP proxy router, proxy metrics, HTTP probe, demo service, load generator (`cutover-local`) |
//! | `kubernetes` | `kubernetes` | Deployment workload, rolling update, Service-selector / HTTPRoute / replica-ratio routers, pod probe, ConfigMap store, Lease; re-exports `kube`, `k8s_openapi`, `gateway_api` (`cutover-kubernetes`) |
//! | `istio` | `istio` | VirtualService router, DestinationRule subsets (`cutover-istio`) |
//! | `aws-alb` | `aws_alb` | ALB forward-action router, target-health probe, target-group workload (`cutover-aws-alb`) |
//! | `prometheus` | `prometheus` | Prometheus metric source with escaped PromQL templates for the local proxy, Istio and NGINX ingress (`cutover-prometheus`) |
//! | `postgres` | `postgres` | expand/contract migrations on PostgreSQL; re-exports `tokio_postgres` (`cutover-postgres`) |
//! | `fleet` | `fleet` | a PostgreSQL state store, rollouts as data, worker processes with fenced leases (`cutover-fleet`) |
//! | `dashboard` | `dashboard` | the HTML report of a rollout with charts, the live web dashboard with controls (`cutover-dashboard`) |
//! | `openfeature` | `openfeature` | in-process feature flags: an OpenFeature provider with sticky bucketing, a flag router, metrics per variant (`cutover-openfeature`) |
//! | `unleash` | `unleash` | Unleash flag router over a flag's gradual rollout percentage or variants, through the admin API (`cutover-unleash`) |
//! | `pipeline` | `pipeline` | releases promoted through environments: freight, stages as a DAG, soak, approvals, freeze windows, rollback to the previous verified freight (`cutover-pipeline`) |
//! | `notify` | `notify` | webhook, Slack and CloudEvents/CDEvents notifications, Prometheus rollout metrics, DORA figures (`cutover-notify`) |
//! | `metrics` | `notify` | only the rollout metrics (`RolloutMetrics`, Prometheus/OpenMetrics text) and DORA figures of `cutover-notify`, without its HTTP sinks (no reqwest or rustls) |
//! | `preflight` | `preflight` | built-in checks for pre-flight [`Checklist`]s (HTTP, TCP, TLS, disk, env, freeze windows, business hours, signed webhooks, approvals, Prometheus, PostgreSQL; Kubernetes and AWS ALB with `kubernetes` / `aws-alb`) and the 28-item template (`cutover-preflight`) |
//! | `test-util` | `test` | fakes of every provider with error injection, scripted metrics, a crashing store, the router contract suite (`cutover-test`); with `aws-alb`, `aws_alb::moto`; with `prometheus`, `prometheus::testing` |
//! | `mocks` | | mockall mocks of every trait (`MockTrafficRouter`, ...), for tests of error paths |
//!
//! # The guides
//!
//! In the repository, and compiled as doctests of this crate so that they cannot drift:
//! [getting started], the strategies ([canary], [blue-green], [rolling], [A/B testing]), one
//! page per provider ([providers]), [which analysis to choose][analysis guide],
//! [operations] (state stores, control from outside the process, crash recovery, security),
//! [benchmarks] and [migrating from Argo Rollouts or Flagger][migrating].
//!
//! [getting started]: https://github.com/cutover-rs/cutover/blob/main/docs/getting-started.md
//! [canary]: https://github.com/cutover-rs/cutover/blob/main/docs/strategies/canary.md
//! [blue-green]: https://github.com/cutover-rs/cutover/blob/main/docs/strategies/blue-green.md
//! [rolling]: https://github.com/cutover-rs/cutover/blob/main/docs/strategies/rolling.md
//! [A/B testing]: https://github.com/cutover-rs/cutover/blob/main/docs/strategies/ab-testing.md
//! [providers]: https://github.com/cutover-rs/cutover/tree/main/docs/providers
//! [analysis guide]: https://github.com/cutover-rs/cutover/blob/main/docs/analysis.md
//! [operations]: https://github.com/cutover-rs/cutover/blob/main/docs/operations.md
//! [benchmarks]: https://github.com/cutover-rs/cutover/blob/main/docs/benchmarks.md
//! [migrating]: https://github.com/cutover-rs/cutover/blob/main/docs/migrating.md
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
#[cfg(any(feature = "notify", feature = "metrics"))]
pub use cutover_notify as notify;
#[cfg(feature = "openfeature")]
pub use cutover_openfeature as openfeature;
#[cfg(feature = "pipeline")]
pub use cutover_pipeline as pipeline;
#[cfg(feature = "postgres")]
pub use cutover_postgres as postgres;
#[cfg(feature = "preflight")]
pub use cutover_preflight as preflight;
#[cfg(feature = "prometheus")]
pub use cutover_prometheus as prometheus;
#[cfg(feature = "test-util")]
pub use cutover_test as test;
#[cfg(feature = "unleash")]
pub use cutover_unleash as unleash;

#[cfg(feature = "aws-alb")]
pub use cutover_aws_alb as aws_alb;

/// The README and the guides under `docs/`, compiled and run as doctests so that their
/// snippets cannot drift from the code.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../../../README.md")]
    mod readme {}
    #[doc = include_str!("../../../docs/getting-started.md")]
    mod getting_started {}
    #[doc = include_str!("../../../docs/strategies/canary.md")]
    mod canary {}
    #[doc = include_str!("../../../docs/strategies/blue-green.md")]
    mod blue_green {}
    #[doc = include_str!("../../../docs/strategies/rolling.md")]
    mod rolling {}
    #[doc = include_str!("../../../docs/strategies/ab-testing.md")]
    mod ab_testing {}
    #[doc = include_str!("../../../docs/providers/local.md")]
    mod local {}
    #[doc = include_str!("../../../docs/providers/kubernetes.md")]
    mod kubernetes {}
    #[doc = include_str!("../../../docs/providers/istio.md")]
    mod istio {}
    #[doc = include_str!("../../../docs/providers/aws-alb.md")]
    mod aws_alb {}
    #[doc = include_str!("../../../docs/providers/prometheus.md")]
    mod prometheus {}
    #[doc = include_str!("../../../docs/providers/postgres.md")]
    mod postgres {}
    #[doc = include_str!("../../../docs/analysis.md")]
    mod analysis {}
    #[doc = include_str!("../../../docs/operations.md")]
    mod operations {}
    #[doc = include_str!("../../../docs/benchmarks.md")]
    mod benchmarks {}
    #[doc = include_str!("../../../docs/migrating.md")]
    mod migrating {}
    #[doc = include_str!("../../../CONTRIBUTING.md")]
    mod contributing {}
    #[doc = include_str!("../../../docs/operations/fleet.md")]
    mod fleet {}
    #[doc = include_str!("../../../docs/cli.md")]
    mod cli {}
    #[doc = include_str!("../../../docs/operator.md")]
    mod operator {}
    #[doc = include_str!("../../../docs/pipelines.md")]
    mod pipelines {}
    #[doc = include_str!("../../../docs/preflight.md")]
    mod preflight {}
    #[doc = include_str!("../../../docs/guards.md")]
    mod guards {}
    #[doc = include_str!("../../../docs/notifications.md")]
    mod notifications {}
    #[doc = include_str!("../../../docs/dashboard.md")]
    mod dashboard {}
    #[doc = include_str!("../../../docs/providers/openfeature.md")]
    mod openfeature {}
    #[doc = include_str!("../../../docs/providers/unleash.md")]
    mod unleash {}
}
