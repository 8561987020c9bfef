//! Against a real API server: the control plane of `shared/tools/kube/start` (Kubernetes 1.24:
//! etcd, kube-apiserver, kube-controller-manager; RBAC enforced; no kubelet), started once for
//! this test binary by `cutover_kube::testing` and stopped when it exits. A fake kubelet marks
//! Pods ready through the status subresource.
//!
//! `#[ignore = "needs etcd: scripts/test-deps"]`; CI runs them with `--include-ignored`. They
//! never skip: without the control plane they fail, saying what is missing. Each test works in
//! a namespace of its own. Where permissions matter a test runs twice: `as_admin`, and
//! `as_restricted_user`, a user bound to exactly the Role of this crate's docs (read from
//! `src/lib.rs`), so every documented feature is shown to need nothing more.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{httproute, rev, selector, store};
use cutover_core::{
    BlueGreen, ErrorKind, Health, HealthProbe, Outcome, Plan, Rollout, RolloutId, StateStore,
    StoreError, TrafficRouter, TrafficSplit, Weight, Workload,
};
use cutover_kube::testing::{
    Caller, ControlPlane, FakeKubelet, TestNamespace, edited_before, eventually, mark_waiting,
    role_from_docs,
};
use cutover_kubernetes::{
    ConfigMapStateStore, DeploymentWorkload, FIELD_MANAGER, LeaseLock, LeasedStateStore, PodProbe,
    ReplicaRatioRouter, RollingUpdate, ServiceSelectorRouter,
};
use cutover_test::{router_contract, store_contract};
use gateway_api::apis::standard::httproutes::HttpRoute;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};

/// The Role this crate documents.
fn role() -> Value {
    role_from_docs(include_str!("../src/lib.rs"))
}

/// Gateway API's HTTPRoute CRD, vendored beside the tests.
const HTTPROUTE_CRD: &str = include_str!("crds/gateway-api-httproute.yaml");

/// A namespace of its own for a test, and a client for `caller` in it.
async fn set_up(purpose: &str, caller: &Caller) -> (TestNamespace, kube::Client) {
    ControlPlane::shared()
        .await
        .namespace_for(purpose, caller)
        .await
}

cutover_kube::as_admin_and_restricted_user!(
    role;
    selector_switch_keeps_the_manifests_keys,
    selector_switch_keeps_other_keys_when_cutover_owns_the_selector,
    selector_reapplied_manifest_conflicts_with_cutover,
    selector_concurrent_edit_is_a_transient_conflict,
    selector_without_selector_or_change,
    http_route_router_passes_the_contract_and_keeps_other_rules,
    http_route_applied_by_kubectl_is_updated_and_a_reapply_conflicts,
    replica_ratio_router_and_probe_follow_real_deployments,
    pod_probe_reports_a_crash_loop,
    rolling_update_completes,
    configmap_store_keeps_the_contract,
    configmap_store_rolls_a_long_log_over_into_chunks,
    configmap_store_keeps_racing_appends_whole,
    configmap_store_refuses_the_layout_of_cutover_0_1,
    configmap_store_does_not_reuse_a_partly_deleted_rollout,
    configmap_store_steers_an_engine_from_another_store,
    lease_is_exclusive,
    blue_green_rollout_end_to_end,
);

// === Service selector: the scenarios of tests/routers.rs, on the real atomic map ===

async fn selector_switch_keeps_the_manifests_keys(caller: Caller) {
    let (ns, client) = set_up("selector-manifest", &caller).await;
    selector::switch_keeps_every_other_key(&ns.admin(), &client, ns.name(), "kubectl").await;
}

async fn selector_switch_keeps_other_keys_when_cutover_owns_the_selector(caller: Caller) {
    let (ns, client) = set_up("selector-owned", &caller).await;
    selector::switch_keeps_every_other_key(&ns.admin(), &client, ns.name(), FIELD_MANAGER).await;
}

async fn selector_reapplied_manifest_conflicts_with_cutover(caller: Caller) {
    let (ns, client) = set_up("selector-reapply", &caller).await;
    selector::reapplying_the_manifest_conflicts_with_cutover(&ns.admin(), &client, ns.name()).await;
}

