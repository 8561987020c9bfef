//! Shared helpers for the engine scenarios.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use cutover_core::{
    AnalysisRun, CanaryStep, Outcome, Plan, RetryPolicy, RevisionId, Rollout, RolloutBuilder,
    RolloutEvent, Timestamp, TokioClock, TrafficSplit, Weight,
};
use futures_util::StreamExt as _;

pub fn stable() -> RevisionId {
    "v1".parse().unwrap()
}

pub fn candidate() -> RevisionId {
    "v2".parse().unwrap()
}

pub fn mins(m: u64) -> Duration {
    Duration::from_secs(60 * m)
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn weight(percent: u8) -> CanaryStep {
    CanaryStep::set_weight(percent).unwrap()
}

pub fn analysis(name: &str) -> CanaryStep {
    CanaryStep::Analysis(AnalysisRun::new(name))
}

/// A plan with retries that wait exactly 1 s, 2 s, 4 s... (no jitter).
pub fn plan(strategy: impl Into<cutover_core::Strategy>) -> Plan {
    Plan::new(strategy).with_retry(RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    })
}

/// A builder with the standard revisions and a clock at a fixed epoch that follows tokio time.
pub fn builder(id: &str, plan: impl Into<Plan>) -> RolloutBuilder {
    Rollout::builder(id, plan)
        .revisions("v1", "v2")
        .clock(TokioClock::starting_at(Timestamp::from_unix_millis(
            1_700_000_000_000,
        )))
}

/// The candidate's weight in each split, in basis points.
pub fn candidate_weights(splits: &[TrafficSplit]) -> Vec<u16> {
    splits
        .iter()
        .map(|s| s.weight(&candidate()).basis_points())
        .collect()
}

pub fn all_stable(split: &TrafficSplit) -> bool {
    split.is_all_to(&stable())
}

pub fn pct(p: u8) -> u16 {
    Weight::from_percent(p).unwrap().basis_points()
}

/// Runs the rollout and collects its events.
pub async fn run_collecting(
    rollout: Rollout,
) -> (
    Result<Outcome, cutover_core::RolloutError>,
    Vec<RolloutEvent>,
) {
    let events = rollout.subscribe();
    let outcome = rollout.run().await;
    // The sender is dropped when `run` returns, so the stream ends.
    let events: Vec<RolloutEvent> = events.collect().await;
    (outcome, events)
}

/// A boxed event stream.
pub type Events = std::pin::Pin<Box<dyn futures_core::Stream<Item = RolloutEvent> + Send>>;

pub fn events(rollout: &Rollout) -> Events {
    Box::pin(rollout.subscribe())
}

/// Waits for the first event matching `pred`.
pub async fn until(
    events: &mut Events,
    mut pred: impl FnMut(&RolloutEvent) -> bool,
) -> RolloutEvent {
    while let Some(event) = events.next().await {
        if pred(&event) {
            return event;
        }
    }
    panic!("the event stream ended before the expected event");
}

/// The recorded decision, if the event is one.
pub fn decision(event: &RolloutEvent) -> Option<&cutover_core::planner::Decision> {
    match event {
        RolloutEvent::Record(cutover_core::DecisionRecord {
            entry: cutover_core::Entry::Decision { decision, .. },
            ..
        }) => Some(decision),
        _ => None,
    }
}

pub fn is_pause(event: &RolloutEvent) -> bool {
    matches!(
        decision(event),
        Some(cutover_core::planner::Decision::Pause(_))
    )
}

pub fn is_split_to(event: &RolloutEvent, candidate_bp: u16) -> bool {
    matches!(event, RolloutEvent::SplitChanged { to, .. } if to.weight(&candidate()).basis_points() == candidate_bp)
}

/// The summaries of the records, for order checks.
pub fn summaries(records: &[cutover_core::DecisionRecord]) -> Vec<String> {
    records.iter().map(|r| r.summary.clone()).collect()
}

