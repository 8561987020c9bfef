//! Kubernetes (feature `kubernetes`): a PodDisruptionBudget covers the workload, its containers
//! have requests and limits, and its autoscaler is not at its maximum.
//!
//! The workload is a Deployment named by `namespace` and `deployment`. The client comes from
//! the default kubeconfig or the in-cluster service account (`kube::Config::infer`), or from a
//! kubeconfig `context` when one is given. The checks only read; the Role they need:
//!
//! ```yaml
//! apiVersion: rbac.authorization.k8s.io/v1
//! kind: Role
//! metadata: { name: cutover-preflight }
//! rules:
//!   - { apiGroups: [apps], resources: [deployments], verbs: [get] }
//!   - { apiGroups: [policy], resources: [poddisruptionbudgets], verbs: [list] }
//!   - { apiGroups: [autoscaling], resources: [horizontalpodautoscalers], verbs: [list] }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use cutover_core::checklist::{Check, CheckContext, CheckResult};
use cutover_kube::{Target, classify, is_not_found};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{Selector, SelectorExt as _};
use serde::Deserialize;

/// Where a check gets its Kubernetes client.
#[derive(Clone)]
enum Cluster {
    /// The default kubeconfig, else the in-cluster service account.
    Infer,
    /// A context of the default kubeconfig.
    Context(String),
    /// A client given in code (tests, an embedding tool's own client).
    Client(kube::Client),
}

/// A Deployment in a namespace, and how to reach its cluster.
#[derive(Clone)]
struct Workload {
    namespace: String,
    deployment: String,
    cluster: Cluster,
}

impl fmt::Debug for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cluster = match &self.cluster {
            Cluster::Infer => "default kubeconfig or in-cluster".to_owned(),
            Cluster::Context(c) => format!("context {c}"),
            Cluster::Client(_) => "a given client".to_owned(),
        };
        write!(
            f,
            "Deployment {}/{} ({cluster})",
            self.namespace, self.deployment
        )
    }
}

/// Whether `name` is a DNS-1123 label (namespaces) or subdomain (Deployments).
fn valid_name(name: &str, subdomain: bool) -> bool {
    let max = if subdomain { 253 } else { 63 };
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let part_ok = |p: &str| {
        p.starts_with(alnum) && p.ends_with(alnum) && p.chars().all(|c| alnum(c) || c == '-')
    };
    !name.is_empty()
        && name.len() <= max
        && if subdomain {
            name.split('.').all(part_ok)
        } else {
            part_ok(name)
        }
}

impl Workload {
    fn new(namespace: String, deployment: String, context: Option<String>) -> Self {
        Workload {
            namespace,
            deployment,
            cluster: context.map_or(Cluster::Infer, Cluster::Context),
        }
    }

