//! The lease keeper: renews every lease of a worker in one statement, every third of the
//! lease's time-to-live (and at once when a fence asks), and says the worker is alive.
//!
//! A lease the database no longer gives this worker is lost at once. While the database
//! cannot be reached, a lease is lost when its time on the worker's clock runs out: past that
//! moment the database's deadline has passed too, and another worker may hold it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cutover_core::{Clock, RolloutId};
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::PgStateStore;
use crate::fence::Fence;
use crate::pg::sql::{big, millis};

/// The fences of the rollouts a worker runs.
pub(crate) type Running = Arc<Mutex<HashMap<RolloutId, Arc<Fence>>>>;

pub(crate) struct Keeper {
    pub(crate) store: PgStateStore,
    pub(crate) worker: String,
    pub(crate) offered: Vec<String>,
    pub(crate) ttl: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) running: Running,
    pub(crate) renew_now: Arc<Notify>,
    pub(crate) draining: watch::Receiver<bool>,
    pub(crate) stop: watch::Receiver<bool>,
}

impl Keeper {
    pub(crate) async fn run(mut self) {
        let every = self.ttl / 3;
        let retry = (self.ttl / 12).max(Duration::from_millis(50));
        let mut delay = every;
        loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.renew_now.notified() => {}
                () = stopped(&mut self.stop) => return,
            }
            delay = if self.renew().await { every } else { retry };
        }
    }

    /// Renews every live lease and the worker's heartbeat; whether the database answered.
    async fn renew(&self) -> bool {
        let fences: Vec<Arc<Fence>> = self
            .running
            .lock()
            .values()
            .filter(|f| !f.is_lost())
            .cloned()
            .collect();
        let ids: Vec<&str> = fences.iter().map(|f| f.token().rollout.as_str()).collect();
        let epochs: Vec<i64> = fences.iter().map(|f| big(f.token().epoch)).collect();
        let sent_at = Instant::now();
        let now = self.clock.now();
        let draining = *self.draining.borrow();
        let result = self
            .store
            .db()
            .query(
                "renewing leases",
                "WITH renewed AS ( \
                   UPDATE cutover_rollouts r \
                   SET lease_deadline = now() + r.lease_ttl_ms * interval '1 millisecond', \
                       lease_expires_ms = $3 + r.lease_ttl_ms \
                   FROM unnest($1::text[], $2::bigint[]) AS t(id, epoch) \
                   WHERE r.id = t.id AND r.lease_epoch = t.epoch AND r.lease_owner = $4 \
                     AND r.lease_deadline > now() \
                   RETURNING r.id), \
                 seen AS ( \
                   INSERT INTO cutover_fleet_workers (id, providers, ttl_ms, draining) \
                   VALUES ($4, $5, $6, $7) \
                   ON CONFLICT (id) DO UPDATE SET seen_at = now(), \
                     providers = EXCLUDED.providers, ttl_ms = EXCLUDED.ttl_ms, \
                     draining = EXCLUDED.draining) \
                 SELECT id FROM renewed",
                &[
                    &ids,
                    &epochs,
                    &big(now.unix_millis()),
                    &self.worker,
                    &self.offered,
                    &millis(self.ttl),
                    &draining,
                ],
            )
            .await;
        match result {
            Ok(rows) => {
                let renewed: std::collections::HashSet<String> =
                    rows.iter().map(|r| r.get(0)).collect();
                for fence in fences {
                    if renewed.contains(fence.token().rollout.as_str()) {
                        fence.renewed(sent_at, now + self.ttl);
                    } else {
                        warn!(rollout = %fence.token().rollout, epoch = fence.token().epoch,
                            "lease lost; dropping the rollout");
                        fence.lose();
                    }
                }
                true
            }
            Err(e) => {
                debug!(error = %e, "cannot renew leases");
                let now = Instant::now();
                for fence in fences {
                    if fence.live_until().is_none_or(|until| until <= now) {
                        warn!(rollout = %fence.token().rollout, epoch = fence.token().epoch,
                            "lease ran out while the database was unreachable; dropping the rollout");
                        fence.lose();
                    }
                }
                false
            }
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
