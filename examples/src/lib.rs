//! Helpers shared by the examples: simulated traffic and progress printing.
//!
//! The examples run on in-memory providers from `cutover::test` and on paused tokio time, so a
//! rollout of many minutes finishes at once; timestamps are printed on the rollout's clock.

use std::sync::Arc;

use async_trait::async_trait;
use cutover::test::FakeRouter;
use cutover::{
    Entry, MetricQuery, MetricSource, ProviderError, RevisionId, RolloutEvent, Samples, Timestamp,
};

/// A metric source for `error_ratio` that simulates traffic: each revision gets its share of
/// `requests_per_minute` according to the split on `router`, and fails at its error rate.
#[derive(Debug, Clone)]
pub struct SimulatedTraffic {
    router: FakeRouter,
    requests_per_minute: u64,
    error_rates: Arc<Vec<(RevisionId, f64)>>,
}

impl SimulatedTraffic {
    /// Traffic through `router` with an error rate per revision (0.01 = 1 %).
    pub fn new(
        router: FakeRouter,
        requests_per_minute: u64,
        error_rates: Vec<(RevisionId, f64)>,
    ) -> Self {
        SimulatedTraffic {
            router,
            requests_per_minute,
            error_rates: Arc::new(error_rates),
        }
    }

    /// Requests a revision got over `window` at the current split.
    pub fn requests(&self, revision: &RevisionId, window: std::time::Duration) -> u64 {
        let share = self
            .router
            .current()
            .map_or(0, |s| u64::from(s.weight(revision).basis_points()));
        let minutes = window.as_secs() / 60;
        self.requests_per_minute * minutes * share / 10_000
    }
}

#[async_trait]
impl MetricSource for SimulatedTraffic {
    fn name(&self) -> &'static str {
        "simulated-traffic"
    }

    async fn query(&self, query: &MetricQuery) -> Result<Samples, ProviderError> {
        if query.query != "error_ratio" {
            return Err(ProviderError::permanent(format!(
                "unknown query `{}`",
                query.query
            )));
        }
        let total = self.requests(&query.revision, query.window);
        let rate = self
            .error_rates
            .iter()
            .find(|(r, _)| *r == query.revision)
            .map_or(0.0, |(_, rate)| *rate);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let events = (total as f64 * rate).round() as u64;
        Ok(Samples::Counts { events, total })
    }
}

/// Prints an event as a line a person can follow, with the time since `start`.
pub fn print_event(start: Timestamp, event: &RolloutEvent) {
    match event {
        RolloutEvent::Record(record) => {
            let quiet = matches!(&record.entry, Entry::Decision { decision, .. }
                if matches!(decision, cutover::planner::Decision::Apply(cutover::planner::Action::ObserveWorkload { .. })));
            if !quiet {
                println!("[{}] {}", clock(start, record.at), record.summary);
            }
        }
        RolloutEvent::Retrying {
            op,
            provider,
            attempt,
            error,
            ..
        } => println!("         retrying {op} on {provider} (attempt {attempt}): {error}"),
        _ => {}
    }
}

/// Prints the rollout's events as they come, until it finishes. Await the handle after `run`.
pub fn print_progress(rollout: &cutover::Rollout, start: Timestamp) -> tokio::task::JoinHandle<()> {
    use futures_util::StreamExt as _;
    let mut events = rollout.subscribe();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            print_event(start, &event);
        }
    })
}

/// `mm:ss` since `start`.
pub fn clock(start: Timestamp, at: Timestamp) -> String {
    let secs = at.saturating_since(start).as_secs();
    format!("+{:02}:{:02}", secs / 60, secs % 60)
}

/// An error and all its sources on one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// A live view of a proxy for the examples that run real traffic: once a second, one line
/// with the candidate's weight as a bar and what each revision answered in that second.
pub mod live {
    use std::fmt::Write as _;
    use std::time::Duration;

    use cutover::RevisionId;
    use cutover::local::{LocalProxy, ProxyMetrics, ProxyRouter};

    /// A bar of `width` cells for `percent` (0 to 100).
    pub fn bar(percent: f64, width: usize) -> String {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let filled = ((percent / 100.0) * width as f64).round() as usize;
        let filled = filled.min(width);
        format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
    }

    /// One line: `candidate`'s weight as a bar, then requests and 5xx per revision in the
    /// last complete second.
    pub fn line(router: &ProxyRouter, metrics: &ProxyMetrics, revisions: &[RevisionId]) -> String {
        let split = router.split();
        let candidate = revisions.last().map_or(0.0, |c| split.weight(c).percent());
        let mut text = format!("         {} {:>5.1}% |", bar(candidate, 20), candidate);
        for r in revisions {
            let (n, errors) = metrics.last_second(r).unwrap_or((0, 0));
            let _ = write!(text, " {r}: {n:>5} req/s {errors:>3} 5xx |");
        }
        text
    }

    /// Prints [`line`] every second until the task is aborted.
    pub fn ticker(proxy: &LocalProxy, revisions: Vec<RevisionId>) -> tokio::task::JoinHandle<()> {
        let (router, metrics) = (proxy.router(), proxy.metrics());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            loop {
                every.tick().await;
                println!("{}", line(&router, &metrics, &revisions));
            }
        })
    }
}

/// Writes the rollout's decision records to `out` as pretty JSON and says where.
pub fn write_records(handle: &cutover::RolloutHandle, out: &std::path::Path) {
    let records = handle.records();
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match serde_json::to_string_pretty(&records).map(|json| std::fs::write(out, json)) {
        Ok(Ok(())) => println!(
            "decision record ({} entries): {}",
            records.len(),
            out.display()
        ),
        Ok(Err(e)) => eprintln!("could not write {}: {e}", out.display()),
        Err(e) => eprintln!("could not serialize the record: {e}"),
    }
}
