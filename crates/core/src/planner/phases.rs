//! The phases every strategy shares: gates, expand migrations, promotion and rollback.

use super::steps::{Run, ended, ready, run_analysis};
use super::wait::{earliest, wait_until};
use crate::action::{Action, Decision, Slot};
use crate::plan::Strategy;
use crate::setup::Setup;
use crate::state::{Ending, Final, MigrationStatus, Outcome, RolloutState, StopReason};
use crate::{GateStage, GateVerdict, MigrationPhase, Timestamp, Weight};

/// The gates of `stage`, in order: `None` once all are open.
pub(super) fn gates(
    setup: &Setup,
    state: &RolloutState,
    now: Timestamp,
    stage: GateStage,
) -> Option<Decision> {
    for gate in setup.gates.iter().filter(|g| g.stage == stage) {
        let check = Action::CheckGate {
            gate: gate.name.clone(),
        };
        let Some(progress) = state.gates.get(&gate.name) else {
            return Some(Decision::Apply(check));
        };
        match &progress.last.value {
            GateVerdict::Open => {}
            GateVerdict::Closed { reason } => {
                return Some(Decision::Rollback(StopReason::GateClosed {
                    gate: gate.name.clone(),
                    reason: reason.clone(),
                }));
            }
            GateVerdict::Pending { detail } => {
                let timeout_at = gate.timeout.map(|t| progress.first_checked_at + t);
                if let (Some(at), Some(timeout)) = (timeout_at, gate.timeout)
                    && now >= at
                {
                    return Some(Decision::Rollback(StopReason::GateClosed {
                        gate: gate.name.clone(),
                        reason: format!(
                            "still pending after {}: {detail}",
                            humantime::format_duration(timeout)
                        ),
                    }));
                }
                let next = progress.last.at + gate.poll_interval;
                if now >= next || progress.answered {
                    return Some(Decision::Apply(check));
                }
                return Some(wait_until(now, earliest(Some(next), timeout_at)));
            }
        }
    }
    None
}

/// Applies expand migrations in order, then moves on.
pub(super) fn expand(setup: &Setup, state: &RolloutState) -> Decision {
    setup
        .migrations
        .iter()
        .find(|m| m.phase == MigrationPhase::Expand && !state.migrations.contains_key(&m.id))
        .map_or(Decision::Advance, |m| {
            Decision::Apply(Action::ApplyMigration { id: m.id.clone() })
        })
}

/// Promotion: confirm-promotion gates, full scale, the switch, removing routes, post-promotion
/// analysis, retiring the old revision, then bake time and contract migrations.
pub(super) fn promoting(setup: &Setup, state: &RolloutState, now: Timestamp) -> Decision {
    let Some(promotion) = &state.promotion else {
        return Decision::Promote;
    };
    // A pause holds promotion wherever it is: before the switch, before retiring the old
    // revision, before contract migrations.
    if state.pause.is_some() {
        return Decision::Wait(None);
    }
    let (stable, candidate) = (&setup.revisions.stable, &setup.revisions.candidate);
    let mut wake = None;
    let Some(switched_at) = promotion.switched_at else {
        if let Some(decision) = gates(setup, state, now, GateStage::BeforePromotion) {
            return decision;
        }
        if let Some(n) = setup.full_replicas() {
            if state.replicas.get(candidate) != Some(&n) {
                return Decision::Apply(Action::Scale {
                    revision: candidate.clone(),
                    replicas: n,
                });
            }
            if let Some(decision) = ready(setup, state, now, candidate, Some(n), &mut wake) {
                return decision;
            }
        }
        let split = setup.split(Weight::FULL);
        if setup.has_routers && state.split.as_ref() != Some(&split) {
            return Decision::Apply(Action::SetSplit { split });
        }
        // Already switched by the last step, or nothing to switch (rolling updates move
        // replicas, not traffic): mark the switch as done.
        return Decision::Advance;
    };
    if let Some(name) = state.header_routes.keys().next() {
        return Decision::Apply(Action::RemoveHeaderRoute { name: name.clone() });
    }
    if let Some(name) = state.mirrors.keys().next() {
        return Decision::Apply(Action::RemoveMirror { name: name.clone() });
    }
    if !promotion.analysis_done {
        let Some(run) = setup.post_promotion_analysis() else {
            return Decision::Advance;
        };
        let progress = state.analysis.as_ref();
        return match run_analysis(setup, progress, run, Some(1), Slot::Step, switched_at, now) {
            Run::Due(action) => Decision::Apply(action),
            Run::WaitUntil(at) => wait_until(now, Some(at)),
            Run::Ended(status) => {
                ended(status, run, progress, Slot::Step).unwrap_or(Decision::Advance)
            }
        };
    }
    let (scale_down_delay, _) = setup.scale_down_delays();
    if setup.has_workload
        && !matches!(setup.plan.strategy, Strategy::Rolling(_))
        && state.replicas.get(stable) != Some(&0)
    {
        let at = switched_at + scale_down_delay;
        if now < at {
            return wait_until(now, Some(at));
        }
        return Decision::Apply(Action::Scale {
            revision: stable.clone(),
            replicas: 0,
        });
    }
    let contract = setup
        .migrations
        .iter()
        .find(|m| m.phase == MigrationPhase::Contract && !state.migrations.contains_key(&m.id));
    if let Some(migration) = contract {
        let at = promotion.started_at + setup.plan.bake_time;
        if now < at {
            return wait_until(now, Some(at));
        }
        return Decision::Apply(Action::ApplyMigration {
            id: migration.id.clone(),
        });
    }
    Decision::Complete(Final::Outcome(Outcome::Promoted))
}

