//! The reconcile loop: kube-rs's `Controller` over Rollouts, one engine per Rollout on this
//! replica, status from the store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cutover::kubernetes::ConfigMapStateStore;
use cutover::{Clock as _, RolloutBuilder, RolloutId, StateStore, TokioClock};
use futures_util::StreamExt as _;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::finalizer::{Event as Finalize, finalizer};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt as _};
use serde_json::json;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::crd::{Rollout, RolloutStatus};
use crate::events::{Events, reason};
use crate::{Error, MANAGER, STATE_PREFIX, command, conditions, spec, status};

/// How often a Rollout whose engine runs is looked at again, for its status.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// How long after an engine could not start or stopped without an outcome this replica tries
/// again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// The finalizer the operator puts on every Rollout: a deleted Rollout goes only once its
/// rollout has ended (traffic back on stable, through an abort, if it was still running).
pub const FINALIZER: &str = "cutover.dev/return-to-stable";

/// What every reconcile shares.
pub struct Context {
    client: Client,
    engine: String,
    engines: Mutex<HashMap<String, Engine>>,
    /// The rollouts this replica sent an abort to because their Rollout is being deleted.
    aborted_on_delete: Mutex<HashSet<RolloutId>>,
    events: Events,
    lease_ttl: Option<Duration>,
}

/// An engine running one rollout on this replica.
#[derive(Debug)]
struct Engine {
    id: RolloutId,
    task: JoinHandle<()>,
    /// Why and when it stopped without an outcome in the store (it could not be built, or
    /// another engine owns the rollout).
    stopped: Arc<std::sync::Mutex<Option<(String, Instant)>>>,
    /// Whether it was told to abort, for a new candidate.
    aborting: bool,
}

impl Engine {
    /// Runs `builder`'s rollout on a task of its own.
    fn start(id: RolloutId, builder: RolloutBuilder) -> Self {
        let stopped = Arc::new(std::sync::Mutex::new(None));
        let slot = stopped.clone();
        let task_id = id.clone();
        let task = tokio::spawn(async move {
            let result = match builder.build() {
                Ok(rollout) => rollout.run().await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(format!("cannot build the rollout: {e}")),
            };
            if let Err(e) = result {
                tracing::warn!(rollout = %task_id, error = %e, "engine stopped");
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some((e, Instant::now()));
                }
            }
        });
        Engine {
            id,
            task,
            stopped,
            aborting: false,
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose engines own their rollouts as `engine` (unique per replica, like the
    /// Pod's name).
    pub fn new(client: Client, engine: impl Into<String>) -> Arc<Self> {
        Self::with_lease_ttl(client, engine, None)
    }

    /// A context whose engines hold their owner leases for `ttl` without renewal (default
    /// [`cutover::DEFAULT_LEASE_TTL`]): another replica takes a rollout over this long after
    /// the replica running it died.
    pub fn with_lease_ttl(
        client: Client,
        engine: impl Into<String>,
        ttl: Option<Duration>,
    ) -> Arc<Self> {
        let engine = engine.into();
        Arc::new(Context {
            events: Events::new(client.clone(), &engine),
            client,
            engine,
            engines: Mutex::new(HashMap::new()),
            aborted_on_delete: Mutex::new(HashSet::new()),
            lease_ttl: ttl,
        })
    }

    fn store(&self, namespace: &str) -> ConfigMapStateStore {
        ConfigMapStateStore::new(self.client.clone(), namespace, STATE_PREFIX)
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        for engine in self.engines.get_mut().values() {
            engine.task.abort();
        }
    }
}

/// Runs the controller over the Rollouts of `namespace` (every namespace for `None`) until
/// SIGTERM or Ctrl-C.
pub async fn run(client: Client, namespace: Option<&str>, engine: &str) {
    let context = Context::new(client, engine);
    run_with(namespace, context).await;
}

/// [`run`] with a [`Context`] of your own.
pub async fn run_with(namespace: Option<&str>, context: Arc<Context>) {
    let client = context.client.clone();
    let api = match namespace {
        Some(ns) => Api::<Rollout>::namespaced(client, ns),
        None => Api::<Rollout>::all(client),
    };
    Controller::new(api, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Err(controller::Error::ReconcilerFailed(Error::Deleting(why), _)) => {
                    tracing::debug!(why, "waiting to remove the finalizer");
                }
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
                Ok(_) => {}
            }
        })
        .await;
}

