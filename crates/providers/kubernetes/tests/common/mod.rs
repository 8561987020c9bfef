//! Objects and fake clients shared by the tests.
#![allow(dead_code, unreachable_pub)]

pub mod httproute;
pub mod selector;
pub mod store;

use std::collections::BTreeMap;

use cutover_core::RevisionId;
use cutover_kube::testing::AtomicField;
use gateway_api::apis::standard::httproutes::{
    HttpRoute, HttpRouteParentRefs, HttpRouteRules, HttpRouteRulesBackendRefs,
    HttpRouteRulesMatches, HttpRouteRulesMatchesPath, HttpRouteRulesMatchesPathType, HttpRouteSpec,
};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodSpec,
    PodStatus, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::ObjectMeta;
use kube_fake_client::ClientBuilder;

pub const NS: &str = "prod";

pub fn rev(s: &str) -> RevisionId {
    s.parse().unwrap()
}

pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(NS.to_owned()),
        ..ObjectMeta::default()
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The Service `web`: selects `app=web` and `cutover.dev/revision=v1`, with a port and a
/// session affinity that the router must not touch.
pub fn service() -> Service {
    Service {
        metadata: meta("web"),
        spec: Some(ServiceSpec {
            selector: Some(labels(&[("app", "web"), ("cutover.dev/revision", "v1")])),
            ports: Some(vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }]),
            session_affinity: Some("ClientIP".to_owned()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

pub fn template(image: &str, version: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&[("app", "web"), ("version", version)])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".to_owned(),
                image: Some(image.to_owned()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

/// A Deployment `name` with `replicas`, its status caught up and every replica available.
pub fn deployment(name: &str, version: &str, replicas: i32) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            generation: Some(1),
            ..meta(name)
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web"), ("version", version)])),
                ..LabelSelector::default()
            },
            template: template(&format!("web:{version}"), version),
            ..DeploymentSpec::default()
        }),
        status: Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(replicas),
            updated_replicas: Some(replicas),
            ready_replicas: Some(replicas),
            available_replicas: Some(replicas),
            ..DeploymentStatus::default()
        }),
    }
}

fn backend(name: &str, weight: i32) -> HttpRouteRulesBackendRefs {
    HttpRouteRulesBackendRefs {
        name: name.to_owned(),
        port: Some(8080),
        weight: Some(weight),
        ..HttpRouteRulesBackendRefs::default()
    }
}

/// The rule cutover must leave alone.
pub fn static_rule() -> HttpRouteRules {
    HttpRouteRules {
        name: Some("static".to_owned()),
        matches: Some(vec![HttpRouteRulesMatches {
            path: Some(HttpRouteRulesMatchesPath {
                r#type: Some(HttpRouteRulesMatchesPathType::PathPrefix),
                value: Some("/static".to_owned()),
            }),
            ..HttpRouteRulesMatches::default()
        }]),
        backend_refs: Some(vec![backend("static-files", 1)]),
        ..HttpRouteRules::default()
    }
}

/// HTTPRoute `web`: the unmanaged rule `static`, then the managed rule `primary` on `/`.
pub fn http_route() -> HttpRoute {
    HttpRoute {
        metadata: meta("web"),
        spec: HttpRouteSpec {
            parent_refs: Some(vec![HttpRouteParentRefs {
                name: "public".to_owned(),
                ..HttpRouteParentRefs::default()
            }]),
            rules: Some(vec![
                static_rule(),
                HttpRouteRules {
                    name: Some("primary".to_owned()),
                    matches: Some(vec![HttpRouteRulesMatches {
                        path: Some(HttpRouteRulesMatchesPath {
                            r#type: Some(HttpRouteRulesMatchesPathType::PathPrefix),
                            value: Some("/".to_owned()),
                        }),
                        ..HttpRouteRulesMatches::default()
                    }]),
                    backend_refs: Some(vec![backend("web-v1", 100)]),
                    ..HttpRouteRules::default()
                },
            ]),
            ..HttpRouteSpec::default()
        },
        status: None,
    }
}

