//! The Progressing phase: walking the strategy's steps, plus the helpers the other phases share
//! (waiting for readiness within the deadline, scheduling analysis measurements).

use cutover_analysis::{RunLimits, RunStatus};

use super::wait::{earliest, wait_until};
use crate::action::{Action, Decision, Slot};
use crate::plan::{AfterExtensions, AnalysisRun, AutoPromotion, OnInconclusive, Rolling, Strategy};
use crate::setup::{Setup, Step};
use crate::state::{AnalysisProgress, PauseReason, RolloutState, StopReason};
use crate::{Health, RevisionId, Timestamp};

pub(super) fn progressing(setup: &Setup, state: &RolloutState, now: Timestamp) -> Decision {
    // Promote-full skips the remaining steps and analysis, background analysis included.
    let Some(step) = setup.step(state.step).filter(|_| !state.promote_full) else {
        return Decision::Promote;
    };
    let mut wake = None;
    if let Some(decision) = background(setup, state, now, &mut wake) {
        return decision;
    }
    if state.pause.is_some() {
        return wait_until(now, wake);
    }
    step_decision(setup, state, now, &step, wake)
}

fn step_decision(
    setup: &Setup,
    state: &RolloutState,
    now: Timestamp,
    step: &Step,
    mut wake: Option<Timestamp>,
) -> Decision {
    let candidate = &setup.revisions.candidate;
    match step {
        Step::SetWeight(weight) => {
            if setup.has_routers {
                let split = setup.split(*weight);
                if state.split.as_ref() != Some(&split) {
                    return Decision::Apply(Action::SetSplit { split });
                }
            }
            ready(setup, state, now, candidate, None, &mut wake).unwrap_or(Decision::Advance)
        }
        Step::Pause(Some(duration)) => {
            let end = state.step_started_at + *duration;
            if now >= end {
                Decision::Advance
            } else {
                wait_until(now, earliest(Some(end), wake))
            }
        }
        Step::Pause(None) => Decision::Pause(PauseReason::Step),
        Step::Analysis(run) => {
            let progress = state.analysis.as_ref();
            match run_analysis(
                setup,
                progress,
                run,
                Some(1),
                Slot::Step,
                state.step_started_at,
                now,
            ) {
                Run::Due(action) => Decision::Apply(action),
                Run::WaitUntil(at) => wait_until(now, earliest(Some(at), wake)),
                Run::Ended(status) => {
                    ended(status, run, progress, Slot::Step).unwrap_or(Decision::Advance)
                }
            }
        }
        Step::SetHeaderRoute(route) => {
            if setup.has_routers && state.header_routes.get(&route.name) != Some(route) {
                Decision::Apply(Action::SetHeaderRoute {
                    route: route.clone(),
                })
            } else {
                Decision::Advance
            }
        }
        Step::RemoveHeaderRoute(name) => {
            if state.header_routes.contains_key(name) {
                Decision::Apply(Action::RemoveHeaderRoute { name: name.clone() })
            } else {
                Decision::Advance
            }
        }
        Step::SetMirror(mirror) => {
            if setup.has_routers && state.mirrors.get(&mirror.name) != Some(mirror) {
                Decision::Apply(Action::SetMirror {
                    mirror: mirror.clone(),
                })
            } else {
                Decision::Advance
            }
        }
        Step::RemoveMirror(name) => {
            if state.mirrors.contains_key(name) {
                Decision::Apply(Action::RemoveMirror { name: name.clone() })
            } else {
                Decision::Advance
            }
        }
        Step::Scale(replicas) => {
            if setup.has_workload && state.replicas.get(candidate) != Some(replicas) {
                return Decision::Apply(Action::Scale {
                    revision: candidate.clone(),
                    replicas: *replicas,
                });
            }
            ready(setup, state, now, candidate, Some(*replicas), &mut wake)
                .unwrap_or(Decision::Advance)
        }
        Step::AwaitHealthy => {
            ready(setup, state, now, candidate, None, &mut wake).unwrap_or(Decision::Advance)
        }
        Step::AwaitPromotion(auto) => match auto {
            AutoPromotion::Enabled => Decision::Advance,
            AutoPromotion::Disabled => Decision::Pause(PauseReason::AwaitingPromotion),
            AutoPromotion::After(delay) => {
                let at = state.step_started_at + *delay;
                if now >= at {
                    Decision::Advance
                } else {
                    wait_until(now, earliest(Some(at), wake))
                }
            }
        },
        Step::RollingUpdate(rolling) => rolling_update(setup, state, now, rolling, wake),
        Step::AbRun {
            duration,
            analysis,
            extensions,
        } => ab_run(setup, state, now, *duration, analysis, *extensions, wake),
    }
}

