//! Pure state transitions: what a decision, an action's result, or a command does to the state.

use crate::action::{Action, ActionResult, Decision, Slot};
use crate::analysis::AnalysisResult;
use crate::command::{Command, CommandEffect, CommandRequest};
use crate::setup::Setup;
use crate::state::{
    AnalysisProgress, Ending, GateProgress, MigrationStatus, Observed, PauseReason, PauseState,
    Phase, PromotionProgress, RollbackProgress, RolloutState,
};
use crate::{ErrorKind, GateVerdict, Health, MigrationPhase, Timestamp};
use cutover_analysis::{Measurement, Verdict};

/// Applies a decision that needs no provider (everything but `Apply` and `Wait`).
pub fn apply_decision(state: &mut RolloutState, decision: &Decision, now: Timestamp) {
    match decision {
        Decision::Apply(_) | Decision::Wait(_) => {}
        Decision::Advance => advance(state, now),
        Decision::Extend(slot) => {
            let progress = match slot {
                Slot::Step => &mut state.analysis,
                Slot::Background => &mut state.background,
            };
            if let Some(p) = progress {
                let extensions = p.extensions + 1;
                *p = p.restarted(now);
                p.extensions = extensions;
            }
        }
        Decision::Promote => {
            state.phase = Phase::Promoting;
            state.promotion = Some(PromotionProgress {
                started_at: now,
                switched_at: None,
                analysis_done: false,
                point_of_no_return: false,
            });
            state.background = None;
            state.promote_full = false;
            start_step(state, now);
        }
        Decision::Rollback(reason) => {
            begin_rollback(state, Ending::RolledBack(reason.clone()), now);
        }
        Decision::Pause(reason) => {
            state.pause = Some(PauseState {
                reason: reason.clone(),
                since: now,
            });
        }
        Decision::Conclude {
            comparison,
            summary,
        } => begin_rollback(
            state,
            Ending::Concluded {
                comparison: comparison.clone(),
                summary: summary.clone(),
            },
            now,
        ),
        Decision::Complete(end) => {
            state.phase = Phase::Done;
            state.outcome = Some(end.clone());
            state.pending = None;
            state.pause = None;
        }
    }
}

/// Marks `action` as decided and about to run. The engine saves the state right after.
pub(crate) fn set_pending(setup: &Setup, state: &mut RolloutState, action: &Action) {
    if matches!(action, Action::SetSplit { .. }) {
        state.traffic_touched = true;
    }
    if state.phase == Phase::Promoting {
        let retires_stable = matches!(action, Action::Scale { revision, replicas: 0 } if *revision == setup.revisions.stable);
        let contracts = matches!(action, Action::ApplyMigration { id }
            if setup.migrations.iter().any(|m| m.id == *id && m.phase == MigrationPhase::Contract));
        if (retires_stable || contracts)
            && let Some(p) = &mut state.promotion
        {
            p.point_of_no_return = true;
        }
    }
    state.pending = Some(action.clone());
}

/// Applies the result of an action to the state and clears it as pending.
///
/// An effect that failed for good starts a rollback that ends in failure; the engine does not
/// call this for failures it cannot roll back from (during a rollback, or past the point of no
/// return), which leave the action pending for the next run.
pub fn apply_result(
    setup: &Setup,
    state: &mut RolloutState,
    action: &Action,
    result: &ActionResult,
    now: Timestamp,
) {
    state.pending = None;
    if let ActionResult::Failed { kind, error } = result {
        failed(state, action, *kind, error, now);
        return;
    }
    match (action, result) {
        (
            Action::CheckGate { gate },
            ActionResult::Gate(verdict) | ActionResult::Checklist { verdict, .. },
        ) => {
            gate_answer(state, gate, verdict.clone(), now);
        }
        (Action::ApplyMigration { id }, ActionResult::Done | ActionResult::AlreadyDone) => {
            state
                .migrations
                .insert(id.clone(), MigrationStatus::Applied);
        }
        (Action::RevertMigration { id }, ActionResult::Done | ActionResult::AlreadyDone) => {
            state
                .migrations
                .insert(id.clone(), MigrationStatus::Reverted);
        }
        (Action::SetSplit { split }, ActionResult::Done) => {
            state.split = Some(split.clone());
            state.health = None;
            if state.phase == Phase::Promoting
                && split.is_all_to(&setup.revisions.candidate)
                && let Some(p) = &mut state.promotion
            {
                p.switched_at.get_or_insert(now);
            }
        }
        (Action::SetHeaderRoute { route }, ActionResult::Done) => {
            state
                .header_routes
                .insert(route.name.clone(), route.clone());
        }
        (Action::RemoveHeaderRoute { name }, ActionResult::Done) => {
            state.header_routes.remove(name);
        }
        (Action::SetMirror { mirror }, ActionResult::Done) => {
            state.mirrors.insert(mirror.name.clone(), mirror.clone());
        }
        (Action::RemoveMirror { name }, ActionResult::Done) => {
            state.mirrors.remove(name);
        }
        (Action::Scale { revision, replicas }, ActionResult::Done) => {
            state.replicas.insert(revision.clone(), *replicas);
            state.workload = None;
            state.health = None;
            state.progress_since = now;
        }
        (Action::ObserveWorkload { .. }, ActionResult::Workload(statuses)) => {
            state.workload = Some(Observed {
                value: statuses.clone(),
                at: now,
            });
        }
        (Action::CheckHealth { .. }, ActionResult::Health(health)) => {
            state.health = Some(Observed {
                value: health.clone(),
                at: now,
            });
        }
        (
            Action::Measure { slot, analysis, .. },
            ActionResult::Measured {
                measurement,
                result,
                error,
            },
        ) => {
            let last = result.clone().or_else(|| {
                error.as_ref().map(|e| {
                    AnalysisResult::new(Verdict::Inconclusive, format!("could not measure: {e}"))
                })
            });
            measured(state, *slot, analysis, *measurement, last, now);
        }
        // A result that does not belong to the action changes nothing.
        _ => {}
    }
}

