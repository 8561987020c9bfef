//! The operator against a real API server: the control plane of `shared/tools/kube/start`
//! (etcd, kube-apiserver, kube-controller-manager; RBAC enforced; no kubelet), started once
//! for this test binary by `cutover_kube::testing`. A fake kubelet marks Pods ready. The
//! operator runs in-process, over the test's namespace only, as a user bound to exactly the
//! Role of docs/operator.md.
//!
//! With `CUTOVER_TEST_KUBECONFIG=PATH` they run against the cluster of that kubeconfig
//! instead (its kubelets run the Pods; the operator impersonates a ServiceAccount bound to the
//! same Role; each test's namespace is deleted after it).
//!
//! `#[ignore = "needs etcd: scripts/test-deps"]`; CI runs them with `--include-ignored`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cutover::kubernetes::ConfigMapStateStore;
use cutover::{RolloutId, StateStore};
use cutover_kube::testing::{
    Caller, ControlPlane, DEADLINE, FakeKubelet, apply_yaml, eventually, install_crds,
    role_from_docs,
};
use cutover_operator::conditions;
use cutover_operator::reconcile::FINALIZER;
use cutover_operator::{Rollout, RolloutStatus, STATE_PREFIX};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace as CoreNamespace, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, ResourceExt as _};
use serde_json::json;

/// Two Deployments of `checkout`, without `replicas`: with `traffic.replicas` the router owns
/// that field (server-side apply), as docs/operator.md says.
const DEPLOYMENTS: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: { name: checkout-v1 }
spec:
  selector: { matchLabels: { app: checkout, version: v1 } }
  template:
    metadata: { labels: { app: checkout, version: v1 } }
    spec: { containers: [ { name: app, image: 'registry.k8s.io/pause:3.10' } ] }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: checkout-v2 }
spec:
  selector: { matchLabels: { app: checkout, version: v2 } }
  template:
    metadata: { labels: { app: checkout, version: v2 } }
    spec: { containers: [ { name: app, image: 'registry.k8s.io/pause:3.10' } ] }
";

/// A Rollout of checkout from v1 to v2 by replica counts, with `steps` as its canary steps.
fn rollout(steps: &str) -> String {
    format!(
        "
apiVersion: cutover.dev/v1alpha1
kind: Rollout
metadata: {{ name: checkout }}
spec:
  stable: {{ revision: v1, deployment: checkout-v1 }}
  candidate: {{ revision: v2, deployment: checkout-v2 }}
  traffic: {{ replicas: {{ total: 4 }} }}
  plan:
    strategy: {{ canary: {{ steps: {steps} }} }}
"
    )
}

/// Set to a kubeconfig file to run these tests against that cluster (its current context,
/// with cluster-admin rights: they install the CRD, and create a namespace per test and
/// delete it afterwards) instead of a control plane of their own. The cluster's nodes must
/// be able to pull `registry.k8s.io/pause`.
const KUBECONFIG_ENV: &str = "CUTOVER_TEST_KUBECONFIG";

/// The namespaces these tests create on a cluster of [`KUBECONFIG_ENV`] carry this label
/// (`kubectl delete namespace -l cutover.dev/test=operator` cleans up after a killed run).
const TEST_LABEL: (&str, &str) = ("cutover.dev/test", "operator");

/// The namespace of one test.
struct Namespace {
    name: String,
    /// The kubeconfig of the user's cluster, whose namespace is deleted with the test.
    user_cluster: Option<PathBuf>,
}

impl Namespace {
    fn name(&self) -> &str {
        &self.name
    }
}

/// A namespace with the Deployments, a fake kubelet (on the test's own control plane), and
/// the operator running over it.
struct Cluster {
    ns: Namespace,
    admin: kube::Client,
    _kubelet: Option<FakeKubelet>,
    /// A client of the user bound to exactly the Role of docs/operator.md.
    restricted: kube::Client,
    operator: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.operator.abort();
        if let Some(path) = self.ns.user_cluster.take() {
            // The test's runtime may be gone: clean up from a thread with a runtime of its own.
            let name = self.ns.name.clone();
            let done = std::thread::spawn(move || delete_user_namespace(&path, &name)).join();
            if done.is_err() {
                eprintln!("could not delete namespace {}", self.ns.name);
            }
        }
    }
}

/// The engine id of the operator [`Cluster::start`] runs.
const FIRST: &str = "operator-under-test";

