//! Drift of a rollout in progress: its routers read back and compared with the split the
//! rollout confirmed, reported only (moving traffic during a rollout is its engine's job).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::document::{DriftSeen, GuardEntry, GuardError, GuardRecord, store_error};
use crate::{Clock, RolloutId, StateStore, TokioClock, TrafficRouter, TrafficSplit};

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

    /// Watches until the rollout has finished (or is not stored); returns every record made.
    pub async fn run(&self) -> Result<Vec<GuardRecord>, GuardError> {
        let mut seen = BTreeMap::new();
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
                    for (router, split) in found {
                        let entry = self.compare(&mut seen, router, expected, split);
                        if let Some(entry) = entry {
                            let record = GuardRecord {
                                seq: records.len() as u64 + 1,
                                at: self.clock.now(),
                                entry,
                            };
                            tracing::warn!(rollout = %self.id, "{record}");
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
