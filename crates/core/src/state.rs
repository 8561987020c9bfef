//! The persisted state of one rollout: everything a fresh engine needs to carry on.

use std::collections::BTreeMap;
use std::sync::Arc;

use cutover_analysis::{RunStatus, Tally};
use serde::{Deserialize, Serialize};

use crate::action::{Action, Slot};
use crate::analysis::{AnalysisResult, SequentialState};
use crate::plan::{AnalysisRun, Strategy};
use crate::record::DecisionRecord;
use crate::setup::{Setup, Step};
pub use crate::status::{Ending, Final, Outcome, PauseReason, Phase, StopReason};
use crate::{
    Approval, GateVerdict, HeaderRoute, Health, Mirror, ReplicaStatus, RevisionId, Revisions,
    RolloutId, Timestamp, TrafficSplit,
};

/// The version of the state format written by this release.
///
/// Format 2 keeps decision records out of the state (in the store's append-only log) and adds
/// the record and inbox positions; format 1 states are refused with an explanation.
pub const STATE_FORMAT: u32 = 2;

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
    /// Someone approved or rejected the gate since: ask it again now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answered: bool,
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

/// Progress of a rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackProgress {
    /// How it will end.
    pub ending: Ending,
    /// When it began.
    pub started_at: Timestamp,
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
    /// Shared with the engine (it never changes during a rollout).
    pub setup: Arc<Setup>,
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
    /// People's approvals and rejections of gates, by gate name (the latest per gate).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approvals: BTreeMap<String, Approval>,
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
    /// When the state was last saved.
    pub updated_at: Timestamp,
    /// The `seq` of the latest decision record, whether or not it is in the log yet.
    pub last_seq: u64,
    /// Records saved with this state but not yet confirmed appended to the store's decision
    /// log. The engine appends them after the save (appending is idempotent by `seq`), so a
    /// crash between the two loses nothing; normally one or two records.
    pub unlogged: Vec<DecisionRecord>,
    /// The inbox position of the latest command applied: commands after it are pending. Saved
    /// with the command's effect, so each command applies exactly once.
    pub last_command: u64,
}

impl RolloutState {
    /// The state of a rollout that has not started.
    pub fn new(id: RolloutId, setup: impl Into<Arc<Setup>>, now: Timestamp) -> Self {
        let setup = setup.into();
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
            approvals: BTreeMap::new(),
            migrations: BTreeMap::new(),
            pause: None,
            promote_full: false,
            promotion: None,
            rollback: None,
            pending: None,
            outcome: None,
            updated_at: now,
            last_seq: 0,
            unlogged: Vec::new(),
            last_command: 0,
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

impl RolloutState {
    /// The analysis run a measurement in `slot` belongs to, and the count it defaults to, in
    /// the current step or phase.
    pub(crate) fn analysis_run(
        &self,
        setup: &Setup,
        slot: Slot,
    ) -> Option<(AnalysisRun, Option<u32>)> {
        match slot {
            Slot::Background => match &setup.plan.strategy {
                Strategy::Canary(c) => c
                    .background_analysis
                    .as_ref()
                    .map(|bg| (bg.analysis.clone(), None)),
                _ => None,
            },
            Slot::Step => match self.phase {
                Phase::Progressing => match setup.step(self.step) {
                    Some(Step::Analysis(run)) => Some((run.clone(), Some(1))),
                    _ => None,
                },
                Phase::Promoting => setup
                    .post_promotion_analysis()
                    .map(|r| (r.clone(), Some(1))),
                _ => None,
            },
        }
    }
}