/// The background analysis, when it needs something done now (a measurement, a rollback, a
/// pause). Otherwise records when it next needs attention in `wake`.
fn background(
    setup: &Setup,
    state: &RolloutState,
    now: Timestamp,
    wake: &mut Option<Timestamp>,
) -> Option<Decision> {
    let Strategy::Canary(canary) = &setup.plan.strategy else {
        return None;
    };
    let bg = canary.background_analysis.as_ref()?;
    if state.step < bg.starting_step {
        return None;
    }
    let progress = state.background.as_ref();
    match run_analysis(
        setup,
        progress,
        &bg.analysis,
        None,
        Slot::Background,
        state.step_started_at,
        now,
    ) {
        Run::Due(action) => Some(Decision::Apply(action)),
        Run::WaitUntil(at) => {
            *wake = earliest(*wake, Some(at));
            None
        }
        Run::Ended(RunStatus::Inconclusive) if state.pause.is_some() => None,
        Run::Ended(status) => ended(status, &bg.analysis, progress, Slot::Background),
    }
}

pub(super) enum Run {
    Due(Action),
    WaitUntil(Timestamp),
    Ended(RunStatus),
}

/// Where an analysis run stands: a measurement is due, the next one is later, or it ended.
///
/// A sequential analysis's run takes its limits from [`sequential_limits`], and its first
/// measurement comes one interval after the initial delay: each measurement covers the time
/// since the previous one, so one at the very start would see no data.
pub(super) fn run_analysis(
    setup: &Setup,
    progress: Option<&AnalysisProgress>,
    run: &AnalysisRun,
    default_count: Option<u32>,
    slot: Slot,
    started: Timestamp,
    now: Timestamp,
) -> Run {
    let sequential = setup.is_sequential(&run.name);
    let limits = if sequential {
        sequential_limits(run, default_count)
    } else {
        run.limits(default_count)
    };
    let status = RolloutState::run_status(progress, &limits);
    if status.is_terminal() {
        return Run::Ended(status);
    }
    let first = if sequential {
        run.initial_delay + run.interval
    } else {
        run.initial_delay
    };
    let next = match progress {
        None => started + first,
        Some(p) => match p.last_at {
            None => p.started_at + first,
            Some(last) => last + run.interval,
        },
    };
    if now >= next {
        let taken = progress.map_or(0, |p| p.tally.count + p.tally.errors);
        Run::Due(Action::Measure {
            slot,
            analysis: run.name.clone(),
            measurement: taken + 1,
        })
    } else {
        Run::WaitUntil(next)
    }
}

/// The limits of a sequential analysis's run: the analysis itself decides each measurement
/// (fail at the first rejection; pass only when the step's time is up and the tolerance is
/// ruled out; otherwise inconclusive), so the run fails on its first failed measurement,
/// succeeds on its first passed one, and is inconclusive once `max_count` measurements
/// (default: twice `count`) stayed undecided. Without a count (background analysis) it runs
/// until a failure or promotion.
pub(crate) fn sequential_limits(run: &AnalysisRun, default_count: Option<u32>) -> RunLimits {
    let count = run.count.or(default_count);
    RunLimits {
        count: run.max_count.or_else(|| count.map(|c| c.saturating_mul(2))),
        failure_limit: 0,
        inconclusive_limit: u32::MAX,
        consecutive_error_limit: run.consecutive_error_limit,
        consecutive_success_limit: 1,
    }
}

