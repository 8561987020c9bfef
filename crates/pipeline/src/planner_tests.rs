//! The planner on hand-made states: fan-out, fan-in, soak, freeze, failures, rollback.

use std::time::Duration;

use cutover_core::{RolloutId, Timestamp};

use crate::freight::{Freight, FreightId};
use crate::planner::{Blocked, Next, decide, decide_stage, soaked};
use crate::spec::Pipeline;
use crate::state::{
    Failure, FreightEntry, PipelineState, Promotion, PromotionKind, PromotionStep, Verified,
};

const MIN: Duration = Duration::from_mins(1);

fn t(minutes: u64) -> Timestamp {
    // 2026-12-02T12:00:00Z, a Wednesday.
    Timestamp::from_unix_millis(1_796_212_800_000) + MIN * u32::try_from(minutes).unwrap()
}

fn pipeline(stages: &str) -> Pipeline {
    Pipeline::from_yaml(&format!(
        "name: shop\nplan: {{ strategy: {{ canary: {{ steps: [ {{ set_weight: 50 }} ] }} }} }}\nstages:\n{stages}"
    ))
    .unwrap()
}

fn submit(state: &mut PipelineState, name: &str) -> FreightId {
    let freight = Freight::new(name, format!("app@{name}"));
    let id = freight.id();
    state.freight.push(FreightEntry {
        id: id.clone(),
        freight,
        by: "ci".into(),
        at: t(0),
    });
    id
}

/// `stage` runs `id` since `at` and verified it then.
fn verified(state: &mut PipelineState, stage: &str, id: &FreightId, at: Timestamp) {
    let here = state.stage_mut(stage);
    here.switch_to(id.clone(), at);
    here.verified
        .insert(id.clone(), Verified { at, left: None });
}

fn failed(state: &mut PipelineState, stage: &str, id: &FreightId) {
    state.stage_mut(stage).failed.insert(
        id.clone(),
        Failure {
            at: t(0),
            reason: "error rate 12%".into(),
        },
    );
}

fn next(p: &Pipeline, state: &PipelineState, stage: &str, now: Timestamp) -> Next {
    decide_stage(p.stage(stage).unwrap(), state, now)
}

fn promote(id: &FreightId) -> Next {
    Next::Promote {
        freight: id.clone(),
        approval: None,
    }
}

const LINE: &str = "  - { name: dev, providers: [d] }
  - { name: staging, upstreams: [dev], soak: 10m, providers: [s] }
  - { name: prod, upstreams: [staging], soak: 30m, promotion: manual, providers: [p] }
";

#[test]
fn new_freight_enters_at_the_top_and_waits_for_verification_below() {
    let p = pipeline(LINE);
    let mut s = PipelineState::new();
    let decision = decide(&p, &s, t(0));
    assert!(decision.is_settled());
    assert_eq!(decision.wake_at(), None);

    let v1 = submit(&mut s, "v1");
    let d = decide(&p, &s, t(0));
    assert_eq!(d.next("dev"), Some(&promote(&v1)));
    assert_eq!(
        d.next("staging"),
        Some(&Next::Idle),
        "not verified in dev yet"
    );
    assert!(!d.is_settled());

    // Running in dev but not verified yet: staging still waits.
    s.stage_mut("dev").switch_to(v1.clone(), t(1));
    assert_eq!(next(&p, &s, "staging", t(60)), Next::Idle);
    assert_eq!(
        next(&p, &s, "dev", t(60)),
        Next::Idle,
        "dev runs the newest"
    );
}

#[test]
fn soak_time_counts_from_verification_and_only_while_the_freight_stays() {
    let p = pipeline(LINE);
    let mut s = PipelineState::new();
    let v1 = submit(&mut s, "v1");
    verified(&mut s, "dev", &v1, t(5));
    let soaking = Next::Soaking {
        freight: v1.clone(),
        until: t(15),
    };
    assert_eq!(next(&p, &s, "staging", t(5)), soaking);
    assert_eq!(next(&p, &s, "staging", t(14)), soaking);
    assert_eq!(decide(&p, &s, t(14)).wake_at(), Some(t(15)));
    assert_eq!(next(&p, &s, "staging", t(15)), promote(&v1));
    assert_eq!(soaked(&s, "dev", &v1, t(15)), 10 * MIN);

    // v2 replaced v1 in dev after 3 minutes: v2 has not soaked; v1's soak stopped at 3 min.
    let mut s = PipelineState::new();
    let v1 = submit(&mut s, "v1");
    let v2 = submit(&mut s, "v2");
    verified(&mut s, "dev", &v1, t(0));
    verified(&mut s, "dev", &v2, t(3));
    assert_eq!(s.stage("dev").verified[&v1].left, Some(t(3)));
    assert_eq!(soaked(&s, "dev", &v1, t(100)), 3 * MIN);
    assert_eq!(
        next(&p, &s, "staging", t(4)),
        Next::Soaking {
            freight: v2.clone(),
            until: t(13)
        },
        "the newest verified freight soaks; v1 never will"
    );
}