impl Cluster {
    async fn start(purpose: &str) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let role = role_from_docs(include_str!("../../../docs/operator.md"));
        let (ns, admin, restricted, kubelet) = if let Some(path) = std::env::var_os(KUBECONFIG_ENV)
        {
            let (ns, admin, restricted) =
                on_user_cluster(purpose, PathBuf::from(path), &role).await;
            apply_yaml(&admin, ns.name(), DEPLOYMENTS).await;
            (ns, admin, restricted, None)
        } else {
            let plane = ControlPlane::shared().await;
            plane
                .install_crds(&cutover_operator::crd::crd_yaml().unwrap())
                .await;
            let ns = plane.namespace(purpose).await;
            let admin = ns.admin();
            apply_yaml(&admin, ns.name(), DEPLOYMENTS).await;
            let kubelet = FakeKubelet::start(admin.clone(), ns.name(), "app=checkout");
            let restricted = ns.client(&Caller::RestrictedTo(role)).await;
            let ns = Namespace {
                name: ns.name().to_owned(),
                user_cluster: None,
            };
            (ns, admin, restricted, Some(kubelet))
        };
        let operator = operator(&restricted, ns.name(), FIRST, None);
        Cluster {
            ns,
            admin,
            _kubelet: kubelet,
            restricted,
            operator,
        }
    }

    fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.admin.clone(), self.ns.name())
    }

    /// Waits until the Rollout's status satisfies `done` (for at most [`DEADLINE`]), polling.
    async fn status_until(
        &self,
        what: &str,
        done: impl Fn(&RolloutStatus) -> bool,
    ) -> RolloutStatus {
        let api = self.rollouts();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let status = api.get("checkout").await.ok().and_then(|r| r.status);
            if let Some(status) = &status
                && done(status)
            {
                return status.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last status: {status:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `checkout-v1` and `checkout-v2`'s `spec.replicas`.
    async fn replicas(&self) -> (i32, i32) {
        let api = Api::<Deployment>::namespaced(self.admin.clone(), self.ns.name());
        let of = |d: Deployment| d.spec.and_then(|s| s.replicas).unwrap_or(-1);
        (
            of(api.get("checkout-v1").await.unwrap()),
            of(api.get("checkout-v2").await.unwrap()),
        )
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

    /// The summaries of the rollout's decision log, from the store the command line reads.
    async fn decisions(&self) -> Vec<String> {
        let store = ConfigMapStateStore::new(self.admin.clone(), self.ns.name(), STATE_PREFIX);
        let id = RolloutId::new("checkout-v2").unwrap();
        store
            .records(&id, 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.summary)
            .collect()
    }
}

impl Cluster {
    /// Applies a Rollout `[50 %, pause until promoted, 75 %]` and waits for its pause.
    async fn paused_at_half(&self) {
        apply_yaml(
            &self.admin,
            self.ns.name(),
            &rollout("[ { set_weight: 50 }, { pause: {} }, { set_weight: 75 } ]"),
        )
        .await;
        self.status_until("the pause at 50 %", |s| {
            s.step.as_deref() == Some("1/3 pause") && s.candidate_weight.as_deref() == Some("50%")
        })
        .await;
        assert_eq!(self.replicas().await, (2, 2));
    }

    /// Deletes the Rollout and waits until it is gone.
    async fn delete(&self) {
        let api = self.rollouts();
        api.delete("checkout", &DeleteParams::default())
            .await
            .unwrap();
        eventually("the Rollout to be gone", || async {
            api.get_opt("checkout")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        })
        .await;
    }

    /// The events about the Rollout `checkout`: (type, reason, note).
    async fn events(&self) -> Vec<(String, String, String)> {
        Api::<Event>::namespaced(self.admin.clone(), self.ns.name())
            .list(&ListParams::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("checkout")
                    && e.reporting_controller.as_deref() == Some("cutover-operator")
            })
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits until an event of `reason` about `checkout` was published; returns its type and
    /// note.
    async fn event(&self, reason: &str) -> (String, String) {
        eventually(&format!("an event {reason}"), || async {
            self.events()
                .await
                .into_iter()
                .find(|(_, r, _)| r == reason)
                .map(|(t, _, note)| (t, note))
        })
        .await
    }
}

/// The (status, reason) of each condition, by type.
fn conditions_of(status: &RolloutStatus) -> Vec<(&str, &str, &str)> {
    conditions::TYPES
        .iter()
        .map(|t| {
            let c = conditions::get(status, t).unwrap_or_else(|| panic!("no {t}: {status:#?}"));
            (*t, c.status.as_str(), c.reason.as_str())
        })
        .collect()
}

/// Runs an operator replica over `namespace` as `engine`, with owner leases of `lease_ttl`.
fn operator(
    client: &kube::Client,
    namespace: &str,
    engine: &str,
    lease_ttl: Option<Duration>,
) -> tokio::task::JoinHandle<()> {
    let context = cutover_operator::Context::with_lease_ttl(client.clone(), engine, lease_ttl);
    let namespace = namespace.to_owned();
    tokio::spawn(async move {
        cutover_operator::run_with(Some(&namespace), context).await;
    })
}

/// The admin configuration of the kubeconfig at `path` (its current context).
async fn user_config(path: &Path) -> kube::Config {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("{KUBECONFIG_ENV}={}: {e}", path.display()));
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{KUBECONFIG_ENV}={}: {e}", path.display()))
}

/// On the cluster of the kubeconfig at `path`: the CRD, a new namespace for `purpose`, and in
/// it a ServiceAccount `cutover-operator` bound to `role`. Returns the namespace, an admin
/// client and a client that impersonates the ServiceAccount.
async fn on_user_cluster(
    purpose: &str,
    path: PathBuf,
    role: &serde_json::Value,
) -> (Namespace, kube::Client, kube::Client) {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let config = user_config(&path).await;
    let admin = kube::Client::try_from(config.clone()).unwrap();
    install_crds(&admin, &cutover_operator::crd::crd_yaml().unwrap(), false).await;
    let mut name = format!(
        "cutover-test-{purpose}-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    name.truncate(63);
    let name = name.trim_end_matches('-').to_owned();
    let namespace =
        json!({ "metadata": { "name": name, "labels": { TEST_LABEL.0: TEST_LABEL.1 } } });
    Api::<CoreNamespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(namespace).unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    let ns = Namespace {
        name: name.clone(),
        user_cluster: Some(path),
    };
    let accounts = Api::<ServiceAccount>::namespaced(admin.clone(), &name);
    eventually("the namespace's default ServiceAccount", || async {
        accounts.get_opt("default").await.ok().flatten()
    })
    .await;
    let account = "cutover-operator";
    let mut role = role.clone();
    role["metadata"]["namespace"] = json!(name);
    let role_name = role["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let binding = json!({
        "metadata": { "name": account, "namespace": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name },
        "subjects": [{ "kind": "ServiceAccount", "name": account, "namespace": name }],
    });
    let pp = PostParams::default();
    accounts
        .create(
            &pp,
            &serde_json::from_value(json!({ "metadata": { "name": account } })).unwrap(),
        )
        .await
        .unwrap();
    Api::<Role>::namespaced(admin.clone(), &name)
        .create(&pp, &serde_json::from_value(role).unwrap())
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), &name)
        .create(&pp, &serde_json::from_value(binding).unwrap())
        .await
        .unwrap();
    let mut as_operator = config;
    as_operator.auth_info.impersonate = Some(format!("system:serviceaccount:{name}:{account}"));
    as_operator.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{name}"),
        "system:authenticated".into(),
    ]);
    let restricted = kube::Client::try_from(as_operator).unwrap();
    let rollouts = Api::<Rollout>::namespaced(restricted.clone(), &name);
    eventually("the operator's Role to be bound", || async {
        rollouts.list(&ListParams::default()).await.ok().map(|_| ())
    })
    .await;
    (ns, admin, restricted)
}

