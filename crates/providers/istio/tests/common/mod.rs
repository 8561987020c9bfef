//! Objects, fake clients validating against the upstream Istio CRDs, and error injection,
//! shared by the tests.
//!
//! kube-fake-client 0.3 validates only calls made on its `FakeClient` directly, not requests
//! sent through `kube::Api`, so the validator is wired in through create and patch
//! interceptors: a patch is merged into the stored object the way the fake client merges it,
//! and the result is validated. The schemas are made strict first: every object schema that
//! lists `properties` (and does not preserve unknown fields) gets `additionalProperties:
//! false`, so a field the CRD does not know (which a real API server would silently prune)
//! fails the test. CEL rules (`x-kubernetes-validations`) are not evaluated.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cutover_core::RevisionId;
use cutover_istio::{Destination, DestinationRule, IstioRouter, VirtualService};
use kube_fake_client::validator::{RuntimeOpenAPIValidator, SchemaValidator};
use kube_fake_client::{ClientBuilder, interceptor};
use serde_json::{Value, json};

pub const NS: &str = "prod";

pub fn rev(s: &str) -> RevisionId {
    s.parse().unwrap()
}

/// An HTTP route cutover must leave alone, with fields of many kinds.
pub fn unrelated_routes() -> Vec<Value> {
    vec![
        json!({
            "name": "static",
            "match": [{ "uri": { "prefix": "/static" }, "ignoreUriCase": true }],
            "rewrite": { "uri": "/" },
            "route": [{ "destination": { "host": "static-files", "port": { "number": 8080 } } }],
            "timeout": "2.5s",
        }),
        json!({
            "name": "legacy",
            "match": [{ "headers": { "x-legacy": { "exact": "true" } } }],
            "route": [
                { "destination": { "host": "legacy", "subset": "a" }, "weight": 70 },
                { "destination": { "host": "legacy", "subset": "b" }, "weight": 30 },
            ],
            "retries": { "attempts": 3, "perTryTimeout": "1s", "retryOn": "5xx" },
            "mirror": { "host": "legacy-shadow" },
            "mirrorPercentage": { "value": 0.5 },
            "fault": { "delay": { "fixedDelay": "5s", "percentage": { "value": 0.1 } } },
        }),
    ]
}

/// The managed route `primary`: all traffic to subset v1, with settings cutover must keep.
pub fn primary_route() -> Value {
    json!({
        "name": "primary",
        "match": [{ "uri": { "prefix": "/" } }],
        "route": [{
            "destination": { "host": "reviews", "subset": "v1", "port": { "number": 9080 } },
            "headers": { "response": { "set": { "x-served-by": "reviews" } } },
        }],
        "timeout": "10s",
        "corsPolicy": { "allowOrigins": [{ "exact": "https://example.com" }] },
    })
}

/// VirtualService `reviews`: two unrelated routes, the managed one, and a catch-all after it,
/// plus a TCP route.
pub fn virtual_service() -> VirtualService {
    let mut http = unrelated_routes();
    http.push(primary_route());
    http.push(json!({
        "name": "fallback",
        "directResponse": { "status": 404, "body": { "string": "no route" } },
    }));
    let spec = json!({
        "hosts": ["reviews", "reviews.example.com"],
        "gateways": ["mesh", "istio-system/public"],
        "http": http,
        "tcp": [{ "match": [{ "port": 9000 }], "route": [{ "destination": { "host": "reviews-tcp" } }] }],
        "exportTo": ["."],
    });
    VirtualService::new(NS, "reviews", spec)
}

/// DestinationRule `reviews` with an unrelated subset and policies cutover must keep.
pub fn destination_rule() -> DestinationRule {
    let spec = json!({
        "host": "reviews",
        "trafficPolicy": {
            "connectionPool": { "http": { "http1MaxPendingRequests": 100 } },
            "loadBalancer": { "localityLbSetting": { "enabled": true } },
            "tls": { "mode": "ISTIO_MUTUAL" },
        },
        "subsets": [
            { "name": "v1", "labels": { "version": "old" } },
            { "name": "debug", "labels": { "version": "debug" },
              "trafficPolicy": { "outlierDetection": { "consecutive5xxErrors": 7 } } },
        ],
    });
    DestinationRule::new(NS, "reviews", spec)
}

pub fn router(client: kube::Client) -> IstioRouter {
    IstioRouter::new(client, NS, "reviews", "primary")
        .destination(
            rev("v1"),
            Destination::subset("reviews", "v1").with_port(9080),
        )
        .destination(
            rev("v2"),
            Destination::subset("reviews", "v2").with_port(9080),
        )
}

/// The HTTP routes of the stored VirtualService.
pub async fn http(client: &kube::Client) -> Vec<Value> {
    let vs = kube::Api::<VirtualService>::namespaced(client.clone(), NS)
        .get("reviews")
        .await
        .unwrap();
    vs.spec["http"].as_array().unwrap().clone()
}