    fn from_params(
        namespace: String,
        deployment: String,
        context: Option<String>,
    ) -> Result<Self, (String, String)> {
        if !valid_name(&namespace, false) {
            return Err((
                "namespace".into(),
                format!(
                    "`{namespace}` is not a namespace name (lowercase letters, digits and `-`, at most 63)"
                ),
            ));
        }
        if !valid_name(&deployment, true) {
            return Err((
                "deployment".into(),
                format!(
                    "`{deployment}` is not a Deployment name (lowercase letters, digits, `-` and `.`)"
                ),
            ));
        }
        if context.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err((
                "context".into(),
                "must not be empty (leave it out for the default context)".into(),
            ));
        }
        Ok(Workload::new(namespace, deployment, context))
    }

    /// `namespace/deployment`.
    fn name(&self) -> String {
        format!("{}/{}", self.namespace, self.deployment)
    }

    async fn client(&self) -> Result<kube::Client, CheckResult> {
        let config = match &self.cluster {
            Cluster::Client(client) => return Ok(client.clone()),
            Cluster::Infer => kube::Config::infer()
                .await
                .map_err(|e| format!("no Kubernetes configuration: {e}")),
            Cluster::Context(context) => {
                let options = KubeConfigOptions {
                    context: Some(context.clone()),
                    ..KubeConfigOptions::default()
                };
                match Kubeconfig::read() {
                    Ok(file) => kube::Config::from_custom_kubeconfig(file, &options)
                        .await
                        .map_err(|e| format!("kubeconfig context `{context}`: {e}")),
                    Err(e) => Err(format!(
                        "cannot read the kubeconfig for context `{context}`: {e}"
                    )),
                }
            }
        };
        config
            .and_then(|c| {
                kube::Client::try_from(c).map_err(|e| format!("cannot build a client: {e}"))
            })
            .map_err(|e| {
                CheckResult::error(e)
                    .hint("point KUBECONFIG at a kubeconfig with this context, or run in the cluster with a service account")
            })
    }

    /// The client and the Deployment; a missing Deployment, an unreachable cluster or missing
    /// RBAC permissions are error results.
    async fn fetch(&self) -> Result<(kube::Client, Deployment), CheckResult> {
        let client = self.client().await.map_err(|r| self.evidence(r))?;
        let api: Api<Deployment> = Api::namespaced(client.clone(), &self.namespace);
        match api.get(&self.deployment).await {
            Ok(d) => Ok((client, d)),
            Err(e) if is_not_found(&e) => Err(self.evidence(
                CheckResult::error(format!("Deployment {} not found", self.name()))
                    .hint("check the namespace, the Deployment's name and the kubeconfig context"),
            )),
            Err(e) => Err(self.api_error(e, "get", "deployments.apps", &self.deployment)),
        }
    }

    /// An error result for a failed request, naming it (and the RBAC verb when forbidden).
    fn api_error(
        &self,
        error: kube::Error,
        verb: &'static str,
        resource: &str,
        name: &str,
    ) -> CheckResult {
        let target = Target::new(verb, resource, &self.namespace, name);
        let err = classify(error, &target);
        self.evidence(
            CheckResult::error(err.message())
                .hint("check that the cluster is reachable and the checks' Role allows it"),
        )
    }

    fn evidence(&self, result: CheckResult) -> CheckResult {
        let result = result.evidence("deployment", self.name());
        match &self.cluster {
            Cluster::Context(c) => result.evidence("context", c),
            _ => result,
        }
    }
}

/// The labels of a Deployment's pod template.
fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn int_or_string(value: &IntOrString) -> serde_json::Value {
    match value {
        IntOrString::Int(i) => (*i).into(),
        IntOrString::String(s) => s.clone().into(),
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `client` and `context` setters every check here has.
macro_rules! cluster_setters {
    () => {
        /// With this client instead of one from the configuration.
        #[must_use]
        pub fn client(mut self, client: kube::Client) -> Self {
            self.workload.cluster = Cluster::Client(client);
            self
        }

        /// With the kubeconfig context `context`.
        #[must_use]
        pub fn context(mut self, context: impl Into<String>) -> Self {
            self.workload.cluster = Cluster::Context(context.into());
            self
        }
    };
}

macro_rules! workload_params {
    ($name:ident { $($field:ident: $ty:ty = $default:expr),* $(,)? }) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct $name {
            namespace: String,
            deployment: String,
            #[serde(default)]
            context: Option<String>,
            $(#[serde(default = $default)] $field: $ty,)*
        }
    };
}

/// A PodDisruptionBudget in the Deployment's namespace selects its pods, so that node drains
/// and cluster upgrades cannot take all of them down at once during the rollout. Exactly one
/// must select them (the eviction API refuses pods that two budgets select); one that allows
/// no eviction at all (`maxUnavailable: 0`, `minAvailable: 100%` or at least the replicas) is
/// a warning, since node drains would then wait forever. When none covers the workload, the
/// hint gives the `kubectl` command and the evidence the manifest of one to apply.
///
/// ```yaml
/// kubernetes_pdb: { namespace: prod, deployment: checkout }   # context: optional
/// ```
#[derive(Debug, Clone)]
pub struct PdbCheck {
    workload: Workload,
}

workload_params!(PdbParams {});

impl PdbCheck {
    /// Checks Deployment `deployment` in `namespace`, with the default kubeconfig or in-cluster
    /// configuration.
    pub fn new(namespace: impl Into<String>, deployment: impl Into<String>) -> Self {
        PdbCheck {
            workload: Workload::new(namespace.into(), deployment.into(), None),
        }
    }

    cluster_setters!();

    pub(crate) fn from_params(p: PdbParams) -> Result<Self, (String, String)> {
        Ok(PdbCheck {
            workload: Workload::from_params(p.namespace, p.deployment, p.context)?,
        })
    }

    /// The budget to suggest: the Deployment's `matchLabels` (else its pod labels), one pod
    /// at a time.
    fn suggestion(&self, deployment: &Deployment) -> (String, serde_json::Value) {
        let selector = deployment
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| pod_labels(deployment));
        let w = &self.workload;
        let command = format!(
            "kubectl create poddisruptionbudget {} --namespace {} --selector {} --max-unavailable 1",
            w.deployment,
            w.namespace,
            labels_text(&selector)
        );
        let manifest = serde_json::json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": { "name": w.deployment, "namespace": w.namespace },
            "spec": { "maxUnavailable": 1, "selector": { "matchLabels": selector } },
        });
        (command, manifest)
    }
}

