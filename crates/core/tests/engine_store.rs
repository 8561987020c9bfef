//! State stores, resuming, and engines competing for one rollout.

mod common;

use common::*;
use cutover_core::state::RolloutState;
use cutover_core::{
    Canary, CanaryStep, ErrorKind, FileStateStore, MemoryStateStore, Outcome, RolloutError,
    RolloutId, StateStore, StopReason, StoreError, Verdict,
};
use cutover_test::{FakeRouter, ScriptedAnalysis};

fn paused_canary() -> Canary {
    Canary::new([weight(10), CanaryStep::pause_until_resumed(), weight(50)])
}

#[tokio::test(start_paused = true)]
async fn two_engines_on_one_rollout_never_both_act() {
    let store = MemoryStateStore::new();
    let router = FakeRouter::new("mesh");
    let make = |engine: &str| {
        builder(
            "shared",
            plan(Canary::new([
                weight(10),
                CanaryStep::pause(mins(5)),
                weight(50),
            ])),
        )
        .router(router.clone())
        .state_store(store.clone())
        .engine_id(engine)
        .build()
        .unwrap()
    };
    let (a, b) = tokio::join!(make("a").run(), make("b").run());
    let (winner, loser) = match (&a, &b) {
        (Ok(_), Err(_)) => (a, b),
        (Err(_), Ok(_)) => (b, a),
        _ => panic!("exactly one engine must win: {a:?} / {b:?}"),
    };
    assert_eq!(winner.unwrap(), Outcome::Promoted);
    assert!(
        matches!(loser, Err(RolloutError::Superseded { .. })),
        "{loser:?}"
    );
    // The splits are those of one rollout: nothing was applied twice.
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10), pct(50), pct(100)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_engine_takes_over_and_the_first_stops_without_acting() {
    let store = MemoryStateStore::new();
    let router = FakeRouter::new("mesh");
    let make = |engine: &str| {
        builder("takeover", plan(paused_canary()))
            .router(router.clone())
            .state_store(store.clone())
            .engine_id(engine)
            .build()
            .unwrap()
    };
    let first = make("first");
    let first_handle = first.handle();
    let mut first_events = events(&first);
    let first_run = tokio::spawn(first.run());
    until(&mut first_events, is_pause).await;

    let second = make("second");
    let second_handle = second.handle();
    let mut second_events = events(&second);
    let second_run = tokio::spawn(second.run());
    until(
        &mut second_events,
        |e| matches!(e, cutover_core::RolloutEvent::Record(r) if r.summary == "resumed by second"),
    )
    .await;

    // The first engine wakes up on a command, finds it was superseded and stops.
    first_handle.resume().unwrap();
    assert!(matches!(
        first_run.await.unwrap(),
        Err(RolloutError::Superseded { .. })
    ));
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10)],
        "the stale engine did not act"
    );

    second_handle.resume().unwrap();
    assert_eq!(second_run.await.unwrap().unwrap(), Outcome::Promoted);
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10), pct(50), pct(100)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_paused_rollout_resumes_in_a_new_engine() {
    let store = MemoryStateStore::new();
    let router = FakeRouter::new("mesh");
    let make = || {
        builder("restart", plan(paused_canary()))
            .router(router.clone())
            .state_store(store.clone())
            .build()
            .unwrap()
    };
    // The first engine runs until the pause; with no handle kept, it returns.
    let err = make().run().await.unwrap_err();
    assert!(matches!(err, RolloutError::Paused { .. }), "{err:?}");

    let rollout = make();
    let handle = rollout.handle();
    handle.resume().unwrap(); // queued before the run starts
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10), pct(50), pct(100)]
    );
    let s = summaries(&handle.records());
    assert_eq!(s.iter().filter(|s| s.starts_with("started by")).count(), 1);
    assert_eq!(s.iter().filter(|s| s.starts_with("resumed by")).count(), 1);
}

#[tokio::test(start_paused = true)]
async fn resuming_with_another_plan_is_refused() {
    let store = MemoryStateStore::new();
    let router = FakeRouter::new("mesh");
    let first = builder("mismatch", plan(paused_canary()))
        .router(router.clone())
        .state_store(store.clone())
        .build()
        .unwrap();
    assert!(first.run().await.is_err());
    let other = builder("mismatch", plan(Canary::new([weight(20)])))
        .router(router.clone())
        .state_store(store.clone())
        .build()
        .unwrap();
    let err = other.run().await.unwrap_err();
    assert!(
        matches!(err, RolloutError::SetupMismatch { field: "plan", .. }),
        "{err:?}"
    );
    assert_eq!(candidate_weights(&router.splits()), [pct(10)]);
}