/// The decision for a run that ended; `None` when it succeeded and nothing is to be done.
pub(super) fn ended(
    status: RunStatus,
    run: &AnalysisRun,
    progress: Option<&AnalysisProgress>,
    slot: Slot,
) -> Option<Decision> {
    let analysis = run.name.clone();
    let summary = progress.map(AnalysisProgress::summary).unwrap_or_default();
    match status {
        RunStatus::Running | RunStatus::Successful => None,
        RunStatus::Failed => Some(Decision::Rollback(StopReason::AnalysisFailed {
            analysis,
            summary,
        })),
        RunStatus::Error => Some(Decision::Rollback(StopReason::AnalysisError {
            analysis,
            summary,
        })),
        RunStatus::Inconclusive => {
            let pause = |analysis, summary| {
                Decision::Pause(PauseReason::Inconclusive {
                    analysis,
                    background: slot == Slot::Background,
                    summary,
                })
            };
            let abort = |analysis, summary| {
                Decision::Rollback(StopReason::AnalysisInconclusive { analysis, summary })
            };
            Some(match run.on_inconclusive {
                OnInconclusive::Pause => pause(analysis, summary),
                OnInconclusive::Abort => abort(analysis, summary),
                OnInconclusive::Extend { times, then } => {
                    if progress.map_or(0, |p| p.extensions) < times {
                        Decision::Extend(slot)
                    } else {
                        match then {
                            AfterExtensions::Pause => pause(analysis, summary),
                            AfterExtensions::Abort => abort(analysis, summary),
                        }
                    }
                }
            })
        }
    }
}

/// Waits for `revision` to have `replicas` ready (with a workload) and to be healthy (with a
/// probe), within the progress deadline. `None` when it is ready.
pub(super) fn ready(
    setup: &Setup,
    state: &RolloutState,
    now: Timestamp,
    revision: &RevisionId,
    replicas: Option<u32>,
    wake: &mut Option<Timestamp>,
) -> Option<Decision> {
    if let (true, Some(n)) = (setup.has_workload, replicas)
        && let Some(decision) = await_replicas(setup, state, now, revision, n, wake)
    {
        return Some(decision);
    }
    if setup.has_probe && *revision == setup.revisions.candidate {
        let Some(health) = &state.health else {
            return Some(Decision::Apply(Action::CheckHealth {
                revision: revision.clone(),
            }));
        };
        match &health.value {
            Health::Failed { reason } => {
                return Some(Decision::Rollback(StopReason::Unhealthy {
                    revision: revision.clone(),
                    reason: reason.clone(),
                }));
            }
            Health::Progressing { detail } => {
                let waiting_for = format!("`{revision}` to be healthy ({detail})");
                let check = Action::CheckHealth {
                    revision: revision.clone(),
                };
                return Some(poll(setup, state, now, health.at, check, waiting_for, wake));
            }
            Health::Ready => {}
        }
    }
    None
}

/// Waits for `revision` to have exactly `n` desired replicas, all ready.
fn await_replicas(
    setup: &Setup,
    state: &RolloutState,
    now: Timestamp,
    revision: &RevisionId,
    n: u32,
    wake: &mut Option<Timestamp>,
) -> Option<Decision> {
    let observe = Action::ObserveWorkload {
        revisions: vec![revision.clone()],
    };
    let Some(observed) = &state.workload else {
        return Some(Decision::Apply(observe));
    };
    let status = observed.value.get(revision).copied().unwrap_or_default();
    if status.desired == n && status.is_ready() {
        return None;
    }
    let waiting_for = format!(
        "{n} ready replicas of `{revision}` (desired {}, updated {}, ready {}, available {})",
        status.desired, status.updated, status.ready, status.available
    );
    Some(poll(
        setup,
        state,
        now,
        observed.at,
        observe,
        waiting_for,
        wake,
    ))
}

/// Polls again after the poll interval, or rolls back once the progress deadline has passed.
fn poll(
    setup: &Setup,
    state: &RolloutState,
    now: Timestamp,
    last: Timestamp,
    again: Action,
    waiting_for: String,
    wake: &mut Option<Timestamp>,
) -> Decision {
    let deadline = state.progress_since + setup.plan.progress_deadline;
    if now >= deadline {
        return Decision::Rollback(StopReason::ProgressDeadline {
            deadline: setup.plan.progress_deadline,
            waiting_for,
        });
    }
    let next = last + setup.plan.poll_interval;
    if now >= next {
        Decision::Apply(again)
    } else {
        wait_until(now, earliest(*wake, Some(next.min(deadline))))
    }
}

