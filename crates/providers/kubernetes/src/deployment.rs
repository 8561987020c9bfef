//! [`DeploymentWorkload`]: one Deployment per revision, scaled with server-side apply.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cutover_core::{ProviderError, ReplicaStatus, RevisionId, Workload};
use cutover_kube::{Target, apply_as, classify};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};
use serde_json::json;

/// RBAC resource name of Deployments.
pub(crate) const DEPLOYMENTS: &str = "deployments.apps";
/// The field manager of `spec.replicas`: separate from the one of the template
/// ([`RollingUpdate`](crate::RollingUpdate)), so that neither apply removes the other's field.
pub const REPLICAS_FIELD_MANAGER: &str = "cutover-replicas";

/// Scales the Deployment of each revision and reports its replicas.
///
/// `status` honours `observedGeneration`: while the Deployment controller has not yet seen the
/// latest spec, `updated`, `ready` and `available` are reported as 0, so the revision counts as
/// progressing and never as ready on a stale status.
///
/// `scale` server-side applies `spec.replicas` as field manager `cutover-replicas`. If another manager
/// owns `spec.replicas` (a manifest applied with `replicas:` set, an HPA), the write fails with
/// a permanent error naming the manager conflict instead of fighting over it.
///
/// ```no_run
/// # async fn f(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_kubernetes::DeploymentWorkload;
/// let workload = DeploymentWorkload::new(client, "prod")
///     .revision("v1".parse()?, "web-v1")
///     .revision("v2".parse()?, "web-v2");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DeploymentWorkload {
    api: Api<Deployment>,
    namespace: String,
    deployments: BTreeMap<RevisionId, String>,
    name: String,
}

impl DeploymentWorkload {
    /// A workload over Deployments in `namespace`; add one per revision with
    /// [`revision`](Self::revision).
    pub fn new(client: Client, namespace: &str) -> Self {
        DeploymentWorkload {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            deployments: BTreeMap::new(),
            name: format!("kubernetes/deployments/{namespace}"),
        }
    }

    /// Runs `revision` as the Deployment called `deployment`.
    pub fn revision(mut self, revision: RevisionId, deployment: impl Into<String>) -> Self {
        self.deployments.insert(revision, deployment.into());
        self
    }

    /// The Deployment of `revision`.
    fn deployment(&self, revision: &RevisionId) -> Result<&str, ProviderError> {
        self.deployments
            .get(revision)
            .map(String::as_str)
            .ok_or_else(|| {
                ProviderError::permanent(format!(
                    "{}: no Deployment configured for revision `{revision}`",
                    self.name
                ))
            })
    }
}

/// Reads a Deployment; a missing one is a permanent error naming it.
pub(crate) async fn get_deployment(
    api: &Api<Deployment>,
    namespace: &str,
    name: &str,
) -> Result<Deployment, ProviderError> {
    let target = Target::new("get", DEPLOYMENTS, namespace, name);
    api.get(name).await.map_err(|e| classify(e, &target))
}

/// Sets `spec.replicas` of an existing Deployment by server-side apply.
pub(crate) async fn scale_deployment(
    api: &Api<Deployment>,
    namespace: &str,
    name: &str,
    replicas: u32,
) -> Result<(), ProviderError> {
    // Read first: an apply to a missing Deployment would try to create it.
    get_deployment(api, namespace, name).await?;
    let config = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": { "replicas": replicas },
    });
    let target = Target::new("patch", DEPLOYMENTS, namespace, name);
    apply_as(api, &target, &config, REPLICAS_FIELD_MANAGER)
        .await
        .map(drop)
}

/// The replica counts of a Deployment, zero while its status lags behind its spec.
pub(crate) fn replica_status(deployment: &Deployment) -> ReplicaStatus {
    let count = |n: Option<i32>| u32::try_from(n.unwrap_or(0)).unwrap_or(0);
    let desired = count(
        deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .or(Some(1)),
    );
    let Some(status) = deployment.status.as_ref() else {
        return ReplicaStatus {
            desired,
            ..ReplicaStatus::default()
        };
    };
    if !caught_up(deployment) {
        return ReplicaStatus {
            desired,
            ..ReplicaStatus::default()
        };
    }
    ReplicaStatus {
        desired,
        updated: count(status.updated_replicas),
        ready: count(status.ready_replicas),
        available: count(status.available_replicas),
    }
}

/// Whether the Deployment controller has seen the latest spec.
pub(crate) fn caught_up(deployment: &Deployment) -> bool {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let observed = deployment
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    observed >= generation
}

#[async_trait]
impl Workload for DeploymentWorkload {
    fn name(&self) -> &str {
        &self.name
    }

    async fn scale(&self, revision: &RevisionId, replicas: u32) -> Result<(), ProviderError> {
        let name = self.deployment(revision)?;
        scale_deployment(&self.api, &self.namespace, name, replicas).await
    }

    async fn status(&self, revision: &RevisionId) -> Result<ReplicaStatus, ProviderError> {
        let name = self.deployment(revision)?;
        let deployment = get_deployment(&self.api, &self.namespace, name).await?;
        Ok(replica_status(&deployment))
    }
}
