use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::TrafficSplit;
use crate::record::DecisionRecord;
use crate::state::Final;

/// What a rollout reports as it runs, through [`Rollout::subscribe`](crate::Rollout::subscribe).
///
/// The stream has a bounded buffer ([`RolloutBuilder::event_capacity`](crate::RolloutBuilder::event_capacity),
/// 64 events by default) that exists only once someone subscribes. The engine never waits for
/// a subscriber: one that falls behind misses the oldest events and receives
/// [`RolloutEvent::Lagged`] with how many. The decision log in the store and the outcome of
/// [`run`](crate::Rollout::run) stay complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
// Records dominate the stream, so boxing them would save nothing.
#[allow(clippy::large_enum_variant)]
pub enum RolloutEvent {
    /// A decision was recorded (every decision, command and start), once saved.
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

/// The sending side of the event stream: nothing at all until someone subscribes, so a
/// rollout nobody watches pays nothing for events.
#[derive(Debug, Clone, Default)]
pub(super) struct Events(Option<broadcast::Sender<RolloutEvent>>);

impl Events {
    pub(super) fn new(sender: Option<broadcast::Sender<RolloutEvent>>) -> Self {
        Events(sender)
    }

    /// Sends an event built only if someone listens; never waits.
    pub(super) fn send(&self, event: impl FnOnce() -> RolloutEvent) {
        if let Some(sender) = self.0.as_ref().filter(|s| s.receiver_count() > 0) {
            let _ = sender.send(event());
        }
    }
}