fn failed(state: &mut RolloutState, action: &Action, kind: ErrorKind, error: &str, now: Timestamp) {
    if let Action::ApplyMigration { id } = action {
        // A failed apply may have changed something before it failed: the rollback that
        // follows reverts it too.
        state
            .migrations
            .entry(id.clone())
            .or_insert(MigrationStatus::Attempted);
    }
    match action {
        Action::CheckGate { gate } => gate_answer(
            state,
            gate,
            GateVerdict::Closed {
                reason: format!("could not be checked: {error}"),
            },
            now,
        ),
        Action::Measure { slot, analysis, .. } => {
            let last =
                AnalysisResult::new(Verdict::Inconclusive, format!("could not measure: {error}"));
            measured(state, *slot, analysis, Measurement::Error, Some(last), now);
        }
        Action::CheckHealth { .. } if kind.is_retryable() => {
            state.health = Some(Observed {
                value: Health::progressing(format!("probe failed: {error}")),
                at: now,
            });
        }
        Action::ObserveWorkload { .. } if kind.is_retryable() => {
            state.workload = Some(Observed {
                value: std::collections::BTreeMap::new(),
                at: now,
            });
        }
        _ => {
            if state.phase != Phase::RollingBack && state.phase != Phase::Done {
                begin_rollback(
                    state,
                    Ending::Failed {
                        error: error.to_owned(),
                    },
                    now,
                );
            }
        }
    }
}

fn gate_answer(state: &mut RolloutState, gate: &str, verdict: GateVerdict, now: Timestamp) {
    let first = state.gates.get(gate).map_or(now, |g| g.first_checked_at);
    state.gates.insert(
        gate.to_owned(),
        GateProgress {
            first_checked_at: first,
            last: Observed {
                value: verdict,
                at: now,
            },
            answered: false,
        },
    );
}

fn measured(
    state: &mut RolloutState,
    slot: Slot,
    analysis: &str,
    measurement: Measurement,
    last: Option<AnalysisResult>,
    now: Timestamp,
) {
    let started = state.step_started_at;
    let progress = match slot {
        Slot::Step => &mut state.analysis,
        Slot::Background => &mut state.background,
    };
    let progress = progress.get_or_insert_with(|| AnalysisProgress::new(analysis, started));
    progress.tally.record(measurement);
    progress.last_at = Some(now);
    progress.last = last;
}

fn start_step(state: &mut RolloutState, now: Timestamp) {
    state.step_started_at = now;
    state.progress_since = now;
    state.analysis = None;
    state.health = None;
    state.workload = None;
    state.pause = None;
}

fn advance(state: &mut RolloutState, now: Timestamp) {
    match state.phase {
        Phase::PreFlight => {
            state.phase = Phase::Expanding;
            start_step(state, now);
        }
        Phase::Expanding => {
            state.phase = Phase::Progressing;
            state.step = 0;
            start_step(state, now);
        }
        Phase::Progressing => {
            state.step += 1;
            start_step(state, now);
        }
        Phase::Promoting => {
            if let Some(p) = &mut state.promotion {
                if p.switched_at.is_none() {
                    p.switched_at = Some(now);
                } else {
                    p.analysis_done = true;
                }
            }
            state.analysis = None;
        }
        Phase::RollingBack | Phase::Done => {}
    }
}

fn begin_rollback(state: &mut RolloutState, ending: Ending, now: Timestamp) {
    state.phase = Phase::RollingBack;
    state.rollback = Some(RollbackProgress {
        ending,
        started_at: now,
    });
    state.background = None;
    state.promote_full = false;
    start_step(state, now);
}

