//! The [`Gate`] trait: pre-flight checks, manual approvals, webhooks.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::checklist::ChecklistRecord;
use crate::{ProviderError, Revisions, RolloutId, Timestamp};

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

/// A gate's answer with what it saw, for the decision record: see [`Gate::answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GateAnswer {
    /// The verdict.
    pub verdict: GateVerdict,
    /// The checklist run behind it, when the gate is a [`Checklist`](crate::Checklist): every
    /// check's result, the exemptions used and the fixes run.
    pub checklist: Option<ChecklistRecord>,
}

impl GateAnswer {
    /// A verdict with the checklist run behind it.
    pub fn with_checklist(verdict: GateVerdict, checklist: ChecklistRecord) -> Self {
        GateAnswer {
            verdict,
            checklist: Some(checklist),
        }
    }
}

impl From<GateVerdict> for GateAnswer {
    fn from(verdict: GateVerdict) -> Self {
        GateAnswer {
            verdict,
            checklist: None,
        }
    }
}

/// A person's answer to a gate, sent as a [`Command::Approve`](crate::Command::Approve) or
/// [`Command::Reject`](crate::Command::Reject) through the rollout's store and kept in its state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Approval {
    /// Approved, or rejected.
    pub approved: bool,
    /// Who answered.
    pub by: String,
    /// Why (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// When the engine applied it.
    pub at: Timestamp,
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
    /// The approvals and rejections people sent to this rollout's gates, by gate name (the
    /// latest answer per gate).
    pub approvals: BTreeMap<String, Approval>,
}

impl GateContext {
    /// A context with no approvals.
    pub fn new(rollout: RolloutId, revisions: Revisions, stage: GateStage) -> Self {
        GateContext {
            rollout,
            revisions,
            stage,
            approvals: BTreeMap::new(),
        }
    }

    /// The same context with these approvals.
    pub fn with_approvals(mut self, approvals: BTreeMap<String, Approval>) -> Self {
        self.approvals = approvals;
        self
    }
}

/// A gate that waits for a person: open once someone sends
/// [`Command::Approve`](crate::Command::Approve) naming it (`cutover approve ROLLOUT GATE`, or
/// [`RolloutHandle::approve`](crate::RolloutHandle::approve) from any process that reaches the
/// store), closed if someone sends [`Command::Reject`](crate::Command::Reject). Who answered
/// and why are in the decision record.
///
/// ```
/// use std::time::Duration;
/// use cutover_core::ApprovalGate;
/// let gate = ApprovalGate::new("change-board").timeout(Duration::from_secs(24 * 3600));
/// # let _ = gate;
/// ```
#[derive(Debug, Clone)]
pub struct ApprovalGate {
    name: String,
    timeout: Option<Duration>,
    poll_interval: Duration,
}

impl ApprovalGate {
    /// A gate called `name`, waiting without limit. It is asked again as soon as someone
    /// answers, and otherwise every 5 minutes (each time a "pending" line in the record).
    pub fn new(name: impl Into<String>) -> Self {
        ApprovalGate {
            name: name.into(),
            timeout: None,
            poll_interval: Duration::from_mins(5),
        }
    }

    /// Closes the gate if nobody answered within `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

#[async_trait]
impl Gate for ApprovalGate {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    async fn check(&self, ctx: &GateContext) -> Result<GateVerdict, ProviderError> {
        Ok(match ctx.approvals.get(&self.name) {
            Some(a) if a.approved => GateVerdict::Open,
            Some(a) => GateVerdict::Closed {
                reason: if a.reason.is_empty() {
                    format!("rejected by {}", a.by)
                } else {
                    format!("rejected by {}: {}", a.by, a.reason)
                },
            },
            None => GateVerdict::Pending {
                detail: format!(
                    "waiting for someone to approve `{}` on rollout `{}`",
                    self.name, ctx.rollout
                ),
            },
        })
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

    /// Asks the gate, with what it saw for the decision record. The engine calls this one.
    /// The default asks [`check`](Gate::check) and adds nothing; a
    /// [`Checklist`](crate::Checklist) adds every check's result, the exemptions used and the
    /// fixes run. A gate that wraps another forwards this too.
    async fn answer(&self, ctx: &GateContext) -> Result<GateAnswer, ProviderError> {
        self.check(ctx).await.map(GateAnswer::from)
    }
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
    async fn answer(&self, ctx: &GateContext) -> Result<GateAnswer, ProviderError> {
        (**self).answer(ctx).await
    }
}
