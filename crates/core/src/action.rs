//! What the planner decides and what the engine reports back: [`Decision`], [`Action`],
//! [`ActionResult`].

use std::time::Duration;

use cutover_analysis::Measurement;
use serde::{Deserialize, Serialize};

use crate::analysis::{AnalysisResult, Comparison};
use crate::checklist::ChecklistRecord;
use crate::status::{Final, PauseReason, StopReason};
use crate::{
    ErrorKind, GateVerdict, HeaderRoute, Health, Mirror, ReplicaStatus, RevisionId, TrafficSplit,
};

/// Which analysis run a measurement belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    /// The current step's analysis (also post-promotion analysis and the A/B comparison).
    Step,
    /// The background analysis.
    Background,
}

/// One call to the providers. Effects change the world and are saved to the store before they
/// run; observations only read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Ask a gate.
    CheckGate {
        /// The gate.
        gate: String,
    },
    /// Apply a migration step.
    ApplyMigration {
        /// The step.
        id: String,
    },
    /// Revert a migration step.
    RevertMigration {
        /// The step.
        id: String,
    },
    /// Send a split to every router, and read it back where they can.
    SetSplit {
        /// The split.
        split: TrafficSplit,
    },
    /// Route matching requests to the candidate on every router.
    SetHeaderRoute {
        /// The route.
        route: HeaderRoute,
    },
    /// Remove a header route from every router.
    RemoveHeaderRoute {
        /// Its name.
        name: String,
    },
    /// Mirror requests to the candidate on every router.
    SetMirror {
        /// The mirror.
        mirror: Mirror,
    },
    /// Remove a mirror from every router.
    RemoveMirror {
        /// Its name.
        name: String,
    },
    /// Scale a revision.
    Scale {
        /// The revision.
        revision: RevisionId,
        /// Replicas.
        replicas: u32,
    },
    /// Read replica counts.
    ObserveWorkload {
        /// The revisions.
        revisions: Vec<RevisionId>,
    },
    /// Check the health of a revision.
    CheckHealth {
        /// The revision.
        revision: RevisionId,
    },
    /// Take one measurement of an analysis.
    Measure {
        /// Which run it belongs to.
        slot: Slot,
        /// The analysis.
        analysis: String,
        /// Its index within the run, from 1.
        measurement: u32,
    },
}

impl Action {
    /// Whether the action changes the world (and so is saved before it runs).
    pub fn is_effect(&self) -> bool {
        match self {
            Action::ApplyMigration { .. }
            | Action::RevertMigration { .. }
            | Action::SetSplit { .. }
            | Action::SetHeaderRoute { .. }
            | Action::RemoveHeaderRoute { .. }
            | Action::SetMirror { .. }
            | Action::RemoveMirror { .. }
            | Action::Scale { .. } => true,
            Action::CheckGate { .. }
            | Action::ObserveWorkload { .. }
            | Action::CheckHealth { .. }
            | Action::Measure { .. } => false,
        }
    }

    /// A short name of the operation: `set_split`, `check_health`, ...
    pub fn op(&self) -> &'static str {
        match self {
            Action::CheckGate { .. } => "check_gate",
            Action::ApplyMigration { .. } => "apply_migration",
            Action::RevertMigration { .. } => "revert_migration",
            Action::SetSplit { .. } => "set_split",
            Action::SetHeaderRoute { .. } => "set_header_route",
            Action::RemoveHeaderRoute { .. } => "remove_header_route",
            Action::SetMirror { .. } => "set_mirror",
            Action::RemoveMirror { .. } => "remove_mirror",
            Action::Scale { .. } => "scale",
            Action::ObserveWorkload { .. } => "observe_workload",
            Action::CheckHealth { .. } => "check_health",
            Action::Measure { .. } => "measure",
        }
    }
}

/// What came of an [`Action`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActionResult {
    /// The effect was carried out.
    Done,
    /// A resumed engine found the migration already in the wanted state and did not run it.
    AlreadyDone,
    /// A gate's answer.
    Gate(GateVerdict),
    /// A checklist gate's answer, with every check's result, the exemptions used and the fixes
    /// run.
    Checklist {
        /// The answer.
        verdict: GateVerdict,
        /// What the checklist found.
        checklist: Box<ChecklistRecord>,
    },
    /// A health check's answer.
    Health(Health),
    /// Replica counts by revision.
    Workload(std::collections::BTreeMap<RevisionId, ReplicaStatus>),
    /// A measurement.
    Measured {
        /// How it counts in the run.
        measurement: Measurement,
        /// The analysis's result, if it produced one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<AnalysisResult>,
        /// The error, if it could not measure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The action failed for good (a permanent error, or retries spent).
    Failed {
        /// The classification of the last error.
        kind: ErrorKind,
        /// The operation, provider and error chain.
        error: String,
    },
}

impl ActionResult {
    /// A gate's answer, whether a plain gate's or a checklist's.
    pub fn gate_verdict(&self) -> Option<&GateVerdict> {
        match self {
            ActionResult::Gate(verdict) | ActionResult::Checklist { verdict, .. } => Some(verdict),
            _ => None,
        }
    }
}

/// What the planner decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Decision {
    /// Carry out one action.
    Apply(Action),
    /// Nothing to do until then, or until a command when `None`.
    Wait(#[serde(with = "crate::time::serde_duration::option")] Option<Duration>),
    /// The current step (or phase) is done; move on.
    Advance,
    /// Run the current analysis again after an inconclusive result.
    Extend(Slot),
    /// Begin promotion.
    Promote,
    /// Begin a rollback.
    Rollback(StopReason),
    /// Wait for a person.
    Pause(PauseReason),
    /// End an A/B test without promoting.
    Conclude {
        /// The comparison, if one was made.
        comparison: Option<Comparison>,
        /// What it found.
        summary: String,
    },
    /// The rollout is finished.
    Complete(Final),
}
