//! Blue-green and canary rollouts driven by the engine through the Kubernetes providers, on
//! the fake client and paused time, with a stand-in Deployment controller; and injected
//! 500 / 403 / 409 on the router's writes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    NS, atomic_selectors, builder, deployment, failing, http_route, pod, ratio_router, rev,
    selector, settle, two_deployments,
};
use cutover_core::{
    BlueGreen, Canary, CanaryStep, ErrorKind, Outcome, Plan, ProviderError, RetryPolicy, Rolling,
    Rollout, RolloutBuilder, RolloutError, StopReason, TrafficRouter, Verdict,
};
use cutover_kubernetes::{
    ConfigMapStateStore, DeploymentWorkload, HttpRouteRouter, PodProbe, ServiceSelectorRouter,
};
use cutover_test::ScriptedAnalysis;
use gateway_api::apis::standard::httproutes::HttpRoute;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube_fake_client::{Error as FakeError, interceptor};

fn plan(strategy: impl Into<cutover_core::Strategy>) -> Plan {
    Plan::new(strategy).with_retry(RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    })
}

/// Plays the Deployment controller: every second, every Deployment's status catches up.
fn controller(client: &kube::Client) -> tokio::task::JoinHandle<()> {
    let api = Api::<Deployment>::namespaced(client.clone(), NS);
    tokio::spawn(async move {
        loop {
            for d in api
                .list(&kube::api::ListParams::default())
                .await
                .unwrap()
                .items
            {
                settle(&api, d.metadata.name.as_deref().unwrap()).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().unwrap().replicas.unwrap()
}

fn canary() -> Canary {
    Canary::new([
        CanaryStep::set_weight(10).unwrap(),
        CanaryStep::pause(Duration::from_mins(1)),
        CanaryStep::Analysis(cutover_core::AnalysisRun::new("errors")),
        CanaryStep::set_weight(50).unwrap(),
        CanaryStep::pause(Duration::from_mins(1)),
    ])
}

fn http_router(client: kube::Client) -> HttpRouteRouter {
    HttpRouteRouter::new(client, NS, "web", "primary")
        .backend(rev("v1"), "web-v1", Some(8080))
        .backend(rev("v2"), "web-v2", Some(8080))
}

/// Runs the canary through `router`; the analysis answers `verdict`.
async fn run_canary(
    router: impl TrafficRouter + 'static,
    verdict: Verdict,
) -> Result<Outcome, RolloutError> {
    canary_builder(router, verdict).build().unwrap().run().await
}

fn canary_builder(router: impl TrafficRouter + 'static, verdict: Verdict) -> RolloutBuilder {
    Rollout::builder("web-canary", plan(canary()))
        .revisions("v1", "v2")
        .router(router)
        .analysis("errors", ScriptedAnalysis::verdicts([verdict]))
}

/// The provider error a failed rollout returned.
fn provider_error(err: &RolloutError) -> &ProviderError {
    let RolloutError::Provider { source, .. } = err else {
        panic!("expected a provider error, got {err:?}");
    };
    source
}

/// The weights of the managed rule of the route `web`, by Service.
async fn weights(client: &kube::Client) -> Vec<(String, Option<i32>)> {
    let route = Api::<HttpRoute>::namespaced(client.clone(), NS)
        .get("web")
        .await
        .unwrap();
    route.spec.rules.as_ref().unwrap()[1]
        .backend_refs
        .iter()
        .flatten()
        .map(|b| (b.name.clone(), b.weight))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn blue_green_switches_the_service_and_retires_the_old_deployment() {
    // The Service's selector is atomic here, as on a real API server, and owned by kubectl.
    let client = atomic_selectors(
        builder()
            .with_object(deployment("web-v1", "v1", 3))
            .with_object(deployment("web-v2", "v2", 0))
            .with_object(pod("web-v2-a", "v2", true)),
    )
    .await;
    selector::apply_service(&client, NS, "kubectl", &[(selector::KEY, "v1")]).await;
    let controller = controller(&client);
    let blue_green = BlueGreen {
        replicas: Some(3),
        ..BlueGreen::default()
    };
    let outcome = Rollout::builder("web-bg", plan(blue_green))
        .revisions("v1", "v2")
        .router(ServiceSelectorRouter::new(
            client.clone(),
            NS,
            "web",
            "cutover.dev/revision",
        ))
        .workload(
            DeploymentWorkload::new(client.clone(), NS)
                .revision(rev("v1"), "web-v1")
                .revision(rev("v2"), "web-v2"),
        )
        .health_probe(PodProbe::new(client.clone(), NS).revision(rev("v2"), "version=v2"))
        .state_store(ConfigMapStateStore::new(client.clone(), NS, "rollout-"))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    controller.abort();
    assert_eq!(outcome, Outcome::Promoted);

    let svc = Api::<Service>::namespaced(client.clone(), NS)
        .get("web")
        .await
        .unwrap();
    let selector = svc.spec.unwrap().selector.unwrap();
    assert_eq!(selector["cutover.dev/revision"], "v2");
    assert_eq!(selector["app"], "web");
    let deployments = Api::<Deployment>::namespaced(client, NS);
    assert_eq!(replicas(&deployments.get("web-v2").await.unwrap()), 3);
    assert_eq!(replicas(&deployments.get("web-v1").await.unwrap()), 0);
}

#[tokio::test(start_paused = true)]
async fn rolling_strategy_moves_every_replica_across_two_deployments() {
    let client = builder()
        .with_object(deployment("web-v1", "v1", 4))
        .with_object(deployment("web-v2", "v2", 0))
        .build()
        .await
        .unwrap();
    let controller = controller(&client);
    let outcome = Rollout::builder("web-rolling", plan(Rolling::new(4)))
        .revisions("v1", "v2")
        .workload(
            DeploymentWorkload::new(client.clone(), NS)
                .revision(rev("v1"), "web-v1")
                .revision(rev("v2"), "web-v2"),
        )
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    controller.abort();
    assert_eq!(outcome, Outcome::Promoted);
    let deployments = Api::<Deployment>::namespaced(client, NS);
    assert_eq!(replicas(&deployments.get("web-v2").await.unwrap()), 4);
    assert_eq!(replicas(&deployments.get("web-v1").await.unwrap()), 0);
}

#[tokio::test(start_paused = true)]
async fn canary_on_an_http_route_promotes_to_the_candidate() {
    let client = builder().with_object(http_route()).build().await.unwrap();
    let outcome = run_canary(http_router(client.clone()), Verdict::Pass)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Promoted);
    assert_eq!(
        weights(&client).await,
        [
            ("web-v1".to_owned(), Some(0)),
            ("web-v2".to_owned(), Some(10_000))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn failing_canary_on_an_http_route_ends_all_on_stable() {
    let client = builder().with_object(http_route()).build().await.unwrap();
    let outcome = run_canary(http_router(client.clone()), Verdict::Fail)
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack(StopReason::AnalysisFailed { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(
        weights(&client).await,
        [
            ("web-v1".to_owned(), Some(10_000)),
            ("web-v2".to_owned(), Some(0))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn canary_by_replica_ratio_ends_with_every_replica_on_the_candidate() {
    let client = two_deployments().await;
    let outcome = run_canary(ratio_router(client.clone(), 10), Verdict::Pass)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Promoted);
    let deployments = Api::<Deployment>::namespaced(client, NS);
    assert_eq!(replicas(&deployments.get("web-v2").await.unwrap()), 10);
    assert_eq!(replicas(&deployments.get("web-v1").await.unwrap()), 0);
}

#[tokio::test(start_paused = true)]
async fn replica_ratio_is_refused_at_build_time_for_splits_it_cannot_reach() {
    let client = builder().build().await.unwrap();
    let err = canary_builder(ratio_router(client, 4), Verdict::Pass)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("10"), "{err}");
}

/// Counts patches of HTTPRoutes and fails the first `fail` of them with a 500.
fn flaky_routes(fail: usize) -> (interceptor::Funcs, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let funcs = interceptor::Funcs::new().patch(move |ctx| {
        if ctx.patch["kind"] == "HTTPRoute" && seen.fetch_add(1, Ordering::SeqCst) < fail {
            return Err(FakeError::Internal("etcdserver: request timed out".into()));
        }
        Ok(None)
    });
    (funcs, calls)
}

#[tokio::test(start_paused = true)]
async fn injected_500s_are_retried_and_the_canary_still_promotes() {
    let (funcs, calls) = flaky_routes(2);
    let client = builder()
        .with_object(http_route())
        .with_interceptor_funcs(funcs)
        .build()
        .await
        .unwrap();
    let outcome = run_canary(http_router(client), Verdict::Pass)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Promoted);
    // Three splits (10 %, 50 %, 100 %), the first one tried three times.
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn injected_403_fails_the_rollout_with_the_missing_permission() {
    let base = builder().with_object(http_route()).build().await.unwrap();
    let denied = failing(base.clone(), 403, |m, path| {
        m == http::Method::PATCH && path.contains("httproutes")
    });
    let err = run_canary(http_router(denied), Verdict::Pass)
        .await
        .unwrap_err();
    let source = provider_error(&err);
    assert_eq!(source.kind(), ErrorKind::Permanent);
    assert!(
        source.message().contains(
            "grant the RBAC verb `patch` on `httproutes.gateway.networking.k8s.io` in namespace `prod`"
        ),
        "{source}"
    );
    assert_eq!(
        weights(&base).await,
        [("web-v1".to_owned(), Some(100))],
        "untouched"
    );
}

#[tokio::test(start_paused = true)]
async fn a_field_manager_conflict_fails_the_rollout_without_overwriting() {
    // Helm applied `web-v2` with `replicas` in its manifest: cutover must not take them.
    let client = two_deployments().await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), NS);
    let manifest = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web-v2" },
        "spec": { "replicas": 0 },
    });
    deployments
        .patch(
            "web-v2",
            &kube::api::PatchParams::apply("helm"),
            &kube::api::Patch::Apply(&manifest),
        )
        .await
        .unwrap();
    let err = run_canary(ratio_router(client.clone(), 10), Verdict::Pass)
        .await
        .unwrap_err();
    let source = provider_error(&err);
    assert_eq!(source.kind(), ErrorKind::Permanent);
    assert!(
        source.message().contains("another field manager")
            && source.message().contains("deployments.apps prod/web-v2"),
        "{source}"
    );
    assert!(source.chain().contains("helm"), "{}", source.chain());
    assert_eq!(
        replicas(&deployments.get("web-v2").await.unwrap()),
        0,
        "untouched"
    );
}
