//! `ConfigMapStateStore` on the fake client: the store contract, a whole rollout, a long log
//! in chunks, racing appends, the layout of cutover 0.1 refused, saves that meet a concurrent
//! edit, the size limit, and injected 500 / 403.

mod common;

use common::store::{self as scenario, id, state};
use common::{NS, builder, failing};
use cutover_core::{
    Canary, CanaryStep, Command, CommandRequest, ErrorKind, MemoryStateStore, Outcome, Plan,
    RetryPolicy, Rollout, RolloutError, StateStore, StoreError,
};
use cutover_kube::testing::edited_before;
use cutover_kubernetes::{ConfigMapStateStore, PART_LABEL, ROLLOUT_LABEL, VERSION_ANNOTATION};
use cutover_test::{FakeRouter, store_contract};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::ListParams;
use kube_fake_client::{Error as FakeError, interceptor};
use serde_json::json;

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

async fn client() -> kube::Client {
    builder().build().await.unwrap()
}

#[tokio::test]
async fn the_store_keeps_the_contract() {
    let store = ConfigMapStateStore::new(client().await, NS, "rollout-");
    let report = store_contract(&store, "contract-")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.leases_expire && !report.notifies, "{report}");
    // With chunks of one record each, too.
    let tiny = ConfigMapStateStore::new(client().await, NS, "rollout-").with_chunk_budget(1);
    store_contract(&tiny, "tiny-")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(start_paused = true)]
async fn a_rollout_runs_on_configmaps_and_resumes_finished() {
    let client = client().await;
    let store = ConfigMapStateStore::new(client.clone(), NS, "rollout-");
    assert_eq!(
        run("Checkout_1", store.clone()).await.unwrap(),
        Outcome::Promoted
    );
    let id = id("Checkout_1");
    let name = store.configmap_name(&id);
    assert!(name.starts_with("rollout-checkout-1-"), "{name}");
    let configmaps = Api::<ConfigMap>::namespaced(client, NS);
    let cm = configmaps.get(&name).await.unwrap();
    let stored = store.load(&id).await.unwrap().unwrap();
    let annotation = &cm.metadata.annotations.unwrap()[VERSION_ANNOTATION];
    assert_eq!(annotation, &stored.version.to_string());
    assert!(
        stored.version > 3,
        "one save per transition: {}",
        stored.version
    );
    assert_eq!(cm.metadata.labels.unwrap()["cutover.dev/phase"], "done");
    // The records are in the log, in order; the state holds only the last ones saved with it.
    let records = store.records(&id, 0, 1000).await.unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert!(seqs.len() > 5, "{seqs:?}");
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(
        stored.state.unlogged.len() <= 2,
        "{:?}",
        stored.state.unlogged
    );
    let selector = format!("{ROLLOUT_LABEL}={}", store.rollout_label(&id));
    let mut parts: Vec<String> = configmaps
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .iter()
        .map(|cm| cm.metadata.labels.clone().unwrap()[PART_LABEL].clone())
        .collect();
    parts.sort();
    assert_eq!(parts, ["log", "state"]);

    // A finished rollout is not run again: its outcome comes from the store.
    assert_eq!(
        run("Checkout_1", store.clone()).await.unwrap(),
        Outcome::Promoted
    );
    assert_eq!(
        store.load(&id).await.unwrap().unwrap().version,
        stored.version
    );
    assert_eq!(store.records(&id, 0, 1000).await.unwrap(), records);
}

#[tokio::test(start_paused = true)]
async fn an_engine_is_steered_through_another_store() {
    let client = client().await;
    scenario::an_engine_is_steered_through_another_store(|| {
        ConfigMapStateStore::new(client.clone(), NS, "rollout-")
    })
    .await;
}

#[tokio::test]
async fn a_long_log_rolls_over_into_chunks() {
    let client = client().await;
    scenario::long_log_rolls_over_into_chunks(
        || ConfigMapStateStore::new(client.clone(), NS, "rollout-"),
        &Api::namespaced(client.clone(), NS),
    )
    .await;
}

#[tokio::test]
async fn racing_appends_keep_the_log_whole() {
    let client = client().await;
    scenario::racing_appends_keep_the_log_whole(|| {
        ConfigMapStateStore::new(client.clone(), NS, "rollout-")
    })
    .await;
}

#[tokio::test]
async fn the_layout_of_cutover_0_1_is_refused() {
    let client = client().await;
    scenario::the_layout_of_cutover_0_1_is_refused(
        ConfigMapStateStore::new(client.clone(), NS, "rollout-"),
        &Api::namespaced(client, NS),
    )
    .await;
}

/// Rollout `web-log-0` is not chunk 0 of the log of rollout `web`, nor `web-owner` the owner
/// lease of `web`: each keeps its own objects.
#[tokio::test]
async fn ids_that_look_like_derived_names_keep_their_own_objects() {
    let store = ConfigMapStateStore::new(client().await, NS, "rollout-");
    let ids = ["web", "web-log-0", "web-inbox-0", "web-owner"].map(id);
    for (n, id) in ids.iter().enumerate() {
        store.save(id, &state(id), None).await.unwrap();
        let records: Vec<_> = (1..=n as u64 + 1)
            .map(|seq| scenario::record(seq, n))
            .collect();
        store.append(id, &records).await.unwrap();
        let pause = CommandRequest::new(Command::Pause, format!("sender {n}"));
        store.send(id, &pause, scenario::T0).await.unwrap();
    }
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(store.load(id).await.unwrap().unwrap().state.id, *id);
        let records = store.records(id, 0, 100).await.unwrap();
        assert_eq!(records.len(), n + 1, "{id}");
        assert!(records[0].summary.ends_with(&"x".repeat(n)), "{id}");
        let commands = store.commands(id, 0).await.unwrap();
        assert_eq!(commands.len(), 1, "{id}");
        assert_eq!(commands[0].request.by, format!("sender {n}"));
    }
}

