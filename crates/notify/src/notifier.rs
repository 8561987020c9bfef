//! The [`Notifier`]: reads decision logs from the store and delivers notices to sinks, at least
//! once, in order, remembering in the store what each sink acknowledged.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cutover_core::{
    Clock, DecisionRecord, ErrorKind, RetryPolicy, RolloutId, StateStore, StoreError, Summary,
    Timestamp, TokioClock,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::filter::Filter;
use crate::metrics::RolloutMetrics;
use crate::notice::{Notice, RolloutInfo};
use crate::release::Release;
use crate::scan::summaries;
use crate::sink::{DeliveryError, Sink};

/// The document kind holding, per sink, the last record acknowledged per rollout.
pub const CURSOR_KIND: &str = "notify-cursor";
/// The document kind holding, per sink, the notices given up on.
pub const DEAD_LETTER_KIND: &str = "notify-dead-letter";
/// How many dead letters are kept per sink; the oldest go first.
pub const DEAD_LETTER_LIMIT: usize = 1000;

const PAGE: usize = 500;

/// Why the notifier could not do its work. Delivery failures are not errors: they are retried
/// and then dead-lettered.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// A sink name is not usable as a store document id.
    #[error("sink name `{name}` is invalid: {reason}")]
    SinkName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Two sinks have the same name.
    #[error("sink name `{0}` is used twice; each sink needs its own name")]
    DuplicateSink(String),
    /// The store failed.
    #[error("store failed while notifying sink `{sink}`: {source}")]
    Store {
        /// The sink being served.
        sink: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

/// A notice given up on: every attempt failed, or the receiver refused it for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The notice.
    pub notice: Notice,
    /// The last attempt's error.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was given up on.
    pub at: Timestamp,
}

/// What one pass delivered, per sink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Notices acknowledged, per sink name.
    pub delivered: BTreeMap<String, usize>,
    /// Notices dead-lettered, per sink name.
    pub dead_lettered: BTreeMap<String, usize>,
}

struct Route {
    name: RolloutId,
    sink: Arc<dyn Sink>,
    filter: Filter,
    last_sent: tokio::sync::Mutex<Option<Instant>>,
    /// What the sink is done with, loaded from the store on the first pass.
    cursor: tokio::sync::Mutex<Option<Cursor>>,
}

