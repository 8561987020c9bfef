//! The persisted state of one rollout: everything a fresh engine needs to carry on.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use cutover_analysis::{RunStatus, Tally};
use serde::{Deserialize, Serialize};

use crate::analysis::{AnalysisResult, Comparison, SequentialState};
use crate::planner::{Action, Setup};
use crate::record::DecisionRecord;
use crate::{
    GateVerdict, HeaderRoute, Health, Mirror, ReplicaStatus, RevisionId, Revisions, RolloutId,
    Timestamp, TrafficSplit,
};

/// The version of the state format written by this release.
pub const STATE_FORMAT: u32 = 1;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Checking pre-flight gates; nothing has changed yet.
    PreFlight,
    /// Applying expand migrations; no traffic has moved yet.
    Expanding,
    /// Running the strategy's steps.
    Progressing,
    /// Switching all traffic to the candidate, then retiring the old revision and running
    /// contract migrations.
    Promoting,
    /// Returning all traffic to stable and undoing what can be undone.
    RollingBack,
    /// Finished; see [`RolloutState::outcome`].
    Done,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::PreFlight => "pre-flight",
            Phase::Expanding => "expanding",
            Phase::Progressing => "progressing",
            Phase::Promoting => "promoting",
            Phase::RollingBack => "rolling back",
            Phase::Done => "done",
        })
    }
}

/// A value and when it was observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed<T> {
    /// The value.
    pub value: T,
    /// When.
    pub at: Timestamp,
}

/// Progress of one analysis run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisProgress {
    /// The analysis.
    pub analysis: String,
    /// When this run (or its latest extension) began.
    pub started_at: Timestamp,
    /// Measurements so far.
    pub tally: Tally,
    /// When the latest measurement was taken.
    pub last_at: Option<Timestamp>,
    /// The latest measurement's result, if it produced one.
    pub last: Option<AnalysisResult>,
    /// How many times the run was extended after being inconclusive.
    pub extensions: u32,
    /// A sequential analysis's test, saved after every measurement so that a resumed rollout
    /// carries on with the same test (and the same false-rollback guarantee). It is kept when
    /// the run is extended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<SequentialState>,
}

impl AnalysisProgress {
    pub(crate) fn new(analysis: &str, started_at: Timestamp) -> Self {
        AnalysisProgress {
            analysis: analysis.to_owned(),
            started_at,
            tally: Tally::default(),
            last_at: None,
            last: None,
            extensions: 0,
            sequential: None,
        }
    }

    /// A fresh run of the same analysis from `now` (an extension, or an accepted inconclusive
    /// background run). A sequential test goes on: its p-value stays valid however long it is
    /// watched.
    pub(crate) fn restarted(&self, now: Timestamp) -> Self {
        AnalysisProgress {
            sequential: self.sequential.clone(),
            ..AnalysisProgress::new(&self.analysis, now)
        }
    }

    /// The latest summary, or a description of the tally.
    pub fn summary(&self) -> String {
        let t = &self.tally;
        let counts = format!(
            "{} passed, {} failed, {} inconclusive, {} errors",
            t.passed, t.failed, t.inconclusive, t.errors
        );
        match &self.last {
            Some(last) if !last.summary.is_empty() => format!("{} ({counts})", last.summary),
            _ => counts,
        }
    }
}

/// A gate's answers so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateProgress {
    /// When it was first asked.
    pub first_checked_at: Timestamp,
    /// Its latest answer.
    pub last: Observed<GateVerdict>,
}

/// What happened to a migration step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MigrationStatus {
    /// Applied (expand or contract).
    Applied,
    /// Its apply failed for good, possibly part-way. A rollback reverts it like an applied
    /// step (revert is idempotent), if it is reversible.
    Attempted,
    /// Applied, then reverted by a rollback.
    Reverted,
}

/// Why a rollout is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// Paused through [`RolloutHandle::pause`](crate::RolloutHandle::pause).
    Manual,
    /// A `pause: {}` step without a duration.
    Step,
    /// An analysis was inconclusive and its plan says to pause.
    Inconclusive {
        /// The analysis.
        analysis: String,
        /// Whether it was the background analysis.
        background: bool,
        /// What it found.
        summary: String,
    },
    /// Blue-green with auto-promotion disabled, waiting to be promoted.
    AwaitingPromotion,
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseReason::Manual => f.write_str("paused by hand"),
            PauseReason::Step => f.write_str("pause step: waiting to be resumed"),
            PauseReason::Inconclusive {
                analysis, summary, ..
            } => {
                write!(f, "analysis `{analysis}` was inconclusive: {summary}")
            }
            PauseReason::AwaitingPromotion => f.write_str("waiting to be promoted"),
        }
    }
}

