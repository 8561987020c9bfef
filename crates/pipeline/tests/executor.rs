//! The executor on paused time, with fake routers and scripted analyses: stage rollouts,
//! soak, approvals sent by another handle through the store, failures that stay upstream,
//! rollbacks, fan-out in parallel, and resumption after a crash at every write.

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{Env, PLAN, T0, at, current, events, v};
use cutover_core::checklist::{CheckResult, CheckStatus, ChecklistItem, Exemption};
use cutover_core::planner::ActionResult;
use cutover_core::{
    Checklist, GateStage, MemoryStateStore, RevisionId, RolloutBuilder, StateStore, Timestamp,
    TokioClock, Verdict,
};
use cutover_pipeline::{
    Blocked, Environment, Event, Executor, FreightId, Next, Pipeline, PipelineHandle,
    PipelineState, PromotionContext,
};
use cutover_test::{ColdCache, CrashMode, CrashingStore, FixedCheck};

/// A stage's history when v2 failed after its rollout promoted, and the stage went back to v1.
const ROLLED_BACK_TO_V1: [&str; 7] = [
    "v1 verified",
    "v2 started",
    "v2 rolled out",
    "v2 failed",
    "v1 rollback",
    "v1 rolled out",
    "v1 verified",
];

/// prod's history when alice approved v2.
const APPROVED_BY_ALICE: [&str; 5] = [
    "v1 verified",
    "v2 started",
    "v2 approved by alice",
    "v2 rolled out",
    "v2 verified",
];

fn line(prod_policy: &str) -> Pipeline {
    Pipeline::from_yaml(&format!(
        "name: shop\n{PLAN}\nstages:
  - {{ name: dev, providers: [dev] }}
  - {{ name: staging, upstreams: [dev], soak: 10m, providers: [staging] }}
  - {{ name: prod, upstreams: [staging], soak: 30m, promotion: {prod_policy}, providers: [prod] }}
"
    ))
    .unwrap()
}

struct World {
    pipeline: Pipeline,
    dev: Env,
    staging: Env,
    prod: Env,
    clock: TokioClock,
}

impl World {
    fn new(pipeline: Pipeline) -> Self {
        World {
            pipeline,
            dev: Env::new("dev"),
            staging: Env::new("staging"),
            prod: Env::new("prod"),
            clock: TokioClock::starting_at(T0),
        }
    }

