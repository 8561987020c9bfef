//! Gates, migrations, deadlines, several routers and routes: the safety rules of DESIGN.md.

mod common;

use std::time::Duration;

use common::*;
use cutover_core::{
    Canary, CanaryStep, ErrorKind, GateStage, GateVerdict, Granularity, HeaderRoute,
    MigrationPhase, Mirror, MockTrafficRouter, Outcome, ProviderError, RolloutError, RouteMatch,
    RouterCapabilities, Scale, StopReason, Weight,
};
use cutover_test::{FakeGate, FakeMigration, FakeRouter, FakeWorkload};

#[tokio::test(start_paused = true)]
async fn closed_preflight_gate_changes_nothing() {
    let router = FakeRouter::new("mesh");
    let migration = FakeMigration::new("add-column", MigrationPhase::Expand).reversible();
    let gate = FakeGate::new(
        "change-approved",
        [GateVerdict::Closed {
            reason: "ticket CHG-1 rejected".into(),
        }],
    );
    let rollout = builder("gate-closed", plan(Canary::new([weight(10)])))
        .router(router.clone())
        .migration(migration.clone())
        .gate(GateStage::PreFlight, FakeGate::open("backup-fresh"))
        .gate(GateStage::PreFlight, gate)
        .build()
        .unwrap();
    let handle = rollout.handle();
    let outcome = rollout.run().await.unwrap();
    assert_eq!(
        outcome,
        Outcome::RolledBack(StopReason::GateClosed {
            gate: "change-approved".into(),
            reason: "ticket CHG-1 rejected".into()
        })
    );
    assert!(router.calls().is_empty(), "no router call at all");
    assert_eq!(migration.applies(), 0);
    let summaries = summaries(&handle.records().await.unwrap());
    assert!(
        position(&summaries, "gate `backup-fresh`")
            < position(&summaries, "gate `change-approved`")
    );
}

#[tokio::test(start_paused = true)]
async fn pending_gate_is_polled_until_open() {
    let router = FakeRouter::new("mesh");
    let pending = GateVerdict::Pending {
        detail: "waiting for approval".into(),
    };
    let gate = FakeGate::new("approval", [pending.clone(), pending, GateVerdict::Open])
        .with_poll_interval(secs(30));
    let rollout = builder("gate-pending", plan(Canary::new([weight(10)])))
        .router(router.clone())
        .gate(GateStage::PreFlight, gate.clone())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    assert_eq!(gate.checks(), 3);
    assert_eq!(started.elapsed(), secs(60));
}