/// Reads every rollout's decision log from a store and delivers the [`Notice`]s each sink's
/// [`Filter`] admits.
///
/// - **Never in a rollout's way**: it only reads what engines saved; a slow, failing or
///   hostile receiver delays only its own sink.
/// - **At least once, in order**: per sink, notices go one at a time in log order; a failed
///   attempt is retried with back-off ([`RetryPolicy`]) before the next notice is tried.
/// - **Remembered**: after each acknowledgement the sink's position per rollout is saved as a
///   store document of kind [`CURSOR_KIND`], so a restarted notifier goes on where it
///   stopped. Only a crash between an acknowledgement and that save repeats one notice; its id
///   is the same, so receivers deduplicate.
/// - **Dead letters**: a notice whose retries are spent, or which the receiver refuses for
///   good (a 4xx), is logged, counted and kept under [`DEAD_LETTER_KIND`]; the sink moves on.
/// - **Rate-limited**: [`min_interval`](Notifier::min_interval) spaces a sink's deliveries.
///
/// On a store that keeps no documents, positions are kept in memory only (a warning says so):
/// each notice goes once per process, and a restart delivers again.
///
/// One notifier process per sink name: two notifiers serving the same sink would each deliver.
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<cutover_core::FileStateStore>) -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_notify::{Filter, Notifier, NoticeKind, Slack};
/// let slack = Slack::new(&std::env::var("SLACK_WEBHOOK_URL")?)?;
/// let running = Notifier::new(store)
///     .sink("ops-slack", slack, Filter::default().kinds([NoticeKind::RolledBack]))?
///     .link_base("https://cutover.example.com")
///     .spawn();
/// # drop(running); Ok(()) }
/// ```
pub struct Notifier {
    store: Arc<dyn StateStore>,
    routes: Vec<Arc<Route>>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    poll: Duration,
    min_interval: Duration,
    link_base: Option<String>,
    since: Option<Timestamp>,
    metrics: Option<RolloutMetrics>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sinks: Vec<(&str, &dyn Sink)> = self
            .routes
            .iter()
            .map(|r| (r.name.as_str(), r.sink.as_ref()))
            .collect();
        f.debug_struct("Notifier")
            .field("store", &self.store.name())
            .field("sinks", &sinks)
            .field("retry", &self.retry)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier reading `store`, with no sinks yet, the default [`RetryPolicy`], a 2 s poll
    /// and wall time from a [`TokioClock`].
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Notifier {
            store,
            routes: Vec::new(),
            clock: Arc::new(TokioClock::new()),
            retry: RetryPolicy::default(),
            poll: Duration::from_secs(2),
            min_interval: Duration::ZERO,
            link_base: None,
            since: None,
            metrics: None,
        }
    }

    /// Adds a sink under `name` (the rules of a rollout id: it names its documents in the
    /// store, so keep it across restarts).
    pub fn sink(
        mut self,
        name: &str,
        sink: impl Sink + 'static,
        filter: Filter,
    ) -> Result<Self, NotifyError> {
        let id: RolloutId =
            name.parse()
                .map_err(|e: cutover_core::IdError| NotifyError::SinkName {
                    name: name.chars().take(80).collect(),
                    reason: e.to_string(),
                })?;
        if self.routes.iter().any(|r| r.name == id) {
            return Err(NotifyError::DuplicateSink(name.to_owned()));
        }
        self.routes.push(Arc::new(Route {
            name: id,
            sink: Arc::new(sink),
            filter,
            last_sent: tokio::sync::Mutex::new(None),
            cursor: tokio::sync::Mutex::new(None),
        }));
        Ok(self)
    }

    /// How failed attempts are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How often [`spawn`](Notifier::spawn)ed tasks look for new records.
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// The least time between two deliveries to one sink (none by default).
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// Notices link to `<base>/rollouts/<id>` (the dashboard's rollout page).
    pub fn link_base(mut self, base: impl Into<String>) -> Self {
        self.link_base = Some(base.into().trim_end_matches('/').to_owned());
        self
    }

    /// Records older than `at` make no notice (a new sink on an old store starts quiet).
    pub fn since(mut self, at: Timestamp) -> Self {
        self.since = Some(at);
        self
    }

    /// The wall clock for signature timestamps and dead letters.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Counts deliveries and dead letters in these metrics.
    pub fn metrics(mut self, metrics: RolloutMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Delivers everything pending for every sink, sinks side by side, and returns what was
    /// done. [`spawn`](Notifier::spawn) calls this in a loop; tests and one-shot tools call it
    /// directly.
    pub async fn deliver_pending(&self) -> Result<PassReport, NotifyError> {
        let passes = self.routes.iter().map(|route| self.pass(route));
        let mut report = PassReport::default();
        for (route, result) in self
            .routes
            .iter()
            .zip(futures_util::future::join_all(passes).await)
        {
            let (delivered, dead) = result?;
            report.delivered.insert(route.name.to_string(), delivered);
            report.dead_lettered.insert(route.name.to_string(), dead);
        }
        Ok(report)
    }

    /// Runs one task per sink that delivers pending notices every
    /// [`poll_every`](Notifier::poll_every); store errors are logged and tried again.
    pub fn spawn(self) -> Running {
        let this = Arc::new(self);
        let tasks = this
            .routes
            .iter()
            .map(|route| {
                let this = this.clone();
                let route = route.clone();
                tokio::spawn(async move {
                    loop {
                        if let Err(e) = this.pass(&route).await {
                            tracing::warn!(sink = %route.name, error = %e, "notification pass failed");
                        }
                        tokio::time::sleep(this.poll).await;
                    }
                })
            })
            .collect();
        Running { tasks }
    }

    /// The notices sink `name` gave up on, oldest first.
    pub async fn dead_letters(
        store: &dyn StateStore,
        name: &RolloutId,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(load::<DeadLetters>(store, DEAD_LETTER_KIND, name)
            .await?
            .map(|(d, _)| d.notices)
            .unwrap_or_default())
    }

    async fn pass(&self, route: &Route) -> Result<(usize, usize), NotifyError> {
        let store_error = |source| NotifyError::Store {
            sink: route.name.to_string(),
            source,
        };
        // Held for the whole pass: two passes over one sink never run at once.
        let mut held = route.cursor.lock().await;
        if held.is_none() {
            *held = Some(
                Cursor::load(self.store.as_ref(), &route.name)
                    .await
                    .map_err(store_error)?,
            );
        }
        let cursor = held.as_mut().expect("loaded above");
        let (mut delivered, mut dead) = (0, 0);
        let summaries = summaries(self.store.as_ref(), &[])
            .await
            .map_err(store_error)?;
        for summary in &summaries {
            let (d, x) = self
                .rollout(route, summary, cursor)
                .await
                .map_err(store_error)?;
            delivered += d;
            dead += x;
        }
        #[cfg(feature = "pipeline")]
        {
            let (d, x) = self.pipelines(route, cursor).await.map_err(store_error)?;
            delivered += d;
            dead += x;
        }
        Ok((delivered, dead))
    }

    /// Delivers the pipeline notices past the cursor, stage by stage in history order.
    #[cfg(feature = "pipeline")]
    async fn pipelines(
        &self,
        route: &Route,
        cursor: &mut Cursor,
    ) -> Result<(usize, usize), StoreError> {
        use crate::pipeline::{cursor_key, pipelines, stage_notices};
        let store = self.store.as_ref();
        let (mut delivered, mut dead) = (0, 0);
        for (id, state) in pipelines(store).await? {
            for stage in state.stages.keys() {
                let key = cursor_key(&id, stage);
                let acked = cursor.acked(&key);
                let (notices, last) = stage_notices(store, &id, &state, stage, acked).await?;
                for (position, notice) in notices {
                    if let Some(notice) = self.admit(route, notice) {
                        if self.send(route, &notice).await {
                            delivered += 1;
                        } else {
                            dead += 1;
                        }
                    }
                    cursor.set(&key, position);
                    cursor.save(store, &route.name).await?;
                }
                if cursor.acked(&key) < last {
                    cursor.set(&key, last);
                    cursor.save(store, &route.name).await?;
                }
            }
        }
        Ok((delivered, dead))
    }

    async fn rollout(
        &self,
        route: &Route,
        summary: &Summary,
        cursor: &mut Cursor,
    ) -> Result<(usize, usize), StoreError> {
        let store = self.store.as_ref();
        let (mut delivered, mut dead) = (0, 0);
        let mut info: Option<RolloutInfo> = None;
        loop {
            let acked = cursor.acked(summary.id.as_str());
            let records = store.records(&summary.id, acked, PAGE).await?;
            let Some(last) = records.last().map(|r| r.seq) else {
                return Ok((delivered, dead));
            };
            if info.is_none() {
                let release = Release::load_if_kept(store, &summary.id).await?;
                info = Some(RolloutInfo::of(summary, release.as_ref()));
            }
            let info = info.as_ref().expect("set above");
            for record in &records {
                let Some(notice) = self.notice(route, info, record) else {
                    continue;
                };
                if self.send(route, &notice).await {
                    delivered += 1;
                } else {
                    dead += 1;
                }
                cursor.set(summary.id.as_str(), record.seq);
                cursor.save(store, &route.name).await?;
            }
            if cursor.acked(summary.id.as_str()) < last {
                cursor.set(summary.id.as_str(), last);
                cursor.save(store, &route.name).await?;
            }
            if records.len() < PAGE {
                return Ok((delivered, dead));
            }
        }
    }

    fn notice(&self, route: &Route, info: &RolloutInfo, record: &DecisionRecord) -> Option<Notice> {
        self.admit(route, Notice::from_record(info, record)?)
    }

    /// The notice as this route sends it, if its filter admits it.
    fn admit(&self, route: &Route, mut notice: Notice) -> Option<Notice> {
        if self.since.is_some_and(|since| notice.at < since) || !route.filter.admits(&notice) {
            return None;
        }
        notice.link = self
            .link_base
            .as_ref()
            .map(|base| format!("{base}/rollouts/{}", notice.rollout.id));
        Some(notice)
    }

    /// Delivers with retries; `false` when the notice was dead-lettered.
    async fn send(&self, route: &Route, notice: &Notice) -> bool {
        let mut attempt = 1;
        loop {
            self.space(route).await;
            let error = match route.sink.deliver(notice, self.clock.now()).await {
                Ok(()) => {
                    tracing::debug!(sink = %route.name, notice = %notice.id, kind = %notice.kind, "notice delivered");
                    self.count(route, "delivered");
                    return true;
                }
                Err(error) => error,
            };
            if error.is_retryable() && attempt < self.retry.max_attempts {
                let delay = self.retry.backoff(attempt, fastrand::f64());
                tracing::info!(sink = %route.name, notice = %notice.id, attempt, error = %error, retry_in = ?delay, "notice not delivered; retrying");
                self.count(route, "retried");
                tokio::time::sleep(delay).await;
                attempt += 1;
                continue;
            }
            self.dead_letter(route, notice, &error, attempt).await;
            return false;
        }
    }

    async fn space(&self, route: &Route) {
        let mut last = route.last_sent.lock().await;
        if let Some(last) = *last {
            tokio::time::sleep_until(last + self.min_interval).await;
        }
        *last = Some(Instant::now());
    }

    async fn dead_letter(
        &self,
        route: &Route,
        notice: &Notice,
        error: &DeliveryError,
        attempts: u32,
    ) {
        tracing::warn!(sink = %route.name, notice = %notice.id, attempts, error = %error, "notice dead-lettered");
        self.count(route, "dead_lettered");
        let letter = DeadLetter {
            notice: notice.clone(),
            error: error.to_string(),
            attempts,
            at: self.clock.now(),
        };
        let store = self.store.as_ref();
        for _ in 0..10 {
            let result = async {
                let (mut letters, version) =
                    load::<DeadLetters>(store, DEAD_LETTER_KIND, &route.name)
                        .await?
                        .map_or((DeadLetters::default(), None), |(d, v)| (d, Some(v)));
                letters.notices.push(letter.clone());
                let excess = letters.notices.len().saturating_sub(DEAD_LETTER_LIMIT);
                letters.notices.drain(..excess);
                save(store, DEAD_LETTER_KIND, &route.name, &letters, version)
                    .await
                    .map(|_| ())
            }
            .await;
            match result {
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => {
                    tracing::warn!(sink = %route.name, notice = %notice.id, error = %e, "dead letter not kept");
                    return;
                }
                Ok(()) => return,
            }
        }
    }

    fn count(&self, route: &Route, outcome: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.notification(route.name.as_str(), route.sink.kind(), outcome);
        }
    }
}

