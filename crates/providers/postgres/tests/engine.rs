//! Full canaries through the engine (`Rollout::builder` with a fake router from cutover-test)
//! against a real PostgreSQL: an aborted canary, and one whose candidate turns unhealthy, roll
//! back traffic and then schema, in reverse order, and say so in the decision record; a
//! promoted one contracts after promotion.

mod common;

use std::pin::Pin;

use common::{columns, connect, pairs, server, value};
use cutover_core::{
    Canary, CanaryStep, DecisionRecord, Entry, Health, Outcome, Plan, Rollout, RolloutBuilder,
    RolloutEvent, StopReason, planner::Decision,
};
use cutover_postgres::{Operation, Postgres};
use cutover_test::{FakeProbe, FakeRouter};
use futures_util::{Stream, StreamExt as _};

type Events = Pin<Box<dyn Stream<Item = RolloutEvent> + Send>>;

async fn until_paused(events: &mut Events) {
    while let Some(event) = events.next().await {
        if let RolloutEvent::Record(DecisionRecord {
            entry:
                Entry::Decision {
                    decision: Decision::Pause(_),
                    ..
                },
            ..
        }) = event
        {
            return;
        }
    }
    panic!("the rollout ended before pausing");
}

fn summaries(records: &[DecisionRecord]) -> Vec<String> {
    records.iter().map(|r| r.summary.clone()).collect()
}

fn position(summaries: &[String], needle: &str) -> usize {
    summaries
        .iter()
        .position(|s| s.contains(needle))
        .unwrap_or_else(|| panic!("no record contains {needle:?}: {summaries:#?}"))
}

