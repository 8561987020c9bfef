//! The ConfigMap store's scenarios, run on kube-fake-client (`tests/store.rs`) and on a real
//! API server (`tests/cluster.rs`). Each takes a `store` factory (every call a new store, so
//! with nothing remembered, as in another process), and `admin`, a client that reads the
//! objects behind the store's back.

use std::collections::BTreeMap;
use std::time::Duration;

use cutover_core::planner::{Decision, Setup};
use cutover_core::state::{Final, Phase};
use cutover_core::{
    Canary, CanaryStep, Command, CommandRequest, DecisionRecord, Entry, Inputs, ListFilter,
    Outcome, Plan, Revisions, Rollout, RolloutId, RolloutState, StateStore, StoreError, Timestamp,
};
use cutover_kube::testing::eventually;
use cutover_kubernetes::{ConfigMapStateStore, PART_LABEL, ROLLOUT_LABEL};
use cutover_test::FakeRouter;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

pub const T0: Timestamp = Timestamp::from_unix_millis(1_800_000_000_000);

pub fn id(s: &str) -> RolloutId {
    s.parse().unwrap()
}

pub fn state(id: &RolloutId) -> RolloutState {
    let plan = Plan::from(Canary::new([CanaryStep::set_weight(10).unwrap()]));
    let setup = Setup::new(plan, Revisions::new("v1", "v2").unwrap());
    RolloutState::new(id.clone(), setup, T0)
}

/// Record `seq`, its summary `padding` bytes long.
pub fn record(seq: u64, padding: usize) -> DecisionRecord {
    DecisionRecord {
        seq,
        at: T0 + Duration::from_secs(seq),
        phase: Phase::Progressing,
        step: None,
        inputs: Inputs {
            split: None,
            step_elapsed: Duration::from_secs(seq),
            analysis: None,
            background: None,
            health: None,
        },
        entry: Entry::Decision {
            decision: Decision::Advance,
            result: None,
        },
        summary: format!("record {seq} {}", "x".repeat(padding)),
    }
}

/// A log of `n` records of varied sizes: mostly small, every 17th larger than a 2 KiB chunk.
pub fn varied(n: u64) -> Vec<DecisionRecord> {
    (1..=n)
        .map(|seq| {
            let padding = if seq % 17 == 0 {
                3000
            } else {
                usize::try_from(seq * 37 % 400).unwrap()
            };
            record(seq, padding)
        })
        .collect()
}

/// The chunk ConfigMaps of a rollout's log, by chunk number.
pub async fn log_chunks(
    admin: &Api<ConfigMap>,
    store: &ConfigMapStateStore,
    id: &RolloutId,
) -> Vec<ConfigMap> {
    let selector = format!(
        "{ROLLOUT_LABEL}={},{PART_LABEL}=log",
        store.rollout_label(id)
    );
    let mut chunks = admin
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items;
    let number = |cm: &ConfigMap| -> usize {
        let name = cm.metadata.name.clone().unwrap();
        name.rsplit('-').next().unwrap().parse().unwrap()
    };
    chunks.sort_by_key(number);
    let numbers: Vec<usize> = chunks.iter().map(number).collect();
    assert_eq!(
        numbers,
        (0..chunks.len()).collect::<Vec<_>>(),
        "chunks in order, none missing"
    );
    for (n, chunk) in chunks.iter().enumerate() {
        assert_eq!(
            chunk.metadata.name.as_deref(),
            Some(format!("{}-log-{n}", store.configmap_name(id)).as_str())
        );
    }
    chunks
}

/// Bytes of data (keys and values) a ConfigMap holds.
pub fn data_bytes(cm: &ConfigMap) -> usize {
    cm.data
        .iter()
        .flatten()
        .map(|(k, v)| k.len() + v.len())
        .sum()
}

