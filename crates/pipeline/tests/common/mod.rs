//! What the executor tests share: an environment of fakes, freight, and reading a stage's
//! history.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cutover_core::{ProviderError, RevisionId, RolloutBuilder, Timestamp, TrafficSplit, Verdict};
use cutover_pipeline::{
    Environment, Event, Freight, FreightId, PipelineState, PromotionContext, PromotionKind,
    Verification,
};
use cutover_test::{FakeRouter, ScriptedAnalysis, ScriptedMetricSource};

pub const T0: Timestamp = Timestamp::from_unix_millis(1_796_212_800_000); // a Wednesday, 12:00 UTC

/// One environment: a fake router; revisions listed in `bad_rollout` fail the rollout's
/// analysis, those in `bad_verify` fail `Environment::verify`. It registers the analysis
/// `smoke` (passes unless scripted otherwise; always fails for revisions in `bad_analysis`)
/// and the metric source `metrics` for verification analyses.
#[derive(Debug, Clone)]
pub struct Env {
    pub router: FakeRouter,
    pub bad_rollout: Arc<Mutex<BTreeSet<String>>>,
    pub bad_verify: Arc<Mutex<BTreeSet<String>>>,
    pub bad_analysis: Arc<Mutex<BTreeSet<String>>>,
    pub smoke: ScriptedAnalysis,
    pub metrics: ScriptedMetricSource,
}

impl Env {
    pub fn new(name: &str) -> Self {
        Env {
            router: FakeRouter::new(name),
            bad_rollout: Arc::default(),
            bad_verify: Arc::default(),
            bad_analysis: Arc::default(),
            smoke: ScriptedAnalysis::verdicts([Verdict::Pass]),
            metrics: ScriptedMetricSource::new("metrics"),
        }
    }

    /// Revisions that ever got traffic here.
    pub fn revisions_served(&self) -> BTreeSet<String> {
        self.router
            .splits()
            .iter()
            .flat_map(|s| {
                s.iter()
                    .filter(|(_, w)| w.basis_points() > 0)
                    .map(|(r, _)| r.as_str().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn serves_only(&self, revision: &str) -> bool {
        self.router
            .current()
            .is_some_and(|s: TrafficSplit| s.is_all_to(&RevisionId::new(revision).unwrap()))
    }
}

#[async_trait]
impl Environment for Env {
    fn attach(&self, rollout: RolloutBuilder, ctx: &PromotionContext) -> RolloutBuilder {
        let bad = self
            .bad_rollout
            .lock()
            .unwrap()
            .contains(&ctx.freight.revision);
        let verdict = if bad { Verdict::Fail } else { Verdict::Pass };
        let smoke = if self
            .bad_analysis
            .lock()
            .unwrap()
            .contains(&ctx.freight.revision)
        {
            ScriptedAnalysis::verdicts([Verdict::Fail])
        } else {
            self.smoke.clone()
        };
        rollout
            .router(self.router.clone())
            .analysis("checks", ScriptedAnalysis::verdicts([verdict]))
            .analysis("smoke", smoke)
            .metric_source("metrics", self.metrics.clone())
    }

    async fn verify(&self, ctx: &PromotionContext) -> Result<Verification, ProviderError> {
        if self
            .bad_verify
            .lock()
            .unwrap()
            .contains(&ctx.freight.revision)
        {
            return Ok(Verification::Failed {
                reason: format!("smoke test of {} failed", ctx.freight.name),
            });
        }
        Ok(Verification::Passed)
    }
}

pub const PLAN: &str = "plan: { strategy: { canary: { steps: [ { set_weight: 50 }, { analysis: { name: checks } }, { pause: { duration: 2m } } ] } } }";

pub fn v(n: u32) -> Freight {
    Freight::new(format!("v{n}"), format!("app@v{n}"))
}

pub fn current(state: &PipelineState, stage: &str) -> Option<FreightId> {
    state.stage(stage).current_id().cloned()
}

pub fn events(state: &PipelineState, stage: &str) -> Vec<String> {
    state
        .stage(stage)
        .history
        .iter()
        .map(|h| {
            let name = &state.freight(&h.freight).unwrap().freight.name;
            match &h.event {
                Event::Started {
                    kind: PromotionKind::Rollback,
                    ..
                } => format!("{name} rollback"),
                Event::Started { .. } => format!("{name} started"),
                Event::Approval(a) if a.approved => format!("{name} approved by {}", a.by),
                Event::Approval(a) => format!("{name} rejected by {}", a.by),
                Event::RolledOut => format!("{name} rolled out"),
                Event::Verified => format!("{name} verified"),
                Event::Failed { .. } => format!("{name} failed"),
                other => format!("{name} {other:?}"),
            }
        })
        .collect()
}

pub fn at(state: &PipelineState, stage: &str, event: &str) -> Timestamp {
    let list = events(state, stage);
    let i = list
        .iter()
        .position(|e| e == event)
        .unwrap_or_else(|| panic!("{event} not in {list:?}"));
    state.stage(stage).history[i].at
}
