//! Guards: what keeps watching after a rollout.
//!
//! - **Failover** ([`failover`], [`FailoverGuard`]): targets (regions, zones, clusters) behind
//!   one or more routers, probed on an interval. A failing target is drained and its weight
//!   spread over the healthy ones within their capacity, then restored step by step; flapping
//!   is damped. The decisions are a pure planner, like the strategies'; the executor carries
//!   them out through [`TrafficRouter`](crate::TrafficRouter)s.
//! - **Drift**: the guard reads every router back on an interval and compares with the split
//!   it set; a difference is recorded and repaired, or only reported. [`RolloutDriftWatch`]
//!   reports drift of a rollout in progress the same way, and keeps its records in a document
//!   of the rollout ([`ROLLOUT_DRIFT_KIND`]).
//! - **Bake** ([`bake`]): after a promotion, analyses are watched for a bake period; a failure
//!   sends traffic back to the previous revision while it exists, or raises an alert.
//!
//! A guard keeps its state in one store document of kind [`GUARD_KIND`] (its policy, state,
//! inbox and its last [`LOG_KEEP`] records for display), saved with compare-and-swap before
//! every router call, so a restarted guard resumes where it was. Every record also goes to the
//! store's decision log under [`log_id`] (`guard.<id>`), none lost or written twice across a
//! restart. [`GuardHandle`] reads and steers it from any process that reaches the store.

pub mod bake;
mod document;
pub mod failover;
mod rollout_drift;
mod run;

pub use self::bake::{BAKE_KIND, Bake, BakeDocument, BakeOutcome};
pub use self::document::{
    BakeEvent, DriftSeen, GUARD_KIND, GuardCommand, GuardDocument, GuardEntry, GuardError,
    GuardHandle, GuardRecord, LOG_KEEP, log_id,
};
pub use self::failover::{
    Allocation, Check, FailoverCommand, FailoverEvent, FailoverPolicy, FailoverState, Mode,
    PolicyError, Target, TargetState,
};
pub use self::rollout_drift::{
    DRIFT_KEEP, ROLLOUT_DRIFT_KIND, RolloutDriftDocument, RolloutDriftWatch,
};
pub use self::run::{DriftAction, FailoverGuard, FailoverGuardBuilder, RunningGuard};
