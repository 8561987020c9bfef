//! [`PipelineState`]: where every freight is, kept as the pipeline's document in the store.

use std::collections::BTreeMap;

use cutover_core::{Approval, RolloutId, Tally, Timestamp};
use serde::{Deserialize, Serialize};

use crate::freight::{Freight, FreightId};

/// The format of [`PipelineState`] this release writes and reads.
pub const PIPELINE_FORMAT: u32 = 1;

/// Everything the planner needs about a pipeline: the freight submitted, and each stage's
/// freight, verifications, failures, promotion in progress and history. It is the body of the
/// pipeline's `pipeline` document in the [`StateStore`](cutover_core::StateStore).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PipelineState {
    /// [`PIPELINE_FORMAT`].
    pub format: u32,
    /// The freight submitted, oldest first: later is newer.
    pub freight: Vec<FreightEntry>,
    /// Each stage's state, by name (stages never touched are absent).
    pub stages: BTreeMap<String, StageState>,
    /// Promotions started so far (numbers the stages' rollouts).
    pub promotions: u64,
}

/// One submitted freight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FreightEntry {
    /// Its id.
    pub id: FreightId,
    /// What it holds.
    pub freight: Freight,
    /// Who submitted it.
    pub by: String,
    /// When.
    pub at: Timestamp,
}

/// What one stage holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StageState {
    /// The freight the stage runs now, and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Current>,
    /// Freight verified here, by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub verified: BTreeMap<FreightId, Verified>,
    /// Freight that failed here (its rollout, its verification, or a rollback by a person),
    /// by id. It is never promoted here again, nor anywhere downstream.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<FreightId, Failure>,
    /// The promotion in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
    /// What ran here, when, and how it ended, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

/// The freight a stage runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Current {
    /// The freight.
    pub freight: FreightId,
    /// Since when.
    pub since: Timestamp,
}

/// A verification that passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    /// When.
    pub at: Timestamp,
    /// When the stage moved on to other freight (`None`: it still runs it). The soak of this
    /// freight here is the time from `at` to `left`, or to now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<Timestamp>,
}

/// Why freight failed in a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// When.
    pub at: Timestamp,
    /// Why.
    pub reason: String,
}

/// How far a promotion has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionStep {
    /// The stage's rollout is running (or waiting for its approval).
    RollingOut,
    /// The rollout promoted the freight; the stage's environments verify it.
    Verifying,
}

/// Forward, or back to earlier freight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionKind {
    /// Newer freight from upstream.
    Forward,
    /// Back to the stage's previous verified freight, because its current one failed.
    Rollback,
}

/// A promotion in progress: one rollout on the stage's environments, then verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Promotion {
    /// The freight being promoted.
    pub freight: FreightId,
    /// The freight the stage ran before (the rollout's stable revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<FreightId>,
    /// The stage's rollout (its id in the same store).
    pub rollout: RolloutId,
    /// Forward or back.
    pub kind: PromotionKind,
    /// The gate a person must approve first (manual stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// How far it has gone.
    pub step: PromotionStep,
    /// When it started.
    pub started: Timestamp,
    /// The stage's verification analyses so far (step `verifying`, stages with a
    /// `verification`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationProgress>,
}

/// How far a stage's verification analyses have gone; saved after every measurement, so that
/// an executor started after a crash carries on with the same runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VerificationProgress {
    /// When verification began (the rollout had promoted).
    pub started: Timestamp,
    /// Each run of the stage's `verification.runs`, in order.
    pub runs: Vec<RunProgress>,
}

/// One verification run's measurements.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunProgress {
    /// The analysis.
    pub analysis: String,
    /// Its measurements so far.
    pub tally: Tally,
    /// When the latest one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<Timestamp>,
    /// The latest one's summary.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
}

/// One line of a stage's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// When.
    pub at: Timestamp,
    /// The freight it is about.
    pub freight: FreightId,
    /// What happened.
    pub event: Event,
}

/// What happened in a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A promotion started.
    Started {
        /// Its rollout.
        rollout: RolloutId,
        /// Forward or back.
        kind: PromotionKind,
    },
    /// A person approved (or rejected) the promotion's gate.
    Approval(Approval),
    /// The rollout promoted the freight: the stage runs it.
    RolledOut,
    /// Verification passed.
    Verified,
    /// The rollout or the verification failed, or a person rolled the freight back.
    Failed {
        /// Why.
        reason: String,
    },
}

impl PipelineState {
    /// An empty pipeline state.
    pub fn new() -> Self {
        PipelineState {
            format: PIPELINE_FORMAT,
            ..PipelineState::default()
        }
    }

    /// The freight with this id.
    pub fn freight(&self, id: &FreightId) -> Option<&FreightEntry> {
        self.freight.iter().find(|f| &f.id == id)
    }

    /// Where freight stands in submission order (later is newer).
    pub fn position(&self, id: &FreightId) -> Option<usize> {
        self.freight.iter().position(|f| &f.id == id)
    }

    /// The state of stage `name` (empty if it was never touched).
    pub fn stage(&self, name: &str) -> StageState {
        self.stages.get(name).cloned().unwrap_or_default()
    }

    /// The name of the freight a stage runs, for people (`-` if none).
    pub fn current_name(&self, stage: &str) -> String {
        self.stages
            .get(stage)
            .and_then(|s| s.current.as_ref())
            .and_then(|c| self.freight(&c.freight))
            .map_or_else(|| "-".to_owned(), |f| f.freight.name.clone())
    }

    pub(crate) fn stage_mut(&mut self, name: &str) -> &mut StageState {
        self.stages.entry(name.to_owned()).or_default()
    }
}

impl StageState {
    /// The id of the freight the stage runs.
    pub fn current_id(&self) -> Option<&FreightId> {
        self.current.as_ref().map(|c| &c.freight)
    }

    /// Whether `freight` passed verification here and has not failed since.
    pub fn is_verified(&self, freight: &FreightId) -> bool {
        self.verified.contains_key(freight) && !self.failed.contains_key(freight)
    }

    /// Makes `freight` current at `now`, closing the soak of the freight it replaces.
    pub(crate) fn switch_to(&mut self, freight: FreightId, now: Timestamp) {
        if let Some(old) = self.current.take()
            && let Some(v) = self.verified.get_mut(&old.freight)
            && v.left.is_none()
        {
            v.left = Some(now);
        }
        self.current = Some(Current {
            freight,
            since: now,
        });
    }

    /// Marks `freight` failed here at `now`, in the failures and the history.
    pub(crate) fn fail(&mut self, freight: FreightId, at: Timestamp, reason: String) {
        self.failed.insert(
            freight.clone(),
            Failure {
                at,
                reason: reason.clone(),
            },
        );
        self.log(at, freight, Event::Failed { reason });
    }

    pub(crate) fn log(&mut self, at: Timestamp, freight: FreightId, event: Event) {
        self.history.push(HistoryEntry { at, freight, event });
    }
}
