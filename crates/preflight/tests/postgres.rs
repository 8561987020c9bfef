//! The PostgreSQL checks against a throwaway PostgreSQL started by the harness
//! (scripts/test-deps installs it).

mod common;

use std::time::Duration;

use cutover_core::checklist::{CheckContext, CheckResult, CheckStatus};
use cutover_fleet::testing::PgServer;
use serde_json::json;

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn check(kind: &str, params: &str) -> CheckResult {
    let checklist = cutover_preflight::load_yaml(&format!(
        "name: p\nchecks:\n  - id: db\n    category: infrastructure\n    {kind}: {{ {params} }}\n"
    ))
    .unwrap();
    let report = checklist.run(&CheckContext::default()).await;
    report.checks[0].result.clone()
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn connection_headroom_long_transactions_and_lock_waiters() {
    let server = PgServer::shared();
    let url = server.url("postgres");
    let with_password = format!("{url} password=hunter2");
    let admin = connect(&url).await;
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS orders, customers;
             CREATE TABLE orders (id int); CREATE TABLE customers (id int);",
        )
        .await
        .unwrap();

    let r = check(
        "postgres_connections",
        &format!("url: '{with_password}', min_free_percent: 10"),
    )
    .await;
    assert_eq!(r.status, CheckStatus::Pass, "{r:?}");
    let usable = r.evidence["usable"].as_i64().unwrap();
    assert!(usable > 2, "{r:?}");
    assert!(!serde_json::to_string(&r).unwrap().contains("hunter2"));
    let r = check(
        "postgres_connections",
        &format!("url: '{url}', min_free_percent: 99.99"),
    )
    .await;
    assert_eq!(r.status, CheckStatus::Fail, "{r:?}");
    assert!(r.message.contains("connections used"), "{}", r.message);

    // A transaction that read `orders` and stays open.
    let t1 = connect(&url).await;
    t1.batch_execute("BEGIN; SELECT * FROM orders;")
        .await
        .unwrap();
    let r = check(
        "postgres_activity",
        &format!("url: '{url}', max_transaction_age: 0s, tables: [orders]"),
    )
    .await;
    assert_eq!(r.status, CheckStatus::Fail, "{r:?}");
    assert!(
        r.message.contains("in a transaction for") && r.message.contains("on orders"),
        "{}",
        r.message
    );
    let r = check(
        "postgres_activity",
        &format!("url: '{url}', max_transaction_age: 0s, tables: [customers]"),
    )
    .await;
    assert_eq!(
        r.status,
        CheckStatus::Pass,
        "another table is not concerned: {r:?}"
    );
    let r = check(
        "postgres_activity",
        &format!("url: '{url}', max_transaction_age: 1h, tables: [orders]"),
    )
    .await;
    assert_eq!(r.status, CheckStatus::Pass, "young enough: {r:?}");

    // A session waiting for a lock on `customers`.
    let t2 = connect(&url).await;
    t2.batch_execute("BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE;")
        .await
        .unwrap();
    let t3 = connect(&url).await;
    let waiter = tokio::spawn(async move { t3.batch_execute("SELECT * FROM customers").await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no lock waiter within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = check(
        "postgres_activity",
        &format!("url: '{url}', max_transaction_age: 1h, tables: [customers]"),
    )
    .await;
    assert_eq!(r.status, CheckStatus::Fail, "{r:?}");
    assert!(r.message.contains("waiting for a lock"), "{}", r.message);
    t2.batch_execute("COMMIT").await.unwrap();
    waiter.await.unwrap().unwrap();
    t1.batch_execute("COMMIT").await.unwrap();

    let r = check(
        "postgres_activity",
        "url_env: CUTOVER_PREFLIGHT_TEST_NEVER_SET, max_transaction_age: 1m",
    )
    .await;
    assert_eq!(r.status, CheckStatus::Error, "{r:?}");
}

/// Waits (20 ms polls, 30 s at most) until `sql`, one boolean, is true on `client`.
async fn until(client: &tokio_postgres::Client, sql: &str, what: &str) {
    cutover_fleet::testing::eventually(Duration::from_secs(30), what, || async {
        client.query_one(sql, &[]).await.unwrap().get::<_, bool>(0)
    })
    .await;
}

async fn lag(params: &str) -> CheckResult {
    check("postgres_replication_lag", params).await
}

/// Asserts `res` failed with a message holding each of `parts`.
fn fails_with(res: &CheckResult, parts: &[&str]) {
    assert_eq!(res.status, CheckStatus::Fail, "{res:?}");
    assert!(
        parts.iter().all(|p| res.message.contains(p)),
        "{}",
        res.message
    );
}

/// The primary's WAL insert position. Not `pg_current_wal_lsn`, the write position: with
/// synchronous_commit off the commit record may not be written yet, and only a replayed
/// commit sets the replica's replay timestamp.
async fn insert_lsn(primary: &tokio_postgres::Client) -> String {
    let row = primary
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn replication_lag_against_a_real_streaming_replica() {
    let primary = PgServer::start().unwrap();
    let replica = primary.start_replica("replica1").await.unwrap();
    let (purl, rurl) = (primary.url("postgres"), replica.url("postgres"));
    let (p, r) = (connect(&purl).await, connect(&rurl).await);
    p.batch_execute(
        "CREATE TABLE filler (id bigserial PRIMARY KEY, pad text);
         INSERT INTO filler (pad) VALUES ('x');",
    )
    .await
    .unwrap();
    let lsn = insert_lsn(&p).await;
    let replayed = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
    until(&r, &replayed, "the replica replaying the first writes").await;

    // In sync: one replica streaming, well under 1 MB and 10 s behind.
    let limits = "max_lag: 10s, max_lag_bytes: 1000000";
    let res = lag(&format!(
        "url: '{purl} password=hunter2', {limits}, min_replicas: 1"
    ))
    .await;
    assert_eq!(res.status, CheckStatus::Pass, "{res:?}");
    assert!(!serde_json::to_string(&res).unwrap().contains("hunter2"));
    let seen = &res.evidence["replicas"][0];
    assert_eq!(
        (
            &res.evidence["role"],
            &res.evidence["streaming"],
            &seen["application_name"],
            &seen["state"]
        ),
        (
            &json!("primary"),
            &json!(1),
            &json!("replica1"),
            &json!("streaming")
        ),
        "{res:?}"
    );
    assert!(
        seen["replay_lag_bytes"].as_i64().unwrap() < 1_000_000,
        "{seen}"
    );
    let res = lag(&format!("url: '{rurl}', {limits}")).await;
    assert_eq!(res.status, CheckStatus::Pass, "{res:?}");
    assert_eq!(res.evidence["role"], "replica");
    assert_eq!(res.evidence["receiver"], "streaming");

    // Two replicas wanted, one there.
    let res = lag(&format!("url: '{purl}', {limits}, min_replicas: 2")).await;
    fails_with(
        &res,
        &["1 of 2 required replicas streaming [replica1 (streaming)]"],
    );
    assert!(res.hint.unwrap().contains("start the missing replicas"));

    // Replay paused on the replica while the primary writes about 2 MB: the replica receives
    // the WAL but does not replay it, and the byte lag grows past the limit.
    r.batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let paused = "SELECT pg_get_wal_replay_pause_state() = 'paused'";
    until(&r, paused, "replay paused").await;
    p.batch_execute(
        "INSERT INTO filler (pad) SELECT repeat(md5(g::text), 30) FROM generate_series(1, 2000) g",
    )
    .await
    .unwrap();
    let lsn = insert_lsn(&p).await;
    let received = format!("SELECT pg_last_wal_receive_lsn() >= '{lsn}'::pg_lsn");
    until(&r, &received, "the replica receiving the new WAL").await;
    let res = lag(&format!("url: '{purl}', {limits}")).await;
    fails_with(
        &res,
        &[
            "replica replica1 is ",
            "bytes of WAL behind (limit 1000000)",
        ],
    );
    let bytes = &res.evidence["replicas"][0]["replay_lag_bytes"];
    assert!(bytes.as_i64().unwrap() > 1_000_000, "{bytes}");
    let res = lag(&format!("url: '{rurl}', max_lag_bytes: 1000000")).await;
    fails_with(&res, &["bytes of WAL behind", "WAL replay is paused"]);
    assert!(res.hint.unwrap().contains("pg_wal_replay_resume()"));
    assert!(res.evidence["replay_lag_bytes"].as_i64().unwrap() > 1_000_000);
    // On the replica, time lag counts from the last replayed transaction while WAL waits.
    let res = lag(&format!("url: '{rurl}', max_lag: 1ms")).await;
    fails_with(&res, &["s behind (limit 1ms)"]);

    // Replay resumed: back in sync.
    r.batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    let replayed = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
    until(&r, &replayed, "the replica catching up").await;
    let res = lag(&format!("url: '{purl}', {limits}")).await;
    assert_eq!(res.status, CheckStatus::Pass, "{res:?}");

    // The primary gone: the replica's WAL receiver stops streaming.
    primary.stop().unwrap();
    let gone = "SELECT (SELECT status FROM pg_stat_wal_receiver) IS DISTINCT FROM 'streaming'";
    until(&r, gone, "the replica noticing its primary is gone").await;
    let res = lag(&format!("url: '{rurl}', {limits}")).await;
    fails_with(&res, &["this replica's WAL receiver is "]);
    assert!(res.hint.unwrap().contains("primary_conninfo"));

    // No server there: an error, with the password nowhere.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let res = lag(&format!(
        "url: 'host=127.0.0.1 port={port} user=postgres password=hunter2 dbname=postgres', {limits}"
    ))
    .await;
    assert_eq!(res.status, CheckStatus::Error, "{res:?}");
    assert!(
        res.message.contains("cannot connect to postgres@127.0.0.1"),
        "{}",
        res.message
    );
    assert!(!serde_json::to_string(&res).unwrap().contains("hunter2"));
}

fn migration_ctx(promoted: bool) -> cutover_core::MigrationContext {
    cutover_core::MigrationContext::new(
        cutover_core::RolloutId::new("checkout").unwrap(),
        cutover_core::Revisions::new("v1", "v2").unwrap(),
    )
    .with_promoted(promoted)
}

/// Asserts `res` failed with `message` and a hint holding each of `hint`, with one pending
/// migration, the first in the evidence: returns what the check saw of it.
fn only_pending<'a>(res: &'a CheckResult, message: &str, hint: &[&str]) -> &'a serde_json::Value {
    fails_with(res, &[message]);
    let shown = res.hint.as_deref().unwrap_or_default();
    assert!(hint.iter().all(|h| shown.contains(h)), "{shown}");
    let seen = &res.evidence["migrations"][0];
    assert_eq!(res.evidence["pending"], json!([seen["id"]]), "{res:?}");
    seen
}

