//! The pure planner: `decide(setup, state, observation) -> Decision`, with no I/O and no clock.
//!
//! Every strategy compiles into a list of [steps](Setup::step_kinds) that one generic planner
//! walks. Around the steps sit the phases every rollout shares: pre-flight gates, expand
//! migrations, promotion (switch, post-promotion analysis, scale-down, bake, contract) and
//! rollback (traffic to stable, routes removed, candidate scaled down, expand reverted).
//!
//! The engine carries out each [`Decision`], then folds its result into the state with
//! [`apply_decision`], [`apply_result`] and [`apply_command`], which are pure too. Because the
//! planner reads only the state and the time, a fresh engine given the stored state continues
//! exactly where the last one stopped.

pub(crate) mod fold;
mod phases;
mod steps;

use std::time::Duration;

use cutover_analysis::Measurement;
use serde::{Deserialize, Serialize};

pub use self::fold::{CommandEffect, apply_command, apply_decision, apply_result};
use crate::analysis::{AnalysisResult, Comparison};
use crate::plan::{AnalysisRun, AutoPromotion, Rolling, Strategy};
use crate::state::{Final, PauseReason, Phase, RolloutState, StopReason};
use crate::{
    ErrorKind, GateStage, GateVerdict, HeaderRoute, Health, MigrationPhase, Mirror, Plan,
    ReplicaStatus, RevisionId, Revisions, Timestamp, TrafficSplit, Weight,
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

    pub(crate) fn steps(&self) -> Vec<Step> {
        use crate::plan::CanaryStep as C;
        match &self.plan.strategy {
            Strategy::Canary(c) => c
                .steps
                .iter()
                .map(|s| match s {
                    C::SetWeight(w) => Step::SetWeight(*w),
                    C::Pause(p) => Step::Pause(p.duration),
                    C::Analysis(run) => Step::Analysis(run.clone()),
                    C::SetHeaderRoute(r) => Step::SetHeaderRoute(r.clone()),
                    C::RemoveHeaderRoute(n) => Step::RemoveHeaderRoute(n.clone()),
                    C::SetMirror(m) => Step::SetMirror(m.clone()),
                    C::RemoveMirror(n) => Step::RemoveMirror(n.clone()),
                    C::Scale(s) => Step::Scale(s.replicas),
                })
                .collect(),
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

    /// The analysis run a measurement in `slot` belongs to, and the count it defaults to, in
    /// the state's current step or phase.
    pub(crate) fn run_in(
        &self,
        slot: Slot,
        state: &RolloutState,
    ) -> Option<(AnalysisRun, Option<u32>)> {
        match slot {
            Slot::Background => match &self.plan.strategy {
                Strategy::Canary(c) => c
                    .background_analysis
                    .as_ref()
                    .map(|bg| (bg.analysis.clone(), None)),
                _ => None,
            },
            Slot::Step => match state.phase {
                Phase::Progressing => match self.steps().get(state.step) {
                    Some(Step::Analysis(run)) => Some((run.clone(), Some(1))),
                    _ => None,
                },
                Phase::Promoting => self.post_promotion_analysis().map(|r| (r.clone(), Some(1))),
                _ => None,
            },
        }
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

/// What the planner is told besides the state: the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Now.
    pub now: Timestamp,
}

/// Which analysis run a measurement belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    /// The current step's analysis (also post-promotion analysis and the A/B comparison).
    Step,
    /// The background analysis.
    Background,
}

/// One call to the providers. Effects change the world and are saved to the store before they
/// run; observations only read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Ask a gate.
    CheckGate {
        /// The gate.
        gate: String,
    },
    /// Apply a migration step.
    ApplyMigration {
        /// The step.
        id: String,
    },
    /// Revert a migration step.
    RevertMigration {
        /// The step.
        id: String,
    },
    /// Send a split to every router, and read it back where they can.
    SetSplit {
        /// The split.
        split: TrafficSplit,
    },
    /// Route matching requests to the candidate on every router.
    SetHeaderRoute {
        /// The route.
        route: HeaderRoute,
    },
    /// Remove a header route from every router.
    RemoveHeaderRoute {
        /// Its name.
        name: String,
    },
    /// Mirror requests to the candidate on every router.
    SetMirror {
        /// The mirror.
        mirror: Mirror,
    },
    /// Remove a mirror from every router.
    RemoveMirror {
        /// Its name.
        name: String,
    },
    /// Scale a revision.
    Scale {
        /// The revision.
        revision: RevisionId,
        /// Replicas.
        replicas: u32,
    },
    /// Read replica counts.
    ObserveWorkload {
        /// The revisions.
        revisions: Vec<RevisionId>,
    },
    /// Check the health of a revision.
    CheckHealth {
        /// The revision.
        revision: RevisionId,
    },
    /// Take one measurement of an analysis.
    Measure {
        /// Which run it belongs to.
        slot: Slot,
        /// The analysis.
        analysis: String,
        /// Its index within the run, from 1.
        measurement: u32,
    },
}

impl Action {
    /// Whether the action changes the world (and so is saved before it runs).
    pub fn is_effect(&self) -> bool {
        match self {
            Action::ApplyMigration { .. }
            | Action::RevertMigration { .. }
            | Action::SetSplit { .. }
            | Action::SetHeaderRoute { .. }
            | Action::RemoveHeaderRoute { .. }
            | Action::SetMirror { .. }
            | Action::RemoveMirror { .. }
            | Action::Scale { .. } => true,
            Action::CheckGate { .. }
            | Action::ObserveWorkload { .. }
            | Action::CheckHealth { .. }
            | Action::Measure { .. } => false,
        }
    }

    /// A short name of the operation: `set_split`, `check_health`, ...
    pub fn op(&self) -> &'static str {
        match self {
            Action::CheckGate { .. } => "check_gate",
            Action::ApplyMigration { .. } => "apply_migration",
            Action::RevertMigration { .. } => "revert_migration",
            Action::SetSplit { .. } => "set_split",
            Action::SetHeaderRoute { .. } => "set_header_route",
            Action::RemoveHeaderRoute { .. } => "remove_header_route",
            Action::SetMirror { .. } => "set_mirror",
            Action::RemoveMirror { .. } => "remove_mirror",
            Action::Scale { .. } => "scale",
            Action::ObserveWorkload { .. } => "observe_workload",
            Action::CheckHealth { .. } => "check_health",
            Action::Measure { .. } => "measure",
        }
    }
}