#[tokio::test(start_paused = true)]
async fn pending_gate_times_out_closed() {
    let router = FakeRouter::new("mesh");
    let gate = FakeGate::new(
        "approval",
        [GateVerdict::Pending {
            detail: "nobody looked".into(),
        }],
    )
    .with_poll_interval(secs(60))
    .with_timeout(mins(10));
    let rollout = builder("gate-timeout", plan(Canary::new([weight(10)])))
        .router(router.clone())
        .gate(GateStage::PreFlight, gate.clone())
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    let Outcome::RolledBack(StopReason::GateClosed { reason, .. }) = &outcome else {
        panic!("expected a closed gate, got {outcome:?}");
    };
    assert!(reason.contains("still pending after 10m"), "{reason}");
    assert_eq!(gate.checks(), 10);
    assert!(router.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn gate_errors_close_the_gate() {
    let router = FakeRouter::new("mesh");
    let gate = FakeGate::open("webhook");
    gate.faults().fail_always("check", ErrorKind::Transient);
    let rollout = builder("gate-error", plan(Canary::new([weight(10)])))
        .router(router.clone())
        .gate(GateStage::PreFlight, gate.clone())
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    assert!(
        matches!(outcome, Outcome::RolledBack(StopReason::GateClosed { .. })),
        "{outcome:?}"
    );
    assert_eq!(gate.checks(), 5, "retried up to max_attempts first");
}

#[tokio::test(start_paused = true)]
async fn closed_promotion_gate_rolls_back_before_the_switch() {
    let router = FakeRouter::new("mesh");
    let gate = FakeGate::new(
        "confirm-promotion",
        [GateVerdict::Closed {
            reason: "freeze".into(),
        }],
    );
    let rollout = builder(
        "gate-promotion",
        plan(Canary::new([weight(10), weight(50)])),
    )
    .router(router.clone())
    .gate(GateStage::BeforePromotion, gate)
    .build()
    .unwrap();
    let outcome = rollout.run().await.unwrap();
    assert!(
        matches!(outcome, Outcome::RolledBack(StopReason::GateClosed { .. })),
        "{outcome:?}"
    );
    assert_eq!(candidate_weights(&router.splits()), [pct(10), pct(50), 0]);
}

#[tokio::test(start_paused = true)]
async fn expand_runs_before_traffic_and_contract_after_promotion_and_bake() {
    let router = FakeRouter::new("mesh");
    let expand = FakeMigration::new("add-status-column", MigrationPhase::Expand).reversible();
    let contract = FakeMigration::new("drop-old-column", MigrationPhase::Contract);
    let plan = plan(Canary::new([weight(10), CanaryStep::pause(mins(1))])).with_bake_time(mins(30));
    let rollout = builder("migrations", plan)
        .router(router.clone())
        .migration(expand.clone())
        .migration(contract.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let started = tokio::time::Instant::now();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    assert_eq!((expand.applies(), contract.applies()), (1, 1));
    let summaries = summaries(&handle.records().await.unwrap());
    let expanded = position(&summaries, "apply migration `add-status-column`");
    let first_split = position(&summaries, "set split v1 90%, v2 10%");
    let promoted = position(&summaries, "set split v1 0%, v2 100%");
    let contracted = position(&summaries, "apply migration `drop-old-column`");
    assert!(
        expanded < first_split && promoted < contracted,
        "{summaries:#?}"
    );
    // One minute of canary, then 30 minutes of bake time from promotion.
    assert_eq!(started.elapsed(), mins(31));
}

#[tokio::test(start_paused = true)]
async fn abort_reverts_reversible_expand_steps_in_reverse_order() {
    let router = FakeRouter::new("mesh");
    let first = FakeMigration::new("create-table", MigrationPhase::Expand).reversible();
    let second = FakeMigration::new("backfill", MigrationPhase::Expand);
    let third = FakeMigration::new("add-index", MigrationPhase::Expand).reversible();
    let contract = FakeMigration::new("drop-old", MigrationPhase::Contract);
    let rollout = builder(
        "revert",
        plan(Canary::new([weight(10), CanaryStep::pause_until_resumed()])),
    )
    .router(router.clone())
    .migration(first.clone())
    .migration(second.clone())
    .migration(third.clone())
    .migration(contract.clone())
    .build()
    .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());
    until(&mut events, is_pause).await;
    handle.abort("bad canary").await.unwrap();
    assert!(matches!(
        run.await.unwrap().unwrap(),
        Outcome::Aborted { .. }
    ));

    assert_eq!(
        (first.reverts(), second.reverts(), third.reverts()),
        (1, 0, 1)
    );
    assert!(
        second.is_applied_now(),
        "an irreversible step stays in place"
    );
    assert_eq!(
        contract.applies(),
        0,
        "contract never runs without promotion"
    );
    let summaries = summaries(&handle.records().await.unwrap());
    let stable_again = position(&summaries, "set split v1 100%, v2 0%");
    assert!(stable_again < position(&summaries, "revert migration `add-index`"));
    assert!(
        position(&summaries, "revert migration `add-index`")
            < position(&summaries, "revert migration `create-table`")
    );
}

#[tokio::test(start_paused = true)]
async fn an_expand_step_that_failed_part_way_is_reverted_too() {
    let router = FakeRouter::new("mesh");
    let first = FakeMigration::new("create-table", MigrationPhase::Expand).reversible();
    let second = FakeMigration::new("backfill", MigrationPhase::Expand).reversible();
    let third = FakeMigration::new("add-index", MigrationPhase::Expand).reversible();
    second.faults().fail_always("apply", ErrorKind::Permanent);
    let rollout = builder("half-applied", plan(Canary::new([weight(10)])))
        .router(router.clone())
        .migration(first.clone())
        .migration(second.clone())
        .migration(third.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    assert!(matches!(
        rollout.run().await,
        Err(RolloutError::Provider { .. })
    ));

    // The failed step may have changed something before failing, so it is reverted, then the
    // one before it; the step after it never ran and is left alone.
    let reverts = |m: &FakeMigration| m.faults().calls("revert");
    assert_eq!(
        (reverts(&first), reverts(&second), reverts(&third)),
        (1, 1, 0)
    );
    assert_eq!(third.applies(), 0);
    assert!(
        !router.calls().iter().any(|op| op == "set_split"),
        "traffic was never touched"
    );
    let summaries = summaries(&handle.records().await.unwrap());
    assert!(
        position(&summaries, "revert migration `backfill`")
            < position(&summaries, "revert migration `create-table`")
    );
}

#[tokio::test(start_paused = true)]
async fn abort_is_refused_past_the_point_of_no_return() {
    let router = FakeRouter::new("mesh");
    let workload = FakeWorkload::new("deployments");
    workload.set_replicas(&stable(), 4);
    let contract = FakeMigration::new("drop-old", MigrationPhase::Contract);
    let plan = plan(Canary::new([weight(50)])).with_bake_time(mins(30));
    let rollout = builder("no-return", plan)
        .router(router.clone())
        .workload(workload.clone())
        .migration(contract.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());
    // The old revision is scaled down 30 s after the switch; then bake time runs.
    until(&mut events, |e| {
        decision(e).is_some_and(|d| format!("{d:?}").contains("replicas: 0"))
    })
    .await;
    handle.abort("too late").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    assert_eq!(contract.applies(), 1);
    let summaries = summaries(&handle.records().await.unwrap());
    assert!(
        summaries
            .iter()
            .any(|s| s.contains("command abort by handle (too late) refused")
                && s.contains("point of no return")),
        "{summaries:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn abort_during_scale_down_delay_still_rolls_back() {
    let router = FakeRouter::new("mesh");
    let workload = FakeWorkload::new("deployments");
    workload.set_replicas(&stable(), 4);
    let rollout = builder("abort-in-delay", plan(Canary::new([weight(50)])))
        .router(router.clone())
        .workload(workload.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());
    until(&mut events, |e| is_split_to(e, pct(100))).await;
    handle
        .abort("smoke test failed after switch")
        .await
        .unwrap();
    assert!(matches!(
        run.await.unwrap().unwrap(),
        Outcome::Aborted { .. }
    ));
    assert_eq!(candidate_weights(&router.splits()), [pct(50), pct(100), 0]);
    assert_eq!(
        workload.desired(&stable()),
        4,
        "the old revision was never scaled down"
    );
}

#[tokio::test(start_paused = true)]
async fn progress_deadline_rolls_back_a_stuck_scale_step() {
    let router = FakeRouter::new("mesh");
    let workload = FakeWorkload::new("deployments");
    workload.stuck(&candidate(), 1);
    let canary = Canary::new([
        weight(10),
        CanaryStep::Scale(Scale { replicas: 3 }),
        weight(50),
    ]);
    let rollout = builder("deadline", plan(canary).with_progress_deadline(mins(5)))
        .router(router.clone())
        .workload(workload.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let started = tokio::time::Instant::now();
    let outcome = rollout.run().await.unwrap();
    let Outcome::RolledBack(StopReason::ProgressDeadline {
        deadline,
        waiting_for,
    }) = &outcome
    else {
        panic!("expected the deadline, got {outcome:?}");
    };
    assert_eq!(*deadline, mins(5));
    assert!(
        waiting_for.contains("3 ready replicas of `v2`") && waiting_for.contains("ready 1"),
        "{waiting_for}"
    );
    let records = handle.records().await.unwrap();
    let rollback = records
        .iter()
        .find(|r| r.summary.starts_with("roll back"))
        .unwrap();
    assert_eq!(
        rollback.at.saturating_since(records[0].at),
        mins(5),
        "rolled back at the deadline"
    );
    assert_eq!(candidate_weights(&router.splits()), [pct(10), 0]);
    // The candidate is scaled down after the default 30 s abort delay.
    assert_eq!(workload.desired(&candidate()), 0);
    assert_eq!(started.elapsed(), mins(5) + secs(30));
}

#[tokio::test(start_paused = true)]
async fn unhealthy_candidate_rolls_back() {
    let router = FakeRouter::new("mesh");
    let probe = cutover_test::FakeProbe::new();
    probe.script(
        &candidate(),
        [
            cutover_core::Health::Ready,
            cutover_core::Health::progressing("1/2 ready"),
            cutover_core::Health::failed("pod v2-abc in CrashLoopBackOff"),
        ],
    );
    let rollout = builder("unhealthy", plan(Canary::new([weight(10), weight(50)])))
        .router(router.clone())
        .health_probe(probe.clone())
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    let Outcome::RolledBack(StopReason::Unhealthy { revision, reason }) = &outcome else {
        panic!("expected unhealthy, got {outcome:?}");
    };
    assert_eq!(revision, &candidate());
    assert!(reason.contains("CrashLoopBackOff"), "{reason}");
    assert_eq!(candidate_weights(&router.splits()), [pct(10), pct(50), 0]);
    assert_eq!(probe.checks().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn every_router_gets_every_split_and_all_roll_back() {
    let east = FakeRouter::new("east");
    let west = FakeRouter::new("west");
    west.faults()
        .fail_call("set_split", 3, ErrorKind::Permanent);
    let rollout = builder(
        "regions",
        plan(Canary::new([weight(10), weight(20), weight(40)])),
    )
    .router(east.clone())
    .router(west.clone())
    .build()
    .unwrap();
    let err = rollout.run().await.unwrap_err();
    assert!(
        matches!(&err, RolloutError::Provider { provider, rolled_back: true, .. } if provider == "west"),
        "{err:?}"
    );
    assert_eq!(
        candidate_weights(&east.splits()),
        [pct(10), pct(20), pct(40), 0]
    );
    assert_eq!(candidate_weights(&west.splits()), [pct(10), pct(20), 0]);
    assert!(all_stable(&east.current().unwrap()) && all_stable(&west.current().unwrap()));
}

#[tokio::test(start_paused = true)]
async fn header_routes_and_mirrors_are_set_and_cleaned_up() {
    let router = FakeRouter::new("mesh");
    let route = HeaderRoute::new("testers", [RouteMatch::header_exact("x-canary", "1")]).unwrap();
    let mirror = Mirror::new("shadow", Weight::from_percent(20).unwrap(), []).unwrap();
    let canary = Canary::new([
        CanaryStep::SetMirror(mirror),
        CanaryStep::SetHeaderRoute(route),
        CanaryStep::pause_until_resumed(),
        CanaryStep::RemoveMirror("shadow".into()),
        weight(10),
        CanaryStep::pause_until_resumed(),
    ]);
    let rollout = builder("routes", plan(canary))
        .router(router.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());
    until(&mut events, is_pause).await;
    assert_eq!(router.header_routes()["testers"].1, candidate());
    assert_eq!(
        router.mirrors()["shadow"].0.percentage,
        Weight::from_percent(20).unwrap()
    );
    handle.resume("test").await.unwrap();
    until(&mut events, is_pause).await;
    assert!(router.mirrors().is_empty(), "removed by its step");
    assert_eq!(router.header_routes().len(), 1);
    handle.resume("test").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    assert!(router.header_routes().is_empty(), "removed at promotion");
}

#[tokio::test]
async fn plans_a_router_cannot_express_are_rejected_at_build() {
    let coarse =
        FakeRouter::new("istio").with_capabilities(RouterCapabilities::new(Granularity::PERCENT));
    let canary = Canary::new([CanaryStep::SetWeight(
        Weight::from_basis_points(50).unwrap(),
    )]);
    let err = builder("fine", plan(canary))
        .router(coarse)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "router `istio` cannot express strategy.canary.steps[0] (set_weight 0.5%): it sets weights in steps of 1%"
    );

    let no_headers = FakeRouter::new("selector")
        .with_capabilities(RouterCapabilities::new(Granularity::ALL_OR_NOTHING));
    let route = HeaderRoute::new("beta", [RouteMatch::cookie_exact("beta", "1")]).unwrap();
    let canary = Canary::new([CanaryStep::SetHeaderRoute(route), weight(100)]);
    let err = builder("cookies", plan(canary))
        .router(no_headers)
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("does not support cookie routes"),
        "{err}"
    );

    let err = builder("norouter", plan(Canary::new([weight(10)])))
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("needs at least one router"),
        "{err}"
    );

    let canary = Canary::new([weight(10), CanaryStep::Scale(Scale { replicas: 2 })]);
    let err = builder("noworkload", plan(canary))
        .router(FakeRouter::new("r"))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "strategy.canary.steps[1] (scale) needs a workload (.workload(..))"
    );

    let err = builder("unknown", plan(Canary::new([weight(10), analysis("nope")])))
        .router(FakeRouter::new("r"))
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("refers to analysis `nope`"),
        "{err}"
    );

    let err = builder("same", plan(Canary::new([weight(10)])))
        .revisions("v1", "v1")
        .router(FakeRouter::new("r"))
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("must be different revisions"),
        "{err}"
    );

    let err = builder("dup", plan(Canary::new([weight(10)])))
        .router(FakeRouter::new("r"))
        .migration(FakeMigration::new("m", MigrationPhase::Expand))
        .migration(FakeMigration::new("m", MigrationPhase::Contract))
        .build()
        .unwrap_err();
    assert_eq!(err.to_string(), "migration `m` is given twice");
}

#[tokio::test(start_paused = true)]
async fn throttled_errors_wait_at_least_as_long_as_asked() {
    let mut router = MockTrafficRouter::new();
    router.expect_name().return_const("alb".to_owned());
    router
        .expect_capabilities()
        .return_const(RouterCapabilities::new(Granularity::BASIS_POINT));
    let mut seq = mockall::Sequence::new();
    router
        .expect_set_split()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| {
            Err(ProviderError::throttled("Rate exceeded").with_retry_after(Duration::from_secs(7)))
        });
    router
        .expect_set_split()
        .times(2)
        .in_sequence(&mut seq)
        .returning(|_| Ok(()));
    router.expect_current_split().returning(|| Ok(None));

    let rollout = builder("throttled", plan(Canary::new([weight(10)])))
        .router(router)
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    assert_eq!(
        started.elapsed(),
        secs(7),
        "retry_after (7 s) beats the 1 s backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn a_manual_pause_holds_promotion_before_the_point_of_no_return() {
    let router = FakeRouter::new("mesh");
    let workload = FakeWorkload::new("deployments");
    workload.set_replicas(&stable(), 4);
    let contract = FakeMigration::new("drop-old", MigrationPhase::Contract);
    let rollout = builder("hold-promotion", plan(Canary::new([weight(50)])))
        .router(router.clone())
        .workload(workload.clone())
        .migration(contract.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());
    until(&mut events, |e| is_split_to(e, pct(100))).await;
    handle.pause("test").await.unwrap();
    // A day later the old revision still runs and nothing was contracted.
    tokio::time::sleep(mins(24 * 60)).await;
    assert_eq!(workload.desired(&stable()), 4);
    assert_eq!(contract.applies(), 0);
    handle.resume("test").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    assert_eq!((workload.desired(&stable()), contract.applies()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_manual_pause_holds_promotion_before_the_switch() {
    let router = FakeRouter::new("mesh");
    let gate = FakeGate::new(
        "confirm-promotion",
        [
            GateVerdict::Pending {
                detail: "waiting".into(),
            },
            GateVerdict::Open,
        ],
    );
    let rollout = builder("hold-switch", plan(Canary::new([weight(50)])))
        .router(router.clone())
        .gate(GateStage::BeforePromotion, gate.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());
    until(&mut events, |e| matches!(e, cutover_core::RolloutEvent::Record(r) if r.summary.contains("gate `confirm-promotion`"))).await;
    handle.pause("test").await.unwrap();
    tokio::time::sleep(mins(24 * 60)).await;
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(50)],
        "no switch while paused"
    );
    assert_eq!(gate.checks(), 1, "the gate is not even asked again");
    handle.resume("test").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    assert_eq!(candidate_weights(&router.splits()), [pct(50), pct(100)]);
}

/// A step that records whether each call was told the rollout is promoted.
#[derive(Debug, Clone)]
struct SeesPromotion {
    id: &'static str,
    phase: MigrationPhase,
    seen: std::sync::Arc<parking_lot::Mutex<Vec<(&'static str, bool)>>>,
}

#[async_trait::async_trait]
impl cutover_core::MigrationStep for SeesPromotion {
    fn id(&self) -> &str {
        self.id
    }
    fn phase(&self) -> MigrationPhase {
        self.phase
    }
    async fn apply(&self, ctx: &cutover_core::MigrationContext) -> Result<(), ProviderError> {
        self.seen.lock().push((self.id, ctx.promoted));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn only_contract_steps_are_told_the_rollout_is_promoted() {
    let seen = std::sync::Arc::default();
    let step = |id, phase| SeesPromotion {
        id,
        phase,
        seen: std::sync::Arc::clone(&seen),
    };
    let rollout = builder("promoted", plan(Canary::new([weight(50)])))
        .router(FakeRouter::new("mesh"))
        .migration(step("expand", MigrationPhase::Expand))
        .migration(step("contract", MigrationPhase::Contract))
        .build()
        .unwrap();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    assert_eq!(*seen.lock(), [("expand", false), ("contract", true)]);
}
