//! Sequential analysis inside rollouts: rollback at the first rejection, a pass only once the
//! step's time is up, extension up to `max_count` then the inconclusive action, the numbers in
//! the decision record, plan validation, and resume of the same test after a crash.
// The recorded numbers compared exactly are counts and settings, exact in an f64.
#![allow(clippy::float_cmp, clippy::cast_precision_loss)]

mod common;

use common::*;
use cutover_core::planner::{Action, ActionResult, Decision};
use cutover_core::state::{PauseReason, RolloutState};
use cutover_core::{
    AnalysisResult, DecisionRecord, Entry, Outcome, Plan, Samples, StateStore, StopReason, Verdict,
};
use cutover_test::{CrashMode, CrashingStore, FakeRouter, ScriptedMetricSource};

/// A canary at 50 % with one sequential step: a measurement every 10 s, the step's time is
/// 6 × 10 s, and it may extend to `max_count` measurements.
fn plan_with(template: &str, run: &str) -> Plan {
    let yaml = format!(
        "strategy:
  canary:
    steps:
      - set_weight: 50
      - analysis: {{ name: seq, interval: 10s, count: 6, {run} }}
analyses:
  seq:
    sequential: {template}
"
    );
    Plan::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

const COUNTS: &str =
    "{ test: counts, source: m, query: errors, canary_share: 0.5, tolerance: 1.5 }";

fn counts(events: u64, total: u64) -> Samples {
    Samples::Counts { events, total }
}

/// A source where every 10 s window has the given counts for each revision.
fn errors(stable_window: Samples, candidate_window: Samples) -> ScriptedMetricSource {
    let source = ScriptedMetricSource::new("m");
    source.set("errors", &stable(), stable_window);
    source.set("errors", &candidate(), candidate_window);
    source
}

/// The results of the measurements, in order.
fn measurements(records: &[DecisionRecord]) -> Vec<AnalysisResult> {
    records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Decision {
                decision: Decision::Apply(Action::Measure { .. }),
                result:
                    Some(ActionResult::Measured {
                        result: Some(result),
                        ..
                    }),
            } => Some(result.clone()),
            _ => None,
        })
        .collect()
}

fn number(result: &AnalysisResult, key: &str) -> f64 {
    let numbers = &result.comparison.as_ref().expect("a comparison").numbers;
    *numbers
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {numbers:?}"))
}

