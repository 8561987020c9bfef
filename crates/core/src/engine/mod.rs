//! The engine: carries out the planner's decisions through the providers, saving the state
//! before every effect.

mod builder;
mod error;
mod events;
mod exec;
mod handle;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tracing::{Instrument as _, debug, info, info_span, warn};

pub use self::builder::RolloutBuilder;
pub use self::error::{BuildError, RolloutError};
pub use self::events::RolloutEvent;
use self::exec::{Failure, Retrier};
pub use self::handle::{HandleError, RolloutHandle};
use crate::analysis::{SequentialAnalysis, SequentialState};
use crate::planner::{self, Action, ActionResult, Command, Decision, Observation, Setup};
use crate::record::{
    DecisionRecord, Entry, Inputs, StepRef, describe, describe_command, describe_in,
};
use crate::retry::Jitter;
use crate::state::{Final, Phase, RolloutState};
use crate::{
    Analysis, Clock, Gate, HealthProbe, MigrationStep, Plan, RolloutId, StateStore, StoreError,
    Timestamp, TokioClock, TrafficRouter, Workload,
};

/// The providers a rollout acts through.
#[derive(Debug)]
pub(crate) struct Providers {
    pub(crate) routers: Vec<Arc<dyn TrafficRouter>>,
    pub(crate) probes: Vec<Arc<dyn HealthProbe>>,
    pub(crate) workload: Option<Arc<dyn Workload>>,
    pub(crate) analyses: BTreeMap<String, Arc<dyn Analysis>>,
    /// Analyses built from `sequential` templates; the engine hands them their saved state.
    pub(crate) sequential: BTreeMap<String, Arc<SequentialAnalysis>>,
    pub(crate) migrations: Vec<Arc<dyn MigrationStep>>,
    pub(crate) gates: Vec<Arc<dyn Gate>>,
    pub(crate) store: Arc<dyn StateStore>,
}

/// One rollout, ready to run.
///
/// ```no_run
/// # async fn example(rollout: cutover_core::Rollout) -> Result<(), cutover_core::RolloutError> {
/// use cutover_core::Outcome;
///
/// let handle = rollout.handle(); // pause / resume / promote / abort from elsewhere
/// match rollout.run().await? {
///     Outcome::Promoted => println!("done"),
///     Outcome::RolledBack(reason) => println!("rolled back: {reason}"),
///     other => println!("{other}"),
/// }
/// let records = handle.records(); // the decision record, for export
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Rollout {
    id: RolloutId,
    setup: Setup,
    providers: Providers,
    clock: Option<Arc<dyn Clock>>,
    engine_id: Option<String>,
    commands_tx: mpsc::UnboundedSender<Command>,
    commands_rx: mpsc::UnboundedReceiver<Command>,
    events: broadcast::Sender<RolloutEvent>,
    snapshot: watch::Sender<Option<Arc<RolloutState>>>,
}

impl Rollout {
    /// Starts building a rollout called `id` (the key of its stored state) that follows `plan`.
    pub fn builder(id: impl Into<String>, plan: impl Into<Plan>) -> RolloutBuilder {
        RolloutBuilder::new(id, plan.into())
    }

    /// The rollout's id.
    pub fn id(&self) -> &RolloutId {
        &self.id
    }

    /// The plan and the shape of the providers, as the planner sees them.
    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    /// A handle to control the rollout while it runs. Take handles before calling
    /// [`run`](Self::run).
    pub fn handle(&self) -> RolloutHandle {
        RolloutHandle {
            id: self.id.clone(),
            commands: self.commands_tx.clone(),
            snapshot: self.snapshot.subscribe(),
        }
    }

