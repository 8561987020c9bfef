//! Fencing: the lease a worker holds on one rollout, checked by every write and before every
//! provider call.
//!
//! A worker claims a rollout under a lease whose epoch rises with every claim: the fencing
//! token. Three things check it:
//!
//! - **The database**, on every write of the rollout's engine ([`FencedStore`]): a save, an
//!   append or a release applies only while the row's lease has the same owner and epoch and
//!   its deadline, on the database's clock, has not passed. A worker that stalled past its
//!   lease (SIGSTOP, a long GC pause, a partition) finds every write refused when it wakes,
//!   even if nobody has taken the rollout yet.
//! - **The worker**, before every provider call ([`Fence::check`], through the wrappers in
//!   [`fenced`](crate::fenced)): a call is made only while the lease is live by the worker's
//!   own monotonic clock, counted from *before* the renewal that extended it was sent, so it
//!   never outlives the database's deadline. A lease that is due is renewed first; a lease
//!   that is lost never lets the call through, and the worker drops the rollout's engine.
//! - **Providers that can** (a router whose backend keeps a version, a database migration):
//!   they get the [`FenceToken`] in their [`ProviderContext`](crate::ProviderContext) and can
//!   refuse a token lower than the highest they have seen, closing the last gap: a call
//!   already on the wire when its worker stalled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::{
    Acquired, Claim, CommandRequest, DecisionRecord, Lease, ListFilter, QueuedCommand, RolloutId,
    RolloutState, StateStore, StoreError, Stored, Summary, Timestamp, Watch,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::PgStateStore;

/// Who may act on a rollout: the owner and the epoch of its lease. Epochs rise with every
/// claim, so a higher token always belongs to a later owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FenceToken {
    /// The rollout.
    pub rollout: RolloutId,
    /// The worker holding the lease.
    pub owner: String,
    /// The lease's epoch.
    pub epoch: u64,
}

/// The lease is lost: the rollout may no longer be touched by this worker.
#[derive(Debug, Clone, Error)]
#[error("the lease of `{}` on rollout `{}` (epoch {}) is lost", .0.owner, .0.rollout, .0.epoch)]
pub struct FenceLost(pub FenceToken);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Live until this instant on the worker's monotonic clock.
    Live(Instant),
    Lost,
}

/// A worker's lease on one rollout, shared by the worker (which renews it), the rollout's
/// engine (through [`FencedStore`]) and its providers (through the fenced wrappers).
#[derive(Debug)]
pub struct Fence {
    token: FenceToken,
    ttl: Duration,
    standing: watch::Sender<Standing>,
    lease: Mutex<Lease>,
    /// Asks the worker to renew at once.
    renew_now: Arc<Notify>,
    /// The log holds every record up to this seq (appended with a save).
    logged_through: AtomicU64,
}

impl Fence {
    /// A lease granted by a request sent at `sent_at`.
    pub(crate) fn new(
        lease: Lease,
        rollout: RolloutId,
        sent_at: Instant,
        renew_now: Arc<Notify>,
    ) -> Arc<Self> {
        let ttl = lease.ttl;
        Arc::new(Fence {
            token: FenceToken {
                rollout,
                owner: lease.owner.clone(),
                epoch: lease.epoch,
            },
            ttl,
            standing: watch::Sender::new(Standing::Live(live_until(sent_at, ttl))),
            lease: Mutex::new(lease),
            renew_now,
            logged_through: AtomicU64::new(0),
        })
    }

    /// The token: the rollout, the owner, the epoch.
    pub fn token(&self) -> &FenceToken {
        &self.token
    }

    /// The lease as last granted or renewed.
    pub fn lease(&self) -> Lease {
        self.lease.lock().clone()
    }

    /// Whether the lease is live now by the worker's clock (a lease that is due for renewal is
    /// not, until renewed).
    pub fn is_live(&self) -> bool {
        matches!(*self.standing.borrow(), Standing::Live(until) if Instant::now() < until)
    }

    /// Whether the lease is known lost.
    pub fn is_lost(&self) -> bool {
        *self.standing.borrow() == Standing::Lost
    }

