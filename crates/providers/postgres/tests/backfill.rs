//! A backfill killed mid-way (its connection terminated by the server) and resumed: no row
//! lost, none updated twice, the cursor in `cutover.migrations` picking up where it stopped.

mod common;

use std::time::Duration;

use common::{connect, ctx, server, value};
use cutover_core::{ErrorKind, MigrationStep as _};
use cutover_postgres::{Batch, Operation, Postgres};

const ROWS: i64 = 2000;
const BATCH: u32 = 100;

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn a_backfill_killed_mid_way_resumes_without_losing_or_repeating_rows() {
    let url = server().database("backfill_crash").await;
    let client = connect(&url).await;
    // `hits` counts every update of every row, in the updating transaction.
    client
        .batch_execute(&format!(
            "CREATE TABLE items (id bigserial PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO items (n) SELECT g FROM generate_series(1, {ROWS}) g;
             CREATE TABLE hits (id bigint NOT NULL);
             CREATE FUNCTION hit() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO hits VALUES (NEW.id); RETURN NEW; END $$;
             CREATE TRIGGER hit AFTER UPDATE ON items FOR EACH ROW EXECUTE FUNCTION hit();"
        ))
        .await
        .unwrap();
    let db = |url: &str| {
        Postgres::new(url).unwrap().batch(Batch {
            size: BATCH,
            pause: Duration::from_millis(20),
        })
    };
    let op = Operation::add_column("items", "doubled", "bigint").backfill("n * 2");
    let first = db(&url).migration("double-n", op.clone()).expand();
    let running = tokio::spawn(async move { first.apply(&ctx(false)).await });

    // Wait (with a deadline) until five batches are committed, then kill the step's session.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Until the step creates it, `cutover.migrations` does not exist.
        let batches: Option<i64> = client
            .query_one(
                "SELECT max(batches) FROM cutover.migrations WHERE migration = 'double-n'",
                &[],
            )
            .await
            .map_or(None, |r| r.get(0));
        if batches.unwrap_or(0) >= 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backfill never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed: i64 = value(
        &client,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = 'cutover' AND datname = current_database()",
    )
    .await;
    assert_eq!(killed, 1);
    let err = running.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.message().contains("double-n"), "{err}");

    let (state, batches): (String, i64) = client
        .query_one(
            "SELECT state, batches FROM cutover.migrations WHERE migration = 'double-n'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(state, "applying");
    let missing: i64 = value(&client, "SELECT count(*) FROM items WHERE doubled IS NULL").await;
    assert!(
        batches >= 5 && missing > 0,
        "stopped mid-way: {batches} batches, {missing} rows left"
    );
    assert_eq!(
        missing,
        ROWS - batches * i64::from(BATCH),
        "the cursor matches the rows done"
    );

    // A new process resumes it.
    let second = db(&url).migration("double-n", op).expand();
    // Half done: neither applied nor not, so a resumed engine runs `apply` again.
    assert_eq!(second.is_applied(&ctx(false)).await.unwrap(), None);
    second.apply(&ctx(false)).await.unwrap();
    assert_eq!(second.is_applied(&ctx(false)).await.unwrap(), Some(true));

    let rows: i64 = value(&client, "SELECT count(*) FROM items").await;
    let right: i64 = value(&client, "SELECT count(*) FROM items WHERE doubled = n * 2").await;
    assert_eq!((rows, right), (ROWS, ROWS), "every row filled");
    let (hits, distinct): (i64, i64) = client
        .query_one("SELECT count(*), count(DISTINCT id) FROM hits", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        (hits, distinct),
        (ROWS, ROWS),
        "every row updated exactly once"
    );
    let batches: i64 = value(
        &client,
        "SELECT batches FROM cutover.migrations WHERE migration = 'double-n'",
    )
    .await;
    assert_eq!(batches, ROWS / i64::from(BATCH));

    // The trigger fills the column for rows an old version writes without it.
    client
        .batch_execute("INSERT INTO items (n) VALUES (21)")
        .await
        .unwrap();
    let filled: i64 = value(
        &client,
        "SELECT doubled FROM items WHERE n = 21 ORDER BY id DESC LIMIT 1",
    )
    .await;
    assert_eq!(filled, 42);
}