pub fn pod(name: &str, version: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            labels: Some(labels(&[("app", "web"), ("version", version)])),
            ..meta(name)
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some("Running".to_owned()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".to_owned(),
                status: if ready { "True" } else { "False" }.to_owned(),
                ..PodCondition::default()
            }]),
            container_statuses: Some(vec![ContainerStatus {
                name: "web".to_owned(),
                ready,
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

/// A pod whose container waits with `reason`.
pub fn waiting_pod(name: &str, version: &str, reason: &str) -> Pod {
    let mut pod = pod(name, version, false);
    let status = pod.status.as_mut().unwrap();
    status.container_statuses.as_mut().unwrap()[0].state = Some(ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message: Some("back-off restarting failed container".to_owned()),
        }),
        ..ContainerState::default()
    });
    pod
}

/// A fake client that knows HTTPRoutes and keeps Deployment status apart from spec.
pub fn builder() -> ClientBuilder {
    ClientBuilder::new()
        .with_resource::<HttpRoute>()
        .with_status_subresource::<Deployment>()
}

/// A fake client from `builder` whose Services' `spec.selector` is an atomic map, as on a real
/// API server: one owner, replaced whole by an apply (`cutover_kube::testing::atomic_fields`).
pub async fn atomic_selectors(builder: ClientBuilder) -> kube::Client {
    with_atomic(builder, vec![AtomicField::service_selector()]).await
}

/// A fake client from `builder` with `fields` atomic, as on a real API server.
pub async fn with_atomic(builder: ClientBuilder, fields: Vec<AtomicField>) -> kube::Client {
    let client = builder.with_return_managed_fields().build().await.unwrap();
    cutover_kube::testing::atomic_fields(client, NS, fields)
}

/// The manifest of the Service `web`, as its deployment tooling applies it: selector
/// `app=web` plus `extra` keys, a port and a session affinity the router must not touch.
pub fn service_manifest(extra: &[(&str, &str)]) -> serde_json::Value {
    let mut selector = serde_json::json!({ "app": "web" });
    for (k, v) in extra {
        selector[*k] = serde_json::json!(v);
    }
    serde_json::json!({
        "apiVersion": "v1", "kind": "Service", "metadata": { "name": "web" },
        "spec": {
            "selector": selector,
            "ports": [{ "port": 80, "protocol": "TCP" }],
            "sessionAffinity": "ClientIP",
        },
    })
}

/// Plays the Deployment controller once for `name`: the status catches up with the spec,
/// and every replica is updated, ready and available.
pub async fn settle(api: &Api<Deployment>, name: &str) {
    let mut d = api.get(name).await.unwrap();
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    d.status = Some(DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(replicas),
        updated_replicas: Some(replicas),
        ready_replicas: Some(replicas),
        available_replicas: Some(replicas),
        ..DeploymentStatus::default()
    });
    api.replace_status(name, &kube::api::PostParams::default(), &d)
        .await
        .unwrap();
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

/// A client holding `web-v1` with 10 replicas and `web-v2` with none.
pub async fn two_deployments() -> kube::Client {
    builder()
        .with_object(deployment("web-v1", "v1", 10))
        .with_object(deployment("web-v2", "v2", 0))
        .build()
        .await
        .unwrap()
}

/// A replica-ratio router over `web-v1` and `web-v2` with `total` replicas.
pub fn ratio_router(client: kube::Client, total: u32) -> cutover_kubernetes::ReplicaRatioRouter {
    cutover_kubernetes::ReplicaRatioRouter::new(client, NS, total)
        .revision(rev("v1"), "web-v1")
        .revision(rev("v2"), "web-v2")
}

/// Server-side applies `manifest` (named `web`) as field manager `manager`.
pub async fn apply_as<K>(api: &Api<K>, manager: &str, manifest: &serde_json::Value)
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let params = kube::api::PatchParams::apply(manager);
    api.patch("web", &params, &kube::api::Patch::Apply(manifest))
        .await
        .unwrap();
}
