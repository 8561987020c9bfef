//! Drift of a rollout in progress: its routers read back and compared with the split the
//! rollout confirmed, reported only (moving traffic during a rollout is its engine's job).
//!
//! The records are kept in a store document of kind [`ROLLOUT_DRIFT_KIND`] under the
//! rollout's id, not in the rollout's decision log: the engine numbers its records itself
//! (`last_seq` in its state) and the log skips a record whose `seq` it holds already, so a
//! record appended from outside would take the `seq` of the engine's next one and that one
//! would be dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use serde::{Deserialize, Serialize};

use super::document::{DriftSeen, GuardEntry, GuardError, GuardRecord, store_error};
use crate::{Clock, RolloutId, StateStore, StoreError, TokioClock, TrafficRouter, TrafficSplit};

/// The document kind a rollout's drift records are kept under (keyed by the rollout's id).
pub const ROLLOUT_DRIFT_KIND: &str = "rollout-drift";

/// How many drift records a rollout's drift document keeps; older ones are dropped (their
/// count stays in `next_seq`). Records are made only when what a router applies changes.
pub const DRIFT_KEEP: usize = 1000;

/// What a rollout's drift document holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutDriftDocument {
    /// Per router, drift seen and not yet cleared.
    #[serde(default)]
    pub drift: BTreeMap<String, DriftSeen>,
    /// The records, oldest first (at most [`DRIFT_KEEP`]).
    #[serde(default)]
    pub log: Vec<GuardRecord>,
    /// The seq the next record gets.
    pub next_seq: u64,
}

/// Watches the routers of one rollout in progress for drift from the split it confirmed.
///
/// Each interval it loads the rollout's state, reads every router back, and loads the state
/// again. Only when the state did not change in between, has no effect pending and has
/// confirmed a split does it compare: the engine saves its intent before every router call,
/// so a router that differs then was changed by someone else. A drift is reported once per
/// split found (`GuardEntry::Drift` with `repair: false`), and `DriftCleared` when the router
/// is back. [`run`](Self::run) returns when the rollout has finished.
#[derive(Debug)]
pub struct RolloutDriftWatch {
    id: RolloutId,
    store: Arc<dyn StateStore>,
    routers: Vec<Arc<dyn TrafficRouter>>,
    interval: Duration,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<GuardRecord>,
}

impl RolloutDriftWatch {
    /// A watch on rollout `id` in `store`, every 30 s until [`interval`](Self::interval).
    pub fn new(id: RolloutId, store: Arc<dyn StateStore>) -> Self {
        RolloutDriftWatch {
            id,
            store,
            routers: Vec::new(),
            interval: Duration::from_secs(30),
            clock: Arc::new(TokioClock::new()),
            events: broadcast::channel(64).0,
        }
    }

    /// Adds a router of the rollout.
    pub fn router(mut self, router: impl TrafficRouter + 'static) -> Self {
        self.routers.push(Arc::new(router));
        self
    }

    /// How often the routers are read back.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Where wall time comes from (default: [`TokioClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Drift records as they are found.
    pub fn subscribe(&self) -> broadcast::Receiver<GuardRecord> {
        self.events.subscribe()
    }

    /// The rollout's drift document as stored, or `None` if no drift watch saved one.
    pub async fn document(
        store: &dyn StateStore,
        id: &RolloutId,
    ) -> Result<Option<RolloutDriftDocument>, GuardError> {
        Ok(Self::load(store, id).await?.map(|(doc, _)| doc))
    }

    /// The stored document and its version.
    async fn load(
        store: &dyn StateStore,
        id: &RolloutId,
    ) -> Result<Option<(RolloutDriftDocument, u64)>, GuardError> {
        let Some(stored) = store
            .load_document(ROLLOUT_DRIFT_KIND, id)
            .await
            .map_err(store_error(id))?
        else {
            return Ok(None);
        };
        serde_json::from_value(stored.body)
            .map(|doc| Some((doc, stored.version)))
            .map_err(|source| GuardError::Corrupt {
                id: id.clone(),
                source,
            })
    }