/// A pause in effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseState {
    /// Why.
    pub reason: PauseReason,
    /// Since when.
    pub since: Timestamp,
}

/// Progress of a promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionProgress {
    /// When promotion began.
    pub started_at: Timestamp,
    /// When all traffic reached the candidate.
    pub switched_at: Option<Timestamp>,
    /// Whether post-promotion analysis has passed (or there is none).
    pub analysis_done: bool,
    /// Whether the old revision has been scaled down or a contract migration started: from
    /// here on the rollout can only go forward.
    pub point_of_no_return: bool,
}

/// Why a rollout was rolled back automatically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// An analysis run failed.
    AnalysisFailed {
        /// The analysis.
        analysis: String,
        /// What it found, with the numbers.
        summary: String,
    },
    /// An analysis could not measure, too many times in a row.
    AnalysisError {
        /// The analysis.
        analysis: String,
        /// The latest error.
        summary: String,
    },
    /// An analysis was inconclusive and its plan says to abort.
    AnalysisInconclusive {
        /// The analysis.
        analysis: String,
        /// What it found.
        summary: String,
    },
    /// A health probe reported the candidate failed.
    Unhealthy {
        /// The revision.
        revision: RevisionId,
        /// The probe's reason.
        reason: String,
    },
    /// A step waited on the world longer than the progress deadline.
    ProgressDeadline {
        /// The deadline.
        #[serde(with = "crate::time::serde_duration")]
        deadline: Duration,
        /// What it was waiting for.
        waiting_for: String,
    },
    /// A gate said no, or stayed pending past its timeout.
    GateClosed {
        /// The gate.
        gate: String,
        /// Its reason.
        reason: String,
    },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::AnalysisFailed { analysis, summary } => {
                write!(f, "analysis `{analysis}` failed: {summary}")
            }
            StopReason::AnalysisError { analysis, summary } => {
                write!(f, "analysis `{analysis}` could not measure: {summary}")
            }
            StopReason::AnalysisInconclusive { analysis, summary } => {
                write!(f, "analysis `{analysis}` stayed inconclusive: {summary}")
            }
            StopReason::Unhealthy { revision, reason } => {
                write!(f, "revision `{revision}` is unhealthy: {reason}")
            }
            StopReason::ProgressDeadline {
                deadline,
                waiting_for,
            } => write!(
                f,
                "no progress within the {} deadline: still waiting for {waiting_for}",
                humantime::format_duration(*deadline)
            ),
            StopReason::GateClosed { gate, reason } => write!(f, "gate `{gate}` closed: {reason}"),
        }
    }
}

/// How a rollout that is rolling back will end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Rolled back automatically.
    RolledBack(StopReason),
    /// Aborted through the handle.
    Aborted {
        /// The reason given.
        reason: String,
    },
    /// A provider failed for good; the run returns an error once traffic is back on stable.
    Failed {
        /// The operation and the error.
        error: String,
    },
    /// An A/B test that did not promote.
    Concluded {
        /// The comparison, if one was made.
        comparison: Option<Comparison>,
        /// What the comparison found.
        summary: String,
    },
}

/// Progress of a rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackProgress {
    /// How it will end.
    pub ending: Ending,
    /// When it began.
    pub started_at: Timestamp,
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The candidate is the new stable.
    Promoted,
    /// Rolled back automatically; all traffic is on stable.
    RolledBack(StopReason),
    /// Aborted through the handle; all traffic is on stable.
    Aborted {
        /// The reason given.
        reason: String,
    },
    /// An A/B test ended without promoting; all traffic is on stable.
    Concluded {
        /// The comparison, with the winner if there was one.
        comparison: Option<Comparison>,
        /// What the comparison found.
        summary: String,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Promoted => f.write_str("promoted"),
            Outcome::RolledBack(reason) => write!(f, "rolled back: {reason}"),
            Outcome::Aborted { reason } => write!(f, "aborted: {reason}"),
            Outcome::Concluded { summary, .. } => write!(f, "concluded: {summary}"),
        }
    }
}

