//! The [`MigrationStep`] trait: schema changes tied to the rollout (expand / contract).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ProviderError, Revisions, RolloutId};

/// When a migration step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// Before the candidate takes any traffic; keeps the stable version working. Reverted in
    /// reverse order when the rollout is rolled back, if reversible.
    Expand,
    /// After promotion and the bake time, once no instance of the old version runs. The point
    /// of no return: after the first contract step starts, the rollout cannot be rolled back.
    Contract,
}

/// What a migration step is told about the rollout it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationContext {
    /// The rollout.
    pub rollout: RolloutId,
    /// Its revisions.
    pub revisions: Revisions,
    /// Whether the rollout is promoted past its point of no return: all traffic is on the
    /// candidate and the old revision is retired or contract migrations have started, so no
    /// instance of the stable version reads the old schema any more. The engine sets it; a
    /// contract step may refuse to run while it is `false`. [`new`](Self::new) starts at
    /// `false`, the safe side.
    pub promoted: bool,
}

impl MigrationContext {
    /// A context, not promoted.
    pub fn new(rollout: RolloutId, revisions: Revisions) -> Self {
        MigrationContext {
            rollout,
            revisions,
            promoted: false,
        }
    }

    /// Sets whether the rollout is promoted past its point of no return.
    pub fn with_promoted(mut self, promoted: bool) -> Self {
        self.promoted = promoted;
        self
    }
}

/// One schema change of a rollout.
///
/// `apply` and `revert` must be idempotent: the engine repeats them after transient errors and
/// after a restart. `revert` must also undo a step whose `apply` failed part-way: when an expand
/// step fails for good, the rollback reverts it along with the steps before it. Where it can, a step reports through [`is_applied`](MigrationStep::is_applied)
/// whether it already ran, so a rollout resumed after a crash neither applies it twice nor
/// skips it.
#[cfg_attr(feature = "test-util", mockall::automock)]
#[async_trait]
pub trait MigrationStep: Send + Sync + fmt::Debug {
    /// A stable id, unique within the rollout (`add-orders-status`).
    fn id(&self) -> &str;

    /// When the step runs. Defaults to [`MigrationPhase::Expand`].
    fn phase(&self) -> MigrationPhase {
        MigrationPhase::Expand
    }

    /// Whether [`revert`](MigrationStep::revert) undoes the step. Defaults to `false`.
    fn reversible(&self) -> bool {
        false
    }

    /// Applies the step.
    async fn apply(&self, ctx: &MigrationContext) -> Result<(), ProviderError>;

    /// Undoes the step. The default reports [`ErrorKind::Unsupported`](crate::ErrorKind).
    async fn revert(&self, ctx: &MigrationContext) -> Result<(), ProviderError> {
        let _ = ctx;
        Err(ProviderError::unsupported(format!(
            "reverting migration `{}`",
            self.id()
        )))
    }

    /// Whether the step is applied now: `Some(true)`, `Some(false)`, or `None` when it cannot
    /// tell (the default; the engine then relies on `apply` and `revert` being idempotent).
    async fn is_applied(&self, ctx: &MigrationContext) -> Result<Option<bool>, ProviderError> {
        let _ = ctx;
        Ok(None)
    }
}

#[async_trait]
impl<T: MigrationStep + ?Sized> MigrationStep for Arc<T> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn phase(&self) -> MigrationPhase {
        (**self).phase()
    }
    fn reversible(&self) -> bool {
        (**self).reversible()
    }
    async fn apply(&self, ctx: &MigrationContext) -> Result<(), ProviderError> {
        (**self).apply(ctx).await
    }
    async fn revert(&self, ctx: &MigrationContext) -> Result<(), ProviderError> {
        (**self).revert(ctx).await
    }
    async fn is_applied(&self, ctx: &MigrationContext) -> Result<Option<bool>, ProviderError> {
        (**self).is_applied(ctx).await
    }
}