/// Applies a command: what it changes in the state, and whether it was accepted.
///
/// This does not move the inbox position ([`RolloutState::last_command`]); the engine does, in
/// the same save as the command's effect.
pub fn apply_command(
    state: &mut RolloutState,
    request: &CommandRequest,
    now: Timestamp,
) -> CommandEffect {
    let active = matches!(
        state.phase,
        Phase::PreFlight | Phase::Expanding | Phase::Progressing | Phase::Promoting
    );
    match request.command {
        Command::Abort => {
            if !active {
                return CommandEffect::refused(format!("cannot abort while {}", state.phase));
            }
            if state.past_point_of_no_return() {
                return CommandEffect::refused(
                    "cannot abort: promotion is past the point of no return (the old revision is being retired or contract migrations have started)",
                );
            }
            begin_rollback(
                state,
                Ending::Aborted {
                    by: request.by.clone(),
                    reason: request.reason.clone(),
                },
                now,
            );
            CommandEffect::accepted("rolling back")
        }
        Command::Pause => {
            if !matches!(state.phase, Phase::Progressing | Phase::Promoting) {
                return CommandEffect::refused(format!("cannot pause while {}", state.phase));
            }
            if state.pause.is_some() {
                return CommandEffect::refused("already paused");
            }
            state.pause = Some(PauseState {
                reason: PauseReason::Manual {
                    by: request.by.clone(),
                    reason: request.reason.clone(),
                },
                since: now,
            });
            CommandEffect::accepted("paused")
        }
        Command::Resume => match state.pause.take() {
            None => CommandEffect::refused("not paused"),
            Some(pause) => {
                lift(state, &pause.reason, now);
                CommandEffect::accepted(format!("resumed ({})", pause.reason))
            }
        },
        Command::Promote => match state.phase {
            Phase::Progressing => {
                if let Some(PauseState {
                    reason:
                        PauseReason::Inconclusive {
                            background: true, ..
                        },
                    ..
                }) = state.pause
                {
                    restart_background(state, now);
                }
                state.pause = None;
                advance(state, now);
                CommandEffect::accepted("skipped the current step")
            }
            Phase::Promoting => match state.pause.take() {
                Some(pause) if matches!(pause.reason, PauseReason::Inconclusive { .. }) => {
                    lift(state, &pause.reason, now);
                    CommandEffect::accepted("accepted the inconclusive post-promotion analysis")
                }
                other => {
                    state.pause = other;
                    CommandEffect::refused("already promoting")
                }
            },
            _ => CommandEffect::refused(format!("cannot promote while {}", state.phase)),
        },
        Command::Approve | Command::Reject => {
            let gate = request.subject.clone().unwrap_or_default();
            if !active {
                return CommandEffect::refused(format!(
                    "cannot answer a gate while {}",
                    state.phase
                ));
            }
            if !state.setup.gates.iter().any(|g| g.name == gate) {
                return CommandEffect::refused(format!("the rollout has no gate `{gate}`"));
            }
            let approved = request.command == Command::Approve;
            // A pending gate is asked again at once rather than at its next poll.
            if let Some(progress) = state.gates.get_mut(&gate) {
                progress.answered = true;
            }
            state.approvals.insert(
                gate.clone(),
                crate::Approval {
                    approved,
                    by: request.by.clone(),
                    reason: request.reason.clone(),
                    at: now,
                },
            );
            CommandEffect::accepted(if approved {
                format!("gate `{gate}` approved")
            } else {
                format!("gate `{gate}` rejected")
            })
        }
        Command::PromoteFull => match state.phase {
            Phase::PreFlight | Phase::Expanding | Phase::Progressing => {
                state.promote_full = true;
                state.pause = None;
                CommandEffect::accepted("skipping every remaining step")
            }
            Phase::Promoting => match &mut state.promotion {
                Some(p) if p.switched_at.is_some() && !p.analysis_done => {
                    p.analysis_done = true;
                    state.analysis = None;
                    if matches!(
                        state.pause,
                        Some(PauseState {
                            reason: PauseReason::Inconclusive { .. },
                            ..
                        })
                    ) {
                        state.pause = None;
                    }
                    CommandEffect::accepted("skipping the post-promotion analysis")
                }
                _ => CommandEffect::refused("already promoting"),
            },
            Phase::RollingBack | Phase::Done => {
                CommandEffect::refused(format!("cannot promote while {}", state.phase))
            }
        },
    }
}

/// Accepts an inconclusive background run: a new run starts, and its first measurement comes
/// one interval from now rather than at once (the same data would give the same answer).
fn restart_background(state: &mut RolloutState, now: Timestamp) {
    if let Some(progress) = &mut state.background {
        *progress = progress.restarted(now);
        progress.last_at = Some(now);
    }
}

/// Lifts a pause that has been taken off the state.
fn lift(state: &mut RolloutState, reason: &PauseReason, now: Timestamp) {
    match reason {
        PauseReason::Manual { .. } => state.progress_since = now,
        PauseReason::Inconclusive {
            background: true, ..
        } => restart_background(state, now),
        PauseReason::Step | PauseReason::AwaitingPromotion | PauseReason::Inconclusive { .. } => {
            advance(state, now);
        }
    }
}
