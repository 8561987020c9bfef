//! The failover planner: pure functions from probe results, commands and the time to target
//! modes and a traffic split.
//!
//! Each target (a region, a zone, a cluster) is a revision in the routers' split, with the
//! weight it gets while everything is healthy and the most it may ever carry (its capacity).
//!
//! - A target in service that fails `fail_after` consecutive checks is **drained**: its weight
//!   goes to 0 and is spread over the targets in service, in proportion to their weights and
//!   never above their capacity. The last target in service is never drained.
//! - A drained target is held out for its **hold-out** (doubled at every new drain up to a
//!   maximum, so a flapping target is held out longer each time; forgiven after it has served
//!   in full for `forgive_after`). After the hold-out and `restore_after` consecutive passes it
//!   is **restored** in `restore_steps` steps, one per passing check. A failure while restoring
//!   drains it again at once.
//! - When the targets in service cannot absorb a drained weight within their capacity, the rest
//!   stays on the drained targets (reported as a capacity shortfall): overloading a healthy
//!   region is worse than serving from a degraded one.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{Granularity, RevisionId, TOTAL_BASIS_POINTS, Timestamp, TrafficSplit, Weight};

/// One target of a failover guard: a revision in the routers' split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The revision the routers send its traffic to.
    pub id: RevisionId,
    /// Its share while every target is healthy.
    pub weight: Weight,
    /// The most it may carry when others are drained.
    pub capacity: Weight,
}

impl Target {
    /// A target with a weight and a capacity.
    pub fn new(id: RevisionId, weight: Weight, capacity: Weight) -> Self {
        Target {
            id,
            weight,
            capacity,
        }
    }
}

/// Why a failover policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// No targets.
    #[error("a failover guard needs at least one target")]
    NoTargets,
    /// A target listed twice.
    #[error("target `{0}` is listed twice")]
    Duplicate(RevisionId),
    /// Weights that do not add up to 100 %.
    #[error("target weights add up to {sum} bp; they must add up to 10000 bp (100 %)")]
    WeightSum {
        /// The sum found.
        sum: u32,
    },
    /// A capacity below the target's own weight.
    #[error("target `{target}`: capacity {capacity} is below its weight {weight}")]
    CapacityBelowWeight {
        /// The target.
        target: RevisionId,
        /// Its capacity.
        capacity: Weight,
        /// Its weight.
        weight: Weight,
    },
    /// Capacities that cannot carry all traffic together.
    #[error("target capacities add up to {sum} bp; together they must carry 10000 bp (100 %)")]
    CapacitySum {
        /// The sum found (after rounding down to the granularity).
        sum: u32,
    },
    /// A weight the routers cannot express.
    #[error("target `{target}`: weight {weight} is not a multiple of the routers' step {step}")]
    Granularity {
        /// The target.
        target: RevisionId,
        /// Its weight.
        weight: Weight,
        /// The routers' step.
        step: Granularity,
    },
    /// A count or duration that must be positive.
    #[error("`{field}` must be at least 1")]
    Zero {
        /// The field.
        field: &'static str,
    },
}

/// How a failover guard decides: its targets, thresholds and timings. Built with
/// [`FailoverPolicy::new`], which checks it.
///
/// ```
/// use cutover_core::guard::{FailoverPolicy, Target};
/// use cutover_core::Weight;
/// let t = |id: &str, w, c| Target::new(id.parse().unwrap(), Weight::from_percent(w).unwrap(), Weight::from_percent(c).unwrap());
/// let policy = FailoverPolicy::new(vec![t("eu", 34, 60), t("us", 33, 60), t("ap", 33, 60)])?
///     .fail_after(2)
///     .restore_after(3);
/// assert_eq!(policy.targets().len(), 3);
/// # Ok::<(), cutover_core::guard::PolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverPolicy {
    targets: Vec<Target>,
    granularity: Granularity,
    fail_after: u32,
    restore_after: u32,
    restore_steps: u32,
    #[serde(with = "crate::time::serde_duration")]
    hold_out: Duration,
    #[serde(with = "crate::time::serde_duration")]
    max_hold_out: Duration,
    #[serde(with = "crate::time::serde_duration")]
    forgive_after: Duration,
}

