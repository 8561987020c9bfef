//! The three routers on the fake client: the shared contract suite, what each writes, what it
//! leaves alone, and how it reports conflicts with other field managers.

mod common;

use common::{
    NS, atomic_selectors, builder, http_route, httproute, ratio_router, rev, selector, service,
    static_rule, two_deployments, with_atomic,
};
use cutover_core::{ErrorKind, TrafficRouter, TrafficSplit, Weight};
use cutover_kube::testing::AtomicField;
use cutover_kubernetes::{
    FIELD_MANAGER, HttpRouteRouter, ReplicaRatioRouter, ServiceSelectorRouter,
};
use cutover_test::router_contract;
use gateway_api::apis::standard::httproutes::HttpRoute;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

fn http_router(client: kube::Client) -> HttpRouteRouter {
    httproute::router(client, NS)
}

// The Service-selector router on a fake client whose Services' `spec.selector` is atomic, as on
// a real API server (the same scenarios run there in tests/cluster.rs). A router that applied
// only its own selector key fails the first two: with a 409 when the manifest's manager owns the
// selector, or by dropping `app` when cutover owns it.

async fn fake() -> kube::Client {
    atomic_selectors(builder()).await
}

#[tokio::test]
async fn service_selector_switch_keeps_the_manifests_keys() {
    let client = fake().await;
    selector::switch_keeps_every_other_key(&client, &client, NS, "kubectl").await;
}

#[tokio::test]
async fn service_selector_switch_keeps_other_keys_when_cutover_owns_the_selector() {
    let client = fake().await;
    selector::switch_keeps_every_other_key(&client, &client, NS, FIELD_MANAGER).await;
}

#[tokio::test]
async fn service_selector_reapplied_manifest_conflicts_with_cutover() {
    let client = fake().await;
    selector::reapplying_the_manifest_conflicts_with_cutover(&client, &client, NS).await;
}

#[tokio::test]
async fn service_selector_concurrent_edit_is_a_transient_conflict() {
    let client = fake().await;
    selector::a_concurrent_edit_is_a_transient_conflict(&client, &client, NS).await;
}

#[tokio::test]
async fn service_selector_without_selector_or_change() {
    let client = fake().await;
    selector::no_selector_is_refused_and_no_change_writes_nothing(&client, &client, NS).await;
}

#[tokio::test]
async fn service_selector_router_refuses_partial_splits() {
    let client = builder().with_object(service()).build().await.unwrap();
    let router = ServiceSelectorRouter::new(client, NS, "web", selector::KEY);
    let half =
        TrafficSplit::canary(&rev("v1"), &rev("v2"), Weight::from_percent(50).unwrap()).unwrap();
    let err = router.set_split(&half).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("one revision"), "{err}");
}

#[tokio::test]
async fn http_route_router_passes_the_contract() {
    let client = builder().with_object(http_route()).build().await.unwrap();
    let router = http_router(client.clone());
    let report = router_contract(&router, &rev("v1"), &rev("v2"))
        .await
        .unwrap();
    assert_eq!(report.unsupported, ["sticky sessions"], "{report}");
    let route = Api::<HttpRoute>::namespaced(client, NS)
        .get("web")
        .await
        .unwrap();
    let rules = route.spec.rules.unwrap();
    assert_eq!(
        rules.len(),
        2,
        "contract routes were not all removed: {rules:?}"
    );
    assert_eq!(rules[0], static_rule());
}

#[tokio::test]
async fn http_route_router_sets_weights_routes_and_mirrors_and_keeps_other_rules() {
    let client = builder().with_object(http_route()).build().await.unwrap();
    let api = Api::<HttpRoute>::namespaced(client.clone(), NS);
    httproute::weights_routes_and_mirror(&httproute::router(client, NS), &api).await;
    let rules = api.get("web").await.unwrap().spec.rules.unwrap();
    assert_eq!(rules[0], static_rule());
}

/// On a fake whose `spec.rules` is atomic as on a real API server: kubectl applied the route,
/// the router still works and keeps kubectl's fields, and kubectl re-applying conflicts with
/// `cutover` (the same scenario runs on a real API server in tests/cluster.rs).
#[tokio::test]
async fn http_route_applied_by_kubectl_is_updated_and_a_reapply_conflicts() {
    let client = with_atomic(
        builder(),
        vec![AtomicField::new("httproutes", "/spec/rules")],
    )
    .await;
    let api = Api::<HttpRoute>::namespaced(client.clone(), NS);
    httproute::applied_by_kubectl(&http_router(client), &api).await;
}

/// A rule with a field the typed rules do not know (here an experimental-channel one) would
/// lose it on a write: the router refuses, naming the rule and the field, and writes nothing.
#[tokio::test]
async fn http_route_with_unknown_fields_is_not_written() {
    let client = builder().build().await.unwrap();
    let api = Api::<HttpRoute>::namespaced(client.clone(), NS);
    let mut manifest = httproute::manifest();
    manifest["spec"]["rules"][1]["sessionPersistence"] = serde_json::json!({ "sessionName": "s" });
    api.patch(
        "web",
        &kube::api::PatchParams::apply("kubectl"),
        &kube::api::Patch::Apply(&manifest),
    )
    .await
    .unwrap();
    let router = http_router(client);
    let half =
        TrafficSplit::canary(&rev("v1"), &rev("v2"), Weight::from_percent(50).unwrap()).unwrap();
    let err = router.set_split(&half).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message().contains("rule `primary`") && err.message().contains("sessionPersistence"),
        "{err}"
    );
    let rules = api.get("web").await.unwrap().spec.rules.unwrap();
    assert_eq!(
        httproute::weights(&rules[1]),
        [("web-v1".to_owned(), Some(100))]
    );
}

#[tokio::test]
async fn http_route_without_the_managed_rule_is_a_permanent_error_naming_it() {
    let client = builder().with_object(http_route()).build().await.unwrap();
    let router =
        HttpRouteRouter::new(client, NS, "web", "missing").backend(rev("v1"), "web-v1", None);
    let err = router.current_split().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("no rule named `missing`"), "{err}");
}

#[tokio::test]
async fn replica_ratio_router_passes_the_contract_at_its_granularity() {
    let client = two_deployments().await;
    let router = ratio_router(client.clone(), 10);
    assert_eq!(router.capabilities().granularity.step(), 1000);
    router_contract(&router, &rev("v1"), &rev("v2"))
        .await
        .unwrap();

    let split =
        TrafficSplit::canary(&rev("v1"), &rev("v2"), Weight::from_percent(30).unwrap()).unwrap();
    router.set_split(&split).await.unwrap();
    let api = Api::<Deployment>::namespaced(client, NS);
    let replicas = |d: Deployment| d.spec.unwrap().replicas.unwrap();
    assert_eq!(replicas(api.get("web-v1").await.unwrap()), 7);
    assert_eq!(replicas(api.get("web-v2").await.unwrap()), 3);
    let odd =
        TrafficSplit::canary(&rev("v1"), &rev("v2"), Weight::from_percent(25).unwrap()).unwrap();
    assert_eq!(
        router.set_split(&odd).await.unwrap_err().kind(),
        ErrorKind::Permanent
    );
}

#[test]
fn replica_ratio_granularity_follows_the_replica_count() {
    let client = futures_free_client();
    let step = |n| {
        ReplicaRatioRouter::new(client.clone(), NS, n)
            .capabilities()
            .granularity
            .step()
    };
    assert_eq!((step(4), step(3), step(20)), (2500, 10_000, 500));
}

/// A client that is never used to send a request.
fn futures_free_client() -> kube::Client {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async { builder().build().await.unwrap() })
}
