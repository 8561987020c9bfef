//! The [`Executor`]: carries out what the planner decides, one stage rollout per promotion,
//! with every transition saved to the store first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::{
    ApprovalGate, Clock, GateStage, Outcome, ProviderError, Revisions, Rollout, RolloutBuilder,
    RolloutError, RolloutId, StateStore, Timestamp, TokioClock,
};
use tokio::task::JoinSet;

use crate::doc;
use crate::error::PipelineError;
use crate::freeze::FreezeGate;
use crate::freight::Freight;
use crate::handle::PipelineHandle;
use crate::measure::{self, Measure};
use crate::planner::{Next, decide, decide_stage};
use crate::spec::{Pipeline, Stage};
use crate::state::{Event, PipelineState, Promotion, PromotionKind, PromotionStep, Verified};

/// What an environment is told about a promotion.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PromotionContext {
    /// The pipeline.
    pub pipeline: RolloutId,
    /// The stage.
    pub stage: String,
    /// The stage's rollout.
    pub rollout: RolloutId,
    /// The freight being promoted.
    pub freight: Freight,
    /// The freight the stage ran before, if any.
    pub from: Option<Freight>,
    /// Forward, or a rollback.
    pub kind: PromotionKind,
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The freight works here.
    Passed,
    /// It does not.
    Failed {
        /// Why.
        reason: String,
    },
}

/// A place a stage's rollouts run: it adds its providers (routers, probes, workload, metric
/// sources, analyses, pre-flight gates) to the stage's rollout, and verifies freight once the
/// rollout promoted it. The metric sources and analyses it adds are also those the stage's
/// `verification` analyses read. A stage names one or more in `providers`.
#[async_trait]
pub trait Environment: Send + Sync + fmt::Debug {
    /// Adds this environment's providers to a rollout of `ctx.freight`.
    fn attach(&self, rollout: RolloutBuilder, ctx: &PromotionContext) -> RolloutBuilder;

    /// Checks the freight after its rollout promoted it, before the stage's `verification`
    /// analyses (if it has any) are measured; both must pass. Defaults to passed. An error
    /// counts as failed.
    async fn verify(&self, ctx: &PromotionContext) -> Result<Verification, ProviderError> {
        let _ = ctx;
        Ok(Verification::Passed)
    }
}

#[async_trait]
impl<T: Environment + ?Sized> Environment for Arc<T> {
    fn attach(&self, rollout: RolloutBuilder, ctx: &PromotionContext) -> RolloutBuilder {
        (**self).attach(rollout, ctx)
    }
    async fn verify(&self, ctx: &PromotionContext) -> Result<Verification, ProviderError> {
        (**self).verify(ctx).await
    }
}

/// The stable revision a stage's first rollout starts from, when the stage runs no freight
/// yet. [`PipelineHandle::adopt`] avoids it by recording what the stages already run.
pub const NO_REVISION: &str = "none";

/// Builds an [`Executor`].
#[derive(Debug)]
pub struct ExecutorBuilder {
    pipeline: Pipeline,
    store: Option<Arc<dyn StateStore>>,
    environments: BTreeMap<String, Arc<dyn Environment>>,
    clock: Option<Arc<dyn Clock>>,
    poll_interval: Duration,
}

impl ExecutorBuilder {
    /// The store that keeps the pipeline's document and its stages' rollouts.
    pub fn state_store(mut self, store: impl StateStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Registers an environment under the name stages use in `providers`.
    pub fn environment(mut self, name: impl Into<String>, env: impl Environment + 'static) -> Self {
        self.environments.insert(name.into(), Arc::new(env));
        self
    }

    /// The clock (default: a [`TokioClock`]). Share one between executors that resume each
    /// other on paused time.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// How often the executor looks for new freight, rollbacks and edits by others while it
    /// waits (default 5 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Checks that every environment a stage names was registered.
    pub fn build(self) -> Result<Executor, PipelineError> {
        for (i, stage) in self.pipeline.spec().stages.iter().enumerate() {
            for (j, name) in stage.providers.iter().enumerate() {
                if !self.environments.contains_key(name) {
                    return Err(PipelineError::UnknownEnvironment {
                        path: format!("stages[{i}].providers[{j}]"),
                        name: name.clone(),
                    });
                }
            }
        }
        let store = self.store.ok_or(PipelineError::NoStore)?;
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(TokioClock::new()) as Arc<dyn Clock>);
        Ok(Executor {
            inner: Arc::new(Inner {
                pipeline: self.pipeline,
                store,
                environments: self.environments,
                clock,
                poll_interval: self.poll_interval,
            }),
        })
    }
}