/// The tasks of a [`spawn`](Notifier::spawn)ed notifier; dropping it stops them.
#[derive(Debug)]
pub struct Running {
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops delivering. A notice being delivered may reach its receiver without its
    /// acknowledgement being saved; the next notifier sends it again (same id).
    pub fn stop(self) {}
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DeadLetters {
    notices: Vec<DeadLetter>,
}

/// Per rollout, the last record seq this sink is done with.
#[derive(Debug, Default)]
struct Cursor {
    acked: BTreeMap<String, u64>,
    version: Option<u64>,
    /// `false` when the store keeps no documents: the cursor lives in memory only, and a
    /// restart delivers again what was delivered before (same ids).
    durable: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CursorBody {
    rollouts: BTreeMap<String, u64>,
}

impl Cursor {
    async fn load(store: &dyn StateStore, name: &RolloutId) -> Result<Self, StoreError> {
        Ok(match load::<CursorBody>(store, CURSOR_KIND, name).await {
            Ok(Some((body, version))) => Cursor {
                acked: body.rollouts,
                version: Some(version),
                durable: true,
            },
            Ok(None) => Cursor {
                durable: true,
                ..Cursor::default()
            },
            Err(StoreError::Provider(e)) if e.kind() == ErrorKind::Unsupported => {
                tracing::warn!(
                    sink = %name,
                    store = store.name(),
                    "the store keeps no documents: what this sink acknowledged is kept in memory only, and a restart delivers it again"
                );
                Cursor::default()
            }
            Err(e) => return Err(e),
        })
    }

