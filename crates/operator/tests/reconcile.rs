//! The reconcile function on kube-fake-client: fast, no API server. Each test calls
//! `reconcile` by hand, as the controller would after each change, and reads back what it
//! wrote: the finalizer, the status and its conditions, the annotations, the store's inbox,
//! the events. The whole loop against a real API server is in `tests/cluster.rs`.

use std::sync::Arc;

use cutover::kubernetes::ConfigMapStateStore;
use cutover::planner::Setup;
use cutover::{Command, Plan, Revisions, RolloutId, RolloutState, StateStore, Timestamp};
use cutover_operator::reconcile::FINALIZER;
use cutover_operator::{
    Context, Error, Rollout, RolloutStatus, STATE_PREFIX, conditions, reconcile,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Client, ResourceExt as _};
use kube_fake_client::ClientBuilder;
use serde_json::json;

const NS: &str = "shop";

/// Another controller's finalizer.
const OTHER: &str = "example.com/keep";

/// A Rollout `checkout` from v1 to v2 by replica counts, with `steps`; its Deployments do
/// not exist on the fake client, so no engine starts: these tests see the reconcile alone.
fn rollout(steps: &serde_json::Value) -> Rollout {
    let mut rollout: Rollout = serde_json::from_value(json!({
        "apiVersion": "cutover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "checkout", "namespace": NS },
        "spec": {
            "stable": { "revision": "v1", "deployment": "checkout-v1" },
            "candidate": { "revision": "v2", "deployment": "checkout-v2" },
            "traffic": { "replicas": { "total": 4 } },
            "plan": { "strategy": { "canary": { "steps": steps } } },
        },
    }))
    .unwrap();
    // A status (even empty) makes the fake client serve the status subresource.
    rollout.status = Some(RolloutStatus::default());
    // kube-fake-client's JSON patch fails a `test` of a missing path where the API server
    // takes it as null, so the helper's "no finalizers yet" patch cannot apply there: the
    // Rollout carries another controller's finalizer, and ours is added after it.
    rollout.metadata.finalizers = Some(vec![OTHER.to_owned()]);
    rollout
}

struct Fake {
    client: Client,
    ctx: Arc<Context>,
}

impl Fake {
    async fn with(rollout: Rollout) -> Self {
        let client = ClientBuilder::new()
            .with_resource::<Rollout>()
            .with_object(rollout)
            .build()
            .await
            .unwrap();
        let ctx = Context::new(client.clone(), "engine-a");
        Fake { client, ctx }
    }

    fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn get(&self) -> Rollout {
        self.rollouts().get("checkout").await.unwrap()
    }

    /// One reconcile of the Rollout as it is now.
    async fn reconcile(&self) -> Result<Action, Error> {
        reconcile(Arc::new(self.get().await), self.ctx.clone()).await
    }

    fn store(&self) -> ConfigMapStateStore {
        ConfigMapStateStore::new(self.client.clone(), NS, STATE_PREFIX)
    }

    /// Stores rollout `checkout-v2` as an engine that has just started it would.
    async fn stored(&self) -> RolloutId {
        let id = RolloutId::new("checkout-v2").unwrap();
        let plan = Plan::from_json(
            r#"{"strategy":{"canary":{"steps":[{"set_weight":50},{"pause":{}}]}}}"#,
        )
        .unwrap();
        let setup = Setup::new(plan, Revisions::new("v1", "v2").unwrap());
        let state = RolloutState::new(
            id.clone(),
            setup,
            Timestamp::from_unix_millis(1_800_000_000_000),
        );
        self.store().save(&id, &state, None).await.unwrap();
        id
    }