#[test]
fn manual_stages_promote_through_an_approval_gate() {
    let p = pipeline(LINE);
    let mut s = PipelineState::new();
    let v1 = submit(&mut s, "v1");
    verified(&mut s, "dev", &v1, t(0));
    verified(&mut s, "staging", &v1, t(20));
    assert!(matches!(next(&p, &s, "prod", t(49)), Next::Soaking { until, .. } if until == t(50)));
    assert_eq!(
        next(&p, &s, "prod", t(50)),
        Next::Promote {
            freight: v1.clone(),
            approval: Some("promote-prod".into())
        }
    );
    // A promotion in progress is carried on, whatever else arrives.
    let promotion = Promotion {
        freight: v1.clone(),
        from: None,
        rollout: RolloutId::new("shop.prod.3").unwrap(),
        kind: PromotionKind::Forward,
        approval: Some("promote-prod".into()),
        step: PromotionStep::RollingOut,
        started: t(50),
        verification: None,
    };
    s.stage_mut("prod").promotion = Some(promotion.clone());
    let v2 = submit(&mut s, "v2");
    verified(&mut s, "staging", &v2, t(0));
    assert_eq!(next(&p, &s, "prod", t(500)), Next::Continue(promotion));
}

const DIAMOND: &str = "  - { name: staging, providers: [s] }
  - { name: eu, upstreams: [staging], providers: [eu] }
  - { name: us, upstreams: [staging], providers: [us] }
  - { name: global, upstreams: [eu, us], soak: 5m, providers: [g] }
  - { name: any, upstreams: [eu, us], availability: one_of, providers: [a] }
";

#[test]
fn fan_out_promotes_every_region_and_fan_in_waits_for_all_of_them() {
    let p = pipeline(DIAMOND);
    let mut s = PipelineState::new();
    let v1 = submit(&mut s, "v1");
    verified(&mut s, "staging", &v1, t(0));
    let d = decide(&p, &s, t(0));
    assert_eq!(d.next("eu"), Some(&promote(&v1)));
    assert_eq!(d.next("us"), Some(&promote(&v1)));
    assert_eq!(d.next("global"), Some(&Next::Idle));

    verified(&mut s, "eu", &v1, t(10));
    assert_eq!(
        next(&p, &s, "global", t(100)),
        Next::Idle,
        "us has not verified it"
    );
    assert_eq!(
        next(&p, &s, "any", t(10)),
        promote(&v1),
        "one upstream is enough"
    );

    verified(&mut s, "us", &v1, t(20));
    assert_eq!(
        next(&p, &s, "global", t(21)),
        Next::Soaking {
            freight: v1.clone(),
            until: t(25)
        },
        "soaked in every upstream: the last one decides"
    );
    assert_eq!(next(&p, &s, "global", t(25)), promote(&v1));
}