/// Deletes namespace `name` of the cluster of the kubeconfig at `path`, its Rollouts' finalizers
/// first (the operator has stopped: nobody else would remove them).
fn delete_user_namespace(path: &Path, name: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let admin = kube::Client::try_from(user_config(path).await).unwrap();
        let rollouts = Api::<Rollout>::namespaced(admin.clone(), name);
        let patch = json!({ "metadata": { "finalizers": null } });
        for rollout in rollouts
            .list(&ListParams::default())
            .await
            .into_iter()
            .flatten()
        {
            let _ = rollouts
                .patch(
                    &rollout.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
        }
        if let Err(e) = Api::<CoreNamespace>::all(admin)
            .delete(name, &DeleteParams::default())
            .await
        {
            eprintln!("deleting namespace {name}: {e}");
        }
    });
}

fn phase(status: &RolloutStatus) -> &str {
    status.phase.as_deref().unwrap_or("")
}

#[tokio::test]
#[ignore = "needs etcd: scripts/test-deps"]
async fn a_rollout_is_run_and_promoted_through_an_annotation() {
    let cluster = Cluster::start("operator-promote").await;
    apply_yaml(
        &cluster.admin,
        cluster.ns.name(),
        &rollout("[ { set_weight: 25 }, { pause: { duration: 1s } }, { set_weight: 50 }, { pause: {} } ]"),
    )
    .await;

    let waiting = cluster
        .status_until("the pause until promoted", |s| {
            s.step.as_deref() == Some("3/4 pause")
        })
        .await;
    assert_eq!(phase(&waiting), "Paused", "{waiting:#?}");
    assert_eq!(
        waiting.candidate_weight.as_deref(),
        Some("50%"),
        "{waiting:#?}"
    );
    assert_eq!(waiting.rollout_id.as_deref(), Some("checkout-v2"));
    assert_eq!(waiting.owner.as_deref(), Some(FIRST));
    assert_eq!(cluster.replicas().await, (2, 2));
    assert_eq!(
        conditions_of(&waiting),
        [
            ("Ready", "False", "Paused"),
            ("Progressing", "False", "Paused"),
            ("Degraded", "False", "AsExpected"),
        ]
    );
    let generation = cluster
        .rollouts()
        .get("checkout")
        .await
        .unwrap()
        .metadata
        .generation;
    assert!(
        waiting
            .conditions
            .iter()
            .all(|c| c.observed_generation == generation && !c.last_transition_time.is_empty()),
        "{waiting:#?}"
    );

    cluster.annotate("promote: dashboards fine", "alice").await;
    let promoted = cluster
        .status_until("promotion", |s| phase(s) == "Promoted")
        .await;
    assert_eq!(
        promoted.candidate_weight.as_deref(),
        Some("100%"),
        "{promoted:#?}"
    );
    assert_eq!(cluster.replicas().await, (0, 4));
    assert_eq!(
        promoted.last_command.as_deref(),
        Some("promote by alice (dashboards fine): queued")
    );
    assert_eq!(
        conditions_of(&promoted),
        [
            ("Ready", "True", "Promoted"),
            ("Progressing", "False", "Promoted"),
            ("Degraded", "False", "AsExpected"),
        ]
    );
    let (kind, note) = cluster.event("CommandQueued").await;
    assert_eq!(
        (kind.as_str(), note.as_str()),
        ("Normal", "promote by alice (dashboards fine): queued")
    );
    let (kind, _) = cluster.event("Promoted").await;
    assert_eq!(kind, "Normal");
    let annotations = cluster
        .rollouts()
        .get("checkout")
        .await
        .unwrap()
        .metadata
        .annotations;
    assert!(
        !annotations
            .unwrap_or_default()
            .contains_key("cutover.dev/command"),
        "the command annotation is taken away"
    );
    let decisions = cluster.decisions().await;
    assert_eq!(
        decisions
            .iter()
            .filter(|d| d.starts_with("command promote by alice (dashboards fine)"))
            .count(),
        1,
        "{decisions:#?}"
    );
}

