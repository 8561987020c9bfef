//! `ConfigMapStateStore` on the fake client: a whole rollout through it, compare-and-swap,
//! the size limit, and injected 409 / 500 / 403.

mod common;

use common::{NS, builder, failing};
use cutover_core::{
    Canary, CanaryStep, ErrorKind, MemoryStateStore, Outcome, Plan, RetryPolicy, Rollout,
    RolloutError, RolloutId, RolloutState, StateStore, StoreError,
};
use cutover_kubernetes::{ConfigMapStateStore, VERSION_ANNOTATION};
use cutover_test::FakeRouter;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube_fake_client::{Error as FakeError, interceptor};

fn plan() -> Plan {
    Plan::new(Canary::new([
        CanaryStep::set_weight(20).unwrap(),
        CanaryStep::pause(std::time::Duration::from_mins(1)),
        CanaryStep::set_weight(60).unwrap(),
    ]))
    .with_retry(RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    })
}

fn id(s: &str) -> RolloutId {
    s.parse().unwrap()
}

async fn run(id: &str, store: impl StateStore + 'static) -> Result<Outcome, RolloutError> {
    Rollout::builder(id, plan())
        .revisions("v1", "v2")
        .router(FakeRouter::new("mesh"))
        .state_store(store)
        .build()
        .unwrap()
        .run()
        .await
}

/// The state of a finished rollout, from the in-memory store.
async fn finished_state() -> RolloutState {
    let memory = MemoryStateStore::new();
    run("checkout", memory.clone()).await.unwrap();
    memory.load(&id("checkout")).await.unwrap().unwrap().state
}

#[tokio::test(start_paused = true)]
async fn a_rollout_runs_on_configmaps_and_resumes_finished() {
    let client = builder().build().await.unwrap();
    let store = ConfigMapStateStore::new(client.clone(), NS, "rollout-");
    assert_eq!(
        run("Checkout_1", store.clone()).await.unwrap(),
        Outcome::Promoted
    );

    let name = store.configmap_name(&id("Checkout_1"));
    assert!(name.starts_with("rollout-checkout-1-"), "{name}");
    let cm = Api::<ConfigMap>::namespaced(client, NS)
        .get(&name)
        .await
        .unwrap();
    let stored = store.load(&id("Checkout_1")).await.unwrap().unwrap();
    let annotation = &cm.metadata.annotations.unwrap()[VERSION_ANNOTATION];
    assert_eq!(annotation, &stored.version.to_string());
    assert!(
        stored.version > 3,
        "one save per transition: {}",
        stored.version
    );
    // A finished rollout is not run again: its outcome comes from the store.
    assert_eq!(
        run("Checkout_1", store.clone()).await.unwrap(),
        Outcome::Promoted
    );
    assert_eq!(
        store
            .load(&id("Checkout_1"))
            .await
            .unwrap()
            .unwrap()
            .version,
        stored.version
    );
}

#[tokio::test(start_paused = true)]
async fn saves_compare_and_swap_on_the_version() {
    let state = finished_state().await;
    let client = builder().build().await.unwrap();
    let store = ConfigMapStateStore::new(client, NS, "rollout-");
    let id = id("checkout");
    assert_eq!(store.save(&id, &state, None).await.unwrap(), 1);
    let again = store.save(&id, &state, None).await.unwrap_err();
    assert!(
        matches!(
            again,
            StoreError::Conflict {
                expected: None,
                found: Some(1),
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(store.save(&id, &state, Some(1)).await.unwrap(), 2);
    let stale = store.save(&id, &state, Some(1)).await.unwrap_err();
    assert!(
        matches!(stale, StoreError::Conflict { found: Some(2), .. }),
        "{stale:?}"
    );
    assert_eq!(store.load(&id).await.unwrap().unwrap().state, state);
}

#[tokio::test(start_paused = true)]
async fn a_write_between_read_and_update_is_a_conflict() {
    let state = finished_state().await;
    // The API server answers 409 to the update: someone wrote the ConfigMap after our read.
    let client = builder()
        .with_interceptor_funcs(
            interceptor::Funcs::new()
                .replace(|_| Err(FakeError::Conflict("the object has been modified".into()))),
        )
        .build()
        .await
        .unwrap();
    let store = ConfigMapStateStore::new(client, NS, "rollout-");
    let id = id("checkout");
    store.save(&id, &state, None).await.unwrap();
    let err = store.save(&id, &state, Some(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: Some(1),
                found: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.load(&id).await.unwrap().unwrap().version, 1);
}

#[tokio::test(start_paused = true)]
async fn a_state_too_large_is_refused_before_writing() {
    let state = finished_state().await;
    let size = serde_json::to_string(&state).unwrap().len();
    let client = builder().build().await.unwrap();
    let store = ConfigMapStateStore::new(client.clone(), NS, "rollout-").with_limit(size);
    let err = store.save(&id("checkout"), &state, None).await.unwrap_err();
    let StoreError::TooLarge {
        id: at,
        size: found,
        limit,
    } = &err
    else {
        panic!("expected TooLarge, got {err:?}");
    };
    assert_eq!((at.as_str(), *limit), ("checkout", size));
    assert_eq!(*found, size + "rollout-checkout".len());
    assert!(err.to_string().contains("checkout"), "{err}");
    let configmaps = Api::<ConfigMap>::namespaced(client, NS)
        .list(&kube::api::ListParams::default())
        .await
        .unwrap();
    assert!(configmaps.items.is_empty(), "nothing may be written");
}

#[tokio::test(start_paused = true)]
async fn the_engine_stops_cleanly_when_the_state_outgrows_the_configmap() {
    let full = serde_json::to_string(&finished_state().await)
        .unwrap()
        .len();
    let client = builder().build().await.unwrap();
    // Room for the first saves, not for the last ones.
    let store = ConfigMapStateStore::new(client, NS, "rollout-").with_limit(full - 300);
    let err = run("checkout", store.clone()).await.unwrap_err();
    assert!(
        matches!(err, RolloutError::Store(StoreError::TooLarge { .. })),
        "{err:?}"
    );
    // The last state that fitted is still there, whole.
    let stored = store.load(&id("checkout")).await.unwrap().unwrap();
    assert!(stored.version > 1, "{}", stored.version);
    assert!(serde_json::to_string(&stored.state).unwrap().len() <= full - 300);
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_transient_and_forbidden_names_the_rbac_rule() {
    let state = finished_state().await;
    let client = builder()
        .with_interceptor_funcs(
            interceptor::Funcs::new().create(|_| Err(FakeError::Internal("etcd timeout".into()))),
        )
        .build()
        .await
        .unwrap();
    let store = ConfigMapStateStore::new(client.clone(), NS, "rollout-");
    let err = store.save(&id("checkout"), &state, None).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    let denied = failing(client, 403, |method, _| method == http::Method::GET);
    let store = ConfigMapStateStore::new(denied, NS, "rollout-");
    let StoreError::Provider(err) = store.load(&id("checkout")).await.unwrap_err() else {
        panic!("expected a provider error");
    };
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message()
            .contains("grant the RBAC verb `get` on `configmaps` in namespace `prod`"),
        "{err}"
    );
}
