//! A canary on a real Kubernetes cluster, without a mesh: two Deployments behind one Service,
//! traffic shifted by replica counts, pod health checked, state in a ConfigMap, and the rollout
//! owned through a Lease.
//!
//! ```text
//! KUBECONFIG=~/.kube/config cargo run --example kubernetes_canary --features kubernetes
//! KUBECONFIG=~/.kube/config CUTOVER_NAMESPACE=demo cargo run --example kubernetes_canary --features kubernetes -- --pause 5
//! ```
//!
//! Without `KUBECONFIG` it explains what it needs and exits 0. With a cluster it creates, in
//! the namespace `CUTOVER_NAMESPACE` (default `default`), the Deployments
//! `cutover-example-v1` / `-v2` (image `registry.k8s.io/pause:3.10`), the Service
//! `cutover-example`, then runs the canary 25 % -> 50 % -> 100 % with pauses of `--pause`
//! seconds (20 by default: about a minute in all), checks that every replica runs v2, and
//! deletes everything it created. It exits non-zero whenever it could not do that: no cluster
//! reached, a permission missing, pods that never become ready, a rollback. It needs the RBAC
//! Role from the `cutover-kubernetes` docs plus `create`/`delete` on those objects for setup
//! and cleanup.
//!
//! CI runs it against a Kubernetes 1.24 control plane without a kubelet, with a fake kubelet
//! (`cutover-kube`'s `control_plane kubelet`) marking the pods ready.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cutover::kubernetes::k8s_openapi::api::apps::v1::Deployment;
use cutover::kubernetes::k8s_openapi::api::coordination::v1::Lease;
use cutover::kubernetes::k8s_openapi::api::core::v1::{ConfigMap, Service};
use cutover::kubernetes::kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use cutover::kubernetes::kube::{self, Client};
use cutover::kubernetes::{
    ConfigMapStateStore, LeaseLock, LeasedStateStore, PodProbe, ROLLOUT_LABEL, ReplicaRatioRouter,
};
use cutover::{Canary, CanaryStep, Clock as _, Outcome, Plan, Rollout, RolloutId, TokioClock};
use cutover_examples::{chain, pause_arg, print_progress};
use serde_json::json;

const APP: &str = "cutover-example";
/// The prefix of the names of the rollout's state objects.
const STATE_PREFIX: &str = "cutover-state-";

