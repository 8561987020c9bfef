//! The reconcile loop: kube-rs's `Controller` over Rollouts, one engine per Rollout on this
//! replica, status from the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cutover::kubernetes::ConfigMapStateStore;
use cutover::{RolloutBuilder, RolloutId, StateStore};
use futures_util::StreamExt as _;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt as _};
use serde_json::json;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::crd::{Rollout, RolloutStatus};
use crate::{Error, MANAGER, STATE_PREFIX, command, spec, status};

/// How often a Rollout whose engine runs is looked at again, for its status.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// How long after an engine could not start or stopped without an outcome this replica tries
/// again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// What every reconcile shares.
pub struct Context {
    client: Client,
    engine: String,
    engines: Mutex<HashMap<String, Engine>>,
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
        Arc::new(Context {
            client,
            engine: engine.into(),
            engines: Mutex::new(HashMap::new()),
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
    let api = match namespace {
        Some(ns) => Api::<Rollout>::namespaced(client.clone(), ns),
        None => Api::<Rollout>::all(client.clone()),
    };
    let context = Context::new(client, engine);
    Controller::new(api, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::warn!(error = %e, "reconcile failed");
            }
        })
        .await;
}

/// Retries a failed reconcile after a few seconds.
#[allow(clippy::needless_pass_by_value)] // the signature kube-rs's Controller calls
pub fn error_policy(rollout: Arc<Rollout>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(rollout = %rollout.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// One pass over a Rollout: check the spec, pass on an annotated command, keep its engine
/// running, write its status.
///
/// # Errors
///
/// When the API server or the store fails; the controller retries.
pub async fn reconcile(rollout: Arc<Rollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = rollout.namespace().ok_or(Error::NoNamespace)?;
    let name = rollout.name_any();
    let api = Api::<Rollout>::namespaced(ctx.client.clone(), &namespace);
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
            write_status(&api, &rollout, invalid).await?;
            return Ok(Action::await_change());
        }
    };
    let store = ctx.store(&namespace);
    let mut current = status::from_store(&store, &checked.id).await?;
    let mut last_command = rollout.status.as_ref().and_then(|s| s.last_command.clone());
    // A command waits in its annotation until the engine has stored the rollout: the store
    // refuses commands to rollouts it does not know.
    if current.is_some()
        && let Some(annotated) = command::parse(rollout.annotations())
    {
        last_command = Some(take_command(&api, &rollout, &store, &checked.id, annotated).await?);
    }
    let done = status::is_final(current.as_ref().and_then(|s| s.phase.as_deref()));
    let key = format!("{namespace}/{name}");
    let mut engines = ctx.engines.lock().await;
    // Why this replica's engine stopped without an outcome in the store, and whether it is
    // time to try again.
    let stopped = match engines.get(&key) {
        Some(engine) if engine.id == checked.id => {
            engine.stopped.lock().ok().and_then(|f| f.clone())
        }
        _ => None,
    };
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
    let running = engines
        .get(&key)
        .is_some_and(|e| e.id == checked.id && !e.task.is_finished());
    let retry = stopped
        .as_ref()
        .is_none_or(|(_, at)| at.elapsed() >= RETRY_INTERVAL);
    let mut problem = stopped.map(|(why, _)| why);
    if !done && !running && retry {
        if let Some(old) = engines.remove(&key) {
            old.task.abort();
        }
        match checked
            .builder(&ctx.client, &namespace, store.clone(), &ctx.engine)
            .await
        {
            Ok(builder) => {
                problem = None;
                engines.insert(key, Engine::start(checked.id.clone(), builder));
            }
            Err(e) => problem = Some(e.to_string()),
        }
    }
    drop(engines);

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
    write_status(&api, &rollout, next).await?;
    Ok(if finished {
        Action::await_change()
    } else if stalled {
        Action::requeue(RETRY_INTERVAL)
    } else {
        Action::requeue(STATUS_INTERVAL)
    })
}

/// Removes the command annotations (only from the version of the Rollout that carried them,
/// so a command is taken once), then queues the command. Returns what became of it, for
/// `status.lastCommand`.
async fn take_command(
    api: &Api<Rollout>,
    rollout: &Rollout,
    store: &dyn StateStore,
    id: &RolloutId,
    annotated: Result<command::Annotated, Error>,
) -> Result<String, Error> {
    let remove = json!({
        "metadata": {
            "resourceVersion": rollout.resource_version(),
            "annotations": { command::COMMAND: null, command::BY: null },
        }
    });
    api.patch(
        &rollout.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&remove),
    )
    .await
    .map_err(|e| Error::Kube(Arc::new(e)))?;
    let annotated = match annotated {
        Ok(annotated) => annotated,
        Err(e) => return Ok(format!("not queued: {e}")),
    };
    let what = match &annotated.reason {
        Some(reason) => format!("{} by {} ({reason})", annotated.command, annotated.by),
        None => format!("{} by {}", annotated.command, annotated.by),
    };
    Ok(match command::send(store, id, &annotated).await {
        Ok(()) => {
            tracing::info!(rollout = %id, command = %what, "command queued");
            format!("{what}: queued")
        }
        // A finished rollout takes no more commands, for instance.
        Err(e) => format!("{what}: not queued: {e}"),
    })
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
];

/// Writes `status` unless it is what the Rollout has.
async fn write_status(
    api: &Api<Rollout>,
    rollout: &Rollout,
    status: RolloutStatus,
) -> Result<(), Error> {
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
    let patch = json!({ "status": body });
    api.patch_status(
        &rollout.name_any(),
        &PatchParams::apply(MANAGER),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| Error::Kube(Arc::new(e)))?;
    Ok(())
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
