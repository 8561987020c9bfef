//! State stores, resuming, and engines competing for one rollout.

mod common;

use common::*;
use cutover_core::state::RolloutState;
use cutover_core::{
    Canary, CanaryStep, ErrorKind, FileStateStore, MemoryStateStore, Outcome, RolloutError,
    RolloutId, StateStore, StopReason, StoreError, Verdict,
};
use cutover_test::{FakeRouter, ScriptedAnalysis};
use std::time::Duration;

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
        matches!(loser, Err(RolloutError::Owned { .. })),
        "the second engine is refused while the first holds the lease: {loser:?}"
    );
    // The splits are those of one rollout: nothing was applied twice.
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10), pct(50), pct(100)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_engine_is_refused_while_the_first_lives_unless_it_takes_over() {
    let store = MemoryStateStore::new();
    let router = FakeRouter::new("mesh");
    let make = |engine: &str| {
        builder("takeover", plan(paused_canary()))
            .router(router.clone())
            .state_store(store.clone())
            .engine_id(engine)
    };
    let first = make("first").build().unwrap();
    let first_handle = first.handle().by("alice");
    let mut first_events = events(&first);
    let first_run = tokio::spawn(first.run());
    until(&mut first_events, is_pause).await;

    // Without force: refused, naming the owner, and nothing is recorded.
    let err = make("second").build().unwrap().run().await.unwrap_err();
    assert!(
        matches!(&err, RolloutError::Owned { owner, .. } if owner == "first"),
        "{err:?}"
    );
    assert!(err.to_string().contains("take it over"), "{err}");

    let second = make("second")
        .take_over("bob", "first host is unresponsive")
        .build()
        .unwrap();
    let second_handle = second.handle().by("bob");
    let mut second_events = events(&second);
    let second_run = tokio::spawn(second.run());
    until(
        &mut second_events,
        |e| matches!(e, cutover_core::RolloutEvent::Record(r) if r.summary.starts_with("resumed by second")),
    )
    .await;

    // The first engine wakes up on a command, finds it was superseded and stops. The command
    // is left in the inbox for the new owner.
    first_handle.resume("go on").await.unwrap();
    assert!(matches!(
        first_run.await.unwrap(),
        Err(RolloutError::Superseded { .. })
    ));
    assert_eq!(second_run.await.unwrap().unwrap(), Outcome::Promoted);
    // The splits are those of one rollout: the stale engine applied nothing twice.
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10), pct(50), pct(100)]
    );
    let records = second_handle.records().await.unwrap();
    let takeover = records
        .iter()
        .find_map(|r| match &r.entry {
            cutover_core::Entry::Started {
                takeover: Some(t), ..
            } => Some(t.clone()),
            _ => None,
        })
        .expect("the takeover is recorded");
    assert_eq!(
        (
            takeover.from.as_str(),
            takeover.by.as_str(),
            takeover.reason.as_str()
        ),
        ("first", "bob", "first host is unresponsive")
    );
    let s = summaries(&records);
    assert!(
        s.iter()
            .any(|s| s.starts_with("command resume by alice (go on): resumed")),
        "{s:#?}"
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
    // The first engine runs until the pause, then its process goes away.
    assert!(
        run_until_idle(make()).await.is_none(),
        "it waits at the pause"
    );

    // A command sent while no engine runs the rollout is applied when one resumes it, once.
    let rollout = make();
    let handle = rollout.handle();
    handle.resume("test").await.unwrap();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10), pct(50), pct(100)]
    );
    let s = summaries(&handle.records().await.unwrap());
    assert_eq!(s.iter().filter(|s| s.starts_with("started by")).count(), 1);
    assert_eq!(s.iter().filter(|s| s.starts_with("resumed by")).count(), 1);
    assert_eq!(
        s.iter().filter(|s| s.starts_with("command resume")).count(),
        1,
        "{s:#?}"
    );
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
    assert!(run_until_idle(first).await.is_none());
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
    store.expect_acquire().returning(|_, claim| {
        Ok(cutover_core::Acquired::new(
            cutover_core::Lease {
                owner: claim.owner.clone(),
                epoch: 1,
                expires_at: None,
                ttl: claim.ttl,
            },
            None,
        ))
    });
    store
        .expect_watch()
        .returning(|_| cutover_core::Watch::Poll(Duration::from_secs(1)));
    store.expect_release().returning(|_, _| Ok(()));
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
    let dir = store.rollout_dir(&id);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // The lease was released when the run ended.
    assert_eq!(names, [".lock", "log.jsonl", "state.json"], "{dir:?}");
    let log = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    assert_eq!(
        log.lines().count() as u64,
        stored.state.last_seq,
        "one line per record"
    );
    // Records saved with the last state are in the log too (they leave the state at the next
    // save, which a finished rollout never makes).
    assert!(
        stored
            .state
            .unlogged
            .iter()
            .all(|r| r.seq <= stored.state.last_seq)
    );
    assert_eq!(
        store.records(&id, 0, 10_000).await.unwrap().len() as u64,
        stored.state.last_seq
    );
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
    let names: Vec<String> = std::fs::read_dir(store.rollout_dir(&id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
}

#[tokio::test(start_paused = true)]
async fn file_store_rejects_corrupt_old_and_future_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStateStore::new(dir.path()).unwrap();
    let id = RolloutId::new("bad").unwrap();
    let state_file = store.rollout_dir(&id).join("state.json");
    std::fs::create_dir_all(store.rollout_dir(&id)).unwrap();
    std::fs::write(&state_file, "{not json").unwrap();
    let err = store.load(&id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("state.json"), "{err}");

    let mut json = serde_json::to_value(sample_state().await).unwrap();
    json["format"] = 99.into();
    std::fs::write(&state_file, format!("{{\"version\":3,\"state\":{json}}}")).unwrap();
    let err = store.load(&id).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Format { found: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("format 99"), "{err}");

    // A rollout written by cutover 0.1: `<id>.json` starting with a bare version line.
    let old = RolloutId::new("old").unwrap();
    let mut v1 = serde_json::to_value(sample_state().await).unwrap();
    v1["format"] = 1.into();
    std::fs::write(dir.path().join("old.json"), format!("7\n{v1}")).unwrap();
    let err = store.load(&old).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Format { found: 1, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("old.json") && message.contains("cutover 0.1"),
        "{message}"
    );
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

store_with_save!(LateWrite, |this, id, state, expected| {
    if this
        .pending
        .swap(false, std::sync::atomic::Ordering::SeqCst)
    {
        let current = this.inner.load(id).await?.expect("a stored rollout");
        this.inner
            .save(id, &current.state, Some(current.version))
            .await?;
    }
    this.inner.save(id, state, expected).await
});

#[tokio::test(start_paused = true)]
async fn a_late_write_of_a_dead_engine_does_not_stop_the_next_one() {
    let store = MemoryStateStore::new();
    let router = FakeRouter::new("mesh");
    let first = builder("late", plan(paused_canary()))
        .router(router.clone())
        .state_store(store.clone())
        .build()
        .unwrap();
    assert!(
        run_until_idle(first).await.is_none(),
        "it waits at the pause"
    );

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
    handle.resume("test").await.unwrap();
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
        let store = cutover_test::CrashingStore::new(crash_at, cutover_test::CrashMode::AfterWrite);
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
    handle.abort("stop it").await.unwrap();
    assert!(matches!(
        second.run().await.unwrap(),
        Outcome::Aborted { .. }
    ));
    // The pending 50 % was decided before the abort, so it is carried out first; once the
    // abort is accepted, only rollback actions follow.
    assert_eq!(candidate_weights(&router.splits()), [pct(10), pct(50), 0]);
    let s = summaries(&handle.records().await.unwrap());
    assert!(
        position(&s, "set split v1 50%, v2 50%")
            < position(&s, "command abort by handle (stop it): rolling back"),
        "{s:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_lags_and_is_told_how_much_it_missed() {
    let router = FakeRouter::new("mesh");
    let rollout = builder(
        "lagging",
        plan(Canary::new([
            weight(10),
            weight(20),
            weight(30),
            weight(40),
        ])),
    )
    .router(router)
    .event_capacity(4)
    .build()
    .unwrap();
    let mut events = events(&rollout);
    // The engine never waits for the subscriber, which reads nothing until the end.
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    let first = futures_util::StreamExt::next(&mut events).await.unwrap();
    let cutover_core::RolloutEvent::Lagged { missed } = first else {
        panic!("expected a lag notice first, got {first:?}");
    };
    let rest: Vec<_> = futures_util::StreamExt::collect(events).await;
    assert_eq!(
        rest.len(),
        4,
        "the buffer holds the last 4 events: {rest:?}"
    );
    assert!(
        matches!(rest.last(), Some(cutover_core::RolloutEvent::Finished(_))),
        "{rest:?}"
    );
    assert!(missed > 10, "missed {missed}");
}

#[tokio::test(start_paused = true)]
async fn a_command_reaches_an_engine_on_the_memory_store_at_once() {
    let store = MemoryStateStore::new();
    let rollout = builder(
        "prompt",
        plan(Canary::new([
            weight(10),
            CanaryStep::pause(mins(10)),
            weight(50),
        ])),
    )
    .router(FakeRouter::new("mesh"))
    .state_store(store.clone())
    .build()
    .unwrap();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());
    until(&mut events, |e| is_split_to(e, pct(10))).await;
    let handle =
        cutover_core::RolloutHandle::new(store, RolloutId::new("prompt").unwrap()).by("alice");
    let sent_at = tokio::time::Instant::now();
    handle.abort("now").await.unwrap();
    until(&mut events, |e| {
        matches!(e, cutover_core::RolloutEvent::Record(r) if r.summary.starts_with("command abort by alice"))
    })
    .await;
    assert_eq!(
        tokio::time::Instant::now(),
        sent_at,
        "applied without any time passing"
    );
    assert!(matches!(
        run.await.unwrap().unwrap(),
        Outcome::Aborted { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn an_approval_gate_waits_for_a_person_through_the_store() {
    let store = MemoryStateStore::new();
    let router = FakeRouter::new("mesh");
    let rollout = builder("approved", plan(Canary::new([weight(10), weight(50)])))
        .router(router.clone())
        .gate(
            cutover_core::GateStage::BeforePromotion,
            cutover_core::ApprovalGate::new("change-board"),
        )
        .state_store(store.clone())
        .build()
        .unwrap();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());
    until(&mut events, |e| {
        matches!(e, cutover_core::RolloutEvent::Record(r) if r.summary.contains("gate `change-board`: pending"))
    })
    .await;
    // An hour later it still waits, with traffic at 50 %.
    tokio::time::sleep(mins(60)).await;
    assert_eq!(candidate_weights(&router.splits()), [pct(10), pct(50)]);

    let handle =
        cutover_core::RolloutHandle::new(store, RolloutId::new("approved").unwrap()).by("bob");
    // Bad input: no such gate; approving needs a gate name.
    handle.approve("no-such-gate", "?").await.unwrap();
    let err = handle
        .send(cutover_core::CommandRequest::new(
            cutover_core::Command::Approve,
            "bob",
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidCommand { .. }), "{err:?}");
    handle
        .approve("change-board", "CAB-1234 signed")
        .await
        .unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    let s = summaries(&handle.records().await.unwrap());
    assert!(
        s.iter()
            .any(|s| s
                == "command approve by bob (?) refused: the rollout has no gate `no-such-gate`"),
        "{s:#?}"
    );
    assert!(
        s.iter()
            .any(|s| s == "command approve by bob (CAB-1234 signed): gate `change-board` approved"),
        "{s:#?}"
    );
    assert!(s.iter().any(|s| s == "gate `change-board`: open"), "{s:#?}");
    // Waiting an hour for a person costs a record every 5 minutes, not every second.
    let pending = s.iter().filter(|s| s.contains("pending")).count();
    assert!((12..=14).contains(&pending), "{pending} pending checks");
    // The approval was acted on without waiting for the next poll.
    let approved = position(&s, "gate `change-board` approved");
    assert_eq!(s[approved + 1], "gate `change-board`: open", "{s:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_rejected_approval_gate_rolls_back() {
    let store = MemoryStateStore::new();
    let router = FakeRouter::new("mesh");
    let rollout = builder("rejected", plan(Canary::new([weight(10)])))
        .router(router.clone())
        .gate(
            cutover_core::GateStage::BeforePromotion,
            cutover_core::ApprovalGate::new("change-board"),
        )
        .state_store(store.clone())
        .build()
        .unwrap();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());
    until(
        &mut events,
        |e| matches!(e, cutover_core::RolloutEvent::Record(r) if r.summary.contains("pending")),
    )
    .await;
    cutover_core::RolloutHandle::new(store, RolloutId::new("rejected").unwrap())
        .by("carol")
        .reject("change-board", "freeze week")
        .await
        .unwrap();
    let outcome = run.await.unwrap().unwrap();
    assert_eq!(
        outcome.to_string(),
        "rolled back: gate `change-board` closed: rejected by carol: freeze week"
    );
    assert!(all_stable(&router.current().unwrap()));
}
