//! The Lease lock on the fake client and paused time: two engines contending for one rollout
//! never both write, a lost Lease stops the engine before its next effect, and an engine
//! without the Lease never starts.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::{NS, builder};
use cutover_core::{
    Acquired, Canary, CanaryStep, Claim, CommandRequest, DecisionRecord, Lease, ListFilter,
    Outcome, Plan, QueuedCommand, RetryPolicy, Rollout, RolloutError, RolloutId, RolloutState,
    StateStore, StoreError, Stored, Summary, Timestamp, Watch,
};
use cutover_kubernetes::{ConfigMapStateStore, LeaseLock, LeaseTiming, LeasedStateStore};
use cutover_test::FakeRouter;
use kube_fake_client::{Error as FakeError, interceptor};
use parking_lot::Mutex;
use tokio::time::Instant;

/// Every successful save, in order: who saved, and when.
type Log = Arc<Mutex<Vec<(&'static str, Instant)>>>;

/// Records successful saves of one replica.
#[derive(Debug)]
struct Recording {
    inner: ConfigMapStateStore,
    who: &'static str,
    log: Log,
}

#[async_trait]
impl StateStore for Recording {
    fn name(&self) -> &str {
        self.who
    }
    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
        self.inner.load(id).await
    }
    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let version = self.inner.save(id, state, expected).await?;
        self.log.lock().push((self.who, Instant::now()));
        Ok(version)
    }
    async fn append(&self, id: &RolloutId, records: &[DecisionRecord]) -> Result<(), StoreError> {
        self.inner.append(id, records).await
    }
    async fn records(
        &self,
        id: &RolloutId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        self.inner.records(id, after, limit).await
    }
    async fn send(
        &self,
        id: &RolloutId,
        request: &CommandRequest,
        now: Timestamp,
    ) -> Result<QueuedCommand, StoreError> {
        self.inner.send(id, request, now).await
    }
    async fn commands(&self, id: &RolloutId, after: u64) -> Result<Vec<QueuedCommand>, StoreError> {
        self.inner.commands(id, after).await
    }
    async fn list(&self, filter: &ListFilter) -> Result<Vec<Summary>, StoreError> {
        self.inner.list(filter).await
    }
    async fn acquire(&self, id: &RolloutId, claim: &Claim) -> Result<Acquired, StoreError> {
        self.inner.acquire(id, claim).await
    }
    async fn renew(
        &self,
        id: &RolloutId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Lease, StoreError> {
        self.inner.renew(id, lease, now).await
    }
    async fn lease(&self, id: &RolloutId) -> Result<Option<Lease>, StoreError> {
        self.inner.lease(id).await
    }
    async fn release(&self, id: &RolloutId, lease: &Lease) -> Result<(), StoreError> {
        self.inner.release(id, lease).await
    }
    fn watch(&self, id: &RolloutId) -> Watch {
        self.inner.watch(id)
    }
}

fn plan() -> Plan {
    Plan::new(Canary::new([
        CanaryStep::set_weight(20).unwrap(),
        CanaryStep::pause(Duration::from_mins(1)),
        CanaryStep::set_weight(60).unwrap(),
        CanaryStep::pause(Duration::from_mins(1)),
    ]))
    .with_retry(RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    })
}