async fn selector_concurrent_edit_is_a_transient_conflict(caller: Caller) {
    let (ns, client) = set_up("selector-race", &caller).await;
    selector::a_concurrent_edit_is_a_transient_conflict(&ns.admin(), &client, ns.name()).await;
}

async fn selector_without_selector_or_change(caller: Caller) {
    let (ns, client) = set_up("selector-none", &caller).await;
    selector::no_selector_is_refused_and_no_change_writes_nothing(&ns.admin(), &client, ns.name())
        .await;
}

// === HTTPRoute ===

async fn http_routes(ns: &TestNamespace) -> Api<HttpRoute> {
    ns.plane()
        .install_crds_without_validation_rules(HTTPROUTE_CRD)
        .await;
    Api::<HttpRoute>::namespaced(ns.admin(), ns.name())
}

/// The route was created by field manager `cutover` (what earlier docs advised): the contract,
/// weights, a header and cookie route and a mirror are accepted by the real CRD, and the
/// route's `parentRefs` and unmanaged rule are kept (an apply of the rules alone would have
/// deleted the `parentRefs` cutover's manager had applied).
async fn http_route_router_passes_the_contract_and_keeps_other_rules(caller: Caller) {
    let (ns, client) = set_up("httproute", &caller).await;
    let routes = http_routes(&ns).await;
    httproute::apply(&routes, FIELD_MANAGER).await.unwrap();
    let router = httproute::router(client, ns.name());
    let report = router_contract(&router, &rev("v1"), &rev("v2"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.unsupported, ["sticky sessions"], "{report}");
    httproute::weights_routes_and_mirror(&router, &routes).await;
}

/// The route was applied by kubectl, who owns the rules: the router works all the same and
/// keeps kubectl's fields; kubectl re-applying then conflicts with `cutover`.
async fn http_route_applied_by_kubectl_is_updated_and_a_reapply_conflicts(caller: Caller) {
    let (ns, client) = set_up("httproute-kubectl", &caller).await;
    let routes = http_routes(&ns).await;
    httproute::applied_by_kubectl(&httproute::router(client, ns.name()), &routes).await;
}

// === Deployments, replica ratio, pod probe, rolling update ===

/// Applies the Deployment `web-<version>` as kubectl would from a manifest without `replicas`
/// (cutover owns them), with pods labelled `app=web,version=<version>`.
async fn apply_deployment(ns: &TestNamespace, version: &str, image: &str) {
    let labels = json!({ "app": "web", "version": version });
    let manifest = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": format!("web-{version}") },
        "spec": {
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels },
                "spec": { "containers": [{ "name": "app", "image": image }] },
            },
        },
    });
    Api::<Deployment>::namespaced(ns.admin(), ns.name())
        .patch(
            &format!("web-{version}"),
            &PatchParams::apply("kubectl"),
            &Patch::Apply(&manifest),
        )
        .await
        .unwrap_or_else(|e| panic!("applying Deployment web-{version}: {e}"));
}

/// Waits until `workload` reports every desired replica of `revision` ready and available.
async fn until_ready(workload: &DeploymentWorkload, revision: &str, desired: u32) {
    eventually(
        &format!("{desired} ready replicas of {revision}"),
        || async {
            let status = workload.status(&rev(revision)).await.ok()?;
            (status.desired == desired && status.ready == desired && status.available == desired)
                .then_some(())
        },
    )
    .await;
}

