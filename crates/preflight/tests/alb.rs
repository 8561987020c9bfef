//! The ALB healthy-targets check against moto (scripts/test-deps installs it), started here on
//! a free 127.0.0.1 port (`cutover_aws_alb::moto::MotoServer`).
//!
//! What moto can produce: a registered IP target is always `healthy`; an EC2 instance target
//! whose instance is stopped is `unused (Target.InvalidState)`. So the failures tested are too
//! few registered targets and a stopped instance; an unknown target group is an error.
#![cfg(feature = "aws-alb")]

mod common;

use common::run;
use cutover_aws_alb::moto::{Fixture, MotoServer};
use cutover_aws_alb::sdk::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetDescription, TargetGroupTuple,
};
use cutover_core::checklist::{CheckContext, CheckStatus};
use cutover_preflight::AlbTargetsCheck;

async fn register(moto: &MotoServer, group: &str, ids: &[&str]) {
    let mut call = moto.client.register_targets().target_group_arn(group);
    for id in ids {
        call = call.targets(TargetDescription::builder().id(*id).port(8080).build());
    }
    call.send().await.unwrap();
}

/// Sets the rule's forward action to `stable` and `candidate` with these weights.
async fn weigh(moto: &MotoServer, fx: &Fixture, stable: i32, candidate: i32) {
    let tuple = |arn: &str, w: i32| {
        TargetGroupTuple::builder()
            .target_group_arn(arn)
            .weight(w)
            .build()
    };
    moto.client
        .modify_rule()
        .rule_arn(&fx.rule)
        .actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .forward_config(
                    ForwardActionConfig::builder()
                        .target_groups(tuple(&fx.stable, stable))
                        .target_groups(tuple(&fx.candidate, candidate))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// The text between `<tag>` and `</tag>`, first occurrence.
fn xml_value(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).expect(tag) + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).expect(tag) + start;
    xml[start..end].to_owned()
}

#[tokio::test]
#[ignore = "needs moto: scripts/test-deps"]
async fn enough_healthy_targets_pass_too_few_fail() {
    let (moto, fx) = MotoServer::with_fixture().await;
    let check = |n| {
        AlbTargetsCheck::target_group(&fx.stable, n)
            .unwrap()
            .client(moto.client.clone())
    };
    // No targets at all.
    let empty = run(&check(1)).await;
    assert_eq!(empty.status, CheckStatus::Fail, "{empty:?}");
    assert_eq!(empty.evidence["registered"], 0);

    register(&moto, &fx.stable, &["10.0.1.10", "10.0.1.11"]).await;
    let two = run(&check(2)).await;
    assert_eq!(two.status, CheckStatus::Pass, "{two:?}");
    assert_eq!(
        two.message,
        format!(
            "2 of 2 targets healthy in `{}` (at least 2 needed)",
            fx.stable
        )
    );
    assert_eq!(two.evidence["targets"]["10.0.1.10:8080"], "healthy");
    assert_eq!(two.evidence["target_group"], fx.stable.as_str());

    let three = run(&check(3)).await;
    assert_eq!(three.status, CheckStatus::Fail, "{three:?}");
    assert!(
        three
            .message
            .starts_with("only 2 of 2 registered targets healthy"),
        "{}",
        three.message
    );
    assert!(
        three
            .hint
            .as_deref()
            .unwrap()
            .contains("register more targets")
    );
    assert_eq!(three.evidence["healthy"], 2);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test-deps"]
async fn a_stopped_instance_is_not_a_healthy_target() {
    let (moto, fx) = MotoServer::with_fixture().await;
    let run_xml = moto
        .ec2("Action=RunInstances&Version=2016-11-15&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&InstanceType=t3.micro")
        .await
        .unwrap();
    let instance = xml_value(&run_xml, "instanceId");
    // moto registers running instances only; the instance stops once registered.
    register(&moto, &fx.stable, &["10.0.1.10", &instance]).await;
    let check = AlbTargetsCheck::target_group(&fx.stable, 2)
        .unwrap()
        .client(moto.client.clone());
    assert_eq!(run(&check).await.status, CheckStatus::Pass);
    moto.ec2(&format!(
        "Action=StopInstances&Version=2016-11-15&InstanceId.1={instance}"
    ))
    .await
    .unwrap();
    let result = run(&check).await;
    assert_eq!(result.status, CheckStatus::Fail, "{result:?}");
    assert_eq!(result.evidence["healthy"], 1);
    assert_eq!(result.evidence["registered"], 2);
    let state = format!("{instance}:8080 unused (Target.InvalidState)");
    assert!(
        result.hint.as_deref().unwrap().contains(&state),
        "{result:?}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test-deps"]
async fn the_stable_group_of_a_rule_or_listener() {
    let (moto, fx) = MotoServer::with_fixture().await;
    register(&moto, &fx.stable, &["10.0.1.10", "10.0.1.11"]).await;
    register(&moto, &fx.candidate, &["10.0.2.10"]).await;

    // Mid-rollout at 10 %: the stable group carries the most.
    weigh(&moto, &fx, 90, 10).await;
    let rule = AlbTargetsCheck::listener_rule(&fx.rule, 2)
        .unwrap()
        .client(moto.client.clone());
    let result = run(&rule).await;
    assert_eq!(result.status, CheckStatus::Pass, "{result:?}");
    assert_eq!(result.evidence["target_group"], fx.stable.as_str());
    assert_eq!(result.evidence["weight"], 90);
    assert_eq!(result.evidence["source"], fx.rule.as_str());

    // The listener's default action forwards to the stable group alone.
    let listener = AlbTargetsCheck::listener(&fx.listener, 3)
        .unwrap()
        .client(moto.client.clone());
    let result = run(&listener).await;
    assert_eq!(result.status, CheckStatus::Fail, "{result:?}");
    assert_eq!(result.evidence["target_group"], fx.stable.as_str());

    // At 50/50 no group is the stable one.
    weigh(&moto, &fx, 50, 50).await;
    let result = run(&rule).await;
    assert_eq!(result.status, CheckStatus::Error, "{result:?}");
    assert!(
        result.message.contains("name it with `target_group`"),
        "{}",
        result.message
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test-deps"]
async fn an_unknown_target_group_is_an_error() {
    let moto = MotoServer::start().await;
    let arn =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/nope/0123456789abcdef";
    let check = AlbTargetsCheck::target_group(arn, 1)
        .unwrap()
        .client(moto.client.clone());
    let result = run(&check).await;
    assert_eq!(result.status, CheckStatus::Error, "{result:?}");
    assert!(
        result.message.contains("DescribeTargetHealth"),
        "{}",
        result.message
    );
    assert!(
        result.message.contains("targetgroup/nope"),
        "{}",
        result.message
    );
    assert!(result.hint.is_some());
}

/// The env variable that carries the target group to the child process.
const CHILD_TG: &str = "PREFLIGHT_TEST_ALB_TARGET_GROUP";
/// The secret key the child process is given; it must show nowhere.
const SECRET: &str = "wJalrXUtnFEMI-preflight-secret-never-shown";

/// Runs the check from YAML with its client from the environment, in a child process (the
/// environment of this one cannot be changed safely): credentials from `AWS_*` variables,
/// moto through `AWS_ENDPOINT_URL`, and `AWS_REGION` set to another region than the ARN's, so
/// the check must take the ARN's region. Nothing it reports holds the secret key.
#[tokio::test]
#[ignore = "needs moto: scripts/test-deps"]
async fn from_yaml_with_the_client_from_the_environment() {
    let (moto, fx) = MotoServer::with_fixture().await;
    register(&moto, &fx.stable, &["10.0.1.10", "10.0.1.11"]).await;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "environment_child",
            "--include-ignored",
            "--nocapture",
        ])
        .env(CHILD_TG, &fx.stable)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "AKIAPREFLIGHTTEST")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "eu-west-1")
        .env_remove("AWS_PROFILE");
    let out = tokio::task::spawn_blocking(move || child.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "the child ran: {stdout}");
}

