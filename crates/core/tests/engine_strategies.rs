//! Blue-green, rolling and A/B scenarios.

mod common;

use common::*;
use cutover_core::{
    AbTest, AnalysisRun, AnalysisTemplate, AutoPromotion, BlueGreen, HeaderRoute, Outcome,
    ProportionsTemplate, Quantity, Rolling, RouteMatch, Samples, StopReason, Verdict, Weight,
};
use cutover_test::{FakeProbe, FakeRouter, FakeWorkload, ScriptedAnalysis, ScriptedMetricSource};

fn blue_green() -> BlueGreen {
    BlueGreen {
        preview_route: Some(
            HeaderRoute::new("preview", [RouteMatch::header_exact("x-preview", "1")]).unwrap(),
        ),
        pre_promotion_analysis: Some(AnalysisRun::new("smoke")),
        post_promotion_analysis: Some(AnalysisRun::new("errors").with_count(3)),
        replicas: Some(4),
        preview_replicas: Some(1),
        ..BlueGreen::default()
    }
}

#[tokio::test(start_paused = true)]
async fn blue_green_previews_switches_once_and_retires_the_old_revision() {
    let router = FakeRouter::new("lb");
    let workload = FakeWorkload::new("deployments");
    workload.set_replicas(&stable(), 4);
    let smoke = ScriptedAnalysis::verdicts([Verdict::Pass]);
    let errors = ScriptedAnalysis::verdicts([Verdict::Pass]);
    let rollout = builder("bg", plan(blue_green()))
        .router(router.clone())
        .workload(workload.clone())
        .health_probe(FakeProbe::new())
        .analysis("smoke", smoke.clone())
        .analysis("errors", errors.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);

    // One switch, no intermediate weights.
    assert_eq!(candidate_weights(&router.splits()), [pct(100)]);
    assert_eq!(
        workload.scales(),
        [(candidate(), 1), (candidate(), 4), (stable(), 0)]
    );
    assert_eq!((smoke.calls().len(), errors.calls().len()), (1, 3));
    assert!(
        router.header_routes().is_empty(),
        "the preview route is removed after the switch"
    );
    let s = summaries(&handle.records().await.unwrap());
    assert!(position(&s, "set header route `preview`") < position(&s, "analysis `smoke` #1"));
    assert!(position(&s, "scale `v2` to 4") < position(&s, "set split"));
    assert!(position(&s, "analysis `errors` #3") < position(&s, "scale `v1` to 0"));
}

