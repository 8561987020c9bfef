use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::TrafficSplit;
use crate::record::DecisionRecord;
use crate::state::Final;

/// What a rollout reports as it runs, through [`Rollout::subscribe`](crate::Rollout::subscribe).
///
/// A subscriber that falls behind by more than 1024 events misses some and receives
/// [`RolloutEvent::Lagged`]; the decision record in the state and the outcome of
/// [`run`](crate::Rollout::run) stay complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
// Records dominate the stream, so boxing them would save nothing.
#[allow(clippy::large_enum_variant)]
pub enum RolloutEvent {
    /// A decision was recorded (every decision, command and start).
    Record(DecisionRecord),
    /// Every router now applies a new split.
    SplitChanged {
        /// The split before, if one had been set.
        from: Option<TrafficSplit>,
        /// The split now.
        to: TrafficSplit,
    },
    /// A provider call failed and will be tried again.
    Retrying {
        /// The operation.
        op: String,
        /// The provider.
        provider: String,
        /// The attempt that failed, from 1.
        attempt: u32,
        /// The wait before the next attempt.
        #[serde(with = "crate::time::serde_duration")]
        delay: Duration,
        /// The error.
        error: String,
    },
    /// The rollout finished.
    Finished(Final),
    /// This subscriber missed events.
    Lagged {
        /// How many.
        missed: u64,
    },
}
