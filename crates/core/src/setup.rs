//! What the planner knows that does not change during a rollout: the plan, the revisions and
//! the shape of the providers, and the list of steps the strategy compiles into.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::{AnalysisRun, AutoPromotion, Rolling, Strategy};
use crate::{
    GateStage, HeaderRoute, MigrationPhase, Mirror, Plan, Revisions, TrafficSplit, Weight,
};

/// A migration step as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationInfo {
    /// Its id.
    pub id: String,
    /// When it runs.
    pub phase: MigrationPhase,
    /// Whether it can be reverted.
    pub reversible: bool,
}

/// A gate as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateInfo {
    /// Its name.
    pub name: String,
    /// Where it is checked.
    pub stage: GateStage,
    /// How long to wait between checks while pending.
    #[serde(with = "crate::time::serde_duration")]
    pub poll_interval: Duration,
    /// How long it may stay pending.
    #[serde(with = "crate::time::serde_duration::option")]
    pub timeout: Option<Duration>,
}

/// What the planner knows that does not change during a rollout: the plan, the revisions,
/// and the shape of the providers (which ones exist, the migrations and gates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// The plan.
    pub plan: Plan,
    /// The revisions.
    pub revisions: Revisions,
    /// Whether at least one router moves traffic.
    pub has_routers: bool,
    /// Whether a workload scales revisions.
    pub has_workload: bool,
    /// Whether a health probe checks the candidate.
    pub has_probe: bool,
    /// Migration steps, in the order they were added.
    pub migrations: Vec<MigrationInfo>,
    /// Gates, in the order they were added.
    pub gates: Vec<GateInfo>,
}

/// One step of the list a strategy compiles into.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    SetWeight(Weight),
    Pause(Option<Duration>),
    Analysis(AnalysisRun),
    SetHeaderRoute(HeaderRoute),
    RemoveHeaderRoute(String),
    SetMirror(Mirror),
    RemoveMirror(String),
    /// Scale the candidate and wait for it to be ready.
    Scale(u32),
    /// Wait for the health probe to report the candidate ready.
    AwaitHealthy,
    /// Blue-green: wait for promotion as configured.
    AwaitPromotion(AutoPromotion),
    /// Replace replicas batch by batch.
    RollingUpdate(Rolling),
    /// A/B: run for `duration` (more with extensions), then compare.
    AbRun {
        duration: Duration,
        analysis: String,
        extensions: u32,
    },
}

impl Step {
    /// The step a canary's plan step compiles into.
    fn of_canary(step: &crate::plan::CanaryStep) -> Self {
        use crate::plan::CanaryStep as C;
        match step {
            C::SetWeight(w) => Step::SetWeight(*w),
            C::Pause(p) => Step::Pause(p.duration),
            C::Analysis(run) => Step::Analysis(run.clone()),
            C::SetHeaderRoute(r) => Step::SetHeaderRoute(r.clone()),
            C::RemoveHeaderRoute(n) => Step::RemoveHeaderRoute(n.clone()),
            C::SetMirror(m) => Step::SetMirror(m.clone()),
            C::RemoveMirror(n) => Step::RemoveMirror(n.clone()),
            C::Scale(s) => Step::Scale(s.replicas),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Step::SetWeight(_) => "set_weight",
            Step::Pause(_) => "pause",
            Step::Analysis(_) => "analysis",
            Step::SetHeaderRoute(_) => "set_header_route",
            Step::RemoveHeaderRoute(_) => "remove_header_route",
            Step::SetMirror(_) => "set_mirror",
            Step::RemoveMirror(_) => "remove_mirror",
            Step::Scale(_) => "scale",
            Step::AwaitHealthy => "await_healthy",
            Step::AwaitPromotion(_) => "await_promotion",
            Step::RollingUpdate(_) => "rolling_update",
            Step::AbRun { .. } => "ab_test",
        }
    }
}

impl Setup {
    /// A setup for `plan` on `revisions` with no providers; the builder fills in the rest.
    pub fn new(plan: Plan, revisions: Revisions) -> Self {
        Setup {
            plan,
            revisions,
            has_routers: false,
            has_workload: false,
            has_probe: false,
            migrations: Vec::new(),
            gates: Vec::new(),
        }
    }

