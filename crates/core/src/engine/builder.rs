use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::{BuildError, Ownership, Providers, Rollout};
use crate::analysis::{
    ConditionsAnalysis, JudgeAnalysis, ProportionsAnalysis, SequentialAnalysis, Sources,
    ThresholdAnalysis,
};
use crate::plan::{AnalysisTemplate, CanaryStep, Strategy};
use crate::planner::{GateInfo, MigrationInfo, Setup};
use crate::{
    Analysis, Clock, Gate, GateStage, HeaderRoute, HealthProbe, MemoryStateStore, MetricSource,
    MigrationStep, Mirror, Plan, RetryPolicy, Revisions, RolloutId, StateStore, TrafficRouter,
    Weight, Workload,
};

/// Assembles a [`Rollout`]: the plan, the revisions and the providers. [`build`](Self::build)
/// checks that the providers can carry out the plan.
///
/// ```
/// use cutover_core::{CanaryStep, Canary, Rollout, Granularity, RouterCapabilities};
/// # #[derive(Debug)] struct MyRouter;
/// # #[async_trait::async_trait]
/// # impl cutover_core::TrafficRouter for MyRouter {
/// #     fn name(&self) -> &str { "mine" }
/// #     fn capabilities(&self) -> RouterCapabilities { RouterCapabilities::new(Granularity::PERCENT) }
/// #     async fn set_split(&self, _: &cutover_core::TrafficSplit) -> Result<(), cutover_core::ProviderError> { Ok(()) }
/// #     async fn current_split(&self) -> Result<Option<cutover_core::TrafficSplit>, cutover_core::ProviderError> { Ok(None) }
/// # }
/// let canary = Canary::new([CanaryStep::set_weight(10)?, CanaryStep::set_weight(50)?]);
/// let rollout = Rollout::builder("checkout", canary)
///     .revisions("v1", "v2")
///     .router(MyRouter)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct RolloutBuilder {
    id: String,
    plan: Plan,
    revisions: Option<(String, String)>,
    routers: Vec<Arc<dyn TrafficRouter>>,
    probes: Vec<Arc<dyn HealthProbe>>,
    workloads: Vec<Arc<dyn Workload>>,
    sources: BTreeMap<String, Arc<dyn MetricSource>>,
    analyses: BTreeMap<String, Arc<dyn Analysis>>,
    migrations: Vec<Arc<dyn MigrationStep>>,
    gates: Vec<(GateStage, Arc<dyn Gate>)>,
    store: Option<Arc<dyn StateStore>>,
    clock: Option<Arc<dyn Clock>>,
    retry: Option<RetryPolicy>,
    engine_id: Option<String>,
    lease_ttl: Duration,
    takeover: Option<(String, String)>,
    event_capacity: usize,
    duplicate: Option<BuildError>,
}

/// How long an owner lease lasts without renewal, unless set with
/// [`RolloutBuilder::lease_ttl`].
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// How many events a subscriber may fall behind before it misses some, unless set with
/// [`RolloutBuilder::event_capacity`].
pub const DEFAULT_EVENT_CAPACITY: usize = 64;

impl RolloutBuilder {
    pub(super) fn new(id: impl Into<String>, plan: Plan) -> Self {
        RolloutBuilder {
            id: id.into(),
            plan,
            revisions: None,
            routers: Vec::new(),
            probes: Vec::new(),
            workloads: Vec::new(),
            sources: BTreeMap::new(),
            analyses: BTreeMap::new(),
            migrations: Vec::new(),
            gates: Vec::new(),
            store: None,
            clock: None,
            retry: None,
            engine_id: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            takeover: None,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            duplicate: None,
        }
    }

    fn duplicate(&mut self, what: &'static str, name: impl Into<String>) {
        self.duplicate.get_or_insert(BuildError::Duplicate {
            what,
            name: name.into(),
        });
    }

    /// The stable revision and the candidate. Required.
    pub fn revisions(mut self, stable: impl Into<String>, candidate: impl Into<String>) -> Self {
        self.revisions = Some((stable.into(), candidate.into()));
        self
    }

    /// Adds a router. Every split goes to every router; a rollback returns all of them to stable.
    pub fn router(mut self, router: impl TrafficRouter + 'static) -> Self {
        self.routers.push(Arc::new(router));
        self
    }

    /// Adds a health probe for the candidate. With several, all must report ready.
    pub fn health_probe(mut self, probe: impl HealthProbe + 'static) -> Self {
        self.probes.push(Arc::new(probe));
        self
    }

    /// Sets the workload that scales revisions (at most one).
    pub fn workload(mut self, workload: impl Workload + 'static) -> Self {
        if !self.workloads.is_empty() {
            let name = workload.name().to_owned();
            self.duplicate("workload", name);
        }
        self.workloads.push(Arc::new(workload));
        self
    }

