//! The errors of the fleet, one enum per concern.

use cutover_core::{BuildError, PlanError, RolloutId, StoreError};
use thiserror::Error;

/// Why the store could not be opened.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The connection string does not parse (it is not repeated here).
    #[error("invalid PostgreSQL connection string")]
    InvalidUrl {
        /// What the parser said.
        #[source]
        source: Detail,
    },
    /// The connection pool could not be built.
    #[error("cannot set up the connection pool for {target}")]
    Pool {
        /// Where the store points (no password).
        target: String,
        /// Why.
        #[source]
        source: Detail,
    },
    /// The database could not be reached.
    #[error("cannot connect to PostgreSQL at {target}")]
    Unreachable {
        /// Where the store points (no password).
        target: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// A step of checking or upgrading the schema failed.
    #[error("cannot {step} in {target}")]
    Schema {
        /// Where the store points.
        target: String,
        /// What was being done.
        step: &'static str,
        /// The server's words.
        #[source]
        source: Detail,
    },
    /// A migration failed; nothing of it was kept.
    #[error(
        "schema migration {version} ({name}) failed in {target}; the schema was left as it was"
    )]
    Migration {
        /// Where the store points.
        target: String,
        /// The migration's version.
        version: i32,
        /// What it does.
        name: &'static str,
        /// The server's words.
        #[source]
        source: Detail,
    },
    /// The schema was written by a newer release.
    #[error(
        "the cutover schema in {target} is at version {found}; this release knows versions up to \
         {known}: upgrade cutover-fleet (it never downgrades a schema)"
    )]
    SchemaTooNew {
        /// Where the store points.
        target: String,
        /// The version found.
        found: i32,
        /// The newest version this release knows.
        known: i32,
    },
}

/// Why a rollout spec was refused. Every variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The text is not valid JSON or YAML.
    #[error("rollout spec is not valid {format}: {message}")]
    Syntax {
        /// `JSON` or `YAML`.
        format: &'static str,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field is missing, unknown, of the wrong type, or out of range (the plan included: an
    /// unknown strategy, weights that do not add up).
    #[error("rollout spec: {path}: {reason}")]
    Invalid {
        /// Where, like `plan.strategy.canary.steps[2].set_weight` or `providers.routers[0]`.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl SpecError {
    pub(crate) fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The path of the field at fault, if there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            SpecError::Invalid { path, .. } => Some(path),
            SpecError::Syntax { .. } => None,
        }
    }

    /// A plan error, with its path under `plan`.
    pub(crate) fn plan(err: &PlanError) -> Self {
        match err {
            PlanError::Invalid { path, reason } => {
                SpecError::invalid(format!("plan.{path}"), reason.clone())
            }
            other => SpecError::invalid("plan", other.to_string()),
        }
    }

    /// A build error of the plan against the providers the spec names.
    pub(crate) fn build(err: &BuildError) -> Self {
        match err {
            BuildError::Plan(plan) => SpecError::plan(plan),
            BuildError::Id(_) | BuildError::MissingRevisions => {
                SpecError::invalid("revisions", err.to_string())
            }
            BuildError::NoRouter { .. } => SpecError::invalid("providers.routers", err.to_string()),
            BuildError::MissingWorkload { .. } => {
                SpecError::invalid("providers.workload", err.to_string())
            }
            BuildError::UnknownMetricSource { .. } => {
                SpecError::invalid("providers.metric_sources", err.to_string())
            }
            BuildError::UnknownAnalysis { .. } => {
                SpecError::invalid("providers.analyses", err.to_string())
            }
            BuildError::RollingWithRouter => {
                SpecError::invalid("providers.routers", err.to_string())
            }
            other => SpecError::invalid("spec", other.to_string()),
        }
    }
}

/// Why a fleet operation (submit, status) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The spec was refused; nothing was submitted.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A rollout with this id was submitted before with a different spec.
    #[error("rollout `{id}` was already submitted with a different spec")]
    AlreadySubmitted {
        /// The rollout.
        id: RolloutId,
    },
    /// The same id appears twice in one submission.
    #[error("rollout `{id}` appears twice in one submission")]
    Duplicate {
        /// The rollout.
        id: RolloutId,
    },
    /// The database failed.
    #[error("fleet store failed")]
    Store(#[from] StoreError),
}

/// Why a worker could not be built or could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Two providers of one kind registered under one name.
    #[error("a {kind} called `{name}` is registered twice")]
    DuplicateProvider {
        /// `router`, `probe`, `workload`, `metric_source` or `analysis`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A setting is out of range.
    #[error("worker setting `{setting}`: {reason}")]
    Setting {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The worker's id is not usable.
    #[error("worker id `{id}`: {reason}")]
    Id {
        /// The id given.
        id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The database failed while registering or deregistering the worker.
    #[error("worker store failed")]
    Store(#[from] StoreError),
}

/// An error and its sources, one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// What a server or parser said about an error, as text: kept apart from the error it came
/// from, so that nothing else that error holds (a connection string) travels on.
#[derive(Debug, Clone)]
pub struct Detail(pub(crate) String);

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Detail {}