    /// The rollout's events, from now on. Subscribe before calling [`run`](Self::run).
    pub fn subscribe(&self) -> impl Stream<Item = RolloutEvent> + Send + 'static {
        BroadcastStream::new(self.events.subscribe()).map(|item| match item {
            Ok(event) => event,
            Err(BroadcastStreamRecvError::Lagged(missed)) => RolloutEvent::Lagged { missed },
        })
    }

    /// Runs the rollout to its end, or resumes it from its stored state.
    ///
    /// Returns the [`Outcome`](crate::Outcome): promoted, rolled back (with the reason),
    /// aborted, or for A/B tests concluded. Returns an error when the plan could not be carried
    /// out; see [`RolloutError`] for where that leaves traffic. Dropping the future stops the
    /// rollout where it is; its state is saved, and running it again resumes it.
    pub async fn run(self) -> Result<crate::Outcome, RolloutError> {
        let span = info_span!("rollout", id = %self.id, strategy = self.setup.plan.strategy.kind());
        self.drive().instrument(span).await
    }

    async fn drive(self) -> Result<crate::Outcome, RolloutError> {
        let Rollout {
            id,
            setup,
            providers,
            clock,
            engine_id,
            commands_tx,
            commands_rx,
            events,
            snapshot,
        } = self;
        drop(commands_tx);
        let clock = clock.unwrap_or_else(|| Arc::new(TokioClock::new()));
        let engine_id = engine_id.unwrap_or_else(|| new_engine_id(clock.now()));
        let retrier = Retrier::new(
            setup.plan.retry,
            Jitter::seeded(&format!("{id}/{engine_id}")),
            events.clone(),
        );
        let placeholder = RolloutState::new(id.clone(), setup.clone(), clock.now());
        let mut engine = Engine {
            id,
            setup,
            providers,
            clock,
            instance: engine_id,
            retrier,
            commands: commands_rx,
            commands_open: true,
            events,
            snapshot,
            state: placeholder,
            version: None,
            failure: None,
            emitted: 0,
        };
        if let Some(done) = engine.start().await? {
            return done;
        }
        engine.drive().await
    }
}

fn new_engine_id(now: Timestamp) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "engine-{:x}-{:x}-{n}",
        std::process::id(),
        now.unix_millis()
    )
}

struct Engine {
    id: RolloutId,
    setup: Setup,
    providers: Providers,
    clock: Arc<dyn Clock>,
    instance: String,
    retrier: Retrier,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    events: broadcast::Sender<RolloutEvent>,
    snapshot: watch::Sender<Option<Arc<RolloutState>>>,
    state: RolloutState,
    version: Option<u64>,
    /// The provider error behind a rollback that will end in failure.
    failure: Option<Failure>,
    /// Records already streamed to subscribers.
    emitted: usize,
}

type RunResult = Result<crate::Outcome, RolloutError>;

impl Engine {
    /// Loads or creates the state and claims the rollout. Returns the result directly when the
    /// stored rollout has already finished.
    async fn start(&mut self) -> Result<Option<RunResult>, RolloutError> {
        // A claim conflicts when another engine saved between our load and our save: a live
        // engine, or the last write of one that just died. The claim itself does nothing in
        // the world, so load the newer state and claim again; an engine that keeps saving is
        // still live, and after a few attempts we leave the rollout to it.
        const CLAIM_ATTEMPTS: u32 = 3;
        for attempt in 1..=CLAIM_ATTEMPTS {
            match self.claim().await {
                Err(RolloutError::Superseded { .. }) if attempt < CLAIM_ATTEMPTS => {
                    warn!(
                        attempt,
                        "the rollout was saved while claiming it; claiming the newer state"
                    );
                }
                other => return other,
            }
        }
        Err(RolloutError::Superseded {
            id: self.id.clone(),
        })
    }

    /// Loads or creates the state and saves it as claimed by this engine.
    async fn claim(&mut self) -> Result<Option<RunResult>, RolloutError> {
        let now = self.clock.now();
        let stored = self
            .providers
            .store
            .load(&self.id)
            .await
            .map_err(RolloutError::Store)?;
        let resumed = stored.is_some();
        if let Some(stored) = stored {
            if let Some(end) = &stored.state.outcome {
                info!(outcome = ?end, "rollout already finished");
                let _ = self.snapshot.send(Some(Arc::new(stored.state.clone())));
                return Ok(Some(self.finished(end.clone())));
            }
            if let Some(field) = mismatch(&stored.state.setup, &self.setup) {
                return Err(RolloutError::SetupMismatch {
                    id: self.id.clone(),
                    field,
                });
            }
            self.state = stored.state;
            self.version = Some(stored.version);
            info!(version = stored.version, phase = %self.state.phase, "resuming rollout");
        } else {
            self.state = RolloutState::new(self.id.clone(), self.setup.clone(), now);
            self.version = None;
            info!("starting rollout");
        }
        self.emitted = self.state.records.len();
        let summary = if resumed {
            format!("resumed by {}", self.instance)
        } else {
            format!("started by {}", self.instance)
        };
        self.record(
            now,
            Entry::Started {
                engine: self.instance.clone(),
                resumed,
            },
            summary,
        );
        self.save().await?;
        Ok(None)
    }