/// The child of [`from_yaml_with_the_client_from_the_environment`]; does nothing elsewhere.
#[tokio::test]
#[ignore = "needs moto: scripts/test-deps"]
async fn environment_child() {
    let Ok(group) = std::env::var(CHILD_TG) else {
        return;
    };
    let yaml = |n: u32| {
        format!(
            "name: p\nchecks:\n  - {{ id: lb, category: infrastructure, alb_healthy_targets: {{ target_group: \"{group}\", min_healthy: {n} }} }}\n"
        )
    };
    let ctx = CheckContext::default();
    let pass = cutover_preflight::load_yaml(&yaml(2))
        .unwrap()
        .run(&ctx)
        .await;
    let fail = cutover_preflight::load_yaml(&yaml(3))
        .unwrap()
        .run(&ctx)
        .await;
    let json = serde_json::to_string(&(&pass, &fail)).unwrap();
    assert!(pass.passed(), "{json}");
    assert!(!fail.passed(), "{json}");
    assert!(
        json.contains("only 2 of 2 registered targets healthy"),
        "{json}"
    );
    let shown = format!("{json} {pass:?} {fail:?} {}", fail.table());
    assert!(!shown.contains(SECRET));
    assert!(!shown.contains("AKIAPREFLIGHTTEST"));
}

#[test]
fn bad_parameters_name_the_field() {
    let err = |params: &str| {
        cutover_preflight::load_yaml(&format!(
            "name: p\nchecks:\n  - {{ id: lb, category: c, alb_healthy_targets: {params} }}\n"
        ))
        .unwrap_err()
        .to_string()
    };
    let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef";
    let e = err(&format!("{{ target_group: \"{tg}\", min_healthy: 0 }}"));
    assert!(
        e.contains("alb_healthy_targets.min_healthy") && e.contains("at least 1"),
        "{e}"
    );
    let e = err(
        "{ target_group: \"arn:aws:elasticloadbalancing:us-east-1:1234:targetgroup/web/1\", min_healthy: 1 }",
    );
    assert!(
        e.contains("alb_healthy_targets.target_group") && e.contains("12 digits"),
        "{e}"
    );
    let e = err(&format!("{{ listener_rule: \"{tg}\", min_healthy: 1 }}"));
    assert!(
        e.contains("alb_healthy_targets.listener_rule") && e.contains("listener-rule/"),
        "{e}"
    );
    let e = err(&format!("{{ target_group: \"{tg}\" }}"));
    assert!(e.contains("missing field `min_healthy`"), "{e}");
    let e = err("{ min_healthy: 1 }");
    assert!(
        e.contains("exactly one of `target_group`, `listener_rule` or `listener`"),
        "{e}"
    );
    let e = err(&format!(
        "{{ target_group: \"{tg}\", min_healthy: 1, region: us-east-1 }}"
    ));
    assert!(e.contains("unknown field `region`"), "{e}");

    let check = AlbTargetsCheck::target_group(tg, 2).unwrap();
    assert_eq!(
        format!("{check:?}"),
        format!(
            "AlbTargetsCheck {{ source: TargetGroup(ElbArn {{ arn: \"{tg}\" }}), min_healthy: 2, client: \"from the environment\" }}"
        )
    );
}
