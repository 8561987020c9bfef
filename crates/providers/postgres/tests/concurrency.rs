//! An old and a new application version reading and writing concurrently through their
//! versioned views while a column rename expands (dual-write triggers, batched backfill):
//! zero errors, and both names agree on every row.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{connect, ctx, server, value};
use cutover_core::MigrationStep as _;
use cutover_postgres::{Batch, Operation, Postgres};

/// What one application version did.
#[derive(Debug, Default)]
struct Tally {
    ops: u64,
    errors: Vec<String>,
}

/// An application version: inserts, updates and reads `users` by the column name it knows,
/// through `search_path = app_<version>, public`, until `stop`, counting
/// its rounds in `rounds`.
async fn app(
    url: String,
    version: &'static str,
    column: &'static str,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
) -> Tally {
    let client = connect(&url).await;
    client
        .batch_execute(&format!("SET search_path = app_{version}, public"))
        .await
        .unwrap();
    let mut tally = Tally::default();
    let mut round = 0_i64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let name = format!("{version}-{round}");
        let insert = format!("INSERT INTO users ({column}) VALUES ($1) RETURNING id");
        let update = format!("UPDATE users SET {column} = $1 WHERE id = $2");
        let read = format!("SELECT {column} FROM users WHERE id = $1");
        let result = async {
            let id: i64 = client.query_one(&insert, &[&name]).await?.get(0);
            let renamed = format!("{name}-renamed");
            // Update one of the seed rows too, racing the backfill.
            client
                .execute(&update, &[&renamed, &(round % 200 + 1)])
                .await?;
            client.execute(&update, &[&renamed, &id]).await?;
            let seen: String = client.query_one(&read, &[&id]).await?.get(0);
            Ok::<_, tokio_postgres::Error>(seen == renamed)
        }
        .await;
        match result {
            Ok(true) => {}
            Ok(false) => tally
                .errors
                .push(format!("round {round}: read back a stale value")),
            Err(e) => tally.errors.push(format!("round {round}: {e}")),
        }
        tally.ops += 1;
        rounds.fetch_add(1, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
    tally
}

/// Waits until `done` holds, polling with a 60 s deadline.
async fn until(done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs postgres: scripts/test-deps"]
async fn old_and_new_versions_read_and_write_during_a_rename_with_zero_errors() {
    let url = server().database("concurrency").await;
    let client = connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL);
             INSERT INTO users (name) SELECT 'seed-' || g FROM generate_series(1, 2000) g;",
        )
        .await
        .unwrap();
    let db = Postgres::new(&url)
        .unwrap()
        .versioned_views("app")
        .batch(Batch {
            size: 100,
            pause: Duration::from_millis(2),
        });
    let rename = db.migration(
        "rename-name",
        Operation::rename_column("users", "name", "full_name"),
    );

    // The old version runs before, during and after the expand.
    let stop = Arc::new(AtomicBool::new(false));
    let old_rounds = Arc::new(AtomicU64::new(0));
    let old = tokio::spawn(app(
        url.clone(),
        "v1",
        "name",
        stop.clone(),
        old_rounds.clone(),
    ));
    until(|| old_rounds.load(Ordering::Relaxed) >= 20).await;
    let before = old_rounds.load(Ordering::Relaxed);
    rename.expand().apply(&ctx(false)).await.unwrap();
    let during = old_rounds.load(Ordering::Relaxed) - before;
    assert!(during > 0, "the old version kept working during the expand");
    // The new version starts once its views exist, and both run side by side for at least
    // 200 rounds each.
    let new_rounds = Arc::new(AtomicU64::new(0));
    let old_at_start = old_rounds.load(Ordering::Relaxed);
    let new = tokio::spawn(app(
        url.clone(),
        "v2",
        "full_name",
        stop.clone(),
        new_rounds.clone(),
    ));
    until(|| {
        new_rounds.load(Ordering::Relaxed) >= 200
            && old_rounds.load(Ordering::Relaxed) - old_at_start >= 200
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (new, old) = (new.await.unwrap(), old.await.unwrap());

    assert!(old.errors.is_empty(), "old version: {:#?}", old.errors);
    assert!(new.errors.is_empty(), "new version: {:#?}", new.errors);
    let rows: i64 = value(&client, "SELECT count(*) FROM users").await;
    let expected = 2000 + i64::try_from(old.ops + new.ops).unwrap();
    assert_eq!(rows, expected, "every insert landed");
    let apart: i64 = value(
        &client,
        "SELECT count(*) FROM users WHERE name IS DISTINCT FROM full_name",
    )
    .await;
    assert_eq!(apart, 0, "both names agree on every row");
    // Each version reads the other's writes under its own name.
    let seen_by_old: i64 = value(
        &client,
        "SELECT count(*) FROM app_v1.users WHERE name LIKE 'v2-%'",
    )
    .await;
    let seen_by_new: i64 = value(
        &client,
        "SELECT count(*) FROM app_v2.users WHERE full_name LIKE 'v1-%'",
    )
    .await;
    assert!(
        seen_by_old > 0 && seen_by_new > 0,
        "{seen_by_old} {seen_by_new}"
    );
}
