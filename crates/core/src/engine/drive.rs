//! The run loop: claim the rollout, then decide, act and save until it is done.

use std::sync::Arc;
use std::time::Duration;

use tracing::{Instrument as _, debug, info, info_span, warn};

use super::events::Events;
use super::exec::{Failure, Retrier};
use super::lease::Held;
use super::{Ownership, Providers, RolloutError, RolloutEvent, new_engine_id};
use crate::action::{Action, ActionResult, Decision, Slot};
use crate::analysis::SequentialState;
use crate::command::QueuedCommand;
use crate::describe::{describe, describe_command, describe_in};
use crate::planner::{self, Observation};
use crate::record::{DecisionRecord, Entry, Inputs, StepRef, Takeover};
use crate::retry::Jitter;
use crate::setup::Setup;
use crate::state::{Final, Phase, RolloutState};
use crate::store::Watch;
use crate::{Clock, RolloutId, Timestamp, TokioClock};

pub(super) struct Engine {
    pub(super) id: RolloutId,
    pub(super) setup: Arc<Setup>,
    pub(super) providers: Providers,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) instance: String,
    pub(super) retrier: Retrier,
    pub(super) events: Events,
    pub(super) state: RolloutState,
    pub(super) version: Option<u64>,
    /// The provider error behind a rollback that will end in failure.
    pub(super) failure: Option<Failure>,
    /// The owner lease and when to renew it.
    pub(super) held: Held,
    /// How commands reach this engine.
    watch: Watch,
    /// For a polled store: when to look at the inbox next.
    next_poll: Timestamp,
    /// A notification arrived while waiting: look at the inbox.
    notified: bool,
    /// Pure decisions were made since the last save. They are saved with whatever comes next
    /// (an effect's intent, a result, a command) and at the latest before waiting: nothing
    /// happens in the world between, and a crash only makes the next engine decide them again.
    pub(super) unsaved: bool,
    private_store: bool,
}

pub(super) type RunResult = Result<crate::Outcome, RolloutError>;

impl Engine {
    /// Takes the lease, claims the rollout and drives it to its end; gives the lease up after.
    pub(super) async fn run(
        id: RolloutId,
        setup: Arc<Setup>,
        providers: Providers,
        clock: Option<Arc<dyn Clock>>,
        ownership: Ownership,
        events: Events,
    ) -> RunResult {
        let clock = clock.unwrap_or_else(|| Arc::new(TokioClock::new()));
        let now = clock.now();
        let instance = ownership
            .engine_id
            .clone()
            .unwrap_or_else(|| new_engine_id(now));
        let retrier = Retrier::new(
            setup.plan.retry,
            Jitter::seeded(&format!("{id}/{instance}")),
            events.clone(),
        );
        let (held, previous) =
            Held::acquire(&providers.store, &id, &instance, &ownership, now).await?;
        let takeover = previous
            .zip(ownership.takeover.clone())
            .map(|(lease, (by, reason))| {
                warn!(from = %lease.owner, %by, %reason, "took the rollout over from a live owner");
                Takeover {
                    from: lease.owner,
                    by,
                    reason,
                }
            });
        let watch = providers.store.watch(&id);
        let mut engine = Engine {
            state: RolloutState::new(id.clone(), setup.clone(), now),
            id,
            setup,
            providers,
            clock,
            instance,
            retrier,
            events,
            version: None,
            failure: None,
            held,
            watch,
            next_poll: now,
            // Look at the inbox once on start: a command queued while no engine ran came
            // before this engine's watch, which only tells of changes after it.
            notified: true,
            unsaved: false,
            private_store: ownership.private_store,
        };
        // Claiming and acting are boxed: they are short, and the future of a rollout that
        // waits (most of its life) stays small, which matters with many thousands of them.
        let result = match Box::pin(engine.start(takeover)).await {
            Ok(Some(done)) => done,
            Ok(None) => engine.drive().await,
            Err(e) => Err(e),
        };
        engine
            .held
            .release(&engine.providers.store, &engine.id)
            .await;
        result
    }

