//! Promote a release through environments: [`Freight`] moves through [stages](Stage) that
//! form a directed acyclic graph (dev -> staging -> several production regions), each stage
//! promoting it with an ordinary cutover rollout on its own providers, then verifying it
//! (analyses written like a plan's, measured after the rollout promoted, and
//! [`Environment::verify`]).
//!
//! - **Freight**: an immutable bundle (revision, configuration version, migrations, commit)
//!   with an id derived from its contents.
//! - **Stages** take freight from their upstreams once it is verified there (all of them for
//!   a fan-in, or one) and has soaked long enough; a stage without upstreams takes every
//!   freight submitted.
//! - **Policy** per stage: automatic, or manual approval sent through the store's command
//!   path (`Command::Approve` of the stage rollout's gate); freeze windows in a time zone;
//!   its own plan or overrides of the pipeline's.
//! - **Failure**: freight that fails a stage's rollout or verification is marked failed there
//!   and never goes downstream; a stage whose freight failed goes back to its previous verified
//!   freight; [`PipelineHandle::rollback`] does the same on a person's word.
//! - **Crash-safe**: the pipeline's state is a document in the
//!   [`StateStore`](cutover_core::StateStore), saved (compare-and-swap) before every
//!   transition; the stages' rollouts resume from the same store.
//!
//! The [`planner`] is pure (state and time in, next moves out); the [`Executor`] carries its
//! moves out.
//!
//! ```
//! use cutover_pipeline::{Freight, Pipeline, PipelineState, planner};
//! use cutover_core::Timestamp;
//! let pipeline = Pipeline::from_yaml(r#"
//! name: shop
//! plan: { strategy: { canary: { steps: [ { set_weight: 50 } ] } } }
//! stages:
//!   - { name: dev, providers: [local] }
//!   - { name: prod, upstreams: [dev], soak: 1h, promotion: manual, providers: [local] }
//! "#)?;
//! let decision = planner::decide(&pipeline, &PipelineState::new(), Timestamp::from_unix_millis(0));
//! assert!(decision.is_settled()); // no freight yet
//! # Ok::<(), cutover_pipeline::SpecError>(())
//! ```
#![forbid(unsafe_code)]

mod calendar;
mod doc;
mod error;
mod executor;
mod freeze;
mod freight;
mod handle;
mod measure;
pub mod planner;
#[cfg(test)]
mod planner_tests;
mod spec;
mod state;
mod verification;

pub use self::calendar::{Day, FreezeWindow, FreezeWindowSpec};
pub use self::doc::DOCUMENT_KIND;
pub use self::error::PipelineError;
pub use self::executor::{
    Environment, Executor, ExecutorBuilder, NO_REVISION, PromotionContext, Verification,
};
pub use self::freight::{Freight, FreightId, SourceCommit};
pub use self::handle::{PendingApproval, PipelineHandle};
pub use self::planner::{Blocked, Decision, Next};
pub use self::spec::{
    Availability, Pipeline, PipelineSpec, PromotionPolicy, SpecError, Stage, StageSpec,
};
pub use self::state::{
    Current, Event, Failure, FreightEntry, HistoryEntry, PIPELINE_FORMAT, PipelineState, Promotion,
    PromotionKind, PromotionStep, RunProgress, StageState, VerificationProgress, Verified,
};
pub use self::verification::{StageVerification, VerificationSpec};
