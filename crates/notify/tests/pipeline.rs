//! Pipeline notices: a small pipeline run by the executor on paused time with the memory
//! store, then delivered to a real webhook receiver on 127.0.0.1, in history order per stage,
//! once, and nothing again on the next pass.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::{
    MemoryStateStore, ProviderError, RolloutBuilder, StateStore, Timestamp, TokioClock, Verdict,
};
use cutover_notify::{Filter, NoticeKind, Notifier, SigningKey, Webhook};
use cutover_pipeline::{
    Environment, Executor, Freight, Pipeline, PipelineHandle, PromotionContext, Verification,
};
use cutover_test::{FakeRouter, ScriptedAnalysis};
use support::*;

const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const T0: Timestamp = Timestamp::from_unix_millis(1_796_212_800_000);

/// One environment: a fake router and an analysis that passes.
#[derive(Debug, Clone)]
struct Env(FakeRouter);

#[async_trait]
impl Environment for Env {
    fn attach(&self, rollout: RolloutBuilder, _ctx: &PromotionContext) -> RolloutBuilder {
        rollout
            .router(self.0.clone())
            .analysis("checks", ScriptedAnalysis::verdicts([Verdict::Pass]))
    }

    async fn verify(&self, _ctx: &PromotionContext) -> Result<Verification, ProviderError> {
        Ok(Verification::Passed)
    }
}

fn executor(pipeline: &Pipeline, store: &MemoryStateStore, clock: TokioClock) -> Executor {
    Executor::builder(pipeline.clone())
        .state_store(store.clone())
        .environment("dev", Env(FakeRouter::new("dev")))
        .environment("prod", Env(FakeRouter::new("prod")))
        .clock(clock)
        .poll_interval(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn pipeline_notices_reach_a_webhook_in_order_once() {
    let pipeline = Pipeline::from_yaml(
        "name: shop
plan: { strategy: { canary: { steps: [ { set_weight: 50 }, { analysis: { name: checks } } ] } } }
stages:
  - { name: dev, providers: [dev] }
  - { name: prod, upstreams: [dev], promotion: manual, providers: [prod] }
",
    )
    .unwrap();
    let clock = TokioClock::starting_at(T0);
    let store = MemoryStateStore::new();
    let handle = |who: &str| {
        PipelineHandle::new(Arc::new(store.clone()), pipeline.clone(), Arc::new(clock)).by(who)
    };
    let ci = handle("ci");
    ci.adopt(Freight::new("v1", "app@v1")).await.unwrap();
    ci.submit(Freight::new("v2", "app@v2")).await.unwrap();
    let exec = executor(&pipeline, &store, clock);
    let run = tokio::spawn(async move { exec.run_until_settled().await });
    let alice = handle("alice");
    while alice.pending_approvals().await.unwrap().is_empty() {
        assert!(
            !run.is_finished(),
            "settled without asking: {:?}",
            run.await
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    alice.approve("prod", "CAB-7").await.unwrap();
    run.await.unwrap().unwrap();
    alice.rollback("prod", "INC-42").await.unwrap();
    executor(&pipeline, &store, clock)
        .run_until_settled()
        .await
        .unwrap();

    // Deliver over real HTTP in real time.
    tokio::time::resume();
    let store: Arc<dyn StateStore> = Arc::new(store);
    let receiver = Receiver::start().await;
    let pipeline_kinds = Filter::default().kinds([
        NoticeKind::StagePromoted,
        NoticeKind::StageVerified,
        NoticeKind::AwaitingApproval,
        NoticeKind::FreightBlocked,
        NoticeKind::FreightFailed,
        NoticeKind::StageRolledBack,
    ]);
    let sink = Webhook::new(&receiver.url("/hook"), SigningKey::parse(KEY).unwrap()).unwrap();
    let notifier = Notifier::new(store.clone())
        .sink("ops", sink, pipeline_kinds)
        .unwrap()
        .retry(fast_retry(3));
    let report = notifier.deliver_pending().await.unwrap();
    let received = receiver.received();
    let seen: Vec<String> = received
        .iter()
        .map(|r| {
            let data = &r.json()["data"];
            format!(
                "{} {} {} {}",
                data["pipeline"]["stage"].as_str().unwrap(),
                data["pipeline"]["freight_name"].as_str().unwrap(),
                data["kind"].as_str().unwrap(),
                data["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        // The histories: dev `v1 verified` (adopted: no notice), `v2 started`, `v2 rolled
        // out`, `v2 verified`; prod `v1 verified`, `v2 started` (manual: awaiting approval),
        // `v2 approved`, `v2 rolled out`, `v2 verified`, `v2 failed` (the rollback by a
        // person), `v1 started` (rollback), `v1 rolled out`, `v1 verified`.
        [
            "dev v2 stage_promoted shop/dev/3",
            "dev v2 stage_verified shop/dev/4",
            "prod v2 awaiting_approval shop/prod/2",
            "prod v2 stage_promoted shop/prod/4",
            "prod v2 stage_verified shop/prod/5",
            "prod v2 freight_failed shop/prod/6",
            "prod v1 stage_rolled_back shop/prod/8",
            "prod v1 stage_verified shop/prod/9",
        ],
    );
    assert_eq!(report.delivered["ops"], seen.len());
    let failed = received[5].json();
    assert_eq!(failed["data"]["severity"], "critical");
    assert_eq!(failed["data"]["reason"], "rolled back by alice: INC-42");
    assert_eq!(failed["data"]["rollout"]["environment"], "prod");
    // Each notice names the stage's rollout of that freight, which is in the same store.
    for r in &received {
        let rollout = r.json()["data"]["rollout"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            store
                .load(&rollout.parse().unwrap())
                .await
                .unwrap()
                .is_some(),
            "{rollout}"
        );
    }
    // As CloudEvents: the stage's rollback is a CDEvents service.rolledback in the stage's
    // environment; the other pipeline notices are cutover's own types.
    let events = cutover_notify::CloudEvents::new(&receiver.url("/ce"), "/cutover/test").unwrap();
    let notices: Vec<cutover_notify::Notice> = received
        .iter()
        .map(|r| serde_json::from_value(r.json()["data"].clone()).unwrap())
        .collect();
    let rolled_back = events.event(&notices[6]);
    assert_eq!(rolled_back["type"], "dev.cdevents.service.rolledback.0.3.0");
    assert_eq!(
        rolled_back["data"]["subject"]["content"]["environment"]["id"],
        "prod"
    );
    assert_eq!(
        rolled_back["data"]["subject"]["content"]["artifactId"],
        format!("pkg:generic/{}@app@v1", notices[6].rollout.service)
    );
    assert_eq!(
        events.event(&notices[0])["type"],
        "dev.cutover.pipeline.stage_promoted"
    );

    // A second pass, and a new notifier on the same store (a restart), send nothing again.
    assert_eq!(
        notifier.deliver_pending().await.unwrap().delivered["ops"],
        0
    );
    let sink = Webhook::new(&receiver.url("/hook"), SigningKey::parse(KEY).unwrap()).unwrap();
    let restarted = Notifier::new(store.clone())
        .sink("ops", sink, Filter::default())
        .unwrap();
    restarted.deliver_pending().await.unwrap();
    assert_eq!(
        receiver.received().len(),
        seen.len(),
        "nothing delivered twice"
    );
}
