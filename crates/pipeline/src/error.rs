//! [`PipelineError`]: why the executor or a handle could not do something.

use cutover_core::{BuildError, RolloutError, RolloutId, StoreError};
use thiserror::Error;

/// Why a pipeline call failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A stage names an environment the executor was not given.
    #[error("{path}: no environment `{name}` was registered with the executor")]
    UnknownEnvironment {
        /// Where in the pipeline file, like `stages[1].providers[0]`.
        path: String,
        /// The name.
        name: String,
    },
    /// The executor has no state store.
    #[error("the pipeline executor needs a state store")]
    NoStore,
    /// The store failed.
    #[error("state store failed on pipeline `{id}`")]
    Store {
        /// The pipeline.
        id: RolloutId,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The stored document cannot be read.
    #[error("stored document of pipeline `{id}` cannot be read")]
    Corrupt {
        /// The pipeline.
        id: RolloutId,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The stored document is in a format this release does not read.
    #[error(
        "stored document of pipeline `{id}` has format {found}; this release reads format {expected}"
    )]
    Format {
        /// The pipeline.
        id: RolloutId,
        /// Found.
        found: u32,
        /// Read by this release.
        expected: u32,
    },
    /// Others kept saving the document in between: gave up after several tries.
    #[error("pipeline `{id}` was saved by someone else {tries} times in a row; gave up")]
    Contended {
        /// The pipeline.
        id: RolloutId,
        /// How many times.
        tries: u32,
    },
    /// A stage's rollout could not be built (its environments do not fit its plan).
    #[error("stage `{stage}`: its rollout cannot be built")]
    Build {
        /// The stage.
        stage: String,
        /// Why.
        #[source]
        source: BuildError,
    },
    /// A stage's rollout stopped without an outcome (its store failed, another engine took it).
    #[error("stage `{stage}`: rollout `{rollout}` stopped")]
    Rollout {
        /// The stage.
        stage: String,
        /// The rollout.
        rollout: RolloutId,
        /// Why.
        #[source]
        source: Box<RolloutError>,
    },
    /// No stage has this name.
    #[error("pipeline `{id}` has no stage `{stage}`")]
    UnknownStage {
        /// The pipeline.
        id: RolloutId,
        /// The name.
        stage: String,
    },
    /// The stage is not waiting for an approval.
    #[error("stage `{stage}` is not waiting for an approval{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    NotAwaitingApproval {
        /// The stage.
        stage: String,
        /// What it is doing instead.
        detail: Option<String>,
    },
    /// A rollback was asked of a stage that cannot take one now.
    #[error("stage `{stage}` cannot roll back: {reason}")]
    CannotRollBack {
        /// The stage.
        stage: String,
        /// Why.
        reason: String,
    },
    /// The freight is not valid (its revision is not a valid revision name).
    #[error("freight `{name}`: {reason}")]
    InvalidFreight {
        /// Its name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A task of the executor ended abnormally.
    #[error("a promotion task of pipeline `{id}` ended abnormally: {detail}")]
    Task {
        /// The pipeline.
        id: RolloutId,
        /// What happened.
        detail: String,
    },
}
