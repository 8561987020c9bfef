//! Against a real cluster: opt-in, `#[ignore = "needs a cluster: KUBECONFIG"]`.
//!
//! CI runs ignored tests too (`--include-ignored`) and has no cluster, so every test here first
//! checks for one: without `KUBECONFIG`, or when the cluster cannot be reached, it prints a
//! notice and returns early (passing). With a cluster, the tests use the namespace
//! `CUTOVER_TEST_NAMESPACE` (default `default`), need the crate's RBAC Role plus `create` and
//! `delete` on Services, ConfigMaps and Leases, and delete what they create.

use std::sync::Arc;

use cutover_core::{
    Canary, CanaryStep, MemoryStateStore, RolloutId, StateStore, StoreError, TrafficRouter,
    TrafficSplit,
};
use cutover_kubernetes::{ConfigMapStateStore, LeaseLock, ServiceSelectorRouter};
use cutover_test::router_contract;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};

/// A client and namespace, or `None` (with a printed notice) when there is no cluster.
async fn cluster() -> Option<(kube::Client, String)> {
    if std::env::var_os("KUBECONFIG").is_none() {
        println!("skipped: needs a cluster: set KUBECONFIG to run this test");
        return None;
    }
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            println!("skipped: KUBECONFIG is set but no client could be built: {e}");
            return None;
        }
    };
    if let Err(e) = client.apiserver_version().await {
        println!("skipped: the cluster in KUBECONFIG cannot be reached: {e}");
        return None;
    }
    let namespace =
        std::env::var("CUTOVER_TEST_NAMESPACE").unwrap_or_else(|_| "default".to_owned());
    Some((client, namespace))
}

/// A name no other run uses at the same time.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

async fn a_state() -> cutover_core::RolloutState {
    let memory = MemoryStateStore::new();
    let plan = cutover_core::Plan::new(Canary::new([CanaryStep::set_weight(50).unwrap()]));
    cutover_core::Rollout::builder("state", plan)
        .revisions("v1", "v2")
        .router(cutover_test::FakeRouter::new("mesh"))
        .state_store(memory.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    memory
        .load(&"state".parse().unwrap())
        .await
        .unwrap()
        .unwrap()
        .state
}

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn configmap_store_compares_and_swaps_on_a_cluster() {
    let Some((client, namespace)) = cluster().await else {
        return;
    };
    let id: RolloutId = unique("cutover-test-store").parse().unwrap();
    let store = ConfigMapStateStore::new(client.clone(), &namespace, "");
    let state = a_state().await;
    let first = store.save(&id, &state, None).await;
    let second = store.save(&id, &state, Some(1)).await;
    let stale = store.save(&id, &state, Some(1)).await;
    let loaded = store.load(&id).await;
    let _ = Api::<ConfigMap>::namespaced(client, &namespace)
        .delete(&store.configmap_name(&id), &DeleteParams::default())
        .await;
    assert_eq!(first.unwrap(), 1);
    assert_eq!(second.unwrap(), 2);
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    assert_eq!(loaded.unwrap().unwrap().state, state);
}

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn lease_is_exclusive_on_a_cluster() {
    let Some((client, namespace)) = cluster().await else {
        return;
    };
    let name = unique("cutover-test-lease");
    let a = Arc::new(LeaseLock::new(client.clone(), &namespace, &name, "a"));
    let b = LeaseLock::new(client.clone(), &namespace, &name, "b");
    let a_took = a.try_acquire_or_renew().await;
    let b_took = b.try_acquire_or_renew().await;
    let a_renewed = a.try_acquire_or_renew().await;
    let released = a.release().await;
    let b_after = b.try_acquire_or_renew().await;
    let _ = Api::<Lease>::namespaced(client, &namespace)
        .delete(&name, &DeleteParams::default())
        .await;
    assert!(a_took.unwrap());
    assert!(!b_took.unwrap());
    assert!(a_renewed.unwrap());
    released.unwrap();
    assert!(b_after.unwrap());
}

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn service_selector_router_passes_the_contract_on_a_cluster() {
    let Some((client, namespace)) = cluster().await else {
        return;
    };
    let name = unique("cutover-test-svc");
    let api = Api::<Service>::namespaced(client.clone(), &namespace);
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "Service", "metadata": { "name": name },
        "spec": { "selector": { "app": name }, "ports": [ { "port": 80 } ] },
    });
    api.patch(
        &name,
        &PatchParams::apply("cutover-test"),
        &Patch::Apply(&manifest),
    )
    .await
    .unwrap();
    let router = ServiceSelectorRouter::new(client, &namespace, &name, "cutover.dev/revision");
    let contract = router_contract(&router, &"v1".parse().unwrap(), &"v2".parse().unwrap()).await;
    let set = router
        .set_split(&TrafficSplit::all_to(&"v2".parse().unwrap()))
        .await;
    let read = api.get(&name).await;
    let _ = api.delete(&name, &DeleteParams::default()).await;
    contract.unwrap();
    set.unwrap();
    let selector = read.unwrap().spec.unwrap().selector.unwrap();
    assert_eq!(selector["cutover.dev/revision"], "v2");
    assert_eq!(selector["app"], name, "the other manager's key is kept");
}
