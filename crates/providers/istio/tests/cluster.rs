//! Against a real API server: the control plane of `shared/tools/kube/start` (Kubernetes 1.24,
//! RBAC enforced), started once for this test binary by `cutover_kube::testing`, with Istio's
//! networking CRDs (vendored in `tests/crds`, as upstream ships them) installed. There is no
//! istiod: the API server checks what cutover writes against the CRDs' structural schemas and
//! would prune any field they do not know, which the tests would see on read-back.
//!
//! `#[ignore = "needs etcd: scripts/test-deps"]`; CI runs them with `--include-ignored`. They
//! never skip. Where permissions matter a test runs twice: `as_admin`, and
//! `as_restricted_user`, a user bound to exactly the Role of this crate's docs.

use cutover_core::{
    ErrorKind, HeaderRoute, Mirror, RevisionId, RouteMatch, StickySession, TrafficRouter,
    TrafficSplit, Weight,
};
use cutover_istio::cluster::istio_served;
use cutover_istio::{
    Destination, DestinationRule, DestinationRuleSubsets, IstioRouter, VirtualService,
};
use cutover_kube::testing::{
    Caller, ControlPlane, OTHER_WRITER, TestNamespace, edited_before, role_from_docs,
};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

const ISTIO_CRDS: &str = include_str!("crds/istio-networking.yaml");

/// The Role this crate documents.
fn role() -> Value {
    role_from_docs(include_str!("../src/lib.rs"))
}

fn rev(s: &str) -> RevisionId {
    s.parse().unwrap()
}

/// What the cluster check said before Istio's CRDs were installed.
static BEFORE_ISTIO: OnceCell<String> = OnceCell::const_new();

/// The control plane, with Istio's CRDs installed. The first call checks the plane without
/// them first, so the missing-CRD case is seen on the very same API server.
async fn plane() -> &'static ControlPlane {
    let plane = ControlPlane::shared().await;
    BEFORE_ISTIO
        .get_or_init(|| async {
            let before = match istio_served(&plane.admin()).await {
                Ok(()) => "Istio served before its CRDs were installed".to_owned(),
                Err(e) => e.to_string(),
            };
            plane.install_crds(ISTIO_CRDS).await;
            before
        })
        .await;
    plane
}

async fn set_up(purpose: &str, caller: &Caller) -> (TestNamespace, kube::Client) {
    plane().await.namespace_for(purpose, caller).await
}

cutover_kube::as_admin_and_restricted_user!(
    role;
    router_subsets_and_sticky_sessions,
    a_concurrent_edit_is_a_transient_conflict,
);

/// The VirtualService `web` (created by the admin, as a platform team would): an unmanaged
/// route `static`, then the managed route `primary` to subset v1.
async fn create_virtual_service(ns: &TestNamespace) -> (Api<VirtualService>, String) {
    let host = format!("web.{}.svc.cluster.local", ns.name());
    let vs = VirtualService::new(
        ns.name(),
        "web",
        json!({
            "hosts": [host],
            "http": [
                { "name": "static", "match": [{ "uri": { "prefix": "/static" } }],
                  "route": [{ "destination": { "host": host, "subset": "v1" } }] },
                { "name": "primary", "timeout": "10s",
                  "route": [{ "destination": { "host": host, "subset": "v1" } }] },
            ],
        }),
    );
    let api = Api::<VirtualService>::namespaced(ns.admin(), ns.name());
    api.create(&PostParams::default(), &vs)
        .await
        .unwrap_or_else(|e| panic!("creating VirtualService {}/web: {e}", ns.name()));
    (api, host)
}

fn router(client: kube::Client, ns: &str, host: &str) -> IstioRouter {
    IstioRouter::new(client, ns, "web", "primary")
        .destination(rev("v1"), Destination::subset(host, "v1"))
        .destination(rev("v2"), Destination::subset(host, "v2"))
}