    /// Loads or creates the state and claims the rollout. Returns the result directly when the
    /// stored rollout has already finished.
    async fn start(
        &mut self,
        takeover: Option<Takeover>,
    ) -> Result<Option<RunResult>, RolloutError> {
        // A claim conflicts when another engine saved between our load and our save: the last
        // write of one that just died, or (after a forced takeover) one still running. The
        // claim itself does nothing in the world, so load the newer state and claim again.
        const CLAIM_ATTEMPTS: u32 = 3;
        for attempt in 1..=CLAIM_ATTEMPTS {
            match self.claim(takeover.clone()).await {
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
    async fn claim(
        &mut self,
        takeover: Option<Takeover>,
    ) -> Result<Option<RunResult>, RolloutError> {
        let now = self.clock.now();
        let stored = self
            .providers
            .store
            .load(&self.id)
            .await
            .map_err(RolloutError::Store)?;
        let resumed = stored.is_some();
        if let Some(stored) = stored {
            if let Some(end) = stored.state.outcome.clone() {
                info!(outcome = ?end, "rollout already finished");
                // Its last records may have been saved but not appended before a crash.
                self.state = stored.state;
                self.flush().await?;
                return Ok(Some(self.finished(end)));
            }
            if let Some(field) = mismatch(&stored.state.setup, &self.setup) {
                return Err(RolloutError::SetupMismatch {
                    id: self.id.clone(),
                    field,
                });
            }
            self.state = stored.state;
            // The same setup: share the engine's copy rather than keep the one read back.
            self.state.setup = self.setup.clone();
            self.version = Some(stored.version);
            info!(version = stored.version, phase = %self.state.phase, "resuming rollout");
        } else {
            self.state = RolloutState::new(self.id.clone(), self.setup.clone(), now);
            self.version = None;
            info!("starting rollout");
        }
        let mut summary = if resumed {
            format!("resumed by {}", self.instance)
        } else {
            format!("started by {}", self.instance)
        };
        if let Some(t) = &takeover {
            summary = format!(
                "{summary}, taken over from {} by {} ({})",
                t.from, t.by, t.reason
            );
        }
        self.record(
            now,
            Entry::Started {
                engine: self.instance.clone(),
                resumed,
                takeover,
            },
            summary,
        );
        self.save().await?;
        Ok(None)
    }

    async fn drive(&mut self) -> RunResult {
        loop {
            self.held
                .renew_if_due(
                    &self.providers.store,
                    &self.id,
                    self.clock.now(),
                    &self.retrier,
                )
                .await?;
            // An action saved as pending by an earlier run was decided before any command now
            // queued: finish it first, so that an abort is never followed by an older effect.
            if let Some(action) = self.state.pending.clone() {
                debug!(op = action.op(), "carrying out the pending action");
                Box::pin(self.act(action, true)).await?;
                continue;
            }
            Box::pin(self.apply_commands()).await?;
            let now = self.clock.now();
            let decision = planner::decide(&self.setup, &self.state, &Observation { now });
            let span = self.step_span();
            match decision {
                Decision::Wait(delay) => {
                    if self.unsaved {
                        self.save().await?;
                    }
                    self.wait(delay).instrument(span).await?;
                }
                Decision::Apply(action) => {
                    if action.is_effect() {
                        planner::fold::set_pending(&self.setup, &mut self.state, &action);
                        self.save().await?;
                    }
                    Box::pin(self.act(action, false)).instrument(span).await?;
                }
                Decision::Complete(ref end) => {
                    info!(outcome = ?end, "rollout finished");
                    let end = end.clone();
                    self.decided(&decision, now);
                    self.save().await?;
                    self.events.send(|| RolloutEvent::Finished(end.clone()));
                    return self.finished(end);
                }
                other => {
                    let _enter = span.enter();
                    info!(decision = %describe_in(&other, &self.state, &self.setup), "decision");
                    self.decided(&other, now);
                    self.unsaved = true;
                }
            }
        }
    }

    fn step_span(&self) -> tracing::Span {
        let kind = match self.state.phase {
            Phase::Progressing => self.setup.step_kind(self.state.step).unwrap_or("promote"),
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
            self.events.send(|| RolloutEvent::SplitChanged {
                from: before,
                to: split.clone(),
            });
        }
        Ok(())
    }

    /// Saves a sequential test's new state with the measurement that produced it (the same
    /// save), so a resumed engine carries on with exactly this test.
    fn keep_sequential(&mut self, slot: Slot, test: SequentialState) {
        let progress = match slot {
            Slot::Step => self.state.analysis.as_mut(),
            Slot::Background => self.state.background.as_mut(),
        };
        if let Some(progress) = progress {
            progress.sequential = Some(test);
        }
    }

    /// Whether the inbox may hold new commands: the store said so, or the poll interval
    /// passed.
    fn inbox_due(&mut self) -> bool {
        match &mut self.watch {
            Watch::Notified(rx) => {
                let due = std::mem::take(&mut self.notified) || rx.has_changed().unwrap_or(true);
                // Mark the change seen before reading the inbox, so a command sent while
                // reading wakes the next wait.
                rx.borrow_and_update();
                due
            }
            Watch::Poll(interval) => {
                let now = self.clock.now();
                if now < self.next_poll {
                    return false;
                }
                self.next_poll = now + *interval;
                true
            }
        }
    }

    /// Applies the commands queued since the last one applied, in order.
    async fn apply_commands(&mut self) -> Result<(), RolloutError> {
        if !self.inbox_due() {
            return Ok(());
        }
        let queued = self.pending_commands().await?;
        for command in queued {
            self.command(command).await?;
        }
        Ok(())
    }

    /// Waits for the delay, the next command, or the lease renewal, whichever comes first.
    async fn wait(&mut self, delay: Option<Duration>) -> Result<(), RolloutError> {
        let now = self.clock.now();
        let mut sleep = delay;
        if let Some(renew_at) = self.held.renew_at() {
            let until = renew_at.saturating_since(now);
            sleep = Some(sleep.map_or(until, |d| d.min(until)));
        }
        if sleep.is_none() && self.private_store && Arc::strong_count(&self.providers.store) == 1 {
            return Err(self.paused_for_good());
        }
        let changed = match &mut self.watch {
            Watch::Notified(rx) => match sleep {
                Some(sleep) => tokio::select! {
                    () = tokio::time::sleep(sleep) => None,
                    changed = rx.changed() => Some(changed.is_ok()),
                },
                None => Some(rx.changed().await.is_ok()),
            },
            Watch::Poll(_) => {
                let until_poll = self.next_poll.saturating_since(now);
                tokio::time::sleep(sleep.map_or(until_poll, |d| d.min(until_poll))).await;
                None
            }
        };
        match changed {
            Some(true) => self.notified = true,
            // The store stopped notifying: poll instead.
            Some(false) => self.watch = Watch::Poll(crate::store::DEFAULT_POLL_INTERVAL),
            None => {}
        }
        Ok(())
    }

    fn paused_for_good(&self) -> RolloutError {
        let reason = self
            .state
            .pause
            .as_ref()
            .map_or_else(|| "waiting".to_owned(), |p| p.reason.to_string());
        RolloutError::Paused {
            id: self.id.clone(),
            reason,
        }
    }

    async fn command(&mut self, command: QueuedCommand) -> Result<(), RolloutError> {
        let now = self.clock.now();
        let effect = planner::apply_command(&mut self.state, &command.request, now);
        self.state.last_command = self.state.last_command.max(command.seq);
        let summary = describe_command(&command, &effect);
        info!(accepted = effect.accepted, "{summary}");
        self.record(now, Entry::Command { command, effect }, summary);
        self.save().await
    }

    pub(super) fn record(&mut self, now: Timestamp, entry: Entry, summary: String) {
        let step = (self.state.phase == Phase::Progressing)
            .then(|| {
                self.setup.step_kind(self.state.step).map(|kind| StepRef {
                    index: self.state.step,
                    kind: kind.to_owned(),
                })
            })
            .flatten();
        self.state.last_seq += 1;
        let record = DecisionRecord {
            seq: self.state.last_seq,
            at: now,
            phase: self.state.phase,
            step,
            inputs: inputs_of(&self.state, now),
            entry,
            summary,
        };
        self.state.unlogged.push(record);
    }

    pub(super) fn finished(&mut self, end: Final) -> RunResult {
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

/// What a decision is based on: the state's split, timing, tallies and health.
fn inputs_of(state: &RolloutState, now: Timestamp) -> Inputs {
    Inputs {
        split: state.split.clone(),
        step_elapsed: now.saturating_since(state.step_started_at),
        analysis: state.analysis.as_ref().map(|a| a.tally),
        background: state.background.as_ref().map(|a| a.tally),
        health: state.health.as_ref().map(|h| h.value.clone()),
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