fn rollout(who: &'static str, store: impl StateStore + 'static, router: &FakeRouter) -> Rollout {
    Rollout::builder("checkout", plan())
        .revisions("v1", "v2")
        .router(router.clone())
        .state_store(store)
        .engine_id(who)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn two_engines_contending_for_one_lease_never_both_write() {
    // `partitioned` makes every renewal of replica `a`'s lock fail, as if it lost the API
    // server; its other writes (state, log, the store's owner lease) still go through, so only
    // the lock can stop it.
    let partitioned = Arc::new(AtomicBool::new(false));
    let cut = Arc::clone(&partitioned);
    let client = builder()
        .with_interceptor_funcs(interceptor::Funcs::new().replace(move |ctx| {
            let lock_of_a = ctx.object["kind"] == "Lease"
                && ctx.name == "cutover-checkout"
                && ctx.object["spec"]["holderIdentity"] == "a";
            if lock_of_a && cut.load(Ordering::SeqCst) {
                return Err(FakeError::Internal("connection reset".into()));
            }
            Ok(None)
        }))
        .build()
        .await
        .unwrap();
    let id: RolloutId = "checkout".parse().unwrap();
    let timing = LeaseTiming::default();
    let margin = timing.lease_duration.saturating_sub(timing.renew_deadline);
    let lock = |who| Arc::new(LeaseLock::for_rollout(client.clone(), NS, &id, who));
    let (lock_a, lock_b) = (lock("a"), lock("b"));
    let log = Log::default();
    let store = |who, lock: &Arc<LeaseLock>| {
        let inner = ConfigMapStateStore::new(client.clone(), NS, "rollout-");
        let recording = Recording {
            inner,
            who,
            log: Arc::clone(&log),
        };
        LeasedStateStore::new(recording, Arc::clone(lock))
    };
    let router = FakeRouter::new("mesh");

    lock_a.acquire().await.unwrap();
    let renew_a = lock_a.spawn_renewal();
    let engine_a = tokio::spawn(rollout("a", store("a", &lock_a), &router).run());

    // Replica b waits for the Lease, then drives the same rollout.
    let (b_lock, b_store, b_router) = (Arc::clone(&lock_b), store("b", &lock_b), router.clone());
    let engine_b = tokio::spawn(async move {
        b_lock.acquire().await.unwrap();
        let acquired = Instant::now();
        let _renew = b_lock.spawn_renewal();
        (acquired, rollout("b", b_store, &b_router).run().await)
    });

    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(lock_a.is_held() && !lock_b.is_held());
    partitioned.store(true, Ordering::SeqCst);

    let result_a = engine_a.await.unwrap();
    let (b_acquired, result_b) = engine_b.await.unwrap();
    drop(renew_a);

    let err = result_a.unwrap_err();
    assert!(
        matches!(&err, RolloutError::Store(StoreError::Provider(e)) if e.message().contains("lease")),
        "a must stop on the lost lease: {err:?}"
    );
    assert_eq!(result_b.unwrap(), Outcome::Promoted);
    assert!(!lock_a.is_held());

    let log = log.lock().clone();
    let writers: Vec<&str> = log.iter().map(|(who, _)| *who).collect();
    let first_b = writers.iter().position(|w| *w == "b").expect("b saved");
    assert!(first_b > 0, "a saved first: {writers:?}");
    assert!(
        writers[first_b..].iter().all(|w| *w == "b"),
        "interleaved: {writers:?}"
    );
    let last_a = log[first_b - 1].1;
    assert!(
        last_a + margin <= b_acquired,
        "a's last save at {last_a:?} is within the margin of b's takeover at {b_acquired:?}"
    );
    // Each effect once: 20 % by a; 60 % and 100 % by b. a never acted after losing the lease.
    let weights: Vec<u16> = router
        .splits()
        .iter()
        .map(|s| s.weight(&"v2".parse().unwrap()).basis_points())
        .collect();
    assert_eq!(weights, [2000, 6000, 10_000]);
}

#[tokio::test(start_paused = true)]
async fn an_engine_without_the_lease_never_acts() {
    let client = builder().build().await.unwrap();
    let id: RolloutId = "checkout".parse().unwrap();
    let holder = LeaseLock::for_rollout(client.clone(), NS, &id, "a");
    assert!(holder.try_acquire_or_renew().await.unwrap());
    let other = Arc::new(LeaseLock::for_rollout(client.clone(), NS, &id, "b"));
    assert!(!other.try_acquire_or_renew().await.unwrap(), "held by a");

    let router = FakeRouter::new("mesh");
    let store = LeasedStateStore::new(ConfigMapStateStore::new(client, NS, "rollout-"), other);
    let err = rollout("b", store, &router).run().await.unwrap_err();
    assert!(matches!(err, RolloutError::Store(_)), "{err:?}");
    assert!(router.splits().is_empty(), "acted without the lease");
}

#[tokio::test(start_paused = true)]
async fn a_lease_is_taken_over_only_after_it_stood_still_for_its_duration() {
    let client = builder().build().await.unwrap();
    let a = LeaseLock::new(client.clone(), NS, "l", "a");
    let b = LeaseLock::new(client, NS, "l", "b");
    assert!(a.try_acquire_or_renew().await.unwrap());
    let start = Instant::now();
    assert!(!b.try_acquire_or_renew().await.unwrap());
    tokio::time::sleep(Duration::from_secs(9)).await;
    // a renews: b's wait starts again from when it sees the new record.
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    tokio::time::sleep(Duration::from_secs(14)).await;
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "only 14 s since the renewal was seen"
    );
    assert!(!a.is_held(), "a's renew deadline (10 s) has passed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(b.try_acquire_or_renew().await.unwrap());
    assert!(start.elapsed() >= Duration::from_secs(24));
    // a finds b holding it and does not take it back.
    assert!(!a.try_acquire_or_renew().await.unwrap());
    b.release().await.unwrap();
    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "released leases are free at once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_not_taken_back_by_its_renewal() {
    let client = builder().build().await.unwrap();
    let a = Arc::new(LeaseLock::new(client.clone(), NS, "l", "a"));
    let b = LeaseLock::new(client, NS, "l", "b");
    a.acquire().await.unwrap();
    let _renewal = a.spawn_renewal();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(a.is_held(), "renewed");
    a.release().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!a.is_held());
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "free at once, not renewed by a"
    );
}

