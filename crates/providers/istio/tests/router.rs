//! The VirtualService router on the fake client, with every object it writes validated against
//! the upstream Istio CRD schemas: the shared contract suite, weights, header and cookie
//! routes, mirroring, host-based destinations, what it leaves alone, and its errors.

mod common;

use common::{
    NS, builder, destination_rule, failing, http, named, primary_route, rev, router, swagger,
    unrelated_routes, validating_client, virtual_service, weights,
};
use cutover_core::{
    ErrorKind, HeaderRoute, Mirror, RouteMatch, StringMatch, TrafficRouter, TrafficSplit, Weight,
};
use cutover_istio::{Destination, DestinationRule, IstioRouter, VirtualService};
use cutover_test::router_contract;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

fn split(candidate_percent: u8) -> TrafficSplit {
    TrafficSplit::canary(
        &rev("v1"),
        &rev("v2"),
        Weight::from_percent(candidate_percent).unwrap(),
    )
    .unwrap()
}

/// A fake client holding `vs`.
async fn stored(vs: VirtualService) -> kube::Client {
    builder()
        .with_runtime_objects(vec![serde_json::to_value(vs).unwrap()])
        .build()
        .await
        .unwrap()
}

fn vs_json() -> Value {
    serde_json::to_value(virtual_service()).unwrap()
}

/// The JSON text of a value, for byte-for-byte comparisons.
fn text(value: &Value) -> String {
    serde_json::to_string(value).unwrap()
}

#[tokio::test]
async fn the_schema_is_enforced() {
    let swagger = swagger();
    let (client, _) = validating_client(&swagger, vec![]).await;
    let api = Api::<VirtualService>::namespaced(client, NS);
    let mut bad = virtual_service();
    bad.spec["http"][2]["route"][0]["weight"] = json!("ten");
    let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
    assert!(err.to_string().contains("schema validation"), "{err}");
    // A field the CRD does not know (a real API server would prune it silently).
    let mut unknown = virtual_service();
    unknown.spec["http"][2]["mirrorPercent"] = json!(5);
    api.create(&PostParams::default(), &unknown)
        .await
        .expect("a known field passes");
    let mut unknown = virtual_service();
    unknown.metadata.name = Some("other".into());
    unknown.spec["http"][2]["mirrorPercentge"] = json!({ "value": 5 });
    let err = api
        .create(&PostParams::default(), &unknown)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("mirrorPercentge"), "{err}");
}

#[tokio::test]
async fn passes_the_contract_writing_only_valid_objects_and_ends_as_it_began() {
    let swagger = swagger();
    let (client, written) = validating_client(&swagger, vec![vs_json()]).await;
    let before = http(&client).await;
    let report = router_contract(&router(client.clone()), &rev("v1"), &rev("v2"))
        .await
        .unwrap();
    assert_eq!(report.unsupported, ["sticky sessions"], "{report}");
    assert!(
        written.lock().unwrap().len() >= 8,
        "every write was validated"
    );
    let after = http(&client).await;
    assert_eq!(after.len(), before.len(), "{after:#?}");
    for (a, b) in before.iter().zip(&after) {
        if a["name"] != "primary" {
            assert_eq!(text(a), text(b));
        }
    }
    assert_eq!(
        weights(&after),
        [("v1".to_owned(), 100), ("v2".to_owned(), 0)]
    );
}

