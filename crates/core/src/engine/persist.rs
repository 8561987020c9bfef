//! The engine's side of the store: saving with compare-and-swap, appending the decision log,
//! reading the inbox, and holding the owner lease.

use std::future::Future;

use tracing::{info, warn};

use super::drive::Engine;
use super::exec::Retrier;
use super::{Ownership, RolloutError, RolloutEvent};
use crate::command::QueuedCommand;
use crate::store::{Claim, Lease, LeaseGuard};
use crate::{RolloutId, StateStore, StoreError, Timestamp};

/// Calls the store until it succeeds, fails for good, or `attempts` calls were made; waits
/// between calls as the retry policy says.
async fn with_retries<T, F, Fut>(
    retrier: &Retrier,
    attempts: u32,
    what: &str,
    mut f: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if e.is_retryable() && attempt < attempts => {
                let delay = retrier.delay(attempt, None);
                warn!(attempt, error = %e, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The owner lease this engine holds.
pub(super) struct Held {
    lease: Lease,
    /// Frees the lease of an in-process store when the engine goes away.
    _guard: LeaseGuard,
    renewed_at: Timestamp,
}

impl Held {
    /// Takes the rollout's lease. Returns the live lease of another owner taken by force.
    pub(super) async fn acquire(
        store: &std::sync::Arc<dyn StateStore>,
        id: &RolloutId,
        instance: &str,
        ownership: &Ownership,
        now: Timestamp,
    ) -> Result<(Held, Option<Lease>), RolloutError> {
        let claim = Claim {
            owner: instance.to_owned(),
            ttl: ownership.lease_ttl,
            now,
            force: ownership.takeover.is_some(),
        };
        match store.acquire(id, &claim).await {
            Ok(acquired) => Ok((
                Held {
                    lease: acquired.lease,
                    _guard: acquired.guard,
                    renewed_at: now,
                },
                acquired.previous,
            )),
            Err(StoreError::Owned { id, owner, until }) => {
                Err(RolloutError::Owned { id, owner, until })
            }
            Err(e) => Err(RolloutError::Store(e)),
        }
    }

    /// When the lease must be renewed next, for leases that expire.
    pub(super) fn renew_at(&self) -> Option<Timestamp> {
        self.lease
            .renew_every()
            .map(|every| self.renewed_at + every)
    }

    /// Renews the lease if it is due. A lease lost to another engine stops this one.
    pub(super) async fn renew_if_due(
        &mut self,
        store: &std::sync::Arc<dyn StateStore>,
        id: &RolloutId,
        now: Timestamp,
        retrier: &Retrier,
    ) -> Result<(), RolloutError> {
        if self.renew_at().is_none_or(|at| now < at) {
            return Ok(());
        }
        let lease = self.lease.clone();
        match with_retries(retrier, 3, "renewing the lease", || {
            store.renew(id, &lease, now)
        })
        .await
        {
            Ok(lease) => {
                self.lease = lease;
                self.renewed_at = now;
                Ok(())
            }
            Err(StoreError::LeaseLost { now_held_by, .. }) => {
                warn!(now_held_by = ?now_held_by, "lost the lease; stopping");
                Err(RolloutError::Superseded { id: id.clone() })
            }
            Err(e) => Err(RolloutError::Store(e)),
        }
    }

    /// Gives the lease up; a failure only delays the next owner until the lease expires.
    pub(super) async fn release(&self, store: &std::sync::Arc<dyn StateStore>, id: &RolloutId) {
        if let Err(e) = store.release(id, &self.lease).await {
            warn!(error = %e, "could not release the lease; it expires on its own");
        }
    }
}

impl Engine {
    /// Saves the state with compare-and-swap on the version this engine last saw, then appends
    /// the records it holds to the log and streams them. Boxed, so that the futures of the many
    /// places that save stay small.
    pub(super) fn save(
        &mut self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), RolloutError>> + Send + '_>> {
        Box::pin(self.save_now())
    }

    async fn save_now(&mut self) -> Result<(), RolloutError> {
        self.state.updated_at = self.clock.now();
        let attempts = self.setup.plan.retry.max_attempts;
        let mut attempt = 1;
        loop {
            match self
                .providers
                .store
                .save(&self.id, &self.state, self.version)
                .await
            {
                Ok(version) => {
                    self.version = Some(version);
                    self.unsaved = false;
                    break;
                }
                Err(StoreError::Conflict { .. })
                    if attempt > 1 && self.saved_by_earlier_attempt().await =>
                {
                    self.version = self.version.map(|v| v + 1).or(Some(1));
                    self.unsaved = false;
                    break;
                }
                Err(StoreError::Conflict { .. }) => {
                    warn!("another engine saved this rollout; stopping");
                    return Err(RolloutError::Superseded {
                        id: self.id.clone(),
                    });
                }
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let delay = self.retrier.delay(attempt, None);
                    warn!(attempt, error = %e, "saving state failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(RolloutError::Store(e)),
            }
        }
        self.flush().await
    }

    /// Appends the records saved with the state to the log (idempotent by `seq`), then streams
    /// them: a subscriber never sees a record that could still be lost.
    pub(super) async fn flush(&mut self) -> Result<(), RolloutError> {
        if self.state.unlogged.is_empty() {
            return Ok(());
        }
        let (store, id, records) = (&self.providers.store, &self.id, &self.state.unlogged);
        let attempts = self.setup.plan.retry.max_attempts;
        with_retries(
            &self.retrier,
            attempts,
            "appending to the decision log",
            || store.append(id, records),
        )
        .await
        .map_err(RolloutError::Store)?;
        for record in std::mem::take(&mut self.state.unlogged) {
            self.events.send(|| RolloutEvent::Record(record));
        }
        Ok(())
    }

    /// After a retried save conflicts: whether the stored state is ours, saved by an attempt
    /// whose answer was lost.
    async fn saved_by_earlier_attempt(&self) -> bool {
        let expected = self.version.map_or(1, |v| v + 1);
        matches!(
            self.providers.store.load(&self.id).await,
            Ok(Some(stored)) if stored.version == expected && stored.state == self.state
        )
    }

    /// Commands queued after the last one applied.
    pub(super) async fn pending_commands(&self) -> Result<Vec<QueuedCommand>, RolloutError> {
        let (store, id, after) = (&self.providers.store, &self.id, self.state.last_command);
        let attempts = self.setup.plan.retry.max_attempts;
        let commands = with_retries(&self.retrier, attempts, "reading the inbox", || {
            store.commands(id, after)
        })
        .await
        .map_err(RolloutError::Store)?;
        if !commands.is_empty() {
            info!(count = commands.len(), "commands queued");
        }
        Ok(commands)
    }
}