#[tokio::test(start_paused = true)]
async fn a_finished_rollout_returns_its_outcome_without_acting() {
    let store = MemoryStateStore::new();
    let router = FakeRouter::new("mesh");
    let make = || {
        builder("finished", plan(Canary::new([weight(10)])))
            .router(router.clone())
            .state_store(store.clone())
            .build()
            .unwrap()
    };
    assert_eq!(make().run().await.unwrap(), Outcome::Promoted);
    let calls = router.calls().len();
    assert_eq!(make().run().await.unwrap(), Outcome::Promoted);
    assert_eq!(router.calls().len(), calls);
}

#[tokio::test(start_paused = true)]
async fn a_failed_rollback_is_finished_by_the_next_run() {
    let store = MemoryStateStore::new();
    let router = FakeRouter::new("mesh");
    // The rollback's split fails for good once.
    router
        .faults()
        .fail_call("set_split", 2, ErrorKind::Permanent);
    let make = || {
        builder(
            "rollback-fails",
            plan(Canary::new([weight(10), analysis("checks")])),
        )
        .router(router.clone())
        .analysis("checks", ScriptedAnalysis::verdicts([Verdict::Fail]))
        .state_store(store.clone())
        .build()
        .unwrap()
    };
    let err = make().run().await.unwrap_err();
    assert!(
        matches!(
            err,
            RolloutError::Provider {
                rolled_back: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("resume from its saved state"),
        "{err}"
    );
    assert_eq!(
        router
            .current()
            .unwrap()
            .weight(&candidate())
            .basis_points(),
        pct(10)
    );

    let outcome = make().run().await.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack(StopReason::AnalysisFailed { .. })
        ),
        "{outcome:?}"
    );
    assert!(all_stable(&router.current().unwrap()));
}

#[tokio::test(start_paused = true)]
async fn store_failures_stop_the_engine_before_it_acts() {
    let mut store = cutover_core::MockStateStore::new();
    store.expect_name().return_const("broken".to_owned());
    store.expect_load().returning(|_| Ok(None));
    store.expect_save().returning(|_, _, _| {
        Err(StoreError::Provider(
            cutover_core::ProviderError::permanent("disk full"),
        ))
    });
    let router = FakeRouter::new("mesh");
    let rollout = builder("no-store", plan(Canary::new([weight(10)])))
        .router(router.clone())
        .state_store(store)
        .build()
        .unwrap();
    let err = rollout.run().await.unwrap_err();
    assert!(matches!(err, RolloutError::Store(_)), "{err:?}");
    assert!(
        router.calls().is_empty(),
        "nothing is done without a saved intent"
    );
}

#[tokio::test(start_paused = true)]
async fn rollouts_run_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStateStore::new(dir.path()).unwrap();
    let router = FakeRouter::new("mesh");
    let rollout = builder("on-disk", plan(Canary::new([weight(10), weight(50)])))
        .router(router)
        .state_store(store.clone())
        .build()
        .unwrap();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    let id = RolloutId::new("on-disk").unwrap();
    let stored = store.load(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.state.outcome,
        Some(cutover_core::state::Final::Outcome(Outcome::Promoted))
    );
    assert!(stored.version > 5);
    assert!(store.path(&id).exists());
}

async fn sample_state() -> RolloutState {
    let store = MemoryStateStore::new();
    let rollout = builder("sample", plan(Canary::new([weight(10)])))
        .router(FakeRouter::new("mesh"))
        .state_store(store.clone())
        .build()
        .unwrap();
    rollout.run().await.unwrap();
    store
        .load(&RolloutId::new("sample").unwrap())
        .await
        .unwrap()
        .unwrap()
        .state
}

#[tokio::test(start_paused = true)]
async fn file_store_compares_and_swaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStateStore::new(dir.path()).unwrap();
    let id = RolloutId::new("cas").unwrap();
    let state = sample_state().await;
    assert!(store.load(&id).await.unwrap().is_none());
    assert_eq!(store.save(&id, &state, None).await.unwrap(), 1);
    assert!(matches!(
        store.save(&id, &state, None).await,
        Err(StoreError::Conflict {
            expected: None,
            found: Some(1),
            ..
        })
    ));
    assert_eq!(store.save(&id, &state, Some(1)).await.unwrap(), 2);
    assert!(matches!(
        store.save(&id, &state, Some(1)).await,
        Err(StoreError::Conflict {
            expected: Some(1),
            found: Some(2),
            ..
        })
    ));
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!((loaded.version, &loaded.state), (2, &state));
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
}