impl FailoverPolicy {
    /// A policy over `targets`, in whole percent, with the defaults: drain after 2 failed
    /// checks, restore after 3 passes in 4 steps, hold out 30 s doubling to 10 min, forgive
    /// after 30 min of full service.
    pub fn new(targets: Vec<Target>) -> Result<Self, PolicyError> {
        Self::with_granularity(targets, Granularity::PERCENT)
    }

    /// A policy whose weights are multiples of `granularity` (the coarsest of the routers').
    pub fn with_granularity(
        targets: Vec<Target>,
        granularity: Granularity,
    ) -> Result<Self, PolicyError> {
        if targets.is_empty() {
            return Err(PolicyError::NoTargets);
        }
        let mut seen = std::collections::BTreeSet::new();
        let step = u32::from(granularity.step());
        let (mut weights, mut capacities) = (0u32, 0u32);
        for t in &targets {
            if !seen.insert(&t.id) {
                return Err(PolicyError::Duplicate(t.id.clone()));
            }
            if t.capacity < t.weight {
                return Err(PolicyError::CapacityBelowWeight {
                    target: t.id.clone(),
                    capacity: t.capacity,
                    weight: t.weight,
                });
            }
            if !granularity.allows(t.weight) {
                return Err(PolicyError::Granularity {
                    target: t.id.clone(),
                    weight: t.weight,
                    step: granularity,
                });
            }
            weights += u32::from(t.weight.basis_points());
            capacities += u32::from(t.capacity.basis_points()) / step * step;
        }
        if weights != u32::from(TOTAL_BASIS_POINTS) {
            return Err(PolicyError::WeightSum { sum: weights });
        }
        if capacities < u32::from(TOTAL_BASIS_POINTS) {
            return Err(PolicyError::CapacitySum { sum: capacities });
        }
        Ok(FailoverPolicy {
            targets,
            granularity,
            fail_after: 2,
            restore_after: 3,
            restore_steps: 4,
            hold_out: Duration::from_secs(30),
            max_hold_out: Duration::from_mins(10),
            forgive_after: Duration::from_mins(30),
        })
    }

    /// Consecutive failed checks that drain a target (`k`, at least 1).
    pub fn fail_after(mut self, checks: u32) -> Self {
        self.fail_after = checks.max(1);
        self
    }

    /// Consecutive passed checks, after the hold-out, before a drained target is restored
    /// (`m`, at least 1).
    pub fn restore_after(mut self, checks: u32) -> Self {
        self.restore_after = checks.max(1);
        self
    }

    /// In how many steps (one per passing check) a target gets its weight back (at least 1).
    pub fn restore_steps(mut self, steps: u32) -> Self {
        self.restore_steps = steps.max(1);
        self
    }

    /// The hold-out after a first drain, and the most it doubles to.
    pub fn hold_out(mut self, first: Duration, max: Duration) -> Self {
        self.hold_out = first;
        self.max_hold_out = max.max(first);
        self
    }

    /// How long a target must serve in full before its earlier drains are forgiven.
    pub fn forgive_after(mut self, after: Duration) -> Self {
        self.forgive_after = after;
        self
    }