/// A long log in a store with a 2 KiB chunk budget: appended in batches of growing size, with
/// batches appended again (idempotent) and a gap refused; it spans many chunks, none over
/// the budget except those holding one record larger than it; all but the last are sealed; and
/// `records` with a cursor reads it back across chunk boundaries, from this store and from a
/// new one that remembers nothing.
pub async fn long_log_rolls_over_into_chunks(
    store: impl Fn() -> ConfigMapStateStore,
    admin: &Api<ConfigMap>,
) {
    const BUDGET: usize = 2048;
    const N: u64 = 120;
    let writer = store().with_chunk_budget(BUDGET);
    let id = id("long-log");
    writer.save(&id, &state(&id), None).await.unwrap();
    let all = varied(N);
    let (mut from, mut size) = (0, 1);
    while from < all.len() {
        let to = (from + size).min(all.len());
        writer.append(&id, &all[from..to]).await.unwrap();
        // A resumed engine appends again what it may have appended: skipped.
        writer
            .append(&id, &all[from.saturating_sub(3)..to])
            .await
            .unwrap();
        (from, size) = (to, size % 7 + 1);
    }
    let gap = writer.append(&id, &[record(N + 2, 0)]).await.unwrap_err();
    assert!(
        matches!(gap, StoreError::LogGap { last: N, found, .. } if found == N + 2),
        "{gap:?}"
    );

    let chunks = log_chunks(admin, &writer, &id).await;
    assert!(chunks.len() >= 10, "{} chunks", chunks.len());
    for (n, chunk) in chunks.iter().enumerate() {
        let bytes = data_bytes(chunk);
        let entries = chunk.data.as_ref().map_or(0, BTreeMap::len);
        assert!(
            bytes <= BUDGET || entries == 1,
            "chunk {n} holds {bytes} bytes in {entries} records"
        );
        let annotations = chunk.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations["cutover.dev/bytes"],
            bytes.to_string(),
            "chunk {n}"
        );
        let sealed = annotations.get("cutover.dev/sealed").map(String::as_str) == Some("true");
        assert_eq!(
            sealed,
            n + 1 < chunks.len(),
            "only the last chunk is open (chunk {n})"
        );
    }
    let held: usize = chunks
        .iter()
        .map(|c| c.data.as_ref().map_or(0, BTreeMap::len))
        .sum();
    assert_eq!(held as u64, N, "each record once");

    for (who, reader) in [("writer", writer.clone()), ("a new store", store())] {
        for after in (0..=N).step_by(5).chain([N - 1, N]) {
            for limit in [1, 7, 1000] {
                let got = reader.records(&id, after, limit).await.unwrap();
                let start = usize::try_from(after).unwrap();
                let want = &all[start..(start + limit).min(all.len())];
                assert!(
                    got == want,
                    "{who}: records(after {after}, limit {limit}) gave seqs {:?}",
                    got.iter().map(|r| r.seq).collect::<Vec<_>>()
                );
            }
        }
    }
    // A new store reading near the end first, then from the start.
    let cold = store();
    assert_eq!(cold.records(&id, N - 2, 10).await.unwrap(), all[118..]);
    assert_eq!(cold.records(&id, 0, 1000).await.unwrap(), all);
    // A new store appends where the log ends.
    let next = record(N + 1, 10);
    store()
        .append(&id, std::slice::from_ref(&next))
        .await
        .unwrap();
    assert_eq!(writer.records(&id, N, 10).await.unwrap(), [next]);

    let huge = record(N + 2, 5000);
    let too_large = store()
        .with_limit(4096)
        .append(&id, &[huge])
        .await
        .unwrap_err();
    assert!(
        matches!(too_large, StoreError::TooLarge { limit: 4096, .. }),
        "{too_large:?}"
    );
    assert_eq!(writer.records(&id, N + 1, 10).await.unwrap(), []);
}

