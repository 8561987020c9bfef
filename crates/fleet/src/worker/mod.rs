//! [`Worker`]: claims runnable rollouts from the fleet's queue and runs them under fenced
//! leases.

mod keeper;
mod pacing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cutover_core::{
    Analysis, Clock, HealthProbe, Lease, MetricSource, Outcome, ProviderError, RolloutError,
    RolloutId, StoreError, TokioClock, TrafficRouter, Workload,
};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument as _, debug, info, info_span, warn};

use self::keeper::{Keeper, Running};
use self::pacing::Pacing;
use crate::PgStateStore;
use crate::error::{WorkerError, chain};
use crate::fence::{Fence, FencedStore};
use crate::pg::sql::{big, millis, unbig};
use crate::registry::{BuildFailure, Factory, ProviderContext, Registry};
use crate::spec::{ProviderKind, RolloutSpec};

/// How long a worker's leases last without renewal, unless set with
/// [`WorkerBuilder::lease_ttl`].
pub const DEFAULT_WORKER_LEASE_TTL: Duration = Duration::from_secs(15);

/// Assembles a [`Worker`]: its store, its id, the providers it offers, and how it claims.
///
/// ```no_run
/// # async fn example(store: cutover_fleet::PgStateStore) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use cutover_fleet::Worker;
/// # #[derive(Debug)] struct EdgeProxy;
/// # #[async_trait::async_trait]
/// # impl cutover_core::TrafficRouter for EdgeProxy {
/// #     fn name(&self) -> &str { "edge" }
/// #     fn capabilities(&self) -> cutover_core::RouterCapabilities { cutover_core::RouterCapabilities::new(cutover_core::Granularity::PERCENT) }
/// #     async fn set_split(&self, _: &cutover_core::TrafficSplit) -> Result<(), cutover_core::ProviderError> { Ok(()) }
/// #     async fn current_split(&self) -> Result<Option<cutover_core::TrafficSplit>, cutover_core::ProviderError> { Ok(None) }
/// # }
/// let worker = Worker::builder(store)
///     .id("deployer-7")
///     .router("edge-proxy", |_ctx| Ok(Arc::new(EdgeProxy)))
///     .build()?;
/// let report = worker.run_until_signal().await?; // SIGTERM or Ctrl-C: drain and exit
/// println!("{report:?}");
/// # Ok(()) }
/// ```
#[must_use]
pub struct WorkerBuilder {
    store: PgStateStore,
    id: Option<String>,
    registry: Registry,
    duplicate: Option<WorkerError>,
    lease_ttl: Duration,
    poll_interval: Duration,
    max_rollouts: usize,
    claim_batch: usize,
    claim_rate: f64,
    retry_base: Duration,
    retry_max: Duration,
    clock: Option<Arc<dyn Clock>>,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("store", &self.store)
            .field("id", &self.id)
            .field("offers", &self.registry)
            .finish_non_exhaustive()
    }
}

