//! Canary rollouts driven by the engine through the Istio router, on the fake client with
//! every write validated against the Istio CRDs and on paused time: 1 % -> 10 % -> 50 % ->
//! 100 % with a header route and a mirror, a rollback, a genuine resourceVersion conflict, and
//! injected 500 / 403 on the router's writes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    NS, Written, builder, failing, http, named, rev, router, swagger, validating_client,
    virtual_service, weights,
};
use cutover_core::{
    AnalysisRun, Canary, CanaryStep, ErrorKind, HeaderRoute, Mirror, Outcome, Plan, RetryPolicy,
    Rollout, RolloutError, RouteMatch, StopReason, Verdict, Weight,
};
use cutover_istio::{Destination, IstioRouter, VirtualService};
use cutover_test::ScriptedAnalysis;
use kube::api::PostParams;
use kube_fake_client::{Error as FakeError, interceptor};
use serde_json::{Value, json};

fn plan() -> Plan {
    let canary = Canary::new([
        CanaryStep::set_weight(1).unwrap(),
        CanaryStep::SetHeaderRoute(
            HeaderRoute::new("testers", [RouteMatch::header_exact("x-canary", "1")]).unwrap(),
        ),
        CanaryStep::pause(Duration::from_mins(5)),
        CanaryStep::set_weight(10).unwrap(),
        CanaryStep::SetMirror(
            Mirror::new("shadow", Weight::from_percent(20).unwrap(), []).unwrap(),
        ),
        CanaryStep::Analysis(AnalysisRun::new("errors")),
        CanaryStep::set_weight(50).unwrap(),
        CanaryStep::RemoveMirror("shadow".into()),
        CanaryStep::pause(Duration::from_mins(5)),
    ]);
    Plan::new(canary).with_retry(RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    })
}

/// The candidate's weight in every VirtualService write, consecutive repeats folded.
fn candidate_weights(written: &Written) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::new();
    for object in written.lock().unwrap().iter() {
        if object["kind"] != "VirtualService" {
            continue;
        }
        let routes = object["spec"]["http"].as_array().unwrap();
        let w = weights(routes)
            .iter()
            .find(|(subset, _)| subset == "v2")
            .map_or(0, |(_, w)| *w);
        if out.last() != Some(&w) {
            out.push(w);
        }
    }
    out
}

/// Whether any write had the header route, and whether any had the mirror.
fn saw_route_and_mirror(written: &Written) -> (bool, bool) {
    let written = written.lock().unwrap();
    let routes = written
        .iter()
        .filter_map(|o| o["spec"]["http"].as_array())
        .flatten();
    let mut seen = (false, false);
    for route in routes {
        seen.0 |= route["name"] == "cutover:primary:testers";
        seen.1 |= route["name"] == "primary" && route["mirror"]["subset"] == "v2";
    }
    seen
}

/// Runs the canary of [`plan`] through `router`, the analysis answering `verdict`.
async fn run(router: IstioRouter, verdict: Verdict) -> Result<Outcome, RolloutError> {
    Rollout::builder("reviews", plan())
        .revisions("v1", "v2")
        .router(router)
        .analysis("errors", ScriptedAnalysis::verdicts([verdict]))
        .build()
        .unwrap()
        .run()
        .await
}

/// A fake client holding the VirtualService, with `funcs` intercepting its calls.
async fn client_with(funcs: interceptor::Funcs) -> kube::Client {
    builder()
        .with_runtime_objects(vec![vs_json()])
        .with_interceptor_funcs(funcs)
        .build()
        .await
        .unwrap()
}