/// The stored end of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Final {
    /// It ended with an outcome.
    Outcome(Outcome),
    /// It failed: a provider error that retries did not cure. Traffic was returned to stable.
    Failed {
        /// The error.
        error: String,
    },
}

/// Everything a fresh engine needs to carry on a rollout, written to the
/// [`StateStore`](crate::StateStore) before every action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    /// [`STATE_FORMAT`] when written.
    pub format: u32,
    /// The rollout.
    pub id: RolloutId,
    /// The plan and the providers' shape it was started with; a resumed engine must match it.
    pub setup: Setup,
    /// When it started.
    pub started_at: Timestamp,
    /// Where it is.
    pub phase: Phase,
    /// Index of the current step within the strategy's steps.
    pub step: usize,
    /// When the current step (or phase) began.
    pub step_started_at: Timestamp,
    /// When progress was last made; the progress deadline counts from here.
    pub progress_since: Timestamp,
    /// Whether any split has been sent to the routers.
    pub traffic_touched: bool,
    /// The split confirmed on every router, once one has been set.
    pub split: Option<TrafficSplit>,
    /// Header routes this rollout has set, by name.
    pub header_routes: BTreeMap<String, HeaderRoute>,
    /// Mirrors this rollout has set, by name.
    pub mirrors: BTreeMap<String, Mirror>,
    /// Replica counts this rollout has asked for, by revision.
    pub replicas: BTreeMap<RevisionId, u32>,
    /// The latest replica observation since the last change.
    pub workload: Option<Observed<BTreeMap<RevisionId, ReplicaStatus>>>,
    /// The candidate's latest health since the last change.
    pub health: Option<Observed<Health>>,
    /// The current step's (or post-promotion) analysis run.
    pub analysis: Option<AnalysisProgress>,
    /// The background analysis run.
    pub background: Option<AnalysisProgress>,
    /// Gate answers, by gate name.
    pub gates: BTreeMap<String, GateProgress>,
    /// Migration steps that ran, by id.
    pub migrations: BTreeMap<String, MigrationStatus>,
    /// A pause in effect.
    pub pause: Option<PauseState>,
    /// Promote-full was asked for.
    pub promote_full: bool,
    /// Progress of promotion, once it began.
    pub promotion: Option<PromotionProgress>,
    /// Progress of a rollback, once it began.
    pub rollback: Option<RollbackProgress>,
    /// The action decided and saved but not yet confirmed done. A resumed engine carries it
    /// out first.
    pub pending: Option<Action>,
    /// How it ended, once done.
    pub outcome: Option<Final>,
    /// Every decision so far, in order.
    pub records: Vec<DecisionRecord>,
}

impl RolloutState {
    /// The state of a rollout that has not started.
    pub fn new(id: RolloutId, setup: Setup, now: Timestamp) -> Self {
        RolloutState {
            format: STATE_FORMAT,
            id,
            setup,
            started_at: now,
            phase: Phase::PreFlight,
            step: 0,
            step_started_at: now,
            progress_since: now,
            traffic_touched: false,
            split: None,
            header_routes: BTreeMap::new(),
            mirrors: BTreeMap::new(),
            replicas: BTreeMap::new(),
            workload: None,
            health: None,
            analysis: None,
            background: None,
            gates: BTreeMap::new(),
            migrations: BTreeMap::new(),
            pause: None,
            promote_full: false,
            promotion: None,
            rollback: None,
            pending: None,
            outcome: None,
            records: Vec::new(),
        }
    }

    /// The rollout's revisions.
    pub fn revisions(&self) -> &Revisions {
        &self.setup.revisions
    }

    /// Whether the rollout can no longer be rolled back: the old revision has been scaled down
    /// or contract migrations have started.
    pub fn past_point_of_no_return(&self) -> bool {
        self.promotion
            .as_ref()
            .is_some_and(|p| p.point_of_no_return)
    }

    /// The status of an analysis run under the limits of `run`.
    pub(crate) fn run_status(
        progress: Option<&AnalysisProgress>,
        limits: &cutover_analysis::RunLimits,
    ) -> RunStatus {
        progress.map_or(RunStatus::Running, |p| p.tally.status(limits))
    }
}