    /// Registers a metric source under the name the plan's analyses use for it.
    pub fn metric_source(
        mut self,
        name: impl Into<String>,
        source: impl MetricSource + 'static,
    ) -> Self {
        let name = name.into();
        if self.sources.contains_key(&name) {
            self.duplicate("metric source", name.clone());
        }
        self.sources.insert(name, Arc::new(source));
        self
    }

    /// Registers an analysis written in Rust under the name the plan's steps use for it.
    pub fn analysis(mut self, name: impl Into<String>, analysis: impl Analysis + 'static) -> Self {
        let name = name.into();
        if self.analyses.contains_key(&name) {
            self.duplicate("analysis", name.clone());
        }
        self.analyses.insert(name, Arc::new(analysis));
        self
    }

    /// Adds a migration step. Expand steps run in the order added, before any traffic moves;
    /// contract steps run in the order added, after promotion and the bake time.
    pub fn migration(mut self, step: impl MigrationStep + 'static) -> Self {
        if self.migrations.iter().any(|m| m.id() == step.id()) {
            let id = step.id().to_owned();
            self.duplicate("migration", id);
        }
        self.migrations.push(Arc::new(step));
        self
    }

    /// Adds a gate at `stage`. Gates of a stage are checked in the order added.
    pub fn gate(mut self, stage: GateStage, gate: impl Gate + 'static) -> Self {
        if self.gates.iter().any(|(_, g)| g.name() == gate.name()) {
            let name = gate.name().to_owned();
            self.duplicate("gate", name);
        }
        self.gates.push((stage, Arc::new(gate)));
        self
    }

