//! The `Rollout` custom resource (`cutover.dev/v1alpha1`): a cutover plan and the
//! Kubernetes objects it moves. `deploy/crd.yaml` is generated from these types
//! (`cutover-operator crd`); a test fails when the two drift apart.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A rollout of a Deployment-backed service from its stable revision to a candidate, run by
/// the cutover engine following `plan`.
///
/// ```yaml
/// apiVersion: cutover.dev/v1alpha1
/// kind: Rollout
/// metadata: { name: checkout }
/// spec:
///   stable: { revision: v1, deployment: checkout-v1 }
///   candidate: { revision: v2, deployment: checkout-v2 }
///   traffic: { replicas: { total: 4 } }
///   plan:
///     strategy: { canary: { steps: [ { set_weight: 25 }, { pause: { duration: 1m } } ] } }
/// ```
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cutover.dev",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    status = "RolloutStatus",
    shortname = "crollout",
    category = "cutover",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".status.step"}"#,
    printcolumn = r#"{"name":"Candidate","type":"string","jsonPath":".status.candidateWeight"}"#,
    printcolumn = r#"{"name":"Owner","type":"string","jsonPath":".status.owner","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// The revision serving now.
    pub stable: RevisionRef,
    /// The revision being rolled out. The rollout's id in the store is
    /// `<metadata.name>-<candidate.revision>`.
    pub candidate: RevisionRef,
    /// What moves traffic: exactly one of its fields.
    pub traffic: Traffic,
    /// Prometheus metric sources, by the name the plan's analyses use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, PrometheusRef>,
    /// Also scale the two Deployments as the rollout's workload (blue-green replicas, canary
    /// `scale` steps). Off by default: with `traffic.replicas` the router scales them already.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scale_deployments: bool,
    /// The cutover plan: `strategy`, `analyses`, `progress_deadline`... as in a plan file. The
    /// operator checks it and reports errors in `status.message` (phase `Invalid`), with the
    /// field at fault.
    #[schemars(schema_with = "free_form")]
    pub plan: serde_json::Value,
}

/// A revision and the Deployment that runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRef {
    /// The revision's name (`v1`, an image tag): the weights and records use it.
    pub revision: String,
    /// Its Deployment, in the Rollout's namespace.
    pub deployment: String,
    /// A label selector of its pods, for the health probe (default: the Deployment's
    /// `spec.selector.matchLabels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<String>,
}

/// What moves traffic. Exactly one field must be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Traffic {
    /// A canary without a mesh: the two Deployments' replica counts behind one Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicasTraffic>,
    /// Blue-green: a Service whose selector label `label` names the revision serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceTraffic>,
    /// Gateway API: weights on a named rule of an HTTPRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<HttpRouteTraffic>,
    /// Istio: weights on a named HTTP route of a VirtualService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioTraffic>,
}

/// `traffic.replicas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicasTraffic {
    /// Replicas of both Deployments together.
    pub total: u32,
}

/// `traffic.service`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTraffic {
    /// The Service.
    pub name: String,
    /// The selector key whose value is the serving revision's name.
    pub label: String,
}

/// `traffic.httpRoute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteTraffic {
    /// The HTTPRoute.
    pub name: String,
    /// The name of its rule that carries the weights.
    pub rule: String,
    /// The stable revision's Service.
    pub stable_service: String,
    /// The candidate's Service.
    pub candidate_service: String,
    /// The Services' port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// `traffic.istio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioTraffic {
    /// The VirtualService.
    pub virtual_service: String,
    /// The name of its HTTP route.
    pub route: String,
    /// The host both revisions are reached at.
    pub host: String,
    /// The stable revision's subset of the host's DestinationRule.
    pub stable_subset: String,
    /// The candidate's subset.
    pub candidate_subset: String,
}

/// A Prometheus server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRef {
    /// Its base URL.
    pub address: String,
    /// Values of the query templates' placeholders (`namespace`, `service`...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
}

/// Where a Rollout is, written by the replica that runs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The generation of the spec this status is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The id of the rollout in the state store (`<name>-<candidate revision>`), for
    /// `cutover --store kubernetes:NAMESPACE status ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_id: Option<String>,
    /// `Pending`, `PreFlight`, `Expanding`, `Progressing`, `Paused`, `Promoting`,
    /// `RollingBack`, `Promoted`, `RolledBack`, `Aborted`, `Refused`, `Concluded`, `Failed` or
    /// `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The current step, like `2/6 pause` (from 0, as in the decision log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The candidate's share of traffic, like `25%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_weight: Option<String>,
    /// The engine that holds the rollout's owner lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The latest decision of the engine, or why the Rollout cannot run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The latest command taken from the `cutover.dev/command` annotation, and whether it was
    /// queued: `abort by bob (p99 too high): queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_command: Option<String>,
    /// `Ready`, `Progressing` and `Degraded`, in the shape of Kubernetes conditions (see
    /// docs/operator.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A condition of a Rollout, in the shape of Kubernetes' `metav1.Condition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, in one `PascalCase` word (the phase, `Stalled`, `AsExpected`).
    pub reason: String,
    /// The latest decision, or what is wrong.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
    /// The generation of the spec the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Any JSON object, kept as it is (`x-kubernetes-preserve-unknown-fields`).
fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The CRD as YAML, as checked in at `deploy/crd.yaml`.
///
/// # Errors
///
/// When the CRD cannot be written as YAML (it always can).
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    use kube::CustomResourceExt as _;
    let header =
        "# Generated by `cutover-operator crd` from crates/operator/src/crd.rs; do not edit.\n";
    Ok(format!(
        "{header}{}",
        serde_saphyr::to_string(&Rollout::crd())?
    ))
}