#[tokio::test]
#[ignore = "needs etcd: scripts/test-deps"]
async fn an_annotated_abort_returns_traffic_to_stable() {
    let cluster = Cluster::start("operator-abort").await;
    cluster.paused_at_half().await;
    let older = cluster.rollouts().get("checkout").await.unwrap();

    cluster.annotate("abort: p99 too high", "bob").await;
    let aborted = cluster
        .status_until("the abort", |s| phase(s) == "Aborted")
        .await;
    assert_eq!(
        aborted.candidate_weight.as_deref(),
        Some("0%"),
        "{aborted:#?}"
    );
    assert!(aborted.step.is_none(), "{aborted:#?}");
    assert_eq!(cluster.replicas().await, (4, 0));
    let decisions = cluster.decisions().await;
    assert!(
        decisions
            .iter()
            .any(|d| d.starts_with("command abort by bob (p99 too high)")),
        "{decisions:#?}"
    );

    assert_eq!(
        aborted.last_command.as_deref(),
        Some("abort by bob (p99 too high): queued")
    );

    // A pass on an older copy of the Rollout (a controller's cache lags behind its own
    // writes) leaves the newer status alone: the API server refuses its write.
    let late = cutover_operator::Context::new(cluster.restricted.clone(), "late-replica");
    cutover_operator::reconcile(std::sync::Arc::new(older), late)
        .await
        .unwrap();
    let now = cluster.rollouts().get("checkout").await.unwrap();
    assert_eq!(
        now.status.and_then(|s| s.last_command),
        aborted.last_command
    );

    // A finished rollout takes no more commands; the status says so.
    cluster.annotate("promote", "carol").await;
    let refused = cluster
        .status_until("the refused command", |s| {
            s.last_command
                .as_deref()
                .is_some_and(|m| m.starts_with("promote by carol: not queued: "))
        })
        .await;
    assert_eq!(phase(&refused), "Aborted");
    let said = refused.last_command.unwrap();
    assert!(said.contains("finished"), "{said}");
}