fn main() -> ExitCode {
    if std::env::var_os("KUBECONFIG").is_none() {
        println!(
            "kubernetes_canary needs a Kubernetes cluster: set KUBECONFIG to a kubeconfig whose \
             current context may create Deployments, Services, ConfigMaps and Leases in \
             CUTOVER_NAMESPACE (default `default`), e.g.\n\
             \n    kind create cluster && KUBECONFIG=~/.kube/config cargo run --example kubernetes_canary --features kubernetes\n\
             \nNo cluster is configured, so there is nothing to do."
        );
        return ExitCode::SUCCESS;
    }
    let pause = match pause_arg(Duration::from_secs(20)) {
        Ok(pause) => pause,
        Err(e) => {
            eprintln!("kubernetes_canary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(pause))
}

async fn run(pause: Duration) -> ExitCode {
    let namespace = std::env::var("CUTOVER_NAMESPACE").unwrap_or_else(|_| "default".to_owned());
    let client = match Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!(
                "KUBECONFIG is set but no client could be built: {}",
                chain(&e)
            );
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = client.apiserver_version().await {
        eprintln!("the cluster in KUBECONFIG cannot be reached: {}", chain(&e));
        return ExitCode::FAILURE;
    }
    println!("cluster reached; namespace `{namespace}`");
    if let Err(e) = set_up(&client, &namespace).await {
        eprintln!("setting up the example objects failed: {}", chain(&e));
        clean_up(&client, &namespace).await;
        return ExitCode::FAILURE;
    }
    let outcome = canary(&client, &namespace, pause).await;
    let replicas = replicas(&client, &namespace).await;
    clean_up(&client, &namespace).await;
    match outcome {
        Ok(Outcome::Promoted) if replicas == Ok((0, 4)) => {
            println!("PROMOTED: every replica runs v2");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Promoted) => {
            eprintln!(
                "promoted, but the Deployments do not show it: (v1, v2) replicas {replicas:?}"
            );
            ExitCode::FAILURE
        }
        Ok(other) => {
            println!("not promoted: {other}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("rollout failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The two Deployments (without `replicas`, which cutover owns) and the Service over both.
async fn set_up(client: &Client, namespace: &str) -> Result<(), kube::Error> {
    let manager = PatchParams::apply("cutover-example");
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    for version in ["v1", "v2"] {
        let name = format!("{APP}-{version}");
        let labels = json!({ "app": APP, "version": version });
        let manifest = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": name, "labels": labels },
            "spec": {
                "selector": { "matchLabels": labels },
                "template": {
                    "metadata": { "labels": labels },
                    "spec": { "containers": [
                        { "name": "app", "image": "registry.k8s.io/pause:3.10" }
                    ] },
                },
            },
        });
        deployments
            .patch(&name, &manager, &Patch::Apply(&manifest))
            .await?;
    }
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": APP },
        "spec": { "selector": { "app": APP }, "ports": [ { "port": 80 } ] },
    });
    Api::<Service>::namespaced(client.clone(), namespace)
        .patch(APP, &manager, &Patch::Apply(&service))
        .await?;
    Ok(())
}

/// The replicas of v1 and v2 as their Deployments say.
async fn replicas(client: &Client, namespace: &str) -> Result<(i32, i32), String> {
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    let mut counts = [0; 2];
    for (count, version) in counts.iter_mut().zip(["v1", "v2"]) {
        let deployment = deployments
            .get(&format!("{APP}-{version}"))
            .await
            .map_err(|e| chain(&e))?;
        *count = deployment.spec.and_then(|s| s.replicas).unwrap_or(1);
    }
    Ok((counts[0], counts[1]))
}

async fn canary(client: &Client, namespace: &str, pause: Duration) -> Result<Outcome, String> {
    let id: RolloutId = APP.parse().map_err(|e| format!("{e}"))?;
    let identity = format!("example-{}", std::process::id());
    let lock = Arc::new(LeaseLock::for_rollout(
        client.clone(),
        namespace,
        &id,
        &identity,
    ));
    lock.acquire().await.map_err(|e| e.chain())?;
    let _renewal = lock.spawn_renewal();
    println!("lease `{}` held by `{identity}`", lock.lease_name());

    let plan = Plan::new(Canary::new([
        CanaryStep::set_weight(25).map_err(|e| e.to_string())?,
        CanaryStep::pause(pause),
        CanaryStep::set_weight(50).map_err(|e| e.to_string())?,
        CanaryStep::pause(pause),
    ]));
    let store = LeasedStateStore::new(
        ConfigMapStateStore::new(client.clone(), namespace, STATE_PREFIX),
        Arc::clone(&lock),
    );
    let router = ReplicaRatioRouter::new(client.clone(), namespace, 4)
        .revision(
            "v1".parse().map_err(|e| format!("{e}"))?,
            format!("{APP}-v1"),
        )
        .revision(
            "v2".parse().map_err(|e| format!("{e}"))?,
            format!("{APP}-v2"),
        );
    let probe = PodProbe::new(client.clone(), namespace)
        .revision(
            "v1".parse().map_err(|e| format!("{e}"))?,
            format!("app={APP},version=v1"),
        )
        .revision(
            "v2".parse().map_err(|e| format!("{e}"))?,
            format!("app={APP},version=v2"),
        );
    let clock = TokioClock::new();
    let rollout = Rollout::builder(id.as_str(), plan)
        .revisions("v1", "v2")
        .router(router)
        .health_probe(probe)
        .state_store(store)
        .clock(clock)
        .build()
        .map_err(|e| chain(&e))?;
    let progress = print_progress(&rollout, clock.now());
    let outcome = rollout.run().await.map_err(|e| chain(&e));
    let _ = progress.await;
    if let Err(e) = lock.release().await {
        eprintln!("releasing the lease failed: {}", e.chain());
    }
    outcome
}

/// Deletes what the example created; objects already gone are fine.
async fn clean_up(client: &Client, namespace: &str) {
    let params = DeleteParams::default();
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    for version in ["v1", "v2"] {
        let _ = deployments
            .delete(&format!("{APP}-{version}"), &params)
            .await;
    }
    let _ = Api::<Service>::namespaced(client.clone(), namespace)
        .delete(APP, &params)
        .await;
    // The store's objects (state, log, inbox, owner lease) carry the rollout's label.
    let store = ConfigMapStateStore::new(client.clone(), namespace, STATE_PREFIX);
    let rollout = APP
        .parse()
        .map(|id| store.rollout_label(&id))
        .unwrap_or_default();
    let of_rollout = ListParams::default().labels(&format!("{ROLLOUT_LABEL}={rollout}"));
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let leases = Api::<Lease>::namespaced(client.clone(), namespace);
    if let Ok(list) = configmaps.list_metadata(&of_rollout).await {
        for name in list.items.into_iter().filter_map(|cm| cm.metadata.name) {
            let _ = configmaps.delete(&name, &params).await;
        }
    }
    if let Ok(list) = leases.list_metadata(&of_rollout).await {
        for name in list.items.into_iter().filter_map(|l| l.metadata.name) {
            let _ = leases.delete(&name, &params).await;
        }
    }
    let _ = leases.delete(&format!("cutover-{APP}"), &params).await;
    println!("cleaned up");
}
