//! An engine on `ConfigMapStateStore` (kube-fake-client, paused time) dies at every write it
//! makes to the API server in turn: the state, a log append, a chunk sealed or created, the
//! owner lease; before the write reaches the server, and after. Another engine resumes the
//! rollout once the dead one's lease has expired: it ends the same way, and the decision log
//! holds every record once, from 1, with every record the dead engine wrote kept as it was.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{NS, builder};
use cutover_core::{
    Canary, CanaryStep, Outcome, Plan, RetryPolicy, Rollout, RolloutId, StateStore, Timestamp,
    TokioClock,
};
use cutover_kubernetes::ConfigMapStateStore;
use cutover_test::FakeRouter;
use tokio::sync::Notify;

/// Small chunks, so that crashes fall between sealing a chunk and starting the next too.
const BUDGET: usize = 700;

/// `client`, but its `crash_at`-th write (any request but a GET) and every one after never
/// returns: the process died there. With `after`, that write reaches the server first.
fn dying(client: kube::Client, crash_at: u64, after: bool, died: Arc<Notify>) -> kube::Client {
    let writes = Arc::new(AtomicU64::new(0));
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let (client, died) = (client.clone(), Arc::clone(&died));
        let write = request.method() != http::Method::GET;
        let n = if write {
            writes.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            0
        };
        async move {
            if !write || n < crash_at {
                return client.send(request).await;
            }
            if n == crash_at && after {
                client.send(request).await?;
            }
            died.notify_one();
            std::future::pending().await
        }
    });
    kube::Client::new(service, NS)
}

fn rollout(client: kube::Client, router: &FakeRouter, clock: TokioClock, engine: &str) -> Rollout {
    let plan = Plan::new(Canary::new([
        CanaryStep::set_weight(20).unwrap(),
        CanaryStep::pause(Duration::from_mins(1)),
        CanaryStep::set_weight(60).unwrap(),
        CanaryStep::pause(Duration::from_mins(1)),
    ]))
    .with_retry(RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    });
    Rollout::builder("crashy", plan)
        .revisions("v1", "v2")
        .router(router.clone())
        .state_store(ConfigMapStateStore::new(client, NS, "rollout-").with_chunk_budget(BUDGET))
        .clock(clock)
        .engine_id(engine)
        .build()
        .unwrap()
}

/// The weights of v2 the router was set to, in basis points, without repeats.
fn weights(router: &FakeRouter) -> Vec<u16> {
    let mut weights: Vec<u16> = router
        .splits()
        .iter()
        .map(|s| s.weight(&"v2".parse().unwrap()).basis_points())
        .collect();
    weights.dedup();
    weights
}

#[tokio::test(start_paused = true)]
async fn a_rollout_resumed_after_a_crash_at_any_write_ends_the_same_with_its_log_whole() {
    let clock = TokioClock::starting_at(Timestamp::from_unix_millis(1_800_000_000_000));
    let id: RolloutId = "crashy".parse().unwrap();

    // The reference: no crash. Count its writes.
    let client = builder().build().await.unwrap();
    let never = Arc::new(Notify::new());
    let counting = dying(client, u64::MAX, false, never);
    let router = FakeRouter::new("mesh");
    let outcome = rollout(counting.clone(), &router, clock, "a")
        .run()
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Promoted);
    let reference = weights(&router);
    let store = ConfigMapStateStore::new(counting, NS, "rollout-");
    let writes = store.records(&id, 0, 1000).await.unwrap().len();
    assert!(writes > 10, "{writes} records");

    let mut crash_at = 1;
    loop {
        let mut crashed_any = false;
        for after in [false, true] {
            let client = builder().build().await.unwrap();
            let died = Arc::new(Notify::new());
            let router = FakeRouter::new("mesh");
            let first = rollout(
                dying(client.clone(), crash_at, after, Arc::clone(&died)),
                &router,
                clock,
                "a",
            );
            tokio::select! {
                result = first.run() => {
                    assert_eq!(result.unwrap(), Outcome::Promoted, "write {crash_at}");
                    continue;
                }
                () = died.notified() => crashed_any = true,
            }
            let store = ConfigMapStateStore::new(client.clone(), NS, "rollout-");
            // What the dead engine left: its log, and the records saved with its state.
            let mut left = store.records(&id, 0, 1000).await.unwrap();
            if let Some(stored) = store.load(&id).await.unwrap() {
                let last = left.last().map_or(0, |r| r.seq);
                left.extend(stored.state.unlogged.into_iter().filter(|r| r.seq > last));
            }

            // Its lease runs out; another engine resumes the rollout.
            tokio::time::sleep(Duration::from_secs(16)).await;
            let resumed = rollout(client, &router, clock, "b").run().await;
            let context = format!(
                "crash at write {crash_at} ({})",
                if after { "after" } else { "before" }
            );
            assert_eq!(resumed.unwrap(), Outcome::Promoted, "{context}");
            assert_eq!(weights(&router), reference, "{context}");
            let log = store.records(&id, 0, 1000).await.unwrap();
            let last = store.load(&id).await.unwrap().unwrap().state.last_seq;
            let seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
            assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "{context}");
            assert!(
                log.len() >= left.len() && log[..left.len()] == left[..],
                "{context}: a record the dead engine saved was lost or rewritten"
            );
            assert_eq!(
                log.iter()
                    .filter(|r| r.summary.starts_with("finished"))
                    .count(),
                1,
                "{context}"
            );
        }
        if !crashed_any {
            break;
        }
        crash_at += 1;
    }
    assert!(crash_at > 20, "crashed at {} writes", crash_at - 1);
}
