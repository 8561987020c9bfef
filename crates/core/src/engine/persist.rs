//! The engine's side of the store: saving with compare-and-swap, appending the decision log,
//! reading the inbox.

use std::future::Future;

use tracing::{info, warn};

use super::drive::Engine;
use super::exec::with_retries;
use super::{RolloutError, RolloutEvent};
use crate::StoreError;
use crate::command::QueuedCommand;

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
