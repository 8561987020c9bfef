//! Carrying out actions through the providers, with the engine's retries.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cutover_analysis::Measurement;
use parking_lot::Mutex;
use tracing::{Instrument as _, debug_span, warn};

use super::events::Events;
use super::{Engine, RolloutEvent};
use crate::StoreError;
use crate::analysis::{AnalysisContext, AnalysisResult, SequentialInput, SequentialState};
use crate::planner::{Action, ActionResult, Slot};
use crate::retry::{Jitter, RetryPolicy};
use crate::state::Phase;
use crate::{
    ErrorKind, GateAnswer, GateContext, Health, MigrationContext, ProviderError, RevisionId,
    TrafficRouter, TrafficSplit,
};

/// Calls the store until it succeeds, fails for good, or `attempts` calls were made; waits
/// between calls as the retry policy says.
pub(super) async fn with_retries<T, F, Fut>(
    retrier: &Retrier,
    attempts: u32,
    what: &str,
    mut f: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if e.is_retryable() && attempt < attempts => {
                let delay = retrier.delay(attempt, None);
                warn!(attempt, error = %e, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A provider error that makes the rollout fail, kept to be returned by `run`.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) op: String,
    pub(super) provider: String,
    pub(super) error: ProviderError,
}

/// Retries provider calls on retryable errors, with backoff and jitter.
#[derive(Debug)]
pub(super) struct Retrier {
    policy: RetryPolicy,
    jitter: Mutex<Jitter>,
    events: Events,
}

impl Retrier {
    pub(super) fn new(policy: RetryPolicy, jitter: Jitter, events: Events) -> Self {
        Retrier {
            policy,
            jitter: Mutex::new(jitter),
            events,
        }
    }

    pub(super) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let unit = self.jitter.lock().next_unit();
        let delay = self.policy.backoff(attempt, unit);
        retry_after.map_or(delay, |after| delay.max(after))
    }

    /// Calls `f` until it succeeds, fails with an error that is not retryable, or has been
    /// tried `max_attempts` times. Each attempt runs in a `provider{name, op, attempt}` span.
    pub(super) async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        provider: &str,
        mut f: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut attempt = 1;
        loop {
            let span = debug_span!("provider", name = provider, op, attempt);
            match f().instrument(span).await {
                Ok(value) => return Ok(value),
                Err(error) if error.is_retryable() && attempt < self.policy.max_attempts => {
                    let delay = self.delay(attempt, error.retry_after());
                    warn!(provider, op, attempt, error = %error.chain(), delay = ?delay, "retrying");
                    self.events.send(|| RolloutEvent::Retrying {
                        op: op.to_owned(),
                        provider: provider.to_owned(),
                        attempt,
                        delay,
                        error: error.chain(),
                    });
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

fn failed(op: &str, provider: &str, error: ProviderError) -> (ActionResult, Option<Failure>) {
    let result = ActionResult::Failed {
        kind: error.kind(),
        error: format!("{op} on `{provider}`: {}", error.chain()),
    };
    let failure = Failure {
        op: op.to_owned(),
        provider: provider.to_owned(),
        error,
    };
    (result, Some(failure))
}

fn missing(what: &str) -> (ActionResult, Option<Failure>) {
    failed(
        what,
        "engine",
        ProviderError::permanent(format!("no provider for {what}")),
    )
}

impl Engine {
    /// Carries out `action`. `resumed` is true for an action a previous run saved as pending.
    pub(super) async fn execute(
        &self,
        action: &Action,
        resumed: bool,
    ) -> (ActionResult, Option<Failure>) {
        let op = action.op();
        let p = &self.providers;
        let revisions = &self.setup.revisions;
        match action {
            Action::CheckGate { gate } => {
                let Some(g) = p.gates.iter().find(|g| g.name() == gate) else {
                    return missing(&format!("gate `{gate}`"));
                };
                let stage = self
                    .setup
                    .gates
                    .iter()
                    .find(|i| i.name == *gate)
                    .map(|i| i.stage);
                let ctx = GateContext::new(
                    self.id.clone(),
                    revisions.clone(),
                    stage.unwrap_or(crate::GateStage::PreFlight),
                )
                .with_approvals(self.state.approvals.clone());
                match self.retrier.call(op, g.name(), || g.answer(&ctx)).await {
                    Ok(GateAnswer {
                        verdict,
                        checklist: None,
                    }) => (ActionResult::Gate(verdict), None),
                    Ok(GateAnswer {
                        verdict,
                        checklist: Some(checklist),
                    }) => (
                        ActionResult::Checklist {
                            verdict,
                            checklist: Box::new(checklist),
                        },
                        None,
                    ),
                    // A gate that cannot be asked is closed; that is not a failure of the rollout.
                    Err(e) => (failed(op, g.name(), e).0, None),
                }
            }
            Action::ApplyMigration { id } | Action::RevertMigration { id } => {
                let apply = matches!(action, Action::ApplyMigration { .. });
                let Some(m) = p.migrations.iter().find(|m| m.id() == id) else {
                    return missing(&format!("migration `{id}`"));
                };
                let promoted = self.state.phase == Phase::Promoting
                    && self
                        .state
                        .promotion
                        .as_ref()
                        .is_some_and(|p| p.switched_at.is_some() && p.point_of_no_return);
                let ctx = MigrationContext::new(self.id.clone(), revisions.clone())
                    .with_promoted(promoted);
                if resumed {
                    match self
                        .retrier
                        .call("is_applied", id, || m.is_applied(&ctx))
                        .await
                    {
                        Ok(Some(applied)) if applied == apply => {
                            return (ActionResult::AlreadyDone, None);
                        }
                        Ok(_) => {}
                        Err(e) => return failed("is_applied", id, e),
                    }
                }
                let outcome = if apply {
                    self.retrier.call(op, id, || m.apply(&ctx)).await
                } else {
                    self.retrier.call(op, id, || m.revert(&ctx)).await
                };
                match outcome {
                    Ok(()) => (ActionResult::Done, None),
                    Err(e) => failed(op, id, e),
                }
            }
            Action::SetSplit { split } => {
                for router in &p.routers {
                    if let Err(e) = self
                        .retrier
                        .call(op, router.name(), || set_and_verify(router.as_ref(), split))
                        .await
                    {
                        return failed(op, router.name(), e);
                    }
                }
                (ActionResult::Done, None)
            }
            Action::SetHeaderRoute { route } => {
                self.each_router(op, |r| r.set_header_route(route, &revisions.candidate))
                    .await
            }
            Action::RemoveHeaderRoute { name } => {
                self.each_router(op, |r| r.remove_header_route(name)).await
            }
            Action::SetMirror { mirror } => {
                self.each_router(op, |r| r.set_mirror(mirror, &revisions.candidate))
                    .await
            }
            Action::RemoveMirror { name } => self.each_router(op, |r| r.remove_mirror(name)).await,
            Action::Scale { revision, replicas } => {
                let Some(w) = &p.workload else {
                    return missing("scaling");
                };
                match self
                    .retrier
                    .call(op, w.name(), || w.scale(revision, *replicas))
                    .await
                {
                    Ok(()) => (ActionResult::Done, None),
                    Err(e) => failed(op, w.name(), e),
                }
            }
            Action::ObserveWorkload { revisions } => {
                let Some(w) = &p.workload else {
                    return missing("replica status");
                };
                let mut statuses = BTreeMap::new();
                for revision in revisions {
                    match self.retrier.call(op, w.name(), || w.status(revision)).await {
                        Ok(status) => {
                            statuses.insert(revision.clone(), status);
                        }
                        Err(e) => return observation_failed(op, w.name(), e),
                    }
                }
                (ActionResult::Workload(statuses), None)
            }
            Action::CheckHealth { revision } => self.check_health(op, revision).await,
            Action::Measure {
                slot,
                analysis,
                measurement,
            } => {
                let Some(a) = p.analyses.get(analysis) else {
                    return missing(&format!("analysis `{analysis}`"));
                };
                let now = self.clock.now();
                let progress = match slot {
                    Slot::Step => self.state.analysis.as_ref(),
                    Slot::Background => self.state.background.as_ref(),
                };
                let started = progress.map_or(self.state.step_started_at, |p| p.started_at);
                let ctx = AnalysisContext::new(
                    self.id.clone(),
                    revisions.clone(),
                    analysis.clone(),
                    *measurement,
                    now.saturating_since(started),
                );
                let outcome = self.retrier.call(op, analysis, || a.evaluate(&ctx)).await;
                (measured(outcome), None)
            }
        }
    }

    /// Takes one measurement of a sequential analysis, with its saved state; returns the new
    /// state when the measurement succeeded.
    pub(super) async fn measure_sequential(
        &self,
        slot: Slot,
        analysis: &str,
        measurement: u32,
    ) -> (ActionResult, Option<SequentialState>) {
        let Some(a) = self.providers.sequential.get(analysis) else {
            return (missing(&format!("analysis `{analysis}`")).0, None);
        };
        let now = self.clock.now();
        let progress = match slot {
            Slot::Step => self.state.analysis.as_ref(),
            Slot::Background => self.state.background.as_ref(),
        };
        // A post-promotion run measures from the switch, like the planner schedules it.
        let phase_start = match (slot, &self.state.promotion) {
            (Slot::Step, Some(p)) if self.state.phase == Phase::Promoting => {
                p.switched_at.unwrap_or(self.state.step_started_at)
            }
            _ => self.state.step_started_at,
        };
        let started = progress.map_or(phase_start, |p| p.started_at);
        let (run, default_count) = self
            .state
            .analysis_run(&self.setup, slot)
            .unwrap_or_else(|| (crate::plan::AnalysisRun::new(analysis), None));
        let min_duration = run.count.or(default_count).map(|c| run.interval * c);
        let canary_weight = self.state.split.as_ref().map_or(0.5, |s| {
            f64::from(s.weight(&self.setup.revisions.candidate).basis_points())
                / f64::from(crate::TOTAL_BASIS_POINTS)
        });
        let input = SequentialInput {
            data_start: started + run.initial_delay,
            min_duration,
            canary_weight,
            state: progress.and_then(|p| p.sequential.clone()),
        };
        let ctx = AnalysisContext::new(
            self.id.clone(),
            self.setup.revisions.clone(),
            analysis,
            measurement,
            now.saturating_since(started),
        );
        // Each attempt asks for the data up to its own time, so a retried query never
        // overlaps the next measurement's window.
        let outcome = self
            .retrier
            .call("measure", analysis, || {
                a.measure(&ctx, self.clock.now(), input.clone())
            })
            .await;
        match outcome {
            Ok((result, state)) => (measured(Ok(result)), Some(state)),
            Err(e) => (measured(Err(e)), None),
        }
    }

    async fn each_router<'a, F, Fut>(
        &'a self,
        op: &'static str,
        f: F,
    ) -> (ActionResult, Option<Failure>)
    where
        F: Fn(&'a Arc<dyn TrafficRouter>) -> Fut,
        Fut: Future<Output = Result<(), ProviderError>>,
    {
        for router in &self.providers.routers {
            if let Err(e) = self.retrier.call(op, router.name(), || f(router)).await {
                return failed(op, router.name(), e);
            }
        }
        (ActionResult::Done, None)
    }

    /// Every probe must report ready; the first failure, else the first progress, wins.
    async fn check_health(
        &self,
        op: &'static str,
        revision: &RevisionId,
    ) -> (ActionResult, Option<Failure>) {
        let mut progressing = None;
        for probe in &self.providers.probes {
            match self
                .retrier
                .call(op, probe.name(), || probe.check(revision))
                .await
            {
                Ok(Health::Failed { reason }) => {
                    let reason = format!("{}: {reason}", probe.name());
                    return (ActionResult::Health(Health::Failed { reason }), None);
                }
                Ok(Health::Progressing { detail }) => {
                    progressing.get_or_insert(Health::Progressing {
                        detail: format!("{}: {detail}", probe.name()),
                    });
                }
                Ok(Health::Ready) => {}
                Err(e) => return observation_failed(op, probe.name(), e),
            }
        }
        (
            ActionResult::Health(progressing.unwrap_or(Health::Ready)),
            None,
        )
    }
}

/// A measurement's result: the analysis's verdict, or the error that kept it from measuring.
fn measured(outcome: Result<AnalysisResult, ProviderError>) -> ActionResult {
    match outcome {
        Ok(result) => ActionResult::Measured {
            measurement: Measurement::from(result.verdict),
            result: Some(result),
            error: None,
        },
        Err(e) => ActionResult::Measured {
            measurement: Measurement::Error,
            result: None,
            error: Some(e.chain()),
        },
    }
}

/// An observation that failed: retryable errors (retries spent) are reported and polled again;
/// others fail the rollout.
fn observation_failed(
    op: &str,
    provider: &str,
    error: ProviderError,
) -> (ActionResult, Option<Failure>) {
    let fatal = !matches!(error.kind(), ErrorKind::Transient | ErrorKind::Throttled);
    let (result, failure) = failed(op, provider, error);
    (result, failure.filter(|_| fatal))
}

/// Sets the split and reads it back; a router that reports another split has not done its job.
async fn set_and_verify(
    router: &dyn TrafficRouter,
    split: &TrafficSplit,
) -> Result<(), ProviderError> {
    router.set_split(split).await?;
    match router.current_split().await? {
        Some(actual) if !actual.same_traffic(split) => Err(ProviderError::transient(format!(
            "router `{}` reports split {actual} after being set to {split}",
            router.name()
        ))),
        _ => Ok(()),
    }
}
