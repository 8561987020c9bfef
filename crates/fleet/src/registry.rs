//! The providers a worker offers, by name, and how it builds a rollout from a spec with them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cutover_core::{
    Analysis, BuildError, HealthProbe, MetricSource, ProviderError, Revisions, Rollout, RolloutId,
    TrafficRouter, Workload,
};

use crate::fence::{Fence, FenceToken, FencedStore};
use crate::fenced::Fenced;
use crate::spec::{ProviderKind, RolloutSpec};

/// What a provider factory knows about the rollout it builds a provider for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProviderContext {
    /// The rollout.
    pub rollout: RolloutId,
    /// Its revisions.
    pub revisions: Revisions,
    /// The spec's [`params`](RolloutSpec::params).
    pub params: serde_json::Value,
    /// The lease this worker holds on the rollout. A provider whose backend can refuse stale
    /// writers (a version column, a conditional write) should send it along and have a lower
    /// epoch than the highest seen refused.
    pub fence: FenceToken,
}

/// Builds a provider of type `T` for one rollout.
pub type Factory<T> = Arc<dyn Fn(&ProviderContext) -> Result<Arc<T>, ProviderError> + Send + Sync>;

/// The factories a worker offers, by kind and name.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    pub(crate) routers: BTreeMap<String, Factory<dyn TrafficRouter>>,
    pub(crate) probes: BTreeMap<String, Factory<dyn HealthProbe>>,
    pub(crate) workloads: BTreeMap<String, Factory<dyn Workload>>,
    pub(crate) metric_sources: BTreeMap<String, Factory<dyn MetricSource>>,
    pub(crate) analyses: BTreeMap<String, Factory<dyn Analysis>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.offered()).finish()
    }
}

/// Why a claimed rollout could not be built.
#[derive(Debug)]
pub(crate) enum BuildFailure {
    /// A factory failed; maybe a later attempt succeeds.
    Provider { key: String, error: ProviderError },
    /// The spec names a provider this worker does not offer (claims filter these out).
    Missing(String),
    /// The providers cannot carry out the plan: no attempt will succeed.
    Build(BuildError),
}

impl fmt::Display for BuildFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildFailure::Provider { key, error } => {
                write!(f, "building provider {key} failed: {}", error.chain())
            }
            BuildFailure::Missing(key) => write!(f, "this worker does not offer {key}"),
            BuildFailure::Build(e) => write!(f, "the providers cannot carry out the plan: {e}"),
        }
    }
}

fn make<T: ?Sized>(
    factories: &BTreeMap<String, Factory<T>>,
    kind: ProviderKind,
    name: &str,
    ctx: &ProviderContext,
    fence: &Arc<Fence>,
) -> Result<Fenced<T>, BuildFailure> {
    let key = kind.key(name);
    let factory = factories
        .get(name)
        .ok_or_else(|| BuildFailure::Missing(key.clone()))?;
    let provider = factory(ctx).map_err(|error| BuildFailure::Provider { key, error })?;
    Ok(Fenced::new(provider, fence.clone()))
}

impl Registry {
    /// Every provider offered, as `kind:name` keys, sorted.
    pub(crate) fn offered(&self) -> Vec<String> {
        let mut keys: Vec<String> = [
            (
                ProviderKind::Router,
                self.routers.keys().collect::<Vec<_>>(),
            ),
            (ProviderKind::Probe, self.probes.keys().collect()),
            (ProviderKind::Workload, self.workloads.keys().collect()),
            (
                ProviderKind::MetricSource,
                self.metric_sources.keys().collect(),
            ),
            (ProviderKind::Analysis, self.analyses.keys().collect()),
        ]
        .into_iter()
        .flat_map(|(kind, names)| names.into_iter().map(move |n| kind.key(n)))
        .collect();
        keys.sort();
        keys
    }

    /// The rollout of `spec`, run by engine `owner` on `store`, every provider behind `fence`.
    pub(crate) fn build(
        &self,
        spec: &RolloutSpec,
        fence: &Arc<Fence>,
        store: FencedStore,
        lease_ttl: Duration,
    ) -> Result<Rollout, BuildFailure> {
        let ctx = ProviderContext {
            rollout: spec.id.clone(),
            revisions: spec.revisions.clone(),
            params: spec.params.clone(),
            fence: fence.token().clone(),
        };
        let names = &spec.providers;
        let mut builder = Rollout::builder(spec.id.as_str(), spec.plan.clone())
            .revisions(
                spec.revisions.stable.as_str(),
                spec.revisions.candidate.as_str(),
            )
            .engine_id(fence.token().owner.clone())
            .lease_ttl(lease_ttl)
            .state_store(store);
        for name in &names.routers {
            builder = builder.router(make(
                &self.routers,
                ProviderKind::Router,
                name,
                &ctx,
                fence,
            )?);
        }
        for name in &names.probes {
            builder =
                builder.health_probe(make(&self.probes, ProviderKind::Probe, name, &ctx, fence)?);
        }
        if let Some(name) = &names.workload {
            builder = builder.workload(make(
                &self.workloads,
                ProviderKind::Workload,
                name,
                &ctx,
                fence,
            )?);
        }
        for (as_named, name) in &names.metric_sources {
            let source = make(
                &self.metric_sources,
                ProviderKind::MetricSource,
                name,
                &ctx,
                fence,
            )?;
            builder = builder.metric_source(as_named.clone(), source);
        }
        for (as_named, name) in &names.analyses {
            let analysis = make(&self.analyses, ProviderKind::Analysis, name, &ctx, fence)?;
            builder = builder.analysis(as_named.clone(), analysis);
        }
        builder.build().map_err(BuildFailure::Build)
    }
}