#[tokio::test]
#[ignore = "needs etcd: scripts/test-deps"]
async fn a_rollout_that_cannot_run_says_why() {
    let cluster = Cluster::start("operator-problems").await;
    let invalid = rollout("[ { set_weight: 150 } ]");
    apply_yaml(&cluster.admin, cluster.ns.name(), &invalid).await;
    let status = cluster
        .status_until("the invalid spec", |s| phase(s) == "Invalid")
        .await;
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("invalid spec: spec.plan: "),
        "{message}"
    );
    assert_eq!(
        conditions_of(&status)[2],
        ("Degraded", "True", "Invalid"),
        "{status:#?}"
    );
    let (kind, note) = cluster.event("InvalidSpec").await;
    assert_eq!(
        (kind.as_str(), note.as_str()),
        ("Warning", message.as_str())
    );

    let missing = rollout("[ { set_weight: 50 } ]").replace("checkout-v2 }", "checkout-v3 }");
    apply_yaml(&cluster.admin, cluster.ns.name(), &missing).await;
    let status = cluster
        .status_until("the missing Deployment", |s| phase(s) == "Pending")
        .await;
    assert_eq!(
        status.message.as_deref(),
        Some("not running on this replica: Deployment `checkout-v3` does not exist"),
        "{status:#?}"
    );
    assert_eq!(
        conditions_of(&status),
        [
            ("Ready", "False", "Stalled"),
            ("Progressing", "False", "Stalled"),
            ("Degraded", "True", "Stalled"),
        ]
    );
    let (kind, _) = cluster.event("NotRunning").await;
    assert_eq!(kind, "Warning");
    assert_eq!(cluster.replicas().await, (1, 1), "nothing was touched");
}

#[tokio::test]
#[ignore = "needs etcd: scripts/test-deps"]
async fn deleting_a_running_rollout_returns_traffic_to_stable_first() {
    let cluster = Cluster::start("operator-delete").await;
    cluster.paused_at_half().await;
    let before = cluster.rollouts().get("checkout").await.unwrap();
    assert_eq!(before.finalizers(), [FINALIZER]);

    cluster.delete().await;
    // The finalizer let it go only once the abort had put traffic back on stable.
    assert_eq!(cluster.replicas().await, (4, 0));
    let store = ConfigMapStateStore::new(cluster.admin.clone(), cluster.ns.name(), STATE_PREFIX);
    let id = RolloutId::new("checkout-v2").unwrap();
    let ended = cutover_operator::status::from_store(&store, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.phase.as_deref(), Some("Aborted"), "{ended:#?}");
    assert_eq!(ended.candidate_weight.as_deref(), Some("0%"), "{ended:#?}");
    let decisions = cluster.decisions().await;
    assert!(
        decisions.iter().any(|d| d.starts_with(
            "command abort by cutover-operator (the Rollout checkout is being deleted)"
        )),
        "{decisions:#?}"
    );
    let (kind, note) = cluster.event("AbortOnDelete").await;
    assert_eq!(kind, "Normal");
    assert!(note.starts_with("aborting checkout-v2"), "{note}");
}

#[tokio::test]
#[ignore = "needs etcd: scripts/test-deps"]
async fn deleting_an_ended_rollout_leaves_traffic_where_it_is() {
    let cluster = Cluster::start("operator-delete-ended").await;
    apply_yaml(
        &cluster.admin,
        cluster.ns.name(),
        &rollout("[ { set_weight: 50 } ]"),
    )
    .await;
    cluster
        .status_until("promotion", |s| phase(s) == "Promoted")
        .await;
    assert_eq!(cluster.replicas().await, (0, 4));
    cluster.delete().await;
    assert_eq!(
        cluster.replicas().await,
        (0, 4),
        "a promoted rollout stays promoted"
    );
    assert!(
        !cluster
            .decisions()
            .await
            .iter()
            .any(|d| d.starts_with("command abort")),
        "no abort was sent"
    );
}