/// Whether a budget's spec allows no voluntary eviction at all for `replicas` pods.
fn blocks_every_eviction(pdb: &PodDisruptionBudget, replicas: i32) -> bool {
    let Some(spec) = &pdb.spec else { return false };
    let zero = |v: &IntOrString| match v {
        IntOrString::Int(i) => *i <= 0,
        IntOrString::String(s) => s.trim_end_matches('%').trim().parse::<f64>() == Ok(0.0),
    };
    let all = |v: &IntOrString| match v {
        IntOrString::Int(i) => *i >= replicas,
        IntOrString::String(s) => s.trim_end_matches('%').trim().parse::<f64>() == Ok(100.0),
    };
    spec.max_unavailable.as_ref().is_some_and(zero) || spec.min_available.as_ref().is_some_and(all)
}

#[async_trait]
impl Check for PdbCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let w = &self.workload;
        let (client, deployment) = match w.fetch().await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let api: Api<PodDisruptionBudget> = Api::namespaced(client, &w.namespace);
        let mut budgets = match api.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) => return w.api_error(e, "list", "poddisruptionbudgets.policy", ""),
        };
        budgets.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let labels = pod_labels(&deployment);
        // policy/v1: an empty selector selects every pod of the namespace, a missing one none.
        let covering: Vec<&PodDisruptionBudget> = budgets
            .iter()
            .filter(|b| {
                b.spec
                    .as_ref()
                    .and_then(|s| s.selector.clone())
                    .and_then(|s| Selector::try_from(s).ok())
                    .is_some_and(|s| s.matches(&labels))
            })
            .collect();
        let names: Vec<String> = covering
            .iter()
            .map(|b| b.metadata.name.clone().unwrap_or_default())
            .collect();
        let result = match covering.as_slice() {
            [] => {
                let (command, manifest) = self.suggestion(&deployment);
                CheckResult::fail(format!(
                    "no PodDisruptionBudget in `{}` selects the pods of Deployment {} ({})",
                    w.namespace,
                    w.name(),
                    labels_text(&labels)
                ))
                .hint(format!(
                    "apply one so that drains cannot take every pod at once: `{command}`"
                ))
                .evidence("suggested_pdb", manifest)
                .evidence(
                    "pdbs_in_namespace",
                    budgets
                        .iter()
                        .filter_map(|b| b.metadata.name.clone())
                        .collect::<Vec<_>>(),
                )
            }
            [pdb] => {
                let spec = pdb.spec.clone().unwrap_or_default();
                let replicas = deployment
                    .spec
                    .as_ref()
                    .and_then(|s| s.replicas)
                    .unwrap_or(1);
                let rule = match (&spec.min_available, &spec.max_unavailable) {
                    (Some(v), _) => format!("minAvailable {}", int_or_string(v)),
                    (None, Some(v)) => format!("maxUnavailable {}", int_or_string(v)),
                    (None, None) => "maxUnavailable 1 by default".to_owned(),
                };
                let name = &names[0];
                let result = if blocks_every_eviction(pdb, replicas) {
                    CheckResult::warn(format!(
                        "PodDisruptionBudget `{name}` covers {} but allows no eviction ({rule} for {replicas} replicas)",
                        w.name()
                    ))
                    .hint("node drains and upgrades will wait forever: allow at least one pod to go (maxUnavailable: 1)")
                } else {
                    CheckResult::pass(format!(
                        "PodDisruptionBudget `{name}` covers {} ({rule})",
                        w.name()
                    ))
                };
                result
                    .evidence("pdb", name)
                    .evidence(
                        "min_available",
                        spec.min_available.as_ref().map(int_or_string),
                    )
                    .evidence(
                        "max_unavailable",
                        spec.max_unavailable.as_ref().map(int_or_string),
                    )
                    .evidence(
                        "disruptions_allowed",
                        pdb.status.as_ref().map(|s| s.disruptions_allowed),
                    )
                    .evidence("replicas", replicas)
            }
            _ => CheckResult::fail(format!(
                "the pods of {} are selected by {} PodDisruptionBudgets ({}): the eviction API refuses such pods, so drains stall",
                w.name(),
                names.len(),
                names.join(", ")
            ))
            .hint("keep one PodDisruptionBudget per workload: merge them or narrow their selectors")
            .evidence("pdbs", &names),
        };
        w.evidence(result.evidence("pod_labels", &labels))
    }
}