    /// Sets where state, the decision log and the command inbox are kept. Defaults to a
    /// [`MemoryStateStore`] of this rollout alone, reachable only through
    /// [`Rollout::handle`](crate::Rollout::handle).
    pub fn state_store(mut self, store: impl StateStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Sets the wall clock for timestamps. Defaults to a [`TokioClock`](crate::TokioClock)
    /// created when the rollout starts running.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Overrides the plan's retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Names this engine in records (defaults to a generated id).
    pub fn engine_id(mut self, id: impl Into<String>) -> Self {
        self.engine_id = Some(id.into());
        self
    }

    /// How long the owner lease lasts without renewal, for stores whose leases expire (file,
    /// ConfigMap): another engine can take the rollout over this long after this one died.
    /// The engine renews it every third of that. Default 15 s; at least 1 s.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// Takes the rollout over even if another engine holds a live lease on it (that engine
    /// stops at its next save or renewal). The takeover is recorded with who and why.
    pub fn take_over(mut self, by: impl Into<String>, reason: impl Into<String>) -> Self {
        self.takeover = Some((by.into(), reason.into()));
        self
    }

    /// How many events a [subscriber](crate::Rollout::subscribe) may fall behind before it
    /// misses some (default 64, at least 1). The buffer exists only once someone subscribes.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Checks the plan against the providers and builds the rollout.
    pub fn build(mut self) -> Result<Rollout, BuildError> {
        if let Some(err) = self.duplicate.take() {
            return Err(err);
        }
        let id = RolloutId::new(self.id.clone())?;
        let (stable, candidate) = self.revisions.clone().ok_or(BuildError::MissingRevisions)?;
        let revisions = Revisions::new(stable, candidate)?;
        if let Some(retry) = self.retry {
            self.plan.retry = retry;
        }
        self.plan.validate()?;
        self.check_providers()?;
        let (analyses, sequential) = self.resolve_analyses()?;

        let setup = Setup {
            plan: self.plan.clone(),
            revisions,
            has_routers: !self.routers.is_empty(),
            has_workload: !self.workloads.is_empty(),
            has_probe: !self.probes.is_empty(),
            migrations: self
                .migrations
                .iter()
                .map(|m| MigrationInfo {
                    id: m.id().to_owned(),
                    phase: m.phase(),
                    reversible: m.reversible(),
                })
                .collect(),
            gates: self
                .gates
                .iter()
                .map(|(stage, g)| GateInfo {
                    name: g.name().to_owned(),
                    stage: *stage,
                    poll_interval: g.poll_interval(),
                    timeout: g.timeout(),
                })
                .collect(),
        };
        let private_store = self.store.is_none();
        Ok(Rollout {
            id,
            setup: Arc::new(setup),
            providers: Providers {
                routers: self.routers,
                probes: self.probes,
                workload: self.workloads.pop(),
                analyses,
                sequential,
                migrations: self.migrations,
                gates: self.gates.into_iter().map(|(_, g)| g).collect(),
                store: self
                    .store
                    .unwrap_or_else(|| Arc::new(MemoryStateStore::new())),
            },
            clock: self.clock,
            ownership: Ownership {
                engine_id: self.engine_id,
                lease_ttl: self.lease_ttl,
                takeover: self.takeover,
                private_store,
            },
            events: OnceLock::new(),
            event_capacity: self.event_capacity,
        })
    }

    /// Checks that the routers and the workload can carry out every part of the plan.
    fn check_providers(&self) -> Result<(), BuildError> {
        let strategy = &self.plan.strategy;
        let needs_router = !matches!(strategy, Strategy::Rolling(_));
        if needs_router && self.routers.is_empty() {
            return Err(BuildError::NoRouter {
                strategy: strategy.kind(),
            });
        }
        if !needs_router && !self.routers.is_empty() {
            return Err(BuildError::RollingWithRouter);
        }
        let has_workload = !self.workloads.is_empty();
        let need_workload = |what: String| {
            if has_workload {
                Ok(())
            } else {
                Err(BuildError::MissingWorkload { what })
            }
        };
        let mut weights: Vec<(String, Weight)> = Vec::new();
        let mut routes: Vec<(String, &HeaderRoute)> = Vec::new();
        let mut mirrors: Vec<(String, &Mirror)> = Vec::new();
        match strategy {
            Strategy::Canary(c) => {
                for (i, step) in c.steps.iter().enumerate() {
                    let at = format!("strategy.canary.steps[{i}]");
                    match step {
                        CanaryStep::SetWeight(w) => {
                            weights.push((format!("{at} (set_weight {w})"), *w));
                        }
                        CanaryStep::SetHeaderRoute(r) => {
                            routes.push((format!("{at} (set_header_route `{}`)", r.name), r));
                        }
                        CanaryStep::SetMirror(m) => {
                            mirrors.push((format!("{at} (set_mirror `{}`)", m.name), m));
                        }
                        CanaryStep::Scale(_) => need_workload(format!("{at} (scale)"))?,
                        _ => {}
                    }
                }
                if c.replicas.is_some() {
                    need_workload("strategy.canary.replicas".into())?;
                }
            }
            Strategy::BlueGreen(b) => {
                if let Some(r) = &b.preview_route {
                    routes.push(("strategy.blue_green.preview_route".into(), r));
                }
                if b.replicas.is_some() {
                    need_workload("strategy.blue_green.replicas".into())?;
                }
            }
            Strategy::Rolling(_) => need_workload("a rolling update".into())?,
            Strategy::AbTest(a) => {
                if let Some(w) = a.split {
                    weights.push((format!("strategy.ab_test.split ({w})"), w));
                }
                for (i, r) in a.routes.iter().enumerate() {
                    routes.push((format!("strategy.ab_test.routes[{i}] (`{}`)", r.name), r));
                }
            }
        }
        for router in &self.routers {
            let caps = router.capabilities();
            let inexpressible = |what: &str, reason: String| BuildError::Inexpressible {
                router: router.name().to_owned(),
                what: what.to_owned(),
                reason,
            };
            for (what, weight) in &weights {
                if !caps.granularity.allows(*weight) {
                    return Err(inexpressible(
                        what,
                        format!("it sets weights in steps of {}", caps.granularity),
                    ));
                }
            }
            for (what, route) in &routes {
                if route.uses_headers() && !caps.header_routes {
                    return Err(inexpressible(
                        what,
                        "it does not support header routes".into(),
                    ));
                }
                if route.uses_cookies() && !caps.cookie_routes {
                    return Err(inexpressible(
                        what,
                        "it does not support cookie routes".into(),
                    ));
                }
            }
            for (what, _) in &mirrors {
                if !caps.mirroring {
                    return Err(inexpressible(what, "it does not support mirroring".into()));
                }
            }
        }
        Ok(())
    }

    /// Every analysis the plan refers to, built from templates or registered in code; the
    /// sequential ones apart, since the engine hands them their saved state.
    fn resolve_analyses(&self) -> Result<(Analyses, SequentialAnalyses), BuildError> {
        let mut resolved: Analyses = self.analyses.clone();
        let mut sequential = SequentialAnalyses::new();
        for (name, template) in &self.plan.analyses {
            if resolved.contains_key(name) {
                return Err(BuildError::AmbiguousAnalysis { name: name.clone() });
            }
            match from_template(name, template, &self.sources)? {
                Built::Plain(analysis) => {
                    resolved.insert(name.clone(), analysis);
                }
                Built::Sequential(analysis) => {
                    sequential.insert(name.clone(), analysis);
                }
            }
        }
        for (at, name) in analysis_refs(&self.plan) {
            if !resolved.contains_key(&name) && !sequential.contains_key(&name) {
                return Err(BuildError::UnknownAnalysis { at, name });
            }
        }
        Ok((resolved, sequential))
    }

    /// The analysis called `name` as a rollout built from this builder would measure it: one
    /// registered with [`analysis`](Self::analysis), or the template of that name in
    /// `templates` built on the metric sources registered with
    /// [`metric_source`](Self::metric_source). For analyses measured outside a rollout, like
    /// a pipeline stage's verification after its rollout promoted. `at` names where `name` was
    /// written, for the error. Sequential templates are refused: their test's state lives in a
    /// rollout's record.
    pub fn resolve_analysis(
        &self,
        at: &str,
        name: &str,
        templates: &BTreeMap<String, AnalysisTemplate>,
    ) -> Result<Arc<dyn Analysis>, BuildError> {
        match (self.analyses.get(name), templates.get(name)) {
            (Some(_), Some(_)) => Err(BuildError::AmbiguousAnalysis {
                name: name.to_owned(),
            }),
            (Some(analysis), None) => Ok(analysis.clone()),
            (None, Some(template)) => match from_template(name, template, &self.sources)? {
                Built::Plain(analysis) => Ok(analysis),
                Built::Sequential(_) => Err(BuildError::SequentialOutsideRollout {
                    at: at.to_owned(),
                    name: name.to_owned(),
                }),
            },
            (None, None) => Err(BuildError::UnknownAnalysis {
                at: at.to_owned(),
                name: name.to_owned(),
            }),
        }
    }
}

/// An analysis built from a template.
enum Built {
    Plain(Arc<dyn Analysis>),
    Sequential(Arc<SequentialAnalysis>),
}

/// Builds the analysis of template `name` on `sources`, checking that it reads only sources
/// that are registered.
fn from_template(
    name: &str,
    template: &AnalysisTemplate,
    sources: &Sources,
) -> Result<Built, BuildError> {
    let source_names: Vec<&String> = match template {
        AnalysisTemplate::Threshold(t) => t.metrics.iter().map(|m| &m.source).collect(),
        AnalysisTemplate::Proportions(p) => vec![&p.source],
        AnalysisTemplate::Judge(j) => j.queries.values().map(|q| &q.source).collect(),
        AnalysisTemplate::Conditions(c) => c.metrics.iter().map(|m| &m.source).collect(),
        AnalysisTemplate::Sequential(s) => vec![&s.source],
    };
    if let Some(missing) = source_names.into_iter().find(|s| !sources.contains_key(*s)) {
        return Err(BuildError::UnknownMetricSource {
            analysis: name.to_owned(),
            source_name: missing.clone(),
        });
    }
    let sources = sources.clone();
    let analysis: Arc<dyn Analysis> = match template {
        AnalysisTemplate::Threshold(t) => Arc::new(ThresholdAnalysis::new(t.clone(), sources)),
        AnalysisTemplate::Proportions(p) => Arc::new(ProportionsAnalysis::new(p.clone(), sources)),
        AnalysisTemplate::Judge(j) => Arc::new(JudgeAnalysis::new(j.clone(), sources)),
        AnalysisTemplate::Conditions(c) => Arc::new(ConditionsAnalysis::new(c.clone(), sources)),
        AnalysisTemplate::Sequential(s) => {
            return Ok(Built::Sequential(Arc::new(SequentialAnalysis::new(
                s.clone(),
                sources,
            ))));
        }
    };
    Ok(Built::Plain(analysis))
}

type Analyses = BTreeMap<String, Arc<dyn Analysis>>;
type SequentialAnalyses = BTreeMap<String, Arc<SequentialAnalysis>>;

/// Every analysis name the plan's strategy refers to, with where.
fn analysis_refs(plan: &Plan) -> Vec<(String, String)> {
    let mut refs = Vec::new();
    match &plan.strategy {
        Strategy::Canary(c) => {
            for (i, step) in c.steps.iter().enumerate() {
                if let CanaryStep::Analysis(run) = step {
                    refs.push((
                        format!("strategy.canary.steps[{i}].analysis"),
                        run.name.clone(),
                    ));
                }
            }
            if let Some(bg) = &c.background_analysis {
                refs.push((
                    "strategy.canary.background_analysis".into(),
                    bg.analysis.name.clone(),
                ));
            }
        }
        Strategy::BlueGreen(b) => {
            if let Some(run) = &b.pre_promotion_analysis {
                refs.push((
                    "strategy.blue_green.pre_promotion_analysis".into(),
                    run.name.clone(),
                ));
            }
            if let Some(run) = &b.post_promotion_analysis {
                refs.push((
                    "strategy.blue_green.post_promotion_analysis".into(),
                    run.name.clone(),
                ));
            }
        }
        Strategy::Rolling(_) => {}
        Strategy::AbTest(a) => refs.push(("strategy.ab_test.analysis".into(), a.analysis.clone())),
    }
    refs
}
