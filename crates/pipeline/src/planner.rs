//! The pure planner: given a pipeline, its state and the time, what each stage does next.
//!
//! No I/O and no clock: the [executor](crate::Executor) calls [`decide`] after every change
//! and carries out what it says.

use std::time::Duration;

use cutover_core::Timestamp;
use serde::Serialize;

use crate::calendar;
use crate::freight::FreightId;
use crate::spec::{Availability, Pipeline, Stage};
use crate::state::{PipelineState, Promotion, StageState};

/// What one stage does next.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Next {
    /// Nothing to do: the stage runs the newest freight it may take (or has none to take).
    Idle,
    /// Start a promotion of newer freight.
    Promote {
        /// The freight.
        freight: FreightId,
        /// The approval gate its rollout waits for (manual stages).
        approval: Option<String>,
    },
    /// The freight the stage runs failed here: go back to the previous verified freight.
    RollBack {
        /// The failed freight.
        from: FreightId,
        /// The freight to go back to.
        to: FreightId,
    },
    /// A promotion is in progress: carry it on (its rollout may be waiting for an approval).
    /// Freeze windows do not stop it here: a forward promotion's rollout has the stage's
    /// freeze gate (`freeze-<stage>`, pre-flight, after the approval gate), so it moves no
    /// traffic while a window is on, even when approved during it.
    Continue(Promotion),
    /// Newer freight is verified upstream but has not soaked long enough.
    Soaking {
        /// The freight.
        freight: FreightId,
        /// When it will have soaked.
        until: Timestamp,
    },
    /// Newer freight is ready, but a freeze window holds the stage.
    Frozen {
        /// The freight.
        freight: FreightId,
        /// When the window (and those right after it) ends.
        until: Timestamp,
        /// The window's reason.
        reason: String,
    },
    /// Something needs a person.
    Blocked(Blocked),
}

/// Why a stage cannot move without a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Blocked {
    /// The newest freight failed in a stage upstream, so it never comes here.
    FailedUpstream {
        /// The freight.
        freight: FreightId,
        /// Where it failed.
        stage: String,
        /// Why.
        reason: String,
    },
    /// The freight the stage runs failed, and no earlier verified freight is left to go back to.
    NothingToRollBackTo {
        /// The failed freight.
        freight: FreightId,
    },
}

/// What every stage does next, upstream stages first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Each stage's next move.
    pub stages: Vec<(String, Next)>,
}

impl Decision {
    /// When the planner should be asked again at the latest (the end of a soak or a freeze).
    pub fn wake_at(&self) -> Option<Timestamp> {
        self.stages
            .iter()
            .filter_map(|(_, n)| match n {
                Next::Soaking { until, .. } | Next::Frozen { until, .. } => Some(*until),
                _ => None,
            })
            .min()
    }

    /// Whether nothing will happen without new freight or a person: every stage idle or blocked.
    pub fn is_settled(&self) -> bool {
        self.stages
            .iter()
            .all(|(_, n)| matches!(n, Next::Idle | Next::Blocked(_)))
    }

    /// The next move of stage `name`.
    pub fn next(&self, name: &str) -> Option<&Next> {
        self.stages.iter().find(|(s, _)| s == name).map(|(_, n)| n)
    }
}

/// Decides what every stage of `pipeline` does next, given `state` at `now`.
pub fn decide(pipeline: &Pipeline, state: &PipelineState, now: Timestamp) -> Decision {
    Decision {
        stages: pipeline
            .stages()
            .iter()
            .map(|stage| (stage.name.clone(), decide_stage(stage, state, now)))
            .collect(),
    }
}