/// The replica-ratio router scales real Deployments; the Deployment and ReplicaSet controllers
/// make the pods, the fake kubelet marks them ready, and `DeploymentWorkload` and `PodProbe`
/// see them ready.
async fn replica_ratio_router_and_probe_follow_real_deployments(caller: Caller) {
    let (ns, client) = set_up("ratio", &caller).await;
    apply_deployment(&ns, "v1", "registry.k8s.io/pause:3.10").await;
    apply_deployment(&ns, "v2", "registry.k8s.io/pause:3.10").await;
    let _kubelet = FakeKubelet::start(ns.admin(), ns.name(), "app=web");
    let router = ReplicaRatioRouter::new(client.clone(), ns.name(), 4)
        .revision(rev("v1"), "web-v1")
        .revision(rev("v2"), "web-v2");
    router_contract(&router, &rev("v1"), &rev("v2"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let quarter =
        TrafficSplit::canary(&rev("v1"), &rev("v2"), Weight::from_percent(25).unwrap()).unwrap();
    router.set_split(&quarter).await.unwrap();
    assert_eq!(router.current_split().await.unwrap(), Some(quarter));
    let workload = DeploymentWorkload::new(client.clone(), ns.name())
        .revision(rev("v1"), "web-v1")
        .revision(rev("v2"), "web-v2");
    until_ready(&workload, "v1", 3).await;
    until_ready(&workload, "v2", 1).await;
    let probe = PodProbe::new(client, ns.name())
        .revision(rev("v1"), "app=web,version=v1")
        .revision(rev("v2"), "app=web,version=v2");
    eventually("the probe to see v2 ready", || async {
        (probe.check(&rev("v2")).await.ok()? == Health::Ready).then_some(())
    })
    .await;
    workload.scale(&rev("v2"), 0).await.unwrap();
    until_ready(&workload, "v2", 0).await;
}

/// A pod whose container is in CrashLoopBackOff fails the revision, naming pod and reason.
async fn pod_probe_reports_a_crash_loop(caller: Caller) {
    let (ns, client) = set_up("crashloop", &caller).await;
    apply_deployment(&ns, "v2", "registry.k8s.io/pause:3.10").await;
    let workload = DeploymentWorkload::new(client.clone(), ns.name()).revision(rev("v2"), "web-v2");
    workload.scale(&rev("v2"), 1).await.unwrap();
    let pods = Api::<Pod>::namespaced(ns.admin(), ns.name());
    let pod = eventually("the pod of web-v2", || async {
        let list = pods
            .list(&ListParams::default().labels("version=v2"))
            .await
            .ok()?;
        list.items.into_iter().next()?.metadata.name
    })
    .await;
    mark_waiting(&pods, &pod, "CrashLoopBackOff", 3)
        .await
        .unwrap();
    let probe = PodProbe::new(client, ns.name()).revision(rev("v2"), "app=web,version=v2");
    let health = probe.check(&rev("v2")).await.unwrap();
    let Health::Failed { reason } = &health else {
        panic!("{health:?}")
    };
    assert!(
        reason.contains(&pod) && reason.contains("CrashLoopBackOff"),
        "{reason}"
    );
}

/// A rolling update of a Deployment applied by kubectl (who owns its template) moves it to the
/// new image and completes, the controller and the fake kubelet playing their parts. Someone
/// scales the Deployment between the driver's read and its write: the write is retried from a
/// new read and the scale is kept.
async fn rolling_update_completes(caller: Caller) {
    let (ns, client) = set_up("rolling", &caller).await;
    apply_deployment(&ns, "v1", "registry.k8s.io/pause:3.9").await;
    let _kubelet = FakeKubelet::start(ns.admin(), ns.name(), "app=web");
    DeploymentWorkload::new(client.clone(), ns.name())
        .revision(rev("v1"), "web-v1")
        .scale(&rev("v1"), 2)
        .await
        .unwrap();
    let racing = edited_before(
        client,
        ns.name(),
        |method, path| method == http::Method::PATCH && path.ends_with("/deployments/web-v1"),
        json!({ "spec": { "replicas": 3 } }),
    );
    let template: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": { "labels": { "app": "web", "version": "v1" } },
        "spec": { "containers": [{ "name": "app", "image": "registry.k8s.io/pause:3.10" }] },
    }))
    .unwrap();
    RollingUpdate::new(racing, ns.name(), "web-v1")
        .poll_interval(Duration::from_millis(200))
        .progress_deadline(Duration::from_mins(1))
        .run(template, IntOrString::Int(1), IntOrString::Int(0))
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", std::error::Error::source(&e)));
    let deployment = Api::<Deployment>::namespaced(ns.admin(), ns.name())
        .get("web-v1")
        .await
        .unwrap();
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(3), "the concurrent scale survived");
    let image = spec.template.spec.unwrap().containers[0].image.clone();
    assert_eq!(image.as_deref(), Some("registry.k8s.io/pause:3.10"));
    let status = deployment.status.unwrap();
    assert_eq!(
        (status.updated_replicas, status.available_replicas),
        (Some(3), Some(3))
    );
}