    /// Step `index` of the list the strategy compiles into, built alone for a canary (the
    /// planner asks at every decision).
    pub(crate) fn step(&self, index: usize) -> Option<Step> {
        match &self.plan.strategy {
            Strategy::Canary(c) => c.steps.get(index).map(Step::of_canary),
            _ => self.steps().into_iter().nth(index),
        }
    }

    pub(crate) fn steps(&self) -> Vec<Step> {
        match &self.plan.strategy {
            Strategy::Canary(c) => c.steps.iter().map(Step::of_canary).collect(),
            Strategy::BlueGreen(b) => {
                let mut steps = Vec::new();
                match b.preview_replicas.or(b.replicas) {
                    Some(n) if self.has_workload => steps.push(Step::Scale(n)),
                    _ if self.has_probe => steps.push(Step::AwaitHealthy),
                    _ => {}
                }
                if let Some(route) = &b.preview_route {
                    steps.push(Step::SetHeaderRoute(route.clone()));
                }
                if let Some(run) = &b.pre_promotion_analysis {
                    steps.push(Step::Analysis(run.clone()));
                }
                steps.push(Step::AwaitPromotion(b.auto_promotion));
                steps
            }
            Strategy::Rolling(r) => vec![Step::RollingUpdate(*r)],
            Strategy::AbTest(a) => {
                let mut steps = Vec::new();
                if let Some(w) = a.split {
                    steps.push(Step::SetWeight(w));
                }
                steps.extend(a.routes.iter().cloned().map(Step::SetHeaderRoute));
                steps.push(Step::AbRun {
                    duration: a.duration,
                    analysis: a.analysis.clone(),
                    extensions: a.extensions,
                });
                steps
            }
        }
    }

    /// The kind of step `index`, without building the step list for a canary (the engine asks
    /// at every record).
    pub(crate) fn step_kind(&self, index: usize) -> Option<&'static str> {
        match &self.plan.strategy {
            Strategy::Canary(c) => c.steps.get(index).map(crate::plan::CanaryStep::kind),
            _ => self.steps().get(index).map(Step::kind),
        }
    }

    /// How many steps the strategy compiles into.
    pub(crate) fn step_count(&self) -> usize {
        match &self.plan.strategy {
            Strategy::Canary(c) => c.steps.len(),
            _ => self.steps().len(),
        }
    }

    /// The kinds of the steps the strategy compiles into, in order (`set_weight`, `pause`,
    /// `analysis`, ..., and for blue-green `scale`, `await_promotion`; for A/B `ab_test`).
    pub fn step_kinds(&self) -> Vec<&'static str> {
        self.steps().iter().map(Step::kind).collect()
    }

    /// The candidate's replicas before it takes all traffic, if the plan sets them and a
    /// workload exists.
    pub(crate) fn full_replicas(&self) -> Option<u32> {
        if !self.has_workload {
            return None;
        }
        match &self.plan.strategy {
            Strategy::Canary(c) => c.replicas,
            Strategy::BlueGreen(b) => b.replicas,
            Strategy::Rolling(_) | Strategy::AbTest(_) => None,
        }
    }

    pub(crate) fn scale_down_delays(&self) -> (Duration, Option<Duration>) {
        match &self.plan.strategy {
            Strategy::Canary(c) => (c.scale_down_delay, c.abort_scale_down_delay),
            Strategy::BlueGreen(b) => (b.scale_down_delay, b.abort_scale_down_delay),
            Strategy::Rolling(_) | Strategy::AbTest(_) => (Duration::ZERO, None),
        }
    }

    /// Whether `analysis` is a sequential template of the plan.
    pub(crate) fn is_sequential(&self, analysis: &str) -> bool {
        matches!(
            self.plan.analyses.get(analysis),
            Some(crate::plan::AnalysisTemplate::Sequential(_))
        )
    }

    pub(crate) fn post_promotion_analysis(&self) -> Option<&AnalysisRun> {
        match &self.plan.strategy {
            Strategy::BlueGreen(b) => b.post_promotion_analysis.as_ref(),
            _ => None,
        }
    }

    /// The split that sends `weight` to the candidate; every split names both revisions.
    pub(crate) fn split(&self, weight: Weight) -> TrafficSplit {
        TrafficSplit::canary(&self.revisions.stable, &self.revisions.candidate, weight)
            .unwrap_or_else(|_| TrafficSplit::all_to(&self.revisions.stable))
    }
}
