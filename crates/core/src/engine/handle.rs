use std::sync::Arc;

use crate::command::{Command, CommandRequest, QueuedCommand};
use crate::record::DecisionRecord;
use crate::state::RolloutState;
use crate::store::Summary;
use crate::{Clock, RolloutId, StateStore, StoreError, TokioClock};

/// Steers and reads one rollout through its [`StateStore`], from this process or any other
/// that reaches the store. Cheap to clone.
///
/// Commands go to the rollout's inbox in the store; the engine that owns the rollout applies
/// them in order between decisions (at once on a [`MemoryStateStore`](crate::MemoryStateStore),
/// within the poll interval on a [`FileStateStore`](crate::FileStateStore)), and records each
/// one with who sent it, why, and whether it was accepted (an abort past the point of no return
/// is refused, for instance). A command sent while no engine runs the rollout is applied when
/// one resumes it.
///
/// ```no_run
/// # async fn f() -> Result<(), cutover_core::StoreError> {
/// use cutover_core::{FileStateStore, RolloutHandle, RolloutId};
/// let store = FileStateStore::new("/var/lib/my-deployer/rollouts").expect("a directory");
/// let id = RolloutId::new("checkout").expect("a valid id");
/// let handle = RolloutHandle::new(store, id).by("alice");
/// handle.pause("error budget alert").await?;
/// println!("{:?}", handle.summary().await?);
/// handle.resume("alert cleared").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RolloutHandle {
    id: RolloutId,
    store: Arc<dyn StateStore>,
    by: String,
    clock: Option<Arc<dyn Clock>>,
}

impl RolloutHandle {
    /// A handle on rollout `id` in `store`, sending commands as `handle` until
    /// [`by`](Self::by) says who.
    pub fn new(store: impl StateStore + 'static, id: RolloutId) -> Self {
        Self::shared(Arc::new(store), id, None)
    }

    pub(super) fn shared(
        store: Arc<dyn StateStore>,
        id: RolloutId,
        clock: Option<Arc<dyn Clock>>,
    ) -> Self {
        RolloutHandle {
            id,
            store,
            by: "handle".to_owned(),
            clock,
        }
    }

    /// Sends commands as `who` (a person, a tool), for the record.
    pub fn by(mut self, who: impl Into<String>) -> Self {
        self.by = who.into();
        self
    }

    /// The rollout's id.
    pub fn id(&self) -> &RolloutId {
        &self.id
    }

    /// Queues a command. Fails for an unknown or finished rollout and for an invalid request;
    /// with an idempotency key sent before, returns the command already queued.
    pub async fn send(&self, request: CommandRequest) -> Result<QueuedCommand, StoreError> {
        let now = match &self.clock {
            Some(clock) => clock.now(),
            None => TokioClock::new().now(),
        };
        self.store.send(&self.id, &request, now).await
    }

    async fn command(
        &self,
        command: Command,
        reason: impl Into<String>,
    ) -> Result<QueuedCommand, StoreError> {
        self.send(CommandRequest::new(command, self.by.clone()).reason(reason))
            .await
    }

    /// Holds the rollout at its current step. Background analysis keeps running and can still
    /// roll back; time spent paused does not count against the progress deadline.
    pub async fn pause(&self, reason: impl Into<String>) -> Result<QueuedCommand, StoreError> {
        self.command(Command::Pause, reason).await
    }

    /// Lifts a pause: a manual pause, a pause step, an inconclusive analysis (accepting it as a
    /// pass), or a blue-green rollout waiting to be promoted.
    pub async fn resume(&self, reason: impl Into<String>) -> Result<QueuedCommand, StoreError> {
        self.command(Command::Resume, reason).await
    }

    /// Skips the current step.
    pub async fn promote(&self, reason: impl Into<String>) -> Result<QueuedCommand, StoreError> {
        self.command(Command::Promote, reason).await
    }

    /// Skips every remaining step and promotes. Promotion gates still apply.
    pub async fn promote_full(
        &self,
        reason: impl Into<String>,
    ) -> Result<QueuedCommand, StoreError> {
        self.command(Command::PromoteFull, reason).await
    }

    /// Rolls back now: all traffic to stable, reversible expand migrations reverted.
    pub async fn abort(&self, reason: impl Into<String>) -> Result<QueuedCommand, StoreError> {
        self.command(Command::Abort, reason).await
    }

    /// Approves the rollout's gate `gate` (an [`ApprovalGate`](crate::ApprovalGate) opens).
    pub async fn approve(
        &self,
        gate: impl Into<String>,
        reason: impl Into<String>,
    ) -> Result<QueuedCommand, StoreError> {
        self.send(
            CommandRequest::new(Command::Approve, self.by.clone())
                .subject(gate)
                .reason(reason),
        )
        .await
    }

    /// Rejects the rollout's gate `gate` (an approval gate closes, which stops the rollout).
    pub async fn reject(
        &self,
        gate: impl Into<String>,
        reason: impl Into<String>,
    ) -> Result<QueuedCommand, StoreError> {
        self.send(
            CommandRequest::new(Command::Reject, self.by.clone())
                .subject(gate)
                .reason(reason),
        )
        .await
    }

    /// The state as last saved, or `None` before the rollout first started.
    pub async fn state(&self) -> Result<Option<RolloutState>, StoreError> {
        Ok(self.store.load(&self.id).await?.map(|s| s.state))
    }

    /// The rollout's summary (phase, step, weights, outcome, owner lease), or `None` before it
    /// first started.
    pub async fn summary(&self) -> Result<Option<Summary>, StoreError> {
        let Some(stored) = self.store.load(&self.id).await? else {
            return Ok(None);
        };
        let lease = self.store.lease(&self.id).await?;
        Ok(Some(Summary::of(&stored.state, stored.version, lease)))
    }

    /// The whole decision record so far, in order, read from the store's log.
    pub async fn records(&self) -> Result<Vec<DecisionRecord>, StoreError> {
        const PAGE: usize = 1000;
        let mut all: Vec<DecisionRecord> = Vec::new();
        loop {
            let after = all.last().map_or(0, |r| r.seq);
            let page = self.store.records(&self.id, after, PAGE).await?;
            let done = page.len() < PAGE;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }
}