// === State: ConfigMap store and Lease ===

fn configmap_store(client: &kube::Client, ns: &TestNamespace) -> ConfigMapStateStore {
    ConfigMapStateStore::new(client.clone(), ns.name(), "rollout-")
}

/// The whole store contract: compare-and-swap, the log, the inbox, listing, owner leases.
async fn configmap_store_keeps_the_contract(caller: Caller) {
    let (ns, client) = set_up("store-contract", &caller).await;
    let report = store_contract(&configmap_store(&client, &ns), "contract-")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.leases_expire, "{report}");
}

async fn configmap_store_rolls_a_long_log_over_into_chunks(caller: Caller) {
    let (ns, client) = set_up("store-long-log", &caller).await;
    store::long_log_rolls_over_into_chunks(
        || configmap_store(&client, &ns),
        &Api::namespaced(ns.admin(), ns.name()),
    )
    .await;
}

async fn configmap_store_keeps_racing_appends_whole(caller: Caller) {
    let (ns, client) = set_up("store-racing", &caller).await;
    store::racing_appends_keep_the_log_whole(|| configmap_store(&client, &ns)).await;
}

async fn configmap_store_refuses_the_layout_of_cutover_0_1(caller: Caller) {
    let (ns, client) = set_up("store-legacy", &caller).await;
    store::the_layout_of_cutover_0_1_is_refused(
        configmap_store(&client, &ns),
        &Api::namespaced(ns.admin(), ns.name()),
    )
    .await;
}

async fn configmap_store_does_not_reuse_a_partly_deleted_rollout(caller: Caller) {
    let (ns, client) = set_up("store-leftovers", &caller).await;
    store::a_partly_deleted_rollout_is_not_reused(
        configmap_store(&client, &ns),
        &Api::namespaced(ns.admin(), ns.name()),
    )
    .await;
}

/// A canary on `FakeRouter` with its state on the real API server, resumed by a command sent
/// through another store, in real time.
async fn configmap_store_steers_an_engine_from_another_store(caller: Caller) {
    let (ns, client) = set_up("store-engine", &caller).await;
    store::an_engine_is_steered_through_another_store(|| configmap_store(&client, &ns)).await;
}

async fn lease_is_exclusive(caller: Caller) {
    let (ns, client) = set_up("lease", &caller).await;
    let a = LeaseLock::new(client.clone(), ns.name(), "checkout", "a");
    let b = LeaseLock::new(client, ns.name(), "checkout", "b");
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    assert!(a.try_acquire_or_renew().await.unwrap());
    a.release().await.unwrap();
    assert!(b.try_acquire_or_renew().await.unwrap());
    assert!(b.is_held());
}

// === The engine, end to end ===

