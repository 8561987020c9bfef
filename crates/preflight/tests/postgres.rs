//! The PostgreSQL checks against a throwaway PostgreSQL started by the harness
//! (scripts/test-deps installs it).

mod common;

use std::time::Duration;

use cutover_core::checklist::{CheckContext, CheckResult, CheckStatus};
use cutover_fleet::testing::PgServer;

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