    /// The targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The routers' step.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// The hold-out after the `trips`-th drain (from 1): doubled each time, capped.
    pub fn hold_out_after(&self, trips: u32) -> Duration {
        let factor = 1u32
            .checked_shl(trips.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.hold_out
            .checked_mul(factor)
            .unwrap_or(self.max_hold_out)
            .min(self.max_hold_out)
    }

    /// The fresh state of a guard under this policy: every target serving.
    pub fn initial_state(&self) -> FailoverState {
        FailoverState {
            targets: self
                .targets
                .iter()
                .map(|t| (t.id.clone(), TargetState::default()))
                .collect(),
            paused: false,
        }
    }
}

/// Where a target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
#[non_exhaustive]
pub enum Mode {
    /// Carries its weight.
    #[default]
    Serving,
    /// Carries nothing (unless capacity elsewhere is short) until `hold_until` and enough
    /// passes.
    Drained {
        /// When it was drained.
        since: Timestamp,
        /// When its hold-out ends.
        hold_until: Timestamp,
    },
    /// Getting its weight back: `level` of the policy's restore steps.
    Restoring {
        /// Steps given back so far.
        level: u32,
    },
}

/// One target's state: its mode and its counters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TargetState {
    /// Its mode.
    #[serde(flatten)]
    pub mode: Mode,
    /// Consecutive failed checks.
    pub fails: u32,
    /// Consecutive passed checks.
    pub passes: u32,
    /// Drains not yet forgiven; sets the next hold-out.
    pub trips: u32,
    /// Since when it has served in full (`None`: never since the last drain, or always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_since: Option<Timestamp>,
    /// Held out by hand until unpinned.
    #[serde(default)]
    pub pinned_out: bool,
}

impl TargetState {
    /// Whether it counts as a target in service: not drained and not pinned out.
    pub fn in_service(&self) -> bool {
        !self.pinned_out && !matches!(self.mode, Mode::Drained { .. })
    }
}

/// A failover guard's state: every target's, and whether the guard is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverState {
    /// Per target.
    pub targets: BTreeMap<RevisionId, TargetState>,
    /// Paused by hand: probes are counted, but no target changes mode.
    pub paused: bool,
}

/// The result of one health check of a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The target.
    pub target: RevisionId,
    /// Whether it passed.
    pub passed: bool,
    /// What the probe said, for the record.
    pub detail: String,
}

/// What a failover guard is told from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "command", content = "target")]
#[non_exhaustive]
pub enum FailoverCommand {
    /// Stop changing targets' modes (probes go on being counted).
    Pause,
    /// Change modes again.
    Resume,
    /// Hold a target out until unpinned.
    PinOut(RevisionId),
    /// Let a pinned target back in; it is restored step by step.
    Unpin(RevisionId),
    /// Put a target back to its full weight now, forgetting its failures.
    ForceRestore(RevisionId),
}

/// What happened to a failover guard's targets; kept in the guard's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
#[non_exhaustive]
pub enum FailoverEvent {
    /// A target was drained after failing checks (or while being restored).
    Drained {
        /// The target.
        target: RevisionId,
        /// Consecutive failures seen.
        failures: u32,
        /// How long it is held out at least.
        #[serde(with = "crate::time::serde_duration")]
        hold_out: Duration,
        /// The last probe's detail.
        detail: String,
    },
    /// A target failed enough checks to be drained but is the last in service, so it stays.
    KeptLastInService {
        /// The target.
        target: RevisionId,
        /// The last probe's detail.
        detail: String,
    },
    /// A target got a step of its weight back.
    RestoreStep {
        /// The target.
        target: RevisionId,
        /// Steps given back so far.
        level: u32,
        /// Steps in all.
        of: u32,
    },
    /// A target carries its full weight again.
    Restored {
        /// The target.
        target: RevisionId,
    },
    /// A command was applied.
    Applied {
        /// The command.
        command: FailoverCommand,
    },
    /// A command was refused.
    Refused {
        /// The command.
        command: FailoverCommand,
        /// Why.
        reason: String,
    },
}