#[test]
fn freeze_windows_hold_promotions_but_not_rollbacks() {
    // Wednesdays 12:00 to 14:00 in Berlin (11:00 to 13:00 UTC in December).
    let p = pipeline(
        "  - name: dev
    providers: [d]
    freeze: [ { timezone: Europe/Berlin, days: [wed], start: '12:00', end: '14:00', reason: all-hands } ]
",
    );
    let mut s = PipelineState::new();
    let v1 = submit(&mut s, "v1");
    let frozen = Next::Frozen {
        freight: v1.clone(),
        until: t(60),
        reason: "all-hands".into(),
    };
    assert_eq!(next(&p, &s, "dev", t(0)), frozen);
    assert_eq!(decide(&p, &s, t(0)).wake_at(), Some(t(60)));
    assert_eq!(next(&p, &s, "dev", t(59)), frozen);
    assert_eq!(next(&p, &s, "dev", t(60)), promote(&v1));
    assert_eq!(
        next(&p, &s, "dev", t(7 * 24 * 60 - 1)),
        frozen.clone().until_for_test(t(7 * 24 * 60 + 60))
    );

    // A failed freight is rolled back even inside the window.
    let v2 = submit(&mut s, "v2");
    verified(&mut s, "dev", &v1, t(0));
    verified(&mut s, "dev", &v2, t(1));
    failed(&mut s, "dev", &v2);
    assert_eq!(
        next(&p, &s, "dev", t(2)),
        Next::RollBack {
            from: v2.clone(),
            to: v1.clone()
        }
    );
}

impl Next {
    fn until_for_test(self, until: Timestamp) -> Next {
        match self {
            Next::Frozen {
                freight, reason, ..
            } => Next::Frozen {
                freight,
                until,
                reason,
            },
            other => other,
        }
    }
}

#[test]
fn freight_that_failed_upstream_never_goes_downstream() {
    let p = pipeline(LINE);
    let mut s = PipelineState::new();
    let v1 = submit(&mut s, "v1");
    let v2 = submit(&mut s, "v2");
    for stage in ["dev", "staging", "prod"] {
        verified(&mut s, stage, &v1, t(0));
    }
    // v2 passed dev, failed its rollout in staging: staging keeps v1 and never retries v2.
    verified(&mut s, "dev", &v2, t(1));
    failed(&mut s, "staging", &v2);
    assert_eq!(next(&p, &s, "staging", t(100)), Next::Idle);
    assert_eq!(
        next(&p, &s, "prod", t(100)),
        Next::Blocked(Blocked::FailedUpstream {
            freight: v2.clone(),
            stage: "staging".into(),
            reason: "error rate 12%".into()
        })
    );
    assert!(decide(&p, &s, t(100)).is_settled());

    // Even freight verified in staging is held from prod once it failed further up.
    let mut s = PipelineState::new();
    let v1 = submit(&mut s, "v1");
    verified(&mut s, "dev", &v1, t(0));
    verified(&mut s, "staging", &v1, t(0));
    failed(&mut s, "dev", &v1);
    assert!(
        matches!(next(&p, &s, "prod", t(100)), Next::Blocked(Blocked::FailedUpstream { stage, .. }) if stage == "dev")
    );

    // Newer good freight flows past the failed one.
    let mut s = PipelineState::new();
    let v1 = submit(&mut s, "v1");
    let v2 = submit(&mut s, "v2");
    let v3 = submit(&mut s, "v3");
    verified(&mut s, "staging", &v1, t(0));
    verified(&mut s, "dev", &v2, t(0));
    failed(&mut s, "staging", &v2);
    verified(&mut s, "dev", &v3, t(1));
    assert_eq!(
        next(&p, &s, "staging", t(11)),
        promote(&v3),
        "the failed v2 is skipped"
    );
}

#[test]
fn a_failed_stage_goes_back_to_its_previous_verified_freight() {
    let p = pipeline(LINE);
    let mut s = PipelineState::new();
    let v1 = submit(&mut s, "v1");
    let v2 = submit(&mut s, "v2");
    let v3 = submit(&mut s, "v3");
    verified(&mut s, "dev", &v1, t(0));
    verified(&mut s, "dev", &v2, t(1));
    failed(&mut s, "dev", &v2); // v2 failed after it was verified (a rollback by a person)
    verified(&mut s, "dev", &v3, t(2));
    failed(&mut s, "dev", &v3); // v3 failed its verification
    assert_eq!(
        next(&p, &s, "dev", t(3)),
        Next::RollBack {
            from: v3.clone(),
            to: v1.clone()
        },
        "the newest verified freight that has not failed"
    );

    let mut s = PipelineState::new();
    let v1 = submit(&mut s, "v1");
    verified(&mut s, "dev", &v1, t(0));
    failed(&mut s, "dev", &v1);
    let d = decide(&p, &s, t(1));
    assert_eq!(
        d.next("dev"),
        Some(&Next::Blocked(Blocked::NothingToRollBackTo { freight: v1 }))
    );
    assert!(d.is_settled());
}
