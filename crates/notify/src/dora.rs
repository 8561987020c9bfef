//! DORA figures from the store's history: deployment frequency, lead time for changes, change
//! failure rate and time to restore, per service and over a window.
//!
//! A **deployment** is a finished rollout. It *succeeded* when it was promoted, and *failed*
//! when it was rolled back, aborted or failed (traffic went back to the stable revision). A/B
//! tests that concluded without promoting are experiments, not deployments, and are left out.
//! A deployment belongs to the window its rollout finished in (`from` included, `to` not).
//!
//! | Figure | How it is computed |
//! |---|---|
//! | deployment frequency | successful deployments ÷ days in the window; and the Four Keys bucket: `daily` when the median number of days with a successful deployment per 7-day week is at least 3, `weekly` when the median of successful deployments per week is at least 1, `monthly` per 30-day month, else `yearly` |
//! | lead time for changes | median time from the commit ([`Release::commit`]) to the end of its successful rollout |
//! | change failure rate | failed ÷ (successful + failed) deployments |
//! | time to restore | median time from the start of a failed rollout (when the bad change began taking traffic) to the end of its rollback (all traffic back on stable) |
//!
//! Medians of an even count are the mean of the two middle values, as Four Keys'
//! `PERCENTILE_CONT(.., 0.5)` does.
//!
//! ```
//! use cutover_core::Timestamp;
//! use cutover_notify::dora::{self, Deployment, Result as Res, Window};
//! let day = 86_400_000;
//! let at = |d: u64| Timestamp::from_unix_millis(d * day);
//! let deployments = [
//!     Deployment::new("checkout", at(1), at(1) + std::time::Duration::from_secs(600), Res::Succeeded),
//!     Deployment::new("checkout", at(2), at(2) + std::time::Duration::from_secs(300), Res::Failed),
//! ];
//! let report = dora::report(&deployments, Window::new(at(0), at(10)));
//! assert_eq!(report.overall.change_failure_rate, Some(0.5));
//! assert_eq!(report.overall.time_to_restore_seconds, Some(300.0));
//! ```

use std::collections::{BTreeMap, BTreeSet};

use cutover_core::planner::Decision;
use cutover_core::state::{Final, Outcome, Phase};
use cutover_core::{DecisionRecord, Entry, StateStore, StoreError, Timestamp};
use serde::{Deserialize, Serialize};

use crate::notice::RolloutInfo;
use crate::release::Release;
use crate::scan::summaries;

const DAY_MS: u64 = 86_400_000;

/// How a deployment ended, for DORA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Result {
    /// Promoted.
    Succeeded,
    /// Rolled back, aborted or failed.
    Failed,
}

/// One finished rollout, as DORA sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// The service it changed.
    pub service: String,
    /// When its rollout started.
    pub started_at: Timestamp,
    /// When its rollout ended.
    pub finished_at: Timestamp,
    /// How it ended.
    pub result: Result,
    /// When the change it shipped was committed, if its release says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<Timestamp>,
}

impl Deployment {
    /// A deployment of `service` with no commit time.
    pub fn new(
        service: impl Into<String>,
        started_at: Timestamp,
        finished_at: Timestamp,
        result: Result,
    ) -> Self {
        Deployment {
            service: service.into(),
            started_at,
            finished_at,
            result,
            committed_at: None,
        }
    }

    /// Sets when the change was committed.
    pub fn committed_at(mut self, at: Timestamp) -> Self {
        self.committed_at = Some(at);
        self
    }

    /// The deployment a finished rollout's records make; `None` while it runs, or for an A/B
    /// test that concluded.
    pub fn from_records(
        info: &RolloutInfo,
        release: Option<&Release>,
        records: &[DecisionRecord],
    ) -> Option<Self> {
        let started_at = records
            .iter()
            .find(|r| matches!(r.entry, Entry::Started { .. }))
            .or(records.first())?
            .at;
        let (finished_at, end) = records.iter().rev().find_map(|r| match &r.entry {
            Entry::Decision {
                decision: Decision::Complete(end),
                ..
            } => Some((r.at, end)),
            _ => None,
        })?;
        let result = match end {
            Final::Outcome(Outcome::Promoted) => Result::Succeeded,
            Final::Outcome(Outcome::RolledBack(_) | Outcome::Aborted { .. })
            | Final::Failed { .. } => Result::Failed,
            Final::Outcome(_) => return None,
        };
        Some(Deployment {
            service: info.service.clone(),
            started_at,
            finished_at,
            result,
            committed_at: release.and_then(|r| r.committed_at),
        })
    }
}

