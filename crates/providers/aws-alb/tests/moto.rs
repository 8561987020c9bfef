//! The ALB router, probe and workload against moto's ELBv2 server on loopback: the router
//! contract on a listener and on a rule, what read-modify-write keeps, a canary through the
//! engine (10 % -> 50 % -> 100 %) and a rollback, target health, and a rolling replacement.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, TargetDescription};
use cutover_aws_alb::moto::Fixture;
use cutover_aws_alb::moto::MotoServer as Moto;
use cutover_aws_alb::{AlbRouter, Target, TargetGroupWorkload, TargetHealthProbe};
use cutover_core::{
    ErrorKind, Health, HealthProbe as _, Outcome, Plan, ProviderError, ReplicaStatus, RevisionId,
    Rollout, RouterCapabilities, StickySession, TrafficRouter, TrafficSplit, Verdict, Weight,
    Workload,
};
use cutover_test::{ScriptedAnalysis, router_contract};

fn rev(s: &str) -> RevisionId {
    s.parse().unwrap()
}

/// Stickiness as moto reports it: enabled, duration.
type Sticky = Option<(bool, Option<i32>)>;

/// The forward action's (target group, weight) pairs and stickiness, as moto reports them.
fn forward(actions: &[Action]) -> (Vec<(String, i32)>, Sticky) {
    let action = actions
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .expect("a forward action");
    let config = action.forward_config().expect("a forward config");
    let groups = config
        .target_groups()
        .iter()
        .map(|t| {
            (
                t.target_group_arn().unwrap().to_owned(),
                t.weight().unwrap(),
            )
        })
        .collect();
    let sticky = config
        .target_group_stickiness_config()
        .map(|s| (s.enabled().unwrap_or(false), s.duration_seconds()));
    (groups, sticky)
}

async fn listener_actions(moto: &Moto, listener: &str) -> Vec<Action> {
    let out = moto
        .client
        .describe_listeners()
        .listener_arns(listener)
        .send()
        .await
        .unwrap();
    out.listeners()[0].default_actions().to_vec()
}

/// A router on the fixture's listener: v1 on the stable group, v2 on the candidate group.
fn listener_router(moto: &Moto, fx: &Fixture) -> AlbRouter {
    AlbRouter::builder(moto.client.clone())
        .listener(&fx.listener)
        .target_group("v1", &fx.stable)
        .target_group("v2", &fx.candidate)
        .build()
        .unwrap()
}

/// A router that records what AWS reports after each split it sets.
#[derive(Debug, Clone)]
struct Observed {
    inner: AlbRouter,
    seen: Arc<Mutex<Vec<TrafficSplit>>>,
}

#[async_trait]
impl TrafficRouter for Observed {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> RouterCapabilities {
        self.inner.capabilities()
    }
    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        self.inner.set_split(split).await?;
        let read = self.inner.current_split().await?.expect("ALB reads back");
        self.seen.lock().unwrap().push(read);
        Ok(())
    }
    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        self.inner.current_split().await
    }
}

fn candidate_percent(seen: &Observed) -> Vec<f64> {
    seen.seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.weight(&rev("v2")).percent())
        .collect()
}