/// The route named `name`.
pub fn named<'a>(http: &'a [Value], name: &str) -> &'a Value {
    http.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {http:#?}"))
}

/// `(subset, weight)` of the managed route's destinations.
pub fn weights(http: &[Value]) -> Vec<(String, i64)> {
    named(http, "primary")["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["destination"]["subset"].as_str().unwrap().to_owned(),
                e["weight"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The upstream CRDs, vendored beside these tests (the first line names the upstream commit).
fn crd_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/crds/istio-networking.yaml")
}

/// Adds `additionalProperties: false` to every object schema with `properties`.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let preserves = map
                .get("x-kubernetes-preserve-unknown-fields")
                .is_some_and(|v| v == true);
            if map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && !preserves
            {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for value in map.values_mut() {
                strict(value);
            }
        }
        Value::Array(list) => list.iter_mut().for_each(strict),
        _ => {}
    }
}

/// A Swagger file with the v1 schemas of both CRDs under the names the validator looks up.
pub fn swagger() -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(crd_path()).unwrap();
    let mut definitions = serde_json::Map::new();
    for document in text
        .split("\n---\n")
        .filter(|d| d.contains("kind: CustomResourceDefinition"))
    {
        let crd: Value = serde_saphyr::from_str(document).unwrap();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        let version = crd["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "v1")
            .unwrap();
        let mut schema = version["schema"]["openAPIV3Schema"].clone();
        assert!(
            schema["properties"]["spec"].is_object(),
            "unexpected CRD layout"
        );
        strict(&mut schema["properties"]["spec"]);
        definitions.insert(format!("io.istio.networking.v1.{kind}"), schema);
    }
    assert_eq!(
        definitions.len(),
        2,
        "expected VirtualService and DestinationRule"
    );
    let swagger = json!({ "swagger": "2.0", "definitions": definitions });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&swagger).unwrap()).unwrap();
    file
}

/// Every object written (after the merge), by kind, for tests that inspect them.
pub type Written = Arc<Mutex<Vec<Value>>>;

/// A fake client with both kinds registered and `objects` stored, that validates every create
/// and patch against the Istio schemas and records what it validated.
pub async fn validating_client(
    swagger: &tempfile::NamedTempFile,
    objects: Vec<Value>,
) -> (kube::Client, Written) {
    let validator = Arc::new(RuntimeOpenAPIValidator::from_file(swagger.path()).unwrap());
    for kind in ["VirtualService", "DestinationRule"] {
        validator
            .enable_validation_for(&format!("networking.istio.io/v1/{kind}"))
            .unwrap();
    }
    let written: Written = Arc::default();
    let (on_create, on_patch) = (Arc::clone(&validator), validator);
    let (log_create, log_patch) = (Arc::clone(&written), Arc::clone(&written));
    let funcs = interceptor::Funcs::new()
        .create(move |ctx| {
            let kind = ctx.object["kind"].as_str().unwrap_or_default().to_owned();
            on_create.validate("networking.istio.io", "v1", &kind, ctx.object)?;
            log_create.lock().unwrap().push(ctx.object.clone());
            Ok(None)
        })
        .patch(move |ctx| {
            let existing = match ctx.patch["kind"].as_str() {
                Some("VirtualService") => ctx
                    .client
                    .get::<VirtualService>(ctx.namespace, ctx.name)
                    .map(|o| serde_json::to_value(o).unwrap()),
                Some("DestinationRule") => ctx
                    .client
                    .get::<DestinationRule>(ctx.namespace, ctx.name)
                    .map(|o| serde_json::to_value(o).unwrap()),
                other => panic!("patch without an Istio kind: {other:?}"),
            };
            let Ok(mut merged) = existing else {
                return Ok(None);
            };
            json_patch::merge(&mut merged, ctx.patch);
            let kind = merged["kind"].as_str().unwrap_or_default().to_owned();
            on_patch.validate("networking.istio.io", "v1", &kind, &merged)?;
            log_patch.lock().unwrap().push(merged);
            Ok(None)
        });
    let client = builder()
        .with_runtime_objects(objects)
        .with_interceptor_funcs(funcs)
        .build()
        .await
        .unwrap();
    (client, written)
}

/// A fake client that knows the two Istio kinds.
pub fn builder() -> ClientBuilder {
    ClientBuilder::new()
        .with_resource::<VirtualService>()
        .with_resource::<DestinationRule>()
}

/// `client` with every request for which `hit(method, path)` holds answered by the API
/// server's error `code` instead (see `cutover_kube::testing::failing`).
pub fn failing(
    client: kube::Client,
    code: u16,
    hit: impl Fn(&http::Method, &str) -> bool + Clone + Send + Sync + 'static,
) -> kube::Client {
    cutover_kube::testing::failing(client, NS, code, hit)
}
