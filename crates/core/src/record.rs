//! The decision record: every decision a rollout made, with its inputs and what came of it.

use std::time::Duration;

use cutover_analysis::Tally;
use serde::{Deserialize, Serialize};

use crate::planner::{Action, ActionResult, Command, CommandEffect, Decision, Setup};
use crate::state::{Final, Phase, RolloutState};
use crate::{Health, Timestamp, TrafficSplit};

/// One entry of a rollout's decision record.
///
/// Records are kept in the rollout's state (so they survive a restart), streamed as
/// [`RolloutEvent::Record`](crate::RolloutEvent::Record), and serialize to JSON for export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Position in the record, from 1.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// The phase the rollout was in.
    pub phase: Phase,
    /// The step, while progressing: its index and kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepRef>,
    /// What the decision was based on.
    pub inputs: Inputs,
    /// What was decided and what came of it.
    pub entry: Entry,
    /// The same in one line for people.
    pub summary: String,
}

/// A step of the strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRef {
    /// Index, from 0.
    pub index: usize,
    /// Kind, like `set_weight`.
    pub kind: String,
}

/// The state a decision was based on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    /// The split in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<TrafficSplit>,
    /// Time since the step (or phase) began.
    #[serde(with = "crate::time::serde_duration")]
    pub step_elapsed: Duration,
    /// The current analysis run's measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Tally>,
    /// The background analysis run's measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<Tally>,
    /// The candidate's latest health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

impl Inputs {
    pub(crate) fn of(state: &RolloutState, now: Timestamp) -> Self {
        Inputs {
            split: state.split.clone(),
            step_elapsed: now.saturating_since(state.step_started_at),
            analysis: state.analysis.as_ref().map(|a| a.tally),
            background: state.background.as_ref().map(|a| a.tally),
            health: state.health.as_ref().map(|h| h.value.clone()),
        }
    }
}

/// What a record holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Entry {
    /// An engine took the rollout on.
    Started {
        /// The engine's instance id.
        engine: String,
        /// Whether it picked up a rollout another engine had started.
        resumed: bool,
    },
    /// A decision of the planner, and for actions what came of them.
    Decision {
        /// The decision.
        decision: Decision,
        /// The action's result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<ActionResult>,
    },
    /// A command from a handle.
    Command {
        /// The command.
        command: Command,
        /// What it did.
        effect: CommandEffect,
    },
}

/// One line describing a decision and its result.
pub(crate) fn describe(decision: &Decision, result: Option<&ActionResult>) -> String {
    match decision {
        Decision::Apply(action) => {
            let what = describe_action(action);
            match result {
                None | Some(ActionResult::Done) => what,
                Some(ActionResult::AlreadyDone) => format!("{what}: already done"),
                Some(ActionResult::Gate(v)) => {
                    format!("{what}: {}", serde_json::to_string(v).unwrap_or_default())
                }
                Some(ActionResult::Health(h)) => format!("{what}: {h}"),
                Some(ActionResult::Workload(statuses)) => {
                    let parts: Vec<String> = statuses
                        .iter()
                        .map(|(r, s)| format!("{r} {}/{} available", s.available, s.desired))
                        .collect();
                    format!("{what}: {}", parts.join(", "))
                }
                Some(ActionResult::Measured {
                    measurement,
                    result,
                    error,
                }) => {
                    let detail = result
                        .as_ref()
                        .map(|r| r.summary.clone())
                        .or_else(|| error.clone())
                        .unwrap_or_default();
                    format!(
                        "{what}: {} {detail}",
                        serde_json::to_string(measurement)
                            .unwrap_or_default()
                            .trim_matches('"')
                    )
                }
                Some(ActionResult::Failed { error, .. }) => format!("{what} failed: {error}"),
            }
        }
        Decision::Wait(Some(d)) => format!("wait {}", humantime::format_duration(*d)),
        Decision::Wait(None) => "wait for a command".into(),
        Decision::Advance => "step done".into(),
        Decision::Extend(_) => "analysis inconclusive: running it again".into(),
        Decision::Promote => "promote".into(),
        Decision::Rollback(reason) => format!("roll back: {reason}"),
        Decision::Pause(reason) => format!("pause: {reason}"),
        Decision::Conclude { summary, .. } => format!("A/B test concluded: {summary}"),
        Decision::Complete(Final::Outcome(outcome)) => format!("finished: {outcome}"),
        Decision::Complete(Final::Failed { error }) => format!("failed: {error}"),
    }
}

fn describe_action(action: &Action) -> String {
    match action {
        Action::CheckGate { gate } => format!("gate `{gate}`"),
        Action::ApplyMigration { id } => format!("apply migration `{id}`"),
        Action::RevertMigration { id } => format!("revert migration `{id}`"),
        Action::SetSplit { split } => format!("set split {split}"),
        Action::SetHeaderRoute { route } => format!("set header route `{}`", route.name),
        Action::RemoveHeaderRoute { name } => format!("remove header route `{name}`"),
        Action::SetMirror { mirror } => format!(
            "mirror {} to the candidate (`{}`)",
            mirror.percentage, mirror.name
        ),
        Action::RemoveMirror { name } => format!("remove mirror `{name}`"),
        Action::Scale { revision, replicas } => format!("scale `{revision}` to {replicas}"),
        Action::ObserveWorkload { .. } => "replicas".into(),
        Action::CheckHealth { revision } => format!("health of `{revision}`"),
        Action::Measure {
            analysis,
            measurement,
            ..
        } => format!("analysis `{analysis}` #{measurement}"),
    }
}

/// One line for a decision, with the phase and step it was taken in (for `Advance`, which
/// otherwise says nothing about what was done).
pub(crate) fn describe_in(decision: &Decision, state: &RolloutState, setup: &Setup) -> String {
    if !matches!(decision, Decision::Advance) {
        return describe(decision, None);
    }
    match state.phase {
        Phase::PreFlight => "pre-flight checks passed".into(),
        Phase::Expanding => "expand migrations done; starting the steps".into(),
        Phase::Progressing => match setup.step_kinds().get(state.step) {
            Some(kind) => format!("step {} ({kind}) done", state.step),
            None => "steps done".into(),
        },
        Phase::Promoting => match &state.promotion {
            Some(p) if p.switched_at.is_none() && setup.has_routers => {
                "all traffic on the candidate".into()
            }
            Some(p) if p.switched_at.is_none() => "all replicas on the candidate".into(),
            _ => "post-promotion checks done".into(),
        },
        Phase::RollingBack | Phase::Done => "step done".into(),
    }
}

pub(crate) fn describe_command(command: &Command, effect: &CommandEffect) -> String {
    let name = match command {
        Command::Pause => "pause".to_owned(),
        Command::Resume => "resume".to_owned(),
        Command::Promote => "promote".to_owned(),
        Command::PromoteFull => "promote-full".to_owned(),
        Command::Abort { reason } => format!("abort ({reason})"),
    };
    if effect.accepted {
        format!("command {name}: {}", effect.note)
    } else {
        format!("command {name} refused: {}", effect.note)
    }
}