    /// Returns once the lease is live; if it is due, asks for a renewal and waits for the
    /// answer. Fails once the lease is lost.
    pub async fn check(&self) -> Result<(), FenceLost> {
        let mut standing = self.standing.subscribe();
        loop {
            let now = *standing.borrow_and_update();
            match now {
                Standing::Lost => return Err(FenceLost(self.token.clone())),
                Standing::Live(until) if Instant::now() < until => return Ok(()),
                Standing::Live(_) => {
                    self.renew_now.notify_one();
                    if standing.changed().await.is_err() {
                        return Err(FenceLost(self.token.clone()));
                    }
                }
            }
        }
    }

    /// Returns once the lease is lost.
    pub async fn lost(&self) {
        let mut standing = self.standing.subscribe();
        let _ = standing.wait_for(|s| *s == Standing::Lost).await;
    }

    /// When the lease stops being live by the worker's clock, unless renewed (`None`: lost).
    pub(crate) fn live_until(&self) -> Option<Instant> {
        match *self.standing.borrow() {
            Standing::Live(until) => Some(until),
            Standing::Lost => None,
        }
    }

    /// The database extended the lease, by a request sent at `sent_at`, to `expires_at` on
    /// the claimant's clock.
    pub(crate) fn renewed(&self, sent_at: Instant, expires_at: Timestamp) {
        self.lease.lock().expires_at = Some(expires_at);
        self.standing.send_if_modified(|s| match s {
            Standing::Live(until) => {
                *until = (*until).max(live_until(sent_at, self.ttl));
                true
            }
            Standing::Lost => false,
        });
    }

    /// The lease is lost, for good.
    pub(crate) fn lose(&self) {
        self.standing.send_replace(Standing::Lost);
    }
}

/// When a lease granted or renewed by a request sent at `sent_at` stops being live on the
/// worker's clock: the time-to-live from the moment the request left, less a twentieth for
/// clocks that run at slightly different rates. The database's deadline, counted from when
/// it ran the request, is always later.
fn live_until(sent_at: Instant, ttl: Duration) -> Instant {
    sent_at + ttl - ttl / 20
}

/// The store a worker hands the engine of one rollout: a [`PgStateStore`] whose writes to
/// that rollout carry the fence. A save or append whose lease is lost, or past its deadline
/// on the database's clock, is refused with [`StoreError::LeaseLost`], and the fence is marked
/// lost. A save appends the records it carries in the same statement, so the engine's append
/// that follows costs nothing. The lease is the worker's: `acquire` hands the engine the
/// claimed lease and `renew` the one the worker keeps renewed, without a round trip.
#[derive(Debug, Clone)]
pub struct FencedStore {
    store: PgStateStore,
    fence: Arc<Fence>,
}

impl FencedStore {
    /// The store for the rollout `fence` guards.
    pub fn new(store: PgStateStore, fence: Arc<Fence>) -> Self {
        FencedStore { store, fence }
    }

    fn lost(&self, id: &RolloutId) -> StoreError {
        StoreError::LeaseLost {
            id: id.clone(),
            owner: self.fence.token.owner.clone(),
            now_held_by: None,
        }
    }

    fn guard(&self, id: &RolloutId) -> Result<(), StoreError> {
        if *id != self.fence.token.rollout || self.fence.is_lost() {
            return Err(self.lost(id));
        }
        Ok(())
    }

    fn note(&self, err: StoreError) -> StoreError {
        if matches!(err, StoreError::LeaseLost { .. }) {
            self.fence.lose();
        }
        err
    }
}