#[tokio::test]
#[ignore = "needs postgres: scripts/test-deps"]
async fn pending_and_half_done_expand_contract_migrations() {
    use cutover_postgres::{Batch, MigrationStep as _, Operation, Postgres};
    let server = PgServer::shared();
    server.database("preflight_migrations").await.unwrap();
    let url = server.url("preflight_migrations");
    let admin = connect(&url).await;
    let params = |extra: &str| format!("url: '{url}'{extra}");

    // cutover never migrated this database.
    let res = check("postgres_migrations", &params("")).await;
    assert_eq!(res.status, CheckStatus::Pass, "{res:?}");
    assert!(
        res.message.contains("0 migrations recorded"),
        "{}",
        res.message
    );
    let res = check("postgres_migrations", &params(", applied: [add-status]")).await;
    assert_eq!(res.status, CheckStatus::Fail, "{res:?}");
    assert!(
        res.message.contains("not applied: add-status (never ran)"),
        "{}",
        res.message
    );

    admin
        .batch_execute(
            "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL);
             INSERT INTO users (name) SELECT 'User ' || g FROM generate_series(1, 10) g;",
        )
        .await
        .unwrap();
    let db = Postgres::new(&url)
        .unwrap()
        .lock_timeout(Duration::from_millis(50))
        .lock_retries(1, Duration::from_millis(10))
        .batch(Batch {
            size: 5,
            pause: Duration::ZERO,
        });

    // Expanded, not contracted.
    let status = db.migration(
        "add-status",
        Operation::add_column("users", "status", "text").with_default("'active'"),
    );
    status.expand().apply(&migration_ctx(false)).await.unwrap();
    let res = check("postgres_migrations", &params("")).await;
    let seen = only_pending(
        &res,
        "add-status is expanded (rollout checkout)",
        &["cutover promote checkout", "Migration::contract().apply"],
    );
    assert_eq!(
        (&seen["id"], &seen["phase"], &seen["expand"]),
        (&json!("add-status"), &json!("expanded"), &json!("applied")),
        "{seen}"
    );
    let res = check(
        "postgres_migrations",
        &params(", allow_expanded: [add-status], applied: [add-status]"),
    )
    .await;
    assert_eq!(res.status, CheckStatus::Pass, "{res:?}");
    let res = check(
        "postgres_migrations",
        &params(", applied: [add-status/contract]"),
    )
    .await;
    assert_eq!(res.status, CheckStatus::Fail, "{res:?}");
    assert!(
        res.message
            .contains("not applied: add-status/contract (never ran)"),
        "{}",
        res.message
    );

    // Half-done: the backfill's second batch waits for a lock another session holds (row 7's
    // update takes advisory lock 42 in a trigger) and runs out of lock retries. The lock
    // comes after ADD COLUMN, which would otherwise be the statement to time out.
    admin
        .batch_execute(
            "CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_advisory_xact_lock(42); RETURN NEW; END $$;
             CREATE TRIGGER gate BEFORE UPDATE ON users FOR EACH ROW WHEN (OLD.id = 7)
               EXECUTE FUNCTION gate();",
        )
        .await
        .unwrap();
    let locker = connect(&url).await;
    locker
        .batch_execute("BEGIN; SELECT pg_advisory_xact_lock(42);")
        .await
        .unwrap();
    let slug = db.migration(
        "add-slug",
        Operation::add_column("users", "slug", "text").backfill("lower(name)"),
    );
    let err = slug
        .expand()
        .apply(&migration_ctx(false))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), cutover_core::ErrorKind::Transient, "{err}");
    let res = check(
        "postgres_migrations",
        &params(", allow_expanded: [add-status]"),
    )
    .await;
    let seen = only_pending(
        &res,
        "add-slug is expanding (rollout checkout)",
        &["cutover resume checkout", "cutover rollback checkout"],
    );
    assert_eq!(
        (
            &seen["id"],
            &seen["phase"],
            &seen["expand"],
            &seen["batches"]
        ),
        (
            &json!("add-slug"),
            &json!("expanding"),
            &json!("applying"),
            &json!(1)
        ),
        "{seen}"
    );

    // Finished: the lock goes, the expand resumes, both contract after promotion.
    locker.batch_execute("COMMIT").await.unwrap();
    slug.expand().apply(&migration_ctx(false)).await.unwrap();
    status.contract().apply(&migration_ctx(true)).await.unwrap();
    slug.contract().apply(&migration_ctx(true)).await.unwrap();
    let res = check(
        "postgres_migrations",
        &params(", applied: [add-status, add-slug/contract]"),
    )
    .await;
    assert_eq!(res.status, CheckStatus::Pass, "{res:?}");
    assert!(
        res.message.contains("2 migrations recorded"),
        "{}",
        res.message
    );
    assert_eq!(res.evidence["migrations"][1]["phase"], "contracted");

    // Rolled back is not pending.
    let flag = db.migration(
        "add-flag",
        Operation::add_column("users", "flag", "boolean"),
    );
    flag.expand().apply(&migration_ctx(false)).await.unwrap();
    flag.expand().revert(&migration_ctx(false)).await.unwrap();
    let res = check("postgres_migrations", &params("")).await;
    assert_eq!(res.status, CheckStatus::Pass, "{res:?}");
    assert_eq!(res.evidence["migrations"][0]["phase"], "reverted");

    let res = check(
        "postgres_migrations",
        "url_env: CUTOVER_PREFLIGHT_TEST_NEVER_SET",
    )
    .await;
    assert_eq!(res.status, CheckStatus::Error, "{res:?}");
}