/// Drives a pipeline: asks the [planner](crate::planner) what each stage does next, starts
/// promotions (each one an ordinary cutover rollout on the stage's environments, then
/// verification), and records every transition in the pipeline's document before going on,
/// so an executor started after a crash carries on where the last one stopped.
///
/// Run one executor per pipeline at a time.
#[derive(Debug, Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pipeline: Pipeline,
    store: Arc<dyn StateStore>,
    environments: BTreeMap<String, Arc<dyn Environment>>,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
}

impl Executor {
    /// Starts building an executor of `pipeline`.
    pub fn builder(pipeline: Pipeline) -> ExecutorBuilder {
        ExecutorBuilder {
            pipeline,
            store: None,
            environments: BTreeMap::new(),
            clock: None,
            poll_interval: Duration::from_secs(5),
        }
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.inner.pipeline
    }

    /// A handle on the pipeline in the same store, acting as `who`.
    pub fn handle(&self, who: impl Into<String>) -> PipelineHandle {
        PipelineHandle::new(
            self.inner.store.clone(),
            self.inner.pipeline.clone(),
            self.inner.clock.clone(),
        )
        .by(who)
    }

    /// Runs until nothing more happens without new freight or a person: no promotion in
    /// progress and every stage idle or blocked. Waits out soaks and freeze windows. Returns
    /// the state it settled in.
    pub async fn run_until_settled(&self) -> Result<PipelineState, PipelineError> {
        self.run(true).await
    }

    /// Runs for ever (until an error): promotes new freight as it is submitted.
    pub async fn run_forever(&self) -> Result<(), PipelineError> {
        self.run(false).await.map(|_| ())
    }

