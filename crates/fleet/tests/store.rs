//! `PgStateStore` against a real PostgreSQL: the store contract, migrations, LISTEN/NOTIFY, an
//! engine on it, and secrets kept out of everything shown.

use std::time::Duration;

use cutover_core::{
    Canary, CanaryStep, Outcome, Pause, Rollout, RolloutHandle, RolloutId, StateStore, StoreError,
    Watch,
};
use cutover_fleet::testing::PgServer;
use cutover_fleet::{ConnectError, DatabaseUrl, PgStateStore, SCHEMA_VERSION, chain};
use cutover_test::FakeRouter;

async fn store(db: &str) -> PgStateStore {
    let url = PgServer::shared()
        .database(db)
        .await
        .expect("a test database");
    PgStateStore::connect(&url)
        .await
        .expect("the store connects")
}

async fn client(db: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&PgServer::shared().url(db), tokio_postgres::NoTls)
            .await
            .expect("connects");
    tokio::spawn(connection);
    client
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn keeps_the_store_contract() {
    let store = store("contract").await;
    let report = cutover_test::store_contract(&store, "contract-")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.leases_expire, "{report}");
    assert!(report.notifies, "{report}");
    assert_eq!(report.passed.len(), 7, "{report}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn migrations_run_once_even_when_workers_start_together() {
    let url = PgServer::shared().database("migrations").await.unwrap();
    let stores = futures_util::future::join_all((0..4).map(|_| PgStateStore::connect(&url))).await;
    for store in stores {
        store.expect("every concurrent connect succeeds");
    }
    let db = client("migrations").await;
    let versions: Vec<i32> = db
        .query(
            "SELECT version FROM cutover_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    // Connecting again applies nothing and keeps the data.
    let store = PgStateStore::connect(&url).await.unwrap();
    let count: i64 = db
        .query_one("SELECT count(*) FROM cutover_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, i64::from(SCHEMA_VERSION));
    drop(store);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn a_newer_schema_is_refused_and_left_alone() {
    let url = PgServer::shared().database("newer").await.unwrap();
    drop(PgStateStore::connect(&url).await.unwrap());
    let db = client("newer").await;
    db.execute(
        "INSERT INTO cutover_schema_migrations (version, name) VALUES ($1, 'from the future')",
        &[&(SCHEMA_VERSION + 1)],
    )
    .await
    .unwrap();
    let err = PgStateStore::connect(&url).await.unwrap_err();
    assert!(
        matches!(err, ConnectError::SchemaTooNew { found, known, .. } if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade cutover-fleet"), "{err}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn a_command_reaches_a_watcher_in_another_process_through_notify() {
    let url = PgServer::shared().database("notify").await.unwrap();
    let engine_side = PgStateStore::connect(&url).await.unwrap();
    let cli_side = PgStateStore::connect(&url).await.unwrap();
    let id = RolloutId::new("notified").unwrap();
    let state = cutover_core::RolloutState::new(
        id.clone(),
        cutover_core::planner::Setup::new(
            Canary::new([CanaryStep::set_weight(10).unwrap()]).into(),
            cutover_core::Revisions::new("v1", "v2").unwrap(),
        ),
        cutover_core::Timestamp::from_unix_millis(0),
    );
    engine_side.save(&id, &state, None).await.unwrap();
    let Watch::Notified(mut rx) = engine_side.watch(&id) else {
        panic!("the PostgreSQL store pushes changes");
    };
    // The listening connection is up once it has woken its watchers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !engine_side.is_listening() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "LISTEN never came up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rx.borrow_and_update();
    RolloutHandle::new(cli_side, id.clone())
        .by("oncall")
        .pause("looking into it")
        .await
        .unwrap();
    // No poll exists on this path: only the notification can wake the watcher.
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("the notification arrives")
        .unwrap();
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn an_engine_runs_on_it_and_is_steered_from_another_store() {
    let url = PgServer::shared().database("engine").await.unwrap();
    let store = PgStateStore::connect(&url).await.unwrap();
    let other = PgStateStore::connect(&url).await.unwrap();
    let router = FakeRouter::new("mesh");
    let plan = Canary::new([
        CanaryStep::set_weight(20).unwrap(),
        CanaryStep::Pause(Pause::default()),
        CanaryStep::set_weight(60).unwrap(),
    ]);
    let rollout = Rollout::builder("checkout", plan.clone())
        .revisions("v1", "v2")
        .router(router.clone())
        .lease_ttl(Duration::from_secs(30))
        .state_store(store.clone())
        .build()
        .unwrap();
    let id = rollout.id().clone();
    let run = tokio::spawn(rollout.run());
    // Wait for the pause, as a person at a terminal would.
    let handle = RolloutHandle::new(other.clone(), id.clone()).by("alice");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let summary = handle.summary().await.unwrap();
        if summary.is_some_and(|s| s.paused.is_some()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never paused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second engine is refused while the first holds the lease.
    let second = Rollout::builder("checkout", plan)
        .revisions("v1", "v2")
        .router(FakeRouter::new("mesh"))
        .state_store(other.clone())
        .build()
        .unwrap();
    let refused = second.run().await.unwrap_err();
    assert!(
        matches!(refused, cutover_core::RolloutError::Owned { .. }),
        "{refused}"
    );
    // The engine renews every 10 s: only the notification can bring the command in sooner.
    handle.resume("looks fine").await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the resume arrives within seconds")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Outcome::Promoted);
    let records = handle.records().await.unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(
        records
            .iter()
            .any(|r| r.summary.contains("alice") && r.summary.contains("looks fine")),
        "{records:#?}"
    );
    assert_eq!(router.splits().len(), 3, "20 %, 60 %, 100 %");
    assert!(
        store.lease(&id).await.unwrap().is_none(),
        "released at the end"
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn passwords_never_show() {
    let secret = "s3cret-pa55word";
    // Nothing listens there: the error must not repeat the connection string.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url: DatabaseUrl = format!("postgresql://deployer:{secret}@127.0.0.1:{port}/deploys")
        .parse()
        .unwrap();
    let err = PgStateStore::connect(&url).await.unwrap_err();
    let shown = format!("{err} | {err:?} | {} | {url} | {url:?}", chain(&err));
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("deployer@127.0.0.1"), "{shown}");

    // A working store with a password in its URL (trust authentication ignores it).
    let server = PgServer::shared();
    let _ = server.database("secrets").await.unwrap();
    let url: DatabaseUrl = format!(
        "postgresql://postgres:{secret}@127.0.0.1:{}/secrets",
        server.port()
    )
    .parse()
    .unwrap();
    let store = PgStateStore::connect(&url).await.unwrap();
    let id = RolloutId::new("nothing-here").unwrap();
    let err = store
        .send(
            &id,
            &cutover_core::CommandRequest::new(cutover_core::Command::Pause, "x"),
            cutover_core::Timestamp::from_unix_millis(0),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownRollout { .. }), "{err:?}");
    let shown = format!("{store:?} | {err} | {err:?} | {}", chain(&err));
    assert!(!shown.contains(secret), "{shown}");
}