/// One move of a rolling update, the way the Kubernetes deployment controller moves: scale the
/// new revision up as far as max surge allows, scale the old one down as far as the new
/// replicas' availability and max unavailable allow, and otherwise wait for availability.
fn rolling_update(
    setup: &Setup,
    state: &RolloutState,
    now: Timestamp,
    rolling: &Rolling,
    mut wake: Option<Timestamp>,
) -> Decision {
    let (old, new) = (&setup.revisions.stable, &setup.revisions.candidate);
    let observe = Action::ObserveWorkload {
        revisions: vec![old.clone(), new.clone()],
    };
    let Some(observed) = &state.workload else {
        return Decision::Apply(observe);
    };
    let n = rolling.replicas;
    let (surge, unavailable) = rolling.resolved_limits();
    let status = |rev| observed.value.get(rev).copied().unwrap_or_default();
    let (old_status, new_status) = (status(old), status(new));
    let old_desired = state
        .replicas
        .get(old)
        .copied()
        .unwrap_or(old_status.desired);
    let new_desired = state
        .replicas
        .get(new)
        .copied()
        .unwrap_or(new_status.desired);

    if new_desired > 0
        && new_status.available > 0
        && let Some(decision) = ready(setup, state, now, new, None, &mut wake)
    {
        return decision;
    }
    if new_desired == n && old_desired == 0 && new_status.desired == n && new_status.is_ready() {
        return Decision::Advance;
    }
    let max_total = n + surge;
    if new_desired < n && old_desired + new_desired < max_total {
        let replicas = (max_total - old_desired).min(n);
        return Decision::Apply(Action::Scale {
            revision: new.clone(),
            replicas,
        });
    }
    let min_available = n.saturating_sub(unavailable);
    let available = old_status.available.min(old_desired) + new_status.available.min(new_desired);
    if old_desired > 0 && available > min_available {
        let replicas = old_desired - (available - min_available).min(old_desired);
        return Decision::Apply(Action::Scale {
            revision: old.clone(),
            replicas,
        });
    }
    let waiting_for = format!(
        "new replicas to become available: `{new}` {}/{} available, `{old}` {}/{} available",
        new_status.available, new_desired, old_status.available, old_desired
    );
    poll(
        setup,
        state,
        now,
        observed.at,
        observe,
        waiting_for,
        &mut wake,
    )
}

/// The A/B test step: run for the duration (more for each extension), then compare.
fn ab_run(
    setup: &Setup,
    state: &RolloutState,
    now: Timestamp,
    duration: std::time::Duration,
    analysis: &str,
    extensions: u32,
    wake: Option<Timestamp>,
) -> Decision {
    let progress = state.analysis.as_ref();
    let periods = progress.map_or(0, |p| p.extensions) + 1;
    let end = state.step_started_at + duration * periods;
    if now < end {
        return wait_until(now, earliest(Some(end), wake));
    }
    // One comparison; a failed query is tried again every poll interval, up to the default
    // consecutive-error limit.
    let run = AnalysisRun::new(analysis)
        .with_count(1)
        .with_interval(setup.plan.poll_interval);
    match run_analysis(setup, progress, &run, Some(1), Slot::Step, end, now) {
        Run::Due(action) => Decision::Apply(action),
        Run::WaitUntil(at) => wait_until(now, earliest(Some(at), wake)),
        Run::Ended(status) => {
            let last = progress.and_then(|p| p.last.as_ref());
            let comparison = last.and_then(|r| r.comparison.clone());
            let summary = progress.map(AnalysisProgress::summary).unwrap_or_default();
            let promote = matches!(&setup.plan.strategy, Strategy::AbTest(a) if a.promote_winner);
            match status {
                RunStatus::Successful if promote => Decision::Promote,
                RunStatus::Inconclusive if periods <= extensions => Decision::Extend(Slot::Step),
                _ => Decision::Conclude {
                    comparison,
                    summary,
                },
            }
        }
    }
}
