//! Bake: after a promotion, keep watching analyses for a while and undo the promotion when
//! they fail.
//!
//! A [`Bake`] measures every analysis each interval for the bake period. The first `Fail`
//! sends all traffic back to the previous revision on every router, while the previous
//! revision still exists: it has ready replicas (when a workload is given) and the time it is
//! kept after promotion (a blue-green scale-down delay, when given) has not run out. Otherwise
//! it raises an alert: a record, the outcome, and an event to subscribers. An analysis that
//! never gave a conclusive answer in the whole period does not pass either: missing data is
//! an alert. The bake keeps its progress in a store document of kind `bake`, so a restarted
//! bake continues its period instead of starting over.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::document::{BakeEvent, GuardEntry, GuardError, GuardRecord, store_error};
use crate::{
    Analysis, AnalysisContext, Clock, RevisionId, Revisions, RolloutId, StateStore, Timestamp,
    TokioClock, TrafficRouter, TrafficSplit, Verdict, Workload,
};

/// The document kind bakes are stored under.
pub const BAKE_KIND: &str = "bake";

/// How a bake ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
#[non_exhaustive]
pub enum BakeOutcome {
    /// No analysis failed, and each gave a conclusive answer.
    Passed,
    /// An analysis failed; all traffic is on the previous revision.
    RolledBack {
        /// The previous revision.
        to: RevisionId,
        /// The failure.
        reason: String,
    },
    /// An analysis failed (or never answered) and nothing could be undone: a person must act.
    Alerted {
        /// What happened.
        reason: String,
    },
}

/// A bake as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BakeDocument {
    /// The promoted revision (`candidate`) and the one before it (`stable`).
    pub revisions: Revisions,
    /// When the bake began.
    pub started_at: Timestamp,
    /// Measurements taken.
    pub measurements: u32,
    /// Analyses that gave at least one conclusive answer.
    #[serde(default)]
    pub conclusive: Vec<String>,
    /// How it ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<BakeOutcome>,
    /// Its records.
    #[serde(default)]
    pub log: Vec<GuardRecord>,
}

/// Watches analyses after a promotion; see the [module docs](self).
#[derive(Debug)]
pub struct Bake {
    id: RolloutId,
    revisions: Revisions,
    period: Duration,
    interval: Duration,
    analyses: Vec<(String, Arc<dyn Analysis>)>,
    routers: Vec<Arc<dyn TrafficRouter>>,
    workload: Option<Arc<dyn Workload>>,
    previous_kept_for: Option<Duration>,
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<GuardRecord>,
    sent: parking_lot::Mutex<u64>,
}

impl Bake {
    /// A bake of `revisions.candidate` (just promoted) for `period`, measuring every minute
    /// until [`interval`](Self::interval) says otherwise.
    pub fn new(id: RolloutId, revisions: Revisions, period: Duration) -> Self {
        Bake {
            id,
            revisions,
            period,
            interval: Duration::from_mins(1),
            analyses: Vec::new(),
            routers: Vec::new(),
            workload: None,
            previous_kept_for: None,
            store: Arc::new(crate::MemoryStateStore::new()),
            clock: Arc::new(TokioClock::new()),
            events: broadcast::channel(256).0,
            sent: parking_lot::Mutex::new(0),
        }
    }

    /// How often the analyses are measured.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Adds an analysis to watch.
    pub fn analysis(mut self, name: impl Into<String>, analysis: impl Analysis + 'static) -> Self {
        self.analyses.push((name.into(), Arc::new(analysis)));
        self
    }

    /// Adds a router to roll back on.
    pub fn router(mut self, router: impl TrafficRouter + 'static) -> Self {
        self.routers.push(Arc::new(router));
        self
    }

    /// The workload that says whether the previous revision still has ready replicas.
    pub fn workload(mut self, workload: impl Workload + 'static) -> Self {
        self.workload = Some(Arc::new(workload));
        self
    }

    /// How long the previous revision is kept after the bake began (a blue-green
    /// scale-down delay); past it, a failure raises an alert instead of rolling back.
    pub fn previous_kept_for(mut self, kept: Duration) -> Self {
        self.previous_kept_for = Some(kept);
        self
    }