    fn executor(&self, store: impl StateStore + 'static) -> Executor {
        Executor::builder(self.pipeline.clone())
            .state_store(store)
            .environment("dev", self.dev.clone())
            .environment("staging", self.staging.clone())
            .environment("prod", self.prod.clone())
            .clock(self.clock)
            .poll_interval(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// A store where CI adopted v1 (running everywhere) and submitted v2, CI's handle on it,
    /// and the ids of v1 and v2.
    async fn v1_then_v2(&self) -> (MemoryStateStore, PipelineHandle, FreightId, FreightId) {
        let store = MemoryStateStore::new();
        let ci = self.handle(&store, "ci");
        let v1 = ci.adopt(v(1)).await.unwrap();
        let v2 = ci.submit(v(2)).await.unwrap();
        (store, ci, v1, v2)
    }

    /// A handle as another process would have it: only the store and the pipeline file.
    fn handle(&self, store: &MemoryStateStore, who: &str) -> PipelineHandle {
        PipelineHandle::new(
            Arc::new(store.clone()),
            self.pipeline.clone(),
            Arc::new(self.clock),
        )
        .by(who)
    }
}

#[tokio::test(start_paused = true)]
async fn v2_soaks_through_staging_and_waits_in_prod_for_an_approval_sent_by_another_process() {
    let w = World::new(line("manual"));
    let (store, _, v1, v2) = w.v1_then_v2().await;
    let executor = w.executor(store.clone());
    let run = tokio::spawn(async move { executor.run_until_settled().await });

    // Another process (only the store and the pipeline file) waits for the approval to be asked.
    let alice = w.handle(&store, "alice");
    let pending = loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let pending = alice.pending_approvals().await.unwrap();
        if !pending.is_empty() {
            break pending;
        }
        assert!(
            !run.is_finished(),
            "the executor settled without asking: {:?}",
            run.await
        );
    };
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].stage.as_str(), pending[0].freight_name.as_str()),
        ("prod", "v2")
    );
    assert_eq!(pending[0].gate, "promote-prod");
    let state = alice.state().await.unwrap();
    assert_eq!(current(&state, "staging"), Some(v2.clone()));
    assert_eq!(
        current(&state, "prod"),
        Some(v1.clone()),
        "prod waits for the approval"
    );
    assert!(w.prod.serves_only("app@v1") || w.prod.router.current().is_none());
    assert!(!w.prod.revisions_served().contains("app@v2"));
    // Soak: staging started 10 min after dev verified, prod 30 min after staging verified.
    assert!(
        at(&state, "staging", "v2 started")
            >= at(&state, "dev", "v2 verified") + Duration::from_mins(10)
    );
    assert!(
        at(&state, "staging", "v2 started")
            < at(&state, "dev", "v2 verified") + Duration::from_mins(11)
    );
    assert!(
        at(&state, "prod", "v2 started")
            >= at(&state, "staging", "v2 verified") + Duration::from_mins(30)
    );

    // Nothing moves for an hour without the approval.
    tokio::time::sleep(Duration::from_hours(1)).await;
    assert_eq!(alice.pending_approvals().await.unwrap().len(), 1);
    assert!(!w.prod.revisions_served().contains("app@v2"));

    alice.approve("prod", "CAB-7 approved").await.unwrap();
    let state = run.await.unwrap().unwrap();
    assert_eq!(current(&state, "prod"), Some(v2.clone()));
    assert!(w.prod.serves_only("app@v2"));
    assert_eq!(events(&state, "prod"), APPROVED_BY_ALICE);
    let approval = state
        .stage("prod")
        .history
        .iter()
        .find_map(|h| match &h.event {
            Event::Approval(a) => Some(a.clone()),
            _ => None,
        });
    assert_eq!(approval.unwrap().reason, "CAB-7 approved");
    assert_eq!(
        alice
            .approve("prod", "again")
            .await
            .unwrap_err()
            .to_string(),
        "stage `prod` is not waiting for an approval"
    );
}

#[tokio::test(start_paused = true)]
async fn freight_that_fails_its_rollout_in_staging_never_reaches_prod() {
    let w = World::new(line("auto"));
    w.staging
        .bad_rollout
        .lock()
        .unwrap()
        .insert("app@v2".into());
    let (store, ci, v1, v2) = w.v1_then_v2().await;
    let state = w.executor(store.clone()).run_until_settled().await.unwrap();

    assert_eq!(current(&state, "dev"), Some(v2.clone()));
    assert_eq!(current(&state, "staging"), Some(v1.clone()));
    assert!(
        state.stage("staging").failed[&v2]
            .reason
            .contains("rolled back"),
        "{:?}",
        state.stage("staging").failed
    );
    assert!(
        w.staging.serves_only("app@v1"),
        "the rollout put all traffic back on v1"
    );
    assert!(
        w.staging.revisions_served().contains("app@v2"),
        "the canary did get traffic"
    );
    assert!(w.prod.router.splits().is_empty(), "prod was never touched");
    assert_eq!(events(&state, "prod"), ["v1 verified"]);
    assert_eq!(
        ci.next().await.unwrap().next("prod"),
        Some(&Next::Blocked(Blocked::FailedUpstream {
            freight: v2.clone(),
            stage: "staging".into(),
            reason: state.stage("staging").failed[&v2].reason.clone(),
        }))
    );

    // v3 fixes it and flows all the way.
    let v3 = ci.submit(v(3)).await.unwrap();
    let state = w.executor(store.clone()).run_until_settled().await.unwrap();
    assert_eq!(current(&state, "prod"), Some(v3));
    assert!(w.prod.serves_only("app@v3"));
    assert!(!w.prod.revisions_served().contains("app@v2"));
}