macro_rules! offer {
    ($(#[$doc:meta])* $method:ident, $field:ident, $trait:ident, $kind:expr) => {
        $(#[$doc])*
        pub fn $method(
            mut self,
            name: impl Into<String>,
            factory: impl Fn(&ProviderContext) -> Result<Arc<dyn $trait>, ProviderError>
                + Send
                + Sync
                + 'static,
        ) -> Self {
            let name = name.into();
            if self.registry.$field.contains_key(&name) {
                self.duplicate.get_or_insert(WorkerError::DuplicateProvider {
                    kind: $kind.as_str(),
                    name: name.clone(),
                });
            }
            let factory: Factory<dyn $trait> = Arc::new(factory);
            self.registry.$field.insert(name, factory);
            self
        }
    };
}

impl WorkerBuilder {
    fn new(store: PgStateStore) -> Self {
        WorkerBuilder {
            store,
            id: None,
            registry: Registry::default(),
            duplicate: None,
            lease_ttl: DEFAULT_WORKER_LEASE_TTL,
            poll_interval: Duration::from_secs(1),
            max_rollouts: 100,
            claim_batch: 10,
            claim_rate: 50.0,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_mins(5),
            clock: None,
        }
    }

    /// The worker's id, unique in the fleet: the owner of its leases, named in records.
    /// Defaults to the host name, the process id and a random suffix.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    offer!(
        /// Offers a router under `name`; `factory` builds one for each rollout that names it.
        router, routers, TrafficRouter, ProviderKind::Router
    );
    offer!(
        /// Offers a health probe under `name`.
        health_probe, probes, HealthProbe, ProviderKind::Probe
    );
    offer!(
        /// Offers a workload under `name`.
        workload, workloads, Workload, ProviderKind::Workload
    );
    offer!(
        /// Offers a metric source under `name`.
        metric_source, metric_sources, MetricSource, ProviderKind::MetricSource
    );
    offer!(
        /// Offers an analysis written in code under `name`.
        analysis, analyses, Analysis, ProviderKind::Analysis
    );

    /// How long the worker's leases last without renewal (default 15 s, at least 1 s): a dead
    /// worker's rollouts are taken over this long after its last renewal, plus one poll. The
    /// worker renews every third of it.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How often an idle worker looks for rollouts to claim (default 1 s, at least 10 ms). A
    /// submitted or released rollout wakes it at once.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How many rollouts the worker runs at once (default 100).
    pub fn max_rollouts(mut self, n: usize) -> Self {
        self.max_rollouts = n;
        self
    }

    /// How many rollouts one claim takes at most (default 10).
    pub fn claim_batch(mut self, n: usize) -> Self {
        self.claim_batch = n;
        self
    }

    /// How many rollouts per second the worker claims at most (default 50).
    pub fn claim_rate(mut self, per_second: f64) -> Self {
        self.claim_rate = per_second;
        self
    }

    /// The back-off after a run that ended in an error that may pass: `base` after the first,
    /// doubling up to `max` (default 1 s and 5 min).
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.retry_base = base;
        self.retry_max = max;
        self
    }

    /// The wall clock for lease expiry times and the engines' records (default
    /// [`TokioClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Checks the settings and builds the worker.
    pub fn build(mut self) -> Result<Worker, WorkerError> {
        if let Some(e) = self.duplicate.take() {
            return Err(e);
        }
        let setting =
            |setting: &'static str, reason: String| WorkerError::Setting { setting, reason };
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(setting(
                "lease_ttl",
                format!("{:?} is under 1 s", self.lease_ttl),
            ));
        }
        if self.poll_interval < Duration::from_millis(10) {
            return Err(setting(
                "poll_interval",
                format!("{:?} is under 10 ms", self.poll_interval),
            ));
        }
        if self.max_rollouts == 0 || self.claim_batch == 0 {
            return Err(setting(
                "max_rollouts / claim_batch",
                "must be at least 1".into(),
            ));
        }
        if !(self.claim_rate.is_finite() && self.claim_rate > 0.0) {
            return Err(setting(
                "claim_rate",
                format!("{} is not a positive rate", self.claim_rate),
            ));
        }
        if self.retry_base.is_zero() || self.retry_max < self.retry_base {
            return Err(setting(
                "retry_backoff",
                "base must be positive and at most max".into(),
            ));
        }
        let id = self.id.take().unwrap_or_else(default_id);
        if id.trim().is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
            return Err(WorkerError::Id {
                id,
                reason: "must be 1 to 200 characters, none of them control characters",
            });
        }
        if self.registry.offered().is_empty() {
            return Err(setting("providers", "the worker offers no provider".into()));
        }
        Ok(Worker {
            id,
            store: self.store,
            registry: self.registry,
            lease_ttl: self.lease_ttl,
            poll_interval: self.poll_interval,
            max_rollouts: self.max_rollouts,
            claim_batch: self.claim_batch,
            claim_rate: self.claim_rate,
            retry_base: self.retry_base,
            retry_max: self.retry_max,
            clock: self.clock.unwrap_or_else(|| Arc::new(TokioClock::new())),
            drain: watch::Sender::new(false),
        })
    }
}

fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// A worker of the fleet: claims runnable rollouts (those whose providers it offers) with
/// `FOR UPDATE SKIP LOCKED` under a lease, runs them, renews the leases, and takes over
/// rollouts whose worker died once their lease has expired.
///
/// - **Claims** are bounded: at most [`max_rollouts`](WorkerBuilder::max_rollouts) at once,
///   [`claim_batch`](WorkerBuilder::claim_batch) per claim and
///   [`claim_rate`](WorkerBuilder::claim_rate) per second; an idle worker looks every
///   [`poll_interval`](WorkerBuilder::poll_interval) or when notified, and backs off while
///   the database fails.
/// - **Fencing**: each claim raises the lease's epoch. The engine's every write carries it
///   and the database refuses it once the lease is lost or past its deadline; every provider
///   call waits for a live lease and is never made once it is lost (see [`crate::fence`]).
/// - **Errors**: a run that ends in an error that may pass (a provider down, the database
///   unreachable) is retried later with back-off; one that cannot succeed (the providers
///   cannot express the plan, the stored rollout has another setup) is halted with the reason.
/// - **Draining**: on shutdown it stops claiming, stops its engines where they are (their
///   state is saved before every effect), hands their leases back at once, and exits.
#[derive(Debug)]
pub struct Worker {
    id: String,
    store: PgStateStore,
    registry: Registry,
    lease_ttl: Duration,
    poll_interval: Duration,
    max_rollouts: usize,
    claim_batch: usize,
    claim_rate: f64,
    retry_base: Duration,
    retry_max: Duration,
    clock: Arc<dyn Clock>,
    drain: watch::Sender<bool>,
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WorkerReport {
    /// The worker.
    pub worker: String,
    /// Rollouts claimed.
    pub claimed: u64,
    /// Rollouts run to their end (promoted, rolled back, aborted, concluded or failed).
    pub finished: u64,
    /// Rollouts whose run ended in an error that may pass; they were put back with back-off.
    pub retried: u64,
    /// Rollouts halted: their providers cannot carry them out.
    pub halted: u64,
    /// Rollouts dropped because their lease was lost.
    pub lost: u64,
    /// Rollouts handed back when draining.
    pub handed_back: u64,
}

/// How one rollout's run ended, seen by the worker.
enum RunEnd {
    Ran(Result<Outcome, RolloutError>),
    Lost,
    Drained,
}

impl Worker {
    /// Starts building a worker on `store`.
    pub fn builder(store: PgStateStore) -> WorkerBuilder {
        WorkerBuilder::new(store)
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The providers it offers, as `kind:name` keys.
    pub fn offers(&self) -> Vec<String> {
        self.registry.offered()
    }

    /// A handle that makes [`run`](Self::run) drain and return.
    pub fn drainer(&self) -> Drainer {
        Drainer(self.drain.clone())
    }

    /// Runs until SIGTERM or SIGINT (Ctrl-C), then drains.
    pub async fn run_until_signal(self) -> Result<WorkerReport, WorkerError> {
        self.run(shutdown_signal()).await
    }

    /// Runs until `shutdown` completes (or a [`Drainer`] says so), then drains: stops
    /// claiming, stops its engines, hands their leases back and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WorkerReport, WorkerError> {
        let span = info_span!("worker", id = %self.id);
        self.run_inner(shutdown).instrument(span).await
    }

