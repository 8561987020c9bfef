//! The failover guard's executor: probes on an interval, folds the results through the
//! planner, sets the split on every router, reads the routers back for drift, applies
//! commands from its inbox, and saves everything in its store document.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::document::{
    DriftSeen, GUARD_KIND, GuardDocument, GuardEntry, GuardError, GuardHandle, GuardRecord,
    LOG_KEEP, load_existing, store_error,
};
use super::failover::{self, Check, FailoverPolicy};
use crate::{
    Clock, Health, HealthProbe, RolloutId, StateStore, StoreError, Timestamp, TokioClock,
    TrafficRouter, TrafficSplit,
};

/// How many conflicting saves in a row a guard's save outlasts. Each conflict is a command
/// queued by someone else (a save by another guard process stops this one at once), so the
/// guard keeps trying while a burst of commands lasts.
const SAVE_CONFLICTS: usize = 1000;

/// How many records a subscriber may fall behind before it misses some (they stay in the
/// store's decision log).
const EVENT_CAPACITY: usize = 1024;

/// What the guard does when a router applies a split it did not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriftAction {
    /// Record it and set the guard's split again.
    Repair,
    /// Record it and leave it.
    Report,
}

/// A guard that moves traffic away from failing targets and back, and keeps the routers on
/// its split. Build with [`FailoverGuard::builder`], run with [`FailoverGuard::run_until`].
#[derive(Debug)]
pub struct FailoverGuard {
    id: RolloutId,
    policy: FailoverPolicy,
    routers: Vec<Arc<dyn TrafficRouter>>,
    probe: Arc<dyn HealthProbe>,
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    instance: String,
    probe_interval: Duration,
    probe_timeout: Duration,
    drift_interval: Duration,
    drift_action: DriftAction,
    command_poll: Duration,
    /// Made at the first [`subscribe`](FailoverGuard::subscribe): a broadcast channel holds
    /// all its slots from the start, too much to give each of thousands of guards unasked.
    events: std::sync::OnceLock<broadcast::Sender<GuardRecord>>,
}

/// A guard running on its own task, from [`FailoverGuard::spawn`].
#[derive(Debug)]
pub struct RunningGuard {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), GuardError>>,
}

impl RunningGuard {
    /// Whether the guard has stopped by itself (its store failed, or another process took it
    /// on); [`stop`](Self::stop) then says why.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the guard and waits for it; returns why it stopped if it did so by itself.
    pub async fn stop(self) -> Result<(), GuardError> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Ok(()),
        }
    }
}

/// Builds a [`FailoverGuard`].
#[derive(Debug)]
pub struct FailoverGuardBuilder {
    guard: FailoverGuard,
    probe: Option<Arc<dyn HealthProbe>>,
}

#[derive(Debug)]
struct NoProbe;

#[async_trait::async_trait]
impl HealthProbe for NoProbe {
    fn name(&self) -> &'static str {
        "none"
    }
    async fn check(&self, _: &crate::RevisionId) -> Result<Health, crate::ProviderError> {
        Ok(Health::Ready)
    }
}

impl FailoverGuardBuilder {
    /// Adds a router the split is set on (at least one).
    pub fn router(mut self, router: impl TrafficRouter + 'static) -> Self {
        self.guard.routers.push(Arc::new(router));
        self
    }

    /// The probe that checks each target (required).
    pub fn probe(mut self, probe: impl HealthProbe + 'static) -> Self {
        self.probe = Some(Arc::new(probe));
        self
    }

    /// Where the guard keeps its document (default: a private in-memory store).
    pub fn store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.guard.store = store;
        self
    }

    /// Where wall time comes from (default: [`TokioClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.guard.clock = clock;
        self
    }

    /// The name this process records itself under.
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.guard.instance = name.into();
        self
    }

    /// How often every target is probed (default 5 s), and how long one check may take
    /// before it counts as failed (default half the interval).
    pub fn probe_every(mut self, interval: Duration, timeout: Duration) -> Self {
        self.guard.probe_interval = interval;
        self.guard.probe_timeout = timeout;
        self
    }

    /// How often the routers are read back, and what to do about drift (default 30 s,
    /// repair).
    pub fn drift(mut self, interval: Duration, action: DriftAction) -> Self {
        self.guard.drift_interval = interval;
        self.guard.drift_action = action;
        self
    }

    /// How often the inbox is looked at between probes (default 1 s).
    pub fn command_poll(mut self, interval: Duration) -> Self {
        self.guard.command_poll = interval;
        self
    }

    /// Checks the guard: a probe, at least one router, every router fine enough for the
    /// policy's weights, intervals above zero.
    pub fn build(mut self) -> Result<FailoverGuard, GuardError> {
        let problem = |problem: String| GuardError::Build {
            id: self.guard.id.clone(),
            problem,
        };
        let Some(probe) = self.probe.take() else {
            return Err(problem("needs a health probe".into()));
        };
        if self.guard.routers.is_empty() {
            return Err(problem("needs at least one router".into()));
        }
        let step = self.guard.policy.granularity();
        for router in &self.guard.routers {
            let theirs = router.capabilities().granularity;
            if !step.step().is_multiple_of(theirs.step()) {
                return Err(problem(format!(
                    "router `{}` moves traffic in steps of {theirs}; the policy's weights are in steps of {step}",
                    router.name()
                )));
            }
        }
        for (field, d) in [
            ("probe interval", self.guard.probe_interval),
            ("probe timeout", self.guard.probe_timeout),
            ("drift interval", self.guard.drift_interval),
            ("command poll", self.guard.command_poll),
        ] {
            if d.is_zero() {
                return Err(problem(format!("{field} must be above zero")));
            }
        }
        self.guard.probe = probe;
        Ok(self.guard)
    }
}