#[tokio::test]
#[ignore = "needs etcd: scripts/test-deps"]
async fn two_replicas_one_owner_and_a_handover_when_it_stops() {
    let mut cluster = Cluster::start("operator-handover").await;
    // The first replica, with short leases, runs the rollout to its first pause.
    cluster.operator.abort();
    let ttl = Some(Duration::from_secs(3));
    cluster.operator = operator(&cluster.restricted, cluster.ns.name(), "replica-a", ttl);
    apply_yaml(
        &cluster.admin,
        cluster.ns.name(),
        &rollout("[ { set_weight: 25 }, { pause: {} }, { set_weight: 50 }, { pause: {} } ]"),
    )
    .await;
    let first = cluster
        .status_until("the first pause", |s| {
            s.step.as_deref() == Some("1/4 pause")
        })
        .await;
    assert_eq!(first.owner.as_deref(), Some("replica-a"), "{first:#?}");

    // A second replica joins: it leaves the rollout to its owner. Every status seen until
    // the next pause names replica-a and no replica says it cannot run the rollout.
    let b = operator(&cluster.restricted, cluster.ns.name(), "replica-b", ttl);
    cluster.annotate("resume", "alice").await;
    let api = cluster.rollouts();
    let seen = std::sync::Mutex::new(Vec::new());
    eventually("the second pause", || async {
        let status = api.get("checkout").await.ok()?.status?;
        seen.lock()
            .unwrap()
            .push((status.owner.clone(), status.message.clone()));
        (status.step.as_deref() == Some("3/4 pause")).then_some(())
    })
    .await;
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.iter()
            .all(|(owner, message)| owner.as_deref() == Some("replica-a")
                && !message.as_deref().unwrap_or("").contains("not running")),
        "{seen:#?}"
    );
    assert_eq!(cluster.replicas().await, (2, 2));

    // replica-a stops without releasing its lease (as a crash would): once the lease has
    // expired, replica-b takes the rollout over where the store says it is.
    cluster.operator.abort();
    let taken = cluster
        .status_until("replica-b to own the rollout", |s| {
            s.owner.as_deref() == Some("replica-b")
        })
        .await;
    assert_eq!(taken.step.as_deref(), Some("3/4 pause"), "{taken:#?}");
    assert_eq!(taken.candidate_weight.as_deref(), Some("50%"), "{taken:#?}");
    assert_eq!(cluster.replicas().await, (2, 2));
    cluster.annotate("promote", "alice").await;
    // Only replica-b runs: the promotion is its doing.
    cluster
        .status_until("promotion by replica-b", |s| phase(s) == "Promoted")
        .await;
    assert_eq!(cluster.replicas().await, (0, 4));
    b.abort();
}

#[tokio::test]
#[ignore = "needs etcd: scripts/test-deps"]
async fn a_new_candidate_aborts_the_running_rollout_then_starts_its_own() {
    let cluster = Cluster::start("operator-new-candidate").await;
    cluster.paused_at_half().await;

    // v3 (built into the same Deployment) replaces v2 while v2's rollout waits at 50 %.
    let patch =
        json!({ "spec": { "candidate": { "revision": "v3", "deployment": "checkout-v2" } } });
    cluster
        .rollouts()
        .patch("checkout", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let next = cluster
        .status_until("v3's rollout at its pause", |s| {
            s.rollout_id.as_deref() == Some("checkout-v3") && s.step.as_deref() == Some("1/3 pause")
        })
        .await;
    assert_eq!(next.candidate_weight.as_deref(), Some("50%"), "{next:#?}");
    assert_eq!(cluster.replicas().await, (2, 2));

    let store = ConfigMapStateStore::new(cluster.admin.clone(), cluster.ns.name(), STATE_PREFIX);
    let old = RolloutId::new("checkout-v2").unwrap();
    let ended = cutover_operator::status::from_store(&store, &old)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.phase.as_deref(), Some("Aborted"), "{ended:#?}");
    assert_eq!(ended.candidate_weight.as_deref(), Some("0%"), "{ended:#?}");
    let decisions = cluster.decisions().await;
    assert!(
        decisions
            .iter()
            .any(|d| d
                .starts_with("command abort by cutover-operator (spec.candidate changed to v3)")),
        "{decisions:#?}"
    );
}