    async fn drive(&mut self) -> RunResult {
        loop {
            // An action saved as pending by an earlier run was decided before any command now
            // queued: finish it first, so that an abort is never followed by an older effect.
            if let Some(action) = self.state.pending.clone() {
                debug!(op = action.op(), "carrying out the pending action");
                self.act(action, true).await?;
                continue;
            }
            self.drain_commands().await?;
            let now = self.clock.now();
            let decision = planner::decide(&self.setup, &self.state, &Observation { now });
            let span = self.step_span();
            match decision {
                Decision::Wait(delay) => self.wait(delay).instrument(span).await?,
                Decision::Apply(action) => {
                    if action.is_effect() {
                        planner::fold::set_pending(&self.setup, &mut self.state, &action);
                        self.save().await?;
                    }
                    self.act(action, false).instrument(span).await?;
                }
                Decision::Complete(ref end) => {
                    info!(outcome = ?end, "rollout finished");
                    let end = end.clone();
                    self.decided(&decision, now);
                    self.save().await?;
                    let _ = self.events.send(RolloutEvent::Finished(end.clone()));
                    return self.finished(end);
                }
                other => {
                    let _enter = span.enter();
                    info!(decision = %describe_in(&other, &self.state, &self.setup), "decision");
                    self.decided(&other, now);
                    self.save().await?;
                }
            }
        }
    }

    fn step_span(&self) -> tracing::Span {
        let steps = self.setup.steps();
        let kind = match self.state.phase {
            Phase::Progressing => steps.get(self.state.step).map_or("promote", |s| s.kind()),
            Phase::PreFlight => "pre_flight",
            Phase::Expanding => "expand",
            Phase::Promoting => "promote",
            Phase::RollingBack => "rollback",
            Phase::Done => "done",
        };
        info_span!("step", index = self.state.step, kind)
    }

    /// Applies a pure decision to the state and records it.
    fn decided(&mut self, decision: &Decision, now: Timestamp) {
        let summary = describe_in(decision, &self.state, &self.setup);
        let entry = Entry::Decision {
            decision: decision.clone(),
            result: None,
        };
        self.record(now, entry, summary);
        planner::apply_decision(&mut self.state, decision, now);
    }

    /// Carries out an action and folds its result into the state.
    async fn act(&mut self, action: Action, resumed: bool) -> Result<(), RolloutError> {
        let (result, failure, sequential) = match &action {
            Action::Measure {
                slot,
                analysis,
                measurement,
            } if self.providers.sequential.contains_key(analysis) => {
                let (result, state) = self.measure_sequential(*slot, analysis, *measurement).await;
                (result, None, state.map(|s| (*slot, s)))
            }
            _ => {
                let (result, failure) = self.execute(&action, resumed).await;
                (result, failure, None)
            }
        };
        let now = self.clock.now();
        let summary = describe(&Decision::Apply(action.clone()), Some(&result));
        let entry = Entry::Decision {
            decision: Decision::Apply(action.clone()),
            result: Some(result.clone()),
        };
        if let Some(failure) = failure {
            warn!(op = action.op(), error = %failure.error.chain(), "action failed");
            let unrecoverable = action.is_effect()
                && (self.state.phase == Phase::RollingBack || self.state.past_point_of_no_return());
            if unrecoverable {
                // Leave the action pending: the next run tries it again.
                self.record(now, entry, summary);
                self.save().await?;
                return Err(RolloutError::Provider {
                    op: failure.op,
                    provider: failure.provider,
                    rolled_back: false,
                    source: failure.error,
                });
            }
            self.failure.get_or_insert(failure);
        }
        let before = self.state.split.clone();
        self.record(now, entry, summary);
        planner::apply_result(&self.setup, &mut self.state, &action, &result, now);
        if let Some((slot, test)) = sequential {
            self.keep_sequential(slot, test);
        }
        self.save().await?;
        if let (Action::SetSplit { split }, ActionResult::Done) = (&action, &result) {
            info!(split = %split, "split changed");
            let _ = self.events.send(RolloutEvent::SplitChanged {
                from: before,
                to: split.clone(),
            });
        }
        Ok(())
    }

    /// Saves a sequential test's new state with the measurement that produced it (the same
    /// save), so a resumed engine carries on with exactly this test.
    fn keep_sequential(&mut self, slot: planner::Slot, test: SequentialState) {
        let progress = match slot {
            planner::Slot::Step => self.state.analysis.as_mut(),
            planner::Slot::Background => self.state.background.as_mut(),
        };
        if let Some(progress) = progress {
            progress.sequential = Some(test);
        }
    }

