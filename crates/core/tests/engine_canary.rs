//! Canary scenarios on paused time.

mod common;

use common::*;
use cutover_core::{Canary, CanaryStep, Outcome, StopReason, Verdict};
use cutover_test::{FakeRouter, ScriptedAnalysis};

#[tokio::test(start_paused = true)]
async fn canary_promotes_when_analysis_passes() {
    let router = FakeRouter::new("mesh");
    let checks = ScriptedAnalysis::verdicts([Verdict::Pass]);
    let canary = Canary::new([
        weight(10),
        CanaryStep::pause(mins(5)),
        analysis("errors"),
        weight(50),
        CanaryStep::pause(mins(5)),
        analysis("errors"),
    ]);
    let rollout = builder("promotes", plan(canary))
        .router(router.clone())
        .analysis("errors", checks.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let started = tokio::time::Instant::now();
    let outcome = rollout.run().await.unwrap();

    assert_eq!(outcome, Outcome::Promoted);
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10), pct(50), pct(100)]
    );
    assert_eq!(checks.calls().len(), 2);
    // Two 5-minute pauses on virtual time.
    assert!(started.elapsed() >= mins(10), "{:?}", started.elapsed());
    let records = handle.records().await.unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.summary.contains("finished: promoted")),
        "{records:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn canary_rolls_back_at_the_first_failing_verdict() {
    let router = FakeRouter::new("mesh");
    let checks = ScriptedAnalysis::verdicts([Verdict::Pass, Verdict::Fail, Verdict::Pass]);
    let canary = Canary::new([
        weight(10),
        analysis("errors"),
        weight(30),
        analysis("errors"),
        weight(60),
        analysis("errors"),
    ]);
    let rollout = builder("rolls-back", plan(canary))
        .router(router.clone())
        .analysis("errors", checks.clone())
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();

    let Outcome::RolledBack(StopReason::AnalysisFailed { analysis, summary }) = &outcome else {
        panic!("expected an analysis failure, got {outcome:?}");
    };
    assert_eq!(analysis, "errors");
    assert!(summary.contains("scripted fail"), "{summary}");
    // 10 %, 30 %, then straight back to 0 with one call: never 60 %.
    assert_eq!(candidate_weights(&router.splits()), [pct(10), pct(30), 0]);
    assert_eq!(checks.calls().len(), 2, "no measurement after the failure");
}

#[tokio::test(start_paused = true)]
async fn pause_step_waits_for_resume() {
    let router = FakeRouter::new("mesh");
    let canary = Canary::new([weight(10), CanaryStep::pause_until_resumed(), weight(50)]);
    let rollout = builder("pause-resume", plan(canary))
        .router(router.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());

    until(&mut events, is_pause).await;
    // A day of virtual time changes nothing while paused.
    tokio::time::sleep(mins(24 * 60)).await;
    assert_eq!(candidate_weights(&router.splits()), [pct(10)]);

    handle.resume("test").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10), pct(50), pct(100)]
    );
    let summaries = summaries(&handle.records().await.unwrap());
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("command resume by handle (test): resumed")),
        "{summaries:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn manual_pause_holds_a_timed_step_until_resumed() {
    let router = FakeRouter::new("mesh");
    let canary = Canary::new([weight(10), CanaryStep::pause(mins(5)), weight(50)]);
    let rollout = builder("manual-pause", plan(canary))
        .router(router.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());

    until(&mut events, |e| is_split_to(e, pct(10))).await;
    handle.pause("test").await.unwrap();
    tokio::time::sleep(mins(60)).await;
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10)],
        "paused: the 5-minute pause must not end"
    );
    handle.resume("test").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10), pct(50), pct(100)]
    );
}

#[tokio::test(start_paused = true)]
async fn promote_full_skips_remaining_steps() {
    let router = FakeRouter::new("mesh");
    let checks = ScriptedAnalysis::verdicts([Verdict::Pass]);
    let canary = Canary::new([
        weight(10),
        CanaryStep::pause_until_resumed(),
        weight(25),
        CanaryStep::pause(mins(60)),
        analysis("errors"),
        weight(75),
    ]);
    let rollout = builder("promote-full", plan(canary))
        .router(router.clone())
        .analysis("errors", checks.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());

    until(&mut events, is_pause).await;
    let before = tokio::time::Instant::now();
    handle.promote_full("test").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    assert_eq!(candidate_weights(&router.splits()), [pct(10), pct(100)]);
    assert!(checks.calls().is_empty(), "analysis was skipped");
    assert!(before.elapsed() < secs(1), "no pause was waited out");
}