#[tokio::test]
async fn passes_the_contract_with_sticky_sessions_and_restores_the_destination_rule() {
    let swagger = swagger();
    let dr = serde_json::to_value(destination_rule()).unwrap();
    let (client, written) = validating_client(&swagger, vec![vs_json(), dr]).await;
    let router = router(client.clone()).sticky_sessions_on("reviews");
    let report = router_contract(&router, &rev("v1"), &rev("v2"))
        .await
        .unwrap();
    assert!(report.unsupported.is_empty(), "{report}");
    let sticky_writes = written
        .lock()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "DestinationRule")
        .count();
    assert_eq!(
        sticky_writes, 2,
        "set once (setting it again changes nothing) and removed once"
    );
    let dr = Api::<DestinationRule>::namespaced(client, NS)
        .get("reviews")
        .await
        .unwrap();
    assert_eq!(
        text(&Value::Object(dr.spec)),
        text(&Value::Object(destination_rule().spec))
    );
    assert!(dr.metadata.annotations.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn weights_are_whole_percent_and_read_back() {
    let swagger = swagger();
    let (client, written) = validating_client(&swagger, vec![vs_json()]).await;
    let router = router(client.clone());
    assert_eq!(router.capabilities().granularity.step(), 100);
    router.set_split(&split(10)).await.unwrap();
    let routes = http(&client).await;
    assert_eq!(
        weights(&routes),
        [("v1".to_owned(), 90), ("v2".to_owned(), 10)]
    );
    let primary = named(&routes, "primary");
    assert_eq!(
        primary["route"][0]["headers"],
        json!({ "response": { "set": { "x-served-by": "reviews" } } }),
        "other fields of an existing destination entry are kept"
    );
    assert_eq!(
        primary["route"][1]["destination"],
        json!({ "host": "reviews", "subset": "v2", "port": { "number": 9080 } })
    );
    assert_eq!(router.current_split().await.unwrap(), Some(split(10)));
    let writes = written.lock().unwrap().len();
    router.set_split(&split(10)).await.unwrap();
    assert_eq!(written.lock().unwrap().len(), writes, "no change, no write");
    let fine = TrafficSplit::canary(
        &rev("v1"),
        &rev("v2"),
        Weight::from_basis_points(150).unwrap(),
    )
    .unwrap();
    let err = router.set_split(&fine).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("whole percentages"), "{err}");
}

#[tokio::test]
async fn unrelated_routes_and_fields_are_kept_byte_for_byte() {
    let client = stored(virtual_service()).await;
    let api = Api::<VirtualService>::namespaced(client.clone(), NS);
    let before = api.get("reviews").await.unwrap();
    let router = router(client.clone());
    router.set_split(&split(25)).await.unwrap();
    let testers = HeaderRoute::new("testers", [RouteMatch::header_exact("x-canary", "1")]).unwrap();
    router.set_header_route(&testers, &rev("v2")).await.unwrap();
    let mirror = Mirror::new("shadow", Weight::from_percent(5).unwrap(), []).unwrap();
    router.set_mirror(&mirror, &rev("v2")).await.unwrap();

    let after = api.get("reviews").await.unwrap();
    for key in ["hosts", "gateways", "tcp", "exportTo"] {
        assert_eq!(text(&before.spec[key]), text(&after.spec[key]), "{key}");
    }
    let routes = after.spec["http"].as_array().unwrap();
    for route in unrelated_routes() {
        let name = route["name"].as_str().unwrap();
        assert_eq!(text(named(routes, name)), text(&route), "{name}");
    }
    assert_eq!(text(routes.last().unwrap()), text(&before.spec["http"][3]));
    let primary = named(routes, "primary");
    let original = primary_route();
    for key in ["match", "timeout", "corsPolicy"] {
        assert_eq!(text(&primary[key]), text(&original[key]), "{key}");
    }
}

#[tokio::test]
async fn header_and_cookie_routes_go_before_the_weighted_route_and_are_removed() {
    let client = stored(virtual_service()).await;
    let router = router(client.clone());
    router.set_split(&split(10)).await.unwrap();
    let before = http(&client).await;
    let testers = HeaderRoute::new(
        "testers",
        [
            RouteMatch::Header {
                name: "X-Canary".into(),
                value: StringMatch::Prefix("yes".into()),
            },
            RouteMatch::cookie_exact("group", "beta"),
        ],
    )
    .unwrap();
    router.set_header_route(&testers, &rev("v2")).await.unwrap();
    let routes = http(&client).await;
    let names: Vec<_> = routes.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "static",
            "legacy",
            "cutover:primary:testers",
            "primary",
            "fallback"
        ]
    );
    let route = &routes[2];
    assert_eq!(
        route["match"],
        json!([{
            "uri": { "prefix": "/" },
            "headers": {
                "x-canary": { "prefix": "yes" },
                "cookie": { "regex": "^(.*?;\\s*)?group=beta(;.*)?$" },
            },
        }])
    );
    assert_eq!(
        route["route"],
        json!([{
            "destination": { "host": "reviews", "subset": "v2", "port": { "number": 9080 } },
        }])
    );
    assert_eq!(
        route["timeout"], "10s",
        "the managed route's settings come along"
    );
    assert!(route.get("mirror").is_none());

    // Replacing keeps one route; a second route goes next to it.
    let replaced =
        HeaderRoute::new("testers", [RouteMatch::header_exact("x-canary", "2")]).unwrap();
    router
        .set_header_route(&replaced, &rev("v2"))
        .await
        .unwrap();
    let cookie = HeaderRoute::new("beta", [RouteMatch::cookie_exact("beta", "1")]).unwrap();
    router.set_header_route(&cookie, &rev("v1")).await.unwrap();
    let routes = http(&client).await;
    let names: Vec<_> = routes.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "static",
            "legacy",
            "cutover:primary:testers",
            "cutover:primary:beta",
            "primary",
            "fallback"
        ]
    );
    assert_eq!(
        routes[2]["match"][0]["headers"],
        json!({ "x-canary": { "exact": "2" } })
    );

    router.remove_header_route("testers").await.unwrap();
    router.remove_header_route("beta").await.unwrap();
    router.remove_header_route("beta").await.unwrap();
    assert_eq!(
        text(&Value::Array(http(&client).await)),
        text(&Value::Array(before))
    );
}

