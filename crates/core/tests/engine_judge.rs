//! The Kayenta-style judge and Argo-style condition checks inside rollouts: plans written in
//! YAML, data from a metric source, verdicts and numbers in the decision record.

mod common;

use common::*;
use cutover_core::planner::{ActionResult, Decision};
use cutover_core::{
    AnalysisResult, Entry, Outcome, Plan, PlanError, RetryPolicy, Samples, StopReason, Verdict,
};
use cutover_test::{FakeRouter, ScriptedMetricSource};

const JUDGE_PLAN: &str = r"
strategy:
  canary:
    steps:
      - set_weight: 10
      - analysis: { name: kayenta }
      - set_weight: 50
analyses:
  kayenta:
    judge:
      window: 10m
      queries:
        latency: { source: prom, query: latency_seconds }
        errors: { source: prom, query: error_ratio }
      config:
        name: my-canary
        metrics:
          - name: latency
            groups: [perf]
            scopeName: default
            analysisConfigurations:
              canary: { direction: increase, critical: true, effectSize: { criticalIncrease: 1.2 } }
          - name: errors
            groups: [errors]
            analysisConfigurations: { canary: { direction: increase, mustHaveData: true } }
        classifier: { groupWeights: { perf: 60, errors: 40 } }
";

fn judge_plan() -> Plan {
    Plan::from_yaml(JUDGE_PLAN)
        .unwrap()
        .with_retry(RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        })
}

/// Values around `centre` with a deterministic spread.
fn values(centre: f64, n: usize) -> Samples {
    #[allow(clippy::cast_precision_loss)]
    Samples::Values(
        (0..n)
            .map(|i| centre + ((i * 37) % 17) as f64 / 10.0)
            .collect(),
    )
}