    /// Where the bake keeps its document (default: a private in-memory store).
    pub fn store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = store;
        self
    }

    /// Where wall time comes from (default: [`TokioClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Records as they are saved; an alert is one of them.
    pub fn subscribe(&self) -> broadcast::Receiver<GuardRecord> {
        self.events.subscribe()
    }

    /// Runs the bake to its end (or resumes it from the store) and returns how it ended.
    pub async fn run(&self) -> Result<BakeOutcome, GuardError> {
        if self.analyses.is_empty() || self.routers.is_empty() {
            return Err(GuardError::Build {
                id: self.id.clone(),
                problem: "a bake needs at least one analysis and one router".into(),
            });
        }
        let (mut doc, mut version) = self.open().await?;
        if let Some(outcome) = &doc.outcome {
            return Ok(outcome.clone());
        }
        loop {
            let elapsed = self.clock.now().saturating_since(doc.started_at);
            let next = self.interval * (doc.measurements + 1);
            if next > self.period {
                let missing: Vec<&str> = self
                    .analyses
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .filter(|name| !doc.conclusive.iter().any(|c| c == name))
                    .collect();
                let (event, outcome) = if missing.is_empty() {
                    (BakeEvent::Passed, BakeOutcome::Passed)
                } else {
                    let reason = format!(
                        "no conclusive measurement of {} in the bake period",
                        missing.join(", ")
                    );
                    (
                        BakeEvent::Alert {
                            reason: reason.clone(),
                        },
                        BakeOutcome::Alerted { reason },
                    )
                };
                self.record(&mut doc, event);
                doc.outcome = Some(outcome.clone());
                self.save(&mut doc, &mut version).await?;
                return Ok(outcome);
            }
            tokio::time::sleep(next.saturating_sub(elapsed)).await;
            doc.measurements += 1;
            let mut failure = None;
            for (name, analysis) in &self.analyses {
                let ctx = AnalysisContext::new(
                    self.id.clone(),
                    self.revisions.clone(),
                    name.clone(),
                    doc.measurements,
                    self.clock.now().saturating_since(doc.started_at),
                );
                let (verdict, summary) = match analysis.evaluate(&ctx).await {
                    Ok(result) => (result.verdict, result.summary),
                    Err(e) => (Verdict::Inconclusive, format!("could not measure: {e}")),
                };
                if verdict != Verdict::Inconclusive && !doc.conclusive.contains(name) {
                    doc.conclusive.push(name.clone());
                }
                if verdict == Verdict::Fail && failure.is_none() {
                    failure = Some(format!("{name}: {summary}"));
                }
                self.record(
                    &mut doc,
                    BakeEvent::Measured {
                        analysis: name.clone(),
                        verdict,
                        summary,
                    },
                );
            }
            self.save(&mut doc, &mut version).await?;
            if let Some(reason) = failure {
                let outcome = self.undo(&mut doc, reason).await;
                doc.outcome = Some(outcome.clone());
                self.save(&mut doc, &mut version).await?;
                return Ok(outcome);
            }
        }
    }

    /// Rolls back if the previous revision still exists, else alerts.
    async fn undo(&self, doc: &mut BakeDocument, reason: String) -> BakeOutcome {
        let previous = self.revisions.stable.clone();
        let gone = self.previous_gone(doc).await;
        let mut failed = None;
        if gone.is_none() {
            let split = TrafficSplit::all_to(&previous);
            for router in &self.routers {
                if let Err(e) = router.set_split(&split).await {
                    failed = Some(format!(
                        "router `{}` refused the rollback: {e}",
                        router.name()
                    ));
                    break;
                }
            }
        }
        match gone.or(failed) {
            None => {
                self.record(
                    doc,
                    BakeEvent::RolledBack {
                        to: previous.clone(),
                        reason: reason.clone(),
                    },
                );
                BakeOutcome::RolledBack {
                    to: previous,
                    reason,
                }
            }
            Some(why) => {
                let reason = format!("{reason}; {why}");
                self.record(
                    doc,
                    BakeEvent::Alert {
                        reason: reason.clone(),
                    },
                );
                BakeOutcome::Alerted { reason }
            }
        }
    }

    /// Why the previous revision can no longer take traffic, if it cannot.
    async fn previous_gone(&self, doc: &BakeDocument) -> Option<String> {
        let previous = &self.revisions.stable;
        if let Some(kept) = self.previous_kept_for
            && self.clock.now().saturating_since(doc.started_at) >= kept
        {
            return Some(format!(
                "{previous} was kept for {} after promotion and is gone",
                humantime::format_duration(kept)
            ));
        }
        if let Some(workload) = &self.workload {
            match workload.status(previous).await {
                Ok(status) if status.ready > 0 => {}
                Ok(_) => return Some(format!("{previous} has no ready replicas")),
                Err(e) => return Some(format!("cannot tell whether {previous} still runs: {e}")),
            }
        }
        None
    }

    fn record(&self, doc: &mut BakeDocument, event: BakeEvent) {
        let record = GuardRecord {
            seq: doc.log.last().map_or(1, |r| r.seq + 1),
            at: self.clock.now(),
            entry: GuardEntry::Bake { event },
        };
        tracing::info!(bake = %self.id, seq = record.seq, "{record}");
        doc.log.push(record);
    }

    async fn open(&self) -> Result<(BakeDocument, Option<u64>), GuardError> {
        let stored = self
            .store
            .load_document(BAKE_KIND, &self.id)
            .await
            .map_err(store_error(&self.id))?;
        if let Some(stored) = stored {
            let doc: BakeDocument =
                serde_json::from_value(stored.body).map_err(|source| GuardError::Corrupt {
                    id: self.id.clone(),
                    source,
                })?;
            if doc.revisions != self.revisions {
                return Err(GuardError::PolicyMismatch {
                    id: self.id.clone(),
                });
            }
            return Ok((doc, Some(stored.version)));
        }
        let mut doc = BakeDocument {
            revisions: self.revisions.clone(),
            started_at: self.clock.now(),
            measurements: 0,
            conclusive: Vec::new(),
            outcome: None,
            log: Vec::new(),
        };
        self.record(
            &mut doc,
            BakeEvent::Started {
                revision: self.revisions.candidate.clone(),
                previous: self.revisions.stable.clone(),
                period: self.period,
            },
        );
        let mut version = None;
        self.save(&mut doc, &mut version).await?;
        Ok((doc, version))
    }

    async fn save(
        &self,
        doc: &mut BakeDocument,
        version: &mut Option<u64>,
    ) -> Result<(), GuardError> {
        let body = serde_json::to_value(&*doc).map_err(|source| GuardError::Corrupt {
            id: self.id.clone(),
            source,
        })?;
        match self
            .store
            .save_document(BAKE_KIND, &self.id, &body, *version)
            .await
        {
            Ok(v) => {
                *version = Some(v);
                let mut sent = self.sent.lock();
                for record in doc.log.iter().filter(|r| r.seq > *sent) {
                    let _ = self.events.send(record.clone());
                }
                *sent = doc.log.last().map_or(0, |r| r.seq);
                Ok(())
            }
            Err(e) => Err(store_error(&self.id)(e)),
        }
    }
}