/// The guard's working copy of its document.
struct Session<'a> {
    guard: &'a FailoverGuard,
    doc: GuardDocument,
    version: Option<u64>,
    /// `next_seq` as of the last save: a stored document with another one was written by
    /// another guard process.
    saved_seq: u64,
    /// The id of the guard's decision log.
    log: RolloutId,
}

impl FailoverGuard {
    /// A guard `id` running `policy`.
    pub fn builder(id: RolloutId, policy: FailoverPolicy) -> FailoverGuardBuilder {
        FailoverGuardBuilder {
            guard: FailoverGuard {
                id,
                policy,
                routers: Vec::new(),
                probe: Arc::new(NoProbe),
                store: Arc::new(crate::MemoryStateStore::new()),
                clock: Arc::new(TokioClock::new()),
                instance: "guard".into(),
                probe_interval: Duration::from_secs(5),
                probe_timeout: Duration::from_millis(2500),
                drift_interval: Duration::from_secs(30),
                drift_action: DriftAction::Repair,
                command_poll: Duration::from_secs(1),
                events: std::sync::OnceLock::new(),
            },
            probe: None,
        }
    }

    /// The guard's id.
    pub fn id(&self) -> &RolloutId {
        &self.id
    }

    /// Records as they are saved.
    pub fn subscribe(&self) -> broadcast::Receiver<GuardRecord> {
        self.events
            .get_or_init(|| broadcast::channel(EVENT_CAPACITY).0)
            .subscribe()
    }

    /// A handle on this guard through its store.
    pub fn handle(&self) -> GuardHandle {
        GuardHandle::new(self.store.clone(), self.id.clone()).clock(self.clock.clone())
    }

    /// Runs the guard on a task of its own until [`RunningGuard::stop`].
    pub fn spawn(self: &Arc<Self>) -> RunningGuard {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let guard = self.clone();
        let task = tokio::spawn(async move {
            guard
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
        });
        RunningGuard { stop, task }
    }

    /// Runs the guard until `shutdown` completes, or the store fails (then it stops at once
    /// and touches nothing more). Resumes from the store if the guard is stored already.
    pub async fn run_until(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), GuardError> {
        let mut session = self.open().await?;
        session.reconcile().await?;
        session.check_drift().await?;
        let mut next_probe = Instant::now();
        let mut next_drift = Instant::now() + self.drift_interval;
        let mut next_poll = Instant::now() + self.command_poll;
        tokio::pin!(shutdown);
        loop {
            let wake = next_probe.min(next_drift).min(next_poll);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = &mut shutdown => return Ok(()),
            }
            let now = Instant::now();
            if now >= next_probe {
                session.probe_all().await?;
                next_probe = later(next_probe, self.probe_interval, now);
            }
            if now >= next_drift {
                session.check_drift().await?;
                next_drift = later(next_drift, self.drift_interval, now);
            }
            if now >= next_poll {
                session.poll_inbox().await?;
                next_poll = later(next_poll, self.command_poll, now);
            }
        }
    }

    async fn open(&self) -> Result<Session<'_>, GuardError> {
        let log = self.handle().log_id()?;
        if self
            .store
            .load(&log)
            .await
            .map_err(store_error(&self.id))?
            .is_some()
        {
            return Err(GuardError::LogTaken {
                id: self.id.clone(),
                log,
            });
        }
        let stored = self
            .store
            .load_document(GUARD_KIND, &self.id)
            .await
            .map_err(store_error(&self.id))?;
        let (doc, version, resumed) = if let Some(stored) = stored {
            let doc = GuardDocument::decode(&self.id, stored.body)?;
            if doc.policy != self.policy {
                return Err(GuardError::PolicyMismatch {
                    id: self.id.clone(),
                });
            }
            (doc, Some(stored.version), true)
        } else {
            {
                let state = self.policy.initial_state();
                let intent = failover::allocate(&self.policy, &state).split;
                let doc = GuardDocument {
                    policy: self.policy.clone(),
                    state,
                    intent,
                    applied: std::collections::BTreeMap::new(),
                    drift: std::collections::BTreeMap::new(),
                    shortfall: Vec::new(),
                    inbox: Vec::new(),
                    last_command: 0,
                    log: Vec::new(),
                    unlogged: Vec::new(),
                    next_seq: 1,
                };
                (doc, None, false)
            }
        };
        let mut session = Session {
            guard: self,
            saved_seq: doc.next_seq,
            doc,
            version,
            log,
        };
        session.record(GuardEntry::Started {
            instance: self.instance.clone(),
            resumed,
        });
        session.save().await?;
        Ok(session)
    }
}