fn measured(records: &[cutover_core::DecisionRecord]) -> Vec<AnalysisResult> {
    records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Decision {
                decision: Decision::Apply(_),
                result:
                    Some(ActionResult::Measured {
                        result: Some(r), ..
                    }),
            } => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn judge_rolls_back_a_slower_candidate_with_its_numbers_in_the_record() {
    let router = FakeRouter::new("mesh");
    let prom = ScriptedMetricSource::new("prom");
    prom.set("latency_seconds", &stable(), values(100.0, 200));
    prom.set("latency_seconds", &candidate(), values(150.0, 200));
    prom.set("error_ratio", &stable(), values(1.0, 50));
    prom.set("error_ratio", &candidate(), values(1.0, 50));
    let rollout = builder("judge-fail", judge_plan())
        .router(router.clone())
        .metric_source("prom", prom.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    let outcome = rollout.run().await.unwrap();
    let Outcome::RolledBack(StopReason::AnalysisFailed { analysis, summary }) = &outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert_eq!(analysis, "kayenta");
    assert!(summary.contains("score 0.00 Fail"), "{summary}");
    assert!(
        summary.contains("critical metric `latency` is High"),
        "{summary}"
    );
    assert_eq!(candidate_weights(&router.splits()), [pct(10), 0]);
    // Both revisions were queried over the template's window.
    let queries = prom.queries();
    assert_eq!(queries.len(), 4);
    assert!(queries.iter().all(|q| q.window == mins(10)));
    assert!(queries.iter().any(|q| q.revision == stable()));
    // The record holds the per-metric numbers and the score.
    let results = measured(&handle.records().await.unwrap());
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r.verdict, Verdict::Fail);
    let latency = r.metrics.iter().find(|m| m.name == "latency").unwrap();
    let shift = latency.value.unwrap();
    assert!((shift - 50.0).abs() < 1.0, "shift estimate {shift}");
    assert!(
        latency.detail.contains("High, critical"),
        "{}",
        latency.detail
    );
    assert!(latency.detail.contains("ratio 1.49"), "{}", latency.detail);
    let score = r.metrics.iter().find(|m| m.name == "score").unwrap();
    assert_eq!(score.value, Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn judge_promotes_an_equal_candidate() {
    let router = FakeRouter::new("mesh");
    let prom = ScriptedMetricSource::new("prom");
    for rev in [stable(), candidate()] {
        prom.set("latency_seconds", &rev, values(100.0, 200));
        prom.set("error_ratio", &rev, values(1.0, 50));
    }
    // The candidate's latency differs slightly but not significantly.
    prom.set("latency_seconds", &candidate(), values(100.05, 200));
    let rollout = builder("judge-pass", judge_plan())
        .router(router.clone())
        .metric_source("prom", prom)
        .build()
        .unwrap();
    let handle = rollout.handle();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    let results = measured(&handle.records().await.unwrap());
    assert_eq!(results[0].verdict, Verdict::Pass);
    assert!(
        results[0].summary.starts_with("score 100.00 Pass"),
        "{}",
        results[0].summary
    );
}

#[tokio::test(start_paused = true)]
async fn judge_without_data_never_promotes() {
    let router = FakeRouter::new("mesh");
    // No data at all: errors is NodataFailMetric, latency Nodata (critical): score 0.
    let prom = ScriptedMetricSource::new("prom");
    let rollout = builder("judge-nodata", judge_plan())
        .router(router.clone())
        .metric_source("prom", prom)
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
    assert_eq!(candidate_weights(&router.splits()), [pct(10), 0]);
}

const CONDITIONS_PLAN: &str = r#"
strategy:
  canary:
    steps:
      - set_weight: 10
      - analysis: { name: errors, count: 6, interval: 1m, inconclusive_limit: 2, consecutive_success_limit: 2 }
      - set_weight: 50
analyses:
  errors:
    conditions:
      metrics:
        - name: error-rate
          source: proxy
          query: error_ratio
          success_condition: "result[0] < 0.01"
          failure_condition: "result[0] >= 0.05 || len(result) == 0"
"#;

fn counts(events: u64) -> Samples {
    Samples::Counts {
        events,
        total: 1000,
    }
}

#[tokio::test(start_paused = true)]
async fn conditions_succeed_on_a_streak_of_passes() {
    let router = FakeRouter::new("mesh");
    let proxy = ScriptedMetricSource::new("proxy");
    // pass, inconclusive, pass, pass: the streak of two ends the run after four measurements.
    proxy.script(
        "error_ratio",
        &candidate(),
        [counts(1), counts(20), counts(2), counts(3), counts(90)],
    );
    let rollout = builder("conditions", Plan::from_yaml(CONDITIONS_PLAN).unwrap())
        .router(router.clone())
        .metric_source("proxy", proxy.clone())
        .build()
        .unwrap();
    let handle = rollout.handle();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    assert_eq!(proxy.queries().len(), 4);
    let verdicts: Vec<_> = measured(&handle.records().await.unwrap())
        .iter()
        .map(|r| r.verdict)
        .collect();
    let (pass, inconclusive) = (Verdict::Pass, Verdict::Inconclusive);
    assert_eq!(verdicts, [pass, inconclusive, pass, pass]);
}

#[tokio::test(start_paused = true)]
async fn conditions_fail_on_the_failure_condition() {
    let router = FakeRouter::new("mesh");
    let proxy = ScriptedMetricSource::new("proxy");
    proxy.script("error_ratio", &candidate(), [counts(1), counts(60)]);
    let rollout = builder("conditions-fail", Plan::from_yaml(CONDITIONS_PLAN).unwrap())
        .router(router.clone())
        .metric_source("proxy", proxy)
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    let Outcome::RolledBack(StopReason::AnalysisFailed { summary, .. }) = &outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert!(summary.contains("result 0.06"), "{summary}");
    assert!(
        summary.contains("failure when `result[0] >= 0.05"),
        "{summary}"
    );
}

fn invalid(yaml: &str) -> (String, String) {
    match Plan::from_yaml(yaml).unwrap_err() {
        PlanError::Invalid { path, reason } => (path, reason),
        other => panic!("expected a field error, got {other}"),
    }
}

#[test]
fn judge_and_conditions_plans_round_trip_through_json() {
    for yaml in [JUDGE_PLAN, CONDITIONS_PLAN] {
        let plan = Plan::from_yaml(yaml).unwrap();
        assert_eq!(Plan::from_json(&plan.to_json()).unwrap(), plan);
    }
}

#[test]
fn plan_errors_name_the_field() {
    let bad_condition = CONDITIONS_PLAN.replace("result[0] < 0.01", "result[0] << 0.01");
    let (path, reason) = invalid(&bad_condition);
    assert_eq!(
        path,
        "analyses.errors.conditions.metrics[0].success_condition"
    );
    assert!(reason.contains("column 12"), "{reason}");

    let no_query = JUDGE_PLAN.replace("errors: { source: prom, query: error_ratio }", "");
    let (path, reason) = invalid(&no_query);
    assert_eq!(path, "analyses.kayenta.judge.queries");
    assert!(reason.contains("`errors`"), "{reason}");

    let stray = JUDGE_PLAN.replace("errors: { source", "errrors: { source");
    let (path, _) = invalid(&stray);
    assert_eq!(path, "analyses.kayenta.judge.queries");

    let ab = "strategy: { ab_test: { split: 50, duration: 1h, analysis: kayenta } }\n".to_owned()
        + JUDGE_PLAN
            .split_once("analyses:")
            .unwrap()
            .1
            .trim_start_matches('\n');
    let ab = ab.replacen("  kayenta:", "analyses:\n  kayenta:", 1);
    let (path, reason) = invalid(&ab);
    assert_eq!(path, "strategy.ab_test.analysis");
    assert!(reason.contains("judge"), "{reason}");
}
