use thiserror::Error;

use crate::{IdError, PlanError, ProviderError, RolloutId, StoreError, Timestamp};

/// Why a rollout could not be built: its plan cannot be carried out with the providers given.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The rollout id or a revision name is invalid.
    #[error(transparent)]
    Id(#[from] IdError),
    /// `.revisions(stable, candidate)` was not called.
    #[error("no revisions: call .revisions(stable, candidate)")]
    MissingRevisions,
    /// The plan is invalid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A traffic strategy without a router.
    #[error("a {strategy} rollout moves traffic and needs at least one router (.router(..))")]
    NoRouter {
        /// The strategy.
        strategy: &'static str,
    },
    /// A rolling update with routers.
    #[error("a rolling update moves replicas, not traffic: remove the routers, or use a canary")]
    RollingWithRouter,
    /// Something in the plan needs a workload.
    #[error("{what} needs a workload (.workload(..))")]
    MissingWorkload {
        /// What needs it.
        what: String,
    },
    /// A router cannot express part of the plan.
    #[error("router `{router}` cannot express {what}: {reason}")]
    Inexpressible {
        /// The router.
        router: String,
        /// The part of the plan, like `strategy.canary.steps[2] (set_weight 12.5%)`.
        what: String,
        /// Why not.
        reason: String,
    },
    /// The plan refers to an analysis that does not exist.
    #[error(
        "{at} refers to analysis `{name}`, which is neither in the plan's analyses nor registered with .analysis(..)"
    )]
    UnknownAnalysis {
        /// Where it is referred to.
        at: String,
        /// The name.
        name: String,
    },
    /// A sequential analysis was asked for outside a rollout
    /// ([`RolloutBuilder::resolve_analysis`](crate::RolloutBuilder::resolve_analysis)).
    #[error(
        "{at}: `{name}` is a sequential analysis, which runs only inside a rollout (its test's state lives in the rollout's record); use a threshold, judge or conditions analysis here"
    )]
    SequentialOutsideRollout {
        /// Where it is referred to.
        at: String,
        /// The name.
        name: String,
    },
    /// An analysis is defined both in the plan and in code.
    #[error("analysis `{name}` is defined both in the plan and with .analysis(..); rename one")]
    AmbiguousAnalysis {
        /// The name.
        name: String,
    },
    /// A plan analysis uses a metric source that is not registered.
    #[error(
        "analysis `{analysis}` reads metric source `{source_name}`, which is not registered with .metric_source(..)"
    )]
    UnknownMetricSource {
        /// The analysis.
        analysis: String,
        /// The source's name.
        source_name: String,
    },
    /// Two providers of one kind share a name (migration ids, gate names) or a single provider
    /// was given twice.
    #[error("{what} `{name}` is given twice")]
    Duplicate {
        /// What kind.
        what: &'static str,
        /// The name.
        name: String,
    },
}

/// Why a rollout could not be carried out. An automatic rollback is not an error: it is
/// [`Outcome::RolledBack`](crate::Outcome::RolledBack).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RolloutError {
    /// A provider call failed for good (a permanent error, or retries spent).
    #[error("{op} on `{provider}` failed; {}", if *.rolled_back {
        "all traffic was returned to stable"
    } else {
        "the rollout stopped where it was and will resume from its saved state when run again"
    })]
    Provider {
        /// The operation, like `set_split`.
        op: String,
        /// The provider's name.
        provider: String,
        /// Whether the rollout was rolled back to stable before returning. If not (the failure
        /// happened during the rollback itself, or past the point of no return), the failed
        /// action is still pending in the saved state and is retried by the next run.
        rolled_back: bool,
        /// The provider's error.
        #[source]
        source: ProviderError,
    },
    /// The rollout failed in an earlier run; its stored state says so.
    #[error("rollout `{id}` failed in an earlier run: {error}")]
    Failed {
        /// The rollout.
        id: RolloutId,
        /// The stored error.
        error: String,
    },
    /// Another engine saved the rollout since this one last did: it now drives the rollout,
    /// and this engine stopped without acting further.
    #[error("rollout `{id}` is now driven by another engine; this one stopped without acting")]
    Superseded {
        /// The rollout.
        id: RolloutId,
    },
    /// The stored rollout was started with a different plan, revisions or providers.
    #[error(
        "rollout `{id}` was started with different {field}; finish or abort it with the original setup, or use a new rollout id"
    )]
    SetupMismatch {
        /// The rollout.
        id: RolloutId,
        /// What differs: `plan`, `revisions`, `migrations`, `gates` or `providers`.
        field: &'static str,
    },
    /// The rollout waits for a command, but it keeps its state in its own private store and no
    /// handle on it is left, so no command can ever arrive.
    #[error(
        "rollout `{id}` is paused ({reason}) and no handle is left to resume it; give it a shared state store, or keep a handle"
    )]
    Paused {
        /// The rollout.
        id: RolloutId,
        /// Why it is paused.
        reason: String,
    },
    /// Another engine owns the rollout: its lease is live. Run again after it expires, or take
    /// the rollout over with [`RolloutBuilder::take_over`](crate::RolloutBuilder::take_over).
    #[error(
        "rollout `{id}` is owned by `{owner}`{}; run again once its lease expires, or take it over by force",
        until.map_or_else(|| " (while its process runs)".to_owned(), |t| format!(" (lease valid until {t})"))
    )]
    Owned {
        /// The rollout.
        id: RolloutId,
        /// The engine that owns it.
        owner: String,
        /// When its lease expires unless renewed.
        until: Option<Timestamp>,
    },
    /// The state store failed; nothing more was done after the last successful save.
    #[error("state store failed")]
    Store(#[source] StoreError),
}