/// Under a held lock, `acquire` takes the store's own lease even from a live owner (who can
/// only be an engine that lost the lock); once the lock is no longer held, every write the
/// engine makes (save, append, acquire, renew) fails naming the lock, while reading, sending
/// commands and releasing still work.
#[tokio::test(start_paused = true)]
async fn the_lock_guards_every_write_the_engine_makes() {
    let client = builder().build().await.unwrap();
    let id: RolloutId = "checkout".parse().unwrap();
    let plain = ConfigMapStateStore::new(client.clone(), NS, "rollout-");
    let lock = Arc::new(LeaseLock::for_rollout(client, NS, &id, "pod-a"));
    assert!(lock.try_acquire_or_renew().await.unwrap());
    let guarded = LeasedStateStore::new(plain.clone(), Arc::clone(&lock));
    let now = Timestamp::from_unix_millis(1_800_000_000_000);
    let claim = |owner: &str| Claim {
        owner: owner.to_owned(),
        ttl: Duration::from_secs(15),
        now,
        force: false,
    };

    let stale = plain.acquire(&id, &claim("engine-old")).await.unwrap();
    let acquired = guarded.acquire(&id, &claim("engine-a")).await.unwrap();
    assert_eq!(
        acquired.previous.map(|l| l.owner).as_deref(),
        Some("engine-old")
    );
    assert!(acquired.lease.epoch > stale.lease.epoch);
    let state = common::store::state(&id);
    let version = guarded.save(&id, &state, None).await.unwrap();
    guarded
        .append(&id, &[common::store::record(1, 0)])
        .await
        .unwrap();
    let lease = guarded.renew(&id, &acquired.lease, now).await.unwrap();

    // No renewal for longer than the renew deadline: the lock is no longer held.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(!lock.is_held());
    let refused = |result: Result<(), StoreError>, what: &str| {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, StoreError::Provider(e)
                if e.kind() == cutover_core::ErrorKind::Permanent
                    && e.message().contains("lease `cutover-checkout` is not held by `pod-a`")),
            "{what}: {err:?}"
        );
    };
    refused(
        guarded.save(&id, &state, Some(version)).await.map(drop),
        "save",
    );
    refused(
        guarded.append(&id, &[common::store::record(2, 0)]).await,
        "append",
    );
    refused(guarded.renew(&id, &lease, now).await.map(drop), "renew");
    refused(
        guarded.acquire(&id, &claim("engine-a")).await.map(drop),
        "acquire",
    );
    assert_eq!(plain.load(&id).await.unwrap().unwrap().version, version);
    assert_eq!(guarded.records(&id, 0, 10).await.unwrap().len(), 1);
    let pause = CommandRequest::new(cutover_core::Command::Pause, "alice");
    guarded.send(&id, &pause, now).await.unwrap();
    assert_eq!(guarded.commands(&id, 0).await.unwrap().len(), 1);
    assert_eq!(guarded.list(&ListFilter::default()).await.unwrap().len(), 1);
    assert_eq!(guarded.lease(&id).await.unwrap(), Some(lease.clone()));
    guarded.release(&id, &lease).await.unwrap();
    assert_eq!(plain.lease(&id).await.unwrap(), None);
}