#[test]
fn bad_replication_and_migration_params_name_the_field() {
    let err = |kind: &str, params: &str| {
        cutover_preflight::load_yaml(&format!(
            "name: p\nchecks:\n  - {{ id: a, category: x, {kind}: {{ {params} }} }}\n"
        ))
        .unwrap_err()
        .to_string()
    };
    let lag = "postgres_replication_lag";
    for (params, want) in [
        (
            "url_env: DB, max_lag: 5 parsecs",
            ".max_lag: invalid duration `5 parsecs`",
        ),
        (
            "url_env: DB, max_lag_bytes: lots",
            ".max_lag_bytes: invalid type",
        ),
        (
            "url_env: DB, min_replicas: -1",
            ".min_replicas: invalid value",
        ),
        ("url_env: DB, max_lag: 1s, lag: 2s", ": unknown field `lag`"),
    ] {
        let e = err(lag, params);
        assert!(
            e.starts_with(&format!("checks[0].{lag}{want}")),
            "{params}: {e}"
        );
    }
    let e = err(lag, "url_env: DB, min_replicas: 0");
    assert!(e.contains("nothing to check"), "{e}");
    let e = err(
        lag,
        "url: 'host=db password=hunter2 port=nope', max_lag: 1s",
    );
    assert!(e.contains("not a PostgreSQL connection string"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = err(lag, "max_lag: 1s");
    assert!(e.contains("give `url_env`"), "{e}");

    let m = "postgres_migrations";
    let e = err(m, "url_env: DB, applied: [a, '']");
    assert!(
        e.starts_with("checks[0].postgres_migrations.applied[1]: an empty migration id"),
        "{e}"
    );
    let e = err(m, "url_env: DB, allow_expanded: [a/contract]");
    assert!(
        e.starts_with("checks[0].postgres_migrations.allow_expanded[0]: name the migration"),
        "{e}"
    );
    let e = err(m, "url_env: DB, applied: add-status");
    assert!(
        e.starts_with("checks[0].postgres_migrations.applied: invalid type"),
        "{e}"
    );

    // A connection string in the checklist never shows in Debug.
    let checklist = cutover_preflight::load_yaml(
        "name: p\nchecks:\n  - { id: a, category: x, postgres_migrations: { url: 'host=db user=app password=hunter2' } }\n  - { id: b, category: x, postgres_replication_lag: { url: 'postgresql://app:hunter2@db/x', max_lag: 1s } }\n",
    )
    .unwrap();
    let shown = format!("{checklist:?}");
    assert!(
        shown.contains("Database(***)") && !shown.contains("hunter2"),
        "{shown}"
    );
}