#[tokio::test(start_paused = true)]
async fn file_store_rejects_corrupt_and_future_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStateStore::new(dir.path()).unwrap();
    let id = RolloutId::new("bad").unwrap();
    std::fs::write(store.path(&id), "3\n{not json").unwrap();
    assert!(matches!(
        store.load(&id).await,
        Err(StoreError::Corrupt { .. })
    ));
    std::fs::write(store.path(&id), "no version line").unwrap();
    assert!(matches!(
        store.load(&id).await,
        Err(StoreError::Corrupt { .. })
    ));

    let mut json = serde_json::to_value(sample_state().await).unwrap();
    json["format"] = 99.into();
    std::fs::write(store.path(&id), format!("3\n{json}")).unwrap();
    let err = store.load(&id).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Format { found: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("format 99"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn concurrent_file_saves_from_threads_serialize() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStateStore::new(dir.path()).unwrap();
    let id = RolloutId::new("race").unwrap();
    let state = sample_state().await;
    store.save(&id, &state, None).await.unwrap();
    // Eight writers all expect version 1: exactly one may win.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, id, state) = (store.clone(), id.clone(), state.clone());
        tasks.push(tokio::spawn(async move {
            store.save(&id, &state, Some(1)).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(2) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
}

/// A store that lets one more write of the previous engine land right before the first save it
/// sees, the way the last write of a dying process can arrive late.
#[derive(Debug, Clone)]
struct LateWrite {
    inner: MemoryStateStore,
    pending: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl StateStore for LateWrite {
    fn name(&self) -> &'static str {
        "late-write"
    }
    async fn load(&self, id: &RolloutId) -> Result<Option<cutover_core::Stored>, StoreError> {
        self.inner.load(id).await
    }
    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        if self
            .pending
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            let current = self.inner.load(id).await?.expect("a stored rollout");
            self.inner
                .save(id, &current.state, Some(current.version))
                .await?;
        }
        self.inner.save(id, state, expected).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_late_write_of_a_dead_engine_does_not_stop_the_next_one() {
    let store = MemoryStateStore::new();
    let router = FakeRouter::new("mesh");
    let first = builder("late", plan(paused_canary()))
        .router(router.clone())
        .state_store(store.clone())
        .build()
        .unwrap();
    assert!(matches!(
        first.run().await,
        Err(RolloutError::Paused { .. })
    ));

    let late = LateWrite {
        inner: store.clone(),
        pending: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
    };
    let second = builder("late", plan(paused_canary()))
        .router(router.clone())
        .state_store(late)
        .build()
        .unwrap();
    let handle = second.handle();
    handle.resume().unwrap();
    assert_eq!(second.run().await.unwrap(), Outcome::Promoted);
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10), pct(50), pct(100)]
    );
}

#[tokio::test(start_paused = true)]
async fn an_abort_queued_before_resuming_runs_after_the_pending_action() {
    let canary = || {
        plan(Canary::new([
            weight(10),
            weight(50),
            CanaryStep::pause(mins(5)),
        ]))
    };
    let intent_50 = |state: &RolloutState| {
        matches!(&state.pending, Some(cutover_core::planner::Action::SetSplit { split })
            if split.weight(&candidate()).basis_points() == pct(50))
    };
    // Kill the first engine right after it saved its intent to go to 50 %.
    let mut crash_at = 1;
    let (router, store) = loop {
        let router = FakeRouter::new("mesh");
        let store = cutover_test::CrashingStore::new(crash_at, cutover_test::CrashMode::AfterSave);
        let first = builder("abort-pending", canary())
            .router(router.clone())
            .state_store(store.clone())
            .build()
            .unwrap();
        tokio::select! {
            r = first.run() => panic!("no save held the 50 % intent: {r:?}"),
            () = store.crashed() => {}
        }
        let stored = store
            .inner()
            .load(&RolloutId::new("abort-pending").unwrap())
            .await
            .unwrap()
            .unwrap();
        if intent_50(&stored.state) {
            break (router, store.inner());
        }
        crash_at += 1;
    };
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10)],
        "the 50 % split was not sent yet"
    );

    let second = builder("abort-pending", canary())
        .router(router.clone())
        .state_store(store)
        .build()
        .unwrap();
    let handle = second.handle();
    handle.abort("stop it").unwrap();
    assert!(matches!(
        second.run().await.unwrap(),
        Outcome::Aborted { .. }
    ));
    // The pending 50 % was decided before the abort, so it is carried out first; once the
    // abort is accepted, only rollback actions follow.
    assert_eq!(candidate_weights(&router.splits()), [pct(10), pct(50), 0]);
    let s = summaries(&handle.records());
    assert!(
        position(&s, "set split v1 50%, v2 50%")
            < position(&s, "command abort (stop it): rolling back"),
        "{s:#?}"
    );
}
