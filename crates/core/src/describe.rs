//! The one-line summaries of decision records, for people.

use crate::MigrationPhase;
use crate::action::{Action, ActionResult, Decision};
use crate::command::{CommandEffect, QueuedCommand};
use crate::setup::Setup;
use crate::state::RolloutState;
use crate::status::{Final, Phase};

/// One line describing a decision and its result.
pub(crate) fn describe(decision: &Decision, result: Option<&ActionResult>) -> String {
    match decision {
        Decision::Apply(action) => {
            let what = describe_action(action);
            match result {
                None | Some(ActionResult::Done) => what,
                Some(ActionResult::AlreadyDone) => format!("{what}: already done"),
                Some(ActionResult::Gate(v)) => format!("{what}: {v}"),
                Some(ActionResult::Checklist { verdict, checklist }) => {
                    format!("{what}: {verdict} ({})", checklist.summary())
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
        Phase::Expanding
            if setup
                .migrations
                .iter()
                .any(|m| m.phase == MigrationPhase::Expand) =>
        {
            "expand migrations done; starting the steps".into()
        }
        Phase::Expanding => "starting the steps".into(),
        Phase::Progressing => match setup.step_kind(state.step) {
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

pub(crate) fn describe_command(command: &QueuedCommand, effect: &CommandEffect) -> String {
    let request = &command.request;
    let mut line = format!("command {} by {}", request.command, request.by);
    if !request.reason.is_empty() {
        line = format!("{line} ({})", request.reason);
    }
    if effect.accepted {
        format!("{line}: {}", effect.note)
    } else {
        format!("{line} refused: {}", effect.note)
    }
}