/// The four settings [`ResourcesCheck`] can require.
const SETTINGS: [&str; 4] = [
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// Every container of the Deployment's pod template has CPU and memory requests and limits
/// (or the subset listed in `require`): without requests the scheduler packs pods blindly,
/// without limits one bad revision can starve its neighbours. A request left out where its
/// limit is set counts as set (the API server gives every pod a request equal to the limit).
/// The evidence lists, by container, what is missing.
///
/// ```yaml
/// kubernetes_resources: { namespace: prod, deployment: checkout }
/// kubernetes_resources: { namespace: prod, deployment: checkout, require: [requests.cpu, requests.memory, limits.memory] }
/// ```
#[derive(Debug, Clone)]
pub struct ResourcesCheck {
    workload: Workload,
    require: Vec<String>,
}

fn all_settings() -> Vec<String> {
    SETTINGS.iter().map(|s| (*s).to_owned()).collect()
}

workload_params!(ResourcesParams {
    require: Vec<String> = "all_settings",
});

impl ResourcesCheck {
    /// Checks that every container of Deployment `deployment` in `namespace` sets all four of
    /// CPU and memory requests and limits.
    pub fn new(namespace: impl Into<String>, deployment: impl Into<String>) -> Self {
        ResourcesCheck {
            workload: Workload::new(namespace.into(), deployment.into(), None),
            require: all_settings(),
        }
    }

    cluster_setters!();

    /// Requires only `settings`, among `requests.cpu`, `requests.memory`, `limits.cpu` and
    /// `limits.memory` (a team that sets no CPU limits on purpose leaves out `limits.cpu`).
    ///
    /// # Errors
    ///
    /// No setting, or an unknown one (`require` and what is wrong).
    pub fn require(mut self, settings: &[&str]) -> Result<Self, (String, String)> {
        if settings.is_empty() {
            return Err(("require".into(), "list at least one setting".into()));
        }
        if let Some(bad) = settings.iter().find(|r| !SETTINGS.contains(r)) {
            return Err((
                "require".into(),
                format!("unknown setting `{bad}`; known: {}", SETTINGS.join(", ")),
            ));
        }
        self.require = settings.iter().map(|s| (*s).to_owned()).collect();
        Ok(self)
    }

    pub(crate) fn from_params(p: ResourcesParams) -> Result<Self, (String, String)> {
        let workload = Workload::from_params(p.namespace, p.deployment, p.context)?;
        let settings: Vec<&str> = p.require.iter().map(String::as_str).collect();
        ResourcesCheck {
            workload,
            require: Vec::new(),
        }
        .require(&settings)
    }
}

/// The required settings `resources` lacks. A request left out where the limit is set is not
/// missing: the API server sets it to the limit in every pod.
fn missing(resources: Option<&ResourceRequirements>, require: &[String]) -> Vec<String> {
    let has = |map: Option<&BTreeMap<String, _>>, resource: &str| {
        map.is_some_and(|m| m.contains_key(resource))
    };
    let requests = resources.and_then(|r| r.requests.as_ref());
    let limits = resources.and_then(|r| r.limits.as_ref());
    require
        .iter()
        .filter(|setting| match setting.split_once('.') {
            Some(("requests", r)) => !has(requests, r) && !has(limits, r),
            Some((_, r)) => !has(limits, r),
            None => true,
        })
        .cloned()
        .collect()
}

#[async_trait]
impl Check for ResourcesCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let w = &self.workload;
        let deployment = match w.fetch().await {
            Ok((_, d)) => d,
            Err(r) => return r,
        };
        let containers = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        let lacking: BTreeMap<String, Vec<String>> = containers
            .iter()
            .map(|c| (c.name.clone(), missing(c.resources.as_ref(), &self.require)))
            .filter(|(_, m)| !m.is_empty())
            .collect();
        let result = if containers.is_empty() {
            CheckResult::error(format!("Deployment {} has no containers", w.name()))
        } else if lacking.is_empty() {
            CheckResult::pass(format!(
                "all {} containers of {} set {}",
                containers.len(),
                w.name(),
                self.require.join(", ")
            ))
        } else {
            let text: Vec<String> = lacking
                .iter()
                .map(|(c, m)| format!("`{c}` lacks {}", m.join(", ")))
                .collect();
            let first = lacking.keys().next().cloned().unwrap_or_default();
            CheckResult::fail(format!("{}: {}", w.name(), text.join("; ")))
                .hint(format!(
                    "set them in the pod template, e.g. `kubectl set resources deployment {} --namespace {} --containers {first} --requests cpu=100m,memory=128Mi --limits cpu=500m,memory=256Mi` (size the values for the service)",
                    w.deployment, w.namespace
                ))
        };
        w.evidence(
            result
                .evidence("missing", &lacking)
                .evidence(
                    "containers",
                    containers.iter().map(|c| &c.name).collect::<Vec<_>>(),
                )
                .evidence("required", &self.require),
        )
    }
}

