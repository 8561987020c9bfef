//! `RolloutBuilder::resolve_analysis`: an analysis measured outside a rollout, built the way a
//! rollout builds it (templates on the registered metric sources, or registered in code).

use std::time::Duration;

use cutover_core::{
    AnalysisContext, BuildError, Plan, RevisionId, Revisions, Rollout, Samples, Verdict,
};
use cutover_test::{ScriptedAnalysis, ScriptedMetricSource};

const PLAN: &str = r"
strategy: { canary: { steps: [ { set_weight: 50 } ] } }
analyses:
  errors:
    threshold:
      metrics: [ { name: error-rate, source: proxy, query: error_ratio, max: 0.01 } ]
  elsewhere:
    threshold:
      metrics: [ { name: error-rate, source: prom, query: error_ratio, max: 0.01 } ]
  seq:
    sequential: { test: counts, source: proxy, query: error_ratio, tolerance: 1.2 }
";

fn context() -> AnalysisContext {
    AnalysisContext::new(
        "shop".parse().unwrap(),
        Revisions::new("v1", "v2").unwrap(),
        "errors",
        1,
        Duration::ZERO,
    )
}

#[tokio::test]
async fn a_template_is_built_on_the_registered_sources_and_measures_the_candidate() {
    let plan = Plan::from_yaml(PLAN).unwrap();
    let proxy = ScriptedMetricSource::new("proxy");
    let v2: RevisionId = "v2".parse().unwrap();
    proxy.script(
        "error_ratio",
        &v2,
        [
            Samples::Counts {
                events: 1,
                total: 1000,
            },
            Samples::Counts {
                events: 50,
                total: 1000,
            },
        ],
    );
    let builder = Rollout::builder("shop", plan.clone()).metric_source("proxy", proxy.clone());
    let errors = builder
        .resolve_analysis("verification.runs[0]", "errors", &plan.analyses)
        .unwrap();
    assert_eq!(
        errors.evaluate(&context()).await.unwrap().verdict,
        Verdict::Pass
    );
    assert_eq!(
        errors.evaluate(&context()).await.unwrap().verdict,
        Verdict::Fail
    );
    assert!(proxy.queries().iter().all(|q| q.revision == v2));
}

#[tokio::test]
async fn an_analysis_registered_in_code_is_found_by_name() {
    let plan = Plan::from_yaml(PLAN).unwrap();
    let scripted = ScriptedAnalysis::verdicts([Verdict::Fail]);
    let builder = Rollout::builder("shop", plan).analysis("smoke", scripted.clone());
    let smoke = builder
        .resolve_analysis("runs[0]", "smoke", &std::collections::BTreeMap::new())
        .unwrap();
    assert_eq!(
        smoke.evaluate(&context()).await.unwrap().verdict,
        Verdict::Fail
    );
    assert_eq!(scripted.calls().len(), 1);
}

#[test]
fn unknown_names_missing_sources_both_definitions_and_sequential_tests_are_refused() {
    let plan = Plan::from_yaml(PLAN).unwrap();
    let builder = Rollout::builder("shop", plan.clone())
        .metric_source("proxy", ScriptedMetricSource::new("proxy"))
        .analysis("errors", ScriptedAnalysis::verdicts([Verdict::Pass]));
    let err = |name: &str| {
        builder
            .resolve_analysis("runs[1]", name, &plan.analyses)
            .unwrap_err()
    };
    assert!(
        matches!(err("nope"), BuildError::UnknownAnalysis { at, name } if at == "runs[1]" && name == "nope")
    );
    assert!(matches!(err("errors"), BuildError::AmbiguousAnalysis { name } if name == "errors"));
    assert!(
        matches!(err("elsewhere"), BuildError::UnknownMetricSource { analysis, source_name } if analysis == "elsewhere" && source_name == "prom")
    );
    let seq = err("seq");
    assert!(matches!(&seq, BuildError::SequentialOutsideRollout { name, .. } if name == "seq"));
    assert!(
        seq.to_string()
            .starts_with("runs[1]: `seq` is a sequential analysis")
    );
}
