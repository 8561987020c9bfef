//! The post-promotion bake on paused time: pass, roll back, alert, and resume from the store.

use std::sync::Arc;
use std::time::Duration;

use cutover_core::guard::{Bake, BakeEvent, BakeOutcome, GuardEntry};
use cutover_core::{
    Clock, MemoryStateStore, Revisions, StateStore, TokioClock, TrafficSplit, Verdict,
};
use cutover_test::{FakeRouter, FakeWorkload, ScriptedAnalysis};

const MINUTE: Duration = Duration::from_mins(1);

fn revisions() -> Revisions {
    Revisions::new("v1", "v2").unwrap()
}

fn bake(analysis: &ScriptedAnalysis, router: &FakeRouter) -> Bake {
    Bake::new("checkout".parse().unwrap(), revisions(), 10 * MINUTE)
        .interval(MINUTE)
        .analysis("errors", analysis.clone())
        .router(router.clone())
}

use Verdict::{Fail, Inconclusive, Pass};

#[tokio::test(start_paused = true)]
async fn a_clean_bake_passes_after_its_period_and_touches_nothing() {
    let (analysis, router) = (ScriptedAnalysis::verdicts([Pass]), FakeRouter::new("mesh"));
    let start = tokio::time::Instant::now();
    let outcome = bake(&analysis, &router).run().await.unwrap();
    assert_eq!(outcome, BakeOutcome::Passed);
    assert_eq!(start.elapsed(), 10 * MINUTE);
    assert_eq!(analysis.calls().len(), 10);
    assert!(router.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failure_rolls_back_to_the_previous_revision_at_once() {
    let analysis = ScriptedAnalysis::verdicts([Pass, Pass, Fail]);
    let router = FakeRouter::new("mesh");
    let workload = FakeWorkload::new("deploy");
    workload.set_replicas(&revisions().stable, 3);
    let start = tokio::time::Instant::now();
    let b = bake(&analysis, &router).workload(workload);
    let mut events = b.subscribe();
    let outcome = b.run().await.unwrap();
    assert!(
        matches!(&outcome, BakeOutcome::RolledBack { to, reason } if *to == revisions().stable && reason.starts_with("errors:"))
    );
    assert_eq!(start.elapsed(), 3 * MINUTE);
    assert_eq!(router.splits(), [TrafficSplit::all_to(&revisions().stable)]);
    let mut last = None;
    while let Ok(record) = events.try_recv() {
        last = Some(record);
    }
    assert!(matches!(
        last.map(|r| r.entry),
        Some(GuardEntry::Bake {
            event: BakeEvent::RolledBack { .. }
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_the_previous_revision_is_gone_raises_an_alert() {
    // Kept for 2 minutes after promotion (a blue-green scale-down delay); fails at minute 3.
    let analysis = ScriptedAnalysis::verdicts([Pass, Pass, Fail]);
    let router = FakeRouter::new("mesh");
    let outcome = bake(&analysis, &router)
        .previous_kept_for(2 * MINUTE)
        .run()
        .await
        .unwrap();
    assert!(
        matches!(&outcome, BakeOutcome::Alerted { reason } if reason.contains("v1 was kept for 2m"))
    );
    assert!(router.calls().is_empty());

    // Scaled to zero: the workload says so.
    let router = FakeRouter::new("mesh");
    let workload = FakeWorkload::new("deploy");
    workload.set_replicas(&revisions().stable, 0);
    let outcome = bake(&ScriptedAnalysis::verdicts([Fail]), &router)
        .workload(workload)
        .run()
        .await
        .unwrap();
    assert!(
        matches!(&outcome, BakeOutcome::Alerted { reason } if reason.contains("v1 has no ready replicas"))
    );
    assert!(router.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_bake_without_a_conclusive_measurement_does_not_pass() {
    let router = FakeRouter::new("mesh");
    let outcome = bake(&ScriptedAnalysis::verdicts([Inconclusive]), &router)
        .run()
        .await
        .unwrap();
    assert!(
        matches!(&outcome, BakeOutcome::Alerted { reason } if reason.contains("no conclusive measurement of errors"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_restarted_bake_continues_its_period() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let (analysis, router) = (ScriptedAnalysis::verdicts([Pass]), FakeRouter::new("mesh"));
    // One clock for both runs, as a restarted process reads one wall clock.
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let start = tokio::time::Instant::now();
    let first = bake(&analysis, &router)
        .store(store.clone())
        .clock(clock.clone());
    assert!(
        tokio::time::timeout(Duration::from_secs(210), first.run())
            .await
            .is_err()
    );
    assert_eq!(analysis.calls().len(), 3);
    let outcome = bake(&analysis, &router)
        .store(store.clone())
        .clock(clock)
        .run()
        .await
        .unwrap();
    assert_eq!(outcome, BakeOutcome::Passed);
    assert_eq!(
        start.elapsed(),
        10 * MINUTE,
        "the period counts from the first start"
    );
    assert_eq!(analysis.calls().len(), 10);
    // A finished bake answers its outcome without measuring again.
    let again = bake(&analysis, &router).store(store).run().await.unwrap();
    assert_eq!(again, BakeOutcome::Passed);
    assert_eq!(analysis.calls().len(), 10);
}