fn vs_json() -> Value {
    serde_json::to_value(virtual_service()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn canary_goes_1_10_50_100_and_cleans_up() {
    let swagger = swagger();
    let (client, written) = validating_client(&swagger, vec![vs_json()]).await;
    let outcome = run(router(client.clone()), Verdict::Pass).await.unwrap();
    assert_eq!(outcome, Outcome::Promoted);
    assert_eq!(candidate_weights(&written), [1, 10, 50, 100]);
    assert_eq!(saw_route_and_mirror(&written), (true, true));
    let routes = http(&client).await;
    let names: Vec<_> = routes.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["static", "legacy", "primary", "fallback"]);
    assert_eq!(
        weights(&routes),
        [("v1".to_owned(), 0), ("v2".to_owned(), 100)]
    );
    assert!(named(&routes, "primary").get("mirror").is_none());
}

#[tokio::test(start_paused = true)]
async fn failing_analysis_rolls_back_to_stable_and_removes_the_route_and_mirror() {
    let swagger = swagger();
    let (client, written) = validating_client(&swagger, vec![vs_json()]).await;
    let outcome = run(router(client.clone()), Verdict::Fail).await.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack(StopReason::AnalysisFailed { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(candidate_weights(&written), [1, 10, 0]);
    let routes = http(&client).await;
    let names: Vec<_> = routes.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["static", "legacy", "primary", "fallback"]);
    assert_eq!(
        weights(&routes),
        [("v1".to_owned(), 100), ("v2".to_owned(), 0)]
    );
    assert!(named(&routes, "primary").get("mirror").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_concurrent_edit_is_a_conflict_that_is_retried_without_losing_the_edit() {
    let edits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&edits);
    // Someone adds a route between cutover's read and its first write.
    let funcs = interceptor::Funcs::new().patch(move |ctx| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            let mut vs: VirtualService = ctx.client.get(ctx.namespace, ctx.name)?;
            vs.spec["http"].as_array_mut().unwrap().insert(
                0,
                json!({ "name": "hotfix", "directResponse": { "status": 503 } }),
            );
            ctx.client
                .update(ctx.namespace, &vs, &PostParams::default())?;
        }
        Ok(None)
    });
    let client = client_with(funcs).await;
    let outcome = run(router(client.clone()), Verdict::Pass).await.unwrap();
    assert_eq!(outcome, Outcome::Promoted);
    let routes = http(&client).await;
    assert_eq!(routes[0]["name"], "hotfix", "the concurrent edit survived");
    assert_eq!(
        weights(&routes),
        [("v1".to_owned(), 0), ("v2".to_owned(), 100)]
    );
    // Eight writes (1 %, route, 10 %, mirror, 50 %, mirror off, 100 %, route off) and the
    // one refused with 409.
    assert_eq!(edits.load(Ordering::SeqCst), 9);
}

#[tokio::test(start_paused = true)]
async fn injected_500s_are_retried_and_the_canary_still_promotes() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let funcs = interceptor::Funcs::new().patch(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < 2 {
            return Err(FakeError::Internal("etcdserver: request timed out".into()));
        }
        Ok(None)
    });
    let client = client_with(funcs).await;
    let outcome = run(router(client.clone()), Verdict::Pass).await.unwrap();
    assert_eq!(outcome, Outcome::Promoted);
    // Eight writes and the two refused with 500.
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert_eq!(
        weights(&http(&client).await),
        [("v1".to_owned(), 0), ("v2".to_owned(), 100)]
    );
}

#[tokio::test(start_paused = true)]
async fn injected_403_fails_the_rollout_with_the_missing_permission() {
    let base = builder()
        .with_runtime_objects(vec![vs_json()])
        .build()
        .await
        .unwrap();
    let denied = failing(base.clone(), 403, |m, path| {
        m == http::Method::PATCH && path.contains("virtualservices")
    });
    let err = run(router(denied), Verdict::Pass).await.unwrap_err();
    let RolloutError::Provider { source, .. } = &err else {
        panic!("expected a provider error, got {err:?}");
    };
    assert_eq!(source.kind(), ErrorKind::Permanent);
    assert!(
        source.message().contains(
            "grant the RBAC verb `patch` on `virtualservices.networking.istio.io` in namespace `prod`"
        ),
        "{source}"
    );
    let routes = http(&base).await;
    assert!(
        named(&routes, "primary")["route"][0]
            .get("weight")
            .is_none(),
        "untouched"
    );
}

#[tokio::test(start_paused = true)]
async fn a_missing_route_fails_the_rollout_naming_it() {
    let client = builder()
        .with_runtime_objects(vec![vs_json()])
        .build()
        .await
        .unwrap();
    let router = IstioRouter::new(client, NS, "reviews", "canary")
        .destination(rev("v1"), Destination::subset("reviews", "v1"))
        .destination(rev("v2"), Destination::subset("reviews", "v2"));
    let err = run(router, Verdict::Pass).await.unwrap_err();
    let RolloutError::Provider { source, .. } = &err else {
        panic!("expected a provider error, got {err:?}");
    };
    assert_eq!(source.kind(), ErrorKind::Permanent);
    assert!(
        source.message().contains("no HTTP route named `canary`"),
        "{source}"
    );
}
