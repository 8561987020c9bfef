//! Rollouts as data: what is submitted to the fleet and stored until a worker runs it.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use cutover_core::{
    Analysis, AnalysisContext, AnalysisResult, Granularity, Health, HealthProbe, MetricQuery,
    MetricSource, Plan, ProviderError, ReplicaStatus, RevisionId, Revisions, Rollout, RolloutId,
    RouterCapabilities, Samples, TrafficRouter, TrafficSplit, Verdict, Workload,
};
use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// A rollout as data: its id, revisions and plan, and the names of the providers it uses.
/// Workers offer providers by name ([`WorkerBuilder::router`](crate::WorkerBuilder::router),
/// ...); a worker runs a spec only if it offers every provider the spec names.
///
/// ```
/// use cutover_fleet::RolloutSpec;
/// let spec = RolloutSpec::from_yaml(r#"
/// id: checkout-v42
/// revisions: { stable: v41, candidate: v42 }
/// plan:
///   strategy: { canary: { steps: [ { set_weight: 10 }, { analysis: { name: errors } }, { set_weight: 50 } ] } }
/// providers:
///   routers: [edge-proxy]
///   analyses: { errors: prom-errors }
/// "#)?;
/// assert_eq!(spec.providers.required(), ["analysis:prom-errors", "router:edge-proxy"]);
///
/// let err = RolloutSpec::from_yaml(r#"
/// id: checkout-v43
/// revisions: { stable: v42, candidate: v43 }
/// plan: { strategy: { canary: { steps: [ { set_weight: 150 } ] } } }
/// providers: { routers: [edge-proxy] }
/// "#).unwrap_err();
/// assert_eq!(err.path(), Some("plan.strategy.canary.steps[0].set_weight"));
/// # Ok::<(), cutover_fleet::SpecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// The rollout's id: the key of its state, log and inbox.
    pub id: RolloutId,
    /// The stable revision and the candidate.
    pub revisions: Revisions,
    /// The plan.
    pub plan: Plan,
    /// The providers it uses, by name.
    pub providers: ProviderNames,
    /// Settings handed to every provider factory for this rollout (which service, which
    /// listener...); free-form JSON, `null` by default.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub params: serde_json::Value,
}

/// The providers a spec uses, by the names workers offer them under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderNames {
    /// Routers; every split goes to each of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routers: Vec<String>,
    /// Health probes of the candidate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<String>,
    /// The workload that scales revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Metric sources, by the name the plan's analysis templates use -> the provider's name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metric_sources: BTreeMap<String, String>,
    /// Analyses written in code, by the name the plan's steps use -> the provider's name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub analyses: BTreeMap<String, String>,
}

/// The kinds of provider a worker offers and a spec names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ProviderKind {
    /// A [`TrafficRouter`].
    Router,
    /// A [`HealthProbe`].
    Probe,
    /// A [`Workload`].
    Workload,
    /// A [`MetricSource`].
    MetricSource,
    /// An [`Analysis`].
    Analysis,
}

impl ProviderKind {
    /// `router`, `probe`, `workload`, `metric_source` or `analysis`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Router => "router",
            ProviderKind::Probe => "probe",
            ProviderKind::Workload => "workload",
            ProviderKind::MetricSource => "metric_source",
            ProviderKind::Analysis => "analysis",
        }
    }

    /// The key a worker offers and a spec requires: `router:edge-proxy`.
    pub fn key(self, name: &str) -> String {
        format!("{}:{name}", self.as_str())
    }
}

impl ProviderNames {
    /// Every provider named, as `kind:name` keys, sorted and without repeats.
    pub fn required(&self) -> Vec<String> {
        let mut keys = BTreeSet::new();
        for (kind, name) in self.named() {
            keys.insert(kind.key(name));
        }
        keys.into_iter().collect()
    }

    /// Every provider named, with its kind.
    pub fn named(&self) -> impl Iterator<Item = (ProviderKind, &str)> {
        let routers = self
            .routers
            .iter()
            .map(|n| (ProviderKind::Router, n.as_str()));
        let probes = self
            .probes
            .iter()
            .map(|n| (ProviderKind::Probe, n.as_str()));
        let workload = self
            .workload
            .iter()
            .map(|n| (ProviderKind::Workload, n.as_str()));
        let sources = self
            .metric_sources
            .values()
            .map(|n| (ProviderKind::MetricSource, n.as_str()));
        let analyses = self
            .analyses
            .values()
            .map(|n| (ProviderKind::Analysis, n.as_str()));
        routers
            .chain(probes)
            .chain(workload)
            .chain(sources)
            .chain(analyses)
    }