    /// (type, reason, note) of the events about `checkout`.
    async fn events(&self) -> Vec<(String, String, String)> {
        Api::<Event>::namespaced(self.client.clone(), NS)
            .list(&ListParams::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("checkout"))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn annotate(&self, command: &str, by: &str) {
        let patch = json!({ "metadata": { "annotations": {
            "cutover.dev/command": command,
            "cutover.dev/by": by,
        } } });
        self.rollouts()
            .patch("checkout", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
}

fn event(kind: &str, reason: &str, note: &str) -> (String, String, String) {
    (kind.into(), reason.into(), note.into())
}

#[tokio::test]
async fn the_finalizer_comes_first_then_an_invalid_spec_is_reported_once() {
    let fake = Fake::with(rollout(&json!([{ "set_weight": 150 }]))).await;

    // First pass: only the finalizer.
    assert_eq!(fake.reconcile().await.unwrap(), Action::await_change());
    let rollout = fake.get().await;
    assert_eq!(rollout.finalizers(), [OTHER, FINALIZER]);
    assert_eq!(rollout.status, Some(RolloutStatus::default()));

    // Second pass: the spec is checked.
    assert_eq!(fake.reconcile().await.unwrap(), Action::await_change());
    let rollout = fake.get().await;
    let status = rollout.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Invalid"));
    let message = status.message.clone().unwrap();
    assert!(
        message.starts_with("invalid spec: spec.plan: "),
        "{message}"
    );
    assert_eq!(status.observed_generation, rollout.metadata.generation);
    let degraded = conditions::get(&status, "Degraded").unwrap();
    assert_eq!(
        (
            degraded.status.as_str(),
            degraded.reason.as_str(),
            degraded.message.as_str()
        ),
        ("True", "Invalid", message.as_str())
    );
    assert_eq!(conditions::get(&status, "Ready").unwrap().status, "False");
    assert_eq!(
        fake.events().await,
        [event("Warning", "InvalidSpec", &message)]
    );

    // A third pass changes nothing and publishes nothing more.
    fake.reconcile().await.unwrap();
    let again = fake.get().await;
    assert_eq!(again.resource_version(), rollout.resource_version());
    assert_eq!(fake.events().await.len(), 1);
}

#[tokio::test]
async fn a_command_annotation_is_taken_queued_and_cleared() {
    let fake = Fake::with(rollout(&json!([{ "set_weight": 50 }, { "pause": {} }]))).await;
    let id = fake.stored().await;
    fake.reconcile().await.unwrap(); // the finalizer
    fake.annotate("pause: checking dashboards", "dana").await;

    // No Deployments: the engine cannot start here, and the status says so.
    assert_eq!(
        fake.reconcile().await.unwrap(),
        Action::requeue(cutover_operator::reconcile::RETRY_INTERVAL)
    );
    let rollout = fake.get().await;
    let annotations = rollout.annotations();
    assert!(
        !annotations.contains_key("cutover.dev/command"),
        "{annotations:?}"
    );
    assert!(
        !annotations.contains_key("cutover.dev/by"),
        "{annotations:?}"
    );
    let status = rollout.status.clone().unwrap();
    assert_eq!(
        status.last_command.as_deref(),
        Some("pause by dana (checking dashboards): queued")
    );
    assert_eq!(status.rollout_id.as_deref(), Some("checkout-v2"));
    assert_eq!(
        status.message.as_deref(),
        Some("not running on this replica: Deployment `checkout-v1` does not exist")
    );
    let degraded = conditions::get(&status, "Degraded").unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "Stalled")
    );
    let queued = fake.store().commands(&id, 0).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].request.command, Command::Pause);
    assert_eq!(queued[0].request.by, "dana");
    assert_eq!(queued[0].request.reason, "checking dashboards");
    let events = fake.events().await;
    assert!(
        events.contains(&event(
            "Normal",
            "CommandQueued",
            "pause by dana (checking dashboards): queued"
        )),
        "{events:#?}"
    );

    // Taken once: another pass queues nothing more.
    fake.reconcile().await.unwrap();
    assert_eq!(fake.store().commands(&id, 0).await.unwrap().len(), 1);

    // A command that is not one is cleared too, and said so.
    fake.annotate("launch", "eve").await;
    fake.reconcile().await.unwrap();
    let status = fake.get().await.status.unwrap();
    let said = status.last_command.unwrap();
    assert!(
        said.starts_with("not queued: invalid spec: annotation cutover.dev/command: `launch`"),
        "{said}"
    );
    assert_eq!(fake.store().commands(&id, 0).await.unwrap().len(), 1);
    assert!(
        fake.events()
            .await
            .iter()
            .any(|(kind, reason, note)| kind == "Warning"
                && reason == "CommandRefused"
                && *note == said),
    );
}