/// Rollback: everything back on stable (traffic, or replicas for rolling updates), managed
/// routes removed, the candidate scaled down after the abort delay, expand migrations reverted
/// in reverse order.
pub(super) fn rolling_back(setup: &Setup, state: &RolloutState, now: Timestamp) -> Decision {
    let Some(rollback) = &state.rollback else {
        return Decision::Complete(Final::Failed {
            error: "rollback state missing".into(),
        });
    };
    let (stable, candidate) = (&setup.revisions.stable, &setup.revisions.candidate);
    if let Strategy::Rolling(rolling) = &setup.plan.strategy {
        let n = rolling.replicas;
        if state.replicas.get(stable).is_some_and(|&k| k != n) {
            return Decision::Apply(Action::Scale {
                revision: stable.clone(),
                replicas: n,
            });
        }
        if state.replicas.contains_key(stable) {
            let mut wake = None;
            match ready(setup, state, now, stable, Some(n), &mut wake) {
                Some(Decision::Rollback(reason)) => {
                    return Decision::Complete(Final::Failed {
                        error: format!("rollback could not restore `{stable}`: {reason}"),
                    });
                }
                Some(decision) => return decision,
                None => {}
            }
        }
        if state.replicas.get(candidate).is_some_and(|&k| k != 0) {
            return Decision::Apply(Action::Scale {
                revision: candidate.clone(),
                replicas: 0,
            });
        }
    } else {
        if setup.has_routers && state.traffic_touched {
            let split = setup.split(Weight::ZERO);
            if state.split.as_ref() != Some(&split) {
                return Decision::Apply(Action::SetSplit { split });
            }
        }
        if let Some(name) = state.header_routes.keys().next() {
            return Decision::Apply(Action::RemoveHeaderRoute { name: name.clone() });
        }
        if let Some(name) = state.mirrors.keys().next() {
            return Decision::Apply(Action::RemoveMirror { name: name.clone() });
        }
        let (_, abort_delay) = setup.scale_down_delays();
        if let Some(delay) = abort_delay.filter(|_| setup.has_workload)
            && state.replicas.get(candidate).is_some_and(|&k| k != 0)
        {
            let at = rollback.started_at + delay;
            if now < at {
                return wait_until(now, Some(at));
            }
            return Decision::Apply(Action::Scale {
                revision: candidate.clone(),
                replicas: 0,
            });
        }
    }
    let revert = setup.migrations.iter().rev().find(|m| {
        m.phase == MigrationPhase::Expand
            && m.reversible
            && matches!(
                state.migrations.get(&m.id),
                Some(MigrationStatus::Applied | MigrationStatus::Attempted)
            )
    });
    if let Some(migration) = revert {
        return Decision::Apply(Action::RevertMigration {
            id: migration.id.clone(),
        });
    }
    Decision::Complete(match &rollback.ending {
        Ending::RolledBack(reason) => Final::Outcome(Outcome::RolledBack(reason.clone())),
        Ending::Aborted { by, reason } => Final::Outcome(Outcome::Aborted {
            by: by.clone(),
            reason: reason.clone(),
        }),
        Ending::Failed { error } => Final::Failed {
            error: error.clone(),
        },
        Ending::Concluded {
            comparison,
            summary,
        } => Final::Outcome(Outcome::Concluded {
            comparison: comparison.clone(),
            summary: summary.clone(),
        }),
    })
}
