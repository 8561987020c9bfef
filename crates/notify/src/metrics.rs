//! Rollout metrics in Prometheus / OpenMetrics text, with `prometheus-client`.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use cutover_core::planner::{Action, ActionResult, Decision};
use cutover_core::state::{Final, Outcome};
use cutover_core::{DecisionRecord, Entry, RolloutEvent, StateStore, StoreError, Timestamp};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::sync::atomic::AtomicU64;

use crate::dora::Report;
use crate::notice::RolloutInfo;
use crate::release::Release;
use crate::scan::summaries;

type Labels = Vec<(&'static str, String)>;

/// The DORA gauges, in the order of [`Inner::dora`].
const DORA: [(&str, &str); 4] = [
    (
        "dora_deployments_per_day",
        "Successful deployments per day over the DORA window",
    ),
    (
        "dora_lead_time_seconds",
        "Median lead time for changes over the DORA window",
    ),
    (
        "dora_change_failure_rate",
        "Failed deployments / all deployments over the DORA window",
    ),
    (
        "dora_time_to_restore_seconds",
        "Median time to restore over the DORA window",
    ),
];

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct Buckets(Vec<f64>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

struct Inner {
    registry: Registry,
    started: Family<Labels, Counter>,
    finished: Family<Labels, Counter>,
    rollbacks: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, Buckets>,
    step_duration: Family<Labels, Histogram, Buckets>,
    time_to_rollback: Family<Labels, Histogram, Buckets>,
    measurements: Family<Labels, Counter>,
    calls: Family<Labels, Counter>,
    action_failures: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    commands: Family<Labels, Counter>,
    phase: Family<Labels, Gauge>,
    weight: Family<Labels, Gauge<f64, AtomicU64>>,
    notifications: Family<Labels, Counter>,
    dora: [Family<Labels, Gauge<f64, AtomicU64>>; 4],
    /// Per rollout: when it started and its phase series, to time it and to clear its gauges.
    live: Mutex<HashMap<String, Live>>,
    /// Per rollout: the last record seq observed by [`RolloutMetrics::catch_up`].
    seen: Mutex<HashMap<String, u64>>,
}

struct Live {
    started: Timestamp,
    phase: Option<Labels>,
}

/// Rollout metrics, registered in a `prometheus-client` [`Registry`], all prefixed `cutover_`:
///
/// | Metric | Type | Labels |
/// |---|---|---|
/// | `cutover_rollouts_started_total` | counter | `strategy` |
/// | `cutover_rollouts_finished_total` | counter | `strategy`, `outcome` (`promoted`, `rolled_back`, `aborted`, `concluded`, `failed`) |
/// | `cutover_rollbacks_total` | counter | `strategy`, `reason` (`analysis_failed`, `unhealthy`, ...) |
/// | `cutover_rollout_duration_seconds` | histogram | `strategy`, `outcome` |
/// | `cutover_step_duration_seconds` | histogram | `strategy`, `step` (its kind) |
/// | `cutover_time_to_rollback_seconds` | histogram | `strategy`: start to rolled back |
/// | `cutover_analysis_measurements_total` | counter | `analysis`, `run` (`step`, `background`), `result` (`pass`, `fail`, `inconclusive`, `error`) |
/// | `cutover_provider_calls_total` | counter | `provider`, `op` (`set_split`, ...): calls carried out, after their retries (see [provider](#the-provider-label)) |
/// | `cutover_provider_failures_total` | counter | `provider`, `op`: those of them that failed for good (an error, or an analysis that could not measure) |
/// | `cutover_provider_retries_total` | counter | `provider`, `op`: failed calls tried again |
/// | `cutover_commands_total` | counter | `command`, `accepted` |
/// | `cutover_rollout_phase` | gauge | `rollout`, `phase`: 1 while the rollout is in that phase, removed when it ends |
/// | `cutover_rollout_candidate_weight_percent` | gauge | `rollout`: the candidate's share of traffic |
/// | `cutover_notifications_total` | counter | `sink`, `kind`, `outcome` (`delivered`, `retried`, `dead_lettered`) |
/// | `cutover_dora_deployments_per_day`, `cutover_dora_lead_time_seconds`, `cutover_dora_change_failure_rate`, `cutover_dora_time_to_restore_seconds` | gauge | `service` (`*`: all); see [`set_dora`](RolloutMetrics::set_dora) |
///
/// # The `provider` label
///
/// Decision records name the gate of a `check_gate`, the migration of `apply_migration` /
/// `revert_migration` and the analysis of `measure`: those are the names the providers were
/// given, and the `provider` label carries them. Records do not name the router, workload or
/// probe that carried out the other actions (one `set_split` goes to every router), so their
/// `provider` is that role: `router`, `workload` or `probe`. Calls and failures use the same
/// label, so `failures / calls` is an error rate per provider. `cutover_provider_retries_total`
/// comes from engine events, which do name each provider (`mesh`, `prometheus`, ...).
///
/// Feed it with [`observe`](RolloutMetrics::observe) (records as they come, e.g. from
/// [`Rollout::subscribe`](cutover_core::Rollout::subscribe) through
/// [`observe_event`](RolloutMetrics::observe_event)) or [`catch_up`](RolloutMetrics::catch_up)
/// (reads new records from a store). Serve it with [`router`](RolloutMetrics::router) or
/// [`serve`](RolloutMetrics::serve); [`encode`](RolloutMetrics::encode) gives the text.
///
/// ```
/// let metrics = cutover_notify::RolloutMetrics::new();
/// assert!(metrics.encode().ends_with("# EOF\n"));
/// ```
#[derive(Clone)]
pub struct RolloutMetrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for RolloutMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RolloutMetrics").finish_non_exhaustive()
    }
}

