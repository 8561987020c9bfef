//! One line per rollout: what [`StateStore::list`](super::StateStore::list) returns.

use serde::{Deserialize, Serialize};

use super::Lease;
use crate::state::{Final, Phase, RolloutState};
use crate::{Revisions, RolloutId, Timestamp, TrafficSplit};

/// Where a rollout stands, for listings and status displays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The rollout.
    pub id: RolloutId,
    /// `canary`, `blue_green`, `rolling` or `ab_test`.
    pub strategy: String,
    /// Its revisions.
    pub revisions: Revisions,
    /// Where it is.
    pub phase: Phase,
    /// The current step's index, while progressing.
    pub step: usize,
    /// How many steps the strategy has.
    pub steps: usize,
    /// The current step's kind (`set_weight`, `pause`, `analysis`...), while progressing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_kind: Option<String>,
    /// The split on the routers, once one was set: weights per revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<TrafficSplit>,
    /// Why it is paused, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// How it ended, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Final>,
    /// Its owner lease, if one is held: the owning engine, and until when (a lease past
    /// `expires_at` is free for another engine to take).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// When its state was last saved.
    pub updated_at: Timestamp,
    /// The stored version.
    pub version: u64,
}

impl Summary {
    /// The summary of a stored state and its lease.
    pub fn of(state: &RolloutState, version: u64, lease: Option<Lease>) -> Self {
        Summary {
            id: state.id.clone(),
            strategy: state.setup.plan.strategy.kind().to_owned(),
            revisions: state.setup.revisions.clone(),
            phase: state.phase,
            step: state.step,
            steps: state.setup.step_count(),
            step_kind: (state.phase == Phase::Progressing)
                .then(|| state.setup.step_kind(state.step).map(str::to_owned))
                .flatten(),
            split: state.split.clone(),
            paused: state.pause.as_ref().map(|p| p.reason.to_string()),
            outcome: state.outcome.clone(),
            lease,
            updated_at: state.updated_at,
            version,
        }
    }
}

/// Which rollouts [`StateStore::list`](super::StateStore::list) returns, a page at a time.
///
/// ```
/// use cutover_core::ListFilter;
/// use cutover_core::state::Phase;
/// let first_page = ListFilter::default().phases([Phase::Progressing, Phase::Promoting]).limit(50);
/// assert_eq!(first_page.limit, 50);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Only rollouts in these phases; all when empty.
    pub phases: Vec<Phase>,
    /// Only rollouts whose id sorts after this one: the cursor of the next page.
    pub after: Option<RolloutId>,
    /// At most this many.
    pub limit: usize,
    /// Only rollouts whose id contains this text, ignoring ASCII case: a search. Stores check
    /// it on the id, before reading a rollout's state.
    pub id_contains: Option<String>,
}

impl Default for ListFilter {
    /// Every rollout, the first 1,000.
    fn default() -> Self {
        ListFilter {
            phases: Vec::new(),
            after: None,
            limit: 1000,
            id_contains: None,
        }
    }
}

impl ListFilter {
    /// Rollouts in these phases only.
    pub fn phases(mut self, phases: impl IntoIterator<Item = Phase>) -> Self {
        self.phases = phases.into_iter().collect();
        self
    }

    /// Rollouts that have not finished.
    pub fn active(self) -> Self {
        self.phases([
            Phase::PreFlight,
            Phase::Expanding,
            Phase::Progressing,
            Phase::Promoting,
            Phase::RollingBack,
        ])
    }

    /// Rollouts after this id (the last id of the previous page).
    pub fn after(mut self, id: RolloutId) -> Self {
        self.after = Some(id);
        self
    }

    /// At most `limit` rollouts.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Rollouts whose id contains `text`, ignoring ASCII case (an empty text: every rollout).
    pub fn id_contains(mut self, text: impl Into<String>) -> Self {
        self.id_contains = Some(text.into()).filter(|t| !t.is_empty());
        self
    }

    /// Whether a rollout's id is past the cursor and contains the searched text.
    pub fn admits_id(&self, id: &RolloutId) -> bool {
        self.after.as_ref().is_none_or(|after| id > after)
            && self.id_contains.as_deref().is_none_or(|text| {
                let (id, text) = (id.as_str().as_bytes(), text.as_bytes());
                text.is_empty() || id.windows(text.len()).any(|w| w.eq_ignore_ascii_case(text))
            })
    }

    /// Whether a rollout in `phase` is wanted.
    pub fn admits_phase(&self, phase: Phase) -> bool {
        self.phases.is_empty() || self.phases.contains(&phase)
    }
}