    async fn run_inner(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WorkerReport, WorkerError> {
        let offered = self.registry.offered();
        self.register(&offered).await?;
        info!(offers = ?offered, "worker started");
        let running: Running = Arc::default();
        let renew_now = Arc::new(Notify::new());
        let (stop_keeper, stop_rx) = watch::channel(false);
        let keeper = tokio::spawn(
            Keeper {
                store: self.store.clone(),
                worker: self.id.clone(),
                offered: offered.clone(),
                ttl: self.lease_ttl,
                clock: self.clock.clone(),
                running: running.clone(),
                renew_now: renew_now.clone(),
                draining: self.drain.subscribe(),
                stop: stop_rx,
            }
            .run()
            .in_current_span(),
        );
        let mut report = WorkerReport {
            worker: self.id.clone(),
            ..WorkerReport::default()
        };
        let mut tasks: JoinSet<(RolloutId, Arc<Fence>, RunEnd)> = JoinSet::new();
        let mut notified = self.store.listener().fleet();
        let mut drain = self.drain.subscribe();
        let mut pacing = Pacing::new(
            self.claim_rate,
            self.claim_batch,
            self.poll_interval,
            Instant::now(),
        );
        let mut shutdown = std::pin::pin!(shutdown);
        let mut handed: Vec<Arc<Fence>> = Vec::new();
        loop {
            let now = Instant::now();
            let room = self.max_rollouts.saturating_sub(tasks.len());
            let allowance = pacing.allowance(now, room);
            if allowance > 0 {
                match self.claim(allowance, &offered, &renew_now).await {
                    Ok(claimed) => {
                        pacing.claimed(Instant::now(), allowance, claimed.len(), room);
                        for (fence, spec) in claimed {
                            report.claimed += 1;
                            self.start(&mut tasks, &running, fence, spec, &mut report)
                                .await;
                        }
                    }
                    Err(e) => {
                        warn!(error = %chain(&e), "claiming failed; backing off");
                        pacing.failed(Instant::now());
                    }
                }
                continue;
            }
            let next = pacing.next(now, room);
            tokio::select! {
                () = &mut shutdown => break,
                () = drained(&mut drain) => break,
                Some(joined) = tasks.join_next() => {
                    match joined {
                        Ok((id, fence, RunEnd::Drained)) => {
                            // Told to drain before this loop saw it: handed back below.
                            running.lock().remove(&id);
                            report.handed_back += 1;
                            handed.push(fence);
                        }
                        Ok((id, fence, end)) => {
                            running.lock().remove(&id);
                            self.ended(&id, &fence, end, &mut report).await;
                        }
                        Err(e) => warn!(error = %e, "a rollout task panicked"),
                    }
                    pacing.slot_freed(Instant::now());
                }
                changed = notified.changed() => {
                    if changed.is_ok() {
                        pacing.notified(Instant::now());
                    }
                }
                () = tokio::time::sleep_until(next) => {}
            }
        }
        self.drain_all(tasks, handed, &running, &mut report).await;
        let _ = stop_keeper.send(true);
        let _ = keeper.await;
        self.deregister().await;
        info!(?report, "worker stopped");
        Ok(report)
    }

    /// Records the worker and what it offers.
    async fn register(&self, offered: &[String]) -> Result<(), WorkerError> {
        self.store
            .db()
            .query(
                "registering the worker",
                "INSERT INTO cutover_fleet_workers (id, providers, ttl_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET providers = EXCLUDED.providers, \
                   ttl_ms = EXCLUDED.ttl_ms, started_at = now(), seen_at = now(), \
                   draining = false",
                &[&self.id, &offered, &millis(self.lease_ttl)],
            )
            .await?;
        Ok(())
    }

    async fn deregister(&self) {
        let result = self
            .store
            .db()
            .query(
                "deregistering the worker",
                "DELETE FROM cutover_fleet_workers WHERE id = $1",
                &[&self.id],
            )
            .await;
        if let Err(e) = result {
            warn!(error = %chain(&e), "could not deregister; the worker's row expires on its own");
        }
    }

    /// Claims up to `n` runnable rollouts whose providers this worker offers.
    async fn claim(
        &self,
        n: usize,
        offered: &[String],
        renew_now: &Arc<Notify>,
    ) -> Result<Vec<(Arc<Fence>, Result<RolloutSpec, String>)>, StoreError> {
        let sent_at = Instant::now();
        let now = self.clock.now();
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let rows = self
            .store
            .db()
            .query(
                "claiming rollouts",
                "WITH picked AS ( \
                   SELECT r.id FROM cutover_fleet_rollouts f \
                   JOIN cutover_rollouts r ON r.id = f.id \
                   WHERE f.open AND f.halted IS NULL AND f.not_before <= now() \
                     AND f.providers <@ $2::text[] \
                     AND r.phase IS DISTINCT FROM 'done' \
                     AND (r.lease_owner IS NULL OR r.lease_deadline IS NULL \
                          OR r.lease_deadline <= now()) \
                   ORDER BY f.submitted_at, f.id \
                   LIMIT $3 \
                   FOR UPDATE OF r SKIP LOCKED), \
                 claimed AS ( \
                   UPDATE cutover_rollouts r \
                   SET lease_owner = $1, lease_epoch = r.lease_epoch + 1, lease_ttl_ms = $4, \
                       lease_expires_ms = $5::bigint + $4::bigint, \
                       lease_deadline = now() + $4::bigint * interval '1 millisecond' \
                   FROM picked WHERE r.id = picked.id \
                   RETURNING r.id, r.lease_epoch), \
                 audit AS ( \
                   INSERT INTO cutover_fleet_claims (id, epoch, worker) \
                   SELECT id, lease_epoch, $1 FROM claimed) \
                 SELECT c.id, c.lease_epoch, f.spec::text \
                 FROM claimed c JOIN cutover_fleet_rollouts f ON f.id = c.id",
                &[
                    &self.id,
                    &offered,
                    &limit,
                    &millis(self.lease_ttl),
                    &big(now.unix_millis()),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let id = RolloutId::new(row.get::<_, String>(0)).ok()?;
                let lease = Lease {
                    owner: self.id.clone(),
                    epoch: unbig(row.get(1)),
                    expires_at: Some(now + self.lease_ttl),
                    ttl: self.lease_ttl,
                };
                let spec = serde_json::from_str::<RolloutSpec>(row.get::<_, &str>(2))
                    .map_err(|e| format!("the stored spec does not parse: {e}"));
                Some((Fence::new(lease, id, sent_at, renew_now.clone()), spec))
            })
            .collect())
    }