impl Default for RolloutMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RolloutMetrics {
    /// Metrics in a registry of their own.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cutover");
        // 1 s to about 9 h.
        let long = Buckets(exponential_buckets(1.0, 2.0, 16).collect());
        let inner = Inner {
            started: Family::default(),
            finished: Family::default(),
            rollbacks: Family::default(),
            duration: Family::new_with_constructor(long.clone()),
            step_duration: Family::new_with_constructor(long.clone()),
            time_to_rollback: Family::new_with_constructor(long),
            measurements: Family::default(),
            calls: Family::default(),
            action_failures: Family::default(),
            retries: Family::default(),
            commands: Family::default(),
            phase: Family::default(),
            weight: Family::default(),
            notifications: Family::default(),
            dora: Default::default(),
            live: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        registry.register(
            "rollouts_started",
            "Rollouts started",
            inner.started.clone(),
        );
        registry.register(
            "rollouts_finished",
            "Rollouts finished, by outcome",
            inner.finished.clone(),
        );
        registry.register(
            "rollbacks",
            "Automatic rollbacks, by reason",
            inner.rollbacks.clone(),
        );
        registry.register(
            "rollout_duration_seconds",
            "Time from start to end of a rollout",
            inner.duration.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Time spent in a strategy step",
            inner.step_duration.clone(),
        );
        registry.register(
            "time_to_rollback_seconds",
            "Time from the start of a rollout to the end of its rollback",
            inner.time_to_rollback.clone(),
        );
        registry.register(
            "analysis_measurements",
            "Analysis measurements, by result",
            inner.measurements.clone(),
        );
        registry.register(
            "provider_calls",
            "Provider calls carried out, after their retries, whatever came of them",
            inner.calls.clone(),
        );
        registry.register(
            "provider_failures",
            "Provider calls that failed after their retries",
            inner.action_failures.clone(),
        );
        registry.register(
            "provider_retries",
            "Provider calls that failed and were tried again",
            inner.retries.clone(),
        );
        registry.register(
            "commands",
            "Commands received, by kind",
            inner.commands.clone(),
        );
        registry.register(
            "rollout_phase",
            "1 for the phase each running rollout is in",
            inner.phase.clone(),
        );
        registry.register(
            "rollout_candidate_weight_percent",
            "The candidate's share of traffic, per running rollout",
            inner.weight.clone(),
        );
        registry.register(
            "notifications",
            "Notification attempts, by sink and outcome",
            inner.notifications.clone(),
        );
        for (family, (name, help)) in inner.dora.iter().zip(DORA) {
            registry.register(name, help, family.clone());
        }
        RolloutMetrics {
            inner: Arc::new(Inner { registry, ..inner }),
        }
    }