/// Folds one check into the state; returns what changed.
pub fn observe(
    policy: &FailoverPolicy,
    state: &mut FailoverState,
    check: &Check,
    now: Timestamp,
) -> Vec<FailoverEvent> {
    let others_in_service = state
        .targets
        .iter()
        .filter(|(id, t)| **id != check.target && t.in_service())
        .count();
    let paused = state.paused;
    let Some(t) = state.targets.get_mut(&check.target) else {
        return Vec::new();
    };
    let target = check.target.clone();
    let mut events = Vec::new();
    if check.passed {
        t.passes = t.passes.saturating_add(1);
        t.fails = 0;
        if paused || t.pinned_out {
            return events;
        }
        match t.mode {
            Mode::Serving => {
                if t.trips > 0
                    && t.serving_since
                        .is_some_and(|s| now.saturating_since(s) >= policy.forgive_after)
                {
                    t.trips = 0;
                }
            }
            Mode::Drained { hold_until, .. } => {
                if t.passes >= policy.restore_after && now >= hold_until {
                    step_up(policy, t, target, 0, now, &mut events);
                }
            }
            Mode::Restoring { level } => step_up(policy, t, target, level, now, &mut events),
        }
    } else {
        t.fails = t.fails.saturating_add(1);
        t.passes = 0;
        if paused || t.pinned_out {
            return events;
        }
        let drain = match t.mode {
            Mode::Serving => t.fails >= policy.fail_after,
            Mode::Restoring { .. } => true,
            Mode::Drained { .. } => false,
        };
        if drain && others_in_service == 0 {
            if t.fails == policy.fail_after || matches!(t.mode, Mode::Restoring { .. }) {
                events.push(FailoverEvent::KeptLastInService {
                    target,
                    detail: check.detail.clone(),
                });
            }
        } else if drain {
            t.trips = t.trips.saturating_add(1);
            let hold_out = policy.hold_out_after(t.trips);
            t.mode = Mode::Drained {
                since: now,
                hold_until: now + hold_out,
            };
            t.serving_since = None;
            events.push(FailoverEvent::Drained {
                target,
                failures: t.fails,
                hold_out,
                detail: check.detail.clone(),
            });
        }
    }
    events
}

fn step_up(
    policy: &FailoverPolicy,
    t: &mut TargetState,
    target: RevisionId,
    level: u32,
    now: Timestamp,
    events: &mut Vec<FailoverEvent>,
) {
    let level = level + 1;
    if level >= policy.restore_steps {
        t.mode = Mode::Serving;
        t.serving_since = Some(now);
        events.push(FailoverEvent::Restored { target });
    } else {
        t.mode = Mode::Restoring { level };
        events.push(FailoverEvent::RestoreStep {
            target,
            level,
            of: policy.restore_steps,
        });
    }
}

/// Folds a command into the state; returns whether it was applied or refused, and why.
pub fn command(
    state: &mut FailoverState,
    command: &FailoverCommand,
    now: Timestamp,
) -> FailoverEvent {
    let refuse = |reason: &str| FailoverEvent::Refused {
        command: command.clone(),
        reason: reason.to_owned(),
    };
    match command {
        FailoverCommand::Pause => state.paused = true,
        FailoverCommand::Resume => state.paused = false,
        FailoverCommand::PinOut(id) => {
            let others = state
                .targets
                .iter()
                .filter(|(other, t)| *other != id && t.in_service())
                .count();
            let Some(t) = state.targets.get_mut(id) else {
                return refuse("no such target");
            };
            if t.in_service() && others == 0 {
                return refuse("it is the last target in service");
            }
            t.pinned_out = true;
        }
        FailoverCommand::Unpin(id) => {
            let Some(t) = state.targets.get_mut(id) else {
                return refuse("no such target");
            };
            if !t.pinned_out {
                return refuse("it is not pinned out");
            }
            t.pinned_out = false;
            if t.mode == Mode::Serving {
                t.mode = Mode::Restoring { level: 0 };
            }
        }
        FailoverCommand::ForceRestore(id) => {
            let Some(t) = state.targets.get_mut(id) else {
                return refuse("no such target");
            };
            *t = TargetState {
                serving_since: Some(now),
                ..TargetState::default()
            };
        }
    }
    FailoverEvent::Applied {
        command: command.clone(),
    }
}

/// The split a state asks for, and the drained targets that still carry traffic because the
/// others lack capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Weights per target; always 100 %, none above its capacity.
    pub split: TrafficSplit,
    /// Targets out of service that still carry traffic, with how much.
    pub shortfall: Vec<(RevisionId, Weight)>,
}