    /// Builds a claimed rollout and runs it in a task of its own.
    async fn start(
        &self,
        tasks: &mut JoinSet<(RolloutId, Arc<Fence>, RunEnd)>,
        running: &Running,
        fence: Arc<Fence>,
        spec: Result<RolloutSpec, String>,
        report: &mut WorkerReport,
    ) {
        let id = fence.token().rollout.clone();
        let built = spec.map_err(|e| (true, e)).and_then(|spec| {
            let store = FencedStore::new(self.store.clone(), fence.clone());
            self.registry
                .build(&spec, &fence, store, self.lease_ttl)
                .map_err(|e| {
                    (
                        matches!(e, BuildFailure::Build(_) | BuildFailure::Missing(_)),
                        e.to_string(),
                    )
                })
        });
        let rollout = match built {
            Ok(rollout) => rollout,
            Err((halt, reason)) => {
                warn!(rollout = %id, %reason, halt, "cannot build the rollout");
                if halt {
                    report.halted += 1;
                    self.put_back(&id, &fence, Some(&reason), None).await;
                } else {
                    report.retried += 1;
                    self.put_back(&id, &fence, None, Some(&reason)).await;
                }
                return;
            }
        };
        debug!(rollout = %id, epoch = fence.token().epoch, "claimed");
        running.lock().insert(id.clone(), fence.clone());
        let mut drain = self.drain.subscribe();
        tasks.spawn(
            async move {
                // A run that has returned is taken first: its final state was saved under the
                // lease, even if the lease was lost (or given back by the engine) just after.
                let end = tokio::select! {
                    biased;
                    result = rollout.run() => RunEnd::Ran(result),
                    () = fence.lost() => RunEnd::Lost,
                    () = drained(&mut drain) => RunEnd::Drained,
                };
                (id, fence, end)
            }
            .in_current_span(),
        );
    }

    /// What to do once a rollout's run ended.
    async fn ended(
        &self,
        id: &RolloutId,
        fence: &Arc<Fence>,
        end: RunEnd,
        report: &mut WorkerReport,
    ) {
        match end {
            RunEnd::Ran(Ok(outcome)) => {
                debug!(rollout = %id, %outcome, "finished");
                report.finished += 1;
                self.close(id, fence, None).await;
            }
            RunEnd::Ran(Err(e)) => match &e {
                RolloutError::Failed { .. }
                | RolloutError::Provider {
                    rolled_back: true, ..
                } => {
                    report.finished += 1;
                    self.close(id, fence, Some(&chain(&e))).await;
                }
                RolloutError::Superseded { .. }
                | RolloutError::Owned { .. }
                | RolloutError::Store(StoreError::LeaseLost { .. }) => {
                    report.lost += 1;
                    fence.lose();
                }
                RolloutError::SetupMismatch { .. } => {
                    report.halted += 1;
                    self.put_back(id, fence, Some(&chain(&e)), None).await;
                }
                _ => {
                    warn!(rollout = %id, error = %chain(&e), "run ended in an error; retrying later");
                    report.retried += 1;
                    self.put_back(id, fence, None, Some(&chain(&e))).await;
                }
            },
            RunEnd::Lost => report.lost += 1,
            RunEnd::Drained => report.handed_back += 1,
        }
    }

