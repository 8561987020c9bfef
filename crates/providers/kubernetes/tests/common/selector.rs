//! The Service-selector router's scenarios, run on kube-fake-client with the atomic selector
//! modelled (`tests/routers.rs`) and on a real API server (`tests/cluster.rs`): each takes a
//! client to set the Service up with (`setup`), the client the router runs as (`caller`), and
//! the namespace.

use std::collections::BTreeMap;

use cutover_core::{ErrorKind, TrafficRouter, TrafficSplit};
use cutover_kube::testing::{OTHER_WRITER, edited_before};
use cutover_kubernetes::{FIELD_MANAGER, ServiceSelectorRouter};
use cutover_test::router_contract;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::{rev, service_manifest};

pub const KEY: &str = "cutover.dev/revision";

fn router(client: kube::Client, ns: &str) -> ServiceSelectorRouter {
    ServiceSelectorRouter::new(client, ns, "web", KEY)
}

/// Applies the Service `web` from its manifest as field manager `manager`, selecting
/// `app=web` plus `extra`.
pub async fn apply_service(setup: &kube::Client, ns: &str, manager: &str, extra: &[(&str, &str)]) {
    Api::<Service>::namespaced(setup.clone(), ns)
        .patch(
            "web",
            &PatchParams::apply(manager),
            &Patch::Apply(&service_manifest(extra)),
        )
        .await
        .unwrap_or_else(|e| panic!("applying Service {ns}/web as {manager}: {e}"));
}

async fn read(setup: &kube::Client, ns: &str) -> Service {
    Api::<Service>::namespaced(setup.clone(), ns)
        .get("web")
        .await
        .unwrap()
}

fn selector(service: &Service) -> BTreeMap<String, String> {
    service.spec.clone().unwrap().selector.unwrap_or_default()
}

fn pairs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The managers that own `spec.selector`, with their operation.
fn selector_owners(service: &Service) -> Vec<(String, String)> {
    service
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| {
            e.fields_v1.as_ref().is_some_and(|f| {
                f.0.get("f:spec")
                    .and_then(|s| s.get("f:selector"))
                    .is_some()
            })
        })
        .map(|e| {
            (
                e.manager.clone().unwrap_or_default(),
                e.operation.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The Service's manifest (applied by `manager`: `kubectl`, or `cutover` itself) selects
/// `app=web` and revision v1. The router passes the contract and a switch to v2 keeps `app`,
/// the ports and the session affinity; afterwards `cutover` owns the selector, as an Update.
pub async fn switch_keeps_every_other_key(
    setup: &kube::Client,
    caller: &kube::Client,
    ns: &str,
    manager: &str,
) {
    apply_service(setup, ns, manager, &[(KEY, "v1")]).await;
    let router = router(caller.clone(), ns);
    let report = router_contract(&router, &rev("v1"), &rev("v2"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.passed.contains(&"all traffic to candidate"),
        "{report}"
    );
    router
        .set_split(&TrafficSplit::all_to(&rev("v2")))
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let service = read(setup, ns).await;
    assert_eq!(selector(&service), pairs(&[("app", "web"), (KEY, "v2")]));
    let spec = service.spec.clone().unwrap();
    assert_eq!(spec.session_affinity.as_deref(), Some("ClientIP"));
    assert_eq!(spec.ports.unwrap()[0].port, 80);
    assert_eq!(
        selector_owners(&service),
        [(FIELD_MANAGER.to_owned(), "Update".to_owned())]
    );
    assert_eq!(
        router.current_split().await.unwrap(),
        Some(TrafficSplit::all_to(&rev("v2")))
    );
}

/// After a switch, re-applying the manifest with the old revision is the API server's
/// conflict with `cutover` (what the router's docs tell users), not a silent revert.
pub async fn reapplying_the_manifest_conflicts_with_cutover(
    setup: &kube::Client,
    caller: &kube::Client,
    ns: &str,
) {
    apply_service(setup, ns, "kubectl", &[(KEY, "v1")]).await;
    router(caller.clone(), ns)
        .set_split(&TrafficSplit::all_to(&rev("v2")))
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let err = Api::<Service>::namespaced(setup.clone(), ns)
        .patch(
            "web",
            &PatchParams::apply("kubectl"),
            &Patch::Apply(&service_manifest(&[(KEY, "v1")])),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 409, "{err}");
    assert!(
        status.message.contains("conflict with \"cutover\""),
        "{err}"
    );
    assert_eq!(
        selector(&read(setup, ns).await),
        pairs(&[("app", "web"), (KEY, "v2")])
    );
}

/// Someone edits the Service between the router's read and its write: the write is refused
/// with a transient conflict that names the Service, the edit survives, and the retry (a new
/// read) switches the selector.
pub async fn a_concurrent_edit_is_a_transient_conflict(
    setup: &kube::Client,
    caller: &kube::Client,
    ns: &str,
) {
    apply_service(setup, ns, "kubectl", &[(KEY, "v1")]).await;
    let racing = edited_before(
        caller.clone(),
        ns,
        |method, path| method == http::Method::PATCH && path.contains("/services/"),
        json!({ "metadata": { "labels": { "team": "payments" } } }),
    );
    let router = router(racing, ns);
    let v2 = TrafficSplit::all_to(&rev("v2"));
    let err = router.set_split(&v2).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{}", err.chain());
    assert!(
        err.message().contains(&format!("patch services {ns}/web"))
            && err.message().contains("conflict"),
        "{err}"
    );
    let service = read(setup, ns).await;
    assert_eq!(selector(&service), pairs(&[("app", "web"), (KEY, "v1")]));
    router
        .set_split(&v2)
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let service = read(setup, ns).await;
    assert_eq!(selector(&service), pairs(&[("app", "web"), (KEY, "v2")]));
    let labels = service.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("team").map(String::as_str),
        Some("payments"),
        "the edit of {OTHER_WRITER} survived"
    );
}

/// A Service without a selector is refused, and nothing is written; a switch to the revision
/// the selector already names writes nothing either.
pub async fn no_selector_is_refused_and_no_change_writes_nothing(
    setup: &kube::Client,
    caller: &kube::Client,
    ns: &str,
) {
    let bare = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": { "name": "bare" },
        "spec": { "ports": [{ "port": 80, "protocol": "TCP" }] },
    });
    let services = Api::<Service>::namespaced(setup.clone(), ns);
    services
        .patch("bare", &PatchParams::apply("kubectl"), &Patch::Apply(&bare))
        .await
        .unwrap();
    let err = ServiceSelectorRouter::new(caller.clone(), ns, "bare", KEY)
        .set_split(&TrafficSplit::all_to(&rev("v2")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("has no selector"), "{err}");
    let bare = services.get("bare").await.unwrap();
    assert_eq!(
        bare.spec.unwrap().selector.unwrap_or_default(),
        BTreeMap::new()
    );

    apply_service(setup, ns, "kubectl", &[(KEY, "v1")]).await;
    let before = read(setup, ns).await.metadata.resource_version;
    router(caller.clone(), ns)
        .set_split(&TrafficSplit::all_to(&rev("v1")))
        .await
        .unwrap();
    let after = read(setup, ns).await;
    assert_eq!(after.metadata.resource_version, before, "no write");
    assert_eq!(
        selector_owners(&after),
        [("kubectl".to_owned(), "Apply".to_owned())]
    );
}
