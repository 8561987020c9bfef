//! A lost database: workers stop acting (no provider call without a saved intent and a live
//! lease) and carry on when it returns. This binary has a server of its own, which it stops.

use std::time::Duration;

use cutover_core::state::Final;
use cutover_core::{Outcome, StateStore};
use cutover_fleet::testing::{
    MemoryRouters, PgServer, SCRIPTED, ScriptedVerdicts, eventually, scripted_spec, ten_step_plan,
};
use cutover_fleet::{Fleet, FleetStatus, PgStateStore, RolloutSpec, Worker};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-deps"]
async fn workers_stop_acting_while_the_database_is_gone_and_resume_when_it_returns() {
    cutover_test::trace_init();
    let server = tokio::task::spawn_blocking(PgServer::start)
        .await
        .unwrap()
        .expect("a PostgreSQL server");
    let url = server.database("outage").await.unwrap();
    let store = PgStateStore::connect(&url).await.unwrap();
    let fleet = Fleet::new(store.clone());
    let plan = ten_step_plan(4, Duration::from_millis(150));
    let specs: Vec<RolloutSpec> = (0..10)
        .map(|i| scripted_spec(&format!("r{i}"), &plan, "mesh", None))
        .collect();
    fleet.submit_all(&specs).await.unwrap();
    let routers = MemoryRouters::default();
    let ttl = Duration::from_secs(2);
    let worker = Worker::builder(store.clone())
        .id("w1")
        .router("mesh", routers.factory())
        .analysis(SCRIPTED, ScriptedVerdicts::factory)
        .lease_ttl(ttl)
        .poll_interval(Duration::from_millis(100))
        .retry_backoff(Duration::from_millis(200), Duration::from_secs(1))
        .build()
        .unwrap();
    let drainer = worker.drainer();
    let task = tokio::spawn(worker.run(std::future::pending()));
    eventually(
        Duration::from_secs(20),
        "the rollouts to be under way",
        || async { routers.calls().len() >= 10 },
    )
    .await;

    // The database goes away for twice the lease.
    let stop = tokio::task::spawn_blocking({
        let server: &'static PgServer = Box::leak(Box::new(server));
        move || {
            server.stop().expect("pg_ctl stop");
            server
        }
    });
    let server = stop.await.unwrap();
    let stopped_at = Instant::now();
    let before = routers.calls().len();
    tokio::time::sleep(ttl * 2).await;
    let resumed_at = Instant::now();
    tokio::task::spawn_blocking(move || server.resume().expect("pg_ctl start"))
        .await
        .unwrap();

    // Every effect needs a saved intent first: none happened while the database was gone,
    // bar those whose intent was saved just before it went.
    let during: Vec<_> = routers
        .calls()
        .into_iter()
        .filter(|c| c.at > stopped_at + Duration::from_millis(500) && c.at < resumed_at)
        .collect();
    assert!(
        during.is_empty(),
        "{} calls while the database was down: {during:?}",
        during.len()
    );
    assert!(
        routers.calls().len() - before <= specs.len(),
        "at most one effect per rollout after the database went"
    );

    // And when it is back, everything finishes, as it would have.
    eventually(
        Duration::from_mins(1),
        "every rollout to finish",
        || async { fleet.counts().await.is_ok_and(|c| c.finished == 10) },
    )
    .await;
    for spec in &specs {
        let status = fleet.status(&spec.id).await.unwrap().unwrap();
        assert_eq!(
            status,
            FleetStatus::Finished {
                outcome: Some(Final::Outcome(Outcome::Promoted))
            },
            "{}",
            spec.id
        );
        let records = store.records(&spec.id, 0, 10_000).await.unwrap();
        let last = store.load(&spec.id).await.unwrap().unwrap().state.last_seq;
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(
            seqs,
            (1..=last).collect::<Vec<_>>(),
            "{}: the log is whole",
            spec.id
        );
        let epochs: Vec<u64> = routers
            .calls()
            .iter()
            .filter(|c| c.rollout == spec.id)
            .map(|c| c.epoch)
            .collect();
        assert!(
            epochs.windows(2).all(|w| w[0] <= w[1]),
            "{}: {epochs:?}",
            spec.id
        );
    }
    assert!(store.is_listening(), "LISTEN came back");
    drainer.drain();
    let report = task.await.unwrap().unwrap();
    assert!(
        report.claimed > 10,
        "the worker claimed its rollouts again: {report:?}"
    );
}
