//! The rolling update driver for a single Deployment, on the fake client and paused time, with
//! a stand-in controller that rolls the pods (or fails to).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{NS, apply_as, builder, deployment, template};
use cutover_kubernetes::{RollingUpdate, RolloutStatus, UpdateError};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;

fn image(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

/// A controller that moves one replica to the current template per second; pods of an image
/// ending in `:broken` never become available.
fn controller(client: &kube::Client) -> tokio::task::JoinHandle<()> {
    let api = Api::<Deployment>::namespaced(client.clone(), NS);
    tokio::spawn(async move {
        let mut rolled_image = String::new();
        let mut updated = 0;
        loop {
            let mut d = api.get("web").await.unwrap();
            let desired = d.spec.as_ref().unwrap().replicas.unwrap();
            let current = image(&d);
            if current != rolled_image {
                rolled_image = current.clone();
                updated = 0;
            }
            updated = (updated + 1).min(desired);
            let available = if current.ends_with(":broken") {
                0
            } else {
                updated
            };
            d.status = Some(DeploymentStatus {
                observed_generation: d.metadata.generation,
                replicas: Some(desired + i32::from(updated < desired)),
                updated_replicas: Some(updated),
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..DeploymentStatus::default()
            });
            api.replace_status("web", &kube::api::PostParams::default(), &d)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// The Deployment `web`.
async fn web(client: kube::Client) -> Deployment {
    Api::<Deployment>::namespaced(client, NS)
        .get("web")
        .await
        .unwrap()
}

/// Rolls `web` to `image`, one pod at a time, polling every second.
async fn roll_to(client: &kube::Client, image: &str) -> Result<(), UpdateError> {
    RollingUpdate::new(client.clone(), NS, "web")
        .poll_interval(Duration::from_secs(1))
        .run(
            template(image, "v1"),
            IntOrString::Int(1),
            IntOrString::Int(0),
        )
        .await
}

#[tokio::test(start_paused = true)]
async fn a_rolling_update_completes_and_sets_the_strategy() {
    let client = builder()
        .with_object(deployment("web", "v1", 4))
        .build()
        .await
        .unwrap();
    let controller = controller(&client);
    let driver =
        RollingUpdate::new(client.clone(), NS, "web").poll_interval(Duration::from_secs(1));
    driver
        .run(
            template("web:v2", "v1"),
            IntOrString::Int(1),
            IntOrString::String("25%".into()),
        )
        .await
        .unwrap();
    assert_eq!(driver.status().await.unwrap(), RolloutStatus::Complete);
    controller.abort();
    let d = web(client).await;
    assert_eq!(image(&d), "web:v2");
    let rolling = d.spec.unwrap().strategy.unwrap().rolling_update.unwrap();
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
    assert_eq!(
        rolling.max_unavailable,
        Some(IntOrString::String("25%".into()))
    );
}

/// The Deployment's manifest was applied by kubectl, who owns its template; someone scales it
/// between the driver's read and its write. The update still goes through (a server-side apply
/// would conflict with kubectl), after one retry from a new read, and the scale is kept.
#[tokio::test(start_paused = true)]
async fn a_deployment_applied_by_kubectl_is_updated_and_a_concurrent_scale_is_kept() {
    let fake = builder().build().await.unwrap();
    let d = deployment("web", "v1", 4);
    let mut manifest = serde_json::to_value(&d).unwrap();
    manifest["status"] = serde_json::Value::Null;
    apply_as(
        &Api::<Deployment>::namespaced(fake.clone(), NS),
        "kubectl",
        &manifest,
    )
    .await;
    let writes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&writes);
    let client = cutover_kube::testing::edited_before(
        fake,
        NS,
        move |method, path| {
            let write = method == http::Method::PATCH && path.ends_with("/deployments/web");
            if write {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            write
        },
        serde_json::json!({ "spec": { "replicas": 5 } }),
    );
    let controller = controller(&client);
    roll_to(&client, "web:v2").await.unwrap();
    controller.abort();
    let d = web(client).await;
    assert_eq!(image(&d), "web:v2");
    assert_eq!(
        d.spec.unwrap().replicas,
        Some(5),
        "the concurrent scale survived"
    );
    assert_eq!(writes.load(Ordering::SeqCst), 2, "one conflict, one retry");
}

#[tokio::test(start_paused = true)]
async fn no_progress_within_the_deadline_restores_the_previous_template() {
    let client = builder()
        .with_object(deployment("web", "v1", 3))
        .build()
        .await
        .unwrap();
    let controller = controller(&client);
    let started = tokio::time::Instant::now();
    let err = RollingUpdate::new(client.clone(), NS, "web")
        .poll_interval(Duration::from_secs(1))
        .progress_deadline(Duration::from_secs(30))
        .run(
            template("web:broken", "v1"),
            IntOrString::Int(1),
            IntOrString::Int(0),
        )
        .await
        .unwrap_err();
    controller.abort();
    let UpdateError::RolledBack { reason, .. } = &err else {
        panic!("expected a rollback, got {err:?}");
    };
    assert!(reason.contains("no progress for 30s"), "{reason}");
    assert!(
        reason.contains("updated replicas are available"),
        "{reason}"
    );
    let d = Api::<Deployment>::namespaced(client, NS)
        .get("web")
        .await
        .unwrap();
    assert_eq!(image(&d), "web:v1", "the previous template is back");
    // Three replicas updated in 3 s, then 30 s without progress, then the rollback.
    assert!(
        started.elapsed() >= Duration::from_secs(33),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn status_follows_kubectl_rollout_status() {
    let client = builder()
        .with_object(deployment("web", "v1", 2))
        .build()
        .await
        .unwrap();
    let driver = RollingUpdate::new(client.clone(), NS, "web");
    assert_eq!(driver.status().await.unwrap(), RolloutStatus::Complete);
    let api = Api::<Deployment>::namespaced(client, NS);
    let mut d = api.get("web").await.unwrap();
    d.spec.as_mut().unwrap().replicas = Some(3);
    api.replace("web", &kube::api::PostParams::default(), &d)
        .await
        .unwrap();
    let status = driver.status().await.unwrap();
    assert_eq!(
        status,
        RolloutStatus::Waiting("waiting for deployment spec update to be observed".into())
    );
    let mut d = api.get("web").await.unwrap();
    d.status = Some(DeploymentStatus {
        observed_generation: d.metadata.generation,
        conditions: Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            ..DeploymentCondition::default()
        }]),
        ..DeploymentStatus::default()
    });
    api.replace_status("web", &kube::api::PostParams::default(), &d)
        .await
        .unwrap();
    let status = driver.status().await.unwrap();
    assert!(matches!(status, RolloutStatus::Failed(_)), "{status}");
}
