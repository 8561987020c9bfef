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
