//! [`ReplicaRatioRouter`]: a canary without a mesh, by replica counts behind one Service.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cutover_core::{
    Granularity, ProviderError, RevisionId, RouterCapabilities, TrafficRouter, TrafficSplit,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};

use crate::deployment::{get_deployment, scale_deployment};
use cutover_kube::split_from_weights;

/// Approximates a split by replica counts: with `total` replicas across the revisions'
/// Deployments behind one Service, a revision with weight `w` gets `total × w` replicas, and a
/// Service balancing evenly over ready pods sends it about that share of requests.
///
/// The granularity it declares is the finest split `total` replicas can express exactly:
/// `10 000 / gcd(total, 10 000)` basis points (10 replicas: 10 %; 4 replicas: 25 %; 3 replicas:
/// all or nothing). The share is only as exact as the Service's load balancing, and only once
/// the new pods are ready: pair it with a health probe.
///
/// Reading back uses `spec.replicas` of the Deployments.
///
/// ```no_run
/// # fn f(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_kubernetes::ReplicaRatioRouter;
/// let router = ReplicaRatioRouter::new(client, "prod", 10)
///     .revision("v1".parse()?, "web-v1")
///     .revision("v2".parse()?, "web-v2");
/// assert_eq!(cutover_core::TrafficRouter::capabilities(&router).granularity.step(), 1000);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ReplicaRatioRouter {
    api: Api<Deployment>,
    namespace: String,
    total: u32,
    deployments: BTreeMap<RevisionId, String>,
    name: String,
}

impl ReplicaRatioRouter {
    /// A router spreading `total` replicas (at least 1) over Deployments in `namespace`.
    pub fn new(client: Client, namespace: &str, total: u32) -> Self {
        ReplicaRatioRouter {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            total: total.max(1),
            deployments: BTreeMap::new(),
            name: format!("kubernetes/replicas/{namespace}"),
        }
    }

    /// Runs `revision` as the Deployment `deployment`.
    pub fn revision(mut self, revision: RevisionId, deployment: impl Into<String>) -> Self {
        self.deployments.insert(revision, deployment.into());
        self
    }

    /// The replicas a weight (in basis points) gets.
    fn replicas(&self, basis_points: u16) -> u32 {
        self.total * u32::from(basis_points) / 10_000
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[async_trait]
impl TrafficRouter for ReplicaRatioRouter {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> RouterCapabilities {
        let step = 10_000 / gcd(self.total, 10_000);
        let step = u16::try_from(step).unwrap_or(10_000);
        RouterCapabilities::new(Granularity::new(step).unwrap_or(Granularity::ALL_OR_NOTHING))
    }

    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        let granularity = self.capabilities().granularity;
        if let Some((revision, weight)) = granularity.first_inexpressible(split) {
            return Err(ProviderError::permanent(format!(
                "{}: {weight} for `{revision}` is not a whole number of {} replicas",
                self.name, self.total
            )));
        }
        for (revision, _) in split.iter() {
            if !self.deployments.contains_key(revision) {
                return Err(ProviderError::permanent(format!(
                    "{}: no Deployment configured for revision `{revision}`",
                    self.name
                )));
            }
        }
        // Scale up before scaling down, so capacity never dips below `total`.
        let mut moves: Vec<(u32, &String)> = self
            .deployments
            .iter()
            .map(|(revision, name)| (self.replicas(split.weight(revision).basis_points()), name))
            .collect();
        moves.sort_by_key(|(replicas, _)| std::cmp::Reverse(*replicas));
        for (replicas, name) in moves {
            scale_deployment(&self.api, &self.namespace, name, replicas).await?;
        }
        Ok(())
    }

    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        let mut weights = Vec::new();
        for (revision, name) in &self.deployments {
            let deployment = get_deployment(&self.api, &self.namespace, name).await?;
            let replicas = deployment.spec.and_then(|s| s.replicas).unwrap_or(1);
            weights.push((revision.clone(), i64::from(replicas)));
        }
        Ok(split_from_weights(&weights))
    }
}