/// Two stores that remember different ends of the log append the same records at once, as an
/// old engine and its successor might: every record is there once, in order.
pub async fn racing_appends_keep_the_log_whole(store: impl Fn() -> ConfigMapStateStore) {
    let id = id("racing");
    let (a, b) = (
        store().with_chunk_budget(1500),
        store().with_chunk_budget(1500),
    );
    a.save(&id, &state(&id), None).await.unwrap();
    let all = varied(60);
    let write = |s: ConfigMapStateStore, step: usize| {
        let (all, id) = (all.clone(), id.clone());
        async move {
            for end in (step..=all.len()).step_by(step) {
                s.append(&id, &all[..end]).await.unwrap();
            }
            s.append(&id, &all).await.unwrap();
        }
    };
    tokio::join!(write(a.clone(), 3), write(b.clone(), 4));
    assert_eq!(a.records(&id, 0, 1000).await.unwrap(), all);
    assert_eq!(b.records(&id, 0, 1000).await.unwrap(), all);
}

/// A rollout saved by cutover 0.1 (a ConfigMap named like the rollout whose key, named like
/// the ConfigMap, holds a format 1 state with the records inside) is refused with a `Format`
/// error naming the ConfigMap, by every call that would read or overwrite it, and left out of
/// listings; so is one under the name 0.1 gave an id this release names differently. `store`
/// has the prefix `rollout-`.
pub async fn the_layout_of_cutover_0_1_is_refused(
    store: ConfigMapStateStore,
    admin: &Api<ConfigMap>,
) {
    for raw in ["legacy", "old-"] {
        let id = id(raw);
        let name = if raw == "legacy" {
            store.configmap_name(&id)
        } else {
            // cutover 0.1 trimmed the dash; this release gives the id a name of its own.
            assert_ne!(store.configmap_name(&id), "rollout-old");
            "rollout-old".to_owned()
        };
        let old_state = json!({
            "format": 1, "id": raw, "phase": "progressing", "step": 2,
            "records": [{ "seq": 1, "summary": "started" }, { "seq": 2, "summary": "set 10 %" }],
        });
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "labels": { ROLLOUT_LABEL: name },
                "annotations": { "cutover.dev/state-version": "7" },
            },
            "data": { name.clone(): old_state.to_string() },
        }))
        .unwrap();
        admin.create(&PostParams::default(), &cm).await.unwrap();

        let refused = |result: Result<(), StoreError>, call: &str| {
            let err = result.unwrap_err();
            let StoreError::Format {
                found: 1, detail, ..
            } = &err
            else {
                panic!("{call} of {raw}: expected Format, got {err:?}");
            };
            assert!(
                detail.contains(&name) && detail.contains("cutover 0.1"),
                "{call}: {detail}"
            );
        };
        refused(store.load(&id).await.map(drop), "load");
        refused(
            store.save(&id, &state(&id), Some(7)).await.map(drop),
            "save",
        );
        let pause = CommandRequest::new(Command::Pause, "alice");
        refused(store.send(&id, &pause, T0).await.map(drop), "send");
        if raw == "legacy" {
            refused(
                store.save(&id, &state(&id), None).await.map(drop),
                "save as new",
            );
        }
    }
    let listed = store.list(&ListFilter::default()).await.unwrap();
    assert!(
        listed
            .iter()
            .all(|s| !["legacy", "old-"].contains(&s.id.as_str())),
        "{listed:?}"
    );
}