#[tokio::test]
async fn mirroring_on_and_off() {
    let client = stored(virtual_service()).await;
    let router = router(client.clone());
    let before = http(&client).await;
    let mirror = Mirror::new("shadow", Weight::from_basis_points(1250).unwrap(), []).unwrap();
    router.set_mirror(&mirror, &rev("v2")).await.unwrap();
    let routes = http(&client).await;
    let primary = named(&routes, "primary");
    assert_eq!(
        primary["mirror"],
        json!({ "host": "reviews", "subset": "v2", "port": { "number": 9080 } })
    );
    assert_eq!(primary["mirrorPercentage"], json!({ "value": 12.5 }));
    assert_eq!(
        named(&routes, "legacy")["mirror"],
        json!({ "host": "legacy-shadow" })
    );

    router.remove_mirror("shadow").await.unwrap();
    router.remove_mirror("shadow").await.unwrap();
    assert_eq!(
        text(&Value::Array(http(&client).await)),
        text(&Value::Array(before))
    );
}

#[tokio::test]
async fn a_mirror_of_matching_requests_gets_its_own_route_that_follows_the_weights() {
    let swagger = swagger();
    let (client, written) = validating_client(&swagger, vec![vs_json()]).await;
    let router = router(client.clone());
    router.set_split(&split(10)).await.unwrap();
    let before = http(&client).await;
    let mirror = Mirror::new(
        "shadow",
        Weight::from_percent(30).unwrap(),
        [RouteMatch::header_exact("x-shadow", "1")],
    )
    .unwrap();
    router.set_mirror(&mirror, &rev("v2")).await.unwrap();
    let testers = HeaderRoute::new("testers", [RouteMatch::header_exact("x-canary", "1")]).unwrap();
    router.set_header_route(&testers, &rev("v2")).await.unwrap();
    router.set_split(&split(50)).await.unwrap();

    let routes = http(&client).await;
    let names: Vec<_> = routes.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "static",
            "legacy",
            "cutover:primary:testers",
            "cutover-mirror:primary:shadow",
            "primary",
            "fallback"
        ]
    );
    let shadow = &routes[3];
    assert_eq!(
        shadow["match"],
        json!([{ "uri": { "prefix": "/" }, "headers": { "x-shadow": { "exact": "1" } } }])
    );
    assert_eq!(
        shadow["mirror"],
        json!({ "host": "reviews", "subset": "v2", "port": { "number": 9080 } })
    );
    assert_eq!(shadow["mirrorPercentage"], json!({ "value": 30.0 }));
    assert_eq!(
        text(&shadow["route"]),
        text(&routes[4]["route"]),
        "same weights"
    );
    assert_eq!(
        weights(&routes),
        [("v1".to_owned(), 50), ("v2".to_owned(), 50)]
    );
    assert_eq!(shadow["timeout"], "10s");
    assert!(
        routes[4].get("mirror").is_none(),
        "the managed route mirrors nothing"
    );

    router.remove_mirror("shadow").await.unwrap();
    router.remove_mirror("shadow").await.unwrap();
    router.remove_header_route("testers").await.unwrap();
    router.set_split(&split(10)).await.unwrap();
    assert_eq!(
        text(&Value::Array(http(&client).await)),
        text(&Value::Array(before))
    );
    assert!(
        written.lock().unwrap().len() >= 6,
        "every write was validated"
    );
}

