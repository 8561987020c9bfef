//! A Rollout's spec, checked, and the cutover rollout it builds: plan, revisions and the
//! providers for its Deployments, traffic and metrics.

use std::sync::Arc;

use cutover::istio::{Destination, IstioRouter};
use cutover::kubernetes::k8s_openapi::api::apps::v1::Deployment;
use cutover::kubernetes::kube::{Api, Client};
use cutover::kubernetes::{
    DeploymentWorkload, HttpRouteRouter, PodProbe, ReplicaRatioRouter, ServiceSelectorRouter,
};
use cutover::prometheus::{PrometheusClient, PrometheusSource};
use cutover::{Plan, RevisionId, RolloutBuilder, RolloutId, StateStore};

use crate::Error;
use crate::crd::{RevisionRef, RolloutSpec};

/// A spec that passed every check that needs no cluster.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The plan.
    pub plan: Plan,
    /// The stable revision.
    pub stable: RevisionId,
    /// The candidate.
    pub candidate: RevisionId,
    /// The id of the rollout in the store: `<name>-<candidate revision>`.
    pub id: RolloutId,
    spec: RolloutSpec,
}

/// Checks `spec` of the Rollout `name`; the error names the field at fault.
pub fn check(name: &str, spec: &RolloutSpec) -> Result<Checked, Error> {
    let invalid = |field: &str, why: String| Error::InvalidSpec(format!("spec.{field}: {why}"));
    let plan =
        Plan::from_json(&spec.plan.to_string()).map_err(|e| invalid("plan", e.to_string()))?;
    let revision = |field: &str, r: &RevisionRef| {
        RevisionId::new(r.revision.clone()).map_err(|e| invalid(field, e.to_string()))
    };
    let stable = revision("stable.revision", &spec.stable)?;
    let candidate = revision("candidate.revision", &spec.candidate)?;
    if stable == candidate {
        return Err(invalid(
            "candidate.revision",
            format!("is `{candidate}`, the stable revision too"),
        ));
    }
    let t = &spec.traffic;
    let set = [
        t.replicas.is_some(),
        t.service.is_some(),
        t.http_route.is_some(),
        t.istio.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if set != 1 {
        return Err(invalid(
            "traffic",
            format!("set exactly one of replicas, service, httpRoute, istio ({set} set)"),
        ));
    }
    let id = RolloutId::new(format!("{name}-{candidate}")).map_err(|e| {
        invalid(
            "candidate.revision",
            format!("makes an invalid rollout id: {e}"),
        )
    })?;
    Ok(Checked {
        plan,
        stable,
        candidate,
        id,
        spec: spec.clone(),
    })
}

impl Checked {
    /// The rollout, with its providers, on `store`, run by `engine`.
    pub async fn builder(
        &self,
        client: &Client,
        namespace: &str,
        store: impl StateStore + 'static,
        engine: &str,
    ) -> Result<RolloutBuilder, Error> {
        let spec = &self.spec;
        let mut builder = cutover::Rollout::builder(self.id.as_str(), self.plan.clone())
            .revisions(self.stable.as_str(), self.candidate.as_str())
            .state_store(store)
            .engine_id(engine);
        let t = &spec.traffic;
        if let Some(r) = &t.replicas {
            builder = builder.router(
                ReplicaRatioRouter::new(client.clone(), namespace, r.total)
                    .revision(self.stable.clone(), spec.stable.deployment.clone())
                    .revision(self.candidate.clone(), spec.candidate.deployment.clone()),
            );
        }
        if let Some(s) = &t.service {
            builder = builder.router(ServiceSelectorRouter::new(
                client.clone(),
                namespace,
                &s.name,
                &s.label,
            ));
        }
        if let Some(h) = &t.http_route {
            builder = builder.router(
                HttpRouteRouter::new(client.clone(), namespace, &h.name, &h.rule)
                    .backend(self.stable.clone(), &h.stable_service, h.port)
                    .backend(self.candidate.clone(), &h.candidate_service, h.port),
            );
        }
        if let Some(i) = &t.istio {
            builder = builder.router(
                IstioRouter::new(client.clone(), namespace, &i.virtual_service, &i.route)
                    .destination(
                        self.stable.clone(),
                        Destination::subset(i.host.clone(), i.stable_subset.clone()),
                    )
                    .destination(
                        self.candidate.clone(),
                        Destination::subset(i.host.clone(), i.candidate_subset.clone()),
                    ),
            );
        }
        if spec.scale_deployments {
            builder = builder.workload(
                DeploymentWorkload::new(client.clone(), namespace)
                    .revision(self.stable.clone(), spec.stable.deployment.clone())
                    .revision(self.candidate.clone(), spec.candidate.deployment.clone()),
            );
        }
        let mut probe = PodProbe::new(client.clone(), namespace);
        for (revision, r) in [
            (&self.stable, &spec.stable),
            (&self.candidate, &spec.candidate),
        ] {
            let selector = match &r.pod_selector {
                Some(s) => s.clone(),
                None => selector_of(client, namespace, &r.deployment).await?,
            };
            probe = probe.revision(revision.clone(), selector);
        }
        builder = builder.health_probe(probe);
        for (name, p) in &spec.metrics {
            let prometheus = PrometheusClient::builder(p.address.clone())
                .build()
                .map_err(|e| {
                    Error::InvalidSpec(format!("spec.metrics.{name}.address: {}", e.chain()))
                })?;
            let mut source = PrometheusSource::new(name, prometheus);
            for (k, v) in &p.args {
                source = source.arg(k.clone(), v.clone());
            }
            builder = builder.metric_source(name.clone(), source);
        }
        Ok(builder)
    }
}

/// The label selector of a Deployment's pods (`spec.selector.matchLabels`).
async fn selector_of(client: &Client, namespace: &str, name: &str) -> Result<String, Error> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| Error::Kube(Arc::new(e)))?
        .ok_or_else(|| Error::Missing(format!("Deployment `{name}` does not exist")))?;
    let labels = deployment
        .spec
        .and_then(|s| s.selector.match_labels)
        .unwrap_or_default();
    if labels.is_empty() {
        return Err(Error::InvalidSpec(format!(
            "Deployment `{name}` selects its pods by expressions; give spec.*.podSelector"
        )));
    }
    Ok(labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(","))
}
