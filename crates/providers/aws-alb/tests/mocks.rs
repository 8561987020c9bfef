//! Error paths moto cannot produce, with aws-smithy-mocks: throttling then success, a permanent
//! validation error, 5xx, a read-back that differs, draining targets, and the inputs moto
//! accepts but AWS rejects, which cutover refuses before calling AWS at all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::operation::deregister_targets::DeregisterTargetsOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_listeners::DescribeListenersOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_target_health::DescribeTargetHealthOutput;
use aws_sdk_elasticloadbalancingv2::operation::modify_listener::ModifyListenerOutput;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, AuthenticateOidcActionConfig, ForwardActionConfig, Listener,
    TargetDescription, TargetGroupStickinessConfig, TargetGroupTuple, TargetHealth,
    TargetHealthDescription, TargetHealthReasonEnum, TargetHealthStateEnum,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use cutover_aws_alb::{AlbError, AlbRouter, Target, TargetGroupWorkload, configure};
use cutover_core::{
    ErrorKind, HealthProbe as _, Outcome, Plan, RetryPolicy, RevisionId, Rollout, StickySession,
    TrafficRouter, TrafficSplit, Weight, Workload,
};

const ACCOUNT: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012";

fn listener() -> String {
    format!("{ACCOUNT}:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2")
}
fn tg(name: &str) -> String {
    format!("{ACCOUNT}:targetgroup/{name}/73e2d6bc24d8a067")
}
fn rev(s: &str) -> RevisionId {
    s.parse().unwrap()
}

fn forward(groups: &[(&str, i32)]) -> Action {
    let mut config = ForwardActionConfig::builder();
    for (name, w) in groups {
        config = config.target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(tg(name))
                .weight(*w)
                .build(),
        );
    }
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(config.build())
        .build()
}

fn weights(actions: &[Action]) -> Vec<(String, i32)> {
    actions
        .iter()
        .filter_map(Action::forward_config)
        .flat_map(ForwardActionConfig::target_groups)
        .map(|t| {
            (
                t.target_group_arn().unwrap().to_owned(),
                t.weight().unwrap(),
            )
        })
        .collect()
}

/// An ELBv2 error response as AWS sends it.
fn aws_error(status: u16, code: &str, retry_after: Option<&str>) -> HttpResponse {
    let body = format!(
        r#"<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{code} from the mock</Message></Error><RequestId>7d6d1e5e</RequestId></ErrorResponse>"#
    );
    let mut response =
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.to_owned());
    }
    response
}

/// A listener kept in memory: DescribeListeners reads it, ModifyListener replaces its default
/// actions (unless `frozen`, to fake AWS not applying a change).
struct FakeListener {
    actions: Arc<Mutex<Vec<Action>>>,
    describe: Rule,
    modify: Rule,
}

fn fake_listener(actions: Vec<Action>, frozen: bool) -> FakeListener {
    let actions = Arc::new(Mutex::new(actions));
    let read = actions.clone();
    let describe = mock!(Client::describe_listeners).then_compute_output(move |_| {
        DescribeListenersOutput::builder()
            .listeners(
                Listener::builder()
                    .listener_arn(listener())
                    .set_default_actions(Some(read.lock().unwrap().clone()))
                    .build(),
            )
            .build()
    });
    let write = actions.clone();
    let modify = mock!(Client::modify_listener).then_compute_output(move |req| {
        if !frozen {
            *write.lock().unwrap() = req.default_actions().to_vec();
        }
        ModifyListenerOutput::builder().build()
    });
    FakeListener {
        actions,
        describe,
        modify,
    }
}

fn client(rules: &[&Rule]) -> Client {
    mock_client!(
        aws_sdk_elasticloadbalancingv2,
        RuleMode::MatchAny,
        rules,
        configure
    )
}

fn router(client: Client) -> AlbRouter {
    AlbRouter::builder(client)
        .listener(listener())
        .target_group("v1", tg("v1"))
        .target_group("v2", tg("v2"))
        .build()
        .unwrap()
}

