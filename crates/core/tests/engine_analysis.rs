//! Analysis inside rollouts: inconclusive actions, errors, background analysis, threshold
//! templates over metric sources.

mod common;

use common::*;
use cutover_core::{
    AfterExtensions, AnalysisRun, AnalysisTemplate, BackgroundAnalysis, Canary, CanaryStep,
    ErrorKind, OnInconclusive, Outcome, Plan, RolloutError, Samples, StopReason, ThresholdMetric,
    ThresholdTemplate, Verdict,
};
use cutover_test::{FakeRouter, ScriptedAnalysis, ScriptedMetricSource};

fn with_inconclusive(action: OnInconclusive) -> Canary {
    Canary::new([
        weight(10),
        CanaryStep::Analysis(AnalysisRun::new("checks").with_on_inconclusive(action)),
        weight(50),
    ])
}

#[tokio::test(start_paused = true)]
async fn inconclusive_pauses_and_resume_accepts_it() {
    let router = FakeRouter::new("mesh");
    let checks = ScriptedAnalysis::verdicts([Verdict::Inconclusive]);
    let rollout = builder("inc-pause", plan(with_inconclusive(OnInconclusive::Pause)))
        .router(router.clone())
        .analysis("checks", checks.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());
    until(&mut events, is_pause).await;
    assert_eq!(candidate_weights(&router.splits()), [pct(10)]);
    handle.resume("test").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    assert_eq!(checks.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn inconclusive_with_abort_rolls_back() {
    let router = FakeRouter::new("mesh");
    let checks = ScriptedAnalysis::verdicts([Verdict::Inconclusive]);
    let rollout = builder("inc-abort", plan(with_inconclusive(OnInconclusive::Abort)))
        .router(router.clone())
        .analysis("checks", checks)
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack(StopReason::AnalysisInconclusive { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(candidate_weights(&router.splits()), [pct(10), 0]);
}

#[tokio::test(start_paused = true)]
async fn inconclusive_extends_then_passes() {
    let router = FakeRouter::new("mesh");
    let checks =
        ScriptedAnalysis::verdicts([Verdict::Inconclusive, Verdict::Inconclusive, Verdict::Pass]);
    let extend = OnInconclusive::Extend {
        times: 2,
        then: AfterExtensions::Abort,
    };
    let rollout = builder("inc-extend", plan(with_inconclusive(extend)))
        .router(router.clone())
        .analysis("checks", checks.clone())
        .build()
        .unwrap();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    assert_eq!(checks.calls().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn inconclusive_extensions_run_out() {
    let router = FakeRouter::new("mesh");
    let checks = ScriptedAnalysis::verdicts([Verdict::Inconclusive]);
    let extend = OnInconclusive::Extend {
        times: 2,
        then: AfterExtensions::Abort,
    };
    let rollout = builder("inc-extend-out", plan(with_inconclusive(extend)))
        .router(router.clone())
        .analysis("checks", checks.clone())
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack(StopReason::AnalysisInconclusive { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(checks.calls().len(), 3, "the first run and two extensions");
}

#[tokio::test(start_paused = true)]
async fn measurement_errors_roll_back_after_the_consecutive_error_limit() {
    let router = FakeRouter::new("mesh");
    let checks = ScriptedAnalysis::verdicts([Verdict::Pass]);
    checks
        .faults()
        .fail_always("evaluate", ErrorKind::Permanent);
    let canary = Canary::new([
        weight(10),
        CanaryStep::Analysis(AnalysisRun::new("checks").with_interval(secs(30))),
    ]);
    let rollout = builder("errors", plan(canary))
        .router(router.clone())
        .analysis("checks", checks.clone())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let outcome = rollout.run().await.unwrap();
    let Outcome::RolledBack(StopReason::AnalysisError { summary, .. }) = &outcome else {
        panic!("expected an analysis error, got {outcome:?}");
    };
    assert!(summary.contains("injected permanent error"), "{summary}");
    // Default limit 4: the fifth consecutive error ends the run, measurements 30 s apart.
    assert_eq!(checks.calls().len(), 5);
    assert_eq!(started.elapsed(), secs(120));
    assert_eq!(candidate_weights(&router.splits()), [pct(10), 0]);
}

#[tokio::test(start_paused = true)]
async fn background_analysis_rolls_back_mid_step() {
    let router = FakeRouter::new("mesh");
    // Twelve passing measurements a minute apart, then a failure.
    let mut script = vec![Verdict::Pass; 12];
    script.push(Verdict::Fail);
    let checks = ScriptedAnalysis::verdicts(script);
    let canary = Canary::new([
        weight(10),
        CanaryStep::pause(mins(10)),
        weight(50),
        CanaryStep::pause(mins(10)),
    ])
    .with_background_analysis(0, AnalysisRun::new("checks"));
    let rollout = builder("background", plan(canary))
        .router(router.clone())
        .analysis("checks", checks.clone())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let outcome = rollout.run().await.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack(StopReason::AnalysisFailed { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(candidate_weights(&router.splits()), [pct(10), pct(50), 0]);
    assert_eq!(checks.calls().len(), 13);
    assert_eq!(
        started.elapsed(),
        mins(12),
        "rolled back at the 13th measurement, mid-pause"
    );
}

#[tokio::test(start_paused = true)]
async fn background_analysis_starts_at_its_step() {
    let router = FakeRouter::new("mesh");
    let checks = ScriptedAnalysis::verdicts([Verdict::Pass]);
    let mut canary = Canary::new([
        weight(10),
        CanaryStep::pause(mins(5)),
        weight(50),
        CanaryStep::pause(mins(5)),
    ]);
    canary.background_analysis = Some(BackgroundAnalysis {
        starting_step: 2,
        analysis: AnalysisRun::new("checks"),
    });
    let rollout = builder("background-start", plan(canary))
        .router(router)
        .analysis("checks", checks.clone())
        .build()
        .unwrap();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    // From step 2 (t = 5 m) once a minute up to t = 10 m, where the last measurement is taken
    // before the step ends and the candidate is promoted: 5, 6, 7, 8, 9, 10.
    let at: Vec<_> = checks.calls().iter().map(|c| c.elapsed).collect();
    assert_eq!(checks.calls().len(), 6, "{at:?}");
    assert_eq!(checks.calls()[0].measurement, 1);
    assert_eq!(checks.calls()[5].measurement, 6);
}

fn error_rate_plan(canary: Canary) -> Plan {
    plan(canary).with_analysis(
        "error-rate",
        AnalysisTemplate::Threshold(ThresholdTemplate {
            metrics: vec![ThresholdMetric {
                min_samples: 100,
                ..ThresholdMetric::at_most("errors", "proxy", "error_ratio", 0.01)
            }],
        }),
    )
}

#[tokio::test(start_paused = true)]
async fn threshold_template_reads_the_metric_source() {
    let router = FakeRouter::new("mesh");
    let proxy = ScriptedMetricSource::new("proxy");
    proxy.script(
        "error_ratio",
        &candidate(),
        [
            Samples::Counts {
                events: 2,
                total: 1000,
            },
            Samples::Counts {
                events: 40,
                total: 1000,
            },
        ],
    );
    let canary = Canary::new([
        weight(10),
        CanaryStep::Analysis(AnalysisRun::new("error-rate")),
        weight(50),
        CanaryStep::Analysis(AnalysisRun::new("error-rate")),
    ]);
    let rollout = builder("threshold", error_rate_plan(canary))
        .router(router.clone())
        .metric_source("proxy", proxy.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let outcome = rollout.run().await.unwrap();
    let Outcome::RolledBack(StopReason::AnalysisFailed { analysis, summary }) = &outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert_eq!(analysis, "error-rate");
    assert!(
        summary.contains("0.040000 > max 0.01"),
        "the reason carries the numbers: {summary}"
    );
    assert_eq!(candidate_weights(&router.splits()), [pct(10), pct(50), 0]);
    let queries = proxy.queries();
    assert_eq!(queries.len(), 2);
    assert!(
        queries
            .iter()
            .all(|q| q.revision == candidate() && q.window == mins(5))
    );
    let records = handle.records().await.unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.summary.contains("fail errors: 0.040000")),
        "{:#?}",
        summaries(&records)
    );
}

#[tokio::test(start_paused = true)]
async fn missing_data_never_promotes() {
    let router = FakeRouter::new("mesh");
    // The source has no data at all.
    let proxy = ScriptedMetricSource::new("proxy");
    let canary = Canary::new([
        weight(10),
        CanaryStep::Analysis(AnalysisRun::new("error-rate")),
    ]);
    let rollout = builder("no-data", error_rate_plan(canary))
        .router(router.clone())
        .metric_source("proxy", proxy)
        .build()
        .unwrap();
    // No handle is kept: nobody can resume, so the run reports that instead of hanging.
    let err = rollout.run().await.unwrap_err();
    let RolloutError::Paused { reason, .. } = &err else {
        panic!("expected a pause, got {err:?}");
    };
    assert!(reason.contains("0 samples, need at least 100"), "{reason}");
    assert_eq!(
        candidate_weights(&router.splits()),
        [pct(10)],
        "never promoted"
    );
}

#[tokio::test(start_paused = true)]
async fn too_few_samples_are_inconclusive_not_a_pass() {
    let router = FakeRouter::new("mesh");
    let proxy = ScriptedMetricSource::new("proxy");
    proxy.set(
        "error_ratio",
        &candidate(),
        Samples::Counts {
            events: 0,
            total: 99,
        },
    );
    let canary = Canary::new([
        weight(10),
        CanaryStep::Analysis(
            AnalysisRun::new("error-rate").with_on_inconclusive(OnInconclusive::Abort),
        ),
    ]);
    let rollout = builder("few-samples", error_rate_plan(canary))
        .router(router.clone())
        .metric_source("proxy", proxy)
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack(StopReason::AnalysisInconclusive { .. })
        ),
        "{outcome:?}"
    );
}

/// Found by the property test: resuming an inconclusive background run used to restart it with
/// a measurement due at once, on the same data, so it paused again at the same instant.
#[tokio::test(start_paused = true)]
async fn resuming_an_inconclusive_background_run_measures_again_one_interval_later() {
    let router = FakeRouter::new("mesh");
    let checks = ScriptedAnalysis::verdicts([Verdict::Inconclusive, Verdict::Pass]);
    let canary = Canary::new([weight(10), CanaryStep::pause(mins(30))])
        .with_background_analysis(0, AnalysisRun::new("checks").with_interval(mins(5)));
    let rollout = builder("bg-resume", plan(canary))
        .router(router)
        .analysis("checks", checks.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());
    until(&mut events, is_pause).await;
    let paused_at = tokio::time::Instant::now();
    handle.resume("test").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    let calls = checks.calls();
    assert!(calls.len() >= 2);
    // The measurement after the resume came a full interval later.
    let gap = calls[1].elapsed;
    assert_eq!(gap, mins(5), "elapsed within the new run: {gap:?}");
    assert!(paused_at.elapsed() >= mins(30));
}

/// Found by the property test: promote-full did not get past an inconclusive background run.
#[tokio::test(start_paused = true)]
async fn promote_full_overrides_an_inconclusive_background_run() {
    let router = FakeRouter::new("mesh");
    let canary = Canary::new([weight(10), CanaryStep::pause(mins(30)), weight(50)])
        .with_background_analysis(1, AnalysisRun::new("checks"));
    let rollout = builder("bg-promote-full", plan(canary))
        .router(router.clone())
        .analysis(
            "checks",
            ScriptedAnalysis::verdicts([Verdict::Inconclusive]),
        )
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let run = tokio::spawn(rollout.run());
    until(&mut events, is_pause).await;
    handle.promote_full("test").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);
    assert_eq!(candidate_weights(&router.splits()), [pct(10), pct(100)]);
}