async fn run(
    plan: Plan,
    source: ScriptedMetricSource,
    id: &str,
) -> (Outcome, Vec<DecisionRecord>, std::time::Duration) {
    let router = FakeRouter::new("mesh");
    let rollout = builder(id, plan)
        .router(router)
        .metric_source("m", source)
        .build()
        .unwrap();
    let handle = rollout.handle();
    let started = tokio::time::Instant::now();
    // A rollout that pauses would wait for a command forever: fail instead.
    let Ok(outcome) = tokio::time::timeout(mins(60), rollout.run()).await else {
        panic!(
            "{id} did not finish: {:#?}",
            measurements(&handle.records().await.unwrap())
        );
    };
    (
        outcome.unwrap(),
        handle.records().await.unwrap(),
        started.elapsed(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_bad_canary_is_rolled_back_at_the_first_rejection() {
    // 1 % errors on stable, 4 % on the candidate, 1000 requests each per window.
    let source = errors(counts(10, 1000), counts(40, 1000));
    let (outcome, records, elapsed) = run(plan_with(COUNTS, ""), source.clone(), "bad").await;
    let Outcome::RolledBack(StopReason::AnalysisFailed { summary, .. }) = &outcome else {
        panic!("expected a failed analysis, got {outcome:?}");
    };
    assert!(
        summary.contains("rejected") && summary.contains("p = "),
        "{summary}"
    );
    let results = measurements(&records);
    let (last, earlier) = results.split_last().unwrap();
    assert_eq!(last.verdict, Verdict::Fail);
    assert!(number(last, "p_value") <= 0.05, "{}", last.summary);
    assert!(number(last, "lower") > 1.0, "{}", last.summary);
    for r in earlier {
        assert_eq!(r.verdict, Verdict::Inconclusive, "{}", r.summary);
        assert!(number(r, "p_value") > 0.05, "{}", r.summary);
    }
    // Well before the step's time (60 s) is up.
    assert!(results.len() <= 3, "{} measurements", results.len());
    assert!(elapsed < secs(40), "rolled back after {elapsed:?}");
    // Each measurement asked for the data since the previous one, never the whole run.
    let queries = source.queries();
    assert_eq!(queries.len(), results.len() * 2);
    assert!(queries.iter().all(|q| q.window == secs(10)), "{queries:?}");
}

#[tokio::test(start_paused = true)]
async fn a_good_canary_passes_only_when_the_steps_time_is_up() {
    let source = errors(counts(100, 10_000), counts(100, 10_000));
    let (outcome, records, _) = run(plan_with(COUNTS, ""), source, "good").await;
    assert_eq!(outcome, Outcome::Promoted);
    let results = measurements(&records);
    assert_eq!(results.len(), 6, "one pass at 6 × 10 s: {results:#?}");
    let (last, earlier) = results.split_last().unwrap();
    assert_eq!(last.verdict, Verdict::Pass, "{}", last.summary);
    assert!(number(last, "upper") <= 1.5, "{}", last.summary);
    assert_eq!(number(last, "elapsed_s"), 60.0);
    assert!(earlier.iter().all(|r| r.verdict == Verdict::Inconclusive));
    // The confidence sequence ruled out the tolerance before the time was up, and that was
    // not a pass.
    assert!(
        earlier
            .iter()
            .any(|r| r.summary.contains("time is not up") && number(r, "upper") <= 1.5),
        "{earlier:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn too_little_data_extends_to_max_count_then_aborts() {
    // No errors at all: the rate ratio cannot be bounded.
    let source = errors(counts(0, 100), counts(0, 100));
    let plan = plan_with(COUNTS, "max_count: 9, on_inconclusive: abort");
    let (outcome, records, elapsed) = run(plan, source, "small-abort").await;
    let Outcome::RolledBack(StopReason::AnalysisInconclusive { summary, .. }) = &outcome else {
        panic!("expected an inconclusive analysis, got {outcome:?}");
    };
    assert!(summary.contains("undecided"), "{summary}");
    let results = measurements(&records);
    assert_eq!(results.len(), 9);
    assert!(results.iter().all(|r| r.verdict == Verdict::Inconclusive));
    assert_eq!(elapsed, secs(90));
}

#[tokio::test(start_paused = true)]
async fn too_little_data_extends_then_pauses_by_default() {
    let source = errors(counts(0, 100), counts(0, 100));
    // No max_count: twice the count.
    let router = FakeRouter::new("mesh");
    let rollout = builder("small-pause", plan_with(COUNTS, ""))
        .router(router.clone())
        .metric_source("m", source)
        .build()
        .unwrap();
    let handle = rollout.handle();
    let mut events = events(&rollout);
    let started = tokio::time::Instant::now();
    let task = tokio::spawn(rollout.run());
    let paused = until(&mut events, is_pause).await;
    let Some(Decision::Pause(PauseReason::Inconclusive { analysis, .. })) = decision(&paused)
    else {
        panic!("expected an inconclusive pause, got {paused:?}");
    };
    assert_eq!(analysis, "seq");
    assert_eq!(started.elapsed(), secs(120));
    assert_eq!(measurements(&handle.records().await.unwrap()).len(), 12);
    assert_eq!(candidate_weights(&router.splits()), [pct(50)]);
    handle.abort("not enough data").await.unwrap();
    let outcome = task.await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Aborted { .. }), "{outcome:?}");
}

#[tokio::test(start_paused = true)]
async fn windows_without_data_are_never_a_pass() {
    // The source knows nothing: every window is empty.
    let source = ScriptedMetricSource::new("m");
    let plan = plan_with(COUNTS, "max_count: 7, on_inconclusive: abort");
    let (outcome, records, _) = run(plan, source, "no-data").await;
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack(StopReason::AnalysisInconclusive { .. })
        ),
        "{outcome:?}"
    );
    let results = measurements(&records);
    assert_eq!(results.len(), 7);
    assert!(
        results
            .iter()
            .all(|r| r.verdict == Verdict::Inconclusive && r.summary.contains("no new data")),
        "{results:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_record_carries_the_numbers() {
    let source = errors(counts(10, 1000), counts(40, 1000));
    let (_, records, _) = run(plan_with(COUNTS, ""), source, "numbers").await;
    let results = measurements(&records);
    let first = &results[0];
    for key in [
        "p_value",
        "log_e_value",
        "estimate",
        "lower",
        "upper",
        "tolerance",
        "alpha",
        "stable_n",
        "candidate_n",
        "window_stable_n",
        "window_candidate_n",
    ] {
        let _ = number(first, key);
    }
    assert_eq!(number(first, "tolerance"), 1.5);
    assert_eq!(number(first, "stable_n"), 10.0, "events seen from stable");
    assert_eq!(number(first, "candidate_n"), 40.0);
    assert_eq!(
        number(first, "window_stable_n"),
        1000.0,
        "requests this window"
    );
    assert!((number(first, "estimate") - 4.0).abs() < 1e-9);
    for text in [
        "p = ",
        "e-value",
        "rate ratio",
        "tolerance 1.5",
        "stable: 10 events in 1,000 requests",
    ] {
        assert!(
            first.summary.contains(text),
            "{text:?} in {}",
            first.summary
        );
    }
    // The record is valid JSON both ways (no infinities or NaN in it).
    let json = serde_json::to_string(&records).unwrap();
    let back: Vec<DecisionRecord> = serde_json::from_str(&json).unwrap();
    assert_eq!(back.len(), records.len());
}

#[tokio::test(start_paused = true)]
async fn latency_distributions_and_means_catch_a_slower_canary() {
    let fast: Vec<f64> = (0..200).map(|i| 0.100 + f64::from(i) * 0.0005).collect();
    let slow: Vec<f64> = fast.iter().map(|v| v + 0.05).collect();
    for (id, template) in [
        (
            "distribution",
            "{ test: distribution, source: m, query: latency, tolerance: 0.25 }",
        ),
        (
            "mean",
            "{ test: mean, source: m, query: latency, tolerance: 0.01, mixture_width: 0.5 }",
        ),
    ] {
        let source = ScriptedMetricSource::new("m");
        source.set("latency", &stable(), Samples::Values(fast.clone()));
        source.set("latency", &candidate(), Samples::Values(slow.clone()));
        let (outcome, records, elapsed) = run(plan_with(template, ""), source, id).await;
        assert!(
            matches!(
                outcome,
                Outcome::RolledBack(StopReason::AnalysisFailed { .. })
            ),
            "{id}: {outcome:?}"
        );
        assert!(elapsed < secs(60), "{id}: {elapsed:?}");
        let results = measurements(&records);
        assert!(number(results.last().unwrap(), "p_value") <= 0.05, "{id}");

        // The same values on both revisions pass once the time is up.
        let source = ScriptedMetricSource::new("m");
        source.set("latency", &stable(), Samples::Values(fast.clone()));
        source.set("latency", &candidate(), Samples::Values(fast.clone()));
        let (outcome, records, _) = run(plan_with(template, ""), source, id).await;
        assert_eq!(
            outcome,
            Outcome::Promoted,
            "{id}: {:#?}",
            measurements(&records)
        );
        assert_eq!(measurements(&records).len(), 6, "{id}");
    }
}

#[test]
fn plan_errors_name_the_field() {
    let cases = [
        (
            "{ test: counts, source: m, query: q, tolerance: 0.2 }",
            "",
            "analyses.seq.sequential.tolerance",
            "rate ratio above 1",
        ),
        (
            "{ test: mean, source: m, query: q }",
            "",
            "analyses.seq.sequential.tolerance",
            "needs a tolerance",
        ),
        (
            "{ test: distribution, source: m, query: q, tolerance: 1.5 }",
            "",
            "analyses.seq.sequential.tolerance",
            "CDF gap",
        ),
        (
            "{ test: distribution, source: m, query: q, prior_strength: 10 }",
            "",
            "analyses.seq.sequential.prior_strength",
            "only to counts",
        ),
        (
            "{ test: counts, source: m, query: q, mixture_width: 1 }",
            "",
            "analyses.seq.sequential.mixture_width",
            "only to mean",
        ),
        (
            "{ test: mean, source: m, query: q, tolerance: 0.01, stationary: true }",
            "",
            "analyses.seq.sequential.stationary",
            "only to counts and distribution",
        ),
        (
            "{ test: counts, source: m, query: q, alpha: 1.5 }",
            "",
            "analyses.seq.sequential.alpha",
            "between 0 and 1",
        ),
        (
            "{ test: counts, source: m, query: q, canary_share: 1 }",
            "",
            "analyses.seq.sequential.canary_share",
            "between 0 and 1",
        ),
        (
            "{ test: counts, source: m, query: q, alternative: less }",
            "",
            "analyses.seq.sequential.alternative",
            "not supported",
        ),
        (
            "{ test: counts, source: m, query: q, tolerence: 1.2 }",
            "",
            "analyses.seq.sequential.tolerence",
            "unknown field `tolerence`",
        ),
        (
            "{ test: ratio, source: m, query: q }",
            "",
            "analyses.seq.sequential.test",
            "unknown variant `ratio`",
        ),
        (
            "{ test: counts, source: '', query: q }",
            "",
            "analyses.seq.sequential.source",
            "metric source",
        ),
        (
            COUNTS,
            "failure_limit: 2",
            "strategy.canary.steps[1].analysis.failure_limit",
            "first rejection",
        ),
        (
            COUNTS,
            "consecutive_success_limit: 2",
            "strategy.canary.steps[1].analysis.consecutive_success_limit",
            "does not apply",
        ),
        (
            COUNTS,
            "max_count: 3",
            "strategy.canary.steps[1].analysis.max_count",
            "less than count",
        ),
    ];
    for (template, run, path, reason) in cases {
        let yaml = format!(
            "strategy: {{ canary: {{ steps: [ {{ set_weight: 50 }}, {{ analysis: {{ name: seq, count: 6, {run} }} }} ] }} }}\nanalyses: {{ seq: {{ sequential: {template} }} }}"
        );
        let err = Plan::from_yaml(&yaml).expect_err(&yaml);
        assert_eq!(err.path(), Some(path), "{yaml}: {err}");
        assert!(err.to_string().contains(reason), "{yaml}: {err}");
    }
    // max_count belongs to sequential analyses; an A/B test needs a comparison of rates.
    let err = Plan::from_yaml(
        "strategy: { canary: { steps: [ { analysis: { name: t, max_count: 3 } } ] } }\nanalyses: { t: { threshold: { metrics: [ { name: m, source: s, query: q, max: 1 } ] } } }",
    )
    .unwrap_err();
    assert_eq!(
        err.path(),
        Some("strategy.canary.steps[0].analysis.max_count")
    );
    let err = Plan::from_yaml(&format!(
        "strategy: {{ ab_test: {{ split: 50, duration: 1h, analysis: seq }} }}\nanalyses: {{ seq: {{ sequential: {COUNTS} }} }}"
    ))
    .unwrap_err();
    assert_eq!(err.path(), Some("strategy.ab_test.analysis"), "{err}");
    // A valid plan round-trips through JSON, and the builder API writes the same template.
    let plan = plan_with(COUNTS, "max_count: 12, on_inconclusive: abort");
    assert_eq!(Plan::from_json(&plan.to_json()).unwrap(), plan);
    let built = cutover_core::SequentialTemplate::counts("m", "errors")
        .with_canary_share(0.5)
        .with_tolerance(1.5);
    assert_eq!(
        plan.analyses["seq"],
        cutover_core::AnalysisTemplate::Sequential(built)
    );
}

#[tokio::test(start_paused = true)]
async fn a_resumed_rollout_carries_on_with_the_same_test() {
    // Rejection needs several windows of 1 % against 2 %: crash after two measurements.
    let source = errors(counts(10, 1000), counts(20, 1000));
    // One clock for both engines: the shared timeline of the process that restarts.
    let clock = cutover_core::TokioClock::starting_at(cutover_core::Timestamp::from_unix_millis(
        1_700_000_000_000,
    ));
    let build = |store: cutover_core::MemoryStateStore, crash: Option<CrashingStore>| {
        let b = cutover_core::Rollout::builder("resume", plan_with(COUNTS, "max_count: 60"))
            .revisions("v1", "v2")
            .clock(clock)
            .router(FakeRouter::new("mesh"))
            .metric_source("m", source.clone());
        match crash {
            Some(c) => b.state_store(c),
            None => b.state_store(store),
        }
        .build()
        .unwrap()
    };
    // Kill the first engine right after the write that saved the second measurement.
    let id = "resume".parse().unwrap();
    let mut crash_at = 1;
    let (store, test, saved) = loop {
        let store = CrashingStore::new(crash_at, CrashMode::AfterWrite);
        let first = build(store.inner(), Some(store.clone()));
        tokio::select! {
            outcome = first.run() => panic!("finished before the crash: {outcome:?}"),
            () = store.crashed() => {}
        }
        let saved = store.inner().load(&id).await.unwrap().map(|s| s.state);
        let test = saved
            .as_ref()
            .and_then(|s| s.analysis.as_ref())
            .and_then(|a| a.sequential.clone());
        if let (Some(test), Some(saved)) = (test, saved)
            && test.windows == 2
        {
            break (store, test, saved);
        }
        crash_at += 1;
    };
    assert_eq!(test.windows, 2);
    // The saved state survives JSON (the file and ConfigMap stores), test included.
    let back: RolloutState = serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap();
    assert_eq!(back.analysis.and_then(|a| a.sequential), Some(test));

    // Down for 15 s: the next measurement was due at 30 s.
    let queried_before = source.queries().len();
    tokio::time::advance(secs(15)).await;
    let second = build(store.inner(), None);
    let handle = second.handle();
    let Ok(outcome) = tokio::time::timeout(mins(60), second.run()).await else {
        panic!(
            "did not finish: {:#?}",
            measurements(&handle.records().await.unwrap())
        );
    };
    let outcome = outcome.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack(StopReason::AnalysisFailed { .. })
        ),
        "{outcome:?}"
    );
    let results = measurements(&handle.records().await.unwrap());
    let last = results.last().unwrap();
    // Every window since the start was fed to one test: n counts the events of all of them.
    let windows = results.len() as f64;
    assert_eq!(number(last, "stable_n"), 10.0 * windows, "{}", last.summary);
    assert_eq!(number(last, "candidate_n"), 20.0 * windows);
    // The first measurement after the resume asked for the data since the last one saved.
    let queries = &source.queries()[queried_before..];
    assert_eq!(queries[0].window, secs(15), "{:?}", &queries[..2]);
}

