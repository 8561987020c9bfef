//! Pipeline files: what is accepted, and the errors (with paths) for what is not.

use std::time::Duration;

use cutover_pipeline::{Availability, Pipeline, PromotionPolicy, SpecError};

const PLAN: &str = "plan: { strategy: { canary: { steps: [ { set_weight: 20 }, { pause: { duration: 1m } } ] } } }";

fn err(yaml: &str) -> (String, String) {
    match Pipeline::from_yaml(yaml).unwrap_err() {
        SpecError::Invalid { path, reason } => (path, reason),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn a_diamond_with_fan_out_and_fan_in_is_ordered_upstream_first() {
    let p = Pipeline::from_yaml(&format!(
        "name: shop\n{PLAN}\nstages:
  - {{ name: global, upstreams: [eu, us], providers: [g] }}
  - {{ name: eu, upstreams: [staging], soak: 30m, promotion: manual, providers: [eu] }}
  - {{ name: us, upstreams: [staging], availability: one_of, providers: [us] }}
  - {{ name: staging, upstreams: [dev], providers: [s] }}
  - {{ name: dev, providers: [d] }}
"
    ))
    .unwrap();
    let names: Vec<_> = p.stages().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["dev", "staging", "eu", "us", "global"]);
    let global = p.stage("global").unwrap();
    assert_eq!(
        global
            .ancestors
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["dev", "eu", "staging", "us"]
    );
    let eu = p.stage("eu").unwrap();
    assert_eq!(eu.soak, Duration::from_mins(30));
    assert_eq!(eu.promotion, PromotionPolicy::Manual);
    assert_eq!(eu.approval_gate().as_deref(), Some("promote-eu"));
    assert_eq!(p.stage("us").unwrap().availability, Availability::OneOf);
    assert_eq!(p.stage("dev").unwrap().approval_gate(), None);
}

#[test]
fn overrides_are_merged_into_the_shared_plan_and_own_plans_replace_it() {
    let p = Pipeline::from_yaml(&format!(
        "name: shop\n{PLAN}\nstages:
  - {{ name: dev, providers: [d] }}
  - {{ name: prod, upstreams: [dev], providers: [p], overrides: {{ progress_deadline: 45m }} }}
  - name: lab
    providers: [l]
    plan: {{ strategy: {{ canary: {{ steps: [ {{ set_weight: 100 }} ] }} }} }}
"
    ))
    .unwrap();
    let dev = &p.stage("dev").unwrap().plan;
    let prod = &p.stage("prod").unwrap().plan;
    assert_eq!(prod.progress_deadline, Duration::from_mins(45));
    assert_ne!(dev.progress_deadline, prod.progress_deadline);
    assert_eq!(
        prod.strategy, dev.strategy,
        "the rest comes from the shared plan"
    );
    assert_ne!(p.stage("lab").unwrap().plan.strategy, dev.strategy);
}

#[test]
fn cycles_are_named_with_their_stages() {
    let (path, reason) = err(&format!(
        "name: shop\n{PLAN}\nstages:
  - {{ name: dev, providers: [d] }}
  - {{ name: a, upstreams: [dev, c], providers: [x] }}
  - {{ name: b, upstreams: [a], providers: [x] }}
  - {{ name: c, upstreams: [b], providers: [x] }}
"
    ));
    assert!(
        path.starts_with("stages[") && path.ends_with("].upstreams"),
        "{path}"
    );
    assert!(reason.contains("cycle"), "{reason}");
    for stage in ["a -> ", "b -> ", "c -> "] {
        assert!(reason.contains(stage), "{reason}");
    }
    assert!(!reason.contains("dev"), "dev is not in the cycle: {reason}");
}

#[test]
fn unknown_and_duplicate_stages_and_missing_providers_name_the_path() {
    let (path, reason) = err(&format!(
        "name: shop\n{PLAN}\nstages:\n  - {{ name: dev, providers: [d] }}\n  - {{ name: prod, upstreams: [dev, stagin], providers: [p] }}\n"
    ));
    assert_eq!(path, "stages[1].upstreams[1]");
    assert!(reason.contains("unknown stage `stagin`"), "{reason}");

    let (path, reason) = err(&format!(
        "name: shop\n{PLAN}\nstages:\n  - {{ name: dev, providers: [d] }}\n  - {{ name: dev, providers: [p] }}\n"
    ));
    assert_eq!(path, "stages[1].name");
    assert!(
        reason.contains("duplicate stage name `dev` (also stages[0])"),
        "{reason}"
    );

    let (path, reason) = err(&format!(
        "name: shop\n{PLAN}\nstages:\n  - {{ name: dev, providers: [] }}\n"
    ));
    assert_eq!(path, "stages[0].providers");
    assert!(reason.contains("no providers"), "{reason}");

    let (path, _) = err(&format!(
        "name: shop\n{PLAN}\nstages:\n  - {{ name: dev }}\n"
    ));
    assert_eq!(
        path, "stages[0]",
        "a missing field is reported on its stage"
    );

    let (path, reason) = err(&format!(
        "name: shop\n{PLAN}\nstages:\n  - {{ name: dev, upstreams: [dev], providers: [d] }}\n"
    ));
    assert_eq!(path, "stages[0].upstreams[0]");
    assert!(reason.contains("own upstream"), "{reason}");
}

#[test]
fn plan_freeze_and_field_errors_point_into_the_stage() {
    let (path, _) = err(&format!(
        "name: shop\n{PLAN}\nstages:\n  - {{ name: dev, providers: [d], overrides: {{ strategy: {{ canary: {{ steps: [ {{ set_weight: 150 }} ] }} }} }} }}\n"
    ));
    assert_eq!(
        path,
        "stages[0].overrides.strategy.canary.steps[0].set_weight"
    );

    let (path, reason) = err("name: shop\nstages:\n  - { name: dev, providers: [d] }\n");
    assert_eq!(path, "stages[0].plan");
    assert!(reason.contains("no plan"), "{reason}");

    let (path, reason) = err(&format!(
        "name: shop\n{PLAN}\nstages:\n  - {{ name: dev, providers: [d], freeze: [ {{ timezone: Europe/Berln, days: [sat] }} ] }}\n"
    ));
    assert_eq!(path, "stages[0].freeze[0].timezone");
    assert!(reason.contains("Europe/Berln"), "{reason}");

    let (path, reason) = err(&format!(
        "name: shop\n{PLAN}\nstages:\n  - {{ name: dev, providers: [d], soak: soon }}\n"
    ));
    assert_eq!(path, "stages[0].soak");
    assert!(reason.contains("write it like"), "{reason}");

    let (path, _) = err(&format!(
        "name: shop\n{PLAN}\nstages:\n  - {{ name: dev, providers: [d], promotion: sometimes }}\n"
    ));
    assert_eq!(path, "stages[0].promotion");

    let (path, _) = err(&format!(
        "name: shop\n{PLAN}\nstages:\n  - {{ name: dev, providers: [d], upstream: [x] }}\n"
    ));
    assert_eq!(
        path, "stages[0].upstream",
        "unknown fields are refused, by name"
    );

    let (path, _) = err(&format!(
        "name: 'shop floor'\n{PLAN}\nstages:\n  - {{ name: dev, providers: [d] }}\n"
    ));
    assert_eq!(path, "name");
}

#[test]
fn syntax_errors_carry_the_line() {
    let e =
        Pipeline::from_yaml("name: shop\nstages:\n  - { name: dev, providers: [d]\n").unwrap_err();
    assert!(
        matches!(e, SpecError::Syntax { format: "YAML", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("line"), "{e}");
}

/// A pipeline whose plan has the analysis `health` and whose second stage verifies with
/// `verification`.
fn verifying(verification: &str) -> String {
    format!(
        "name: shop
plan:
  strategy: {{ canary: {{ steps: [ {{ set_weight: 50 }} ] }} }}
  analyses:
    health: {{ threshold: {{ metrics: [ {{ name: e, source: proxy, query: errors, max: 0.01 }} ] }} }}
    seq: {{ sequential: {{ test: counts, source: proxy, query: errors, tolerance: 1.2 }} }}
stages:
  - {{ name: dev, providers: [d] }}
  - {{ name: prod, upstreams: [dev], providers: [p], verification: {verification} }}
"
    )
}

#[test]
fn verification_runs_templates_of_its_own_and_of_the_stage_plan() {
    let p = Pipeline::from_yaml(&verifying(
        "{ analyses: { latency: { threshold: { metrics: [ { name: p99, source: proxy, query: p99, max: 0.3 } ] } } }, runs: [ { name: health, interval: 30s, count: 10 }, { name: latency }, { name: smoke, failure_limit: 1 } ] }",
    ))
    .unwrap();
    assert!(p.stage("dev").unwrap().verification.is_none());
    let v = p.stage("prod").unwrap().verification.as_ref().unwrap();
    let names: Vec<&str> = v.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["health", "latency", "smoke"]);
    assert_eq!(v.runs[0].interval, Duration::from_secs(30));
    assert_eq!(v.runs[0].count, Some(10));
    assert_eq!(v.runs[2].failure_limit, 1);
    let templates: Vec<&str> = v.analyses.keys().map(String::as_str).collect();
    assert_eq!(templates, ["health", "latency", "seq"]);
}

#[test]
fn verification_errors_name_the_path_in_the_stage() {
    let cases = [
        (
            "{ runs: [] }",
            "stages[1].verification.runs",
            "at least one run",
        ),
        (
            "{ runs: [ { name: health, count: 0 } ] }",
            "stages[1].verification.runs[0].count",
            "at least 1",
        ),
        (
            "{ runs: [ { name: health }, { name: health } ] }",
            "stages[1].verification.runs[1].name",
            "run twice",
        ),
        (
            "{ runs: [ { name: health, count: 3, interval: 0s } ] }",
            "stages[1].verification.runs[0].interval",
            "longer than zero",
        ),
        (
            "{ runs: [ { name: health, intervl: 1m } ] }",
            "stages[1].verification.runs[0].intervl",
            "unknown field",
        ),
        (
            "{ runs: [ { name: seq } ] }",
            "stages[1].verification.runs[0].name",
            "sequential",
        ),
        (
            "{ runs: [ { name: health, on_inconclusive: { extend: { times: 2, then: abort } } } ] }",
            "stages[1].verification.runs[0].on_inconclusive",
            "not extended",
        ),
        (
            "{ analyses: { health: { threshold: { metrics: [] } } }, runs: [ { name: health } ] }",
            "stages[1].verification.analyses.health",
            "also an analysis of the stage's plan",
        ),
        (
            "{ analyses: { lat: { threshold: { metrics: [] } } }, runs: [ { name: lat } ] }",
            "stages[1].verification.analyses.lat.threshold.metrics",
            "at least one metric",
        ),
        (
            "{ analyses: { lat: { thresold: {} } }, runs: [ { name: lat } ] }",
            "stages[1].verification.analyses.lat",
            "unknown variant",
        ),
        (
            "{ analyses: { lat: { threshold: { metrics: [ { name: p99, source: proxy, query: p99, min: 2, max: 1 } ] } } }, runs: [ { name: lat } ] }",
            "stages[1].verification.analyses.lat.threshold.metrics[0]",
            "min 2 is above max 1",
        ),
        (
            "{ runs: [ { name: health } ], every: 1m }",
            "stages[1].verification.every",
            "unknown field",
        ),
    ];
    for (verification, want_path, want_reason) in cases {
        let (path, reason) = err(&verifying(verification));
        assert_eq!(path, want_path, "{verification}: {reason}");
        assert!(
            reason.contains(want_reason),
            "{verification}: {path}: {reason}"
        );
    }
}

#[test]
fn the_pipeline_in_the_guide_loads() {
    let guide = include_str!("../../../docs/pipelines.md");
    let start = guide
        .find("```yaml\n")
        .expect("a yaml block in docs/pipelines.md")
        + 8;
    let end = start + guide[start..].find("```").unwrap();
    let p = Pipeline::from_yaml(&guide[start..end]).unwrap();
    let eu = p.stage("prod-eu").unwrap();
    let runs: Vec<&str> = eu
        .verification
        .as_ref()
        .unwrap()
        .runs
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(runs, ["health", "latency"]);
    assert_eq!(eu.freeze.len(), 3);
}
