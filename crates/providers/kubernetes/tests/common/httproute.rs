//! The HTTPRoute router's weights, header and cookie route and mirror, run on kube-fake-client
//! against the upstream schema (`tests/routers.rs`) and on a real API server with the upstream
//! CRD (`tests/cluster.rs`).

use cutover_core::{HeaderRoute, Mirror, RouteMatch, TrafficRouter, TrafficSplit, Weight};
use cutover_kubernetes::HttpRouteRouter;
use gateway_api::apis::standard::httproutes::{HttpRoute, HttpRouteRules};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::rev;

/// The manifest of the HTTPRoute `web`: parent `public`, an unmanaged rule `static`, then the
/// managed rule `primary` on `/` to `web-v1`.
pub fn manifest() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "web" },
        "spec": {
            "parentRefs": [{ "name": "public" }],
            "rules": [
                { "name": "static",
                  "matches": [{ "path": { "type": "PathPrefix", "value": "/static" } }],
                  "backendRefs": [{ "name": "static-files", "port": 8080, "weight": 1 }] },
                { "name": "primary",
                  "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }],
                  "backendRefs": [{ "name": "web-v1", "port": 8080, "weight": 100 }] },
            ],
        },
    })
}

/// Server-side applies [`manifest`] as field manager `manager`.
pub async fn apply(api: &Api<HttpRoute>, manager: &str) -> Result<HttpRoute, kube::Error> {
    api.patch(
        "web",
        &PatchParams::apply(manager),
        &Patch::Apply(&manifest()),
    )
    .await
}

/// The route was applied by kubectl, who owns its rules (an atomic list): the router still
/// sets weights, a header route and a mirror, keeping kubectl's `parentRefs` and rule; then
/// `cutover` owns the rules, so kubectl re-applying the manifest is a conflict with `cutover`.
pub async fn applied_by_kubectl(router: &HttpRouteRouter, api: &Api<HttpRoute>) {
    apply(api, "kubectl").await.unwrap();
    weights_routes_and_mirror(router, api).await;
    let half =
        TrafficSplit::canary(&rev("v1"), &rev("v2"), Weight::from_percent(50).unwrap()).unwrap();
    router.set_split(&half).await.unwrap();
    let err = apply(api, "kubectl").await.unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 409, "{err}");
    assert!(
        status.message.contains("conflict with \"cutover\""),
        "{err}"
    );
    assert_eq!(router.current_split().await.unwrap(), Some(half));
}

/// The router of the managed rule `primary` of the HTTPRoute `web`.
pub fn router(client: kube::Client, ns: &str) -> HttpRouteRouter {
    HttpRouteRouter::new(client, ns, "web", "primary")
        .backend(rev("v1"), "web-v1", Some(8080))
        .backend(rev("v2"), "web-v2", Some(8080))
}

/// The backends of `rule` with their weights.
pub fn weights(rule: &HttpRouteRules) -> Vec<(String, Option<i32>)> {
    rule.backend_refs
        .iter()
        .flatten()
        .map(|b| (b.name.clone(), b.weight))
        .collect()
}

/// On the route `web` (rule `static`, then the managed rule `primary` on `/` to `web-v1`,
/// parent `public`): a 12.5 % split, a header + cookie route and a 20 % mirror, as the router
/// writes them; then the route and the mirror removed again.
pub async fn weights_routes_and_mirror(router: &HttpRouteRouter, api: &Api<HttpRoute>) {
    let split = TrafficSplit::canary(
        &rev("v1"),
        &rev("v2"),
        Weight::from_basis_points(1250).unwrap(),
    )
    .unwrap();
    router.set_split(&split).await.unwrap();
    let testers = HeaderRoute::new(
        "Testers",
        [
            RouteMatch::header_exact("x-canary", "1"),
            RouteMatch::cookie_exact("group", "beta"),
        ],
    )
    .unwrap();
    router.set_header_route(&testers, &rev("v2")).await.unwrap();
    let mirror = Mirror::new("shadow", Weight::from_percent(20).unwrap(), []).unwrap();
    router.set_mirror(&mirror, &rev("v2")).await.unwrap();

    let route = api.get("web").await.unwrap();
    assert_eq!(route.spec.parent_refs.as_ref().unwrap()[0].name, "public");
    let rules = route.spec.rules.unwrap();
    let names: Vec<_> = rules.iter().map(|r| r.name.clone().unwrap()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[..2], ["static", "primary"]);
    assert!(names[2].starts_with("cutover-route-testers-"), "{names:?}");
    assert_eq!(
        rules[0].backend_refs.as_ref().unwrap()[0].name,
        "static-files"
    );
    assert_eq!(
        weights(&rules[1]),
        [
            ("web-v1".to_owned(), Some(8750)),
            ("web-v2".to_owned(), Some(1250))
        ]
    );
    let mirror = rules[1].filters.as_ref().unwrap()[0]
        .request_mirror
        .as_ref()
        .unwrap();
    assert_eq!(mirror.backend_ref.name, "web-v2");
    let fraction = mirror.fraction.as_ref().unwrap();
    assert_eq!(
        (fraction.numerator, fraction.denominator),
        (2000, Some(10_000))
    );
    let route_rule = &rules[2];
    let m = &route_rule.matches.as_ref().unwrap()[0];
    assert_eq!(
        m.path.as_ref().unwrap().value.as_deref(),
        Some("/"),
        "keeps the managed path"
    );
    let headers: Vec<_> = m
        .headers
        .iter()
        .flatten()
        .map(|h| (h.name.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(
        headers,
        [("x-canary", "1"), ("Cookie", "(^|;\\s*)group=beta(;|$)")]
    );
    assert_eq!(route_rule.backend_refs.as_ref().unwrap()[0].name, "web-v2");
    assert_eq!(router.current_split().await.unwrap(), Some(split));

    router.remove_header_route("Testers").await.unwrap();
    router.remove_mirror("shadow").await.unwrap();
    let rules = api.get("web").await.unwrap().spec.rules.unwrap();
    assert_eq!(rules.len(), 2);
    assert!(rules[1].filters.is_none(), "{:?}", rules[1].filters);
}