/// Retries a failed reconcile after a few seconds, and a deletion that waits for its abort
/// after [`STATUS_INTERVAL`].
#[allow(clippy::needless_pass_by_value)] // the signature kube-rs's Controller calls
pub fn error_policy(rollout: Arc<Rollout>, error: &Error, _: Arc<Context>) -> Action {
    if let Error::Deleting(why) = error {
        tracing::debug!(rollout = %rollout.name_any(), why, "waiting to remove the finalizer");
        return Action::requeue(STATUS_INTERVAL);
    }
    tracing::warn!(rollout = %rollout.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// One pass over a Rollout, through kube-runtime's finalizer helper: a Rollout gets the
/// [`FINALIZER`] first; then each pass checks the spec, passes on an annotated command, keeps
/// its engine running and writes its status; once the Rollout is being deleted, a pass aborts
/// its rollout if it still runs and lets the Rollout go only once it has ended.
///
/// # Errors
///
/// When the API server or the store fails, the controller retries;
/// [`Error::Deleting`] while a deleted Rollout waits for its abort.
pub async fn reconcile(rollout: Arc<Rollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = rollout.namespace().ok_or(Error::NoNamespace)?;
    let api = Api::<Rollout>::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, rollout, |event| async {
        match event {
            Finalize::Apply(rollout) => apply(&rollout, &ctx, &api, &namespace).await,
            Finalize::Cleanup(rollout) => cleanup(&rollout, &ctx, &api, &namespace).await,
        }
    })
    .await
    .map_err(Error::from_finalizer)
}

/// A Rollout that is not being deleted: check the spec, pass on an annotated command, keep its
/// engine running, write its status.
async fn apply(
    rollout: &Rollout,
    ctx: &Context,
    api: &Api<Rollout>,
    namespace: &str,
) -> Result<Action, Error> {
    let name = rollout.name_any();
    let generation = rollout.metadata.generation;

    let checked = match spec::check(&name, &rollout.spec) {
        Ok(checked) => checked,
        Err(e) => {
            let invalid = RolloutStatus {
                phase: Some("Invalid".into()),
                message: Some(e.to_string()),
                observed_generation: generation,
                ..RolloutStatus::default()
            };
            write_status(
                ctx,
                api,
                rollout,
                rollout.resource_version(),
                invalid,
                false,
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let store = ctx.store(namespace);
    let mut current = status::from_store(&store, &checked.id).await?;
    let mut last_command = rollout.status.as_ref().and_then(|s| s.last_command.clone());
    // The version of the Rollout this pass has seen, for the status write.
    let mut version = rollout.resource_version();
    // A command waits in its annotation until the engine has stored the rollout: the store
    // refuses commands to rollouts it does not know.
    if current.is_some()
        && let Some(annotated) = command::parse(rollout.annotations())
    {
        let (taken, after) =
            take_command(ctx, api, rollout, &store, &checked.id, annotated).await?;
        last_command = Some(taken);
        version = after;
    }
    let done = status::is_final(current.as_ref().and_then(|s| s.phase.as_deref()));
    let key = format!("{namespace}/{name}");
    let problem = {
        let mut engines = ctx.engines.lock().await;
        if let Some(old) = engines.get_mut(&key)
            && old.id != checked.id
            && !old.task.is_finished()
        {
            // A new candidate: the running rollout goes back to stable first.
            if !old.aborting {
                let abort = command::Annotated {
                    command: cutover::Command::Abort,
                    reason: Some(format!("spec.candidate changed to {}", checked.candidate)),
                    by: MANAGER.to_owned(),
                };
                command::send(&store, &old.id, &abort).await?;
                old.aborting = true;
            }
            return Ok(Action::requeue(STATUS_INTERVAL));
        }
        if done {
            None
        } else {
            keep_running(ctx, &mut engines, key, &checked, namespace, &store).await
        }
    };

    let mut next = current.take().unwrap_or_else(|| RolloutStatus {
        rollout_id: Some(checked.id.to_string()),
        phase: Some("Pending".into()),
        ..RolloutStatus::default()
    });
    let stalled = problem.is_some();
    if let Some(problem) = problem.filter(|_| !done) {
        next.message = Some(format!("not running on this replica: {problem}"));
    }
    next.last_command = last_command;
    next.observed_generation = generation;
    let finished = status::is_final(next.phase.as_deref());
    write_status(ctx, api, rollout, version, next, stalled).await?;
    Ok(if finished {
        Action::await_change()
    } else if stalled {
        Action::requeue(RETRY_INTERVAL)
    } else {
        Action::requeue(STATUS_INTERVAL)
    })
}

/// Starts the engine of `checked` on this replica unless it runs, or stopped without an
/// outcome less than [`RETRY_INTERVAL`] ago. Returns why it does not run, if it does not.
async fn keep_running(
    ctx: &Context,
    engines: &mut HashMap<String, Engine>,
    key: String,
    checked: &spec::Checked,
    namespace: &str,
    store: &ConfigMapStateStore,
) -> Option<String> {
    // Another replica runs it: nothing to do here until its lease expires.
    match store.lease(&checked.id).await {
        Ok(Some(lease))
            if lease.owner != ctx.engine && lease.is_live_at(TokioClock::new().now()) =>
        {
            return None;
        }
        Ok(_) => {}
        Err(e) => return Some(format!("cannot read the owner lease: {e}")),
    }
    // Why this replica's engine stopped without an outcome in the store, and whether it is
    // time to try again.
    let stopped = match engines.get(&key) {
        Some(engine) if engine.id == checked.id => {
            engine.stopped.lock().ok().and_then(|f| f.clone())
        }
        _ => None,
    };
    let running = engines
        .get(&key)
        .is_some_and(|e| e.id == checked.id && !e.task.is_finished());
    let retry = stopped
        .as_ref()
        .is_none_or(|(_, at)| at.elapsed() >= RETRY_INTERVAL);
    let mut problem = stopped.map(|(why, _)| why);
    if !running && retry {
        if let Some(old) = engines.remove(&key) {
            old.task.abort();
        }
        match checked
            .builder(&ctx.client, namespace, store.clone(), &ctx.engine)
            .await
        {
            Ok(mut builder) => {
                if let Some(ttl) = ctx.lease_ttl {
                    builder = builder.lease_ttl(ttl);
                }
                problem = None;
                engines.insert(key, Engine::start(checked.id.clone(), builder));
            }
            Err(e) => problem = Some(e.to_string()),
        }
    }
    problem
}

/// A Rollout being deleted: if its rollout still runs, abort it (through the store's inbox, as
/// `cutover abort` does) and keep the finalizer until the store shows it ended, with traffic
/// back on stable. Then stop this replica's engine of it and let the Rollout go.
async fn cleanup(
    rollout: &Rollout,
    ctx: &Context,
    api: &Api<Rollout>,
    namespace: &str,
) -> Result<Action, Error> {
    let name = rollout.name_any();
    let key = format!("{namespace}/{name}");
    let checked = spec::check(&name, &rollout.spec).ok();
    // The rollout that ran is the one the status names (the spec may have changed since).
    let id = rollout
        .status
        .as_ref()
        .and_then(|s| s.rollout_id.as_deref())
        .and_then(|id| RolloutId::new(id).ok())
        .or_else(|| checked.as_ref().map(|c| c.id.clone()));
    let store = ctx.store(namespace);
    let current = match &id {
        Some(id) => status::from_store(&store, id).await?,
        None => None,
    };
    let (Some(id), Some(current)) = (id, current) else {
        // Nothing stored: the engine never moved traffic.
        forget(ctx, &key, None).await;
        return Ok(Action::await_change());
    };
    if status::is_final(current.phase.as_deref()) {
        forget(ctx, &key, Some(&id)).await;
        tracing::info!(rollout = %id, phase = ?current.phase, "Rollout deleted; its rollout has ended");
        return Ok(Action::await_change());
    }
    if ctx.aborted_on_delete.lock().await.insert(id.clone()) {
        let abort = command::Annotated {
            command: cutover::Command::Abort,
            reason: Some(format!("the Rollout {name} is being deleted")),
            by: MANAGER.to_owned(),
        };
        if let Err(e) = command::send(&store, &id, &abort).await {
            ctx.aborted_on_delete.lock().await.remove(&id);
            return Err(e);
        }
        let note = format!("aborting {id}: traffic goes back to stable before the Rollout goes");
        (ctx.events)
            .publish(rollout, false, reason::ABORT_ON_DELETE, "Delete", note)
            .await;
    }
    // Someone must carry out the abort: this replica, unless another engine owns the rollout.
    if let Some(checked) = checked.filter(|c| c.id == id) {
        let mut engines = ctx.engines.lock().await;
        keep_running(ctx, &mut engines, key, &checked, namespace, &store).await;
    }
    let mut next = current;
    next.observed_generation = rollout.metadata.generation;
    next.last_command = rollout.status.as_ref().and_then(|s| s.last_command.clone());
    write_status(ctx, api, rollout, rollout.resource_version(), next, false).await?;
    Err(Error::Deleting(format!(
        "waiting for the abort of {id} to return traffic to stable"
    )))
}

/// Stops this replica's engine of the Rollout `key`, and forgets the abort sent to `id`.
async fn forget(ctx: &Context, key: &str, id: Option<&RolloutId>) {
    if let Some(engine) = ctx.engines.lock().await.remove(key) {
        engine.task.abort();
    }
    if let Some(id) = id {
        ctx.aborted_on_delete.lock().await.remove(id);
    }
}

/// Removes the command annotations (only from the version of the Rollout that carried them,
/// so a command is taken once), then queues the command. Returns what became of it, for
/// `status.lastCommand`, and the Rollout's resource version once the annotations are gone.
async fn take_command(
    ctx: &Context,
    api: &Api<Rollout>,
    rollout: &Rollout,
    store: &dyn StateStore,
    id: &RolloutId,
    annotated: Result<command::Annotated, Error>,
) -> Result<(String, Option<String>), Error> {
    let remove = json!({
        "metadata": {
            "resourceVersion": rollout.resource_version(),
            "annotations": { command::COMMAND: null, command::BY: null },
        }
    });
    let version = api
        .patch(
            &rollout.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&remove),
        )
        .await
        .map_err(|e| Error::Kube(Arc::new(e)))?
        .resource_version();
    let annotated = match annotated {
        Ok(annotated) => annotated,
        Err(e) => {
            let what = format!("not queued: {e}");
            (ctx.events)
                .publish(
                    rollout,
                    true,
                    reason::COMMAND_REFUSED,
                    "Command",
                    what.clone(),
                )
                .await;
            return Ok((what, version));
        }
    };
    let what = match &annotated.reason {
        Some(reason) => format!("{} by {} ({reason})", annotated.command, annotated.by),
        None => format!("{} by {}", annotated.command, annotated.by),
    };
    let (queued, what) = match command::send(store, id, &annotated).await {
        Ok(()) => {
            tracing::info!(rollout = %id, command = %what, "command queued");
            (true, format!("{what}: queued"))
        }
        // A finished rollout takes no more commands, for instance.
        Err(e) => (false, format!("{what}: not queued: {e}")),
    };
    let reason = if queued {
        reason::COMMAND_QUEUED
    } else {
        reason::COMMAND_REFUSED
    };
    (ctx.events)
        .publish(rollout, !queued, reason, "Command", what.clone())
        .await;
    Ok((what, version))
}

/// The fields of [`RolloutStatus`], as serialized.
const STATUS_FIELDS: &[&str] = &[
    "observedGeneration",
    "rolloutId",
    "phase",
    "step",
    "candidateWeight",
    "owner",
    "message",
    "lastCommand",
    "conditions",
];

/// Writes `status`, with its conditions (`stalled`: the engine cannot start on this replica),
/// unless it is what the Rollout has; publishes an event when the phase changes, or the reason
/// the rollout is invalid or stalled does.
///
/// The write holds only if the Rollout is still at `version`, the version this pass has seen
/// (or made, by taking a command). A pass that ran on an older copy of the Rollout than the API
/// server holds (the controller's cache lags behind its own writes) would otherwise put back
/// what a newer pass wrote, such as `lastCommand`; its write is dropped instead, and the newer
/// version, which comes with its own pass, writes the status.
async fn write_status(
    ctx: &Context,
    api: &Api<Rollout>,
    rollout: &Rollout,
    version: Option<String>,
    mut status: RolloutStatus,
    stalled: bool,
) -> Result<(), Error> {
    let before = rollout.status.clone().unwrap_or_default();
    status.conditions = conditions::conditions(
        &status,
        stalled,
        rollout.metadata.generation,
        &before.conditions,
        &TokioClock::new().now().to_string(),
    );
    if rollout.status.as_ref() == Some(&status) {
        return Ok(());
    }
    // A merge patch keeps what it does not name: name every field, `null` for those unset.
    let mut body = serde_json::to_value(&status).unwrap_or_default();
    if let Some(fields) = body.as_object_mut() {
        for field in STATUS_FIELDS {
            fields.entry(*field).or_insert(serde_json::Value::Null);
        }
    }
    let patch = json!({ "metadata": { "resourceVersion": version }, "status": body });
    let written = api
        .patch_status(
            &rollout.name_any(),
            &PatchParams::apply(MANAGER),
            &Patch::Merge(&patch),
        )
        .await;
    match written {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            tracing::debug!(rollout = %rollout.name_any(), "status not written: the Rollout changed since this pass read it");
            return Ok(());
        }
        Err(e) => return Err(Error::Kube(Arc::new(e))),
    }
    publish_changes(ctx, rollout, &before, &status, stalled).await;
    Ok(())
}

/// The events for a status that went from `before` to `after`.
async fn publish_changes(
    ctx: &Context,
    rollout: &Rollout,
    before: &RolloutStatus,
    after: &RolloutStatus,
    stalled: bool,
) {
    let Some(phase) = after.phase.as_deref() else {
        return;
    };
    let message = after.message.as_deref();
    let changed = before.phase.as_deref() != Some(phase);
    if phase == "Invalid" {
        if changed || before.message.as_deref() != message {
            let note = message.unwrap_or("invalid spec");
            (ctx.events)
                .publish(rollout, true, reason::INVALID_SPEC, "Validate", note)
                .await;
        }
        return;
    }
    // Each replica writes the same status from the store; the owner tells of phase changes.
    let mine = after.owner.as_deref().is_none_or(|o| o == ctx.engine);
    if changed && mine {
        ctx.events.phase(rollout, phase, message).await;
    }
    let was_stalled = conditions::get(before, "Degraded").is_some_and(|c| c.reason == "Stalled");
    if stalled && (!was_stalled || before.message.as_deref() != message) {
        let note = message.unwrap_or("the engine cannot start");
        (ctx.events)
            .publish(rollout, true, reason::NOT_RUNNING, "Start", note)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_every_field_of_the_status() {
        let full = RolloutStatus {
            observed_generation: Some(1),
            rollout_id: Some("a".into()),
            phase: Some("b".into()),
            step: Some("c".into()),
            candidate_weight: Some("d".into()),
            owner: Some("e".into()),
            message: Some("f".into()),
            last_command: Some("g".into()),
            conditions: vec![crate::crd::Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "Promoted".into(),
                message: String::new(),
                last_transition_time: "2026-12-04T12:00:00.000Z".into(),
                observed_generation: None,
            }],
        };
        let value = serde_json::to_value(full).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut fields = STATUS_FIELDS.to_vec();
        keys.sort_unstable();
        fields.sort_unstable();
        assert_eq!(keys, fields);
    }
}