/// Decides what stage `stage` does next.
pub fn decide_stage(stage: &Stage, state: &PipelineState, now: Timestamp) -> Next {
    let here = state.stage(&stage.name);
    if let Some(promotion) = &here.promotion {
        // Driven even in a freeze window: its rollout holds at the stage's freeze gate.
        return Next::Continue(promotion.clone());
    }
    if let Some(current) = here.current_id()
        && here.failed.contains_key(current)
    {
        return match previous_verified(&here, current) {
            Some(to) => Next::RollBack {
                from: current.clone(),
                to,
            },
            None => Next::Blocked(Blocked::NothingToRollBackTo {
                freight: current.clone(),
            }),
        };
    }
    let current_pos = here.current_id().and_then(|c| state.position(c));
    let mut blocked = None;
    // Newest first; only freight newer than what the stage runs and not failed here.
    for (pos, entry) in state.freight.iter().enumerate().rev() {
        if current_pos.is_some_and(|c| pos <= c) {
            break;
        }
        if here.failed.contains_key(&entry.id) {
            continue;
        }
        let failed_upstream = stage.ancestors.iter().find_map(|a| {
            let failure = state.stages.get(a)?.failed.get(&entry.id)?;
            Some((a, failure))
        });
        if let Some((at, failure)) = failed_upstream {
            // Never here; older freight still may come.
            blocked.get_or_insert_with(|| Blocked::FailedUpstream {
                freight: entry.id.clone(),
                stage: at.clone(),
                reason: failure.reason.clone(),
            });
            continue;
        }
        match readiness(stage, state, &entry.id, now) {
            Ready::No => {}
            Ready::After(until) => return gate(stage, now, entry.id.clone(), Some(until)),
            Ready::Now => return gate(stage, now, entry.id.clone(), None),
        }
    }
    blocked.map_or(Next::Idle, Next::Blocked)
}

enum Ready {
    No,
    After(Timestamp),
    Now,
}

/// Whether `freight` may come to `stage`: verified in its upstreams (all or one) and soaked.
fn readiness(stage: &Stage, state: &PipelineState, freight: &FreightId, now: Timestamp) -> Ready {
    if stage.upstreams.is_empty() {
        return Ready::Now;
    }
    // For each upstream: None (not verified), Some(time it will have soaked).
    let soaked_at: Vec<Option<Timestamp>> = stage
        .upstreams
        .iter()
        .map(|u| {
            let s = state.stages.get(u)?;
            if !s.is_verified(freight) {
                return None;
            }
            let v = &s.verified[freight];
            match v.left {
                // It left the upstream: it soaked there from `at` to `left`, and no longer.
                Some(left) if left.saturating_since(v.at) >= stage.soak => Some(v.at),
                Some(_) => None,
                None => Some(v.at + stage.soak),
            }
        })
        .collect();
    let ready_at = match stage.availability {
        Availability::All => {
            if soaked_at.iter().any(Option::is_none) {
                return Ready::No;
            }
            soaked_at.into_iter().flatten().max()
        }
        Availability::OneOf => soaked_at.into_iter().flatten().min(),
    };
    match ready_at {
        None => Ready::No,
        Some(t) if t <= now => Ready::Now,
        Some(t) => Ready::After(t),
    }
}

/// Freight that is available: soaking, frozen, or promote.
fn gate(
    stage: &Stage,
    now: Timestamp,
    freight: FreightId,
    soaking_until: Option<Timestamp>,
) -> Next {
    if let Some(until) = soaking_until {
        return Next::Soaking { freight, until };
    }
    if let Some((until, reason)) = calendar::frozen(&stage.freeze, now) {
        return Next::Frozen {
            freight,
            until,
            reason,
        };
    }
    Next::Promote {
        freight,
        approval: stage.approval_gate(),
    }
}

/// The freight verified here most recently, other than `current`, that has not failed here.
pub(crate) fn previous_verified(here: &StageState, current: &FreightId) -> Option<FreightId> {
    here.verified
        .iter()
        .filter(|(id, _)| *id != current && !here.failed.contains_key(*id))
        .max_by_key(|(_, v)| v.at)
        .map(|(id, _)| id.clone())
}

/// How long `freight` has soaked in `stage` at `now` (zero if it is not verified there).
pub fn soaked(state: &PipelineState, stage: &str, freight: &FreightId, now: Timestamp) -> Duration {
    state
        .stages
        .get(stage)
        .and_then(|s| s.verified.get(freight))
        .map_or(Duration::ZERO, |v| {
            v.left.unwrap_or(now).saturating_since(v.at)
        })
}