/// The split for `state`: targets in service keep their weight (targets being restored a
/// share of it), and what the others would carry goes to the targets in full service in
/// proportion to their weights, within capacity; then to targets being restored; then back to
/// drained targets; and last to targets pinned out by hand.
pub fn allocate(policy: &FailoverPolicy, state: &FailoverState) -> Allocation {
    let step = u32::from(policy.granularity.step());
    let total = u32::from(TOTAL_BASIS_POINTS) / step;
    let n = policy.targets.len();
    let desired: Vec<u32> = policy
        .targets
        .iter()
        .map(|t| u32::from(t.weight.basis_points()) / step)
        .collect();
    let cap: Vec<u32> = policy
        .targets
        .iter()
        .map(|t| u32::from(t.capacity.basis_points()) / step)
        .collect();
    let default = TargetState::default();
    let tier: Vec<(u8, u32)> = policy
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let s = state.targets.get(&t.id).unwrap_or(&default);
            match (s.pinned_out, s.mode) {
                (false, Mode::Serving) => (0, desired[i]),
                (false, Mode::Restoring { level }) => {
                    (1, desired[i] * level / policy.restore_steps.max(1))
                }
                (false, Mode::Drained { .. }) => (2, 0),
                (true, _) => (3, 0),
            }
        })
        .collect();
    let mut alloc: Vec<u32> = tier.iter().map(|&(_, base)| base).collect();
    let mut deficit = total - alloc.iter().sum::<u32>();
    for level in 0..=3u8 {
        let members: Vec<usize> = (0..n).filter(|&i| tier[i].0 == level).collect();
        deficit = fill(&mut alloc, &cap, &desired, &members, deficit);
    }
    let split = TrafficSplit::new(
        policy
            .targets
            .iter()
            .zip(&alloc)
            .map(|(t, &units)| (t.id.clone(), to_weight(units * step))),
    )
    .expect("an allocation adds up to 100 %: capacities were checked to carry it");
    let shortfall = policy
        .targets
        .iter()
        .zip(&alloc)
        .zip(&tier)
        .filter(|&((_, &units), &(level, _))| level >= 2 && units > 0)
        .map(|((t, &units), _)| (t.id.clone(), to_weight(units * step)))
        .collect();
    Allocation { split, shortfall }
}

fn to_weight(bp: u32) -> Weight {
    Weight::from_basis_points(u16::try_from(bp).unwrap_or(TOTAL_BASIS_POINTS))
        .unwrap_or(Weight::FULL)
}

/// Gives `deficit` units to `members` in proportion to `desired` (equally if all are 0),
/// never above `cap`; returns what could not be placed.
fn fill(alloc: &mut [u32], cap: &[u32], desired: &[u32], members: &[usize], deficit: u32) -> u32 {
    let mut deficit = deficit;
    loop {
        let open: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| alloc[i] < cap[i])
            .collect();
        if deficit == 0 || open.is_empty() {
            return deficit;
        }
        let share_of = |i: usize| {
            if open.iter().all(|&j| desired[j] == 0) {
                1
            } else {
                u64::from(desired[i])
            }
        };
        let sum: u64 = open.iter().map(|&i| share_of(i)).sum();
        let mut shares: Vec<(usize, u64, u64)> = open
            .iter()
            .map(|&i| {
                let exact = u64::from(deficit) * share_of(i);
                (i, exact / sum, exact % sum)
            })
            .collect();
        let given: u64 = shares.iter().map(|s| s.1).sum();
        let left = usize::try_from(u64::from(deficit) - given).unwrap_or(0);
        shares.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        for s in shares.iter_mut().take(left) {
            s.1 += 1;
        }
        let mut placed = 0u32;
        for (i, share, _) in shares {
            let room = cap[i] - alloc[i];
            let add = u32::try_from(share).unwrap_or(u32::MAX).min(room);
            alloc[i] += add;
            placed += add;
        }
        if placed == 0 {
            return deficit;
        }
        deficit -= placed;
    }
}

#[cfg(test)]
mod tests;