    /// The metrics in OpenMetrics text, ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
            .expect("writing to a String does not fail");
        text
    }

    /// An axum router answering `GET /metrics` with [`encode`](RolloutMetrics::encode), to
    /// mount in your own server.
    pub fn router(&self) -> Router {
        let metrics = self.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode()).into_response() }
            }),
        )
    }

    /// Serves [`router`](RolloutMetrics::router) on `addr` (use `127.0.0.1:<port>`) until the
    /// task is dropped; returns the bound address and the task.
    pub async fn serve(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let router = self.router();
        Ok((
            local,
            tokio::spawn(async move { axum::serve(listener, router).await }),
        ))
    }

    /// Counts a notification attempt (the `Notifier` of the `sinks` feature calls this).
    pub fn notification(&self, sink: &str, kind: &str, outcome: &str) {
        self.inner
            .notifications
            .get_or_create(&vec![
                ("sink", sink.to_owned()),
                ("kind", kind.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    /// Shows a DORA report as gauges, per service and for all services together (`service="*"`);
    /// a figure that is not known (no deployments, no commit times) has no series. Call it
    /// after each [`dora::from_store`](crate::dora::from_store), on a timer.
    pub fn set_dora(&self, report: &Report) {
        for family in &self.inner.dora {
            family.clear();
        }
        let scopes = std::iter::once(("*", &report.overall))
            .chain(report.services.iter().map(|(s, f)| (s.as_str(), f)));
        for (service, figures) in scopes {
            let values = [
                Some(figures.deployments_per_day),
                figures.lead_time_seconds,
                figures.change_failure_rate,
                figures.time_to_restore_seconds,
            ];
            for (family, value) in self.inner.dora.iter().zip(values) {
                if let Some(value) = value {
                    family
                        .get_or_create(&vec![("service", service.to_owned())])
                        .set(value);
                }
            }
        }
    }

    /// Takes in an engine event: records, and provider retries.
    pub fn observe_event(&self, rollout: &RolloutInfo, event: &RolloutEvent) {
        match event {
            RolloutEvent::Record(record) => self.observe(rollout, record),
            RolloutEvent::Retrying { op, provider, .. } => {
                self.inner
                    .retries
                    .get_or_create(&vec![("provider", provider.clone()), ("op", op.clone())])
                    .inc();
            }
            _ => {}
        }
    }

    /// Takes in one decision record of `rollout`. Feed each record once, in order.
    pub fn observe(&self, rollout: &RolloutInfo, record: &DecisionRecord) {
        let inner = &self.inner;
        let id = rollout.id.as_str();
        let strategy = || ("strategy", rollout.strategy.clone());
        self.set_phase(id, record);
        if let Some(split) = &record.inputs.split {
            self.set_weight(id, split.weight(&rollout.revisions.candidate).percent());
        }
        match &record.entry {
            Entry::Started { resumed, .. } => {
                let mut live = inner.live.lock();
                live.entry(id.to_owned()).or_insert(Live {
                    started: record.at,
                    phase: None,
                });
                if !resumed {
                    inner.started.get_or_create(&vec![strategy()]).inc();
                }
            }
            Entry::Command { command, effect } => {
                inner
                    .commands
                    .get_or_create(&vec![
                        ("command", tag(&command.request.command)),
                        ("accepted", effect.accepted.to_string()),
                    ])
                    .inc();
            }
            Entry::Decision { decision, result } => {
                if let (Decision::Apply(action), Some(result)) = (decision, result) {
                    self.provider_call(action, result);
                }
                match (decision, result) {
                    (Decision::Apply(Action::SetSplit { split }), Some(ActionResult::Done)) => {
                        self.set_weight(id, split.weight(&rollout.revisions.candidate).percent());
                    }
                    (
                        Decision::Apply(Action::Measure { slot, analysis, .. }),
                        Some(ActionResult::Measured { measurement, .. }),
                    ) => {
                        inner
                            .measurements
                            .get_or_create(&vec![
                                ("analysis", analysis.clone()),
                                ("run", tag(slot)),
                                ("result", tag(measurement)),
                            ])
                            .inc();
                    }
                    (Decision::Advance, _) => {
                        if let Some(step) = &record.step {
                            inner
                                .step_duration
                                .get_or_create(&vec![strategy(), ("step", step.kind.clone())])
                                .observe(record.inputs.step_elapsed.as_secs_f64());
                        }
                    }
                    (Decision::Rollback(reason), _) => {
                        inner
                            .rollbacks
                            .get_or_create(&vec![strategy(), ("reason", tag(reason))])
                            .inc();
                    }
                    (Decision::Complete(end), _) => self.finish(rollout, record, end),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Counts a provider call the engine carried out, and whether it failed.
    fn provider_call(&self, action: &Action, result: &ActionResult) {
        let labels = vec![
            ("provider", provider_of(action)),
            ("op", action.op().to_owned()),
        ];
        self.inner.calls.get_or_create(&labels).inc();
        let failed = matches!(
            result,
            ActionResult::Failed { .. } | ActionResult::Measured { error: Some(_), .. }
        );
        if failed {
            self.inner.action_failures.get_or_create(&labels).inc();
        }
    }

    fn finish(&self, rollout: &RolloutInfo, record: &DecisionRecord, end: &Final) {
        let inner = &self.inner;
        let outcome = outcome_name(end);
        let labels = vec![
            ("strategy", rollout.strategy.clone()),
            ("outcome", outcome.to_owned()),
        ];
        inner.finished.get_or_create(&labels).inc();
        let live = inner.live.lock().remove(rollout.id.as_str());
        if let Some(live) = &live {
            let took = record.at.saturating_since(live.started).as_secs_f64();
            inner.duration.get_or_create(&labels).observe(took);
            if outcome == "rolled_back" {
                inner
                    .time_to_rollback
                    .get_or_create(&vec![("strategy", rollout.strategy.clone())])
                    .observe(took);
            }
            if let Some(phase) = &live.phase {
                inner.phase.remove(phase);
            }
        }
        inner
            .weight
            .remove(&vec![("rollout", rollout.id.to_string())]);
    }

    fn set_phase(&self, id: &str, record: &DecisionRecord) {
        let labels = vec![("rollout", id.to_owned()), ("phase", tag(&record.phase))];
        let mut live = self.inner.live.lock();
        let entry = live.entry(id.to_owned()).or_insert(Live {
            started: record.at,
            phase: None,
        });
        if entry.phase.as_ref() != Some(&labels) {
            if let Some(old) = entry.phase.replace(labels.clone()) {
                self.inner.phase.remove(&old);
            }
            self.inner.phase.get_or_create(&labels).set(1);
        }
    }

    fn set_weight(&self, id: &str, percent: f64) {
        self.inner
            .weight
            .get_or_create(&vec![("rollout", id.to_owned())])
            .set(percent);
    }

    /// Reads every rollout's records that this instance has not seen yet from `store` and
    /// observes them; returns how many. Call it on a timer, or once before a scrape.
    pub async fn catch_up(&self, store: &dyn StateStore) -> Result<usize, StoreError> {
        let mut count = 0;
        for summary in &summaries(store, &[]).await? {
            let mut info = None;
            loop {
                let seen = self
                    .inner
                    .seen
                    .lock()
                    .get(summary.id.as_str())
                    .copied()
                    .unwrap_or(0);
                let records = store.records(&summary.id, seen, 500).await?;
                let Some(last) = records.last().map(|r| r.seq) else {
                    break;
                };
                if info.is_none() {
                    let release = Release::load_if_kept(store, &summary.id).await?;
                    info = Some(RolloutInfo::of(summary, release.as_ref()));
                }
                let info = info.as_ref().expect("set above");
                for record in &records {
                    self.observe(info, record);
                }
                count += records.len();
                self.inner.seen.lock().insert(summary.id.to_string(), last);
                if records.len() < 500 {
                    break;
                }
            }
        }
        Ok(count)
    }

    /// Runs [`catch_up`](RolloutMetrics::catch_up) every `every` until the task is dropped.
    pub fn follow(
        &self,
        store: Arc<dyn StateStore>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let metrics = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = metrics.catch_up(store.as_ref()).await {
                    tracing::warn!(error = %e, "metrics could not read the store");
                }
                tokio::time::sleep(every).await;
            }
        })
    }
}

/// The provider an action went to: its name when the record says it, else its role (see
/// [`RolloutMetrics`]).
fn provider_of(action: &Action) -> String {
    match action {
        Action::CheckGate { gate } => gate.clone(),
        Action::ApplyMigration { id } | Action::RevertMigration { id } => id.clone(),
        Action::Measure { analysis, .. } => analysis.clone(),
        Action::Scale { .. } | Action::ObserveWorkload { .. } => String::from("workload"),
        Action::CheckHealth { .. } => String::from("probe"),
        Action::SetSplit { .. }
        | Action::SetHeaderRoute { .. }
        | Action::RemoveHeaderRoute { .. }
        | Action::SetMirror { .. }
        | Action::RemoveMirror { .. } => String::from("router"),
        _ => String::from("other"),
    }
}

/// `promoted`, `rolled_back`, `aborted`, `concluded`, `refused` or `failed`.
pub(crate) fn outcome_name(end: &Final) -> &'static str {
    match end {
        Final::Outcome(Outcome::Promoted) => "promoted",
        Final::Outcome(Outcome::RolledBack(_)) => "rolled_back",
        Final::Outcome(Outcome::Aborted { .. }) => "aborted",
        Final::Outcome(Outcome::Concluded { .. }) => "concluded",
        Final::Outcome(Outcome::Refused { .. }) => "refused",
        Final::Failed { .. } => "failed",
        Final::Outcome(_) => "other",
    }
}

/// The snake_case name serde gives an enum's variant.
fn tag(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(serde_json::Value::Object(map)) => map.keys().next().cloned().unwrap_or_default(),
        _ => String::from("unknown"),
    }
}