/// An engine runs a canary on one store; another store (another process) watches it through
/// `list`, sees it paused with its owner, and resumes it; the engine picks the command up
/// within its poll interval and finishes, and the log shows who resumed it and why.
pub async fn an_engine_is_steered_through_another_store(store: impl Fn() -> ConfigMapStateStore) {
    let plan = Plan::new(Canary::new([
        CanaryStep::set_weight(20).unwrap(),
        CanaryStep::pause_until_resumed(),
        CanaryStep::set_weight(60).unwrap(),
    ]));
    let router = FakeRouter::new("mesh");
    let rollout = Rollout::builder("steered", plan)
        .revisions("v1", "v2")
        .router(router.clone())
        .state_store(store().with_poll_interval(Duration::from_millis(50)))
        .engine_id("engine-a")
        .build()
        .unwrap();
    let engine = tokio::spawn(rollout.run());

    let operator = store();
    let id = id("steered");
    let paused = ListFilter::default().phases([Phase::Progressing]);
    let summary = eventually("the rollout to wait at its pause step", || async {
        let page = operator.list(&paused).await.ok()?;
        page.into_iter().find(|s| s.id == id && s.step == 1)
    })
    .await;
    assert_eq!(summary.lease.map(|l| l.owner).as_deref(), Some("engine-a"));
    assert_eq!(summary.strategy, "canary");

    let resume = CommandRequest::new(Command::Resume, "bob")
        .reason("metrics look fine")
        .key("resume-1");
    let queued = operator.send(&id, &resume, T0).await.unwrap();
    // Sent again (a retrying client): the same command, not a second one.
    assert_eq!(operator.send(&id, &resume, T0).await.unwrap(), queued);
    assert_eq!(engine.await.unwrap().unwrap(), Outcome::Promoted);

    let weights: Vec<u16> = router
        .splits()
        .iter()
        .map(|s| s.weight(&"v2".parse().unwrap()).basis_points())
        .collect();
    assert_eq!(weights, [2000, 6000, 10_000]);
    let records = operator.records(&id, 0, 1000).await.unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>());
    let commands: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Command { command, .. } => Some(command.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert_eq!(commands[0].request.by, "bob");
    assert_eq!(commands[0].request.reason, "metrics look fine");

    let done = operator
        .list(&ListFilter::default().phases([Phase::Done]))
        .await
        .unwrap();
    let summary = done.iter().find(|s| s.id == id).expect("listed as done");
    assert_eq!(summary.outcome, Some(Final::Outcome(Outcome::Promoted)));
    assert_eq!(summary.lease, None, "released when the engine finished");
    let late = operator
        .send(&id, &CommandRequest::new(Command::Abort, "carol"), T0)
        .await;
    assert!(matches!(late, Err(StoreError::Finished { .. })), "{late:?}");
}

/// A rollout whose state ConfigMap was deleted but not its log is not started again on top of
/// the old log (whose records would be taken for the new ones'): the first save names what is
/// left and how to delete it. Once it is deleted, the id starts afresh, even in the store that
/// remembered where the old log ended.
pub async fn a_partly_deleted_rollout_is_not_reused(
    store: ConfigMapStateStore,
    admin: &Api<ConfigMap>,
) {
    let id = id("half-deleted");
    store.save(&id, &state(&id), None).await.unwrap();
    store.append(&id, &varied(3)).await.unwrap();
    admin
        .delete(&store.configmap_name(&id), &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(store.load(&id).await.unwrap(), None);
    let err = store.save(&id, &state(&id), None).await.unwrap_err();
    let label = store.rollout_label(&id);
    assert!(
        matches!(&err, StoreError::Corrupt { location, .. } if location.ends_with("half-deleted-log-0")),
        "{err:?}"
    );
    let message = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        message.contains(&format!("-l {ROLLOUT_LABEL}={label}")),
        "{message}"
    );

    let rest = admin
        .list(&ListParams::default().labels(&format!("{ROLLOUT_LABEL}={label}")))
        .await
        .unwrap();
    for cm in rest.items {
        admin
            .delete(&cm.metadata.name.unwrap(), &DeleteParams::default())
            .await
            .unwrap();
    }
    assert_eq!(store.save(&id, &state(&id), None).await.unwrap(), 1);
    let first = record(1, 5);
    store
        .append(&id, std::slice::from_ref(&first))
        .await
        .unwrap();
    assert_eq!(store.records(&id, 0, 10).await.unwrap(), [first]);
}