/// A span of time: `from` included, `to` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// The start.
    pub from: Timestamp,
    /// The end.
    pub to: Timestamp,
}

impl Window {
    /// The window from `from` up to `to`.
    pub fn new(from: Timestamp, to: Timestamp) -> Self {
        Window { from, to }
    }

    fn contains(self, at: Timestamp) -> bool {
        self.from <= at && at < self.to
    }

    #[allow(clippy::cast_precision_loss)] // windows are far shorter than 2^52 ms
    fn days(self) -> f64 {
        self.to.saturating_since(self.from).as_millis() as f64 / DAY_MS as f64
    }
}

/// The Four Keys deployment-frequency bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    /// Deployments on at least 3 days of a typical week.
    Daily,
    /// At least one deployment in a typical week.
    Weekly,
    /// At least one deployment in a typical month.
    Monthly,
    /// Less often, or never.
    Yearly,
}

/// The four figures for a set of deployments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Successful deployments in the window.
    pub successful: usize,
    /// Failed deployments in the window.
    pub failed: usize,
    /// Days (UTC) with at least one successful deployment.
    pub deployment_days: usize,
    /// Successful deployments per day of the window.
    pub deployments_per_day: f64,
    /// The Four Keys bucket.
    pub frequency: Frequency,
    /// Median lead time for changes, in seconds, over successful deployments whose commit
    /// time is known; `None` when there are none.
    pub lead_time_seconds: Option<f64>,
    /// Failed ÷ all deployments; `None` without deployments.
    pub change_failure_rate: Option<f64>,
    /// Median time to restore, in seconds, over failed deployments; `None` without failures.
    pub time_to_restore_seconds: Option<f64>,
}

/// DORA figures over a window: for all services together and for each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The window.
    pub window: Window,
    /// All services together.
    pub overall: Figures,
    /// Per service, by name.
    pub services: BTreeMap<String, Figures>,
}

/// The figures of the deployments that finished in `window`.
pub fn report(deployments: &[Deployment], window: Window) -> Report {
    let inside: Vec<&Deployment> = deployments
        .iter()
        .filter(|d| window.contains(d.finished_at))
        .collect();
    let mut by_service: BTreeMap<&str, Vec<&Deployment>> = BTreeMap::new();
    for d in &inside {
        by_service.entry(&d.service).or_default().push(d);
    }
    Report {
        window,
        overall: figures(&inside, window),
        services: by_service
            .into_iter()
            .map(|(service, ds)| (service.to_owned(), figures(&ds, window)))
            .collect(),
    }
}

#[allow(clippy::cast_precision_loss)] // counts and millisecond spans are far below 2^52
fn figures(deployments: &[&Deployment], window: Window) -> Figures {
    let succeeded: Vec<&Deployment> = deployments
        .iter()
        .copied()
        .filter(|d| d.result == Result::Succeeded)
        .collect();
    let failed: Vec<&Deployment> = deployments
        .iter()
        .copied()
        .filter(|d| d.result == Result::Failed)
        .collect();
    let days: BTreeSet<u64> = succeeded
        .iter()
        .map(|d| d.finished_at.unix_millis() / DAY_MS)
        .collect();
    let seconds =
        |to: Timestamp, from: Timestamp| to.saturating_since(from).as_millis() as f64 / 1000.0;
    let window_days = window.days();
    Figures {
        successful: succeeded.len(),
        failed: failed.len(),
        deployment_days: days.len(),
        deployments_per_day: if window_days > 0.0 {
            succeeded.len() as f64 / window_days
        } else {
            0.0
        },
        frequency: frequency(&succeeded, window),
        lead_time_seconds: median(
            succeeded
                .iter()
                .filter_map(|d| d.committed_at.map(|c| seconds(d.finished_at, c)))
                .collect(),
        ),
        change_failure_rate: (!deployments.is_empty())
            .then(|| failed.len() as f64 / deployments.len() as f64),
        time_to_restore_seconds: median(
            failed
                .iter()
                .map(|d| seconds(d.finished_at, d.started_at))
                .collect(),
        ),
    }
}