    /// Saves the document with compare-and-swap; a conflict means another watch on the same
    /// rollout saved in between.
    async fn save(
        &self,
        doc: &RolloutDriftDocument,
        version: &mut Option<u64>,
    ) -> Result<(), GuardError> {
        let body = serde_json::to_value(doc).map_err(|source| GuardError::Corrupt {
            id: self.id.clone(),
            source,
        })?;
        match self
            .store
            .save_document(ROLLOUT_DRIFT_KIND, &self.id, &body, *version)
            .await
        {
            Ok(saved) => {
                *version = Some(saved);
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => Err(GuardError::Superseded {
                id: self.id.clone(),
            }),
            Err(e) => Err(store_error(&self.id)(e)),
        }
    }

    /// Watches until the rollout has finished (or is not stored); returns the records this
    /// call made. Every record is saved in the rollout's drift document
    /// ([`document`](Self::document)) before it is returned or streamed; a watch started
    /// again on the same rollout continues that document.
    pub async fn run(&self) -> Result<Vec<GuardRecord>, GuardError> {
        let (mut doc, mut version) = match Self::load(&*self.store, &self.id).await? {
            Some((doc, version)) => (doc, Some(version)),
            None => (
                RolloutDriftDocument {
                    next_seq: 1,
                    ..RolloutDriftDocument::default()
                },
                None,
            ),
        };
        let mut records = Vec::new();
        loop {
            let Some(before) = self
                .store
                .load(&self.id)
                .await
                .map_err(store_error(&self.id))?
            else {
                return Ok(records);
            };
            if before.state.outcome.is_some() {
                return Ok(records);
            }
            if let (None, Some(expected)) = (&before.state.pending, &before.state.split) {
                let mut found: Vec<(String, TrafficSplit)> = Vec::new();
                for router in &self.routers {
                    match router.current_split().await {
                        Ok(Some(split)) => found.push((router.name().to_owned(), split)),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(rollout = %self.id, router = router.name(), "cannot read the split back: {e}");
                        }
                    }
                }
                let after = self
                    .store
                    .load(&self.id)
                    .await
                    .map_err(store_error(&self.id))?;
                if after.is_some_and(|a| a.version == before.version) {
                    let mut made = Vec::new();
                    for (router, split) in found {
                        let entry = self.compare(&mut doc.drift, router, expected, split);
                        if let Some(entry) = entry {
                            let record = GuardRecord {
                                seq: doc.next_seq,
                                at: self.clock.now(),
                                entry,
                            };
                            tracing::warn!(rollout = %self.id, "{record}");
                            doc.next_seq += 1;
                            doc.log.push(record.clone());
                            made.push(record);
                        }
                    }
                    if !made.is_empty() {
                        let excess = doc.log.len().saturating_sub(DRIFT_KEEP);
                        doc.log.drain(..excess);
                        self.save(&doc, &mut version).await?;
                        for record in made {
                            let _ = self.events.send(record.clone());
                            records.push(record);
                        }
                    }
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    fn compare(
        &self,
        seen: &mut BTreeMap<String, DriftSeen>,
        router: String,
        expected: &TrafficSplit,
        found: TrafficSplit,
    ) -> Option<GuardEntry> {
        if found.same_traffic(expected) {
            return seen
                .remove(&router)
                .map(|_| GuardEntry::DriftCleared { router });
        }
        let now = self.clock.now();
        let previous = seen.get(&router);
        if previous.is_some_and(|s| s.found == found) {
            return None;
        }
        let since = previous.map_or(now, |s| s.since);
        seen.insert(
            router.clone(),
            DriftSeen {
                since,
                found: found.clone(),
            },
        );
        Some(GuardEntry::Drift {
            router,
            expected: expected.clone(),
            found,
            since,
            repair: false,
        })
    }
}
