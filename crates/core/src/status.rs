//! Where a rollout is and how it ends: phases, pause and stop reasons, outcomes.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::RevisionId;
use crate::analysis::Comparison;

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
    /// Finished; see [`RolloutState::outcome`](crate::RolloutState::outcome).
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

/// Why a rollout is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// Paused by a [`Command::Pause`](crate::Command::Pause).
    Manual {
        /// Who sent the command.
        by: String,
        /// Why, as given (may be empty).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
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
            PauseReason::Manual { by, reason } if reason.is_empty() => {
                write!(f, "paused by {by}")
            }
            PauseReason::Manual { by, reason } => write!(f, "paused by {by}: {reason}"),
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
    /// Aborted by a [`Command::Abort`](crate::Command::Abort).
    Aborted {
        /// Who sent the command.
        by: String,
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

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The candidate is the new stable.
    Promoted,
    /// Rolled back automatically; all traffic is on stable.
    RolledBack(StopReason),
    /// Aborted by a [`Command::Abort`](crate::Command::Abort); all traffic is on stable.
    Aborted {
        /// Who sent the command.
        by: String,
        /// The reason given (may be empty).
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
            Outcome::Aborted { by, reason } if reason.is_empty() => write!(f, "aborted by {by}"),
            Outcome::Aborted { by, reason } => write!(f, "aborted by {by}: {reason}"),
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
