//! The [`Gate`] trait: pre-flight checks, manual approvals, webhooks.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ProviderError, Revisions, RolloutId};

/// Where in a rollout a gate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateStage {
    /// Before anything happens: before migrations, before any traffic moves. A closed pre-flight
    /// gate ends the rollout with nothing changed.
    PreFlight,
    /// Before the candidate gets all traffic (confirm-promotion). A closed gate rolls back.
    BeforePromotion,
}

/// A gate's answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateVerdict {
    /// Go ahead.
    Open,
    /// Not yet: ask again after the gate's poll interval (an approval not given yet).
    Pending {
        /// What it is waiting for.
        detail: String,
    },
    /// No: stop the rollout.
    Closed {
        /// Why.
        reason: String,
    },
}

impl fmt::Display for GateVerdict {
    /// `open`, `pending: <detail>` or `closed: <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateVerdict::Open => f.write_str("open"),
            GateVerdict::Pending { detail } => write!(f, "pending: {detail}"),
            GateVerdict::Closed { reason } => write!(f, "closed: {reason}"),
        }
    }
}

/// What a gate is told.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GateContext {
    /// The rollout.
    pub rollout: RolloutId,
    /// Its revisions.
    pub revisions: Revisions,
    /// Where the gate is being checked.
    pub stage: GateStage,
}

impl GateContext {
    /// A context.
    pub fn new(rollout: RolloutId, revisions: Revisions, stage: GateStage) -> Self {
        GateContext {
            rollout,
            revisions,
            stage,
        }
    }
}

/// A named check the rollout must pass at a [`GateStage`]: "change ticket approved", "database
/// backup younger than an hour", "error budget left", a confirm-promotion webhook.
///
/// Every answer is kept in the rollout's decision record. An error from `check` (after the
/// engine's retries) counts as `Closed`: a gate that cannot be asked does not let a rollout
/// through.
#[cfg_attr(feature = "test-util", mockall::automock)]
#[async_trait]
pub trait Gate: Send + Sync + fmt::Debug {
    /// The check's name, unique within the rollout.
    fn name(&self) -> &str;

    /// How long to wait before asking again after `Pending`. Defaults to 10 s.
    fn poll_interval(&self) -> Duration {
        Duration::from_secs(10)
    }

    /// How long the gate may stay `Pending` before it counts as closed. Defaults to no limit
    /// (a manual approval may take a day).
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// Asks the gate.
    async fn check(&self, ctx: &GateContext) -> Result<GateVerdict, ProviderError>;
}

#[async_trait]
impl<T: Gate + ?Sized> Gate for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn poll_interval(&self) -> Duration {
        (**self).poll_interval()
    }
    fn timeout(&self) -> Option<Duration> {
        (**self).timeout()
    }
    async fn check(&self, ctx: &GateContext) -> Result<GateVerdict, ProviderError> {
        (**self).check(ctx).await
    }
}