/// How close to `maxReplicas` is close enough to warn.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Headroom {
    Replicas(u32),
    Percent(f64),
}

impl Headroom {
    /// In replicas, for an autoscaler with `max` replicas (a percentage is rounded up).
    fn replicas(self, max: i32) -> i32 {
        match self {
            Headroom::Replicas(n) => i32::try_from(n).unwrap_or(i32::MAX),
            // Replica counts are small; the product fits.
            #[allow(clippy::cast_possible_truncation)]
            Headroom::Percent(p) => (f64::from(max) * p / 100.0).ceil() as i32,
        }
    }

    fn parse(value: &serde_json::Value) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{value}` is not a headroom: give replicas (`2`) or a share of maxReplicas (`\"20%\"`)"
            )
        };
        match value {
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Headroom::Replicas)
                .ok_or_else(bad),
            serde_json::Value::String(s) => {
                let p: f64 = s
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse().ok())
                    .ok_or_else(bad)?;
                if (0.0..=100.0).contains(&p) {
                    Ok(Headroom::Percent(p))
                } else {
                    Err(format!("`{s}` must be between 0% and 100%"))
                }
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Headroom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Headroom::Replicas(n) => write!(f, "{n}"),
            Headroom::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The HorizontalPodAutoscaler that targets the Deployment is not at its `maxReplicas`: at the
/// maximum it fails (the service is already short of capacity, and a rollout's extra load has
/// nowhere to go); within `headroom` of it (replicas, or a share of `maxReplicas` like
/// `"20%"`; 1 replica by default) it warns. No autoscaler targeting the Deployment, or more
/// than one (the controller then refuses to scale), fails.
///
/// ```yaml
/// kubernetes_hpa: { namespace: prod, deployment: checkout, headroom: "20%" }
/// ```
#[derive(Debug, Clone)]
pub struct HpaCheck {
    workload: Workload,
    headroom: Headroom,
}

fn one_replica() -> serde_json::Value {
    1.into()
}

workload_params!(HpaParams {
    headroom: serde_json::Value = "one_replica",
});

impl HpaCheck {
    /// Checks the autoscaler of Deployment `deployment` in `namespace`, warning within one
    /// replica of its maximum.
    pub fn new(namespace: impl Into<String>, deployment: impl Into<String>) -> Self {
        HpaCheck {
            workload: Workload::new(namespace.into(), deployment.into(), None),
            headroom: Headroom::Replicas(1),
        }
    }

    /// Warns within `replicas` of the maximum.
    #[must_use]
    pub fn headroom(mut self, replicas: u32) -> Self {
        self.headroom = Headroom::Replicas(replicas);
        self
    }

    /// Warns within `percent` % of the maximum (rounded up to whole replicas; clamped to
    /// 0..=100).
    #[must_use]
    pub fn headroom_percent(mut self, percent: f64) -> Self {
        self.headroom = Headroom::Percent(percent.clamp(0.0, 100.0));
        self
    }