fn later(previous: Instant, interval: Duration, now: Instant) -> Instant {
    let next = previous + interval;
    if next <= now { now + interval } else { next }
}

impl Session<'_> {
    fn now(&self) -> Timestamp {
        self.guard.clock.now()
    }

    fn record(&mut self, entry: GuardEntry) {
        let record = GuardRecord {
            seq: self.doc.next_seq,
            at: self.now(),
            entry,
        };
        tracing::info!(guard = %self.guard.id, seq = record.seq, "{record}");
        self.doc.next_seq += 1;
        self.doc.log.push(record.clone());
        if self.doc.log.len() > LOG_KEEP {
            let excess = self.doc.log.len() - LOG_KEEP;
            self.doc.log.drain(..excess);
        }
        self.doc.unlogged.push(record);
    }

    /// Appends the records saved with the document to the store's decision log (idempotent
    /// by `seq`), then streams them: a subscriber never sees a record that could be lost.
    async fn flush(&mut self) -> Result<(), GuardError> {
        if self.doc.unlogged.is_empty() {
            return Ok(());
        }
        let id = &self.guard.id;
        let split = Some(self.doc.intent.clone());
        let records = self
            .doc
            .unlogged
            .iter()
            .map(|r| r.to_decision(split.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| GuardError::Corrupt {
                id: id.clone(),
                source,
            })?;
        self.guard
            .store
            .append(&self.log, &records)
            .await
            .map_err(store_error(id))?;
        let records = std::mem::take(&mut self.doc.unlogged);
        if let Some(events) = self.guard.events.get() {
            for record in records {
                let _ = events.send(record);
            }
        }
        Ok(())
    }

    /// Saves the document; a conflict (a command queued in between) takes the stored inbox
    /// and saves again.
    async fn save(&mut self) -> Result<(), GuardError> {
        let id = &self.guard.id;
        for _ in 0..SAVE_CONFLICTS {
            let body = self.doc.encode(id)?;
            match self
                .guard
                .store
                .save_document(GUARD_KIND, id, &body, self.version)
                .await
            {
                Ok(version) => {
                    self.version = Some(version);
                    self.saved_seq = self.doc.next_seq;
                    return self.flush().await;
                }
                Err(StoreError::Conflict { .. }) => {
                    let stored = load_existing(&*self.guard.store, id).await?;
                    let theirs = self.adopt(stored.body)?;
                    self.doc.inbox = theirs.inbox;
                    self.version = Some(stored.version);
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(store_error(id)(e)),
            }
        }
        Err(GuardError::Contended {
            id: id.clone(),
            attempts: SAVE_CONFLICTS,
        })
    }

    /// Reads a document saved by someone else: a command sender changes only the inbox; a
    /// document with records this guard did not write means another guard process took over.
    fn adopt(&self, body: serde_json::Value) -> Result<GuardDocument, GuardError> {
        let theirs = GuardDocument::decode(&self.guard.id, body)?;
        if theirs.next_seq != self.saved_seq {
            return Err(GuardError::Superseded {
                id: self.guard.id.clone(),
            });
        }
        Ok(theirs)
    }

    fn apply_commands(&mut self) {
        let now = self.now();
        let queued: Vec<_> = self
            .doc
            .inbox
            .iter()
            .filter(|c| c.seq > self.doc.last_command)
            .cloned()
            .collect();
        for command in queued {
            let effect = failover::command(&mut self.doc.state, &command.command, now);
            self.doc.last_command = command.seq;
            self.record(GuardEntry::Command { command, effect });
        }
        // Applied commands are kept in the records; the inbox keeps only the recent ones.
        let keep_from = self.doc.inbox.len().saturating_sub(100);
        let last = self.doc.last_command;
        let mut index = 0;
        self.doc.inbox.retain(|c| {
            index += 1;
            index > keep_from || c.seq > last
        });
    }

    async fn poll_inbox(&mut self) -> Result<(), GuardError> {
        let id = &self.guard.id;
        let stored = load_existing(&*self.guard.store, id).await?;
        if Some(stored.version) == self.version {
            return Ok(());
        }
        let theirs = self.adopt(stored.body)?;
        if theirs.inbox.iter().any(|c| c.seq > self.doc.last_command) {
            self.doc.inbox = theirs.inbox;
            self.version = Some(stored.version);
            self.reconcile().await?;
        }
        Ok(())
    }

    async fn probe_all(&mut self) -> Result<(), GuardError> {
        let mut set = JoinSet::new();
        for target in self.guard.policy.targets() {
            let probe = self.guard.probe.clone();
            let target = target.id.clone();
            let timeout = self.guard.probe_timeout;
            set.spawn(async move {
                let result = tokio::time::timeout(timeout, probe.check(&target)).await;
                let (passed, detail) = match result {
                    Ok(Ok(Health::Ready)) => (true, "ready".to_owned()),
                    Ok(Ok(health)) => (false, health.to_string()),
                    Ok(Err(e)) => (false, e.to_string()),
                    Err(_) => (false, format!("no answer within {timeout:?}")),
                };
                Check {
                    target,
                    passed,
                    detail,
                }
            });
        }
        let mut checks = Vec::new();
        while let Some(done) = set.join_next().await {
            if let Ok(check) = done {
                checks.push(check);
            }
        }
        checks.sort_by(|a, b| a.target.cmp(&b.target));
        let now = self.now();
        for check in &checks {
            for event in failover::observe(&self.guard.policy, &mut self.doc.state, check, now) {
                self.record(GuardEntry::Failover { event });
            }
        }
        self.reconcile().await
    }

    /// Applies queued commands, then brings every router to the planner's split: the intent
    /// is saved before any router is called.
    async fn reconcile(&mut self) -> Result<(), GuardError> {
        self.apply_commands();
        let allocation = failover::allocate(&self.guard.policy, &self.doc.state);
        if allocation.shortfall != self.doc.shortfall {
            self.doc.shortfall.clone_from(&allocation.shortfall);
            if !allocation.shortfall.is_empty() {
                self.record(GuardEntry::CapacityShort {
                    shortfall: allocation.shortfall.clone(),
                });
            }
        }
        self.doc.intent = allocation.split;
        let behind: Vec<Arc<dyn TrafficRouter>> = self
            .guard
            .routers
            .iter()
            .filter(|r| self.doc.applied.get(r.name()) != Some(&self.doc.intent))
            .cloned()
            .collect();
        if behind.is_empty() {
            if !self.doc.unlogged.is_empty() {
                self.save().await?;
            }
            return Ok(());
        }
        self.save().await?;
        let split = self.doc.intent.clone();
        for router in behind {
            self.set(&router, &split, false).await;
        }
        self.save().await
    }

    async fn set(&mut self, router: &Arc<dyn TrafficRouter>, split: &TrafficSplit, repair: bool) {
        let error = match router.set_split(split).await {
            Ok(()) => {
                self.doc
                    .applied
                    .insert(router.name().to_owned(), split.clone());
                None
            }
            Err(e) => Some(e.to_string()),
        };
        self.record(GuardEntry::Split {
            router: router.name().to_owned(),
            split: split.clone(),
            error,
            repair,
        });
    }

    /// Reads every router back and compares with what the guard set on it.
    async fn check_drift(&mut self) -> Result<(), GuardError> {
        for router in self.guard.routers.clone() {
            let name = router.name().to_owned();
            let Some(expected) = self.doc.applied.get(&name).cloned() else {
                continue;
            };
            let found = match router.current_split().await {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(guard = %self.guard.id, router = %name, "cannot read the split back: {e}");
                    continue;
                }
            };
            if found.same_traffic(&expected) {
                if self.doc.drift.remove(&name).is_some() {
                    self.record(GuardEntry::DriftCleared { router: name });
                }
                continue;
            }
            let repair = self.guard.drift_action == DriftAction::Repair;
            let now = self.now();
            let seen = self.doc.drift.get(&name);
            if seen.is_none_or(|s| s.found != found) {
                let since = seen.map_or(now, |s| s.since);
                self.doc.drift.insert(
                    name.clone(),
                    DriftSeen {
                        since,
                        found: found.clone(),
                    },
                );
                self.record(GuardEntry::Drift {
                    router: name.clone(),
                    expected: expected.clone(),
                    found,
                    since,
                    repair,
                });
            }
            if repair {
                self.save().await?;
                self.set(&router, &expected, true).await;
            }
        }
        if !self.doc.unlogged.is_empty() {
            self.save().await?;
        }
        Ok(())
    }
}