    /// Marks a finished rollout closed and gives its lease up.
    async fn close(&self, id: &RolloutId, fence: &Fence, error: Option<&str>) {
        let result = self
            .store
            .db()
            .query(
                "closing a finished rollout",
                "WITH closed AS ( \
                   UPDATE cutover_fleet_rollouts SET open = false, finished_at = now(), \
                     last_error = coalesce($4, last_error) WHERE id = $1) \
                 UPDATE cutover_rollouts \
                 SET lease_owner = NULL, lease_expires_ms = NULL, lease_deadline = NULL \
                 WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $3",
                &[
                    &id.as_str(),
                    &fence.token().owner,
                    &big(fence.token().epoch),
                    &error,
                ],
            )
            .await;
        if let Err(e) = result {
            // The next claim finds it finished and closes it.
            warn!(rollout = %id, error = %chain(&e), "could not mark the rollout finished");
        }
    }

    /// Gives a rollout back: halted for good (`halt`), or to be retried after a back-off
    /// (`retry`: the error).
    async fn put_back(
        &self,
        id: &RolloutId,
        fence: &Fence,
        halt: Option<&str>,
        retry: Option<&str>,
    ) {
        let result = self
            .store
            .db()
            .query(
                "putting a rollout back",
                "WITH back AS ( \
                   UPDATE cutover_fleet_rollouts SET \
                     halted = coalesce($4, halted), \
                     attempts = attempts + CASE WHEN $5::text IS NULL THEN 0 ELSE 1 END, \
                     last_error = coalesce($4, $5, last_error), \
                     not_before = CASE WHEN $5::text IS NULL THEN not_before ELSE now() + \
                       least($6::bigint * power(2, least(attempts, 30)), $7::bigint) \
                       * interval '1 millisecond' END \
                   WHERE id = $1), \
                 released AS ( \
                   UPDATE cutover_rollouts \
                   SET lease_owner = NULL, lease_expires_ms = NULL, lease_deadline = NULL \
                   WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $3 RETURNING id) \
                 SELECT count(*) FROM released",
                &[
                    &id.as_str(),
                    &fence.token().owner,
                    &big(fence.token().epoch),
                    &halt,
                    &retry,
                    &millis(self.retry_base),
                    &millis(self.retry_max),
                ],
            )
            .await;
        if let Err(e) = result {
            warn!(rollout = %id, error = %chain(&e), "could not put the rollout back; its lease expires on its own");
        }
    }

    /// Stops every engine, waits for them, and hands their leases back in one statement, with
    /// those of `handed` (engines already stopped by the drain).
    async fn drain_all(
        &self,
        mut tasks: JoinSet<(RolloutId, Arc<Fence>, RunEnd)>,
        mut handed: Vec<Arc<Fence>>,
        running: &Running,
        report: &mut WorkerReport,
    ) {
        info!(rollouts = tasks.len() + handed.len(), "draining");
        self.drain.send_replace(true);
        while let Some(joined) = tasks.join_next().await {
            let Ok((id, fence, end)) = joined else {
                continue;
            };
            running.lock().remove(&id);
            match end {
                RunEnd::Drained => {
                    report.handed_back += 1;
                    handed.push(fence);
                }
                other => self.ended(&id, &fence, other, report).await,
            }
        }
        if handed.is_empty() {
            return;
        }
        let ids: Vec<&str> = handed.iter().map(|f| f.token().rollout.as_str()).collect();
        let epochs: Vec<i64> = handed.iter().map(|f| big(f.token().epoch)).collect();
        let result = self
            .store
            .db()
            .query(
                "handing leases back",
                "WITH released AS ( \
                   UPDATE cutover_rollouts r \
                   SET lease_owner = NULL, lease_expires_ms = NULL, lease_deadline = NULL \
                   FROM unnest($1::text[], $2::bigint[]) AS t(id, epoch) \
                   WHERE r.id = t.id AND r.lease_epoch = t.epoch AND r.lease_owner = $3 \
                   RETURNING r.id) \
                 SELECT count(*) FROM released \
                 CROSS JOIN LATERAL (SELECT pg_notify('cutover_fleet', '')) AS n",
                &[&ids, &epochs, &self.id],
            )
            .await;
        match result {
            Ok(_) => info!(rollouts = handed.len(), "leases handed back"),
            Err(e) => {
                warn!(error = %chain(&e), "could not hand leases back; they expire on their own");
            }
        }
    }
}

/// Returns once the worker is told to drain.
async fn drained(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|d| *d).await;
}

/// Makes a running [`Worker`] drain and return, from anywhere.
#[derive(Debug, Clone)]
pub struct Drainer(watch::Sender<bool>);

impl Drainer {
    /// Asks the worker to drain.
    pub fn drain(&self) {
        self.0.send_replace(true);
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
