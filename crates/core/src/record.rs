//! The decision record: every decision a rollout made, with its inputs and what came of it.

use std::time::Duration;

use cutover_analysis::Tally;
use serde::{Deserialize, Serialize};

use crate::action::{ActionResult, Decision};
use crate::command::{CommandEffect, QueuedCommand};
use crate::status::Phase;
use crate::{Health, Timestamp, TrafficSplit};

/// One entry of a rollout's decision record.
///
/// Records go to the append-only decision log of the rollout's
/// [`StateStore`](crate::StateStore), read back with
/// [`StateStore::records`](crate::StateStore::records) (or
/// [`RolloutHandle::records`](crate::RolloutHandle::records)); they are streamed as
/// [`RolloutEvent::Record`](crate::RolloutEvent::Record) once saved, and serialize to JSON for
/// export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Position in the record, from 1.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// The phase the rollout was in.
    pub phase: Phase,
    /// The step, while progressing: its index and kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepRef>,
    /// What the decision was based on.
    pub inputs: Inputs,
    /// What was decided and what came of it.
    pub entry: Entry,
    /// The same in one line for people.
    pub summary: String,
}

/// A step of the strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRef {
    /// Index, from 0.
    pub index: usize,
    /// Kind, like `set_weight`.
    pub kind: String,
}

/// The state a decision was based on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    /// The split in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<TrafficSplit>,
    /// Time since the step (or phase) began.
    #[serde(with = "crate::time::serde_duration")]
    pub step_elapsed: Duration,
    /// The current analysis run's measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Tally>,
    /// The background analysis run's measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<Tally>,
    /// The candidate's latest health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// What a record holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Entry {
    /// An engine took the rollout on.
    Started {
        /// The engine's instance id.
        engine: String,
        /// Whether it picked up a rollout another engine had started.
        resumed: bool,
        /// Set when the engine took the rollout from a live owner by force.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        takeover: Option<Takeover>,
    },
    /// A decision of the planner, and for actions what came of them.
    Decision {
        /// The decision.
        decision: Decision,
        /// The action's result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<ActionResult>,
    },
    /// A command from the rollout's inbox.
    Command {
        /// The command, with who sent it, why, and its inbox position.
        command: QueuedCommand,
        /// What it did.
        effect: CommandEffect,
    },
    /// A record of a [guard](crate::guard): a [`GuardRecord`](crate::guard::GuardRecord)'s
    /// entry as JSON, in the log the guard keeps under
    /// [`GuardHandle::log_id`](crate::guard::GuardHandle::log_id). Kept as JSON so that the
    /// record module does not depend on the guards'.
    Guard {
        /// The [`GuardEntry`](crate::guard::GuardEntry).
        record: serde_json::Value,
    },
}

/// A forced takeover of a rollout whose owner's lease had not expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takeover {
    /// The owner it was taken from.
    pub from: String,
    /// Who forced it.
    pub by: String,
    /// Why.
    pub reason: String,
}