#[tokio::test]
async fn a_mirror_set_by_someone_else_is_not_replaced() {
    let mut vs = virtual_service();
    vs.spec["http"][2]["mirror"] = json!({ "host": "audit" });
    let client = stored(vs).await;
    let router = router(client.clone());
    let mirror = Mirror::new("shadow", Weight::from_percent(5).unwrap(), []).unwrap();
    let err = router.set_mirror(&mirror, &rev("v2")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("\"audit\""), "{err}");
    router.remove_mirror("shadow").await.unwrap();
    assert_eq!(
        named(&http(&client).await, "primary")["mirror"],
        json!({ "host": "audit" })
    );
}

#[tokio::test]
async fn host_based_destinations_use_one_service_per_revision() {
    let mut vs = virtual_service();
    vs.spec["http"][2]["route"] = json!([{ "destination": { "host": "reviews-v1" } }]);
    let client = stored(vs).await;
    let router = IstioRouter::new(client.clone(), NS, "reviews", "primary")
        .destination(rev("v1"), Destination::host("reviews-v1"))
        .destination(rev("v2"), Destination::host("reviews-v2"));
    // A lone destination without a weight takes everything.
    assert_eq!(
        router.current_split().await.unwrap(),
        Some(TrafficSplit::all_to(&rev("v1")))
    );
    router.set_split(&split(30)).await.unwrap();
    let routes = http(&client).await;
    assert_eq!(
        named(&routes, "primary")["route"],
        json!([
            { "destination": { "host": "reviews-v1" }, "weight": 70 },
            { "destination": { "host": "reviews-v2" }, "weight": 30 },
        ])
    );
    assert_eq!(router.current_split().await.unwrap(), Some(split(30)));
}

#[tokio::test]
async fn missing_objects_and_foreign_destinations_are_permanent_errors_naming_them() {
    let mut vs = virtual_service();
    vs.spec["http"][2]["route"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "destination": { "host": "elsewhere" }, "weight": 5 }));
    let client = stored(vs).await;

    let missing = IstioRouter::new(client.clone(), NS, "nope", "primary");
    let err = missing.current_split().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(err.message(), "VirtualService prod/nope does not exist");

    let no_route = IstioRouter::new(client.clone(), NS, "reviews", "canary")
        .destination(rev("v1"), Destination::host("a"));
    let err = no_route.set_split(&split(0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message()
            .contains("VirtualService prod/reviews has no HTTP route named `canary`"),
        "{err}"
    );

    let router = router(client.clone());
    let err = router.set_split(&split(10)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("\"elsewhere\""), "{err}");
    assert_eq!(
        router.current_split().await.unwrap_err().kind(),
        ErrorKind::Permanent
    );

    let unknown =
        TrafficSplit::canary(&rev("v1"), &rev("v9"), Weight::from_percent(10).unwrap()).unwrap();
    let err = router.set_split(&unknown).await.unwrap_err();
    assert!(
        err.message()
            .contains("no destination configured for revision `v9`"),
        "{err}"
    );
}

#[tokio::test]
async fn api_errors_are_classified() {
    let base = stored(virtual_service()).await;
    let patches =
        |m: &http::Method, path: &str| m == http::Method::PATCH && path.contains("virtualservices");
    let cases = [
        (403, ErrorKind::Permanent),
        (404, ErrorKind::Permanent),
        (409, ErrorKind::Transient),
        (429, ErrorKind::Throttled),
        (500, ErrorKind::Transient),
    ];
    for (code, kind) in cases {
        let router = router(failing(base.clone(), code, patches));
        let err = router.set_split(&split(10)).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{code}: {err}");
        assert!(
            err.message()
                .starts_with("patch virtualservices.networking.istio.io prod/reviews"),
            "{err}"
        );
        if code == 403 {
            assert!(
                err.message().contains(
                    "grant the RBAC verb `patch` on `virtualservices.networking.istio.io` in namespace `prod`"
                ),
                "{err}"
            );
        }
    }
    let gets =
        |m: &http::Method, path: &str| m == http::Method::GET && path.contains("virtualservices");
    let err = router(failing(base.clone(), 403, gets))
        .current_split()
        .await
        .unwrap_err();
    assert!(err.message().contains("grant the RBAC verb `get`"), "{err}");
    assert_eq!(
        text(named(&http(&base).await, "primary")),
        text(&primary_route()),
        "nothing was written"
    );
}