    fn check_names(&self) -> Result<(), SpecError> {
        let lists = [("routers", &self.routers), ("probes", &self.probes)];
        for (field, names) in lists {
            let mut seen = BTreeSet::new();
            for (i, name) in names.iter().enumerate() {
                check_name(&format!("providers.{field}[{i}]"), name)?;
                if !seen.insert(name) {
                    return Err(SpecError::invalid(
                        format!("providers.{field}[{i}]"),
                        format!("`{name}` is named twice"),
                    ));
                }
            }
        }
        if let Some(name) = &self.workload {
            check_name("providers.workload", name)?;
        }
        for (field, map) in [
            ("metric_sources", &self.metric_sources),
            ("analyses", &self.analyses),
        ] {
            for (key, name) in map {
                check_name(&format!("providers.{field}.{key}"), name)?;
            }
        }
        Ok(())
    }
}

fn check_name(path: &str, name: &str) -> Result<(), SpecError> {
    if name.trim().is_empty() {
        return Err(SpecError::invalid(
            path,
            "a provider name must not be empty",
        ));
    }
    if name.len() > 200 || name.chars().any(char::is_control) {
        return Err(SpecError::invalid(
            path,
            "a provider name has at most 200 characters and no control characters",
        ));
    }
    Ok(())
}

impl RolloutSpec {
    /// A spec; check it with [`validate`](Self::validate) (submitting does).
    pub fn new(id: RolloutId, revisions: Revisions, plan: Plan, providers: ProviderNames) -> Self {
        RolloutSpec {
            id,
            revisions,
            plan,
            providers,
            params: serde_json::Value::Null,
        }
    }

    /// Sets the parameters handed to the provider factories.
    pub fn with_params(mut self, params: serde_json::Value) -> Self {
        self.params = params;
        self
    }

    /// Reads and checks a spec written in JSON.
    pub fn from_json(text: &str) -> Result<Self, SpecError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SpecError::Syntax {
                format: "JSON",
                message: e.to_string(),
            })?;
        Self::from_value(value)
    }

    /// Reads and checks a spec written in YAML.
    pub fn from_yaml(text: &str) -> Result<Self, SpecError> {
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| SpecError::Syntax {
                format: "YAML",
                message: e.to_string(),
            })?;
        Self::from_value(value)
    }

    /// Reads and checks a spec from a JSON value.
    pub fn from_value(value: serde_json::Value) -> Result<Self, SpecError> {
        let spec: RolloutSpec = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { "spec".to_owned() } else { path };
            SpecError::invalid(path, e.inner().to_string())
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks everything a worker would check before running it, except what only the real
    /// providers can tell (a router's granularity): the plan, and that the providers named can
    /// carry it out (routers for a canary, a workload for a rolling update, every analysis
    /// and metric source the plan refers to).
    pub fn validate(&self) -> Result<(), SpecError> {
        self.plan.validate().map_err(|e| SpecError::plan(&e))?;
        self.providers.check_names()?;
        let mut builder = Rollout::builder(self.id.as_str(), self.plan.clone()).revisions(
            self.revisions.stable.as_str(),
            self.revisions.candidate.as_str(),
        );
        for _ in &self.providers.routers {
            builder = builder.router(Stand);
        }
        for _ in &self.providers.probes {
            builder = builder.health_probe(Stand);
        }
        if self.providers.workload.is_some() {
            builder = builder.workload(Stand);
        }
        for name in self.providers.metric_sources.keys() {
            builder = builder.metric_source(name.clone(), Stand);
        }
        for name in self.providers.analyses.keys() {
            builder = builder.analysis(name.clone(), Stand);
        }
        builder.build().map(drop).map_err(|e| SpecError::build(&e))
    }
}

/// A stand-in for every provider a spec names, able to do anything: checking a spec against it
/// finds what the names are missing, not what a real provider cannot do.
#[derive(Debug)]
struct Stand;

