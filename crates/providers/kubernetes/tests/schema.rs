//! The HTTPRoute router against the real Gateway API schema: every HTTPRoute the router writes
//! is checked against the upstream CRD (`tests/crds/gateway-api-httproute.yaml`,
//! standard channel, version v1) by kube-fake-client's `validation` feature.
//!
//! kube-fake-client 0.3 validates only calls made on its `FakeClient` directly, not requests
//! sent through `kube::Api` (its HTTP layer skips the validator), so the same validator is
//! wired in here through create and patch interceptors: a patch is merged into the stored
//! object the way the fake client merges it, and the result is validated. CEL rules
//! (`x-kubernetes-validations`) are not evaluated.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{NS, builder, http_route, rev};
use cutover_core::{HeaderRoute, Mirror, RouteMatch, StringMatch, TrafficRouter, Weight};
use cutover_kubernetes::HttpRouteRouter;
use cutover_test::router_contract;
use gateway_api::apis::standard::httproutes::HttpRoute;
use kube::Api;
use kube::api::PostParams;
use kube_fake_client::interceptor;
use kube_fake_client::validator::{RuntimeOpenAPIValidator, SchemaValidator};

/// The upstream CRD, vendored beside these tests (its first line names the upstream commit).
fn crd_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/crds/gateway-api-httproute.yaml")
}

/// A Swagger file holding the CRD's v1 schema under the name the fake client looks up.
fn swagger() -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(crd_path()).unwrap();
    let crd: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let schema = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1")
        .unwrap()["schema"]["openAPIV3Schema"]
        .clone();
    assert!(
        schema["properties"]["spec"].is_object(),
        "unexpected CRD layout"
    );
    let swagger = serde_json::json!({
        "swagger": "2.0",
        "definitions": { "io.k8s.networking.gateway.v1.HTTPRoute": schema },
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&swagger).unwrap()).unwrap();
    file
}

async fn validating_client(swagger: &tempfile::NamedTempFile) -> kube::Client {
    let validator = Arc::new(RuntimeOpenAPIValidator::from_file(swagger.path()).unwrap());
    validator
        .enable_validation_for("gateway.networking.k8s.io/v1/HTTPRoute")
        .unwrap();
    let on_create = Arc::clone(&validator);
    let funcs = interceptor::Funcs::new()
        .create(move |ctx| {
            if ctx.object["kind"] == "HTTPRoute" {
                on_create.validate("gateway.networking.k8s.io", "v1", "HTTPRoute", ctx.object)?;
            }
            Ok(None)
        })
        .patch(move |ctx| {
            let Ok(existing) = ctx.client.get::<HttpRoute>(ctx.namespace, ctx.name) else {
                return Ok(None);
            };
            let mut merged = serde_json::to_value(existing).unwrap();
            merge(&mut merged, ctx.patch);
            validator.validate("gateway.networking.k8s.io", "v1", "HTTPRoute", &merged)?;
            Ok(None)
        });
    builder()
        .with_interceptor_funcs(funcs)
        .build()
        .await
        .unwrap()
}

/// JSON merge patch (RFC 7386), as the fake client applies patches.
fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let Some(fields) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::json!({});
    }
    let object = target.as_object_mut().unwrap();
    for (key, value) in fields {
        if value.is_null() {
            object.remove(key);
        } else {
            merge(
                object.entry(key.clone()).or_insert(serde_json::Value::Null),
                value,
            );
        }
    }
}

#[tokio::test]
async fn the_schema_is_enforced() {
    let swagger = swagger();
    let client = validating_client(&swagger).await;
    let api = Api::<HttpRoute>::namespaced(client, NS);
    let mut bad = http_route();
    bad.spec.rules.as_mut().unwrap()[1]
        .backend_refs
        .as_mut()
        .unwrap()[0]
        .weight = Some(-1);
    let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
    assert!(err.to_string().contains("schema validation"), "{err}");
    api.create(&PostParams::default(), &http_route())
        .await
        .unwrap();
    let invalid_name = serde_json::json!({ "spec": { "rules": [{ "name": "Not A DNS Label" }] } });
    let err = api
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&invalid_name),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("schema validation"), "{err}");
}

#[tokio::test]
async fn everything_the_router_writes_is_valid() {
    let swagger = swagger();
    let client = validating_client(&swagger).await;
    Api::<HttpRoute>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &http_route())
        .await
        .unwrap();
    let router = HttpRouteRouter::new(client, NS, "web", "primary")
        .backend(rev("v1"), "web-v1", Some(8080))
        .backend(rev("v2"), "web-v2", Some(8080));
    router_contract(&router, &rev("v1"), &rev("v2"))
        .await
        .unwrap();
    let route = HeaderRoute::new(
        "Beta Testers!",
        [
            RouteMatch::Header {
                name: "x-group".into(),
                value: StringMatch::Prefix("beta.".into()),
            },
            RouteMatch::cookie_exact("tier", "gold"),
        ],
    )
    .unwrap();
    router.set_header_route(&route, &rev("v2")).await.unwrap();
    let mirror = Mirror::new("shadow", Weight::from_basis_points(1).unwrap(), []).unwrap();
    router.set_mirror(&mirror, &rev("v2")).await.unwrap();
}