/// Subsets created, the router contract (sticky sessions included), a 10 % split with a cookie
/// route and a mirror: every write is accepted and read back unpruned, the unmanaged route and
/// the managed route's own fields are kept.
async fn router_subsets_and_sticky_sessions(caller: Caller) {
    let (ns, client) = set_up("router", &caller).await;
    let (vss, host) = create_virtual_service(&ns).await;
    DestinationRuleSubsets::new(client.clone(), ns.name(), "web", &host)
        .subset(rev("v1"), "v1", [("version", "v1")])
        .subset(rev("v2"), "v2", [("version", "v2")])
        .ensure()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let router = router(client, ns.name(), &host).sticky_sessions_on("web");
    let report = cutover_test::router_contract(&router, &rev("v1"), &rev("v2"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.unsupported.is_empty(), "{report}");

    let split =
        TrafficSplit::canary(&rev("v1"), &rev("v2"), Weight::from_percent(10).unwrap()).unwrap();
    router.set_split(&split).await.unwrap();
    let testers = HeaderRoute::new("testers", [RouteMatch::cookie_exact("canary", "yes")]).unwrap();
    router.set_header_route(&testers, &rev("v2")).await.unwrap();
    let mirror = Mirror::new("shadow", Weight::from_percent(5).unwrap(), []).unwrap();
    router.set_mirror(&mirror, &rev("v2")).await.unwrap();
    let sticky = StickySession {
        cookie: Some("session".into()),
        duration: std::time::Duration::from_mins(1),
    };
    router.set_sticky_sessions(Some(sticky)).await.unwrap();
    assert_eq!(router.current_split().await.unwrap(), Some(split));

    let vs = vss.get("web").await.unwrap();
    let routes = vs.spec["http"].as_array().unwrap();
    let names: Vec<_> = routes.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["static", "cutover:primary:testers", "primary"]);
    let primary = &routes[2];
    assert_eq!(
        primary["timeout"], "10s",
        "the managed route's own fields are kept"
    );
    assert_eq!(primary["mirror"]["subset"], "v2", "{primary}");
    assert_eq!(primary["mirrorPercentage"]["value"], 5.0, "{primary}");
    let weights: Vec<_> = primary["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["destination"]["subset"].clone(), r["weight"].clone()))
        .collect();
    assert_eq!(
        weights,
        [(json!("v1"), json!(90)), (json!("v2"), json!(10))]
    );
    let cookie_match = &routes[1]["match"][0]["headers"]["cookie"];
    assert!(cookie_match["regex"].is_string(), "{}", routes[1]);

    let rule = Api::<DestinationRule>::namespaced(ns.admin(), ns.name())
        .get("web")
        .await
        .unwrap();
    let subsets: Vec<_> = rule.spec["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].clone(), s["labels"]["version"].clone()))
        .collect();
    assert_eq!(
        subsets,
        [(json!("v1"), json!("v1")), (json!("v2"), json!("v2"))]
    );
    let hash = &rule.spec["trafficPolicy"]["loadBalancer"]["consistentHash"]["httpCookie"];
    assert_eq!(
        (&hash["name"], &hash["ttl"]),
        (&json!("session"), &json!("60s"))
    );

    router.remove_header_route("testers").await.unwrap();
    router.remove_mirror("shadow").await.unwrap();
    router.set_sticky_sessions(None).await.unwrap();
    let routes = vss.get("web").await.unwrap().spec["http"].clone();
    let names: Vec<_> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["static", "primary"]);
    assert!(routes[1].get("mirror").is_none(), "{}", routes[1]);
}

/// Someone edits the VirtualService between the router's read and its write: a transient
/// conflict naming the object; the retry switches the weights and the edit survives.
async fn a_concurrent_edit_is_a_transient_conflict(caller: Caller) {
    let (ns, client) = set_up("race", &caller).await;
    let (vss, host) = create_virtual_service(&ns).await;
    let racing = edited_before(
        client,
        ns.name(),
        |method, path| method == http::Method::PATCH && path.contains("/virtualservices/"),
        json!({ "metadata": { "labels": { "team": "payments" } } }),
    );
    let router = router(racing, ns.name(), &host);
    let half =
        TrafficSplit::canary(&rev("v1"), &rev("v2"), Weight::from_percent(50).unwrap()).unwrap();
    let err = router.set_split(&half).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{}", err.chain());
    assert!(
        err.message().contains(&format!(
            "patch virtualservices.networking.istio.io {}/web",
            ns.name()
        )) && err.message().contains("conflict"),
        "{err}"
    );
    router.set_split(&half).await.unwrap();
    assert_eq!(router.current_split().await.unwrap(), Some(half));
    let labels = vss
        .get("web")
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap_or_default();
    assert_eq!(
        labels.get("team").map(String::as_str),
        Some("payments"),
        "the edit of {OTHER_WRITER} survived"
    );
}

/// On the API server without Istio's CRDs the check names the missing resource; with them it
/// passes for a user with no Role at all (discovery needs none, unlike listing
/// VirtualServices across namespaces).
#[tokio::test]
#[ignore = "needs etcd: scripts/test-deps"]
async fn the_cluster_check_names_the_missing_crd_and_needs_no_cluster_role() {
    let ns = plane().await.namespace("check").await;
    let before = BEFORE_ISTIO.get().unwrap();
    assert!(
        before.contains("does not serve virtualservices.networking.istio.io/v1"),
        "{before}"
    );
    istio_served(&ns.unprivileged())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Without the Role every call names the RBAC verb, resource and namespace to grant.
#[tokio::test]
#[ignore = "needs etcd: scripts/test-deps"]
async fn missing_permissions_name_the_verb_and_resource() {
    let ns = plane().await.namespace("forbidden").await;
    let (_, host) = create_virtual_service(&ns).await;
    let n = ns.name();
    let err = router(ns.unprivileged(), n, &host)
        .current_split()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    let wanted = format!(
        "grant the RBAC verb `get` on `virtualservices.networking.istio.io` in namespace `{n}`"
    );
    assert!(err.message().contains(&wanted), "{err}");

    let read_only = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": "read-istio" },
        "rules": [{ "apiGroups": ["networking.istio.io"],
                    "resources": ["virtualservices", "destinationrules"], "verbs": ["get"] }],
    });
    let reader = ns.user_bound_to(&read_only).await;
    let err = DestinationRuleSubsets::new(reader.clone(), n, "web", &host)
        .subset(rev("v1"), "v1", [("version", "v1")])
        .ensure()
        .await
        .unwrap_err();
    let wanted = format!(
        "grant the RBAC verb `create` on `destinationrules.networking.istio.io` in namespace `{n}`"
    );
    assert!(err.message().contains(&wanted), "{err}");
    let half =
        TrafficSplit::canary(&rev("v1"), &rev("v2"), Weight::from_percent(50).unwrap()).unwrap();
    let err = router(reader, n, &host).set_split(&half).await.unwrap_err();
    let wanted = format!(
        "grant the RBAC verb `patch` on `virtualservices.networking.istio.io` in namespace `{n}`"
    );
    assert!(err.message().contains(&wanted), "{err}");
}