#[async_trait]
impl TrafficRouter for Stand {
    fn name(&self) -> &'static str {
        "stand-in"
    }
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(Granularity::BASIS_POINT)
            .with_header_routes()
            .with_cookie_routes()
            .with_mirroring()
            .with_sticky_sessions()
    }
    async fn set_split(&self, _: &TrafficSplit) -> Result<(), ProviderError> {
        Err(ProviderError::permanent("a stand-in for checking specs"))
    }
    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        Ok(None)
    }
}

#[async_trait]
impl HealthProbe for Stand {
    fn name(&self) -> &'static str {
        "stand-in"
    }
    async fn check(&self, _: &RevisionId) -> Result<Health, ProviderError> {
        Err(ProviderError::permanent("a stand-in for checking specs"))
    }
}

#[async_trait]
impl Workload for Stand {
    fn name(&self) -> &'static str {
        "stand-in"
    }
    async fn scale(&self, _: &RevisionId, _: u32) -> Result<(), ProviderError> {
        Err(ProviderError::permanent("a stand-in for checking specs"))
    }
    async fn status(&self, _: &RevisionId) -> Result<ReplicaStatus, ProviderError> {
        Err(ProviderError::permanent("a stand-in for checking specs"))
    }
}

#[async_trait]
impl MetricSource for Stand {
    fn name(&self) -> &'static str {
        "stand-in"
    }
    async fn query(&self, _: &MetricQuery) -> Result<Samples, ProviderError> {
        Ok(Samples::empty())
    }
}

#[async_trait]
impl Analysis for Stand {
    async fn evaluate(&self, _: &AnalysisContext) -> Result<AnalysisResult, ProviderError> {
        Ok(AnalysisResult::new(Verdict::Inconclusive, "a stand-in"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(plan: &str, providers: &str) -> Result<RolloutSpec, SpecError> {
        RolloutSpec::from_json(&format!(
            r#"{{"id": "r1", "revisions": {{"stable": "v1", "candidate": "v2"}},
                 "plan": {plan}, "providers": {providers}}}"#
        ))
    }

    #[test]
    fn an_unknown_strategy_names_the_field() {
        let err = spec(
            r#"{"strategy": {"canery": {"steps": []}}}"#,
            r#"{"routers": ["edge"]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), Some("plan.strategy"), "{err}");
        assert!(err.to_string().contains("canery"), "{err}");
    }

    #[test]
    fn weights_out_of_range_are_refused() {
        let err = spec(
            r#"{"strategy": {"canary": {"steps": [{"set_weight": 101}]}}}"#,
            r#"{"routers": ["edge"]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.path(),
            Some("plan.strategy.canary.steps[0].set_weight"),
            "{err}"
        );
    }

    #[test]
    fn a_canary_without_a_router_is_refused() {
        let err = spec(
            r#"{"strategy": {"canary": {"steps": [{"set_weight": 10}]}}}"#,
            r"{}",
        )
        .unwrap_err();
        assert_eq!(err.path(), Some("providers.routers"), "{err}");
    }

    #[test]
    fn an_analysis_without_a_provider_is_refused() {
        let err = spec(
            r#"{"strategy": {"canary": {"steps": [{"set_weight": 10}, {"analysis": {"name": "errors"}}]}}}"#,
            r#"{"routers": ["edge"]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), Some("providers.analyses"), "{err}");
        assert!(err.to_string().contains("errors"), "{err}");
    }

    #[test]
    fn unknown_fields_and_empty_names_are_refused() {
        let err = spec(
            r#"{"strategy": {"canary": {"steps": [{"set_weight": 10}]}}}"#,
            r#"{"router": ["edge"]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), Some("providers.router"), "{err}");
        let err = spec(
            r#"{"strategy": {"canary": {"steps": [{"set_weight": 10}]}}}"#,
            r#"{"routers": [" "]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), Some("providers.routers[0]"), "{err}");
    }

    #[test]
    fn a_spec_round_trips_through_json() {
        let spec = spec(
            r#"{"strategy": {"canary": {"steps": [{"set_weight": 10}, {"analysis": {"name": "errors"}}]}}}"#,
            r#"{"routers": ["edge"], "analyses": {"errors": "scripted"}}"#,
        )
        .unwrap();
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(RolloutSpec::from_json(&text).unwrap(), spec);
        assert_eq!(
            spec.providers.required(),
            ["analysis:scripted", "router:edge"]
        );
    }
}