/// Splits the window into buckets of `days` days (the last may be shorter) and returns the
/// median over all buckets of what `count` says of the deployments in each. Only buckets with
/// deployments are kept in memory: a window of any length costs nothing more.
fn bucket_median(
    succeeded: &[&Deployment],
    window: Window,
    days: u64,
    count: impl Fn(&[&Deployment]) -> usize,
) -> f64 {
    let span = days * DAY_MS;
    let length = window
        .to
        .unix_millis()
        .saturating_sub(window.from.unix_millis());
    let buckets = length.div_ceil(span).max(1);
    let mut filled: BTreeMap<u64, Vec<&Deployment>> = BTreeMap::new();
    for d in succeeded {
        let index = d
            .finished_at
            .unix_millis()
            .saturating_sub(window.from.unix_millis())
            / span;
        filled.entry(index).or_default().push(d);
    }
    #[allow(clippy::cast_precision_loss)]
    let mut values: Vec<f64> = filled.values().map(|ds| count(ds) as f64).collect();
    values.sort_by(f64::total_cmp);
    // Sorted, the buckets are the empty ones (zeros) and then `values`.
    let zeros = buckets - values.len() as u64;
    let nth = |k: u64| {
        k.checked_sub(zeros)
            .and_then(|i| usize::try_from(i).ok())
            .map_or(0.0, |i| values[i])
    };
    let mid = buckets / 2;
    if buckets.is_multiple_of(2) {
        f64::midpoint(nth(mid - 1), nth(mid))
    } else {
        nth(mid)
    }
}

fn frequency(succeeded: &[&Deployment], window: Window) -> Frequency {
    let distinct_days = |ds: &[&Deployment]| {
        ds.iter()
            .map(|d| d.finished_at.unix_millis() / DAY_MS)
            .collect::<BTreeSet<_>>()
            .len()
    };
    if bucket_median(succeeded, window, 7, distinct_days) >= 3.0 {
        Frequency::Daily
    } else if bucket_median(succeeded, window, 7, |ds: &[&Deployment]| ds.len()) >= 1.0 {
        Frequency::Weekly
    } else if bucket_median(succeeded, window, 30, |ds: &[&Deployment]| ds.len()) >= 1.0 {
        Frequency::Monthly
    } else {
        Frequency::Yearly
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        f64::midpoint(values[mid - 1], values[mid])
    } else {
        values[mid]
    })
}

/// The deployments in `store`: every finished rollout, with its release.
pub async fn deployments(
    store: &dyn StateStore,
) -> std::result::Result<Vec<Deployment>, StoreError> {
    let mut found = Vec::new();
    for summary in &summaries(store, &[Phase::Done]).await? {
        let mut records: Vec<DecisionRecord> = Vec::new();
        loop {
            let after = records.last().map_or(0, |r| r.seq);
            let next = store.records(&summary.id, after, 1000).await?;
            let done = next.len() < 1000;
            records.extend(next);
            if done {
                break;
            }
        }
        let release = Release::load_if_kept(store, &summary.id).await?;
        let info = RolloutInfo::of(summary, release.as_ref());
        found.extend(Deployment::from_records(&info, release.as_ref(), &records));
    }
    Ok(found)
}

/// The DORA report of the rollouts in `store` that finished in `window`.
pub async fn from_store(
    store: &dyn StateStore,
    window: Window,
) -> std::result::Result<Report, StoreError> {
    Ok(report(&deployments(store).await?, window))
}