/// What came of an [`Action`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActionResult {
    /// The effect was carried out.
    Done,
    /// A resumed engine found the migration already in the wanted state and did not run it.
    AlreadyDone,
    /// A gate's answer.
    Gate(GateVerdict),
    /// A health check's answer.
    Health(Health),
    /// Replica counts by revision.
    Workload(std::collections::BTreeMap<RevisionId, ReplicaStatus>),
    /// A measurement.
    Measured {
        /// How it counts in the run.
        measurement: Measurement,
        /// The analysis's result, if it produced one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<AnalysisResult>,
        /// The error, if it could not measure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The action failed for good (a permanent error, or retries spent).
    Failed {
        /// The classification of the last error.
        kind: ErrorKind,
        /// The operation, provider and error chain.
        error: String,
    },
}

/// A command from a [`RolloutHandle`](crate::RolloutHandle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Hold the rollout where it is (background analysis keeps running).
    Pause,
    /// Lift a pause: a manual pause, a pause step, an inconclusive analysis (accepted as
    /// passed), or a blue-green waiting for promotion.
    Resume,
    /// Skip the current step.
    Promote,
    /// Skip every remaining step and promote.
    PromoteFull,
    /// Roll back now.
    Abort {
        /// Why, for the record.
        reason: String,
    },
}

/// What the planner decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Decision {
    /// Carry out one action.
    Apply(Action),
    /// Nothing to do until then, or until a command when `None`.
    Wait(#[serde(with = "crate::time::serde_duration::option")] Option<Duration>),
    /// The current step (or phase) is done; move on.
    Advance,
    /// Run the current analysis again after an inconclusive result.
    Extend(Slot),
    /// Begin promotion.
    Promote,
    /// Begin a rollback.
    Rollback(StopReason),
    /// Wait for a person.
    Pause(PauseReason),
    /// End an A/B test without promoting.
    Conclude {
        /// The comparison, if one was made.
        comparison: Option<Comparison>,
        /// What it found.
        summary: String,
    },
    /// The rollout is finished.
    Complete(Final),
}

/// Decides the next thing to do. Pure: the same setup, state and time always give the same
/// decision.
///
/// An effect the state shows as pending is not re-decided here: the engine carries it out first.
pub fn decide(setup: &Setup, state: &RolloutState, observation: &Observation) -> Decision {
    let now = observation.now;
    match state.phase {
        Phase::PreFlight => {
            phases::gates(setup, state, now, GateStage::PreFlight).unwrap_or(Decision::Advance)
        }
        Phase::Expanding => phases::expand(setup, state),
        Phase::Progressing => steps::progressing(setup, state, now),
        Phase::Promoting => phases::promoting(setup, state, now),
        Phase::RollingBack => phases::rolling_back(setup, state, now),
        Phase::Done => Decision::Wait(None),
    }
}

/// The earlier of two optional wake-up times.
fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Wait until `at`, or until a command if `at` is `None`.
fn wait_until(now: Timestamp, at: Option<Timestamp>) -> Decision {
    Decision::Wait(at.map(|at| at.saturating_since(now)))
}