#[tokio::test(start_paused = true)]
async fn blue_green_post_promotion_failure_switches_back() {
    let router = FakeRouter::new("lb");
    let workload = FakeWorkload::new("deployments");
    workload.set_replicas(&stable(), 4);
    let rollout = builder("bg-back", plan(blue_green()))
        .router(router.clone())
        .workload(workload.clone())
        .analysis("smoke", ScriptedAnalysis::verdicts([Verdict::Pass]))
        .analysis(
            "errors",
            ScriptedAnalysis::verdicts([Verdict::Pass, Verdict::Fail]),
        )
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack(StopReason::AnalysisFailed { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(candidate_weights(&router.splits()), [pct(100), 0]);
    assert_eq!(
        workload.desired(&stable()),
        4,
        "stable was still running, so the switch back is instant"
    );
    assert_eq!(
        workload.desired(&candidate()),
        0,
        "scaled down after the abort delay"
    );
}

#[tokio::test(start_paused = true)]
async fn blue_green_keeps_the_candidate_when_abort_delay_is_null() {
    let router = FakeRouter::new("lb");
    let workload = FakeWorkload::new("deployments");
    let bg = BlueGreen {
        abort_scale_down_delay: None,
        ..blue_green()
    };
    let rollout = builder("bg-keep", plan(bg))
        .router(router)
        .workload(workload.clone())
        .analysis("smoke", ScriptedAnalysis::verdicts([Verdict::Fail]))
        .analysis("errors", ScriptedAnalysis::verdicts([Verdict::Pass]))
        .build()
        .unwrap();
    assert!(matches!(
        rollout.run().await.unwrap(),
        Outcome::RolledBack(_)
    ));
    assert_eq!(workload.desired(&candidate()), 1, "kept for debugging");
}

#[tokio::test(start_paused = true)]
async fn blue_green_waits_for_manual_promotion() {
    let router = FakeRouter::new("lb");
    let bg = BlueGreen {
        auto_promotion: AutoPromotion::Disabled,
        ..BlueGreen::default()
    };
    let rollout = builder("bg-manual", plan(bg))
        .router(router.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());
    until(&mut events, is_pause).await;
    assert!(router.splits().is_empty());
    handle.promote("test").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    assert_eq!(candidate_weights(&router.splits()), [pct(100)]);
}

#[tokio::test(start_paused = true)]
async fn blue_green_auto_promotes_after_a_delay() {
    let router = FakeRouter::new("lb");
    let bg = BlueGreen {
        auto_promotion: AutoPromotion::After(mins(15)),
        ..BlueGreen::default()
    };
    let rollout = builder("bg-after", plan(bg))
        .router(router.clone())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    assert_eq!(started.elapsed(), mins(15));
}

/// Replays the scale calls of a rolling update and checks max surge and the final state.
fn check_rolling(scales: &[(cutover_core::RevisionId, u32)], start_old: u32, n: u32, surge: u32) {
    let (mut old, mut new) = (start_old, 0);
    for (revision, replicas) in scales {
        if *revision == stable() {
            old = *replicas;
        } else {
            new = *replicas;
        }
        assert!(
            old + new <= n + surge,
            "desired {old}+{new} exceeds {n}+{surge}: {scales:?}"
        );
    }
    assert_eq!((old, new), (0, n), "{scales:?}");
}

#[tokio::test(start_paused = true)]
async fn rolling_update_respects_surge_and_unavailability() {
    let workload = FakeWorkload::new("deployment");
    workload.set_replicas(&stable(), 10);
    let rolling = Rolling::new(10); // 25 % surge (3), 25 % unavailable (2)
    let rollout = builder("rolling", plan(rolling))
        .workload(workload.clone())
        .build()
        .unwrap();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    let scales = workload.scales();
    check_rolling(&scales, 10, 10, 3);
    // Never fewer than 10 - 2 replicas ready.
    let ready = workload.ready_after_each_scale();
    assert!(ready.iter().all(|&r| r >= 8), "{ready:?}");
    // First move: surge 3 new replicas.
    assert_eq!(scales[0], (candidate(), 3));
}

#[tokio::test(start_paused = true)]
async fn rolling_update_without_surge_never_exceeds_the_total() {
    let workload = FakeWorkload::new("deployment").ready_after_polls(3);
    workload.set_replicas(&stable(), 5);
    let rolling = Rolling {
        max_surge: Quantity::Count(0),
        max_unavailable: Quantity::Count(1),
        ..Rolling::new(5)
    };
    let rollout = builder("rolling-nosurge", plan(rolling))
        .workload(workload.clone())
        .build()
        .unwrap();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    let scales = workload.scales();
    check_rolling(&scales, 5, 5, 0);
    assert_eq!(scales.len(), 10, "one replica at a time: {scales:?}");
    let ready = workload.ready_after_each_scale();
    assert!(
        ready.iter().all(|&r| r >= 4),
        "never fewer than 5 - 1 ready: {ready:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_update_rolls_back_when_new_replicas_never_become_ready() {
    let workload = FakeWorkload::new("deployment");
    workload.set_replicas(&stable(), 6);
    workload.stuck(&candidate(), 0);
    let rolling = Rolling::new(6);
    let rollout = builder(
        "rolling-stuck",
        plan(rolling).with_progress_deadline(mins(3)),
    )
    .workload(workload.clone())
    .build()
    .unwrap();
    let outcome = rollout.run().await.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack(StopReason::ProgressDeadline { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(
        (workload.desired(&stable()), workload.desired(&candidate())),
        (6, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_update_rolls_back_on_a_failed_probe() {
    let workload = FakeWorkload::new("deployment");
    workload.set_replicas(&stable(), 4);
    let probe = FakeProbe::new();
    probe.set(
        &candidate(),
        cutover_core::Health::failed("readiness endpoint returns 500"),
    );
    let rollout = builder("rolling-probe", plan(Rolling::new(4)))
        .workload(workload.clone())
        .health_probe(probe)
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    assert!(
        matches!(outcome, Outcome::RolledBack(StopReason::Unhealthy { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        (workload.desired(&stable()), workload.desired(&candidate())),
        (4, 0)
    );
}

fn conversion() -> AnalysisTemplate {
    AnalysisTemplate::Proportions(ProportionsTemplate {
        source: "proxy".into(),
        query: "checkout_conversions".into(),
        window: None,
        higher_is_better: true,
        alpha: 0.05,
        min_samples: 100,
    })
}

fn ab(promote_winner: bool) -> AbTest {
    AbTest {
        split: Some(Weight::from_percent(50).unwrap()),
        promote_winner,
        ..AbTest::new(mins(60), "conversion")
    }
}

fn conversions(stable_rate: (u64, u64), candidate_rate: (u64, u64)) -> ScriptedMetricSource {
    let proxy = ScriptedMetricSource::new("proxy");
    proxy.set(
        "checkout_conversions",
        &stable(),
        Samples::Counts {
            events: stable_rate.0,
            total: stable_rate.1,
        },
    );
    proxy.set(
        "checkout_conversions",
        &candidate(),
        Samples::Counts {
            events: candidate_rate.0,
            total: candidate_rate.1,
        },
    );
    proxy
}

#[tokio::test(start_paused = true)]
async fn ab_test_promotes_a_winning_candidate_when_configured() {
    let router = FakeRouter::new("proxy");
    let proxy = conversions((120, 1000), (170, 1000));
    let rollout = builder(
        "ab-promote",
        plan(ab(true)).with_analysis("conversion", conversion()),
    )
    .router(router.clone())
    .metric_source("proxy", proxy.clone())
    .build()
    .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    assert_eq!(candidate_weights(&router.splits()), [pct(50), pct(100)]);
    assert_eq!(started.elapsed(), mins(60));
    assert!(
        proxy.queries().iter().all(|q| q.window == mins(60)),
        "counts cover the test period"
    );
}

#[tokio::test(start_paused = true)]
async fn ab_test_reports_the_winner_and_returns_to_stable() {
    let router = FakeRouter::new("proxy");
    let rollout = builder(
        "ab-report",
        plan(ab(false)).with_analysis("conversion", conversion()),
    )
    .router(router.clone())
    .metric_source("proxy", conversions((120, 1000), (170, 1000)))
    .build()
    .unwrap();
    let outcome = rollout.run().await.unwrap();
    let Outcome::Concluded {
        comparison: Some(c),
        summary,
    } = &outcome
    else {
        panic!("expected a conclusion, got {outcome:?}");
    };
    assert_eq!(c.winner, Some(candidate()));
    assert!((c.effect - 0.05).abs() < 1e-12, "{}", c.effect);
    assert!(c.confidence > 0.99, "{}", c.confidence);
    assert!(summary.contains("winner v2"), "{summary}");
    assert_eq!(candidate_weights(&router.splits()), [pct(50), 0]);
}

#[tokio::test(start_paused = true)]
async fn ab_test_extends_without_a_winner_then_concludes_none() {
    let router = FakeRouter::new("proxy");
    let test = AbTest {
        extensions: 1,
        routes: vec![HeaderRoute::new("beta", [RouteMatch::cookie_exact("group", "b")]).unwrap()],
        ..ab(true)
    };
    let proxy = conversions((120, 1000), (121, 1000));
    let rollout = builder(
        "ab-none",
        plan(test).with_analysis("conversion", conversion()),
    )
    .router(router.clone())
    .metric_source("proxy", proxy.clone())
    .build()
    .unwrap();
    let started = tokio::time::Instant::now();
    let outcome = rollout.run().await.unwrap();
    let Outcome::Concluded {
        comparison: Some(c),
        ..
    } = &outcome
    else {
        panic!("expected a conclusion, got {outcome:?}");
    };
    assert_eq!(c.winner, None);
    assert_eq!(started.elapsed(), mins(120), "one extension of 60 minutes");
    assert_eq!(
        proxy.queries().len(),
        4,
        "compared twice, two revisions each"
    );
    assert!(router.header_routes().is_empty());
    assert_eq!(candidate_weights(&router.splits()), [pct(50), 0]);
}