#[tokio::test]
#[ignore = "needs moto: scripts/test-deps"]
async fn listener_router_passes_the_contract() {
    let (moto, fx) = Moto::with_fixture().await;
    let router = listener_router(&moto, &fx);
    // The fixture's listener forwards with TargetGroupArn only: read as all traffic on v1.
    let before = router.current_split().await.unwrap().unwrap();
    assert!(before.is_all_to(&rev("v1")), "{before}");
    let report = router_contract(&router, &rev("v1"), &rev("v2"))
        .await
        .unwrap();
    assert!(report.passed.contains(&"finest split"), "{report}");
    assert_eq!(
        report.unsupported,
        [
            "header routes",
            "cookie routes",
            "mirroring",
            "sticky sessions"
        ]
    );
    // The contract ends on stable: exactly the weights of the rounding rule.
    let (groups, _) = forward(&listener_actions(&moto, &fx.listener).await);
    assert_eq!(
        groups,
        [(fx.stable.clone(), 999), (fx.candidate.clone(), 0)]
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test-deps"]
async fn rule_router_passes_the_contract_and_keeps_what_it_does_not_manage() {
    let (moto, fx) = Moto::with_fixture().await;
    let router = AlbRouter::builder(moto.client.clone())
        .rule(&fx.rule)
        .target_group("v1", &fx.stable)
        .target_group("v2", &fx.candidate)
        .build()
        .unwrap();
    router_contract(&router, &rev("v1"), &rev("v2"))
        .await
        .unwrap();

    // Sticky sessions with ALB's own cookie, then a split: both kept.
    router
        .set_sticky_sessions(Some(StickySession {
            cookie: None,
            duration: std::time::Duration::from_hours(1),
        }))
        .await
        .unwrap();
    let split = TrafficSplit::canary(
        &rev("v1"),
        &rev("v2"),
        Weight::from_basis_points(1230).unwrap(),
    )
    .unwrap();
    router.set_split(&split).await.unwrap();
    assert_eq!(router.current_split().await.unwrap(), Some(split));

    let rules = moto
        .client
        .describe_rules()
        .rule_arns(&fx.rule)
        .send()
        .await
        .unwrap();
    let rule = &rules.rules()[0];
    let (groups, sticky) = forward(rule.actions());
    assert_eq!(
        groups,
        [
            (fx.stable.clone(), 877),
            (fx.other.clone(), 7),
            (fx.candidate.clone(), 123)
        ],
        "the unmanaged group keeps its weight and place"
    );
    assert_eq!(sticky, Some((true, Some(3600))));
    assert_eq!(rule.priority(), Some("10"));
    let condition = &rule.conditions()[0];
    assert_eq!(condition.field(), Some("path-pattern"));
    assert_eq!(condition.values(), ["/api/*"]);
    // The listener's default action is another thing and was not touched.
    let default = listener_actions(&moto, &fx.listener).await;
    assert_eq!(default.len(), 1);
    assert_eq!(default[0].target_group_arn(), Some(fx.stable.as_str()));
    assert!(default[0].forward_config().is_none());

    // Sticky sessions off again; the named-cookie form is not something ALB can do.
    router.set_sticky_sessions(None).await.unwrap();
    let rules = moto
        .client
        .describe_rules()
        .rule_arns(&fx.rule)
        .send()
        .await
        .unwrap();
    assert_eq!(forward(rules.rules()[0].actions()).1, Some((false, None)));
    let named = router
        .set_sticky_sessions(Some(StickySession {
            cookie: Some("session".into()),
            duration: std::time::Duration::from_mins(1),
        }))
        .await
        .unwrap_err();
    assert_eq!(named.kind(), ErrorKind::Unsupported);
}

/// Runs a canary with `steps` on the fixture's listener through the engine; returns the
/// outcome, the candidate's share moto reported after each split, and the listener's final
/// (target group, weight) pairs.
async fn engine_run(
    name: &str,
    steps: &str,
    verdicts: &[Verdict],
) -> (Outcome, Vec<f64>, Vec<(String, i32)>, Fixture) {
    let (moto, fx) = Moto::with_fixture().await;
    let router = Observed {
        inner: listener_router(&moto, &fx),
        seen: Arc::default(),
    };
    let plan = Plan::from_yaml(&format!("strategy: {{ canary: {{ steps: {steps} }} }}")).unwrap();
    let rollout = Rollout::builder(name, plan)
        .revisions("v1", "v2")
        .router(router.clone())
        .analysis("checks", ScriptedAnalysis::verdicts(verdicts.to_vec()))
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    let (groups, _) = forward(&listener_actions(&moto, &fx.listener).await);
    (outcome, candidate_percent(&router), groups, fx)
}

#[tokio::test]
#[ignore = "needs moto: scripts/test-deps"]
async fn canary_through_the_engine_promotes_at_10_50_100() {
    let steps = "[ {set_weight: 10}, {pause: {duration: 10ms}}, {set_weight: 50}, {pause: {duration: 10ms}} ]";
    let (outcome, seen, groups, fx) = engine_run("alb-canary", steps, &[]).await;
    assert_eq!(outcome, Outcome::Promoted);
    assert_eq!(seen, [10.0, 50.0, 100.0]);
    assert_eq!(groups, [(fx.stable, 0), (fx.candidate, 999)]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test-deps"]
async fn failing_analysis_rolls_the_listener_back_to_stable() {
    let steps = "[ {set_weight: 10}, {analysis: {name: checks}}, {set_weight: 50}, {analysis: {name: checks}} ]";
    let (outcome, seen, groups, fx) =
        engine_run("alb-rollback", steps, &[Verdict::Pass, Verdict::Fail]).await;
    assert!(matches!(outcome, Outcome::RolledBack(_)), "{outcome:?}");
    assert_eq!(seen, [10.0, 50.0, 0.0]);
    assert_eq!(groups, [(fx.stable, 999), (fx.candidate, 0)]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test-deps"]
async fn target_health_probe_reads_moto() {
    let (moto, fx) = Moto::with_fixture().await;
    let probe = TargetHealthProbe::new(
        moto.client.clone(),
        [("v1", fx.stable.as_str()), ("v2", fx.candidate.as_str())],
    )
    .unwrap();
    // No targets yet.
    let empty = probe.check(&rev("v2")).await.unwrap();
    assert!(
        matches!(&empty, Health::Progressing { detail } if detail.contains("no registered targets")),
        "{empty}"
    );
    moto.client
        .register_targets()
        .target_group_arn(&fx.candidate)
        .targets(
            TargetDescription::builder()
                .id("10.0.1.10")
                .port(8080)
                .build(),
        )
        .targets(
            TargetDescription::builder()
                .id("10.0.1.11")
                .port(8080)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(probe.check(&rev("v2")).await.unwrap(), Health::Ready);
    let unknown = probe.check(&rev("v3")).await.unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::Permanent);

    // A well-formed ARN of a target group that does not exist: AWS's 400, permanent.
    let missing = TargetHealthProbe::new(
        moto.client.clone(),
        [(
            "v1",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/nope/0123456789abcdef",
        )],
    )
    .unwrap();
    let err = missing.check(&rev("v1")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    assert!(err.to_string().contains("targetgroup/nope"), "{err}");
}

/// A workload that records, after each scale, the (registered, healthy) targets of both
/// revisions as moto reports them.
#[derive(Debug, Clone)]
struct Watched {
    inner: TargetGroupWorkload,
    after_scale: Arc<Mutex<Vec<(u32, u32)>>>,
}

#[async_trait]
impl Workload for Watched {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn scale(&self, revision: &RevisionId, replicas: u32) -> Result<(), ProviderError> {
        self.inner.scale(revision, replicas).await?;
        let (a, b) = (
            self.inner.status(&rev("v1")).await?,
            self.inner.status(&rev("v2")).await?,
        );
        self.after_scale
            .lock()
            .unwrap()
            .push((a.desired + b.desired, a.available + b.available));
        Ok(())
    }
    async fn status(&self, revision: &RevisionId) -> Result<ReplicaStatus, ProviderError> {
        self.inner.status(revision).await
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test-deps"]
async fn rolling_update_replaces_targets_batch_by_batch() {
    let (moto, fx) = Moto::with_fixture().await;
    let pool = |prefix: &str| -> Vec<Target> {
        (1..=3)
            .map(|i| Target::new(format!("{prefix}.{i}")).with_port(8080))
            .collect()
    };
    let workload = TargetGroupWorkload::new(
        moto.client.clone(),
        &fx.stable,
        [("v1", pool("10.0.1")), ("v2", pool("10.0.2"))],
    )
    .unwrap()
    .with_drain_wait(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_secs(5),
    );
    // A target nobody manages, which must stay.
    moto.client
        .register_targets()
        .target_group_arn(&fx.stable)
        .targets(
            TargetDescription::builder()
                .id("10.0.9.9")
                .port(8080)
                .build(),
        )
        .send()
        .await
        .unwrap();
    workload.scale(&rev("v1"), 3).await.unwrap();
    let v1 = workload.status(&rev("v1")).await.unwrap();
    assert_eq!((v1.desired, v1.available), (3, 3));

    let plan = Plan::from_yaml(
        "{ strategy: { rolling: { replicas: 3, max_surge: 1, max_unavailable: 0 } }, poll_interval: 10ms }",
    )
    .unwrap();
    let watched = Watched {
        inner: workload.clone(),
        after_scale: Arc::default(),
    };
    let rollout = Rollout::builder("alb-rolling", plan)
        .revisions("v1", "v2")
        .workload(watched.clone())
        .build()
        .unwrap();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    // One target in, one out, three times: never more than replicas + max_surge registered,
    // never fewer than replicas - max_unavailable healthy.
    let after = watched.after_scale.lock().unwrap().clone();
    assert_eq!(after, [(4, 4), (3, 3), (4, 4), (3, 3), (4, 4), (3, 3)]);

    let out = moto
        .client
        .describe_target_health()
        .target_group_arn(&fx.stable)
        .send()
        .await
        .unwrap();
    let mut ids: Vec<&str> = out
        .target_health_descriptions()
        .iter()
        .map(|d| d.target().unwrap().id().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["10.0.2.1", "10.0.2.2", "10.0.2.3", "10.0.9.9"]);
    assert_eq!(workload.status(&rev("v1")).await.unwrap().desired, 0);
    assert_eq!(workload.status(&rev("v2")).await.unwrap().available, 3);
}