#[tokio::test(start_paused = true)]
async fn an_extension_carries_on_with_the_same_test() {
    // Too few events to decide: max_count 7, then one extension of 7 more, then abort.
    let source = errors(counts(1, 100), counts(1, 100));
    let plan = plan_with(
        COUNTS,
        "max_count: 7, on_inconclusive: { extend: { times: 1, then: abort } }",
    );
    let (outcome, records, elapsed) = run(plan, source, "extend").await;
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack(StopReason::AnalysisInconclusive { .. })
        ),
        "{outcome:?}"
    );
    let results = measurements(&records);
    assert_eq!(results.len(), 14);
    assert_eq!(elapsed, secs(140));
    // One test over both runs: the last measurement has seen every window's events.
    assert_eq!(number(&results[13], "stable_n"), 14.0);
    assert_eq!(number(&results[13], "elapsed_s"), 140.0);
}

#[tokio::test(start_paused = true)]
async fn background_sequential_analysis_rolls_back_mid_pause() {
    let yaml = "strategy:
  canary:
    steps:
      - set_weight: 20
      - pause: { duration: 30m }
    background_analysis:
      starting_step: 1
      analysis: { name: seq, interval: 1m }
analyses:
  seq:
    sequential: { test: counts, source: m, query: errors }
";
    // 0.5 % errors on stable, 1.2 % on the candidate, which gets a fifth of the requests: the
    // default test weighs each window by the share of requests the candidate really got.
    let source = errors(counts(20, 4000), counts(12, 1000));
    let (outcome, records, elapsed) = run(Plan::from_yaml(yaml).unwrap(), source, "bg").await;
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack(StopReason::AnalysisFailed { .. })
        ),
        "{outcome:?}"
    );
    assert!(elapsed < mins(30), "rolled back after {elapsed:?}");
    let results = measurements(&records);
    assert!(
        results[..results.len() - 1]
            .iter()
            .all(|r| r.verdict == Verdict::Inconclusive),
        "{results:#?}"
    );
}