    /// The position acknowledged for a rollout id, or a pipeline stage's key.
    fn acked(&self, key: &str) -> u64 {
        self.acked.get(key).copied().unwrap_or(0)
    }

    fn set(&mut self, key: &str, seq: u64) {
        let slot = self.acked.entry(key.to_owned()).or_default();
        *slot = (*slot).max(seq);
    }

    /// Saves; on a conflict merges with what is stored (the larger seq wins) and saves again.
    async fn save(&mut self, store: &dyn StateStore, name: &RolloutId) -> Result<(), StoreError> {
        if !self.durable {
            return Ok(());
        }
        loop {
            let body = CursorBody {
                rollouts: self.acked.clone(),
            };
            match save(store, CURSOR_KIND, name, &body, self.version).await {
                Ok(version) => {
                    self.version = Some(version);
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => {
                    let stored = Cursor::load(store, name).await?;
                    for (id, seq) in stored.acked {
                        let slot = self.acked.entry(id).or_default();
                        *slot = (*slot).max(seq);
                    }
                    self.version = stored.version;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

async fn load<T: serde::de::DeserializeOwned>(
    store: &dyn StateStore,
    kind: &str,
    id: &RolloutId,
) -> Result<Option<(T, u64)>, StoreError> {
    let Some(document) = store.load_document(kind, id).await? else {
        return Ok(None);
    };
    let body = serde_json::from_value(document.body).map_err(|source| StoreError::Corrupt {
        id: id.clone(),
        location: format!("`{kind}` document"),
        source,
    })?;
    Ok(Some((body, document.version)))
}

async fn save<T: Serialize>(
    store: &dyn StateStore,
    kind: &str,
    id: &RolloutId,
    body: &T,
    expected: Option<u64>,
) -> Result<u64, StoreError> {
    let body = serde_json::to_value(body).map_err(|source| StoreError::Corrupt {
        id: id.clone(),
        location: format!("`{kind}` document being saved"),
        source,
    })?;
    store.save_document(kind, id, &body, expected).await
}
