//! Each operation's expand, revert and contract against a real PostgreSQL, with the versioned
//! views each application version sees and the progress rows in `cutover.migrations`.

mod common;

use common::{columns, connect, ctx, pairs, server, value};
use cutover_core::{ErrorKind, MigrationStep as _};
use cutover_postgres::{Operation, Postgres};

const NEEDS: &str = "needs postgres: scripts/test-deps";

/// A database with `orders(id, total)` holding three rows.
async fn setup(name: &str) -> (Postgres, tokio_postgres::Client) {
    let url = server().database(name).await;
    let client = connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE orders (id bigserial PRIMARY KEY, total integer NOT NULL);
             INSERT INTO orders (total) VALUES (10), (20), (30);",
        )
        .await
        .unwrap();
    let db = Postgres::new(&url).unwrap().versioned_views("app");
    (db, client)
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn add_column_with_default_expands_reverts_and_contracts() {
    let _ = NEEDS;
    let (db, client) = setup("add_column").await;
    let m = db.migration(
        "add-status",
        Operation::add_column("orders", "status", "text").with_default("'new'"),
    );
    let (expand, contract) = (m.expand(), m.contract());
    assert_eq!(expand.is_applied(&ctx(false)).await.unwrap(), Some(false));

    expand.apply(&ctx(false)).await.unwrap();
    assert_eq!(
        columns(&client, "public", "orders").await,
        ["id", "total", "status"]
    );
    assert_eq!(columns(&client, "app_v1", "orders").await, ["id", "total"]);
    assert_eq!(
        columns(&client, "app_v2", "orders").await,
        ["id", "total", "status"]
    );
    let news: i64 = value(&client, "SELECT count(*) FROM orders WHERE status = 'new'").await;
    assert_eq!(news, 3);
    assert_eq!(expand.is_applied(&ctx(false)).await.unwrap(), Some(true));
    // Idempotent.
    expand.apply(&ctx(false)).await.unwrap();

    // The old version inserts through its views, without the column.
    client
        .batch_execute("SET search_path = app_v1, public; INSERT INTO orders (total) VALUES (40); RESET search_path;")
        .await
        .unwrap();

    expand.revert(&ctx(false)).await.unwrap();
    assert_eq!(columns(&client, "public", "orders").await, ["id", "total"]);
    assert_eq!(columns(&client, "app_v2", "orders").await, ["id", "total"]);
    assert_eq!(expand.is_applied(&ctx(false)).await.unwrap(), Some(false));
    expand.revert(&ctx(false)).await.unwrap();

    expand.apply(&ctx(false)).await.unwrap();
    let refused = contract.apply(&ctx(false)).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Permanent);
    assert!(refused.message().contains("not promoted"), "{refused}");
    assert_eq!(
        columns(&client, "app_v1", "orders").await,
        ["id", "total"],
        "nothing contracted"
    );

    contract.apply(&ctx(true)).await.unwrap();
    assert_eq!(contract.is_applied(&ctx(true)).await.unwrap(), Some(true));
    assert!(
        columns(&client, "app_v1", "orders").await.is_empty(),
        "old views dropped"
    );
    assert_eq!(
        columns(&client, "app_v2", "orders").await,
        ["id", "total", "status"]
    );
    let states = pairs(
        &client,
        "SELECT phase, state FROM cutover.migrations WHERE migration = 'add-status' ORDER BY phase",
    )
    .await;
    assert_eq!(
        states,
        [
            ("contract".into(), "applied".into()),
            ("expand".into(), "applied".into())
        ]
    );
    let err = contract.revert(&ctx(true)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn create_table_is_hidden_from_the_old_version_and_reverts() {
    let (db, client) = setup("create_table").await;
    let m = db.migration(
        "create-refunds",
        Operation::create_table(
            "refunds",
            "id bigserial PRIMARY KEY, order_id bigint NOT NULL",
        ),
    );
    m.expand().apply(&ctx(false)).await.unwrap();
    assert_eq!(
        columns(&client, "public", "refunds").await,
        ["id", "order_id"]
    );
    assert_eq!(
        columns(&client, "app_v2", "refunds").await,
        ["id", "order_id"]
    );
    assert!(columns(&client, "app_v1", "refunds").await.is_empty());
    m.expand().revert(&ctx(false)).await.unwrap();
    assert!(columns(&client, "public", "refunds").await.is_empty());
    assert!(columns(&client, "app_v2", "refunds").await.is_empty());
    m.expand().apply(&ctx(false)).await.unwrap();
    m.contract().apply(&ctx(true)).await.unwrap();
    assert_eq!(
        columns(&client, "public", "refunds").await,
        ["id", "order_id"]
    );
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn raw_sql_runs_its_revert_and_contract() {
    let (db, client) = setup("raw_sql").await;
    let m = db.migration(
        "audit",
        Operation::raw_sql("CREATE TABLE IF NOT EXISTS audit (at timestamptz)")
            .revert_sql("DROP TABLE IF EXISTS audit")
            .contract_sql("COMMENT ON TABLE audit IS 'contracted'"),
    );
    assert!(m.expand().reversible());
    m.expand().apply(&ctx(false)).await.unwrap();
    assert_eq!(columns(&client, "public", "audit").await, ["at"]);
    m.expand().revert(&ctx(false)).await.unwrap();
    assert!(columns(&client, "public", "audit").await.is_empty());
    m.expand().apply(&ctx(false)).await.unwrap();
    m.contract().apply(&ctx(true)).await.unwrap();
    let comment: Option<String> = value(&client, "SELECT obj_description('audit'::regclass)").await;
    assert_eq!(comment.as_deref(), Some("contracted"));

    let oneway = db.migration("oneway", Operation::raw_sql("SELECT 1"));
    assert!(!oneway.expand().reversible());
    oneway.expand().apply(&ctx(false)).await.unwrap();
    let err = oneway.expand().revert(&ctx(false)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);

    let bad = db.migration(
        "bad",
        Operation::raw_sql("ALTER TABLE nowhere ADD COLUMN x int"),
    );
    let err = bad.expand().apply(&ctx(false)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message().contains("`bad`") && err.message().contains("nowhere"),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn create_index_concurrently_replaces_an_invalid_leftover() {
    let (db, client) = setup("create_index").await;
    // A failed concurrent build leaves an INVALID index behind.
    client
        .batch_execute("INSERT INTO orders (total) VALUES (10)")
        .await
        .unwrap();
    let failed = client
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY orders_total ON orders (total)")
        .await;
    assert!(failed.is_err());
    let valid: bool = value(
        &client,
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_total'::regclass",
    )
    .await;
    assert!(!valid);
    client
        .batch_execute("DELETE FROM orders WHERE id = 4")
        .await
        .unwrap();

    let m = db.migration(
        "index-total",
        Operation::create_index("orders", "orders_total", "total").unique(),
    );
    m.expand().apply(&ctx(false)).await.unwrap();
    let valid: bool = value(
        &client,
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_total'::regclass",
    )
    .await;
    assert!(valid, "the invalid leftover was rebuilt");
    let unique = client
        .batch_execute("INSERT INTO orders (total) VALUES (10)")
        .await;
    assert!(unique.is_err(), "the index is unique");

    m.expand().revert(&ctx(false)).await.unwrap();
    let gone: bool = value(&client, "SELECT to_regclass('orders_total') IS NULL").await;
    assert!(gone);
    m.expand().apply(&ctx(false)).await.unwrap();
    m.contract().apply(&ctx(true)).await.unwrap();
    let kept: bool = value(&client, "SELECT to_regclass('orders_total') IS NOT NULL").await;
    assert!(kept);
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn constraints_go_in_not_valid_then_validated() {
    let (db, client) = setup("constraints").await;
    let check = db.migration(
        "positive-total",
        Operation::check_constraint("orders", "orders_total_positive", "total > 0"),
    );
    check.expand().apply(&ctx(false)).await.unwrap();
    let validated: bool = value(
        &client,
        "SELECT convalidated FROM pg_constraint WHERE conname = 'orders_total_positive'",
    )
    .await;
    assert!(validated);
    assert!(
        client
            .batch_execute("INSERT INTO orders (total) VALUES (-1)")
            .await
            .is_err()
    );
    check.expand().revert(&ctx(false)).await.unwrap();
    client
        .batch_execute("INSERT INTO orders (total) VALUES (-1)")
        .await
        .unwrap();
    // Existing rows break it: validation fails, for good, naming the step.
    let err = check.expand().apply(&ctx(false)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("positive-total"), "{err}");
    // The failed step undid itself: no NOT VALID constraint is left to reject the old
    // version's writes.
    client
        .batch_execute("INSERT INTO orders (total) VALUES (-2)")
        .await
        .unwrap();
    assert_eq!(
        check.expand().is_applied(&ctx(false)).await.unwrap(),
        Some(false)
    );
    client
        .batch_execute("DELETE FROM orders WHERE total < 0")
        .await
        .unwrap();
    check.expand().apply(&ctx(false)).await.unwrap();
    assert_eq!(
        check.expand().is_applied(&ctx(false)).await.unwrap(),
        Some(true)
    );

    client
        .batch_execute("ALTER TABLE orders ADD COLUMN note text; UPDATE orders SET note = 'x'")
        .await
        .unwrap();
    let not_null = db.migration("note-not-null", Operation::set_not_null("orders", "note"));
    not_null.expand().apply(&ctx(false)).await.unwrap();
    assert!(
        client
            .batch_execute("INSERT INTO orders (total) VALUES (5)")
            .await
            .is_err()
    );
    let attnotnull = "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'note'";
    assert!(
        !value::<bool>(&client, attnotnull).await,
        "only a check until contract"
    );
    not_null.contract().apply(&ctx(true)).await.unwrap();
    assert!(value::<bool>(&client, attnotnull).await);
    let checks: i64 = value(
        &client,
        "SELECT count(*) FROM pg_constraint WHERE conname = 'orders_note_not_null'",
    )
    .await;
    assert_eq!(
        checks, 0,
        "the check is dropped once the column is NOT NULL"
    );
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn drop_column_only_hides_it_until_contract() {
    let (db, client) = setup("drop_column").await;
    let m = db.migration("drop-total", Operation::drop_column("orders", "total"));
    m.expand().apply(&ctx(false)).await.unwrap();
    assert_eq!(columns(&client, "public", "orders").await, ["id", "total"]);
    assert_eq!(columns(&client, "app_v1", "orders").await, ["id", "total"]);
    assert_eq!(columns(&client, "app_v2", "orders").await, ["id"]);
    m.expand().revert(&ctx(false)).await.unwrap();
    assert_eq!(columns(&client, "app_v2", "orders").await, ["id", "total"]);
    m.expand().apply(&ctx(false)).await.unwrap();
    assert!(m.contract().apply(&ctx(false)).await.is_err());
    assert_eq!(columns(&client, "public", "orders").await, ["id", "total"]);
    m.contract().apply(&ctx(true)).await.unwrap();
    assert_eq!(columns(&client, "public", "orders").await, ["id"]);
    assert_eq!(columns(&client, "app_v2", "orders").await, ["id"]);
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn rename_column_expands_reverts_and_contracts() {
    let (db, client) = setup("rename").await;
    let m = db.migration(
        "rename-total",
        Operation::rename_column("orders", "total", "amount"),
    );
    m.expand().apply(&ctx(false)).await.unwrap();
    assert_eq!(columns(&client, "app_v1", "orders").await, ["id", "total"]);
    assert_eq!(columns(&client, "app_v2", "orders").await, ["id", "amount"]);
    let copied: i64 = value(&client, "SELECT count(*) FROM orders WHERE amount = total").await;
    assert_eq!(copied, 3, "backfilled");
    m.expand().revert(&ctx(false)).await.unwrap();
    assert_eq!(columns(&client, "public", "orders").await, ["id", "total"]);
    let triggers: i64 = value(
        &client,
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal",
    )
    .await;
    assert_eq!(triggers, 0);
    m.expand().apply(&ctx(false)).await.unwrap();
    m.contract().apply(&ctx(true)).await.unwrap();
    assert_eq!(columns(&client, "public", "orders").await, ["id", "amount"]);
    assert_eq!(columns(&client, "app_v2", "orders").await, ["id", "amount"]);
    let triggers: i64 = value(
        &client,
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal",
    )
    .await;
    assert_eq!(triggers, 0);
    let total: i64 = value(&client, "SELECT sum(amount)::bigint FROM orders").await;
    assert_eq!(total, 60);
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn a_step_behind_a_long_transaction_times_out_retries_and_then_goes_through() {
    let (db, client) = setup("lock_timeout").await;
    let db = db.lock_timeout(std::time::Duration::from_millis(50));
    let url = server().url("lock_timeout");
    // A long transaction holds a lock that ALTER TABLE must wait for.
    let holder = connect(&url).await;
    holder
        .batch_execute("BEGIN; SELECT * FROM orders;")
        .await
        .unwrap();
    let m = db
        .clone()
        .lock_retries(2, std::time::Duration::from_millis(10))
        .migration("add-note", Operation::add_column("orders", "note", "text"));
    let err = m.expand().apply(&ctx(false)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(
        err.message().contains("add-note") && err.message().contains("lock"),
        "{err}"
    );
    // Having given up, the step holds no lock: the table is usable.
    client
        .batch_execute("INSERT INTO orders (total) VALUES (1)")
        .await
        .unwrap();

    // With enough retries it goes through once the long transaction ends.
    let m = db
        .lock_retries(1000, std::time::Duration::from_millis(10))
        .migration("add-note", Operation::add_column("orders", "note", "text"));
    let step = m.expand();
    let running = tokio::spawn(async move { step.apply(&ctx(false)).await });
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = value(
            &client,
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE NOT l.granted AND a.application_name = 'cutover'",
        )
        .await;
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the step never waited for the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // While the step keeps trying, the application's queries queue behind it for at most one
    // lock timeout, far below their own statement timeout.
    let app = connect(&url).await;
    app.batch_execute("SET statement_timeout = '2s'")
        .await
        .unwrap();
    for _ in 0..20 {
        app.query_one("SELECT count(*) FROM orders", &[])
            .await
            .expect("the table stays readable while the step waits for its lock");
    }
    holder.batch_execute("COMMIT").await.unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(
        columns(&client, "public", "orders").await,
        ["id", "total", "note"]
    );
}
