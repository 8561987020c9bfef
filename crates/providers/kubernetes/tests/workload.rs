//! `DeploymentWorkload` and `PodProbe` on the fake client, with injected errors.

mod common;

use std::time::Duration;

use common::{NS, builder, deployment, failing, pod, rev, settle, waiting_pod};
use cutover_core::{ErrorKind, Health, HealthProbe, ReplicaStatus, Workload};
use cutover_kubernetes::{DeploymentWorkload, PodProbe};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

fn workload(client: kube::Client) -> DeploymentWorkload {
    DeploymentWorkload::new(client, NS)
        .revision(rev("v1"), "web-v1")
        .revision(rev("v2"), "web-v2")
}

#[tokio::test]
async fn scale_is_progressing_until_the_status_catches_up() {
    let client = builder()
        .with_object(deployment("web-v2", "v2", 1))
        .build()
        .await
        .unwrap();
    let workload = workload(client.clone());
    let ready = ReplicaStatus {
        desired: 1,
        updated: 1,
        ready: 1,
        available: 1,
    };
    assert_eq!(workload.status(&rev("v2")).await.unwrap(), ready);

    workload.scale(&rev("v2"), 4).await.unwrap();
    let lagging = workload.status(&rev("v2")).await.unwrap();
    // The controller has not observed the new generation: old counts must not count.
    assert_eq!(
        lagging,
        ReplicaStatus {
            desired: 4,
            updated: 0,
            ready: 0,
            available: 0
        }
    );
    assert!(!lagging.is_ready());

    settle(&Api::<Deployment>::namespaced(client, NS), "web-v2").await;
    let status = workload.status(&rev("v2")).await.unwrap();
    assert!(status.is_ready(), "{status:?}");
    assert_eq!(status.desired, 4);
}

#[tokio::test]
async fn unknown_revisions_and_missing_deployments_are_permanent_and_named() {
    let client = builder().build().await.unwrap();
    let workload = workload(client);
    let err = workload.scale(&rev("v3"), 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("`v3`"), "{err}");
    let err = workload.scale(&rev("v2"), 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message().contains("deployments.apps prod/web-v2"),
        "{err}"
    );
}

#[tokio::test]
async fn injected_403_429_and_500_take_the_right_kinds() {
    let base = builder()
        .with_object(deployment("web-v2", "v2", 1))
        .build()
        .await
        .unwrap();
    let denied = failing(base.clone(), 403, |m, _| m == http::Method::PATCH);
    let err = workload(denied).scale(&rev("v2"), 2).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message()
            .contains("grant the RBAC verb `patch` on `deployments.apps` in namespace `prod`"),
        "{err}"
    );

    let throttled = failing(base.clone(), 429, |_, _| true);
    let err = workload(throttled).status(&rev("v2")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttled);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    let broken = failing(base, 500, |_, _| true);
    let err = workload(broken).status(&rev("v2")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
}

fn probe(client: kube::Client) -> PodProbe {
    PodProbe::new(client, NS).revision(rev("v2"), "app=web,version=v2")
}

#[tokio::test]
async fn probe_counts_ready_pods_of_the_revision_only() {
    let client = builder()
        .with_object(pod("web-v2-a", "v2", true))
        .with_object(pod("web-v2-b", "v2", false))
        .with_object(waiting_pod("web-v1-a", "v1", "CrashLoopBackOff"))
        .build()
        .await
        .unwrap();
    let health = probe(client.clone()).check(&rev("v2")).await.unwrap();
    assert_eq!(health, Health::progressing("1/2 pods ready"));

    let client = builder()
        .with_object(pod("web-v2-a", "v2", true))
        .with_object(pod("web-v2-b", "v2", true))
        .build()
        .await
        .unwrap();
    assert_eq!(
        probe(client).check(&rev("v2")).await.unwrap(),
        Health::Ready
    );

    let empty = builder().build().await.unwrap();
    let health = probe(empty).check(&rev("v2")).await.unwrap();
    assert!(matches!(health, Health::Progressing { .. }), "{health}");
}

#[tokio::test]
async fn probe_fails_on_crash_loops_pull_errors_and_restarts_naming_the_pod() {
    for reason in ["CrashLoopBackOff", "ImagePullBackOff"] {
        let client = builder()
            .with_object(pod("web-v2-a", "v2", true))
            .with_object(waiting_pod("web-v2-b", "v2", reason))
            .build()
            .await
            .unwrap();
        let health = probe(client).check(&rev("v2")).await.unwrap();
        let Health::Failed { reason: why } = &health else {
            panic!("{reason}: expected Failed, got {health}");
        };
        assert!(
            why.contains("pod web-v2-b container web in ") && why.contains(reason),
            "{why}"
        );
    }

    let mut restarting = pod("web-v2-c", "v2", true);
    restarting
        .status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0]
        .restart_count = 3;
    let client = builder().with_object(restarting).build().await.unwrap();
    assert_eq!(
        probe(client.clone()).check(&rev("v2")).await.unwrap(),
        Health::Ready
    );
    let health = probe(client)
        .max_restarts(3)
        .check(&rev("v2"))
        .await
        .unwrap();
    assert_eq!(
        health,
        Health::failed("pod web-v2-c container web restarted 3 times")
    );
}