/// Blue-green on real objects with everything the docs promise: Service-selector router,
/// Deployment workload, pod probe, ConfigMap state under a Lease. The Service ends on v2 with
/// its manifest's keys, v2 runs the replicas and v1 none, and the state is saved.
async fn blue_green_rollout_end_to_end(caller: Caller) {
    let (ns, client) = set_up("blue-green", &caller).await;
    apply_deployment(&ns, "v1", "registry.k8s.io/pause:3.10").await;
    apply_deployment(&ns, "v2", "registry.k8s.io/pause:3.10").await;
    selector::apply_service(&ns.admin(), ns.name(), "kubectl", &[(selector::KEY, "v1")]).await;
    let _kubelet = FakeKubelet::start(ns.admin(), ns.name(), "app=web");
    let id: RolloutId = "web-bg".parse().unwrap();
    let lock = Arc::new(LeaseLock::for_rollout(
        client.clone(),
        ns.name(),
        &id,
        "engine",
    ));
    lock.acquire().await.unwrap();
    let _renewal = lock.spawn_renewal();
    let workload = DeploymentWorkload::new(client.clone(), ns.name())
        .revision(rev("v1"), "web-v1")
        .revision(rev("v2"), "web-v2");
    let blue_green = BlueGreen {
        replicas: Some(2),
        scale_down_delay: Duration::from_secs(1),
        ..BlueGreen::default()
    };
    let store = LeasedStateStore::new(
        ConfigMapStateStore::new(client.clone(), ns.name(), "rollout-"),
        Arc::clone(&lock),
    );
    let outcome = Rollout::builder(id.as_str(), Plan::new(blue_green))
        .revisions("v1", "v2")
        .router(ServiceSelectorRouter::new(
            client.clone(),
            ns.name(),
            "web",
            selector::KEY,
        ))
        .workload(workload.clone())
        .health_probe(PodProbe::new(client.clone(), ns.name()).revision(rev("v2"), "version=v2"))
        .state_store(store)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, Outcome::Promoted);
    let service = Api::<Service>::namespaced(ns.admin(), ns.name())
        .get("web")
        .await
        .unwrap();
    let selector = service.spec.unwrap().selector.unwrap();
    assert_eq!(selector["app"], "web");
    assert_eq!(selector[selector::KEY], "v2");
    until_ready(&workload, "v2", 2).await;
    until_ready(&workload, "v1", 0).await;
    let reader = ConfigMapStateStore::new(client, ns.name(), "rollout-");
    let saved = reader
        .load(&id)
        .await
        .unwrap()
        .expect("the state was saved");
    assert_eq!(saved.state.phase, cutover_core::state::Phase::Done);
    let records = reader.records(&id, 0, 1000).await.unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=saved.state.last_seq).collect::<Vec<_>>(),
        "the whole log"
    );
    assert_eq!(
        reader.lease(&id).await.unwrap(),
        None,
        "released at the end"
    );
    lock.release().await.unwrap();
}

// === Permissions that are missing ===

/// Without the documented Role every call is a permanent error that names the RBAC verb,
/// resource and namespace to grant; with a Role that lacks `patch` on Services, the switch says
/// exactly that.
#[tokio::test]
#[ignore = "needs etcd: scripts/test-deps"]
async fn missing_permissions_name_the_verb_and_resource() {
    let ns = ControlPlane::shared().await.namespace("forbidden").await;
    selector::apply_service(&ns.admin(), ns.name(), "kubectl", &[(selector::KEY, "v1")]).await;
    let nobody = ns.unprivileged();
    let n = ns.name();
    let cases: Vec<(cutover_core::ProviderError, String)> = vec![
        (
            ServiceSelectorRouter::new(nobody.clone(), n, "web", selector::KEY)
                .current_split()
                .await
                .unwrap_err(),
            format!("grant the RBAC verb `get` on `services` in namespace `{n}`"),
        ),
        (
            DeploymentWorkload::new(nobody.clone(), n)
                .revision(rev("v1"), "web-v1")
                .status(&rev("v1"))
                .await
                .unwrap_err(),
            format!("grant the RBAC verb `get` on `deployments.apps` in namespace `{n}`"),
        ),
        (
            PodProbe::new(nobody.clone(), n)
                .revision(rev("v1"), "app=web")
                .check(&rev("v1"))
                .await
                .unwrap_err(),
            format!("grant the RBAC verb `list` on `pods` in namespace `{n}`"),
        ),
    ];
    for (err, wanted) in cases {
        assert_eq!(err.kind(), ErrorKind::Permanent, "{}", err.chain());
        assert!(err.message().contains(&wanted), "{err} (wanted: {wanted})");
    }
    let store_err = ConfigMapStateStore::new(nobody, n, "")
        .load(&"checkout".parse().unwrap())
        .await
        .unwrap_err();
    let StoreError::Provider(store_err) = store_err else {
        panic!("{store_err:?}")
    };
    assert!(
        store_err.message().contains(&format!(
            "grant the RBAC verb `get` on `configmaps` in namespace `{n}`"
        )),
        "{store_err}"
    );

    let read_only = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": "read-services" },
        "rules": [{ "apiGroups": [""], "resources": ["services"], "verbs": ["get"] }],
    });
    let reader = ns.user_bound_to(&read_only).await;
    let err = ServiceSelectorRouter::new(reader, n, "web", selector::KEY)
        .set_split(&TrafficSplit::all_to(&rev("v2")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message().contains(&format!(
            "grant the RBAC verb `patch` on `services` in namespace `{n}`"
        )),
        "{err}"
    );
}