#[tokio::test(start_paused = true)]
async fn failed_verification_takes_the_stage_back_to_its_previous_verified_freight() {
    let w = World::new(line("auto"));
    w.dev.bad_verify.lock().unwrap().insert("app@v2".into());
    let (store, _, v1, v2) = w.v1_then_v2().await;
    let state = w.executor(store.clone()).run_until_settled().await.unwrap();

    assert_eq!(current(&state, "dev"), Some(v1.clone()));
    assert_eq!(events(&state, "dev"), ROLLED_BACK_TO_V1);
    assert!(
        state.stage("dev").failed[&v2]
            .reason
            .contains("smoke test of v2 failed")
    );
    assert!(w.dev.serves_only("app@v1"));
    assert!(w.staging.router.splits().is_empty() && w.prod.router.splits().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_person_rolls_a_stage_back_with_one_call() {
    let w = World::new(line("auto"));
    let (store, _, v1, v2) = w.v1_then_v2().await;
    let state = w.executor(store.clone()).run_until_settled().await.unwrap();
    assert_eq!(current(&state, "prod"), Some(v2.clone()));

    let bob = w.handle(&store, "bob");
    assert_eq!(
        bob.rollback("prod", "INC-42 checkout errors")
            .await
            .unwrap(),
        v1
    );
    assert!(
        bob.rollback("prod", "twice").await.is_err(),
        "already under way"
    );
    let state = w.executor(store.clone()).run_until_settled().await.unwrap();
    assert_eq!(current(&state, "prod"), Some(v1.clone()));
    assert!(w.prod.serves_only("app@v1"));
    assert_eq!(
        state.stage("prod").failed[&v2].reason,
        "rolled back by bob: INC-42 checkout errors"
    );
    assert_eq!(
        current(&state, "staging"),
        Some(v2.clone()),
        "other stages keep it"
    );
    assert!(
        matches!(
            bob.rollback("prod", "").await.unwrap_err(),
            cutover_pipeline::PipelineError::CannotRollBack { .. }
        ),
        "v1 has nothing verified before it"
    );
    assert!(matches!(
        bob.rollback("qa", "").await.unwrap_err(),
        cutover_pipeline::PipelineError::UnknownStage { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn regions_are_promoted_in_parallel_and_a_fan_in_waits_for_all() {
    // staging and prod are two regions fed by dev; global waits for both.
    let pipeline = Pipeline::from_yaml(&format!(
        "name: shop\n{PLAN}\nstages:
  - {{ name: dev, providers: [dev] }}
  - {{ name: staging, upstreams: [dev], providers: [staging] }}
  - {{ name: prod, upstreams: [dev], providers: [prod] }}
  - {{ name: global, upstreams: [staging, prod], providers: [dev] }}
"
    ))
    .unwrap();
    let w = World::new(pipeline);
    let (store, _, _, v2) = w.v1_then_v2().await;
    let state = w.executor(store.clone()).run_until_settled().await.unwrap();
    for stage in ["dev", "staging", "prod", "global"] {
        assert_eq!(current(&state, stage), Some(v2.clone()), "{stage}");
    }
    let (s, p) = (
        at(&state, "staging", "v2 started"),
        at(&state, "prod", "v2 started"),
    );
    assert_eq!(s, p, "both regions started together");
    let last_region = at(&state, "staging", "v2 verified").max(at(&state, "prod", "v2 verified"));
    assert!(at(&state, "global", "v2 started") >= last_region);
}

/// What a run ends with, without times: each stage's freight, verified and failed freight,
/// its history, and what each router serves.
fn outcome(w: &World, state: &PipelineState) -> String {
    let mut out = String::new();
    for stage in ["dev", "staging", "prod"] {
        let s = state.stage(stage);
        let _ = writeln!(
            out,
            "{stage}: current {:?} verified {:?} failed {:?} history {:?}",
            s.current_id().map(FreightId::short),
            s.verified.keys().map(FreightId::short).collect::<Vec<_>>(),
            s.failed.keys().map(FreightId::short).collect::<Vec<_>>(),
            events(state, stage),
        );
    }
    for env in [&w.dev, &w.staging, &w.prod] {
        let _ = writeln!(out, "{:?}", env.router.current());
    }
    out
}

/// Runs the line with a crash at write `crash_at`, then (if it crashed) a fresh executor on
/// what was saved. Returns the outcome and whether it crashed.
async fn crash_run(bad_in_staging: bool, crash_at: u64, mode: CrashMode) -> (String, bool) {
    let w = World::new(line("auto"));
    if bad_in_staging {
        w.staging
            .bad_rollout
            .lock()
            .unwrap()
            .insert("app@v2".into());
    }
    let inner = MemoryStateStore::new();
    let ci = w.handle(&inner, "ci");
    ci.adopt(v(1)).await.unwrap();
    ci.submit(v(2)).await.unwrap();
    let store = CrashingStore::wrapping(inner.clone(), crash_at, mode);
    let executor = w.executor(store.clone());
    let finished = tokio::select! {
        state = executor.run_until_settled() => Some(state.unwrap()),
        () = store.crashed() => None,
    };
    drop(executor);
    if let Some(state) = finished {
        return (outcome(&w, &state), false);
    }
    // The process is gone; let the runtime drop its tasks (and their leases), then restart.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let state = w.executor(inner).run_until_settled().await.unwrap();
    (outcome(&w, &state), true)
}

#[tokio::test(start_paused = true)]
async fn a_crash_at_any_write_resumes_to_the_same_result() {
    for bad in [false, true] {
        let (reference, crashed) = crash_run(bad, u64::MAX, CrashMode::AfterWrite).await;
        assert!(!crashed);
        for mode in [CrashMode::AfterWrite, CrashMode::BeforeWrite] {
            let mut crashes = 0;
            for n in 1..=1000 {
                let (result, crashed) = crash_run(bad, n, mode).await;
                assert_eq!(
                    result, reference,
                    "bad={bad}: crash at write {n} ({mode:?})"
                );
                if !crashed {
                    break; // the run has fewer writes than n: every point was tried
                }
                crashes += 1;
            }
            assert!(
                crashes > 20,
                "only {crashes} crash points (bad={bad}, {mode:?})"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_rejection_fails_the_freight_in_that_stage_and_keeps_the_old_one() {
    let w = World::new(line("manual"));
    let (store, _, v1, v2) = w.v1_then_v2().await;
    let executor = w.executor(store.clone());
    let run = tokio::spawn(async move { executor.run_until_settled().await });
    let carol = w.handle(&store, "carol");
    while carol.pending_approvals().await.unwrap().is_empty() {
        assert!(!run.is_finished());
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    carol.reject("prod", "not during the sale").await.unwrap();
    let state = run.await.unwrap().unwrap();
    assert_eq!(current(&state, "prod"), Some(v1));
    let reason = &state.stage("prod").failed[&v2].reason;
    assert!(
        reason.contains("rejected by carol: not during the sale"),
        "{reason}"
    );
    assert!(!w.prod.revisions_served().contains("app@v2"));
    assert_eq!(
        events(&state, "prod"),
        [
            "v1 verified",
            "v2 started",
            "v2 rejected by carol",
            "v2 failed"
        ]
    );
}

/// An environment whose rollouts pass a pre-flight checklist first.
#[derive(Debug, Clone)]
struct Checked {
    env: Env,
    checklist: Checklist,
}

#[async_trait]
impl Environment for Checked {
    fn attach(&self, rollout: RolloutBuilder, ctx: &PromotionContext) -> RolloutBuilder {
        self.env
            .attach(rollout, ctx)
            .gate(GateStage::PreFlight, self.checklist.clone())
    }
}

#[tokio::test(start_paused = true)]
async fn a_stage_checklist_refuses_the_freight_and_the_stage_rollouts_log_keeps_it_whole() {
    let w = World::new(line("auto"));
    let store = MemoryStateStore::new();
    let cache = ColdCache::default();
    let checklist = Checklist::new("staging-preflight")
        .clock(w.clock)
        .allow_fixes(true)
        .audit_to(store.clone())
        .item(ChecklistItem::new("cache", "configuration", cache.clone()).fix(cache))
        .item(ChecklistItem::new(
            "secrets-present",
            "security",
            FixedCheck::new(CheckResult::fail("not set: API_TOKEN")),
        ))
        .item(ChecklistItem::new(
            "backup-fresh",
            "infrastructure",
            FixedCheck::new(CheckResult::fail("last backup is 26 hours old").hint("run a backup")),
        ))
        .exemption(Exemption::new(
            "secrets-present",
            "vault move CHG-2041",
            "alice",
            T0 + Duration::from_hours(24),
        ));
    let executor = Executor::builder(w.pipeline.clone())
        .state_store(store.clone())
        .environment("dev", w.dev.clone())
        .environment(
            "staging",
            Checked {
                env: w.staging.clone(),
                checklist,
            },
        )
        .environment("prod", w.prod.clone())
        .clock(w.clock)
        .poll_interval(Duration::from_secs(30))
        .build()
        .unwrap();
    let ci = w.handle(&store, "ci");
    let v1 = ci.adopt(v(1)).await.unwrap();
    let v2 = ci.submit(v(2)).await.unwrap();
    let state = executor.run_until_settled().await.unwrap();

    assert_eq!(current(&state, "staging"), Some(v1));
    let reason = &state.stage("staging").failed[&v2].reason;
    assert!(
        reason.contains("refused by gate `staging-preflight`")
            && reason.contains("backup-fresh [fail]: last backup is 26 hours old"),
        "{reason}"
    );
    assert!(
        !w.staging.revisions_served().contains("app@v2"),
        "no traffic moved in staging"
    );
    assert!(w.prod.router.splits().is_empty(), "prod was never touched");

    // The stage rollout's decision log has every check, the exemption used and the fix run.
    let rollout = state
        .stage("staging")
        .history
        .iter()
        .find_map(|h| match &h.event {
            Event::Started { rollout, .. } if h.freight == v2 => Some(rollout.clone()),
            _ => None,
        })
        .unwrap();
    let records = store.records(&rollout, 0, 1000).await.unwrap();
    let record = records
        .iter()
        .find_map(|r| match &r.entry {
            cutover_core::Entry::Decision {
                result: Some(ActionResult::Checklist { checklist, .. }),
                ..
            } => Some(checklist.clone()),
            _ => None,
        })
        .expect("a checklist record in the stage rollout's log");
    assert_eq!(record.checklist, "staging-preflight");
    let checks: Vec<(&str, CheckStatus)> = record
        .checks
        .iter()
        .map(|c| (c.id.as_str(), c.status))
        .collect();
    assert_eq!(
        checks,
        [
            ("cache", CheckStatus::Pass),
            ("secrets-present", CheckStatus::Fail),
            ("backup-fresh", CheckStatus::Fail),
        ]
    );
    let exempted: Vec<(&str, &str, &str)> = record
        .exemptions_used()
        .map(|e| (e.check.as_str(), e.by.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        exempted,
        [("secrets-present", "alice", "vault move CHG-2041")]
    );
    let fixes: Vec<(&str, &str, bool, &str)> = record
        .fixes()
        .map(|(id, f)| (id, f.description.as_str(), f.applied, f.message.as_str()))
        .collect();
    assert_eq!(fixes, [("cache", "warm the cache", true, "cache warmed")]);
}

/// dev -> staging -> prod, where staging verifies with `verification` after its rollout.
fn verified_line(verification: &str) -> Pipeline {
    Pipeline::from_yaml(&format!(
        "name: shop\n{PLAN}\nstages:
  - {{ name: dev, providers: [dev] }}
  - name: staging
    upstreams: [dev]
    providers: [staging]
    verification: {verification}
  - {{ name: prod, upstreams: [staging], providers: [prod] }}
"
    ))
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn verification_analyses_that_pass_let_the_freight_go_downstream() {
    let w = World::new(verified_line(
        "{ runs: [ { name: smoke, initial_delay: 30s, interval: 1m, count: 3 } ] }",
    ));
    let (store, _, _, v2) = w.v1_then_v2().await;
    let state = w.executor(store.clone()).run_until_settled().await.unwrap();

    assert_eq!(current(&state, "prod"), Some(v2.clone()));
    assert!(w.prod.serves_only("app@v2"));
    // Three measurements of v2 against v1, at 30 s, 1m30 and 2m30 after the rollout promoted.
    let calls = w.staging.smoke.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|c| c.revisions.candidate.as_str() == "app@v2"
                && c.revisions.stable.as_str() == "app@v1"
                && c.analysis == "smoke")
    );
    let elapsed: Vec<Duration> = calls.iter().map(|c| c.elapsed).collect();
    assert_eq!(
        elapsed,
        [30, 90, 150].map(Duration::from_secs),
        "measured on the run's schedule"
    );
    assert_eq!(
        at(&state, "staging", "v2 verified"),
        at(&state, "staging", "v2 rolled out") + Duration::from_secs(150)
    );
    assert!(at(&state, "prod", "v2 started") >= at(&state, "staging", "v2 verified"));
    assert!(w.dev.smoke.calls().is_empty(), "dev has no verification");
    assert!(state.stage("staging").promotion.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_failed_verification_analysis_rolls_the_stage_back_and_downstream_never_sees_the_freight()
{
    let w = World::new(verified_line(
        "{ runs: [ { name: smoke, interval: 1m, count: 3 } ] }",
    ));
    // v2's second measurement fails; the rollback to v1 then passes its own verification.
    w.staging.smoke.set_script(
        [Verdict::Pass, Verdict::Fail, Verdict::Pass]
            .map(|v| cutover_core::AnalysisResult::new(v, format!("smoke {v}"))),
    );
    let (store, ci, v1, v2) = w.v1_then_v2().await;
    let state = w.executor(store.clone()).run_until_settled().await.unwrap();

    assert_eq!(current(&state, "staging"), Some(v1.clone()));
    assert!(w.staging.serves_only("app@v1"), "staging went back to v1");
    assert_eq!(events(&state, "staging"), ROLLED_BACK_TO_V1);
    let reason = &state.stage("staging").failed[&v2].reason;
    assert!(
        reason.starts_with(
            "verification: analysis `smoke` failed (1 of 2 measurements passed): smoke fail"
        ),
        "{reason}"
    );
    // Failed at its second measurement, one minute after the rollout promoted.
    assert_eq!(
        at(&state, "staging", "v2 failed"),
        at(&state, "staging", "v2 rolled out") + Duration::from_mins(1)
    );
    assert!(w.prod.router.splits().is_empty(), "prod was never touched");
    assert_eq!(events(&state, "prod"), ["v1 verified"]);
    assert!(matches!(
        ci.next().await.unwrap().next("prod"),
        Some(Next::Blocked(Blocked::FailedUpstream { freight, stage, .. })) if *freight == v2 && stage == "staging"
    ));
}

#[tokio::test(start_paused = true)]
async fn a_verification_template_reads_the_environments_metric_source() {
    let w = World::new(verified_line(
        "{ analyses: { errors: { threshold: { metrics: [ { name: error-rate, source: metrics, query: error_ratio, max: 0.01 } ] } } }, runs: [ { name: errors, interval: 1m, count: 2 } ] }",
    ));
    let v2: RevisionId = "app@v2".parse().unwrap();
    w.staging.metrics.script(
        "error_ratio",
        &v2,
        [
            cutover_core::Samples::Counts {
                events: 1,
                total: 1000,
            },
            cutover_core::Samples::Counts {
                events: 80,
                total: 1000,
            },
        ],
    );
    // v1, back after the rollback, is healthy.
    w.staging.metrics.set(
        "error_ratio",
        &"app@v1".parse().unwrap(),
        cutover_core::Samples::Counts {
            events: 0,
            total: 1000,
        },
    );
    let (store, _, v1, v2_id) = w.v1_then_v2().await;
    let state = w.executor(store.clone()).run_until_settled().await.unwrap();

    assert_eq!(current(&state, "staging"), Some(v1));
    assert_eq!(
        events(&state, "staging")[3..],
        ["v2 failed", "v1 rollback", "v1 rolled out", "v1 verified"]
    );
    let reason = &state.stage("staging").failed[&v2_id].reason;
    assert!(
        reason.contains("analysis `errors` failed") && reason.contains("error-rate"),
        "{reason}"
    );
    let queried: Vec<String> = w
        .staging
        .metrics
        .queries()
        .iter()
        .map(|q| q.revision.as_str().to_owned())
        .collect();
    assert_eq!(&queried[..2], ["app@v2", "app@v2"], "{queried:?}");
    assert!(w.prod.router.splits().is_empty());
}

/// The line with prod frozen (`freeze` is prod's list of windows).
fn frozen_line(prod_policy: &str, freeze: &str) -> Pipeline {
    Pipeline::from_yaml(&format!(
        "name: shop\n{PLAN}\nstages:
  - {{ name: dev, providers: [dev] }}
  - {{ name: staging, upstreams: [dev], soak: 10m, providers: [staging] }}
  - {{ name: prod, upstreams: [staging], soak: 30m, promotion: {prod_policy}, providers: [prod], freeze: {freeze} }}
"
    ))
    .unwrap()
}

const fn utc(hour: u64, minute: u64) -> Timestamp {
    // T0 is 2026-12-02 12:00 UTC.
    Timestamp::from_unix_millis(1_796_212_800_000 + ((hour - 12) * 60 + minute) * 60_000)
}

#[tokio::test(start_paused = true)]
async fn the_executor_waits_out_a_freeze_window_and_promotes_after_it() {
    // v2 is ready for prod around 12:45; prod is frozen from 12:30 to 14:00 (UTC).
    let w = World::new(frozen_line(
        "auto",
        r#"[ { timezone: UTC, from: "2026-12-02T12:30", until: "2026-12-02T14:00", reason: release party } ]"#,
    ));
    let (store, ci, _, v2) = w.v1_then_v2().await;
    let executor = w.executor(store.clone());
    let run = tokio::spawn(async move { executor.run_until_settled().await });

    tokio::time::sleep(utc(13, 59).saturating_since(T0)).await;
    assert!(!run.is_finished());
    let state = ci.state().await.unwrap();
    assert_eq!(current(&state, "staging"), Some(v2.clone()));
    assert!(
        at(&state, "staging", "v2 verified") + Duration::from_mins(30) < utc(14, 0),
        "v2 soaked long enough before the window ended"
    );
    assert_eq!(
        events(&state, "prod"),
        ["v1 verified"],
        "nothing started in prod"
    );
    assert!(w.prod.router.splits().is_empty(), "prod's router untouched");
    assert_eq!(
        ci.next().await.unwrap().next("prod"),
        Some(&Next::Frozen {
            freight: v2.clone(),
            until: utc(14, 0),
            reason: "release party".into()
        })
    );

    let state = run.await.unwrap().unwrap();
    assert_eq!(current(&state, "prod"), Some(v2));
    assert!(w.prod.serves_only("app@v2"));
    let started = at(&state, "prod", "v2 started");
    assert!(
        started >= utc(14, 0) && started <= utc(14, 0) + Duration::from_secs(30),
        "started at {started}, the executor's poll interval after the window"
    );
}

#[tokio::test(start_paused = true)]
async fn an_approval_given_during_a_freeze_promotes_only_after_the_window() {
    // prod's promotion starts around 12:45 and waits for its approval; the freeze runs from
    // 13:00 to 15:00 (Berlin: 14:00 to 16:00); the approval comes at 13:30.
    let w = World::new(frozen_line(
        "manual",
        r#"[ { timezone: Europe/Berlin, days: [wed], start: "14:00", end: "16:00", reason: change freeze } ]"#,
    ));
    let (store, _, _, v2) = w.v1_then_v2().await;
    let executor = w.executor(store.clone());
    let run = tokio::spawn(async move { executor.run_until_settled().await });

    let alice = w.handle(&store, "alice");
    tokio::time::sleep(utc(13, 30).saturating_since(T0)).await;
    let pending = alice.pending_approvals().await.unwrap();
    assert_eq!(pending.len(), 1, "prod waits for its approval");
    let state = alice.state().await.unwrap();
    assert!(
        at(&state, "prod", "v2 started") < utc(13, 0),
        "the promotion began before the window"
    );
    alice.approve("prod", "CAB-9").await.unwrap();

    tokio::time::sleep(utc(14, 59).saturating_since(utc(13, 30))).await;
    assert!(!run.is_finished());
    assert!(
        alice.pending_approvals().await.unwrap().is_empty(),
        "the approval was taken"
    );
    assert!(
        w.prod.router.splits().is_empty(),
        "no traffic moved in prod during the freeze: {:?}",
        w.prod.router.splits()
    );

    let state = run.await.unwrap().unwrap();
    assert_eq!(current(&state, "prod"), Some(v2));
    assert!(w.prod.serves_only("app@v2"));
    assert_eq!(events(&state, "prod"), APPROVED_BY_ALICE);
    assert!(at(&state, "prod", "v2 rolled out") >= utc(15, 0));
    assert!(at(&state, "prod", "v2 approved by alice") < utc(14, 0));
}
