use std::sync::Arc;

use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::RolloutId;
use crate::planner::Command;
use crate::record::DecisionRecord;
use crate::state::RolloutState;

/// The rollout's engine is no longer running.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("rollout `{0}` is no longer running")]
pub struct HandleError(pub RolloutId);

/// Controls a running rollout from elsewhere: pause, resume, promote, promote-full, abort; and
/// reads its latest saved state. Cheap to clone.
///
/// Commands are queued and applied by the engine between actions, each recorded in the
/// decision record with whether it was accepted (an abort past the point of no return is
/// refused, for instance).
#[derive(Debug, Clone)]
pub struct RolloutHandle {
    pub(super) id: RolloutId,
    pub(super) commands: mpsc::UnboundedSender<Command>,
    pub(super) snapshot: watch::Receiver<Option<Arc<RolloutState>>>,
}

impl RolloutHandle {
    /// Sends a command.
    pub fn send(&self, command: Command) -> Result<(), HandleError> {
        self.commands
            .send(command)
            .map_err(|_| HandleError(self.id.clone()))
    }

    /// Holds the rollout at its current step. Background analysis keeps running and can still
    /// roll back; time spent paused does not count against the progress deadline.
    pub fn pause(&self) -> Result<(), HandleError> {
        self.send(Command::Pause)
    }

    /// Lifts a pause: a manual pause, a pause step, an inconclusive analysis (accepting it as a
    /// pass), or a blue-green rollout waiting to be promoted.
    pub fn resume(&self) -> Result<(), HandleError> {
        self.send(Command::Resume)
    }

    /// Skips the current step.
    pub fn promote(&self) -> Result<(), HandleError> {
        self.send(Command::Promote)
    }

    /// Skips every remaining step and promotes. Promotion gates still apply.
    pub fn promote_full(&self) -> Result<(), HandleError> {
        self.send(Command::PromoteFull)
    }

    /// Rolls back now: all traffic to stable, reversible expand migrations reverted.
    pub fn abort(&self, reason: impl Into<String>) -> Result<(), HandleError> {
        self.send(Command::Abort {
            reason: reason.into(),
        })
    }

    /// The state as last saved, once the rollout has started.
    pub fn state(&self) -> Option<Arc<RolloutState>> {
        self.snapshot.borrow().clone()
    }

    /// The decision record as last saved.
    pub fn records(&self) -> Vec<DecisionRecord> {
        self.state().map(|s| s.records.clone()).unwrap_or_default()
    }

    /// The rollout's id.
    pub fn id(&self) -> &RolloutId {
        &self.id
    }
}