#[tokio::test]
async fn a_pass_on_an_older_copy_of_the_rollout_does_not_undo_a_newer_status() {
    let fake = Fake::with(rollout(&json!([{ "set_weight": 50 }, { "pause": {} }]))).await;
    fake.stored().await;
    fake.reconcile().await.unwrap(); // the finalizer
    fake.annotate("abort: p99 too high", "bob").await;
    let annotated = fake.get().await;
    fake.reconcile().await.unwrap();
    let taken = fake.get().await;
    let said = Some("abort by bob (p99 too high): queued");
    assert_eq!(taken.status.as_ref().unwrap().last_command.as_deref(), said);

    // The controller's cache can lag behind its own writes: the next pass may see the Rollout
    // without its annotation but with the status from before the command was taken.
    let mut stale = annotated;
    stale.metadata.annotations = None;
    reconcile(Arc::new(stale), fake.ctx.clone()).await.unwrap();
    let after = fake.get().await;
    assert_eq!(after.status.as_ref().unwrap().last_command.as_deref(), said);
    assert_eq!(after.resource_version(), taken.resource_version());

    // A pass on the Rollout as it is writes as before.
    fake.reconcile().await.unwrap();
    let status = fake.get().await.status.unwrap();
    assert_eq!(status.last_command.as_deref(), said);
}

#[tokio::test]
async fn a_deleted_rollout_that_runs_is_aborted_and_keeps_its_finalizer() {
    let mut deleting = rollout(&json!([{ "set_weight": 50 }, { "pause": {} }]));
    deleting.metadata.finalizers = Some(vec![OTHER.to_owned(), FINALIZER.to_owned()]);
    deleting.metadata.deletion_timestamp = Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
    ));
    let fake = Fake::with(deleting).await;
    let id = fake.stored().await;

    let error = fake.reconcile().await.unwrap_err();
    assert!(
        matches!(&error, Error::Deleting(why) if why == "waiting for the abort of checkout-v2 to return traffic to stable"),
        "{error}"
    );
    assert_eq!(
        fake.get().await.finalizers(),
        [OTHER, FINALIZER],
        "kept until the rollout ends"
    );
    let queued = fake.store().commands(&id, 0).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].request.command, Command::Abort);
    assert_eq!(queued[0].request.by, "cutover-operator");
    assert_eq!(
        queued[0].request.reason,
        "the Rollout checkout is being deleted"
    );
    let events = fake.events().await;
    assert!(
        events.iter().any(|(kind, reason, note)| kind == "Normal"
            && reason == "AbortOnDelete"
            && note.starts_with("aborting checkout-v2")),
        "{events:#?}"
    );

    // The abort is sent once, however often the controller comes back.
    assert!(matches!(fake.reconcile().await, Err(Error::Deleting(_))));
    assert_eq!(fake.store().commands(&id, 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_deleted_rollout_that_never_ran_goes_at_once() {
    let mut deleting = rollout(&json!([{ "set_weight": 50 }]));
    deleting.metadata.finalizers = Some(vec![OTHER.to_owned(), FINALIZER.to_owned()]);
    deleting.metadata.deletion_timestamp = Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
    ));
    let fake = Fake::with(deleting).await;

    assert_eq!(fake.reconcile().await.unwrap(), Action::await_change());
    // Only the other controller's finalizer is left.
    assert_eq!(fake.get().await.finalizers(), [OTHER]);
    assert!(fake.events().await.is_empty());
}
