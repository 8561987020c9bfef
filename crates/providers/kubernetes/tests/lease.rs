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
    Canary, CanaryStep, Outcome, Plan, RetryPolicy, Rollout, RolloutError, RolloutId, RolloutState,
    StateStore, StoreError, Stored,
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
    // `partitioned` makes every Lease renewal of replica `a` fail, as if it lost the API
    // server; its ConfigMap writes still go through, so only the Lease can stop it.
    let partitioned = Arc::new(AtomicBool::new(false));
    let cut = Arc::clone(&partitioned);
    let client = builder()
        .with_interceptor_funcs(interceptor::Funcs::new().replace(move |ctx| {
            let lease_of_a =
                ctx.object["kind"] == "Lease" && ctx.object["spec"]["holderIdentity"] == "a";
            if lease_of_a && cut.load(Ordering::SeqCst) {
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
