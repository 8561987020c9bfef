//! Measuring a stage's verification analyses after its rollout promoted freight: each run
//! measured on its own schedule, its tally saved in the pipeline's document after every
//! measurement.

use std::sync::Arc;

use cutover_core::{
    Analysis, AnalysisContext, Clock, Measurement, Revisions, RolloutBuilder, RolloutId, RunStatus,
    StateStore, Timestamp,
};

use crate::doc;
use crate::error::PipelineError;
use crate::executor::Verification;
use crate::state::{Promotion, RunProgress, VerificationProgress};
use crate::verification::StageVerification;

/// Where a stage's verification runs.
pub(crate) struct Measure<'a> {
    /// The store of the pipeline's document.
    pub store: &'a dyn StateStore,
    /// The pipeline.
    pub pipeline: &'a RolloutId,
    /// The clock.
    pub clock: &'a dyn Clock,
    /// The stage.
    pub stage: &'a str,
    /// Its verification.
    pub spec: &'a StageVerification,
}

/// A fresh progress of `spec`'s runs, begun at `now`.
pub(crate) fn begin(spec: &StageVerification, now: Timestamp) -> VerificationProgress {
    VerificationProgress {
        started: now,
        runs: spec
            .runs
            .iter()
            .map(|r| RunProgress {
                analysis: r.name.clone(),
                ..RunProgress::default()
            })
            .collect(),
    }
}

impl Measure<'_> {
    /// Measures the runs until they all succeeded (`Passed`) or one ended otherwise
    /// (`Failed`), starting from the progress saved in `promotion`, which is kept up to date.
    /// The analyses are resolved on `builder` (the stage's environments attached). `None`:
    /// someone else moved the promotion on.
    pub(crate) async fn run(
        &self,
        builder: &RolloutBuilder,
        revisions: Result<Revisions, String>,
        promotion: &mut Promotion,
    ) -> Result<Option<Verification>, PipelineError> {
        let failed = |reason: String| Ok(Some(Verification::Failed { reason }));
        let mut analyses: Vec<Arc<dyn Analysis>> = Vec::with_capacity(self.spec.runs.len());
        for (j, run) in self.spec.runs.iter().enumerate() {
            let at = format!("verification.runs[{j}]");
            match builder.resolve_analysis(&at, &run.name, &self.spec.analyses) {
                Ok(analysis) => analyses.push(analysis),
                Err(e) => return failed(format!("cannot be built: {e}")),
            }
        }
        let revisions = match revisions {
            Ok(r) => r,
            Err(e) => return failed(e),
        };
        let mut progress = match &promotion.verification {
            // The same runs as the pipeline file's (it may have changed since).
            Some(p)
                if p.runs.iter().map(|r| &r.analysis).eq(self
                    .spec
                    .runs
                    .iter()
                    .map(|r| &r.name)) =>
            {
                p.clone()
            }
            _ => begin(self.spec, self.clock.now()),
        };
        loop {
            let now = self.clock.now();
            let mut due = Vec::new();
            let mut wake: Option<Timestamp> = None;
            for (j, (run, p)) in self.spec.runs.iter().zip(&progress.runs).enumerate() {
                let status = p.tally.status(&run.limits(Some(1)));
                let ended = match status {
                    RunStatus::Successful => continue,
                    RunStatus::Running => {
                        let at = p
                            .last_at
                            .map_or(progress.started + run.initial_delay, |t| t + run.interval);
                        if at <= now {
                            due.push(j);
                        } else {
                            wake = Some(wake.map_or(at, |w| w.min(at)));
                        }
                        continue;
                    }
                    RunStatus::Failed => "failed",
                    RunStatus::Inconclusive => "was inconclusive",
                    RunStatus::Error => "could not measure",
                };
                return failed(format!(
                    "analysis `{}` {ended} ({} of {} measurements passed): {}",
                    run.name,
                    p.tally.passed,
                    p.tally.count + p.tally.errors,
                    p.summary
                ));
            }
            if due.is_empty() {
                match wake {
                    None => return Ok(Some(Verification::Passed)),
                    Some(at) => {
                        tokio::time::sleep(at.saturating_since(now)).await;
                        continue;
                    }
                }
            }
            for j in due {
                let p = &mut progress.runs[j];
                let ctx = AnalysisContext::new(
                    promotion.rollout.clone(),
                    revisions.clone(),
                    p.analysis.clone(),
                    p.tally.count + p.tally.errors + 1,
                    now.saturating_since(progress.started),
                );
                match analyses[j].evaluate(&ctx).await {
                    Ok(result) => {
                        p.tally.record(result.verdict.into());
                        p.summary = result.summary;
                    }
                    Err(e) => {
                        p.tally.record(Measurement::Error);
                        p.summary = format!("could not measure: {e}");
                    }
                }
                p.last_at = Some(now);
            }
            let mut next = promotion.clone();
            next.verification = Some(progress.clone());
            let saved = doc::update(self.store, self.pipeline, |state| {
                let here = state.stage_mut(self.stage);
                if here.promotion.as_ref() != Some(&*promotion) {
                    return Ok(None);
                }
                here.promotion = Some(next.clone());
                Ok(Some(()))
            })
            .await?;
            if saved.is_none() {
                return Ok(None);
            }
            *promotion = next;
        }
    }
}