#[async_trait]
impl StateStore for FencedStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
        self.store.load(id).await
    }

    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.guard(id)?;
        let (version, logged) = self
            .store
            .save_fenced(id, state, expected, &self.fence.token)
            .await
            .map_err(|e| self.note(e))?;
        if logged && let Some(last) = state.unlogged.last() {
            self.fence
                .logged_through
                .fetch_max(last.seq, Ordering::Relaxed);
        }
        Ok(version)
    }

    async fn append(&self, id: &RolloutId, records: &[DecisionRecord]) -> Result<(), StoreError> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        if *id == self.fence.token.rollout
            && last.seq <= self.fence.logged_through.load(Ordering::Relaxed)
        {
            return Ok(());
        }
        self.guard(id)?;
        self.store
            .append_with(id, records, Some(&self.fence.token))
            .await
            .map_err(|e| self.note(e))?;
        self.fence
            .logged_through
            .fetch_max(last.seq, Ordering::Relaxed);
        Ok(())
    }

    async fn records(
        &self,
        id: &RolloutId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        self.store.records(id, after, limit).await
    }

    async fn send(
        &self,
        id: &RolloutId,
        request: &CommandRequest,
        now: Timestamp,
    ) -> Result<QueuedCommand, StoreError> {
        self.store.send(id, request, now).await
    }

    async fn commands(&self, id: &RolloutId, after: u64) -> Result<Vec<QueuedCommand>, StoreError> {
        self.store.commands(id, after).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Summary>, StoreError> {
        self.store.list(filter).await
    }

    async fn acquire(&self, id: &RolloutId, claim: &Claim) -> Result<Acquired, StoreError> {
        self.guard(id)?;
        if claim.owner != self.fence.token.owner {
            let lease = self.fence.lease();
            return Err(StoreError::Owned {
                id: id.clone(),
                owner: lease.owner,
                until: lease.expires_at,
            });
        }
        Ok(Acquired::new(self.fence.lease(), None))
    }

    async fn renew(
        &self,
        id: &RolloutId,
        lease: &Lease,
        _now: Timestamp,
    ) -> Result<Lease, StoreError> {
        self.guard(id)?;
        if lease.epoch != self.fence.token.epoch || lease.owner != self.fence.token.owner {
            return Err(self.lost(id));
        }
        self.fence.check().await.map_err(|_| self.lost(id))?;
        Ok(self.fence.lease())
    }

    async fn lease(&self, id: &RolloutId) -> Result<Option<Lease>, StoreError> {
        self.store.lease(id).await
    }

    async fn release(&self, id: &RolloutId, lease: &Lease) -> Result<(), StoreError> {
        self.store.release(id, lease).await
    }

    fn watch(&self, id: &RolloutId) -> Watch {
        self.store.watch(id)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use cutover_core::planner::Setup;
    use cutover_core::{
        Canary, CanaryStep, Claim, Revisions, RolloutId, RolloutState, StateStore, StoreError,
        Timestamp, TrafficRouter, TrafficSplit,
    };
    use futures_util::FutureExt as _;
    use tokio::sync::Notify;
    use tokio::time::Instant;

    use super::{Fence, FencedStore};
    use crate::PgStateStore;
    use crate::fenced::Fenced;
    use crate::testing::PgServer;

    const T0: Timestamp = Timestamp::from_unix_millis(1_800_000_000_000);

    fn state(id: &RolloutId, records: u64) -> RolloutState {
        let setup = Setup::new(
            Canary::new([CanaryStep::set_weight(10).unwrap()]).into(),
            Revisions::new("v1", "v2").unwrap(),
        );
        let mut state = RolloutState::new(id.clone(), setup, T0);
        for seq in 1..=records {
            state.unlogged.push(cutover_core::DecisionRecord {
                seq,
                at: T0,
                phase: cutover_core::state::Phase::Progressing,
                step: None,
                inputs: cutover_core::Inputs {
                    split: None,
                    step_elapsed: Duration::ZERO,
                    analysis: None,
                    background: None,
                    health: None,
                },
                entry: cutover_core::Entry::Decision {
                    decision: cutover_core::planner::Decision::Advance,
                    result: None,
                },
                summary: format!("record {seq}"),
            });
        }
        state.last_seq = records;
        state
    }

    async fn fenced(store: &PgStateStore, id: &RolloutId, owner: &str, force: bool) -> Arc<Fence> {
        let claim = Claim {
            owner: owner.into(),
            ttl: Duration::from_secs(30),
            now: T0,
            force,
        };
        let lease = store.acquire(id, &claim).await.unwrap().lease;
        Fence::new(lease, id.clone(), Instant::now(), Arc::new(Notify::new()))
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-deps"]
    async fn fenced_writes_stop_when_another_owner_takes_the_lease() {
        let url = PgServer::shared().database("fence_epoch").await.unwrap();
        let store = PgStateStore::connect(&url).await.unwrap();
        let id = RolloutId::new("fenced").unwrap();
        let fence = fenced(&store, &id, "w1", false).await;
        let mine = FencedStore::new(store.clone(), fence.clone());
        let st = state(&id, 3);
        assert_eq!(mine.save(&id, &st, None).await.unwrap(), 1);
        // The records travelled with the save; the append that follows costs no round trip.
        let trips = store.round_trips();
        mine.append(&id, &st.unlogged).await.unwrap();
        assert_eq!(store.round_trips(), trips);
        let logged = store.records(&id, 0, 10).await.unwrap();
        assert_eq!(logged, st.unlogged);
        let epochs: Vec<i64> = store
            .db()
            .query(
                "test",
                "SELECT epoch FROM cutover_log WHERE id = $1 ORDER BY seq",
                &[&id.as_str()],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(epochs, vec![i64::try_from(fence.token().epoch).unwrap(); 3]);

        // Another worker takes the rollout: every write of the first is refused.
        let theirs = fenced(&store, &id, "w2", true).await;
        assert!(theirs.token().epoch > fence.token().epoch);
        let err = mine.save(&id, &state(&id, 4), Some(1)).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::LeaseLost { now_held_by: Some(w), .. } if w == "w2"),
            "{err:?}"
        );
        assert!(fence.is_lost());
        let err = mine.append(&id, &state(&id, 4).unlogged).await.unwrap_err();
        assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
        let err = mine.renew(&id, &fence.lease(), T0).await.unwrap_err();
        assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
        assert_eq!(store.load(&id).await.unwrap().unwrap().version, 1);
        assert_eq!(store.records(&id, 0, 10).await.unwrap().len(), 3);
        // The new owner writes.
        let new = FencedStore::new(store.clone(), theirs);
        assert_eq!(new.save(&id, &state(&id, 4), Some(1)).await.unwrap(), 2);
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-deps"]
    async fn a_lease_past_its_deadline_writes_nothing_even_if_nobody_took_it() {
        let url = PgServer::shared().database("fence_deadline").await.unwrap();
        let store = PgStateStore::connect(&url).await.unwrap();
        let id = RolloutId::new("stalled").unwrap();
        let fence = fenced(&store, &id, "w1", false).await;
        let mine = FencedStore::new(store.clone(), fence.clone());
        mine.save(&id, &state(&id, 1), None).await.unwrap();
        // The worker stalled past its lease (on the database's clock).
        store
            .db()
            .query(
                "test",
                "UPDATE cutover_rollouts SET lease_deadline = now() - interval '1 second' WHERE id = $1",
                &[&id.as_str()],
            )
            .await
            .unwrap();
        let err = mine.save(&id, &state(&id, 2), Some(1)).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::LeaseLost {
                    now_held_by: None,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(fence.is_lost());
        // Nor can it bring the lease back to life.
        let err = store.renew(&id, &fence.lease(), T0).await.unwrap_err();
        assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
        assert_eq!(store.load(&id).await.unwrap().unwrap().version, 1);
    }

    #[tokio::test]
    async fn a_lost_fence_lets_no_provider_call_through() {
        let id = RolloutId::new("calls").unwrap();
        let lease = cutover_core::Lease {
            owner: "w1".into(),
            epoch: 3,
            expires_at: Some(T0),
            ttl: Duration::from_secs(30),
        };
        let fence = Fence::new(lease, id, Instant::now(), Arc::new(Notify::new()));
        let inner = Arc::new(cutover_test::FakeRouter::new("mesh"));
        let router = Fenced::new(inner.clone(), fence.clone());
        let revisions = Revisions::new("v1", "v2").unwrap();
        let split = TrafficSplit::canary(
            &revisions.stable,
            &revisions.candidate,
            cutover_core::Weight::from_percent(10).unwrap(),
        )
        .unwrap();
        router.set_split(&split).await.unwrap();
        assert_eq!(inner.splits().len(), 1);
        fence.lose();
        // The call neither happens nor returns (an error would make the engine roll back).
        assert!(router.set_split(&split).now_or_never().is_none());
        assert_eq!(inner.splits().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_lease_is_renewed_before_the_call() {
        let id = RolloutId::new("due").unwrap();
        let ttl = Duration::from_secs(30);
        let lease = cutover_core::Lease {
            owner: "w1".into(),
            epoch: 1,
            expires_at: Some(T0),
            ttl,
        };
        let renew_now = Arc::new(Notify::new());
        let fence = Fence::new(lease, id, Instant::now(), renew_now.clone());
        assert!(fence.is_live());
        tokio::time::advance(ttl).await;
        assert!(!fence.is_live());
        let waiting = tokio::spawn({
            let fence = fence.clone();
            async move { fence.check().await }
        });
        // The check asks the keeper to renew, and waits for it.
        renew_now.notified().await;
        assert!(!waiting.is_finished());
        fence.renewed(Instant::now(), T0 + ttl);
        waiting.await.unwrap().unwrap();
        assert!(fence.is_live());
    }
}