/// A chunk that does not start where the one before it ended (edited by hand) is reported,
/// naming the chunk, by readers and writers alike: never read past, never looped on.
#[tokio::test]
async fn chunks_that_disagree_are_reported() {
    let client = client().await;
    let store = || ConfigMapStateStore::new(client.clone(), NS, "rollout-").with_chunk_budget(1);
    let id = id("edited");
    store().save(&id, &state(&id), None).await.unwrap();
    store().append(&id, &scenario::varied(3)).await.unwrap();
    // Chunk 1 (seq 2) now says it holds seq 7.
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), NS);
    let name = format!("{}-log-1", store().configmap_name(&id));
    let mut chunk = configmaps.get(&name).await.unwrap();
    let record = chunk.data.as_mut().unwrap().remove("2").unwrap();
    chunk.data.as_mut().unwrap().insert("7".into(), record);
    let annotations = chunk.metadata.annotations.as_mut().unwrap();
    annotations.insert("cutover.dev/first-seq".into(), "7".into());
    annotations.insert("cutover.dev/last-seq".into(), "7".into());
    configmaps
        .replace(&name, &kube::api::PostParams::default(), &chunk)
        .await
        .unwrap();

    let check = |result: Result<(), StoreError>, call: &str| {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { location, .. } if location.ends_with("edited-log-1 annotations")),
            "{call}: {err:?}"
        );
    };
    check(
        store().records(&id, 0, 100).await.map(drop),
        "records from 0",
    );
    check(
        store().records(&id, 2, 100).await.map(drop),
        "records after 2",
    );
    check(
        store().append(&id, &[scenario::record(4, 0)]).await,
        "append",
    );
}

#[tokio::test]
async fn a_partly_deleted_rollout_is_not_reused() {
    let client = client().await;
    scenario::a_partly_deleted_rollout_is_not_reused(
        ConfigMapStateStore::new(client.clone(), NS, "rollout-"),
        &Api::namespaced(client, NS),
    )
    .await;
}

#[tokio::test]
async fn a_save_meeting_another_save_conflicts_and_any_other_edit_does_not() {
    let id = id("checkout");
    let state = state(&id);
    let is_update = |method: &http::Method, path: &str| {
        method == http::Method::PUT && path.ends_with("/configmaps/rollout-checkout")
    };
    // Someone labels the ConfigMap between the store's read and its write: the write gets a
    // 409, the store reads again, finds the version it expected, and saves.
    let labelled = edited_before(
        client().await,
        NS,
        is_update,
        json!({ "metadata": { "labels": { "team": "payments" } } }),
    );
    let store = ConfigMapStateStore::new(labelled.clone(), NS, "rollout-");
    assert_eq!(store.save(&id, &state, None).await.unwrap(), 1);
    assert_eq!(store.save(&id, &state, Some(1)).await.unwrap(), 2);
    let cm = Api::<ConfigMap>::namespaced(labelled, NS)
        .get("rollout-checkout")
        .await
        .unwrap();
    assert_eq!(cm.metadata.labels.unwrap()["team"], "payments", "kept");

    // Another engine saves in between: a conflict that names the version found.
    let saved_between = edited_before(
        client().await,
        NS,
        is_update,
        json!({ "metadata": { "annotations": { VERSION_ANNOTATION: "2" } } }),
    );
    let store = ConfigMapStateStore::new(saved_between, NS, "rollout-");
    store.save(&id, &state, None).await.unwrap();
    let err = store.save(&id, &state, Some(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: Some(1),
                found: Some(2),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_store_that_keeps_meeting_conflicts_gives_up_retryably() {
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
    store.save(&id, &state(&id), None).await.unwrap();
    let err = store.save(&id, &state(&id), Some(1)).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("state store failed"), "{err}");
    assert_eq!(store.load(&id).await.unwrap().unwrap().version, 1);
}

#[tokio::test(start_paused = true)]
async fn a_state_too_large_is_refused_before_writing() {
    let memory = MemoryStateStore::new();
    run("checkout", memory.clone()).await.unwrap();
    let state = memory.load(&id("checkout")).await.unwrap().unwrap().state;
    let size = serde_json::to_string(&state).unwrap().len();
    let client = client().await;
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
    assert_eq!(*found, size + "state.json".len());
    assert!(err.to_string().contains("checkout"), "{err}");
    let configmaps = Api::<ConfigMap>::namespaced(client, NS)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(configmaps.items.is_empty(), "nothing may be written");
}

#[tokio::test]
async fn server_errors_are_transient_and_forbidden_names_the_rbac_rule() {
    let id = id("checkout");
    let client = builder()
        .with_interceptor_funcs(
            interceptor::Funcs::new().create(|_| Err(FakeError::Internal("etcd timeout".into()))),
        )
        .build()
        .await
        .unwrap();
    let store = ConfigMapStateStore::new(client.clone(), NS, "rollout-");
    let err = store.save(&id, &state(&id), None).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    let denied = failing(client, 403, |method, _| method == http::Method::GET);
    let store = ConfigMapStateStore::new(denied, NS, "rollout-");
    let StoreError::Provider(err) = store.load(&id).await.unwrap_err() else {
        panic!("expected a provider error");
    };
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message()
            .contains("grant the RBAC verb `get` on `configmaps` in namespace `prod`"),
        "{err}"
    );
}