#[tokio::test(start_paused = true)]
async fn promote_skips_only_the_current_step() {
    let router = FakeRouter::new("mesh");
    let canary = Canary::new([
        weight(10),
        CanaryStep::pause(mins(60)),
        weight(50),
        CanaryStep::pause(mins(5)),
    ]);
    let rollout = builder("promote-one", plan(canary))
        .router(router.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());

    until(&mut events, |e| is_split_to(e, pct(10))).await;
    let before = tokio::time::Instant::now();
    handle.promote("test").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    // The hour-long pause was skipped, the 5-minute one was not.
    let waited = before.elapsed();
    assert!(waited >= mins(5) && waited < mins(6), "{waited:?}");
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10), pct(50), pct(100)]
    );
}

#[tokio::test(start_paused = true)]
async fn abort_returns_all_traffic_to_stable() {
    let router = FakeRouter::new("mesh");
    let canary = Canary::new([
        weight(10),
        CanaryStep::SetHeaderRoute(
            cutover_core::HeaderRoute::new(
                "testers",
                [cutover_core::RouteMatch::header_exact("x-canary", "1")],
            )
            .unwrap(),
        ),
        weight(40),
        CanaryStep::pause_until_resumed(),
        weight(80),
    ]);
    let rollout = builder("abort", plan(canary))
        .router(router.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());

    until(&mut events, is_pause).await;
    assert_eq!(router.header_routes().len(), 1);
    handle.abort("error budget burned").await.unwrap();
    let outcome = run.await.unwrap().unwrap();
    assert_eq!(
        outcome,
        Outcome::Aborted {
            by: "handle".into(),
            reason: "error budget burned".into()
        }
    );
    assert_eq!(candidate_weights(&router.splits()), [pct(10), pct(40), 0]);
    assert!(
        router.header_routes().is_empty(),
        "managed routes are removed on abort"
    );
    let again = handle.abort("again").await;
    assert!(
        matches!(again, Err(cutover_core::StoreError::Finished { .. })),
        "a finished rollout takes no commands: {again:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn transient_router_errors_are_retried_with_backoff() {
    let router = FakeRouter::new("mesh");
    router
        .faults()
        .fail("set_split", cutover_core::ErrorKind::Transient, 2);
    let rollout = builder("retry", plan(Canary::new([weight(10)])))
        .router(router.clone())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let (outcome, events) = run_collecting(rollout).await;

    assert_eq!(outcome.unwrap(), Outcome::Promoted);
    assert_eq!(candidate_weights(&router.splits()), [pct(10), pct(100)]);
    let retries: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            cutover_core::RolloutEvent::Retrying {
                op, attempt, delay, ..
            } => Some((op.clone(), *attempt, *delay)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries,
        [
            ("set_split".to_owned(), 1, secs(1)),
            ("set_split".to_owned(), 2, secs(2))
        ]
    );
    assert_eq!(
        router.calls().iter().filter(|c| *c == "set_split").count(),
        4,
        "3 attempts, then the promotion"
    );
    assert!(started.elapsed() >= secs(3));
}

#[tokio::test(start_paused = true)]
async fn permanent_router_error_ends_with_err_and_traffic_on_stable() {
    let router = FakeRouter::new("mesh");
    router
        .faults()
        .fail_call("set_split", 2, cutover_core::ErrorKind::Permanent);
    let canary = Canary::new([weight(10), weight(50)]);
    let rollout = builder("permanent", plan(canary))
        .router(router.clone())
        .build()
        .unwrap();

    let err = rollout.run().await.unwrap_err();
    let cutover_core::RolloutError::Provider {
        op,
        provider,
        rolled_back,
        source,
    } = &err
    else {
        panic!("expected a provider error, got {err:?}");
    };
    assert_eq!(
        (op.as_str(), provider.as_str(), *rolled_back),
        ("set_split", "mesh", true)
    );
    assert_eq!(source.kind(), cutover_core::ErrorKind::Permanent);
    assert_eq!(
        router.calls().iter().filter(|c| *c == "set_split").count(),
        3,
        "a permanent error is not retried"
    );
    assert!(all_stable(&router.current().unwrap()));
    assert!(err.to_string().contains("returned to stable"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_split_the_router_does_not_apply_is_an_error() {
    let router = FakeRouter::new("mesh");
    // The data plane stays on stable whatever is set, for the first five reads.
    router.misreport(cutover_core::TrafficSplit::all_to(&stable()), 5);
    let rollout = builder("misreport", plan(Canary::new([weight(10)])))
        .router(router.clone())
        .build()
        .unwrap();
    let err = rollout.run().await.unwrap_err();
    let cutover_core::RolloutError::Provider {
        source,
        rolled_back: true,
        ..
    } = &err
    else {
        panic!("expected a provider error after rollback, got {err:?}");
    };
    assert!(
        source.message().contains("reports split v1 100%"),
        "{}",
        source.chain()
    );
    assert!(all_stable(&router.current().unwrap()));
}