    cluster_setters!();

    pub(crate) fn from_params(p: HpaParams) -> Result<Self, (String, String)> {
        Ok(HpaCheck {
            workload: Workload::from_params(p.namespace, p.deployment, p.context)?,
            headroom: Headroom::parse(&p.headroom).map_err(|e| ("headroom".to_owned(), e))?,
        })
    }
}

/// Whether `hpa` scales Deployment `name`.
fn targets(hpa: &HorizontalPodAutoscaler, name: &str) -> bool {
    let target = &hpa.spec.as_ref().map(|s| &s.scale_target_ref);
    target.is_some_and(|t| {
        t.kind == "Deployment"
            && t.name == name
            && t.api_version
                .as_deref()
                .is_none_or(|v| v.starts_with("apps/"))
    })
}

#[async_trait]
impl Check for HpaCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let w = &self.workload;
        let (client, _) = match w.fetch().await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client, &w.namespace);
        let mut all = match api.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) => return w.api_error(e, "list", "horizontalpodautoscalers.autoscaling", ""),
        };
        all.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let found: Vec<&HorizontalPodAutoscaler> =
            all.iter().filter(|h| targets(h, &w.deployment)).collect();
        let names: Vec<String> = found
            .iter()
            .map(|h| h.metadata.name.clone().unwrap_or_default())
            .collect();
        let hpa = match found.as_slice() {
            [hpa] => *hpa,
            [] => {
                return w.evidence(
                    CheckResult::fail(format!(
                        "no HorizontalPodAutoscaler targets Deployment {}",
                        w.name()
                    ))
                    .hint(format!(
                        "create one (`kubectl autoscale deployment {} --namespace {} --min 2 --max 10 --cpu-percent 70`), or drop this check for a workload that is not autoscaled",
                        w.deployment, w.namespace
                    )),
                );
            }
            _ => {
                return w.evidence(
                    CheckResult::fail(format!(
                        "{} HorizontalPodAutoscalers target {} ({}): the controller refuses to scale it",
                        names.len(),
                        w.name(),
                        names.join(", ")
                    ))
                    .hint("keep one autoscaler per workload")
                    .evidence("hpas", &names),
                );
            }
        };
        let name = &names[0];
        let (min, max) = hpa
            .spec
            .as_ref()
            .map_or((None, 0), |s| (s.min_replicas, s.max_replicas));
        let status = hpa.status.as_ref();
        let current = status.and_then(|s| s.current_replicas);
        let desired = status.map(|s| s.desired_replicas);
        let evidence = |r: CheckResult| {
            w.evidence(
                r.evidence("hpa", name)
                    .evidence("min_replicas", min)
                    .evidence("max_replicas", max)
                    .evidence("current_replicas", current)
                    .evidence("desired_replicas", desired)
                    .evidence("headroom", self.headroom.to_string()),
            )
        };
        let Some(current) = current else {
            return evidence(
                CheckResult::error(format!(
                    "HorizontalPodAutoscaler `{name}` has not reported its replicas yet"
                ))
                .hint("check the autoscaler's events (`kubectl describe hpa`) and that metrics-server runs"),
            );
        };
        // The autoscaler may already have decided to scale up.
        let replicas = current.max(desired.unwrap_or(0));
        let room = self.headroom.replicas(max);
        let result = if replicas >= max {
            CheckResult::fail(format!(
                "HorizontalPodAutoscaler `{name}` is at its maximum: {replicas} of {max} replicas"
            ))
            .hint(format!(
                "the service has no capacity left to absorb a rollout: find why it scaled up, or raise maxReplicas (`kubectl patch hpa {name} --namespace {} -p '{{\"spec\":{{\"maxReplicas\":{}}}}}'`)",
                w.namespace,
                (max * 3 + 1) / 2
            ))
        } else if max - replicas <= room {
            CheckResult::warn(format!(
                "HorizontalPodAutoscaler `{name}` is close to its maximum: {replicas} of {max} replicas (headroom {})",
                self.headroom
            ))
            .hint("watch capacity during the rollout, or raise maxReplicas first")
        } else {
            CheckResult::pass(format!(
                "HorizontalPodAutoscaler `{name}`: {replicas} of {max} replicas"
            ))
        };
        evidence(result)
    }
}