    async fn run(&self, until_settled: bool) -> Result<PipelineState, PipelineError> {
        let inner = &self.inner;
        let mut tasks: JoinSet<(String, Result<(), PipelineError>)> = JoinSet::new();
        let mut running = BTreeSet::new();
        loop {
            let now = inner.clock.now();
            let (state, _) = doc::load(&*inner.store, inner.pipeline.id()).await?;
            let decision = decide(&inner.pipeline, &state, now);
            for (name, next) in &decision.stages {
                if running.contains(name) {
                    continue;
                }
                let promotion = match next {
                    Next::Continue(p) => Some(p.clone()),
                    Next::Promote { .. } | Next::RollBack { .. } => inner.start(name, now).await?,
                    _ => None,
                };
                if let Some(promotion) = promotion {
                    running.insert(name.clone());
                    let (inner, name) = (self.inner.clone(), name.clone());
                    tasks.spawn(async move {
                        let result = inner.drive(&name, promotion).await;
                        (name, result)
                    });
                }
            }
            if tasks.is_empty() && running.is_empty() && until_settled && decision.is_settled() {
                return Ok(state);
            }
            let wait = decision
                .wake_at()
                .map_or(inner.poll_interval, |t| t.saturating_since(now))
                .min(inner.poll_interval)
                .max(Duration::from_millis(1));
            tokio::select! {
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    let (name, result) = done.map_err(|e| PipelineError::Task {
                        id: inner.pipeline.id().clone(),
                        detail: e.to_string(),
                    })?;
                    running.remove(&name);
                    result?;
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

impl Inner {
    /// Starts the promotion the planner asks of `stage`, if it still asks for it on the stored
    /// state. Saved before anything runs.
    async fn start(&self, stage: &str, now: Timestamp) -> Result<Option<Promotion>, PipelineError> {
        let Some(def) = self.pipeline.stage(stage) else {
            return Ok(None);
        };
        let pipeline = self.pipeline.id().as_str();
        doc::update(&*self.store, self.pipeline.id(), |state| {
            let (freight, approval, kind) = match decide_stage(def, state, now) {
                Next::Promote { freight, approval } => (freight, approval, PromotionKind::Forward),
                Next::RollBack { to, .. } => (to, None, PromotionKind::Rollback),
                _ => return Ok(None),
            };
            state.promotions += 1;
            let rollout = RolloutId::new(format!("{pipeline}.{stage}.{}", state.promotions))
                .map_err(|e| PipelineError::InvalidFreight {
                    name: freight.to_string(),
                    reason: e.to_string(),
                })?;
            let here = state.stage_mut(stage);
            let promotion = Promotion {
                freight: freight.clone(),
                from: here.current_id().cloned(),
                rollout: rollout.clone(),
                kind,
                approval,
                step: PromotionStep::RollingOut,
                started: now,
                verification: None,
            };
            here.promotion = Some(promotion.clone());
            here.log(now, freight, Event::Started { rollout, kind });
            Ok(Some(promotion))
        })
        .await
    }

    /// Carries a promotion to its end: the rollout, then verification, saving each result.
    async fn drive(&self, stage: &str, mut promotion: Promotion) -> Result<(), PipelineError> {
        let (state, _) = doc::load(&*self.store, self.pipeline.id()).await?;
        let freight_of = |id| state.freight(id).map(|e| e.freight.clone());
        let Some(freight) = freight_of(&promotion.freight) else {
            return Err(PipelineError::InvalidFreight {
                name: promotion.freight.to_string(),
                reason: "not in the pipeline's freight".to_owned(),
            });
        };
        let ctx = PromotionContext {
            pipeline: self.pipeline.id().clone(),
            stage: stage.to_owned(),
            rollout: promotion.rollout.clone(),
            freight,
            from: promotion.from.as_ref().and_then(freight_of),
            kind: promotion.kind,
        };
        if promotion.step == PromotionStep::RollingOut {
            let result = self.roll_out(stage, &promotion, &ctx).await?;
            let approval = match &promotion.approval {
                Some(gate) => self
                    .store
                    .load(&promotion.rollout)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|s| s.state.approvals.get(gate).cloned()),
                None => None,
            };
            let now = self.clock.now();
            let next = doc::update(&*self.store, self.pipeline.id(), |state| {
                let here = state.stage_mut(stage);
                if here.promotion.as_ref() != Some(&promotion) {
                    return Ok(None); // someone else moved it on
                }
                let id = promotion.freight.clone();
                if let Some(a) = &approval {
                    here.log(a.at, id.clone(), Event::Approval(a.clone()));
                }
                match &result {
                    Ok(()) => {
                        here.switch_to(id.clone(), now);
                        here.log(now, id, Event::RolledOut);
                        let mut next = promotion.clone();
                        next.step = PromotionStep::Verifying;
                        next.verification = self
                            .pipeline
                            .stage(stage)
                            .and_then(|def| def.verification.as_ref())
                            .map(|v| measure::begin(v, now));
                        here.promotion = Some(next.clone());
                        Ok(Some(Some(next)))
                    }
                    Err(reason) => {
                        let reason = format!("rollout `{}`: {reason}", promotion.rollout);
                        here.fail(id, now, reason);
                        here.promotion = None;
                        Ok(Some(None))
                    }
                }
            })
            .await?;
            match next.flatten() {
                Some(next) => promotion = next,
                None => return Ok(()),
            }
        }
        let verdict = match self.verify(stage, &ctx).await {
            Verification::Passed => match self.measure(stage, &ctx, &mut promotion).await? {
                Some(verdict) => verdict,
                None => return Ok(()), // someone else moved it on
            },
            failed @ Verification::Failed { .. } => failed,
        };
        let now = self.clock.now();
        doc::update(&*self.store, self.pipeline.id(), |state| {
            let here = state.stage_mut(stage);
            if here.promotion.as_ref() != Some(&promotion) {
                return Ok(None);
            }
            let id = promotion.freight.clone();
            match &verdict {
                Verification::Passed => {
                    here.verified.insert(
                        id.clone(),
                        Verified {
                            at: now,
                            left: None,
                        },
                    );
                    here.log(now, id, Event::Verified);
                }
                Verification::Failed { reason } => {
                    let reason = format!("verification: {reason}");
                    here.fail(id, now, reason);
                }
            }
            here.promotion = None;
            Ok(Some(()))
        })
        .await?;
        Ok(())
    }

    /// Builds and runs (or resumes) the stage's rollout. `Err(reason)` is a rollout that ended
    /// without promoting; a rollout that stopped without an outcome is an error.
    async fn roll_out(
        &self,
        stage: &str,
        promotion: &Promotion,
        ctx: &PromotionContext,
    ) -> Result<Result<(), String>, PipelineError> {
        let Some(def) = self.pipeline.stage(stage) else {
            return Ok(Err(format!("stage `{stage}` is no longer in the pipeline")));
        };
        let mut builder = self
            .attach(def, ctx)
            .state_store(self.store.clone())
            .clock(self.clock.clone());
        if let Some(gate) = &promotion.approval {
            builder = builder.gate(GateStage::PreFlight, ApprovalGate::new(gate.clone()));
        }
        // Freeze windows hold promotions, not rollbacks.
        if promotion.kind == PromotionKind::Forward && !def.freeze.is_empty() {
            let gate = FreezeGate::new(stage, def.freeze.clone(), self.clock.clone());
            builder = builder.gate(GateStage::PreFlight, gate);
        }
        let rollout = match builder.build() {
            Ok(r) => r,
            // A plan that does not fit the environments fails this promotion, not the pipeline.
            Err(e) => return Ok(Err(format!("cannot be built: {e}"))),
        };
        match rollout.run().await {
            Ok(Outcome::Promoted) => Ok(Ok(())),
            Ok(other) => Ok(Err(other.to_string())),
            Err(e @ (RolloutError::Provider { .. } | RolloutError::Failed { .. })) => {
                Ok(Err(e.to_string()))
            }
            Err(source) => Err(PipelineError::Rollout {
                stage: stage.to_owned(),
                rollout: promotion.rollout.clone(),
                source: Box::new(source),
            }),
        }
    }

    /// A builder of the stage's rollout of `ctx.freight` with the stage's environments attached.
    fn attach(&self, def: &Stage, ctx: &PromotionContext) -> RolloutBuilder {
        let mut builder = Rollout::builder(ctx.rollout.as_str(), def.plan.clone())
            .revisions(stable_revision(ctx), ctx.freight.revision.as_str());
        for name in &def.providers {
            if let Some(env) = self.environments.get(name) {
                builder = env.attach(builder, ctx);
            }
        }
        builder
    }

    /// Measures the stage's verification analyses, if it has any (`Passed` if not). `None`:
    /// someone else moved the promotion on.
    async fn measure(
        &self,
        stage: &str,
        ctx: &PromotionContext,
        promotion: &mut Promotion,
    ) -> Result<Option<Verification>, PipelineError> {
        let Some(def) = self.pipeline.stage(stage) else {
            return Ok(Some(Verification::Passed));
        };
        let Some(spec) = &def.verification else {
            return Ok(Some(Verification::Passed));
        };
        let revisions = Revisions::new(stable_revision(ctx), ctx.freight.revision.as_str())
            .map_err(|e| e.to_string());
        Measure {
            store: &*self.store,
            pipeline: self.pipeline.id(),
            clock: &*self.clock,
            stage,
            spec,
        }
        .run(&self.attach(def, ctx), revisions, promotion)
        .await
    }

    /// Asks every environment of the stage, in order; the first failure wins.
    async fn verify(&self, stage: &str, ctx: &PromotionContext) -> Verification {
        let Some(def) = self.pipeline.stage(stage) else {
            return Verification::Failed {
                reason: format!("stage `{stage}` is no longer in the pipeline"),
            };
        };
        for name in &def.providers {
            let Some(env) = self.environments.get(name) else {
                continue;
            };
            match env.verify(ctx).await {
                Ok(Verification::Passed) => {}
                Ok(failed @ Verification::Failed { .. }) => return failed,
                Err(e) => {
                    return Verification::Failed {
                        reason: format!("`{name}` could not verify: {e}"),
                    };
                }
            }
        }
        Verification::Passed
    }
}

/// The revision a stage's rollout starts from: the freight it ran before, or [`NO_REVISION`].
fn stable_revision(ctx: &PromotionContext) -> &str {
    ctx.from
        .as_ref()
        .map_or(NO_REVISION, |f| f.revision.as_str())
}
