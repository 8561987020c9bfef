//! The core of cutover: progressive delivery as a library.
//!
//! # Overview
//!
//! A [`Rollout`] moves a service from its stable revision to a candidate following a [`Plan`]
//! (canary, blue-green, rolling update or A/B test), through providers you compose:
//!
//! | trait | what it does |
//! |---|---|
//! | [`TrafficRouter`] | splits traffic between revisions (mesh, load balancer, proxy) |
//! | [`HealthProbe`] | says whether a revision is ready |
//! | [`MetricSource`] | answers metric queries per revision |
//! | [`Analysis`] | turns measurements into `Pass`, `Fail` or `Inconclusive` |
//! | [`Workload`] | scales revisions and reports replicas |
//! | [`MigrationStep`] | expand / contract schema changes tied to the rollout |
//! | [`Gate`] | pre-flight checks and approvals |
//! | [`StateStore`] | keeps the rollout's state so it survives restarts |
//!
//! The [`planner`] decides, purely, what to do next from the state and the time; the engine
//! carries each decision out through the providers, saving the state before every effect. A
//! rollout killed at any point resumes from its store and ends in the same place. Every
//! decision is kept as a [`DecisionRecord`]. Time comes from tokio, so tests on paused time
//! run a 30-minute canary in milliseconds.
//!
//! # Usage
//!
//! ```
//! use cutover_core::{Outcome, Plan, Rollout};
//! # use cutover_core::{Granularity, RouterCapabilities, TrafficSplit, ProviderError};
//! # #[derive(Debug, Default)] struct MyRouter(parking_lot::Mutex<Option<TrafficSplit>>);
//! # #[async_trait::async_trait]
//! # impl cutover_core::TrafficRouter for MyRouter {
//! #     fn name(&self) -> &str { "mine" }
//! #     fn capabilities(&self) -> RouterCapabilities { RouterCapabilities::new(Granularity::PERCENT) }
//! #     async fn set_split(&self, s: &TrafficSplit) -> Result<(), ProviderError> { *self.0.lock() = Some(s.clone()); Ok(()) }
//! #     async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> { Ok(self.0.lock().clone()) }
//! # }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let plan = Plan::from_yaml(r"
//! strategy:
//!   canary:
//!     steps:
//!       - set_weight: 10
//!       - pause: { duration: 5m }
//!       - set_weight: 50
//!       - pause: { duration: 5m }
//! ")?;
//! let rollout = Rollout::builder("checkout", plan)
//!     .revisions("v1", "v2")
//!     .router(MyRouter::default())
//!     .build()?;
//! assert_eq!(rollout.run().await?, Outcome::Promoted);
//! # Ok(()) }
//! ```
//!
//! # Sequential analysis
//!
//! A `sequential` analysis template ([`SequentialTemplate`]) judges the candidate with an
//! anytime-valid test that may look after every measurement without inflating false
//! rollbacks: `counts` (error rates), `distribution` (latencies, tail-only regressions
//! included) or `mean` (mSPRT). Each measurement feeds the test the data since the previous
//! one. The step fails at the first rejection, passes only once its time (`count` ×
//! `interval`) is up *and* the confidence sequence rules out a degradation above
//! `tolerance`, and otherwise goes on up to `max_count` measurements before its
//! `on_inconclusive` action. Every measurement records its p-value, e-value, estimate,
//! bounds and sample sizes, and the test's state is saved with the rollout.
//!
//! ```
//! # use cutover_core::{AnalysisTemplate, Plan, SequentialKind};
//! let plan = Plan::from_yaml(r"
//! strategy:
//!   canary:
//!     steps:
//!       - set_weight: 20
//!       - analysis: { name: errors, interval: 10s, count: 30, max_count: 60, on_inconclusive: abort }
//! analyses:
//!   errors:
//!     sequential: { test: counts, source: prom, query: http_5xx, alpha: 0.05, tolerance: 1.2 }
//! ")?;
//! let AnalysisTemplate::Sequential(t) = &plan.analyses["errors"] else { unreachable!() };
//! assert_eq!(t.test, SequentialKind::Counts);
//! # Ok::<(), cutover_core::PlanError>(())
//! ```
//!
//! # Feature flags
//!
//! - `test-util`: mockall mocks of every trait (`MockTrafficRouter`, ...).
#![forbid(unsafe_code)]

mod action;
pub mod analysis;
pub mod checklist;
mod command;
mod describe;
mod engine;
mod error;
mod gate;
pub mod guard;
mod id;
mod metric;
mod migration;
mod plan;
pub mod planner;
mod probe;
mod record;
mod retry;
mod route;
mod router;
mod setup;
mod split;
pub mod state;
mod status;
pub mod store;
mod time;
mod workload;

pub use cutover_analysis::{Alternative, Measurement, RunLimits, RunStatus, Tally, Verdict};

pub use self::analysis::{Analysis, AnalysisContext, AnalysisResult, Comparison, MetricResult};
pub use self::checklist::Checklist;
pub use self::command::{Command, CommandEffect, CommandError, CommandRequest, QueuedCommand};
pub use self::engine::{
    BuildError, DEFAULT_EVENT_CAPACITY, DEFAULT_LEASE_TTL, Rollout, RolloutBuilder, RolloutError,
    RolloutEvent, RolloutHandle,
};
pub use self::error::{BoxError, ErrorKind, ProviderError};
pub use self::gate::{
    Approval, ApprovalGate, Gate, GateAnswer, GateContext, GateStage, GateVerdict,
};
pub use self::id::{IdError, RevisionId, Revisions, RolloutId};
pub use self::metric::{MetricQuery, MetricSource, Samples};
pub use self::migration::{MigrationContext, MigrationPhase, MigrationStep};
pub use self::plan::{
    AbTest, AfterExtensions, Aggregate, AnalysisRun, AnalysisTemplate, AutoPromotion,
    BackgroundAnalysis, BlueGreen, Canary, CanaryStep, ConditionMetric, ConditionsTemplate,
    JudgeQuery, JudgeTemplate, OnInconclusive, Pause, Plan, PlanError, ProportionsTemplate,
    Quantity, Rolling, Scale, SequentialKind, SequentialTemplate, Strategy, Target,
    ThresholdMetric, ThresholdTemplate,
};
pub use self::probe::{Health, HealthProbe};
pub use self::record::{DecisionRecord, Entry, Inputs, StepRef, Takeover};
pub use self::retry::RetryPolicy;
pub use self::route::{HeaderRoute, Mirror, RouteError, RouteMatch, StickySession, StringMatch};
pub use self::router::{RouterCapabilities, TrafficRouter};
pub use self::split::{Granularity, SplitError, TOTAL_BASIS_POINTS, TrafficSplit, Weight};
pub use self::state::{Outcome, RolloutState, STATE_FORMAT, StopReason};
pub use self::store::{
    Acquired, Claim, Document, FileStateStore, Lease, ListFilter, MemoryStateStore, StateStore,
    StoreError, Stored, Summary, Watch,
};
pub use self::time::{Clock, Timestamp, TokioClock};
pub use self::workload::{ReplicaStatus, Workload};

#[cfg(feature = "test-util")]
pub use self::{
    analysis::MockAnalysis, gate::MockGate, metric::MockMetricSource, migration::MockMigrationStep,
    probe::MockHealthProbe, router::MockTrafficRouter, store::MockStateStore,
    workload::MockWorkload,
};
