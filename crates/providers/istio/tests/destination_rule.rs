//! DestinationRule subsets and sticky sessions on the fake client, every write validated
//! against the upstream Istio CRD schema: what is created, what is updated, and what is left
//! exactly as it was.

mod common;

use std::time::Duration;

use common::{NS, destination_rule, rev, router, swagger, validating_client, virtual_service};
use cutover_core::{ErrorKind, StickySession, TrafficRouter};
use cutover_istio::sticky::STICKY_ANNOTATION;
use cutover_istio::{DestinationRule, DestinationRuleSubsets};
use kube::Api;
use serde_json::{Value, json};

fn subsets(client: kube::Client) -> DestinationRuleSubsets {
    DestinationRuleSubsets::new(client, NS, "reviews", "reviews")
        .subset(rev("v1"), "v1", [("app", "reviews"), ("version", "v1")])
        .subset(rev("v2"), "v2", [("app", "reviews"), ("version", "v2")])
}

async fn stored(client: &kube::Client) -> DestinationRule {
    Api::<DestinationRule>::namespaced(client.clone(), NS)
        .get("reviews")
        .await
        .unwrap()
}

fn text(value: &Value) -> String {
    serde_json::to_string(value).unwrap()
}

fn json_of(rule: DestinationRule) -> Value {
    serde_json::to_value(rule).unwrap()
}

#[tokio::test]
async fn subsets_are_created_with_the_rule_when_it_does_not_exist() {
    let swagger = swagger();
    let (client, written) = validating_client(&swagger, vec![]).await;
    let subsets = subsets(client.clone());
    subsets.ensure().await.unwrap();
    assert_eq!(written.lock().unwrap().len(), 1, "created, and validated");
    assert_eq!(
        Value::Object(stored(&client).await.spec),
        json!({
            "host": "reviews",
            "subsets": [
                { "name": "v1", "labels": { "app": "reviews", "version": "v1" } },
                { "name": "v2", "labels": { "app": "reviews", "version": "v2" } },
            ],
        })
    );
    subsets.ensure().await.unwrap();
    assert_eq!(
        written.lock().unwrap().len(),
        1,
        "nothing to change, nothing written"
    );
    assert_eq!(subsets.subset_of(&rev("v2")), Some("v2"));
}

#[tokio::test]
async fn subsets_are_updated_and_everything_else_is_kept() {
    let swagger = swagger();
    let (client, written) = validating_client(&swagger, vec![json_of(destination_rule())]).await;
    let before = stored(&client).await;
    subsets(client.clone()).ensure().await.unwrap();
    assert_eq!(written.lock().unwrap().len(), 1);
    let after = stored(&client).await;
    for key in ["host", "trafficPolicy"] {
        assert_eq!(text(&before.spec[key]), text(&after.spec[key]), "{key}");
    }
    let list = after.spec["subsets"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(
        list[0],
        json!({ "name": "v1", "labels": { "app": "reviews", "version": "v1" } })
    );
    assert_eq!(
        text(&list[1]),
        text(&before.spec["subsets"][1]),
        "unrelated subset"
    );
    assert_eq!(list[2]["name"], "v2");
}

#[tokio::test]
async fn a_rule_for_another_host_is_a_permanent_error() {
    let client = common::builder()
        .with_runtime_objects(vec![json_of(destination_rule())])
        .build()
        .await
        .unwrap();
    let err = DestinationRuleSubsets::new(client, NS, "reviews", "ratings")
        .subset(rev("v1"), "v1", [("version", "v1")])
        .ensure()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message()
            .contains("DestinationRule prod/reviews is for host reviews, not `ratings`"),
        "{err}"
    );
}

#[tokio::test]
async fn sticky_sessions_set_a_cookie_hash_and_remove_only_it() {
    let swagger = swagger();
    let vs = serde_json::to_value(virtual_service()).unwrap();
    let (client, written) =
        validating_client(&swagger, vec![vs, json_of(destination_rule())]).await;
    let plain = router(client.clone());
    assert!(!plain.capabilities().sticky_sessions);
    let err = plain.set_sticky_sessions(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);

    let router = router(client.clone()).sticky_sessions_on("reviews");
    assert!(router.capabilities().sticky_sessions);
    let before = stored(&client).await;
    let sticky = StickySession {
        cookie: Some("session".into()),
        duration: Duration::from_hours(1),
    };
    router.set_sticky_sessions(Some(sticky)).await.unwrap();
    let rule = stored(&client).await;
    assert_eq!(
        rule.spec["trafficPolicy"]["loadBalancer"],
        json!({
            "localityLbSetting": { "enabled": true },
            "consistentHash": { "httpCookie": { "name": "session", "path": "/", "ttl": "3600s" } },
        })
    );
    for key in ["connectionPool", "tls"] {
        assert_eq!(
            text(&rule.spec["trafficPolicy"][key]),
            text(&before.spec["trafficPolicy"][key])
        );
    }
    assert_eq!(text(&rule.spec["subsets"]), text(&before.spec["subsets"]));
    assert_eq!(
        rule.metadata.annotations.unwrap()[STICKY_ANNOTATION],
        "session"
    );
    let default_cookie = StickySession {
        cookie: None,
        duration: Duration::from_secs(90),
    };
    router
        .set_sticky_sessions(Some(default_cookie))
        .await
        .unwrap();
    assert_eq!(
        stored(&client).await.spec["trafficPolicy"]["loadBalancer"]["consistentHash"],
        json!({ "httpCookie": { "name": "cutover-session", "path": "/", "ttl": "90s" } })
    );

    router.set_sticky_sessions(None).await.unwrap();
    let after = stored(&client).await;
    assert_eq!(
        text(&Value::Object(after.spec)),
        text(&Value::Object(before.spec))
    );
    assert!(after.metadata.annotations.unwrap_or_default().is_empty());
    let writes = written.lock().unwrap().len();
    router.set_sticky_sessions(None).await.unwrap();
    assert_eq!(
        written.lock().unwrap().len(),
        writes,
        "already off: nothing written"
    );
}

#[tokio::test]
async fn a_load_balancer_cutover_did_not_set_is_not_replaced() {
    for policy in [
        json!({ "simple": "LEAST_REQUEST" }),
        json!({ "consistentHash": { "useSourceIp": true } }),
    ] {
        let mut rule = destination_rule();
        rule.spec["trafficPolicy"]["loadBalancer"] = policy.clone();
        let client = common::builder()
            .with_runtime_objects(vec![json_of(rule)])
            .build()
            .await
            .unwrap();
        let router = router(client.clone()).sticky_sessions_on("reviews");
        let sticky = StickySession {
            cookie: None,
            duration: Duration::from_mins(1),
        };
        let err = router.set_sticky_sessions(Some(sticky)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(err.message().contains("will not replace"), "{err}");
        router.set_sticky_sessions(None).await.unwrap();
        assert_eq!(
            stored(&client).await.spec["trafficPolicy"]["loadBalancer"],
            policy
        );
    }
}

#[tokio::test]
async fn a_missing_destination_rule_is_a_permanent_error_naming_it() {
    let client = common::builder().build().await.unwrap();
    let router = router(client).sticky_sessions_on("nope");
    let err = router.set_sticky_sessions(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(err.message(), "DestinationRule prod/nope does not exist");
}
