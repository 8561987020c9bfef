//! The engine: carries out the planner's decisions through the providers, saving the state
//! before every effect.

mod builder;
mod drive;
mod error;
mod events;
mod exec;
mod handle;
mod lease;
mod persist;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::broadcast;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tracing::{Instrument as _, info_span};

pub use self::builder::{DEFAULT_EVENT_CAPACITY, DEFAULT_LEASE_TTL, RolloutBuilder};
use self::drive::Engine;
pub use self::error::{BuildError, RolloutError};
use self::events::Events;
pub use self::events::RolloutEvent;
pub use self::handle::RolloutHandle;
use crate::analysis::SequentialAnalysis;
use crate::planner::Setup;
use crate::{
    Analysis, Clock, Gate, HealthProbe, MigrationStep, Plan, RolloutId, StateStore, Timestamp,
    TrafficRouter, Workload,
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

/// How this engine claims and holds the rollout.
#[derive(Debug, Clone)]
pub(crate) struct Ownership {
    /// The engine's instance id, or `None` for a generated one.
    pub(crate) engine_id: Option<String>,
    /// How long the owner lease lasts without renewal.
    pub(crate) lease_ttl: Duration,
    /// Take the rollout from a live owner: (by, reason).
    pub(crate) takeover: Option<(String, String)>,
    /// The store is the rollout's own default store: when nothing else holds it, nobody can
    /// send a command, and a rollout waiting for one returns instead of waiting forever.
    pub(crate) private_store: bool,
}

/// One rollout, ready to run.
///
/// ```no_run
/// # async fn example(rollout: cutover_core::Rollout) -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_core::Outcome;
///
/// let handle = rollout.handle(); // pause / resume / promote / abort, from anywhere
/// match rollout.run().await? {
///     Outcome::Promoted => println!("done"),
///     Outcome::RolledBack(reason) => println!("rolled back: {reason}"),
///     other => println!("{other}"),
/// }
/// let records = handle.records().await?; // the decision record, for export
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Rollout {
    id: RolloutId,
    setup: Arc<Setup>,
    providers: Providers,
    clock: Option<Arc<dyn Clock>>,
    ownership: Ownership,
    events: OnceLock<broadcast::Sender<RolloutEvent>>,
    event_capacity: usize,
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

    /// A handle that sends commands to this rollout and reads it through its store. Any other
    /// process that reaches the store can do the same with [`RolloutHandle::new`].
    pub fn handle(&self) -> RolloutHandle {
        RolloutHandle::shared(
            self.providers.store.clone(),
            self.id.clone(),
            self.clock.clone(),
        )
    }

    /// The rollout's events, from now on. Subscribe before calling [`run`](Self::run). The
    /// buffer is bounded: a subscriber that falls behind gets [`RolloutEvent::Lagged`].
    pub fn subscribe(&self) -> impl Stream<Item = RolloutEvent> + Send + 'static {
        let sender = self
            .events
            .get_or_init(|| broadcast::channel(self.event_capacity).0);
        BroadcastStream::new(sender.subscribe()).map(|item| match item {
            Ok(event) => event,
            Err(BroadcastStreamRecvError::Lagged(missed)) => RolloutEvent::Lagged { missed },
        })
    }

    /// Runs the rollout to its end, or resumes it from its stored state.
    ///
    /// Returns the [`Outcome`](crate::Outcome): promoted, rolled back (with the reason),
    /// aborted, or for A/B tests concluded. Returns an error when the plan could not be carried
    /// out (see [`RolloutError`] for where that leaves traffic), or when another engine owns
    /// the rollout ([`RolloutError::Owned`]). Dropping the future stops the rollout where it
    /// is; its state is saved, and running it again resumes it.
    pub async fn run(self) -> Result<crate::Outcome, RolloutError> {
        let span = info_span!("rollout", id = %self.id, strategy = self.setup.plan.strategy.kind());
        let Rollout {
            id,
            setup,
            providers,
            clock,
            ownership,
            events,
            ..
        } = self;
        let events = Events::new(events.into_inner());
        Engine::run(id, setup, providers, clock, ownership, events)
            .instrument(span)
            .await
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