fn canary(bp: u16) -> TrafficSplit {
    TrafficSplit::canary(
        &rev("v1"),
        &rev("v2"),
        Weight::from_basis_points(bp).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn throttling_is_retried_by_the_engine_only() {
    let fake = fake_listener(vec![forward(&[("v1", 1)])], false);
    let throttle = mock!(Client::describe_listeners)
        .sequence()
        .http_response(|| aws_error(400, "Throttling", Some("3")))
        .build();
    let client = client(&[&throttle, &fake.describe, &fake.modify]);
    let router = router(client);

    // Directly: one call, classified as throttled with AWS's delay, no SDK retry.
    let err = router.set_split(&canary(1000)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttled, "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    assert!(
        err.to_string()
            .contains("DescribeListeners on `arn:aws:elasticloadbalancing"),
        "{err}"
    );
    assert_eq!(throttle.num_calls(), 1);
    assert_eq!(fake.modify.num_calls(), 0);

    // Then success.
    router.set_split(&canary(1000)).await.unwrap();
    assert_eq!(
        weights(&fake.actions.lock().unwrap()),
        [(tg("v1"), 900), (tg("v2"), 100)]
    );
}

#[tokio::test(start_paused = true)]
async fn the_engine_rides_out_throttling() {
    let fake = fake_listener(vec![forward(&[("v1", 1)])], false);
    let throttle = mock!(Client::describe_listeners)
        .sequence()
        .http_response(|| aws_error(400, "Throttling", None))
        .times(2)
        .build();
    let client = client(&[&throttle, &fake.describe, &fake.modify]);
    let plan = Plan::from_yaml("strategy: { canary: { steps: [ {set_weight: 10} ] } }").unwrap();
    let rollout = Rollout::builder("throttled", plan)
        .revisions("v1", "v2")
        .router(router(client))
        .retry(RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    assert_eq!(rollout.run().await.unwrap(), Outcome::Promoted);
    assert_eq!(throttle.num_calls(), 2);
    assert_eq!(
        weights(&fake.actions.lock().unwrap()),
        [(tg("v1"), 0), (tg("v2"), 999)]
    );
}

#[tokio::test]
async fn validation_errors_are_permanent_and_server_errors_transient() {
    let fake = fake_listener(vec![forward(&[("v1", 1)])], false);
    let invalid = mock!(Client::modify_listener)
        .sequence()
        .http_response(|| aws_error(400, "ValidationError", None))
        .http_response(|| aws_error(403, "AccessDenied", None))
        .http_response(|| aws_error(503, "ServiceUnavailable", None))
        .http_status(500, None)
        .build();
    let client = client(&[&invalid, &fake.describe, &fake.modify]);
    let router = router(client);
    let kinds = [
        ErrorKind::Permanent,
        ErrorKind::Permanent,
        ErrorKind::Transient,
        ErrorKind::Transient,
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let err = router.set_split(&canary(1000)).await.unwrap_err();
        assert_eq!(err.kind(), kind, "call {i}: {err}");
        assert!(err.to_string().contains("ModifyListener on `arn:"), "{err}");
        assert_eq!(invalid.num_calls(), i + 1, "no SDK retries");
    }
    assert_eq!(fake.modify.num_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_fails_the_rollout_without_retries() {
    // Stable as cutover writes it, so the rollback finds it in place.
    let fake = fake_listener(vec![forward(&[("v1", 999), ("v2", 0)])], false);
    let invalid = mock!(Client::modify_listener)
        .sequence()
        .http_response(|| aws_error(400, "ValidationError", None))
        .repeatedly()
        .build();
    let client = client(&[&invalid, &fake.describe]);
    let plan = Plan::from_yaml("strategy: { canary: { steps: [ {set_weight: 10} ] } }").unwrap();
    let rollout = Rollout::builder("invalid", plan)
        .revisions("v1", "v2")
        .router(router(client))
        .build()
        .unwrap();
    let err = rollout.run().await.unwrap_err();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    assert!(text.contains("ValidationError"), "{text}");
    // One attempt at 10 %; the rollback to stable finds stable in place and writes nothing.
    assert_eq!(invalid.num_calls(), 1);
}

#[tokio::test]
async fn connection_failures_are_transient() {
    // Nothing listens on port 1.
    let router = router(cutover_aws_alb::moto::moto_client("http://127.0.0.1:1"));
    let err = router.current_split().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("could not reach AWS"), "{err}");
}

#[tokio::test]
async fn read_modify_write_keeps_other_actions_groups_and_stickiness() {
    let oidc = Action::builder()
        .r#type(ActionTypeEnum::AuthenticateOidc)
        .order(1)
        .authenticate_oidc_config(
            AuthenticateOidcActionConfig::builder()
                .issuer("https://idp.example.com")
                .authorization_endpoint("https://idp.example.com/auth")
                .token_endpoint("https://idp.example.com/token")
                .user_info_endpoint("https://idp.example.com/userinfo")
                .client_id("cutover")
                .build(),
        )
        .build();
    let fwd = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .order(2)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(tg("v1"))
                        .weight(1)
                        .build(),
                )
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(tg("legacy"))
                        .weight(5)
                        .build(),
                )
                .target_group_stickiness_config(
                    TargetGroupStickinessConfig::builder()
                        .enabled(true)
                        .duration_seconds(600)
                        .build(),
                )
                .build(),
        )
        .build();
    let fake = fake_listener(vec![oidc.clone(), fwd], false);
    let router = router(client(&[&fake.describe, &fake.modify]));
    router.set_split(&canary(1000)).await.unwrap();
    let actions = fake.actions.lock().unwrap().clone();
    assert_eq!(actions[0], oidc);
    assert_eq!(actions[1].order(), Some(2));
    assert_eq!(
        weights(&actions),
        [(tg("v1"), 900), (tg("legacy"), 5), (tg("v2"), 100)]
    );
    let sticky = actions[1]
        .forward_config()
        .unwrap()
        .target_group_stickiness_config()
        .unwrap();
    assert_eq!(
        (sticky.enabled(), sticky.duration_seconds()),
        (Some(true), Some(600))
    );
    assert_eq!(router.current_split().await.unwrap(), Some(canary(1000)));
    // Setting the same split again writes nothing.
    router.set_split(&canary(1000)).await.unwrap();
    assert_eq!(fake.modify.num_calls(), 1);
}

#[tokio::test]
async fn a_read_back_that_differs_is_an_error() {
    let fake = fake_listener(vec![forward(&[("v1", 1)])], true);
    let router = router(client(&[&fake.describe, &fake.modify]));
    let err = router.set_split(&canary(5000)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(err.to_string().contains("AWS reports"), "{err}");
    assert!(err.to_string().contains("v2/73e2d6bc24d8a067=500"), "{err}");
}

#[tokio::test]
async fn what_moto_accepts_but_aws_rejects_is_refused_before_any_call() {
    let fake = fake_listener(vec![forward(&[("v1", 999), ("legacy", 1000)])], false);
    let client = client(&[&fake.describe, &fake.modify]);
    let build = |l: &str, a: &str, b: &str| {
        AlbRouter::builder(client.clone())
            .listener(l)
            .target_group("v1", a)
            .target_group("v2", b)
            .build()
    };
    // Malformed, of the wrong kind, from another region or account, not an ALB: at build time.
    for (l, a, b) in [
        (listener(), tg("v1"), "web-v2".to_owned()),
        (listener(), tg("v1"), listener()),
        (
            listener(),
            tg("v1"),
            tg("v2").replace("us-east-1", "eu-west-1"),
        ),
        (
            listener(),
            tg("v1"),
            tg("v2").replace("123456789012", "210987654321"),
        ),
        (listener().replace("/app/", "/net/"), tg("v1"), tg("v2")),
        (listener(), tg("v1"), tg("v1")),
    ] {
        let err = build(&l, &a, &b).unwrap_err();
        assert!(
            matches!(
                err,
                AlbError::InvalidArn { .. }
                    | AlbError::ForeignResource { .. }
                    | AlbError::DuplicateTargetGroup(_)
            ),
            "{err}"
        );
    }
    let router = router(client.clone());
    // Weights finer than 0.1 %, and revisions without a target group: before any call.
    let err = router.set_split(&canary(5)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    let other =
        TrafficSplit::canary(&rev("v1"), &rev("v3"), Weight::from_percent(10).unwrap()).unwrap();
    assert_eq!(
        router.set_split(&other).await.unwrap_err().kind(),
        ErrorKind::Permanent
    );
    for seconds in [0, 604_801] {
        let sticky = StickySession {
            cookie: None,
            duration: Duration::from_secs(seconds),
        };
        assert_eq!(
            router
                .set_sticky_sessions(Some(sticky))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Permanent
        );
    }
    assert_eq!(fake.describe.num_calls(), 0);
    // The engine refuses a plan finer than the router at build time.
    let plan = Plan::from_yaml("strategy: { canary: { steps: [ {set_weight: 0.05} ] } }").unwrap();
    let built = Rollout::builder("fine", plan)
        .revisions("v1", "v2")
        .router(router.clone())
        .build();
    assert!(built.is_err());
    assert_eq!(fake.describe.num_calls(), 0);

    // A weight of 1000 on a group cutover does not manage (moto stores it): read, never written.
    let err = router.set_split(&canary(1000)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.to_string()
            .contains("legacy/73e2d6bc24d8a067` has weight 1000"),
        "{err}"
    );
    assert_eq!(fake.describe.num_calls(), 1);
    assert_eq!(fake.modify.num_calls(), 0);

    // Targets that cannot exist, and scaling past a pool: refused without a call.
    let bad = TargetGroupWorkload::new(
        client.clone(),
        &tg("v1"),
        [("v1", vec![Target::new("web-1")])],
    );
    assert!(matches!(bad, Err(AlbError::InvalidTarget(..))));
    let workload =
        TargetGroupWorkload::new(client, &tg("v1"), [("v1", vec![Target::new("10.0.0.1")])])
            .unwrap();
    assert_eq!(
        workload.scale(&rev("v1"), 2).await.unwrap_err().kind(),
        ErrorKind::Permanent
    );
}

fn health(
    id: &str,
    state: TargetHealthStateEnum,
    reason: Option<TargetHealthReasonEnum>,
) -> TargetHealthDescription {
    TargetHealthDescription::builder()
        .target(TargetDescription::builder().id(id).port(80).build())
        .target_health(
            TargetHealth::builder()
                .state(state)
                .set_reason(reason)
                .build(),
        )
        .build()
}

#[tokio::test(start_paused = true)]
async fn scaling_down_waits_for_draining_targets() {
    use TargetHealthStateEnum as S;
    let describe = mock!(Client::describe_target_health)
        .sequence()
        // Before: both registered. Then 10.0.0.2 drains twice, then is gone.
        .output(|| {
            DescribeTargetHealthOutput::builder()
                .target_health_descriptions(health("10.0.0.1", S::Healthy, None))
                .target_health_descriptions(health("10.0.0.2", S::Healthy, None))
                .build()
        })
        .output(|| {
            DescribeTargetHealthOutput::builder()
                .target_health_descriptions(health(
                    "10.0.0.2",
                    S::Draining,
                    Some(TargetHealthReasonEnum::DeregistrationInProgress),
                ))
                .build()
        })
        .times(2)
        .output(|| {
            DescribeTargetHealthOutput::builder()
                .target_health_descriptions(health(
                    "10.0.0.2",
                    S::Unused,
                    Some(TargetHealthReasonEnum::NotRegistered),
                ))
                .build()
        })
        .build();
    let deregister = mock!(Client::deregister_targets)
        .then_output(|| DeregisterTargetsOutput::builder().build());
    let client = mock_client!(
        aws_sdk_elasticloadbalancingv2,
        RuleMode::MatchAny,
        [&describe, &deregister],
        configure
    );
    let targets = vec![
        Target::new("10.0.0.1").with_port(80),
        Target::new("10.0.0.2").with_port(80),
    ];
    let workload = TargetGroupWorkload::new(client, &tg("v1"), [("v1", targets)])
        .unwrap()
        .with_drain_wait(Duration::from_secs(5), Duration::from_mins(1));
    let start = tokio::time::Instant::now();
    workload.scale(&rev("v1"), 1).await.unwrap();
    assert_eq!(deregister.num_calls(), 1);
    assert_eq!(describe.num_calls(), 4);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(10),
        "two polls while draining"
    );
}

#[tokio::test(start_paused = true)]
async fn a_drain_that_never_ends_is_a_transient_error() {
    let describe = mock!(Client::describe_target_health)
        .sequence()
        .output(|| {
            DescribeTargetHealthOutput::builder()
                .target_health_descriptions(health(
                    "10.0.0.1",
                    TargetHealthStateEnum::Draining,
                    None,
                ))
                .build()
        })
        .repeatedly()
        .build();
    let client = mock_client!(
        aws_sdk_elasticloadbalancingv2,
        RuleMode::MatchAny,
        [&describe],
        configure
    );
    let workload = TargetGroupWorkload::new(
        client,
        &tg("v1"),
        [("v1", vec![Target::new("10.0.0.1").with_port(80)])],
    )
    .unwrap()
    .with_drain_wait(Duration::from_secs(5), Duration::from_secs(30));
    let err = workload.scale(&rev("v1"), 0).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(
        err.to_string().contains("10.0.0.1:80 still draining"),
        "{err}"
    );
}

#[tokio::test]
async fn timeouts_are_transient() {
    use aws_sdk_elasticloadbalancingv2::config::timeout::TimeoutConfig;
    use aws_sdk_elasticloadbalancingv2::config::{BehaviorVersion, Credentials, Region};
    // A server that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    let config = configure(
        aws_sdk_elasticloadbalancingv2::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .endpoint_url(url),
    )
    .timeout_config(
        TimeoutConfig::builder()
            .operation_attempt_timeout(Duration::from_millis(200))
            .build(),
    )
    .build();
    let router = router(Client::from_conf(config));
    let err = router.current_split().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    hold.abort();
}

#[tokio::test]
async fn probe_reports_states_moto_never_shows() {
    use TargetHealthReasonEnum as R;
    use TargetHealthStateEnum as S;
    let describe = mock!(Client::describe_target_health)
        .sequence()
        .http_response(|| aws_error(400, "Throttling", None))
        .output(|| {
            DescribeTargetHealthOutput::builder()
                .target_health_descriptions(health("10.0.0.1", S::Healthy, None))
                .target_health_descriptions(health(
                    "10.0.0.2",
                    S::Initial,
                    Some(R::InitialHealthChecking),
                ))
                .target_health_descriptions(health(
                    "10.0.0.3",
                    S::Draining,
                    Some(R::DeregistrationInProgress),
                ))
                .build()
        })
        .output(|| {
            DescribeTargetHealthOutput::builder()
                .target_health_descriptions(health("10.0.0.1", S::Healthy, None))
                .target_health_descriptions(health(
                    "10.0.0.2",
                    S::Unhealthy,
                    Some(R::ResponseCodeMismatch),
                ))
                .build()
        })
        .build();
    let client = mock_client!(
        aws_sdk_elasticloadbalancingv2,
        RuleMode::Sequential,
        [&describe],
        configure
    );
    let probe = cutover_aws_alb::TargetHealthProbe::new(client, [("v2", tg("v2"))]).unwrap();
    let v2 = rev("v2");
    assert_eq!(
        probe.check(&v2).await.unwrap_err().kind(),
        ErrorKind::Throttled
    );
    let starting = probe.check(&v2).await.unwrap().to_string();
    assert_eq!(
        starting,
        format!(
            "progressing: target group `{}`: 1/2 targets healthy; 10.0.0.2:80 initial (Elb.InitialHealthChecking)",
            tg("v2")
        )
    );
    let failed = probe.check(&v2).await.unwrap().to_string();
    assert_eq!(
        failed,
        format!(
            "failed: target group `{}`: 1/2 targets failing: 10.0.0.2:80 unhealthy (Target.ResponseCodeMismatch)",
            tg("v2")
        )
    );
}
