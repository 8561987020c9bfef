//! Test support: a PostgreSQL server started from Debian's packages, the chaos harness and
//! the fleet benchmark. Used by this crate's tests and by `scripts/bench-fleet`.

mod bench;
mod chaos;
mod notify;
mod postgres;
mod process;
mod script;
mod stampede;

pub use self::bench::{ThroughputRow, bench_specs, fleet_throughput, memory_throughput};
pub use self::chaos::{ChaosConfig, ChaosReport, Fault, Spawner, run_chaos};
pub use self::notify::{COMMANDER_ENV, NotifyReport, commander_main_from_env, notify_latency};
pub use self::postgres::{PgServer, ServerError};
pub use self::process::{ProcessReport, WORKER_ENV, WorkerArgs, worker_main_from_env};
pub use self::script::{
    CALLS_TABLE, Call, MemoryRouters, RecordingRouter, SCRIPTED, ScriptedVerdicts, scripted_spec,
    single_process_rollout, ten_step_plan,
};
pub use self::stampede::{
    STAMPEDE_SERVER_OPTIONS, StampedeConfig, StampedeReport, run_stampede, stampede_specs,
};

/// Polls `check` every 20 ms until it holds; panics naming `what` after `within`. For tests
/// against real servers, which cannot run on paused time.
pub async fn eventually<F, Fut>(within: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Brings the schema of the database `client` is connected to up to `version` and no further,
/// as an older release left it: for tests of upgrades. Returns the versions it applied.
pub async fn migrate_to(
    client: &mut tokio_postgres::Client,
    version: i32,
) -> Result<Vec<i32>, crate::ConnectError> {
    crate::pg::schema::migrate_to(client, "the test database", version).await
}