    /// Waits for the delay or the next command, whichever comes first.
    async fn wait(&mut self, delay: Option<Duration>) -> Result<(), RolloutError> {
        if !self.commands_open {
            let Some(delay) = delay else {
                let reason = self
                    .state
                    .pause
                    .as_ref()
                    .map_or_else(|| "waiting".to_owned(), |p| p.reason.to_string());
                return Err(RolloutError::Paused {
                    id: self.id.clone(),
                    reason,
                });
            };
            tokio::time::sleep(delay).await;
            return Ok(());
        }
        let command = match delay {
            Some(delay) => tokio::select! {
                () = tokio::time::sleep(delay) => return Ok(()),
                command = self.commands.recv() => command,
            },
            None => self.commands.recv().await,
        };
        if let Some(command) = command {
            self.command(command).await
        } else {
            self.commands_open = false;
            Ok(())
        }
    }

    async fn drain_commands(&mut self) -> Result<(), RolloutError> {
        while self.commands_open {
            match self.commands.try_recv() {
                Ok(command) => self.command(command).await?,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.commands_open = false,
            }
        }
        Ok(())
    }

    async fn command(&mut self, command: Command) -> Result<(), RolloutError> {
        let now = self.clock.now();
        let effect = planner::apply_command(&mut self.state, &command, now);
        let summary = describe_command(&command, &effect);
        info!(accepted = effect.accepted, "{summary}");
        self.record(now, Entry::Command { command, effect }, summary);
        self.save().await
    }

    fn record(&mut self, now: Timestamp, entry: Entry, summary: String) {
        let step = (self.state.phase == Phase::Progressing)
            .then(|| {
                self.setup.steps().get(self.state.step).map(|s| StepRef {
                    index: self.state.step,
                    kind: s.kind().to_owned(),
                })
            })
            .flatten();
        let record = DecisionRecord {
            seq: self.state.records.len() as u64 + 1,
            at: now,
            phase: self.state.phase,
            step,
            inputs: Inputs::of(&self.state, now),
            entry,
            summary,
        };
        self.state.records.push(record);
    }

    /// Publishes a saved state: the snapshot for handles, and the records not yet streamed.
    /// Records are streamed only once saved, so subscribers never see a decision that was lost.
    fn saved(&mut self) {
        let _ = self.snapshot.send(Some(Arc::new(self.state.clone())));
        for record in &self.state.records[self.emitted..] {
            let _ = self.events.send(RolloutEvent::Record(record.clone()));
        }
        self.emitted = self.state.records.len();
    }

    /// Saves the state with compare-and-swap on the version this engine last saw.
    async fn save(&mut self) -> Result<(), RolloutError> {
        let mut attempt = 1;
        loop {
            match self
                .providers
                .store
                .save(&self.id, &self.state, self.version)
                .await
            {
                Ok(version) => {
                    self.version = Some(version);
                    self.saved();
                    return Ok(());
                }
                Err(StoreError::Conflict { .. })
                    if attempt > 1 && self.saved_by_earlier_attempt().await =>
                {
                    self.version = self.version.map(|v| v + 1).or(Some(1));
                    self.saved();
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => {
                    warn!("another engine saved this rollout; stopping");
                    return Err(RolloutError::Superseded {
                        id: self.id.clone(),
                    });
                }
                Err(e) if e.is_retryable() && attempt < self.setup.plan.retry.max_attempts => {
                    let delay = self.retrier.delay(attempt, None);
                    warn!(attempt, error = %e, "saving state failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(RolloutError::Store(e)),
            }
        }
    }

    /// After a retried save conflicts: whether the stored state is ours, saved by an attempt
    /// whose answer was lost.
    async fn saved_by_earlier_attempt(&self) -> bool {
        let expected = self.version.map_or(1, |v| v + 1);
        matches!(
            self.providers.store.load(&self.id).await,
            Ok(Some(stored)) if stored.version == expected && stored.state == self.state
        )
    }

    fn finished(&mut self, end: Final) -> RunResult {
        match end {
            Final::Outcome(outcome) => Ok(outcome),
            Final::Failed { error } => Err(match self.failure.take() {
                Some(failure) => RolloutError::Provider {
                    op: failure.op,
                    provider: failure.provider,
                    rolled_back: true,
                    source: failure.error,
                },
                None => RolloutError::Failed {
                    id: self.id.clone(),
                    error,
                },
            }),
        }
    }
}

/// Which part of the setup differs between a stored rollout and this engine.
fn mismatch(stored: &Setup, ours: &Setup) -> Option<&'static str> {
    if stored.revisions != ours.revisions {
        Some("revisions")
    } else if stored.plan != ours.plan {
        Some("plan")
    } else if stored.migrations != ours.migrations {
        Some("migrations")
    } else if stored.gates != ours.gates {
        Some("gates")
    } else if stored != ours {
        Some("providers")
    } else {
        None
    }
}