/// Index of the first summary containing `needle`.
pub fn position(summaries: &[String], needle: &str) -> usize {
    summaries
        .iter()
        .position(|s| s.contains(needle))
        .unwrap_or_else(|| panic!("no record contains {needle:?}: {summaries:#?}"))
}

/// Runs a rollout until it finishes or waits for a command nobody sends (time runs ahead while
/// it waits); returns `None` in the second case, after dropping the engine as a process that
/// exits would.
pub async fn run_until_idle(
    rollout: Rollout,
) -> Option<Result<Outcome, cutover_core::RolloutError>> {
    tokio::time::timeout(Duration::from_hours(24), rollout.run())
        .await
        .ok()
}

/// Implements [`StateStore`](cutover_core::StateStore) for a test store with an `inner` store:
/// every method is forwarded to `inner` but `save`, which runs the given body.
#[macro_export]
macro_rules! store_with_save {
    ($ty:ty, |$this:ident, $id:ident, $state:ident, $expected:ident| $body:block) => {
        #[async_trait::async_trait]
        impl cutover_core::StateStore for $ty {
            async fn save(
                &self,
                $id: &cutover_core::RolloutId,
                $state: &cutover_core::RolloutState,
                $expected: Option<u64>,
            ) -> Result<u64, cutover_core::StoreError> {
                let $this = self;
                $body
            }
            fn name(&self) -> &str {
                self.inner.name()
            }
            async fn load(
                &self,
                id: &cutover_core::RolloutId,
            ) -> Result<Option<cutover_core::Stored>, cutover_core::StoreError> {
                self.inner.load(id).await
            }
            async fn append(
                &self,
                id: &cutover_core::RolloutId,
                records: &[cutover_core::DecisionRecord],
            ) -> Result<(), cutover_core::StoreError> {
                self.inner.append(id, records).await
            }
            async fn records(
                &self,
                id: &cutover_core::RolloutId,
                after: u64,
                limit: usize,
            ) -> Result<Vec<cutover_core::DecisionRecord>, cutover_core::StoreError> {
                self.inner.records(id, after, limit).await
            }
            async fn send(
                &self,
                id: &cutover_core::RolloutId,
                request: &cutover_core::CommandRequest,
                now: cutover_core::Timestamp,
            ) -> Result<cutover_core::QueuedCommand, cutover_core::StoreError> {
                self.inner.send(id, request, now).await
            }
            async fn commands(
                &self,
                id: &cutover_core::RolloutId,
                after: u64,
            ) -> Result<Vec<cutover_core::QueuedCommand>, cutover_core::StoreError> {
                self.inner.commands(id, after).await
            }
            async fn list(
                &self,
                filter: &cutover_core::ListFilter,
            ) -> Result<Vec<cutover_core::Summary>, cutover_core::StoreError> {
                self.inner.list(filter).await
            }
            async fn acquire(
                &self,
                id: &cutover_core::RolloutId,
                claim: &cutover_core::Claim,
            ) -> Result<cutover_core::Acquired, cutover_core::StoreError> {
                self.inner.acquire(id, claim).await
            }
            async fn renew(
                &self,
                id: &cutover_core::RolloutId,
                lease: &cutover_core::Lease,
                now: cutover_core::Timestamp,
            ) -> Result<cutover_core::Lease, cutover_core::StoreError> {
                self.inner.renew(id, lease, now).await
            }
            async fn lease(
                &self,
                id: &cutover_core::RolloutId,
            ) -> Result<Option<cutover_core::Lease>, cutover_core::StoreError> {
                self.inner.lease(id).await
            }
            async fn release(
                &self,
                id: &cutover_core::RolloutId,
                lease: &cutover_core::Lease,
            ) -> Result<(), cutover_core::StoreError> {
                self.inner.release(id, lease).await
            }
            fn watch(&self, id: &cutover_core::RolloutId) -> cutover_core::Watch {
                self.inner.watch(id)
            }
        }
    };
}