/// `users(id, name)` with two rows, and the migrations of v2: a `status` column, a rename of
/// `name` to `full_name`, and an index.
async fn setup(name: &str) -> (tokio_postgres::Client, RolloutBuilder, FakeRouter) {
    let url = server().database(name).await;
    let client = connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL);
             INSERT INTO users (name) VALUES ('ada'), ('grace');",
        )
        .await
        .unwrap();
    let db = Postgres::new(&url).unwrap().versioned_views("app");
    let status = db.migration(
        "add-status",
        Operation::add_column("users", "status", "text").with_default("'active'"),
    );
    let rename = db.migration(
        "rename-name",
        Operation::rename_column("users", "name", "full_name"),
    );
    let index = db.migration(
        "index-full-name",
        Operation::create_index("users", "users_full_name", "full_name"),
    );
    let router = FakeRouter::new("mesh");
    let plan = Plan::new(Canary::new([
        CanaryStep::set_weight(10).unwrap(),
        CanaryStep::pause_until_resumed(),
        CanaryStep::set_weight(50).unwrap(),
    ]))
    // Real time: keep the bake short.
    .with_bake_time(std::time::Duration::from_millis(100));
    let rollout = Rollout::builder(name, plan)
        .revisions("v1", "v2")
        .router(router.clone())
        .migration(status.expand())
        .migration(rename.expand())
        .migration(index.expand())
        .migration(rename.contract());
    (client, rollout, router)
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn an_aborted_canary_rolls_back_traffic_and_schema() {
    let (client, rollout, router) = setup("canary_abort").await;
    let rollout = rollout.build().unwrap();
    let handle = rollout.handle();
    let mut events: Events = Box::pin(rollout.subscribe());
    let run = tokio::spawn(rollout.run());
    until_paused(&mut events).await;

    // Expanded, 10 % on v2, and each version sees its own shape.
    assert_eq!(
        columns(&client, "public", "users").await,
        ["id", "name", "status", "full_name"]
    );
    assert_eq!(columns(&client, "app_v1", "users").await, ["id", "name"]);
    assert_eq!(
        columns(&client, "app_v2", "users").await,
        ["id", "status", "full_name"]
    );
    let current = router.current().unwrap();
    assert_eq!(current.weight(&"v2".parse().unwrap()).basis_points(), 1000);

    handle.abort("bad canary").await.unwrap();
    let outcome = run.await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Aborted { .. }), "{outcome:?}");

    // Traffic back on v1, schema back to its old shape, data intact.
    assert!(router.current().unwrap().is_all_to(&"v1".parse().unwrap()));
    assert_eq!(columns(&client, "public", "users").await, ["id", "name"]);
    let index: bool = value(&client, "SELECT to_regclass('users_full_name') IS NULL").await;
    assert!(index, "index dropped");
    let names: Vec<String> = client
        .query("SELECT name FROM users ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["ada", "grace"]);
    let states = pairs(
        &client,
        "SELECT migration, state FROM cutover.migrations ORDER BY migration",
    )
    .await;
    assert_eq!(
        states,
        [
            ("add-status".into(), "reverted".into()),
            ("index-full-name".into(), "reverted".into()),
            ("rename-name".into(), "reverted".into()),
        ],
        "the contract step never ran"
    );

    // The decision record shows each migration action, reverts in reverse order after the
    // traffic went back.
    let s = summaries(&handle.records().await.unwrap());
    let applied = [
        position(&s, "apply migration `add-status`"),
        position(&s, "apply migration `rename-name`"),
        position(&s, "apply migration `index-full-name`"),
    ];
    let first_split = position(&s, "set split v1 90%, v2 10%");
    let back = position(&s, "set split v1 100%, v2 0%");
    let reverted = [
        position(&s, "revert migration `index-full-name`"),
        position(&s, "revert migration `rename-name`"),
        position(&s, "revert migration `add-status`"),
    ];
    assert!(applied.is_sorted() && applied[2] < first_split, "{s:#?}");
    assert!(back < reverted[0] && reverted.is_sorted(), "{s:#?}");
    assert!(
        !s.iter().any(|x| x.contains("rename-name/contract")),
        "{s:#?}"
    );
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn a_promoted_canary_contracts_after_promotion() {
    let (client, rollout, router) = setup("canary_promote").await;
    let rollout = rollout.build().unwrap();
    let handle = rollout.handle();
    let mut events: Events = Box::pin(rollout.subscribe());
    let run = tokio::spawn(rollout.run());
    until_paused(&mut events).await;
    // The new version writes through its views while the old one still runs.
    client
        .batch_execute("SET search_path = app_v2, public; INSERT INTO users (full_name) VALUES ('linus'); RESET search_path;")
        .await
        .unwrap();
    handle.resume("test").await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), Outcome::Promoted);

    assert!(router.current().unwrap().is_all_to(&"v2".parse().unwrap()));
    assert_eq!(
        columns(&client, "public", "users").await,
        ["id", "status", "full_name"]
    );
    assert!(
        columns(&client, "app_v1", "users").await.is_empty(),
        "old views gone"
    );
    assert_eq!(
        columns(&client, "app_v2", "users").await,
        ["id", "status", "full_name"]
    );
    let names: Vec<String> = client
        .query("SELECT full_name FROM users ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["ada", "grace", "linus"]);
    let s = summaries(&handle.records().await.unwrap());
    assert!(
        position(&s, "set split v1 0%, v2 100%")
            < position(&s, "apply migration `rename-name/contract`"),
        "{s:#?}"
    );
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn an_unhealthy_canary_rolls_back_traffic_and_schema_by_itself() {
    let (client, rollout, router) = setup("canary_unhealthy").await;
    let probe = FakeProbe::new();
    probe.set(
        &"v2".parse().unwrap(),
        Health::failed("v2 in CrashLoopBackOff"),
    );
    let rollout = rollout.health_probe(probe).build().unwrap();
    let handle = rollout.handle();
    let outcome = rollout.run().await.unwrap();
    assert!(
        matches!(&outcome, Outcome::RolledBack(StopReason::Unhealthy { .. })),
        "{outcome:?}"
    );
    let weights: Vec<u16> = router
        .splits()
        .iter()
        .map(|s| s.weight(&"v2".parse().unwrap()).basis_points())
        .collect();
    assert_eq!(weights, [1000, 0], "10 %, then all back to v1");
    assert_eq!(columns(&client, "public", "users").await, ["id", "name"]);
    let s = summaries(&handle.records().await.unwrap());
    assert!(
        position(&s, "set split v1 100%, v2 0%") < position(&s, "revert migration `add-status`"),
        "{s:#?}"
    );
}
