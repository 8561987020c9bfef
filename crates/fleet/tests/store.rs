//! `PgStateStore` against a real PostgreSQL: the store contract, migrations, LISTEN/NOTIFY, an
//! engine on it, and secrets kept out of everything shown.

use std::time::Duration;

use cutover_core::{
    Canary, CanaryStep, Outcome, Pause, Rollout, RolloutHandle, RolloutId, StateStore, StoreError,
};
use cutover_fleet::testing::{
    COMMANDER_ENV, PgServer, commander_main_from_env, migrate_to, notify_latency,
};
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

/// The schema holds every migration of this release, once.
async fn assert_every_version_applied(db: &tokio_postgres::Client) {
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
    assert_every_version_applied(&db).await;
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

/// Not a test: the body of the commander process when this binary is re-executed as one.
#[test]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
fn notify_commander() {
    if let Some(code) = commander_main_from_env() {
        std::process::exit(i32::from(code != std::process::ExitCode::SUCCESS));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn a_command_reaches_a_watcher_in_another_process_through_notify() {
    assert!(std::env::var_os(COMMANDER_ENV).is_none());
    let spawn = || {
        let mut command = std::process::Command::new(std::env::current_exe().expect("this binary"));
        command.args([
            "--exact",
            "notify_commander",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        command
    };
    // Each command is queued by the other process; no poll exists on this path, so only the
    // notification can wake the watcher here (`scripts/bench-fleet notify` gives the figures).
    let report = notify_latency(PgServer::shared(), "notify", 20, &spawn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{report:?}");
    assert_eq!(report.queued, 20, "{report:?}");
    assert_eq!(report.delivered, 20, "{report:?}");
    assert_eq!(report.early_wakes, 0, "{report:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn a_version_1_database_is_upgraded_with_its_data_intact() {
    cutover_test::trace_init();
    // A rollout paused at its pause step with a resume queued, on a memory store: the data.
    let plan = Canary::new([
        CanaryStep::set_weight(20).unwrap(),
        CanaryStep::Pause(Pause::default()),
        CanaryStep::set_weight(60).unwrap(),
    ]);
    let memory = cutover_core::MemoryStateStore::new();
    let rollout = || {
        Rollout::builder("upgraded", plan.clone())
            .revisions("v1", "v2")
            .router(FakeRouter::new("mesh"))
    };
    let run = tokio::spawn(rollout().state_store(memory.clone()).build().unwrap().run());
    let id = RolloutId::new("upgraded").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while memory
        .load(&id)
        .await
        .unwrap()
        .is_none_or(|s| s.state.pause.is_none())
    {
        assert!(tokio::time::Instant::now() < deadline, "never paused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run.abort();
    let _ = run.await;
    RolloutHandle::new(memory.clone(), id.clone())
        .by("alice")
        .resume("after the upgrade")
        .await
        .unwrap();
    let stored = memory.load(&id).await.unwrap().unwrap();
    let records = memory.records(&id, 0, 1000).await.unwrap();
    let commands = memory.commands(&id, 0).await.unwrap();
    assert!(!records.is_empty() && commands.len() == 1);

    // A database with only the first migration, holding that rollout as version 1 wrote it.
    let url = PgServer::shared().database("upgrade").await.unwrap();
    let (mut db, connection) =
        tokio_postgres::connect(&PgServer::shared().url("upgrade"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    assert_eq!(migrate_to(&mut db, 1).await.unwrap(), vec![1]);
    let fleet_table: Option<String> = db
        .query_one("SELECT to_regclass('cutover_fleet_rollouts')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(fleet_table, None, "only version 1 applied");
    let json = |v: &dyn erased::Json| v.text();
    db.execute(
        "INSERT INTO cutover_rollouts (id, version, state, phase, updated_ms, lease_epoch) \
         VALUES ($1, $2, $3::text::json, 'progressing', $4, 3)",
        &[
            &id.as_str(),
            &i64::try_from(stored.version).unwrap(),
            &json(&stored.state),
            &i64::try_from(stored.state.updated_at.unix_millis()).unwrap(),
        ],
    )
    .await
    .unwrap();
    for record in &records {
        db.execute(
            "INSERT INTO cutover_log (id, seq, epoch, record) VALUES ($1, $2, NULL, $3::text::json)",
            &[&id.as_str(), &i64::try_from(record.seq).unwrap(), &json(record)],
        )
        .await
        .unwrap();
    }
    for command in &commands {
        db.execute(
            "INSERT INTO cutover_inbox (id, seq, key, sent_ms, request) \
             VALUES ($1, $2, $3, $4, $5::text::jsonb)",
            &[
                &id.as_str(),
                &i64::try_from(command.seq).unwrap(),
                &command.request.key,
                &i64::try_from(command.sent_at.unix_millis()).unwrap(),
                &json(&command.request),
            ],
        )
        .await
        .unwrap();
    }

    // Opening the store runs the later migrations and reads everything back as it was.
    let store = PgStateStore::connect(&url).await.unwrap();
    assert_every_version_applied(&db).await;
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!(loaded.version, stored.version);
    assert_eq!(json(&loaded.state), json(&stored.state));
    let read: Vec<String> = store
        .records(&id, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|r| json(r))
        .collect();
    assert_eq!(read, records.iter().map(|r| json(r)).collect::<Vec<_>>());
    let queued: Vec<String> = store
        .commands(&id, 0)
        .await
        .unwrap()
        .iter()
        .map(|c| json(&c.request))
        .collect();
    assert_eq!(queued, vec![json(&commands[0].request)]);
    let epoch: i64 = db
        .query_one(
            "SELECT lease_epoch FROM cutover_rollouts WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(epoch, 3, "the fencing epoch survives the upgrade");
    // And it is live data: an engine on the upgraded store picks the rollout up where it was,
    // takes the queued resume and finishes.
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        rollout().state_store(store.clone()).build().unwrap().run(),
    )
    .await
    .expect("the rollout finishes")
    .unwrap();
    assert_eq!(outcome, Outcome::Promoted);
    let after = store.records(&id, 0, 1000).await.unwrap();
    assert!(after.len() > records.len());
    assert!(
        after
            .iter()
            .any(|r| r.summary.contains("after the upgrade")),
        "{after:#?}"
    );
}

mod erased {
    /// Anything serializable, as JSON text (to compare values that are not `PartialEq`).
    pub(crate) trait Json {
        fn text(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn text(&self) -> String {
            serde_json::to_string(self).expect("serializes")
        }
    }
}
